//! VXLAN encapsulation: frames the bridge staged for a remote VTEP leave as UDP packets on the underlay.
//!
//! The bridge cannot route, so it stages such frames in the worker's [`TxBatches`] (virtual port in
//! `Meta::out_port`, domain in `Meta::scratch[SCRATCH_DOMAIN]`); the snapshot runs [`run`] once the other
//! stages are done with the burst. Per frame:
//!
//! 1. the overlay MTU: an inner frame whose IP packet exceeds it is dropped (`vxlan_mtu`), so no outer
//!    packet ever exceeds the underlay MTU (the routing below checks that again);
//! 2. the outer IPv4 (checksum computed, DF as configured), UDP (source port from the inner flow hash, RFC
//!    7348 section 5, so the underlay's ECMP and RSS spread the flows; checksum zero) and VXLAN (I flag,
//!    VNI) headers are written into the headroom in front of the frame: the frame is not copied;
//! 3. the packet is routed like one the router originates ([`route_originated`]): FIB lookup of the remote
//!    VTEP, neighbour cache (ARP for the next hop, the packet waiting meanwhile), out of the underlay port.
//!
//! A burst's frames go to a few VTEPs (one on a quiet node, several interleaved on a node that talks to many),
//! so the burst remembers the VTEPs it met, in [`VTEP_SLOTS`] slots chosen by virtual port: each VTEP's
//! address, route and next hop resolved once ([`resolve_originated_v4`]) and turned into an [`OuterTemplate`]
//! that holds the whole 50-byte outer header stack, Ethernet included. A frame to that VTEP then costs one
//! fixed-size copy, four fields and an incremental checksum, and goes straight to the port's queue. Whatever
//! the resolution does not settle (no neighbour yet, ECMP, a tagged or bridged underlay, a frame over a
//! MTU) takes the general path above, which decides and counts exactly as before. The memory lasts one burst,
//! which sees one snapshot: a reload or a neighbour change is seen by the next burst.

use super::outer::{OuterTemplate, MAX_INNER};
use super::{vtep_index, SCRATCH_DOMAIN};
use crate::l3::host::{resolve_originated_v4, route_originated};
use crate::l3::{L3Ctx, L3State};
use crate::wire::vxlan::{entropy_port, write_outer, Outer, OUTER_IP_LEN, OVERHEAD};
use crate::wire::ETH_HEADER_LEN;
use dataplane::worker::TxBatches;
use dataplane::{Burst, DropReason, Event, Pkt, MAX_BURST};

/// VTEPs a burst remembers, direct-mapped by virtual port: two VTEPs share a slot only when their ports are
/// equal modulo this, and then they take turns (each re-resolved when it comes back).
pub const VTEP_SLOTS: usize = 8;

/// A worker's encapsulation state.
#[derive(Debug)]
pub struct EncapState {
    /// The staged frames being encapsulated (swapped with the staging burst, so nothing is allocated).
    pub work: Burst,
    /// The next outer IPv4 identification (only used without DF).
    pub ident: u16,
}

impl Default for EncapState {
    fn default() -> Self {
        EncapState {
            work: Burst::new(MAX_BURST),
            ident: 0,
        }
    }
}

/// Encapsulates and routes every frame staged in `out`. Packets the routing stages again (an underlay
/// route into an overlay bridge, a loop) are dropped as `no_route` when the batches are flushed.
#[inline]
pub fn run(c: &L3Ctx<'_>, l3: &mut L3State, st: &mut EncapState, out: &mut TxBatches) {
    if out.staged() == 0 {
        return;
    }
    out.swap_staged(&mut st.work);
    let mut met: [Option<Met>; VTEP_SLOTS] = [const { None }; VTEP_SLOTS];
    let mut fast = 0u64;
    for mut pkt in st.work.drain() {
        let m = pkt.meta();
        let to = (m.scratch[SCRATCH_DOMAIN], m.out_port);
        let slot = &mut met[to.1 as usize % VTEP_SLOTS];
        if slot.as_ref().is_none_or(|(k, _)| *k != to) {
            *slot = Some((to, resolve(c, l3, to.0 as usize, to.1)));
        }
        let f = slot.as_ref().and_then(|(_, f)| f.as_ref());
        let inner_len = pkt.len();
        let Some(f) = f.filter(|f| (ETH_HEADER_LEN..=f.max_inner).contains(&inner_len)) else {
            one(c, l3, &mut st.ident, pkt, out);
            continue;
        };
        let hash = match m.flow_hash {
            0 => inner_hash(pkt.data()),
            h => h,
        };
        let ident = if f.df {
            0
        } else {
            st.ident = st.ident.wrapping_add(1);
            st.ident.wrapping_sub(1)
        };
        let Some(hdr) = pkt.prepend(OVERHEAD).and_then(|h| h.first_chunk_mut()) else {
            out.drop_pkt(pkt, DropReason::TooBig);
            continue;
        };
        f.tpl.write(hdr, inner_len, entropy_port(hash), ident);
        // The outer packet's own hash (ECMP on the underlay) is not the inner frame's.
        pkt.meta_mut().flow_hash = 0;
        out.send(f.port, pkt);
        fast += 1;
    }
    if fast > 0 {
        out.count_event(Event::VxlanEncap, fast);
        out.count_event(Event::Routed, fast);
    }
}

