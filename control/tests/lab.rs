//! `wharf lab --check` end to end: the real binary builds the default topology (two namespaces cross-connected
//! through wharf's AF_PACKET ports), runs ping and a hashed TCP transfer both ways, and removes everything.

use std::process::Command;

#[test]
fn lab_check_passes_on_the_default_topology_and_cleans_up() {
    if !dataplane::netns::require_root("lab_check_passes_on_the_default_topology_and_cleans_up") {
        return;
    }
    let prefix = format!("t{:x}", std::process::id() % 0xffff);
    let socket = std::env::temp_dir().join(format!("wharf-lab-test-{}.sock", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["lab", "--check", "--prefix", &prefix, "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wharf lab --check failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("2 of 2 checks passed"), "{stdout}");
    // Both directions, each with ping and TCP.
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(" pass")).count(),
        2,
        "{stdout}"
    );
    // Traffic really went through wharf: both ports forwarded frames.
    let forwarded: Vec<u64> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("port "))
        .filter_map(|l| l.split_whitespace().nth(5).and_then(|v| v.parse().ok()))
        .collect();
    assert_eq!(forwarded.len(), 2, "{stdout}");
    assert!(
        forwarded.iter().all(|&tx| tx > 1000),
        "each port sent the TCP transfer's frames: {forwarded:?}"
    );
    // Nothing left behind.
    let netns = dataplane::netns::ip(&["netns", "list"]).unwrap();
    assert!(!netns.contains(&prefix), "namespaces left behind: {netns}");
    let links = dataplane::netns::ip(&["-o", "link", "show"]).unwrap();
    assert!(!links.contains(&prefix), "links left behind: {links}");
    assert!(!socket.exists(), "control socket left behind");
}

#[test]
fn lab_without_root_says_it_needs_cap_net_admin() {
    // Run as an unprivileged user when we are root (nobody exists on Debian); otherwise we are that user.
    let bin = env!("CARGO_BIN_EXE_wharf");
    let out = if unsafe { libc::geteuid() } == 0 {
        match Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                bin,
                "lab",
            ])
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("SKIPPED lab_without_root_says_it_needs_cap_net_admin: no setpriv ({e})");
                return;
            }
        }
    } else {
        Command::new(bin).arg("lab").output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs CAP_NET_ADMIN"), "{stderr}");
}
