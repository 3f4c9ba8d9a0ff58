//! Routing benchmark over ring ports. The router has two routed ring ports: `a` (10.0.0.1/24 and
//! 2001:db8:0:a::1/64) and `b` (10.1.0.1/24 and 2001:db8:0:b::1/64), and a static table of `--routes` BGP-like
//! random prefixes of one family (`fib::bgp_like_prefixes` / `bgp_like_prefixes_v6`, seeded), route `i` via
//! gateway `i mod --gateways` on `b`'s subnet (10.1.0.2, .3, ... / 2001:db8:0:b::2, ...). Every gateway is a
//! static entry of the neighbour cache, so forwarding is steady state: no ARP, no ND, no parked packets.
//!
//! Flow `i` is a UDP packet from a host on `a`'s subnet to a random address inside route `i mod routes`: the
//! destinations are spread uniformly over the routes (with `--flows` at least `--routes`, every route is hit),
//! so the FIB's working set is the whole table, not a hot corner of it. The gateway each destination must
//! leave by is computed beforehand by a plain reference longest-prefix match (a hash map per length), and
//! every packet that leaves (`route-inline`), or a sample of them (`route-ring`), is checked: it left by port
//! `b`, from `b`'s MAC to its gateway's MAC, with TTL / hop limit 63 (sent with 64), the IPv4 header checksum
//! still valid and the destination unchanged. The worker's counters must also show every received packet
//! `routed` and no drop. A broken pipeline fails the run instead of posting a figure.
//!
//! - `route-inline`: pipeline-only. The inline worker of [`crate::inline`] on this thread; `--inflight` packets
//!   are put in `a`'s receive ring, the worker is timed while it receives, routes and transmits all of them
//!   (`Inline::poll_until`, the only code callgrind counts in `perf/callgrind.sh`), then, untimed, the
//!   frames are taken from `b`'s far end, checked, rewritten for the next flows and put back in `a`'s ring.
//! - `route-ring`: the router started as shipped (`Router::start`, worker pinned to `--core`), fed by a
//!   generator on the other core that cycles over the flows and drains `b`'s far end. There is no closed loop
//!   for routing: a routed packet that came back would lose one TTL per lap.
//!
//! The table goes through `control` as a config would: the ports and `[router]` are parsed from TOML, the
//! routes are appended to the parsed `Config` as `RouteCfg`s (with `--toml`, written as `[[routes]]` and
//! parsed too), and `control::compile::compile` builds the FIBs; its time is printed (with `--bare-fib`, also
//! that of a bare `Lpm4::build`/`Lpm6::build` of the same routes).

use crate::inline::Inline;
use crate::Measure;
use anyhow::{bail, Context};
use control::config::{Config, IpCidr, Ipv4Cidr, Ipv6Cidr, RouteCfg, RouteKind};
use control::router::Router;
use dataplane::traffic::inet_checksum;
use dataplane::{Burst, DropReason, Event, Port};
use pipelines::fib::{bgp_like_prefixes, bgp_like_prefixes_v6, Lpm4, Lpm6, SplitMix64};
use pipelines::l3::neigh::NeighKey;
use pipelines::l3::L3Tables;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The route table and the traffic.
#[derive(clap::Args, Clone, Debug)]
pub struct TableArgs {
    /// Routes in the table (BGP-like random prefixes), besides the connected and local ones.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Address family of the routes and the traffic: 4 or 6.
    #[arg(long, default_value_t = 4)]
    family: u8,
    /// Distinct destinations cycled over; flow i goes to a random address in route i mod routes (0: as many
    /// as routes, at least 1024).
    #[arg(long, default_value_t = 0)]
    flows: usize,
    /// Draw the flows' destinations from the table a `--routes N` run builds (0: from this run's routes). With N
    /// above --routes a default route via the first gateway is added, so that a small table can be timed with
    /// a big table's traffic: then only the table's size differs between the two runs.
    #[arg(long, default_value_t = 0)]
    traffic_routes: usize,
    /// Gateways on port b's subnet the routes are spread over, round robin (at most 250).
    #[arg(long, default_value_t = 8)]
    gateways: usize,
    /// Seed of the prefixes and of the destinations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `[router] fib_tbl8_groups` for IPv4, `fib6_groups` for IPv6 (0: the config's default for IPv4; three per
    /// route, at least 2^16, for IPv6, whose /48s need up to three groups each).
    #[arg(long, default_value_t = 0)]
    tbl8_groups: u32,
    /// Also time a bare `Lpm4::build`/`Lpm6::build` of the same routes (no config, no adjacencies).
    #[arg(long)]
    bare_fib: bool,
    /// Write the routes as `[[routes]]` TOML and parse them with the rest of the config (timed), instead of
    /// appending them to the parsed config.
    #[arg(long)]
    toml: bool,
}

