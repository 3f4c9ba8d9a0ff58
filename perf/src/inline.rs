//! A worker driven on the calling thread over the ring ports of a config: no threads, no clock in the loop,
//! so `valgrind --tool=callgrind` counts the same instructions for the same packet count every time.

use anyhow::Context;
use arc_swap::ArcSwap;
use control::ports::OpenedPorts;
use dataplane::worker::{IdlePolicy, Worker, WorkerSpec};
use dataplane::{Pool, PoolConfig, WorkerCounters};
use pipelines::Snapshot;
use std::sync::Arc;

/// The router's pieces without its threads.
pub struct Inline {
    pool: Pool,
    opened: OpenedPorts,
    snapshot: Arc<ArcSwap<Snapshot>>,
    worker: Worker<Snapshot>,
    counters: Arc<WorkerCounters>,
}

impl Inline {
    /// Opens `config_text`'s ports (one queue each) and compiles its snapshot, with `buffers` packet buffers.
    pub fn new(config_text: &str, burst: usize, buffers: u32) -> anyhow::Result<Inline> {
        let cfg = control::config::parse(config_text, "<inline>")?;
        let pool = Pool::new(&PoolConfig {
            buffers,
            hugepages: false,
            ..Default::default()
        })?;
        let opened = control::ports::open_ports(&cfg, &pool, 1)?;
        let snap = control::compile::compile(&cfg, 1, Default::default())
            .map_err(|e| anyhow::anyhow!(e))?;
        let snapshot = Arc::new(ArcSwap::from_pointee(snap));
        let queues = opened
            .ports
            .iter()
            .map(|p| p.open_queue(0))
            .collect::<Result<Vec<_>, _>>()?;
        let counters = Arc::new(WorkerCounters::default());
        let spec = WorkerSpec {
            core: None,
            burst_size: burst,
            idle: IdlePolicy::Poll,
        };
        let worker = Worker::new(0, spec, queues, snapshot.clone(), counters.clone());
        Ok(Inline {
            pool,
            opened,
            snapshot,
            worker,
            counters,
        })
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

    /// Polls until `packets` packets were received; returns (packets, drops).
    pub fn run(&mut self, packets: u64) -> (u64, u64) {
        while self.counters.rx_packets.get() < packets {
            self.worker.poll_once();
        }
        (self.counters.rx_packets.get(), self.counters.drops.total())
    }
}
