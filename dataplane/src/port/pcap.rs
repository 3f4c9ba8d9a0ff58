//! `pcap`: a port whose receive side replays a capture file and whose transmit side writes one.
//!
//! This is the debugging and golden-test backend, not a fast path: the reader and the writer each sit behind a
//! `std::sync::Mutex` (taken once per burst) and frames are copied between the file buffers and packet buffers.
//! Use it to feed a pipeline a fixed input and compare its output with an expected file, or to capture what a
//! pipeline sends.
//!
//! - **rx**: queue 0 replays the frames of the `rx` file in order, as fast as it is polled, [`PcapConfig::replay_count`]
//!   times, then returns 0 forever. Other queues never receive. Only Ethernet captures (link type 1) are
//!   accepted. A capture record shorter than the frame it says it held (a snap length cut it) is dropped and
//!   counted as [`DropReason::Truncated`], since forwarding half a frame would be a lie; a frame larger than a
//!   packet buffer is counted as [`DropReason::TooBig`]. A damaged file (bad record, file cut short) ends the
//!   pass where the damage starts, counted once as [`DropReason::Malformed`] and logged; it never panics.
//!   When the pool is empty the burst ends early and the frame stays in the file for the next poll, so a
//!   replay loses nothing.
//! - **tx**: every queue writes to the one `tx` file (created or truncated at open), link type Ethernet,
//!   microsecond timestamps from the system clock (one reading per burst). Writes are buffered; the file is
//!   flushed by [`PcapPort::flush`] and when the port and all its queues are dropped. A write error counts the
//!   frame as [`DropReason::TxError`]. Without a `tx` file the port is a sink: frames are counted and
//!   discarded.

use super::{Port, PortError, PortInfo, PortQueue, QueueClaim, QueueClaims};
use crate::burst::Burst;
use crate::counters::{DropReason, PortCounters, QueueCounters};
use crate::pool::Pool;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// [`PcapConfig::replay_count`] that replays the file (practically) forever.
pub const REPLAY_FOREVER: u32 = u32::MAX;

/// MTU a pcap port reports: it has no wire, so a jumbo size that never gets in the way.
pub const PCAP_MTU: u32 = 9000;

/// How a pcap port is set up.
#[derive(Clone, Debug)]
pub struct PcapConfig {
    /// File whose frames queue 0 receives; `None` for a port that never receives.
    pub rx: Option<PathBuf>,
    /// File that transmitted frames are written to (created or truncated); `None` for a sink.
    pub tx: Option<PathBuf>,
    /// How many times the rx file is played: 0 and 1 both mean once, [`REPLAY_FOREVER`] loops until the port
    /// is dropped. A file with no readable frame is played once whatever this says.
    pub replay_count: u32,
    /// Number of queues (at least 1). Only queue 0 receives; every queue transmits into the one file.
    pub queues: u16,
}

impl Default for PcapConfig {
    fn default() -> Self {
        PcapConfig {
            rx: None,
            tx: None,
            replay_count: 1,
            queues: 1,
        }
    }
}

type Reader = PcapReader<File>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bad_data(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Opens an Ethernet pcap file for reading, with errors that name the file and say what is wrong.
fn open_reader(path: &Path) -> io::Result<Reader> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    let reader = PcapReader::new(file).map_err(|e| {
        bad_data(
            path,
            format!("not a readable pcap file ({e}); pcapng is not supported, convert it with `editcap -F pcap`"),
        )
    })?;
    let link = reader.header().datalink;
    if link != DataLink::ETHERNET {
        return Err(bad_data(
            path,
            format!(
                "link type {} ({link:?}) is not supported; only Ethernet (1) captures can be replayed",
                u32::from(link)
            ),
        ));
    }
    Ok(reader)
}

fn create_writer<W: Write>(path: &Path, out: W) -> io::Result<PcapWriter<W>> {
    // The default header: pcap 2.4, microseconds, snap length 65535, Ethernet, native byte order.
    PcapWriter::new(out).map_err(|e| {
        io::Error::other(format!(
            "cannot write pcap header to {}: {e}",
            path.display()
        ))
    })
}

