//! `wharf lab`: builds the config's topology out of network namespaces and veth pairs, runs the router on it,
//! and removes everything it made on exit (Ctrl-C, error or end of `--check`).
//!
//! Each endpoint gets a namespace (a stand-in for a container) holding one end of a veth pair as `eth0`, with
//! the endpoint's MAC, address and default route; the other end goes into the lab's "host" namespace, where
//! wharf runs, and becomes the endpoint's port on the `afpacket` backend. `[[links]]` cable two wharf ports
//! to each other (a trunk). Nothing is done in the root namespace. Names carry a per-run prefix, so labs and
//! tests can run side by side: the config's `interface` names are replaced by the lab's own.
//!
//! `--check` then moves real traffic between every pair of endpoints that share a network, with the kernel's
//! own tools: `ping` and a TCP transfer between sockets opened inside the namespaces, verified by a hash of
//! the bytes on both sides.

use crate::config::{self, BackendCfg, Config};
use crate::ctl::Server;
use crate::daemon::{control_loop, Signals};
use crate::router::Router;
use anyhow::{bail, Context};
use dataplane::netns::{self, NetnsGuard, VethGuard};
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `wharf lab`.
#[derive(Debug, Default, Clone)]
pub struct LabOptions {
    /// Topology file; `None` is the embedded default.
    pub config: Option<PathBuf>,
    /// Run the checks and exit instead of running until a signal.
    pub check: bool,
    /// Name prefix for namespaces and interfaces.
    pub prefix: Option<String>,
    /// Control socket path.
    pub socket: Option<PathBuf>,
}

/// One endpoint, built.
#[derive(Debug)]
pub struct LabHost {
    /// Endpoint name from the config.
    pub name: String,
    /// Network it is on.
    pub network: String,
    /// Its namespace.
    pub ns: NetnsGuard,
    /// Its address.
    pub addr: Ipv4Addr,
    /// Its IPv6 address, if it has one.
    pub addr6: Option<Ipv6Addr>,
    /// It has a default gateway (IPv4 or IPv6): it reaches other networks through the router.
    pub routed: bool,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Wharf's side of its cable (the port's interface, in the host namespace).
    pub host_if: String,
    _veth: VethGuard,
}

/// The built topology: dropping it deletes every namespace and link it made. Stop the router first: its
/// ports live in [`Topology::host`].
#[derive(Debug)]
pub struct Topology {
    /// The endpoints.
    pub hosts: Vec<LabHost>,
    /// Cables between two wharf ports (`[[links]]`), both ends in the host namespace.
    pub links: Vec<VethGuard>,
    /// The namespace wharf's ports live in (the "host"): the lab never touches the root namespace's
    /// interfaces, and tests can give this host addresses of its own.
    pub host: NetnsGuard,
}

/// Bytes moved by the TCP check.
pub const TCP_CHECK_BYTES: usize = 4 << 20;

/// Refuses clearly when we lack the privileges the lab needs.
pub fn require_net_admin() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("wharf lab needs CAP_NET_ADMIN (run it as root): it creates network namespaces and veth pairs");
    }
    netns::ip(&["-V"]).context("wharf lab needs the `ip` command (Debian package iproute2)")?;
    Ok(())
}

/// Points afpacket port `port` of `cfg` at `interface`.
fn cable(cfg: &mut Config, port: &str, interface: &str, what: &str) -> anyhow::Result<()> {
    let p = cfg
        .ports
        .iter_mut()
        .find(|p| p.name == port)
        .with_context(|| format!("{what}: no port named {port}"))?;
    match &mut p.backend {
        BackendCfg::AfPacket { interface: i, .. } => {
            *i = interface.to_string();
            Ok(())
        }
        other => bail!(
            "{what}: port {port} uses backend {}; the lab cables afpacket ports",
            other.kind()
        ),
    }
}

/// A veth whose `a` end is wharf's, moved into the host namespace, isolated from its stack and up.
fn wharf_cable(host: &NetnsGuard, a_prefix: &str, b_prefix: &str) -> anyhow::Result<VethGuard> {
    let mut veth = VethGuard::new(a_prefix, b_prefix)?;
    veth.move_a(host.name())?;
    let a = veth.a().to_string();
    host.run(move || netns::isolate_from_host_stack(&a))??;
    netns::set_up(Some(host.name()), veth.a())?;
    Ok(veth)
}

