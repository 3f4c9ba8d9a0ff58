//! Packets waiting for their next hop's MAC: a small bounded queue per worker.
//!
//! When a routed packet's neighbour is unresolved, the worker sends a request and parks the packet here
//! instead of dropping it (the first ping of a conversation would otherwise be lost). The queue is bounded in
//! total and per neighbour, preallocated, and checked again when the shared neighbour table reports a change
//! or a deadline passes; whatever is still unresolved at its deadline is dropped as `no_neighbor`.

use super::neigh::{NeighKey, NeighTable, Neighbor};
use crate::ethernet::Mac;
use dataplane::Pkt;

/// Packets one worker holds in total.
pub const CAPACITY: usize = 256;
/// Packets held for one neighbour (Linux's `unres_qlen_bytes` is about this many small packets per entry).
pub const PER_NEIGHBOR: usize = 32;
/// How long a packet waits for its neighbour (three ARP retries a second apart).
pub const WAIT_NS: u64 = 3_000_000_000;

struct Waiting {
    pkt: Pkt,
    key: NeighKey,
    deadline_ns: u64,
    generation: u64,
}

/// One worker's waiting packets.
pub struct Pending {
    waiting: Vec<Waiting>,
    /// The neighbour table version last looked at.
    seen_version: u64,
    /// Earliest deadline in the queue (`u64::MAX` when empty).
    next_deadline_ns: u64,
    /// When the unresolved neighbours are asked again (`u64::MAX` when nothing waits).
    next_retry_ns: u64,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            waiting: Vec::with_capacity(CAPACITY),
            seen_version: 0,
            next_deadline_ns: u64::MAX,
            next_retry_ns: u64::MAX,
        }
    }
}

/// What became of the packets looked at by [`Pending::poll`].
pub enum Released<'a> {
    /// Resolved: send on the key's interface to this MAC.
    Resolved(Pkt, NeighKey, Mac),
    /// Deadline passed or the configuration changed under it.
    Expired(Pkt),
    /// Still waiting and a second has passed: ask the neighbour again (the packet is lent as a template for
    /// the request's buffer).
    Retry(NeighKey, &'a Pkt),
}

/// How often an unanswered neighbour is asked again while packets wait for it.
pub const RETRY_NS: u64 = 1_000_000_000;

impl Pending {
    /// Number of packets waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Parks `pkt` for `key`; gives it back when the queue (or this neighbour's share) is full.
    pub fn park(
        &mut self,
        pkt: Pkt,
        key: NeighKey,
        now_ns: u64,
        generation: u64,
    ) -> Result<(), Pkt> {
        if self.waiting.len() >= CAPACITY
            || self.waiting.iter().filter(|w| w.key == key).count() >= PER_NEIGHBOR
        {
            return Err(pkt);
        }
        let deadline_ns = now_ns + WAIT_NS;
        self.next_deadline_ns = self.next_deadline_ns.min(deadline_ns);
        self.next_retry_ns = self.next_retry_ns.min(now_ns + RETRY_NS);
        // Within the preallocated capacity: no allocation.
        self.waiting.push(Waiting {
            pkt,
            key,
            deadline_ns,
            generation,
        });
        Ok(())
    }

    /// Whether [`Pending::poll`] has anything to do: packets wait and the table changed, a deadline passed
    /// or a retry is due.
    #[inline]
    pub fn due(&self, table: &NeighTable, now_ns: u64) -> bool {
        !self.waiting.is_empty()
            && (table.version() != self.seen_version
                || now_ns >= self.next_deadline_ns
                || now_ns >= self.next_retry_ns)
    }

    /// Releases every packet whose neighbour resolved or whose time is up, handing each to `f`; when a retry is
    /// due, also lends `f` every packet still waiting ([`Released::Retry`]; the neighbour table's own rate
    /// limit keeps it to one request per neighbour a second).
    pub fn poll(
        &mut self,
        table: &NeighTable,
        now_ns: u64,
        generation: u64,
        mut f: impl FnMut(Released<'_>),
    ) {
        self.seen_version = table.version();
        let retry = now_ns >= self.next_retry_ns;
        let mut next = u64::MAX;
        let mut i = 0;
        while i < self.waiting.len() {
            let w = &self.waiting[i];
            let resolved = match table.lookup(&w.key) {
                Some(Neighbor::Reachable { mac, .. }) if w.generation == generation => Some(mac),
                _ => None,
            };
            if resolved.is_none() && w.generation == generation && now_ns < w.deadline_ns {
                next = next.min(w.deadline_ns);
                if retry {
                    f(Released::Retry(w.key, &w.pkt));
                }
                i += 1;
                continue;
            }
            let w = self.waiting.remove(i); // keeps the order of what waits for one neighbour
            f(match resolved {
                Some(mac) => Released::Resolved(w.pkt, w.key, mac),
                None => Released::Expired(w.pkt),
            });
        }
        self.next_deadline_ns = next;
        if self.waiting.is_empty() {
            self.next_retry_ns = u64::MAX;
        } else if retry {
            self.next_retry_ns = now_ns + RETRY_NS;
        }
    }
}
