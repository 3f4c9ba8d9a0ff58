//! No heap allocation per packet when NAT answers are handed between two workers (driven inline: the counting
//! allocator sees the test thread alone, in a file of its own so no other test runs meanwhile).

use dataplane::{Burst, Event, Port};

mod common;
use common::two_workers::{udp, Two, EXT, HOST, SERVER};

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

#[test]
fn handing_over_allocates_nothing_per_packet() {
    let mut two = Two::new();
    let (in_mac, up_mac) = two.macs;
    let answers: Vec<Vec<u8>> = (0..16u16)
        .map(|i| {
            two.inject("in", 0, &udp(in_mac, (HOST, 6000 + i), (SERVER, 53)));
            let out = two.run("gen_up");
            let port = u16::from_be_bytes([out[0][34], out[0][35]]);
            udp(up_mac, (SERVER, 53), (EXT, port))
        })
        .collect();
    let far = two.opened.ring_peers.get("gen_in").unwrap().clone();
    let mut sinks: Vec<_> = (0..2).map(|q| far.open_queue(q).unwrap()).collect();
    let mut b = Burst::new(256);
    let mut round = |two: &mut Two| -> u64 {
        // Every answer on worker 1, which owns none of them.
        for a in &answers {
            two.inject("up", 1, a);
        }
        for _ in 0..3 {
            for w in &mut two.workers {
                w.poll_once();
            }
        }
        let mut n = 0;
        for s in &mut sinks {
            while s.rx_burst(&mut b) > 0 {
                n += b.len() as u64;
                b.clear();
            }
        }
        n
    };
    for _ in 0..50 {
        assert_eq!(round(&mut two), 16);
    }
    common::counting::counting(true);
    let mut n = 0;
    for _ in 0..500 {
        n += round(&mut two);
    }
    common::counting::counting(false);
    assert_eq!(n, 8000);
    assert_eq!(two.event(1, Event::NatHandoff), 550 * 16);
    assert_eq!(
        common::counting::allocations(),
        0,
        "heap allocations while handing over 8000 packets"
    );
}
