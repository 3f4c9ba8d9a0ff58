//! The file as written: every field optional, every number an `i64`, every enum a string. Serde only checks
//! syntax, types and unknown fields here; ranges, enums, references and required fields are checked by
//! [`super::check`], which collects every problem instead of stopping at the first.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub dataplane: Option<RawDataplane>,
    pub control: Option<RawControl>,
    pub dpdk: Option<super::dpdk::RawDpdk>,
    #[serde(default)]
    pub ports: Vec<RawPort>,
    #[serde(default)]
    pub networks: Vec<RawNetwork>,
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    pub links: Vec<RawLink>,
    pub router: Option<RawRouter>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub nat: Option<RawNat>,
    #[serde(default)]
    pub services: Vec<RawService>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNat {
    pub outside: Option<String>,
    pub masquerade: Option<Vec<String>>,
    pub port_range: Option<String>,
    pub max_sessions: Option<i64>,
    pub udp_mapping: Option<String>,
    pub tcp_established_s: Option<i64>,
    pub tcp_transitory_s: Option<i64>,
    pub tcp_close_s: Option<i64>,
    pub udp_s: Option<i64>,
    pub udp_assured_s: Option<i64>,
    pub icmp_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Option<String>,
    pub publish: Option<String>,
    pub backends: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouter {
    pub mtu: Option<i64>,
    pub icmp_rate: Option<i64>,
    pub drop_ip_options: Option<bool>,
    pub neighbor_reachable_s: Option<i64>,
    pub neighbor_stale_s: Option<i64>,
    pub neighbor_capacity: Option<i64>,
    pub fib_tbl8_groups: Option<i64>,
    pub fib6_groups: Option<i64>,
    pub echo_port: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub prefix: Option<String>,
    pub via: Option<Vec<String>>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    pub ports: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDataplane {
    pub buffers: Option<i64>,
    pub data_room: Option<i64>,
    pub burst_size: Option<i64>,
    pub cores: Option<Vec<i64>>,
    pub workers: Option<i64>,
    pub idle: Option<String>,
    pub idle_sleep_us: Option<i64>,
    pub idle_after_polls: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub socket: Option<String>,
    pub state_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    pub name: Option<String>,
    pub backend: Option<String>,
    // afpacket
    pub interface: Option<String>,
    pub block_size: Option<i64>,
    pub block_count: Option<i64>,
    pub frame_size: Option<i64>,
    pub promiscuous: Option<bool>,
    // ring
    pub peer: Option<String>,
    pub depth: Option<i64>,
    pub peer_queues: Option<i64>,
    // pcap
    pub rx: Option<String>,
    pub tx: Option<String>,
    pub replay: Option<i64>,
    // dpdk (and `promiscuous` above)
    pub device: Option<String>,
    pub rx_desc: Option<i64>,
    pub tx_desc: Option<i64>,
    pub mtu: Option<i64>,
    pub rss: Option<bool>,
    // routed port
    pub addresses: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub name: Option<String>,
    pub mode: Option<String>,
    pub ports: Option<Vec<String>>,
    #[serde(default)]
    pub rewrite: Vec<RawRewrite>,
    // bridge
    pub trunk_ports: Option<Vec<String>>,
    pub vlan: Option<i64>,
    pub aging_s: Option<i64>,
    pub mac_limit: Option<i64>,
    pub flood_unknown_unicast: Option<bool>,
    pub gateway_mac: Option<String>,
    #[serde(default)]
    pub static_macs: Vec<RawStaticMac>,
    // macvlan
    pub uplink: Option<String>,
    pub max_macs: Option<i64>,
    pub allow_host: Option<bool>,
    // ipvlan (and `uplink` above)
    pub ipvlan_mode: Option<String>,
    // the router's addresses on the network (bridge)
    pub addresses: Option<Vec<String>>,
    pub ipam: Option<RawIpam>,
    // overlay
    pub vxlan: Option<RawVxlan>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVxlan {
    pub vni: Option<i64>,
    pub underlay: Option<String>,
    pub local: Option<String>,
    pub remotes: Option<Vec<String>>,
    pub port: Option<i64>,
    pub df: Option<bool>,
    pub ttl: Option<i64>,
    pub mtu: Option<i64>,
    #[serde(default)]
    pub fdb: Vec<RawFdb>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFdb {
    pub mac: Option<String>,
    pub vtep: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIpam {
    pub subnet: Option<String>,
    pub range: Option<String>,
    pub reserved: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStaticMac {
    pub mac: Option<String>,
    pub port: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRewrite {
    pub port: Option<String>,
    pub src_mac: Option<String>,
    pub dst_mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub name: Option<String>,
    pub network: Option<String>,
    pub port: Option<String>,
    pub mac: Option<String>,
    pub address: Option<String>,
    pub gateway: Option<String>,
    pub address6: Option<String>,
    pub gateway6: Option<String>,
    pub routes: Option<Vec<String>>,
    pub publish: Option<Vec<String>>,
}
