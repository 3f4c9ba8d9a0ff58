//! Cross-connect over DPDK `net_memif` ports, against `dpdk-testpmd`, as a ratio of testpmd itself.
//!
//! ```text
//!   peer: dpdk-testpmd, io forward          device under test (DUT)
//!   memif server p0 ──────────────────────▶ memif client m0 ─┐
//!                                                              │ wharf cross-connect (or a second testpmd, io)
//!   memif server p1 ◀────────────────────── memif client m1 ◀─┘
//!                  (and the same the other way)
//! ```
//!
//! The peer seeds a closed loop (`start tx_first N`: N bursts of 32 frames on each port) and forwards whatever
//! comes back; the DUT forwards between its two ports. The rate is the peer's receive rate over a window (its
//! `RX-packets` over both ports), i.e. what the DUT forwarded. In a closed loop the rate is bounded by the
//! slower side, so the ratio wharf / testpmd-as-DUT says how close wharf comes to testpmd (at most about 1).
//!
//! Runs alternate: baseline (a second testpmd, io forward, in the DUT's place) then wharf, `--runs` times, each
//! with a fresh connection; the report gives every run and the medians.
//!
//! Pinning: the peer's two lcores (its forwarding lcore and its main lcore, which sits in the command line
//! reading stdin) share `--peer-core`; the DUT's forwarding (wharf's worker, or the baseline testpmd's
//! forwarding lcore with its idle main lcore) runs on `--core`. Everything else (this process's main thread,
//! the EALs' interrupt and memif control threads) sleeps during the measurement.

use crate::dpdk_peer::{fmt_mac, PeerProc, PeerSpawn, PeerStats};
use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use dataplane::port::dpdk::{
    self, DpdkPool, DpdkPoolConfig, DpdkPort, DpdkPortConfig, Eal, EalConfig,
};
use dataplane::worker::{Dataplane, IdlePolicy, WorkerSpec};
use dataplane::Port;
use pipelines::snapshot::PortRole;
use pipelines::xconnect::{MacRewrite, XconnectTable};
use pipelines::Snapshot;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: crate::Measure,
    /// CPU of the device under test: wharf's worker, or the baseline testpmd.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// CPU of the peer testpmd.
    #[arg(long, default_value_t = 0)]
    peer_core: usize,
    /// Bursts of 32 frames the peer seeds each direction of the loop with.
    #[arg(long, default_value_t = 8)]
    seed_bursts: u32,
    /// Burst size of wharf's worker and of both testpmds.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Rewrite both MACs of every frame on egress (the cross-connect's optional rewrite); testpmd's io mode
    /// does not touch frames.
    #[arg(long)]
    rewrite: bool,
    /// Use hugepages in every EAL (default: --no-huge -m 512, for machines without reserved hugepages).
    #[arg(long)]
    hugepages: bool,
    /// No peer: two `net_ring` ports of wharf cabled to each other and seeded with frames, a closed loop in
    /// this process (as `xconnect-ring` does with wharf's own rings): the DPDK path's cost per packet, alone.
    #[arg(long)]
    ring_loop: bool,
    /// Longest wait, in seconds, for other processes to leave the CPUs alone before each measurement.
    #[arg(long, default_value_t = 60)]
    quiet_wait: u64,
    /// The testpmd binary.
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: String,
    /// What wharf runs: `xconnect` (the cross-connect) or `route` (IPv4 routing between two routed ports over
    /// a table of `--routes` BGP-like routes, built through the config and compile path).
    #[arg(long, value_enum, default_value_t = Pipeline::Xconnect)]
    pipeline: Pipeline,
    /// Routes of the `route` pipeline (`fib::bgp_like_prefixes`), alternately via a gateway on each port.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Seed of the route table and of the destinations drawn from it.
    #[arg(long, default_value_t = 0x5eed)]
    route_seed: u64,
    /// The traffic peer: `testpmd` (io forward) or `wharf` (`wharf-perf memif-peer`: testpmd's `mac`-mode loop
    /// that also restores the TTL, which a routed loop needs). Default: testpmd for xconnect, wharf for route.
    #[arg(long, value_enum)]
    peer: Option<PeerKind>,
    /// testpmd forward mode of the baseline DUT (default: `io` for xconnect, `mac` for route, which writes
    /// both MACs of every frame as the router does).
    #[arg(long)]
    baseline_fwd: Option<String>,
    /// More testpmd arguments for the baseline DUT, split at white space. With `--baseline-fwd noisy` and
    /// e.g. `--noisy-lkup-memory=1 --noisy-lkup-num-reads=1`, testpmd does a known amount of extra work per
    /// packet: a calibration of how far the closed loop's rate moves with a DUT's cost per packet.
    #[arg(long, allow_hyphen_values = true)]
    baseline_args: Option<String>,
}

