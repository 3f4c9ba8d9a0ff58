//! The NAT stage: what the L3 stage calls around its FIB lookup for IPv4, on top of the pure core.
//!
//! - [`NatTables`] is the compiled configuration, frozen in a snapshot: the outside interface and its
//!   external addresses, which interfaces are masqueraded, the published mappings (single backends and
//!   Maglev-balanced services), the port split, the timeouts.
//! - [`NatShared`] outlives snapshots with the same NAT identity (addresses, port range, workers, table
//!   size): the handoff queues between workers, the per-worker states the control thread built (taken once
//!   by each worker, so no worker allocates a table), and the request/report exchange behind
//!   `wharf ctl show conntrack` and `show nat`.
//! - [`NatState`] is a worker's: its flow table, its slice of the ports, its endpoint-independent mappings.
//!
//! [`pre_route`] runs on a packet to an external address before the FIB lookup (replies of masqueraded
//! flows, published ports, hairpin): DNAT changes the destination the FIB then routes. [`post_route`] runs
//! on a packet the FIB sends out of the outside interface from any other interface (masquerade, replies of
//! published backends), after the TTL and MTU checks so that ICMP errors the router sends quote what the
//! sender sent. Each returns a [`Verdict`]; neither allocates, locks or panics.
//!
//! A packet whose flow another worker owns ([`super::owner`]) is handed to it untouched; the owner runs the
//! whole L3 input again with [`HANDED`] set in `Meta::scratch[SCRATCH_NAT]`, so it is never handed twice
//! (an ICMP error searched for across workers carries its hop count there too). The answers of masqueraded
//! flows, the bulk of what moves, are recognised in the L3 stage's first pass from their 5-tuple alone and
//! handed over before any other work; the rest when the stage decides. Either way a handed packet waits in
//! the worker's outbox for its owner until the end of the burst, which moves each outbox with one
//! reservation of a [`BulkRing`].

use super::conntrack::{FlowKey, FlowTable4, Hit, InsertError, Key4, Stats, Timeouts};
use super::maglev::Maglev;
use super::owner::{owner_in_to_out, owner_out_to_in, NatConfig, Owner};
use super::ports::{EimTable, PortAllocator, PortSplit, PortStats};
use super::translate::{parse, translate, Kind, NatError, Parsed};
use super::{fold_mul, K1, K2};
use crate::wire::IPPROTO_UDP;
use crossbeam::queue::ArrayQueue;
use dataplane::port::ring::BulkRing;
use dataplane::rss::Steering;
use dataplane::{Burst, DropReason, Pkt, Pool, MAX_BURST};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Scratch word of a packet's NAT handoff state ([`HANDED`] and the search hop count), read in the L3 stage's
/// input only. The same word carries the overlay's bridge domain from the bridge to the VXLAN encap stage
/// ([`crate::vxlan::SCRATCH_DOMAIN`]); a packet is never in both places at once.
pub const SCRATCH_NAT: usize = 3;
/// Set in `Meta::scratch[SCRATCH_NAT]` on a packet handed to its owner: it is processed where it is.
pub const HANDED: u32 = 1 << 31;
/// Handoff queue length per (from, to) pair of workers.
pub const HANDOFF_QUEUE_LEN: usize = 1024;
/// Handed-off packets a worker takes from each queue per round.
pub const HANDOFF_PER_ROUND: usize = 64;
/// Flow tag: the flow holds a port of the worker's allocator.
const TAG_PORT: u32 = 1;
/// Flow tag: the flow holds a share of an endpoint-independent mapping.
const TAG_EIM: u32 = 2;

/// Where a published port forwards to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One backend (address, port).
    One(u32, u16),
    /// A service: index into [`NatTables::services`].
    Service(u16),
}

/// A load-balanced mapping's backends and their Maglev table.
#[derive(Clone, Debug)]
pub struct Service {
    /// Name, for `show nat`.
    pub name: String,
    /// Backends (address, port).
    pub backends: Vec<(u32, u16)>,
    /// Consistent hash of a client to a backend index.
    pub maglev: Maglev,
}

/// A published mapping as configured: `proto` `addr`:`port` forwards to `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// IP protocol (TCP or UDP).
    pub proto: u8,
    /// External address.
    pub addr: u32,
    /// External port.
    pub port: u16,
    /// Backend(s).
    pub target: Target,
}

/// Key of a (protocol, address, port) triple in the sorted lookup lists.
#[inline(always)]
fn triple(proto: u8, addr: u32, port: u16) -> u64 {
    (proto as u64) << 48 | (addr as u64) << 16 | port as u64
}

