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
//! The common packet (outer IPv4 without options, the whole 50-byte outer stack in the frame) is read at fixed
//! offsets from one fixed-size view; anything else takes the general views, which give the same verdicts.
//! Recent senders' VTEP indices are remembered per worker ([`DecapState`], a few slots by address): packets
//! come from a few tunnels at a time, and an address keeps its index for the life of the VTEP table.
//!
//! The outer headers are then stripped (the frame is not moved: the data offset advances), the outer source
//! becomes a remote VTEP (interned in the [`super::fdb::VtepTable`]), and the inner frame is switched by the
//! domain's bridge with that VTEP's virtual port as its input port: its source MAC is learned against the
//! VTEP, and split horizon keeps it out of the other VTEPs.

use super::{is_vtep_port, vtep_port};
use crate::l3::L3Ctx;
use crate::wire::vxlan::{UdpPacket, VxlanPacket, FLAG_I, HEADER_LEN, OVERHEAD, UDP_HEADER_LEN};
use crate::wire::ETH_HEADER_LEN;
use dataplane::pkt::Meta;
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Event, Pkt};

/// Senders a worker remembers, direct-mapped by the last byte of their address (VTEPs of one underlay subnet
/// differ there first).
const SENDER_SLOTS: usize = 16;

/// A worker's decapsulation state: the VTEPs of recent senders, so that packets from a few VTEPs, in a row or
/// interleaved, intern each address once.
#[derive(Debug, Default)]
pub struct DecapState {
    /// The snapshot generation the slots were filled under (0: nothing yet); another snapshot may hold another
    /// VTEP table.
    generation: u64,
    /// A sender's address and its virtual port (0: empty; VTEP ports are never 0).
    slots: [([u8; 4], u16); SENDER_SLOTS],
}

impl DecapState {
    /// The virtual port of VTEP `src`, registering it if new.
    #[inline(always)]
    fn vtep(&mut self, c: &L3Ctx<'_>, src: [u8; 4]) -> Option<u16> {
        if self.generation != c.generation {
            self.generation = c.generation;
            self.slots = Default::default();
        }
        let slot = &mut self.slots[src[3] as usize % SENDER_SLOTS];
        if slot.1 != 0 && slot.0 == src && c.generation != 0 {
            return Some(slot.1);
        }
        let port = c.vxlan.vteps.intern(src).map(vtep_port)?;
        *slot = (src, port);
        Some(port)
    }
}

/// What the outer headers say.
enum Parsed {
    /// Not UDP to a local VTEP's port: not ours.
    NotOurs,
    /// Ours but broken: dropped for this reason.
    Bad(DropReason),
    /// A VXLAN packet to take.
    Vxlan {
        src: [u8; 4],
        port: u16,
        vni: u32,
        /// Bytes in front of the inner frame.
        strip: usize,
        /// The inner frame's length (up to the UDP length).
        inner_len: usize,
    },
}

/// Reads the outer headers of `d` (a frame whose IPv4 header the L3 stage checked and whose length it
/// trimmed to the IPv4 total length).
#[inline(always)]
fn parse(c: &L3Ctx<'_>, d: &[u8]) -> Parsed {
    let Some(h) = d.first_chunk::<OVERHEAD>() else {
        return parse_general(c, d);
    };
    if h[ETH_HEADER_LEN] != 0x45 {
        return parse_general(c, d);
    }
    let be16 = |o: usize| u16::from_be_bytes([h[o], h[o + 1]]);
    let src = [h[26], h[27], h[28], h[29]];
    let dst = [h[30], h[31], h[32], h[33]];
    let port = be16(36);
    if !c.vxlan.is_local(dst, port) {
        return Parsed::NotOurs;
    }
    // The same checks, in the same order, as the views of the general path.
    let udp_len = be16(38) as usize;
    if udp_len < UDP_HEADER_LEN || udp_len > d.len() - 34 {
        return Parsed::Bad(DropReason::VxlanMalformed);
    }
    if be16(40) != 0
        && !UdpPacket::new_checked(&d[34..]).is_ok_and(|u| u.verify_checksum_v4(src, dst))
    {
        return Parsed::Bad(DropReason::BadChecksum);
    }
    let payload = udp_len - UDP_HEADER_LEN;
    if payload < HEADER_LEN {
        return Parsed::Bad(DropReason::VxlanMalformed);
    }
    if h[42] & FLAG_I == 0 {
        return Parsed::Bad(DropReason::VxlanBadFlags);
    }
    if payload < HEADER_LEN + ETH_HEADER_LEN {
        return Parsed::Bad(DropReason::VxlanMalformed);
    }
    Parsed::Vxlan {
        src,
        port,
        vni: u32::from_be_bytes([0, h[46], h[47], h[48]]),
        strip: OVERHEAD,
        inner_len: payload - HEADER_LEN,
    }
}

