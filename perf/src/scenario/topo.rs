//! The veth topology of the kernel-I/O scenarios: two network namespaces, `gen` (the generator) and `dut`
//! (wharf or the kernel), joined by two veth pairs: `g_a`–`d_a` (traffic in) and `d_b`–`g_b` (traffic out).
//!
//! The devices take turns on the same veths. wharf reads `d_a` and `d_b` through AF_PACKET sockets, which see
//! every frame before the kernel's own handling; while wharf runs, a tc ingress filter on `d_a` and `d_b`
//! steers each frame into a sink veth (dropped at its other end as another host's) so the kernel's bridge or IP stack, configured all
//! along, does nothing with it. While the kernel runs, the filter is removed (or made its cross-connect).
//!
//! CPUs: the generator runs on one core, the device on the other. Receive packet steering puts the kernel's
//! receive work for `d_a`/`d_b` on the device's core and for `g_a`/`g_b` on the generator's, for both
//! devices alike. Names are unique per process and run, and everything is removed on drop.

use anyhow::Context;
use dataplane::netns::{self, NetnsGuard, VethGuard};
use std::process::Command;

/// MAC of the generator's sending end.
pub const G_A_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0a, 0x01];
/// MAC of the device's receiving end.
pub const D_A_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0a, 0x02];
/// MAC of the device's sending end.
pub const D_B_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0b, 0x02];
/// MAC of the generator's receiving end.
pub const G_B_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0b, 0x01];

/// The namespaces and veths.
pub struct VethTopo {
    /// The device's namespace.
    pub dut: NetnsGuard,
    /// The generator's namespace.
    pub gen: NetnsGuard,
    /// `a` end: generator side (in `gen`), `b` end: device side (in `dut`).
    pub va: VethGuard,
    /// `a` end: device side (in `dut`), `b` end: generator side (in `gen`).
    pub vb: VethGuard,
    /// A veth pair inside `dut`: frames redirected into it are dropped at its other end.
    pub sink: VethGuard,
}

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {cmd} (Debian package iproute2)"))?;
    anyhow::ensure!(
        out.status.success(),
        "`{cmd} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `tc -n NS ARGS`.
pub fn tc(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("tc", &all).map(drop)
}

/// Writes `value` to `/proc/sys/KEY` inside namespace `ns`.
pub fn sysctl(ns: &NetnsGuard, key: &str, value: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/{key}");
    ns.run(|| std::fs::write(&path, value))?
        .with_context(|| format!("writing {value} to {path} in {}", ns.name()))
}

/// Sets the receive packet steering CPU mask of `ifname`'s queue 0 inside `ns` (sysfs is per namespace, so
/// through `ip netns exec`, which mounts the namespace's own).
fn rps(ns: &str, ifname: &str, cpu: usize) -> anyhow::Result<()> {
    let mask = format!("{:x}", 1u64 << cpu);
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!("echo {mask} > /sys/class/net/{ifname}/queues/rx-0/rps_cpus"),
        ],
    )
    .map(drop)
}

impl VethTopo {
    /// Builds it; names start with `prefix`. With `steer`, the device's receive work goes to `dut_core`, the
    /// generator's to `gen_core` (receive packet steering).
    pub fn build(
        prefix: &str,
        dut_core: usize,
        gen_core: usize,
        steer: bool,
    ) -> anyhow::Result<VethTopo> {
        let dut = NetnsGuard::new(&format!("{prefix}dut"))?;
        let gen = NetnsGuard::new(&format!("{prefix}gen"))?;
        let mut va = VethGuard::new(&format!("{prefix}ga"), &format!("{prefix}da"))?;
        let mut vb = VethGuard::new(&format!("{prefix}db"), &format!("{prefix}gb"))?;
        let mut sink = VethGuard::new(&format!("{prefix}sk"), &format!("{prefix}sl"))?;
        va.move_a(gen.name())?;
        va.move_b(dut.name())?;
        vb.move_a(dut.name())?;
        vb.move_b(gen.name())?;
        sink.move_a(dut.name())?;
        sink.move_b(dut.name())?;
        // Both ends up (a down peer makes mirred complain in the kernel log): frames redirected into the sink
        // arrive on its other end for another host's MAC and are dropped at the first look.
        netns::set_up(Some(dut.name()), sink.a())?;
        netns::set_up(Some(dut.name()), sink.b())?;
        for ns in [&dut, &gen] {
            for k in ["all", "default"] {
                sysctl(ns, &format!("net/ipv6/conf/{k}/disable_ipv6"), "1")?;
            }
        }
        for (ns, ifname, mac, core) in [
            (gen.name(), va.a(), G_A_MAC, gen_core),
            (dut.name(), va.b(), D_A_MAC, dut_core),
            (dut.name(), vb.a(), D_B_MAC, dut_core),
            (gen.name(), vb.b(), G_B_MAC, gen_core),
        ] {
            netns::ip_in(Some(ns), &["link", "set", "dev", ifname, "mtu", "9000"])?;
            netns::set_mac(Some(ns), ifname, mac)?;
            netns::set_up(Some(ns), ifname)?;
            if steer {
                rps(ns, ifname, core)?;
            }
        }
        let t = VethTopo {
            dut,
            gen,
            va,
            vb,
            sink,
        };
        for d in [t.d_a(), t.d_b()] {
            tc(t.dut.name(), &["qdisc", "add", "dev", d, "clsact"])?;
        }
        t.park()?;
        Ok(t)
    }

    /// The generator's sending end.
    pub fn g_a(&self) -> &str {
        self.va.a()
    }

    /// The device's receiving end.
    pub fn d_a(&self) -> &str {
        self.va.b()
    }

    /// The device's sending end.
    pub fn d_b(&self) -> &str {
        self.vb.a()
    }

    /// The generator's receiving end.
    pub fn g_b(&self) -> &str {
        self.vb.b()
    }

    /// Sets the ingress filter of `d_a` and `d_b` to redirect every frame to `to`.
    fn redirect(&self, dev: &str, to: &str) -> anyhow::Result<()> {
        tc(
            self.dut.name(),
            &[
                "filter", "replace", "dev", dev, "ingress", "pref", "1", "protocol", "all", "u32",
                "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
            ],
        )
    }

    /// Keeps the kernel off the device's ports: every frame arriving on `d_a` or `d_b` goes into the sink
    /// veth (after AF_PACKET sockets have seen it).
    pub fn park(&self) -> anyhow::Result<()> {
        self.redirect(self.d_a(), self.sink.a())?;
        self.redirect(self.d_b(), self.sink.a())
    }

    /// Gives the ports back to the kernel: no ingress filter.
    pub fn unpark(&self) -> anyhow::Result<()> {
        for d in [self.d_a(), self.d_b()] {
            tc(
                self.dut.name(),
                &["filter", "del", "dev", d, "ingress", "pref", "1"],
            )?;
        }
        Ok(())
    }

    /// The kernel's cross-connect: every frame arriving on `d_a` is sent out of `d_b` (tc mirred).
    pub fn kernel_xconnect(&self) -> anyhow::Result<()> {
        self.redirect(self.d_a(), self.d_b())
    }
}
