//! Semantic checks over the file as written ([`RawConfig`]), collecting every problem, and the construction of
//! the typed [`Config`] when there are none.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

mod ipam;
mod ipvlan;
mod nat;
mod overlay;

pub(crate) use ipam::pool_spec;
mod routing;

use super::dpdk;
use super::error::did_you_mean;
use super::raw::{
    RawConfig, RawControl, RawDataplane, RawEndpoint, RawFdb, RawIpam, RawLink, RawNetwork,
    RawPort, RawRewrite, RawRoute, RawRouter, RawStaticMac, RawVxlan,
};
use super::*;

/// One semantic problem: the path of the field and what is wrong with it.
#[derive(Debug)]
pub(crate) struct Problem {
    pub field: String,
    pub reason: String,
}

/// Largest accepted AF_PACKET block size (1 GiB).
const MAX_BLOCK_SIZE: i64 = 1 << 30;
/// Accepted AF_PACKET block counts.
const BLOCK_COUNT_RANGE: RangeInclusive<i64> = 1..=65536;
/// Smallest AF_PACKET frame size (room for the TPACKET_V3 header and a minimal frame).
const MIN_FRAME_SIZE: i64 = 128;
/// AF_PACKET frame sizes are multiples of this (`TPACKET_ALIGNMENT`).
const FRAME_ALIGN: i64 = 16;

pub(super) const REQUIRED: &str = "required field is missing";

#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
}

impl Checker {
    pub(super) fn err(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// `value` (named `name` in messages) when it is inside `range`; otherwise records a problem.
    pub(super) fn range<T: TryFrom<i64>>(
        &mut self,
        field: &str,
        name: &str,
        value: i64,
        range: RangeInclusive<i64>,
    ) -> Option<T> {
        if range.contains(&value) {
            if let Ok(v) = T::try_from(value) {
                return Some(v);
            }
        }
        self.err(
            field,
            format!(
                "{name} must be in {}..={}, got {value}",
                range.start(),
                range.end()
            ),
        );
        None
    }

    /// Like [`Checker::range`] with a default for a value left out.
    pub(super) fn range_or<T: TryFrom<i64>>(
        &mut self,
        field: &str,
        name: &str,
        value: Option<i64>,
        range: RangeInclusive<i64>,
        default: T,
    ) -> Option<T> {
        match value {
            None => Some(default),
            Some(v) => self.range(field, name, v, range),
        }
    }
}

fn i64_range<T: Copy + Into<i64>>(r: &RangeInclusive<T>) -> RangeInclusive<i64> {
    (*r.start()).into()..=(*r.end()).into()
}

pub(super) fn usize_range(r: &RangeInclusive<usize>) -> RangeInclusive<i64> {
    let conv = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    conv(*r.start())..=conv(*r.end())
}

/// `, ` separated list of names, shortened when long.
fn list(names: &[&str]) -> String {
    const MAX: usize = 20;
    let mut s = names
        .iter()
        .take(MAX)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX {
        s.push_str(&format!(", ... ({} in all)", names.len()));
    }
    s
}

/// `no port named "c" (ports are: a, b)`, with a suggestion when it looks like a typo.
fn no_such(kind: &str, name: &str, names: &[&str]) -> String {
    if names.is_empty() {
        return format!("no {kind} named {name:?} (there are no {kind}s)");
    }
    match did_you_mean(name, names) {
        Some(best) => format!(
            "no {kind} named {name:?} (did you mean {best:?}? {kind}s are: {})",
            list(names)
        ),
        None => format!("no {kind} named {name:?} ({kind}s are: {})", list(names)),
    }
}

/// Why `name` is not a valid name for a `kind` of at most `max` characters, if it is not.
fn bad_name(kind: &str, name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        return Some(format!("{kind} name is empty"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Some(format!(
            "{kind} name {name:?} has invalid character {c:?} (use a-z, 0-9, _ and -)"
        ));
    }
    let n = name.chars().count();
    if n > max {
        return Some(format!(
            "{kind} name {name:?} is {n} characters long (at most {max})"
        ));
    }
    None
}

/// Why `name` is not a valid Linux interface name (`dev_valid_name`), if it is not.
fn bad_ifname(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("interface name is empty".into());
    }
    if name.len() > MAX_IFNAME {
        return Some(format!(
            "interface name {name:?} is {} bytes long (Linux allows at most {MAX_IFNAME})",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Some(format!(
            "interface name {name:?} contains {c:?} (Linux forbids '/', ':' and whitespace)"
        ));
    }
    None
}

fn page_size() -> i64 {
    // SAFETY: sysconf has no preconditions; it returns -1 when the value is unknown.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n
    } else {
        4096
    }
}

pub(super) fn resolve(path: &str, base: Option<&Path>) -> PathBuf {
    let p = Path::new(path);
    match base {
        Some(base) if p.is_relative() && !base.as_os_str().is_empty() => base.join(p),
        _ => p.to_path_buf(),
    }
}

/// Checks `raw`; relative pcap paths are resolved against `base`.
pub(crate) fn check(raw: &RawConfig, base: Option<&Path>) -> Result<Config, Vec<Problem>> {
    let mut ck = Checker::default();
    let dataplane = check_dataplane(
        &mut ck,
        raw.dataplane.as_ref().unwrap_or(&RawDataplane::default()),
    );
    let control = check_control(
        &mut ck,
        raw.control.as_ref().unwrap_or(&RawControl::default()),
    );
    let ports = check_ports(&mut ck, &raw.ports, base);
    let dpdk = dpdk::check(&mut ck, raw, base);
    let networks = check_networks(&mut ck, raw);
    let endpoints = check_endpoints(&mut ck, raw);
    let links = check_links(&mut ck, raw);
    let router = routing::check_router(
        &mut ck,
        raw.router.as_ref().unwrap_or(&RawRouter::default()),
    );
    let (port_addrs, net_addrs) = routing::check_addresses(&mut ck, raw);
    let connected: Vec<IpCidr> = port_addrs
        .iter()
        .chain(net_addrs.iter())
        .flatten()
        .flatten()
        .copied()
        .collect();
    let routes = routing::check_routes(&mut ck, raw, &connected);
    let nat = nat::check_nat(&mut ck, raw);
    if !ck.problems.is_empty() {
        return Err(ck.problems);
    }
    let built = (|| {
        let mut ports: Vec<PortCfg> = ports.into_iter().collect::<Option<_>>()?;
        for (p, a) in ports.iter_mut().zip(port_addrs) {
            p.addresses = a?;
        }
        let mut networks: Vec<NetworkCfg> = networks.into_iter().collect::<Option<_>>()?;
        for (n, a) in networks.iter_mut().zip(net_addrs) {
            n.addresses = a?;
        }
        Some(Config {
            dataplane: dataplane?,
            control: control?,
            dpdk: dpdk?,
            ports,
            networks,
            endpoints: endpoints.into_iter().collect::<Option<_>>()?,
            router: router?,
            routes: routes?,
            links: links?,
            nat: nat.as_ref()?.0.clone(),
            services: nat?.1,
        })
    })();
    built.ok_or_else(|| {
        vec![Problem {
            field: String::new(),
            reason: "internal error: a part of the configuration was not built although no problem was found"
                .into(),
        }]
    })
}

fn check_dataplane(ck: &mut Checker, d: &RawDataplane) -> Option<DataplaneCfg> {
    let buffers = ck.range_or(
        "dataplane.buffers",
        "buffers",
        d.buffers,
        usize_range(&(MIN_BUFFERS..=MAX_BUFFERS)),
        DEFAULT_BUFFERS,
    );
    let data_room = ck.range_or(
        "dataplane.data_room",
        "data_room",
        d.data_room,
        usize_range(&DATA_ROOM_RANGE),
        DEFAULT_DATA_ROOM,
    );
    let burst_size = ck.range_or(
        "dataplane.burst_size",
        "burst_size",
        d.burst_size,
        usize_range(&BURST_SIZE_RANGE),
        DEFAULT_BURST_SIZE,
    );
    let mut ok = true;
    let cores = match &d.cores {
        None => None,
        Some(list) => {
            if list.is_empty() {
                ck.err(
                    "dataplane.cores",
                    "cores is empty (list at least one core, or use workers = N for unpinned workers)",
                );
                ok = false;
            }
            if list.len() > MAX_WORKERS {
                ck.err(
                    "dataplane.cores",
                    format!(
                        "{} cores listed, at most {MAX_WORKERS} workers are supported",
                        list.len()
                    ),
                );
                ok = false;
            }
            let mut seen = HashSet::new();
            let mut cores = Vec::with_capacity(list.len());
            for (i, &c) in list.iter().enumerate() {
                let field = format!("dataplane.cores[{i}]");
                match ck.range::<usize>(&field, "a core id", c, usize_range(&(0..=MAX_CORE))) {
                    Some(c) if !seen.insert(c) => {
                        ck.err(&field, format!("core {c} is listed twice"));
                        ok = false;
                    }
                    Some(c) => cores.push(c),
                    None => ok = false,
                }
            }
            Some(cores)
        }
    };
    let workers = match d.workers {
        None => None,
        Some(n) => {
            let n = ck.range::<usize>(
                "dataplane.workers",
                "workers",
                n,
                usize_range(&(1..=MAX_WORKERS)),
            );
            ok &= n.is_some();
            n
        }
    };
    if d.cores.is_some() && d.workers.is_some() {
        ck.err(
            "dataplane.workers",
            "cores and workers are both set; use cores for pinned workers or workers for unpinned ones, not both",
        );
        ok = false;
    }
    let idle = match d.idle.as_deref() {
        None => Some(IdleMode::Adaptive),
        Some(s) => match IdleMode::ALL.into_iter().find(|m| m.as_str() == s) {
            Some(m) => Some(m),
            None => {
                ck.err(
                    "dataplane.idle",
                    format!("unknown idle mode {s:?} (expected one of: adaptive, poll)"),
                );
                None
            }
        },
    };
    let idle_sleep_us = ck.range_or(
        "dataplane.idle_sleep_us",
        "idle_sleep_us",
        d.idle_sleep_us,
        i64_range(&IDLE_SLEEP_US_RANGE),
        DEFAULT_IDLE_SLEEP_US,
    );
    let idle_after_polls = ck.range_or(
        "dataplane.idle_after_polls",
        "idle_after_polls",
        d.idle_after_polls,
        1..=i64::from(u32::MAX),
        DEFAULT_IDLE_AFTER_POLLS,
    );
    if !ok {
        return None;
    }
    Some(DataplaneCfg {
        buffers: buffers?,
        data_room: data_room?,
        burst_size: burst_size?,
        cores,
        workers,
        idle: idle?,
        idle_sleep_us: idle_sleep_us?,
        idle_after_polls: idle_after_polls?,
    })
}

fn check_control(ck: &mut Checker, c: &RawControl) -> Option<ControlCfg> {
    let socket = match c.socket.as_deref() {
        None => Some(ControlCfg::default().socket),
        Some("") => {
            ck.err("control.socket", "socket path is empty");
            None
        }
        Some(s) => Some(PathBuf::from(s)),
    };
    let state_dir = match c.state_dir.as_deref() {
        None => Some(None),
        Some("") => {
            ck.err("control.state_dir", "state directory path is empty");
            None
        }
        Some(s) => Some(Some(PathBuf::from(s))),
    };
    Some(ControlCfg {
        socket: socket?,
        state_dir: state_dir?,
    })
}

/// The options of each backend, as written in the file.
const RING_OPTIONS: [&str; 3] = ["peer", "depth", "peer_queues"];
const PCAP_OPTIONS: [&str; 3] = ["rx", "tx", "replay"];
const AFPACKET_OPTIONS: [&str; 5] = [
    "interface",
    "block_size",
    "block_count",
    "frame_size",
    "promiscuous",
];
const BACKEND_OPTIONS: [(&str, &[&str]); 4] = [
    ("ring", &RING_OPTIONS),
    ("pcap", &PCAP_OPTIONS),
    ("afpacket", &AFPACKET_OPTIONS),
    ("dpdk", &dpdk::PORT_OPTIONS),
];

fn options_set(p: &RawPort) -> Vec<&'static str> {
    let set = [
        ("interface", p.interface.is_some()),
        ("block_size", p.block_size.is_some()),
        ("block_count", p.block_count.is_some()),
        ("frame_size", p.frame_size.is_some()),
        ("promiscuous", p.promiscuous.is_some()),
        ("peer", p.peer.is_some()),
        ("depth", p.depth.is_some()),
        ("peer_queues", p.peer_queues.is_some()),
        ("rx", p.rx.is_some()),
        ("tx", p.tx.is_some()),
        ("replay", p.replay.is_some()),
        ("device", p.device.is_some()),
        ("rx_desc", p.rx_desc.is_some()),
        ("tx_desc", p.tx_desc.is_some()),
        ("mtu", p.mtu.is_some()),
        ("rss", p.rss.is_some()),
    ];
    set.into_iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| n)
        .collect()
}

