//! Host-local IPAM: allocation order and round robin, persistence across re-opens, the error messages a network
//! engineer reads (exhaustion, conflicts, corrupt state), IPv6 pools, and a property test against a brute-force
//! model of the pool.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use control::ipam::{validate, Ipam, IpamError, PoolSpec, Subnet};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(subnet: &str) -> PoolSpec {
    PoolSpec::new(subnet.parse::<Subnet>().unwrap())
}

fn ranged(subnet: &str, start: &str, end: &str) -> PoolSpec {
    PoolSpec {
        range: Some((ip(start), ip(end))),
        ..pool(subnet)
    }
}

fn leases(ipam: &Ipam, network: &str) -> Vec<(String, String)> {
    ipam.leases(network)
        .into_iter()
        .map(|(o, a)| (o, a.to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(o, a)| (o.to_string(), a.to_string()))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn allocation_order_and_round_robin() {
    let mut ipam = Ipam::open(None).unwrap();
    let p = pool("10.1.0.0/24");
    // .0 is the network address, .1 the default gateway.
    assert_eq!(ipam.allocate("red", &p, "a").unwrap(), ip("10.1.0.2"));
    assert_eq!(ipam.allocate("red", &p, "b").unwrap(), ip("10.1.0.3"));
    assert_eq!(ipam.allocate("red", &p, "c").unwrap(), ip("10.1.0.4"));
    // Asking again returns the lease held.
    assert_eq!(ipam.allocate("red", &p, "b").unwrap(), ip("10.1.0.3"));
    assert_eq!(ipam.release("red", "b").unwrap(), Some(ip("10.1.0.3")));
    assert_eq!(ipam.release("red", "b").unwrap(), None);
    // Round robin: the released .3 is not reused at once.
    assert_eq!(ipam.allocate("red", &p, "d").unwrap(), ip("10.1.0.5"));
    assert_eq!(ipam.allocate("red", &p, "b").unwrap(), ip("10.1.0.6"));
    assert_eq!(
        leases(&ipam, "red"),
        pairs(&[
            ("a", "10.1.0.2"),
            ("c", "10.1.0.4"),
            ("d", "10.1.0.5"),
            ("b", "10.1.0.6")
        ])
    );
    assert_eq!(ipam.lease("red", "c"), Some(ip("10.1.0.4")));
    assert_eq!(ipam.lease("red", "zz"), None);
    // Networks are independent.
    assert_eq!(ipam.allocate("blue", &p, "a").unwrap(), ip("10.1.0.2"));
    assert_eq!(ipam.networks(), ["blue", "red"]);
    assert!(ipam.leases("green").is_empty());

    // A configured gateway is skipped wherever it is; the first host is then allocatable.
    let mut ipam = Ipam::open(None).unwrap();
    let p = PoolSpec {
        gateway: Some(ip("10.1.0.3")),
        ..pool("10.1.0.0/24")
    };
    let got: Vec<IpAddr> = ["a", "b", "c"]
        .iter()
        .map(|o| ipam.allocate("red", &p, o).unwrap())
        .collect();
    assert_eq!(got, [ip("10.1.0.1"), ip("10.1.0.2"), ip("10.1.0.4")]);
}

#[test]
fn round_robin_wraps_around_the_range() {
    let mut ipam = Ipam::open(None).unwrap();
    let mut p = ranged("10.1.0.0/24", "10.1.0.10", "10.1.0.13");
    p.reserved = vec![ip("10.1.0.11")];
    assert_eq!(ipam.allocate("red", &p, "a").unwrap(), ip("10.1.0.10"));
    assert_eq!(ipam.allocate("red", &p, "b").unwrap(), ip("10.1.0.12"));
    assert_eq!(ipam.allocate("red", &p, "c").unwrap(), ip("10.1.0.13"));
    ipam.release("red", "a").unwrap();
    ipam.release("red", "c").unwrap();
    // After .13, the end of the range: wrap to its start.
    assert_eq!(ipam.allocate("red", &p, "d").unwrap(), ip("10.1.0.10"));
    // Then on from .10: .11 is reserved, .12 leased.
    assert_eq!(ipam.allocate("red", &p, "e").unwrap(), ip("10.1.0.13"));
}

#[test]
fn leases_are_stable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let p = pool("10.1.0.0/24");
    {
        let mut ipam = Ipam::open(Some(&state)).unwrap();
        assert_eq!(ipam.allocate("red", &p, "a").unwrap(), ip("10.1.0.2"));
        assert_eq!(ipam.allocate("red", &p, "b").unwrap(), ip("10.1.0.3"));
        assert_eq!(ipam.allocate("red", &p, "c").unwrap(), ip("10.1.0.4"));
        ipam.release("red", "c").unwrap();
        ipam.reserve("red", &p, "s", ip("10.1.0.200")).unwrap();
    }
    let file = state.join("ipam/red.json");
    assert_eq!(mode(&state.join("ipam")), 0o700);
    assert_eq!(mode(&file), 0o600);
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "leases": {"a": "10.1.0.2", "b": "10.1.0.3", "s": "10.1.0.200"},
            "last_allocated": {"10.1.0.0/24": "10.1.0.4"},
        })
    );
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(state.join("ipam"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["red.json"]);

    let mut ipam = Ipam::open(Some(&state)).unwrap();
    assert_eq!(
        leases(&ipam, "red"),
        pairs(&[("a", "10.1.0.2"), ("b", "10.1.0.3"), ("s", "10.1.0.200")])
    );
    assert_eq!(ipam.allocate("red", &p, "b").unwrap(), ip("10.1.0.3"));
    assert_eq!(ipam.allocate("red", &p, "a").unwrap(), ip("10.1.0.2"));
    // The round robin resumes after .4, the last address handed out before the restart.
    assert_eq!(ipam.allocate("red", &p, "d").unwrap(), ip("10.1.0.5"));
    drop(ipam);
    let ipam = Ipam::open(Some(&state)).unwrap();
    assert_eq!(ipam.lease("red", "d"), Some(ip("10.1.0.5")));
}