/// `route-inline` options.
#[derive(clap::Args)]
pub struct InlineArgs {
    #[command(flatten)]
    t: TableArgs,
    /// Packets per run (rounded up to a multiple of --inflight).
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Timed runs (the median is printed); more than one adds an untimed warm-up run first.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Frames put in the receive ring at a time (at most the ring depth, 4096).
    #[arg(long, default_value_t = 1024)]
    inflight: usize,
    /// Burst size.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Frame size in bytes without FCS (at least 60 for IPv4, 70 for IPv6).
    #[arg(long, default_value_t = 60)]
    frame: usize,
}

/// `route-ring` options.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    t: TableArgs,
    #[command(flatten)]
    m: Measure,
    /// Burst size.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Core of the worker (the generator takes the other one of cores 0 and 1).
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// Check every Nth frame the generator receives (1: every frame).
    #[arg(long, default_value_t = 8)]
    check_every: u64,
}

/// Ring depth of the two ports.
const DEPTH: usize = 4096;
/// Where flows come from: a host on `a`'s subnet.
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const HOST_V4: [u8; 4] = [10, 0, 0, 100];
const HOST_V6: u128 = 0x2001_0db8_0000_000a_0000_0000_0000_0100;
/// The networks of the ports (excluded from the random table so that no route shadows them).
const NET_V4: (u32, u8) = (0x0a00_0000, 15);
const NET_V6: (u128, u8) = (0x2001_0db8 << 96, 32);
/// Offset of the flow number (8 bytes) in the UDP payload.
const FLOW_OFF_V4: usize = 42;
const FLOW_OFF_V6: usize = 62;
/// The reference LPM's answer for connected and local prefixes.
const CONNECTED: u32 = u32::MAX;

/// The netmask of a length over 128 bits (IPv4 addresses are kept in the top 32 bits).
fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128))
    }
}

/// An IPv4 address in the top 32 bits of 128.
fn wide4(a: u32) -> u128 {
    (a as u128) << 96
}

fn gateway_ip(family: u8, g: usize) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2 + g as u8))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            0x2001_0db8_0000_000b_0000_0000_0000_0002u128 + g as u128,
        ))
    }
}

fn gateway_mac(g: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0xff, g as u8]
}

/// Longest-prefix match the slow and obvious way: one hash map per length, longest first.
struct RefLpm {
    by_len: Vec<(u8, HashMap<u128, u32>)>,
}

impl RefLpm {
    fn new(entries: impl IntoIterator<Item = (u128, u8, u32)>) -> RefLpm {
        let mut m: HashMap<u8, HashMap<u128, u32>> = HashMap::new();
        for (p, len, v) in entries {
            m.entry(len).or_default().insert(p & mask(len), v);
        }
        let mut by_len: Vec<_> = m.into_iter().collect();
        by_len.sort_by_key(|b| std::cmp::Reverse(b.0));
        RefLpm { by_len }
    }

    fn lookup(&self, a: u128) -> Option<u32> {
        self.by_len
            .iter()
            .find_map(|(len, m)| m.get(&(a & mask(*len))).copied())
    }
}

/// One flow: its destination (IPv4 in the top 32 bits) and the gateway it must leave by.
#[derive(Clone, Copy)]
struct Flow {
    dst: u128,
    gw: u16,
}

/// The traffic and what the router must make of it.
struct Traffic {
    family: u8,
    flows: Vec<Flow>,
    /// A frame to `a`'s MAC with the destination and flow number still to write.
    template: Vec<u8>,
    /// `b`'s MAC (the source of everything routed out of `b`).
    b_mac: [u8; 6],
}

impl Traffic {
    fn flow_off(&self) -> usize {
        if self.family == 4 {
            FLOW_OFF_V4
        } else {
            FLOW_OFF_V6
        }
    }

