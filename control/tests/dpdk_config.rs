//! DPDK ports from the configuration file, run by the router: the shipped `configs/dpdk-pcap.toml` (a
//! cross-connect between two `net_pcap` devices) and a bridge of three `net_pcap` devices beside it, both golden
//! (capture file in, capture files out, compared frame by frame). Reloads that would need DPDK restarted are
//! refused; the router that started the EAL ends it when it stops.
//!
//! DPDK runs one EAL per process, so this binary has one test that runs the scenarios in turn. No hugepages,
//! no NIC; the EAL's runtime directory must be gone at the end.
#![cfg(feature = "dpdk")]

use control::config;
use control::router::{ReloadError, Router};
use dataplane::port::dpdk::Eal;
use dataplane::port::pcap::{read_frames, write_frames};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// Waits until `f` holds, for at most 20 seconds.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `(rx_packets, tx_packets)` of each port of `router`.
fn port_counts(router: &Router) -> Vec<(u64, u64)> {
    router
        .dataplane()
        .ports()
        .iter()
        .map(|p| {
            let c = p.counters();
            (c.rx_packets, c.tx_packets)
        })
        .collect()
}

/// Writes `text` to `path` in one step (a reload never sees half a file).
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// Replaces `from` (which must be in `text`) by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the config");
    text.replacen(from, to, 1)
}

#[test]
fn dpdk_ports_from_the_config_file() {
    let tmp = tempfile::Builder::new()
        .prefix("wharf-dpdk-config-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    // The shipped file as it is, beside a copy of its input: its relative paths resolve into the temporary
    // directory, where its output is written.
    std::fs::create_dir(dir.join("data")).unwrap();
    let input = configs_dir().join("data/xconnect-in.pcap");
    std::fs::copy(&input, dir.join("data/xconnect-in.pcap")).unwrap();
    let shipped = std::fs::read_to_string(configs_dir().join("dpdk-pcap.toml")).unwrap();
    let path = dir.join("dpdk-pcap.toml");
    write(&path, &shipped);

    assert!(Eal::get().is_none(), "nothing started DPDK yet");
    let mut xc = Router::start_file(&path).expect("the router runs dpdk-pcap.toml");
    let runtime_dir = {
        // The router started the EAL from [dpdk].
        let eal = Eal::get().expect("the EAL runs");
        assert_eq!(*eal.config(), xc.config().dpdk_or_default().eal_config());
        assert!(eal.args().iter().any(|a| a == "--no-huge"), "{eal:?}");
        eal.runtime_dir()
    };
    assert!(runtime_dir.exists(), "{}", runtime_dir.display());
    let frames_in = read_frames(&input).unwrap();
    wait_for("the input frames out of port `out`", || {
        port_counts(&xc)[1].1 == frames_in.len() as u64
    });
    assert_eq!(
        port_counts(&xc),
        [(frames_in.len() as u64, 0), (0, frames_in.len() as u64)]
    );
    let ports = xc.show_ports();
    assert_eq!(ports[0]["backend"], "dpdk");
    assert_eq!(ports[1]["mtu"], 1500, "mtu set from the config");

    reloads(&mut xc, &path, &shipped);
    // A second router in the same process shares the EAL (and leaves it to the one that started it).
    bridge(dir);

    xc.stop();
    assert!(
        Eal::get().is_none(),
        "the router that started the EAL ended it"
    );
    assert!(
        !runtime_dir.exists(),
        "EAL runtime directory {} left behind",
        runtime_dir.display()
    );
    // Golden: the frames of the input file, in order, with the rewrite of the config applied and nothing else
    // changed.
    let out = read_frames(dir.join("data/dpdk-out.pcap.out")).unwrap();
    assert_eq!(out.len(), frames_in.len());
    for (i, (o, f)) in out.iter().zip(&frames_in).enumerate() {
        assert_eq!(&o[..6], &[2, 0, 0, 0, 0, 2], "frame {i}: destination MAC");
        assert_eq!(&o[6..12], &[2, 0, 0, 0, 0, 1], "frame {i}: source MAC");
        assert_eq!(&o[12..], &f[12..], "frame {i}: the rest untouched");
        let p = etherparse::SlicedPacket::from_ethernet(o).expect("output frame parses");
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("frame {i}: not IPv4: {p:?}")
        };
        assert_eq!(ip.header().source(), [10, 77, 0, 1]);
        assert_eq!(ip.header().destination(), [10, 77, 0, 2]);
        let Some(etherparse::TransportSlice::Udp(udp)) = &p.transport else {
            panic!("frame {i}: not UDP: {p:?}")
        };
        assert_eq!(
            (udp.source_port(), udp.destination_port()),
            (40000 + i as u16, 7)
        );
        assert_eq!(
            udp.payload(),
            format!("wharf xconnect frame {i}").as_bytes()
        );
    }
}

