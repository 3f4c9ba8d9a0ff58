//! Opening the configured ports on their backends.

#[cfg(feature = "dpdk")]
use crate::config::DpdkCfg;
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
    /// What the dpdk ports run on (the EAL and their mempool), when there are any; keep it as long as the ports.
    pub dpdk: Option<DpdkRuntime>,
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

/// The DPDK environment of the dpdk ports: the EAL and the one mempool they share. Ports hold their own handles
/// of both, so dropping this before them is safe; [`DpdkRuntime::close`] also ends the EAL when it was started
/// here.
pub struct DpdkRuntime {
    #[cfg(feature = "dpdk")]
    eal: dataplane::port::dpdk::Eal,
    #[cfg(feature = "dpdk")]
    pool: dataplane::port::dpdk::DpdkPool,
    /// True when [`open_ports`] initialised the EAL (rather than finding it running in this process).
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    started_eal: bool,
}

impl DpdkRuntime {
    /// Initialises the EAL from `cfg` (or takes the one already running in this process, e.g. started by a
    /// test or an embedding program) and makes the mempool.
    #[cfg(feature = "dpdk")]
    fn start(cfg: &DpdkCfg) -> anyhow::Result<DpdkRuntime> {
        use dataplane::port::dpdk::{DpdkPool, Eal};
        let want = cfg.eal_config();
        let (eal, started_eal) = match Eal::get() {
            Some(eal) => {
                if *eal.config() != want {
                    tracing::warn!(
                        running = %eal.args().join(" "),
                        "DPDK EAL already running in this process with other options than [dpdk]; using it"
                    );
                }
                (eal, false)
            }
            None => (
                Eal::init(&want).context("starting DPDK (the [dpdk] section)")?,
                true,
            ),
        };
        let pool = DpdkPool::new(&eal, &cfg.pool_config())
            .context("creating the DPDK mempool ([dpdk] buffers, data_room, cache_size)")?;
        Ok(DpdkRuntime {
            eal,
            pool,
            started_eal,
        })
    }

    /// The EAL the ports run on.
    #[cfg(feature = "dpdk")]
    pub fn eal(&self) -> &dataplane::port::dpdk::Eal {
        &self.eal
    }

    /// The mempool the ports receive into.
    #[cfg(feature = "dpdk")]
    pub fn pool(&self) -> &dataplane::port::dpdk::DpdkPool {
        &self.pool
    }

    /// Releases the mempool and, when the EAL was started by [`open_ports`], ends it (`Eal::cleanup`, which also
    /// removes its runtime directory) unless something else still uses it. Call it after the ports are closed.
    pub fn close(self) {
        #[cfg(feature = "dpdk")]
        {
            let DpdkRuntime {
                eal,
                pool,
                started_eal,
            } = self;
            drop(pool);
            if started_eal {
                match eal.cleanup() {
                    Ok(()) => tracing::info!("DPDK EAL cleaned up"),
                    Err(e) => tracing::info!("DPDK EAL left running: {e}"),
                }
            }
        }
    }
}

impl std::fmt::Debug for DpdkRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("DpdkRuntime");
        #[cfg(feature = "dpdk")]
        d.field("eal", &self.eal).field("pool", &self.pool);
        d.field("started_eal", &self.started_eal).finish()
    }
}

/// Opens every port of `cfg` with `queues` queues (one per worker). With dpdk ports, DPDK is started first (once:
/// see [`DpdkRuntime`]); without the `dpdk` feature they are refused.
pub fn open_ports(cfg: &Config, pool: &Pool, queues: u16) -> anyhow::Result<OpenedPorts> {
    #[cfg_attr(not(feature = "dpdk"), allow(unused_mut))]
    let mut dpdk: Option<DpdkRuntime> = None;
    let mut ports: Vec<Arc<dyn Port>> = Vec::with_capacity(cfg.ports.len());
    let mut ring_peers = HashMap::new();
    let mut ring_ports = HashMap::new();
    // Ring ports cabled to each other inside the router: both ends are made when the first is met.
    let mut internal: HashMap<String, Arc<RingPort>> = HashMap::new();
    for p in &cfg.ports {
        let port: Arc<dyn Port> = match &p.backend {
            BackendCfg::Ring {
                peer,
                depth,
                peer_queues,
            } => {
                let ours = if let Some(ours) = internal.remove(&p.name) {
                    ours
                } else {
                    // Validation leaves `peer_queues` to external ends: an internal one has a worker's queues.
                    let (ours, theirs) = RingPort::pair_asymmetric(
                        &p.name,
                        peer,
                        queues,
                        peer_queues.unwrap_or(queues),
                        depth.unwrap_or(DEFAULT_DEPTH),
                    );
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
            #[cfg(feature = "dpdk")]
            BackendCfg::Dpdk(d) => {
                let rt = match &mut dpdk {
                    Some(rt) => rt,
                    None => dpdk.insert(DpdkRuntime::start(&cfg.dpdk_or_default())?),
                };
                let port = dataplane::port::dpdk::DpdkPort::open(
                    &p.name,
                    &d.port_config(queues),
                    &rt.pool,
                )
                .with_context(|| format!("opening dpdk port {}", p.name))?;
                Arc::new(port)
            }
            #[cfg(not(feature = "dpdk"))]
            BackendCfg::Dpdk(_) => {
                anyhow::bail!("port {}: {}", p.name, crate::config::NO_DPDK_SUPPORT)
            }
        };
        ports.push(port);
    }
    Ok(OpenedPorts {
        dpdk,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_ring_end_has_peer_queues_or_as_many_as_ours() {
        let cfg = crate::config::parse(
            r#"[[ports]]
name = "a"
backend = "ring"
peer = "gen_a"
peer_queues = 1

[[ports]]
name = "b"
backend = "ring"
peer = "gen_b"
"#,
            "t.toml",
        )
        .unwrap();
        let pool = Pool::for_test(64, 2048);
        let opened = open_ports(&cfg, &pool, 2).unwrap();
        let queues = |p: &Arc<RingPort>| p.info().queues;
        assert_eq!(queues(&opened.ring_ports["a"]), 2);
        assert_eq!(queues(&opened.ring_peers["gen_a"]), 1);
        assert_eq!(queues(&opened.ring_ports["b"]), 2);
        assert_eq!(queues(&opened.ring_peers["gen_b"]), 2);
    }
}
