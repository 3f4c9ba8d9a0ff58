//! MACvlan: endpoints with their own MACs on an uplink (the Docker macvlan driver's "bridge" mode).
//!
//! Frames from the uplink are demultiplexed by destination MAC to the endpoint that owns it; broadcast and
//! multicast go to every endpoint of the network. Frames from an endpoint go to another endpoint of the same
//! network when addressed to it (switched locally, never hairpinned through the LAN), otherwise out of the
//! uplink, tagged when the network is an 802.1Q sub-interface. As with Linux macvlan, endpoints and the host
//! (the uplink's own MAC) do not reach each other unless `allow_host` is set.

use crate::bridge::{flood_to, mac_key, send, Egress};
use crate::ethernet::Mac;
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Pkt};

/// One macvlan network, frozen in a snapshot.
#[derive(Debug, Clone)]
pub struct MacvlanNet {
    /// Network name.
    pub name: String,
    /// Uplink port.
    pub uplink: u16,
    /// How frames leave by the uplink.
    pub uplink_egress: Egress,
    /// Endpoints: (port, MAC).
    pub endpoints: Vec<(u16, Mac)>,
    /// Endpoint index by MAC key, sorted.
    pub by_mac: Vec<(u64, u16)>,
    /// The host's MAC on the uplink (the uplink port's own address), when known.
    pub host_mac: Option<Mac>,
    /// Let endpoints and the host reach each other.
    pub allow_host: bool,
}

impl MacvlanNet {
    /// The endpoint owning `mac`.
    #[inline]
    pub fn endpoint_of(&self, mac: &Mac) -> Option<usize> {
        let k = mac_key(mac);
        self.by_mac
            .binary_search_by_key(&k, |e| e.0)
            .ok()
            .map(|i| self.by_mac[i].1 as usize)
    }

    fn is_host(&self, mac: &Mac) -> bool {
        !self.allow_host && self.host_mac.as_ref() == Some(mac)
    }

    /// A frame from the LAN (already untagged).
    #[inline]
    pub fn from_uplink(&self, pkt: Pkt, out: &mut TxBatches) {
        let Some((dst, src)) = addrs(&pkt) else {
            out.drop_pkt(pkt, DropReason::Truncated);
            return;
        };
        if self.is_host(&src) {
            out.drop_pkt(pkt, DropReason::HostIsolated);
            return;
        }
        if dst[0] & 1 == 1 {
            if self.endpoints.is_empty() {
                out.drop_pkt(pkt, DropReason::NoEndpoint);
            } else {
                flood_to(
                    pkt,
                    self.endpoints.iter().map(|(p, _)| (*p, Egress::Untagged)),
                    out,
                );
            }
            return;
        }
        match self.endpoint_of(&dst) {
            Some(e) => out.send(self.endpoints[e].0, pkt),
            None => out.drop_pkt(pkt, DropReason::NoEndpoint),
        }
    }

    /// A frame from endpoint `ep`.
    #[inline]
    pub fn from_endpoint(&self, ep: usize, pkt: Pkt, out: &mut TxBatches) {
        let Some((dst, _src)) = addrs(&pkt) else {
            out.drop_pkt(pkt, DropReason::Truncated);
            return;
        };
        if dst[0] & 1 == 1 {
            let others = self
                .endpoints
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != ep)
                .map(|(_, (p, _))| (*p, Egress::Untagged));
            flood_to(
                pkt,
                std::iter::once((self.uplink, self.uplink_egress)).chain(others),
                out,
            );
            return;
        }
        if self.is_host(&dst) {
            out.drop_pkt(pkt, DropReason::HostIsolated);
            return;
        }
        match self.endpoint_of(&dst) {
            Some(e) if e == ep => out.drop_pkt(pkt, DropReason::BridgeFiltered),
            Some(e) => out.send(self.endpoints[e].0, pkt),
            None => send(pkt, self.uplink, self.uplink_egress, out),
        }
    }
}

#[inline]
fn addrs(pkt: &Pkt) -> Option<(Mac, Mac)> {
    let d = pkt.data();
    Some((
        d.get(0..6)?.try_into().ok()?,
        d.get(6..12)?.try_into().ok()?,
    ))
}
