//! The configuration model: what a `wharf.toml` says, parsed, checked and typed.
//!
//! A file has these parts, all optional:
//!
//! ```toml
//! [dataplane]          # buffers, burst size, workers and how they idle      -> DataplaneCfg
//! [control]            # the control socket                                  -> ControlCfg
//! [dpdk]               # the DPDK EAL and mempool, for dpdk ports            -> DpdkCfg
//! [router]             # L3 settings: MTU, ICMP rate, neighbour timers,      -> RouterCfg
//!                      #   the host stack's TCP echo port
//! [[ports]]            # one per packet port: ring, pcap, afpacket or dpdk;
//!                      #   `addresses` makes it a routed port                  -> PortCfg
//! [[networks]]         # a network mode joining ports: xconnect, bridge (its gateway: `addresses`),
//!                      #   macvlan, ipvlan (l2, l3), point-to-point           -> NetworkCfg
//! [[routes]]           # static routes: prefix, via (several: ECMP), type      -> RouteCfg
//! [[endpoints]]        # the hosts cabled to the ports (what `wharf lab` builds) -> EndpointCfg
//! [[links]]            # veth cables between two afpacket ports, for the lab   -> LinkCfg
//! ```
//!
//! `configs/*.toml` in the repository are commented examples of every field.
//!
//! [`parse`] and [`load`] return a [`Config`] only when the whole file is valid; otherwise a [`ConfigError`]
//! lists every problem found, one per line, as `FILE:LINE:COL: FIELD: REASON`, the position being that of the
//! offending value (or of the enclosing table's header when the value is missing):
//!
//! ```text
//! configs/x.toml:12:11: ports[1].backend: unknown backend "afpackt" (expected one of: ring, pcap, afpacket, dpdk)
//! configs/x.toml:20:14: networks[0].ports[1]: no port named "c" (ports are: a, b)
//! ```
//!
//! Parsing happens in three steps: serde (with `deny_unknown_fields`) reads the text into a loose mirror of the
//! file, which catches syntax errors, wrong types and unknown fields (the first one only, serde stops there);
//! then every semantic rule is checked at once and the typed model is built; last, each problem's field path
//! (`ports[1].interface`) is looked up in a `toml_edit` parse of the same text to find its line and column.

mod check;
mod dpdk;
mod error;
mod locate;
mod nat;
mod overlay;
mod raw;
mod routing;
mod values;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub(crate) use check::pool_spec;
pub use dpdk::{
    DpdkCfg, DpdkPortCfg, DEFAULT_DPDK_CACHE_SIZE, DEFAULT_DPDK_DESC, DEFAULT_DPDK_LOG_LEVEL,
    DEFAULT_DPDK_MEMORY_MB, DPDK_DATA_ROOM_RANGE, DPDK_DESC_RANGE, DPDK_FRAME_OVERHEAD,
    DPDK_MTU_RANGE, DPDK_SUPPORT, MAX_DPDK_CACHE_SIZE, MAX_DPDK_MEMORY_MB, MIN_NO_HUGE_MEMORY_MB,
    NO_DPDK_SUPPORT,
};
pub use error::{ConfigError, Diagnostic};
pub use nat::*;
pub use overlay::*;
pub use routing::*;
pub use values::{IpCidr, Ipv4Cidr, Ipv6Cidr, MacAddr, ParseCidrError, ParseMacError};

/// The default topology of `wharf lab`: endpoints `a`, `b`, `c` (10.77.0.1-3/24), each cabled to an AF_PACKET
/// port of the same name, and one bridge network `br0` joining them. One unpinned worker that idles
/// adaptively. The same text as `configs/lab-default.toml`.
pub const DEFAULT_LAB_CONFIG: &str = include_str!("../../configs/lab-default.toml");

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/wharf/wharf.sock";