/// `the ring backend`, or `the afpacket and dpdk backends` for an option of several.
fn owners_of(option: &str) -> String {
    let owners: Vec<&str> = BACKEND_OPTIONS
        .iter()
        .filter(|(_, opts)| opts.contains(&option))
        .map(|(b, _)| *b)
        .collect();
    match owners.as_slice() {
        [one] => format!("the {one} backend"),
        [rest @ .., last] => format!("the {} and {last} backends", rest.join(", ")),
        [] => "no backend".into(),
    }
}

fn check_ports(ck: &mut Checker, ports: &[RawPort], base: Option<&Path>) -> Vec<Option<PortCfg>> {
    let by_name: HashMap<&str, (usize, &RawPort)> = {
        let mut m = HashMap::new();
        for (i, p) in ports.iter().enumerate() {
            if let Some(n) = p.name.as_deref() {
                m.entry(n).or_insert((i, p));
            }
        }
        m
    };
    let mut interfaces: HashMap<String, usize> = HashMap::new();
    let mut tx_files: HashMap<PathBuf, usize> = HashMap::new();
    let mut out = Vec::with_capacity(ports.len());
    for (i, p) in ports.iter().enumerate() {
        let at = |f: &str| format!("ports[{i}].{f}");
        let mut ok = true;
        let name = match p.name.as_deref() {
            None => {
                ck.err(at("name"), REQUIRED);
                ok = false;
                ""
            }
            Some(n) => {
                if let Some(why) = bad_name("port", n, MAX_PORT_NAME) {
                    ck.err(at("name"), why);
                    ok = false;
                }
                if let Some(&(first, _)) = by_name.get(n).filter(|(first, _)| *first != i) {
                    ck.err(
                        at("name"),
                        format!("duplicate port name {n:?} (first used by ports[{first}])"),
                    );
                    ok = false;
                }
                n
            }
        };
        let kind = match p.backend.as_deref() {
            None => {
                ck.err(
                    at("backend"),
                    format!("{REQUIRED} (one of: {})", BackendCfg::NAMES.join(", ")),
                );
                None
            }
            Some(b) if BackendCfg::NAMES.contains(&b) => Some(b),
            Some(b) => {
                ck.err(
                    at("backend"),
                    format!(
                        "unknown backend {b:?} (expected one of: {})",
                        BackendCfg::NAMES.join(", ")
                    ),
                );
                None
            }
        };
        let Some(kind) = kind else {
            out.push(None);
            continue;
        };
        let allowed: &[&str] = BACKEND_OPTIONS
            .iter()
            .find(|(b, _)| *b == kind)
            .map_or(&[], |(_, opts)| opts);
        for opt in options_set(p) {
            if !allowed.contains(&opt) {
                ck.err(
                    at(opt),
                    format!(
                        "{opt} is an option of {}, not of {kind} (options of {kind}: {})",
                        owners_of(opt),
                        allowed.join(", ")
                    ),
                );
                ok = false;
            }
        }
        let backend = match kind {
            "ring" => check_ring(ck, i, name, p, &by_name),
            "pcap" => check_pcap(ck, i, p, base, &mut tx_files),
            "dpdk" => dpdk::check_port(ck, i, p, base, &mut tx_files),
            _ => check_afpacket(ck, i, p, &mut interfaces),
        };
        out.push(match (ok, backend) {
            (true, Some(backend)) => Some(PortCfg {
                name: name.to_string(),
                backend,
                addresses: Vec::new(),
            }),
            _ => None,
        });
    }
    out
}

