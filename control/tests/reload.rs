//! Reload under traffic: every frame is forwarded (none lost to the reload), every frame carries the MAC
//! rewrite of exactly one snapshot (source and destination from the same generation), generations never go
//! backwards along the sequence, and a bad config is refused while the old one keeps forwarding.

use control::router::Router;
use dataplane::traffic::{seq_of, udp4_frame, Sink, Source, Udp4Flow};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FRAMES: u64 = 400_000;

fn config(generation: u16) -> String {
    let [hi, lo] = generation.to_be_bytes();
    format!(
        r#"
[dataplane]
buffers = 8192
workers = 1
idle = "poll"

[[ports]]
name = "a"
backend = "ring"
peer = "gen_a"
depth = 4096

[[ports]]
name = "b"
backend = "ring"
peer = "gen_b"
depth = 4096

[[networks]]
name = "x"
mode = "xconnect"
ports = ["a", "b"]

[[networks.rewrite]]
port = "b"
src_mac = "02:00:00:00:{hi:02x}:{lo:02x}"
dst_mac = "02:00:00:01:{hi:02x}:{lo:02x}"
"#
    )
}

fn write(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    std::fs::rename(tmp, path).unwrap();
}

#[test]
fn reload_under_traffic_is_atomic_and_lossless() {
    let dir = tempfile::Builder::new()
        .prefix("wharf-reload-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("wharf.toml");
    write(&path, &config(1));
    let mut router = Router::start_file(&path).unwrap();
    let gen_a = router.ring_peer("gen_a").unwrap();
    let gen_b = router.ring_peer("gen_b").unwrap();
    let pool = router.pool().clone();
    let done = Arc::new(AtomicBool::new(false));
    // Credit window: at most WINDOW frames in flight, less than any ring holds, so no queue can overflow on
    // this 2-core machine when a thread is descheduled; any loss the test sees is the reload's.
    const WINDOW: u64 = 2048;
    let received = Arc::new(AtomicU64::new(0));

    let tx_pool = pool.clone();
    let credit = received.clone();
    let sender = std::thread::spawn(move || {
        let mut q = dataplane::Port::open_queue(&*gen_a, 0).unwrap();
        let mut src = Source::new(udp4_frame(&Udp4Flow::default(), 64), 32, Instant::now());
        while src.sent() < FRAMES || src.backlog() > 0 {
            let room = (credit.load(Ordering::Relaxed) + WINDOW).saturating_sub(src.sent());
            let want = room.min(FRAMES - src.sent());
            if src.send_burst(&mut *q, &tx_pool, want) == 0 {
                std::thread::yield_now();
            }
        }
    });
    let done2 = done.clone();
    let progress = received.clone();
    let receiver = std::thread::spawn(move || {
        let mut q = dataplane::Port::open_queue(&*gen_b, 0).unwrap();
        let mut sink = Sink::new(64);
        let mut next_seq = 0u64;
        let mut last_gen = 0u16;
        let mut gens_seen = std::collections::BTreeSet::new();
        let mut problems = Vec::new();
        sink.until(&mut *q, FRAMES, Duration::from_secs(120), |p| {
            let d = p.data();
            let seq = seq_of(d).unwrap();
            if seq != next_seq && problems.len() < 10 {
                problems.push(format!("expected seq {next_seq}, got {seq}"));
            }
            next_seq = seq + 1;
            let src_gen = u16::from_be_bytes([d[10], d[11]]);
            let dst_gen = u16::from_be_bytes([d[4], d[5]]);
            if (src_gen != dst_gen || d[0..4] != [2, 0, 0, 1] || d[6..10] != [2, 0, 0, 0])
                && problems.len() < 10
            {
                problems.push(format!(
                    "seq {seq}: mixed rewrite dst gen {dst_gen} src gen {src_gen}"
                ));
            }
            if src_gen < last_gen && problems.len() < 10 {
                problems.push(format!(
                    "seq {seq}: generation went back from {last_gen} to {src_gen}"
                ));
            }
            last_gen = src_gen;
            gens_seen.insert(src_gen);
            progress.fetch_add(1, Ordering::Relaxed);
        });
        done2.store(true, Ordering::Relaxed);
        (sink.received, gens_seen, problems)
    });

    // Reload as fast as the control plane can while traffic flows; slip in bad configs now and then.
    let mut generation = 1u16;
    let mut bad_refused = 0;
    while !done.load(Ordering::Relaxed) {
        generation += 1;
        write(&path, &config(generation));
        let g = router.reload().expect("valid config reloads");
        assert_eq!(g, generation as u64);
        if generation.is_multiple_of(10) {
            write(
                &path,
                &config(generation).replace("mode = \"xconnect\"", "mode = \"xconect\""),
            );
            assert!(router.reload().is_err(), "a bad config must be refused");
            assert_eq!(
                router.generation(),
                generation as u64,
                "the old snapshot keeps running"
            );
            bad_refused += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
        if generation == u16::MAX {
            break;
        }
    }
    sender.join().unwrap();
    let (received, gens_seen, problems) = receiver.join().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        received, FRAMES,
        "every frame forwarded: none lost to the reloads"
    );
    assert!(
        gens_seen.len() > 5,
        "traffic crossed several snapshots: {}",
        gens_seen.len()
    );
    assert!(bad_refused > 0);
    let drops = router.show_drops();
    assert_eq!(drops, serde_json::json!({}), "no drops at all");
    router.stop();
    dataplane::pool::flush_thread_cache();
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "every buffer back in the pool after stop"
    );
}
