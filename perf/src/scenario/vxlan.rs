//! VXLAN overlay scenarios, encapsulation direction: the generator sends plain frames into port `a`, a port of
//! the overlay bridge `ov` (VNI 42); their destination MAC is a static entry behind the remote VTEP
//! 192.168.90.2, so the device encapsulates each one in VXLAN/UDP/IPv4 from its local VTEP 192.168.90.1 and
//! sends it out of the underlay port `b`. The remote VTEP's address is the generator's receiving end (a static
//! neighbour at its MAC); the receiver counts the frames through the VXLAN header, by the signature of the
//! inner frame. Frame sizes (`--frame`) are the inner frames'; on the underlay each is 50 bytes longer.
//!
//! The scenario's [`Probe`](super::Probe) checks, before the measurements, that each frame comes out
//! [`encapsulated`]: outer IPv4 from the local to the remote VTEP with a valid header checksum, UDP to port
//! 4789, VNI 42, and the inner frame byte for byte as it was sent.
//!
//! The kernel's twin on veth: a Linux bridge of `d_a` and a `vxlan` device (`id 42 dstport 4789 local
//! 192.168.90.1 remote 192.168.90.2`), the destination MAC a static entry of the bridge on the vxlan device,
//! 192.168.90.1/24 on `d_b` and the remote VTEP a permanent neighbour there.

use super::topo::{VethTopo, G_A_MAC, G_B_MAC};
use super::{prefix, ring_scenario, veth_scenario, KernelTwin, Measured, Options};
use crate::gen::Profile;
use crate::trial::PortTrial;
use anyhow::Context;
use control::router::Router;
use dataplane::netns;
use dataplane::traffic::inet_checksum;
use pipelines::l3::neigh::NeighKey;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The device's VTEP address, on the underlay port `b`.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 90, 1);
/// The remote VTEP: the generator's receiving end.
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 90, 2);
/// The overlay's VXLAN network identifier.
pub const VNI: u32 = 42;
/// The inner destination MAC: a host behind the remote VTEP.
pub const INNER_DST: [u8; 6] = [0x02, 0x90, 0x00, 0x00, 0x00, 0x99];
/// Bytes VXLAN adds: outer Ethernet (14), IPv4 (20), UDP (8), VXLAN (8).
pub const OVERHEAD: usize = 50;

/// Frames the probe sends (or the flows, if fewer).
const PROBE_FRAMES: u32 = 256;

fn config(o: &Options, port_a: &str, port_b: &str) -> String {
    format!(
        r#"
[dataplane]
buffers = 16384
cores = [{core}]
idle = "poll"

[[ports]]
name = "a"
{port_a}

[[ports]]
name = "b"
{port_b}
addresses = ["{LOCAL}/24"]

[[networks]]
name = "ov"
mode = "overlay"
ports = ["a"]
mac_limit = 65536

[networks.vxlan]
vni = {VNI}
underlay = "b"
local = "{LOCAL}"
remotes = ["{REMOTE}"]

[[networks.vxlan.fdb]]
mac = "{dst}"
vtep = "{REMOTE}"
"#,
        core = o.core,
        dst = netns::format_mac(INNER_DST),
    )
}

fn profile(o: &Options) -> anyhow::Result<Profile> {
    anyhow::ensure!(
        o.vlan.is_none(),
        "--vlan: this scenario's overlay takes untagged frames"
    );
    anyhow::ensure!(
        o.frame.0.iter().all(|&s| s <= 1450 + 14 + 4),
        "--frame: the overlay's MTU is 1450 bytes (a 1500-byte underlay less 50): inner frames of 1468 bytes at most"
    );
    Ok(Profile {
        src_mac: G_A_MAC,
        dst_mac: INNER_DST,
        src_ip: [10, 90, 0, 1],
        dst_ips: vec![[10, 90, 0, 99]],
        ..o.profile()
    })
}

/// Makes the remote VTEP a static neighbour on `b`.
fn prepare(r: &Router) -> anyhow::Result<()> {
    let snap = r.dataplane().snapshot().load();
    let l3 = &snap.l3;
    let b = l3
        .ifaces
        .iter()
        .position(|i| i.name == "b")
        .context("router interface b")?;
    anyhow::ensure!(
        l3.neigh
            .set_static(&NeighKey::v4(b as u16, u32::from(REMOTE)), &G_B_MAC),
        "the neighbour cache refused the remote VTEP"
    );
    Ok(())
}

/// The inner frame of `f` if `f` is it encapsulated by the local VTEP for the remote one: IPv4 (valid header
/// checksum) from [`LOCAL`] to [`REMOTE`], UDP to 4789 with the length of the rest, VXLAN with the I flag and
/// [`VNI`].
pub fn encapsulated(f: &[u8]) -> Option<&[u8]> {
    if f.len() < OVERHEAD + 14 || f[12..14] != [8, 0] || f[14] != 0x45 || f[23] != 17 {
        return None;
    }
    if inet_checksum(&f[14..34]) != 0 || f[26..30] != LOCAL.octets() || f[30..34] != REMOTE.octets()
    {
        return None;
    }
    let ip_len = u16::from_be_bytes([f[16], f[17]]) as usize;
    let udp_len = u16::from_be_bytes([f[38], f[39]]) as usize;
    if u16::from_be_bytes([f[36], f[37]]) != 4789 || ip_len != udp_len + 20 || f.len() < 14 + ip_len
    {
        return None;
    }
    let vx = &f[42..50];
    let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    (vx[0] & 0x08 != 0 && vni == VNI).then(|| &f[50..14 + ip_len])
}

