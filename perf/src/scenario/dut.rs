//! The devices under test: wharf started from a config (in the device namespace for veth scenarios, or
//! already running for ring scenarios), and the kernel configured as its twin on the same veths.

use super::topo::VethTopo;
use super::Dut;
use anyhow::Context;
use control::router::Router;
use dataplane::netns;
use dataplane::port::afpacket::{AfPacketConfig, AfPacketPort};
use dataplane::{Pool, PoolConfig, Port};
use std::sync::Arc;

/// A device that is always on (wharf over ring ports, started by the scenario).
pub struct AlwaysOn(pub &'static str);

impl Dut for AlwaysOn {
    fn name(&self) -> String {
        self.0.to_string()
    }
    fn start(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    fn stop(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a scenario does to a started router before traffic (static neighbours, learned MACs...).
pub type Prepare<'a> = Box<dyn Fn(&Router) -> anyhow::Result<()> + 'a>;

/// wharf on the device's veths: started from `config` (parsed) in the device namespace on [`Dut::start`], stopped
/// on [`Dut::stop`], the kernel parked meanwhile.
pub struct WharfDut<'a> {
    topo: &'a VethTopo,
    config: control::config::Config,
    prepare: Prepare<'a>,
    router: Option<Router>,
}

impl<'a> WharfDut<'a> {
    /// wharf with `config` (TOML) on `topo`, `prepare`d after each start.
    pub fn new(
        topo: &'a VethTopo,
        config: control::config::Config,
        prepare: Prepare<'a>,
    ) -> WharfDut<'a> {
        WharfDut {
            topo,
            config,
            prepare,
            router: None,
        }
    }
}

impl Dut for WharfDut<'_> {
    fn name(&self) -> String {
        "wharf".into()
    }

    fn start(&mut self) -> anyhow::Result<()> {
        self.topo.park()?;
        let cfg = self.config.clone();
        let router = netns::run_in_netns(self.topo.dut.name(), move || Router::start(cfg, None))??;
        (self.prepare)(&router)?;
        self.router = Some(router);
        Ok(())
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(r) = self.router.take() {
            let drops = r.show_drops();
            if drops.as_object().is_some_and(|o| !o.is_empty()) {
                println!("  wharf drops: {drops}");
            }
            r.stop();
        }
        Ok(())
    }
}

impl Drop for WharfDut<'_> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A kernel action on the topology.
pub type Action<'a> = Box<dyn Fn(&VethTopo) -> anyhow::Result<()> + 'a>;

/// The kernel as the device: configured once by the scenario, switched on by `on` (after unparking) and off
/// by `off` (before parking).
pub struct KernelDut<'a> {
    topo: &'a VethTopo,
    name: String,
    on: Action<'a>,
    off: Action<'a>,
}

impl<'a> KernelDut<'a> {
    /// The kernel as `name` on `topo`.
    pub fn new(topo: &'a VethTopo, name: &str, on: Action<'a>, off: Action<'a>) -> KernelDut<'a> {
        KernelDut {
            topo,
            name: name.to_string(),
            on,
            off,
        }
    }
}

impl Dut for KernelDut<'_> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn start(&mut self) -> anyhow::Result<()> {
        self.topo.unpark()?;
        (self.on)(self.topo)
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        (self.off)(self.topo)?;
        self.topo.park()
    }
}

/// The generator's two AF_PACKET ports: queues and the ports they belong to.
pub struct GenPorts {
    /// Queue of `g_a` (sends).
    pub tx: Box<dyn dataplane::PortQueue>,
    /// Queue of `g_b` (receives).
    pub rx: Box<dyn dataplane::PortQueue>,
    /// The ports (kept open as long as the queues).
    pub ports: [Arc<AfPacketPort>; 2],
}

/// Opens the generator's ports in the generator namespace (`g_a` sends, `g_b` receives) on `pool`.
pub fn generator_ports(topo: &VethTopo, pool: &Pool) -> anyhow::Result<GenPorts> {
    let (ga, gb) = (topo.g_a().to_string(), topo.g_b().to_string());
    let pool2 = pool.clone();
    let (tx, rx) = topo.gen.run(
        move || -> anyhow::Result<(Arc<AfPacketPort>, Arc<AfPacketPort>)> {
            let cfg = |ifname: &str| AfPacketConfig {
                interface: ifname.to_string(),
                queues: 1,
                promiscuous: true,
                // Hand over a partly filled receive block after 1 ms: it bounds the latency the receive
                // ring adds at low rates.
                block_timeout_ms: 1,
                ..AfPacketConfig::default()
            };
            let tx =
                AfPacketPort::open("gen-tx", &cfg(&ga), &pool2).context("generator tx port")?;
            let rx =
                AfPacketPort::open("gen-rx", &cfg(&gb), &pool2).context("generator rx port")?;
            Ok((tx, rx))
        },
    )??;
    Ok(GenPorts {
        tx: tx.open_queue(0)?,
        rx: rx.open_queue(0)?,
        ports: [tx, rx],
    })
}

/// A pool for the generator.
pub fn generator_pool() -> anyhow::Result<Pool> {
    Ok(Pool::new(&PoolConfig {
        buffers: 32768,
        hugepages: false,
        ..Default::default()
    })?)
}
