//! The learning bridge's MAC table: behaviour, aging, limits, floods, concurrency, and a model check.
//!
//! The module is compiled here from its source so these tests run even while the rest of the crate is being
//! edited.

#[allow(dead_code)]
#[path = "../src/bridge/mac_table.rs"]
mod mac_table;

use mac_table::{LearnOutcome, Mac, MacTable, MAX_LIMIT, RESERVED_PORT};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// A locally administered unicast MAC numbered `i` (Docker-style 02:42:xx:xx:xx:xx).
fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

/// splitmix64: a seedable generator for the floods, with no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A random learnable MAC, as `macof` sends them.
    fn unicast(&mut self) -> Mac {
        loop {
            let b = self.next().to_le_bytes();
            let m = [b[0] & 0xfe, b[1], b[2], b[3], b[4], b[5]];
            if m != [0; 6] {
                return m;
            }
        }
    }
}

/// The invariants that must hold whenever no operation is in flight: the count is exact, no MAC is stored
/// twice, and lookups agree with the stored entries.
fn check_invariants(t: &MacTable) -> Vec<(Mac, u16, u32)> {
    let entries = t.entries(0);
    assert_eq!(
        t.len(),
        entries.len(),
        "count differs from the occupied slots"
    );
    assert!(t.len() <= t.limit(), "more entries than the limit");
    let mut macs = HashSet::new();
    for (m, port, _) in &entries {
        assert!(macs.insert(*m), "{m:02x?} is stored twice");
        assert_eq!(t.lookup(m), Some(*port));
        assert_ne!(*port, RESERVED_PORT);
    }
    entries
}

#[test]
fn learn_lookup_refresh_move_remove() {
    let t = MacTable::new(100);
    assert!(t.is_empty());
    assert_eq!(t.lookup(&mac(1)), None);
    assert_eq!(t.learn(&mac(1), 3, 10), LearnOutcome::Learned);
    assert_eq!(t.lookup(&mac(1)), Some(3));
    assert_eq!(t.len(), 1);
    assert!(!t.is_empty());
    // Same port: a refresh, which moves the last-seen time.
    assert_eq!(t.learn(&mac(1), 3, 15), LearnOutcome::Known);
    assert_eq!(t.entries(20), vec![(mac(1), 3, 5)]);
    // Another port: a station move.
    assert_eq!(t.learn(&mac(1), 7, 16), LearnOutcome::Moved { from: 3 });
    assert_eq!(t.lookup(&mac(1)), Some(7));
    assert_eq!(t.entries(20), vec![(mac(1), 7, 4)]);
    assert_eq!(t.len(), 1);
    // Port 0 is an ordinary port (the slot is non-empty because the MAC is).
    assert_eq!(t.learn(&mac(2), 0, 16), LearnOutcome::Learned);
    assert_eq!(t.lookup(&mac(2)), Some(0));
    assert_eq!(
        t.learn(&mac(3), RESERVED_PORT - 1, 16),
        LearnOutcome::Learned
    );
    assert_eq!(t.lookup(&mac(3)), Some(RESERVED_PORT - 1));
    assert_eq!(t.len(), 3);
    assert!(t.remove(&mac(1)));
    assert!(!t.remove(&mac(1)));
    assert_eq!(t.lookup(&mac(1)), None);
    assert_eq!(t.len(), 2);
    // MACs that differ in one bit stay apart.
    let a = [0x02, 0, 0, 0, 0, 1];
    let b = [0x02, 0, 0, 0, 0, 3];
    assert_eq!(t.learn(&a, 1, 0), LearnOutcome::Learned);
    assert_eq!(t.lookup(&b), None);
    assert_eq!(t.learn(&b, 2, 0), LearnOutcome::Learned);
    assert_eq!((t.lookup(&a), t.lookup(&b)), (Some(1), Some(2)));
    check_invariants(&t);
}

#[test]
fn refuses_zero_multicast_and_reserved_port() {
    let t = MacTable::new(100);
    let zero = [0u8; 6];
    let bcast = [0xff; 6];
    let mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    for m in [zero, bcast, mcast] {
        assert_eq!(t.learn(&m, 1, 0), LearnOutcome::Refused);
        assert_eq!(t.lookup(&m), None);
        assert!(!t.remove(&m));
    }
    assert_eq!(t.learn(&mac(1), RESERVED_PORT, 0), LearnOutcome::Refused);
    assert!(t.is_empty());
    // The zero MAC must not match empty slots, even with entries present.
    t.learn(&mac(1), 1, 0);
    assert_eq!(t.lookup(&zero), None);
    assert!(!t.remove(&zero));
    assert_eq!(t.len(), 1);
    check_invariants(&t);
}

