//! The bridge as the control plane sees it: `show mac` and `show bridges` after learning, `clear mac`,
//! aging by the control thread's tick, and learned MACs surviving a config reload.

use control::ctl::{handle, Request, Show};
use control::router::Router;
use dataplane::traffic::{udp4_frame, Sink, Udp4Flow};
use dataplane::{Burst, Port};
use serde_json::json;
use std::time::{Duration, Instant};

fn config(aging_s: u32) -> String {
    format!(
        r#"
[dataplane]
buffers = 1024
workers = 1

[[ports]]
name = "a"
backend = "ring"
peer = "gen_a"

[[ports]]
name = "b"
backend = "ring"
peer = "gen_b"

[[networks]]
name = "br0"
mode = "bridge"
ports = ["a", "b"]
aging_s = {aging_s}

[[networks.static_macs]]
mac = "02:00:00:00:00:99"
port = "b"
"#
    )
}

fn send_from(router: &Router, peer: &str, src: [u8; 6]) {
    let mut q = router.ring_peer(peer).unwrap().open_queue(0).unwrap();
    let mut b = Burst::new(4);
    let mut p = router.pool().alloc().unwrap();
    p.set_frame(&udp4_frame(
        &Udp4Flow {
            src_mac: src,
            dst_mac: [0xff; 6],
            ..Default::default()
        },
        64,
    ));
    b.push(p).unwrap();
    assert_eq!(q.tx_burst(&mut b), 1);
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn show_clear_age_and_reload_keep_the_mac_table_honest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.toml");
    std::fs::write(&path, config(1)).unwrap();
    let mut router = Router::start_file(&path).unwrap();
    let mut sink_q = router.ring_peer("gen_b").unwrap().open_queue(0).unwrap();
    let mut sink = Sink::new(8);

    send_from(&router, "gen_a", [2, 0, 0, 0, 0, 1]);
    sink.until(&mut *sink_q, 1, Duration::from_secs(5), |_| {});
    assert_eq!(sink.received, 1, "broadcast flooded to b");
    wait_for("the MAC to be learned", || {
        router
            .show_mac(Some("br0"))
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    let macs = router.show_mac(None).unwrap();
    assert_eq!(macs[0]["mac"], "02:00:00:00:00:99");
    assert_eq!(macs[0]["type"], "static");
    assert_eq!(macs[1]["mac"], "02:00:00:00:00:01");
    assert_eq!(
        (macs[1]["port"].as_str(), macs[1]["type"].as_str()),
        (Some("a"), Some("learned"))
    );
    assert!(router
        .show_mac(Some("nope"))
        .unwrap_err()
        .contains("no bridge network named \"nope\""));

    // Through the socket's request handler, as `wharf ctl show mac br0` and `wharf ctl clear mac` send them.
    let r = handle(
        &mut router,
        &Request::Show {
            what: Show::Bridges,
            network: None,
        },
    );
    assert_eq!(r["data"][0]["macs"], 1);
    assert_eq!(r["data"][0]["static"], 1);
    let r = handle(
        &mut router,
        &Request::ClearMac {
            network: Some("br0".into()),
        },
    );
    assert_eq!(r, json!({"ok": true, "data": {"cleared": 1}}));
    assert_eq!(
        router
            .show_mac(Some("br0"))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the static entry left"
    );

    // Learn again, reload with an unrelated change: the learned MAC survives.
    send_from(&router, "gen_a", [2, 0, 0, 0, 0, 1]);
    wait_for("relearned", || router.show_bridges()[0]["macs"] == 1);
    std::fs::write(&path, config(1).replace("aging_s = 1", "aging_s = 2")).unwrap();
    assert_eq!(router.reload().unwrap(), 2);
    assert_eq!(
        router.show_bridges()[0]["macs"],
        1,
        "learned state kept across the reload"
    );
    assert_eq!(router.show_bridges()[0]["aging_s"], 2);

    // Aging is the control thread's job: ticks over a few seconds age the silent MAC out and count it.
    wait_for("aging", || {
        router.tick();
        router.show_bridges()[0]["macs"] == 0
    });
    assert_eq!(router.show_bridges()[0]["aged"], 1);
    let stats = router.show_stats();
    assert_eq!(stats["events"]["mac_learned"], 2);
    assert_eq!(stats["events"]["flooded"], 2);
    drop(sink_q);
    router.stop();
}
