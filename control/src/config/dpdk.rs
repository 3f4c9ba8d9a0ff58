//! `[dpdk]` and `backend = "dpdk"` ports: their model, their checks, and (with the `dpdk` cargo feature) their
//! translation into the DPDK backend's [`EalConfig`], [`DpdkPoolConfig`] and [`DpdkPortConfig`].
//!
//! ```toml
//! [dpdk]                      # the EAL and the one mempool every dpdk port shares   -> DpdkCfg
//! no_huge = true
//! vdevs = ["net_pcap0,rx_pcap=in.pcap"]
//!
//! [[ports]]
//! name = "in"
//! backend = "dpdk"            # a DPDK ethdev                                        -> DpdkPortCfg
//! device = "net_pcap0"
//! ```
//!
//! The model parses and validates the same whether or not wharf was built with the `dpdk` feature; a build
//! without it refuses every use (the `[dpdk]` section, each dpdk port's `backend`) with [`NO_DPDK_SUPPORT`], on
//! top of whatever else is wrong.
//!
//! In device arguments (a port's `device`, `[dpdk] vdevs`), relative `rx_pcap` and `tx_pcap` files of a
//! `net_pcap` device are resolved against the config file's directory, like a pcap port's `rx` and `tx`, and an
//! `rx_pcap` file must exist.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[cfg(feature = "dpdk")]
use dataplane::port::dpdk::{DpdkPoolConfig, DpdkPortConfig, EalConfig};

use super::check::{resolve, usize_range, Checker, REQUIRED};
use super::raw::{RawConfig, RawPort};
use super::{
    BackendCfg, Config, DataplaneCfg, DATA_ROOM_RANGE, DEFAULT_BUFFERS, DEFAULT_DATA_ROOM,
    MAX_BUFFERS, MAX_CORE, MAX_WORKERS, MIN_BUFFERS,
};

/// True when this build has the DPDK backend (the `dpdk` cargo feature).
pub const DPDK_SUPPORT: bool = cfg!(feature = "dpdk");
/// The reason given for every use of DPDK in a config when [`DPDK_SUPPORT`] is false.
pub const NO_DPDK_SUPPORT: &str = "built without DPDK support: rebuild with --features dpdk";
/// Default EAL memory (`memory_mb`), in MiB.
pub const DEFAULT_DPDK_MEMORY_MB: u32 = 512;
/// Least EAL memory without hugepages, in MiB.
pub const MIN_NO_HUGE_MEMORY_MB: u32 = 64;
/// Most EAL memory accepted (1 TiB), in MiB.
pub const MAX_DPDK_MEMORY_MB: u32 = 1 << 20;
/// Default `log_level` of the EAL.
pub const DEFAULT_DPDK_LOG_LEVEL: &str = "notice";
/// Default per-core mempool cache (`cache_size`), lowered to two thirds of `buffers` for small pools.
pub const DEFAULT_DPDK_CACHE_SIZE: u32 = 256;
/// Largest per-core mempool cache (DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`).
pub const MAX_DPDK_CACHE_SIZE: u32 = 512;
/// Accepted `data_room` of the DPDK pool: a 1518-byte Ethernet frame up to 9728-byte jumbo frames (the largest
/// frame of common NICs; room for an MTU of 9600).
pub const DPDK_DATA_ROOM_RANGE: RangeInclusive<usize> = 1518..=9728;
/// Default `rx_desc` and `tx_desc` of a dpdk port.
pub const DEFAULT_DPDK_DESC: u16 = 1024;
/// Accepted `rx_desc` and `tx_desc` (powers of two only).
pub const DPDK_DESC_RANGE: RangeInclusive<u16> = 64..=16384;
/// Accepted `mtu` of a dpdk port.
pub const DPDK_MTU_RANGE: RangeInclusive<u16> = 68..=9600;
/// Bytes a frame has beyond its MTU: the Ethernet header and one 802.1Q tag.
pub const DPDK_FRAME_OVERHEAD: usize = 18;
/// Longest `file_prefix`.
const MAX_FILE_PREFIX: usize = 64;

