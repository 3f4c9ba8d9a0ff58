//! The NAT handoff between two workers, driven inline (no threads: each worker polled by the test): an answer
//! of a masqueraded flow that reaches the worker not owning it is handed over untouched, in the L3 stage's
//! first pass, and leaves exactly as it would have had it reached the owner; a handed packet is still checked
//! by the owner (what the first worker skipped is not skipped altogether).

use arc_swap::ArcSwap;
use dataplane::worker::{IdlePolicy, Worker, WorkerSpec};
use dataplane::{Burst, DropReason, Event, Pool, PoolConfig, Port, WorkerCounters};
use etherparse::PacketBuilder;
use pipelines::l3::neigh::NeighKey;
use pipelines::Snapshot;
use std::sync::Arc;

const CONFIG: &str = r#"
[dataplane]
buffers = 1024
workers = 2
idle = "poll"

[[ports]]
name = "in"
backend = "ring"
peer = "gen_in"
addresses = ["10.0.0.1/24"]

[[ports]]
name = "up"
backend = "ring"
peer = "gen_up"
addresses = ["198.51.100.1/24"]

[nat]
outside = "up"
masquerade = ["in"]
"#;

const HOST: [u8; 4] = [10, 0, 0, 2];
const SERVER: [u8; 4] = [198, 51, 100, 2];
const EXT: [u8; 4] = [198, 51, 100, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 1];

/// Two workers over the config's ring ports, polled by hand. Fields drop in order: workers, then the
/// snapshot (its handoff queues), then the ports, then the pool.
struct Two {
    workers: Vec<Worker<Snapshot>>,
    counters: Vec<Arc<WorkerCounters>>,
    _snapshot: Arc<ArcSwap<Snapshot>>,
    opened: control::ports::OpenedPorts,
    pool: Pool,
    macs: ([u8; 6], [u8; 6]),
}

impl Two {
    fn new() -> Two {
        let cfg = control::config::parse(CONFIG, "<test>").unwrap();
        let pool = Pool::new(&PoolConfig {
            buffers: 1024,
            hugepages: false,
            ..Default::default()
        })
        .unwrap();
        let opened = control::ports::open_ports(&cfg, &pool, 2).unwrap();
        let snap = control::compile::compile(&cfg, 1, Default::default()).unwrap();
        let snapshot = Arc::new(ArcSwap::from_pointee(snap));
        let (mut workers, mut counters) = (Vec::new(), Vec::new());
        for w in 0..2 {
            let queues = opened
                .ports
                .iter()
                .map(|p| p.open_queue(w as u16).unwrap())
                .collect();
            let c = Arc::new(WorkerCounters::default());
            let spec = WorkerSpec {
                core: None,
                burst_size: 32,
                idle: IdlePolicy::Poll,
            };
            workers.push(Worker::new(w, spec, queues, snapshot.clone(), c.clone()));
            counters.push(c);
        }
        let macs = {
            let s = snapshot.load();
            let l3 = &s.l3;
            let idx = |n: &str| l3.ifaces.iter().position(|i| i.name == n).unwrap();
            let (i, u) = (idx("in"), idx("up"));
            let k = |iface: usize, ip: [u8; 4]| NeighKey::v4(iface as u16, u32::from_be_bytes(ip));
            assert!(l3.neigh.set_static(&k(i, HOST), &PEER_MAC));
            assert!(l3.neigh.set_static(&k(u, SERVER), &PEER_MAC));
            (l3.ifaces[i].mac, l3.ifaces[u].mac)
        };
        Two {
            workers,
            counters,
            _snapshot: snapshot,
            opened,
            pool,
            macs,
        }
    }

    /// Puts `frame` on port `port`'s receive queue `queue` (the queue of worker `queue`).
    fn inject(&self, port: &str, queue: u16, frame: &[u8]) {
        let mut p = self.pool.alloc().unwrap();
        assert!(p.set_frame(frame));
        assert!(self
            .opened
            .ring_port(port)
            .unwrap()
            .inject(queue, p)
            .is_ok());
    }

    /// Polls both workers a few rounds, then takes every frame that left through `peer`'s side.
    fn run(&mut self, peer: &str) -> Vec<Vec<u8>> {
        for _ in 0..4 {
            for w in &mut self.workers {
                w.poll_once();
            }
        }
        let far = self.opened.ring_peers.get(peer).unwrap().clone();
        let mut got = Vec::new();
        let mut b = Burst::new(256);
        for q in 0..2 {
            let mut rx = far.open_queue(q).unwrap();
            while rx.rx_burst(&mut b) > 0 {
                got.extend(b.drain().map(|p| p.data().to_vec()));
            }
        }
        got
    }

    fn event(&self, w: usize, e: Event) -> u64 {
        self.counters[w].events.get(e)
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.counters.iter().map(|c| c.drops.get(r)).sum()
    }
}

fn udp(dst_mac: [u8; 6], s: ([u8; 4], u16), d: ([u8; 4], u16)) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, dst_mac)
        .ipv4(s.0, d.0, 64)
        .udp(s.1, d.1)
        .write(&mut f, b"payload!")
        .unwrap();
    f
}

#[test]
fn an_answer_handed_to_its_owner_leaves_as_if_it_had_reached_it() {
    let mut two = Two::new();
    let (in_mac, up_mac) = two.macs;
    // A flow from inside, on worker 0: its external port is from worker 0's slice.
    two.inject("in", 0, &udp(in_mac, (HOST, 5000), (SERVER, 53)));
    let out = two.run("gen_up");
    assert_eq!(out.len(), 1, "translated out");
    assert_eq!(out[0][26..30], EXT);
    let port = u16::from_be_bytes([out[0][34], out[0][35]]);
    let answer = udp(up_mac, (SERVER, 53), (EXT, port));

    // The answer on the owner.
    two.inject("up", 0, &answer);
    let direct = two.run("gen_in");
    assert_eq!(direct.len(), 1);
    assert_eq!(direct[0][30..34], HOST);
    assert_eq!(two.event(1, Event::NatHandoff), 0);

    // The same answer on worker 1: handed over, and the same frame leaves.
    two.inject("up", 1, &answer);
    let handed = two.run("gen_in");
    assert_eq!(two.event(1, Event::NatHandoff), 1, "worker 1 handed it");
    assert_eq!(handed, direct, "byte for byte");

    // A burst of them, some on each worker: every one leaves, in order, none dropped.
    for i in 0..40u16 {
        let mut a = answer.clone();
        a[42] = i as u8; // payload only: the UDP checksum is not checked by the router
        two.inject("up", i % 2, &a);
    }
    let many = two.run("gen_in");
    assert_eq!(many.len(), 40);
    let order: Vec<u8> = many
        .iter()
        .filter(|f| f[42] % 2 == 1)
        .map(|f| f[42])
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(two.event(1, Event::NatHandoff), 21);
    assert_eq!(two.drops(DropReason::NatHandoffDrop), 0);

    // A handed packet is checked by its owner: a bad IPv4 header checksum is dropped there, not forwarded.
    let mut bad = answer.clone();
    bad[24] ^= 0x55;
    two.inject("up", 1, &bad);
    assert!(two.run("gen_in").is_empty());
    assert_eq!(
        two.event(1, Event::NatHandoff),
        22,
        "handed before any check"
    );
    assert_eq!(two.counters[0].drops.get(DropReason::BadChecksum), 1);
}
