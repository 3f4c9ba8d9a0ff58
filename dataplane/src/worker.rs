//! Poll-mode workers: one thread per configured core, pinned, polling its queue of every port.
//!
//! The loop, per port: `rx_burst` → load the published snapshot once (lock-free, `arc-swap`) → run the
//! [`Processor`] over the whole burst → `tx_burst` the per-output-port batches. A burst therefore sees exactly
//! one snapshot: the old tables or the new ones, never a mix. A worker keeps the snapshot it last used
//! (`arc_swap::Cache`): a load is then one atomic read and a compare until a new one is published, and the
//! control thread, not a worker, frees the old one ([`Dataplane::publish`]). Idle workers back off with short
//! sleeps when [`IdlePolicy::Adaptive`] so an idle router does not burn a core; [`IdlePolicy::Poll`] spins for
//! benchmarks.
//!
//! Worker `w` owns queue `w` of every port, for rx and for tx: queues are never shared, so nothing locks.

use crate::burst::{Burst, MAX_BURST};
use crate::counters::{DropReason, WorkerCounters};
use crate::pkt::Pkt;
use crate::port::{Port, PortError, PortQueue};
use arc_swap::{ArcSwap, Cache};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Nanoseconds on a monotonic clock shared by every thread of the process (its epoch is the first call), so
/// timestamps written by one worker mean the same to another and to the control thread (aging, timeouts).
pub fn monotonic_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What the worker hands a [`Processor`] with each burst.
#[derive(Debug, Clone, Copy)]
pub struct BurstCtx {
    /// Worker index.
    pub worker: usize,
    /// The port the burst came from (index in the dataplane's port list).
    pub in_port: u16,
    /// [`monotonic_ns`], read every few poll rounds (for aging, timeouts and retries; microseconds stale at most).
    pub now_ns: u64,
}

/// The packet work, run on every received burst. Implemented by the pipelines' snapshot.
pub trait Processor: Send + Sync + 'static {
    /// Per-worker state that outlives snapshots (learned state, caches, scratch space).
    type State: Send + 'static;
    /// Identity of this snapshot (increases with every publication).
    fn generation(&self) -> u64;
    /// Creates worker `worker`'s state, once, at worker start.
    fn new_state(&self, worker: usize) -> Self::State;
    /// Processes `burst`. Every packet must end in `out`: sent to a port with [`TxBatches::send`] or dropped
    /// with a reason by [`TxBatches::drop_pkt`]. Packets left in `burst` are dropped and counted as `no_route`.
    fn process(
        &self,
        state: &mut Self::State,
        ctx: &BurstCtx,
        burst: &mut Burst,
        out: &mut TxBatches,
    );
    /// Whether `state` holds deferred work (packets waiting for a neighbour, announcements to send) that
    /// [`Processor::run_deferred`] should see even on a round with nothing received. Cheap: called every round.
    #[inline]
    fn has_deferred(&self, _state: &Self::State, _now_ns: u64) -> bool {
        false
    }
    /// Runs deferred work; what it sends is transmitted with the round's batches.
    fn run_deferred(&self, _state: &mut Self::State, _ctx: &BurstCtx, _out: &mut TxBatches) {}
}

/// Per-output-port batches of one worker, filled by the processor and flushed after each burst.
pub struct TxBatches {
    batches: Vec<Burst>,
    /// Packets a stage hands to a later stage of the same round instead of a port (see [`TxBatches::stage`]).
    staged: Burst,
    counters: Arc<WorkerCounters>,
}

impl TxBatches {
    fn new(ports: usize, counters: Arc<WorkerCounters>) -> TxBatches {
        TxBatches {
            batches: (0..ports).map(|_| Burst::new(MAX_BURST)).collect(),
            staged: Burst::new(MAX_BURST),
            counters,
        }
    }

