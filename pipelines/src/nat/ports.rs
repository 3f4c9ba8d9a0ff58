//! External port (and ICMP identifier) allocation for source NAT, split per worker.
//!
//! The configured range (e.g. 1024-65535) is cut into one contiguous slice per worker ([`PortSplit`]); a
//! worker allocates only from its own slice, for every external address and separately per protocol (TCP,
//! UDP and ICMP identifiers are independent name spaces). So the destination port of a reply names the worker
//! that owns its flow ([`PortSplit::worker_of`]), and workers never share a bitmap: nothing is atomic.
//!
//! - **Address.** Paired pooling (RFC 4787 section 4.1): an inside address always gets the same external
//!   address (a hash of it picks one), as long as that address has a free port; only then are the others
//!   tried (counted in [`PortStats::unpaired`]).
//! - **Port.** Deterministic per flow: a keyed hash of the flow (the caller's `flow_hash`) picks where to
//!   start in the slice, and the first free port from there (wrapping) is taken, found a 64-bit word at a
//!   time. The same flow gets the same port whenever it is free; flows spread over the slice, so a port freed
//!   by one flow is not reused by the next one at once.
//! - **Steered.** [`PortAllocator::alloc_preferring`] takes, of the first few free ports from there, the
//!   first one its caller accepts: the NAT accepts a port whose replies the outside port's RSS
//!   brings back to this worker, so they need no handoff.
//! - **Never colliding.** One bit per (address, protocol, port) in the worker's slice: a port is handed out
//!   only when its bit is clear, and [`PortAllocator::release`] refuses a port that is not allocated
//!   ([`PortStats::bad_release`]), so a double release cannot make a port go out twice.
//! - **Memory.** `addresses x 3 x slice/8` bytes: 24 KiB a worker for one address and the whole range.

use super::{fold_mul, reduce, K1, K2};
use crate::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use dataplane::DropReason;
use std::ops::RangeInclusive;

/// How many free ports [`PortAllocator::alloc_preferring`] looks at, per worker of the split, for one its
/// caller prefers, and at most. With RSS over `w` workers, a port's answers come back to the allocating
/// worker with probability `1 / w`: `16w` tries miss with probability `(1 - 1/w)^(16w)`, about 1e-7 (2e-10 for
/// 2 workers); past 4 workers the cap of 64 lets it rise, to 2e-4 for 8 and 2% for 16. The cap bounds what a
/// new flow costs when few preferred ports are left (many flows to one remote endpoint): 64 looks.
pub const PREFER_TRIES_PER_WORKER: usize = 16;
/// The cap of [`PREFER_TRIES_PER_WORKER`] looks.
pub const PREFER_TRIES_MAX: usize = 64;

/// The port range and how it is split among the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSplit {
    lo: u16,
    hi: u16,
    workers: u16,
    /// `hi - lo`: a port is in the range when `port - lo` (wrapping) is at most this.
    span: u16,
    /// Ports per worker (the last worker also gets the remainder): up to 65536.
    per: u32,
    /// `ceil(2^32 / per)`: [`PortSplit::worker_of`] divides by `per` with a multiply and a shift (a division
    /// is tens of cycles, on every packet to an external address and, with several workers, on every answer
    /// in the L3 stage's first pass too). Exact here: with a dividend `n < 2^16` and `per <= 2^16`,
    /// `n * ceil(2^32 / per) >> 32 == n / per` because `n * (ceil(2^32 / per) * per - 2^32) < 2^32`.
    recip: u64,
}

/// Why a [`PortSplit`] cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// `lo > hi`.
    EmptyRange,
    /// No workers.
    NoWorkers,
    /// Fewer ports than workers.
    TooManyWorkers,
}

impl PortSplit {
    /// Ports `lo..=hi` over `workers` workers.
    pub fn new(lo: u16, hi: u16, workers: u16) -> Result<PortSplit, SplitError> {
        if lo > hi {
            return Err(SplitError::EmptyRange);
        }
        if workers == 0 {
            return Err(SplitError::NoWorkers);
        }
        let total = hi as u32 - lo as u32 + 1;
        if total < workers as u32 {
            return Err(SplitError::TooManyWorkers);
        }
        let per = total / workers as u32;
        Ok(PortSplit {
            lo,
            hi,
            workers,
            span: hi - lo,
            per,
            recip: (1u64 << 32).div_ceil(per as u64),
        })
    }

