//! A worker driven on the calling thread over the ring ports of a config: no threads, no clock in the loop,
//! so `valgrind --tool=callgrind` counts the same instructions for the same packet count every time. With
//! several workers ([`Inline::with_workers`]), each has its queue of every port and they are polled in turn on
//! this thread: what the pipelines do between workers (handoffs) is counted, parallelism is not.

use anyhow::Context;
use arc_swap::ArcSwap;
use control::ports::OpenedPorts;
use dataplane::port::ring::RingPort;
use dataplane::worker::{IdlePolicy, Worker, WorkerSpec};
use dataplane::{Pool, PoolConfig, WorkerCounters};
use pipelines::Snapshot;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The router's pieces without its threads.
///
/// Fields drop in declaration order: the workers and the snapshot (whose queues may hold packets) and the
/// ports before the pool the packets go home to.
pub struct Inline {
    workers: Vec<Worker<Snapshot>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    opened: OpenedPorts,
    counters: Vec<Arc<WorkerCounters>>,
    pool: Pool,
    /// How long `control::compile::compile` took (the FIB builds are in it).
    pub compile_time: Duration,
}

impl Inline {
    /// Opens `config_text`'s ports (one queue each) and compiles its snapshot, with `buffers` packet buffers.
    pub fn new(config_text: &str, burst: usize, buffers: u32) -> anyhow::Result<Inline> {
        let cfg = control::config::parse(config_text, "<inline>")?;
        Inline::from_config(&cfg, burst, buffers)
    }

    /// The same from a config already parsed (and possibly extended in code, e.g. with a large route table).
    pub fn from_config(
        cfg: &control::config::Config,
        burst: usize,
        buffers: u32,
    ) -> anyhow::Result<Inline> {
        Inline::with_workers(cfg, burst, buffers, 1)
    }

    /// The same with `workers` workers (the config should say as many), each on queue `i` of every port.
    pub fn with_workers(
        cfg: &control::config::Config,
        burst: usize,
        buffers: u32,
        workers: usize,
    ) -> anyhow::Result<Inline> {
        let n = workers.max(1);
        let pool = Pool::new(&PoolConfig {
            buffers,
            hugepages: false,
            ..Default::default()
        })?;
        let opened = control::ports::open_ports(cfg, &pool, n as u16)?;
        let t0 = Instant::now();
        // The ports' steering too: the NAT steers masquerade answers by it, as in the router.
        let facts = control::compile::PortFacts::of(&opened.ports);
        let snap =
            control::compile::compile(cfg, 1, facts.env()).map_err(|e| anyhow::anyhow!(e))?;
        let compile_time = t0.elapsed();
        let snapshot = Arc::new(ArcSwap::from_pointee(snap));
        let mut workers_v = Vec::with_capacity(n);
        let mut counters = Vec::with_capacity(n);
        for w in 0..n {
            let queues = opened
                .ports
                .iter()
                .map(|p| p.open_queue(w as u16))
                .collect::<Result<Vec<_>, _>>()?;
            let c = Arc::new(WorkerCounters::default());
            let spec = WorkerSpec {
                core: None,
                burst_size: burst,
                idle: IdlePolicy::Poll,
            };
            workers_v.push(Worker::new(w, spec, queues, snapshot.clone(), c.clone()));
            counters.push(c);
        }
        Ok(Inline {
            pool,
            opened,
            snapshot,
            workers: workers_v,
            counters,
            compile_time,
        })
    }

    /// The packet pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Worker 0's counters (the only worker's, unless [`Inline::with_workers`] made more).
    pub fn counters(&self) -> &WorkerCounters {
        &self.counters[0]
    }

    /// Every worker's counters.
    pub fn all_counters(&self) -> &[Arc<WorkerCounters>] {
        &self.counters
    }

    /// Packets received by every worker since they started.
    pub fn rx_total(&self) -> u64 {
        self.counters.iter().map(|c| c.rx_packets.get()).sum()
    }

    /// The router's ring port `name` (to inject frames into its receive queue).
    pub fn ring_port(&self, name: &str) -> Option<Arc<RingPort>> {
        self.opened.ring_port(name)
    }

    /// The far end of a ring port, by its `peer` name (receives what the router sends out of that port).
    pub fn ring_peer(&self, name: &str) -> Option<Arc<RingPort>> {
        self.opened.ring_peers.get(name).cloned()
    }

    /// The published snapshot (to pre-load learned state).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Puts `frames` on ring port `port`'s receive queue, as if its peer had sent them.
    pub fn seed(
        &self,
        port: &str,
        frames: impl IntoIterator<Item = Vec<u8>>,
    ) -> anyhow::Result<()> {
        let ring = self
            .opened
            .ring_port(port)
            .with_context(|| format!("ring port {port}"))?;
        for f in frames {
            let mut p = self.pool.alloc().context("pool empty while seeding")?;
            p.set_frame(&f);
            ring.inject(0, p)
                .map_err(|_| anyhow::anyhow!("ring full while seeding"))?;
        }
        Ok(())
    }

    /// Polls until the worker has received `rx_total` packets since it started. Never inlined, so that
    /// `callgrind --toggle-collect='*Inline::poll_until*'` counts the worker's instructions alone when a bench
    /// does other work (refilling the receive ring) between calls.
    #[inline(never)]
    pub fn poll_until(&mut self, rx_total: u64) {
        if let [worker] = self.workers.as_mut_slice() {
            while self.counters[0].rx_packets.get() < rx_total {
                worker.poll_once();
            }
            return;
        }
        while self.rx_total() < rx_total {
            for w in &mut self.workers {
                w.poll_once();
            }
        }
    }

    /// Packets transmitted by every worker since they started.
    pub fn tx_total(&self) -> u64 {
        self.counters.iter().map(|c| c.tx_packets.get()).sum()
    }

    /// Polls every worker in turn until they have transmitted `tx_total` packets since they started, or
    /// `max_idle` rounds in a row sent nothing (then false). Unlike [`Inline::poll_until`], packets one worker
    /// hands to another are waited for. Never inlined, for callgrind's `--toggle-collect`.
    #[inline(never)]
    pub fn poll_until_tx(&mut self, tx_total: u64, max_idle: usize) -> bool {
        let mut idle = 0;
        while self.tx_total() < tx_total {
            let before = self.tx_total();
            for w in &mut self.workers {
                w.poll_once();
            }
            if self.tx_total() == before {
                idle += 1;
                if idle >= max_idle {
                    return false;
                }
            } else {
                idle = 0;
            }
        }
        true
    }

    /// `runs` timed runs of `packets` packets each (after one untimed warm-up run when `runs` > 1), printed as
    /// Mpps and ns/packet under `name`; returns the median Mpps (0 without runs).
    pub fn timed_runs(&mut self, name: &str, packets: u64, runs: usize) -> f64 {
        if runs > 1 {
            let warm = self.rx_total() + packets;
            self.poll_until(warm);
        }
        let mut mpps = Vec::with_capacity(runs);
        for run in 1..=runs {
            let start = self.rx_total();
            let t0 = Instant::now();
            self.poll_until(start + packets);
            let n = self.rx_total() - start;
            let r = n as f64 / t0.elapsed().as_secs_f64() / 1e6;
            println!("{name} run {run}: {r:.2} Mpps ({:.1} ns/packet)", 1e3 / r);
            mpps.push(r);
        }
        crate::median(&mut mpps)
    }
}
