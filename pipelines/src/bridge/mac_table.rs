//! The learning bridge's MAC table: source MAC to port, shared by every worker of one bridge domain.
//!
//! Every frame through a bridge costs one [`MacTable::learn`] (its source) and one [`MacTable::lookup`] (its
//! destination), on every worker at once, while the control thread ages entries out. So the table is built for
//! that traffic:
//!
//! - **Storage.** Buckets of 8 `AtomicU64` slots, one 64-byte cache line each. A slot holds the MAC in bits
//!   0..48 and the port in bits 48..64; 0 is empty (the zero MAC is never stored). Each MAC has two candidate
//!   buckets from two independent hashes, so a lookup reads at most two cache lines and never probes further.
//!   Entries never move between slots (no cuckoo displacement), so a reader can never miss a present entry
//!   that is in flight, and a slot needs no tombstone when emptied.
//! - **Placement.** A new MAC goes into its first bucket while that bucket holds fewer than six entries, else
//!   into the less loaded of the two. At the loads the sizing gives (0.4..0.8 of the slots at the limit, see
//!   [`MacTable::new`]) 85..95 % of the entries sit in the first bucket, the one [`MacTable::prefetch`]
//!   fetches, while the second bucket still takes the overflow that would make a one-choice table fail early.
//! - **Aging.** A parallel array of `AtomicU32` "last seen" seconds, one per slot (the 8 of a bucket in one
//!   half of a cache line), stored only when the second advances: a MAC seen a million times a second costs
//!   one store a second, so the workers that see it do not pass its cache line back and forth.
//! - **Limit.** An `AtomicUsize` count, reserved before an insertion and given back if it fails, caps the
//!   learned entries per domain (the defence against `macof`-style floods); past it, new MACs are refused
//!   ([`LearnOutcome::LimitReached`]) and the bridge floods their traffic.
//! - **Hashing.** Folded 64x64->128-bit multiplies, keyed per table with random seeds, so a host that knows the
//!   code still cannot choose MACs that crowd a victim's buckets and keep its MAC from being learned.
//!
//! # Concurrency
//!
//! No locks: readers use plain loads, writers compare-and-swap one slot word. The count changes only with a
//! successful CAS of a slot (empty -> MAC on insertion, MAC -> empty on removal), plus a reservation taken just
//! before an insertion and returned if the insertion does not happen, so at rest `len()` is exactly the number
//! of occupied slots.
//!
//! Two workers may see the same new MAC at once and both insert it. Duplicates are resolved with a fixed order
//! over a MAC's candidate slots (first bucket's slots, then the second's): after a successful insertion the
//! inserter re-scans both buckets and removes every copy that sits after the first copy it sees. The insertion
//! CAS and the re-scan loads are `SeqCst`, so of two inserters of one MAC, the later one in that total order
//! sees the earlier one's copy; whichever copy is later in slot order is then removed by someone, and the copy
//! first in slot order is never removed by this rule, so one entry remains. A worker whose copy was removed
//! learns again against the survivor (and moves it if it carries another port). An entry aged out or removed
//! while a worker refreshes or moves it may go either way; that is a benign race with the same outcome as a
//! slightly different interleaving.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A MAC address, as on the wire.
pub type Mac = [u8; 6];

/// Slots per bucket: 8 words of 8 bytes, one cache line.
const SLOTS: usize = 8;
/// The MAC's bits in a slot word.
const MAC_MASK: u64 = (1 << 48) - 1;
/// Where the port starts in a slot word.
const PORT_SHIFT: u32 = 48;
/// A port number the table never stores, kept free for the bridge (e.g. "flood" or "drop" in its own maps).
pub const RESERVED_PORT: u16 = 0xFFFF;
/// A new MAC goes to its first bucket while that bucket holds fewer entries than this (and to the less loaded
/// bucket after that): 6 keeps ~90 % of the entries in the prefetched line and loses at most ~1 % of
/// insertions to [`LearnOutcome::TableFull`] at the highest load the sizing allows (0.8).
const PREFER_FIRST: usize = 6;
/// The largest limit a table accepts (larger ones are clamped): 4M entries, 96 MiB of table. Four times the
/// largest domain we plan for; it keeps a mistaken configuration from asking for all of memory.
pub const MAX_LIMIT: usize = 1 << 22;

