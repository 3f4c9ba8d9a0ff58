//! AF_PACKET ports against real kernel traffic: a veth pair between two network namespaces, one end (`h`) for
//! the port, the other with an IPv4 address and Rust std sockets. Both ends live in namespaces the test creates
//! (and deletes, also on failure), so no frame can reach any other network. Needs root; see
//! `netns::require_root`.

use dataplane::netns::{self, NetnsGuard, VethGuard};
use dataplane::port::afpacket::{AfPacketConfig, AfPacketPort};
use dataplane::{Burst, DropReason, Meta, Pkt, Pool, PoolConfig, Port, PortError, PortQueue};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Two namespaces joined by a veth: `ns` (a host with an IP stack) and `hns` (where the port's interface is).
struct Lab {
    // Drop order: the veth, then the namespaces.
    veth: VethGuard,
    ns: NetnsGuard,
    hns: NetnsGuard,
    ns_mac: [u8; 6],
    h_mac: [u8; 6],
    /// 10.<net>.0.1: the namespace's address; 10.<net>.0.2: the neighbour behind the port.
    net: u8,
}

impl Lab {
    fn new(net: u8) -> Lab {
        let ns = NetnsGuard::new("wafns").unwrap();
        let hns = NetnsGuard::new("wafh").unwrap();
        let mut veth = VethGuard::new("wan", "wah").unwrap();
        veth.move_a(ns.name()).unwrap();
        veth.move_b(hns.name()).unwrap();
        let ns_mac = [0x02, 0x0a, net, 0, 0, 1];
        let h_mac = [0x02, 0x0a, net, 0, 0, 2];
        netns::set_mac(Some(ns.name()), veth.a(), ns_mac).unwrap();
        netns::set_mac(Some(hns.name()), veth.b(), h_mac).unwrap();
        netns::add_addr4(Some(ns.name()), veth.a(), Ipv4Addr::new(10, net, 0, 1), 24).unwrap();
        netns::set_up(Some(ns.name()), veth.a()).unwrap();
        netns::set_up(Some(hns.name()), veth.b()).unwrap();
        // The neighbour behind the port is known statically: no ARP needed.
        netns::add_neigh4(
            Some(ns.name()),
            veth.a(),
            Ipv4Addr::new(10, net, 0, 2),
            h_mac,
        )
        .unwrap();
        let a = veth.a().to_string();
        ns.run(move || netns::disable_tx_checksum_offload(&a))
            .unwrap()
            .unwrap();
        Lab {
            veth,
            ns,
            hns,
            ns_mac,
            h_mac,
            net,
        }
    }

    fn ns_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, 1)
    }

    fn peer_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, 2)
    }

    fn config(&self, queues: u16) -> AfPacketConfig {
        AfPacketConfig {
            interface: self.veth.b().to_string(),
            queues,
            block_size: 1 << 16,
            // The tests send a batch before they read: with the 1 ms retire timeout every millisecond of
            // trickle closes a block, so enough blocks to hold the whole batch while nobody reads.
            block_count: 64,
            tx_frames: 64,
            ..Default::default()
        }
    }

    /// Opens the port inside the port's namespace; its sockets stay there.
    fn open(&self, cfg: &AfPacketConfig, pool: &Pool) -> Result<Arc<AfPacketPort>, PortError> {
        self.hns
            .run(|| AfPacketPort::open("p0", cfg, pool))
            .unwrap()
    }

    /// Sends one UDP datagram per `(src_port, payload)` from the namespace to the neighbour behind the port.
    fn send_from_ns(&self, dst_port: u16, datagrams: Vec<(u16, Vec<u8>)>) {
        let (src, dst) = (self.ns_ip(), self.peer_ip());
        self.ns
            .run(move || {
                let mut socks: HashMap<u16, UdpSocket> = HashMap::new();
                for (sport, payload) in datagrams {
                    let s = socks
                        .entry(sport)
                        .or_insert_with(|| UdpSocket::bind(SocketAddrV4::new(src, sport)).unwrap());
                    s.send_to(&payload, SocketAddrV4::new(dst, dst_port))
                        .unwrap();
                }
            })
            .unwrap();
    }
}