/// The pipeline wharf runs as the DUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pipeline {
    /// Cross-connect between the two ports.
    Xconnect,
    /// IPv4 routing between two routed ports.
    Route,
}

/// Who feeds the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerKind {
    /// dpdk-testpmd, io forward, seeding with `start tx_first`.
    Testpmd,
    /// `wharf-perf memif-peer`: mac rewrite and TTL restore.
    Wharf,
}

/// MACs of the DUT's memif clients (wharf's routed ports, or the baseline testpmd's ports) with the wharf peer.
const DUT_MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0, 0x10], [0x02, 0, 0, 0, 0, 0x11]];
/// MACs of the wharf peer's memif servers: the router's pinned neighbours.
const PEER_MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0, 0x20], [0x02, 0, 0, 0, 0, 0x21]];
/// The router's address on each routed port (TEST-NET-1 and -2, /24 each).
const IF_ADDRS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 1)];
/// The gateway behind each routed port (the peer's port there).
const GATEWAYS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(198, 51, 100, 2)];

/// A `dpdk-testpmd` in interactive mode, driven through its stdin; its output goes to a file that `query` reads.
struct Testpmd {
    name: &'static str,
    child: Child,
    log: PathBuf,
    prefix: String,
}

impl Testpmd {
    fn spawn(
        a: &Args,
        name: &'static str,
        cpu: usize,
        vdevs: &[String],
        fwd: &str,
        extra: &[String],
        dir: &Path,
    ) -> anyhow::Result<Testpmd> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let prefix = format!("wharf-perf-{name}-{}", std::process::id());
        // testpmd prints command output through stdio, fully buffered into a file, but its prompt with write(2):
        // line-buffer stdout (coreutils' stdbuf) so the output is in the file when the prompt is.
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL")
            .arg(&a.testpmd)
            .args([
                "--lcores",
                &format!("0@{cpu},1@{cpu}"),
                "--file-prefix",
                &prefix,
            ])
            .args(["--no-pci", "--no-telemetry", "--log-level=notice"]);
        if a.hugepages {
            cmd.arg("--in-memory");
        } else {
            cmd.args(["--no-huge", "-m", "512"]);
        }
        for v in vdevs {
            cmd.args(["--vdev", v]);
        }
        cmd.args(["--", "-i", "--total-num-mbufs=16384"])
            .arg(format!("--forward-mode={fwd}"))
            .args(extra)
            .arg(format!("--burst={}", a.burst))
            .arg(format!("--txpkts={}", a.m.frame))
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot run stdbuf -oL {} (Debian packages coreutils, dpdk-dev)",
                a.testpmd
            )
        })?;
        let mut t = Testpmd {
            name,
            child,
            log,
            prefix,
        };
        t.wait_for("testpmd> ", 0, Duration::from_secs(30))?;
        Ok(t)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&mut self, what: &str, from: usize, timeout: Duration) -> anyhow::Result<String> {
        let end = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(s) = log.get(from..) {
                if let Some(i) = s.find(what) {
                    return Ok(s[..i].to_string());
                }
            }
            if let Some(st) = self.child.try_wait()? {
                bail!("{} exited ({st}):\n{log}", self.name);
            }
            if Instant::now() > end {
                bail!("{}: no {what:?} after {timeout:?}:\n{log}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs a command and returns its output (up to the next prompt).
    fn query(&mut self, line: &str) -> anyhow::Result<String> {
        let from = self.log().len();
        let stdin = self.child.stdin.as_mut().context("testpmd stdin")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        // The previous prompt is already out: what follows is the echo of the command, its output, and the
        // next prompt.
        self.wait_for("testpmd> ", from, Duration::from_secs(10))
    }

    /// Frames received over all ports so far.
    fn rx_packets(&mut self) -> anyhow::Result<u64> {
        let out = self.query("show port stats all")?;
        let mut sum = 0;
        let mut rest = out.as_str();
        while let Some(i) = rest.find("RX-packets:") {
            rest = &rest[i + "RX-packets:".len()..];
            sum += rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .context("RX-packets")?;
        }
        Ok(sum)
    }

    /// Waits until every port's link is up.
    fn wait_links(&mut self, ports: usize) -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.query("show port info all")?;
            if out.matches("Link status: up").count() >= ports {
                return Ok(());
            }
            if Instant::now() > end {
                bail!("{}: links not up:\n{out}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn quit(mut self) -> anyhow::Result<()> {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = writeln!(stdin, "quit");
        }
        drop(self.child.stdin.take());
        let end = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > end {
                bail!("{} did not quit", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(dpdk::runtime_dir(&self.prefix));
    }
}

fn memif(role: &str, name: &str, id: u32, socket: &Path) -> String {
    format!(
        "{name},role={role},socket={},socket-abstract=no,id={id}",
        socket.display()
    )
}

fn memif_mac(role: &str, name: &str, id: u32, socket: &Path, mac: &[u8; 6]) -> String {
    format!("{},mac={}", memif(role, name, id, socket), fmt_mac(mac))
}

/// Busy time of the whole machine and of the processes `pids`, in clock ticks.
#[derive(Clone, Copy)]
struct CpuSample {
    busy: u64,
    ours: u64,
}

fn cpu_sample(pids: &[u32]) -> CpuSample {
    let busy = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<u64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: all but idle and iowait is busy (steal too: the
            // hypervisor gave the CPU to someone else).
            Some(f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?)
        })
        .unwrap_or(0);
    let ours = pids
        .iter()
        .filter_map(|p| {
            let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    CpuSample { busy, ours }
}

/// CPUs' worth of time other processes used between two samples `secs` apart.
fn others(a: CpuSample, b: CpuSample, secs: f64) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let other = (b.busy.saturating_sub(a.busy)).saturating_sub(b.ours.saturating_sub(a.ours));
    other as f64 / hz / secs
}

/// Waits (up to `max`) until other processes use less than a tenth of a CPU for a second, so a run does not
/// share its CPUs with someone's build. Returns what they used in the last second.
fn wait_quiet(pids: &[u32], max: Duration) -> f64 {
    let end = Instant::now() + max;
    let mut said = false;
    loop {
        let a = cpu_sample(pids);
        std::thread::sleep(Duration::from_secs(1));
        let o = others(a, cpu_sample(pids), 1.0);
        if o < 0.1 || Instant::now() >= end {
            return o;
        }
        if !said {
            eprintln!("waiting for the machine to be quiet (other processes use {o:.2} CPU)...");
            said = true;
        }
    }
}

/// The side that seeds the loop and counts what the DUT forwarded.
enum Peer {
    Testpmd(Testpmd),
    Wharf(PeerProc),
}

impl Peer {
    fn pid(&self) -> u32 {
        match self {
            Peer::Testpmd(t) => t.child.id(),
            Peer::Wharf(p) => p.pid(),
        }
    }

    fn log(&self) -> String {
        match self {
            Peer::Testpmd(t) => t.log(),
            Peer::Wharf(p) => p.log(),
        }
    }

    fn wait_links(&mut self) -> anyhow::Result<()> {
        match self {
            Peer::Testpmd(t) => t.wait_links(2),
            Peer::Wharf(p) => p.wait_links(),
        }
    }

    /// Starts the loop.
    fn seed(&mut self, seed_bursts: u32) -> anyhow::Result<()> {
        match self {
            Peer::Testpmd(t) => t.query(&format!("start tx_first {seed_bursts}")).map(drop),
            Peer::Wharf(p) => {
                let n = p.seed()?;
                if n < 2 * 32 * seed_bursts as u64 {
                    bail!("memif-peer seeded only {n} frames");
                }
                Ok(())
            }
        }
    }

    /// Stops forwarding.
    fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Peer::Testpmd(t) => t.query("stop").map(drop),
            Peer::Wharf(p) => p.pause(),
        }
    }

    /// Counters (testpmd: received frames only).
    fn stats(&mut self) -> anyhow::Result<PeerStats> {
        match self {
            Peer::Testpmd(t) => Ok(PeerStats {
                rx: t.rx_packets()?,
                ..Default::default()
            }),
            Peer::Wharf(p) => p.stats(),
        }
    }

    fn quit(self) -> anyhow::Result<()> {
        match self {
            Peer::Testpmd(t) => t.quit(),
            Peer::Wharf(p) => p.quit(),
        }
    }
}

/// One measured window over the running loop: the peer's receive rate in Mpps, the CPUs' worth of time other
/// processes used meanwhile, and what the peer counted and checked.
fn window(peer: &mut Peer, pids: &[u32], seconds: f64) -> anyhow::Result<(f64, f64, PeerStats)> {
    // Warm-up.
    std::thread::sleep(Duration::from_millis(500));
    let (s0, c0, t0) = (peer.stats()?, cpu_sample(pids), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (s1, c1, t1) = (peer.stats()?, cpu_sample(pids), Instant::now());
    let secs = (t1 - t0).as_secs_f64();
    let d = s1.since(&s0);
    Ok((d.rx as f64 / secs / 1e6, others(c0, c1, secs), d))
}

/// The share of testpmd's receive polls that found nothing, from the forward statistics `stop` prints with
/// `set record-burst-stats on` (`RX-bursts : N [a% of 32 pkts + b% of 0 pkts + c% of others]`, per stream).
/// Near 0 when testpmd is the slower side of the loop.
fn empty_share(stop: &str) -> Option<f64> {
    let (mut total, mut empty) = (0.0, 0.0);
    for line in stop
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RX-bursts :"))
    {
        let (n, rest) = line.trim().split_once(' ')?;
        let n: f64 = n.parse().ok()?;
        total += n;
        let spread = rest.trim().trim_start_matches('[').trim_end_matches(']');
        for part in spread.split(" + ") {
            let (pct, what) = part.split_once("% of ")?;
            if what.trim() == "0 pkts" {
                empty += n * pct.trim().parse::<f64>().ok()? / 100.0;
            }
        }
    }
    (total > 0.0).then(|| empty / total)
}

/// What the peer's sampled frames say, in a few words.
fn sample_note(s: &PeerStats) -> String {
    format!(
        "{} sampled: TTL -1 {}, same {}, other {}; bad MACs {}, bad checksums {}, not IPv4 {}",
        s.sampled, s.ttl_dec, s.ttl_same, s.ttl_other, s.mac_bad, s.csum_bad, s.not_ipv4
    )
}

/// The routed setup: a config with two routed dpdk ports and `routes` static routes, compiled, with the
/// gateways pinned to the peer's MACs, and the destinations each port's seeded frames carry.
struct RouteSetup {
    cfg: control::config::Config,
    snapshot: Arc<Snapshot>,
    /// Destinations of the frames seeded on port 0 (routed out of port 1) and port 1 (out of port 0).
    dsts: [Vec<Ipv4Addr>; 2],
    /// Distinct prefixes the destinations fall in (longest match).
    prefixes_hit: usize,
}

/// Whether two prefixes overlap (one holds the other).
fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let len = a.1.min(b.1) as u32;
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    (u32::from(a.0) ^ u32::from(b.0)) & mask == 0
}

fn route_setup(a: &Args, socket: &Path) -> anyhow::Result<RouteSetup> {
    use pipelines::fib::{bgp_like_prefixes, SplitMix64};
    use pipelines::l3::neigh::NeighKey;
    use pipelines::l3::{Adjacency, Attach};
    use std::fmt::Write as _;
    // Prefixes that would shadow the interfaces' subnets, the seeded source or unroutable space are left out.
    let reserved = [
        (Ipv4Addr::new(0, 0, 0, 0), 8),
        (Ipv4Addr::new(127, 0, 0, 0), 8),
        (Ipv4Addr::new(192, 0, 2, 0), 24),
        (Ipv4Addr::new(198, 51, 100, 0), 24),
        (Ipv4Addr::new(198, 18, 0, 0), 15),
    ];
    let routes: Vec<(Ipv4Addr, u8)> = bgp_like_prefixes(a.routes + a.routes / 8 + 64, a.route_seed)
        .into_iter()
        .filter(|p| !reserved.iter().any(|r| overlaps(*p, *r)))
        .take(a.routes)
        .collect();
    if routes.len() < a.routes {
        bail!(
            "only {} usable routes of {} asked for",
            routes.len(),
            a.routes
        );
    }
    let mut text = format!("[dataplane]\nburst_size = {}\n", a.burst);
    for i in 0..2 {
        write!(
            text,
            "\n[[ports]]\nname = \"m{i}\"\nbackend = \"dpdk\"\ndevice = \"{}\"\naddresses = [\"{}/24\"]\n",
            memif_mac("client", &format!("net_memif_w{i}"), i as u32, socket, &DUT_MACS[i]),
            IF_ADDRS[i]
        )?;
    }
    for (i, (p, len)) in routes.iter().enumerate() {
        write!(
            text,
            "\n[[routes]]\nprefix = \"{p}/{len}\"\nvia = [\"{}\"]\n",
            GATEWAYS[i % 2]
        )?;
    }
    let cfg = control::config::parse(&text, "<xconnect-dpdk --pipeline route>")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let macs = [Some(DUT_MACS[0]), Some(DUT_MACS[1])];
    let snapshot = control::compile::compile(
        &cfg,
        1,
        control::compile::CompileEnv {
            previous: None,
            port_macs: &macs,
            port_steering: &[],
            pool: None,
            host: None,
        },
    )
    .map_err(|e| anyhow::anyhow!("compile: {e}"))?;
    let l3 = &snapshot.l3;
    for (i, ifc) in l3.ifaces.iter().enumerate() {
        let want = Attach::Port {
            port: i as u16,
            egress: pipelines::bridge::Egress::Untagged,
        };
        if ifc.attach != want || ifc.mac != DUT_MACS[i] {
            bail!("router interface {i} is {ifc:?}, not port m{i}");
        }
    }
    for i in 0..2 {
        if !l3.neigh.set_static(
            &NeighKey::v4(i as u16, u32::from(GATEWAYS[i])),
            &PEER_MACS[i],
        ) {
            bail!("cannot pin neighbour {}", GATEWAYS[i]);
        }
    }
    // Destinations: a random address inside a random route, kept if the longest match sends it through the
    // gateway on the other port (a longer route of the other gateway may cover it), distinct.
    let n = a.seed_bursts as usize * 32;
    let mut rng = SplitMix64::new(a.route_seed ^ 0xd57);
    let mut dsts: [Vec<Ipv4Addr>; 2] = [Vec::new(), Vec::new()];
    let mut seen = std::collections::HashSet::new();
    let mut hit = std::collections::HashSet::new();
    for (k, out) in dsts.iter_mut().enumerate() {
        let via = 1 - k;
        let mut tries = 0;
        while out.len() < n {
            tries += 1;
            if tries > n * 1000 {
                bail!("cannot find {n} destinations routed via {}", GATEWAYS[via]);
            }
            let (p, len) = routes[rng.below(routes.len() as u64) as usize];
            let host = u32::MAX.checked_shr(len as u32).unwrap_or(0);
            let d = u32::from(p) | (rng.next_u32() & host);
            let top = d >> 24;
            if top == 0 || top == 127 || top >= 224 || !seen.insert(d) {
                continue;
            }
            let Some(nh) = l3.fib4.lookup(d) else {
                continue;
            };
            if matches!(l3.adj.get(nh as usize), Some(Adjacency::Gateway { iface, .. }) if *iface as usize == via)
            {
                out.push(Ipv4Addr::from(d));
                // The route it matches: the longest holding it.
                if let Some(best) = routes
                    .iter()
                    .filter(|r| overlaps(**r, (Ipv4Addr::from(d), 32)))
                    .max_by_key(|r| r.1)
                {
                    hit.insert(*best);
                }
            }
        }
    }
    let prefixes_hit = hit.len();
    Ok(RouteSetup {
        cfg,
        snapshot: Arc::new(snapshot),
        dsts,
        prefixes_hit,
    })
}

fn xconnect(rewrite: bool) -> Snapshot {
    let mut xc = XconnectTable::new(2);
    xc.patch(0, 1);
    if rewrite {
        for p in 0..2 {
            xc.rewrite[p] = Some(MacRewrite {
                src: Some([0x02, 0, 0, 0, 0, 0x0a + p as u8]),
                dst: Some([0x02, 0, 0, 0, 0, 0x1a + p as u8]),
            });
        }
    }
    Snapshot {
        generation: 1,
        port_names: Arc::new(vec!["m0".into(), "m1".into()]),
        roles: Arc::new(vec![PortRole::Xconnect, PortRole::Xconnect]),
        xconnect: Arc::new(xc),
        ..Default::default()
    }
}

/// Removes a directory at the end, also on error.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `--ring-loop` variant: Mpps per core of wharf's worker over two cabled `net_ring` ports.
fn ring_loop(a: &Args) -> anyhow::Result<()> {
    use dataplane::traffic::{udp4_frame, Udp4Flow};
    let eal = Eal::init(&EalConfig {
        no_huge: !a.hugepages,
        memory_mb: 512,
        file_prefix: format!("wharf-perf-{}", std::process::id()),
        ..Default::default()
    })?;
    let pool = DpdkPool::new(
        &eal,
        &DpdkPoolConfig {
            buffers: 16384,
            ..Default::default()
        },
    )?;
    let (pa, pb) = DpdkPort::ring_pair("a", "b", 1, 4096, &pool)?;
    let inflight = a.seed_bursts as usize * 32;
    {
        let template = udp4_frame(&Udp4Flow::default(), a.m.frame);
        let mut q = pa.open_queue(0)?;
        let mut burst = dataplane::Burst::new(32);
        let mut seeded = 0;
        while seeded < inflight {
            while !burst.is_full() && seeded + burst.len() < inflight {
                let mut p = pool.alloc().context("pool empty while seeding")?;
                p.set_frame(&template);
                let _ = burst.push(p);
            }
            seeded += q.tx_burst(&mut burst);
        }
    }
    let (pa, pb) = (Arc::new(pa), Arc::new(pb));
    let dp = Dataplane::start(
        vec![pa.clone() as Arc<dyn Port>, pb.clone()],
        &[WorkerSpec {
            core: Some(a.core),
            burst_size: a.burst,
            idle: IdlePolicy::Poll,
        }],
        Arc::new(ArcSwap::from_pointee(xconnect(a.rewrite))),
    )?;
    let w = dp.workers()[0].counters.clone();
    let pids = [std::process::id()];
    std::thread::sleep(Duration::from_millis(500));
    let mut mpps = Vec::new();
    for run in 1..=a.m.runs {
        let (p0, c0, t0) = (w.rx_packets.get(), cpu_sample(&pids), Instant::now());
        std::thread::sleep(Duration::from_secs_f64(a.m.seconds));
        let (p1, c1, t1) = (w.rx_packets.get(), cpu_sample(&pids), Instant::now());
        let secs = (t1 - t0).as_secs_f64();
        let r = (p1 - p0) as f64 / secs / 1e6;
        println!(
            "run {run}: {r:.2} Mpps ({:.1} ns/packet; others used {:.2} CPU)",
            1e3 / r,
            others(c0, c1, secs)
        );
        mpps.push(r);
    }
    let m = crate::median(&mut mpps);
    println!(
        "xconnect-dpdk --ring-loop: median {m:.2} Mpps per core ({:.1} ns/packet) over {} runs of {}s, {}-byte \
         frames, burst {}, {inflight} frames in flight, core {}, pinned {}, MAC rewrite {}, drops {:?}",
        1e3 / m,
        a.m.runs,
        a.m.seconds,
        a.m.frame,
        a.burst,
        a.core,
        dp.workers()[0].pinned,
        if a.rewrite { "on" } else { "off" },
        dp.drops()
    );
    dp.stop();
    drop((pa, pb));
    drop(pool);
    eal.cleanup()?;
    Ok(())
}

/// Runs the benchmark.
pub fn run(a: &Args) -> anyhow::Result<()> {
    if a.ring_loop {
        return ring_loop(a);
    }
    let route = a.pipeline == Pipeline::Route;
    let peer_kind = a.peer.unwrap_or(if route {
        PeerKind::Wharf
    } else {
        PeerKind::Testpmd
    });
    if route && peer_kind == PeerKind::Testpmd {
        bail!(
            "--pipeline route needs --peer wharf: no testpmd forward mode restores the TTL the router decrements, \
             so a routed loop through testpmd dies after 63 passes"
        );
    }
    let fwd = a
        .baseline_fwd
        .clone()
        .unwrap_or_else(|| if route { "mac" } else { "io" }.to_string());
    let wharf_peer = peer_kind == PeerKind::Wharf;
    let dir = TempDir(std::env::temp_dir().join(format!("wharf-perf-dpdk-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0)?;
    let socket = dir.0.join("memif.sock");
    let setup = if route {
        let t = Instant::now();
        let s = route_setup(a, &socket)?;
        println!(
            "route table: {} routes (BGP-like, seed {:#x}) alternately via {} (port m0) and {} (port m1), \
             compiled in {:.2}s; {} destinations per direction in {} distinct routes",
            a.routes,
            a.route_seed,
            GATEWAYS[0],
            GATEWAYS[1],
            t.elapsed().as_secs_f64(),
            s.dsts[0].len(),
            s.prefixes_hit
        );
        Some(s)
    } else {
        None
    };
    let mut peer = if wharf_peer {
        let dsts_file = dir.0.join("dsts.txt");
        if let Some(s) = &setup {
            let mut text = String::new();
            for (k, list) in s.dsts.iter().enumerate() {
                for d in list {
                    text.push_str(&format!("{k} {d}\n"));
                }
            }
            std::fs::write(&dsts_file, text)?;
        }
        Peer::Wharf(
            PeerProc::spawn(&PeerSpawn {
                socket: &socket,
                core: a.peer_core,
                hugepages: a.hugepages,
                burst: a.burst,
                frame: a.m.frame,
                seed_bursts: a.seed_bursts,
                own: PEER_MACS,
                dut: DUT_MACS,
                dsts: setup.as_ref().map(|_| dsts_file.as_path()),
                dir: &dir.0,
            })
            .context("memif-peer")?,
        )
    } else {
        let servers: Vec<String> = (0..2)
            .map(|i| memif("server", &format!("net_memif{i}"), i, &socket))
            .collect();
        Peer::Testpmd(
            Testpmd::spawn(a, "peer", a.peer_core, &servers, "io", &[], &dir.0)
                .context("peer testpmd")?,
        )
    };
    let eal = Eal::init(&EalConfig {
        no_huge: !a.hugepages,
        memory_mb: 512,
        file_prefix: format!("wharf-perf-{}", std::process::id()),
        ..Default::default()
    })?;
    let pool = DpdkPool::new(
        &eal,
        &DpdkPoolConfig {
            buffers: 16384,
            ..Default::default()
        },
    )?;
    // The baseline's ports: with the wharf peer, the same MACs as wharf's ports, and in `mac` mode the peer's
    // MACs as destinations, so its frames leave exactly as the router's do (but for the TTL).
    let mut base_args = Vec::new();
    if wharf_peer && fwd == "mac" {
        for (i, m) in PEER_MACS.iter().enumerate() {
            base_args.push(format!("--eth-peer={i},{}", fmt_mac(m)));
        }
    }
    if let Some(extra) = &a.baseline_args {
        base_args.extend(extra.split_whitespace().map(String::from));
    }
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    let mut drops = String::new();
    let mut events = String::new();
    let (me, peer_pid) = (std::process::id(), peer.pid());
    let max_wait = Duration::from_secs(a.quiet_wait);
    let mut ratios = Vec::new();
    let mut checked = PeerStats::default();
    for run in 1..=a.m.runs {
        // Baseline: a second testpmd in the DUT's place.
        let clients: Vec<String> = (0..2)
            .map(|i| {
                let name = format!("net_memif{i}");
                if wharf_peer {
                    memif_mac("client", &name, i, &socket, &DUT_MACS[i as usize])
                } else {
                    memif("client", &name, i, &socket)
                }
            })
            .collect();
        let mut dut = Testpmd::spawn(a, "dut", a.core, &clients, &fwd, &base_args, &dir.0)
            .context("baseline testpmd")?;
        let pids = [me, peer_pid, dut.child.id()];
        dut.wait_links(2)?;
        peer.wait_links()?;
        wait_quiet(&pids, max_wait);
        dut.query("set record-burst-stats on")?;
        dut.query("start")?;
        peer.seed(a.seed_bursts)?;
        let (b, bo, bs) = window(&mut peer, &pids, a.m.seconds)?;
        peer.stop()?;
        let base_idle = empty_share(&dut.query("stop")?);
        dut.quit()?;

        // wharf: the pipeline between two memif clients.
        let pids = [me, peer_pid];
        let open = |i: u32| -> anyhow::Result<DpdkPort> {
            let cfg = match &setup {
                Some(s) => match &s.cfg.ports[i as usize].backend {
                    control::config::BackendCfg::Dpdk(p) => p.port_config(1),
                    other => bail!("port m{i}: backend {}", other.kind()),
                },
                None => DpdkPortConfig {
                    device: if wharf_peer {
                        memif_mac(
                            "client",
                            &format!("net_memif_w{i}"),
                            i,
                            &socket,
                            &DUT_MACS[i as usize],
                        )
                    } else {
                        memif("client", &format!("net_memif_w{i}"), i, &socket)
                    },
                    ..Default::default()
                },
            };
            let p = DpdkPort::open(&format!("m{i}"), &cfg, &pool)?;
            if setup.is_some() && p.info().mac != Some(DUT_MACS[i as usize]) {
                bail!("port m{i} has MAC {:?}, not the router's", p.info().mac);
            }
            Ok(p)
        };
        let (m0, m1) = (Arc::new(open(0)?), Arc::new(open(1)?));
        if !m0.wait_link(Duration::from_secs(10)) || !m1.wait_link(Duration::from_secs(10)) {
            bail!("wharf's memif links did not come up:\n{}", peer.log());
        }
        peer.wait_links()?;
        wait_quiet(&pids, max_wait);
        let snapshot = match &setup {
            Some(s) => s.snapshot.clone(),
            None => Arc::new(xconnect(a.rewrite)),
        };
        let dp = Dataplane::start(
            vec![m0.clone() as Arc<dyn Port>, m1.clone()],
            &[WorkerSpec {
                core: Some(a.core),
                burst_size: a.burst,
                idle: IdlePolicy::Poll,
            }],
            Arc::new(ArcSwap::new(snapshot)),
        )?;
        let pinned = dp.workers()[0].pinned;
        let c = dp.workers()[0].counters.clone();
        peer.seed(a.seed_bursts)?;
        let (p0, b0, e0) = (c.rx_packets.get(), c.bursts.get(), c.empty_polls.get());
        let (w, wo, ws) = window(&mut peer, &pids, a.m.seconds)?;
        let (p1, b1, e1) = (c.rx_packets.get(), c.bursts.get(), c.empty_polls.get());
        // Rounds that found nothing on either port, per round: near 0 when wharf is the slower side.
        let ours_idle = (e1 - e0) as f64 / ((e1 - e0) + (b1 - b0)).max(1) as f64;
        let per_burst = (p1 - p0) as f64 / (b1 - b0).max(1) as f64;
        peer.stop()?;
        drops = format!("{:?}", dp.drops());
        events = format!(
            "rx {} routed {}, {:.1} packets per burst and {:.2} empty polls per burst in the window",
            c.rx_packets.get(),
            c.events.get(dataplane::Event::Routed),
            (p1 - p0) as f64 / (b1 - b0).max(1) as f64,
            (e1 - e0) as f64 / (b1 - b0).max(1) as f64,
        );
        dp.stop();
        drop((m0, m1));
        let notes = if wharf_peer {
            format!(
                "; peer checks: testpmd {}; wharf {}",
                sample_note(&bs),
                sample_note(&ws)
            )
        } else {
            String::new()
        };
        println!(
            "run {run}: testpmd {b:.3} Mpps (others used {bo:.2} CPU, {} empty polls), wharf {w:.3} Mpps (others \
             {wo:.2} CPU, {:.0}% empty rounds, {per_burst:.1} packets per burst), ratio {:.3}{}{notes}",
            base_idle.map_or("?".to_string(), |e| format!("{:.0}%", e * 100.0)),
            ours_idle * 100.0,
            w / b,
            if pinned { "" } else { " (wharf worker NOT pinned)" }
        );
        if route {
            // Every sampled frame must be routed once: TTL decremented, MACs the router's (source: its port,
            // destination: the pinned neighbour), checksum valid.
            if ws.sampled == 0
                || ws.ttl_dec != ws.sampled
                || ws.mac_bad + ws.csum_bad + ws.not_ipv4 > 0
            {
                bail!(
                    "run {run}: wharf forwarded frames that are not routed correctly: {}",
                    sample_note(&ws)
                );
            }
            checked = PeerStats {
                sampled: checked.sampled + ws.sampled,
                ttl_dec: checked.ttl_dec + ws.ttl_dec,
                ..checked
            };
        }
        base.push(b);
        ours.push(w);
        ratios.push(w / b);
    }
    peer.quit()?;
    // On a shared VM the loop runs in one of two states for seconds at a time (about 3x apart, for testpmd as
    // for wharf, with nothing else running in the guest): the best run of each is the fast state's rate.
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (bb, bw) = (best(&base), best(&ours));
    let (mb, mw, mr) = (
        crate::median(&mut base),
        crate::median(&mut ours),
        crate::median(&mut ratios),
    );
    let what = match a.pipeline {
        Pipeline::Xconnect => format!("xconnect, MAC rewrite {}", if a.rewrite { "on" } else { "off" }),
        Pipeline::Route => format!(
            "route ({} routes, {} destinations per direction; {} sampled frames all routed: TTL -1, router MACs, \
             valid checksum)",
            a.routes,
            a.seed_bursts * 32,
            checked.sampled
        ),
    };
    println!(
        "xconnect-dpdk {what}: wharf median {mw:.3} Mpps, testpmd ({fwd}{}) median {mb:.3} Mpps, ratio of medians \
         {:.3}, median of per-run ratios {mr:.3}; best runs: wharf {bw:.3}, testpmd {bb:.3}, ratio {:.3}; {} runs \
         of {}s, {}-byte frames, burst {}, {} seed bursts per direction, DUT on CPU {}, peer ({}) on CPU {}, {}; \
         wharf's last run: {events}, drops {drops}",
        a.baseline_args
            .as_deref()
            .map_or(String::new(), |x| format!(" {x}")),
        mw / mb,
        bw / bb,
        a.m.runs,
        a.m.seconds,
        a.m.frame,
        a.burst,
        a.seed_bursts,
        a.core,
        match peer_kind {
            PeerKind::Testpmd => "testpmd io",
            PeerKind::Wharf => "memif-peer: mac + TTL restore",
        },
        a.peer_core,
        if a.hugepages { "hugepages" } else { "no hugepages" },
    );
    drop(pool);
    eal.cleanup()?;
    Ok(())
}
