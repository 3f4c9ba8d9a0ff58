//! IPv4 header view (RFC 791) with in-place TTL and address rewriting that keeps the header checksum correct
//! incrementally (RFC 1624), and a writer for fresh headers.

use super::checksum;
use super::{be16, put16};
use dataplane::DropReason;
use std::net::Ipv4Addr;

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Largest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const VER_IHL: usize = 0;
const DSCP_ECN: usize = 1;
const TOTAL_LEN: usize = 2;
const IDENT: usize = 4;
const FLAGS_FRAG: usize = 6;
const TTL: usize = 8;
const PROTOCOL: usize = 9;
const CHECKSUM: usize = 10;
const SRC: usize = 12;
const DST: usize = 16;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// Why a buffer is not an IPv4 packet the views can read.
///
/// Drop reasons: `Truncated` → [`DropReason::Truncated`]; `BadVersion`, `BadHeaderLen` and `BadTotalLen` →
/// [`DropReason::Malformed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Fewer than 20 bytes, or fewer than the header length (IHL × 4) says.
    Truncated,
    /// The version field is not 4.
    BadVersion,
    /// IHL below 5.
    BadHeaderLen,
    /// The total length is below the header length or beyond the buffer.
    BadTotalLen,
}

impl Ipv4Error {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        match self {
            Ipv4Error::Truncated => DropReason::Truncated,
            Ipv4Error::BadVersion | Ipv4Error::BadHeaderLen | Ipv4Error::BadTotalLen => {
                DropReason::Malformed
            }
        }
    }
}

/// Decrements the TTL of the header at the start of `h` (its first 12 bytes: options do not matter), updating
/// the checksum incrementally, and returns the new TTL; a TTL of 0 is left alone and 0 returned. The same as
/// [`Ipv4Packet::decrement_ttl`] on a header the caller has already validated, without a second view and its
/// bounds checks: the forwarding fast path calls it for every packet.
#[inline(always)]
pub fn decrement_ttl_in(h: &mut [u8; 12]) -> u8 {
    let ttl = h[TTL];
    if ttl == 0 {
        return 0;
    }
    h[TTL] = ttl - 1;
    // RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), with m the TTL/protocol word: m' = m - 0x100, so ~m + m' is
    // the constant 0xfeff whatever the protocol (the sum cannot carry as m >= 0x100).
    let hc = u16::from_be_bytes([h[CHECKSUM], h[CHECKSUM + 1]]);
    let s = (!hc) as u32 + 0xfeff;
    let s = (s & 0xffff) + (s >> 16);
    h[CHECKSUM..CHECKSUM + 2].copy_from_slice(&(!(s as u16)).to_be_bytes());
    ttl - 1
}

