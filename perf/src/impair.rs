//! A port queue that damages traffic on purpose, to check the harness against a known truth: it wraps any
//! [`PortQueue`] and, on the receive side, drops a fraction of the frames (seeded, reproducible), polices
//! them to a packet rate (token bucket: above the rate, the excess is dropped), and/or holds each one back
//! for a fixed delay before handing it over. Transmit passes straight through.
//!
//! Rate and delay are reckoned from each frame's send time (its signature's timestamp, see [`crate::gen`]),
//! not from when the receiving thread happens to poll: a link that delays or polices on the wire, unmoved by
//! the receiver being descheduled for a moment on a busy machine. Frames without a signature use the time
//! they are received.
//!
//! Held frames wait in a FIFO of fixed capacity allocated up front; when it is full, the wrapper stops
//! reading the inner queue (which then overflows as a real one would). Nothing is allocated per frame.

use crate::analyse::{locate, signature};
use crate::gen::Clock;
use dataplane::{Burst, Pkt, PortQueue};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What to do to the frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Fraction of frames dropped at random (0 to 1).
    pub drop: f64,
    /// Most frames per second let through (token bucket); `None`: no limit.
    pub rate_pps: Option<f64>,
    /// Token bucket depth, in frames (what may pass at once above the rate).
    pub bucket: f64,
    /// Time each frame is held back.
    pub delay: Duration,
    /// Seed of the drop decisions.
    pub seed: u64,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            drop: 0.0,
            rate_pps: None,
            bucket: 64.0,
            delay: Duration::ZERO,
            seed: 1,
        }
    }
}

/// Frames an [`Impaired`] queue dropped, readable from any thread.
#[derive(Debug, Default)]
pub struct ImpairStats {
    /// Dropped at random.
    pub dropped: AtomicU64,
    /// Dropped by the rate limit.
    pub policed: AtomicU64,
}

/// Frames held back at most.
pub const HOLD: usize = 1 << 16;

/// The wrapper.
pub struct Impaired {
    inner: Box<dyn PortQueue>,
    imp: Impairment,
    clock: Clock,
    rng: u64,
    /// Drop when the next random 64-bit number is below this.
    drop_below: u64,
    tokens: f64,
    /// Send time of the last frame the bucket saw.
    last_ns: u64,
    held: VecDeque<(u64, Pkt)>,
    scratch: Burst,
    stats: Arc<ImpairStats>,
}

impl Impaired {
    /// Wraps `inner`; `clock` times the delay and the rate.
    pub fn new(inner: Box<dyn PortQueue>, imp: Impairment, clock: Clock) -> Impaired {
        Impaired {
            inner,
            imp,
            clock,
            rng: imp.seed | 1,
            drop_below: (imp.drop.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            tokens: imp.bucket,
            last_ns: clock.now_ns(),
            held: VecDeque::with_capacity(HOLD),
            scratch: Burst::new(dataplane::MAX_BURST),
            stats: Arc::default(),
        }
    }

    /// Its drop counters.
    pub fn stats(&self) -> Arc<ImpairStats> {
        self.stats.clone()
    }
}

/// xorshift64*: the next pseudo-random number of `state`.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl PortQueue for Impaired {
    fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let now = self.clock.now_ns();
        if HOLD - self.held.len() >= self.scratch.capacity() {
            self.inner.rx_burst(&mut self.scratch);
            let delay = self.imp.delay.as_nanos() as u64;
            let (mut dropped, mut policed) = (0, 0);
            for p in self.scratch.drain() {
                if self.drop_below > 0 && next_random(&mut self.rng) < self.drop_below {
                    dropped += 1;
                    continue;
                }
                // The full send time from the stamp's low 32 bits (it is less than 4 s old).
                let f = p.data();
                let sent = locate(f)
                    .and_then(|(off, _)| signature(&f[off..]))
                    .map_or(now, |s| now - (now as u32).wrapping_sub(s.ts) as u64);
                if let Some(rate) = self.imp.rate_pps {
                    let dt = sent.saturating_sub(self.last_ns) as f64 / 1e9;
                    self.last_ns = self.last_ns.max(sent);
                    self.tokens = (self.tokens + dt * rate).min(self.imp.bucket);
                    if self.tokens < 1.0 {
                        policed += 1;
                        continue;
                    }
                    self.tokens -= 1.0;
                }
                // Released in arrival order, at the send time plus the delay (never before it arrived).
                let release = (sent + delay).max(self.held.back().map_or(0, |h| h.0));
                self.held.push_back((release, p));
            }
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
            self.stats.policed.fetch_add(policed, Ordering::Relaxed);
        }
        let mut n = 0;
        while !burst.is_full() && self.held.front().is_some_and(|h| h.0 <= now) {
            let (_, p) = self.held.pop_front().expect("front exists");
            let _ = burst.push(p);
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        self.inner.tx_burst(burst)
    }
}
