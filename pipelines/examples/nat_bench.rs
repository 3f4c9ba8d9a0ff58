//! NAT core benchmark: conntrack lookup + TCP tracking + in-place translation per packet, with 1k and 1M
//! established sessions, and the cost of expiry (timer wheel vs incremental scan).
//!
//! ```text
//! cargo run --release -p wharf-pipelines --example nat_bench [SESSIONS...]
//! ```
//!
//! For each table size (default 1,000 and 1,000,000 established TCP flows, source-NATed over 20 external
//! addresses) it prepares 64k packets of random flows in random directions (46-byte IPv4 packets: a 64-byte
//! frame), then processes them in bursts of 32 the way a worker would: copy the burst's packets into
//! buffers (the NIC's write, measured alone as `copy`), parse, look up, track, translate, and call
//! `expire` once per burst. Three ways of ordering a burst's lookups:
//!
//! - `1-pass`: each packet parsed, looked up, tracked and translated in turn;
//! - `2-pass`: parse and prefetch every packet's index line first;
//! - `3-pass`: then also prefetch every packet's flow line (`prefetch_flow_of`) before the lookups.
//!
//! Each figure is the median of 7 runs of 1M packets (the machine is shared: a median resists the runs that
//! were interrupted), in ns per packet including the copy, with the fastest slice of 64k packets beside it (a
//! slice short enough to often run uninterrupted: the figure for a quiet core). The expiry section times `expire` itself: in
//! steady state (nothing due) per burst, and with every flow due, the cost per freed flow and the 99th
//! percentile of a call's time (budget 64). Last, the Maglev table: build time, the share of slots that move when one backend is
//! removed (and how many of those were not the removed backend's) or added, balance, and lookup time.

use pipelines::fib::SplitMix64;
use pipelines::nat::conntrack::{
    tcp_flags::*, Config, Dir, Expiry, FlowTable4, Key4, Timeouts, Track,
};
use pipelines::nat::maglev::{Maglev, DEFAULT_SIZE};
use pipelines::nat::ports::{PortAllocator, PortSplit};
use pipelines::nat::translate::{parse, translate, Parsed};
use pipelines::wire::checksum;
use pipelines::wire::{IPPROTO_TCP, IPPROTO_UDP};
use std::hint::black_box;
use std::time::{Duration, Instant};

const BURST: usize = 32;
const TEMPLATES: usize = 1 << 16;
const PACKETS: usize = 1 << 20;
const RUNS: usize = 7;
/// Packets per timed slice (the best slice is reported beside the median run).
const SLICE: usize = 1 << 16;
const PKT_LEN: usize = 46;
const SERVER: u32 = 0xc633_6407; // 198.51.100.7
const EXT_BASE: u32 = 0xc000_0200; // 192.0.2.0 + i

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 1_000_000]
    } else {
        sizes
    };
    println!("ns per packet: median of {RUNS} runs of {PACKETS} packets (best slice of {SLICE} in brackets), bursts of {BURST}");
    println!(
        "{:>9} {:>7} | {:>13} {:>13} {:>13} | {:>13} | {:>9}",
        "sessions", "expiry", "1-pass", "2-pass", "3-pass", "copy only", "table MiB"
    );
    for &n in &sizes {
        for expiry in [Expiry::Wheel, Expiry::Scan] {
            bench_translate(n, expiry);
        }
    }
    println!();
    println!("expire(): steady state (nothing due, budget 64) per call; then every flow due");
    println!(
        "{:>9} {:>7} | {:>14} | {:>16} {:>14} {:>8}",
        "sessions", "expiry", "ns/call steady", "ns per freed flow", "p99 call", "calls"
    );
    for &n in &sizes {
        for expiry in [Expiry::Wheel, Expiry::Scan] {
            bench_expire(n, expiry);
        }
    }
    println!();
    println!("Maglev, {DEFAULT_SIZE} slots: slots moved when one backend is removed / added (ideal 1/N, 1/(N+1))");
    println!(
        "{:>8} | {:>9} | {:>10} {:>10} {:>10} | {:>10} {:>8}",
        "backends", "build ms", "remove", "collateral", "add", "max/min", "ns/lookup"
    );
    for n in [3, 10, 100, 1000] {
        bench_maglev(n);
    }
}