/// A read (and, over `&mut [u8]`, write) view of an IPv4 packet. The buffer may be longer than the packet
/// (Ethernet padding): [`Ipv4Packet::payload`] stops at the total length.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` after checking the version, the header length and the total length against it.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Ipv4Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if b[VER_IHL] >> 4 != 4 {
            return Err(Ipv4Error::BadVersion);
        }
        let hl = ((b[VER_IHL] & 0x0f) as usize) * 4;
        if hl < HEADER_LEN {
            return Err(Ipv4Error::BadHeaderLen);
        }
        if b.len() < hl {
            return Err(Ipv4Error::Truncated);
        }
        let total = be16(b, TOTAL_LEN) as usize;
        if total < hl || total > b.len() {
            return Err(Ipv4Error::BadTotalLen);
        }
        Ok(Ipv4Packet { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (always 4 in a checked view).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4, 20 to 60).
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[VER_IHL] & 0x0f) as usize) * 4
    }

    /// The DSCP and ECN byte (formerly TOS).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[DSCP_ECN]
    }

    /// Total length (header and payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> usize {
        be16(self.buffer.as_ref(), TOTAL_LEN) as usize
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), IDENT)
    }

    /// The don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), FLAGS_FRAG) & FLAG_DF != 0
    }

    /// The more-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> usize {
        ((be16(self.buffer.as_ref(), FLAGS_FRAG) & FRAG_OFFSET_MASK) as usize) * 8
    }

    /// True if the packet is a fragment: more fragments follow or the offset is not zero.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[SRC], b[SRC + 1], b[SRC + 2], b[SRC + 3]]
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[DST], b[DST + 1], b[DST + 2], b[DST + 3]]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src())
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst())
    }

    /// True if the header carries options (IHL > 5).
    #[inline]
    pub fn has_options(&self) -> bool {
        self.header_len() > HEADER_LEN
    }

    /// The options (empty without).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload: from the end of the header to the total length (not the link layer's padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }

    /// The whole packet: header and payload, up to the total length.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }

    /// True if the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the TTL without touching the checksum.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[TTL] = ttl;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        put16(self.buffer.as_mut(), CHECKSUM, csum);
    }

    /// Sets the DSCP and ECN byte without touching the checksum.
    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[DSCP_ECN] = v;
    }

    /// Sets the don't-fragment flag without touching the checksum.
    #[inline]
    pub fn set_dont_frag(&mut self, df: bool) {
        let b = self.buffer.as_mut();
        let f = be16(b, FLAGS_FRAG);
        put16(b, FLAGS_FRAG, if df { f | FLAG_DF } else { f & !FLAG_DF });
    }

    /// Computes the header checksum in full and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Decrements the TTL, updating the checksum incrementally, and returns the new TTL.
    ///
    /// A packet whose new TTL is 0 must not be forwarded (Time Exceeded). A TTL that is already 0 is left alone
    /// (it does not wrap to 255) and 0 is returned.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let b = self.buffer.as_mut();
        let ttl = b[TTL];
        if ttl == 0 {
            return 0;
        }
        let proto = b[PROTOCOL];
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        b[TTL] = ttl - 1;
        let c = checksum::update16(be16(b, CHECKSUM), old, new);
        put16(b, CHECKSUM, c);
        ttl - 1
    }

    /// Sets the TTL, updating the checksum incrementally.
    #[inline]
    pub fn update_ttl(&mut self, ttl: u8) {
        let b = self.buffer.as_mut();
        let proto = b[PROTOCOL];
        let old = u16::from_be_bytes([b[TTL], proto]);
        let new = u16::from_be_bytes([ttl, proto]);
        b[TTL] = ttl;
        let c = checksum::update16(be16(b, CHECKSUM), old, new);
        put16(b, CHECKSUM, c);
    }

    /// Sets the source address, updating the header checksum incrementally. A TCP or UDP checksum over the
    /// pseudo-header is not touched here (it lives in the payload; see [`checksum::update32`]).
    #[inline]
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.set_addr(SRC, addr);
    }

    /// Sets the destination address, updating the header checksum incrementally (see [`Self::set_src`]).
    #[inline]
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.set_addr(DST, addr);
    }

    #[inline]
    fn set_addr(&mut self, off: usize, addr: Ipv4Addr) {
        let b = self.buffer.as_mut();
        let old = u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]);
        let new = addr.to_bits();
        b[off..off + 4].copy_from_slice(&addr.octets());
        let c = checksum::update32(be16(b, CHECKSUM), old, new);
        put16(b, CHECKSUM, c);
    }

    /// The payload, writable (up to the total length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[hl..total]
    }
}

