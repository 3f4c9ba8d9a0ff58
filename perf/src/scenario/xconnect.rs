//! Cross-connect scenarios: every frame entering port `a` leaves by port `b`, unchanged. The kernel's twin on
//! veth is a tc `mirred` redirect from `d_a` to `d_b`.

use super::topo::{VethTopo, D_A_MAC, G_A_MAC};
use super::{prefix, ring_scenario, veth_scenario, KernelTwin, Measured, Options};
use crate::gen::Profile;

fn profile(o: &Options) -> Profile {
    Profile {
        src_mac: G_A_MAC,
        dst_mac: D_A_MAC,
        ..o.profile()
    }
}

/// `xconnect-ring`.
pub fn ring(o: &Options) -> anyhow::Result<Vec<Measured>> {
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

[[networks]]
name = "x"
mode = "xconnect"
ports = ["a", "b"]
"#,
        core = o.core
    );
    ring_scenario(
        "xconnect-ring",
        o,
        super::parse(&config)?,
        |_| Ok(profile(o)),
        |_| Vec::new(),
        None,
    )
}

/// The wharf config of a veth scenario's two AF_PACKET ports, with `networks` appended.
pub fn veth_ports(topo: &VethTopo, o: &Options, port_extra: &str, networks: &str) -> String {
    format!(
        r#"
[dataplane]
buffers = 16384
cores = [{core}]
idle = "poll"

[[ports]]
name = "a"
backend = "afpacket"
interface = "{a}"
{port_extra}

[[ports]]
name = "b"
backend = "afpacket"
interface = "{b}"
{port_extra_b}

{networks}
"#,
        core = o.core,
        a = topo.d_a(),
        b = topo.d_b(),
        port_extra = port_extra.replace("{net}", "10.0.0.1/24"),
        port_extra_b = port_extra.replace("{net}", "10.1.0.1/24"),
    )
}

/// `xconnect-veth`.
pub fn veth(o: &Options) -> anyhow::Result<Vec<Measured>> {
    let topo = VethTopo::build(&prefix('x'), o.core, o.gen_core(), !o.no_rps)?;
    let config = veth_ports(
        &topo,
        o,
        "",
        "[[networks]]\nname = \"x\"\nmode = \"xconnect\"\nports = [\"a\", \"b\"]\n",
    );
    let kernel = KernelTwin {
        name: "kernel-tc-mirred",
        setup: Box::new(|_| Ok(())),
        on: Box::new(|t| t.kernel_xconnect()),
        off: Box::new(|_| Ok(())),
    };
    veth_scenario(
        "xconnect-veth",
        o,
        &topo,
        super::parse(&config)?,
        Box::new(|_| Ok(())),
        Some(kernel),
        (profile(o), Vec::new(), None),
    )
}
