//! The forwarding fast path, VPP's ip4/ip6-input, -lookup and -rewrite for the common packet in one straight
//! pass: a unicast packet to the router's MAC, with a header that is sound (for IPv4, 20 bytes that verify),
//! a source and a destination that may be routed, TTL or hop limit to spare, a route to a gateway or an
//! attached host on a plain port, within the MTU, and a next hop in the worker's cache.
//!
//! Everything else goes back untouched to the general path ([`super::ipv4::input`], [`super::ipv6::input`]),
//! which gives every verdict, counter and ICMP error. The fast path only forwards what the general path
//! forwards, with the same bytes to the same port, and drops nothing: it checks everything before it writes
//! anything. It saves what the general path spends on being general: views with their own checks, a header
//! read into a struct, each case's branch, the next-hop cache's version check per packet (here once per
//! burst), and a count per packet (here once per burst).

use super::ipv4::{directed_broadcast, martian_src, unroutable_dst};
use super::neigh::NeighKey;
use super::nh_cache::{NextHopCache, NO_PORT};
use super::{resolve_adj_within, Adjacency, L3Ctx, ETH_LEN, SCRATCH_IFACE};
use crate::wire::checksum::header20_ok;
use crate::wire::ipv4::decrement_ttl_in;
use dataplane::worker::TxBatches;
use dataplane::Pkt;
use std::net::Ipv6Addr;

/// The burst's input interface, read once per burst: a burst comes from one port, so its packets nearly
/// always share their router interface (a VLAN trunk's sub-interfaces are the exception, looked up per
/// packet).
#[derive(Clone, Copy)]
pub(super) struct Ingress {
    iface: u32,
    /// The interface's MAC in [`mac48`]'s form, for one compare with a frame's destination.
    mac: u64,
}

impl Ingress {
    /// The interface of `first` (the burst's first packet), or one no packet matches.
    #[inline]
    pub(super) fn of(c: &L3Ctx<'_>, first: Option<&Pkt>) -> Ingress {
        first
            .map(|p| p.meta().scratch[SCRATCH_IFACE])
            .and_then(|i| Some((i, c.t.ifaces.get(i as usize)?.mac)))
            .map_or(
                Ingress {
                    iface: u32::MAX,
                    mac: u64::MAX,
                },
                |(iface, mac)| Ingress {
                    iface,
                    mac: mac48(&mac),
                },
            )
    }
}

/// What the checks decided for a packet the fast path forwards.
struct Verdict {
    /// Output port.
    port: u16,
    /// The frame's new first 12 bytes: the next hop's MAC, then the output interface's.
    rewrite: [u8; 12],
    /// The frame's length without Ethernet padding.
    frame_len: usize,
}

/// A MAC in the low 48 bits of a little-endian word: a frame's destination is then one 8-byte load masked with
/// [`MAC48`] and one compare.
#[inline(always)]
fn mac48(b: &[u8; 6]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0])
}

/// The low 48 bits of a word.
const MAC48: u64 = (1 << 48) - 1;

/// The EtherType IPv4 and a first header byte of version 4 with a 20-byte header (`08 00 45`), as the low 24
/// bits of a little-endian word read at the EtherType.
const IPV4_IHL5: u32 = u32::from_le_bytes([0x08, 0x00, 0x45, 0]);

/// `ff00::/8`, as [`Ipv6Addr::is_multicast`].
#[inline(always)]
fn v6_multicast(a: u128) -> bool {
    a >> 120 == 0xff
}

/// `fe80::/10`, as [`Ipv6Addr::is_unicast_link_local`].
#[inline(always)]
fn v6_link_local(a: u128) -> bool {
    a >> 118 == 0xfe80 >> 6
}

/// Offset of the IPv6 hop limit in the frame.
const HOP_LIMIT: usize = ETH_LEN + 7;