    /// Writes flow `i` into `f` (a copy of the template).
    #[inline]
    fn write(&self, f: &mut [u8], i: usize) {
        let fl = self.flows[i];
        let off = self.flow_off();
        f[off..off + 8].copy_from_slice(&(i as u64).to_be_bytes());
        if self.family == 4 {
            f[30..34].copy_from_slice(&((fl.dst >> 96) as u32).to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = inet_checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        } else {
            f[38..54].copy_from_slice(&fl.dst.to_be_bytes());
        }
    }

    /// Checks a frame that left by `b`: the flow's gateway MAC, `b`'s MAC, TTL 63, header intact.
    fn check(&self, f: &[u8]) -> Result<(), &'static str> {
        if f.len() != self.template.len() {
            return Err("length changed");
        }
        let off = self.flow_off();
        let i = u64::from_be_bytes(f[off..off + 8].try_into().unwrap_or_default()) as usize;
        let Some(fl) = self.flows.get(i) else {
            return Err("payload (flow number) changed");
        };
        if f[0..6] != gateway_mac(fl.gw as usize) {
            return Err("wrong destination MAC (not the route's gateway)");
        }
        if f[6..12] != self.b_mac {
            return Err("wrong source MAC (not port b's)");
        }
        if f[12..14] != self.template[12..14] {
            return Err("EtherType changed");
        }
        if self.family == 4 {
            if f[22] != 63 {
                return Err("TTL is not 64 - 1");
            }
            if inet_checksum(&f[14..34]) != 0 {
                return Err("bad IPv4 header checksum");
            }
            if u32::from_be_bytes([f[30], f[31], f[32], f[33]]) != (fl.dst >> 96) as u32 {
                return Err("destination address changed");
            }
        } else {
            if f[21] != 63 {
                return Err("hop limit is not 64 - 1");
            }
            if f[38..54] != fl.dst.to_be_bytes() {
                return Err("destination address changed");
            }
        }
        Ok(())
    }
}

/// Counts of checked frames.
#[derive(Default)]
struct Checked {
    ok: u64,
    bad: u64,
    first_bad: Option<&'static str>,
}

impl Checked {
    fn add(&mut self, r: Result<(), &'static str>) {
        match r {
            Ok(()) => self.ok += 1,
            Err(e) => {
                self.bad += 1;
                self.first_bad.get_or_insert(e);
            }
        }
    }

    fn verdict(&self) -> anyhow::Result<()> {
        if self.bad > 0 || self.ok == 0 {
            bail!(
                "routing is broken: {} of {} frames checked were wrong (first: {})",
                self.bad,
                self.ok + self.bad,
                self.first_bad.unwrap_or("no frame came out")
            );
        }
        Ok(())
    }
}

/// The config (ports, `[router]`, routes), the traffic, and what building them cost.
struct Setup {
    cfg: Config,
    /// Flows and checks; `template` and `b_mac` are filled in once the snapshot is known.
    traffic: Traffic,
    routes: usize,
    /// The routes as the FIB sees them, to time a bare FIB build.
    fib_routes: Vec<(u128, u8, u32)>,
    parse_time: Option<Duration>,
}

/// `groups_key`: the `[router]` key of the table's groups (`fib_tbl8_groups` or `fib6_groups`).
fn config_text(workers: &str, burst: usize, groups_key: &str, groups: u32) -> String {
    format!(
        r#"
[dataplane]
buffers = 16384
burst_size = {burst}
{workers}
idle = "poll"

[router]
{groups_key} = {groups}

[[ports]]
name = "a"
backend = "ring"
peer = "gen_a"
depth = {DEPTH}
addresses = ["10.0.0.1/24", "2001:db8:0:a::1/64"]

[[ports]]
name = "b"
backend = "ring"
peer = "gen_b"
depth = {DEPTH}
addresses = ["10.1.0.1/24", "2001:db8:0:b::1/64"]
"#
    )
}

/// The routes of a `--routes routes` table: BGP-like prefixes that avoid the ports' networks and 127/8; for one
/// route, the first of the most common length.
fn table_prefixes(family: u8, routes: usize, seed: u64) -> anyhow::Result<Vec<(u128, u8)>> {
    // A few more than asked, so that dropping those that overlap the ports' networks (or 127/8) still
    // leaves exactly `routes`.
    let extra = routes / 50 + 16;
    let prefixes: Vec<(u128, u8)> = if family == 4 {
        bgp_like_prefixes(routes + extra, seed)
            .into_iter()
            .map(|(p, l)| (wide4(u32::from(p)), l))
            .filter(|&(p, l)| {
                let n = wide4(NET_V4.0);
                let l2 = l.min(NET_V4.1);
                (p & mask(l2)) != (n & mask(l2)) && (p >> 120) != 127
            })
            .collect()
    } else {
        bgp_like_prefixes_v6(routes + extra, seed)
            .into_iter()
            .map(|(p, l)| (u128::from(p), l))
            .filter(|&(p, l)| {
                let l2 = l.min(NET_V6.1);
                (p & mask(l2)) != (NET_V6.0 & mask(l2))
            })
            .collect()
    };
    // One route: the first one of the table's most common length (/24, /48), so that the one-route baseline
    // looks up as deep as most lookups in a big table do, not as deep as whatever length came first.
    let modal = if family == 4 { 24 } else { 48 };
    let prefixes: Vec<(u128, u8)> = match prefixes.iter().find(|p| p.1 == modal) {
        Some(&p) if routes == 1 => vec![p],
        _ => prefixes.into_iter().take(routes).collect(),
    };
    if prefixes.len() < routes {
        bail!("the generator gave only {} prefixes", prefixes.len());
    }
    Ok(prefixes)
}