#[test]
fn exhausted_slash30_names_the_owner() {
    let mut ipam = Ipam::open(None).unwrap();
    let p = pool("10.1.0.0/30");
    assert_eq!(ipam.allocate("red", &p, "a").unwrap(), ip("10.1.0.2"));
    let e = ipam.allocate("red", &p, "b").unwrap_err();
    assert!(matches!(e, IpamError::Exhausted { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "network \"red\": pool 10.1.0.0/30 is exhausted: 1 allocatable address, all leased (a=10.1.0.2)"
    );
    // A failed allocation changes nothing; a release makes room.
    assert_eq!(leases(&ipam, "red"), pairs(&[("a", "10.1.0.2")]));
    ipam.release("red", "a").unwrap();
    assert_eq!(ipam.allocate("red", &p, "b").unwrap(), ip("10.1.0.2"));
}

#[test]
fn exhausted_small_range_lists_a_few_owners() {
    let mut ipam = Ipam::open(None).unwrap();
    let mut p = ranged("10.1.0.0/24", "10.1.0.10", "10.1.0.15");
    p.reserved = vec![ip("10.1.0.12")];
    for owner in ["a", "b", "c", "d", "e"] {
        ipam.allocate("red", &p, owner).unwrap();
    }
    // Leases outside the range do not count.
    ipam.reserve("red", &p, "s", ip("10.1.0.100")).unwrap();
    assert_eq!(
        ipam.allocate("red", &p, "f").unwrap_err().to_string(),
        "network \"red\": pool 10.1.0.0/24 range 10.1.0.10-10.1.0.15 is exhausted: 5 allocatable addresses, \
         all leased (a=10.1.0.10, b=10.1.0.11, c=10.1.0.13, d=10.1.0.14, and 1 more)"
    );
    // An owner that already holds an address in the range still gets it.
    assert_eq!(ipam.allocate("red", &p, "c").unwrap(), ip("10.1.0.13"));
}

#[test]
fn ipv6_slash64_pool() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("fd00:1::/64");
    let mut ipam = Ipam::open(Some(dir.path())).unwrap();
    assert_eq!(ipam.allocate("v6", &p, "a").unwrap(), ip("fd00:1::2"));
    assert_eq!(ipam.allocate("v6", &p, "b").unwrap(), ip("fd00:1::3"));
    // The last address of the subnet is a host address in IPv6 (no broadcast).
    let top = ip("fd00:1::ffff:ffff:ffff:ffff");
    ipam.reserve("v6", &p, "s", top).unwrap();
    assert_eq!(
        ipam.reserve("v6", &p, "t", ip("fd00:1::")).unwrap_err().to_string(),
        "network \"v6\": fd00:1:: is the network address of subnet fd00:1::/64 and cannot be leased"
    );
    assert_eq!(
        ipam.reserve("v6", &p, "t", ip("fd00:2::5"))
            .unwrap_err()
            .to_string(),
        "network \"v6\": fd00:2::5 is outside subnet fd00:1::/64"
    );
    assert_eq!(
        ipam.reserve("v6", &p, "t", ip("10.0.0.5"))
            .unwrap_err()
            .to_string(),
        "network \"v6\": 10.0.0.5 is outside subnet fd00:1::/64"
    );
    assert_eq!(p.check().unwrap().allocatable(), (1u128 << 64) - 2);

    // A range at the very top of the /64: allocation walks and wraps with u128 arithmetic.
    let high = ranged(
        "fd00:1::/64",
        "fd00:1::ffff:ffff:ffff:fffd",
        "fd00:1::ffff:ffff:ffff:ffff",
    );
    assert_eq!(
        ipam.allocate("v6", &high, "c").unwrap(),
        ip("fd00:1::ffff:ffff:ffff:fffd")
    );
    assert_eq!(
        ipam.allocate("v6", &high, "d").unwrap(),
        ip("fd00:1::ffff:ffff:ffff:fffe")
    );
    // fffd, fffe leased, ffff held by "s".
    assert_eq!(
        ipam.allocate("v6", &high, "e").unwrap_err().to_string(),
        "network \"v6\": pool fd00:1::/64 range fd00:1::ffff:ffff:ffff:fffd-fd00:1::ffff:ffff:ffff:ffff is \
         exhausted: 3 allocatable addresses, all leased (c=fd00:1::ffff:ffff:ffff:fffd, \
         d=fd00:1::ffff:ffff:ffff:fffe, s=fd00:1::ffff:ffff:ffff:ffff)"
    );
    ipam.release("v6", "c").unwrap();
    assert_eq!(
        ipam.allocate("v6", &high, "e").unwrap(),
        ip("fd00:1::ffff:ffff:ffff:fffd")
    );
    drop(ipam);
    let ipam = Ipam::open(Some(dir.path())).unwrap();
    assert_eq!(ipam.lease("v6", "a"), Some(ip("fd00:1::2")));
    assert_eq!(ipam.lease("v6", "s"), Some(top));
}

#[test]
fn ipv6_slash126_pool() {
    let mut ipam = Ipam::open(None).unwrap();
    let p = pool("fd00::/126");
    // fd00:: is the network address, fd00::1 the gateway; fd00::3, the last address, is a host.
    assert_eq!(ipam.allocate("v6", &p, "a").unwrap(), ip("fd00::2"));
    assert_eq!(ipam.allocate("v6", &p, "b").unwrap(), ip("fd00::3"));
    assert_eq!(
        ipam.allocate("v6", &p, "c").unwrap_err().to_string(),
        "network \"v6\": pool fd00::/126 is exhausted: 2 allocatable addresses, all leased (a=fd00::2, b=fd00::3)"
    );
    ipam.release("v6", "a").unwrap();
    assert_eq!(ipam.allocate("v6", &p, "c").unwrap(), ip("fd00::2"));
}

#[test]
fn reserve_conflicts() {
    let mut ipam = Ipam::open(None).unwrap();
    let mut p = ranged("10.1.0.0/24", "10.1.0.2", "10.1.0.9");
    p.reserved = vec![ip("10.1.0.5")];
    ipam.reserve("red", &p, "a", ip("10.1.0.7")).unwrap();
    // Reserving the same address again for the same owner is fine.
    ipam.reserve("red", &p, "a", ip("10.1.0.7")).unwrap();
    let err = |ipam: &mut Ipam, owner: &str, addr: &str| {
        ipam.reserve("red", &p, owner, ip(addr))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&mut ipam, "b", "10.1.0.7"),
        "network \"red\": 10.1.0.7 is already leased to \"a\""
    );
    assert_eq!(
        err(&mut ipam, "b", "10.2.0.5"),
        "network \"red\": 10.2.0.5 is outside subnet 10.1.0.0/24"
    );
    assert_eq!(
        err(&mut ipam, "b", "10.1.0.1"),
        "network \"red\": 10.1.0.1 is the gateway of subnet 10.1.0.0/24 and cannot be leased"
    );
    assert_eq!(
        err(&mut ipam, "b", "10.1.0.0"),
        "network \"red\": 10.1.0.0 is the network address of subnet 10.1.0.0/24 and cannot be leased"
    );
    assert_eq!(
        err(&mut ipam, "b", "10.1.0.255"),
        "network \"red\": 10.1.0.255 is the broadcast address of subnet 10.1.0.0/24 and cannot be leased"
    );
    // Static addresses may be reserved addresses or outside the range.
    ipam.reserve("red", &p, "b", ip("10.1.0.5")).unwrap();
    ipam.reserve("red", &p, "c", ip("10.1.0.100")).unwrap();
    // Allocation steps over static leases: .2, .3, .4, (.5 reserved), .6, (.7 static), .8.
    let got: Vec<String> = ["d", "e", "f", "g", "h"]
        .iter()
        .map(|o| ipam.allocate("red", &p, o).unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.6", "10.1.0.8"]
    );
    // A dynamic address cannot be taken by another owner; reserving moves an owner's own lease.
    assert_eq!(
        err(&mut ipam, "a", "10.1.0.2"),
        "network \"red\": 10.1.0.2 is already leased to \"d\""
    );
    ipam.reserve("red", &p, "a", ip("10.1.0.50")).unwrap();
    assert_eq!(ipam.lease("red", "a"), Some(ip("10.1.0.50")));
    assert_eq!(ipam.allocate("red", &p, "i").unwrap(), ip("10.1.0.9"));
    // .7 is free again: the round robin wraps to it.
    assert_eq!(ipam.allocate("red", &p, "j").unwrap(), ip("10.1.0.7"));
    // An invalid pool is reported before anything else.
    let bad = ranged("10.1.0.0/24", "10.1.0.9", "10.1.0.3");
    assert_eq!(
        ipam.reserve("red", &bad, "z", ip("10.1.0.4"))
            .unwrap_err()
            .to_string(),
        "network \"red\": range 10.1.0.9-10.1.0.3 is empty"
    );
}

