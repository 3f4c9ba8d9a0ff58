//! The L3 stage driven through `Snapshot` as a `Processor`, on a hand-built topology:
//!
//! - port 0: routed, interface 0 (`r0`), 10.0.0.1/24 and fd00::1/64; host H0 (10.0.0.2, fd00::2) behind it;
//! - port 1: routed, interface 1 (`r1`), 10.1.0.1/24 and fd01::1/64; neighbours and gateways behind it;
//! - ports 2 and 3: bridge domain 0 (`br`) whose gateway is interface 2, 10.2.0.1/24 and fd02::1/64;
//!
//! and a FIB built the way `control/src/compile/l3.rs` builds it: connected routes (attached), the local /32s and
//! /128s (link-local included), a static route through a gateway, an ECMP group, a blackhole and an unreachable
//! route for each family. Frames are built with etherparse (and by hand where they must be broken), and what
//! leaves is read with etherparse and smoltcp, checksums included.

use dataplane::worker::{BurstCtx, Processor, TxBatches};
use dataplane::{Burst, DropReason, Event, Pool, WorkerCounters};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pipelines::bridge::mac_table::MacTable;
use pipelines::bridge::{BridgeDomain, Egress};
use pipelines::fib::{Lpm4, Lpm6};
use pipelines::l2::{Domain, L2Ingress};
use pipelines::l3::host::HostQueues;
use pipelines::l3::neigh::{NeighKey, NeighTable, Neighbor};
use pipelines::l3::{link_local_of, Adjacency, Attach, Interface, L3Tables};
use pipelines::snapshot::{PortRole, WorkerState};
use pipelines::Snapshot;
use proptest::prelude::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire as st;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

type Mac = [u8; 6];

const PORTS: usize = 4;
const SEC: u64 = 1_000_000_000;
/// The clock of most tests (not 0: the ICMP token bucket starts empty and fills with time).
const T: u64 = 100 * SEC;

/// Router MACs of interfaces 0, 1 and 2 (the bridge gateway).
const R0: Mac = [0x02, 0xaa, 0, 0, 0, 0];
const R1: Mac = [0x02, 0xaa, 0, 0, 0, 1];
const GW: Mac = [0x02, 0xaa, 0, 0, 0, 2];
/// H0: a host on port 0 (10.0.0.2, fd00::2).
const H0: Mac = [0x02, 0xbb, 0, 0, 0, 2];
/// N1: a neighbour on port 1 (10.1.0.5, fd01::5).
const N1: Mac = [0x02, 0xcc, 0, 0, 0, 5];
/// The static route's gateway on port 1 (10.1.0.254, fd01::fe).
const G1: Mac = [0x02, 0xcc, 0, 0, 0, 0xfe];
/// HB: a host on the bridge, port 2 (10.2.0.5, fd02::5).
const HB: Mac = [0x02, 0xdd, 0, 0, 0, 5];
const BCAST: Mac = [0xff; 6];

const H0_4: [u8; 4] = [10, 0, 0, 2];
const N1_4: [u8; 4] = [10, 1, 0, 5];
const HB_4: [u8; 4] = [10, 2, 0, 5];

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn o6(s: &str) -> [u8; 16] {
    v6(s).octets()
}

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

// ---------------------------------------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------------------------------------

/// What differs between the tests' topologies.
#[derive(Clone)]
struct Opts {
    /// IP MTU of interface 1.
    mtu1: u16,
    /// ICMP errors per second and worker.
    icmp_rate: u32,
    /// Give the tables the harness pool (announcements need it).
    with_pool: bool,
    /// Drop IPv4 packets with options.
    drop_options: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            mtu1: 1500,
            icmp_rate: 1000,
            with_pool: false,
            drop_options: false,
        }
    }
}

/// Adjacencies, deduplicated like the compiler does.
#[derive(Default)]
struct Adjs {
    list: Vec<Adjacency>,
    ecmp: Vec<u32>,
}

impl Adjs {
    fn one(&mut self, a: Adjacency) -> u32 {
        if let Some(i) = self.list.iter().position(|x| *x == a) {
            return i as u32;
        }
        self.list.push(a);
        self.list.len() as u32 - 1
    }

    fn group(&mut self, members: &[Adjacency]) -> u32 {
        let ids: Vec<u32> = members.iter().map(|m| self.one(*m)).collect();
        let first = self.ecmp.len() as u32;
        self.ecmp.extend_from_slice(&ids);
        self.list.push(Adjacency::Ecmp {
            first,
            count: ids.len() as u32,
        });
        self.list.len() as u32 - 1
    }
}

fn mapped(a: [u8; 4]) -> u128 {
    0xffff_0000_0000 | u32::from_be_bytes(a) as u128
}

fn gw4(iface: u16, a: [u8; 4]) -> Adjacency {
    Adjacency::Gateway {
        iface,
        via: mapped(a),
    }
}

fn gw6(iface: u16, a: &str) -> Adjacency {
    Adjacency::Gateway {
        iface,
        via: u128::from(v6(a)),
    }
}

fn iface(name: &str, mac: Mac, attach: Attach, v4: &str, v6s: &str) -> Interface {
    let (a4, l4) = v4.split_once('/').unwrap();
    let (a6, l6) = v6s.split_once('/').unwrap();
    Interface {
        name: name.into(),
        mac,
        attach,
        mtu: 1500,
        v4: vec![(a4.parse().unwrap(), l4.parse().unwrap())],
        v6: vec![(a6.parse().unwrap(), l6.parse().unwrap())],
        link_local: link_local_of(&mac),
        proxy_arp: false,
    }
}

/// The L3 tables of the test topology.
fn tables(o: &Opts, pool: Option<&Pool>) -> L3Tables {
    let mut ifaces = vec![
        iface(
            "r0",
            R0,
            Attach::Port {
                port: 0,
                egress: Egress::Untagged,
            },
            "10.0.0.1/24",
            "fd00::1/64",
        ),
        iface(
            "r1",
            R1,
            Attach::Port {
                port: 1,
                egress: Egress::Untagged,
            },
            "10.1.0.1/24",
            "fd01::1/64",
        ),
        iface(
            "br",
            GW,
            Attach::Bridge { domain: 0 },
            "10.2.0.1/24",
            "fd02::1/64",
        ),
    ];
    ifaces[1].mtu = o.mtu1;
    let mut adj = Adjs::default();
    let local = adj.one(Adjacency::Local);
    let mut r4: Vec<(Ipv4Addr, u8, u32)> = Vec::new();
    let mut r6: Vec<(Ipv6Addr, u8, u32)> = Vec::new();
    for (i, ifc) in ifaces.iter().enumerate() {
        let att = adj.one(Adjacency::Attached { iface: i as u16 });
        for (a, len) in &ifc.v4 {
            let net = u32::from(*a) & (u32::MAX << (32 - len));
            r4.push((net.into(), *len, att));
            r4.push((*a, 32, local));
        }
        for (a, len) in &ifc.v6 {
            let net = u128::from(*a) & (u128::MAX << (128 - len));
            r6.push((net.into(), *len, att));
            r6.push((*a, 128, local));
        }
        r6.push((ifc.link_local, 128, local));
    }
    // Static routes.
    r4.push((
        [192, 168, 0, 0].into(),
        16,
        adj.one(gw4(1, [10, 1, 0, 254])),
    ));
    r6.push((v6("2001:db8:1::"), 48, adj.one(gw6(1, "fd01::fe"))));
    let e4 = adj.group(&[
        gw4(1, [10, 1, 0, 10]),
        gw4(1, [10, 1, 0, 11]),
        gw4(1, [10, 1, 0, 12]),
    ]);
    r4.push(([172, 16, 0, 0].into(), 12, e4));
    let e6 = adj.group(&[gw6(1, "fd01::10"), gw6(1, "fd01::11")]);
    r6.push((v6("2001:db8:e::"), 48, e6));
    let bh = adj.one(Adjacency::Blackhole);
    r4.push(([198, 51, 100, 0].into(), 24, bh));
    r6.push((v6("2001:db8:dead::"), 48, bh));
    let un = adj.one(Adjacency::Unreachable);
    r4.push(([203, 0, 113, 0].into(), 24, un));
    r6.push((v6("2001:db8:bad::"), 48, un));
    L3Tables {
        ifaces,
        fib4: Arc::new(Lpm4::build(r4, 16).unwrap()),
        fib6: Arc::new(Lpm6::build(r6, 256).unwrap()),
        adj: adj.list,
        ecmp: adj.ecmp,
        neigh: Arc::new(NeighTable::new(256)),
        drop_options: o.drop_options,
        icmp_rate: o.icmp_rate,
        reachable_s: 30,
        pool: pool.cloned(),
        announce_id: 1,
        host: None,
        nat: None,
    }
}

