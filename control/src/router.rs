//! The running router: pool, ports, workers and the published snapshot, plus the control operations on them
//! (reload, show), and the router's host stack (see [`crate::hoststack`]) once it has router interfaces.
//! Owned by the control thread; the workers only ever see the published snapshot.

mod nat;
mod routes;
mod vxlan;

use crate::compile::{compile, CompileEnv, PortFacts};
use crate::config::{self, Config};
use crate::hoststack::HostStack;
use crate::ports::{open_ports, DpdkRuntime, OpenedPorts};
use anyhow::Context;
use arc_swap::ArcSwap;
use dataplane::port::ring::RingPort;
use dataplane::worker::{Dataplane, IdlePolicy, WorkerSpec};
use dataplane::{DropReason, Pool, PoolConfig};
use pipelines::l3::host::{HostQueues, DEFAULT_QUEUE_LEN};
use pipelines::Snapshot;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running router.
pub struct Router {
    path: Option<PathBuf>,
    cfg: Config,
    /// The host stack, running once the router has interfaces (before `pool`: it frees buffers when dropped).
    host: Option<HostStack>,
    /// The queues between the workers and the host stack, in every snapshot.
    host_queues: Arc<HostQueues>,
    pool: Pool,
    dp: Dataplane<Snapshot>,
    ring_peers: HashMap<String, Arc<RingPort>>,
    ring_ports: HashMap<String, Arc<RingPort>>,
    /// The EAL and mempool of the dpdk ports, if any.
    dpdk: Option<DpdkRuntime>,
    generation: u64,
    started: Instant,
    reloads: u64,
    reload_failures: u64,
    /// Learned MACs aged out, by bridge name.
    aged: HashMap<String, u64>,
    last_aging_s: u32,
    /// Routes added with `route add`, kept across reloads (see [`routes`]).
    ctl_routes: Vec<config::RouteCfg>,
}

/// Why a reload was refused. The running config is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file does not load or validate.
    #[error("{0}")]
    Invalid(#[from] config::ConfigError),
    /// The new config changes something that needs a restart.
    #[error("{0}: restart wharf to apply (reload applies networks, rewrites and endpoints)")]
    NeedsRestart(String),
    /// The new config does not compile.
    #[error("{0}")]
    Compile(String),
    /// There is no file to reload from.
    #[error("this router was started from an embedded config; there is no file to reload")]
    NoFile,
}

