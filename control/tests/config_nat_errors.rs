//! The NAT part of the config (`[nat]`, endpoints' `publish`, `[[services]]`) against common mistakes: each
//! reported with file, line, column, field and reason, all at once. And a valid NAT config: its typed values,
//! `Config::validate` (through `to_raw`), and compilation into the NAT tables.

use control::compile::{compile, CompileEnv};
use control::config::{self, NatTimeoutsCfg, Proto, UdpMapping, DEFAULT_MAX_SESSIONS};
use pipelines::nat::owner::NatConfig;
use pipelines::nat::stage::Target;
use std::net::Ipv4Addr;

/// Parses `text` as `t.toml`, expecting failure, and returns the error's lines.
fn errors(text: &str) -> Vec<String> {
    match config::parse(text, "t.toml") {
        Ok(c) => panic!("expected an error, got {c:#?}"),
        Err(e) => e.to_string().lines().map(String::from).collect(),
    }
}

#[test]
fn every_nat_mistake_at_once() {
    assert_eq!(
        errors(BAD_NAT),
        [
            r#"t.toml:30:11: nat.outside: port "v6" has no IPv4 address: the outside port must be a routed port with `addresses` (its IPv4 addresses are the external addresses)"#,
            r#"t.toml:31:22: nat.masquerade[1]: network "plain": a bridge network without `addresses` has no gateway on the router"#,
            r#"t.toml:31:31: nat.masquerade[2]: "blue" is neither a network (networks are: red, plain) nor a routed port (one with `addresses`)"#,
            r#"t.toml:32:14: nat.port_range: "2000-1000": need 1 <= LO <= HI <= 65535"#,
            r#"t.toml:33:16: nat.max_sessions: max_sessions must be in 1..=16777216, got 0"#,
            r#"t.toml:34:15: nat.udp_mapping: "full-cone": use "endpoint-independent" or "address-and-port-dependent""#,
            r#"t.toml:35:21: nat.tcp_established_s: tcp_established_s must be in 1..=2592000, got 0"#,
            r#"t.toml:42:27: endpoints[0].publish[1]: 4000/tcp is already published by endpoints[0].publish[0]"#,
            r#"t.toml:42:39: endpoints[0].publish[2]: protocol "sctp" in "80/sctp": only tcp and udp ports can be published"#,
            r#"t.toml:46:11: services[0].publish: 4000/tcp is already published by endpoints[0].publish[0]"#,
            r#"t.toml:47:18: services[0].backends[1]: no endpoint named "zz" (endpoints are: a)"#,
            r#"t.toml:47:24: services[0].backends[2]: endpoint "a" is listed twice"#,
            r#"t.toml:49:1: services[1].publish: required field is missing"#,
            r#"t.toml:50:8: services[1].name: duplicate service name "web" (first used by services[0])"#,
            r#"t.toml:51:12: services[1].backends: a service needs at least one backend endpoint"#,
        ]
    );
}

#[test]
fn published_hosts_port_ranges_and_the_outside_port() {
    assert_eq!(
        errors(BAD_HOSTS),
        [
            r#"t.toml:18:15: nat.masquerade[0]: "up" is the outside port itself"#,
            r#"t.toml:19:14: nat.port_range: "60000-60200" has 201 ports; 4 worker(s) need at least 256 (64 each)"#,
            r#"t.toml:25:12: endpoints[0].publish[0]: 198.51.100.9 is not an external address (the outside port's: 192.0.2.1)"#,
            r#"t.toml:25:55: endpoints[0].publish[2]: 53/udp is already published by endpoints[0].publish[1]"#,
        ]
    );
}

#[test]
fn publishing_needs_a_nat_section() {
    assert_eq!(
        errors(NO_NAT),
        [
            r#"t.toml:11:11: endpoints[0].publish: publishing a port needs a [nat] section naming the outside port (`outside = "PORT"`)"#,
            r#"t.toml:13:1: services[0]: a service publishes a port, which needs a [nat] section naming the outside port"#,
        ]
    );
}