/// Maglev: build time, disruption on removing and adding one backend, balance, lookup time.
fn bench_maglev(n: usize) {
    let ids: Vec<u64> = (0..=n as u64)
        .map(|i| 0x0a00_0000_0050 + (i << 16))
        .collect();
    let t = Instant::now();
    let m = Maglev::new(&ids[..n], DEFAULT_SIZE).unwrap();
    let build = t.elapsed().as_secs_f64() * 1e3;
    let mut without = ids[..n].to_vec();
    let gone = without.remove(n / 2);
    let smaller = Maglev::new(&without, DEFAULT_SIZE).unwrap();
    let larger = Maglev::new(&ids, DEFAULT_SIZE).unwrap();
    let (mut removed, mut collateral, mut added) = (0usize, 0usize, 0usize);
    for i in 0..DEFAULT_SIZE {
        let (a, b, c) = (m.slot(i), smaller.slot(i), larger.slot(i));
        if a != b {
            removed += 1;
            if a != Some(gone) {
                collateral += 1;
            }
        }
        if a != c {
            added += 1;
        }
    }
    let shares = m.shares();
    let ratio = *shares.iter().max().unwrap() as f64 / *shares.iter().min().unwrap() as f64;
    let mut rng = SplitMix64::new(3);
    let hashes: Vec<u64> = (0..1 << 16).map(|_| rng.next_u64()).collect();
    let t = Instant::now();
    let mut sum = 0usize;
    for _ in 0..16 {
        for &h in &hashes {
            sum += m.lookup(black_box(h)).unwrap_or(0);
        }
    }
    black_box(sum);
    let ns = t.elapsed().as_nanos() as f64 / (16 << 16) as f64;
    let pct = |x: usize| format!("{:.2} %", x as f64 * 100.0 / DEFAULT_SIZE as f64);
    println!(
        "{:>8} | {:>9.1} | {:>10} {:>10} {:>10} | {:>10.4} {:>8.1}",
        n,
        build,
        pct(removed),
        pct(collateral),
        pct(added),
        ratio,
        ns
    );
}

/// A 46-byte TCP ACK packet from `k`'s source to its destination, checksums filled.
fn packet(k: &Key4) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&(PKT_LEN as u16).to_be_bytes());
    b[8] = 64;
    b[9] = IPPROTO_TCP;
    b[12..16].copy_from_slice(&k.src.to_be_bytes());
    b[16..20].copy_from_slice(&k.dst.to_be_bytes());
    let c = checksum::checksum(&b[..20]);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut b[20..PKT_LEN];
    t[0..2].copy_from_slice(&k.sport.to_be_bytes());
    t[2..4].copy_from_slice(&k.dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = ACK;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let ps = checksum::pseudo_v4(
        k.src.to_be_bytes(),
        k.dst.to_be_bytes(),
        IPPROTO_TCP,
        (PKT_LEN - 20) as u16,
    );
    let c = !checksum::fold(checksum::sum(&b[20..PKT_LEN], ps));
    b[36..38].copy_from_slice(&c.to_be_bytes());
    b
}

/// A table of `n` established, source-NATed TCP flows; returns it with the flows' keys (original, reply).
fn established(n: usize, expiry: Expiry, now: u32) -> (FlowTable4, Vec<(Key4, Key4)>) {
    let mut table = FlowTable4::with_seed(
        Config {
            limit: n,
            timeouts: Timeouts::default(),
            expiry,
        },
        [11, 12],
    );
    let addrs: Vec<u32> = (1..=20).map(|i| EXT_BASE + i).collect();
    let mut ports = PortAllocator::new(PortSplit::new(1024, 65535, 1).unwrap(), 0, &addrs, 5);
    let mut rng = SplitMix64::new(n as u64);
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let inside = 0x0a00_0000 | (rng.next_u32() & 0xffff);
        let orig = Key4::new(
            IPPROTO_TCP,
            inside,
            rng.next_u32() as u16 | 1024,
            SERVER,
            443,
        );
        let Ok((x, p)) = ports.alloc(IPPROTO_TCP, inside, rng.next_u64()) else {
            panic!("out of ports")
        };
        let reply = Key4::new(IPPROTO_TCP, SERVER, 443, x, p);
        let Ok(id) = table.insert(orig, reply, SYN, 1, now) else {
            ports.release(IPPROTO_TCP, x, p);
            continue; // the random original key was taken
        };
        table.track(id, Dir::Reply, SYN | ACK, now);
        table.track(id, Dir::Orig, ACK, now);
        keys.push((orig, reply));
    }
    (table, keys)
}

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0])
}

/// One burst through the NAT core: parse, look up, track, translate, in `passes` passes (see the module docs).
/// Returns how many packets were translated.
#[inline(never)]
fn burst(
    table: &mut FlowTable4,
    bufs: &mut [[u8; 64]; BURST],
    infos: &mut [Option<Parsed>; BURST],
    passes: u32,
    now: u32,
) -> u64 {
    let mut done = 0;
    if passes >= 2 {
        for (info, b) in infos.iter_mut().zip(bufs.iter()) {
            *info = parse(&b[..PKT_LEN]).ok();
            if let Some(i) = info {
                table.prefetch(&i.key);
            }
        }
    }
    if passes == 3 {
        for i in infos.iter().flatten() {
            table.prefetch_flow_of(&i.key);
        }
    }
    for (info, b) in infos.iter_mut().zip(bufs.iter_mut()) {
        if passes == 1 {
            *info = parse(&b[..PKT_LEN]).ok();
        }
        let Some(i) = info else { continue };
        let Some((id, dir)) = table.lookup(&i.key) else {
            continue;
        };
        if table.track(id, dir, i.tcp_flags, now) != Track::Ok {
            continue;
        }
        let Some(f) = table.get(id) else { continue };
        let to = f.target(dir);
        if translate(&mut b[..PKT_LEN], i, &to).is_ok() {
            done += 1;
        }
    }
    done
}