/// The whole snapshot: routed ports 0 and 1, the bridge on ports 2 and 3 with interface 2 as its gateway.
fn snapshot(o: &Opts, pool: Option<&Pool>) -> Snapshot {
    let bridge = BridgeDomain {
        name: "br".into(),
        members: vec![(2, Egress::Untagged), (3, Egress::Untagged)],
        egress: vec![None, None, Some(Egress::Untagged), Some(Egress::Untagged)],
        table: Arc::new(MacTable::new(100)),
        statics: Vec::new(),
        flood_unknown_unicast: true,
        gateway_mac: Some(GW),
        gateway_iface: Some(2),
        aging_s: 300,
        overlay: None,
    };
    let mut ing = L2Ingress::default();
    ing.add(None, Domain::Bridge(0));
    Snapshot {
        generation: 1,
        port_names: Arc::new((0..PORTS).map(|i| format!("p{i}")).collect()),
        roles: Arc::new(vec![
            PortRole::L3(0),
            PortRole::L3(1),
            PortRole::L2(Box::new(ing.clone())),
            PortRole::L2(Box::new(ing)),
        ]),
        bridges: Arc::new(vec![bridge]),
        l3: Arc::new(tables(o, pool)),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------

/// Frames that left each port.
type Out = Vec<Vec<Vec<u8>>>;

/// Fields drop in declaration order: the worker state (parked packets) and the batches go before the pool they
/// came from. (A `Pool` whose last handle is dropped while buffers are out frees its free queue, and a buffer
/// dropped afterwards spins forever in `release` pushing into it.)
struct Harness {
    state: WorkerState,
    out: TxBatches,
    snap: Snapshot,
    counters: Arc<WorkerCounters>,
    pool: Pool,
}

const POOL_BUFFERS: u32 = 1024;

impl Harness {
    fn new() -> Harness {
        Harness::with(Opts::default())
    }

    fn with(o: Opts) -> Harness {
        let pool = Pool::for_test(POOL_BUFFERS, 2048);
        let snap = snapshot(&o, o.with_pool.then_some(&pool));
        let (out, counters) = TxBatches::for_test(PORTS);
        let state = snap.new_state(0);
        Harness {
            pool,
            snap,
            out,
            counters,
            state,
        }
    }

    /// Sends `frames` in on `port` at `now_ns` as one burst; returns what left each port.
    fn send(&mut self, port: u16, now_ns: u64, frames: &[Vec<u8>]) -> Out {
        let mut b = Burst::new(256);
        for f in frames {
            let mut p = self.pool.alloc().expect("pool has room");
            assert!(p.set_frame(f));
            p.meta_mut().in_port = port;
            b.push(p).unwrap();
        }
        let ctx = BurstCtx {
            worker: 0,
            in_port: port,
            now_ns,
        };
        self.snap
            .process(&mut self.state, &ctx, &mut b, &mut self.out);
        assert!(b.is_empty(), "every packet got a verdict");
        self.take()
    }

    fn send1(&mut self, port: u16, now_ns: u64, frame: Vec<u8>) -> Out {
        self.send(port, now_ns, &[frame])
    }

    /// Runs the deferred work at `now_ns` when the processor says there is some; returns what left.
    fn deferred(&mut self, now_ns: u64) -> Out {
        if self.snap.has_deferred(&self.state, now_ns) {
            let ctx = BurstCtx {
                worker: self.state.worker,
                in_port: u16::MAX,
                now_ns,
            };
            self.snap.run_deferred(&mut self.state, &ctx, &mut self.out);
        }
        self.take()
    }

    fn take(&mut self) -> Out {
        (0..PORTS as u16)
            .map(|p| self.out.take(p).iter().map(|k| k.data().to_vec()).collect())
            .collect()
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.counters.drops.get(r)
    }

    fn all_drops(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.drops(*r)).sum()
    }

    fn event(&self, e: Event) -> u64 {
        self.counters.events.get(e)
    }

    fn parked(&self) -> usize {
        self.state.l3.pending.len()
    }

    /// Every buffer is back in the pool but those parked for a neighbour (outputs are taken and dropped).
    fn assert_no_leak(&self) {
        assert_eq!(
            self.pool.available() + self.parked(),
            POOL_BUFFERS as usize,
            "buffers leaked or freed twice"
        );
    }

    fn neigh(&self, iface: u16, ip: u128) -> Option<Neighbor> {
        self.snap.l3.neigh.lookup(&NeighKey { iface, ip })
    }

    /// Replaces the snapshot by a copy of generation `g` (same tables, same neighbour cache).
    fn set_generation(&mut self, g: u64) {
        let mut s = self.snap.clone();
        s.generation = g;
        self.snap = s;
    }

    /// A new snapshot whose interfaces changed (what compilation marks with a new `announce_id`).
    fn set_announce_id(&mut self, id: u64) {
        let mut s = self.snap.clone();
        let mut l3 = (*s.l3).clone();
        l3.announce_id = id;
        s.l3 = std::sync::Arc::new(l3);
        self.snap = s;
    }
}

/// Number of frames per port.
fn counts(o: &Out) -> Vec<usize> {
    o.iter().map(Vec::len).collect()
}

fn only(o: &Out, port: usize) -> &[u8] {
    let c = counts(o);
    let mut want = vec![0; PORTS];
    want[port] = 1;
    assert_eq!(c, want, "exactly one frame, out of port {port}");
    &o[port][0]
}

// ---------------------------------------------------------------------------------------------------------
// Frames in
// ---------------------------------------------------------------------------------------------------------

/// The internet checksum of `b` (for headers the tests break on purpose).
fn inet_csum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Recomputes the IPv4 header checksum of an Ethernet frame.
fn fix4(f: &mut [u8]) {
    let hl = ((f[14] & 0x0f) as usize * 4).max(20);
    f[24] = 0;
    f[25] = 0;
    let c = inet_csum(&f[14..14 + hl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

fn set_df(f: &mut [u8], df: bool) {
    if df {
        f[20] |= 0x40;
    } else {
        f[20] &= !0x40;
    }
    fix4(f);
}

fn udp4(
    src_mac: Mac,
    dst_mac: Mac,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    sport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .udp(sport, 9)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// A UDP packet from H0 into port 0 (to R0).
fn from_h0(dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp4(H0, R0, H0_4, dst, ttl, 5000, payload)
}

fn tcp4(src_mac: Mac, dst_mac: Mac, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .tcp(40000, 22, 1, 1000)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn echo4(src_mac: Mac, dst_mac: Mac, src: [u8; 4], dst: [u8; 4], seq: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(0x1234, seq)
        .write(&mut v, data)
        .unwrap();
    v
}

fn udp6(
    src_mac: Mac,
    dst_mac: Mac,
    src: &str,
    dst: &str,
    hops: u8,
    sport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(o6(src), o6(dst), hops)
        .udp(sport, 9)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// A UDP packet from H0 (fd00::2) into port 0.
fn from_h0_6(dst: &str, hops: u8, payload: &[u8]) -> Vec<u8> {
    udp6(H0, R0, "fd00::2", dst, hops, 5000, payload)
}

fn tcp6(src: &str, dst: &str) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(H0, R0)
        .ipv6(o6(src), o6(dst), 64)
        .tcp(40000, 22, 1, 1000)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn echo6(src_mac: Mac, dst_mac: Mac, src: &str, dst: &str, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(o6(src), o6(dst), 64)
        .icmpv6_echo_request(0x4321, 7)
        .write(&mut v, data)
        .unwrap();
    v
}

/// An ARP frame written by smoltcp, padded to 60 bytes.
fn arp(
    eth_dst: Mac,
    op: st::ArpOperation,
    sha: Mac,
    spa: [u8; 4],
    tha: Mac,
    tpa: [u8; 4],
) -> Vec<u8> {
    let mut v = vec![0u8; 60];
    v[0..6].copy_from_slice(&eth_dst);
    v[6..12].copy_from_slice(&sha);
    v[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let repr = st::ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: st::EthernetAddress(sha),
        source_protocol_addr: spa.into(),
        target_hardware_addr: st::EthernetAddress(tha),
        target_protocol_addr: tpa.into(),
    };
    repr.emit(&mut st::ArpPacket::new_unchecked(&mut v[14..42]));
    v
}

fn arp_request(sha: Mac, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    arp(BCAST, st::ArpOperation::Request, sha, spa, [0; 6], tpa)
}

fn arp_reply(sha: Mac, spa: [u8; 4], to_mac: Mac, tpa: [u8; 4]) -> Vec<u8> {
    arp(to_mac, st::ArpOperation::Reply, sha, spa, to_mac, tpa)
}

/// An ICMPv6 frame with the message `msg` (checksum filled by smoltcp), hop limit `hops`.
fn icmp6_frame(eth_dst: Mac, eth_src: Mac, src: &str, dst: &str, hops: u8, msg: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 54 + msg.len()];
    v[0..6].copy_from_slice(&eth_dst);
    v[6..12].copy_from_slice(&eth_src);
    v[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    st::Ipv6Repr {
        src_addr: v6(src),
        dst_addr: v6(dst),
        next_header: st::IpProtocol::Icmpv6,
        payload_len: msg.len(),
        hop_limit: hops,
    }
    .emit(&mut st::Ipv6Packet::new_unchecked(&mut v[14..54]));
    v[54..].copy_from_slice(msg);
    st::Icmpv6Packet::new_unchecked(&mut v[54..]).fill_checksum(&v6(src), &v6(dst));
    v
}

/// An NS or NA message: type, flags, target, then `opts` as given (raw, so tests can break them).
fn nd_msg(ty: u8, flags: u8, target: &str, opts: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0, flags, 0, 0, 0];
    m.extend_from_slice(&o6(target));
    m.extend_from_slice(opts);
    m
}

fn ll_opt(kind: u8, mac: Mac) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&mac);
    o
}

fn solicited_node(a: &str) -> (String, Mac) {
    let o = o6(a);
    let sn = Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ]);
    (sn.to_string(), [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// A Neighbor Solicitation from `src` (`mac`) for `target`, to its solicited-node group, hop limit `hops`.
fn ns(mac: Mac, src: &str, target: &str, hops: u8, opts: &[u8]) -> Vec<u8> {
    let (sn, sn_mac) = solicited_node(target);
    icmp6_frame(sn_mac, mac, src, &sn, hops, &nd_msg(135, 0, target, opts))
}

/// A solicited Neighbor Advertisement from `target` at `mac` to `to` (`to_mac`).
fn na(mac: Mac, target: &str, to_mac: Mac, to: &str) -> Vec<u8> {
    icmp6_frame(
        to_mac,
        mac,
        target,
        to,
        255,
        &nd_msg(136, 0x60, target, &ll_opt(2, mac)),
    )
}

// ---------------------------------------------------------------------------------------------------------
// Frames out
// ---------------------------------------------------------------------------------------------------------

fn eth_dst(f: &[u8]) -> Mac {
    f[0..6].try_into().unwrap()
}

fn eth_src(f: &[u8]) -> Mac {
    f[6..12].try_into().unwrap()
}

/// An IPv4 frame parsed by etherparse, its header checksum checked; (header, IP payload).
fn ip4(f: &[u8]) -> (etherparse::Ipv4Header, Vec<u8>) {
    let s = SlicedPacket::from_ethernet(f).expect("etherparse parses the frame");
    let Some(NetSlice::Ipv4(ip)) = s.net else {
        panic!("not IPv4: {f:02x?}")
    };
    let h = ip.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IPv4 header checksum"
    );
    assert_eq!(h.total_len as usize + 14, f.len(), "frame holds the packet");
    (h, ip.payload().payload.to_vec())
}

/// An ICMPv4 message out: (IP header, type, code, bytes 4..8, the data after the ICMP header); checksums checked.
fn icmp4(f: &[u8]) -> (etherparse::Ipv4Header, u8, u8, [u8; 4], Vec<u8>) {
    let (h, payload) = ip4(f);
    assert_eq!(h.protocol, etherparse::IpNumber::ICMP);
    let m = st::Icmpv4Packet::new_checked(&payload[..]).unwrap();
    assert!(m.verify_checksum(), "ICMP checksum");
    let s = SlicedPacket::from_ethernet(f).unwrap();
    assert!(matches!(s.transport, Some(TransportSlice::Icmpv4(_))));
    (
        h,
        payload[0],
        payload[1],
        payload[4..8].try_into().unwrap(),
        payload[8..].to_vec(),
    )
}

/// An IPv6 frame: (src, dst, hop limit, next header, payload).
fn ip6(f: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, u8, Vec<u8>) {
    let s = SlicedPacket::from_ethernet(f).expect("etherparse parses the frame");
    let Some(NetSlice::Ipv6(ip)) = s.net else {
        panic!("not IPv6: {f:02x?}")
    };
    let h = ip.header();
    assert_eq!(
        h.payload_length() as usize + 54,
        f.len(),
        "frame holds the packet"
    );
    (
        h.source_addr(),
        h.destination_addr(),
        h.hop_limit(),
        h.next_header().0,
        ip.payload().payload.to_vec(),
    )
}

/// An ICMPv6 message out: (src, dst, type, code, bytes 4..8, data); checksum checked by smoltcp.
fn icmp6(f: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, u8, [u8; 4], Vec<u8>) {
    let (src, dst, hops, next, payload) = ip6(f);
    assert_eq!(next, 58);
    assert_eq!(hops, 64, "router-originated hop limit");
    let m = st::Icmpv6Packet::new_checked(&payload[..]).unwrap();
    assert!(m.verify_checksum(&src, &dst), "ICMPv6 checksum");
    (
        src,
        dst,
        payload[0],
        payload[1],
        payload[4..8].try_into().unwrap(),
        payload[8..].to_vec(),
    )
}

/// An ARP frame out, read by smoltcp.
fn arp_of(f: &[u8]) -> (st::ArpOperation, Mac, Ipv4Addr, Mac, Ipv4Addr) {
    assert_eq!(&f[12..14], &[0x08, 0x06]);
    assert!(f.len() >= 60, "padded to the Ethernet minimum");
    let p = st::ArpPacket::new_checked(&f[14..]).unwrap();
    match st::ArpRepr::parse(&p).unwrap() {
        st::ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => (
            operation,
            source_hardware_addr.0,
            source_protocol_addr,
            target_hardware_addr.0,
            target_protocol_addr,
        ),
        other => panic!("{other:?}"),
    }
}

/// An ND frame out, read by smoltcp: (src, dst, hop limit, message).
fn nd_of(f: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, st::NdiscRepr<'_>) {
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    let ip = st::Ipv6Packet::new_checked(&f[14..]).unwrap();
    let icmp = st::Icmpv6Packet::new_checked(ip.payload()).unwrap();
    match st::Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp, &caps()) {
        Ok(st::Icmpv6Repr::Ndisc(nd)) => (ip.src_addr(), ip.dst_addr(), ip.hop_limit(), nd),
        other => panic!("not ND: {other:?}"),
    }
}

fn lladdr(a: Option<st::RawHardwareAddress>) -> Option<Vec<u8>> {
    a.map(|a| a.as_bytes().to_vec())
}

/// Checks a routed frame against what went in: MACs rewritten, TTL one less, header checksum valid, and the rest
/// of the IP packet unchanged.
fn assert_routed4(out: &[u8], orig: &[u8], dst_mac: Mac, src_mac: Mac) {
    assert_eq!(eth_dst(out), dst_mac, "destination MAC: the next hop's");
    assert_eq!(eth_src(out), src_mac, "source MAC: the output interface's");
    let (h, payload) = ip4(out);
    let (o, opayload) = ip4(orig);
    assert_eq!(h.time_to_live, o.time_to_live - 1, "TTL decremented");
    assert_eq!((h.source, h.destination), (o.source, o.destination));
    assert_eq!(payload, opayload, "payload intact");
}

fn assert_routed6(out: &[u8], orig: &[u8], dst_mac: Mac, src_mac: Mac) {
    assert_eq!(eth_dst(out), dst_mac, "destination MAC: the next hop's");
    assert_eq!(eth_src(out), src_mac, "source MAC: the output interface's");
    let (s, d, hops, next, payload) = ip6(out);
    let (os, od, ohops, onext, opayload) = ip6(orig);
    assert_eq!(hops, ohops - 1, "hop limit decremented");
    assert_eq!((s, d, next), (os, od, onext));
    assert_eq!(payload, opayload, "payload intact");
}

/// Resolves 10.1.0.5 → N1 and fd01::5 → N1 the way a neighbour would: asking for the router's address.
fn learn_n1(h: &mut Harness) {
    h.send1(1, T, arp_request(N1, N1_4, [10, 1, 0, 1]));
    h.send1(1, T, ns(N1, "fd01::5", "fd01::1", 255, &ll_opt(1, N1)));
}

// ---------------------------------------------------------------------------------------------------------
// 1. Forwarding and neighbour resolution
// ---------------------------------------------------------------------------------------------------------

#[test]
fn ipv4_first_packet_asks_arp_waits_and_is_released_by_the_reply() {
    let mut h = Harness::new();
    let p1 = from_h0(N1_4, 64, b"first packet");
    let out = h.send1(0, T, p1.clone());
    // The packet waits; an ARP request for 10.1.0.5 goes out of port 1.
    let req = only(&out, 1);
    assert_eq!(eth_dst(req), BCAST);
    assert_eq!(eth_src(req), R1);
    let (op, sha, spa, tha, tpa) = arp_of(req);
    assert_eq!(op, st::ArpOperation::Request);
    assert_eq!(
        (sha, spa, tpa),
        (R1, Ipv4Addr::new(10, 1, 0, 1), N1_4.into())
    );
    assert_eq!(tha, [0; 6]);
    assert_eq!(h.event(Event::NeighQueued), 1);
    assert_eq!(h.event(Event::ArpRequestsSent), 1);
    assert_eq!(h.parked(), 1);
    // A second packet in the same second waits too, without a second request.
    let p2 = from_h0(N1_4, 33, b"second packet");
    let out = h.send1(0, T + SEC / 2, p2.clone());
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.event(Event::NeighQueued), 2);
    assert_eq!(h.event(Event::ArpRequestsSent), 1);
    // The reply releases both, in order, on port 1.
    let out = h.send1(1, T + SEC, arp_reply(N1, N1_4, R1, [10, 1, 0, 1]));
    assert_eq!(counts(&out), vec![0, 2, 0, 0]);
    assert_routed4(&out[1][0], &p1, N1, R1);
    assert_routed4(&out[1][1], &p2, N1, R1);
    assert_eq!(ip4(&out[1][1]).0.time_to_live, 32);
    assert_eq!(h.parked(), 0);
    assert_eq!(h.event(Event::NeighLearned), 1);
    assert_eq!(h.event(Event::Routed), 2);
    assert_eq!(
        h.neigh(1, mapped(N1_4)),
        Some(Neighbor::Reachable {
            mac: N1,
            confirmed_s: 101
        })
    );
    // Later packets go straight out.
    let p3 = from_h0(N1_4, 2, b"third");
    let out = h.send1(0, T + 2 * SEC, p3.clone());
    assert_routed4(only(&out, 1), &p3, N1, R1);
    assert_eq!(h.event(Event::NeighQueued), 2);
    assert_eq!(h.event(Event::Routed), 3);
    assert_eq!(h.all_drops(), 0);
    h.assert_no_leak();
}

#[test]
fn ipv6_first_packet_sends_a_solicitation_and_the_advertisement_releases_it() {
    let mut h = Harness::new();
    let p1 = from_h0_6("fd01::5", 64, b"first v6 packet");
    let out = h.send1(0, T, p1.clone());
    let sol = only(&out, 1);
    assert_eq!(eth_dst(sol), [0x33, 0x33, 0xff, 0, 0, 5]);
    assert_eq!(eth_src(sol), R1);
    let (src, dst, hops, nd) = nd_of(sol);
    assert_eq!(
        src,
        v6("fd01::1"),
        "asked from the address on the target's prefix"
    );
    assert_eq!(dst, v6("ff02::1:ff00:5"));
    assert_eq!(hops, 255);
    match nd {
        st::NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr: ll,
        } => {
            assert_eq!(target_addr, v6("fd01::5"));
            assert_eq!(lladdr(ll), Some(R1.to_vec()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.event(Event::NdSolicitsSent), 1);
    assert_eq!(h.event(Event::NeighQueued), 1);
    let out = h.send1(1, T + SEC, na(N1, "fd01::5", R1, "fd01::1"));
    assert_routed6(only(&out, 1), &p1, N1, R1);
    assert_eq!(h.event(Event::NeighLearned), 1);
    assert_eq!(h.parked(), 0);
    let p2 = from_h0_6("fd01::5", 9, b"second");
    let out = h.send1(0, T + 2 * SEC, p2.clone());
    assert_routed6(only(&out, 1), &p2, N1, R1);
    assert_eq!(h.event(Event::Routed), 2);
    assert_eq!(h.all_drops(), 0);
    h.assert_no_leak();
}

#[test]
fn parked_packets_past_their_deadline_are_dropped_as_no_neighbor() {
    let mut h = Harness::new();
    h.send(
        0,
        T,
        &[
            from_h0([10, 1, 0, 6], 64, b"x"),
            from_h0_6("fd01::6", 64, b"y"),
        ],
    );
    assert_eq!(h.parked(), 2);
    // Not yet: the neighbours are only asked again (one ARP request, one solicitation), nothing released.
    let out = h.deferred(T + 2 * SEC);
    assert_eq!(counts(&out)[0], 0);
    assert_eq!(out[1].len(), 2, "one retry per neighbour");
    assert!(out[1]
        .iter()
        .all(|f| f[12..14] == [0x08, 0x06] || (f[12..14] == [0x86, 0xdd] && f[54] == 135)));
    assert_eq!(h.parked(), 2);
    assert_eq!(h.drops(DropReason::NoNeighbor), 0);
    // Past the deadline (3 s).
    let out = h.deferred(T + 3 * SEC + 1);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.parked(), 0);
    assert_eq!(h.drops(DropReason::NoNeighbor), 2);
    assert!(!h.snap.has_deferred(&h.state, T + 10 * SEC));
    h.assert_no_leak();
    // The neighbour answering afterwards releases nothing.
    let out = h.send1(
        1,
        T + 4 * SEC,
        arp_reply(N1, [10, 1, 0, 6], R1, [10, 1, 0, 1]),
    );
    assert!(out.iter().all(Vec::is_empty));
}

#[test]
fn a_neighbour_holds_at_most_its_share_of_waiting_packets() {
    let mut h = Harness::new();
    let frames: Vec<Vec<u8>> = (0..40)
        .map(|i| from_h0([10, 1, 0, 7], 64, &[i as u8; 10]))
        .collect();
    let out = h.send(0, T, &frames);
    assert_eq!(counts(&out), vec![0, 1, 0, 0], "one ARP request");
    assert_eq!(h.parked(), pipelines::l3::pending::PER_NEIGHBOR);
    assert_eq!(h.event(Event::NeighQueued), 32);
    assert_eq!(h.drops(DropReason::NoNeighbor), 8);
    let out = h.send1(1, T, arp_reply(N1, [10, 1, 0, 7], R1, [10, 1, 0, 1]));
    assert_eq!(out[1].len(), 32);
    // In arrival order.
    for (i, f) in out[1].iter().enumerate() {
        assert_eq!(&ip4(f).1[8..], &[i as u8; 10]);
    }
    h.assert_no_leak();
}

#[test]
fn packets_parked_under_an_older_generation_are_not_sent() {
    let mut h = Harness::new();
    h.send1(0, T, from_h0(N1_4, 64, b"old config"));
    assert_eq!(h.parked(), 1);
    h.set_generation(2);
    let out = h.send1(1, T, arp_reply(N1, N1_4, R1, [10, 1, 0, 1]));
    assert!(out[1].is_empty(), "the route may have changed: not sent");
    assert_eq!(h.drops(DropReason::NoNeighbor), 1);
    h.assert_no_leak();
}

#[test]
fn static_routes_resolve_their_gateway_not_the_destination() {
    let mut h = Harness::new();
    let p = from_h0([192, 168, 7, 7], 64, b"via gw");
    let out = h.send1(0, T, p.clone());
    let (_, _, spa, _, tpa) = arp_of(only(&out, 1));
    assert_eq!(tpa, Ipv4Addr::new(10, 1, 0, 254));
    assert_eq!(spa, Ipv4Addr::new(10, 1, 0, 1));
    let out = h.send1(1, T, arp_reply(G1, [10, 1, 0, 254], R1, [10, 1, 0, 1]));
    assert_routed4(only(&out, 1), &p, G1, R1);

    let p = from_h0_6("2001:db8:1::9", 64, b"via gw6");
    let out = h.send1(0, T, p.clone());
    let (_, dst, _, nd) = nd_of(only(&out, 1));
    assert_eq!(dst, v6("ff02::1:ff00:fe"));
    assert!(
        matches!(nd, st::NdiscRepr::NeighborSolicit { target_addr, .. } if target_addr == v6("fd01::fe"))
    );
    let out = h.send1(1, T, na(G1, "fd01::fe", R1, "fd01::1"));
    assert_routed6(only(&out, 1), &p, G1, R1);
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// 2. TTL and hop limit
// ---------------------------------------------------------------------------------------------------------

#[test]
fn ttl_1_and_0_get_time_exceeded_quoting_the_original() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    h.take();
    for ttl in [1u8, 0] {
        let p = from_h0(N1_4, ttl, b"ttl test payload");
        let out = h.send1(0, T, p.clone());
        let e = only(&out, 0);
        assert_eq!((eth_dst(e), eth_src(e)), (H0, R0));
        let (ip, ty, code, rest, quote) = icmp4(e);
        assert_eq!(
            (ty, code, rest),
            (11, 0, [0; 4]),
            "time exceeded in transit"
        );
        assert_eq!(
            ip.source,
            [10, 0, 0, 1],
            "from the input interface's address"
        );
        assert_eq!(ip.destination, H0_4);
        assert_eq!(ip.time_to_live, 64);
        // The whole (small) original is quoted, as received.
        assert_eq!(quote, p[14..].to_vec());
        let q = etherparse::Ipv4HeaderSlice::from_slice(&quote).unwrap();
        assert_eq!(q.ttl(), ttl);
        assert_eq!(q.destination(), N1_4);
    }
    assert_eq!(h.drops(DropReason::TtlExceeded), 2);
    assert_eq!(h.event(Event::IcmpErrorsSent), 2);
    assert_eq!(h.event(Event::Routed), 0);
    // TTL 2 still goes through (with TTL 1).
    let p = from_h0(N1_4, 2, b"ok");
    let out = h.send1(0, T, p.clone());
    assert_routed4(only(&out, 1), &p, N1, R1);
    h.assert_no_leak();
}

#[test]
fn ipv6_hop_limit_1_gets_time_exceeded() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    h.take();
    let p = from_h0_6("fd01::5", 1, b"hop limit test");
    let out = h.send1(0, T, p.clone());
    let e = only(&out, 0);
    assert_eq!((eth_dst(e), eth_src(e)), (H0, R0));
    let (src, dst, ty, code, rest, quote) = icmp6(e);
    assert_eq!((ty, code, rest), (3, 0, [0; 4]));
    assert_eq!((src, dst), (v6("fd00::1"), v6("fd00::2")));
    assert_eq!(quote, p[14..].to_vec());
    assert_eq!(h.drops(DropReason::TtlExceeded), 1);
    // Hop limit 0 as well.
    let out = h.send1(0, T, from_h0_6("fd01::5", 0, b"zero"));
    assert_eq!(icmp6(only(&out, 0)).2, 3);
    assert_eq!(h.drops(DropReason::TtlExceeded), 2);
    h.assert_no_leak();
}

#[test]
fn icmp_errors_are_rate_limited_but_drops_still_counted() {
    let mut h = Harness::with(Opts {
        icmp_rate: 5,
        ..Opts::default()
    });
    let burst: Vec<Vec<u8>> = (0..12).map(|_| from_h0(N1_4, 1, b"x")).collect();
    let out = h.send(0, T, &burst);
    assert_eq!(out[0].len(), 5, "the bucket holds icmp_rate errors");
    assert_eq!(h.event(Event::IcmpErrorsSent), 5);
    assert_eq!(h.event(Event::IcmpRateLimited), 7);
    assert_eq!(h.drops(DropReason::TtlExceeded), 12);
    // The same instant again: nothing left.
    let out = h.send(0, T, &burst[..3]);
    assert!(out[0].is_empty());
    assert_eq!(h.event(Event::IcmpRateLimited), 10);
    // A second later the bucket is full again (and no fuller).
    let out = h.send(0, T + SEC, &burst);
    assert_eq!(out[0].len(), 5);
    assert_eq!(h.drops(DropReason::TtlExceeded), 27);
    // IPv6 shares the budget.
    let v6burst: Vec<Vec<u8>> = (0..8).map(|_| from_h0_6("fd01::5", 1, b"y")).collect();
    let out = h.send(0, T + 2 * SEC, &v6burst);
    assert_eq!(out[0].len(), 5);
    assert_eq!(h.event(Event::IcmpRateLimited), 10 + 7 + 3);
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// 3. MTU
// ---------------------------------------------------------------------------------------------------------

/// A UDP datagram whose IP packet is `total` bytes long.
fn sized4(total: usize, df: bool) -> Vec<u8> {
    let payload: Vec<u8> = (0..total - 28).map(|i| i as u8).collect();
    let mut f = from_h0(N1_4, 64, &payload);
    set_df(&mut f, df);
    assert_eq!(f.len(), 14 + total);
    f
}

#[test]
fn ipv4_df_packet_over_the_mtu_gets_frag_needed() {
    let mut h = Harness::with(Opts {
        mtu1: 1280,
        ..Opts::default()
    });
    learn_n1(&mut h);
    h.take();
    let big = sized4(1400, true);
    let out = h.send1(0, T, big.clone());
    let e = only(&out, 0);
    assert_eq!((eth_dst(e), eth_src(e)), (H0, R0));
    let (ip, ty, code, rest, quote) = icmp4(e);
    assert_eq!((ty, code), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1280, "next-hop MTU");
    assert_eq!(ip.source, [10, 0, 0, 1]);
    assert_eq!(ip.destination, H0_4);
    assert!(ip.total_len as usize <= 576, "error fits in 576 bytes");
    assert!(quote.len() >= 28);
    assert_eq!(
        &quote[..],
        &big[14..14 + quote.len()],
        "quotes the original"
    );
    assert_eq!(h.drops(DropReason::MtuExceeded), 1);
    // Exactly the MTU passes.
    let fits = sized4(1280, true);
    let out = h.send1(0, T, fits.clone());
    assert_routed4(only(&out, 1), &fits, N1, R1);
    h.assert_no_leak();
}

#[test]
fn ipv4_packet_over_the_mtu_without_df_is_dropped() {
    let mut h = Harness::with(Opts {
        mtu1: 1280,
        ..Opts::default()
    });
    learn_n1(&mut h);
    h.take();
    let out = h.send1(0, T, sized4(1400, false));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::MtuExceeded), 1);
    assert_eq!(h.event(Event::IcmpErrorsSent), 0);
    h.assert_no_leak();
}

#[test]
fn ipv6_packet_over_the_mtu_gets_packet_too_big() {
    let mut h = Harness::with(Opts {
        mtu1: 1280,
        ..Opts::default()
    });
    learn_n1(&mut h);
    h.take();
    let payload: Vec<u8> = (0..1400 - 48).map(|i| i as u8).collect();
    let big = from_h0_6("fd01::5", 64, &payload);
    assert_eq!(big.len(), 14 + 1400);
    let out = h.send1(0, T, big.clone());
    let e = only(&out, 0);
    let (src, dst, ty, code, rest, quote) = icmp6(e);
    assert_eq!((ty, code), (2, 0), "packet too big");
    assert_eq!(u32::from_be_bytes(rest), 1280);
    assert_eq!((src, dst), (v6("fd00::1"), v6("fd00::2")));
    assert!(e.len() - 14 <= 1280, "error fits in the IPv6 minimum MTU");
    assert_eq!(&quote[..], &big[14..14 + quote.len()]);
    assert!(quote.len() >= 1000, "quotes as much as fits");
    assert_eq!(h.drops(DropReason::MtuExceeded), 1);
    let fits = from_h0_6("fd01::5", 64, &payload[..1280 - 48]);
    let out = h.send1(0, T, fits.clone());
    assert_routed6(only(&out, 1), &fits, N1, R1);
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// 4. Local delivery
// ---------------------------------------------------------------------------------------------------------

#[test]
fn echo_requests_to_every_router_address_are_answered() {
    let mut h = Harness::new();
    for (seq, dst) in [[10, 0, 0, 1], [10, 1, 0, 1], [10, 2, 0, 1]]
        .iter()
        .enumerate()
    {
        let data = b"ping data 0123456789";
        let out = h.send1(0, T, echo4(H0, R0, H0_4, *dst, seq as u16, data));
        let r = only(&out, 0);
        assert_eq!((eth_dst(r), eth_src(r)), (H0, R0));
        let (ip, ty, code, rest, d) = icmp4(r);
        assert_eq!((ty, code), (0, 0), "echo reply");
        assert_eq!((ip.source, ip.destination), (*dst, H0_4));
        assert_eq!(rest, [0x12, 0x34, 0, seq as u8]);
        assert_eq!(&d[..], &data[..]);
    }
    let ll0 = link_local_of(&R0).to_string();
    for dst in ["fd00::1", "fd01::1", "fd02::1", ll0.as_str()] {
        let src = if dst.starts_with("fe80") {
            "fe80::2"
        } else {
            "fd00::2"
        };
        let out = h.send1(0, T, echo6(H0, R0, src, dst, b"ping6"));
        let r = only(&out, 0);
        assert_eq!((eth_dst(r), eth_src(r)), (H0, R0));
        let (s, d, ty, code, rest, data) = icmp6(r);
        assert_eq!((ty, code), (129, 0), "echo reply to {dst}");
        assert_eq!((s, d), (v6(dst), v6(src)));
        assert_eq!(rest, [0x43, 0x21, 0, 7]);
        assert_eq!(data, b"ping6");
    }
    assert_eq!(h.event(Event::EchoReplies), 7);
    assert_eq!(h.all_drops(), 0);
    h.assert_no_leak();
}

#[test]
fn udp_to_the_router_gets_port_unreachable_tcp_and_fragments_are_dropped() {
    let mut h = Harness::new();
    let u = from_h0([10, 0, 0, 1], 64, b"dns?");
    let out = h.send1(0, T, u.clone());
    let (ip, ty, code, _, quote) = icmp4(only(&out, 0));
    assert_eq!((ty, code), (3, 3), "port unreachable");
    assert_eq!(ip.source, [10, 0, 0, 1]);
    assert_eq!(quote, u[14..].to_vec());
    assert_eq!(h.drops(DropReason::LocalPortUnreachable), 1);

    let out = h.send1(0, T, tcp4(H0, R0, H0_4, [10, 0, 0, 1]));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::NoLocalStack), 1);

    // A first fragment (MF) and a later one (offset) to the router.
    let mut f1 = from_h0([10, 0, 0, 1], 64, &[1; 16]);
    f1[20] = 0x20;
    fix4(&mut f1);
    let mut f2 = echo4(H0, R0, H0_4, [10, 1, 0, 1], 1, &[2; 16]);
    f2[20] = 0x00;
    f2[21] = 0x10;
    fix4(&mut f2);
    let out = h.send(0, T, &[f1, f2]);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::Fragment), 2);

    // IPv6: UDP gets port unreachable, TCP is dropped.
    let u6 = from_h0_6("fd00::1", 64, b"dns6?");
    let out = h.send1(0, T, u6.clone());
    let (src, _, ty, code, _, quote) = icmp6(only(&out, 0));
    assert_eq!((ty, code), (1, 4));
    assert_eq!(src, v6("fd00::1"));
    assert_eq!(quote, u6[14..].to_vec());
    assert_eq!(h.drops(DropReason::LocalPortUnreachable), 2);
    let out = h.send1(0, T, tcp6("fd00::2", "fd01::1"));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::NoLocalStack), 2);
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// 5. ARP and ND
// ---------------------------------------------------------------------------------------------------------

