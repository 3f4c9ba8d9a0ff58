//! NAT scenarios: masquerade of `--flows` UDP sessions from an inside port to an outside port, one direction
//! (inside to outside).
//!
//! Port `a` (10.0.0.1/16) is the inside: the generator's flows come from 10.0.16.0 and up (4096 source ports
//! per address). Port `b` is the outside, with the external addresses 198.51.100.1/24 and, past 60,000
//! sessions, 198.51.101.1/24, 198.51.102.1/24... (wharf's port allocator gives each external address 64,512
//! ports per protocol, whatever the destination, so a million sessions need 17). The flows go to as many
//! servers 198.51.100.2, .3, ... behind `b` (static neighbours at the generator's receiving MAC): the kernel's
//! masquerade has only the interface's one address but reuses a port for another destination, so a million
//! sessions fit its tuples too. Every packet of a timed run belongs to a session opened in the warm-up, which
//! is stretched to a trial's length for many sessions: both devices are measured on established sessions.
//!
//! The receiver on the outside counts frames by the signature in their payload, so the rewritten source does
//! not hide them; the scenario's [`Probe`](super::Probe) checks, before the measurements, that what comes out
//! has an external address as its source and valid IPv4 and UDP checksums.
//!
//! The kernel's twin on veth: the same inside and (first) outside address on `d_a` and `d_b`, the servers as
//! permanent neighbours, an nftables `masquerade` rule on `d_b` in postrouting, and `ip_forward`. Its
//! connection tracking table is flushed (`conntrack -F`) when it is switched off, since wharf starts with an
//! empty session table at each start too.

use super::topo::{sysctl, VethTopo, D_A_MAC, G_A_MAC, G_B_MAC};
use super::{prefix, ring_scenario, veth_scenario, KernelTwin, Measured, Options};
use crate::gen::{Profile, Proto};
use crate::trial::PortTrial;
use anyhow::Context;
use control::router::Router;
use dataplane::netns;
use dataplane::traffic::inet_checksum;
use pipelines::l3::neigh::NeighKey;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Sessions per external address (and per server) the scenario plans for: below the 64,512 ports of the
/// default range, with room to spare.
const SESSIONS_PER_ADDRESS: u32 = 60_000;

/// Frames the probe sends (or the flows, if fewer).
const PROBE_FRAMES: u32 = 256;

/// External addresses wharf gets, and servers the flows go to, for `flows` sessions.
pub fn addresses(flows: u32) -> usize {
    flows.div_ceil(SESSIONS_PER_ADDRESS).max(1) as usize
}

/// External address `k` (one per /24).
pub fn external(k: usize) -> [u8; 4] {
    [198, 51, 100 + k as u8, 1]
}

/// Server `k`, on the first external address's subnet.
pub fn server(k: usize) -> [u8; 4] {
    [198, 51, 100, 2 + k as u8]
}

fn config(o: &Options, port_a: &str, port_b: &str) -> String {
    let ext: Vec<String> = (0..addresses(o.flows))
        .map(|k| format!("\"{}/24\"", Ipv4Addr::from(external(k))))
        .collect();
    // Room for every session and a margin.
    let max = (o.flows as usize + o.flows as usize / 4 + 1024).min(1 << 24);
    format!(
        r#"
[dataplane]
buffers = 16384
cores = [{core}]
idle = "poll"

[[ports]]
name = "a"
{port_a}
addresses = ["10.0.0.1/16"]

[[ports]]
name = "b"
{port_b}
addresses = [{ext}]

[nat]
outside = "b"
masquerade = ["a"]
max_sessions = {max}
udp_mapping = "address-and-port-dependent"
udp_s = 3600
udp_assured_s = 3600
"#,
        core = o.core,
        ext = ext.join(", "),
    )
}

/// The options of a NAT run: the warm-up long enough, at the rate of a timed run, to open every session
/// that run touches (each trial starts again at flow 0).
fn options(o: &Options) -> anyhow::Result<Options> {
    anyhow::ensure!(
        o.vlan.is_none(),
        "--vlan: this scenario's network takes untagged frames"
    );
    anyhow::ensure!(o.proto == Proto::Udp, "--proto: the NAT scenarios are UDP");
    anyhow::ensure!(
        addresses(o.flows) <= 100,
        "--flows: at most {} sessions",
        100 * SESSIONS_PER_ADDRESS
    );
    Ok(Options {
        warmup_secs: o.warmup_secs.max((o.flows as f64 / 1e5).min(o.secs)),
        ..o.clone()
    })
}

