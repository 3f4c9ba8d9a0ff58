//! A worker's connection-tracking table: flows keyed by their 5-tuple in both directions, TCP state, timeouts.
//!
//! One table per worker, written only by that worker (DESIGN.md: each worker owns its flows), so nothing here
//! is atomic. Everything is allocated by [`FlowTable::new`] for the configured limit; inserting, tracking and
//! expiring never allocate.
//!
//! - **Flows.** A slab of [`Flow`] records, one cache line each for IPv4 ([`Key4`]), holding the *original*
//!   key (as the first packet was seen) and the *reply* key (what the answer looks like on the wire, after
//!   translation: for a source-NATed flow its destination is the external address and port). The translation
//!   is implicit in the two keys, as in Linux's conntrack: a packet matching one direction is rewritten to the
//!   reverse of the other key ([`Flow::target`]). A free list threads the unused records.
//! - **Index.** Open addressing over `u64` slots with linear probing (eight slots per cache line), at most half
//!   full at the limit (two keys per flow, `4 x limit` rounded up to a power of two). A slot holds the low 32
//!   bits of the key's hash (a filter, and where its probe sequence starts) and the flow index with the
//!   direction; 0 is empty. Removal shifts the following slots back (no tombstones, so churn never degrades
//!   lookups). A lookup reads one index line (rarely two) and the flow's line. Hashes are keyed with random
//!   seeds per table, so crafted tuples cannot pile onto one probe run.
//! - **Expiry** ([`Expiry`]). A packet only stores the flow's new deadline in the line it already holds. By
//!   default a timer wheel of one-second slots finds due flows: a flow sits in the slot of a deadline at or
//!   before its real one; when the slot comes up a flow that is not yet due is moved to the slot of its
//!   current deadline (at most [`WHEEL_SLOTS`] seconds ahead), so a busy flow costs one re-link per wheel turn
//!   or per timeout, never one per packet. A flow whose deadline moves *earlier* (an RST, a FIN) is re-linked
//!   at once. The alternative, [`Expiry::Scan`], walks the slab `k` records per call. Either way
//!   [`FlowTable::expire`] does a bounded amount of work per call (its `budget`): a worker calls it once per
//!   burst and when idle, and a million flows expiring in the same second are freed over many bursts
//!   instead of in one stall. `examples/nat_bench.rs` measures both: with nothing due, a wheel call costs
//!   about 2 ns and a scan call of 64 records 85-140 ns (1k flows) to 320-760 ns (1M flows: 4 KiB of cold
//!   slab a call, 10-20 ns per packet at 32-packet bursts, and 12-15 ns more per packet in the translation
//!   benchmark), while freeing costs about the same either way (30-60 ns a flow at 1k, 130-450 ns at 1M:
//!   cache misses on the flow, its two index runs and its wheel neighbours). The wheel is the default; the
//!   scan needs no links and stays for comparison.
//! - **Limit.** A full table refuses new flows ([`InsertError::Full`], counted as `nat_exhausted`) while the
//!   existing ones keep working.
//!
//! # TCP
//!
//! A simplified version of Linux's `nf_conntrack_tcp` state machine, without sequence-window tracking:
//! [`TcpState`] has SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, TIME_WAIT and CLOSE. Flag
//! combinations that no TCP sends (SYN+FIN, SYN+RST, FIN without ACK, no flags at all...: see
//! [`classify_tcp`]) are [`Track::Invalid`]: the packet is dropped and counted, the flow does not change. New
//! flows start only with a SYN. ESTABLISHED times out after [`Timeouts::tcp_established`] (5 days), CLOSE
//! after [`Timeouts::tcp_close`] (10 s), every other state after [`Timeouts::tcp_transitory`] (2 min).
//!
//! # IPv6
//!
//! The table is generic over its key ([`FlowKey`]): [`FlowTable6`] over [`Key6`] holds IPv6 flows (two cache
//! lines each) with the same states, timeouts and expiry; what IPv6 still lacks is the packet side
//! (parsing and translation are IPv4).

use super::{fold_mul, random_seeds};
use crate::fib::advise_huge_pages;
use crate::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use dataplane::DropReason;
use std::fmt;

/// Seconds covered by the timer wheel (one slot per second). A flow with a longer timeout is looked at once
/// per turn and put back.
pub const WHEEL_SLOTS: usize = 1024;
/// The largest limit a table accepts (larger ones are clamped): 16M flows, about 1.5 GiB with the index.
pub const MAX_LIMIT: usize = 1 << 24;

/// End of a list.
const NIL: u32 = u32::MAX;

/// Flow record flags.
const F_USED: u8 = 1;
/// A packet was seen in the reply direction.
const F_REPLIED: u8 = 2;
/// The first FIN came from the reply side (else from the original side), meaningful in FIN_WAIT/CLOSE_WAIT.
const F_FIN_REPLY: u8 = 4;

/// TCP flag bits, as in the header's 13th byte.
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field significant.
    pub const URG: u8 = 0x20;
}
#[cfg(test)]
use tcp_flags::PSH;
use tcp_flags::{ACK, FIN, RST, SYN, URG};

/// A flow key: what the table hashes and compares. Implemented by [`Key4`]; an IPv6 key follows the same
/// shape.
pub trait FlowKey: Copy + Eq + Default + fmt::Debug {
    /// A 64-bit hash of the key under `seed` (keyed, so a peer cannot aim at one probe run).
    fn hash_with(&self, seed: &[u64; 2]) -> u64;
    /// The key of the same flow seen from the other end: addresses and ports swapped.
    fn reversed(&self) -> Self;
    /// The IP protocol number.
    fn proto(&self) -> u8;
}

/// An IPv4 flow key: addresses (host order, as `Ipv4Addr::to_bits`), ports and protocol. For ICMP echo both
/// ports hold the identifier, so reversing keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Key4 {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Source port (ICMP echo: the identifier).
    pub sport: u16,
    /// Destination port (ICMP echo: the identifier).
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
}

impl Key4 {
    /// A TCP or UDP key.
    #[inline]
    pub fn new(proto: u8, src: u32, sport: u16, dst: u32, dport: u16) -> Key4 {
        Key4 {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }

    /// An ICMP echo key: the identifier in both port fields.
    #[inline]
    pub fn icmp(src: u32, dst: u32, ident: u16) -> Key4 {
        Key4::new(IPPROTO_ICMP, src, ident, dst, ident)
    }
}

impl FlowKey for Key4 {
    #[inline(always)]
    fn hash_with(&self, seed: &[u64; 2]) -> u64 {
        let a = (self.src as u64) << 32 | self.dst as u64;
        let b = (self.sport as u64) << 32 | (self.dport as u64) << 16 | self.proto as u64;
        // One 64x64->128 multiply of the two halves, each masked by a seed and a constant (wyhash's mix): every
        // output bit depends on every input bit through the product's high half, whatever the seeds are.
        fold_mul(a ^ seed[0] ^ super::K1, b ^ seed[1] ^ super::K2)
    }