#[test]
fn arp_request_for_the_interface_is_answered_and_the_sender_learned() {
    let mut h = Harness::new();
    let out = h.send1(0, T, arp_request(H0, H0_4, [10, 0, 0, 1]));
    let r = only(&out, 0);
    assert_eq!((eth_dst(r), eth_src(r)), (H0, R0));
    let (op, sha, spa, tha, tpa) = arp_of(r);
    assert_eq!(op, st::ArpOperation::Reply);
    assert_eq!((sha, spa), (R0, Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!((tha, tpa), (H0, H0_4.into()));
    assert_eq!(h.event(Event::ArpRepliesSent), 1);
    assert_eq!(h.event(Event::NeighLearned), 1);
    assert!(matches!(h.neigh(0, mapped(H0_4)), Some(Neighbor::Reachable { mac, .. }) if mac == H0));
    h.assert_no_leak();
}

#[test]
fn arp_for_another_address_is_not_for_us_and_teaches_nothing() {
    let mut h = Harness::new();
    let x: Mac = [0x02, 0xee, 0, 0, 0, 9];
    let out = h.send1(0, T, arp_request(x, [10, 0, 0, 9], [10, 0, 0, 77]));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::NotForUs), 1);
    assert_eq!(
        h.neigh(0, mapped([10, 0, 0, 9])),
        None,
        "sender not learned"
    );
    // A gratuitous ARP from an unknown sender creates nothing either.
    h.send1(0, T, arp_request(x, [10, 0, 0, 9], [10, 0, 0, 9]));
    assert_eq!(h.neigh(0, mapped([10, 0, 0, 9])), None);
    assert_eq!(h.event(Event::NeighLearned), 0);
    h.assert_no_leak();
}

