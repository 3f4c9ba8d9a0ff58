//! `wharf-perf`: benchmarks of wharf's pipelines.
//!
//! - `gen`: the traffic generator and receiver against any device (see `wharf_perf::generate`).
//! - `scenario NAME`: the benchmark harness (see the `wharf_perf` library and `perf/RESULTS.md`): builds a
//!   topology, runs traffic profiles (sizes, IMIX, flows, protocols), MRR runs, the NDR/PDR search and a
//!   latency trial for wharf and, on veth, its Linux kernel twin; appends rows to `perf/results/results.tsv`.
//!   `scenario --list` lists them.
//! - `xconnect-ring`: Mpps per core of the cross-connect over `ring` ports, closed loop: two ring ports of the
//!   router are cabled to each other and seeded with frames, so the one pinned worker receives, processes and
//!   transmits forever and its packet rate is the per-core cost of port I/O plus pipeline. Median of N runs.
//! - `xconnect-inline`: the same loop driven on the calling thread for a fixed packet count, deterministic, for
//!   `valgrind --tool=callgrind` instruction counts (see `perf/callgrind.sh`).
//! - `bridge-ring`, `bridge-inline`: the learning bridge (see `bridge_bench`).
//! - `route-ring`, `route-inline`: IPv4/IPv6 routing over 1 to 1M routes (see `route_bench`).
//! - `nat-inline`: masquerade and its answers over 1k to 1M established sessions (see `nat_bench`).
//! - `xconnect-afpacket`: forwarding rate through real kernel I/O: a generator in a network namespace sends
//!   over a veth into wharf's AF_PACKET port, wharf cross-connects to a second veth, the generator receives.
//! - `xconnect-dpdk`: wharf's cross-connect (`--pipeline xconnect`) or IPv4 routing (`--pipeline route`) over
//!   DPDK memif ports, as a ratio of a dpdk-testpmd in wharf's place, in one run (see `dpdk_bench`).
//! - `mem-latency`: the machine's random-read latency by region size and page backing (see `mem_latency`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::router::Router;
use dataplane::traffic::{udp4_frame, Udp4Flow};
use std::time::{Duration, Instant};

mod afpacket_bench;
mod bridge_bench;
#[cfg(feature = "dpdk")]
mod dpdk_bench;
#[cfg(feature = "dpdk")]
mod dpdk_peer;
mod inline;
mod mem_latency;
mod nat_bench;
mod route_bench;
mod vxlan_bench;

