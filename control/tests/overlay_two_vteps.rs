//! Two `wharf` processes, each a VTEP of the same overlay (VNI 77), joined by an underlay veth, each with one
//! endpoint namespace: the endpoints ping and move TCP across, both ways, and each router's `show vxlan`
//! (over its control socket) holds the other side's endpoint MAC as learned behind the other VTEP.
//!
//! ```text
//!  ns e1 (10.91.0.1) ── wharf 1 (ns h1: port a, underlay u 192.168.91.1) ══ veth ══ wharf 2 (ns h2: u
//!  192.168.91.2, port a) ── ns e2 (10.91.0.2)
//! ```
//!
//! Every namespace and link is named with this process's prefix and removed even on failure (guards); the
//! `wharf run` children are stopped by their pids.
//!
//! Needs root (namespaces, veth pairs); skipped loudly without it, and fails in CI.

use control::ctl::{self, Request, Show};
use dataplane::netns::{self, NetnsGuard, VethGuard};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{prefix, tcp};

/// A `wharf run` child in a namespace, stopped with SIGTERM (then SIGKILL) on drop.
struct Wharf {
    child: Child,
    socket: PathBuf,
}

impl Wharf {
    fn start(ns: &str, config: &Path, socket: PathBuf) -> Wharf {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_wharf"), "run"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting wharf");
        let w = Wharf { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ctl::request(&w.socket, &Request::Ping).is_err() {
            assert!(
                Instant::now() < deadline,
                "wharf in {ns} did not answer on its socket"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        w
    }

    fn show(&self, what: Show) -> serde_json::Value {
        ctl::request(
            &self.socket,
            &Request::Show {
                what,
                network: None,
            },
        )
        .unwrap()
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid (`ip netns exec` execs wharf in place).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
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

/// Removes a file at the end, also on failure.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn config(
    dir: &Path,
    name: &str,
    a_if: &str,
    u_if: &str,
    local: &str,
    remote: &str,
) -> (TempFile, PathBuf) {
    let socket = dir.join(format!("{name}.sock"));
    let text = format!(
        r#"
[dataplane]
workers = 1
idle = "adaptive"

[control]
socket = "{socket}"

[[ports]]
name = "u"
backend = "afpacket"
interface = "{u_if}"
addresses = ["{local}/24"]

[[ports]]
name = "a"
backend = "afpacket"
interface = "{a_if}"

[[networks]]
name = "ov"
mode = "overlay"
ports = ["a"]

[networks.vxlan]
vni = 77
underlay = "u"
remotes = ["{remote}"]
"#,
        socket = socket.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    (TempFile(path), socket)
}

fn ping(ns: &str, to: &str) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", to,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ping {ns} -> {to}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn two_wharf_vteps_carry_ping_and_tcp() {
    if !netns::require_root("two_wharf_vteps_carry_ping_and_tcp") {
        return;
    }
    let pfx = prefix('w');
    let (h1, h2) = (
        NetnsGuard::new(&format!("{pfx}h1")).unwrap(),
        NetnsGuard::new(&format!("{pfx}h2")).unwrap(),
    );
    let (e1, e2) = (
        NetnsGuard::new(&format!("{pfx}e1")).unwrap(),
        NetnsGuard::new(&format!("{pfx}e2")).unwrap(),
    );
    // Cables: endpoint <-> wharf port a (both sides), and the underlay between the two wharfs.
    let mut c1 = VethGuard::new(&format!("{pfx}a1"), &format!("{pfx}x1")).unwrap();
    let mut c2 = VethGuard::new(&format!("{pfx}a2"), &format!("{pfx}x2")).unwrap();
    let mut under = VethGuard::new(&format!("{pfx}u1"), &format!("{pfx}u2")).unwrap();
    c1.move_a(h1.name()).unwrap();
    c1.move_b(e1.name()).unwrap();
    c2.move_a(h2.name()).unwrap();
    c2.move_b(e2.name()).unwrap();
    under.move_a(h1.name()).unwrap();
    under.move_b(h2.name()).unwrap();
    for (h, ifs) in [(&h1, [c1.a(), under.a()]), (&h2, [c2.a(), under.b()])] {
        for i in ifs {
            let name = i.to_string();
            h.run(move || netns::isolate_from_host_stack(&name))
                .unwrap()
                .unwrap();
            netns::set_up(Some(h.name()), i).unwrap();
        }
    }
    for (e, inner, addr) in [(&e1, c1.b(), "10.91.0.1"), (&e2, c2.b(), "10.91.0.2")] {
        let ns = Some(e.name());
        netns::ip_in(ns, &["link", "set", "dev", inner, "name", "eth0"]).unwrap();
        netns::ip_in(ns, &["link", "set", "dev", "eth0", "mtu", "1450"]).unwrap();
        netns::add_addr4(ns, "eth0", addr.parse().unwrap(), 24).unwrap();
        netns::set_up(ns, "eth0").unwrap();
        e.run(|| {
            std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1").unwrap();
            netns::disable_tx_checksum_offload("eth0").unwrap();
        })
        .unwrap();
    }
    let dir = std::env::temp_dir();
    let (cfg1, sock1) = config(
        &dir,
        &format!("{pfx}-w1"),
        c1.a(),
        under.a(),
        "192.168.91.1",
        "192.168.91.2",
    );
    let (cfg2, sock2) = config(
        &dir,
        &format!("{pfx}-w2"),
        c2.a(),
        under.b(),
        "192.168.91.2",
        "192.168.91.1",
    );
    let w1 = Wharf::start(h1.name(), &cfg1.0, sock1.clone());
    let w2 = Wharf::start(h2.name(), &cfg2.0, sock2.clone());

    ping(e1.name(), "10.91.0.2");
    ping(e2.name(), "10.91.0.1");
    tcp(e1.name(), e2.name(), "10.91.0.2:7501".parse().unwrap());
    tcp(e2.name(), e1.name(), "10.91.0.1:7502".parse().unwrap());

    // Each side learned the other's endpoint behind the other VTEP.
    let mac = |e: &NetnsGuard| {
        netns::format_mac(e.run(|| netns::link_mac(None, "eth0")).unwrap().unwrap())
    };
    for (w, far, vtep) in [(&w1, &e2, "192.168.91.2"), (&w2, &e1, "192.168.91.1")] {
        let rows = w.show(Show::Vxlan);
        let m = mac(far);
        assert!(
            rows.as_array()
                .unwrap()
                .iter()
                .any(|r| r["mac"] == m.as_str() && r["vtep"] == vtep && r["type"] == "learned"),
            "{m} behind {vtep}: {rows}"
        );
        let ev = &w.show(Show::Stats)["events"];
        assert!(
            ev["vxlan_encap"].as_u64().unwrap() > 100 && ev["vxlan_decap"].as_u64().unwrap() > 100,
            "{ev}"
        );
        let drops = w.show(Show::Drops);
        assert_eq!(
            drops["vxlan_unknown_vni"].as_u64().unwrap_or(0),
            0,
            "{drops}"
        );
        assert_eq!(drops["vxlan_mtu"].as_u64().unwrap_or(0), 0, "{drops}");
    }
    drop((w1, w2));
    let _ = std::fs::remove_file(&sock1);
    let _ = std::fs::remove_file(&sock2);
}
