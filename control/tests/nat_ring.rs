//! NAT through the whole router over `ring` ports, with two workers: frames built and checked with
//! etherparse (addresses, ports, every checksum recomputed independently). The test plays both sides: a host
//! on the inside port (10.0.0.2, published as 198.51.100.1:4000) and a host on the outside (198.51.100.2).
//!
//! The ring peers feed queue 0 only, so everything arrives on worker 0: flows that worker 1 owns (published
//! flows whose client hashes to it) are handed over, in both directions, and must come out right.

use control::router::Router;
use etherparse::{
    IcmpEchoHeader, Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
};
use std::time::Duration;

mod common;
use common::ring_peer::Peer;

/// The endpoint with a published port, after the NAT topology.
const ENDPOINT: &str = r#"
[[endpoints]]
name = "h"
port = "in"
address = "10.0.0.2/24"
publish = ["4000:80/tcp"]
"#;

const H_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const O_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
const H: [u8; 4] = [10, 0, 0, 2];
const O: [u8; 4] = [198, 51, 100, 2];
const X: [u8; 4] = [198, 51, 100, 1];

/// What a received frame says, every checksum verified against etherparse's own computation.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    ttl: u8,
}

fn parse(f: &[u8]) -> (SlicedPacket<'_>, Seen) {
    let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("{e:?}: {f:02x?}"));
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4: {f:02x?}")
    };
    let h = ip.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let (src, dst, ttl) = (h.source, h.destination, h.time_to_live);
    let payload = ip.payload().payload;
    let (sport, dport) = match &p.transport {
        Some(TransportSlice::Udp(u)) => {
            let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), want, "UDP checksum");
            (u.source_port(), u.destination_port())
        }
        Some(TransportSlice::Tcp(t)) => {
            let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "TCP checksum");
            (t.source_port(), t.destination_port())
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(
                i.checksum(),
                i.header().icmp_type.calc_checksum(i.payload()),
                "ICMP checksum"
            );
            (0, 0)
        }
        _ => panic!("transport of {f:02x?} ({} payload bytes)", payload.len()),
    };
    (
        p,
        Seen {
            src,
            dst,
            sport,
            dport,
            ttl,
        },
    )
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], s: ([u8; 4], u16), d: ([u8; 4], u16)) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(s.0, d.0, 64)
        .udp(s.1, d.1);
    let mut f = Vec::new();
    b.write(&mut f, b"payload!").unwrap();
    f
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    s: ([u8; 4], u16),
    d: ([u8; 4], u16),
    syn: bool,
    ack: bool,
    ttl: u8,
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(s.0, d.0, ttl)
        .tcp(s.1, d.1, 1000, 64240);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    f
}

/// Sends `f` from `from` and waits for one IPv4 frame at `to`.
fn one(router: &Router, from: &mut Peer, to: &mut Peer, f: &[u8]) -> Vec<u8> {
    from.send(router, f);
    let got = to.recv_ip(1, Duration::from_secs(3));
    assert_eq!(
        got.len(),
        1,
        "nothing came out for {f:02x?}: {}",
        router.show_drops()
    );
    got.into_iter().next().unwrap()
}

fn event(r: &Router, name: &str) -> u64 {
    r.show_stats()["events"][name].as_u64().unwrap()
}

fn drops(r: &Router, reason: &str) -> u64 {
    r.show_drops()[reason].as_u64().unwrap_or(0)
}

/// The router over the NAT ring topology with two workers and `extra` in its config, both peers open and
/// each side's ARP done: (router, inside peer, outside peer, router's inside MAC, router's outside MAC).
fn started(extra: &str) -> (Router, Peer, Peer, [u8; 6], [u8; 6]) {
    let cfg = control::config::parse(
        &common::nat_config::nat_ring_config(8192, 2, "adaptive", extra),
        "nat_ring.toml",
    )
    .unwrap();
    let router = Router::start(cfg, None).unwrap();
    let mut pin = Peer::open(&router, "gen_in");
    let mut pup = Peer::open(&router, "gen_up");
    let r_in = pin.resolve(&router, None, H_MAC, H, [10, 0, 0, 1]);
    let r_up = pup.resolve(&router, None, O_MAC, O, X);
    (router, pin, pup, r_in, r_up)
}

