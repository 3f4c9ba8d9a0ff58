//! The L3 stage: IPv4 and IPv6 routing between router interfaces, with ARP, Neighbor Discovery and ICMP.
//!
//! A router interface is attached to a port (a routed port: point-to-point and ipvlan L3 endpoints, an uplink)
//! or to a bridge domain as its gateway. Frames reach this stage untagged with their interface index in
//! `Meta::scratch[2]`; the burst is handled in two passes, VPP style: the first parses the EtherType and warms
//! the FIB entry of each IPv4 destination (and, with NAT, the flow-table lines, setting aside for their owner
//! the packets another worker's flows own), the second decides every packet. Without NAT or local VTEPs, the
//! second pass first offers each packet to the forwarding fast path (`l3/fast.rs`), which forwards the common
//! routed IPv4 or IPv6 packet in one straight pass and gives everything else to the general path below:
//!
//! - IPv4/IPv6 to a router address: echo requests are answered in place, UDP gets port unreachable, other
//!   ICMP is counted as `no_local_stack`; the rest (TCP, other protocols) goes to the router's host stack
//!   ([`host`]), whose output worker 0 routes.
//! - IPv4/IPv6 to elsewhere: longest-prefix match, ECMP by flow hash, TTL/hop-limit check and decrement
//!   (incremental checksum), MTU check (ICMP fragmentation needed / packet too big), then the next hop's MAC
//!   from the shared neighbour cache. An unresolved next hop gets a request and the packet waits in the
//!   worker's [`pending::Pending`] queue.
//! - ARP and ND for the interface's addresses (or any address, with proxy ARP) are answered; what they teach
//!   is learned.
//!
//! ICMP errors are rate-limited per worker by a token bucket.

mod arp;
mod fast;
pub mod host;
mod icmp;
mod ipv4;
mod ipv6;
mod nat;
mod nd;
pub mod neigh;
mod nh_cache;
pub mod pending;

use crate::bridge::{self, BridgeDomain, Egress};
use crate::ethernet::Mac;
use crate::fib::lpm4::Lpm4;
use crate::fib::lpm6::Lpm6;
use dataplane::worker::TxBatches;
use dataplane::{Burst, DropReason, Event, Pkt, Pool};
use neigh::{NeighKey, NeighTable, Neighbor};
use pending::{Pending, Released};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// EtherType of IPv4.
const ETH_IPV4: u16 = 0x0800;
/// EtherType of ARP.
const ETH_ARP: u16 = 0x0806;
/// EtherType of IPv6.
const ETH_IPV6: u16 = 0x86dd;
/// Ethernet header length.
const ETH_LEN: usize = 14;

/// Where a router interface sends and receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// A port of its own (untagged) or a VLAN on a port.
    Port {
        /// Port index.
        port: u16,
        /// Untagged, or tagged with a VLAN.
        egress: Egress,
    },
    /// The gateway of a bridge domain: frames out are switched by the domain's MAC table.
    Bridge {
        /// Bridge domain index.
        domain: u16,
    },
}

/// A router interface, frozen in a snapshot.
#[derive(Clone, Debug)]
pub struct Interface {
    /// Name (the network or port it belongs to), for `show` and logs.
    pub name: String,
    /// The router's MAC on this interface.
    pub mac: Mac,
    /// How frames leave.
    pub attach: Attach,
    /// IP MTU (largest IP packet sent without fragmentation).
    pub mtu: u16,
    /// IPv4 addresses and prefix lengths.
    pub v4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses and prefix lengths (global or unique-local).
    pub v6: Vec<(Ipv6Addr, u8)>,
    /// The link-local IPv6 address (EUI-64 from `mac`), the source of ND and of ICMPv6 to link-local peers.
    pub link_local: Ipv6Addr,
    /// Answer ARP and Neighbor Solicitations for any address but the asker's own (point-to-point endpoints
    /// and ipvlan L3 endpoints reach everything through the router, Calico style).
    pub proxy_arp: bool,
}

