//! `ring`: in-process port pairs over bounded queues, a patch cable between two ports of one process.
//!
//! What one side transmits, the other side receives. Used for tests, benchmarks (pipeline cost without kernel
//! I/O) and in-process peers. With several queues, the receiving queue is chosen by the symmetric flow hash,
//! like a NIC's RSS, so both directions of a flow meet on the same queue.
//!
//! The two ends may have different queue counts ([`RingPort::pair_asymmetric`]): a tester's end with one queue
//! facing a router's end with one queue per worker. A transmit into an end with a single queue just enqueues
//! (the queues are multi-producer, so every queue of the other end may send into it); no flow is hashed.
//!
//! The queues are [`BulkRing`]s: a receive or transmit burst costs one reservation (an atomic) and one
//! publication, like a NIC's burst or DPDK's `rte_ring` bulk calls, not an atomic per packet. Received
//! packets get fresh metadata, as from a NIC: a buffer that went round a closed loop does not carry what the
//! stages of its previous trip wrote in it.

pub mod bulk;

pub use bulk::{BulkRing, Moved};

use super::{Port, PortError, PortInfo, PortQueue, QueueClaim, QueueClaims};
use crate::burst::{Burst, MAX_BURST};
use crate::counters::{PortCounters, QueueCounters};
use crate::pkt::Pkt;
use crate::rss;
use std::sync::Arc;

/// Default depth of each queue, in packets.
pub const DEFAULT_DEPTH: usize = 1024;

/// One end of a ring pair.
pub struct RingPort {
    name: String,
    mtu: u32,
    /// Queues this end receives from (the peer transmits into them).
    rx: Vec<Arc<BulkRing>>,
    /// The peer's receive queues.
    peer_rx: Vec<Arc<BulkRing>>,
    counters: Vec<Arc<QueueCounters>>,
    claims: QueueClaims,
}

impl RingPort {
    /// Two connected ports named `a` and `b`, each with `queues` queues of `depth` packets.
    pub fn pair(a: &str, b: &str, queues: u16, depth: usize) -> (Arc<RingPort>, Arc<RingPort>) {
        Self::pair_asymmetric(a, b, queues, queues, depth)
    }

    /// Two connected ports named `a` and `b` with `a_queues` and `b_queues` queues (at least 1 each) of
    /// `depth` packets. Each end spreads what it transmits over the other end's queues by flow hash; into an
    /// end with one queue, it just enqueues.
    pub fn pair_asymmetric(
        a: &str,
        b: &str,
        a_queues: u16,
        b_queues: u16,
        depth: usize,
    ) -> (Arc<RingPort>, Arc<RingPort>) {
        let mk = |queues: u16| {
            (0..queues.max(1))
                .map(|_| Arc::new(BulkRing::new(depth.max(1))))
                .collect::<Vec<_>>()
        };
        let (qa, qb) = (mk(a_queues), mk(b_queues));
        let side = |name: &str, rx: &Vec<Arc<BulkRing>>, peer: &Vec<Arc<BulkRing>>| {
            let queues = rx.len() as u16;
            Arc::new(RingPort {
                name: name.to_string(),
                mtu: 9000,
                rx: rx.clone(),
                peer_rx: peer.clone(),
                counters: (0..queues).map(|_| Default::default()).collect(),
                claims: QueueClaims::new(name, queues),
            })
        };
        (side(a, &qa, &qb), side(b, &qb, &qa))
    }

    /// Puts `pkt` on this end's receive queue `queue` as if the peer had sent it (seeding closed-loop
    /// benchmarks and tests). Gives the packet back if the queue is full or does not exist. The receiving
    /// queue gives it fresh metadata, so a recycled buffer may be injected as it is.
    pub fn inject(&self, queue: u16, pkt: Pkt) -> Result<(), Pkt> {
        match self.rx.get(queue as usize) {
            Some(q) => q.enqueue(pkt),
            None => Err(pkt),
        }
    }

    /// Frames waiting to be received on this end, over all queues.
    pub fn pending(&self) -> usize {
        self.rx.iter().map(|q| q.len()).sum()
    }
}

