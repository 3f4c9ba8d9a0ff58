//! Scenarios: one command each (`wharf-perf scenario NAME`) that builds a topology, measures, tears it down
//! and appends rows to the results file.
//!
//! Every scenario measures each of its devices under test ([`Dut`]) the same way ([`compare`]): `--runs`
//! trials as fast as the generator goes (the forwarded rate, "MRR"), the devices alternating run by run so
//! a noisy machine hurts them alike; then per device, with `--search`, the NDR/PDR search; then a latency
//! trial at `--latency-load` of the device's PDR (or of its MRR without a search), written as `.hgrm` files
//! and one SVG plot. Where a scenario has a kernel twin on the same veths, the result rows carry the ratio
//! wharf / kernel of the median MRRs (and of NDR/PDR when searched).
//!
//! Adding a scenario: a module with a `fn run(&Options) -> anyhow::Result<Vec<Measured>>` that builds its
//! topology and calls [`compare`], and one line in [`SCENARIOS`].

pub mod bridge;
pub mod dut;
pub mod nat;
pub mod results;
pub mod route;
pub mod topo;
pub mod vxlan;
pub mod xconnect;

use crate::gen::{Encap, Profile, Proto, Sizes};
use crate::latency::{points, Summary};
use crate::plot::Series;
use crate::search::{search, SearchConfig, Trial};
use crate::trial::PortTrial;
use hdrhistogram::Histogram;
use std::path::PathBuf;

/// One scenario of the registry.
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line on what it measures.
    pub about: &'static str,
    /// Needs root (network namespaces).
    pub root: bool,
    /// Builds, measures, tears down.
    pub run: fn(&Options) -> anyhow::Result<Vec<Measured>>,
}

/// Every scenario. NAT and overlay (VXLAN) scenarios join here.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "xconnect-ring",
        about: "cross-connect over ring ports (pipeline only, worker on one core)",
        root: false,
        run: xconnect::ring,
    },
    Scenario {
        name: "bridge-ring",
        about: "learning bridge over ring ports (pipeline only, worker on one core)",
        root: false,
        run: bridge::ring,
    },
    Scenario {
        name: "route-ring",
        about: "IPv4 routing over ring ports, --routes routes (pipeline only, worker on one core)",
        root: false,
        run: route::ring,
    },
    Scenario {
        name: "xconnect-veth",
        about: "cross-connect on AF_PACKET over veth in namespaces, vs the kernel's tc mirred redirect",
        root: true,
        run: xconnect::veth,
    },
    Scenario {
        name: "bridge-veth",
        about: "learning bridge on AF_PACKET over veth in namespaces, vs a Linux bridge",
        root: true,
        run: bridge::veth,
    },
    Scenario {
        name: "route-veth",
        about: "IPv4 routing on AF_PACKET over veth in namespaces, --routes routes, vs kernel ip_forward",
        root: true,
        run: route::veth,
    },
    Scenario {
        name: "nat-ring",
        about: "NAT (masquerade) of --flows UDP sessions over ring ports (pipeline only, worker on one core)",
        root: false,
        run: nat::ring,
    },
    Scenario {
        name: "nat-veth",
        about: "NAT (masquerade) of --flows UDP sessions on AF_PACKET over veth, vs nftables masquerade",
        root: true,
        run: nat::veth,
    },
    Scenario {
        name: "vxlan-ring",
        about: "VXLAN encapsulation toward a remote VTEP over ring ports (pipeline only, worker on one core)",
        root: false,
        run: vxlan::ring,
    },
    Scenario {
        name: "vxlan-veth",
        about: "VXLAN encapsulation on AF_PACKET over veth, vs a Linux bridge with a vxlan device",
        root: true,
        run: vxlan::veth,
    },
];

