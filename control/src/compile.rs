//! Compilation of a validated [`Config`] into an immutable [`Snapshot`] of tables.
//!
//! Compilation reads the config only; it never touches ports or the running dataplane, so a failure here
//! leaves the running snapshot as it was.

use crate::config::{Config, NetworkMode};
use pipelines::xconnect::{MacRewrite, XconnectTable};
use pipelines::Snapshot;
use std::sync::Arc;

/// Compiles `cfg` into snapshot number `generation`. Port indices are the order of `[[ports]]` in the config.
pub fn compile(cfg: &Config, generation: u64) -> Result<Snapshot, String> {
    let names: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let index = |name: &str| -> Result<u16, String> {
        names
            .iter()
            .position(|n| n == name)
            .map(|i| i as u16)
            .ok_or_else(|| format!("no port named {name:?}"))
    };
    let mut xc = XconnectTable::new(names.len());
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
                for rw in &net.rewrite {
                    let p = index(&rw.port)? as usize;
                    xc.rewrite[p] = Some(MacRewrite {
                        src: rw.src_mac.map(|m| m.0),
                        dst: rw.dst_mac.map(|m| m.0),
                    });
                }
            }
            mode => {
                return Err(format!(
                    "network {}: mode {mode} is not implemented yet",
                    net.name
                ))
            }
        }
    }
    Ok(Snapshot {
        generation,
        port_names: Arc::new(names),
        xconnect: Arc::new(xc),
    })
}