fn profile(o: &Options, dst_mac: [u8; 6]) -> Profile {
    Profile {
        src_mac: G_A_MAC,
        dst_mac,
        src_ip: [10, 0, 16, 0],
        dst_ips: (0..addresses(o.flows)).map(server).collect(),
        ..o.profile()
    }
}

/// Makes the servers static neighbours on `b`; returns port `a`'s MAC.
fn prepare(r: &Router, servers: usize) -> anyhow::Result<[u8; 6]> {
    let snap = r.dataplane().snapshot().load();
    let l3 = &snap.l3;
    let idx = |n: &str| {
        l3.ifaces
            .iter()
            .position(|i| i.name == n)
            .with_context(|| format!("router interface {n}"))
    };
    let (a, b) = (idx("a")?, idx("b")?);
    for k in 0..servers {
        anyhow::ensure!(
            l3.neigh.set_static(
                &NeighKey::v4(b as u16, u32::from_be_bytes(server(k))),
                &G_B_MAC
            ),
            "the neighbour cache refused server {k}"
        );
    }
    Ok(l3.ifaces[a].mac)
}

/// Whether `f`, seen outside, is one of our frames masqueraded: IPv4 with a valid header checksum, its
/// source one of `outside`, UDP with a valid checksum (or none), and our signature in the payload.
pub fn masqueraded(f: &[u8], outside: &[[u8; 4]]) -> bool {
    if f.len() < 42 || f[12..14] != [8, 0] || f[14] != 0x45 || f[23] != 17 {
        return false;
    }
    if inet_checksum(&f[14..34]) != 0 || !outside.iter().any(|a| f[26..30] == *a) {
        return false;
    }
    let ip_len = u16::from_be_bytes([f[16], f[17]]) as usize;
    let Some(udp) = f.get(34..14 + ip_len) else {
        return false;
    };
    if udp.len() < 8 || u16::from_be_bytes([udp[4], udp[5]]) as usize != udp.len() {
        return false;
    }
    if udp[6..8] != [0, 0] {
        // The pseudo-header, then the datagram: sums to zero when the checksum is right.
        let mut v = Vec::with_capacity(12 + udp.len());
        v.extend_from_slice(&f[26..34]);
        v.extend_from_slice(&[0, 17]);
        v.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        v.extend_from_slice(udp);
        if inet_checksum(&v) != 0 {
            return false;
        }
    }
    crate::analyse::locate(f)
        .and_then(|(off, _)| crate::analyse::signature(&f[off..]))
        .is_some()
}

/// The probe: one frame of each of the first flows sent, and those that come out [`masqueraded`] to one of
/// `outside` counted (at most one per frame sent).
fn probe(trial: &mut PortTrial, outside: &[[u8; 4]]) -> anyhow::Result<(u64, u64)> {
    let n = trial.gen.profile().flows.min(PROBE_FRAMES) as u64;
    let frames: Vec<Vec<u8>> = (0..n).map(|s| trial.gen.frame(s)).collect();
    trial.flush(Duration::from_millis(10));
    trial.send_raw(&frames, false)?;
    let got = trial.receive_raw(Duration::from_millis(200));
    let ok = got.iter().filter(|f| masqueraded(f, outside)).count() as u64;
    Ok((ok.min(n), n))
}

fn notes(o: &Options, m: &mut Measured, kernel: &str) {
    let sessions = format!(
        "{} UDP sessions to {} servers; wharf: {} external addresses",
        o.flows,
        addresses(o.flows),
        addresses(o.flows)
    );
    let probe = m.checked.map_or(String::new(), |(ok, n)| {
        format!("; probe: {ok}/{n} frames out from an external address")
    });
    m.notes = format!(
        "{sessions}{kernel}{probe}; warm-up {:.1} s; {}",
        o.warmup_secs, m.notes
    );
}

/// `nat-ring`.
pub fn ring(o: &Options) -> anyhow::Result<Vec<Measured>> {
    let o = &options(o)?;
    let ring = |peer: &str| format!("backend = \"ring\"\npeer = \"{peer}\"\ndepth = 4096");
    let cfg = super::parse(&config(o, &ring("gen_a"), &ring("gen_b")))?;
    let outside: Vec<[u8; 4]> = (0..addresses(o.flows)).map(external).collect();
    let check = |t: &mut PortTrial| probe(t, &outside);
    let mut rows = ring_scenario(
        "nat-ring",
        o,
        cfg,
        |r| Ok(profile(o, prepare(r, addresses(o.flows))?)),
        |_| Vec::new(),
        Some(&check),
    )?;
    for m in &mut rows {
        notes(o, m, "");
    }
    Ok(rows)
}

