//! NAT end to end in network namespaces (`configs/lab-nat.toml`: a bridge network masqueraded behind the
//! router's uplink address 203.0.113.1, published ports, a load-balanced service, two workers). The Linux
//! kernel in each namespace is the peer: an "outside" namespace with no route to the bridge network runs TCP
//! and UDP servers that report the source address they see; endpoints run servers on their published ports.
//!
//! Needs root (namespaces, veth pairs); skipped loudly without it, and fails in CI.

use control::lab::{self, LabHost};
use dataplane::netns;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

mod common;
use common::{prefix, quiet_ipv6, traceroute, Lab};

const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

/// A server in a namespace, stopped and joined on drop.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hash(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(data);
    h.finish()
}

/// A TCP server in `h`'s namespace on `addr`: for each connection it reads everything until the client
/// half-closes, then answers `NAME PEER HASH LEN` (the peer as it sees it) and closes.
fn tcp_server(h: &LabHost, addr: SocketAddr) -> Server {
    let l =
        h.ns.run(move || TcpListener::bind(addr))
            .unwrap()
            .unwrap_or_else(|e| panic!("bind {addr} in {}: {e}", h.name));
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let name = h.name.clone();
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, peer)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut got = Vec::new();
                    if c.read_to_end(&mut got).is_ok() {
                        let _ = c.write_all(
                            format!("{name} {peer} {:016x} {}", hash(&got), got.len()).as_bytes(),
                        );
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    Server {
        stop,
        thread: Some(thread),
    }
}

/// A UDP server in `h`'s namespace on `addr`: answers every datagram with `NAME PEER`.
fn udp_server(h: &LabHost, addr: SocketAddr) -> Server {
    let sock =
        h.ns.run(move || UdpSocket::bind(addr))
            .unwrap()
            .unwrap_or_else(|e| panic!("bind udp {addr} in {}: {e}", h.name));
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let name = h.name.clone();
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !s.load(Ordering::Relaxed) {
            if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(format!("{name} {peer}").as_bytes(), peer);
            }
        }
    });
    Server {
        stop,
        thread: Some(thread),
    }
}

/// What a [`tcp_server`] answered: (its name, the peer it saw, hash, length).
#[derive(Debug)]
struct Answer {
    name: String,
    peer: SocketAddr,
    hash: u64,
    len: usize,
}

/// Connects from `h` to `to`, sends `data`, half-closes and parses the answer.
fn tcp_call(h: &LabHost, to: SocketAddr, data: &[u8]) -> Answer {
    let reply =
        h.ns.run(|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.write_all(data)?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut back = String::new();
            s.read_to_string(&mut back)?;
            Ok(back)
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{} -> {to}: {e}", h.name));
    let f: Vec<&str> = reply.split_whitespace().collect();
    assert_eq!(f.len(), 4, "{} -> {to}: answer {reply:?}", h.name);
    Answer {
        name: f[0].to_string(),
        peer: f[1].parse().unwrap(),
        hash: u64::from_str_radix(f[2], 16).unwrap(),
        len: f[3].parse().unwrap(),
    }
}

/// Sends one datagram from `h` to `to` (retrying while ARP settles) and parses `NAME PEER`.
fn udp_call(h: &LabHost, to: SocketAddr) -> (String, SocketAddr) {
    let reply =
        h.ns.run(|| -> std::io::Result<String> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
            let mut buf = [0u8; 256];
            for _ in 0..10 {
                s.send_to(b"ping", to)?;
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer",
            ))
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("udp {} -> {to}: {e}", h.name));
    let (name, peer) = reply.split_once(' ').unwrap();
    (name.to_string(), peer.parse().unwrap())
}

fn v4(a: SocketAddr) -> Ipv4Addr {
    match a.ip() {
        IpAddr::V4(v) => v,
        IpAddr::V6(v) => v.to_ipv4_mapped().expect("an IPv4 peer"),
    }
}

