//! IPvlan in L2 mode: endpoints on the uplink's LAN that all use the uplink's MAC (Linux ipvlan `l2`).
//!
//! The LAN sees one MAC for every endpoint: frames the endpoints send leave with the uplink's MAC as source
//! (also inside ARP and in ND link-layer options), and the router answers ARP and Neighbor Solicitations for
//! the endpoints' addresses with it. Frames from the LAN to that MAC are demultiplexed by destination IP to
//! the endpoint that has it, whose own MAC is put back as destination. Broadcast and multicast reach every
//! endpoint. Endpoints reach each other inside the router, demultiplexed the same way.

use crate::bridge::{flood_to, send, Egress};
use crate::ethernet::Mac;
use crate::wire::arp::{self, ArpPacket, OP_REPLY, OP_REQUEST};
use crate::wire::checksum;
use crate::wire::ndisc::{self, NaFlags, OPT_SOURCE_LL_ADDR, OPT_TARGET_LL_ADDR};
use crate::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPPROTO_ICMPV6};
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Event, Pkt};
use std::net::Ipv6Addr;

const ETH: usize = 14;

/// One ipvlan L2 network, frozen in a snapshot.
#[derive(Debug, Clone)]
pub struct IpvlanNet {
    /// Network name.
    pub name: String,
    /// Uplink port.
    pub uplink: u16,
    /// The MAC every endpoint uses on the LAN (the uplink's).
    pub mac: Mac,
    /// Endpoints: (port, the endpoint's own MAC).
    pub endpoints: Vec<(u16, Mac)>,
    /// IPv4 address → endpoint, sorted by address.
    pub v4: Vec<(u32, u16)>,
    /// IPv6 address → endpoint, sorted by address.
    pub v6: Vec<(u128, u16)>,
}

fn ethertype(d: &[u8]) -> u16 {
    u16::from_be_bytes([d[12], d[13]])
}

impl IpvlanNet {
    /// The endpoint with IPv4 address `a`.
    #[inline]
    pub fn by_v4(&self, a: u32) -> Option<usize> {
        self.v4
            .binary_search_by_key(&a, |e| e.0)
            .ok()
            .map(|i| self.v4[i].1 as usize)
    }

    /// The endpoint with IPv6 address `a`.
    #[inline]
    pub fn by_v6(&self, a: u128) -> Option<usize> {
        self.v6
            .binary_search_by_key(&a, |e| e.0)
            .ok()
            .map(|i| self.v6[i].1 as usize)
    }

    /// The endpoint a unicast IP packet or an ARP message is for, by destination (target) address.
    fn endpoint_for(&self, d: &[u8]) -> Option<usize> {
        match ethertype(d) {
            ETHERTYPE_IPV4 => {
                let a = d.get(ETH + 16..ETH + 20)?;
                self.by_v4(u32::from_be_bytes(a.try_into().ok()?))
            }
            ETHERTYPE_IPV6 => {
                let a = d.get(ETH + 24..ETH + 40)?;
                self.by_v6(u128::from_be_bytes(a.try_into().ok()?))
            }
            ETHERTYPE_ARP => {
                let a = ArpPacket::new_checked(d.get(ETH..)?).ok()?;
                self.by_v4(u32::from_be_bytes(a.tpa()))
            }
            _ => None,
        }
    }

    /// Delivers `pkt` to endpoint `ep` with its own MAC as destination (and as ARP target hardware address).
    fn deliver(&self, ep: usize, mut pkt: Pkt, out: &mut TxBatches) {
        let (port, mac) = self.endpoints[ep];
        let d = pkt.data_mut();
        d[0..6].copy_from_slice(&mac);
        if ethertype(d) == ETHERTYPE_ARP {
            if let Ok(mut a) = ArpPacket::new_checked(&mut d[ETH..]) {
                if a.op() == OP_REPLY {
                    a.set_tha(mac);
                }
            }
        }
        out.send(port, pkt);
    }

    /// Answers, in place, an ARP request or a Neighbor Solicitation for an endpoint's address with the shared
    /// MAC, back to where it came from. Returns the packet when it is not such a question (every path that
    /// does not answer must give it back: `None` means it was sent).
    fn answer(&self, mut pkt: Pkt, back_to: (u16, Egress), out: &mut TxBatches) -> Option<Pkt> {
        let d = pkt.data();
        match ethertype(d) {
            ETHERTYPE_ARP => {
                let Ok(a) = ArpPacket::new_checked(&d[ETH..]) else {
                    return Some(pkt);
                };
                if a.op() != OP_REQUEST || a.spa() == a.tpa() {
                    return Some(pkt);
                }
                if self.by_v4(u32::from_be_bytes(a.tpa())).is_none() {
                    return Some(pkt);
                }
                if arp::reply_in_place(pkt.data_mut(), self.mac).is_err() {
                    return Some(pkt);
                }
                out.count_event(Event::ArpRepliesSent, 1);
                send(pkt, back_to.0, back_to.1, out);
                None
            }
            ETHERTYPE_IPV6 => {
                let Ok((ip, nd)) = ndisc::NdiscPacket::parse(&d[ETH..]) else {
                    return Some(pkt);
                };
                if !nd.is_solicitation() {
                    return Some(pkt);
                }
                let target = nd.target_addr();
                if self.by_v6(u128::from(target)).is_none() {
                    return Some(pkt);
                }
                let src = Ipv6Addr::from(ip.src());
                if src.is_unspecified() {
                    return Some(pkt);
                }
                let to: Mac = nd
                    .source_ll_addr()
                    .unwrap_or_else(|| d[6..12].try_into().unwrap_or([0; 6]));
                let flags = NaFlags {
                    router: false,
                    solicited: true,
                    override_: true,
                };
                match ndisc::write_advertisement(
                    pkt.rx_room(),
                    self.mac,
                    target,
                    to,
                    src,
                    target,
                    flags,
                ) {
                    Ok(n) if pkt.set_rx_len(n) => {
                        out.count_event(Event::NdAdvertsSent, 1);
                        send(pkt, back_to.0, back_to.1, out);
                        None
                    }
                    _ => Some(pkt),
                }
            }
            _ => Some(pkt),
        }
    }

