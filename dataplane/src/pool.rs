//! Pre-allocated packet buffer pools with a per-thread cache in front.
//!
//! A pool carves `n` fixed-size elements out of one large memory region (2 MiB hugepages when the system has
//! them reserved, else anonymous memory with transparent hugepages advised). Every element has the same layout
//! in every backend, VPP's `vlib_buffer_t` trick:
//!
//! ```text
//! | MBUF_ROOM (128 B) | Meta (64 B) | HEADROOM (128 B) | data room (2048 B default) |
//!   rte_mbuf header     wharf meta    room to prepend    the frame
//! ```
//!
//! The first 128 bytes are exactly the size of DPDK's `struct rte_mbuf`. Our own pools leave them unused; the
//! DPDK backend creates its mempool with `priv_size = META_SIZE` and `data_room = HEADROOM + data room`, so an
//! `rte_mbuf *` *is* the element start that [`Pkt`] points to, the wharf metadata is the mbuf's private area,
//! and `buf_addr` equals our buffer start. Converting between a `Pkt` and an `rte_mbuf` is pointer arithmetic;
//! the frame is never copied. (The DPDK backend syncs `data_off`/`len` with the mbuf fields at rx and tx; its
//! buffers have a null `home` in their metadata, and `Pkt`'s drop and clone go through the routines it registers,
//! `rte_pktmbuf_free` and `rte_pktmbuf_alloc` on the same mempool. Only with the `dpdk` feature.)
//!
//! Free buffers are indices in a lock-free bounded queue (`crossbeam::queue::ArrayQueue`). Each thread keeps a
//! small stack of indices per pool (DPDK's per-lcore mempool cache), so the steady-state alloc and free touch no
//! shared cache line; the stack refills and spills in bulk.

use crate::pkt::{Meta, Pkt};
use crossbeam::queue::ArrayQueue;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};

/// Bytes reserved at the start of every element for a DPDK `rte_mbuf` header (two cache lines).
pub const MBUF_ROOM: usize = 128;
/// Bytes of wharf metadata after the mbuf room (the mbuf private area under DPDK).
pub const META_SIZE: usize = 64;
/// Headroom in front of a received frame: enough to prepend outer Ethernet/IPv6/UDP/VXLAN headers in place.
pub const HEADROOM: usize = 128;
/// Default data room after the headroom: a 1518-byte frame with VLAN tags fits with room to spare.
pub const DEFAULT_DATA_ROOM: usize = 2048;
/// Default number of buffers kept in each thread's cache before spilling half back to the shared ring.
pub const DEFAULT_CACHE_SIZE: usize = 256;

/// How a pool is sized.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Number of buffers.
    pub buffers: u32,
    /// Data room per buffer after the headroom, in bytes.
    pub data_room: usize,
    /// Per-thread cache size (0 disables the cache).
    pub cache_size: usize,
    /// Try 2 MiB hugepages first.
    pub hugepages: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            buffers: 16 * 1024,
            data_room: DEFAULT_DATA_ROOM,
            cache_size: DEFAULT_CACHE_SIZE,
            hugepages: true,
        }
    }
}

/// Errors creating a pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Buffer count out of range.
    #[error("pool needs at least one buffer and at most 16M buffers (asked for {0})")]
    BadSize(u32),
    /// Data room out of range.
    #[error("data room {0} is out of range (64..=65000 bytes)")]
    BadDataRoom(usize),
    /// The memory could not be mapped.
    #[error("cannot map {bytes} bytes for the packet pool: {err}")]
    Map {
        /// Bytes asked for.
        bytes: usize,
        /// The OS error.
        err: std::io::Error,
    },
}

static NEXT_POOL_ID: AtomicU16 = AtomicU16::new(1);

pub(crate) struct PoolInner {
    id: u16,
    base: NonNull<u8>,
    map_len: usize,
    elt_size: usize,
    buffers: u32,
    data_room: usize,
    cache_size: usize,
    hugepages: bool,
    free: ArrayQueue<u32>,
    /// [`Pool`] handles and thread caches holding the pool (see [`PoolRef`]).
    owners: AtomicUsize,
    /// Set once the last owner is gone: the region was unmapped (every buffer home) or is leaked for good.
    retired: AtomicBool,
}

