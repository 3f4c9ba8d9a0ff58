//! ICMP and ICMPv6 the router originates: echo replies (in place) and errors (rate-limited), each sent back
//! out of the interface the offending packet came in on, to the MAC it came from.

use super::{emit, L3Ctx, L3State, ETH_LEN};
use crate::wire::icmpv4::{self, Icmpv4Error};
use crate::wire::icmpv6::{self, Icmpv6Error};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Event, Pkt};
use std::net::Ipv6Addr;

/// TTL and hop limit of what the router originates.
pub(super) const TTL: u8 = 64;

/// Which destination-unreachable code.
#[derive(Clone, Copy, Debug)]
pub(super) enum Unreach {
    /// No route to the network.
    Net,
    /// The route says unreachable (or the neighbour never answered).
    Host,
    /// Nothing listens on the router's port.
    Port,
}

/// The frame's source MAC, where the answer goes.
fn src_mac(pkt: &Pkt) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&pkt.data()[6..12]);
    m
}

/// Whether an error may go out now: not about a link-layer broadcast or multicast, and within the budget.
fn may_answer(c: &L3Ctx<'_>, st: &mut L3State, pkt: &Pkt, out: &mut TxBatches) -> bool {
    if pkt.data()[0] & 1 == 1 {
        return false;
    }
    if !st.icmp.take(c.t.icmp_rate, c.now_ns) {
        out.count_event(Event::IcmpRateLimited, 1);
        return false;
    }
    true
}