#[test]
fn retain_drops_stale_leases() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("10.1.0.0/24");
    let mut ipam = Ipam::open(Some(dir.path())).unwrap();
    for owner in ["a", "b", "c", "d"] {
        ipam.allocate("red", &p, owner).unwrap();
    }
    ipam.allocate("blue", &p, "a").unwrap();
    let dropped = ipam.retain("red", &["d", "b", "x"]).unwrap();
    assert_eq!(
        dropped,
        [
            ("a".to_string(), ip("10.1.0.2")),
            ("c".to_string(), ip("10.1.0.4"))
        ]
    );
    assert!(ipam.retain("red", &["d", "b"]).unwrap().is_empty());
    assert!(ipam.retain("green", &[]).unwrap().is_empty());
    drop(ipam);
    let mut ipam = Ipam::open(Some(dir.path())).unwrap();
    assert_eq!(
        leases(&ipam, "red"),
        pairs(&[("b", "10.1.0.3"), ("d", "10.1.0.5")])
    );
    // Other networks are untouched.
    assert_eq!(leases(&ipam, "blue"), pairs(&[("a", "10.1.0.2")]));
    assert_eq!(ipam.retain("blue", &[]).unwrap().len(), 1);
    assert!(ipam.leases("blue").is_empty());
}

#[test]
fn corrupt_state_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ipam_dir = dir.path().join("ipam");
    fs::create_dir(&ipam_dir).unwrap();
    let file = ipam_dir.join("red.json");
    let open_err = |text: &str| {
        fs::write(&file, text).unwrap();
        let e = Ipam::open(Some(dir.path())).unwrap_err();
        assert!(matches!(e, IpamError::Corrupt { .. }), "{e:?}");
        // The file is left as it was.
        assert_eq!(fs::read_to_string(&file).unwrap(), text);
        e.to_string()
    };
    let path = file.display().to_string();
    assert_eq!(
        open_err("{\"leases\": {\"a\": \"10.1.0.2\""),
        format!(
            "{path}: corrupt IPAM state file: EOF while parsing an object at line 1 column 27 \
             (repair or move it away; wharf does not discard leases)"
        )
    );
    assert_eq!(
        open_err("{\"leases\": {\"a\": \"10.1.0.300\"}}"),
        format!(
            "{path}: corrupt IPAM state file: invalid IP address syntax at line 1 column 29 \
             (repair or move it away; wharf does not discard leases)"
        )
    );
    assert_eq!(
        open_err("{\"leases\": {\"a\": \"10.1.0.2\", \"b\": \"10.1.0.2\"}}"),
        format!(
            "{path}: corrupt IPAM state file: 10.1.0.2 is leased to both \"a\" and \"b\" \
             (repair or move it away; wharf does not discard leases)"
        )
    );
    assert!(open_err("{\"lease\": {}}").contains("unknown field `lease`"));
    assert!(open_err("").contains("EOF while parsing a value"));
    // A valid file loads; files that are not ours are ignored.
    fs::write(&file, "{\"leases\": {\"a\": \"10.1.0.2\"}}").unwrap();
    fs::write(ipam_dir.join(".red.json.tmp"), "garbage").unwrap();
    fs::write(ipam_dir.join("notes.txt"), "garbage").unwrap();
    let ipam = Ipam::open(Some(dir.path())).unwrap();
    assert_eq!(leases(&ipam, "red"), pairs(&[("a", "10.1.0.2")]));
}

