//! The L2 pipelines on frames built with etherparse: learning, flooding, aging, station moves, the MAC limit,
//! VLAN access/trunk tagging and filtering, QinQ, runts, and macvlan demux and host isolation.

use dataplane::worker::{BurstCtx, Processor, TxBatches};
use dataplane::{Burst, DropReason, Event, Pool, WorkerCounters};
use etherparse::{PacketBuilder, SlicedPacket};
use pipelines::bridge::mac_table::MacTable;
use pipelines::bridge::{mac_key, BridgeDomain, Egress};
use pipelines::l2::{Domain, L2Ingress};
use pipelines::macvlan::MacvlanNet;
use pipelines::snapshot::PortRole;
use pipelines::Snapshot;
use std::sync::Arc;

const PORTS: usize = 6;

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

fn frame(src: [u8; 6], dst: [u8; 6], vlan: Option<u16>) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(src, dst);
    match vlan {
        Some(id) => b
            .single_vlan(id.try_into().unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut v, b"payload"),
        None => b
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut v, b"payload"),
    }
    .unwrap();
    v
}

fn vlan_of(f: &[u8]) -> Option<u16> {
    match SlicedPacket::from_ethernet(f).unwrap().vlan {
        Some(etherparse::VlanSlice::SingleVlan(v)) => Some(v.vlan_identifier().value()),
        Some(etherparse::VlanSlice::DoubleVlan(_)) => panic!("double tagged"),
        None => None,
    }
}

fn bridge(name: &str, members: &[(u16, Egress)], limit: usize) -> BridgeDomain {
    let mut egress = vec![None; PORTS];
    for (p, e) in members {
        egress[*p as usize] = Some(*e);
    }
    BridgeDomain {
        name: name.into(),
        members: members.to_vec(),
        egress,
        table: Arc::new(MacTable::new(limit)),
        statics: Vec::new(),
        flood_unknown_unicast: true,
        gateway_mac: None,
        gateway_iface: None,
        aging_s: 300,
        overlay: None,
    }
}

/// Snapshot with the given bridges; port roles derived from their members.
fn snapshot(bridges: Vec<BridgeDomain>, macvlans: Vec<MacvlanNet>) -> Snapshot {
    let mut ing = vec![L2Ingress::default(); PORTS];
    for (i, b) in bridges.iter().enumerate() {
        for (p, e) in &b.members {
            let vlan = match e {
                Egress::Untagged => None,
                Egress::Tagged(v) => Some(*v),
                Egress::Vxlan { .. } => continue,
            };
            ing[*p as usize].add(vlan, Domain::Bridge(i as u16));
        }
    }
    for (i, m) in macvlans.iter().enumerate() {
        let vlan = match m.uplink_egress {
            Egress::Untagged => None,
            Egress::Tagged(v) => Some(v),
            Egress::Vxlan { .. } => None,
        };
        ing[m.uplink as usize].add(vlan, Domain::MacvlanUplink(i as u16));
        for (e, (p, _)) in m.endpoints.iter().enumerate() {
            ing[*p as usize].add(
                None,
                Domain::MacvlanEndpoint {
                    net: i as u16,
                    ep: e as u16,
                },
            );
        }
    }
    let roles = ing
        .into_iter()
        .map(|i| {
            if i.untagged.is_some() || i.tagged.is_some() {
                PortRole::L2(Box::new(i))
            } else {
                PortRole::Unused
            }
        })
        .collect();
    Snapshot {
        generation: 1,
        port_names: Arc::new((0..PORTS).map(|i| format!("p{i}")).collect()),
        roles: Arc::new(roles),
        bridges: Arc::new(bridges),
        macvlans: Arc::new(macvlans),
        ..Default::default()
    }
}

struct Harness {
    pool: Pool,
    snap: Snapshot,
    out: TxBatches,
    counters: Arc<WorkerCounters>,
    state: pipelines::snapshot::WorkerState,
}

