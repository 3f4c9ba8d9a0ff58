//! The router's own host stack: smoltcp on a thread of its own, fed by the workers.
//!
//! The workers deliver IP packets for the router's addresses that the fast path does not answer (TCP, other
//! protocols; see `pipelines::l3::host`) into a bounded lock-free queue, and route what this stack sends
//! from a second one. Here, one thread runs a `smoltcp::iface::Interface` of medium IP over a
//! [`smoltcp::phy::Device`] made of those two queues:
//!
//! - receive pops an IP packet the workers queued (its buffer goes back to the pool once smoltcp read it);
//! - transmit takes a buffer from the router's pool, lets smoltcp write the IP packet into it and queues it for
//!   worker 0, which puts an Ethernet header in front and routes it (FIB, adjacency, neighbour resolution). When
//!   that queue is full, transmit says so and smoltcp keeps its segments for a later round (backpressure).
//!
//! The interface does not list the router's addresses: the workers' FIB decides what is local, and smoltcp
//! takes everything it is given ("any IP" mode: a default route per family through an anchor address it
//! owns). So reloads that change addresses need nothing here, and the number of router addresses is not bound
//! by smoltcp's compile-time address limit. Replies come from the address the peer used (TCP's local
//! endpoint, RST and ICMP errors swap the addresses); the anchors, from ranges that are never routed
//! (192.0.0.8, RFC 7600's dummy address, and `100::1` in RFC 6666's discard prefix), never leave.
//!
//! Services: a TCP echo (RFC 862) on `[router] echo_port`, up to [`ECHO_SOCKETS`] connections at once.
//! Everything else is smoltcp's own behaviour: a SYN to a closed port gets a RST, another IP protocol a
//! protocol unreachable. Those unsolicited answers (TCP resets, ICMP and ICMPv6 errors) share the workers'
//! ICMP error budget, `[router] icmp_rate` per second: a SYN flood at closed ports is not answered at line
//! rate (what is over the budget is counted as `tx_rate_limited`). (UDP to the router never comes here: the fast path answers port unreachable itself,
//! within its ICMP rate limit.)
//!
//! The thread polls smoltcp, runs the services, and when idle sleeps for at most what smoltcp's timers allow,
//! backing off from [`MIN_SLEEP`] to [`MAX_SLEEP`]. It allocates (it is not the dataplane): socket buffers at
//! start, nothing per packet but a buffer from the pool.

use dataplane::counters::Stat;
use dataplane::{Pkt, Pool};
use pipelines::l3::host::HostQueues;
use pipelines::l3::TokenBucket;
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Echo connections served at once (one listening smoltcp socket each); the next SYN gets a RST.
pub const ECHO_SOCKETS: usize = 8;
/// Receive and send buffer of each echo connection.
const ECHO_BUFFER: usize = 16 * 1024;
/// An echo connection whose peer stops answering (keep-alives included) is dropped after this long.
const ECHO_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(120);
/// Keep-alive interval of echo connections.
const ECHO_KEEP_ALIVE: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(30);
/// Packets taken from the workers per round before the stack sends.
const RX_BUDGET: usize = 64;
/// First sleep of an idle round.
pub const MIN_SLEEP: Duration = Duration::from_micros(50);
/// Longest sleep of an idle thread: the most a packet waits before the stack looks at it.
pub const MAX_SLEEP: Duration = Duration::from_millis(2);
/// The IPv4 address the interface owns so that "any IP" accepts everything (never on the wire).
const ANCHOR4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 8);
/// The IPv6 twin of [`ANCHOR4`].
const ANCHOR6: Ipv6Addr = Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1);

/// The host stack's counters, written by its thread only.
#[derive(Debug, Default)]
struct Counters {
    rx_packets: Stat,
    rx_bytes: Stat,
    tx_packets: Stat,
    tx_bytes: Stat,
    tx_queue_full: Stat,
    tx_no_buffer: Stat,
    tx_too_big: Stat,
    tx_rate_limited: Stat,
    echo_connections: Stat,
    echo_bytes: Stat,
}

