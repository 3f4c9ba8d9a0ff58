//! [`Lpm4`]: the DIR-24-8 IPv4 longest-prefix-match table (see the [module docs](super) for the design and
//! the writer/reader contract).
//!
//! # How the writer keeps the tables right
//!
//! Every entry carries the depth of the rule that wrote it. A rule of length `d <= 24` owns the `2^(24-d)`
//! tbl24 entries of its range that no longer rule has written; a rule longer than 24 owns entries of the tbl8
//! group of its /24. So:
//!
//! - **insert** `p/d` writes every entry of its range whose depth is `<= d` (an equal depth is the same rule
//!   being replaced), going into the groups of extended tbl24 entries for `d <= 24`. For `d > 24` it first
//!   creates the /24's group if there is none: all 256 entries copied from the tbl24 entry (the covering rule
//!   of depth <= 24, or no route), then published.
//! - **remove** `p/d` rewrites the entries of depth exactly `d` in its range with the *covering rule*, the
//!   longest remaining rule shorter than `d` that contains `p` (found in the writer's rule sets, one per
//!   length), or with "no route". A group left with no entry deeper than 24 holds one value in all 256
//!   entries (all inherited entries of a group come from the same covering rule); that value goes back into
//!   the tbl24 entry and the group into quarantine.
//!
//! The invariant "a /24 has a group exactly when some rule longer than /24 lies in it" follows, and bounds the
//! groups in use by the number of /24s with long prefixes.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Mutex;

use super::{
    lock, prefetch_entry, zeroed_groups, zeroed_tbl24, Entry, FibError, Group, GroupPool, RuleHash,
    Tbl24, MAX_GROUPS, MAX_NEXT_HOP,
};

/// The chunk of [`Lpm4::lookup_bulk`]: a worker's default burst. Its entries live on the stack.
pub const BULK: usize = 32;

/// The default number of tbl8 groups: 65,536 (64 MiB of virtual memory, committed as groups are used), room for
/// that many /24s holding prefixes longer than /24.
pub const DEFAULT_TBL8_GROUPS: u32 = 1 << 16;

/// An IPv4 longest-prefix-match table mapping prefixes to 24-bit next hops, DIR-24-8 like DPDK's `rte_lpm`.
///
/// Lookups ([`Lpm4::lookup`], [`Lpm4::lookup_bulk`]) are lock-free and may run on any number of threads while
/// one thread at a time changes the table in place ([`Lpm4::insert`], [`Lpm4::remove`]; concurrent writers
/// are serialized by an internal lock). See the [module docs](super) for the contract, in particular
/// [`Lpm4::reclaim`].
pub struct Lpm4 {
    /// Indexed by the top 24 bits of the address.
    tbl24: Box<Tbl24>,
    /// Groups for /24s that hold longer prefixes, indexed by the last byte.
    tbl8: Box<[Group]>,
    writer: Mutex<Writer>,
}

/// What only the writer touches.
struct Writer {
    /// The rules of each length (index 0..=32): masked prefix (host order) to next hop.
    rules: Vec<HashMap<u32, u32, RuleHash>>,
    /// Number of rules.
    len: usize,
    groups: GroupPool,
}

/// The netmask of a length (0..=32).
#[inline]
fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    }
}

/// Checks a rule and returns its masked prefix.
fn check(prefix: Ipv4Addr, len: u8, nh: u32) -> Result<u32, FibError> {
    if len > 32 {
        return Err(FibError::InvalidLength { len, max: 32 });
    }
    if nh >= MAX_NEXT_HOP {
        return Err(FibError::InvalidNextHop(nh));
    }
    Ok(u32::from(prefix) & mask(len))
}

impl Lpm4 {
    /// An empty table with room for `max_tbl8_groups` groups of 256 entries (clamped to 2^24), i.e. for that
    /// many /24s holding prefixes longer than /24. Allocates 64 MiB + 1 KiB per group of zeroed virtual memory;
    /// pages are committed only as routes are written (2 MiB at a time where huge pages are granted).
    ///
    /// Aborts like any allocation if the memory is refused; see [`Lpm4::try_new`].
    pub fn new(max_tbl8_groups: u32) -> Lpm4 {
        match Lpm4::try_new(max_tbl8_groups) {
            Ok(t) => t,
            Err(_) => std::alloc::handle_alloc_error(std::alloc::Layout::new::<Tbl24>()),
        }
    }