/// Forwards `pkt` exactly as the general path would if it is the common case (see the module docs);
/// otherwise gives it back unchanged. The caller has checked that the snapshot has neither NAT nor local
/// VTEPs (each adds a step to the general path) and has synchronised `nh` ([`NextHopCache::sync`]).
#[inline(always)]
pub(super) fn forward(
    c: &L3Ctx<'_>,
    nh: &NextHopCache,
    ingress: Ingress,
    pkt: Pkt,
    out: &mut TxBatches,
) -> Result<(), Pkt> {
    // IPv4 first: an IPv6 packet fails its EtherType test after a few instructions.
    if let Some(v) = decide4(c, nh, ingress, &pkt) {
        finish::<false>(pkt, v, out);
        return Ok(());
    }
    if let Some(v) = decide6(c, nh, &pkt) {
        finish::<true>(pkt, v, out);
        return Ok(());
    }
    Err(pkt)
}

/// Trims the padding, writes the rewrite, decrements the TTL (`V6` false: with the header checksum) or the
/// hop limit, and queues the frame.
#[inline(always)]
fn finish<const V6: bool>(mut pkt: Pkt, v: Verdict, out: &mut TxBatches) {
    pkt.truncate(v.frame_len);
    if let Some(f) = pkt.data_mut().first_chunk_mut::<{ ETH_LEN + 12 }>() {
        let (macs, rest) = f.split_at_mut(12);
        macs.copy_from_slice(&v.rewrite);
        if V6 {
            // Checked above 1; IPv6 has no header checksum.
            rest[HOP_LIMIT - 12] -= 1;
        } else if let Some(h) = rest.last_chunk_mut::<12>() {
            decrement_ttl_in(h);
        }
    }
    out.send(v.port, pkt);
}

/// The output port and rewrite of next hop `key`, if the worker's cache has it and its interface is a plain
/// port.
#[inline(always)]
fn cached(c: &L3Ctx<'_>, nh: &NextHopCache, key: &NeighKey) -> Option<(u16, [u8; 12])> {
    let hit = nh.get_synced(key, c.now_s, c.t.reachable_s)?;
    (hit.port != NO_PORT).then_some((hit.port, hit.rewrite))
}

/// The IPv4 checks of [`forward`], reading only.
#[inline(always)]
fn decide4(c: &L3Ctx<'_>, nh: &NextHopCache, ingress: Ingress, pkt: &Pkt) -> Option<Verdict> {
    let iface = pkt.meta().scratch[SCRATCH_IFACE];
    let mac = if iface == ingress.iface {
        ingress.mac
    } else {
        mac48(&c.t.ifaces.get(iface as usize)?.mac)
    };
    let d = pkt.data();
    let f = d.first_chunk::<{ ETH_LEN + 20 }>()?;
    // IPv4 with a 20-byte header, to this interface's MAC.
    let (eth_dst, et) = (f.first_chunk::<8>()?, f[12..].first_chunk::<4>()?);
    if u32::from_le_bytes(*et) & 0xff_ffff != IPV4_IHL5
        || u64::from_le_bytes(*eth_dst) & MAC48 != mac
    {
        return None;
    }
    let h = f.last_chunk::<20>()?;
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total < 20 || total > d.len() - ETH_LEN || !header20_ok(h) {
        return None;
    }
    let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    // TTL 1 and 0 get time exceeded, from the general path.
    if martian_src(src) || unroutable_dst(dst) || h[8] <= 1 {
        return None;
    }
    let (oif, via, attached) =
        match resolve_adj_within(c.t, c.t.fib4.lookup(dst)?, pkt, ETH_LEN + total)? {
            Adjacency::Gateway { iface, via } => (iface, via as u32, false),
            Adjacency::Attached { iface } => (iface, dst, true),
            _ => return None,
        };
    let o = c.t.ifaces.get(oif as usize)?;
    if (attached && directed_broadcast(o, dst)) || total > o.mtu as usize {
        return None;
    }
    let (port, rewrite) = cached(c, nh, &NeighKey::v4(oif, via))?;
    Some(Verdict {
        port,
        rewrite,
        frame_len: ETH_LEN + total,
    })
}

