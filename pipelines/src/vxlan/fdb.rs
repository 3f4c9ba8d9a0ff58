//! The overlay FDB: remote VTEPs as virtual ports, and the MAC-to-VTEP entries of a domain.
//!
//! The entries themselves live in tables the bridge already has (see the [module docs](super)): static
//! entries in the domain's sorted statics, entries from an external feed in [`super::Overlay::fed`], learned
//! ones in the domain's MAC table. What is new here is the [`VtepTable`], which gives every remote VTEP
//! address a small index so that "MAC on VTEP 192.0.2.7" fits one 64-bit slot as "MAC on port 0x8003".
//!
//! The decapsulation registers the sender of every packet it accepts, on every worker at once, so the table
//! is lock-free: an append-only array of addresses (index to address, one relaxed load for the encapsulation)
//! and an open-addressed index over it (address to index, one or two cache lines for the decapsulation),
//! filled with compare-and-swap. Addresses are never removed (a VTEP that went away costs 12 bytes until
//! restart); the table is kept across reloads so that learned entries keep meaning the same VTEP.

use super::{is_vtep_port, vtep_index, vtep_port, Overlay, MAX_VTEPS};
use crate::bridge::mac_table::Mac;
use crate::bridge::BridgeDomain;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// How far from its home slot the index probes.
const PROBE: usize = 32;

/// Remote VTEP addresses by index, and the index by address. See the module docs.
pub struct VtepTable {
    /// Index to address (host order; 0: not assigned).
    addrs: Box<[AtomicU32]>,
    /// Indices handed out (some may be unused after a lost insertion race).
    next: AtomicUsize,
    /// Open addressing: `address << 32 | (index + 1)`, 0 empty.
    slots: Box<[AtomicU64]>,
    mask: usize,
}

impl std::fmt::Debug for VtepTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VtepTable")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[inline(always)]
fn home(addr: u32, mask: usize) -> usize {
    (addr.wrapping_mul(0x9e37_79b9) >> 8) as usize & mask
}

impl VtepTable {
    /// A table for `capacity` VTEPs (at least 1, at most [`MAX_VTEPS`]).
    pub fn new(capacity: usize) -> VtepTable {
        let cap = capacity.clamp(1, MAX_VTEPS);
        let n = (cap * 2).next_power_of_two().max(64);
        VtepTable {
            addrs: (0..cap).map(|_| AtomicU32::new(0)).collect(),
            next: AtomicUsize::new(0),
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
        }
    }

    /// Most VTEPs the table holds.
    pub fn capacity(&self) -> usize {
        self.addrs.len()
    }

    /// VTEPs registered.
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// True when no VTEP is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The address of VTEP `index` (`None`: not assigned).
    #[inline]
    pub fn addr(&self, index: usize) -> Option<[u8; 4]> {
        match self.addrs.get(index)?.load(Ordering::Acquire) {
            0 => None,
            a => Some(a.to_be_bytes()),
        }
    }

    /// The index of `addr`, if registered.
    #[inline]
    pub fn find(&self, addr: [u8; 4]) -> Option<usize> {
        let a = u32::from_be_bytes(addr);
        let h = home(a, self.mask);
        for i in 0..PROBE {
            let w = self.slots[(h + i) & self.mask].load(Ordering::Acquire);
            if w == 0 {
                return None;
            }
            if (w >> 32) as u32 == a {
                return Some((w as u32 - 1) as usize);
            }
        }
        None
    }

    /// The index of `addr`, registering it if new. `None` for the unspecified address or when the table (or
    /// the address's probe window) is full.
    #[inline]
    pub fn intern(&self, addr: [u8; 4]) -> Option<usize> {
        let a = u32::from_be_bytes(addr);
        if a == 0 {
            return None;
        }
        let h = home(a, self.mask);
        let mut mine: Option<usize> = None;
        let mut i = 0;
        while i < PROBE {
            let slot = &self.slots[(h + i) & self.mask];
            let w = slot.load(Ordering::Acquire);
            if w != 0 {
                if (w >> 32) as u32 == a {
                    // Present (perhaps inserted by another worker just now); an index we took stays unused.
                    return Some((w as u32 - 1) as usize);
                }
                i += 1;
                continue;
            }
            let idx = match mine {
                Some(idx) => idx,
                None => {
                    let idx = self
                        .next
                        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                            (n < self.addrs.len()).then_some(n + 1)
                        })
                        .ok()?;
                    self.addrs[idx].store(a, Ordering::Release);
                    mine = Some(idx);
                    idx
                }
            };
            let word = (a as u64) << 32 | (idx as u64 + 1);
            match slot.compare_exchange(0, word, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(idx),
                // Someone took this slot: look at it again (it may be this address).
                Err(_) => continue,
            }
        }
        None
    }

    /// Every registered VTEP as (index, address), in index order.
    pub fn entries(&self) -> Vec<(usize, Ipv4Addr)> {
        let mut v: Vec<(usize, Ipv4Addr)> = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|&w| w != 0)
            .map(|w| ((w as u32 - 1) as usize, Ipv4Addr::from((w >> 32) as u32)))
            .collect();
        v.sort_unstable();
        v
    }
}

