//! Counters: single-writer, cache-line aligned, read by the control thread on demand.
//!
//! Each counter block is written by exactly one thread (a worker, or the thread owning a port queue) with a
//! relaxed load and store, never a read-modify-write, so counting costs what a plain `u64` add costs. Readers
//! may see a value a few packets old, never a torn one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A 64-bit counter with a single writer.
#[derive(Default, Debug)]
pub struct Stat(AtomicU64);

impl Stat {
    /// Adds `n`. Only the owning thread may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }
    /// Overwrites the value (gauges).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed)
    }
    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Why a packet was dropped. Every drop in wharf names one of these and is counted.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $(#[doc = $doc] $variant,)* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();
            /// The name used in counters, logs and the control socket.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    Truncated => "truncated", "Frame shorter than its headers say.";
    Malformed => "malformed", "A header field has an impossible value.";
    BadChecksum => "bad_checksum", "A checksum did not verify.";
    TtlExceeded => "ttl_exceeded", "TTL or hop limit ran out.";
    NoRoute => "no_route", "No route (or no cross-connect) for the packet.";
    NoPort => "no_port", "The chosen output port does not exist.";
    NatExhausted => "nat_exhausted", "No NAT port or session left.";
    NatNoSession => "nat_no_session", "Needs a NAT session and has none: a TCP segment without SYN, an echo reply or an ICMP error of no known flow.";
    NatUnsupported => "nat_unsupported", "A masqueraded packet of a protocol the NAT cannot translate (not TCP, UDP or ICMP).";
    NatHandoffDrop => "nat_handoff_drop", "A packet for the worker that owns its NAT flow, whose handoff queue was full.";
    AclDeny => "acl_deny", "Denied by policy.";
    VxlanUnknownVni => "vxlan_unknown_vni", "VXLAN packet for a VNI we do not serve.";
    TooBig => "too_big", "Frame larger than the output MTU or the buffer.";
    TxFull => "tx_full", "The output queue was full.";
    TxError => "tx_error", "The output port reported an error.";
    NoBuffer => "no_buffer", "No free packet buffer.";
    LinkDown => "link_down", "The output link is down.";
    VlanFiltered => "vlan_filtered", "VLAN not allowed on the port (or a tagged frame on an access port).";
    Qinq => "qinq", "Double-tagged (QinQ or 802.1ad) frame; parsed, not forwarded.";
    UnknownUnicast => "unknown_unicast", "Unknown unicast destination with flooding turned off.";
    BridgeFiltered => "bridge_filtered", "Destination MAC is on the port the frame came in on.";
    BadSourceMac => "bad_src_mac", "Multicast or all-zero source MAC.";
    NoEndpoint => "no_endpoint", "No endpoint has the destination MAC (macvlan, ipvlan).";
    HostIsolated => "host_isolated", "Traffic between an endpoint and the host, which the mode forbids.";
    NoLocalStack => "no_local_stack", "For the router and handled by nothing: ICMP but echo, a gateway MAC without addresses, TCP with no host stack.";
    BadIpHeader => "bad_ip_header", "IP version or header length impossible (IPv4 IHL < 5, version not 4 or 6).";
    IpOptions => "ip_options", "IPv4 options, and the router is set to drop them.";
    Fragment => "fragment", "A fragment for the router itself (it does not reassemble).";
    MartianAddress => "martian", "Source or destination address that must not be routed (loopback, multicast source, ...).";
    NotForUs => "not_for_us", "Unicast frame to another MAC, or ARP/ND for an address the router does not answer.";
    NoNeighbor => "no_neighbor", "Next hop did not answer ARP/ND in time, or too many packets were waiting for it.";
    MtuExceeded => "mtu_exceeded", "Larger than the output MTU and not fragmentable (DF or IPv6): ICMP sent back.";
    BadArp => "bad_arp", "ARP packet with wrong sizes, types or operation.";
    BadNd => "bad_nd", "Neighbor Discovery message with a bad hop limit, code or option.";
    UnknownEthertype => "unknown_ethertype", "EtherType a routed interface does not handle.";
    LocalPortUnreachable => "local_port_unreachable", "UDP to the router, where nothing listens: ICMP port unreachable sent back.";
    HostQueueFull => "host_queue_full", "For the router's host stack (TCP, other protocols to a router address); its input queue was full.";
    VxlanBadFlags => "vxlan_bad_flags", "VXLAN header without the I flag (no valid VNI).";
    VxlanMalformed => "vxlan_malformed", "VXLAN packet too short for its headers, or an inner frame shorter than an Ethernet header.";
    VxlanMtu => "vxlan_mtu", "Frame too large for the overlay MTU: its VXLAN packet would exceed the underlay MTU.";
    VxlanNoVtep => "vxlan_no_vtep", "Remote VTEP unknown to the encapsulation, or the VTEP table is full.";
}

