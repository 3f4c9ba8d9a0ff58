//! Learning-bridge scenarios: bridge `br` joins ports `a` and `b`; the generator's destination MAC is
//! learned on `b` (from frames sent backwards after each start, RFC 2544's learning frames), so every frame
//! is a MAC lookup and a learn refresh. The kernel's twin on veth is a Linux bridge of `d_a` and `d_b`.

use super::topo::{VethTopo, G_A_MAC, G_B_MAC};
use super::{prefix, ring_scenario, veth_scenario, KernelTwin, Measured, Options};
use crate::gen::{Clock, Generator, Profile};
use dataplane::netns;

fn profile(o: &Options) -> Profile {
    Profile {
        src_mac: G_A_MAC,
        dst_mac: G_B_MAC,
        ..o.profile()
    }
}

/// Frames from the destination MAC back to the source: the bridge learns the destination on `b`.
pub fn learning_frames(p: &Profile) -> Vec<Vec<u8>> {
    let back = Profile {
        src_mac: p.dst_mac,
        dst_mac: p.src_mac,
        ..p.clone()
    };
    let g = Generator::new(back, 1, Clock::new()).expect("a valid profile");
    (0..4).map(|s| g.frame(s)).collect()
}

const NETWORK: &str = "[[networks]]\nname = \"br\"\nmode = \"bridge\"\nports = [\"a\", \"b\"]\n";

/// `bridge-ring`.
pub fn ring(o: &Options) -> anyhow::Result<Vec<Measured>> {
    anyhow::ensure!(
        o.vlan.is_none(),
        "--vlan: this scenario's network takes untagged frames"
    );
    let config = format!(
        r#"
[dataplane]
buffers = 16384
cores = [{core}]
idle = "poll"

[[ports]]
name = "a"
backend = "ring"
peer = "gen_a"
depth = 4096

[[ports]]
name = "b"
backend = "ring"
peer = "gen_b"
depth = 4096

{NETWORK}
"#,
        core = o.core
    );
    ring_scenario(
        "bridge-ring",
        o,
        super::parse(&config)?,
        |_| Ok(profile(o)),
        learning_frames,
        None,
    )
}

/// `bridge-veth`.
pub fn veth(o: &Options) -> anyhow::Result<Vec<Measured>> {
    anyhow::ensure!(
        o.vlan.is_none(),
        "--vlan: this scenario's network takes untagged frames"
    );
    let topo = VethTopo::build(&prefix('b'), o.core, o.gen_core(), !o.no_rps)?;
    let config = super::xconnect::veth_ports(&topo, o, "", NETWORK);
    let kernel = KernelTwin {
        name: "kernel-bridge",
        setup: Box::new(|t: &VethTopo| {
            let ns = Some(t.dut.name());
            netns::ip_in(ns, &["link", "add", "br0", "type", "bridge"])?;
            for d in [t.d_a(), t.d_b()] {
                netns::ip_in(ns, &["link", "set", "dev", d, "master", "br0"])?;
            }
            netns::set_up(ns, "br0")?;
            Ok(())
        }),
        on: Box::new(|_| Ok(())),
        off: Box::new(|_| Ok(())),
    };
    let p = profile(o);
    let learn = learning_frames(&p);
    veth_scenario(
        "bridge-veth",
        o,
        &topo,
        super::parse(&config)?,
        Box::new(|_| Ok(())),
        Some(kernel),
        (p, learn, None),
    )
}
