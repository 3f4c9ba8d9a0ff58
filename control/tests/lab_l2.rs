//! The L2 pipelines end to end, in network namespaces (`wharf lab` topologies, built in process with
//! [`control::lab`]): VLANs on an 802.1Q trunk stay isolated (`configs/lab-vlan.toml`), a macvlan network
//! on an uplink to an outside LAN (`configs/lab-macvlan.toml`), and hostile frames from a raw AF_PACKET
//! socket into a bridge with a small MAC limit (`configs/lab-limit.toml`). The three-endpoint bridge is
//! `tests/lab.rs`'s.
//!
//! Every test needs root (it creates namespaces and veth pairs) and is skipped loudly without it (it fails in
//! CI). Each one holds its lab in a [`Lab`], whose drop stops the router and then removes every namespace and
//! link, also when an assertion fails.

use control::lab::{self, LabHost};
use dataplane::netns::{self, format_mac};
use serde_json::Value;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::Hasher;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{prefix, quiet_ipv6, Lab, RawSender};

// ---- traffic -----------------------------------------------------------------------------------------------------

/// `ping -c 2` from namespace `ns` to `to`: `Ok` when replies came back, `Err(output)` otherwise.
fn ping_from(ns: &str, to: Ipv4Addr) -> Result<(), String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2",
        ])
        .arg(to.to_string())
        .output()
        .expect("running ping (Debian package iputils-ping)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

fn ping(from: &LabHost, to: Ipv4Addr) -> Result<(), String> {
    ping_from(from.ns.name(), to)
}

/// Bytes moved by [`tcp_transfer`].
const TCP_BYTES: usize = lab::TCP_CHECK_BYTES;

/// Sends [`TCP_BYTES`] of pseudo-random data from `a` to `b` over TCP, between sockets opened inside their
/// namespaces; both sides hash the bytes. `Err` says what went wrong.
fn tcp_transfer(a: &LabHost, b: &LabHost, port: u16) -> Result<(), String> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ port as u64;
    let data: Vec<u8> = (0..TCP_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut h = DefaultHasher::new();
    h.write(&data);
    let sent_hash = h.finish();
    let addr = SocketAddrV4::new(b.addr, port);
    let listener =
        b.ns.run(|| TcpListener::bind(addr))
            .unwrap()
            .map_err(|e| format!("bind {addr} in {}: {e}", b.ns.name()))?;
    let server = std::thread::spawn(move || -> Result<(u64, usize), String> {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::with_capacity(TCP_BYTES);
        s.read_to_end(&mut got)
            .map_err(|e| format!("receiving: {e}"))?;
        let mut h = DefaultHasher::new();
        h.write(&got);
        Ok((h.finish(), got.len()))
    });
    let sent =
        a.ns.run(move || -> Result<(), String> {
            let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
                .map_err(|e| format!("connect {addr}: {e}"))?;
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&data).map_err(|e| format!("sending: {e}"))?;
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            Ok(())
        })
        .unwrap();
    let received = server.join().expect("receiver thread");
    sent?;
    let (got_hash, got_len) = received?;
    if got_len != TCP_BYTES || got_hash != sent_hash {
        return Err(format!(
            "received {got_len} of {TCP_BYTES} bytes, hash {got_hash:016x}, sent {sent_hash:016x}"
        ));
    }
    Ok(())
}

/// `tcpdump -e -nn` on an interface of a namespace, from when it says it listens until [`Capture::stop`].
struct Capture {
    child: Option<Child>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Capture {
    fn start(ns: &str, ifname: &str) -> Capture {
        // `timeout` bounds it if the test dies before stopping it; it passes our SIGINT on to tcpdump.
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "-s", "INT", "60"])
            .args([
                "tcpdump",
                "-i",
                ifname,
                "-e",
                "-nn",
                "-l",
                "--immediate-mode",
            ])
            .args(["-c", "2000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running tcpdump (Debian package tcpdump)");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                all += &line;
                all.push('\n');
            }
            all
        });
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(out).read_to_string(&mut s);
            s
        });
        let mut cap = Capture {
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let (_, err) = cap.stop();
            panic!("tcpdump did not start listening on {ifname} in {ns}: {err}");
        }
        cap
    }

    /// Stops the capture; returns tcpdump's stdout (one line per frame) and stderr.
    fn stop(&mut self) -> (String, String) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            let _ = child.wait();
        }
        let out = self
            .stdout
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        (out, err)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An Ethernet frame: `dst`, `src`, the given type/tag bytes, then `payload_len` bytes of filler.
fn frame(dst: [u8; 6], src: [u8; 6], types: &[u16], payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(12 + 2 * types.len() + payload_len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for t in types {
        f.extend_from_slice(&t.to_be_bytes());
    }
    f.extend((0..payload_len).map(|i| i as u8));
    f
}

/// The IEEE "local experimental" ethertype: no stack handles it, so receivers drop such frames quietly.
const ETH_EXPERIMENTAL: u16 = 0x88b5;

/// Waits until `cond` holds (polling), for at most `secs`; returns whether it did.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Frames the kernel dropped from its per-CPU input backlogs, summed over CPUs (`/proc/net/softnet_stat`,
/// second column).
fn softnet_dropped() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|v| u64::from_str_radix(v, 16).unwrap())
        .sum()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

