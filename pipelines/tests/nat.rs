//! The NAT core through its public API, driven the way the pipeline stage will drive it (the `Nat` harness
//! below is that stage in miniature: parse, look up, track, translate; new flows get a port and a flow).
//! Packets are built with etherparse, and every translated packet is checked by etherparse with its
//! checksums recomputed in full: the IPv4 header's, TCP's and UDP's over the pseudo-header, ICMP's, and for
//! ICMP errors the quoted packet's header and bytes.

use dataplane::DropReason;
use etherparse::{
    Icmpv4Header, Ipv4HeaderSlice, NetSlice, PacketBuilder, SlicedPacket, TcpHeader, TransportSlice,
};
use pipelines::fib::SplitMix64;
use pipelines::nat::conntrack::{
    tcp_flags::*, Config, Dir, Expiry, FlowKey, FlowTable4, InsertError, Key4, TcpState, Timeouts,
    Track,
};
use pipelines::nat::maglev::{Maglev, MaglevError, DEFAULT_SIZE};
use pipelines::nat::owner::{owner_in_to_out, owner_out_to_in, NatConfig, Owner};
use pipelines::nat::ports::{owner_of_remote, AllocError, EimTable, PortAllocator, PortSplit};
use pipelines::nat::translate::{parse, translate, Kind, NatError};
use pipelines::wire::icmpv4::{write_error, Icmpv4Error};
use pipelines::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

const A: [u8; 4] = [10, 0, 0, 2]; // an endpoint
const B: [u8; 4] = [10, 0, 0, 3]; // another endpoint (a published backend)
const S: [u8; 4] = [198, 51, 100, 7]; // a server outside
const C: [u8; 4] = [203, 0, 113, 9]; // a client outside
const X: [u8; 4] = [192, 0, 2, 1]; // the uplink's address
const R: [u8; 4] = [192, 0, 2, 254]; // a router on the way

fn u(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

/// Marks flows that hold a NAT port.
const TAG_PORT: u32 = 1;
/// Marks flows that hold a share of an endpoint-independent mapping.
const TAG_EIM: u32 = 2;

/// The NAT stage in miniature: masquerade of 10.0.0.0/24 behind X, published ports, hairpin.
struct Nat {
    table: FlowTable4,
    ports: PortAllocator,
    /// (proto, external port) -> (backend, backend port)
    published: HashMap<(u8, u16), (u32, u16)>,
    /// Endpoint-independent mapping for UDP, when configured.
    eim: Option<EimTable>,
    now: u32,
}

impl Nat {
    fn new(limit: usize) -> Nat {
        Nat::with(limit, Timeouts::default(), Expiry::Wheel)
    }

    fn with(limit: usize, timeouts: Timeouts, expiry: Expiry) -> Nat {
        let split = PortSplit::new(1024, 65535, 1).unwrap();
        Nat {
            table: FlowTable4::with_seed(
                Config {
                    limit,
                    timeouts,
                    expiry,
                },
                [3, 4],
            ),
            ports: PortAllocator::new(split, 0, &[u(X)], 42),
            published: HashMap::new(),
            eim: None,
            now: 1000,
        }
    }

    fn inside(a: u32) -> bool {
        a >> 8 == u([10, 0, 0, 0]) >> 8
    }

    fn process(&mut self, ip: &mut [u8]) -> Result<(), DropReason> {
        let info = parse(ip).map_err(|e| e.drop_reason().unwrap_or(DropReason::NoRoute))?;
        if let Some((id, dir)) = self.table.lookup(&info.key) {
            if !info.is_icmp_error()
                && self.table.track(id, dir, info.tcp_flags, self.now) == Track::Invalid
            {
                return Err(DropReason::Malformed);
            }
            let to = self.table.get(id).unwrap().target(dir);
            return translate(ip, &info, &to).map_err(|e| e.drop_reason().unwrap());
        }
        if info.is_icmp_error() {
            return Err(DropReason::NoRoute); // about no flow of ours
        }
        if info.kind == Kind::IcmpEcho && !info.is_echo_request() {
            return Err(DropReason::AclDeny); // an echo reply opens nothing
        }
        let k = info.key;
        let mut reply = k.reversed();
        let mut snat = Nat::inside(k.src) && !Nat::inside(k.dst);
        if k.dst == u(X) {
            let Some(&(b, bp)) = self.published.get(&(k.proto, k.dport)) else {
                return Err(DropReason::NoRoute);
            };
            reply.src = b;
            reply.sport = bp;
            snat = Nat::inside(k.src); // hairpin
        }
        let mut tag = 0;
        if snat {
            let h = k.hash_with(&[0, 0]);
            let (x, p) = match &mut self.eim {
                Some(eim) if k.proto == IPPROTO_UDP => {
                    tag = TAG_EIM;
                    eim.acquire(&mut self.ports, k.proto, k.src, k.sport, |_, _| true)
                }
                _ => {
                    tag = TAG_PORT;
                    self.ports.alloc(k.proto, k.src, h)
                }
            }
            .map_err(|e| e.drop_reason())?;
            reply.dst = x;
            reply.dport = p;
            if k.proto == IPPROTO_ICMP {
                reply.sport = p;
            }
        }
        if let Err(e) = self.table.insert(k, reply, info.tcp_flags, tag, self.now) {
            match (tag, &mut self.eim) {
                (TAG_PORT, _) => {
                    self.ports.release(k.proto, reply.dst, reply.dport);
                }
                (TAG_EIM, Some(eim)) => {
                    eim.release(&mut self.ports, k.proto, k.src, k.sport);
                }
                _ => {}
            }
            return Err(e.drop_reason());
        }
        translate(ip, &info, &reply.reversed()).map_err(|e| e.drop_reason().unwrap())
    }

    fn tick(&mut self, now: u32) -> usize {
        self.now = now;
        let ports = &mut self.ports;
        let eim = &mut self.eim;
        self.table
            .expire(now, 1 << 20, |f| match (f.tag(), eim.as_mut()) {
                (TAG_PORT, _) => assert!(ports.release(f.proto(), f.reply().dst, f.reply().dport)),
                (TAG_EIM, Some(eim)) => {
                    assert!(eim.release(ports, f.proto(), f.orig().src, f.orig().sport))
                }
                _ => {}
            })
    }
}

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut h = TcpHeader::new(sport, dport, 1000, 65535);
    h.fin = flags & FIN != 0;
    h.syn = flags & SYN != 0;
    h.rst = flags & RST != 0;
    h.psh = flags & PSH != 0;
    h.ack = flags & ACK != 0;
    h.urg = flags & URG != 0;
    h.acknowledgment_number = if h.ack { 77 } else { 0 };
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp_header(h)
        .write(&mut v, data)
        .unwrap();
    v
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, data)
        .unwrap();
    v
}

