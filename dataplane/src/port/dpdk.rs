//! `dpdk`: ports on DPDK poll-mode drivers, sharing the packet buffer with the driver instead of copying it.
//!
//! Physical NICs (bound to `vfio-pci`) and DPDK's virtual devices (`net_memif`, `net_ring`, `net_null`,
//! `net_pcap`, ...) all look the same here: a [`DpdkPort`] is an ethdev with one rx and one tx queue per worker.
//! Only with the `dpdk` cargo feature; the bindings are the `wharf-dpdk-sys` crate, and all the `unsafe` FFI of
//! the backend is in this file.
//!
//! # Pieces
//!
//! - [`Eal`]: DPDK's environment, initialised **once per process** ([`Eal::init`]): main lcore, memory
//!   (`--no-huge -m MB`, or hugepages with `--in-memory`), `--file-prefix`, `--vdev`s, PCI allow list. A second
//!   `init` with the same options returns the running EAL; with other options it is an error (DPDK cannot run
//!   two EALs in a process, nor re-initialise one). [`Eal::cleanup`] ends it once nothing uses it.
//! - [`DpdkPool`]: an `rte_mempool` of `rte_mbuf`s laid out as every wharf buffer is (see [`crate::pool`]):
//!   `priv_size` = [`META_SIZE`] puts wharf's [`Meta`] in the mbuf's private area, and the data room is
//!   [`HEADROOM`] plus the pool's data room, so `buf_addr` is wharf's buffer start and an `rte_mbuf *` *is* the
//!   element a [`Pkt`] points to. Converting is a cast; no frame is copied. Such a `Pkt` has a null pool in its
//!   metadata: dropping it calls `rte_pktmbuf_free`, and [`Pkt::try_clone`] takes a new mbuf from the same
//!   mempool (routines registered once per process when the first pool is made).
//! - [`DpdkPort`]: [`DpdkPort::open`] attaches a device (`rte_dev_probe` of a vdev string such as
//!   `net_memif0,role=client,socket=/run/wharf/m0.sock`, a PCI address, or the name of a device the EAL already
//!   probed), configures `queues` rx and tx queues with a symmetric RSS key when there are several and the PMD
//!   hashes, sets the MTU and promiscuous mode, and starts it; then it reads the RSS key, hashed fields and
//!   redirection table back from the device, so the NAT can predict which queue an answer reaches
//!   ([`Steering`]). [`DpdkPort::ring_pair`] makes two `net_ring`
//!   ports cabled to each other (what one transmits the other receives), for tests and closed-loop benchmarks.
//!   Dropping the port (and its open queues) stops, closes and detaches the device.
//!
//! # The fast path
//!
//! - **rx**: one `rte_eth_rx_burst` per call into a scratch array; each mbuf becomes a `Pkt` in place: wharf's
//!   metadata is reset, its `data_off`/`len` are taken from the mbuf's `data_off`/`data_len`, `in_queue` set,
//!   checksum flags mapped (`RTE_MBUF_F_RX_{IP,L4}_CKSUM_GOOD`). VLAN tags stay in the frame as on the wire (VLAN
//!   stripping is not enabled); should a NIC strip one anyway, it is put back into the frame and reported with
//!   [`Meta::FLAG_VLAN`]. The frame itself is not read (a pipeline that does not look at it, like the
//!   cross-connect, never brings it into the cache). Chained (multi-segment) mbufs
//!   are dropped as `too_big`, impossible bounds as `malformed`, frames shorter than an Ethernet header as
//!   `truncated`. An mbuf from a mempool wharf did not make (another application's, through a shared ring), or
//!   an indirect one, is copied into one of ours (or dropped as `no_buffer`): it has no room for wharf's metadata.
//! - **tx**: frames that no driver may send (shorter than an Ethernet header; longer than the MTU plus the
//!   Ethernet header, plus 4 bytes when tagged) are dropped and counted; the mbuf's `data_off`, `data_len` and
//!   `pkt_len` are set from the metadata (prepend/strip in the headroom work in place) and the pointers go to one
//!   `rte_eth_tx_burst`; the driver owns what it took and frees it. A `Pkt` from a wharf [`Pool`](crate::Pool)
//!   (another backend's buffer) is copied into an mbuf of this port's pool first.
//! - **threads**: a worker thread is registered as a DPDK non-EAL lcore (`rte_thread_register`) on its first
//!   burst, so mempool operations use a per-thread cache; it is unregistered when the thread ends.
//! - Nothing allocates per packet, nothing panics on what a driver hands over, and the only per-burst indirection
//!   is the one call into the shim (`rte_eth_rx_burst` and `rte_eth_tx_burst` are `static inline` in DPDK).
//!
//! # Errors
//!
//! Everything DPDK reports becomes a message that names the cause and what to do (no hugepages reserved, a
//! device that does not probe, a PMD plugin that is not installed, a port that does not start, more queues than
//! the device has). Nothing here aborts the process.

use super::{Port, PortError, PortInfo, PortQueue, QueueClaim, QueueClaims};
use crate::burst::{Burst, MAX_BURST};
use crate::counters::{DropReason, PortCounters, QueueCounters};
use crate::pkt::{Meta, Pkt};
use crate::pool::{self, DEFAULT_DATA_ROOM, HEADROOM, MBUF_ROOM, META_SIZE};
use crate::rss::Steering;
use dpdk_sys as sys;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::PathBuf;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

// ---- rte_mbuf layout -----------------------------------------------------------------------------------------

use sys::wharf_mbuf_layout as layout;

const OFF_BUF_ADDR: usize = layout::WHARF_MBUF_BUF_ADDR as usize;
const OFF_DATA_OFF: usize = layout::WHARF_MBUF_DATA_OFF as usize;
const OFF_NB_SEGS: usize = layout::WHARF_MBUF_NB_SEGS as usize;
const OFF_OL_FLAGS: usize = layout::WHARF_MBUF_OL_FLAGS as usize;
const OFF_PKT_LEN: usize = layout::WHARF_MBUF_PKT_LEN as usize;
const OFF_DATA_LEN: usize = layout::WHARF_MBUF_DATA_LEN as usize;
const OFF_VLAN_TCI: usize = layout::WHARF_MBUF_VLAN_TCI as usize;
const OFF_BUF_LEN: usize = layout::WHARF_MBUF_BUF_LEN as usize;
const OFF_POOL: usize = layout::WHARF_MBUF_POOL as usize;

/// The receive offload flags [`DpdkQueue::rx_offloads`] reads.
const RX_OFFLOAD_FLAGS: u64 = (sys::RTE_MBUF_F_RX_VLAN_STRIPPED
    | sys::RTE_MBUF_F_RX_IP_CKSUM_MASK
    | sys::RTE_MBUF_F_RX_L4_CKSUM_MASK) as u64;

// The layout every wharf buffer has must be the one DPDK uses: the mbuf header fills exactly the mbuf room, and
// the fields the fast path touches are where the (naturally aligned) accesses below expect them.
const _: () = {
    assert!(layout::WHARF_MBUF_SIZE as usize == MBUF_ROOM);
    assert!(
        OFF_BUF_ADDR.is_multiple_of(8)
            && OFF_OL_FLAGS.is_multiple_of(8)
            && OFF_POOL.is_multiple_of(8)
    );
    assert!(
        OFF_DATA_OFF.is_multiple_of(2)
            && OFF_NB_SEGS.is_multiple_of(2)
            && OFF_DATA_LEN.is_multiple_of(2)
    );
    assert!(
        OFF_VLAN_TCI.is_multiple_of(2)
            && OFF_BUF_LEN.is_multiple_of(2)
            && OFF_PKT_LEN.is_multiple_of(4)
    );
    assert!(OFF_POOL + 8 <= MBUF_ROOM && OFF_PKT_LEN + 4 <= MBUF_ROOM);
    // The mbuf private area must be a multiple of RTE_MBUF_PRIV_ALIGN (8).
    assert!(META_SIZE.is_multiple_of(8));
};

/// Reads a field of the mbuf header at `m`.
///
/// # Safety
/// `m` is a live mbuf and `off` the offset of a field of type `T` (checked above).
#[inline(always)]
unsafe fn rd<T: Copy>(m: *const u8, off: usize) -> T {
    m.add(off).cast::<T>().read()
}

/// Writes a field of the mbuf header at `m`.
///
/// # Safety
/// As [`rd`], and the mbuf is ours.
#[inline(always)]
unsafe fn wr<T: Copy>(m: *mut u8, off: usize, v: T) {
    m.add(off).cast::<T>().write(v)
}

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// Text of a DPDK error number (`rte_strerror` knows DPDK's own numbers besides the system's).
fn strerror(errnum: c_int) -> String {
    let errnum = errnum.abs();
    // SAFETY: rte_strerror returns a NUL-terminated string (static or thread-local) valid until the next call on
    // this thread; it is copied at once.
    let s = unsafe { CStr::from_ptr(sys::rte_strerror(errnum)) };
    format!("{} (errno {errnum})", s.to_string_lossy())
}

/// The `rte_errno` of this thread.
fn rte_errno() -> c_int {
    // SAFETY: reads a thread-local integer.
    unsafe { sys::wharf_rte_errno() }
}

// ---- errors --------------------------------------------------------------------------------------------------

/// Errors of the EAL and of mempools (port errors are [`PortError`]s).
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// Hugepages were asked for and none is free.
    #[error(
        "DPDK: no free hugepages for the EAL: reserve some (echo 256 > /proc/sys/vm/nr_hugepages, i.e. 512 MiB \
         of 2 MiB pages) or run without them (no_huge = true, EAL --no-huge -m {memory_mb})"
    )]
    NoHugepages {
        /// Memory the EAL was asked for, in MiB.
        memory_mb: u32,
    },
    /// `rte_eal_init` failed.
    #[error("DPDK EAL init failed: {reason} (EAL arguments: {args}; the EAL's own messages on stderr say more)")]
    EalInit {
        /// The EAL arguments used.
        args: String,
        /// The cause and the fix.
        reason: String,
    },
    /// The EAL runs already with other options.
    #[error(
        "DPDK EAL is already initialised in this process with other options ({args}); DPDK runs one EAL per \
         process, so every DPDK port of a process shares one EAL configuration"
    )]
    AlreadyInitialised {
        /// The arguments of the running EAL.
        args: String,
    },
    /// An earlier `rte_eal_init` failed or the EAL was cleaned up; DPDK cannot initialise again in this process.
    #[error("DPDK EAL unavailable in this process: {0}; restart the process to try again")]
    Unavailable(String),
    /// No EAL is running.
    #[error("DPDK EAL is not initialised: call Eal::init (the config's [dpdk] section) before making pools or ports")]
    NotInitialised,
    /// A value out of range.
    #[error("DPDK config: {0}")]
    BadConfig(String),
    /// A mempool could not be made.
    #[error("DPDK mempool {name}: {reason}")]
    Mempool {
        /// Mempool name.
        name: String,
        /// The cause and the fix.
        reason: String,
    },
    /// The EAL cannot be cleaned up yet.
    #[error("DPDK EAL cleanup refused: {0}")]
    Busy(String),
}