/// Options common to every scenario.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Trials as fast as possible per device (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seconds per trial.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Frame sizes with FCS: `64`, `imix`, or a list `64,512,1518` (cycled).
    #[arg(long, default_value = "64", value_parser = Sizes::parse)]
    pub frame: Sizes,
    /// Flows (source address and port combinations; routes spread destinations too).
    #[arg(long, default_value_t = 1024)]
    pub flows: u32,
    /// L4 protocol.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    pub proto: Proto,
    /// Tag frames with this 802.1Q VLAN (cross-connect scenarios; the bridge and route networks of the
    /// scenarios take untagged frames).
    #[arg(long)]
    pub vlan: Option<u16>,
    /// Routes in the table (route scenarios).
    #[arg(long, default_value_t = 1)]
    pub routes: usize,
    /// Also search NDR and PDR.
    #[arg(long)]
    pub search: bool,
    /// Seconds per search trial.
    #[arg(long, default_value_t = 1.0)]
    pub trial_secs: f64,
    /// Search precision: relative width of the final interval.
    #[arg(long, default_value_t = 0.02)]
    pub precision: f64,
    /// Loss ratio allowed at the PDR.
    #[arg(long, default_value_t = 0.005)]
    pub pdr_loss: f64,
    /// Lowest rate the search tries, frames per second.
    #[arg(long, default_value_t = 10_000.0)]
    pub min_rate: f64,
    /// Load of the latency trial, as a fraction of the PDR (or of the MRR without --search).
    #[arg(long, default_value_t = 0.5)]
    pub latency_load: f64,
    /// Seconds of the latency trial.
    #[arg(long, default_value_t = 2.0)]
    pub latency_secs: f64,
    /// Seconds of traffic as fast as possible after each start, before a timed trial (caches, learning,
    /// neighbour entries; NAT scenarios stretch it so that the sessions a timed run touches are open).
    #[arg(long, default_value_t = 0.2)]
    pub warmup_secs: f64,
    /// Measure wharf only, not its kernel twin.
    #[arg(long)]
    pub no_kernel: bool,
    /// Leave the kernel's receive work where the sender runs. By default receive packet steering (RPS) puts
    /// it on the core of the side that receives: the device's core for `d_a`/`d_b`, the generator's for
    /// `g_a`/`g_b`; without it, the kernel's forwarding work on veth runs on the generator's core.
    #[arg(long)]
    pub no_rps: bool,
    /// Core of wharf's worker (the generator takes the other of cores 0 and 1).
    #[arg(long, default_value_t = 1)]
    pub core: usize,
    /// Results file (tab-separated, one row per device and scenario run; appended).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results/results.tsv"))]
    pub results: PathBuf,
    /// Directory of the `.hgrm` files and the SVG plot.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out: PathBuf,
}

impl Options {
    /// The traffic profile of these options (addresses and MACs are the scenario's).
    pub fn profile(&self) -> Profile {
        Profile {
            sizes: self.frame.clone(),
            flows: self.flows,
            proto: self.proto,
            encap: self.vlan.map_or(Encap::None, Encap::Vlan),
            ..Profile::default()
        }
    }

    /// The generator's core: the other one of 0 and 1.
    pub fn gen_core(&self) -> usize {
        1 - self.core.min(1)
    }
}

/// A device under test that can be switched on and off between trials (wharf with a config, or the kernel
/// configured as its twin).
pub trait Dut {
    /// `wharf` or `kernel`, and how (`wharf`, `kernel-bridge`...).
    fn name(&self) -> String;
    /// Makes it forward.
    fn start(&mut self) -> anyhow::Result<()>;
    /// Makes it stop forwarding (and releases the ports).
    fn stop(&mut self) -> anyhow::Result<()>;
}

/// What was measured on one device.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Scenario name.
    pub scenario: String,
    /// Device name.
    pub dut: String,
    /// Forwarded frames per second of each run as fast as possible.
    pub mrr: Vec<f64>,
    /// Offered frames per second of those runs.
    pub offered: Vec<f64>,
    /// NDR, frames per second (`Some(None)`: searched, none found).
    pub ndr: Option<Option<f64>>,
    /// PDR.
    pub pdr: Option<Option<f64>>,
    /// Latency trial: rate and summary.
    pub latency_pps: f64,
    /// Latency percentiles.
    pub latency: Summary,
    /// The latency histogram (nanoseconds).
    pub hist: Histogram<u64>,
    /// Loss of the latency trial (frames).
    pub latency_lost: u64,
    /// Frames duplicated or reordered over all trials.
    pub dup_reorder: (u64, u64),
    /// What the scenario wants said in the row (table size, backend...).
    pub notes: String,
    /// The scenario's [`Probe`] of this device, when it has one: frames that passed its check, frames it
    /// sent.
    pub checked: Option<(u64, u64)>,
}

