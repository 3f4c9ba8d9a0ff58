//! The `--peer wharf` traffic peer of `xconnect-dpdk`: testpmd's forwarding loop (rx a burst on one memif
//! server port, tx it on the other), plus what a routed loop needs and no testpmd forward mode does: it
//! restores the IPv4 TTL the device under test decremented.
//!
//! Why not testpmd: a routed closed loop needs every frame to be routable on every pass, and the router
//! decrements the TTL on each one. testpmd 22.11's forward modes leave the TTL alone (`io` and `mac` forward the
//! IP header untouched, `macswap` and `5tswap` swap addresses, `flowgen` and `txonly` generate fresh frames and
//! drop what comes back), so frames seeded with TTL 64 die after 63 passes: a few milliseconds at 10 Mpps.
//!
//! Per frame this peer does what testpmd's `mac` mode does (destination MAC: the DUT's port the frame goes to;
//! source MAC: this peer's port) and sets the TTL back to `--ttl` with an incremental checksum update (RFC
//! 1624). Every `--sample`-th received frame is checked first: MACs as a router would write them (source: the
//! DUT's port it left, destination: this peer's port, i.e. the neighbour the router has pinned), the IPv4
//! header checksum, and the TTL (decremented once, or untouched). The loop works on DPDK's mbufs directly, as
//! testpmd does, so the peer costs what testpmd's `mac` mode costs plus two stores on the TTL word.
//!
//! The peer runs as a child process (`wharf-perf memif-peer`, its own EAL) driven by line commands on stdin:
//! `links` (wait until both ports are up), `seed` (send `--seed-bursts` bursts of 32 frames on each port from the
//! forwarding thread, and forward), `pause` (stop forwarding, as testpmd's `stop`, before the DUT disconnects),
//! `stats` (cumulative counters), `quit`. Each answers one line on stdout.

use anyhow::{bail, Context};
use dataplane::port::dpdk::{
    self, DpdkPool, DpdkPoolConfig, DpdkPort, DpdkPortConfig, Eal, EalConfig,
};
use dataplane::traffic::{inet_checksum, udp4_frame, Udp4Flow};
use dataplane::{Burst, Port, PortQueue};
use dpdk_sys as sys;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of the peer process.
#[derive(clap::Args, Clone, Debug)]
pub struct PeerArgs {
    /// The memif socket (this peer is the server of two interfaces on it, ids 0 and 1).
    #[arg(long)]
    socket: PathBuf,
    /// CPU of the forwarding thread.
    #[arg(long, default_value_t = 0)]
    core: usize,
    /// EAL on hugepages (default --no-huge -m 512).
    #[arg(long)]
    hugepages: bool,
    /// Burst size.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Frame size of the seeded frames, without FCS.
    #[arg(long, default_value_t = 60)]
    frame: usize,
    /// Bursts of 32 frames seeded on each port.
    #[arg(long, default_value_t = 8)]
    seed_bursts: u32,
    /// This peer's MACs on ports 0 and 1 (`aa:..,bb:..`).
    #[arg(long)]
    own_macs: String,
    /// The DUT's MACs on its ports 0 and 1: the destination of what this peer sends there.
    #[arg(long)]
    dut_macs: String,
    /// TTL of seeded frames, and what forwarded frames get back.
    #[arg(long, default_value_t = 64)]
    ttl: u8,
    /// Check one received frame in this many (a power of two).
    #[arg(long, default_value_t = 256)]
    sample: u64,
    /// File of destinations, one `PORT ADDRESS` a line: frames seeded on PORT (0 or 1) get these destinations in
    /// turn. Without it every frame goes to 198.18.0.2.
    #[arg(long)]
    dsts: Option<PathBuf>,
}

/// Counters the forwarding thread publishes.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    seed_req: AtomicU32,
    seed_done: AtomicU32,
    pause_req: AtomicU32,
    pause_done: AtomicU32,
    seeded: AtomicU64,
    rx: [AtomicU64; 2],
    tx_dropped: AtomicU64,
    sampled: AtomicU64,
    ttl_dec: AtomicU64,
    ttl_same: AtomicU64,
    ttl_other: AtomicU64,
    mac_bad: AtomicU64,
    csum_bad: AtomicU64,
    not_ipv4: AtomicU64,
}