impl Setup {
    fn new(t: &TableArgs, workers: &str, burst: usize, frame: usize) -> anyhow::Result<Setup> {
        if t.family != 4 && t.family != 6 {
            bail!("--family is 4 or 6");
        }
        if t.routes == 0 {
            bail!("--routes must be at least 1");
        }
        if !(1..=250).contains(&t.gateways) {
            bail!("--gateways is 1 to 250");
        }
        let t0 = Instant::now();
        let prefixes = table_prefixes(t.family, t.routes, t.seed)?;
        // With a bigger table's traffic, a default route catches what the table's own routes do not.
        let default_route = t.traffic_routes > t.routes;
        let bigger = if default_route {
            table_prefixes(t.family, t.traffic_routes, t.seed)?
        } else {
            Vec::new()
        };
        let traffic_prefixes = if default_route { &bigger } else { &prefixes };
        let gw_of = |i: usize| (i % t.gateways) as u32;
        // The table's routes (prefix, length, gateway), the default route last: for the reference lookup, the
        // config and the bare FIB alike.
        let table: Vec<(u128, u8, u32)> = prefixes
            .iter()
            .enumerate()
            .map(|(i, &(p, l))| (p, l, gw_of(i)))
            .chain(default_route.then_some((0, 0, gw_of(0))))
            .collect();
        let connected: Vec<(u128, u8, u32)> = if t.family == 4 {
            vec![
                (wide4(0x0a00_0000), 24, CONNECTED),
                (wide4(0x0a01_0000), 24, CONNECTED),
                (wide4(0x0a00_0001), 32, CONNECTED),
                (wide4(0x0a01_0001), 32, CONNECTED),
            ]
        } else {
            vec![
                (0x2001_0db8_0000_000a << 64, 64, CONNECTED),
                (0x2001_0db8_0000_000b << 64, 64, CONNECTED),
            ]
        };
        let reference = RefLpm::new(table.iter().chain(&connected).copied());
        let nflows = if t.flows > 0 {
            t.flows
        } else {
            traffic_prefixes.len().max(1024)
        };
        let mut rng = SplitMix64::new(t.seed ^ 0x5eed_f10f);
        let mut flows = Vec::with_capacity(nflows);
        for i in 0..nflows {
            let (p, l) = traffic_prefixes[i % traffic_prefixes.len()];
            let host_bits = if t.family == 4 {
                !mask(l) & mask(32)
            } else {
                !mask(l)
            };
            let r = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
            let dst = p | (r & host_bits);
            match reference.lookup(dst) {
                Some(g) if g != CONNECTED => flows.push(Flow { dst, gw: g as u16 }),
                other => bail!("destination {dst:#x} of route {i} resolves to {other:?}"),
            }
        }
        let route_cfgs: Vec<RouteCfg> = table
            .iter()
            .map(|&(p, l, gw)| RouteCfg {
                prefix: if t.family == 4 {
                    IpCidr::V4(Ipv4Cidr::new(Ipv4Addr::from((p >> 96) as u32), l).expect("length"))
                } else {
                    IpCidr::V6(Ipv6Cidr::new(Ipv6Addr::from(p), l).expect("length"))
                },
                via: vec![gateway_ip(t.family, gw as usize)],
                kind: RouteKind::Forward,
            })
            .collect();
        // IPv6 /48s need up to three groups each (levels 1-3). Beyond what the config accepts (a `--tbl8-groups`
        // given by hand) the value is set on the parsed config, and said so.
        let groups = match (t.tbl8_groups, t.family) {
            (0, 4) => control::config::DEFAULT_TBL8_GROUPS,
            (0, _) => (t.routes as u32)
                .saturating_mul(3)
                .clamp(1 << 16, pipelines::fib::MAX_GROUPS),
            (g, _) => g,
        };
        let (groups_key, max_cfg) = if t.family == 4 {
            ("fib_tbl8_groups", *control::config::TBL8_GROUPS_RANGE.end())
        } else {
            ("fib6_groups", *control::config::FIB6_GROUPS_RANGE.end())
        };
        let lengths = if prefixes.len() <= 4 {
            let shown: Vec<String> = prefixes
                .iter()
                .map(|&(p, l)| match t.family {
                    4 => format!("{}/{l}", Ipv4Addr::from((p >> 96) as u32)),
                    _ => format!("{}/{l}", Ipv6Addr::from(p)),
                })
                .collect();
            format!(" ({})", shown.join(", "))
        } else {
            let at = |lo: u8, hi: u8| {
                prefixes.iter().filter(|p| (lo..=hi).contains(&p.1)).count() as f64 * 100.0
                    / prefixes.len() as f64
            };
            if t.family == 4 {
                format!(
                    " (/8-/15 {:.0}%, /16-/23 {:.0}%, /24 {:.0}%, longer {:.0}%)",
                    at(8, 15),
                    at(16, 23),
                    at(24, 24),
                    at(25, 32)
                )
            } else {
                format!(
                    " (/29-/32 {:.0}%, /33-/47 {:.0}%, /48 {:.0}%, /49-/64 {:.0}%, /128 {:.0}%)",
                    at(29, 32),
                    at(33, 47),
                    at(48, 48),
                    at(49, 64),
                    at(128, 128)
                )
            }
        };
        println!(
            "table: {} IPv{} routes{lengths}{} over {} gateways, {} flows{} (generated in {:.2} s)",
            prefixes.len(),
            t.family,
            if default_route {
                " and a default route"
            } else {
                ""
            },
            t.gateways,
            flows.len(),
            if default_route {
                format!(" to the routes of a {}-route table", t.traffic_routes)
            } else {
                String::new()
            },
            t0.elapsed().as_secs_f64()
        );
        let base = config_text(workers, burst, groups_key, groups.min(max_cfg));
        let (cfg, parse_time) = if t.toml {
            let mut text = base;
            for r in &route_cfgs {
                use std::fmt::Write;
                let _ = write!(
                    text,
                    "\n[[routes]]\nprefix = \"{}\"\nvia = [\"{}\"]\n",
                    r.prefix, r.via[0]
                );
            }
            let t1 = Instant::now();
            let cfg = control::config::parse(&text, "<route-bench>")?;
            (cfg, Some(t1.elapsed()))
        } else {
            let mut cfg = control::config::parse(&base, "<route-bench>")?;
            cfg.routes = route_cfgs;
            (cfg, None)
        };
        let mut cfg = cfg;
        if groups > max_cfg {
            println!(
                "note: {groups_key} = {groups} is beyond what a config accepts ({max_cfg}); set on the parsed config"
            );
            if t.family == 4 {
                cfg.router.fib_tbl8_groups = groups;
            } else {
                cfg.router.fib6_groups = groups;
            }
        }
        let fib_routes = table.into_iter().chain(connected).collect();
        let len = if t.family == 4 {
            frame.max(FLOW_OFF_V4 + 18)
        } else {
            frame.max(FLOW_OFF_V6 + 8)
        };
        Ok(Setup {
            cfg,
            traffic: Traffic {
                family: t.family,
                flows,
                template: vec![0; len],
                b_mac: [0; 6],
            },
            routes: prefixes.len(),
            fib_routes,
            parse_time,
        })
    }

