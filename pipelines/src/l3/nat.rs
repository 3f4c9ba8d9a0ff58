//! The NAT hooks of IPv4 routing ([`crate::nat::stage`]): before the FIB lookup for packets to an external
//! address, after it for packets leaving through the outside interface; and the worker's NAT housekeeping
//! (packets handed to it, expiry, `show` reports).

use super::{icmp, process, L3Ctx, L3State, ETH_LEN};
use crate::nat::conntrack::Key4;
use crate::nat::stage::{self, NatTables, Verdict, HANDED, SCRATCH_NAT};
use crate::wire::{IPPROTO_TCP, IPPROTO_UDP};
use dataplane::worker::TxBatches;
use dataplane::{Burst, DropReason, Event, Pkt, MAX_BURST};

/// Offset of the IPv4 destination address in a frame.
const DST: usize = ETH_LEN + 16;
/// Offset of the IPv4 TTL in a frame.
const TTL: usize = ETH_LEN + 8;

/// The destination address of the IPv4 packet in `pkt` (validated by the caller).
#[inline]
pub(super) fn dst_of(pkt: &Pkt) -> u32 {
    let d = pkt.data();
    u32::from_be_bytes([d[DST], d[DST + 1], d[DST + 2], d[DST + 3]])
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
    finish(c, t, st, iface, pkt, v, out)
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
    finish(c, t, st, iface, pkt, v, out)
}

#[inline(always)]
fn finish(
    c: &L3Ctx<'_>,
    t: &NatTables,
    st: &mut L3State,
    iface: u16,
    mut pkt: Pkt,
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
            let s = &mut pkt.meta_mut().scratch[SCRATCH_NAT];
            *s = HANDED | ((*s & 0xff) + 1).min(0xff);
            match t.shared.hand(c.worker, to, pkt) {
                Ok(()) => out.count_event(Event::NatHandoff, 1),
                Err(pkt) => out.drop_pkt(pkt, DropReason::NatHandoffDrop),
            }
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

/// Once per burst, before the packets: makes sure the worker runs the NAT state of the snapshot's tables.
#[inline]
pub(super) fn begin(c: &L3Ctx<'_>, st: &mut L3State) {
    if let Some(t) = c.t.nat.as_deref() {
        stage::ensure_state(t, &mut st.nat, c.worker);
    }
}

/// Starts loading the flow-table lines the IPv4 TCP and UDP packets of `chunk` will look up (whether they
/// turn out to need the NAT or not): first every packet's index line, then, those having arrived, every
/// packet's flow line. At a million flows the lookups then overlap their cache misses instead of taking
/// them one after the other.
#[inline]
pub(super) fn warm(st: &L3State, chunk: &[Pkt]) {
    let Some(s) = st.nat.as_deref() else { return };
    let mut hashes = [0u64; super::WARM];
    let mut n = 0;
    for pkt in chunk {
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
        // Hashed once for both steps.
        let h = s.table.hash_of(&k);
        s.table.prefetch_hashed(h);
        hashes[n] = h;
        n += 1;
    }
    for &h in &hashes[..n] {
        s.table.prefetch_flow_hashed(h);
    }
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
}

/// Routes the packets other workers handed over, answers `show` requests, ticks expiry.
pub(super) fn run_deferred(c: &L3Ctx<'_>, st: &mut L3State, out: &mut TxBatches) {
    let Some(t) = c.t.nat.as_deref() else { return };
    if t.shared.has_inbound(c.worker) {
        let mut inbox = Burst::new(MAX_BURST);
        let per_queue =
            (MAX_BURST / t.shared.workers().max(1) as usize).clamp(1, stage::HANDOFF_PER_ROUND);
        t.shared.take_inbound(c.worker, per_queue, |p| {
            if let Err(p) = inbox.push(p) {
                out.drop_pkt(p, DropReason::NatHandoffDrop);
            }
        });
        process(c, st, &mut inbox, out);
    }
    if stage::ensure_state(t, &mut st.nat, c.worker) {
        if let Some(s) = st.nat.as_deref_mut() {
            stage::run_deferred(t, s, c.now_s());
        }
    }
}
