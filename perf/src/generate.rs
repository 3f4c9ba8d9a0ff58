//! `wharf-perf gen`: the generator and receiver on their own, against any device. The two ports are opened
//! from a wharf config's `[[ports]]` (`--config FILE --tx NAME --rx NAME`: any backend wharf has, `ring`,
//! `pcap`, `afpacket`, and `dpdk` when built with the feature), or given as two interfaces for AF_PACKET
//! (`--tx-if`, `--rx-if`, optionally inside `--netns`); with neither, a ring port cabled back to itself (a
//! self-test of the generator). One trial at `--rate` (or as fast as possible), or the NDR/PDR search, then
//! the receiver's counts and latency percentiles, and optionally the `.hgrm` file and the SVG plot.

use crate::gen::{Clock, Encap, Generator, Profile, Proto, Sizes};
use crate::latency::Summary;
use crate::search::{search, SearchConfig, Trial};
use crate::trial::PortTrial;
use anyhow::Context;
use dataplane::port::afpacket::{AfPacketConfig, AfPacketPort};
use dataplane::port::ring::RingPort;
use dataplane::{Pool, PoolConfig, Port, PortQueue};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

/// Options of `wharf-perf gen`.
#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// A wharf config whose `[[ports]]` include the two below (other sections are ignored).
    #[arg(long, requires_all = ["tx", "rx"])]
    pub config: Option<PathBuf>,
    /// Port of `--config` to send on.
    #[arg(long)]
    pub tx: Option<String>,
    /// Port of `--config` to receive on.
    #[arg(long)]
    pub rx: Option<String>,
    /// Interface to send on (AF_PACKET).
    #[arg(long, conflicts_with = "config", requires = "rx_if")]
    pub tx_if: Option<String>,
    /// Interface to receive on (AF_PACKET; may be the same as --tx-if).
    #[arg(long)]
    pub rx_if: Option<String>,
    /// Network namespace of the interfaces (`ip netns` name).
    #[arg(long)]
    pub netns: Option<String>,
    /// Frame sizes with FCS: `64`, `imix`, or a list `64,512,1518` (cycled).
    #[arg(long, default_value = "64", value_parser = Sizes::parse)]
    pub frame: Sizes,
    /// Flows: source addresses and ports vary (4096 ports per address).
    #[arg(long, default_value_t = 1)]
    pub flows: u32,
    /// L4 protocol.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    pub proto: Proto,
    /// 802.1Q VLAN id to tag frames with.
    #[arg(long)]
    pub vlan: Option<u16>,
    /// Source MAC.
    #[arg(long, default_value = "02:00:00:00:00:01", value_parser = parse_mac)]
    pub src_mac: [u8; 6],
    /// Destination MAC (the device's port, for a router).
    #[arg(long, default_value = "02:00:00:00:00:02", value_parser = parse_mac)]
    pub dst_mac: [u8; 6],
    /// First source address.
    #[arg(long, default_value = "198.18.0.1")]
    pub src_ip: Ipv4Addr,
    /// First destination address.
    #[arg(long, default_value = "198.19.0.1")]
    pub dst_ip: Ipv4Addr,
    /// Destination addresses (consecutive from --dst-ip), cycled over the flows.
    #[arg(long, default_value_t = 1)]
    pub dst_count: u32,
    /// Frames per second (0: as fast as the port takes them).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds to send.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Search NDR and PDR instead of one trial (--secs per trial; --rate, when given, is the maximum).
    #[arg(long)]
    pub search: bool,
    /// Search precision (relative width of the final interval).
    #[arg(long, default_value_t = 0.01)]
    pub precision: f64,
    /// Loss ratio allowed at the PDR.
    #[arg(long, default_value_t = 0.005)]
    pub pdr_loss: f64,
    /// Lowest rate the search tries, frames per second.
    #[arg(long, default_value_t = 10_000.0)]
    pub min_rate: f64,
    /// Write the latency distribution of the (last) trial here (`.hgrm`).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write its plot here (SVG).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Core to pin the generator to.
    #[arg(long)]
    pub core: Option<usize>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    dataplane::netns::parse_mac(s).ok_or_else(|| format!("{s:?} is not a MAC address"))
}

/// The two queues and what keeps them open.
struct Queues {
    tx: Box<dyn PortQueue>,
    rx: Box<dyn PortQueue>,
    _keep: Vec<Arc<dyn Port>>,
    _opened: Option<control::ports::OpenedPorts>,
}