/// The distinct names, in order of first appearance.
fn unique_names<'a>(names: impl Iterator<Item = Option<&'a str>>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    names.flatten().filter(|n| seen.insert(*n)).collect()
}

fn check_ring(
    ck: &mut Checker,
    i: usize,
    name: &str,
    p: &RawPort,
    by_name: &HashMap<&str, (usize, &RawPort)>,
) -> Option<BackendCfg> {
    let field = format!("ports[{i}].peer");
    let peer = match p.peer.as_deref() {
        None => {
            ck.err(
                &field,
                format!("{REQUIRED} (a ring port needs the name of its peer ring port)"),
            );
            None
        }
        Some(peer) if peer == name => {
            ck.err(&field, format!("ring port {name:?} cannot be its own peer"));
            None
        }
        Some(peer) => match by_name.get(peer) {
            // Not a port of this config: the far end is external, handed to the program that embeds the
            // router (a traffic generator, a test). Each external end belongs to one port.
            None => {
                let twin = by_name.values().filter(|(j, q)| {
                    *j < i
                        && q.backend.as_deref() == Some("ring")
                        && q.peer.as_deref() == Some(peer)
                });
                match twin.map(|(j, _)| *j).min() {
                    Some(j) => {
                        ck.err(
                            &field,
                            format!("external ring end {peer:?} is already the peer of ports[{j}]; each end belongs to one port"),
                        );
                        None
                    }
                    None => match bad_name("external ring end", peer, MAX_PORT_NAME) {
                        Some(why) => {
                            ck.err(&field, why);
                            None
                        }
                        None => Some(peer.to_string()),
                    },
                }
            }
            Some((j, q)) => match (q.backend.as_deref(), q.peer.as_deref()) {
                (Some("ring"), Some(back)) if back == name => Some(peer.to_string()),
                (Some("ring"), Some(back)) => {
                    ck.err(
                        &field,
                        format!(
                            "ring peers must name each other: port {peer:?} (ports[{j}]) has peer {back:?}, not {name:?}"
                        ),
                    );
                    None
                }
                // Its own missing peer is reported there.
                (Some("ring"), None) => None,
                (Some(other), _) if BackendCfg::NAMES.contains(&other) => {
                    ck.err(
                        &field,
                        format!("port {peer:?} (ports[{j}]) is a {other} port; a ring port's peer must be a ring port"),
                    );
                    None
                }
                // Unknown or missing backend: reported there.
                _ => None,
            },
        },
    };
    let depth = match p.depth {
        None => Some(None),
        Some(d) => {
            let field = format!("ports[{i}].depth");
            let d = ck.range::<usize>(&field, "depth", d, usize_range(&RING_DEPTH_RANGE));
            match d {
                Some(d) if !d.is_power_of_two() => {
                    ck.err(&field, format!("depth must be a power of two, got {d}"));
                    None
                }
                Some(d) => Some(Some(d)),
                None => None,
            }
        }
    };
    let peer_queues = match p.peer_queues {
        None => Some(None),
        Some(n) => {
            let field = format!("ports[{i}].peer_queues");
            let internal = p
                .peer
                .as_deref()
                .and_then(|peer| by_name.get(peer))
                .map(|(j, _)| *j);
            match internal {
                Some(j) => {
                    ck.err(
                        &field,
                        format!("peer_queues is for an external far end; the peer is port {:?} (ports[{j}]), cabled inside the router with one queue per worker", p.peer.as_deref().unwrap_or_default()),
                    );
                    None
                }
                None => ck
                    .range::<u16>(&field, "peer_queues", n, usize_range(&(1..=MAX_WORKERS)))
                    .map(Some),
            }
        }
    };
    Some(BackendCfg::Ring {
        peer: peer?,
        depth: depth?,
        peer_queues: peer_queues?,
    })
}

fn check_pcap(
    ck: &mut Checker,
    i: usize,
    p: &RawPort,
    base: Option<&Path>,
    tx_files: &mut HashMap<PathBuf, usize>,
) -> Option<BackendCfg> {
    let mut ok = true;
    if p.rx.is_none() && p.tx.is_none() {
        ck.err(
            format!("ports[{i}]"),
            "a pcap port needs rx (a file to read), tx (a file to write) or both",
        );
        ok = false;
    }
    let rx = match p.rx.as_deref() {
        None => None,
        Some("") => {
            ck.err(format!("ports[{i}].rx"), "rx path is empty");
            ok = false;
            None
        }
        Some(rx) => {
            let path = resolve(rx, base);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    ck.err(
                        format!("ports[{i}].rx"),
                        format!("pcap file {:?} is a directory", path.display().to_string()),
                    );
                    ok = false;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ck.err(
                        format!("ports[{i}].rx"),
                        format!("pcap file {:?} does not exist", path.display().to_string()),
                    );
                    ok = false;
                }
                Err(e) => {
                    ck.err(
                        format!("ports[{i}].rx"),
                        format!(
                            "cannot read pcap file {:?}: {e}",
                            path.display().to_string()
                        ),
                    );
                    ok = false;
                }
            }
            Some(path)
        }
    };
    let tx = match p.tx.as_deref() {
        None => None,
        Some("") => {
            ck.err(format!("ports[{i}].tx"), "tx path is empty");
            ok = false;
            None
        }
        Some(tx) => {
            let path = resolve(tx, base);
            if rx.as_ref() == Some(&path) {
                ck.err(
                    format!("ports[{i}].tx"),
                    "tx is the same file as rx (writing would destroy the input)",
                );
                ok = false;
            } else if let Some(first) = tx_files.get(&path) {
                ck.err(
                    format!("ports[{i}].tx"),
                    format!(
                        "pcap file {:?} is already written by ports[{first}]",
                        path.display().to_string()
                    ),
                );
                ok = false;
            } else {
                tx_files.insert(path.clone(), i);
            }
            Some(path)
        }
    };
    let replay = match p.replay {
        None => Some(None),
        Some(_) if p.rx.is_none() => {
            ck.err(
                format!("ports[{i}].replay"),
                "replay needs rx (there is nothing to replay)",
            );
            None
        }
        Some(r) => ck
            .range::<u32>(
                &format!("ports[{i}].replay"),
                "replay",
                r,
                1..=i64::from(u32::MAX),
            )
            .map(Some),
    };
    if !ok {
        return None;
    }
    Some(BackendCfg::Pcap {
        rx,
        tx,
        replay: replay?,
    })
}