macro_rules! events {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Things a pipeline counts that are not drops.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Event { $(#[doc = $doc] $variant,)* }

        impl Event {
            /// Every event, in counter order.
            pub const ALL: &'static [Event] = &[$(Event::$variant,)*];
            /// Number of events.
            pub const COUNT: usize = Self::ALL.len();
            /// The name used in counters and the control socket.
            pub fn name(self) -> &'static str {
                match self { $(Event::$variant => $name,)* }
            }
        }
    };
}

events! {
    Flooded => "flooded", "Frames flooded (broadcast, multicast, unknown unicast), counted once per input frame.";
    FloodCopies => "flood_copies", "Copies made for flooding.";
    MacLearned => "mac_learned", "New MAC addresses learned.";
    MacMoved => "mac_moved", "Station moves: a known MAC seen on another port.";
    MacLimit => "mac_limit", "MACs not learned because the bridge domain is at its limit.";
    MacTableFull => "mac_table_full", "MACs not learned because their slots in the table were taken.";
    Routed => "routed", "IP packets sent on to their next hop: forwarded by the router, or sent by its host stack.";
    ArpRequestsSent => "arp_requests_sent", "ARP requests the router sent to resolve a next hop.";
    ArpRepliesSent => "arp_replies_sent", "ARP replies the router sent for its own (or proxied) addresses.";
    NdSolicitsSent => "nd_solicits_sent", "Neighbor Solicitations the router sent.";
    NdAdvertsSent => "nd_adverts_sent", "Neighbor Advertisements the router sent.";
    NeighLearned => "neigh_learned", "Neighbour entries created or updated from ARP/ND.";
    NeighQueued => "neigh_queued", "Packets held while their next hop was resolved.";
    EchoReplies => "echo_replies", "ICMP and ICMPv6 echo replies the router sent.";
    IcmpErrorsSent => "icmp_errors_sent", "ICMP/ICMPv6 errors sent (time exceeded, unreachable, too big).";
    IcmpRateLimited => "icmp_rate_limited", "ICMP errors not sent because of the rate limit.";
    Announced => "announced", "Gratuitous ARPs and unsolicited Neighbor Advertisements sent.";
    ToHostStack => "to_host_stack", "IP packets for a router address handed to the router's host stack (TCP, other protocols).";
    NatTranslated => "nat_translated", "Packets the NAT translated (either direction).";
    NatHandoff => "nat_handoff", "Packets handed to the worker that owns their NAT flow.";
    FromHostStack => "from_host_stack", "IP packets the router's host stack sent, taken by a worker to be routed out.";
    VxlanEncap => "vxlan_encap", "Frames encapsulated in VXLAN towards a remote VTEP (head-end replication copies included).";
    VxlanDecap => "vxlan_decap", "VXLAN packets decapsulated into an overlay bridge domain.";
    VxlanFloods => "vxlan_floods", "Overlay frames (broadcast, multicast, unknown unicast) replicated to the flood list of remote VTEPs.";
    VxlanArpSuppressed => "vxlan_arp_suppressed", "ARP requests for remote overlay endpoints answered locally from the FDB.";
}

/// One counter per event.
#[derive(Debug)]
pub struct EventCounters([Stat; Event::COUNT]);

