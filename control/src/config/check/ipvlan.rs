//! Checks of `ipvlan` networks and of the endpoint fields that go with routed ports (`routes`, and no
//! `network` for a host cabled to a routed port).

use std::net::IpAddr;

use super::super::raw::{RawConfig, RawNetwork};
use super::*;

/// An ipvlan network's options; `Some(None)` for other modes, `None` when something is wrong.
pub(super) fn check_ipvlan(
    ck: &mut Checker,
    i: usize,
    n: &RawNetwork,
    mode: Option<NetworkMode>,
    raw: &RawConfig,
) -> Option<Option<IpvlanCfg>> {
    let at = |f: &str| format!("networks[{i}].{f}");
    if mode != Some(NetworkMode::Ipvlan) {
        if n.ipvlan_mode.is_some() && mode.is_some() {
            ck.err(
                at("ipvlan_mode"),
                format!(
                    "`ipvlan_mode` is only for ipvlan networks (this one is {})",
                    n.mode.as_deref().unwrap_or("?")
                ),
            );
            return None;
        }
        return Some(None);
    }
    let ipvlan_mode = match n.ipvlan_mode.as_deref() {
        None | Some("l3") => Some(IpvlanMode::L3),
        Some("l2") => Some(IpvlanMode::L2),
        Some(other) => {
            ck.err(
                at("ipvlan_mode"),
                format!("unknown ipvlan_mode {other:?} (expected one of: l2, l3)"),
            );
            None
        }
    };
    let uplink = match n.uplink.as_deref() {
        None => {
            ck.err(
                at("uplink"),
                format!("{REQUIRED} (the routed port whose MAC the endpoints share)"),
            );
            None
        }
        Some(u) if n.ports.iter().flatten().any(|p| p == u) => {
            ck.err(
                at("uplink"),
                format!("port {u:?} is the uplink and cannot also be an endpoint port"),
            );
            None
        }
        Some(u) => match raw.ports.iter().find(|p| p.name.as_deref() == Some(u)) {
            None => {
                let names = unique_names(raw.ports.iter().map(|p| p.name.as_deref()));
                ck.err(at("uplink"), no_such("port", u, &names));
                None
            }
            Some(p)
                if ipvlan_mode == Some(IpvlanMode::L3)
                    && p.addresses.as_ref().is_none_or(Vec::is_empty) =>
            {
                ck.err(
                    at("uplink"),
                    format!("port {u:?} has no `addresses`: an ipvlan L3 uplink is a routed port"),
                );
                None
            }
            Some(p)
                if ipvlan_mode == Some(IpvlanMode::L2)
                    && p.addresses.as_ref().is_some_and(|a| !a.is_empty()) =>
            {
                ck.err(
                    at("uplink"),
                    format!("port {u:?} is a routed port (it has `addresses`); an ipvlan L2 uplink is a plain port on the LAN"),
                );
                None
            }
            Some(_) if ipvlan_mode == Some(IpvlanMode::L2) => {
                // The uplink of an L2 network belongs to it alone.
                match raw.networks.iter().enumerate().find(|(j, o)| {
                    *j != i
                        && (o.ports.iter().flatten().any(|p| p == u)
                            || o.uplink.as_deref() == Some(u))
                }) {
                    Some((j, o)) => {
                        ck.err(
                            at("uplink"),
                            format!(
                                "port {u:?} is already used by network {:?} (networks[{j}])",
                                o.name.as_deref().unwrap_or("?")
                            ),
                        );
                        None
                    }
                    None => Some(u.to_string()),
                }
            }
            Some(_) => Some(u.to_string()),
        },
    };
    Some(Some(IpvlanCfg {
        uplink: uplink?,
        ipvlan_mode: ipvlan_mode?,
    }))
}

/// An endpoint's `routes`: each `PREFIX via GATEWAY`, the gateway of the prefix's family.
pub(super) fn check_endpoint_routes(
    ck: &mut Checker,
    i: usize,
    routes: Option<&[String]>,
) -> Option<Vec<EndpointRoute>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (j, r) in routes.unwrap_or_default().iter().enumerate() {
        let at = format!("endpoints[{i}].routes[{j}]");
        let parsed = r.split_once(" via ").and_then(|(p, v)| {
            let prefix = p.trim().parse::<IpCidr>().ok()?;
            let via = v.trim().parse::<IpAddr>().ok()?;
            Some((prefix, via))
        });
        match parsed {
            None => {
                ck.err(
                    at,
                    format!("{r:?} is not a route: expected PREFIX via GATEWAY, like \"10.83.0.0/24 via 10.80.0.1\""),
                );
                ok = false;
            }
            Some((prefix, via)) if prefix.is_v4() != via.is_ipv4() => {
                ck.err(
                    at,
                    format!("gateway {via} is not of the family of {prefix}"),
                );
                ok = false;
            }
            Some((prefix, via)) => out.push(EndpointRoute { prefix, via }),
        }
    }
    ok.then_some(out)
}
