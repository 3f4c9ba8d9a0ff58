//! Route changes at run time (`wharf ctl route add|del`) and the L3 `show` tables (routes, neighbours).
//!
//! A route change does not rebuild the FIB: the tables are updated in place, lock-free for the workers (the
//! FIB's own writer/reader contract). When the route needs an adjacency the running snapshot lacks (a new
//! gateway), a snapshot with the longer adjacency list is published first and the control thread waits for
//! every worker to pass a burst boundary, so no worker can meet the new next-hop index with the old list.
//! After a removal, FIB groups freed by it are reclaimed after the same kind of grace period.
//!
//! Routes added this way are kept across reloads of the config file (a prefix the file routes itself wins).

use super::Router;
use crate::config::{IpCidr, RouteCfg, RouteKind};
use pipelines::l3::neigh::NeighKey;
use pipelines::l3::{Adjacency, L3Tables};
use pipelines::Snapshot;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a publication waits for the workers to pass a burst boundary (a reload's too).
pub(super) const GRACE: Duration = Duration::from_secs(2);

fn mapped(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => 0xffff_0000_0000 | u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The interface whose subnet holds `a`, or why there is none.
fn iface_for(t: &L3Tables, a: IpAddr) -> Result<u16, String> {
    let on = |addr: IpAddr, len: u8| IpCidr::from_parts(addr, len).is_some_and(|c| c.contains(a));
    for (i, ifc) in t.ifaces.iter().enumerate() {
        let mine = ifc.v4.iter().any(|(x, _)| IpAddr::V4(*x) == a)
            || ifc.v6.iter().any(|(x, _)| IpAddr::V6(*x) == a);
        if mine {
            return Err(format!("gateway {a} is one of the router's own addresses"));
        }
        if ifc.v4.iter().any(|(x, l)| on(IpAddr::V4(*x), *l))
            || ifc.v6.iter().any(|(x, l)| on(IpAddr::V6(*x), *l))
        {
            return Ok(i as u16);
        }
    }
    Err(format!("gateway {a} is on no connected subnet"))
}

/// The index of adjacency `a` in `adj`, appending it when missing.
fn adjacency(adj: &mut Vec<Adjacency>, a: Adjacency) -> u32 {
    match adj.iter().position(|x| *x == a) {
        Some(i) => i as u32,
        None => {
            adj.push(a);
            (adj.len() - 1) as u32
        }
    }
}

/// What a next hop means, for `show routes`.
fn describe(t: &L3Tables, nh: u32) -> Value {
    let name = |i: u16| {
        t.ifaces
            .get(i as usize)
            .map_or("?".to_string(), |f| f.name.clone())
    };
    let via = |v: u128| {
        let k = NeighKey { iface: 0, ip: v };
        k.addr().to_string()
    };
    match t.adj.get(nh as usize) {
        Some(Adjacency::Local) => json!({"type": "local"}),
        Some(Adjacency::Attached { iface }) => {
            json!({"type": "attached", "interface": name(*iface)})
        }
        Some(Adjacency::Gateway { iface, via: v }) => {
            json!({"type": "gateway", "via": via(*v), "interface": name(*iface)})
        }
        Some(Adjacency::Ecmp { first, count }) => {
            let members: Vec<Value> = t
                .ecmp
                .iter()
                .skip(*first as usize)
                .take(*count as usize)
                .map(|m| describe(t, *m))
                .collect();
            json!({"type": "ecmp", "paths": members})
        }
        Some(Adjacency::Unreachable) => json!({"type": "unreachable"}),
        Some(Adjacency::Blackhole) => json!({"type": "blackhole"}),
        None => json!({"type": "invalid", "next_hop": nh}),
    }
}

impl Router {
    /// `route add`: routes `prefix` via `via` (several: ECMP), or as a blackhole/unreachable route, in place.
    /// Returns the route as `show routes` would list it.
    pub fn route_add(&mut self, route: RouteCfg) -> Result<Value, String> {
        let p = route.prefix;
        if p.addr() != p.network() {
            return Err(format!(
                "{p} has host bits set; the prefix is {}/{}",
                p.network(),
                p.prefix()
            ));
        }
        let snap = self.dp.snapshot().load_full();
        // As the config check says for the file: a router address keeps its local route (the dataplane relies
        // on it, e.g. VXLAN to a local VTEP is taken before the FIB).
        let full = if p.is_v4() { 32 } else { 128 };
        let own = snap.l3.ifaces.iter().any(|ifc| match p.addr() {
            IpAddr::V4(a) => ifc.has_v4(a),
            IpAddr::V6(a) => ifc.v6.iter().any(|(x, _)| *x == a),
        });
        if p.prefix() == full && own {
            return Err(format!(
                "{p} is one of the router's own addresses; a static route would replace its local route"
            ));
        }
        let mut adj = snap.l3.adj.clone();
        let mut ecmp = snap.l3.ecmp.clone();
        let nh = match route.kind {
            RouteKind::Blackhole => adjacency(&mut adj, Adjacency::Blackhole),
            RouteKind::Unreachable => adjacency(&mut adj, Adjacency::Unreachable),
            RouteKind::Forward => {
                if route.via.is_empty() {
                    return Err("a forward route needs at least one gateway".into());
                }
                let mut members = Vec::new();
                for v in &route.via {
                    if v.is_ipv4() != p.is_v4() {
                        return Err(format!("gateway {v} is not of the family of {p}"));
                    }
                    let iface = iface_for(&snap.l3, *v)?;
                    members.push(adjacency(
                        &mut adj,
                        Adjacency::Gateway {
                            iface,
                            via: mapped(*v),
                        },
                    ));
                }
                if let [one] = members.as_slice() {
                    *one
                } else {
                    let existing = adj.iter().position(|a| match a {
                        Adjacency::Ecmp { first, count } => {
                            ecmp.get(*first as usize..(*first + *count) as usize)
                                == Some(members.as_slice())
                        }
                        _ => false,
                    });
                    match existing {
                        Some(i) => i as u32,
                        None => {
                            let first = ecmp.len() as u32;
                            ecmp.extend_from_slice(&members);
                            adjacency(
                                &mut adj,
                                Adjacency::Ecmp {
                                    first,
                                    count: members.len() as u32,
                                },
                            )
                        }
                    }
                }
            }
        };
        if adj.len() != snap.l3.adj.len() {
            // New adjacencies: every worker must see them before any FIB entry points at them.
            let l3 = L3Tables {
                adj,
                ecmp,
                ..(*snap.l3).clone()
            };
            self.publish(Snapshot {
                generation: self.generation + 1,
                l3: Arc::new(l3),
                ..(*snap).clone()
            })?;
        }
        let snap = self.dp.snapshot().load_full();
        let previous = match p {
            IpCidr::V4(c) => snap.l3.fib4.insert(c.network(), c.prefix(), nh),
            IpCidr::V6(c) => snap.l3.fib6.insert(c.network(), c.prefix(), nh),
        }
        .map_err(|e| format!("{p}: {e}"))?;
        self.ctl_routes.retain(|r| r.prefix != p);
        self.ctl_routes.push(route);
        Ok(json!({
            "prefix": format!("{}/{}", p.network(), p.prefix()),
            "route": describe(&snap.l3, nh),
            "replaced": previous.is_some(),
        }))
    }

    /// `route del`: removes the static route for exactly `prefix` (the covering route takes over in place).
    /// Connected and local routes are not removable.
    pub fn route_del(&mut self, prefix: IpCidr) -> Result<Value, String> {
        let p = prefix;
        let configured = self.cfg.routes.iter().any(|r| r.prefix == p)
            || self.ctl_routes.iter().any(|r| r.prefix == p);
        if !configured {
            return Err(format!(
                "no static route for {}/{} (connected and local routes go with their interface)",
                p.network(),
                p.prefix()
            ));
        }
        let snap = self.dp.snapshot().load_full();
        let removed = match p {
            IpCidr::V4(c) => snap.l3.fib4.remove(c.network(), c.prefix()),
            IpCidr::V6(c) => snap.l3.fib6.remove(c.network(), c.prefix()),
        };
        self.ctl_routes.retain(|r| r.prefix != p);
        // Groups the removal freed are reused only after every worker left what it was reading.
        if self.dp.wait_quiescent(GRACE) {
            snap.l3.fib4.reclaim();
            snap.l3.fib6.reclaim();
        }
        Ok(
            json!({"prefix": format!("{}/{}", p.network(), p.prefix()), "removed": removed.is_some()}),
        )
    }

    /// Publishes `snap` as the next generation and waits for every worker to pass a burst boundary.
    fn publish(&mut self, snap: Snapshot) -> Result<(), String> {
        let moved = self.dp.publish(Arc::new(snap), GRACE);
        self.generation += 1;
        if !moved {
            return Err(
                "the workers did not pass a burst boundary in time; the route was not added".into(),
            );
        }
        Ok(())
    }

    /// `show routes`: every FIB entry, IPv4 then IPv6, with what its next hop means.
    pub fn show_routes(&self) -> Value {
        let snap = self.dp.snapshot().load();
        let t = &snap.l3;
        let mut rows: Vec<Value> = Vec::new();
        let mut v4 = t.fib4.routes();
        v4.sort_unstable_by_key(|r| (u32::from(r.0), r.1));
        for (a, l, nh) in v4 {
            rows.push(json!({"prefix": format!("{a}/{l}"), "route": describe(t, nh)}));
        }
        let mut v6 = t.fib6.routes();
        v6.sort_unstable_by_key(|r| (u128::from(r.0), r.1));
        for (a, l, nh) in v6 {
            rows.push(json!({"prefix": format!("{a}/{l}"), "route": describe(t, nh)}));
        }
        Value::Array(rows)
    }

    /// `show neighbors`: the neighbour cache (ARP and ND), by interface.
    pub fn show_neighbors(&self) -> Value {
        let snap = self.dp.snapshot().load();
        let t = &snap.l3;
        let now = super::now_s();
        let mut rows: Vec<(String, u128, Value)> = t
            .neigh
            .entries()
            .into_iter()
            .map(|(k, mac, is_static, confirmed)| {
                let iface = t
                    .ifaces
                    .get(k.iface as usize)
                    .map_or("?".to_string(), |i| i.name.clone());
                let state = match (mac, is_static) {
                    (_, true) => "static",
                    (Some(_), false) => "reachable",
                    (None, false) => "incomplete",
                };
                let row = json!({
                    "interface": iface,
                    "address": k.addr().to_string(),
                    "mac": mac.map(dataplane::netns::format_mac),
                    "state": state,
                    "age_s": (mac.is_some() && !is_static).then(|| now.wrapping_sub(confirmed)),
                });
                (iface, k.ip, row)
            })
            .collect();
        rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Value::Array(rows.into_iter().map(|r| r.2).collect())
    }
}