    /// The worker whose slice holds `port`, or `None` if the port is outside the range (a published port,
    /// say).
    #[inline]
    pub fn worker_of(&self, port: u16) -> Option<u16> {
        // One comparison: below `lo`, the offset wraps past `span`.
        let off = port.wrapping_sub(self.lo);
        if off > self.span {
            return None;
        }
        let slice = (off as u64 * self.recip) >> 32;
        Some((slice as u16).min(self.workers - 1))
    }

    /// The ports of `worker`'s slice (empty for a worker that does not exist).
    pub fn slice(&self, worker: u16) -> RangeInclusive<u16> {
        if worker >= self.workers {
            #[allow(clippy::reversed_empty_ranges)]
            return 1..=0;
        }
        // `worker < workers`, so the slice starts at most at `hi`, and a slice but the last ends before `hi`.
        let start = self.lo as u32 + worker as u32 * self.per;
        let end = if worker + 1 == self.workers {
            self.hi as u32
        } else {
            start + self.per - 1
        };
        start as u16..=end as u16
    }

    /// The number of workers.
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// The whole range.
    pub fn range(&self) -> RangeInclusive<u16> {
        self.lo..=self.hi
    }
}

/// The worker that owns a flow identified by its outside peer (`addr`, `port`): the same on every worker and
/// in both directions, for flows whose owner no NAT port names (published ports; see the module docs of
/// [`super`]).
#[inline]
pub fn owner_of_remote(addr: u32, port: u16, workers: u16) -> u16 {
    let h = fold_mul(((addr as u64) << 16 | port as u64) ^ K1, K2);
    reduce(h, workers.max(1) as u64) as u16
}

/// Why no port was allocated.
///
/// Drop reason: [`DropReason::NatExhausted`] for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// Every port of this worker's slice is taken on every external address, for this protocol.
    Exhausted,
    /// Not TCP, UDP or ICMP.
    Protocol,
}

impl AllocError {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        DropReason::NatExhausted
    }
}

/// The allocator's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Ports handed out.
    pub allocated: u64,
    /// Ports given back.
    pub released: u64,
    /// Allocations refused: the slice was full on every address.
    pub exhausted: u64,
    /// Allocations served by another address than the inside address's paired one (it was full).
    pub unpaired: u64,
    /// Allocations whose caller's preference accepted none of the ports looked at, so the first free one
    /// was taken ([`PortAllocator::alloc_preferring`]): with the NAT's steering, a flow whose answers will be
    /// handed over.
    pub unpreferred: u64,
    /// Releases of a port that was not allocated (or not ours): refused.
    pub bad_release: u64,
}

/// One bit per port of the slice, for one (address, protocol).
#[derive(Clone, Debug)]
struct Bitmap {
    words: Box<[u64]>,
    used: u32,
}

/// A worker's NAT ports: its slice of the range on every external address (see the module docs).
#[derive(Clone, Debug)]
pub struct PortAllocator {
    split: PortSplit,
    worker: u16,
    base: u16,
    len: u32,
    addrs: Box<[u32]>,
    /// `addrs.len() * 3` bitmaps: address-major, then TCP, UDP, ICMP.
    maps: Box<[Bitmap]>,
    seed: u64,
    stats: PortStats,
}

#[inline]
fn proto_index(proto: u8) -> Option<usize> {
    match proto {
        IPPROTO_TCP => Some(0),
        IPPROTO_UDP => Some(1),
        IPPROTO_ICMP => Some(2),
        _ => None,
    }
}

