//! NAT benchmark over ring ports, pipeline only (`nat-inline`). The router has two routed ring ports: `in`
//! (10.0.0.1/16, masqueraded) and `up` (the outside, with `--addresses` external addresses 198.51.100.1,
//! 198.51.101.1, ... one per /24, so that a million sessions find ports: 64512 per address and protocol).
//!
//! Session `i` is UDP from inside host `i mod 1024` (10.0.16.0 and up), source port `1024 + i / 1024`, to
//! port 53 of server `i mod --servers` outside (198.51.100.2 and up; one server by default). Every session is
//! opened untimed first (one packet each through the worker), which tells its external address and port;
//! then the timed runs send packets of established sessions: `--direction out` (inside to outside:
//! masquerade), `in` (the answers: translated back), or `both` (alternating). Sessions are visited in a random
//! order (a fixed permutation), so the flow table's working set is all of it, not a hot corner.
//!
//! The inline worker of [`crate::inline`] runs on this thread: `--inflight` packets are put in the receive
//! rings, the worker is timed while it receives, translates, routes and transmits them, then, untimed, every
//! frame that left is checked against the session it belongs to (external address and port out; inside
//! address and port in; IPv4 header checksum valid) and recycled into the next packets. All neighbours are
//! static, so nothing waits for ARP. A broken NAT fails the run instead of posting a figure.
//!
//! The generator's ends of both ring pairs have one queue (`peer_queues = 1`) whatever the workers, so a
//! worker's transmit is one enqueue, as into a NIC, and never pays for hashing each frame to pick a receive
//! queue of the generator (RSS that a NIC does in hardware on the receiving side). That keeps the 1- and
//! 2-worker figures comparable: both transmit the same way.
//!
//! `--workers 2`: two workers polled in turn on this thread, each with its queue of both ports; packets go to
//! a queue by the symmetric flow hash of the tuple on the wire, as a NIC's RSS would (the generator, untimed,
//! picks the queue when it injects). A session belongs to the
//! worker its first packet reached (its external port is from that worker's slice, chosen so that its answers,
//! hashed by the translated tuple, reach that worker too: the `ring` port tells the NAT its RSS); answers are
//! handed over only when the port could not be chosen so. The figure is the
//! cost per packet of both workers together on one core, handoffs included: how far two cores would scale is
//! `2 × (1-worker ns) / (2-worker ns)`, if nothing but the handoffs stood between them.

use crate::inline::Inline;
use anyhow::{bail, Context};
use dataplane::traffic::inet_checksum;
use dataplane::{Burst, DropReason, Event, Port, PortQueue};
use pipelines::fib::SplitMix64;
use pipelines::l3::neigh::NeighKey;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Ring depth of the bench's ports.
const DEPTH: usize = 16_384;
/// Inside hosts the sessions come from.
const HOSTS: usize = 1024;
/// The first outside server; `--servers` more take the next addresses.
const SERVER: [u8; 4] = [198, 51, 100, 2];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 2];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 1];

/// `nat-inline` options.
#[derive(clap::Args)]
pub struct Args {
    /// Established sessions (1 to 16M).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Which packets are timed: `out` (masquerade), `in` (answers) or `both` (alternating).
    #[arg(long, default_value = "both")]
    direction: String,
    /// External addresses on the outside port (a million sessions need at least 16).
    #[arg(long, default_value_t = 0)]
    addresses: usize,
    /// Packets per run.
    #[arg(long, default_value_t = 4_000_000)]
    packets: u64,
    /// Timed runs (the median is printed); more than one adds an untimed warm-up run first.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Burst size.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Packets in the receive rings per timed phase.
    #[arg(long, default_value_t = 8192)]
    inflight: usize,
    /// Frame size in bytes (without FCS).
    #[arg(long, default_value_t = 60)]
    frame: usize,
    /// Outside servers the sessions talk to (1 to 250): how many remote endpoints share the external ports.
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// Workers (1 or 2), polled in turn on this thread.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn host_ip(h: usize) -> [u8; 4] {
    [10, 0, 16 + (h >> 8) as u8, h as u8]
}

