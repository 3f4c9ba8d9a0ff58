//! The VXLAN overlay end to end, in network namespaces (`configs/lab-overlay.toml`): wharf is one VTEP
//! (192.168.90.1, VNI 42, endpoints a and b), the Linux kernel the other: in the lab's `vtep` namespace (the
//! host on wharf's underlay port) the test adds a kernel vxlan device (`vx42`, VNI 42, dstport 4789), enslaves
//! it to a bridge with one end of a veth whose other end is in one more namespace, the remote endpoint `r`
//! (10.90.0.3). Then: ping and TCP both ways between wharf's endpoints and `r`; `tshark` dissects the captured
//! underlay as VXLAN with correct outer IPv4 checksums both ways; `show vxlan` lists `r`'s MAC as learned
//! behind the kernel VTEP; a run-time FDB entry (`vxlan fdb add`) steers unicast, and its removal falls back
//! to flooding.
//!
//! Needs root (namespaces, veth pairs, vxlan devices); skipped loudly without it, and fails in CI.

use control::lab;
use dataplane::netns::{self, NetnsGuard, VethGuard};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{prefix, quiet_ipv6, tcp, Lab};

const R_ADDR: &str = "10.90.0.3";
const KERNEL_VTEP: &str = "192.168.90.2";
const WHARF_VTEP: &str = "192.168.90.1";

/// Runs `args` in namespace `ns`; panics with the output when it fails.
fn sh(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?} in {ns}: {text}");
    text
}