/// The IPv6 checks of [`forward`], reading only. ICMPv6 (Neighbor Discovery among it) takes the general path.
#[inline(always)]
fn decide6(c: &L3Ctx<'_>, nh: &NextHopCache, pkt: &Pkt) -> Option<Verdict> {
    let ifc = c.t.ifaces.get(pkt.meta().scratch[SCRATCH_IFACE] as usize)?;
    let d = pkt.data();
    let f = d.first_chunk::<{ ETH_LEN + 40 }>()?;
    // IPv6, unicast to this interface's MAC, not ICMPv6, hop limit above 1 (else time exceeded).
    if f[12..14] != [0x86, 0xdd]
        || f[14] >> 4 != 6
        || f[0] & 1 != 0
        || f[..6] != ifc.mac
        || f[20] == crate::wire::IPPROTO_ICMPV6
        || f[21] <= 1
    {
        return None;
    }
    let plen = u16::from_be_bytes([f[18], f[19]]) as usize;
    if 40 + plen > d.len() - ETH_LEN {
        return None;
    }
    let (Some(sa), Some(da)) = (f[22..].first_chunk::<16>(), f[38..].first_chunk::<16>()) else {
        return None;
    };
    // The addresses as numbers: each check below is a compare or two, where `Ipv6Addr`'s take its segments.
    let (src, dst) = (u128::from_be_bytes(*sa), u128::from_be_bytes(*da));
    // Martians, multicast, link-local either way (never forwarded), and the router's own addresses. A
    // destination of at most 1 is the unspecified or the loopback address.
    if v6_multicast(src)
        || src == 1
        || v6_link_local(src)
        || dst <= 1
        || v6_multicast(dst)
        || v6_link_local(dst)
        || ifc.has_v6(&Ipv6Addr::from(dst))
    {
        return None;
    }
    let (oif, via) = match resolve_adj_within(c.t, c.t.fib6.lookup(da)?, pkt, ETH_LEN + 40 + plen)?
    {
        Adjacency::Gateway { iface, via } => (iface, via),
        Adjacency::Attached { iface } => (iface, dst),
        _ => return None,
    };
    let o = c.t.ifaces.get(oif as usize)?;
    if 40 + plen > o.mtu as usize {
        return None;
    }
    let (port, rewrite) = cached(
        c,
        nh,
        &NeighKey {
            iface: oif,
            ip: via,
        },
    )?;
    Some(Verdict {
        port,
        rewrite,
        frame_len: ETH_LEN + 40 + plen,
    })
}

#[cfg(test)]
mod tests {
    //! The fast path against the general one: whatever IPv4 or IPv6 frame the fast path forwards, the general
    //! path forwards the same way (same port, same bytes, no drop); whatever it declines, it leaves untouched.

    use super::super::neigh::NeighTable;
    use super::super::{input, Attach, Interface, L3State, L3Tables};
    use super::*;
    use crate::bridge::Egress;
    use crate::fib::lpm4::Lpm4;
    use crate::fib::lpm6::Lpm6;
    use crate::vxlan::VxlanTables;
    use dataplane::{DropReason, Event, Pool, WorkerCounters};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    const R0: [u8; 6] = [2, 0xaa, 0, 0, 0, 0];
    const R1: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
    const R2: [u8; 6] = [2, 0xaa, 0, 0, 0, 2];
    const H0: [u8; 6] = [2, 0xbb, 0, 0, 0, 2];
    /// The clock: at second 1000, so that a neighbour learned at second 900 is stale (reachable 30 s).
    const NOW_NS: u64 = 1000 * 1_000_000_000;

    fn v6(a: &str) -> Ipv6Addr {
        a.parse().unwrap()
    }

    fn iface(mac: [u8; 6], attach: Attach, a: [u8; 4], mtu: u16) -> Interface {
        Interface {
            name: "i".into(),
            mac,
            attach,
            mtu,
            v4: vec![(Ipv4Addr::from(a), 24)],
            v6: vec![(v6(&format!("fd0{}::1", a[1])), 64)],
            link_local: super::super::link_local_of(&mac),
            proxy_arp: false,
        }
    }

    fn port(port: u16) -> Attach {
        Attach::Port {
            port,
            egress: Egress::Untagged,
        }
    }

    fn gw(iface: u16, a: [u8; 4]) -> Adjacency {
        Adjacency::Gateway {
            iface,
            via: 0xffff_0000_0000 | u32::from_be_bytes(a) as u128,
        }
    }

    fn gw6(iface: u16, a: &str) -> Adjacency {
        Adjacency::Gateway {
            iface,
            via: u128::from(v6(a)),
        }
    }

