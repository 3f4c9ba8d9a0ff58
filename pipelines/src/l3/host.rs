//! Local delivery to the router's host stack, and what that stack sends.
//!
//! Packets for one of the router's addresses that the fast path does not answer itself (TCP, and IP
//! protocols other than ICMP and UDP) go to a host stack running on a thread of its own (the control side
//! runs smoltcp there). The two sides meet in [`HostQueues`]: two bounded lock-free queues of packets without
//! their Ethernet header.
//!
//! - In: a worker strips the Ethernet header and pushes the IP packet to `to_host`; a full queue drops it as
//!   `host_queue_full`. No lock, no allocation, no wait.
//! - Out: the host stack pushes IP packets (in buffers of the router's pool) to `from_host`; worker 0 pops them
//!   in its deferred work (`run_deferred`), puts an Ethernet header in the headroom and routes them like
//!   anything the router originates ([`route_local_output`]): FIB lookup of the destination, adjacency,
//!   neighbour resolution (unresolved next hops are asked and the packet waits, as for forwarded packets). One
//!   worker drains the queue so a connection's segments leave in the order the stack sent them.

use super::neigh::{NeighKey, Neighbor};
use super::{resolve_adj, to_neighbor, Adjacency, L3Ctx, L3State, ETH_IPV4, ETH_IPV6, ETH_LEN};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::Ipv6Packet;
use crossbeam::queue::ArrayQueue;
use dataplane::worker::TxBatches;
use dataplane::{DropReason, Event, Pkt, Pool};
use std::net::Ipv6Addr;

/// Default capacity of each of the two queues.
pub const DEFAULT_QUEUE_LEN: usize = 1024;

/// Packets the worker takes from the host stack per poll round (its batches hold 256 per port).
pub const OUTPUT_PER_ROUND: usize = 64;

/// The queues between the workers and the router's host stack. Shared by every snapshot (kept across
/// reloads) and by the host-stack thread.
pub struct HostQueues {
    to_host: ArrayQueue<Pkt>,
    from_host: ArrayQueue<Pkt>,
    /// The pool of the queued packets, kept alive until they are freed (declared last: dropped last).
    _pool: Option<Pool>,
}

impl std::fmt::Debug for HostQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostQueues")
            .field("to_host", &self.to_host.len())
            .field("from_host", &self.from_host.len())
            .field("capacity", &self.to_host.capacity())
            .finish()
    }
}

impl HostQueues {
    /// Two queues of `capacity` packets each (at least 1). Whoever owns the packets' pool must
    /// [`HostQueues::drain`] them before dropping the last handle to it; see [`HostQueues::for_pool`].
    pub fn new(capacity: usize) -> HostQueues {
        HostQueues {
            to_host: ArrayQueue::new(capacity.max(1)),
            from_host: ArrayQueue::new(capacity.max(1)),
            _pool: None,
        }
    }

    /// Queues for packets of `pool`, which they keep alive: packets still queued when the last handle to the
    /// queues goes (the last snapshot, the host stack) go home to a live pool, whatever the order of shutdown.
    pub fn for_pool(capacity: usize, pool: &Pool) -> HostQueues {
        HostQueues {
            _pool: Some(pool.clone()),
            ..HostQueues::new(capacity)
        }
    }

    /// Capacity of each queue.
    pub fn capacity(&self) -> usize {
        self.to_host.capacity()
    }

    /// Packets queued now: `(to the host stack, from it)`.
    pub fn queued(&self) -> (usize, usize) {
        (self.to_host.len(), self.from_host.len())
    }

    /// Queues an IP packet for the host stack; gives it back when the queue is full.
    #[inline]
    pub fn push_to_host(&self, pkt: Pkt) -> Result<(), Pkt> {
        self.to_host.push(pkt)
    }

    /// The next IP packet for the host stack (the host-stack thread calls this).
    #[inline]
    pub fn pop_to_host(&self) -> Option<Pkt> {
        self.to_host.pop()
    }

    /// Whether a packet waits for the host stack.
    #[inline]
    pub fn has_input(&self) -> bool {
        !self.to_host.is_empty()
    }

    /// Queues an IP packet the host stack sends; gives it back when the queue is full.
    #[inline]
    pub fn push_from_host(&self, pkt: Pkt) -> Result<(), Pkt> {
        self.from_host.push(pkt)
    }

    /// Whether the output queue has no room (the host stack holds its output back then).
    #[inline]
    pub fn output_full(&self) -> bool {
        self.from_host.is_full()
    }

