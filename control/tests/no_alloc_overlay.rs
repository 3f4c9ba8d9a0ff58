//! No heap allocation per packet on the overlay path in steady state: a counting global allocator watches every
//! thread while the full router (ring ports, one worker) encapsulates 100k frames (bridge, staging, VXLAN
//! headers in the headroom, routing out of the underlay) and decapsulates 100k (L3 local delivery, VXLAN checks,
//! learning against the VTEP, bridge), after a warm-up.

use control::router::Router;
use dataplane::traffic::{udp4_frame, Udp4Flow};
use dataplane::{Burst, Port};
use pipelines::l3::neigh::NeighKey;

use std::time::{Duration, Instant};

mod common;

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

const CONFIG: &str = r#"
[dataplane]
buffers = 4096
workers = 1
idle = "adaptive"

[[ports]]
name = "e"
backend = "ring"
peer = "gen_e"

[[ports]]
name = "u"
backend = "ring"
peer = "gen_u"
addresses = ["192.0.2.1/24"]

[[networks]]
name = "ov"
mode = "overlay"
ports = ["e"]

[networks.vxlan]
vni = 42
underlay = "u"
remotes = ["192.0.2.2"]

[[networks.vxlan.fdb]]
mac = "02:00:00:00:00:0d"
vtep = "192.0.2.2"
"#;

const REMOTE_MAC: [u8; 6] = [2, 0x22, 0, 0, 0, 2];

#[test]
fn the_overlay_allocates_nothing_per_packet() {
    const WARMUP: u64 = 10_000;
    const MEASURED: u64 = 100_000;
    let cfg = control::config::parse(CONFIG, "no_alloc_overlay.toml").unwrap();
    let router = Router::start(cfg, None).unwrap();
    let u_mac = {
        let snap = router.dataplane().snapshot().load();
        let i = snap.l3.ifaces.iter().position(|i| i.name == "u").unwrap();
        assert!(snap.l3.neigh.set_static(
            &NeighKey::v4(i as u16, u32::from_be_bytes([192, 0, 2, 2])),
            &REMOTE_MAC
        ));
        snap.l3.ifaces[i].mac
    };
    // Encap: from local A to remote D (static FDB entry). Decap: from remote B to A.
    let a = [2, 0, 0, 0, 0, 0x0a];
    let encap_in = udp4_frame(
        &Udp4Flow {
            src_mac: a,
            dst_mac: [2, 0, 0, 0, 0, 0x0d],
            ..Udp4Flow::default()
        },
        60,
    );
    let inner_back = udp4_frame(
        &Udp4Flow {
            src_mac: [2, 0, 0, 0, 0, 0x0b],
            dst_mac: a,
            ..Udp4Flow::default()
        },
        60,
    );
    let decap_in = {
        let mut v = vec![0u8; 50];
        v[0..6].copy_from_slice(&u_mac);
        v[6..12].copy_from_slice(&REMOTE_MAC);
        v[12..14].copy_from_slice(&[8, 0]);
        let o = pipelines::wire::vxlan::Outer {
            src: [192, 0, 2, 2],
            dst: [192, 0, 2, 1],
            src_port: 50000,
            dst_port: 4789,
            vni: 42,
            ttl: 64,
            df: false,
            ident: 0,
        };
        assert!(pipelines::wire::vxlan::write_outer(
            &mut v[14..],
            &o,
            inner_back.len()
        ));
        v.extend_from_slice(&inner_back);
        v
    };
    let pool = router.pool().clone();
    let mut qe = router.ring_peer("gen_e").unwrap().open_queue(0).unwrap();
    let mut qu = router.ring_peer("gen_u").unwrap().open_queue(0).unwrap();
    let mut tx = Burst::new(32);
    let mut rx = Burst::new(256);
    let (mut encapped, mut decapped) = (0u64, 0u64);
    let mut run = |n: u64, encapped: &mut u64, decapped: &mut u64| {
        let (mut sent, deadline) = (0u64, Instant::now() + Duration::from_secs(60));
        let target = (*encapped + n, *decapped + n);
        while (*encapped, *decapped) != target && Instant::now() < deadline {
            // Credit window: never more in flight than the rings hold.
            if sent < n && sent < (*encapped).min(*decapped) + 256 - (target.0 - n) {
                for (q, f) in [(&mut qe, &encap_in), (&mut qu, &decap_in)] {
                    for _ in 0..16 {
                        let mut p = pool.alloc().expect("pool");
                        assert!(p.set_frame(f));
                        let _ = tx.push(p);
                    }
                    q.tx_burst(&mut tx);
                    tx.clear();
                }
                sent += 16;
            }
            qu.rx_burst(&mut rx);
            for p in rx.drain() {
                // VXLAN to the remote VTEP (the ARP requests at start, if any, are not counted).
                if p.len() == 110 && p.data()[30..34] == [192, 0, 2, 2] {
                    *encapped += 1;
                }
            }
            qe.rx_burst(&mut rx);
            for p in rx.drain() {
                if p.data() == inner_back.as_slice() {
                    *decapped += 1;
                }
            }
        }
    };
    run(WARMUP, &mut encapped, &mut decapped);
    assert_eq!(
        (encapped, decapped),
        (WARMUP, WARMUP),
        "drops: {}",
        router.show_drops()
    );
    common::counting::counting(true);
    run(MEASURED, &mut encapped, &mut decapped);
    common::counting::counting(false);
    assert_eq!(
        (encapped, decapped),
        (WARMUP + MEASURED, WARMUP + MEASURED),
        "drops: {}",
        router.show_drops()
    );
    assert_eq!(
        common::counting::allocations(),
        0,
        "heap allocations while encapsulating and decapsulating {MEASURED} frames each"
    );
    drop((qe, qu));
    router.stop();
}
