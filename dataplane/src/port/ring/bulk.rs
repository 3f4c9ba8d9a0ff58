//! `BulkRing`: a bounded multi-producer/multi-consumer ring of packets that moves a whole burst per atomic.
//!
//! The protocol is DPDK `rte_ring`'s head/tail scheme, burst variant ("take as many as fit"). Each side
//! (producers, consumers) has a `head` and a `tail` index that only grow (`usize`: they do not wrap in the
//! lifetime of a process; a slot is `index & mask`). A producer *reserves* `n` slots with one compare-and-swap
//! of `prod.head`, writes its packets into them, waits until every earlier producer has published (`prod.tail`
//! reached its reservation's start), then *publishes* them by storing `prod.tail` with release ordering.
//! Consumers do the same on `cons.head`/`cons.tail`. So a burst costs one CAS and one store per side, not one
//! per packet as with [`crossbeam::queue::ArrayQueue`], and the slots are a plain array of packet handles that
//! a burst copies in and out.
//!
//! Invariant (in index space): `cons.tail <= cons.head <= prod.tail <= prod.head <= cons.tail + capacity`.
//! Slots in `[cons.tail, prod.head)` may be in use: `[cons.head, prod.tail)` hold published packets,
//! `[prod.tail, prod.head)` are being written, `[cons.tail, cons.head)` are being read. Slots outside are
//! empty (their content was moved out, or never written). A producer only ever writes slots it reserved, a
//! consumer only ever reads slots it reserved, and a reservation never overlaps a slot in use, so no slot is
//! read and written at once and every packet is moved in once and out once.
//!
//! Like `rte_ring` (and unlike `ArrayQueue`) the ring is not lock-free in the strict sense: a producer that is
//! descheduled between its reservation and its publication holds up the producers that reserved after it
//! (likewise for consumers). The dataplane's workers are pinned poll-mode threads and the window is a few dozen
//! instructions; a waiter spins briefly, then yields its time slice so that a preempted thread on the same
//! core can finish.

use crate::burst::Burst;
use crate::pkt::Pkt;
use crossbeam::utils::CachePadded;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One side's indices. Head and tail share a cache line, as in `rte_ring`: the side's own threads touch both.
#[derive(Default)]
struct HeadTail {
    /// Next index to reserve.
    head: AtomicUsize,
    /// Indices below this one are published to the other side.
    tail: AtomicUsize,
}

impl HeadTail {
    /// Reserves up to `want` indices below `other + offset`, where `other` is the other side's tail and
    /// `offset` the capacity for producers (a free slot is one the consumers released) or 0 for consumers (a
    /// filled slot is one the producers published). Returns the first index and the count, or `None` when
    /// there is nothing to take (full for producers, empty for consumers).
    #[inline]
    fn reserve(
        &self,
        other: &AtomicUsize,
        offset: usize,
        capacity: usize,
        want: usize,
    ) -> Option<(usize, usize)> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            // Acquire: the other side's slot accesses before it moved its tail happen before ours.
            let other_tail = other.load(Ordering::Acquire);
            // Free (producers) or filled (consumers) slots as seen from `head`. `head` may be stale (read before
            // `other_tail`, which may since have moved past it): then the difference is out of range, and the
            // CAS below would fail anyway; read again.
            let avail = other_tail.wrapping_add(offset).wrapping_sub(head);
            if avail > capacity {
                std::hint::spin_loop();
                head = self.head.load(Ordering::Acquire);
                continue;
            }
            let n = avail.min(want);
            if n == 0 {
                // `head` is at most the current head, so when `other_tail` was read there was no room (or no
                // packet) at the current head either.
                return None;
            }
            match self.head.compare_exchange_weak(
                head,
                head + n,
                Ordering::Relaxed,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((head, n)),
                Err(now) => head = now,
            }
        }
    }

    /// Publishes `[start, end)` once every earlier reservation of this side is published.
    #[inline]
    fn publish(&self, start: usize, end: usize) {
        let mut spins = 0u32;
        // Acquire: what the earlier reservations did to their slots happens before our release below, so the
        // other side, acquiring our tail, sees theirs too.
        while self.tail.load(Ordering::Acquire) != start {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // The thread we wait for may be preempted on this core: let it run.
                std::thread::yield_now();
            }
        }
        // Release: our slot writes (producers) or reads (consumers) happen before the other side's acquire.
        self.tail.store(end, Ordering::Release);
    }
}