/// Writes a fresh 20-byte header at the start of `buf` for a payload of `payload_len` bytes: no options, DSCP
/// and ECN 0, no flags (DF clear; see [`Ipv4Packet::set_dont_frag`]), offset 0, checksum filled. The payload
/// itself need not be in `buf` yet. Returns the header length (20).
///
/// Fails with [`super::TooBig`] if `buf` is shorter than 20 bytes or `20 + payload_len` exceeds 65535.
#[inline]
pub fn write_header(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload_len: usize,
    ttl: u8,
    ident: u16,
) -> Result<usize, super::TooBig> {
    if buf.len() < HEADER_LEN || payload_len > u16::MAX as usize - HEADER_LEN {
        return Err(super::TooBig);
    }
    let h = &mut buf[..HEADER_LEN];
    h[VER_IHL] = 0x45;
    h[DSCP_ECN] = 0;
    put16(h, TOTAL_LEN, (HEADER_LEN + payload_len) as u16);
    put16(h, IDENT, ident);
    put16(h, FLAGS_FRAG, 0);
    h[TTL] = ttl;
    h[PROTOCOL] = proto;
    put16(h, CHECKSUM, 0);
    h[SRC..SRC + 4].copy_from_slice(&src.octets());
    h[DST..DST + 4].copy_from_slice(&dst.octets());
    let c = checksum::checksum(h);
    put16(h, CHECKSUM, c);
    Ok(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; HEADER_LEN + payload.len()];
        write_header(
            &mut v,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            payload.len(),
            64,
            7,
        )
        .unwrap();
        v[HEADER_LEN..].copy_from_slice(payload);
        v
    }

    #[test]
    fn decrement_ttl_in_matches_the_view() {
        for (i, ttl) in [0u8, 1, 2, 64, 255]
            .into_iter()
            .cycle()
            .take(2000)
            .enumerate()
        {
            let mut a = packet(b"xy");
            a[TTL] = ttl;
            // Other protocols and addresses: checksums across their whole range, 0x0000 and 0xffff included.
            a[PROTOCOL] = (i * 7) as u8;
            a[12..20]
                .copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            a[CHECKSUM..CHECKSUM + 2].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&a[..HEADER_LEN]);
            a[CHECKSUM..CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
            let mut b = a.clone();
            let n1 = Ipv4Packet::new_checked(&mut a[..]).unwrap().decrement_ttl();
            let n2 = decrement_ttl_in((&mut b[..12]).try_into().unwrap());
            assert_eq!((n1, &a), (n2, &b), "ttl {ttl}");
            assert!(Ipv4Packet::new_checked(&b[..]).unwrap().verify_checksum());
        }
    }

    #[test]
    fn accessors_on_a_written_header() {
        let mut v = packet(b"hello");
        v.extend_from_slice(&[0; 9]); // link-layer padding
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 25);
        assert_eq!(p.ident(), 7);
        assert!(!p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst(), [10, 0, 0, 2]);
        assert!(!p.has_options() && p.options().is_empty());
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum());
    }

    #[test]
    fn checked_constructor_rejects_each_inconsistency() {
        let v = packet(b"abcd");
        assert_eq!(
            Ipv4Packet::new_checked(&v[..19]).err(),
            Some(Ipv4Error::Truncated)
        );
        let mut bad = v.clone();
        bad[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).err(),
            Some(Ipv4Error::BadVersion)
        );
        for ihl in 0..5u8 {
            bad = v.clone();
            bad[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&bad[..]).err(),
                Some(Ipv4Error::BadHeaderLen)
            );
        }
        bad = v.clone();
        bad[0] = 0x46; // 24-byte header in a 24-byte buffer: fits, but total 24 is fine
        assert!(Ipv4Packet::new_checked(&bad[..]).is_ok());
        bad[0] = 0x4f; // 60-byte header past the buffer
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).err(),
            Some(Ipv4Error::Truncated)
        );
        bad = v.clone();
        bad[3] = 25; // total length past the buffer
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).err(),
            Some(Ipv4Error::BadTotalLen)
        );
        bad[3] = 19; // below the header
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).err(),
            Some(Ipv4Error::BadTotalLen)
        );
    }

    #[test]
    fn ttl_zero_and_one() {
        let mut v = packet(b"x");
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_ttl(1);
        p.fill_checksum();
        assert_eq!(p.decrement_ttl(), 0);
        assert_eq!(p.ttl(), 0);
        assert!(p.verify_checksum());
        let before = p.checksum();
        assert_eq!(p.decrement_ttl(), 0, "TTL 0 stays 0");
        assert_eq!(p.ttl(), 0);
        assert_eq!(p.checksum(), before);
        assert!(p.verify_checksum());
    }

    #[test]
    fn set_addresses_keeps_the_checksum() {
        let mut v = packet(b"x");
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_src(Ipv4Addr::new(192, 0, 2, 200));
        p.set_dst(Ipv4Addr::new(255, 255, 255, 255));
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
        assert_eq!(p.src(), [192, 0, 2, 200]);
    }

    #[test]
    fn write_header_limits() {
        let mut b = [0u8; 19];
        assert!(
            write_header(&mut b, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 0, 1, 0).is_err()
        );
        let mut b = [0u8; 20];
        assert!(write_header(
            &mut b,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            1,
            65516,
            1,
            0
        )
        .is_err());
        assert_eq!(
            write_header(
                &mut b,
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST,
                1,
                65515,
                1,
                0
            ),
            Ok(20)
        );
    }
}
