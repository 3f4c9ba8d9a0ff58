//! The NAT hooks of IPv4 routing ([`crate::nat::stage`]): before the FIB lookup for packets to an external
//! address, after it for packets leaving through the outside interface; and the worker's NAT housekeeping
//! (packets handed to it, expiry, `show` reports).

use super::{icmp, process, L3Ctx, L3State, ETH_LEN, SCRATCH_IFACE};
use crate::nat::conntrack::Key4;
use crate::nat::owner::owner_out_to_in_key;
use crate::nat::stage::{self, NatState, NatTables, Verdict, HANDED, SCRATCH_NAT};
use crate::wire::{IPPROTO_TCP, IPPROTO_UDP};
use dataplane::worker::TxBatches;
use dataplane::{Burst, DropReason, Event, Pkt, MAX_BURST};

/// Offset of the IPv4 destination address in a frame.
const DST: usize = ETH_LEN + 16;
/// Offset of the IPv4 TTL in a frame.
const TTL: usize = ETH_LEN + 8;

/// The destination address of the IPv4 packet in `pkt` (validated by the caller: 0 if it were too short).
/// Inlined, with one length check: it was a call of about 20 instructions on every DNATed packet.
#[inline(always)]
pub(super) fn dst_of(pkt: &Pkt) -> u32 {
    pkt.data().first_chunk::<{ DST + 4 }>().map_or(0, |f| {
        u32::from_be_bytes([f[DST], f[DST + 1], f[DST + 2], f[DST + 3]])
    })
}

/// Before the FIB lookup, for a packet to an external address: the packet to route on (translated or not),
/// or `None` when the NAT took it (handed to another worker, dropped, answered with time exceeded).
#[inline]
pub(super) fn before_route(
    c: &L3Ctx<'_>,
    t: &NatTables,
    st: &mut L3State,
    iface: u16,
    mut pkt: Pkt,
    out: &mut TxBatches,
) -> Option<Pkt> {
    // `process` took the state for this burst.
    let Some(s) = st.nat.as_deref_mut() else {
        out.drop_pkt(pkt, DropReason::NatExhausted);
        return None;
    };
    let handed = pkt.meta().scratch[SCRATCH_NAT];
    let ttl_ok = pkt.data()[TTL] > 1;
    let v = stage::pre_route(
        t,
        s,
        c.worker,
        handed,
        iface == t.outside,
        &mut pkt.data_mut()[ETH_LEN..],
        ttl_ok,
        c.now_s(),
    );
    finish(c, st, iface, pkt, v, out)
}

/// After the FIB lookup (and the TTL and MTU checks), for a packet from `iface` leaving through the outside
/// interface: the packet to send on, or `None` when the NAT took it.
#[inline]
pub(super) fn after_route(
    c: &L3Ctx<'_>,
    t: &NatTables,
    st: &mut L3State,
    iface: u16,
    mut pkt: Pkt,
    out: &mut TxBatches,
) -> Option<Pkt> {
    let Some(s) = st.nat.as_deref_mut() else {
        out.drop_pkt(pkt, DropReason::NatExhausted);
        return None;
    };
    let handed = pkt.meta().scratch[SCRATCH_NAT];
    let v = stage::post_route(
        t,
        s,
        c.worker,
        handed,
        t.masquerades(iface),
        &mut pkt.data_mut()[ETH_LEN..],
        c.now_s(),
    );
    finish(c, st, iface, pkt, v, out)
}

#[inline(always)]
fn finish(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    iface: u16,
    pkt: Pkt,
    v: Verdict,
    out: &mut TxBatches,
) -> Option<Pkt> {
    match v {
        Verdict::Pass => Some(pkt),
        Verdict::Translated => {
            out.count_event(Event::NatTranslated, 1);
            Some(pkt)
        }
        Verdict::Handoff(to) => {
            hand(&mut st.nat, pkt, to, out);
            None
        }
        Verdict::Drop(r) => {
            out.drop_pkt(pkt, r);
            None
        }
        Verdict::TtlExceeded => {
            icmp::time_exceeded4(c, st, iface, pkt, out);
            None
        }
    }
}

/// Hands `pkt` to worker `to`, the owner of its flow, untouched: marked [`HANDED`] (with one more hop) and
/// put in the worker's outbox, which [`flush`] moves to the queue at the end of the burst.
#[inline(always)]
pub(super) fn hand(nat: &mut Option<Box<NatState>>, mut pkt: Pkt, to: u16, out: &mut TxBatches) {
    let s = &mut pkt.meta_mut().scratch[SCRATCH_NAT];
    *s = HANDED | ((*s & 0xff) + 1).min(0xff);
    let Some(s) = nat.as_deref_mut() else {
        out.drop_pkt(pkt, DropReason::NatHandoffDrop);
        return;
    };
    if let Err(pkt) = s.stage_handoff(to, pkt) {
        out.drop_pkt(pkt, DropReason::NatHandoffDrop);
    }
}