fn ping(src: [u8; 4], dst: [u8; 4], id: u16, reply: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ipv4(src, dst, 64);
    let b = if reply {
        b.icmpv4_echo_reply(id, 1)
    } else {
        b.icmpv4_echo_request(id, 1)
    };
    b.write(&mut v, b"ping data").unwrap();
    v
}

/// What etherparse sees, after it has verified every checksum by recomputing it in full.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
}

fn check(ip: &[u8]) -> Seen {
    let s = SlicedPacket::from_ip(ip).expect("etherparse parses the packet");
    let Some(NetSlice::Ipv4(v4)) = &s.net else {
        panic!("not IPv4")
    };
    let h = v4.header();
    assert_eq!(
        h.header_checksum(),
        h.to_header().calc_header_checksum(),
        "IPv4 header checksum"
    );
    let (src, dst) = (h.source(), h.destination());
    let (sport, dport) = match &s.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.checksum(),
                t.calc_checksum_ipv4(src, dst).unwrap(),
                "TCP checksum"
            );
            (t.source_port(), t.destination_port())
        }
        Some(TransportSlice::Udp(d)) => {
            if d.checksum() != 0 {
                assert_eq!(
                    d.checksum(),
                    d.to_header()
                        .calc_checksum_ipv4_raw(src, dst, d.payload())
                        .unwrap(),
                    "UDP checksum"
                );
            }
            (d.source_port(), d.destination_port())
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(
                i.checksum(),
                Icmpv4Header::with_checksum(i.icmp_type(), i.payload()).checksum,
                "ICMP checksum"
            );
            let b = i.bytes5to8();
            let id = u16::from_be_bytes([b[0], b[1]]);
            (id, id)
        }
        other => panic!("unexpected transport {other:?}"),
    };
    Seen {
        src,
        dst,
        sport,
        dport,
    }
}

