//! The options of an `overlay` network: `[networks.vxlan]` (RFC 7348 VXLAN over an L3 underlay).

use super::{Ipv4Addr, MacAddr, Serialize};

/// Default UDP port of VXLAN (IANA).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// Default outer TTL.
pub const DEFAULT_VXLAN_TTL: u8 = 64;
/// Bytes VXLAN adds to an inner IP packet on the underlay (inner Ethernet 14, VXLAN 8, UDP 8, outer IPv4 20):
/// the default overlay MTU is the underlay MTU minus this.
pub const VXLAN_OVERHEAD: u16 = 50;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Smallest overlay MTU (the IPv4 minimum).
pub const MIN_OVERLAY_MTU: u16 = 68;
/// Most `fdb` entries (static) and remote VTEPs an overlay lists.
pub const MAX_OVERLAY_ENTRIES: usize = 4096;
/// Capacity of the table of entries an external feed adds at run time, per overlay.
pub const FED_FDB_CAPACITY: usize = 16384;

/// `[networks.vxlan]`: what makes a network an overlay. Its `ports` are the local endpoints' ports; the bridge
/// options (`aging_s`, `mac_limit`, `flood_unknown_unicast`, `static_macs`) apply as for a bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OverlayCfg {
    /// `vni`: the VXLAN network identifier, 1..=16777215, unique among overlays.
    pub vni: u32,
    /// `underlay`: the routed port (one with `addresses`) the VXLAN packets leave and arrive by.
    pub underlay: String,
    /// `local`: the local VTEP address, one of the underlay port's IPv4 addresses (default: its first).
    pub local: Ipv4Addr,
    /// `remotes`: the flood list, remote VTEPs that get broadcast, multicast and unknown unicast frames
    /// (head-end replication).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<Ipv4Addr>,
    /// `port`: the UDP destination port (default [`DEFAULT_VXLAN_PORT`]).
    pub port: u16,
    /// `df`: set don't-fragment on the outer IPv4 header (default false).
    pub df: bool,
    /// `ttl`: the outer TTL (default [`DEFAULT_VXLAN_TTL`]).
    pub ttl: u8,
    /// `mtu`: the overlay MTU, the largest inner IP packet carried; default and maximum: the underlay MTU
    /// (`[router] mtu`) minus [`VXLAN_OVERHEAD`].
    pub mtu: u16,
    /// `[[networks.vxlan.fdb]]`: static remote entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fdb: Vec<FdbCfg>,
}

/// A static FDB entry of an overlay: an inner MAC behind a remote VTEP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FdbCfg {
    /// `mac`: unicast MAC of the remote endpoint.
    pub mac: MacAddr,
    /// `vtep`: the remote VTEP's IPv4 address.
    pub vtep: Ipv4Addr,
}
