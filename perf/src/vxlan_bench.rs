//! VXLAN benchmark (`vxlan-inline`): the overlay's encapsulation or decapsulation on this thread, over ring
//! ports, every output frame checked.
//!
//! One router: overlay `ov` (VNI 42) with the endpoint port `e`, underlay `u` (a routed ring port,
//! 192.0.2.1/24), `--vteps` remote VTEPs 192.0.2.2, .3, ... (static neighbours). Flow `i` is inner frame
//! `S_i -> D_i`, through VTEP `i mod --vteps`: with several, consecutive frames go to different VTEPs, as on a
//! node that talks to many others.
//!
//! - `--mode encap`: `D_i` is learned behind its VTEP; frames enter `e`, are switched by the bridge,
//!   staged, encapsulated in their headroom and routed out of `u`. Each output must be a VXLAN packet to
//!   the flow's VTEP (address and MAC), VNI 42, the inner frame intact, outer length `frame + 50`.
//! - `--mode decap`: VXLAN packets from the flow's VTEP enter `u`; `D_i` is learned on `e`; each is checked by the
//!   L3 stage (outer IPv4 checksum), decapsulated, its inner source learned against the VTEP, and switched out
//!   of `e`. Each output must be the inner frame.
//!
//! As in `route-inline`, the receive ring is filled with `--inflight` frames, the worker polls them all
//! (timed), and the outputs are checked and turned back into inputs (untimed): the encapsulation's outer
//! headers are stripped again, and the decapsulation's are still in the headroom, where `prepend` finds them.
//! Nothing is copied, so the buffers stay few and hot and the figure is the pipeline's per-core cost.

use crate::inline::Inline;
use anyhow::{bail, Context};
use dataplane::traffic::{udp4_frame, Udp4Flow};
use dataplane::{Burst, Port};
use pipelines::l3::neigh::NeighKey;
use pipelines::vxlan::vtep_port;
use std::time::{Duration, Instant};

/// Which direction to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Bridge to a remote MAC, encapsulate, route out of the underlay.
    Encap,
    /// VXLAN in on the underlay, decapsulate, bridge to a local port.
    Decap,
}

/// `vxlan-inline` options.
#[derive(clap::Args)]
pub struct InlineArgs {
    /// Encapsulation or decapsulation.
    #[arg(long, value_enum, default_value_t = Mode::Encap)]
    mode: Mode,
    /// Packets per run (rounded up to a multiple of --inflight).
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Timed runs (the median is printed); more than one adds an untimed warm-up run first.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Frames put in the receive ring at a time (at most the ring depth, 4096).
    #[arg(long, default_value_t = 1024)]
    inflight: usize,
    /// Burst size.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Inner frame size in bytes without FCS (60: a 64-byte frame on the wire).
    #[arg(long, default_value_t = 60)]
    frame: usize,
    /// Flows (two MACs each).
    #[arg(long, default_value_t = 512)]
    flows: usize,
    /// Remote VTEPs the flows are spread over, round robin (1 to 200).
    #[arg(long, default_value_t = 1)]
    vteps: usize,
}

const DEPTH: usize = 4096;
const LOCAL: [u8; 4] = [192, 0, 2, 1];
const OVERHEAD: usize = pipelines::wire::vxlan::OVERHEAD;

/// Remote VTEP `k`'s address.
fn remote(k: usize) -> [u8; 4] {
    [192, 0, 2, 2 + k as u8]
}

/// Remote VTEP `k`'s MAC.
fn remote_mac(k: usize) -> [u8; 6] {
    [0x02, 0x22, 0, 0, 0, 2 + k as u8]
}

fn config(burst: usize, vteps: usize) -> String {
    let remotes = (0..vteps)
        .map(|k| format!("\"{}\"", std::net::Ipv4Addr::from(remote(k))))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[dataplane]
burst_size = {burst}
workers = 1
idle = "poll"

[[ports]]
name = "e"
backend = "ring"
peer = "gen_e"
depth = {DEPTH}

[[ports]]
name = "u"
backend = "ring"
peer = "gen_u"
depth = {DEPTH}
addresses = ["192.0.2.1/24"]

[[networks]]
name = "ov"
mode = "overlay"
ports = ["e"]
aging_s = 0
mac_limit = 65536

[networks.vxlan]
vni = 42
underlay = "u"
remotes = [{remotes}]
"#
    )
}