// The region is plain memory handed out to one owner at a time through the free queue.
unsafe impl Send for PoolInner {}
unsafe impl Sync for PoolInner {}

impl PoolInner {
    /// The last owner is gone: unmaps the region if every buffer is home. A `Pkt` that outlives every handle
    /// keeps pointing into the region, so then the region is leaked instead (and a bug elsewhere, which we
    /// say). The `PoolInner` itself is never freed: a packet's metadata points at it, and a packet dropped
    /// after the last handle must still find its way home.
    fn retire(&self) {
        if self.retired.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.free.len() == self.buffers as usize {
            // SAFETY: every buffer is in the free queue and no owner is left to take one out (a packet would
            // be needed to reach the pool otherwise), so nothing points into the region any more.
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
        } else {
            tracing::warn!(
                pool = self.id,
                outstanding = self.buffers as usize - self.free.len(),
                "packet pool dropped with buffers outstanding; leaking its memory"
            );
        }
    }
}

/// An owning reference to a pool's [`PoolInner`], counted in `owners`; the last one to go retires the pool.
/// The `PoolInner` is leaked on purpose (a few hundred bytes per pool created), so the raw pointer every
/// packet's metadata holds stays valid whatever outlives what.
struct PoolRef(&'static PoolInner);

impl PoolRef {
    /// A new owner of `inner`.
    fn new(inner: &'static PoolInner) -> PoolRef {
        inner.owners.fetch_add(1, Ordering::Relaxed);
        PoolRef(inner)
    }
}

impl Clone for PoolRef {
    fn clone(&self) -> Self {
        PoolRef::new(self.0)
    }
}

impl Drop for PoolRef {
    fn drop(&mut self) {
        if self.0.owners.fetch_sub(1, Ordering::Release) == 1 {
            std::sync::atomic::fence(Ordering::Acquire);
            self.0.retire();
        }
    }
}

impl std::ops::Deref for PoolRef {
    type Target = PoolInner;
    fn deref(&self) -> &PoolInner {
        self.0
    }
}

/// A pool of packet buffers. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Pool {
    inner: PoolRef,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("id", &self.inner.id)
            .field("buffers", &self.inner.buffers)
            .field("available", &self.inner.free.len())
            .field("hugepages", &self.inner.hugepages)
            .finish()
    }
}

impl Pool {
    /// A small pool for tests and benchmarks: `buffers` buffers of `data_room` bytes on plain memory, without
    /// the per-thread cache, so that [`Pool::available`] counts every buffer not in use. Panics if the
    /// configuration is refused.
    pub fn for_test(buffers: u32, data_room: usize) -> Pool {
        Pool::new(&PoolConfig {
            buffers,
            data_room,
            cache_size: 0,
            hugepages: false,
        })
        .expect("a test pool")
    }

    /// Allocates the region and fills the free ring with every buffer.
    pub fn new(cfg: &PoolConfig) -> Result<Pool, PoolError> {
        if cfg.buffers == 0 || cfg.buffers > 16 << 20 {
            return Err(PoolError::BadSize(cfg.buffers));
        }
        if !(64..=65000).contains(&cfg.data_room) {
            return Err(PoolError::BadDataRoom(cfg.data_room));
        }
        let elt_size = (MBUF_ROOM + META_SIZE + HEADROOM + cfg.data_room).next_multiple_of(64);
        let bytes = elt_size * cfg.buffers as usize;
        let (base, map_len, hugepages) = map_region(bytes, cfg.hugepages)?;
        let free = ArrayQueue::new(cfg.buffers as usize);
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let inner = PoolInner {
            id,
            base,
            map_len,
            elt_size,
            buffers: cfg.buffers,
            data_room: cfg.data_room,
            cache_size: cfg.cache_size,
            hugepages,
            free,
            owners: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
        };
        let inner = PoolRef::new(Box::leak(Box::new(inner)));
        let home: *const PoolInner = inner.0;
        for i in 0..cfg.buffers {
            // Initialise the constant part of every element's metadata once: who it is and where it goes home.
            unsafe {
                inner
                    .meta_ptr(i)
                    .write(Meta::new(home, i, (HEADROOM + cfg.data_room) as u32))
            };
            let _ = inner.free.push(i);
        }
        Ok(Pool { inner })
    }