// ---- EAL -----------------------------------------------------------------------------------------------------

/// How the EAL is started. Turned into EAL arguments by [`EalConfig::args`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EalConfig {
    /// CPUs the EAL main lcore (the thread calling [`Eal::init`]) may run on; empty means every CPU this process
    /// may use, which pins nothing. Workers are not EAL lcores: they pin themselves and register with DPDK on
    /// their first burst. The calling thread's affinity is restored after init either way.
    pub main_lcore_cpus: Vec<usize>,
    /// Run without hugepages (`--no-huge -m memory_mb`): for tests and virtual devices; slower, and physical
    /// NICs need IOVA-capable memory. The EAL keeps its IPC socket (memif needs it) in its runtime directory,
    /// which [`Eal::cleanup`] removes. When false, hugepages are used with `--in-memory` (no files in hugetlbfs,
    /// no shared config).
    pub no_huge: bool,
    /// Memory for the EAL in MiB (`-m`). 0 with hugepages: what the mempools ask for, grown on demand.
    pub memory_mb: u32,
    /// `--file-prefix`: distinct per process that runs an EAL at the same time; empty means `wharf-<pid>`.
    pub file_prefix: String,
    /// `--vdev` arguments, probed at init (ports may also attach vdevs later: [`DpdkPortConfig::device`]).
    pub vdevs: Vec<String>,
    /// PCI devices to use (`-a`, e.g. `0000:03:00.0`); empty means `--no-pci`.
    pub pci: Vec<String>,
    /// `--log-level` (e.g. `notice`, `lib.eal:debug`); empty keeps DPDK's default.
    pub log_level: String,
    /// More EAL arguments, passed as they are, last.
    pub extra_args: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            main_lcore_cpus: Vec::new(),
            no_huge: false,
            memory_mb: 512,
            file_prefix: String::new(),
            vdevs: Vec::new(),
            pci: Vec::new(),
            log_level: "notice".into(),
            extra_args: Vec::new(),
        }
    }
}

impl EalConfig {
    /// A configuration for tests and virtual devices: no hugepages, `memory_mb` MiB, `--file-prefix prefix`.
    pub fn no_huge(prefix: &str, memory_mb: u32) -> EalConfig {
        EalConfig {
            no_huge: true,
            memory_mb,
            file_prefix: prefix.into(),
            ..Default::default()
        }
    }

    /// The `--file-prefix` used.
    pub fn prefix(&self) -> String {
        if self.file_prefix.is_empty() {
            format!("wharf-{}", std::process::id())
        } else {
            self.file_prefix.clone()
        }
    }

