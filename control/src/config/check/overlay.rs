//! Checks of `overlay` networks: `[networks.vxlan]` and its `fdb` entries.

use std::net::Ipv4Addr;

use super::super::raw::{RawConfig, RawNetwork};
use super::*;

/// Parses a unicast, routable IPv4 address for a VTEP at `field`.
fn vtep_addr(ck: &mut Checker, field: &str, s: &str) -> Option<Ipv4Addr> {
    match s.parse::<Ipv4Addr>() {
        Err(_) => {
            ck.err(
                field,
                format!("{s:?} is not an IPv4 address (VTEPs are reached over IPv4)"),
            );
            None
        }
        Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() => {
            ck.err(
                field,
                format!("{a} cannot be a VTEP: it must be a unicast address"),
            );
            None
        }
        Ok(a) => Some(a),
    }
}

/// The IPv4 addresses written on port `name` (the bad ones are reported with the port).
fn port_v4(raw: &RawConfig, name: &str) -> Vec<Ipv4Addr> {
    raw.ports
        .iter()
        .filter(|p| p.name.as_deref() == Some(name))
        .flat_map(|p| p.addresses.iter().flatten())
        .filter_map(|a| match a.parse::<IpCidr>() {
            Ok(IpCidr::V4(c)) => Some(c.addr()),
            _ => None,
        })
        .collect()
}