/// A scenario's check of what a device does to frames, beyond their arrival (which the receiver counts):
/// run once per device, started, before the measurements; it sends frames with [`PortTrial::send_raw`],
/// takes what arrives with [`PortTrial::receive_raw`], and returns (frames that passed, frames sent). A
/// NAT checks that the source seen outside is an outside address; an overlay, that frames leave in VXLAN to
/// the remote VTEP. The figures go into the rows' `checked`.
pub type Probe<'a> = &'a dyn Fn(&mut PortTrial) -> anyhow::Result<(u64, u64)>;

impl Measured {
    /// Median MRR.
    pub fn mrr_median(&self) -> f64 {
        crate::median(&mut self.mrr.clone())
    }
}

/// Measures every device of `duts` on `trial` as the module docs say; `label` names the scenario.
/// `learn` frames are sent backwards (from the receiving port) after each start, e.g. so that a bridge
/// learns where the destination MAC is.
pub fn compare(
    label: &str,
    trial: &mut PortTrial,
    duts: &mut [&mut dyn Dut],
    learn: &[Vec<u8>],
    probe: Option<Probe>,
    o: &Options,
) -> anyhow::Result<Vec<Measured>> {
    let start = |d: &mut dyn Dut, trial: &mut PortTrial| -> anyhow::Result<()> {
        d.start()?;
        if !learn.is_empty() {
            trial.send_raw(learn, true)?;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    };
    let mut out: Vec<Measured> = duts
        .iter()
        .map(|d| Measured {
            scenario: label.to_string(),
            dut: d.name(),
            mrr: Vec::new(),
            offered: Vec::new(),
            ndr: None,
            pdr: None,
            latency_pps: 0.0,
            latency: Summary::default(),
            hist: Histogram::new(3).expect("histogram"),
            latency_lost: 0,
            dup_reorder: (0, 0),
            notes: String::new(),
            checked: None,
        })
        .collect();
    if let Some(probe) = probe {
        for (d, m) in duts.iter_mut().zip(out.iter_mut()) {
            start(&mut **d, trial)?;
            let r = probe(trial);
            d.stop()?;
            let (ok, sent) = r?;
            println!("{label} {}: probe: {ok} of {sent} frames passed", m.dut);
            m.checked = Some((ok, sent));
        }
    }
    for run in 1..=o.runs {
        for (d, m) in duts.iter_mut().zip(out.iter_mut()) {
            start(&mut **d, trial)?;
            // Warm-up: caches, learning, neighbour entries, sessions.
            trial.run(f64::INFINITY, o.warmup_secs)?;
            let r = trial.run(f64::INFINITY, o.secs)?;
            let c = trial.rx.counts();
            m.dup_reorder.0 += c.duplicates;
            m.dup_reorder.1 += c.reordered;
            d.stop()?;
            println!(
                "{label} {} run {run}: offered {:.4} Mpps, forwarded {:.4} Mpps, loss {:.3}%",
                m.dut,
                r.offered_pps() / 1e6,
                r.received_pps() / 1e6,
                r.loss_ratio() * 100.0
            );
            m.mrr.push(r.received_pps());
            m.offered.push(r.offered_pps());
        }
    }
    for (d, m) in duts.iter_mut().zip(out.iter_mut()) {
        start(&mut **d, trial)?;
        trial.run(f64::INFINITY, o.warmup_secs)?;
        let mut load_base = m.mrr_median();
        if o.search {
            let cfg = SearchConfig {
                min_pps: o.min_rate,
                max_pps: None,
                trial_secs: o.trial_secs,
                precision: o.precision,
                pdr_loss: o.pdr_loss,
                max_trials: 40,
            };
            println!("{label} {}: NDR/PDR search", m.dut);
            let res = search(trial, &cfg, |l| println!("  {l}"))?;
            m.ndr = Some(res.ndr.rate());
            m.pdr = Some(res.pdr.rate());
            if let Some(p) = res.pdr.rate() {
                load_base = p;
            }
        }
        let rate = (load_base * o.latency_load).max(1000.0);
        let r = trial.run(rate, o.latency_secs)?;
        m.latency_pps = rate;
        m.latency = Summary::of(trial.rx.histogram());
        m.hist = trial.rx.histogram().clone();
        m.latency_lost = r.lost();
        d.stop()?;
        println!(
            "{label} {}: at {:.4} Mpps ({:.0}% of {}), loss {} frames, {}",
            m.dut,
            rate / 1e6,
            o.latency_load * 100.0,
            if o.search { "PDR" } else { "MRR" },
            r.lost(),
            m.latency
        );
    }
    Ok(out)
}

/// Writes the `.hgrm` files and the SVG plot of `rows` into `o.out`, named after `scenario`; returns the
/// plot's path.
pub fn write_latency(scenario: &str, rows: &[Measured], o: &Options) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&o.out)?;
    let mut series = Vec::new();
    for m in rows {
        let path = o.out.join(format!("{scenario}-{}.hgrm", m.dut));
        crate::latency::write_hgrm(&m.hist, &path)?;
        series.push(Series {
            name: format!("{} at {:.3} Mpps", m.dut, m.latency_pps / 1e6),
            points: points(&m.hist),
            summary: m.latency,
        });
    }
    let svg = o.out.join(format!("{scenario}.svg"));
    crate::plot::write_svg(
        &format!(
            "{scenario}: one-way latency, {}-byte frames, {} flows",
            o.frame.label(),
            o.flows
        ),
        &series,
        &svg,
    )?;
    Ok(svg)
}