    /// Pool identity (unique in the process).
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// Total number of buffers.
    pub fn capacity(&self) -> usize {
        self.inner.buffers as usize
    }

    /// Buffers in the shared free ring (excludes buffers parked in thread caches; see [`flush_thread_cache`]).
    pub fn available(&self) -> usize {
        self.inner.free.len()
    }

    /// Data room per buffer after the headroom.
    pub fn data_room(&self) -> usize {
        self.inner.data_room
    }

    /// Whether the region is backed by explicit 2 MiB hugepages.
    pub fn on_hugepages(&self) -> bool {
        self.inner.hugepages
    }

    /// Takes one buffer (through this thread's cache), reset to an empty frame with full headroom.
    #[inline]
    pub fn alloc(&self) -> Option<Pkt> {
        let idx = if self.inner.cache_size == 0 {
            self.inner.free.pop()
        } else {
            cache_alloc(self.inner.0)
        }?;
        let pkt = unsafe { Pkt::from_elt(self.inner.elt_ptr(idx)) };
        Some(pkt.reset())
    }

    /// Allocates up to `n` buffers into `burst`; returns how many were added.
    pub fn alloc_into(&self, burst: &mut crate::burst::Burst, n: usize) -> usize {
        let mut added = 0;
        while added < n && !burst.is_full() {
            match self.alloc() {
                Some(p) => {
                    let _ = burst.push(p);
                    added += 1;
                }
                None => break,
            }
        }
        added
    }
}

impl PoolInner {
    #[inline]
    fn elt_ptr(&self, idx: u32) -> NonNull<u8> {
        debug_assert!(idx < self.buffers);
        unsafe { NonNull::new_unchecked(self.base.as_ptr().add(idx as usize * self.elt_size)) }
    }
    #[inline]
    fn meta_ptr(&self, idx: u32) -> *mut Meta {
        unsafe { self.elt_ptr(idx).as_ptr().add(MBUF_ROOM).cast() }
    }
}

/// Takes a buffer from the pool `home` (through this thread's cache): how a packet copies itself for
/// flooding without knowing its `Pool` handle.
#[inline]
pub(crate) fn alloc_from(home: *const PoolInner) -> Option<Pkt> {
    // SAFETY: `home` comes from a live packet's metadata; a `PoolInner` is never freed (see `PoolRef`).
    let inner: &'static PoolInner = unsafe { &*home };
    let idx = if inner.cache_size == 0 {
        inner.free.pop()
    } else {
        cache_alloc(inner)
    }?;
    Some(unsafe { Pkt::from_elt(inner.elt_ptr(idx)) }.reset())
}

/// Where freed buffers go: called by `Pkt`'s `Drop`. `pool` is the `PoolInner` the buffer came from.
#[inline]
pub(crate) fn release(pool: *const PoolInner, idx: u32) {
    // SAFETY: `pool` comes from the packet's metadata and a `PoolInner` is never freed (see `PoolRef`); the region
    // is only unmapped once every buffer is home, and this one is not home yet.
    let inner: &'static PoolInner = unsafe { &*pool };
    if inner.cache_size == 0 || !cache_free(inner, idx) {
        let _ = inner.free.push(idx);
    }
}

// ---- buffers of an external pool (DPDK mempools) -------------------------------------------------------------

/// How buffers that belong to a pool wharf does not manage (a DPDK mempool: [`Meta`]'s `home` is null) are
/// freed and copied. Registered once per process by the backend that creates such buffers, before the first
/// one exists.
#[cfg(feature = "dpdk")]
pub(crate) struct ExternalPool {
    /// Returns the buffer whose element starts at the pointer to its pool.
    pub free: unsafe fn(NonNull<u8>),
    /// Takes a fresh buffer from the pool of the buffer whose element starts at the pointer (its metadata's
    /// constant part initialised as [`Meta::new`] does); `None` when that pool is empty.
    pub alloc_like: unsafe fn(NonNull<u8>) -> Option<NonNull<u8>>,
}

#[cfg(feature = "dpdk")]
static EXTERNAL: std::sync::OnceLock<ExternalPool> = std::sync::OnceLock::new();

/// Registers the external pool's routines; the first registration wins (they are process-wide functions).
#[cfg(feature = "dpdk")]
pub(crate) fn register_external(ops: ExternalPool) {
    let _ = EXTERNAL.set(ops);
}

