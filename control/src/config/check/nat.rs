//! Checks of the NAT part: `[nat]`, the endpoints' `publish` lists and `[[services]]`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::super::nat::*;
use super::super::raw::{RawConfig, RawNat, RawService};
use super::*;

/// The IPv4 addresses written on port `name` (valid ones only).
fn port_v4(raw: &RawConfig, name: &str) -> Option<Vec<Ipv4Addr>> {
    let p = raw.ports.iter().find(|p| p.name.as_deref() == Some(name))?;
    Some(
        p.addresses
            .iter()
            .flatten()
            .filter_map(|s| match s.parse::<IpCidr>() {
                Ok(IpCidr::V4(c)) => Some(c.addr()),
                _ => None,
            })
            .collect(),
    )
}

/// Whether network `n` can be masqueraded (its endpoints reach the outside through the router), and if not
/// why.
fn masquerade_problem(n: &super::super::raw::RawNetwork) -> Option<&'static str> {
    match n.mode.as_deref() {
        Some("bridge") if n.addresses.as_ref().is_some_and(|a| !a.is_empty()) => None,
        Some("bridge") => Some("a bridge network without `addresses` has no gateway on the router"),
        Some("point-to-point") => None,
        Some("ipvlan") if n.ipvlan_mode.as_deref() != Some("l2") => None,
        _ => Some("only bridge networks with `addresses`, point-to-point and ipvlan l3 networks are routed by wharf"),
    }
}

/// Workers the file asks for (for the port range's split).
fn workers(raw: &RawConfig) -> usize {
    raw.dataplane
        .as_ref()
        .and_then(|d| {
            d.cores
                .as_ref()
                .map(|c| c.len())
                .or(d.workers.and_then(|w| usize::try_from(w).ok()))
        })
        .unwrap_or(1)
        .max(1)
}

