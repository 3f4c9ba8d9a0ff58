//! The DPDK backend over virtual devices: `net_ring` pairs, `net_null` and `net_pcap`, driven by a real worker.
//!
//! DPDK runs one EAL per process, so this binary has one test that initialises it (no hugepages), runs every
//! scenario in turn, and cleans the EAL up at the end (its runtime directory must be gone). No root is needed.
#![cfg(feature = "dpdk")]

use arc_swap::ArcSwap;
use dataplane::port::dpdk::{
    DpdkError, DpdkPool, DpdkPoolConfig, DpdkPort, DpdkPortConfig, Eal, EalConfig,
};
use dataplane::traffic::{seq_of, udp4_frame, Udp4Flow, SEQ_OFFSET};
use dataplane::worker::{BurstCtx, Dataplane, IdlePolicy, Processor, TxBatches, WorkerSpec};
use dataplane::{Burst, Meta, Pool, PoolConfig, Port, PortQueue};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Port 0 to port 1 and back; on the way out of port 1, the MACs are rewritten (the "golden" transformation the
/// pcap scenario checks). Counts the VLAN-tagged frames it saw.
struct Cross {
    rewrite: Option<([u8; 6], [u8; 6])>,
    tagged: Arc<AtomicU64>,
}

impl Processor for Cross {
    type State = ();
    fn generation(&self) -> u64 {
        1
    }
    fn new_state(&self, _worker: usize) {}
    fn process(&self, _st: &mut (), ctx: &BurstCtx, burst: &mut Burst, out: &mut TxBatches) {
        for mut p in burst.drain() {
            if p.meta().flags & Meta::FLAG_VLAN != 0 {
                self.tagged.fetch_add(1, Ordering::Relaxed);
            }
            let to = 1 - ctx.in_port.min(1);
            if let (1, Some((src, dst))) = (to, self.rewrite) {
                let d = p.data_mut();
                d[0..6].copy_from_slice(&dst);
                d[6..12].copy_from_slice(&src);
            }
            out.send(to, p);
        }
    }
}

fn start(ports: Vec<Arc<dyn Port>>, cross: Cross) -> Dataplane<Cross> {
    Dataplane::start(
        ports,
        &[WorkerSpec {
            core: None,
            burst_size: 32,
            idle: IdlePolicy::default(),
        }],
        Arc::new(ArcSwap::from_pointee(cross)),
    )
    .expect("dataplane starts")
}

fn cross() -> Cross {
    Cross {
        rewrite: None,
        tagged: Arc::default(),
    }
}

/// A directory removed at the end, also when a scenario fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("wharf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn frame(seq: u64, len: usize) -> Vec<u8> {
    let mut f = udp4_frame(&Udp4Flow::default(), len);
    f[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&seq.to_be_bytes());
    f
}

/// Sends `frames` on `tx` (each in a buffer from `alloc`) while receiving on `rx`, at most `window` frames in
/// flight (the rings in between are short and the worker drops what a full ring refuses); returns what arrived.
fn pump(
    tx: &mut dyn PortQueue,
    rx: &mut dyn PortQueue,
    frames: &[Vec<u8>],
    mut alloc: impl FnMut() -> Option<dataplane::Pkt>,
) -> Vec<Vec<u8>> {
    const WINDOW: usize = 256;
    let mut out = Burst::new(32);
    let mut inb = Burst::new(32);
    let mut got = Vec::new();
    let mut next = 0;
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < frames.len() {
        while next < frames.len() && !out.is_full() && next - got.len() < WINDOW {
            let mut p = alloc().expect("a buffer for the generator");
            assert!(p.set_frame(&frames[next]));
            out.push(p).unwrap();
            next += 1;
        }
        sent += tx.tx_burst(&mut out);
        rx.rx_burst(&mut inb);
        got.extend(inb.drain().map(|p| p.data().to_vec()));
        assert!(
            Instant::now() < deadline,
            "sent {sent}, received {} of {}",
            got.len(),
            frames.len()
        );
    }
    got
}

fn pool(eal: &Eal, buffers: u32) -> DpdkPool {
    DpdkPool::new(
        eal,
        &DpdkPoolConfig {
            buffers,
            ..Default::default()
        },
    )
    .expect("mempool")
}

