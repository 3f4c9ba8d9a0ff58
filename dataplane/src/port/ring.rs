//! `ring`: in-process port pairs over bounded lock-free queues, a patch cable between two ports of one process.
//!
//! What one side transmits, the other side receives. Used for tests, benchmarks (pipeline cost without kernel
//! I/O) and in-process peers. With several queues, the receiving queue is chosen by the symmetric flow hash,
//! like a NIC's RSS, so both directions of a flow meet on the same queue.

use super::{Port, PortError, PortInfo, PortQueue, QueueClaim, QueueClaims};
use crate::burst::Burst;
use crate::counters::{PortCounters, QueueCounters};
use crate::pkt::Pkt;
use crate::rss;
use crossbeam::queue::ArrayQueue;
use std::sync::Arc;

/// Default depth of each queue, in packets.
pub const DEFAULT_DEPTH: usize = 1024;

/// One end of a ring pair.
pub struct RingPort {
    name: String,
    mtu: u32,
    /// Queues this end receives from (the peer transmits into them).
    rx: Vec<Arc<ArrayQueue<Pkt>>>,
    /// The peer's receive queues.
    peer_rx: Vec<Arc<ArrayQueue<Pkt>>>,
    counters: Vec<Arc<QueueCounters>>,
    claims: QueueClaims,
}

impl RingPort {
    /// Two connected ports named `a` and `b`, each with `queues` queues of `depth` packets.
    pub fn pair(a: &str, b: &str, queues: u16, depth: usize) -> (Arc<RingPort>, Arc<RingPort>) {
        let queues = queues.max(1);
        let mk = || {
            (0..queues)
                .map(|_| Arc::new(ArrayQueue::new(depth.max(1))))
                .collect::<Vec<_>>()
        };
        let (qa, qb) = (mk(), mk());
        let side =
            |name: &str, rx: &Vec<Arc<ArrayQueue<Pkt>>>, peer: &Vec<Arc<ArrayQueue<Pkt>>>| {
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
    /// benchmarks and tests). Gives the packet back if the queue is full or does not exist.
    pub fn inject(&self, queue: u16, pkt: Pkt) -> Result<(), Pkt> {
        match self.rx.get(queue as usize) {
            Some(q) => q.push(pkt),
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
        }
    }

    fn counters(&self) -> PortCounters {
        PortCounters::sum(self.counters.iter().map(|c| &**c))
    }

    fn open_queue(&self, queue: u16) -> Result<Box<dyn PortQueue>, PortError> {
        let claim = self.claims.claim(queue)?;
        Ok(Box::new(RingQueue {
            queue,
            rx: self.rx[queue as usize].clone(),
            peer_rx: self.peer_rx.clone(),
            counters: self.counters[queue as usize].clone(),
            unsent: Burst::new(crate::burst::MAX_BURST),
            _claim: claim,
        }))
    }
}

struct RingQueue {
    queue: u16,
    rx: Arc<ArrayQueue<Pkt>>,
    peer_rx: Vec<Arc<ArrayQueue<Pkt>>>,
    counters: Arc<QueueCounters>,
    /// Scratch for frames a full ring did not take (kept here so tx never allocates).
    unsent: Burst,
    _claim: QueueClaim,
}

impl PortQueue for RingQueue {
    fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let mut n = 0;
        let mut bytes = 0;
        while !burst.is_full() {
            let Some(mut p) = self.rx.pop() else { break };
            p.meta_mut().in_queue = self.queue;
            bytes += p.len() as u64;
            let _ = burst.push(p);
            n += 1;
        }
        self.counters.rx_packets.add(n as u64);
        self.counters.rx_bytes.add(bytes);
        n
    }

    fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let nq = self.peer_rx.len();
        let mut sent = 0;
        let mut bytes = 0;
        let mut rest = burst.drain();
        for p in rest.by_ref() {
            let q = if nq == 1 {
                0
            } else {
                rss::flow_hash(p.data()) as usize % nq
            };
            let len = p.len() as u64;
            match self.peer_rx[q].push(p) {
                Ok(()) => {
                    sent += 1;
                    bytes += len;
                }
                Err(p) => {
                    // Full: this packet and the ones after it stay with the caller, in order.
                    let _ = self.unsent.push(p);
                    break;
                }
            }
        }
        for p in rest {
            let _ = self.unsent.push(p);
        }
        for p in self.unsent.drain() {
            let _ = burst.push(p);
        }
        self.counters.tx_packets.add(sent as u64);
        self.counters.tx_bytes.add(bytes);
        sent
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
}
