//! IPAM from the configuration: endpoints without an `address` get one from their network's pool
//! (`[networks.ipam]`, or a bridge's gateway subnet), the same one on every start (leases under
//! `[control] state_dir`), static addresses are never handed out twice, an exhausted pool is a clear error,
//! and a point-to-point pool hands out host routes the router routes.

use control::config::{self, Config};
use control::ipam::assign_addresses;
use std::net::Ipv4Addr;
use std::path::Path;

fn cfg(state: &Path, extra_endpoint: bool) -> Config {
    let mut text = format!(
        r#"
[control]
state_dir = "{}"

[[ports]]
name = "a"
backend = "ring"
peer = "pa"

[[ports]]
name = "b"
backend = "ring"
peer = "pb"

[[ports]]
name = "c"
backend = "ring"
peer = "pc"

[[ports]]
name = "d"
backend = "ring"
peer = "pd"

[[ports]]
name = "p"
backend = "ring"
peer = "pp"

[[networks]]
name = "red"
mode = "bridge"
ports = ["a", "b", "c", "d"]
addresses = ["10.90.0.1/24"]

[networks.ipam]
range = "10.90.0.10-10.90.0.13"
reserved = ["10.90.0.11"]

[[networks]]
name = "pods"
mode = "point-to-point"
ports = ["p"]

[networks.ipam]
subnet = "10.91.0.0/24"

[[endpoints]]
name = "a"
network = "red"
port = "a"
gateway = "10.90.0.1"

[[endpoints]]
name = "b"
network = "red"
port = "b"

[[endpoints]]
name = "c"
network = "red"
port = "c"
address = "10.90.0.10/24"

[[endpoints]]
name = "p"
network = "pods"
port = "p"
gateway = "169.254.1.1"
"#,
        state.display()
    );
    if extra_endpoint {
        text += "\n[[endpoints]]\nname = \"d\"\nnetwork = \"red\"\nport = \"d\"\n";
    }
    config::parse(&text, "ipam.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn address(c: &Config, name: &str) -> Option<(Ipv4Addr, u8)> {
    c.endpoints
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.address)
        .map(|a| (a.addr(), a.prefix()))
}

#[test]
fn endpoints_get_stable_addresses_from_their_pools() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), false);
    assert_eq!(address(&c, "a"), None, "left to the pool");
    assert_eq!(address(&c, "c"), Some(("10.90.0.10".parse().unwrap(), 24)));
    let assigned = assign_addresses(&mut c).unwrap();
    assert_eq!(assigned.len(), 3);
    // c's static .10 and the reserved .11 are never handed out; the gateway .1 is outside the range anyway.
    assert_eq!(address(&c, "a"), Some(("10.90.0.12".parse().unwrap(), 24)));
    assert_eq!(address(&c, "b"), Some(("10.90.0.13".parse().unwrap(), 24)));
    // A point-to-point endpoint gets a host address (its pool reserves the first host as the gateway).
    assert_eq!(address(&c, "p"), Some(("10.91.0.2".parse().unwrap(), 32)));
    // The config with addresses validates and compiles: the point-to-point endpoint is a host route.
    c.validate().unwrap();
    let snap = control::compile::compile(&c, 1, Default::default()).unwrap();
    assert!(snap
        .l3
        .fib4
        .lookup(u32::from(Ipv4Addr::new(10, 91, 0, 2)))
        .is_some());
    assert!(snap
        .l3
        .fib4
        .lookup(u32::from(Ipv4Addr::new(10, 91, 0, 3)))
        .is_none());

    // Another start with the same state dir: the same addresses, whatever the order of allocation.
    let mut again = cfg(dir.path(), false);
    again.endpoints.reverse();
    assign_addresses(&mut again).unwrap();
    for name in ["a", "b", "p"] {
        assert_eq!(address(&again, name), address(&c, name), "{name}");
    }
    assert!(dir.path().join("ipam").join("red.json").exists());

    // One endpoint more than the pool holds: a clear error naming the network and the pool.
    let mut full = cfg(dir.path(), true);
    let e = assign_addresses(&mut full).unwrap_err().to_string();
    assert!(e.contains("\"red\"") && e.contains("exhausted"), "{e}");
}

#[test]
fn pool_errors_name_the_field() {
    let bad = |ipam: &str| {
        let text = format!(
            "[[ports]]\nname = \"a\"\nbackend = \"ring\"\npeer = \"pa\"\n\
             [[networks]]\nname = \"red\"\nmode = \"bridge\"\nports = [\"a\"]\naddresses = [\"10.90.0.1/24\"]\n\
             [networks.ipam]\n{ipam}\n\
             [[endpoints]]\nname = \"a\"\nnetwork = \"red\"\nport = \"a\"\n"
        );
        config::parse(&text, "t.toml").unwrap_err().to_string()
    };
    assert_eq!(
        bad("range = \"10.90.0.20-10.90.0.10\""),
        "t.toml:11:9: networks[0].ipam.range: range 10.90.0.20-10.90.0.10 is empty"
    );
    let e = bad("range = \"10.90.1.1-10.90.1.9\"");
    assert!(
        e.starts_with("t.toml:11:9: networks[0].ipam.range: ") && e.contains("10.90.1.1"),
        "{e}"
    );
    assert_eq!(
        bad("range = \"10.90.0.9\""),
        "t.toml:11:9: networks[0].ipam.range: \"10.90.0.9\" is not a range: expected FIRST-LAST, like 10.82.0.10-10.82.0.200"
    );
    assert_eq!(
        bad("subnet = \"10.90.0.5/24\""),
        "t.toml:11:10: networks[0].ipam.subnet: 10.90.0.5/24 has host bits set; the subnet is 10.90.0.0/24"
    );
    // No pool, no address: the endpoint must say one.
    let text = "[[ports]]\nname = \"a\"\nbackend = \"ring\"\npeer = \"pa\"\n\
                [[networks]]\nname = \"red\"\nmode = \"bridge\"\nports = [\"a\"]\n\
                [[endpoints]]\nname = \"a\"\nnetwork = \"red\"\nport = \"a\"\n";
    let e = config::parse(text, "t.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("t.toml:9:1: endpoints[0].address: required field is missing"),
        "{e}"
    );
}