#[test]
fn gratuitous_arp_updates_a_known_neighbour() {
    let mut h = Harness::new();
    h.send1(0, T, arp_request(H0, H0_4, [10, 0, 0, 1]));
    let moved: Mac = [0x02, 0xbb, 0, 0, 0, 0x22];
    let out = h.send1(0, T + SEC, arp_request(moved, H0_4, H0_4));
    assert!(out.iter().all(Vec::is_empty), "nothing to answer");
    assert_eq!(
        h.neigh(0, mapped(H0_4)),
        Some(Neighbor::Reachable {
            mac: moved,
            confirmed_s: 101
        })
    );
    assert_eq!(h.event(Event::NeighLearned), 2);
    // Routed traffic follows the new MAC.
    let p = udp4(N1, R1, N1_4, H0_4, 64, 1, b"back");
    let out = h.send1(1, T + SEC, p.clone());
    assert_routed4(only(&out, 0), &p, moved, R0);
    h.assert_no_leak();
}

#[test]
fn a_mac_learned_in_the_middle_of_a_burst_is_used_by_the_rest_of_it() {
    // The IPv4 fast path reads the worker's next-hop cache, checked against the shared table once per burst
    // and again after every packet the general path takes (an ARP packet among them).
    let mut h = Harness::new();
    learn_n1(&mut h);
    let moved: Mac = [0x02, 0xcc, 0, 0, 0, 0x55];
    // A host on interface 1 reaching N1 through the router, before and after N1's gratuitous ARP.
    let p = udp4(
        [0x02, 0xcc, 0, 0, 0, 6],
        R1,
        [10, 1, 0, 6],
        N1_4,
        64,
        1,
        b"x",
    );
    let out = h.send(
        1,
        T + SEC,
        &[p.clone(), arp_request(moved, N1_4, N1_4), p.clone()],
    );
    assert_eq!(counts(&out), vec![0, 2, 0, 0]);
    assert_routed4(&out[1][0], &p, N1, R1);
    assert_routed4(&out[1][1], &p, moved, R1);
    assert_eq!(h.event(Event::Routed), 2);
    h.assert_no_leak();
}

#[test]
fn neighbor_solicitation_for_the_interface_gets_a_solicited_override_advertisement() {
    let mut h = Harness::new();
    let out = h.send1(0, T, ns(H0, "fd00::2", "fd00::1", 255, &ll_opt(1, H0)));
    let a = only(&out, 0);
    assert_eq!((eth_dst(a), eth_src(a)), (H0, R0));
    let (src, dst, hops, nd) = nd_of(a);
    assert_eq!((src, dst, hops), (v6("fd00::1"), v6("fd00::2"), 255));
    match nd {
        st::NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr: ll,
        } => {
            assert!(flags.contains(st::NdiscNeighborFlags::SOLICITED));
            assert!(flags.contains(st::NdiscNeighborFlags::OVERRIDE));
            assert!(flags.contains(st::NdiscNeighborFlags::ROUTER));
            assert_eq!(target_addr, v6("fd00::1"));
            assert_eq!(lladdr(ll), Some(R0.to_vec()), "target link-layer address");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.event(Event::NdAdvertsSent), 1);
    assert!(matches!(
        h.neigh(0, u128::from(v6("fd00::2"))),
        Some(Neighbor::Reachable { mac, .. }) if mac == H0
    ));
    // The link-local address is answered too, from itself.
    let ll0 = link_local_of(&R0).to_string();
    let out = h.send1(0, T, ns(H0, "fe80::2", &ll0, 255, &ll_opt(1, H0)));
    let (src, dst, _, nd) = nd_of(only(&out, 0));
    assert_eq!((src, dst), (v6(&ll0), v6("fe80::2")));
    assert!(
        matches!(nd, st::NdiscRepr::NeighborAdvert { target_addr, .. } if target_addr == v6(&ll0))
    );
    // Duplicate address detection for our address is defended to all nodes, without the solicited flag.
    let out = h.send1(0, T, ns(H0, "::", "fd00::1", 255, &[]));
    let a = only(&out, 0);
    assert_eq!(eth_dst(a), [0x33, 0x33, 0, 0, 0, 1]);
    let (_, dst, _, nd) = nd_of(a);
    assert_eq!(dst, v6("ff02::1"));
    match nd {
        st::NdiscRepr::NeighborAdvert { flags, .. } => {
            assert!(!flags.contains(st::NdiscNeighborFlags::SOLICITED));
            assert!(flags.contains(st::NdiscNeighborFlags::OVERRIDE));
        }
        other => panic!("{other:?}"),
    }
    // A solicitation for someone else's address is not ours.
    let out = h.send1(0, T, ns(H0, "fd00::2", "fd00::77", 255, &ll_opt(1, H0)));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::NotForUs), 1);
    h.assert_no_leak();
}

#[test]
fn bad_neighbor_solicitations_are_dropped_as_bad_nd() {
    let mut h = Harness::new();
    let good_opt = ll_opt(1, H0);
    let mut zero_len = good_opt.clone();
    zero_len[1] = 0;
    let mut past_end = good_opt.clone();
    past_end[1] = 2;
    let mut code1 = ns(H0, "fd00::2", "fd00::1", 255, &good_opt);
    code1[55] = 1;
    let mut bad_sum = ns(H0, "fd00::2", "fd00::1", 255, &good_opt);
    bad_sum[56] ^= 0xff;
    let frames = vec![
        ns(H0, "fd00::2", "fd00::1", 254, &good_opt),
        ns(H0, "fd00::2", "fd00::1", 255, &zero_len),
        ns(H0, "fd00::2", "fd00::1", 255, &past_end),
        code1,
        bad_sum,
        ns(H0, "fd00::2", "ff02::1", 255, &good_opt),
        // DAD must not carry a source link-layer address.
        ns(H0, "::", "fd00::1", 255, &good_opt),
        // An advertisement with hop limit 64.
        icmp6_frame(
            R0,
            N1,
            "fd00::5",
            "fd00::1",
            64,
            &nd_msg(136, 0x60, "fd00::5", &ll_opt(2, N1)),
        ),
    ];
    let n = frames.len() as u64;
    let out = h.send(0, T, &frames);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::BadNd), n);
    assert_eq!(h.all_drops(), n);
    assert_eq!(h.event(Event::NeighLearned), 0);
    assert!(h.snap.l3.neigh.is_empty(), "nothing learned from bad ND");
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// 6. Routes: none, unreachable, blackhole, ECMP
// ---------------------------------------------------------------------------------------------------------