/// A set of IPv4 addresses whose membership test costs one probe (rarely two) whatever its size: open
/// addressing with linear probing, at most half full. The external addresses are tested up to three times a
/// packet, and a scan of the 17 a million sessions need was about 130 instructions a packet
/// (`wharf-perf nat-inline --sessions 1000000`).
#[derive(Clone, Debug)]
struct AddrSet {
    /// Power-of-two slots; 0 is empty (the address 0.0.0.0 is `zero`).
    slots: Box<[u32]>,
    /// `32 - log2(slots.len())`: a multiplicative hash's top bits pick the first slot.
    shift: u32,
    zero: bool,
    /// One or two addresses (the usual case): compared directly, cheaper than the hash.
    few: Option<[u32; 2]>,
}

impl AddrSet {
    fn new(addrs: &[u32]) -> AddrSet {
        let n = (addrs.len() * 2).next_power_of_two().max(4);
        let mut set = AddrSet {
            slots: vec![0; n].into_boxed_slice(),
            shift: 32 - n.trailing_zeros(),
            zero: false,
            few: match *addrs {
                [a] => Some([a, a]),
                [a, b] => Some([a, b]),
                _ => None,
            },
        };
        for &a in addrs {
            if a == 0 {
                set.zero = true;
                continue;
            }
            let mut i = set.first(a);
            while set.slots[i] != 0 && set.slots[i] != a {
                i = (i + 1) & (n - 1);
            }
            set.slots[i] = a;
        }
        set
    }

    #[inline(always)]
    fn first(&self, a: u32) -> usize {
        (a.wrapping_mul(0x9e37_79b1) >> self.shift) as usize
    }

    #[inline(always)]
    fn contains(&self, a: u32) -> bool {
        if let Some([x, y]) = self.few {
            // Both compared, no branch between: which one matches is data.
            return (a == x) | (a == y);
        }
        if a == 0 {
            return self.zero;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.first(a);
        // At most half full, so an empty slot ends every run; bounded anyway.
        for _ in 0..self.slots.len() {
            match self.slots.get(i & mask) {
                Some(&s) if s == a => return true,
                Some(&0) | None => return false,
                Some(_) => i += 1,
            }
        }
        false
    }
}

/// The compiled NAT configuration.
#[derive(Clone, Debug)]
pub struct NatTables {
    /// State shared across snapshots with the same identity.
    pub shared: std::sync::Arc<NatShared>,
    /// The outside interface (router interface index).
    pub outside: u16,
    /// By router interface: traffic from it leaving through `outside` is masqueraded.
    pub masquerade: Vec<bool>,
    /// External addresses (the outside interface's IPv4 addresses), sorted.
    pub external: Vec<u32>,
    /// The same, for [`NatConfig::is_external`].
    external_set: AddrSet,
    /// The dynamic port range and its split among workers.
    pub split: PortSplit,
    /// Published mappings by [`triple`] of their public side, sorted.
    published: Vec<(u64, Target)>,
    /// [`triple`]s of every backend, sorted.
    backends: Vec<u64>,
    /// Load-balanced services.
    pub services: Vec<Service>,
    /// Conntrack timeouts.
    pub timeouts: Timeouts,
    /// How the outside port spreads what it receives over the workers' queues: with it known, masquerade
    /// picks external ports whose answers arrive at the worker that owns the flow (`alloc_port`).
    pub steering: Steering,
}

impl NatTables {
    /// Tables over `shared` for `outside`; `published` may name services by index into `services`.
    pub fn new(
        shared: std::sync::Arc<NatShared>,
        outside: u16,
        masquerade: Vec<bool>,
        mut external: Vec<u32>,
        published: &[Published],
        services: Vec<Service>,
        timeouts: Timeouts,
    ) -> NatTables {
        external.sort_unstable();
        external.dedup();
        let mut pubs: Vec<(u64, Target)> = published
            .iter()
            .map(|p| (triple(p.proto, p.addr, p.port), p.target))
            .collect();
        pubs.sort_unstable_by_key(|p| p.0);
        pubs.dedup_by_key(|p| p.0);
        let mut backends = Vec::new();
        for p in published {
            match p.target {
                Target::One(a, port) => backends.push(triple(p.proto, a, port)),
                Target::Service(s) => {
                    if let Some(s) = services.get(s as usize) {
                        backends
                            .extend(s.backends.iter().map(|&(a, port)| triple(p.proto, a, port)));
                    }
                }
            }
        }
        backends.sort_unstable();
        backends.dedup();
        NatTables {
            external_set: AddrSet::new(&external),
            split: shared.split,
            shared,
            outside,
            masquerade,
            external,
            published: pubs,
            backends,
            services,
            timeouts,
            steering: Steering::Unknown,
        }
    }

