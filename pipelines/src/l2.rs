//! L2 classification: which domain (bridge or macvlan network) a frame belongs to, from its input port and
//! 802.1Q tag; the tag is popped so every domain sees untagged frames. Two passes over the burst, VPP style:
//! classify (and prefetch the MAC-table lines the frame will need), then forward.

use crate::bridge::BridgeDomain;
use crate::ipvlan::IpvlanNet;
use crate::macvlan::MacvlanNet;
use crate::vlan::{self, Tag};
use dataplane::worker::{BurstCtx, TxBatches};
use dataplane::{Burst, DropReason};

/// A domain a port carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Bridge domain by index.
    Bridge(u16),
    /// The uplink side of a macvlan network.
    MacvlanUplink(u16),
    /// Endpoint `ep` of macvlan network `net`.
    MacvlanEndpoint {
        /// Network index.
        net: u16,
        /// Endpoint index in the network.
        ep: u16,
    },
    /// The uplink side of an ipvlan L2 network.
    IpvlanUplink(u16),
    /// Endpoint `ep` of ipvlan L2 network `net`.
    IpvlanEndpoint {
        /// Network index.
        net: u16,
        /// Endpoint index in the network.
        ep: u16,
    },
}

/// What an input port carries: an untagged domain and domains by VLAN id.
#[derive(Clone, Debug, Default)]
pub struct L2Ingress {
    /// Untagged (and priority-tagged) frames.
    pub untagged: Option<Domain>,
    /// Tagged frames by VLAN id (4096 entries), when the port is a trunk.
    pub tagged: Option<Box<[Option<Domain>]>>,
}

impl L2Ingress {
    /// Adds `domain` for `vlan` (`None`: untagged).
    pub fn add(&mut self, vlan: Option<u16>, domain: Domain) {
        match vlan {
            None => self.untagged = Some(domain),
            Some(v) => {
                let t = self
                    .tagged
                    .get_or_insert_with(|| vec![None; 4096].into_boxed_slice());
                if let Some(slot) = t.get_mut(v as usize & 0x0fff) {
                    *slot = Some(domain);
                }
            }
        }
    }
}

/// Tables the L2 stage reads.
pub struct L2Tables<'a> {
    /// Bridge domains.
    pub bridges: &'a [BridgeDomain],
    /// Macvlan networks.
    pub macvlans: &'a [MacvlanNet],
    /// Ipvlan L2 networks.
    pub ipvlans: &'a [IpvlanNet],
}

/// Classification result kept in `Meta::scratch[0]` between the passes.
const NONE: u32 = u32::MAX;
/// Between the passes, a bridged frame's MAC-table bucket hints (from [`BridgeDomain::prefetch`]), so its
/// MACs are hashed once: the destination's in scratch 1 (the drop reason's word, unused for a classified
/// frame), the source's in scratch 2 (the L3 stage's `SCRATCH_IFACE`, written only after the bridge).
const SCRATCH_DST_HINT: usize = 1;
/// See [`SCRATCH_DST_HINT`].
const SCRATCH_SRC_HINT: usize = crate::l3::SCRATCH_IFACE;

/// Kind in the top 3 bits, endpoint index in the next 13, network index in the low 16.
fn encode(d: Domain) -> u32 {
    let (kind, ep, net) = match d {
        Domain::Bridge(i) => (0, 0, i),
        Domain::MacvlanUplink(i) => (1, 0, i),
        Domain::MacvlanEndpoint { net, ep } => (2, ep, net),
        Domain::IpvlanUplink(i) => (3, 0, i),
        Domain::IpvlanEndpoint { net, ep } => (4, ep, net),
    };
    (kind << 29) | (((ep as u32) & 0x1fff) << 16) | net as u32
}

fn decode(v: u32) -> Domain {
    let (net, ep) = (v as u16, ((v >> 16) & 0x1fff) as u16);
    match v >> 29 {
        0 => Domain::Bridge(net),
        1 => Domain::MacvlanUplink(net),
        2 => Domain::MacvlanEndpoint { net, ep },
        3 => Domain::IpvlanUplink(net),
        _ => Domain::IpvlanEndpoint { net, ep },
    }
}