#[test]
fn io_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ipam"), "a file, not a directory").unwrap();
    let e = Ipam::open(Some(dir.path())).unwrap_err();
    assert!(matches!(e, IpamError::Io { .. }), "{e:?}");
    let msg = e.to_string();
    let path = dir.path().join("ipam").display().to_string();
    assert!(
        msg.starts_with(&format!("cannot create directory {path}: ")),
        "{msg}"
    );

    // The state file's name is taken by a directory: the write fails, and the lease is not recorded.
    let dir = tempfile::tempdir().unwrap();
    let mut ipam = Ipam::open(Some(dir.path())).unwrap();
    let blocker = dir.path().join("ipam/red.json");
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("x"), "").unwrap();
    let msg = ipam
        .allocate("red", &pool("10.1.0.0/24"), "a")
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(&format!("cannot replace {}: ", blocker.display())),
        "{msg}"
    );
    assert!(ipam.leases("red").is_empty());
}

#[test]
fn invalid_pools_and_names_are_errors_naming_the_network() {
    let mut ipam = Ipam::open(None).unwrap();
    let bad = ranged("10.1.0.0/24", "10.1.0.9", "10.1.0.3");
    assert_eq!(
        ipam.allocate("red", &bad, "a").unwrap_err().to_string(),
        "network \"red\": range 10.1.0.9-10.1.0.3 is empty"
    );
    assert_eq!(
        validate(&bad).unwrap_err(),
        "range 10.1.0.9-10.1.0.3 is empty"
    );
    let tiny = pool("10.1.0.7/32");
    assert_eq!(
        ipam.allocate("red", &tiny, "a").unwrap_err().to_string(),
        "network \"red\": pool 10.1.0.7/32 has no allocatable address: 10.1.0.7-10.1.0.7 holds only the gateway \
         10.1.0.7 and reserved addresses"
    );
    assert_eq!(
        ipam.allocate("../etc", &pool("10.1.0.0/24"), "a")
            .unwrap_err()
            .to_string(),
        "invalid network name \"../etc\": it starts with '.'"
    );
    assert!(ipam.networks().is_empty());
}