    /// The same tables, told how the outside port steers answers to queues (see [`NatTables::steering`]).
    pub fn with_steering(mut self, steering: Steering) -> NatTables {
        self.steering = steering;
        self
    }

    /// The mapping published at (`proto`, `addr`, `port`).
    #[inline]
    pub fn published(&self, proto: u8, addr: u32, port: u16) -> Option<Target> {
        let k = triple(proto, addr, port);
        self.published
            .binary_search_by_key(&k, |p| p.0)
            .ok()
            .map(|i| self.published[i].1)
    }

    /// Published mappings: (protocol, address, port, target).
    pub fn mappings(&self) -> impl Iterator<Item = (u8, u32, u16, Target)> + '_ {
        self.published
            .iter()
            .map(|&(k, t)| ((k >> 48) as u8, (k >> 16) as u32, k as u16, t))
    }

    /// Whether traffic from router interface `iface` is masqueraded.
    #[inline]
    pub fn masquerades(&self, iface: u16) -> bool {
        self.masquerade
            .get(iface as usize)
            .copied()
            .unwrap_or(false)
    }
}

impl NatConfig for NatTables {
    #[inline]
    fn is_external(&self, addr: u32) -> bool {
        self.external_set.contains(addr)
    }

    #[inline]
    fn is_published(&self, proto: u8, addr: u32, port: u16) -> bool {
        // Masquerade alone publishes nothing: no search, on every packet to an external address.
        !self.published.is_empty() && self.published(proto, addr, port).is_some()
    }

    #[inline]
    fn is_backend(&self, proto: u8, addr: u32, port: u16) -> bool {
        !self.backends.is_empty()
            && self
                .backends
                .binary_search(&triple(proto, addr, port))
                .is_ok()
    }
}

/// What identifies a NAT state: a change of any of these starts over with empty tables.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NatIdentity {
    /// External addresses, sorted.
    pub external: Vec<u32>,
    /// Dynamic port range.
    pub range: (u16, u16),
    /// Workers.
    pub workers: u16,
    /// Flows per worker.
    pub limit: usize,
    /// Endpoint-independent mapping for UDP.
    pub eim: bool,
}

/// One flow as `show conntrack` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// The worker that owns it.
    pub worker: u16,
    /// Key of the first packet.
    pub orig: Key4,
    /// Key of the answers (after translation).
    pub reply: Key4,
    /// TCP state name, `""` for UDP and ICMP.
    pub state: &'static str,
    /// Seconds until it expires.
    pub expires_in: u32,
    /// Whether an answer was seen.
    pub replied: bool,
}

/// A worker's answer to a `show` request.
#[derive(Clone, Debug, Default)]
pub struct NatReport {
    /// The request it answers.
    pub seq: u64,
    /// The worker.
    pub worker: u16,
    /// Flows in the table.
    pub flows_total: usize,
    /// The table's limit.
    pub limit: usize,
    /// Flows, at most as many as asked.
    pub flows: Vec<FlowInfo>,
    /// Conntrack counters.
    pub conntrack: Stats,
    /// Port allocator counters.
    pub ports: PortStats,
    /// Ports in use: (protocol, external address, count).
    pub in_use: Vec<(u8, u32, u32)>,
    /// Ports of this worker's slice per address and protocol.
    pub capacity: u32,
    /// Endpoint-independent mappings held.
    pub eim_mappings: usize,
}

/// What outlives snapshots of one NAT identity: handoff queues, prebuilt worker states, `show` exchange.
pub struct NatShared {
    id: u64,
    identity: NatIdentity,
    split: PortSplit,
    workers: u16,
    /// `queues[to * workers + from]`: a burst moves in and out with one reservation each way.
    queues: Vec<BulkRing>,
    /// One prebuilt state per worker, taken once.
    states: Vec<ArrayQueue<Box<NatState>>>,
    request: AtomicU64,
    request_max: AtomicUsize,
    reports: ArrayQueue<NatReport>,
    /// The pool of queued packets, kept alive until they are freed (declared last: dropped last).
    _pool: Option<Pool>,
}

impl std::fmt::Debug for NatShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatShared")
            .field("id", &self.id)
            .field("identity", &self.identity)
            .finish()
    }
}

