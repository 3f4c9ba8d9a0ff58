//! The neighbour cache (ARP and IPv6 ND): IP address on an interface → MAC, shared by every worker.
//!
//! Workers write it themselves (a reply to our request, a request for one of our addresses) and read it for
//! every routed packet, so readers must never wait: each entry is guarded by a sequence counter (a seqlock).
//! A reader copies the entry and retries if the counter moved or was odd; a writer claims the entry by moving
//! the counter from even to odd with a compare-and-swap, writes, and makes it even again. Writers are rare
//! (one per resolution or refresh), so a writer that loses the race simply skips its update.
//!
//! Entries live in an open-addressed table probed linearly over a short window; a full window refuses a new
//! entry (counted by the caller as an unresolved neighbour). The control thread ages entries out.

use crate::ethernet::Mac;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How far from its home slot an entry may be placed.
const PROBE: usize = 8;

/// No entry.
const ST_FREE: u32 = 0;
/// Being resolved: a request went out at `requested_s`, no answer yet.
const ST_INCOMPLETE: u32 = 1;
/// Resolved, confirmed at `confirmed_s`.
const ST_REACHABLE: u32 = 2;
/// Configured by the control plane: never aged, never overwritten by what the wire says.
const ST_STATIC: u32 = 3;

/// A neighbour's address: an interface index and an IPv4 (as a mapped IPv6) or IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NeighKey {
    /// Router interface index.
    pub iface: u16,
    /// IPv6 address, or an IPv4 address as `::ffff:a.b.c.d`.
    pub ip: u128,
}

impl NeighKey {
    /// The key of IPv4 address `ip` (host order) on `iface`.
    #[inline]
    pub fn v4(iface: u16, ip: u32) -> NeighKey {
        NeighKey {
            iface,
            ip: 0xffff_0000_0000 | ip as u128,
        }
    }

    /// The key of IPv6 address `ip` on `iface`.
    #[inline]
    pub fn v6(iface: u16, ip: [u8; 16]) -> NeighKey {
        NeighKey {
            iface,
            ip: u128::from_be_bytes(ip),
        }
    }

    /// Whether this is an IPv4 neighbour.
    pub fn is_v4(&self) -> bool {
        self.ip >> 32 == 0xffff
    }

    /// The address, for display.
    pub fn addr(&self) -> std::net::IpAddr {
        if self.is_v4() {
            std::net::IpAddr::V4((self.ip as u32).into())
        } else {
            std::net::IpAddr::V6(self.ip.into())
        }
    }

    #[inline]
    fn hash(&self) -> u64 {
        let x = (self.ip as u64) ^ ((self.ip >> 64) as u64).rotate_left(17) ^ self.iface as u64;
        // Murmur3's finaliser: the low bits pick the slot.
        let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Neighbor {
    /// Resolved to `mac`, last confirmed at `confirmed_s` (`u32::MAX` for a static entry).
    Reachable {
        /// The neighbour's MAC.
        mac: Mac,
        /// Seconds on the shared clock.
        confirmed_s: u32,
    },
    /// A request is out (sent at `requested_s`), no answer yet.
    Incomplete {
        /// Seconds on the shared clock.
        requested_s: u32,
    },
}

/// One slot: a cache line, so a reader touches exactly one.
#[repr(C, align(64))]
#[derive(Default)]
struct Slot {
    seq: AtomicU32,
    state: AtomicU32,
    ip_hi: AtomicU64,
    ip_lo: AtomicU64,
    /// MAC in the low 48 bits, interface index in the high 16.
    mac_iface: AtomicU64,
    confirmed_s: AtomicU32,
    requested_s: AtomicU32,
}

/// A copy of a slot, read consistently.
#[derive(Clone, Copy)]
struct Entry {
    state: u32,
    key: NeighKey,
    mac: Mac,
    confirmed_s: u32,
    requested_s: u32,
}

/// What [`NeighTable::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnOutcome {
    /// A new entry, or an incomplete one resolved, or the MAC changed.
    Learned,
    /// Same MAC, confirmation time refreshed.
    Refreshed,
    /// A static entry was left as it was.
    Static,
    /// No slot free near the key's home.
    Full,
}

/// The shared neighbour cache. See the module docs.
pub struct NeighTable {
    slots: Box<[Slot]>,
    mask: usize,
    /// Bumped whenever an entry becomes reachable, changes MAC or is removed: workers with packets waiting know
    /// when to look again, and workers' next-hop caches when to forget.
    version: AtomicU64,
}

impl std::fmt::Debug for NeighTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeighTable")
            .field("capacity", &self.slots.len())
            .field("entries", &self.len())
            .finish()
    }
}

