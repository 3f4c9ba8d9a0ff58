//! `wharf lab --check` end to end: the real binary builds the default topology (three namespaces on a wharf
//! bridge through AF_PACKET ports), runs ping and a hashed TCP transfer between every pair, and removes
//! everything.

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
    assert!(stdout.contains("6 of 6 checks passed"), "{stdout}");
    // Every ordered pair of the three endpoints, each with ping and TCP.
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(" pass")).count(),
        6,
        "{stdout}"
    );
    // The bridge learned the three endpoints and flooded only while it had not.
    assert!(stdout.contains("mac_learned=3"), "{stdout}");
    // Traffic really went through wharf: every port forwarded frames.
    let forwarded: Vec<u64> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("port "))
        .filter_map(|l| l.split_whitespace().nth(5).and_then(|v| v.parse().ok()))
        .collect();
    assert_eq!(forwarded.len(), 3, "{stdout}");
    assert!(
        forwarded.iter().all(|&tx| tx > 1000),
        "each port sent TCP transfers' frames: {forwarded:?}"
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