/// Runs scenario `name` with options `o`: measures, writes latency files, appends result rows, prints a
/// summary with the wharf / kernel ratios.
/// `all` runs every scenario in turn (those needing root only as root).
pub fn run(name: &str, o: &Options) -> anyhow::Result<()> {
    if name == "all" {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        for s in SCENARIOS {
            if s.root && !root {
                println!("=== {}: skipped (needs root)", s.name);
                continue;
            }
            println!("=== {}", s.name);
            run(s.name, o)?;
        }
        return Ok(());
    }
    let Some(s) = SCENARIOS.iter().find(|s| s.name == name) else {
        anyhow::bail!(
            "no scenario {name}; there are: {} (or all)",
            SCENARIOS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if s.root {
        // SAFETY: geteuid has no preconditions.
        anyhow::ensure!(
            unsafe { libc::geteuid() } == 0,
            "scenario {name} needs root: it builds network namespaces and veth pairs"
        );
    }
    let rows = (s.run)(o)?;
    // Route scenarios with a large table, and NAT scenarios with many sessions, keep their own latency files.
    let stem = if name.starts_with("route") && o.routes > 1 {
        format!("{name}-{}routes", o.routes)
    } else if name.starts_with("nat") && o.flows > 65_536 {
        format!("{name}-{}flows", o.flows)
    } else {
        name.to_string()
    };
    let svg = write_latency(&stem, &rows, o)?;
    let summary = results::append(&o.results, name, &rows, o)?;
    println!("{summary}");
    println!("latency plot: {}", svg.display());
    println!("rows appended to {}", o.results.display());
    Ok(())
}

/// Parses a scenario's config text.
pub fn parse(text: &str) -> anyhow::Result<control::config::Config> {
    Ok(control::config::parse(text, "<scenario>")?)
}

/// A ring scenario: the router started from `config` (ring ports `a` and `b` with external peers `gen_a`
/// and `gen_b`, worker on `o.core`), `prepare`d, then measured with `profile` from `gen_a` to `gen_b` by a
/// generator on the other core (checked first by `probe`, if any). Returns the rows.
pub fn ring_scenario(
    label: &str,
    o: &Options,
    config: control::config::Config,
    prepare: impl FnOnce(&control::router::Router) -> anyhow::Result<Profile>,
    learn: impl FnOnce(&Profile) -> Vec<Vec<u8>>,
    probe: Option<Probe>,
) -> anyhow::Result<Vec<Measured>> {
    use anyhow::Context;
    use dataplane::Port;
    let router = control::router::Router::start(config, None)?;
    let r = (|| {
        let profile = prepare(&router)?;
        let learn = learn(&profile);
        pin(o.gen_core());
        let clock = crate::gen::Clock::new();
        let tx = router.ring_peer("gen_a").context("ring port gen_a")?;
        let rx = router.ring_peer("gen_b").context("ring port gen_b")?;
        let gen = crate::gen::Generator::new(profile, 32, clock)?;
        let mut trial = PortTrial::new(
            gen,
            tx.open_queue(0)?,
            rx.open_queue(0)?,
            router.pool().clone(),
            clock,
        );
        let mut dut = dut::AlwaysOn("wharf");
        let mut rows = compare(label, &mut trial, &mut [&mut dut], &learn, probe, o)?;
        let drops = router.show_drops();
        for m in &mut rows {
            m.notes = format!(
                "ring ports, worker on core {}, generator on core {}; wharf drops {drops}",
                o.core,
                o.gen_core()
            );
        }
        Ok(rows)
    })();
    router.stop();
    r
}

/// What a veth scenario's kernel twin is: its name, its one-time setup in the device namespace, and how it
/// is switched on and off between trials.
pub struct KernelTwin<'a> {
    /// Row name (`kernel-bridge`...).
    pub name: &'static str,
    /// Configures the kernel once (bridges, addresses, routes), parked.
    pub setup: dut::Action<'a>,
    /// Switches it on (after the ports are unparked).
    pub on: dut::Action<'a>,
    /// Switches it off (before the ports are parked).
    pub off: dut::Action<'a>,
}

/// A veth scenario: builds [`topo::VethTopo`], sets up the kernel twin, and measures wharf (its config from
/// `config`, `prepare`d after each start) and the kernel alternately with `profile` (and its `learn`ing
/// frames, and its `probe`, which checks each device first, if any). Everything is torn
/// down at the end, also on error.
pub fn veth_scenario<'a>(
    label: &str,
    o: &Options,
    topo: &'a topo::VethTopo,
    config: control::config::Config,
    prepare: dut::Prepare<'a>,
    kernel: Option<KernelTwin<'a>>,
    (profile, learn, probe): (Profile, Vec<Vec<u8>>, Option<Probe>),
) -> anyhow::Result<Vec<Measured>> {
    pin(o.gen_core());
    let pool = dut::generator_pool()?;
    let dut::GenPorts {
        tx: txq,
        rx: rxq,
        ports: _ports,
    } = dut::generator_ports(topo, &pool)?;
    let clock = crate::gen::Clock::new();
    let gen = crate::gen::Generator::new(profile, 32, clock)?;
    let mut trial = PortTrial::new(gen, txq, rxq, pool, clock);
    let mut wharf = dut::WharfDut::new(topo, config, prepare);
    let mut rows = match kernel.filter(|_| !o.no_kernel) {
        Some(k) => {
            (k.setup)(topo)?;
            let mut kd = dut::KernelDut::new(topo, k.name, k.on, k.off);
            compare(
                label,
                &mut trial,
                &mut [&mut wharf, &mut kd],
                &learn,
                probe,
                o,
            )?
        }
        None => compare(label, &mut trial, &mut [&mut wharf], &learn, probe, o)?,
    };
    for m in &mut rows {
        m.notes = format!(
            "AF_PACKET on veth in namespaces; device on core {}, generator on core {}",
            o.core,
            o.gen_core()
        );
    }
    Ok(rows)
}

/// A name prefix unique to this process, short enough for interface names.
pub fn prefix(letter: char) -> String {
    format!("{letter}{:x}", std::process::id() % 0xfff)
}

/// Pins the calling thread to `core` when it exists.
pub fn pin(core: usize) {
    if let Some(ids) = core_affinity::get_core_ids() {
        if let Some(id) = ids.into_iter().find(|c| c.id == core) {
            core_affinity::set_for_current(id);
        }
    }
}