fn pool() -> Pool {
    Pool::new(&PoolConfig {
        buffers: 2048,
        data_room: 2048,
        cache_size: 32,
        hugepages: false,
    })
    .unwrap()
}

/// A UDP/IPv4 datagram seen in a frame: (src ip, dst ip, src port, dst port, payload, checksum ok).
struct Udp4 {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
    checksum_ok: bool,
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
}

fn parse_udp4(frame: &[u8]) -> Option<Udp4> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return None;
    };
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        return None;
    };
    let h = ip.header();
    let calc = udp
        .to_header()
        .calc_checksum_ipv4_raw(h.source(), h.destination(), udp.payload())
        .ok()?;
    Some(Udp4 {
        src: h.source_addr(),
        dst: h.destination_addr(),
        sport: udp.source_port(),
        dport: udp.destination_port(),
        payload: udp.payload().to_vec(),
        checksum_ok: calc == udp.checksum(),
        eth_src: frame[6..12].try_into().ok()?,
        eth_dst: frame[..6].try_into().ok()?,
    })
}

/// Polls `queues` until `done` says so or 5 s pass; returns every packet received with its queue index.
fn poll(
    queues: &mut [Box<dyn PortQueue>],
    burst_size: usize,
    mut done: impl FnMut(&[(usize, Pkt)]) -> bool,
) -> Vec<(usize, Pkt)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut burst = Burst::new(burst_size);
    while Instant::now() < deadline && !done(&got) {
        let mut any = false;
        for (i, q) in queues.iter_mut().enumerate() {
            if q.rx_burst(&mut burst) > 0 {
                any = true;
                got.extend(burst.drain().map(|p| (i, p)));
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

fn count_udp_to(got: &[(usize, Pkt)], dport: u16) -> usize {
    got.iter()
        .filter(|(_, p)| parse_udp4(p.data()).is_some_and(|u| u.dport == dport))
        .count()
}

#[test]
fn port_info_matches_the_interface() {
    if !netns::require_root("afpacket_veth::port_info_matches_the_interface") {
        return;
    }
    let lab = Lab::new(31);
    let pool = pool();
    let port = lab.open(&lab.config(1), &pool).unwrap();
    let info = port.info();
    assert_eq!(info.name, "p0");
    assert_eq!(info.backend, "afpacket");
    assert_eq!(info.queues, 1);
    assert_eq!(
        info.mac,
        Some(netns::link_mac(Some(lab.hns.name()), lab.veth.b()).unwrap())
    );
    assert_eq!(info.mac, Some(lab.h_mac));
    assert_eq!(info.mtu, 1500);
    assert!(info.link_up);
    assert_eq!(port.interface(), lab.veth.b());
    assert_eq!(
        port.tx_ring_version(),
        3,
        "this kernel has TPACKET_V3 transmit rings"
    );
    assert_eq!(port.fanout_group(), None);

    // Carrier follows the peer end.
    netns::set_down(Some(lab.ns.name()), lab.veth.a()).unwrap();
    // The carrier change reaches the other end asynchronously: give it a moment under load.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while port.info().link_up && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!port.info().link_up);
    netns::set_up(Some(lab.ns.name()), lab.veth.a()).unwrap();
    netns::set_mtu(Some(lab.hns.name()), lab.veth.b(), 1400).unwrap();
    assert_eq!(port.info().mtu, 1400);

    // Each queue opens once; an unknown queue is refused.
    let q = port.open_queue(0).unwrap();
    assert!(matches!(
        port.open_queue(0),
        Err(PortError::QueueTaken { .. })
    ));
    assert!(matches!(
        port.open_queue(1),
        Err(PortError::NoSuchQueue { .. })
    ));
    drop(q);
    assert!(port.open_queue(0).is_ok());
}

#[test]
fn receives_what_the_namespace_sends_in_order_across_reopen() {
    if !netns::require_root(
        "afpacket_veth::receives_what_the_namespace_sends_in_order_across_reopen",
    ) {
        return;
    }
    let lab = Lab::new(32);
    let pool = pool();
    let port = lab.open(&lab.config(1), &pool).unwrap();
    const N: usize = 60;
    let payload = |i: usize| format!("wharf rx {i:03} ").repeat(1 + i % 7).into_bytes();
    lab.send_from_ns(5000, (0..N).map(|i| (4000, payload(i))).collect());

    // Take a few with a small burst, close the queue mid-block, reopen it and take the rest.
    let mut q = vec![port.open_queue(0).unwrap()];
    let mut got = poll(&mut q, 4, |g| !g.is_empty());
    assert!(!got.is_empty());
    drop(q);
    let mut q = vec![port.open_queue(0).unwrap()];
    let before = got.len();
    got.extend(poll(&mut q, 32, |g| count_udp_to(g, 5000) + before >= N));

    let udp: Vec<(Udp4, &Pkt)> = got
        .iter()
        .filter_map(|(_, p)| parse_udp4(p.data()).map(|u| (u, p)))
        .filter(|(u, _)| u.dport == 5000)
        .collect();
    assert_eq!(udp.len(), N, "every datagram arrives once");
    for (i, (u, p)) in udp.iter().enumerate() {
        assert_eq!(u.payload, payload(i), "datagram {i} in order, bytes intact");
        assert_eq!((u.src, u.dst), (lab.ns_ip(), lab.peer_ip()));
        assert_eq!((u.sport, u.dport), (4000, 5000));
        assert_eq!((u.eth_src, u.eth_dst), (lab.ns_mac, lab.h_mac));
        assert!(
            u.checksum_ok,
            "datagram {i}: complete UDP checksum (offload off in the namespace)"
        );
        assert_eq!(p.meta().in_queue, 0);
        assert_eq!(p.meta().flags & Meta::FLAG_VLAN, 0);
    }
    let c = port.counters();
    assert!(c.rx_packets >= N as u64);
    let bytes: u64 = udp.iter().map(|(_, p)| p.len() as u64).sum();
    assert!(c.rx_bytes >= bytes);
    assert_eq!(c.rx_missed, 0);
    assert!(c.drops.is_empty(), "{:?}", c.drops);
}

#[test]
fn transmits_to_a_socket_in_the_namespace() {
    if !netns::require_root("afpacket_veth::transmits_to_a_socket_in_the_namespace") {
        return;
    }
    let lab = Lab::new(33);
    let pool = pool();
    let port = lab.open(&lab.config(1), &pool).unwrap();
    let ns_ip = lab.ns_ip();
    let sock = lab
        .ns
        .run(move || UdpSocket::bind(SocketAddrV4::new(ns_ip, 5001)))
        .unwrap()
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    let frame = |payload: &[u8]| {
        let b = PacketBuilder::ethernet2(lab.h_mac, lab.ns_mac)
            .ipv4(lab.peer_ip().octets(), ns_ip.octets(), 64)
            .udp(6000, 5001);
        let mut f = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut f, payload).unwrap();
        f
    };
    const N: usize = 150; // more than the 64-slot ring: tx_burst must hand some back when full
    let payloads: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("wharf tx {i:03}").repeat(1 + i % 20).into_bytes())
        .collect();
    let mut q = port.open_queue(0).unwrap();
    let mut burst = Burst::new(256);
    for p in &payloads {
        let mut pkt = pool.alloc().unwrap();
        assert!(pkt.set_frame(&frame(p)));
        burst.push(pkt).unwrap();
    }
    // A frame larger than MTU + header: dropped and counted, not sent.
    let mut big = pool.alloc().unwrap();
    assert!(big.set_frame(&frame(&[0u8; 1500])));
    let mut big_burst = Burst::new(1);
    big_burst.push(big).unwrap();
    assert_eq!(q.tx_burst(&mut big_burst), 1);
    assert!(big_burst.is_empty());

    let mut received = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.len() < N && Instant::now() < deadline {
        let taken = q.tx_burst(&mut burst);
        // The ring never takes more than it has slots; the rest stays with the caller, in order.
        assert!(taken <= 64);
        // Drain what arrived so the socket buffer never overflows.
        sock.set_nonblocking(true).unwrap();
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            assert_eq!(from, std::net::SocketAddr::from((lab.peer_ip(), 6000)));
            received.push(buf[..n].to_vec());
        }
        if taken == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(burst.is_empty(), "everything was taken");
    assert_eq!(received.len(), N, "every frame reached the socket");
    assert_eq!(received, payloads, "in order, bytes intact");
    let c = port.counters();
    assert_eq!(c.tx_packets, N as u64);
    let bytes: u64 = payloads.iter().map(|p| frame(p).len() as u64).sum();
    assert_eq!(c.tx_bytes, bytes);
    assert_eq!(c.drops, vec![(DropReason::TooBig.name(), 1)]);
}

#[test]
fn fanout_spreads_flows_over_two_queues_without_duplicates() {
    if !netns::require_root(
        "afpacket_veth::fanout_spreads_flows_over_two_queues_without_duplicates",
    ) {
        return;
    }
    let lab = Lab::new(34);
    let pool = pool();
    let port = lab.open(&lab.config(2), &pool).unwrap();
    assert!(port.fanout_group().is_some());
    assert_eq!(port.info().queues, 2);
    const FLOWS: u16 = 64;
    const PER_FLOW: u16 = 8;
    let mut datagrams = Vec::new();
    for seq in 0..PER_FLOW {
        for flow in 0..FLOWS {
            datagrams.push((10000 + flow, format!("flow {flow} seq {seq}").into_bytes()));
        }
    }
    lab.send_from_ns(5002, datagrams);
    let total = usize::from(FLOWS * PER_FLOW);
    let mut queues = vec![port.open_queue(0).unwrap(), port.open_queue(1).unwrap()];
    let got = poll(&mut queues, 32, |g| count_udp_to(g, 5002) >= total);

    let mut seen = HashSet::new();
    let mut flow_queue: HashMap<u16, usize> = HashMap::new();
    let mut per_queue = [0usize; 2];
    for (qi, p) in &got {
        let Some(u) = parse_udp4(p.data()) else {
            continue;
        };
        if u.dport != 5002 {
            continue;
        }
        assert_eq!(usize::from(p.meta().in_queue), *qi);
        assert!(
            seen.insert(u.payload.clone()),
            "received twice: {:?}",
            String::from_utf8_lossy(&u.payload)
        );
        let q = *flow_queue.entry(u.sport).or_insert(*qi);
        assert_eq!(q, *qi, "flow {} seen on both queues", u.sport);
        per_queue[*qi] += 1;
    }
    assert_eq!(seen.len(), total, "every datagram received exactly once");
    assert_eq!(flow_queue.len(), usize::from(FLOWS));
    assert!(
        per_queue[0] > 0 && per_queue[1] > 0,
        "64 flows hashed over 2 queues use both: {per_queue:?}"
    );
}

#[test]
fn stripped_vlan_tag_is_put_back() {
    if !netns::require_root("afpacket_veth::stripped_vlan_tag_is_put_back") {
        return;
    }
    let lab = Lab::new(35);
    let pool = pool();
    let port = lab.open(&lab.config(1), &pool).unwrap();
    // A second port on the namespace's end sends 802.1Q-tagged frames; the receiving kernel moves the tag into
    // the packet's metadata before AF_PACKET sees it (TP_STATUS_VLAN_VALID), and the port must put it back.
    let sender_cfg = AfPacketConfig {
        interface: lab.veth.a().to_string(),
        promiscuous: false,
        ..lab.config(1)
    };
    let sender = lab
        .ns
        .run(|| AfPacketPort::open("sender", &sender_cfg, &pool))
        .unwrap()
        .unwrap();
    let mut sq = sender.open_queue(0).unwrap();
    let mut burst = Burst::new(8);
    for i in 0..5u8 {
        let b = PacketBuilder::ethernet2(lab.ns_mac, lab.h_mac)
            .single_vlan(etherparse::VlanId::try_new(10).unwrap())
            .ipv4([10, 35, 10, 1], [10, 35, 10, 2], 64)
            .udp(4010, 5010);
        let mut f = Vec::new();
        b.write(&mut f, &[i; 20]).unwrap();
        // PCP 5 in the TCI, to see the whole TCI come back.
        f[14] |= 5 << 5;
        let mut p = pool.alloc().unwrap();
        p.set_frame(&f);
        burst.push(p).unwrap();
    }
    assert_eq!(sq.tx_burst(&mut burst), 5);

    let mut q = vec![port.open_queue(0).unwrap()];
    let is_ours = |p: &Pkt| {
        SlicedPacket::from_ethernet(p.data())
            .ok()
            .and_then(|s| match s.transport {
                Some(TransportSlice::Udp(u)) => Some(u.destination_port() == 5010),
                _ => None,
            })
            .unwrap_or(false)
    };
    let got = poll(&mut q, 32, |g| {
        g.iter().filter(|(_, p)| is_ours(p)).count() >= 5
    });
    let mut n = 0;
    for (_, p) in got.iter().filter(|(_, p)| is_ours(p)) {
        let s = SlicedPacket::from_ethernet(p.data()).unwrap();
        assert_eq!(
            &p.data()[12..14],
            &[0x81, 0x00],
            "802.1Q tag in the frame bytes"
        );
        let Some(etherparse::VlanSlice::SingleVlan(v)) = &s.vlan else {
            panic!("one tag expected")
        };
        assert_eq!(v.vlan_identifier().value(), 10);
        assert_eq!(v.priority_code_point().value(), 5);
        assert_ne!(p.meta().flags & Meta::FLAG_VLAN, 0);
        assert_eq!(p.meta().vlan_tci, (5 << 13) | 10);
        let Some(TransportSlice::Udp(u)) = &s.transport else {
            unreachable!()
        };
        assert_eq!(u.payload(), &[n as u8; 20]);
        assert_eq!(
            p.len(),
            14 + 4 + 20 + 8 + 20,
            "tag re-inserted, nothing else added"
        );
        n += 1;
    }
    assert_eq!(n, 5);
}

#[test]
fn ring_overruns_are_counted_as_missed() {
    if !netns::require_root("afpacket_veth::ring_overruns_are_counted_as_missed") {
        return;
    }
    let lab = Lab::new(36);
    let pool = pool();
    // A tiny ring: two 4 KiB blocks hold a few dozen frames.
    let cfg = AfPacketConfig {
        block_size: 4096,
        block_count: 2,
        ..lab.config(1)
    };
    let port = lab.open(&cfg, &pool).unwrap();
    const N: usize = 400;
    lab.send_from_ns(5003, (0..N).map(|i| (4003, vec![i as u8; 200])).collect());
    let mut q = vec![port.open_queue(0).unwrap()];
    // Read until the ring stays empty for a while.
    let mut quiet_since = Instant::now();
    let mut last = 0;
    let got = poll(&mut q, 64, |g| {
        if g.len() != last {
            last = g.len();
            quiet_since = Instant::now();
        }
        quiet_since.elapsed() > Duration::from_millis(200)
    });
    drop(q); // closing the queue reads the kernel's counters one last time
    let received = count_udp_to(&got, 5003);
    let c = port.counters();
    assert!(received < N, "the tiny ring cannot hold {N} frames");
    assert!(c.rx_missed > 0, "overruns show up as rx_missed: {c:?}");
    assert!(
        received as u64 + c.rx_missed >= N as u64,
        "received {received} + missed {} account for all {N}",
        c.rx_missed
    );
}
