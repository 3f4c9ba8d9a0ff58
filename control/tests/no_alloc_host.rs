//! No heap allocation per packet on the way to and from the router's host stack: a counting global allocator
//! watches every thread (workers, the host stack's thread, the test's smoltcp client) while 1 MB goes through
//! the echo service after a warm-up connection. The workers must allocate nothing (project rule); the host
//! stack's thread may, but does not either once its sockets exist.

use control::router::Router;
use dataplane::{Burst, Pkt, Pool, Port, PortQueue};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::net::Ipv4Addr;

use std::time::Duration;

mod common;

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

const CONFIG: &str = r#"
[dataplane]
buffers = 4096
workers = 1
idle = "adaptive"

[[ports]]
name = "inside"
backend = "ring"
peer = "host_in"
addresses = ["10.0.0.1/24"]
"#;

const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// The far end of the inside ring port, without allocating per frame: packets stay in pool buffers.
struct PeerDevice {
    q: Box<dyn PortQueue>,
    pool: Pool,
    rx: VecDeque<Pkt>,
    burst: Burst,
    tx: Burst,
}

struct PeerRx(Pkt);

impl RxToken for PeerRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0.data())
    }
}

struct PeerTx<'a> {
    q: &'a mut dyn PortQueue,
    pool: &'a Pool,
    tx: &'a mut Burst,
}

impl TxToken for PeerTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = self.pool.alloc().expect("a buffer");
        let r = f(&mut p.rx_room()[..len]);
        assert!(p.set_rx_len(len));
        self.tx.push(p).unwrap();
        assert_eq!(self.q.tx_burst(self.tx), 1);
        r
    }
}

impl Device for PeerDevice {
    type RxToken<'a>
        = PeerRx
    where
        Self: 'a;
    type TxToken<'a>
        = PeerTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(PeerRx, PeerTx<'_>)> {
        if self.rx.is_empty() {
            self.q.rx_burst(&mut self.burst);
            self.rx.extend(self.burst.drain());
        }
        let p = self.rx.pop_front()?;
        Some((
            PeerRx(p),
            PeerTx {
                q: &mut *self.q,
                pool: &self.pool,
                tx: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<PeerTx<'_>> {
        Some(PeerTx {
            q: &mut *self.q,
            pool: &self.pool,
            tx: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

struct Client {
    iface: Interface,
    dev: PeerDevice,
    sockets: SocketSet<'static>,
}

impl Client {
    fn poll_until(&mut self, what: &'static str, mut done: impl FnMut(&mut Client) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.iface
                .poll(Instant::now(), &mut self.dev, &mut self.sockets);
            if done(self) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// Sends `total` bytes of a pattern on `h` and checks every byte that comes back, without allocating.
    fn echo_on(&mut self, h: SocketHandle, total: usize, chunk: &[u8], scratch: &mut [u8]) {
        let (mut sent, mut got) = (0usize, 0usize);
        self.poll_until("the echo", |c| {
            let s = c.tcp(h);
            while sent < total && s.can_send() {
                let n = (total - sent).min(chunk.len());
                let off = sent % chunk.len();
                let n = n.min(chunk.len() - off);
                sent += s.send_slice(&chunk[off..off + n]).unwrap();
            }
            while s.can_recv() {
                let n = s.recv_slice(scratch).unwrap();
                for (i, b) in scratch[..n].iter().enumerate() {
                    assert_eq!(*b, chunk[(got + i) % chunk.len()], "byte {}", got + i);
                }
                got += n;
            }
            got >= total
        });
    }
}

#[test]
fn host_stack_traffic_allocates_nothing_per_packet() {
    let cfg = control::config::parse(CONFIG, "no_alloc_host.toml").unwrap();
    let router = Router::start(cfg, None).unwrap();
    let mut dev = PeerDevice {
        q: router.ring_peer("host_in").unwrap().open_queue(0).unwrap(),
        pool: router.pool().clone(),
        rx: VecDeque::with_capacity(256),
        burst: Burst::new(32),
        tx: Burst::new(1),
    };
    let mut ic = Config::new(HardwareAddress::Ethernet(EthernetAddress([
        2, 0, 0, 0, 0, 9,
    ])));
    ic.random_seed = 7;
    let mut iface = Interface::new(ic, &mut dev, Instant::now());
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 2), 24)).unwrap();
    });
    iface.routes_mut().add_default_ipv4_route(ROUTER).unwrap();
    let mut c = Client {
        iface,
        dev,
        sockets: SocketSet::new(Vec::with_capacity(4)),
    };
    let h = c.sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 16384]),
        tcp::SocketBuffer::new(vec![0; 16384]),
    ));
    c.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(c.iface.context(), (IpAddress::from(ROUTER), 7), 41_000)
        .unwrap();
    c.poll_until("connected", |c| c.tcp(h).may_send());
    let chunk: Vec<u8> = (0..4093u32).map(|i| (i * 13) as u8).collect();
    let mut scratch = vec![0u8; 4096];
    // Warm-up: caches, ARP, the windows.
    c.echo_on(h, 200_000, &chunk, &mut scratch);

    let before = router.show_stats()["host_stack"]["echo_bytes"]
        .as_u64()
        .unwrap();
    common::counting::counting(true);
    c.echo_on(h, 1_000_000, &chunk, &mut scratch);
    common::counting::counting(false);
    let allocs = common::counting::allocations();
    let after = router.show_stats()["host_stack"]["echo_bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after - before,
        1_000_000,
        "the megabyte went through the echo"
    );
    assert_eq!(
        allocs, 0,
        "allocations while 1 MB went to the host stack and back"
    );
    drop(c);
    router.stop();
}
