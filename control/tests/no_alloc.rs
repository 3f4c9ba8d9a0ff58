//! No heap allocation per packet in steady state: a counting global allocator watches every thread while the
//! full router (ring ports, pinned-or-not worker, cross-connect with MAC rewrite) forwards 200k frames after a
//! warm-up.

use control::router::Router;
use dataplane::traffic::{udp4_frame, Sink, Source, Udp4Flow};

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
name = "a"
backend = "ring"
peer = "gen_a"

[[ports]]
name = "b"
backend = "ring"
peer = "gen_b"

[[networks]]
name = "x"
mode = "xconnect"
ports = ["a", "b"]

[[networks.rewrite]]
port = "b"
src_mac = "02:00:00:00:00:aa"
dst_mac = "02:00:00:00:00:bb"
"#;

#[test]
fn forwarding_allocates_nothing_per_packet() {
    const WARMUP: u64 = 20_000;
    const MEASURED: u64 = 200_000;
    let cfg = control::config::parse(CONFIG, "no_alloc.toml").unwrap();
    let router = Router::start(cfg, None).unwrap();
    let mut qa = dataplane::Port::open_queue(&*router.ring_peer("gen_a").unwrap(), 0).unwrap();
    let mut qb = dataplane::Port::open_queue(&*router.ring_peer("gen_b").unwrap(), 0).unwrap();
    let pool = router.pool().clone();
    let mut src = Source::new(udp4_frame(&Udp4Flow::default(), 64), 32, Instant::now());
    let mut sink = Sink::new(64);
    let mut rewritten = 0u64;

    let mut run = |total: u64, src: &mut Source, sink: &mut Sink, rewritten: &mut u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while sink.received < total && Instant::now() < deadline {
            // Credit window: never more in flight than the rings hold, so nothing is lost to tx_full.
            let credit = (sink.received + 512)
                .saturating_sub(src.sent())
                .min(total - src.sent());
            if credit > 0 || src.backlog() > 0 {
                src.send_burst(&mut *qa, &pool, credit);
            }
            sink.poll(&mut *qb, |p| {
                if p.data()[0..12] == [2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 0xaa] {
                    *rewritten += 1;
                }
            });
        }
    };
    run(WARMUP, &mut src, &mut sink, &mut rewritten);
    assert_eq!(sink.received, WARMUP, "drops: {}", router.show_drops());

    common::counting::counting(true);
    run(WARMUP + MEASURED, &mut src, &mut sink, &mut rewritten);
    common::counting::counting(false);

    assert_eq!(sink.received, WARMUP + MEASURED, "all frames forwarded");
    assert_eq!(
        rewritten,
        WARMUP + MEASURED,
        "and all went through the pipeline"
    );
    assert_eq!(
        common::counting::allocations(),
        0,
        "heap allocations while forwarding {MEASURED} frames"
    );
    drop((qa, qb));
    router.stop();
}