/// Packets and bytes a call moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Packets.
    pub packets: usize,
    /// Their frame bytes.
    pub bytes: u64,
}

/// The slot array of a ring, borrowed: `mask + 1` slots from `base`.
#[derive(Clone, Copy)]
struct Slots<'a> {
    base: *const UnsafeCell<MaybeUninit<Pkt>>,
    mask: usize,
    _ring: std::marker::PhantomData<&'a BulkRing>,
}

impl Slots<'_> {
    /// The slot of index `i`.
    #[inline]
    fn at(self, i: usize) -> *mut MaybeUninit<Pkt> {
        // SAFETY: `i & mask <= mask`, and the ring (borrowed for `'_`) has `mask + 1` slots from `base`: in
        // bounds of the live array. (A checked index costs a compare and a branch per packet each way.)
        unsafe { &*self.base.add(i & self.mask) }.get()
    }
}

/// A bounded multi-producer/multi-consumer FIFO of [`Pkt`]s with burst enqueue and dequeue (see the module
/// docs for the protocol). It owns the packets in it: dropping the ring drops (frees) them.
pub struct BulkRing {
    prod: CachePadded<HeadTail>,
    cons: CachePadded<HeadTail>,
    /// `mask + 1` slots (a power of two); at most `capacity` of them used at once.
    slots: Box<[UnsafeCell<MaybeUninit<Pkt>>]>,
    mask: usize,
    capacity: usize,
}

// SAFETY: the ring hands each packet from exactly one thread to exactly one other (see the module docs: slots
// are accessed only under a reservation, and reservations are ordered by the head/tail atomics), and `Pkt` is
// `Send`. Sharing the ring between threads is what it is for.
unsafe impl Sync for BulkRing {}
// SAFETY: as above; moving the ring moves the packets it owns, which are `Send`.
unsafe impl Send for BulkRing {}