    /// Interfaces 0 (10.0.0.1/24 and fd00::1/64, port 0), 1 (10.1.0.1/24 and fd01::1/64, port 1, MTU 1000),
    /// 2 (10.2.0.1/24 and fd02::1/64, a bridge gateway: not a plain port) and 3 (10.3.0.1/24 and fd03::1/64,
    /// port 2, VLAN-tagged); in each family a gateway route, an ECMP group, a blackhole, an unreachable route;
    /// static neighbours behind 0, 1, 2 and 3, and one on 0 last confirmed long ago.
    fn tables() -> L3Tables {
        let ifaces = vec![
            iface(R0, port(0), [10, 0, 0, 1], 1500),
            iface(R1, port(1), [10, 1, 0, 1], 1000),
            iface(R2, Attach::Bridge { domain: 0 }, [10, 2, 0, 1], 1500),
            iface(
                R0,
                Attach::Port {
                    port: 2,
                    egress: Egress::Tagged(7),
                },
                [10, 3, 0, 1],
                1500,
            ),
        ];
        let adj = vec![
            Adjacency::Local,
            Adjacency::Attached { iface: 0 },
            Adjacency::Attached { iface: 1 },
            Adjacency::Attached { iface: 2 },
            Adjacency::Attached { iface: 3 },
            gw(1, [10, 1, 0, 254]),
            Adjacency::Ecmp { first: 0, count: 2 },
            Adjacency::Blackhole,
            Adjacency::Unreachable,
            gw(0, [10, 0, 0, 99]),
            gw(1, [10, 1, 0, 10]),
            gw(0, [10, 0, 0, 11]),
            gw6(1, "fd01::fe"),
            Adjacency::Ecmp { first: 2, count: 2 },
            gw6(1, "fd01::10"),
            gw6(0, "fd00::11"),
            gw6(0, "fd00::99"),
        ];
        let p = |a: [u8; 4]| Ipv4Addr::from(a);
        let routes = vec![
            (p([10, 0, 0, 0]), 24, 1),
            (p([10, 1, 0, 0]), 24, 2),
            (p([10, 2, 0, 0]), 24, 3),
            (p([10, 3, 0, 0]), 24, 4),
            (p([10, 0, 0, 1]), 32, 0),
            (p([10, 1, 0, 1]), 32, 0),
            (p([192, 168, 0, 0]), 16, 5),
            (p([172, 16, 0, 0]), 12, 6),
            (p([198, 51, 100, 0]), 24, 7),
            (p([203, 0, 113, 0]), 24, 8),
            (p([100, 64, 0, 0]), 10, 9),
        ];
        let mut routes6 = vec![
            (v6("fd00::"), 64, 1),
            (v6("fd01::"), 64, 2),
            (v6("fd02::"), 64, 3),
            (v6("fd03::"), 64, 4),
            (v6("fd00::1"), 128, 0),
            (v6("fd01::1"), 128, 0),
            (v6("2001:db8:1::"), 48, 12),
            (v6("2001:db8:e::"), 48, 13),
            (v6("2001:db8:dead::"), 48, 7),
            (v6("2001:db8:bad::"), 48, 8),
            (v6("2001:db8:99::"), 48, 16),
        ];
        routes6.extend(ifaces.iter().map(|i| (i.link_local, 128, 0)));
        let neigh = NeighTable::new(64);
        let n4 = |i: u16, a: [u8; 4]| NeighKey::v4(i, u32::from_be_bytes(a));
        for (k, last) in [
            (n4(0, [10, 0, 0, 2]), 2),
            (n4(1, [10, 1, 0, 5]), 5),
            (n4(1, [10, 1, 0, 254]), 0xfe),
            (n4(1, [10, 1, 0, 10]), 10),
            (n4(0, [10, 0, 0, 11]), 11),
            (n4(2, [10, 2, 0, 5]), 0x25),
            (n4(3, [10, 3, 0, 5]), 0x35),
        ] {
            assert!(neigh.set_static(&k, &[2, 0xcc, 0, 0, 0, last]));
        }
        let n6 = |i: u16, a: &str| NeighKey::v6(i, v6(a).octets());
        for (k, last) in [
            (n6(0, "fd00::2"), 2),
            (n6(1, "fd01::5"), 5),
            (n6(1, "fd01::fe"), 0xfe),
            (n6(1, "fd01::10"), 10),
            (n6(0, "fd00::11"), 11),
            (n6(2, "fd02::5"), 0x25),
            (n6(3, "fd03::5"), 0x35),
        ] {
            assert!(neigh.set_static(&k, &[2, 0xdd, 0, 0, 0, last]));
        }
        // Learned at second 900: stale at 1000, so the general path asks again while it sends.
        neigh.learn(&n4(0, [10, 0, 0, 99]), &[2, 0xcc, 0, 0, 0, 0x99], 900);
        neigh.learn(&n6(0, "fd00::99"), &[2, 0xdd, 0, 0, 0, 0x99], 900);
        L3Tables {
            ifaces,
            fib4: Arc::new(Lpm4::build(routes, 16).unwrap()),
            fib6: Arc::new(Lpm6::build(routes6, 64).unwrap()),
            adj,
            ecmp: vec![10, 11, 14, 15],
            neigh: Arc::new(neigh),
            ..L3Tables::default()
        }
    }