// ---- 2. VLANs on a trunk -----------------------------------------------------------------------------------------

/// Two VLANs, one subnet: red1/red2 (VLAN 10) and blue1/blue2 (VLAN 20) on four bridge domains joined by one
/// trunk (a veth between wharf ports t1 and t2). Same-VLAN pairs ping and move a hashed TCP stream; red never
/// reaches blue; tcpdump on the trunk sees every frame tagged, red ones with VLAN 10 and blue ones with 20;
/// and red-a's MAC table has red1 on its access port and red2 behind the trunk.
#[test]
fn vlans_on_a_trunk_stay_isolated() {
    if !netns::require_root("vlans_on_a_trunk_stay_isolated") {
        return;
    }
    let lab = Lab::start("lab-vlan.toml", &prefix('v'), |_| {});
    let (red1, red2) = (lab.host("red1"), lab.host("red2"));
    let (blue1, blue2) = (lab.host("blue1"), lab.host("blue2"));
    // The trunk cable's two ends (ports t1 and t2). wharf sends with PACKET_QDISC_BYPASS, which skips the
    // kernel's packet taps, so tcpdump on an end sees only what arrives there: what wharf sent on the other.
    // Both ends together show every frame that crossed the cable, once.
    let cable = &lab.topo().links[0];
    let mut caps = [
        Capture::start(lab.host_ns(), cable.a()),
        Capture::start(lab.host_ns(), cable.b()),
    ];

    ping(red1, red2.addr).unwrap_or_else(|e| panic!("red1 -> red2 (VLAN 10): {e}"));
    ping(blue1, blue2.addr).unwrap_or_else(|e| panic!("blue1 -> blue2 (VLAN 20): {e}"));
    // Same subnet, other VLAN: red1's ARP requests for the blue addresses must stay in VLAN 10.
    let (to_blue2, to_blue1) = std::thread::scope(|s| {
        let a = s.spawn(|| ping(red1, blue2.addr));
        let b = s.spawn(|| ping(red1, blue1.addr));
        (a.join().unwrap(), b.join().unwrap())
    });
    std::thread::sleep(Duration::from_millis(300));
    let (mut dump, mut dump_err) = (String::new(), String::new());
    for c in &mut caps {
        let (out, err) = c.stop();
        dump += &out;
        dump_err += &err;
    }

    assert!(
        to_blue2.is_err(),
        "red1 reached blue2 across VLANs: the VLANs leak"
    );
    assert!(
        to_blue1.is_err(),
        "red1 reached blue1 across VLANs: the VLANs leak"
    );
    // Had a red ARP request reached a blue host, it would have answered and kept red1 in its neighbour table.
    for b in [blue1, blue2] {
        let neigh = netns::ip_in(Some(b.ns.name()), &["neigh", "show"]).unwrap();
        assert!(
            !neigh.contains(&red1.addr.to_string()),
            "{} heard from red1: {neigh}",
            b.name
        );
    }

    // The trunk, as tcpdump's own dissector sees it: every frame tagged with its sender's VLAN.
    let red_macs = [format_mac(red1.mac), format_mac(red2.mac)];
    let blue_macs = [format_mac(blue1.mac), format_mac(blue2.mac)];
    let lines: Vec<&str> = dump.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !lines.is_empty(),
        "nothing captured on the trunk: {dump_err}"
    );
    for l in &lines {
        let src = l.split_whitespace().nth(1).unwrap_or("");
        let want = if red_macs.iter().any(|m| m == src) {
            "vlan 10,"
        } else if blue_macs.iter().any(|m| m == src) {
            "vlan 20,"
        } else {
            panic!("a frame from an unknown MAC on the trunk: {l}\n{dump}");
        };
        assert!(
            l.contains("ethertype 802.1Q (0x8100)") && l.contains(want),
            "frame on the trunk not tagged `{want}`: {l}\nwhole capture:\n{dump}"
        );
    }
    let has = |vlan: &str, what: &str| {
        lines
            .iter()
            .any(|l| l.contains(&format!("{vlan},")) && l.contains(what))
    };
    for (vlan, a, b) in [("vlan 10", red1, red2), ("vlan 20", blue1, blue2)] {
        for what in [
            format!("{} > {}: ICMP echo request", a.addr, b.addr),
            format!("{} > {}: ICMP echo reply", b.addr, a.addr),
            format!("who-has {} tell {}", b.addr, a.addr),
        ] {
            assert!(
                has(vlan, &what),
                "no `{what}` in {vlan} on the trunk:\n{dump}"
            );
        }
    }
    // red1's requests for the blue addresses crossed the trunk in VLAN 10 only, and nobody answered.
    for target in [blue1.addr, blue2.addr] {
        let what = format!("who-has {target} tell {}", red1.addr);
        assert!(has("vlan 10", &what), "no `{what}` in VLAN 10:\n{dump}");
        assert!(
            !has("vlan 20", &what),
            "`{what}` leaked into VLAN 20:\n{dump}"
        );
        assert!(
            !has("vlan 10", &format!("{target} is-at")),
            "{target} answered in VLAN 10:\n{dump}"
        );
    }

    tcp_transfer(red1, red2, 7010).unwrap_or_else(|e| panic!("TCP red1 -> red2: {e}"));
    tcp_transfer(blue2, blue1, 7020).unwrap_or_else(|e| panic!("TCP blue2 -> blue1: {e}"));

    // red-a learned red1 on its access port and red2 behind the trunk; blue-a knows no red MAC.
    let macs = lab.router().show_mac(Some("red-a")).unwrap();
    let port_of = |mac: [u8; 6]| {
        macs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["mac"] == format_mac(mac).as_str())
            .map(|r| r["port"].as_str().unwrap().to_string())
    };
    assert_eq!(port_of(red1.mac).as_deref(), Some("r1"), "{macs:#}");
    assert_eq!(port_of(red2.mac).as_deref(), Some("t1"), "{macs:#}");
    assert_eq!(port_of(blue1.mac), None, "{macs:#}");
    let blue_a = lab.router().show_mac(Some("blue-a")).unwrap().to_string();
    for m in &red_macs {
        assert!(
            !blue_a.contains(m.as_str()),
            "red MAC {m} in blue-a: {blue_a}"
        );
    }
    assert_eq!(
        lab.drops("vlan_filtered"),
        0,
        "{}",
        lab.router().show_drops()
    );
    lab.finish();
}