    fn validate(&self) -> Result<(), DpdkError> {
        if self.no_huge && self.memory_mb < 64 {
            return Err(DpdkError::BadConfig(format!(
                "memory_mb = {} is too small without hugepages: give the EAL at least 64 MiB (512 is a good start)",
                self.memory_mb
            )));
        }
        let prefix = self.prefix();
        if prefix.is_empty()
            || prefix.len() > 64
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(DpdkError::BadConfig(format!(
                "file_prefix {prefix:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(())
    }

    /// The EAL arguments (without the program name).
    pub fn args(&self) -> Vec<String> {
        let cpus = if self.main_lcore_cpus.is_empty() {
            allowed_cpus()
        } else {
            self.main_lcore_cpus.clone()
        };
        let cpus = cpus
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut a = vec![
            "--lcores".to_string(),
            format!("0@({cpus})"),
            "--file-prefix".into(),
            self.prefix(),
            "--no-telemetry".into(),
        ];
        if self.no_huge {
            a.extend(["--no-huge".into(), "-m".into(), self.memory_mb.to_string()]);
        } else {
            a.push("--in-memory".into());
            if self.memory_mb > 0 {
                a.extend(["-m".into(), self.memory_mb.to_string()]);
            }
        }
        for v in &self.vdevs {
            a.extend(["--vdev".into(), v.clone()]);
        }
        if self.pci.is_empty() {
            a.push("--no-pci".into());
        }
        for p in &self.pci {
            a.extend(["-a".into(), p.clone()]);
        }
        if !self.log_level.is_empty() {
            a.push(format!("--log-level={}", self.log_level));
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// CPUs the calling thread may run on.
fn allowed_cpus() -> Vec<usize> {
    match get_affinity() {
        Some(set) => (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET reads a bit of the set inside its bounds.
            .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
            .collect(),
        None => vec![0],
    }
}

fn get_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is valid; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

/// Free hugepages of every size, from sysfs (or /proc/meminfo).
fn free_hugepages() -> u64 {
    let mut free = 0;
    if let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        for e in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("free_hugepages")) {
                free += s.trim().parse::<u64>().unwrap_or(0);
            }
        }
        return free;
    }
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("HugePages_Free:")
                    .map(|v| v.trim().parse::<u64>().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// Why `rte_eal_init` failed, with what to do, from `rte_errno`.
fn eal_init_reason(errno: c_int, cfg: &EalConfig) -> String {
    let what = strerror(errno);
    let hint = match errno {
        libc::EACCES => format!(
            "cannot use hugepages (not reserved, hugetlbfs not mounted, or no permission): reserve some \
             (echo 256 > /proc/sys/vm/nr_hugepages) or run without them (no_huge = true: --no-huge -m {})",
            cfg.memory_mb.max(512)
        ),
        libc::ENOMEM => "not enough memory for the EAL: lower memory_mb, reserve more hugepages \
                         (echo 512 > /proc/sys/vm/nr_hugepages), or free memory"
            .into(),
        libc::EINVAL => "invalid EAL arguments or options: the EAL message above names the one it refused".into(),
        libc::ENODEV | libc::ENOTSUP => "a bus or device given to the EAL (--vdev, -a) failed to scan or probe: \
             check the device arguments and that its driver is installed (Debian: the librte-net-* packages; \
             drivers load from the EAL plugin directory), and that a PCI NIC is bound to vfio-pci"
            .into(),
        libc::EALREADY => "DPDK was already initialised in this process (by another library?)".into(),
        libc::EPROTO | libc::EFAULT => "the EAL could not set up its runtime directory or IPC: check that \
             /var/run/dpdk (or $XDG_RUNTIME_DIR/dpdk) is writable and the file prefix is not used by a \
             running process"
            .into(),
        _ => "see the EAL messages above".into(),
    };
    format!("{what}: {hint}")
}

enum EalState {
    Uninit,
    Running(Eal),
    /// An init failed, or the EAL was cleaned up: DPDK cannot start again in this process.
    Gone(String),
}

static EAL: Mutex<EalState> = Mutex::new(EalState::Uninit);

/// Serialises DPDK's control path (probe, configure, start, stop, close, mempool create and free), which DPDK
/// does not make thread-safe, and holds which ports are open.
static CTRL: Mutex<Ctrl> = Mutex::new(Ctrl {
    open_ports: Vec::new(),
    next_name: 0,
});

struct Ctrl {
    open_ports: Vec<u16>,
    next_name: u64,
}

fn ctrl() -> MutexGuard<'static, Ctrl> {
    CTRL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Pools whose buffers are still out when the pool was dropped: their memory is leaked, and the EAL cannot be
/// cleaned up under them.
static LEAKED_POOLS: AtomicUsize = AtomicUsize::new(0);

/// The running DPDK environment (one per process). Cloning shares it; pools and ports hold a clone.
#[derive(Clone)]
pub struct Eal {
    inner: Arc<EalInner>,
}

struct EalInner {
    config: EalConfig,
    args: Vec<String>,
}

impl std::fmt::Debug for Eal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eal")
            .field("args", &self.inner.args)
            .finish()
    }
}

impl Eal {
    /// Initialises the EAL with `cfg`, or returns the running one if it was started with the same `cfg`.
    ///
    /// Fails with a message naming the cause and the fix: [`DpdkError::NoHugepages`] before touching DPDK when
    /// hugepages are asked for and none is free (the caller may then retry with `no_huge`), and
    /// [`DpdkError::EalInit`] when `rte_eal_init` fails (after which DPDK cannot be used in this process).
    pub fn init(cfg: &EalConfig) -> Result<Eal, DpdkError> {
        let mut st = EAL.lock().unwrap_or_else(PoisonError::into_inner);
        match &*st {
            EalState::Running(e) if e.inner.config == *cfg => return Ok(e.clone()),
            EalState::Running(e) => {
                return Err(DpdkError::AlreadyInitialised {
                    args: e.inner.args.join(" "),
                })
            }
            EalState::Gone(why) => return Err(DpdkError::Unavailable(why.clone())),
            EalState::Uninit => {}
        }
        cfg.validate()?;
        if !cfg.no_huge && free_hugepages() == 0 {
            return Err(DpdkError::NoHugepages {
                memory_mb: cfg.memory_mb.max(512),
            });
        }
        let args = cfg.args();
        let mut argv_owned = Vec::with_capacity(args.len() + 1);
        for a in std::iter::once("wharf").chain(args.iter().map(String::as_str)) {
            argv_owned.push(CString::new(a).map_err(|_| {
                DpdkError::BadConfig(format!("EAL argument {a:?} contains a NUL byte"))
            })?);
        }
        // The EAL may keep pointers into argv (and getopt permutes it): the strings and the array live for the
        // rest of the process. Once per process, a few hundred bytes.
        let argv: &'static mut [*mut c_char] = Box::leak(
            argv_owned
                .into_iter()
                .map(CString::into_raw)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let saved = get_affinity();
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the call (leaked above); the EAL state
        // lock is held, so no other thread is initialising.
        let ret = unsafe { sys::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        let errno = rte_errno();
        // rte_eal_init pins the calling thread to the main lcore's CPUs: give it back the affinity it had.
        if let Some(set) = saved {
            set_affinity(&set);
        }
        if ret < 0 {
            let reason = eal_init_reason(errno, cfg);
            *st = EalState::Gone(format!("EAL init failed earlier: {reason}"));
            return Err(DpdkError::EalInit {
                args: args.join(" "),
                reason,
            });
        }
        let eal = Eal {
            inner: Arc::new(EalInner {
                config: cfg.clone(),
                args,
            }),
        };
        tracing::info!(args = %eal.inner.args.join(" "), "DPDK EAL initialised");
        *st = EalState::Running(eal.clone());
        Ok(eal)
    }

    /// The running EAL, if any.
    pub fn get() -> Option<Eal> {
        match &*EAL.lock().unwrap_or_else(PoisonError::into_inner) {
            EalState::Running(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// The EAL arguments in use.
    pub fn args(&self) -> &[String] {
        &self.inner.args
    }

    /// The configuration in use.
    pub fn config(&self) -> &EalConfig {
        &self.inner.config
    }

    /// The EAL's runtime directory (`/var/run/dpdk/<prefix>` for root, else under `$XDG_RUNTIME_DIR` or `/tmp`).
    pub fn runtime_dir(&self) -> PathBuf {
        runtime_dir(&self.inner.config.prefix())
    }

    /// Ends the EAL (`rte_eal_cleanup`) and removes its runtime directory. Refused while a pool, a port or
    /// another `Eal` handle is alive, or a pool was dropped with buffers still out. DPDK cannot be used in this
    /// process afterwards.
    pub fn cleanup(self) -> Result<(), DpdkError> {
        let mut st = EAL.lock().unwrap_or_else(PoisonError::into_inner);
        // The state holds one reference and `self` another.
        let users = Arc::strong_count(&self.inner).saturating_sub(2);
        if users > 0 {
            return Err(DpdkError::Busy(format!(
                "{users} pool(s), port(s) or handles still use the EAL; drop them first"
            )));
        }
        let leaked = LEAKED_POOLS.load(Ordering::Relaxed);
        if leaked > 0 {
            return Err(DpdkError::Busy(format!(
                "{leaked} mempool(s) were dropped with buffers still out; their packets would outlive the EAL"
            )));
        }
        let _ = LCORE.try_with(LcoreRegistration::release);
        let _c = ctrl();
        // SAFETY: nothing of DPDK is in use (checked above) and the state lock keeps anyone from starting.
        let ret = unsafe { sys::rte_eal_cleanup() };
        let dir = self.runtime_dir();
        let _ = std::fs::remove_dir_all(&dir);
        *st = EalState::Gone("the EAL was cleaned up".into());
        if ret < 0 {
            return Err(DpdkError::Busy(format!(
                "rte_eal_cleanup: {}",
                strerror(ret)
            )));
        }
        Ok(())
    }
}

/// Where DPDK 22.11 puts the runtime files of the EAL with file prefix `prefix` (`eal_create_runtime_dir`):
/// `/var/run/dpdk/<prefix>` for root, else under `$XDG_RUNTIME_DIR` or `/tmp`. For cleaning up after another
/// DPDK process (a `dpdk-testpmd` peer).
pub fn runtime_dir(prefix: &str) -> PathBuf {
    // SAFETY: getuid has no preconditions.
    let base = if unsafe { libc::getuid() } == 0 {
        PathBuf::from("/var/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
    };
    base.join("dpdk").join(prefix)
}

// ---- worker threads as DPDK lcores ---------------------------------------------------------------------------

/// A thread registered with `rte_thread_register` (so mempool operations use a per-lcore cache), unregistered
/// when the thread ends.
struct LcoreRegistration {
    registered: std::cell::Cell<bool>,
}

impl LcoreRegistration {
    fn new() -> LcoreRegistration {
        // SAFETY: reads this thread's lcore id (a thread-local).
        if unsafe { sys::wharf_rte_lcore_id() } != sys::LCORE_ID_ANY {
            // An EAL thread already.
            return LcoreRegistration {
                registered: std::cell::Cell::new(false),
            };
        }
        // SAFETY: only called on a queue's first burst, or by cleanup, so the EAL is initialised; registering a
        // non-EAL thread has no other precondition.
        let registered = unsafe { sys::rte_thread_register() } == 0;
        if registered {
            // SAFETY: as above.
            let lcore = unsafe { sys::wharf_rte_lcore_id() };
            tracing::debug!(lcore, "thread registered with DPDK");
        } else {
            tracing::warn!(
                "cannot register this thread with DPDK ({}): its mempool operations skip the per-lcore cache",
                strerror(rte_errno())
            );
        }
        LcoreRegistration {
            registered: std::cell::Cell::new(registered),
        }
    }

    fn release(&self) {
        if self.registered.replace(false) {
            // SAFETY: this thread was registered by `new`.
            unsafe { sys::rte_thread_unregister() };
        }
    }
}

impl Drop for LcoreRegistration {
    fn drop(&mut self) {
        self.release();
    }
}

thread_local! {
    static LCORE: LcoreRegistration = LcoreRegistration::new();
}

#[inline]
fn ensure_lcore() {
    let _ = LCORE.try_with(|_| ());
}

// ---- mempools --------------------------------------------------------------------------------------------------

/// Most mempools a process makes (mbufs from others are copied at rx).
const MAX_POOLS: usize = 64;

/// The mempools this module made, so rx knows an mbuf has wharf's layout.
static POOLS: [AtomicPtr<sys::rte_mempool>; MAX_POOLS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_POOLS];

#[inline]
fn is_ours(mp: *mut sys::rte_mempool) -> bool {
    !mp.is_null() && POOLS.iter().any(|p| p.load(Ordering::Relaxed) == mp)
}

/// How a [`DpdkPool`] is sized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkPoolConfig {
    /// Number of mbufs. Size it for every queue's descriptors plus what is in flight in the pipeline.
    pub buffers: u32,
    /// Data room after the headroom, in bytes (the largest frame received whole).
    pub data_room: usize,
    /// Per-lcore cache (clamped to DPDK's limits: 512, and two thirds of `buffers`).
    pub cache_size: u32,
}

impl Default for DpdkPoolConfig {
    fn default() -> Self {
        DpdkPoolConfig {
            buffers: 16 * 1024,
            data_room: DEFAULT_DATA_ROOM,
            cache_size: 256,
        }
    }
}

/// An `rte_mempool` of mbufs in wharf's buffer layout. Cloning shares it.
#[derive(Clone)]
pub struct DpdkPool {
    inner: Arc<PoolShared>,
}

struct PoolShared {
    mp: NonNull<sys::rte_mempool>,
    name: String,
    buffers: u32,
    data_room: usize,
    slot: usize,
    _eal: Eal,
}

// SAFETY: a mempool is made for concurrent use (ring_mp_mc operations, per-lcore caches); the pointer is only
// freed when the last handle goes.
unsafe impl Send for PoolShared {}
unsafe impl Sync for PoolShared {}

impl std::fmt::Debug for DpdkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkPool")
            .field("name", &self.inner.name)
            .field("buffers", &self.inner.buffers)
            .field("available", &self.available())
            .finish()
    }
}

/// Writes the constant part of wharf's metadata into a new mbuf's private area (a mempool object callback).
unsafe extern "C" fn init_meta(
    _mp: *mut sys::rte_mempool,
    opaque: *mut c_void,
    obj: *mut c_void,
    idx: c_uint,
) {
    let m = obj.cast::<u8>();
    // SAFETY: `obj` is an mbuf of a mempool made with priv_size = META_SIZE, initialised by rte_pktmbuf_init:
    // its header fields are set and the META_SIZE bytes after the header are its private area.
    unsafe {
        let buf_len: u16 = rd(m, OFF_BUF_LEN);
        let buf_addr: *mut u8 = rd(m, OFF_BUF_ADDR);
        if buf_addr != m.add(MBUF_ROOM + META_SIZE) {
            // Not the layout we asked for: say so through the flag the creator passed.
            (*opaque.cast::<std::sync::atomic::AtomicBool>()).store(true, Ordering::Relaxed);
        }
        m.add(MBUF_ROOM)
            .cast::<Meta>()
            .write(Meta::new(ptr::null(), idx, u32::from(buf_len)));
    }
}

/// Frees the memory under a mempool made by [`pool_on_own_memory`] (a mempool chunk callback).
unsafe extern "C" fn unmap_chunk(memhdr: *mut sys::rte_mempool_memhdr, opaque: *mut c_void) {
    // SAFETY: DPDK passes the chunk populated by pool_on_own_memory, whose opaque is the mapping's length.
    unsafe {
        libc::munmap((*memhdr).addr, opaque as usize);
    }
}

/// A pktmbuf mempool (the layout `rte_pktmbuf_pool_create` makes) over an anonymous mapping of this process with
/// transparent hugepages advised, for EALs without hugepages. The objects have no IOVA: virtual devices only.
/// Null (with `rte_errno` set) on failure.
///
/// # Safety
/// The EAL runs; `n`, `cache` and `room` are in DPDK's ranges.
unsafe fn pool_on_own_memory(
    name: &CStr,
    n: u32,
    cache: u32,
    room: usize,
) -> *mut sys::rte_mempool {
    // SAFETY (whole function): the calls follow DPDK's recipe for a mempool over external memory
    // (create_empty, set_ops, pktmbuf_pool_init, populate, obj_iter(rte_pktmbuf_init)); the mapping is ours
    // and handed to the mempool, which unmaps it through unmap_chunk when freed.
    unsafe {
        let elt = (MBUF_ROOM + META_SIZE + room) as u32;
        let mp = sys::rte_mempool_create_empty(
            name.as_ptr(),
            n,
            elt,
            cache,
            std::mem::size_of::<sys::rte_pktmbuf_pool_private>() as u32,
            sys::SOCKET_ID_ANY,
            sys::RTE_MEMPOOL_F_NO_IOVA_CONTIG,
        );
        if mp.is_null() {
            return mp;
        }
        let fail = |mp: *mut sys::rte_mempool, errno: c_int| {
            sys::rte_mempool_free(mp);
            *libc::__errno_location() = errno;
            ptr::null_mut()
        };
        if sys::rte_mempool_set_ops_byname(mp, sys::rte_mbuf_best_mempool_ops(), ptr::null_mut())
            != 0
        {
            return fail(mp, libc::ENOENT);
        }
        let mut private = sys::rte_pktmbuf_pool_private {
            mbuf_data_room_size: room as u16,
            mbuf_priv_size: META_SIZE as u16,
            flags: 0,
        };
        sys::rte_pktmbuf_pool_init(
            mp,
            (&mut private as *mut sys::rte_pktmbuf_pool_private).cast(),
        );
        let mut sz: sys::rte_mempool_objsz = std::mem::zeroed();
        let total = sys::rte_mempool_calc_obj_size(elt, sys::RTE_MEMPOOL_F_NO_IOVA_CONTIG, &mut sz)
            as usize;
        const HUGE: usize = 2 << 20;
        let len = (total * n as usize + HUGE).next_multiple_of(HUGE);
        let addr = libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if addr == libc::MAP_FAILED {
            return fail(mp, libc::ENOMEM);
        }
        libc::madvise(addr, len, libc::MADV_HUGEPAGE);
        let r = sys::rte_mempool_populate_virt(
            mp,
            addr.cast(),
            len,
            4096,
            Some(unmap_chunk),
            len as *mut c_void,
        );
        if r < 0 || (*mp).populated_size != n {
            if r < 0 {
                libc::munmap(addr, len);
            }
            return fail(mp, if r < 0 { -r } else { libc::ENOMEM });
        }
        sys::rte_mempool_obj_iter(mp, Some(sys::rte_pktmbuf_init), ptr::null_mut());
        mp
    }
}

/// `Pkt`'s drop for a DPDK buffer.
unsafe fn ext_free(elt: NonNull<u8>) {
    // SAFETY: the caller owns `elt`, an mbuf of one of our mempools, and gives it up.
    unsafe { sys::wharf_rte_pktmbuf_free(elt.as_ptr().cast()) }
}

/// `Pkt::try_clone`'s allocation for a DPDK buffer: a fresh mbuf of the same mempool.
unsafe fn ext_alloc_like(elt: NonNull<u8>) -> Option<NonNull<u8>> {
    // SAFETY: `elt` is a live mbuf (the caller holds it); its pool pointer names its mempool, which outlives it.
    unsafe {
        let mp: *mut sys::rte_mempool = rd(elt.as_ptr(), OFF_POOL);
        NonNull::new(sys::wharf_rte_pktmbuf_alloc(mp).cast())
    }
}

impl DpdkPool {
    /// Makes a mempool of `cfg.buffers` mbufs with wharf's layout (`priv_size` = [`META_SIZE`], data room =
    /// [`HEADROOM`] + `cfg.data_room`) and writes every mbuf's metadata.
    pub fn new(eal: &Eal, cfg: &DpdkPoolConfig) -> Result<DpdkPool, DpdkError> {
        if cfg.buffers < 64 || cfg.buffers > 16 << 20 {
            return Err(DpdkError::BadConfig(format!(
                "a DPDK pool needs 64 to 16M buffers (asked for {})",
                cfg.buffers
            )));
        }
        let room = HEADROOM + cfg.data_room;
        if cfg.data_room < 64 || room > u16::MAX as usize {
            return Err(DpdkError::BadConfig(format!(
                "data room {} is out of range (64..={} bytes: an mbuf's buffer length is 16 bits)",
                cfg.data_room,
                u16::MAX as usize - HEADROOM
            )));
        }
        let cache = cfg
            .cache_size
            .min(layout_const_cache_max())
            .min(cfg.buffers * 2 / 3);
        pool::register_external(pool::ExternalPool {
            free: ext_free,
            alloc_like: ext_alloc_like,
        });
        let mut c = ctrl();
        let slot = POOLS
            .iter()
            .position(|p| p.load(Ordering::Relaxed).is_null())
            .ok_or_else(|| DpdkError::Mempool {
                name: "-".into(),
                reason: format!("more than {MAX_POOLS} DPDK pools in one process"),
            })?;
        c.next_name += 1;
        let name = format!("wharf_{}_{}", std::process::id() % 100_000, c.next_name);
        let cname = CString::new(name.clone()).expect("no NUL in a generated name");
        // Without hugepages the EAL's memory is 4 KiB pages (a shared memfd, which transparent hugepages do not
        // back), and a TLB miss per packet doubles the cost of a packet: when no PCI device needs DMA into the
        // pool, it lives on wharf's own memory with transparent hugepages advised instead.
        let own_memory = eal.config().no_huge && eal.config().pci.is_empty();
        let mp = if own_memory {
            // SAFETY: as below.
            unsafe { pool_on_own_memory(&cname, cfg.buffers, cache, room) }
        } else {
            // SAFETY: the EAL runs (we hold an Eal); the arguments are in DPDK's ranges (checked above).
            unsafe {
                sys::rte_pktmbuf_pool_create(
                    cname.as_ptr(),
                    cfg.buffers,
                    cache,
                    META_SIZE as u16,
                    room as u16,
                    sys::SOCKET_ID_ANY,
                )
            }
        };
        let Some(mp) = NonNull::new(mp) else {
            let errno = rte_errno();
            let hint = match errno {
                libc::ENOMEM => {
                    let need = (u64::from(cfg.buffers) * (MBUF_ROOM + META_SIZE + room + 64) as u64) >> 20;
                    format!(
                        "not enough EAL memory for {} buffers (~{need} MiB): raise the EAL memory (-m), reserve \
                         more hugepages, or lower buffers",
                        cfg.buffers
                    )
                }
                libc::ENOENT => "no mempool driver: the mempool_ring plugin is missing (Debian: librte-mempool-ring23)"
                    .into(),
                _ => "see the EAL messages above".into(),
            };
            return Err(DpdkError::Mempool {
                name,
                reason: format!(
                    "rte_pktmbuf_pool_create failed: {}: {hint}",
                    strerror(errno)
                ),
            });
        };
        let bad_layout = std::sync::atomic::AtomicBool::new(false);
        // SAFETY: `mp` is the mempool just made, with every object an initialised mbuf; init_meta only writes
        // the private area of each, and `bad_layout` outlives the call.
        unsafe {
            sys::rte_mempool_obj_iter(
                mp.as_ptr(),
                Some(init_meta),
                (&bad_layout as *const std::sync::atomic::AtomicBool)
                    .cast_mut()
                    .cast(),
            );
        }
        // SAFETY: `mp` is a live pktmbuf pool.
        let (priv_size, data_room) = unsafe {
            (
                sys::wharf_rte_pktmbuf_priv_size(mp.as_ptr()),
                sys::wharf_rte_pktmbuf_data_room_size(mp.as_ptr()),
            )
        };
        if bad_layout.load(Ordering::Relaxed)
            || priv_size as usize != META_SIZE
            || data_room as usize != room
        {
            // SAFETY: nothing was handed out from the new pool.
            unsafe { sys::rte_mempool_free(mp.as_ptr()) };
            return Err(DpdkError::Mempool {
                name,
                reason: format!(
                    "this DPDK lays mbufs out differently from wharf's buffers (priv_size {priv_size}, data room \
                     {data_room}, expected {META_SIZE} and {room} with buf_addr right after them)"
                ),
            });
        }
        POOLS[slot].store(mp.as_ptr(), Ordering::Relaxed);
        drop(c);
        Ok(DpdkPool {
            inner: Arc::new(PoolShared {
                mp,
                name,
                buffers: cfg.buffers,
                data_room: cfg.data_room,
                slot,
                _eal: eal.clone(),
            }),
        })
    }

    /// Takes one buffer, reset to an empty frame with full headroom.
    #[inline]
    pub fn alloc(&self) -> Option<Pkt> {
        // SAFETY: the mempool is live while `self` is; a fresh mbuf is ours alone and its private area holds
        // wharf's metadata (init_meta).
        unsafe {
            let m =
                NonNull::new(sys::wharf_rte_pktmbuf_alloc(self.inner.mp.as_ptr()).cast::<u8>())?;
            Some(Pkt::from_elt(m).reset())
        }
    }

    /// Mempool name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Total number of buffers.
    pub fn capacity(&self) -> usize {
        self.inner.buffers as usize
    }

    /// Buffers free in the mempool, per-lcore caches included.
    pub fn available(&self) -> usize {
        // SAFETY: the mempool is live while `self` is.
        unsafe { sys::rte_mempool_avail_count(self.inner.mp.as_ptr()) as usize }
    }

    /// Data room per buffer after the headroom.
    pub fn data_room(&self) -> usize {
        self.inner.data_room
    }

    fn mp(&self) -> *mut sys::rte_mempool {
        self.inner.mp.as_ptr()
    }
}

fn layout_const_cache_max() -> u32 {
    sys::wharf_rte_version::WHARF_RTE_MEMPOOL_CACHE_MAX_SIZE
}

impl Drop for PoolShared {
    fn drop(&mut self) {
        let _c = ctrl();
        // SAFETY: the mempool is live until freed here.
        let full = unsafe { sys::wharf_rte_mempool_full(self.mp.as_ptr()) } != 0;
        if full {
            POOLS[self.slot].store(ptr::null_mut(), Ordering::Relaxed);
            // SAFETY: every mbuf is home and no port uses the pool (ports hold a handle).
            unsafe { sys::rte_mempool_free(self.mp.as_ptr()) };
        } else {
            // A packet still points into the pool: keep it (and keep it registered so its mbufs stay known).
            LEAKED_POOLS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: as above.
            let avail = unsafe { sys::rte_mempool_avail_count(self.mp.as_ptr()) };
            tracing::warn!(
                pool = %self.name,
                outstanding = self.buffers as usize - avail as usize,
                "DPDK pool dropped with buffers outstanding; leaking it"
            );
        }
    }
}

// ---- ports -----------------------------------------------------------------------------------------------------

/// How a [`DpdkPort`] is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkPortConfig {
    /// The device: a vdev with its arguments (`net_memif0,role=client,socket=/run/wharf/m0.sock`,
    /// `net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`), a PCI address (`0000:03:00.0`, also listed in
    /// [`EalConfig::pci`]), or the name of a device the EAL probed at init. Attached when the port opens and
    /// detached when it closes, unless it existed before.
    pub device: String,
    /// Number of rx and tx queues: one per worker.
    pub queues: u16,
    /// Receive descriptors per queue (adjusted to the device's limits).
    pub rx_desc: u16,
    /// Transmit descriptors per queue (adjusted to the device's limits).
    pub tx_desc: u16,
    /// MTU to set (`None`: the device's default).
    pub mtu: Option<u16>,
    /// Receive every frame, whatever its destination MAC.
    pub promiscuous: bool,
    /// With several queues, spread flows by RSS (a symmetric key, so both directions of a flow meet on one
    /// queue) when the device hashes; otherwise each queue gets what the peer sends on it.
    pub rss: bool,
}

impl Default for DpdkPortConfig {
    fn default() -> Self {
        DpdkPortConfig {
            device: String::new(),
            queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            promiscuous: true,
            rss: true,
        }
    }
}

/// DPDK's own counters for a port (`rte_eth_stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DpdkStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames the device dropped because its rx queue was full.
    pub imissed: u64,
    /// Erroneous received frames.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive buffer allocation failures.
    pub rx_nombuf: u64,
}

/// Link state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Carrier.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
}

/// A DPDK ethdev as a wharf [`Port`]. See the module docs.
pub struct DpdkPort {
    shared: Arc<PortShared>,
    claims: QueueClaims,
    counters: Vec<Arc<QueueCounters>>,
}

struct PortShared {
    name: String,
    port_id: u16,
    queues: u16,
    mac: [u8; 6],
    mtu: u16,
    /// How the device spreads received frames over the queues, as it reported it at start.
    steering: Steering,
    /// The device to detach at close (we attached it).
    owned_device: Option<NonNull<sys::rte_device>>,
    pool: DpdkPool,
}

// SAFETY: the device pointers are only used under the control lock at close; ethdev calls on distinct queues
// may run on distinct threads (DPDK's threading model), and each queue is claimed by one thread.
unsafe impl Send for PortShared {}
unsafe impl Sync for PortShared {}

impl Drop for PortShared {
    fn drop(&mut self) {
        let mut c = ctrl();
        // SAFETY: the port was started by us and no queue is in use (queues hold this Arc); stop frees the mbufs
        // in the device's rings, close releases the queues.
        unsafe {
            let r = sys::rte_eth_dev_stop(self.port_id);
            if r < 0 {
                tracing::warn!(port = %self.name, "rte_eth_dev_stop: {}", strerror(r));
            }
            let r = sys::rte_eth_dev_close(self.port_id);
            if r < 0 {
                tracing::warn!(port = %self.name, "rte_eth_dev_close: {}", strerror(r));
            }
            if let Some(dev) = self.owned_device {
                let r = sys::rte_dev_remove(dev.as_ptr());
                if r < 0 {
                    tracing::warn!(port = %self.name, "rte_dev_remove: {}", strerror(r));
                }
            }
        }
        c.open_ports.retain(|p| *p != self.port_id);
        drop(c);
        // Rings of a ring pair go once both its ports are closed.
        reap_rings();
    }
}

/// How a started device with RSS spreads frames over its `queues` queues, read back from it: the key and
/// the hashed fields (`rte_eth_dev_rss_hash_conf_get`) and the redirection table (`rte_eth_dev_rss_reta_query`).
/// [`Steering::Unknown`] when the device does not tell, or tells something wharf does not model (no IPv4
/// hashing, a table naming a queue that does not exist). DPDK 22.11 has no way to ask for the hash function:
/// Toeplitz, every PMD's default, is assumed.
///
/// # Safety
/// The EAL runs, the port is started, and the control lock is held.
unsafe fn read_steering(port_id: u16, queues: u16, info: &sys::rte_eth_dev_info) -> Steering {
    let (key_len, reta_size) = (info.hash_key_size as usize, info.reta_size as usize);
    if key_len < 16 || reta_size == 0 {
        return Steering::Unknown;
    }
    let mut key = vec![0u8; key_len];
    // SAFETY: a zeroed bindgen struct is valid; the key buffer holds `key_len` bytes.
    let mut conf: sys::rte_eth_rss_conf = unsafe { std::mem::zeroed() };
    conf.rss_key = key.as_mut_ptr();
    conf.rss_key_len = key_len as u8;
    // SAFETY: see the function's contract.
    if unsafe { sys::rte_eth_dev_rss_hash_conf_get(port_id, &mut conf) } < 0 {
        return Steering::Unknown;
    }
    let hf = conf.rss_hf;
    if hf & (sys::wharf_rss::WHARF_RSS_IPV4 as u64) == 0 {
        return Steering::Unknown;
    }
    let group = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
    // SAFETY: a zeroed bindgen struct is valid.
    let mut groups: Vec<sys::rte_eth_rss_reta_entry64> = (0..reta_size.div_ceil(group))
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (i, g) in groups.iter_mut().enumerate() {
        let n = (reta_size - i * group).min(group);
        g.mask = if n == 64 { !0 } else { (1u64 << n) - 1 };
    }
    // SAFETY: `groups` covers `reta_size` entries.
    if unsafe { sys::rte_eth_dev_rss_reta_query(port_id, groups.as_mut_ptr(), reta_size as u16) }
        < 0
    {
        return Steering::Unknown;
    }
    let reta: Vec<u16> = groups.iter().flat_map(|g| g.reta).take(reta_size).collect();
    if reta.iter().any(|&q| q >= queues) {
        return Steering::Unknown;
    }
    Steering::Toeplitz {
        key: key[..(conf.rss_key_len as usize).min(key_len)].into(),
        reta: reta.into(),
        tcp: hf & (sys::wharf_rss::WHARF_RSS_NONFRAG_IPV4_TCP as u64) != 0,
        udp: hf & (sys::wharf_rss::WHARF_RSS_NONFRAG_IPV4_UDP as u64) != 0,
    }
}

/// A symmetric Toeplitz key (0x6d5a repeated): a flow and its reverse hash alike, so both directions of a
/// connection meet on one queue.
fn symmetric_rss_key(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
        .collect()
}

fn eth_name(port_id: u16) -> String {
    let mut buf = [0 as c_char; 64];
    // SAFETY: the buffer is RTE_ETH_NAME_MAX_LEN (64) bytes, as the function requires.
    if unsafe { sys::rte_eth_dev_get_name_by_port(port_id, buf.as_mut_ptr()) } != 0 {
        return format!("port{port_id}");
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn existing_ports() -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: iterating the ethdev table with DPDK's own iterator.
    let mut p = unsafe { sys::rte_eth_find_next(0) };
    while (p as u32) < sys::RTE_MAX_ETHPORTS {
        out.push(eth_name(p));
        // SAFETY: as above.
        p = unsafe { sys::rte_eth_find_next(p + 1) };
    }
    out
}

fn port_by_name(name: &str) -> Option<u16> {
    let c = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: `c` is a NUL-terminated name, `id` a valid out pointer.
    (unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) } == 0).then_some(id)
}

impl DpdkPort {
    /// Attaches `cfg.device` (unless it exists), configures `cfg.queues` rx/tx queues over `pool`, and starts
    /// it. Errors name the cause and the fix.
    pub fn open(name: &str, cfg: &DpdkPortConfig, pool: &DpdkPool) -> Result<DpdkPort, PortError> {
        let other = |msg: String| PortError::Other {
            port: name.to_string(),
            msg,
        };
        if Eal::get().is_none() {
            return Err(other(DpdkError::NotInitialised.to_string()));
        }
        let dev_name = cfg
            .device
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if dev_name.is_empty() {
            return Err(other(
                "no DPDK device given: set device to a vdev (net_memif0,role=client,socket=PATH), a PCI address, \
                 or the name of a device the EAL probed"
                    .into(),
            ));
        }
        let mut c = ctrl();
        let (port_id, attached) = match port_by_name(&dev_name) {
            Some(id) => (id, false),
            None => {
                let devargs = CString::new(cfg.device.as_str())
                    .map_err(|_| other(format!("device {:?} contains a NUL byte", cfg.device)))?;
                // SAFETY: the EAL runs; `devargs` is NUL-terminated; the control lock is held.
                let r = unsafe { sys::rte_dev_probe(devargs.as_ptr()) };
                if r < 0 {
                    return Err(other(format!(
                        "cannot attach DPDK device `{}`: {}: check the device arguments (e.g. \
                         net_memif0,role=client,socket=/run/wharf/m0.sock); a vdev's driver must be installed (Debian: \
                         librte-net-memif23, librte-net-pcap23, ...; they load from the EAL plugin directory); a PCI \
                         NIC must be bound to vfio-pci (dpdk-devbind.py -b vfio-pci ADDR) and listed in the EAL's pci \
                         allow list",
                        cfg.device,
                        strerror(r)
                    )));
                }
                match port_by_name(&dev_name) {
                    Some(id) => (id, true),
                    None => {
                        return Err(other(format!(
                            "DPDK device `{}` attached, but no ethdev is named `{dev_name}` (ports: {:?}); name the \
                             device as DPDK does (a PCI address in full form, 0000:03:00.0)",
                            cfg.device,
                            existing_ports()
                        )))
                    }
                }
            }
        };
        if c.open_ports.contains(&port_id) {
            return Err(other(format!(
                "DPDK device `{dev_name}` is already open as another port"
            )));
        }
        let res = configure_and_start(name, port_id, cfg, pool);
        let started = match res {
            Ok(v) => v,
            Err(e) => {
                if attached {
                    detach(port_id);
                }
                return Err(e);
            }
        };
        c.open_ports.push(port_id);
        drop(c);
        let owned_device = if attached {
            NonNull::new(started.device)
        } else {
            None
        };
        Ok(DpdkPort::assemble(
            name,
            port_id,
            cfg.queues,
            started,
            owned_device,
            pool,
        ))
    }

    /// Two `net_ring` ports cabled to each other: what `a` transmits on queue `q`, `b` receives on queue `q`, and
    /// the other way round. `depth` is each ring's size (rounded up to a power of two).
    pub fn ring_pair(
        a: &str,
        b: &str,
        queues: u16,
        depth: u32,
        pool: &DpdkPool,
    ) -> Result<(DpdkPort, DpdkPort), PortError> {
        let other = |msg: String| PortError::Other {
            port: a.to_string(),
            msg,
        };
        if Eal::get().is_none() {
            return Err(other(DpdkError::NotInitialised.to_string()));
        }
        if queues == 0 || queues > 16 {
            return Err(other(format!(
                "a ring pair has 1 to 16 queues (asked for {queues})"
            )));
        }
        let depth = depth.clamp(64, 1 << 20).next_power_of_two();
        let mut c = ctrl();
        c.next_name += 1;
        let tag = format!("{}_{}", std::process::id() % 100_000, c.next_name);
        let mut rings: Vec<NonNull<sys::rte_ring>> = Vec::new();
        let free_rings = |rings: &[NonNull<sys::rte_ring>]| {
            for r in rings {
                // SAFETY: made by rte_ring_create below and used by no port.
                unsafe { sys::rte_ring_free(r.as_ptr()) };
            }
        };
        // ab[q]: a transmits, b receives; ba[q]: the other way.
        for dir in ["ab", "ba"] {
            for q in 0..queues {
                let rname =
                    CString::new(format!("w{dir}{q}_{tag}")).expect("no NUL in a generated name");
                // SAFETY: the EAL runs; the name is NUL-terminated; flags: one producer and one consumer (each
                // side's queue is owned by one thread).
                let r = unsafe {
                    sys::rte_ring_create(
                        rname.as_ptr(),
                        depth,
                        sys::SOCKET_ID_ANY,
                        sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ,
                    )
                };
                match NonNull::new(r) {
                    Some(r) => rings.push(r),
                    None => {
                        free_rings(&rings);
                        return Err(other(format!(
                            "cannot make a ring of {depth} entries: {}: raise the EAL memory (-m)",
                            strerror(rte_errno())
                        )));
                    }
                }
            }
        }
        let q = queues as usize;
        let (ab, ba) = rings.split_at(q);
        let ab: Vec<*mut sys::rte_ring> = ab.iter().map(|r| r.as_ptr()).collect();
        let ba: Vec<*mut sys::rte_ring> = ba.iter().map(|r| r.as_ptr()).collect();
        let mut made: Vec<(u16, *mut sys::rte_device)> = Vec::new();
        let mut result = Vec::new();
        for (name, rx, tx) in [(a, &ba, &ab), (b, &ab, &ba)] {
            let ename = CString::new(format!("net_ring_{tag}_{}", made.len()))
                .expect("no NUL in a generated name");
            // SAFETY: the rings are live and outlive the port (freed after it closes); the arrays hold `queues`
            // ring pointers each.
            let id = unsafe {
                sys::rte_eth_from_rings(
                    ename.as_ptr(),
                    rx.as_ptr(),
                    queues as c_uint,
                    tx.as_ptr(),
                    queues as c_uint,
                    sys::SOCKET_ID_ANY as c_uint,
                )
            };
            if id < 0 {
                let err = other(format!(
                    "rte_eth_from_rings: {}: the net_ring driver (librte-net-ring23) must be installed",
                    strerror(rte_errno())
                ));
                for (p, _) in &made {
                    detach(*p);
                }
                free_rings(&rings);
                return Err(err);
            }
            let cfg = DpdkPortConfig {
                device: eth_name(id as u16),
                queues,
                ..Default::default()
            };
            match configure_and_start(name, id as u16, &cfg, pool) {
                Ok(started) => {
                    made.push((id as u16, started.device));
                    result.push((name, id as u16, started));
                }
                Err(e) => {
                    detach(id as u16);
                    for (p, _) in &made {
                        detach(*p);
                    }
                    free_rings(&rings);
                    return Err(e);
                }
            }
        }
        for (_, id, ..) in &result {
            c.open_ports.push(*id);
        }
        drop(c);
        let mut ports = result.into_iter().map(|(name, id, started)| {
            let dev = NonNull::new(started.device);
            (name, id, started, dev)
        });
        let (na, ia, sa, da) = ports.next().expect("two ports made");
        let (nb, ib, sb, db) = ports.next().expect("two ports made");
        // Both ports use every ring (one's rx is the other's tx): the rings are freed once both are closed.
        let pa = DpdkPort::assemble(na, ia, queues, sa, da, pool);
        let pb = DpdkPort::assemble(nb, ib, queues, sb, db, pool);
        RING_OWNERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RingOwner {
                ports: [Arc::downgrade(&pa.shared), Arc::downgrade(&pb.shared)],
                rings: rings.into_iter().map(SendRing).collect(),
            });
        Ok((pa, pb))
    }

    fn assemble(
        name: &str,
        port_id: u16,
        queues: u16,
        started: Started,
        owned_device: Option<NonNull<sys::rte_device>>,
        pool: &DpdkPool,
    ) -> DpdkPort {
        DpdkPort {
            shared: Arc::new(PortShared {
                name: name.to_string(),
                port_id,
                queues,
                mac: started.mac,
                mtu: started.mtu,
                steering: started.steering,
                owned_device,
                pool: pool.clone(),
            }),
            claims: QueueClaims::new(name, queues),
            counters: (0..queues).map(|_| Arc::default()).collect(),
        }
    }

    /// The DPDK port id.
    pub fn port_id(&self) -> u16 {
        self.shared.port_id
    }

    /// The pool the port receives into.
    pub fn pool(&self) -> &DpdkPool {
        &self.shared.pool
    }

    /// Link state, without waiting.
    pub fn link(&self) -> Link {
        // SAFETY: an all-zero rte_eth_link is valid; the port is live.
        let mut l: sys::rte_eth_link = unsafe { std::mem::zeroed() };
        let r = unsafe { sys::rte_eth_link_get_nowait(self.shared.port_id, &mut l) };
        if r < 0 {
            return Link::default();
        }
        Link {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
        }
    }

    /// Waits up to `timeout` for the link to come up (a memif client once its server accepts it). True if up.
    pub fn wait_link(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.link().up {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// DPDK's counters for the port.
    pub fn stats(&self) -> DpdkStats {
        // SAFETY: an all-zero rte_eth_stats is valid; the port is live; reading stats concurrently with the
        // queues' rx/tx is allowed.
        let mut s: sys::rte_eth_stats = unsafe { std::mem::zeroed() };
        if unsafe { sys::rte_eth_stats_get(self.shared.port_id, &mut s) } < 0 {
            return DpdkStats::default();
        }
        DpdkStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

/// Rings under a ring pair, freed once both ports are closed.
struct RingOwner {
    ports: [std::sync::Weak<PortShared>; 2],
    rings: Vec<SendRing>,
}

struct SendRing(NonNull<sys::rte_ring>);
// SAFETY: a ring pointer is only freed, under the control lock, once no port uses it.
unsafe impl Send for SendRing {}

static RING_OWNERS: Mutex<Vec<RingOwner>> = Mutex::new(Vec::new());

/// Frees the rings of ring pairs whose ports are both closed. Called after a port closes.
fn reap_rings() {
    let mut owners = RING_OWNERS.lock().unwrap_or_else(PoisonError::into_inner);
    owners.retain(|o| {
        if o.ports.iter().any(|p| p.strong_count() > 0) {
            return true;
        }
        for r in &o.rings {
            // SAFETY: both ports using the ring are closed, so nothing else touches it; what is still in it are
            // mbufs sent and never received, which go home before the ring goes.
            unsafe {
                let mut objs = [ptr::null_mut::<c_void>(); 64];
                loop {
                    let n = sys::wharf_rte_ring_dequeue_burst(
                        r.0.as_ptr(),
                        objs.as_mut_ptr(),
                        objs.len() as c_uint,
                    );
                    if n == 0 {
                        break;
                    }
                    sys::rte_pktmbuf_free_bulk(objs.as_mut_ptr().cast(), n);
                }
                sys::rte_ring_free(r.0.as_ptr());
            }
        }
        false
    });
}

/// Closes and detaches a port we attached but could not bring up.
fn detach(port_id: u16) {
    // SAFETY: an all-zero dev_info is valid for the call to fill; the port exists (we just attached it).
    unsafe {
        let mut info: sys::rte_eth_dev_info = std::mem::zeroed();
        let dev = if sys::rte_eth_dev_info_get(port_id, &mut info) == 0 {
            info.device
        } else {
            ptr::null_mut()
        };
        sys::rte_eth_dev_stop(port_id);
        sys::rte_eth_dev_close(port_id);
        if !dev.is_null() {
            sys::rte_dev_remove(dev);
        }
    }
}

/// What a started device told about itself.
struct Started {
    mac: [u8; 6],
    mtu: u16,
    device: *mut sys::rte_device,
    steering: Steering,
}

/// Configures queues, MTU and promiscuity, starts the port, and reads back what it became.
fn configure_and_start(
    name: &str,
    port_id: u16,
    cfg: &DpdkPortConfig,
    pool: &DpdkPool,
) -> Result<Started, PortError> {
    let other = |msg: String| PortError::Other {
        port: name.to_string(),
        msg,
    };
    // SAFETY (whole function): the EAL runs, the port exists, and the control lock is held by the caller; every
    // struct passed is a zero-initialised (valid) bindgen struct or filled as DPDK documents.
    unsafe {
        let mut info: sys::rte_eth_dev_info = std::mem::zeroed();
        let r = sys::rte_eth_dev_info_get(port_id, &mut info);
        if r < 0 {
            return Err(other(format!("rte_eth_dev_info_get: {}", strerror(r))));
        }
        let driver = if info.driver_name.is_null() {
            "?".to_string()
        } else {
            CStr::from_ptr(info.driver_name)
                .to_string_lossy()
                .into_owned()
        };
        if cfg.queues == 0 {
            return Err(other(
                "a DPDK port needs at least one queue (one per worker)".into(),
            ));
        }
        if cfg.queues > info.max_rx_queues || cfg.queues > info.max_tx_queues {
            return Err(other(format!(
                "device {} ({driver}) has at most {} rx and {} tx queues, and {} were asked for (one per worker): \
                 run fewer workers, or give the device more queues (e.g. memif's rsize/qpairs, a NIC's VFs)",
                cfg.device, info.max_rx_queues, info.max_tx_queues, cfg.queues
            )));
        }
        let mut conf: sys::rte_eth_conf = std::mem::zeroed();
        let mut key = Vec::new();
        if cfg.queues > 1 && cfg.rss {
            let want = (sys::wharf_rss::WHARF_RSS_IP
                | sys::wharf_rss::WHARF_RSS_UDP
                | sys::wharf_rss::WHARF_RSS_TCP) as u64;
            let hf = want & info.flow_type_rss_offloads;
            if hf == 0 {
                tracing::warn!(
                    port = name,
                    driver = %driver,
                    "device does not hash (RSS): each queue receives what the peer sends on it"
                );
            } else {
                conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
                if info.hash_key_size > 0 {
                    key = symmetric_rss_key(info.hash_key_size as usize);
                    conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                    conf.rx_adv_conf.rss_conf.rss_key_len = info.hash_key_size;
                }
            }
        }
        if let Some(mtu) = cfg.mtu {
            if (mtu as usize) + ETH_HLEN + VLAN_HLEN > pool.data_room() {
                return Err(other(format!(
                    "MTU {mtu} does not fit the pool's data room of {} bytes: raise the data room to at least {} \
                     or lower the MTU",
                    pool.data_room(),
                    mtu as usize + ETH_HLEN + VLAN_HLEN
                )));
            }
            conf.rxmode.mtu = u32::from(mtu);
        }
        let r = sys::rte_eth_dev_configure(port_id, cfg.queues, cfg.queues, &conf);
        drop(key);
        if r < 0 {
            return Err(other(format!(
                "rte_eth_dev_configure ({} queues) on {} ({driver}): {}: the driver's message above says which \
                 setting it refused",
                cfg.queues,
                cfg.device,
                strerror(r)
            )));
        }
        let (mut rxd, mut txd) = (cfg.rx_desc.max(1), cfg.tx_desc.max(1));
        let r = sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut rxd, &mut txd);
        if r < 0 {
            return Err(other(format!(
                "rte_eth_dev_adjust_nb_rx_tx_desc: {}",
                strerror(r)
            )));
        }
        let socket = sys::rte_eth_dev_socket_id(port_id);
        let socket = if socket < 0 {
            sys::SOCKET_ID_ANY
        } else {
            socket
        } as c_uint;
        for q in 0..cfg.queues {
            let r = sys::rte_eth_rx_queue_setup(port_id, q, rxd, socket, ptr::null(), pool.mp());
            if r < 0 {
                return Err(other(format!(
                    "rx queue {q} setup ({rxd} descriptors): {}: {}",
                    strerror(r),
                    if -r == libc::ENOMEM {
                        "the pool or the EAL memory is too small for the descriptors: raise buffers or -m"
                    } else {
                        "see the driver's message above"
                    }
                )));
            }
            let r = sys::rte_eth_tx_queue_setup(port_id, q, txd, socket, ptr::null());
            if r < 0 {
                return Err(other(format!(
                    "tx queue {q} setup ({txd} descriptors): {}: see the driver's message above",
                    strerror(r)
                )));
            }
        }
        if (cfg.queues as u64) * (rxd as u64) >= pool.capacity() as u64 {
            tracing::warn!(
                port = name,
                buffers = pool.capacity(),
                descriptors = cfg.queues as u64 * rxd as u64,
                "the DPDK pool barely covers the rx descriptors: raise its buffers or the port will starve"
            );
        }
        if cfg.promiscuous {
            let r = sys::rte_eth_promiscuous_enable(port_id);
            if r < 0 && -r != libc::ENOTSUP {
                tracing::warn!(port = name, "promiscuous mode: {}", strerror(r));
            }
        }
        let r = sys::rte_eth_dev_start(port_id);
        if r < 0 {
            return Err(other(format!(
                "cannot start device {} ({driver}): {}: the driver's message above names the cause (for memif: \
                 the socket path must be reachable; for a NIC: the link partner and the IOMMU/vfio setup)",
                cfg.device,
                strerror(r)
            )));
        }
        let mut mac: sys::rte_ether_addr = std::mem::zeroed();
        let _ = sys::rte_eth_macaddr_get(port_id, &mut mac);
        let mut mtu = 1500u16;
        let _ = sys::rte_eth_dev_get_mtu(port_id, &mut mtu);
        if mtu as usize + ETH_HLEN + VLAN_HLEN > pool.data_room() {
            tracing::warn!(
                port = name,
                mtu,
                data_room = pool.data_room(),
                "frames of the device's MTU do not fit one buffer: they arrive chained and are dropped as too_big"
            );
        }
        let steering = if conf.rxmode.mq_mode == sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS {
            read_steering(port_id, cfg.queues, &info)
        } else {
            Steering::Unknown
        };
        tracing::debug!(port = name, ?steering, "receive steering");
        Ok(Started {
            mac: mac.addr_bytes,
            mtu,
            device: info.device,
            steering,
        })
    }
}

impl Port for DpdkPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.shared.name.clone(),
            backend: "dpdk",
            queues: self.shared.queues,
            mac: Some(self.shared.mac),
            mtu: u32::from(self.shared.mtu),
            link_up: self.link().up,
            steering: self.shared.steering.clone(),
        }
    }

    fn counters(&self) -> PortCounters {
        let mut c = PortCounters::sum(self.counters.iter().map(|c| &**c));
        let s = self.stats();
        c.rx_missed = s.imissed + s.rx_nombuf;
        c
    }

    fn open_queue(&self, queue: u16) -> Result<Box<dyn PortQueue>, PortError> {
        let claim = self.claims.claim(queue)?;
        Ok(Box::new(DpdkQueue {
            port_id: self.shared.port_id,
            queue,
            in_port: 0,
            mp: self.shared.pool.mp(),
            max_frame: self.shared.mtu as usize + ETH_HLEN,
            mbufs: [ptr::null_mut(); MAX_BURST],
            counters: self.counters[queue as usize].clone(),
            _shared: self.shared.clone(),
            _claim: claim,
        }))
    }
}

// ---- queues ----------------------------------------------------------------------------------------------------

struct DpdkQueue {
    port_id: u16,
    queue: u16,
    /// What received packets get as their input port ([`PortQueue::stamp_in_port`]; 0 until asked).
    in_port: u16,
    /// The rx mempool (mbufs from it need no registry lookup).
    mp: *mut sys::rte_mempool,
    /// Largest untagged frame the port sends (MTU plus Ethernet header).
    max_frame: usize,
    /// The mbufs of one rx or tx call.
    mbufs: [*mut sys::rte_mbuf; MAX_BURST],
    counters: Arc<QueueCounters>,
    /// Keeps the port open while the queue is.
    _shared: Arc<PortShared>,
    _claim: QueueClaim,
}

// SAFETY: the queue is owned by one thread at a time (its claim); the raw pointers name the port's mempool,
// which lives as long as `shared`, and a scratch array of mbufs that are only ours between two calls.
unsafe impl Send for DpdkQueue {}

impl DpdkQueue {
    /// Turns a received mbuf into a `Pkt` (with its length on the wire, known here without reading the
    /// packet's metadata back), or frees it and says why not.
    ///
    /// The common mbuf (one segment, a sane length, a direct mbuf of this queue's mempool, no offload flags)
    /// is adopted here; anything else goes to [`DpdkQueue::adopt_other`], out of line, so the receive loop
    /// keeps its registers for the common case.
    ///
    /// # Safety
    /// `m` is a valid mbuf the driver handed over (ours to own or free).
    /// `mp`, `in_port` and `queue` are this queue's, read once per burst by the caller: in registers, not
    /// read back from `self` after each packet's metadata writes (which the compiler cannot tell apart).
    #[inline(always)]
    unsafe fn adopt(
        &self,
        m: *mut sys::rte_mbuf,
        mp: *mut sys::rte_mempool,
        in_port: u16,
        queue: u16,
    ) -> Result<(Pkt, u16), DropReason> {
        let b = m.cast::<u8>();
        // SAFETY: `m` is a valid mbuf; the offsets are its header fields, and a direct mbuf of our mempool is
        // laid out as a wharf buffer with `data_off + data_len` inside it.
        unsafe {
            let data_off: u16 = rd(b, OFF_DATA_OFF);
            let data_len: u16 = rd(b, OFF_DATA_LEN);
            if rd::<u16>(b, OFF_NB_SEGS) == 1
                && data_off as usize + data_len as usize <= rd::<u16>(b, OFF_BUF_LEN) as usize
                && data_len as usize >= ETH_HLEN
                && rd::<*mut u8>(b, OFF_BUF_ADDR) == b.add(MBUF_ROOM + META_SIZE)
                && rd::<*mut sys::rte_mempool>(b, OFF_POOL) == mp
                && rd::<u64>(b, OFF_OL_FLAGS) & RX_OFFLOAD_FLAGS == 0
            {
                let pkt = Pkt::from_elt(NonNull::new_unchecked(b))
                    .reset_rx(data_off, data_len, in_port, queue);
                return Ok((pkt, data_len));
            }
            self.adopt_other(m)
        }
    }