/// Default packet pool size, in buffers.
pub const DEFAULT_BUFFERS: usize = 16384;
/// Smallest accepted packet pool.
pub const MIN_BUFFERS: usize = 256;
/// Largest accepted packet pool (16 Mi buffers).
pub const MAX_BUFFERS: usize = 1 << 24;
/// Default data room per buffer, in bytes (after the headroom).
pub const DEFAULT_DATA_ROOM: usize = 2048;
/// Accepted data room per buffer: a full 1518-byte Ethernet frame up to 9216-byte jumbo frames.
pub const DATA_ROOM_RANGE: std::ops::RangeInclusive<usize> = 1518..=9216;
/// Default burst (vector) size.
pub const DEFAULT_BURST_SIZE: usize = 32;
/// Accepted burst sizes.
pub const BURST_SIZE_RANGE: std::ops::RangeInclusive<usize> = 1..=256;
/// Most workers (listed cores or `workers = N`) one dataplane runs.
pub const MAX_WORKERS: usize = 256;
/// Highest core id accepted in `cores` (the size of the kernel's default CPU set, minus one).
pub const MAX_CORE: usize = 1023;
/// Default longest back-off sleep of an idle worker, in microseconds.
pub const DEFAULT_IDLE_SLEEP_US: u32 = 50;
/// Accepted `idle_sleep_us`.
pub const IDLE_SLEEP_US_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;
/// Default number of empty polls before an idle worker starts sleeping.
pub const DEFAULT_IDLE_AFTER_POLLS: u32 = 1024;
/// Default `aging_s` of a bridge.
pub const DEFAULT_AGING_S: u32 = 300;
/// Range of `aging_s` (0: never age).
pub const AGING_RANGE: std::ops::RangeInclusive<u32> = 0..=1_000_000;
/// Default `mac_limit` of a bridge.
pub const DEFAULT_MAC_LIMIT: usize = 65536;
/// Range of `mac_limit`.
pub const MAC_LIMIT_RANGE: std::ops::RangeInclusive<usize> = 1..=(1 << 20);
/// Default `max_macs` of a macvlan uplink.
pub const DEFAULT_MAX_MACS: usize = 512;
/// Range of `max_macs`.
pub const MAX_MACS_RANGE: std::ops::RangeInclusive<usize> = 1..=65536;
/// Range of VLAN ids.
pub const VLAN_RANGE: std::ops::RangeInclusive<u16> = 1..=4094;

/// `[[links]]`: a veth cable the lab lays between two afpacket ports of the router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkCfg {
    /// `ports`: the two ports.
    pub ports: [String; 2],
}

/// The MAC of an endpoint that has none configured: locally administered, unicast, and derived from the
/// network and endpoint names, so it is the same on every start (the lab and the macvlan table agree on it).
pub fn endpoint_mac(network: &str, endpoint: &str) -> MacAddr {
    // FNV-1a: stable across Rust releases, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in network.bytes().chain([0]).chain(endpoint.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let v = h.to_be_bytes();
    MacAddr([0x02, v[1], v[2], v[3], v[4], v[5]])
}

impl EndpointCfg {
    /// The endpoint's MAC: configured, or [`endpoint_mac`].
    pub fn effective_mac(&self) -> MacAddr {
        self.mac
            .unwrap_or_else(|| endpoint_mac(&self.network, &self.name))
    }
}
/// Accepted ring port depths (powers of two only).
pub const RING_DEPTH_RANGE: std::ops::RangeInclusive<usize> = 16..=(1 << 20);
/// Longest port and network name.
pub const MAX_PORT_NAME: usize = 15;
/// Longest endpoint name (short enough to derive interface names from it).
pub const MAX_ENDPOINT_NAME: usize = 10;
/// Longest Linux interface name (`IFNAMSIZ` - 1).
pub const MAX_IFNAME: usize = 15;