/// A copy of the host stack's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostStats {
    /// IP packets smoltcp took from the workers.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// IP packets smoltcp sent, handed to the workers.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Packets smoltcp sent in reply to one it received that found the output queue full (dropped; segments
    /// of open connections wait instead).
    pub tx_queue_full: u64,
    /// Packets dropped because the pool had no buffer.
    pub tx_no_buffer: u64,
    /// Packets dropped because they did not fit a buffer.
    pub tx_too_big: u64,
    /// Resets and ICMP errors not sent: over `[router] icmp_rate`.
    pub tx_rate_limited: u64,
    /// Echo connections accepted.
    pub echo_connections: u64,
    /// Bytes echoed.
    pub echo_bytes: u64,
    /// Packets waiting for the stack right now.
    pub queued_in: u64,
    /// Packets the stack sent that wait for worker 0 right now.
    pub queued_out: u64,
    /// The echo service's port (0: off).
    pub echo_port: u16,
}

/// What the control thread and the stack's thread share.
struct Shared {
    queues: Arc<HostQueues>,
    counters: Counters,
    stop: AtomicBool,
    echo_port: AtomicU16,
    /// Resets and ICMP errors the stack may send per second.
    error_rate: AtomicU32,
}

/// The running host stack. Stop it with [`HostStack::stop`] (dropping it stops it too).
pub struct HostStack {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    mtu: u16,
}

impl HostStack {
    /// Starts the stack's thread on `queues`, sending in buffers from `pool`, with IP MTU `mtu` (the smallest
    /// of the router's interfaces: TCP's MSS follows from it), the echo service on `echo_port` (0: off) and
    /// at most `error_rate` resets and ICMP errors a second.
    pub fn start(
        queues: Arc<HostQueues>,
        pool: Pool,
        mtu: u16,
        echo_port: u16,
        error_rate: u32,
    ) -> std::io::Result<HostStack> {
        let shared = Arc::new(Shared {
            queues,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            echo_port: AtomicU16::new(echo_port),
            error_rate: AtomicU32::new(error_rate),
        });
        let s = shared.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("wharf-host".into())
            .spawn(move || {
                run(&s, &pool, mtu as usize, || {
                    let _ = ready_tx.send(());
                });
                dataplane::pool::flush_thread_cache();
            })?;
        // Returns once the stack is set up (its interface and sockets allocated): what the thread allocates to
        // start then never lands in the middle of traffic, however late the scheduler runs it.
        if ready_rx.recv().is_err() {
            let _ = thread.join();
            return Err(std::io::Error::other(
                "the host stack's thread ended while setting up",
            ));
        }
        tracing::info!(mtu, echo_port, "host stack started");
        Ok(HostStack {
            shared,
            thread: Some(thread),
            mtu,
        })
    }

    /// The IP MTU the stack was started with.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Moves the echo service to `port` (0: off); open echo connections are reset.
    pub fn set_echo_port(&self, port: u16) {
        self.shared.echo_port.store(port, Ordering::Relaxed);
    }

    /// Sets the budget of resets and ICMP errors per second.
    pub fn set_error_rate(&self, rate: u32) {
        self.shared.error_rate.store(rate, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> HostStats {
        let c = &self.shared.counters;
        HostStats {
            rx_packets: c.rx_packets.get(),
            rx_bytes: c.rx_bytes.get(),
            tx_packets: c.tx_packets.get(),
            tx_bytes: c.tx_bytes.get(),
            tx_queue_full: c.tx_queue_full.get(),
            tx_no_buffer: c.tx_no_buffer.get(),
            tx_too_big: c.tx_too_big.get(),
            tx_rate_limited: c.tx_rate_limited.get(),
            echo_connections: c.echo_connections.get(),
            echo_bytes: c.echo_bytes.get(),
            queued_in: self.shared.queues.queued().0 as u64,
            queued_out: self.shared.queues.queued().1 as u64,
            echo_port: self.shared.echo_port.load(Ordering::Relaxed),
        }
    }

    /// Stops the thread and frees every packet still queued either way (before the pool goes away).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.shared.stop.store(true, Ordering::Release);
        if t.join().is_err() {
            tracing::error!("the host stack thread panicked");
        }
        let n = self.shared.queues.drain();
        tracing::info!(freed = n, "host stack stopped");
    }
}

impl Drop for HostStack {
    fn drop(&mut self) {
        self.halt();
    }
}

// ---- the device: the two queues -------------------------------------------------------------------------------

struct QueueDevice<'a> {
    shared: &'a Shared,
    pool: &'a Pool,
    mtu: usize,
    /// Where smoltcp writes a packet that has no buffer to go to (dropped).
    scratch: Vec<u8>,
    /// The budget of unsolicited answers (resets, ICMP errors).
    errors: TokenBucket,
    /// The clock of the budget.
    epoch: std::time::Instant,
}