/// MAC number `i` of `side` (0: sources, 1: destinations).
fn mac(side: u8, i: usize) -> [u8; 6] {
    let b = (i as u32).to_be_bytes();
    [0x02, side, b[0], b[1], b[2], b[3]]
}

fn inner(i: usize, len: usize) -> Vec<u8> {
    udp4_frame(
        &Udp4Flow {
            src_mac: mac(0, i),
            dst_mac: mac(1, i),
            src_port: 1024 + (i % 60000) as u16,
            ..Udp4Flow::default()
        },
        len,
    )
}

/// Inner frame `f` in VXLAN from remote VTEP `k` to the router's underlay MAC `u_mac`.
fn outer(f: &[u8], k: usize, u_mac: [u8; 6], sport: u16) -> Vec<u8> {
    let mut v = vec![0u8; OVERHEAD];
    v[0..6].copy_from_slice(&u_mac);
    v[6..12].copy_from_slice(&remote_mac(k));
    v[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let o = pipelines::wire::vxlan::Outer {
        src: remote(k),
        dst: LOCAL,
        src_port: sport,
        dst_port: 4789,
        vni: 42,
        ttl: 64,
        df: false,
        ident: 0,
    };
    assert!(pipelines::wire::vxlan::write_outer(
        &mut v[14..],
        &o,
        f.len()
    ));
    v.extend_from_slice(f);
    v
}

/// Checks an encapsulated output against a flow's inner frame and VTEP `k`.
fn check_encap(p: &[u8], want: &[u8], k: usize) -> Result<(), &'static str> {
    if p.len() != want.len() + OVERHEAD {
        return Err("outer length");
    }
    if p[12..14] != [0x08, 0x00] || p[30..34] != remote(k) || p[26..30] != LOCAL {
        return Err("outer IPv4 addresses");
    }
    if p[0..6] != remote_mac(k) {
        return Err("outer destination MAC");
    }
    if p[36..38] != [0x12, 0xb5] || p[42] != 0x08 || p[46..49] != [0, 0, 42] {
        return Err("UDP port or VXLAN header");
    }
    if pipelines::wire::checksum::checksum(&p[14..34]) != 0 {
        return Err("outer IPv4 checksum");
    }
    if p[OVERHEAD..] != *want {
        return Err("inner frame");
    }
    Ok(())
}

