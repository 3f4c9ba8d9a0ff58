//! The router's host stack end to end over `ring` ports, with a smoltcp client as the host on the inside link:
//! a real TCP conversation with the router. The client resolves the router by ARP and Neighbor Discovery like
//! any host; the router hands TCP for its addresses to its smoltcp host stack and routes what that stack sends
//! back (FIB, neighbour cache). Proven here:
//!
//! - the echo service on port 7 returns 100 KB byte for byte over IPv4 (more than the windows: flow control
//!   both ways), on the address of the interface the client is on and on another interface's address, and over
//!   IPv6; the router closes after the client does;
//! - a SYN to a closed port gets a RST (both families), UDP to a closed port gets ICMP port unreachable (both
//!   families), another IP protocol gets ICMP protocol unreachable;
//! - a reload that moves `echo_port` moves the service;
//! - `show stats` counts it all (the host stack's packets, the workers' `to_host_stack`/`from_host_stack`),
//!   nothing is dropped for a full queue, and every buffer is back in the pool after `stop`.

use control::router::Router;
use dataplane::{Burst, Pkt, Pool, Port, PortQueue};
use etherparse::{IpNumber, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use serde_json::Value;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const CONFIG: &str = r#"
[dataplane]
buffers = 4096
workers = 1

[[ports]]
name = "inside"
backend = "ring"
peer = "host_in"
addresses = ["10.0.0.1/24", "fd00::1/64"]

[[ports]]
name = "outside"
backend = "ring"
peer = "host_out"
addresses = ["10.1.0.1/24", "fd01::1/64"]
"#;

const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const HOST4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ROUTER4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const OUTSIDE4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

// ---- the client's device: the far end of the router's inside ring port ----------------------------------------

struct PeerDevice {
    q: Box<dyn PortQueue>,
    pool: Pool,
    rx: VecDeque<Vec<u8>>,
    /// Every frame the router sent to the host, for the test to read.
    log: Vec<Vec<u8>>,
}

impl PeerDevice {
    fn fill(&mut self) {
        let mut b = Burst::new(32);
        self.q.rx_burst(&mut b);
        for p in b.drain() {
            self.log.push(p.data().to_vec());
            self.rx.push_back(p.data().to_vec());
        }
    }

    fn send_frame(&mut self, frame: &[u8]) {
        let mut p = self.pool.alloc().expect("a buffer");
        assert!(p.set_frame(frame));
        send(&mut *self.q, p);
    }
}

fn send(q: &mut dyn PortQueue, p: Pkt) {
    let mut b = Burst::new(1);
    b.push(p).unwrap();
    assert_eq!(q.tx_burst(&mut b), 1, "the ring took the frame");
}

struct PeerRx(Vec<u8>);

impl RxToken for PeerRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct PeerTx<'a> {
    q: &'a mut dyn PortQueue,
    pool: &'a Pool,
}

