//! The L3 part of the config (`[router]`, `addresses` on ports and bridge networks, `[[routes]]`, endpoints'
//! `address6` and `gateway6`) against common mistakes: each must be reported with the right file, line, column,
//! field and reason, all of them at once. And a valid L3 config: its exact typed values, `Config::validate`
//! (which goes through `to_raw`), a TOML round trip and compilation.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use control::compile::{compile, CompileEnv};
use control::config::{
    self, Config, IpCidr, Ipv6Cidr, RouteCfg, RouteKind, RouterCfg, DEFAULT_FIB6_GROUPS,
    DEFAULT_ICMP_RATE, DEFAULT_MTU, DEFAULT_NEIGHBOR_CAPACITY, DEFAULT_REACHABLE_S,
    DEFAULT_STALE_S, DEFAULT_TBL8_GROUPS,
};

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

/// Parses `text`, which must be valid, and checks that it validates and compiles too.
#[track_caller]
fn valid(text: &str) -> Config {
    let c = config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}\nfor:\n{text}"));
    c.validate().unwrap_or_else(|e| panic!("{e}\nfor:\n{text}"));
    compile(&c, 1, CompileEnv::default()).unwrap_or_else(|e| panic!("{e}\nfor:\n{text}"));
    c
}

fn cidr(s: &str) -> IpCidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A routed port `up` (line 5: its addresses) and a bridge `red` whose gateway is the router (line 16), both
/// families; what a test adds starts on line 17.
const BASE: &str = r#"[[ports]]
name = "up"
backend = "afpacket"
interface = "wh-up"
addresses = ["192.0.2.1/24", "2001:db8:1::1/64"]

[[ports]]
name = "a"
backend = "afpacket"
interface = "wh-a"

[[networks]]
name = "red"
mode = "bridge"
ports = ["a"]
addresses = ["10.81.1.1/24", "fd00:81:1::1/64"]
"#;

fn with_base(tail: &str) -> String {
    format!("{BASE}{tail}")
}

/// Four ring ports in a bridge `red` whose gateway is the router (line 25); endpoints start on line 26.
const FOUR_HOSTS: &str = r#"[[ports]]
name = "a"
backend = "ring"
peer = "xa"

[[ports]]
name = "b"
backend = "ring"
peer = "xb"

[[ports]]
name = "c"
backend = "ring"
peer = "xc"

[[ports]]
name = "d"
backend = "ring"
peer = "xd"

[[networks]]
name = "red"
mode = "bridge"
ports = ["a", "b", "c", "d"]
addresses = ["10.81.1.1/24", "fd00:81:1::1/64"]
"#;

fn with_hosts(tail: &str) -> String {
    format!("{FOUR_HOSTS}{tail}")
}

/// Every field of the L3 part, valid.
const FULL: &str = r#"# Every L3 field.
[dataplane]
data_room = 9216

[router]
mtu = 9000
icmp_rate = 0
drop_ip_options = true
neighbor_reachable_s = 15
neighbor_stale_s = 15
neighbor_capacity = 1024
fib_tbl8_groups = 64
fib6_groups = 128
echo_port = 7007

[[ports]]
name = "up"
backend = "afpacket"
interface = "eth0"
addresses = ["192.0.2.1/31", "2001:db8::1/127"]

[[ports]]
name = "a"
backend = "afpacket"
interface = "wh-a"

[[ports]]
name = "b"
backend = "afpacket"
interface = "wh-b"

[[networks]]
name = "red"
mode = "bridge"
ports = ["a", "b"]
gateway_mac = "02:00:00:00:00:fe"
addresses = ["10.81.1.1/24", "fd00:81:1::1/64"]

[[endpoints]]
name = "a"
network = "red"
port = "a"
address = "10.81.1.2/24"
gateway = "10.81.1.1"
address6 = "fd00:81:1::2/64"
gateway6 = "fd00:81:1::1"

[[endpoints]]
name = "b"
network = "red"
port = "b"
address = "10.81.1.3/24"
address6 = "fd00:81:1::3/64"
gateway6 = "fe80::1"

[[routes]]
prefix = "0.0.0.0/0"
via = ["192.0.2.0"]

[[routes]]
prefix = "::/0"
via = ["2001:db8::"]

[[routes]]
prefix = "10.90.0.0/16"
via = ["10.81.1.253", "10.81.1.254"]
type = "forward"

[[routes]]
prefix = "10.66.0.0/16"
type = "blackhole"

[[routes]]
prefix = "fd00:66::/32"
type = "unreachable"

[[routes]]
prefix = "10.81.1.128/25"
via = ["10.81.1.254"]
"#;

