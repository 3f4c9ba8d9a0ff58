//! The config model against the shipped example configs and against common mistakes: each mistake must be
//! reported with the right file, line, column, field and reason.

use std::path::{Path, PathBuf};

use control::config::{self, BackendCfg, Config, ConfigError, Diagnostic, MacAddr, NetworkMode};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

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

/// Two afpacket ports and an xconnect between them: the base most mistakes below are made in.
const TWO_PORTS: &str = r#"[[ports]]
name = "a"
backend = "afpacket"
interface = "veth-a"

[[ports]]
name = "b"
backend = "afpacket"
interface = "veth-b"
"#;

#[test]
fn every_shipped_config_parses_and_validates() {
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(configs_dir())
        .expect("configs/ exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let cfg = match config::load(&path) {
            Ok(cfg) => Some(cfg),
            // A DPDK config in a build without DPDK: that must be all that is wrong with it (it runs, and is
            // checked in full, in the `--features dpdk` build).
            Err(e)
                if !config::DPDK_SUPPORT
                    && e.diagnostics()
                        .iter()
                        .all(|d| d.reason == config::NO_DPDK_SUPPORT) =>
            {
                None
            }
            Err(e) => panic!("{}:\n{e}", path.display()),
        };
        if let Some(cfg) = &cfg {
            cfg.validate()
                .unwrap_or_else(|e| panic!("{} after parsing:\n{e}", path.display()));
            assert!(!cfg.workers().is_empty());
        }
        // Every field used is explained by a comment.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with('#'),
            "{} starts with a comment",
            path.display()
        );
        seen += 1;
    }
    assert!(
        seen >= 3,
        "only {seen} configs found in {}",
        configs_dir().display()
    );
}

#[test]
fn default_lab_config_is_the_shipped_file() {
    let shipped = std::fs::read_to_string(configs_dir().join("lab-default.toml")).unwrap();
    assert_eq!(config::DEFAULT_LAB_CONFIG, shipped);
}

#[test]
fn xconnect_ring_config() {
    let c = config::load(&configs_dir().join("xconnect-ring.toml")).unwrap();
    let names: Vec<_> = c.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        c.ports[0].backend,
        BackendCfg::Ring {
            peer: "gen0".into(),
            depth: Some(1024),
            peer_queues: None
        }
    );
    assert_eq!(c.networks[0].mode, NetworkMode::Xconnect);
    assert_eq!(c.networks[0].ports, ["a", "b"]);
    assert_eq!(c.dataplane.idle, config::IdleMode::Poll);
}

#[test]
fn xconnect_pcap_config_resolves_paths_against_its_directory() {
    let dir = configs_dir();
    let c = config::load(&dir.join("xconnect-pcap.toml")).unwrap();
    assert_eq!(
        c.ports[0].backend,
        BackendCfg::Pcap {
            rx: Some(dir.join("data/xconnect-in.pcap")),
            tx: None,
            replay: Some(1)
        }
    );
    assert!(
        matches!(&c.ports[1].backend, BackendCfg::Pcap { tx: Some(tx), .. } if *tx == dir.join("data/xconnect-out.pcap.out"))
    );
    let rw = &c.networks[0].rewrite[0];
    assert_eq!(rw.port, "out");
    assert_eq!(rw.src_mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
    assert_eq!(rw.dst_mac, Some(MacAddr([2, 0, 0, 0, 0, 2])));
}

/// The frames of `configs/data/xconnect-in.pcap`: four UDP datagrams from 10.77.0.1 to 10.77.0.2 in a classic
/// little-endian pcap (Ethernet link type). `WHARF_REGEN_FIXTURES=1 cargo test` rewrites the file.
fn xconnect_in_pcap() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microsecond timestamps
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for i in 0..4u16 {
        let payload = format!("wharf xconnect frame {i}");
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x0a], [2, 0, 0, 0, 0, 0x0b])
            .ipv4([10, 77, 0, 1], [10, 77, 0, 2], 64)
            .udp(40000 + i, 7)
            .write(&mut frame, payload.as_bytes())
            .unwrap();
        let len = u32::try_from(frame.len()).unwrap();
        out.extend_from_slice(&(1_700_000_000u32 + u32::from(i)).to_le_bytes()); // ts_sec
        out.extend_from_slice(&0u32.to_le_bytes()); // ts_usec
        out.extend_from_slice(&len.to_le_bytes()); // incl_len
        out.extend_from_slice(&len.to_le_bytes()); // orig_len
        out.extend_from_slice(&frame);
    }
    out
}

