//! Compilation of a validated [`Config`] into an immutable [`Snapshot`] of tables.
//!
//! Compilation reads the config (and the previous snapshot, for learned state to carry over); it never
//! touches ports or the running dataplane, so a failure here leaves the running snapshot as it was.

mod l3;
mod nat;
mod overlay;

use crate::config::{Config, IpvlanMode, NetworkMode};
use pipelines::bridge::mac_table::MacTable;
use pipelines::bridge::{mac_key, BridgeDomain, Egress};
use pipelines::ipvlan::IpvlanNet;
use pipelines::l2::{Domain, L2Ingress};
use pipelines::macvlan::MacvlanNet;
use pipelines::snapshot::PortRole;
use pipelines::xconnect::{MacRewrite, XconnectTable};
use pipelines::Snapshot;
use std::sync::Arc;

/// What compilation needs to know about the running system besides the config.
#[derive(Default, Clone, Copy)]
pub struct CompileEnv<'a> {
    /// The snapshot being replaced: bridge domains keep their learned MAC tables across a reload.
    pub previous: Option<&'a Snapshot>,
    /// Each port's own MAC (`None` when the backend has none), by port index: the host's MAC on a macvlan
    /// uplink.
    pub port_macs: &'a [Option<[u8; 6]>],
    /// How each port spreads what it receives over its queues, by port index (missing: unknown): the NAT
    /// steers masquerade answers to the worker that owns their flow by it.
    pub port_steering: &'a [dataplane::rss::Steering],
    /// The packet pool, for packets the router originates without an input packet (announcements).
    pub pool: Option<&'a dataplane::Pool>,
    /// The queues to the router's host stack (the same ones for every snapshot); `None`: no host stack.
    pub host: Option<&'a Arc<pipelines::l3::host::HostQueues>>,
}

/// What compilation reads of the opened ports ([`CompileEnv::port_macs`], [`CompileEnv::port_steering`]),
/// gathered once from their [`dataplane::PortInfo`].
#[derive(Clone, Debug, Default)]
pub struct PortFacts {
    /// Each port's own MAC.
    pub macs: Vec<Option<[u8; 6]>>,
    /// How each port spreads its received frames over its queues.
    pub steering: Vec<dataplane::rss::Steering>,
}

impl PortFacts {
    /// The facts of `ports`, by port index.
    pub fn of(ports: &[Arc<dyn dataplane::Port>]) -> PortFacts {
        let (macs, steering) = ports
            .iter()
            .map(|p| {
                let i = p.info();
                (i.mac, i.steering)
            })
            .unzip();
        PortFacts { macs, steering }
    }

    /// A compile environment with these facts and nothing else (fill the rest with struct update syntax).
    pub fn env(&self) -> CompileEnv<'_> {
        CompileEnv {
            port_macs: &self.macs,
            port_steering: &self.steering,
            ..Default::default()
        }
    }
}