#[derive(Parser)]
#[command(name = "wharf-perf", about = "wharf benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
// Subcommands are named pipeline-backend; the other pipelines join as they land.
#[allow(clippy::enum_variant_names)]
enum Cmd {
    /// Traffic generator and receiver on two ports (a wharf config's, two AF_PACKET interfaces, or a ring
    /// self-test): one trial at --rate or the NDR/PDR search; loss, reordering, latency percentiles.
    Gen(wharf_perf::generate::GenArgs),
    /// Run a harness scenario (`--list` lists them): topology, MRR runs, optional NDR/PDR search, latency,
    /// wharf vs kernel on veth; appends to the results file.
    Scenario {
        /// Scenario name, or `all`.
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// List the scenarios and exit.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        options: wharf_perf::scenario::Options,
    },
    /// Closed-loop cross-connect over ring ports: Mpps per core.
    XconnectRing(RingArgs),
    /// Cross-connect over ring ports on this thread for exactly --packets packets (for callgrind).
    XconnectInline {
        /// Packets to process (per run).
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Timed runs (the median is printed); more than one adds an untimed warm-up run first.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Frame size in bytes (without FCS).
        #[arg(long, default_value_t = 60)]
        frame: usize,
        /// Burst size.
        #[arg(long, default_value_t = 32)]
        burst: usize,
    },
    /// Cross-connect over AF_PACKET on veth pairs (needs root).
    XconnectAfpacket(afpacket_bench::Args),
    /// Cross-connect (or, with --pipeline route, IPv4 routing) over DPDK memif ports against dpdk-testpmd, as a
    /// ratio of testpmd (--features dpdk).
    #[cfg(feature = "dpdk")]
    XconnectDpdk(dpdk_bench::Args),
    /// The memif traffic peer of `xconnect-dpdk --peer wharf` (a child process the benchmark drives).
    #[cfg(feature = "dpdk")]
    #[command(hide = true)]
    MemifPeer(dpdk_peer::PeerArgs),
    /// Closed-loop learning bridge over ring ports with N flows: Mpps per core, 1 or 2 workers.
    BridgeRing(bridge_bench::Args),
    /// The bridge loop on this thread for exactly --packets packets (for callgrind).
    BridgeInline {
        /// Packets to process (per run).
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Timed runs (the median is printed); more than one adds an untimed warm-up run first.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Flows (two MACs each).
        #[arg(long, default_value_t = 512)]
        flows: usize,
        /// Frame size in bytes (without FCS).
        #[arg(long, default_value_t = 60)]
        frame: usize,
        /// Burst size.
        #[arg(long, default_value_t = 32)]
        burst: usize,
    },
    /// IPv4 or IPv6 routing between two routed ring ports over N routes, fed by a generator on core 0: Mpps
    /// per core.
    RouteRing(route_bench::Args),
    /// The routing pipeline on this thread, the traffic already in the receive ring (pipeline-only Mpps per
    /// core, and exact packet counts for callgrind).
    RouteInline(route_bench::InlineArgs),
    /// NAT of established UDP sessions between two routed ring ports on this thread (pipeline-only Mpps per
    /// core; exact packet counts for callgrind).
    NatInline(nat_bench::Args),
    /// VXLAN encapsulation or decapsulation on this thread over ring ports, every frame checked (Mpps per core,
    /// exact packet counts for callgrind).
    VxlanInline(vxlan_bench::InlineArgs),
    /// Random-read latency by region size and page backing (cache lines, and one line per page: the address
    /// translation alone): what the table-bound figures above stand on.
    MemLatency(mem_latency::Args),
}

/// How a measurement is repeated: every benchmark reports the median of `runs` runs.
#[derive(clap::Args, Clone, Copy, Debug)]
pub(crate) struct Measure {
    /// Measurement runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Frame size in bytes (without FCS).
    #[arg(long, default_value_t = 60)]
    pub frame: usize,
}

#[derive(clap::Args)]
struct RingArgs {
    #[command(flatten)]
    m: Measure,
    /// Burst size.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Core to pin the worker to.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// Frames in flight in the loop.
    #[arg(long, default_value_t = 1024)]
    inflight: usize,
}

/// Two ring ports of the router cabled to each other, cross-connected: a closed loop.
fn loop_config(burst: usize, core: Option<usize>) -> String {
    let workers = match core {
        Some(c) => format!("cores = [{c}]"),
        None => "workers = 1".into(),
    };
    format!(
        r#"
[dataplane]
buffers = 8192
burst_size = {burst}
{workers}
idle = "poll"

[[ports]]
name = "a"
backend = "ring"
peer = "b"
depth = 4096

[[ports]]
name = "b"
backend = "ring"
peer = "a"
depth = 4096

[[networks]]
name = "loop"
mode = "xconnect"
ports = ["a", "b"]

[[networks.rewrite]]
port = "b"
src_mac = "02:00:00:00:00:0b"
dst_mac = "02:00:00:00:00:0a"
"#
    )
}

