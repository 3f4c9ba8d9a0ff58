//! The VXLAN overlay driven through `Snapshot` as a `Processor`, on a hand-built topology:
//!
//! - ports 0 and 1: access ports of overlay bridge domain 0 (VNI 42), local endpoint A on port 0;
//! - port 2: the underlay, a routed port (interface 0, MAC `U`, 192.0.2.1/24 = the local VTEP);
//! - remote VTEPs 192.0.2.2 (MAC `R2`) and 192.0.2.3 (MAC `R3`), static neighbours, both in the flood list.
//!
//! Encapsulation is checked against a hand-written byte vector, decapsulation on frames built with etherparse,
//! and hostile input (a proptest over random bytes) must end in counted drops, never a panic.

use dataplane::worker::{BurstCtx, Processor, TxBatches};
use dataplane::{Burst, DropReason, Event, Pool, WorkerCounters};
use etherparse::{PacketBuilder, SlicedPacket};
use pipelines::bridge::mac_table::MacTable;
use pipelines::bridge::{mac_key, BridgeDomain, Egress};
use pipelines::fib::{Lpm4, Lpm6};
use pipelines::l2::{Domain, L2Ingress};
use pipelines::l3::neigh::{NeighKey, NeighTable};
use pipelines::l3::{link_local_of, Adjacency, Attach, Interface, L3Tables};
use pipelines::snapshot::{PortRole, WorkerState};
use pipelines::vxlan::fdb::{self, VtepTable};
use pipelines::vxlan::{vtep_port, Overlay, VxlanTables};
use pipelines::wire::vxlan::{entropy_port, UdpPacket, VxlanError, VxlanPacket};
use pipelines::Snapshot;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::sync::Arc;

type Mac = [u8; 6];

const PORTS: usize = 3;
const SEC: u64 = 1_000_000_000;
const T: u64 = 100 * SEC;
const UNDERLAY: u16 = 2;

/// The router's MAC on the underlay.
const U: Mac = [0x02, 0x11, 0, 0, 0, 1];
/// The remote VTEPs' MACs.
const R2: Mac = [0x02, 0x22, 0, 0, 0, 2];
const R3: Mac = [0x02, 0x22, 0, 0, 0, 3];
/// Local endpoints.
const A: Mac = [0x02, 0xaa, 0, 0, 0, 1];
/// A remote endpoint behind VTEP .2 (static), and one learned.
const B: Mac = [0x02, 0xbb, 0, 0, 0, 2];
const D: Mac = [0x02, 0xbb, 0, 0, 0, 4];
const BCAST: Mac = [0xff; 6];

const LOCAL: [u8; 4] = [192, 0, 2, 1];
const VTEP2: [u8; 4] = [192, 0, 2, 2];
const VTEP3: [u8; 4] = [192, 0, 2, 3];
const VNI: u32 = 42;

struct Opts {
    df: bool,
    mtu: u16,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            df: false,
            mtu: 1450,
        }
    }
}