/// `[dpdk]`: how the DPDK environment (EAL) is started, and the one mempool all dpdk ports share. Used only
/// when the config has a dpdk port; without the section, [`Config::dpdk_or_default`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DpdkCfg {
    /// `no_huge`: run without hugepages (`--no-huge`): for tests and virtual devices (default false: hugepages,
    /// `--in-memory`).
    pub no_huge: bool,
    /// `memory_mb`: EAL memory in MiB (`-m`; default [`DEFAULT_DPDK_MEMORY_MB`]); at least
    /// [`MIN_NO_HUGE_MEMORY_MB`] with `no_huge`, 0 with hugepages means "as the mempools need".
    pub memory_mb: u32,
    /// `file_prefix`: the EAL's `--file-prefix`, 1 to 64 letters, digits, `-`, `_` or `.`; distinct per process
    /// that runs an EAL at once. Default (`None`): `wharf-<pid>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_prefix: Option<String>,
    /// `main_lcore_cpus`: CPUs the EAL's main lcore (the control thread at start) may run on; default (empty):
    /// every CPU wharf may use. Workers are pinned by `[dataplane] cores`, not here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub main_lcore_cpus: Vec<usize>,
    /// `vdevs`: virtual devices probed at EAL start (`--vdev`), e.g. `net_pcap0,rx_pcap=in.pcap`; a port names one
    /// by its name (`device = "net_pcap0"`). Ports may also attach their own (`device` with arguments).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vdevs: Vec<String>,
    /// `pci`: the PCI devices the EAL may use (`-a`, e.g. `0000:03:00.0`, optionally with `,key=value`
    /// arguments); default (empty): none (`--no-pci`). A port whose `device` is a PCI address must be listed here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pci: Vec<String>,
    /// `log_level`: the EAL's `--log-level`, e.g. `notice` or `lib.eal:debug` (default
    /// [`DEFAULT_DPDK_LOG_LEVEL`]; empty: DPDK's own default).
    pub log_level: String,
    /// `extra_args`: more EAL arguments, passed last as they are. Options wharf sets from the fields above
    /// (`-l`, `--file-prefix`, `-m`, `--vdev`, `-a`, ...) are refused here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// `buffers`: mbufs in the DPDK mempool, in `MIN_BUFFERS..=MAX_BUFFERS`; default: `[dataplane] buffers`. Must
    /// cover every dpdk port's rings (`workers × (rx_desc + tx_desc)` per port) plus the workers' caches.
    pub buffers: u32,
    /// `data_room`: bytes per mbuf after the headroom, in [`DPDK_DATA_ROOM_RANGE`]; default: `[dataplane]
    /// data_room`. Must hold a frame of every port's `mtu` (plus [`DPDK_FRAME_OVERHEAD`]).
    pub data_room: usize,
    /// `cache_size`: per-worker mempool cache, at most [`MAX_DPDK_CACHE_SIZE`] and two thirds of `buffers`
    /// (DPDK's rule); default [`DEFAULT_DPDK_CACHE_SIZE`], lowered to two thirds of `buffers` for small pools.
    pub cache_size: u32,
}

impl Default for DpdkCfg {
    fn default() -> Self {
        DpdkCfg::defaults_for(&DataplaneCfg::default())
    }
}

impl DpdkCfg {
    /// The settings of a config without a `[dpdk]` section whose `[dataplane]` is `dataplane`: the pool is sized
    /// like wharf's own (`buffers`, `data_room`), everything else has its default.
    pub fn defaults_for(dataplane: &DataplaneCfg) -> DpdkCfg {
        let buffers = u32::try_from(dataplane.buffers).unwrap_or(u32::MAX);
        DpdkCfg {
            no_huge: false,
            memory_mb: DEFAULT_DPDK_MEMORY_MB,
            file_prefix: None,
            main_lcore_cpus: Vec::new(),
            vdevs: Vec::new(),
            pci: Vec::new(),
            log_level: DEFAULT_DPDK_LOG_LEVEL.into(),
            extra_args: Vec::new(),
            buffers,
            data_room: dataplane.data_room,
            cache_size: default_cache_size(buffers),
        }
    }

    /// The EAL configuration.
    #[cfg(feature = "dpdk")]
    pub fn eal_config(&self) -> EalConfig {
        EalConfig {
            main_lcore_cpus: self.main_lcore_cpus.clone(),
            no_huge: self.no_huge,
            memory_mb: self.memory_mb,
            file_prefix: self.file_prefix.clone().unwrap_or_default(),
            vdevs: self.vdevs.clone(),
            pci: self.pci.clone(),
            log_level: self.log_level.clone(),
            extra_args: self.extra_args.clone(),
        }
    }

    /// The mempool configuration.
    #[cfg(feature = "dpdk")]
    pub fn pool_config(&self) -> DpdkPoolConfig {
        DpdkPoolConfig {
            buffers: self.buffers,
            data_room: self.data_room,
            cache_size: self.cache_size,
        }
    }
}

/// The default `cache_size` for a pool of `buffers`.
fn default_cache_size(buffers: u32) -> u32 {
    DEFAULT_DPDK_CACHE_SIZE.min(buffers.saturating_mul(2) / 3)
}

