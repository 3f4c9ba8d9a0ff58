//! The overlay's control side: `show vxlan`, and the run-time FDB feed (`vxlan fdb add|del`).
//!
//! Fed entries go straight into the overlay's lock-free fed table (shared by every snapshot of the network and
//! kept across reloads): no snapshot is published, and the workers see an entry with their next lookup.

use super::{now_s, Router};
use crate::config::MacAddr;
use pipelines::vxlan::fdb;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::sync::Arc;

impl Router {
    /// The overlay of network `name` in the running snapshot.
    fn overlay_named(&self, name: &str) -> Result<Arc<pipelines::vxlan::Overlay>, String> {
        let snap = self.dp.snapshot().load();
        snap.bridges
            .iter()
            .find(|b| b.name == name)
            .and_then(|b| b.overlay.clone())
            .ok_or_else(|| {
                let names: Vec<&str> = snap
                    .bridges
                    .iter()
                    .filter(|b| b.overlay.is_some())
                    .map(|b| b.name.as_str())
                    .collect();
                format!(
                    "no overlay network named {name:?} (overlays: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            })
    }

    /// `show vxlan`: one row per remote entry of every overlay: the flood list (MAC `00:00:00:00:00:00`, type
    /// `flood`, as Linux's `bridge fdb` shows it), static, fed and learned entries, each with the network's
    /// VNI and local VTEP. The encap, decap, flood and unknown-VNI counters are in `show stats` and
    /// `show drops`.
    pub fn show_vxlan(&self) -> Value {
        let snap = self.dp.snapshot().load();
        let now = now_s();
        let mut rows = Vec::new();
        for bd in snap.bridges.iter() {
            let Some(ov) = &bd.overlay else { continue };
            let row = |mac: String, vtep: String, kind: &str, age: Option<u32>| {
                json!({"network": bd.name, "vni": ov.vni, "local": Ipv4Addr::from(ov.local).to_string(),
                    "port": ov.udp_port, "mtu": ov.mtu, "mac": mac, "vtep": vtep, "type": kind, "age_s": age})
            };
            for p in &ov.flood {
                rows.push(row(
                    MacAddr::ZERO.to_string(),
                    fdb::vtep_name(&snap.vxlan.vteps, *p)
                        .trim_start_matches("vxlan:")
                        .to_string(),
                    "flood",
                    None,
                ));
            }
            let mut entries = fdb::entries(bd, &snap.vxlan.vteps, now);
            entries.sort_by_key(|e| (e.source as u8, e.mac));
            for e in entries {
                let age = (e.source == fdb::Source::Learned).then_some(e.age_s);
                rows.push(row(
                    MacAddr(e.mac).to_string(),
                    e.vtep.to_string(),
                    e.source.as_str(),
                    age,
                ));
            }
        }
        Value::Array(rows)
    }

    /// `vxlan fdb add NETWORK MAC VTEP`: `MAC` is behind remote VTEP `VTEP` (added, or moved), until deleted.
    pub fn vxlan_fdb_add(&self, network: &str, mac: &str, vtep: &str) -> Result<Value, String> {
        let ov = self.overlay_named(network)?;
        let m: MacAddr = mac.parse().map_err(|e| format!("mac {mac:?}: {e}"))?;
        let a: Ipv4Addr = vtep
            .parse()
            .map_err(|_| format!("vtep {vtep:?} is not an IPv4 address"))?;
        if a.octets() == ov.local {
            return Err(format!("{a} is the local VTEP"));
        }
        if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
            return Err(format!(
                "{a} cannot be a VTEP: it must be a unicast address"
            ));
        }
        let snap = self.dp.snapshot().load();
        fdb::feed_add(&ov, &snap.vxlan.vteps, &m.0, a).map_err(|e| e.to_string())?;
        Ok(json!({"network": network, "mac": m.to_string(), "vtep": a.to_string()}))
    }

    /// `vxlan fdb del NETWORK MAC`: forgets a fed entry (static entries are the config's; learned ones age).
    pub fn vxlan_fdb_del(&self, network: &str, mac: &str) -> Result<Value, String> {
        let ov = self.overlay_named(network)?;
        let m: MacAddr = mac.parse().map_err(|e| format!("mac {mac:?}: {e}"))?;
        if !fdb::feed_del(&ov, &m.0) {
            return Err(format!("{m} is not a fed entry of {network:?}"));
        }
        Ok(json!({"removed": m.to_string()}))
    }
}
