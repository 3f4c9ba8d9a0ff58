//! Cross-connect through real kernel I/O: generator (in its own namespace, its own core) → veth → wharf
//! AF_PACKET port `a` → cross-connect → port `b` → veth → generator. Reports offered and forwarded Mpps per run
//! and the median forwarded rate.

use anyhow::{bail, Context};
use control::router::Router;
use dataplane::netns::{self, NetnsGuard, VethGuard};
use dataplane::port::afpacket::{AfPacketConfig, AfPacketPort};
use dataplane::traffic::{udp4_frame, Sink, Source, Udp4Flow};
use dataplane::{Pool, PoolConfig, Port};
use std::time::{Duration, Instant};

/// Options.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: crate::Measure,
    /// Core for wharf's worker.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// Core for the generator.
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
}

fn config(a: &str, b: &str, core: usize) -> String {
    format!(
        r#"
[dataplane]
cores = [{core}]
idle = "poll"

[[ports]]
name = "a"
backend = "afpacket"
interface = "{a}"

[[ports]]
name = "b"
backend = "afpacket"
interface = "{b}"

[[networks]]
name = "x"
mode = "xconnect"
ports = ["a", "b"]
"#
    )
}

/// Runs the benchmark.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("xconnect-afpacket needs root (network namespaces, AF_PACKET)");
    }
    let ns = NetnsGuard::new("wpgen")?;
    let mut va = VethGuard::new("wpa", "wpg")?;
    let mut vb = VethGuard::new("wpb", "wpg")?;
    va.move_b(ns.name())?;
    vb.move_b(ns.name())?;
    for v in [&va, &vb] {
        netns::isolate_from_host_stack(v.a())?;
        netns::set_up(None, v.a())?;
        netns::set_up(Some(ns.name()), v.b())?;
    }
    let cfg = control::config::parse(&config(va.a(), vb.a(), args.core), "<xconnect-afpacket>")?;
    let router = Router::start(cfg, None)?;
    let (g_tx, g_rx) = (va.b().to_string(), vb.b().to_string());
    let (runs, seconds, frame, gen_core) =
        (args.m.runs, args.m.seconds, args.m.frame, args.gen_core);
    let results = ns.run(move || -> anyhow::Result<(Vec<(f64, f64)>, u64)> {
        core_affinity::set_for_current(core_affinity::CoreId { id: gen_core });
        let pool = Pool::new(&PoolConfig {
            buffers: 16384,
            hugepages: false,
            ..Default::default()
        })?;
        let cfg = |ifname: &str| AfPacketConfig {
            interface: ifname.to_string(),
            queues: 1,
            ..AfPacketConfig::default()
        };
        let tx_port =
            AfPacketPort::open("gen-tx", &cfg(&g_tx), &pool).context("generator tx port")?;
        let rx_port =
            AfPacketPort::open("gen-rx", &cfg(&g_rx), &pool).context("generator rx port")?;
        let mut txq = tx_port.open_queue(0)?;
        let mut rxq = rx_port.open_queue(0)?;
        let mut src = Source::new(udp4_frame(&Udp4Flow::default(), frame), 64, Instant::now());
        let mut sink = Sink::new(256);
        // Warm-up, then measured windows.
        let mut out = Vec::new();
        for run in 0..=runs {
            let window = if run == 0 {
                Duration::from_millis(500)
            } else {
                Duration::from_secs_f64(seconds)
            };
            let (s0, r0, t0) = (
                src.sent() - src.backlog() as u64,
                sink.received,
                Instant::now(),
            );
            while t0.elapsed() < window {
                src.send_burst(&mut *txq, &pool, u64::MAX);
                sink.poll(&mut *rxq, |_| {});
            }
            let secs = t0.elapsed().as_secs_f64();
            let sent = src.sent() - src.backlog() as u64 - s0;
            let got = sink.received - r0;
            if run > 0 {
                out.push((sent as f64 / secs / 1e6, got as f64 / secs / 1e6));
            }
        }
        Ok((out, rx_port.counters().rx_missed))
    })??;
    let (results, gen_missed) = results;
    let mut fwd = Vec::new();
    for (i, (offered, forwarded)) in results.iter().enumerate() {
        println!(
            "run {}: offered {offered:.3} Mpps, forwarded {forwarded:.3} Mpps",
            i + 1
        );
        fwd.push(*forwarded);
    }
    let m = crate::median(&mut fwd);
    println!(
        "xconnect-afpacket: median forwarded {m:.3} Mpps over {} runs of {}s, {}-byte frames, worker core {}, generator core {}, drops {}",
        args.m.runs,
        args.m.seconds,
        args.m.frame,
        args.core,
        args.gen_core,
        router.show_drops()
    );
    for p in router.dataplane().ports() {
        let c = p.counters();
        println!(
            "  wharf port {}: rx {} tx {} kernel ring overruns (rx_missed) {}",
            p.info().name,
            c.rx_packets,
            c.tx_packets,
            c.rx_missed
        );
    }
    println!("  generator receive ring overruns (rx_missed) {gen_missed}");
    router.stop();
    Ok(())
}
