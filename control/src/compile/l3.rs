//! Compilation of the L3 part: router interfaces (a bridge's gateway, routed ports), the adjacencies, and the
//! IPv4 and IPv6 FIBs (connected, local and static routes).

use crate::config::{
    Config, IpCidr, IpvlanMode, NetworkMode, RouteKind, P2P_GATEWAY4, P2P_GATEWAY6,
};
use pipelines::bridge::BridgeDomain;
use pipelines::bridge::Egress;
use pipelines::fib::{Lpm4, Lpm6};
use pipelines::l3::host::HostQueues;
use pipelines::l3::neigh::NeighTable;
use pipelines::l3::{link_local_of, Adjacency, Attach, Interface, L3Tables};
use pipelines::snapshot::PortRole;
use pipelines::Snapshot;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The router's MAC on an interface that has no MAC of its own: locally administered and stable across
/// restarts (derived from the interface name like endpoint MACs).
fn router_mac(name: &str) -> [u8; 6] {
    crate::config::endpoint_mac("router", name).0
}

/// Adjacencies, deduplicated.
#[derive(Default)]
struct Adjacencies {
    list: Vec<Adjacency>,
    ecmp: Vec<u32>,
    index: HashMap<AdjKey, u32>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum AdjKey {
    One(AdjOne),
    Group(Vec<u32>),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum AdjOne {
    Local,
    Attached(u16),
    Gateway(u16, u128),
    Unreachable,
    Blackhole,
}

impl Adjacencies {
    fn one(&mut self, a: AdjOne) -> u32 {
        if let Some(&i) = self.index.get(&AdjKey::One(a)) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(match a {
            AdjOne::Local => Adjacency::Local,
            AdjOne::Attached(iface) => Adjacency::Attached { iface },
            AdjOne::Gateway(iface, via) => Adjacency::Gateway { iface, via },
            AdjOne::Unreachable => Adjacency::Unreachable,
            AdjOne::Blackhole => Adjacency::Blackhole,
        });
        self.index.insert(AdjKey::One(a), i);
        i
    }

    fn group(&mut self, members: Vec<u32>) -> u32 {
        if let [one] = members.as_slice() {
            return *one;
        }
        if let Some(&i) = self.index.get(&AdjKey::Group(members.clone())) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(Adjacency::Ecmp {
            first: self.ecmp.len() as u32,
            count: members.len() as u32,
        });
        self.ecmp.extend_from_slice(&members);
        self.index.insert(AdjKey::Group(members), i);
        i
    }
}

fn mapped(a: Ipv4Addr) -> u128 {
    0xffff_0000_0000 | u32::from(a) as u128
}

/// The addresses of the endpoint cabled to `port` in network `network` (routed to its link as host routes).
fn endpoint_hosts<'a>(
    cfg: &'a Config,
    network: &'a str,
    port: &'a str,
) -> impl Iterator<Item = IpCidr> + 'a {
    cfg.endpoints
        .iter()
        .filter(move |e| e.port == port && e.network == network)
        .flat_map(|e| {
            e.address
                .map(IpCidr::V4)
                .into_iter()
                .chain(e.address6.map(IpCidr::V6))
        })
}

