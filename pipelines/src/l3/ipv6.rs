//! IPv6 input: validation, Neighbor Discovery, local delivery, forwarding.

use super::{icmp, nd, resolve_adj, to_neighbor, Adjacency, L3Ctx, L3State, ETH_LEN};
use crate::l3::neigh::NeighKey;
use crate::wire::ipv6::{Ipv6Error, Ipv6Packet};
use crate::wire::{IPPROTO_ICMPV6, IPPROTO_UDP};
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Pkt};
use std::net::Ipv6Addr;

fn reason(e: Ipv6Error) -> DropReason {
    match e {
        Ipv6Error::Truncated | Ipv6Error::BadPayloadLen => DropReason::Truncated,
        Ipv6Error::BadVersion => DropReason::BadIpHeader,
    }
}

/// IPv6 Fragment extension header.
const IPPROTO_FRAGMENT: u8 = 44;

/// ICMPv6 types of Neighbor Solicitation and Advertisement.
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;

pub(super) fn input(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    mut pkt: Pkt,
    out: &mut TxBatches,
) {
    let ifc = &c.t.ifaces[iface as usize];
    let d = pkt.data();
    let multicast_frame = d[0] & 1 == 1;
    if !multicast_frame && d[0..6] != ifc.mac {
        out.drop_pkt(pkt, DropReason::NotForUs);
        return;
    }
    let (src, dst, next, plen, hops) = match Ipv6Packet::new_checked(&d[ETH_LEN..]) {
        Ok(ip) => (
            Ipv6Addr::from(ip.src()),
            Ipv6Addr::from(ip.dst()),
            ip.next_header(),
            ip.payload_len(),
            ip.hop_limit(),
        ),
        Err(e) => {
            out.drop_pkt(pkt, reason(e));
            return;
        }
    };
    if pkt.len() > ETH_LEN + 40 + plen {
        pkt.truncate(ETH_LEN + 40 + plen);
    }
    // Neighbor Discovery comes to multicast or to us; it is handled before anything else.
    if next == IPPROTO_ICMPV6 {
        if let Some(&t) = pkt.data().get(ETH_LEN + 40) {
            if t == ND_NS || t == ND_NA {
                nd::input(c, iface, pkt, hops, out);
                return;
            }
        }
    }
    if src.is_multicast() || src.is_loopback() || dst.is_loopback() || dst.is_unspecified() {
        out.drop_pkt(pkt, DropReason::MartianAddress);
        return;
    }
    if dst.is_multicast() || multicast_frame {
        // Router Solicitations, MLD and the like: the router takes part in none of them yet.
        super::ignore(c, iface, pkt, DropReason::NotForUs, out);
        return;
    }
    if ifc.has_v6(&dst) {
        local(c, st, iface, pkt, next, out);
        return;
    }
    if dst.is_unicast_link_local() {
        // Another interface's link-local address is not on this link; others' are not routed.
        out.drop_pkt(pkt, DropReason::MartianAddress);
        return;
    }
    let adj =
        c.t.fib6
            .lookup(&dst.octets())
            .map(|nh| resolve_adj(c.t, nh, &pkt));
    if adj == Some(Some(Adjacency::Local)) {
        // Any of the router's addresses, whatever the source's scope: delivering is not forwarding.
        local(c, st, iface, pkt, next, out);
        return;
    }
    if src.is_unicast_link_local() {
        // Link-local packets are never forwarded (RFC 4291 2.5.6).
        out.drop_pkt(pkt, DropReason::MartianAddress);
        return;
    }
    let Some(adj) = adj else {
        icmp::unreachable6(
            c,
            st,
            iface,
            pkt,
            icmp::Unreach::Net,
            DropReason::NoRoute,
            out,
        );
        return;
    };
    let (oif, via) = match adj {
        Some(Adjacency::Local) => {
            local(c, st, iface, pkt, next, out);
            return;
        }
        Some(Adjacency::Attached { iface: o }) => (o, u128::from(dst)),
        Some(Adjacency::Gateway { iface: o, via }) => (o, via),
        Some(Adjacency::Blackhole) => {
            out.drop_pkt(pkt, DropReason::NoRoute);
            return;
        }
        Some(Adjacency::Unreachable) | Some(Adjacency::Ecmp { .. }) | None => {
            icmp::unreachable6(
                c,
                st,
                iface,
                pkt,
                icmp::Unreach::Host,
                DropReason::NoRoute,
                out,
            );
            return;
        }
    };
    let Some(o) = c.t.ifaces.get(oif as usize) else {
        out.drop_pkt(pkt, DropReason::NoPort);
        return;
    };
    if hops <= 1 {
        icmp::time_exceeded6(c, st, iface, pkt, out);
        return;
    }
    if 40 + plen > o.mtu as usize {
        let mtu = o.mtu;
        icmp::too_big6(c, st, iface, pkt, mtu, out);
        return;
    }
    if let Ok(mut ip) = Ipv6Packet::new_checked(&mut pkt.data_mut()[ETH_LEN..]) {
        ip.set_hop_limit(hops - 1);
    }
    to_neighbor(
        c,
        st,
        NeighKey {
            iface: oif,
            ip: via,
        },
        pkt,
        out,
    );
}

/// A packet for one of the router's addresses: ICMPv6 and UDP are answered here, fragments dropped (the router
/// does not reassemble), the rest goes to the host stack.
fn local(c: &L3Ctx<'_>, st: &mut L3State, iface: u16, pkt: Pkt, next: u8, out: &mut TxBatches) {
    match next {
        IPPROTO_FRAGMENT => out.drop_pkt(pkt, DropReason::Fragment),
        IPPROTO_ICMPV6 => icmp::echo6(c, iface, pkt, out),
        IPPROTO_UDP => icmp::unreachable6(
            c,
            st,
            iface,
            pkt,
            icmp::Unreach::Port,
            DropReason::LocalPortUnreachable,
            out,
        ),
        _ => super::host::deliver(c, pkt, out),
    }
}