#[test]
fn aging_with_a_fake_clock() {
    let t = MacTable::new(1000);
    for i in 0..100 {
        t.learn(&mac(i), 1, 100);
    }
    // Half are seen again later, by refresh (same port) or move (another port).
    for i in 0..50 {
        let port = if i % 2 == 0 { 1 } else { 2 };
        t.learn(&mac(i), port, 150);
    }
    assert_eq!(t.age(160, 0), 0, "max_age 0 must never age");
    assert_eq!(t.age(u32::MAX, 0), 0, "max_age 0 must never age");
    assert_eq!(t.len(), 100);
    // 60 s since the old ones were seen: not more than 60, so they stay.
    assert_eq!(t.age(160, 60), 0);
    assert_eq!(t.age(161, 60), 50);
    assert_eq!(t.len(), 50);
    for i in 0..100 {
        assert_eq!(t.lookup(&mac(i)).is_some(), i < 50, "mac {i}");
    }
    // A refresh within the same second must not be lost, nor count as new.
    assert_eq!(t.learn(&mac(0), 1, 150), LearnOutcome::Known);
    assert_eq!(t.age(300, 300), 0);
    assert_eq!(t.age(451, 300), 50);
    assert!(t.is_empty());
    check_invariants(&t);
}

#[test]
fn aging_tolerates_a_clock_behind_the_entries() {
    // A worker's burst clock may run a little ahead of the control thread's: never age such entries.
    let t = MacTable::new(10);
    t.learn(&mac(1), 1, 1000);
    assert_eq!(t.age(990, 1), 0);
    assert_eq!(t.entries(990), vec![(mac(1), 1, 0)]);
    // A lagging worker does not move the last-seen time backwards.
    assert_eq!(t.learn(&mac(1), 1, 995), LearnOutcome::Known);
    assert_eq!(t.entries(1002), vec![(mac(1), 1, 2)]);
}

#[test]
fn limit_is_enforced_and_learning_resumes_after_aging() {
    let t = MacTable::new(500);
    assert_eq!(t.limit(), 500);
    let mut learned = 0;
    let mut limited = 0;
    for i in 0..1000 {
        match t.learn(&mac(i), (i % 8) as u16, i / 100) {
            LearnOutcome::Learned => learned += 1,
            LearnOutcome::LimitReached => limited += 1,
            other => panic!("mac {i}: {other:?}"),
        }
    }
    assert_eq!((learned, limited), (500, 500));
    assert_eq!(t.len(), 500);
    assert_eq!(
        (0..1000).filter(|&i| t.lookup(&mac(i)).is_some()).count(),
        500
    );
    // Known MACs are still refreshed and moved at the limit.
    assert_eq!(t.learn(&mac(0), 0, 10), LearnOutcome::Known);
    assert_eq!(t.learn(&mac(0), 5, 10), LearnOutcome::Moved { from: 0 });
    // The first 500 were seen at seconds 0..=4; age those not seen since second 2 (and not mac 0).
    let aged = t.age(6, 3);
    assert_eq!(aged, 300 - 1);
    assert_eq!(t.len(), 201);
    let mut resumed = 0;
    for i in 500..1000 {
        if t.learn(&mac(i), 1, 7) == LearnOutcome::Learned {
            resumed += 1;
        }
    }
    assert_eq!(resumed, 299);
    assert_eq!(t.len(), 500);
    assert_eq!(t.learn(&mac(5000), 1, 7), LearnOutcome::LimitReached);
    check_invariants(&t);
}