    #[inline(always)]
    fn reversed(&self) -> Key4 {
        Key4 {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    #[inline(always)]
    fn proto(&self) -> u8 {
        self.proto
    }
}

/// An IPv6 flow key: addresses as `u128` (`Ipv6Addr::to_bits`), ports (ICMPv6 echo: the identifier in both),
/// protocol. A table of these holds IPv6 flows (two cache lines each); translation is IPv4 only for now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Key6 {
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Next header (upper-layer protocol).
    pub proto: u8,
}

impl FlowKey for Key6 {
    #[inline(always)]
    fn hash_with(&self, seed: &[u64; 2]) -> u64 {
        let ports = (self.sport as u64) << 32 | (self.dport as u64) << 16 | self.proto as u64;
        let a = fold_mul(
            (self.src as u64) ^ seed[0] ^ super::K1,
            ((self.src >> 64) as u64) ^ seed[1] ^ super::K2,
        );
        let b = fold_mul(
            (self.dst as u64) ^ seed[1] ^ super::K1,
            ((self.dst >> 64) as u64) ^ seed[0] ^ super::K2,
        );
        fold_mul(a ^ ports ^ super::K2, b ^ super::K1)
    }

    #[inline(always)]
    fn reversed(&self) -> Key6 {
        Key6 {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    #[inline(always)]
    fn proto(&self) -> u8 {
        self.proto
    }
}

/// IPv6 flow table.
pub type FlowTable6 = FlowTable<Key6>;

/// The direction of a packet within its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// The direction of the first packet.
    Orig = 0,
    /// The answer.
    Reply = 1,
}

impl Dir {
    /// The other direction.
    #[inline]
    pub fn other(self) -> Dir {
        match self {
            Dir::Orig => Dir::Reply,
            Dir::Reply => Dir::Orig,
        }
    }
}

/// The state of a TCP flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// The original side sent a SYN.
    SynSent = 1,
    /// The reply side answered with SYN+ACK (or a SYN: simultaneous open).
    SynRecv = 2,
    /// The handshake completed.
    Established = 3,
    /// One side sent a FIN.
    FinWait = 4,
    /// The other side acknowledged that FIN (half-closed).
    CloseWait = 5,
    /// Both sides sent a FIN.
    TimeWait = 6,
    /// Reset.
    Close = 7,
}

impl TcpState {
    #[inline]
    fn from_u8(v: u8) -> Option<TcpState> {
        Some(match v {
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            _ => return None,
        })
    }

    /// The name `show conntrack` prints (Linux's).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
        }
    }
}

/// What a TCP segment means to the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpEvent {
    /// SYN (a connection attempt).
    Syn,
    /// SYN+ACK (its answer).
    SynAck,
    /// FIN+ACK.
    Fin,
    /// ACK alone (data or pure acknowledgment).
    Ack,
    /// RST, with or without ACK.
    Rst,
}

/// The event of a segment with `flags`, or `None` for a combination no TCP sends: SYN with FIN or RST, FIN or
/// data without ACK, RST with FIN, no flags at all (Linux's `tcp_valid_flags`, PSH ignored, ECE/CWR ignored).
#[inline]
pub fn classify_tcp(flags: u8) -> Option<TcpEvent> {
    // One table read instead of a chain of compares: index by FIN, SYN, RST, (PSH cleared), ACK, URG.
    match TCP_EVENTS[(flags & (FIN | SYN | RST | ACK | URG)) as usize] {
        1 => Some(TcpEvent::Syn),
        2 => Some(TcpEvent::SynAck),
        3 => Some(TcpEvent::Fin),
        4 => Some(TcpEvent::Ack),
        5 => Some(TcpEvent::Rst),
        _ => None,
    }
}

/// [`classify_tcp`]'s table: 0 invalid, then the [`TcpEvent`]s in declaration order from 1.
const TCP_EVENTS: [u8; 64] = {
    let mut t = [0u8; 64];
    t[SYN as usize] = 1;
    t[(SYN | URG) as usize] = 1;
    t[(SYN | ACK) as usize] = 2;
    t[(FIN | ACK) as usize] = 3;
    t[(FIN | ACK | URG) as usize] = 3;
    t[ACK as usize] = 4;
    t[(ACK | URG) as usize] = 4;
    t[RST as usize] = 5;
    t[(RST | ACK) as usize] = 5;
    t
};

/// Timeouts in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// ESTABLISHED TCP (Linux: 5 days).
    pub tcp_established: u32,
    /// SYN_SENT, SYN_RECV, FIN_WAIT, CLOSE_WAIT, TIME_WAIT (2 min).
    pub tcp_transitory: u32,
    /// CLOSE, after an RST (10 s).
    pub tcp_close: u32,
    /// UDP with no reply seen yet (30 s).
    pub udp_unreplied: u32,
    /// UDP with traffic both ways (180 s).
    pub udp_assured: u32,
    /// ICMP echo (30 s).
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: 5 * 24 * 3600,
            tcp_transitory: 120,
            tcp_close: 10,
            udp_unreplied: 30,
            udp_assured: 180,
            icmp: 30,
        }
    }
}

/// How expired flows are found (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// A timer wheel of one-second slots; each [`FlowTable::expire`] call frees or re-files at most `budget`
    /// flows. The default.
    Wheel,
    /// Each [`FlowTable::expire`] call looks at the next `budget` records of the slab.
    Scan,
}

/// A table's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most flows the table holds (clamped to [`MAX_LIMIT`]).
    pub limit: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// How expired flows are found.
    pub expiry: Expiry,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limit: 65536,
            timeouts: Timeouts::default(),
            expiry: Expiry::Wheel,
        }
    }
}

/// A flow's handle: its index in the slab. Valid until the flow is removed or expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId(pub u32);

/// One tracked flow.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub struct Flow<K: FlowKey> {
    keys: [K; 2],
    /// Second at which the flow expires.
    expires: u32,
    /// Second of the wheel slot the flow is filed under.
    wheel_at: u32,
    /// Wheel list links (or the free list's next).
    next: u32,
    prev: u32,
    /// The caller's word (e.g. the kind of mapping, or a backend).
    tag: u32,
    /// `TcpState as u8` for TCP, 0 otherwise.
    state: u8,
    flags: u8,
}

impl<K: FlowKey> Flow<K> {
    /// The key of the first packet's direction.
    #[inline]
    pub fn orig(&self) -> &K {
        &self.keys[0]
    }

    /// The key of the reply direction (after translation).
    #[inline]
    pub fn reply(&self) -> &K {
        &self.keys[1]
    }

