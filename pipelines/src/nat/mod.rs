//! NAT and connection tracking: per-worker flow tables, NAT port allocation split per worker, in-place IPv4
//! translation with incremental checksums (ICMP errors included), a Maglev table for load-balanced mappings,
//! and the stage that drives them from the L3 stage ([`stage`], called by `l3/nat.rs` around the IPv4 FIB
//! lookup). Nothing here does I/O, locks, or allocates per packet.
//!
//! - [`conntrack`]: [`conntrack::FlowTable`], a worker's flows keyed by 5-tuple in both directions, TCP
//!   state, timeouts, bounded-work expiry, a limit.
//! - [`ports`]: [`ports::PortAllocator`], a worker's slice of the external ports (and ICMP identifiers) of
//!   each external address; [`ports::PortSplit::worker_of`] names the worker that owns a port;
//!   [`ports::EimTable`], endpoint-independent mappings (RFC 4787) for UDP.
//! - [`translate`]: [`translate::parse`] reads a packet's flow key (for an ICMP error: the key of the flow it
//!   is about), [`translate::translate`] rewrites the packet to a flow's target.
//! - [`maglev`]: [`maglev::Maglev`], the consistent-hash backend choice for new flows of a service.
//! - [`owner`]: which worker owns a packet's flow, from the packet and the configuration alone.
//! - [`stage`]: the compiled configuration ([`stage::NatTables`]), the per-worker state and the handoff
//!   queues, and the two verdicts the L3 stage asks for ([`stage::pre_route`], [`stage::post_route`]).
//!
//! # How a packet goes through (per worker)
//!
//! ```text
//! let info = translate::parse(ip)?;                      // key, TCP flags, or "ICMP error about key"
//! match table.lookup(&info.key) {
//!     Some((id, dir)) => {                                // a known flow
//!         if !info.is_icmp_error() && table.track(id, dir, info.tcp_flags, now_s) == Track::Invalid { drop }
//!         translate::translate(ip, &info, &table.get(id).target(dir))?;
//!     }
//!     None => {                                           // a new flow: not from an ICMP error, an echo
//!                                                         // reply, or TCP without SYN (insert refuses it)
//!         decide from the config: SNAT (alloc a port), DNAT (published port, perhaps Maglev), or none;
//!         reply = reverse of the translated key;
//!         table.insert(info.key, reply, info.tcp_flags, tag, now_s)?;  // Full -> nat_exhausted
//!         translate::translate(ip, &info, &reply.reversed())?;
//!     }
//! }
//! table.expire(now_s, 16, |flow| release its port if it had one);   // once per burst; more when idle
//! ```
//!
//! # Wiring (as built in [`stage`] and `l3/nat.rs`)
//!
//! - **State.** Each worker owns a `NatState { table: FlowTable4, ports: PortAllocator, stats }` beside its
//!   `L3State`; the configuration (external addresses, port range, published mappings, Maglev tables,
//!   timeouts, limit) lives in the snapshot. A new snapshot does not rebuild the state; changed timeouts are
//!   applied with [`conntrack::FlowTable::set_timeouts`].
//! - **Where.** After routing has chosen the output interface (DESIGN.md: `route -> [nat] -> encap`): a packet
//!   leaving through an uplink from a masqueraded network is *in-to-out*; a packet arriving on an uplink for
//!   an external address is *out-to-in*. Out-to-in DNAT must happen before the FIB lookup (the destination
//!   changes), so the L3 stage calls `nat::out_to_in` before its lookup and `nat::in_to_out` after it, for
//!   IPv4 only, on the packet from its IPv4 header on (`&mut data[ETH_LEN..]`). The Ethernet frame is not
//!   touched. A burst is handled in three passes: parse and [`conntrack::FlowTable::prefetch`] every packet,
//!   then [`conntrack::FlowTable::prefetch_flow_of`] every packet, then look up, track and translate (at 1M
//!   flows about 5 times faster than one pass, 70 against 370 ns a packet; with a table that fits in the
//!   cache the extra passes cost ~5 ns a packet, so a stage may choose by table size;
//!   `examples/nat_bench.rs`). `tests/nat.rs` has the loop
//!   above in miniature (its `Nat` harness), for one worker and for four.
//! - **ICMP errors wharf sends itself** (TTL exceeded, fragmentation needed) must quote what the sender sent:
//!   in-to-out, the L3 checks run before the NAT (the packet is still untranslated); out-to-in, DNAT has
//!   already rewritten the packet when L3 finds its TTL spent, so the error L3 writes is passed through
//!   in-to-out NAT like any packet from inside: it finds the flow by its quote and is translated back.
//! - **Which worker owns a flow.** RSS spreads packets by a symmetric hash of the untranslated tuple, which
//!   differs between the two sides of a translated flow, so a packet whose flow another worker owns is handed
//!   to it through a bounded `crossbeam::ArrayQueue<Pkt>` per (from, to) pair (full: dropped, counted as
//!   `nat_handoff_drop`; sent: `nat_handoff`). [`owner::owner_in_to_out`] and [`owner::owner_out_to_in`]
//!   name the owner from the parsed packet and the configuration ([`owner::NatConfig`]) without any table
//!   lookup: out-to-in by [`ports::PortSplit::worker_of`] of the destination port (dynamic range) or
//!   [`ports::owner_of_remote`] of the client (published ports); in-to-out from a published backend like its
//!   original direction; any other in-to-out packet stays where RSS put it (it allocates its port from that
//!   worker's slice, which is what brings the replies back), except ICMP errors about such flows, which are
//!   searched for ([`owner::Owner::Search`]). When the outside port's RSS is known
//!   ([`dataplane::rss::Steering`], e.g. `ring`), TCP and UDP masquerade picks, within the slice, a port whose
//!   replies RSS brings to that same worker, so they are not handed over at all.
//! - **SNAT (masquerade).** Key `k` from an endpoint: `ports.alloc_preferring(proto, k.src, hash(k), lands_here)`
//!   gives `(x, p)`; the
//!   reply key is `Key4 { src: k.dst, sport: k.dport, dst: x, dport: p }`; the tag records "port allocated" so
//!   expiry releases it. With endpoint-independent mapping configured for UDP, `eim.acquire(&mut ports, ...)`
//!   ([`ports::EimTable`]) gives the inside endpoint's shared mapping instead, and expiry calls
//!   `eim.release` with the flow's original source (a second tag value).
//! - **DNAT (`publish`).** Key `k` to `host:4000`: the mapping gives the backend `b:80` (for a service,
//!   `maglev.lookup(hash(k.src, k.sport))`); reply key `Key4 { src: b, sport: 80, dst: k.src, dport: k.sport }`;
//!   nothing to release. **Hairpin**: the source is also an endpoint of ours, so the source is translated too
//!   (allocate a port as for SNAT, reply `dst = x, dport = p`): the backend answers wharf, not the endpoint.
//! - **Counters.** `nat_exhausted` for [`conntrack::InsertError::Full`] and [`ports::AllocError`]; the other
//!   errors map to drop reasons through their `drop_reason` methods. `show conntrack` reads
//!   [`conntrack::FlowTable::iter`]; `show nat` reads [`ports::PortAllocator::in_use`] and the stats.
//!
//! Not done here yet: IPv6 parsing and translation (the table already takes [`conntrack::Key6`]), IPv4 fragments (refused with
//! [`translate::NatError::Fragment`]), endpoint-independent *filtering* (a mapping accepts flows only from
//! the remotes it sent to), TCP sequence-window checks.

pub mod conntrack;
pub mod maglev;
pub mod owner;
pub mod ports;
pub mod stage;
pub mod translate;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Odd constants of the hashes (wyhash's).
pub(crate) const K1: u64 = 0xa076_1d64_78bd_642f;
pub(crate) const K2: u64 = 0xe703_7ed1_a0b4_28db;

/// 64x64 -> 128-bit multiply folded to 64 bits: one `mul` on x86_64, and every input bit reaches the low bits.
#[inline(always)]
pub(crate) fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Maps a hash onto `0..n` (`n` below 2^32) by a multiply instead of a division (Lemire's reduction).
#[inline(always)]
pub(crate) fn reduce(h: u64, n: u64) -> u64 {
    ((h >> 32) * n) >> 32
}

/// Two random 64-bit seeds (from the standard library's per-process random keys).
pub(crate) fn random_seeds() -> [u64; 2] {
    let s = RandomState::new();
    [s.hash_one(0x6e61_7401_u64), s.hash_one(0x6e61_7402_u64)]
}
