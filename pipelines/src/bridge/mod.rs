//! Learning bridge: one bridge domain per `bridge` network (and per VLAN on trunks).
//!
//! Frames arrive here untagged (the L2 classifier popped the tag and chose the domain). The source MAC is
//! learned against the input port in the domain's shared, lock-free [`mac_table::MacTable`]; the destination
//! is looked up in the static entries, then the table: a known port gets the frame (tagged again on the way
//! out if that port is a trunk), an unknown unicast is flooded (or dropped, per the domain's switch), and
//! broadcast and multicast are flooded to every member but the input port.

pub mod mac_table;

use crate::ethernet::Mac;
use crate::vlan;
use crate::vxlan::{is_vtep_port, Overlay};
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Event, Pkt};
use mac_table::{LearnOutcome, MacTable};
use std::sync::Arc;

/// How frames leave a member port of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Untagged (access port).
    Untagged,
    /// Tagged with this VLAN id (trunk port).
    Tagged(u16),
    /// To a remote VTEP (the port is its virtual port): staged for VXLAN encapsulation with the domain
    /// index, see [`crate::vxlan`].
    Vxlan {
        /// The overlay bridge domain the frame belongs to.
        domain: u16,
    },
}

/// One bridge domain, frozen in a snapshot; its MAC table is shared with the snapshots before and after.
#[derive(Debug)]
pub struct BridgeDomain {
    /// Network name.
    pub name: String,
    /// Member ports and how frames leave by each, in flooding order.
    pub members: Vec<(u16, Egress)>,
    /// Egress by port index (`None`: not a member).
    pub egress: Vec<Option<Egress>>,
    /// Learned MACs, shared by all workers and kept across config reloads.
    pub table: Arc<MacTable>,
    /// Static entries, sorted by MAC key, for binary search.
    pub statics: Vec<(u64, u16)>,
    /// Flood unknown unicast (else drop it).
    pub flood_unknown_unicast: bool,
    /// The router's MAC on this domain: frames to it go to the L3 stage.
    pub gateway_mac: Option<Mac>,
    /// The router interface that is this domain's gateway (its L3 side), when the network has addresses.
    pub gateway_iface: Option<u16>,
    /// Seconds a learned MAC lives unseen (0: forever); applied by the control thread's aging sweep.
    pub aging_s: u32,
    /// The VXLAN side of an `overlay` network (remote VTEPs are virtual ports, see [`crate::vxlan`]).
    pub overlay: Option<Arc<Overlay>>,
}

/// A MAC as a sortable integer.
#[inline]
pub fn mac_key(m: &Mac) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

#[inline]
fn is_multicast(m: &Mac) -> bool {
    m[0] & 1 == 1
}

impl BridgeDomain {
    /// The port of a static entry for `mac`.
    #[inline]
    pub fn static_port(&self, mac: &Mac) -> Option<u16> {
        if self.statics.is_empty() {
            return None;
        }
        let k = mac_key(mac);
        self.statics
            .binary_search_by_key(&k, |e| e.0)
            .ok()
            .map(|i| self.statics[i].1)
    }

    /// The virtual port of an overlay entry an external feed added for `mac`.
    #[inline(always)]
    pub fn fed_port(&self, mac: &Mac) -> Option<u16> {
        let fed = &self.overlay.as_ref()?.fed;
        // Usually empty: one load instead of two bucket misses per frame.
        if fed.is_empty() {
            return None;
        }
        fed.lookup(mac)
    }

    /// Where `mac` is: static entries first, then (overlay) fed entries, then the learned table.
    #[inline]
    pub fn lookup(&self, mac: &Mac) -> Option<u16> {
        self.static_port(mac)
            .or_else(|| self.fed_port(mac))
            .or_else(|| self.table.lookup(mac))
    }

    /// Warms the cache lines the next frame's lookups will touch; returns the (destination, source) bucket
    /// hints for [`BridgeDomain::forward_hinted`] (`(0, 0)`, merely a wrong hint, for a truncated frame).
    #[inline]
    pub fn prefetch(&self, frame: &[u8]) -> (u32, u32) {
        match frame.get(0..12) {
            Some(&[d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5]) => self
                .table
                .prefetch_pair(&[d0, d1, d2, d3, d4, d5], &[s0, s1, s2, s3, s4, s5]),
            _ => (0, 0),
        }
    }