/// The options of a `backend = "dpdk"` port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DpdkPortCfg {
    /// `device`: a vdev with its arguments (`net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`,
    /// `net_memif0,role=client,socket=/run/wharf/m0.sock`), a PCI address listed in `[dpdk] pci`, or the name of a
    /// vdev in `[dpdk] vdevs`. Relative pcap files are resolved (see the module docs), so this is the resolved
    /// string. One port per device.
    pub device: String,
    /// `rx_desc`: receive descriptors per queue, a power of two in [`DPDK_DESC_RANGE`] (default
    /// [`DEFAULT_DPDK_DESC`]; the driver may adjust it to its limits).
    pub rx_desc: u16,
    /// `tx_desc`: transmit descriptors per queue, like `rx_desc`.
    pub tx_desc: u16,
    /// `mtu`: the MTU to set, in [`DPDK_MTU_RANGE`]; `None`: the device's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// `promiscuous`: receive every frame whatever its destination MAC (default true).
    pub promiscuous: bool,
    /// `rss`: with several workers, spread flows over their queues by a symmetric RSS hash when the device
    /// hashes (default true).
    pub rss: bool,
}

impl DpdkPortCfg {
    /// The device's name: `device` up to its first comma (`net_pcap0`, `0000:03:00.0`).
    pub fn device_name(&self) -> &str {
        device_name(&self.device)
    }

    /// The port configuration for `queues` queues (one per worker).
    #[cfg(feature = "dpdk")]
    pub fn port_config(&self, queues: u16) -> DpdkPortConfig {
        DpdkPortConfig {
            device: self.device.clone(),
            queues,
            rx_desc: self.rx_desc,
            tx_desc: self.tx_desc,
            mtu: self.mtu,
            promiscuous: self.promiscuous,
            rss: self.rss,
        }
    }
}

impl Config {
    /// True when a port has the dpdk backend (the router then starts DPDK).
    pub fn uses_dpdk(&self) -> bool {
        self.ports
            .iter()
            .any(|p| matches!(p.backend, BackendCfg::Dpdk(_)))
    }

    /// `[dpdk]` as written, or its defaults for this `[dataplane]` ([`DpdkCfg::defaults_for`]).
    pub fn dpdk_or_default(&self) -> DpdkCfg {
        self.dpdk
            .clone()
            .unwrap_or_else(|| DpdkCfg::defaults_for(&self.dataplane))
    }
}

/// `[dpdk]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpdk {
    pub no_huge: Option<bool>,
    pub memory_mb: Option<i64>,
    pub file_prefix: Option<String>,
    pub main_lcore_cpus: Option<Vec<i64>>,
    pub vdevs: Option<Vec<String>>,
    pub pci: Option<Vec<String>>,
    pub log_level: Option<String>,
    pub extra_args: Option<Vec<String>>,
    pub buffers: Option<i64>,
    pub data_room: Option<i64>,
    pub cache_size: Option<i64>,
}

/// The options of the dpdk backend, as written in the file.
pub(super) const PORT_OPTIONS: [&str; 6] =
    ["device", "rx_desc", "tx_desc", "mtu", "promiscuous", "rss"];

fn device_name(device: &str) -> &str {
    device.split(',').next().unwrap_or("").trim()
}

/// Checks the dpdk options of port `i`; `tx_files` are the capture files written so far (by pcap ports and
/// `net_pcap` devices), by port index.
pub(super) fn check_port(
    ck: &mut Checker,
    i: usize,
    p: &RawPort,
    base: Option<&Path>,
    tx_files: &mut HashMap<PathBuf, usize>,
) -> Option<BackendCfg> {
    let at = |f: &str| format!("ports[{i}].{f}");
    if !DPDK_SUPPORT {
        ck.err(at("backend"), NO_DPDK_SUPPORT);
    }
    let device = match p.device.as_deref() {
        None => {
            ck.err(
                at("device"),
                format!(
                    "{REQUIRED} (a dpdk port needs its device: a vdev with arguments such as \
                     net_pcap0,rx_pcap=in.pcap, a PCI address listed in [dpdk] pci, or a vdev of [dpdk] vdevs)"
                ),
            );
            None
        }
        Some(d) => devargs(
            ck,
            &at("device"),
            d,
            base,
            &mut |ck, path| match tx_files.get(path) {
                Some(first) => {
                    ck.err(
                        at("device"),
                        format!(
                            "pcap file {:?} is already written by ports[{first}]",
                            path.display().to_string()
                        ),
                    );
                    false
                }
                None => {
                    tx_files.insert(path.to_path_buf(), i);
                    true
                }
            },
        ),
    };
    let rx_desc = desc(ck, &at("rx_desc"), "rx_desc", p.rx_desc);
    let tx_desc = desc(ck, &at("tx_desc"), "tx_desc", p.tx_desc);
    let mtu = match p.mtu {
        None => Some(None),
        Some(m) => ck
            .range::<u16>(&at("mtu"), "mtu", m, u16_range(&DPDK_MTU_RANGE))
            .map(Some),
    };
    Some(BackendCfg::Dpdk(DpdkPortCfg {
        device: device?,
        rx_desc: rx_desc?,
        tx_desc: tx_desc?,
        mtu: mtu?,
        promiscuous: p.promiscuous.unwrap_or(true),
        rss: p.rss.unwrap_or(true),
    }))
}