impl std::fmt::Debug for BulkRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkRing")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl BulkRing {
    /// A ring holding at most `capacity` packets (at least 1). The slot array is the next power of two, so an
    /// index is a mask away from its slot; the capacity itself is exact (`rte_ring`'s `RING_F_EXACT_SZ`).
    pub fn new(capacity: usize) -> BulkRing {
        let capacity = capacity.max(1);
        let size = capacity.next_power_of_two();
        BulkRing {
            prod: Default::default(),
            cons: Default::default(),
            slots: (0..size)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            mask: size - 1,
            capacity,
        }
    }

    /// The most packets the ring holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Packets in the ring (a snapshot: other threads may be moving packets meanwhile).
    pub fn len(&self) -> usize {
        // Consumer tail first: it never passes the producer tail read after it.
        let cons = self.cons.tail.load(Ordering::Acquire);
        let prod = self.prod.tail.load(Ordering::Acquire);
        prod.wrapping_sub(cons).min(self.capacity)
    }

    /// True when the ring holds no packet (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot array, to be copied into a local before a loop: behind `&self` (which holds atomics, so
    /// the compiler assumes any store may change it) the array pointer and mask would be reloaded for every
    /// packet.
    #[inline]
    fn slots(&self) -> Slots<'_> {
        Slots {
            base: self.slots.as_ptr(),
            mask: self.mask,
            _ring: std::marker::PhantomData,
        }
    }

    /// Moves as many packets as fit from the front of `src` into the ring, in order, with one reservation.
    /// What does not fit stays in `src`, in order.
    #[inline]
    pub fn enqueue_burst(&self, src: &mut Burst) -> Moved {
        let mut moved = Moved::default();
        let Some((start, n)) =
            self.prod
                .reserve(&self.cons.tail, self.capacity, self.capacity, src.len())
        else {
            return moved;
        };
        // `n <= src.len()`, so the drain yields exactly `n` packets: every reserved slot is written.
        let slots = self.slots();
        let mut i = start;
        for p in src.drain_front(n) {
            moved.bytes += p.len() as u64;
            // SAFETY: `i` is in our reservation `[start, start + n)`: no other thread accesses that slot until we
            // publish, and it is empty (its previous packet, if any, was moved out by a consumer that published
            // before our reservation could include it), so writing does not overwrite a live packet.
            unsafe { (*slots.at(i)).write(p) };
            i += 1;
        }
        debug_assert_eq!(i, start + n);
        self.prod.publish(start, start + n);
        moved.packets = n;
        moved
    }

    /// Puts one packet in the ring, or gives it back when the ring is full.
    #[inline]
    pub fn enqueue(&self, pkt: Pkt) -> Result<(), Pkt> {
        let Some((start, _)) = self
            .prod
            .reserve(&self.cons.tail, self.capacity, self.capacity, 1)
        else {
            return Err(pkt);
        };
        // SAFETY: as in `enqueue_burst`: the slot is ours alone until published, and empty.
        unsafe { (*self.slots().at(start)).write(pkt) };
        self.prod.publish(start, start + 1);
        Ok(())
    }

    /// Moves up to `max` packets (and at most `dst.room()`) from the ring to the end of `dst`, oldest first,
    /// with one reservation. Returns how many.
    #[inline]
    pub fn dequeue_burst(&self, dst: &mut Burst, max: usize) -> usize {
        self.dequeue_burst_with(dst, max, |_| {})
    }

    /// As [`BulkRing::dequeue_burst`], calling `each` on every packet on its way into `dst` (a receive queue
    /// sets the metadata and counts bytes in the same pass). Should `each` panic, the packets of this burst
    /// not yet handed over are dropped and the reservation is still published, so the ring stays usable.
    #[inline]
    pub fn dequeue_burst_with(
        &self,
        dst: &mut Burst,
        max: usize,
        mut each: impl FnMut(&mut Pkt),
    ) -> usize {
        let want = max.min(dst.room());
        if want == 0 {
            return 0;
        }
        let Some((start, n)) = self.cons.reserve(&self.prod.tail, 0, self.capacity, want) else {
            return 0;
        };
        let mut taking = Taking {
            ring: self,
            start,
            next: start,
            end: start + n,
        };
        let slots = self.slots();
        while taking.next < taking.end {
            // SAFETY: `next` is in our reservation, so a producer published a packet there (acquired by
            // `reserve`) and no other consumer reads it; reading moves it out, and `next` moves past it before
            // anything else runs, so `Taking`'s drop will not read it a second time.
            let mut p = unsafe { (*slots.at(taking.next)).assume_init_read() };
            taking.next += 1;
            each(&mut p);
            // `n <= dst.room()`: the push cannot fail (and would drop, not leak, the packet if it did).
            let _ = dst.push(p);
        }
        n
        // `taking` drops here: publishes the reservation.
    }

    /// Takes the oldest packet, if any.
    #[inline]
    pub fn dequeue(&self) -> Option<Pkt> {
        let (start, _) = self.cons.reserve(&self.prod.tail, 0, self.capacity, 1)?;
        // SAFETY: as in `dequeue_burst`: a published packet in a slot only we read.
        let p = unsafe { (*self.slots().at(start)).assume_init_read() };
        self.cons.publish(start, start + 1);
        Some(p)
    }
}

/// A consumer's reservation `[start, end)` being emptied, `[next, end)` not yet taken. Dropping it (at the end
/// of the burst, or on unwinding from a panicking callback) drops what was not taken and publishes the whole
/// reservation, so every slot is emptied exactly once and the consumers after us are not held up.
struct Taking<'a> {
    ring: &'a BulkRing,
    start: usize,
    next: usize,
    end: usize,
}

