//! The scenarios end to end, briefly: each builds its topology, measures wharf (and on veth the kernel twin
//! on the same veths), writes the latency files and appends result rows, and leaves nothing behind. What is
//! asserted is correctness (frames forwarded and accounted for, no duplicates, a ratio computed, files
//! written, namespaces removed), never a speed.

use clap::Parser;
use dataplane::netns;
use wharf_perf::scenario::{self, Options};

/// The tests here busy-poll (generator, receiver, workers): one at a time, so that they do not take the
/// CPUs from each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    o: Options,
}

fn options(dir: &std::path::Path, extra: &[&str]) -> Options {
    let mut args = vec![
        "test",
        "--runs",
        "1",
        "--secs",
        "0.3",
        "--latency-secs",
        "0.3",
        "--flows",
        "64",
    ];
    args.extend_from_slice(extra);
    let mut o = Cli::parse_from(args).o;
    o.results = dir.join("results.tsv");
    o.out = dir.to_path_buf();
    o
}

/// Runs scenario `name`, checks its rows and files; returns the results file's lines.
fn check(name: &str, o: &Options, duts: &[&str]) -> Vec<String> {
    let s = scenario::SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .expect("registered");
    let rows = (s.run)(o).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let names: Vec<&str> = rows.iter().map(|m| m.dut.as_str()).collect();
    assert_eq!(names, duts, "{name}");
    for m in &rows {
        assert_eq!(m.mrr.len(), o.runs, "{name} {}", m.dut);
        assert!(
            m.mrr.iter().all(|r| *r > 0.0),
            "{name} {}: nothing forwarded",
            m.dut
        );
        assert_eq!(m.dup_reorder.0, 0, "{name} {}: duplicates", m.dut);
        assert!(m.latency.count > 0, "{name} {}: no latency samples", m.dut);
        assert!(
            m.latency.min > 0.0 && m.latency.min <= m.latency.p50 && m.latency.p50 <= m.latency.max,
            "{name} {}: {}",
            m.dut,
            m.latency
        );
        if o.search {
            let (ndr, pdr) = (m.ndr.expect("searched"), m.pdr.expect("searched"));
            if let (Some(n), Some(p)) = (ndr, pdr) {
                assert!(n <= p * 1.0001, "{name} {}: NDR {n} above PDR {p}", m.dut);
            }
        }
    }
    let svg = scenario::write_latency(name, &rows, o).unwrap();
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(doc.matches("<polyline").count(), duts.len());
    for d in duts {
        let h = std::fs::read_to_string(o.out.join(format!("{name}-{d}.hgrm"))).unwrap();
        assert!(h.contains("Total count"), "{h}");
    }
    let summary = scenario::results::append(&o.results, name, &rows, o).unwrap();
    if duts.len() == 2 {
        let (mrr, _, _) = scenario::results::ratios(&rows).expect("a ratio");
        assert!(mrr > 0.0 && mrr.is_finite());
        assert!(summary.contains("wharf / kernel"), "{summary}");
    }
    std::fs::read_to_string(&o.results)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn ring_scenarios_measure_and_append_rows() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), &[]);
    check("xconnect-ring", &o, &["wharf"]);
    let o = options(dir.path(), &["--routes", "1000", "--proto", "tcp"]);
    let lines = check("route-ring", &o, &["wharf"]);
    assert_eq!(lines[0], scenario::results::HEADER);
    assert_eq!(lines.len(), 3, "header and one row per scenario run");
    let cols: Vec<&str> = lines[2].split('\t').collect();
    assert_eq!(cols.len(), scenario::results::HEADER.split('\t').count());
    assert_eq!((cols[3], cols[4], cols[8]), ("route-ring", "wharf", "1000"));
}

/// No namespace or link named with the scenario's prefix (`letter`) is left.
fn nothing_left(letter: char) {
    let p = scenario::prefix(letter);
    let ns = netns::ip(&["netns", "list"]).unwrap();
    assert!(
        !ns.lines().any(|l| l.starts_with(&p)),
        "namespaces left behind: {ns}"
    );
    let links = netns::ip(&["-o", "link", "show"]).unwrap();
    assert!(
        !links.contains(&format!(": {p}")),
        "links left behind: {links}"
    );
}

#[test]
fn bridge_veth_against_the_kernel_bridge() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !netns::require_root("scenarios::bridge_veth_against_the_kernel_bridge") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = options(
        dir.path(),
        &["--search", "--trial-secs", "0.2", "--precision", "0.1"],
    );
    let lines = check("bridge-veth", &o, &["wharf", "kernel-bridge"]);
    assert_eq!(lines.len(), 3);
    assert!(lines[1].contains("\tbridge-veth\twharf\t"));
    nothing_left('b');
}

#[test]
fn route_veth_and_xconnect_veth_against_the_kernel() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !netns::require_root("scenarios::route_veth_and_xconnect_veth_against_the_kernel") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), &["--routes", "1000"]);
    check("route-veth", &o, &["wharf", "kernel-ip-forward"]);
    let o = options(
        dir.path(),
        &["--frame", "imix", "--proto", "icmp", "--vlan", "42"],
    );
    check("xconnect-veth", &o, &["wharf", "kernel-tc-mirred"]);
    nothing_left('r');
    nothing_left('x');
}
