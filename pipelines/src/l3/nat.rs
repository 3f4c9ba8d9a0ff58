//! The NAT hooks of IPv4 routing ([`crate::nat::stage`]): before the FIB lookup for packets to an external
//! address, after it for packets leaving through the outside interface; and the worker's NAT housekeeping
//! (packets handed to it, expiry, `show` reports).

use super::{icmp, process, L3Ctx, L3State, ETH_LEN};
use crate::nat::stage::{self, NatTables, Verdict, HANDED, SCRATCH_NAT};
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
    if !stage::ensure_state(t, &mut st.nat, c.worker) {
        out.drop_pkt(pkt, DropReason::NatExhausted);
        return None;
    }
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
    if !stage::ensure_state(t, &mut st.nat, c.worker) {
        out.drop_pkt(pkt, DropReason::NatExhausted);
        return None;
    }
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

#[inline]
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
        let per_queue = (MAX_BURST / t.shared.workers().max(1) as usize)
            .min(stage::HANDOFF_PER_ROUND)
            .max(1);
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