fn ping(ns: &str, to: &str) -> Result<(), String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", to,
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// A capture running in a namespace, stopped (by its own pid) on drop.
struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(ns: &str, ifname: &str, file: std::path::PathBuf) -> Capture {
        let child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-U", "-n", "-i", ifname, "-w",
            ])
            .arg(&file)
            .args(["udp", "port", "4789"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump (Debian package tcpdump)");
        // tcpdump needs a moment to open the interface.
        std::thread::sleep(Duration::from_millis(700));
        Capture { child, file }
    }

    fn stop(&mut self) {
        // SIGINT: tcpdump flushes and exits; `ip netns exec` passes the signal on (same process, exec'd).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
fn wharf_and_a_kernel_vtep_carry_ping_and_tcp() {
    if !netns::require_root("wharf_and_a_kernel_vtep_carry_ping_and_tcp") {
        return;
    }
    let pfx = prefix('o');
    let lab = Lab::start("lab-overlay.toml", &pfx, quiet_ipv6);
    let (a, b, vtep) = (lab.host("a"), lab.host("b"), lab.host("vtep"));
    let vns = vtep.ns.name();

    // The kernel VTEP, bridged to the remote endpoint's namespace.
    let r = NetnsGuard::new(&format!("{pfx}r")).expect("namespace r");
    let mut veth = VethGuard::new(&format!("{pfx}rv"), &format!("{pfx}rr")).expect("veth");
    veth.move_a(vns).unwrap();
    veth.move_b(r.name()).unwrap();
    sh(
        vns,
        &[
            "ip",
            "link",
            "add",
            "vx42",
            "type",
            "vxlan",
            "id",
            "42",
            "dstport",
            "4789",
            "local",
            KERNEL_VTEP,
            "remote",
            WHARF_VTEP,
            "dev",
            "eth0",
        ],
    );
    sh(vns, &["ip", "link", "add", "br42", "type", "bridge"]);
    sh(vns, &["ip", "link", "set", "vx42", "master", "br42"]);
    sh(vns, &["ip", "link", "set", veth.a(), "master", "br42"]);
    for l in ["vx42", "br42", veth.a()] {
        sh(vns, &["ip", "link", "set", l, "up"]);
    }
    sh(r.name(), &["ip", "link", "set", veth.b(), "name", "eth0"]);
    sh(
        r.name(),
        &["ip", "addr", "add", &format!("{R_ADDR}/24"), "dev", "eth0"],
    );
    // The remote endpoint gets the overlay MTU too (the kernel vxlan device has 1500 - 50).
    sh(
        r.name(),
        &["ip", "link", "set", "eth0", "mtu", "1450", "up"],
    );
    r.run(|| {
        std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1").unwrap();
        netns::disable_tx_checksum_offload("eth0").unwrap();
    })
    .unwrap();

    let file = std::env::temp_dir().join(format!("{pfx}-vxlan.pcap"));
    let mut cap = Capture::start(vns, "eth0", file.clone());

    // Ping both ways (a and b reach r through wharf's VTEP; r answers through the kernel's).
    for (from, to) in [
        (a.ns.name(), R_ADDR),
        (b.ns.name(), R_ADDR),
        (r.name(), "10.90.0.1"),
        (r.name(), "10.90.0.2"),
    ] {
        ping(from, to).unwrap_or_else(|e| panic!("ping {from} -> {to}: {e}"));
    }
    // Local traffic between a and b stays local.
    lab::ping(a, "10.90.0.2".parse::<IpAddr>().unwrap()).unwrap();

    // TCP both ways.
    tcp(
        a.ns.name(),
        r.name(),
        SocketAddr::new(R_ADDR.parse().unwrap(), 7401),
    );
    tcp(
        r.name(),
        b.ns.name(),
        SocketAddr::new("10.90.0.2".parse().unwrap(), 7402),
    );

    assert!(lab.event("vxlan_encap") > 100, "TCP went out encapsulated");
    assert!(lab.event("vxlan_decap") > 100, "and came back decapsulated");
    assert!(
        lab.event("vxlan_floods") >= 1,
        "the first ARP went to the flood list"
    );
    assert_eq!(lab.drops("vxlan_unknown_vni"), 0);
    assert_eq!(lab.drops("vxlan_malformed"), 0);
    assert_eq!(lab.drops("vxlan_mtu"), 0, "endpoints have the overlay MTU");

    // The FDB: r's MAC learned behind the kernel VTEP, the static example, the flood list.
    let r_mac = netns::format_mac(r.run(|| netns::link_mac(None, "eth0")).unwrap().unwrap());
    let rows = lab.router().show_vxlan();
    let rows = rows.as_array().unwrap();
    let find = |mac: &str, kind: &str| {
        rows.iter().any(|x| {
            x["mac"] == mac && x["type"] == kind && x["vtep"] == KERNEL_VTEP && x["vni"] == 42
        })
    };
    assert!(find(&r_mac, "learned"), "{r_mac} learned: {rows:?}");
    assert!(find("02:90:00:00:00:99", "static"), "{rows:?}");
    assert!(find("00:00:00:00:00:00", "flood"), "{rows:?}");

    // The capture: every packet dissects as VXLAN 42 with a good outer IPv4 checksum, in both directions.
    cap.stop();
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-d",
            "udp.port==4789,vxlan",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "vxlan.vni",
            "-e",
            "ip.checksum.status",
            "-e",
            "frame.protocols",
            // Outer values only (the inner IPv4 header has an ip.src too).
            "-E",
            "occurrence=f",
        ])
        .output()
        .expect("tshark (Debian package tshark)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let from_wharf = lines.iter().filter(|l| l[0] == WHARF_VTEP).count();
    let from_kernel = lines.iter().filter(|l| l[0] == KERNEL_VTEP).count();
    assert!(
        from_wharf > 50 && from_kernel > 50,
        "{from_wharf} / {from_kernel} packets captured: {text}"
    );
    for l in &lines {
        assert_eq!(l.get(1).copied(), Some("42"), "not VXLAN 42: {l:?}");
        // 1 = good (2 would be unverified, 0 bad).
        assert_eq!(l.get(2).copied(), Some("1"), "outer IPv4 checksum: {l:?}");
        assert!(
            l.get(3)
                .is_some_and(|t| t.contains("udp:vxlan:eth:ethertype:")),
            "an inner Ethernet frame: {l:?}"
        );
    }

    // A run-time FDB entry: r's MAC steered to a VTEP that does not exist, so pings fail; deleting the entry
    // restores the learned path.
    lab.router()
        .vxlan_fdb_add("ov", &r_mac, "192.168.90.77")
        .unwrap();
    assert!(
        ping(a.ns.name(), R_ADDR).is_err(),
        "the fed entry wins over the learned one"
    );
    assert!(lab
        .router()
        .show_vxlan()
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["type"] == "fed"));
    lab.router().vxlan_fdb_del("ov", &r_mac).unwrap();
    assert!(lab.router().vxlan_fdb_del("ov", &r_mac).is_err());
    ping(a.ns.name(), R_ADDR).expect("learned path again");

    drop(cap);
    drop(veth);
    drop(r);
    lab.finish();
}