fn mac_to_u64(m: &Mac) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

fn u64_to_mac(v: u64) -> Mac {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

impl NeighTable {
    /// A table of at least `capacity` slots (rounded up to a power of two, at least 64).
    pub fn new(capacity: usize) -> NeighTable {
        let n = capacity.max(64).next_power_of_two();
        NeighTable {
            slots: (0..n).map(|_| Slot::default()).collect(),
            mask: n - 1,
            version: AtomicU64::new(0),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Changes whenever an entry becomes reachable, changes MAC or is removed.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Reads slot `i` consistently, or `None` if a writer kept it busy.
    #[inline]
    fn read(&self, i: usize) -> Option<Entry> {
        let s = &self.slots[i & self.mask];
        for _ in 0..4 {
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let state = s.state.load(Ordering::Relaxed);
            let hi = s.ip_hi.load(Ordering::Relaxed);
            let lo = s.ip_lo.load(Ordering::Relaxed);
            let mi = s.mac_iface.load(Ordering::Relaxed);
            let confirmed_s = s.confirmed_s.load(Ordering::Relaxed);
            let requested_s = s.requested_s.load(Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) == seq {
                return Some(Entry {
                    state,
                    key: NeighKey {
                        iface: (mi >> 48) as u16,
                        ip: ((hi as u128) << 64) | lo as u128,
                    },
                    mac: u64_to_mac(mi),
                    confirmed_s,
                    requested_s,
                });
            }
        }
        None
    }

    /// Claims slot `i` for writing if its sequence is still `seq`; returns the guard that publishes on drop.
    fn claim(&self, i: usize, seq: u32) -> Option<WriteGuard<'_>> {
        let s = &self.slots[i & self.mask];
        s.seq
            .compare_exchange(seq, seq | 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(WriteGuard { slot: s, seq })
    }

    /// Finds `key`: its slot index and a consistent copy.
    #[inline]
    fn find(&self, key: &NeighKey) -> Option<(usize, Entry, u32)> {
        let home = key.hash() as usize;
        for d in 0..PROBE {
            let i = (home + d) & self.mask;
            let seq = self.slots[i].seq.load(Ordering::Acquire);
            let e = self.read(i)?;
            if e.state != ST_FREE && e.key == *key {
                return Some((i, e, seq & !1));
            }
        }
        None
    }

    /// Looks `key` up.
    #[inline]
    pub fn lookup(&self, key: &NeighKey) -> Option<Neighbor> {
        let (_, e, _) = self.find(key)?;
        Some(match e.state {
            ST_INCOMPLETE => Neighbor::Incomplete {
                requested_s: e.requested_s,
            },
            ST_STATIC => Neighbor::Reachable {
                mac: e.mac,
                confirmed_s: u32::MAX,
            },
            _ => Neighbor::Reachable {
                mac: e.mac,
                confirmed_s: e.confirmed_s,
            },
        })
    }

    /// Looks `key` up for forwarding: the MAC and the confirmation second (`u32::MAX` for a static entry) of a
    /// reachable entry; `None` for anything else (no entry, incomplete, or a slot a writer kept busy), which the
    /// caller then handles through [`NeighTable::lookup`]. Every routed packet calls it: it compares the slot's
    /// words with the key in place instead of copying an `Entry` out, and reads each slot's sequence once.
    #[inline]
    pub fn lookup_reachable(&self, key: &NeighKey) -> Option<(Mac, u32)> {
        let home = key.hash() as usize;
        let (hi, lo) = ((key.ip >> 64) as u64, key.ip as u64);
        for d in 0..PROBE {
            let s = &self.slots[(home + d) & self.mask];
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                return None;
            }
            let state = s.state.load(Ordering::Relaxed);
            let h = s.ip_hi.load(Ordering::Relaxed);
            let l = s.ip_lo.load(Ordering::Relaxed);
            let mi = s.mac_iface.load(Ordering::Relaxed);
            let confirmed_s = s.confirmed_s.load(Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) != seq {
                return None;
            }
            if state != ST_FREE && h == hi && l == lo && (mi >> 48) as u16 == key.iface {
                return match state {
                    ST_REACHABLE => Some((u64_to_mac(mi), confirmed_s)),
                    ST_STATIC => Some((u64_to_mac(mi), u32::MAX)),
                    _ => None,
                };
            }
        }
        None
    }

    /// Warms the home slot of `key`.
    #[inline]
    pub fn prefetch(&self, key: &NeighKey) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = &self.slots[key.hash() as usize & self.mask] as *const Slot as *const i8;
            // SAFETY: prefetch is a hint; the pointer is in bounds of the slot array.
            unsafe { std::arch::x86_64::_mm_prefetch(p, std::arch::x86_64::_MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// Writes `key` into a free slot of its window (or refuses when none is free).
    fn insert(&self, key: &NeighKey, state: u32, mac: &Mac, now_s: u32) -> bool {
        let home = key.hash() as usize;
        for d in 0..PROBE {
            let i = (home + d) & self.mask;
            let seq = self.slots[i].seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                continue;
            }
            if self.slots[i].state.load(Ordering::Relaxed) != ST_FREE {
                continue;
            }
            if let Some(g) = self.claim(i, seq) {
                if g.slot.state.load(Ordering::Relaxed) != ST_FREE {
                    continue; // taken between the check and the claim
                }
                g.write(key, state, mac, now_s);
                return true;
            }
        }
        false
    }

    /// Records that `key` is at `mac` (from an ARP/ND message). Static entries are kept.
    pub fn learn(&self, key: &NeighKey, mac: &Mac, now_s: u32) -> LearnOutcome {
        if let Some((i, e, seq)) = self.find(key) {
            if e.state == ST_STATIC {
                return LearnOutcome::Static;
            }
            let same = e.state == ST_REACHABLE && e.mac == *mac;
            if same && e.confirmed_s == now_s {
                return LearnOutcome::Refreshed;
            }
            if let Some(g) = self.claim(i, seq) {
                g.write(key, ST_REACHABLE, mac, now_s);
            }
            if same {
                return LearnOutcome::Refreshed;
            }
            self.version.fetch_add(1, Ordering::Release);
            return LearnOutcome::Learned;
        }
        if self.insert(key, ST_REACHABLE, mac, now_s) {
            self.version.fetch_add(1, Ordering::Release);
            LearnOutcome::Learned
        } else {
            LearnOutcome::Full
        }
    }

    /// Updates `key` only if it is already known (RFC 826: a request from a known sender refreshes it, one from
    /// an unknown sender not addressed to us creates nothing).
    pub fn refresh(&self, key: &NeighKey, mac: &Mac, now_s: u32) -> Option<LearnOutcome> {
        self.find(key)?;
        Some(self.learn(key, mac, now_s))
    }

    /// Whether the caller should send a request for `key` now: true when there is no entry (one is created as
    /// incomplete) or the last request went out at least `retry_s` seconds ago (the request time is updated, so
    /// of several workers only one sends). A reachable entry is re-requested the same way when the caller decides
    /// it is stale.
    pub fn should_request(&self, key: &NeighKey, now_s: u32, retry_s: u32) -> bool {
        match self.find(key) {
            Some((i, e, _)) => {
                if e.state == ST_STATIC {
                    return false;
                }
                if e.requested_s != 0 && now_s.wrapping_sub(e.requested_s) < retry_s {
                    return false;
                }
                let s = &self.slots[i & self.mask];
                s.requested_s
                    .compare_exchange(
                        e.requested_s,
                        now_s.max(1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            }
            None => self.insert(key, ST_INCOMPLETE, &[0; 6], now_s),
        }
    }

    /// Sets a static entry (control thread). Returns false when the key's window is full.
    pub fn set_static(&self, key: &NeighKey, mac: &Mac) -> bool {
        if let Some((i, _, seq)) = self.find(key) {
            if let Some(g) = self.claim(i, seq) {
                g.write(key, ST_STATIC, mac, 0);
                self.version.fetch_add(1, Ordering::Release);
                return true;
            }
            return false;
        }
        let ok = self.insert(key, ST_STATIC, mac, 0);
        if ok {
            self.version.fetch_add(1, Ordering::Release);
        }
        ok
    }

    /// Removes `key` (control thread: `clear neighbors`, or a static entry the config dropped).
    pub fn remove(&self, key: &NeighKey) -> bool {
        match self.find(key) {
            Some((i, _, seq)) => match self.claim(i, seq) {
                Some(g) => {
                    g.slot.state.store(ST_FREE, Ordering::Relaxed);
                    drop(g);
                    self.version.fetch_add(1, Ordering::Release);
                    true
                }
                None => false,
            },
            None => false,
        }
    }

    /// Ages the table (control thread): removes reachable entries unconfirmed for `stale_s` seconds and
    /// incomplete ones whose last request is `incomplete_s` old. Returns how many were removed.
    pub fn age(&self, now_s: u32, stale_s: u32, incomplete_s: u32) -> usize {
        let mut removed = 0;
        for i in 0..self.slots.len() {
            let seq = self.slots[i].seq.load(Ordering::Acquire);
            let Some(e) = self.read(i) else { continue };
            let old = match e.state {
                ST_REACHABLE => now_s.wrapping_sub(e.confirmed_s) >= stale_s,
                ST_INCOMPLETE => now_s.wrapping_sub(e.requested_s) >= incomplete_s,
                _ => false,
            };
            if old {
                if let Some(g) = self.claim(i, seq & !1) {
                    g.slot.state.store(ST_FREE, Ordering::Relaxed);
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            self.version.fetch_add(1, Ordering::Release);
        }
        removed
    }

    /// Removes every learned entry of interfaces `keep` says no (after a reload renumbered them).
    pub fn retain_ifaces(&self, keep: impl Fn(u16) -> bool) {
        for i in 0..self.slots.len() {
            let seq = self.slots[i].seq.load(Ordering::Acquire);
            let Some(e) = self.read(i) else { continue };
            if e.state != ST_FREE && !keep(e.key.iface) {
                if let Some(g) = self.claim(i, seq & !1) {
                    g.slot.state.store(ST_FREE, Ordering::Relaxed);
                    drop(g);
                    self.version.fetch_add(1, Ordering::Release);
                }
            }
        }
    }

    /// Every entry, for `show neighbors`: key, MAC (`None` while incomplete), static flag, confirmation time.
    pub fn entries(&self) -> Vec<(NeighKey, Option<Mac>, bool, u32)> {
        (0..self.slots.len())
            .filter_map(|i| self.read(i))
            .filter(|e| e.state != ST_FREE)
            .map(|e| {
                let mac = (e.state != ST_INCOMPLETE).then_some(e.mac);
                (e.key, mac, e.state == ST_STATIC, e.confirmed_s)
            })
            .collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].state.load(Ordering::Relaxed) != ST_FREE)
            .count()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A claimed slot; dropping it publishes the write (the sequence becomes even again, one step further).
struct WriteGuard<'a> {
    slot: &'a Slot,
    seq: u32,
}

impl WriteGuard<'_> {
    fn write(&self, key: &NeighKey, state: u32, mac: &Mac, now_s: u32) {
        let s = self.slot;
        s.ip_hi.store((key.ip >> 64) as u64, Ordering::Relaxed);
        s.ip_lo.store(key.ip as u64, Ordering::Relaxed);
        s.mac_iface.store(
            mac_to_u64(mac) | ((key.iface as u64) << 48),
            Ordering::Relaxed,
        );
        match state {
            ST_INCOMPLETE => {
                s.requested_s.store(now_s.max(1), Ordering::Relaxed);
                s.confirmed_s.store(0, Ordering::Relaxed);
            }
            _ => {
                s.confirmed_s.store(now_s, Ordering::Relaxed);
                s.requested_s.store(0, Ordering::Relaxed);
            }
        }
        s.state.store(state, Ordering::Relaxed);
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.slot
            .seq
            .store(self.seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lookup_reachable` is `lookup` narrowed to reachable entries, over a crowded table (probe windows in use,
    /// removed slots on the way) and every state.
    #[test]
    fn lookup_reachable_agrees_with_lookup() {
        let t = NeighTable::new(64);
        let key = |i: u32| {
            if i.is_multiple_of(3) {
                NeighKey::v6(
                    (i % 4) as u16,
                    (0xfd00u128 << 112 | i as u128).to_be_bytes(),
                )
            } else {
                NeighKey::v4((i % 4) as u16, 0x0a00_0000 | i)
            }
        };
        for i in 0..48u32 {
            let k = key(i);
            match i % 4 {
                0 => {
                    t.should_request(&k, 5, 1);
                }
                1 => {
                    t.learn(&k, &[2, 0, 0, 0, 1, i as u8], 7 + i);
                }
                2 => {
                    t.set_static(&k, &[2, 0, 0, 0, 2, i as u8]);
                }
                _ => {}
            }
        }
        for i in (0..48u32).step_by(5) {
            t.remove(&key(i));
        }
        for i in 0..64u32 {
            let k = key(i);
            let want = match t.lookup(&k) {
                Some(Neighbor::Reachable { mac, confirmed_s }) => Some((mac, confirmed_s)),
                _ => None,
            };
            assert_eq!(t.lookup_reachable(&k), want, "key {i}");
        }
    }

    #[test]
    fn learn_lookup_refresh_and_static() {
        let t = NeighTable::new(64);
        let k = NeighKey::v4(1, 0x0a00_0001);
        assert_eq!(t.lookup(&k), None);
        assert!(t.should_request(&k, 10, 1));
        assert!(!t.should_request(&k, 10, 1), "one request per second");
        assert_eq!(t.lookup(&k), Some(Neighbor::Incomplete { requested_s: 10 }));
        let v = t.version();
        assert_eq!(t.learn(&k, &[2, 0, 0, 0, 0, 1], 11), LearnOutcome::Learned);
        assert!(t.version() > v);
        assert_eq!(
            t.lookup(&k),
            Some(Neighbor::Reachable {
                mac: [2, 0, 0, 0, 0, 1],
                confirmed_s: 11
            })
        );
        assert_eq!(
            t.learn(&k, &[2, 0, 0, 0, 0, 1], 12),
            LearnOutcome::Refreshed
        );
        // The same address on another interface is another neighbour.
        assert_eq!(t.lookup(&NeighKey::v4(2, 0x0a00_0001)), None);
        // Unknown senders are not created by refresh.
        assert_eq!(
            t.refresh(&NeighKey::v4(1, 9), &[2, 0, 0, 0, 0, 9], 12),
            None
        );
        let s = NeighKey::v6(3, [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert!(t.set_static(&s, &[2, 0, 0, 0, 0, 5]));
        assert_eq!(t.learn(&s, &[2, 0, 0, 0, 0, 6], 13), LearnOutcome::Static);
        assert!(!t.should_request(&s, 13, 1));
        assert_eq!(t.len(), 2);
        // Aging removes the learned one, keeps the static one.
        assert_eq!(t.age(1000, 300, 3), 1);
        assert_eq!(t.len(), 1);
        assert!(t.remove(&s));
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_window_refuses() {
        let t = NeighTable::new(64);
        let mut full = 0;
        for ip in 0..1000u32 {
            if t.learn(&NeighKey::v4(0, ip), &[2, 0, 0, 0, 0, 1], 1) == LearnOutcome::Full {
                full += 1;
            }
        }
        assert!(full > 0);
        assert!(t.len() <= 64);
        // Everything stored is found.
        for (k, mac, _, _) in t.entries() {
            assert_eq!(
                t.lookup(&k),
                Some(Neighbor::Reachable {
                    mac: mac.unwrap(),
                    confirmed_s: 1
                })
            );
        }
    }

    #[test]
    fn readers_never_see_a_torn_entry() {
        let t = std::sync::Arc::new(NeighTable::new(64));
        let k = NeighKey::v4(1, 7);
        t.learn(&k, &[2, 1, 1, 1, 1, 1], 1);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let b = (n % 2) as u8 + 1;
                    t.learn(&k, &[2, b, b, b, b, b], n);
                }
            })
        };
        for _ in 0..200_000 {
            if let Some(Neighbor::Reachable { mac, .. }) = t.lookup(&k) {
                assert!(
                    mac == [2, 1, 1, 1, 1, 1] || mac == [2, 2, 2, 2, 2, 2],
                    "{mac:?}"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
    }
}