    /// The key of direction `dir`.
    #[inline]
    pub fn key(&self, dir: Dir) -> &K {
        &self.keys[dir as usize]
    }

    /// What a packet in direction `dir` becomes when translated: the reverse of the other direction's key.
    /// Equal to the packet's own key when the flow is not translated.
    #[inline]
    pub fn target(&self, dir: Dir) -> K {
        self.keys[dir.other() as usize].reversed()
    }

    /// The IP protocol.
    #[inline]
    pub fn proto(&self) -> u8 {
        self.keys[0].proto()
    }

    /// The TCP state (`None` for other protocols).
    #[inline]
    pub fn tcp_state(&self) -> Option<TcpState> {
        TcpState::from_u8(self.state)
    }

    /// Second at which the flow expires.
    #[inline]
    pub fn expires(&self) -> u32 {
        self.expires
    }

    /// Whether a packet was seen in the reply direction.
    #[inline]
    pub fn replied(&self) -> bool {
        self.flags & F_REPLIED != 0
    }

    /// The caller's word given at [`FlowTable::insert`].
    #[inline]
    pub fn tag(&self) -> u32 {
        self.tag
    }

    #[inline]
    fn used(&self) -> bool {
        self.flags & F_USED != 0
    }
}

/// What [`FlowTable::lookup_track`] found for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit<K> {
    /// No flow has the packet's key.
    Miss,
    /// The flow exists but the packet's TCP flags are a combination no TCP sends: drop it and count it
    /// ([`DropReason::Malformed`]); the flow did not change.
    Invalid,
    /// The packet belongs to flow `id` in direction `dir` (tracked, when asked) and becomes `target`
    /// ([`Flow::target`]).
    Found {
        /// The flow.
        id: FlowId,
        /// The packet's direction in it.
        dir: Dir,
        /// What the packet is rewritten to.
        target: K,
    },
}

/// What [`FlowTable::track`] decided about a packet of a known flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    /// Forward it (the state and deadline are updated).
    Ok,
    /// A TCP flag combination no TCP sends: drop it and count it ([`DropReason::Malformed`]); the flow did not
    /// change.
    Invalid,
}

/// Why [`FlowTable::insert`] made no flow.
///
/// Drop reasons: `Full` and `Exists` → [`DropReason::NatExhausted`]; `NotSyn` → [`DropReason::AclDeny`] (a
/// TCP segment of no known connection, which a stateful NAT refuses); `InvalidTcp` →
/// [`DropReason::Malformed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds its limit of flows.
    Full,
    /// The original or the reply key already belongs to a flow.
    Exists,
    /// A TCP flow must start with a SYN.
    NotSyn,
    /// An impossible TCP flag combination.
    InvalidTcp,
}

impl InsertError {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        match self {
            InsertError::Full | InsertError::Exists => DropReason::NatExhausted,
            InsertError::NotSyn => DropReason::AclDeny,
            InsertError::InvalidTcp => DropReason::Malformed,
        }
    }
}

/// A table's counters (single writer: plain integers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Flows created.
    pub created: u64,
    /// Flows that timed out.
    pub expired: u64,
    /// Flows removed by [`FlowTable::remove`].
    pub removed: u64,
    /// New flows refused because the table was full.
    pub full: u64,
    /// New flows refused because a key was taken.
    pub exists: u64,
    /// TCP segments refused for their flags (new or known flows), or new TCP flows without a SYN.
    pub tcp_invalid: u64,
}

/// A worker's flow table (see the module docs).
pub struct FlowTable<K: FlowKey> {
    flows: Box<[Flow<K>]>,
    index: Box<[u64]>,
    mask: usize,
    seed: [u64; 2],
    free_head: u32,
    len: usize,
    limit: usize,
    timeouts: Timeouts,
    expiry: Expiry,
    wheel: Box<[u32]>,
    /// The next wheel second to process (Wheel), or the next slab index to look at (Scan).
    cursor: u32,
    /// Whether `cursor` has been set from a clock (Wheel).
    started: bool,
    stats: Stats,
}

/// IPv4 flow table.
pub type FlowTable4 = FlowTable<Key4>;

impl<K: FlowKey> FlowTable<K> {
    /// A table for `cfg.limit` flows, everything allocated now, with random hash seeds.
    pub fn new(cfg: Config) -> Self {
        Self::with_seed(cfg, random_seeds())
    }

    /// [`FlowTable::new`] with given hash seeds (tests, reproducible benchmarks).
    pub fn with_seed(cfg: Config, seed: [u64; 2]) -> Self {
        let limit = cfg.limit.clamp(1, MAX_LIMIT);
        let slots = (limit * 4).next_power_of_two();
        // Both arrays are read at random, one line per packet each: backed by huge pages where the kernel
        // grants them (advised before the first write), a million flows need ~50 TLB entries, not ~25,000.
        let mut flows: Vec<Flow<K>> = Vec::with_capacity(limit);
        advise_huge_pages(
            flows.as_mut_ptr().cast(),
            limit * std::mem::size_of::<Flow<K>>(),
        );
        flows.extend((0..limit).map(|i| Flow {
            next: if i + 1 < limit { i as u32 + 1 } else { NIL },
            prev: NIL,
            ..Flow::default()
        }));
        // Zeroed by calloc: pages are committed when first written, after this advice.
        let mut index = vec![0u64; slots];
        advise_huge_pages(index.as_mut_ptr().cast(), slots * 8);
        FlowTable {
            flows: flows.into_boxed_slice(),
            index: index.into_boxed_slice(),
            mask: slots - 1,
            seed,
            free_head: 0,
            len: 0,
            limit,
            timeouts: cfg.timeouts,
            expiry: cfg.expiry,
            wheel: vec![NIL; WHEEL_SLOTS].into_boxed_slice(),
            cursor: 0,
            started: false,
            stats: Stats::default(),
        }
    }

