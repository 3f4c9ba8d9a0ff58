//! Forwarding information base: longest-prefix-match tables for IPv4 and IPv6.
//!
//! # Why DIR-24-8
//!
//! A route lookup happens once per routed packet, on every worker, so it must cost as few dependent memory
//! reads as possible; the table may hold a full BGP feed (about a million IPv4 routes). [`lpm4::Lpm4`] is the
//! DIR-24-8 scheme of DPDK's `rte_lpm` (Gupta, Lin, McKeown 1998): a first table (`tbl24`) of 2^24 entries
//! indexed by the top 24 bits of the address answers every prefix of length 24 or less with **one** read; a
//! /24 range that also holds longer prefixes points at a group of 256 entries (`tbl8`) indexed by the last
//! byte, so those addresses cost **two** reads. Expanding each prefix into the range of entries it covers
//! trades memory (64 MiB of virtual memory for `tbl24`, committed only where routes are written) and update
//! cost (a /8 writes 65,536 entries) for a lookup with no loop and one data-dependent branch. Since about 99 %
//! of a BGP table is /24 or shorter, almost every lookup is one cache miss, and the misses of a burst overlap
//! when the caller prefetches ([`lpm4::Lpm4::prefetch`], [`lpm4::Lpm4::lookup_bulk`]).
//!
//! The big arrays come from `alloc_zeroed` (calloc: pages stay uncommitted until written) and, on Linux, are
//! advised to transparent huge pages, so that random lookups over 64 MiB do not miss the TLB on every access
//! (worth 10-25 % of lookup rate on the 1M-route benchmark); memory is then committed 2 MiB at a time.
//!
//! [`lpm6::Lpm6`] applies the same idea to IPv6 like `rte_lpm6`: a 2^24-entry first table for the top 24 bits,
//! then a trie of 256-entry groups with an 8-bit stride, one level per further byte of the address. A /48 (the
//! most common IPv6 route) costs four reads, a /32 two.
//!
//! # Entries
//!
//! Both tables use one 32-bit entry format: valid (bit 31) | extended (bit 30) | depth
//! (bits 24..30) | next hop (bits 0..24). An extended entry's low 24 bits are the index of the group it points
//! to. Next hops are opaque numbers below [`MAX_NEXT_HOP`] that the caller maps to adjacencies. The depth is
//! the length of the rule that wrote the entry; only the writer reads it (to decide which entries a new or
//! removed rule owns). `Lpm6` stores it relative to the group's level so that 6 bits suffice (see its docs).
//!
//! # Writer/reader contract
//!
//! The tables are updated **in place** by one writer (the control thread) while the workers look up
//! concurrently, without locks, as in `rte_lpm`:
//!
//! - Every entry is an `AtomicU32`; a reader sees each entry either before or after a write, so an address
//!   resolves to either its old or its new route while a route changes, never to garbage.
//! - A group is filled completely before the entry that points to it is published with a `Release` store,
//!   and readers load pointing entries with `Acquire` (a plain load on x86_64), so a reader that follows a
//!   pointer sees the whole group.
//! - Writer methods take `&self` and serialize through an internal `Mutex` that holds the writer-only state
//!   (the rules per prefix length, the group pool). The tables are `Send + Sync` and are shared as `Arc`s in
//!   the snapshot.
//! - A group freed by a removal may still be read by a worker that loaded the pointer just before. Freed
//!   groups therefore go into a **quarantine** and become reusable only in `reclaim()`, which the control thread
//!   calls once it knows that every worker has passed a burst boundary (started a new burst) since the removal:
//!   a worker holds no table pointer across bursts. The `*_mark`/`reclaim_to` pair supports the usual pattern
//!   "note the mark, wait for a grace period, reclaim up to the mark" while removals go on. The control thread
//!   must learn of the boundary through synchronization (e.g. a per-worker burst counter the worker stores with
//!   `Release` and the control thread loads with `Acquire`), so that the worker's last reads of a group happen
//!   before the writes that reuse it; `tests/fib.rs` does this with epoch counters. Memory safety never
//!   depends on this contract: the arrays stay allocated for the table's lifetime and every index is checked,
//!   so a broken grace period can at worst misroute one in-flight packet.

pub mod gen;
pub mod lpm4;
pub mod lpm6;