impl Port for RingPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.name.clone(),
            backend: "ring",
            queues: self.rx.len() as u16,
            mac: None,
            mtu: self.mtu,
            link_up: true,
            // The far end picks the queue of each frame it sends by the flow hash (`RingQueue::tx_burst`).
            steering: rss::Steering::FlowHash {
                queues: self.rx.len() as u16,
            },
        }
    }

    fn counters(&self) -> PortCounters {
        PortCounters::sum(self.counters.iter().map(|c| &**c))
    }

    fn open_queue(&self, queue: u16) -> Result<Box<dyn PortQueue>, PortError> {
        let claim = self.claims.claim(queue)?;
        // Scratch for grouping a transmit burst by peer queue: only with several peer queues.
        let groups = if self.peer_rx.len() > 1 {
            (0..self.peer_rx.len())
                .map(|_| Burst::new(MAX_BURST))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Box::new(RingQueue {
            queue,
            in_port: 0,
            rx: self.rx[queue as usize].clone(),
            peer_rx: self.peer_rx.clone(),
            counters: self.counters[queue as usize].clone(),
            groups,
            peer_of: [0; MAX_BURST],
            unsent: Burst::new(MAX_BURST),
            _claim: claim,
        }))
    }
}

struct RingQueue {
    queue: u16,
    /// What received packets get as their input port ([`PortQueue::stamp_in_port`]; 0 until asked).
    in_port: u16,
    rx: Arc<BulkRing>,
    peer_rx: Vec<Arc<BulkRing>>,
    counters: Arc<QueueCounters>,
    /// With several peer queues: a transmit burst's packets, grouped by the peer queue their flow hashes to
    /// (kept here so tx never allocates).
    groups: Vec<Burst>,
    /// With several peer queues: the peer queue of each packet of the transmit burst, by position.
    peer_of: [u16; MAX_BURST],
    /// Scratch for putting back, in order, what the peer queues did not take.
    unsent: Burst,
    _claim: QueueClaim,
}

/// Gives a received packet the metadata a NIC would: none but the input port and queue (and the frame bounds,
/// kept). The buffer may come straight from a transmit of the peer, or be injected after a trip through the
/// stages, so it may hold a flow hash, offsets, flags or scratch of another trip; a stage must not trust those.
#[inline]
fn fresh_rx_meta(p: &mut Pkt, port: u16, queue: u16) {
    p.meta_mut().clear_trip(port, queue);
}

impl PortQueue for RingQueue {
    fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let (port, queue) = (self.in_port, self.queue);
        let mut bytes = 0;
        let n = self.rx.dequeue_burst_with(burst, MAX_BURST, |p| {
            fresh_rx_meta(p, port, queue);
            bytes += p.len() as u64;
        });
        if n > 0 {
            self.counters.rx_packets.add(n as u64);
            self.counters.rx_bytes.add(bytes);
        }
        n
    }

    fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let moved = if self.peer_rx.len() == 1 {
            // What does not fit stays at the front of `burst`, in order.
            self.peer_rx[0].enqueue_burst(burst)
        } else {
            self.tx_spread(burst)
        };
        self.counters.tx_packets.add(moved.packets as u64);
        self.counters.tx_bytes.add(moved.bytes);
        moved.packets
    }

    fn stamp_in_port(&mut self, port: u16) -> bool {
        self.in_port = port;
        true
    }
}