fn check_afpacket(
    ck: &mut Checker,
    i: usize,
    p: &RawPort,
    interfaces: &mut HashMap<String, usize>,
) -> Option<BackendCfg> {
    let mut ok = true;
    let interface = match p.interface.as_deref() {
        None => {
            ck.err(
                format!("ports[{i}].interface"),
                format!("{REQUIRED} (an afpacket port needs the Linux interface to attach to)"),
            );
            None
        }
        Some(ifname) => {
            if let Some(why) = bad_ifname(ifname) {
                ck.err(format!("ports[{i}].interface"), why);
                None
            } else if let Some(first) = interfaces.get(ifname) {
                ck.err(
                    format!("ports[{i}].interface"),
                    format!("interface {ifname:?} is already used by ports[{first}]"),
                );
                None
            } else {
                interfaces.insert(ifname.to_string(), i);
                Some(ifname.to_string())
            }
        }
    };
    let page = page_size();
    let block_size = match p.block_size {
        None => None,
        Some(b) => {
            if b < page || b > MAX_BLOCK_SIZE || b % page != 0 || !(b as u64).is_power_of_two() {
                ck.err(
                    format!("ports[{i}].block_size"),
                    format!(
                        "block_size must be a power of two, a multiple of the page size ({page}) and at most {MAX_BLOCK_SIZE}, got {b}"
                    ),
                );
                ok = false;
            }
            usize::try_from(b).ok()
        }
    };
    let block_count = match p.block_count {
        None => None,
        Some(c) => {
            let c = ck.range::<usize>(
                &format!("ports[{i}].block_count"),
                "block_count",
                c,
                BLOCK_COUNT_RANGE,
            );
            ok &= c.is_some();
            c
        }
    };
    let frame_size = match p.frame_size {
        None => None,
        Some(f) => {
            let max = p.block_size.unwrap_or(MAX_BLOCK_SIZE).min(MAX_BLOCK_SIZE);
            if f < MIN_FRAME_SIZE || f % FRAME_ALIGN != 0 || f > max {
                let upper = if p.block_size.is_some() {
                    format!("at most block_size ({max})")
                } else {
                    format!("at most {max}")
                };
                ck.err(
                    format!("ports[{i}].frame_size"),
                    format!(
                        "frame_size must be a multiple of {FRAME_ALIGN}, at least {MIN_FRAME_SIZE} and {upper}, got {f}"
                    ),
                );
                ok = false;
            }
            usize::try_from(f).ok()
        }
    };
    if !ok {
        return None;
    }
    Some(BackendCfg::AfPacket {
        interface: interface?,
        block_size,
        block_count,
        frame_size,
        promiscuous: p.promiscuous,
    })
}

fn check_networks(ck: &mut Checker, raw: &RawConfig) -> Vec<Option<NetworkCfg>> {
    let port_names = unique_names(raw.ports.iter().map(|p| p.name.as_deref()));
    let mut first_by_name: HashMap<&str, usize> = HashMap::new();
    // Port name -> network index that has it.
    let mut member_of: HashMap<&str, usize> = HashMap::new();
    let mut tagged: HashMap<&str, Vec<TaggedUse>> = HashMap::new();
    let mut out = Vec::with_capacity(raw.networks.len());
    for (i, n) in raw.networks.iter().enumerate() {
        let at = |f: &str| format!("networks[{i}].{f}");
        let mut ok = true;
        let name = match n.name.as_deref() {
            None => {
                ck.err(at("name"), REQUIRED);
                ok = false;
                ""
            }
            Some(name) => {
                if let Some(why) = bad_name("network", name, MAX_PORT_NAME) {
                    ck.err(at("name"), why);
                    ok = false;
                }
                if let Some(first) = first_by_name.get(name) {
                    ck.err(
                        at("name"),
                        format!(
                            "duplicate network name {name:?} (first used by networks[{first}])"
                        ),
                    );
                    ok = false;
                } else {
                    first_by_name.insert(name, i);
                }
                name
            }
        };
        let mode = match n.mode.as_deref() {
            None => {
                let all: Vec<_> = NetworkMode::ALL.iter().map(|m| m.as_str()).collect();
                ck.err(
                    at("mode"),
                    format!("{REQUIRED} (one of: {})", all.join(", ")),
                );
                None
            }
            Some(m) => match m.parse::<NetworkMode>() {
                Ok(mode) if mode.is_implemented() => Some(mode),
                Ok(mode) => {
                    ck.err(at("mode"), format!("mode `{mode}` is not implemented yet"));
                    None
                }
                Err(why) => {
                    ck.err(at("mode"), why);
                    None
                }
            },
        };
        let ports = match &n.ports {
            None => {
                ck.err(at("ports"), REQUIRED);
                None
            }
            Some(ports) => {
                let mut seen = HashSet::new();
                for (j, p) in ports.iter().enumerate() {
                    let field = format!("networks[{i}].ports[{j}]");
                    if !port_names.contains(&p.as_str()) {
                        ck.err(&field, no_such("port", p, &port_names));
                        ok = false;
                    } else if !seen.insert(p.as_str()) {
                        ck.err(&field, format!("port {p:?} is listed twice"));
                        ok = false;
                    } else if let Some(&other) = member_of.get(p.as_str()) {
                        let other_name = raw.networks[other].name.as_deref().unwrap_or("?");
                        ck.err(
                            &field,
                            format!(
                                "port {p:?} is already in network {other_name:?} (networks[{other}]); a port belongs to at most one network"
                            ),
                        );
                        ok = false;
                    } else {
                        member_of.insert(p.as_str(), i);
                    }
                }
                if mode == Some(NetworkMode::Xconnect) && ports.len() != 2 {
                    ck.err(
                        at("ports"),
                        format!(
                            "an xconnect network joins exactly two ports, got {}",
                            ports.len()
                        ),
                    );
                    ok = false;
                }
                Some(ports.clone())
            }
        };
        let rewrite = check_rewrites(ck, i, n, mode);
        let l2 = check_l2(ck, i, n, mode, &port_names, &mut tagged);
        let ipvlan = ipvlan::check_ipvlan(ck, i, n, mode, raw);
        let pool = ipam::check_network_ipam(ck, i, n, mode);
        let vx = overlay::check_overlay(ck, i, n, mode, raw);
        out.push(match (ok, mode, ports, rewrite, l2, ipvlan, pool, vx) {
            (
                true,
                Some(mode),
                Some(ports),
                Some(rewrite),
                Some((bridge, macvlan)),
                Some(ipvlan),
                Some(ipam),
                Some(overlay),
            ) => Some(NetworkCfg {
                name: name.to_string(),
                mode,
                ports,
                rewrite,
                bridge,
                macvlan,
                ipvlan,
                ipam,
                addresses: Vec::new(),
                overlay,
            }),
            _ => None,
        });
    }
    // A port is either an exclusive member of one network or carries networks by VLAN (trunk, uplink).
    for (port, uses) in &tagged {
        for (field, ..) in uses {
            if let Some(&other) = member_of.get(port) {
                let other_name = raw.networks[other].name.as_deref().unwrap_or("?");
                ck.err(
                    field.clone(),
                    format!("port {port:?} is already a member of network {other_name:?} (networks[{other}]); a trunk or uplink port carries networks by VLAN only"),
                );
            }
        }
    }
    check_uplink_macs(ck, raw);
    out
}

/// A use of a port by VLAN: (field, VLAN or none for untagged, network index, whether the VLAN is known good;
/// a use with a bad VLAN still conflicts with exclusive membership but not with other VLANs).
type TaggedUse = (String, Option<u16>, usize, bool);

/// An optional number in `range`, or `default` when absent.
fn opt_range<T: TryFrom<i64>>(
    ck: &mut Checker,
    field: &str,
    what: &str,
    v: Option<i64>,
    range: RangeInclusive<i64>,
    default: T,
) -> Option<T> {
    match v {
        None => Some(default),
        Some(v) => ck.range::<T>(field, what, v, range),
    }
}

/// Options that belong to one mode only, for "only for ... networks" errors.
fn mode_options(n: &RawNetwork) -> Vec<(&'static str, bool, NetworkMode)> {
    use NetworkMode::{Bridge, Macvlan};
    vec![
        ("trunk_ports", n.trunk_ports.is_some(), Bridge),
        ("aging_s", n.aging_s.is_some(), Bridge),
        ("mac_limit", n.mac_limit.is_some(), Bridge),
        (
            "flood_unknown_unicast",
            n.flood_unknown_unicast.is_some(),
            Bridge,
        ),
        ("gateway_mac", n.gateway_mac.is_some(), Bridge),
        ("static_macs", !n.static_macs.is_empty(), Bridge),
        // An ipvlan network has an uplink too (checked with its mode).
        (
            "uplink",
            n.uplink.is_some() && n.mode.as_deref() != Some("ipvlan"),
            Macvlan,
        ),
        ("max_macs", n.max_macs.is_some(), Macvlan),
        ("allow_host", n.allow_host.is_some(), Macvlan),
    ]
}