/// Compiles `cfg` into snapshot number `generation`. Port indices are the order of `[[ports]]` in the config.
pub fn compile(cfg: &Config, generation: u64, env: CompileEnv<'_>) -> Result<Snapshot, String> {
    let names: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let index = |name: &str| -> Result<u16, String> {
        names
            .iter()
            .position(|n| n == name)
            .map(|i| i as u16)
            .ok_or_else(|| format!("no port named {name:?}"))
    };
    let mut roles = vec![PortRole::Unused; names.len()];
    let mut l2_ports: Vec<L2Ingress> = vec![L2Ingress::default(); names.len()];
    let mut xc = XconnectTable::new(names.len());
    let mut bridges = Vec::new();
    let mut macvlans = Vec::new();
    let mut ipvlans = Vec::new();
    for net in &cfg.networks {
        match net.mode {
            NetworkMode::Xconnect => {
                let [a, b] = net.ports.as_slice() else {
                    return Err(format!(
                        "network {}: a cross-connect joins exactly two ports",
                        net.name
                    ));
                };
                let (a, b) = (index(a)?, index(b)?);
                xc.patch(a, b);
                roles[a as usize] = PortRole::Xconnect;
                roles[b as usize] = PortRole::Xconnect;
                for rw in &net.rewrite {
                    let p = index(&rw.port)? as usize;
                    xc.rewrite[p] = Some(MacRewrite {
                        src: rw.src_mac.map(|m| m.0),
                        dst: rw.dst_mac.map(|m| m.0),
                    });
                }
            }
            // An overlay is a bridge domain too; its VXLAN side is attached below.
            NetworkMode::Bridge | NetworkMode::Overlay => {
                let b = net
                    .bridge
                    .as_ref()
                    .ok_or_else(|| format!("network {}: bridge options missing", net.name))?;
                let bd_index = bridges.len() as u16;
                let mut members = Vec::new();
                let mut egress = vec![None; names.len()];
                for p in &net.ports {
                    let i = index(p)?;
                    members.push((i, Egress::Untagged));
                    egress[i as usize] = Some(Egress::Untagged);
                    l2_ports[i as usize].add(None, Domain::Bridge(bd_index));
                }
                for p in &b.trunk_ports {
                    let i = index(p)?;
                    let vid = b.vlan.ok_or_else(|| {
                        format!("network {}: trunk ports without a vlan", net.name)
                    })?;
                    members.push((i, Egress::Tagged(vid)));
                    egress[i as usize] = Some(Egress::Tagged(vid));
                    l2_ports[i as usize].add(Some(vid), Domain::Bridge(bd_index));
                }
                let table = previous_table(env.previous, &net.name, b.mac_limit)
                    .unwrap_or_else(|| Arc::new(MacTable::new(b.mac_limit)));
                let mut statics = Vec::new();
                for s in &b.static_macs {
                    statics.push((mac_key(&s.mac.0), index(&s.port)?));
                }
                statics.sort_unstable();
                bridges.push(BridgeDomain {
                    name: net.name.clone(),
                    members,
                    egress,
                    table,
                    statics,
                    flood_unknown_unicast: b.flood_unknown_unicast,
                    gateway_mac: b.gateway_mac.map(|m| m.0),
                    gateway_iface: None,
                    aging_s: b.aging_s,
                    overlay: None,
                });
            }
            NetworkMode::Macvlan => {
                let m = net
                    .macvlan
                    .as_ref()
                    .ok_or_else(|| format!("network {}: macvlan options missing", net.name))?;
                let net_index = macvlans.len() as u16;
                let uplink = index(&m.uplink)?;
                l2_ports[uplink as usize].add(m.vlan, Domain::MacvlanUplink(net_index));
                let mut endpoints = Vec::new();
                for (ep, p) in net.ports.iter().enumerate() {
                    let i = index(p)?;
                    // The endpoint cabled to this port names the MAC; a port without an endpoint gets the
                    // generated one for the port's name, so the table is complete either way.
                    let mac = cfg
                        .endpoints
                        .iter()
                        .find(|e| e.port == *p && e.network == net.name)
                        .map(|e| e.effective_mac())
                        .unwrap_or_else(|| crate::config::endpoint_mac(&net.name, p));
                    endpoints.push((i, mac.0));
                    l2_ports[i as usize].add(
                        None,
                        Domain::MacvlanEndpoint {
                            net: net_index,
                            ep: ep as u16,
                        },
                    );
                }
                let mut by_mac: Vec<(u64, u16)> = endpoints
                    .iter()
                    .enumerate()
                    .map(|(e, (_, mac))| (mac_key(mac), e as u16))
                    .collect();
                by_mac.sort_unstable();
                if by_mac.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(format!("network {}: two endpoints share a MAC", net.name));
                }
                macvlans.push(MacvlanNet {
                    name: net.name.clone(),
                    uplink,
                    uplink_egress: m.vlan.map_or(Egress::Untagged, Egress::Tagged),
                    endpoints,
                    by_mac,
                    host_mac: env.port_macs.get(uplink as usize).copied().flatten(),
                    allow_host: m.allow_host,
                });
            }
            NetworkMode::Ipvlan
                if net
                    .ipvlan
                    .as_ref()
                    .is_some_and(|v| v.ipvlan_mode == IpvlanMode::L2) =>
            {
                let Some(v) = net.ipvlan.as_ref() else {
                    return Err(format!("network {}: ipvlan options missing", net.name));
                };
                let net_index = ipvlans.len() as u16;
                let uplink = index(&v.uplink)?;
                l2_ports[uplink as usize].add(None, Domain::IpvlanUplink(net_index));
                let mut endpoints = Vec::new();
                let (mut v4, mut v6) = (Vec::new(), Vec::new());
                for (ep, p) in net.ports.iter().enumerate() {
                    let i = index(p)?;
                    let e = cfg
                        .endpoints
                        .iter()
                        .find(|e| e.port == *p && e.network == net.name);
                    let mac = e
                        .map(|e| e.effective_mac())
                        .unwrap_or_else(|| crate::config::endpoint_mac(&net.name, p));
                    if let Some(e) = e {
                        if let Some(a) = e.address {
                            v4.push((u32::from(a.addr()), ep as u16));
                        }
                        if let Some(a6) = e.address6 {
                            v6.push((u128::from(a6.addr()), ep as u16));
                        }
                    }
                    endpoints.push((i, mac.0));
                    l2_ports[i as usize].add(
                        None,
                        Domain::IpvlanEndpoint {
                            net: net_index,
                            ep: ep as u16,
                        },
                    );
                }
                v4.sort_unstable();
                v6.sort_unstable();
                let mac = env
                    .port_macs
                    .get(uplink as usize)
                    .copied()
                    .flatten()
                    .unwrap_or_else(|| crate::config::endpoint_mac("router", &v.uplink).0);
                ipvlans.push(IpvlanNet {
                    name: net.name.clone(),
                    uplink,
                    mac,
                    endpoints,
                    v4,
                    v6,
                });
            }
            // Routed: compiled with the router's interfaces.
            NetworkMode::PointToPoint | NetworkMode::Ipvlan => {}
            mode => {
                return Err(format!(
                    "network {}: mode {mode} is not implemented yet",
                    net.name
                ))
            }
        }
    }
    let vxlan = overlay::attach(cfg, &mut bridges, env.previous)?;
    let mut l3 = l3::compile_l3(
        cfg,
        &index,
        env.port_macs,
        &mut bridges,
        &mut roles,
        env.previous,
        env.pool,
        env.host,
    )?;
    l3.nat = nat::compile_nat(cfg, &l3, &bridges, &names, &env)?;
    // Only now that everything compiled: entries on ports that left a domain would point nowhere.
    for bd in &bridges {
        bd.table.retain_ports(|p| {
            pipelines::vxlan::is_vtep_port(p)
                || bd.egress.get(p as usize).is_some_and(Option::is_some)
        });
    }
    for (i, ing) in l2_ports.into_iter().enumerate() {
        if ing.untagged.is_some() || ing.tagged.is_some() {
            roles[i] = PortRole::L2(Box::new(ing));
        }
    }
    Ok(Snapshot {
        generation,
        port_names: Arc::new(names),
        roles: Arc::new(roles),
        xconnect: Arc::new(xc),
        bridges: Arc::new(bridges),
        macvlans: Arc::new(macvlans),
        ipvlans: Arc::new(ipvlans),
        l3: Arc::new(l3),
        vxlan: Arc::new(vxlan),
    })
}

/// The learned table of bridge `name` in the previous snapshot, if it is there with the same limit.
fn previous_table(previous: Option<&Snapshot>, name: &str, limit: usize) -> Option<Arc<MacTable>> {
    previous?
        .bridges
        .iter()
        .find(|b| b.name == name && b.table.limit() == limit)
        .map(|b| b.table.clone())
}
