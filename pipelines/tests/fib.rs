//! The FIB's longest-prefix-match tables against a brute-force reference: fixed cases, random tables with
//! interleaved inserts and removes (checked at random addresses and at every prefix's boundaries), the group
//! accounting, exhaustion, bulk builds, and lookups racing a writer.
//!
//! The module is compiled here from its source (like `mac_table.rs`) so these tests run even while the rest of
//! the crate is being edited.

#[allow(dead_code)]
#[path = "../src/fib/mod.rs"]
mod fib;

use fib::{FibError, Lpm4, Lpm6, SplitMix64, MAX_NEXT_HOP};
use proptest::prelude::*;
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn l4(t: &Lpm4, s: &str) -> Option<u32> {
    t.lookup(u32::from(v4(s)))
}

fn l6(t: &Lpm6, s: &str) -> Option<u32> {
    t.lookup(&v6(s).octets())
}

fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

/// The reference: a list of rules, longest match by linear scan.
#[derive(Default, Clone, Debug)]
struct Reference<A> {
    rules: Vec<(A, u8, u32)>,
}

/// What the reference needs of an address type.
trait Addr: Copy + Eq + std::fmt::Debug {
    fn masked(self, len: u8) -> Self;
}

impl Addr for u32 {
    fn masked(self, len: u8) -> u32 {
        self & mask4(len)
    }
}

impl Addr for u128 {
    fn masked(self, len: u8) -> u128 {
        self & mask6(len)
    }
}

impl<A: Addr> Reference<A> {
    fn insert(&mut self, p: A, len: u8, nh: u32) -> Option<u32> {
        let p = p.masked(len);
        match self.rules.iter_mut().find(|r| r.0 == p && r.1 == len) {
            Some(r) => Some(std::mem::replace(&mut r.2, nh)),
            None => {
                self.rules.push((p, len, nh));
                None
            }
        }
    }

    fn remove(&mut self, p: A, len: u8) -> Option<u32> {
        let p = p.masked(len);
        let i = self.rules.iter().position(|r| r.0 == p && r.1 == len)?;
        Some(self.rules.swap_remove(i).2)
    }

    fn lookup(&self, a: A) -> Option<u32> {
        self.rules
            .iter()
            .filter(|r| a.masked(r.1) == r.0)
            .max_by_key(|r| r.1)
            .map(|r| r.2)
    }

    fn sorted(&self) -> Vec<(A, u8, u32)>
    where
        A: Ord,
    {
        let mut v = self.rules.clone();
        v.sort_unstable();
        v
    }
}

// ---- IPv4: fixed cases ------------------------------------------------------------------------------------

#[test]
fn v4_empty_default_and_host_routes() {
    let t = Lpm4::new(16);
    assert!(t.is_empty());
    assert_eq!(l4(&t, "1.2.3.4"), None);
    assert_eq!(t.insert(v4("0.0.0.0"), 0, 7), Ok(None));
    assert_eq!(l4(&t, "1.2.3.4"), Some(7));
    assert_eq!(l4(&t, "255.255.255.255"), Some(7));
    assert_eq!(l4(&t, "0.0.0.0"), Some(7));
    assert_eq!(t.insert(v4("10.1.2.3"), 32, 9), Ok(None));
    assert_eq!(l4(&t, "10.1.2.3"), Some(9));
    assert_eq!(l4(&t, "10.1.2.2"), Some(7));
    assert_eq!(l4(&t, "10.1.2.4"), Some(7));
    assert_eq!(t.insert(v4("255.255.255.255"), 32, 1), Ok(None));
    assert_eq!(l4(&t, "255.255.255.255"), Some(1));
    assert_eq!(l4(&t, "255.255.255.254"), Some(7));
    assert_eq!(t.len(), 3);
    assert_eq!(t.tbl8_groups_in_use(), 2);
    assert_eq!(t.remove(v4("0.0.0.0"), 0), Some(7));
    assert_eq!(l4(&t, "1.2.3.4"), None);
    assert_eq!(l4(&t, "10.1.2.3"), Some(9));
    assert_eq!(l4(&t, "10.1.2.2"), None);
}

#[test]
fn v4_overlaps_replacement_and_cover_restored() {
    let t = Lpm4::new(16);
    t.insert(v4("10.0.0.0"), 8, 1).unwrap();
    t.insert(v4("10.1.0.0"), 16, 2).unwrap();
    t.insert(v4("10.1.2.0"), 24, 3).unwrap();
    t.insert(v4("10.1.2.128"), 25, 4).unwrap();
    t.insert(v4("10.1.2.192"), 26, 5).unwrap();
    t.insert(v4("10.1.2.200"), 30, 6).unwrap();
    let expect = |t: &Lpm4, cases: &[(&str, Option<u32>)]| {
        for &(a, nh) in cases {
            assert_eq!(l4(t, a), nh, "{a}");
        }
    };
    expect(
        &t,
        &[
            ("10.200.0.1", Some(1)),
            ("10.1.200.1", Some(2)),
            ("10.1.2.1", Some(3)),
            ("10.1.2.127", Some(3)),
            ("10.1.2.128", Some(4)),
            ("10.1.2.191", Some(4)),
            ("10.1.2.192", Some(5)),
            ("10.1.2.199", Some(5)),
            ("10.1.2.200", Some(6)),
            ("10.1.2.203", Some(6)),
            ("10.1.2.204", Some(5)),
            ("10.1.2.255", Some(5)),
            ("11.0.0.0", None),
        ],
    );
    // Replacing a next hop returns the old one and changes only that rule's addresses.
    assert_eq!(t.insert(v4("10.1.2.0"), 24, 30), Ok(Some(3)));
    assert_eq!(t.insert(v4("10.1.2.128"), 25, 40), Ok(Some(4)));
    expect(
        &t,
        &[
            ("10.1.2.1", Some(30)),
            ("10.1.2.128", Some(40)),
            ("10.1.2.192", Some(5)),
            ("10.1.2.200", Some(6)),
        ],
    );
    assert_eq!(t.get(v4("10.1.2.0"), 24), Some(30));
    assert_eq!(t.len(), 6);
    // Removing a middle rule restores the one it covered, including inside the group.
    assert_eq!(t.remove(v4("10.1.2.0"), 24), Some(30));
    expect(
        &t,
        &[
            ("10.1.2.1", Some(2)),
            ("10.1.2.128", Some(40)),
            ("10.1.2.200", Some(6)),
        ],
    );
    assert_eq!(t.remove(v4("10.1.2.192"), 26), Some(5));
    expect(
        &t,
        &[
            ("10.1.2.199", Some(40)),
            ("10.1.2.200", Some(6)),
            ("10.1.2.204", Some(40)),
        ],
    );
    assert_eq!(t.remove(v4("10.1.2.192"), 26), None);
    assert_eq!(t.remove(v4("10.1.2.128"), 25), Some(40));
    assert_eq!(t.remove(v4("10.1.2.200"), 30), Some(6));
    // No long prefix left: the group went to quarantine and the /24 answers from tbl24 again.
    assert_eq!(t.tbl8_groups_in_use(), 1);
    assert_eq!(t.tbl8_groups_quarantined(), 1);
    assert_eq!(t.reclaim(), 1);
    assert_eq!(t.tbl8_groups_in_use(), 0);
    expect(&t, &[("10.1.2.200", Some(2)), ("10.1.3.0", Some(2))]);
    assert_eq!(t.remove(v4("10.1.0.0"), 16), Some(2));
    expect(&t, &[("10.1.2.200", Some(1))]);
    assert_eq!(
        t.routes(),
        vec![(v4("10.0.0.0"), 8, 1)],
        "only the /8 is left"
    );
}

