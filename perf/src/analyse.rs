//! The receiver: reads each frame's signature (see [`crate::gen`]) and counts what arrived: unique frames,
//! duplicates, reordering, frames that are not ours, bytes, and one-way latency into an HDR histogram.
//!
//! Sequence numbers are tracked in a sliding window of [`WINDOW`] bits: a frame more than that far behind the
//! newest one seen is counted as `late` (it cannot be told from a duplicate any more) and as received. Loss is
//! what was offered minus the unique frames received. Nothing is allocated per frame.

use crate::gen::{MAGIC, SEQ_MASK, SIG_LEN};
use hdrhistogram::Histogram;

/// Sequence numbers remembered for duplicate detection.
pub const WINDOW: u64 = 1 << 20;
/// Highest latency the histogram holds, in nanoseconds (larger values are clamped to it).
pub const MAX_LATENCY_NS: u64 = 4_000_000_000;
/// UDP port of VXLAN (RFC 7348): the receiver looks through it to the inner frame.
pub const VXLAN_PORT: u16 = 4789;

/// Finds the signature of a generated frame: the offset of the L4 payload, after any 802.1Q/802.1ad tags and
/// through VXLAN encapsulation. Returns the offset and whether the frame was VXLAN-encapsulated.
#[inline]
pub fn locate(f: &[u8]) -> Option<(usize, bool)> {
    let mut base = 0;
    let mut vxlan = false;
    loop {
        let mut off = base + 12;
        let mut et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
        while et == 0x8100 || et == 0x88a8 {
            off += 4;
            et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
        }
        if et != 0x0800 {
            return None;
        }
        let l3 = off + 2;
        let ihl = (*f.get(l3)? & 0x0f) as usize * 4;
        let l4 = l3 + ihl;
        let proto = *f.get(l3 + 9)?;
        let payload = match proto {
            17 => {
                let dport = u16::from_be_bytes([*f.get(l4 + 2)?, *f.get(l4 + 3)?]);
                if dport == VXLAN_PORT && !vxlan {
                    // UDP, VXLAN header (8), then the inner Ethernet frame.
                    base = l4 + 16;
                    vxlan = true;
                    continue;
                }
                l4 + 8
            }
            6 => l4 + ((*f.get(l4 + 12)? >> 4) as usize) * 4,
            1 => l4 + 8,
            _ => return None,
        };
        return (payload + SIG_LEN <= f.len()).then_some((payload, vxlan));
    }
}

/// A frame's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Trial number.
    pub epoch: u8,
    /// Sequence number.
    pub seq: u64,
    /// Send time's low 32 bits, nanoseconds.
    pub ts: u32,
}

/// Reads a signature, or `None` without the magic.
#[inline]
pub fn signature(s: &[u8]) -> Option<Signature> {
    let s = s.get(..SIG_LEN)?;
    if u16::from_be_bytes([s[0], s[1]]) != MAGIC {
        return None;
    }
    let mut seq = [0u8; 8];
    seq[3..8].copy_from_slice(&s[3..8]);
    Some(Signature {
        epoch: s[2],
        seq: u64::from_be_bytes(seq),
        ts: u32::from_be_bytes([s[8], s[9], s[10], s[11]]),
    })
}

/// What a receiver counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames with our signature (including duplicates).
    pub received: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Frames whose sequence number had been seen already.
    pub duplicates: u64,
    /// Frames that arrived after a frame with a higher sequence number.
    pub reordered: u64,
    /// Frames too far behind to check for duplicates (counted as unique).
    pub late: u64,
    /// Frames without our signature (ARP, IPv6 neighbour discovery, anything else on the wire).
    pub foreign: u64,
    /// Frames of another trial (stragglers of an earlier one), not counted otherwise.
    pub stale: u64,
    /// Bytes of the frames with our signature (without FCS).
    pub bytes: u64,
    /// Frames that came VXLAN-encapsulated.
    pub vxlan: u64,
    /// Highest sequence number seen.
    pub max_seq: u64,
}