fn external(k: usize) -> [u8; 4] {
    [198, 51, 100 + k as u8, 1]
}

fn config_text(burst: usize, addresses: usize, sessions: usize, workers: usize) -> String {
    let ext: Vec<String> = (0..addresses)
        .map(|k| format!("\"{}/24\"", Ipv4Addr::from(external(k))))
        .collect();
    // Room for every session and a margin, in the table's power of two.
    let max = (sessions + sessions / 4 + 1024).min(1 << 24);
    format!(
        r#"
[dataplane]
buffers = {buffers}
burst_size = {burst}
workers = {workers}
idle = "poll"

[router]
neighbor_capacity = 65536

[[ports]]
name = "in"
backend = "ring"
peer = "gen_in"
peer_queues = 1
depth = {DEPTH}
addresses = ["10.0.0.1/16"]

[[ports]]
name = "up"
backend = "ring"
peer = "gen_up"
peer_queues = 1
depth = {DEPTH}
addresses = [{ext}]

[nat]
outside = "up"
masquerade = ["in"]
max_sessions = {max}
udp_mapping = "address-and-port-dependent"
udp_s = 3600
udp_assured_s = 3600
"#,
        buffers = 2 * DEPTH + 4096,
        ext = ext.join(", ")
    )
}

/// One session: its inside side and the external address and port it was given.
#[derive(Clone, Copy, Default)]
struct Session {
    ext: [u8; 4],
    port: u16,
}

/// Frame templates and the sessions.
struct Traffic {
    out_tpl: Vec<u8>,
    in_tpl: Vec<u8>,
    sessions: Vec<Session>,
    servers: usize,
}

impl Traffic {
    fn inside(i: usize) -> ([u8; 4], u16) {
        (host_ip(i % HOSTS), 1024 + (i / HOSTS) as u16)
    }

    /// Session `i`'s server.
    fn server(&self, i: usize) -> [u8; 4] {
        server_ip(i % self.servers)
    }

    /// Session `i`'s packet from inside.
    fn write_out(&self, f: &mut [u8], i: usize) {
        let (ip, port) = Self::inside(i);
        f[26..30].copy_from_slice(&ip);
        f[30..34].copy_from_slice(&self.server(i));
        f[34..36].copy_from_slice(&port.to_be_bytes());
        fix_ip_checksum(f);
    }

    /// Session `i`'s answer from the server.
    fn write_in(&self, f: &mut [u8], i: usize) {
        let s = self.sessions[i];
        f[26..30].copy_from_slice(&self.server(i));
        f[30..34].copy_from_slice(&s.ext);
        f[36..38].copy_from_slice(&s.port.to_be_bytes());
        fix_ip_checksum(f);
    }

    /// Whether a frame that left is session `i`'s translated packet (by the port it left from).
    fn check(&self, f: &[u8], out_port: bool, i: usize) -> Result<(), &'static str> {
        if f.len() < 42 || f[12..14] != [8, 0] {
            return Err("not IPv4");
        }
        if inet_checksum(&f[14..34]) != 0 {
            return Err("bad IPv4 header checksum");
        }
        if f[22] != 63 {
            return Err("TTL not decremented");
        }
        if out_port {
            let s = self.sessions[i];
            if f[26..30] != s.ext
                || f[34..36] != s.port.to_be_bytes()
                || f[30..34] != self.server(i)
            {
                return Err("out: not the session's external address and port");
            }
        } else {
            let (ip, port) = Self::inside(i);
            if f[30..34] != ip || f[36..38] != port.to_be_bytes() || f[26..30] != self.server(i) {
                return Err("in: not the session's inside address and port");
            }
        }
        Ok(())
    }
}

/// Server `k`'s address.
fn server_ip(k: usize) -> [u8; 4] {
    let [a, b, c, d] = SERVER;
    [a, b, c, d + k as u8]
}