/// Bridge and macvlan options of network `i`. Records trunk and uplink uses of ports in `tagged`.
#[allow(clippy::type_complexity)]
fn check_l2<'a>(
    ck: &mut Checker,
    i: usize,
    n: &'a RawNetwork,
    mode: Option<NetworkMode>,
    port_names: &[&str],
    tagged: &mut HashMap<&'a str, Vec<TaggedUse>>,
) -> Option<(Option<BridgeCfg>, Option<MacvlanCfg>)> {
    let at = |f: &str| format!("networks[{i}].{f}");
    let Some(mode) = mode else {
        return Some((None, None));
    };
    let mut ok = true;
    for (opt, set, owner) in mode_options(n) {
        // An overlay is a bridge domain: it takes the bridge's table options, not its VLAN or gateway ones.
        let overlay_ok = mode == NetworkMode::Overlay
            && owner == NetworkMode::Bridge
            && !matches!(opt, "trunk_ports" | "gateway_mac");
        if set && mode != owner && !overlay_ok {
            ck.err(
                at(opt),
                format!("`{opt}` is only for {owner} networks (this one is {mode})"),
            );
            ok = false;
        }
    }
    if n.vlan.is_some() && !matches!(mode, NetworkMode::Bridge | NetworkMode::Macvlan) {
        ck.err(
            at("vlan"),
            format!("`vlan` is only for bridge and macvlan networks (this one is {mode})"),
        );
        ok = false;
    }
    let vlan = match n.vlan {
        None => None,
        Some(v) => match ck.range::<u16>(&at("vlan"), "vlan", v, i64_range(&VLAN_RANGE)) {
            Some(v) => Some(v),
            None => {
                ok = false;
                None
            }
        },
    };
    let vlan_good = n.vlan.is_none() || vlan.is_some();
    let mut use_port =
        |ck: &mut Checker, field: String, port: &'a str, vlan: Option<u16>, good: bool| -> bool {
            if !port_names.contains(&port) {
                ck.err(&field, no_such("port", port, port_names));
                return false;
            }
            let uses = tagged.entry(port).or_default();
            if let Some((first, _, other, _)) =
                uses.iter().find(|(_, v, _, g)| good && *g && *v == vlan)
            {
                let what = vlan.map_or("untagged".to_string(), |v| format!("VLAN {v}"));
                ck.err(
                    &field,
                    format!("port {port:?} already carries {what} for networks[{other}] ({first})"),
                );
                return false;
            }
            uses.push((field, vlan, i, good));
            true
        };
    match mode {
        NetworkMode::Bridge | NetworkMode::Overlay => {
            let mut trunk_ports = Vec::new();
            // An overlay's trunk ports were refused above.
            let trunks = n.trunk_ports.iter().flatten();
            let trunks = trunks.filter(|_| mode == NetworkMode::Bridge);
            for (j, p) in trunks.enumerate() {
                let field = at(&format!("trunk_ports[{j}]"));
                if n.ports.iter().flatten().any(|a| a == p) {
                    ck.err(
                        &field,
                        format!(
                            "port {p:?} is both an access port and a trunk port of this network"
                        ),
                    );
                    ok = false;
                    continue;
                }
                // Without a valid VLAN the trunk is already an error: record the use, but not as a VLAN.
                ok &= use_port(ck, field, p, vlan, vlan.is_some());
                trunk_ports.push(p.clone());
            }
            if !trunk_ports.is_empty() && n.vlan.is_none() {
                ck.err(
                    at("trunk_ports"),
                    "trunk ports carry the domain tagged: set `vlan` (1..=4094)",
                );
                ok = false;
            }
            let aging_s = opt_range(
                ck,
                &at("aging_s"),
                "aging_s",
                n.aging_s,
                i64_range(&AGING_RANGE),
                DEFAULT_AGING_S,
            );
            let mac_limit = opt_range(
                ck,
                &at("mac_limit"),
                "mac_limit",
                n.mac_limit,
                usize_range(&MAC_LIMIT_RANGE),
                DEFAULT_MAC_LIMIT,
            );
            let gateway_mac = match n.gateway_mac.as_deref() {
                None => Some(None),
                Some(s) => mac(ck, &at("gateway_mac"), s, true).map(Some),
            };
            let members: Vec<&str> = n
                .ports
                .iter()
                .flatten()
                .chain(n.trunk_ports.iter().flatten())
                .map(String::as_str)
                .collect();
            let mut static_macs = Vec::new();
            let mut seen = HashMap::new();
            for (k, sm) in n.static_macs.iter().enumerate() {
                let f = |x: &str| at(&format!("static_macs[{k}].{x}"));
                let m = match sm.mac.as_deref() {
                    None => {
                        ck.err(f("mac"), REQUIRED);
                        None
                    }
                    Some(s) => mac(ck, &f("mac"), s, true),
                };
                let port = match sm.port.as_deref() {
                    None => {
                        ck.err(f("port"), REQUIRED);
                        None
                    }
                    Some(p) if !members.contains(&p) => {
                        ck.err(
                            f("port"),
                            format!(
                                "port {p:?} is not a member of this bridge (members: {})",
                                list(&members)
                            ),
                        );
                        None
                    }
                    Some(p) => Some(p.to_string()),
                };
                if let Some(m) = m {
                    if let Some(first) = seen.insert(m, k) {
                        ck.err(f("mac"), format!("MAC {m} is already static_macs[{first}]"));
                        ok = false;
                    }
                }
                match (m, port) {
                    (Some(mac), Some(port)) => static_macs.push(StaticMacCfg { mac, port }),
                    _ => ok = false,
                }
            }
            match (ok, aging_s, mac_limit, gateway_mac) {
                (true, Some(aging_s), Some(mac_limit), Some(gateway_mac)) => Some((
                    Some(BridgeCfg {
                        vlan,
                        trunk_ports,
                        aging_s,
                        mac_limit,
                        flood_unknown_unicast: n.flood_unknown_unicast.unwrap_or(true),
                        gateway_mac,
                        static_macs,
                    }),
                    None,
                )),
                _ => None,
            }
        }
        NetworkMode::Macvlan => {
            let max_macs = opt_range(
                ck,
                &at("max_macs"),
                "max_macs",
                n.max_macs,
                usize_range(&MAX_MACS_RANGE),
                DEFAULT_MAX_MACS,
            );
            let uplink = match n.uplink.as_deref() {
                None => {
                    ck.err(
                        at("uplink"),
                        format!("{REQUIRED} (the port to the physical LAN)"),
                    );
                    None
                }
                Some(u) if n.ports.iter().flatten().any(|p| p == u) => {
                    ck.err(
                        at("uplink"),
                        format!("port {u:?} is the uplink and cannot also be an endpoint port"),
                    );
                    None
                }
                Some(u) => use_port(ck, at("uplink"), u, vlan, vlan_good).then(|| u.to_string()),
            };
            match (ok, uplink, max_macs) {
                (true, Some(uplink), Some(max_macs)) => Some((
                    None,
                    Some(MacvlanCfg {
                        uplink,
                        vlan,
                        max_macs,
                        allow_host: n.allow_host.unwrap_or(false),
                    }),
                )),
                _ => None,
            }
        }
        _ => ok.then_some((None, None)),
    }
}

