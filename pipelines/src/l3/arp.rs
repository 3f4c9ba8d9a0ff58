//! ARP (RFC 826) on a router interface: answer requests for the interface's addresses (or any address, with
//! proxy ARP), learn senders into the neighbour cache, and write the requests and announcements the router
//! sends.

use super::neigh::{LearnOutcome, NeighKey};
use super::{emit, Interface, L3Ctx, L3State, ETH_LEN};
use crate::wire::arp::{self, ArpPacket, OP_REQUEST};
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Event, Pkt};
use std::net::Ipv4Addr;

pub(super) fn input(
    c: &L3Ctx<'_>,
    _st: &mut L3State,
    iface: u16,
    mut pkt: Pkt,
    out: &mut TxBatches,
) {
    let ifc = &c.t.ifaces[iface as usize];
    let (op, sha, spa, tpa) = match ArpPacket::new_checked(&pkt.data()[ETH_LEN..]) {
        Ok(a) => (a.op(), a.sha(), a.spa_addr(), a.tpa_addr()),
        Err(arp::ArpError::Truncated) => {
            out.drop_pkt(pkt, DropReason::Truncated);
            return;
        }
        Err(_) => {
            out.drop_pkt(pkt, DropReason::BadArp);
            return;
        }
    };
    let for_us = ifc.has_v4(tpa) || (ifc.proxy_arp && tpa != spa && !spa.is_unspecified());
    // RFC 826: a sender already in the cache is refreshed; one asking for us is added.
    if !spa.is_unspecified() && sha[0] & 1 == 0 && sha != ifc.mac {
        let key = NeighKey::v4(iface, u32::from(spa));
        let outcome = if for_us {
            Some(c.t.neigh.learn(&key, &sha, c.now_s()))
        } else {
            c.t.neigh.refresh(&key, &sha, c.now_s())
        };
        if outcome == Some(LearnOutcome::Learned) {
            out.count_event(Event::NeighLearned, 1);
        }
    }
    if !for_us {
        super::ignore(c, iface, pkt, DropReason::NotForUs, out);
        return;
    }
    if op != OP_REQUEST || spa == tpa {
        // A reply to us, or a gratuitous announcement: learned above, nothing to send.
        drop(pkt);
        return;
    }
    match arp::reply_in_place(pkt.data_mut(), ifc.mac) {
        Ok(()) => {
            out.count_event(Event::ArpRepliesSent, 1);
            emit(c, iface, pkt, &sha, out);
        }
        Err(_) => out.drop_pkt(pkt, DropReason::BadArp),
    }
}

/// The address the router asks from on `ifc` for `target`: one on the target's subnet, else the first.
fn source_for(ifc: &Interface, target: Ipv4Addr) -> Option<Ipv4Addr> {
    let t = u32::from(target);
    ifc.v4
        .iter()
        .find(|(a, len)| {
            let m = if *len == 0 {
                0
            } else {
                u32::MAX << (32 - *len as u32)
            };
            u32::from(*a) & m == t & m
        })
        .or(ifc.v4.first())
        .map(|a| a.0)
}

/// Writes a broadcast request for `key` into the empty buffer `req`; the event to count and the destination.
pub(super) fn write_request(
    c: &L3Ctx<'_>,
    key: NeighKey,
    req: &mut Pkt,
) -> Option<(Event, [u8; 6])> {
    let ifc = c.t.ifaces.get(key.iface as usize)?;
    let target = Ipv4Addr::from(key.ip as u32);
    let src = source_for(ifc, target)?;
    let n = arp::write_request(req.rx_room(), ifc.mac, src, target).ok()?;
    req.set_rx_len(n)
        .then_some((Event::ArpRequestsSent, [0xff; 6]))
}

/// Writes a gratuitous ARP for `ip` on `ifc` into the empty buffer `p`.
pub(super) fn write_gratuitous(ifc: &Interface, ip: Ipv4Addr, p: &mut Pkt) -> bool {
    match arp::write_gratuitous(p.rx_room(), ifc.mac, ip) {
        Ok(n) => p.set_rx_len(n),
        Err(_) => false,
    }
}