/// Builds the host namespace, a namespace and cable per endpoint and a cable per link, and points the ports
/// of `cfg` at the lab's interfaces. `prefix` starts every name.
pub fn build(cfg: &mut Config, prefix: &str) -> anyhow::Result<Topology> {
    // Endpoints without an address get one from their network's pool first (the router keeps the leases).
    crate::ipam::assign_addresses(cfg)?;
    let host = NetnsGuard::new(&format!("{prefix}host"))?;
    let mut topo = Topology {
        hosts: Vec::new(),
        links: Vec::new(),
        host,
    };
    for ep in cfg.endpoints.clone() {
        let what = format!("endpoint {}", ep.name);
        let ns = NetnsGuard::new(&format!("{prefix}{}", ep.name)).with_context(|| what.clone())?;
        let mut veth = wharf_cable(
            &topo.host,
            &format!("{prefix}{}", ep.port),
            &format!("{prefix}e"),
        )?;
        veth.move_b(ns.name())?;
        let inner = veth.b().to_string();
        netns::ip_in(
            Some(ns.name()),
            &["link", "set", "dev", &inner, "name", "eth0"],
        )?;
        let Some(address) = ep.address else {
            bail!("{what}: no address (and no pool to take one from)");
        };
        let mac = ep.effective_mac().0;
        netns::set_mac(Some(ns.name()), "eth0", mac)?;
        netns::add_addr4(Some(ns.name()), "eth0", address.addr(), address.prefix())?;
        netns::set_up(Some(ns.name()), "eth0")?;
        if let Some(gw) = ep.gateway {
            if address.contains(gw) {
                netns::add_default_route4(Some(ns.name()), gw)?;
            } else {
                // A point-to-point endpoint's gateway is link-local, outside its /32: reached on-link.
                let gw = gw.to_string();
                netns::ip_in(
                    Some(ns.name()),
                    &[
                        "route", "add", "default", "via", &gw, "dev", "eth0", "onlink",
                    ],
                )?;
            }
        }
        if let Some(a6) = ep.address6 {
            let cidr = a6.to_string();
            netns::ip_in(
                Some(ns.name()),
                &["-6", "addr", "add", &cidr, "dev", "eth0", "nodad"],
            )?;
        }
        if let Some(gw6) = ep.gateway6 {
            let gw = gw6.to_string();
            netns::ip_in(
                Some(ns.name()),
                &["-6", "route", "add", "default", "via", &gw, "dev", "eth0"],
            )?;
        }
        for r in &ep.routes {
            let (family, prefix, via) = (
                if r.prefix.is_v4() { "-4" } else { "-6" },
                format!("{}/{}", r.prefix.network(), r.prefix.prefix()),
                r.via.to_string(),
            );
            netns::ip_in(
                Some(ns.name()),
                &[family, "route", "add", &prefix, "via", &via, "dev", "eth0"],
            )?;
        }
        // An overlay carries smaller packets than its underlay: its endpoints get the overlay MTU, as Docker
        // gives containers on an overlay network (else large packets would be dropped as `vxlan_mtu`).
        if let Some(o) = cfg
            .networks
            .iter()
            .find(|n| n.name == ep.network)
            .and_then(|n| n.overlay.as_ref())
        {
            netns::set_mtu(Some(ns.name()), "eth0", o.mtu as u32)?;
        }
        // Frames leave the namespace through wharf, not a kernel path that completes partial checksums.
        ns.run(|| netns::disable_tx_checksum_offload("eth0"))??;
        let host_if = veth.a().to_string();
        cable(cfg, &ep.port, &host_if, &what)?;
        topo.hosts.push(LabHost {
            name: ep.name.clone(),
            network: ep.network.clone(),
            ns,
            addr: address.addr(),
            addr6: ep.address6.map(|a| a.addr()),
            routed: ep.gateway.is_some() || ep.gateway6.is_some() || !ep.routes.is_empty(),
            mac,
            host_if,
            _veth: veth,
        });
    }
    for (i, l) in cfg.links.clone().iter().enumerate() {
        let [a, b] = &l.ports;
        let mut veth = wharf_cable(&topo.host, &format!("{prefix}{a}"), &format!("{prefix}{b}"))?;
        veth.move_b(topo.host.name())?;
        let bn = veth.b().to_string();
        topo.host
            .run(move || netns::isolate_from_host_stack(&bn))??;
        netns::set_up(Some(topo.host.name()), veth.b())?;
        cable(cfg, a, veth.a(), &format!("links[{i}]"))?;
        cable(cfg, b, veth.b(), &format!("links[{i}]"))?;
        topo.links.push(veth);
    }
    let cabled: Vec<&str> = cfg
        .endpoints
        .iter()
        .map(|e| e.port.as_str())
        .chain(
            cfg.links
                .iter()
                .flat_map(|l| l.ports.iter().map(String::as_str)),
        )
        .collect();
    if let Some(p) = cfg
        .ports
        .iter()
        .find(|p| p.backend.kind() == "afpacket" && !cabled.contains(&p.name.as_str()))
    {
        bail!(
            "port {} is not cabled in the lab: no endpoint or [[links]] entry uses it",
            p.name
        );
    }
    Ok(topo)
}

