//! IPv6 header view (RFC 8200), a writer for fresh headers, a walk over the extension headers, and the
//! address helpers neighbour discovery needs (RFC 4291).

use super::{be16, put16, Mac};
use dataplane::DropReason;
use std::net::Ipv6Addr;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

const VER_TC_FLOW: usize = 0;
const PAYLOAD_LEN: usize = 4;
const NEXT_HEADER: usize = 6;
const HOP_LIMIT: usize = 7;
const SRC: usize = 8;
const DST: usize = 24;

/// Next-header value of the hop-by-hop options header.
pub const NH_HOP_BY_HOP: u8 = 0;
/// Next-header value of the routing header.
pub const NH_ROUTING: u8 = 43;
/// Next-header value of the fragment header.
pub const NH_FRAGMENT: u8 = 44;
/// Next-header value of the destination options header.
pub const NH_DEST_OPTS: u8 = 60;

/// The all-nodes link-local multicast address ff02::1.
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Why a buffer is not an IPv6 packet the views can read.
///
/// Drop reasons: `Truncated` → [`DropReason::Truncated`]; `BadVersion` and `BadPayloadLen` →
/// [`DropReason::Malformed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Error {
    /// Fewer than 40 bytes.
    Truncated,
    /// The version field is not 6.
    BadVersion,
    /// 40 + payload length is beyond the buffer.
    BadPayloadLen,
}

impl Ipv6Error {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        match self {
            Ipv6Error::Truncated => DropReason::Truncated,
            Ipv6Error::BadVersion | Ipv6Error::BadPayloadLen => DropReason::Malformed,
        }
    }
}

/// Where the upper-layer header of an IPv6 packet is, after the extension headers ([`Ipv6Packet::upper_layer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (next-header value after the last extension header).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub offset: usize,
    /// False if a fragment header with a non-zero offset was crossed: the upper-layer header is not in this
    /// packet and `offset` points at fragment data.
    pub first_fragment: bool,
}

