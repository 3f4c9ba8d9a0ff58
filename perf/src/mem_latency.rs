//! `mem-latency`: what a random memory read costs on this machine, by working-set size and page backing.
//!
//! The routing, NAT and DPDK figures depend on what a cache or TLB miss costs, and on a VM that depends on how
//! the host backs the guest's memory, which the guest cannot see. This probe measures it: a pointer chase
//! (each load's address comes from the one before, so nothing overlaps) over a random cyclic order of
//!
//! - every cache line of a region (`line` rows): cache and TLB misses together, as a 64 MiB DIR-24-8 first table
//!   sees them under random destinations;
//! - one line per 4 KiB page (`page` rows): the data fits in the caches, so what grows with the region is the
//!   address translation alone.
//!
//! Each region is allocated three ways: plain anonymous memory, the same advised to transparent huge pages
//! (what the FIB does), and explicit huge pages (`MAP_HUGETLB`, only where some are reserved:
//! `/proc/sys/vm/nr_hugepages`). If a page-stride chase over a few MiB costs tens of nanoseconds even on
//! huge pages, the guest's 2 MiB pages are backed by smaller ones on the host, and every access that leaves the
//! TLB's reach pays a two-dimensional page walk.

use anyhow::bail;
use std::time::Instant;

/// Options.
#[derive(clap::Args)]
pub struct Args {
    /// Region sizes in KiB.
    #[arg(long, value_delimiter = ',', default_values_t = [2048u64, 8192, 32768, 65536])]
    sizes_kib: Vec<u64>,
    /// Timed loads per measurement.
    #[arg(long, default_value_t = 4_000_000)]
    loads: u64,
}

/// How a region's pages are backed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backing {
    Plain,
    Thp,
    Hugetlb,
}

impl Backing {
    fn name(self) -> &'static str {
        match self {
            Backing::Plain => "4 KiB",
            Backing::Thp => "THP advised",
            Backing::Hugetlb => "hugetlb 2 MiB",
        }
    }
}

/// An anonymous mapping, unmapped on drop.
struct Region {
    p: *mut u8,
    len: usize,
}

impl Region {
    /// `len` bytes (a multiple of 2 MiB) backed as `how`; `None` when the kernel refuses (no huge pages).
    fn map(len: usize, how: Backing) -> Option<Region> {
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | if how == Backing::Hugetlb {
                libc::MAP_HUGETLB
            } else {
                0
            };
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        if how == Backing::Thp {
            // SAFETY: advice on our own mapping; it changes the backing, not the contents.
            unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
        }
        Some(Region { p: p.cast(), len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.p.cast(), self.len) };
    }
}

/// Links the first word of every `stride` bytes of `r` into one cycle in a random order: each holds the
/// offset of the next. Returns the number of slots.
fn link(r: &Region, stride: usize, seed: u64) -> usize {
    let slots = r.len / stride;
    let mut order: Vec<usize> = (0..slots).collect();
    let mut rng = pipelines::fib::SplitMix64::new(seed);
    for i in (1..slots).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for w in 0..slots {
        let (from, to) = (order[w], order[(w + 1) % slots]);
        // SAFETY: both slots lie inside the region, which is ours and aligned for usize at every stride used.
        unsafe { r.p.add(from * stride).cast::<usize>().write(to * stride) };
    }
    slots
}

/// The slot after the one at offset `at` of a region [`link`] linked.
#[inline(always)]
fn step(r: &Region, at: usize) -> usize {
    // SAFETY: `at` is a slot's offset (0 or read from a slot), inside the region, holding another's offset.
    unsafe { r.p.add(at).cast::<usize>().read() }
}

/// Nanoseconds per load of a chase through one slot of each `stride` bytes of `r`, in a random cyclic order.
fn chase(r: &Region, stride: usize, loads: u64, seed: u64) -> f64 {
    let slots = link(r, stride, seed);
    let step = |at| step(r, at);
    // One lap untimed: pages faulted in, caches and TLB in their steady state.
    let mut at = 0;
    for _ in 0..slots {
        at = step(at);
    }
    let t0 = Instant::now();
    for _ in 0..loads {
        at = step(at);
    }
    let ns = t0.elapsed().as_nanos() as f64 / loads as f64;
    std::hint::black_box(at);
    ns
}

/// `mem-latency`: see the module docs.
pub fn run(a: &Args) -> anyhow::Result<()> {
    if a.sizes_kib.iter().any(|&k| k == 0 || k % 2048 != 0) {
        bail!("--sizes-kib: each size must be a positive multiple of 2048 (2 MiB)");
    }
    println!("| region | stride | 4 KiB ns/load | THP advised ns/load | hugetlb 2 MiB ns/load |");
    println!("| --- | --- | --- | --- | --- |");
    let mut missing = false;
    for &kib in &a.sizes_kib {
        for (stride, label) in [(64usize, "line"), (4096, "page")] {
            let mut cells = Vec::new();
            for how in [Backing::Plain, Backing::Thp, Backing::Hugetlb] {
                match Region::map(kib as usize * 1024, how) {
                    Some(r) => cells.push(format!("{:.1}", chase(&r, stride, a.loads, kib))),
                    None => {
                        missing |= how == Backing::Hugetlb;
                        cells.push(format!("- ({} refused)", how.name()));
                    }
                }
            }
            println!("| {} MiB | {label} | {} |", kib / 1024, cells.join(" | "));
        }
    }
    if missing {
        println!(
            "hugetlb rows need reserved huge pages: echo 64 > /proc/sys/vm/nr_hugepages (root)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chase_visits_every_slot_once_per_lap() {
        let r = Region::map(2 << 20, Backing::Plain).expect("2 MiB of anonymous memory");
        for stride in [64, 4096] {
            let slots = link(&r, stride, 7);
            assert_eq!(slots, (2 << 20) / stride);
            let mut seen = vec![false; slots];
            let mut at = 0;
            for _ in 0..slots {
                assert_eq!(at % stride, 0, "a slot's offset");
                assert!(
                    !seen[at / stride],
                    "slot {} visited twice in one lap",
                    at / stride
                );
                seen[at / stride] = true;
                at = step(&r, at);
            }
            assert_eq!(at, 0, "back at the start after one lap");
            assert!(seen.iter().all(|&s| s));
        }
    }
}
