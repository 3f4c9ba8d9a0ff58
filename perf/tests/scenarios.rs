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
    check_rows(name, o, duts).1
}

/// [`check`], also returning the rows.
fn check_rows(name: &str, o: &Options, duts: &[&str]) -> (Vec<scenario::Measured>, Vec<String>) {
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
        if let Some((ok, sent)) = m.checked {
            assert!(sent > 0, "{name} {}: the probe sent nothing", m.dut);
            assert_eq!(ok, sent, "{name} {}: frames failed the probe", m.dut);
        }
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
    let lines = std::fs::read_to_string(&o.results)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (rows, lines)
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

/// Checks scenario `name` as [`check`] does, and that its probe ran on every device and passed all the
/// frames it sent (one per flow here); returns the results file's lines.
fn check_probed(name: &str, o: &Options, duts: &[&str]) -> Vec<String> {
    let (rows, lines) = check_rows(name, o, duts);
    for m in &rows {
        let want = u64::from(o.flows.min(256));
        assert_eq!(m.checked, Some((want, want)), "{name} {}", m.dut);
        assert!(m.notes.contains("probe: "), "{name} {}: {}", m.dut, m.notes);
    }
    lines
}

#[test]
fn nat_and_vxlan_checks_reject_what_is_not_translated() {
    use wharf_perf::gen::{Clock, Generator, Profile};
    use wharf_perf::scenario::{nat, vxlan};
    let g = Generator::new(
        Profile {
            src_ip: [10, 0, 16, 0],
            dst_ips: vec![nat::server(0)],
            ..Profile::default()
        },
        1,
        Clock::new(),
    )
    .unwrap();
    let mut f = g.frame(3);
    let outside = [nat::external(0)];
    // Untranslated: the inside source.
    assert!(!nat::masqueraded(&f, &outside));
    // The source rewritten without fixing the checksums.
    f[26..30].copy_from_slice(&nat::external(0));
    assert!(!nat::masqueraded(&f, &outside));
    // A plain frame is not VXLAN.
    assert!(vxlan::encapsulated(&g.frame(0)).is_none());
}

#[test]
fn nat_ring_and_vxlan_ring_translate_every_probe() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), &[]);
    let lines = check_probed("nat-ring", &o, &["wharf"]);
    assert!(lines[1].contains("\tnat-ring\twharf\t"));
    check_probed("vxlan-ring", &o, &["wharf"]);
}

#[test]
fn nat_veth_and_vxlan_veth_against_the_kernel() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !netns::require_root("scenarios::nat_veth_and_vxlan_veth_against_the_kernel") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), &[]);
    let lines = check_probed("nat-veth", &o, &["wharf", "kernel-nft-masq"]);
    assert!(lines[2].contains("\tnat-veth\tkernel-nft-masq\t"));
    check_probed("vxlan-veth", &o, &["wharf", "kernel-vxlan"]);
    nothing_left('n');
    nothing_left('v');
}