use std::alloc::{self, Layout};
use std::fmt;
use std::sync::atomic::AtomicU32;

pub use gen::{bgp_like_prefixes, bgp_like_prefixes_v6, SplitMix64};
pub use lpm4::Lpm4;
pub use lpm6::Lpm6;

/// Next hops are below this value (they occupy the 24 low bits of an entry).
pub const MAX_NEXT_HOP: u32 = 1 << 24;

/// The most groups a table can address (an extended entry holds a 24-bit group index).
pub const MAX_GROUPS: u32 = 1 << 24;

/// Why a FIB update was refused. The table is unchanged after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FibError {
    /// The prefix length is longer than the address (32 for IPv4, 128 for IPv6).
    InvalidLength {
        /// The length given.
        len: u8,
        /// The longest length the table accepts.
        max: u8,
    },
    /// The next hop is not below [`MAX_NEXT_HOP`].
    InvalidNextHop(u32),
    /// The route needs a new group of 256 entries and none is free. Groups freed by removals become free
    /// again only after `reclaim()`; otherwise build the table with more groups.
    Tbl8Exhausted,
    /// The allocator refused the memory for the table (`bytes` of zeroed memory).
    OutOfMemory {
        /// The size of the refused allocation.
        bytes: usize,
    },
}

impl fmt::Display for FibError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FibError::InvalidLength { len, max } => {
                write!(f, "prefix length {len} is out of range (0..={max})")
            }
            FibError::InvalidNextHop(nh) => {
                write!(f, "next hop {nh} is out of range (below {MAX_NEXT_HOP})")
            }
            FibError::Tbl8Exhausted => write!(
                f,
                "no free group of 256 entries (all in use or quarantined until reclaim)"
            ),
            FibError::OutOfMemory { bytes } => {
                write!(f, "cannot allocate {bytes} bytes for the table")
            }
        }
    }
}

impl std::error::Error for FibError {}

/// The 32-bit entry shared by [`Lpm4`] and [`Lpm6`], as bit masks and helpers.
///
/// `valid(1) | extended(1) | depth(6) | next hop or group index(24)`. An all-zero entry is "no route" (which
/// is what zeroed memory holds). An extended entry has both the valid and the extended bit set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry;

impl Entry {
    /// The entry holds a route (or, with [`Entry::EXT`], a group pointer).
    pub const VALID: u32 = 1 << 31;
    /// The entry points to a group: its low 24 bits are the group index.
    pub const EXT: u32 = 1 << 30;
    /// Where the depth field starts.
    pub const DEPTH_SHIFT: u32 = 24;
    /// The depth field, once shifted down.
    pub const DEPTH_MASK: u32 = 0x3f;
    /// The next hop or group index.
    pub const DATA_MASK: u32 = MAX_NEXT_HOP - 1;

    /// A valid route entry for `nh` written by a rule of depth `depth` (`depth < 64`, `nh < 2^24`).
    #[inline(always)]
    pub const fn route(nh: u32, depth: u8) -> u32 {
        Entry::VALID
            | (((depth as u32) & Entry::DEPTH_MASK) << Entry::DEPTH_SHIFT)
            | (nh & Entry::DATA_MASK)
    }

    /// An extended entry pointing to group `g`.
    #[inline(always)]
    pub const fn group(g: u32) -> u32 {
        Entry::VALID | Entry::EXT | (g & Entry::DATA_MASK)
    }

    /// The depth field of `e`.
    #[inline(always)]
    pub const fn depth(e: u32) -> u8 {
        ((e >> Entry::DEPTH_SHIFT) & Entry::DEPTH_MASK) as u8
    }

    /// The next hop (or group index) of `e`.
    #[inline(always)]
    pub const fn data(e: u32) -> u32 {
        e & Entry::DATA_MASK
    }

    /// Whether `e` points to a group.
    #[inline(always)]
    pub const fn is_ext(e: u32) -> bool {
        e & Entry::EXT != 0
    }

    /// Whether `e` is a route (valid and not extended).
    #[inline(always)]
    pub const fn is_route(e: u32) -> bool {
        e & (Entry::VALID | Entry::EXT) == Entry::VALID
    }

    /// The next hop of a final (non-extended) entry: `None` for "no route".
    #[inline(always)]
    pub const fn next_hop(e: u32) -> Option<u32> {
        if e & Entry::VALID != 0 {
            Some(e & Entry::DATA_MASK)
        } else {
            None
        }
    }
}