    /// Switches one untagged frame that came in on `in_port`. Returns what the domain's gateway (the L3
    /// stage) must see: a frame to the gateway MAC, or a copy of a broadcast ARP or multicast IPv6 frame.
    #[inline]
    pub fn forward(&self, pkt: Pkt, in_port: u16, now_s: u32, out: &mut TxBatches) -> Option<Pkt> {
        self.forward_with(pkt, in_port, now_s, None, out)
    }

    /// [`BridgeDomain::forward`] with the bucket hints [`BridgeDomain::prefetch`] returned for this frame, so
    /// the MAC table does not hash its MACs again. Kept out of line: inlined into the L2 stage's loop, it
    /// runs out of registers.
    #[inline(never)]
    pub fn forward_hinted(
        &self,
        pkt: Pkt,
        in_port: u16,
        now_s: u32,
        hints: (u32, u32),
        out: &mut TxBatches,
    ) -> Option<Pkt> {
        self.forward_with(pkt, in_port, now_s, Some(hints), out)
    }

    #[inline(always)]
    fn forward_with(
        &self,
        pkt: Pkt,
        in_port: u16,
        now_s: u32,
        hints: Option<(u32, u32)>,
        out: &mut TxBatches,
    ) -> Option<Pkt> {
        let d = pkt.data();
        let (Some(dst), Some(src)) = (d.get(0..6), d.get(6..12)) else {
            out.drop_pkt(pkt, DropReason::Truncated);
            return None;
        };
        let mut dst_mac = [0u8; 6];
        dst_mac.copy_from_slice(dst);
        let mut src_mac = [0u8; 6];
        src_mac.copy_from_slice(src);
        if is_multicast(&src_mac) || src_mac == [0; 6] {
            out.drop_pkt(pkt, DropReason::BadSourceMac);
            return None;
        }
        if self.static_port(&src_mac).is_none() && self.fed_port(&src_mac).is_none() {
            let learned = match hints {
                Some((_, hs)) => self.table.learn_hinted(&src_mac, hs, in_port, now_s),
                None => self.table.learn(&src_mac, in_port, now_s),
            };
            match learned {
                // Refused: multicast or zero, already dropped above.
                LearnOutcome::Known | LearnOutcome::Refused => {}
                LearnOutcome::Learned => out.count_event(Event::MacLearned, 1),
                LearnOutcome::Moved { .. } => out.count_event(Event::MacMoved, 1),
                LearnOutcome::LimitReached => out.count_event(Event::MacLimit, 1),
                LearnOutcome::TableFull => out.count_event(Event::MacTableFull, 1),
            }
        }
        if is_multicast(&dst_mac) {
            // The gateway answers ARP and Neighbor Discovery: it gets a copy of those.
            let to_gw = match (self.gateway_iface, pkt.data().get(12..14)) {
                (Some(_), Some(&[0x08, 0x06])) | (Some(_), Some(&[0x86, 0xdd])) => pkt.try_clone(),
                _ => None,
            };
            self.flood(pkt, in_port, out);
            return to_gw;
        }
        if self.gateway_mac == Some(dst_mac) {
            if self.gateway_iface.is_some() {
                return Some(pkt);
            }
            out.drop_pkt(pkt, DropReason::NoLocalStack);
            return None;
        }
        let found = match hints {
            Some((hd, _)) => self
                .static_port(&dst_mac)
                .or_else(|| self.fed_port(&dst_mac))
                .or_else(|| self.table.lookup_hinted(&dst_mac, hd)),
            None => self.lookup(&dst_mac),
        };
        match found {
            // Split horizon: what came from a remote VTEP never goes back into the overlay.
            Some(p) if p == in_port || (is_vtep_port(p) && is_vtep_port(in_port)) => {
                out.drop_pkt(pkt, DropReason::BridgeFiltered)
            }
            Some(p) if is_vtep_port(p) => self.to_vtep(pkt, p, in_port, out),
            Some(p) => match self.egress.get(p as usize).copied().flatten() {
                Some(e) => send(pkt, p, e, out),
                // The entry points at a port that left the domain (config reload): treat as unknown.
                None => self.unknown(pkt, in_port, out),
            },
            None => self.unknown(pkt, in_port, out),
        }
        None
    }