fn u16_range(r: &RangeInclusive<u16>) -> RangeInclusive<i64> {
    i64::from(*r.start())..=i64::from(*r.end())
}

/// A descriptor count: a power of two in [`DPDK_DESC_RANGE`], default [`DEFAULT_DPDK_DESC`].
fn desc(ck: &mut Checker, field: &str, name: &str, value: Option<i64>) -> Option<u16> {
    let Some(v) = value else {
        return Some(DEFAULT_DPDK_DESC);
    };
    match u16::try_from(v) {
        Ok(d) if DPDK_DESC_RANGE.contains(&d) && d.is_power_of_two() => Some(d),
        _ => {
            ck.err(
                field,
                format!(
                    "{name} must be a power of two in {}..={}, got {v}",
                    DPDK_DESC_RANGE.start(),
                    DPDK_DESC_RANGE.end()
                ),
            );
            None
        }
    }
}

/// Checks a device string (`name[,key=value...]`) at `field` and returns it with relative `net_pcap` files
/// resolved against `base`. `rx_pcap` files must exist; each `tx_pcap` file is handed to `claim_tx`, which
/// reports a file written twice and returns false.
fn devargs(
    ck: &mut Checker,
    field: &str,
    device: &str,
    base: Option<&Path>,
    claim_tx: &mut dyn FnMut(&mut Checker, &Path) -> bool,
) -> Option<String> {
    if device.trim().is_empty() {
        ck.err(
            field,
            "device is empty (name a vdev with its arguments, like net_pcap0,rx_pcap=in.pcap, or a PCI address)",
        );
        return None;
    }
    if device.contains('\0') {
        ck.err(field, format!("device {device:?} contains a NUL byte"));
        return None;
    }
    let mut parts = device.split(',');
    let name = parts.next().unwrap_or("");
    if name.trim().is_empty() {
        ck.err(
            field,
            format!("device {device:?} has no name before its arguments (like net_pcap0,rx_pcap=in.pcap)"),
        );
        return None;
    }
    if name.chars().any(char::is_whitespace) {
        ck.err(field, format!("device name {name:?} contains whitespace"));
        return None;
    }
    let mut ok = true;
    let mut out = vec![name.to_string()];
    let mut rx_files = Vec::new();
    for arg in parts {
        let Some((key @ ("rx_pcap" | "tx_pcap"), value)) = arg.split_once('=') else {
            out.push(arg.to_string());
            continue;
        };
        if value.is_empty() {
            ck.err(field, format!("{key} of device {name:?} is empty"));
            ok = false;
            continue;
        }
        let path = resolve(value, base);
        let shown = path.display().to_string();
        if key == "rx_pcap" {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    ck.err(
                        field,
                        format!("pcap file {shown:?} (rx_pcap) is a directory"),
                    );
                    ok = false;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ck.err(
                        field,
                        format!("pcap file {shown:?} (rx_pcap) does not exist"),
                    );
                    ok = false;
                }
                Err(e) => {
                    ck.err(
                        field,
                        format!("cannot read pcap file {shown:?} (rx_pcap): {e}"),
                    );
                    ok = false;
                }
            }
            rx_files.push(path.clone());
        } else if rx_files.contains(&path) {
            ck.err(
                field,
                format!("tx_pcap {shown:?} is also this device's rx_pcap (writing would destroy the input)"),
            );
            ok = false;
        } else {
            ok &= claim_tx(ck, &path);
        }
        out.push(format!("{key}={shown}"));
    }
    ok.then(|| out.join(","))
}

/// Why `addr` (a device name) is not a PCI address `[DDDD:]BB:DD.F`, or its full form `DDDD:BB:DD.F`.
fn pci_address(addr: &str) -> Result<String, String> {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = addr.split(':').collect();
    let (domain, bus, rest) = match parts.as_slice() {
        [d, b, r] => (*d, *b, *r),
        [b, r] => ("0000", *b, *r),
        _ => return Err(format!("{addr:?} is not a PCI address (like 0000:03:00.0)")),
    };
    let (dev, func) = rest.split_once('.').unwrap_or((rest, ""));
    let func_ok = func.len() == 1 && matches!(func.as_bytes()[0], b'0'..=b'7');
    if !(hex(domain, 4) && hex(bus, 2) && hex(dev, 2) && func_ok) {
        return Err(format!(
            "{addr:?} is not a PCI address (like 0000:03:00.0: domain, bus, device and function in hex)"
        ));
    }
    Ok(format!("{domain}:{bus}:{dev}.{func}").to_ascii_lowercase())
}

