//! Raw bindings to the system DPDK for wharf's `dpdk` backend.
//!
//! Everything here is `unsafe` FFI; the safe API is `dataplane::port::dpdk`. With the `bindings` feature the
//! build script probes `libdpdk` with pkg-config (22.11 LTS or a newer LTS), generates the declarations with
//! bindgen over an allowlist (`rte_eal_*`, `rte_eth_*`, `rte_mempool*`, `rte_pktmbuf*`, `rte_ring*`,
//! `rte_lcore*`, `rte_dev_probe`/`remove`, `rte_thread_(un)register`, `rte_strerror`), and compiles a C shim
//! whose `wharf_*` functions are DPDK's `static inline` fast-path functions out of line
//! (`wharf_rte_eth_rx_burst`, `wharf_rte_eth_tx_burst`, `wharf_rte_pktmbuf_alloc`/`_free`/`_alloc_bulk`,
//! `wharf_rte_errno`, ...). The `wharf_mbuf_layout` constants are the byte offsets of `struct rte_mbuf`'s fields,
//! computed by the C compiler from the installed headers.
//!
//! Without the feature the crate is empty, so a workspace build needs no DPDK.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all, missing_docs, rustdoc::all)]

#[cfg(feature = "bindings")]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