// ---- 3. macvlan with an outside LAN ------------------------------------------------------------------------

/// A macvlan network (e1, e2) on uplink `up`, whose far end is the LAN host `lan`. The LAN reaches both
/// endpoints and moves a hashed TCP stream to one, and its neighbour table holds each endpoint's own MAC;
/// the endpoints reach each other through wharf without the LAN; and with the host's own address on the
/// uplink interface, the LAN reaches the host while the endpoints do not (and the host does not reach them).
#[test]
fn macvlan_endpoints_have_their_own_macs_on_the_lan_and_cannot_reach_the_host() {
    if !netns::require_root(
        "macvlan_endpoints_have_their_own_macs_on_the_lan_and_cannot_reach_the_host",
    ) {
        return;
    }
    let lab = Lab::start("lab-macvlan.toml", &prefix('m'), quiet_ipv6);
    let (e1, e2, lan) = (lab.host("e1"), lab.host("e2"), lab.host("lan"));

    // e1 -> e2 is switched by wharf: the unicast ICMP never goes out of the uplink, only e1's ARP broadcast
    // does. First thing, so no neighbour entry anywhere is due for a unicast probe to the LAN meanwhile.
    let up_tx = num(&lab.port("up")["tx_packets"]);
    let m2_tx = num(&lab.port("m2")["tx_packets"]);
    ping(e1, e2.addr).unwrap_or_else(|e| panic!("e1 -> e2: {e}"));
    let up_sent = num(&lab.port("up")["tx_packets"]) - up_tx;
    let m2_sent = num(&lab.port("m2")["tx_packets"]) - m2_tx;
    assert!(
        m2_sent >= 2,
        "the echo requests reached e2's port: {m2_sent}"
    );
    assert!(
        up_sent <= 1,
        "e1 -> e2 went out of the uplink: {up_sent} frames (at most one ARP broadcast expected)"
    );

    for e in [e1, e2] {
        ping(lan, e.addr).unwrap_or_else(|err| panic!("lan -> {}: {err}", e.name));
    }
    tcp_transfer(lan, e1, 7030).unwrap_or_else(|e| panic!("TCP lan -> e1: {e}"));

    // The LAN sees two neighbours with two MACs: the endpoints' own, not the uplink's.
    let neigh = netns::ip_in(Some(lan.ns.name()), &["neigh", "show"]).unwrap();
    let uplink_mac = netns::link_mac(Some(lab.host_ns()), &lan.host_if).unwrap();
    for e in [e1, e2] {
        let line = neigh
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&e.addr.to_string()))
            .unwrap_or_else(|| panic!("no neighbour entry for {} on the LAN:\n{neigh}", e.addr));
        assert!(
            line.contains(&format!("lladdr {} ", format_mac(e.mac))),
            "the LAN should see {} at {}'s own MAC {}: {line}",
            e.addr,
            e.name,
            format_mac(e.mac)
        );
        assert_ne!(e.mac, uplink_mac);
    }
    assert_ne!(e1.mac, e2.mac);

    // The host: its own address on the uplink interface (wharf's "NIC"), answering ARP there.
    let host = lab.host_ns().to_string();
    let up_if = lan.host_if.clone();
    lab.topo()
        .host
        .run(|| std::fs::write(format!("/proc/sys/net/ipv4/conf/{up_if}/arp_ignore"), "0"))
        .unwrap()
        .unwrap();
    let host_ip = Ipv4Addr::new(10, 79, 0, 254);
    netns::add_addr4(Some(&host), &up_if, host_ip, 24).unwrap();
    ping(lan, host_ip).unwrap_or_else(|e| panic!("the LAN must reach the host: {e}"));
    let isolated_before = lab.drops("host_isolated");
    for e in [e1, e2] {
        assert!(
            ping(e, host_ip).is_err(),
            "{} reached the host's address through macvlan",
            e.name
        );
    }
    assert!(
        ping_from(&host, e1.addr).is_err(),
        "the host reached e1 through macvlan"
    );
    // Even knowing the host's MAC (no ARP needed), e1's frames to it are refused by wharf and counted.
    netns::add_neigh4(Some(e1.ns.name()), "eth0", host_ip, uplink_mac).unwrap();
    assert!(ping(e1, host_ip).is_err(), "e1 reached the host by its MAC");
    assert_eq!(
        lab.drops("host_isolated") - isolated_before,
        2,
        "both echo requests to the host's MAC dropped as host_isolated: {}",
        lab.router().show_drops()
    );
    // The isolation is of the host only: the endpoints still reach the LAN and each other.
    ping(e2, lan.addr).unwrap_or_else(|e| panic!("e2 -> lan: {e}"));
    ping(e2, e1.addr).unwrap_or_else(|e| panic!("e2 -> e1: {e}"));
    lab.finish();
}

