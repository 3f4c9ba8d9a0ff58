//! The EAL's failures come back as messages naming the cause and the fix, never as a crash. A binary of its own:
//! a failed `rte_eal_init` leaves DPDK unusable in the process.
#![cfg(feature = "dpdk")]

use dataplane::port::dpdk::{self, DpdkError, Eal, EalConfig};

fn free_hugepages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("HugePages_Free:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

#[test]
fn dpdk_eal_failures_are_explained() {
    assert!(Eal::get().is_none(), "no EAL before init");
    let prefix = format!("wharf-t-eal-{}", std::process::id());

    // Hugepages asked for and none free (as on CI machines, which reserve none): refused before DPDK is touched,
    // saying how to reserve them or to run without; the process may still start an EAL afterwards.
    if free_hugepages() == 0 {
        let err = Eal::init(&EalConfig {
            no_huge: false,
            file_prefix: prefix.clone(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, DpdkError::NoHugepages { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("echo 256 > /proc/sys/vm/nr_hugepages") && msg.contains("--no-huge"),
            "{msg}"
        );
        assert!(Eal::get().is_none());
    }

    // Out-of-range options are refused before DPDK sees them.
    let err = Eal::init(&EalConfig::no_huge(&prefix, 8)).unwrap_err();
    assert!(matches!(err, DpdkError::BadConfig(_)), "{err}");

    // An option the EAL refuses: rte_eal_init fails, the message explains it, and DPDK says it cannot start
    // again in this process.
    let bad = EalConfig {
        extra_args: vec!["--no-such-eal-option".into()],
        ..EalConfig::no_huge(&prefix, 256)
    };
    let err = Eal::init(&bad).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DpdkError::EalInit { .. }), "{msg}");
    assert!(
        msg.contains("invalid EAL arguments") && msg.contains("--no-such-eal-option"),
        "{msg}"
    );
    let again = Eal::init(&EalConfig::no_huge(&prefix, 256)).unwrap_err();
    assert!(matches!(again, DpdkError::Unavailable(_)), "{again}");
    assert!(again.to_string().contains("restart the process"), "{again}");
    let _ = std::fs::remove_dir_all(dpdk::runtime_dir(&prefix));
}
