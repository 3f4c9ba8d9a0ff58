//! Checks of `[networks.ipam]` (a network's address pool) and the pool a network has without one (a bridge's
//! IPv4 gateway subnet).

use std::net::{IpAddr, Ipv4Addr};

use super::super::raw::RawNetwork;
use super::*;
use crate::ipam::PoolSpec;

/// The network's IPv4 gateway address, from its `addresses` as written (bad entries are reported elsewhere).
fn gateway_v4(n: &RawNetwork) -> Option<Ipv4Cidr> {
    n.addresses
        .iter()
        .flatten()
        .find_map(|a| a.parse::<Ipv4Cidr>().ok())
}

/// The pool of network `i`: `Some(None)` when it has none, `None` when something is wrong (reported).
pub(super) fn check_network_ipam(
    ck: &mut Checker,
    i: usize,
    n: &RawNetwork,
    mode: Option<NetworkMode>,
) -> Option<Option<IpamCfg>> {
    let at = |f: &str| format!("networks[{i}].ipam.{f}");
    let p2p = mode == Some(NetworkMode::PointToPoint);
    let gw = gateway_v4(n).filter(|_| mode == Some(NetworkMode::Bridge));
    let Some(raw) = &n.ipam else {
        // A bridge with an IPv4 gateway hands out addresses of the gateway's subnet.
        return Some(gw.and_then(|g| {
            Some(IpamCfg {
                subnet: Ipv4Cidr::new(g.network(), g.prefix())?,
                range: None,
                reserved: Vec::new(),
                gateway: Some(g.addr()),
                host_prefix: g.prefix(),
            })
        }));
    };
    if matches!(mode, Some(NetworkMode::Xconnect)) {
        ck.err(
            format!("networks[{i}].ipam"),
            "an xconnect network has no endpoints to give addresses to",
        );
        return None;
    }
    let subnet = match (&raw.subnet, gw) {
        (Some(s), _) => match s.parse::<Ipv4Cidr>() {
            Err(e) => {
                ck.err(at("subnet"), e.to_string());
                return None;
            }
            Ok(c) if c.addr() != c.network() => {
                ck.err(
                    at("subnet"),
                    format!(
                        "{c} has host bits set; the subnet is {}/{}",
                        c.network(),
                        c.prefix()
                    ),
                );
                return None;
            }
            Ok(c) => c,
        },
        (None, Some(g)) => Ipv4Cidr::new(g.network(), g.prefix())?,
        (None, None) => {
            ck.err(
                at("subnet"),
                format!("{REQUIRED} (the pool's IPv4 subnet, like 10.82.0.0/24)"),
            );
            return None;
        }
    };
    let addr = |field: &str, s: &str, ck: &mut Checker| -> Option<Ipv4Addr> {
        match s.trim().parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                ck.err(at(field), format!("invalid IPv4 address {s:?}"));
                None
            }
        }
    };
    let range = match &raw.range {
        None => None,
        Some(r) => {
            let Some((a, b)) = r.split_once('-') else {
                ck.err(
                    at("range"),
                    format!(
                        "{r:?} is not a range: expected FIRST-LAST, like 10.82.0.10-10.82.0.200"
                    ),
                );
                return None;
            };
            Some((addr("range", a, ck)?, addr("range", b, ck)?))
        }
    };
    let mut reserved = Vec::new();
    for (j, s) in raw.reserved.iter().flatten().enumerate() {
        reserved.push(addr(&format!("reserved[{j}]"), s, ck)?);
    }
    let cfg = IpamCfg {
        subnet,
        range,
        reserved,
        gateway: gw.map(|g| g.addr()),
        host_prefix: if p2p { 32 } else { subnet.prefix() },
    };
    if let Err(why) = crate::ipam::validate(&pool_spec(&cfg)) {
        let field = if raw.range.is_some() {
            at("range")
        } else {
            at("subnet")
        };
        ck.err(field, why);
        return None;
    }
    Some(Some(cfg))
}

/// The IPAM module's view of a network's pool.
pub(crate) fn pool_spec(p: &IpamCfg) -> PoolSpec {
    PoolSpec {
        subnet: (IpAddr::V4(p.subnet.addr()), p.subnet.prefix()),
        gateway: p.gateway.map(IpAddr::V4),
        range: p.range.map(|(a, b)| (IpAddr::V4(a), IpAddr::V4(b))),
        reserved: p.reserved.iter().copied().map(IpAddr::V4).collect(),
    }
}
