//! Compilation of `overlay` networks: each is a bridge domain (compiled with the bridges) to which this
//! attaches the VXLAN side: remote VTEPs as virtual ports (flood list members, static FDB entries), the
//! VNI map and the local VTEP addresses the decapsulation listens on.

use crate::config::{Config, NetworkMode, FED_FDB_CAPACITY};
use pipelines::bridge::mac_table::MacTable;
use pipelines::bridge::{mac_key, BridgeDomain, Egress};
use pipelines::vxlan::fdb::VtepTable;
use pipelines::vxlan::{vtep_port, Overlay, VxlanTables, MAX_VTEPS};
use pipelines::Snapshot;
use std::sync::Arc;

/// Attaches the overlay side to the bridge domains of the overlay networks and builds the VXLAN tables. The
/// VTEP table and each overlay's fed entries carry over from `previous`, so learned and fed entries keep
/// meaning the same VTEP across a reload.
pub(super) fn attach(
    cfg: &Config,
    bridges: &mut [BridgeDomain],
    previous: Option<&Snapshot>,
) -> Result<VxlanTables, String> {
    let vteps = previous
        .map(|p| p.vxlan.vteps.clone())
        .unwrap_or_else(|| Arc::new(VtepTable::new(MAX_VTEPS)));
    let mut by_vni = Vec::new();
    let mut local = Vec::new();
    for net in cfg
        .networks
        .iter()
        .filter(|n| n.mode == NetworkMode::Overlay)
    {
        let o = net
            .overlay
            .as_ref()
            .ok_or_else(|| format!("network {}: vxlan options missing", net.name))?;
        let domain = bridges
            .iter()
            .position(|b| b.name == net.name)
            .ok_or_else(|| format!("network {}: no bridge domain compiled", net.name))?;
        let port_of = |a: std::net::Ipv4Addr| {
            vteps
                .intern(a.octets())
                .map(vtep_port)
                .ok_or_else(|| format!("network {}: the VTEP table is full", net.name))
        };
        let egress = Egress::Vxlan {
            domain: domain as u16,
        };
        let mut flood = Vec::new();
        for r in &o.remotes {
            flood.push(port_of(*r)?);
        }
        let mut statics = Vec::new();
        for e in &o.fdb {
            statics.push((mac_key(&e.mac.0), port_of(e.vtep)?));
        }
        let fed = previous
            .and_then(|p| p.bridges.iter().find(|b| b.name == net.name))
            .and_then(|b| b.overlay.as_ref())
            .map(|ov| ov.fed.clone())
            .unwrap_or_else(|| Arc::new(MacTable::new(FED_FDB_CAPACITY)));
        let bd = &mut bridges[domain];
        bd.members.extend(flood.iter().map(|p| (*p, egress)));
        bd.statics.extend(statics);
        bd.statics.sort_unstable();
        bd.overlay = Some(Arc::new(Overlay {
            domain: domain as u16,
            vni: o.vni,
            local: o.local.octets(),
            udp_port: o.port,
            df: o.df,
            ttl: o.ttl,
            mtu: o.mtu,
            flood,
            fed,
        }));
        by_vni.push((o.vni, domain as u16));
        if !local.contains(&(o.local.octets(), o.port)) {
            local.push((o.local.octets(), o.port));
        }
    }
    by_vni.sort_unstable();
    if by_vni.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("two overlay networks share a VNI".into());
    }
    Ok(VxlanTables {
        by_vni,
        local,
        vteps,
    })
}