impl Interface {
    /// Whether `ip` is one of this interface's IPv4 addresses.
    #[inline]
    pub fn has_v4(&self, ip: Ipv4Addr) -> bool {
        self.v4.iter().any(|(a, _)| *a == ip)
    }

    /// Whether `ip` is one of this interface's IPv6 addresses (link-local included).
    #[inline]
    pub fn has_v6(&self, ip: &Ipv6Addr) -> bool {
        self.link_local == *ip || self.v6.iter().any(|(a, _)| a == ip)
    }

    /// The address ICMP errors sent from this interface come from.
    pub fn source_v4(&self) -> Option<Ipv4Addr> {
        self.v4.first().map(|a| a.0)
    }

    /// The IPv6 address errors sent to `dst` come from: link-local to link-local peers, else a global one.
    pub fn source_v6(&self, dst: &Ipv6Addr) -> Ipv6Addr {
        if dst.is_unicast_link_local() {
            return self.link_local;
        }
        self.v6.first().map(|a| a.0).unwrap_or(self.link_local)
    }
}

/// The EUI-64 link-local address of `mac` (RFC 4291 appendix A).
pub fn link_local_of(mac: &Mac) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// What a FIB entry's next-hop index points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adjacency {
    /// One of the router's own addresses: local delivery.
    Local,
    /// On-link: the destination itself is resolved on `iface`.
    Attached {
        /// Output interface.
        iface: u16,
    },
    /// Through a gateway resolved on `iface`.
    Gateway {
        /// Output interface.
        iface: u16,
        /// The gateway: an IPv4 address as a mapped IPv6 (`::ffff:a.b.c.d`) or an IPv6 address.
        via: u128,
    },
    /// Equal-cost paths: `count` adjacency indices in [`L3Tables::ecmp`] from `first`, chosen by flow hash.
    Ecmp {
        /// First member in the ECMP member list.
        first: u32,
        /// Number of members.
        count: u32,
    },
    /// Dropped with an ICMP unreachable (a route of type `unreachable`).
    Unreachable,
    /// Dropped silently (a route of type `blackhole`).
    Blackhole,
}

/// The tables of the L3 stage, frozen in a snapshot; the FIBs and the neighbour cache are shared.
#[derive(Clone, Debug)]
pub struct L3Tables {
    /// Router interfaces by index.
    pub ifaces: Vec<Interface>,
    /// IPv4 FIB: next hops are indices into `adj`.
    pub fib4: Arc<Lpm4>,
    /// IPv6 FIB: next hops are indices into `adj`.
    pub fib6: Arc<Lpm6>,
    /// Adjacencies.
    pub adj: Vec<Adjacency>,
    /// ECMP member lists (adjacency indices, never themselves ECMP).
    pub ecmp: Vec<u32>,
    /// The neighbour cache, written by the workers, kept across reloads.
    pub neigh: Arc<NeighTable>,
    /// Drop IPv4 packets that carry options (else forward them).
    pub drop_options: bool,
    /// ICMP errors each worker may send per second (the bucket holds as many).
    pub icmp_rate: u32,
    /// Seconds a resolved neighbour is used before it is asked again (it keeps being used meanwhile).
    pub reachable_s: u32,
    /// Where router-originated packets (gratuitous ARP at start) come from.
    pub pool: Option<Pool>,
    /// Identity of the interfaces' addresses and MACs: worker 0 announces them when it changes (not on every
    /// new snapshot: a route change does not).
    pub announce_id: u64,
    /// The queues to and from the router's host stack (kept across reloads); `None`: no host stack, and what
    /// it would take is dropped as `no_local_stack`.
    pub host: Option<Arc<host::HostQueues>>,
    /// Source and destination NAT of IPv4 through the outside interface; `None`: no NAT.
    pub nat: Option<Arc<crate::nat::stage::NatTables>>,
}