#[test]
fn sizing_and_small_limits() {
    for (limit, cap) in [
        (0, 8),
        (1, 8),
        (6, 8),
        (7, 16),
        (500, 1024),
        (65_536, 131_072),
        (1 << 20, 1 << 21),
    ] {
        let t = MacTable::new(limit);
        assert_eq!((t.limit(), t.capacity()), (limit, cap), "limit {limit}");
    }
    // Limit 0: learning disabled, nothing else breaks.
    let t = MacTable::new(0);
    assert_eq!(t.learn(&mac(1), 1, 0), LearnOutcome::LimitReached);
    assert_eq!(t.age(100, 1), 0);
    assert!(t.entries(0).is_empty());
    // Tiny tables (one bucket: both candidates coincide) fill exactly to the limit.
    for limit in 1..=20 {
        let t = MacTable::new(limit);
        let learned = (0..40)
            .filter(|&i| t.learn(&mac(i), 1, 0) == LearnOutcome::Learned)
            .count();
        assert_eq!(learned, limit, "limit {limit}");
        check_invariants(&t);
        assert_eq!(t.clear(), limit);
        assert!(t.is_empty());
    }
    // An absurd limit is clamped rather than allocating all memory.
    let t = MacTable::new(usize::MAX);
    assert_eq!(t.limit(), MAX_LIMIT);
    assert_eq!(t.learn(&mac(1), 1, 0), LearnOutcome::Learned);
    assert!(format!("{t:?}").contains("limit"));
}

#[test]
fn prefetch_any_mac_in_any_table() {
    for limit in [0, 1, 7, 13, 1000] {
        let t = MacTable::new(limit);
        let mut rng = Rng(limit as u64);
        for m in [[0; 6], [0xff; 6]]
            .into_iter()
            .chain((0..1000).map(|_| rng.unicast()))
        {
            t.prefetch(&m);
            t.prefetch_learn(&m);
            t.learn(&m, 1, 0);
        }
        check_invariants(&t);
    }
}

#[test]
fn remove_clear_retain_ports_and_entries() {
    let t = MacTable::new(1000);
    for i in 0..300 {
        t.learn(&mac(i), (i % 10) as u16, i);
    }
    assert_eq!(t.retain_ports(|p| p < 7), 90);
    assert_eq!(t.len(), 210);
    for i in 0..300 {
        assert_eq!(t.lookup(&mac(i)).is_some(), i % 10 < 7, "mac {i}");
    }
    let mut entries = check_invariants(&t);
    entries.sort();
    let mut expected: Vec<_> = (0..300)
        .filter(|i| i % 10 < 7)
        .map(|i| (mac(i), (i % 10) as u16, 0))
        .collect();
    expected.sort();
    let mut with_age = t.entries(400);
    with_age.sort();
    for ((m, p, age), (em, ep, _)) in with_age.iter().zip(&expected) {
        let i = u32::from_be_bytes([m[2], m[3], m[4], m[5]]);
        assert_eq!((m, p, *age), (em, ep, 400 - i));
    }
    assert_eq!(entries.len(), expected.len());
    for i in 0..100 {
        t.remove(&mac(i));
    }
    assert_eq!(t.len(), 140);
    assert_eq!(t.clear(), 140);
    assert!(t.is_empty());
    assert_eq!(t.clear(), 0);
    assert_eq!(t.learn(&mac(1), 1, 0), LearnOutcome::Learned);
}

/// Fills a table to its limit with `macs` and returns how many were refused as TableFull.
fn fill(t: &MacTable, macs: impl Iterator<Item = Mac>) -> (usize, usize, usize) {
    let (mut learned, mut full, mut limited) = (0, 0, 0);
    for m in macs {
        match t.learn(&m, 1, 0) {
            LearnOutcome::Learned => learned += 1,
            LearnOutcome::TableFull => full += 1,
            LearnOutcome::LimitReached => limited += 1,
            LearnOutcome::Known => {}
            other => panic!("{m:02x?}: {other:?}"),
        }
    }
    (learned, full, limited)
}

#[test]
fn macof_flood_of_a_million_random_macs() {
    let limit = 65_536;
    let t = MacTable::new(limit);
    let mut rng = Rng(0x6d61_636f_6600);
    let start = std::time::Instant::now();
    let (learned, full, limited) = fill(&t, (0..1_000_000).map(|_| rng.unicast()));
    let took = start.elapsed();
    eprintln!(
        "flood: 1M random MACs into limit {limit}: learned {learned}, TableFull {full}, LimitReached \
         {limited}, len {}, capacity {} ({} KiB), {:.0} ns/learn (this build)",
        t.len(),
        t.capacity(),
        t.capacity() * 12 / 1024,
        took.as_nanos() as f64 / 1e6
    );
    assert_eq!(t.len(), learned);
    assert!(t.len() == limit || full > 0);
    assert!(
        full < limit / 1000,
        "too many TableFull at load 0.5: {full}"
    );
    assert!(limited >= 1_000_000 - limit - full - 10);
    assert!(t.capacity() * 12 <= 2 << 20, "memory not bounded");
    check_invariants(&t);
    // Learned MACs of the flood are found again.
    let mut rng = Rng(0x6d61_636f_6600);
    let found = (0..1_000_000)
        .map(|_| rng.unicast())
        .filter(|m| t.lookup(m) == Some(1))
        .count();
    assert_eq!(found, learned);
}