/// True for a device name that looks like a PCI address rather than a vdev (vdev names start with a driver
/// name such as `net_`).
fn looks_like_pci(name: &str) -> bool {
    name.contains(':')
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// EAL options wharf sets itself, and the `[dpdk]` field that sets each.
const MANAGED_OPTIONS: [(&str, &str); 15] = [
    ("-l", "main_lcore_cpus"),
    ("-c", "main_lcore_cpus"),
    ("--lcores", "main_lcore_cpus"),
    ("--main-lcore", "main_lcore_cpus"),
    ("--file-prefix", "file_prefix"),
    ("--no-huge", "no_huge"),
    ("--in-memory", "no_huge"),
    ("-m", "memory_mb"),
    ("--vdev", "vdevs"),
    ("-a", "pci"),
    ("--allow", "pci"),
    ("-w", "pci"),
    ("--pci-whitelist", "pci"),
    ("--no-pci", "pci"),
    ("--log-level", "log_level"),
];

/// The `[dpdk]` field that sets EAL argument `arg`, when wharf sets it itself.
fn managed(arg: &str) -> Option<(&'static str, &'static str)> {
    MANAGED_OPTIONS.into_iter().find(|(opt, _)| {
        if opt.starts_with("--") {
            arg == *opt || arg.strip_prefix(opt).is_some_and(|r| r.starts_with('='))
        } else {
            !arg.starts_with("--") && arg.starts_with(opt)
        }
    })
}

/// Why `level` is not an EAL `--log-level` (`LEVEL` or `PATTERN:LEVEL`), if it is not.
fn bad_log_level(level: &str) -> Option<String> {
    const LEVELS: [&str; 8] = [
        "emergency",
        "alert",
        "critical",
        "error",
        "warning",
        "notice",
        "info",
        "debug",
    ];
    if level.is_empty() {
        return None;
    }
    let (pattern, lvl) = match level.rsplit_once([':', ',']) {
        Some((p, l)) => (Some(p), l),
        None => (None, level),
    };
    let lvl_ok = LEVELS.contains(&lvl) || lvl.parse::<u8>().is_ok_and(|n| (1..=8).contains(&n));
    if pattern.is_some_and(str::is_empty) || level.chars().any(char::is_whitespace) || !lvl_ok {
        return Some(format!(
            "log_level {level:?} is not an EAL log level: LEVEL or PATTERN:LEVEL, LEVEL one of {} or 1..=8",
            LEVELS.join(", ")
        ));
    }
    None
}

/// Number of workers `[dataplane]` asks for; 1 when it is invalid (reported there).
fn workers_of(raw: &RawConfig) -> usize {
    let Some(d) = &raw.dataplane else {
        return 1;
    };
    match (&d.cores, d.workers) {
        (Some(c), _) if !c.is_empty() && c.len() <= MAX_WORKERS => c.len(),
        (None, Some(n)) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_WORKERS).contains(n))
            .unwrap_or(1),
        _ => 1,
    }
}