impl Harness {
    fn new(snap: Snapshot) -> Harness {
        let pool = Pool::for_test(512, 2048);
        let (out, counters) = TxBatches::for_test(PORTS);
        let state = snap.new_state(0);
        Harness {
            pool,
            snap,
            out,
            counters,
            state,
        }
    }

    /// Sends `frames` in on `port` at time `now_s`; returns what left each port.
    fn send(&mut self, port: u16, now_s: u64, frames: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
        let mut b = Burst::new(64);
        for f in frames {
            let mut p = self.pool.alloc().unwrap();
            assert!(p.set_frame(f));
            p.meta_mut().in_port = port;
            b.push(p).unwrap();
        }
        let ctx = BurstCtx {
            worker: 0,
            in_port: port,
            now_ns: now_s * 1_000_000_000,
        };
        self.snap
            .process(&mut self.state, &ctx, &mut b, &mut self.out);
        assert!(b.is_empty(), "every packet got a verdict");
        (0..PORTS as u16)
            .map(|p| self.out.take(p).iter().map(|k| k.data().to_vec()).collect())
            .collect()
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.counters.drops.get(r)
    }

    fn event(&self, e: Event) -> u64 {
        self.counters.events.get(e)
    }
}

fn access(ports: &[u16]) -> Vec<(u16, Egress)> {
    ports.iter().map(|p| (*p, Egress::Untagged)).collect()
}

#[test]
fn floods_unknown_then_forwards_learned_unicast() {
    let mut h = Harness::new(snapshot(
        vec![bridge("br", &access(&[0, 1, 2]), 100)],
        vec![],
    ));
    let a_to_b = frame(mac(0xa), mac(0xb), None);
    let out = h.send(0, 1, std::slice::from_ref(&a_to_b));
    assert_eq!(
        (out[0].len(), out[1].len(), out[2].len()),
        (0, 1, 1),
        "unknown unicast flooded, not back"
    );
    assert_eq!(out[1][0], a_to_b);
    assert_eq!(h.event(Event::Flooded), 1);
    assert_eq!(h.event(Event::FloodCopies), 1);
    assert_eq!(h.event(Event::MacLearned), 1);
    // b answers a: a is known on port 0.
    let out = h.send(1, 2, &[frame(mac(0xb), mac(0xa), None)]);
    assert_eq!(
        (out[0].len(), out[2].len()),
        (1, 0),
        "known unicast goes to one port"
    );
    // and now a to b goes only to port 1.
    let out = h.send(0, 3, std::slice::from_ref(&a_to_b));
    assert_eq!((out[1].len(), out[2].len()), (1, 0));
    assert_eq!(h.snap.bridges[0].table.lookup(&mac(0xa)), Some(0));
    assert_eq!(h.snap.bridges[0].table.lookup(&mac(0xb)), Some(1));
}

#[test]
fn broadcast_goes_to_all_but_the_input_and_same_port_is_filtered() {
    let mut h = Harness::new(snapshot(
        vec![bridge("br", &access(&[0, 1, 2, 3]), 100)],
        vec![],
    ));
    let out = h.send(2, 1, &[frame(mac(1), [0xff; 6], None)]);
    assert_eq!(
        out.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1, 1, 0, 1, 0, 0]
    );
    // mac 1 is on port 2; a frame to it arriving on port 2 is filtered.
    h.send(0, 1, &[frame(mac(9), mac(8), None)]);
    let out = h.send(2, 1, &[frame(mac(7), mac(1), None)]);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::BridgeFiltered), 1);
}

#[test]
fn station_move_is_followed_and_counted() {
    let mut h = Harness::new(snapshot(
        vec![bridge("br", &access(&[0, 1, 2]), 100)],
        vec![],
    ));
    h.send(0, 1, &[frame(mac(1), [0xff; 6], None)]);
    h.send(1, 2, &[frame(mac(1), [0xff; 6], None)]);
    assert_eq!(h.event(Event::MacMoved), 1);
    let out = h.send(2, 3, &[frame(mac(5), mac(1), None)]);
    assert_eq!((out[0].len(), out[1].len()), (0, 1), "follows the move");
}