    /// [`Lpm4::new`] that reports a refused allocation as [`FibError::OutOfMemory`].
    pub fn try_new(max_tbl8_groups: u32) -> Result<Lpm4, FibError> {
        let groups = max_tbl8_groups.min(MAX_GROUPS);
        Ok(Lpm4 {
            tbl24: zeroed_tbl24()?,
            tbl8: zeroed_groups(groups)?,
            writer: Mutex::new(Writer {
                rules: vec![HashMap::with_hasher(RuleHash::new()); 33],
                len: 0,
                groups: GroupPool::new(groups),
            }),
        })
    }

    /// Looks up `addr` (host byte order: `u32::from(Ipv4Addr)`), returning the next hop of the longest
    /// matching prefix. One memory read, two when the /24 holds longer prefixes.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        // Acquire pairs with the Release that publishes an extended entry, so the group's entries written
        // before it are visible below. (On x86_64 every load is an acquire load: this is a plain `mov`. Relying
        // on the address dependency alone would be a "consume" ordering, which Rust does not offer.)
        let e = self.tbl24[(addr >> 8) as usize].load(Acquire);
        let e = if Entry::is_ext(e) {
            // The index is always in range (the writer only publishes groups it owns); `get` keeps even a
            // broken invariant from panicking.
            match self.tbl8.get(Entry::data(e) as usize) {
                Some(g) => g[(addr & 0xff) as usize].load(Relaxed),
                None => 0,
            }
        } else {
            e
        };
        Entry::next_hop(e)
    }

    /// Starts fetching the tbl24 entry of `addr` into the cache, so that a later [`Lpm4::lookup`] of it does
    /// not wait for memory. A hint: never faults; a no-op off x86_64.
    #[inline]
    pub fn prefetch(&self, addr: u32) {
        prefetch_entry(&self.tbl24[(addr >> 8) as usize]);
    }

    /// Looks up every address of `addrs` into the same position of `out` (up to the shorter of the two).
    ///
    /// Works in chunks of [`BULK`]: first it prefetches the tbl24 entries of the whole chunk, then reads them
    /// and prefetches the tbl8 entries the extended ones point to, then resolves those; so the memory
    /// latencies of a chunk overlap instead of adding up. A worker passes its burst.
    #[inline]
    pub fn lookup_bulk(&self, addrs: &[u32], out: &mut [Option<u32>]) {
        for (a, o) in addrs.chunks(BULK).zip(out.chunks_mut(BULK)) {
            self.lookup_chunk(a, o);
        }
    }

    #[inline]
    fn lookup_chunk(&self, addrs: &[u32], out: &mut [Option<u32>]) {
        let n = addrs.len().min(out.len()).min(BULK);
        let (addrs, out) = (&addrs[..n], &mut out[..n]);
        for &a in addrs {
            self.prefetch(a);
        }
        let mut e = [0u32; BULK];
        for (e, &a) in e.iter_mut().zip(addrs) {
            // Acquire as in `lookup`.
            *e = self.tbl24[(a >> 8) as usize].load(Acquire);
            if Entry::is_ext(*e) {
                if let Some(g) = self.tbl8.get(Entry::data(*e) as usize) {
                    prefetch_entry(&g[(a & 0xff) as usize]);
                }
            }
        }
        for ((o, &e), &a) in out.iter_mut().zip(&e).zip(addrs) {
            let e = if Entry::is_ext(e) {
                match self.tbl8.get(Entry::data(e) as usize) {
                    Some(g) => g[(a & 0xff) as usize].load(Relaxed),
                    None => 0,
                }
            } else {
                e
            };
            *o = Entry::next_hop(e);
        }
    }

    /// Adds the route `prefix/len -> nh`, or changes the next hop of an existing one; returns the previous next
    /// hop of this exact prefix. Host bits of `prefix` beyond `len` are ignored.
    ///
    /// Errors (the table is unchanged): `len > 32`, `nh >= MAX_NEXT_HOP`, or a prefix longer than /24 in a /24
    /// without a group while no group is free ([`FibError::Tbl8Exhausted`]).
    pub fn insert(&self, prefix: Ipv4Addr, len: u8, nh: u32) -> Result<Option<u32>, FibError> {
        let ip = check(prefix, len, nh)?;
        let mut w = lock(&self.writer);
        self.insert_locked(&mut w, ip, len, nh)
    }

    fn insert_locked(
        &self,
        w: &mut Writer,
        ip: u32,
        len: u8,
        nh: u32,
    ) -> Result<Option<u32>, FibError> {
        let new = Entry::route(nh, len);
        if len <= 24 {
            let start = (ip >> 8) as usize;
            for slot in &self.tbl24[start..start + (1 << (24 - len))] {
                let e = slot.load(Relaxed);
                if Entry::is_ext(e) {
                    if let Some(g) = self.tbl8.get(Entry::data(e) as usize) {
                        for x in g {
                            if Entry::depth(x.load(Relaxed)) <= len {
                                x.store(new, Relaxed);
                            }
                        }
                    }
                } else if Entry::depth(e) <= len {
                    // Depth 0 is also what "no route" (all zero) holds.
                    slot.store(new, Relaxed);
                }
            }
        } else {
            let slot = &self.tbl24[(ip >> 8) as usize];
            let e = slot.load(Relaxed);
            let range = group_range(ip, len);
            if Entry::is_ext(e) {
                if let Some(g) = self.tbl8.get(Entry::data(e) as usize) {
                    for x in &g[range] {
                        if Entry::depth(x.load(Relaxed)) <= len {
                            x.store(new, Relaxed);
                        }
                    }
                }
            } else {
                let (gi, zero) = w.groups.alloc().ok_or(FibError::Tbl8Exhausted)?;
                let Some(g) = self.tbl8.get(gi as usize) else {
                    w.groups.unalloc(gi);
                    return Err(FibError::Tbl8Exhausted);
                };
                // A fresh group (zero) or one reclaimed after a grace period: no reader can be inside it. Fill
                // it completely (a fresh group already holds "no route"), then publish it.
                for (i, x) in g.iter().enumerate() {
                    if range.contains(&i) {
                        x.store(new, Relaxed);
                    } else if !(zero && e == 0) {
                        x.store(e, Relaxed);
                    }
                }
                // Release: a reader that sees the pointer (Acquire) sees the group's entries stored above.
                slot.store(Entry::group(gi), Release);
            }
        }
        let prev = w.rules[len as usize].insert(ip, nh);
        if prev.is_none() {
            w.len += 1;
        }
        Ok(prev)
    }

    /// Removes the route `prefix/len` (host bits ignored) and returns its next hop, or `None` if there is no
    /// such route (or `len > 32`). Its addresses fall back to the longest shorter route that covers them.
    /// A group left without prefixes longer than /24 is freed into quarantine (see [`Lpm4::reclaim`]).
    pub fn remove(&self, prefix: Ipv4Addr, len: u8) -> Option<u32> {
        if len > 32 {
            return None;
        }
        let ip = u32::from(prefix) & mask(len);
        let mut w = lock(&self.writer);
        let old = w.rules[len as usize].remove(&ip)?;
        w.len -= 1;
        let repl = match w.cover(ip, len) {
            Some((d, nh)) => Entry::route(nh, d),
            None => 0,
        };
        let owned = |e: u32| Entry::is_route(e) && Entry::depth(e) == len;
        if len <= 24 {
            let start = (ip >> 8) as usize;
            for slot in &self.tbl24[start..start + (1 << (24 - len))] {
                let e = slot.load(Relaxed);
                if Entry::is_ext(e) {
                    if let Some(g) = self.tbl8.get(Entry::data(e) as usize) {
                        for x in g {
                            if owned(x.load(Relaxed)) {
                                x.store(repl, Relaxed);
                            }
                        }
                    }
                } else if owned(e) {
                    slot.store(repl, Relaxed);
                }
            }
        } else {
            let slot = &self.tbl24[(ip >> 8) as usize];
            let e = slot.load(Relaxed);
            if let (true, Some(g)) = (Entry::is_ext(e), self.tbl8.get(Entry::data(e) as usize)) {
                for x in &g[group_range(ip, len)] {
                    if owned(x.load(Relaxed)) {
                        x.store(repl, Relaxed);
                    }
                }
                // No entry deeper than 24 left: every entry holds the covering rule of the /24 (or no
                // route). Put that back into tbl24; readers already inside the group still find the same
                // answer there until the group is reused, which waits for a grace period.
                if g.iter().all(|x| Entry::depth(x.load(Relaxed)) <= 24) {
                    slot.store(g[0].load(Relaxed), Release);
                    w.groups.retire(Entry::data(e));
                }
            }
        }
        Some(old)
    }

    /// The next hop of the route `prefix/len` exactly (host bits ignored), for the control plane.
    pub fn get(&self, prefix: Ipv4Addr, len: u8) -> Option<u32> {
        if len > 32 {
            return None;
        }
        let w = lock(&self.writer);
        w.rules[len as usize]
            .get(&(u32::from(prefix) & mask(len)))
            .copied()
    }

    /// Every route as `(prefix, len, next hop)`, sorted by prefix then length (for `show routes`).
    pub fn routes(&self) -> Vec<(Ipv4Addr, u8, u32)> {
        let w = lock(&self.writer);
        let mut v: Vec<(u32, u8, u32)> = Vec::with_capacity(w.len);
        for (len, rules) in w.rules.iter().enumerate() {
            v.extend(rules.iter().map(|(&p, &nh)| (p, len as u8, nh)));
        }
        v.sort_unstable();
        v.into_iter()
            .map(|(p, l, nh)| (Ipv4Addr::from(p), l, nh))
            .collect()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        lock(&self.writer).len
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Groups allocated and not yet reclaimed: those in the table plus those in quarantine.
    pub fn tbl8_groups_in_use(&self) -> u32 {
        lock(&self.writer).groups.in_use()
    }

    /// Groups freed by removals and waiting in quarantine for [`Lpm4::reclaim`].
    pub fn tbl8_groups_quarantined(&self) -> u32 {
        lock(&self.writer).groups.quarantined()
    }

    /// The capacity in groups.
    pub fn tbl8_groups_max(&self) -> u32 {
        self.tbl8.len() as u32
    }

    /// Makes every quarantined group reusable; returns how many.
    ///
    /// **Contract**: call only when every thread that may be inside a lookup has finished the lookups it had
    /// begun before the removals that freed these groups, i.e. once every worker has passed a burst boundary
    /// since the last [`Lpm4::remove`]. If removals may happen in between, use [`Lpm4::reclaim_mark`] and
    /// [`Lpm4::reclaim_to`] instead. Breaking the contract cannot corrupt memory; it can make a lookup in
    /// flight return the next hop of an unrelated prefix once.
    pub fn reclaim(&self) -> u32 {
        lock(&self.writer).groups.reclaim_to(u64::MAX)
    }

    /// A mark for [`Lpm4::reclaim_to`]: the count of groups ever quarantined.
    pub fn reclaim_mark(&self) -> u64 {
        lock(&self.writer).groups.mark()
    }

    /// Makes reusable the groups quarantined before `mark` was taken ([`Lpm4::reclaim_mark`]); returns how
    /// many. Call after every worker has passed a burst boundary since the mark was taken.
    pub fn reclaim_to(&self, mark: u64) -> u32 {
        lock(&self.writer).groups.reclaim_to(mark)
    }

    /// Builds a table from `routes` at once, much faster than inserting them one by one: with the rules
    /// sorted by start address and length, one sweep writes each tbl24 entry once, then each /24 with longer
    /// prefixes gets its group. A prefix given twice keeps its last next hop (as repeated inserts would).
    ///
    /// Errors: the first invalid route (length or next hop), or [`FibError::Tbl8Exhausted`] when the routes
    /// longer than /24 lie in more than `max_tbl8_groups` distinct /24s.
    pub fn build(
        routes: impl IntoIterator<Item = (Ipv4Addr, u8, u32)>,
        max_tbl8_groups: u32,
    ) -> Result<Lpm4, FibError> {
        // Validate, then count per length so that each map is allocated once.
        let routes = routes
            .into_iter()
            .map(|(prefix, len, nh)| Ok((check(prefix, len, nh)?, len, nh)))
            .collect::<Result<Vec<_>, FibError>>()?;
        let mut counts = [0usize; 33];
        for &(_, len, _) in &routes {
            counts[len as usize] += 1;
        }
        let hash = RuleHash::new();
        let mut rules: Vec<HashMap<u32, u32, RuleHash>> = counts
            .iter()
            .map(|&n| HashMap::with_capacity_and_hasher(n, hash.clone()))
            .collect();
        for (ip, len, nh) in routes {
            rules[len as usize].insert(ip, nh);
        }
        let t = Lpm4::try_new(max_tbl8_groups)?;
        let mut w = lock(&t.writer);

        // tbl24: rules of length <= 24 as ranges [start, end) of tbl24 indices. Aligned prefixes nest or are
        // disjoint, so sorted by (start, length) they form a forest visited in preorder. A stack holds the
        // ranges enclosing the current position; `cursor` is the first index not yet written. Each index is
        // written once, by the longest rule covering it.
        // Packed as start (24 bits) | length (6) | next hop (24) in a u64, whose order is (start, length).
        let mut short: Vec<u64> = Vec::with_capacity(counts[..=24].iter().sum());
        for (len, r) in rules[..=24].iter().enumerate() {
            short.extend(
                r.iter().map(|(&ip, &nh)| {
                    u64::from(ip >> 8) << 30 | (len as u64) << 24 | u64::from(nh)
                }),
            );
        }
        short.sort_unstable();
        let fill = |from: u32, to: u32, e: u32| {
            for slot in &t.tbl24[from as usize..to as usize] {
                slot.store(e, Relaxed);
            }
        };
        let mut stack: Vec<(u32, u32)> = Vec::with_capacity(25);
        let mut cursor = 0u32;
        for &packed in &short {
            let (start, len, nh) = (
                (packed >> 30) as u32,
                (packed >> 24) as u8 & 63,
                packed as u32 & Entry::DATA_MASK,
            );
            while let Some(&(end, e)) = stack.last() {
                if end > start {
                    break;
                }
                fill(cursor, end, e);
                cursor = end;
                stack.pop();
            }
            if let Some(&(_, e)) = stack.last() {
                fill(cursor, start, e);
            }
            cursor = start;
            stack.push((start + (1 << (24 - len)), Entry::route(nh, len)));
        }
        while let Some((end, e)) = stack.pop() {
            fill(cursor, end, e);
            cursor = end;
        }

        // tbl8: rules longer than 24 grouped by /24, shortest first within a /24 so longer ones overwrite.
        let mut long: Vec<(u32, u8, u32)> = Vec::with_capacity(counts[25..].iter().sum());
        for (i, r) in rules[25..].iter().enumerate() {
            long.extend(r.iter().map(|(&ip, &nh)| (ip, 25 + i as u8, nh)));
        }
        long.sort_unstable_by_key(|&(ip, len, _)| (ip >> 8, len));
        for run in long.chunk_by(|a, b| a.0 >> 8 == b.0 >> 8) {
            let slot = &t.tbl24[(run[0].0 >> 8) as usize];
            let (gi, zero) = w.groups.alloc().ok_or(FibError::Tbl8Exhausted)?;
            let g = t.tbl8.get(gi as usize).ok_or(FibError::Tbl8Exhausted)?;
            let e = slot.load(Relaxed);
            if !(zero && e == 0) {
                for x in g {
                    x.store(e, Relaxed);
                }
            }
            for &(ip, len, nh) in run {
                for x in &g[group_range(ip, len)] {
                    x.store(Entry::route(nh, len), Relaxed);
                }
            }
            slot.store(Entry::group(gi), Release);
        }
        w.len = rules.iter().map(|r| r.len()).sum();
        w.rules = rules;
        drop(w);
        Ok(t)
    }
}

/// The entries of a /24's group that the rule `ip/len` (`len > 24`) covers.
#[inline]
fn group_range(ip: u32, len: u8) -> std::ops::Range<usize> {
    let start = (ip & 0xff) as usize;
    start..start + (1usize << (32 - len))
}

impl Writer {
    /// The longest rule shorter than `len` containing `ip`: (its length, its next hop).
    fn cover(&self, ip: u32, len: u8) -> Option<(u8, u32)> {
        (0..len).rev().find_map(|d| {
            self.rules[d as usize]
                .get(&(ip & mask(d)))
                .map(|&nh| (d, nh))
        })
    }
}

impl Default for Lpm4 {
    /// An empty table with [`DEFAULT_TBL8_GROUPS`] groups.
    fn default() -> Lpm4 {
        Lpm4::new(DEFAULT_TBL8_GROUPS)
    }
}

impl fmt::Debug for Lpm4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = lock(&self.writer);
        f.debug_struct("Lpm4")
            .field("routes", &w.len)
            .field("tbl8_groups_in_use", &w.groups.in_use())
            .field("tbl8_groups_max", &self.tbl8.len())
            .finish()
    }
}
