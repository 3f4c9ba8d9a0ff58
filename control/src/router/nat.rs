//! The NAT `show` tables: `show conntrack [NETWORK]` (every worker's flows) and `show nat` (external
//! addresses, published mappings, services, port usage and counters per worker).
//!
//! Flows belong to the workers, which never share them; the control thread asks each worker for a report
//! through the NAT tables' request word and waits for the answers (a worker answers between two bursts).

use super::Router;
use crate::config::{IpCidr, Ipv4Cidr};
use dataplane::rss::Steering;
use pipelines::nat::conntrack::Key4;
use pipelines::nat::stage::{NatReport, NatTables, Target};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long `show` waits for every worker's report.
const REPORT_WAIT: Duration = Duration::from_secs(2);

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        p => p.to_string(),
    }
}

/// `tcp 10.0.0.2:40000 -> 192.0.2.1:80` (ICMP: the echo identifier as the port).
fn key_str(k: &Key4) -> String {
    format!(
        "{} {}:{} -> {}:{}",
        proto_name(k.proto),
        Ipv4Addr::from(k.src),
        k.sport,
        Ipv4Addr::from(k.dst),
        k.dport
    )
}

/// Every worker's report (those that answered within [`REPORT_WAIT`]), by worker.
fn reports(t: &NatTables, max_flows: usize) -> Vec<NatReport> {
    let seq = t.shared.request_report(max_flows);
    let want = t.shared.workers() as usize;
    let mut got: Vec<NatReport> = Vec::new();
    let deadline = Instant::now() + REPORT_WAIT;
    while got.len() < want && Instant::now() < deadline {
        match t.shared.take_report() {
            Some(r) if r.seq == seq && !got.iter().any(|g| g.worker == r.worker) => got.push(r),
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    got.sort_by_key(|r| r.worker);
    got
}

impl Router {
    /// The NAT's flows, at most `max_flows` per worker; with `network`, only flows from or to that network's
    /// addresses. `{"flows": [...], "total": N}`; without `[nat]`, no flows.
    pub fn show_conntrack(&self, network: Option<&str>, max_flows: usize) -> Value {
        let snap = self.dp.snapshot().load();
        let Some(t) = snap.l3.nat.as_deref() else {
            return json!({"flows": [], "total": 0});
        };
        let subnets: Option<Vec<Ipv4Cidr>> = network.map(|n| {
            let cfg = self.config();
            let mut list: Vec<Ipv4Cidr> = cfg
                .networks
                .iter()
                .filter(|x| x.name == n)
                .flat_map(|x| x.addresses.iter())
                .filter_map(|c| match c {
                    IpCidr::V4(c) => Some(*c),
                    IpCidr::V6(_) => None,
                })
                .collect();
            list.extend(
                cfg.endpoints
                    .iter()
                    .filter(|e| e.network == n)
                    .filter_map(|e| e.address),
            );
            list
        });
        let inside = |a: u32| {
            subnets.as_ref().is_none_or(|list| {
                list.iter()
                    .any(|c| IpCidr::V4(*c).contains(Ipv4Addr::from(a).into()))
            })
        };
        let rs = reports(t, max_flows);
        let total: usize = rs.iter().map(|r| r.flows_total).sum();
        let flows: Vec<Value> = rs
            .iter()
            .flat_map(|r| r.flows.iter())
            .filter(|f| inside(f.orig.src) || inside(f.reply.src))
            .map(|f| {
                json!({
                    "worker": f.worker,
                    "orig": key_str(&f.orig),
                    "reply": key_str(&f.reply),
                    "state": f.state,
                    "expires_s": f.expires_in,
                    "replied": f.replied,
                })
            })
            .collect();
        json!({"flows": flows, "total": total, "workers_answered": rs.len()})
    }

    /// The NAT's configuration and usage.
    pub fn show_nat(&self) -> Value {
        let snap = self.dp.snapshot().load();
        let Some(t) = snap.l3.nat.as_deref() else {
            return json!({"enabled": false});
        };
        let iface = |i: u16| {
            snap.l3
                .ifaces
                .get(i as usize)
                .map_or("?".to_string(), |x| x.name.clone())
        };
        let mappings: Vec<Value> = t
            .mappings()
            .map(|(proto, addr, port, target)| {
                let to = match target {
                    Target::One(a, p) => json!(format!("{}:{p}", Ipv4Addr::from(a))),
                    Target::Service(s) => t.services.get(s as usize).map_or(json!(null), |svc| {
                        json!({
                            "service": svc.name,
                            "backends": svc.backends.iter()
                                .map(|(a, p)| format!("{}:{p}", Ipv4Addr::from(*a)))
                                .collect::<Vec<_>>(),
                        })
                    }),
                };
                json!({
                    "public": format!("{}:{port}/{}", Ipv4Addr::from(addr), proto_name(proto)),
                    "to": to,
                })
            })
            .collect();
        let workers: Vec<Value> = reports(t, 0)
            .iter()
            .map(|r| {
                json!({
                    "worker": r.worker,
                    "flows": r.flows_total,
                    "limit": r.limit,
                    "created": r.conntrack.created,
                    "expired": r.conntrack.expired,
                    "table_full": r.conntrack.full,
                    "tcp_invalid": r.conntrack.tcp_invalid,
                    "ports_per_address": r.capacity,
                    "ports_in_use": r.in_use.iter().map(|(p, a, n)| json!({
                        "proto": proto_name(*p), "address": Ipv4Addr::from(*a).to_string(), "in_use": n,
                    })).collect::<Vec<_>>(),
                    "ports_exhausted": r.ports.exhausted,
                    "ports_unsteered": r.ports.unpreferred,
                    "eim_mappings": r.eim_mappings,
                })
            })
            .collect();
        let masquerade: Vec<String> = t
            .masquerade
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| iface(i as u16))
            .collect();
        json!({
            "enabled": true,
            "outside": iface(t.outside),
            "external": t.external.iter().map(|a| Ipv4Addr::from(*a).to_string()).collect::<Vec<_>>(),
            "masquerade": masquerade,
            "port_range": format!("{}-{}", t.split.range().start(), t.split.range().end()),
            "answer_steering": steering_name(&t.steering),
            "mappings": mappings,
            "workers": workers,
        })
    }
}

/// How `show nat` names the outside port's steering: whether masquerade can pick ports whose answers RSS
/// brings to the flow's worker, or answers reach it by handoff.
fn steering_name(s: &Steering) -> String {
    match s {
        Steering::Unknown => "unknown: answers reach their flow's worker by handoff".into(),
        Steering::FlowHash { queues } => format!("wharf's flow hash over {queues} queue(s)"),
        Steering::Toeplitz { reta, tcp, udp, .. } => {
            let ports = match (tcp, udp) {
                (true, true) => "tcp and udp",
                (true, false) => "tcp",
                (false, true) => "udp",
                (false, false) => "none",
            };
            format!(
                "Toeplitz RSS, {} table entries, ports hashed for {ports}",
                reta.len()
            )
        }
    }
}