impl Router {
    /// Opens the ports, compiles and publishes the first snapshot, and starts the workers.
    pub fn start(mut cfg: Config, path: Option<PathBuf>) -> anyhow::Result<Router> {
        // Endpoints without an address take theirs from their network's pool (leases kept in state_dir).
        crate::ipam::assign_addresses(&mut cfg).context("assigning endpoint addresses")?;
        let d = &cfg.dataplane;
        let pool = Pool::new(&PoolConfig {
            buffers: d.buffers as u32,
            data_room: d.data_room,
            cache_size: dataplane::pool::DEFAULT_CACHE_SIZE.min(d.buffers / 8),
            hugepages: true,
        })
        .context("creating the packet pool")?;
        let workers = cfg.workers();
        let OpenedPorts {
            dpdk,
            ports,
            ring_peers,
            ring_ports,
        } = open_ports(&cfg, &pool, workers.len() as u16)?;
        let facts = PortFacts::of(&ports);
        let host_queues = Arc::new(HostQueues::for_pool(DEFAULT_QUEUE_LEN, &pool));
        let snap = compile(
            &cfg,
            1,
            CompileEnv {
                previous: None,
                pool: Some(&pool),
                host: Some(&host_queues),
                ..facts.env()
            },
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let idle = match d.idle {
            config::IdleMode::Poll => IdlePolicy::Poll,
            config::IdleMode::Adaptive => IdlePolicy::Adaptive {
                after_polls: d.idle_after_polls,
                max_sleep: Duration::from_micros(d.idle_sleep_us as u64),
            },
        };
        let specs: Vec<WorkerSpec> = workers
            .iter()
            .map(|core| WorkerSpec {
                core: *core,
                burst_size: d.burst_size,
                idle,
            })
            .collect();
        let dp = Dataplane::start(ports, &specs, Arc::new(ArcSwap::from_pointee(snap)))?;
        tracing::info!(
            ports = cfg.ports.len(),
            workers = specs.len(),
            buffers = pool.capacity(),
            hugepages = pool.on_hugepages(),
            "wharf started"
        );
        let mut router = Router {
            path,
            cfg,
            host: None,
            host_queues,
            pool,
            dp,
            ring_peers,
            ring_ports,
            dpdk,
            generation: 1,
            started: Instant::now(),
            reloads: 0,
            reload_failures: 0,
            aged: HashMap::new(),
            last_aging_s: 0,
            ctl_routes: Vec::new(),
        };
        router
            .sync_host_stack()
            .context("starting the host stack")?;
        Ok(router)
    }

    /// Starts the host stack when the published snapshot has router interfaces and it is not running (or runs
    /// with another MTU: then it restarts), and gives it the configured echo port. A stack without interfaces
    /// left keeps running idle: nothing reaches it.
    fn sync_host_stack(&mut self) -> std::io::Result<()> {
        if self.dp.snapshot().load().l3.ifaces.is_empty() {
            return Ok(());
        }
        let r = &self.cfg.router;
        match &self.host {
            Some(h) if h.mtu() == r.mtu => {
                h.set_echo_port(r.echo_port);
                h.set_error_rate(r.icmp_rate);
            }
            _ => {
                if let Some(old) = self.host.take() {
                    old.stop();
                }
                self.host = Some(HostStack::start(
                    self.host_queues.clone(),
                    self.pool.clone(),
                    r.mtu,
                    r.echo_port,
                    r.icmp_rate,
                )?);
            }
        }
        Ok(())
    }

    /// The host stack's counters, when it runs.
    pub fn host_stats(&self) -> Option<crate::hoststack::HostStats> {
        self.host.as_ref().map(HostStack::stats)
    }

    /// Loads `path` and starts from it.
    pub fn start_file(path: &Path) -> anyhow::Result<Router> {
        let cfg = config::load(path)?;
        Router::start(cfg, Some(path.to_path_buf()))
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The generation of the published snapshot.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The dataplane (ports, workers, snapshot cell).
    pub fn dataplane(&self) -> &Dataplane<Snapshot> {
        &self.dp
    }

    /// The packet pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The far end of ring port whose `peer` is `name`.
    pub fn ring_peer(&self, name: &str) -> Option<Arc<RingPort>> {
        self.ring_peers.get(name).cloned()
    }

    /// The router's own ring port called `name` (to seed closed-loop benchmarks).
    pub fn ring_port(&self, name: &str) -> Option<Arc<RingPort>> {
        self.ring_ports.get(name).cloned()
    }

    /// Re-reads the config file and applies it (see [`Router::apply`]).
    pub fn reload(&mut self) -> Result<u64, ReloadError> {
        let loaded = match self.path.clone() {
            None => Err(ReloadError::NoFile),
            Some(path) => config::load(&path).map_err(ReloadError::from),
        };
        let r = loaded.and_then(|cfg| self.try_apply(cfg));
        self.count(&r);
        r
    }

    /// Validates, compiles and publishes `cfg` as one atomic snapshot swap. On any error the running config
    /// and snapshot stay as they were. Returns the new generation.
    pub fn apply(&mut self, cfg: Config) -> Result<u64, ReloadError> {
        let r = self.try_apply(cfg);
        self.count(&r);
        r
    }

    fn count(&mut self, r: &Result<u64, ReloadError>) {
        match r {
            Ok(g) => {
                self.reloads += 1;
                tracing::info!(generation = g, "config reloaded");
            }
            Err(e) => {
                self.reload_failures += 1;
                tracing::warn!("reload refused, old config keeps running: {e}");
            }
        }
    }

    fn try_apply(&mut self, mut cfg: Config) -> Result<u64, ReloadError> {
        crate::ipam::assign_addresses(&mut cfg)
            .map_err(|e| ReloadError::Compile(format!("assigning endpoint addresses: {e}")))?;
        if cfg.ports != self.cfg.ports {
            return Err(ReloadError::NeedsRestart("the [[ports]] changed".into()));
        }
        if cfg.dataplane != self.cfg.dataplane {
            return Err(ReloadError::NeedsRestart(
                "the [dataplane] section changed".into(),
            ));
        }
        if cfg.dpdk != self.cfg.dpdk {
            return Err(ReloadError::NeedsRestart(
                "the [dpdk] section changed".into(),
            ));
        }
        let generation = self.generation + 1;
        let facts = PortFacts::of(self.dp.ports());
        let current = self.dp.snapshot().load_full();
        let env = CompileEnv {
            previous: Some(&current),
            pool: Some(&self.pool),
            host: Some(&self.host_queues),
            ..facts.env()
        };
        // Routes added at run time stay, unless the file routes the prefix itself or their gateway is no
        // longer on a connected subnet.
        let connected: Vec<config::IpCidr> = cfg
            .ports
            .iter()
            .flat_map(|p| p.addresses.iter())
            .chain(cfg.networks.iter().flat_map(|n| n.addresses.iter()))
            .copied()
            .collect();
        let mut effective = cfg.clone();
        self.ctl_routes.retain(|r| {
            !cfg.routes.iter().any(|x| x.prefix == r.prefix)
                && r.via
                    .iter()
                    .all(|v| connected.iter().any(|c| c.contains(*v)))
        });
        effective.routes.extend(self.ctl_routes.iter().cloned());
        let snap = compile(&effective, generation, env).map_err(ReloadError::Compile)?;
        // The one atomic step: from here on every new burst sees the new tables. (A worker that does not
        // pass a burst boundary within the grace only delays freeing the old tables.)
        self.dp.publish(Arc::new(snap), routes::GRACE);
        self.generation = generation;
        self.cfg = cfg;
        if let Err(e) = self.sync_host_stack() {
            tracing::error!("the host stack did not start: {e}");
        }
        Ok(generation)
    }

    /// Periodic control-thread duties, called often (every loop of the control thread): ages the bridges'
    /// learned MACs and the neighbour cache once a second. Aging runs here, off the fast path; workers never
    /// sweep.
    pub fn tick(&mut self) {
        let now_s = now_s();
        if now_s == self.last_aging_s {
            return;
        }
        self.last_aging_s = now_s;
        let snap = self.dp.snapshot().load();
        for bd in snap.bridges.iter() {
            if bd.aging_s > 0 {
                let n = bd.table.age(now_s, bd.aging_s);
                if n > 0 {
                    *self.aged.entry(bd.name.clone()).or_default() += n as u64;
                }
            }
        }
        // Neighbours unconfirmed for `neighbor_stale_s` go; unanswered requests after 3 s.
        snap.l3
            .neigh
            .age(now_s, self.cfg.router.neighbor_stale_s, 3);
    }

    fn bridges_named(&self, network: Option<&str>) -> Result<Vec<usize>, String> {
        let snap = self.dp.snapshot().load();
        let all: Vec<usize> = (0..snap.bridges.len())
            .filter(|&i| network.is_none_or(|n| snap.bridges[i].name == n))
            .collect();
        if all.is_empty() {
            if let Some(n) = network {
                let names: Vec<&str> = snap.bridges.iter().map(|b| b.name.as_str()).collect();
                return Err(format!(
                    "no bridge network named {n:?} (bridges: {})",
                    names.join(", ")
                ));
            }
        }
        Ok(all)
    }

    /// `show mac [NETWORK]`: the MAC tables (learned and static entries) of one or every bridge.
    pub fn show_mac(&self, network: Option<&str>) -> Result<Value, String> {
        let snap = self.dp.snapshot().load();
        let now = now_s();
        let mut rows = Vec::new();
        for i in self.bridges_named(network)? {
            let bd = &snap.bridges[i];
            let port = |p: u16| {
                if pipelines::vxlan::is_vtep_port(p) {
                    return pipelines::vxlan::fdb::vtep_name(&snap.vxlan.vteps, p);
                }
                snap.port_names
                    .get(p as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("#{p}"))
            };
            for (k, p) in &bd.statics {
                let m = k.to_be_bytes();
                rows.push(json!({"network": bd.name, "mac": config::MacAddr([m[2], m[3], m[4], m[5], m[6], m[7]]).to_string(),
                    "port": port(*p), "type": "static", "age_s": null}));
            }
            let mut learned = bd.table.entries(now);
            learned.sort_unstable();
            for (mac, p, age) in learned {
                rows.push(json!({"network": bd.name, "mac": config::MacAddr(mac).to_string(), "port": port(p),
                    "type": "learned", "age_s": age}));
            }
        }
        Ok(Value::Array(rows))
    }

    /// `clear mac [NETWORK]`: forgets the learned MACs of one or every bridge. Returns how many.
    pub fn clear_mac(&self, network: Option<&str>) -> Result<Value, String> {
        let snap = self.dp.snapshot().load();
        let mut n = 0;
        for i in self.bridges_named(network)? {
            n += snap.bridges[i].table.clear();
        }
        Ok(json!({"cleared": n}))
    }

    /// `show bridges`: one row per bridge domain.
    pub fn show_bridges(&self) -> Value {
        let snap = self.dp.snapshot().load();
        Value::Array(
            snap.bridges
                .iter()
                .map(|bd| {
                    let members: Vec<String> = bd
                        .members
                        .iter()
                        .map(|(p, e)| {
                            let name = snap
                                .port_names
                                .get(*p as usize)
                                .cloned()
                                .unwrap_or_default();
                            match e {
                                pipelines::bridge::Egress::Untagged => name,
                                pipelines::bridge::Egress::Tagged(v) => format!("{name}.{v}"),
                                pipelines::bridge::Egress::Vxlan { .. } => {
                                    pipelines::vxlan::fdb::vtep_name(&snap.vxlan.vteps, *p)
                                }
                            }
                        })
                        .collect();
                    json!({
                        "name": bd.name,
                        "members": members.join(","),
                        "macs": bd.table.len(),
                        "static": bd.statics.len(),
                        "limit": bd.table.limit(),
                        "aging_s": bd.aging_s,
                        "aged": self.aged.get(&bd.name).copied().unwrap_or(0),
                        "flood_unknown": bd.flood_unknown_unicast,
                    })
                })
                .collect(),
        )
    }

    /// `show ports`: one object per port with info and counters.
    pub fn show_ports(&self) -> Value {
        let ports: Vec<Value> = self
            .dp
            .ports()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let info = p.info();
                let c = p.counters();
                json!({
                    "index": i,
                    "name": info.name,
                    "backend": info.backend,
                    "queues": info.queues,
                    "mac": info.mac.map(|m| config::MacAddr(m).to_string()),
                    "mtu": info.mtu,
                    "link_up": info.link_up,
                    "rx_packets": c.rx_packets,
                    "rx_bytes": c.rx_bytes,
                    "tx_packets": c.tx_packets,
                    "tx_bytes": c.tx_bytes,
                    "rx_missed": c.rx_missed,
                    "drops": c.drops.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        Value::Array(ports)
    }

    /// `show workers`: one object per worker.
    pub fn show_workers(&self) -> Value {
        Value::Array(
            self.dp
                .workers()
                .iter()
                .map(|w| {
                    let c = &w.counters;
                    json!({
                        "id": w.id,
                        "core": w.core,
                        "pinned": w.pinned,
                        "rx_packets": c.rx_packets.get(),
                        "tx_packets": c.tx_packets.get(),
                        "bursts": c.bursts.get(),
                        "empty_polls": c.empty_polls.get(),
                        "idle_sleeps": c.idle_sleeps.get(),
                        "drops": c.drops.total(),
                        "snapshot_generation": c.snapshot_generation.get(),
                    })
                })
                .collect(),
        )
    }

    /// `show drops`: drops by reason, summed over workers and port backends.
    pub fn show_drops(&self) -> Value {
        // In counter order; workers' sums from the dataplane, each port's counters read once.
        let mut totals: Vec<(&'static str, u64)> =
            DropReason::ALL.iter().map(|r| (r.name(), 0)).collect();
        let port_drops = self.dp.ports().iter().flat_map(|p| p.counters().drops);
        for (name, n) in self.dp.drops().into_iter().chain(port_drops) {
            if let Some(t) = totals.iter_mut().find(|(k, _)| *k == name) {
                t.1 += n;
            }
        }
        Value::Object(
            totals
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_string(), json!(n)))
                .collect(),
        )
    }

    /// `show stats`: totals.
    pub fn show_stats(&self) -> Value {
        let w = self.dp.workers();
        let sum = |f: fn(&dataplane::WorkerCounters) -> u64| {
            w.iter().map(|w| f(&w.counters)).sum::<u64>()
        };
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "generation": self.generation,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "workers": w.len(),
            "ports": self.dp.ports().len(),
            "rx_packets": sum(|c| c.rx_packets.get()),
            "tx_packets": sum(|c| c.tx_packets.get()),
            "drops": sum(|c| c.drops.total()),
            "bursts": sum(|c| c.bursts.get()),
            "events": dataplane::Event::ALL
                .iter()
                .map(|e| (e.name().to_string(), json!(w.iter().map(|w| w.counters.events.get(*e)).sum::<u64>())))
                .collect::<serde_json::Map<_, _>>(),
            "pool": {
                "buffers": self.pool.capacity(),
                "available": self.pool.available(),
                "hugepages": self.pool.on_hugepages(),
            },
            "host_stack": self.host_stats(),
        })
    }

    /// Stops the workers, the host stack, and closes the ports; every buffer goes home. DPDK, when this router
    /// started it, is ended too.
    pub fn stop(self) {
        let Router {
            dp,
            pool,
            dpdk,
            host,
            host_queues,
            ..
        } = self;
        dp.stop();
        if let Some(h) = host {
            h.stop();
        }
        host_queues.drain();
        drop(pool);
        if let Some(dpdk) = dpdk {
            dpdk.close();
        }
    }
}

/// Seconds on the workers' clock ([`dataplane::worker::monotonic_ns`]), the clock MAC ages are kept in.
fn now_s() -> u32 {
    (dataplane::worker::monotonic_ns() / 1_000_000_000) as u32
}