    /// Flows in the table.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there is no flow.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most flows the table holds.
    #[inline]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The counters.
    #[inline]
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The timeouts in force.
    #[inline]
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Changes the timeouts (a new configuration). Deadlines already set are kept; each flow takes the new
    /// values with its next packet.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
    }

    /// Bytes allocated by the table (flows, index, wheel).
    pub fn memory(&self) -> usize {
        std::mem::size_of_val(&*self.flows) + self.index.len() * 8 + self.wheel.len() * 4
    }

    #[inline(always)]
    fn hash(&self, key: &K) -> u64 {
        key.hash_with(&self.seed)
    }

    /// The hash the table files `key` under (its seeds applied): computed once per packet by a caller that
    /// prefetches ([`FlowTable::prefetch_hashed`], [`FlowTable::prefetch_flow_hashed`]) and then looks up
    /// ([`FlowTable::lookup_track_hashed`]), instead of once per step.
    #[inline(always)]
    pub fn hash_of(&self, key: &K) -> u64 {
        self.hash(key)
    }

    /// Starts loading the index line where `key`'s probe starts, so a burst can overlap the misses of its
    /// packets' lookups (call it for every packet of a burst first, then look them up). No-op off x86_64.
    #[inline]
    pub fn prefetch(&self, key: &K) {
        self.prefetch_hashed(self.hash(key));
    }

    /// [`FlowTable::prefetch`] of a key whose [`FlowTable::hash_of`] is `h`.
    #[inline(always)]
    pub fn prefetch_hashed(&self, h: u64) {
        prefetch(self.index.get(h as usize & self.mask));
    }

    /// Starts loading flow `id`'s line (e.g. between a batch of lookups and their tracking).
    #[inline]
    pub fn prefetch_flow(&self, id: FlowId) {
        prefetch(self.flows.get(id.0 as usize));
    }

    /// The second stage of a burst's lookups, after [`FlowTable::prefetch`] of every packet: reads `key`'s
    /// index run (by now in cache) and starts loading the line of the first flow whose hash matches, which
    /// [`FlowTable::lookup`] will compare. Three passes over a burst (prefetch, this, lookup) overlap both of
    /// a lookup's cache misses with other packets' work.
    #[inline]
    pub fn prefetch_flow_of(&self, key: &K) {
        self.prefetch_flow_hashed(self.hash(key));
    }

    /// [`FlowTable::prefetch_flow_of`] of a key whose [`FlowTable::hash_of`] is `h`.
    #[inline(always)]
    pub fn prefetch_flow_hashed(&self, h: u64) {
        let tag = h as u32;
        let mut i = h as usize & self.mask;
        // The index is at most half full, so a run ends; bounded anyway (`get`, no panic, no endless loop).
        for _ in 0..=self.mask {
            let Some(&s) = self.index.get(i) else { return };
            if s == 0 {
                return;
            }
            if s as u32 == tag {
                let idx = ((s >> 32) as u32).wrapping_sub(1) >> 1;
                prefetch(self.flows.get(idx as usize));
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Where `key` (whose hash is `h`) is filed: its flow's index and direction (0 original, 1 reply).
    #[inline(always)]
    fn find(&self, key: &K, h: u64) -> Option<(u32, u32)> {
        let tag = h as u32;
        let mut i = h as usize & self.mask;
        loop {
            let s = self.index[i];
            if s == 0 {
                return None;
            }
            if s as u32 == tag {
                let v = (s >> 32) as u32 - 1;
                let (idx, dir) = (v >> 1, v & 1);
                if self.flows[idx as usize].keys[dir as usize] == *key {
                    return Some((idx, dir));
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The flow a packet with `key` belongs to, and its direction.
    #[inline]
    pub fn lookup(&self, key: &K) -> Option<(FlowId, Dir)> {
        let (idx, dir) = self.find(key, self.hash(key))?;
        let dir = if dir == 0 { Dir::Orig } else { Dir::Reply };
        Some((FlowId(idx), dir))
    }

    /// A packet's whole table work in one probe: [`FlowTable::lookup`], then (when `track`)
    /// [`FlowTable::track`] with `tcp_flags` at `now_s`, then [`Flow::target`] of the direction found. The
    /// per-packet path of a stage: the flow's line is read once, and written only when something in it
    /// changes (a new deadline second, the first answer, a TCP state), so at a million flows a packet of an
    /// established flow dirties no line.
    #[inline]
    pub fn lookup_track(&mut self, key: &K, tcp_flags: u8, track: bool, now_s: u32) -> Hit<K> {
        self.lookup_track_hashed(key, self.hash(key), tcp_flags, track, now_s)
    }

    /// [`FlowTable::lookup_track`] of a key whose [`FlowTable::hash_of`] is `h`.
    #[inline(always)]
    pub fn lookup_track_hashed(
        &mut self,
        key: &K,
        h: u64,
        tcp_flags: u8,
        track: bool,
        now_s: u32,
    ) -> Hit<K> {
        let Some((idx, d)) = self.find(key, h) else {
            return Hit::Miss;
        };
        let dir = if d == 0 { Dir::Orig } else { Dir::Reply };
        if track && self.track_at(idx, dir, tcp_flags, now_s) == Track::Invalid {
            return Hit::Invalid;
        }
        Hit::Found {
            id: FlowId(idx),
            dir,
            target: self.flows[idx as usize].keys[d as usize ^ 1].reversed(),
        }
    }

    /// Flow `id`, if it is in use.
    #[inline]
    pub fn get(&self, id: FlowId) -> Option<&Flow<K>> {
        self.flows.get(id.0 as usize).filter(|f| f.used())
    }

    /// Sets the caller's word of flow `id` (e.g. once the NAT knows which mapping it belongs to).
    pub fn set_tag(&mut self, id: FlowId, tag: u32) {
        if let Some(f) = self.flows.get_mut(id.0 as usize).filter(|f| f.used()) {
            f.tag = tag;
        }
    }

    /// Creates a flow for a first packet with key `orig` whose answers will carry key `reply` (the reverse of
    /// the translated packet), with the TCP flags of that first packet (ignored for other protocols), the
    /// caller's `tag`, at second `now_s`.
    ///
    /// Refuses when the table is full, when either key is already taken, and for a TCP flow whose first
    /// segment is not a SYN (see [`InsertError`]). Never allocates.
    pub fn insert(
        &mut self,
        orig: K,
        reply: K,
        tcp_flags: u8,
        tag: u32,
        now_s: u32,
    ) -> Result<FlowId, InsertError> {
        let state = if orig.proto() == IPPROTO_TCP {
            match classify_tcp(tcp_flags) {
                Some(TcpEvent::Syn) => TcpState::SynSent as u8,
                Some(_) => {
                    self.stats.tcp_invalid += 1;
                    return Err(InsertError::NotSyn);
                }
                None => {
                    self.stats.tcp_invalid += 1;
                    return Err(InsertError::InvalidTcp);
                }
            }
        } else {
            0
        };
        if self.free_head == NIL {
            self.stats.full += 1;
            return Err(InsertError::Full);
        }
        if orig == reply || self.lookup(&orig).is_some() || self.lookup(&reply).is_some() {
            self.stats.exists += 1;
            return Err(InsertError::Exists);
        }
        let idx = self.free_head;
        let timeout = {
            let f = &mut self.flows[idx as usize];
            self.free_head = f.next;
            *f = Flow {
                keys: [orig, reply],
                state,
                flags: F_USED,
                tag,
                next: NIL,
                prev: NIL,
                ..Flow::default()
            };
            timeout_of(&self.timeouts, f)
        };
        self.flows[idx as usize].expires = now_s.saturating_add(timeout);
        self.index_insert(&orig, idx << 1);
        self.index_insert(&reply, idx << 1 | 1);
        self.len += 1;
        self.stats.created += 1;
        if self.expiry == Expiry::Wheel {
            self.start_clock(now_s);
            let at = self.flows[idx as usize].expires;
            self.wheel_link(idx, at);
        }
        Ok(FlowId(idx))
    }

    /// Records a packet of flow `id` in direction `dir` at second `now_s`: TCP state (from `tcp_flags`), the
    /// reply flag, the deadline. An impossible TCP flag combination changes nothing and returns
    /// [`Track::Invalid`]. An unknown `id` is [`Track::Invalid`] too.
    #[inline]
    pub fn track(&mut self, id: FlowId, dir: Dir, tcp_flags: u8, now_s: u32) -> Track {
        if self.get(id).is_none() {
            return Track::Invalid;
        }
        self.track_at(id.0, dir, tcp_flags, now_s)
    }

    /// [`FlowTable::track`] of flow `idx`, known to be in use. Writes a field only when its value changes:
    /// the deadline moves once a second, the reply flag once per flow.
    #[inline(always)]
    fn track_at(&mut self, idx: u32, dir: Dir, tcp_flags: u8, now_s: u32) -> Track {
        let f = &mut self.flows[idx as usize];
        let replied = (dir as u8) * F_REPLIED;
        if f.state != 0 {
            let Some(ev) = classify_tcp(tcp_flags) else {
                self.stats.tcp_invalid += 1;
                return Track::Invalid;
            };
            let expires = now_s.saturating_add(self.timeouts.tcp_established);
            if f.state == TcpState::Established as u8
                && ev == TcpEvent::Ack
                && expires >= f.wheel_at
            {
                // The common case: nothing changes but the deadline, not earlier than where it is filed.
                if f.flags & replied != replied {
                    f.flags |= replied;
                }
                if f.expires != expires {
                    f.expires = expires;
                }
                return Track::Ok;
            }
            let (state, flags) = tcp_next(f.state, f.flags, ev, dir);
            f.state = state;
            f.flags = flags;
        }
        if f.flags & replied != replied {
            f.flags |= replied;
        }
        let expires = now_s.saturating_add(timeout_of(&self.timeouts, f));
        if f.expires == expires {
            // Unchanged since the last packet, which filed it where it belongs.
            return Track::Ok;
        }
        let earlier = expires < f.wheel_at;
        f.expires = expires;
        if earlier && self.expiry == Expiry::Wheel {
            // A shorter timeout (RST, FIN): file it where it is now due, so it goes on time.
            self.wheel_unlink(idx);
            self.wheel_link(idx, expires);
        }
        Track::Ok
    }

    /// Removes flow `id` now (e.g. `wharf ctl clear conntrack`), calling `on_remove` with it first so the
    /// caller can release what it holds (a NAT port). False if there was no such flow.
    pub fn remove(&mut self, id: FlowId, mut on_remove: impl FnMut(&Flow<K>)) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        on_remove(&self.flows[id.0 as usize]);
        if self.expiry == Expiry::Wheel {
            self.wheel_unlink(id.0);
        }
        self.free(id.0);
        self.stats.removed += 1;
        true
    }

    /// Frees flows whose deadline has passed at second `now_s`, doing at most `budget` units of work (a flow
    /// freed or re-filed on the wheel; a slab record looked at in [`Expiry::Scan`]). `on_expire` sees each
    /// flow before it is freed. Returns how many flows were freed.
    ///
    /// A worker calls this once per burst with a small budget and more when idle or when an insertion found
    /// the table full; the wheel falls behind under a burst of expiries and catches up over the following
    /// calls. Size the budget by time: a freed flow costs some 50 ns in a small table and up to ~400 ns in a
    /// table of a million (cache misses), so 8-16 per burst keeps a busy worker's call within a few
    /// microseconds and still frees over two million flows a second.
    pub fn expire(&mut self, now_s: u32, budget: usize, on_expire: impl FnMut(&Flow<K>)) -> usize {
        match self.expiry {
            Expiry::Wheel => self.expire_wheel(now_s, budget, on_expire),
            Expiry::Scan => self.expire_scan(now_s, budget, on_expire),
        }
    }

    fn expire_wheel(
        &mut self,
        now_s: u32,
        mut budget: usize,
        mut on_expire: impl FnMut(&Flow<K>),
    ) -> usize {
        if !self.started {
            self.start_clock(now_s);
        }
        if self.len == 0 {
            // Nothing filed: the cursor may jump (after a long idle time it would otherwise walk every second).
            self.cursor = self.cursor.max(now_s);
            return 0;
        }
        let mut freed = 0;
        // Empty slots are cheap but not free: at most one turn of them per call.
        let mut empty = WHEEL_SLOTS;
        while budget > 0 && self.cursor <= now_s {
            let slot = self.cursor as usize % WHEEL_SLOTS;
            let idx = self.wheel[slot];
            if idx == NIL {
                if empty == 0 {
                    break;
                }
                empty -= 1;
                self.cursor += 1;
                continue;
            }
            budget -= 1;
            self.wheel_unlink(idx);
            let expires = self.flows[idx as usize].expires;
            if expires <= now_s {
                on_expire(&self.flows[idx as usize]);
                self.free(idx);
                self.stats.expired += 1;
                freed += 1;
            } else {
                // Not due (refreshed by traffic since it was filed): file it under its deadline. `expires` is
                // after `now_s`, so after the cursor: another slot than this one.
                self.wheel_link(idx, expires);
            }
        }
        freed
    }

    fn expire_scan(
        &mut self,
        now_s: u32,
        budget: usize,
        mut on_expire: impl FnMut(&Flow<K>),
    ) -> usize {
        let mut freed = 0;
        for _ in 0..budget.min(self.flows.len()) {
            let idx = self.cursor;
            self.cursor = if idx as usize + 1 >= self.flows.len() {
                0
            } else {
                idx + 1
            };
            let f = &self.flows[idx as usize];
            if f.used() && f.expires <= now_s {
                on_expire(f);
                self.free(idx);
                self.stats.expired += 1;
                freed += 1;
            }
        }
        freed
    }

    /// Every flow in use with its id, for `show conntrack` (slow path, reads the whole slab).
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &Flow<K>)> {
        self.flows
            .iter()
            .enumerate()
            .filter(|(_, f)| f.used())
            .map(|(i, f)| (FlowId(i as u32), f))
    }

    fn start_clock(&mut self, now_s: u32) {
        if !self.started {
            self.started = true;
            self.cursor = now_s;
        }
    }

    /// Files flow `idx` in the wheel slot of second `at`, clamped to what the wheel covers from the cursor.
    fn wheel_link(&mut self, idx: u32, at: u32) {
        let at = at.clamp(
            self.cursor,
            self.cursor.saturating_add(WHEEL_SLOTS as u32 - 1),
        );
        let slot = at as usize % WHEEL_SLOTS;
        let head = self.wheel[slot];
        {
            let f = &mut self.flows[idx as usize];
            f.wheel_at = at;
            f.prev = NIL;
            f.next = head;
        }
        if head != NIL {
            self.flows[head as usize].prev = idx;
        }
        self.wheel[slot] = idx;
    }

    fn wheel_unlink(&mut self, idx: u32) {
        let (prev, next, at) = {
            let f = &self.flows[idx as usize];
            (f.prev, f.next, f.wheel_at)
        };
        if prev == NIL {
            let slot = at as usize % WHEEL_SLOTS;
            if self.wheel[slot] == idx {
                self.wheel[slot] = next;
            }
        } else {
            self.flows[prev as usize].next = next;
        }
        if next != NIL {
            self.flows[next as usize].prev = prev;
        }
        let f = &mut self.flows[idx as usize];
        f.prev = NIL;
        f.next = NIL;
    }

    /// Takes flow `idx` out of the index and puts its record on the free list (already off the wheel).
    fn free(&mut self, idx: u32) {
        let keys = self.flows[idx as usize].keys;
        self.index_remove(&keys[0], idx << 1);
        self.index_remove(&keys[1], idx << 1 | 1);
        let f = &mut self.flows[idx as usize];
        f.flags = 0;
        f.state = 0;
        f.prev = NIL;
        f.next = self.free_head;
        self.free_head = idx;
        self.len -= 1;
    }

    fn index_insert(&mut self, key: &K, val: u32) {
        let h = self.hash(key);
        let mut i = h as usize & self.mask;
        // At most half the slots are used, so an empty one is always found.
        while self.index[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.index[i] = ((val as u64 + 1) << 32) | (h as u32) as u64;
    }

    /// Removes the slot holding `val` on `key`'s probe run, shifting the run's later slots back so no
    /// tombstone is needed.
    fn index_remove(&mut self, key: &K, val: u32) {
        let h = self.hash(key);
        let want = (val as u64 + 1) << 32 | (h as u32) as u64;
        let mut i = h as usize & self.mask;
        loop {
            let s = self.index[i];
            if s == 0 {
                return; // not there (cannot happen for a flow in use)
            }
            if s == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.index[j];
            if s == 0 {
                break;
            }
            let home = s as u32 as usize & self.mask;
            // The entry at j may move into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.index[hole] = s;
                hole = j;
            }
        }
        self.index[hole] = 0;
    }
}

impl<K: FlowKey> fmt::Debug for FlowTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.len)
            .field("limit", &self.limit)
            .field("expiry", &self.expiry)
            .field("stats", &self.stats)
            .finish()
    }
}

/// The timeout of `f` in its current state.
#[inline]
fn timeout_of<K: FlowKey>(t: &Timeouts, f: &Flow<K>) -> u32 {
    match f.proto() {
        IPPROTO_TCP => match TcpState::from_u8(f.state) {
            Some(TcpState::Established) => t.tcp_established,
            Some(TcpState::Close) => t.tcp_close,
            _ => t.tcp_transitory,
        },
        IPPROTO_UDP if f.flags & F_REPLIED != 0 => t.udp_assured,
        IPPROTO_UDP => t.udp_unreplied,
        IPPROTO_ICMP => t.icmp,
        _ => t.udp_unreplied,
    }
}

/// The next TCP state and flags after `ev` in direction `dir` (see [`TcpState`]).
#[inline]
fn tcp_next(state: u8, flags: u8, ev: TcpEvent, dir: Dir) -> (u8, u8) {
    use TcpEvent as E;
    use TcpState as S;
    let Some(s) = TcpState::from_u8(state) else {
        return (state, flags);
    };
    let fin_dir = if flags & F_FIN_REPLY != 0 {
        Dir::Reply
    } else {
        Dir::Orig
    };
    let with_fin = |d: Dir| {
        if d == Dir::Reply {
            flags | F_FIN_REPLY
        } else {
            flags & !F_FIN_REPLY
        }
    };
    let next = match (s, ev, dir) {
        (_, E::Rst, _) => S::Close,
        (S::SynSent, E::Syn, Dir::Orig) => S::SynSent,
        (S::SynSent, E::Syn | E::SynAck, Dir::Reply) => S::SynRecv,
        (S::SynRecv, E::Ack, Dir::Orig) => S::Established,
        (S::SynRecv | S::Established, E::Fin, d) => return (S::FinWait as u8, with_fin(d)),
        (S::FinWait, E::Ack, d) if d != fin_dir => S::CloseWait,
        (S::FinWait | S::CloseWait, E::Fin, d) if d != fin_dir => S::TimeWait,
        // A new connection on the same tuple after the old one ended (port reuse).
        (S::TimeWait | S::Close, E::Syn, Dir::Orig) => {
            return (S::SynSent as u8, flags & !(F_FIN_REPLY | F_REPLIED))
        }
        (s, _, _) => s,
    };
    (next as u8, flags)
}

/// Prefetches the cache line at `p` (a hint; never faults). No-op off x86_64.
#[inline(always)]
pub(crate) fn prefetch<T>(p: Option<&T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = p {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint: it never faults and does not change memory; `p` points into our
        // own allocation anyway. SSE is part of the x86_64 baseline.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u32 = 0x0a00_0002; // 10.0.0.2, inside
    const S: u32 = 0x0808_0808; // server
    const X: u32 = 0xc000_0201; // 192.0.2.1, external

    fn table(limit: usize, expiry: Expiry) -> FlowTable4 {
        FlowTable::with_seed(
            Config {
                limit,
                expiry,
                ..Config::default()
            },
            [1, 2],
        )
    }

    /// A source-NATed TCP flow: A:sport -> S:80 leaves as X:xport -> S:80.
    fn snat(sport: u16, xport: u16) -> (Key4, Key4) {
        let orig = Key4::new(IPPROTO_TCP, A, sport, S, 80);
        let reply = Key4::new(IPPROTO_TCP, S, 80, X, xport);
        (orig, reply)
    }

    #[test]
    fn an_ipv4_flow_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Flow<Key4>>(), 64);
        assert_eq!(std::mem::align_of::<Flow<Key4>>(), 64);
    }

    #[test]
    fn the_table_holds_ipv6_flows_too() {
        let mut t = FlowTable6::with_seed(
            Config {
                limit: 2000,
                ..Config::default()
            },
            [5, 6],
        );
        assert_eq!(std::mem::size_of::<Flow<Key6>>(), 128);
        let host = |i: u128| 0x2001_0db8_u128 << 96 | i;
        let srv = 0x2001_0db8_ffff_u128 << 80 | 0x53;
        for i in 0..2000u16 {
            let o = Key6 {
                src: host(i as u128 % 7),
                dst: srv,
                sport: 30_000 + i,
                dport: 443,
                proto: IPPROTO_TCP,
            };
            let id = t.insert(o, o.reversed(), SYN, 0, 0).unwrap();
            t.track(id, Dir::Reply, SYN | ACK, 0);
            t.track(id, Dir::Orig, ACK, 0);
            assert_eq!(t.lookup(&o.reversed()), Some((id, Dir::Reply)));
        }
        let o = Key6 {
            src: host(1),
            dst: srv,
            sport: 30_001,
            dport: 443,
            proto: IPPROTO_TCP,
        };
        let (id, dir) = t.lookup(&o).unwrap();
        assert_eq!(dir, Dir::Orig);
        assert_eq!(t.get(id).unwrap().tcp_state(), Some(TcpState::Established));
        assert_eq!(t.insert(o, o.reversed(), SYN, 0, 0), Err(InsertError::Full));
        assert_eq!(t.expire(5 * 24 * 3600, 4000, |_| {}), 2000);
        assert!(t.is_empty());
    }

    #[test]
    fn both_directions_find_one_flow_and_targets_translate() {
        let mut t = table(16, Expiry::Wheel);
        let (o, r) = snat(40000, 1025);
        let id = t.insert(o, r, SYN, 7, 100).unwrap();
        assert_eq!(t.lookup(&o), Some((id, Dir::Orig)));
        assert_eq!(t.lookup(&r), Some((id, Dir::Reply)));
        assert_eq!(t.lookup(&o.reversed()), None);
        let f = t.get(id).unwrap();
        assert_eq!(f.tag(), 7);
        // The original packet leaves from X:1025; the reply goes back to A:40000.
        assert_eq!(f.target(Dir::Orig), Key4::new(IPPROTO_TCP, X, 1025, S, 80));
        assert_eq!(
            f.target(Dir::Reply),
            Key4::new(IPPROTO_TCP, S, 80, A, 40000)
        );
        assert_eq!(
            t.insert(o, snat(1, 2).1, SYN, 0, 100),
            Err(InsertError::Exists)
        );
        assert_eq!(
            t.insert(snat(1, 2).0, r, SYN, 0, 100),
            Err(InsertError::Exists)
        );
    }

    #[test]
    fn lookup_track_is_lookup_then_track_then_target() {
        let mut t = table(16, Expiry::Wheel);
        let mut u = table(16, Expiry::Wheel);
        let (o, r) = snat(40000, 1025);
        let id = t.insert(o, r, SYN, 0, 100).unwrap();
        assert_eq!(u.insert(o, r, SYN, 0, 100), Ok(id));
        assert_eq!(
            t.lookup_track(&Key4::new(IPPROTO_TCP, A, 1, S, 80), ACK, true, 100),
            Hit::Miss
        );
        // The same packets through both paths leave the same flow behind.
        for (key, dir, flags, now) in [
            (r, Dir::Reply, SYN | ACK, 101),
            (o, Dir::Orig, ACK, 102),
            (o, Dir::Orig, ACK, 102),
            (r, Dir::Reply, ACK, 5000),
            (o, Dir::Orig, FIN | ACK, 5001),
        ] {
            let h = t.hash_of(&key);
            let hit = t.lookup_track_hashed(&key, h, flags, true, now);
            assert_eq!(u.lookup(&key), Some((id, dir)));
            assert_eq!(u.track(id, dir, flags, now), Track::Ok);
            let target = u.get(id).unwrap().target(dir);
            assert_eq!(hit, Hit::Found { id, dir, target });
            let (a, b) = (t.get(id).unwrap(), u.get(id).unwrap());
            assert_eq!(
                (a.tcp_state(), a.expires(), a.replied()),
                (b.tcp_state(), b.expires(), b.replied())
            );
        }
        assert_eq!(t.get(id).unwrap().tcp_state(), Some(TcpState::FinWait));
        // Impossible flags: refused, the flow unchanged; untracked (an ICMP error): found, unchanged.
        let before = t.get(id).unwrap().expires();
        assert_eq!(t.lookup_track(&o, SYN | FIN, true, 6000), Hit::Invalid);
        assert!(matches!(
            t.lookup_track(&o, SYN | FIN, false, 6000),
            Hit::Found { dir: Dir::Orig, .. }
        ));
        assert_eq!(t.get(id).unwrap().expires(), before);
        assert_eq!(t.get(id).unwrap().tcp_state(), Some(TcpState::FinWait));
    }

    #[test]
    fn index_survives_heavy_churn() {
        // Insert and remove in a pattern that forces long probe runs and back-shifts in a small index.
        let mut t = table(512, Expiry::Wheel);
        let mut live = Vec::new();
        for round in 0..20u16 {
            for i in 0..400u16 {
                let (o, r) = snat(round * 1000 + i, 2000 + i);
                let o = Key4 {
                    proto: IPPROTO_UDP,
                    ..o
                };
                let r = Key4 {
                    proto: IPPROTO_UDP,
                    ..r
                };
                if let Ok(id) = t.insert(o, r, 0, 0, 1) {
                    live.push((id, o, r));
                }
            }
            // Remove every other flow.
            let mut keep = Vec::new();
            for (n, (id, o, r)) in live.drain(..).enumerate() {
                if n % 2 == 0 {
                    assert!(t.remove(id, |_| {}));
                    assert_eq!(t.lookup(&o), None);
                    assert_eq!(t.lookup(&r), None);
                } else {
                    keep.push((id, o, r));
                }
            }
            for &(id, o, r) in &keep {
                assert_eq!(t.lookup(&o), Some((id, Dir::Orig)));
                assert_eq!(t.lookup(&r), Some((id, Dir::Reply)));
            }
            live = keep;
        }
        assert_eq!(t.len(), live.len());
        assert_eq!(t.index.iter().filter(|&&s| s != 0).count(), 2 * live.len());
    }

    /// The longest distance of an index entry from its home slot.
    fn longest_probe(t: &FlowTable4) -> usize {
        let n = t.index.len();
        (0..n)
            .filter(|&i| t.index[i] != 0)
            .map(|i| (i + n - (t.index[i] as u32 as usize & t.mask)) % n)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn flows_differing_only_in_ports_spread_over_the_index() {
        // The typical NAT table: one server, one external address, only the ports differ. With weak mixing
        // (a multiply by a small seed) these all landed in a handful of home slots.
        for seed in [[0, 0], [1, 2], [11, 12], [u64::MAX, 3]] {
            let mut t = FlowTable4::with_seed(
                Config {
                    limit: 4096,
                    ..Config::default()
                },
                seed,
            );
            for i in 0..4096u16 {
                let (o, r) = snat(10_000 + i, 1024 + i);
                t.insert(o, r, SYN, 0, 0).unwrap();
            }
            let homes: std::collections::HashSet<usize> = t
                .index
                .iter()
                .filter(|&&s| s != 0)
                .map(|&s| s as u32 as usize & t.mask)
                .collect();
            assert!(homes.len() > 6000, "seed {seed:?}: {} homes", homes.len());
            assert!(
                longest_probe(&t) < 40,
                "seed {seed:?}: probe {}",
                longest_probe(&t)
            );
        }
    }

    #[test]
    fn full_table_refuses_new_flows_and_keeps_old_ones() {
        let mut t = table(4, Expiry::Wheel);
        let ids: Vec<_> = (0..4)
            .map(|i| {
                let (o, r) = snat(1000 + i, 5000 + i);
                t.insert(o, r, SYN, 0, 0).unwrap()
            })
            .collect();
        let (o, r) = snat(9999, 9999);
        assert_eq!(t.insert(o, r, SYN, 0, 0), Err(InsertError::Full));
        assert_eq!(t.stats().full, 1);
        assert_eq!(InsertError::Full.drop_reason(), DropReason::NatExhausted);
        for (i, id) in ids.iter().enumerate() {
            let (o, _) = snat(1000 + i as u16, 5000 + i as u16);
            assert_eq!(t.lookup(&o), Some((*id, Dir::Orig)));
            assert_eq!(t.track(*id, Dir::Orig, ACK, 1), Track::Ok);
        }
        t.remove(ids[2], |_| {});
        assert!(t.insert(o, r, SYN, 0, 0).is_ok());
    }

    #[test]
    fn wheel_refiles_long_timeouts_and_expires_on_time() {
        let mut t = table(8, Expiry::Wheel);
        let o = Key4::new(IPPROTO_UDP, A, 1, S, 53);
        let r = Key4::new(IPPROTO_UDP, S, 53, X, 1024);
        let id = t.insert(o, r, 0, 0, 1000).unwrap();
        t.track(id, Dir::Reply, 0, 1000); // assured: 180 s
        let mut gone = 0;
        assert_eq!(t.expire(1179, 1000, |_| gone += 1), 0);
        assert_eq!(t.expire(1180, 1000, |_| gone += 1), 1);
        assert_eq!(gone, 1);
        assert!(t.is_empty());
        // Established TCP, 5 days: re-filed every wheel turn, gone after 432000 s.
        let (o, r) = snat(2, 3);
        let id = t.insert(o, r, SYN, 0, 2000).unwrap();
        t.track(id, Dir::Reply, SYN | ACK, 2000);
        t.track(id, Dir::Orig, ACK, 2000);
        assert_eq!(t.get(id).unwrap().tcp_state(), Some(TcpState::Established));
        let mut now = 2000;
        while now < 2000 + 432_000 - 1 {
            now += 500;
            let now = now.min(2000 + 432_000 - 1);
            assert_eq!(t.expire(now, 10, |_| {}), 0, "at {now}");
        }
        assert_eq!(t.expire(2000 + 432_000, 10, |_| {}), 1);
    }

    #[test]
    fn earlier_deadline_is_refiled_at_once() {
        let mut t = table(8, Expiry::Wheel);
        let (o, r) = snat(2, 3);
        let id = t.insert(o, r, SYN, 0, 0).unwrap();
        t.track(id, Dir::Reply, SYN | ACK, 0);
        t.track(id, Dir::Orig, ACK, 0);
        t.track(id, Dir::Orig, RST, 50); // CLOSE: 10 s
        assert_eq!(t.expire(59, 100, |_| {}), 0);
        assert_eq!(t.expire(60, 100, |_| {}), 1);
    }

    #[test]
    fn budget_bounds_the_work_per_call() {
        let mut t = table(1000, Expiry::Wheel);
        for i in 0..1000u16 {
            let o = Key4::new(IPPROTO_UDP, A, i, S, 53);
            let r = Key4::new(IPPROTO_UDP, S, 53, X, i);
            t.insert(o, r, 0, 0, 0).unwrap();
        }
        let mut calls = 0;
        while !t.is_empty() {
            let n = t.expire(30, 64, |_| {});
            assert!(n <= 64);
            calls += 1;
        }
        assert_eq!(calls, 1000usize.div_ceil(64));
    }

    #[test]
    fn a_long_idle_time_is_caught_up_in_bounded_steps() {
        let mut t = table(8, Expiry::Wheel);
        let o = Key4::new(IPPROTO_UDP, A, 1, S, 53);
        let r = Key4::new(IPPROTO_UDP, S, 53, X, 1024);
        t.insert(o, r, 0, 0, 0).unwrap();
        // A day later: each call walks at most one turn of empty slots, and the flow goes on the first call
        // that reaches its slot.
        let mut calls = 0;
        while !t.is_empty() {
            t.expire(86_400, 16, |_| {});
            calls += 1;
            assert!(calls <= 2, "the flow's slot is within the first turn");
        }
        // With nothing filed the cursor jumps: a flow made now expires on time.
        t.expire(10 * 86_400, 16, |_| {});
        t.insert(o, r, 0, 0, 10 * 86_400).unwrap();
        assert_eq!(t.expire(10 * 86_400 + 29, 16, |_| {}), 0);
        assert_eq!(t.expire(10 * 86_400 + 30, 16, |_| {}), 1);
    }

    #[test]
    fn scan_mode_expires_too() {
        let mut t = table(100, Expiry::Scan);
        for i in 0..50u16 {
            let o = Key4::icmp(A, S, i);
            let r = Key4::icmp(S, X, 1000 + i);
            t.insert(o, r, 0, 0, 0).unwrap();
        }
        assert_eq!(t.expire(29, 100, |_| {}), 0);
        assert_eq!(t.expire(30, 30, |_| {}), 30);
        assert_eq!(t.expire(30, 70, |_| {}), 20);
        assert!(t.is_empty());
    }

    #[test]
    fn flag_classes() {
        assert_eq!(classify_tcp(SYN), Some(TcpEvent::Syn));
        assert_eq!(classify_tcp(SYN | PSH | 0xc0), Some(TcpEvent::Syn));
        assert_eq!(classify_tcp(SYN | ACK), Some(TcpEvent::SynAck));
        assert_eq!(classify_tcp(FIN | ACK | PSH), Some(TcpEvent::Fin));
        assert_eq!(classify_tcp(RST), Some(TcpEvent::Rst));
        assert_eq!(classify_tcp(RST | ACK), Some(TcpEvent::Rst));
        assert_eq!(classify_tcp(ACK | PSH), Some(TcpEvent::Ack));
        for odd in [
            0,
            PSH,
            URG,
            FIN,
            SYN | FIN,
            SYN | RST,
            SYN | FIN | ACK,
            RST | FIN,
            FIN | SYN | RST | PSH | ACK | URG,
        ] {
            assert_eq!(classify_tcp(odd), None, "flags {odd:#x}");
        }
    }
}