#[test]
fn v4_host_bits_are_masked() {
    let t = Lpm4::new(4);
    assert_eq!(t.insert(v4("192.168.7.99"), 16, 5), Ok(None));
    assert_eq!(t.get(v4("192.168.0.0"), 16), Some(5));
    assert_eq!(t.get(v4("192.168.255.255"), 16), Some(5));
    assert_eq!(t.insert(v4("192.168.0.0"), 16, 6), Ok(Some(5)));
    assert_eq!(t.routes(), vec![(v4("192.168.0.0"), 16, 6)]);
    assert_eq!(t.remove(v4("192.168.1.1"), 16), Some(6));
    assert!(t.is_empty());
}

#[test]
fn v4_invalid_input_is_an_error_not_a_panic() {
    let t = Lpm4::new(4);
    assert_eq!(
        t.insert(v4("1.2.3.4"), 33, 1),
        Err(FibError::InvalidLength { len: 33, max: 32 })
    );
    assert_eq!(
        t.insert(v4("1.2.3.4"), 255, 1),
        Err(FibError::InvalidLength { len: 255, max: 32 })
    );
    assert_eq!(
        t.insert(v4("1.2.3.4"), 8, MAX_NEXT_HOP),
        Err(FibError::InvalidNextHop(MAX_NEXT_HOP))
    );
    assert_eq!(
        t.insert(v4("1.2.3.4"), 8, u32::MAX),
        Err(FibError::InvalidNextHop(u32::MAX))
    );
    assert!(t.is_empty());
    assert_eq!(t.insert(v4("1.2.3.4"), 8, MAX_NEXT_HOP - 1), Ok(None));
    assert_eq!(l4(&t, "1.9.9.9"), Some(MAX_NEXT_HOP - 1));
    assert_eq!(t.remove(v4("1.2.3.4"), 33), None);
    assert_eq!(t.get(v4("1.2.3.4"), 200), None);
    assert!(Lpm4::build([(v4("1.0.0.0"), 40, 1)], 4).is_err());
    assert!(Lpm4::build([(v4("1.0.0.0"), 8, MAX_NEXT_HOP)], 4).is_err());
    // Display is hand-written (no thiserror here); make sure each variant says something useful.
    for e in [
        FibError::InvalidLength { len: 33, max: 32 },
        FibError::InvalidNextHop(1 << 24),
        FibError::Tbl8Exhausted,
        FibError::OutOfMemory { bytes: 1 },
    ] {
        assert!(e.to_string().len() > 10, "{e:?}");
    }
    // Bulk lookups with mismatched slices stop at the shorter one.
    let mut out = [Some(9); 2];
    t.lookup_bulk(&[u32::from(v4("1.0.0.1")), 0, 5], &mut out);
    assert_eq!(out, [Some(MAX_NEXT_HOP - 1), None]);
    let mut out = [Some(9); 3];
    t.lookup_bulk(&[0], &mut out);
    assert_eq!(out, [None, Some(9), Some(9)]);
    // A table with no groups at all still takes short prefixes.
    let t = Lpm4::new(0);
    assert_eq!(t.insert(v4("1.0.0.0"), 24, 1), Ok(None));
    assert_eq!(t.insert(v4("1.0.0.0"), 25, 1), Err(FibError::Tbl8Exhausted));
    assert_eq!(l4(&t, "1.0.0.1"), Some(1));
}