    /// The next IP packet the host stack sent (worker 0 calls this).
    #[inline]
    pub fn pop_from_host(&self) -> Option<Pkt> {
        self.from_host.pop()
    }

    /// Whether the host stack sent something the workers have not taken yet. Cheap: two atomic loads.
    #[inline]
    pub fn has_output(&self) -> bool {
        !self.from_host.is_empty()
    }

    /// Frees every queued packet in both directions; returns how many. For shutdown: call it before the
    /// packets' pool goes away.
    pub fn drain(&self) -> usize {
        let mut n = 0;
        while let Some(p) = self.to_host.pop().or_else(|| self.from_host.pop()) {
            drop(p);
            n += 1;
        }
        n
    }
}

/// Hands a packet for a router address (a whole frame) to the host stack without its Ethernet header; counts
/// it as `to_host_stack`, or drops it as `host_queue_full`, or as `no_local_stack` when there is no host stack.
#[inline]
pub(super) fn deliver(c: &L3Ctx<'_>, mut pkt: Pkt, out: &mut TxBatches) {
    let Some(h) = c.t.host.as_deref() else {
        out.drop_pkt(pkt, DropReason::NoLocalStack);
        return;
    };
    if !pkt.strip_front(ETH_LEN) {
        out.drop_pkt(pkt, DropReason::Truncated);
        return;
    }
    match h.push_to_host(pkt) {
        Ok(()) => out.count_event(Event::ToHostStack, 1),
        Err(pkt) => out.drop_pkt(pkt, DropReason::HostQueueFull),
    }
}

/// Whether worker `worker` has host-stack output to send (only worker 0 sends it).
#[inline]
pub(super) fn has_output(c: &L3Ctx<'_>, worker: usize) -> bool {
    worker == 0 && c.t.host.as_deref().is_some_and(HostQueues::has_output)
}

/// Routes up to [`OUTPUT_PER_ROUND`] packets the host stack sent.
pub(super) fn run(c: &L3Ctx<'_>, st: &mut L3State, out: &mut TxBatches) {
    let Some(h) = c.t.host.as_deref() else { return };
    for _ in 0..OUTPUT_PER_ROUND {
        let Some(pkt) = h.pop_from_host() else { return };
        route_local_output(c, st, pkt, out);
    }
}

/// Sends an IP packet the router originates (`pkt` holds the IP packet, no Ethernet header): an Ethernet
/// header goes into the headroom, the destination is looked up in the FIB and the packet leaves towards the
/// adjacency's next hop (resolved, or asked for while the packet waits). IPv6 link-local destinations, which
/// the FIB does not route, leave by the interface whose link-local address is the packet's source (the one
/// the peer talked to), preferring one where the peer is a known neighbour. Counted as `from_host_stack`.
pub fn route_local_output(c: &L3Ctx<'_>, st: &mut L3State, pkt: Pkt, out: &mut TxBatches) {
    out.count_event(Event::FromHostStack, 1);
    route_originated(c, st, pkt, out);
}

