//! The VXLAN overlay (RFC 7348): a bridge domain stretched over hosts.
//!
//! An `overlay` network is a bridge domain ([`crate::bridge::BridgeDomain`]) with an [`Overlay`] attached.
//! Remote VTEPs appear to the bridge as *virtual ports*: port numbers from [`VTEP_PORT_BASE`] up, one per
//! remote VTEP address in the shared [`fdb::VtepTable`]. That keeps the bridge's machinery for them:
//!
//! - a remote MAC is an ordinary entry of the domain's lock-free MAC table whose "port" is the VTEP's virtual
//!   port (a 48-bit MAC and a 16-bit port still pack into one `AtomicU64` slot), learned by the decapsulation
//!   and aged by the control thread like any other;
//! - static entries from the config are the domain's static MACs on virtual ports, and entries an external
//!   feed adds at run time (`wharf ctl vxlan fdb add`) live in a second, never-aged table ([`Overlay::fed`]),
//!   written by the control thread with the same lock-free CAS as learning;
//! - the flood list (head-end replication for broadcast, unknown unicast and multicast) is the virtual
//!   ports among the domain's flood members.
//!
//! The data path is `classify -> [decap] -> bridge -> [encap]`:
//!
//! - [`decap`]: a UDP packet for a local VTEP address and the VXLAN port, caught in the L3 stage's local
//!   delivery before the host stack, is checked, stripped, and switched in the domain its VNI selects, its
//!   inner source learned against the sender's virtual port.
//! - [`encap`]: the bridge hands a frame for a virtual port to the worker's staging burst (the bridge cannot
//!   route); at the end of the burst the encapsulation prepends the outer IPv4/UDP/VXLAN headers in the
//!   buffer's headroom, without copying the frame, and routes the packet like one the router originates
//!   (FIB, neighbour cache, ARP for the next hop), out of the underlay port.
//!
//! Split horizon: a frame that came from a remote VTEP is never sent to a remote VTEP again (every VTEP
//! replicates to all the others itself), which also keeps the overlay free of loops.

pub mod decap;
pub mod encap;
pub mod fdb;
pub mod outer;

use crate::bridge::mac_table::MacTable;
use fdb::VtepTable;
use std::sync::Arc;

/// The first virtual port number: a bridge port `p >= VTEP_PORT_BASE` is remote VTEP `p - VTEP_PORT_BASE`.
/// Real ports are numbered from 0 and never come near it.
pub const VTEP_PORT_BASE: u16 = 0x8000;

/// Most remote VTEPs the table holds: the virtual port range below the MAC table's reserved port.
pub const MAX_VTEPS: usize = (crate::bridge::mac_table::RESERVED_PORT - VTEP_PORT_BASE) as usize;

/// `Meta::scratch` word that carries the bridge domain of a staged frame to the encapsulation.
pub const SCRATCH_DOMAIN: usize = 3;

/// Whether bridge port `p` is a remote VTEP's virtual port.
#[inline(always)]
pub fn is_vtep_port(p: u16) -> bool {
    p >= VTEP_PORT_BASE && p != crate::bridge::mac_table::RESERVED_PORT
}

/// The virtual port of VTEP index `i`.
#[inline(always)]
pub fn vtep_port(i: usize) -> u16 {
    VTEP_PORT_BASE + i as u16
}

/// The VTEP index of virtual port `p` (meaningful when [`is_vtep_port`]).
#[inline(always)]
pub fn vtep_index(p: u16) -> usize {
    p.wrapping_sub(VTEP_PORT_BASE) as usize
}

/// What makes a bridge domain an overlay, frozen in a snapshot (the fed table is shared across snapshots).
#[derive(Debug)]
pub struct Overlay {
    /// Index of the bridge domain this is attached to (staged frames carry it to the encapsulation).
    pub domain: u16,
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The local VTEP address (the router's address on the underlay port): the outer source.
    pub local: [u8; 4],
    /// UDP destination port of the packets sent and accepted (4789 by default).
    pub udp_port: u16,
    /// Set DF on the outer IPv4 header.
    pub df: bool,
    /// Outer IPv4 TTL.
    pub ttl: u8,
    /// Overlay MTU: the largest inner IP packet (inner frame minus its Ethernet header) sent; larger frames
    /// are dropped as `vxlan_mtu`. At most the underlay MTU minus 50.
    pub mtu: u16,
    /// The flood list: virtual ports of the remote VTEPs that get a copy of broadcast, unknown unicast and
    /// multicast frames (they are members of the domain too).
    pub flood: Vec<u16>,
    /// Remote MACs added at run time by an external feed (`wharf ctl vxlan fdb add`): MAC to virtual port,
    /// never aged, consulted after the static entries and before the learned ones. Kept across reloads.
    pub fed: Arc<MacTable>,
}

/// The VXLAN tables of a snapshot: which VNIs and UDP ports are served, and the remote VTEPs.
#[derive(Debug, Clone)]
pub struct VxlanTables {
    /// VNI to bridge domain index, sorted by VNI.
    pub by_vni: Vec<(u32, u16)>,
    /// Local VTEP addresses with the UDP port each listens on, for the decapsulation's first test.
    pub local: Vec<([u8; 4], u16)>,
    /// The remote VTEPs (virtual port numbers), shared by every overlay and kept across reloads.
    pub vteps: Arc<VtepTable>,
}

impl Default for VxlanTables {
    fn default() -> Self {
        VxlanTables {
            by_vni: Vec::new(),
            local: Vec::new(),
            vteps: Arc::new(VtepTable::new(64)),
        }
    }
}

impl VxlanTables {
    /// The bridge domain serving `vni`.
    #[inline]
    pub fn domain_of(&self, vni: u32) -> Option<u16> {
        self.by_vni
            .binary_search_by_key(&vni, |e| e.0)
            .ok()
            .map(|i| self.by_vni[i].1)
    }

    /// Whether UDP to `addr`:`port` is VXLAN for us.
    #[inline]
    pub fn is_local(&self, addr: [u8; 4], port: u16) -> bool {
        self.local.iter().any(|&(a, p)| a == addr && p == port)
    }
}