#[test]
fn lease_that_no_longer_fits_the_pool_moves() {
    let mut ipam = Ipam::open(None).unwrap();
    let old = pool("10.1.0.0/24");
    assert_eq!(ipam.allocate("red", &old, "a").unwrap(), ip("10.1.0.2"));
    assert_eq!(ipam.allocate("red", &old, "b").unwrap(), ip("10.1.0.3"));
    // The range shrinks: "a" moves into it, "b" too, and the old addresses are given up.
    let new = ranged("10.1.0.0/24", "10.1.0.100", "10.1.0.110");
    assert_eq!(ipam.allocate("red", &new, "a").unwrap(), ip("10.1.0.100"));
    // "b" still holds .3 until it asks again.
    assert_eq!(
        leases(&ipam, "red"),
        pairs(&[("b", "10.1.0.3"), ("a", "10.1.0.100")])
    );
    // A new subnet altogether, and a reserved address that was leased.
    let v6 = pool("fd00::/120");
    assert_eq!(ipam.allocate("red", &v6, "b").unwrap(), ip("fd00::2"));
    let mut reserved = pool("fd00::/120");
    reserved.reserved = vec![ip("fd00::2")];
    assert_eq!(ipam.allocate("red", &reserved, "b").unwrap(), ip("fd00::3"));
}