fn create_file(path: &Path) -> io::Result<BufWriter<File>> {
    let file = File::create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
    Ok(BufWriter::with_capacity(256 * 1024, file))
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Reads every frame of an Ethernet pcap file (a test helper; it stops with an error at the first damaged
/// record).
pub fn read_frames(path: impl AsRef<Path>) -> io::Result<Vec<Vec<u8>>> {
    let path = path.as_ref();
    let mut reader = open_reader(path)?;
    let mut frames = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.map_err(|e| bad_data(path, format!("record {}: {e}", frames.len())))?;
        frames.push(pkt.data.into_owned());
    }
    Ok(frames)
}

/// Writes `frames` to a new Ethernet pcap file at `path`, timestamped with the system clock (a test helper).
pub fn write_frames(path: impl AsRef<Path>, frames: &[&[u8]]) -> io::Result<()> {
    let path = path.as_ref();
    let mut w = create_writer(path, create_file(path)?)?;
    let ts = now();
    for (i, f) in frames.iter().enumerate() {
        let pkt = PcapPacket::new(ts + Duration::from_micros(i as u64), f.len() as u32, f);
        w.write_packet(&pkt)
            .map_err(|e| bad_data(path, format!("cannot write record {i}: {e}")))?;
    }
    w.into_writer()
        .flush()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot flush {}: {e}", path.display())))
}

/// Replay state of the rx file.
struct RxState {
    path: PathBuf,
    reader: Option<Reader>,
    /// Passes still to play after the current one.
    passes_left: u32,
    /// Frames read in the current pass (a pass with none ends the replay).
    read_this_pass: u64,
    done: bool,
}

impl RxState {
    /// Ends the current pass; starts the next if there is one.
    fn end_pass(&mut self, port: &str) {
        self.reader = None;
        if self.passes_left == 0 || self.read_this_pass == 0 {
            self.done = true;
            return;
        }
        if self.passes_left != REPLAY_FOREVER {
            self.passes_left -= 1;
        }
        self.read_this_pass = 0;
        match open_reader(&self.path) {
            Ok(r) => self.reader = Some(r),
            Err(e) => {
                tracing::warn!(port, error = %e, "pcap replay stopped: cannot reopen the file");
                self.done = true;
            }
        }
    }
}

/// The file behind the pcap writer, shared so it can be flushed while the writer lives (pcap-file 2's
/// `PcapWriter` offers no access to its inner writer except by consuming it). The lock is uncontended: it is
/// only taken under the [`TxState`] lock.
#[derive(Clone)]
struct SharedOut(Arc<Mutex<BufWriter<File>>>);

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        lock(&self.0).write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        lock(&self.0).flush()
    }
}

/// The shared writer; flushed when the last holder (port or queue) drops it.
struct TxState {
    path: PathBuf,
    writer: PcapWriter<SharedOut>,
    out: SharedOut,
    warned: bool,
}

impl Drop for TxState {
    fn drop(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::error!(file = %self.path.display(), error = %e, "cannot flush pcap output");
        }
    }
}

/// A pcap replay/capture port. See the module docs.
pub struct PcapPort {
    name: String,
    queues: u16,
    rx: Option<Arc<Mutex<RxState>>>,
    tx: Option<Arc<Mutex<TxState>>>,
    counters: Vec<Arc<QueueCounters>>,
    claims: QueueClaims,
    pool: Pool,
}

impl std::fmt::Debug for PcapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapPort")
            .field("name", &self.name)
            .field("queues", &self.queues)
            .finish()
    }
}

