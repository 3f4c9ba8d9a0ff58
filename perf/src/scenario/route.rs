//! IPv4 routing scenarios: port `a` (10.0.0.1/24) receives from a host on its subnet, port `b` (10.1.0.1/24)
//! leads to the gateway 10.1.0.2 (a static neighbour: the generator's receiving MAC), and `--routes` routes
//! point at it: with one route, 198.18.0.0/15; with more, BGP-like random prefixes (the generator of the
//! FIB benchmarks, seeded), and each flow's destination inside a different route, so the whole table is the
//! working set. The kernel's twin on veth has the same addresses, neighbour and routes (`ip -batch`) and
//! `ip_forward`.

use super::topo::{sysctl, VethTopo, D_A_MAC, G_A_MAC, G_B_MAC};
use super::{prefix, ring_scenario, veth_scenario, KernelTwin, Measured, Options};
use crate::gen::Profile;
use anyhow::Context;
use control::config::{Config, IpCidr, Ipv4Cidr, RouteCfg, RouteKind};
use control::router::Router;
use pipelines::fib::{bgp_like_prefixes, SplitMix64};
use pipelines::l3::neigh::NeighKey;
use std::net::{IpAddr, Ipv4Addr};

/// The gateway behind port `b`.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

/// The routes and one destination inside each (at least 1024 destinations, cycling over the routes).
pub struct Table {
    /// Prefixes.
    pub prefixes: Vec<(Ipv4Addr, u8)>,
    /// Destinations of the flows.
    pub dsts: Vec<[u8; 4]>,
}

impl Table {
    /// `n` routes.
    pub fn new(n: usize) -> Table {
        let prefixes: Vec<(Ipv4Addr, u8)> = if n <= 1 {
            vec![(Ipv4Addr::new(198, 18, 0, 0), 15)]
        } else {
            bgp_like_prefixes(n + n / 20 + 16, 1)
                .into_iter()
                .filter(|(p, _)| matches!(p.octets()[0], 1..=9 | 11..=126 | 128..=223))
                .take(n)
                .collect()
        };
        let mut rng = SplitMix64::new(7);
        let count = prefixes.len().max(1024);
        let dsts = (0..count)
            .map(|i| {
                let (p, l) = prefixes[i % prefixes.len()];
                let host = if l >= 32 { 0 } else { u32::MAX >> l };
                // Not the network's first or last address, when it has others.
                let r = rng.next_u64() as u32 & host;
                let r = if host >= 2 { r.clamp(1, host - 1) } else { r };
                (u32::from(p) | r).to_be_bytes()
            })
            .collect();
        Table { prefixes, dsts }
    }

    /// The routes as config entries, via [`GATEWAY`].
    pub fn routes(&self) -> Vec<RouteCfg> {
        self.prefixes
            .iter()
            .map(|&(p, l)| RouteCfg {
                prefix: IpCidr::V4(Ipv4Cidr::new(p, l).expect("a valid prefix")),
                via: vec![IpAddr::V4(GATEWAY)],
                kind: RouteKind::Forward,
            })
            .collect()
    }
}

fn profile(o: &Options, t: &Table, dst_mac: [u8; 6]) -> Profile {
    Profile {
        src_mac: G_A_MAC,
        dst_mac,
        src_ip: [10, 0, 0, 100],
        dst_ips: t.dsts.clone(),
        ..o.profile()
    }
}

/// Makes the gateway a static neighbour on `b`; returns port `a`'s MAC.
fn prepare(r: &Router) -> anyhow::Result<[u8; 6]> {
    let snap = r.dataplane().snapshot().load();
    let l3 = &snap.l3;
    let idx = |n: &str| {
        l3.ifaces
            .iter()
            .position(|i| i.name == n)
            .with_context(|| format!("router interface {n}"))
    };
    let (a, b) = (idx("a")?, idx("b")?);
    anyhow::ensure!(
        l3.neigh
            .set_static(&NeighKey::v4(b as u16, u32::from(GATEWAY)), &G_B_MAC),
        "the neighbour cache refused the gateway"
    );
    Ok(l3.ifaces[a].mac)
}