/// Every macvlan endpoint is a MAC on its network's uplink: their number per uplink is capped by `max_macs`.
fn check_uplink_macs(ck: &mut Checker, raw: &RawConfig) {
    let mut per_uplink: HashMap<&str, (usize, usize, usize)> = HashMap::new(); // (endpoint ports, max, net index)
    for (i, n) in raw.networks.iter().enumerate() {
        if n.mode.as_deref() != Some("macvlan") {
            continue;
        }
        let Some(u) = n.uplink.as_deref() else {
            continue;
        };
        let max = n
            .max_macs
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(DEFAULT_MAX_MACS);
        let e = per_uplink.entry(u).or_insert((0, max, i));
        e.0 += n.ports.as_ref().map_or(0, Vec::len);
        e.1 = e.1.min(max);
        e.2 = i;
    }
    let mut uplinks: Vec<_> = per_uplink.into_iter().collect();
    uplinks.sort();
    for (u, (count, max, i)) in uplinks {
        if count > max {
            ck.err(
                format!("networks[{i}].ports"),
                format!("uplink {u:?} would carry {count} endpoint MACs, more than max_macs = {max} (the NIC's unicast filter ceiling; raise max_macs if the NIC takes more)"),
            );
        }
    }
}

fn check_rewrites(
    ck: &mut Checker,
    i: usize,
    n: &RawNetwork,
    mode: Option<NetworkMode>,
) -> Option<Vec<RewriteCfg>> {
    let members: Vec<&str> = n.ports.iter().flatten().map(String::as_str).collect();
    let net_name = n.name.as_deref().unwrap_or("?");
    if !n.rewrite.is_empty() && mode.is_some_and(|m| m != NetworkMode::Xconnect) {
        ck.err(
            format!("networks[{i}].rewrite[0]"),
            "rewrite is only supported by xconnect networks",
        );
        return None;
    }
    let mut ok = true;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(n.rewrite.len());
    for (k, r) in n.rewrite.iter().enumerate() {
        let RawRewrite {
            port,
            src_mac,
            dst_mac,
        } = r;
        let at = |f: &str| format!("networks[{i}].rewrite[{k}].{f}");
        match port.as_deref() {
            None => {
                ck.err(at("port"), REQUIRED);
                ok = false;
            }
            Some(p) if n.ports.is_some() && !members.contains(&p) => {
                ck.err(
                    at("port"),
                    format!(
                        "port {p:?} is not in network {net_name:?} (its ports are: {})",
                        list(&members)
                    ),
                );
                ok = false;
            }
            Some(p) => {
                if let Some(first) = seen.get(p) {
                    ck.err(
                        at("port"),
                        format!("port {p:?} already has a rewrite (rewrite[{first}])"),
                    );
                    ok = false;
                } else {
                    seen.insert(p, k);
                }
            }
        }
        if src_mac.is_none() && dst_mac.is_none() {
            ck.err(
                format!("networks[{i}].rewrite[{k}]"),
                "a rewrite needs src_mac, dst_mac or both",
            );
            ok = false;
        }
        let src = src_mac.as_deref().map(|s| mac(ck, &at("src_mac"), s, true));
        let dst = dst_mac
            .as_deref()
            .map(|s| mac(ck, &at("dst_mac"), s, false));
        let (src, dst) = match (src, dst) {
            (Some(None), _) | (_, Some(None)) => {
                ok = false;
                (None, None)
            }
            (s, d) => (s.flatten(), d.flatten()),
        };
        if let Some(p) = port {
            out.push(RewriteCfg {
                port: p.clone(),
                src_mac: src,
                dst_mac: dst,
            });
        }
    }
    ok.then_some(out)
}

/// `[[links]]`: pairs of afpacket ports the lab cables to each other (a trunk between two wharf ports).
fn check_links(ck: &mut Checker, raw: &RawConfig) -> Option<Vec<LinkCfg>> {
    let mut ok = true;
    let mut used: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, l) in raw.links.iter().enumerate() {
        let field = format!("links[{i}].ports");
        let Some(ports) = &l.ports else {
            ck.err(&field, REQUIRED);
            ok = false;
            continue;
        };
        let [a, b] = ports.as_slice() else {
            ck.err(
                &field,
                format!("a link cables exactly two ports, got {}", ports.len()),
            );
            ok = false;
            continue;
        };
        for (j, p) in [a, b].into_iter().enumerate() {
            let f = format!("links[{i}].ports[{j}]");
            match raw
                .ports
                .iter()
                .find(|q| q.name.as_deref() == Some(p.as_str()))
            {
                None => {
                    let names = unique_names(raw.ports.iter().map(|p| p.name.as_deref()));
                    ck.err(&f, no_such("port", p, &names));
                    ok = false;
                }
                Some(q) if q.backend.as_deref() != Some("afpacket") => {
                    ck.err(
                        &f,
                        format!("port {p:?} is not an afpacket port; links are veth cables"),
                    );
                    ok = false;
                }
                Some(_) => {
                    if raw
                        .endpoints
                        .iter()
                        .any(|e| e.port.as_deref() == Some(p.as_str()))
                    {
                        ck.err(&f, format!("port {p:?} is cabled to an endpoint already"));
                        ok = false;
                    } else if let Some(first) = used.insert(p.as_str(), i) {
                        ck.err(&f, format!("port {p:?} is already in links[{first}]"));
                        ok = false;
                    }
                }
            }
        }
        if a == b {
            ck.err(&field, "a link joins two different ports");
            ok = false;
        }
        out.push(LinkCfg {
            ports: [a.clone(), b.clone()],
        });
    }
    ok.then_some(out)
}

/// Parses a MAC; `unicast` also requires the group bit clear. Never all-zero.
fn mac(ck: &mut Checker, field: &str, s: &str, unicast: bool) -> Option<MacAddr> {
    match s.parse::<MacAddr>() {
        Err(e) => {
            ck.err(field, e.to_string());
            None
        }
        Ok(m) if m.is_zero() => {
            ck.err(field, format!("MAC address {m} is all-zero"));
            None
        }
        Ok(m) if unicast && m.is_multicast() => {
            ck.err(
                field,
                format!("MAC address {m} is multicast (the low bit of the first octet is set); a unicast address is needed"),
            );
            None
        }
        Ok(m) => Some(m),
    }
}