#[test]
fn no_route_unreachable_and_blackhole() {
    let mut h = Harness::new();
    let p = from_h0([8, 8, 8, 8], 64, b"nowhere");
    let out = h.send1(0, T, p.clone());
    let (ip, ty, code, _, quote) = icmp4(only(&out, 0));
    assert_eq!((ty, code), (3, 0), "net unreachable");
    assert_eq!((ip.source, ip.destination), ([10, 0, 0, 1], H0_4));
    assert_eq!(quote, p[14..].to_vec());
    assert_eq!(h.drops(DropReason::NoRoute), 1);

    let out = h.send1(0, T, from_h0([203, 0, 113, 9], 64, b"unreachable"));
    let (_, ty, code, _, _) = icmp4(only(&out, 0));
    assert_eq!((ty, code), (3, 1), "host unreachable");
    assert_eq!(h.drops(DropReason::NoRoute), 2);

    let out = h.send1(0, T, from_h0([198, 51, 100, 9], 64, b"blackhole"));
    assert!(out.iter().all(Vec::is_empty), "silently");
    assert_eq!(h.drops(DropReason::NoRoute), 3);

    let out = h.send1(0, T, from_h0_6("2001:db8:ffff::1", 64, b"nowhere6"));
    let (src, _, ty, code, _, _) = icmp6(only(&out, 0));
    assert_eq!((ty, code), (1, 0), "no route to destination");
    assert_eq!(src, v6("fd00::1"));
    let out = h.send1(0, T, from_h0_6("2001:db8:bad::1", 64, b"unreachable6"));
    let (_, _, ty, code, _, _) = icmp6(only(&out, 0));
    assert_eq!((ty, code), (1, 3), "address unreachable");
    let out = h.send1(0, T, from_h0_6("2001:db8:dead::1", 64, b"blackhole6"));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::NoRoute), 6);
    assert_eq!(h.event(Event::IcmpErrorsSent), 4);
    h.assert_no_leak();
}

#[test]
fn ecmp_spreads_flows_over_every_member_and_keeps_each_flow_on_one() {
    let mut h = Harness::new();
    let members4: Vec<(Mac, [u8; 4])> = (10..13u8)
        .map(|i| ([0x02, 0xcc, 0, 0, 1, i], [10, 1, 0, i]))
        .collect();
    let members6: Vec<(Mac, String)> = (0x10..0x12u8)
        .map(|i| ([0x02, 0xcc, 0, 0, 2, i], format!("fd01::{i:x}")))
        .collect();
    for (m, a) in &members4 {
        h.send1(1, T, arp_request(*m, *a, [10, 1, 0, 1]));
    }
    for (m, a) in &members6 {
        h.send1(1, T, ns(*m, a, "fd01::1", 255, &ll_opt(1, *m)));
    }
    let flows4: Vec<Vec<u8>> = (0..96u16)
        .map(|i| {
            udp4(
                H0,
                R0,
                H0_4,
                [172, 16, (i >> 8) as u8, i as u8],
                64,
                1000 + i,
                b"f",
            )
        })
        .collect();
    let flows6: Vec<Vec<u8>> = (0..64u16)
        .map(|i| from_h0_6(&format!("2001:db8:e::{i:x}"), 64, &i.to_be_bytes()))
        .collect();
    let first4 = h.send(0, T, &flows4);
    let first6 = h.send(0, T, &flows6);
    assert_eq!(first4[1].len(), 96);
    assert_eq!(first6[1].len(), 64);
    for (m, _) in &members4 {
        let n = first4[1].iter().filter(|f| eth_dst(f) == *m).count();
        assert!(n > 0, "member {m:02x?} got no flow");
    }
    for (m, _) in &members6 {
        let n = first6[1].iter().filter(|f| eth_dst(f) == *m).count();
        assert!(n > 0, "member {m:02x?} got no flow");
    }
    assert!(first4[1]
        .iter()
        .chain(&first6[1])
        .all(|f| members4.iter().any(|(m, _)| eth_dst(f) == *m)
            || members6.iter().any(|(m, _)| eth_dst(f) == *m)));
    // Same flows again, in another order: each on the same member.
    let mut rev4 = flows4.clone();
    rev4.reverse();
    let again4 = h.send(0, T + SEC, &rev4);
    for (i, f) in again4[1].iter().enumerate() {
        assert_eq!(eth_dst(f), eth_dst(&first4[1][95 - i]), "flow {i} moved");
        assert_routed4(f, &rev4[i], eth_dst(f), R1);
    }
    let again6 = h.send(0, T + SEC, &flows6);
    for (a, b) in again6[1].iter().zip(&first6[1]) {
        assert_eq!(eth_dst(a), eth_dst(b));
    }
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// 7. The bridge's gateway
// ---------------------------------------------------------------------------------------------------------

#[test]
fn arp_broadcast_for_the_gateway_is_flooded_and_answered() {
    let mut h = Harness::new();
    let req = arp_request(HB, HB_4, [10, 2, 0, 1]);
    let out = h.send1(2, T, req.clone());
    assert_eq!(counts(&out), vec![0, 0, 1, 1]);
    assert_eq!(out[3][0], req, "flooded unchanged to the other member");
    let (op, sha, spa, tha, tpa) = arp_of(&out[2][0]);
    assert_eq!(op, st::ArpOperation::Reply);
    assert_eq!(
        (sha, spa, tha, tpa),
        (GW, [10, 2, 0, 1].into(), HB, HB_4.into())
    );
    assert_eq!((eth_dst(&out[2][0]), eth_src(&out[2][0])), (HB, GW));
    // ND too: the solicitation to the solicited-node group is flooded and answered.
    let sol = ns(HB, "fd02::5", "fd02::1", 255, &ll_opt(1, HB));
    let out = h.send1(2, T, sol.clone());
    assert_eq!(counts(&out), vec![0, 0, 1, 1]);
    assert_eq!(out[3][0], sol);
    let (src, dst, _, nd) = nd_of(&out[2][0]);
    assert_eq!((src, dst), (v6("fd02::1"), v6("fd02::5")));
    assert!(
        matches!(nd, st::NdiscRepr::NeighborAdvert { lladdr: Some(l), .. } if l.as_bytes() == GW)
    );
    h.assert_no_leak();
}

#[test]
fn frames_to_the_gateway_mac_are_routed_both_ways() {
    let mut h = Harness::new();
    // H0 and HB make themselves known.
    h.send1(0, T, arp_request(H0, H0_4, [10, 0, 0, 1]));
    h.send1(2, T, arp_request(HB, HB_4, [10, 2, 0, 1]));
    h.send1(0, T, ns(H0, "fd00::2", "fd00::1", 255, &ll_opt(1, H0)));
    h.send1(2, T, ns(HB, "fd02::5", "fd02::1", 255, &ll_opt(1, HB)));
    // Bridge to routed port.
    let p = udp4(HB, GW, HB_4, H0_4, 64, 7, b"from the bridge");
    let out = h.send1(2, T, p.clone());
    assert_routed4(only(&out, 0), &p, H0, R0);
    let p6 = udp6(HB, GW, "fd02::5", "fd00::2", 64, 7, b"from the bridge 6");
    let out = h.send1(2, T, p6.clone());
    assert_routed6(only(&out, 0), &p6, H0, R0);
    // Routed port to the bridge: switched to the port that has HB only.
    let q = from_h0(HB_4, 64, b"to the bridge");
    let out = h.send1(0, T, q.clone());
    assert_routed4(only(&out, 2), &q, HB, GW);
    let q6 = from_h0_6("fd02::5", 64, b"to the bridge 6");
    let out = h.send1(0, T, q6.clone());
    assert_routed6(only(&out, 2), &q6, HB, GW);
    // A bridge host pinging its gateway.
    let out = h.send1(2, T, echo4(HB, GW, HB_4, [10, 2, 0, 1], 1, b"gw?"));
    let (ip, ty, _, _, _) = icmp4(only(&out, 2));
    assert_eq!((ty, ip.source), (0, [10, 2, 0, 1]));
    assert_eq!(h.event(Event::Routed), 4);
    h.assert_no_leak();
}

#[test]
fn an_unresolved_host_behind_the_bridge_is_asked_on_every_member_port() {
    let mut h = Harness::new();
    let p = from_h0(HB_4, 64, b"who?");
    let out = h.send1(0, T, p.clone());
    assert_eq!(
        counts(&out),
        vec![0, 0, 1, 1],
        "the ARP request is flooded in the domain"
    );
    for f in [&out[2][0], &out[3][0]] {
        let (op, sha, spa, _, tpa) = arp_of(f);
        assert_eq!(
            (op, sha, spa, tpa),
            (
                st::ArpOperation::Request,
                GW,
                [10, 2, 0, 1].into(),
                HB_4.into()
            )
        );
    }
    let out = h.send1(2, T, arp_reply(HB, HB_4, GW, [10, 2, 0, 1]));
    assert_routed4(only(&out, 2), &p, HB, GW);
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// 8. Hostile input
// ---------------------------------------------------------------------------------------------------------

/// Sends each frame alone and checks it was dropped for `reason` and nothing left.
fn expect_drop(h: &mut Harness, port: u16, reason: DropReason, frames: &[Vec<u8>]) {
    for (i, f) in frames.iter().enumerate() {
        let before = h.drops(reason);
        let all = h.all_drops();
        let out = h.send1(port, T, f.clone());
        assert!(
            out.iter().all(Vec::is_empty),
            "{reason:?} #{i}: nothing sent"
        );
        assert_eq!(h.drops(reason), before + 1, "{reason:?} #{i}: {f:02x?}");
        assert_eq!(h.all_drops(), all + 1, "{reason:?} #{i}: counted once");
    }
}

#[test]
fn broken_ipv4_headers_are_dropped_by_reason() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    h.take();
    let good = from_h0(N1_4, 64, b"a valid packet, 30 bytes long.");
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    expect_drop(
        &mut h,
        0,
        DropReason::BadIpHeader,
        &[
            with(&|v| v[14] = 0x44),
            with(&|v| v[14] = 0x40),
            with(&|v| {
                v[14] = 0x55;
                fix4(v)
            }),
            with(&|v| {
                v[14] = 0x65;
                fix4(v)
            }),
        ],
    );
    expect_drop(
        &mut h,
        0,
        DropReason::Truncated,
        &[
            with(&|v| {
                let n = (v.len() - 14 + 1) as u16;
                v[16..18].copy_from_slice(&n.to_be_bytes());
                fix4(v)
            }),
            with(&|v| {
                v[16..18].copy_from_slice(&0xffffu16.to_be_bytes());
                fix4(v)
            }),
            with(&|v| {
                v[16..18].copy_from_slice(&19u16.to_be_bytes());
                fix4(v)
            }),
            // IHL 15 in a frame that has no room for 60 header bytes.
            with(&|v| {
                v.truncate(14 + 40);
                v[14] = 0x4f;
                v[16..18].copy_from_slice(&40u16.to_be_bytes());
            }),
        ],
    );
    expect_drop(
        &mut h,
        0,
        DropReason::BadChecksum,
        &[with(&|v| v[24] ^= 1), with(&|v| v[22] = 63)],
    );
    let src = |a: [u8; 4]| {
        with(&|v: &mut Vec<u8>| {
            v[26..30].copy_from_slice(&a);
            fix4(v)
        })
    };
    let dst = |a: [u8; 4]| {
        with(&|v: &mut Vec<u8>| {
            v[30..34].copy_from_slice(&a);
            fix4(v)
        })
    };
    expect_drop(
        &mut h,
        0,
        DropReason::MartianAddress,
        &[
            src([127, 0, 0, 1]),
            src([224, 0, 0, 5]),
            src([239, 1, 2, 3]),
            src([0, 0, 0, 0]),
            src([255, 255, 255, 255]),
            dst([127, 0, 0, 9]),
            dst([0, 1, 2, 3]),
            dst([224, 0, 0, 1]),
            dst([255, 255, 255, 255]),
        ],
    );
    // Unicast to another MAC, broadcast IPv4: not ours to route.
    expect_drop(
        &mut h,
        0,
        DropReason::NotForUs,
        &[
            with(&|v| v[0..6].copy_from_slice(&N1)),
            with(&|v| v[0..6].copy_from_slice(&BCAST)),
        ],
    );
    expect_drop(
        &mut h,
        0,
        DropReason::UnknownEthertype,
        &[with(&|v| v[12..14].copy_from_slice(&[0x88, 0xcc]))],
    );
    assert_eq!(h.event(Event::Routed), 0);
    h.assert_no_leak();
}

#[test]
fn broken_arp_and_ipv6_are_dropped_by_reason() {
    let mut h = Harness::new();
    let req = arp_request(H0, H0_4, [10, 0, 0, 1]);
    let with = |base: &Vec<u8>, f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = base.clone();
        f(&mut v);
        v
    };
    expect_drop(
        &mut h,
        0,
        DropReason::BadArp,
        &[
            with(&req, &|v| v[18] = 8),
            with(&req, &|v| v[19] = 16),
            with(&req, &|v| v[16..18].copy_from_slice(&[0x86, 0xdd])),
            with(&req, &|v| v[14..16].copy_from_slice(&[0, 6])),
            with(&req, &|v| v[20..22].copy_from_slice(&[0, 3])),
        ],
    );
    assert!(h.snap.l3.neigh.is_empty(), "nothing learned from bad ARP");
    let good6 = from_h0_6("fd01::5", 64, b"a valid IPv6 packet");
    expect_drop(
        &mut h,
        0,
        DropReason::Truncated,
        &[
            with(&good6, &|v| {
                let n = (v.len() - 54 + 1) as u16;
                v[18..20].copy_from_slice(&n.to_be_bytes())
            }),
            with(&good6, &|v| v[18..20].copy_from_slice(&[0xff, 0xff])),
        ],
    );
    expect_drop(
        &mut h,
        0,
        DropReason::BadIpHeader,
        &[
            with(&good6, &|v| v[14] = 0x40),
            with(&good6, &|v| v[14] = 0x70),
        ],
    );
    expect_drop(
        &mut h,
        0,
        DropReason::MartianAddress,
        &[
            udp6(H0, R0, "ff02::1", "fd01::5", 64, 1, b"m"),
            udp6(H0, R0, "::1", "fd01::5", 64, 1, b"m"),
            udp6(H0, R0, "fd00::2", "::1", 64, 1, b"m"),
            udp6(H0, R0, "fd00::2", "::", 64, 1, b"m"),
            udp6(H0, R0, "fe80::2", "fd01::5", 64, 1, b"link-local source"),
            udp6(
                H0,
                R0,
                "fd00::2",
                "fe80::5",
                64,
                1,
                b"link-local destination",
            ),
        ],
    );
    h.assert_no_leak();
}

