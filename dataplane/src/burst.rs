//! `Burst`: a fixed-capacity vector of packets, the unit every stage and every port works on.
//!
//! Up to [`MAX_BURST`] packets, [`DEFAULT_BURST`] by default (DPDK's and VPP's sizes). Storage is inline, so a
//! burst never allocates; dropping a burst (or clearing it) frees its packets.

use crate::pkt::Pkt;
use arrayvec::ArrayVec;
use std::mem::MaybeUninit;

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
        // SAFETY: `cap <= MAX_BURST` (clamped in `new`), the array's capacity, so a burst that is not full has
        // room: the array's own check (and its panic branch) would repeat this one.
        unsafe { self.pkts.push_unchecked(pkt) };
        Ok(())
    }

    /// Appends a packet to a burst known to have room (a receive loop that asked for no more than
    /// [`Burst::room`] packets), without the check.
    ///
    /// # Safety
    /// The burst is not full.
    #[inline]
    pub unsafe fn push_unchecked(&mut self, pkt: Pkt) {
        debug_assert!(!self.is_full());
        // SAFETY: not full (the caller's promise) and `cap <= MAX_BURST`, the array's capacity.
        unsafe { self.pkts.push_unchecked(pkt) };
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

    /// Moves as many of `src`'s packets as fit to the end of this burst, in order, copying their handles at
    /// once; the rest stay in `src`, in order. Returns how many moved.
    #[inline]
    pub fn append_from(&mut self, src: &mut Burst) -> usize {
        let (len, n) = (self.pkts.len(), self.room().min(src.len()));
        // SAFETY: `len + n <= cap <= MAX_BURST`, so the copy stays in this array's capacity; the first `n`
        // handles of `src` are moved (bitwise) and then removed from `src` without being dropped, so each
        // packet has one owner; the two bursts are different arrays (`&mut` both).
        unsafe {
            std::ptr::copy_nonoverlapping(src.pkts.as_ptr(), self.pkts.as_mut_ptr().add(len), n);
            self.pkts.set_len(len + n);
            src.forget_front(n);
        }
        n
    }

    /// Removes the first `n` packets (or all, if fewer) without freeing them, keeping the others in order.
    ///
    /// # Safety
    /// Their handles must have been moved out first (to a driver, to another burst): otherwise they leak.
    #[inline]
    pub unsafe fn forget_front(&mut self, n: usize) {
        let len = self.pkts.len();
        let n = n.min(len);
        // SAFETY: the `len - n` packets after the first `n` move to the front (regions may overlap: `copy`),
        // and the length shrinks over the forgotten ones, which are never dropped here.
        unsafe {
            let base = self.pkts.as_mut_ptr();
            std::ptr::copy(base.add(n), base, len - n);
            self.pkts.set_len(len - n);
        }
    }

    /// Keeps the packets for which `f` is true; the others are dropped (freed).
    #[inline]
    pub fn retain(&mut self, mut f: impl FnMut(&mut Pkt) -> bool) {
        self.pkts.retain(|p| f(p))
    }

    /// Takes out, in order, every packet whose mark (`marks[i]` for the packet at position `i`; none past the
    /// end of `marks`) is not `keep`, giving each to `take` with its mark; the others stay, in order.
    ///
    /// Which packets go is data (say, the worker that owns each packet's flow), so a branch on it would be
    /// mispredicted about as often as the marks are random. The loop has none: each packet's handle is copied
    /// both to the kept side and to the taken side, and only the side it belongs to counts it; the other copy
    /// is overwritten or forgotten, never dropped. Should `take` panic, the packets it was not given are
    /// dropped.
    #[inline]
    pub fn take_marked(&mut self, marks: &[u16], keep: u16, mut take: impl FnMut(u16, Pkt)) {
        /// The packets taken out, from `next` to `len` not yet given to `take`: dropped should it panic.
        struct Taken {
            pkts: [MaybeUninit<Pkt>; MAX_BURST],
            marks: [MaybeUninit<u16>; MAX_BURST],
            next: usize,
            len: usize,
        }
        impl Drop for Taken {
            fn drop(&mut self) {
                while self.next < self.len {
                    let i = self.next;
                    self.next += 1;
                    // SAFETY: `[next, len)` holds packets not handed out yet, each live and owned here only.
                    unsafe { self.pkts[i].assume_init_drop() };
                }
            }
        }
        let len = self.pkts.len();
        let mut out = Taken {
            pkts: [const { MaybeUninit::uninit() }; MAX_BURST],
            marks: [const { MaybeUninit::uninit() }; MAX_BURST],
            next: 0,
            len: 0,
        };
        let base = self.pkts.as_mut_ptr();
        // SAFETY: while handles are being copied the array counts none, so nothing could drop one twice;
        // `set_len(kept)` below gives it back those that stay.
        unsafe { self.pkts.set_len(0) };
        let mut kept = 0;
        let (out_pkts, out_marks) = (
            out.pkts.as_mut_ptr().cast::<Pkt>(),
            out.marks.as_mut_ptr().cast::<u16>(),
        );
        let mut taken = 0;
        for i in 0..len {
            let m = marks.get(i).copied().unwrap_or(keep);
            let stays = m == keep;
            // SAFETY: `i < len` is a live packet, read once here. `kept <= i` and `taken <= i` are below
            // `MAX_BURST`, the size of both sides; the kept side's slot `kept` holds no live packet but when
            // `kept == i` (this one: `copy` allows the overlap); the taken side's slot `taken` is free. Exactly
            // one of the two copies is counted below, so each packet has one owner; the other copy is plain
            // bits, overwritten by a later packet or left past the end.
            unsafe {
                std::ptr::copy(base.add(i), base.add(kept), 1);
                std::ptr::copy_nonoverlapping(base.add(i), out_pkts.add(taken), 1);
                out_marks.add(taken).write(m);
            }
            kept += stays as usize;
            taken += !stays as usize;
        }
        out.len = taken;
        // SAFETY: `[0, kept)` holds the packets that stay, in order, each live once; the others are `out`'s.
        unsafe { self.pkts.set_len(kept) };
        while out.next < out.len {
            let i = out.next;
            out.next += 1;
            // SAFETY: `i < out.len`: a live packet and its mark, both written above; `next` moved past it, so
            // the guard will not drop it too.
            let (p, m) = unsafe { (out.pkts[i].assume_init_read(), out.marks[i].assume_init()) };
            take(m, p);
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
    use crate::pool::{flush_thread_cache, Pool};

    /// A burst of `n` one-byte frames numbered from `from`.
    fn numbered(pool: &Pool, cap: usize, from: u8, n: u8) -> Burst {
        let mut b = Burst::new(cap);
        for i in from..from + n {
            let mut p = pool.alloc().unwrap();
            p.set_frame(&[i]);
            b.push(p).unwrap();
        }
        b
    }

    fn firsts(b: &Burst) -> Vec<u8> {
        b.iter().map(|p| p.data()[0]).collect()
    }

    #[test]
    fn capacity_is_clamped_and_enforced() {
        assert_eq!(Burst::new(0).capacity(), 1);
        assert_eq!(Burst::new(10_000).capacity(), MAX_BURST);
        let pool = Pool::for_test(8, 128);
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
    fn take_marked_keeps_the_rest_in_order_and_hands_out_the_marked() {
        let pool = Pool::for_test(16, 128);
        let mut b = numbered(&pool, 16, 0, 10);
        // Positions 0, 3, 6 marked 7 and 9 marked 8; the marks end at 9, so position 9 has none (kept) unless
        // marked: here it is.
        let marks = [7, 0, 0, 7, 0, 0, 7, 0, 0, 8];
        let mut taken = Vec::new();
        b.take_marked(&marks, 0, |m, p| taken.push((m, p.data()[0])));
        assert_eq!(taken, vec![(7, 0), (7, 3), (7, 6), (8, 9)]);
        assert_eq!(firsts(&b), vec![1, 2, 4, 5, 7, 8]);
        // The taken ones were dropped by the closure; nothing leaked, nothing freed twice.
        assert_eq!(pool.available(), 16 - 6);
        // Past the end of the marks, packets stay.
        b.take_marked(&[1], 0, |_, _| {});
        assert_eq!(firsts(&b), vec![2, 4, 5, 7, 8]);
        b.take_marked(&[1; 16], 0, |_, _| {});
        assert!(b.is_empty());
        assert_eq!(pool.available(), 16);
    }

    #[test]
    fn take_marked_drops_what_it_did_not_hand_out_when_take_panics() {
        let pool = Pool::for_test(8, 128);
        let mut b = Burst::new(8);
        pool.alloc_into(&mut b, 6);
        let marks = [1, 0, 1, 1, 0, 1];
        let mut given = 0;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            b.take_marked(&marks, 0, |_, _p| {
                given += 1;
                if given == 2 {
                    panic!("second");
                }
            })
        }));
        assert!(r.is_err());
        assert_eq!(b.len(), 2, "the unmarked stay");
        drop(b);
        assert_eq!(pool.available(), 8, "the rest were dropped, once");
    }

    #[test]
    fn append_from_moves_what_fits_in_order_and_keeps_the_rest() {
        let pool = Pool::for_test(16, 128);
        let mut dst = numbered(&pool, 6, 0, 2);
        let mut src = numbered(&pool, 8, 10, 6);
        assert_eq!(dst.append_from(&mut src), 4);
        assert_eq!(firsts(&dst), vec![0, 1, 10, 11, 12, 13]);
        assert_eq!(firsts(&src), vec![14, 15]);
        // Nothing freed, nothing duplicated: 8 packets out of the pool, then all back.
        assert_eq!(pool.available(), 16 - 8);
        assert_eq!(dst.append_from(&mut src), 0, "full");
        drop((dst, src));
        flush_thread_cache();
        assert_eq!(pool.available(), 16);
    }

    #[test]
    fn forget_front_keeps_the_rest_in_order_and_frees_nothing() {
        let pool = Pool::for_test(8, 128);
        let mut b = numbered(&pool, 8, 0, 5);
        // Move the first two handles out, as a driver's transmit would take them, then forget them here.
        let moved: Vec<Pkt> = b
            .iter()
            .take(2)
            .map(|p| unsafe { std::ptr::read(p) })
            .collect();
        unsafe { b.forget_front(2) };
        assert_eq!(firsts(&b), vec![2, 3, 4]);
        assert_eq!(
            moved.iter().map(|p| p.data()[0]).collect::<Vec<_>>(),
            vec![0, 1]
        );
        unsafe { b.forget_front(0) };
        assert_eq!(b.len(), 3);
        drop((moved, b));
        flush_thread_cache();
        assert_eq!(pool.available(), 8, "each packet freed once");
    }

    #[test]
    fn drain_front_keeps_order() {
        let pool = Pool::for_test(8, 128);
        let mut b = numbered(&pool, 8, 0, 4);
        let first: Vec<u8> = b.drain_front(3).map(|p| p.data()[0]).collect();
        assert_eq!(first, vec![0, 1, 2]);
        assert_eq!(b.as_slice()[0].data(), &[3]);
    }
}