    /// Fills in the MACs from the compiled tables, makes the gateways static neighbours, and builds the
    /// template frame. Returns the table sizes for the report.
    fn attach(&mut self, l3: &L3Tables) -> anyhow::Result<String> {
        let idx = |name: &str| {
            l3.ifaces
                .iter()
                .position(|i| i.name == name)
                .with_context(|| format!("router interface {name}"))
        };
        let (ia, ib) = (idx("a")?, idx("b")?);
        let a_mac = l3.ifaces[ia].mac;
        self.traffic.b_mac = l3.ifaces[ib].mac;
        let gateways = self.traffic.flows.iter().map(|f| f.gw).max().unwrap_or(0) as usize + 1;
        for g in 0..gateways {
            let key = match gateway_ip(self.traffic.family, g) {
                IpAddr::V4(a) => NeighKey::v4(ib as u16, u32::from(a)),
                IpAddr::V6(a) => NeighKey::v6(ib as u16, a.octets()),
            };
            if !l3.neigh.set_static(&key, &gateway_mac(g)) {
                bail!("neighbour cache refused gateway {g}");
            }
        }
        let f = &mut self.traffic.template;
        let len = f.len();
        f[0..6].copy_from_slice(&a_mac);
        f[6..12].copy_from_slice(&HOST_MAC);
        if self.traffic.family == 4 {
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&HOST_V4);
            let udp = &mut f[34..42];
            udp[0..2].copy_from_slice(&1024u16.to_be_bytes());
            udp[2..4].copy_from_slice(&9u16.to_be_bytes());
            udp[4..6].copy_from_slice(&((len - 34) as u16).to_be_bytes());
        } else {
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let ip = &mut f[14..54];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((len - 54) as u16).to_be_bytes());
            ip[6] = 17;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&HOST_V6.to_be_bytes());
            // The UDP checksum (mandatory over IPv6) is left zero: routers do not read it.
            let udp = &mut f[54..62];
            udp[0..2].copy_from_slice(&1024u16.to_be_bytes());
            udp[2..4].copy_from_slice(&9u16.to_be_bytes());
            udp[4..6].copy_from_slice(&((len - 54) as u16).to_be_bytes());
        }
        Ok(if self.traffic.family == 4 {
            format!(
                "FIB4 {} routes, {} tbl8 groups",
                l3.fib4.len(),
                l3.fib4.tbl8_groups_in_use()
            )
        } else {
            format!(
                "FIB6 {} routes, {} groups",
                l3.fib6.len(),
                l3.fib6.tbl8_groups_in_use()
            )
        })
    }

    /// Builds the same FIB bare (no config, no adjacencies) and returns how long it took.
    fn bare_fib_build(&self, groups: u32) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        if self.traffic.family == 4 {
            let routes = self
                .fib_routes
                .iter()
                .map(|&(p, l, nh)| (Ipv4Addr::from((p >> 96) as u32), l, nh & 0xff_ffff));
            let t = Lpm4::build(routes, groups)?;
            let d = t0.elapsed();
            drop(t);
            Ok(d)
        } else {
            let routes = self
                .fib_routes
                .iter()
                .map(|&(p, l, nh)| (Ipv6Addr::from(p), l, nh & 0xff_ffff));
            let t = Lpm6::build(routes, groups)?;
            let d = t0.elapsed();
            drop(t);
            Ok(d)
        }
    }

    fn report_build(&self, compile: Duration, tables: &str, bare_fib: bool) -> anyhow::Result<()> {
        if let Some(p) = self.parse_time {
            println!(
                "config: {} [[routes]] parsed and validated in {:.3} s",
                self.routes,
                p.as_secs_f64()
            );
        }
        println!(
            "build: compile (both FIBs, adjacencies) {:.3} s; {tables}",
            compile.as_secs_f64()
        );
        if bare_fib {
            let groups = if self.traffic.family == 4 {
                self.cfg.router.fib_tbl8_groups
            } else {
                self.cfg.router.fib6_groups
            };
            let bare = self.bare_fib_build(groups)?;
            println!(
                "build: bare Lpm{}::build of the same routes {:.3} s",
                self.traffic.family,
                bare.as_secs_f64()
            );
        }
        Ok(())
    }
}