#[test]
fn structured_macs_spread_at_the_highest_load() {
    // The limit whose sizing gives the highest load (0.8): sequential container MACs and random ones must
    // still spread well (a weak hash would fail many of the sequential ones here).
    let limit = 52_428;
    let t = MacTable::new(limit);
    assert_eq!(t.capacity(), 65_536);
    let (learned, full, _) = fill(&t, (0..limit as u32 + 1000).map(mac));
    eprintln!("sequential 02:42:.. MACs at load 0.8: learned {learned}, TableFull {full}");
    assert!(full * 50 < limit, "TableFull {full}");
    assert_eq!(t.len(), learned);
    let t = MacTable::new(limit);
    let mut rng = Rng(7);
    let (learned, full, _) = fill(&t, (0..limit + 1000).map(|_| rng.unicast()));
    eprintln!("random MACs at load 0.8: learned {learned}, TableFull {full}");
    assert!(full * 50 < limit, "TableFull {full}");
    // MACs differing only in the OUI, as on a trunk from many vendors.
    let t = MacTable::new(limit);
    let (learned, full, _) = fill(
        &t,
        (0..limit as u32).map(|i| {
            let b = i.to_be_bytes();
            [b[1] & 0xfe, b[2], b[3], 0x00, 0x00, 0x01 | (b[1] & 1) << 1]
        }),
    );
    eprintln!("OUI-only MACs at load 0.8: learned {learned}, TableFull {full}");
    assert!(full * 50 < limit, "TableFull {full}");
    check_invariants(&t);
}

/// A barrier whose waiters spin, so that they leave it within a few nanoseconds of each other. A thread that
/// panics poisons it (through [`Poison`]), so the others fail instead of spinning forever.
#[derive(Default)]
struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
    n: usize,
}

impl SpinBarrier {
    fn new(n: usize) -> SpinBarrier {
        SpinBarrier {
            n,
            ..SpinBarrier::default()
        }
    }

    fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            assert!(
                !self.poisoned.load(Ordering::Relaxed),
                "another thread failed"
            );
            spins += 1;
            if spins.is_multiple_of(4096) {
                std::thread::yield_now(); // more threads than cores
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Poisons its barrier when dropped by a panicking thread.
struct Poison<'a>(&'a SpinBarrier);

impl Drop for Poison<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Relaxed);
        }
    }
}

#[test]
fn concurrent_insertions_of_one_mac_leave_one_entry() {
    // Two workers insert the same new MAC at once. When both see the same first free slot, the slot's CAS
    // settles it; a duplicate needs them to aim at different slots, which happens when a slot frees up
    // between their scans. So: tables of one and two buckets, where every MAC competes for the same 8 or 16
    // slots, threads that learn and remove a small pool of MACs at random, released together by a spinning
    // barrier, and the invariants checked after every burst. Without the duplicate removal after
    // insertion, this finds duplicates within a few thousand rounds.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    const ROUNDS: u32 = 20_000;
    const OPS: u32 = 12;
    for (limit, pool) in [(6, 8u32), (12, 16)] {
        let t = MacTable::new(limit);
        assert!(t.capacity() <= 16);
        let barrier = SpinBarrier::new(threads);
        std::thread::scope(|s| {
            for th in 0..threads {
                let (t, barrier) = (&t, &barrier);
                s.spawn(move || {
                    let _poison = Poison(barrier);
                    let mut rng = Rng(th as u64 * 7919 + limit as u64);
                    for round in 0..ROUNDS {
                        barrier.wait();
                        for _ in 0..OPS {
                            let r = rng.next();
                            let m = mac((r % pool as u64) as u32);
                            if (r >> 32).is_multiple_of(3) {
                                t.remove(&m);
                            } else {
                                let out = t.learn(&m, th as u16 + 1, round);
                                assert_ne!(out, LearnOutcome::Refused);
                            }
                        }
                        barrier.wait();
                        if th == 0 {
                            for (_, port, _) in check_invariants(t) {
                                assert!((1..=threads as u16).contains(&port), "port {port}");
                            }
                        }
                        barrier.wait();
                    }
                });
            }
        });
        let n = check_invariants(&t).len();
        assert_eq!(t.clear(), n);
    }
}