#[test]
fn v4_tbl8_exhaustion_and_reuse_after_reclaim() {
    let t = Lpm4::new(2);
    t.insert(v4("0.0.0.0"), 0, 100).unwrap();
    t.insert(v4("10.0.0.0"), 25, 1).unwrap();
    t.insert(v4("10.0.0.128"), 25, 2).unwrap(); // same /24: same group
    t.insert(v4("10.0.1.0"), 32, 3).unwrap();
    assert_eq!(t.tbl8_groups_in_use(), 2);
    assert_eq!(
        t.insert(v4("10.0.2.0"), 26, 4),
        Err(FibError::Tbl8Exhausted)
    );
    // The refused route left no trace.
    assert_eq!(t.len(), 4);
    assert_eq!(t.get(v4("10.0.2.0"), 26), None);
    assert_eq!(l4(&t, "10.0.2.1"), Some(100));
    // Prefixes up to /24 and long prefixes in /24s that have a group still go in.
    t.insert(v4("10.0.2.0"), 24, 5).unwrap();
    t.insert(v4("10.0.1.7"), 32, 6).unwrap();
    assert_eq!(l4(&t, "10.0.1.7"), Some(6));
    // Freeing a group does not make it reusable before reclaim.
    t.remove(v4("10.0.1.0"), 32).unwrap();
    t.remove(v4("10.0.1.7"), 32).unwrap();
    assert_eq!(t.tbl8_groups_quarantined(), 1);
    assert_eq!(
        t.insert(v4("10.0.2.0"), 26, 4),
        Err(FibError::Tbl8Exhausted)
    );
    let mark = t.reclaim_mark();
    assert_eq!(t.reclaim_to(mark), 1);
    assert_eq!(t.reclaim_to(mark), 0);
    assert_eq!(t.insert(v4("10.0.2.0"), 26, 4), Ok(None));
    assert_eq!(l4(&t, "10.0.2.1"), Some(4));
    assert_eq!(l4(&t, "10.0.2.64"), Some(5));
    assert_eq!(l4(&t, "10.0.1.7"), Some(100));
    // Build reports exhaustion too.
    assert_eq!(
        Lpm4::build(
            [
                (v4("1.0.0.0"), 25, 1),
                (v4("1.0.1.0"), 25, 1),
                (v4("1.0.2.0"), 25, 1)
            ],
            2
        )
        .err(),
        Some(FibError::Tbl8Exhausted)
    );
}

#[test]
fn v4_reclaim_mark_only_frees_older_groups() {
    let t = Lpm4::new(8);
    t.insert(v4("10.0.0.0"), 32, 1).unwrap();
    t.insert(v4("10.0.1.0"), 32, 1).unwrap();
    t.remove(v4("10.0.0.0"), 32).unwrap();
    let mark = t.reclaim_mark();
    t.remove(v4("10.0.1.0"), 32).unwrap();
    assert_eq!(t.tbl8_groups_quarantined(), 2);
    assert_eq!(t.reclaim_to(mark), 1);
    assert_eq!(t.tbl8_groups_quarantined(), 1);
    assert_eq!(t.reclaim(), 1);
    assert_eq!(t.tbl8_groups_in_use(), 0);
}

#[test]
fn v4_groups_return_to_zero() {
    let t = Lpm4::new(1024);
    let mut rng = SplitMix64::new(3);
    t.insert(v4("0.0.0.0"), 0, 1).unwrap();
    let mut long = Vec::new();
    for _ in 0..2000 {
        let a = Ipv4Addr::from(0x0a00_0000 | (rng.next_u32() & 0x0003_ffff));
        let len = 25 + rng.below(8) as u8;
        t.insert(a, len, rng.below(1000) as u32).unwrap();
        long.push((a, len));
    }
    assert!(t.tbl8_groups_in_use() > 500);
    for (a, len) in long {
        t.remove(a, len);
    }
    assert_eq!(t.len(), 1);
    let quarantined = t.tbl8_groups_quarantined();
    assert_eq!(quarantined, t.tbl8_groups_in_use());
    assert_eq!(t.reclaim(), quarantined);
    assert_eq!(t.tbl8_groups_in_use(), 0);
    for _ in 0..1000 {
        assert_eq!(t.lookup(rng.next_u32()), Some(1));
    }
}

#[test]
fn v4_prefetch_and_bulk_agree_with_single() {
    let routes: Vec<_> = fib::bgp_like_prefixes(2000, 11)
        .into_iter()
        .enumerate()
        .map(|(i, (p, l))| (p, l, i as u32))
        .collect();
    let t = Lpm4::build(routes, 1 << 12).unwrap();
    let mut rng = SplitMix64::new(5);
    let addrs: Vec<u32> = (0..1000).map(|_| rng.next_u32()).collect();
    let mut out = vec![None; addrs.len()];
    t.lookup_bulk(&addrs, &mut out);
    for (a, o) in addrs.iter().zip(&out) {
        t.prefetch(*a);
        assert_eq!(t.lookup(*a), *o);
    }
    assert!(out.iter().any(|o| o.is_some()));
}

/// A bulk build answers like the same routes inserted one by one, and like the reference.
#[test]
fn v4_build_matches_inserts() {
    let prefixes = fib::bgp_like_prefixes(3000, 21);
    let mut routes: Vec<_> = prefixes
        .iter()
        .enumerate()
        .map(|(i, &(p, l))| (p, l, i as u32 % 5000))
        .collect();
    // Duplicates: the last one wins, as with repeated inserts; plus a default and host routes.
    routes.push((prefixes[0].0, prefixes[0].1, 77_777));
    routes.push((v4("0.0.0.0"), 0, 4242));
    routes.push((v4("8.8.8.8"), 32, 88));
    let built = Lpm4::build(routes.clone(), 4096).unwrap();
    let inc = Lpm4::new(4096);
    let mut reference = Reference::default();
    for &(p, l, nh) in &routes {
        inc.insert(p, l, nh).unwrap();
        reference.insert(u32::from(p), l, nh);
    }
    assert_eq!(built.len(), reference.rules.len());
    assert_eq!(built.routes(), inc.routes());
    assert_eq!(built.tbl8_groups_in_use(), inc.tbl8_groups_in_use());
    let mut rng = SplitMix64::new(9);
    let mut addrs: Vec<u32> = (0..5000).map(|_| rng.next_u32()).collect();
    for &(p, l, _) in &reference.rules {
        let last = p | !mask4(l);
        addrs.extend([p, last, p.wrapping_sub(1), last.wrapping_add(1)]);
    }
    for a in addrs {
        let want = reference.lookup(a);
        assert_eq!(built.lookup(a), want, "built {}", Ipv4Addr::from(a));
        assert_eq!(inc.lookup(a), want, "inserted {}", Ipv4Addr::from(a));
    }
    // And removal works on a built table like on any other.
    for &(p, l, _) in routes.iter().step_by(3) {
        assert_eq!(built.remove(p, l), reference.remove(u32::from(p), l));
    }
    for _ in 0..5000 {
        let a = rng.next_u32();
        assert_eq!(built.lookup(a), reference.lookup(a));
    }
}