impl Drop for Taking<'_> {
    #[inline]
    fn drop(&mut self) {
        while self.next < self.end {
            let i = self.next;
            self.next += 1;
            // SAFETY: `i` is in our reservation and was not read yet (see `dequeue_burst_with`): a published
            // packet only we may move out; `next` moved past it first, so it is dropped once.
            unsafe { (*self.ring.slots().at(i)).assume_init_drop() };
        }
        self.ring.cons.publish(self.start, self.end);
    }
}

impl Drop for BulkRing {
    fn drop(&mut self) {
        // With `&mut self` no operation is in progress, so heads equal tails; `[cons.head, prod.tail)` is the
        // range of published packets not yet moved out either way.
        let from = *self.cons.head.get_mut();
        let to = *self.prod.tail.get_mut();
        for i in from..to {
            // SAFETY: each index of the range holds a published packet that no consumer moved out; we have
            // exclusive access, and drop each once.
            unsafe { (*self.slots().at(i)).assume_init_drop() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{flush_thread_cache, Pool, PoolConfig};

    fn pool(buffers: u32) -> Pool {
        Pool::new(&PoolConfig {
            buffers,
            data_room: 128,
            cache_size: 0,
            hugepages: false,
        })
        .unwrap()
    }

    /// A burst of packets whose first byte is `first`, `first + 1`, ...
    fn burst_of(pool: &Pool, first: u8, n: usize) -> Burst {
        let mut b = Burst::new(MAX_BURST);
        for i in 0..n {
            let mut p = pool.alloc().unwrap();
            p.set_frame(&[first.wrapping_add(i as u8); 10]);
            b.push(p).unwrap();
        }
        b
    }

    fn tags(b: &Burst) -> Vec<u8> {
        b.iter().map(|p| p.data()[0]).collect()
    }

    use crate::burst::MAX_BURST;

    #[test]
    fn fifo_order_and_byte_count() {
        let pool = pool(64);
        let r = BulkRing::new(16);
        let mut src = burst_of(&pool, 0, 10);
        assert_eq!(
            r.enqueue_burst(&mut src),
            Moved {
                packets: 10,
                bytes: 100
            }
        );
        assert!(src.is_empty());
        assert_eq!(r.len(), 10);
        let mut dst = Burst::new(MAX_BURST);
        assert_eq!(r.dequeue_burst(&mut dst, 4), 4, "at most max");
        assert_eq!(r.dequeue_burst(&mut dst, 100), 6);
        assert_eq!(tags(&dst), (0..10).collect::<Vec<u8>>());
        assert!(r.is_empty());
    }

    #[test]
    fn full_and_empty() {
        let pool = pool(64);
        let r = BulkRing::new(8);
        let mut dst = Burst::new(MAX_BURST);
        assert_eq!(r.dequeue_burst(&mut dst, 32), 0, "empty ring gives nothing");
        assert!(r.dequeue().is_none());
        let mut src = burst_of(&pool, 0, 8);
        assert_eq!(r.enqueue_burst(&mut src).packets, 8);
        let extra = pool.alloc().unwrap();
        let idx = extra.buffer_index();
        let back = r.enqueue(extra).expect_err("full ring refuses");
        assert_eq!(back.buffer_index(), idx, "and gives the same packet back");
        let mut more = burst_of(&pool, 50, 3);
        assert_eq!(r.enqueue_burst(&mut more).packets, 0);
        assert_eq!(tags(&more), vec![50, 51, 52], "untouched");
        assert_eq!(r.dequeue().unwrap().data()[0], 0);
        assert!(r.enqueue(back).is_ok(), "one slot freed, one taken");
        assert_eq!(r.len(), 8);
    }

    #[test]
    fn partial_enqueue_leaves_the_rest_in_order() {
        let pool = pool(64);
        let r = BulkRing::new(5);
        let mut src = burst_of(&pool, 0, 9);
        assert_eq!(r.enqueue_burst(&mut src).packets, 5);
        assert_eq!(tags(&src), vec![5, 6, 7, 8]);
        let mut dst = Burst::new(3);
        assert_eq!(r.dequeue_burst(&mut dst, 32), 3, "at most the burst's room");
        assert_eq!(r.enqueue_burst(&mut src).packets, 3);
        assert_eq!(tags(&src), vec![8]);
        dst.clear();
        let mut all = Burst::new(MAX_BURST);
        assert_eq!(r.dequeue_burst(&mut all, 32), 5);
        assert_eq!(tags(&all), vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn capacity_is_exact_and_indices_wrap_around() {
        let pool = pool(64);
        // 6 packets in 8 slots: every round starts at a different slot, so the ring wraps again and again.
        let r = BulkRing::new(6);
        assert_eq!(r.capacity(), 6);
        let mut next = 0u8;
        let mut expect = 0u8;
        let mut dst = Burst::new(MAX_BURST);
        for round in 0..50 {
            let n = 1 + round % 6;
            let mut src = burst_of(&pool, next, n);
            let took = r.enqueue_burst(&mut src).packets;
            assert!(r.len() <= 6);
            next = next.wrapping_add(took as u8);
            drop(src);
            let got = r.dequeue_burst(&mut dst, 1 + round % 4);
            for p in dst.drain() {
                assert_eq!(p.data()[0], expect, "round {round}");
                expect = expect.wrapping_add(1);
            }
            assert!(got > 0);
        }
        while let Some(p) = r.dequeue() {
            assert_eq!(p.data()[0], expect);
            expect = expect.wrapping_add(1);
        }
        assert_eq!(expect, next, "everything taken in came out");
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn dropping_the_ring_returns_its_packets_to_the_pool() {
        let pool = pool(32);
        let r = BulkRing::new(16);
        // Move the indices off zero first, so the packets left in the ring straddle the wrap point.
        for _ in 0..3 {
            let mut src = burst_of(&pool, 0, 5);
            r.enqueue_burst(&mut src);
            let mut dst = Burst::new(MAX_BURST);
            r.dequeue_burst(&mut dst, 5);
        }
        let mut src = burst_of(&pool, 0, 12);
        assert_eq!(r.enqueue_burst(&mut src).packets, 12);
        assert_eq!(pool.available(), 32 - 12);
        drop(r);
        flush_thread_cache();
        assert_eq!(pool.available(), 32, "every packet in the ring freed once");
    }

    #[test]
    fn a_panicking_callback_frees_its_burst_and_leaves_the_ring_usable() {
        let pool = pool(32);
        let r = BulkRing::new(16);
        let mut src = burst_of(&pool, 0, 10);
        r.enqueue_burst(&mut src);
        let mut dst = Burst::new(MAX_BURST);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.dequeue_burst_with(&mut dst, 6, |p| {
                if p.data()[0] == 2 {
                    panic!("callback fails on the third packet");
                }
            })
        }));
        assert!(caught.is_err());
        assert_eq!(tags(&dst), vec![0, 1], "the first two were handed over");
        assert_eq!(r.len(), 4, "the reservation of 6 was published");
        assert_eq!(
            pool.available(),
            32 - 10 + 4,
            "the other 4 of the 6 were freed"
        );
        let mut rest = Burst::new(MAX_BURST);
        assert_eq!(r.dequeue_burst_with(&mut rest, 32, |_| {}), 4);
        assert_eq!(tags(&rest), vec![6, 7, 8, 9]);
        let mut src = burst_of(&pool, 20, 16);
        assert_eq!(
            r.enqueue_burst(&mut src).packets,
            16,
            "all 16 slots free again"
        );
    }

    #[test]
    fn producers_and_consumers_on_threads_each_packet_once_in_order() {
        const PRODUCERS: usize = 3;
        const CONSUMERS: usize = 2;
        const PER_PRODUCER: u32 = 350_000;
        let pool = Pool::new(&PoolConfig {
            buffers: 4096,
            data_room: 64,
            cache_size: 64,
            hugepages: false,
        })
        .unwrap();
        let ring = BulkRing::new(256);
        let produced = AtomicUsize::new(0);
        let consumed = AtomicUsize::new(0);
        let total = PRODUCERS * PER_PRODUCER as usize;
        let seen: Vec<Vec<(u8, u32)>> = std::thread::scope(|s| {
            for id in 0..PRODUCERS {
                let (pool, ring, produced) = (&pool, &ring, &produced);
                s.spawn(move || {
                    let mut b = Burst::new(MAX_BURST);
                    let mut seq = 0u32;
                    let mut burst_len = 1 + id;
                    while seq < PER_PRODUCER || !b.is_empty() {
                        // Bursts of varying size; alternate with single enqueues.
                        while b.len() < burst_len && seq < PER_PRODUCER {
                            let Some(mut p) = pool.alloc() else { break };
                            let mut f = [0u8; 5];
                            f[0] = id as u8;
                            f[1..].copy_from_slice(&seq.to_be_bytes());
                            p.set_frame(&f);
                            b.push(p).unwrap();
                            seq += 1;
                        }
                        let n = if seq.is_multiple_of(7) && !b.is_empty() {
                            let p = b.drain_front(1).next().unwrap();
                            match ring.enqueue(p) {
                                Ok(()) => 1,
                                Err(p) => {
                                    // Put it back at the front: order matters.
                                    let mut rest = Burst::new(MAX_BURST);
                                    rest.push(p).unwrap();
                                    for q in b.drain() {
                                        rest.push(q).unwrap();
                                    }
                                    b = rest;
                                    0
                                }
                            }
                        } else {
                            ring.enqueue_burst(&mut b).packets
                        };
                        produced.fetch_add(n, Ordering::Relaxed);
                        if n == 0 {
                            std::thread::yield_now();
                        }
                        burst_len = 1 + (burst_len * 7 + id) % 64;
                    }
                    flush_thread_cache();
                });
            }
            let handles: Vec<_> = (0..CONSUMERS)
                .map(|c| {
                    let (ring, consumed) = (&ring, &consumed);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        let mut b = Burst::new(MAX_BURST);
                        let mut max = 1 + c * 5;
                        while consumed.load(Ordering::Relaxed) < total {
                            let n = if max % 5 == 0 {
                                match ring.dequeue() {
                                    Some(p) => {
                                        b.push(p).unwrap();
                                        1
                                    }
                                    None => 0,
                                }
                            } else {
                                ring.dequeue_burst(&mut b, max)
                            };
                            if n == 0 {
                                std::thread::yield_now();
                                continue;
                            }
                            for p in b.drain() {
                                let d = p.data();
                                got.push((d[0], u32::from_be_bytes([d[1], d[2], d[3], d[4]])));
                            }
                            consumed.fetch_add(n, Ordering::Relaxed);
                            max = 1 + (max * 5 + c) % 48;
                        }
                        flush_thread_cache();
                        got
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(produced.load(Ordering::Relaxed), total);
        assert!(ring.is_empty());
        let mut count = vec![vec![false; PER_PRODUCER as usize]; PRODUCERS];
        for got in &seen {
            // One consumer's packets of one producer come in the order that producer sent them.
            let mut last = [None::<u32>; PRODUCERS];
            for &(id, seq) in got {
                let id = id as usize;
                assert!(
                    id < PRODUCERS && seq < PER_PRODUCER,
                    "corrupt frame {id} {seq}"
                );
                assert!(
                    last[id].is_none_or(|l| seq > l),
                    "producer {id}: {seq} after {:?}",
                    last[id]
                );
                last[id] = Some(seq);
                assert!(!count[id][seq as usize], "producer {id}'s {seq} twice");
                count[id][seq as usize] = true;
            }
        }
        assert!(count.iter().flatten().all(|&c| c), "every packet received");
        drop(ring);
        assert_eq!(pool.available(), 4096, "every buffer home");
    }
}