#[test]
fn aging_with_a_fake_clock_forgets_silent_macs() {
    let mut h = Harness::new(snapshot(
        vec![bridge("br", &access(&[0, 1, 2]), 100)],
        vec![],
    ));
    h.send(0, 100, &[frame(mac(1), [0xff; 6], None)]);
    h.send(1, 350, &[frame(mac(2), [0xff; 6], None)]);
    let t = &h.snap.bridges[0].table;
    assert_eq!(t.age(399, 300), 0, "299 s old: kept");
    assert_eq!(t.age(401, 300), 1, "301 s old: aged");
    assert_eq!(t.lookup(&mac(1)), None);
    assert_eq!(t.lookup(&mac(2)), Some(1));
    let out = h.send(2, 402, &[frame(mac(3), mac(1), None)]);
    assert_eq!(
        (out[0].len(), out[1].len()),
        (1, 1),
        "aged MAC is unknown again: flooded"
    );
}

#[test]
fn mac_limit_stops_learning_and_counts_a_flood_of_sources() {
    let mut h = Harness::new(snapshot(vec![bridge("br", &access(&[0, 1]), 64)], vec![]));
    let frames: Vec<Vec<u8>> = (0..200u32)
        .map(|i| {
            let b = i.to_be_bytes();
            frame([0x02, 0x10, b[0], b[1], b[2], b[3]], [0xff; 6], None)
        })
        .collect();
    for chunk in frames.chunks(50) {
        let out = h.send(0, 1, chunk);
        assert_eq!(
            out[1].len(),
            chunk.len(),
            "frames still forwarded past the limit"
        );
    }
    let t = &h.snap.bridges[0].table;
    assert_eq!(t.len(), 64);
    assert_eq!(h.event(Event::MacLearned), 64);
    assert_eq!(
        h.event(Event::MacLimit) + h.event(Event::MacTableFull),
        200 - 64
    );
}

#[test]
fn unknown_unicast_flooding_can_be_turned_off() {
    let mut bd = bridge("br", &access(&[0, 1, 2]), 100);
    bd.flood_unknown_unicast = false;
    let mut h = Harness::new(snapshot(vec![bd], vec![]));
    let out = h.send(
        0,
        1,
        &[frame(mac(1), mac(2), None), frame(mac(1), [0xff; 6], None)],
    );
    assert_eq!(
        (out[1].len(), out[2].len()),
        (1, 1),
        "only the broadcast crossed"
    );
    assert_eq!(h.drops(DropReason::UnknownUnicast), 1);
}

#[test]
fn static_entries_win_and_gateway_frames_go_local() {
    let mut bd = bridge("br", &access(&[0, 1, 2]), 100);
    bd.statics = vec![(mac_key(&mac(0x55)), 2)];
    bd.gateway_mac = Some(mac(0xfe));
    let mut h = Harness::new(snapshot(vec![bd], vec![]));
    let out = h.send(0, 1, &[frame(mac(1), mac(0x55), None)]);
    assert_eq!(
        (out[1].len(), out[2].len()),
        (0, 1),
        "static entry used without flooding"
    );
    // The static MAC showing up elsewhere does not move it.
    h.send(1, 1, &[frame(mac(0x55), [0xff; 6], None)]);
    assert_eq!(h.snap.bridges[0].table.lookup(&mac(0x55)), None);
    let out = h.send(0, 1, &[frame(mac(1), mac(0x55), None)]);
    assert_eq!(out[2].len(), 1);
    let out = h.send(0, 1, &[frame(mac(1), mac(0xfe), None)]);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::NoLocalStack), 1);
}