fn check_endpoints(ck: &mut Checker, raw: &RawConfig) -> Vec<Option<EndpointCfg>> {
    let port_names = unique_names(raw.ports.iter().map(|p| p.name.as_deref()));
    let net_names = unique_names(raw.networks.iter().map(|n| n.name.as_deref()));
    let mut first_by_name: HashMap<&str, usize> = HashMap::new();
    let mut cabled: HashMap<&str, usize> = HashMap::new();
    let mut macs: HashMap<MacAddr, usize> = HashMap::new();
    let mut addrs: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.endpoints.len());
    for (i, e) in raw.endpoints.iter().enumerate() {
        let RawEndpoint {
            name,
            network,
            port,
            mac: raw_mac,
            address,
            gateway,
            address6,
            gateway6,
            routes,
            publish: _,
        } = e;
        let routes = ipvlan::check_endpoint_routes(ck, i, routes.as_deref());
        let at = |f: &str| format!("endpoints[{i}].{f}");
        let v6 = routing::check_endpoint_v6(ck, i, address6.as_deref(), gateway6.as_deref());
        let mut ok = true;
        match name.as_deref() {
            None => {
                ck.err(at("name"), REQUIRED);
                ok = false;
            }
            Some(n) => {
                if let Some(why) = bad_name("endpoint", n, MAX_ENDPOINT_NAME) {
                    ck.err(at("name"), why);
                    ok = false;
                }
                if let Some(first) = first_by_name.get(n) {
                    ck.err(
                        at("name"),
                        format!("duplicate endpoint name {n:?} (first used by endpoints[{first}])"),
                    );
                    ok = false;
                } else {
                    first_by_name.insert(n, i);
                }
            }
        }
        // A host cabled to a routed port is on no network: the port's subnet is its LAN.
        let routed_port = port.as_deref().is_some_and(|p| {
            raw.ports.iter().any(|x| {
                x.name.as_deref() == Some(p) && x.addresses.as_ref().is_some_and(|a| !a.is_empty())
            })
        });
        let net = match network.as_deref() {
            None if routed_port => None,
            None => {
                ck.err(
                    at("network"),
                    format!(
                        "{REQUIRED} (only a host on a routed port, one with `addresses`, has none)"
                    ),
                );
                ok = false;
                None
            }
            Some(n) if !net_names.contains(&n) => {
                ck.err(at("network"), no_such("network", n, &net_names));
                ok = false;
                None
            }
            Some(n) => raw.networks.iter().find(|x| x.name.as_deref() == Some(n)),
        };
        match port.as_deref() {
            None => {
                ck.err(at("port"), REQUIRED);
                ok = false;
            }
            Some(p) if !port_names.contains(&p) => {
                ck.err(at("port"), no_such("port", p, &port_names));
                ok = false;
            }
            Some(p) => {
                if let Some(net) = net {
                    // An endpoint on a macvlan uplink is a host of the LAN outside.
                    let members: Vec<&str> = net
                        .ports
                        .iter()
                        .flatten()
                        .map(String::as_str)
                        .chain(net.uplink.as_deref().filter(|_| {
                            net.mode.as_deref() == Some("macvlan")
                                || (net.mode.as_deref() == Some("ipvlan")
                                    && net.ipvlan_mode.as_deref() == Some("l2"))
                        }))
                        .collect();
                    if net.ports.is_some() && !members.contains(&p) {
                        ck.err(
                            at("port"),
                            format!(
                                "port {p:?} is not in network {:?} (its ports are: {})",
                                net.name.as_deref().unwrap_or("?"),
                                list(&members)
                            ),
                        );
                        ok = false;
                    }
                }
                if let Some(first) = cabled.get(p) {
                    ck.err(at("port"), format!("port {p:?} is already cabled to endpoints[{first}]; one endpoint per port"));
                    ok = false;
                } else {
                    cabled.insert(p, i);
                }
            }
        }
        let mac_addr = match raw_mac.as_deref() {
            None => Some(None),
            Some(s) => match mac(ck, &at("mac"), s, true) {
                Some(m) => {
                    if let Some(first) = macs.get(&m) {
                        ck.err(
                            at("mac"),
                            format!("MAC address {m} is already used by endpoints[{first}]"),
                        );
                        None
                    } else {
                        macs.insert(m, i);
                        Some(Some(m))
                    }
                }
                None => None,
            },
        };
        // A network with an address pool gives an endpoint without `address` one when the router starts.
        let pool = net.and_then(|n| {
            let mut quiet = Checker::default();
            let mode = n
                .mode
                .as_deref()
                .and_then(|m| m.parse::<NetworkMode>().ok());
            ipam::check_network_ipam(&mut quiet, 0, n, mode).flatten()
        });
        let pooled = address.is_none() && pool.is_some();
        // A pool that is wrong is reported once, at the pool.
        let bad_pool = address.is_none() && pool.is_none() && net.is_some_and(|n| n.ipam.is_some());
        let cidr = match address.as_deref() {
            // Checked against the pool's subnet below; assigned by `ipam::assign_addresses`.
            None if pooled => pool
                .as_ref()
                .and_then(|p| Ipv4Cidr::new(p.subnet.addr(), p.host_prefix)),
            None if bad_pool => None,
            None => {
                ck.err(
                    at("address"),
                    format!("{REQUIRED} (an IPv4 address with prefix length, like 10.77.0.1/24; or give the network an address pool: [networks.ipam], or a bridge gateway address)"),
                );
                None
            }
            Some(s) => match s.parse::<Ipv4Cidr>() {
                Err(e) => {
                    ck.err(at("address"), e.to_string());
                    None
                }
                Ok(c) => match bad_host_address(c) {
                    Some(why) => {
                        ck.err(at("address"), why);
                        None
                    }
                    None => {
                        if let Some(first) = addrs.get(&c.addr()) {
                            ck.err(
                                at("address"),
                                format!(
                                    "address {} is already used by endpoints[{first}]",
                                    c.addr()
                                ),
                            );
                            None
                        } else {
                            addrs.insert(c.addr(), i);
                            Some(c)
                        }
                    }
                },
            },
        };
        let p2p = net.is_some_and(|n| n.mode.as_deref() == Some("point-to-point"));
        let gw = match gateway.as_deref() {
            None => Some(None),
            Some(s) => match s.parse::<Ipv4Addr>() {
                Err(_) => {
                    ck.err(at("gateway"), format!("invalid IPv4 address {s:?}"));
                    None
                }
                // A point-to-point endpoint reaches the router's link-local gateway on-link.
                Ok(g) if p2p && g == P2P_GATEWAY4 => Some(Some(g)),
                Ok(g) if p2p => {
                    ck.err(
                        at("gateway"),
                        format!("on a point-to-point network the gateway is the router's {P2P_GATEWAY4} (or none), not {g}"),
                    );
                    None
                }
                Ok(g) => match cidr {
                    // Address invalid: already reported, nothing to compare with.
                    None => None,
                    Some(c) if !c.contains(g) => {
                        ck.err(
                            at("gateway"),
                            format!(
                                "gateway {g} is outside the subnet {}/{} of address {c}",
                                c.network(),
                                c.prefix()
                            ),
                        );
                        None
                    }
                    Some(c) if g == c.addr() => {
                        ck.err(
                            at("gateway"),
                            format!("gateway {g} is the endpoint's own address"),
                        );
                        None
                    }
                    Some(c)
                        if !Ipv4Cidr::new(g, c.prefix()).is_some_and(Ipv4Cidr::is_host_address) =>
                    {
                        ck.err(
                            at("gateway"),
                            format!(
                                "gateway {g} is the network or broadcast address of {}/{}",
                                c.network(),
                                c.prefix()
                            ),
                        );
                        None
                    }
                    Some(_) => Some(Some(g)),
                },
            },
        };
        if p2p {
            if let Some(c) = cidr.filter(|c| c.prefix() != 32) {
                ck.err(
                    at("address"),
                    format!("{c}: an endpoint on a point-to-point network has a /32 (the router routes it as a host; it reaches {P2P_GATEWAY4} on-link)"),
                );
                ok = false;
            }
            if let Some((Some(c), _)) = v6 {
                if c.prefix() != 128 {
                    ck.err(
                        at("address6"),
                        format!("{c}: an endpoint on a point-to-point network has a /128 (its gateway is {P2P_GATEWAY6})"),
                    );
                    ok = false;
                }
            }
        }
        out.push(match (ok, mac_addr, cidr, gw, v6, routes) {
            (
                true,
                Some(mac),
                Some(address),
                Some(gateway),
                Some((address6, gateway6)),
                Some(routes),
            ) => Some(EndpointCfg {
                name: name.clone().unwrap_or_default(),
                network: network.clone().unwrap_or_default(),
                port: port.clone().unwrap_or_default(),
                mac,
                address: (!pooled).then_some(address),
                gateway,
                address6,
                gateway6,
                routes,
            }),
            _ => None,
        });
    }
    out
}

/// Why `c` cannot be an endpoint's address, if it cannot.
fn bad_host_address(c: Ipv4Cidr) -> Option<String> {
    let a = c.addr();
    if c.prefix() == 0 {
        return Some(format!(
            "prefix length 0 in {c} leaves no subnet; use 1..=32"
        ));
    }
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
        let what = if a.is_unspecified() {
            "unspecified"
        } else if a.is_loopback() {
            "a loopback address"
        } else if a.is_multicast() {
            "a multicast address"
        } else {
            "the broadcast address"
        };
        return Some(format!("{a} is {what}, not a host address"));
    }
    if !c.is_host_address() {
        let what = if a == c.network() {
            "network address (host part all zero)"
        } else {
            "broadcast address (host part all ones)"
        };
        return Some(format!(
            "{a} is the {what} of {}/{}, not a host address",
            c.network(),
            c.prefix()
        ));
    }
    None
}