#[test]
fn masquerade_published_ports_hairpin_and_a_balanced_service() {
    if !netns::require_root("masquerade_published_ports_hairpin_and_a_balanced_service") {
        return;
    }
    let lab = Lab::start("lab-nat.toml", &prefix('n'), quiet_ipv6);
    let (a, b, c, out) = (
        lab.host("a"),
        lab.host("b"),
        lab.host("c"),
        lab.host("outside"),
    );
    let _servers = [
        tcp_server(out, SocketAddr::new(OUTSIDE.into(), 5000)),
        udp_server(out, SocketAddr::new(OUTSIDE.into(), 5000)),
        tcp_server(a, SocketAddr::new(a.addr.into(), 80)),
        tcp_server(b, SocketAddr::new(b.addr.into(), 80)),
        tcp_server(c, SocketAddr::new(c.addr.into(), 80)),
        udp_server(a, SocketAddr::new(a.addr.into(), 53)),
    ];
    let server = SocketAddr::new(OUTSIDE.into(), 5000);

    // Masquerade: ping, then TCP and UDP from every endpoint; the server sees only the uplink's address.
    lab::ping(a, OUTSIDE.into()).expect("a pings the outside through the NAT");
    // traceroute: the router's time exceeded quotes what a sent; the outside's port unreachable about the
    // translated probe is translated back (its quote too), so the last hop answers.
    assert_eq!(
        traceroute(a, "-4", &OUTSIDE.to_string()),
        ["10.84.0.1", &OUTSIDE.to_string()],
        "traceroute through the NAT"
    );
    for h in [a, b, c] {
        let ans = tcp_call(h, server, b"hello");
        assert_eq!(ans.name, "outside");
        assert_eq!(
            v4(ans.peer),
            EXTERNAL,
            "{}: TCP source seen outside",
            h.name
        );
        assert!(ans.peer.port() >= 1024, "{}: {ans:?}", h.name);
        assert_eq!((ans.len, ans.hash), (5, hash(b"hello")));
        let (name, peer) = udp_call(h, server);
        assert_eq!(name, "outside");
        assert_eq!(v4(peer), EXTERNAL, "{}: UDP source seen outside", h.name);
    }

    // Published ports: the outside reaches a's port 80 through 203.0.113.1:4000 and its UDP 53 through
    // 5353; a sees the real client (destination NAT only).
    let ans = tcp_call(out, SocketAddr::new(EXTERNAL.into(), 4000), b"published");
    assert_eq!(ans.name, "a");
    assert_eq!(v4(ans.peer), OUTSIDE, "a sees the outside client");
    let (name, peer) = udp_call(out, SocketAddr::new(EXTERNAL.into(), 5353));
    assert_eq!((name.as_str(), v4(peer)), ("a", OUTSIDE));

    // Hairpin: b reaches a through the published address; a sees the router's address (source NAT too),
    // so its answer comes back through wharf.
    let ans = tcp_call(b, SocketAddr::new(EXTERNAL.into(), 4000), b"hairpin");
    assert_eq!(ans.name, "a");
    assert_eq!(v4(ans.peer), EXTERNAL, "a sees the router, not b");
    assert_eq!((ans.len, ans.hash), (7, hash(b"hairpin")));

    // 50 MB through the masquerade, hashed at both ends.
    let big: Vec<u8> = (0..50_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let ans = tcp_call(a, server, &big);
    assert_eq!(
        (ans.len, ans.hash),
        (big.len(), hash(&big)),
        "50 MB a -> outside"
    );
    drop(big);

    // The service: 300 connections from the outside spread over a, b and c.
    let mut by: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let ans = tcp_call(out, SocketAddr::new(EXTERNAL.into(), 8080), b"");
        assert_eq!(v4(ans.peer), OUTSIDE);
        *by.entry(ans.name).or_default() += 1;
    }
    for h in ["a", "b", "c"] {
        let n = by.get(h).copied().unwrap_or(0);
        assert!(n >= 30, "backend {h} got {n} of 300 connections: {by:?}");
    }

    // What the router says: flows of every kind, translated packets, nothing exhausted.
    let ct = lab.router().show_conntrack(None, 10_000);
    let flows = ct["flows"].as_array().unwrap();
    assert!(flows.len() >= 5, "{ct}");
    assert!(
        flows
            .iter()
            .any(|f| f["orig"].as_str().unwrap().contains("10.84.0.2")
                && f["reply"].as_str().unwrap().contains("203.0.113.1")),
        "a masqueraded flow of a: {ct}"
    );
    let nat = lab.router().show_nat();
    assert_eq!(nat["external"][0], "203.0.113.1", "{nat}");
    // AF_PACKET's fanout hash is the kernel's, seeded at random: no port choice can steer answers.
    assert!(
        nat["answer_steering"]
            .as_str()
            .is_some_and(|s| s.starts_with("unknown")),
        "{nat}"
    );
    assert!(nat["mappings"].as_array().unwrap().len() >= 3, "{nat}");
    eprintln!(
        "nat: {nat:#}\nconntrack: {} flows; translated {}, handoffs {}",
        ct["total"],
        lab.event("nat_translated"),
        lab.event("nat_handoff")
    );
    assert!(lab.event("nat_translated") > 0);
    // Two workers, fed by the kernel's fanout hash of the tuple on the wire: some answers and published
    // flows arrive on the worker that does not own them and are handed over.
    assert!(
        lab.event("nat_handoff") > 0,
        "no handoff between the two workers"
    );
    assert_eq!(lab.drops("nat_exhausted"), 0);
    assert_eq!(lab.drops("nat_handoff_drop"), 0);
    lab.finish();
}
