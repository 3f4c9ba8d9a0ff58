//! The VXLAN header (RFC 7348 section 5): 8 bytes after the outer UDP header, in front of the inner Ethernet
//! frame.
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//!
//! Only the I flag has a meaning: set, the VNI is valid. RFC 7348 says the other flag bits and the reserved
//! fields are sent as zero and *ignored on receipt*, so the view checks the I flag and nothing else (a
//! sender that uses a reserved bit, e.g. a group-policy extension, still interoperates). Also here: the UDP
//! header view the decapsulation needs and the writer of the whole outer IPv4/UDP/VXLAN stack.

use super::checksum;
use super::{be16, put16};
use dataplane::DropReason;

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// IANA's VXLAN UDP port.
pub const DEFAULT_PORT: u16 = 4789;
/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Bytes the outer IPv4 (no options), UDP and VXLAN headers add in front of the inner frame.
pub const OUTER_IP_LEN: usize = 20 + UDP_HEADER_LEN + HEADER_LEN;
/// Bytes encapsulation adds to an inner frame on the underlay wire, outer Ethernet header included: 50.
pub const OVERHEAD: usize = super::ETH_HEADER_LEN + OUTER_IP_LEN;

/// Why a buffer is not a VXLAN packet the decapsulation accepts.
///
/// Drop reasons: `Truncated` and `ShortInner` → [`DropReason::VxlanMalformed`]; `NoVni` →
/// [`DropReason::VxlanBadFlags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VxlanError {
    /// Fewer than 8 bytes.
    Truncated,
    /// The I flag is clear: there is no VNI to select a network by.
    NoVni,
    /// What follows the header is shorter than an Ethernet header.
    ShortInner,
}

impl VxlanError {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        match self {
            VxlanError::Truncated | VxlanError::ShortInner => DropReason::VxlanMalformed,
            VxlanError::NoVni => DropReason::VxlanBadFlags,
        }
    }
}

/// A view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone, Copy)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps `buffer` (the UDP payload) after checking its length, the I flag, and that an inner Ethernet
    /// header follows.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, VxlanError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(VxlanError::Truncated);
        }
        if b[0] & FLAG_I == 0 {
            return Err(VxlanError::NoVni);
        }
        if b.len() < HEADER_LEN + super::ETH_HEADER_LEN {
            return Err(VxlanError::ShortInner);
        }
        Ok(VxlanPacket { buffer })
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The 24-bit VNI.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn inner(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// Writes a VXLAN header with the I flag and `vni` (low 24 bits) into `buf`, which holds at least 8 bytes.
#[inline]
pub fn write_header(buf: &mut [u8], vni: u32) {
    let v = (vni & MAX_VNI).to_be_bytes();
    buf[..HEADER_LEN].copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
}

/// Why a buffer is not a UDP datagram the views can read.
///
/// Drop reasons: both → [`DropReason::VxlanMalformed`] (the decapsulation is the only reader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// Fewer than 8 bytes.
    Truncated,
    /// The length field is below 8 or beyond the buffer.
    BadLength,
}

/// A view of a UDP datagram. [`UdpPacket::payload`] stops at the length field.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` after checking the header and the length field against it.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, UdpError> {
        let b = buffer.as_ref();
        if b.len() < UDP_HEADER_LEN {
            return Err(UdpError::Truncated);
        }
        let len = be16(b, 4) as usize;
        if len < UDP_HEADER_LEN || len > b.len() {
            return Err(UdpError::BadLength);
        }
        Ok(UdpPacket { buffer })
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// The length field (header and payload).
    #[inline]
    pub fn len(&self) -> usize {
        be16(self.buffer.as_ref(), 4) as usize
    }

    /// Never true: a checked datagram holds at least its header.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The checksum field (0: not computed, allowed over IPv4).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// Whether the checksum is absent (zero) or verifies against the IPv4 pseudo-header of `src` and `dst`.
    #[inline]
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = &self.buffer.as_ref()[..self.len()];
        let ph = checksum::pseudo_v4(src, dst, super::IPPROTO_UDP, d.len() as u16);
        checksum::fold(checksum::sum(d, ph)) == 0xffff
    }

    /// The payload, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[UDP_HEADER_LEN..self.len()]
    }
}

/// The fields of an outer IPv4/UDP/VXLAN header stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Local VTEP address.
    pub src: [u8; 4],
    /// Remote VTEP address.
    pub dst: [u8; 4],
    /// UDP source port (the inner flow's entropy).
    pub src_port: u16,
    /// UDP destination port (4789 unless configured).
    pub dst_port: u16,
    /// VNI.
    pub vni: u32,
    /// IPv4 time to live.
    pub ttl: u8,
    /// Set the IPv4 don't-fragment bit.
    pub df: bool,
    /// IPv4 identification (only meaningful without DF).
    pub ident: u16,
}

/// Writes the outer IPv4 (no options, checksum filled in), UDP (checksum zero, as RFC 7348 recommends over
/// IPv4) and VXLAN headers into `buf` ([`OUTER_IP_LEN`] bytes), for an inner frame of `inner_len` bytes.
/// Returns false, writing nothing, when the buffer is short or the IPv4 total length would not fit 16 bits.
#[inline]
pub fn write_outer(buf: &mut [u8], o: &Outer, inner_len: usize) -> bool {
    let total = OUTER_IP_LEN + inner_len;
    if buf.len() < OUTER_IP_LEN || total > u16::MAX as usize {
        return false;
    }
    let ip = &mut buf[..20];
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip, 2, total as u16);
    put16(ip, 4, o.ident);
    put16(ip, 6, if o.df { 0x4000 } else { 0 });
    ip[8] = o.ttl;
    ip[9] = super::IPPROTO_UDP;
    put16(ip, 10, 0);
    ip[12..16].copy_from_slice(&o.src);
    ip[16..20].copy_from_slice(&o.dst);
    let c = checksum::checksum(ip);
    put16(ip, 10, c);
    let udp = &mut buf[20..28];
    put16(udp, 0, o.src_port);
    put16(udp, 2, o.dst_port);
    put16(udp, 4, (total - 20) as u16);
    put16(udp, 6, 0);
    write_header(&mut buf[28..OUTER_IP_LEN], o.vni);
    true
}

/// The UDP source port for an inner flow hash (RFC 7348 section 5: a hash of the inner headers, in the
/// dynamic range 49152..=65535 so that underlay ECMP and RSS spread the flows of one VTEP pair).
#[inline]
pub fn entropy_port(hash: u32) -> u16 {
    let h = hash ^ (hash >> 16);
    0xc000 | (h as u16 & 0x3fff)
}