fn snapshot(o: &Opts) -> Snapshot {
    let vteps = Arc::new(VtepTable::new(64));
    let v2 = vtep_port(vteps.intern(VTEP2).unwrap());
    let v3 = vtep_port(vteps.intern(VTEP3).unwrap());
    let overlay = Overlay {
        domain: 0,
        vni: VNI,
        local: LOCAL,
        udp_port: 4789,
        df: o.df,
        ttl: 64,
        mtu: o.mtu,
        flood: vec![v2, v3],
        fed: Arc::new(MacTable::new(1024)),
    };
    let vx = Egress::Vxlan { domain: 0 };
    let members = vec![
        (0, Egress::Untagged),
        (1, Egress::Untagged),
        (v2, vx),
        (v3, vx),
    ];
    let bridge = BridgeDomain {
        name: "ov".into(),
        members,
        egress: vec![Some(Egress::Untagged), Some(Egress::Untagged), None],
        table: Arc::new(MacTable::new(1024)),
        statics: vec![(mac_key(&B), v2)],
        flood_unknown_unicast: true,
        gateway_mac: None,
        gateway_iface: None,
        aging_s: 300,
        overlay: Some(Arc::new(overlay)),
    };
    let ifc = Interface {
        name: "u".into(),
        mac: U,
        attach: Attach::Port {
            port: UNDERLAY,
            egress: Egress::Untagged,
        },
        mtu: 1500,
        v4: vec![(Ipv4Addr::from(LOCAL), 24)],
        v6: vec![],
        link_local: link_local_of(&U),
        proxy_arp: false,
    };
    let adj = vec![Adjacency::Local, Adjacency::Attached { iface: 0 }];
    let fib4 = Lpm4::build(
        vec![
            (Ipv4Addr::new(192, 0, 2, 0), 24, 1),
            (Ipv4Addr::from(LOCAL), 32, 0),
        ],
        16,
    )
    .unwrap();
    let neigh = NeighTable::new(64);
    neigh.set_static(&NeighKey::v4(0, u32::from_be_bytes(VTEP2)), &R2);
    neigh.set_static(&NeighKey::v4(0, u32::from_be_bytes(VTEP3)), &R3);
    let l3 = L3Tables {
        ifaces: vec![ifc],
        fib4: Arc::new(fib4),
        fib6: Arc::new(Lpm6::build(vec![], 16).unwrap()),
        adj,
        neigh: Arc::new(neigh),
        announce_id: 0,
        ..Default::default()
    };
    let mut ing = L2Ingress::default();
    ing.add(None, Domain::Bridge(0));
    Snapshot {
        generation: 1,
        port_names: Arc::new(vec!["a".into(), "c".into(), "u".into()]),
        roles: Arc::new(vec![
            PortRole::L2(Box::new(ing.clone())),
            PortRole::L2(Box::new(ing)),
            PortRole::L3(0),
        ]),
        bridges: Arc::new(vec![bridge]),
        l3: Arc::new(l3),
        vxlan: Arc::new(VxlanTables {
            by_vni: vec![(VNI, 0)],
            local: vec![(LOCAL, 4789)],
            vteps,
        }),
        ..Default::default()
    }
}

type Out = Vec<Vec<Vec<u8>>>;

/// Declaration order matters: packets held by the state and batches go home before the pool.
struct Harness {
    state: WorkerState,
    out: TxBatches,
    snap: Snapshot,
    counters: Arc<WorkerCounters>,
    pool: Pool,
}

impl Harness {
    fn new(o: Opts) -> Harness {
        let pool = Pool::for_test(4096, 2048);
        let snap = snapshot(&o);
        let (out, counters) = TxBatches::for_test(PORTS);
        let state = snap.new_state(0);
        Harness {
            state,
            out,
            snap,
            counters,
            pool,
        }
    }

