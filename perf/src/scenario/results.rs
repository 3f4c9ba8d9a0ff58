//! The results file: one tab-separated row per device and scenario run, appended, with the date, the commit,
//! the machine and the command, so any row can be reproduced; and the printed summary with the ratios of
//! wharf to its kernel twin measured in the same run.

use super::{Measured, Options};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Column names of the results file.
pub const HEADER: &str = "date\tcommit\tmachine\tscenario\tdut\tframe\tflows\tproto\troutes\truns\tmrr_mpps\tmrr_runs_mpps\tndr_mpps\tpdr_mpps\tratio_mrr\tratio_ndr\tratio_pdr\tlatency_at_mpps\tlat_min_us\tlat_p50_us\tlat_p90_us\tlat_p99_us\tlat_p999_us\tlat_max_us\tnotes\tcommand";

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit of the source tree (with `-dirty` when it has changes outside `perf/results`), or `unknown`.
pub fn commit() -> String {
    let Some(c) = sh("git", &["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    // The results themselves do not make the tree dirty.
    match sh(
        "git",
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":/",
            ":(exclude,top)perf/results",
        ],
    ) {
        Some(s) if !s.is_empty() => format!("{c}-dirty"),
        _ => c,
    }
}

/// CPUs, CPU model and kernel, in one line.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Online CPUs of the machine (not `available_parallelism`, which a pinned thread sees as 1).
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!("{cpus} CPUs {model}, Linux {}", kernel.trim())
}

fn mpps(v: Option<Option<f64>>) -> String {
    match v {
        None => "-".into(),
        Some(None) => "none".into(),
        Some(Some(r)) => format!("{:.4}", r / 1e6),
    }
}

fn ratio(a: Option<Option<f64>>, b: Option<Option<f64>>) -> Option<f64> {
    match (a, b) {
        (Some(Some(a)), Some(Some(b))) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Wharf / kernel ratios `(mrr, ndr, pdr)` of the rows, when both are there.
pub fn ratios(rows: &[Measured]) -> Option<(f64, Option<f64>, Option<f64>)> {
    let w = rows.iter().find(|m| m.dut == "wharf")?;
    let k = rows.iter().find(|m| m.dut.starts_with("kernel"))?;
    let kb = k.mrr_median();
    (kb > 0.0).then(|| {
        (
            w.mrr_median() / kb,
            ratio(w.ndr, k.ndr),
            ratio(w.pdr, k.pdr),
        )
    })
}

/// Appends the rows of one scenario run to `path` (writing the header first into a new file) and returns
/// the summary to print.
pub fn append(
    path: &Path,
    scenario: &str,
    rows: &[Measured],
    o: &Options,
) -> anyhow::Result<String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    if new {
        writeln!(f, "{HEADER}")?;
    }
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M"]).unwrap_or_default();
    let (commit, machine) = (commit(), machine());
    // The load when the rows were written: other processes on a shared machine move the figures.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let load = format!("load average {}", load.join(" "));
    let command: Vec<String> = std::env::args().collect();
    let command = command.join(" ");
    let r = ratios(rows);
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut summary = format!(
        "{scenario} ({} frames, {} flows, {:?}, {} routes):\n",
        o.frame.label(),
        o.flows,
        o.proto,
        o.routes
    );
    for m in rows {
        let runs: Vec<String> = m.mrr.iter().map(|r| format!("{:.3}", r / 1e6)).collect();
        let is_wharf = m.dut == "wharf";
        let (rm, rn, rp) = match (is_wharf, r) {
            (true, Some((a, b, c))) => (Some(a), b, c),
            _ => (None, None, None),
        };
        let l = &m.latency;
        writeln!(
            f,
            "{date}\t{commit}\t{machine}\t{scenario}\t{}\t{}\t{}\t{:?}\t{}\t{}x{}s\t{:.4}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.4}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{}\t{command}",
            m.dut,
            o.frame.label(),
            o.flows,
            o.proto,
            o.routes,
            o.runs,
            o.secs,
            m.mrr_median() / 1e6,
            runs.join(","),
            mpps(m.ndr),
            mpps(m.pdr),
            fmt(rm),
            fmt(rn),
            fmt(rp),
            m.latency_pps / 1e6,
            l.min,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            format!("{}; {load}", m.notes).replace('\t', " ")
        )?;
        summary += &format!(
            "  {:<16} MRR median {:.4} Mpps (runs {}); NDR {} PDR {} Mpps; {}\n",
            m.dut,
            m.mrr_median() / 1e6,
            runs.join(" "),
            mpps(m.ndr),
            mpps(m.pdr),
            m.latency
        );
    }
    if let Some((a, b, c)) = r {
        summary += &format!(
            "  wharf / kernel: MRR {a:.3}, NDR {}, PDR {}\n",
            fmt(b),
            fmt(c)
        );
    }
    Ok(summary)
}
