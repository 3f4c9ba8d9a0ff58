//! `overlay` networks in the config (`[networks.vxlan]`) against common mistakes: each is reported with file,
//! line, column, field and reason, all at once. And a valid overlay: its typed values and defaults,
//! `Config::validate` (through `to_raw`) and compilation into a bridge domain with its VXLAN side.

use std::path::{Path, PathBuf};

use control::compile::{compile, CompileEnv};
use control::config::{self, Config, NetworkMode, DEFAULT_VXLAN_PORT};

/// Parses `text` as `t.toml`, expecting failure, and returns the error's lines.
fn errors(text: &str) -> Vec<String> {
    match config::parse(text, "t.toml") {
        Ok(c) => panic!("expected an error, got {c:#?}"),
        Err(e) => e.to_string().lines().map(String::from).collect(),
    }
}

#[track_caller]
fn assert_errors(text: &str, expected: &[&str]) {
    assert_eq!(errors(text), expected, "for:\n{text}");
}

#[track_caller]
fn valid(text: &str) -> Config {
    let c = config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}\nfor:\n{text}"));
    c.validate().unwrap_or_else(|e| panic!("{e}\nfor:\n{text}"));
    compile(&c, 1, CompileEnv::default()).unwrap_or_else(|e| panic!("{e}\nfor:\n{text}"));
    c
}

/// A routed underlay port `u` (192.0.2.1/24, line 5), an endpoint port `a`, a plain port `p`; an overlay
/// network starts on line 17 (`[[networks]]`), its `[networks.vxlan]` table on line 22.
const BASE: &str = r#"[[ports]]
name = "u"
backend = "ring"
peer = "xu"
addresses = ["192.0.2.1/24"]

[[ports]]
name = "a"
backend = "ring"
peer = "xa"

[[ports]]
name = "p"
backend = "ring"
peer = "xp"
"#;

fn overlay(vxlan: &str) -> String {
    format!(
        "{BASE}\n[[networks]]\nname = \"ov\"\nmode = \"overlay\"\nports = [\"a\"]\n\n[networks.vxlan]\n{vxlan}"
    )
}