/// `[nat]`, every endpoint's `publish` and `[[services]]`, checked together (published ports are unique
/// across endpoints and services).
pub(super) fn check_nat(
    ck: &mut Checker,
    raw: &RawConfig,
) -> Option<(Option<NatCfg>, Vec<ServiceCfg>)> {
    let before = ck.problems.len();
    let Some(n) = raw.nat.as_ref() else {
        for (i, e) in raw.endpoints.iter().enumerate() {
            if e.publish.as_ref().is_some_and(|p| !p.is_empty()) {
                ck.err(
                    format!("endpoints[{i}].publish"),
                    "publishing a port needs a [nat] section naming the outside port (`outside = \"PORT\"`)",
                );
            }
        }
        if !raw.services.is_empty() {
            ck.err(
                "services[0]",
                "a service publishes a port, which needs a [nat] section naming the outside port",
            );
        }
        return (ck.problems.len() == before).then_some((None, Vec::new()));
    };
    let RawNat {
        outside,
        masquerade,
        port_range,
        max_sessions,
        udp_mapping,
        tcp_established_s,
        tcp_transitory_s,
        tcp_close_s,
        udp_s,
        udp_assured_s,
        icmp_s,
    } = n;
    let port_names = unique_names(raw.ports.iter().map(|p| p.name.as_deref()));
    let mut external: Vec<Ipv4Addr> = Vec::new();
    match outside.as_deref() {
        None => ck.err("nat.outside", REQUIRED),
        Some(p) if !port_names.contains(&p) => {
            ck.err("nat.outside", no_such("port", p, &port_names))
        }
        Some(p) => {
            external = port_v4(raw, p).unwrap_or_default();
            if external.is_empty() {
                ck.err(
                    "nat.outside",
                    format!(
                        "port {p:?} has no IPv4 address: the outside port must be a routed port with \
                         `addresses` (its IPv4 addresses are the external addresses)"
                    ),
                );
            }
        }
    }
    let masquerade = match masquerade {
        Some(list) => {
            let net_names = unique_names(raw.networks.iter().map(|n| n.name.as_deref()));
            for (j, name) in list.iter().enumerate() {
                let routed_port = raw.ports.iter().any(|p| {
                    p.name.as_deref() == Some(name)
                        && p.addresses.as_ref().is_some_and(|a| !a.is_empty())
                });
                if routed_port && outside.as_deref() == Some(name) {
                    ck.err(
                        format!("nat.masquerade[{j}]"),
                        format!("{name:?} is the outside port itself"),
                    );
                    continue;
                }
                if routed_port {
                    continue;
                }
                match raw
                    .networks
                    .iter()
                    .find(|n| n.name.as_deref() == Some(name))
                {
                    None => ck.err(
                        format!("nat.masquerade[{j}]"),
                        format!(
                            "{name:?} is neither a network (networks are: {}) nor a routed port (one with `addresses`)",
                            super::list(&net_names)
                        ),
                    ),
                    Some(net) => {
                        if let Some(why) = masquerade_problem(net) {
                            ck.err(
                                format!("nat.masquerade[{j}]"),
                                format!("network {name:?}: {why}"),
                            );
                        }
                    }
                }
            }
            list.clone()
        }
        None => raw
            .networks
            .iter()
            .filter(|n| {
                matches!(n.mode.as_deref(), Some("bridge") | Some("point-to-point"))
                    && masquerade_problem(n).is_none()
            })
            .filter_map(|n| n.name.clone())
            .collect(),
    };
    let port_range = match port_range.as_deref() {
        None => Some(DEFAULT_PORT_RANGE),
        Some(s) => {
            let parsed = s.split_once('-').and_then(|(a, b)| {
                Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
            });
            let w = workers(raw) as u32;
            match parsed {
                None => {
                    ck.err(
                        "nat.port_range",
                        format!("{s:?} is not LO-HI, e.g. \"1024-65535\""),
                    );
                    None
                }
                Some((lo, hi)) if lo == 0 || lo > hi => {
                    ck.err(
                        "nat.port_range",
                        format!("{s:?}: need 1 <= LO <= HI <= 65535"),
                    );
                    None
                }
                Some((lo, hi)) if (hi - lo) as u32 + 1 < MIN_PORTS_PER_WORKER * w => {
                    ck.err(
                        "nat.port_range",
                        format!(
                            "{s:?} has {} ports; {w} worker(s) need at least {} ({MIN_PORTS_PER_WORKER} each)",
                            (hi - lo) as u32 + 1,
                            MIN_PORTS_PER_WORKER * w
                        ),
                    );
                    None
                }
                Some(r) => Some(r),
            }
        }
    };
    let max_sessions = ck.range_or(
        "nat.max_sessions",
        "max_sessions",
        *max_sessions,
        usize_range(&MAX_SESSIONS_RANGE),
        DEFAULT_MAX_SESSIONS,
    );
    let udp_mapping = match udp_mapping.as_deref() {
        None | Some("endpoint-independent") => Some(UdpMapping::EndpointIndependent),
        Some("address-and-port-dependent") => Some(UdpMapping::AddressAndPortDependent),
        Some(other) => {
            ck.err(
                "nat.udp_mapping",
                format!(
                    "{other:?}: use \"endpoint-independent\" or \"address-and-port-dependent\""
                ),
            );
            None
        }
    };
    let d = NatTimeoutsCfg::default();
    let mut t = |name: &str, v: Option<i64>, default: u32| {
        ck.range_or(
            &format!("nat.{name}"),
            name,
            v,
            i64_range(&TIMEOUT_RANGE),
            default,
        )
    };
    let timeouts = (|| {
        Some(NatTimeoutsCfg {
            tcp_established_s: t("tcp_established_s", *tcp_established_s, d.tcp_established_s)?,
            tcp_transitory_s: t("tcp_transitory_s", *tcp_transitory_s, d.tcp_transitory_s)?,
            tcp_close_s: t("tcp_close_s", *tcp_close_s, d.tcp_close_s)?,
            udp_s: t("udp_s", *udp_s, d.udp_s)?,
            udp_assured_s: t("udp_assured_s", *udp_assured_s, d.udp_assured_s)?,
            icmp_s: t("icmp_s", *icmp_s, d.icmp_s)?,
        })
    })();

    // Published ports: each parses, listens on an external address, and is unique.
    let mut taken: HashMap<(Proto, Option<Ipv4Addr>, u16), String> = HashMap::new();
    let mut claim = |ck: &mut Checker, field: String, spec: PublishSpec| {
        if let Some(h) = spec.host {
            if !external.is_empty() && !external.contains(&h) {
                ck.err(
                    field.clone(),
                    format!(
                        "{h} is not an external address (the outside port's: {})",
                        external
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                return;
            }
        }
        // A port on every external address clashes with the same port on any one of them.
        let clash = taken.iter().find(|((p, h, port), _)| {
            *p == spec.proto
                && *port == spec.port
                && (h.is_none() || spec.host.is_none() || *h == spec.host)
        });
        if let Some((_, first)) = clash {
            ck.err(
                field,
                format!(
                    "{}/{} is already published by {first}",
                    spec.port, spec.proto
                ),
            );
            return;
        }
        taken.insert((spec.proto, spec.host, spec.port), field);
    };
    let mut published = Vec::new();
    for (i, e) in raw.endpoints.iter().enumerate() {
        for (j, s) in e.publish.iter().flatten().enumerate() {
            let field = format!("endpoints[{i}].publish[{j}]");
            match s.parse::<PublishSpec>() {
                Err(why) => ck.err(field, why),
                Ok(spec) => {
                    claim(ck, field, spec);
                    if let Some(name) = &e.name {
                        published.push(PublishedCfg {
                            endpoint: name.clone(),
                            spec,
                        });
                    }
                }
            }
        }
    }
    let services = check_services(ck, raw, &mut claim);
    if ck.problems.len() != before {
        return None;
    }
    Some((
        Some(NatCfg {
            outside: outside.clone()?,
            masquerade,
            port_range: port_range?,
            max_sessions: max_sessions?,
            udp_mapping: udp_mapping?,
            timeouts: timeouts?,
            published,
        }),
        services,
    ))
}

/// `[[services]]`.
fn check_services(
    ck: &mut Checker,
    raw: &RawConfig,
    claim: &mut impl FnMut(&mut Checker, String, PublishSpec),
) -> Vec<ServiceCfg> {
    let endpoint_names = unique_names(raw.endpoints.iter().map(|e| e.name.as_deref()));
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, s) in raw.services.iter().enumerate() {
        let RawService {
            name,
            publish,
            backends,
        } = s;
        let at = |f: &str| format!("services[{i}].{f}");
        let mut ok = true;
        match name.as_deref() {
            None => {
                ck.err(at("name"), REQUIRED);
                ok = false;
            }
            Some(n) => {
                if let Some(why) = bad_name("service", n, MAX_ENDPOINT_NAME) {
                    ck.err(at("name"), why);
                    ok = false;
                } else if let Some(first) = names.insert(n, i) {
                    ck.err(
                        at("name"),
                        format!("duplicate service name {n:?} (first used by services[{first}])"),
                    );
                    ok = false;
                }
            }
        }
        let spec = match publish.as_deref() {
            None => {
                ck.err(at("publish"), REQUIRED);
                None
            }
            Some(p) => match p.parse::<PublishSpec>() {
                Err(why) => {
                    ck.err(at("publish"), why);
                    None
                }
                Ok(spec) => {
                    claim(ck, at("publish"), spec);
                    Some(spec)
                }
            },
        };
        let list = backends.clone().unwrap_or_default();
        if list.is_empty() {
            ck.err(
                at("backends"),
                "a service needs at least one backend endpoint",
            );
            ok = false;
        }
        for (j, b) in list.iter().enumerate() {
            if !endpoint_names.contains(&b.as_str()) {
                ck.err(
                    format!("services[{i}].backends[{j}]"),
                    no_such("endpoint", b, &endpoint_names),
                );
                ok = false;
            } else if list[..j].contains(b) {
                ck.err(
                    format!("services[{i}].backends[{j}]"),
                    format!("endpoint {b:?} is listed twice"),
                );
                ok = false;
            }
        }
        if let (true, Some(n), Some(spec)) = (ok, name, spec) {
            out.push(ServiceCfg {
                name: n.clone(),
                publish: spec,
                backends: list,
            });
        }
    }
    out
}

/// `[nat]` back to its written form.
pub(super) fn nat_to_raw(n: &NatCfg) -> RawNat {
    let t = &n.timeouts;
    RawNat {
        outside: Some(n.outside.clone()),
        masquerade: Some(n.masquerade.clone()),
        port_range: Some(format!("{}-{}", n.port_range.0, n.port_range.1)),
        max_sessions: Some(i64::try_from(n.max_sessions).unwrap_or(i64::MAX)),
        udp_mapping: Some(n.udp_mapping.as_str().to_string()),
        tcp_established_s: Some(i64::from(t.tcp_established_s)),
        tcp_transitory_s: Some(i64::from(t.tcp_transitory_s)),
        tcp_close_s: Some(i64::from(t.tcp_close_s)),
        udp_s: Some(i64::from(t.udp_s)),
        udp_assured_s: Some(i64::from(t.udp_assured_s)),
        icmp_s: Some(i64::from(t.icmp_s)),
    }
}

/// A service back to its written form.
pub(super) fn service_to_raw(s: &ServiceCfg) -> RawService {
    RawService {
        name: Some(s.name.clone()),
        publish: Some(s.publish.to_string()),
        backends: Some(s.backends.clone()),
    }
}