/// A read (and, over `&mut [u8]`, write) view of an IPv6 packet. The buffer may be longer than the packet
/// (link-layer padding): [`Ipv6Packet::payload`] stops at the payload length.
///
/// A payload length of 0 is read as an empty payload (jumbograms, RFC 2675, are not supported).
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` after checking the version and the payload length against it.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Ipv6Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Ipv6Error::Truncated);
        }
        if b[VER_TC_FLOW] >> 4 != 6 {
            return Err(Ipv6Error::BadVersion);
        }
        if HEADER_LEN + be16(b, PAYLOAD_LEN) as usize > b.len() {
            return Err(Ipv6Error::BadPayloadLen);
        }
        Ok(Ipv6Packet { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (always 6 in a checked view).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[VER_TC_FLOW] >> 4
    }

    /// Traffic class (DSCP and ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// Payload length in bytes (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> usize {
        be16(self.buffer.as_ref(), PAYLOAD_LEN) as usize
    }

    /// Next header (the first extension header or the upper-layer protocol).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> [u8; 16] {
        addr_at(self.buffer.as_ref(), SRC)
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> [u8; 16] {
        addr_at(self.buffer.as_ref(), DST)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src())
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst())
    }

    /// The payload: the 40 + payload length bytes after the fixed header (not the link layer's padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len()]
    }

    /// The whole packet: header and payload.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN + self.payload_len()]
    }

    /// Walks the hop-by-hop, routing, destination options and fragment headers to the upper-layer header.
    /// `None` if an extension header runs past the payload.
    #[inline]
    pub fn upper_layer(&self) -> Option<UpperLayer> {
        let p = self.payload();
        let mut nh = self.next_header();
        let mut off = 0usize;
        let mut first_fragment = true;
        loop {
            match nh {
                NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                    let h = p.get(off..off + 2)?;
                    let len = (h[1] as usize + 1) * 8;
                    if off + len > p.len() {
                        return None;
                    }
                    nh = h[0];
                    off += len;
                }
                NH_FRAGMENT => {
                    let h = p.get(off..off + 8)?;
                    nh = h[0];
                    off += 8;
                    if be16(h, 2) & 0xfff8 != 0 {
                        first_fragment = false;
                        // What follows is fragment data, not headers.
                        break;
                    }
                }
                _ => break,
            }
        }
        Some(UpperLayer {
            protocol: nh,
            offset: off,
            first_fragment,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the hop limit (IPv6 has no header checksum).
    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[HOP_LIMIT] = hop_limit;
    }

    /// Decrements the hop limit and returns the new value. A packet whose new hop limit is 0 must not be
    /// forwarded (Time Exceeded). A hop limit that is already 0 stays 0.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> u8 {
        let b = self.buffer.as_mut();
        let h = b[HOP_LIMIT].saturating_sub(1);
        b[HOP_LIMIT] = h;
        h
    }

    /// Sets the source address. Checksums over the pseudo-header (TCP, UDP, ICMPv6) are not touched here; see
    /// [`super::checksum::update_addr16`].
    #[inline]
    pub fn set_src(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[SRC..SRC + 16].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (see [`Self::set_src`]).
    #[inline]
    pub fn set_dst(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[DST..DST + 16].copy_from_slice(&addr.octets());
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let n = self.payload_len();
        &mut self.buffer.as_mut()[HEADER_LEN..HEADER_LEN + n]
    }
}

#[inline]
fn addr_at(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    a
}

/// Writes a fresh 40-byte header at the start of `buf` (traffic class and flow label 0) for a payload of
/// `payload_len` bytes; the payload itself need not be in `buf` yet. Returns the header length (40).
///
/// Fails with [`super::TooBig`] if `buf` is shorter than 40 bytes or `payload_len` exceeds 65535.
#[inline]
pub fn write_header(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    payload_len: usize,
    hop_limit: u8,
) -> Result<usize, super::TooBig> {
    if buf.len() < HEADER_LEN || payload_len > u16::MAX as usize {
        return Err(super::TooBig);
    }
    let h = &mut buf[..HEADER_LEN];
    h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    put16(h, PAYLOAD_LEN, payload_len as u16);
    h[NEXT_HEADER] = next_header;
    h[HOP_LIMIT] = hop_limit;
    h[SRC..SRC + 16].copy_from_slice(&src.octets());
    h[DST..DST + 16].copy_from_slice(&dst.octets());
    Ok(HEADER_LEN)
}

/// True for a link-local unicast address (fe80::/10).
#[inline]
pub fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// True for a multicast address (ff00::/8).
#[inline]
pub fn is_multicast(a: &[u8; 16]) -> bool {
    a[0] == 0xff
}

/// True for the unspecified address ::.
#[inline]
pub fn is_unspecified(a: &[u8; 16]) -> bool {
    *a == [0; 16]
}

/// True for the loopback address ::1.
#[inline]
pub fn is_loopback(a: &[u8; 16]) -> bool {
    a[..15] == [0; 15] && a[15] == 1
}

/// The solicited-node multicast address of `a`: ff02::1:ff00:0/104 with the low 24 bits of `a` (RFC 4291
/// section 2.7.1).
#[inline]
pub fn solicited_node(a: &[u8; 16]) -> [u8; 16] {
    [
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, a[13], a[14], a[15],
    ]
}

/// The Ethernet multicast MAC of the IPv6 multicast address `a`: 33:33 and its low 32 bits (RFC 2464
/// section 7).
#[inline]
pub fn multicast_mac(a: &[u8; 16]) -> Mac {
    [0x33, 0x33, a[12], a[13], a[14], a[15]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_limits() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut b = [0u8; 48];
        assert_eq!(write_header(&mut b, src, dst, 17, 8, 64), Ok(40));
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0, 0));
        assert_eq!(
            (p.payload_len(), p.next_header(), p.hop_limit()),
            (8, 17, 64)
        );
        assert_eq!((p.src_addr(), p.dst_addr()), (src, dst));
        assert_eq!(p.payload().len(), 8);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..47]).err(),
            Some(Ipv6Error::BadPayloadLen)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&b[..39]).err(),
            Some(Ipv6Error::Truncated)
        );
        b[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).err(),
            Some(Ipv6Error::BadVersion)
        );
        assert!(write_header(&mut b[..39], src, dst, 17, 8, 64).is_err());
        assert!(write_header(&mut b, src, dst, 17, 65536, 64).is_err());
    }

    #[test]
    fn traffic_class_flow_label_and_hop_limit() {
        let mut b = [0u8; 40];
        b[0..4].copy_from_slice(&[0x6a, 0xbc, 0xde, 0xf1]);
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.traffic_class(), 0xab);
        assert_eq!(p.flow_label(), 0xcdef1);
        p.set_hop_limit(1);
        assert_eq!(p.decrement_hop_limit(), 0);
        assert_eq!(p.decrement_hop_limit(), 0);
        assert_eq!(p.hop_limit(), 0);
    }

    #[test]
    fn address_helpers() {
        let a: Ipv6Addr = "2001:db8::abcd:1234:5678".parse().unwrap();
        assert_eq!(
            Ipv6Addr::from(solicited_node(&a.octets())),
            "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(&solicited_node(&a.octets())),
            [0x33, 0x33, 0xff, 0x34, 0x56, 0x78]
        );
        assert!(is_link_local(
            &"fe80::1".parse::<Ipv6Addr>().unwrap().octets()
        ));
        assert!(is_link_local(
            &"febf::1".parse::<Ipv6Addr>().unwrap().octets()
        ));
        assert!(!is_link_local(
            &"fec0::1".parse::<Ipv6Addr>().unwrap().octets()
        ));
        assert!(is_loopback(&Ipv6Addr::LOCALHOST.octets()));
        assert!(is_unspecified(&Ipv6Addr::UNSPECIFIED.octets()));
        assert!(is_multicast(&ALL_NODES));
    }

    #[test]
    fn extension_header_walk() {
        // hop-by-hop (8) -> fragment (offset 0) -> ICMPv6
        let mut b = [0u8; 40 + 8 + 8 + 8];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&24u16.to_be_bytes());
        b[6] = NH_HOP_BY_HOP;
        b[40] = NH_FRAGMENT;
        b[48] = 58;
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.upper_layer(),
            Some(UpperLayer {
                protocol: 58,
                offset: 16,
                first_fragment: true
            })
        );
        b[50] = 0x01; // fragment offset 32
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert!(!p.upper_layer().unwrap().first_fragment);
        b[41] = 5; // hop-by-hop of 48 bytes: past the payload
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), None);
    }
}