#[test]
fn concurrent_learn_move_remove_while_aging_and_looking_up() {
    // Workers learn overlapping MACs, each on its own ports (so stations move between workers' ports) and
    // sometimes remove them, while the control thread advances the clock, ages, and looks up. The limit is
    // below the number of MACs, and the table near its highest load, so LimitReached and TableFull happen too.
    const WORKERS: u16 = 3;
    const POOL: u32 = 2000;
    const OPS: u32 = 300_000;
    let t = MacTable::new(1500);
    let now = AtomicU32::new(1);
    let running = AtomicBool::new(true);
    // Port p is written only by worker p / 10, with p % 10 < 3.
    let port_ok = |p: u16| p / 10 < WORKERS && p % 10 < 3;
    let outcomes = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (t, now) = (&t, &now);
                s.spawn(move || {
                    let mut rng = Rng(w as u64 + 1);
                    let mut counts = HashMap::new();
                    for _ in 0..OPS {
                        let r = rng.next();
                        let m = mac((r % POOL as u64) as u32);
                        if (r >> 32).is_multiple_of(50) {
                            t.remove(&m);
                            continue;
                        }
                        let port = w * 10 + ((r >> 40) % 3) as u16;
                        let out = t.learn(&m, port, now.load(Ordering::Relaxed));
                        let kind = match out {
                            LearnOutcome::Moved { .. } => "moved",
                            LearnOutcome::Refused => panic!("refused {m:02x?}"),
                            other => match other {
                                LearnOutcome::Known => "known",
                                LearnOutcome::Learned => "learned",
                                LearnOutcome::LimitReached => "limit",
                                _ => "full",
                            },
                        };
                        *counts.entry(kind).or_insert(0u64) += 1;
                    }
                    counts
                })
            })
            .collect();
        let (t, now, running) = (&t, &now, &running);
        let control = s.spawn(move || {
            let mut aged = 0;
            let mut rng = Rng(99);
            while running.load(Ordering::Relaxed) {
                let n = now.fetch_add(1, Ordering::Relaxed) + 1;
                aged += t.age(n, 2);
                for _ in 0..200 {
                    if let Some(p) = t.lookup(&mac((rng.next() % POOL as u64) as u32)) {
                        assert!(port_ok(p), "port {p} was never written");
                    }
                }
                assert!(t.len() <= t.limit());
                std::thread::yield_now();
            }
            aged
        });
        let mut total: HashMap<&str, u64> = HashMap::new();
        for w in workers {
            for (k, v) in w.join().expect("worker") {
                *total.entry(k).or_default() += v;
            }
        }
        running.store(false, Ordering::Relaxed);
        let aged = control.join().expect("control");
        (total, aged)
    });
    eprintln!("outcomes {:?}, aged {}", outcomes.0, outcomes.1);
    for kind in ["known", "learned", "moved", "limit"] {
        assert!(outcomes.0.get(kind).copied().unwrap_or(0) > 0, "no {kind}");
    }
    let entries = check_invariants(&t);
    for (_, p, _) in &entries {
        assert!(port_ok(*p), "port {p} was never written");
    }
    // Everything still works afterwards.
    let n = t.clear();
    assert_eq!(n, entries.len());
    assert!(t.is_empty());
    assert_eq!(t.learn(&mac(1), 1, 0), LearnOutcome::Learned);
}

#[derive(Clone, Debug)]
enum Op {
    Learn { mac: usize, port: u16, dt: u32 },
    Remove(usize),
    Age(u32),
    RetainPorts(u16),
    Clear,
}

/// The pool the model test draws from: a multicast and a zero MAC, then unicast ones that share prefixes.
fn pool() -> Vec<Mac> {
    let mut p = vec![[0x01, 0x00, 0x5e, 0, 0, 1], [0; 6]];
    p.extend((0..22u8).map(|i| [0x02, 0x42, 0xac, 0x11, i / 4, 0x10 + i]));
    p
}

