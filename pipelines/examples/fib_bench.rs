//! FIB benchmark: build time and lookup rate of `Lpm4` and `Lpm6` for tables of BGP-like prefixes.
//!
//! ```text
//! cargo run --release -p wharf-pipelines --example fib_bench [--ipv4 | --ipv6] [SIZE...]
//! ```
//!
//! For each size (default 1, 10,000 and 1,000,000 routes) and family it builds the table with `build`, times
//! inserting the same routes one by one into an empty table, then looks up 1M addresses in rounds:
//!
//! - *uniform*: random addresses (IPv4: all of 0.0.0.0/0; IPv6: all of 2000::/3), which mostly miss in small
//!   tables and spread over the whole first table;
//! - *hit*: a random address inside a random route of the table (every lookup finds a route; the long routes
//!   get their share of two-read lookups).
//!
//! and reports millions of lookups per second one at a time (`lookup` in a loop; the CPU still overlaps
//! independent misses out of order), and in bursts of 32 with `lookup_bulk` (prefetching ahead), the way a
//! worker calls it. One thread; the fastest of many short runs (see `rate`).

use pipelines::fib::{
    bgp_like_prefixes, bgp_like_prefixes_v6, Lpm4, Lpm6, SplitMix64, MAX_NEXT_HOP,
};
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Addresses per lookup round.
const ADDRS: usize = 1 << 20;
/// Addresses per timed slice.
const SLICE: usize = 1 << 16;
/// Timed passes over all the addresses.
const PASSES: usize = 3;
/// A worker's burst.
const BURST: usize = 32;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (v4, v6) = match (
        args.iter().any(|a| a == "--ipv4"),
        args.iter().any(|a| a == "--ipv6"),
    ) {
        (false, false) => (true, true),
        flags => flags,
    };
    let sizes: Vec<usize> = args
        .iter()
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 10_000, 1_000_000]
    } else {
        sizes
    };
    println!(
        "{:<5} {:>9} {:>10} {:>11} {:>8} {:>9} | {:>8} {:>8} | {:>8} {:>8}",
        "", "", "build", "insert 1by1", "groups", "", "uniform", "", "hit", ""
    );
    println!(
        "{:<5} {:>9} {:>10} {:>11} {:>8} {:>9} | {:>8} {:>8} | {:>8} {:>8}",
        "fam", "routes", "ms", "ms", "in use", "grp MiB", "single", "bulk", "single", "bulk"
    );
    for &n in sizes.iter().filter(|_| v4) {
        bench4(n);
    }
    for &n in sizes.iter().filter(|_| v6) {
        bench6(n);
    }
    println!("(lookup columns: million lookups per second, one thread; bulk = lookup_bulk over bursts of {BURST})");
}

