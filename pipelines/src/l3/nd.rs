//! IPv6 Neighbor Discovery (RFC 4861) on a router interface: answer solicitations for the interface's
//! addresses (or any, with proxy ND), learn from solicitations and advertisements, and write the solicitations
//! and announcements the router sends.

use super::neigh::{LearnOutcome, NeighKey, Neighbor};
use super::{emit, Interface, L3Ctx, ETH_LEN};
use crate::wire::ipv6;
use crate::wire::ndisc::{self, NaFlags, NdiscPacket};
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Event, Pkt};
use std::net::Ipv6Addr;

pub(super) fn input(c: &L3Ctx<'_>, iface: u16, mut pkt: Pkt, _hop_limit: u8, out: &mut TxBatches) {
    let ifc = &c.t.ifaces[iface as usize];
    let frame_src = {
        let mut m = [0u8; 6];
        m.copy_from_slice(&pkt.data()[6..12]);
        m
    };
    let (src, dst, solicit, target, sll, tll, override_) =
        match NdiscPacket::parse(&pkt.data()[ETH_LEN..]) {
            Ok((ip, nd)) => (
                Ipv6Addr::from(ip.src()),
                Ipv6Addr::from(ip.dst()),
                nd.is_solicitation(),
                nd.target_addr(),
                nd.source_ll_addr(),
                nd.target_ll_addr(),
                nd.override_flag(),
            ),
            Err(ndisc::NdiscError::Truncated) => {
                out.drop_pkt(pkt, DropReason::Truncated);
                return;
            }
            Err(_) => {
                out.drop_pkt(pkt, DropReason::BadNd);
                return;
            }
        };
    let _ = dst;
    // The link-layer address learned (the option's, else the frame's source) must name one station: a multicast
    // or zero MAC would send the neighbour's traffic to the whole link (or nowhere).
    let ll = if solicit { sll } else { tll }.unwrap_or(frame_src);
    if ll[0] & 1 == 1 || ll == [0; 6] {
        out.drop_pkt(pkt, DropReason::BadNd);
        return;
    }
    if !solicit {
        // An advertisement: update what we asked for (or knew).
        let mac = ll;
        let key = NeighKey::v6(iface, target.octets());
        // Without the override flag, a resolved neighbour keeps its address (RFC 4861 section 7.2.5).
        let keep = !override_
            && matches!(c.t.neigh.lookup(&key), Some(Neighbor::Reachable { mac: m, .. }) if m != mac);
        if !keep && c.t.neigh.refresh(&key, &mac, c.now_s()) == Some(LearnOutcome::Learned) {
            out.count_event(Event::NeighLearned, 1);
        }
        drop(pkt);
        return;
    }
    let ours = ifc.has_v6(&target) || (ifc.proxy_arp && target != src);
    if !ours {
        super::ignore(c, iface, pkt, DropReason::NotForUs, out);
        return;
    }
    if src.is_unspecified() {
        // Duplicate address detection by a host for one of our addresses: defend it to all nodes.
        let n = ndisc::write_unsolicited_advertisement(
            pkt.rx_room(),
            ifc.mac,
            target,
            target,
            NaFlags {
                router: true,
                solicited: false,
                override_: true,
            },
        );
        match n {
            Ok(n) if pkt.set_rx_len(n) => {
                out.count_event(Event::NdAdvertsSent, 1);
                emit(
                    c,
                    iface,
                    pkt,
                    &ipv6::multicast_mac(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                    out,
                );
            }
            _ => drop(pkt),
        }
        return;
    }
    let to = ll;
    let key = NeighKey::v6(iface, src.octets());
    if c.t.neigh.learn(&key, &to, c.now_s()) == LearnOutcome::Learned {
        out.count_event(Event::NeighLearned, 1);
    }
    let n = ndisc::write_advertisement(
        pkt.rx_room(),
        ifc.mac,
        target,
        to,
        src,
        target,
        NaFlags {
            router: true,
            solicited: true,
            override_: !ifc.proxy_arp || ifc.has_v6(&target),
        },
    );
    match n {
        Ok(n) if pkt.set_rx_len(n) => {
            out.count_event(Event::NdAdvertsSent, 1);
            emit(c, iface, pkt, &to, out);
        }
        _ => drop(pkt),
    }
}

/// The address the router solicits from on `ifc` for `target`: one on the target's prefix, else link-local.
fn source_for(ifc: &Interface, target: &Ipv6Addr) -> Ipv6Addr {
    let t = u128::from(*target);
    ifc.v6
        .iter()
        .find(|(a, len)| {
            let m = if *len == 0 {
                0
            } else {
                u128::MAX << (128 - *len as u32)
            };
            u128::from(*a) & m == t & m
        })
        .map(|a| a.0)
        .unwrap_or(ifc.link_local)
}

/// Writes a multicast solicitation for `key` into the empty buffer `req`; the event and destination MAC.
pub(super) fn write_solicitation(
    c: &L3Ctx<'_>,
    key: NeighKey,
    req: &mut Pkt,
) -> Option<(Event, [u8; 6])> {
    let ifc = c.t.ifaces.get(key.iface as usize)?;
    let target = Ipv6Addr::from(key.ip);
    let src = source_for(ifc, &target);
    let n = ndisc::write_solicitation(req.rx_room(), ifc.mac, src, target).ok()?;
    let dst = ipv6::multicast_mac(&ipv6::solicited_node(&target.octets()));
    req.set_rx_len(n).then_some((Event::NdSolicitsSent, dst))
}

/// Writes an unsolicited advertisement of `ip` on `ifc` into `p`; the destination MAC (all nodes).
pub(super) fn write_unsolicited(ifc: &Interface, ip: &Ipv6Addr, p: &mut Pkt) -> Option<[u8; 6]> {
    let n = ndisc::write_unsolicited_advertisement(
        p.rx_room(),
        ifc.mac,
        *ip,
        *ip,
        NaFlags {
            router: true,
            solicited: false,
            override_: true,
        },
    )
    .ok()?;
    p.set_rx_len(n).then_some([0x33, 0x33, 0, 0, 0, 1])
}