#[test]
fn full_l3_config_has_the_typed_values() {
    let c = valid(FULL);
    assert_eq!(
        c.router,
        RouterCfg {
            mtu: 9000,
            icmp_rate: 0,
            drop_ip_options: true,
            neighbor_reachable_s: 15,
            neighbor_stale_s: 15,
            neighbor_capacity: 1024,
            fib_tbl8_groups: 64,
            fib6_groups: 128,
            echo_port: 7007,
        }
    );
    assert_eq!(
        c.ports[0].addresses,
        [cidr("192.0.2.1/31"), cidr("2001:db8::1/127")]
    );
    assert!(c.ports[1].addresses.is_empty() && c.ports[2].addresses.is_empty());
    assert_eq!(
        c.networks[0].addresses,
        [cidr("10.81.1.1/24"), cidr("fd00:81:1::1/64")]
    );
    let e = &c.endpoints;
    assert_eq!(
        e[0].address6,
        Some("fd00:81:1::2/64".parse::<Ipv6Cidr>().unwrap())
    );
    assert_eq!(e[0].gateway6, Some("fd00:81:1::1".parse().unwrap()));
    assert_eq!(
        e[1].address6,
        Some("fd00:81:1::3/64".parse::<Ipv6Cidr>().unwrap())
    );
    // A link-local gateway is outside the prefix but on the link.
    assert_eq!(e[1].gateway6, Some("fe80::1".parse().unwrap()));
    let route = |prefix: &str, via: &[&str], kind| RouteCfg {
        prefix: cidr(prefix),
        via: via.iter().map(|v| ip(v)).collect(),
        kind,
    };
    assert_eq!(
        c.routes,
        [
            // /31 and /127 have no network or broadcast address: both ends are hosts (RFC 3021, RFC 6164).
            route("0.0.0.0/0", &["192.0.2.0"], RouteKind::Forward),
            route("::/0", &["2001:db8::"], RouteKind::Forward),
            route(
                "10.90.0.0/16",
                &["10.81.1.253", "10.81.1.254"],
                RouteKind::Forward
            ),
            route("10.66.0.0/16", &[], RouteKind::Blackhole),
            route("fd00:66::/32", &[], RouteKind::Unreachable),
            // More specific than a connected subnet: allowed, longest prefix wins.
            route("10.81.1.128/25", &["10.81.1.254"], RouteKind::Forward),
        ]
    );
}

#[test]
fn full_l3_config_round_trips() {
    let c = valid(FULL);
    // Through TOML: what `wharf` would write back parses to the same config.
    let text = toml::to_string(&c).unwrap();
    assert_eq!(valid(&text), c, "{text}");
    // `validate` goes through `to_raw`: the config written back in raw form checks clean.
    c.validate().unwrap();
}

#[test]
fn validate_reports_l3_mistakes_made_in_code() {
    let mut c = valid(FULL);
    c.endpoints[0].gateway6 = Some("fd00:99::1".parse().unwrap());
    c.router.mtu = 1279;
    c.routes.push(RouteCfg {
        prefix: cidr("10.5.0.0/16"),
        via: vec![ip("10.9.9.9")],
        kind: RouteKind::Forward,
    });
    c.routes.push(RouteCfg {
        prefix: cidr("10.6.0.0/16"),
        via: vec![ip("10.81.1.254")],
        kind: RouteKind::Blackhole,
    });
    c.networks[0].addresses.push(cidr("10.81.2.0/24"));
    let e = c.validate().unwrap_err();
    let lines: Vec<_> = e.to_string().lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "<config>: endpoints[0].gateway6: gateway6 fd00:99::1 is outside the prefix fd00:81:1::/64 of address6 \
             fd00:81:1::2/64 (and not link-local)",
            "<config>: router.mtu: mtu must be in 1280..=9000, got 1279",
            "<config>: networks[0].addresses[2]: 10.81.2.0 is the network address (host part all zero) of \
             10.81.2.0/24, not a host address",
            "<config>: routes[6].via[0]: gateway 10.9.9.9 is on no connected subnet (the router's IPv4 subnets are: \
             192.0.2.0/31, 10.81.1.0/24)",
            "<config>: routes[7].via: a blackhole route drops what it matches and takes no `via`",
        ]
    );
}

#[test]
fn router_defaults_when_absent() {
    let c = valid(BASE);
    assert_eq!(c.router, RouterCfg::default());
    assert_eq!(
        c.router,
        RouterCfg {
            mtu: 1500,
            icmp_rate: 1000,
            drop_ip_options: false,
            neighbor_reachable_s: 30,
            neighbor_stale_s: 600,
            neighbor_capacity: 65536,
            fib_tbl8_groups: 16384,
            fib6_groups: 65536,
            echo_port: 7,
        }
    );
    assert_eq!(
        (
            DEFAULT_MTU,
            DEFAULT_ICMP_RATE,
            DEFAULT_REACHABLE_S,
            DEFAULT_STALE_S,
            DEFAULT_NEIGHBOR_CAPACITY,
            DEFAULT_TBL8_GROUPS,
            DEFAULT_FIB6_GROUPS
        ),
        (1500, 1000, 30, 600, 65536, 16384, 65536)
    );
    assert!(c.routes.is_empty());
    // An empty [router] is the defaults too, and so is a file without anything L3.
    assert_eq!(valid(&format!("[router]\n{BASE}")).router, c.router);
    let plain = valid("[[ports]]\nname = \"p\"\nbackend = \"ring\"\npeer = \"x\"\n");
    assert_eq!(plain.router, RouterCfg::default());
    assert!(plain.ports[0].addresses.is_empty() && plain.routes.is_empty());
}

