//! Compiles `[nat]`, the endpoints' `publish` and `[[services]]` into the NAT stage's tables
//! ([`pipelines::nat::stage::NatTables`]), keeping the previous snapshot's flows and queues when the NAT
//! identity (external addresses, port range, workers, table size, UDP mapping) is unchanged.

use super::CompileEnv;
use crate::config::{Config, UdpMapping};
use pipelines::bridge::BridgeDomain;
use pipelines::l3::{Attach, L3Tables};
use pipelines::nat::stage::{self, NatIdentity, NatShared, NatTables, Published, Target};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The endpoint `name`'s IPv4 address.
fn endpoint_v4(cfg: &Config, name: &str) -> Result<Ipv4Addr, String> {
    cfg.endpoints
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.address)
        .map(|a| a.addr())
        .ok_or_else(|| {
            format!("endpoint {name}: a published port needs the endpoint's IPv4 address")
        })
}

/// The NAT tables of `cfg`, or `None` without `[nat]`.
pub(super) fn compile_nat(
    cfg: &Config,
    l3: &L3Tables,
    bridges: &[BridgeDomain],
    port_names: &[String],
    env: &CompileEnv<'_>,
) -> Result<Option<Arc<NatTables>>, String> {
    let Some(n) = &cfg.nat else { return Ok(None) };
    let (previous, pool) = (env.previous, env.pool);
    let (outside, outside_port) = l3
        .ifaces
        .iter()
        .enumerate()
        .find_map(|(i, ifc)| match ifc.attach {
            Attach::Port { port, .. } if port_names.get(port as usize) == Some(&n.outside) => {
                Some((i, port as usize))
            }
            _ => None,
        })
        .ok_or_else(|| format!("nat: outside port {} is not a routed port", n.outside))?;
    let external: Vec<u32> = l3.ifaces[outside]
        .v4
        .iter()
        .map(|(a, _)| u32::from(*a))
        .collect();
    if external.is_empty() {
        return Err(format!(
            "nat: outside port {} has no IPv4 address",
            n.outside
        ));
    }
    // Which router interfaces belong to a masqueraded network.
    let masquerade: Vec<bool> = l3
        .ifaces
        .iter()
        .enumerate()
        .map(|(i, ifc)| {
            let net = match ifc.attach {
                _ if i == outside => None,
                Attach::Bridge { domain } => bridges.get(domain as usize).map(|b| b.name.as_str()),
                Attach::Port { port, .. } => port_names.get(port as usize).and_then(|p| {
                    // A routed port is named itself; an endpoint's link by its network.
                    if n.masquerade.contains(p) {
                        return Some(p.as_str());
                    }
                    cfg.network_of_port(p)
                        .map(|k| cfg.networks[k].name.as_str())
                }),
            };
            net.is_some_and(|name| n.masquerade.iter().any(|m| m == name))
        })
        .collect();
    let mut sorted = external.clone();
    sorted.sort_unstable();
    let identity = NatIdentity {
        external: sorted,
        range: n.port_range,
        workers: cfg.workers().len().min(u16::MAX as usize) as u16,
        limit: n.max_sessions,
        eim: n.udp_mapping == UdpMapping::EndpointIndependent,
    };
    let timeouts = n.timeouts.to_timeouts();
    let shared = match previous
        .and_then(|p| p.l3.nat.as_ref())
        .filter(|t| *t.shared.identity() == identity)
    {
        Some(t) => t.shared.clone(),
        None => {
            Arc::new(NatShared::new(identity, timeouts, pool).map_err(|e| format!("nat: {}", e.0))?)
        }
    };
    let hosts = |h: Option<Ipv4Addr>| -> Vec<u32> {
        match h {
            Some(h) => vec![u32::from(h)],
            None => external.clone(),
        }
    };
    let mut published = Vec::new();
    for p in &n.published {
        let b = u32::from(endpoint_v4(cfg, &p.endpoint)?);
        for addr in hosts(p.spec.host) {
            published.push(Published {
                proto: p.spec.proto.number(),
                addr,
                port: p.spec.port,
                target: Target::One(b, p.spec.target_port),
            });
        }
    }
    let mut services = Vec::new();
    for s in &cfg.services {
        let backends = s
            .backends
            .iter()
            .map(|e| endpoint_v4(cfg, e).map(|a| (u32::from(a), s.publish.target_port)))
            .collect::<Result<Vec<_>, _>>()?;
        let index = services.len() as u16;
        services.push(stage::service(&s.name, backends)?);
        for addr in hosts(s.publish.host) {
            published.push(Published {
                proto: s.publish.proto.number(),
                addr,
                port: s.publish.port,
                target: Target::Service(index),
            });
        }
    }
    Ok(Some(Arc::new(
        NatTables::new(
            shared,
            outside as u16,
            masquerade,
            external,
            &published,
            services,
            timeouts,
        )
        .with_steering(
            env.port_steering
                .get(outside_port)
                .cloned()
                .unwrap_or_default(),
        ),
    )))
}
