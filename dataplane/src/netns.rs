//! Linux network plumbing for end-to-end tests and the `wharf lab` command: network namespaces, veth pairs and
//! their addresses, by running the `ip` command (iproute2); running a closure inside a namespace; and turning off
//! transmit checksum offload on an interface.
//!
//! Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Tests start with [`require_root`] and hold
//! their namespaces and links in [`NetnsGuard`] and [`VethGuard`], which delete them on drop, also when the test
//! fails with a panic. Names come from [`unique_name`] (process id and a counter), so tests running in parallel,
//! in one process or several, never collide; interface names stay within the kernel's 15 characters.
//!
//! Functions that act on an interface take `ns: Option<&str>`: `None` is the namespace of the calling thread,
//! `Some(name)` a named namespace (`ip -n name ...`).

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Longest interface name the kernel takes (`IFNAMSIZ - 1`).
pub const MAX_IFNAME: usize = 15;

static NEXT_NAME: AtomicU32 = AtomicU32::new(0);

/// Serialises `ip netns add/del` within the process: iproute2 sets up the shared `/run/netns` mount on first
/// use, and two threads doing that at once can race.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// A name unique to this process and call: `prefix`, the pid and a counter, in hex, at most 15 characters (the
/// prefix is shortened when needed), so it is valid for both interfaces and namespaces. Characters other than
/// ASCII letters, digits, `-` and `_` are left out of the prefix.
pub fn unique_name(prefix: &str) -> String {
    unique(prefix, MAX_IFNAME)
}

/// Like [`unique_name`] but for namespaces, whose names may be longer: the prefix is kept up to 48 characters.
pub fn unique_ns_name(prefix: &str) -> String {
    unique(prefix, 64)
}

fn unique(prefix: &str, max: usize) -> String {
    let n = NEXT_NAME.fetch_add(1, Ordering::Relaxed);
    let tail = format!("{:x}x{:x}", std::process::id(), n);
    let room = max.saturating_sub(tail.len()).max(1);
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(room)
        .collect();
    let mut name = format!("{prefix}{tail}");
    name.truncate(max);
    name
}