/// A whole, valid configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Config {
    /// `[dataplane]`: buffers, bursts, workers.
    pub dataplane: DataplaneCfg,
    /// `[control]`: the control socket.
    pub control: ControlCfg,
    /// `[dpdk]`, when written (see [`Config::dpdk_or_default`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpdk: Option<DpdkCfg>,
    /// `[[ports]]`, in file order; a port's index here is its port id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortCfg>,
    /// `[[networks]]`, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkCfg>,
    /// `[[endpoints]]`, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointCfg>,
    /// `[router]`: L3 settings.
    pub router: RouterCfg,
    /// `[[routes]]`: static routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteCfg>,
    /// `[[links]]`: afpacket ports that `wharf lab` cables to each other (e.g. a trunk between two bridges).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkCfg>,
    /// `[nat]` (with every endpoint's `publish`), when written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatCfg>,
    /// `[[services]]`: load-balanced published ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceCfg>,
}

/// `[dataplane]`: the packet pool, burst size and poll-mode workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataplaneCfg {
    /// Packet pool size in buffers; `buffers`, default [`DEFAULT_BUFFERS`], at least [`MIN_BUFFERS`].
    pub buffers: usize,
    /// Bytes per buffer after the headroom; `data_room`, default [`DEFAULT_DATA_ROOM`], in [`DATA_ROOM_RANGE`].
    pub data_room: usize,
    /// Packets per burst; `burst_size`, default [`DEFAULT_BURST_SIZE`], in [`BURST_SIZE_RANGE`].
    pub burst_size: usize,
    /// `cores`: one worker per listed core, pinned to it. Exclusive with `workers`. Use [`Config::workers`]
    /// rather than reading this and `workers` directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<Vec<usize>>,
    /// `workers`: this many unpinned workers. Exclusive with `cores`; when neither is set, one unpinned worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// `idle`: what a worker does when its ports are empty; default [`IdleMode::Adaptive`].
    pub idle: IdleMode,
    /// `idle_sleep_us`: longest back-off sleep in microseconds (adaptive only); default
    /// [`DEFAULT_IDLE_SLEEP_US`], in [`IDLE_SLEEP_US_RANGE`].
    pub idle_sleep_us: u32,
    /// `idle_after_polls`: empty polls before backing off (adaptive only); default
    /// [`DEFAULT_IDLE_AFTER_POLLS`], at least 1.
    pub idle_after_polls: u32,
}

impl Default for DataplaneCfg {
    fn default() -> Self {
        DataplaneCfg {
            buffers: DEFAULT_BUFFERS,
            data_room: DEFAULT_DATA_ROOM,
            burst_size: DEFAULT_BURST_SIZE,
            cores: None,
            workers: None,
            idle: IdleMode::Adaptive,
            idle_sleep_us: DEFAULT_IDLE_SLEEP_US,
            idle_after_polls: DEFAULT_IDLE_AFTER_POLLS,
        }
    }
}

/// How an idle worker waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleMode {
    /// `"adaptive"`: after `idle_after_polls` empty polls, sleep, doubling up to `idle_sleep_us`.
    #[default]
    Adaptive,
    /// `"poll"`: busy-poll forever (lowest latency, burns the core; for benchmarks).
    Poll,
}

impl IdleMode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [IdleMode; 2] = [IdleMode::Adaptive, IdleMode::Poll];

    /// The name used in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdleMode::Adaptive => "adaptive",
            IdleMode::Poll => "poll",
        }
    }
}