/// The receiver's state for one trial.
pub struct Analyser {
    counts: Counts,
    /// Trial number of the frames counted (`None`: any).
    epoch: Option<u8>,
    /// Bit `s % WINDOW` says sequence `s` was seen, for `s` in `[base, base + WINDOW)`.
    bits: Vec<u64>,
    base: u64,
    any: bool,
    hist: Histogram<u64>,
    /// Receive time of the first and last frame, nanoseconds on the generator's clock.
    first_ns: u64,
    last_ns: u64,
}

impl Default for Analyser {
    fn default() -> Self {
        Analyser::new()
    }
}

impl Analyser {
    /// An empty receiver.
    pub fn new() -> Analyser {
        Analyser {
            counts: Counts::default(),
            epoch: None,
            bits: vec![0; (WINDOW / 64) as usize],
            base: 0,
            any: false,
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("histogram bounds are valid"),
            first_ns: 0,
            last_ns: 0,
        }
    }

    /// Forgets everything (a new trial); allocates nothing.
    pub fn reset(&mut self) {
        self.reset_for(None);
    }

    /// Forgets everything and counts only frames of trial `epoch` from now on (`None`: any).
    pub fn reset_for(&mut self, epoch: Option<u8>) {
        self.epoch = epoch;
        self.counts = Counts::default();
        self.bits.fill(0);
        self.base = 0;
        self.any = false;
        self.hist.reset();
        self.first_ns = 0;
        self.last_ns = 0;
    }

    /// What was counted.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// One-way latencies in nanoseconds.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// Nanoseconds between the first and the last frame received.
    pub fn rx_span_ns(&self) -> u64 {
        self.last_ns.saturating_sub(self.first_ns)
    }