/// Runs `nft -f` on `rules` in namespace `ns`.
fn nft(ns: &str, rules: &str) -> anyhow::Result<()> {
    let file = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::write(&file, rules)?;
    let r = netns::ip(&["netns", "exec", ns, "nft", "-f", &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);
    r.map(drop)
        .context("nft (Debian package nftables; scripts/install-deps.sh)")
}

/// The kernel's connection tracking limit in the device namespace, raised to `want` if it is lower and the
/// kernel lets the namespace raise it; returns the limit in force and whether it was raised.
fn conntrack_max(tp: &VethTopo, want: u64) -> (u64, Result<bool, String>) {
    let key = "/proc/sys/net/netfilter/nf_conntrack_max";
    let read = || -> u64 {
        tp.dut
            .run(|| std::fs::read_to_string(key))
            .ok()
            .and_then(|r| r.ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = read();
    if before >= want {
        return (before, Ok(false));
    }
    let r = sysctl(&tp.dut, "net/netfilter/nf_conntrack_max", &want.to_string());
    (read(), r.map(|_| true).map_err(|e| format!("{e:#}")))
}

/// `nat-veth`.
pub fn veth(o: &Options) -> anyhow::Result<Vec<Measured>> {
    let o = &options(o)?;
    let servers = addresses(o.flows);
    let topo = VethTopo::build(&prefix('n'), o.core, o.gen_core(), !o.no_rps)?;
    let af = |ifname: &str| format!("backend = \"afpacket\"\ninterface = \"{ifname}\"");
    let cfg = super::parse(&config(o, &af(topo.d_a()), &af(topo.d_b())))?;
    let outside: Vec<[u8; 4]> = (0..servers).map(external).collect();
    let limit = std::cell::RefCell::new(String::new());
    let kernel = KernelTwin {
        name: "kernel-nft-masq",
        setup: Box::new(|tp: &VethTopo| {
            let ns = tp.dut.name();
            for k in ["all", "default", tp.d_a(), tp.d_b()] {
                sysctl(&tp.dut, &format!("net/ipv4/conf/{k}/rp_filter"), "0")?;
            }
            netns::ip_in(Some(ns), &["addr", "add", "10.0.0.1/16", "dev", tp.d_a()])?;
            let ext = format!("{}/24", Ipv4Addr::from(external(0)));
            netns::ip_in(Some(ns), &["addr", "add", &ext, "dev", tp.d_b()])?;
            let mac = netns::format_mac(G_B_MAC);
            for k in 0..servers {
                let s = Ipv4Addr::from(server(k)).to_string();
                netns::ip_in(
                    Some(ns),
                    &[
                        "neigh",
                        "replace",
                        &s,
                        "lladdr",
                        &mac,
                        "dev",
                        tp.d_b(),
                        "nud",
                        "permanent",
                    ],
                )?;
            }
            nft(
                ns,
                &format!(
                    "table ip wharfnat {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{}\" masquerade\n  }}\n}}\n",
                    tp.d_b()
                ),
            )?;
            let want = o.flows as u64 + o.flows as u64 / 4 + 1024;
            let (max, raised) = conntrack_max(tp, want);
            *limit.borrow_mut() = match raised {
                Ok(false) => format!("nf_conntrack_max {max}"),
                Ok(true) => format!("nf_conntrack_max raised to {max}"),
                Err(e) => format!("nf_conntrack_max {max}, not raised to {want}: {e}"),
            };
            println!("kernel: {}", limit.borrow());
            Ok(())
        }),
        on: Box::new(|tp| sysctl(&tp.dut, "net/ipv4/ip_forward", "1")),
        off: Box::new(|tp| {
            sysctl(&tp.dut, "net/ipv4/ip_forward", "0")?;
            netns::ip(&["netns", "exec", tp.dut.name(), "conntrack", "-F"])
                .map(drop)
                .context("conntrack -F (Debian package conntrack; scripts/install-deps.sh)")
        }),
    };
    // The kernel's masquerade takes the interface's address, the first of wharf's.
    let check = |t: &mut PortTrial| probe(t, &outside);
    let mut rows = veth_scenario(
        "nat-veth",
        o,
        &topo,
        cfg,
        Box::new(|r| prepare(r, servers).map(drop)),
        Some(kernel),
        (profile(o, D_A_MAC), Vec::new(), Some(&check)),
    )?;
    for m in &mut rows {
        let k = if m.dut == "wharf" {
            String::new()
        } else {
            format!(
                "; kernel: nftables masquerade to {}, {}",
                Ipv4Addr::from(external(0)),
                limit.borrow()
            )
        };
        notes(o, m, &k);
    }
    Ok(rows)
}