/// Why NAT state cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatBuildError(pub String);

impl NatShared {
    /// Queues and one fresh state per worker for `identity`, with `timeouts`; `pool` (the packets' pool) is
    /// kept alive while packets wait in the queues.
    pub fn new(
        identity: NatIdentity,
        timeouts: Timeouts,
        pool: Option<&Pool>,
    ) -> Result<NatShared, NatBuildError> {
        let w = identity.workers.max(1);
        let split = PortSplit::new(identity.range.0, identity.range.1, w)
            .map_err(|e| NatBuildError(format!("port range over {w} workers: {e:?}")))?;
        let id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            identity.hash(&mut h);
            h.finish() | 1
        };
        let seeds = super::random_seeds();
        let states = (0..w)
            .map(|worker| {
                let q = ArrayQueue::new(1);
                let st = NatState::new(id, &identity, split, worker, timeouts, seeds);
                let _ = q.push(Box::new(st));
                q
            })
            .collect();
        Ok(NatShared {
            id,
            split,
            workers: w,
            queues: (0..w as usize * w as usize)
                .map(|_| BulkRing::new(HANDOFF_QUEUE_LEN))
                .collect(),
            states,
            request: AtomicU64::new(0),
            request_max: AtomicUsize::new(0),
            reports: ArrayQueue::new(w as usize * 4),
            identity,
            _pool: pool.cloned(),
        })
    }

    /// What these queues and states were built for.
    pub fn identity(&self) -> &NatIdentity {
        &self.identity
    }

    /// The queues into worker `to`, one per sender (empty for no such worker).
    #[inline]
    fn inbound(&self, to: u16) -> &[BulkRing] {
        let w = self.workers as usize;
        self.queues
            .get(to as usize * w..(to as usize + 1) * w)
            .unwrap_or_default()
    }

    /// Hands as many packets of `burst` as fit from worker `from` to worker `to`, in order, in one
    /// reservation; what does not fit stays in `burst`. Returns how many moved.
    #[inline]
    pub fn hand_burst(&self, from: u16, to: u16, burst: &mut Burst) -> usize {
        match self.inbound(to).get(from as usize) {
            Some(q) => q.enqueue_burst(burst).packets,
            None => 0,
        }
    }

    /// Whether a packet waits for worker `to`.
    #[inline]
    pub fn has_inbound(&self, to: u16) -> bool {
        self.inbound(to).iter().any(|q| !q.is_empty())
    }

    /// Moves up to `max` packets from each queue to worker `to` (and no more than `dst` has room for) to the
    /// end of `dst`, one reservation per queue. Returns how many.
    #[inline]
    pub fn take_inbound_burst(&self, to: u16, max: usize, dst: &mut Burst) -> usize {
        self.inbound(to)
            .iter()
            .map(|q| q.dequeue_burst(dst, max))
            .sum()
    }

    /// Asks every worker for a report with at most `max_flows` flows each; returns the request number.
    pub fn request_report(&self, max_flows: usize) -> u64 {
        while self.reports.pop().is_some() {}
        self.request_max.store(max_flows, Ordering::Relaxed);
        self.request.fetch_add(1, Ordering::Release) + 1
    }

    /// A report a worker posted, if any.
    pub fn take_report(&self) -> Option<NatReport> {
        self.reports.pop()
    }

    /// Workers these tables were built for.
    pub fn workers(&self) -> u16 {
        self.workers
    }
}

/// A worker's NAT state.
pub struct NatState {
    id: u64,
    worker: u16,
    /// The worker's flows.
    pub table: FlowTable4,
    /// The worker's ports.
    pub ports: PortAllocator,
    /// Endpoint-independent mappings (UDP), when configured.
    pub eim: Option<EimTable>,
    last_tick_s: u32,
    answered: u64,
    /// Packets to hand over, by owner: filled while a burst is decided, moved to the queues once per burst
    /// ([`NatState::take_outbox`]), so a handoff costs one queue reservation per burst, not one per packet.
    outbox: Vec<Burst>,
    /// Packets in `outbox`.
    outbound: usize,
}

impl std::fmt::Debug for NatState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatState")
            .field("worker", &self.worker)
            .field("flows", &self.table.len())
            .finish()
    }
}