/// [`route_local_output`] without counting `from_host_stack`: for other stages that originate IP packets
/// (the VXLAN encapsulation).
pub fn route_originated(c: &L3Ctx<'_>, st: &mut L3State, mut pkt: Pkt, out: &mut TxBatches) {
    let ethertype = match pkt.data().first().map(|b| b >> 4) {
        Some(4) => ETH_IPV4,
        Some(6) => ETH_IPV6,
        Some(_) => {
            out.drop_pkt(pkt, DropReason::BadIpHeader);
            return;
        }
        None => {
            out.drop_pkt(pkt, DropReason::Truncated);
            return;
        }
    };
    let Some(eth) = pkt.prepend(ETH_LEN) else {
        out.drop_pkt(pkt, DropReason::TooBig);
        return;
    };
    // The MACs are written when it leaves; zero meanwhile (the flow hash of an ECMP choice reads them).
    eth[..12].fill(0);
    eth[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let ip = &pkt.data()[ETH_LEN..];
    let (key, len) = if ethertype == ETH_IPV4 {
        let (dst, len) = match Ipv4Packet::new_checked(ip) {
            Ok(ip) => (u32::from_be_bytes(ip.dst()), ip.total_len()),
            Err(_) => {
                out.drop_pkt(pkt, DropReason::Malformed);
                return;
            }
        };
        let adj =
            c.t.fib4
                .lookup(dst)
                .and_then(|nh| resolve_adj(c.t, nh, &pkt));
        match adj {
            Some(Adjacency::Attached { iface }) => (NeighKey::v4(iface, dst), len),
            Some(Adjacency::Gateway { iface, via }) => (NeighKey::v4(iface, via as u32), len),
            _ => {
                out.drop_pkt(pkt, DropReason::NoRoute);
                return;
            }
        }
    } else {
        let (src, dst, len) = match Ipv6Packet::new_checked(ip) {
            Ok(ip) => (
                Ipv6Addr::from(ip.src()),
                Ipv6Addr::from(ip.dst()),
                40 + ip.payload_len(),
            ),
            Err(_) => {
                out.drop_pkt(pkt, DropReason::Malformed);
                return;
            }
        };
        if dst.is_unicast_link_local() {
            match link_local_iface(c, &src, &dst) {
                Some(iface) => (NeighKey::v6(iface, dst.octets()), len),
                None => {
                    out.drop_pkt(pkt, DropReason::NoRoute);
                    return;
                }
            }
        } else {
            let adj =
                c.t.fib6
                    .lookup(&dst.octets())
                    .and_then(|nh| resolve_adj(c.t, nh, &pkt));
            match adj {
                Some(Adjacency::Attached { iface }) => (NeighKey::v6(iface, dst.octets()), len),
                Some(Adjacency::Gateway { iface, via }) => (NeighKey { iface, ip: via }, len),
                _ => {
                    out.drop_pkt(pkt, DropReason::NoRoute);
                    return;
                }
            }
        }
    };
    match c.t.ifaces.get(key.iface as usize) {
        Some(o) if len <= o.mtu as usize => {}
        Some(_) => {
            out.drop_pkt(pkt, DropReason::MtuExceeded);
            return;
        }
        None => {
            out.drop_pkt(pkt, DropReason::NoPort);
            return;
        }
    }
    to_neighbor(c, st, key, pkt, out);
}

/// Where an IPv4 packet the router originates to `dst` leaves, when that takes no decision per packet: the
/// route is not ECMP (which picks by the packet's hash), the next hop's finished rewrite is in the worker's
/// next-hop cache (fresh under this snapshot and neighbour table), and the interface is a plain untagged
/// port. `None` otherwise: the caller then sends through [`route_originated`], which decides the rest (asks
/// for the neighbour, parks, drops). A stage that sends many packets to one destination (the VXLAN
/// encapsulation) resolves once per burst with this, and must not keep the answer longer.
#[inline]
pub fn resolve_originated_v4(c: &L3Ctx<'_>, st: &mut L3State, dst: u32) -> Option<Resolved> {
    let nh = c.t.fib4.lookup(dst)?;
    let key = match *c.t.adj.get(nh as usize)? {
        Adjacency::Attached { iface } => NeighKey::v4(iface, dst),
        Adjacency::Gateway { iface, via } => NeighKey::v4(iface, via as u32),
        _ => return None,
    };
    let mtu = c.t.ifaces.get(key.iface as usize)?.mtu;
    let hit = st
        .nh
        .get(&c.t.neigh, c.generation, &key, c.now_s(), c.t.reachable_s)?;
    (hit.port != super::nh_cache::NO_PORT).then_some(Resolved {
        port: hit.port,
        rewrite: hit.rewrite,
        mtu,
    })
}

/// What [`resolve_originated_v4`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The port to queue to.
    pub port: u16,
    /// The Ethernet header's MACs: the next hop's, then the router's.
    pub rewrite: [u8; 12],
    /// The output interface's IP MTU.
    pub mtu: u16,
}

/// The interface a packet from `src` to the link-local `dst` leaves by: among the interfaces whose
/// link-local address is `src` (all of them when `src` is not link-local), the first where `dst` is a
/// resolved neighbour, else the first one.
fn link_local_iface(c: &L3Ctx<'_>, src: &Ipv6Addr, dst: &Ipv6Addr) -> Option<u16> {
    let mut first = None;
    for (i, ifc) in c.t.ifaces.iter().enumerate() {
        if src.is_unicast_link_local() && ifc.link_local != *src {
            continue;
        }
        let key = NeighKey::v6(i as u16, dst.octets());
        if matches!(c.t.neigh.lookup(&key), Some(Neighbor::Reachable { .. })) {
            return Some(i as u16);
        }
        first = first.or(Some(i as u16));
    }
    first
}
