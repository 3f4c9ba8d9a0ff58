//! One trial over real port queues: the [`Generator`] sends on one queue, paced to a rate or as fast as the
//! queue takes frames, while the same thread polls the other queue into the [`Analyser`]; after the sending
//! time, it keeps receiving until the last frames are in (or a quiet period passes). Sending and receiving on
//! one thread keeps the second core for the device under test on a 2-core machine, and both ends read one
//! clock. Implements [`Trial`] for the search.

use crate::analyse::Analyser;
use crate::gen::{Clock, Generator};
use crate::search::{Trial, TrialResult};
use dataplane::{Burst, Pool, PortQueue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set (by a signal handler, see [`stop_on_signals`]) to end the current trial with an error, so that a
/// scenario unwinds and removes its namespaces.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// SIGINT and SIGTERM set [`INTERRUPTED`]; a second one ends the process at once.
pub fn stop_on_signals() -> anyhow::Result<()> {
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, || INTERRUPTED.store(true, Ordering::Relaxed))?;
        }
    }
    Ok(())
}

/// Generator and receiver on two port queues.
pub struct PortTrial {
    /// The generator.
    pub gen: Generator,
    /// The receiver (its counts and latency histogram describe the last trial).
    pub rx: Analyser,
    tx_q: Box<dyn PortQueue>,
    rx_q: Box<dyn PortQueue>,
    pool: Pool,
    clock: Clock,
    burst: Burst,
    /// After sending, receive until this long passes without a frame.
    pub quiet: Duration,
    /// After sending, receive for at most this long.
    pub drain: Duration,
    /// Frames refused by the transmit queue in the last trial.
    pub refused: u64,
}

impl PortTrial {
    /// A trial sending `gen`'s frames (from `pool`) on `tx_q` and receiving on `rx_q`; `clock` must be the
    /// generator's.
    pub fn new(
        gen: Generator,
        tx_q: Box<dyn PortQueue>,
        rx_q: Box<dyn PortQueue>,
        pool: Pool,
        clock: Clock,
    ) -> PortTrial {
        PortTrial {
            gen,
            rx: Analyser::new(),
            tx_q,
            rx_q,
            pool,
            clock,
            burst: Burst::new(dataplane::MAX_BURST),
            quiet: Duration::from_millis(100),
            drain: Duration::from_secs(2),
            refused: 0,
        }
    }

    /// Receives and discards whatever is still arriving, until nothing has come for `quiet`.
    pub fn flush(&mut self, quiet: Duration) {
        let mut last = self.clock.now_ns();
        let limit = last + 5_000_000_000;
        loop {
            let now = self.clock.now_ns();
            if self.rx_q.rx_burst(&mut self.burst) > 0 {
                self.burst.clear();
                last = now;
            } else if now - last > quiet.as_nanos() as u64 || now > limit {
                return;
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Sends frames as they are, untimed and uncounted (e.g. learning frames for a bridge), from the transmit
    /// or the receive queue (`on_rx`: the reverse direction).
    pub fn send_raw(&mut self, frames: &[Vec<u8>], on_rx: bool) -> anyhow::Result<()> {
        for f in frames {
            let mut p = self
                .pool
                .alloc()
                .ok_or_else(|| anyhow::anyhow!("pool empty"))?;
            p.set_frame(f);
            let _ = self.burst.push(p);
            let q = if on_rx {
                &mut self.rx_q
            } else {
                &mut self.tx_q
            };
            q.tx_burst(&mut self.burst);
            self.burst.clear();
        }
        Ok(())
    }

    /// Receives frames as they are, uncounted, until nothing has come for `quiet` (at most 5 s): a scenario's
    /// [`Probe`](crate::scenario::Probe) looks at the headers the device wrote, which the receiver does not.
    pub fn receive_raw(&mut self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut last = self.clock.now_ns();
        let limit = last + 5_000_000_000;
        loop {
            let now = self.clock.now_ns();
            if self.rx_q.rx_burst(&mut self.burst) > 0 {
                got.extend(self.burst.iter().map(|p| p.data().to_vec()));
                self.burst.clear();
                last = now;
            } else if now - last > quiet.as_nanos() as u64 || now > limit {
                return got;
            } else {
                std::hint::spin_loop();
            }
        }
    }

    #[inline]
    fn poll(&mut self) -> usize {
        let n = self.rx_q.rx_burst(&mut self.burst);
        if n > 0 {
            let now = self.clock.now_ns();
            for p in self.burst.iter() {
                self.rx.record(p.data(), now);
            }
            self.burst.clear();
        }
        n
    }
}

impl Trial for PortTrial {
    fn run(&mut self, rate_pps: f64, secs: f64) -> anyhow::Result<TrialResult> {
        self.flush(Duration::from_millis(5));
        self.gen.restart();
        self.rx.reset_for(Some(self.gen.epoch()));
        let (mut offered, mut refused) = (0u64, 0u64);
        let t0 = self.clock.now_ns();
        let span = (secs * 1e9) as u64;
        let mut now = t0;
        while now - t0 < span {
            if INTERRUPTED.load(Ordering::Relaxed) {
                anyhow::bail!("interrupted");
            }
            // Behind the schedule (this thread was descheduled for a moment), the generator catches up in
            // back-to-back bursts: the trial keeps its average rate.
            let due = if rate_pps.is_finite() {
                ((now - t0) as f64 * rate_pps / 1e9) as u64 - offered
            } else {
                u64::MAX
            };
            if due > 0 {
                let s = self.gen.send(&mut *self.tx_q, &self.pool, due);
                offered += s.taken + s.refused;
                refused += s.refused;
            }
            self.poll();
            now = self.clock.now_ns();
        }
        let sent_secs = (now - t0) as f64 / 1e9;
        // Drain: until everything offered is in, or nothing came for `quiet`, or `drain` is over.
        let end = now;
        let mut last = now;
        while self.rx.counts().unique < offered {
            let now = self.clock.now_ns();
            if self.poll() > 0 {
                last = now;
            } else if now - last > self.quiet.as_nanos() as u64
                || now - end > self.drain.as_nanos() as u64
            {
                break;
            }
        }
        self.refused = refused;
        Ok(TrialResult {
            target_pps: rate_pps,
            offered,
            received: self.rx.counts().unique,
            secs: sent_secs,
        })
    }
}