#[test]
fn masquerade_publish_icmp_errors_and_handoffs_between_two_workers() {
    let (router, mut pin, mut pup, r_in, r_up) = started(ENDPOINT);

    // Masquerade, UDP out (the router learned O's and H's MACs from their ARP requests above).
    pin.send(&router, &udp(H_MAC, r_in, (H, 5555), (O, 53)));
    let out = pup.recv_ip(1, Duration::from_secs(3));
    assert_eq!(out.len(), 1, "{}", router.show_drops());
    let (_, s) = parse(&out[0]);
    assert_eq!((s.src, s.dst, s.dport, s.ttl), (X, O, 53, 63));
    assert!(s.sport >= 1024, "{s:?}");
    let ext_port = s.sport;

    // The answer comes back to H:5555.
    pup.send(&router, &udp(O_MAC, r_up, (O, 53), (X, ext_port)));
    let back = pin.recv_ip(1, Duration::from_secs(3));
    assert_eq!(back.len(), 1, "{}", router.show_drops());
    let (_, s) = parse(&back[0]);
    assert_eq!((s.src, s.dst, s.sport, s.dport), (O, H, 53, 5555));

    // An ICMP port unreachable from O about the translated datagram reaches H about what H sent.
    let quote = &out[0][14..14 + 28];
    let mut err = Vec::new();
    PacketBuilder::ethernet2(O_MAC, r_up)
        .ipv4(O, X, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut err, quote)
        .unwrap();
    let got = one(&router, &mut pup, &mut pin, &err);
    let (p, s) = parse(&got);
    assert_eq!((s.src, s.dst), (O, H));
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    let inner = etherparse::Ipv4HeaderSlice::from_slice(icmp.payload()).unwrap();
    assert_eq!(
        (inner.source(), inner.destination()),
        (H, O),
        "the quote is translated back"
    );
    assert_eq!(
        inner.header_checksum(),
        inner.to_header().calc_header_checksum()
    );
    let l4 = &icmp.payload()[inner.slice().len()..];
    assert_eq!(
        u16::from_be_bytes([l4[0], l4[1]]),
        5555,
        "quoted source port"
    );

    // Ping through the NAT: the echo identifier is translated and restored.
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(H_MAC, r_in)
        .ipv4(H, O, 64)
        .icmpv4_echo_request(0x77, 1)
        .write(&mut ping, b"abcdefgh")
        .unwrap();
    let got = one(&router, &mut pin, &mut pup, &ping);
    let (p, s) = parse(&got);
    assert_eq!((s.src, s.dst), (X, O));
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    let Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }) = icmp.icmp_type() else {
        panic!("not an echo request")
    };
    assert_eq!(seq, 1);
    let mut pong = Vec::new();
    PacketBuilder::ethernet2(O_MAC, r_up)
        .ipv4(O, X, 64)
        .icmpv4_echo_reply(id, 1)
        .write(&mut pong, b"abcdefgh")
        .unwrap();
    let got = one(&router, &mut pup, &mut pin, &pong);
    let (p, s) = parse(&got);
    assert_eq!((s.src, s.dst), (O, H));
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    assert!(matches!(
        icmp.icmp_type(),
        Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0x77, seq: 1 })
    ));

    // Published: 64 clients' SYNs to X:4000 reach H:80 untouched but for the destination; H's SYN-ACKs leave
    // from X:4000. The flows worker 1 owns are handed over both ways.
    let handoffs0 = event(&router, "nat_handoff");
    for i in 0..64u16 {
        let client = (O, 40_000 + i);
        let got = one(
            &router,
            &mut pup,
            &mut pin,
            &tcp(O_MAC, r_up, client, (X, 4000), true, false, 64),
        );
        let (_, s) = parse(&got);
        assert_eq!((s.src, s.sport, s.dst, s.dport), (O, client.1, H, 80));
        let got = one(
            &router,
            &mut pin,
            &mut pup,
            &tcp(H_MAC, r_in, (H, 80), client, true, true, 64),
        );
        let (_, s) = parse(&got);
        assert_eq!((s.src, s.sport, s.dst, s.dport), (X, 4000, O, client.1));
    }
    let handoffs = event(&router, "nat_handoff") - handoffs0;
    assert!(
        handoffs >= 2,
        "64 published flows over two workers and not one handed over ({handoffs})"
    );

    // A segment of no connection to the published port opens nothing: dropped and counted.
    let before = drops(&router, "nat_no_session");
    pup.send(
        &router,
        &tcp(O_MAC, r_up, (O, 39_999), (X, 4000), false, true, 64),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(drops(&router, "nat_no_session"), before + 1);
    assert!(pin.recv_ip(1, Duration::from_millis(100)).is_empty());

    // TTL 1 to the published port: time exceeded back to the client, quoting what it sent (X:4000).
    pup.send(
        &router,
        &tcp(O_MAC, r_up, (O, 39_998), (X, 4000), true, false, 1),
    );
    let got = pup.recv_ip(1, Duration::from_secs(3));
    assert_eq!(got.len(), 1, "no time exceeded: {}", router.show_drops());
    let got = &got[0];
    let (p, s) = parse(got);
    assert_eq!((s.src, s.dst), (X, O));
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::TimeExceeded(_)));
    let inner = etherparse::Ipv4HeaderSlice::from_slice(icmp.payload()).unwrap();
    assert_eq!(inner.destination(), X, "the quote is what the client sent");

    let ct = router.show_conntrack(None, 1000);
    assert_eq!(ct["workers_answered"], 2, "{ct}");
    assert!(ct["total"].as_u64().unwrap() >= 66, "{ct}");
    assert_eq!(drops(&router, "nat_handoff_drop"), 0);
    router.stop();
}

