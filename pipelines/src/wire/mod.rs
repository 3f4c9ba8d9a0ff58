//! Zero-copy header views and frame builders for the L3 stages (IPv4, IPv6, ICMP, ARP, ND), in the style of
//! smoltcp's `wire` module.
//!
//! - A view is a `Packet<T: AsRef<[u8]>>` wrapper. Its `new_checked` constructor validates every length the
//!   accessors rely on, so no accessor can panic; setters exist when `T: AsMut<[u8]>`.
//! - Builders write into a caller's buffer and return the number of bytes written; a buffer that is too short
//!   is an error ([`TooBig`]), never a panic. Nothing here allocates.
//! - Checksums are kept correct by incremental updates (RFC 1624) wherever a field changes in place
//!   ([`checksum`]); builders compute them in full.
//! - Errors are small `Copy` enums. Each variant says which [`DropReason`] a stage counts the packet under
//!   (the `drop_reason` methods); the mapping is written down on every error type.
//!
//! Addresses are taken as `[u8; N]` by the low-level accessors and helpers and as `Ipv4Addr`/`Ipv6Addr` by the
//! builders; MACs are [`Mac`]s.

use dataplane::DropReason;

pub mod arp;
pub mod checksum;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ndisc;
pub mod vxlan;

pub use crate::ethernet::Mac;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 next-header value of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Ethernet header length (no VLAN tag), as in [`crate::ethernet`].
pub const ETH_HEADER_LEN: usize = crate::ethernet::HEADER_LEN;
/// Shortest Ethernet frame on the wire without its FCS: shorter frames are padded to this.
pub const ETH_MIN_FRAME_LEN: usize = 60;
/// The broadcast MAC.
pub const BROADCAST_MAC: Mac = [0xff; 6];

/// The buffer is shorter than the message to read.
///
/// Drop reason: [`DropReason::Truncated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl Truncated {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        DropReason::Truncated
    }
}

/// What a builder was asked to write does not fit: the output buffer is too short, or a length is beyond what
/// the header's length field can hold.
///
/// Drop reason: [`DropReason::TooBig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig;

impl TooBig {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        DropReason::TooBig
    }
}

/// Writes an Ethernet II header (`dst`, `src`, `ethertype`) at the start of `buf`, which must hold at least
/// [`ETH_HEADER_LEN`] bytes (checked by the callers).
#[inline]
pub(crate) fn write_eth(buf: &mut [u8], dst: Mac, src: Mac, ethertype: u16) {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// Reads a big-endian `u16` at `off`; the caller has checked the bounds.
#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Writes a big-endian `u16` at `off`; the caller has checked the bounds.
#[inline]
pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}