/// Starts the router on `cfg` inside the lab's host namespace (its AF_PACKET sockets are opened there).
pub fn start_router(topo: &Topology, cfg: Config, path: Option<PathBuf>) -> anyhow::Result<Router> {
    netns::run_in_netns(topo.host.name(), move || Router::start(cfg, path))?
}

/// Result of one check between two endpoints.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// Sender.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// `IPv4` or `IPv6`.
    pub family: &'static str,
    /// `ping` result (`None` passed, `Some(why)` failed).
    pub ping: Option<String>,
    /// TCP transfer result.
    pub tcp: Option<String>,
    /// TCP throughput in Mbit/s when it passed.
    pub tcp_mbps: f64,
}

impl CheckResult {
    /// Both passed.
    pub fn passed(&self) -> bool {
        self.ping.is_none() && self.tcp.is_none()
    }
}

/// Runs ping and a TCP transfer from every endpoint to every other endpoint it can reach: on the same
/// network, or through the router when both have a gateway. Over IPv4, and over IPv6 when both have an IPv6
/// address.
pub fn check(topo: &Topology) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for (i, a) in topo.hosts.iter().enumerate() {
        for (j, b) in topo.hosts.iter().enumerate() {
            if i == j || (a.network != b.network && !(a.routed && b.routed)) {
                continue;
            }
            let mut targets = vec![("IPv4", IpAddr::V4(b.addr))];
            if let (Some(_), Some(b6)) = (a.addr6, b.addr6) {
                targets.push(("IPv6", IpAddr::V6(b6)));
            }
            for (k, (family, to)) in targets.into_iter().enumerate() {
                let ping = ping(a, to).err().map(|e| format!("{e:#}"));
                let port = 5000 + (i * 100 + j) as u16 * 2 + k as u16;
                let (tcp, tcp_mbps) = match tcp_transfer(a, b, SocketAddr::new(to, port)) {
                    Ok(mbps) => (None, mbps),
                    Err(e) => (Some(format!("{e:#}")), 0.0),
                };
                results.push(CheckResult {
                    from: a.name.clone(),
                    to: b.name.clone(),
                    family,
                    ping,
                    tcp,
                    tcp_mbps,
                });
            }
        }
    }
    results
}