/// Odd constants of the two hashes (wyhash's).
const K1: u64 = 0xa076_1d64_78bd_642f;
const K2: u64 = 0xe703_7ed1_a0b4_28db;

/// What [`MacTable::learn`] did, so the bridge can count station moves, refused MACs and floods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LearnOutcome {
    /// The MAC was already there on this port; its last-seen time is refreshed.
    Known,
    /// The MAC is new and now learned.
    Learned,
    /// The MAC was on another port (a station move) and now points at this one.
    Moved {
        /// The port it was on.
        from: u16,
    },
    /// The domain holds its limit of learned MACs; this one is not learned (its frames will be flooded).
    LimitReached,
    /// Both candidate buckets of this MAC are full (rare below the limit); it is not learned.
    TableFull,
    /// The MAC cannot be learned: zero or multicast (group bit set), or the port is [`RESERVED_PORT`]. The
    /// bridge checks these too; the table refuses rather than storing something a lookup must never return.
    Refused,
}

/// One cache line of slots.
#[repr(C, align(64))]
#[derive(Default)]
struct Bucket([AtomicU64; SLOTS]);

/// The last-seen seconds of two buckets' slots, one cache line, so a bucket's times never straddle two.
#[repr(C, align(64))]
#[derive(Default)]
struct SeenLine([AtomicU32; 2 * SLOTS]);

/// A lock-free learned-MAC table of one bridge domain, shared by all its workers (see the module docs).
pub struct MacTable {
    buckets: Box<[Bucket]>,
    /// Last-seen second of each slot, indexed like the slots (bucket * 8 + slot; see [`MacTable::last_seen`]).
    seen: Box<[SeenLine]>,
    /// Learned entries, plus insertions in flight.
    count: AtomicUsize,
    limit: usize,
    /// Buckets - 1 (a power of two minus one).
    mask: usize,
    seeds: [u64; 2],
}