    /// [`DpdkQueue::adopt`] for every other mbuf: checked field by field for the drop reason, copied when it is
    /// not laid out as ours, and its offload flags read.
    ///
    /// # Safety
    /// As for [`DpdkQueue::adopt`].
    #[cold]
    #[inline(never)]
    unsafe fn adopt_other(&self, m: *mut sys::rte_mbuf) -> Result<(Pkt, u16), DropReason> {
        let b = m.cast::<u8>();
        // SAFETY: `m` is a valid mbuf; the offsets are its header fields.
        unsafe {
            let nb_segs: u16 = rd(b, OFF_NB_SEGS);
            let data_off: u16 = rd(b, OFF_DATA_OFF);
            let data_len: u16 = rd(b, OFF_DATA_LEN);
            let buf_len: u16 = rd(b, OFF_BUF_LEN);
            if nb_segs != 1 {
                sys::wharf_rte_pktmbuf_free(m);
                return Err(DropReason::TooBig);
            }
            if data_off as usize + data_len as usize > buf_len as usize {
                sys::wharf_rte_pktmbuf_free(m);
                return Err(DropReason::Malformed);
            }
            if (data_len as usize) < ETH_HLEN {
                sys::wharf_rte_pktmbuf_free(m);
                return Err(DropReason::Truncated);
            }
            let mp: *mut sys::rte_mempool = rd(b, OFF_POOL);
            let ol: u64 = rd(b, OFF_OL_FLAGS);
            // Ours: from one of our mempools, and a direct mbuf (its data in its own buffer, not attached to
            // another's), so the element is laid out as a wharf buffer.
            let buf_addr: *mut u8 = rd(b, OFF_BUF_ADDR);
            let direct = buf_addr == b.add(MBUF_ROOM + META_SIZE);
            let mut pkt = if direct && (mp == self.mp || is_ours(mp)) {
                Pkt::from_elt(NonNull::new_unchecked(b)).reset_rx(
                    data_off,
                    data_len,
                    self.in_port,
                    self.queue,
                )
            } else {
                let mut p = self.copy_in(m, data_off, data_len)?;
                let meta = p.meta_mut();
                (meta.in_port, meta.in_queue) = (self.in_port, self.queue);
                p
            };
            // What a NIC's receive offloads reported (a virtual device such as memif or ring reports none).
            if ol & RX_OFFLOAD_FLAGS != 0 {
                Self::rx_offloads(&mut pkt, ol, rd(b, OFF_VLAN_TCI))?;
                let len = pkt.len() as u16;
                return Ok((pkt, len));
            }
            Ok((pkt, data_len))
        }
    }