/// An overlay network's `[networks.vxlan]`; `Some(None)` for other modes, `None` when something is wrong.
pub(super) fn check_overlay(
    ck: &mut Checker,
    i: usize,
    n: &RawNetwork,
    mode: Option<NetworkMode>,
    raw: &RawConfig,
) -> Option<Option<OverlayCfg>> {
    let at = |f: &str| format!("networks[{i}].vxlan.{f}");
    if mode != Some(NetworkMode::Overlay) {
        if n.vxlan.is_some() && mode.is_some() {
            ck.err(
                format!("networks[{i}].vxlan"),
                format!(
                    "`vxlan` is only for overlay networks (this one is {})",
                    n.mode.as_deref().unwrap_or("?")
                ),
            );
            return None;
        }
        return Some(None);
    }
    let Some(v) = &n.vxlan else {
        ck.err(
            format!("networks[{i}].vxlan"),
            format!("{REQUIRED}: an overlay network needs a [networks.vxlan] table with at least `vni` and `underlay`"),
        );
        return None;
    };
    let mut ok = true;
    if !n.addresses.as_ref().is_none_or(Vec::is_empty) {
        ck.err(
            format!("networks[{i}].addresses"),
            "an overlay network has no gateway on the router (the router is its VTEP, not a host on it); route through an endpoint instead",
        );
        ok = false;
    }
    let vni = match v.vni {
        None => {
            ck.err(at("vni"), format!("{REQUIRED} (1..={MAX_VNI})"));
            None
        }
        Some(x) => ck.range::<u32>(&at("vni"), "vni", x, 1..=MAX_VNI as i64),
    };
    // Two overlays with one VNI on one UDP port would be one network: the decapsulation could not tell them apart.
    if let Some(vni) = vni {
        let port_of = |x: &RawNetwork| {
            x.vxlan
                .as_ref()
                .and_then(|v| v.port)
                .unwrap_or(DEFAULT_VXLAN_PORT as i64)
        };
        if let Some((j, _)) = raw.networks.iter().enumerate().take(i).find(|(_, o)| {
            o.mode.as_deref() == Some("overlay")
                && o.vxlan.as_ref().and_then(|v| v.vni) == Some(vni as i64)
                && port_of(o) == port_of(n)
        }) {
            ck.err(
                at("vni"),
                format!("VNI {vni} is already used by networks[{j}] on the same UDP port"),
            );
            ok = false;
        }
    }
    let underlay = match v.underlay.as_deref() {
        None => {
            ck.err(
                at("underlay"),
                format!("{REQUIRED} (the routed port, with `addresses`, that carries the VXLAN packets)"),
            );
            None
        }
        Some(u) if n.ports.iter().flatten().any(|p| p == u) => {
            ck.err(
                at("underlay"),
                format!("port {u:?} is the underlay and cannot also be an endpoint port"),
            );
            None
        }
        Some(u) => match raw.ports.iter().find(|p| p.name.as_deref() == Some(u)) {
            None => {
                let names = unique_names(raw.ports.iter().map(|p| p.name.as_deref()));
                ck.err(at("underlay"), no_such("port", u, &names));
                None
            }
            Some(_) if port_v4(raw, u).is_empty() => {
                ck.err(
                    at("underlay"),
                    format!("port {u:?} has no IPv4 `addresses`: the underlay is a routed port and the local VTEP is one of its addresses"),
                );
                None
            }
            Some(_) => Some(u.to_string()),
        },
    };
    let local = match (&underlay, v.local.as_deref()) {
        (None, _) => None,
        (Some(u), None) => port_v4(raw, u).first().copied(),
        (Some(u), Some(s)) => {
            match vtep_addr(ck, &at("local"), s) {
                Some(a) if port_v4(raw, u).contains(&a) => Some(a),
                Some(a) => {
                    ck.err(
                    at("local"),
                    format!("{a} is not an address of the underlay port {u:?} (its IPv4 addresses: {})",
                        port_v4(raw, u).iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")),
                );
                    None
                }
                None => None,
            }
        }
    };
    let mut remotes = Vec::new();
    for (k, s) in v.remotes.iter().flatten().enumerate() {
        let field = at(&format!("remotes[{k}]"));
        match vtep_addr(ck, &field, s) {
            Some(a) if Some(a) == local => {
                ck.err(&field, format!("{a} is the local VTEP"));
                ok = false;
            }
            Some(a) if remotes.contains(&a) => {
                ck.err(&field, format!("{a} is listed twice"));
                ok = false;
            }
            Some(a) => remotes.push(a),
            None => ok = false,
        }
    }
    if remotes.len() > MAX_OVERLAY_ENTRIES {
        ck.err(
            at("remotes"),
            format!("at most {MAX_OVERLAY_ENTRIES} remote VTEPs"),
        );
        ok = false;
    }
    let port = opt_range(
        ck,
        &at("port"),
        "port",
        v.port,
        1..=65535,
        DEFAULT_VXLAN_PORT,
    );
    let ttl = opt_range(ck, &at("ttl"), "ttl", v.ttl, 1..=255, DEFAULT_VXLAN_TTL);
    let underlay_mtu = raw
        .router
        .as_ref()
        .and_then(|r| r.mtu)
        .and_then(|m| u16::try_from(m).ok())
        .unwrap_or(RouterCfg::default().mtu);
    let max_mtu = underlay_mtu
        .saturating_sub(VXLAN_OVERHEAD)
        .max(MIN_OVERLAY_MTU);
    let mtu = match v.mtu {
        None => Some(max_mtu),
        Some(m) if m > max_mtu as i64 && m <= u16::MAX as i64 => {
            ck.err(
                at("mtu"),
                format!("mtu {m} is too large: at most the underlay MTU ({underlay_mtu}, `[router] mtu`) minus {VXLAN_OVERHEAD} of VXLAN headers = {max_mtu}"),
            );
            None
        }
        Some(m) => ck.range::<u16>(
            &at("mtu"),
            "mtu",
            m,
            MIN_OVERLAY_MTU as i64..=max_mtu as i64,
        ),
    };
    let mut fdb = Vec::new();
    let mut seen: HashMap<MacAddr, usize> = HashMap::new();
    for (k, e) in v.fdb.iter().enumerate() {
        let f = |x: &str| at(&format!("fdb[{k}].{x}"));
        let m = match e.mac.as_deref() {
            None => {
                ck.err(f("mac"), REQUIRED);
                None
            }
            Some(s) => mac(ck, &f("mac"), s, true),
        };
        let vtep = match e.vtep.as_deref() {
            None => {
                ck.err(f("vtep"), REQUIRED);
                None
            }
            Some(s) => match vtep_addr(ck, &f("vtep"), s) {
                Some(a) if Some(a) == local => {
                    ck.err(
                        f("vtep"),
                        format!("{a} is the local VTEP: a local MAC is learned on its port"),
                    );
                    None
                }
                other => other,
            },
        };
        if let Some(m) = m {
            if let Some(first) = seen.insert(m, k) {
                ck.err(f("mac"), format!("MAC {m} is already fdb[{first}]"));
                ok = false;
            }
        }
        match (m, vtep) {
            (Some(mac), Some(vtep)) => fdb.push(FdbCfg { mac, vtep }),
            _ => ok = false,
        }
    }
    if fdb.len() > MAX_OVERLAY_ENTRIES {
        ck.err(
            at("fdb"),
            format!("at most {MAX_OVERLAY_ENTRIES} static entries"),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Some(OverlayCfg {
        vni: vni?,
        underlay: underlay?,
        local: local?,
        remotes,
        port: port?,
        df: v.df.unwrap_or(false),
        ttl: ttl?,
        mtu: mtu?,
        fdb,
    }))
}