impl NatState {
    fn new(
        id: u64,
        identity: &NatIdentity,
        split: PortSplit,
        worker: u16,
        timeouts: Timeouts,
        seeds: [u64; 2],
    ) -> NatState {
        let table = FlowTable4::with_seed(
            super::conntrack::Config {
                limit: identity.limit,
                timeouts,
                ..Default::default()
            },
            seeds,
        );
        NatState {
            id,
            worker,
            table,
            ports: PortAllocator::new(split, worker, &identity.external, seeds[0] ^ seeds[1]),
            eim: identity.eim.then(|| EimTable::new(identity.limit)),
            last_tick_s: 0,
            answered: 0,
            outbox: (0..identity.workers.max(1))
                .map(|_| Burst::new(MAX_BURST))
                .collect(),
            outbound: 0,
        }
    }

    /// Puts `pkt` in the outbox of worker `to`, to be handed over at the end of the burst; gives it back when
    /// there is no such worker or its outbox is full (the caller drops it, as for a full queue).
    #[inline]
    pub fn stage_handoff(&mut self, to: u16, pkt: Pkt) -> Result<(), Pkt> {
        match self.outbox.get_mut(to as usize) {
            Some(b) => {
                b.push(pkt)?;
                self.outbound += 1;
                Ok(())
            }
            None => Err(pkt),
        }
    }

    /// Whether packets wait in the outboxes.
    #[inline]
    pub fn has_outbound(&self) -> bool {
        self.outbound > 0
    }

    /// Hands every outbox to its worker through `shared`'s queues, adding to `handed` how many moved;
    /// `dropped` gets each packet that did not fit (its queue was full).
    pub fn take_outbox(
        &mut self,
        shared: &NatShared,
        mut dropped: impl FnMut(Pkt),
        handed: &mut u64,
    ) {
        for (to, b) in self.outbox.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            *handed += shared.hand_burst(self.worker, to as u16, b) as u64;
            for p in b.drain() {
                dropped(p);
            }
        }
        self.outbound = 0;
    }

    /// Which [`NatShared`] built it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Gives back whatever `flow` holds (its port, its share of a mapping).
    fn release_of(
        ports: &mut PortAllocator,
        eim: &mut Option<EimTable>,
        tag: u32,
        orig: &Key4,
        reply: &Key4,
    ) {
        match (tag, eim.as_mut()) {
            (TAG_PORT, _) => {
                ports.release(orig.proto, reply.dst, reply.dport);
            }
            (TAG_EIM, Some(eim)) => {
                eim.release(ports, orig.proto, orig.src, orig.sport);
            }
            _ => {}
        }
    }

    /// Expires up to `budget` flows due at `now_s`, releasing their ports.
    #[inline]
    pub fn expire(&mut self, now_s: u32, budget: usize) -> usize {
        self.last_tick_s = now_s;
        let ports = &mut self.ports;
        let eim = &mut self.eim;
        self.table.expire(now_s, budget, |f| {
            Self::release_of(ports, eim, f.tag(), f.orig(), f.reply())
        })
    }
}

/// Makes sure worker `worker` runs the state of `t`'s identity (taking the prebuilt one when the identity
/// changed) with `t`'s timeouts. False when there is none to take (the stage then drops what needs NAT).
#[inline]
pub fn ensure_state(t: &NatTables, slot: &mut Option<Box<NatState>>, worker: u16) -> bool {
    match slot {
        Some(s) if s.id == t.shared.id => {}
        _ => {
            *slot = t.shared.states.get(worker as usize).and_then(|q| q.pop());
            if slot.is_none() {
                return false;
            }
        }
    }
    let Some(s) = slot.as_mut() else { return false };
    if *s.table.timeouts() != t.timeouts {
        s.table.set_timeouts(t.timeouts);
    }
    true
}

/// Whether worker state has NAT work to do off the packet path: packets handed to it, a `show` request, or
/// a second's expiry tick.
#[inline]
pub fn has_deferred(t: &NatTables, st: &Option<Box<NatState>>, worker: u16, now_s: u32) -> bool {
    t.shared.has_inbound(worker)
        || st.as_ref().is_some_and(|s| {
            s.last_tick_s != now_s || s.answered != t.shared.request.load(Ordering::Acquire)
        })
}