// ---- IPv4: random tables ------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op<A> {
    Insert(A, u8, u32),
    /// Remove the rule at this index (modulo the number of rules), if any.
    RemoveExisting(usize),
    /// Remove a prefix that may or may not be there.
    Remove(A, u8),
}

/// Prefixes that overlap a lot: near one of a few bases, the noise shifted into the low bits.
fn prefix4() -> impl Strategy<Value = u32> {
    (
        prop::sample::select(vec![
            0x0a00_0000u32,
            0x0a01_0200,
            0xc0a8_0000,
            0,
            0xffff_ff00,
        ]),
        any::<u32>(),
        0u32..=32,
    )
        .prop_map(|(base, noise, shift)| base ^ noise.checked_shr(shift).unwrap_or(0))
}

/// Mostly long prefixes (cheap to write in debug builds), a few short ones including /0.
fn len4() -> impl Strategy<Value = u8> {
    prop_oneof![
        1 => 0u8..8,
        6 => 8u8..16,
        20 => 16u8..=24,
        24 => 25u8..=32,
    ]
}

fn nh() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..8, 1 => Just(MAX_NEXT_HOP - 1)]
}

fn ops4() -> impl Strategy<Value = Vec<Op<u32>>> {
    prop::collection::vec(
        prop_oneof![
            6 => (prefix4(), len4(), nh()).prop_map(|(p, l, n)| Op::Insert(p, l, n)),
            3 => any::<usize>().prop_map(Op::RemoveExisting),
            1 => (prefix4(), len4()).prop_map(|(p, l)| Op::Remove(p, l)),
        ],
        1..60,
    )
}

/// Every address worth checking: random ones plus each rule's first and last address and their neighbours.
fn probes4(reference: &Reference<u32>, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    let mut v: Vec<u32> = (0..200).map(|_| rng.next_u32()).collect();
    for &(p, l, _) in &reference.rules {
        let last = p | !mask4(l);
        v.extend([p, last, p.wrapping_sub(1), last.wrapping_add(1)]);
        v.push(p | (rng.next_u32() & !mask4(l)));
    }
    v
}

fn check4(t: &Lpm4, reference: &Reference<u32>, seed: u64) -> Result<(), TestCaseError> {
    let probes = probes4(reference, seed);
    let mut bulk = vec![None; probes.len()];
    t.lookup_bulk(&probes, &mut bulk);
    for (&a, &b) in probes.iter().zip(&bulk) {
        let want = reference.lookup(a);
        prop_assert_eq!(t.lookup(a), want, "{}", Ipv4Addr::from(a));
        prop_assert_eq!(b, want, "bulk {}", Ipv4Addr::from(a));
    }
    prop_assert_eq!(t.len(), reference.rules.len());
    let want: Vec<_> = reference
        .sorted()
        .into_iter()
        .map(|(p, l, n)| (Ipv4Addr::from(p), l, n))
        .collect();
    prop_assert_eq!(t.routes(), want);
    // The group accounting is exact: one group per /24 that holds a prefix longer than /24.
    t.reclaim();
    let slash24s: HashSet<u32> = reference
        .rules
        .iter()
        .filter(|r| r.1 > 24)
        .map(|r| r.0 >> 8)
        .collect();
    prop_assert_eq!(t.tbl8_groups_in_use() as usize, slash24s.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn v4_random_ops_match_reference(ops in ops4(), seed in any::<u64>()) {
        let t = Lpm4::new(256);
        let mut reference = Reference::default();
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Op::Insert(p, l, n) => {
                    prop_assert_eq!(
                        t.insert(Ipv4Addr::from(p), l, n),
                        Ok(reference.insert(p, l, n))
                    );
                }
                Op::RemoveExisting(i) => {
                    if !reference.rules.is_empty() {
                        let (p, l, _) = reference.rules[i % reference.rules.len()];
                        prop_assert_eq!(t.remove(Ipv4Addr::from(p), l), reference.remove(p, l));
                    }
                }
                Op::Remove(p, l) => {
                    prop_assert_eq!(t.remove(Ipv4Addr::from(p), l), reference.remove(p, l));
                }
            }
            // Check in the middle of the sequence too, not only at the end.
            if i % 16 == 15 {
                check4(&t, &reference, seed ^ i as u64)?;
            }
        }
        check4(&t, &reference, seed)?;
        // Removing everything leaves an empty table without groups.
        for (p, l, _) in reference.rules.clone() {
            prop_assert_eq!(t.remove(Ipv4Addr::from(p), l), reference.remove(p, l));
        }
        check4(&t, &reference, seed)?;
        prop_assert_eq!(t.tbl8_groups_in_use(), 0);
    }

    #[test]
    fn v4_build_matches_reference(
        rules in prop::collection::vec((prefix4(), len4(), nh()), 0..60),
        seed in any::<u64>(),
    ) {
        let t = Lpm4::build(rules.iter().map(|&(p, l, n)| (Ipv4Addr::from(p), l, n)), 256).unwrap();
        let mut reference = Reference::default();
        for &(p, l, n) in &rules {
            reference.insert(p, l, n);
        }
        check4(&t, &reference, seed)?;
    }
}

// ---- IPv6: fixed cases ------------------------------------------------------------------------------------