/// Checks the worker's counters: everything received was routed, nothing dropped; with `sink_may_lag`, frames
/// dropped because the output ring was full (the generator's sink fell behind) are allowed and returned.
fn check_counters(c: &dataplane::WorkerCounters, sink_may_lag: bool) -> anyhow::Result<u64> {
    let (rx, routed) = (c.rx_packets.get(), c.events.get(Event::Routed));
    let tx_full = if sink_may_lag {
        c.drops.get(DropReason::TxFull)
    } else {
        0
    };
    if routed != rx || c.drops.total() != tx_full {
        bail!(
            "routing is broken: {rx} packets received, {routed} routed, drops {:?}",
            c.drops.nonzero()
        );
    }
    Ok(tx_full)
}

/// `route-inline`: see the module docs.
pub fn inline(a: &InlineArgs) -> anyhow::Result<()> {
    if a.inflight == 0 || a.inflight > DEPTH {
        bail!("--inflight is 1 to {DEPTH}");
    }
    let mut s = Setup::new(&a.t, "workers = 1", a.burst, a.frame)?;
    let mut inl = Inline::from_config(&s.cfg, a.burst, (a.inflight + 1024) as u32)?;
    let tables = s.attach(&inl.snapshot().l3)?;
    s.report_build(inl.compile_time, &tables, a.t.bare_fib)?;
    let tr = &s.traffic;
    let nflows = tr.flows.len();
    let port_a = inl.ring_port("a").context("ring port a")?;
    let gen_b = inl.ring_peer("gen_b").context("far end of b")?;
    let mut sink = gen_b.open_queue(0)?;
    let mut next = 0usize;
    let mut frame = tr.template.clone();
    inl.seed(
        "a",
        (0..a.inflight).map(|_| {
            tr.write(&mut frame, next);
            next = (next + 1) % nflows;
            frame.clone()
        }),
    )?;
    let mut checked = Checked::default();
    let mut out = Burst::new(256);
    let phases = a.packets.div_ceil(a.inflight as u64);
    let per_run = phases * a.inflight as u64;
    let mut mpps = Vec::new();
    for run in 0..=a.runs {
        if run == 0 && a.runs <= 1 {
            continue; // no warm-up for a single (callgrind) run
        }
        let mut timed = Duration::ZERO;
        for _ in 0..phases {
            let target = inl.counters().rx_packets.get() + a.inflight as u64;
            let t0 = Instant::now();
            inl.poll_until(target);
            timed += t0.elapsed();
            // Untimed: what left by b is checked, turned into the next flows, and put back in a's ring.
            let mut back = 0;
            while sink.rx_burst(&mut out) > 0 {
                for mut p in out.drain() {
                    checked.add(tr.check(p.data()));
                    p.set_frame(&tr.template);
                    tr.write(p.data_mut(), next);
                    next = (next + 1) % nflows;
                    back += 1;
                    port_a
                        .inject(0, p)
                        .map_err(|_| anyhow::anyhow!("ring a full"))?;
                }
            }
            if back != a.inflight {
                bail!(
                    "routing is broken: {} frames in, {back} out of b",
                    a.inflight
                );
            }
        }
        if run > 0 {
            let r = per_run as f64 / timed.as_secs_f64() / 1e6;
            println!(
                "route-inline run {run}: {r:.2} Mpps ({:.1} ns/packet)",
                1e3 / r
            );
            mpps.push(r);
        }
    }
    check_counters(inl.counters(), false)?;
    checked.verdict()?;
    let m = crate::median(&mut mpps);
    println!(
        "route-inline IPv{}: {} routes, {nflows} flows: median {m:.2} Mpps per core ({:.1} ns/packet) over {} runs of {per_run} packets, {}-byte frames, burst {}, {} in flight; {} frames checked: every one out of b to its route's gateway with TTL 63",
        tr.family,
        s.routes,
        1e3 / m,
        a.runs,
        tr.template.len(),
        a.burst,
        a.inflight,
        checked.ok
    );
    Ok(())
}

