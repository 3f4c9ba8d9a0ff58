//! Binds the system DPDK (only with the `bindings` feature; otherwise the crate is empty).
//!
//! 1. `pkg-config` finds `libdpdk` and its version: 22.11 (Debian bookworm's libdpdk-dev) and newer LTS releases
//!    (YY.11) are accepted; anything else is refused with a message saying what to install. Set
//!    `WHARF_DPDK_ANY_VERSION=1` to try a non-LTS release anyway.
//! 2. bindgen reads `src/wrapper.h` with the raw `pkg-config --cflags libdpdk` (they carry
//!    `-include rte_config.h` and `-march=...`, which the headers need) and an allowlist of the API wharf uses.
//! 3. cc compiles `src/shim.c` (DPDK's `static inline` fast-path functions, out of line) with the same flags.
//! 4. The link flags come from pkg-config, plus `rte_net_ring` for `rte_eth_from_rings`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=WHARF_DPDK_ANY_VERSION");
    #[cfg(feature = "bindings")]
    bind::run();
}

/// Everything that needs DPDK: only with the `bindings` feature.
#[cfg(feature = "bindings")]
mod bind {
    use std::env;
    use std::path::PathBuf;
    use std::process::{exit, Command};

    /// Prints a build error that names the cause and the fix, and stops the build.
    fn fail(msg: &str) -> ! {
        eprintln!("\nerror: wharf-dpdk-sys: {msg}\n");
        println!("cargo:warning=wharf-dpdk-sys: {msg}");
        exit(1);
    }

    /// Is `version` ("22.11.4") a release we build against?
    fn version_ok(version: &str) -> Result<(u32, u32), String> {
        let mut it = version.split('.').map(|s| s.parse::<u32>());
        let (Some(Ok(year)), Some(Ok(month))) = (it.next(), it.next()) else {
            return Err(format!(
                "cannot read the DPDK version {version:?} that pkg-config reports"
            ));
        };
        if year < 22 || (year == 22 && month < 11) {
            return Err(format!(
                "DPDK {version} is too old: wharf needs 22.11 LTS or a newer LTS release (Debian bookworm: apt-get install libdpdk-dev)"
            ));
        }
        if month != 11 && env::var_os("WHARF_DPDK_ANY_VERSION").is_none() {
            return Err(format!(
                "DPDK {version} is not an LTS release: wharf builds against 22.11 or a newer LTS (YY.11); install one, or set WHARF_DPDK_ANY_VERSION=1 to try this one"
            ));
        }
        Ok((year, month))
    }

    fn pkg_config_cmd() -> String {
        env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into())
    }

    pub fn run() {
        let lib = match pkg_config::Config::new().cargo_metadata(true).probe("libdpdk") {
            Ok(lib) => lib,
            Err(e) => fail(&format!(
                "pkg-config cannot find libdpdk ({e}).\n  Install DPDK's development files (Debian/Ubuntu: apt-get install dpdk libdpdk-dev pkg-config; \
                 or run scripts/install-deps.sh), or point PKG_CONFIG_PATH at the directory holding libdpdk.pc.\n  \
                 Only the `dpdk` feature of wharf-dataplane needs DPDK; the default build does not."
            )),
        };
        if let Err(e) = version_ok(&lib.version) {
            fail(&e);
        }
        println!("cargo:version={}", lib.version);
        // rte_eth_from_rings lives in the net_ring PMD, which pkg-config's (shared) link line does not name.
        println!("cargo:rustc-link-lib=rte_net_ring");

        let out = Command::new(pkg_config_cmd())
            .args(["--cflags", "libdpdk"])
            .output()
            .unwrap_or_else(|e| fail(&format!("cannot run pkg-config: {e}")));
        if !out.status.success() {
            fail(&format!(
                "pkg-config --cflags libdpdk failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let cflags: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();

        let mut cc = cc::Build::new();
        cc.file("src/shim.c").include("src").warnings(false);
        for f in &cflags {
            cc.flag(f);
        }
        cc.compile("wharf_dpdk_shim");

        let bindings = bindgen::Builder::default()
            .header("src/wrapper.h")
            .clang_args(&cflags)
            .clang_arg("-Isrc")
            .allowlist_function("rte_eal_.*")
            .allowlist_function("rte_eth_.*")
            .allowlist_function("rte_mempool_.*")
            .allowlist_function("rte_pktmbuf_.*")
            .allowlist_function("rte_ring_.*")
            .allowlist_function("rte_lcore_.*")
            .allowlist_function("rte_thread_(un)?register")
            .allowlist_function("rte_dev_(probe|remove)")
            .allowlist_function("rte_strerror")
            .allowlist_function("rte_mbuf_best_mempool_ops")
            .allowlist_type("rte_pktmbuf_pool_private")
            .allowlist_function("rte_version")
            .allowlist_function("wharf_.*")
            .allowlist_type("wharf_.*")
            .allowlist_var("RTE_ETH_.*")
            .allowlist_var("RTE_MBUF_F_.*")
            .allowlist_var("RTE_RING_.*")
            .allowlist_var("RING_F_.*")
            .allowlist_var("RTE_MEMPOOL_.*")
            .allowlist_var("RTE_ETHER_.*")
            .allowlist_var("SOCKET_ID_ANY")
            .allowlist_var("LCORE_ID_ANY")
            .allowlist_var("RTE_MAX_ETHPORTS")
            .constified_enum_module("wharf_.*")
            .derive_default(true)
            .layout_tests(true)
            .generate_comments(false)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            .generate()
            .unwrap_or_else(|e| {
                fail(&format!(
                    "bindgen could not read the DPDK headers ({e}).\n  It needs libclang (Debian: apt-get install libclang-dev) and \
                     the headers of libdpdk-dev; cflags used: {}",
                    cflags.join(" ")
                ))
            });
        let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"))
            .join("bindings.rs");
        bindings
            .write_to_file(&out)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
    }
}