/// Median of the runs (sorts `v`).
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn xconnect_ring(a: &RingArgs) -> anyhow::Result<()> {
    let cfg = control::config::parse(&loop_config(a.burst, Some(a.core)), "<xconnect-ring>")?;
    let router = Router::start(cfg, None)?;
    let pool = router.pool().clone();
    let a_end = router.ring_port("a").context("ring port a")?;
    let template = udp4_frame(&Udp4Flow::default(), a.m.frame);
    for _ in 0..a.inflight {
        let mut p = pool.alloc().context("pool empty while seeding")?;
        p.set_frame(&template);
        a_end
            .inject(0, p)
            .map_err(|_| anyhow::anyhow!("ring full while seeding"))?;
    }
    let w = router.dataplane().workers()[0].counters.clone();
    std::thread::sleep(Duration::from_millis(500));
    let mut mpps = Vec::new();
    for run in 1..=a.m.runs {
        let (p0, t0) = (w.rx_packets.get(), Instant::now());
        std::thread::sleep(Duration::from_secs_f64(a.m.seconds));
        let (p1, t1) = (w.rx_packets.get(), Instant::now());
        let r = (p1 - p0) as f64 / (t1 - t0).as_secs_f64() / 1e6;
        println!("run {run}: {r:.2} Mpps ({:.1} ns/packet)", 1e3 / r);
        mpps.push(r);
    }
    let drops = router.show_drops();
    let m = median(&mut mpps);
    println!(
        "xconnect-ring: median {m:.2} Mpps per core ({:.1} ns/packet) over {} runs of {}s, {}-byte frames, burst {}, core {}, pinned {}, drops {drops}",
        1e3 / m,
        a.m.runs,
        a.m.seconds,
        a.m.frame,
        a.burst,
        a.core,
        router.dataplane().workers()[0].pinned
    );
    router.stop();
    Ok(())
}

fn xconnect_inline(packets: u64, runs: usize, frame: usize, burst: usize) -> anyhow::Result<()> {
    let mut inline = inline::Inline::new(&loop_config(burst, None), burst, 8192)?;
    inline.seed(
        "a",
        std::iter::repeat_n(udp4_frame(&Udp4Flow::default(), frame), 1024),
    )?;
    let m = inline.timed_runs("xconnect-inline", packets, runs);
    let (n, drops) = (
        inline.counters().rx_packets.get(),
        inline.counters().drops.total(),
    );
    println!(
        "xconnect-inline: median {m:.2} Mpps per core ({:.1} ns/packet) over {runs} runs of {packets} packets; {n} packets, {drops} drops",
        1e3 / m
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Gen(a) => wharf_perf::generate::run(&a).map(drop),
        Cmd::Scenario {
            name,
            list,
            options,
        } => {
            if list {
                for s in wharf_perf::scenario::SCENARIOS {
                    println!(
                        "{:<16} {}{}",
                        s.name,
                        s.about,
                        if s.root { " (root)" } else { "" }
                    );
                }
                return Ok(());
            }
            // Ctrl-C ends the trial, and the scenario unwinds: namespaces and veths are removed.
            wharf_perf::trial::stop_on_signals()?;
            wharf_perf::scenario::run(&name.unwrap_or_default(), &options)
        }
        Cmd::XconnectRing(a) => xconnect_ring(&a),
        Cmd::XconnectInline {
            packets,
            runs,
            frame,
            burst,
        } => xconnect_inline(packets, runs, frame, burst),
        Cmd::XconnectAfpacket(a) => afpacket_bench::run(&a),
        #[cfg(feature = "dpdk")]
        Cmd::XconnectDpdk(a) => dpdk_bench::run(&a),
        #[cfg(feature = "dpdk")]
        Cmd::MemifPeer(a) => dpdk_peer::run(&a),
        Cmd::BridgeRing(a) => bridge_bench::run(&a),
        Cmd::BridgeInline {
            packets,
            runs,
            flows,
            frame,
            burst,
        } => bridge_bench::inline(packets, runs, flows, frame, burst),
        Cmd::RouteRing(a) => route_bench::run(&a),
        Cmd::RouteInline(a) => route_bench::inline(&a),
        Cmd::NatInline(a) => nat_bench::inline(&a),
        Cmd::VxlanInline(a) => vxlan_bench::inline(&a),
        Cmd::MemLatency(a) => mem_latency::run(&a),
    }
}