/// Generator → ring pair → wharf port a → worker → port b → ring pair → sink, and back; buffers from the
/// ports' mempool (zero copy), from a second mempool of wharf's (adopted as they are: not the receiving
/// queue's own mempool, so off the receive loop's common path) and from a wharf pool (copied into mbufs at
/// tx). Frames arrive in order and unchanged, every port counts them, and every mbuf goes home.
fn ring_forward(eal: &Eal) {
    let pool = pool(eal, 4096);
    let second = self::pool(eal, 1024);
    let own = Pool::new(&PoolConfig {
        buffers: 512,
        hugepages: false,
        ..Default::default()
    })
    .unwrap();
    let (gen, a) = DpdkPort::ring_pair("gen", "a", 1, 1024, &pool).expect("ring pair gen/a");
    let (b, sink) = DpdkPort::ring_pair("b", "sink", 1, 1024, &pool).expect("ring pair b/sink");
    assert_eq!(a.info().backend, "dpdk");
    assert!(a.info().link_up, "net_ring links are up");
    assert_eq!(
        a.info().steering,
        dataplane::rss::Steering::Unknown,
        "net_ring does not hash: no RSS to predict"
    );
    let (a, b) = (Arc::new(a), Arc::new(b));
    let dp = start(vec![a.clone() as Arc<dyn Port>, b.clone()], cross());
    let mut gq = gen.open_queue(0).unwrap();
    let mut sq = sink.open_queue(0).unwrap();

    let n = 5000;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(i as u64, 60 + (i % 1400))).collect();
    let mut i = 0;
    let got = pump(&mut *gq, &mut *sq, &frames, || {
        i += 1;
        match i % 5 {
            0 => own.alloc(),
            1 => second.alloc(),
            _ => pool.alloc(),
        }
    });
    assert!(got == frames, "frames arrive unchanged and in order");

    // And back.
    let back: Vec<Vec<u8>> = (0..300).map(|i| frame(1_000_000 + i, 128)).collect();
    let got = pump(&mut *sq, &mut *gq, &back, || pool.alloc());
    assert_eq!(
        got.iter().map(|f| seq_of(f).unwrap()).collect::<Vec<_>>(),
        (1_000_000..1_000_300).collect::<Vec<_>>()
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    while dp.workers()[0].counters.tx_packets.get() < (n + back.len()) as u64 {
        assert!(Instant::now() < deadline, "worker counters");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (ca, cb) = (a.counters(), b.counters());
    assert_eq!(
        (ca.rx_packets, ca.tx_packets),
        (n as u64, back.len() as u64)
    );
    assert_eq!(
        (cb.rx_packets, cb.tx_packets),
        (back.len() as u64, n as u64)
    );
    assert_eq!(
        ca.rx_bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert!(ca.drops.is_empty() && cb.drops.is_empty(), "{ca:?} {cb:?}");
    assert_eq!(dp.drops(), vec![]);
    assert_eq!(a.stats().ipackets, n as u64, "DPDK's own count agrees");
    dp.stop();
    drop((gq, sq));
    assert_eq!(pool.available(), pool.capacity(), "every mbuf went home");
    assert_eq!(
        second.available(),
        second.capacity(),
        "the second mempool's mbufs too"
    );
    dataplane::pool::flush_thread_cache();
    assert_eq!(
        own.available(),
        own.capacity(),
        "the wharf-pool frames were copied and freed"
    );
}

/// `net_null` as a source (64-byte frames, as fast as the worker takes them) forwarded to a `net_null` sink:
/// what one port receives, the other sends, and DPDK's counters say the same.
fn null_forward(eal: &Eal) {
    let pool = pool(eal, 4096);
    let src = DpdkPort::open(
        "src",
        &DpdkPortConfig {
            device: "net_null_w0,size=64,copy=1".into(),
            ..Default::default()
        },
        &pool,
    )
    .expect("net_null source");
    let dst = DpdkPort::open(
        "dst",
        &DpdkPortConfig {
            device: "net_null_w1,no-rx=1".into(),
            ..Default::default()
        },
        &pool,
    )
    .expect("net_null sink");
    let (src, dst) = (Arc::new(src), Arc::new(dst));
    let dp = start(vec![src.clone() as Arc<dyn Port>, dst.clone()], cross());
    std::thread::sleep(Duration::from_millis(300));
    dp.stop();
    let (cs, cd) = (src.counters(), dst.counters());
    assert!(
        cs.rx_packets > 10_000,
        "the null source delivered only {}",
        cs.rx_packets
    );
    assert_eq!(cs.rx_bytes, cs.rx_packets * 64);
    assert_eq!(cd.tx_packets, cs.rx_packets, "everything received was sent");
    assert_eq!(
        dst.stats().opackets,
        cd.tx_packets,
        "the sink counted what we sent"
    );
    assert_eq!(src.stats().ipackets, cs.rx_packets);
    drop((src, dst));
    assert_eq!(pool.available(), pool.capacity(), "every mbuf went home");
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::with_header(f, PcapHeader::default()).unwrap();
    for (i, fr) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(i as u64),
            fr.len() as u32,
            fr,
        ))
        .unwrap();
    }
}

fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(f).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

/// A pcap file through `net_pcap`: read by port p0, forwarded with a MAC rewrite to p1, written by p1; the
/// output file equals the input with the rewrite applied (the golden comparison). A runt frame is dropped and
/// counted; a VLAN-tagged frame goes through as it is.
fn pcap_golden(eal: &Eal) {
    let dir = TempDir::new("dpdk-pcap");
    let (input, empty, out0, out1) = (
        dir.path().join("in.pcap"),
        dir.path().join("empty.pcap"),
        dir.path().join("out0.pcap"),
        dir.path().join("out1.pcap"),
    );
    let mut frames: Vec<Vec<u8>> = (0..40).map(|i| frame(i, 60 + i as usize * 37)).collect();
    let mut tagged = frame(99, 100);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    frames.push(tagged);
    let mut with_runt = frames.clone();
    with_runt.insert(5, vec![0xee; 10]);
    write_pcap(&input, &with_runt);
    write_pcap(&empty, &[]);

    let pool = pool(eal, 2048);
    let p0 = DpdkPort::open(
        "p0",
        &DpdkPortConfig {
            device: format!(
                "net_pcap_w0,rx_pcap={},tx_pcap={}",
                input.display(),
                out0.display()
            ),
            ..Default::default()
        },
        &pool,
    )
    .expect("net_pcap p0");
    let p1 = DpdkPort::open(
        "p1",
        &DpdkPortConfig {
            device: format!(
                "net_pcap_w1,rx_pcap={},tx_pcap={}",
                empty.display(),
                out1.display()
            ),
            ..Default::default()
        },
        &pool,
    )
    .expect("net_pcap p1");
    let (src_mac, dst_mac) = ([0x02, 0xaa, 0, 0, 0, 1], [0x02, 0xbb, 0, 0, 0, 2]);
    let seen_tagged = Arc::new(AtomicU64::new(0));
    let (p0, p1) = (Arc::new(p0), Arc::new(p1));
    let dp = start(
        vec![p0.clone() as Arc<dyn Port>, p1.clone()],
        Cross {
            rewrite: Some((src_mac, dst_mac)),
            tagged: seen_tagged.clone(),
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while p1.counters().tx_packets < frames.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "only {:?} went through",
            p1.counters()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    dp.stop();
    let c0 = p0.counters();
    assert_eq!(c0.rx_packets, frames.len() as u64);
    assert_eq!(
        c0.drops,
        vec![("truncated", 1)],
        "the runt is dropped and counted"
    );
    // The tag stays in the frame as on the wire (net_pcap does not strip it), so it is not reported apart.
    assert_eq!(seen_tagged.load(Ordering::Relaxed), 0);
    // Closing the ports flushes the output files.
    drop((p0, p1));
    let expected: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[0..6].copy_from_slice(&dst_mac);
            f[6..12].copy_from_slice(&src_mac);
            f
        })
        .collect();
    let got = read_pcap(&out1);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "out1.pcap differs from the golden frames");
    assert!(read_pcap(&out0).is_empty());
    assert_eq!(pool.available(), pool.capacity());
}

/// Buffers from the mempool behave as wharf buffers: clone from the same mempool, push and pull headroom in
/// place, go through a port without a copy (the receiver gets the very element the sender filled).
fn mbuf_is_pkt(eal: &Eal) {
    let pool = pool(eal, 256);
    let mut p = pool.alloc().unwrap();
    assert_eq!(p.headroom(), 128);
    assert_eq!(p.tailroom(), 2048);
    assert!(p.set_frame(&frame(7, 100)));
    p.meta_mut().in_port = 3;
    let c = p.try_clone().expect("clone from the same mempool");
    assert_ne!(c.buffer_index(), p.buffer_index());
    assert_eq!((c.data(), c.meta().in_port), (p.data(), 3));
    assert_eq!(pool.available(), pool.capacity() - 2);
    drop(c);

    // VXLAN-style encapsulation in the headroom, sent through a ring pair.
    let (x, y) = DpdkPort::ring_pair("x", "y", 1, 64, &pool).unwrap();
    let (mut xq, mut yq) = (x.open_queue(0).unwrap(), y.open_queue(0).unwrap());
    p.prepend(50).unwrap().fill(0xab);
    let elt = p.as_elt_ptr();
    let sent = p.data().to_vec();
    let mut burst = Burst::new(4);
    burst.push(p).unwrap();
    assert_eq!(xq.tx_burst(&mut burst), 1);
    assert_eq!(yq.rx_burst(&mut burst), 1);
    let mut r = burst.pop().unwrap();
    assert_eq!(r.as_elt_ptr(), elt, "the same buffer: no copy");
    assert_eq!(r.data(), &sent[..]);
    assert_eq!(r.headroom(), 78);
    assert!(r.strip_front(50));
    assert_eq!(r.data(), &frame(7, 100)[..]);
    drop(r);

    // Exhaustion: every buffer can be taken, then alloc and clone say no.
    let held: Vec<_> = std::iter::from_fn(|| pool.alloc()).collect();
    assert_eq!(held.len(), pool.capacity());
    assert!(held[0].try_clone().is_none());
    drop(held);
    drop((xq, yq, x, y));
    assert_eq!(pool.available(), pool.capacity());
}