/// Answers a pending `show` request and ticks expiry (once a second when idle).
pub fn run_deferred(t: &NatTables, st: &mut NatState, now_s: u32) {
    if st.last_tick_s != now_s {
        st.expire(now_s, 1024);
    }
    let seq = t.shared.request.load(Ordering::Acquire);
    if st.answered == seq {
        return;
    }
    st.answered = seq;
    let max = t.shared.request_max.load(Ordering::Relaxed);
    let flows = st
        .table
        .iter()
        .take(max)
        .map(|(_, f)| FlowInfo {
            worker: st.worker,
            orig: *f.orig(),
            reply: *f.reply(),
            state: f.tcp_state().map(|s| s.name()).unwrap_or(""),
            expires_in: f.expires().saturating_sub(now_s),
            replied: f.replied(),
        })
        .collect();
    let mut in_use = Vec::new();
    for &a in st.ports.addrs() {
        for proto in [
            crate::wire::IPPROTO_TCP,
            IPPROTO_UDP,
            crate::wire::IPPROTO_ICMP,
        ] {
            in_use.push((proto, a, st.ports.in_use(proto, a)));
        }
    }
    let _ = t.shared.reports.push(NatReport {
        seq,
        worker: st.worker,
        flows_total: st.table.len(),
        limit: st.table.limit(),
        flows,
        conntrack: *st.table.stats(),
        ports: *st.ports.stats(),
        in_use,
        capacity: st.ports.capacity(),
        eim_mappings: st.eim.as_ref().map_or(0, |e| e.len()),
    });
}

/// What the stage decided about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not NAT traffic: route it as it is.
    Pass,
    /// Translated in place: route the new packet.
    Translated,
    /// Its flow belongs to this worker: hand it over untouched.
    Handoff(u16),
    /// Drop it.
    Drop(DropReason),
    /// It would be forwarded but its TTL is spent: answer time exceeded (it is untouched).
    TtlExceeded,
}

/// Maps a parse error: protocols the NAT has nothing to rewrite in pass, the rest is dropped.
#[inline]
fn parse_error(e: NatError) -> Verdict {
    match e.drop_reason() {
        Some(r) => Verdict::Drop(r),
        None => Verdict::Pass,
    }
}

/// Looks up, tracks (unless it is an ICMP error, which only follows its flow, or its TTL is spent: it is not
/// forwarded) and translates a packet of a known flow, in one probe of the table; `None` when the table
/// holds no flow for it.
#[inline(always)]
fn known(
    st: &mut NatState,
    info: &Parsed,
    ip: &mut [u8],
    ttl_ok: bool,
    now_s: u32,
) -> Option<Verdict> {
    let track = ttl_ok && !info.is_icmp_error();
    match st
        .table
        .lookup_track(&info.key, info.tcp_flags, track, now_s)
    {
        Hit::Miss => None,
        Hit::Found { .. } if !ttl_ok => Some(Verdict::TtlExceeded),
        Hit::Invalid => Some(Verdict::Drop(DropReason::Malformed)),
        Hit::Found { target, .. } => Some(done(translate(ip, info, &target))),
    }
}

#[inline]
fn done(r: Result<(), NatError>) -> Verdict {
    match r {
        Ok(()) => Verdict::Translated,
        Err(e) => Verdict::Drop(e.drop_reason().unwrap_or(DropReason::Malformed)),
    }
}

/// A new external (address, port) for flow `k` from inside, avoiding published ports: (address, port, tag).
///
/// With several workers and the outside port's steering known, the port is one whose answers (from `k`'s
/// destination to the external address and port) RSS brings to this worker, which owns the flow: they need
/// no handoff. An endpoint-independent mapping is steered for its first destination only; ICMP answers hash
/// on addresses alone, so no identifier steers them.
fn alloc_port(t: &NatTables, st: &mut NatState, k: &Key4) -> Result<(u32, u16, u32), DropReason> {
    let h = fold_mul(
        (k.src as u64) << 32 ^ k.dst as u64 ^ K1,
        (k.sport as u64) << 16 ^ k.dport as u64 ^ K2,
    );
    let here = st.ports.worker();
    let steered = t.split.workers() > 1 && t.steering.steers_by_port(k.proto);
    let lands_here = |x: u32, p: u16| {
        !steered
            || t.steering
                .queue_v4(k.dst.to_be_bytes(), k.dport, x.to_be_bytes(), p, k.proto)
                == Some(here)
    };
    if let (Some(eim), IPPROTO_UDP) = (st.eim.as_mut(), k.proto) {
        let (x, p) = eim
            .acquire(&mut st.ports, k.proto, k.src, k.sport, lands_here)
            .map_err(|e| e.drop_reason())?;
        if !t.is_published(k.proto, x, p) {
            return Ok((x, p, TAG_EIM));
        }
        eim.release(&mut st.ports, k.proto, k.src, k.sport);
        return Err(DropReason::NatExhausted);
    }
    // A port that a published mapping uses is skipped (held until a free one is found, then given back).
    let mut held = [(0u32, 0u16); 4];
    let mut n = 0;
    let got = loop {
        match st
            .ports
            .alloc_preferring(k.proto, k.src, h.wrapping_add(n as u64), lands_here)
        {
            Ok((x, p)) if t.is_published(k.proto, x, p) && n < held.len() => {
                held[n] = (x, p);
                n += 1;
            }
            Ok((x, p)) if t.is_published(k.proto, x, p) => {
                st.ports.release(k.proto, x, p);
                break Err(DropReason::NatExhausted);
            }
            Ok((x, p)) => break Ok((x, p, TAG_PORT)),
            Err(e) => break Err(e.drop_reason()),
        }
    };
    for &(x, p) in &held[..n] {
        st.ports.release(k.proto, x, p);
    }
    got
}