/// One group of 256 entries, one per value of the next address byte (1 KiB, 16 cache lines).
pub(crate) type Group = [AtomicU32; 256];

/// `len` zeroed `T`s on the heap from `alloc_zeroed` (calloc: fresh pages are mapped copy-on-write to the zero
/// page and committed only when written), freed by the `Box`'s drop with the same layout.
///
/// Only for types whose all-zero bytes are a valid value; the callers use it for `AtomicU32` and arrays of it.
fn zeroed_slice<T: ZeroValid>(len: usize) -> Result<Box<[T]>, FibError> {
    let layout =
        Layout::array::<T>(len).map_err(|_| FibError::OutOfMemory { bytes: usize::MAX })?;
    if layout.size() == 0 {
        return Ok(Vec::new().into_boxed_slice());
    }
    // SAFETY: the layout has a non-zero size (checked above).
    let p = unsafe { alloc::alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        return Err(FibError::OutOfMemory {
            bytes: layout.size(),
        });
    }
    advise_huge_pages(p.cast(), layout.size());
    // SAFETY: `p` is a live allocation from the global allocator with the layout of `[T; len]` (which is what
    // `Box<[T]>` deallocates with), it is zeroed, and all-zero bytes are a valid `T` (`ZeroValid`). We own it.
    Ok(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) })
}

