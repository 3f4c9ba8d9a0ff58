//! The L3 pipeline end to end, in network namespaces (`configs/lab-routed.toml`: two bridge networks with the
//! router as their gateway, IPv4 and IPv6): the Linux kernel in each namespace is the peer. Endpoints in two
//! subnets ping and move hashed TCP streams through wharf over both families, the router's own addresses
//! answer ping, `traceroute` shows the router as a hop, an unrouted destination gets "net unreachable" from
//! the gateway, and the endpoints' neighbour tables hold the gateway at the router's MAC for both families.
//! The router's host stack talks TCP with the kernel: its echo service returns what a kernel socket sends,
//! and a closed port is refused.
//!
//! Needs root (namespaces, veth pairs); skipped loudly without it, and fails in CI.

use control::lab::{self, LabHost};
use dataplane::netns;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod common;
use common::{prefix, run_in, traceroute, Lab};

/// The link-layer address `h`'s kernel holds for `ip`.
fn neighbour_mac(h: &LabHost, ip: &str) -> String {
    let (_, out) = run_in(h, &["ip", "neigh", "show", ip]);
    let mut words = out.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == "lladdr")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no neighbour entry for {ip}: {out:?}"))
        .to_string()
}

/// `wharf lab --check` on the lab's three hosts: every ordered pair pings and moves a hashed TCP stream, over
/// IPv4 and IPv6.
fn every_pair_passes(lab: &Lab) {
    let results = lab::check(lab.topo());
    assert_eq!(results.len(), 12, "3 hosts, 6 ordered pairs, 2 families");
    for r in &results {
        assert!(
            r.passed(),
            "{} -> {} over {}: {r:?}",
            r.from,
            r.to,
            r.family
        );
    }
}

#[test]
fn routing_between_bridge_networks_over_both_families() {
    if !netns::require_root("routing_between_bridge_networks_over_both_families") {
        return;
    }
    let lab = Lab::start("lab-routed.toml", &prefix('r'), |_| {});
    let (a, c) = (lab.host("a"), lab.host("c"));

    // Every pair (same network or across the router), IPv4 and IPv6: ping and a hashed 4 MiB TCP stream.
    every_pair_passes(&lab);
    let routed_before = lab.event("routed");
    assert!(routed_before > 0, "the cross-network pairs were routed");

    // The router's own addresses answer, on the endpoint's network and on the other one.
    for addr in ["10.81.1.1", "fd00:81:1::1", "10.81.2.1", "fd00:81:2::1"] {
        let to: IpAddr = addr.parse().unwrap();
        lab::ping(a, to).unwrap_or_else(|e| panic!("ping {addr} from a: {e:#}"));
    }
    assert!(lab.event("echo_replies") >= 12, "4 addresses x 3 echoes");

    // traceroute: the gateway is hop 1 (time exceeded from wharf), the destination hop 2.
    assert_eq!(
        traceroute(a, "-4", "10.81.2.2"),
        vec!["10.81.1.1", "10.81.2.2"]
    );
    assert_eq!(
        traceroute(a, "-6", "fd00:81:2::2"),
        vec!["fd00:81:1::1", "fd00:81:2::2"]
    );
    assert!(lab.drops("ttl_exceeded") >= 2);
    assert!(lab.event("icmp_errors_sent") >= 2);

    // No route: the gateway says so.
    let (ok, out) = run_in(a, &["ping", "-c", "1", "-W", "2", "10.99.0.1"]);
    assert!(!ok);
    assert!(
        out.contains("From 10.81.1.1") && out.contains("Destination Net Unreachable"),
        "{out}"
    );
    assert!(lab.drops("no_route") >= 1);

    // Both families resolved the gateway to the same router MAC, which no endpoint has.
    let gw4 = neighbour_mac(a, "10.81.1.1");
    let gw6 = neighbour_mac(a, "fd00:81:1::1");
    assert_eq!(gw4, gw6);
    for h in &lab.topo().hosts {
        assert_ne!(
            gw4,
            netns::format_mac(h.mac),
            "the gateway MAC is an endpoint's"
        );
    }
    // And c sees its own gateway the same way (resolved by ARP and ND from its side).
    assert_eq!(
        neighbour_mac(c, "10.81.2.1"),
        neighbour_mac(c, "fd00:81:2::1")
    );
    lab.finish();
}

/// A kernel TCP connection from `h` to `to`: sends `data`, half-closes, and reads until the peer closes.
fn tcp_echo(h: &LabHost, to: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    h.ns.run(|| {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(data)?;
        s.shutdown(Shutdown::Write)?;
        let mut back = Vec::new();
        s.read_to_end(&mut back)?;
        Ok(back)
    })?
}