    /// Hands `pkt` to a later stage of the same processor instead of a port: a stage deep in the graph (the
    /// bridge sending to a remote VTEP) cannot run the stage that must follow (VXLAN encapsulation and
    /// routing), so it parks the packet here and the processor drains it with [`TxBatches::swap_staged`]
    /// before returning. A full staging burst drops the packet as `tx_full`; what a processor leaves here is
    /// dropped as `no_route` when the batches are flushed.
    #[inline]
    pub fn stage(&mut self, pkt: Pkt) {
        if let Err(pkt) = self.staged.push(pkt) {
            self.drop_pkt(pkt, DropReason::TxFull);
        }
    }

    /// Packets staged by [`TxBatches::stage`] and not taken yet.
    #[inline]
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// Exchanges the staged packets with `with` (an empty burst the processor owns), without copying or
    /// allocating: the processor then works on them while stages can stage more.
    #[inline]
    pub fn swap_staged(&mut self, with: &mut Burst) {
        std::mem::swap(&mut self.staged, with);
    }

    /// Queues `pkt` for transmission on `port`. A port that does not exist or a full batch drops the packet
    /// and counts it. Always inlined: a few instructions, on every forwarded packet, whose call the compiler
    /// sometimes kept when the caller grew.
    #[inline(always)]
    pub fn send(&mut self, port: u16, pkt: Pkt) {
        match self.batches.get_mut(port as usize) {
            Some(b) => {
                if let Err(pkt) = b.push(pkt) {
                    self.drop_pkt(pkt, DropReason::TxFull);
                }
            }
            None => self.drop_pkt(pkt, DropReason::NoPort),
        }
    }

    /// Sends every packet of `burst` to `port` (what does not fit in its batch is dropped as `tx_full`), moving
    /// the handles at once rather than one [`TxBatches::send`] each.
    #[inline]
    pub fn send_all(&mut self, port: u16, burst: &mut Burst) {
        let reason = match self.batches.get_mut(port as usize) {
            Some(b) => {
                b.append_from(burst);
                DropReason::TxFull
            }
            None => DropReason::NoPort,
        };
        if !burst.is_empty() {
            self.counters.drops.add(reason, burst.len() as u64);
            burst.clear();
        }
    }

    /// Drops `pkt`, counting it under `reason`.
    #[inline]
    pub fn drop_pkt(&mut self, pkt: Pkt, reason: DropReason) {
        self.counters.drops.add(reason, 1);
        drop(pkt);
    }

    /// Counts `n` occurrences of a pipeline event.
    #[inline]
    pub fn count_event(&mut self, event: crate::counters::Event, n: u64) {
        self.counters.events.add(event, n);
    }

    /// Counts `n` drops of packets already freed by the caller.
    #[inline]
    pub fn count_drops(&mut self, reason: DropReason, n: u64) {
        self.counters.drops.add(reason, n);
    }

    /// Number of ports.
    pub fn ports(&self) -> usize {
        self.batches.len()
    }

    /// Packets queued for `port` (tests and debugging).
    pub fn pending(&self, port: u16) -> usize {
        self.batches.get(port as usize).map_or(0, Burst::len)
    }

    /// Takes the batch queued for `port` (tests drive processors without ports this way).
    pub fn take(&mut self, port: u16) -> Vec<Pkt> {
        self.batches
            .get_mut(port as usize)
            .map(|b| b.drain().collect())
            .unwrap_or_default()
    }

    /// A batch set for `ports` ports, for driving a processor in tests and benchmarks.
    pub fn for_test(ports: usize) -> (TxBatches, Arc<WorkerCounters>) {
        let c = Arc::new(WorkerCounters::default());
        (TxBatches::new(ports, c.clone()), c)
    }
}

/// What a worker does when its queues are empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin forever (lowest latency; burns the core). For benchmarks.
    Poll,
    /// After `after_polls` empty rounds, sleep, doubling from 1 µs up to `max_sleep`.
    Adaptive {
        /// Empty rounds before the first sleep.
        after_polls: u32,
        /// Longest sleep.
        max_sleep: Duration,
    },
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::Adaptive {
            after_polls: 1024,
            max_sleep: Duration::from_micros(50),
        }
    }
}