impl std::fmt::Display for IdleMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[control]`: the control plane's own settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlCfg {
    /// `socket`: path of the control socket (Unix stream socket); default [`DEFAULT_SOCKET`]. Used as written
    /// (a relative path is relative to the daemon's working directory).
    pub socket: PathBuf,
    /// `state_dir`: where state that must outlive the process is kept (IPAM leases under `ipam/`); `None`
    /// keeps it in memory (addresses are then stable only as long as the process runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

impl Default for ControlCfg {
    fn default() -> Self {
        ControlCfg {
            state_dir: None,
            socket: PathBuf::from(DEFAULT_SOCKET),
        }
    }
}

/// `[[ports]]`: one packet port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortCfg {
    /// `name`: unique among ports, `[a-z0-9_-]`, 1..=[`MAX_PORT_NAME`] characters.
    pub name: String,
    /// `backend` and its options (written beside `name` in the same table).
    #[serde(flatten)]
    pub backend: BackendCfg,
    /// `addresses`: the router's IPv4/IPv6 addresses on this port, which makes it a routed port (it is then in
    /// no network).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpCidr>,
}

/// A port's backend and its options. Options left out are `None`; the dataplane picks its own defaults (dpdk
/// ports excepted: [`DpdkPortCfg`] has its defaults filled in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum BackendCfg {
    /// `backend = "ring"`: an in-memory queue pair with another ring port (tests and benchmarks).
    Ring {
        /// `peer`: the far end. Another ring port of the config that names this one back (cabled inside the
        /// router), or any other name: an external end handed to the embedding program (generator, tests).
        peer: String,
        /// `depth`: packets per queue, a power of two in [`RING_DEPTH_RANGE`].
        #[serde(skip_serializing_if = "Option::is_none")]
        depth: Option<usize>,
        /// `peer_queues`: queues of an external far end, in `1..=`[`MAX_WORKERS`] (default: as many as this
        /// end, one per worker). With 1, the far end (a tester) receives everything on one queue and what
        /// this end transmits is not hashed to pick a queue. Not for a peer cabled inside the router.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer_queues: Option<u16>,
    },
    /// `backend = "pcap"`: reads frames from a capture file and/or writes them to one.
    Pcap {
        /// `rx`: capture file to read (must exist); relative paths are resolved against the config file's
        /// directory when parsing, so this is the resolved path.
        #[serde(skip_serializing_if = "Option::is_none")]
        rx: Option<PathBuf>,
        /// `tx`: capture file to write, resolved like `rx`. At least one of `rx`, `tx` is set.
        #[serde(skip_serializing_if = "Option::is_none")]
        tx: Option<PathBuf>,
        /// `replay`: how many times `rx` is played, at least 1 (default 1); `u32::MAX` (4294967295) loops until
        /// the port is closed. Only with `rx`.
        #[serde(skip_serializing_if = "Option::is_none")]
        replay: Option<u32>,
    },
    /// `backend = "afpacket"`: a Linux interface through an AF_PACKET TPACKET_V3 socket.
    #[serde(rename = "afpacket")]
    AfPacket {
        /// `interface`: the Linux interface name (1..=15 bytes, no `/`, `:` or whitespace, not `.` or `..`).
        interface: String,
        /// `block_size`: ring block size in bytes, a power of two and a multiple of the page size.
        #[serde(skip_serializing_if = "Option::is_none")]
        block_size: Option<usize>,
        /// `block_count`: number of ring blocks, 1..=65536.
        #[serde(skip_serializing_if = "Option::is_none")]
        block_count: Option<usize>,
        /// `frame_size`: ring frame size in bytes, a multiple of 16, at least 128 and at most the block size.
        #[serde(skip_serializing_if = "Option::is_none")]
        frame_size: Option<usize>,
        /// `promiscuous`: put the interface in promiscuous mode.
        #[serde(skip_serializing_if = "Option::is_none")]
        promiscuous: Option<bool>,
    },
    /// `backend = "dpdk"`: a DPDK ethdev (a NIC or a virtual device); needs the `dpdk` cargo feature to run.
    Dpdk(DpdkPortCfg),
}

impl BackendCfg {
    /// Every backend name, in the order the documentation lists them.
    pub const NAMES: [&'static str; 4] = ["ring", "pcap", "afpacket", "dpdk"];

    /// The backend's name as written in `backend = "..."`.
    pub const fn kind(&self) -> &'static str {
        match self {
            BackendCfg::Ring { .. } => "ring",
            BackendCfg::Pcap { .. } => "pcap",
            BackendCfg::AfPacket { .. } => "afpacket",
            BackendCfg::Dpdk(_) => "dpdk",
        }
    }
}

/// `[[networks]]`: a network of one mode joining some ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkCfg {
    /// `name`: unique among networks, `[a-z0-9_-]`, 1..=[`MAX_PORT_NAME`] characters.
    pub name: String,
    /// `mode`: the pipeline this network runs.
    pub mode: NetworkMode,
    /// `ports`: names of the member ports; each port is in at most one network. For xconnect, exactly two.
    pub ports: Vec<String>,
    /// `[[networks.rewrite]]`: MAC rewrites on frames leaving through one of the ports (xconnect only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<RewriteCfg>,
    /// Bridge options (`mode = "bridge"` only).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeCfg>,
    /// Macvlan options (`mode = "macvlan"` only).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub macvlan: Option<MacvlanCfg>,
    /// `[networks.ipam]`: the pool endpoints without an `address` get theirs from. A bridge with an IPv4
    /// gateway address has one implicitly (its subnet, the gateway reserved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamCfg>,
    /// Ipvlan options (`mode = "ipvlan"` only).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub ipvlan: Option<IpvlanCfg>,
    /// `addresses`: the router's addresses on this network, i.e. the gateway of a bridge (bridge only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpCidr>,
    /// `[networks.vxlan]`: the VXLAN side of an `overlay` network (which also has `bridge` options).
    #[serde(rename = "vxlan", skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayCfg>,
}

/// Options of a `bridge` network: one bridge domain. `ports` are its access ports (untagged frames);
/// `trunk_ports` carry it tagged with `vlan`. A port can be a trunk of several bridges with distinct VLANs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BridgeCfg {
    /// `vlan`: the VLAN id (1..=4094) of this domain on its trunk ports; required with `trunk_ports`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// `trunk_ports`: ports that carry this domain tagged with `vlan`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trunk_ports: Vec<String>,
    /// `aging_s`: seconds a learned MAC lives without being seen (default 300; 0: never ages).
    pub aging_s: u32,
    /// `mac_limit`: most MACs learned in the domain (default 65536); past it new MACs are not learned.
    pub mac_limit: usize,
    /// `flood_unknown_unicast`: flood frames to unknown MACs (default true); off, they are dropped.
    pub flood_unknown_unicast: bool,
    /// `gateway_mac`: the router's MAC on this domain; frames to it go to the local path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_mac: Option<MacAddr>,
    /// `[[networks.static_macs]]`: MACs pinned to a member port; never learned elsewhere, never aged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_macs: Vec<StaticMacCfg>,
}

/// A static MAC entry of a bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaticMacCfg {
    /// `mac`: unicast MAC.
    pub mac: MacAddr,
    /// `port`: a member port (access or trunk) of the bridge.
    pub port: String,
}

/// Options of a `macvlan` network: its endpoints (`ports`) get their own MACs on `uplink`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MacvlanCfg {
    /// `uplink`: the port to the physical LAN.
    pub uplink: String,
    /// `vlan`: 802.1Q sub-interface on the uplink (frames tagged with it); none: untagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// `max_macs`: most endpoint MACs on the uplink over all its macvlan networks (default 512, the NIC
    /// unicast filter ceiling the seeds mention).
    pub max_macs: usize,
    /// `allow_host`: let endpoints and the host (the uplink's own MAC) reach each other (default false: isolated,
    /// as Linux macvlan does).
    pub allow_host: bool,
}

/// A network mode (see DESIGN.md). Every mode parses; the ones [`NetworkMode::is_implemented`] does not name
/// are rejected by validation with "mode `...` is not implemented yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// `"xconnect"`: a patch cable between exactly two ports; every frame in one goes out the other.
    Xconnect,
    /// `"bridge"`: L2 learning switch with gateway, masquerade and port mappings.
    Bridge,
    /// `"overlay"`: a bridge domain stretched over hosts by VXLAN.
    Overlay,
    /// `"macvlan"`: endpoints with their own MACs on the uplink.
    Macvlan,
    /// `"ipvlan"`: endpoints sharing the uplink's MAC, demuxed by IP.
    Ipvlan,
    /// `"point-to-point"`: one endpoint per link, /32 addressing.
    PointToPoint,
    /// `"routed"`: every endpoint a routed /32 (direct routing).
    Routed,
    /// `"host"`: traffic goes to the host stack untouched.
    Host,
    /// `"none"`: loopback only, nothing forwarded.
    None,
}

impl NetworkMode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [NetworkMode; 9] = [
        NetworkMode::Xconnect,
        NetworkMode::Bridge,
        NetworkMode::Overlay,
        NetworkMode::Macvlan,
        NetworkMode::Ipvlan,
        NetworkMode::PointToPoint,
        NetworkMode::Routed,
        NetworkMode::Host,
        NetworkMode::None,
    ];

    /// The name used in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Xconnect => "xconnect",
            NetworkMode::Bridge => "bridge",
            NetworkMode::Overlay => "overlay",
            NetworkMode::Macvlan => "macvlan",
            NetworkMode::Ipvlan => "ipvlan",
            NetworkMode::PointToPoint => "point-to-point",
            NetworkMode::Routed => "routed",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }

    /// True for the modes the dataplane can run today.
    pub const fn is_implemented(self) -> bool {
        matches!(
            self,
            NetworkMode::Xconnect
                | NetworkMode::Bridge
                | NetworkMode::Overlay
                | NetworkMode::Macvlan
                | NetworkMode::PointToPoint
                | NetworkMode::Ipvlan
        )
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;

    /// Parses a mode name; the error reads `unknown mode "x" (expected one of: xconnect, bridge, ...)`.
    fn from_str(s: &str) -> Result<Self, String> {
        NetworkMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = NetworkMode::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown mode {s:?} (expected one of: {})", all.join(", "))
            })
    }
}

/// `[[networks.rewrite]]`: rewrite the Ethernet addresses of frames leaving through `port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RewriteCfg {
    /// `port`: one of the network's ports (at most one rewrite per port).
    pub port: String,
    /// `src_mac`: new source MAC (unicast, not all-zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<MacAddr>,
    /// `dst_mac`: new destination MAC (not all-zero). At least one of `src_mac`, `dst_mac` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<MacAddr>,
}