/// What DPDK refuses comes back as a message naming the cause and the fix, and nothing crashes.
fn errors(eal: &Eal) {
    let pool = pool(eal, 512);
    let open = |name: &str, cfg: DpdkPortConfig| {
        DpdkPort::open(name, &cfg, &pool)
            .err()
            .map(|e| e.to_string())
    };
    let err = open(
        "nope",
        DpdkPortConfig {
            device: "net_nosuchpmd0".into(),
            ..Default::default()
        },
    )
    .expect("unknown driver");
    assert!(
        err.contains("cannot attach") && err.contains("librte-net"),
        "{err}"
    );

    let dir = TempDir::new("dpdk-err");
    let empty = dir.path().join("e.pcap");
    write_pcap(&empty, &[]);
    let err = open(
        "twoq",
        DpdkPortConfig {
            device: format!(
                "net_pcap_we,rx_pcap={},tx_pcap={}",
                empty.display(),
                dir.path().join("o.pcap").display()
            ),
            queues: 2,
            ..Default::default()
        },
    )
    .expect("more queues than the device has");
    assert!(
        err.contains("at most 1 rx") && err.contains("fewer workers"),
        "{err}"
    );

    let err = open("blank", DpdkPortConfig::default()).expect("no device");
    assert!(err.contains("no DPDK device"), "{err}");

    let err = open(
        "jumbo",
        DpdkPortConfig {
            device: "net_null_wj".into(),
            mtu: Some(9000),
            ..Default::default()
        },
    )
    .expect("MTU larger than the buffers");
    assert!(err.contains("data room"), "{err}");

    let cfg = DpdkPortConfig {
        device: "net_null_wd,no-rx=1".into(),
        ..Default::default()
    };
    let first = DpdkPort::open("d1", &cfg, &pool).expect("first open");
    let err = open("d2", cfg.clone()).expect("second open of one device");
    assert!(err.contains("already open"), "{err}");
    drop(first);
    DpdkPort::open("d3", &cfg, &pool).expect("reopened after close");

    assert!(DpdkPort::ring_pair("r1", "r2", 0, 64, &pool).is_err());

    let other = EalConfig::no_huge("wharf-other", 256);
    let err = Eal::init(&other).unwrap_err();
    assert!(matches!(err, DpdkError::AlreadyInitialised { .. }), "{err}");
    assert!(err.to_string().contains("one EAL per process"), "{err}");
    assert!(DpdkPool::new(
        eal,
        &DpdkPoolConfig {
            buffers: 10,
            ..Default::default()
        }
    )
    .is_err());
}

#[test]
fn dpdk_virtual_devices() {
    let cfg = EalConfig::no_huge(&format!("wharf-t-vdev-{}", std::process::id()), 512);
    let eal = Eal::init(&cfg).expect("EAL without hugepages");
    assert!(Eal::init(&cfg).is_ok(), "same options: the running EAL");
    let runtime = eal.runtime_dir();
    // Removed also if a scenario fails (the EAL's own cleanup below checks it is gone on success).
    let _runtime_guard = TempDir(runtime.clone());
    mbuf_is_pkt(&eal);
    ring_forward(&eal);
    null_forward(&eal);
    pcap_golden(&eal);
    errors(&eal);
    eal.cleanup()
        .expect("EAL cleanup once everything is closed");
    assert!(
        !runtime.exists(),
        "runtime directory {} removed",
        runtime.display()
    );
    assert!(matches!(Eal::init(&cfg), Err(DpdkError::Unavailable(_))));
}