/// How to run one worker.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// Core to pin to (`None`: not pinned).
    pub core: Option<usize>,
    /// Burst size for rx (1..=256).
    pub burst_size: usize,
    /// Idle behaviour.
    pub idle: IdlePolicy,
}

/// What the control plane can see of a running worker.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// Worker index.
    pub id: usize,
    /// Core it was asked to pin to.
    pub core: Option<usize>,
    /// Whether pinning succeeded.
    pub pinned: bool,
    /// Its counters.
    pub counters: Arc<WorkerCounters>,
}

/// Transmit attempts on a full queue before the rest of a batch is dropped as `tx_full`.
const TX_RETRIES: u32 = 64;

/// A running set of workers over a set of ports, sharing one published snapshot.
pub struct Dataplane<P: Processor> {
    ports: Vec<Arc<dyn Port>>,
    snapshot: Arc<ArcSwap<P>>,
    /// The snapshot [`Dataplane::publish`] replaced, kept when a worker had not moved on from it in time, so
    /// that its last reference is dropped here at the next publication, not by a worker on its fast path.
    retired: std::sync::Mutex<Option<Arc<P>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    infos: Vec<WorkerInfo>,
}

impl<P: Processor> Dataplane<P> {
    /// Opens queue `w` of every port for worker `w` and starts the workers. Fails (starting nothing) if a
    /// port has fewer queues than there are workers or a queue cannot be opened.
    pub fn start(
        ports: Vec<Arc<dyn Port>>,
        specs: &[WorkerSpec],
        snapshot: Arc<ArcSwap<P>>,
    ) -> Result<Dataplane<P>, PortError> {
        // Open everything first so an error leaves nothing running.
        let mut per_worker = Vec::with_capacity(specs.len());
        for w in 0..specs.len() {
            let mut qs = Vec::with_capacity(ports.len());
            for p in &ports {
                qs.push(p.open_queue(w as u16)?);
            }
            per_worker.push(qs);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut infos = Vec::new();
        for (w, (spec, queues)) in specs.iter().zip(per_worker).enumerate() {
            let counters = Arc::new(WorkerCounters::default());
            let pinned = Arc::new(AtomicBool::new(false));
            let (tx_ready, rx_ready) = std::sync::mpsc::channel();
            let (spec2, snap2, stop2, counters2, pinned2) = (
                spec.clone(),
                snapshot.clone(),
                stop.clone(),
                counters.clone(),
                pinned.clone(),
            );
            let t = std::thread::Builder::new()
                .name(format!("wharf-w{w}"))
                .spawn(move || {
                    let mut worker = Worker::new(w, spec2, queues, snap2, counters2);
                    pinned2.store(worker.pin(), Ordering::Relaxed);
                    let _ = tx_ready.send(());
                    worker.run(&stop2);
                })
                .map_err(|e| PortError::Other {
                    port: "-".into(),
                    msg: format!("cannot spawn worker {w}: {e}"),
                })?;
            let _ = rx_ready.recv();
            infos.push(WorkerInfo {
                id: w,
                core: spec.core,
                pinned: pinned.load(Ordering::Relaxed),
                counters,
            });
            threads.push(t);
        }
        Ok(Dataplane {
            ports,
            snapshot,
            retired: std::sync::Mutex::new(None),
            stop,
            threads,
            infos,
        })
    }

    /// The ports, in index order.
    pub fn ports(&self) -> &[Arc<dyn Port>] {
        &self.ports
    }

    /// The workers.
    pub fn workers(&self) -> &[WorkerInfo] {
        &self.infos
    }

    /// The published snapshot cell, to load the current snapshot (publish with [`Dataplane::publish`]).
    pub fn snapshot(&self) -> &Arc<ArcSwap<P>> {
        &self.snapshot
    }

    /// Publishes `snap`: every burst that starts from now on sees it. Then waits, up to `grace`, until every
    /// worker has loaded the snapshot again (three rounds; see [`Dataplane::wait_quiescent`]) and frees the old
    /// snapshot on this thread: a worker holds the snapshot it last used until its next load, and would otherwise drop
    /// the last reference, freeing a large table between two bursts. If a worker did not move in time, the
    /// old snapshot is kept until the next publication. Returns whether every worker moved on.
    pub fn publish(&self, snap: Arc<P>, grace: Duration) -> bool {
        let old = self.snapshot.swap(snap);
        // Three counts: a round counts a burst before loading the snapshot for it and an empty round after its
        // load, so only three increments are sure to have a load between them, the one that drops the old.
        let moved = self.wait_rounds(3, grace);
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let previous = if moved {
            retired.take()
        } else {
            retired.replace(old)
        };
        drop(retired);
        // `old` (when the workers moved on) and an earlier retired snapshot go here, on this thread.
        drop(previous);
        moved
    }

    /// Waits until every worker has finished the poll round it was in when called (its round counter moved),
    /// so nothing a worker read before the call is still in use: a grace period, like RCU's quiescent
    /// states. The control thread calls it between publishing a table change and what must not happen before
    /// every worker saw it (inserting a route that needs the new adjacencies, reusing freed FIB groups).
    /// Returns false when a worker did not move within `timeout` (stopped or stuck).
    pub fn wait_quiescent(&self, timeout: Duration) -> bool {
        self.wait_rounds(1, timeout)
    }

    /// Waits until every worker's round counter has moved by `rounds` from now; false after `timeout`.
    fn wait_rounds(&self, rounds: u64, timeout: Duration) -> bool {
        let count = |w: &WorkerInfo| w.counters.bursts.get() + w.counters.empty_polls.get();
        let start: Vec<u64> = self.workers().iter().map(count).collect();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self
                .workers()
                .iter()
                .zip(&start)
                .all(|(w, s)| count(w).wrapping_sub(*s) >= rounds)
            {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Total drops by reason over all workers: `(name, count)`, non-zero only.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| {
                (
                    r.name(),
                    self.infos
                        .iter()
                        .map(|i| i.counters.drops.get(*r))
                        .sum::<u64>(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Asks the workers to stop and waits for them. Their queues close and every buffer they held goes home.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<P: Processor> Drop for Dataplane<P> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One worker's loop state: its queues, its snapshot cell, its counters and batches. [`Dataplane`] runs one per
/// thread; benchmarks and instruction counts drive one inline with [`Worker::poll_once`].
pub struct Worker<P: Processor> {
    id: usize,
    spec: WorkerSpec,
    queues: Vec<Box<dyn PortQueue>>,
    /// Whether each queue sets `Meta::in_port` itself ([`PortQueue::stamp_in_port`]).
    stamped: Vec<bool>,
    snapshot: Cache<Arc<ArcSwap<P>>, Arc<P>>,
    counters: Arc<WorkerCounters>,
    state: P::State,
    rx: Burst,
    out: TxBatches,
    empty_rounds: u32,
    sleep: Duration,
    /// The clock as last read ([`monotonic_ns`]), and the rounds since: see [`Worker::poll_once`].
    now_ns: u64,
    clock_age: u32,
}

/// Rounds that share one clock reading: a few microseconds of polling, tens when every round is busy.
const CLOCK_ROUNDS: u32 = 8;

impl<P: Processor> Worker<P> {
    /// A worker over `queues` (index = port number), running the snapshot published in `snapshot`.
    pub fn new(
        id: usize,
        spec: WorkerSpec,
        mut queues: Vec<Box<dyn PortQueue>>,
        snapshot: Arc<ArcSwap<P>>,
        counters: Arc<WorkerCounters>,
    ) -> Worker<P> {
        let stamped = queues
            .iter_mut()
            .enumerate()
            .map(|(port, q)| q.stamp_in_port(port as u16))
            .collect();
        let state = snapshot.load().new_state(id);
        let out = TxBatches::new(queues.len(), counters.clone());
        Worker {
            id,
            rx: Burst::new(spec.burst_size),
            spec,
            queues,
            stamped,
            snapshot: Cache::new(snapshot),
            counters,
            state,
            out,
            empty_rounds: 0,
            sleep: Duration::from_micros(1),
            now_ns: 0,
            clock_age: 0,
        }
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    fn pin(&self) -> bool {
        let Some(core) = self.spec.core else {
            return false;
        };
        let ok = core_affinity::set_for_current(core_affinity::CoreId { id: core });
        if !ok {
            tracing::warn!(
                worker = self.id,
                core,
                "could not pin worker to core; running unpinned"
            );
        }
        // Sleeps of a few microseconds need a small timer slack (the default is 50 µs).
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
        ok
    }

    /// One round over every port: receive a burst, process it against one snapshot, transmit the batches.
    /// Returns the number of packets received. Never sleeps.
    #[inline]
    pub fn poll_once(&mut self) -> usize {
        let c = &*self.counters;
        let mut got = 0;
        // One clock read every CLOCK_ROUNDS rounds (and after an idle sleep), for every burst and the deferred
        // work in between: on a VM clock_gettime costs tens of nanoseconds, and read every round it was 12% of
        // the cross-connect's own time over DPDK memif. What reads it wants seconds (timeouts, aging) or
        // milliseconds (resolution retries, ICMP rate), not microseconds.
        if self.clock_age == 0 {
            self.now_ns = monotonic_ns();
        }
        self.clock_age = (self.clock_age + 1) % CLOCK_ROUNDS;
        let now_ns = self.now_ns;
        for port in 0..self.queues.len() {
            let n = self.queues[port].rx_burst(&mut self.rx);
            if n == 0 {
                continue;
            }
            got += n;
            c.rx_packets.add(n as u64);
            c.bursts.inc();
            if !self.stamped[port] {
                for p in self.rx.iter_mut() {
                    p.meta_mut().in_port = port as u16;
                }
            }
            let ctx = BurstCtx {
                worker: self.id,
                in_port: port as u16,
                now_ns,
            };
            {
                // One snapshot for the whole burst.
                let snap = self.snapshot.load();
                c.snapshot_generation.set(snap.generation());
                snap.process(&mut self.state, &ctx, &mut self.rx, &mut self.out);
            }
            if !self.rx.is_empty() {
                c.drops.add(DropReason::NoRoute, self.rx.len() as u64);
                self.rx.clear();
            }
            flush(&mut self.queues, &mut self.out, c);
        }
        {
            let snap = self.snapshot.load();
            if snap.has_deferred(&self.state, now_ns) {
                let ctx = BurstCtx {
                    worker: self.id,
                    in_port: u16::MAX,
                    now_ns,
                };
                snap.run_deferred(&mut self.state, &ctx, &mut self.out);
                flush(&mut self.queues, &mut self.out, c);
            }
        }
        if got == 0 {
            c.empty_polls.inc();
        }
        got
    }

    /// Polls until `stop` is set, backing off when idle as the spec says.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if self.poll_once() > 0 {
                self.empty_rounds = 0;
                self.sleep = Duration::from_micros(1);
                continue;
            }
            match self.spec.idle {
                IdlePolicy::Adaptive {
                    after_polls,
                    max_sleep,
                } => {
                    self.empty_rounds = self.empty_rounds.saturating_add(1);
                    if self.empty_rounds >= after_polls {
                        self.counters.idle_sleeps.inc();
                        std::thread::sleep(self.sleep);
                        self.clock_age = 0;
                        self.sleep = (self.sleep * 2).min(max_sleep);
                    }
                }
                IdlePolicy::Poll => std::hint::spin_loop(),
            }
        }
    }
}

impl<P: Processor> Drop for Worker<P> {
    fn drop(&mut self) {
        // Anything still batched is dropped (and counted); queues close; this thread's cache goes home.
        for b in self.out.batches.iter_mut() {
            self.counters.drops.add(DropReason::TxError, b.len() as u64);
            b.clear();
        }
        self.rx.clear();
        self.queues.clear();
        crate::pool::flush_thread_cache();
    }
}

/// Transmits every non-empty batch, retrying a full queue a little before dropping the rest as `tx_full`.
#[inline]
fn flush(queues: &mut [Box<dyn PortQueue>], out: &mut TxBatches, c: &WorkerCounters) {
    if !out.staged.is_empty() {
        c.drops.add(DropReason::NoRoute, out.staged.len() as u64);
        out.staged.clear();
    }
    for (port, batch) in out.batches.iter_mut().enumerate() {
        if batch.is_empty() {
            continue;
        }
        let q = &mut queues[port];
        let mut tries = 0;
        while !batch.is_empty() {
            let n = q.tx_burst(batch);
            c.tx_packets.add(n as u64);
            if n == 0 {
                tries += 1;
                if tries >= TX_RETRIES {
                    c.drops.add(DropReason::TxFull, batch.len() as u64);
                    batch.clear();
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Pool, PoolConfig};
    use crate::port::ring::RingPort;

    /// Sends everything from port 0 to port 1 and back, stamping the generation into the first byte.
    struct Swap(u64);
    impl Processor for Swap {
        type State = u64;
        fn generation(&self) -> u64 {
            self.0
        }
        fn new_state(&self, _w: usize) -> u64 {
            0
        }
        fn process(&self, st: &mut u64, ctx: &BurstCtx, burst: &mut Burst, out: &mut TxBatches) {
            for mut p in burst.drain() {
                *st += 1;
                // Every packet carries its input port (the ring queues stamp it at rx).
                if p.meta().in_port != ctx.in_port {
                    out.drop_pkt(p, DropReason::Malformed);
                    continue;
                }
                if p.len() < 2 {
                    out.drop_pkt(p, DropReason::Truncated);
                    continue;
                }
                p.data_mut()[0] = self.0 as u8;
                out.send(1 - ctx.in_port, p);
            }
        }
    }

    #[test]
    fn forwards_between_ring_ports_and_counts_drops() {
        let pool = Pool::new(&PoolConfig {
            buffers: 256,
            data_room: 256,
            cache_size: 16,
            hugepages: false,
        })
        .unwrap();
        let (gen_a, a) = RingPort::pair("gen_a", "a", 1, 256);
        let (b, gen_b) = RingPort::pair("b", "gen_b", 1, 256);
        let snap = Arc::new(ArcSwap::from_pointee(Swap(7)));
        let dp = Dataplane::start(
            vec![a.clone() as Arc<dyn Port>, b.clone()],
            &[WorkerSpec {
                core: None,
                burst_size: 32,
                idle: IdlePolicy::default(),
            }],
            snap,
        )
        .unwrap();
        let mut ga = gen_a.open_queue(0).unwrap();
        let mut gb = gen_b.open_queue(0).unwrap();
        let mut burst = Burst::new(64);
        for i in 0..50u8 {
            let mut p = pool.alloc().unwrap();
            let frame = [0, i, 1, 2];
            p.set_frame(if i % 10 == 0 { &frame[..1] } else { &frame });
            burst.push(p).unwrap();
        }
        assert_eq!(ga.tx_burst(&mut burst), 50);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 45 && Instant::now() < deadline {
            gb.rx_burst(&mut burst);
            got.extend(burst.drain().map(|p| (p.data()[0], p.data()[1])));
        }
        assert_eq!(got.len(), 45);
        assert!(got.iter().all(|(g, _)| *g == 7));
        let want: Vec<u8> = (0..50u8).filter(|i| i % 10 != 0).collect();
        assert_eq!(got.iter().map(|(_, i)| *i).collect::<Vec<_>>(), want);
        let deadline = Instant::now() + Duration::from_secs(5);
        while dp.drops().is_empty() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(dp.drops(), vec![("truncated", 5)]);
        assert_eq!(dp.workers()[0].counters.rx_packets.get(), 50);
        dp.stop();
        drop((ga, gb, burst));
        crate::pool::flush_thread_cache();
        assert_eq!(pool.available(), 256);
    }

    #[test]
    fn send_all_fills_the_batch_and_counts_what_does_not_fit() {
        let pool = Pool::for_test(400, 64);
        let (mut out, counters) = TxBatches::for_test(2);
        let mut burst = Burst::new(MAX_BURST);
        assert_eq!(pool.alloc_into(&mut burst, 200), 200);
        out.send_all(1, &mut burst);
        assert!(burst.is_empty());
        assert_eq!(pool.alloc_into(&mut burst, 100), 100);
        out.send_all(1, &mut burst);
        assert!(burst.is_empty());
        assert_eq!(out.take(1).len(), MAX_BURST);
        assert_eq!(
            counters.drops.get(DropReason::TxFull),
            300 - MAX_BURST as u64
        );
        assert_eq!(pool.alloc_into(&mut burst, 3), 3);
        out.send_all(7, &mut burst);
        assert_eq!(counters.drops.get(DropReason::NoPort), 3);
        assert!(burst.is_empty());
    }

    /// A snapshot that records the thread that frees it.
    struct Tracked(
        u64,
        Arc<std::sync::Mutex<Vec<(u64, std::thread::ThreadId)>>>,
    );
    impl Drop for Tracked {
        fn drop(&mut self) {
            let me = std::thread::current().id();
            self.1.lock().unwrap().push((self.0, me));
        }
    }
    impl Processor for Tracked {
        type State = ();
        fn generation(&self) -> u64 {
            self.0
        }
        fn new_state(&self, _w: usize) {}
        fn process(&self, _: &mut (), _: &BurstCtx, burst: &mut Burst, _: &mut TxBatches) {
            burst.clear();
        }
    }

    #[test]
    fn publish_frees_the_old_snapshot_here_not_on_a_worker() {
        // A worker keeps the snapshot it last used until its next load: without the wait in `publish`, it
        // would hold the last reference and free the old tables itself.
        let freed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, _peer) = RingPort::pair("a", "peer", 2, 8);
        let spec = WorkerSpec {
            core: None,
            burst_size: 32,
            idle: IdlePolicy::Poll,
        };
        let dp = Dataplane::start(
            vec![a as Arc<dyn Port>],
            &[spec.clone(), spec],
            Arc::new(ArcSwap::from_pointee(Tracked(1, freed.clone()))),
        )
        .unwrap();
        let here = std::thread::current().id();
        for generation in 2..=20 {
            assert!(dp.publish(
                Arc::new(Tracked(generation, freed.clone())),
                Duration::from_secs(10)
            ));
            let log = freed.lock().unwrap();
            assert_eq!(
                log.last(),
                Some(&(generation - 1, here)),
                "generation {} freed on a worker or not at all: {log:?}",
                generation - 1
            );
        }
        dp.stop();
    }

    #[test]
    fn start_fails_cleanly_when_a_port_lacks_queues() {
        let (a, _b) = RingPort::pair("a", "b", 1, 8);
        let snap = Arc::new(ArcSwap::from_pointee(Swap(1)));
        let spec = WorkerSpec {
            core: None,
            burst_size: 32,
            idle: IdlePolicy::Poll,
        };
        let err = Dataplane::start(
            vec![a.clone() as Arc<dyn Port>],
            &[spec.clone(), spec],
            snap,
        )
        .err()
        .unwrap();
        assert!(
            matches!(err, PortError::NoSuchQueue { queue: 1, .. }),
            "{err}"
        );
        assert!(
            a.open_queue(0).is_ok(),
            "queue 0 released after the failed start"
        );
    }
}