impl PcapPort {
    /// Opens the rx file (checking its header and link type) and creates the tx file. Buffers for received
    /// frames come from `pool`.
    pub fn open(name: &str, cfg: PcapConfig, pool: &Pool) -> Result<Arc<PcapPort>, PortError> {
        let io_err = |op: String, err: io::Error| PortError::Io {
            port: name.to_string(),
            op,
            err,
        };
        if cfg.queues == 0 {
            return Err(PortError::Other {
                port: name.to_string(),
                msg: "a pcap port needs at least one queue".into(),
            });
        }
        let rx = match &cfg.rx {
            Some(path) => {
                let reader = open_reader(path)
                    .map_err(|e| io_err(format!("opening rx capture {}", path.display()), e))?;
                Some(Arc::new(Mutex::new(RxState {
                    path: path.clone(),
                    reader: Some(reader),
                    passes_left: if cfg.replay_count == REPLAY_FOREVER {
                        REPLAY_FOREVER
                    } else {
                        cfg.replay_count.max(1) - 1
                    },
                    read_this_pass: 0,
                    done: false,
                })))
            }
            None => None,
        };
        let tx = match &cfg.tx {
            Some(path) => {
                let out = create_file(path)
                    .map(|f| SharedOut(Arc::new(Mutex::new(f))))
                    .map_err(|e| io_err(format!("creating tx capture {}", path.display()), e))?;
                let writer = create_writer(path, out.clone())
                    .map_err(|e| io_err(format!("creating tx capture {}", path.display()), e))?;
                Some(Arc::new(Mutex::new(TxState {
                    path: path.clone(),
                    writer,
                    out,
                    warned: false,
                })))
            }
            None => None,
        };
        Ok(Arc::new(PcapPort {
            name: name.to_string(),
            queues: cfg.queues,
            rx,
            tx,
            counters: (0..cfg.queues).map(|_| Default::default()).collect(),
            claims: QueueClaims::new(name, cfg.queues),
            pool: pool.clone(),
        }))
    }

    /// Writes buffered tx frames to the file.
    pub fn flush(&self) -> Result<(), PortError> {
        if let Some(tx) = &self.tx {
            let mut tx = lock(tx);
            tx.out.flush().map_err(|err| PortError::Io {
                port: self.name.clone(),
                op: format!("flushing {}", tx.path.display()),
                err,
            })?;
        }
        Ok(())
    }

    /// True once the rx file has been played the configured number of times (or there is no rx file).
    pub fn rx_done(&self) -> bool {
        self.rx.as_ref().is_none_or(|rx| lock(rx).done)
    }
}

impl Port for PcapPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.name.clone(),
            backend: "pcap",
            queues: self.queues,
            mac: None,
            mtu: PCAP_MTU,
            link_up: true,
            steering: crate::rss::Steering::Unknown,
        }
    }

    fn counters(&self) -> PortCounters {
        PortCounters::sum(self.counters.iter().map(|c| &**c))
    }

    fn open_queue(&self, queue: u16) -> Result<Box<dyn PortQueue>, PortError> {
        let claim = self.claims.claim(queue)?;
        Ok(Box::new(PcapQueue {
            port: self.name.clone(),
            queue,
            rx: if queue == 0 { self.rx.clone() } else { None },
            tx: self.tx.clone(),
            pool: self.pool.clone(),
            counters: self.counters[queue as usize].clone(),
            _claim: claim,
        }))
    }
}

struct PcapQueue {
    port: String,
    queue: u16,
    rx: Option<Arc<Mutex<RxState>>>,
    tx: Option<Arc<Mutex<TxState>>>,
    pool: Pool,
    counters: Arc<QueueCounters>,
    _claim: QueueClaim,
}

