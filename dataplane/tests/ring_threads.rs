//! Ring ports under concurrency, through the port API: several transmit queues of one end (each on its own
//! thread, spreading its flows over the peer's queues by RSS) and a thread injecting into the peer, all producing
//! into the same receive queues, which two threads drain. Every frame must arrive exactly once, on the queue its
//! flow hashes to, each sender's frames of a flow in the order they were sent, and every buffer must go home.

use dataplane::port::ring::RingPort;
use dataplane::{rss, Burst, Pool, PoolConfig, Port};
use std::sync::atomic::{AtomicUsize, Ordering};

const SENDERS: usize = 3; // two transmit queues and one injecting thread
const PER_SENDER: u32 = 120_000;
const FLOWS: u8 = 8;

/// A 60-byte non-IP frame (RSS hashes its MAC addresses): flow in byte 0, sender in byte 20, sequence number
/// (per sender and flow) in bytes 21..25.
fn frame(flow: u8, sender: u8, seq: u32) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0] = flow;
    f[6] = 0x02;
    f[20] = sender;
    f[21..25].copy_from_slice(&seq.to_be_bytes());
    f
}

#[test]
fn concurrent_senders_and_receivers_each_frame_once_in_flow_order() {
    let pool = Pool::new(&PoolConfig {
        buffers: 2048,
        data_room: 128,
        cache_size: 32,
        hugepages: false,
    })
    .unwrap();
    let (a, b) = RingPort::pair("a", "b", 2, 128);
    let received = AtomicUsize::new(0);
    let total = SENDERS * PER_SENDER as usize;
    let queue_of = |flow: u8| (rss::flow_hash(&frame(flow, 0, 0)) % 2) as u16;
    assert!(
        (0..FLOWS).any(|f| queue_of(f) == 0) && (0..FLOWS).any(|f| queue_of(f) == 1),
        "the flows cover both queues"
    );
    let got: Vec<Vec<[u8; 60]>> = std::thread::scope(|s| {
        for sender in 0..SENDERS {
            let (pool, a, b) = (&pool, &a, &b);
            s.spawn(move || {
                // Senders 0 and 1 transmit on a's queues; sender 2 injects into b's queues directly.
                let mut q = (sender < 2).then(|| a.open_queue(sender as u16).unwrap());
                let mut burst = Burst::new(32);
                let mut seq = [0u32; FLOWS as usize];
                let mut made = 0u32;
                let mut sent = 0u32;
                while sent < PER_SENDER {
                    while !burst.is_full() && made < PER_SENDER {
                        let Some(mut p) = pool.alloc() else { break };
                        let flow = (made % FLOWS as u32) as u8;
                        p.set_frame(&frame(flow, sender as u8, seq[flow as usize]));
                        seq[flow as usize] += 1;
                        made += 1;
                        burst.push(p).unwrap();
                    }
                    let n = match q.as_mut() {
                        Some(q) => q.tx_burst(&mut burst),
                        None => {
                            // Injecting keeps the same per-flow order: stop at the first refusal.
                            let mut n = 0;
                            let mut rest = Burst::new(32);
                            for p in burst.drain() {
                                if !rest.is_empty() {
                                    rest.push(p).unwrap();
                                    continue;
                                }
                                let q = (rss::flow_hash(p.data()) % 2) as u16;
                                match b.inject(q, p) {
                                    Ok(()) => n += 1,
                                    Err(p) => rest.push(p).unwrap(),
                                }
                            }
                            burst = rest;
                            n
                        }
                    };
                    sent += n as u32;
                    if n == 0 {
                        std::thread::yield_now();
                    }
                }
                dataplane::pool::flush_thread_cache();
            });
        }
        let receivers: Vec<_> = (0..2u16)
            .map(|queue| {
                let (b, received) = (&b, &received);
                s.spawn(move || {
                    let mut q = b.open_queue(queue).unwrap();
                    let mut burst = Burst::new(32);
                    let mut got = Vec::new();
                    while received.load(Ordering::Relaxed) < total {
                        let n = q.rx_burst(&mut burst);
                        if n == 0 {
                            std::thread::yield_now();
                            continue;
                        }
                        for p in burst.drain() {
                            assert_eq!(p.meta().in_queue, queue);
                            got.push(p.data().try_into().unwrap());
                        }
                        received.fetch_add(n, Ordering::Relaxed);
                    }
                    dataplane::pool::flush_thread_cache();
                    got
                })
            })
            .collect();
        receivers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(received.load(Ordering::Relaxed), total);
    let mut next = [[0u32; FLOWS as usize]; SENDERS];
    for (queue, frames) in got.iter().enumerate() {
        for f in frames {
            let (flow, sender) = (f[0], f[20] as usize);
            let seq = u32::from_be_bytes(f[21..25].try_into().unwrap());
            assert_eq!(
                queue_of(flow) as usize,
                queue,
                "flow {flow} on its RSS queue"
            );
            assert_eq!(
                seq, next[sender][flow as usize],
                "sender {sender} flow {flow}: in order, none lost or repeated"
            );
            next[sender][flow as usize] += 1;
        }
    }
    let per_flow = PER_SENDER / FLOWS as u32;
    assert!(next.iter().flatten().all(|&n| n == per_flow), "all arrived");
    assert_eq!(a.counters().tx_packets, 2 * PER_SENDER as u64);
    assert_eq!(b.counters().rx_packets, total as u64);
    assert_eq!(b.pending(), 0);
    assert_eq!(pool.available(), 2048, "every buffer home");
}
