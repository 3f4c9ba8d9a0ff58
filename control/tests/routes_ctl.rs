//! Static routes changed at run time through the control socket (`route add|del`), over `ring` ports with
//! the test as both neighbours: the router resolves the gateway by ARP (the test answers), forwards by the new
//! route with TTL-1, spreads flows over an ECMP route's gateways, answers net unreachable once the route is
//! gone, lists it all in `show routes` / `show neighbors`, and keeps run-time routes across a reload.

use control::ctl::{handle, Request, Show};
use control::router::Router;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use serde_json::Value;
use std::time::Duration;

mod common;
use common::ring_peer::Peer;

const CONFIG: &str = r#"
[dataplane]
buffers = 2048
workers = 1

[[ports]]
name = "inside"
backend = "ring"
peer = "host_in"
addresses = ["10.0.0.1/24"]

[[ports]]
name = "outside"
backend = "ring"
peer = "host_out"
addresses = ["10.1.0.1/24"]
"#;

const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const GW1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xf1];
const GW2_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xf2];

/// A UDP datagram from the inside host to `dst` with source port `sport` and TTL 64.
fn udp_to(router_mac: [u8; 6], dst: [u8; 4], sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOST_MAC, router_mac)
        .ipv4([10, 0, 0, 2], dst, 64)
        .udp(sport, 9);
    let payload = [0x5a; 32];
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, &payload).unwrap();
    v
}

fn ctl(router: &mut Router, req: Request) -> Value {
    let r = handle(router, &req);
    assert_eq!(r["ok"], true, "{req:?}: {r}");
    r["data"].clone()
}

#[test]
fn routes_added_and_removed_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let mut router = Router::start_file(&path).unwrap();
    let mut inside = Peer::open(&router, "host_in");
    let mut outside = Peer::open(&router, "host_out");
    let rmac = inside.resolve(&router, None, HOST_MAC, [10, 0, 0, 2], [10, 0, 0, 1]);

    // No route yet: the router says net unreachable, from its inside address, quoting our datagram.
    inside.send(&router, &udp_to(rmac, [10, 9, 1, 1], 1000));
    let back = inside.recv_ip(1, Duration::from_secs(5));
    let icmp = SlicedPacket::from_ethernet(&back[0]).unwrap();
    match (&icmp.net, &icmp.transport) {
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(i))) => {
            assert_eq!(ip.header().source(), [10, 0, 0, 1]);
            assert_eq!((i.type_u8(), i.code_u8()), (3, 0), "net unreachable");
        }
        other => panic!("expected ICMP, got {other:?}"),
    }

    // route add: the first packet waits for ARP, then both leave by the gateway with TTL 63.
    let added = ctl(
        &mut router,
        Request::RouteAdd {
            prefix: "10.9.0.0/16".into(),
            via: vec!["10.1.0.254".into()],
            kind: None,
        },
    );
    assert_eq!(added["route"]["type"], "gateway");
    inside.send(&router, &udp_to(rmac, [10, 9, 1, 1], 1001));
    outside.answer_arp(&router, [10, 1, 0, 254], GW1_MAC);
    inside.send(&router, &udp_to(rmac, [10, 9, 200, 7], 1002));
    let fwd = outside.recv_ip(2, Duration::from_secs(5));
    assert_eq!(fwd.len(), 2, "both datagrams forwarded");
    for f in &fwd {
        assert_eq!(f[0..6], GW1_MAC);
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().ttl(), 63);
        assert!(etherparse::Ipv4Header::from_slice(&f[14..])
            .map(|(h, _)| h.calc_header_checksum() == h.header_checksum)
            .unwrap());
    }

    // An ECMP route: flows spread over both gateways, each flow always to the same one.
    ctl(
        &mut router,
        Request::RouteAdd {
            prefix: "10.8.0.0/16".into(),
            via: vec!["10.1.0.253".into(), "10.1.0.254".into()],
            kind: None,
        },
    );
    // Some of these flows hash to the unresolved gateway: the router asks for it.
    for sport in 2000..2016u16 {
        inside.send(&router, &udp_to(rmac, [10, 8, 0, 1], sport));
    }
    outside.answer_arp(&router, [10, 1, 0, 253], GW2_MAC);
    let _ = outside.recv_ip(16, Duration::from_millis(500));
    let mut per_gw = std::collections::HashMap::new();
    for sport in 3000..3064u16 {
        for _ in 0..2 {
            inside.send(&router, &udp_to(rmac, [10, 8, 1, 1], sport));
        }
        let got = outside.recv_ip(2, Duration::from_secs(2));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0][0..6], got[1][0..6], "one flow, one path");
        *per_gw.entry(got[0][0..6].to_vec()).or_insert(0) += 1;
    }
    assert_eq!(per_gw.len(), 2, "both gateways carry flows: {per_gw:?}");

    // show routes and show neighbors list them.
    let routes = ctl(
        &mut router,
        Request::Show {
            what: Show::Routes,
            network: None,
        },
    );
    let find = |p: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("{p} not in {routes}"))
    };
    assert_eq!(find("10.8.0.0/16")["route"]["type"], "ecmp");
    assert_eq!(find("10.0.0.1/32")["route"]["type"], "local");
    assert_eq!(find("10.1.0.0/24")["route"]["type"], "attached");
    let neigh = ctl(
        &mut router,
        Request::Show {
            what: Show::Neighbors,
            network: None,
        },
    );
    let macs: Vec<&str> = neigh
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["interface"] == "outside")
        .filter_map(|n| n["mac"].as_str())
        .collect();
    assert!(
        macs.contains(&"02:00:00:00:00:f1") && macs.contains(&"02:00:00:00:00:f2"),
        "{neigh}"
    );

    // Run-time routes survive a reload of the file.
    let _ = ctl(&mut router, Request::Reload);
    inside.send(&router, &udp_to(rmac, [10, 9, 1, 1], 1003));
    let after = outside.recv_ip(1, Duration::from_secs(3));
    assert!(
        after
            .iter()
            .any(|f| f[0..6] == GW1_MAC && f[30..34] == [10, 9, 1, 1]),
        "forwarded after the reload"
    );

    // route del: unreachable again; a connected route cannot be deleted.
    let del = ctl(
        &mut router,
        Request::RouteDel {
            prefix: "10.9.0.0/16".into(),
        },
    );
    assert_eq!(del["removed"], true);
    inside.send(&router, &udp_to(rmac, [10, 9, 1, 1], 1004));
    let back = inside.recv_ip(1, Duration::from_secs(5));
    assert_eq!(back.len(), 1);
    assert_eq!(back[0][14 + 20], 3, "ICMP destination unreachable");
    let r = handle(
        &mut router,
        &Request::RouteDel {
            prefix: "10.1.0.0/24".into(),
        },
    );
    assert_eq!(r["ok"], false);
    assert!(
        r["error"].as_str().unwrap().contains("no static route"),
        "{r}"
    );
    // Bad input is refused with the config file's words.
    let r = handle(
        &mut router,
        &Request::RouteAdd {
            prefix: "10.7.0.0/16".into(),
            via: vec!["10.5.0.1".into()],
            kind: None,
        },
    );
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("on no connected subnet"),
        "{r}"
    );
    // A router address keeps its local route (as in the file).
    let r = handle(
        &mut router,
        &Request::RouteAdd {
            prefix: "10.0.0.1/32".into(),
            via: vec![],
            kind: Some("blackhole".into()),
        },
    );
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("one of the router's own addresses"),
        "{r}"
    );
    router.stop();
}