#[test]
fn truncated_frames_of_every_length_are_dropped_as_truncated() {
    let mut h = Harness::new();
    let udp = from_h0(N1_4, 64, &[7; 60]);
    let udp6 = from_h0_6("fd01::5", 64, &[7; 60]);
    let arp = arp_request(H0, H0_4, [10, 0, 0, 1]);
    let ns_ = ns(H0, "fd00::2", "fd00::1", 255, &ll_opt(1, H0));
    let mut n = 0;
    for (f, upto) in [(&udp, 60), (&udp6, 60), (&arp, 42), (&ns_, ns_.len())] {
        for len in 0..upto {
            let out = h.send1(0, T, f[..len].to_vec());
            assert!(out.iter().all(Vec::is_empty), "length {len}");
            n += 1;
            assert_eq!(
                h.drops(DropReason::Truncated),
                n,
                "length {len} of {f:02x?}"
            );
        }
    }
    assert_eq!(h.all_drops(), n);
    // On the bridge port too: short frames die in L2, longer ones to the gateway in L3.
    let to_gw = udp4(HB, GW, HB_4, H0_4, 64, 1, &[7; 60]);
    for len in 0..60 {
        h.send1(2, T, to_gw[..len].to_vec());
    }
    assert_eq!(h.drops(DropReason::Truncated), n + 60);
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// Conservation under random input
// ---------------------------------------------------------------------------------------------------------

/// Valid frames of every kind the stage handles, for mutation.
fn seeds() -> Vec<(u16, Vec<u8>)> {
    vec![
        (0, from_h0(N1_4, 64, b"forward")),
        (0, from_h0([10, 1, 0, 99], 64, b"unresolved")),
        (0, from_h0([10, 2, 0, 5], 64, b"to the bridge")),
        (0, from_h0([172, 16, 0, 1], 64, b"ecmp")),
        (0, from_h0([8, 8, 8, 8], 64, b"no route")),
        (0, from_h0(N1_4, 1, b"ttl")),
        (0, from_h0([10, 0, 0, 1], 64, b"udp local")),
        (0, echo4(H0, R0, H0_4, [10, 1, 0, 1], 1, b"echo")),
        (0, tcp4(H0, R0, H0_4, [10, 0, 0, 1])),
        (0, arp_request(H0, H0_4, [10, 0, 0, 1])),
        (1, arp_reply(N1, N1_4, R1, [10, 1, 0, 1])),
        (0, arp_request(H0, H0_4, H0_4)),
        (0, from_h0_6("fd01::5", 64, b"forward6")),
        (0, from_h0_6("2001:db8:e::1", 64, b"ecmp6")),
        (0, from_h0_6("2001:db8:ffff::1", 1, b"hops")),
        (0, from_h0_6("fd00::1", 64, b"udp local6")),
        (0, echo6(H0, R0, "fd00::2", "fd01::1", b"echo6")),
        (0, ns(H0, "fd00::2", "fd00::1", 255, &ll_opt(1, H0))),
        (0, ns(H0, "::", "fd00::1", 255, &[])),
        (1, na(N1, "fd01::5", R1, "fd01::1")),
        (2, udp4(HB, GW, HB_4, H0_4, 64, 7, b"bridge")),
        (2, arp_request(HB, HB_4, [10, 2, 0, 1])),
        (2, ns(HB, "fd02::5", "fd02::1", 255, &ll_opt(1, HB))),
    ]
}

/// Whether ARP or ND might take this frame without a verdict counter (an answer to us, an announcement).
fn may_be_consumed(f: &[u8]) -> bool {
    match f.get(12..14) {
        Some([0x08, 0x06]) => true,
        Some([0x86, 0xdd]) => f.get(20) == Some(&58) && matches!(f.get(54), Some(135 | 136)),
        _ => false,
    }
}

/// Verdict bookkeeping across bursts.
#[derive(Default)]
struct Tally {
    /// Frames that left.
    sent: u64,
    /// Frames sent in.
    frames: u64,
    /// Of those, ARP and ND messages (which may be taken without a counter: answers to us, announcements).
    maybe_consumed: u64,
}

impl Tally {
    /// Frames in plus frames the router made, less those with a verdict (sent, counted as dropped, waiting):
    /// what ARP/ND took silently. Made: requests and flood copies; an ICMP error reuses the buffer of its
    /// original, which is also counted as a drop, so drops net of errors are buffers that went back.
    fn deficit(&self, h: &Harness) -> i64 {
        let made = h.event(Event::ArpRequestsSent)
            + h.event(Event::NdSolicitsSent)
            + h.event(Event::FloodCopies);
        let dropped =
            h.all_drops() - h.event(Event::IcmpErrorsSent) - h.drops(DropReason::NoBuffer);
        let accounted = self.sent + dropped + h.parked() as u64;
        let d = (self.frames + made) as i64 - accounted as i64;
        assert!(d >= 0, "more verdicts than frames: {d}");
        assert!(
            d as u64 <= self.maybe_consumed,
            "{d} frames without a verdict, only {} were ARP/ND",
            self.maybe_consumed
        );
        d
    }
}

/// Sends `frames` on `port`, then checks conservation: of buffers (the pool gets every one back but the parked
/// ones) and of verdicts (every frame in, and every frame the router made, is sent, counted as dropped or
/// waiting, exactly, unless it is an ARP/ND message).
fn run_checked(h: &mut Harness, port: u16, now_ns: u64, frames: &[Vec<u8>], t: &mut Tally) {
    let before = t.deficit(h);
    let out = h.send(port, now_ns, frames);
    h.assert_no_leak();
    t.sent += out.iter().map(|p| p.len() as u64).sum::<u64>();
    t.frames += frames.len() as u64;
    let arp_nd = frames.iter().filter(|f| may_be_consumed(f)).count() as u64;
    t.maybe_consumed += arp_nd;
    let after = t.deficit(h);
    assert!(after >= before);
    if arp_nd == 0 {
        assert_eq!(after, before, "a frame without a verdict in {frames:02x?}");
    }
    // Deferred work (releases, expiry) moves packets from waiting to sent or dropped: nothing gets lost.
    let out = h.deferred(now_ns);
    t.sent += out.iter().map(|p| p.len() as u64).sum::<u64>();
    h.assert_no_leak();
    assert_eq!(t.deficit(h), after);
}

#[test]
fn random_bytes_and_mutated_frames_never_panic_and_are_all_accounted_for() {
    let h = std::cell::RefCell::new(Harness::new());
    let tally = std::cell::RefCell::new(Tally::default());
    let seeds = seeds();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    // A burst of frames: each a seed with random bytes overwritten and a random length, or random bytes behind
    // a router MAC.
    let frame = (
        0..seeds.len(),
        proptest::collection::vec((0usize..200, any::<u8>()), 0..6),
        proptest::option::of(0usize..200),
        proptest::collection::vec(any::<u8>(), 0..120),
        any::<bool>(),
    );
    // Routed ports only: the bridge gives its gateway copies no counter shows.
    let strategy = (0u16..2, 0u64..8, proptest::collection::vec(frame, 1..24));
    runner
        .run(&strategy, |(port, dt, frames)| {
            let mut h = h.borrow_mut();
            let mut t = tally.borrow_mut();
            let now = T + dt * SEC / 2;
            let built: Vec<Vec<u8>> = frames
                .into_iter()
                .map(|(s, muts, len, random, raw)| {
                    if raw {
                        let mut v = random;
                        if v.len() >= 6 {
                            v[0..6].copy_from_slice(if port == 1 { &R1 } else { &R0 });
                        }
                        return v;
                    }
                    let mut v = seeds[s].1.clone();
                    for (at, b) in muts {
                        if let Some(x) = v.get_mut(at) {
                            *x = b;
                        }
                    }
                    if let Some(l) = len {
                        v.truncate(l);
                    }
                    v
                })
                .collect();
            run_checked(&mut h, port, now, &built, &mut t);
            Ok(())
        })
        .unwrap();
    // Whatever still waits expires.
    let mut h = h.into_inner();
    let mut t = tally.into_inner();
    let before = t.deficit(&h);
    let out = h.deferred(T + 60 * SEC);
    t.sent += out.iter().map(|p| p.len() as u64).sum::<u64>();
    assert_eq!(h.parked(), 0);
    h.assert_no_leak();
    assert_eq!(t.deficit(&h), before);
    assert!(
        h.event(Event::Routed) > 0,
        "the mutations left some frames valid"
    );
    assert!(h.event(Event::IcmpErrorsSent) > 0);
    assert!(h.event(Event::EchoReplies) > 0);
    assert!(h.drops(DropReason::BadChecksum) > 0);
}

#[test]
fn random_frames_through_the_bridge_gateway_never_panic_or_leak() {
    let h = std::cell::RefCell::new(Harness::new());
    let seeds = seeds();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let frame = (
        0..seeds.len(),
        proptest::collection::vec((0usize..120, any::<u8>()), 0..4),
        proptest::option::of(0usize..120),
    );
    runner
        .run(&proptest::collection::vec(frame, 1..16), |frames| {
            let built: Vec<Vec<u8>> = frames
                .into_iter()
                .map(|(s, muts, len)| {
                    let mut v = seeds[s].1.clone();
                    v[0..6].copy_from_slice(&GW);
                    for (at, b) in muts {
                        if let Some(x) = v.get_mut(at) {
                            *x = b;
                        }
                    }
                    if let Some(l) = len {
                        v.truncate(l);
                    }
                    v
                })
                .collect();
            let mut h = h.borrow_mut();
            h.send(2, T, &built);
            h.assert_no_leak();
            Ok(())
        })
        .unwrap();
    let mut h = h.into_inner();
    h.deferred(T + 60 * SEC);
    assert_eq!(h.parked(), 0);
    h.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------------------
// 9. Announcements
// ---------------------------------------------------------------------------------------------------------

fn assert_announcements(out: &Out) {
    // Interface 0 on port 0, interface 1 on port 1, the bridge gateway flooded to ports 2 and 3.
    assert_eq!(counts(out), vec![2, 2, 2, 2]);
    for (port, mac, a4, a6) in [
        (0, R0, [10, 0, 0, 1], "fd00::1"),
        (1, R1, [10, 1, 0, 1], "fd01::1"),
        (2, GW, [10, 2, 0, 1], "fd02::1"),
        (3, GW, [10, 2, 0, 1], "fd02::1"),
    ] {
        let garp = out[port]
            .iter()
            .find(|f| f[12..14] == [0x08, 0x06])
            .expect("a gratuitous ARP");
        assert_eq!((eth_dst(garp), eth_src(garp)), (BCAST, mac));
        let (op, sha, spa, _, tpa) = arp_of(garp);
        assert_eq!(op, st::ArpOperation::Request);
        assert_eq!((sha, spa, tpa), (mac, a4.into(), a4.into()));
        let una = out[port]
            .iter()
            .find(|f| f[12..14] == [0x86, 0xdd])
            .expect("an unsolicited NA");
        assert_eq!(
            (eth_dst(una), eth_src(una)),
            ([0x33, 0x33, 0, 0, 0, 1], mac)
        );
        let (src, dst, hops, nd) = nd_of(una);
        assert_eq!((src, dst, hops), (v6(a6), v6("ff02::1"), 255));
        match nd {
            st::NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr: ll,
            } => {
                assert!(!flags.contains(st::NdiscNeighborFlags::SOLICITED));
                assert!(flags.contains(st::NdiscNeighborFlags::OVERRIDE));
                assert_eq!(target_addr, v6(a6));
                assert_eq!(lladdr(ll), Some(mac.to_vec()));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn worker_0_announces_every_address_when_the_interfaces_change() {
    let mut h = Harness::with(Opts {
        with_pool: true,
        ..Opts::default()
    });
    assert!(h.snap.has_deferred(&h.state, T));
    let out = h.deferred(T);
    assert_announcements(&out);
    assert_eq!(h.event(Event::Announced), 6);
    // Once per set of interfaces.
    assert!(!h.snap.has_deferred(&h.state, T));
    let out = h.deferred(T + SEC);
    assert!(out.iter().all(Vec::is_empty));
    // A new generation with the same interfaces (a route change) announces nothing...
    h.set_generation(2);
    assert!(!h.snap.has_deferred(&h.state, T + SEC));
    // ...changed interfaces announce again.
    h.set_announce_id(2);
    let out = h.deferred(T + 2 * SEC);
    assert_announcements(&out);
    assert_eq!(h.event(Event::Announced), 12);
    // Other workers never announce.
    let mut w1 = h.snap.new_state(1);
    assert!(!h.snap.has_deferred(&w1, T));
    let ctx = BurstCtx {
        worker: 1,
        in_port: u16::MAX,
        now_ns: T,
    };
    h.snap.run_deferred(&mut w1, &ctx, &mut h.out);
    assert!(h.take().iter().all(Vec::is_empty));
    h.assert_no_leak();
}

#[test]
fn without_a_pool_nothing_is_announced() {
    let mut h = Harness::new();
    let out = h.deferred(T);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.event(Event::Announced), 0);
}

// ---------------------------------------------------------------------------------------------------------
// More forwarding details
// ---------------------------------------------------------------------------------------------------------

#[test]
fn a_stale_neighbour_is_asked_again_while_it_keeps_being_used() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    h.take();
    let p = from_h0(N1_4, 64, b"stale");
    // Confirmed at 100 s; reachable_s is 30.
    let out = h.send1(0, T + 29 * SEC, p.clone());
    assert_eq!(counts(&out), vec![0, 1, 0, 0]);
    let out = h.send1(0, T + 31 * SEC, p.clone());
    assert_eq!(
        counts(&out),
        vec![0, 2, 0, 0],
        "the packet and a new request"
    );
    let req = out[1].iter().find(|f| f[12..14] == [0x08, 0x06]).unwrap();
    let (op, _, _, _, tpa) = arp_of(req);
    assert_eq!((op, tpa), (st::ArpOperation::Request, N1_4.into()));
    let fwd = out[1].iter().find(|f| f[12..14] == [0x08, 0x00]).unwrap();
    assert_routed4(fwd, &p, N1, R1);
    // At most one request a second.
    let out = h.send1(0, T + 31 * SEC + SEC / 2, p.clone());
    assert_eq!(counts(&out), vec![0, 1, 0, 0]);
    assert_eq!(h.event(Event::ArpRequestsSent), 1);
    // The answer confirms it again.
    h.send1(1, T + 32 * SEC, arp_reply(N1, N1_4, R1, [10, 1, 0, 1]));
    let out = h.send1(0, T + 40 * SEC, p.clone());
    assert_eq!(counts(&out), vec![0, 1, 0, 0]);
    assert_eq!(h.event(Event::ArpRequestsSent), 1);
    h.assert_no_leak();
}

#[test]
fn ethernet_padding_is_not_forwarded_answered_or_quoted() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    h.take();
    // Up to the Ethernet minimum, or trailing bytes a NIC left.
    let pad = |mut f: Vec<u8>| {
        let n = f.len().max(52) + 8;
        f.resize(n, 0xee);
        f
    };
    let p = from_h0(N1_4, 64, b"tiny");
    let out = h.send1(0, T, pad(p.clone()));
    assert_routed4(only(&out, 1), &p, N1, R1);
    let e = echo4(H0, R0, H0_4, [10, 0, 0, 1], 3, b"e");
    let out = h.send1(0, T, pad(e));
    let (_, ty, _, _, data) = icmp4(only(&out, 0));
    assert_eq!((ty, &data[..]), (0, &b"e"[..]));
    let t = from_h0(N1_4, 1, b"ttl");
    let out = h.send1(0, T, pad(t.clone()));
    let (_, ty, _, _, quote) = icmp4(only(&out, 0));
    assert_eq!(ty, 11);
    assert_eq!(
        quote,
        t[14..].to_vec(),
        "the quote stops at the packet's end"
    );
    let p6 = from_h0_6("fd01::5", 64, b"");
    let out = h.send1(0, T, pad(p6.clone()));
    assert_routed6(only(&out, 1), &p6, N1, R1);
    h.assert_no_leak();
}

/// `from_h0` with a 4-byte option (three NOPs and an end of list).
fn with_options(dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let f = from_h0(dst, ttl, b"options");
    let mut v = f[..34].to_vec();
    v.extend_from_slice(&[1, 1, 1, 0]);
    v.extend_from_slice(&f[34..]);
    v[14] = 0x46;
    let total = (v.len() - 14) as u16;
    v[16..18].copy_from_slice(&total.to_be_bytes());
    fix4(&mut v);
    v
}

#[test]
fn ipv4_options_are_forwarded_intact_unless_configured_off() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    h.take();
    let p = with_options(N1_4, 64);
    let out = h.send1(0, T, p.clone());
    let f = only(&out, 1);
    assert_routed4(f, &p, N1, R1);
    assert_eq!(&f[34..38], &[1, 1, 1, 0], "options kept");
    let mut h = Harness::with(Opts {
        drop_options: true,
        ..Opts::default()
    });
    learn_n1(&mut h);
    h.take();
    let out = h.send1(0, T, with_options(N1_4, 64));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::IpOptions), 1);
    h.assert_no_leak();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// The incremental TTL update keeps the header checksum valid whatever the other header fields are.
    #[test]
    fn forwarded_headers_always_verify(
        ttl in 2u8..=255,
        tos in any::<u8>(),
        ident in any::<u16>(),
        src_host in 2u8..=254,
        dst_host in 0u8..=255,
        df in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut h = Harness::new();
        let src = [10, 0, 0, src_host];
        let dst = [192, 168, 1, dst_host];
        h.send1(1, T, arp_request(G1, [10, 1, 0, 254], [10, 1, 0, 1]));
        h.take();
        let mut p = udp4(H0, R0, src, dst, ttl, 1, &payload);
        p[15] = tos;
        p[18..20].copy_from_slice(&ident.to_be_bytes());
        set_df(&mut p, df);
        let out = h.send1(0, T, p.clone());
        prop_assert_eq!(counts(&out), vec![0, 1, 0, 0]);
        // ip4() checks the checksum against etherparse's.
        assert_routed4(&out[1][0], &p, G1, R1);
        let (hdr, _) = ip4(&out[1][0]);
        prop_assert_eq!(hdr.identification, ident);
        prop_assert_eq!(hdr.dont_fragment, df);
    }
}

