//! The `wharf` binary end to end: `check` on good and bad files, and `run` steered by `ctl`, SIGHUP and
//! SIGTERM, forwarding a pcap file through the cross-connect into another pcap file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wharf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// A directory removed when the test ends, also when it fails.
fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("wharf-cli-{tag}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn check_accepts_every_shipped_config() {
    let files: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert!(files.len() >= 3);
    // Without DPDK support, DPDK configs fail with that reason only; with it, they are checked like the others.
    let (dpdk, files): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|p| {
        !control::config::DPDK_SUPPORT
            && std::fs::read_to_string(p)
                .unwrap()
                .contains("backend = \"dpdk\"")
    });
    for f in &dpdk {
        let out = wharf().arg("check").arg(f).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", f.display());
        assert!(
            stderr.lines().count() > 0
                && stderr
                    .lines()
                    .all(|l| l.ends_with(control::config::NO_DPDK_SUPPORT)),
            "{stderr}"
        );
    }
    let out = wharf().arg("check").args(&files).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ok (")).count(),
        files.len(),
        "{stdout}"
    );
}

#[test]
fn check_names_file_line_field_and_reason_and_fails() {
    let tmp = tempdir("check");
    let dir = tmp.path();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[dataplane]\nburst_size = 300\n\n[[ports]]\nname = \"a\"\nbackend = \"afpackt\"\ninterface = \"eth0\"\n",
    )
    .unwrap();
    let out = wharf().arg("check").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let f = bad.display();
    assert!(
        stderr.contains(&format!("{f}:2:14: dataplane.burst_size:")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{f}:6:11: ports[0].backend: unknown backend \"afpackt\""
        )),
        "{stderr}"
    );
}

fn config(dir: &Path, src_mac: &str) -> String {
    format!(
        r#"
[dataplane]
buffers = 1024
idle = "adaptive"

[control]
socket = "{dir}/ctl.sock"

[[ports]]
name = "in"
backend = "pcap"
rx = "{input}"

[[ports]]
name = "out"
backend = "pcap"
tx = "{dir}/out.pcap"

[[networks]]
name = "patch"
mode = "xconnect"
ports = ["in", "out"]

[[networks.rewrite]]
port = "out"
src_mac = "{src_mac}"
"#,
        dir = dir.display(),
        input = configs_dir().join("data/xconnect-in.pcap").display()
    )
}

fn ctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = wharf()
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn json(socket: &Path, what: &str) -> serde_json::Value {
    let (ok, out, err) = ctl(socket, &["--json", "show", what]);
    assert!(ok, "ctl show {what}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the daemon if the test fails half-way.
struct Daemon(std::process::Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_is_steered_by_ctl_sighup_and_sigterm() {
    let tmp = tempdir("run");
    let dir = tmp.path();
    let cfg = dir.join("wharf.toml");
    let socket = dir.join("ctl.sock");
    std::fs::write(&cfg, config(dir, "02:00:00:00:00:01")).unwrap();
    let mut d = Daemon(
        wharf()
            .arg("run")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the control socket", || ctl(&socket, &["ping"]).0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600,
        "socket mode 0600"
    );

    // The four frames of the input file cross the cross-connect.
    wait_for("4 frames out", || {
        json(&socket, "ports")[1]["tx_packets"] == 4
    });
    let ports = json(&socket, "ports");
    assert_eq!(ports[0]["name"], "in");
    assert_eq!(ports[0]["rx_packets"], 4);
    assert_eq!(ports[1]["backend"], "pcap");
    let workers = json(&socket, "workers");
    assert_eq!(workers[0]["rx_packets"], 4);
    assert_eq!(json(&socket, "drops"), serde_json::json!({}));
    let (ok, table, _) = ctl(&socket, &["show", "ports"]);
    assert!(
        ok && table.starts_with("index") && table.lines().count() == 3,
        "{table}"
    );

    // A bad config is refused with its error and the old one keeps running.
    std::fs::write(&cfg, config(dir, "01:00:5e:00:00:01")).unwrap();
    let (ok, _, err) = ctl(&socket, &["reload"]);
    assert!(!ok, "a multicast source MAC must be refused");
    assert!(err.contains("networks[0].rewrite[0].src_mac"), "{err}");
    assert_eq!(json(&socket, "stats")["generation"], 1);
    assert_eq!(json(&socket, "stats")["reload_failures"], 1);

    // A good one through ctl, then through SIGHUP.
    std::fs::write(&cfg, config(dir, "02:00:00:00:00:0a")).unwrap();
    let (ok, out, err) = ctl(&socket, &["reload"]);
    assert!(ok, "{err}");
    assert!(out.contains("generation: 2"), "{out}");
    unsafe { libc::kill(d.0.id() as i32, libc::SIGHUP) };
    wait_for("generation 3 after SIGHUP", || {
        json(&socket, "stats")["generation"] == 3
    });

    // SIGTERM: clean exit, socket removed, output file complete.
    unsafe { libc::kill(d.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "wharf did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "socket removed on exit");
    let frames = dataplane::port::pcap::read_frames(dir.join("out.pcap")).unwrap();
    let input =
        dataplane::port::pcap::read_frames(configs_dir().join("data/xconnect-in.pcap")).unwrap();
    assert_eq!(frames.len(), input.len());
    for (o, i) in frames.iter().zip(&input) {
        assert_eq!(
            &o[6..12],
            &[2, 0, 0, 0, 0, 1],
            "source rewritten by generation 1"
        );
        assert_eq!(&o[..6], &i[..6], "destination untouched");
        assert_eq!(&o[12..], &i[12..], "rest of the frame untouched");
        etherparse::SlicedPacket::from_ethernet(o).expect("output parses");
    }
}
