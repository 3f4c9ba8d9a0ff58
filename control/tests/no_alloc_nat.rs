//! No heap allocation per packet through the NAT in steady state: a counting global allocator watches every
//! thread while the router (ring ports, one worker) translates 200k packets of 64 established UDP flows, half
//! out (masquerade) and half back in.

use control::router::Router;
use dataplane::{Burst, Port, PortQueue};
use etherparse::PacketBuilder;

use std::time::{Duration, Instant};

mod common;

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

const FLOWS: usize = 64;

fn udp(s: ([u8; 4], u16), d: ([u8; 4], u16), dst_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], dst_mac)
        .ipv4(s.0, d.0, 64)
        .udp(s.1, d.1)
        .write(&mut f, &[0u8; 18])
        .unwrap();
    f
}

/// Sends `frames` (cycling) into `tx` and takes what comes out of `rx` until `total` came out; returns how
/// many left through `rx`.
fn pump(
    router: &Router,
    tx: &mut dyn PortQueue,
    rx: &mut dyn PortQueue,
    frames: &[Vec<u8>],
    total: u64,
) -> u64 {
    let pool = router.pool();
    let (mut sent, mut got) = (0u64, 0u64);
    let mut b = Burst::new(32);
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < total && Instant::now() < deadline {
        // Never more in flight than the rings hold.
        while sent < total && sent < got + 512 && !b.is_full() {
            let mut p = pool.alloc().expect("pool");
            p.set_frame(&frames[sent as usize % frames.len()]);
            let _ = b.push(p);
            sent += 1;
        }
        tx.tx_burst(&mut b);
        b.clear();
        rx.rx_burst(&mut b);
        // IPv4 only (the router's gratuitous ARP at start may be there too).
        got += b.iter().filter(|p| p.data()[12..14] == [8, 0]).count() as u64;
        b.clear();
    }
    got
}

#[test]
fn nat_translation_allocates_nothing_per_packet() {
    let cfg = control::config::parse(
        &common::nat_config::nat_ring_config(4096, 1, "adaptive", ""),
        "no_alloc_nat.toml",
    )
    .unwrap();
    let router = Router::start(cfg, None).unwrap();
    let mut qin = router.ring_peer("gen_in").unwrap().open_queue(0).unwrap();
    let mut qup = router.ring_peer("gen_up").unwrap().open_queue(0).unwrap();
    let mac_of = |port: &str| -> [u8; 6] {
        let snap = router.dataplane().snapshot().load();
        snap.l3.ifaces.iter().find(|i| i.name == port).unwrap().mac
    };
    let (m_in, m_up) = (mac_of("in"), mac_of("up"));
    // Static neighbours, so nothing waits for ARP.
    router.dataplane().snapshot().load().l3.neigh.set_static(
        &pipelines::l3::neigh::NeighKey::v4(1, u32::from_be_bytes([198, 51, 100, 2])),
        &[2, 0, 0, 0, 0, 0x0b],
    );
    router.dataplane().snapshot().load().l3.neigh.set_static(
        &pipelines::l3::neigh::NeighKey::v4(0, u32::from_be_bytes([10, 0, 0, 2])),
        &[2, 0, 0, 0, 0, 0x0a],
    );
    let out: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            udp(
                ([10, 0, 0, 2], 1000 + i as u16),
                ([198, 51, 100, 2], 53),
                m_in,
            )
        })
        .collect();
    // Open the flows and learn their external ports.
    let mut back = Vec::new();
    let mut b = Burst::new(64);
    for f in &out {
        let mut p = router.pool().alloc().unwrap();
        p.set_frame(f);
        b.push(p).unwrap();
        qin.tx_burst(&mut b);
        b.clear();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            qup.rx_burst(&mut b);
            b.retain(|p| p.data()[12..14] == [8, 0]);
            if !b.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{}", router.show_drops());
            std::thread::sleep(Duration::from_millis(1));
        }
        let d = b.as_slice()[0].data();
        assert_eq!(d[26..30], [198, 51, 100, 1], "masqueraded");
        let port = u16::from_be_bytes([d[34], d[35]]);
        back.push(udp(
            ([198, 51, 100, 2], 53),
            ([198, 51, 100, 1], port),
            m_up,
        ));
        b.clear();
    }
    // Warm up both directions, then count.
    assert_eq!(pump(&router, &mut *qin, &mut *qup, &out, 10_000), 10_000);
    assert_eq!(pump(&router, &mut *qup, &mut *qin, &back, 10_000), 10_000);
    common::counting::counting(true);
    let n_out = pump(&router, &mut *qin, &mut *qup, &out, 100_000);
    let n_in = pump(&router, &mut *qup, &mut *qin, &back, 100_000);
    common::counting::counting(false);
    assert_eq!((n_out, n_in), (100_000, 100_000), "{}", router.show_drops());
    let translated = router.show_stats()["events"]["nat_translated"]
        .as_u64()
        .unwrap();
    assert!(
        translated >= 220_000,
        "every packet went through the NAT ({translated})"
    );
    assert_eq!(
        common::counting::allocations(),
        0,
        "heap allocations while translating 200k packets"
    );
    drop((qin, qup));
    router.stop();
}