    fn send(&mut self, port: u16, frames: &[Vec<u8>]) -> Out {
        let mut b = Burst::new(256);
        for f in frames {
            let mut p = self.pool.alloc().expect("pool has room");
            assert!(p.set_frame(f));
            p.meta_mut().in_port = port;
            b.push(p).unwrap();
        }
        let ctx = BurstCtx {
            worker: 0,
            in_port: port,
            now_ns: T,
        };
        self.snap
            .process(&mut self.state, &ctx, &mut b, &mut self.out);
        assert!(b.is_empty(), "every packet got a verdict");
        assert_eq!(self.out.staged(), 0, "nothing left staged");
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

    fn bridge(&self) -> &BridgeDomain {
        &self.snap.bridges[0]
    }
}

/// An inner frame: Ethernet/IPv4/UDP from `src` to `dst` with `payload` bytes of payload.
fn inner(src: Mac, dst: Mac, sport: u16, payload: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .ipv4([10, 9, 0, 1], [10, 9, 0, 2], 64)
        .udp(sport, 5000)
        .write(&mut v, &vec![0x5a; payload])
        .unwrap();
    v
}

/// A VXLAN header with `flags` and `vni`.
fn vxlan_hdr(flags: u8, vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    [flags, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// An underlay frame from VTEP `src` to the local VTEP carrying `payload` in UDP to `dport`.
fn underlay(src: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(R2, U)
        .ipv4(src, LOCAL, 64)
        .udp(54321, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn encapsulated(src: [u8; 4], vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut p = vxlan_hdr(0x08, vni).to_vec();
    p.extend_from_slice(frame);
    underlay(src, 4789, &p)
}

/// The hand-checked outer headers of the first encapsulated packet of a 60-byte inner frame to VTEP .2:
/// Ethernet R2 <- U, IPv4 192.0.2.1 -> 192.0.2.2, total length 96 (36 + 60), id 0, no DF, TTL 64, UDP, and
/// the checksum worked out by hand:
///   0x4500 + 0x0060 + 0x0000 + 0x0000 + 0x4011 + 0xc000 + 0x0201 + 0xc000 + 0x0202 = 0x20974
///   fold: 0x0974 + 0x2 = 0x0976; complement: 0xf689.
/// UDP: source port (the entropy, filled in by the test), 4789, length 76, checksum 0; VXLAN: I flag, VNI 42.
fn expected_outer(sport: u16) -> Vec<u8> {
    let mut v = vec![
        0x02, 0x22, 0, 0, 0, 2, // dst MAC R2
        0x02, 0x11, 0, 0, 0, 1, // src MAC U
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x60, // version/IHL, TOS, total length 96
        0x00, 0x00, 0x00, 0x00, // id 0, no flags
        0x40, 0x11, 0xf6, 0x89, // TTL 64, UDP, checksum
        192, 0, 2, 1, // src
        192, 0, 2, 2, // dst
    ];
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&[
        0x12, 0xb5, // 4789
        0x00, 0x4c, // UDP length 76
        0x00, 0x00, // no checksum
        0x08, 0, 0, 0, 0, 0, 42, 0, // VXLAN
    ]);
    v
}

#[test]
fn encap_matches_hand_checked_bytes() {
    let mut h = Harness::new(Opts::default());
    let f = inner(A, B, 1000, 18);
    assert_eq!(f.len(), 60);
    let out = h.send(0, std::slice::from_ref(&f));
    assert_eq!(out[0].len() + out[1].len(), 0, "B is remote: nothing local");
    assert_eq!(out[2].len(), 1);
    let pkt = &out[2][0];
    let sport = entropy_port(pipelines::vxlan::encap::inner_hash(&f));
    let mut want = expected_outer(sport);
    want.extend_from_slice(&f);
    assert_eq!(pkt, &want);
    assert!((49152..=65535).contains(&sport));
    assert_eq!(h.event(Event::VxlanEncap), 1);
    // etherparse agrees the outer IPv4 checksum is right.
    let s = SlicedPacket::from_ethernet(pkt).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else {
        panic!("not IPv4")
    };
    assert_eq!(
        ip.header().header_checksum(),
        ip.header().to_header().calc_header_checksum()
    );
}

#[test]
fn encap_df_and_ident() {
    let mut h = Harness::new(Opts {
        df: true,
        ..Opts::default()
    });
    let out = h.send(0, &[inner(A, B, 1, 18), inner(A, B, 2, 18)]);
    assert_eq!(out[2].len(), 2);
    for p in &out[2] {
        // flags DF, id 0
        assert_eq!(&p[18..22], &[0, 0, 0x40, 0]);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&p[14..]).unwrap();
        assert!(ip.dont_fragment());
        assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
    }
    let mut h = Harness::new(Opts::default());
    let out = h.send(0, &[inner(A, B, 1, 18), inner(A, B, 2, 18)]);
    let ids: Vec<u16> = out[2]
        .iter()
        .map(|p| u16::from_be_bytes([p[18], p[19]]))
        .collect();
    assert_eq!(ids, vec![0, 1], "without DF every packet gets its own id");
}

/// From the second burst on (the worker's next-hop cache warm), frames to a VTEP take the template: the same
/// bytes as the general path but for the identification and checksum, and no header built before a
/// neighbour change or a reload is served after it.
#[test]
fn encap_template_matches_and_follows_changes() {
    let mut h = Harness::new(Opts::default());
    let f = inner(A, B, 1000, 18);
    let check = |p: &[u8], mac: Mac, id: u16, df: bool| {
        assert_eq!(&p[..6], &mac, "next hop's MAC");
        assert_eq!(&p[6..12], &U);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&p[14..]).unwrap();
        assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
        assert_eq!((ip.identification(), ip.dont_fragment()), (id, df));
        assert_eq!(ip.total_len() as usize, p.len() - 14);
        assert_eq!(&p[50..], &f[..]);
    };
    let cold = h.send(0, &[f.clone(), f.clone()]);
    let warm = h.send(0, &[f.clone(), f.clone()]);
    assert_eq!((cold[2].len(), warm[2].len()), (2, 2));
    for (k, p) in cold[2].iter().chain(&warm[2]).enumerate() {
        check(p, R2, k as u16, false);
        let (a, b) = (&cold[2][0], p);
        assert_eq!(
            (&a[..18], &a[20..24], &a[26..]),
            (&b[..18], &b[20..24], &b[26..])
        );
    }
    assert_eq!(h.event(Event::VxlanEncap), 4);
    // The overlay MTU holds on the fast path too.
    let big = inner(A, B, 1, 1450);
    let out = h.send(0, &[f.clone(), big, f.clone()]);
    assert_eq!(out[2].len(), 2);
    assert_eq!(h.drops(DropReason::VxlanMtu), 1);
    // The next hop's MAC changes: the very next burst uses the new one, and so do those after it.
    let key = NeighKey::v4(0, u32::from_be_bytes(VTEP2));
    assert!(h.snap.l3.neigh.set_static(&key, &R3));
    for _ in 0..2 {
        let out = h.send(0, &[f.clone(), f.clone()]);
        assert_eq!(out[2].len(), 2);
        for p in &out[2] {
            assert_eq!(&p[..6], &R3);
        }
    }
    // A reload (another generation, DF now set, the neighbour as configured): no header of the old one.
    let mut s = snapshot(&Opts {
        df: true,
        ..Opts::default()
    });
    s.generation = 2;
    h.snap = s;
    for _ in 0..2 {
        let out = h.send(0, &[f.clone(), f.clone()]);
        assert_eq!(out[2].len(), 2);
        for p in &out[2] {
            check(p, R2, 0, true);
        }
    }
}

/// The encapsulation remembers every VTEP a burst met (in slots by virtual port): frames to interleaved VTEPs,
/// including two that share a slot, each leave with their own VTEP's outer header, in every burst.
#[test]
fn encap_keeps_interleaved_vteps_apart() {
    let mut h = Harness::new(Opts::default());
    let vt = h.snap.vxlan.vteps.clone();
    // Ten VTEPs: .2 and .3 of the harness, then .4 to .11; index 8 (.10) shares a slot with index 0 (.2).
    let vteps: Vec<[u8; 4]> = (2..12).map(|d| [192, 0, 2, d]).collect();
    let slots = pipelines::vxlan::encap::VTEP_SLOTS;
    let ports: Vec<u16> = vteps
        .iter()
        .map(|&v| vtep_port(vt.intern(v).unwrap()))
        .collect();
    assert_eq!(ports[0] as usize % slots, ports[8] as usize % slots);
    let dst = |k: usize| -> Mac { [0x02, 0xdd, 0, 0, 0, k as u8] };
    let vmac = |k: usize| -> Mac { [0x02, 0x22, 0, 0, 1, k as u8] };
    for (k, &v) in vteps.iter().enumerate() {
        assert!(h
            .snap
            .l3
            .neigh
            .set_static(&NeighKey::v4(0, u32::from_be_bytes(v)), &vmac(k)));
        h.bridge().table.learn(&dst(k), ports[k], (T / SEC) as u32);
    }
    // Interleaved: 0, 1, 8, 0, 2, 8, 9, 0, ... (0 and 8 in turn in one slot).
    let order = [0, 1, 8, 0, 2, 8, 9, 0, 3, 4, 5, 6, 7, 8, 0, 1];
    let frames: Vec<Vec<u8>> = order
        .iter()
        .map(|&k| inner(A, dst(k), 1000 + k as u16, 18))
        .collect();
    for round in 0..2 {
        let out = h.send(0, &frames);
        assert_eq!(out[2].len(), order.len(), "round {round}");
        for ((p, &k), f) in out[2].iter().zip(&order).zip(&frames) {
            assert_eq!(&p[..6], &vmac(k), "VTEP {k}'s MAC");
            assert_eq!(&p[26..30], &LOCAL);
            assert_eq!(&p[30..34], &vteps[k], "VTEP {k}'s address");
            let ip = etherparse::Ipv4HeaderSlice::from_slice(&p[14..]).unwrap();
            assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
            assert_eq!(&p[50..], &f[..]);
        }
    }
    assert_eq!(h.event(Event::VxlanEncap), 2 * order.len() as u64);
}

/// The decapsulation remembers recent senders' VTEPs (in slots by address): senders that alternate, two of
/// them sharing a slot (.2 and .18), are still told apart.
#[test]
fn decap_tells_alternating_vteps_apart() {
    let mut h = Harness::new(Opts::default());
    let vtep18 = [192, 0, 2, 18];
    let (x, y, z) = (
        [0x02, 0xcc, 0, 0, 0, 1],
        [0x02, 0xcc, 0, 0, 0, 2],
        [0x02, 0xcc, 0, 0, 0, 3],
    );
    let frames = [
        encapsulated(VTEP2, VNI, &inner(x, A, 1, 18)),
        encapsulated(VTEP3, VNI, &inner(y, A, 1, 18)),
        encapsulated(vtep18, VNI, &inner(z, A, 1, 18)),
        encapsulated(VTEP2, VNI, &inner(x, A, 1, 18)),
        encapsulated(vtep18, VNI, &inner(z, A, 1, 18)),
    ];
    h.send(UNDERLAY, &frames);
    h.send(UNDERLAY, &frames[1..3]);
    h.send(UNDERLAY, &frames[3..]);
    let vt = &h.snap.vxlan.vteps;
    assert_eq!(h.bridge().table.lookup(&x), vt.find(VTEP2).map(vtep_port));
    assert_eq!(h.bridge().table.lookup(&y), vt.find(VTEP3).map(vtep_port));
    assert_eq!(h.bridge().table.lookup(&z), vt.find(vtep18).map(vtep_port));
    assert!(vt.find(vtep18).is_some());
    assert_eq!(h.event(Event::VxlanDecap), 9);
}

#[test]
fn decap_strips_learns_and_floods_locally_only() {
    let mut h = Harness::new(Opts::default());
    let f = inner(D, A, 7, 30);
    let out = h.send(UNDERLAY, &[encapsulated(VTEP3, VNI, &f)]);
    // A is unknown: flooded to the local ports, never back into the overlay (split horizon).
    assert_eq!(out[0], vec![f.clone()]);
    assert_eq!(out[1], vec![f.clone()]);
    assert!(out[2].is_empty());
    assert_eq!(h.event(Event::VxlanDecap), 1);
    assert_eq!(h.event(Event::VxlanFloods), 0);
    // D was learned against VTEP .3's virtual port.
    let v3 = h.snap.vxlan.vteps.find(VTEP3).map(vtep_port);
    assert_eq!(h.bridge().table.lookup(&D), v3);
    // A answers D: encapsulated to .3 only.
    let back = inner(A, D, 5000, 30);
    let out = h.send(0, std::slice::from_ref(&back));
    assert!(out[1].is_empty());
    assert_eq!(out[2].len(), 1);
    assert_eq!(&out[2][0][30..34], &VTEP3);
    assert_eq!(&out[2][0][..6], &R3);
    assert_eq!(&out[2][0][50..], &back[..]);
    // And the entry shows up in the FDB listing as learned.
    let e = fdb::entries(h.bridge(), &h.snap.vxlan.vteps, 100);
    assert!(e.iter().any(|e| e.mac == D
        && e.vtep == Ipv4Addr::from(VTEP3)
        && e.source == fdb::Source::Learned));
    assert!(e
        .iter()
        .any(|e| e.mac == B && e.source == fdb::Source::Static));
    assert!(
        !e.iter().any(|e| e.mac == A),
        "local MACs are not remote entries"
    );
}

#[test]
fn decap_to_known_local_mac_is_unicast() {
    let mut h = Harness::new(Opts::default());
    h.send(0, &[inner(A, B, 1, 18)]);
    let f = inner(B, A, 1, 18);
    let out = h.send(UNDERLAY, &[encapsulated(VTEP2, VNI, &f)]);
    assert_eq!(out[0], vec![f]);
    assert!(out[1].is_empty() && out[2].is_empty());
    // B is static: decap does not learn over it.
    assert_eq!(h.bridge().table.lookup(&B), None);
}

#[test]
fn broadcast_is_replicated_to_every_vtep_in_the_flood_list() {
    let mut h = Harness::new(Opts::default());
    let f = inner(A, BCAST, 1, 18);
    let out = h.send(0, std::slice::from_ref(&f));
    assert_eq!(out[1], vec![f.clone()]);
    assert_eq!(out[2].len(), 2, "head-end replication: one copy per VTEP");
    let mut dsts: Vec<[u8; 4]> = out[2]
        .iter()
        .map(|p| p[30..34].try_into().unwrap())
        .collect();
    dsts.sort();
    assert_eq!(dsts, vec![VTEP2, VTEP3]);
    for p in &out[2] {
        assert_eq!(&p[50..], &f[..]);
    }
    assert_eq!(h.event(Event::VxlanFloods), 1);
    assert_eq!(h.event(Event::VxlanEncap), 2);
    // Unknown unicast too.
    let out = h.send(0, &[inner(A, [0x02, 0xee, 0, 0, 0, 9], 1, 18)]);
    assert_eq!((out[1].len(), out[2].len()), (1, 2));
    // A broadcast from a remote VTEP goes to local ports only.
    let out = h.send(
        UNDERLAY,
        &[encapsulated(VTEP2, VNI, &inner(D, BCAST, 1, 18))],
    );
    assert_eq!((out[0].len(), out[1].len(), out[2].len()), (1, 1, 0));
}

#[test]
fn remote_to_remote_is_filtered() {
    let mut h = Harness::new(Opts::default());
    // D learned behind .3, then .2 sends to D: not hairpinned into the overlay.
    h.send(UNDERLAY, &[encapsulated(VTEP3, VNI, &inner(D, A, 1, 18))]);
    let out = h.send(UNDERLAY, &[encapsulated(VTEP2, VNI, &inner(B, D, 1, 18))]);
    assert!(out.iter().all(|o| o.is_empty()));
    assert_eq!(h.drops(DropReason::BridgeFiltered), 1);
}

#[test]
fn source_port_entropy_spreads_flows() {
    let mut h = Harness::new(Opts::default());
    let mut ports = std::collections::HashSet::new();
    for chunk in 0..(1000 / 100) {
        let frames: Vec<Vec<u8>> = (0..100)
            .map(|i| inner(A, B, (chunk * 100 + i) as u16 + 1024, 18))
            .collect();
        let out = h.send(0, &frames);
        assert_eq!(out[2].len(), 100);
        for p in &out[2] {
            let sport = u16::from_be_bytes([p[34], p[35]]);
            assert!(sport >= 49152);
            ports.insert(sport);
        }
    }
    // 1000 flows over 16384 ports: ~970 distinct expected if the hash is uniform.
    assert!(
        ports.len() >= 900,
        "only {} distinct source ports",
        ports.len()
    );
    // The same flow always gets the same port (no reordering across paths).
    let a = h.send(0, &[inner(A, B, 4242, 18)]);
    let b = h.send(0, &[inner(A, B, 4242, 18)]);
    assert_eq!(a[2][0][34..36], b[2][0][34..36]);
}

#[test]
fn overlay_mtu_is_enforced() {
    let mut h = Harness::new(Opts::default());
    // Inner IP 1450 bytes (20 + 8 + 1422): fits; the outer IP packet is exactly the underlay MTU.
    let fits = inner(A, B, 1, 1422);
    let big = inner(A, B, 1, 1423);
    let out = h.send(0, &[fits, big]);
    assert_eq!(out[2].len(), 1);
    assert_eq!(out[2][0].len(), 1514);
    assert_eq!(u16::from_be_bytes([out[2][0][16], out[2][0][17]]), 1500);
    assert_eq!(h.drops(DropReason::VxlanMtu), 1);
    // A misconfigured overlay MTU still never produces an outer packet over the underlay MTU.
    let mut h = Harness::new(Opts {
        mtu: 1480,
        ..Opts::default()
    });
    let out = h.send(0, &[inner(A, B, 1, 1423)]);
    assert!(out[2].is_empty());
    assert_eq!(h.drops(DropReason::MtuExceeded), 1);
}

#[test]
fn fed_entries_add_and_remove_at_run_time() {
    let mut h = Harness::new(Opts::default());
    let e: Mac = [0x02, 0xbb, 0, 0, 0, 0xe];
    let ov = h.snap.bridges[0].overlay.clone().unwrap();
    let vteps = h.snap.vxlan.vteps.clone();
    fdb::feed_add(&ov, &vteps, &e, Ipv4Addr::new(192, 0, 2, 3)).unwrap();
    let out = h.send(0, &[inner(A, e, 1, 18)]);
    assert_eq!((out[1].len(), out[2].len()), (0, 1), "unicast to .3");
    assert_eq!(&out[2][0][30..34], &VTEP3);
    // A new VTEP (not in the flood list) gets a virtual port on the fly; no ARP entry: the packet waits.
    fdb::feed_add(&ov, &vteps, &e, Ipv4Addr::new(192, 0, 2, 9)).unwrap();
    assert!(vteps.find([192, 0, 2, 9]).is_some());
    assert!(fdb::feed_add(&ov, &vteps, &BCAST, Ipv4Addr::new(192, 0, 2, 3)).is_err());
    assert!(fdb::feed_del(&ov, &e));
    assert!(!fdb::feed_del(&ov, &e));
    let out = h.send(0, &[inner(A, e, 1, 18)]);
    assert_eq!(
        (out[1].len(), out[2].len()),
        (1, 2),
        "unknown again: flooded"
    );
}

#[test]
fn learned_remote_entries_age_out() {
    let mut h = Harness::new(Opts::default());
    h.send(UNDERLAY, &[encapsulated(VTEP3, VNI, &inner(D, A, 1, 18))]);
    let t = &h.bridge().table;
    assert!(t.lookup(&D).is_some());
    assert_eq!(t.age(100 + 10, 300), 0);
    assert_eq!(t.age(100 + 301, 300), 1);
    assert_eq!(t.lookup(&D), None);
}

#[test]
fn hostile_vxlan_is_dropped_by_reason() {
    let mut h = Harness::new(Opts::default());
    let f = inner(D, A, 1, 18);
    // Unknown VNI.
    h.send(UNDERLAY, &[encapsulated(VTEP2, 43, &f)]);
    assert_eq!(h.drops(DropReason::VxlanUnknownVni), 1);
    // No I flag; other bits set without I.
    for flags in [0x00, 0x80, 0xf7] {
        let mut p = vxlan_hdr(flags, VNI).to_vec();
        p.extend_from_slice(&f);
        h.send(UNDERLAY, &[underlay(VTEP2, 4789, &p)]);
    }
    assert_eq!(h.drops(DropReason::VxlanBadFlags), 3);
    // Reserved bits besides I are ignored (RFC 7348).
    let mut p = vxlan_hdr(0xff, VNI).to_vec();
    p.extend_from_slice(&f);
    let out = h.send(UNDERLAY, &[underlay(VTEP2, 4789, &p)]);
    assert_eq!(out[0].len() + out[1].len(), 2);
    // Header cut short, inner frame shorter than Ethernet.
    h.send(UNDERLAY, &[underlay(VTEP2, 4789, &[0x08, 0, 0])]);
    let mut p = vxlan_hdr(0x08, VNI).to_vec();
    p.extend_from_slice(&f[..13]);
    h.send(UNDERLAY, &[underlay(VTEP2, 4789, &p)]);
    assert_eq!(h.drops(DropReason::VxlanMalformed), 2);
    // UDP checksum garbage (etherparse computes a correct one; break it).
    let mut g = encapsulated(VTEP2, VNI, &f);
    g[40] ^= 0x55;
    g[41] ^= 0xaa;
    h.send(UNDERLAY, &[g]);
    assert_eq!(h.drops(DropReason::BadChecksum), 1);
    // UDP length field beyond the packet (only UDP's bytes change: the outer IPv4 header stays valid).
    let mut g = encapsulated(VTEP2, VNI, &f);
    g[38] = 0xff;
    h.send(UNDERLAY, &[g]);
    assert_eq!(h.drops(DropReason::VxlanMalformed), 3);
    // Truncated outer IPv4.
    let g = encapsulated(VTEP2, VNI, &f);
    h.send(UNDERLAY, &[g[..30].to_vec()]);
    assert_eq!(h.drops(DropReason::Truncated), 1);
    // Nothing leaked out anywhere, nothing decapsulated but the one with reserved bits.
    assert_eq!(h.event(Event::VxlanDecap), 1);
    // Another UDP port is not VXLAN: port unreachable from the router (ICMP, rate-limited).
    let out = h.send(UNDERLAY, &[underlay(VTEP2, 4790, &[0; 30])]);
    assert_eq!(h.drops(DropReason::LocalPortUnreachable), 1);
    assert!(out[0].is_empty() && out[1].is_empty());
}

#[test]
fn wire_views_check_what_they_read() {
    assert_eq!(
        VxlanPacket::new_checked(&[0x08u8, 0, 0][..]).unwrap_err(),
        VxlanError::Truncated
    );
    assert_eq!(
        VxlanPacket::new_checked(&vxlan_hdr(0, 5)[..]).unwrap_err(),
        VxlanError::NoVni
    );
    assert_eq!(
        VxlanPacket::new_checked(&vxlan_hdr(8, 5)[..]).unwrap_err(),
        VxlanError::ShortInner
    );
    let mut b = vxlan_hdr(8, 0xabcdef).to_vec();
    b.extend_from_slice(&[0u8; 14]);
    let v = VxlanPacket::new_checked(&b[..]).unwrap();
    assert_eq!((v.vni(), v.flags(), v.inner().len()), (0xabcdef, 8, 14));
    assert!(UdpPacket::new_checked(&[0u8; 7][..]).is_err());
    assert!(UdpPacket::new_checked(&[0, 1, 0, 2, 0, 9, 0, 0][..]).is_err());
    let u = UdpPacket::new_checked(&[0, 1, 0, 2, 0, 8, 0, 0, 0xee][..]).unwrap();
    assert_eq!((u.src_port(), u.dst_port(), u.payload().len()), (1, 2, 0));
}

#[test]
fn vtep_table_interns_once() {
    let t = VtepTable::new(4);
    let a = t.intern([10, 0, 0, 1]).unwrap();
    assert_eq!(t.intern([10, 0, 0, 1]), Some(a));
    assert_eq!(t.find([10, 0, 0, 1]), Some(a));
    assert_eq!(t.addr(a), Some([10, 0, 0, 1]));
    assert_eq!(t.intern([0, 0, 0, 0]), None);
    for i in 2..=4 {
        assert!(t.intern([10, 0, 0, i]).is_some());
    }
    assert_eq!(t.intern([10, 0, 0, 5]), None, "full");
    assert_eq!(t.len(), 4);
    // Concurrent interning of the same addresses gives one index each.
    let t = Arc::new(VtepTable::new(1000));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                (0..200u8)
                    .map(|i| t.intern([10, 1, 0, i]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let got: Vec<Vec<usize>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(got.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(t.len(), 200);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes as the UDP payload to the VXLAN port: no panic, every packet accounted for.
    #[test]
    fn random_vxlan_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..200), keep_i in any::<bool>()) {
        let mut h = Harness::new(Opts::default());
        let mut p = payload;
        if keep_i && !p.is_empty() {
            p[0] |= 0x08;
        }
        let out = h.send(UNDERLAY, &[underlay(VTEP2, 4789, &p)]);
        let sent: usize = out.iter().map(Vec::len).sum();
        let dropped: u64 = DropReason::ALL.iter().map(|r| h.drops(*r)).sum();
        prop_assert!(sent as u64 + dropped >= 1);
    }

    /// Random bytes after a valid outer Ethernet header on the underlay port: no panic.
    #[test]
    fn random_underlay_frames_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut h = Harness::new(Opts::default());
        let mut f = underlay(VTEP2, 4789, &[]);
        f.truncate(14);
        f.extend_from_slice(&tail);
        h.send(UNDERLAY, &[f]);
    }
}