#[test]
fn shipped_routed_lab_config() {
    // `configs/*.toml` are all checked by config_errors.rs (every_shipped_config_parses_and_validates) and
    // cli.rs (check_accepts_every_shipped_config); this pins what lab-routed.toml says.
    let path = configs_dir().join("lab-routed.toml");
    let c = config::load(&path).unwrap();
    c.validate().unwrap();
    compile(&c, 1, CompileEnv::default()).unwrap();
    assert_eq!(c.router, RouterCfg::default());
    let nets: Vec<_> = c
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.addresses.clone()))
        .collect();
    assert_eq!(
        nets,
        [
            ("red", vec![cidr("10.81.1.1/24"), cidr("fd00:81:1::1/64")]),
            ("blue", vec![cidr("10.81.2.1/24"), cidr("fd00:81:2::1/64")]),
        ]
    );
    let v6: Vec<_> = c
        .endpoints
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.address6.unwrap().to_string(),
                e.gateway6.unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        v6,
        [
            ("a", "fd00:81:1::2/64".into(), "fd00:81:1::1".into()),
            ("b", "fd00:81:1::3/64".into(), "fd00:81:1::1".into()),
            ("c", "fd00:81:2::2/64".into(), "fd00:81:2::1".into()),
        ]
    );
    assert!(c.routes.is_empty() && c.ports.iter().all(|p| p.addresses.is_empty()));
    let again = toml::to_string(&c).unwrap();
    assert_eq!(config::parse(&again, "again.toml").unwrap(), c);
}

#[test]
fn bad_cidr_strings() {
    assert_errors(
        r#"[[ports]]
name = "p"
backend = "ring"
peer = "xp"
addresses = ["10.0.0.1", "10.0.0/24", "10.0.0.1/33", "x/8", "", "fd00::1", "fd00::g/64", "fd00::1/129", "10.0.0.1/+8"]

[[ports]]
name = "q"
backend = "ring"
peer = "xq"

[[networks]]
name = "red"
mode = "bridge"
ports = ["q"]
addresses = ["10.9.0.1/24", "10.9.1.1/8x", "fd00:9::1/64 "]
"#,
        &[
            r#"t.toml:5:14: ports[0].addresses[0]: invalid IP CIDR "10.0.0.1": expected ADDRESS/PREFIX, like 10.77.0.1/24 or fd00:1::1/64"#,
            r#"t.toml:5:26: ports[0].addresses[1]: invalid IP CIDR "10.0.0/24": "10.0.0" is not an IP address"#,
            r#"t.toml:5:39: ports[0].addresses[2]: invalid IPv4 CIDR "10.0.0.1/33": prefix length "33" is not a number in 0..=32"#,
            r#"t.toml:5:54: ports[0].addresses[3]: invalid IP CIDR "x/8": "x" is not an IP address"#,
            r#"t.toml:5:61: ports[0].addresses[4]: invalid IP CIDR "": expected ADDRESS/PREFIX, like 10.77.0.1/24 or fd00:1::1/64"#,
            r#"t.toml:5:65: ports[0].addresses[5]: invalid IPv6 CIDR "fd00::1": expected ADDRESS/PREFIX, like fd00:1::1/64"#,
            r#"t.toml:5:76: ports[0].addresses[6]: invalid IPv6 CIDR "fd00::g/64": "fd00::g" is not an IPv6 address"#,
            r#"t.toml:5:90: ports[0].addresses[7]: invalid IPv6 CIDR "fd00::1/129": prefix length "129" is not a number in 0..=128"#,
            r#"t.toml:5:105: ports[0].addresses[8]: invalid IPv4 CIDR "10.0.0.1/+8": prefix length "+8" is not a number in 0..=32"#,
            r#"t.toml:16:29: networks[0].addresses[1]: invalid IPv4 CIDR "10.9.1.1/8x": prefix length "8x" is not a number in 0..=32"#,
            r#"t.toml:16:44: networks[0].addresses[2]: invalid IPv6 CIDR "fd00:9::1/64 ": prefix length "64 " is not a number in 0..=128"#,
        ],
    );
}

#[test]
fn reserved_interface_addresses() {
    assert_errors(
        r#"[[ports]]
name = "p"
backend = "ring"
peer = "xp"
addresses = ["10.1.0.0/24", "10.2.0.255/24", "127.0.0.1/8", "224.0.0.1/24", "169.254.1.1/16", "0.0.0.0/8", "10.3.0.1/0", "255.255.255.255/32"]

[[ports]]
name = "q"
backend = "ring"
peer = "xq"
addresses = ["::/64", "::1/128", "ff02::1/64", "fe80::1/64", "fd00:1::/64", "fd00:2::1/0", "::ffff:10.0.0.1/96"]
"#,
        &[
            "t.toml:5:14: ports[0].addresses[0]: 10.1.0.0 is the network address (host part all zero) of 10.1.0.0/24, not a host address",
            "t.toml:5:29: ports[0].addresses[1]: 10.2.0.255 is the broadcast address (host part all ones) of 10.2.0.0/24, not a host address",
            "t.toml:5:46: ports[0].addresses[2]: 127.0.0.1 is a loopback address, not a host address",
            "t.toml:5:61: ports[0].addresses[3]: 224.0.0.1 is a multicast address, not a host address",
            "t.toml:5:77: ports[0].addresses[4]: 169.254.1.1 is link-local (169.254.0.0/16), which routers do not forward; give a private or global address",
            "t.toml:5:95: ports[0].addresses[5]: 0.0.0.0 is unspecified, not a host address",
            "t.toml:5:108: ports[0].addresses[6]: prefix length 0 in 10.3.0.1/0 leaves no subnet; use 1..=32",
            "t.toml:5:122: ports[0].addresses[7]: 255.255.255.255 is the broadcast address, not a host address",
            "t.toml:11:14: ports[1].addresses[0]: :: is unspecified, not a host address",
            "t.toml:11:23: ports[1].addresses[1]: ::1 is the loopback address, not a host address",
            "t.toml:11:34: ports[1].addresses[2]: ff02::1 is a multicast address, not a host address",
            "t.toml:11:48: ports[1].addresses[3]: fe80::1 is link-local; every interface has its own (from its MAC), give a global or unique-local one",
            "t.toml:11:62: ports[1].addresses[4]: fd00:1:: is the subnet-router anycast address of fd00:1::/64 (host part all zero), not a host address",
            "t.toml:11:77: ports[1].addresses[5]: prefix length 0 in fd00:2::1/0 leaves no subnet; use 1..=128",
            "t.toml:11:92: ports[1].addresses[6]: ::ffff:10.0.0.1 is an IPv4-mapped address (::ffff:0:0/96), not an IPv6 host address; write 10.0.0.1 as an IPv4 address",
        ],
    );
    // /31, /32, /127 and /128 have no reserved addresses.
    let c = valid(
        "[[ports]]\nname = \"p\"\nbackend = \"ring\"\npeer = \"xp\"\n\
         addresses = [\"10.1.0.0/31\", \"10.2.0.1/32\", \"fd00:1::/127\", \"fd00:2::/128\"]\n",
    );
    assert_eq!(c.ports[0].addresses.len(), 4);
}