impl Default for L3Tables {
    fn default() -> Self {
        L3Tables {
            ifaces: Vec::new(),
            fib4: Arc::new(Lpm4::new(16)),
            fib6: Arc::new(Lpm6::new(16)),
            adj: Vec::new(),
            ecmp: Vec::new(),
            neigh: Arc::new(NeighTable::new(64)),
            drop_options: false,
            icmp_rate: 1000,
            reachable_s: 30,
            pool: None,
            announce_id: 0,
            host: None,
            nat: None,
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` saved.
#[derive(Debug, Default)]
pub struct TokenBucket {
    tokens: u32,
    last_ns: u64,
}

impl TokenBucket {
    /// Takes a token if there is one. The bucket starts full.
    #[inline]
    pub fn take(&mut self, rate: u32, now_ns: u64) -> bool {
        if rate == 0 {
            return false;
        }
        if self.last_ns == 0 {
            self.tokens = rate;
            self.last_ns = now_ns.max(1);
        }
        let per_token = 1_000_000_000 / rate as u64;
        let earned = now_ns.saturating_sub(self.last_ns) / per_token.max(1);
        if earned > 0 {
            self.tokens = (self.tokens as u64 + earned).min(rate as u64) as u32;
            self.last_ns += earned * per_token;
            if self.tokens as u64 == rate as u64 {
                self.last_ns = now_ns;
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// A worker's L3 state: the packets waiting for a neighbour, the ICMP budget, and what was announced.
#[derive(Debug, Default)]
pub struct L3State {
    /// Packets waiting for their next hop.
    pub pending: Pending,
    /// ICMP error budget.
    pub icmp: TokenBucket,
    /// The [`L3Tables::announce_id`] this worker last announced (worker 0 only announces).
    pub announced: u64,
    /// The worker's NAT flows and ports (taken from the NAT tables' prebuilt states when NAT is configured).
    pub nat: Option<Box<crate::nat::stage::NatState>>,
    /// Resolved next hops with their finished Ethernet rewrite, private to the worker.
    nh: nh_cache::NextHopCache,
    /// The VXLAN decapsulation's memory of recent senders.
    pub decap: crate::vxlan::decap::DecapState,
    /// Pass 1's handoff marks (NAT with several workers), kept here so that a burst does not clear them.
    hand: nat::HandMarks,
}

/// Everything one burst's L3 work reads.
pub struct L3Ctx<'a> {
    /// The L3 tables.
    pub t: &'a L3Tables,
    /// Bridge domains (for gateway interfaces).
    pub bridges: &'a [BridgeDomain],
    /// The snapshot generation (packets parked under another one are dropped when released).
    pub generation: u64,
    /// The worker's clock.
    pub now_ns: u64,
    /// `now_ns` in whole seconds, divided once per burst: the NAT and the neighbour caches read it several
    /// times a packet (a division by a constant each time was about 9 instructions a packet).
    pub now_s: u32,
    /// The worker's index.
    pub worker: u16,
    /// The VXLAN tables (the decapsulation hooks into local delivery).
    pub vxlan: &'a crate::vxlan::VxlanTables,
}

impl L3Ctx<'_> {
    #[inline]
    fn now_s(&self) -> u32 {
        self.now_s
    }
}

/// Packets whose IPv6 FIB lookups pass 1 of [`process`] overlaps at a time.
const WARM: usize = 32;

/// Scratch word holding a packet's input interface between the stages.
pub const SCRATCH_IFACE: usize = 2;

/// Runs the L3 stage over `burst`, every packet's input interface being in `Meta::scratch[SCRATCH_IFACE]`.
pub fn process(c: &L3Ctx<'_>, st: &mut L3State, burst: &mut Burst, out: &mut TxBatches) {
    let with_nat = c.t.nat.is_some();
    if with_nat {
        nat::begin(c, st);
    }
    decide(c, st, burst, with_nat, out);
    // With several workers, the packets the others handed over ride along with this burst (their own burst
    // would repeat the per-burst work: the state check, the flushes, the expiry tick, the transmit).
    if with_nat && nat::take_inbound(c, burst) {
        decide(c, st, burst, with_nat, out);
    }
    if st.pending.due(&c.t.neigh, c.now_ns) {
        release_pending(c, st, out);
    }
    if with_nat {
        nat::flush(c, st, out);
        nat::tick(c, st);
    }
}

/// The two passes of [`process`] over `burst` (which they empty). Not inlined: [`process`] runs them twice when
/// other workers handed packets over.
#[inline(never)]
fn decide(c: &L3Ctx<'_>, st: &mut L3State, burst: &mut Burst, with_nat: bool, out: &mut TxBatches) {
    // Pass 1: warm the FIB. An IPv4 lookup is one read (rarely two): prefetching its tbl24 entry is enough. An
    // IPv6 lookup walks up to one level per byte past the third, each read depending on the one before, so
    // for WARM packets at a time the first levels are prefetched, then each lookup is walked once with its
    // result thrown away: the levels of different packets are then in flight together in the out-of-order
    // window, where pass 2, with hundreds of instructions per packet between two lookups, would wait for each
    // level of each packet in turn.
    // Pass 1 may mark packets to hand to another worker (NAT), by position in the burst.
    let mut handing = false;
    for (ci, chunk) in burst.as_slice().chunks(WARM).enumerate() {
        // Positions of the chunk's IPv6 packets (their addresses are read again from the packets: a copy of
        // them here would clear 512 bytes a burst).
        let mut v6 = [0u8; WARM];
        let mut n6 = 0;
        for (i, pkt) in chunk.iter().enumerate() {
            let d = pkt.data();
            if d.len() < ETH_LEN + 20 {
                continue;
            }
            match u16::from_be_bytes([d[12], d[13]]) {
                ETH_IPV4 => {
                    let dst = u32::from_be_bytes([d[30], d[31], d[32], d[33]]);
                    c.t.fib4.prefetch(dst);
                }
                ETH_IPV6 => {
                    if let Some(a) = dst6(d) {
                        c.t.fib6.prefetch(a);
                        if let Some(slot) = v6.get_mut(n6) {
                            *slot = i as u8;
                            n6 += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        if with_nat {
            handing |= nat::warm(c, &st.nat, chunk, st.hand.chunk(ci * WARM));
        }
        if n6 > 0 {
            let mut warm = 0u32;
            for &i in &v6[..n6] {
                if let Some(a) = chunk.get(i as usize).and_then(|p| dst6(p.data())) {
                    warm ^= c.t.fib6.lookup(a).unwrap_or(0);
                }
            }
            std::hint::black_box(warm);
        }
    }
    // The packets pass 1 marked leave first, untouched, for the outbox ([`nat::flush`] moves it after the
    // burst); the others stay in order.
    if handing {
        let nat_state = &mut st.nat;
        burst.take_marked(st.hand.marks(), nat::KEEP, |to, pkt| {
            nat::hand(nat_state, pkt, to, out)
        });
    }
    // Pass 2: decide. The VXLAN test is made once per burst, not per packet (see `ipv4::input`).
    if c.vxlan.local.is_empty() {
        if with_nat {
            for pkt in burst.drain() {
                input_with::<false>(c, st, pkt, out);
            }
        } else {
            forward_or_input(c, st, burst, out);
        }
    } else {
        for pkt in burst.drain() {
            input_with::<true>(c, st, pkt, out);
        }
    }
}

/// Pass 2 without NAT or local VTEPs: each packet through the forwarding fast path ([`fast`]), or, when it is
/// not the common case, the general [`input_with`].
#[inline]
fn forward_or_input(c: &L3Ctx<'_>, st: &mut L3State, burst: &mut Burst, out: &mut TxBatches) {
    let mut routed = 0;
    st.nh.sync(&c.t.neigh, c.generation);
    let ingress = fast::Ingress::of(c, burst.as_slice().first());
    for pkt in burst.drain() {
        match fast::forward(c, &st.nh, ingress, pkt, out) {
            Ok(()) => routed += 1,
            Err(pkt) => {
                input_with::<false>(c, st, pkt, out);
                st.nh.sync(&c.t.neigh, c.generation);
            }
        }
    }
    out.count_event(Event::Routed, routed);
}

/// The IPv6 destination address of an Ethernet frame long enough to hold an IPv6 header.
#[inline(always)]
fn dst6(frame: &[u8]) -> Option<&[u8; 16]> {
    frame
        .get(ETH_LEN + 24..ETH_LEN + 40)
        .and_then(|a| a.try_into().ok())
}

/// Handles one frame that came in on its interface.
#[inline]
pub fn input(c: &L3Ctx<'_>, st: &mut L3State, pkt: Pkt, out: &mut TxBatches) {
    if c.vxlan.local.is_empty() {
        input_with::<false>(c, st, pkt, out)
    } else {
        input_with::<true>(c, st, pkt, out)
    }
}

/// [`input`] with the snapshot's "has local VTEPs" known.
#[inline]
fn input_with<const VXLAN: bool>(c: &L3Ctx<'_>, st: &mut L3State, pkt: Pkt, out: &mut TxBatches) {
    let iface = pkt.meta().scratch[SCRATCH_IFACE] as u16;
    if c.t.ifaces.get(iface as usize).is_none() {
        out.drop_pkt(pkt, DropReason::NoRoute);
        return;
    }
    let d = pkt.data();
    if d.len() < ETH_LEN {
        out.drop_pkt(pkt, DropReason::Truncated);
        return;
    }
    match u16::from_be_bytes([d[12], d[13]]) {
        ETH_IPV4 => ipv4::input::<VXLAN>(c, st, iface, pkt, out),
        ETH_IPV6 => ipv6::input(c, st, iface, pkt, out),
        ETH_ARP => arp::input(c, st, iface, pkt, out),
        _ => out.drop_pkt(pkt, DropReason::UnknownEthertype),
    }
}

/// Ends a frame the router does not take: counted as `reason`, except the bridge's copy of a broadcast or
/// multicast frame (ARP, ND, MLD between the bridge's hosts), which the bridge already switched: the router
/// only listened in, so nothing was dropped.
#[inline]
fn ignore(c: &L3Ctx<'_>, iface: u16, pkt: Pkt, reason: DropReason, out: &mut TxBatches) {
    let listened = pkt.data().first().is_some_and(|b| b & 1 == 1)
        && matches!(
            c.t.ifaces.get(iface as usize).map(|i| i.attach),
            Some(Attach::Bridge { .. })
        );
    if listened {
        drop(pkt);
    } else {
        out.drop_pkt(pkt, reason);
    }
}

/// Sends `pkt` (a whole Ethernet frame) out of interface `iface` to `dst_mac`, from the interface's MAC.
#[inline]
pub fn emit(c: &L3Ctx<'_>, iface: u16, mut pkt: Pkt, dst_mac: &Mac, out: &mut TxBatches) {
    let Some(ifc) = c.t.ifaces.get(iface as usize) else {
        out.drop_pkt(pkt, DropReason::NoPort);
        return;
    };
    // Both MACs in one fixed-size write (a frame that reaches here holds at least an Ethernet header).
    if let Some(f) = pkt.data_mut().first_chunk_mut::<12>() {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(dst_mac);
        macs[6..].copy_from_slice(&ifc.mac);
        *f = macs;
    }
    match ifc.attach {
        Attach::Port { port, egress } => bridge::send(pkt, port, egress, out),
        Attach::Bridge { domain } => match c.bridges.get(domain as usize) {
            Some(bd) => bd.from_gateway(pkt, dst_mac, out),
            None => out.drop_pkt(pkt, DropReason::NoPort),
        },
    }
}

/// Resolves `key`'s MAC and sends, or asks and parks the packet.
#[inline]
fn to_neighbor(c: &L3Ctx<'_>, st: &mut L3State, key: NeighKey, mut pkt: Pkt, out: &mut TxBatches) {
    // The common case: the worker's own cache has the finished rewrite.
    if let Some(hit) = st
        .nh
        .get(&c.t.neigh, c.generation, &key, c.now_s(), c.t.reachable_s)
    {
        if let Some(f) = pkt.data_mut().first_chunk_mut::<12>() {
            *f = hit.rewrite;
        }
        out.count_event(Event::Routed, 1);
        if hit.port != nh_cache::NO_PORT {
            out.send(hit.port, pkt);
        } else {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&hit.rewrite[..6]);
            emit(c, key.iface, pkt, &mac, out);
        }
        return;
    }
    to_neighbor_shared(c, st, key, pkt, out);
}

/// [`to_neighbor`] through the shared neighbour cache, refilling the worker's cache with what it says.
#[inline(never)]
fn to_neighbor_shared(
    c: &L3Ctx<'_>,
    st: &mut L3State,
    key: NeighKey,
    pkt: Pkt,
    out: &mut TxBatches,
) {
    // A reachable neighbour, without building a `Neighbor`; the rest below.
    if let Some((mac, confirmed_s)) = c.t.neigh.lookup_reachable(&key) {
        if confirmed_s != u32::MAX
            && c.now_s().wrapping_sub(confirmed_s) >= c.t.reachable_s
            && c.t.neigh.should_request(&key, c.now_s(), 1)
        {
            solicit(c, key, &pkt, out);
        }
        if let Some(ifc) = c.t.ifaces.get(key.iface as usize) {
            let port = match ifc.attach {
                Attach::Port {
                    port,
                    egress: Egress::Untagged,
                } => port,
                _ => nh_cache::NO_PORT,
            };
            st.nh.fill(&key, &mac, &ifc.mac, confirmed_s, port);
        }
        out.count_event(Event::Routed, 1);
        emit(c, key.iface, pkt, &mac, out);
        return;
    }
    match c.t.neigh.lookup(&key) {
        Some(Neighbor::Reachable { mac, confirmed_s }) => {
            if confirmed_s != u32::MAX
                && c.now_s().wrapping_sub(confirmed_s) >= c.t.reachable_s
                && c.t.neigh.should_request(&key, c.now_s(), 1)
            {
                solicit(c, key, &pkt, out);
            }
            out.count_event(Event::Routed, 1);
            emit(c, key.iface, pkt, &mac, out);
        }
        _ => {
            if c.t.neigh.should_request(&key, c.now_s(), 1) {
                solicit(c, key, &pkt, out);
            }
            match st.pending.park(pkt, key, c.now_ns, c.generation) {
                Ok(()) => out.count_event(Event::NeighQueued, 1),
                Err(pkt) => out.drop_pkt(pkt, DropReason::NoNeighbor),
            }
        }
    }
}

/// Sends an ARP request or a Neighbor Solicitation for `key`, in a buffer from `like`'s pool.
fn solicit(c: &L3Ctx<'_>, key: NeighKey, like: &Pkt, out: &mut TxBatches) {
    let Some(mut req) = like.alloc_sibling() else {
        out.count_drops(DropReason::NoBuffer, 1);
        return;
    };
    let sent = if key.is_v4() {
        arp::write_request(c, key, &mut req)
    } else {
        nd::write_solicitation(c, key, &mut req)
    };
    match sent {
        Some((ev, dst)) => {
            out.count_event(ev, 1);
            emit(c, key.iface, req, &dst, out);
        }
        None => drop(req),
    }
}

/// Sends or drops what waited for a neighbour.
pub fn release_pending(c: &L3Ctx<'_>, st: &mut L3State, out: &mut TxBatches) {
    st.pending
        .poll(&c.t.neigh, c.now_ns, c.generation, |r| match r {
            Released::Resolved(pkt, key, mac) => {
                out.count_event(Event::Routed, 1);
                emit(c, key.iface, pkt, &mac, out);
            }
            Released::Expired(pkt) => out.drop_pkt(pkt, DropReason::NoNeighbor),
            Released::Retry(key, like) => {
                if c.t.neigh.should_request(&key, c.now_s(), 1) {
                    solicit(c, key, like, out);
                }
            }
        });
}

/// Whether worker state has deferred L3 work (waiting packets due, addresses to announce, or, on worker 0,
/// packets the host stack sent).
#[inline]
pub fn has_deferred(c: &L3Ctx<'_>, st: &L3State, worker: usize) -> bool {
    st.pending.due(&c.t.neigh, c.now_ns)
        || (worker == 0 && st.announced != c.t.announce_id)
        || host::has_output(c, worker)
        || nat::has_deferred(c, st)
}

/// Runs deferred L3 work: releases waiting packets, routes what the host stack sent (worker 0) and, on
/// worker 0 when the interfaces changed, announces every interface address (gratuitous ARP, unsolicited
/// Neighbor Advertisement) so peers update their caches.
pub fn run_deferred(c: &L3Ctx<'_>, st: &mut L3State, worker: usize, out: &mut TxBatches) {
    if st.pending.due(&c.t.neigh, c.now_ns) {
        release_pending(c, st, out);
    }
    if host::has_output(c, worker) {
        host::run(c, st, out);
    }
    if c.t.nat.is_some() {
        nat::run_deferred(c, st, out);
    }
    if worker == 0 && st.announced != c.t.announce_id {
        st.announced = c.t.announce_id;
        announce(c, out);
    }
}

fn announce(c: &L3Ctx<'_>, out: &mut TxBatches) {
    let Some(pool) = &c.t.pool else { return };
    for (i, ifc) in c.t.ifaces.iter().enumerate() {
        for (a, _) in &ifc.v4 {
            let Some(mut p) = pool.alloc() else { return };
            if arp::write_gratuitous(ifc, *a, &mut p) {
                out.count_event(Event::Announced, 1);
                emit(c, i as u16, p, &[0xff; 6], out);
            }
        }
        for (a, _) in &ifc.v6 {
            let Some(mut p) = pool.alloc() else { return };
            if let Some(dst) = nd::write_unsolicited(ifc, a, &mut p) {
                out.count_event(Event::Announced, 1);
                emit(c, i as u16, p, &dst, out);
            }
        }
    }
}

/// The flow hash used for ECMP: the receive hash when the backend computed one, else the symmetric 5-tuple
/// hash of the frame's first `len` bytes.
#[inline]
fn flow_hash(pkt: &Pkt, len: usize) -> u32 {
    match pkt.meta().flow_hash {
        0 => dataplane::rss::flow_hash(pkt.data().get(..len).unwrap_or(pkt.data())),
        h => h,
    }
}

/// Follows `nh` to a concrete adjacency (an ECMP group picks a member by flow hash).
#[inline(always)]
fn resolve_adj(t: &L3Tables, nh: u32, pkt: &Pkt) -> Option<Adjacency> {
    resolve_adj_within(t, nh, pkt, pkt.len())
}

/// [`resolve_adj`] for a frame whose IP packet ends `len` bytes in, before its Ethernet padding: the ECMP hash
/// reads only those, as it does once the general path has cut the padding (a packet whose length field leaves
/// out its ports hashes without them either way).
#[inline(always)]
fn resolve_adj_within(t: &L3Tables, nh: u32, pkt: &Pkt, len: usize) -> Option<Adjacency> {
    match *t.adj.get(nh as usize)? {
        Adjacency::Ecmp { first, count } if count > 0 => {
            let k = flow_hash(pkt, len) % count;
            let m = *t.ecmp.get((first + k) as usize)?;
            t.adj.get(m as usize).copied()
        }
        Adjacency::Ecmp { .. } => None,
        a => Some(a),
    }
}