impl TxToken for PeerTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = self.pool.alloc().expect("a buffer");
        let r = f(&mut p.rx_room()[..len]);
        assert!(p.set_rx_len(len));
        send(self.q, p);
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
        self.fill();
        let f = self.rx.pop_front()?;
        Some((
            PeerRx(f),
            PeerTx {
                q: &mut *self.q,
                pool: &self.pool,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<PeerTx<'_>> {
        Some(PeerTx {
            q: &mut *self.q,
            pool: &self.pool,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

// ---- the client -------------------------------------------------------------------------------------------------

/// A smoltcp host on the inside link: 10.0.0.2/24 and fd00::2/64, the router its gateway.
struct Client {
    iface: Interface,
    dev: PeerDevice,
    sockets: SocketSet<'static>,
}

impl Client {
    fn new(router: &Router) -> Client {
        let mut dev = PeerDevice {
            q: router.ring_peer("host_in").unwrap().open_queue(0).unwrap(),
            pool: router.pool().clone(),
            rx: VecDeque::new(),
            log: Vec::new(),
        };
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(HOST_MAC)));
        cfg.random_seed = 0x5eed;
        let mut iface = Interface::new(cfg, &mut dev, Instant::now());
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::from(HOST4), 24)).unwrap();
            a.push(IpCidr::new(IpAddress::from(HOST6), 64)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(ROUTER4).unwrap();
        iface.routes_mut().add_default_ipv6_route(ROUTER6).unwrap();
        Client {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    fn poll(&mut self) {
        self.iface
            .poll(Instant::now(), &mut self.dev, &mut self.sockets);
    }

    /// Polls until `done` holds; panics with `what` after 10 s.
    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Client) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.poll();
            if done(self) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// A TCP connection from `local_port` to `to:port`, connecting.
    fn connect(&mut self, to: IpAddr, port: u16, local_port: u16) -> SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 8192]),
        );
        let h = self.sockets.add(s);
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, (IpAddress::from(to), port), local_port)
            .unwrap();
        h
    }

    /// Connects to `to:port`, sends `data`, reads back as many bytes, closes and waits for the router's FIN.
    /// Returns what came back.
    fn echo(&mut self, to: IpAddr, port: u16, local_port: u16, data: &[u8]) -> Vec<u8> {
        let h = self.connect(to, port, local_port);
        self.until(&format!("connection to {to}:{port}"), |c| {
            c.tcp(h).may_send()
        });
        let (mut sent, mut back) = (0, Vec::new());
        self.until(&format!("{} bytes echoed by {to}", data.len()), |c| {
            let s = c.tcp(h);
            if sent < data.len() && s.can_send() {
                sent += s.send_slice(&data[sent..]).unwrap();
            }
            while s.can_recv() {
                s.recv(|b| {
                    back.extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
            }
            back.len() >= data.len()
        });
        self.tcp(h).close();
        // FIN-WAIT, then TIME-WAIT once the router's FIN came: the service closed after us.
        self.until(&format!("{to}:{port} closing"), |c| !c.tcp(h).is_open());
        self.sockets.remove(h);
        back
    }

    /// Connects to a port and expects the router to refuse it: the SYN-SENT socket is reset.
    fn refused(&mut self, to: IpAddr, port: u16, local_port: u16) {
        let h = self.connect(to, port, local_port);
        let mut was_connecting = false;
        self.until(&format!("RST from {to}:{port}"), |c| {
            let s = c.tcp(h).state();
            was_connecting |= s == tcp::State::SynSent;
            was_connecting && s == tcp::State::Closed
        });
        self.sockets.remove(h);
    }

    /// The TCP segments from `from:port` in the log, as their flags `(syn, ack, rst)`.
    fn tcp_from(&self, from: IpAddr, port: u16) -> Vec<(bool, bool, bool)> {
        self.dev
            .log
            .iter()
            .filter_map(|f| {
                let p = SlicedPacket::from_ethernet(f).ok()?;
                let src = match &p.net {
                    Some(NetSlice::Ipv4(ip)) => IpAddr::V4(ip.header().source_addr()),
                    Some(NetSlice::Ipv6(ip)) => IpAddr::V6(ip.header().source_addr()),
                    _ => return None,
                };
                match &p.transport {
                    Some(TransportSlice::Tcp(t)) if src == from && t.source_port() == port => {
                        Some((t.syn(), t.ack(), t.rst()))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// `(source, type, code)` of the ICMP and ICMPv6 messages in the log.
    fn icmp(&self) -> Vec<(IpAddr, u8, u8)> {
        self.dev
            .log
            .iter()
            .filter_map(|f| {
                let p = SlicedPacket::from_ethernet(f).ok()?;
                match (&p.net, &p.transport) {
                    (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(i))) => Some((
                        IpAddr::V4(ip.header().source_addr()),
                        i.type_u8(),
                        i.code_u8(),
                    )),
                    (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(i))) => Some((
                        IpAddr::V6(ip.header().source_addr()),
                        i.type_u8(),
                        i.code_u8(),
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// The router's MAC, from any frame it sent.
    fn router_mac(&self) -> [u8; 6] {
        self.dev.log[0][6..12].try_into().unwrap()
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn stats(router: &Router) -> Value {
    router.show_stats()
}

#[test]
fn the_router_talks_tcp_through_its_host_stack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let mut router = Router::start_file(&path).unwrap();
    let pool = router.pool().clone();
    let mut c = Client::new(&router);

    // Echo over IPv4: more than either side's buffers, so both windows fill and open again.
    let data = pattern(100_000);
    let back = c.echo(IpAddr::V4(ROUTER4), 7, 40_000, &data);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo differs from what was sent");
    // The other interface's address is the router's too.
    let back = c.echo(IpAddr::V4(OUTSIDE4), 7, 40_001, b"to the outside address");
    assert_eq!(back, b"to the outside address");
    // IPv6.
    let data6 = pattern(20_000);
    let back = c.echo(IpAddr::V6(ROUTER6), 7, 40_002, &data6);
    assert!(back == data6, "the IPv6 echo differs");
    // The replies came from the address the client used, through the fast path's ARP/ND-resolved neighbour.
    assert!(c
        .tcp_from(IpAddr::V4(OUTSIDE4), 7)
        .iter()
        .any(|&(syn, ack, _)| syn && ack));
    assert!(c
        .tcp_from(IpAddr::V6(ROUTER6), 7)
        .iter()
        .any(|&(syn, ack, _)| syn && ack));

    // Closed TCP ports are refused with a RST, both families.
    c.refused(IpAddr::V4(ROUTER4), 9999, 40_010);
    assert!(c
        .tcp_from(IpAddr::V4(ROUTER4), 9999)
        .iter()
        .any(|&(_, _, rst)| rst));
    c.refused(IpAddr::V6(ROUTER6), 9999, 40_011);
    assert!(c
        .tcp_from(IpAddr::V6(ROUTER6), 9999)
        .iter()
        .any(|&(_, _, rst)| rst));

    // UDP to a closed port: port unreachable, both families.
    let u = c.sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
    ));
    c.sockets.get_mut::<udp::Socket>(u).bind(5353).unwrap();
    for to in [IpAddr::V4(ROUTER4), IpAddr::V6(ROUTER6)] {
        c.sockets
            .get_mut::<udp::Socket>(u)
            .send_slice(b"anyone?", (IpAddress::from(to), 9999))
            .unwrap();
    }
    c.until("ICMP port unreachable, both families", |c| {
        let icmp = c.icmp();
        icmp.contains(&(IpAddr::V4(ROUTER4), 3, 3)) && icmp.contains(&(IpAddr::V6(ROUTER6), 1, 4))
    });

    // Another IP protocol (GRE): the host stack says protocol unreachable.
    let mut gre = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, c.router_mac())
        .ipv4(HOST4.octets(), ROUTER4.octets(), 64)
        .write(&mut gre, IpNumber(47), &[0u8; 8])
        .unwrap();
    c.dev.send_frame(&gre);
    c.until("ICMP protocol unreachable", |c| {
        c.icmp().contains(&(IpAddr::V4(ROUTER4), 3, 2))
    });

    // The counters saw it all.
    let s = stats(&router);
    let host = &s["host_stack"];
    assert!(host["rx_packets"].as_u64().unwrap() > 100, "{host}");
    assert!(host["tx_packets"].as_u64().unwrap() > 100, "{host}");
    assert_eq!(host["echo_connections"], 3, "{host}");
    assert_eq!(
        host["echo_bytes"].as_u64().unwrap(),
        (data.len() + data6.len() + 22) as u64
    );
    assert_eq!(host["tx_queue_full"], 0);
    assert_eq!(host["tx_no_buffer"], 0);
    let events = &s["events"];
    assert_eq!(events["to_host_stack"], host["rx_packets"], "{s}");
    assert_eq!(events["from_host_stack"], host["tx_packets"], "{s}");
    let drops = router.show_drops();
    assert!(drops.get("host_queue_full").is_none(), "{drops}");
    assert!(drops.get("no_local_stack").is_none(), "{drops}");

    // A reload moves the echo service: port 7 refuses, 7007 echoes.
    std::fs::write(
        &path,
        CONFIG.replace(
            "workers = 1\n",
            "workers = 1\n\n[router]\necho_port = 7007\n",
        ),
    )
    .unwrap();
    router.reload().unwrap();
    c.until("the echo port to move", |_| {
        stats(&router)["host_stack"]["echo_port"] == 7007
    });
    c.refused(IpAddr::V4(ROUTER4), 7, 40_020);
    let back = c.echo(IpAddr::V4(ROUTER4), 7007, 40_021, b"moved");
    assert_eq!(back, b"moved");

    // Every buffer goes home: the host stack's queues were emptied before the pool went.
    drop(c);
    router.stop();
    dataplane::pool::flush_thread_cache();
    assert_eq!(pool.available(), pool.capacity(), "buffers leaked");
}

#[test]
fn the_echo_service_serves_its_connections_at_once_and_refuses_one_more() {
    let cfg = control::config::parse(CONFIG, "host_stack.toml").unwrap();
    let router = Router::start(cfg, None).unwrap();
    let mut c = Client::new(&router);
    let n = control::hoststack::ECHO_SOCKETS;
    let conns: Vec<SocketHandle> = (0..n)
        .map(|i| c.connect(IpAddr::V4(ROUTER4), 7, 41_000 + i as u16))
        .collect();
    c.until("every connection established", |c| {
        conns
            .iter()
            .all(|h| c.tcp(*h).state() == tcp::State::Established)
    });
    // All of them at once: each gets its own bytes back.
    for (i, h) in conns.iter().enumerate() {
        c.tcp(*h)
            .send_slice(format!("connection {i}").as_bytes())
            .unwrap();
    }
    let mut back = vec![Vec::new(); n];
    c.until("every echo", |c| {
        for (i, h) in conns.iter().enumerate() {
            let s = c.tcp(*h);
            while s.can_recv() {
                s.recv(|b| {
                    back[i].extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
            }
        }
        back.iter()
            .enumerate()
            .all(|(i, b)| *b == format!("connection {i}").as_bytes())
    });
    // One more finds no free socket: refused, not left hanging.
    c.refused(IpAddr::V4(ROUTER4), 7, 41_100);
    // Closing one frees its socket for the next client.
    c.tcp(conns[0]).close();
    c.until("the first connection closing", |c| {
        !c.tcp(conns[0]).is_open()
    });
    assert_eq!(c.echo(IpAddr::V4(ROUTER4), 7, 41_101, b"next"), b"next");
    assert_eq!(
        stats(&router)["host_stack"]["echo_connections"],
        n as u64 + 1
    );
    drop(c);
    router.stop();
}

#[test]
fn resets_to_a_syn_flood_at_closed_ports_keep_to_the_error_budget() {
    const RATE: u64 = 5;
    let cfg = control::config::parse(
        &CONFIG.replace(
            "workers = 1\n",
            &format!("workers = 1\n\n[router]\nicmp_rate = {RATE}\n"),
        ),
        "host_stack.toml",
    )
    .unwrap();
    let router = Router::start(cfg, None).unwrap();
    let mut c = Client::new(&router);
    // 60 SYNs to a closed port at once (and their retransmissions while we wait).
    let t0 = std::time::Instant::now();
    for i in 0..60u16 {
        c.connect(IpAddr::V4(ROUTER4), 9, 43_000 + i);
    }
    c.until("the stack to refuse more than its budget", |_| {
        stats(&router)["host_stack"]["tx_rate_limited"]
            .as_u64()
            .unwrap()
            >= 40
    });
    // What the stack did send reaches us through worker 0 and the ring.
    let resets = |c: &Client| {
        c.tcp_from(IpAddr::V4(ROUTER4), 9)
            .iter()
            .filter(|(_, _, rst)| *rst)
            .count() as u64
    };
    c.until("the first resets", |c| resets(c) >= 1);
    std::thread::sleep(Duration::from_millis(50));
    c.poll();
    let secs = t0.elapsed().as_secs_f64();
    let resets = resets(&c);
    // The bucket starts full (RATE) and earns RATE a second.
    let budget = RATE + (secs * RATE as f64).ceil() as u64 + 1;
    assert!(
        resets <= budget,
        "{resets} resets in {secs:.2} s, over the budget of {budget}"
    );
    router.stop();
}