#[test]
fn the_routers_host_stack_echoes_kernel_tcp_and_refuses_closed_ports() {
    if !netns::require_root("the_routers_host_stack_echoes_kernel_tcp_and_refuses_closed_ports") {
        return;
    }
    let lab = Lab::start("lab-routed.toml", &prefix('t'), |_| {});
    let a = lab.host("a");
    // The echo service (port 7) on the gateway a uses, over both families, and on the other network's
    // gateway (delivered locally all the same). 200 KB: more than the service's buffers, so its window closes
    // and opens again.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 + i / 977) as u8).collect();
    for addr in ["10.81.1.1", "fd00:81:1::1", "10.81.2.1"] {
        let to = SocketAddr::new(addr.parse().unwrap(), 7);
        let back = tcp_echo(a, to, &data).unwrap_or_else(|e| panic!("echo from {to}: {e}"));
        assert_eq!(back.len(), data.len(), "{to}");
        assert!(back == data, "{to}: the echo differs");
    }
    // A closed port is refused at once (the router's RST), not left to time out.
    for addr in ["10.81.1.1", "fd00:81:1::1"] {
        let to = SocketAddr::new(addr.parse().unwrap(), 9);
        let t0 = Instant::now();
        let r =
            a.ns.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(5)).map(drop))
                .unwrap();
        let e = r.expect_err("port 9 is closed");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{to}: {e}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{to}: refused late");
    }
    let host = lab.router().show_stats()["host_stack"].clone();
    assert_eq!(host["echo_connections"], 3, "{host}");
    assert_eq!(host["echo_bytes"], 3 * data.len() as u64, "{host}");
    assert!(lab.event("to_host_stack") > 0 && lab.event("from_host_stack") > 0);
    assert_eq!(lab.drops("host_queue_full"), 0);
    lab.finish();
}

#[test]
fn point_to_point_links_route_host_addresses_to_a_bridge() {
    if !netns::require_root("point_to_point_links_route_host_addresses_to_a_bridge") {
        return;
    }
    let lab = Lab::start("lab-p2p.toml", &prefix('p'), |_| {});
    every_pair_passes(&lab);
    // Each endpoint reached its link-local gateway at wharf's MAC for that link (the port's interface in
    // the host namespace), for both families.
    for name in ["a", "b"] {
        let h = lab.host(name);
        let port_mac = netns::format_mac(
            netns::link_mac(Some(lab.host_ns()), &h.host_if).expect("the port interface's MAC"),
        );
        assert_eq!(neighbour_mac(h, "169.254.1.1"), port_mac, "{name}");
        assert_eq!(neighbour_mac(h, "fe80::1"), port_mac, "{name}");
    }
    // The router answers on its link address too.
    lab::ping(lab.host("a"), "169.254.1.1".parse().unwrap()).expect("ping 169.254.1.1");
    // The endpoints' own addresses were never answered by the router (proxy ARP skips the asker's own).
    assert_eq!(lab.drops("no_route"), 0);
    lab.finish();
}

#[test]
fn ipvlan_l3_endpoints_share_the_uplink_mac_and_are_reached_by_static_routes() {
    if !netns::require_root(
        "ipvlan_l3_endpoints_share_the_uplink_mac_and_are_reached_by_static_routes",
    ) {
        return;
    }
    let lab = Lab::start("lab-ipvlan.toml", &prefix('i'), |_| {});
    // The outside host reaches both endpoints through its static routes, and they reach it and each other.
    every_pair_passes(&lab);
    // One MAC for all: the uplink's, as the outside sees the router and as each endpoint sees its gateway.
    let outside = lab.host("outside");
    let uplink_mac = netns::format_mac(
        netns::link_mac(Some(lab.host_ns()), &outside.host_if).expect("the uplink interface's MAC"),
    );
    assert_eq!(neighbour_mac(outside, "10.80.0.1"), uplink_mac);
    assert_eq!(neighbour_mac(outside, "fd00:80::1"), uplink_mac);
    assert_eq!(neighbour_mac(lab.host("a"), "10.83.0.1"), uplink_mac);
    assert_eq!(neighbour_mac(lab.host("a"), "fd00:83::1"), uplink_mac);
    assert_eq!(neighbour_mac(lab.host("b"), "10.83.1.1"), uplink_mac);
    // No broadcast reaches the endpoints: a broadcast ping on the outside LAN leaves ports a and b silent.
    let tx = |p: &str| lab.port(p)["tx_packets"].as_u64().unwrap();
    let (a0, b0) = (tx("a"), tx("b"));
    let _ = run_in(
        outside,
        &[
            "ping",
            "-b",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "10.80.0.255",
        ],
    );
    assert_eq!(
        (tx("a"), tx("b")),
        (a0, b0),
        "a broadcast reached an ipvlan endpoint"
    );
    lab.finish();
}

#[test]
fn ipvlan_l2_endpoints_share_one_mac_on_the_lan() {
    if !netns::require_root("ipvlan_l2_endpoints_share_one_mac_on_the_lan") {
        return;
    }
    let lab = Lab::start("lab-ipvlan-l2.toml", &prefix('l'), |_| {});
    every_pair_passes(&lab);
    // The LAN host holds both endpoints, over both families, at one MAC: the uplink's.
    let lan = lab.host("lan");
    let uplink_mac = netns::format_mac(
        netns::link_mac(Some(lab.host_ns()), &lan.host_if).expect("the uplink interface's MAC"),
    );
    for ip in ["10.84.0.2", "10.84.0.3", "fd00:84::2", "fd00:84::3"] {
        assert_eq!(neighbour_mac(lan, ip), uplink_mac, "{ip}");
    }
    // ...which is neither endpoint's own MAC.
    for name in ["a", "b"] {
        assert_ne!(netns::format_mac(lab.host(name).mac), uplink_mac);
    }
    assert!(lab.event("arp_replies_sent") >= 2 && lab.event("nd_adverts_sent") >= 2);
    lab.finish();
}