fn bench_translate(n: usize, expiry: Expiry) {
    let now = 1000;
    let (mut table, keys) = established(n, expiry, now);
    let mut rng = SplitMix64::new(99);
    let templates: Vec<[u8; 64]> = (0..TEMPLATES)
        .map(|_| {
            let (o, r) = keys[rng.below(keys.len() as u64) as usize];
            if rng.next_u32() & 1 == 0 {
                packet(&o)
            } else {
                packet(&r)
            }
        })
        .collect();
    let mut bufs = [[0u8; 64]; BURST];
    let mut infos: [Option<Parsed>; BURST] = [None; BURST];
    let mut results = Vec::new();
    for passes in [0, 1, 2, 3] {
        let mut runs = Vec::new();
        let mut best = f64::MAX;
        for _ in 0..RUNS {
            let mut done = 0u64;
            let run = Instant::now();
            for slice in 0..PACKETS / SLICE {
                let t = Instant::now();
                for chunk in templates
                    .chunks(BURST)
                    .skip(slice * SLICE / BURST % (TEMPLATES / BURST))
                    .take(SLICE / BURST)
                {
                    for (b, t) in bufs.iter_mut().zip(chunk) {
                        *b = *t;
                    }
                    if passes == 0 {
                        black_box(&mut bufs);
                        continue;
                    }
                    done += burst(&mut table, &mut bufs, &mut infos, passes, now);
                    table.expire(now, 64, |_| {});
                    black_box(&mut bufs);
                }
                best = best.min(t.elapsed().as_nanos() as f64 / SLICE as f64);
            }
            runs.push(run.elapsed().as_nanos() as f64 / PACKETS as f64);
            if passes > 0 {
                assert_eq!(done as usize, PACKETS, "every packet translated");
            }
        }
        results.push((median(runs).0, best));
    }
    let e = match expiry {
        Expiry::Wheel => "wheel",
        Expiry::Scan => "scan",
    };
    let f = |(m, lo): (f64, f64)| format!("{m:6.1} ({lo:5.1})");
    println!(
        "{:>9} {:>7} | {:>13} {:>13} {:>13} | {:>13} | {:>9.1}",
        n,
        e,
        f(results[1]),
        f(results[2]),
        f(results[3]),
        f(results[0]),
        table.memory() as f64 / (1 << 20) as f64
    );
}

fn bench_expire(n: usize, expiry: Expiry) {
    let now = 1000;
    // Steady state: established flows, nothing due, the clock ticking once a second.
    let (mut table, _) = established(n, expiry, now);
    let calls = 200_000;
    let t = Instant::now();
    for c in 0..calls {
        black_box(table.expire(now + (c / 50_000) as u32, 64, |_| {}));
    }
    let steady = t.elapsed().as_nanos() as f64 / calls as f64;
    drop(table);

    // Every flow due: n UDP flows created over 30 s, all expired at once.
    let mut table = FlowTable4::with_seed(
        Config {
            limit: n,
            timeouts: Timeouts::default(),
            expiry,
        },
        [1, 2],
    );
    for i in 0..n as u32 {
        let o = Key4::new(IPPROTO_UDP, 0x0a00_0000 | i, 5000, SERVER, 53);
        let r = Key4::new(IPPROTO_UDP, SERVER, 53, EXT_BASE + 1 + (i >> 16), i as u16);
        table.insert(o, r, 0, 0, now + i % 30).unwrap();
    }
    let later = now + 3600;
    let mut calls: Vec<Duration> = Vec::with_capacity(n / 64 + 2);
    let t = Instant::now();
    let mut freed = 0;
    while !table.is_empty() {
        let c = Instant::now();
        freed += table.expire(later, 64, |f| {
            black_box(f.reply());
        });
        calls.push(c.elapsed());
    }
    let per_flow = t.elapsed().as_nanos() as f64 / freed as f64;
    calls.sort();
    // The 99th percentile: the longest calls on a shared machine are the ones the scheduler interrupted.
    let p99 = calls[calls.len() * 99 / 100];
    let e = match expiry {
        Expiry::Wheel => "wheel",
        Expiry::Scan => "scan",
    };
    println!(
        "{:>9} {:>7} | {:>14.1} | {:>16.1} {:>11.1} us {:>8}",
        n,
        e,
        steady,
        per_flow,
        p99.as_nanos() as f64 / 1000.0,
        calls.len()
    );
}