/// The file a [`Config`] would have been read from (numbers and enums back to their written form).
pub(crate) fn to_raw(c: &Config) -> RawConfig {
    let num = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let d = &c.dataplane;
    RawConfig {
        dataplane: Some(RawDataplane {
            buffers: Some(num(d.buffers)),
            data_room: Some(num(d.data_room)),
            burst_size: Some(num(d.burst_size)),
            cores: d
                .cores
                .as_ref()
                .map(|cs| cs.iter().map(|&c| num(c)).collect()),
            workers: d.workers.map(num),
            idle: Some(d.idle.as_str().to_string()),
            idle_sleep_us: Some(i64::from(d.idle_sleep_us)),
            idle_after_polls: Some(i64::from(d.idle_after_polls)),
        }),
        control: Some(RawControl {
            socket: Some(path(&c.control.socket)),
            state_dir: c.control.state_dir.as_deref().map(path),
        }),
        dpdk: c.dpdk.as_ref().map(dpdk::section_to_raw),
        ports: c
            .ports
            .iter()
            .map(|p| {
                let mut r = RawPort {
                    name: Some(p.name.clone()),
                    backend: Some(p.backend.kind().to_string()),
                    ..RawPort::default()
                };
                match &p.backend {
                    BackendCfg::Ring {
                        peer,
                        depth,
                        peer_queues,
                    } => {
                        r.peer = Some(peer.clone());
                        r.depth = depth.map(num);
                        r.peer_queues = peer_queues.map(i64::from);
                    }
                    BackendCfg::Pcap { rx, tx, replay } => {
                        r.rx = rx.as_deref().map(path);
                        r.tx = tx.as_deref().map(path);
                        r.replay = replay.map(i64::from);
                    }
                    BackendCfg::AfPacket {
                        interface,
                        block_size,
                        block_count,
                        frame_size,
                        promiscuous,
                    } => {
                        r.interface = Some(interface.clone());
                        r.block_size = block_size.map(num);
                        r.block_count = block_count.map(num);
                        r.frame_size = frame_size.map(num);
                        r.promiscuous = *promiscuous;
                    }
                    BackendCfg::Dpdk(d) => dpdk::port_to_raw(d, &mut r),
                }
                r.addresses = cidrs(&p.addresses);
                r
            })
            .collect(),
        networks: c
            .networks
            .iter()
            .map(|n| RawNetwork {
                name: Some(n.name.clone()),
                mode: Some(n.mode.as_str().to_string()),
                ports: Some(n.ports.clone()),
                rewrite: n
                    .rewrite
                    .iter()
                    .map(|r| RawRewrite {
                        port: Some(r.port.clone()),
                        src_mac: r.src_mac.map(|m| m.to_string()),
                        dst_mac: r.dst_mac.map(|m| m.to_string()),
                    })
                    .collect(),
                trunk_ports: n
                    .bridge
                    .as_ref()
                    .filter(|b| !b.trunk_ports.is_empty())
                    .map(|b| b.trunk_ports.clone()),
                vlan: n
                    .bridge
                    .as_ref()
                    .and_then(|b| b.vlan)
                    .or(n.macvlan.as_ref().and_then(|m| m.vlan))
                    .map(i64::from),
                aging_s: n.bridge.as_ref().map(|b| i64::from(b.aging_s)),
                mac_limit: n.bridge.as_ref().map(|b| num(b.mac_limit)),
                flood_unknown_unicast: n.bridge.as_ref().map(|b| b.flood_unknown_unicast),
                gateway_mac: n
                    .bridge
                    .as_ref()
                    .and_then(|b| b.gateway_mac)
                    .map(|m| m.to_string()),
                static_macs: n
                    .bridge
                    .iter()
                    .flat_map(|b| &b.static_macs)
                    .map(|sm| RawStaticMac {
                        mac: Some(sm.mac.to_string()),
                        port: Some(sm.port.clone()),
                    })
                    .collect(),
                uplink: n
                    .macvlan
                    .as_ref()
                    .map(|m| m.uplink.clone())
                    .or(n.ipvlan.as_ref().map(|v| v.uplink.clone())),
                ipvlan_mode: n.ipvlan.as_ref().map(|v| {
                    match v.ipvlan_mode {
                        IpvlanMode::L2 => "l2",
                        IpvlanMode::L3 => "l3",
                    }
                    .to_string()
                }),
                max_macs: n.macvlan.as_ref().map(|m| num(m.max_macs)),
                allow_host: n.macvlan.as_ref().map(|m| m.allow_host),
                addresses: cidrs(&n.addresses),
                vxlan: n.overlay.as_ref().map(|o| RawVxlan {
                    vni: Some(i64::from(o.vni)),
                    underlay: Some(o.underlay.clone()),
                    local: Some(o.local.to_string()),
                    remotes: (!o.remotes.is_empty())
                        .then(|| o.remotes.iter().map(|a| a.to_string()).collect()),
                    port: Some(i64::from(o.port)),
                    df: Some(o.df),
                    ttl: Some(i64::from(o.ttl)),
                    mtu: Some(i64::from(o.mtu)),
                    fdb: o
                        .fdb
                        .iter()
                        .map(|e| RawFdb {
                            mac: Some(e.mac.to_string()),
                            vtep: Some(e.vtep.to_string()),
                        })
                        .collect(),
                }),
                ipam: n.ipam.as_ref().map(|p| RawIpam {
                    subnet: Some(p.subnet.to_string()),
                    range: p.range.map(|(a, b)| format!("{a}-{b}")),
                    reserved: (!p.reserved.is_empty())
                        .then(|| p.reserved.iter().map(|a| a.to_string()).collect()),
                }),
            })
            .collect(),
        endpoints: c
            .endpoints
            .iter()
            .map(|e| RawEndpoint {
                name: Some(e.name.clone()),
                network: (!e.network.is_empty()).then(|| e.network.clone()),
                port: Some(e.port.clone()),
                mac: e.mac.map(|m| m.to_string()),
                address: e.address.map(|a| a.to_string()),
                gateway: e.gateway.map(|g| g.to_string()),
                address6: e.address6.map(|a| a.to_string()),
                gateway6: e.gateway6.map(|g| g.to_string()),
                routes: (!e.routes.is_empty())
                    .then(|| e.routes.iter().map(|r| r.to_string()).collect()),
                publish: c.nat.as_ref().and_then(|n| {
                    let list: Vec<String> = n
                        .published
                        .iter()
                        .filter(|p| p.endpoint == e.name)
                        .map(|p| p.spec.to_string())
                        .collect();
                    (!list.is_empty()).then_some(list)
                }),
            })
            .collect(),
        links: c
            .links
            .iter()
            .map(|l| RawLink {
                ports: Some(l.ports.to_vec()),
            })
            .collect(),
        router: Some(RawRouter {
            mtu: Some(i64::from(c.router.mtu)),
            icmp_rate: Some(i64::from(c.router.icmp_rate)),
            drop_ip_options: Some(c.router.drop_ip_options),
            neighbor_reachable_s: Some(i64::from(c.router.neighbor_reachable_s)),
            neighbor_stale_s: Some(i64::from(c.router.neighbor_stale_s)),
            neighbor_capacity: Some(num(c.router.neighbor_capacity)),
            fib_tbl8_groups: Some(i64::from(c.router.fib_tbl8_groups)),
            fib6_groups: Some(i64::from(c.router.fib6_groups)),
            echo_port: Some(i64::from(c.router.echo_port)),
        }),
        routes: c
            .routes
            .iter()
            .map(|r| RawRoute {
                prefix: Some(r.prefix.to_string()),
                via: (!r.via.is_empty()).then(|| r.via.iter().map(|v| v.to_string()).collect()),
                kind: Some(
                    match r.kind {
                        RouteKind::Forward => "forward",
                        RouteKind::Blackhole => "blackhole",
                        RouteKind::Unreachable => "unreachable",
                    }
                    .to_string(),
                ),
            })
            .collect(),
        nat: c.nat.as_ref().map(nat::nat_to_raw),
        services: c.services.iter().map(nat::service_to_raw).collect(),
    }
}

/// Addresses back to their written form (`None` for none, as a file without the field).
fn cidrs(list: &[IpCidr]) -> Option<Vec<String>> {
    (!list.is_empty()).then(|| list.iter().map(|c| c.to_string()).collect())
}