/// Frees a buffer of the external pool. Called by `Pkt`'s `Drop` when its metadata's `home` is null.
#[cfg(feature = "dpdk")]
#[inline]
pub(crate) fn release_external(elt: NonNull<u8>) {
    match EXTERNAL.get() {
        // SAFETY: only the external backend makes buffers with a null home, and it registers before making any;
        // the caller owns the buffer and gives it up.
        Some(ops) => unsafe { (ops.free)(elt) },
        None => debug_assert!(
            false,
            "external buffer freed with no external pool registered"
        ),
    }
}

/// A fresh buffer from the external pool `elt` belongs to, reset (for `Pkt::try_clone`).
#[cfg(feature = "dpdk")]
#[inline]
pub(crate) fn alloc_external_like(elt: NonNull<u8>) -> Option<Pkt> {
    let ops = EXTERNAL.get()?;
    // SAFETY: `elt` is a live buffer of the external pool (the caller holds it); the new element is ours alone.
    unsafe { (ops.alloc_like)(elt).map(|p| Pkt::from_elt(p).reset()) }
}

fn map_region(bytes: usize, try_huge: bool) -> Result<(NonNull<u8>, usize, bool), PoolError> {
    const HUGE: usize = 2 << 20;
    if try_huge {
        let len = bytes.next_multiple_of(HUGE);
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            return Ok((
                NonNull::new(p.cast()).expect("mmap returned null"),
                len,
                true,
            ));
        }
    }
    let len = bytes.next_multiple_of(4096);
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(PoolError::Map {
            bytes: len,
            err: std::io::Error::last_os_error(),
        });
    }
    unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
    Ok((
        NonNull::new(p.cast()).expect("mmap returned null"),
        len,
        false,
    ))
}

// ---- per-thread cache -------------------------------------------------------------------------------------

/// One thread's stack of free indices for one pool. Owns the pool, so it is not retired while the cache holds
/// some of its buffers.
struct LocalCache {
    pool: PoolRef,
    items: Vec<u32>,
}

impl Drop for LocalCache {
    fn drop(&mut self) {
        for i in self.items.drain(..) {
            let _ = self.pool.free.push(i);
        }
    }
}

/// Caches for at most this many pools per thread; further pools go straight to their shared ring.
const MAX_CACHED_POOLS: usize = 4;

thread_local! {
    static CACHES: RefCell<arrayvec::ArrayVec<LocalCache, MAX_CACHED_POOLS>> = const { RefCell::new(arrayvec::ArrayVec::new_const()) };
}

#[inline]
fn with_cache<R>(inner: &'static PoolInner, f: impl FnOnce(&mut LocalCache) -> R) -> Option<R> {
    CACHES
        .try_with(|c| {
            let mut caches = c.try_borrow_mut().ok()?;
            let ptr = inner as *const PoolInner;
            if let Some(lc) = caches.iter_mut().find(|lc| std::ptr::eq(lc.pool.0, ptr)) {
                return Some(f(lc));
            }
            if caches.is_full() || inner.retired.load(Ordering::Acquire) {
                // A retired pool (a packet outlived every handle) gets its buffers back through the shared ring.
                return None;
            }
            // First use of this pool on this thread: the one allocation of the cache, outside steady state.
            let pool = PoolRef::new(inner);
            let cap = inner.cache_size * 2;
            caches.push(LocalCache {
                pool,
                items: Vec::with_capacity(cap),
            });
            let lc = caches.last_mut()?;
            Some(f(lc))
        })
        .ok()
        .flatten()
}

#[inline]
fn cache_alloc(inner: &'static PoolInner) -> Option<u32> {
    with_cache(inner, |lc| {
        if lc.items.is_empty() {
            // Refill in bulk up to the cache size.
            for _ in 0..lc.pool.cache_size {
                match lc.pool.free.pop() {
                    Some(i) => lc.items.push(i),
                    None => break,
                }
            }
        }
        lc.items.pop()
    })
    .unwrap_or_else(|| inner.free.pop())
}