    /// What a NIC's receive offloads reported: a stripped 802.1Q tag (put back in the frame) and verified
    /// checksums (as flags).
    #[inline]
    fn rx_offloads(pkt: &mut Pkt, ol: u64, tci: u16) -> Result<(), DropReason> {
        if ol & sys::RTE_MBUF_F_RX_VLAN_STRIPPED as u64 != 0 && !reinsert_vlan(pkt, tci) {
            return Err(DropReason::TooBig);
        }
        let mut flags = pkt.meta().flags;
        if ol & sys::RTE_MBUF_F_RX_IP_CKSUM_MASK as u64 == sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD as u64 {
            flags |= Meta::FLAG_L3_CSUM_OK;
        }
        if ol & sys::RTE_MBUF_F_RX_L4_CKSUM_MASK as u64 == sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD as u64 {
            flags |= Meta::FLAG_L4_CSUM_OK;
        }
        pkt.meta_mut().flags = flags;
        Ok(())
    }

    /// Copies a frame from an mbuf of a foreign mempool (or an indirect mbuf) into one of ours and frees the
    /// original.
    ///
    /// # Safety
    /// `m` is a valid single-segment mbuf we own, with `data_off + data_len` inside its buffer.
    #[cold]
    unsafe fn copy_in(
        &self,
        m: *mut sys::rte_mbuf,
        data_off: u16,
        data_len: u16,
    ) -> Result<Pkt, DropReason> {
        // SAFETY: as the function's contract says; our mbuf is fresh and ours.
        unsafe {
            let src = rd::<*mut u8>(m.cast(), OFF_BUF_ADDR).add(data_off as usize);
            let res = match NonNull::new(sys::wharf_rte_pktmbuf_alloc(self.mp).cast::<u8>()) {
                None => Err(DropReason::NoBuffer),
                Some(e) => {
                    let mut p = Pkt::from_elt(e).reset();
                    let room = p.rx_room();
                    if data_len as usize > room.len() {
                        Err(DropReason::TooBig)
                    } else {
                        room[..data_len as usize]
                            .copy_from_slice(std::slice::from_raw_parts(src, data_len as usize));
                        p.set_rx_len(data_len as usize);
                        Ok(p)
                    }
                }
            };
            sys::wharf_rte_pktmbuf_free(m);
            res
        }
    }
}

/// Puts back an 802.1Q tag the NIC stripped, in the headroom. False if there is no room.
fn reinsert_vlan(pkt: &mut Pkt, tci: u16) -> bool {
    if pkt.prepend(VLAN_HLEN).is_none() {
        return false;
    }
    let d = pkt.data_mut();
    d.copy_within(VLAN_HLEN..VLAN_HLEN + 12, 0);
    d[12..14].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
    d[14..16].copy_from_slice(&tci.to_be_bytes());
    let m = pkt.meta_mut();
    m.flags |= Meta::FLAG_VLAN;
    m.vlan_tci = tci;
    true
}

#[inline]
fn is_tagged(p: &Pkt) -> bool {
    let d = p.data();
    d.len() >= ETH_HLEN && {
        let t = u16::from_be_bytes([d[12], d[13]]);
        t == ETH_P_8021Q || t == ETH_P_8021AD
    }
}

impl PortQueue for DpdkQueue {
    fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        ensure_lcore();
        let room = burst.room().min(MAX_BURST);
        if room == 0 {
            return 0;
        }
        // SAFETY: the port is started (we hold it) and this queue is claimed by us alone; the array has room
        // for `room` pointers.
        let n = unsafe {
            sys::wharf_rte_eth_rx_burst(
                self.port_id,
                self.queue,
                self.mbufs.as_mut_ptr(),
                room as u16,
            )
        } as usize;
        let n = n.min(room);
        let before = burst.len();
        let mut bytes = 0u64;
        let (mp, in_port, queue) = (self.mp, self.in_port, self.queue);
        for &m in &self.mbufs[..n] {
            // SAFETY: the driver handed over these n mbufs.
            match unsafe { self.adopt(m, mp, in_port, queue) } {
                Ok((p, len)) => {
                    bytes += len as u64;
                    // SAFETY: at most `room` mbufs arrived, so the burst has room for each.
                    unsafe { burst.push_unchecked(p) };
                }
                Err(reason) => self.counters.drops.add(reason, 1),
            }
        }
        let got = burst.len() - before;
        if got > 0 {
            self.counters.rx_packets.add(got as u64);
            self.counters.rx_bytes.add(bytes);
        }
        got
    }

    fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        ensure_lcore();
        if burst.is_empty() {
            return 0;
        }
        // One pass in the common case: every frame is an mbuf of ours that a driver may send. Otherwise a slower
        // pass drops what cannot be sent and copies wharf-pool packets into mbufs, and the burst is staged again
        // (the header writes of the first pass went to the mbuf room every pool element has).
        let (mut ready, clean, mut bytes) = self.stage_tx(burst);
        let mut dropped = 0;
        if !clean {
            dropped = self.sanitize(burst);
            (ready, _, bytes) = self.stage_tx(burst);
        }
        // SAFETY: the port is started and the queue ours; the first `ready` pointers are mbufs owned by the
        // packets at the front of the burst, in order.
        let sent = unsafe {
            sys::wharf_rte_eth_tx_burst(
                self.port_id,
                self.queue,
                self.mbufs.as_mut_ptr(),
                ready as u16,
            )
        } as usize;
        let sent = sent.min(ready);
        // The driver owns the first `sent` mbufs now (it may have freed them already): forget their handles
        // without touching the buffers.
        // SAFETY: the first `sent` handles went to the driver.
        unsafe { burst.forget_front(sent) };
        if sent > 0 {
            // What the driver did not take is at the front of the burst now.
            let unsent: u64 = burst
                .iter()
                .take(ready - sent)
                .map(|p| p.len() as u64)
                .sum();
            self.counters.tx_packets.add(sent as u64);
            self.counters.tx_bytes.add(bytes - unsent);
        }
        sent + dropped
    }

    fn stamp_in_port(&mut self, port: u16) -> bool {
        self.in_port = port;
        true
    }
}