#[test]
fn vlans_pop_on_trunk_ingress_push_on_trunk_egress_and_stay_apart() {
    // Port 0: trunk with VLANs 10 (red) and 20 (blue). Ports 1, 2: access red; port 3: access blue.
    let red = bridge(
        "red",
        &[
            (1, Egress::Untagged),
            (2, Egress::Untagged),
            (0, Egress::Tagged(10)),
        ],
        100,
    );
    let blue = bridge(
        "blue",
        &[(3, Egress::Untagged), (0, Egress::Tagged(20))],
        100,
    );
    let mut h = Harness::new(snapshot(vec![red, blue], vec![]));
    // Tagged 10 in on the trunk: reaches red's access ports untagged, never blue's.
    let out = h.send(0, 1, &[frame(mac(1), [0xff; 6], Some(10))]);
    assert_eq!(
        out.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![0, 1, 1, 0, 0, 0]
    );
    assert_eq!(out[1][0], frame(mac(1), [0xff; 6], None), "tag popped");
    // Untagged from blue's access port: leaves the trunk tagged 20.
    let out = h.send(3, 1, &[frame(mac(3), [0xff; 6], None)]);
    assert_eq!(out[0].len(), 1);
    assert_eq!(vlan_of(&out[0][0]), Some(20));
    assert_eq!(
        out[0][0],
        frame(mac(3), [0xff; 6], Some(20)),
        "tag pushed, frame otherwise intact"
    );
    // A VLAN the trunk does not carry, a tagged frame on an access port: filtered.
    h.send(0, 1, &[frame(mac(1), [0xff; 6], Some(30))]);
    h.send(1, 1, &[frame(mac(1), [0xff; 6], Some(10))]);
    assert_eq!(h.drops(DropReason::VlanFiltered), 2);
    // Priority tag (VID 0) on an access port is the native VLAN.
    let out = h.send(1, 1, &[frame(mac(4), [0xff; 6], Some(0))]);
    assert_eq!(out[2].len(), 1);
}

#[test]
fn qinq_runts_and_bad_sources_are_dropped_and_counted() {
    let mut h = Harness::new(snapshot(vec![bridge("br", &access(&[0, 1]), 100)], vec![]));
    let mut qinq = frame(mac(1), [0xff; 6], Some(5));
    qinq.splice(12..12, [0x88, 0xa8, 0x00, 0x07]);
    let full = frame(mac(1), [0xff; 6], None);
    let mut frames = vec![qinq];
    frames.extend((0..14).map(|n| full[..n].to_vec()));
    frames.push(frame([0x03, 0, 0, 0, 0, 1], [0xff; 6], None)); // multicast source
    frames.push(frame([0; 6], [0xff; 6], None)); // zero source
    let out = h.send(0, 1, &frames);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::Qinq), 1);
    assert_eq!(h.drops(DropReason::Truncated), 14);
    assert_eq!(h.drops(DropReason::BadSourceMac), 2);
    assert_eq!(h.snap.bridges[0].table.len(), 0);
}

fn macvlan(
    uplink: u16,
    vlan: Option<u16>,
    eps: &[(u16, [u8; 6])],
    host: Option<[u8; 6]>,
) -> MacvlanNet {
    let mut by_mac: Vec<(u64, u16)> = eps
        .iter()
        .enumerate()
        .map(|(i, (_, m))| (mac_key(m), i as u16))
        .collect();
    by_mac.sort_unstable();
    MacvlanNet {
        name: "mv".into(),
        uplink,
        uplink_egress: vlan.map_or(Egress::Untagged, Egress::Tagged),
        endpoints: eps.to_vec(),
        by_mac,
        host_mac: host,
        allow_host: false,
    }
}

