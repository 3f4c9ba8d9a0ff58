//! A router interface on a VLAN: the gateway of a bridge domain carried tagged on an 802.1Q trunk (what
//! switches call an SVI), routed to a plain routed port, over `ring` ports with the test as the hosts. ARP for
//! the gateway is answered on the VLAN, routed traffic leaves the trunk tagged and comes back untagged on the
//! routed port, and the router resolves hosts behind the VLAN with tagged ARP.

use control::router::Router;
use etherparse::{PacketBuilder, SlicedPacket};
use std::time::Duration;

mod common;
use common::ring_peer::{vlan_of, Peer};

const CONFIG: &str = r#"
[dataplane]
buffers = 2048
workers = 1

[[ports]]
name = "trunk"
backend = "ring"
peer = "switch"

[[ports]]
name = "up"
backend = "ring"
peer = "wan"
addresses = ["10.1.0.1/24"]

# VLAN 100 on the trunk is a bridge domain whose gateway is the router: an SVI.
[[networks]]
name = "v100"
mode = "bridge"
ports = []
trunk_ports = ["trunk"]
vlan = 100
addresses = ["10.100.0.1/24"]
"#;

const HOST: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const WAN_GW: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];

/// A UDP datagram, tagged with `vlan` when given, with TTL 64.
fn udp(vlan: Option<u16>, src: ([u8; 6], [u8; 4]), dst: ([u8; 6], [u8; 4])) -> Vec<u8> {
    let payload = [0x42u8; 40];
    let mut v = Vec::new();
    match vlan {
        Some(id) => PacketBuilder::ethernet2(src.0, dst.0)
            .single_vlan(id.try_into().unwrap())
            .ipv4(src.1, dst.1, 64)
            .udp(4000, 5000)
            .write(&mut v, &payload)
            .unwrap(),
        None => PacketBuilder::ethernet2(src.0, dst.0)
            .ipv4(src.1, dst.1, 64)
            .udp(5000, 4000)
            .write(&mut v, &payload)
            .unwrap(),
    }
    v
}

fn ttl(f: &[u8]) -> u8 {
    match SlicedPacket::from_ethernet(f).unwrap().net {
        Some(etherparse::NetSlice::Ipv4(ip)) => ip.header().ttl(),
        other => panic!("not IPv4: {other:?}"),
    }
}

#[test]
fn a_gateway_on_a_trunk_vlan_routes_tagged_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let router = Router::start_file(&path).unwrap();
    let mut switch = Peer::open(&router, "switch");
    let mut wan = Peer::open(&router, "wan");

    // The host on VLAN 100 resolves its gateway: the reply comes back tagged 100.
    let gw = switch.resolve(&router, Some(100), HOST, [10, 100, 0, 5], [10, 100, 0, 1]);
    // A frame on another VLAN is not the SVI's.
    let other = udp(Some(200), (HOST, [10, 100, 0, 5]), (gw, [10, 1, 0, 9]));
    switch.send(&router, &other);

    // Host -> WAN: routed out of the routed port untagged, after the router resolved the next hop.
    switch.send(
        &router,
        &udp(Some(100), (HOST, [10, 100, 0, 5]), (gw, [10, 1, 0, 9])),
    );
    wan.answer_arp(&router, [10, 1, 0, 9], WAN_GW);
    let out = wan.recv_ip(1, Duration::from_secs(5));
    assert_eq!(
        out.len(),
        1,
        "exactly the VLAN 100 datagram (not the VLAN 200 one)"
    );
    assert_eq!(vlan_of(&out[0]), None);
    assert_eq!(out[0][0..6], WAN_GW);
    assert_eq!(ttl(&out[0]), 63);
    let up_mac: [u8; 6] = out[0][6..12].try_into().unwrap();

    // WAN -> host: the router learned the host from its ARP request; the datagram goes tagged 100 to the
    // host's MAC from the gateway MAC.
    wan.send(
        &router,
        &udp(None, (WAN_GW, [10, 1, 0, 9]), (up_mac, [10, 100, 0, 5])),
    );
    let back = switch.recv_ip(1, Duration::from_secs(5));
    assert_eq!(back.len(), 1);
    assert_eq!(vlan_of(&back[0]), Some(100));
    assert_eq!((&back[0][0..6], &back[0][6..12]), (&HOST[..], &gw[..]));
    assert_eq!(ttl(&back[0]), 63);

    // WAN -> a host the router does not know yet: it asks with a tagged ARP on the trunk first.
    const HOST2: [u8; 6] = [2, 0, 0, 0, 1, 0x11];
    wan.send(
        &router,
        &udp(None, (WAN_GW, [10, 1, 0, 9]), (up_mac, [10, 100, 0, 6])),
    );
    let req = switch.answer_arp(&router, [10, 100, 0, 6], HOST2);
    assert_eq!(vlan_of(&req), Some(100), "the router asks on the VLAN");
    let back = switch.recv_ip(1, Duration::from_secs(5));
    assert_eq!(back.len(), 1);
    assert_eq!(vlan_of(&back[0]), Some(100));
    assert_eq!(&back[0][0..6], &HOST2[..]);
    assert!(router.show_drops()["vlan_filtered"].as_u64().unwrap_or(0) >= 1);
    router.stop();
}