/// Where an FDB entry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The config's `fdb` list.
    Static,
    /// An external feed (`wharf ctl vxlan fdb add`).
    Fed,
    /// Learned from a decapsulated packet.
    Learned,
}

impl Source {
    /// The name `wharf ctl show vxlan` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Fed => "fed",
            Source::Learned => "learned",
        }
    }
}

/// One remote FDB entry, for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The inner MAC.
    pub mac: Mac,
    /// The remote VTEP it is behind.
    pub vtep: Ipv4Addr,
    /// Where the entry comes from.
    pub source: Source,
    /// Seconds since last seen (learned entries; 0 otherwise).
    pub age_s: u32,
}

/// Every remote entry of overlay domain `bd` (statics, fed, learned on a virtual port), for
/// `wharf ctl show vxlan`. Local MACs (on real ports) are not listed; `show mac` has them.
pub fn entries(bd: &BridgeDomain, vteps: &VtepTable, now_s: u32) -> Vec<Entry> {
    let vtep_of = |p: u16| {
        is_vtep_port(p)
            .then(|| vteps.addr(vtep_index(p)))
            .flatten()
            .map(Ipv4Addr::from)
    };
    let mut out = Vec::new();
    for &(k, p) in &bd.statics {
        if let Some(vtep) = vtep_of(p) {
            let b = k.to_be_bytes();
            out.push(Entry {
                mac: [b[2], b[3], b[4], b[5], b[6], b[7]],
                vtep,
                source: Source::Static,
                age_s: 0,
            });
        }
    }
    if let Some(ov) = &bd.overlay {
        for (mac, p, _) in ov.fed.entries(now_s) {
            if let Some(vtep) = vtep_of(p) {
                out.push(Entry {
                    mac,
                    vtep,
                    source: Source::Fed,
                    age_s: 0,
                });
            }
        }
    }
    for (mac, p, age_s) in bd.table.entries(now_s) {
        if let Some(vtep) = vtep_of(p) {
            out.push(Entry {
                mac,
                vtep,
                source: Source::Learned,
                age_s,
            });
        }
    }
    out
}

/// Why a feed's change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedError {
    /// The MAC is zero or multicast.
    BadMac,
    /// The VTEP address is unspecified, or the VTEP table is full.
    NoVtep,
    /// The fed table is full (its limit, or both candidate buckets).
    Full,
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeedError::BadMac => "the MAC must be unicast and not zero",
            FeedError::NoVtep => "the VTEP address is unspecified or the VTEP table is full",
            FeedError::Full => "the overlay's fed FDB is full",
        })
    }
}

/// Adds or moves a fed entry (`mac` behind `vtep`) of overlay `ov`: lock-free, seen by the workers' next
/// lookup, no snapshot published. The VTEP gets a virtual port if it has none.
pub fn feed_add(
    ov: &Overlay,
    vteps: &VtepTable,
    mac: &Mac,
    vtep: Ipv4Addr,
) -> Result<(), FeedError> {
    use crate::bridge::mac_table::LearnOutcome;
    let idx = vteps.intern(vtep.octets()).ok_or(FeedError::NoVtep)?;
    match ov.fed.learn(mac, vtep_port(idx), 0) {
        LearnOutcome::Known | LearnOutcome::Learned | LearnOutcome::Moved { .. } => Ok(()),
        LearnOutcome::Refused => Err(FeedError::BadMac),
        LearnOutcome::LimitReached | LearnOutcome::TableFull => Err(FeedError::Full),
    }
}

/// Removes a fed entry; true if it was there.
pub fn feed_del(ov: &Overlay, mac: &Mac) -> bool {
    ov.fed.remove(mac)
}

/// How a virtual port is shown among a bridge's members: `vxlan:ADDRESS`.
pub fn vtep_name(vteps: &VtepTable, port: u16) -> String {
    match vteps.addr(vtep_index(port)) {
        Some(a) => format!("vxlan:{}", Ipv4Addr::from(a)),
        None => format!("vxlan:#{}", vtep_index(port)),
    }
}