/// Formats a MAC address as `02:00:00:00:00:01`.
pub fn format_mac(mac: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

/// Parses `02:00:00:00:00:01`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Runs `ip ARGS...` and returns its standard output, or an error naming the command and quoting its stderr.
pub fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot run `ip {}` (is iproute2 installed?): {e}",
                args.join(" ")
            ),
        )
    })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip [-n NS] ARGS...`.
pub fn ip_in(ns: Option<&str>, args: &[&str]) -> io::Result<String> {
    match ns {
        None => ip(args),
        Some(ns) => {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            ip(&all)
        }
    }
}

/// Creates network namespace `name` (`ip netns add`).
pub fn add_netns(name: &str) -> io::Result<()> {
    let _g = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ip(&["netns", "add", name]).map(drop)
}

/// Deletes network namespace `name` (`ip netns del`); the interfaces in it go with it.
pub fn del_netns(name: &str) -> io::Result<()> {
    let _g = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ip(&["netns", "del", name]).map(drop)
}

/// Creates a veth pair `a` <-> `b` in the calling thread's namespace.
pub fn add_veth(a: &str, b: &str) -> io::Result<()> {
    ip(&["link", "add", a, "type", "veth", "peer", "name", b]).map(drop)
}

/// Deletes link `ifname` (for a veth, both ends).
pub fn del_link(ns: Option<&str>, ifname: &str) -> io::Result<()> {
    ip_in(ns, &["link", "del", ifname]).map(drop)
}

/// Moves `ifname` from the calling thread's namespace into namespace `ns`. It comes out down and without
/// addresses.
pub fn move_to_netns(ifname: &str, ns: &str) -> io::Result<()> {
    ip(&["link", "set", "dev", ifname, "netns", ns]).map(drop)
}

/// Sets the MAC address of `ifname`.
pub fn set_mac(ns: Option<&str>, ifname: &str, mac: [u8; 6]) -> io::Result<()> {
    ip_in(
        ns,
        &["link", "set", "dev", ifname, "address", &format_mac(mac)],
    )
    .map(drop)
}

/// Sets the MTU of `ifname`.
pub fn set_mtu(ns: Option<&str>, ifname: &str, mtu: u32) -> io::Result<()> {
    ip_in(ns, &["link", "set", "dev", ifname, "mtu", &mtu.to_string()]).map(drop)
}

/// Brings `ifname` up.
pub fn set_up(ns: Option<&str>, ifname: &str) -> io::Result<()> {
    ip_in(ns, &["link", "set", "dev", ifname, "up"]).map(drop)
}

/// Brings `ifname` down.
pub fn set_down(ns: Option<&str>, ifname: &str) -> io::Result<()> {
    ip_in(ns, &["link", "set", "dev", ifname, "down"]).map(drop)
}

/// Adds IPv4 address `addr/prefix_len` to `ifname`.
pub fn add_addr4(ns: Option<&str>, ifname: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    ip_in(
        ns,
        &[
            "addr",
            "add",
            &format!("{addr}/{prefix_len}"),
            "dev",
            ifname,
        ],
    )
    .map(drop)
}

/// Adds an IPv4 default route via `gw`.
pub fn add_default_route4(ns: Option<&str>, gw: Ipv4Addr) -> io::Result<()> {
    ip_in(ns, &["route", "add", "default", "via", &gw.to_string()]).map(drop)
}

/// Adds a permanent IPv4 neighbour entry (`ip neigh add IP lladdr MAC dev IF nud permanent`), so no ARP is
/// needed to reach `ip`.
pub fn add_neigh4(ns: Option<&str>, ifname: &str, ip4: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
    ip_in(
        ns,
        &[
            "neigh",
            "replace",
            &ip4.to_string(),
            "lladdr",
            &format_mac(mac),
            "dev",
            ifname,
            "nud",
            "permanent",
        ],
    )
    .map(drop)
}

/// The MAC address of `ifname`, from `ip -o link show`.
pub fn link_mac(ns: Option<&str>, ifname: &str) -> io::Result<[u8; 6]> {
    let out = ip_in(ns, &["-o", "link", "show", "dev", ifname])?;
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "link/ether" {
            if let Some(mac) = words.next().and_then(parse_mac) {
                return Ok(mac);
            }
        }
    }
    Err(io::Error::other(format!(
        "no link/ether address for {ifname} in `ip link show` output: {out}"
    )))
}

/// Runs `f` on a fresh thread that first joins network namespace `ns` (`setns(CLONE_NEWNET)` on
/// `/run/netns/NS`), and returns its result. Sockets created inside `f` belong to that namespace for their
/// whole life, also when used from other threads afterwards. A panic in `f` is propagated to the caller.
pub fn run_in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn_scoped(s, move || -> io::Result<T> {
                let file = std::fs::File::open(&path)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot open {path}: {e}")))?;
                use std::os::fd::AsRawFd;
                // SAFETY: plain syscall on an fd we own for the duration of the call; it changes only this
                // thread's network namespace, and this thread ends after `f`.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    let e = io::Error::last_os_error();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("setns(CLONE_NEWNET) into {path} failed: {e}"),
                    ));
                }
                drop(file);
                Ok(f())
            })?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Keeps the host's own stack off `ifname`, an interface in the calling thread's namespace that only wharf
/// uses (the host side of a lab cable): the kernel does not forward IPv4 frames received on it, answers no
/// ARP on it, and runs no IPv6 on it (no router solicitations or MLD reports mixed into the traffic). Without
/// this, a host with `ip_forward=1` could route a frame that arrived on the cable.
pub fn isolate_from_host_stack(ifname: &str) -> io::Result<()> {
    if ifname.is_empty()
        || ifname.len() > MAX_IFNAME
        || ifname.contains('/')
        || ifname.starts_with('.')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    for (key, value) in [
        (format!("ipv4/conf/{ifname}/forwarding"), "0"),
        (format!("ipv4/conf/{ifname}/arp_ignore"), "8"),
        (format!("ipv6/conf/{ifname}/disable_ipv6"), "1"),
    ] {
        let path = format!("/proc/sys/net/{key}");
        std::fs::write(&path, value)
            .map_err(|e| io::Error::new(e.kind(), format!("writing {value} to {path}: {e}")))?;
    }
    Ok(())
}

/// `struct ethtool_value` from `<linux/ethtool.h>`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `ETHTOOL_STXCSUM`: set transmit checksum offload on or off.
const ETHTOOL_STXCSUM: u32 = 0x0000_0017;
/// `ETHTOOL_GTXCSUM`: get transmit checksum offload state.
const ETHTOOL_GTXCSUM: u32 = 0x0000_0016;

fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    if ifname.is_empty() || ifname.len() > MAX_IFNAME || ifname.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    // SAFETY: socket() has no memory-safety preconditions; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut val = EthtoolValue { cmd, data };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut val as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads and writes `ifr` and the ethtool_value it points to, both live and properly
    // sized for this command for the duration of the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("ioctl(SIOCETHTOOL, cmd {cmd:#x}) on {ifname} failed: {e}"),
        ));
    }
    Ok(val.data)
}

/// Turns off transmit checksum offload on `ifname` in the calling thread's namespace (what
/// `ethtool -K IF tx off` does, through the `SIOCETHTOOL` ioctl with `ETHTOOL_STXCSUM`).
///
/// Why: a veth whose stack sends with offload leaves TCP/UDP checksums *partial* (only the pseudo-header sum),
/// trusting the receiving kernel. An AF_PACKET reader sees those frames as they are (its ring only says
/// `TP_STATUS_CSUMNOTREADY`), so a router that forwards them sends frames that fail at the receiver. Call this,
/// inside the namespace via [`run_in_netns`], on the interface of every host that sends through wharf.
pub fn disable_tx_checksum_offload(ifname: &str) -> io::Result<()> {
    ethtool_value(ifname, ETHTOOL_STXCSUM, 0).map(drop)
}

/// Whether transmit checksum offload is on for `ifname` (`ETHTOOL_GTXCSUM`), in the calling thread's namespace.
pub fn tx_checksum_offload(ifname: &str) -> io::Result<bool> {
    ethtool_value(ifname, ETHTOOL_GTXCSUM, 0).map(|v| v != 0)
}

/// Gate for tests that need root and iproute2. True when the effective uid is 0 and `ip` runs. Otherwise, in CI
/// (`CI=true`) it panics, because there these tests must run; elsewhere it prints a loud `SKIPPED` line to
/// stderr (uncaptured, so `cargo test` shows it even when the test passes) and returns false, and the test
/// should return early.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let have_ip = root && ip(&["-V"]).is_ok();
    if root && have_ip {
        return true;
    }
    let why = if !root {
        "not running as root"
    } else {
        "the `ip` command (iproute2) is not available"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: needs root and iproute2 (network namespaces), and in CI it must run: {why}"
        );
    }
    // Straight to the process's stderr, not `eprintln!`, which the test harness captures and hides on success.
    use std::io::Write;
    let _ = writeln!(
        io::stderr(),
        "SKIPPED {test}: needs root and iproute2 (network namespaces) ({why})"
    );
    false
}

/// A network namespace that is deleted (with everything in it) when the guard is dropped.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    /// Creates a namespace named [`unique_ns_name`]`(prefix)`.
    pub fn new(prefix: &str) -> io::Result<NetnsGuard> {
        let name = unique_ns_name(prefix);
        add_netns(&name)?;
        let g = NetnsGuard { name };
        // Loopback up, so sockets inside can talk to themselves like on any host.
        set_up(Some(&g.name), "lo")?;
        Ok(g)
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`run_in_netns`] in this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        run_in_netns(&self.name, f)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = del_netns(&self.name) {
            eprintln!(
                "warning: cannot delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// A veth pair that is deleted when the guard is dropped, wherever its ends have been moved (use
/// [`VethGuard::move_a`]/[`VethGuard::move_b`] so the guard knows).
#[derive(Debug)]
pub struct VethGuard {
    a: String,
    b: String,
    a_ns: Option<String>,
    b_ns: Option<String>,
}

impl VethGuard {
    /// Creates a pair with names [`unique_name`]`(prefix_a)` and [`unique_name`]`(prefix_b)` in the calling
    /// thread's namespace.
    pub fn new(prefix_a: &str, prefix_b: &str) -> io::Result<VethGuard> {
        let (a, b) = (unique_name(prefix_a), unique_name(prefix_b));
        add_veth(&a, &b)?;
        Ok(VethGuard {
            a,
            b,
            a_ns: None,
            b_ns: None,
        })
    }

    /// Name of end A.
    pub fn a(&self) -> &str {
        &self.a
    }

    /// Name of end B.
    pub fn b(&self) -> &str {
        &self.b
    }

    /// Namespace of end A (`None`: where the pair was created).
    pub fn a_ns(&self) -> Option<&str> {
        self.a_ns.as_deref()
    }

    /// Namespace of end B (`None`: where the pair was created).
    pub fn b_ns(&self) -> Option<&str> {
        self.b_ns.as_deref()
    }

    /// Moves end A into namespace `ns` (from where the pair was created).
    pub fn move_a(&mut self, ns: &str) -> io::Result<()> {
        move_to_netns(&self.a, ns)?;
        self.a_ns = Some(ns.to_string());
        Ok(())
    }

    /// Moves end B into namespace `ns` (from where the pair was created).
    pub fn move_b(&mut self, ns: &str) -> io::Result<()> {
        move_to_netns(&self.b, ns)?;
        self.b_ns = Some(ns.to_string());
        Ok(())
    }
}

impl Drop for VethGuard {
    fn drop(&mut self) {
        // Deleting either end deletes the pair; a namespace deleted first has already taken it with it.
        if del_link(self.a_ns.as_deref(), &self.a).is_ok() {
            return;
        }
        let _ = del_link(self.b_ns.as_deref(), &self.b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_and_differ() {
        let a = unique_name("wharfveth");
        let b = unique_name("wharfveth");
        assert_ne!(a, b);
        assert!(a.len() <= MAX_IFNAME && b.len() <= MAX_IFNAME, "{a} {b}");
        assert!(a.starts_with('w'));
        let c = unique_name("");
        assert!(!c.is_empty() && c.len() <= MAX_IFNAME);
        let d = unique_name("bad name/..");
        assert!(d.chars().all(|c| c.is_ascii_alphanumeric()), "{d}");
        let long = "a-very-long-namespace-prefix";
        let e = unique_ns_name(long);
        assert!(e.starts_with(long), "{e}");
    }

    #[test]
    fn mac_roundtrip() {
        let m = [0x02, 0, 0xab, 0xcd, 0xef, 0x01];
        assert_eq!(format_mac(m), "02:00:ab:cd:ef:01");
        assert_eq!(parse_mac("02:00:ab:cd:ef:01"), Some(m));
        assert_eq!(parse_mac("02:00:ab:cd:ef"), None);
        assert_eq!(parse_mac("02:00:ab:cd:ef:01:02"), None);
        assert_eq!(parse_mac("zz:00:ab:cd:ef:01"), None);
    }

    #[test]
    fn namespace_veth_and_offload() {
        if !require_root("netns::namespace_veth_and_offload") {
            return;
        }
        let ns = NetnsGuard::new("wtns").unwrap();
        let mut veth = VethGuard::new("wta", "wtb").unwrap();
        veth.move_a(ns.name()).unwrap();
        let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        set_mac(Some(ns.name()), veth.a(), mac).unwrap();
        set_up(Some(ns.name()), veth.a()).unwrap();
        add_addr4(Some(ns.name()), veth.a(), Ipv4Addr::new(10, 201, 0, 1), 24).unwrap();
        add_default_route4(Some(ns.name()), Ipv4Addr::new(10, 201, 0, 2)).unwrap();
        add_neigh4(
            Some(ns.name()),
            veth.a(),
            Ipv4Addr::new(10, 201, 0, 2),
            [0x02, 0, 0, 0, 0, 2],
        )
        .unwrap();
        assert_eq!(link_mac(Some(ns.name()), veth.a()).unwrap(), mac);
        // The end is gone from here and visible there.
        assert!(link_mac(None, veth.a()).is_err());

        let a = veth.a().to_string();
        let (before, after, bound) = ns
            .run(move || {
                let before = tx_checksum_offload(&a).unwrap();
                disable_tx_checksum_offload(&a).unwrap();
                let after = tx_checksum_offload(&a).unwrap();
                // A socket bound to the namespace's address works only inside it.
                let bound = std::net::UdpSocket::bind("10.201.0.1:0").is_ok();
                (before, after, bound)
            })
            .unwrap();
        assert!(before, "veth starts with tx checksum offload on");
        assert!(!after, "offload is off after disable_tx_checksum_offload");
        assert!(bound);
        assert!(
            std::net::UdpSocket::bind("10.201.0.1:0").is_err(),
            "the address must not exist outside the namespace"
        );

        let name = ns.name().to_string();
        let b = veth.b().to_string();
        drop(veth);
        drop(ns);
        assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
        assert!(link_mac(None, &b).is_err(), "veth pair deleted");
    }

    #[test]
    fn isolated_interface_is_off_the_host_stack() {
        if !require_root("netns::isolated_interface_is_off_the_host_stack") {
            return;
        }
        let v = VethGuard::new("iso", "isp").unwrap();
        let read = |key: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/{key}"))
                .unwrap()
                .trim()
                .to_string()
        };
        isolate_from_host_stack(v.a()).unwrap();
        assert_eq!(read(&format!("ipv4/conf/{}/forwarding", v.a())), "0");
        assert_eq!(read(&format!("ipv4/conf/{}/arp_ignore", v.a())), "8");
        assert_eq!(read(&format!("ipv6/conf/{}/disable_ipv6", v.a())), "1");
        assert!(isolate_from_host_stack("no/such").is_err());
    }

    #[test]
    fn run_in_missing_netns_is_an_error() {
        if !require_root("netns::run_in_missing_netns_is_an_error") {
            return;
        }
        let err = run_in_netns("wharf-no-such-ns-xyz", || 1).unwrap_err();
        assert!(
            err.to_string().contains("/run/netns/wharf-no-such-ns-xyz"),
            "{err}"
        );
    }

    #[test]
    fn guards_clean_up_on_panic() {
        if !require_root("netns::guards_clean_up_on_panic") {
            return;
        }
        let names = std::sync::Mutex::new(None);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ns = NetnsGuard::new("wtp").unwrap();
            let veth = VethGuard::new("wpa", "wpb").unwrap();
            *names.lock().unwrap() = Some((ns.name().to_string(), veth.a().to_string()));
            panic!("test failure inside");
        }));
        assert!(r.is_err());
        let (ns, a) = names.lock().unwrap().take().unwrap();
        assert!(!std::path::Path::new(&format!("/run/netns/{ns}")).exists());
        assert!(link_mac(None, &a).is_err());
    }
}
