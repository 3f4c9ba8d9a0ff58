//! A worker's cache of resolved next hops: neighbour key → the 12 bytes that start the outgoing frame
//! (the neighbour's MAC, then the router's) and, when the interface is a plain untagged port, that port.
//!
//! Every routed packet needs its next hop's MAC. The shared [`NeighTable`] gives it through a seqlocked read of
//! a hashed slot; this cache, private to the worker, gives it with one compare of a slot the worker alone
//! writes, and hands over the finished Ethernet rewrite (VPP's adjacency rewrite string) so the frame is
//! addressed with one 12-byte store and queued to its port without looking at the interface again.
//!
//! It is never the authority: an entry is used only while the shared table's [`NeighTable::version`] (bumped
//! whenever an entry is created, changes MAC, becomes reachable or is removed) and the snapshot generation
//! are the ones it was filled under, and only while its confirmation is fresh; otherwise the caller goes to
//! the shared table, which also decides when to ask again, and refills the entry. The forwarding fast path
//! checks the version once per burst ([`NextHopCache::sync`]), the general path once per packet.

use super::neigh::{NeighKey, NeighTable};
use crate::ethernet::Mac;

/// Number of slots (direct mapped; a power of two). 1024 slots of 64 bytes: 64 KiB per worker, so a NAT
/// gateway's thousand inside hosts each keep their slot (with 256, the answers to 1000 hosts in
/// `wharf-perf nat-inline` nearly all missed and took the shared table: about 40 instructions a packet).
const SLOTS: usize = 1024;

/// No port: the interface needs the general send (tagged, bridge gateway, VXLAN), not a plain queue.
pub const NO_PORT: u16 = u16::MAX;

/// Marks a free slot (no interface has this index: interfaces are numbered from 0 densely).
const FREE: u16 = u16::MAX;

/// One cached next hop, in one cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Slot {
    ip: u128,
    iface: u16,
    /// The port to queue to, or [`NO_PORT`].
    port: u16,
    /// When the shared entry was last confirmed (`u32::MAX`: static).
    confirmed_s: u32,
    /// Destination MAC then source MAC.
    rewrite: [u8; 12],
}

const EMPTY: Slot = Slot {
    ip: 0,
    iface: FREE,
    port: NO_PORT,
    confirmed_s: 0,
    rewrite: [0; 12],
};

/// What a hit gives the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Destination MAC then source MAC: the first 12 bytes of the frame.
    pub rewrite: [u8; 12],
    /// The port to queue to, or [`NO_PORT`].
    pub port: u16,
}

/// The cache. See the module docs.
pub struct NextHopCache {
    slots: Box<[Slot; SLOTS]>,
    /// The shared table's version the entries were filled under.
    version: u64,
    /// The snapshot generation the entries were filled under.
    generation: u64,
}

impl Default for NextHopCache {
    fn default() -> Self {
        NextHopCache {
            slots: Box::new([EMPTY; SLOTS]),
            version: 0,
            generation: 0,
        }
    }
}

impl std::fmt::Debug for NextHopCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.slots.iter().filter(|s| s.iface != FREE).count();
        f.debug_struct("NextHopCache")
            .field("used", &used)
            .field("version", &self.version)
            .field("generation", &self.generation)
            .finish()
    }
}

/// The slot of `key`. An IPv4 neighbour goes by its address's low bits, shifted by a per-interface offset: the
/// hosts of a subnet are consecutive addresses, so up to [`SLOTS`] of them never share a slot (hashed, a
/// thousand hosts in 1024 slots collide by the hundreds). IPv6 addresses are hashed.
#[inline]
fn index(key: &NeighKey) -> usize {
    if key.is_v4() {
        let off = (key.iface as u32).wrapping_mul(0x9e37_79b9) >> 22;
        return (key.ip as u32).wrapping_add(off) as usize % SLOTS;
    }
    let x = (key.ip as u64) ^ ((key.ip >> 64) as u64) ^ ((key.iface as u64) << 40);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % SLOTS
}

impl NextHopCache {
    /// The entry for `key` if it is valid under `table`'s current version and `generation` and was confirmed
    /// less than `reachable_s` seconds before `now_s` (or is static).
    #[inline]
    pub fn get(
        &mut self,
        table: &NeighTable,
        generation: u64,
        key: &NeighKey,
        now_s: u32,
        reachable_s: u32,
    ) -> Option<Hit> {
        self.sync(table, generation);
        self.get_synced(key, now_s, reachable_s)
    }

    /// Empties the cache if the shared table or the snapshot changed since it was filled. The forwarding fast
    /// path calls this once per burst (and again after any packet it hands to the full path, which may have taught
    /// the shared table something), then [`NextHopCache::get_synced`] per packet: a change another worker makes
    /// in the middle of a burst is seen from the next burst, microseconds later.
    #[inline]
    pub fn sync(&mut self, table: &NeighTable, generation: u64) {
        let version = table.version();
        if version != self.version || generation != self.generation {
            self.reset(version, generation);
        }
    }