// ---------------------------------------------------------------------------------------------------------
// More ICMP
// ---------------------------------------------------------------------------------------------------------

#[test]
fn no_error_is_sent_about_icmp_errors_or_later_fragments() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    h.take();
    // A time exceeded from elsewhere, crossing the router with TTL 1.
    let mut err = Vec::new();
    PacketBuilder::ethernet2(H0, R0)
        .ipv4(H0_4, N1_4, 1)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut err, &[0x45; 28])
        .unwrap();
    let mut frag = from_h0(N1_4, 1, &[9; 16]);
    frag[20] = 0x00;
    frag[21] = 0x20;
    fix4(&mut frag);
    let mut err6 = Vec::new();
    PacketBuilder::ethernet2(H0, R0)
        .ipv6(o6("fd00::2"), o6("fd01::5"), 1)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut err6, &[0x60; 48])
        .unwrap();
    let out = h.send(0, T, &[err, frag, err6]);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::TtlExceeded), 3);
    assert_eq!(h.event(Event::IcmpErrorsSent), 0);
    // A TTL-1 echo request (a query) does get its error.
    let mut q = echo4(H0, R0, H0_4, N1_4, 1, b"q");
    q[22] = 1;
    fix4(&mut q);
    let out = h.send1(0, T, q);
    assert_eq!(icmp4(only(&out, 0)).1, 11);
    h.assert_no_leak();
}

#[test]
fn packets_never_answered_do_not_spend_the_icmp_budget() {
    let mut h = Harness::with(Opts {
        icmp_rate: 2,
        ..Opts::default()
    });
    // Later fragments with TTL 1: no error may be sent about them.
    let mut frag = from_h0(N1_4, 1, &[9; 16]);
    frag[20] = 0x00;
    frag[21] = 0x20;
    fix4(&mut frag);
    let out = h.send(0, T, &[frag.clone(), frag.clone(), frag]);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(
        h.event(Event::IcmpRateLimited),
        0,
        "not rate-limited: never answered"
    );
    // The budget is intact for the next real error.
    let out = h.send(0, T, &[from_h0(N1_4, 1, b"a"), from_h0(N1_4, 1, b"b")]);
    assert_eq!(out[0].len(), 2);
    assert_eq!(h.drops(DropReason::TtlExceeded), 5);
    h.assert_no_leak();
}

#[test]
fn echo_requests_with_a_bad_icmp_checksum_are_dropped() {
    let mut h = Harness::new();
    let mut e = echo4(H0, R0, H0_4, [10, 0, 0, 1], 1, b"x");
    e[37] ^= 0x55;
    let mut e6 = echo6(H0, R0, "fd00::2", "fd00::1", b"x");
    e6[57] ^= 0x55;
    let out = h.send(0, T, &[e, e6]);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::BadChecksum), 2);
    h.assert_no_leak();
}

#[test]
fn a_link_local_source_may_reach_every_router_address_but_is_never_forwarded() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    h.take();
    for dst in ["fd00::1", "fd01::1"] {
        let out = h.send1(0, T, echo6(H0, R0, "fe80::2", dst, b"ll"));
        let (src, to, ty, ..) = icmp6(only(&out, 0));
        assert_eq!((src, to, ty), (v6(dst), v6("fe80::2"), 129), "to {dst}");
    }
    // Another interface's link-local address is not on this link.
    let ll1 = link_local_of(&R1).to_string();
    let out = h.send1(0, T, echo6(H0, R0, "fe80::2", &ll1, b"ll"));
    assert!(out.iter().all(Vec::is_empty));
    let out = h.send1(0, T, udp6(H0, R0, "fe80::2", "fd01::5", 64, 1, b"fwd"));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::MartianAddress), 2);
    h.assert_no_leak();
}

#[test]
fn advertisements_update_known_neighbours_only() {
    let mut h = Harness::new();
    // Unsolicited, from a stranger: nothing learned.
    let out = h.send1(1, T, na(N1, "fd01::5", R1, "fd01::1"));
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.neigh(1, u128::from(v6("fd01::5"))), None);
    // Known (it solicited us), then moves: the advertisement (override) updates it.
    h.send1(1, T, ns(N1, "fd01::5", "fd01::1", 255, &ll_opt(1, N1)));
    let moved: Mac = [0x02, 0xcc, 0, 0, 0, 0x55];
    h.send1(1, T + SEC, na(moved, "fd01::5", R1, "fd01::1"));
    assert!(matches!(
        h.neigh(1, u128::from(v6("fd01::5"))),
        Some(Neighbor::Reachable { mac, .. }) if mac == moved
    ));
    let p = from_h0_6("fd01::5", 64, b"to the new MAC");
    let out = h.send1(0, T + SEC, p.clone());
    assert_routed6(only(&out, 1), &p, moved, R1);
    h.assert_no_leak();
}

#[test]
fn tagged_frames_on_a_routed_port_are_not_routed() {
    let mut h = Harness::new();
    let p = from_h0(N1_4, 64, b"tagged");
    let mut t = p[..12].to_vec();
    t.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
    t.extend_from_slice(&p[12..]);
    let out = h.send1(0, T, t);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::UnknownEthertype), 1);
    h.assert_no_leak();
}

#[test]
fn directed_broadcasts_of_attached_subnets_are_not_forwarded() {
    let mut h = Harness::new();
    let out = h.send(
        0,
        T,
        &[
            from_h0([10, 1, 0, 255], 64, b"smurf"),
            from_h0([10, 2, 0, 255], 64, b"smurf"),
            from_h0([10, 0, 0, 255], 64, b"smurf"),
        ],
    );
    assert!(
        out.iter().all(Vec::is_empty),
        "no ARP request for a broadcast address"
    );
    assert_eq!(h.drops(DropReason::MartianAddress), 3);
    assert_eq!(h.parked(), 0);
    // The addresses next to it are hosts.
    let out = h.send1(0, T, from_h0([10, 1, 0, 254], 64, b"host"));
    assert_eq!(arp_of(only(&out, 1)).4, Ipv4Addr::new(10, 1, 0, 254));
    h.assert_no_leak();
}

#[test]
fn nd_link_layer_options_must_be_unicast() {
    let mut h = Harness::new();
    let out = h.send(
        0,
        T,
        &[
            ns(H0, "fd00::2", "fd00::1", 255, &ll_opt(1, BCAST)),
            ns(
                H0,
                "fd00::2",
                "fd00::1",
                255,
                &ll_opt(1, [0x33, 0x33, 0, 0, 0, 1]),
            ),
            ns(H0, "fd00::2", "fd00::1", 255, &ll_opt(1, [0; 6])),
            // No option: the frame's source is the address, and it is a broadcast one.
            ns(BCAST, "fd00::2", "fd00::1", 255, &[]),
        ],
    );
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::BadNd), 4);
    assert_eq!(
        h.neigh(0, u128::from(v6("fd00::2"))),
        None,
        "no neighbour at a broadcast MAC"
    );
    // A known neighbour is not moved to a multicast MAC by an advertisement either.
    h.send1(0, T, ns(H0, "fd00::2", "fd00::1", 255, &ll_opt(1, H0)));
    let bad_na = icmp6_frame(
        R0,
        H0,
        "fd00::2",
        "fd00::1",
        255,
        &nd_msg(136, 0x60, "fd00::2", &ll_opt(2, BCAST)),
    );
    h.send1(0, T + SEC, bad_na);
    assert_eq!(h.drops(DropReason::BadNd), 5);
    assert!(matches!(
        h.neigh(0, u128::from(v6("fd00::2"))),
        Some(Neighbor::Reachable { mac, .. }) if mac == H0
    ));
    h.assert_no_leak();
}