    /// Switches a frame the gateway (the router) sends into the domain: to the port that has `dst`, or flooded
    /// to every member when `dst` is multicast or unknown.
    #[inline]
    pub fn from_gateway(&self, pkt: Pkt, dst: &Mac, out: &mut TxBatches) {
        if !is_multicast(dst) {
            if let Some(p) = self.lookup(dst) {
                if is_vtep_port(p) {
                    self.to_vtep(pkt, p, u16::MAX, out);
                    return;
                }
                if let Some(e) = self.egress.get(p as usize).copied().flatten() {
                    send(pkt, p, e, out);
                    return;
                }
            }
            if !self.flood_unknown_unicast {
                out.drop_pkt(pkt, DropReason::UnknownUnicast);
                return;
            }
        }
        self.flood(pkt, u16::MAX, out);
    }

    /// Sends `pkt` to the remote VTEP behind virtual port `p` (an entry left over from a domain that is no
    /// longer an overlay is treated as unknown).
    fn to_vtep(&self, pkt: Pkt, p: u16, in_port: u16, out: &mut TxBatches) {
        match &self.overlay {
            Some(ov) => send(pkt, p, Egress::Vxlan { domain: ov.domain }, out),
            None => self.unknown(pkt, in_port, out),
        }
    }

    fn unknown(&self, pkt: Pkt, in_port: u16, out: &mut TxBatches) {
        if self.flood_unknown_unicast {
            self.flood(pkt, in_port, out);
        } else {
            out.drop_pkt(pkt, DropReason::UnknownUnicast);
        }
    }

    /// Sends `pkt` to every member but `in_port`: copies to all but the last, the original to the last. In
    /// an overlay, a frame from a local port is also replicated to every VTEP of the flood list (head-end
    /// replication); one from a remote VTEP only to the local members (split horizon).
    fn flood(&self, pkt: Pkt, in_port: u16, out: &mut TxBatches) {
        let from_remote = is_vtep_port(in_port);
        if let Some(ov) = &self.overlay {
            if !from_remote && !ov.flood.is_empty() {
                out.count_event(Event::VxlanFloods, 1);
            }
        }
        flood_to(
            pkt,
            self.members
                .iter()
                .copied()
                .filter(|(p, _)| *p != in_port && !(from_remote && is_vtep_port(*p))),
            out,
        );
    }
}

/// Replicates `pkt` to `targets` (copies for all but the last), counting the flood and its copies.
pub fn flood_to(pkt: Pkt, targets: impl Iterator<Item = (u16, Egress)>, out: &mut TxBatches) {
    let mut targets = targets.peekable();
    if targets.peek().is_none() {
        out.drop_pkt(pkt, DropReason::BridgeFiltered);
        return;
    }
    out.count_event(Event::Flooded, 1);
    let mut copies = 0;
    while let Some((port, egress)) = targets.next() {
        if targets.peek().is_none() {
            send(pkt, port, egress, out);
            break;
        }
        match pkt.try_clone() {
            Some(c) => {
                copies += 1;
                send(c, port, egress, out);
            }
            None => out.count_drops(DropReason::NoBuffer, 1),
        }
    }
    out.count_event(Event::FloodCopies, copies);
}

/// Sends `pkt` out of `port`, tagging it first for a trunk; a remote VTEP's frame is staged for the VXLAN
/// encapsulation instead, its virtual port in `Meta::out_port` and its domain in
/// `Meta::scratch[vxlan::SCRATCH_DOMAIN]`.
#[inline]
pub fn send(mut pkt: Pkt, port: u16, egress: Egress, out: &mut TxBatches) {
    match egress {
        Egress::Untagged => {}
        Egress::Tagged(vid) => {
            if !vlan::push(&mut pkt, vid) {
                out.drop_pkt(pkt, DropReason::TooBig);
                return;
            }
        }
        Egress::Vxlan { domain } => {
            let m = pkt.meta_mut();
            m.out_port = port;
            m.scratch[crate::vxlan::SCRATCH_DOMAIN] = domain as u32;
            out.stage(pkt);
            return;
        }
    }
    out.send(port, pkt);
}
