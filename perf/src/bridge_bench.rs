//! Bridge benchmark over ring ports: bridge `br` has members `a` and `b`. Flow `i` is a frame from MAC `S_i`
//! to MAC `D_i`; every `D_i` is learned on port `b` before the run, so each frame entering `a` is one
//! learn-refresh of `S_i` and one lookup of `D_i` in a table of `2 × flows` MACs, and leaves by `b`.
//!
//! With one worker (pinned to core 1), a generator thread on core 0 cycles through all the flows, so the
//! whole table is touched while the packet buffers stay few and hot (recycled through the pool, as a NIC
//! driver's are): the figure is the bridge's per-core cost, not buffer cache misses. With two workers there
//! is no core left for a generator: `a` and `b` are cabled to each other and seeded with 1024 frames, a
//! closed loop, with the ring queues split by flow hash (RSS) and both workers sharing the one table.

use crate::Measure;
use anyhow::Context;
use control::router::Router;
use dataplane::traffic::{udp4_frame, Udp4Flow};
use std::time::{Duration, Instant};

/// Options.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: Measure,
    /// Flows (each adds two MACs to the table).
    #[arg(long, default_value_t = 512)]
    flows: usize,
    /// Workers (pinned to cores 1, 0, ... in that order).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Burst size.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// One worker in a closed loop (1024 frames cycling over the flows) instead of fed by a generator on the
    /// other core: no cross-core cache traffic per packet, comparable with `xconnect-ring`.
    #[arg(long)]
    closed_loop: bool,
}

fn config(flows: usize, workers: usize, burst: usize, pinned: bool, external: bool) -> String {
    let cores: Vec<String> = (0..workers).map(|w| ((w + 1) % 2).to_string()).collect();
    let workers = if pinned {
        format!("cores = [{}]", cores.join(", "))
    } else {
        format!("workers = {workers}")
    };
    let (peer_a, peer_b) = if external {
        ("gen_a", "gen_b")
    } else {
        ("b", "a")
    };
    format!(
        r#"
[dataplane]
buffers = 16384
burst_size = {burst}
{workers}
idle = "poll"

[[ports]]
name = "a"
backend = "ring"
peer = "{peer_a}"
depth = 4096

[[ports]]
name = "b"
backend = "ring"
peer = "{peer_b}"
depth = 4096

[[networks]]
name = "br"
mode = "bridge"
ports = ["a", "b"]
mac_limit = {limit}
aging_s = 0
"#,
        limit = (2 * flows).max(1024)
    )
}

/// MAC number `i` of `side` (0: sources, 1: destinations).
fn mac(side: u8, i: usize) -> [u8; 6] {
    let b = (i as u32).to_be_bytes();
    [0x02, side, b[0], b[1], b[2], b[3]]
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    let flow = Udp4Flow {
        src_mac: mac(0, i),
        dst_mac: mac(1, i),
        src_port: 1024 + (i % 60000) as u16,
        ..Udp4Flow::default()
    };
    udp4_frame(&flow, len)
}

/// Learns every destination MAC on port `b` (index 1).
fn learn_destinations(router: &Router, flows: usize) -> anyhow::Result<()> {
    let snap = router.dataplane().snapshot().load();
    let bd = snap.bridges.first().context("bridge br")?;
    for i in 0..flows {
        bd.table.learn(&mac(1, i), 1, 0);
    }
    Ok(())
}

