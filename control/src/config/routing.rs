//! The L3 part of the model: `[router]` settings and `[[routes]]`. Interface addresses live on the ports
//! (`addresses` on a port not in any network makes it a routed port) and on bridge networks (the addresses of
//! the bridge's gateway).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::{IpCidr, Ipv4Cidr};

/// The router's IPv4 address on every point-to-point link: a link-local gateway the endpoint reaches
/// `onlink` (Calico's 169.254.1.1), so endpoints need no subnet of their own.
pub const P2P_GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The router's IPv6 link-local address on every point-to-point link.
pub const P2P_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// Default IP MTU of router interfaces.
pub const DEFAULT_MTU: u16 = 1500;
/// Accepted IP MTUs (IPv6 needs 1280; jumbo frames up to the largest data room).
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 1280..=9000;
/// Default ICMP errors per second per worker.
pub const DEFAULT_ICMP_RATE: u32 = 1000;
/// Accepted `icmp_rate` (0: never send ICMP errors).
pub const ICMP_RATE_RANGE: std::ops::RangeInclusive<u32> = 0..=1_000_000;
/// Default seconds a neighbour is used before it is asked again.
pub const DEFAULT_REACHABLE_S: u32 = 30;
/// Default seconds an unconfirmed neighbour is kept.
pub const DEFAULT_STALE_S: u32 = 600;
/// Accepted neighbour timers.
pub const NEIGHBOR_S_RANGE: std::ops::RangeInclusive<u32> = 1..=86_400;
/// Default neighbour cache size.
pub const DEFAULT_NEIGHBOR_CAPACITY: usize = 65_536;
/// Accepted neighbour cache sizes.
pub const NEIGHBOR_CAPACITY_RANGE: std::ops::RangeInclusive<usize> = 64..=(1 << 22);
/// Default number of IPv4 FIB second-level groups (256 entries each; one per prefix longer than /24's /24).
pub const DEFAULT_TBL8_GROUPS: u32 = 16_384;
/// Accepted `fib_tbl8_groups`.
pub const TBL8_GROUPS_RANGE: std::ops::RangeInclusive<u32> = 16..=(1 << 20);
/// Default number of IPv6 FIB groups (256 entries each, 1 KiB; a /48 route needs up to three of its own).
pub const DEFAULT_FIB6_GROUPS: u32 = pipelines::fib::lpm6::DEFAULT_GROUPS;
/// Accepted `fib6_groups`: up to 4 GiB of virtual memory, committed as groups are used.
pub const FIB6_GROUPS_RANGE: std::ops::RangeInclusive<u32> = 16..=(1 << 22);
/// Default TCP port of the router's echo service (RFC 862); 0 turns it off.
pub const DEFAULT_ECHO_PORT: u16 = 7;

/// `[router]`: settings of the L3 stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouterCfg {
    /// `mtu`: IP MTU of every router interface.
    pub mtu: u16,
    /// `icmp_rate`: ICMP errors each worker may send per second.
    pub icmp_rate: u32,
    /// `drop_ip_options`: drop IPv4 packets with options instead of forwarding them.
    pub drop_ip_options: bool,
    /// `neighbor_reachable_s`: a resolved neighbour is asked again after this many seconds (and still used).
    pub neighbor_reachable_s: u32,
    /// `neighbor_stale_s`: a neighbour unconfirmed this long is forgotten.
    pub neighbor_stale_s: u32,
    /// `neighbor_capacity`: entries of the neighbour cache.
    pub neighbor_capacity: usize,
    /// `fib_tbl8_groups`: IPv4 FIB groups for prefixes longer than /24 (each 1 KiB).
    pub fib_tbl8_groups: u32,
    /// `fib6_groups`: IPv6 FIB groups (each 1 KiB): the trie's levels past the first 24 bits. A full BGP table of
    /// /48s needs about three per route, more than the default holds.
    pub fib6_groups: u32,
    /// `echo_port`: TCP port on which the router's host stack echoes what it receives (0: no echo service).
    pub echo_port: u16,
}

impl Default for RouterCfg {
    fn default() -> Self {
        RouterCfg {
            mtu: DEFAULT_MTU,
            icmp_rate: DEFAULT_ICMP_RATE,
            drop_ip_options: false,
            neighbor_reachable_s: DEFAULT_REACHABLE_S,
            neighbor_stale_s: DEFAULT_STALE_S,
            neighbor_capacity: DEFAULT_NEIGHBOR_CAPACITY,
            fib_tbl8_groups: DEFAULT_TBL8_GROUPS,
            fib6_groups: DEFAULT_FIB6_GROUPS,
            echo_port: DEFAULT_ECHO_PORT,
        }
    }
}

/// What a route does with what it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Forward through the `via` gateways.
    Forward,
    /// Drop silently.
    Blackhole,
    /// Drop and answer ICMP destination unreachable.
    Unreachable,
}

/// `[[routes]]`: a static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteCfg {
    /// `prefix`: the destination prefix (host bits zero), IPv4 or IPv6.
    pub prefix: IpCidr,
    /// `via`: gateways, each on a connected subnet of the same family; several make an ECMP route.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<IpAddr>,
    /// `type`: `forward` (default, needs `via`), `blackhole` or `unreachable` (no `via`).
    #[serde(rename = "type")]
    pub kind: RouteKind,
}

/// How an ipvlan network treats its endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    /// `l2`: endpoints on the uplink's LAN sharing its MAC, demultiplexed by destination IP.
    L2,
    /// `l3`: endpoints on their own subnets, routed; each a host route; no broadcast or multicast in.
    L3,
}

/// Options of an `ipvlan` network: the endpoints share the MAC of `uplink`, a routed port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpvlanCfg {
    /// `uplink`: the port whose MAC the endpoints share: a routed port (with `addresses`) in L3 mode, a plain
    /// port on the LAN in L2 mode.
    pub uplink: String,
    /// `ipvlan_mode`: `l3` (default) or `l2`.
    pub ipvlan_mode: IpvlanMode,
}

/// `[networks.ipam]`: a host-local address pool (CNI's host-local IPAM).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpamCfg {
    /// `subnet`: the pool's subnet (host bits zero); default: the subnet of the network's IPv4 gateway address.
    pub subnet: Ipv4Cidr,
    /// `range = "FIRST-LAST"`: the addresses handed out (default: the whole subnet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `reserved`: addresses never handed out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<Ipv4Addr>,
    /// The gateway (reserved): the network's IPv4 router address, or the subnet's first host.
    #[serde(skip)]
    pub gateway: Option<Ipv4Addr>,
    /// Prefix length of the addresses given: the subnet's, or 32 on a point-to-point network.
    #[serde(skip)]
    pub host_prefix: u8,
}