impl PortAllocator {
    /// `worker`'s allocator for the external addresses `addrs` (host order). `seed` keys the hashes: give
    /// every worker the same one to make allocation reproducible, or a random one so outsiders cannot predict
    /// ports. A worker outside the split, or no address, makes an allocator that has nothing to give.
    pub fn new(split: PortSplit, worker: u16, addrs: &[u32], seed: u64) -> PortAllocator {
        let slice = split.slice(worker);
        let (base, len) = if slice.is_empty() {
            (0, 0)
        } else {
            (
                *slice.start(),
                *slice.end() as u32 - *slice.start() as u32 + 1,
            )
        };
        let nwords = (len as usize).div_ceil(64);
        let mut words = vec![0u64; nwords.max(1)];
        // Bits past the end of the slice are permanently taken, so a search never returns them.
        if len % 64 != 0 {
            words[nwords - 1] = !0u64 << (len % 64);
        }
        if len == 0 {
            words[0] = !0;
        }
        let map = Bitmap {
            words: words.into_boxed_slice(),
            used: 0,
        };
        PortAllocator {
            split,
            worker,
            base,
            len,
            addrs: addrs.into(),
            maps: vec![map; addrs.len() * 3].into_boxed_slice(),
            seed,
            stats: PortStats::default(),
        }
    }

    /// The split this allocator's slice comes from.
    pub fn split(&self) -> &PortSplit {
        &self.split
    }

    /// This allocator's worker.
    pub fn worker(&self) -> u16 {
        self.worker
    }

    /// The external addresses.
    pub fn addrs(&self) -> &[u32] {
        &self.addrs
    }

    /// The counters.
    pub fn stats(&self) -> &PortStats {
        &self.stats
    }

    /// Ports of this worker's slice (per address and protocol).
    pub fn capacity(&self) -> u32 {
        self.len
    }

    /// Ports in use on external address `addr` for `proto` (0 for an unknown address or protocol).
    pub fn in_use(&self, proto: u8, addr: u32) -> u32 {
        self.map_index(proto, addr)
            .map(|i| self.maps[i].used)
            .unwrap_or(0)
    }

    #[inline]
    fn map_index(&self, proto: u8, addr: u32) -> Option<usize> {
        let p = proto_index(proto)?;
        let a = self.addrs.iter().position(|&x| x == addr)?;
        Some(a * 3 + p)
    }

    /// A free external (address, port) for a new flow of protocol `proto` from inside address `inside`;
    /// `flow_hash` is any hash of the flow's key (the same flow gets the same port while it is free).
    #[inline]
    pub fn alloc(
        &mut self,
        proto: u8,
        inside: u32,
        flow_hash: u64,
    ) -> Result<(u32, u16), AllocError> {
        self.alloc_preferring(proto, inside, flow_hash, |_, _| true)
    }

    /// [`PortAllocator::alloc`], preferring a port that `prefer` accepts: of the first few free ports from the
    /// flow's starting point ([`PREFER_TRIES_PER_WORKER`] per worker, [`PREFER_TRIES_MAX`] at most), the
    /// first one accepted, else the first one. The NAT prefers
    /// ports whose answers the port's RSS brings back to this worker ([`dataplane::rss::Steering`]), so
    /// they need no handoff; a preference can cost a port only the time to look, never make one refused.
    #[inline]
    pub fn alloc_preferring(
        &mut self,
        proto: u8,
        inside: u32,
        flow_hash: u64,
        mut prefer: impl FnMut(u32, u16) -> bool,
    ) -> Result<(u32, u16), AllocError> {
        let Some(p) = proto_index(proto) else {
            return Err(AllocError::Protocol);
        };
        let n = self.addrs.len();
        if n == 0 || self.len == 0 {
            self.stats.exhausted += 1;
            return Err(AllocError::Exhausted);
        }
        let paired = reduce(fold_mul(inside as u64 ^ self.seed, K1), n as u64) as usize;
        let start = reduce(fold_mul(flow_hash ^ self.seed, K2), self.len as u64) as u32;
        let base = self.base;
        let tries = (PREFER_TRIES_PER_WORKER * self.split.workers() as usize).min(PREFER_TRIES_MAX);
        for k in 0..n {
            let a = (paired + k) % n;
            let addr = self.addrs[a];
            let map = &mut self.maps[a * 3 + p];
            if map.used >= self.len {
                continue;
            }
            let Some(first) = find_free(&map.words, start) else {
                continue;
            };
            let (mut bit, mut chosen, mut accepted) = (first, first, false);
            for _ in 0..tries {
                if prefer(addr, base + bit as u16) {
                    (chosen, accepted) = (bit, true);
                    break;
                }
                // The next free port; back at the first one, every free port has been looked at.
                match find_free(&map.words, bit + 1) {
                    Some(next) if next != first => bit = next,
                    _ => break,
                }
            }
            map.words[chosen as usize / 64] |= 1 << (chosen % 64);
            map.used += 1;
            self.stats.allocated += 1;
            if k > 0 {
                self.stats.unpaired += 1;
            }
            if !accepted {
                self.stats.unpreferred += 1;
            }
            return Ok((addr, base + chosen as u16));
        }
        self.stats.exhausted += 1;
        Err(AllocError::Exhausted)
    }