#[test]
fn an_advertisement_without_override_does_not_move_a_resolved_neighbour() {
    let mut h = Harness::new();
    learn_n1(&mut h);
    let other: Mac = [0x02, 0xcc, 0, 0, 0, 0x77];
    let no_override = |mac: Mac| {
        icmp6_frame(
            R1,
            mac,
            "fd01::5",
            "fd01::1",
            255,
            &nd_msg(136, 0x40, "fd01::5", &ll_opt(2, mac)),
        )
    };
    h.send1(1, T + SEC, no_override(other));
    assert!(
        matches!(
            h.neigh(1, u128::from(v6("fd01::5"))),
            Some(Neighbor::Reachable { mac, .. }) if mac == N1
        ),
        "O clear: the cached address stays (RFC 4861 7.2.5)"
    );
    // With override it moves.
    h.send1(1, T + 2 * SEC, na(other, "fd01::5", R1, "fd01::1"));
    assert!(matches!(
        h.neigh(1, u128::from(v6("fd01::5"))),
        Some(Neighbor::Reachable { mac, .. }) if mac == other
    ));
    // And an incomplete entry takes the address whatever the flag.
    h.take();
    h.send1(0, T + 3 * SEC, from_h0_6("fd01::6", 64, b"wait"));
    let na6 = icmp6_frame(
        R1,
        other,
        "fd01::6",
        "fd01::1",
        255,
        &nd_msg(136, 0x40, "fd01::6", &ll_opt(2, other)),
    );
    let out = h.send1(1, T + 3 * SEC, na6);
    assert_eq!(out[1].len(), 1, "released");
    h.assert_no_leak();
}

#[test]
fn a_waiting_packet_gets_its_request_retried_every_second() {
    let mut h = Harness::new();
    h.send1(0, T, from_h0([10, 1, 0, 6], 64, b"syn"));
    assert_eq!(h.event(Event::ArpRequestsSent), 1);
    // The first request was lost. Within the 3 s the packet may wait, the router asks again.
    let mut asked = 0;
    for ms in (100..3000).step_by(100) {
        let out = h.deferred(T + ms * 1_000_000);
        asked += out[1].len();
    }
    assert!(asked >= 1, "no retry while a packet waited 3 s");
    assert_eq!(h.event(Event::ArpRequestsSent), 1 + asked as u64);
}

// ---------------------------------------------------------------------------------------------------------
// Local delivery to the host stack, and what it sends
// ---------------------------------------------------------------------------------------------------------

impl Harness {
    /// Gives the snapshot host-stack queues of `cap` packets each, as compilation does when the router runs a
    /// host stack.
    fn with_host(&mut self, cap: usize) -> Arc<HostQueues> {
        let q = Arc::new(HostQueues::new(cap));
        let mut s = self.snap.clone();
        let mut l3 = (*s.l3).clone();
        l3.host = Some(q.clone());
        s.l3 = Arc::new(l3);
        self.snap = s;
        q
    }

    /// Queues the IP packet `ip` as the host stack sends it.
    fn host_sends(&self, q: &HostQueues, ip: &[u8]) {
        let mut p = self.pool.alloc().unwrap();
        assert!(p.set_frame(ip));
        q.push_from_host(p).unwrap();
    }
}

/// What the host stack received, as bytes (the buffers go home).
fn host_got(q: &HostQueues) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| q.pop_to_host())
        .map(|p| p.data().to_vec())
        .collect()
}

/// A TCP segment as an IP packet without Ethernet, as the host stack writes it.
fn ip_tcp4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(7, 40000, 1, 1000)
        .ack(2)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn ip_tcp6(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(o6(src), o6(dst), 64)
        .tcp(7, 40000, 1, 1000)
        .ack(2)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Asserts `f` is the IP packet `ip` in an Ethernet frame from `src_mac` to `dst_mac`, unchanged (the router
/// originated it: no TTL decrement).
fn assert_sent(f: &[u8], ip: &[u8], dst_mac: Mac, src_mac: Mac) {
    assert_eq!(eth_dst(f), dst_mac);
    assert_eq!(eth_src(f), src_mac);
    let ethertype = if ip[0] >> 4 == 4 { 0x0800u16 } else { 0x86dd };
    assert_eq!(f[12..14], ethertype.to_be_bytes());
    assert_eq!(&f[14..], ip, "the packet as the host stack wrote it");
}

#[test]
fn tcp_and_other_protocols_to_the_router_reach_the_host_stack_without_their_ethernet_header() {
    let mut h = Harness::new();
    let q = h.with_host(16);
    // TCP to the interface's own address and to another interface's, both families.
    let frames = [
        tcp4(H0, R0, H0_4, [10, 0, 0, 1]),
        tcp4(H0, R0, H0_4, [10, 2, 0, 1]),
        tcp6("fd00::2", "fd00::1"),
        tcp6("fd00::2", "fd01::1"),
    ];
    let out = h.send(0, T, &frames);
    assert!(
        out.iter().all(Vec::is_empty),
        "nothing answered in the fast path"
    );
    assert_eq!(h.event(Event::ToHostStack), 4);
    let got = host_got(&q);
    let want: Vec<Vec<u8>> = frames.iter().map(|f| f[14..].to_vec()).collect();
    assert_eq!(got, want);
    // Another IP protocol (GRE) to the router goes there too.
    let mut gre = from_h0([10, 0, 0, 1], 64, b"gre?");
    gre[23] = 47;
    fix4(&mut gre);
    h.send1(0, T, gre.clone());
    assert_eq!(host_got(&q), vec![gre[14..].to_vec()]);
    // UDP and ICMP echo stay in the fast path; an IPv6 fragment to the router is dropped (no reassembly).
    let out = h.send1(0, T, from_h0([10, 0, 0, 1], 64, b"dns?"));
    assert_eq!(
        icmp4(only(&out, 0)).1,
        3,
        "port unreachable from the fast path"
    );
    let out = h.send1(0, T, echo4(H0, R0, H0_4, [10, 0, 0, 1], 1, b"ping"));
    assert_eq!(icmp4(only(&out, 0)).1, 0, "echo reply from the fast path");
    let mut frag6 = tcp6("fd00::2", "fd00::1");
    frag6[20] = 44;
    h.send1(0, T, frag6);
    assert_eq!(h.drops(DropReason::Fragment), 1);
    assert!(host_got(&q).is_empty());
    assert_eq!(h.event(Event::ToHostStack), 5);
    assert_eq!(h.drops(DropReason::NoLocalStack), 0);
    h.assert_no_leak();
}

#[test]
fn a_full_host_queue_drops_as_host_queue_full() {
    let mut h = Harness::new();
    let q = h.with_host(2);
    let f = tcp4(H0, R0, H0_4, [10, 0, 0, 1]);
    h.send(0, T, &[f.clone(), f.clone(), f.clone()]);
    assert_eq!(h.event(Event::ToHostStack), 2);
    assert_eq!(h.drops(DropReason::HostQueueFull), 1);
    assert_eq!(host_got(&q).len(), 2);
    // Room again: the next one goes.
    h.send1(0, T, f);
    assert_eq!(host_got(&q).len(), 1);
    assert_eq!(h.drops(DropReason::HostQueueFull), 1);
    h.assert_no_leak();
}

#[test]
fn host_stack_output_leaves_by_the_fib_to_a_resolved_neighbour_from_worker_0_only() {
    let mut h = Harness::new();
    let q = h.with_host(128);
    h.deferred(T); // the start-up announcement
    assert!(!h.snap.has_deferred(&h.state, T), "nothing to send yet");
    // H0 is known: it asked for the router's address.
    h.send1(0, T, arp_request(H0, H0_4, [10, 0, 0, 1]));
    let ip = ip_tcp4([10, 0, 0, 1], H0_4, b"echo me");
    h.host_sends(&q, &ip);
    // Worker 1 leaves it to worker 0 (one worker keeps a connection's segments in order).
    let other = h.snap.new_state(1);
    assert!(!h.snap.has_deferred(&other, T));
    assert!(h.snap.has_deferred(&h.state, T));
    let out = h.deferred(T);
    assert_sent(only(&out, 0), &ip, H0, R0);
    assert_eq!(h.event(Event::FromHostStack), 1);
    // IPv6, a global address: resolved from H0's solicitation.
    h.send1(0, T, ns(H0, "fd00::2", "fd00::1", 255, &ll_opt(1, H0)));
    let ip6 = ip_tcp6("fd00::1", "fd00::2", b"echo me too");
    h.host_sends(&q, &ip6);
    let out = h.deferred(T);
    assert_sent(only(&out, 0), &ip6, H0, R0);
    // A burst larger than one round's share leaves over several rounds, in order.
    let n = pipelines::l3::host::OUTPUT_PER_ROUND + 10;
    let many: Vec<Vec<u8>> = (0..n)
        .map(|i| ip_tcp4([10, 0, 0, 1], H0_4, &[i as u8; 8]))
        .collect();
    for p in &many {
        h.host_sends(&q, p);
    }
    let mut sent = h.deferred(T).swap_remove(0);
    assert_eq!(sent.len(), pipelines::l3::host::OUTPUT_PER_ROUND);
    sent.extend(h.deferred(T).swap_remove(0));
    assert_eq!(sent.len(), n);
    for (f, p) in sent.iter().zip(&many) {
        assert_sent(f, p, H0, R0);
    }
    assert!(!h.snap.has_deferred(&h.state, T), "drained");
    assert_eq!(h.event(Event::FromHostStack), 2 + n as u64);
    assert_eq!(h.all_drops(), 0);
    h.assert_no_leak();
}

#[test]
fn host_stack_output_to_an_unresolved_next_hop_waits_for_it_like_forwarded_packets() {
    let mut h = Harness::new();
    let q = h.with_host(16);
    // On-link, unknown: ARP goes out of port 1, the packet waits, the reply releases it.
    let ip = ip_tcp4([10, 1, 0, 1], N1_4, b"syn-ack");
    h.host_sends(&q, &ip);
    let out = h.deferred(T);
    let (op, _, _, _, tpa) = arp_of(only(&out, 1));
    assert_eq!((op, tpa), (st::ArpOperation::Request, N1_4.into()));
    assert_eq!(h.parked(), 1);
    let out = h.send1(1, T, arp_reply(N1, N1_4, R1, [10, 1, 0, 1]));
    assert_sent(only(&out, 1), &ip, N1, R1);
    // Behind a static route: the gateway is asked for, not the destination.
    let ip = ip_tcp4([10, 1, 0, 1], [192, 168, 7, 7], b"far");
    h.host_sends(&q, &ip);
    let out = h.deferred(T);
    let (_, _, _, _, tpa) = arp_of(only(&out, 1));
    assert_eq!(tpa, Ipv4Addr::new(10, 1, 0, 254));
    let out = h.send1(1, T, arp_reply(G1, [10, 1, 0, 254], R1, [10, 1, 0, 1]));
    assert_sent(only(&out, 1), &ip, G1, R1);
    // IPv6: a solicitation, then the advertisement releases it.
    let ip6 = ip_tcp6("fd01::1", "fd01::5", b"v6");
    h.host_sends(&q, &ip6);
    let out = h.deferred(T);
    assert!(matches!(
        nd_of(only(&out, 1)).3,
        st::NdiscRepr::NeighborSolicit { .. }
    ));
    let out = h.send1(1, T, na(N1, "fd01::5", R1, "fd01::1"));
    assert_sent(only(&out, 1), &ip6, N1, R1);
    assert_eq!(h.event(Event::FromHostStack), 3);
    assert_eq!(h.all_drops(), 0);
    h.assert_no_leak();
}

#[test]
fn host_stack_output_to_a_link_local_peer_leaves_by_the_interface_owning_its_source() {
    let mut h = Harness::new();
    let q = h.with_host(16);
    let (r0_ll, r1_ll, h0_ll) = (
        link_local_of(&R0).to_string(),
        link_local_of(&R1).to_string(),
        link_local_of(&H0).to_string(),
    );
    // H0 solicited the router's link-local address from its own: known on interface 0.
    h.send1(0, T, ns(H0, &h0_ll, &r0_ll, 255, &ll_opt(1, H0)));
    let ip = ip_tcp6(&r0_ll, &h0_ll, b"link-local");
    h.host_sends(&q, &ip);
    let out = h.deferred(T);
    assert_sent(only(&out, 0), &ip, H0, R0);
    // An unknown peer of interface 1's link-local address is asked for on interface 1 (port 1).
    h.host_sends(&q, &ip_tcp6(&r1_ll, "fe80::99", b"who?"));
    let out = h.deferred(T);
    let (src, _, _, nd) = nd_of(only(&out, 1));
    assert_eq!(src, v6(&r1_ll));
    assert!(
        matches!(nd, st::NdiscRepr::NeighborSolicit { target_addr, .. } if target_addr == v6("fe80::99"))
    );
    assert_eq!(h.parked(), 1);
    h.assert_no_leak();
}

#[test]
fn host_stack_output_without_a_route_or_that_does_not_parse_is_dropped_by_reason() {
    let mut h = Harness::with(Opts {
        mtu1: 1280,
        ..Opts::default()
    });
    let q = h.with_host(16);
    learn_n1(&mut h);
    h.take();
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (
            ip_tcp4([10, 0, 0, 1], [8, 8, 8, 8], b"x"),
            DropReason::NoRoute,
        ),
        (
            ip_tcp4([10, 0, 0, 1], [198, 51, 100, 1], b"x"),
            DropReason::NoRoute,
        ),
        (
            ip_tcp6("fd00::1", "2001:db8:bad::1", b"x"),
            DropReason::NoRoute,
        ),
        (
            ip_tcp4([10, 1, 0, 1], N1_4, &[0; 1300]),
            DropReason::MtuExceeded,
        ),
        (vec![0x50; 40], DropReason::BadIpHeader),
        (vec![0x45; 10], DropReason::Malformed),
        (Vec::new(), DropReason::Truncated),
    ];
    for (ip, reason) in &cases {
        let before = h.drops(*reason);
        h.host_sends(&q, ip);
        let out = h.deferred(T);
        assert!(out.iter().all(Vec::is_empty), "{reason:?}: nothing sent");
        assert_eq!(h.drops(*reason), before + 1, "{reason:?}");
    }
    assert_eq!(h.all_drops(), cases.len() as u64);
    h.assert_no_leak();
}
