//! `Burst`: a fixed-capacity vector of packets, the unit every stage and every port works on.
//!
//! Up to [`MAX_BURST`] packets, [`DEFAULT_BURST`] by default (DPDK's and VPP's sizes). Storage is inline, so a
//! burst never allocates; dropping a burst (or clearing it) frees its packets.

use crate::pkt::Pkt;
use arrayvec::ArrayVec;

/// Largest burst.
pub const MAX_BURST: usize = 256;
/// Default burst size.
pub const DEFAULT_BURST: usize = 32;

/// A vector of at most `capacity()` packets.
pub struct Burst {
    pkts: ArrayVec<Pkt, MAX_BURST>,
    cap: usize,
}

impl Default for Burst {
    fn default() -> Self {
        Burst::new(DEFAULT_BURST)
    }
}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst")
            .field("len", &self.len())
            .field("cap", &self.cap)
            .finish()
    }
}

impl Burst {
    /// An empty burst holding at most `cap` packets (clamped to 1..=MAX_BURST).
    pub fn new(cap: usize) -> Burst {
        Burst {
            pkts: ArrayVec::new(),
            cap: cap.clamp(1, MAX_BURST),
        }
    }

    /// Packets in the burst.
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// The most packets this burst takes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Free slots.
    #[inline]
    pub fn room(&self) -> usize {
        self.cap - self.pkts.len()
    }