/// `route-ring`: see the module docs.
pub fn run(a: &Args) -> anyhow::Result<()> {
    let workers = format!("cores = [{}]", a.core);
    let mut s = Setup::new(&a.t, &workers, a.burst, a.m.frame)?;
    let t0 = Instant::now();
    let router = Router::start(s.cfg.clone(), None)?;
    let start_time = t0.elapsed();
    let r = measure_ring(a, &router, &mut s, start_time);
    router.stop();
    r
}

fn measure_ring(
    a: &Args,
    router: &Router,
    s: &mut Setup,
    start_time: Duration,
) -> anyhow::Result<()> {
    let tables = s.attach(&router.dataplane().snapshot().load().l3)?;
    s.report_build(start_time, &tables, a.t.bare_fib)?;
    println!("(the compile time above is Router::start's: ports, pool, compile, workers)");
    let traffic = Arc::new(std::mem::replace(
        &mut s.traffic,
        Traffic {
            family: 4,
            flows: Vec::new(),
            template: Vec::new(),
            b_mac: [0; 6],
        },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let gen = {
        let ga = router.ring_peer("gen_a").context("gen_a")?;
        let gb = router.ring_peer("gen_b").context("gen_b")?;
        let (pool, stop, tr) = (router.pool().clone(), stop.clone(), traffic.clone());
        let (core, every) = (1 - a.core.min(1), a.check_every.max(1));
        std::thread::spawn(move || generate(&ga, &gb, &pool, &stop, &tr, core, every))
    };
    let w = router.dataplane().workers()[0].counters.clone();
    std::thread::sleep(Duration::from_millis(500));
    let mut mpps = Vec::new();
    for run in 1..=a.m.runs {
        let (p0, t0) = (w.rx_packets.get(), Instant::now());
        std::thread::sleep(Duration::from_secs_f64(a.m.seconds));
        let r = (w.rx_packets.get() - p0) as f64 / t0.elapsed().as_secs_f64() / 1e6;
        println!(
            "route-ring run {run}: {r:.2} Mpps ({:.1} ns/packet)",
            1e3 / r
        );
        mpps.push(r);
    }
    stop.store(true, Ordering::Relaxed);
    let (full, checked, other) = gen
        .join()
        .map_err(|_| anyhow::anyhow!("generator panicked"))??;
    // Let the worker finish what is in its ring, then compare its counters.
    std::thread::sleep(Duration::from_millis(100));
    let tx_full = check_counters(&w, true)?;
    checked.verdict()?;
    let m = crate::median(&mut mpps);
    println!(
        "generator: input ring full on {:.0}% of sends (near 100%: the router is the bottleneck); {other} other frames (announcements); {tx_full} frames dropped because the sink lagged (tx_full)",
        full * 100.0
    );
    println!(
        "route-ring IPv{}: {} routes, {} flows: median {m:.2} Mpps per core ({:.1} ns/packet) over {} runs of {}s, {}-byte frames, burst {}, core {}, pinned {}; {} frames checked (1 in {}), every one right",
        traffic.family,
        s.routes,
        traffic.flows.len(),
        1e3 / m,
        a.m.runs,
        a.m.seconds,
        traffic.template.len(),
        a.burst,
        a.core,
        router.dataplane().workers()[0].pinned,
        checked.ok,
        a.check_every.max(1)
    );
    Ok(())
}

/// Generator and sink on `core`: frames cycling over every flow into `gen_a`, drained from `gen_b`, every
/// `every`th checked. Returns the fraction of sends that found the input ring full, the checks, and the
/// number of frames that were not routed traffic (the router's announcements).
fn generate(
    ga: &dataplane::port::ring::RingPort,
    gb: &dataplane::port::ring::RingPort,
    pool: &dataplane::Pool,
    stop: &AtomicBool,
    tr: &Traffic,
    core: usize,
    every: u64,
) -> anyhow::Result<(f64, Checked, u64)> {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
    let mut tx = ga.open_queue(0)?;
    let mut rx = gb.open_queue(0)?;
    let mut burst = Burst::new(32);
    let mut sink = Burst::new(256);
    let (mut i, mut sends, mut full, mut seen, mut other) = (0usize, 0u64, 0u64, 0u64, 0u64);
    let mut checked = Checked::default();
    let n = tr.flows.len();
    while !stop.load(Ordering::Relaxed) {
        while !burst.is_full() {
            let Some(mut p) = pool.alloc() else { break };
            p.set_frame(&tr.template);
            tr.write(p.data_mut(), i);
            i = if i + 1 == n { 0 } else { i + 1 };
            let _ = burst.push(p);
        }
        tx.tx_burst(&mut burst);
        sends += 1;
        full += !burst.is_empty() as u64;
        rx.rx_burst(&mut sink);
        for p in sink.iter() {
            let d = p.data();
            if d[0] & 1 == 1 {
                other += 1;
                continue;
            }
            seen += 1;
            if seen % every == 0 {
                checked.add(tr.check(d));
            }
        }
        sink.clear();
    }
    Ok((full as f64 / sends.max(1) as f64, checked, other))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(family: u8, routes: usize, traffic_routes: usize) -> TableArgs {
        TableArgs {
            routes,
            family,
            flows: 0,
            traffic_routes,
            gateways: 8,
            seed: 1,
            tbl8_groups: 0,
            bare_fib: false,
            toml: false,
        }
    }

    #[test]
    fn a_small_table_takes_a_big_tables_traffic_through_a_default_route() {
        for family in [4, 6] {
            let big = Setup::new(&table(family, 3000, 0), "", 32, 0).unwrap();
            let small = Setup::new(&table(family, 1, 3000), "", 32, 0).unwrap();
            // The same destinations, one route and a default in the table.
            let dsts = |s: &Setup| s.traffic.flows.iter().map(|f| f.dst).collect::<Vec<_>>();
            assert_eq!(dsts(&small), dsts(&big), "IPv{family}");
            assert_eq!(small.cfg.routes.len(), 2, "IPv{family}");
            assert!(
                small.cfg.routes.iter().any(|r| r.prefix.prefix() == 0),
                "IPv{family}: no default route"
            );
            // And the routing checks every frame against its gateway.
            inline(&InlineArgs {
                t: table(family, 1, 3000),
                packets: 8192,
                runs: 1,
                inflight: 1024,
                burst: 32,
                frame: if family == 4 { 60 } else { 70 },
            })
            .unwrap();
        }
    }
}
