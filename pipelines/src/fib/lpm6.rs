//! [`Lpm6`]: the IPv6 longest-prefix-match table, a multibit trie like DPDK's `rte_lpm6` (see the
//! [module docs](super) for the design and the writer/reader contract).
//!
//! # Layout
//!
//! Level 0 is a table of 2^24 entries indexed by the first three bytes of the address. Levels 1 to 13 are
//! groups of 256 entries indexed by one further byte each (byte `2 + k` at level `k`). A group of level `k`
//! holds the prefixes of lengths `base(k) + 1 ..= base(k) + 8` with `base(k) = 16 + 8k` (24 for level 1, 120
//! for level 13), plus, in its other entries, the route that covers the whole group. Prefixes of length 24 or
//! less live in level 0. A lookup reads one entry per level down to the first entry that is not extended:
//! one read for a /24, two for a /32, four for a /48, six for a /64, fourteen for a /128.
//!
//! # Depths in 6 bits
//!
//! The writer needs each entry's rule length, which can be 128, while the entry has a 6-bit depth field (the
//! format shared with `Lpm4`). Level 0 stores the length itself (0..=24). A group of level `k` stores it
//! relative to its base: `len - base(k)` (1..=8) for prefixes of its own level, and 0 for the entries
//! *inherited* from above: those all carry one rule, the longest rule of length `<= base(k)` that covers the
//! group, whose length the writer keeps per group in its own state. Inserting a rule that covers a whole group
//! replaces the group's inherited entries if that rule is at least as long as the inherited one (and then
//! does the same in the group's children, which inherit through it); removing one replaces them if they are
//! its own. Subtrees whose inherited rule is longer are skipped, since nothing below can belong to a shorter
//! rule.
//!
//! # Groups
//!
//! A group exists exactly while some rule ends in it or below it: insertion creates the missing groups of a
//! path (filled with the covering route, then published top-down, each before the pointer to it), and a
//! removal that leaves a group with only inherited entries puts that route back in the parent entry and the
//! group into quarantine, then looks at the parent the same way.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Mutex;

use super::{
    lock, prefetch_entry, zeroed_groups, zeroed_tbl24, Entry, FibError, Group, GroupPool, RuleHash,
    Tbl24, MAX_GROUPS, MAX_NEXT_HOP,
};

/// The chunk of [`Lpm6::lookup_bulk`]: a worker's default burst. Its entries live on the stack.
pub const BULK: usize = 32;

/// The default number of groups: 65,536 (64 MiB of virtual memory, committed as groups are used).
pub const DEFAULT_GROUPS: u32 = 1 << 16;

/// An IPv6 longest-prefix-match table mapping prefixes to 24-bit next hops: a 24-bit first table and a trie
/// of 8-bit-stride groups, like DPDK's `rte_lpm6`.
///
/// Same concurrency contract as [`Lpm4`](super::Lpm4): lock-free lookups on any thread during in-place
/// updates by one writer at a time; freed groups wait in quarantine for [`Lpm6::reclaim`].
pub struct Lpm6 {
    /// Level 0, indexed by the first three bytes.
    top: Box<Tbl24>,
    /// The groups of levels 1..=13, indexed by the next byte.
    groups: Box<[Group]>,
    writer: Mutex<Writer>,
}

/// A rule as the writer sees it: (length, next hop).
type Rule = (u8, u32);

/// What only the writer touches.
struct Writer {
    /// The rules of each length (index 0..=128): masked prefix to next hop.
    rules: Vec<HashMap<u128, u32, RuleHash>>,
    /// Number of rules.
    len: usize,
    /// Per group: 1 + the length of the rule its inherited entries hold, 0 when they hold no route.
    inherited: Vec<u8>,
    groups: GroupPool,
}

/// The netmask of a length (0..=128).
#[inline]
fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128))
    }
}

/// Rules of lengths `base(k) + 1 ..= base(k) + 8` end in groups of level `k` (1..=13).
#[inline]
const fn base(level: u8) -> u8 {
    16 + 8 * level
}