#[test]
fn overlapping_subnets() {
    assert_errors(
        r#"[[ports]]
name = "p"
backend = "ring"
peer = "xp"
addresses = ["10.1.0.1/16", "fd00:1::1/48"]

[[ports]]
name = "q"
backend = "ring"
peer = "xq"
addresses = ["10.2.0.1/24", "10.2.0.2/24"]

[[ports]]
name = "a"
backend = "ring"
peer = "xa"

[[ports]]
name = "b"
backend = "ring"
peer = "xb"

[[networks]]
name = "red"
mode = "bridge"
ports = ["a"]
addresses = ["10.1.7.1/24", "fd00:7::1/64"]

[[networks]]
name = "blue"
mode = "bridge"
ports = ["b"]
addresses = ["10.0.0.1/8", "10.3.0.1/24", "fd00:7::2/64", "fd00:1:0:2::1/64"]
"#,
        &[
            "t.toml:11:29: ports[1].addresses[1]: 10.2.0.2/24 overlaps 10.2.0.1/24 (ports[1].addresses[0]) on the same interface; give an interface one address per subnet",
            // Port and network.
            "t.toml:27:14: networks[0].addresses[0]: 10.1.7.1/24 overlaps 10.1.0.1/16 (ports[0].addresses[0]); each router interface needs its own subnet",
            "t.toml:33:14: networks[1].addresses[0]: 10.0.0.1/8 overlaps 10.1.0.1/16 (ports[0].addresses[0]); each router interface needs its own subnet",
            // Network and network.
            "t.toml:33:43: networks[1].addresses[2]: fd00:7::2/64 overlaps fd00:7::1/64 (networks[0].addresses[1]); each router interface needs its own subnet",
            "t.toml:33:59: networks[1].addresses[3]: fd00:1:0:2::1/64 overlaps fd00:1::1/48 (ports[0].addresses[1]); each router interface needs its own subnet",
        ],
    );
}

#[test]
fn addresses_only_on_bridges_and_routed_ports() {
    assert_errors(
        r#"[[ports]]
name = "a"
backend = "ring"
peer = "xa"
addresses = ["10.1.0.1/24"]

[[ports]]
name = "b"
backend = "ring"
peer = "xb"

[[ports]]
name = "t"
backend = "ring"
peer = "xt"
addresses = ["10.2.0.1/24"]

[[ports]]
name = "u"
backend = "ring"
peer = "xu"
addresses = ["10.3.0.1/24"]

[[ports]]
name = "m"
backend = "ring"
peer = "xm"

[[networks]]
name = "patch"
mode = "xconnect"
ports = ["a", "b"]
addresses = ["10.4.0.1/24"]

[[networks]]
name = "red"
mode = "bridge"
ports = ["m"]
trunk_ports = ["t"]
vlan = 10

[[networks]]
name = "mv"
mode = "macvlan"
ports = []
uplink = "u"
addresses = ["10.5.0.1/24", "bad"]

[[routes]]
prefix = "10.8.0.0/16"
via = ["10.4.0.2", "10.5.0.2"]
"#,
        &[
            r#"t.toml:5:13: ports[0].addresses: port "a" is in network "patch" (networks[0]); a port with addresses is a routed port, which is in no network"#,
            r#"t.toml:16:13: ports[2].addresses: port "t" is in network "red" (networks[1]); a port with addresses is a routed port, which is in no network (to route for "red", give the network the addresses)"#,
            r#"t.toml:22:13: ports[3].addresses: port "u" is in network "mv" (networks[2]); a port with addresses is a routed port, which is in no network"#,
            "t.toml:33:13: networks[0].addresses: `addresses` (the router's gateway addresses) is only for bridge networks (this one is xconnect)",
            "t.toml:47:13: networks[2].addresses: `addresses` (the router's gateway addresses) is only for bridge networks (this one is macvlan)",
        ],
    );
    // With a misspelt mode, the mode is the mistake: the addresses are checked as a bridge's.
    assert_errors(
        r#"[[ports]]
name = "a"
backend = "ring"
peer = "xa"

[[networks]]
name = "red"
mode = "brige"
ports = ["a"]
addresses = ["10.1.0.1/24"]
"#,
        &[
            r#"t.toml:8:8: networks[0].mode: unknown mode "brige" (expected one of: xconnect, bridge, overlay, macvlan, ipvlan, point-to-point, routed, host, none)"#,
        ],
    );
    // A bridge member with addresses of its own.
    assert_errors(
        &BASE.replace("ports = [\"a\"]", "ports = [\"a\", \"up\"]"),
        &[
            r#"t.toml:5:13: ports[0].addresses: port "up" is in network "red" (networks[0]); a port with addresses is a routed port, which is in no network (to route for "red", give the network the addresses)"#,
        ],
    );
}