#[test]
fn masquerade_answers_come_back_to_the_worker_that_owns_their_flow() {
    // The ring peers spread what they send over the router's two queues by flow hash, as a NIC's RSS does,
    // and the router knows it (the `ring` port's steering): each masqueraded flow gets an external port
    // whose answers RSS brings to the worker that made the flow, so none is handed over.
    let (router, mut pin, mut pup, r_in, r_up) = started("");
    let handoffs0 = event(&router, "nat_handoff");
    let mut ext_ports = std::collections::HashSet::new();
    for i in 0..64u16 {
        let (hp, op) = (20_000 + i, [53, 80, 443, 8080][i as usize % 4]);
        let udp_flow = i % 2 == 0;
        let out = if udp_flow {
            udp(H_MAC, r_in, (H, hp), (O, op))
        } else {
            tcp(H_MAC, r_in, (H, hp), (O, op), true, false, 64)
        };
        let (_, s) = parse(&one(&router, &mut pin, &mut pup, &out));
        assert_eq!((s.src, s.dst, s.dport), (X, O, op));
        assert!(ext_ports.insert(s.sport), "port {} twice", s.sport);
        let answer = if udp_flow {
            udp(O_MAC, r_up, (O, op), (X, s.sport))
        } else {
            tcp(O_MAC, r_up, (O, op), (X, s.sport), true, true, 64)
        };
        let (_, b) = parse(&one(&router, &mut pup, &mut pin, &answer));
        assert_eq!((b.src, b.sport, b.dst, b.dport), (O, op, H, hp));
    }
    let ct = router.show_conntrack(None, 1000);
    assert_eq!(ct["total"], 64, "{ct}");
    let flows = ct["flows"].as_array().unwrap();
    let on = |w: u64| flows.iter().filter(|f| f["worker"] == w).count();
    assert!(on(0) > 8 && on(1) > 8, "flows made on both workers: {ct}");
    assert_eq!(
        event(&router, "nat_handoff") - handoffs0,
        0,
        "an answer was handed over"
    );
    // `show nat` says how answers are steered, and that every flow's port was a steered one.
    let nat = router.show_nat();
    assert_eq!(
        nat["answer_steering"], "wharf's flow hash over 2 queue(s)",
        "{nat}"
    );
    let unsteered: u64 = nat["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["ports_unsteered"].as_u64().unwrap())
        .sum();
    assert_eq!(unsteered, 0, "{nat}");
    router.stop();
}