/// The level a rule longer than 24 ends in.
#[inline]
const fn level_of(len: u8) -> u8 {
    (len - 17) / 8
}

/// The entry of level `level` that stands for `rule` (see the module docs on depths).
#[inline]
fn encode(level: u8, rule: Option<Rule>) -> u32 {
    match rule {
        None => 0,
        Some((len, nh)) if level == 0 => Entry::route(nh, len),
        Some((len, nh)) => Entry::route(nh, len.saturating_sub(base(level))),
    }
}

/// Checks a rule and returns its masked prefix.
fn check(prefix: Ipv6Addr, len: u8, nh: u32) -> Result<u128, FibError> {
    if len > 128 {
        return Err(FibError::InvalidLength { len, max: 128 });
    }
    if nh >= MAX_NEXT_HOP {
        return Err(FibError::InvalidNextHop(nh));
    }
    Ok(u128::from(prefix) & mask(len))
}

/// The level-0 index of an address.
#[inline(always)]
fn top_index(a: &[u8; 16]) -> usize {
    (u32::from_be_bytes([a[0], a[1], a[2], a[3]]) >> 8) as usize
}

impl Lpm6 {
    /// An empty table with a pool of `max_groups` groups of 256 entries (clamped to 2^24). Allocates 64 MiB
    /// plus 1 KiB per group of zeroed virtual memory; pages are committed only as routes are written (2 MiB at
    /// a time where huge pages are granted).
    ///
    /// Aborts like any allocation if the memory is refused; see [`Lpm6::try_new`].
    pub fn new(max_groups: u32) -> Lpm6 {
        match Lpm6::try_new(max_groups) {
            Ok(t) => t,
            Err(_) => std::alloc::handle_alloc_error(std::alloc::Layout::new::<Tbl24>()),
        }
    }

    /// [`Lpm6::new`] that reports a refused allocation as [`FibError::OutOfMemory`].
    pub fn try_new(max_groups: u32) -> Result<Lpm6, FibError> {
        let n = max_groups.min(MAX_GROUPS);
        Ok(Lpm6 {
            top: zeroed_tbl24()?,
            groups: zeroed_groups(n)?,
            writer: Mutex::new(Writer {
                rules: vec![HashMap::with_hasher(RuleHash::new()); 129],
                len: 0,
                inherited: Vec::new(),
                groups: GroupPool::new(n),
            }),
        })
    }

    /// Looks up `addr` (network byte order, as in the header), returning the next hop of the longest matching
    /// prefix. One read per level down to the level of that prefix.
    #[inline]
    pub fn lookup(&self, addr: &[u8; 16]) -> Option<u32> {
        // Acquire at every level: each extended entry publishes the group it points to (Release by the
        // writer, after filling it). A plain load on x86_64.
        let mut e = self.top[top_index(addr)].load(Acquire);
        for &b in &addr[3..] {
            if !Entry::is_ext(e) {
                break;
            }
            // Always in range (the writer only publishes its own groups); `get` keeps even a broken
            // invariant from panicking.
            e = match self.groups.get(Entry::data(e) as usize) {
                Some(g) => g[b as usize].load(Acquire),
                None => 0,
            };
        }
        if Entry::is_route(e) {
            Some(Entry::data(e))
        } else {
            None
        }
    }

    /// Starts fetching the level-0 entry of `addr` into the cache. A hint: never faults; a no-op off x86_64.
    #[inline]
    pub fn prefetch(&self, addr: &[u8; 16]) {
        prefetch_entry(&self.top[top_index(addr)]);
    }

    /// Looks up every address of `addrs` into the same position of `out` (up to the shorter of the two).
    ///
    /// Walks the trie one level at a time for a whole chunk of [`BULK`] addresses: it prefetches the level-0
    /// entries of the chunk, then at each level reads the entries of the addresses still on extended entries
    /// and prefetches their next level. A lookup is a chain of dependent reads (four for a /48), but the chains
    /// of a chunk proceed side by side, so their misses overlap instead of adding up.
    #[inline]
    pub fn lookup_bulk(&self, addrs: &[[u8; 16]], out: &mut [Option<u32>]) {
        for (a, o) in addrs.chunks(BULK).zip(out.chunks_mut(BULK)) {
            self.lookup_chunk(a, o);
        }
    }