/// A VTEP a burst met: its (domain, virtual port) and, when it resolved, its fast path.
type Met = ((u32, u16), Option<Fast>);

/// A VTEP's fast path for one burst: see the module docs.
#[derive(Clone, Copy)]
struct Fast {
    tpl: OuterTemplate,
    /// The underlay port.
    port: u16,
    /// Largest inner frame both MTUs let through (larger ones take the general path, which drops them).
    max_inner: usize,
    /// DF set: identification zero, not counted.
    df: bool,
}

/// The fast path to virtual port `port` of overlay domain `domain`, if there is one now.
#[inline(never)]
fn resolve(c: &L3Ctx<'_>, l3: &mut L3State, domain: usize, port: u16) -> Option<Fast> {
    let ov = c.bridges.get(domain)?.overlay.as_deref()?;
    let dst = c.vxlan.vteps.addr(vtep_index(port))?;
    let r = resolve_originated_v4(c, l3, u32::from_be_bytes(dst))?;
    let o = Outer {
        src: ov.local,
        dst,
        src_port: 0,
        dst_port: ov.udp_port,
        vni: ov.vni,
        ttl: ov.ttl,
        df: ov.df,
        ident: 0,
    };
    let max_inner = (ov.mtu as usize + ETH_HEADER_LEN)
        .min((r.mtu as usize).saturating_sub(OUTER_IP_LEN))
        .min(MAX_INNER);
    Some(Fast {
        tpl: OuterTemplate::new(&r.rewrite, &o),
        port: r.port,
        max_inner,
        df: ov.df,
    })
}

/// Reads 8 bytes at `off` as a little-endian word, 0 past the end.
#[inline(always)]
fn word(f: &[u8], off: usize) -> u64 {
    match f.get(off..off + 8) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    }
}

/// The inner flow's hash for the UDP source port (RFC 7348 section 5): the Ethernet addresses and type, and
/// for IPv4 the addresses and the first four bytes of the transport header (the ports) unless the packet is
/// a later fragment. A few multiplies, where the receive-side symmetric hash ([`dataplane::rss::flow_hash`])
/// parses every protocol and costs several times more; symmetry does not matter here.
#[inline]
pub fn inner_hash(f: &[u8]) -> u32 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, v: u64| {
        let p = ((h ^ v) as u128).wrapping_mul(K as u128);
        (p as u64) ^ ((p >> 64) as u64)
    };
    let mut h = mix(word(f, 0), word(f, 6));
    if f.get(12..14) == Some(&[0x08, 0x00]) && f.len() >= ETH_HEADER_LEN + 20 {
        let ihl = (f[ETH_HEADER_LEN] & 0x0f) as usize * 4;
        h = mix(h, word(f, 26));
        let later_fragment = f[20] & 0x1f != 0 || f[21] != 0;
        if !later_fragment {
            if let Some(p) = f.get(ETH_HEADER_LEN + ihl..ETH_HEADER_LEN + ihl + 4) {
                h = mix(
                    h,
                    u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as u64 | (f[23] as u64) << 32,
                );
            }
        }
    }
    (h ^ (h >> 32)) as u32
}

/// Encapsulates one staged frame and routes it.
#[inline]
pub fn one(c: &L3Ctx<'_>, l3: &mut L3State, ident: &mut u16, mut pkt: Pkt, out: &mut TxBatches) {
    let m = pkt.meta();
    let (port, domain) = (m.out_port, m.scratch[SCRATCH_DOMAIN] as usize);
    let Some(ov) = c.bridges.get(domain).and_then(|b| b.overlay.as_deref()) else {
        out.drop_pkt(pkt, DropReason::NoRoute);
        return;
    };
    let Some(dst) = c.vxlan.vteps.addr(vtep_index(port)) else {
        out.drop_pkt(pkt, DropReason::VxlanNoVtep);
        return;
    };
    let inner_len = pkt.len();
    if inner_len < ETH_HEADER_LEN || inner_len - ETH_HEADER_LEN > ov.mtu as usize {
        out.drop_pkt(pkt, DropReason::VxlanMtu);
        return;
    }
    let hash = match m.flow_hash {
        0 => inner_hash(pkt.data()),
        h => h,
    };
    let o = Outer {
        src: ov.local,
        dst,
        src_port: entropy_port(hash),
        dst_port: ov.udp_port,
        vni: ov.vni,
        ttl: ov.ttl,
        df: ov.df,
        ident: if ov.df { 0 } else { *ident },
    };
    if !ov.df {
        *ident = ident.wrapping_add(1);
    }
    let Some(hdr) = pkt.prepend(OUTER_IP_LEN) else {
        out.drop_pkt(pkt, DropReason::TooBig);
        return;
    };
    if !write_outer(hdr, &o, inner_len) {
        out.drop_pkt(pkt, DropReason::TooBig);
        return;
    }
    // The outer packet's own hash (ECMP on the underlay) is not the inner frame's.
    pkt.meta_mut().flow_hash = 0;
    out.count_event(Event::VxlanEncap, 1);
    route_originated(c, l3, pkt, out);
}