/// Checks `[dpdk]` and what involves several dpdk ports or the section (device names, PCI allow list, pool size
/// against the rings and MTUs). `Some(None)` when there is no `[dpdk]` section; `None` when there are problems.
pub(super) fn check(
    ck: &mut Checker,
    raw: &RawConfig,
    base: Option<&Path>,
) -> Option<Option<DpdkCfg>> {
    let before = ck.problems.len();
    if raw.dpdk.is_some() && !DPDK_SUPPORT {
        ck.err("dpdk", NO_DPDK_SUPPORT);
    }
    let absent = RawDpdk::default();
    let d = raw.dpdk.as_ref().unwrap_or(&absent);
    // Defaults from [dataplane] when its values are valid (otherwise reported there).
    let dataplane = raw.dataplane.as_ref();
    let dp_buffers = dataplane
        .and_then(|dp| dp.buffers)
        .filter(|b| usize_range(&(MIN_BUFFERS..=MAX_BUFFERS)).contains(b))
        .map_or(DEFAULT_BUFFERS as i64, |b| b);
    let dp_data_room = dataplane
        .and_then(|dp| dp.data_room)
        .filter(|r| usize_range(&DATA_ROOM_RANGE).contains(r))
        .map_or(DEFAULT_DATA_ROOM as i64, |r| r);

    let no_huge = d.no_huge.unwrap_or(false);
    let memory_mb = ck.range_or(
        "dpdk.memory_mb",
        "memory_mb",
        d.memory_mb,
        0..=i64::from(MAX_DPDK_MEMORY_MB),
        DEFAULT_DPDK_MEMORY_MB,
    );
    let memory_mb = match memory_mb {
        Some(m) if no_huge && m < MIN_NO_HUGE_MEMORY_MB => {
            ck.err(
                "dpdk.memory_mb",
                format!(
                    "memory_mb must be at least {MIN_NO_HUGE_MEMORY_MB} without hugepages (no_huge = true), got {m} \
                     ({DEFAULT_DPDK_MEMORY_MB} is a good start)"
                ),
            );
            None
        }
        m => m,
    };
    let file_prefix = match d.file_prefix.as_deref() {
        None => Some(None),
        Some(p)
            if !p.is_empty()
                && p.len() <= MAX_FILE_PREFIX
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            Some(Some(p.to_string()))
        }
        Some(p) => {
            ck.err(
                "dpdk.file_prefix",
                format!("file_prefix {p:?} must be 1 to {MAX_FILE_PREFIX} letters, digits, '-', '_' or '.'"),
            );
            None
        }
    };
    let mut ok = true;
    let mut cpus = Vec::new();
    for (i, &c) in d.main_lcore_cpus.iter().flatten().enumerate() {
        let field = format!("dpdk.main_lcore_cpus[{i}]");
        match ck.range::<usize>(&field, "a CPU id", c, usize_range(&(0..=MAX_CORE))) {
            Some(c) if cpus.contains(&c) => {
                ck.err(&field, format!("CPU {c} is listed twice"));
                ok = false;
            }
            Some(c) => cpus.push(c),
            None => ok = false,
        }
    }
    // vdevs: device strings, names unique; tx files unique among them.
    let mut vdevs = Vec::new();
    let mut vdev_names: HashMap<String, usize> = HashMap::new();
    let mut vdev_tx: HashMap<PathBuf, usize> = HashMap::new();
    for (i, v) in d.vdevs.iter().flatten().enumerate() {
        let field = format!("dpdk.vdevs[{i}]");
        let claimed = devargs(
            ck,
            &field,
            v,
            base,
            &mut |ck, path| match vdev_tx.get(path) {
                Some(first) => {
                    ck.err(
                        &field,
                        format!(
                            "pcap file {:?} is already written by dpdk.vdevs[{first}]",
                            path.display().to_string()
                        ),
                    );
                    false
                }
                None => {
                    vdev_tx.insert(path.to_path_buf(), i);
                    true
                }
            },
        );
        let Some(v) = claimed else {
            ok = false;
            continue;
        };
        let name = device_name(&v).to_string();
        if let Some(first) = vdev_names.get(&name) {
            ck.err(
                &field,
                format!("vdev {name:?} is already listed as dpdk.vdevs[{first}]"),
            );
            ok = false;
        } else if looks_like_pci(&name) {
            ck.err(
                &field,
                format!("{name:?} is a PCI address, not a vdev: list it in pci"),
            );
            ok = false;
        } else {
            vdev_names.insert(name, i);
        }
        vdevs.push(v);
    }
    let mut pci = Vec::new();
    let mut pci_addrs: HashMap<String, usize> = HashMap::new();
    for (i, entry) in d.pci.iter().flatten().enumerate() {
        let field = format!("dpdk.pci[{i}]");
        match pci_address(device_name(entry)) {
            Err(why) => {
                ck.err(&field, why);
                ok = false;
            }
            Ok(full) => {
                if let Some(first) = pci_addrs.get(&full) {
                    ck.err(
                        &field,
                        format!("PCI device {full} is already listed as dpdk.pci[{first}]"),
                    );
                    ok = false;
                } else {
                    pci_addrs.insert(full, i);
                }
                pci.push(entry.clone());
            }
        }
    }
    let log_level = match d.log_level.as_deref() {
        None => Some(DEFAULT_DPDK_LOG_LEVEL.to_string()),
        Some(l) => match bad_log_level(l) {
            Some(why) => {
                ck.err("dpdk.log_level", why);
                None
            }
            None => Some(l.to_string()),
        },
    };
    for (i, a) in d.extra_args.iter().flatten().enumerate() {
        let field = format!("dpdk.extra_args[{i}]");
        if a.is_empty() {
            ck.err(&field, "an EAL argument is empty");
            ok = false;
        } else if a.contains('\0') {
            ck.err(&field, format!("EAL argument {a:?} contains a NUL byte"));
            ok = false;
        } else if let Some((opt, instead)) = managed(a) {
            ck.err(
                &field,
                format!("EAL option {opt} is set by wharf: use `{instead}` in [dpdk] instead"),
            );
            ok = false;
        }
    }
    let buffers = ck.range::<u32>(
        "dpdk.buffers",
        "buffers",
        d.buffers.unwrap_or(dp_buffers),
        usize_range(&(MIN_BUFFERS..=MAX_BUFFERS)),
    );
    let data_room = ck.range::<usize>(
        "dpdk.data_room",
        "data_room",
        d.data_room.unwrap_or(dp_data_room),
        usize_range(&DPDK_DATA_ROOM_RANGE),
    );
    let cache_size = match (d.cache_size, buffers) {
        (None, Some(b)) => Some(default_cache_size(b)),
        (None, None) => None,
        (Some(c), b) => match ck.range::<u32>(
            "dpdk.cache_size",
            "cache_size",
            c,
            0..=i64::from(MAX_DPDK_CACHE_SIZE),
        ) {
            Some(c) if b.is_some_and(|b| u64::from(c) * 3 > u64::from(b) * 2) => {
                let b = b.unwrap_or_default();
                ck.err(
                    "dpdk.cache_size",
                    format!(
                        "cache_size {c} is more than buffers / 1.5 ({}), which DPDK refuses: lower cache_size or \
                         raise buffers ({b})",
                        u64::from(b) * 2 / 3
                    ),
                );
                None
            }
            c => c,
        },
    };
    check_dpdk_ports(
        ck,
        raw,
        &vdev_names,
        &pci_addrs,
        data_room,
        buffers.zip(cache_size),
    );
    if ck.problems.len() > before || !ok {
        return None;
    }
    if raw.dpdk.is_none() {
        return Some(None);
    }
    Some(Some(DpdkCfg {
        no_huge,
        memory_mb: memory_mb?,
        file_prefix: file_prefix?,
        main_lcore_cpus: cpus,
        vdevs,
        pci,
        log_level: log_level?,
        extra_args: d.extra_args.clone().unwrap_or_default(),
        buffers: buffers?,
        data_room: data_room?,
        cache_size: cache_size?,
    }))
}