impl PortQueue for PcapQueue {
    fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let Some(rx) = &self.rx else { return 0 };
        let mut guard = lock(rx);
        let st = &mut *guard;
        let (mut n, mut bytes) = (0usize, 0u64);
        while !burst.is_full() && !st.done {
            // Take the buffer first: with the pool empty the frame stays in the file for the next poll.
            let Some(mut pkt) = self.pool.alloc() else {
                break;
            };
            let Some(reader) = st.reader.as_mut() else {
                st.end_pass(&self.port);
                continue;
            };
            match reader.next_packet() {
                None => st.end_pass(&self.port),
                Some(Err(e)) => {
                    self.counters.drops.add(DropReason::Malformed, 1);
                    tracing::warn!(
                        port = %self.port,
                        file = %st.path.display(),
                        record = st.read_this_pass,
                        error = %e,
                        "damaged pcap record; ending this pass of the replay"
                    );
                    st.end_pass(&self.port);
                }
                Some(Ok(rec)) => {
                    let data = &rec.data[..];
                    let snapped = (data.len() as u64) < u64::from(rec.orig_len);
                    st.read_this_pass += 1;
                    if snapped {
                        self.counters.drops.add(DropReason::Truncated, 1);
                        continue;
                    }
                    let room = pkt.rx_room();
                    if data.len() > room.len() {
                        self.counters.drops.add(DropReason::TooBig, 1);
                        continue;
                    }
                    room[..data.len()].copy_from_slice(data);
                    pkt.set_rx_len(data.len());
                    pkt.meta_mut().in_queue = self.queue;
                    bytes += data.len() as u64;
                    n += 1;
                    let _ = burst.push(pkt);
                }
            }
        }
        self.counters.rx_packets.add(n as u64);
        self.counters.rx_bytes.add(bytes);
        n
    }

    fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let taken = burst.len();
        let (mut sent, mut bytes) = (0u64, 0u64);
        match &self.tx {
            None => {
                sent = taken as u64;
                bytes = burst.iter().map(|p| p.len() as u64).sum();
            }
            Some(tx) => {
                let mut st = lock(tx);
                let ts = now();
                let mut failed = 0u64;
                for p in burst.iter() {
                    let data = p.data();
                    let rec = PcapPacket::new(ts, data.len() as u32, data);
                    match st.writer.write_packet(&rec) {
                        Ok(_) => {
                            sent += 1;
                            bytes += data.len() as u64;
                        }
                        Err(e) => {
                            failed += 1;
                            if !st.warned {
                                st.warned = true;
                                tracing::error!(
                                    port = %self.port,
                                    file = %st.path.display(),
                                    error = %e,
                                    "cannot write to pcap output; dropping frames"
                                );
                            }
                        }
                    }
                }
                self.counters.drops.add(DropReason::TxError, failed);
            }
        }
        burst.clear();
        self.counters.tx_packets.add(sent);
        self.counters.tx_bytes.add(bytes);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{flush_thread_cache, PoolConfig};
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use pcap_file::pcap::PcapHeader;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let d = std::env::temp_dir().join(format!(
                "wharf-pcap-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
        fn path(&self, f: &str) -> PathBuf {
            self.0.join(f)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pool(buffers: u32, room: usize) -> Pool {
        Pool::new(&PoolConfig {
            buffers,
            data_room: room,
            cache_size: 0,
            hugepages: false,
        })
        .unwrap()
    }

    /// A mix of frames: UDP and TCP over IPv4, UDP over IPv6, a VLAN-tagged one, sizes up to a full 1514.
    fn sample_frames() -> Vec<Vec<u8>> {
        let (a, b) = ([0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2]);
        let mut out = Vec::new();
        for i in 0..40u16 {
            let payload: Vec<u8> = (0..(i as usize * 37) % 1400)
                .map(|x| (x as u8) ^ (i as u8))
                .collect();
            let mut f = Vec::new();
            match i % 4 {
                0 => {
                    let bld = PacketBuilder::ethernet2(a, b)
                        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                        .udp(1000 + i, 53);
                    bld.write(&mut f, &payload).unwrap();
                }
                1 => {
                    let bld = PacketBuilder::ethernet2(b, a)
                        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
                        .tcp(80, 40000 + i, 7, 1024);
                    bld.write(&mut f, &payload).unwrap();
                }
                2 => {
                    let bld = PacketBuilder::ethernet2(a, b)
                        .ipv6([0xfd; 16], [0xfe; 16], 64)
                        .udp(5000, 6000 + i);
                    bld.write(&mut f, &payload).unwrap();
                }
                _ => {
                    let bld = PacketBuilder::ethernet2(a, b)
                        .single_vlan(etherparse::VlanId::try_new(10 + i).unwrap())
                        .ipv4([10, 1, 0, 1], [10, 1, 0, 2], 64)
                        .udp(7, 7);
                    bld.write(&mut f, &payload).unwrap();
                }
            }
            out.push(f);
        }
        // One maximal untagged frame.
        let bld = PacketBuilder::ethernet2(a, b)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2);
        let mut f = Vec::new();
        bld.write(&mut f, &[0xab; 1472]).unwrap();
        assert_eq!(f.len(), 1514);
        out.push(f);
        out
    }

    fn refs(frames: &[Vec<u8>]) -> Vec<&[u8]> {
        frames.iter().map(|f| &f[..]).collect()
    }

    /// Polls `rxq` and forwards everything to `txq` until the replay is over.
    fn forward_all(rx: &PcapPort, rxq: &mut dyn PortQueue, txq: &mut dyn PortQueue) -> usize {
        let mut total = 0;
        let mut burst = Burst::new(8);
        loop {
            let n = rxq.rx_burst(&mut burst);
            total += n;
            assert_eq!(txq.tx_burst(&mut burst), n);
            assert!(burst.is_empty());
            if n == 0 && rx.rx_done() {
                return total;
            }
        }
    }

    #[test]
    fn replay_forward_capture_is_byte_identical() {
        let dir = TempDir::new();
        let (inp, outp) = (dir.path("in.pcap"), dir.path("out.pcap"));
        let frames = sample_frames();
        write_frames(&inp, &refs(&frames)).unwrap();
        let pool = pool(64, 2048);
        let a = PcapPort::open(
            "a",
            PcapConfig {
                rx: Some(inp.clone()),
                ..Default::default()
            },
            &pool,
        )
        .unwrap();
        let b = PcapPort::open(
            "b",
            PcapConfig {
                tx: Some(outp.clone()),
                ..Default::default()
            },
            &pool,
        )
        .unwrap();
        let mut qa = a.open_queue(0).unwrap();
        let mut qb = b.open_queue(0).unwrap();
        assert_eq!(forward_all(&a, &mut *qa, &mut *qb), frames.len());
        // Done means done: no more frames, ever.
        let mut burst = Burst::new(8);
        assert_eq!(qa.rx_burst(&mut burst), 0);
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!(a.counters().rx_packets, frames.len() as u64);
        assert_eq!(a.counters().rx_bytes, bytes);
        assert_eq!(b.counters().tx_packets, frames.len() as u64);
        assert_eq!(b.counters().tx_bytes, bytes);
        assert!(a.counters().drops.is_empty() && b.counters().drops.is_empty());
        // Closing the port and its queues flushes the file.
        drop((qa, qb, a, b));

        let got = read_frames(&outp).unwrap();
        assert_eq!(got.len(), frames.len());
        for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
            assert_eq!(g, f, "frame {i} differs");
            let p = SlicedPacket::from_ethernet(g).unwrap_or_else(|e| panic!("frame {i}: {e}"));
            assert!(p.net.is_some(), "frame {i} has an IP header");
            match p.transport {
                Some(TransportSlice::Udp(_)) | Some(TransportSlice::Tcp(_)) => {}
                other => panic!("frame {i}: unexpected transport {other:?}"),
            }
        }
        // The VLAN frames kept their tags.
        let tagged = SlicedPacket::from_ethernet(&got[3]).unwrap();
        assert!(tagged.vlan.is_some());
        flush_thread_cache();
        assert_eq!(pool.available(), 64, "every buffer went home");
    }

    #[test]
    fn replay_count_repeats_and_forever_keeps_going() {
        let dir = TempDir::new();
        let inp = dir.path("in.pcap");
        let frames = sample_frames();
        write_frames(&inp, &refs(&frames)).unwrap();
        let pool = pool(64, 2048);
        let p = PcapPort::open(
            "r",
            PcapConfig {
                rx: Some(inp.clone()),
                replay_count: 3,
                ..Default::default()
            },
            &pool,
        )
        .unwrap();
        let mut q = p.open_queue(0).unwrap();
        let mut burst = Burst::new(32);
        let mut seen = Vec::new();
        loop {
            let n = q.rx_burst(&mut burst);
            seen.extend(burst.drain().map(|p| p.data().to_vec()));
            if n == 0 && p.rx_done() {
                break;
            }
        }
        assert_eq!(seen.len(), 3 * frames.len());
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(s, &frames[i % frames.len()]);
        }

        let p = PcapPort::open(
            "f",
            PcapConfig {
                rx: Some(inp),
                replay_count: REPLAY_FOREVER,
                ..Default::default()
            },
            &pool,
        )
        .unwrap();
        let mut q = p.open_queue(0).unwrap();
        let mut n = 0;
        for _ in 0..100 {
            n += q.rx_burst(&mut burst);
            burst.clear();
        }
        assert_eq!(n, 100 * 32, "looping replay never runs dry");
        assert!(!p.rx_done());
    }

    #[test]
    fn bad_files_are_refused_with_reasons() {
        let dir = TempDir::new();
        let pool = pool(8, 2048);
        let open = |path: &Path| {
            PcapPort::open(
                "bad",
                PcapConfig {
                    rx: Some(path.to_path_buf()),
                    ..Default::default()
                },
                &pool,
            )
            .map(drop)
            .unwrap_err()
            .to_string()
        };
        let missing = dir.path("missing.pcap");
        assert!(open(&missing).contains("missing.pcap"));

        let empty = dir.path("empty.pcap");
        std::fs::write(&empty, b"").unwrap();
        assert!(
            open(&empty).contains("not a readable pcap"),
            "{}",
            open(&empty)
        );

        let garbage = dir.path("garbage.pcap");
        std::fs::write(
            &garbage,
            b"this is not a capture file at all, not even close",
        )
        .unwrap();
        assert!(open(&garbage).contains("not a readable pcap"));

        let raw_ip = dir.path("rawip.pcap");
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(File::create(&raw_ip).unwrap(), header).unwrap();
        w.write_packet(&PcapPacket::new(Duration::ZERO, 20, &[0x45; 20]))
            .unwrap();
        drop(w);
        let msg = open(&raw_ip);
        assert!(
            msg.contains("link type") && msg.contains("Ethernet"),
            "{msg}"
        );
        assert!(read_frames(&raw_ip).is_err());
    }

    #[test]
    fn damaged_files_replay_their_good_prefix_without_panicking() {
        let dir = TempDir::new();
        let inp = dir.path("in.pcap");
        let frames = sample_frames();
        write_frames(&inp, &refs(&frames[..5])).unwrap();
        let whole = std::fs::read(&inp).unwrap();
        let pool = pool(64, 2048);

        // Cut in the middle of the last record: the first four replay, the damage is counted once.
        let cut = dir.path("cut.pcap");
        std::fs::write(&cut, &whole[..whole.len() - 7]).unwrap();
        let p = PcapPort::open(
            "cut",
            PcapConfig {
                rx: Some(cut.clone()),
                replay_count: 2,
                ..Default::default()
            },
            &pool,
        )
        .unwrap();
        let mut q = p.open_queue(0).unwrap();
        let mut burst = Burst::new(64);
        while q.rx_burst(&mut burst) > 0 || !p.rx_done() {}
        assert_eq!(burst.len(), 8, "two passes of the four good frames");
        assert_eq!(burst.as_slice()[4].data(), &frames[0][..]);
        assert_eq!(p.counters().drops, vec![("malformed", 2)]);
        assert!(read_frames(&cut).is_err());
        burst.clear();

        // Random damage anywhere after the header, many times: never a panic, only good frames come out.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let fuzz = dir.path("fuzz.pcap");
        for _ in 0..300 {
            let mut bytes = whole.clone();
            for _ in 0..1 + next() % 4 {
                let at = 24 + (next() as usize % (bytes.len() - 24));
                bytes[at] = next() as u8;
            }
            bytes.truncate(24 + next() as usize % (bytes.len() - 23));
            std::fs::write(&fuzz, &bytes).unwrap();
            let p = PcapPort::open(
                "fuzz",
                PcapConfig {
                    rx: Some(fuzz.clone()),
                    ..Default::default()
                },
                &pool,
            )
            .unwrap();
            let mut q = p.open_queue(0).unwrap();
            let mut guard = 0;
            while !p.rx_done() {
                q.rx_burst(&mut burst);
                burst.clear();
                guard += 1;
                assert!(guard < 1000, "replay of a damaged file must end");
            }
            let _ = read_frames(&fuzz);
        }
        drop(burst);
        flush_thread_cache();
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn snapped_and_oversized_frames_are_dropped_and_counted() {
        let dir = TempDir::new();
        let inp = dir.path("in.pcap");
        let mut w = PcapWriter::new(File::create(&inp).unwrap()).unwrap();
        let small = [7u8; 64];
        let big = [8u8; 300];
        // A record that kept 64 of 200 bytes.
        w.write_packet(&PcapPacket::new(Duration::ZERO, 200, &small))
            .unwrap();
        w.write_packet(&PcapPacket::new(Duration::ZERO, 300, &big))
            .unwrap();
        w.write_packet(&PcapPacket::new(Duration::ZERO, 64, &small))
            .unwrap();
        drop(w);
        let pool = pool(8, 256);
        let p = PcapPort::open(
            "s",
            PcapConfig {
                rx: Some(inp),
                ..Default::default()
            },
            &pool,
        )
        .unwrap();
        let mut q = p.open_queue(0).unwrap();
        let mut burst = Burst::new(8);
        while q.rx_burst(&mut burst) > 0 || !p.rx_done() {}
        assert_eq!(burst.len(), 1);
        assert_eq!(burst.as_slice()[0].data(), &small[..]);
        let c = p.counters();
        assert_eq!(c.drops, vec![("truncated", 1), ("too_big", 1)]);
        assert_eq!(c.rx_packets, 1);
    }

    #[test]
    fn empty_pool_pauses_replay_without_losing_frames() {
        let dir = TempDir::new();
        let inp = dir.path("in.pcap");
        let frames = sample_frames();
        write_frames(&inp, &refs(&frames[..6])).unwrap();
        let pool = pool(2, 2048);
        let p = PcapPort::open(
            "e",
            PcapConfig {
                rx: Some(inp),
                ..Default::default()
            },
            &pool,
        )
        .unwrap();
        let mut q = p.open_queue(0).unwrap();
        let mut got = Vec::new();
        let mut burst = Burst::new(8);
        for _ in 0..10 {
            let n = q.rx_burst(&mut burst);
            assert!(n <= 2);
            got.extend(burst.drain().map(|p| p.data().to_vec()));
        }
        assert_eq!(got, frames[..6].to_vec());
        assert!(p.counters().drops.is_empty());
    }

    #[test]
    fn many_queues_share_one_writer_and_only_queue_zero_receives() {
        let dir = TempDir::new();
        let (inp, outp) = (dir.path("in.pcap"), dir.path("out.pcap"));
        let frames = sample_frames();
        write_frames(&inp, &refs(&frames[..4])).unwrap();
        let pool = pool(16, 2048);
        let p = PcapPort::open(
            "m",
            PcapConfig {
                rx: Some(inp),
                tx: Some(outp.clone()),
                replay_count: 1,
                queues: 3,
            },
            &pool,
        )
        .unwrap();
        assert_eq!(p.info().queues, 3);
        assert_eq!(p.info().backend, "pcap");
        let mut q0 = p.open_queue(0).unwrap();
        let mut q2 = p.open_queue(2).unwrap();
        assert!(matches!(p.open_queue(2), Err(PortError::QueueTaken { .. })));
        assert!(matches!(
            p.open_queue(3),
            Err(PortError::NoSuchQueue { .. })
        ));
        let mut burst = Burst::new(8);
        assert_eq!(q2.rx_burst(&mut burst), 0, "queue 2 never receives");
        assert_eq!(q0.rx_burst(&mut burst), 4);
        // Two frames out of queue 2, then two out of queue 0.
        let mut first = Burst::new(8);
        for p in burst.drain_front(2) {
            first.push(p).unwrap();
        }
        assert_eq!(q2.tx_burst(&mut first), 2);
        assert_eq!(q0.tx_burst(&mut burst), 2);
        p.flush().unwrap();
        // Flushed: readable while the port is still open.
        assert_eq!(read_frames(&outp).unwrap(), frames[..4].to_vec());
        assert_eq!(p.counters().tx_packets, 4);
    }

    #[test]
    fn write_then_read_frames_roundtrip() {
        let dir = TempDir::new();
        let path = dir.path("rt.pcap");
        let frames = sample_frames();
        write_frames(&path, &refs(&frames)).unwrap();
        assert_eq!(read_frames(&path).unwrap(), frames);
        write_frames(&path, &[]).unwrap();
        assert!(read_frames(&path).unwrap().is_empty());
    }
}