/// Seeds 1024 frames, cycling over the flows, into `a`'s queues (closed loop).
fn seed(router: &Router, flows: usize, len: usize, queues: u16) -> anyhow::Result<()> {
    let a = router.ring_port("a").context("ring port a")?;
    for i in (0..1024).map(|k| k % flows.max(1)) {
        let mut p = router.pool().alloc().context("pool empty while seeding")?;
        p.set_frame(&frame(i, len));
        let q = (dataplane::rss::flow_hash(p.data()) % queues as u32) as u16;
        a.inject(q, p)
            .map_err(|_| anyhow::anyhow!("ring full while seeding"))?;
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let generator = args.workers == 1 && !args.closed_loop;
    let text = config(args.flows, args.workers, args.burst, true, generator);
    let router = Router::start(control::config::parse(&text, "<bridge-ring>")?, None)?;
    learn_destinations(&router, args.flows)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gen = if generator {
        let ga = router.ring_peer("gen_a").context("gen_a")?;
        let gb = router.ring_peer("gen_b").context("gen_b")?;
        let (pool, stop, flows, len) = (
            router.pool().clone(),
            stop.clone(),
            args.flows,
            args.m.frame,
        );
        Some(std::thread::spawn(move || {
            generate(&ga, &gb, &pool, &stop, flows, len)
        }))
    } else {
        seed(&router, args.flows, args.m.frame, args.workers as u16)?;
        None
    };
    let workers: Vec<_> = router
        .dataplane()
        .workers()
        .iter()
        .map(|w| w.counters.clone())
        .collect();
    let total = || workers.iter().map(|w| w.rx_packets.get()).sum::<u64>();
    std::thread::sleep(Duration::from_millis(500));
    let mut mpps = Vec::new();
    for run in 1..=args.m.runs {
        let (p0, t0) = (total(), Instant::now());
        std::thread::sleep(Duration::from_secs_f64(args.m.seconds));
        let r = (total() - p0) as f64 / t0.elapsed().as_secs_f64() / 1e6;
        println!(
            "run {run}: {r:.2} Mpps ({:.2} Mpps per worker)",
            r / args.workers as f64
        );
        mpps.push(r);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let backlog = match gen {
        Some(g) => g
            .join()
            .map_err(|_| anyhow::anyhow!("generator panicked"))??,
        None => 0.0,
    };
    let snap = router.dataplane().snapshot().load();
    let macs = snap.bridges[0].table.len();
    let m = crate::median(&mut mpps);
    if generator {
        // When the input ring is rarely full, the generator, not the bridge, set the pace.
        println!("generator: input ring full on {:.0}% of sends (near 100%: the bridge is the bottleneck)", backlog * 100.0);
    }
    println!(
        "bridge-ring{}: median {m:.2} Mpps, {:.2} Mpps per worker ({:.1} ns/packet per core), {} workers, {} flows, {macs} MACs in the table, {}-byte frames, burst {}, drops {}",
        if generator { " (generator)" } else { " (closed loop)" },
        m / args.workers as f64,
        1e3 * args.workers as f64 / m,
        args.workers,
        args.flows,
        args.m.frame,
        args.burst,
        router.show_drops()
    );
    router.stop();
    Ok(())
}

/// Generator and sink on core 0: frames cycling over every flow into `gen_a`, drained from `gen_b`. Returns
/// the fraction of sends that found the input ring full.
fn generate(
    ga: &dataplane::port::ring::RingPort,
    gb: &dataplane::port::ring::RingPort,
    pool: &dataplane::Pool,
    stop: &std::sync::atomic::AtomicBool,
    flows: usize,
    len: usize,
) -> anyhow::Result<f64> {
    use dataplane::Port;
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let mut tx = ga.open_queue(0)?;
    let mut rx = gb.open_queue(0)?;
    let template = frame(0, len);
    let addrs: Vec<[u8; 12]> = (0..flows.max(1))
        .map(|i| {
            let mut a = [0u8; 12];
            a[..6].copy_from_slice(&mac(1, i));
            a[6..].copy_from_slice(&mac(0, i));
            a
        })
        .collect();
    let mut burst = dataplane::Burst::new(32);
    let mut sink = dataplane::Burst::new(256);
    let (mut i, mut sends, mut full) = (0usize, 0u64, 0u64);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        while !burst.is_full() {
            let Some(mut p) = pool.alloc() else { break };
            p.set_frame(&template);
            p.data_mut()[..12].copy_from_slice(&addrs[i]);
            i = if i + 1 == addrs.len() { 0 } else { i + 1 };
            let _ = burst.push(p);
        }
        tx.tx_burst(&mut burst);
        sends += 1;
        full += !burst.is_empty() as u64;
        rx.rx_burst(&mut sink);
        sink.clear();
    }
    Ok(full as f64 / sends.max(1) as f64)
}

/// The same loop on this thread for exactly `packets` packets (deterministic, for callgrind).
pub fn inline(
    packets: u64,
    runs: usize,
    flows: usize,
    frame_len: usize,
    burst: usize,
) -> anyhow::Result<()> {
    let mut inline =
        crate::inline::Inline::new(&config(flows, 1, burst, false, false), burst, 16384)?;
    let snap = inline.snapshot();
    let bd = snap.bridges.first().context("bridge br")?;
    for i in 0..flows {
        bd.table.learn(&mac(1, i), 1, 0);
    }
    drop(snap);
    inline.seed("a", (0..1024).map(|k| frame(k % flows.max(1), frame_len)))?;
    let m = inline.timed_runs("bridge-inline", packets, runs);
    let (n, drops) = (
        inline.counters().rx_packets.get(),
        inline.counters().drops.total(),
    );
    println!(
        "bridge-inline: median {m:.2} Mpps per core ({:.1} ns/packet) over {runs} runs of {packets} packets; {n} packets, {flows} flows, {drops} drops",
        1e3 / m
    );
    Ok(())
}