#[test]
fn shipped_pcap_fixture_matches_its_generator() {
    let path = configs_dir().join("data/xconnect-in.pcap");
    let want = xconnect_in_pcap();
    if std::env::var_os("WHARF_REGEN_FIXTURES").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read(&path).unwrap();
    assert!(
        have == want,
        "{} differs from its generator; WHARF_REGEN_FIXTURES=1 rewrites it",
        path.display()
    );
}

#[test]
fn diagnostics_have_structured_fields() {
    let text = format!(
        "{TWO_PORTS}\n[[networks]]\nname = \"n\"\nmode = \"xconnect\"\nports = [\"a\", \"c\"]\n"
    );
    let e: ConfigError = config::parse(&text, "configs/x.toml").unwrap_err();
    assert_eq!(
        e.diagnostics(),
        [Diagnostic {
            file: "configs/x.toml".into(),
            line: 14,
            col: 15,
            field: "networks[0].ports[1]".into(),
            reason: "no port named \"c\" (ports are: a, b)".into(),
        }]
    );
    assert_eq!(
        e.to_string(),
        "configs/x.toml:14:15: networks[0].ports[1]: no port named \"c\" (ports are: a, b)"
    );
    // It is a std error, so `?` into anyhow works.
    let any: anyhow::Error = e.into();
    assert!(any.to_string().starts_with("configs/x.toml:14:15:"));
}

#[test]
fn unknown_backend() {
    let text = TWO_PORTS.replace(
        "backend = \"afpacket\"\ninterface = \"veth-b\"",
        "backend = \"afpackt\"",
    );
    assert_errors(
        &text,
        &[
            r#"t.toml:8:11: ports[1].backend: unknown backend "afpackt" (expected one of: ring, pcap, afpacket, dpdk)"#,
        ],
    );
    assert_errors(
        "[[ports]]\nname = \"a\"\n",
        &["t.toml:1:1: ports[0].backend: required field is missing (one of: ring, pcap, afpacket, dpdk)"],
    );
}