    /// True when no more packets fit.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.pkts.len() >= self.cap
    }

    /// Appends a packet, or gives it back when full.
    #[inline]
    pub fn push(&mut self, pkt: Pkt) -> Result<(), Pkt> {
        if self.is_full() {
            return Err(pkt);
        }
        self.pkts.push(pkt);
        Ok(())
    }

    /// Removes the last packet.
    #[inline]
    pub fn pop(&mut self) -> Option<Pkt> {
        self.pkts.pop()
    }

    /// The packets.
    #[inline]
    pub fn as_slice(&self) -> &[Pkt] {
        &self.pkts
    }

    /// The packets, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Pkt] {
        &mut self.pkts
    }

    /// Iterates over the packets.
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Pkt> {
        self.pkts.iter()
    }

    /// Iterates over the packets, writable.
    #[inline]
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Pkt> {
        self.pkts.iter_mut()
    }

    /// Takes all packets out, in order, leaving the burst empty.
    #[inline]
    pub fn drain(&mut self) -> arrayvec::Drain<'_, Pkt, MAX_BURST> {
        self.pkts.drain(..)
    }

    /// Removes the first `n` packets (or all, if fewer), in order.
    #[inline]
    pub fn drain_front(&mut self, n: usize) -> arrayvec::Drain<'_, Pkt, MAX_BURST> {
        let n = n.min(self.pkts.len());
        self.pkts.drain(..n)
    }

    /// Keeps the packets for which `f` is true; the others are dropped (freed).
    #[inline]
    pub fn retain(&mut self, mut f: impl FnMut(&mut Pkt) -> bool) {
        self.pkts.retain(|p| f(p))
    }

    /// Gives every packet, in order and with its position, to `f`: the packets `f` gives back stay in the
    /// burst, in order; the others are `f`'s. One pass, in place (draining into a second burst and back
    /// costs a bounds-checked push per packet). Should `f` panic, the packets it was not given are dropped.
    #[inline]
    pub fn sift(&mut self, mut f: impl FnMut(usize, Pkt) -> Option<Pkt>) {
        /// The burst being sifted: `[0, kept)` holds what stays, `[next, len)` what `f` was not given yet.
        struct Sifting<'a> {
            pkts: &'a mut ArrayVec<Pkt, MAX_BURST>,
            len: usize,
            next: usize,
            kept: usize,
        }
        impl Drop for Sifting<'_> {
            fn drop(&mut self) {
                let base = self.pkts.as_mut_ptr();
                while self.next < self.len {
                    let i = self.next;
                    self.next += 1;
                    // SAFETY: `i < len` was not read yet (see `sift`): a live packet, dropped once.
                    unsafe { base.add(i).drop_in_place() };
                }
                // SAFETY: `[0, kept)` holds the packets that stay, each written once; the rest was moved out.
                unsafe { self.pkts.set_len(self.kept) };
            }
        }
        let len = self.pkts.len();
        // SAFETY: the length is 0 while packets are moved, so nothing is dropped twice should `f` panic; the
        // guard sets it back to what stays.
        unsafe { self.pkts.set_len(0) };
        let mut s = Sifting {
            pkts: &mut self.pkts,
            len,
            next: 0,
            kept: 0,
        };
        let base = s.pkts.as_mut_ptr();
        while s.next < s.len {
            let i = s.next;
            // SAFETY: `i < len <= capacity` was not read yet: a live packet; `next` moves past it before `f`
            // runs, so the guard will not drop it too.
            let p = unsafe { base.add(i).read() };
            s.next += 1;
            if let Some(p) = f(i, p) {
                // SAFETY: `kept <= i`: a slot whose packet was already moved out (or this one's own).
                unsafe { base.add(s.kept).write(p) };
                s.kept += 1;
            }
        }
    }

    /// Drops (frees) every packet.
    #[inline]
    pub fn clear(&mut self) {
        self.pkts.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{flush_thread_cache, Pool, PoolConfig};

    #[test]
    fn capacity_is_clamped_and_enforced() {
        assert_eq!(Burst::new(0).capacity(), 1);
        assert_eq!(Burst::new(10_000).capacity(), MAX_BURST);
        let pool = Pool::new(&PoolConfig {
            buffers: 8,
            data_room: 128,
            cache_size: 0,
            hugepages: false,
        })
        .unwrap();
        let mut b = Burst::new(2);
        assert_eq!(pool.alloc_into(&mut b, 5), 2);
        assert!(b.is_full());
        let extra = pool.alloc().unwrap();
        assert!(b.push(extra).is_err());
        b.clear();
        flush_thread_cache();
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn sift_keeps_what_is_given_back_in_order_and_hands_out_the_rest() {
        let pool = Pool::new(&PoolConfig {
            buffers: 16,
            data_room: 128,
            cache_size: 0,
            hugepages: false,
        })
        .unwrap();
        let mut b = Burst::new(16);
        for i in 0..10u8 {
            let mut p = pool.alloc().unwrap();
            p.set_frame(&[i]);
            b.push(p).unwrap();
        }
        let mut taken = Vec::new();
        b.sift(|i, p| {
            assert_eq!(p.data()[0] as usize, i, "position");
            if i % 3 == 0 {
                taken.push(p.data()[0]);
                None
            } else {
                Some(p)
            }
        });
        assert_eq!(taken, vec![0, 3, 6, 9]);
        let kept: Vec<u8> = b.iter().map(|p| p.data()[0]).collect();
        assert_eq!(kept, vec![1, 2, 4, 5, 7, 8]);
        // The taken ones were dropped by the closure; nothing leaked, nothing freed twice.
        assert_eq!(pool.available(), 16 - 6);
        b.sift(|_, _| None);
        assert!(b.is_empty());
        assert_eq!(pool.available(), 16);
    }

    #[test]
    fn sift_drops_what_it_did_not_reach_when_the_closure_panics() {
        let pool = Pool::new(&PoolConfig {
            buffers: 8,
            data_room: 128,
            cache_size: 0,
            hugepages: false,
        })
        .unwrap();
        let mut b = Burst::new(8);
        pool.alloc_into(&mut b, 6);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            b.sift(|i, p| if i == 3 { panic!("at 3") } else { Some(p) })
        }));
        assert!(r.is_err());
        assert_eq!(b.len(), 3, "the three before the panic stay");
        drop(b);
        assert_eq!(pool.available(), 8, "the rest were dropped once");
    }

    #[test]
    fn drain_front_keeps_order() {
        let pool = Pool::new(&PoolConfig {
            buffers: 8,
            data_room: 128,
            cache_size: 0,
            hugepages: false,
        })
        .unwrap();
        let mut b = Burst::new(8);
        for i in 0..4u8 {
            let mut p = pool.alloc().unwrap();
            p.set_frame(&[i]);
            b.push(p).unwrap();
        }
        let first: Vec<u8> = b.drain_front(3).map(|p| p.data()[0]).collect();
        assert_eq!(first, vec![0, 1, 2]);
        assert_eq!(b.as_slice()[0].data(), &[3]);
    }
}
