//! VXLAN decapsulation: UDP packets for a local VTEP become frames of an overlay bridge domain.
//!
//! The L3 stage calls [`input`] for every UDP packet to one of the router's addresses, after it has checked
//! the outer Ethernet and IPv4 headers (checksum, lengths, not a fragment) and before it answers "port
//! unreachable". Anything that is not for a local VTEP address and VXLAN port is handed back untouched. What
//! is, is ours to the end: every fault is a counted drop.
//!
//! - a UDP header whose length is wrong, a VXLAN header cut short, or an inner frame shorter than an
//!   Ethernet header: `vxlan_malformed`;
//! - a non-zero UDP checksum that does not verify: `bad_checksum` (zero is allowed over IPv4, and is what
//!   RFC 7348 senders, Linux included, send by default);
//! - the I flag clear: `vxlan_bad_flags` (the other flag and reserved bits are ignored, as RFC 7348 says);
//! - a VNI no overlay serves on that UDP port: `vxlan_unknown_vni`.
//!
//! The outer headers are then stripped (the frame is not moved: the data offset advances), the outer source
//! becomes a remote VTEP (interned in the [`super::fdb::VtepTable`]), and the inner frame is switched by the
//! domain's bridge with that VTEP's virtual port as its input port: its source MAC is learned against the
//! VTEP, and split horizon keeps it out of the other VTEPs.

use super::{is_vtep_port, vtep_port};
use crate::l3::L3Ctx;
use crate::wire::vxlan::{UdpPacket, VxlanPacket, HEADER_LEN, UDP_HEADER_LEN};
use crate::wire::ETH_HEADER_LEN;
use dataplane::pkt::Meta;
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Event, Pkt};

/// Takes `pkt` (a whole frame: Ethernet, a checked IPv4 header without fragmentation, UDP) if it is VXLAN for
/// a local VTEP, and returns it otherwise.
#[inline]
pub fn input(c: &L3Ctx<'_>, pkt: Pkt, out: &mut TxBatches) -> Option<Pkt> {
    if c.vxlan.local.is_empty() || pkt.meta().flags & Meta::FLAG_DECAPPED != 0 {
        return Some(pkt);
    }
    let d = pkt.data();
    let Some(ip) = d.get(ETH_HEADER_LEN..) else {
        return Some(pkt);
    };
    let ihl = match ip.first() {
        Some(v) => (*v & 0x0f) as usize * 4,
        None => return Some(pkt),
    };
    let (Some(src), Some(dst), Some(l4)) = (ip.get(12..16), ip.get(16..20), ip.get(ihl..)) else {
        return Some(pkt);
    };
    let (src, dst): ([u8; 4], [u8; 4]) = match (src.try_into(), dst.try_into()) {
        (Ok(s), Ok(d)) => (s, d),
        _ => return Some(pkt),
    };
    let Some(port) = l4.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]])) else {
        return Some(pkt);
    };
    if !c.vxlan.is_local(dst, port) {
        return Some(pkt);
    }
    let udp = match UdpPacket::new_checked(l4) {
        Ok(u) => u,
        Err(_) => {
            out.drop_pkt(pkt, DropReason::VxlanMalformed);
            return None;
        }
    };
    if !udp.verify_checksum_v4(src, dst) {
        out.drop_pkt(pkt, DropReason::BadChecksum);
        return None;
    }
    let (vni, inner_len) = match VxlanPacket::new_checked(udp.payload()) {
        Ok(v) => (v.vni(), v.inner().len()),
        Err(e) => {
            out.drop_pkt(pkt, e.drop_reason());
            return None;
        }
    };
    let Some(bd) = c
        .vxlan
        .domain_of(vni)
        .and_then(|i| c.bridges.get(i as usize))
        .filter(|b| b.overlay.as_ref().is_some_and(|o| o.udp_port == port))
    else {
        out.drop_pkt(pkt, DropReason::VxlanUnknownVni);
        return None;
    };
    let Some(vtep) = c.vxlan.vteps.intern(src).map(vtep_port) else {
        out.drop_pkt(pkt, DropReason::VxlanNoVtep);
        return None;
    };
    debug_assert!(is_vtep_port(vtep));
    let strip = ETH_HEADER_LEN + ihl + UDP_HEADER_LEN + HEADER_LEN;
    let mut pkt = pkt;
    if !pkt.strip_front(strip) {
        out.drop_pkt(pkt, DropReason::VxlanMalformed);
        return None;
    }
    pkt.truncate(inner_len);
    {
        let m = pkt.meta_mut();
        m.flags |= Meta::FLAG_DECAPPED;
        m.flow_hash = 0;
        m.l3_off = 0;
        m.l4_off = 0;
    }
    out.count_event(Event::VxlanDecap, 1);
    let now_s = c.now_s;
    if let Some(p) = bd.forward(pkt, vtep, now_s, out) {
        // An overlay has no gateway on this side (the router is not an endpoint of it).
        out.drop_pkt(p, DropReason::NoLocalStack);
    }
    None
}