/// The checks of dpdk ports that involve other ports or `[dpdk]`: one port per device, a device given with
/// arguments in one place only, PCI devices on the allow list, frames of the MTU fit the data room, and the pool
/// covers the rings and caches.
fn check_dpdk_ports(
    ck: &mut Checker,
    raw: &RawConfig,
    vdev_names: &HashMap<String, usize>,
    pci_addrs: &HashMap<String, usize>,
    data_room: Option<usize>,
    pool: Option<(u32, u32)>,
) {
    let workers = workers_of(raw);
    let mut devices: HashMap<String, usize> = HashMap::new();
    // Buffers the rings can hold, when every dpdk port's descriptor counts are valid.
    let mut ring_buffers = Some(0u64);
    let mut ports = 0;
    for (i, p) in raw.ports.iter().enumerate() {
        if p.backend.as_deref() != Some("dpdk") {
            continue;
        }
        ports += 1;
        let valid_desc = |v: Option<i64>| match v {
            None => Some(u64::from(DEFAULT_DPDK_DESC)),
            Some(d) => u16::try_from(d)
                .ok()
                .filter(|d| DPDK_DESC_RANGE.contains(d) && d.is_power_of_two())
                .map(u64::from),
        };
        ring_buffers = ring_buffers
            .zip(valid_desc(p.rx_desc).zip(valid_desc(p.tx_desc)))
            .map(|(sum, (rx, tx))| sum + workers as u64 * (rx + tx));
        if let (Some(mtu), Some(room)) = (p.mtu, data_room) {
            let frame = usize::try_from(mtu)
                .unwrap_or(usize::MAX)
                .saturating_add(DPDK_FRAME_OVERHEAD);
            if DPDK_MTU_RANGE.contains(&u16::try_from(mtu).unwrap_or(0)) && frame > room {
                ck.err(
                    format!("ports[{i}].mtu"),
                    format!(
                        "mtu {mtu} needs frames of {frame} bytes (the MTU, an Ethernet header and a VLAN tag), more \
                         than the DPDK pool's data_room of {room}: raise data_room in [dpdk]"
                    ),
                );
            }
        }
        let Some(device) = p.device.as_deref() else {
            continue;
        };
        let name = device_name(device);
        if name.is_empty() {
            continue;
        }
        let field = format!("ports[{i}].device");
        if looks_like_pci(name) {
            match pci_address(name) {
                Err(why) => ck.err(&field, why),
                Ok(full) => {
                    if !pci_addrs.contains_key(&full) {
                        ck.err(
                            &field,
                            format!(
                                "PCI device {full} is not in [dpdk] pci (the EAL uses only the PCI devices listed \
                                 there: add it)"
                            ),
                        );
                    }
                    if let Some(first) = devices.insert(full.clone(), i) {
                        ck.err(
                            &field,
                            format!("DPDK device {full} is already used by ports[{first}]"),
                        );
                    }
                }
            }
            continue;
        }
        if let Some(v) = vdev_names.get(name).filter(|_| device.contains(',')) {
            ck.err(
                &field,
                format!(
                    "vdev {name:?} is also started by dpdk.vdevs[{v}] with its own arguments: give the arguments in \
                     one place (here, or there and name it here as {name:?})"
                ),
            );
        }
        if let Some(first) = devices.insert(name.to_string(), i) {
            ck.err(
                &field,
                format!("DPDK device {name:?} is already used by ports[{first}]"),
            );
        }
    }
    let (Some(rings), Some((buffers, cache))) = (ring_buffers, pool) else {
        return;
    };
    let need = rings + workers as u64 * u64::from(cache);
    if ports > 0 && u64::from(buffers) < need {
        let written_in_dataplane = raw.dataplane.as_ref().is_some_and(|d| d.buffers.is_some());
        let field = match &raw.dpdk {
            Some(d) if d.buffers.is_some() => "dpdk.buffers",
            _ if written_in_dataplane => "dataplane.buffers",
            Some(_) => "dpdk",
            None => "dpdk.buffers",
        };
        let w = if workers == 1 { "worker" } else { "workers" };
        ck.err(
            field,
            format!(
                "the DPDK pool's {buffers} buffers cannot fill the dpdk ports' rings: {rings} descriptors \
                 ({ports} port(s) × {workers} queue(s) × (rx_desc + tx_desc)) plus {workers} {w} × cache_size \
                 {cache} = {need}; set buffers in [dpdk] to at least {need} (twice that leaves room for packets in \
                 flight), or lower rx_desc/tx_desc"
            ),
        );
    }
}