/// Moves the packets handed over during a burst to their owners' queues, one reservation per owner; what a
/// full queue does not take is dropped as `nat_handoff_drop`.
#[inline]
pub(super) fn flush(c: &L3Ctx<'_>, st: &mut L3State, out: &mut TxBatches) {
    let (Some(t), Some(s)) = (c.t.nat.as_deref(), st.nat.as_deref_mut()) else {
        return;
    };
    if !s.has_outbound() {
        return;
    }
    let mut handed = 0;
    s.take_outbox(
        &t.shared,
        |p| out.drop_pkt(p, DropReason::NatHandoffDrop),
        &mut handed,
    );
    out.count_event(Event::NatHandoff, handed);
}

/// Once per burst, before the packets: makes sure the worker runs the NAT state of the snapshot's tables.
#[inline]
pub(super) fn begin(c: &L3Ctx<'_>, st: &mut L3State) {
    if let Some(t) = c.t.nat.as_deref() {
        stage::ensure_state(t, &mut st.nat, c.worker);
    }
}

/// In [`warm`]'s marks: the packet is decided in pass 2 as usual.
pub(super) const KEEP: u16 = u16::MAX;

/// Pass 1's marks, by position in the burst: [`KEEP`], or the worker to hand the packet to. A worker keeps
/// one set in its state, so a burst does not clear 512 bytes: [`warm`] writes every position of a chunk
/// whenever it may mark (several workers), and pass 2 reads them only when it did mark.
pub(super) struct HandMarks([u16; MAX_BURST]);

impl HandMarks {
    /// The marks from position `start` on (empty past the end).
    #[inline]
    pub(super) fn chunk(&mut self, start: usize) -> &mut [u16] {
        self.0.get_mut(start..).unwrap_or_default()
    }

    /// Every mark, by position.
    #[inline]
    pub(super) fn marks(&self) -> &[u16] {
        &self.0
    }
}

impl Default for HandMarks {
    fn default() -> Self {
        HandMarks([KEEP; MAX_BURST])
    }
}

impl std::fmt::Debug for HandMarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandMarks")
    }
}

/// Starts loading the flow-table lines the IPv4 TCP and UDP packets of `chunk` will look up (whether they
/// turn out to need the NAT or not): first every packet's index line, then, those having arrived, every
/// packet's flow line. At a million flows the lookups then overlap their cache misses instead of taking
/// them one after the other.
///
/// With several workers, a packet from the outside interface whose flow another worker owns (the answers of
/// a masqueraded flow that RSS brought here) is marked in `hand` with that worker, and left out of the second
/// step: pass 2 hands it over untouched before any other work, and the owner does all of it, once (the stage
/// would hand it over too, but only after the header checks, the parse and the owner rules, all done again
/// on the owner). Packets from other interfaces are not looked at (an answer only comes from outside; the
/// rare packet from inside to an external address that another worker owns, a hairpin, is handed by the
/// stage), nor is a packet already [`HANDED`]. With several workers every position of `hand` the chunk covers
/// is written ([`KEEP`] or a worker); with one, none. Returns whether any packet was marked.
#[inline]
pub(super) fn warm(
    c: &L3Ctx<'_>,
    nat: &Option<Box<NatState>>,
    chunk: &[Pkt],
    hand: &mut [u16],
) -> bool {
    let Some(s) = nat.as_deref() else {
        return false;
    };
    // Two loops: the one that looks for packets to hand over runs only on a chunk that has a candidate (from
    // the outside interface, not handed over already), so one worker's bursts, the bursts from inside and
    // the packets handed over have nothing of it in theirs.
    match c.t.nat.as_deref().filter(|t| t.shared.workers() > 1) {
        Some(t) => {
            let n = chunk.len().min(hand.len());
            hand[..n].fill(KEEP);
            let outside = t.outside as u32;
            let candidate = |p: &Pkt| {
                let scratch = &p.meta().scratch;
                (scratch[SCRATCH_IFACE] == outside) & (scratch[SCRATCH_NAT] & HANDED == 0)
            };
            if chunk.iter().any(candidate) {
                warm_chunk::<true>(s, Some(t), c.worker, chunk, hand)
            } else {
                warm_chunk::<false>(s, None, c.worker, chunk, hand)
            }
        }
        None => warm_chunk::<false>(s, None, c.worker, chunk, hand),
    }
}