impl DpdkQueue {
    /// Writes the mbuf header of the packets at the front of `burst` (as many as one call sends) and their
    /// pointers into `mbufs`. Returns how many, whether all of them may go to the driver as they are (mbufs of
    /// ours with a length a driver takes), and their bytes.
    #[inline]
    fn stage_tx(&mut self, burst: &Burst) -> (usize, bool, u64) {
        // A length is in `ETH_HLEN..=max_frame` when `len - ETH_HLEN` (wrapping) is at most `span`: one compare.
        let span = self.max_frame.checked_sub(ETH_HLEN);
        let (span, mut clean) = (span.unwrap_or(0), span.is_some());
        let ready = burst.len().min(self.mbufs.len());
        let mut bytes = 0u64;
        // Two slices of one length: one loop counter.
        for (p, slot) in burst.as_slice()[..ready]
            .iter()
            .zip(self.mbufs[..ready].iter_mut())
        {
            let (e, len) = (p.as_elt_ptr(), p.len());
            clean &= (len.wrapping_sub(ETH_HLEN) <= span) & p.meta().is_external();
            bytes += len as u64;
            // SAFETY: `e` is the element of a packet the burst owns; every pool's element starts with room for
            // an mbuf header (an mbuf's own, for ours), and the writes stay in it.
            unsafe {
                wr::<u16>(e, OFF_DATA_OFF, p.headroom() as u16);
                wr::<u16>(e, OFF_DATA_LEN, len as u16);
                wr::<u32>(e, OFF_PKT_LEN, len as u32);
                wr::<u64>(e, OFF_OL_FLAGS, 0);
            }
            *slot = e.cast();
        }
        (ready, clean, bytes)
    }