/// [`parse`] for any header length and frame, through the checked views.
#[inline(never)]
fn parse_general(c: &L3Ctx<'_>, d: &[u8]) -> Parsed {
    let Some(ip) = d.get(ETH_HEADER_LEN..) else {
        return Parsed::NotOurs;
    };
    let ihl = match ip.first() {
        Some(v) => (*v & 0x0f) as usize * 4,
        None => return Parsed::NotOurs,
    };
    let (Some(src), Some(dst), Some(l4)) = (ip.get(12..16), ip.get(16..20), ip.get(ihl..)) else {
        return Parsed::NotOurs;
    };
    let (src, dst): ([u8; 4], [u8; 4]) = match (src.try_into(), dst.try_into()) {
        (Ok(s), Ok(d)) => (s, d),
        _ => return Parsed::NotOurs,
    };
    let Some(port) = l4.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]])) else {
        return Parsed::NotOurs;
    };
    if !c.vxlan.is_local(dst, port) {
        return Parsed::NotOurs;
    }
    let udp = match UdpPacket::new_checked(l4) {
        Ok(u) => u,
        Err(_) => return Parsed::Bad(DropReason::VxlanMalformed),
    };
    if !udp.verify_checksum_v4(src, dst) {
        return Parsed::Bad(DropReason::BadChecksum);
    }
    match VxlanPacket::new_checked(udp.payload()) {
        Ok(v) => Parsed::Vxlan {
            src,
            port,
            vni: v.vni(),
            strip: ETH_HEADER_LEN + ihl + UDP_HEADER_LEN + HEADER_LEN,
            inner_len: v.inner().len(),
        },
        Err(e) => Parsed::Bad(e.drop_reason()),
    }
}

/// Takes `pkt` (a whole frame: Ethernet, a checked IPv4 header without fragmentation, UDP) if it is VXLAN for
/// a local VTEP, and returns it otherwise. Not inlined: the L3 stage's routing path, which it sits on, keeps
/// its registers.
#[inline(never)]
pub fn input(c: &L3Ctx<'_>, st: &mut DecapState, pkt: Pkt, out: &mut TxBatches) -> Option<Pkt> {
    if c.vxlan.local.is_empty() || pkt.meta().flags & Meta::FLAG_DECAPPED != 0 {
        return Some(pkt);
    }
    let (src, port, vni, strip, inner_len) = match parse(c, pkt.data()) {
        Parsed::NotOurs => return Some(pkt),
        Parsed::Bad(r) => {
            out.drop_pkt(pkt, r);
            return None;
        }
        Parsed::Vxlan {
            src,
            port,
            vni,
            strip,
            inner_len,
        } => (src, port, vni, strip, inner_len),
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
    let Some(vtep) = st.vtep(c, src) else {
        out.drop_pkt(pkt, DropReason::VxlanNoVtep);
        return None;
    };
    debug_assert!(is_vtep_port(vtep));
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