/// Builds the L3 tables, attaches each bridge with addresses to its gateway interface and marks routed ports.
#[allow(clippy::too_many_arguments)]
pub(super) fn compile_l3(
    cfg: &Config,
    port_index: &dyn Fn(&str) -> Result<u16, String>,
    port_macs: &[Option<[u8; 6]>],
    bridges: &mut [BridgeDomain],
    roles: &mut [PortRole],
    previous: Option<&Snapshot>,
    pool: Option<&dataplane::Pool>,
    host: Option<&Arc<HostQueues>>,
) -> Result<L3Tables, String> {
    let r = &cfg.router;
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut addrs: Vec<Vec<IpCidr>> = Vec::new();
    let split = |list: &[IpCidr]| {
        let v4 = list
            .iter()
            .filter_map(|c| match c {
                IpCidr::V4(c) => Some((c.addr(), c.prefix())),
                IpCidr::V6(_) => None,
            })
            .collect::<Vec<_>>();
        let v6 = list
            .iter()
            .filter_map(|c| match c {
                IpCidr::V6(c) => Some((c.addr(), c.prefix())),
                IpCidr::V4(_) => None,
            })
            .collect::<Vec<_>>();
        (v4, v6)
    };
    // A bridge's gateway: the bridge domains are in network order, one per bridge network.
    let mut bd = 0usize;
    for net in &cfg.networks {
        if net.mode != NetworkMode::Bridge {
            continue;
        }
        let domain = bd;
        bd += 1;
        if net.addresses.is_empty() {
            continue;
        }
        let b = bridges
            .get_mut(domain)
            .filter(|b| b.name == net.name)
            .ok_or_else(|| format!("network {}: bridge domain not found", net.name))?;
        let mac = b.gateway_mac.unwrap_or_else(|| router_mac(&net.name));
        let (v4, v6) = split(&net.addresses);
        b.gateway_mac = Some(mac);
        b.gateway_iface = Some(ifaces.len() as u16);
        ifaces.push(Interface {
            name: net.name.clone(),
            mac,
            attach: Attach::Bridge {
                domain: domain as u16,
            },
            mtu: r.mtu,
            v4,
            v6,
            link_local: link_local_of(&mac),
            proxy_arp: false,
        });
        addrs.push(net.addresses.clone());
    }
    for p in &cfg.ports {
        if p.addresses.is_empty() {
            continue;
        }
        let port = port_index(&p.name)?;
        let mac = port_macs
            .get(port as usize)
            .copied()
            .flatten()
            .unwrap_or_else(|| router_mac(&p.name));
        let (v4, v6) = split(&p.addresses);
        roles[port as usize] = PortRole::L3(ifaces.len() as u16);
        ifaces.push(Interface {
            name: p.name.clone(),
            mac,
            attach: Attach::Port {
                port,
                egress: Egress::Untagged,
            },
            mtu: r.mtu,
            v4,
            v6,
            link_local: link_local_of(&mac),
            proxy_arp: false,
        });
        addrs.push(p.addresses.clone());
    }

    // Point-to-point: every port its own routed link, the router at 169.254.1.1 and fe80::1 on each, the
    // endpoint behind it a host route.
    let mut host_routes: Vec<(IpCidr, u16)> = Vec::new();
    for net in cfg
        .networks
        .iter()
        .filter(|n| n.mode == NetworkMode::PointToPoint)
    {
        for p in &net.ports {
            let port = port_index(p)?;
            let mac = port_macs
                .get(port as usize)
                .copied()
                .flatten()
                .unwrap_or_else(|| router_mac(p));
            let iface = ifaces.len() as u16;
            roles[port as usize] = PortRole::L3(iface);
            ifaces.push(Interface {
                name: p.clone(),
                mac,
                attach: Attach::Port {
                    port,
                    egress: Egress::Untagged,
                },
                mtu: r.mtu,
                v4: vec![(P2P_GATEWAY4, 32)],
                v6: Vec::new(),
                link_local: P2P_GATEWAY6,
                proxy_arp: true,
            });
            addrs.push(Vec::new());
            host_routes.extend(endpoint_hosts(cfg, &net.name, p).map(|c| (c, iface)));
        }
    }

    // Ipvlan L3: each endpoint port a routed link that shares the uplink's MAC and addresses, answering ARP
    // and ND for anything (the endpoint's gateway can be any address), its endpoint a host route.
    for net in cfg.networks.iter().filter(|n| {
        n.mode == NetworkMode::Ipvlan
            && n.ipvlan
                .as_ref()
                .is_some_and(|v| v.ipvlan_mode == IpvlanMode::L3)
    }) {
        let v = net
            .ipvlan
            .as_ref()
            .ok_or_else(|| format!("network {}: ipvlan options missing", net.name))?;
        let up = ifaces
            .iter()
            .find(|i| i.name == v.uplink)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "network {}: uplink {} is not a routed port",
                    net.name, v.uplink
                )
            })?;
        for p in &net.ports {
            let port = port_index(p)?;
            let iface = ifaces.len() as u16;
            roles[port as usize] = PortRole::L3(iface);
            ifaces.push(Interface {
                name: p.clone(),
                mac: up.mac,
                attach: Attach::Port {
                    port,
                    egress: Egress::Untagged,
                },
                mtu: r.mtu,
                v4: up.v4.iter().map(|(a, _)| (*a, 32)).collect(),
                v6: up.v6.iter().map(|(a, _)| (*a, 128)).collect(),
                link_local: up.link_local,
                proxy_arp: true,
            });
            addrs.push(Vec::new());
            host_routes.extend(endpoint_hosts(cfg, &net.name, p).map(|c| (c, iface)));
        }
    }

    let mut adj = Adjacencies::default();
    let mut routes4: Vec<(Ipv4Addr, u8, u32)> = Vec::new();
    let mut routes6: Vec<(Ipv6Addr, u8, u32)> = Vec::new();
    let local = adj.one(AdjOne::Local);
    // Connected and local routes.
    for (i, list) in addrs.iter().enumerate() {
        let attached = adj.one(AdjOne::Attached(i as u16));
        for c in list {
            match c {
                IpCidr::V4(c) => {
                    routes4.push((c.network(), c.prefix(), attached));
                    routes4.push((c.addr(), 32, local));
                }
                IpCidr::V6(c) => {
                    routes6.push((c.network(), c.prefix(), attached));
                    routes6.push((c.addr(), 128, local));
                }
            }
        }
        routes6.push((ifaces[i].link_local, 128, local));
    }
    if host_routes.iter().any(|(c, _)| c.is_v4()) {
        routes4.push((P2P_GATEWAY4, 32, local));
    }
    for (c, iface) in &host_routes {
        let attached = adj.one(AdjOne::Attached(*iface));
        match c {
            IpCidr::V4(c) => routes4.push((c.addr(), 32, attached)),
            IpCidr::V6(c) => routes6.push((c.addr(), 128, attached)),
        }
    }
    // Static routes: each gateway resolved on the interface whose subnet holds it.
    let iface_of = |a: IpAddr| -> Option<u16> {
        addrs
            .iter()
            .position(|list| list.iter().any(|c| c.contains(a)))
            .map(|i| i as u16)
    };
    for rt in &cfg.routes {
        let nh = match rt.kind {
            RouteKind::Blackhole => adj.one(AdjOne::Blackhole),
            RouteKind::Unreachable => adj.one(AdjOne::Unreachable),
            RouteKind::Forward => {
                let mut members = Vec::new();
                for v in &rt.via {
                    let iface = iface_of(*v).ok_or_else(|| {
                        format!("route {}: gateway {v} is on no connected subnet", rt.prefix)
                    })?;
                    let via = match v {
                        IpAddr::V4(a) => mapped(*a),
                        IpAddr::V6(a) => u128::from(*a),
                    };
                    members.push(adj.one(AdjOne::Gateway(iface, via)));
                }
                adj.group(members)
            }
        };
        match rt.prefix {
            IpCidr::V4(c) => routes4.push((c.network(), c.prefix(), nh)),
            IpCidr::V6(c) => routes6.push((c.network(), c.prefix(), nh)),
        }
    }
    let fib4 = Lpm4::build(routes4, r.fib_tbl8_groups).map_err(|e| format!("IPv4 FIB: {e}"))?;
    let fib6 = Lpm6::build(routes6, r.fib6_groups).map_err(|e| {
        format!(
            "IPv6 FIB: {e}; router.fib6_groups = {} is too few for these routes",
            r.fib6_groups
        )
    })?;
    // The neighbour cache survives a reload when the interfaces are the same ones in the same order.
    let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
    let neigh = previous
        .filter(|p| {
            p.l3.neigh.capacity() == r.neighbor_capacity.next_power_of_two().max(64)
                && p.l3
                    .ifaces
                    .iter()
                    .map(|i| i.name.as_str())
                    .eq(names.iter().copied())
        })
        .map(|p| p.l3.neigh.clone())
        .unwrap_or_else(|| Arc::new(NeighTable::new(r.neighbor_capacity)));
    // What peers must hear about: every interface's MAC and addresses (never 0, the "nothing yet" value).
    let announce_id = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for i in &ifaces {
            (&i.name, i.mac, &i.v4, &i.v6).hash(&mut h);
        }
        h.finish() | 1
    };
    Ok(L3Tables {
        announce_id,
        ifaces,
        fib4: Arc::new(fib4),
        fib6: Arc::new(fib6),
        adj: adj.list,
        ecmp: adj.ecmp,
        neigh,
        drop_options: r.drop_ip_options,
        icmp_rate: r.icmp_rate,
        reachable_s: r.neighbor_reachable_s,
        pool: pool.cloned(),
        host: host.cloned(),
        nat: None,
    })
}