    #[inline]
    fn lookup_chunk(&self, addrs: &[[u8; 16]], out: &mut [Option<u32>]) {
        let n = addrs.len().min(out.len()).min(BULK);
        let (addrs, out) = (&addrs[..n], &mut out[..n]);
        for a in addrs {
            self.prefetch(a);
        }
        // Acquire loads at every level, as in `lookup`.
        let mut e = [0u32; BULK];
        let mut pending = false;
        for (e, a) in e.iter_mut().zip(addrs) {
            *e = self.top[top_index(a)].load(Acquire);
            if Entry::is_ext(*e) {
                pending = true;
                if let Some(g) = self.groups.get(Entry::data(*e) as usize) {
                    prefetch_entry(&g[a[3] as usize]);
                }
            }
        }
        let mut byte = 3;
        while pending && byte < 16 {
            pending = false;
            for (e, a) in e.iter_mut().zip(addrs) {
                if !Entry::is_ext(*e) {
                    continue;
                }
                *e = match self.groups.get(Entry::data(*e) as usize) {
                    Some(g) => g[a[byte] as usize].load(Acquire),
                    None => 0,
                };
                if Entry::is_ext(*e) {
                    pending = true;
                    let g = self.groups.get(Entry::data(*e) as usize);
                    if let (Some(g), Some(&b)) = (g, a.get(byte + 1)) {
                        prefetch_entry(&g[b as usize]);
                    }
                }
            }
            byte += 1;
        }
        for (o, &e) in out.iter_mut().zip(&e) {
            *o = if Entry::is_route(e) {
                Some(Entry::data(e))
            } else {
                None
            };
        }
    }

    /// Adds the route `prefix/len -> nh`, or changes the next hop of an existing one; returns the previous next
    /// hop of this exact prefix. Host bits of `prefix` beyond `len` are ignored.
    ///
    /// Errors (the table is unchanged): `len > 128`, `nh >= MAX_NEXT_HOP`, or not enough free groups for the
    /// levels the prefix needs ([`FibError::Tbl8Exhausted`]).
    pub fn insert(&self, prefix: Ipv6Addr, len: u8, nh: u32) -> Result<Option<u32>, FibError> {
        let p = check(prefix, len, nh)?;
        let mut w = lock(&self.writer);
        self.write_rule(&mut w, p, len, nh)?;
        let prev = w.rules[len as usize].insert(p, nh);
        if prev.is_none() {
            w.len += 1;
        }
        Ok(prev)
    }

    /// The group `g` (an index the writer handed out, hence in range).
    #[inline]
    fn group(&self, g: u32) -> &Group {
        &self.groups[g as usize]
    }

    /// The rule an entry (not extended) of `level` stands for; `g` is its group (unused at level 0).
    fn decode(&self, w: &Writer, level: u8, g: u32, e: u32) -> Option<Rule> {
        if !Entry::is_route(e) {
            return None;
        }
        let f = Entry::depth(e);
        let len = if level == 0 {
            f
        } else if f > 0 {
            base(level) + f
        } else {
            w.inherited.get(g as usize)?.checked_sub(1)?
        };
        Some((len, Entry::data(e)))
    }