/// Returns false if there was no cache to take it (the caller then frees to the shared ring).
#[inline]
fn cache_free(inner: &'static PoolInner, idx: u32) -> bool {
    with_cache(inner, |lc| {
        if lc.items.len() == lc.items.capacity() {
            // Spill half back so the next frees and allocs both have room.
            let keep = lc.pool.cache_size;
            for i in lc.items.drain(keep..) {
                let _ = lc.pool.free.push(i);
            }
        }
        lc.items.push(idx);
    })
    .is_some()
}

/// Returns every buffer parked in this thread's caches to their pools' shared rings and drops the caches.
/// Workers call it on exit; tests call it before checking [`Pool::available`].
pub fn flush_thread_cache() {
    let _ = CACHES.try_with(|c| {
        if let Ok(mut caches) = c.try_borrow_mut() {
            caches.clear();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Pool {
        Pool::new(&PoolConfig {
            buffers: 64,
            data_room: 2048,
            cache_size: 8,
            hugepages: false,
        })
        .unwrap()
    }

    #[test]
    fn alloc_all_then_empty_then_full_again() {
        let pool = small();
        let mut held = Vec::new();
        while let Some(p) = pool.alloc() {
            held.push(p);
        }
        assert_eq!(held.len(), 64);
        assert!(pool.alloc().is_none());
        drop(held);
        flush_thread_cache();
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn buffers_are_distinct_and_have_headroom() {
        let pool = small();
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        assert_ne!(a.buffer_index(), b.buffer_index());
        assert!(a.headroom() >= HEADROOM);
        assert_eq!(a.tailroom(), 2048);
        assert_eq!(a.len(), 0);
    }

    #[test]
    fn free_from_another_thread_goes_home() {
        let pool = small();
        let pkts: Vec<Pkt> = (0..40).map(|_| pool.alloc().unwrap()).collect();
        std::thread::spawn(move || drop(pkts)).join().unwrap();
        flush_thread_cache();
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn a_packet_outliving_every_handle_still_goes_home() {
        let pool = small();
        let inner: *const PoolInner = pool.inner.0;
        let mut held: Vec<Pkt> = (0..3).map(|_| pool.alloc().unwrap()).collect();
        held[0].set_frame(&[7; 60]);
        drop(pool);
        flush_thread_cache();
        // SAFETY (test): a `PoolInner` is never freed.
        let inner = unsafe { &*inner };
        assert!(
            inner.retired.load(Ordering::Acquire),
            "the last handle retired it"
        );
        assert_eq!(inner.owners.load(Ordering::Acquire), 0);
        // Reuse what the allocator freed, as a freed pool's memory would be reused.
        let noise: Vec<Vec<u64>> = (0..64).map(|i| vec![i; 64]).collect();
        // The region was leaked, not unmapped: the packets still read and copy, and go home when dropped.
        assert_eq!(held[0].data(), &[7; 60][..]);
        let copy = held[0]
            .alloc_sibling()
            .expect("a buffer from the retired pool");
        let before = inner.free.len();
        drop(copy);
        held.clear();
        flush_thread_cache();
        assert_eq!(inner.free.len(), before + 4, "straight to the shared ring");
        assert_eq!(
            inner.owners.load(Ordering::Acquire),
            0,
            "no cache re-owns it"
        );
        drop(noise);
    }

    #[test]
    fn the_last_handle_unmaps_when_every_buffer_is_home() {
        let pool = small();
        let inner: *const PoolInner = pool.inner.0;
        let other = pool.clone();
        let p = pool.alloc().unwrap();
        drop(pool);
        // SAFETY (test): a `PoolInner` is never freed.
        let inner = unsafe { &*inner };
        assert!(!inner.retired.load(Ordering::Acquire), "a handle is left");
        drop(p);
        drop(other);
        assert!(
            !inner.retired.load(Ordering::Acquire),
            "this thread's cache still owns it"
        );
        flush_thread_cache();
        assert!(inner.retired.load(Ordering::Acquire));
        assert_eq!(
            inner.free.len(),
            64,
            "every buffer home: the region was unmapped"
        );
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(matches!(
            Pool::new(&PoolConfig {
                buffers: 0,
                ..Default::default()
            }),
            Err(PoolError::BadSize(0))
        ));
        assert!(matches!(
            Pool::new(&PoolConfig {
                data_room: 10,
                ..Default::default()
            }),
            Err(PoolError::BadDataRoom(10))
        ));
    }
}
