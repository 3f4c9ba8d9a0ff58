//! The DPDK backend against a real DPDK peer: `dpdk-testpmd` serves two `net_memif` interfaces in io-forward
//! mode, wharf connects to both as a memif client and cross-connects them. testpmd seeds the loop
//! (`start tx_first`), so frames circle testpmd → wharf → testpmd for a second; then both sides' counters are
//! compared.
//!
//! Needs `dpdk-testpmd` (Debian package `dpdk-dev`); in CI (CI=true) a missing testpmd fails the test, elsewhere it
//! is skipped with a SKIPPED line. No root: both EALs run without hugepages, and the memif socket lives in a
//! temporary directory removed at the end, with both EALs' runtime directories.
#![cfg(feature = "dpdk")]

use arc_swap::ArcSwap;
use dataplane::port::dpdk::{
    self, DpdkPool, DpdkPoolConfig, DpdkPort, DpdkPortConfig, Eal, EalConfig,
};
use dataplane::worker::{BurstCtx, Dataplane, IdlePolicy, Processor, TxBatches, WorkerSpec};
use dataplane::{Burst, Port};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Port 0 to port 1 and back.
struct Cross;

impl Processor for Cross {
    type State = ();
    fn generation(&self) -> u64 {
        1
    }
    fn new_state(&self, _worker: usize) {}
    fn process(&self, _st: &mut (), ctx: &BurstCtx, burst: &mut Burst, out: &mut TxBatches) {
        for p in burst.drain() {
            out.send(1 - ctx.in_port.min(1), p);
        }
    }
}

fn find_testpmd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("dpdk-testpmd"))
        .find(|p| p.is_file())
}

/// A `dpdk-testpmd` in interactive mode, driven through its stdin; its output goes to a file.
struct Testpmd {
    child: Child,
    log: PathBuf,
    prefix: String,
}

impl Testpmd {
    fn spawn(bin: &Path, cpu: usize, socket: &Path, log: PathBuf, prefix: &str) -> Testpmd {
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(["--lcores", &format!("0@{cpu},1@{cpu}")])
            .args(["--no-huge", "-m", "256", "--no-pci", "--no-telemetry"])
            .args(["--file-prefix", prefix]);
        for id in 0..2 {
            cmd.args([
                "--vdev",
                &format!(
                    "net_memif{id},role=server,socket={},socket-abstract=no,id={id}",
                    socket.display()
                ),
            ]);
        }
        cmd.args(["--", "-i", "--forward-mode=io", "--total-num-mbufs=8192"])
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        Testpmd {
            child: cmd.spawn().expect("dpdk-testpmd starts"),
            log,
            prefix: prefix.to_string(),
        }
    }

    fn cmd(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("testpmd stdin");
        writeln!(stdin, "{line}").expect("testpmd reads its stdin");
        stdin.flush().unwrap();
    }

    /// Quits and returns everything testpmd printed.
    fn quit(mut self) -> String {
        self.cmd("quit");
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "testpmd did not quit");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

/// `(RX-packets, TX-packets)` of testpmd's last "Accumulated forward statistics" block.
fn accumulated(log: &str) -> Option<(u64, u64)> {
    let at = log.rfind("Accumulated forward statistics")?;
    let num = |key: &str| -> Option<u64> {
        let rest = &log[at..];
        let i = rest.find(key)? + key.len();
        rest[i..].split_whitespace().next()?.parse().ok()
    };
    Some((num("RX-packets:")?, num("TX-packets:")?))
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn dpdk_testpmd_peer_over_memif() {
    let Some(testpmd) = find_testpmd() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("dpdk_testpmd_peer_over_memif: dpdk-testpmd (Debian package dpdk-dev) is missing, and in CI it must run");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED dpdk_testpmd_peer_over_memif: dpdk-testpmd (Debian package dpdk-dev) is not installed"
        );
        return;
    };
    let pid = std::process::id();
    let dir = TempDir(std::env::temp_dir().join(format!("wharf-memif-{pid}")));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let socket = dir.0.join("memif.sock");
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .map(|c| c.id)
        .collect();
    let (peer_cpu, our_cpu) = (
        cpus.first().copied().unwrap_or(0),
        cpus.last().copied().unwrap_or(0),
    );