fn open(a: &GenArgs, pool: &Pool) -> anyhow::Result<(Queues, String)> {
    if let Some(path) = &a.config {
        let cfg = control::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let open = || control::ports::open_ports(&cfg, pool, 1);
        let opened = match &a.netns {
            Some(ns) => dataplane::netns::run_in_netns(ns, open)??,
            None => open()?,
        };
        let find = |name: &str| -> anyhow::Result<Arc<dyn Port>> {
            opened
                .ports
                .iter()
                .find(|p| p.info().name == name)
                .cloned()
                .with_context(|| format!("no port {name} in {}", path.display()))
        };
        let (tx, rx) = (
            find(a.tx.as_deref().unwrap_or_default())?,
            find(a.rx.as_deref().unwrap_or_default())?,
        );
        let what = format!(
            "ports {} ({}) → {} ({})",
            tx.info().name,
            tx.info().backend,
            rx.info().name,
            rx.info().backend
        );
        anyhow::ensure!(
            !Arc::ptr_eq(&tx, &rx),
            "--tx and --rx must be two ports (a queue is owned once)"
        );
        let txq = tx.open_queue(0)?;
        let rxq = rx.open_queue(0)?;
        return Ok((
            Queues {
                tx: txq,
                rx: rxq,
                _keep: vec![tx, rx],
                _opened: Some(opened),
            },
            what,
        ));
    }
    if let (Some(ti), Some(ri)) = (&a.tx_if, &a.rx_if) {
        let (ti, ri, pool2) = (ti.clone(), ri.clone(), pool.clone());
        let open = move || -> anyhow::Result<(Arc<AfPacketPort>, Arc<AfPacketPort>)> {
            let cfg = |i: &str| AfPacketConfig {
                interface: i.to_string(),
                queues: 1,
                promiscuous: true,
                block_timeout_ms: 1,
                ..AfPacketConfig::default()
            };
            Ok((
                AfPacketPort::open("gen-tx", &cfg(&ti), &pool2)?,
                AfPacketPort::open("gen-rx", &cfg(&ri), &pool2)?,
            ))
        };
        let (tx, rx) = match &a.netns {
            Some(ns) => dataplane::netns::run_in_netns(ns, open)??,
            None => open()?,
        };
        let what = format!(
            "AF_PACKET {} → {}",
            a.tx_if.as_deref().unwrap_or(""),
            a.rx_if.as_deref().unwrap_or("")
        );
        return Ok((
            Queues {
                tx: tx.open_queue(0)?,
                rx: rx.open_queue(0)?,
                _keep: vec![tx, rx],
                _opened: None,
            },
            what,
        ));
    }
    let (t, r) = RingPort::pair("gen-tx", "gen-rx", 1, 4096);
    Ok((
        Queues {
            tx: t.open_queue(0)?,
            rx: r.open_queue(0)?,
            _keep: vec![t, r],
            _opened: None,
        },
        "ring loopback (self-test)".into(),
    ))
}

/// The profile of the options.
pub fn profile(a: &GenArgs) -> Profile {
    let base = u32::from(a.dst_ip);
    Profile {
        sizes: a.frame.clone(),
        flows: a.flows,
        proto: a.proto,
        encap: a.vlan.map_or(Encap::None, Encap::Vlan),
        src_mac: a.src_mac,
        dst_mac: a.dst_mac,
        src_ip: a.src_ip.octets(),
        dst_ips: (0..a.dst_count.max(1))
            .map(|i| base.wrapping_add(i).to_be_bytes())
            .collect(),
        dst_port: 9,
    }
}

/// What `wharf-perf gen` measured (of the last trial).
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The last trial.
    pub last: crate::search::TrialResult,
    /// The receiver's counts of it.
    pub counts: crate::analyse::Counts,
    /// Its latency.
    pub latency: Summary,
    /// The search, when asked.
    pub search: Option<crate::search::SearchResult>,
}