/// Reloads that change `[dpdk]` or a dpdk port are refused (they need a restart) and the running config stays;
/// one that changes only the network is applied.
fn reloads(router: &mut Router, path: &Path, shipped: &str) {
    let running = router.config().clone();
    let refused = [
        (
            edit(shipped, "memory_mb = 256", "memory_mb = 512"),
            "the [dpdk] section changed",
        ),
        (
            edit(shipped, "cache_size = 128", "cache_size = 64"),
            "the [dpdk] section changed",
        ),
        (
            edit(shipped, "tx_desc = 512               #", "tx_desc = 1024 #"),
            "the [[ports]] changed",
        ),
        (
            edit(shipped, "mtu = 1500", "mtu = 1400"),
            "the [[ports]] changed",
        ),
        (
            edit(shipped, "net_pcap_out,", "net_pcap_out2,"),
            "the [[ports]] changed",
        ),
    ];
    for (text, why) in refused {
        write(path, &text);
        let e = router.reload().unwrap_err();
        assert!(matches!(e, ReloadError::NeedsRestart(_)), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "{why}: restart wharf to apply (reload applies networks, rewrites and endpoints)"
            )
        );
        assert_eq!(router.config(), &running);
        assert_eq!(router.generation(), 1);
    }
    write(
        path,
        &edit(
            shipped,
            "dst_mac = \"02:00:00:00:00:02\"",
            "dst_mac = \"02:00:00:00:00:03\"",
        ),
    );
    assert_eq!(router.reload().unwrap(), 2);
    // Back to the shipped file (no frame is in flight: the input was read in full).
    write(path, shipped);
    assert_eq!(router.reload().unwrap(), 3);
    assert_eq!(router.config(), &running);
}

fn mac(last: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, last]
}

/// A bridge of three net_pcap ports, fed through `a`: frames to the static MAC of `b` go to `b` only, broadcast,
/// multicast and unknown destinations are flooded to `b` and `c`, and a frame to `a`'s own (learned) MAC goes
/// nowhere. Flood copies are mbufs of the DPDK mempool.
fn bridge(dir: &Path) {
    let (a, b, d) = (mac(0x0a), mac(0x0b), mac(0x0d));
    let dsts: [[u8; 6]; 5] = [b, [0xff; 6], d, [0x01, 0, 0x5e, 0, 0, 1], a];
    let frames: Vec<Vec<u8>> = dsts
        .iter()
        .enumerate()
        .map(|(i, dst)| {
            let mut f = Vec::new();
            etherparse::PacketBuilder::ethernet2(a, *dst)
                .ipv4([10, 77, 0, 1], [10, 77, 0, 2], 64)
                .udp(50000 + i as u16, 9)
                .write(&mut f, format!("bridge frame {i}").as_bytes())
                .unwrap();
            f
        })
        .collect();
    let input = dir.join("bridge-in.pcap");
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    write_frames(&input, &refs).unwrap();
    let text = r#"
[dataplane]
buffers = 1024
idle = "adaptive"

[dpdk]
no_huge = true
memory_mb = 256
buffers = 2048
data_room = 2048

[[ports]]
name = "a"
backend = "dpdk"
device = "net_pcap_ba,rx_pcap=bridge-in.pcap,tx_pcap=bridge-a.pcap"
rx_desc = 256
tx_desc = 256

[[ports]]
name = "b"
backend = "dpdk"
device = "net_pcap_bb,tx_pcap=bridge-b.pcap"
rx_desc = 256
tx_desc = 256

[[ports]]
name = "c"
backend = "dpdk"
device = "net_pcap_bc,tx_pcap=bridge-c.pcap"
rx_desc = 256
tx_desc = 256

[[networks]]
name = "br0"
mode = "bridge"
ports = ["a", "b", "c"]

[[networks.static_macs]]
mac = "02:00:00:00:00:0b"
port = "b"
"#;
    let path = dir.join("bridge.toml");
    write(&path, text);
    let cfg = config::load(&path).unwrap();
    let br = Router::start(cfg, Some(path)).expect("the bridge router starts");
    wait_for("the bridge's frames", || {
        let c = port_counts(&br);
        c[0].0 == 5 && c[1].1 == 4 && c[2].1 == 3
    });
    assert_eq!(br.show_drops(), serde_json::json!({"bridge_filtered": 1}));
    let macs = br.show_mac(None).unwrap();
    let rows: Vec<(String, String, String)> = macs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["mac"].as_str().unwrap().to_string(),
                r["port"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("02:00:00:00:00:0b".into(), "b".into(), "static".into()),
            ("02:00:00:00:00:0a".into(), "a".into(), "learned".into()),
        ]
    );
    br.stop();
    assert!(Eal::get().is_some(), "the EAL belongs to the first router");
    // Closing the ports flushed the files.
    let got = |port: &str| read_frames(dir.join(format!("bridge-{port}.pcap"))).unwrap();
    assert!(got("a").is_empty(), "nothing goes back out of port a");
    assert!(
        got("b") == frames[..4],
        "b: the frame to b, then the flooded ones"
    );
    assert!(got("c") == frames[1..4], "c: the flooded frames only");
}