    /// Counts frame `f`, received at `now_ns` on the generator's clock.
    #[inline]
    pub fn record(&mut self, f: &[u8], now_ns: u64) {
        let Some((sig, vxlan)) =
            locate(f).and_then(|(off, vx)| signature(&f[off..]).map(|s| (s, vx)))
        else {
            self.counts.foreign += 1;
            return;
        };
        if self.epoch.is_some_and(|e| e != sig.epoch) {
            self.counts.stale += 1;
            return;
        }
        let (seq, ts) = (sig.seq, sig.ts);
        self.counts.vxlan += vxlan as u64;
        let c = &mut self.counts;
        c.received += 1;
        c.bytes += f.len() as u64;
        if c.received == 1 {
            self.first_ns = now_ns;
        }
        self.last_ns = now_ns;
        let lat = (now_ns as u32).wrapping_sub(ts) as u64;
        let _ = self.hist.record(lat.clamp(1, MAX_LATENCY_NS));
        if !self.any {
            self.any = true;
            self.base = seq.saturating_sub(WINDOW / 2);
        }
        if seq < self.base {
            c.late += 1;
            c.unique += 1;
            c.reordered += 1;
            return;
        }
        if seq >= self.base + WINDOW {
            let new_base = seq + 1 - WINDOW;
            // Clear the bits of the sequence numbers leaving the window.
            if new_base - self.base >= WINDOW {
                self.bits.fill(0);
            } else {
                for s in self.base..new_base {
                    let b = (s % WINDOW) as usize;
                    self.bits[b / 64] &= !(1 << (b % 64));
                }
            }
            self.base = new_base;
        }
        let b = (seq % WINDOW) as usize;
        let (w, m) = (b / 64, 1u64 << (b % 64));
        if self.bits[w] & m != 0 {
            c.duplicates += 1;
            return;
        }
        self.bits[w] |= m;
        if c.unique > 0 && seq < c.max_seq {
            c.reordered += 1;
        }
        c.unique += 1;
        c.max_seq = c.max_seq.max(seq & SEQ_MASK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{Clock, Encap, Generator, Profile, Proto};

    fn gen() -> Generator {
        Generator::new(Profile::default(), 32, Clock::new()).unwrap()
    }

    #[test]
    fn counts_loss_duplicates_reordering_and_foreign_frames() {
        let g = gen();
        let mut a = Analyser::new();
        // 0..100 without 10 and 20; 30 twice; 50 after 51; an ARP frame.
        for s in (0..100u64).filter(|s| *s != 10 && *s != 20 && *s != 50) {
            a.record(&g.frame(s), 1000);
            if s == 30 {
                a.record(&g.frame(s), 1000);
            }
            if s == 51 {
                a.record(&g.frame(50), 1000);
            }
        }
        let mut arp = vec![0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        a.record(&arp, 1000);
        let c = a.counts();
        assert_eq!(c.received, 99);
        assert_eq!(c.unique, 98);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.reordered, 1);
        assert_eq!(c.foreign, 1);
        assert_eq!(c.late, 0);
        assert_eq!(c.max_seq, 99);
        a.reset();
        assert_eq!(a.counts(), Counts::default());
    }

    #[test]
    fn latency_is_receive_time_minus_stamp_across_the_32_bit_wrap() {
        let g = gen();
        let mut a = Analyser::new();
        let mut f = g.frame(0);
        let (off, _) = locate(&f).unwrap();
        f[off + 8..off + 12].copy_from_slice(&(u32::MAX - 499).to_be_bytes());
        // Received 1000 ns later, after the low 32 bits wrapped.
        a.record(&f, (1u64 << 32) + 500);
        let h = a.histogram();
        assert_eq!(h.len(), 1);
        assert!(h.equivalent(h.max(), 1000), "{}", h.max());
    }

    #[test]
    fn a_sliding_window_keeps_counting_far_beyond_its_size() {
        let g = gen();
        let f0 = g.frame(0);
        let mut a = Analyser::new();
        let (off, _) = locate(&f0).unwrap();
        let mut f = f0.clone();
        let n = 3 * WINDOW + 17;
        for s in 0..n {
            f[off + 3..off + 8].copy_from_slice(&s.to_be_bytes()[3..8]);
            a.record(&f, 0);
        }
        // A duplicate inside the window is caught; one far behind is late.
        f[off + 3..off + 8].copy_from_slice(&(n - 5).to_be_bytes()[3..8]);
        a.record(&f, 0);
        f[off + 3..off + 8].copy_from_slice(&5u64.to_be_bytes()[3..8]);
        a.record(&f, 0);
        let c = a.counts();
        assert_eq!(c.unique, n + 1);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.late, 1);
    }

    #[test]
    fn frames_of_another_trial_are_stale() {
        let mut g = gen();
        let old = g.frame(3);
        g.restart();
        let mut a = Analyser::new();
        a.reset_for(Some(g.epoch()));
        a.record(&old, 0);
        a.record(&g.frame(3), 0);
        let c = a.counts();
        assert_eq!((c.stale, c.received, c.unique), (1, 1, 1));
    }

    #[test]
    fn finds_the_signature_through_vlan_and_vxlan() {
        let p = Profile {
            encap: Encap::Vlan(7),
            proto: Proto::Tcp,
            ..Profile::default()
        };
        let g = Generator::new(p, 32, Clock::new()).unwrap();
        let inner = g.frame(42);
        // Wrap it by hand: outer Ethernet, IPv4, UDP to 4789, VXLAN header.
        let mut outer = vec![0u8; 14 + 20 + 8 + 8];
        outer[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        outer[14] = 0x45;
        outer[14 + 9] = 17;
        outer[34 + 2..34 + 4].copy_from_slice(&VXLAN_PORT.to_be_bytes());
        outer.extend_from_slice(&inner);
        let mut a = Analyser::new();
        a.record(&outer, 0);
        a.record(&inner, 0);
        let c = a.counts();
        assert_eq!((c.received, c.vxlan, c.duplicates), (2, 1, 1));
    }
}