/// Runs `wharf-perf gen`.
pub fn run(a: &GenArgs) -> anyhow::Result<Outcome> {
    if let Some(c) = a.core {
        crate::scenario::pin(c);
    }
    let pool = Pool::new(&PoolConfig {
        buffers: 32768,
        hugepages: false,
        ..Default::default()
    })?;
    let (q, what) = open(a, &pool)?;
    let clock = Clock::new();
    let p = profile(a);
    let gen = Generator::new(p.clone(), 32, clock)?;
    let mut trial = PortTrial::new(gen, q.tx, q.rx, pool, clock);
    println!(
        "gen: {what}; {} frames, {} flows, {:?}{}",
        a.frame.label(),
        a.flows,
        a.proto,
        a.vlan.map_or(String::new(), |v| format!(", VLAN {v}"))
    );
    let rate = if a.rate > 0.0 { a.rate } else { f64::INFINITY };
    let mut searched = None;
    let last = if a.search {
        let cfg = SearchConfig {
            min_pps: a.min_rate,
            max_pps: rate.is_finite().then_some(rate),
            trial_secs: a.secs,
            precision: a.precision,
            pdr_loss: a.pdr_loss,
            max_trials: 40,
        };
        let r = search(&mut trial, &cfg, |l| println!("{l}"))?;
        let f = |g: Option<f64>| g.map_or("none".into(), |v| format!("{:.4} Mpps", v / 1e6));
        println!(
            "NDR {} PDR({:.2}%) {} (maximum {:.4} Mpps, {} trials)",
            f(r.ndr.rate()),
            a.pdr_loss * 100.0,
            f(r.pdr.rate()),
            r.max_pps / 1e6,
            r.trials.len()
        );
        let last = *r.trials.last().expect("at least one trial");
        searched = Some(r);
        last
    } else {
        let r = trial.run(rate, a.secs)?;
        let c = trial.rx.counts();
        // On the wire each frame also takes its FCS, preamble and inter-frame gap: 24 bytes.
        let gbps = (c.bytes + c.received * 24) as f64 * 8.0 / r.secs / 1e9;
        println!(
            "offered {} frames ({:.4} Mpps; {} refused by the port), received {} ({:.4} Mpps, {gbps:.3} Gbit/s on the wire)",
            r.offered,
            r.offered_pps() / 1e6,
            trial.refused,
            r.received,
            r.received_pps() / 1e6
        );
        println!(
            "lost {} ({:.4}%), duplicates {}, reordered {}, late {}, of an earlier trial {}, not ours {}",
            r.lost(),
            r.loss_ratio() * 100.0,
            c.duplicates,
            c.reordered,
            c.late,
            c.stale,
            c.foreign
        );
        r
    };
    let s = Summary::of(trial.rx.histogram());
    println!("{s}");
    if let Some(path) = &a.hgrm {
        crate::latency::write_hgrm(trial.rx.histogram(), path)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.svg {
        crate::plot::write_svg(
            &format!("wharf-perf gen: {what}"),
            &[crate::plot::Series {
                name: format!("{} frames, {} flows", a.frame.label(), a.flows),
                points: crate::latency::points(trial.rx.histogram()),
                summary: s,
            }],
            path,
        )?;
        println!("wrote {}", path.display());
    }
    Ok(Outcome {
        last,
        counts: trial.rx.counts(),
        latency: s,
        search: searched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: GenArgs,
    }

    #[test]
    fn self_test_and_ports_from_a_config_carry_every_frame() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("ports.toml");
        std::fs::write(
            &cfg,
            "[[ports]]\nname = \"x\"\nbackend = \"ring\"\npeer = \"y\"\n\n[[ports]]\nname = \"y\"\nbackend = \"ring\"\npeer = \"x\"\n",
        )
        .unwrap();
        let hgrm = dir.path().join("gen.hgrm");
        let svg = dir.path().join("gen.svg");
        let (cfg, hgrm, svg) = (
            cfg.to_str().unwrap().to_string(),
            hgrm.to_str().unwrap().to_string(),
            svg.to_str().unwrap().to_string(),
        );
        for args in [
            vec![
                "gen", "--rate", "200000", "--secs", "0.2", "--frame", "imix", "--flows", "5000",
                "--proto", "tcp", "--vlan", "12",
            ],
            vec![
                "gen", "--config", &cfg, "--tx", "x", "--rx", "y", "--rate", "200000", "--secs",
                "0.2", "--hgrm", &hgrm, "--svg", &svg,
            ],
        ] {
            let a = Cli::parse_from(&args).a;
            let o = run(&a).unwrap();
            assert!(o.last.offered > 10_000, "{args:?}: {o:?}");
            assert_eq!(o.last.received, o.last.offered, "{args:?}: {o:?}");
            assert_eq!((o.counts.duplicates, o.counts.foreign), (0, 0));
            assert_eq!(o.latency.count, o.last.received);
        }
        assert!(std::fs::read_to_string(&hgrm)
            .unwrap()
            .contains("Total count"));
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
        let a = Cli::parse_from(["gen", "--config", &cfg, "--tx", "x", "--rx", "nope"]).a;
        assert!(run(&a).unwrap_err().to_string().contains("no port nope"));
    }
}