struct Rx(Pkt);

impl RxToken for Rx {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        // The buffer goes home when the token's packet drops, right after smoltcp read it.
        f(self.0.data())
    }
}

struct Tx<'a> {
    shared: &'a Shared,
    pool: &'a Pool,
    errors: &'a mut TokenBucket,
    now_ns: u64,
    scratch: &'a mut Vec<u8>,
}

impl TxToken for Tx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let c = &self.shared.counters;
        let Some(mut pkt) = self.pool.alloc() else {
            c.tx_no_buffer.inc();
            return f(scratch(self.scratch, len));
        };
        if len > pkt.rx_room().len() {
            c.tx_too_big.inc();
            return f(scratch(self.scratch, len));
        }
        let r = f(&mut pkt.rx_room()[..len]);
        pkt.set_rx_len(len);
        if unsolicited(pkt.data())
            && !self
                .errors
                .take(self.shared.error_rate.load(Ordering::Relaxed), self.now_ns)
        {
            c.tx_rate_limited.inc();
            return r;
        }
        match self.shared.queues.push_from_host(pkt) {
            Ok(()) => {
                c.tx_packets.inc();
                c.tx_bytes.add(len as u64);
            }
            Err(_) => c.tx_queue_full.inc(),
        }
        r
    }
}

/// Whether an IP packet the stack sends is an answer nobody asked for: a TCP segment with RST, an ICMP error
/// (destination unreachable, time exceeded, parameter problem) or an ICMPv6 error (types 1 to 4). Only the
/// first header is looked at: smoltcp sends no extension headers.
fn unsolicited(ip: &[u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            let l4 = ((ip[0] & 0x0f) as usize) * 4;
            match ip[9] {
                6 => ip.get(l4 + 13).is_some_and(|f| f & 0x04 != 0),
                1 => ip.get(l4).is_some_and(|t| matches!(t, 3 | 11 | 12)),
                _ => false,
            }
        }
        Some(6) if ip.len() >= 40 => match ip[6] {
            6 => ip.get(40 + 13).is_some_and(|f| f & 0x04 != 0),
            58 => ip.get(40).is_some_and(|t| (1..=4).contains(t)),
            _ => false,
        },
        _ => false,
    }
}

fn scratch(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}