#[test]
fn v6_empty_default_and_host_routes() {
    let t = Lpm6::new(64);
    assert!(t.is_empty());
    assert_eq!(l6(&t, "2001:db8::1"), None);
    assert_eq!(t.insert(v6("::"), 0, 7), Ok(None));
    assert_eq!(l6(&t, "2001:db8::1"), Some(7));
    assert_eq!(l6(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Some(7));
    assert_eq!(t.insert(v6("2001:db8::1"), 128, 9), Ok(None));
    assert_eq!(l6(&t, "2001:db8::1"), Some(9));
    assert_eq!(l6(&t, "2001:db8::"), Some(7));
    assert_eq!(l6(&t, "2001:db8::2"), Some(7));
    // A /128 needs every level: 13 groups.
    assert_eq!(t.tbl8_groups_in_use(), 13);
    assert_eq!(
        t.insert(v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 128, 1),
        Ok(None)
    );
    assert_eq!(l6(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Some(1));
    assert_eq!(l6(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), Some(7));
    assert_eq!(t.remove(v6("::"), 0), Some(7));
    assert_eq!(l6(&t, "2001:db8::1"), Some(9));
    assert_eq!(l6(&t, "2001:db8::2"), None);
    assert_eq!(t.remove(v6("2001:db8::1"), 128), Some(9));
    assert_eq!(
        t.remove(v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 128),
        Some(1)
    );
    assert_eq!(t.tbl8_groups_quarantined(), 26);
    assert_eq!(t.reclaim(), 26);
    assert_eq!(t.tbl8_groups_in_use(), 0);
    assert!(t.is_empty());
}

#[test]
fn v6_overlaps_replacement_and_cover_restored() {
    let t = Lpm6::new(256);
    let rules = [
        ("2000::", 3, 1),
        ("2001:db8::", 32, 2),
        ("2001:db8::", 33, 3),
        ("2001:db8:0:100::", 56, 4),
        ("2001:db8:0:100::", 64, 5),
        ("2001:db8:0:100::8", 125, 6),
        ("2001:db8:0:100::a", 127, 7),
    ];
    for (p, l, n) in rules {
        assert_eq!(t.insert(v6(p), l, n), Ok(None));
    }
    let expect = |t: &Lpm6, cases: &[(&str, Option<u32>)]| {
        for &(a, nh) in cases {
            assert_eq!(l6(t, a), nh, "{a}");
        }
    };
    expect(
        &t,
        &[
            ("3fff::1", Some(1)),
            ("4000::1", None),
            ("2001:db8:8000::1", Some(2)),
            ("2001:db8:7fff::1", Some(3)),
            ("2001:db8:0:1ff::1", Some(4)),
            ("2001:db8:0:100::1", Some(5)),
            ("2001:db8:0:100::7", Some(5)),
            ("2001:db8:0:100::8", Some(6)),
            ("2001:db8:0:100::9", Some(6)),
            ("2001:db8:0:100::a", Some(7)),
            ("2001:db8:0:100::b", Some(7)),
            ("2001:db8:0:100::c", Some(6)),
            ("2001:db8:0:100::f", Some(6)),
            ("2001:db8:0:100::10", Some(5)),
        ],
    );
    assert_eq!(t.insert(v6("2001:db8::"), 33, 30), Ok(Some(3)));
    assert_eq!(t.insert(v6("2001:db8:0:100::"), 64, 50), Ok(Some(5)));
    expect(
        &t,
        &[
            ("2001:db8:7fff::1", Some(30)),
            ("2001:db8:0:100::1", Some(50)),
            ("2001:db8:0:100::a", Some(7)),
        ],
    );
    // Remove from the middle of the chain: the covering rule comes back at every level below.
    assert_eq!(t.remove(v6("2001:db8::"), 33), Some(30));
    expect(
        &t,
        &[
            ("2001:db8:7fff::1", Some(2)),
            ("2001:db8:0:100::1", Some(50)),
            ("2001:db8:0:200::1", Some(2)),
        ],
    );
    assert_eq!(t.remove(v6("2001:db8:0:100::"), 64), Some(50));
    expect(
        &t,
        &[
            ("2001:db8:0:100::1", Some(4)),
            ("2001:db8:0:100::a", Some(7)),
            ("2001:db8:0:100::1:0", Some(4)),
        ],
    );
    // A short rule inserted over existing deep groups changes only what it covers.
    assert_eq!(t.remove(v6("2001:db8::"), 32), Some(2));
    assert_eq!(t.insert(v6("2001:d00::"), 24, 8), Ok(None));
    expect(
        &t,
        &[
            ("2001:db8:7fff::1", Some(8)),
            ("2001:db8:0:100::1", Some(4)),
            ("2001:db8:0:200::1", Some(8)),
            ("2001:e00::1", Some(1)),
        ],
    );
    assert_eq!(t.insert(v6("2001:db8::"), 40, 9), Ok(None));
    expect(
        &t,
        &[("2001:db8:0:200::1", Some(9)), ("2001:db8:100::1", Some(8))],
    );
    for (p, l) in [
        ("2001:db8:0:100::8", 125),
        ("2001:db8:0:100::a", 127),
        ("2001:db8:0:100::", 56),
        ("2001:db8::", 40),
    ] {
        assert!(t.remove(v6(p), l).is_some(), "{p}/{l}");
    }
    t.reclaim();
    assert_eq!(t.tbl8_groups_in_use(), 0);
    expect(
        &t,
        &[("2001:db8:0:100::a", Some(8)), ("2001:e00::1", Some(1))],
    );
}

#[test]
fn v6_invalid_input_and_exhaustion() {
    let t = Lpm6::new(3);
    assert_eq!(
        t.insert(v6("::"), 129, 1),
        Err(FibError::InvalidLength { len: 129, max: 128 })
    );
    assert_eq!(
        t.insert(v6("::"), 8, MAX_NEXT_HOP),
        Err(FibError::InvalidNextHop(MAX_NEXT_HOP))
    );
    assert_eq!(t.remove(v6("::"), 200), None);
    assert_eq!(t.get(v6("::"), 129), None);
    // A /48 needs 3 groups; a /56 in it one more, which is not there: refused, table unchanged.
    t.insert(v6("2001:db8:1::"), 48, 1).unwrap();
    assert_eq!(t.tbl8_groups_in_use(), 3);
    assert_eq!(
        t.insert(v6("2001:db8:1::"), 56, 2),
        Err(FibError::Tbl8Exhausted)
    );
    assert_eq!(
        t.insert(v6("2001:db9::"), 128, 2),
        Err(FibError::Tbl8Exhausted)
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.tbl8_groups_in_use(), 3);
    assert_eq!(l6(&t, "2001:db8:1::1"), Some(1));
    // Sharing existing levels needs no new group.
    t.insert(v6("2001:db8:1::"), 47, 3).unwrap();
    t.insert(v6("2001:db8:2::"), 48, 4).unwrap();
    assert_eq!(l6(&t, "2001:db8:0::1"), Some(3));
    assert_eq!(l6(&t, "2001:db8:2::1"), Some(4));
    assert_eq!(t.tbl8_groups_in_use(), 3);
    assert_eq!(
        Lpm6::build([(v6("::"), 129, 1)], 4).err(),
        Some(FibError::InvalidLength { len: 129, max: 128 })
    );
    assert_eq!(
        Lpm6::build([(v6("::1"), 128, 1)], 12).err(),
        Some(FibError::Tbl8Exhausted)
    );
    let t = Lpm6::new(0);
    t.insert(v6("2001::"), 16, 1).unwrap();
    assert_eq!(t.insert(v6("2001::"), 25, 1), Err(FibError::Tbl8Exhausted));
    assert_eq!(l6(&t, "2001::1"), Some(1));
}

#[test]
fn v6_bulk_build_matches_inserts() {
    let prefixes = fib::bgp_like_prefixes_v6(3000, 5);
    let mut routes: Vec<_> = prefixes
        .iter()
        .enumerate()
        .map(|(i, &(p, l))| (p, l, i as u32))
        .collect();
    routes.push((prefixes[1].0, prefixes[1].1, 999_999));
    routes.push((v6("::"), 0, 12345));
    let built = Lpm6::build(routes.clone(), 1 << 14).unwrap();
    let inc = Lpm6::new(1 << 14);
    let mut reference = Reference::default();
    for &(p, l, nh) in &routes {
        inc.insert(p, l, nh).unwrap();
        reference.insert(u128::from(p), l, nh);
    }
    assert_eq!(built.routes(), inc.routes());
    assert_eq!(built.tbl8_groups_in_use(), inc.tbl8_groups_in_use());
    let mut rng = SplitMix64::new(1);
    let mut addrs: Vec<u128> = Vec::new();
    for &(p, l, _) in &reference.rules {
        let last = p | !mask6(l);
        let r = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
        addrs.extend([
            p,
            last,
            p.wrapping_sub(1),
            last.wrapping_add(1),
            p | (r & !mask6(l)),
        ]);
    }
    let mut out = vec![None; addrs.len()];
    let octets: Vec<[u8; 16]> = addrs.iter().map(|a| a.to_be_bytes()).collect();
    built.lookup_bulk(&octets, &mut out);
    for (i, &a) in addrs.iter().enumerate() {
        let want = reference.lookup(a);
        assert_eq!(
            built.lookup(&a.to_be_bytes()),
            want,
            "{}",
            Ipv6Addr::from(a)
        );
        assert_eq!(inc.lookup(&a.to_be_bytes()), want, "{}", Ipv6Addr::from(a));
        assert_eq!(out[i], want);
    }
}

// ---- IPv6: random tables ------------------------------------------------------------------------------------

fn prefix6() -> impl Strategy<Value = u128> {
    (
        prop::sample::select(vec![
            0x2001_0db8_0000_0000_0000_0000_0000_0000u128,
            0x2001_0db8_0001_0002_0000_0000_0000_0000,
            0x2001_0db8_0001_0002_0000_0000_0000_00f0,
            0xfe80_0000_0000_0000_0000_0000_0000_0000,
            0,
            u128::MAX,
        ]),
        any::<u128>(),
        0u32..=128,
    )
        .prop_map(|(base, noise, shift)| base ^ noise.checked_shr(shift).unwrap_or(0))
}

/// Every level, with its boundaries over-represented; short prefixes (costly in debug builds) rare.
fn len6() -> impl Strategy<Value = u8> {
    prop_oneof![
        1 => 0u8..16,
        3 => 16u8..=24,
        8 => prop::sample::select(vec![24u8, 25, 31, 32, 33, 40, 41, 48, 56, 63, 64, 65, 120, 121, 127, 128]),
        10 => 25u8..=64,
        6 => 65u8..=128,
    ]
}

fn ops6() -> impl Strategy<Value = Vec<Op<u128>>> {
    prop::collection::vec(
        prop_oneof![
            6 => (prefix6(), len6(), nh()).prop_map(|(p, l, n)| Op::Insert(p, l, n)),
            3 => any::<usize>().prop_map(Op::RemoveExisting),
            1 => (prefix6(), len6()).prop_map(|(p, l)| Op::Remove(p, l)),
        ],
        1..60,
    )
}

fn check6(t: &Lpm6, reference: &Reference<u128>, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = SplitMix64::new(seed);
    let mut probes: Vec<u128> = (0..200)
        .map(|_| (rng.next_u64() as u128) << 64 | rng.next_u64() as u128)
        .collect();
    for &(p, l, _) in &reference.rules {
        let last = p | !mask6(l);
        let r = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
        probes.extend([
            p,
            last,
            p.wrapping_sub(1),
            last.wrapping_add(1),
            p | (r & !mask6(l)),
        ]);
    }
    let octets: Vec<[u8; 16]> = probes.iter().map(|a| a.to_be_bytes()).collect();
    let mut bulk = vec![None; probes.len()];
    t.lookup_bulk(&octets, &mut bulk);
    for ((&a, o), &b) in probes.iter().zip(&octets).zip(&bulk) {
        let want = reference.lookup(a);
        prop_assert_eq!(t.lookup(o), want, "{}", Ipv6Addr::from(a));
        prop_assert_eq!(b, want, "bulk {}", Ipv6Addr::from(a));
    }
    prop_assert_eq!(t.len(), reference.rules.len());
    let want: Vec<_> = reference
        .sorted()
        .into_iter()
        .map(|(p, l, n)| (Ipv6Addr::from(p), l, n))
        .collect();
    prop_assert_eq!(t.routes(), want);
    // The group accounting is exact: a group of level k (base 16 + 8k) for every distinct base-length prefix
    // of the rules longer than that base.
    t.reclaim();
    let mut groups = HashSet::new();
    for &(p, l, _) in &reference.rules {
        for k in 1..=13u8 {
            let base = 16 + 8 * k;
            if l > base {
                groups.insert((k, p >> (128 - base)));
            }
        }
    }
    prop_assert_eq!(t.tbl8_groups_in_use() as usize, groups.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn v6_random_ops_match_reference(ops in ops6(), seed in any::<u64>()) {
        let t = Lpm6::new(2048);
        let mut reference = Reference::default();
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Op::Insert(p, l, n) => {
                    prop_assert_eq!(
                        t.insert(Ipv6Addr::from(p), l, n),
                        Ok(reference.insert(p, l, n))
                    );
                }
                Op::RemoveExisting(i) => {
                    if !reference.rules.is_empty() {
                        let (p, l, _) = reference.rules[i % reference.rules.len()];
                        prop_assert_eq!(t.remove(Ipv6Addr::from(p), l), reference.remove(p, l));
                    }
                }
                Op::Remove(p, l) => {
                    prop_assert_eq!(t.remove(Ipv6Addr::from(p), l), reference.remove(p, l));
                }
            }
            if i % 16 == 15 {
                check6(&t, &reference, seed ^ i as u64)?;
            }
        }
        check6(&t, &reference, seed)?;
        for (p, l, _) in reference.rules.clone() {
            prop_assert_eq!(t.remove(Ipv6Addr::from(p), l), reference.remove(p, l));
        }
        check6(&t, &reference, seed)?;
        prop_assert_eq!(t.tbl8_groups_in_use(), 0);
    }

    #[test]
    fn v6_build_matches_reference(
        rules in prop::collection::vec((prefix6(), len6(), nh()), 0..60),
        seed in any::<u64>(),
    ) {
        let t = Lpm6::build(rules.iter().map(|&(p, l, n)| (Ipv6Addr::from(p), l, n)), 2048).unwrap();
        let mut reference = Reference::default();
        for &(p, l, n) in &rules {
            reference.insert(p, l, n);
        }
        check6(&t, &reference, seed)?;
    }
}

// ---- Concurrency --------------------------------------------------------------------------------------------

/// Readers that count their bursts, so the writer can wait for a grace period before reclaiming groups.
struct Epochs(Vec<AtomicU64>);

impl Epochs {
    fn new(n: usize) -> Arc<Epochs> {
        Arc::new(Epochs((0..n).map(|_| AtomicU64::new(0)).collect()))
    }

    /// Waits until every reader has finished the burst it was in (or the readers stopped).
    fn grace_period(&self, stop: &AtomicBool) {
        let seen: Vec<u64> = self.0.iter().map(|e| e.load(Ordering::SeqCst)).collect();
        for (e, s) in self.0.iter().zip(seen) {
            while e.load(Ordering::SeqCst) == s && s != EXITED && !stop.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
    }
}

/// A reader's epoch once it has exited (normally or by a failed assertion).
const EXITED: u64 = u64::MAX;

/// Marks a reader as exited when dropped, so that a failing reader cannot hang the writer's grace period.
struct ExitGuard(Arc<Epochs>, usize);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0 .0[self.1].store(EXITED, Ordering::SeqCst);
    }
}

