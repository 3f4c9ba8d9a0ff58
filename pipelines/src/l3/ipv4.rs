//! IPv4 input: validation, local delivery, forwarding.

use super::{icmp, resolve_adj, to_neighbor, Adjacency, Interface, L3Ctx, L3State, ETH_LEN};
use crate::l3::neigh::NeighKey;
use crate::wire::checksum::header20_ok;
use crate::wire::ipv4::{decrement_ttl_in, Ipv4Error, Ipv4Packet};
use crate::wire::IPPROTO_ICMP;
use crate::wire::IPPROTO_UDP;
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Pkt};

/// Maps a header error to its drop reason.
fn reason(e: Ipv4Error) -> DropReason {
    match e {
        Ipv4Error::Truncated | Ipv4Error::BadTotalLen => DropReason::Truncated,
        Ipv4Error::BadVersion | Ipv4Error::BadHeaderLen => DropReason::BadIpHeader,
    }
}

/// By first octet: bit 0, never a packet's source; bit 1, never a routed destination. "This network" (0),
/// loopback (127) and multicast (224-239) are both; class E (240-255) is the second. One load per address
/// instead of a chain of compares.
const BAD_FIRST_OCTET: [u8; 256] = {
    let mut t = [0u8; 256];
    t[0] = 3;
    t[127] = 3;
    let mut i = 224;
    while i < 256 {
        t[i] = if i < 240 { 3 } else { 2 };
        i += 1;
    }
    t
};

/// Addresses that are never a packet's source on the wire: multicast, limited broadcast, loopback, "this
/// network" (RFC 1812 5.3.7).
#[inline]
pub(super) fn martian_src(a: u32) -> bool {
    BAD_FIRST_OCTET[(a >> 24) as usize] & 1 != 0 || a == u32::MAX
}

/// Destinations a router does not route: loopback, "this network", multicast and limited broadcast.
#[inline]
pub(super) fn unroutable_dst(a: u32) -> bool {
    BAD_FIRST_OCTET[(a >> 24) as usize] & 2 != 0
}

/// Whether `dst` is the broadcast address of one of `o`'s subnets: a directed broadcast, which a router does not
/// forward (RFC 2644) and must not try to resolve as a host.
///
/// A subnet of /30 or wider has at least two host bits, all set in its broadcast address: a destination
/// without both low bits set is none, and three in four are out before the scan (which, over the 17 addresses
/// of `wharf-perf nat-inline --sessions 1000000`'s uplink, was about 100 instructions a packet).
#[inline]
pub(super) fn directed_broadcast(o: &Interface, dst: u32) -> bool {
    dst & 3 == 3
        && o.v4.iter().any(|&(a, len)| {
            let host = u32::MAX.checked_shr(len as u32).unwrap_or(0);
            len <= 30 && dst & host == host && (dst ^ u32::from(a)) & !host == 0
        })
}

/// What [`input`] reads of a packet's IPv4 header, once: every later step (NAT, FIB, TTL and MTU checks, TTL
/// decrement) works from this and from fixed offsets of the header it validated, instead of taking another
/// checked view.
#[derive(Clone, Copy)]
struct Hdr {
    src: u32,
    dst: u32,
    /// Total length (at least the header's, at most what the frame holds).
    total: usize,
    ttl: u8,
    options: bool,
    fragment: bool,
    dont_frag: bool,
}

/// Validates the IPv4 header after the Ethernet header of `frame` (version, lengths, checksum) and reads it.
/// The common header, 20 bytes without options, is checked with fixed offsets; anything else takes the general
/// view, which gives the same verdicts.
#[inline(always)]
fn header(frame: &[u8]) -> Result<Hdr, DropReason> {
    if let Some(h) = frame
        .first_chunk::<{ ETH_LEN + 20 }>()
        .and_then(|f| f.last_chunk::<20>())
    {
        if h[0] == 0x45 {
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            if total < 20 || total > frame.len() - ETH_LEN {
                return Err(reason(Ipv4Error::BadTotalLen));
            }
            if !header20_ok(h) {
                return Err(DropReason::BadChecksum);
            }
            let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            return Ok(Hdr {
                src: be32(12),
                dst: be32(16),
                total,
                ttl: h[8],
                options: false,
                fragment: u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0,
                dont_frag: h[6] & 0x40 != 0,
            });
        }
    }
    let ip = Ipv4Packet::new_checked(frame.get(ETH_LEN..).unwrap_or(&[])).map_err(reason)?;
    if !ip.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    Ok(Hdr {
        src: u32::from_be_bytes(ip.src()),
        dst: u32::from_be_bytes(ip.dst()),
        total: ip.total_len(),
        ttl: ip.ttl(),
        options: ip.has_options(),
        fragment: ip.is_fragment(),
        dont_frag: ip.dont_frag(),
    })
}

