//! A global allocator that counts allocations while counting is on: the no-allocation tests install it
//! (`#[global_allocator] static GLOBAL: Counting = Counting;`), warm up, then count over a steady-state run.
//! It sees every thread of the test process: workers, the host stack, the control thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The counting allocator (the system allocator underneath).
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

// SAFETY: every call is passed to the system allocator unchanged; counting touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(p, l, n)
    }
}

/// Starts or stops counting.
pub fn counting(on: bool) {
    COUNTING.store(on, Ordering::SeqCst);
}

/// Allocations and reallocations counted so far.
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::SeqCst)
}