#[test]
fn a_valid_nat_config_compiles_into_the_nat_tables() {
    let c = config::parse(VALID, "t.toml").unwrap();
    c.validate().unwrap();
    let n = c.nat.as_ref().unwrap();
    assert_eq!(n.outside, "up");
    assert_eq!(
        n.masquerade,
        ["red", "a"],
        "the bridge by default, the routed port as written"
    );
    assert_eq!(n.port_range, (1024, 65535));
    assert_eq!(n.max_sessions, DEFAULT_MAX_SESSIONS);
    assert_eq!(n.udp_mapping, UdpMapping::EndpointIndependent);
    assert_eq!(
        n.timeouts,
        NatTimeoutsCfg {
            udp_s: 60,
            ..Default::default()
        }
    );
    assert_eq!(n.published.len(), 2);
    assert_eq!(n.published[1].spec.proto, Proto::Udp);
    assert_eq!(c.services[0].backends, ["h", "k"]);

    let snap = compile(&c, 1, CompileEnv::default()).unwrap();
    let t = snap.l3.nat.as_ref().expect("NAT tables");
    let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
    assert_eq!(t.external, [ip("192.0.2.1"), ip("198.51.100.1")]);
    assert_eq!(snap.l3.ifaces[t.outside as usize].name, "up");
    // Masqueraded: the bridge's gateway interface and the routed port a, not the outside.
    let masq: Vec<&str> = snap
        .l3
        .ifaces
        .iter()
        .enumerate()
        .filter(|(i, _)| t.masquerades(*i as u16))
        .map(|(_, f)| f.name.as_str())
        .collect();
    assert_eq!(masq, ["red", "a"]);
    // 4000/tcp on both external addresses, 53/udp on one, the service's 8080 on both.
    assert_eq!(
        t.published(6, ip("192.0.2.1"), 4000),
        Some(Target::One(ip("10.81.1.2"), 80))
    );
    assert_eq!(
        t.published(6, ip("198.51.100.1"), 4000),
        Some(Target::One(ip("10.81.1.2"), 80))
    );
    assert_eq!(
        t.published(17, ip("198.51.100.1"), 53),
        Some(Target::One(ip("10.81.1.2"), 53))
    );
    assert_eq!(t.published(17, ip("192.0.2.1"), 53), None);
    assert_eq!(
        t.published(6, ip("192.0.2.1"), 8080),
        Some(Target::Service(0))
    );
    assert_eq!(
        t.services[0].backends,
        [(ip("10.81.1.2"), 80), (ip("10.0.0.2"), 80)]
    );
    assert!(t.is_backend(6, ip("10.0.0.2"), 80) && !t.is_backend(6, ip("10.0.0.2"), 81));

    // A reload with the same identity keeps the NAT's shared state (flows, queues); a new port range does not.
    let again = compile(
        &c,
        2,
        CompileEnv {
            previous: Some(&snap),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &again.l3.nat.as_ref().unwrap().shared,
        &t.shared
    ));
    let changed = config::parse(
        &VALID.replace("[nat]", "[nat]\nport_range = \"2000-3000\""),
        "t.toml",
    )
    .unwrap();
    let other = compile(
        &changed,
        3,
        CompileEnv {
            previous: Some(&snap),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!std::sync::Arc::ptr_eq(
        &other.l3.nat.as_ref().unwrap().shared,
        &t.shared
    ));
}

const BAD_NAT: &str = r#"[[ports]]
name = "up"
backend = "ring"
peer = "xup"
addresses = ["192.0.2.1/24"]

[[ports]]
name = "a"
backend = "ring"
peer = "xa"

[[ports]]
name = "v6"
backend = "ring"
peer = "xv6"
addresses = ["fd00:1::1/64"]

[[networks]]
name = "red"
mode = "bridge"
ports = ["a"]
addresses = ["10.81.1.1/24"]

[[networks]]
name = "plain"
mode = "bridge"
ports = []

[nat]
outside = "v6"
masquerade = ["red", "plain", "blue", "up"]
port_range = "2000-1000"
max_sessions = 0
udp_mapping = "full-cone"
tcp_established_s = 0

[[endpoints]]
name = "a"
network = "red"
port = "a"
address = "10.81.1.2/24"
publish = ["4000:80/tcp", "4000/tcp", "80/sctp", "198.51.100.9:53/udp"]

[[services]]
name = "web"
publish = "4000:80/tcp"
backends = ["a", "zz", "a"]

[[services]]
name = "web"
backends = []
"#;

const BAD_HOSTS: &str = r#"[dataplane]
workers = 4

[[ports]]
name = "up"
backend = "ring"
peer = "xup"
addresses = ["192.0.2.1/24"]

[[ports]]
name = "a"
backend = "ring"
peer = "xa"
addresses = ["10.0.0.1/24"]

[nat]
outside = "up"
masquerade = ["up", "a"]
port_range = "60000-60200"

[[endpoints]]
name = "h"
port = "a"
address = "10.0.0.2/24"
publish = ["198.51.100.9:53/udp", "192.0.2.1:53/udp", "53/udp"]
"#;

const NO_NAT: &str = r#"[[ports]]
name = "a"
backend = "ring"
peer = "xa"
addresses = ["10.0.0.1/24"]

[[endpoints]]
name = "h"
port = "a"
address = "10.0.0.2/24"
publish = ["80/tcp"]

[[services]]
name = "s"
publish = "81/tcp"
backends = ["h"]
"#;

const VALID: &str = r#"[[ports]]
name = "up"
backend = "ring"
peer = "xup"
addresses = ["192.0.2.1/24", "198.51.100.1/24"]

[[ports]]
name = "a"
backend = "ring"
peer = "xa"
addresses = ["10.0.0.1/24"]

[[ports]]
name = "b"
backend = "ring"
peer = "xb"

[[networks]]
name = "red"
mode = "bridge"
ports = ["b"]
addresses = ["10.81.1.1/24"]

[nat]
outside = "up"
masquerade = ["red", "a"]
udp_s = 60

[[endpoints]]
name = "h"
network = "red"
port = "b"
address = "10.81.1.2/24"
publish = ["4000:80/tcp", "198.51.100.1:53/udp"]

[[endpoints]]
name = "k"
port = "a"
address = "10.0.0.2/24"

[[services]]
name = "web"
publish = "8080:80/tcp"
backends = ["h", "k"]
"#;