fn fix_ip_checksum(f: &mut [u8]) {
    f[24..26].copy_from_slice(&[0, 0]);
    let c = inet_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// A UDP frame of `len` bytes from `src` to `dst` (checksum 0: "none", which the NAT keeps).
fn template(
    len: usize,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[8, 0]);
    let n = f.len();
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((n - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.0);
    ip[16..20].copy_from_slice(&dst.0);
    f[34..36].copy_from_slice(&src.1.to_be_bytes());
    f[36..38].copy_from_slice(&dst.1.to_be_bytes());
    f[38..40].copy_from_slice(&((n - 34) as u16).to_be_bytes());
    fix_ip_checksum(&mut f);
    f
}

/// Session index of a frame that left (from its inside or outside side), via the tag we put in the
/// payload.
fn tag_of(f: &[u8]) -> usize {
    u32::from_be_bytes([f[42], f[43], f[44], f[45]]) as usize
}

fn set_tag(f: &mut [u8], i: usize) {
    f[42..46].copy_from_slice(&(i as u32).to_be_bytes());
}

/// `nat-inline`: see the module docs.
pub fn inline(a: &Args) -> anyhow::Result<()> {
    let dirs: &[bool] = match a.direction.as_str() {
        "out" => &[true],
        "in" => &[false],
        "both" => &[true, false],
        d => bail!("--direction is out, in or both, not {d:?}"),
    };
    if a.sessions == 0 || a.sessions > 1 << 24 {
        bail!("--sessions is 1 to 16M");
    }
    if a.frame < 60 {
        bail!("--frame is at least 60");
    }
    let addresses = if a.addresses == 0 {
        a.sessions.div_ceil(60_000).max(1)
    } else {
        a.addresses
    };
    if addresses > 100 {
        bail!("at most 100 external addresses");
    }
    if !(1..=250).contains(&a.servers) {
        bail!("--servers is 1 to 250");
    }
    if !(1..=4).contains(&a.workers) {
        bail!("--workers is 1 to 4");
    }
    let w = a.workers;
    let inflight = a.inflight.min(DEPTH / 2).max(a.burst);
    let cfg = control::config::parse(
        &config_text(a.burst, addresses, a.sessions, w),
        "<nat-inline>",
    )?;
    let mut inl = Inline::with_workers(&cfg, a.burst, (2 * DEPTH + 4096) as u32, w)?;
    let (in_mac, up_mac, in_if, up_if) = {
        let snap = inl.snapshot();
        let l3 = &snap.l3;
        let idx = |n: &str| l3.ifaces.iter().position(|i| i.name == n).context("iface");
        let (ii, iu) = (idx("in")?, idx("up")?);
        for h in 0..HOSTS {
            let k = NeighKey::v4(ii as u16, u32::from_be_bytes(host_ip(h)));
            if !l3.neigh.set_static(&k, &HOST_MAC) {
                bail!("neighbour cache refused host {h}");
            }
        }
        for k in 0..a.servers {
            let key = NeighKey::v4(iu as u16, u32::from_be_bytes(server_ip(k)));
            if !l3.neigh.set_static(&key, &SERVER_MAC) {
                bail!("neighbour cache refused server {k}");
            }
        }
        (l3.ifaces[ii].mac, l3.ifaces[iu].mac, ii, iu)
    };
    let _ = (in_if, up_if);
    let mut tr = Traffic {
        out_tpl: template(
            a.frame,
            in_mac,
            HOST_MAC,
            ([10, 0, 16, 0], 1024),
            (SERVER, 53),
        ),
        in_tpl: template(
            a.frame,
            up_mac,
            SERVER_MAC,
            (SERVER, 53),
            (external(0), 1024),
        ),
        sessions: vec![Session::default(); a.sessions],
        servers: a.servers,
    };
    let port_in = inl.ring_port("in").context("ring port in")?;
    let port_up = inl.ring_port("up").context("ring port up")?;
    // The generator's ends have one queue (`peer_queues = 1`), whatever the workers: every worker's transmit
    // just enqueues there, as into a NIC's transmit queue, with no receive-side RSS to emulate in software.
    let sinks = |name: &str| -> anyhow::Result<Vec<Box<dyn PortQueue>>> {
        let peer = inl.ring_peer(name).context("far end")?;
        Ok(vec![peer.open_queue(0)?])
    };
    let mut sink_up = sinks("gen_up")?;
    let mut sink_in = sinks("gen_in")?;
    let mut out = Burst::new(256);
    // The receive queue RSS would pick: the symmetric hash of the tuple on the wire.
    let queue_of = |p: &dataplane::Pkt| (dataplane::rss::flow_hash(p.data()) as usize % w) as u16;

    // Open every session, `inflight` at a time, and learn its external address and port.
    let t0 = Instant::now();
    let mut opened = 0usize;
    let mut frame = tr.out_tpl.clone();
    while opened < a.sessions {
        let n = inflight.min(a.sessions - opened);
        for i in opened..opened + n {
            tr.write_out(&mut frame, i);
            set_tag(&mut frame, i);
            let mut p = inl_alloc(&inl)?;
            p.set_frame(&frame);
            let q = queue_of(&p);
            port_in
                .inject(q, p)
                .map_err(|_| anyhow::anyhow!("ring in full"))?;
        }
        let target = inl.tx_total() + n as u64;
        if !inl.poll_until_tx(target, 1000) {
            bail!("opening sessions: stuck; drops: {:?}", drops(&inl));
        }
        let mut got = 0;
        for sink in sink_up.iter_mut() {
            while sink.rx_burst(&mut out) > 0 {
                for p in out.drain() {
                    let f = p.data();
                    if f[12..14] != [8, 0] {
                        continue;
                    }
                    let i = tag_of(f);
                    tr.sessions[i] = Session {
                        ext: f[26..30].try_into().unwrap(),
                        port: u16::from_be_bytes([f[34], f[35]]),
                    };
                    got += 1;
                }
            }
        }
        if got != n {
            bail!(
                "opening sessions: {n} sent, {got} left translated; drops: {:?}",
                drops(&inl)
            );
        }
        opened += n;
    }
    println!(
        "nat-inline: {} sessions opened in {:.2} s over {addresses} external address(es)",
        a.sessions,
        t0.elapsed().as_secs_f64()
    );

    // The timed loop: a fixed random order of sessions, alternating directions with `both`.
    let mut order: Vec<u32> = (0..a.sessions as u32).collect();
    let mut rng = SplitMix64::new(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut next = 0usize;
    let mut pick = || {
        let i = order[next] as usize;
        next = (next + 1) % order.len();
        i
    };
    // Fill the rings: a packet's direction is fixed by the ring it is in; a frame that leaves by `up` goes
    // back into `up`'s ring as an answer (and vice versa), so the mix stays as seeded.
    let per_dir = inflight / dirs.len();
    for &d in dirs {
        let (port, tpl) = if d {
            (&port_in, &tr.out_tpl)
        } else {
            (&port_up, &tr.in_tpl)
        };
        for _ in 0..per_dir {
            let i = pick();
            let mut p = inl_alloc(&inl)?;
            p.set_frame(tpl);
            if d {
                tr.write_out(p.data_mut(), i);
            } else {
                tr.write_in(p.data_mut(), i);
            }
            set_tag(p.data_mut(), i);
            let q = queue_of(&p);
            port.inject(q, p)
                .map_err(|_| anyhow::anyhow!("ring full"))?;
        }
    }
    let per_phase = (per_dir * dirs.len()) as u64;
    let phases = a.packets.div_ceil(per_phase);
    let mut mpps = Vec::new();
    let (mut ok, mut bad) = (0u64, 0u64);
    let mut first_bad = None;
    for run in 0..=a.runs {
        if run == 0 && a.runs <= 1 {
            continue;
        }
        let mut timed = Duration::ZERO;
        for _ in 0..phases {
            let target = inl.tx_total() + per_phase;
            let t0 = Instant::now();
            let done = inl.poll_until_tx(target, 1000);
            timed += t0.elapsed();
            if !done {
                bail!("NAT is stuck; drops: {:?}", drops(&inl));
            }
            let mut back = 0u64;
            for (sink, left_by_up) in sink_up
                .iter_mut()
                .map(|s| (s, true))
                .chain(sink_in.iter_mut().map(|s| (s, false)))
            {
                while sink.rx_burst(&mut out) > 0 {
                    for mut p in out.drain() {
                        let i = tag_of(p.data());
                        match tr.check(p.data(), left_by_up, i) {
                            Ok(()) => ok += 1,
                            Err(e) => {
                                bad += 1;
                                first_bad.get_or_insert(e);
                            }
                        }
                        // Next packet in the same direction as this one came in, with the metadata a
                        // receiving port gives (a recycled buffer keeps what the stages wrote in it).
                        let j = pick();
                        {
                            let m = p.meta_mut();
                            m.scratch = [0; 4];
                            m.flags = 0;
                            m.flow_hash = 0;
                        }
                        if left_by_up {
                            p.set_frame(&tr.out_tpl);
                            tr.write_out(p.data_mut(), j);
                            set_tag(p.data_mut(), j);
                            let q = queue_of(&p);
                            port_in
                                .inject(q, p)
                                .map_err(|_| anyhow::anyhow!("ring in full"))?;
                        } else {
                            p.set_frame(&tr.in_tpl);
                            tr.write_in(p.data_mut(), j);
                            set_tag(p.data_mut(), j);
                            let q = queue_of(&p);
                            port_up
                                .inject(q, p)
                                .map_err(|_| anyhow::anyhow!("ring up full"))?;
                        }
                        back += 1;
                    }
                }
            }
            if back != per_phase {
                bail!(
                    "NAT is broken: {per_phase} packets in, {back} out; drops: {:?}",
                    drops(&inl)
                );
            }
        }
        if run > 0 {
            let per_run = phases * per_phase;
            let r = per_run as f64 / timed.as_secs_f64() / 1e6;
            println!(
                "nat-inline run {run}: {r:.2} Mpps ({:.1} ns/packet)",
                1e3 / r
            );
            mpps.push(r);
        }
    }
    if let Some(e) = first_bad {
        bail!("{bad} of {} frames wrong, first: {e}", ok + bad);
    }
    let d = drops(&inl);
    if !d.is_empty() {
        bail!("drops: {d:?}");
    }
    let event = |e: Event| -> u64 { inl.all_counters().iter().map(|c| c.events.get(e)).sum() };
    let translated = event(Event::NatTranslated);
    let handoffs = event(Event::NatHandoff);
    let m = crate::median(&mut mpps);
    println!(
        "nat-inline {}: {} sessions, {w} worker(s) on one core, {addresses} external address(es), {} server(s): median {m:.2} Mpps per core ({:.1} ns/packet) over {} runs of {} packets, {}-byte frames, burst {}, {} in flight; {ok} frames checked (every one the right session's translation), {translated} translated, {handoffs} handed to another worker",
        a.direction,
        a.sessions,
        a.servers,
        1e3 / m,
        a.runs,
        phases * per_phase,
        tr.out_tpl.len(),
        a.burst,
        per_phase,
    );
    Ok(())
}

fn inl_alloc(inl: &Inline) -> anyhow::Result<dataplane::Pkt> {
    inl.pool().alloc().context("pool empty")
}

/// Non-zero drop counters by reason.
fn drops(inl: &Inline) -> Vec<(&'static str, u64)> {
    DropReason::ALL
        .iter()
        .map(|r| {
            (
                r.name(),
                inl.all_counters()
                    .iter()
                    .map(|c| c.drops.get(*r))
                    .sum::<u64>(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}