    /// Writes the entries of the rule `p/len -> nh` into the tables (not into the rule sets).
    fn write_rule(&self, w: &mut Writer, p: u128, len: u8, nh: u32) -> Result<(), FibError> {
        let a = p.to_be_bytes();
        let top = top_index(&a);
        if len <= 24 {
            let new = Entry::route(nh, len);
            for slot in &self.top[top..top + (1 << (24 - len))] {
                let e = slot.load(Relaxed);
                if Entry::is_ext(e) {
                    self.cover_insert(w, Entry::data(e), len, nh);
                } else if Entry::depth(e) <= len {
                    // Depth 0 is also what "no route" (all zero) holds.
                    slot.store(new, Relaxed);
                }
            }
            return Ok(());
        }
        let last = level_of(len);
        // Count the groups the path lacks first, so that a refusal leaves the table untouched.
        let mut e = self.top[top].load(Relaxed);
        let mut have = 0;
        while Entry::is_ext(e) && have < last {
            have += 1;
            if have < last {
                e = self.group(Entry::data(e))[a[2 + have as usize] as usize].load(Relaxed);
            }
        }
        if w.groups.available() < u32::from(last - have) {
            return Err(FibError::Tbl8Exhausted);
        }
        // Walk down, creating missing groups: each is filled with the route of the entry it replaces (which
        // becomes its inherited route) and published before anything points into it.
        let mut slot: &AtomicU32 = &self.top[top];
        let mut g = 0u32;
        for level in 1..=last {
            let e = slot.load(Relaxed);
            g = if Entry::is_ext(e) {
                Entry::data(e)
            } else {
                let inh = self.decode(w, level - 1, g, e);
                let (gi, zero) = w.groups.alloc().ok_or(FibError::Tbl8Exhausted)?;
                if w.inherited.len() <= gi as usize {
                    w.inherited.resize(gi as usize + 1, 0);
                }
                w.inherited[gi as usize] = inh.map_or(0, |r| r.0 + 1);
                let fill = encode(level, inh);
                if !(zero && fill == 0) {
                    for x in self.group(gi) {
                        x.store(fill, Relaxed);
                    }
                }
                // Release: a reader that loads the pointer (Acquire) sees the fill above.
                slot.store(Entry::group(gi), Release);
                gi
            };
            if level < last {
                slot = &self.group(g)[a[2 + level as usize] as usize];
            }
        }
        let rel = len - base(last);
        let new = Entry::route(nh, rel);
        let start = a[2 + last as usize] as usize;
        for x in &self.group(g)[start..start + (1 << (8 - rel))] {
            let e = x.load(Relaxed);
            if Entry::is_ext(e) {
                self.cover_insert(w, Entry::data(e), len, nh);
            } else if Entry::depth(e) <= rel {
                x.store(new, Relaxed);
            }
        }
        Ok(())
    }

    /// The rule `len -> nh` covers all of group `g` (and `len` is at most the group's base): it replaces the
    /// inherited entries of the subtree that hold a rule no longer than itself.
    fn cover_insert(&self, w: &mut Writer, g: u32, len: u8, nh: u32) {
        match w.inherited.get_mut(g as usize) {
            Some(inh) if *inh <= len + 1 => *inh = len + 1,
            _ => return,
        }
        let new = Entry::route(nh, 0);
        for x in self.group(g) {
            let e = x.load(Relaxed);
            if Entry::is_ext(e) {
                self.cover_insert(w, Entry::data(e), len, nh);
            } else if Entry::depth(e) == 0 {
                x.store(new, Relaxed);
            }
        }
    }

    /// The rule of length `len` that covered all of group `g` is gone; `cover` replaces it where the subtree
    /// inherited it.
    fn cover_remove(&self, w: &mut Writer, g: u32, len: u8, cover: Option<Rule>) {
        match w.inherited.get_mut(g as usize) {
            Some(inh) if *inh == len + 1 => *inh = cover.map_or(0, |r| r.0 + 1),
            _ => return,
        }
        let new = cover.map_or(0, |(_, nh)| Entry::route(nh, 0));
        for x in self.group(g) {
            let e = x.load(Relaxed);
            if Entry::is_ext(e) {
                self.cover_remove(w, Entry::data(e), len, cover);
            } else if Entry::depth(e) == 0 {
                x.store(new, Relaxed);
            }
        }
    }