/// Routes or delivers one IPv4 frame. `VXLAN`: the snapshot has local VTEPs (see [`super::process`]).
pub(super) fn input<const VXLAN: bool>(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    mut pkt: Pkt,
    out: &mut TxBatches,
) {
    let d = pkt.data();
    let for_us = match (c.t.ifaces.get(iface as usize), d.first_chunk::<6>()) {
        (Some(ifc), Some(dst)) => *dst == ifc.mac,
        _ => false,
    };
    if !for_us {
        // Broadcast and multicast IPv4 are not routed; unicast to another MAC is not ours.
        out.drop_pkt(pkt, DropReason::NotForUs);
        return;
    }
    let Hdr {
        src,
        dst,
        total,
        ttl,
        options,
        fragment,
        dont_frag,
    } = match header(d) {
        Ok(h) => h,
        Err(r) => {
            out.drop_pkt(pkt, r);
            return;
        }
    };
    if martian_src(src) || unroutable_dst(dst) {
        out.drop_pkt(pkt, DropReason::MartianAddress);
        return;
    }
    if options && c.t.drop_options {
        out.drop_pkt(pkt, DropReason::IpOptions);
        return;
    }
    // Ethernet padding after a short packet is not part of it.
    if pkt.len() > ETH_LEN + total {
        pkt.truncate(ETH_LEN + total);
    }
    let mut dst = dst;
    if let Some(t) = c.t.nat.as_deref() {
        if crate::nat::owner::NatConfig::is_external(t, dst) {
            let Some(p) = super::nat::before_route(c, t, st, iface, pkt, out) else {
                return;
            };
            pkt = p;
            dst = super::nat::dst_of(&pkt);
        }
    }
    // VXLAN to a local VTEP skips the FIB: a local VTEP address is always a router address (the config
    // check wants it among the underlay port's addresses, whose local /32 routes no static route, from the
    // file or at run time, may replace), and the decapsulation hands back anything else. After the NAT, as
    // the local delivery was. Compiled out (`VXLAN` false) for bursts of a snapshot without local VTEPs,
    // so plain routing does not pay for the test.
    if VXLAN && !fragment && pkt.data().get(ETH_LEN + 9) == Some(&IPPROTO_UDP) {
        match crate::vxlan::decap::input(c, &mut st.decap, pkt, out) {
            Some(p) => pkt = p,
            None => return,
        }
    }
    let Some(nh) = c.t.fib4.lookup(dst) else {
        icmp::unreachable4(
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
    let (oif, via, attached) = match resolve_adj(c.t, nh, &pkt) {
        Some(Adjacency::Local) => {
            local(c, st, iface, pkt, fragment, out);
            return;
        }
        Some(Adjacency::Attached { iface: o }) => (o, dst, true),
        Some(Adjacency::Gateway { iface: o, via }) => (o, via as u32, false),
        Some(Adjacency::Blackhole) => {
            out.drop_pkt(pkt, DropReason::NoRoute);
            return;
        }
        Some(Adjacency::Unreachable) | Some(Adjacency::Ecmp { .. }) | None => {
            icmp::unreachable4(
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
    if attached && directed_broadcast(o, dst) {
        out.drop_pkt(pkt, DropReason::MartianAddress);
        return;
    }
    // The NAT's translation before the lookup keeps the TTL, the flags and the header's length.
    if ttl <= 1 {
        icmp::time_exceeded4(c, st, iface, pkt, out);
        return;
    }
    if total > o.mtu as usize {
        if dont_frag {
            let mtu = o.mtu;
            icmp::frag_needed4(c, st, iface, pkt, mtu, out);
        } else {
            // Fragmentation is not done on the fast path: counted, never truncated.
            out.drop_pkt(pkt, DropReason::MtuExceeded);
        }
        return;
    }
    if let Some(t) = c.t.nat.as_deref() {
        if oif == t.outside && iface != t.outside {
            // After the TTL and MTU checks (ICMP errors quote what the sender sent) and before the TTL is
            // decremented (a packet handed to another worker is routed again there).
            let Some(p) = super::nat::after_route(c, t, st, iface, pkt, out) else {
                return;
            };
            pkt = p;
        }
    }
    if let Some(h) = pkt
        .data_mut()
        .first_chunk_mut::<{ ETH_LEN + 12 }>()
        .and_then(|f| f.last_chunk_mut::<12>())
    {
        decrement_ttl_in(h);
    }
    to_neighbor(c, st, NeighKey::v4(oif, via), pkt, out);
}

/// A packet for one of the router's addresses: ICMP and UDP are answered here, the rest goes to the host stack.
fn local(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    pkt: Pkt,
    fragment: bool,
    out: &mut TxBatches,
) {
    if fragment {
        out.drop_pkt(pkt, DropReason::Fragment);
        return;
    }
    let proto = pkt.data()[ETH_LEN + 9];
    match proto {
        IPPROTO_ICMP => icmp::echo4(c, iface, pkt, out),
        IPPROTO_UDP => {
            // VXLAN to a local VTEP was taken before the FIB (see `input`); other UDP has no listener here.
            icmp::unreachable4(
                c,
                st,
                iface,
                pkt,
                icmp::Unreach::Port,
                DropReason::LocalPortUnreachable,
                out,
            )
        }
        _ => super::host::deliver(c, pkt, out),
    }
}

#[cfg(test)]
mod tests {
    use super::{martian_src, unroutable_dst};
    use std::net::Ipv4Addr;

    #[test]
    fn martian_sources_and_unroutable_destinations_match_std_classes() {
        for top in 0..=255u32 {
            for low in [0u32, 1, 0x00ab_cdef, 0x00ff_fffe, 0x00ff_ffff] {
                let a = (top << 24) | low;
                let ip = Ipv4Addr::from(a);
                let this_net = ip.octets()[0] == 0;
                let src = this_net || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast();
                let dst =
                    this_net || ip.is_loopback() || ip.is_multicast() || ip.octets()[0] >= 240;
                assert_eq!(martian_src(a), src, "source {ip}");
                assert_eq!(unroutable_dst(a), dst, "destination {ip}");
            }
        }
    }
}