fn seen(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Seen {
    Seen {
        src,
        dst,
        sport,
        dport,
    }
}

#[test]
fn masquerade_tcp_both_ways() {
    let mut nat = Nat::new(1024);
    let mut syn = tcp(A, 40000, S, 80, SYN, b"");
    nat.process(&mut syn).unwrap();
    let out = check(&syn);
    assert_eq!((out.src, out.dst, out.dport), (X, S, 80));
    let xport = out.sport;
    assert!(xport >= 1024);
    assert!(nat.ports.is_allocated(IPPROTO_TCP, u(X), xport));

    let mut synack = tcp(S, 80, X, xport, SYN | ACK, b"");
    nat.process(&mut synack).unwrap();
    assert_eq!(check(&synack), seen(S, 80, A, 40000));

    // Data both ways, with payloads of odd length (the checksum's last word is padded).
    let mut data = tcp(A, 40000, S, 80, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n!");
    nat.process(&mut data).unwrap();
    assert_eq!(check(&data), seen(X, xport, S, 80));
    let mut resp = tcp(S, 80, X, xport, ACK | PSH, b"HTTP/1.1 200 OK\r\n\r");
    nat.process(&mut resp).unwrap();
    assert_eq!(check(&resp), seen(S, 80, A, 40000));
    let (id, _) = nat
        .table
        .lookup(&Key4::new(IPPROTO_TCP, u(A), 40000, u(S), 80))
        .unwrap();
    assert_eq!(
        nat.table.get(id).unwrap().tcp_state(),
        Some(TcpState::Established)
    );

    // The same flow again maps to the same port; another flow gets another one.
    let mut again = tcp(A, 40000, S, 80, ACK, b"x");
    nat.process(&mut again).unwrap();
    assert_eq!(check(&again).sport, xport);
    let mut other = tcp(A, 40001, S, 80, SYN, b"");
    nat.process(&mut other).unwrap();
    assert_ne!(check(&other).sport, xport);

    // An unsolicited segment to the external address is refused.
    let mut stray = tcp(S, 80, X, 9, ACK, b"");
    assert_eq!(nat.process(&mut stray), Err(DropReason::NoRoute));
}

#[test]
fn masquerade_udp_and_ping() {
    let mut nat = Nat::new(1024);
    let mut q = udp(A, 5353, S, 53, b"query");
    nat.process(&mut q).unwrap();
    let out = check(&q);
    assert_eq!((out.src, out.dst, out.dport), (X, S, 53));
    let mut a = udp(S, 53, X, out.sport, b"answer!");
    nat.process(&mut a).unwrap();
    assert_eq!(check(&a), seen(S, 53, A, 5353));

    // UDP without a checksum keeps none.
    let mut z = udp(A, 5354, S, 53, b"q");
    z[26] = 0;
    z[27] = 0;
    nat.process(&mut z).unwrap();
    assert_eq!([z[26], z[27]], [0, 0]);
    assert_eq!(check(&z).src, X);

    let mut echo = ping(A, S, 0x1234, false);
    nat.process(&mut echo).unwrap();
    let out = check(&echo);
    assert_eq!((out.src, out.dst), (X, S));
    let ext_id = out.sport;
    let mut pong = ping(S, X, ext_id, true);
    nat.process(&mut pong).unwrap();
    assert_eq!(check(&pong), seen(S, 0x1234, A, 0x1234));
    // An unsolicited echo reply opens no flow.
    let mut stray = ping(S, X, ext_id ^ 1, true);
    assert!(!parse(&stray).unwrap().is_echo_request());
    assert_eq!(nat.process(&mut stray), Err(DropReason::AclDeny));
    assert!(parse(&ping(A, S, 1, false)).unwrap().is_echo_request());
}

#[test]
fn published_port_and_hairpin() {
    let mut nat = Nat::new(1024);
    nat.published.insert((IPPROTO_TCP, 4000), (u(B), 80));
    nat.published.insert((IPPROTO_UDP, 5353), (u(B), 53));

    // From outside: C -> X:4000 reaches B:80, and B's answer leaves as X:4000.
    let mut syn = tcp(C, 33333, X, 4000, SYN, b"");
    nat.process(&mut syn).unwrap();
    assert_eq!(check(&syn), seen(C, 33333, B, 80));
    let mut synack = tcp(B, 80, C, 33333, SYN | ACK, b"");
    nat.process(&mut synack).unwrap();
    assert_eq!(check(&synack), seen(X, 4000, C, 33333));
    let mut q = udp(C, 999, X, 5353, b"dns?");
    nat.process(&mut q).unwrap();
    assert_eq!(check(&q), seen(C, 999, B, 53));

    // Hairpin: A reaches B through X:4000; B sees X as the source, so its answer comes back through us.
    let mut syn = tcp(A, 40000, X, 4000, SYN, b"");
    nat.process(&mut syn).unwrap();
    let out = check(&syn);
    assert_eq!((out.src, out.dst, out.dport), (X, B, 80));
    let p = out.sport;
    let mut synack = tcp(B, 80, X, p, SYN | ACK, b"");
    nat.process(&mut synack).unwrap();
    assert_eq!(check(&synack), seen(X, 4000, A, 40000));
}

#[test]
fn tcp_states_and_odd_flags() {
    let mut nat = Nat::new(64);
    let key = Key4::new(IPPROTO_TCP, u(A), 40000, u(S), 80);
    let state = |nat: &Nat| {
        let (id, _) = nat.table.lookup(&key).unwrap();
        let f = nat.table.get(id).unwrap();
        (f.tcp_state().unwrap(), f.expires() - nat.now)
    };
    // New flows: only a SYN opens one; impossible flags are refused and counted.
    let mut p = tcp(A, 40000, S, 80, ACK, b"");
    assert_eq!(nat.process(&mut p), Err(DropReason::AclDeny));
    let mut p = tcp(A, 40000, S, 80, SYN | FIN, b"");
    assert_eq!(nat.process(&mut p), Err(DropReason::Malformed));
    assert_eq!(nat.table.stats().tcp_invalid, 2);
    assert!(nat.table.is_empty());
    assert_eq!(
        nat.ports.in_use(IPPROTO_TCP, u(X)),
        0,
        "refused flows keep no port"
    );

    let mut p = tcp(A, 40000, S, 80, SYN, b"");
    nat.process(&mut p).unwrap();
    let xp = check(&p).sport;
    assert_eq!(state(&nat), (TcpState::SynSent, 120));

    let out = |nat: &mut Nat, flags| nat.process(&mut tcp(A, 40000, S, 80, flags, b""));
    let back = |nat: &mut Nat, flags| nat.process(&mut tcp(S, 80, X, xp, flags, b""));

    back(&mut nat, SYN | ACK).unwrap();
    assert_eq!(state(&nat), (TcpState::SynRecv, 120));
    out(&mut nat, ACK).unwrap();
    assert_eq!(state(&nat), (TcpState::Established, 5 * 24 * 3600));

    // Odd combinations on an established flow: dropped, counted, no change.
    for odd in [
        SYN | FIN,
        SYN | RST,
        0,
        FIN,
        PSH,
        RST | FIN,
        SYN | FIN | RST | ACK,
    ] {
        assert_eq!(out(&mut nat, odd), Err(DropReason::Malformed), "{odd:#x}");
        assert_eq!(back(&mut nat, odd), Err(DropReason::Malformed), "{odd:#x}");
        assert_eq!(state(&nat).0, TcpState::Established);
    }
    assert_eq!(nat.table.stats().tcp_invalid, 2 + 14);

    // Close: FIN from the inside, ACK from the server, FIN from the server.
    out(&mut nat, FIN | ACK).unwrap();
    assert_eq!(state(&nat), (TcpState::FinWait, 120));
    out(&mut nat, ACK).unwrap(); // the closer's own ACKs change nothing
    assert_eq!(state(&nat).0, TcpState::FinWait);
    back(&mut nat, ACK).unwrap();
    assert_eq!(state(&nat).0, TcpState::CloseWait);
    back(&mut nat, FIN | ACK).unwrap();
    assert_eq!(state(&nat), (TcpState::TimeWait, 120));
    // The tuple is reused by a new connection.
    out(&mut nat, SYN).unwrap();
    assert_eq!(state(&nat).0, TcpState::SynSent);
    back(&mut nat, RST | ACK).unwrap();
    assert_eq!(state(&nat), (TcpState::Close, 10));
    nat.tick(nat.now + 9);
    assert_eq!(nat.table.len(), 1);
    nat.tick(nat.now + 1);
    assert!(nat.table.is_empty());
    assert_eq!(nat.ports.in_use(IPPROTO_TCP, u(X)), 0, "port released");
}

#[test]
fn fin_from_the_server_first() {
    let mut nat = Nat::new(64);
    let mut p = tcp(A, 1, S, 80, SYN, b"");
    nat.process(&mut p).unwrap();
    let xp = check(&p).sport;
    nat.process(&mut tcp(S, 80, X, xp, SYN | ACK, b"")).unwrap();
    nat.process(&mut tcp(A, 1, S, 80, ACK, b"")).unwrap();
    nat.process(&mut tcp(S, 80, X, xp, FIN | ACK, b"")).unwrap();
    let st = |nat: &Nat| {
        let (id, _) = nat
            .table
            .lookup(&Key4::new(IPPROTO_TCP, u(A), 1, u(S), 80))
            .unwrap();
        nat.table.get(id).unwrap().tcp_state().unwrap()
    };
    assert_eq!(st(&nat), TcpState::FinWait);
    nat.process(&mut tcp(S, 80, X, xp, ACK, b"")).unwrap();
    assert_eq!(st(&nat), TcpState::FinWait, "the closer's ACK");
    nat.process(&mut tcp(A, 1, S, 80, FIN | ACK, b"")).unwrap();
    assert_eq!(st(&nat), TcpState::TimeWait);
}

fn timeouts_with(expiry: Expiry) {
    let t = Timeouts {
        tcp_established: 3600,
        ..Timeouts::default()
    };
    let mut nat = Nat::with(64, t, expiry);
    let t0 = nat.now;
    // UDP unreplied: 30 s.
    nat.process(&mut udp(A, 1, S, 53, b"q")).unwrap();
    // UDP answered: 180 s from the answer.
    let mut q = udp(A, 2, S, 53, b"q");
    nat.process(&mut q).unwrap();
    let p2 = check(&q).sport;
    nat.process(&mut udp(S, 53, X, p2, b"a")).unwrap();
    // Ping: 30 s.
    nat.process(&mut ping(A, S, 7, false)).unwrap();
    // TCP established with the configured 3600 s; a half-open one has 120 s.
    let mut s = tcp(A, 3, S, 80, SYN, b"");
    nat.process(&mut s).unwrap();
    let p3 = check(&s).sport;
    nat.process(&mut tcp(S, 80, X, p3, SYN | ACK, b"")).unwrap();
    nat.process(&mut tcp(A, 3, S, 80, ACK, b"")).unwrap();
    nat.process(&mut tcp(A, 4, S, 80, SYN, b"")).unwrap();
    assert_eq!(nat.table.len(), 5);

    let alive = |nat: &Nat, k: Key4| nat.table.lookup(&k).is_some();
    let udp1 = Key4::new(IPPROTO_UDP, u(A), 1, u(S), 53);
    let udp2 = Key4::new(IPPROTO_UDP, u(A), 2, u(S), 53);
    let icmp = Key4::icmp(u(A), u(S), 7);
    let est = Key4::new(IPPROTO_TCP, u(A), 3, u(S), 80);
    let half = Key4::new(IPPROTO_TCP, u(A), 4, u(S), 80);

    assert_eq!(nat.tick(t0 + 29), 0);
    assert_eq!(nat.tick(t0 + 30), 2);
    assert!(!alive(&nat, udp1) && !alive(&nat, icmp) && alive(&nat, udp2));
    // Traffic keeps a flow: the answered UDP flow is refreshed at +100.
    nat.now = t0 + 100;
    nat.process(&mut udp(A, 2, S, 53, b"q")).unwrap();
    assert_eq!(nat.tick(t0 + 119), 0);
    assert_eq!(nat.tick(t0 + 120), 1);
    assert!(!alive(&nat, half) && alive(&nat, est));
    assert_eq!(nat.tick(t0 + 279), 0);
    assert_eq!(nat.tick(t0 + 280), 1);
    assert!(!alive(&nat, udp2));
    assert_eq!(nat.tick(t0 + 3599), 0);
    assert_eq!(nat.tick(t0 + 3600), 1);
    assert!(nat.table.is_empty());
    for p in [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP] {
        assert_eq!(nat.ports.in_use(p, u(X)), 0);
    }
    assert_eq!(nat.table.stats().expired, 5);
}

#[test]
fn timeouts_timer_wheel() {
    timeouts_with(Expiry::Wheel);
}

#[test]
fn timeouts_scan() {
    timeouts_with(Expiry::Scan);
}

#[test]
fn ports_never_collide_under_100k_flows_and_split_per_worker() {
    let workers = 4;
    let split = PortSplit::new(1024, 65535, workers).unwrap();
    let addrs = [u(X), u(X) + 1];
    let mut allocs: Vec<PortAllocator> = (0..workers)
        .map(|w| PortAllocator::new(split, w, &addrs, 99))
        .collect();
    let mut rng = SplitMix64::new(7);
    let mut taken = HashSet::new();
    let mut log = Vec::new();
    for i in 0..100_000u32 {
        let w = (i % workers as u32) as u16;
        let proto = if i % 3 == 0 { IPPROTO_UDP } else { IPPROTO_TCP };
        let inside = u([10, 0, (i >> 8) as u8, i as u8]);
        let h = rng.next_u64();
        let (addr, port) = allocs[w as usize].alloc(proto, inside, h).unwrap();
        assert_eq!(split.worker_of(port), Some(w), "port {port} of worker {w}");
        assert!(taken.insert((proto, addr, port)), "collision at flow {i}");
        log.push((w, proto, inside, h, addr, port));
    }
    // Paired pooling: every inside address used one external address (none ran out).
    let mut pair = HashMap::new();
    for &(_, _, inside, _, addr, _) in &log {
        assert_eq!(*pair.entry(inside).or_insert(addr), addr);
    }
    assert!(pair.values().any(|&a| a == addrs[0]) && pair.values().any(|&a| a == addrs[1]));
    // Deterministic: the same flows in the same order get the same ports.
    let mut again: Vec<PortAllocator> = (0..workers)
        .map(|w| PortAllocator::new(split, w, &addrs, 99))
        .collect();
    for &(w, proto, inside, h, addr, port) in log.iter().take(5000) {
        assert_eq!(again[w as usize].alloc(proto, inside, h), Ok((addr, port)));
    }
    // Released ports come back; each release is counted once.
    for &(w, proto, _, _, addr, port) in &log {
        assert!(allocs[w as usize].release(proto, addr, port));
    }
    for a in &allocs {
        assert_eq!(a.stats().released, 25_000);
        for &x in &addrs {
            assert_eq!(a.in_use(IPPROTO_TCP, x) + a.in_use(IPPROTO_UDP, x), 0);
        }
    }
}

#[test]
fn port_exhaustion_refuses_new_flows_only() {
    let split = PortSplit::new(2000, 2007, 2).unwrap(); // 4 ports for worker 0
    let mut nat = Nat::new(64);
    nat.ports = PortAllocator::new(split, 0, &[u(X)], 1);
    let mut xps = Vec::new();
    for i in 0..4 {
        let mut p = udp(A, 100 + i, S, 53, b"q");
        nat.process(&mut p).unwrap();
        xps.push(check(&p).sport);
    }
    assert!(xps.iter().all(|p| (2000..=2003).contains(p)));
    let mut p = udp(A, 200, S, 53, b"q");
    assert_eq!(nat.process(&mut p), Err(DropReason::NatExhausted));
    assert_eq!(nat.ports.stats().exhausted, 1);
    assert_eq!(
        AllocError::Exhausted.drop_reason(),
        DropReason::NatExhausted
    );
    // Existing flows go on.
    let mut a = udp(S, 53, X, xps[2], b"a");
    nat.process(&mut a).unwrap();
    assert_eq!(check(&a), seen(S, 53, A, 102));
}

#[test]
fn table_full_refuses_new_flows_and_keeps_existing_ones() {
    let mut nat = Nat::new(100);
    let mut xps = Vec::new();
    for i in 0..100 {
        let mut p = udp(A, 1000 + i, S, 53, b"q");
        nat.process(&mut p).unwrap();
        xps.push(check(&p).sport);
    }
    let mut p = udp(A, 5000, S, 53, b"q");
    assert_eq!(nat.process(&mut p), Err(DropReason::NatExhausted));
    assert_eq!(nat.table.stats().full, 1);
    assert_eq!(
        nat.ports.in_use(IPPROTO_UDP, u(X)),
        100,
        "the refused flow's port went back"
    );
    assert_eq!(InsertError::Full.drop_reason(), DropReason::NatExhausted);
    for (i, &xp) in xps.iter().enumerate() {
        let mut a = udp(S, 53, X, xp, b"a");
        nat.process(&mut a).unwrap();
        assert_eq!(check(&a).dport, 1000 + i as u16);
    }
    // Once flows expire, new ones are taken again.
    nat.tick(nat.now + 180);
    assert!(nat.table.is_empty());
    let mut p = udp(A, 5000, S, 53, b"q");
    nat.process(&mut p).unwrap();
}

/// An ICMP error from `from` about `offending` (as it was on the wire), quoting `quote_room` bytes at most.
fn icmp_error(kind: Icmpv4Error, offending: &[u8], from: [u8; 4], quote_room: usize) -> Vec<u8> {
    let mut out = vec![0u8; 28 + quote_room];
    let n = write_error(&mut out, kind, offending, Ipv4Addr::from(from), 64).unwrap();
    out.truncate(n);
    out
}

/// Checks a translated ICMP error: outer checksums by etherparse, and the quoted packet is, byte for byte,
/// the start of what the endpoint sent (so its quoted header checksum verifies too).
fn check_error(err: &[u8], to: [u8; 4], from: [u8; 4], original: &[u8]) {
    let s = SlicedPacket::from_ip(err).unwrap();
    let Some(NetSlice::Ipv4(v4)) = &s.net else {
        panic!()
    };
    let h = v4.header();
    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    assert_eq!((h.source(), h.destination()), (from, to));
    let Some(TransportSlice::Icmpv4(i)) = &s.transport else {
        panic!()
    };
    assert_eq!(
        i.checksum(),
        Icmpv4Header::with_checksum(i.icmp_type(), i.payload()).checksum,
        "outer ICMP checksum"
    );
    let quote = i.payload();
    let inner = Ipv4HeaderSlice::from_slice(quote).expect("etherparse parses the quoted header");
    assert_eq!(
        inner.header_checksum(),
        inner.to_header().calc_header_checksum()
    );
    assert_eq!(inner.source(), A);
    assert_eq!(quote, &original[..quote.len()], "quote restored");
}

#[test]
fn icmp_errors_about_translated_flows() {
    let mut nat = Nat::new(64);
    // Traceroute over TCP: time exceeded with a long quote (the TCP checksum is in it).
    let orig = tcp(A, 40000, S, 80, SYN, &[0x5a; 100]);
    let mut p = orig.clone();
    nat.process(&mut p).unwrap();
    let mut err = icmp_error(Icmpv4Error::TimeExceeded, &p, R, 548);
    assert_eq!(parse(&err).unwrap().quoted_kind(), Some(Kind::Tcp));
    nat.process(&mut err).unwrap();
    check_error(&err, A, R, &orig);

    // PMTU discovery over UDP: fragmentation needed with the RFC 792 minimum quote (header + 8 bytes).
    let orig = udp(A, 5000, S, 4789, &[1; 1400]);
    let mut p = orig.clone();
    nat.process(&mut p).unwrap();
    let mut err = icmp_error(Icmpv4Error::FragNeeded { mtu: 1400 }, &p, R, 28);
    assert_eq!(err.len(), 20 + 8 + 28);
    nat.process(&mut err).unwrap();
    check_error(&err, A, R, &orig);
    assert_eq!(
        &err[26..28],
        &1400u16.to_be_bytes(),
        "next-hop MTU untouched"
    );

    // Traceroute with ping: the quoted echo's identifier (and checksum) restored.
    let orig = ping(A, S, 0x4242, false);
    let mut p = orig.clone();
    nat.process(&mut p).unwrap();
    assert_ne!(&p[24..26], &orig[24..26], "identifier translated");
    let mut err = icmp_error(Icmpv4Error::TimeExceeded, &p, R, 100);
    nat.process(&mut err).unwrap();
    check_error(&err, A, R, &orig);

    // An error about a flow we do not know is not translated.
    let stray = udp(X, 1, S, 2, b"");
    let mut err = icmp_error(Icmpv4Error::PortUnreachable, &stray, S, 100);
    assert_eq!(nat.process(&mut err), Err(DropReason::NoRoute));
}

#[test]
fn icmp_error_from_a_published_backend_takes_the_public_face() {
    let mut nat = Nat::new(64);
    nat.published.insert((IPPROTO_UDP, 5353), (u(B), 53));
    let orig = udp(C, 999, X, 5353, b"dns?");
    let mut p = orig.clone();
    nat.process(&mut p).unwrap();
    assert_eq!(check(&p), seen(C, 999, B, 53));
    // B has nothing on port 53: its port unreachable must reach C from X, quoting C -> X:5353.
    let mut err = icmp_error(Icmpv4Error::PortUnreachable, &p, B, 100);
    nat.process(&mut err).unwrap();
    let s = SlicedPacket::from_ip(&err).unwrap();
    let Some(TransportSlice::Icmpv4(i)) = &s.transport else {
        panic!()
    };
    assert_eq!(
        i.checksum(),
        Icmpv4Header::with_checksum(i.icmp_type(), i.payload()).checksum
    );
    let Some(NetSlice::Ipv4(v4)) = &s.net else {
        panic!()
    };
    assert_eq!(v4.header().source(), X);
    assert_eq!(v4.header().destination(), C);
    assert_eq!(
        v4.header().header_checksum(),
        v4.header().to_header().calc_header_checksum()
    );
    assert_eq!(i.payload(), &orig[..], "the quote is what C sent");
}

#[test]
fn maglev_spreads_300_flows_over_3_backends() {
    let backends = [u(B) as u64, u(B) as u64 + 1, u(B) as u64 + 2];
    let m = Maglev::new(&backends, DEFAULT_SIZE).unwrap();
    let mut rng = SplitMix64::new(1);
    let mut count = [0usize; 3];
    for _ in 0..300 {
        let client = (rng.next_u32(), rng.next_u32() as u16);
        let h = Key4::new(IPPROTO_TCP, client.0, client.1, u(X), 4000).hash_with(&[0, 0]);
        count[m.lookup(h).unwrap()] += 1;
    }
    // Binomial(300, 1/3): sd 8.2; 60..140 is far beyond 4 sd.
    assert!(count.iter().all(|&c| (60..=140).contains(&c)), "{count:?}");
    assert_eq!(m.shares().iter().sum::<usize>(), DEFAULT_SIZE);
}

#[test]
fn maglev_disruption_is_bounded() {
    let ids: Vec<u64> = (0..11).map(|i| 0x0a00_0100 + i * 7919).collect();
    let m10 = Maglev::new(&ids[..10], DEFAULT_SIZE).unwrap();
    let moved = |a: &Maglev, b: &Maglev, skip: Option<u64>| {
        let mut n = 0;
        for i in 0..DEFAULT_SIZE {
            let (x, y) = (a.slot(i).unwrap(), b.slot(i).unwrap());
            if x != y && Some(x) != skip {
                n += 1;
            }
        }
        n as f64 / DEFAULT_SIZE as f64
    };
    // Removing backend 3: its tenth of the slots must move; of the others' slots, few do.
    let mut without = ids[..10].to_vec();
    without.remove(3);
    let m9 = Maglev::new(&without, DEFAULT_SIZE).unwrap();
    let total = moved(&m10, &m9, None);
    let collateral = moved(&m10, &m9, Some(ids[3]));
    println!(
        "remove 1 of 10: {:.2} % of slots moved, {:.2} % besides its own",
        total * 100.0,
        collateral * 100.0
    );
    assert!((0.099..0.12).contains(&total), "{total}");
    assert!(collateral < 0.01, "{collateral}");
    // Adding an eleventh: ideally 1/11 of the slots move to it.
    let m11 = Maglev::new(&ids, DEFAULT_SIZE).unwrap();
    let added = moved(&m10, &m11, None);
    println!(
        "add 1 to 10: {:.2} % of slots moved (ideal {:.2} %)",
        added * 100.0,
        100.0 / 11.0
    );
    assert!((1.0 / 11.0 - 0.001..0.11).contains(&added), "{added}");
    assert_eq!(
        Maglev::new(&[1, 1], 7).err(),
        Some(MaglevError::DuplicateBackend)
    );
}

#[test]
fn owner_of_remote_is_stable_and_spreads() {
    let mut count = [0u32; 4];
    let mut rng = SplitMix64::new(3);
    for _ in 0..40_000 {
        let (a, p) = (rng.next_u32(), rng.next_u32() as u16);
        let w = owner_of_remote(a, p, 4);
        assert_eq!(w, owner_of_remote(a, p, 4));
        count[w as usize] += 1;
    }
    assert!(
        count.iter().all(|&c| (9_000..11_000).contains(&c)),
        "{count:?}"
    );
}

// Hostile input: lies, truncation and garbage give clear errors, never a panic.

#[test]
fn every_truncation_is_refused_cleanly() {
    let mut samples = vec![
        tcp(A, 1, S, 2, SYN, b"data"),
        udp(A, 1, S, 2, b"data"),
        ping(A, S, 9, false),
    ];
    let p = tcp(X, 1, S, 2, ACK, b"data");
    samples.push(icmp_error(Icmpv4Error::TimeExceeded, &p, R, 100));
    for s in &samples {
        for n in 0..s.len() {
            let cut = &s[..n];
            // The IPv4 total length still says the full length: always refused.
            assert!(parse(cut).is_err(), "length {n}");
            // With the total length fixed, anything short of the transport header is refused.
            let mut fixed = cut.to_vec();
            if fixed.len() >= 20 {
                fixed[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                if let Ok(info) = parse(&fixed) {
                    let to = info.key;
                    assert_eq!(translate(&mut fixed, &info, &to), Ok(()));
                }
            }
        }
    }
    let mut t = tcp(A, 1, S, 2, SYN, b"");
    t[2..4].copy_from_slice(&39u16.to_be_bytes());
    assert_eq!(parse(&t[..39]), Err(NatError::Truncated));
}

#[test]
fn length_lies_are_refused() {
    // UDP length beyond the IP payload, and below the header.
    for bad in [100u16, 7, 0] {
        let mut p = udp(A, 1, S, 2, b"abcd");
        p[24..26].copy_from_slice(&bad.to_be_bytes());
        assert_eq!(parse(&p), Err(NatError::BadUdpLength), "length {bad}");
        assert_eq!(
            NatError::BadUdpLength.drop_reason(),
            Some(DropReason::Malformed)
        );
    }
    // A UDP length shorter than the IP payload (trailing bytes) is legal.
    let mut p = udp(A, 1, S, 2, b"abcd");
    p[24..26].copy_from_slice(&10u16.to_be_bytes());
    assert!(parse(&p).is_ok());
    // TCP data offset below 5 or past the packet.
    for doff in [0u8, 4, 15] {
        let mut p = tcp(A, 1, S, 2, SYN, b"");
        p[32] = doff << 4;
        assert_eq!(parse(&p), Err(NatError::BadTcpHeader), "doff {doff}");
    }
    // Fragments and other protocols.
    let mut f = udp(A, 1, S, 2, b"abcd");
    f[6] = 0x20; // more fragments
    assert_eq!(parse(&f), Err(NatError::Fragment));
    let mut gre = udp(A, 1, S, 2, b"abcd");
    gre[9] = 47;
    assert_eq!(parse(&gre), Err(NatError::Unsupported));
    assert_eq!(NatError::Unsupported.drop_reason(), None);
    let mut ts = ping(A, S, 1, false);
    ts[20] = 13; // timestamp request
    assert_eq!(parse(&ts), Err(NatError::Unsupported));
}

#[test]
fn icmp_errors_quoting_garbage_are_refused() {
    let good = udp(X, 1024, S, 53, b"q");
    let base = icmp_error(Icmpv4Error::PortUnreachable, &good, S, 100);
    const Q: usize = 28; // where the quote starts
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("version 6", Box::new(|v| v[Q] = 0x65)),
        ("IHL 4", Box::new(|v| v[Q] = 0x44)),
        ("IHL 15 past the quote", Box::new(|v| v[Q] = 0x4f)),
        ("later fragment", Box::new(|v| v[Q + 7] = 1)),
        ("quoted GRE", Box::new(|v| v[Q + 9] = 47)),
        (
            "quoted ICMP error",
            Box::new(|v| {
                v[Q + 9] = IPPROTO_ICMP;
                v[Q + 20] = 3;
            }),
        ),
        (
            "quote of 7 bytes of payload",
            Box::new(|v| {
                v.truncate(Q + 27);
                let n = v.len() as u16;
                v[2..4].copy_from_slice(&n.to_be_bytes());
            }),
        ),
        (
            "no quote",
            Box::new(|v| {
                v.truncate(Q);
                v[2..4].copy_from_slice(&(Q as u16).to_be_bytes());
            }),
        ),
    ];
    for (what, mutate) in cases {
        let mut v = base.clone();
        mutate(&mut v);
        assert_eq!(parse(&v), Err(NatError::BadQuote), "{what}");
    }
    assert!(parse(&base).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes: parse either refuses or gives something translate can apply to the same buffer.
    #[test]
    fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
                            to in any::<(u32, u32, u16, u16)>()) {
        if bytes.len() >= 20 {
            bytes[0] = 0x45; // give the parser a chance to go deeper
            let n = bytes.len() as u16;
            bytes[2..4].copy_from_slice(&n.to_be_bytes());
            bytes[6] = 0;
            bytes[7] = 0;
        }
        if let Ok(info) = parse(&bytes) {
            let to = Key4::new(info.key.proto, to.0, to.2, to.1, to.3);
            prop_assert_eq!(translate(&mut bytes, &info, &to), Ok(()));
        }
    }

    /// A valid packet with one byte changed anywhere (the quote of an ICMP error included).
    #[test]
    fn mutated_packets_never_panic(which in 0usize..4, pos in any::<usize>(), val in any::<u8>(),
                                   cut in any::<usize>()) {
        let p = tcp(X, 1, S, 2, ACK, b"data");
        let mut v = match which {
            0 => tcp(A, 1, S, 2, SYN, b"data"),
            1 => udp(A, 1, S, 2, b"data"),
            2 => ping(A, S, 9, false),
            _ => icmp_error(Icmpv4Error::TimeExceeded, &p, R, 100),
        };
        let i = pos % v.len();
        v[i] = val;
        v.truncate(v.len() - cut % 8);
        if let Ok(info) = parse(&v) {
            let to = info.key.reversed();
            prop_assert_eq!(translate(&mut v, &info, &to), Ok(()));
        }
    }

    /// Incremental updates equal full recomputation for random addresses, ports and payloads.
    #[test]
    fn translation_keeps_checksums(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sp in any::<u16>(),
                                   dp in any::<u16>(), to in any::<(u32, u32, u16, u16)>(),
                                   data in proptest::collection::vec(any::<u8>(), 0..40), kind in 0u8..3) {
        let mut v = match kind {
            0 => tcp(src, sp, dst, dp, ACK, &data),
            1 => udp(src, sp, dst, dp, &data),
            _ => ping(src, dst, sp, false),
        };
        let info = parse(&v).unwrap();
        let mut target = Key4::new(info.key.proto, to.0, to.2, to.1, to.3);
        if kind == 2 {
            target.dport = target.sport;
        }
        translate(&mut v, &info, &target).unwrap();
        let s = check(&v);
        prop_assert_eq!((u(s.src), u(s.dst), s.sport, s.dport), (target.src, target.dst, target.sport, target.dport));
    }
}

#[test]
fn flow_direction_lookups_after_snat() {
    // A reply key that is also somebody's original key cannot be inserted: the table refuses it.
    let mut t = FlowTable4::with_seed(Config::default(), [9, 9]);
    let o = Key4::new(IPPROTO_UDP, u(A), 1, u(S), 2);
    let r = Key4::new(IPPROTO_UDP, u(S), 2, u(X), 3);
    let id = t.insert(o, r, 0, 0, 0).unwrap();
    assert_eq!(t.lookup(&r), Some((id, Dir::Reply)));
    assert_eq!(t.insert(r, o, 0, 0, 0), Err(InsertError::Exists));
    assert_eq!(t.stats().exists, 1);
}

#[test]
fn a_flood_of_new_flows_is_bounded_and_counted() {
    // 200k SYNs from random endpoints and ports against a 10k-flow table: the first 10k get flows (and ports), the rest
    // are refused as nat_exhausted; memory does not move; established flows keep working throughout.
    let mut nat = Nat::new(10_000);
    let mut p = tcp(A, 40000, S, 80, SYN, b"");
    nat.process(&mut p).unwrap();
    let xp = check(&p).sport;
    let mem = nat.table.memory();
    let mut rng = SplitMix64::new(5);
    let (mut ok, mut refused) = (0u32, 0u32);
    for _ in 0..200_000 {
        let r = rng.next_u32();
        let src = [10, 0, 0, r as u8]; // an endpoint of the masqueraded /24: every flow needs a port
        let mut p = tcp(src, (r >> 16) as u16, S, 443, SYN, b"");
        match nat.process(&mut p) {
            Ok(()) => ok += 1,
            Err(DropReason::NatExhausted) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(nat.table.len(), 10_000);
    assert_eq!(ok + refused, 200_000);
    assert_eq!(nat.table.stats().created, 10_000);
    assert_eq!(refused as u64, nat.table.stats().full);
    assert_eq!(nat.table.memory(), mem);
    assert_eq!(
        nat.ports.in_use(IPPROTO_TCP, u(X)),
        10_000,
        "refused flows hold no port"
    );
    let mut back = tcp(S, 80, X, xp, SYN | ACK, b"");
    nat.process(&mut back).unwrap();
    assert_eq!(check(&back), seen(S, 80, A, 40000));
    // Half-open flows time out after 2 minutes and the table takes new ones again.
    nat.tick(nat.now + 120);
    assert!(nat.table.is_empty());
    assert_eq!(nat.ports.in_use(IPPROTO_TCP, u(X)), 0);
}

// Several workers: every packet goes to the worker the owner rules name, and that worker holds its flow.

struct Cfg;

impl NatConfig for Cfg {
    fn is_external(&self, addr: u32) -> bool {
        addr == u(X)
    }
    fn is_published(&self, proto: u8, addr: u32, port: u16) -> bool {
        addr == u(X)
            && ((proto, port) == (IPPROTO_TCP, 4000) || (proto, port) == (IPPROTO_UDP, 5353))
    }
    fn is_backend(&self, proto: u8, addr: u32, port: u16) -> bool {
        addr == u(B) && ((proto, port) == (IPPROTO_TCP, 80) || (proto, port) == (IPPROTO_UDP, 53))
    }
}

/// Workers with their own tables and port slices, fed by the dataplane's RSS hash.
struct Workers {
    nat: Vec<Nat>,
    split: PortSplit,
    handoffs: u32,
    searched: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    InToOut,
    OutToIn,
}

impl Workers {
    fn new(n: u16) -> Workers {
        let split = PortSplit::new(1024, 65535, n).unwrap();
        let nat = (0..n)
            .map(|w| {
                let mut nat = Nat::new(4096);
                nat.ports = PortAllocator::new(split, w, &[u(X)], 42);
                nat.published.insert((IPPROTO_TCP, 4000), (u(B), 80));
                nat.published.insert((IPPROTO_UDP, 5353), (u(B), 53));
                nat
            })
            .collect();
        Workers {
            nat,
            split,
            handoffs: 0,
            searched: 0,
        }
    }

    /// Delivers `ip` as RSS would, hands it to its owner, and processes it there. `first`: the packet opens
    /// its flow (no worker may know it yet); otherwise the owner must know it.
    fn deliver(&mut self, side: Side, ip: &mut [u8], first: bool) -> Result<(), DropReason> {
        let n = self.nat.len();
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        frame.extend_from_slice(ip);
        let arrival = dataplane::rss::flow_hash(&frame) as usize % n;
        let p = parse(ip).unwrap();
        let owner = match side {
            Side::InToOut => match owner_in_to_out(&p, &self.split, &Cfg) {
                Owner::Here => arrival,
                Owner::Worker(w) => w as usize,
                Owner::Search => {
                    self.searched += 1;
                    (0..n)
                        .map(|i| (arrival + i) % n)
                        .find(|&w| self.nat[w].table.lookup(&p.key).is_some())
                        .expect("some worker holds the flow of an ICMP error")
                }
            },
            Side::OutToIn => owner_out_to_in(&p, &self.split, &Cfg).unwrap() as usize,
        };
        if owner != arrival {
            self.handoffs += 1;
        }
        let holders: Vec<usize> = (0..n)
            .filter(|&w| self.nat[w].table.lookup(&p.key).is_some())
            .collect();
        if first {
            assert!(
                holders.is_empty(),
                "a new flow already known to {holders:?}"
            );
        } else {
            assert_eq!(
                holders,
                vec![owner],
                "{side:?} packet {:?} sent to {owner}",
                p.key
            );
        }
        self.nat[owner].process(ip)
    }
}

#[test]
fn owner_rules_bring_every_packet_to_its_flow() {
    let mut w = Workers::new(4);
    let mut rng = SplitMix64::new(77);
    for i in 0..300u16 {
        let a = [10, 0, 0, 2 + (i % 50) as u8];
        let ap = 10_000 + rng.below(50_000) as u16;
        let c = [203, 0, 113, (i % 200) as u8 + 1];
        let cp = 1024 + rng.below(60_000) as u16;
        match i % 6 {
            0 => {
                // Masquerade, TCP, with an ICMP error from a router and one from the endpoint.
                let mut syn = tcp(a, ap, S, 80, SYN, b"");
                w.deliver(Side::InToOut, &mut syn, true).unwrap();
                let xp = check(&syn).sport;
                let mut synack = tcp(S, 80, X, xp, SYN | ACK, b"");
                w.deliver(Side::OutToIn, &mut synack, false).unwrap();
                assert_eq!(check(&synack), seen(S, 80, a, ap));
                let mut ack = tcp(a, ap, S, 80, ACK, b"x");
                w.deliver(Side::InToOut, &mut ack, false).unwrap();
                let mut err = icmp_error(Icmpv4Error::FragNeeded { mtu: 1280 }, &ack, R, 100);
                w.deliver(Side::OutToIn, &mut err, false).unwrap();
                let mut data = tcp(S, 80, X, xp, ACK, b"y");
                w.deliver(Side::OutToIn, &mut data, false).unwrap();
                let mut err = icmp_error(Icmpv4Error::PortUnreachable, &data, a, 100);
                w.deliver(Side::InToOut, &mut err, false).unwrap();
                assert_eq!(check_outer(&err), (X, S));
            }
            1 => {
                let mut q = udp(a, ap, S, 53, b"q");
                w.deliver(Side::InToOut, &mut q, true).unwrap();
                let xp = check(&q).sport;
                let mut r = udp(S, 53, X, xp, b"r");
                w.deliver(Side::OutToIn, &mut r, false).unwrap();
                assert_eq!(check(&r), seen(S, 53, a, ap));
            }
            2 => {
                let mut e = ping(a, S, ap, false);
                w.deliver(Side::InToOut, &mut e, true).unwrap();
                let id = check(&e).sport;
                let mut r = ping(S, X, id, true);
                w.deliver(Side::OutToIn, &mut r, false).unwrap();
                assert_eq!(check(&r), seen(S, ap, a, ap));
            }
            3 => {
                // Published TCP port, with an error from outside about the answer.
                let mut syn = tcp(c, cp, X, 4000, SYN, b"");
                w.deliver(Side::OutToIn, &mut syn, true).unwrap();
                assert_eq!(check(&syn), seen(c, cp, B, 80));
                let mut synack = tcp(B, 80, c, cp, SYN | ACK, b"");
                w.deliver(Side::InToOut, &mut synack, false).unwrap();
                assert_eq!(check(&synack), seen(X, 4000, c, cp));
                let mut err = icmp_error(Icmpv4Error::TimeExceeded, &synack, R, 100);
                w.deliver(Side::OutToIn, &mut err, false).unwrap();
                let mut ack = tcp(c, cp, X, 4000, ACK, b"");
                w.deliver(Side::OutToIn, &mut ack, false).unwrap();
            }
            4 => {
                // Published UDP port; the backend answers with port unreachable.
                let mut q = udp(c, cp, X, 5353, b"q");
                w.deliver(Side::OutToIn, &mut q, true).unwrap();
                let mut err = icmp_error(Icmpv4Error::PortUnreachable, &q, B, 100);
                w.deliver(Side::InToOut, &mut err, false).unwrap();
                assert_eq!(check_outer(&err), (X, c));
            }
            _ => {
                // Hairpin: an endpoint to the published port.
                let mut syn = tcp(a, ap, X, 4000, SYN, b"");
                w.deliver(Side::InToOut, &mut syn, true).unwrap();
                let out = check(&syn);
                assert_eq!((out.src, out.dst), (X, B));
                let mut synack = tcp(B, 80, X, out.sport, SYN | ACK, b"");
                w.deliver(Side::InToOut, &mut synack, false).unwrap();
                assert_eq!(check(&synack), seen(X, 4000, a, ap));
            }
        }
    }
    // Every worker got flows; replies and published flows moved, masqueraded originals did not.
    for (i, nat) in w.nat.iter().enumerate() {
        assert!(
            nat.table.len() > 20,
            "worker {i} holds {} flows",
            nat.table.len()
        );
    }
    assert!(w.handoffs > 100, "{} handoffs", w.handoffs);
    assert_eq!(w.searched, 50);
}

/// The outer addresses of an ICMP error, after etherparse has verified its checksums.
fn check_outer(err: &[u8]) -> ([u8; 4], [u8; 4]) {
    let s = SlicedPacket::from_ip(err).unwrap();
    let Some(NetSlice::Ipv4(v4)) = &s.net else {
        panic!()
    };
    let h = v4.header();
    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    let Some(TransportSlice::Icmpv4(i)) = &s.transport else {
        panic!()
    };
    assert_eq!(
        i.checksum(),
        Icmpv4Header::with_checksum(i.icmp_type(), i.payload()).checksum
    );
    (h.source(), h.destination())
}

#[test]
fn endpoint_independent_mapping_for_udp() {
    let s2 = [198, 51, 100, 8];
    let s3 = [198, 51, 100, 9];
    let mut nat = Nat::new(64);
    nat.eim = Some(EimTable::new(1024));
    // One inside endpoint to two servers: one public endpoint (RFC 4787 REQ-1).
    let mut q1 = udp(A, 5000, S, 3478, b"stun");
    nat.process(&mut q1).unwrap();
    let m = check(&q1);
    let mut q2 = udp(A, 5000, s2, 3478, b"stun");
    nat.process(&mut q2).unwrap();
    let m2 = check(&q2);
    assert_eq!((m.src, m.sport), (m2.src, m2.sport));
    assert_eq!(nat.ports.in_use(IPPROTO_UDP, u(X)), 1);
    // Both answer through it; a third server that was never contacted is filtered.
    for srv in [S, s2] {
        let mut r = udp(srv, 3478, X, m.sport, b"answer");
        nat.process(&mut r).unwrap();
        assert_eq!(check(&r), seen(srv, 3478, A, 5000));
    }
    let mut r = udp(s3, 3478, X, m.sport, b"unsolicited");
    assert_eq!(nat.process(&mut r), Err(DropReason::NoRoute));
    // Another inside port gets another mapping.
    let mut q3 = udp(A, 5001, S, 3478, b"stun");
    nat.process(&mut q3).unwrap();
    assert_ne!(check(&q3).sport, m.sport);
    // The mapping lives while one of its flows does: refresh the flow to S, let the others time out.
    nat.now += 100;
    nat.process(&mut udp(A, 5000, S, 3478, b"keepalive"))
        .unwrap();
    nat.tick(nat.now + 100);
    assert!(nat.ports.is_allocated(IPPROTO_UDP, u(X), m.sport));
    assert_eq!(
        nat.eim
            .as_ref()
            .unwrap()
            .get(IPPROTO_UDP, u(A), 5000)
            .unwrap()
            .2,
        1
    );
    nat.tick(nat.now + 180);
    assert!(!nat.ports.is_allocated(IPPROTO_UDP, u(X), m.sport));
    assert!(nat.eim.as_ref().unwrap().is_empty());
    assert_eq!(nat.ports.in_use(IPPROTO_UDP, u(X)), 0);
}