/// `[dpdk]` as it would be written.
pub(super) fn section_to_raw(d: &DpdkCfg) -> RawDpdk {
    let num = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    RawDpdk {
        no_huge: Some(d.no_huge),
        memory_mb: Some(i64::from(d.memory_mb)),
        file_prefix: d.file_prefix.clone(),
        main_lcore_cpus: (!d.main_lcore_cpus.is_empty())
            .then(|| d.main_lcore_cpus.iter().map(|&c| num(c)).collect()),
        vdevs: list(&d.vdevs),
        pci: list(&d.pci),
        log_level: Some(d.log_level.clone()),
        extra_args: list(&d.extra_args),
        buffers: Some(i64::from(d.buffers)),
        data_room: Some(num(d.data_room)),
        cache_size: Some(i64::from(d.cache_size)),
    }
}

/// A dpdk port's options as they would be written.
pub(super) fn port_to_raw(p: &DpdkPortCfg, r: &mut RawPort) {
    r.device = Some(p.device.clone());
    r.rx_desc = Some(i64::from(p.rx_desc));
    r.tx_desc = Some(i64::from(p.tx_desc));
    r.mtu = p.mtu.map(i64::from);
    r.promiscuous = Some(p.promiscuous);
    r.rss = Some(p.rss);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert_eq!(pci_address("0000:03:00.0").unwrap(), "0000:03:00.0");
        assert_eq!(pci_address("03:00.1").unwrap(), "0000:03:00.1");
        assert_eq!(pci_address("0000:AF:00.7").unwrap(), "0000:af:00.7");
        for bad in [
            "03:00",
            "0000:03:00.8",
            "3:00.0",
            "net_pcap0",
            "0000:03:00:00.0",
        ] {
            assert!(pci_address(bad).is_err(), "{bad}");
        }
        assert!(looks_like_pci("0000:03:00.0") && looks_like_pci("03:00.0"));
        assert!(!looks_like_pci("net_pcap0") && !looks_like_pci("net_memif0"));
    }

    #[test]
    fn managed_eal_options() {
        assert_eq!(managed("--vdev"), Some(("--vdev", "vdevs")));
        assert_eq!(managed("--vdev=net_null0"), Some(("--vdev", "vdevs")));
        assert_eq!(managed("-m512"), Some(("-m", "memory_mb")));
        assert_eq!(managed("-l"), Some(("-l", "main_lcore_cpus")));
        assert_eq!(managed("--legacy-mem"), None);
        assert_eq!(managed("--vdevx"), None);
        assert_eq!(managed("--iova-mode=va"), None);
    }

    #[test]
    fn log_levels() {
        for good in [
            "notice",
            "debug",
            "lib.eal:debug",
            "pmd.net.*,info",
            "8",
            "",
        ] {
            assert_eq!(bad_log_level(good), None, "{good}");
        }
        for bad in ["loud", "lib.eal:", ":debug", "9", "notice debug"] {
            assert!(bad_log_level(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn default_cache_follows_small_pools() {
        assert_eq!(default_cache_size(16384), 256);
        assert_eq!(default_cache_size(300), 200);
        assert_eq!(DpdkCfg::default().buffers as usize, DEFAULT_BUFFERS);
    }
}