    /// Takes a specific port (e.g. for a static mapping inside the dynamic range). False if it is not in
    /// this worker's slice, the address or protocol is unknown, or it is already taken.
    pub fn reserve(&mut self, proto: u8, addr: u32, port: u16) -> bool {
        let Some((i, bit)) = self.locate(proto, addr, port) else {
            return false;
        };
        let map = &mut self.maps[i];
        let (w, m) = (bit / 64, 1u64 << (bit % 64));
        if map.words[w] & m != 0 {
            return false;
        }
        map.words[w] |= m;
        map.used += 1;
        true
    }

    /// Whether `port` on `addr` is allocated (or reserved) for `proto` in this worker's slice.
    pub fn is_allocated(&self, proto: u8, addr: u32, port: u16) -> bool {
        self.locate(proto, addr, port)
            .is_some_and(|(i, bit)| self.maps[i].words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Gives a port back (its flow expired). False, and counted, if it was not allocated here.
    #[inline]
    pub fn release(&mut self, proto: u8, addr: u32, port: u16) -> bool {
        let Some((i, bit)) = self.locate(proto, addr, port) else {
            self.stats.bad_release += 1;
            return false;
        };
        let map = &mut self.maps[i];
        let (w, m) = (bit / 64, 1u64 << (bit % 64));
        if map.words[w] & m == 0 {
            self.stats.bad_release += 1;
            return false;
        }
        map.words[w] &= !m;
        map.used -= 1;
        self.stats.released += 1;
        true
    }

    /// The bitmap and bit of (`proto`, `addr`, `port`), if the port is in this worker's slice.
    #[inline]
    fn locate(&self, proto: u8, addr: u32, port: u16) -> Option<(usize, usize)> {
        let i = self.map_index(proto, addr)?;
        let bit = port.checked_sub(self.base)? as u32;
        (bit < self.len).then_some((i, bit as usize))
    }
}

/// Endpoint-independent mapping (RFC 4787 section 4.1, REQ-1), for UDP where it is configured: every flow
/// from one inside address and port leaves from the same external address and port, whatever its
/// destination, so peer-to-peer applications (STUN, games, VoIP) see one stable public endpoint.
///
/// A worker-owned table from (protocol, inside address, inside port) to the external (address, port) and the
/// number of flows using it. [`EimTable::acquire`] finds or makes the mapping for a new flow, allocating the
/// port from the worker's [`PortAllocator`] (deterministically, from the inside endpoint's hash) only for the
/// first flow; [`EimTable::release`], called when a flow expires, gives the port back with the last one.
/// Each flow still has its own conntrack entry (the reply keys differ by remote), so filtering stays
/// address-and-port dependent: a remote that never received a packet cannot open a flow to the mapping.
/// Preallocated (open addressing, backward-shift deletion); a full table refuses new mappings as
/// [`AllocError::Exhausted`].
#[derive(Clone, Debug)]
pub struct EimTable {
    /// Key: protocol << 48 | inside port << 32 | inside address; 0 is empty (the protocol is never 0).
    keys: Box<[u64]>,
    /// External address, external port, flows using the mapping.
    vals: Box<[(u32, u16, u32)]>,
    mask: usize,
    len: usize,
    limit: usize,
}

impl EimTable {
    /// A table for at most `limit` mappings (a worker's slice size times its external addresses is the most
    /// that can ever be in use).
    pub fn new(limit: usize) -> EimTable {
        let limit = limit.clamp(1, 1 << 24);
        let slots = (limit * 2).next_power_of_two();
        EimTable {
            keys: vec![0u64; slots].into_boxed_slice(),
            vals: vec![(0, 0, 0); slots].into_boxed_slice(),
            mask: slots - 1,
            len: 0,
            limit,
        }
    }

    /// Mappings in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there is no mapping.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn key(proto: u8, inside: u32, iport: u16) -> u64 {
        (proto as u64) << 48 | (iport as u64) << 32 | inside as u64
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        fold_mul(key ^ K2, K1) as usize & self.mask
    }

    /// The slot of `key`, or of the empty slot ending its probe run.
    #[inline]
    fn find(&self, key: u64) -> (usize, bool) {
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                0 => return (i, false),
                k if k == key => return (i, true),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// The mapping of (`proto`, `inside`, `iport`) if there is one: external address, port, flows using it.
    pub fn get(&self, proto: u8, inside: u32, iport: u16) -> Option<(u32, u16, u32)> {
        let (i, found) = self.find(Self::key(proto, inside, iport));
        found.then(|| self.vals[i])
    }

    /// The external (address, port) for one more flow from (`proto`, `inside`, `iport`): the existing mapping,
    /// or a new one from `ports`, preferring what `prefer` accepts ([`PortAllocator::alloc_preferring`]).
    pub fn acquire(
        &mut self,
        ports: &mut PortAllocator,
        proto: u8,
        inside: u32,
        iport: u16,
        prefer: impl FnMut(u32, u16) -> bool,
    ) -> Result<(u32, u16), AllocError> {
        let key = Self::key(proto, inside, iport);
        let (i, found) = self.find(key);
        if found {
            let v = &mut self.vals[i];
            v.2 += 1;
            return Ok((v.0, v.1));
        }
        if self.len >= self.limit {
            ports.stats.exhausted += 1;
            return Err(AllocError::Exhausted);
        }
        let (addr, port) = ports.alloc_preferring(proto, inside, fold_mul(key, K2), prefer)?;
        self.keys[i] = key;
        self.vals[i] = (addr, port, 1);
        self.len += 1;
        Ok((addr, port))
    }

    /// One flow from (`proto`, `inside`, `iport`) ended: the last one gives the port back to `ports`. False
    /// if there was no such mapping.
    pub fn release(
        &mut self,
        ports: &mut PortAllocator,
        proto: u8,
        inside: u32,
        iport: u16,
    ) -> bool {
        let (i, found) = self.find(Self::key(proto, inside, iport));
        if !found {
            return false;
        }
        let v = &mut self.vals[i];
        v.2 -= 1;
        if v.2 > 0 {
            return true;
        }
        let (addr, port, _) = *v;
        ports.release(proto, addr, port);
        // Backward-shift deletion: later entries of the run move into the hole unless their home lies
        // cyclically in (hole, j].
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let k = self.keys[j];
            if k == 0 {
                break;
            }
            let home = self.home(k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.keys[hole] = k;
                self.vals[hole] = self.vals[j];
                hole = j;
            }
        }
        self.keys[hole] = 0;
        self.len -= 1;
        true
    }
}

/// The first clear bit at or after `start`, wrapping around; `None` if every bit is set.
#[inline]
fn find_free(words: &[u64], start: u32) -> Option<u32> {
    let n = words.len();
    let mut w = start as usize / 64 % n;
    let mut free = !words[w] & (!0u64 << (start % 64));
    // n + 1 words: the start word is looked at again at the end for its bits below `start`.
    for _ in 0..=n {
        if free != 0 {
            return Some((w * 64) as u32 + free.trailing_zeros());
        }
        w = (w + 1) % n;
        free = !words[w];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_of_is_the_slice_a_division_names_for_every_split() {
        // Every port of several ranges and worker counts, against the plain division; the whole 16-bit range
        // in one slice (65536 ports per worker) included.
        let cases = [
            (0, 65535, 1),
            (0, 65535, 2),
            (1, 65535, 1),
            (1024, 65535, 1),
            (1024, 65535, 2),
            (1024, 65535, 3),
            (1024, 65535, 7),
            (1000, 1009, 2),
            (60000, 65535, 256),
        ];
        for (lo, hi, workers) in cases {
            let s = PortSplit::new(lo, hi, workers).unwrap();
            let per = (hi as u32 - lo as u32 + 1) / workers as u32;
            for p in 0..=u16::MAX {
                let want = (lo..=hi)
                    .contains(&p)
                    .then(|| (((p - lo) as u32 / per) as u16).min(workers - 1));
                assert_eq!(s.worker_of(p), want, "port {p} of {lo}-{hi} over {workers}");
                if let Some(w) = want {
                    assert!(s.slice(w).contains(&p), "port {p} in worker {w}'s slice");
                }
            }
        }
    }

    #[test]
    fn split_covers_the_range_once() {
        let s = PortSplit::new(1024, 65535, 3).unwrap();
        let mut seen = 0u32;
        for w in 0..3 {
            for p in s.slice(w) {
                assert_eq!(s.worker_of(p), Some(w));
                seen += 1;
            }
        }
        assert_eq!(seen, 65535 - 1024 + 1);
        assert_eq!(s.worker_of(80), None);
        assert!(s.slice(3).is_empty());
        assert_eq!(PortSplit::new(10, 9, 1), Err(SplitError::EmptyRange));
        assert_eq!(PortSplit::new(10, 11, 3), Err(SplitError::TooManyWorkers));
        assert_eq!(PortSplit::new(10, 11, 0), Err(SplitError::NoWorkers));
    }

    #[test]
    fn find_free_wraps_and_reports_full() {
        let mut w = [!0u64, !0u64 ^ (1 << 5)];
        assert_eq!(find_free(&w, 0), Some(69));
        assert_eq!(find_free(&w, 100), Some(69));
        w[1] = !0;
        assert_eq!(find_free(&w, 7), None);
        w[0] = !0 ^ 1 << 3;
        assert_eq!(find_free(&w, 7), Some(3)); // below the start, in the start word
    }

    #[test]
    fn endpoint_independent_mapping_is_shared_and_refcounted() {
        let s = PortSplit::new(1024, 65535, 1).unwrap();
        let mut ports = PortAllocator::new(s, 0, &[7], 3);
        let mut eim = EimTable::new(1000);
        let m = eim
            .acquire(&mut ports, IPPROTO_UDP, 10, 5000, |_, _| true)
            .unwrap();
        // A second and third flow from the same inside endpoint (other destinations) share the mapping.
        assert_eq!(
            eim.acquire(&mut ports, IPPROTO_UDP, 10, 5000, |_, _| true),
            Ok(m)
        );
        assert_eq!(
            eim.acquire(&mut ports, IPPROTO_UDP, 10, 5000, |_, _| true),
            Ok(m)
        );
        assert_eq!(eim.get(IPPROTO_UDP, 10, 5000), Some((m.0, m.1, 3)));
        let other = eim
            .acquire(&mut ports, IPPROTO_UDP, 10, 5001, |_, _| true)
            .unwrap();
        assert_ne!(other, m);
        assert_eq!(ports.in_use(IPPROTO_UDP, 7), 2);
        assert!(eim.release(&mut ports, IPPROTO_UDP, 10, 5000));
        assert!(eim.release(&mut ports, IPPROTO_UDP, 10, 5000));
        assert!(
            ports.is_allocated(IPPROTO_UDP, 7, m.1),
            "one flow still uses it"
        );
        assert!(eim.release(&mut ports, IPPROTO_UDP, 10, 5000));
        assert!(!ports.is_allocated(IPPROTO_UDP, 7, m.1));
        assert!(!eim.release(&mut ports, IPPROTO_UDP, 10, 5000));
        assert_eq!(eim.len(), 1);
        // Churn through many mappings: lookups stay right after back-shifts.
        let mut live = Vec::new();
        for i in 0..3000u32 {
            let k = (20 + i % 97, (i * 7) as u16);
            if eim.get(IPPROTO_UDP, k.0, k.1).is_none() && eim.len() < 999 {
                let v = eim
                    .acquire(&mut ports, IPPROTO_UDP, k.0, k.1, |_, _| true)
                    .unwrap();
                live.push((k, v));
            }
            if i % 3 == 0 && !live.is_empty() {
                let (k, _) = live.swap_remove((i as usize * 31) % live.len());
                assert!(eim.release(&mut ports, IPPROTO_UDP, k.0, k.1));
            }
            for &(k, v) in live.iter().rev().take(8) {
                assert_eq!(eim.get(IPPROTO_UDP, k.0, k.1), Some((v.0, v.1, 1)));
            }
        }
        assert_eq!(eim.len(), live.len() + 1);
        assert_eq!(ports.in_use(IPPROTO_UDP, 7) as usize, live.len() + 1);
    }

    #[test]
    fn exhaustion_then_release() {
        let s = PortSplit::new(1000, 1009, 2).unwrap(); // 5 ports per worker
        let mut a = PortAllocator::new(s, 1, &[7], 1);
        let mut got = Vec::new();
        for i in 0..5 {
            let (addr, p) = a.alloc(IPPROTO_UDP, 1, i).unwrap();
            assert_eq!(addr, 7);
            assert_eq!(s.worker_of(p), Some(1));
            got.push(p);
        }
        got.sort();
        assert_eq!(got, vec![1005, 1006, 1007, 1008, 1009]);
        assert_eq!(a.alloc(IPPROTO_UDP, 1, 9), Err(AllocError::Exhausted));
        assert_eq!(a.stats().exhausted, 1);
        // TCP is a separate name space.
        assert!(a.alloc(IPPROTO_TCP, 1, 9).is_ok());
        assert!(a.release(IPPROTO_UDP, 7, 1007));
        assert!(!a.release(IPPROTO_UDP, 7, 1007), "double release refused");
        assert!(!a.release(IPPROTO_UDP, 7, 1000), "another worker's port");
        assert_eq!(a.stats().bad_release, 2);
        assert_eq!(a.alloc(IPPROTO_UDP, 1, 9), Ok((7, 1007)));
        assert_eq!(a.alloc(47, 1, 9), Err(AllocError::Protocol));
    }

    #[test]
    fn a_preference_picks_among_free_ports_and_never_refuses_one() {
        let s = PortSplit::new(1024, 65535, 2).unwrap();
        let mut a = PortAllocator::new(s, 0, &[7], 5);
        let mut b = a.clone();
        // Even ports preferred (as one worker of two prefers half the ports): each is one the caller accepts,
        // free, and of worker 0's slice; the same flow (hash) gets the same port from the same state.
        let mut got = std::collections::HashSet::new();
        for h in 0..2000u64 {
            let p = a.alloc_preferring(IPPROTO_TCP, 1, h, |_, p| p % 2 == 0);
            assert_eq!(p, b.alloc_preferring(IPPROTO_TCP, 1, h, |_, p| p % 2 == 0));
            let (addr, p) = p.unwrap();
            assert_eq!((addr, p % 2, s.worker_of(p)), (7, 0, Some(0)));
            assert!(got.insert(p), "port {p} twice");
        }
        assert_eq!(a.stats().unpreferred, 0);
        // Nothing accepted: the first free port, as without a preference, after the looks; counted.
        let mut c = a.clone();
        assert_eq!(
            a.alloc_preferring(IPPROTO_TCP, 1, 77, |_, _| false),
            c.alloc(IPPROTO_TCP, 1, 77)
        );
        assert_eq!((a.stats().unpreferred, c.stats().unpreferred), (1, 0));
        // Three free ports left, none accepted: each is still handed out, then the slice is exhausted.
        let s = PortSplit::new(1000, 1009, 2).unwrap();
        let mut d = PortAllocator::new(s, 1, &[7], 1);
        for p in [1005, 1006] {
            assert!(d.reserve(IPPROTO_UDP, 7, p));
        }
        let mut left: Vec<u16> = (0..3)
            .map(|i| {
                d.alloc_preferring(IPPROTO_UDP, 1, i, |_, _| false)
                    .unwrap()
                    .1
            })
            .collect();
        left.sort();
        assert_eq!(left, [1007, 1008, 1009]);
        assert_eq!(
            d.alloc_preferring(IPPROTO_UDP, 1, 3, |_, _| true),
            Err(AllocError::Exhausted)
        );
        // Of the free ports, the accepted one is found wherever the flow starts.
        for p in [1005, 1007, 1009] {
            assert!(d.release(IPPROTO_UDP, 7, p));
        }
        for h in 0..50 {
            let mut e = d.clone();
            assert_eq!(
                e.alloc_preferring(IPPROTO_UDP, 1, h, |_, p| p == 1009),
                Ok((7, 1009))
            );
        }
    }
}