/// Creates the flow `k` -> `reply` and translates the packet; gives back what `tag` holds on failure.
fn create(
    st: &mut NatState,
    info: &Parsed,
    reply: Key4,
    tag: u32,
    ip: &mut [u8],
    now_s: u32,
) -> Verdict {
    let k = info.key;
    if let Err(e) = st.table.insert(k, reply, info.tcp_flags, tag, now_s) {
        NatState::release_of(&mut st.ports, &mut st.eim, tag, &k, &reply);
        return Verdict::Drop(match e {
            InsertError::NotSyn => DropReason::NatNoSession,
            e => e.drop_reason(),
        });
    }
    done(translate(ip, info, &reply.reversed()))
}

/// Before the FIB lookup, for an IPv4 packet (`ip`, from its header on) to one of the external addresses:
/// replies of masqueraded flows and of hairpins are translated back, a first packet to a published port
/// creates a DNAT flow (from inside, i.e. not `from_outside`: hairpin, source translated too). Anything else
/// to an external address (ping, the router's own services) passes to local delivery.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn pre_route(
    t: &NatTables,
    st: &mut NatState,
    worker: u16,
    handed: u32,
    from_outside: bool,
    ip: &mut [u8],
    ttl_ok: bool,
    now_s: u32,
) -> Verdict {
    let info = match parse(ip) {
        Ok(i) => i,
        Err(e) => return parse_error(e),
    };
    let Some(owner) = owner_out_to_in(&info, &t.split, t) else {
        return Verdict::Pass;
    };
    if owner != worker && handed & HANDED == 0 {
        return Verdict::Handoff(owner);
    }
    if let Some(v) = known(st, &info, ip, ttl_ok, now_s) {
        return v;
    }
    let k = info.key;
    if info.is_icmp_error() || matches!(k.proto, crate::wire::IPPROTO_ICMP) {
        return Verdict::Pass;
    }
    let Some(target) = t.published(k.proto, k.dst, k.dport) else {
        return Verdict::Pass;
    };
    if !ttl_ok {
        return Verdict::TtlExceeded;
    }
    let (b, bp) = match target {
        Target::One(a, p) => (a, p),
        Target::Service(s) => {
            let Some(svc) = t.services.get(s as usize) else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            let h = fold_mul(((k.src as u64) << 16 | k.sport as u64) ^ K2, K1);
            match svc.maglev.lookup(h).and_then(|i| svc.backends.get(i)) {
                Some(&b) => b,
                None => return Verdict::Drop(DropReason::NoRoute),
            }
        }
    };
    let mut reply = Key4::new(k.proto, b, bp, k.src, k.sport);
    let mut tag = 0;
    if !from_outside {
        // Hairpin: the backend must answer the router, not the endpoint directly.
        match alloc_port(t, st, &k) {
            Ok((x, p, tg)) => {
                reply.dst = x;
                reply.dport = p;
                tag = tg;
            }
            Err(r) => return Verdict::Drop(r),
        }
    }
    create(st, &info, reply, tag, ip, now_s)
}