#[test]
fn router_out_of_range() {
    assert_errors(
        r#"[router]
mtu = 1279
icmp_rate = -1
neighbor_reachable_s = 0
neighbor_stale_s = 86401
neighbor_capacity = 63
fib_tbl8_groups = 15
echo_port = -1
fib6_groups = 15
"#,
        &[
            "t.toml:2:7: router.mtu: mtu must be in 1280..=9000, got 1279",
            "t.toml:3:13: router.icmp_rate: icmp_rate must be in 0..=1000000, got -1",
            "t.toml:4:24: router.neighbor_reachable_s: neighbor_reachable_s must be in 1..=86400, got 0",
            "t.toml:5:20: router.neighbor_stale_s: neighbor_stale_s must be in 1..=86400, got 86401",
            "t.toml:6:21: router.neighbor_capacity: neighbor_capacity must be in 64..=4194304, got 63",
            "t.toml:7:19: router.fib_tbl8_groups: fib_tbl8_groups must be in 16..=1048576, got 15",
            "t.toml:8:13: router.echo_port: echo_port must be in 0..=65535, got -1",
            "t.toml:9:15: router.fib6_groups: fib6_groups must be in 16..=4194304, got 15",
        ],
    );
    assert_errors(
        r#"[dataplane]
data_room = 9216

[router]
mtu = 9001
icmp_rate = 1000001
neighbor_reachable_s = 86401
neighbor_stale_s = 0
neighbor_capacity = 4194305
fib_tbl8_groups = 1048577
echo_port = 65536
fib6_groups = 4194305
"#,
        &[
            "t.toml:5:7: router.mtu: mtu must be in 1280..=9000, got 9001",
            "t.toml:6:13: router.icmp_rate: icmp_rate must be in 0..=1000000, got 1000001",
            "t.toml:7:24: router.neighbor_reachable_s: neighbor_reachable_s must be in 1..=86400, got 86401",
            "t.toml:8:20: router.neighbor_stale_s: neighbor_stale_s must be in 1..=86400, got 0",
            "t.toml:9:21: router.neighbor_capacity: neighbor_capacity must be in 64..=4194304, got 4194305",
            "t.toml:10:19: router.fib_tbl8_groups: fib_tbl8_groups must be in 16..=1048576, got 1048577",
            "t.toml:11:13: router.echo_port: echo_port must be in 0..=65535, got 65536",
            "t.toml:12:15: router.fib6_groups: fib6_groups must be in 16..=4194304, got 4194305",
        ],
    );
    // The edges are accepted.
    let low = valid(
        "[router]\nmtu = 1280\nicmp_rate = 0\nneighbor_reachable_s = 1\nneighbor_stale_s = 1\n\
         neighbor_capacity = 64\nfib_tbl8_groups = 16\nfib6_groups = 16\necho_port = 0\n",
    );
    assert_eq!(
        low.router,
        RouterCfg {
            mtu: 1280,
            icmp_rate: 0,
            drop_ip_options: false,
            neighbor_reachable_s: 1,
            neighbor_stale_s: 1,
            neighbor_capacity: 64,
            fib_tbl8_groups: 16,
            fib6_groups: 16,
            echo_port: 0,
        }
    );
    let high = valid(
        "[dataplane]\ndata_room = 9216\n[router]\nmtu = 9000\nicmp_rate = 1000000\n\
         neighbor_reachable_s = 86400\nneighbor_stale_s = 86400\nneighbor_capacity = 4194304\n\
         fib_tbl8_groups = 1048576\nfib6_groups = 4194304\necho_port = 65535\n",
    );
    assert_eq!(high.router.neighbor_capacity, 4_194_304);
    assert_eq!(high.router.echo_port, 65_535);
    assert_eq!(high.router.fib_tbl8_groups, 1_048_576);
    assert_eq!(high.router.fib6_groups, 4_194_304);
}

#[test]
fn neighbor_stale_shorter_than_reachable() {
    assert_errors(
        "[router]\nneighbor_reachable_s = 60\nneighbor_stale_s = 30\n",
        &["t.toml:3:20: router.neighbor_stale_s: neighbor_stale_s = 30 is shorter than neighbor_reachable_s = 60: \
           neighbours would be forgotten before they are asked again; make it at least 60"],
    );
    assert_errors(
        "[router]\nneighbor_stale_s = 10\n",
        &["t.toml:2:20: router.neighbor_stale_s: neighbor_stale_s = 10 is shorter than neighbor_reachable_s = 30 \
           (the default): neighbours would be forgotten before they are asked again; make it at least 30"],
    );
}

#[test]
fn mtu_must_fit_the_buffers() {
    assert_errors(
        "[router]\nmtu = 2031\n",
        &["t.toml:2:7: router.mtu: mtu 2031 needs frames of 2049 bytes (the MTU, an Ethernet header and a VLAN \
           tag), more than the buffers' data_room of 2048: raise data_room in [dataplane]"],
    );
    assert_eq!(valid("[router]\nmtu = 2030\n").router.mtu, 2030);
    assert_errors(
        "[dataplane]\ndata_room = 4096\n\n[router]\nmtu = 9000\n",
        &["t.toml:5:7: router.mtu: mtu 9000 needs frames of 9018 bytes (the MTU, an Ethernet header and a VLAN \
           tag), more than the buffers' data_room of 4096: raise data_room in [dataplane]"],
    );
    // A bad data_room is reported alone.
    assert_errors(
        "[dataplane]\ndata_room = 100\n\n[router]\nmtu = 9000\n",
        &["t.toml:2:13: dataplane.data_room: data_room must be in 1518..=9216, got 100"],
    );
}

