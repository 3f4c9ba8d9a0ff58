//! `[dpdk]` and `backend = "dpdk"` ports against common mistakes: each must be reported with the right line,
//! column, field and reason, whether or not wharf was built with the `dpdk` feature. A build without it also
//! refuses every use of DPDK with "built without DPDK support"; those lines are checked on their own below and
//! left out of the other comparisons, so the same tests run in both builds.

use std::path::{Path, PathBuf};

use control::config::{self, NO_DPDK_SUPPORT};

/// True in a build with DPDK support (a function: clippy takes assertions on the constant for mistakes).
fn dpdk() -> bool {
    config::DPDK_SUPPORT
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// Parses `text` as `t.toml`, expecting failure, and returns the error's lines except the missing-feature ones.
fn errors(text: &str) -> Vec<String> {
    errors_in(text, "t.toml")
}

fn errors_in(text: &str, file: &str) -> Vec<String> {
    match config::parse(text, file) {
        Ok(c) => panic!("expected an error, got {c:#?}"),
        Err(e) => e
            .to_string()
            .lines()
            .filter(|l| !l.ends_with(NO_DPDK_SUPPORT))
            .map(String::from)
            .collect(),
    }
}

#[track_caller]
fn assert_errors(text: &str, expected: &[&str]) {
    assert_eq!(errors(text), expected, "for:\n{text}");
}

/// `text` parses, or (without the feature) fails only because DPDK is missing.
#[track_caller]
fn assert_valid(text: &str) {
    match config::parse(text, "t.toml") {
        Ok(c) => {
            assert!(dpdk(), "parsed without DPDK support: {c:#?}");
            c.validate().unwrap();
        }
        Err(e) => {
            assert!(!dpdk(), "{e}");
            assert!(
                e.diagnostics().iter().all(|d| d.reason == NO_DPDK_SUPPORT),
                "{e}"
            );
        }
    }
}

/// Two dpdk ports on null devices (lines 1-9).
const TWO_PORTS: &str = r#"[[ports]]
name = "a"
backend = "dpdk"
device = "net_null0"

[[ports]]
name = "b"
backend = "dpdk"
device = "net_null1"
"#;

#[test]
fn the_base_is_valid() {
    assert_valid(TWO_PORTS);
    assert_valid(&format!("[dpdk]\nno_huge = true\n\n{TWO_PORTS}"));
}

#[test]
fn missing_feature_is_reported_where_dpdk_is_used() {
    let text = format!("[dpdk]\nno_huge = true\n\n{TWO_PORTS}");
    match config::parse(&text, "t.toml") {
        Ok(c) => assert!(dpdk() && c.uses_dpdk()),
        Err(e) => {
            assert!(!dpdk(), "{e}");
            assert_eq!(
                e.to_string(),
                format!(
                    "t.toml:1:1: dpdk: {NO_DPDK_SUPPORT}\n\
                     t.toml:6:11: ports[0].backend: {NO_DPDK_SUPPORT}\n\
                     t.toml:11:11: ports[1].backend: {NO_DPDK_SUPPORT}"
                )
            );
        }
    }
    // A [dpdk] section alone is refused too; a config without DPDK is not affected.
    let r = config::parse("[dpdk]\nmemory_mb = 128\n", "t.toml");
    if dpdk() {
        assert_eq!(r.unwrap().dpdk.unwrap().memory_mb, 128);
    } else {
        assert_eq!(
            r.unwrap_err().to_string(),
            format!("t.toml:1:1: dpdk: {NO_DPDK_SUPPORT}")
        );
    }
    config::parse("[dataplane]\nworkers = 1\n", "t.toml").unwrap();
}

#[test]
#[cfg(not(feature = "dpdk"))]
fn without_the_feature_the_message_is_exact() {
    assert_eq!(
        NO_DPDK_SUPPORT,
        "built without DPDK support: rebuild with --features dpdk"
    );
    let e = config::parse(
        "[[ports]]\nname = \"p\"\nbackend = \"dpdk\"\ndevice = \"net_null0\"\n",
        "x.toml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "x.toml:3:11: ports[0].backend: built without DPDK support: rebuild with --features dpdk"
    );
}

#[test]
fn port_fields() {
    assert_errors(
        &format!("{TWO_PORTS}rx_desc = 1000\ntx_desc = 32768\nmtu = 10000\nrss = true\n"),
        &[
            "t.toml:10:11: ports[1].rx_desc: rx_desc must be a power of two in 64..=16384, got 1000",
            "t.toml:11:11: ports[1].tx_desc: tx_desc must be a power of two in 64..=16384, got 32768",
            "t.toml:12:7: ports[1].mtu: mtu must be in 68..=9600, got 10000",
        ],
    );
    assert_errors(
        &format!("{TWO_PORTS}rx_desc = 32\ntx_desc = -64\nmtu = 67\n"),
        &[
            "t.toml:10:11: ports[1].rx_desc: rx_desc must be a power of two in 64..=16384, got 32",
            "t.toml:11:11: ports[1].tx_desc: tx_desc must be a power of two in 64..=16384, got -64",
            "t.toml:12:7: ports[1].mtu: mtu must be in 68..=9600, got 67",
        ],
    );
    assert_errors(
        &format!("{TWO_PORTS}rss = \"yes\"\n"),
        &[r#"t.toml:10:7: ports[1].rss: expected a boolean (true or false), found string "yes""#],
    );
    // Bounds are accepted.
    assert_valid(&format!(
        "{TWO_PORTS}rx_desc = 64\ntx_desc = 16384\nmtu = 68\npromiscuous = false\nrss = false\n\
         \n[dpdk]\nbuffers = 65536\n"
    ));
}

#[test]
fn device_is_required_and_well_formed() {
    assert_errors(
        "[[ports]]\nname = \"a\"\nbackend = \"dpdk\"\n\n[[ports]]\nname = \"b\"\nbackend = \"dpdk\"\ndevice = \"\"\n\n\
         [[ports]]\nname = \"c\"\nbackend = \"dpdk\"\ndevice = \",rx_pcap=in.pcap\"\n\n\
         [[ports]]\nname = \"d\"\nbackend = \"dpdk\"\ndevice = \"net pcap0\"\n",
        &[
            "t.toml:1:1: ports[0].device: required field is missing (a dpdk port needs its device: a vdev with \
             arguments such as net_pcap0,rx_pcap=in.pcap, a PCI address listed in [dpdk] pci, or a vdev of [dpdk] vdevs)",
            "t.toml:8:10: ports[1].device: device is empty (name a vdev with its arguments, like \
             net_pcap0,rx_pcap=in.pcap, or a PCI address)",
            r#"t.toml:13:10: ports[2].device: device ",rx_pcap=in.pcap" has no name before its arguments (like net_pcap0,rx_pcap=in.pcap)"#,
            r#"t.toml:18:10: ports[3].device: device name "net pcap0" contains whitespace"#,
        ],
    );
}

#[test]
fn options_of_other_backends() {
    assert_errors(
        &format!("{TWO_PORTS}interface = \"eth0\"\n"),
        &["t.toml:10:13: ports[1].interface: interface is an option of the afpacket backend, not of dpdk \
           (options of dpdk: device, rx_desc, tx_desc, mtu, promiscuous, rss)"],
    );
    assert_errors(
        "[[ports]]\nname = \"a\"\nbackend = \"afpacket\"\ninterface = \"eth0\"\nrx_desc = 512\n",
        &["t.toml:5:11: ports[0].rx_desc: rx_desc is an option of the dpdk backend, not of afpacket \
           (options of afpacket: interface, block_size, block_count, frame_size, promiscuous)"],
    );
    assert_errors(
        "[[ports]]\nname = \"a\"\nbackend = \"ring\"\npeer = \"x\"\npromiscuous = true\n",
        &["t.toml:5:15: ports[0].promiscuous: promiscuous is an option of the afpacket and dpdk backends, not \
           of ring (options of ring: peer, depth, peer_queues)"],
    );
}

#[test]
fn one_port_per_device_and_vdev_arguments_in_one_place() {
    let text = r#"[dpdk]
vdevs = ["net_null0,size=64", "net_null0", "0000:03:00.0"]

[[ports]]
name = "a"
backend = "dpdk"
device = "net_null0,size=128"

[[ports]]
name = "b"
backend = "dpdk"
device = "net_null1"

[[ports]]
name = "c"
backend = "dpdk"
device = "net_null1"
"#;
    assert_errors(
        text,
        &[
            r#"t.toml:2:31: dpdk.vdevs[1]: vdev "net_null0" is already listed as dpdk.vdevs[0]"#,
            r#"t.toml:2:44: dpdk.vdevs[2]: "0000:03:00.0" is a PCI address, not a vdev: list it in pci"#,
            r#"t.toml:7:10: ports[0].device: vdev "net_null0" is also started by dpdk.vdevs[0] with its own arguments: give the arguments in one place (here, or there and name it here as "net_null0")"#,
            r#"t.toml:17:10: ports[2].device: DPDK device "net_null1" is already used by ports[1]"#,
        ],
    );
}

#[test]
fn pci_devices_are_on_the_allow_list() {
    let text = r#"[dpdk]
pci = ["03:00", "0000:03:00.0,rxq_pkt_fill=4", "03:00.0", "0000:04:00.1"]

[[ports]]
name = "a"
backend = "dpdk"
device = "0000:05:00.0"

[[ports]]
name = "b"
backend = "dpdk"
device = "04:00.1"

[[ports]]
name = "c"
backend = "dpdk"
device = "0000:04:00.1"
"#;
    assert_errors(
        text,
        &[
            r#"t.toml:2:8: dpdk.pci[0]: "03:00" is not a PCI address (like 0000:03:00.0: domain, bus, device and function in hex)"#,
            "t.toml:2:48: dpdk.pci[2]: PCI device 0000:03:00.0 is already listed as dpdk.pci[1]",
            "t.toml:7:10: ports[0].device: PCI device 0000:05:00.0 is not in [dpdk] pci (the EAL uses only the PCI \
             devices listed there: add it)",
            "t.toml:17:10: ports[2].device: DPDK device 0000:04:00.1 is already used by ports[1]",
        ],
    );
}

#[test]
fn section_fields() {
    assert_errors(
        r#"[dpdk]
no_huge = true
memory_mb = 32
file_prefix = "wharf test"
main_lcore_cpus = [0, 0, 5000]
log_level = "loud"
extra_args = ["--vdev=net_null9", "", "--iova-mode=va", "-l", "-m512", "--no-pci"]
buffers = 100
data_room = 10000
cache_size = 600
"#,
        &[
            "t.toml:3:13: dpdk.memory_mb: memory_mb must be at least 64 without hugepages (no_huge = true), got 32 \
             (512 is a good start)",
            r#"t.toml:4:15: dpdk.file_prefix: file_prefix "wharf test" must be 1 to 64 letters, digits, '-', '_' or '.'"#,
            "t.toml:5:23: dpdk.main_lcore_cpus[1]: CPU 0 is listed twice",
            "t.toml:5:26: dpdk.main_lcore_cpus[2]: a CPU id must be in 0..=1023, got 5000",
            r#"t.toml:6:13: dpdk.log_level: log_level "loud" is not an EAL log level: LEVEL or PATTERN:LEVEL, LEVEL one of emergency, alert, critical, error, warning, notice, info, debug or 1..=8"#,
            "t.toml:7:15: dpdk.extra_args[0]: EAL option --vdev is set by wharf: use `vdevs` in [dpdk] instead",
            "t.toml:7:35: dpdk.extra_args[1]: an EAL argument is empty",
            "t.toml:7:57: dpdk.extra_args[3]: EAL option -l is set by wharf: use `main_lcore_cpus` in [dpdk] instead",
            "t.toml:7:63: dpdk.extra_args[4]: EAL option -m is set by wharf: use `memory_mb` in [dpdk] instead",
            "t.toml:7:72: dpdk.extra_args[5]: EAL option --no-pci is set by wharf: use `pci` in [dpdk] instead",
            "t.toml:8:11: dpdk.buffers: buffers must be in 256..=16777216, got 100",
            "t.toml:9:13: dpdk.data_room: data_room must be in 1518..=9728, got 10000",
            "t.toml:10:14: dpdk.cache_size: cache_size must be in 0..=512, got 600",
        ],
    );
    assert_errors(
        "[dpdk]\nmemory_mb = -1\nfile_prefix = \"\"\ndata_room = 1500\nbuffers = 300\ncache_size = 256\n",
        &[
            "t.toml:2:13: dpdk.memory_mb: memory_mb must be in 0..=1048576, got -1",
            r#"t.toml:3:15: dpdk.file_prefix: file_prefix "" must be 1 to 64 letters, digits, '-', '_' or '.'"#,
            "t.toml:4:13: dpdk.data_room: data_room must be in 1518..=9728, got 1500",
            "t.toml:6:14: dpdk.cache_size: cache_size 256 is more than buffers / 1.5 (200), which DPDK refuses: \
             lower cache_size or raise buffers (300)",
        ],
    );
    assert_errors(
        "[dpdk]\nno_hug = true\n",
        &[r#"t.toml:2:1: dpdk.no_hug: unknown field "no_hug" (did you mean "no_huge"?)"#],
    );
    assert_errors(
        "[dpdk]\nvdevs = \"net_null0\"\n",
        &[r#"t.toml:2:9: dpdk.vdevs: expected an array, found string "net_null0""#],
    );
    // With hugepages, memory_mb = 0 means "as the mempools need"; the log level may name a pattern.
    assert_valid(
        "[dpdk]\nmemory_mb = 0\nlog_level = \"lib.eal:debug\"\nfile_prefix = \"wharf-a.1_b\"\n\
         extra_args = [\"--iova-mode=va\"]\nmain_lcore_cpus = [0, 1]\n",
    );
}

#[test]
fn the_pool_covers_the_rings_and_the_mtu_fits() {
    // 2 ports × 2 workers × (1024 + 1024) + 2 × 256 = 8704 buffers needed.
    let text = format!("[dataplane]\nworkers = 2\nbuffers = 8192\n\n{TWO_PORTS}");
    assert_errors(
        &text,
        &["t.toml:3:11: dataplane.buffers: the DPDK pool's 8192 buffers cannot fill the dpdk ports' rings: 8192 \
           descriptors (2 port(s) × 2 queue(s) × (rx_desc + tx_desc)) plus 2 workers × cache_size 256 = 8704; set \
           buffers in [dpdk] to at least 8704 (twice that leaves room for packets in flight), or lower \
           rx_desc/tx_desc"],
    );
    // Reported at [dpdk] buffers when written there; fixed by smaller rings.
    let text = format!("[dpdk]\nbuffers = 4096\ncache_size = 0\n\n{TWO_PORTS}rx_desc = 2048\n");
    assert_errors(
        &text,
        &["t.toml:2:11: dpdk.buffers: the DPDK pool's 4096 buffers cannot fill the dpdk ports' rings: 5120 \
           descriptors (2 port(s) × 1 queue(s) × (rx_desc + tx_desc)) plus 1 worker × cache_size 0 = 5120; set \
           buffers in [dpdk] to at least 5120 (twice that leaves room for packets in flight), or lower \
           rx_desc/tx_desc"],
    );
    assert_valid(&format!(
        "[dpdk]\nbuffers = 4096\ncache_size = 0\n\n{TWO_PORTS}rx_desc = 1024\n"
    ));
    // An MTU's frames (plus Ethernet header and VLAN tag) must fit the data room.
    assert_errors(
        &format!("{TWO_PORTS}mtu = 2031\n"),
        &["t.toml:10:7: ports[1].mtu: mtu 2031 needs frames of 2049 bytes (the MTU, an Ethernet header and a VLAN \
           tag), more than the DPDK pool's data_room of 2048: raise data_room in [dpdk]"],
    );
    assert_valid(&format!("{TWO_PORTS}mtu = 2030\n"));
    assert_valid(&format!(
        "[dpdk]\ndata_room = 9728\n\n{TWO_PORTS}mtu = 9600\n"
    ));
    // The pool defaults follow [dataplane].
    assert_valid(&format!(
        "[dataplane]\nbuffers = 65536\ndata_room = 9216\n\n{TWO_PORTS}mtu = 9000\n"
    ));
}

#[test]
fn net_pcap_files_resolve_against_the_config_file() {
    let dir = tempfile::Builder::new()
        .prefix("wharf-dpdk-cfg-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/in.pcap"), b"").unwrap();
    let file = dir.path().join("w.toml").display().to_string();
    let text = r#"[[ports]]
name = "p"
backend = "dpdk"
device = "net_pcap0,rx_pcap=d/in.pcap,tx_pcap=d/out.pcap,infinite_rx=0"

[[ports]]
name = "q"
backend = "dpdk"
device = "net_pcap1,rx_pcap=d/missing.pcap,tx_pcap=/tmp/q.pcap"

[[ports]]
name = "r"
backend = "pcap"
tx = "d/out.pcap"

[[ports]]
name = "s"
backend = "dpdk"
device = "net_pcap2,rx_pcap=d/in.pcap,tx_pcap=d/in.pcap"
"#;
    let d = dir.path().display();
    assert_eq!(
        errors_in(text, &file),
        [
            format!("{file}:9:10: ports[1].device: pcap file \"{d}/d/missing.pcap\" (rx_pcap) does not exist"),
            format!("{file}:14:6: ports[2].tx: pcap file \"{d}/d/out.pcap\" is already written by ports[0]"),
            format!(
                "{file}:19:10: ports[3].device: tx_pcap \"{d}/d/in.pcap\" is also this device's rx_pcap (writing \
                 would destroy the input)"
            ),
        ]
    );
    // The resolved device string is what the port gets.
    let ok = &text[..text.find("\n[[ports]]\nname = \"q\"").unwrap()];
    match config::parse(ok, &file) {
        Ok(c) => {
            let config::BackendCfg::Dpdk(p) = &c.ports[0].backend else {
                panic!("{c:?}")
            };
            assert_eq!(
                p.device,
                format!("net_pcap0,rx_pcap={d}/d/in.pcap,tx_pcap={d}/d/out.pcap,infinite_rx=0")
            );
            assert_eq!(p.device_name(), "net_pcap0");
        }
        Err(e) => assert!(!dpdk(), "{e}"),
    }
}

#[test]
fn backend_lists_name_dpdk() {
    assert_errors(
        "[[ports]]\nname = \"a\"\nbackend = \"dpkd\"\n",
        &[
            r#"t.toml:3:11: ports[0].backend: unknown backend "dpkd" (expected one of: ring, pcap, afpacket, dpdk)"#,
        ],
    );
    assert_eq!(
        config::BackendCfg::NAMES,
        ["ring", "pcap", "afpacket", "dpdk"]
    );
}

/// The shipped example: without the feature, DPDK support is all that is missing.
#[test]
fn shipped_dpdk_config() {
    let dir = configs_dir();
    let path = dir.join("dpdk-pcap.toml");
    match config::load(&path) {
        Ok(c) => {
            assert!(dpdk());
            let d = c.dpdk.as_ref().unwrap();
            assert!(d.no_huge);
            assert_eq!(
                (d.memory_mb, d.buffers, d.data_room, d.cache_size),
                (256, 4096, 2048, 128)
            );
            assert_eq!(d.file_prefix, None);
            assert_eq!(d.log_level, "notice");
            let config::BackendCfg::Dpdk(p) = &c.ports[0].backend else {
                panic!("{c:?}")
            };
            assert_eq!(
                p.device,
                format!(
                    "net_pcap_in,rx_pcap={}",
                    dir.join("data/xconnect-in.pcap").display()
                )
            );
            assert_eq!((p.rx_desc, p.tx_desc, p.mtu), (512, 512, None));
            assert!(p.promiscuous && p.rss);
            let config::BackendCfg::Dpdk(p) = &c.ports[1].backend else {
                panic!("{c:?}")
            };
            assert_eq!(p.mtu, Some(1500));
            assert_eq!(c.workers(), [None]);
            c.validate().unwrap();
            // It serialises to TOML that parses back to the same model.
            let again = toml::to_string(&c).unwrap();
            assert_eq!(config::parse(&again, "again.toml").unwrap(), c);
        }
        Err(e) => {
            assert!(!dpdk(), "{e}");
            let lines: Vec<_> = e
                .diagnostics()
                .iter()
                .map(|d| (d.line, d.field.as_str(), d.reason.as_str()))
                .collect();
            assert_eq!(
                lines,
                [
                    (17, "dpdk", NO_DPDK_SUPPORT),
                    (33, "ports[0].backend", NO_DPDK_SUPPORT),
                    (45, "ports[1].backend", NO_DPDK_SUPPORT),
                ]
            );
        }
    }
}

/// Without `[dpdk]`, the pool is sized like `[dataplane]`'s and everything else has its default.
#[test]
fn defaults_without_a_section() {
    let c = match config::parse(
        &format!("[dataplane]\nbuffers = 3000\ndata_room = 4096\n\n{TWO_PORTS}rx_desc = 64\ntx_desc = 64\n\n[[ports]]\nname = \"c\"\nbackend = \"pcap\"\ntx = \"/tmp/c.pcap\"\n"),
        "t.toml",
    ) {
        Ok(c) => c,
        Err(e) => {
            assert!(!dpdk(), "{e}");
            return;
        }
    };
    assert_eq!(c.dpdk, None);
    assert!(c.uses_dpdk());
    let d = c.dpdk_or_default();
    assert_eq!((d.buffers, d.data_room, d.cache_size), (3000, 4096, 256));
    assert_eq!(
        (d.no_huge, d.memory_mb, d.log_level.as_str()),
        (false, 512, "notice")
    );
    assert!(d.vdevs.is_empty() && d.pci.is_empty() && d.extra_args.is_empty());
    let config::BackendCfg::Dpdk(p) = &c.ports[0].backend else {
        panic!("{c:?}")
    };
    assert_eq!(
        (
            p.device.as_str(),
            p.rx_desc,
            p.tx_desc,
            p.mtu,
            p.promiscuous,
            p.rss
        ),
        ("net_null0", 1024, 1024, None, true, true)
    );
}

/// With the feature, the model maps onto the DPDK backend's own configurations.
#[cfg(feature = "dpdk")]
#[test]
fn maps_to_the_dpdk_backend() {
    use dataplane::port::dpdk::{DpdkPoolConfig, DpdkPortConfig, EalConfig};
    let c = config::parse(
        &format!(
            "[dpdk]\nno_huge = true\nmemory_mb = 128\nfile_prefix = \"wx\"\nvdevs = [\"net_null0\"]\n\
             log_level = \"debug\"\nextra_args = [\"--iova-mode=va\"]\nbuffers = 8192\ndata_room = 4096\n\
             cache_size = 64\nmain_lcore_cpus = [1]\n\n{TWO_PORTS}mtu = 3000\nrss = false\n"
        ),
        "t.toml",
    )
    .unwrap();
    let d = c.dpdk_or_default();
    assert_eq!(
        d.eal_config(),
        EalConfig {
            main_lcore_cpus: vec![1],
            no_huge: true,
            memory_mb: 128,
            file_prefix: "wx".into(),
            vdevs: vec!["net_null0".into()],
            pci: vec![],
            log_level: "debug".into(),
            extra_args: vec!["--iova-mode=va".into()],
        }
    );
    assert_eq!(
        d.pool_config(),
        DpdkPoolConfig {
            buffers: 8192,
            data_room: 4096,
            cache_size: 64
        }
    );
    let config::BackendCfg::Dpdk(p) = &c.ports[1].backend else {
        panic!()
    };
    assert_eq!(
        p.port_config(2),
        DpdkPortConfig {
            device: "net_null1".into(),
            queues: 2,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: Some(3000),
            promiscuous: true,
            rss: false,
        }
    );
    // Unset file_prefix: the backend's own default (wharf-<pid>).
    assert_eq!(config::DpdkCfg::default().eal_config().file_prefix, "");
}
