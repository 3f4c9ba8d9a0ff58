//! Two NAT workers over ring ports, driven inline (no threads: the test polls each worker), for the handoff
//! tests: masquerade from `in` (10.0.0.0/24) to `up` (198.51.100.1), static neighbours on both sides.

use arc_swap::ArcSwap;
use dataplane::worker::{IdlePolicy, Worker, WorkerSpec};
use dataplane::{Burst, DropReason, Event, Pool, PoolConfig, Port, WorkerCounters};
use etherparse::PacketBuilder;
use pipelines::l3::neigh::NeighKey;
use pipelines::Snapshot;
use std::sync::Arc;

/// The router: the NAT tests' topology with two workers polled by hand.
pub fn config() -> String {
    super::nat_config::nat_ring_config(1024, 2, "poll", "")
}

pub const HOST: [u8; 4] = [10, 0, 0, 2];
pub const SERVER: [u8; 4] = [198, 51, 100, 2];
pub const EXT: [u8; 4] = [198, 51, 100, 1];
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 1];

/// Two workers over the config's ring ports, polled by hand. Fields drop in order: workers, then the
/// snapshot (its handoff queues), then the ports, then the pool.
pub struct Two {
    pub workers: Vec<Worker<Snapshot>>,
    pub counters: Vec<Arc<WorkerCounters>>,
    _snapshot: Arc<ArcSwap<Snapshot>>,
    pub opened: control::ports::OpenedPorts,
    pub pool: Pool,
    /// The router's MACs on `in` and `up`.
    pub macs: ([u8; 6], [u8; 6]),
}

impl Two {
    /// Both workers, the flow table empty.
    pub fn new() -> Two {
        let cfg = control::config::parse(&config(), "<test>").unwrap();
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
    pub fn inject(&self, port: &str, queue: u16, frame: &[u8]) {
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
    pub fn run(&mut self, peer: &str) -> Vec<Vec<u8>> {
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

    pub fn event(&self, w: usize, e: Event) -> u64 {
        self.counters[w].events.get(e)
    }

    /// Drops of `r`, both workers.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.counters.iter().map(|c| c.drops.get(r)).sum()
    }
}

/// A UDP frame from the peers' MAC to `dst_mac`.
pub fn udp(dst_mac: [u8; 6], s: ([u8; 4], u16), d: ([u8; 4], u16)) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, dst_mac)
        .ipv4(s.0, d.0, 64)
        .udp(s.1, d.1)
        .write(&mut f, b"payload!")
        .unwrap();
    f
}