#[test]
fn macvlan_demuxes_by_destination_mac_and_switches_locally() {
    let host = mac(0xee);
    let mv = macvlan(0, Some(30), &[(1, mac(0x11)), (2, mac(0x22))], Some(host));
    let mut h = Harness::new(snapshot(vec![], vec![mv]));
    // From the LAN, tagged 30: to each endpoint by MAC, untagged.
    let out = h.send(
        0,
        1,
        &[
            frame(mac(0x99), mac(0x22), Some(30)),
            frame(mac(0x99), mac(0x11), Some(30)),
        ],
    );
    assert_eq!((out[1].len(), out[2].len()), (1, 1));
    assert_eq!(vlan_of(&out[2][0]), None);
    // Broadcast from the LAN: every endpoint.
    let out = h.send(0, 1, &[frame(mac(0x99), [0xff; 6], Some(30))]);
    assert_eq!((out[1].len(), out[2].len()), (1, 1));
    // Unknown MAC, untagged (no untagged macvlan on this uplink): dropped.
    h.send(
        0,
        1,
        &[
            frame(mac(0x99), mac(0x33), Some(30)),
            frame(mac(0x99), mac(0x11), None),
        ],
    );
    assert_eq!(h.drops(DropReason::NoEndpoint), 1);
    assert_eq!(h.drops(DropReason::VlanFiltered), 1);
    // Endpoint to endpoint: switched locally, not out of the uplink.
    let out = h.send(1, 1, &[frame(mac(0x11), mac(0x22), None)]);
    assert_eq!((out[0].len(), out[2].len()), (0, 1));
    // Endpoint to the LAN: out of the uplink, tagged 30; broadcast: uplink and the other endpoint.
    let out = h.send(
        1,
        1,
        &[
            frame(mac(0x11), mac(0x99), None),
            frame(mac(0x11), [0xff; 6], None),
        ],
    );
    assert_eq!((out[0].len(), out[2].len()), (2, 1));
    assert!(out[0].iter().all(|f| vlan_of(f) == Some(30)));
}

#[test]
fn macvlan_isolates_endpoints_from_the_host_unless_allowed() {
    let host = mac(0xee);
    let mut h = Harness::new(snapshot(
        vec![],
        vec![macvlan(0, None, &[(1, mac(0x11))], Some(host))],
    ));
    let out = h.send(1, 1, &[frame(mac(0x11), host, None)]);
    assert!(out.iter().all(Vec::is_empty));
    let out = h.send(0, 1, &[frame(host, mac(0x11), None)]);
    assert!(out.iter().all(Vec::is_empty));
    assert_eq!(h.drops(DropReason::HostIsolated), 2);
    let mut allowed = macvlan(0, None, &[(1, mac(0x11))], Some(host));
    allowed.allow_host = true;
    let mut h = Harness::new(snapshot(vec![], vec![allowed]));
    let out = h.send(1, 1, &[frame(mac(0x11), host, None)]);
    assert_eq!(out[0].len(), 1);
    let out = h.send(0, 1, &[frame(host, mac(0x11), None)]);
    assert_eq!(out[1].len(), 1);
}

#[test]
fn hostile_bursts_never_panic_and_every_frame_gets_a_verdict() {
    let red = bridge(
        "red",
        &[(1, Egress::Untagged), (0, Egress::Tagged(10))],
        1000,
    );
    let mut h = Harness::new(snapshot(
        vec![red],
        vec![macvlan(2, None, &[(3, mac(0x11))], None)],
    ));
    let mut x: u64 = 0x1234_5678;
    for round in 0..300 {
        let frames: Vec<Vec<u8>> = (0..16)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = (x % 80) as usize;
                let mut f: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
                if len > 13 && x.is_multiple_of(3) {
                    f[12] = 0x81;
                    f[13] = 0x00;
                }
                f
            })
            .collect();
        let port = (round % 4) as u16;
        let out = h.send(port, round, &frames);
        let sent: usize = out.iter().map(Vec::len).sum();
        assert!(sent <= 16 * PORTS);
    }
    h.snap.bridges[0].table.age(10_000, 300);
}
