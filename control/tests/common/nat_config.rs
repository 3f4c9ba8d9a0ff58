//! The NAT tests' router: ring ports `in` (10.0.0.1/24, masqueraded, peer `gen_in`) and `up` (198.51.100.1/24,
//! the outside, peer `gen_up`). One text for every NAT test over rings, so they test the same topology.

/// The config with `buffers`, `workers` and `idle` in its `[dataplane]`, then `extra` (endpoints, say) appended.
pub fn nat_ring_config(buffers: u32, workers: u32, idle: &str, extra: &str) -> String {
    format!(
        r#"
[dataplane]
buffers = {buffers}
workers = {workers}
idle = "{idle}"

[[ports]]
name = "in"
backend = "ring"
peer = "gen_in"
addresses = ["10.0.0.1/24"]

[[ports]]
name = "up"
backend = "ring"
peer = "gen_up"
addresses = ["198.51.100.1/24"]

[nat]
outside = "up"
masquerade = ["in"]
{extra}"#
    )
}