/// `[[endpoints]]`: a host attached to a network through one port (what `wharf lab` builds namespaces for).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointCfg {
    /// `name`: unique among endpoints, `[a-z0-9_-]`, 1..=[`MAX_ENDPOINT_NAME`] characters.
    pub name: String,
    /// `network`: the network it is attached to.
    pub network: String,
    /// `port`: the wharf port it is cabled to; a member of `network`, and cabled to no other endpoint.
    pub port: String,
    /// `mac`: its interface's MAC (unicast, not all-zero, unique); `None` lets the kernel pick one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// `address`: its IPv4 address and prefix length; a host address of its subnet, unique among endpoints.
    /// `None` (left out): given by the network's IPAM pool when the router or the lab starts
    /// ([`crate::ipam::assign_addresses`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Cidr>,
    /// `gateway`: its default gateway, inside `address`'s subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// `address6`: its IPv6 address and prefix length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Cidr>,
    /// `gateway6`: its IPv6 default gateway (inside `address6`'s prefix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// `routes`: more routes in the endpoint's own table, written `PREFIX via GATEWAY` (what a host outside
    /// needs to reach networks behind the router, e.g. ipvlan L3 endpoints).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<EndpointRoute>,
}

/// An endpoint's route: `prefix` via `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointRoute {
    /// Destination prefix (host bits zero).
    pub prefix: IpCidr,
    /// Gateway, on the endpoint's subnet, of the same family.
    pub via: std::net::IpAddr,
}