impl Device for QueueDevice<'_> {
    type RxToken<'b>
        = Rx
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let pkt = self.shared.queues.pop_to_host()?;
        let c = &self.shared.counters;
        c.rx_packets.inc();
        c.rx_bytes.add(pkt.len() as u64);
        let now_ns = self.epoch.elapsed().as_nanos() as u64 + 1;
        Some((
            Rx(pkt),
            Tx {
                shared: self.shared,
                pool: self.pool,
                errors: &mut self.errors,
                now_ns,
                scratch: &mut self.scratch,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        // A full output queue holds smoltcp's segments back until the workers took some.
        if self.shared.queues.output_full() {
            return None;
        }
        let now_ns = self.epoch.elapsed().as_nanos() as u64 + 1;
        Some(Tx {
            shared: self.shared,
            pool: self.pool,
            errors: &mut self.errors,
            now_ns,
            scratch: &mut self.scratch,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

// ---- the echo service ---------------------------------------------------------------------------------------

struct Echo {
    port: u16,
    sockets: Vec<(SocketHandle, bool)>,
    buf: Vec<u8>,
}

impl Echo {
    fn new(set: &mut SocketSet<'_>, port: u16) -> Echo {
        let sockets = (0..ECHO_SOCKETS)
            .map(|_| {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; ECHO_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; ECHO_BUFFER]),
                );
                s.set_timeout(Some(ECHO_TIMEOUT));
                s.set_keep_alive(Some(ECHO_KEEP_ALIVE));
                (set.add(s), false)
            })
            .collect();
        Echo {
            port,
            sockets,
            buf: vec![0; ECHO_BUFFER],
        }
    }

    /// Moves the service to `port`: every socket is reset and listens again there (unless 0).
    fn set_port(&mut self, set: &mut SocketSet<'_>, port: u16) {
        for (h, active) in &mut self.sockets {
            set.get_mut::<tcp::Socket>(*h).abort();
            *active = false;
        }
        self.port = port;
    }

    /// Puts every socket that is done (closed, or in TIME-WAIT, whose job is left to the peer) back to
    /// listening. Run after every packet in: a connection's last ACK and the next client's SYN may come in one
    /// batch, and the SYN must find the freed socket listening.
    fn relisten(&mut self, set: &mut SocketSet<'_>) {
        if self.port == 0 {
            return;
        }
        for (h, active) in &mut self.sockets {
            let s = set.get_mut::<tcp::Socket>(*h);
            if !s.is_open() {
                // Its connection is over: the next one on this socket is counted anew.
                *active = false;
                let _ = s.listen(self.port);
            }
        }
    }

    /// Echoes what arrived, closes what the peer closed, listens again where done. True if anything moved.
    fn serve(&mut self, set: &mut SocketSet<'_>, c: &Counters) -> bool {
        let mut moved = false;
        self.relisten(set);
        for (h, active) in &mut self.sockets {
            let s = set.get_mut::<tcp::Socket>(*h);
            if s.is_active() && !*active {
                c.echo_connections.inc();
                *active = true;
            }
            while s.can_recv() {
                let room = (s.send_capacity() - s.send_queue()).min(self.buf.len());
                if room == 0 {
                    break;
                }
                let n = s.recv_slice(&mut self.buf[..room]).unwrap_or(0);
                if n == 0 {
                    break;
                }
                // It fits: at most `room` bytes were read.
                let sent = s.send_slice(&self.buf[..n]).unwrap_or(0);
                c.echo_bytes.add(sent as u64);
                moved = true;
            }
            if s.state() == tcp::State::CloseWait && s.recv_queue() == 0 {
                // The peer is done and everything it sent is echoed (or queued): our FIN follows the data.
                s.close();
                moved = true;
            }
        }
        moved
    }
}

// ---- the thread ---------------------------------------------------------------------------------------------

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

/// The stack's thread: sets up the interface and the echo service, calls `ready`, then polls until stopped.
fn run(shared: &Shared, pool: &Pool, mtu: usize, ready: impl FnOnce()) {
    let mut dev = QueueDevice {
        shared,
        pool,
        mtu,
        scratch: Vec::new(),
        errors: TokenBucket::default(),
        epoch: std::time::Instant::now(),
    };
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = seed();
    let mut iface = Interface::new(config, &mut dev, Instant::now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::from(ANCHOR4), 32));
        let _ = a.push(IpCidr::new(IpAddress::from(ANCHOR6), 128));
    });
    // Replies go "through" the anchors: the workers route them for real.
    let _ = iface.routes_mut().add_default_ipv4_route(ANCHOR4);
    let _ = iface.routes_mut().add_default_ipv6_route(ANCHOR6);
    iface.set_any_ip(true);
    let mut sockets = SocketSet::new(Vec::new());
    let mut echo = Echo::new(&mut sockets, shared.echo_port.load(Ordering::Relaxed));
    ready();
    let mut sleep = MIN_SLEEP;
    while !shared.stop.load(Ordering::Acquire) {
        let port = shared.echo_port.load(Ordering::Relaxed);
        if port != echo.port {
            echo.set_port(&mut sockets, port);
        }
        let now = Instant::now();
        let mut busy = false;
        echo.relisten(&mut sockets);
        for _ in 0..RX_BUDGET {
            match iface.poll_ingress_single(now, &mut dev, &mut sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => busy = true,
                PollIngressSingleResult::SocketStateChanged => {
                    busy = true;
                    echo.relisten(&mut sockets);
                }
            }
        }
        iface.poll_egress(now, &mut dev, &mut sockets);
        if echo.serve(&mut sockets, &shared.counters) {
            busy = true;
            iface.poll_egress(now, &mut dev, &mut sockets);
        }
        if busy || shared.queues.has_input() {
            sleep = MIN_SLEEP;
            continue;
        }
        let timers = iface
            .poll_delay(now, &sockets)
            .map(Duration::from)
            .unwrap_or(MAX_SLEEP);
        // At least a little: a timer already due with the output queue full would spin.
        std::thread::sleep(sleep.min(timers).max(Duration::from_micros(10)));
        sleep = (sleep * 2).min(MAX_SLEEP);
    }
}