/// A race runs at least this long, and until it has done [`RACE_ROUNDS`] updates and reclaimed
/// [`RACE_RECLAIMS`] groups (debug builds on a loaded machine are slow), but never longer than [`RACE_CAP`].
const RACE_TIME: Duration = Duration::from_millis(1500);
const RACE_ROUNDS: u64 = 300;
const RACE_RECLAIMS: u32 = 20;
const RACE_CAP: Duration = Duration::from_secs(60);

/// Whether the writer of a race should go on.
fn race_on(start: Instant, rounds: u64, reclaimed: u32) -> bool {
    let t = start.elapsed();
    t < RACE_CAP && (t < RACE_TIME || rounds < RACE_ROUNDS || reclaimed < RACE_RECLAIMS)
}

/// One writer adds and removes long prefixes (creating, collapsing and, after grace periods, reusing groups)
/// under a fixed covering route while readers look up addresses inside it: every answer must be the cover or
/// one of the long routes that contain the address, never "no route", never anything else.
#[test]
fn v4_lookups_race_a_writer() {
    let t = Arc::new(Lpm4::new(4)); // few groups: they are reused all the time
    t.insert(v4("10.0.0.0"), 8, 1).unwrap();
    // Long prefixes in four /24s (next hops tell the /24 apart, so a group read in the wrong /24 would show).
    let mut long: Vec<(u32, u8, u32)> = Vec::new();
    for (s, slash24) in [0x0a01_0200u32, 0x0a01_0300, 0x0a7f_0000, 0x0aff_ff00]
        .into_iter()
        .enumerate()
    {
        let s = s as u32;
        long.extend([
            (slash24, 25, 10 + s * 10),
            (slash24 | 0x80, 25, 11 + s * 10),
            (slash24 | 0xc0, 26, 12 + s * 10),
            (slash24 | 0xc8, 30, 13 + s * 10),
            (slash24 | 0x07, 32, 14 + s * 10),
            (slash24, 24, 15 + s * 10),
        ]);
    }
    let allowed = |a: u32| -> Vec<u32> {
        let mut v = vec![1];
        v.extend(long.iter().filter(|r| a & mask4(r.1) == r.0).map(|r| r.2));
        v
    };
    let mut addrs: Vec<u32> = Vec::new();
    for &(p, l, _) in &long {
        let last = p | !mask4(l);
        addrs.extend([p, last, p.wrapping_sub(1), last.wrapping_add(1)]);
    }
    addrs.retain(|&a| a >> 24 == 10); // inside the cover
    addrs.sort_unstable();
    addrs.dedup();
    let allowed: Vec<Vec<u32>> = addrs.iter().map(|&a| allowed(a)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let epochs = Epochs::new(2);
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (t, stop, epochs) = (t.clone(), stop.clone(), epochs.clone());
            let (addrs, allowed) = (addrs.clone(), allowed.clone());
            std::thread::spawn(move || {
                let mut out = vec![None; addrs.len()];
                let _exit = ExitGuard(epochs.clone(), r);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // A "burst": bulk and single lookups of every address.
                    t.lookup_bulk(&addrs, &mut out);
                    for (i, &a) in addrs.iter().enumerate() {
                        for got in [out[i], t.lookup(a)] {
                            let ok = got.is_some_and(|nh| allowed[i].contains(&nh));
                            assert!(ok, "{} -> {got:?}", Ipv4Addr::from(a));
                        }
                    }
                    n += 1;
                    epochs.0[r].store(n, Ordering::SeqCst);
                }
                n
            })
        })
        .collect();
    let mut rng = SplitMix64::new(42);
    let start = Instant::now();
    let mut rounds = 0u64;
    let mut reclaimed = 0;
    let mut present: Vec<bool> = vec![false; long.len()];
    while race_on(start, rounds, reclaimed) && !readers.iter().any(|r| r.is_finished()) {
        let i = rng.below(long.len() as u64) as usize;
        let (p, l, nh) = long[i];
        if present[i] {
            t.remove(Ipv4Addr::from(p), l).unwrap();
        } else {
            match t.insert(Ipv4Addr::from(p), l, nh) {
                Ok(_) => {}
                Err(FibError::Tbl8Exhausted) => {
                    // Wait for the readers to leave the freed groups, then reuse them.
                    let mark = t.reclaim_mark();
                    epochs.grace_period(&stop);
                    reclaimed += t.reclaim_to(mark);
                    continue;
                }
                Err(e) => panic!("{e}"),
            }
        }
        present[i] = !present[i];
        rounds += 1;
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().expect("reader panicked") > 10);
    }
    // Enough to have created, collapsed and reused groups many times under the readers' feet.
    assert!(
        rounds >= RACE_ROUNDS && reclaimed >= RACE_RECLAIMS,
        "{rounds} rounds, {reclaimed} groups reclaimed"
    );
}

