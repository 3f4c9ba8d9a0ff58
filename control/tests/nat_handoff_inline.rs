//! The NAT handoff between two workers, driven inline (no threads: each worker polled by the test): an answer
//! of a masqueraded flow that reaches the worker not owning it is handed over untouched, in the L3 stage's
//! first pass, and leaves exactly as it would have had it reached the owner; a handed packet is still checked
//! by the owner (what the first worker skipped is not skipped altogether).

use dataplane::{DropReason, Event};

mod common;
use common::two_workers::{udp, Two, EXT, HOST, SERVER};

#[test]
fn an_answer_handed_to_its_owner_leaves_as_if_it_had_reached_it() {
    let mut two = Two::new();
    let (in_mac, up_mac) = two.macs;
    // A flow from inside, on worker 0: its external port is from worker 0's slice.
    two.inject("in", 0, &udp(in_mac, (HOST, 5000), (SERVER, 53)));
    let out = two.run("gen_up");
    assert_eq!(out.len(), 1, "translated out");
    assert_eq!(out[0][26..30], EXT);
    let port = u16::from_be_bytes([out[0][34], out[0][35]]);
    let answer = udp(up_mac, (SERVER, 53), (EXT, port));

    // The answer on the owner.
    two.inject("up", 0, &answer);
    let direct = two.run("gen_in");
    assert_eq!(direct.len(), 1);
    assert_eq!(direct[0][30..34], HOST);
    assert_eq!(two.event(1, Event::NatHandoff), 0);

    // The same answer on worker 1: handed over, and the same frame leaves.
    two.inject("up", 1, &answer);
    let handed = two.run("gen_in");
    assert_eq!(two.event(1, Event::NatHandoff), 1, "worker 1 handed it");
    assert_eq!(handed, direct, "byte for byte");

    // A burst of them, some on each worker: every one leaves, in order, none dropped.
    for i in 0..40u16 {
        let mut a = answer.clone();
        a[42] = i as u8; // payload only: the UDP checksum is not checked by the router
        two.inject("up", i % 2, &a);
    }
    let many = two.run("gen_in");
    assert_eq!(many.len(), 40);
    let order: Vec<u8> = many
        .iter()
        .filter(|f| f[42] % 2 == 1)
        .map(|f| f[42])
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(two.event(1, Event::NatHandoff), 21);
    assert_eq!(two.drops(DropReason::NatHandoffDrop), 0);

    // A handed packet is checked by its owner: a bad IPv4 header checksum is dropped there, not forwarded.
    let mut bad = answer.clone();
    bad[24] ^= 0x55;
    two.inject("up", 1, &bad);
    assert!(two.run("gen_in").is_empty());
    assert_eq!(
        two.event(1, Event::NatHandoff),
        22,
        "handed before any check"
    );
    assert_eq!(two.counters[0].drops.get(DropReason::BadChecksum), 1);
}