    /// The destinations the base frames go to: attached hosts, a gateway route, ECMP, a bridge-attached host,
    /// a tagged interface's host, a stale neighbour's route, the router itself, a blackhole, an unreachable
    /// route, no route, a directed broadcast, an unresolved host.
    const DESTS: [[u8; 4]; 13] = [
        [10, 1, 0, 5],
        [10, 0, 0, 2],
        [192, 168, 7, 9],
        [172, 17, 1, 2],
        [10, 2, 0, 5],
        [10, 3, 0, 5],
        [100, 64, 1, 1],
        [10, 1, 0, 1],
        [198, 51, 100, 3],
        [203, 0, 113, 3],
        [8, 8, 8, 8],
        [10, 1, 0, 255],
        [10, 1, 0, 77],
    ];

    /// The IPv6 destinations, case for case with [`DESTS`] (a link-local destination where IPv4 has a directed
    /// broadcast).
    const DESTS6: [&str; 13] = [
        "fd01::5",
        "fd00::2",
        "2001:db8:1::9",
        "2001:db8:e::2",
        "fd02::5",
        "fd03::5",
        "2001:db8:99::1",
        "fd01::1",
        "2001:db8:dead::3",
        "2001:db8:bad::3",
        "2001:4860::8888",
        "fe80::5",
        "fd01::77",
    ];

    /// A UDP frame from H0 on interface 0 (10.0.0.2, fd00::2) or from the host on interface 1 (10.1.0.5,
    /// fd01::5) to destination `dst` of [`DESTS`] or [`DESTS6`], built by etherparse.
    fn frame(is6: bool, from_1: bool, dst: usize, ttl: u8, payload: usize) -> Vec<u8> {
        let (smac, dmac) = if from_1 {
            ([2, 0xcc, 0, 0, 0, 5], R1)
        } else {
            (H0, R0)
        };
        let b = etherparse::PacketBuilder::ethernet2(smac, dmac);
        let b = if is6 {
            let src = v6(if from_1 { "fd01::5" } else { "fd00::2" }).octets();
            b.ipv6(src, v6(DESTS6[dst]).octets(), ttl)
        } else {
            let src = if from_1 { [10, 1, 0, 5] } else { [10, 0, 0, 2] };
            b.ipv4(src, DESTS[dst], ttl)
        }
        .udp(4000, 53);
        let body = vec![0x5a; payload];
        let mut v = Vec::new();
        b.write(&mut v, &body).unwrap();
        v
    }