impl Default for EventCounters {
    fn default() -> Self {
        EventCounters(std::array::from_fn(|_| Stat::default()))
    }
}

impl EventCounters {
    /// Counts `n` of `event`.
    #[inline]
    pub fn add(&self, event: Event, n: u64) {
        self.0[event as usize].add(n)
    }
    /// The count for `event`.
    pub fn get(&self, event: Event) -> u64 {
        self.0[event as usize].get()
    }
}

/// One counter per drop reason.
#[derive(Debug)]
pub struct DropCounters([Stat; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters(std::array::from_fn(|_| Stat::default()))
    }
}

impl DropCounters {
    /// Counts `n` drops for `reason`.
    #[inline]
    pub fn add(&self, reason: DropReason, n: u64) {
        self.0[reason as usize].add(n)
    }
    /// The count for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize].get()
    }
    /// `(name, count)` for every reason with a non-zero count.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.get(*r)))
            .filter(|(_, c)| *c > 0)
            .collect()
    }
    /// Total drops.
    pub fn total(&self) -> u64 {
        self.0.iter().map(Stat::get).sum()
    }
}

/// A worker's counters (one cache-aligned block per worker).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerCounters {
    /// Packets received from all polled queues.
    pub rx_packets: Stat,
    /// Packets handed to ports for transmission and accepted.
    pub tx_packets: Stat,
    /// Non-empty bursts processed.
    pub bursts: Stat,
    /// Polls of all queues that found nothing.
    pub empty_polls: Stat,
    /// Times the worker backed off (slept) while idle.
    pub idle_sleeps: Stat,
    /// Generation of the config snapshot used by the last burst.
    pub snapshot_generation: Stat,
    /// Drops by reason.
    pub drops: DropCounters,
    /// Pipeline events (flooding, learning).
    pub events: EventCounters,
}

/// Counters of one port queue, written by the thread that owns the queue.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct QueueCounters {
    /// Frames received.
    pub rx_packets: Stat,
    /// Bytes received.
    pub rx_bytes: Stat,
    /// Frames transmitted.
    pub tx_packets: Stat,
    /// Bytes transmitted.
    pub tx_bytes: Stat,
    /// Frames the backend lost before we saw them (e.g. kernel ring overrun).
    pub rx_missed: Stat,
    /// Drops by reason inside the backend.
    pub drops: DropCounters,
}

/// Summed counters of a port, as reported to the control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames the backend lost before we saw them.
    pub rx_missed: u64,
    /// Backend drops by reason name (non-zero only).
    pub drops: Vec<(&'static str, u64)>,
}

impl PortCounters {
    /// Sums the counters of a port's queues.
    pub fn sum<'a>(queues: impl IntoIterator<Item = &'a QueueCounters>) -> PortCounters {
        let mut out = PortCounters::default();
        let mut drops = [0u64; DropReason::COUNT];
        for q in queues {
            out.rx_packets += q.rx_packets.get();
            out.rx_bytes += q.rx_bytes.get();
            out.tx_packets += q.tx_packets.get();
            out.tx_bytes += q.tx_bytes.get();
            out.rx_missed += q.rx_missed.get();
            for r in DropReason::ALL {
                drops[*r as usize] += q.drops.get(*r);
            }
        }
        out.drops = DropReason::ALL
            .iter()
            .filter(|r| drops[**r as usize] > 0)
            .map(|r| (r.name(), drops[*r as usize]))
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_names_are_unique_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn port_counters_sum_queues() {
        let a = QueueCounters::default();
        let b = QueueCounters::default();
        a.rx_packets.add(3);
        b.rx_packets.add(4);
        b.drops.add(DropReason::TxFull, 2);
        let s = PortCounters::sum([&a, &b]);
        assert_eq!(s.rx_packets, 7);
        assert_eq!(s.drops, vec![("tx_full", 2)]);
    }

    #[test]
    fn worker_counters_are_cache_aligned() {
        assert_eq!(std::mem::align_of::<WorkerCounters>(), 64);
        assert_eq!(std::mem::align_of::<QueueCounters>(), 64);
    }
}