impl std::fmt::Display for EndpointRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.prefix, self.via)
    }
}

impl Config {
    /// One entry per poll-mode worker: `Some(core)` when it is pinned to that core (`cores = [...]`), `None`
    /// when unpinned (`workers = N`, or one worker when neither is set).
    pub fn workers(&self) -> Vec<Option<usize>> {
        match (&self.dataplane.cores, self.dataplane.workers) {
            (Some(cores), _) => cores.iter().copied().map(Some).collect(),
            (None, Some(n)) => vec![None; n],
            (None, None) => vec![None],
        }
    }

    /// The index (port id) of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    /// The index of the network called `name`.
    pub fn network_index(&self, name: &str) -> Option<usize> {
        self.networks.iter().position(|n| n.name == name)
    }

    /// The index of the network that has the port called `port` as a member.
    pub fn network_of_port(&self, port: &str) -> Option<usize> {
        self.networks
            .iter()
            .position(|n| n.ports.iter().any(|p| p == port))
    }

    /// Checks a configuration built or changed in code against the same rules [`parse`] applies. Diagnostics
    /// have no position (`file` is `<config>`, line and column 0). Relative pcap paths are taken as they are.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let raw = check::to_raw(self);
        match check::check(&raw, None) {
            Ok(_) => Ok(()),
            Err(problems) => Err(ConfigError::new(
                problems
                    .into_iter()
                    .map(|p| Diagnostic {
                        file: "<config>".into(),
                        line: 0,
                        col: 0,
                        field: p.field,
                        reason: p.reason,
                    })
                    .collect(),
            )),
        }
    }
}