/// Replaces `pkt` (an IPv4 packet the router drops for `reason`) by an ICMP error about it and sends that;
/// the original is counted under `reason` either way.
fn error4(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    mut pkt: Pkt,
    kind: Icmpv4Error,
    reason: DropReason,
    out: &mut TxBatches,
) {
    let src = c.t.ifaces.get(iface as usize).and_then(|i| i.source_v4());
    // What may never be answered (errors, later fragments, ...) is refused before it takes a token.
    let refused = icmpv4::must_not_answer(&pkt.data()[ETH_LEN..]);
    let Some(src) = src.filter(|_| !refused && may_answer(c, st, &pkt, out)) else {
        out.drop_pkt(pkt, reason);
        return;
    };
    let to = src_mac(&pkt);
    out.count_drops(reason, 1);
    // Built in place: the IP and ICMP headers go into the headroom in front of the original, which becomes the
    // quote (no copy, and the quote check sees the whole original, whatever its length).
    if pkt.prepend(icmpv4::ERROR_HEADERS_LEN).is_none() {
        drop(pkt);
        return;
    }
    match icmpv4::write_error_in_place(&mut pkt.data_mut()[ETH_LEN..], kind, src, TTL) {
        Ok(len) => {
            pkt.truncate(ETH_LEN + len);
            pkt.data_mut()[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            out.count_event(Event::IcmpErrorsSent, 1);
            emit(c, iface, pkt, &to, out);
        }
        Err(_) => drop(pkt),
    }
}

/// Time exceeded (TTL 1 or 0 on a packet to forward).
pub(super) fn time_exceeded4(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    pkt: Pkt,
    out: &mut TxBatches,
) {
    error4(
        c,
        st,
        iface,
        pkt,
        Icmpv4Error::TimeExceeded,
        DropReason::TtlExceeded,
        out,
    )
}

/// Fragmentation needed (DF set, larger than the output MTU).
pub(super) fn frag_needed4(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    pkt: Pkt,
    mtu: u16,
    out: &mut TxBatches,
) {
    error4(
        c,
        st,
        iface,
        pkt,
        Icmpv4Error::FragNeeded { mtu },
        DropReason::MtuExceeded,
        out,
    )
}

/// Destination unreachable of kind `u`, the original counted under `reason`.
pub(super) fn unreachable4(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    pkt: Pkt,
    u: Unreach,
    reason: DropReason,
    out: &mut TxBatches,
) {
    let kind = match u {
        Unreach::Net => Icmpv4Error::NetUnreachable,
        Unreach::Host => Icmpv4Error::HostUnreachable,
        Unreach::Port => Icmpv4Error::PortUnreachable,
    };
    error4(c, st, iface, pkt, kind, reason, out)
}

/// Answers an echo request to a router address in place; anything else ICMP is counted as unhandled.
pub(super) fn echo4(c: &L3Ctx<'_>, iface: u16, pkt: Pkt, out: &mut TxBatches) {
    echo(c, iface, pkt, out, |ip| {
        icmpv4::echo_reply_in_place(ip, TTL).map_err(|e| match e {
            icmpv4::EchoError::Unhandled => DropReason::NoLocalStack,
            e => e.drop_reason(),
        })
    })
}

/// Turns the echo request in `pkt` into its reply with `reply` (over the IP packet) and sends it back to the
/// MAC it came from; what `reply` refuses is dropped for the reason it gives.
fn echo(
    c: &L3Ctx<'_>,
    iface: u16,
    mut pkt: Pkt,
    out: &mut TxBatches,
    reply: impl FnOnce(&mut [u8]) -> Result<usize, DropReason>,
) {
    let to = src_mac(&pkt);
    match reply(&mut pkt.data_mut()[ETH_LEN..]) {
        Ok(len) => {
            pkt.truncate(ETH_LEN + len);
            out.count_event(Event::EchoReplies, 1);
            emit(c, iface, pkt, &to, out);
        }
        Err(reason) => out.drop_pkt(pkt, reason),
    }
}

/// The IPv6 twin of [`error4`].
fn error6(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    mut pkt: Pkt,
    kind: Icmpv6Error,
    reason: DropReason,
    out: &mut TxBatches,
) {
    let Some(ifc) = c.t.ifaces.get(iface as usize) else {
        out.drop_pkt(pkt, reason);
        return;
    };
    if icmpv6::must_not_answer(&pkt.data()[ETH_LEN..], kind) || !may_answer(c, st, &pkt, out) {
        out.drop_pkt(pkt, reason);
        return;
    }
    let dst = match Ipv6Packet::new_checked(&pkt.data()[ETH_LEN..]) {
        Ok(ip) => Ipv6Addr::from(ip.src()),
        Err(_) => {
            out.drop_pkt(pkt, reason);
            return;
        }
    };
    let src = ifc.source_v6(&dst);
    let to = src_mac(&pkt);
    out.count_drops(reason, 1);
    // In place, as in `error4`.
    if pkt.prepend(icmpv6::ERROR_HEADERS_LEN).is_none() {
        drop(pkt);
        return;
    }
    match icmpv6::write_error_in_place(&mut pkt.data_mut()[ETH_LEN..], kind, src, TTL) {
        Ok(len) => {
            pkt.truncate(ETH_LEN + len);
            pkt.data_mut()[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            out.count_event(Event::IcmpErrorsSent, 1);
            emit(c, iface, pkt, &to, out);
        }
        Err(_) => drop(pkt),
    }
}

/// Time exceeded (hop limit 1 or 0 on a packet to forward).
pub(super) fn time_exceeded6(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    pkt: Pkt,
    out: &mut TxBatches,
) {
    error6(
        c,
        st,
        iface,
        pkt,
        Icmpv6Error::TimeExceeded,
        DropReason::TtlExceeded,
        out,
    )
}

/// Packet too big for the output MTU.
pub(super) fn too_big6(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    pkt: Pkt,
    mtu: u16,
    out: &mut TxBatches,
) {
    error6(
        c,
        st,
        iface,
        pkt,
        Icmpv6Error::PacketTooBig { mtu: mtu as u32 },
        DropReason::MtuExceeded,
        out,
    )
}

/// Destination unreachable of kind `u`.
pub(super) fn unreachable6(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    pkt: Pkt,
    u: Unreach,
    reason: DropReason,
    out: &mut TxBatches,
) {
    let kind = match u {
        Unreach::Net => Icmpv6Error::NoRoute,
        Unreach::Host => Icmpv6Error::AddressUnreachable,
        Unreach::Port => Icmpv6Error::PortUnreachable,
    };
    error6(c, st, iface, pkt, kind, reason, out)
}

/// Answers an ICMPv6 echo request to a router address in place.
pub(super) fn echo6(c: &L3Ctx<'_>, iface: u16, pkt: Pkt, out: &mut TxBatches) {
    echo(c, iface, pkt, out, |ip| {
        icmpv6::echo_reply_in_place(ip, TTL).map_err(|e| match e {
            icmpv6::EchoError::Unhandled => DropReason::NoLocalStack,
            e => e.drop_reason(),
        })
    })
}