#[test]
fn unknown_field_with_a_typo() {
    assert_errors(
        r#"[[ports]]
name = "a"
backend = "afpacket"
interfce = "veth-a"
"#,
        &[r#"t.toml:4:1: ports[0].interfce: unknown field "interfce" (did you mean "interface"?)"#],
    );
    assert_errors(
        "[dataplane]\nburst_size = 32\nwrkers = 2\n",
        &[r#"t.toml:3:1: dataplane.wrkers: unknown field "wrkers" (did you mean "workers"?)"#],
    );
    assert_errors(
        "[dataplne]\nburst_size = 32\n",
        &[r#"t.toml:1:2: dataplne: unknown field "dataplne" (did you mean "dataplane"?)"#],
    );
    assert_errors(
        "[[ports]]\nname = \"a\"\ncolour = \"red\"\n",
        &[
            "t.toml:3:1: ports[0].colour: unknown field \"colour\" (expected one of: name, backend, interface, \
             block_size, block_count, frame_size, promiscuous, peer, depth, peer_queues, rx, tx, replay, device, \
             rx_desc, tx_desc, mtu, rss, addresses)",
        ],
    );
}

#[test]
fn option_of_another_backend() {
    let text = format!("{TWO_PORTS}depth = 64\n");
    assert_errors(
        &text,
        &[
            "t.toml:10:9: ports[1].depth: depth is an option of the ring backend, not of afpacket \
           (options of afpacket: interface, block_size, block_count, frame_size, promiscuous)",
        ],
    );
}

#[test]
fn duplicate_port_name() {
    let text = TWO_PORTS.replace("name = \"b\"", "name = \"a\"");
    assert_errors(
        &text,
        &[r#"t.toml:7:8: ports[1].name: duplicate port name "a" (first used by ports[0])"#],
    );
}

#[test]
fn bad_port_names() {
    assert_errors(
        r#"[[ports]]
name = "Uplink"
backend = "afpacket"
interface = "eth0"

[[ports]]
name = "a-very-long-port-name"
backend = "afpacket"
interface = "eth1"
"#,
        &[
            r#"t.toml:2:8: ports[0].name: port name "Uplink" has invalid character 'U' (use a-z, 0-9, _ and -)"#,
            r#"t.toml:7:8: ports[1].name: port name "a-very-long-port-name" is 21 characters long (at most 15)"#,
        ],
    );
}

#[test]
fn ring_peer_missing_or_not_reciprocal() {
    assert_errors(
        r#"[[ports]]
name = "a"
backend = "ring"
peer = "b"

[[ports]]
name = "b"
backend = "ring"
peer = "c"

[[ports]]
name = "c"
backend = "ring"
peer = "d"

[[ports]]
name = "e"
backend = "ring"
depth = 1000

[[ports]]
name = "f"
backend = "ring"
peer = "d"

[[ports]]
name = "g"
backend = "ring"
peer = "Gen"
"#,
        &[
            r#"t.toml:4:8: ports[0].peer: ring peers must name each other: port "b" (ports[1]) has peer "c", not "a""#,
            r#"t.toml:9:8: ports[1].peer: ring peers must name each other: port "c" (ports[2]) has peer "d", not "b""#,
            "t.toml:16:1: ports[3].peer: required field is missing (a ring port needs the name of its peer ring port)",
            "t.toml:19:9: ports[3].depth: depth must be a power of two, got 1000",
            r#"t.toml:24:8: ports[4].peer: external ring end "d" is already the peer of ports[2]; each end belongs to one port"#,
            r#"t.toml:29:8: ports[5].peer: external ring end name "Gen" has invalid character 'G' (use a-z, 0-9, _ and -)"#,
        ],
    );
}

#[test]
fn ring_peer_queues_of_an_external_end() {
    let c = config::parse(
        "[[ports]]\nname = \"a\"\nbackend = \"ring\"\npeer = \"gen\"\npeer_queues = 1\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        c.ports[0].backend,
        BackendCfg::Ring {
            peer: "gen".into(),
            depth: None,
            peer_queues: Some(1)
        }
    );
    assert_errors(
        r#"[[ports]]
name = "a"
backend = "ring"
peer = "gen"
peer_queues = 0

[[ports]]
name = "b"
backend = "ring"
peer = "c"
peer_queues = 2

[[ports]]
name = "c"
backend = "ring"
peer = "b"

[[ports]]
name = "d"
backend = "afpacket"
interface = "eth0"
peer_queues = 1
"#,
        &[
            "t.toml:5:15: ports[0].peer_queues: peer_queues must be in 1..=256, got 0",
            r#"t.toml:11:15: ports[1].peer_queues: peer_queues is for an external far end; the peer is port "c" (ports[2]), cabled inside the router with one queue per worker"#,
            "t.toml:22:15: ports[3].peer_queues: peer_queues is an option of the ring backend, not of afpacket \
             (options of afpacket: interface, block_size, block_count, frame_size, promiscuous)",
        ],
    );
}

#[test]
fn network_references_a_missing_port() {
    let text = format!(
        "{TWO_PORTS}\n[[networks]]\nname = \"patch\"\nmode = \"xconnect\"\nports = [\"a\", \"bb\"]\n"
    );
    assert_errors(
        &text,
        &[
            r#"t.toml:14:15: networks[0].ports[1]: no port named "bb" (did you mean "b"? ports are: a, b)"#,
        ],
    );
}

#[test]
fn xconnect_needs_exactly_two_ports() {
    let text = format!(
        "{TWO_PORTS}\n[[ports]]\nname = \"c\"\nbackend = \"afpacket\"\ninterface = \"veth-c\"\n\n\
         [[networks]]\nname = \"patch\"\nmode = \"xconnect\"\nports = [\"a\", \"b\", \"c\"]\n"
    );
    assert_errors(
        &text,
        &["t.toml:19:9: networks[0].ports: an xconnect network joins exactly two ports, got 3"],
    );
}

#[test]
fn port_in_two_networks_or_listed_twice() {
    let text = format!(
        "{TWO_PORTS}\n[[networks]]\nname = \"one\"\nmode = \"xconnect\"\nports = [\"a\", \"a\"]\n\n\
         [[networks]]\nname = \"two\"\nmode = \"xconnect\"\nports = [\"b\", \"a\"]\n"
    );
    assert_errors(
        &text,
        &[
            r#"t.toml:14:15: networks[0].ports[1]: port "a" is listed twice"#,
            r#"t.toml:19:15: networks[1].ports[1]: port "a" is already in network "one" (networks[0]); a port belongs to at most one network"#,
        ],
    );
}

/// TWO_PORTS, an xconnect `patch` over them, and then `tail`.
fn with_network(tail: &str) -> String {
    format!("{TWO_PORTS}\n[[networks]]\nname = \"patch\"\nmode = \"xconnect\"\nports = [\"a\", \"b\"]\n{tail}")
}

#[test]
fn bad_mac() {
    // Lines 1-14 are TWO_PORTS and the network.
    let text = with_network(
        r#"
[[networks.rewrite]]
port = "b"
src_mac = "02:00:00:00:01"
dst_mac = "02:00:00:00:00:zz"
"#,
    );
    assert_errors(
        &text,
        &[
            r#"t.toml:18:11: networks[0].rewrite[0].src_mac: invalid MAC address "02:00:00:00:01": fewer than six octets"#,
            r#"t.toml:19:11: networks[0].rewrite[0].dst_mac: invalid MAC address "02:00:00:00:00:zz": expected six pairs of hex digits separated by colons, like 02:00:00:00:00:01"#,
        ],
    );
}

#[test]
fn multicast_or_zero_mac() {
    let text = with_network(
        r#"
[[networks.rewrite]]
port = "b"
src_mac = "01:00:5e:00:00:01"

[[endpoints]]
name = "left"
network = "patch"
port = "a"
mac = "03:00:00:00:00:0a"
address = "10.77.0.1/24"

[[endpoints]]
name = "right"
network = "patch"
port = "b"
mac = "00:00:00:00:00:00"
address = "10.77.0.2/24"
"#,
    );
    assert_errors(
        &text,
        &[
            "t.toml:18:11: networks[0].rewrite[0].src_mac: MAC address 01:00:5e:00:00:01 is multicast (the low bit of the first octet is set); a unicast address is needed",
            "t.toml:24:7: endpoints[0].mac: MAC address 03:00:00:00:00:0a is multicast (the low bit of the first octet is set); a unicast address is needed",
            "t.toml:31:7: endpoints[1].mac: MAC address 00:00:00:00:00:00 is all-zero",
        ],
    );
}

#[test]
fn rewrite_mistakes() {
    let text = with_network(
        r#"
[[networks.rewrite]]
port = "c"
dst_mac = "02:00:00:00:00:02"

[[networks.rewrite]]
port = "b"
"#,
    );
    assert_errors(
        &text,
        &[
            r#"t.toml:17:8: networks[0].rewrite[0].port: port "c" is not in network "patch" (its ports are: a, b)"#,
            "t.toml:20:1: networks[0].rewrite[1]: a rewrite needs src_mac, dst_mac or both",
        ],
    );
}

/// with_network plus one endpoint `left` on port a with these extra lines (the endpoint starts on line 16).
fn with_endpoint(address: &str, extra: &str) -> String {
    with_network(&format!(
        "\n[[endpoints]]\nname = \"left\"\nnetwork = \"patch\"\nport = \"a\"\naddress = \"{address}\"\n{extra}"
    ))
}

#[test]
fn bad_cidr_or_host_part() {
    assert_errors(
        &with_endpoint("10.77.0.1", ""),
        &[
            r#"t.toml:20:11: endpoints[0].address: invalid IPv4 CIDR "10.77.0.1": expected ADDRESS/PREFIX, like 10.77.0.1/24"#,
        ],
    );
    assert_errors(
        &with_endpoint("10.77.0.1/33", ""),
        &[
            r#"t.toml:20:11: endpoints[0].address: invalid IPv4 CIDR "10.77.0.1/33": prefix length "33" is not a number in 0..=32"#,
        ],
    );
    assert_errors(
        &with_endpoint("10.77.0.0/24", ""),
        &["t.toml:20:11: endpoints[0].address: 10.77.0.0 is the network address (host part all zero) of 10.77.0.0/24, not a host address"],
    );
    assert_errors(
        &with_endpoint("10.77.0.255/24", ""),
        &["t.toml:20:11: endpoints[0].address: 10.77.0.255 is the broadcast address (host part all ones) of 10.77.0.0/24, not a host address"],
    );
    // /31 has no network or broadcast address (RFC 3021).
    config::parse(&with_endpoint("10.77.0.0/31", ""), "t.toml").unwrap();
}

#[test]
fn gateway_outside_the_subnet() {
    assert_errors(
        &with_endpoint("10.77.0.1/24", "gateway = \"10.78.0.1\"\n"),
        &["t.toml:21:11: endpoints[0].gateway: gateway 10.78.0.1 is outside the subnet 10.77.0.0/24 of address 10.77.0.1/24"],
    );
    assert_errors(
        &with_endpoint("10.77.0.1/24", "gateway = \"10.77.0.1\"\n"),
        &["t.toml:21:11: endpoints[0].gateway: gateway 10.77.0.1 is the endpoint's own address"],
    );
    let ok = config::parse(
        &with_endpoint("10.77.0.1/24", "gateway = \"10.77.0.254\"\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        ok.endpoints[0].gateway,
        Some("10.77.0.254".parse().unwrap())
    );
}

#[test]
fn endpoint_references() {
    let text = with_network(
        r#"
[[endpoints]]
name = "left"
network = "pach"
port = "a"
address = "10.77.0.1/24"

[[endpoints]]
name = "left"
network = "patch"
port = "c"
address = "10.77.0.1/24"

[[endpoints]]
name = "a-long-name"
network = "patch"
port = "a"
address = "10.77.0.3/24"
"#,
    );
    assert_errors(
        &text,
        &[
            r#"t.toml:18:11: endpoints[0].network: no network named "pach" (did you mean "patch"? networks are: patch)"#,
            r#"t.toml:23:8: endpoints[1].name: duplicate endpoint name "left" (first used by endpoints[0])"#,
            r#"t.toml:25:8: endpoints[1].port: no port named "c" (ports are: a, b)"#,
            "t.toml:26:11: endpoints[1].address: address 10.77.0.1 is already used by endpoints[0]",
            r#"t.toml:29:8: endpoints[2].name: endpoint name "a-long-name" is 11 characters long (at most 10)"#,
            r#"t.toml:31:8: endpoints[2].port: port "a" is already cabled to endpoints[0]; one endpoint per port"#,
        ],
    );
}

#[test]
fn cores_and_workers_both_set() {
    assert_errors(
        "[dataplane]\ncores = [1, 2]\nworkers = 2\n",
        &["t.toml:3:11: dataplane.workers: cores and workers are both set; use cores for pinned workers or workers for unpinned ones, not both"],
    );
    assert_errors(
        "[dataplane]\ncores = [1, 2, 1]\n",
        &["t.toml:2:16: dataplane.cores[2]: core 1 is listed twice"],
    );
    assert_errors(
        "[dataplane]\ncores = []\n",
        &["t.toml:2:9: dataplane.cores: cores is empty (list at least one core, or use workers = N for unpinned workers)"],
    );
}

#[test]
fn burst_size_out_of_range() {
    assert_errors(
        "# comment\n[dataplane]\nburst_size = 0\n",
        &["t.toml:3:14: dataplane.burst_size: burst_size must be in 1..=256, got 0"],
    );
    assert_errors(
        "[dataplane]\nburst_size = 300\n",
        &["t.toml:2:14: dataplane.burst_size: burst_size must be in 1..=256, got 300"],
    );
}

#[test]
fn dataplane_ranges_and_enums_all_at_once() {
    assert_errors(
        r#"[dataplane]
buffers = 100
data_room = 1500
idle = "sleepy"
idle_sleep_us = 0
idle_after_polls = -5
"#,
        &[
            "t.toml:2:11: dataplane.buffers: buffers must be in 256..=16777216, got 100",
            "t.toml:3:13: dataplane.data_room: data_room must be in 1518..=9216, got 1500",
            r#"t.toml:4:8: dataplane.idle: unknown idle mode "sleepy" (expected one of: adaptive, poll)"#,
            "t.toml:5:17: dataplane.idle_sleep_us: idle_sleep_us must be in 1..=100000, got 0",
            "t.toml:6:20: dataplane.idle_after_polls: idle_after_polls must be in 1..=4294967295, got -5",
        ],
    );
}

#[test]
fn wrong_types() {
    assert_errors(
        "[dataplane]\nburst_size = \"32\"\n",
        &[r#"t.toml:2:14: dataplane.burst_size: expected an integer, found string "32""#],
    );
    assert_errors(
        "[dataplane]\ncores = [1, \"two\"]\n",
        &[r#"t.toml:2:13: dataplane.cores[1]: expected an integer, found string "two""#],
    );
    assert_errors(
        "[[ports]]\nname = \"a\"\nbackend = \"afpacket\"\ninterface = \"x\"\npromiscuous = 1\n",
        &["t.toml:5:15: ports[0].promiscuous: expected a boolean (true or false), found integer 1"],
    );
    assert_errors(
        "ports = 3\n",
        &["t.toml:1:9: ports: expected an array, found integer 3"],
    );
}

#[test]
fn toml_syntax_error() {
    assert_errors(
        "[dataplane]\nburst_size = 32\n\n[[ports]]\nname = \"a\nbackend = \"ring\"\n",
        &["t.toml:5:10: ports[0].name: invalid basic string"],
    );
    assert_errors(
        "[dataplane]\nburst_size = 32\nburst_size = 64\n",
        &["t.toml:3:1: dataplane.burst_size: duplicate key `burst_size` in table `dataplane`"],
    );
    assert_errors(
        "workers = \n",
        &["t.toml:1:11: workers: invalid string; expected `\"`, `'`"],
    );
}

#[test]
fn interface_name_rules() {
    let text = TWO_PORTS
        .replace("veth-a", "veth-much-too-long")
        .replace("veth-b", "eth0/1");
    assert_errors(
        &text,
        &[
            r#"t.toml:4:13: ports[0].interface: interface name "veth-much-too-long" is 18 bytes long (Linux allows at most 15)"#,
            r#"t.toml:9:13: ports[1].interface: interface name "eth0/1" contains '/' (Linux forbids '/', ':' and whitespace)"#,
        ],
    );
    let text = TWO_PORTS.replace("veth-b", "veth-a");
    assert_errors(
        &text,
        &[r#"t.toml:9:13: ports[1].interface: interface "veth-a" is already used by ports[0]"#],
    );
    assert_errors(
        "[[ports]]\nname = \"a\"\nbackend = \"afpacket\"\n",
        &["t.toml:1:1: ports[0].interface: required field is missing (an afpacket port needs the Linux interface to attach to)"],
    );
}

#[test]
fn afpacket_ring_geometry() {
    let text = format!("{TWO_PORTS}block_size = 1000000\nblock_count = 0\nframe_size = 100\n");
    assert_errors(
        &text,
        &[
            "t.toml:10:14: ports[1].block_size: block_size must be a power of two, a multiple of the page size (4096) and at most 1073741824, got 1000000",
            "t.toml:11:15: ports[1].block_count: block_count must be in 1..=65536, got 0",
            "t.toml:12:14: ports[1].frame_size: frame_size must be a multiple of 16, at least 128 and at most block_size (1000000), got 100",
        ],
    );
}

#[test]
fn unimplemented_mode() {
    let text = format!(
        "{TWO_PORTS}\n[[networks]]\nname = \"br0\"\nmode = \"routed\"\nports = [\"a\", \"b\"]\n\n\
         [[networks]]\nname = \"x\"\nmode = \"brige\"\nports = []\n"
    );
    assert_errors(
        &text,
        &[
            "t.toml:13:8: networks[0].mode: mode `routed` is not implemented yet",
            r#"t.toml:18:8: networks[1].mode: unknown mode "brige" (expected one of: xconnect, bridge, overlay, macvlan, ipvlan, point-to-point, routed, host, none)"#,
        ],
    );
}

#[test]
fn pcap_files() {
    assert_errors(
        "[[ports]]\nname = \"p\"\nbackend = \"pcap\"\nrx = \"no/such/file.pcap\"\n\n[[ports]]\nname = \"q\"\nbackend = \"pcap\"\n",
        &[
            r#"t.toml:4:6: ports[0].rx: pcap file "no/such/file.pcap" does not exist"#,
            "t.toml:6:1: ports[1]: a pcap port needs rx (a file to read), tx (a file to write) or both",
        ],
    );
    // Relative to the config file's directory, and the message shows the resolved path.
    let dir = configs_dir();
    let file = dir.join("made-up.toml").display().to_string();
    let e = config::parse(
        "[[ports]]\nname = \"p\"\nbackend = \"pcap\"\nrx = \"data/missing.pcap\"\n",
        &file,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{file}:4:6: ports[0].rx: pcap file {:?} does not exist",
            dir.join("data/missing.pcap").display().to_string()
        )
    );
    assert_errors(
        "[[ports]]\nname = \"p\"\nbackend = \"pcap\"\ntx = \"out.pcap\"\nreplay = 2\n",
        &["t.toml:5:10: ports[0].replay: replay needs rx (there is nothing to replay)"],
    );
}

#[test]
fn all_semantic_errors_are_reported_in_file_order() {
    let text = r#"[dataplane]
burst_size = 0

[[ports]]
name = "a"
backend = "afpacket"
interface = "this-name-is-too-long"

[[networks]]
name = "n"
mode = "xconnect"
ports = ["a", "zz", "a"]
"#;
    let e = config::parse(text, "many.toml").unwrap_err();
    let fields: Vec<_> = e
        .diagnostics()
        .iter()
        .map(|d| (d.line, d.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            (2, "dataplane.burst_size"),
            (7, "ports[0].interface"),
            (12, "networks[0].ports"),
            (12, "networks[0].ports[1]"),
            (12, "networks[0].ports[2]"),
        ]
    );
}

#[test]
fn unreadable_file() {
    let e = config::load(Path::new("/no/such/wharf.toml")).unwrap_err();
    let d = &e.diagnostics()[0];
    assert_eq!(
        (d.file.as_str(), d.line, d.col),
        ("/no/such/wharf.toml", 0, 0)
    );
    assert!(
        e.to_string()
            .starts_with("/no/such/wharf.toml: cannot read: "),
        "{e}"
    );
}

#[test]
fn validate_a_config_built_in_code() {
    let mut c: Config = config::parse(config::DEFAULT_LAB_CONFIG, "lab.toml").unwrap();
    c.validate().unwrap();
    c.endpoints[1].gateway = Some("192.168.0.1".parse().unwrap());
    let e = c.validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "<config>: endpoints[1].gateway: gateway 192.168.0.1 is outside the subnet 10.77.0.0/24 of address 10.77.0.2/24"
    );
}

const L2_PORTS: &str = r#"[[ports]]
name = "a"
backend = "afpacket"
interface = "a"

[[ports]]
name = "b"
backend = "afpacket"
interface = "b"

[[ports]]
name = "t"
backend = "afpacket"
interface = "t"
"#;

#[test]
fn bridge_and_macvlan_networks_parse_with_their_options() {
    let text = format!(
        r#"{L2_PORTS}
[[ports]]
name = "u"
backend = "afpacket"
interface = "u"

[[networks]]
name = "red"
mode = "bridge"
ports = ["a"]
trunk_ports = ["t"]
vlan = 10
aging_s = 60
mac_limit = 1000
flood_unknown_unicast = false
gateway_mac = "02:00:00:00:00:fe"

[[networks.static_macs]]
mac = "02:00:00:00:00:01"
port = "t"

[[networks]]
name = "blue"
mode = "bridge"
trunk_ports = ["t"]
ports = []
vlan = 20

[[networks]]
name = "mv"
mode = "macvlan"
uplink = "u"
vlan = 30
ports = ["b"]
"#
    );
    let c = config::parse(&text, "t.toml").unwrap();
    let red = c.networks[0].bridge.as_ref().unwrap();
    assert_eq!(
        (
            red.vlan,
            red.aging_s,
            red.mac_limit,
            red.flood_unknown_unicast
        ),
        (Some(10), 60, 1000, false)
    );
    assert_eq!(red.trunk_ports, ["t"]);
    assert_eq!(red.static_macs[0].port, "t");
    let blue = c.networks[1].bridge.as_ref().unwrap();
    assert_eq!(
        (blue.aging_s, blue.mac_limit, blue.flood_unknown_unicast),
        (300, 65536, true)
    );
    let mv = c.networks[2].macvlan.as_ref().unwrap();
    assert_eq!(
        (mv.uplink.as_str(), mv.vlan, mv.max_macs, mv.allow_host),
        ("u", Some(30), 512, false)
    );
    c.validate().unwrap();
}

#[test]
fn l2_mistakes() {
    let text = format!(
        r#"{L2_PORTS}
[[networks]]
name = "red"
mode = "bridge"
ports = ["a"]
trunk_ports = ["t"]

[[networks]]
name = "blue"
mode = "bridge"
ports = []
trunk_ports = ["t", "a"]
vlan = 4095
uplink = "b"

[[networks.static_macs]]
mac = "02:00:00:00:00:01"
port = "b"

[[networks]]
name = "mv"
mode = "macvlan"
ports = ["b"]
"#
    );
    assert_errors(
        &text,
        &[
            "t.toml:20:15: networks[0].trunk_ports: trunk ports carry the domain tagged: set `vlan` (1..=4094)",
            r#"t.toml:26:21: networks[1].trunk_ports[1]: port "a" is already a member of network "red" (networks[0]); a trunk or uplink port carries networks by VLAN only"#,
            "t.toml:27:8: networks[1].vlan: vlan must be in 1..=4094, got 4095",
            "t.toml:28:10: networks[1].uplink: `uplink` is only for macvlan networks (this one is bridge)",
            r#"t.toml:32:8: networks[1].static_macs[0].port: port "b" is not a member of this bridge (members: t, a)"#,
            "t.toml:34:1: networks[2].uplink: required field is missing (the port to the physical LAN)",
        ],
    );
}

#[test]
fn a_vlan_is_carried_once_per_port_and_uplinks_have_a_mac_ceiling() {
    let text = format!(
        r#"{L2_PORTS}
[[networks]]
name = "red"
mode = "bridge"
ports = []
trunk_ports = ["t"]
vlan = 10

[[networks]]
name = "mv"
mode = "macvlan"
uplink = "t"
vlan = 10
ports = ["a", "b"]
max_macs = 1
"#
    );
    assert_errors(
        &text,
        &[
            r#"t.toml:26:10: networks[1].uplink: port "t" already carries VLAN 10 for networks[0] (networks[0].trunk_ports[0])"#,
            r#"t.toml:28:9: networks[1].ports: uplink "t" would carry 2 endpoint MACs, more than max_macs = 1 (the NIC's unicast filter ceiling; raise max_macs if the NIC takes more)"#,
        ],
    );
}