// ---- 4. hostile input through real ports ---------------------------------------------------------------------

/// Garbage from a raw AF_PACKET socket in endpoint a's namespace into bridge "lim" (`mac_limit = 1000`):
/// runts, truncated tags, QinQ, multicast and zero source MACs, impossible lengths, and 100k frames from
/// random source MACs. The router keeps forwarding, the table stops at its limit, and the counters add up.
#[test]
fn hostile_frames_and_a_mac_flood_through_real_ports() {
    if !netns::require_root("hostile_frames_and_a_mac_flood_through_real_ports") {
        return;
    }
    let lab = Lab::start("lab-limit.toml", &prefix('h'), quiet_ipv6);
    let (a, b) = (lab.host("a"), lab.host("b"));
    let tx = RawSender::open(a);
    let rx_a = || {
        let p = lab.port("a");
        (num(&p["rx_packets"]), num(&p["rx_bytes"]))
    };
    let tx_b = || {
        let p = lab.port("b");
        (num(&p["tx_packets"]), num(&p["tx_bytes"]))
    };
    assert_eq!(rx_a(), (0, 0), "a quiet start (IPv6 off)");

    // Runts below an Ethernet header: the kernel refuses to send them (AF_PACKET checks the device's
    // min_header_len, 14 for Ethernet, even for root), so they never reach a veth.
    for len in 0..14 {
        let f = frame(b.mac, a.mac, &[ETH_EXPERIMENTAL], 0);
        let err = tx.send(&f[..len]).expect_err("the kernel sent a runt");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{len} bytes: {err}");
    }
    // Longer than the MTU plus the header (plus a tag): refused by the kernel too.
    for len in [1515usize, 1519, 9000] {
        let err = tx
            .send(&frame(b.mac, a.mac, &[ETH_EXPERIMENTAL], len - 14))
            .expect_err("the kernel sent a frame over the MTU");
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EMSGSIZE),
            "{len} bytes: {err}"
        );
    }
    // 14 to 59 bytes: sent as they are. A veth does not pad to the 60-byte minimum (NIC drivers do), so wharf
    // receives the exact bytes, and as an L2 switch forwards them unchanged.
    let short = [14usize, 15, 20, 59];
    for len in short {
        tx.send(&frame(b.mac, a.mac, &[ETH_EXPERIMENTAL], len - 14))
            .unwrap();
    }
    let short_bytes: usize = short.iter().sum();
    assert!(
        wait_for(5, || rx_a().0 == short.len() as u64),
        "{:?}",
        rx_a()
    );
    assert_eq!(
        rx_a(),
        (short.len() as u64, short_bytes as u64),
        "no padding on the veth"
    );
    assert!(wait_for(5, || tx_b().0 == short.len() as u64));
    assert_eq!(tx_b(), (short.len() as u64, short_bytes as u64));

    // Truncated 802.1Q tags (a tag needs 4 bytes after the type): dropped, by the kernel (its VLAN untagging
    // runs before packet sockets see a frame) or by wharf as `truncated`; never forwarded.
    let (rx0, tx0, trunc0) = (rx_a().0, tx_b().0, lab.drops("truncated"));
    for len in [14usize, 15, 16, 17] {
        tx.send(&frame(b.mac, a.mac, &[0x8100], len - 14)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let tagged_runts_seen = rx_a().0 - rx0;
    assert_eq!(
        lab.drops("truncated") - trunc0,
        tagged_runts_seen,
        "every truncated tag wharf saw is counted as truncated"
    );
    assert_eq!(tx_b().0, tx0, "a truncated tagged frame was forwarded");
    eprintln!("truncated 802.1Q frames that reached wharf: {tagged_runts_seen} of 4");

    // Double tags: 802.1ad S-tag over a C-tag, a lone S-tag, the old 0x9100 QinQ type, and two 802.1Q tags.
    let qinq = [
        frame(b.mac, a.mac, &[0x88a8, 100, 0x8100, 10, 0x0800], 46),
        frame(b.mac, a.mac, &[0x88a8, 100, 0x0800], 46),
        frame(b.mac, a.mac, &[0x9100, 100, 0x8100, 10, 0x0800], 46),
        frame(b.mac, a.mac, &[0x8100, 100, 0x8100, 10, 0x0800], 46),
    ];
    const QINQ_ROUNDS: u64 = 5;
    for _ in 0..QINQ_ROUNDS {
        for f in &qinq {
            tx.send(f).unwrap();
        }
    }
    let qinq_sent = QINQ_ROUNDS * qinq.len() as u64;
    assert!(
        wait_for(5, || lab.drops("qinq") >= qinq_sent),
        "qinq drops {} of {qinq_sent} sent: {}",
        lab.drops("qinq"),
        lab.router().show_drops()
    );

    // Bad source MACs: multicast (group bit set) and all-zero. Never learned, dropped and counted.
    let bad_src = [
        [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01],
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        [0x33, 0x33, 0x00, 0x00, 0x00, 0x01],
        [0x03, 0x00, 0x00, 0x00, 0x00, 0x07],
        [0; 6],
    ];
    for src in bad_src {
        for dst in [b.mac, [0xff; 6]] {
            tx.send(&frame(dst, src, &[ETH_EXPERIMENTAL], 46)).unwrap();
        }
    }
    let bad_sent = 2 * bad_src.len() as u64;
    assert!(
        wait_for(5, || lab.drops("bad_src_mac") >= bad_sent),
        "bad_src_mac {} of {bad_sent}",
        lab.drops("bad_src_mac")
    );

    // Impossible lengths above L2 (an 802.3 length field of 1500 in a 60-byte frame, an IPv4 header saying
    // 65535 bytes in 34): a switch does not read them; forwarded, no panic.
    let (tx1, _) = tx_b();
    tx.send(&frame(b.mac, a.mac, &[1500], 46)).unwrap();
    let mut ip = frame(b.mac, a.mac, &[0x0800], 20);
    ip[14] = 0x45;
    ip[16..18].copy_from_slice(&65535u16.to_be_bytes());
    tx.send(&ip).unwrap();
    assert!(wait_for(5, || tx_b().0 == tx1 + 2), "{:?}", tx_b());

    // Exactly what was sent, counted by reason.
    let drops = lab.router().show_drops();
    assert_eq!(lab.drops("qinq"), qinq_sent, "{drops}");
    assert_eq!(lab.drops("bad_src_mac"), bad_sent, "{drops}");

    // The endpoints talk; the bridge knows them both.
    ping(a, b.addr).unwrap_or_else(|e| panic!("a -> b before the flood: {e}"));
    let learned0 = lab.event("mac_learned");
    assert_eq!(learned0, 2, "a and b learned, nothing else");

    // The flood: 100k frames from random unicast sources (what `macof` does), to b.
    const FLOOD: u64 = 100_000;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut sources = HashSet::new();
    let (rx_before, missed_before) = (rx_a().0, num(&lab.port("a")["rx_missed"]));
    let (limit0, full0) = (lab.event("mac_limit"), lab.event("mac_table_full"));
    let backlog0 = softnet_dropped();
    let mut f = frame(b.mac, a.mac, &[ETH_EXPERIMENTAL], 46);
    let start = Instant::now();
    for _ in 0..FLOOD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut src: [u8; 6] = x.to_be_bytes()[2..8].try_into().unwrap();
        src[0] = (src[0] & 0xfc) | 0x02; // unicast, locally administered
        sources.insert(src);
        f[6..12].copy_from_slice(&src);
        tx.send(&f).unwrap();
    }
    let send_time = start.elapsed();
    // Wait until wharf has taken every frame off the ring (received, or lost because the ring was full).
    let taken = || {
        let p = lab.port("a");
        num(&p["rx_packets"]) - rx_before + num(&p["rx_missed"]) - missed_before
    };
    let mut last = (0, Instant::now());
    wait_for(20, || {
        let t = taken();
        if t != last.0 {
            last = (t, Instant::now());
        }
        t >= FLOOD || last.1.elapsed() > Duration::from_secs(2)
    });
    let received = rx_a().0 - rx_before;
    let missed = num(&lab.port("a")["rx_missed"]) - missed_before;
    let (learned, limited, full) = (
        lab.event("mac_learned") - learned0,
        lab.event("mac_limit") - limit0,
        lab.event("mac_table_full") - full0,
    );
    let bridges = lab.router().show_bridges();
    eprintln!(
        "flood: {FLOOD} frames ({} distinct sources) sent in {send_time:?}; wharf received {received}, \
         missed {missed}; learned {learned}, mac_limit {limited}, mac_table_full {full}; bridges {bridges}",
        sources.len()
    );
    // Every frame reached wharf's ring, or was lost on the way: by the kernel before the ring (its per-CPU
    // backlog; global, so other traffic on the machine may add to it) or because the ring was full.
    let backlog = softnet_dropped() - backlog0;
    assert!(
        received + missed <= FLOOD && received + missed + backlog >= FLOOD,
        "received {received} + missed {missed} (+ kernel backlog drops {backlog}) != {FLOOD} sent"
    );
    assert_eq!(
        learned + limited + full,
        received,
        "every flood frame wharf received was learned or refused, and counted"
    );
    assert_eq!(bridges[0]["name"], "lim");
    assert_eq!(bridges[0]["limit"], 1000);
    assert_eq!(bridges[0]["macs"], 1000, "the table stops at its limit");
    assert_eq!(
        learned,
        1000 - 2,
        "learned up to the limit (a and b were there)"
    );
    assert!(limited > 0);
    assert_eq!(
        lab.router()
            .show_mac(Some("lim"))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1000
    );

    // Still forwarding, and a and b were not pushed out.
    ping(a, b.addr).unwrap_or_else(|e| panic!("a -> b after the flood: {e}"));
    ping(b, a.addr).unwrap_or_else(|e| panic!("b -> a after the flood: {e}"));
    let macs = lab.router().show_mac(Some("lim")).unwrap().to_string();
    assert!(macs.contains(&format_mac(a.mac)) && macs.contains(&format_mac(b.mac)));
    let drops = lab.router().show_drops();
    assert_eq!(lab.drops("qinq"), qinq_sent, "{drops}");
    assert_eq!(lab.drops("bad_src_mac"), bad_sent, "{drops}");
    drop(tx);
    lab.finish();
}