/// The MAC as a slot key: 48 bits, first byte highest.
#[inline(always)]
fn key_of(mac: &Mac) -> u64 {
    u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

/// The key back as a MAC.
#[inline]
fn mac_of(word: u64) -> Mac {
    let b = word.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[inline(always)]
fn port_of(word: u64) -> u16 {
    (word >> PORT_SHIFT) as u16
}

/// Nonzero and unicast (the group bit is the lowest bit of the first byte, bit 40 of the key).
#[inline(always)]
fn learnable(key: u64) -> bool {
    key != 0 && key & (1 << 40) == 0
}

/// 64x64 -> 128-bit multiply folded to 64 bits: one `mul` on x86_64, and every input bit reaches the low bits.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Buckets for a limit: the next power of two of `limit * 1.25 / 8`, at least 1.
fn buckets_for(limit: usize) -> usize {
    // limit <= MAX_LIMIT, so neither step can overflow.
    (limit * 5).div_ceil(32).max(1).next_power_of_two()
}

impl MacTable {
    /// A table for at most `limit` learned MACs (clamped to [`MAX_LIMIT`]; 0 learns nothing).
    ///
    /// It has the next power of two of `limit * 1.25 / 8` buckets of 8 slots, so it is at most 80 % full at
    /// the limit and two candidate buckets almost always have room; 12 bytes a slot (a 64k limit takes
    /// 1.5 MiB, 1M takes 24 MiB).
    pub fn new(limit: usize) -> MacTable {
        let limit = limit.min(MAX_LIMIT);
        let n = buckets_for(limit);
        let state = RandomState::new();
        MacTable {
            buckets: (0..n).map(|_| Bucket::default()).collect(),
            seen: (0..n.div_ceil(2)).map(|_| SeenLine::default()).collect(),
            count: AtomicUsize::new(0),
            limit,
            mask: n - 1,
            seeds: [
                state.hash_one(0x5eed_0001_u64),
                state.hash_one(0x5eed_0002_u64),
            ],
        }
    }

    #[inline(always)]
    fn first_bucket(&self, key: u64) -> usize {
        fold_mul(key ^ self.seeds[0], K1) as usize & self.mask
    }

    /// The MAC's two candidate buckets, in the fixed order of placement and deduplication. Distinct unless the
    /// table has a single bucket.
    #[inline(always)]
    fn candidates(&self, key: u64) -> [usize; 2] {
        let b1 = self.first_bucket(key);
        let mut b2 = fold_mul(key ^ self.seeds[1], K2) as usize & self.mask;
        if b2 == b1 {
            b2 = (b1 ^ 1) & self.mask;
        }
        [b1, b2]
    }

    /// The candidate buckets to scan: one if both are the same bucket.
    #[inline(always)]
    fn scan_list(cands: &[usize; 2]) -> &[usize] {
        if cands[0] == cands[1] {
            &cands[..1]
        } else {
            &cands[..]
        }
    }

    #[inline(always)]
    fn slot(&self, idx: usize) -> &AtomicU64 {
        &self.buckets[idx / SLOTS].0[idx % SLOTS]
    }

    /// The last-seen second of slot `idx`.
    #[inline(always)]
    fn last_seen(&self, idx: usize) -> &AtomicU32 {
        &self.seen[idx / (2 * SLOTS)].0[idx % (2 * SLOTS)]
    }

    /// Every slot with its last-seen second, in slot order.
    fn slots(&self) -> impl Iterator<Item = (&AtomicU64, &AtomicU32)> {
        let seen = self.seen.iter().flat_map(|line| line.0.iter());
        self.buckets.iter().flat_map(|b| b.0.iter()).zip(seen)
    }

    /// The first slot (in candidate order) holding `key`, and its word. The second bucket's hash is only
    /// computed when the first bucket misses, which placement makes rare (85-95% of entries sit in their
    /// first bucket). Each bucket is compared as a whole, without a branch per slot: where in its bucket a
    /// MAC sits is random, so an early exit per slot costs a mispredicted branch on most hits.
    #[inline(always)]
    fn find_fast(&self, key: u64) -> Option<(usize, u64)> {
        let b1 = self.first_bucket(key);
        if let Some(hit) = self.find_in(key, b1) {
            return Some(hit);
        }
        let cands = self.candidates(key);
        if cands[1] == b1 {
            return None;
        }
        self.find_in(key, cands[1])
    }

    /// [`MacTable::find_fast`] with the first bucket already computed (`hint`, see [`MacTable::first_bucket_of`]).
    /// Any hint is safe: a wrong one only costs the scan of the real candidates.
    #[inline(always)]
    fn find_hinted(&self, key: u64, hint: u32) -> Option<(usize, u64)> {
        self.find_hinted_masked(key, key, MAC_MASK, hint)
    }

    /// [`MacTable::find_hinted`] for the slot whose word masked with `mask` is `want` (`key` is the MAC's).
    #[inline(always)]
    fn find_hinted_masked(
        &self,
        key: u64,
        want: u64,
        mask: u64,
        hint: u32,
    ) -> Option<(usize, u64)> {
        let h = hint as usize & self.mask;
        if let Some(hit) = self.find_masked(want, mask, h) {
            return Some(hit);
        }
        for b in self.candidates(key) {
            if b != h {
                if let Some(hit) = self.find_masked(want, mask, b) {
                    return Some(hit);
                }
            }
        }
        None
    }

    /// The slot of bucket `b` holding `key`, and its word (relaxed loads, one branch per bucket).
    #[inline(always)]
    fn find_in(&self, key: u64, b: usize) -> Option<(usize, u64)> {
        self.find_masked(key, MAC_MASK, b)
    }

    /// The first slot of bucket `b` whose word masked with `mask` is `want`, and its word. The eight words are
    /// compared as they are loaded, each compare feeding a conditional move of the slot number (no branch per
    /// slot: where a MAC sits is random), and the matching word is loaded again rather than kept: the eight do
    /// not all fit in registers, and spilling them costs a store each. A slot changed between the two loads (a move, an
    /// aging sweep) counts as a miss, as it would a moment later.
    #[inline(always)]
    fn find_masked(&self, want: u64, mask: u64, b: usize) -> Option<(usize, u64)> {
        let bucket = &self.buckets[b].0;
        // Last to first, so the first match is the one kept; a select per slot, not a branch.
        let mut found = SLOTS;
        for s in (0..SLOTS).rev() {
            if bucket[s].load(Ordering::Relaxed) & mask == want {
                found = s;
            }
        }
        let s = found;
        if s == SLOTS {
            return None;
        }
        let w = bucket[s].load(Ordering::Relaxed);
        (w & mask == want).then_some((b * SLOTS + s, w))
    }

    /// The port `mac` was learned on, if it was.
    ///
    /// The per-packet read: two multiplies, one or two cache lines, relaxed loads (a slot word carries the
    /// whole answer, so there is nothing to acquire), no writes.
    #[inline]
    pub fn lookup(&self, mac: &Mac) -> Option<u16> {
        let key = key_of(mac);
        if !learnable(key) {
            return None;
        }
        self.find_fast(key).map(|(_, w)| port_of(w))
    }

    /// [`MacTable::lookup`] with the MAC's first bucket computed earlier by [`MacTable::first_bucket_of`] (the
    /// bridge computes it once, when it prefetches, instead of hashing again per access).
    #[inline(always)]
    pub fn lookup_hinted(&self, mac: &Mac, hint: u32) -> Option<u16> {
        let key = key_of(mac);
        if !learnable(key) {
            return None;
        }
        self.find_hinted(key, hint).map(|(_, w)| port_of(w))
    }

    /// The first candidate bucket of `mac`: a hint for [`MacTable::lookup_hinted`] and
    /// [`MacTable::learn_hinted`] on this table. A hint from another table (or a stale one) is harmless, only
    /// slower.
    #[inline(always)]
    pub fn first_bucket_of(&self, mac: &Mac) -> u32 {
        self.first_bucket(key_of(mac)) as u32
    }

    /// Records that `mac` was seen on `port` at second `now_s`: refreshes it, learns it, or moves it.
    ///
    /// A known MAC on the same port (the per-packet case) costs a lookup plus, once a second, one relaxed
    /// store of the timestamp; only insertions and moves write the slot, with a CAS.
    #[inline]
    pub fn learn(&self, mac: &Mac, port: u16, now_s: u32) -> LearnOutcome {
        // `learn_hinted` refuses what cannot be learned; the hint of such a MAC is never used.
        self.learn_hinted(mac, self.first_bucket_of(mac), port, now_s)
    }

    /// [`MacTable::learn`] with the MAC's first bucket computed earlier (see [`MacTable::first_bucket_of`]).
    #[inline(always)]
    pub fn learn_hinted(&self, mac: &Mac, hint: u32, port: u16, now_s: u32) -> LearnOutcome {
        let key = key_of(mac);
        if !learnable(key) || port == RESERVED_PORT {
            return LearnOutcome::Refused;
        }
        // The fast path looks for the whole word, MAC and port, so it needs no mask; a MAC on another port
        // (a move) misses here and is handled by the slow path.
        let word = key | (port as u64) << PORT_SHIFT;
        if let Some((idx, _)) = self.find_hinted_masked(key, word, u64::MAX, hint) {
            self.touch(idx, now_s);
            return LearnOutcome::Known;
        }
        // The slow path computes both candidates itself, so a wrong hint cannot cause a duplicate.
        self.learn_slow(key, port, now_s, &self.candidates(key))
    }

    /// Advances a slot's last-seen second, storing only if it moves forward (so workers whose bursts straddle
    /// a second boundary do not write it back and forth).
    #[inline(always)]
    fn touch(&self, idx: usize, now_s: u32) {
        let seen = self.last_seen(idx);
        if seen.load(Ordering::Relaxed) < now_s {
            seen.store(now_s, Ordering::Relaxed);
        }
    }

    /// Takes one unit of the limit; false when the domain is at its limit.
    fn reserve(&self) -> bool {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < self.limit).then_some(c + 1)
            })
            .is_ok()
    }

    /// Moves and insertions (see the module docs for why this is safe to run on every worker at once).
    #[cold]
    #[inline(never)]
    fn learn_slow(&self, key: u64, port: u16, now_s: u32, cands: &[usize; 2]) -> LearnOutcome {
        let new = key | (port as u64) << PORT_SHIFT;
        let mut reserved = false;
        loop {
            // One pass over the candidates: the MAC if present, else the first free slot and load of each.
            let mut free: [Option<usize>; 2] = [None; 2];
            let mut used = [0usize; 2];
            let mut found = None;
            'scan: for (c, &b) in Self::scan_list(cands).iter().enumerate() {
                for (s, slot) in self.buckets[b].0.iter().enumerate() {
                    let w = slot.load(Ordering::Acquire);
                    if w == 0 {
                        free[c] = free[c].or(Some(b * SLOTS + s));
                    } else if w & MAC_MASK == key {
                        found = Some((b * SLOTS + s, w));
                        break 'scan;
                    } else {
                        used[c] += 1;
                    }
                }
            }

            if let Some((idx, w)) = found {
                // Present (perhaps inserted by another worker since our caller looked): not an insertion.
                if reserved {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    reserved = false;
                }
                let from = port_of(w);
                if from == port {
                    self.touch(idx, now_s);
                    return LearnOutcome::Known;
                }
                if self
                    .slot(idx)
                    .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.last_seen(idx).store(now_s, Ordering::Relaxed);
                    return LearnOutcome::Moved { from };
                }
                continue; // the slot changed under us (moved, aged, removed): look again
            }

            if !reserved {
                if !self.reserve() {
                    return LearnOutcome::LimitReached;
                }
                reserved = true;
            }
            let target = match free {
                [Some(a), Some(b)] => {
                    if used[0] < PREFER_FIRST || used[0] <= used[1] {
                        a
                    } else {
                        b
                    }
                }
                [Some(a), None] => a,
                [None, Some(b)] => b,
                [None, None] => {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    return LearnOutcome::TableFull;
                }
            };
            // The timestamp first, so that aging never sees the new word with the previous tenant's time.
            self.last_seen(target).store(now_s, Ordering::Relaxed);
            if self
                .slot(target)
                .compare_exchange(0, new, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                continue; // someone took the slot: look again (it may even be this MAC)
            }
            reserved = false; // the reservation is now an entry
            if self.dedup(key, target, cands) {
                return LearnOutcome::Learned;
            }
            // Another worker inserted this MAC too, at an earlier slot, and our copy is gone (the count went
            // down with it): learn against the survivor, which may carry another port.
        }
        // `reserved` is false on every exit from the loop; the loop only exits by return.
    }

    /// After inserting `key` at `mine`: removes every copy after the first one in candidate order (see the
    /// module docs). True if ours is the first, i.e. the one that stays.
    fn dedup(&self, key: u64, mine: usize, cands: &[usize; 2]) -> bool {
        let mut first = None;
        for &b in Self::scan_list(cands) {
            for (s, slot) in self.buckets[b].0.iter().enumerate() {
                if slot.load(Ordering::SeqCst) & MAC_MASK != key {
                    continue;
                }
                let idx = b * SLOTS + s;
                if first.is_none() {
                    first = Some(idx);
                } else {
                    self.remove_at(idx, key);
                }
            }
        }
        first == Some(mine)
    }

    /// Empties slot `idx` if it holds `key` (on whatever port); true if this call emptied it.
    fn remove_at(&self, idx: usize, key: u64) -> bool {
        let slot = self.slot(idx);
        let mut w = slot.load(Ordering::Acquire);
        // key is never 0, so a matching word is never the empty one.
        while w & MAC_MASK == key {
            match slot.compare_exchange_weak(w, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    return true;
                }
                Err(cur) => w = cur,
            }
        }
        false
    }

    /// Forgets `mac` (e.g. on a port's link down or `wharf ctl clear mac`). True if it was there.
    pub fn remove(&self, mac: &Mac) -> bool {
        let key = key_of(mac);
        if !learnable(key) {
            return false;
        }
        let cands = self.candidates(key);
        let mut removed = false;
        // Every copy: a duplicate may exist for an instant while two workers insert the MAC.
        for &b in Self::scan_list(&cands) {
            for s in 0..SLOTS {
                removed |= self.remove_at(b * SLOTS + s, key);
            }
        }
        removed
    }

    /// Removes the entries of every occupied slot for which `drop(word, last_seen)` holds, each with a CAS
    /// of the word it judged (an entry changed meanwhile is judged again). Returns how many it removed.
    fn sweep(&self, drop: impl Fn(u64, u32) -> bool) -> usize {
        let mut removed = 0;
        for (slot, seen) in self.slots() {
            let mut w = slot.load(Ordering::Acquire);
            while w != 0 && drop(w, seen.load(Ordering::Relaxed)) {
                match slot.compare_exchange(w, 0, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        self.count.fetch_sub(1, Ordering::Relaxed);
                        removed += 1;
                        break;
                    }
                    Err(cur) => w = cur,
                }
            }
        }
        removed
    }

    /// Removes entries not seen for more than `max_age_s` seconds before `now_s`; returns how many.
    /// `max_age_s == 0` disables aging. Run by the control thread, concurrently with the workers: an entry
    /// refreshed while it is judged may stay or go (a worker learns it again with its next frame).
    pub fn age(&self, now_s: u32, max_age_s: u32) -> usize {
        if max_age_s == 0 {
            return 0;
        }
        self.sweep(|_, seen| now_s.saturating_sub(seen) > max_age_s)
    }

    /// Removes every learned entry (e.g. on a topology change); returns how many.
    pub fn clear(&self) -> usize {
        self.sweep(|_, _| true)
    }

    /// Removes the entries whose port fails `keep` (ports that left the domain on a configuration reload);
    /// returns how many.
    pub fn retain_ports(&self, keep: impl Fn(u16) -> bool) -> usize {
        self.sweep(|w, _| !keep(port_of(w)))
    }

    /// Learned entries (exact when no insertion is in flight).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True if nothing is learned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries this table learns (the domain's limit, after clamping to [`MAX_LIMIT`]).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Slots in the table (at least 1.25 times the limit; memory is 12 bytes per slot).
    pub fn capacity(&self) -> usize {
        self.buckets.len() * SLOTS
    }

    /// Every entry as (MAC, port, seconds since last seen as of `now_s`), for `wharf ctl show mac`. A
    /// snapshot taken while workers write: each entry is read atomically, the whole is not.
    pub fn entries(&self, now_s: u32) -> Vec<(Mac, u16, u32)> {
        let mut out = Vec::with_capacity(self.len());
        for (slot, seen) in self.slots() {
            let w = slot.load(Ordering::Acquire);
            if w != 0 {
                let age = now_s.saturating_sub(seen.load(Ordering::Relaxed));
                out.push((mac_of(w), port_of(w), age));
            }
        }
        out
    }

    /// Starts fetching the first candidate bucket of `mac` into the cache, so the bridge can overlap the
    /// memory latency of the next frames' lookups with work on the current one. Never faults; a no-op off
    /// x86_64.
    #[inline]
    pub fn prefetch(&self, mac: &Mac) {
        let b = self.first_bucket(key_of(mac));
        prefetch_line(self.buckets.get(b));
    }

    /// Prefetches for a coming lookup of a frame's destination and learn of its source (the lines of
    /// [`MacTable::prefetch`] and [`MacTable::prefetch_learn`]); returns their first buckets as hints for
    /// [`MacTable::lookup_hinted`] and [`MacTable::learn_hinted`], so each MAC is hashed once per frame.
    #[inline(always)]
    pub fn prefetch_pair(&self, dst: &Mac, src: &Mac) -> (u32, u32) {
        let (bd, bs) = (
            self.first_bucket(key_of(dst)),
            self.first_bucket(key_of(src)),
        );
        prefetch_line(self.buckets.get(bd));
        prefetch_line(self.buckets.get(bs));
        prefetch_line(self.seen.get(bs / 2));
        (bd as u32, bs as u32)
    }

    /// [`MacTable::prefetch`] for a coming [`MacTable::learn`]: also fetches the line of last-seen times that
    /// a refresh reads, the second cache line of a learn. For source MACs; destinations need only `prefetch`.
    #[inline]
    pub fn prefetch_learn(&self, mac: &Mac) {
        let b = self.first_bucket(key_of(mac));
        prefetch_line(self.buckets.get(b));
        prefetch_line(self.seen.get(b / 2));
    }
}

/// Prefetches the cache line `line` starts (for reading, into all cache levels).
#[inline(always)]
fn prefetch_line<T>(line: Option<&T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(line) = line {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (line as *const T).cast::<i8>();
        // SAFETY: a prefetch is only a hint: it never faults and has no effect on memory (and `p` points into
        // our own allocation anyway). SSE is part of the x86_64 baseline.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = line;
}

impl fmt::Debug for MacTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MacTable")
            .field("len", &self.len())
            .field("limit", &self.limit)
            .field("capacity", &self.capacity())
            .finish()
    }
}
