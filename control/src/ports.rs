//! Opening the configured ports on their backends.

use crate::config::{BackendCfg, Config};
use anyhow::Context;
use dataplane::port::afpacket::{AfPacketConfig, AfPacketPort};
use dataplane::port::pcap::{PcapConfig, PcapPort};
use dataplane::port::ring::{RingPort, DEFAULT_DEPTH};
use dataplane::{Pool, Port};
use std::collections::HashMap;
use std::sync::Arc;

/// The opened ports (in config order) and, for `ring` ports, the far ends by their `peer` name, for the
/// program that embeds the router (the traffic generator, tests).
pub struct OpenedPorts {
    /// Ports by index.
    pub ports: Vec<Arc<dyn Port>>,
    /// Far ends of ring ports, by peer name.
    pub ring_peers: HashMap<String, Arc<RingPort>>,
    /// The router's own ring ports, by name (to seed closed loops with [`RingPort::inject`]).
    pub ring_ports: HashMap<String, Arc<RingPort>>,
}

impl OpenedPorts {
    /// The router's ring port called `name`.
    pub fn ring_port(&self, name: &str) -> Option<Arc<RingPort>> {
        self.ring_ports.get(name).cloned()
    }
}

/// Opens every port of `cfg` with `queues` queues (one per worker).
pub fn open_ports(cfg: &Config, pool: &Pool, queues: u16) -> anyhow::Result<OpenedPorts> {
    let mut ports: Vec<Arc<dyn Port>> = Vec::with_capacity(cfg.ports.len());
    let mut ring_peers = HashMap::new();
    let mut ring_ports = HashMap::new();
    // Ring ports cabled to each other inside the router: both ends are made when the first is met.
    let mut internal: HashMap<String, Arc<RingPort>> = HashMap::new();
    for p in &cfg.ports {
        let port: Arc<dyn Port> = match &p.backend {
            BackendCfg::Ring { peer, depth } => {
                let ours = if let Some(ours) = internal.remove(&p.name) {
                    ours
                } else {
                    let (ours, theirs) =
                        RingPort::pair(&p.name, peer, queues, depth.unwrap_or(DEFAULT_DEPTH));
                    if is_internal_peer(cfg, &p.name, peer) {
                        internal.insert(peer.clone(), theirs);
                    } else {
                        ring_peers.insert(peer.clone(), theirs);
                    }
                    ours
                };
                ring_ports.insert(p.name.clone(), ours.clone());
                ours
            }
            BackendCfg::Pcap { rx, tx, replay } => {
                let pc = PcapConfig {
                    rx: rx.clone(),
                    tx: tx.clone(),
                    replay_count: replay.unwrap_or(1),
                    queues,
                };
                PcapPort::open(&p.name, pc, pool)
                    .with_context(|| format!("opening pcap port {}", p.name))?
            }
            BackendCfg::AfPacket {
                interface,
                block_size,
                block_count,
                frame_size,
                promiscuous,
            } => {
                let d = AfPacketConfig::default();
                let ac = AfPacketConfig {
                    interface: interface.clone(),
                    queues,
                    block_size: block_size.unwrap_or(d.block_size),
                    block_count: block_count.unwrap_or(d.block_count),
                    frame_size: frame_size.unwrap_or(d.frame_size),
                    promiscuous: promiscuous.unwrap_or(d.promiscuous),
                    ..d
                };
                AfPacketPort::open(&p.name, &ac, pool)?
            }
        };
        ports.push(port);
    }
    Ok(OpenedPorts {
        ports,
        ring_peers,
        ring_ports,
    })
}

/// A ring port's peer is internal when it is another ring port of the config that names this one back; any
/// other peer name is an external end, handed to the embedding program.
fn is_internal_peer(cfg: &Config, name: &str, peer: &str) -> bool {
    cfg.ports.iter().any(|q| {
        q.name == peer && matches!(&q.backend, BackendCfg::Ring { peer: back, .. } if back == name)
    })
}