fn op() -> impl Strategy<Value = Op> {
    let n = pool().len();
    prop_oneof![
        6 => (0..n, prop_oneof![9 => 0u16..6, 1 => Just(RESERVED_PORT)], 0u32..3)
            .prop_map(|(mac, port, dt)| Op::Learn { mac, port, dt }),
        2 => (0..n).prop_map(Op::Remove),
        2 => (0u32..6).prop_map(Op::Age),
        1 => (1u16..4).prop_map(Op::RetainPorts),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    // No failure file: proptest looks for it beside a lib.rs this test's directory does not have.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_a_hashmap_model(
        limit in prop_oneof![1usize..=15, Just(1000)],
        ops in prop::collection::vec(op(), 1..120),
    ) {
        // limit <= 15 cannot fill two buckets (16 slots), and 22 MACs in 256 buckets practically cannot
        // either: TableFull is not expected.
        let t = MacTable::new(limit);
        let macs = pool();
        let mut model: HashMap<Mac, (u16, u32)> = HashMap::new();
        let mut now = 100u32;
        for op in ops {
            match op {
                Op::Learn { mac, port, dt } => {
                    now += dt;
                    let m = macs[mac];
                    let expected = if m == [0; 6] || m[0] & 1 == 1 || port == RESERVED_PORT {
                        LearnOutcome::Refused
                    } else if let Some(e) = model.get_mut(&m) {
                        let from = e.0;
                        *e = (port, now);
                        if from == port { LearnOutcome::Known } else { LearnOutcome::Moved { from } }
                    } else if model.len() >= limit {
                        LearnOutcome::LimitReached
                    } else {
                        model.insert(m, (port, now));
                        LearnOutcome::Learned
                    };
                    prop_assert_eq!(t.learn(&m, port, now), expected);
                }
                Op::Remove(mac) => {
                    let m = macs[mac];
                    prop_assert_eq!(t.remove(&m), model.remove(&m).is_some());
                }
                Op::Age(max_age) => {
                    let before = model.len();
                    if max_age > 0 {
                        model.retain(|_, (_, seen)| now.saturating_sub(*seen) <= max_age);
                    }
                    prop_assert_eq!(t.age(now, max_age), before - model.len());
                }
                Op::RetainPorts(k) => {
                    let before = model.len();
                    model.retain(|_, (port, _)| *port % k != 0);
                    prop_assert_eq!(t.retain_ports(|p| p % k != 0), before - model.len());
                }
                Op::Clear => {
                    prop_assert_eq!(t.clear(), model.len());
                    model.clear();
                }
            }
            prop_assert_eq!(t.len(), model.len());
            for m in &macs {
                prop_assert_eq!(t.lookup(m), model.get(m).map(|e| e.0));
            }
            let mut got = t.entries(now);
            got.sort();
            let mut want: Vec<_> =
                model.iter().map(|(m, (p, seen))| (*m, *p, now - seen)).collect();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
}

/// The hinted entry points agree with the plain ones for right, wrong and out-of-range hints: a wrong hint
/// only costs a scan of the real candidates and never makes learn insert a second copy.
#[test]
fn hints_right_or_wrong_give_the_same_answers() {
    let t = MacTable::new(4096);
    for i in 0..3000 {
        let m = mac(i);
        let hint = match i % 3 {
            0 => t.first_bucket_of(&m),
            1 => t.first_bucket_of(&mac(i + 1)),
            _ => u32::MAX - i,
        };
        assert_eq!(t.learn_hinted(&m, hint, 1, 5), LearnOutcome::Learned);
        assert_eq!(t.learn_hinted(&m, hint, 1, 6), LearnOutcome::Known);
        assert_eq!(t.lookup_hinted(&m, hint), Some(1));
        assert_eq!(
            t.learn_hinted(&m, hint, 2, 7),
            LearnOutcome::Moved { from: 1 }
        );
        assert_eq!(t.lookup_hinted(&m, hint), t.lookup(&m));
    }
    assert_eq!(t.len(), 3000);
    check_invariants(&t);
    let (bd, bs) = t.prefetch_pair(&mac(7), &mac(8));
    assert_eq!(
        (bd, bs),
        (t.first_bucket_of(&mac(7)), t.first_bucket_of(&mac(8)))
    );
    assert_eq!(t.lookup_hinted(&mac(99_999), 0), None);
    assert_eq!(
        t.learn_hinted(&[1, 0, 0, 0, 0, 1], 0, 1, 5),
        LearnOutcome::Refused
    );
}