#[test]
fn router_type_errors_and_typos() {
    assert_errors(
        "[router]\nmtu = \"1500\"\n",
        &[r#"t.toml:2:7: router.mtu: expected an integer, found string "1500""#],
    );
    assert_errors(
        "[router]\nneighbour_capacity = 1024\n",
        &[
            r#"t.toml:2:1: router.neighbour_capacity: unknown field "neighbour_capacity" (did you mean "neighbor_capacity"?)"#,
        ],
    );
    assert_errors(
        &with_base("\n[[routes]]\nprefix = \"10.8.0.0/16\"\nvia = \"192.0.2.254\"\n"),
        &[r#"t.toml:20:7: routes[0].via: expected an array, found string "192.0.2.254""#],
    );
    assert_errors(
        &with_base("\n[[routes]]\nprefix = \"10.8.0.0/16\"\ntyp = \"blackhole\"\n"),
        &[r#"t.toml:20:1: routes[0].typ: unknown field "typ" (did you mean "type"?)"#],
    );
}

#[test]
fn route_prefixes() {
    assert_errors(
        &with_base(
            r#"
[[routes]]
via = ["192.0.2.254"]

[[routes]]
prefix = "10.8.0.1/16"
via = ["192.0.2.254"]

[[routes]]
prefix = "10.8.0.0/16"
via = ["192.0.2.254"]

[[routes]]
prefix = "10.8.0.0/16"
type = "blackhole"

[[routes]]
prefix = "fd00:8::/32"
type = "unreachable"

[[routes]]
prefix = "fd00:8:0::/32"
type = "blackhole"

[[routes]]
prefix = "2001:db8:77::1/48"
type = "blackhole"

[[routes]]
prefix = "10.8.0.0"
type = "blackhole"

[[routes]]
prefix = "10.81.1.0/24"
type = "blackhole"

[[routes]]
prefix = "fd00:81:1::1/128"
type = "unreachable"
"#,
        ),
        &[
            "t.toml:18:1: routes[0].prefix: required field is missing (a destination prefix like 10.8.0.0/16, 0.0.0.0/0 or ::/0)",
            "t.toml:22:10: routes[1].prefix: 10.8.0.1/16 has host bits set; the prefix is 10.8.0.0/16",
            "t.toml:30:10: routes[3].prefix: 10.8.0.0/16 is already routed by routes[2]",
            "t.toml:38:10: routes[5].prefix: fd00:8::/32 is already routed by routes[4]",
            "t.toml:42:10: routes[6].prefix: 2001:db8:77::1/48 has host bits set; the prefix is 2001:db8:77::/48",
            r#"t.toml:46:10: routes[7].prefix: invalid IP CIDR "10.8.0.0": expected ADDRESS/PREFIX, like 10.77.0.1/24 or fd00:1::1/64"#,
            "t.toml:50:10: routes[8].prefix: 10.81.1.0/24 is the connected subnet of networks[0].addresses[0] (10.81.1.1/24); a static route would replace it",
            "t.toml:54:10: routes[9].prefix: fd00:81:1::1/128 is the router's own address (networks[0].addresses[1]); a static route would replace its local route",
        ],
    );
}

#[test]
fn route_types_and_via() {
    assert_errors(
        &with_base(
            r#"
[[routes]]
prefix = "10.8.0.0/16"
type = "static"

[[routes]]
prefix = "10.9.0.0/16"

[[routes]]
prefix = "10.10.0.0/16"
via = []

[[routes]]
prefix = "10.11.0.0/16"
type = "blackhole"
via = ["10.81.1.254"]

[[routes]]
prefix = "fd00:12::/32"
type = "unreachable"
via = ["fd00:81:1::fe"]

[[routes]]
prefix = "10.13.0.0/16"
type = "forward"
via = ["10.81.1.254"]
"#,
        ),
        &[
            r#"t.toml:20:8: routes[0].type: unknown route type "static" (expected one of: forward, blackhole, unreachable)"#,
            r#"t.toml:22:1: routes[1].via: required field is missing: a forward route (the default type) needs at least one gateway in `via`; for a route that drops, set type = "blackhole" or "unreachable""#,
            "t.toml:27:7: routes[2].via: `via` is empty: a forward route needs at least one gateway",
            "t.toml:32:7: routes[3].via: a blackhole route drops what it matches and takes no `via`",
            "t.toml:37:7: routes[4].via: an unreachable route answers ICMP destination unreachable and takes no `via`",
        ],
    );
}

#[test]
fn route_gateways() {
    assert_errors(
        &with_base(
            r#"
[[routes]]
prefix = "10.8.0.0/16"
via = ["fd00:81:1::fe", "10.81.1.1", "10.9.9.9", "10.81.1.254", "10.81.1.254", "x", "10.81.1.255", "10.81.1.0"]

[[routes]]
prefix = "::/0"
via = ["192.0.2.254", "fe80::1", "2001:db8:1::1", "2001:db8:2::1", "2001:db8:1::fe"]
"#,
        ),
        &[
            "t.toml:20:8: routes[0].via[0]: gateway fd00:81:1::fe is IPv6 but the prefix 10.8.0.0/16 is IPv4",
            "t.toml:20:25: routes[0].via[1]: gateway 10.81.1.1 is one of the router's own addresses (networks[0].addresses[0])",
            "t.toml:20:38: routes[0].via[2]: gateway 10.9.9.9 is on no connected subnet (the router's IPv4 subnets are: 192.0.2.0/24, 10.81.1.0/24)",
            "t.toml:20:65: routes[0].via[4]: gateway 10.81.1.254 is listed twice",
            r#"t.toml:20:80: routes[0].via[5]: invalid IP address "x""#,
            "t.toml:20:85: routes[0].via[6]: gateway 10.81.1.255 is the broadcast address of 10.81.1.0/24",
            "t.toml:20:100: routes[0].via[7]: gateway 10.81.1.0 is the network address of 10.81.1.0/24",
            "t.toml:24:8: routes[1].via[0]: gateway 192.0.2.254 is IPv4 but the prefix ::/0 is IPv6",
            "t.toml:24:23: routes[1].via[1]: gateway fe80::1 is link-local; give the neighbour's address on a connected subnet (the router's IPv6 subnets are: 2001:db8:1::/64, fd00:81:1::/64)",
            "t.toml:24:34: routes[1].via[2]: gateway 2001:db8:1::1 is one of the router's own addresses (ports[0].addresses[1])",
            "t.toml:24:51: routes[1].via[3]: gateway 2001:db8:2::1 is on no connected subnet (the router's IPv6 subnets are: 2001:db8:1::/64, fd00:81:1::/64)",
        ],
    );
    // No router address of the gateway's family at all.
    assert_errors(
        r#"[[ports]]
name = "up"
backend = "ring"
peer = "x"
addresses = ["192.0.2.1/24"]

[[routes]]
prefix = "::/0"
via = ["2001:db8::1"]

[[routes]]
prefix = "0.0.0.0/0"
via = ["192.0.2.254"]
"#,
        &["t.toml:9:8: routes[0].via[0]: gateway 2001:db8::1 is on no connected subnet (the router has no IPv6 \
           address: give a routed port or a bridge network IPv6 `addresses`)"],
    );
}

#[test]
fn gateways_through_bad_interface_addresses_are_not_reported_twice() {
    // The good addresses of a list with a bad one still make connected subnets.
    assert_errors(
        r#"[[ports]]
name = "up"
backend = "ring"
peer = "x"
addresses = ["192.0.2.1/24", "10.0.0.0/8"]

[[routes]]
prefix = "0.0.0.0/0"
via = ["192.0.2.254"]
"#,
        &["t.toml:5:30: ports[0].addresses[1]: 10.0.0.0 is the network address (host part all zero) of 10.0.0.0/8, \
           not a host address"],
    );
}

#[test]
fn ipv4_fib_groups_must_suffice() {
    // The router's address takes the group of its /24, each route longer than /24 that of its own.
    let routes = |n: usize| -> String {
        (0..n)
            .map(|k| format!("\n[[routes]]\nprefix = \"10.1.{k}.0/25\"\ntype = \"blackhole\"\n"))
            .collect()
    };
    let text = |n: usize| {
        format!(
            "[router]\nfib_tbl8_groups = 16\n\n[[ports]]\nname = \"up\"\nbackend = \"ring\"\npeer = \"x\"\n\
             addresses = [\"192.0.2.1/24\"]\n{}",
            routes(n)
        )
    };
    assert_eq!(valid(&text(15)).routes.len(), 15);
    assert_errors(
        &text(16),
        &["t.toml:2:19: router.fib_tbl8_groups: the IPv4 FIB needs 17 groups (one per /24 holding a router \
           address or a route longer than /24), more than fib_tbl8_groups = 16"],
    );
}

#[test]
fn endpoint_ipv6() {
    assert_errors(
        &with_hosts(
            r#"
[[endpoints]]
name = "e1"
network = "red"
port = "a"
address = "10.81.1.2/24"
address6 = "fd00:81:1::2"
gateway6 = "fd00:81:1::1"

[[endpoints]]
name = "e2"
network = "red"
port = "b"
address = "10.81.1.3/24"
gateway6 = "fd00:81:1::1"

[[endpoints]]
name = "e3"
network = "red"
port = "c"
address = "10.81.1.4/24"
address6 = "fd00:81:1::4/64"
gateway6 = "fd00:82::1"

[[endpoints]]
name = "e4"
network = "red"
port = "d"
address = "10.81.1.5/24"
address6 = "fd00:81:1::5/64"
gateway6 = "fd00:81:1::5"
"#,
        ),
        &[
            r#"t.toml:32:12: endpoints[0].address6: invalid IPv6 CIDR "fd00:81:1::2": expected ADDRESS/PREFIX, like fd00:1::1/64"#,
            "t.toml:40:12: endpoints[1].gateway6: gateway6 needs address6 (the endpoint's IPv6 address and prefix length)",
            "t.toml:48:12: endpoints[2].gateway6: gateway6 fd00:82::1 is outside the prefix fd00:81:1::/64 of address6 fd00:81:1::4/64 (and not link-local)",
            "t.toml:56:12: endpoints[3].gateway6: gateway6 fd00:81:1::5 is the endpoint's own address",
        ],
    );
    assert_errors(
        &with_hosts(
            r#"
[[endpoints]]
name = "e1"
network = "red"
port = "a"
address = "10.81.1.1/24"
address6 = "fe80::2/64"

[[endpoints]]
name = "e2"
network = "red"
port = "b"
address = "10.81.1.3/24"
address6 = "fd00:81:1::1/64"
gateway6 = "fe80::1"

[[endpoints]]
name = "e3"
network = "red"
port = "c"
address = "10.81.1.4/24"
address6 = "fd00:81:1::4/64"
gateway6 = "fd00:81:1::zz"

[[endpoints]]
name = "e4"
network = "red"
port = "d"
address = "10.81.1.5/24"
address6 = "fd00:81:1::4/64"
"#,
        ),
        &[
            "t.toml:31:11: endpoints[0].address: address 10.81.1.1 is one of the router's own addresses (networks[0].addresses[0])",
            "t.toml:32:12: endpoints[0].address6: fe80::2 is link-local; every interface has its own (from its MAC), give a global or unique-local one",
            "t.toml:39:12: endpoints[1].address6: address fd00:81:1::1 is one of the router's own addresses (networks[0].addresses[1])",
            r#"t.toml:48:12: endpoints[2].gateway6: invalid IPv6 address "fd00:81:1::zz""#,
            "t.toml:55:12: endpoints[3].address6: address fd00:81:1::4 is already used by endpoints[2]",
        ],
    );
    assert_errors(
        &with_hosts(
            r#"
[[endpoints]]
name = "e1"
network = "red"
port = "a"
address = "10.81.1.2/24"
address6 = "10.81.1.2/24"

[[endpoints]]
name = "e2"
network = "red"
port = "b"
address = "10.81.1.3/24"
address6 = "fd00:81:1::3/0"

[[endpoints]]
name = "e3"
network = "red"
port = "c"
address = "10.81.1.4/24"
address6 = "ff02::1/64"

[[endpoints]]
name = "e4"
network = "red"
port = "d"
address = "10.81.1.5/24"
address6 = "fd00:81:1::/64"
"#,
        ),
        &[
            r#"t.toml:32:12: endpoints[0].address6: invalid IPv6 CIDR "10.81.1.2/24": "10.81.1.2" is not an IPv6 address"#,
            "t.toml:39:12: endpoints[1].address6: prefix length 0 in fd00:81:1::3/0 leaves no subnet; use 1..=128",
            "t.toml:46:12: endpoints[2].address6: ff02::1 is a multicast address, not a host address",
            "t.toml:53:12: endpoints[3].address6: fd00:81:1:: is the subnet-router anycast address of fd00:81:1::/64 (host part all zero), not a host address",
        ],
    );
}

#[test]
fn l3_errors_are_collected_with_the_others() {
    // One mistake in each part, reported together and in file order.
    assert_errors(
        r#"[router]
mtu = 100

[[ports]]
name = "up"
backend = "ring"
peer = "x"
addresses = ["192.0.2.1/33"]

[[ports]]
name = "a"
backend = "afpackt"

[[networks]]
name = "red"
mode = "bridge"
ports = ["a"]
addresses = ["10.81.1.1/24"]

[[endpoints]]
name = "e"
network = "red"
port = "a"
address = "10.81.1.2/24"
gateway6 = "fd00::1"

[[routes]]
prefix = "10.8.0.0/16"
via = ["10.81.2.1"]
"#,
        &[
            "t.toml:2:7: router.mtu: mtu must be in 1280..=9000, got 100",
            r#"t.toml:8:14: ports[0].addresses[0]: invalid IPv4 CIDR "192.0.2.1/33": prefix length "33" is not a number in 0..=32"#,
            r#"t.toml:12:11: ports[1].backend: unknown backend "afpackt" (expected one of: ring, pcap, afpacket, dpdk)"#,
            "t.toml:25:12: endpoints[0].gateway6: gateway6 needs address6 (the endpoint's IPv6 address and prefix length)",
            "t.toml:29:8: routes[0].via[0]: gateway 10.81.2.1 is on no connected subnet (the router's IPv4 subnets are: 10.81.1.0/24)",
        ],
    );
}

#[test]
fn ipv6_fib_size_follows_fib6_groups() {
    // Each /48 in its own first 24 bits takes three groups of its own (bits 25-32, 33-40, 41-48); the rest
    // (the router's link-local /128s) takes 13 here.
    let text = |groups: u32, n: usize| {
        let routes: String = (0..n)
            .map(|k| {
                format!("\n[[routes]]\nprefix = \"fd{k:02x}:1:2::/48\"\ntype = \"blackhole\"\n")
            })
            .collect();
        format!(
            "[router]\nfib6_groups = {groups}\n\n[[ports]]\nname = \"up\"\nbackend = \"ring\"\npeer = \"x\"\n\
             addresses = [\"192.0.2.1/24\"]\n{routes}"
        )
    };
    let compiled = |t: &str| {
        let c = config::parse(t, "t.toml").unwrap();
        c.validate().unwrap();
        compile(&c, 1, CompileEnv::default()).map(|_| ())
    };
    assert_eq!(compiled(&text(19, 2)), Ok(()));
    let err = compiled(&text(19, 3)).unwrap_err();
    assert!(
        err.contains("IPv6 FIB") && err.contains("router.fib6_groups = 19 is too few"),
        "{err}"
    );
    // The same routes fit with three more groups, and a file without the key gets the default's room.
    assert_eq!(compiled(&text(22, 3)), Ok(()));
    assert_eq!(
        compiled(&text(22, 3).replace("fib6_groups = 22\n", "")),
        Ok(())
    );
}