// ---- property test against a brute-force model

/// One step of a random sequence; owners are `e0`..`e5`.
#[derive(Clone, Debug)]
enum Op {
    Allocate(usize),
    Release(usize),
    /// A static address: the subnet's base plus the offset modulo the subnet size plus 4 (so sometimes outside).
    Reserve(usize, u64),
    /// Keeps the owners whose bit is set.
    Retain(u8),
}

const OWNERS: usize = 6;

fn owner(i: usize) -> String {
    format!("e{i}")
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..OWNERS).prop_map(Op::Allocate),
        2 => (0..OWNERS).prop_map(Op::Release),
        1 => (0..OWNERS, any::<u64>()).prop_map(|(o, a)| Op::Reserve(o, a)),
        1 => any::<u8>().prop_map(Op::Retain),
    ]
}

fn addr(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(x))
    } else {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A valid pool of 2 to 64 addresses (IPv4 /26../31 or IPv6 /122../127) at a random place, with a random
/// gateway, range and reserved addresses.
fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    (
        any::<bool>(),
        1u32..=6,
        any::<u128>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of((any::<u64>(), any::<u64>())),
        proptest::collection::vec(any::<u64>(), 0..4),
    )
        .prop_map(|(v6, host_bits, base, gw, range, reserved)| {
            let size = 1u128 << host_bits;
            let width = if v6 { 128 } else { 32 };
            let base = if v6 { base } else { base & 0xffff_ffff } & !(size - 1);
            let at = |off: u64| addr(v6, base + u128::from(off) % size);
            PoolSpec {
                subnet: (addr(v6, base), (width - host_bits) as u8),
                gateway: gw.map(at),
                range: range.map(|(s, e)| {
                    let (s, e) = (at(s), at(e));
                    (s.min(e), s.max(e))
                }),
                reserved: reserved.into_iter().map(at).collect(),
            }
        })
        .prop_filter("a valid pool", |p| validate(p).is_ok())
}