impl RingQueue {
    /// Transmits to several peer queues: each packet goes to the queue its flow hashes to (RSS), one burst
    /// per queue. A queue takes a prefix of its packets, so each flow keeps its order; what the queues did not
    /// take goes back to `burst` in its original order. When the whole burst goes to one queue (a worker's
    /// flows all hash to its own queue index when nothing rewrote their tuple), it is enqueued as it is.
    fn tx_spread(&mut self, burst: &mut Burst) -> Moved {
        let nq = self.peer_rx.len() as u16;
        let n = burst.len();
        let mut mixed = false;
        for (i, p) in burst.iter().enumerate() {
            let q = rss::queue_of_hash(rss::flow_hash(p.data()), nq);
            self.peer_of[i] = q;
            mixed |= q != self.peer_of[0];
        }
        if !mixed {
            return match self.peer_rx.get(self.peer_of[0] as usize) {
                Some(ring) => ring.enqueue_burst(burst),
                None => Moved::default(),
            };
        }
        for (i, p) in burst.drain().enumerate() {
            // A group holds MAX_BURST, more than any burst: the push cannot fail.
            let _ = self.groups[self.peer_of[i] as usize].push(p);
        }
        let mut moved = Moved::default();
        let mut left = 0;
        for (group, ring) in self.groups.iter_mut().zip(&self.peer_rx) {
            if group.is_empty() {
                continue;
            }
            let m = ring.enqueue_burst(group);
            moved.packets += m.packets;
            moved.bytes += m.bytes;
            left += group.len();
        }
        if left > 0 {
            // Each group holds the tail of its packets in order. Walking the burst's positions backwards, the
            // first visits of a queue are exactly its packets left over, last first: collect them reversed,
            // then reverse again into `burst`.
            for i in (0..n).rev() {
                if let Some(p) = self.groups[self.peer_of[i] as usize].pop() {
                    let _ = self.unsent.push(p);
                }
            }
            while let Some(p) = self.unsent.pop() {
                let _ = burst.push(p);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{flush_thread_cache, Pool, PoolConfig};

    fn frame(pool: &Pool, b: u8) -> Pkt {
        let mut p = pool.alloc().unwrap();
        p.set_frame(&[b; 60]);
        p
    }

    #[test]
    fn what_a_sends_b_receives_in_order() {
        let pool = Pool::new(&PoolConfig {
            buffers: 64,
            data_room: 256,
            cache_size: 4,
            hugepages: false,
        })
        .unwrap();
        let (a, b) = RingPort::pair("a", "b", 1, 16);
        let mut qa = a.open_queue(0).unwrap();
        let mut qb = b.open_queue(0).unwrap();
        let mut tx = Burst::new(32);
        for i in 0..20 {
            tx.push(frame(&pool, i)).unwrap();
        }
        assert_eq!(qa.tx_burst(&mut tx), 16, "depth 16 takes 16");
        assert_eq!(tx.len(), 4, "the rest stays with the caller");
        assert_eq!(tx.as_slice()[0].data()[0], 16);
        let mut rx = Burst::new(32);
        assert_eq!(qb.rx_burst(&mut rx), 16);
        let got: Vec<u8> = rx.iter().map(|p| p.data()[0]).collect();
        assert_eq!(got, (0..16).collect::<Vec<u8>>());
        assert_eq!(a.counters().tx_packets, 16);
        assert_eq!(b.counters().rx_packets, 16);
        assert_eq!(b.counters().rx_bytes, 16 * 60);
        drop((rx, tx));
        flush_thread_cache();
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn a_queue_opens_once() {
        let (a, _b) = RingPort::pair("a", "b", 2, 4);
        let q0 = a.open_queue(0).unwrap();
        assert!(matches!(a.open_queue(0), Err(PortError::QueueTaken { .. })));
        assert!(matches!(
            a.open_queue(2),
            Err(PortError::NoSuchQueue { .. })
        ));
        drop(q0);
        assert!(a.open_queue(0).is_ok());
    }

    /// A 60-byte non-IP frame of flow `flow` (its MAC addresses, which is what RSS hashes for non-IP) with
    /// sequence number `seq`.
    fn flow_frame(pool: &Pool, flow: u8, seq: u8) -> Pkt {
        let mut f = [0u8; 60];
        f[0] = flow;
        f[6] = 0x02;
        f[20] = seq;
        let mut p = pool.alloc().unwrap();
        p.set_frame(&f);
        p
    }

    #[test]
    fn several_queues_each_flow_on_its_queue_in_order_and_the_rest_stays_in_order() {
        let pool = Pool::for_test(128, 256);
        let (a, b) = RingPort::pair("a", "b", 3, 4);
        let mut qa = a.open_queue(1).unwrap();
        let queue_of = |flow: u8| {
            let p = flow_frame(&pool, flow, 0);
            (rss::flow_hash(p.data()) % 3) as usize
        };
        // Flows that hash to each of the three queues.
        let mut flow_on = [None; 3];
        for flow in 0..=255u8 {
            flow_on[queue_of(flow)].get_or_insert(flow);
        }
        let flows: Vec<u8> = flow_on.iter().map(|f| f.unwrap()).collect();
        // 30 packets, flows interleaved unevenly: queue 0 gets 15, queue 1 gets 10, queue 2 gets 5.
        let mut tx = Burst::new(64);
        let mut sent_to = [Vec::new(), Vec::new(), Vec::new()];
        for seq in 0..30u8 {
            let q = match seq % 6 {
                0 | 2 | 4 => 0,
                1 | 3 => 1,
                _ => 2,
            };
            tx.push(flow_frame(&pool, flows[q], seq)).unwrap();
            sent_to[q].push(seq);
        }
        assert_eq!(qa.tx_burst(&mut tx), 12, "each queue of depth 4 takes 4");
        assert_eq!(a.counters().tx_packets, 12);
        assert_eq!(a.counters().tx_bytes, 12 * 60);
        // What stays is every packet after the 4th of its queue, in the original order.
        let mut expect_left: Vec<u8> = sent_to.iter().flat_map(|s| s[4..].to_vec()).collect();
        expect_left.sort();
        let left: Vec<u8> = tx.iter().map(|p| p.data()[20]).collect();
        assert_eq!(left, expect_left);
        for (q, sent) in sent_to.iter().enumerate() {
            let mut qb = b.open_queue(q as u16).unwrap();
            let mut rx = Burst::new(64);
            assert_eq!(qb.rx_burst(&mut rx), 4);
            let got: Vec<u8> = rx.iter().map(|p| p.data()[20]).collect();
            assert_eq!(
                got,
                sent[..4].to_vec(),
                "queue {q}: its flow's first 4, in order"
            );
            assert!(rx
                .iter()
                .all(|p| p.data()[0] == flows[q] && p.meta().in_queue == q as u16));
        }
        assert_eq!(b.pending(), 0);
        // The rest goes once there is room again: 4 + 4 of the first two queues' 11 and 6, the third's last one.
        assert_eq!(qa.tx_burst(&mut tx), 9);
        assert_eq!(tx.len(), 9);
        assert_eq!(b.pending(), 9);
    }

    #[test]
    fn several_queues_one_flow_goes_whole_to_its_queue() {
        let pool = Pool::for_test(32, 256);
        let (a, b) = RingPort::pair("a", "b", 3, 4);
        let mut qa = a.open_queue(0).unwrap();
        let q = (rss::flow_hash(flow_frame(&pool, 9, 0).data()) % 3) as u16;
        let mut tx = Burst::new(32);
        for seq in 0..6 {
            tx.push(flow_frame(&pool, 9, seq)).unwrap();
        }
        assert_eq!(qa.tx_burst(&mut tx), 4, "its queue of depth 4 takes 4");
        let left: Vec<u8> = tx.iter().map(|p| p.data()[20]).collect();
        assert_eq!(left, vec![4, 5], "the rest stays, in order");
        let mut qb = b.open_queue(q).unwrap();
        let mut rx = Burst::new(32);
        assert_eq!(qb.rx_burst(&mut rx), 4);
        let got: Vec<u8> = rx.iter().map(|p| p.data()[20]).collect();
        assert_eq!(got, vec![0, 1, 2, 3]);
        assert_eq!(b.pending(), 0, "nothing on the other queues");
    }

    #[test]
    fn asymmetric_pair_two_queues_send_into_one_which_keeps_each_queues_order() {
        let pool = Pool::for_test(64, 256);
        let (a, b) = RingPort::pair_asymmetric("a", "b", 2, 1, 64);
        assert_eq!((a.info().queues, b.info().queues), (2, 1));
        assert!(matches!(
            b.open_queue(1),
            Err(PortError::NoSuchQueue { .. })
        ));
        let mut q0 = a.open_queue(0).unwrap();
        let mut q1 = a.open_queue(1).unwrap();
        // Flows 0..8 on every burst, so they would hash to both queues of a 2-queue end: here all go to one.
        let burst_of = |first: u8| {
            let mut tx = Burst::new(32);
            for seq in first..first + 8 {
                tx.push(flow_frame(&pool, seq % 8, seq)).unwrap();
            }
            tx
        };
        let (mut t0, mut t1, mut t2) = (burst_of(0), burst_of(100), burst_of(8));
        assert_eq!(q0.tx_burst(&mut t0), 8);
        assert_eq!(q1.tx_burst(&mut t1), 8);
        assert_eq!(q0.tx_burst(&mut t2), 8);
        assert!(t0.is_empty() && t1.is_empty() && t2.is_empty());
        assert_eq!(a.counters().tx_packets, 24);
        let mut qb = b.open_queue(0).unwrap();
        let mut rx = Burst::new(64);
        assert_eq!(qb.rx_burst(&mut rx), 24, "everything on the one queue");
        let got: Vec<u8> = rx.iter().map(|p| p.data()[20]).collect();
        let from_q0: Vec<u8> = got.iter().copied().filter(|&s| s < 100).collect();
        let from_q1: Vec<u8> = got.iter().copied().filter(|&s| s >= 100).collect();
        assert_eq!(from_q0, (0..16).collect::<Vec<u8>>(), "queue 0's order");
        assert_eq!(from_q1, (100..108).collect::<Vec<u8>>(), "queue 1's order");
        assert!(rx.iter().all(|p| p.meta().in_queue == 0));
    }

    #[test]
    fn asymmetric_pair_the_one_queue_end_spreads_by_flow_hash() {
        let pool = Pool::for_test(64, 256);
        let (a, b) = RingPort::pair_asymmetric("a", "b", 2, 1, 64);
        let mut qb = b.open_queue(0).unwrap();
        let mut tx = Burst::new(32);
        for flow in 0..16u8 {
            tx.push(flow_frame(&pool, flow, flow)).unwrap();
        }
        assert_eq!(qb.tx_burst(&mut tx), 16);
        let mut seen = 0;
        for q in 0..2u16 {
            let mut qa = a.open_queue(q).unwrap();
            let mut rx = Burst::new(32);
            seen += qa.rx_burst(&mut rx);
            for p in rx.iter() {
                assert_eq!((rss::flow_hash(p.data()) % 2) as u16, q, "RSS by flow");
            }
        }
        assert_eq!(seen, 16);
    }

    #[test]
    fn received_packets_get_fresh_metadata() {
        let pool = Pool::for_test(16, 256);
        let (a, b) = RingPort::pair("a", "b", 2, 16);
        let stale = |p: &mut Pkt| {
            let m = p.meta_mut();
            m.timestamp_ns = 5;
            m.in_port = 3;
            m.in_queue = 7;
            m.flow_hash = 99;
            m.l3_off = 14;
            m.l4_off = 34;
            m.vlan_tci = 10;
            m.flags = crate::pkt::Meta::FLAG_DECAPPED | crate::pkt::Meta::FLAG_VLAN;
            m.out_port = 2;
            m.ip_proto = 17;
            m.scratch = [1, 2, 3, 4];
        };
        // A recycled buffer injected as it is, and one the peer transmits after its stages wrote in it.
        // Both on the queue the transmitted frame hashes to.
        let q = (rss::flow_hash(&[2; 60]) % 2) as u16;
        let mut p = frame(&pool, 1);
        stale(&mut p);
        b.inject(q, p).unwrap();
        let mut qa = a.open_queue(0).unwrap();
        let mut tx = Burst::new(4);
        let mut p = frame(&pool, 2);
        stale(&mut p);
        tx.push(p).unwrap();
        assert_eq!(qa.tx_burst(&mut tx), 1);
        assert_eq!(b.pending(), 2);
        let mut qb = b.open_queue(q).unwrap();
        let mut rx = Burst::new(4);
        assert_eq!(qb.rx_burst(&mut rx), 2);
        for p in rx.iter() {
            let m = p.meta();
            assert_eq!(p.len(), 60, "frame kept");
            assert_eq!(m.in_queue, q);
            assert_eq!(
                (m.timestamp_ns, m.in_port, m.flow_hash, m.l3_off, m.l4_off),
                (0, 0, 0, 0, 0)
            );
            assert_eq!(
                (m.vlan_tci, m.flags, m.out_port, m.ip_proto, m.scratch),
                (0, 0, 0, 0, [0; 4])
            );
        }
        // Asked to, the queue stamps the input port the worker gave it, in the same writes.
        assert!(qb.stamp_in_port(5));
        let mut p = frame(&pool, 3);
        stale(&mut p);
        b.inject(q, p).unwrap();
        rx.clear();
        assert_eq!(qb.rx_burst(&mut rx), 1);
        let m = rx.as_slice()[0].meta();
        assert_eq!((m.in_port, m.in_queue, m.flow_hash), (5, q, 0));
    }

    #[test]
    fn inject_refuses_a_missing_or_full_queue_and_gives_the_packet_back() {
        let pool = Pool::for_test(8, 256);
        let (a, _b) = RingPort::pair("a", "b", 1, 2);
        assert!(a.inject(0, frame(&pool, 0)).is_ok());
        assert!(a.inject(0, frame(&pool, 1)).is_ok());
        let back = a.inject(0, frame(&pool, 2)).expect_err("full");
        assert_eq!(back.data()[0], 2);
        let back = a.inject(1, back).expect_err("no queue 1");
        assert_eq!(back.data()[0], 2);
        drop(back);
        assert_eq!(a.pending(), 2);
        assert_eq!(pool.available(), 6);
        drop(a);
        drop(_b);
        assert_eq!(
            pool.available(),
            8,
            "packets left in the rings are freed with them"
        );
    }
}
