//! wharf-perf: the benchmark harness of wharf.
//!
//! - [`gen`]: the traffic generator (frame sizes, IMIX, flows, UDP/TCP/ICMP, VLAN; paced or flat out) over
//!   any wharf port backend; every frame carries a sequence number and a timestamp.
//! - [`generate`]: the `wharf-perf gen` subcommand: generator and receiver against any device.
//! - [`analyse`]: the receiver: loss, duplicates, reordering, latency histogram.
//! - [`latency`], [`plot`]: latency percentiles, `.hgrm` files and SVG plots.
//! - [`trial`]: one trial (send for a while at a rate, receive, count) over two port queues.
//! - [`search`]: NDR/PDR throughput search by bisection.
//! - [`impair`]: a port queue that drops, polices or delays on purpose, to check the harness.
//! - [`scenario`]: whole benchmarks that build a topology (ring ports, or veth pairs in network namespaces),
//!   run wharf and the Linux kernel side by side, tear down, and append rows to a results file.
#![warn(missing_docs)]

pub mod analyse;
pub mod gen;
pub mod generate;
pub mod impair;
pub mod latency;
pub mod plot;
pub mod scenario;
pub mod search;
pub mod trial;

/// Median of the runs (sorts `v`; 0 when empty).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