/// Parses and validates a configuration from `text`. `file` names it in diagnostics, and its directory is the
/// base of relative pcap paths (none when `file` has no directory part).
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(ConfigError::new(vec![error::from_toml(&e, text, file)])),
    };
    let base = Path::new(file).parent();
    match check::check(&raw, base) {
        Ok(config) => Ok(config),
        Err(problems) => {
            let index = locate::Index::new(text);
            let mut diags: Vec<Diagnostic> = problems
                .into_iter()
                .map(|p| {
                    let (line, col) = index.position_of(&p.field);
                    Diagnostic {
                        file: file.to_string(),
                        line,
                        col,
                        field: p.field,
                        reason: p.reason,
                    }
                })
                .collect();
            diags.sort_by_key(|d| (d.line, d.col));
            Err(ConfigError::new(diags))
        }
    }
}

/// Reads the file at `path` and [`parse`]s it (diagnostics name the file as `path` is written). An unreadable
/// file gives one diagnostic without position: `wharf.toml: cannot read: No such file or directory (os error 2)`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) => Err(ConfigError::new(vec![Diagnostic {
            file,
            line: 0,
            col: 0,
            field: String::new(),
            reason: format!("cannot read: {e}"),
        }])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("", "x.toml").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.workers(), vec![None]);
        assert_eq!(c.control.socket, PathBuf::from(DEFAULT_SOCKET));
        c.validate().unwrap();
    }

    #[test]
    fn default_lab_config() {
        let c = parse(DEFAULT_LAB_CONFIG, "lab-default.toml").unwrap();
        assert_eq!(c.workers(), vec![None]);
        assert_eq!(c.dataplane.idle, IdleMode::Adaptive);
        assert_eq!(
            c.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(c.ports.iter().all(|p| p.backend.kind() == "afpacket"));
        assert_eq!(c.networks.len(), 1);
        assert_eq!(c.networks[0].mode, NetworkMode::Bridge);
        assert_eq!(c.networks[0].ports, ["a", "b", "c"]);
        assert_eq!(c.network_of_port("c"), Some(0));
        let names: Vec<_> = c
            .endpoints
            .iter()
            .map(|e| (e.name.as_str(), e.port.as_str()))
            .collect();
        assert_eq!(names, [("a", "a"), ("b", "b"), ("c", "c")]);
        assert_eq!(
            c.endpoints[2].address,
            Some("10.77.0.3/24".parse().unwrap())
        );
        c.validate().unwrap();
    }

    #[test]
    fn workers_pinned_and_unpinned() {
        let c = parse("[dataplane]\ncores = [1, 3]\n", "x.toml").unwrap();
        assert_eq!(c.workers(), vec![Some(1), Some(3)]);
        let c = parse("[dataplane]\nworkers = 3\n", "x.toml").unwrap();
        assert_eq!(c.workers(), vec![None, None, None]);
    }

    #[test]
    fn all_modes_parse_and_only_implemented_ones_validate() {
        for mode in NetworkMode::ALL {
            assert_eq!(mode.as_str().parse::<NetworkMode>(), Ok(mode));
            let uplink = match mode {
                NetworkMode::Macvlan => "uplink = \"c\"\n",
                NetworkMode::Ipvlan => "uplink = \"c\"\nipvlan_mode = \"l2\"\n",
                NetworkMode::Overlay => "[networks.vxlan]\nvni = 1\nunderlay = \"c\"\n",
                _ => "",
            };
            // An overlay's underlay is a routed port.
            let c_addr = match mode {
                NetworkMode::Overlay => "addresses = [\"192.0.2.1/24\"]\n",
                _ => "",
            };
            let text = format!(
                "[[ports]]\nname = \"a\"\nbackend = \"afpacket\"\ninterface = \"a\"\n\
                 [[ports]]\nname = \"b\"\nbackend = \"afpacket\"\ninterface = \"b\"\n\
                 [[networks]]\nname = \"n\"\nmode = \"{mode}\"\nports = [\"a\", \"b\"]\n{uplink}\
                 [[ports]]\nname = \"c\"\nbackend = \"afpacket\"\ninterface = \"c\"\n{c_addr}"
            );
            let r = parse(&text, "m.toml");
            assert_eq!(
                mode.is_implemented(),
                matches!(
                    mode,
                    NetworkMode::Xconnect
                        | NetworkMode::Bridge
                        | NetworkMode::Overlay
                        | NetworkMode::Macvlan
                        | NetworkMode::PointToPoint
                        | NetworkMode::Ipvlan
                )
            );
            if mode.is_implemented() {
                r.unwrap();
            } else {
                let e = r.unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!("m.toml:11:8: networks[0].mode: mode `{mode}` is not implemented yet")
                );
            }
        }
    }

    #[test]
    fn relative_pcap_paths_resolve_against_the_file() {
        let dir = std::env::temp_dir().join(format!("wharf-cfg-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/in.pcap"), b"").unwrap();
        let file = dir.join("w.toml");
        let text = "[[ports]]\nname = \"p\"\nbackend = \"pcap\"\nrx = \"d/in.pcap\"\ntx = \"/tmp/o.pcap\"\n";
        let c = parse(text, &file.display().to_string()).unwrap();
        assert_eq!(
            c.ports[0].backend,
            BackendCfg::Pcap {
                rx: Some(dir.join("d/in.pcap")),
                tx: Some(PathBuf::from("/tmp/o.pcap")),
                replay: None
            }
        );
        // Without a directory part, the path stays as written (relative to the working directory).
        let e = parse(text, "w.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "w.toml:4:6: ports[0].rx: pcap file \"d/in.pcap\" does not exist"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn serializes_to_toml_that_parses_back() {
        for text in [
            DEFAULT_LAB_CONFIG,
            include_str!("../../configs/lab-xconnect.toml"),
        ] {
            let c = parse(text, "lab.toml").unwrap();
            let again = toml::to_string(&c).unwrap();
            assert_eq!(parse(&again, "again.toml").unwrap(), c);
        }
    }

    #[test]
    fn validate_catches_programmatic_mistakes() {
        let mut c = parse(include_str!("../../configs/lab-xconnect.toml"), "lab.toml").unwrap();
        c.networks[0].ports[1] = "zz".into();
        c.dataplane.burst_size = 0;
        let e = c.validate().unwrap_err();
        let lines: Vec<_> = e.to_string().lines().map(String::from).collect();
        assert_eq!(
            lines,
            [
                "<config>: dataplane.burst_size: burst_size must be in 1..=256, got 0",
                "<config>: networks[0].ports[1]: no port named \"zz\" (ports are: l, r)",
                "<config>: endpoints[1].port: port \"r\" is not in network \"lab\" (its ports are: l, zz)",
            ]
        );
    }

    #[test]
    fn unreadable_file_is_named() {
        let e = load(Path::new("/nonexistent/wharf.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/wharf.toml: cannot read: "),
            "{e}"
        );
    }
}
