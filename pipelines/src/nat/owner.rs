//! Which worker owns a packet's flow, computed from the packet and the configuration alone (no table lookup),
//! so a worker can hand a packet to its owner before touching any flow table (DESIGN.md: each worker owns its
//! flows; a packet that arrives on the wrong worker goes through a bounded queue).
//!
//! RSS spreads packets by a symmetric hash of the tuple *as it is on the wire*, which differs between the
//! two sides of a translated flow. The rules, for a packet's [`Parsed::key`] (for an ICMP error, the key of
//! an answer to the packet it quotes, so an error goes where its flow is):
//!
//! - **In to out** (from an endpoint, leaving through the uplink):
//!   - from a published backend (protocol, source address and port are a mapping's backend): the reply of a
//!     DNAT flow, owned like its original direction: by [`PortSplit::worker_of`] of the destination port
//!     when the destination is an external address's dynamic port (the reply of a hairpin flow), else by
//!     [`owner_of_remote`] of the destination (the outside client);
//!   - an ICMP error about anything else (an endpoint's port unreachable about a reply it got): the flow's
//!     owner is the worker RSS gives the quoted flow, which the error's own hash (its outer addresses) does
//!     not name: [`Owner::Search`], look here, and on a miss pass it on (at most `workers - 1` times). Such
//!     errors are rare; the alternative, hashing the quote in the dataplane's RSS, would pin this on the NIC.
//!   - anything else: the receiving worker ([`Owner::Here`]). Its first packet creates the flow there, with a
//!     port from that worker's slice, and RSS brings every later packet of that direction to the same worker.
//! - **Out to in** (arriving on the uplink for an external address):
//!   - to a published port: [`owner_of_remote`] of the source (the client);
//!   - to a port (or ICMP identifier) of the dynamic range: [`PortSplit::worker_of`] it;
//!   - anything else is not NAT traffic (`None`).
//!
//! So SNAT flows never move in the in-to-out direction and their replies move once, or not at all when the
//! outside port's RSS is known and the port was chosen for it (`stage::alloc_port`); DNAT flows move when
//! RSS put them elsewhere. `tests/nat.rs` runs every kind of flow over four workers with random RSS and
//! checks that each packet reaches the worker that holds its flow.

use super::conntrack::Key4;
use super::ports::{owner_of_remote, PortSplit};
use super::translate::Parsed;

/// What the owner rules need to know of the configuration (implemented by the compiled NAT tables).
pub trait NatConfig {
    /// Whether `addr` is one of the external (uplink) addresses.
    fn is_external(&self, addr: u32) -> bool;
    /// Whether (`proto`, `addr`, `port`) is a published mapping's public side.
    fn is_published(&self, proto: u8, addr: u32, port: u16) -> bool;
    /// Whether (`proto`, `addr`, `port`) is a backend some published mapping forwards to.
    fn is_backend(&self, proto: u8, addr: u32, port: u16) -> bool;
}

/// Where an in-to-out packet's flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// On the receiving worker (which creates it if it is new).
    Here,
    /// On this worker: hand the packet over.
    Worker(u16),
    /// Unknown (an ICMP error from an endpoint about a flow that is not a published mapping's): look it up
    /// here, and on a miss hand it to the next worker, at most `workers - 1` times; never create a flow.
    Search,
}

/// The owner of an in-to-out packet's flow.
#[inline]
pub fn owner_in_to_out(p: &Parsed, split: &PortSplit, cfg: &impl NatConfig) -> Owner {
    let k: &Key4 = &p.key;
    if !cfg.is_backend(k.proto, k.src, k.sport) {
        return if p.is_icmp_error() {
            Owner::Search
        } else {
            Owner::Here
        };
    }
    if cfg.is_external(k.dst) {
        if let Some(w) = split.worker_of(k.dport) {
            return Owner::Worker(w);
        }
    }
    Owner::Worker(owner_of_remote(k.dst, k.dport, split.workers()))
}

/// The worker that owns the flow of an out-to-in packet, or `None` if it is not for the NAT (not to an
/// external address, or to a port that is neither published nor dynamic).
#[inline]
pub fn owner_out_to_in(p: &Parsed, split: &PortSplit, cfg: &impl NatConfig) -> Option<u16> {
    owner_out_to_in_key(&p.key, split, cfg)
}

/// [`owner_out_to_in`] of a packet's key alone: for a TCP or UDP packet, its own 5-tuple (an ICMP error's
/// key is not the one on the wire: use [`owner_out_to_in`] on its parse). Always inlined: per packet, in the
/// stage and in the L3 stage's first pass.
#[inline(always)]
pub fn owner_out_to_in_key(k: &Key4, split: &PortSplit, cfg: &impl NatConfig) -> Option<u16> {
    if !cfg.is_external(k.dst) {
        return None;
    }
    if cfg.is_published(k.proto, k.dst, k.dport) {
        return Some(owner_of_remote(k.src, k.sport, split.workers()));
    }
    split.worker_of(k.dport)
}