/// After the FIB lookup, for an IPv4 packet leaving through the outside interface from interface `iface`
/// (not the outside one): packets of known flows are translated (replies of published backends too); the
/// first packet of a flow from a masqueraded interface gets the external address and a port of this worker.
/// Unmasqueraded traffic without a flow passes as it is.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn post_route(
    t: &NatTables,
    st: &mut NatState,
    worker: u16,
    handed: u32,
    masquerade: bool,
    ip: &mut [u8],
    now_s: u32,
) -> Verdict {
    let info = match parse(ip) {
        Ok(i) => i,
        Err(NatError::Unsupported) if masquerade => {
            return Verdict::Drop(DropReason::NatUnsupported)
        }
        Err(NatError::Fragment) if !masquerade => return Verdict::Pass,
        Err(e) => return parse_error(e),
    };
    if t.is_external(info.key.src) {
        return Verdict::Pass;
    }
    let owner = owner_in_to_out(&info, &t.split, t);
    if let Owner::Worker(w) = owner {
        if w != worker && handed & HANDED == 0 {
            return Verdict::Handoff(w);
        }
    }
    // An ICMP error is looked up on every worker it visits; anything else is on this worker or nowhere.
    if let Some(v) = known(st, &info, ip, true, now_s) {
        return v;
    }
    if owner == Owner::Search {
        // Not here: the next worker may have it, up to every worker once.
        let hops = handed & 0xff;
        let n = t.shared.workers as u32;
        if hops + 1 < n {
            return Verdict::Handoff(((worker as u32 + 1) % n) as u16);
        }
        return if masquerade {
            Verdict::Drop(DropReason::NatNoSession)
        } else {
            Verdict::Pass
        };
    }
    if !masquerade {
        return Verdict::Pass;
    }
    if info.is_icmp_error() || (info.kind == Kind::IcmpEcho && !info.is_echo_request()) {
        return Verdict::Drop(DropReason::NatNoSession);
    }
    let k = info.key;
    let (x, p, tag) = match alloc_port(t, st, &k) {
        Ok(v) => v,
        Err(r) => return Verdict::Drop(r),
    };
    let mut reply = Key4::new(k.proto, k.dst, k.dport, x, p);
    if k.proto == crate::wire::IPPROTO_ICMP {
        reply.sport = p;
    }
    create(st, &info, reply, tag, ip, now_s)
}

/// The Maglev table for `backends` (at least one), sized for them.
pub fn service(name: &str, backends: Vec<(u32, u16)>) -> Result<Service, String> {
    let ids: Vec<u64> = backends
        .iter()
        .map(|&(a, p)| (a as u64) << 16 | p as u64)
        .collect();
    let size = if backends.len() <= 64 {
        4099
    } else {
        super::maglev::DEFAULT_SIZE
    };
    let maglev = Maglev::new(&ids, size).map_err(|e| format!("service {name}: {e:?}"))?;
    Ok(Service {
        name: name.to_string(),
        backends,
        maglev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_set_finds_exactly_its_members() {
        for n in [0usize, 1, 2, 3, 17, 100] {
            let addrs: Vec<u32> = (0..n as u32).map(|k| 0xc633_6401 + (k << 8)).collect();
            let set = AddrSet::new(&addrs);
            for &a in &addrs {
                assert!(set.contains(a), "{n}: {a:#x}");
            }
            for a in [
                0,
                1,
                0xc633_6402,
                0x0a00_0001,
                u32::MAX,
                0xc633_6401 + ((n as u32) << 8),
            ] {
                assert!(!set.contains(a), "{n}: {a:#x}");
            }
        }
        for addrs in [&[0, 7][..], &[0, 7, 9]] {
            let set = AddrSet::new(addrs);
            assert!(set.contains(0) && set.contains(7) && !set.contains(8));
        }
    }

    #[test]
    fn triples_sort_and_find() {
        let shared = std::sync::Arc::new(
            NatShared::new(
                NatIdentity {
                    external: vec![0x0a00_0001],
                    range: (1024, 65535),
                    workers: 2,
                    limit: 1024,
                    eim: false,
                },
                Timeouts::default(),
                None,
            )
            .unwrap(),
        );
        let t = NatTables::new(
            shared,
            0,
            vec![false, true],
            vec![0x0a00_0001],
            &[Published {
                proto: 6,
                addr: 0x0a00_0001,
                port: 4000,
                target: Target::One(0xc0a8_0002, 80),
            }],
            Vec::new(),
            Timeouts::default(),
        );
        assert_eq!(
            t.published(6, 0x0a00_0001, 4000),
            Some(Target::One(0xc0a8_0002, 80))
        );
        assert_eq!(t.published(17, 0x0a00_0001, 4000), None);
        assert!(t.is_backend(6, 0xc0a8_0002, 80));
        assert!(!t.is_backend(6, 0xc0a8_0002, 81));
        assert!(t.masquerades(1) && !t.masquerades(0) && !t.masquerades(7));
        let mut slot = None;
        assert!(ensure_state(&t, &mut slot, 1));
        assert_eq!(slot.as_ref().unwrap().worker, 1);
        // Taken once: a second worker 1 finds nothing.
        let mut again = None;
        assert!(!ensure_state(&t, &mut again, 1));
    }
}