    /// A frame from the LAN (already untagged).
    #[inline]
    pub fn from_uplink(&self, pkt: Pkt, out: &mut TxBatches) {
        if pkt.len() < ETH {
            out.drop_pkt(pkt, DropReason::Truncated);
            return;
        }
        let Some(pkt) = self.answer(pkt, (self.uplink, Egress::Untagged), out) else {
            return;
        };
        let d = pkt.data();
        if d[0] & 1 == 1 {
            flood_to(
                pkt,
                self.endpoints.iter().map(|(p, _)| (*p, Egress::Untagged)),
                out,
            );
            return;
        }
        if d[0..6] != self.mac {
            out.drop_pkt(pkt, DropReason::NotForUs);
            return;
        }
        match self.endpoint_for(d) {
            Some(ep) => self.deliver(ep, pkt, out),
            None => out.drop_pkt(pkt, DropReason::NoEndpoint),
        }
    }

    /// A frame from endpoint `ep`.
    #[inline]
    pub fn from_endpoint(&self, ep: usize, pkt: Pkt, out: &mut TxBatches) {
        if pkt.len() < ETH {
            out.drop_pkt(pkt, DropReason::Truncated);
            return;
        }
        let (port, own) = self.endpoints[ep];
        // Questions about another endpoint are answered here; the LAN never sees them.
        let Some(mut pkt) = self.answer(pkt, (port, Egress::Untagged), out) else {
            return;
        };
        self.use_shared_mac(&mut pkt, &own);
        let d = pkt.data();
        if d[0] & 1 == 1 {
            let others = self
                .endpoints
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != ep)
                .map(|(_, (p, _))| (*p, Egress::Untagged));
            flood_to(
                pkt,
                std::iter::once((self.uplink, Egress::Untagged)).chain(others),
                out,
            );
            return;
        }
        match self.endpoint_for(d) {
            Some(e) if e == ep => out.drop_pkt(pkt, DropReason::BridgeFiltered),
            Some(e) => self.deliver(e, pkt, out),
            None => out.send(self.uplink, pkt),
        }
    }

    /// Replaces the endpoint's own MAC by the shared one as Ethernet source, ARP sender, and in ND link-layer
    /// address options (ICMPv6 checksum updated incrementally).
    fn use_shared_mac(&self, pkt: &mut Pkt, own: &Mac) {
        let shared = self.mac;
        let d = pkt.data_mut();
        d[6..12].copy_from_slice(&shared);
        match ethertype(d) {
            ETHERTYPE_ARP => {
                if let Ok(mut a) = ArpPacket::new_checked(&mut d[ETH..]) {
                    if a.sha() == *own {
                        a.set_sha(shared);
                    }
                }
            }
            ETHERTYPE_IPV6 if d.len() >= ETH + 40 + 24 && d[ETH + 6] == IPPROTO_ICMPV6 => {
                let icmp = ETH + 40;
                if !matches!(d[icmp], 135 | 136) {
                    return;
                }
                let mut csum = u16::from_be_bytes([d[icmp + 2], d[icmp + 3]]);
                let mut o = icmp + 24;
                while o + 8 <= d.len() {
                    let (kind, len) = (d[o], d[o + 1] as usize * 8);
                    if len == 0 || o + len > d.len() {
                        break;
                    }
                    if (kind == OPT_SOURCE_LL_ADDR || kind == OPT_TARGET_LL_ADDR)
                        && len == 8
                        && d[o + 2..o + 8] == *own
                    {
                        for w in 0..3 {
                            let at = o + 2 + 2 * w;
                            let old = u16::from_be_bytes([d[at], d[at + 1]]);
                            let new = u16::from_be_bytes([shared[2 * w], shared[2 * w + 1]]);
                            csum = checksum::update16(csum, old, new);
                        }
                        d[o + 2..o + 8].copy_from_slice(&shared);
                    }
                    o += len;
                }
                d[icmp + 2..icmp + 4].copy_from_slice(&csum.to_be_bytes());
            }
            _ => {}
        }
    }
}