/// The pool enumerated address by address, and the leases as the rules say they must evolve.
struct Model {
    v6: bool,
    base: u128,
    size: u128,
    gateway: u128,
    /// Addresses no endpoint may hold: the gateway, and the network and (IPv4) broadcast addresses.
    forbidden: BTreeSet<u128>,
    /// Every address allocate may hand out, ascending.
    allocatable: Vec<u128>,
    leases: BTreeMap<String, IpAddr>,
    /// Owners whose lease came from allocate.
    dynamic: BTreeSet<String>,
    last: Option<u128>,
}

impl Model {
    fn new(p: &PoolSpec) -> Model {
        let v6 = p.subnet.0.is_ipv6();
        let width: u32 = if v6 { 128 } else { 32 };
        let size = 1u128 << (width - u32::from(p.subnet.1));
        let base = bits(p.subnet.0);
        let special = size >= 4;
        let gateway = p
            .gateway
            .map(bits)
            .unwrap_or(if special { base + 1 } else { base });
        let mut forbidden = BTreeSet::from([gateway]);
        if special {
            forbidden.insert(base);
            if !v6 {
                forbidden.insert(base + size - 1);
            }
        }
        let reserved: BTreeSet<u128> = p.reserved.iter().map(|a| bits(*a)).collect();
        let allocatable = (base..base + size)
            .filter(|x| !forbidden.contains(x) && !reserved.contains(x))
            .filter(|x| p.range.is_none_or(|(s, e)| (bits(s)..=bits(e)).contains(x)))
            .collect();
        Model {
            v6,
            base,
            size,
            gateway,
            forbidden,
            allocatable,
            leases: BTreeMap::new(),
            dynamic: BTreeSet::new(),
            last: None,
        }
    }

    fn holder(&self, ip: IpAddr, except: &str) -> Option<&String> {
        self.leases
            .iter()
            .find(|(o, a)| **a == ip && o.as_str() != except)
            .map(|(o, _)| o)
    }

    fn allocate(&mut self, o: &str) -> Option<IpAddr> {
        if let Some(a) = self.leases.get(o) {
            if self.allocatable.contains(&bits(*a)) {
                return Some(*a);
            }
        }
        let taken: BTreeSet<u128> = self.leases.values().map(|a| bits(*a)).collect();
        let free: Vec<u128> = self
            .allocatable
            .iter()
            .copied()
            .filter(|x| !taken.contains(x))
            .collect();
        let next = match self.last {
            Some(last) => free.iter().copied().find(|x| *x > last),
            None => None,
        }
        .or(free.first().copied())?;
        self.last = Some(next);
        let a = addr(self.v6, next);
        self.leases.insert(o.to_string(), a);
        self.dynamic.insert(o.to_string());
        Some(a)
    }

    fn reserve(&mut self, o: &str, a: IpAddr) -> bool {
        let x = bits(a);
        let ok = (self.base..self.base + self.size).contains(&x)
            && !self.forbidden.contains(&x)
            && self.holder(a, o).is_none();
        if ok {
            self.leases.insert(o.to_string(), a);
            self.dynamic.remove(o);
        }
        ok
    }

    fn release(&mut self, o: &str) -> Option<IpAddr> {
        self.dynamic.remove(o);
        self.leases.remove(o)
    }
}