    /// Drops (and counts) the frames no driver may send, and replaces wharf-pool packets with copies in mbufs,
    /// keeping the order. Returns how many were dropped.
    #[cold]
    fn sanitize(&mut self, burst: &mut Burst) -> usize {
        let before = burst.len();
        let (counters, mp, max_frame) = (&self.counters, self.mp, self.max_frame);
        burst.retain(|p| {
            let len = p.len();
            if len < ETH_HLEN {
                counters.drops.add(DropReason::Truncated, 1);
                return false;
            }
            if len > max_frame && (len > max_frame + VLAN_HLEN || !is_tagged(p)) {
                counters.drops.add(DropReason::TooBig, 1);
                return false;
            }
            if !p.meta().is_external() {
                match copy_to_mempool(mp, p) {
                    Some(c) => *p = c,
                    None => {
                        counters.drops.add(DropReason::NoBuffer, 1);
                        return false;
                    }
                }
            }
            true
        });
        before - burst.len()
    }
}

/// A copy of `p` (frame at the same headroom, and metadata) in a fresh mbuf of `mp`.
fn copy_to_mempool(mp: *mut sys::rte_mempool, p: &Pkt) -> Option<Pkt> {
    // SAFETY: `mp` is a live mempool of ours (the caller holds its port); a fresh mbuf is ours alone.
    let e = NonNull::new(unsafe { sys::wharf_rte_pktmbuf_alloc(mp) }.cast::<u8>())?;
    // SAFETY: as above.
    let c = unsafe { Pkt::from_elt(e) }.reset();
    let headroom = p.headroom().min(c.headroom());
    if headroom + p.len() > c.headroom() + c.tailroom() {
        return None;
    }
    // SAFETY: headroom + len fits the buffer (checked above).
    let mut c = unsafe { c.reset_rx(headroom as u16, p.len() as u16, 0, 0) };
    c.data_mut().copy_from_slice(p.data());
    let (src, dst) = (p.meta(), c.meta_mut());
    dst.timestamp_ns = src.timestamp_ns;
    dst.in_port = src.in_port;
    dst.in_queue = src.in_queue;
    dst.flow_hash = src.flow_hash;
    dst.l3_off = src.l3_off;
    dst.l4_off = src.l4_off;
    dst.vlan_tci = src.vlan_tci;
    dst.flags = src.flags;
    dst.out_port = src.out_port;
    dst.ip_proto = src.ip_proto;
    dst.scratch = src.scratch;
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_args_for_no_huge_and_hugepages() {
        let mut c = EalConfig::no_huge("wt", 512);
        c.main_lcore_cpus = vec![1];
        c.vdevs = vec!["net_null0".into()];
        assert_eq!(
            c.args(),
            [
                "--lcores",
                "0@(1)",
                "--file-prefix",
                "wt",
                "--no-telemetry",
                "--no-huge",
                "-m",
                "512",
                "--vdev",
                "net_null0",
                "--no-pci",
                "--log-level=notice"
            ]
        );
        let h = EalConfig {
            main_lcore_cpus: vec![0, 1],
            pci: vec!["0000:03:00.0".into()],
            memory_mb: 0,
            log_level: String::new(),
            file_prefix: "p".into(),
            ..Default::default()
        };
        assert_eq!(
            h.args(),
            [
                "--lcores",
                "0@(0,1)",
                "--file-prefix",
                "p",
                "--no-telemetry",
                "--in-memory",
                "-a",
                "0000:03:00.0"
            ]
        );
        assert!(EalConfig::default().prefix().starts_with("wharf-"));
    }

    #[test]
    fn bad_eal_configs_are_refused() {
        assert!(EalConfig::no_huge("x", 16).validate().is_err());
        assert!(EalConfig::no_huge("a/b", 512).validate().is_err());
        assert!(EalConfig::no_huge("ok-1", 512).validate().is_ok());
    }

    #[test]
    fn rss_key_is_symmetric_pattern() {
        assert_eq!(symmetric_rss_key(4), [0x6d, 0x5a, 0x6d, 0x5a]);
    }

    #[test]
    fn toeplitz_is_dpdks_rte_softrss() {
        // wharf's Toeplitz hash, which predicts a NIC's queue, against DPDK's own software RSS (no EAL needed):
        // random keys (and the symmetric one), IPv4 addresses with and without ports.
        use crate::rss::toeplitz::{ipv4_input, toeplitz};
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..2000 {
            let key: Vec<u8> = if i % 10 == 0 {
                symmetric_rss_key(40)
            } else {
                (0..40).map(|_| next() as u8).collect()
            };
            let r = next();
            let (src, dst) = ((r as u32).to_be_bytes(), ((r >> 32) as u32).to_be_bytes());
            let (sp, dp) = (next() as u16, next() as u16);
            let mut words = [
                u32::from_be_bytes(src),
                u32::from_be_bytes(dst),
                (sp as u32) << 16 | dp as u32,
            ];
            for (ports, n) in [(true, 3u32), (false, 2)] {
                // SAFETY: `words` holds `n` words and the key `n + 1` words.
                let want = unsafe { sys::wharf_rte_softrss(words.as_mut_ptr(), n, key.as_ptr()) };
                let (input, len) = ipv4_input(src, sp, dst, dp, ports);
                assert_eq!(toeplitz(&key, &input[..len]), want, "key {key:02x?}");
            }
        }
    }

    #[test]
    fn eal_reasons_name_the_fix() {
        let c = EalConfig::default();
        assert!(eal_init_reason(libc::EACCES, &c).contains("nr_hugepages"));
        assert!(eal_init_reason(libc::EACCES, &c).contains("--no-huge"));
        assert!(eal_init_reason(libc::ENODEV, &c).contains("librte-net"));
    }
}