#[test]
fn a_valid_overlay_has_its_defaults_and_compiles() {
    let c = valid(&overlay(
        "vni = 42\nunderlay = \"u\"\nremotes = [\"192.0.2.2\"]\n",
    ));
    let n = &c.networks[0];
    assert_eq!(n.mode, NetworkMode::Overlay);
    let o = n.overlay.as_ref().unwrap();
    assert_eq!(o.vni, 42);
    assert_eq!(o.local, "192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap());
    assert_eq!(o.port, DEFAULT_VXLAN_PORT);
    assert_eq!(o.mtu, 1450, "underlay 1500 - 50");
    assert_eq!((o.df, o.ttl), (false, 64));
    assert!(n.bridge.is_some(), "an overlay is a bridge domain");
    let snap = compile(&c, 1, CompileEnv::default()).unwrap();
    let bd = &snap.bridges[0];
    let ov = bd.overlay.as_ref().unwrap();
    assert_eq!((ov.vni, ov.udp_port, ov.mtu), (42, 4789, 1450));
    assert_eq!(ov.flood.len(), 1);
    assert_eq!(
        bd.members.len(),
        2,
        "port a and the remote VTEP's virtual port"
    );
    assert_eq!(snap.vxlan.domain_of(42), Some(0));
    assert!(snap.vxlan.is_local([192, 0, 2, 1], 4789));
    // A smaller router MTU makes a smaller overlay MTU.
    let c = valid(&format!(
        "[dataplane]\ndata_room = 9216\n[router]\nmtu = 9000\n{}",
        overlay("vni = 7\nunderlay = \"u\"\nmtu = 8950\ndf = true\nttl = 9\nport = 8472\n")
    ));
    let o = c.networks[0].overlay.as_ref().unwrap();
    assert_eq!((o.mtu, o.df, o.ttl, o.port), (8950, true, 9, 8472));
}

#[test]
fn overlay_mistakes_name_file_line_field_and_why() {
    assert_errors(
        &overlay("underlay = \"u\"\n"),
        &["t.toml:22:1: networks[0].vxlan.vni: required field is missing (1..=16777215)"],
    );
    assert_errors(
        &overlay("vni = 16777216\nunderlay = \"p\"\n"),
        &[
            "t.toml:23:7: networks[0].vxlan.vni: vni must be in 1..=16777215, got 16777216",
            "t.toml:24:12: networks[0].vxlan.underlay: port \"p\" has no IPv4 `addresses`: the underlay is a routed port and the local VTEP is one of its addresses",
        ],
    );
    assert_errors(
        &overlay("vni = 1\nunderlay = \"u\"\nlocal = \"192.0.2.9\"\nmtu = 1451\nremotes = [\"192.0.2.2\", \"224.0.0.1\", \"192.0.2.2\"]\n"),
        &[
            "t.toml:25:9: networks[0].vxlan.local: 192.0.2.9 is not an address of the underlay port \"u\" (its IPv4 addresses: 192.0.2.1)",
            "t.toml:26:7: networks[0].vxlan.mtu: mtu 1451 is too large: at most the underlay MTU (1500, `[router] mtu`) minus 50 of VXLAN headers = 1450",
            "t.toml:27:25: networks[0].vxlan.remotes[1]: 224.0.0.1 cannot be a VTEP: it must be a unicast address",
            "t.toml:27:38: networks[0].vxlan.remotes[2]: 192.0.2.2 is listed twice",
        ],
    );
    assert_errors(
        &overlay("vni = 1\nunderlay = \"u\"\n[[networks.vxlan.fdb]]\nmac = \"01:00:5e:00:00:01\"\nvtep = \"192.0.2.1\"\n"),
        &[
            "t.toml:26:7: networks[0].vxlan.fdb[0].mac: MAC address 01:00:5e:00:00:01 is multicast (the low bit of the first octet is set); a unicast address is needed",
            "t.toml:27:8: networks[0].vxlan.fdb[0].vtep: 192.0.2.1 is the local VTEP: a local MAC is learned on its port",
        ],
    );
    // No vxlan table; a vxlan table on a bridge; trunk ports on an overlay.
    assert_errors(
        &format!("{BASE}\n[[networks]]\nname = \"ov\"\nmode = \"overlay\"\nports = [\"a\"]\ntrunk_ports = [\"p\"]\n"),
        &[
            "t.toml:17:1: networks[0].vxlan: required field is missing: an overlay network needs a [networks.vxlan] table with at least `vni` and `underlay`",
            "t.toml:21:15: networks[0].trunk_ports: `trunk_ports` is only for bridge networks (this one is overlay)",
        ],
    );
    assert_errors(
        &format!("{BASE}\n[[networks]]\nname = \"br\"\nmode = \"bridge\"\nports = [\"a\"]\n[networks.vxlan]\nvni = 1\n"),
        &["t.toml:21:1: networks[0].vxlan: `vxlan` is only for overlay networks (this one is bridge)"],
    );
    // Two overlays with one VNI on one port.
    assert_errors(
        &format!(
            "{}\n[[networks]]\nname = \"ov2\"\nmode = \"overlay\"\nports = [\"p\"]\n[networks.vxlan]\nvni = 5\nunderlay = \"u\"\n",
            overlay("vni = 5\nunderlay = \"u\"\n")
        ),
        &["t.toml:31:7: networks[1].vxlan.vni: VNI 5 is already used by networks[0] on the same UDP port"],
    );
    // An unknown field in the table.
    let e = errors(&overlay("vni = 1\nunderlay = \"u\"\nvnii = 2\n"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("t.toml:25:1:") && e[0].contains("vnii"),
        "{e:?}"
    );
}

#[test]
fn the_shipped_overlay_lab_config_compiles() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab-overlay.toml");
    let c = config::load(&PathBuf::from(&path)).unwrap();
    let snap = compile(&c, 1, CompileEnv::default()).unwrap();
    let bd = snap.bridges.iter().find(|b| b.name == "ov").unwrap();
    assert_eq!(bd.overlay.as_ref().unwrap().vni, 42);
    assert_eq!(bd.statics.len(), 1, "the example fdb entry");
}