/// Runs `ops` on `ipam` and the model side by side, checking after each step that they agree and that the
/// leases keep the pool's rules.
fn run(ipam: &mut Ipam, m: &mut Model, p: &PoolSpec, ops: &[Op]) -> Result<(), TestCaseError> {
    let net = "prop";
    for op in ops {
        match op {
            Op::Allocate(i) => {
                let got = ipam.allocate(net, p, &owner(*i));
                let want = m.allocate(&owner(*i));
                match (&got, want) {
                    (Ok(a), Some(b)) => prop_assert_eq!(*a, b, "{:?}", op),
                    (Err(IpamError::Exhausted { .. }), None) => {}
                    _ => prop_assert!(false, "{:?}: got {:?}, model {:?}", op, got, want),
                }
            }
            Op::Release(i) => {
                prop_assert_eq!(
                    ipam.release(net, &owner(*i)).unwrap(),
                    m.release(&owner(*i))
                );
            }
            Op::Reserve(i, off) => {
                let x = (m.base + u128::from(*off) % (m.size + 4))
                    & if m.v6 { u128::MAX } else { 0xffff_ffff };
                let a = addr(m.v6, x);
                let got = ipam.reserve(net, p, &owner(*i), a);
                prop_assert_eq!(got.is_ok(), m.reserve(&owner(*i), a), "{:?}: {:?}", op, got);
            }
            Op::Retain(mask) => {
                let keep: Vec<String> = (0..OWNERS)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(owner)
                    .collect();
                let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
                let mut want: Vec<(String, IpAddr)> = m
                    .leases
                    .iter()
                    .filter(|(o, _)| !keep.contains(&o.as_str()))
                    .map(|(o, a)| (o.clone(), *a))
                    .collect();
                want.sort_by_key(|(_, a)| *a);
                m.leases.retain(|o, _| keep.contains(&o.as_str()));
                m.dynamic.retain(|o| keep.contains(&o.as_str()));
                prop_assert_eq!(ipam.retain(net, &keep).unwrap(), want);
            }
        }
        let got = ipam.leases(net);
        let mut want: Vec<(String, IpAddr)> =
            m.leases.iter().map(|(o, a)| (o.clone(), *a)).collect();
        want.sort_by_key(|(_, a)| *a);
        prop_assert_eq!(&got, &want, "after {:?}", op);
        // The rules themselves, independently of the model's bookkeeping.
        let distinct: BTreeSet<IpAddr> = got.iter().map(|(_, a)| *a).collect();
        prop_assert_eq!(
            distinct.len(),
            got.len(),
            "an address leased twice: {:?}",
            got
        );
        let subnet = Subnet::new(p.subnet.0, p.subnet.1).unwrap();
        for (o, a) in &got {
            let x = bits(*a);
            prop_assert!(subnet.contains(*a), "{} holds {} outside the subnet", o, a);
            prop_assert!(x != m.gateway, "{} holds the gateway {}", o, a);
            prop_assert!(
                Some(*a) != subnet.broadcast() || m.size < 4,
                "{} holds the broadcast {}",
                o,
                a
            );
            prop_assert!(
                *a != subnet.network() || m.size < 4,
                "{} holds the network address {}",
                o,
                a
            );
            if m.dynamic.contains(o) {
                prop_assert!(
                    !p.reserved.contains(a),
                    "{} was allocated the reserved {}",
                    o,
                    a
                );
                if let Some((s, e)) = p.range {
                    prop_assert!(
                        bits(s) <= x && x <= bits(e),
                        "{} was allocated {} outside the range",
                        o,
                        a
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_sequences_never_double_lease(p in pool_spec(), ops in proptest::collection::vec(op(), 1..60)) {
        let mut ipam = Ipam::open(None).unwrap();
        let mut m = Model::new(&p);
        prop_assert_eq!(p.check().unwrap().allocatable(), m.allocatable.len() as u128);
        run(&mut ipam, &mut m, &p, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_sequences_survive_reopen(p in pool_spec(), ops in proptest::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(Some(dir.path())).unwrap();
        let mut m = Model::new(&p);
        run(&mut ipam, &mut m, &p, &ops)?;
        let mut reopened = Ipam::open(Some(dir.path())).unwrap();
        prop_assert_eq!(reopened.leases("prop"), ipam.leases("prop"));
        // The round-robin position survives too: both hand the next owner the same address.
        let a = ipam.allocate("prop", &p, "next").map_err(|e| e.to_string());
        let b = reopened.allocate("prop", &p, "next").map_err(|e| e.to_string());
        prop_assert_eq!(a, b);
    }
}