/// The peer's cumulative counters, as `stats` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Frames received on both ports.
    pub rx: u64,
    /// Frames the DUT's port did not take (its ring full), freed.
    pub tx_dropped: u64,
    /// Frames checked.
    pub sampled: u64,
    /// Checked frames whose TTL was decremented once.
    pub ttl_dec: u64,
    /// Checked frames whose TTL was untouched.
    pub ttl_same: u64,
    /// Checked frames with any other TTL.
    pub ttl_other: u64,
    /// Checked frames whose MACs were not (DUT port, this peer's port).
    pub mac_bad: u64,
    /// Checked frames with a bad IPv4 header checksum.
    pub csum_bad: u64,
    /// Checked frames that were not IPv4.
    pub not_ipv4: u64,
}

impl PeerStats {
    fn parse(line: &str) -> anyhow::Result<PeerStats> {
        let mut s = PeerStats::default();
        for kv in line.split_whitespace().skip(1) {
            let (k, v) = kv.split_once('=').context("stats: key=value")?;
            let v: u64 = v.parse().context("stats: number")?;
            match k {
                "rx" => s.rx = v,
                "tx_dropped" => s.tx_dropped = v,
                "sampled" => s.sampled = v,
                "ttl_dec" => s.ttl_dec = v,
                "ttl_same" => s.ttl_same = v,
                "ttl_other" => s.ttl_other = v,
                "mac_bad" => s.mac_bad = v,
                "csum_bad" => s.csum_bad = v,
                "not_ipv4" => s.not_ipv4 = v,
                _ => {}
            }
        }
        Ok(s)
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &PeerStats) -> PeerStats {
        PeerStats {
            rx: self.rx - before.rx,
            tx_dropped: self.tx_dropped - before.tx_dropped,
            sampled: self.sampled - before.sampled,
            ttl_dec: self.ttl_dec - before.ttl_dec,
            ttl_same: self.ttl_same - before.ttl_same,
            ttl_other: self.ttl_other - before.ttl_other,
            mac_bad: self.mac_bad - before.mac_bad,
            csum_bad: self.csum_bad - before.csum_bad,
            not_ipv4: self.not_ipv4 - before.not_ipv4,
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC {s:?}"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC {s:?}: six bytes"))
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn two_macs(s: &str) -> anyhow::Result<[[u8; 6]; 2]> {
    let (a, b) = s.split_once(',').context("two MACs, comma-separated")?;
    Ok([parse_mac(a)?, parse_mac(b)?])
}

/// What the forwarding thread rewrites and checks.
#[derive(Clone, Copy)]
struct Rewrite {
    own: [[u8; 6]; 2],
    dut: [[u8; 6]; 2],
    ttl: u8,
    sample_mask: u64,
}

use sys::wharf_mbuf_layout as layout;

/// The frame of mbuf `m`.
///
/// # Safety
/// `m` is a valid single-segment mbuf we own.
#[inline(always)]
unsafe fn frame<'a>(m: *mut sys::rte_mbuf) -> &'a mut [u8] {
    let b = m.cast::<u8>();
    // SAFETY: the offsets are the mbuf's header fields; data_off + data_len lie inside the buffer.
    unsafe {
        let buf: *mut u8 = b
            .add(layout::WHARF_MBUF_BUF_ADDR as usize)
            .cast::<*mut u8>()
            .read();
        let off: u16 = b
            .add(layout::WHARF_MBUF_DATA_OFF as usize)
            .cast::<u16>()
            .read();
        let len: u16 = b
            .add(layout::WHARF_MBUF_DATA_LEN as usize)
            .cast::<u16>()
            .read();
        std::slice::from_raw_parts_mut(buf.add(off as usize), len as usize)
    }
}

/// Checks a frame received on port `j` (sent by the DUT's port `j`) into the counters.
#[cold]
fn check(f: &[u8], j: usize, rw: &Rewrite, s: &Shared) {
    s.sampled.fetch_add(1, Ordering::Relaxed);
    if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 {
        s.not_ipv4.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if f[0..6] != rw.own[j] || f[6..12] != rw.dut[j] {
        s.mac_bad.fetch_add(1, Ordering::Relaxed);
    }
    if inet_checksum(&f[14..34]) != 0 {
        s.csum_bad.fetch_add(1, Ordering::Relaxed);
    }
    let ttl = f[22];
    let c = if ttl == rw.ttl {
        &s.ttl_same
    } else if ttl == rw.ttl.wrapping_sub(1) {
        &s.ttl_dec
    } else {
        &s.ttl_other
    };
    c.fetch_add(1, Ordering::Relaxed);
}

/// Readies a frame received on port `j` for port `k`: MACs as testpmd's `mac` mode writes them, TTL restored.
#[inline(always)]
fn rewrite(f: &mut [u8], k: usize, rw: &Rewrite) {
    if f.len() < 34 {
        return;
    }
    f[0..6].copy_from_slice(&rw.dut[k]);
    f[6..12].copy_from_slice(&rw.own[k]);
    if f[12..14] == [0x08, 0x00] && f[22] != rw.ttl {
        // RFC 1624: HC' = ~(~HC + ~m + m'), m the TTL/protocol word.
        let old = u16::from_be_bytes([f[22], f[23]]);
        let new = u16::from_be_bytes([rw.ttl, f[23]]);
        let hc = u16::from_be_bytes([f[24], f[25]]);
        let mut sum = (!hc) as u32 + (!old) as u32 + new as u32;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        f[22] = rw.ttl;
        f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
}

struct Fwd {
    ports: [u16; 2],
    queues: [Box<dyn PortQueue>; 2],
    pool: DpdkPool,
    burst: usize,
    rw: Rewrite,
    seed: Vec<Vec<Vec<u8>>>,
    shared: Arc<Shared>,
}

impl Fwd {
    fn seed(&mut self) {
        let mut n = 0u64;
        for k in 0..2 {
            let mut burst = Burst::new(32);
            let frames = &self.seed[k];
            let mut i = 0;
            let mut stuck = 0;
            while i < frames.len() && stuck < 1000 {
                while !burst.is_full() && i + burst.len() < frames.len() {
                    let Some(mut p) = self.pool.alloc() else {
                        break;
                    };
                    p.set_frame(&frames[i + burst.len()]);
                    let _ = burst.push(p);
                }
                let sent = self.queues[k].tx_burst(&mut burst);
                i += sent;
                n += sent as u64;
                if sent == 0 {
                    stuck += 1;
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            burst.clear();
        }
        self.shared.seeded.store(n, Ordering::Relaxed);
    }

    fn run(mut self, core: usize) {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            eprintln!("memif-peer: cannot pin to CPU {core}");
        }
        // Registers this thread as an EAL lcore (mempool cache) before the raw loop.
        let _ = self.queues[0].tx_burst(&mut Burst::new(1));
        let s = self.shared.clone();
        let rw = self.rw;
        let mut mbufs = [std::ptr::null_mut::<sys::rte_mbuf>(); 256];
        let mut rx = [0u64; 2];
        let mut dropped = 0u64;
        let mut seen = 0u64;
        let burst = self.burst.min(256) as u16;
        // Forwarding runs from a seed to the next pause, like testpmd's `start tx_first` and `stop`: the ports
        // are left alone while the DUT disconnects and the next one connects.
        let mut running = false;
        while !s.stop.load(Ordering::Relaxed) {
            let req = s.seed_req.load(Ordering::Acquire);
            if req != s.seed_done.load(Ordering::Relaxed) {
                self.seed();
                running = true;
                s.seed_done.store(req, Ordering::Release);
            }
            let req = s.pause_req.load(Ordering::Acquire);
            if req != s.pause_done.load(Ordering::Relaxed) {
                running = false;
                s.pause_done.store(req, Ordering::Release);
            }
            if !running {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            for (j, rx_j) in rx.iter_mut().enumerate() {
                let k = 1 - j;
                // SAFETY: the ports are started, queue 0 of each is used by this thread only, and the array has
                // room for `burst` pointers.
                let n = unsafe {
                    sys::wharf_rte_eth_rx_burst(self.ports[j], 0, mbufs.as_mut_ptr(), burst)
                } as usize;
                if n == 0 {
                    continue;
                }
                for &m in &mbufs[..n] {
                    // SAFETY: the driver handed the mbuf over; memif makes single-segment mbufs for 60-byte
                    // frames.
                    let f = unsafe { frame(m) };
                    if seen & rw.sample_mask == 0 {
                        check(f, j, &rw, &s);
                    }
                    seen += 1;
                    rewrite(f, k, &rw);
                }
                // SAFETY: as above; the first `n` pointers are ours to send.
                let sent = unsafe {
                    sys::wharf_rte_eth_tx_burst(self.ports[k], 0, mbufs.as_mut_ptr(), n as u16)
                } as usize;
                if sent < n {
                    // SAFETY: the driver did not take these; they are ours to free.
                    unsafe {
                        sys::rte_pktmbuf_free_bulk(mbufs[sent..n].as_mut_ptr(), (n - sent) as u32)
                    };
                    dropped += (n - sent) as u64;
                    s.tx_dropped.store(dropped, Ordering::Relaxed);
                }
                *rx_j += n as u64;
                s.rx[j].store(*rx_j, Ordering::Relaxed);
            }
        }
    }
}

fn read_dsts(path: Option<&Path>) -> anyhow::Result<[Vec<Ipv4Addr>; 2]> {
    let mut d: [Vec<Ipv4Addr>; 2] = [Vec::new(), Vec::new()];
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (p, a) = line.trim().split_once(' ').context("dsts: PORT ADDRESS")?;
            let p: usize = p.parse().context("dsts: port")?;
            d.get_mut(p)
                .context("dsts: port 0 or 1")?
                .push(a.trim().parse().context("dsts: address")?);
        }
    }
    for v in &mut d {
        if v.is_empty() {
            v.push(Ipv4Addr::new(198, 18, 0, 2));
        }
    }
    Ok(d)
}

/// The peer process: see the module docs.
pub fn run(a: &PeerArgs) -> anyhow::Result<()> {
    if !a.sample.is_power_of_two() {
        bail!("--sample must be a power of two");
    }
    let own = two_macs(&a.own_macs)?;
    let dut = two_macs(&a.dut_macs)?;
    let dsts = read_dsts(a.dsts.as_deref())?;
    let n = a.seed_bursts as usize * 32;
    let seed: Vec<Vec<Vec<u8>>> = (0..2)
        .map(|k| {
            (0..n)
                .map(|i| {
                    let mut f = udp4_frame(
                        &Udp4Flow {
                            src_mac: own[k],
                            dst_mac: dut[k],
                            src_ip: [198, 18, 0, 1],
                            dst_ip: dsts[k][i % dsts[k].len()].octets(),
                            src_port: 1024 + i as u16,
                            dst_port: 9,
                        },
                        a.frame,
                    );
                    if a.ttl != 64 {
                        f[22] = a.ttl;
                        f[24..26].fill(0);
                        let c = inet_checksum(&f[14..34]);
                        f[24..26].copy_from_slice(&c.to_be_bytes());
                    }
                    f
                })
                .collect()
        })
        .collect();
    let prefix = format!("wharf-perf-peer-{}", std::process::id());
    let eal = Eal::init(&EalConfig {
        no_huge: !a.hugepages,
        memory_mb: 512,
        file_prefix: prefix,
        ..Default::default()
    })?;
    let pool = DpdkPool::new(
        &eal,
        &DpdkPoolConfig {
            buffers: 16384,
            ..Default::default()
        },
    )?;
    let open = |i: usize| {
        DpdkPort::open(
            &format!("p{i}"),
            &DpdkPortConfig {
                device: format!(
                    "net_memif_p{i},role=server,socket={},socket-abstract=no,id={i},mac={}",
                    a.socket.display(),
                    fmt_mac(&own[i])
                ),
                ..Default::default()
            },
            &pool,
        )
    };
    let ports = [Arc::new(open(0)?), Arc::new(open(1)?)];
    let shared = Arc::new(Shared::default());
    let fwd = Fwd {
        ports: [ports[0].port_id(), ports[1].port_id()],
        queues: [ports[0].open_queue(0)?, ports[1].open_queue(0)?],
        pool: pool.clone(),
        burst: a.burst,
        rw: Rewrite {
            own,
            dut,
            ttl: a.ttl,
            sample_mask: a.sample - 1,
        },
        seed,
        shared: shared.clone(),
    };
    let core = a.core;
    let thread = std::thread::Builder::new()
        .name("memif-peer".into())
        .spawn(move || fwd.run(core))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let reply = match line.trim() {
            "links" => {
                let end = Instant::now() + Duration::from_secs(20);
                loop {
                    if ports.iter().all(|p| p.link().up) {
                        break "ok".to_string();
                    }
                    if Instant::now() > end {
                        break "err links down".to_string();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            "seed" => {
                let req = shared.seed_req.fetch_add(1, Ordering::AcqRel) + 1;
                let end = Instant::now() + Duration::from_secs(10);
                loop {
                    if shared.seed_done.load(Ordering::Acquire) == req {
                        break format!("ok {}", shared.seeded.load(Ordering::Relaxed));
                    }
                    if Instant::now() > end {
                        break "err seeding timed out".to_string();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            "pause" => {
                let req = shared.pause_req.fetch_add(1, Ordering::AcqRel) + 1;
                let end = Instant::now() + Duration::from_secs(10);
                loop {
                    if shared.pause_done.load(Ordering::Acquire) == req {
                        break "ok".to_string();
                    }
                    if Instant::now() > end {
                        break "err pause timed out".to_string();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            "stats" => {
                let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
                format!(
                    "stats rx={} tx_dropped={} sampled={} ttl_dec={} ttl_same={} ttl_other={} mac_bad={} \
                     csum_bad={} not_ipv4={}",
                    g(&shared.rx[0]) + g(&shared.rx[1]),
                    g(&shared.tx_dropped),
                    g(&shared.sampled),
                    g(&shared.ttl_dec),
                    g(&shared.ttl_same),
                    g(&shared.ttl_other),
                    g(&shared.mac_bad),
                    g(&shared.csum_bad),
                    g(&shared.not_ipv4),
                )
            }
            "quit" => break,
            other => format!("err unknown command {other:?}"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    drop(ports);
    drop(pool);
    eal.cleanup()?;
    writeln!(out, "bye")?;
    out.flush()?;
    Ok(())
}

/// The bench's handle on a peer process.
pub struct PeerProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
    prefix: String,
}

/// How the bench starts a peer.
pub struct PeerSpawn<'a> {
    /// Memif socket.
    pub socket: &'a Path,
    /// CPU of the forwarding thread.
    pub core: usize,
    /// Hugepages.
    pub hugepages: bool,
    /// Burst size.
    pub burst: usize,
    /// Frame size.
    pub frame: usize,
    /// Seed bursts per port.
    pub seed_bursts: u32,
    /// This peer's MACs.
    pub own: [[u8; 6]; 2],
    /// The DUT's MACs.
    pub dut: [[u8; 6]; 2],
    /// Destination file.
    pub dsts: Option<&'a Path>,
    /// Directory for the log.
    pub dir: &'a Path,
}

impl PeerProc {
    /// Starts `wharf-perf memif-peer` and waits until it is ready.
    pub fn spawn(s: &PeerSpawn<'_>) -> anyhow::Result<PeerProc> {
        let log = s.dir.join("memif-peer.log");
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("memif-peer")
            .arg("--socket")
            .arg(s.socket)
            .args(["--core", &s.core.to_string()])
            .args(["--burst", &s.burst.to_string()])
            .args(["--frame", &s.frame.to_string()])
            .args(["--seed-bursts", &s.seed_bursts.to_string()])
            .args([
                "--own-macs",
                &format!("{},{}", fmt_mac(&s.own[0]), fmt_mac(&s.own[1])),
            ])
            .args([
                "--dut-macs",
                &format!("{},{}", fmt_mac(&s.dut[0]), fmt_mac(&s.dut[1])),
            ]);
        if s.hugepages {
            cmd.arg("--hugepages");
        }
        if let Some(d) = s.dsts {
            cmd.arg("--dsts").arg(d);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start wharf-perf memif-peer")?;
        let stdin = child.stdin.take().context("peer stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("peer stdout")?);
        let prefix = format!("wharf-perf-peer-{}", child.id());
        let mut p = PeerProc {
            child,
            stdin,
            stdout,
            log,
            prefix,
        };
        let hello = p.read_line()?;
        if hello != "ready" {
            bail!("memif-peer: {hello:?}:\n{}", p.log());
        }
        Ok(p)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peer's stderr so far (EAL messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn read_line(&mut self) -> anyhow::Result<String> {
        let mut s = String::new();
        if self.stdout.read_line(&mut s)? == 0 {
            bail!("memif-peer exited:\n{}", self.log());
        }
        Ok(s.trim().to_string())
    }

    fn cmd(&mut self, line: &str) -> anyhow::Result<String> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        let r = self.read_line()?;
        if r.starts_with("err") {
            bail!("memif-peer {line}: {r}:\n{}", self.log());
        }
        Ok(r)
    }

    /// Waits until both ports are up.
    pub fn wait_links(&mut self) -> anyhow::Result<()> {
        self.cmd("links").map(drop)
    }

    /// Seeds the loop; returns the frames sent.
    pub fn seed(&mut self) -> anyhow::Result<u64> {
        let r = self.cmd("seed")?;
        r.trim_start_matches("ok ")
            .parse()
            .context("seed: frame count")
    }

    /// Stops forwarding until the next seed.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.cmd("pause").map(drop)
    }

    /// Cumulative counters.
    pub fn stats(&mut self) -> anyhow::Result<PeerStats> {
        let r = self.cmd("stats")?;
        PeerStats::parse(&r)
    }

    /// Stops the peer and waits for it.
    pub fn quit(mut self) -> anyhow::Result<()> {
        writeln!(self.stdin, "quit")?;
        self.stdin.flush()?;
        let end = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > end {
                bail!("memif-peer did not quit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(dpdk::runtime_dir(&self.prefix));
    }
}