    /// Removes the route `prefix/len` (host bits ignored) and returns its next hop, or `None` if there is no
    /// such route (or `len > 128`). Its addresses fall back to the longest shorter route that covers them.
    /// Groups left without routes of their own are freed into quarantine (see [`Lpm6::reclaim`]).
    pub fn remove(&self, prefix: Ipv6Addr, len: u8) -> Option<u32> {
        if len > 128 {
            return None;
        }
        let p = u128::from(prefix) & mask(len);
        let mut w = lock(&self.writer);
        let old = w.rules[len as usize].remove(&p)?;
        w.len -= 1;
        let cover = w.cover(p, len);
        let a = p.to_be_bytes();
        let top = top_index(&a);
        if len <= 24 {
            let repl = encode(0, cover);
            for slot in &self.top[top..top + (1 << (24 - len))] {
                let e = slot.load(Relaxed);
                if Entry::is_ext(e) {
                    self.cover_remove(&mut w, Entry::data(e), len, cover);
                } else if Entry::is_route(e) && Entry::depth(e) == len {
                    slot.store(repl, Relaxed);
                }
            }
            return Some(old);
        }
        // The path of groups down to the rule's level (all present while the rule was).
        let last = level_of(len);
        let mut path = [0u32; 14];
        let mut e = self.top[top].load(Relaxed);
        for level in 1..=last {
            if !Entry::is_ext(e) {
                return Some(old); // cannot happen: the rule's groups exist
            }
            path[level as usize] = Entry::data(e);
            if level < last {
                e = self.group(Entry::data(e))[a[2 + level as usize] as usize].load(Relaxed);
            }
        }
        let rel = len - base(last);
        let repl = encode(last, cover);
        let start = a[2 + last as usize] as usize;
        for x in &self.group(path[last as usize])[start..start + (1 << (8 - rel))] {
            let e = x.load(Relaxed);
            if Entry::is_ext(e) {
                self.cover_remove(&mut w, Entry::data(e), len, cover);
            } else if Entry::is_route(e) && Entry::depth(e) == rel {
                x.store(repl, Relaxed);
            }
        }
        // Collapse groups left with only their inherited route, bottom-up.
        for level in (1..=last).rev() {
            let g = path[level as usize];
            let grp = self.group(g);
            if !grp
                .iter()
                .all(|x| Entry::depth(x.load(Relaxed)) == 0 && !Entry::is_ext(x.load(Relaxed)))
            {
                break;
            }
            let inh = self.decode(&w, level, g, grp[0].load(Relaxed));
            let parent = if level == 1 {
                &self.top[top]
            } else {
                &self.group(path[level as usize - 1])[a[1 + level as usize] as usize]
            };
            // The parent entry becomes the route the readers inside the group also see; the group keeps its
            // entries until a grace period has passed.
            parent.store(encode(level - 1, inh), Release);
            w.groups.retire(g);
        }
        Some(old)
    }

    /// The next hop of the route `prefix/len` exactly (host bits ignored), for the control plane.
    pub fn get(&self, prefix: Ipv6Addr, len: u8) -> Option<u32> {
        if len > 128 {
            return None;
        }
        let w = lock(&self.writer);
        w.rules[len as usize]
            .get(&(u128::from(prefix) & mask(len)))
            .copied()
    }