/// Pings `to` from `a`'s namespace (three echoes).
pub fn ping(a: &LabHost, to: IpAddr) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            a.ns.name(),
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &to.to_string(),
        ])
        .output()
        .context("cannot run ping (Debian package iputils-ping)")?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        let summary = text
            .lines()
            .find(|l| l.contains("packet loss"))
            .unwrap_or("no reply");
        bail!("{summary}{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Sends [`TCP_CHECK_BYTES`] from `a` to `b` (listening on `addr`) over TCP; both sides hash the bytes.
/// Returns Mbit/s.
pub fn tcp_transfer(a: &LabHost, b: &LabHost, addr: SocketAddr) -> anyhow::Result<f64> {
    let port = addr.port();
    let data: Vec<u8> = {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ port as u64;
        (0..TCP_CHECK_BYTES)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let mut h = DefaultHasher::new();
    h.write(&data);
    let sent_hash = h.finish();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let b_ns = b.ns.name().to_string();
    let server = std::thread::spawn(move || -> anyhow::Result<(u64, usize)> {
        netns::run_in_netns(&b_ns, move || -> anyhow::Result<(u64, usize)> {
            let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
            l.set_nonblocking(true)?;
            let _ = ready_tx.send(());
            let deadline = Instant::now() + Duration::from_secs(10);
            let (mut s, _) = loop {
                match l.accept() {
                    Ok(c) => break c,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => return Err(e).context("accept"),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut got = Vec::with_capacity(TCP_CHECK_BYTES);
            s.read_to_end(&mut got).context("receiving")?;
            let mut h = DefaultHasher::new();
            h.write(&got);
            Ok((h.finish(), got.len()))
        })?
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("the receiver did not start")?;
    let start = Instant::now();
    netns::run_in_netns(a.ns.name(), move || -> anyhow::Result<()> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connect {addr}"))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(&data).context("sending")?;
        s.shutdown(std::net::Shutdown::Write)?;
        // Wait for the receiver to close so the transfer is complete end to end.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        Ok(())
    })??;
    let (got_hash, got_len) = server
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    if got_len != TCP_CHECK_BYTES || got_hash != sent_hash {
        bail!("received {got_len} of {TCP_CHECK_BYTES} bytes, hash {got_hash:016x} != sent {sent_hash:016x}");
    }
    Ok(TCP_CHECK_BYTES as f64 * 8.0 / secs / 1e6)
}

/// Prints the results as a table and says whether all passed.
pub fn print_results(results: &[CheckResult]) -> bool {
    println!(
        "{:<12} {:<12} {:<6} {:<6} {:<22} result",
        "from", "to", "family", "ping", "tcp (4 MiB, hashed)"
    );
    for r in results {
        let tcp = match &r.tcp {
            None => format!("ok {:.0} Mbit/s", r.tcp_mbps),
            Some(_) => "FAIL".to_string(),
        };
        println!(
            "{:<12} {:<12} {:<6} {:<6} {:<22} {}",
            r.from,
            r.to,
            r.family,
            if r.ping.is_none() { "ok" } else { "FAIL" },
            tcp,
            if r.passed() { "pass" } else { "FAIL" }
        );
        for why in [&r.ping, &r.tcp].into_iter().flatten() {
            println!("    {why}");
        }
    }
    let passed = !results.is_empty() && results.iter().all(CheckResult::passed);
    println!(
        "{} of {} checks passed{}",
        results.iter().filter(|r| r.passed()).count(),
        results.len(),
        if results.is_empty() {
            " (no two endpoints reach each other: nothing to check)"
        } else {
            ""
        }
    );
    passed
}

/// `wharf lab`: build, run, check or wait for a signal, tear down. Returns whether the checks passed (true
/// when not checking).
pub fn run(opts: LabOptions) -> anyhow::Result<bool> {
    require_net_admin()?;
    let (mut cfg, origin) = match &opts.config {
        Some(p) => (config::load(p)?, p.display().to_string()),
        None => (
            config::parse(config::DEFAULT_LAB_CONFIG, "<embedded lab-default.toml>")?,
            "embedded default".into(),
        ),
    };
    let prefix = opts.prefix.clone().unwrap_or_else(|| "wl".to_string());
    let signals = Signals::install()?;
    let topo = build(&mut cfg, &prefix)?;
    cfg.validate()
        .context("the lab's config after pointing ports at the lab's interfaces")?;
    let socket = opts.socket.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "/run/wharf/lab-{}.sock",
            topo.hosts.first().map_or("x", |h| h.ns.name())
        ))
    });
    let mut router = start_router(&topo, cfg, opts.config.clone())?;
    let server = Server::bind(&socket)?;
    println!(
        "wharf lab ({origin}): {} endpoints, wharf's ports in namespace {}",
        topo.hosts.len(),
        topo.host.name()
    );
    for h in &topo.hosts {
        println!(
            "  {:<10} {:<16} namespace {:<16} port interface {}",
            h.name,
            h.addr,
            h.ns.name(),
            h.host_if
        );
    }
    println!("  control socket {}", socket.display());
    let passed = if opts.check {
        // Serve the control socket while the checks run on this thread's helpers.
        let results = std::thread::scope(|s| {
            let stop = signals.stop.clone();
            let topo = &topo;
            let checker = s.spawn(move || {
                let r = check(topo);
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                r
            });
            control_loop(&mut router, Some(&server), &signals);
            checker.join().unwrap_or_default()
        });
        let passed = print_results(&results);
        print!("{}", render_counters(&router));
        passed
    } else {
        if let (Some(a), Some(b)) = (topo.hosts.first(), topo.hosts.get(1)) {
            println!("try: ip netns exec {} ping {}", a.ns.name(), b.addr);
        }
        println!("     wharf ctl --socket {} show ports", socket.display());
        println!("Ctrl-C stops the router and removes the lab.");
        control_loop(&mut router, Some(&server), &signals);
        true
    };
    router.stop();
    drop(server);
    drop(topo);
    Ok(passed)
}

fn render_counters(router: &Router) -> String {
    let mut out = String::from("wharf counters:\n");
    for p in router.show_ports().as_array().into_iter().flatten() {
        out += &format!(
            "  port {:<6} rx {:>8} tx {:>8} drops {}\n",
            p["name"].as_str().unwrap_or("?"),
            p["rx_packets"],
            p["tx_packets"],
            p["drops"]
        );
    }
    out += &format!("  drops by reason: {}\n", router.show_drops());
    let stats = router.show_stats();
    let events: Vec<String> = stats["events"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out += &format!(
        "  events: {}\n",
        if events.is_empty() {
            "-".to_string()
        } else {
            events.join(" ")
        }
    );
    out
}