/// Runs the L2 stage over a burst that came in on a port carrying `ing`. Frames for a bridge's gateway go to
/// `to_l3` with their router interface in `Meta::scratch[l3::SCRATCH_IFACE]`.
pub fn process(
    t: &L2Tables<'_>,
    ing: &L2Ingress,
    ctx: &BurstCtx,
    burst: &mut Burst,
    to_l3: &mut Burst,
    out: &mut TxBatches,
) {
    // Pass 1: classify, pop tags, prefetch.
    for pkt in burst.iter_mut() {
        // `outer_tag` says `Truncated` for anything shorter than an Ethernet header.
        let domain = match vlan::outer_tag(pkt.data()) {
            Tag::Truncated => Err(DropReason::Truncated),
            Tag::Stacked => Err(DropReason::Qinq),
            Tag::Untagged => ing.untagged.ok_or(DropReason::VlanFiltered),
            Tag::Vlan(0) => {
                vlan::pop(pkt);
                ing.untagged.ok_or(DropReason::VlanFiltered)
            }
            Tag::Vlan(v) => match ing
                .tagged
                .as_ref()
                .and_then(|t| t.get(v as usize).copied().flatten())
            {
                Some(d) => {
                    vlan::pop(pkt);
                    Ok(d)
                }
                None => Err(DropReason::VlanFiltered),
            },
        };
        match domain {
            Ok(Domain::Bridge(b)) => {
                let hints = match t.bridges.get(b as usize) {
                    Some(bd) => bd.prefetch(pkt.data()),
                    None => (0, 0),
                };
                let m = pkt.meta_mut();
                m.scratch[0] = encode(Domain::Bridge(b));
                m.scratch[SCRATCH_DST_HINT] = hints.0;
                m.scratch[SCRATCH_SRC_HINT] = hints.1;
            }
            Ok(d) => pkt.meta_mut().scratch[0] = encode(d),
            Err(r) => {
                let m = pkt.meta_mut();
                m.scratch[0] = NONE;
                m.scratch[1] = r as u32;
            }
        }
    }
    // Pass 2: forward.
    let now_s = (ctx.now_ns / 1_000_000_000) as u32;
    for pkt in burst.drain() {
        let m = pkt.meta();
        if m.scratch[0] == NONE {
            let reason = DropReason::ALL
                .get(m.scratch[1] as usize)
                .copied()
                .unwrap_or(DropReason::Malformed);
            out.drop_pkt(pkt, reason);
            continue;
        }
        match decode(m.scratch[0]) {
            Domain::Bridge(b) => {
                let hints = (m.scratch[SCRATCH_DST_HINT], m.scratch[SCRATCH_SRC_HINT]);
                bridge(t, b, pkt, ctx.in_port, now_s, hints, to_l3, out)
            }
            Domain::MacvlanUplink(n) => match t.macvlans.get(n as usize) {
                Some(mv) => mv.from_uplink(pkt, out),
                None => out.drop_pkt(pkt, DropReason::NoRoute),
            },
            Domain::MacvlanEndpoint { net, ep } => match t.macvlans.get(net as usize) {
                Some(mv) => mv.from_endpoint(ep as usize, pkt, out),
                None => out.drop_pkt(pkt, DropReason::NoRoute),
            },
            Domain::IpvlanUplink(n) => match t.ipvlans.get(n as usize) {
                Some(iv) => iv.from_uplink(pkt, out),
                None => out.drop_pkt(pkt, DropReason::NoRoute),
            },
            Domain::IpvlanEndpoint { net, ep } => match t.ipvlans.get(net as usize) {
                Some(iv) if (ep as usize) < iv.endpoints.len() => {
                    iv.from_endpoint(ep as usize, pkt, out)
                }
                _ => out.drop_pkt(pkt, DropReason::NoRoute),
            },
        }
    }
}

/// Forwards one frame in bridge domain `b`; what is for the domain's gateway goes to `to_l3`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bridge(
    t: &L2Tables<'_>,
    b: u16,
    pkt: dataplane::Pkt,
    in_port: u16,
    now_s: u32,
    hints: (u32, u32),
    to_l3: &mut Burst,
    out: &mut TxBatches,
) {
    let Some(bd) = t.bridges.get(b as usize) else {
        out.drop_pkt(pkt, DropReason::NoRoute);
        return;
    };
    if let Some(mut p) = bd.forward_hinted(pkt, in_port, now_s, hints, out) {
        let m = p.meta_mut();
        m.scratch[crate::l3::SCRATCH_IFACE] = bd.gateway_iface.unwrap_or(u16::MAX) as u32;
        // Not handed over by another worker (whatever a recycled buffer carried).
        m.scratch[crate::nat::stage::SCRATCH_NAT] = 0;
        if let Err(p) = to_l3.push(p) {
            out.drop_pkt(p, DropReason::TxFull);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_encoding_round_trips() {
        for d in [
            Domain::Bridge(0),
            Domain::Bridge(65535),
            Domain::MacvlanUplink(7),
            Domain::MacvlanEndpoint { net: 3, ep: 511 },
            Domain::MacvlanEndpoint {
                net: 65535,
                ep: 0x1fff,
            },
            Domain::IpvlanUplink(9),
            Domain::IpvlanEndpoint { net: 2, ep: 8000 },
        ] {
            assert_eq!(decode(encode(d)), d);
            assert_ne!(encode(d), NONE);
        }
    }
}