/// [`warm`] of a chunk, marking packets for other workers when `HANDOFF` (then `t` is the NAT tables).
#[inline(always)]
fn warm_chunk<const HANDOFF: bool>(
    s: &NatState,
    t: Option<&NatTables>,
    me: u16,
    chunk: &[Pkt],
    hand: &mut [u16],
) -> bool {
    let outside = t.map_or(u32::MAX, |t| t.outside as u32);
    let mut marked = false;
    let mut hashes = [0u64; super::WARM];
    let mut n = 0;
    for (i, pkt) in chunk.iter().enumerate() {
        let d = pkt.data();
        // Plain IPv4 (no options) TCP or UDP: the ports are at fixed offsets.
        if d.len() < ETH_LEN + 24 || d[12..14] != [8, 0] || d[ETH_LEN] != 0x45 {
            continue;
        }
        let proto = d[ETH_LEN + 9];
        if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
            continue;
        }
        let b = |o: usize| u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
        let k = Key4::new(
            proto,
            b(ETH_LEN + 12),
            u16::from_be_bytes([d[ETH_LEN + 20], d[ETH_LEN + 21]]),
            b(ETH_LEN + 16),
            u16::from_be_bytes([d[ETH_LEN + 22], d[ETH_LEN + 23]]),
        );
        let mut here = true;
        if let (true, Some(t)) = (HANDOFF, t) {
            let scratch = &pkt.meta().scratch;
            // A burst comes from one interface and is all handed over or none (taken from the handoff queues,
            // or received), so this branch is predicted; which worker owns an answer is not (RSS spreads them
            // at random), so the mark is chosen without a branch.
            if (scratch[SCRATCH_IFACE] == outside) & (scratch[SCRATCH_NAT] & HANDED == 0) {
                let o = owner_out_to_in_key(&k, &t.split, t).unwrap_or(me);
                here = o == me;
                if let Some(m) = hand.get_mut(i) {
                    *m = if here { KEEP } else { o };
                }
                marked |= !here;
            }
        }
        // Hashed once for both steps. A packet for another worker has no flow here: it is hashed for nothing
        // (cheaper than a branch mispredicted half the time) but prefetches the line of hash 0, the same for
        // all of them (not a line of this table it will not read), and is left out of the second step.
        let h = s.table.hash_of(&k);
        s.table.prefetch_hashed(if here { h } else { 0 });
        if let Some(slot) = hashes.get_mut(n) {
            *slot = h;
        }
        n += if HANDOFF { here as usize } else { 1 };
    }
    for &h in hashes.get(..n).unwrap_or_default() {
        s.table.prefetch_flow_hashed(h);
    }
    marked
}

/// Once per burst: expires a few flows.
#[inline]
pub(super) fn tick(c: &L3Ctx<'_>, st: &mut L3State) {
    if let Some(s) = st.nat.as_deref_mut() {
        s.expire(c.now_s(), 16);
    }
}

/// Whether the worker has NAT work off the packet path.
#[inline]
pub(super) fn has_deferred(c: &L3Ctx<'_>, st: &L3State) -> bool {
    c.t.nat
        .as_deref()
        .is_some_and(|t| stage::has_deferred(t, &st.nat, c.worker, c.now_s()))
        || st.nat.as_deref().is_some_and(|s| s.has_outbound())
}

/// Moves packets other workers handed to this one to the end of `burst`, as many as it has room for (up to
/// [`stage::HANDOFF_PER_ROUND`] from each, no more than a fair share of a full burst); whether any came.
#[inline]
pub(super) fn take_inbound(c: &L3Ctx<'_>, burst: &mut Burst) -> bool {
    let Some(t) = c.t.nat.as_deref() else {
        return false;
    };
    let workers = t.shared.workers();
    if workers < 2 || !t.shared.has_inbound(c.worker) {
        return false;
    }
    let per_queue = (MAX_BURST / workers as usize).clamp(1, stage::HANDOFF_PER_ROUND);
    t.shared.take_inbound_burst(c.worker, per_queue, burst) > 0
}

/// Routes the packets other workers handed over (when no burst of this worker took them along), answers
/// `show` requests, ticks expiry.
pub(super) fn run_deferred(c: &L3Ctx<'_>, st: &mut L3State, out: &mut TxBatches) {
    let Some(t) = c.t.nat.as_deref() else { return };
    let mut inbox = Burst::new(MAX_BURST);
    if take_inbound(c, &mut inbox) {
        process(c, st, &mut inbox, out);
    }
    // Handoffs staged outside a burst (none today: every input runs within `process`, which flushes).
    flush(c, st, out);
    if stage::ensure_state(t, &mut st.nat, c.worker) {
        if let Some(s) = st.nat.as_deref_mut() {
            stage::run_deferred(t, s, c.now_s());
        }
    }
}