    /// [`NextHopCache::get`] without checking the version and generation: for callers that ran
    /// [`NextHopCache::sync`] since anything they did could have changed the shared table.
    #[inline(always)]
    pub fn get_synced(&self, key: &NeighKey, now_s: u32, reachable_s: u32) -> Option<Hit> {
        let s = &self.slots[index(key)];
        if s.iface != key.iface || s.ip != key.ip {
            return None;
        }
        if s.confirmed_s != u32::MAX && now_s.wrapping_sub(s.confirmed_s) >= reachable_s {
            return None;
        }
        Some(Hit {
            rewrite: s.rewrite,
            port: s.port,
        })
    }

    /// Records what the shared table said of `key` (read under the version [`NextHopCache::get`] last saw).
    #[inline]
    pub fn fill(&mut self, key: &NeighKey, dst: &Mac, src: &Mac, confirmed_s: u32, port: u16) {
        let mut rewrite = [0u8; 12];
        rewrite[..6].copy_from_slice(dst);
        rewrite[6..].copy_from_slice(src);
        self.slots[index(key)] = Slot {
            ip: key.ip,
            iface: key.iface,
            port,
            confirmed_s,
            rewrite,
        };
    }

    #[cold]
    fn reset(&mut self, version: u64, generation: u64) {
        self.slots.fill(EMPTY);
        self.version = version;
        self.generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 0xa];
    const R: Mac = [2, 0, 0, 0, 0, 0x1];

    #[test]
    fn hit_only_while_version_generation_and_confirmation_hold() {
        let t = NeighTable::new(64);
        let mut c = NextHopCache::default();
        let k = NeighKey::v4(1, 0x0a00_0001);
        assert_eq!(
            t.learn(&k, &A, 100),
            super::super::neigh::LearnOutcome::Learned
        );
        assert_eq!(c.get(&t, 7, &k, 100, 30), None, "empty");
        c.fill(&k, &A, &R, 100, 3);
        let hit = c.get(&t, 7, &k, 110, 30).expect("filled");
        assert_eq!(&hit.rewrite[..6], &A);
        assert_eq!(&hit.rewrite[6..], &R);
        assert_eq!(hit.port, 3);
        // Another key that maps elsewhere or the same slot: never a false hit.
        assert_eq!(c.get(&t, 7, &NeighKey::v4(2, 0x0a00_0001), 110, 30), None);
        assert_eq!(c.get(&t, 7, &NeighKey::v4(1, 0x0a00_0002), 110, 30), None);
        // Stale confirmation: back to the shared table.
        assert_eq!(c.get(&t, 7, &k, 130, 30), None);
        // A new snapshot empties it.
        assert!(c.get(&t, 8, &k, 110, 30).is_none());
        assert!(
            c.get(&t, 8, &k, 110, 30).is_none(),
            "emptied, not just skipped"
        );
        // A change in the shared table empties it.
        c.fill(&k, &A, &R, 100, 3);
        assert!(c.get(&t, 8, &k, 110, 30).is_some());
        assert!(t.remove(&k));
        assert!(c.get(&t, 8, &k, 110, 30).is_none(), "removal is seen");
        // Static entries never go stale.
        c.fill(&k, &A, &R, u32::MAX, NO_PORT);
        let hit = c.get(&t, 8, &k, 1_000_000, 30).expect("static");
        assert_eq!(hit.port, NO_PORT);
    }

    #[test]
    fn a_subnet_of_hosts_keeps_its_slots() {
        let t = NeighTable::new(64);
        let mut c = NextHopCache::default();
        let _ = c.get(&t, 1, &NeighKey::v4(0, 0), 5, 30);
        // A /22 of hosts on one interface: every one still there after all were filled.
        let hosts = (0..SLOTS as u32).map(|h| NeighKey::v4(0, 0x0a00_1000 + h));
        for k in hosts.clone() {
            c.fill(&k, &A, &R, u32::MAX, 0);
        }
        assert!(hosts.clone().all(|k| c.get(&t, 1, &k, 5, 30).is_some()));
        // IPv6 neighbours are hashed; a hit is still exact.
        let k6 = NeighKey {
            iface: 1,
            ip: 0xfd00_0000_0000_0000_0000_0000_0000_0002,
        };
        c.fill(&k6, &A, &R, u32::MAX, 1);
        assert_eq!(c.get(&t, 1, &k6, 5, 30).map(|h| h.port), Some(1));
    }

    #[test]
    fn a_changed_mac_is_seen() {
        let t = NeighTable::new(64);
        let mut c = NextHopCache::default();
        let k = NeighKey::v4(0, 0xc0a8_0001);
        t.learn(&k, &A, 5);
        let _ = c.get(&t, 1, &k, 5, 30);
        c.fill(&k, &A, &R, 5, 0);
        assert!(c.get(&t, 1, &k, 6, 30).is_some());
        t.learn(&k, &[2, 0, 0, 0, 0, 0xb], 6);
        assert!(c.get(&t, 1, &k, 6, 30).is_none());
    }
}