    /// Recomputes the IPv4 header checksum of a frame whose header is 20 bytes long (a mutated frame whose
    /// checksum still verifies reaches the checks after it).
    fn fix_checksum(f: &mut [u8]) {
        if f.len() < ETH_LEN + 20 {
            return;
        }
        f[24] = 0;
        f[25] = 0;
        let c = crate::wire::checksum::checksum(&f[ETH_LEN..ETH_LEN + 20]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }

    struct Side {
        st: L3State,
        out: TxBatches,
        counters: Arc<WorkerCounters>,
    }

    fn side() -> Side {
        let (out, counters) = TxBatches::for_test(3);
        Side {
            st: L3State::default(),
            out,
            counters,
        }
    }

    fn pkt(pool: &Pool, f: &[u8], iface: u16) -> Pkt {
        let mut p = pool.alloc().expect("pool has room");
        assert!(p.set_frame(f));
        p.meta_mut().scratch[SCRATCH_IFACE] = u32::from(iface);
        p
    }

    fn sent(out: &mut TxBatches) -> Vec<(u16, Vec<u8>)> {
        (0..3u16)
            .flat_map(|port| {
                out.take(port)
                    .into_iter()
                    .map(move |p| (port, p.data().to_vec()))
            })
            .collect()
    }

    fn drops(c: &WorkerCounters) -> u64 {
        c.drops.total()
    }

    /// The case a proptest run draws: base frame, then mutations.
    #[derive(Debug, Clone)]
    struct Case {
        /// IPv6, else IPv4.
        v6: bool,
        from_1: bool,
        dst: usize,
        ttl: u8,
        payload: usize,
        /// A byte of the Ethernet or IP header overwritten, if the frame has it: (offset, value).
        poke: Option<(usize, u8)>,
        /// Recompute the IPv4 header checksum after the poke.
        fix: bool,
        /// Cut the frame to this length.
        cut: Option<usize>,
        /// Ethernet padding appended.
        pad: usize,
        /// The burst's first packet came in on the other interface (a VLAN trunk's mix).
        other_ingress: bool,
        /// An IPv6 source that is link-local (never forwarded).
        link_local_src: bool,
    }

    impl Case {
        /// The unmutated frame: `payload` 18 bytes (a 60-byte IPv4 frame).
        fn plain(v6: bool, from_1: bool, dst: usize, ttl: u8) -> Case {
            Case {
                v6,
                from_1,
                dst,
                ttl,
                payload: 18,
                poke: None,
                fix: false,
                cut: None,
                pad: 0,
                other_ingress: false,
                link_local_src: false,
            }
        }
    }

    fn ctx<'a>(t: &'a L3Tables, vx: &'a VxlanTables) -> L3Ctx<'a> {
        L3Ctx {
            t,
            bridges: &[],
            generation: 1,
            now_ns: NOW_NS,
            now_s: (NOW_NS / 1_000_000_000) as u32,
            worker: 0,
            vxlan: vx,
        }
    }

    prop_compose! {
        fn case()(
            v6 in any::<bool>(),
            from_1 in any::<bool>(),
            dst in 0..DESTS.len(),
            ttl in prop_oneof![Just(0u8), Just(1), Just(2), Just(64), any::<u8>()],
            payload in prop_oneof![
                Just(18usize),
                Just(200),
                Just(952),
                Just(953),
                Just(972),
                Just(973),
                0..1400usize
            ],
            poke in proptest::option::weighted(0.6, (0..ETH_LEN + 40, any::<u8>())),
            fix in any::<bool>(),
            cut in proptest::option::weighted(0.1, 0..1500usize),
            pad in prop_oneof![3 => Just(0usize), 1 => 1..40usize],
            other_ingress in any::<bool>(),
            link_local_src in proptest::bool::weighted(0.1),
        ) -> Case {
            Case { v6, from_1, dst, ttl, payload, poke, fix, cut, pad, other_ingress, link_local_src }
        }
    }

    fn build(c: &Case) -> Vec<u8> {
        let mut f = frame(c.v6, c.from_1, c.dst, c.ttl, c.payload);
        if c.v6 && c.link_local_src {
            f[ETH_LEN + 8..ETH_LEN + 10].copy_from_slice(&[0xfe, 0x80]);
        }
        if let Some((at, v)) = c.poke.filter(|&(at, _)| at < f.len()) {
            f[at] = v;
            if c.fix && !c.v6 {
                fix_checksum(&mut f);
            }
        }
        if let Some(n) = c.cut {
            f.truncate(n);
        }
        f.extend(std::iter::repeat_n(0u8, c.pad));
        f
    }

    /// Runs `f` through the fast path on one side and the general path on the other; checks they agree.
    /// Returns whether the fast path took it.
    fn compare(t: &L3Tables, pool: &Pool, fast: &mut Side, general: &mut Side, c: &Case) -> bool {
        let vx = VxlanTables::default();
        let ctx = ctx(t, &vx);
        let f = build(c);
        let iface = u16::from(c.from_1);
        fast.st.nh.sync(&t.neigh, 1);
        let fast_drops = drops(&fast.counters);
        let p = pkt(pool, &f, iface);
        let ingress = if c.other_ingress {
            Ingress::of(&ctx, Some(&pkt(pool, &f, iface ^ 1)))
        } else {
            Ingress::of(&ctx, Some(&p))
        };
        let taken = match forward(&ctx, &fast.st.nh, ingress, p, &mut fast.out) {
            Ok(()) => true,
            Err(p) => {
                assert_eq!(p.data(), &f[..], "a declined frame is untouched");
                false
            }
        };
        let drops_before = drops(&general.counters);
        let routed_before = general.counters.events.get(Event::Routed);
        input(
            &ctx,
            &mut general.st,
            pkt(pool, &f, iface),
            &mut general.out,
        );
        let by_general = sent(&mut general.out);
        let by_fast = sent(&mut fast.out);
        if taken {
            assert_eq!(by_fast.len(), 1);
            assert_eq!(by_fast, by_general, "the same frame to the same port");
            assert_eq!(
                drops(&general.counters),
                drops_before,
                "the general path drops nothing"
            );
            assert_eq!(
                general.counters.events.get(Event::Routed),
                routed_before + 1
            );
        } else {
            assert!(by_fast.is_empty());
        }
        assert_eq!(
            drops(&fast.counters),
            fast_drops,
            "the fast path never drops"
        );
        taken
    }

    /// Both sides' next-hop caches filled the way traffic fills them: one packet to each destination through
    /// the general path.
    fn primed(t: &L3Tables, pool: &Pool) -> (Side, Side) {
        let (mut fast, mut general) = (side(), side());
        let vx = VxlanTables::default();
        let ctx = ctx(t, &vx);
        for from_1 in [false, true] {
            for dst in 0..DESTS.len() {
                for is6 in [false, true] {
                    let f = build(&Case::plain(is6, from_1, dst, 64));
                    for s in [&mut fast, &mut general] {
                        input(
                            &ctx,
                            &mut s.st,
                            pkt(pool, &f, u16::from(from_1)),
                            &mut s.out,
                        );
                        let _ = sent(&mut s.out);
                    }
                }
            }
        }
        (fast, general)
    }

    /// The cases both families share: attached host, gateway route and ECMP are fast (padded too); the rest
    /// of the destinations, TTL or hop limit 1, over the MTU of interface 1 and a runt are not. Returns the
    /// harness for the family's own cases.
    fn common_cases(v6: bool) -> (L3Tables, Pool, Side, Side) {
        let t = tables();
        let pool = Pool::for_test(256, 2048);
        let (mut fast, mut general) = primed(&t, &pool);
        let base = |dst: usize, ttl: u8| Case::plain(v6, false, dst, ttl);
        let mut check = |c: Case, want: bool, what: &str| {
            let got = compare(&t, &pool, &mut fast, &mut general, &c);
            assert_eq!(got, want, "{what}: {c:?}");
        };
        for dst in [0, 2, 3] {
            check(base(dst, 64), true, "attached, gateway, ECMP");
        }
        check(
            Case {
                pad: 20,
                ..base(0, 64)
            },
            true,
            "Ethernet padding is trimmed on the way",
        );
        for dst in 4..DESTS.len() {
            check(base(dst, 64), false, "not a plain forward");
        }
        check(base(0, 1), false, "TTL or hop limit 1");
        // Interface 1's MTU is 1000: an IPv4 header is 20 bytes, an IPv6 one 40, then 8 of UDP.
        let fits = if v6 { 952 } else { 972 };
        for (payload, want) in [(fits, true), (fits + 1, false)] {
            check(
                Case {
                    payload,
                    ..base(0, 64)
                },
                want,
                "the MTU",
            );
        }
        let header = if v6 { 40 } else { 20 };
        check(
            Case {
                cut: Some(ETH_LEN + header - 1),
                ..base(0, 64)
            },
            false,
            "a runt",
        );
        (t, pool, fast, general)
    }

    #[test]
    fn the_common_ipv4_cases_take_the_fast_path_and_the_rest_do_not() {
        let (t, pool, mut fast, mut general) = common_cases(false);
        let bad = Case {
            poke: Some((ETH_LEN + 10, 0)),
            ..Case::plain(false, false, 0, 64)
        };
        assert!(!compare(&t, &pool, &mut fast, &mut general, &bad));
        assert_eq!(general.counters.drops.get(DropReason::BadChecksum), 1);
    }

    #[test]
    fn the_common_ipv6_cases_take_the_fast_path_and_the_rest_do_not() {
        let (t, pool, mut fast, mut general) = common_cases(true);
        let base = Case::plain(true, false, 2, 64);
        let link_local = Case {
            link_local_src: true,
            ..base.clone()
        };
        assert!(!compare(&t, &pool, &mut fast, &mut general, &link_local));
        let icmp = Case {
            poke: Some((ETH_LEN + 6, crate::wire::IPPROTO_ICMPV6)),
            ..base
        };
        assert!(!compare(&t, &pool, &mut fast, &mut general, &icmp));
    }

    #[test]
    fn address_classes_agree_with_ipv6addr_at_the_edges() {
        for a in [
            "fe80::",
            "febf:ffff::1",
            "fec0::",
            "fe7f::",
            "ff00::",
            "feff::1",
            "ff02::1",
            "::1",
            "::",
        ] {
            let ip = v6(a);
            assert_eq!(v6_multicast(u128::from(ip)), ip.is_multicast(), "{ip}");
            assert_eq!(
                v6_link_local(u128::from(ip)),
                ip.is_unicast_link_local(),
                "{ip}"
            );
        }
    }

    proptest! {
        /// Any address, and addresses under the prefixes that matter (`ff00::/8`, `fe80::/10` and its
        /// neighbour `fec0::/10`).
        #[test]
        fn address_classes_agree_with_ipv6addr(
            r in any::<u128>(),
            top in prop::sample::select(vec![0u128, 0xff << 120, 0x3fa << 118, 0x3fb << 118]),
        ) {
            let a = if top == 0 { r } else { r >> 10 | top };
            let ip = Ipv6Addr::from(a);
            prop_assert_eq!(v6_multicast(a), ip.is_multicast());
            prop_assert_eq!(v6_link_local(a), ip.is_unicast_link_local());
        }
    }

    /// A packet to an ECMP group whose length field leaves its ports out, while its frame still holds them (as
    /// padding): the general path cuts the padding before it hashes, and the fast path hashes the same bytes.
    #[test]
    fn ecmp_hashes_the_packet_without_its_padding() {
        for v6 in [false, true] {
            let (t, pool, mut fast, mut general) = common_cases(v6);
            // Destination 3 takes an ECMP group. The length field's low byte: IPv4's total length down to the
            // bare header, IPv6's payload length to none.
            let poke = if v6 {
                (ETH_LEN + 5, 0)
            } else {
                (ETH_LEN + 3, 20)
            };
            for from_1 in [false, true] {
                let c = Case {
                    poke: Some(poke),
                    fix: true,
                    ..Case::plain(v6, from_1, 3, 64)
                };
                // The group member this packet hashes to may not be in the fast side's next-hop cache yet:
                // once through the general path, as a first packet of the flow would go.
                let vx = VxlanTables::default();
                let f = build(&c);
                input(
                    &ctx(&t, &vx),
                    &mut fast.st,
                    pkt(&pool, &f, u16::from(from_1)),
                    &mut fast.out,
                );
                let _ = sent(&mut fast.out);
                assert!(
                    compare(&t, &pool, &mut fast, &mut general, &c),
                    "taken: {c:?}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn the_fast_path_forwards_only_what_the_general_path_forwards_the_same_way(
            cases in proptest::collection::vec(case(), 1..16)
        ) {
            let t = tables();
            let pool = Pool::for_test(512, 2048);
            let (mut fast, mut general) = primed(&t, &pool);
            for c in &cases {
                compare(&t, &pool, &mut fast, &mut general, c);
            }
        }
    }
}