/// `config` parsed, with the table's routes appended to it (a million routes as TOML would take longer to
/// parse than to compile).
fn with_routes(config: &str, t: &Table) -> anyhow::Result<Config> {
    let mut cfg: Config = control::config::parse(config, "<scenario>")?;
    cfg.routes = t.routes();
    Ok(cfg)
}

/// `route-ring`.
pub fn ring(o: &Options) -> anyhow::Result<Vec<Measured>> {
    anyhow::ensure!(
        o.vlan.is_none(),
        "--vlan: this scenario's network takes untagged frames"
    );
    let t = Table::new(o.routes);
    let config = with_routes(
        &format!(
            r#"
[dataplane]
buffers = 16384
cores = [{core}]
idle = "poll"

[[ports]]
name = "a"
backend = "ring"
peer = "gen_a"
depth = 4096
addresses = ["10.0.0.1/24"]

[[ports]]
name = "b"
backend = "ring"
peer = "gen_b"
depth = 4096
addresses = ["10.1.0.1/24"]
"#,
            core = o.core
        ),
        &t,
    )?;
    let mut rows = ring_scenario(
        "route-ring",
        o,
        config,
        |r| Ok(profile(o, &t, prepare(r)?)),
        |_| Vec::new(),
        None,
    )?;
    for m in &mut rows {
        m.notes = format!("{} routes; {}", t.prefixes.len(), m.notes);
    }
    Ok(rows)
}

/// `route-veth`.
pub fn veth(o: &Options) -> anyhow::Result<Vec<Measured>> {
    anyhow::ensure!(
        o.vlan.is_none(),
        "--vlan: this scenario's network takes untagged frames"
    );
    let t = Table::new(o.routes);
    let topo = VethTopo::build(&prefix('r'), o.core, o.gen_core(), !o.no_rps)?;
    let config = with_routes(
        &super::xconnect::veth_ports(&topo, o, "addresses = [\"{net}\"]", ""),
        &t,
    )?;
    let table = &t;
    let kernel = KernelTwin {
        name: "kernel-ip-forward",
        setup: Box::new(move |tp: &VethTopo| {
            let ns = tp.dut.name();
            for k in ["all", "default", tp.d_a(), tp.d_b()] {
                sysctl(&tp.dut, &format!("net/ipv4/conf/{k}/rp_filter"), "0")?;
            }
            let mut batch = format!(
                "addr add 10.0.0.1/24 dev {a}\naddr add 10.1.0.1/24 dev {b}\nneigh replace {GATEWAY} lladdr {mac} dev {b} nud permanent\n",
                a = tp.d_a(),
                b = tp.d_b(),
                mac = dataplane::netns::format_mac(G_B_MAC)
            );
            for (p, l) in &table.prefixes {
                batch += &format!("route add {p}/{l} via {GATEWAY}\n");
            }
            let file = std::env::temp_dir().join(format!("{ns}.routes"));
            std::fs::write(&file, batch)?;
            let t0 = std::time::Instant::now();
            let r = dataplane::netns::ip(&["-n", ns, "-batch", &file.to_string_lossy()]);
            let _ = std::fs::remove_file(&file);
            r?;
            println!(
                "kernel: {} routes installed in {:.2} s",
                table.prefixes.len(),
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }),
        on: Box::new(|tp| sysctl(&tp.dut, "net/ipv4/ip_forward", "1")),
        off: Box::new(|tp| sysctl(&tp.dut, "net/ipv4/ip_forward", "0")),
    };
    let mut rows = veth_scenario(
        "route-veth",
        o,
        &topo,
        config,
        Box::new(|r| prepare(r).map(drop)),
        Some(kernel),
        (profile(o, &t, D_A_MAC), Vec::new(), None),
    )?;
    for m in &mut rows {
        m.notes = format!("{} routes; {}", t.prefixes.len(), m.notes);
    }
    Ok(rows)
}