/// `vxlan-inline`: see the module docs.
pub fn inline(a: &InlineArgs) -> anyhow::Result<()> {
    if a.inflight == 0 || a.inflight > DEPTH {
        bail!("--inflight is 1 to {DEPTH}");
    }
    if !(1..=200).contains(&a.vteps) {
        bail!("--vteps is 1 to 200");
    }
    let flows = a.flows.max(1);
    let vteps = a.vteps;
    let mut inl = Inline::new(&config(a.burst, vteps), a.burst, (a.inflight + 1024) as u32)?;
    let u_mac = {
        let snap = inl.snapshot();
        let bd = snap.bridges.first().context("overlay ov")?;
        let iface = snap
            .l3
            .ifaces
            .iter()
            .position(|i| i.name == "u")
            .context("interface u")?;
        let ports = (0..vteps)
            .map(|k| snap.vxlan.vteps.find(remote(k)).map(vtep_port))
            .collect::<Option<Vec<u16>>>()
            .context("remote VTEP")?;
        // Encap: destinations behind their VTEP. Decap: destinations local on e (port 0).
        for i in 0..flows {
            let port = if a.mode == Mode::Encap {
                ports[i % vteps]
            } else {
                0
            };
            bd.table.learn(&mac(1, i), port, 0);
        }
        for k in 0..vteps {
            if !snap.l3.neigh.set_static(
                &NeighKey::v4(iface as u16, u32::from_be_bytes(remote(k))),
                &remote_mac(k),
            ) {
                bail!("neighbour cache refused remote VTEP {k}");
            }
        }
        snap.l3.ifaces[iface].mac
    };
    let inners: Vec<Vec<u8>> = (0..flows).map(|i| inner(i, a.frame)).collect();
    let (in_port, out_peer) = match a.mode {
        Mode::Encap => ("e", "gen_u"),
        Mode::Decap => ("u", "gen_e"),
    };
    let input = |i: usize| match a.mode {
        Mode::Encap => inners[i].clone(),
        Mode::Decap => outer(&inners[i], i % vteps, u_mac, 0xc000 | i as u16),
    };
    let ring_in = inl.ring_port(in_port).context("input ring")?;
    let mut sink = inl
        .ring_peer(out_peer)
        .context("output ring")?
        .open_queue(0)?;
    // Flow of each in-flight frame, in ring order (the pipeline keeps the order of one flow... and of all).
    let mut order: std::collections::VecDeque<usize> = (0..a.inflight).map(|k| k % flows).collect();
    inl.seed(in_port, order.iter().map(|&i| input(i)))?;
    let mut out = Burst::new(256);
    let phases = a.packets.div_ceil(a.inflight as u64);
    let per_run = phases * a.inflight as u64;
    let mut mpps = Vec::new();
    let mut checked = 0u64;
    for run in 0..=a.runs {
        if run == 0 && a.runs <= 1 {
            continue; // no warm-up for a single (callgrind) run
        }
        let mut timed = Duration::ZERO;
        for _ in 0..phases {
            let target = inl.counters().rx_packets.get() + a.inflight as u64;
            let t0 = Instant::now();
            inl.poll_until(target);
            timed += t0.elapsed();
            // Untimed: check each output and turn it back into its input, in place.
            let mut back = 0;
            while sink.rx_burst(&mut out) > 0 {
                for mut p in out.drain() {
                    let i = order.pop_front().context("more outputs than inputs")?;
                    match a.mode {
                        Mode::Encap => {
                            check_encap(p.data(), &inners[i], i % vteps)
                                .map_err(|e| anyhow::anyhow!("encap is broken: {e}"))?;
                            p.strip_front(OVERHEAD);
                        }
                        Mode::Decap => {
                            if p.data() != inners[i].as_slice() {
                                bail!("decap is broken: the inner frame differs");
                            }
                            p.prepend(OVERHEAD).context("headroom")?;
                        }
                    }
                    // A received buffer starts with clean metadata (as a NIC's would).
                    p.meta_mut().flags = 0;
                    p.meta_mut().flow_hash = 0;
                    checked += 1;
                    order.push_back(i);
                    back += 1;
                    ring_in
                        .inject(0, p)
                        .map_err(|_| anyhow::anyhow!("input ring full"))?;
                }
            }
            if back != a.inflight {
                bail!(
                    "vxlan {:?} is broken: {} frames in, {back} out; drops {:?}",
                    a.mode,
                    a.inflight,
                    inl.counters().drops.nonzero()
                );
            }
        }
        if run > 0 {
            let r = per_run as f64 / timed.as_secs_f64() / 1e6;
            println!(
                "vxlan-inline {:?} run {run}: {r:.2} Mpps ({:.1} ns/packet)",
                a.mode,
                1e3 / r
            );
            mpps.push(r);
        }
    }
    if inl.counters().drops.total() != 0 {
        bail!("drops: {:?}", inl.counters().drops.nonzero());
    }
    let m = crate::median(&mut mpps);
    println!(
        "vxlan-inline {:?}: median {m:.2} Mpps per core ({:.1} ns/packet) over {} runs of {per_run} packets, {}-byte inner frames, {flows} flows over {vteps} VTEPs, burst {}, {} in flight; {checked} frames checked",
        a.mode,
        1e3 / m,
        a.runs,
        a.frame,
        a.burst,
        a.inflight,
    );
    Ok(())
}