/// The probe: one frame of each of the first flows sent; counted are those that come out [`encapsulated`]
/// with the inner frame as sent (at most one per frame sent).
fn probe(trial: &mut PortTrial) -> anyhow::Result<(u64, u64)> {
    let n = trial.gen.profile().flows.min(PROBE_FRAMES) as u64;
    let frames: Vec<Vec<u8>> = (0..n).map(|s| trial.gen.frame(s)).collect();
    trial.flush(Duration::from_millis(10));
    trial.send_raw(&frames, false)?;
    let got = trial.receive_raw(Duration::from_millis(200));
    let mut seen = vec![false; n as usize];
    for f in &got {
        if let Some(inner) = encapsulated(f) {
            // Short inner frames may have been padded on the way: compare the frame's own bytes.
            if let Some(i) = frames.iter().position(|s| inner.get(..s.len()) == Some(s)) {
                seen[i] = true;
            }
        }
    }
    Ok((seen.iter().filter(|s| **s).count() as u64, n))
}

fn notes(m: &mut Measured) {
    let probe = m.checked.map_or(String::new(), |(ok, n)| {
        format!("probe: {ok}/{n} frames out in VXLAN to the remote VTEP, inner frame intact; ")
    });
    m.notes = format!(
        "encap, VNI {VNI}, inner frame sizes (+{OVERHEAD} bytes on the underlay); {probe}{}",
        m.notes
    );
}

/// `vxlan-ring`.
pub fn ring(o: &Options) -> anyhow::Result<Vec<Measured>> {
    let p = profile(o)?;
    let ring = |peer: &str| format!("backend = \"ring\"\npeer = \"{peer}\"\ndepth = 4096");
    let cfg = super::parse(&config(o, &ring("gen_a"), &ring("gen_b")))?;
    let mut rows = ring_scenario(
        "vxlan-ring",
        o,
        cfg,
        |r| {
            prepare(r)?;
            Ok(p)
        },
        |_| Vec::new(),
        Some(&probe),
    )?;
    rows.iter_mut().for_each(notes);
    Ok(rows)
}

/// `vxlan-veth`.
pub fn veth(o: &Options) -> anyhow::Result<Vec<Measured>> {
    let p = profile(o)?;
    let topo = VethTopo::build(&prefix('v'), o.core, o.gen_core(), !o.no_rps)?;
    let af = |ifname: &str| format!("backend = \"afpacket\"\ninterface = \"{ifname}\"");
    let cfg = super::parse(&config(o, &af(topo.d_a()), &af(topo.d_b())))?;
    let kernel = KernelTwin {
        name: "kernel-vxlan",
        setup: Box::new(|tp: &VethTopo| {
            let ns = Some(tp.dut.name());
            let (local, remote) = (LOCAL.to_string(), REMOTE.to_string());
            netns::ip_in(
                ns,
                &["addr", "add", &format!("{LOCAL}/24"), "dev", tp.d_b()],
            )?;
            let mac = netns::format_mac(G_B_MAC);
            netns::ip_in(
                ns,
                &[
                    "neigh",
                    "replace",
                    &remote,
                    "lladdr",
                    &mac,
                    "dev",
                    tp.d_b(),
                    "nud",
                    "permanent",
                ],
            )?;
            let vni = VNI.to_string();
            netns::ip_in(
                ns,
                &[
                    "link",
                    "add",
                    "vx0",
                    "type",
                    "vxlan",
                    "id",
                    &vni,
                    "dstport",
                    "4789",
                    "local",
                    &local,
                    "remote",
                    &remote,
                    "dev",
                    tp.d_b(),
                ],
            )?;
            netns::ip_in(ns, &["link", "add", "br0", "type", "bridge"])?;
            for d in [tp.d_a(), "vx0"] {
                netns::ip_in(ns, &["link", "set", "dev", d, "master", "br0"])?;
            }
            netns::set_up(ns, "vx0")?;
            netns::set_up(ns, "br0")?;
            netns::ip(&[
                "netns",
                "exec",
                tp.dut.name(),
                "bridge",
                "fdb",
                "add",
                &netns::format_mac(INNER_DST),
                "dev",
                "vx0",
                "master",
                "static",
            ])?;
            Ok(())
        }),
        on: Box::new(|_| Ok(())),
        off: Box::new(|_| Ok(())),
    };
    let mut rows = veth_scenario(
        "vxlan-veth",
        o,
        &topo,
        cfg,
        Box::new(prepare),
        Some(kernel),
        (p, Vec::new(), Some(&probe)),
    )?;
    rows.iter_mut().for_each(notes);
    Ok(rows)
}