    /// Every route as `(prefix, len, next hop)`, sorted by prefix then length (for `show routes`).
    pub fn routes(&self) -> Vec<(Ipv6Addr, u8, u32)> {
        let w = lock(&self.writer);
        let mut v: Vec<(u128, u8, u32)> = Vec::with_capacity(w.len);
        for (len, rules) in w.rules.iter().enumerate() {
            v.extend(rules.iter().map(|(&p, &nh)| (p, len as u8, nh)));
        }
        v.sort_unstable();
        v.into_iter()
            .map(|(p, l, nh)| (Ipv6Addr::from(p), l, nh))
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

    /// Groups allocated and not yet reclaimed: those in the trie plus those in quarantine.
    pub fn tbl8_groups_in_use(&self) -> u32 {
        lock(&self.writer).groups.in_use()
    }

    /// Groups freed by removals and waiting in quarantine for [`Lpm6::reclaim`].
    pub fn tbl8_groups_quarantined(&self) -> u32 {
        lock(&self.writer).groups.quarantined()
    }

    /// The capacity in groups.
    pub fn tbl8_groups_max(&self) -> u32 {
        self.groups.len() as u32
    }

    /// Makes every quarantined group reusable; returns how many. Same contract as
    /// [`Lpm4::reclaim`](super::Lpm4::reclaim): only once every worker has passed a burst boundary since the
    /// last removal.
    pub fn reclaim(&self) -> u32 {
        lock(&self.writer).groups.reclaim_to(u64::MAX)
    }

    /// A mark for [`Lpm6::reclaim_to`]: the count of groups ever quarantined.
    pub fn reclaim_mark(&self) -> u64 {
        lock(&self.writer).groups.mark()
    }

    /// Makes reusable the groups quarantined before `mark` was taken ([`Lpm6::reclaim_mark`]); returns how
    /// many. Call after every worker has passed a burst boundary since the mark was taken.
    pub fn reclaim_to(&self, mark: u64) -> u32 {
        lock(&self.writer).groups.reclaim_to(mark)
    }

    /// Builds a table from `routes` at once: the rules are deduplicated (a prefix given twice keeps its last
    /// next hop) and written in depth-first order, so every rule writes only its own range, once, and the
    /// groups are laid out in address order.
    ///
    /// Errors: the first invalid route (length or next hop), or [`FibError::Tbl8Exhausted`] when the routes
    /// need more than `max_groups` groups.
    pub fn build(
        routes: impl IntoIterator<Item = (Ipv6Addr, u8, u32)>,
        max_groups: u32,
    ) -> Result<Lpm6, FibError> {
        let routes = routes
            .into_iter()
            .map(|(prefix, len, nh)| Ok((check(prefix, len, nh)?, len, nh)))
            .collect::<Result<Vec<_>, FibError>>()?;
        let mut counts = [0usize; 129];
        for &(_, len, _) in &routes {
            counts[len as usize] += 1;
        }
        let hash = RuleHash::new();
        let mut rules: Vec<HashMap<u128, u32, RuleHash>> = counts
            .iter()
            .map(|&n| HashMap::with_capacity_and_hasher(n, hash.clone()))
            .collect();
        for (p, len, nh) in routes {
            rules[len as usize].insert(p, nh);
        }
        // Depth-first order: by prefix, shorter first. Every rule then comes after the rules that cover it and
        // before those it covers, so it meets no deeper group or longer entry in its range (nothing to skip or
        // recurse into) and writes its range once; and the groups are allocated in address order, so a path's
        // groups and those of neighbouring prefixes sit close together (fewer cache and TLB misses, both here
        // and in lookups).
        let mut order: Vec<(u128, u8, u32)> = Vec::with_capacity(counts.iter().sum());
        for (len, r) in rules.iter().enumerate() {
            order.extend(r.iter().map(|(&p, &nh)| (p, len as u8, nh)));
        }
        order.sort_unstable_by_key(|&(p, len, _)| (p, len));
        let t = Lpm6::try_new(max_groups)?;
        let mut w = lock(&t.writer);
        for (p, len, nh) in order {
            t.write_rule(&mut w, p, len, nh)?;
        }
        w.len = rules.iter().map(|r| r.len()).sum();
        w.rules = rules;
        drop(w);
        Ok(t)
    }
}

impl Writer {
    /// The longest rule shorter than `len` containing `p`.
    fn cover(&self, p: u128, len: u8) -> Option<Rule> {
        (0..len).rev().find_map(|d| {
            let r = &self.rules[d as usize];
            if r.is_empty() {
                return None;
            }
            r.get(&(p & mask(d))).map(|&nh| (d, nh))
        })
    }
}

impl Default for Lpm6 {
    /// An empty table with [`DEFAULT_GROUPS`] groups.
    fn default() -> Lpm6 {
        Lpm6::new(DEFAULT_GROUPS)
    }
}

impl fmt::Debug for Lpm6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = lock(&self.writer);
        f.debug_struct("Lpm6")
            .field("routes", &w.len)
            .field("tbl8_groups_in_use", &w.groups.in_use())
            .field("tbl8_groups_max", &self.groups.len())
            .finish()
    }
}