/// Asks Linux to back the 2 MiB-aligned interior of a large allocation with transparent huge pages (when THP is
/// in `madvise` mode, the default on many distributions). Random lookups over a 64 MiB table otherwise miss the
/// TLB on nearly every access (16,384 pages of 4 KiB against ~2,000 TLB entries), and every page walk is more
/// memory traffic; with 2 MiB pages the whole first table needs 32 entries. The cost: a touched region commits
/// 2 MiB rather than 4 KiB. Only advice: errors are ignored, and nothing changes where THP is off.
#[cfg(target_os = "linux")]
pub(crate) fn advise_huge_pages(p: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    const MADV_HUGEPAGE: std::ffi::c_int = 14;
    extern "C" {
        // From the C library that std links on Linux; declared here as `pipelines` does not depend on `libc`.
        fn madvise(
            addr: *mut std::ffi::c_void,
            len: usize,
            advice: std::ffi::c_int,
        ) -> std::ffi::c_int;
    }
    let start = (p as usize).next_multiple_of(HUGE);
    let end = (p as usize + len) / HUGE * HUGE;
    if end > start {
        // SAFETY: [start, end) lies inside the allocation we own and is page-aligned; MADV_HUGEPAGE only
        // changes how the kernel backs those pages, never their contents (still zero) or their validity.
        unsafe { madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn advise_huge_pages(_p: *mut u8, _len: usize) {}

/// Types for which all-zero bytes are a valid value.
///
/// # Safety
///
/// Implement only for such types.
unsafe trait ZeroValid {}
// SAFETY: `AtomicU32` has the layout of `u32`; zero is a valid `u32`.
unsafe impl ZeroValid for AtomicU32 {}
// SAFETY: an array of `ZeroValid` elements is zero-valid element-wise.
unsafe impl<T: ZeroValid, const N: usize> ZeroValid for [T; N] {}

/// The first table of both tries: 2^24 entries (64 MiB, virtual until written). A fixed-size array so that
/// an index below 2^24 needs no bounds check.
pub(crate) type Tbl24 = [AtomicU32; 1 << 24];

/// A zeroed [`Tbl24`].
pub(crate) fn zeroed_tbl24() -> Result<Box<Tbl24>, FibError> {
    let b = zeroed_slice::<AtomicU32>(1 << 24)?;
    b.try_into()
        .map_err(|_| FibError::OutOfMemory { bytes: 1 << 26 })
}

/// `n` zeroed groups.
pub(crate) fn zeroed_groups(n: u32) -> Result<Box<[Group]>, FibError> {
    zeroed_slice::<Group>(n as usize)
}

/// The writer's accounting of groups: never-used ones, free ones, and quarantined ones (freed by a removal
/// while a reader might still be inside).
#[derive(Debug, Default)]
pub(crate) struct GroupPool {
    /// Groups `fresh..capacity` have never been used (still zero; their pages are not committed yet).
    fresh: u32,
    capacity: u32,
    /// Reusable groups (written before; the next user overwrites all 256 entries before publishing).
    free: Vec<u32>,
    /// Freed groups waiting for a grace period, oldest first.
    quarantine: std::collections::VecDeque<u32>,
    /// Groups ever put into quarantine (the quarantine holds numbers `retired - quarantine.len()..retired`).
    retired: u64,
}

impl GroupPool {
    pub(crate) fn new(capacity: u32) -> GroupPool {
        GroupPool {
            capacity,
            ..GroupPool::default()
        }
    }

    /// Groups that can be allocated right now.
    pub(crate) fn available(&self) -> u32 {
        self.capacity - self.fresh + self.free.len() as u32
    }

    /// A group to fill, and whether it has never been used (so it is still all zero: "no route" everywhere,
    /// and its pages may not even be committed yet, so a fill with zeros is better skipped); `None` when no
    /// group is free.
    pub(crate) fn alloc(&mut self) -> Option<(u32, bool)> {
        if let Some(g) = self.free.pop() {
            return Some((g, false));
        }
        if self.fresh < self.capacity {
            self.fresh += 1;
            return Some((self.fresh - 1, true));
        }
        None
    }

    /// Puts an unpublished group straight back (nobody can be inside it).
    pub(crate) fn unalloc(&mut self, g: u32) {
        self.free.push(g);
    }

    /// Quarantines a group that readers may still be inside.
    pub(crate) fn retire(&mut self, g: u32) {
        self.quarantine.push_back(g);
        self.retired += 1;
    }

    /// Groups allocated and not yet reclaimed (published plus quarantined).
    pub(crate) fn in_use(&self) -> u32 {
        self.fresh - self.free.len() as u32
    }

    pub(crate) fn quarantined(&self) -> u32 {
        self.quarantine.len() as u32
    }

    pub(crate) fn mark(&self) -> u64 {
        self.retired
    }

    /// Frees the groups retired before `mark` (all of them for `u64::MAX`); returns how many.
    pub(crate) fn reclaim_to(&mut self, mark: u64) -> u32 {
        let first = self.retired - self.quarantine.len() as u64;
        let n = mark.min(self.retired).saturating_sub(first) as usize;
        self.free.extend(self.quarantine.drain(..n));
        n as u32
    }
}

/// The hasher of the writer's rule maps: one keyed folded 64x64->128-bit multiply per word (the hash of the
/// MAC table), several times faster than std's SipHash on the million inserts of a full-table build. The key
/// is random per table, so a peer that chooses the prefixes it announces cannot choose colliding ones.
#[derive(Clone, Debug)]
pub(crate) struct RuleHash(u64);

impl RuleHash {
    pub(crate) fn new() -> RuleHash {
        use std::hash::BuildHasher;
        RuleHash(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

impl std::hash::BuildHasher for RuleHash {
    type Hasher = RuleHasher;
    fn build_hasher(&self) -> RuleHasher {
        RuleHasher(self.0)
    }
}

/// See [`RuleHash`].
pub(crate) struct RuleHasher(u64);

/// Odd constants (wyhash's).
const K1: u64 = 0xa076_1d64_78bd_642f;
const K2: u64 = 0xe703_7ed1_a0b4_28db;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let m = a as u128 * b as u128;
    m as u64 ^ (m >> 64) as u64
}

impl std::hash::Hasher for RuleHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = fold_mul(self.0 ^ u64::from_le_bytes(w), K1);
        }
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.0 = fold_mul(self.0 ^ x as u64, K1);
    }

    #[inline]
    fn write_u128(&mut self, x: u128) {
        let h = fold_mul(self.0 ^ x as u64, K1);
        self.0 = fold_mul(h ^ (x >> 64) as u64, K2);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Prefetches the cache line holding `e` (for reading, into all levels). Never faults; a no-op off x86_64.
#[inline(always)]
pub(crate) fn prefetch_entry(e: &AtomicU32) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (e as *const AtomicU32).cast::<i8>();
        // SAFETY: a prefetch is only a hint: it never faults and does not change memory (and `p` points into our
        // own allocation anyway). SSE is part of the x86_64 baseline.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = e;
}

/// The lock of a table's writer state; a panic in another writer (a bug) does not make the table unusable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