    let mut peer = Testpmd::spawn(
        &testpmd,
        peer_cpu,
        &socket,
        dir.0.join("testpmd.log"),
        &format!("wharf-t-tpmd-{pid}"),
    );
    let cfg = EalConfig::no_huge(&format!("wharf-t-memif-{pid}"), 512);
    let eal = Eal::init(&cfg).expect("EAL without hugepages");
    let runtime = eal.runtime_dir();
    let _runtime_guard = TempDir(runtime.clone());
    let pool = DpdkPool::new(
        &eal,
        &DpdkPoolConfig {
            buffers: 8192,
            ..Default::default()
        },
    )
    .unwrap();
    // testpmd's memif server accepts an interface once its port is started; it says so before checking links.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() || !peer.log().contains("Checking link statuses") {
        assert!(
            Instant::now() < deadline,
            "no memif socket from testpmd:\n{}",
            peer.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let open = |id: u16| -> DpdkPort {
        let pcfg = DpdkPortConfig {
            device: format!(
                "net_memif_w{id},role=client,socket={},socket-abstract=no,id={id}",
                socket.display()
            ),
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match DpdkPort::open(&format!("m{id}"), &pcfg, &pool) {
                Ok(p) => return p,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "memif client {id}: {e}\ntestpmd said:\n{}",
                        peer.log()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    let m0 = Arc::new(open(0));
    let m1 = Arc::new(open(1));
    assert!(
        m0.wait_link(Duration::from_secs(10)) && m1.wait_link(Duration::from_secs(10)),
        "memif links up; testpmd said:\n{}",
        peer.log()
    );
    let dp = Dataplane::start(
        vec![m0.clone() as Arc<dyn Port>, m1.clone()],
        &[WorkerSpec {
            core: Some(our_cpu),
            burst_size: 32,
            idle: IdlePolicy::Poll,
        }],
        Arc::new(ArcSwap::from_pointee(Cross)),
    )
    .unwrap();

    peer.cmd("start tx_first 4");
    std::thread::sleep(Duration::from_secs(1));
    peer.cmd("stop");
    // What testpmd sent before it stopped comes back through wharf; let it settle.
    std::thread::sleep(Duration::from_millis(300));
    dp.stop();
    let (c0, c1) = (m0.counters(), m1.counters());
    let (our_rx, our_tx) = (c0.rx_packets + c1.rx_packets, c0.tx_packets + c1.tx_packets);
    // memif resets its counters when the peer goes: read DPDK's before testpmd quits.
    let dpdk_rx = m0.stats().ipackets + m1.stats().ipackets;
    let log = peer.quit();
    let (peer_rx, peer_tx) =
        accumulated(&log).unwrap_or_else(|| panic!("no forward statistics from testpmd:\n{log}"));
    eprintln!(
        "testpmd rx {peer_rx} tx {peer_tx}; wharf rx {our_rx} tx {our_tx}; m0 {c0:?} m1 {c1:?}"
    );
    assert!(
        peer_rx > 10_000 && our_rx > 10_000,
        "frames circled: testpmd rx {peer_rx}, wharf rx {our_rx}"
    );
    assert_eq!(our_tx, our_rx, "wharf forwarded everything it received");
    assert!(c0.drops.is_empty() && c1.drops.is_empty(), "{c0:?} {c1:?}");
    assert_eq!(dpdk_rx, our_rx, "DPDK's counters agree with wharf's");
    // Everything testpmd sent (its 4 x 32 seed bursts per port included) reached wharf; what wharf sent back
    // reached testpmd, less what arrived after testpmd's forwarding stopped (at most the frames in the loop).
    let in_loop = 2 * 4 * 32;
    assert!(
        our_rx <= peer_tx + in_loop && peer_tx <= our_rx + in_loop,
        "testpmd tx {peer_tx} vs wharf rx {our_rx}"
    );
    assert!(
        peer_rx <= our_tx && our_tx <= peer_rx + in_loop,
        "wharf tx {our_tx} vs testpmd rx {peer_rx}"
    );

    drop((m0, m1));
    assert_eq!(pool.available(), pool.capacity(), "every mbuf went home");
    drop(pool);
    eal.cleanup().expect("EAL cleanup");
    assert!(!runtime.exists());
    assert!(!socket.exists(), "testpmd removed its memif socket");
}