/// Million lookups per second of `f` over `addrs`: `f` runs over slices of [`SLICE`] addresses, [`PASSES`]
/// times over all of them, and the fastest slice counts. On a shared machine a longer run is almost always
/// interrupted by other processes; a short slice often is not, and random lookups over 64k addresses vary little
/// by themselves, so the fastest slice is a fair figure for an uncontended core.
fn rate<A>(addrs: &[A], mut f: impl FnMut(&[A])) -> f64 {
    f(addrs); // warm up caches and TLBs like a running worker
    let mut best = Duration::MAX;
    for _ in 0..PASSES {
        for slice in addrs.chunks(SLICE) {
            let t = Instant::now();
            f(slice);
            best = best.min(t.elapsed() * (SLICE / slice.len()) as u32);
        }
    }
    SLICE as f64 / best.as_secs_f64() / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bench4(n: usize) {
    let prefixes = bgp_like_prefixes(n, 0x5eed);
    let routes: Vec<(Ipv4Addr, u8, u32)> = prefixes
        .iter()
        .enumerate()
        .map(|(i, &(p, l))| (p, l, i as u32 % MAX_NEXT_HOP))
        .collect();
    let t0 = Instant::now();
    let t = Lpm4::build(routes.iter().copied(), 1 << 16).expect("build");
    let build = t0.elapsed();
    let inc = Lpm4::new(1 << 16);
    let t0 = Instant::now();
    for &(p, l, nh) in &routes {
        inc.insert(p, l, nh).expect("insert");
    }
    let insert = t0.elapsed();
    drop(inc);
    assert_eq!(t.len(), routes.len());

    let mut rng = SplitMix64::new(1);
    let uniform: Vec<u32> = (0..ADDRS).map(|_| rng.next_u32()).collect();
    let hit: Vec<u32> = (0..ADDRS)
        .map(|_| {
            let (p, l) = prefixes[rng.below(prefixes.len() as u64) as usize];
            let host = if l == 0 { u32::MAX } else { u32::MAX >> l };
            u32::from(p) | (rng.next_u32() & host)
        })
        .collect();
    let single = |addrs: &[u32]| {
        rate(addrs, |addrs| {
            for &a in addrs {
                black_box(t.lookup(a));
            }
        })
    };
    let mut out = vec![None; BURST];
    let mut bulk = |addrs: &[u32]| {
        rate(addrs, |addrs| {
            for chunk in addrs.chunks(BURST) {
                t.lookup_bulk(chunk, &mut out);
                black_box(&out);
            }
        })
    };
    let row = [single(&uniform), bulk(&uniform), single(&hit), bulk(&hit)];
    let groups = t.tbl8_groups_in_use();
    println!(
        "{:<5} {:>9} {:>10.1} {:>11.1} {:>8} {:>9.1} | {:>8.1} {:>8.1} | {:>8.1} {:>8.1}",
        "ipv4",
        n,
        ms(build),
        ms(insert),
        groups,
        groups as f64 / 1024.0,
        row[0],
        row[1],
        row[2],
        row[3]
    );
}

fn bench6(n: usize) {
    let prefixes = bgp_like_prefixes_v6(n, 0x5eed);
    let routes: Vec<(Ipv6Addr, u8, u32)> = prefixes
        .iter()
        .enumerate()
        .map(|(i, &(p, l))| (p, l, i as u32 % MAX_NEXT_HOP))
        .collect();
    // Enough groups for the worst case (13 per route); only the used ones are ever committed.
    let max_groups = (routes.len() * 13).clamp(1 << 16, 1 << 24) as u32;
    let t0 = Instant::now();
    let t = Lpm6::build(routes.iter().copied(), max_groups).expect("build");
    let build = t0.elapsed();
    let inc = Lpm6::new(max_groups);
    let t0 = Instant::now();
    for &(p, l, nh) in &routes {
        inc.insert(p, l, nh).expect("insert");
    }
    let insert = t0.elapsed();
    drop(inc);
    assert_eq!(t.len(), routes.len());

    let mut rng = SplitMix64::new(1);
    let mut r128 = move || (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
    let uniform: Vec<[u8; 16]> = (0..ADDRS)
        .map(|_| ((r128() >> 3) | 1 << 125).to_be_bytes())
        .collect();
    let mut pick = SplitMix64::new(2);
    let hit: Vec<[u8; 16]> = (0..ADDRS)
        .map(|_| {
            let (p, l) = prefixes[pick.below(prefixes.len() as u64) as usize];
            let host = if l == 0 { u128::MAX } else { u128::MAX >> l };
            (u128::from(p) | (r128() & host)).to_be_bytes()
        })
        .collect();
    let single = |addrs: &[[u8; 16]]| {
        rate(addrs, |addrs| {
            for a in addrs {
                black_box(t.lookup(a));
            }
        })
    };
    let mut out = vec![None; BURST];
    let mut bulk = |addrs: &[[u8; 16]]| {
        rate(addrs, |addrs| {
            for chunk in addrs.chunks(BURST) {
                t.lookup_bulk(chunk, &mut out);
                black_box(&out);
            }
        })
    };
    let row = [single(&uniform), bulk(&uniform), single(&hit), bulk(&hit)];
    let groups = t.tbl8_groups_in_use();
    println!(
        "{:<5} {:>9} {:>10.1} {:>11.1} {:>8} {:>9.1} | {:>8.1} {:>8.1} | {:>8.1} {:>8.1}",
        "ipv6",
        n,
        ms(build),
        ms(insert),
        groups,
        groups as f64 / 1024.0,
        row[0],
        row[1],
        row[2],
        row[3]
    );
}