/// The IPv6 race: long prefixes several levels deep under a /32, so groups of several levels are created,
/// filled, collapsed and reused while readers walk them.
#[test]
fn v6_lookups_race_a_writer() {
    let t = Arc::new(Lpm6::new(24));
    t.insert(v6("2001:db8::"), 32, 1).unwrap();
    let long: Vec<(u128, u8, u32)> = [
        ("2001:db8:1::", 48, 10),
        ("2001:db8:1::", 56, 11),
        ("2001:db8:1:0:1::", 80, 12),
        ("2001:db8:1::7", 128, 13),
        ("2001:db8:1::", 121, 14),
        ("2001:db8:2:ff00::", 64, 20),
        ("2001:db8:2:ff00::", 100, 21),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:fff0", 124, 30),
        ("2001:db8:8000::", 33, 40),
    ]
    .iter()
    .map(|&(p, l, n)| (u128::from(v6(p)), l, n))
    .collect();
    let allowed = |a: u128| -> Vec<u32> {
        let mut v = vec![1];
        v.extend(long.iter().filter(|r| a & mask6(r.1) == r.0).map(|r| r.2));
        v
    };
    let mut addrs: Vec<u128> = Vec::new();
    for &(p, l, _) in &long {
        let last = p | !mask6(l);
        addrs.extend([p, last, p.wrapping_sub(1), last.wrapping_add(1), p + 7]);
    }
    addrs.retain(|&a| a >> 24 == 10); // inside the cover
    let cover = u128::from(v6("2001:db8::"));
    addrs.retain(|&a| a & mask6(32) == cover);
    addrs.sort_unstable();
    addrs.dedup();
    let allowed: Vec<Vec<u32>> = addrs.iter().map(|&a| allowed(a)).collect();
    let octets: Vec<[u8; 16]> = addrs.iter().map(|a| a.to_be_bytes()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let epochs = Epochs::new(2);
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (t, stop, epochs) = (t.clone(), stop.clone(), epochs.clone());
            let (octets, allowed) = (octets.clone(), allowed.clone());
            std::thread::spawn(move || {
                let mut out = vec![None; octets.len()];
                let _exit = ExitGuard(epochs.clone(), r);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    t.lookup_bulk(&octets, &mut out);
                    for (i, a) in octets.iter().enumerate() {
                        for got in [out[i], t.lookup(a)] {
                            let ok = got.is_some_and(|nh| allowed[i].contains(&nh));
                            assert!(ok, "{} -> {got:?}", Ipv6Addr::from(*a));
                        }
                    }
                    n += 1;
                    epochs.0[r].store(n, Ordering::SeqCst);
                }
                n
            })
        })
        .collect();
    let mut rng = SplitMix64::new(43);
    let start = Instant::now();
    let mut rounds = 0u64;
    let mut reclaimed = 0;
    let mut present: Vec<bool> = vec![false; long.len()];
    while race_on(start, rounds, reclaimed) && !readers.iter().any(|r| r.is_finished()) {
        let i = rng.below(long.len() as u64) as usize;
        let (p, l, nh) = long[i];
        if present[i] {
            t.remove(Ipv6Addr::from(p), l).unwrap();
        } else {
            match t.insert(Ipv6Addr::from(p), l, nh) {
                Ok(_) => {}
                Err(FibError::Tbl8Exhausted) => {
                    let mark = t.reclaim_mark();
                    epochs.grace_period(&stop);
                    reclaimed += t.reclaim_to(mark);
                    continue;
                }
                Err(e) => panic!("{e}"),
            }
        }
        present[i] = !present[i];
        rounds += 1;
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().expect("reader panicked") > 10);
    }
    // Enough to have created, collapsed and reused groups many times under the readers' feet.
    assert!(
        rounds >= RACE_ROUNDS && reclaimed >= RACE_RECLAIMS,
        "{rounds} rounds, {reclaimed} groups reclaimed"
    );
}

#[test]
fn tables_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Lpm4>();
    check::<Lpm6>();
    check::<FibError>();
}
