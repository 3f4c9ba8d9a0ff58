//! What the lab tests share: the [`Lab`] guard (a built topology and the router on it, torn down on drop),
//! per-process name prefixes, and a raw AF_PACKET sender for hand-made frames.
#![allow(dead_code)] // each test file uses a part

pub mod counting;
pub mod nat_config;
pub mod ring_peer;
pub mod two_workers;

use control::config;
use control::lab::{self, LabHost, Topology};
use control::router::Router;
use dataplane::netns;
use serde_json::Value;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;

// ---- the lab guard ---------------------------------------------------------------------------------------------

/// A built topology and the router on it. Drop stops the router first (its ports live in the topology's host
/// namespace), then deletes the namespaces and links.
pub struct Lab {
    router: Option<Router>,
    topo: Option<Topology>,
    prefix: String,
}

impl Lab {
    /// Builds `configs/FILE` with names starting with `prefix`, runs `prepare` on the topology before the
    /// router starts (e.g. to quiet the endpoints' IPv6), then starts the router.
    pub fn start(file: &str, prefix: &str, prepare: impl FnOnce(&Topology)) -> Lab {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../configs")
            .join(file);
        let mut cfg = config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let topo = lab::build(&mut cfg, prefix).expect("building the lab");
        let mut lab = Lab {
            router: None,
            topo: Some(topo),
            prefix: prefix.to_string(),
        };
        cfg.validate()
            .expect("the config after pointing ports at the lab's interfaces");
        prepare(lab.topo());
        lab.router = Some(lab::start_router(lab.topo(), cfg, None).expect("starting the router"));
        lab
    }

    pub fn topo(&self) -> &Topology {
        self.topo.as_ref().unwrap()
    }

    pub fn router(&self) -> &Router {
        self.router.as_ref().unwrap()
    }

    pub fn host(&self, name: &str) -> &LabHost {
        self.topo()
            .hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no endpoint {name}"))
    }

    pub fn host_ns(&self) -> &str {
        self.topo().host.name()
    }

    /// Port `name`'s counters from `show ports`.
    pub fn port(&self, name: &str) -> Value {
        self.router()
            .show_ports()
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no port {name}"))
    }

    /// Drops by reason (`show drops`), 0 when absent.
    pub fn drops(&self, reason: &str) -> u64 {
        self.router().show_drops()[reason].as_u64().unwrap_or(0)
    }

    /// A worker event counter (`show stats`).
    pub fn event(&self, name: &str) -> u64 {
        self.router().show_stats()["events"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no event counter {name}"))
    }

    /// Removes everything and checks that nothing with the lab's prefix is left.
    pub fn finish(mut self) {
        self.teardown();
        let netns = netns::ip(&["netns", "list"]).unwrap();
        assert!(
            !netns.lines().any(|l| l.starts_with(&self.prefix)),
            "namespaces left behind: {netns}"
        );
        let links = netns::ip(&["-o", "link", "show"]).unwrap();
        assert!(
            !links.contains(&format!(": {}", self.prefix)),
            "links left behind: {links}"
        );
    }

    fn teardown(&mut self) {
        if let Some(r) = self.router.take() {
            r.stop();
        }
        drop(self.topo.take());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A per-test, per-process name prefix (interface names are cut to 15 characters: keep it short).
pub fn prefix(letter: char) -> String {
    format!("{letter}{:x}", std::process::id() % 0xfff)
}

/// Turns IPv6 off in every endpoint namespace, so the only frames on the wires are the test's own (no router
/// solicitations, DAD or MLD reports) and counters can be compared exactly.
pub fn quiet_ipv6(topo: &Topology) {
    for h in &topo.hosts {
        h.ns.run(|| {
            for key in ["all", "default", "eth0"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6"), "1").unwrap();
            }
        })
        .unwrap();
    }
}

/// Runs `args` inside `h`'s namespace; stdout and stderr together, and whether it succeeded.
pub fn run_in(h: &LabHost, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", h.ns.name()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The hops `traceroute -n` printed, in order (`*` for a hop that did not answer).
pub fn traceroute(h: &LabHost, family: &str, to: &str) -> Vec<String> {
    let (_, out) = run_in(
        h,
        &[
            "traceroute",
            family,
            "-n",
            "-q",
            "1",
            "-w",
            "2",
            "-m",
            "4",
            to,
        ],
    );
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// Moves 1 MiB over TCP from namespace `from` to a listener on `to` in namespace `to_ns`, checking every byte.
pub fn tcp(from: &str, to_ns: &str, to: std::net::SocketAddr) {
    use std::io::{Read, Write};
    use std::time::Duration;
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let want = data.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = to_ns.to_string();
    let server = std::thread::spawn(move || {
        netns::run_in_netns(&ns, move || {
            let l = std::net::TcpListener::bind(to).unwrap();
            ready_tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        })
        .unwrap()
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    netns::run_in_netns(from, move || {
        let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
    })
    .unwrap();
    let got = server.join().expect("receiver");
    assert!(
        got == want,
        "TCP {from} -> {to}: {} of {} bytes, or different",
        got.len(),
        want.len()
    );
}

// ---- raw frames ------------------------------------------------------------------------------------------------

/// An AF_PACKET raw socket bound to `eth0` of an endpoint namespace, for sending hand-made frames. Bound with
/// protocol 0, it receives nothing.
pub struct RawSender {
    fd: OwnedFd,
}

impl RawSender {
    pub fn open(host: &LabHost) -> RawSender {
        host.ns
            .run(|| {
                // SAFETY: plain socket(2); the fd is owned right below.
                let fd = unsafe {
                    libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
                };
                assert!(
                    fd >= 0,
                    "socket(AF_PACKET): {}",
                    std::io::Error::last_os_error()
                );
                // SAFETY: a fresh fd nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                // SAFETY: the name is NUL-terminated.
                let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
                assert!(ifindex > 0, "no eth0 in {}", host.ns.name());
                // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
                let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_ifindex = ifindex as i32;
                // SAFETY: sll is a valid sockaddr_ll of the length passed.
                let rc = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        (&sll as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                };
                assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
                RawSender { fd }
            })
            .unwrap()
    }

    /// Sends one frame as it is (the kernel adds nothing to a SOCK_RAW frame).
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: the buffer is valid for its length; the fd is ours.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        assert_eq!(n as usize, frame.len(), "short send");
        Ok(())
    }
}
