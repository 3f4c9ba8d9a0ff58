//! ICMP for IPv4 (RFC 792): a message view, the echo reply made in place, and the error messages a router
//! sends (Time Exceeded, Destination Unreachable, Fragmentation Needed), with the rules that say when it must
//! not send one (RFC 1122 section 3.2.2, RFC 1812 section 4.3.2.7).

use super::ipv4::{self, Ipv4Error, Ipv4Packet};
use super::{be16, checksum, put16, Truncated, IPPROTO_ICMP};
use dataplane::DropReason;
use std::net::Ipv4Addr;

/// Length of the ICMP header: type, code, checksum and the 4-byte rest of header.
pub const HEADER_LEN: usize = 8;
/// Longest ICMP error datagram, IP header included (RFC 1812 section 4.3.2.3).
pub const MAX_ERROR_LEN: usize = 576;

/// Echo Reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination Unreachable.
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
/// Redirect.
pub const TYPE_REDIRECT: u8 = 5;
/// Echo Request.
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time Exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Parameter Problem.
pub const TYPE_PARAMETER_PROBLEM: u8 = 12;

/// TOS of the error messages: precedence 6, internetwork control (RFC 1812 section 4.3.2.5).
const ERROR_TOS: u8 = 0xc0;

const TYPE: usize = 0;
const CODE: usize = 1;
const CHECKSUM: usize = 2;
const REST: usize = 4;

/// A read (and, over `&mut [u8]`, write) view of an ICMP message: the IPv4 payload, from the type byte on.
#[derive(Debug, Clone, Copy)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` after checking it holds the 8-byte header. The checksum covers the whole buffer, so pass
    /// exactly the IPv4 payload ([`Ipv4Packet::payload`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Icmpv4Packet { buffer })
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[TYPE]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[CODE]
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), CHECKSUM)
    }

    /// The 4 bytes after the checksum (identifier and sequence number, next-hop MTU, unused...).
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[REST], b[REST + 1], b[REST + 2], b[REST + 3]]
    }

    /// Echo identifier (bytes 4-5).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), REST)
    }

    /// Echo sequence number (bytes 6-7).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), REST + 2)
    }

    /// Next-hop MTU of a Fragmentation Needed message (bytes 6-7, RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), REST + 2)
    }

    /// Everything after the 8-byte header: echo data, or the quoted datagram of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True if the checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the type (checksum not touched).
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[TYPE] = t;
    }

    /// Sets the code (checksum not touched).
    #[inline]
    pub fn set_code(&mut self, c: u8) {
        self.buffer.as_mut()[CODE] = c;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buffer.as_mut(), CHECKSUM, c);
    }

    /// Sets the rest of header (checksum not touched).
    #[inline]
    pub fn set_rest_of_header(&mut self, r: [u8; 4]) {
        self.buffer.as_mut()[REST..REST + 4].copy_from_slice(&r);
    }

    /// Computes the checksum over the whole message and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// The data after the header, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Why [`echo_reply_in_place`] did not answer.
///
/// Drop reasons: `Ip(e)` → `e.drop_reason()`; `Truncated` → [`DropReason::Truncated`]; `BadChecksum` (the IPv4
/// header's or the ICMP message's) → [`DropReason::BadChecksum`]; `Unhandled` is not a fault of the packet: it
/// goes to the local stack, and is counted as [`DropReason::NoLocalStack`] where there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoError {
    /// The IPv4 header does not parse.
    Ip(Ipv4Error),
    /// The ICMP message is shorter than its header.
    Truncated,
    /// A checksum does not verify.
    BadChecksum,
    /// Not a unicast, unfragmented Echo Request (code 0) from a unicast source.
    Unhandled,
}

impl EchoError {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        match self {
            EchoError::Ip(e) => e.drop_reason(),
            EchoError::Truncated => DropReason::Truncated,
            EchoError::BadChecksum => DropReason::BadChecksum,
            EchoError::Unhandled => DropReason::NoLocalStack,
        }
    }
}

#[inline]
fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast())
}

/// Turns the IPv4 Echo Request in `ip` (a buffer starting at the IPv4 header; padding after it is ignored)
/// into its Echo Reply in place: source and destination swapped, TTL set to `ttl`, type 8 → 0, both checksums
/// updated incrementally (swapping the addresses leaves the header sum unchanged). Options and the echo data
/// are kept. Returns the IPv4 packet length (the total length), so the caller can trim the padding.
///
/// Both checksums are verified first. The link layer (MACs, next hop) is the caller's.
#[inline]
pub fn echo_reply_in_place(ip: &mut [u8], ttl: u8) -> Result<usize, EchoError> {
    let (hl, total) = {
        let p = Ipv4Packet::new_checked(&*ip).map_err(EchoError::Ip)?;
        if !p.verify_checksum() {
            return Err(EchoError::BadChecksum);
        }
        if p.protocol() != IPPROTO_ICMP
            || p.is_fragment()
            || !is_unicast(p.dst_addr())
            || !is_unicast(p.src_addr())
        {
            return Err(EchoError::Unhandled);
        }
        let icmp = Icmpv4Packet::new_checked(p.payload()).map_err(|_| EchoError::Truncated)?;
        if !icmp.verify_checksum() {
            return Err(EchoError::BadChecksum);
        }
        if icmp.msg_type() != TYPE_ECHO_REQUEST || icmp.code() != 0 {
            return Err(EchoError::Unhandled);
        }
        (p.header_len(), p.total_len())
    };
    // ICMP: type 8 -> 0 in the word (type, code).
    let mut c = checksum::update16(
        be16(ip, hl + CHECKSUM),
        u16::from_be_bytes([TYPE_ECHO_REQUEST, 0]),
        u16::from_be_bytes([TYPE_ECHO_REPLY, 0]),
    );
    ip[hl + TYPE] = TYPE_ECHO_REPLY;
    if c == 0 {
        // RFC 1624's corner: a reply that is all zero (identifier, sequence number and data 0) sums to zero,
        // and only 0xffff verifies. Rare enough to look.
        let m = &ip[hl..total];
        if m[..CHECKSUM].iter().chain(&m[REST..]).all(|&b| b == 0) {
            c = 0xffff;
        }
    }
    put16(ip, hl + CHECKSUM, c);
    // IP: swap the addresses (sum unchanged), then the TTL.
    for i in 12..16 {
        ip.swap(i, i + 4);
    }
    if let Ok(mut p) = Ipv4Packet::new_checked(&mut ip[..]) {
        p.update_ttl(ttl);
    }
    Ok(total)
}

/// An ICMP error a router sends about a datagram it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Error {
    /// Time Exceeded, TTL exceeded in transit (11/0).
    TimeExceeded,
    /// Destination Unreachable, net unreachable (3/0).
    NetUnreachable,
    /// Destination Unreachable, host unreachable (3/1).
    HostUnreachable,
    /// Destination Unreachable, port unreachable (3/3).
    PortUnreachable,
    /// Destination Unreachable, communication administratively prohibited (3/13, RFC 1812).
    AdminProhibited,
    /// Destination Unreachable, fragmentation needed and DF set (3/4), with the next-hop MTU (RFC 1191).
    FragNeeded {
        /// MTU of the next-hop link.
        mtu: u16,
    },
}

impl Icmpv4Error {
    /// Type, code and rest of header of the message.
    #[inline]
    pub fn header(self) -> (u8, u8, [u8; 4]) {
        match self {
            Icmpv4Error::TimeExceeded => (TYPE_TIME_EXCEEDED, 0, [0; 4]),
            Icmpv4Error::NetUnreachable => (TYPE_DEST_UNREACHABLE, 0, [0; 4]),
            Icmpv4Error::HostUnreachable => (TYPE_DEST_UNREACHABLE, 1, [0; 4]),
            Icmpv4Error::PortUnreachable => (TYPE_DEST_UNREACHABLE, 3, [0; 4]),
            Icmpv4Error::AdminProhibited => (TYPE_DEST_UNREACHABLE, 13, [0; 4]),
            Icmpv4Error::FragNeeded { mtu } => {
                let m = mtu.to_be_bytes();
                (TYPE_DEST_UNREACHABLE, 4, [0, 0, m[0], m[1]])
            }
        }
    }
}

/// Why [`write_error`] wrote nothing.
///
/// None is a drop reason of its own: the offending datagram is dropped for the reason that made the router
/// answer (`ttl_exceeded`, `no_route`, `too_big`, `acl_deny`...), and these only say why no ICMP error went out.
/// [`WriteError::drop_reason`] gives [`DropReason::Truncated`]/[`DropReason::Malformed`] for `BadOriginal`
/// (the datagram was never valid) and [`DropReason::TooBig`] for `TooBig`; `MustNotAnswer` has none (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The offending datagram is not a valid IPv4 packet.
    BadOriginal(Ipv4Error),
    /// The rules forbid an error about this datagram ([`must_not_answer`]).
    MustNotAnswer,
    /// The output buffer cannot hold the headers, the original's IP header and 8 bytes of its payload.
    TooBig,
}

impl WriteError {
    /// The drop reason, if any (see the type's docs).
    #[inline]
    pub fn drop_reason(self) -> Option<DropReason> {
        match self {
            WriteError::BadOriginal(e) => Some(e.drop_reason()),
            WriteError::MustNotAnswer => None,
            WriteError::TooBig => Some(DropReason::TooBig),
        }
    }
}

/// Bytes in front of the quoted datagram: the IPv4 and ICMP headers.
pub const ERROR_HEADERS_LEN: usize = ipv4::HEADER_LEN + HEADER_LEN;

/// Writes an ICMP error about `offending` (the dropped datagram, from its IPv4 header on) into `out`: an IPv4
/// header from `src` to the offending source (TTL `ttl`, TOS 0xc0, DF set, identification 0: an atomic
/// datagram, RFC 6864), the ICMP header, and the quoted original: its IP header and as much of its payload as
/// fits in [`MAX_ERROR_LEN`] bytes in all (RFC 1812 section 4.3.2.3) and in `out`, never beyond the original's
/// total length. Returns the length of the IPv4 packet written.
///
/// Refuses ([`WriteError::MustNotAnswer`]) whatever [`must_not_answer`] refuses.
#[inline]
pub fn write_error(
    out: &mut [u8],
    kind: Icmpv4Error,
    offending: &[u8],
    src: Ipv4Addr,
    ttl: u8,
) -> Result<usize, WriteError> {
    let orig = Ipv4Packet::new_checked(offending).map_err(WriteError::BadOriginal)?;
    let q = plan(&orig, out.len())?;
    out[ERROR_HEADERS_LEN..ERROR_HEADERS_LEN + q.len].copy_from_slice(&orig.packet()[..q.len]);
    Ok(finish(out, &q, kind, src, ttl))
}

/// [`write_error`] without a copy: `buf` holds the offending datagram at offset [`ERROR_HEADERS_LEN`] (the
/// caller has prepended that much headroom in front of its IPv4 header), and the headers are written in front
/// of it. Returns the length of the IPv4 packet, from the start of `buf`: the caller trims the rest.
#[inline]
pub fn write_error_in_place(
    buf: &mut [u8],
    kind: Icmpv4Error,
    src: Ipv4Addr,
    ttl: u8,
) -> Result<usize, WriteError> {
    let q = {
        let Some(o) = buf.get(ERROR_HEADERS_LEN..) else {
            return Err(WriteError::BadOriginal(Ipv4Error::Truncated));
        };
        let orig = Ipv4Packet::new_checked(o).map_err(WriteError::BadOriginal)?;
        plan(&orig, buf.len())?
    };
    Ok(finish(buf, &q, kind, src, ttl))
}

/// What an error message will quote and to whom.
struct Quote {
    len: usize,
    to: Ipv4Addr,
}

#[inline]
fn plan<T: AsRef<[u8]>>(orig: &Ipv4Packet<T>, out_len: usize) -> Result<Quote, WriteError> {
    if refuse(orig) {
        return Err(WriteError::MustNotAnswer);
    }
    let avail = out_len.min(MAX_ERROR_LEN);
    let orig_len = orig.total_len();
    let min_quote = orig_len.min(orig.header_len() + 8);
    if avail < ERROR_HEADERS_LEN + min_quote {
        return Err(WriteError::TooBig);
    }
    Ok(Quote {
        len: orig_len.min(avail - ERROR_HEADERS_LEN),
        to: orig.src_addr(),
    })
}

/// Writes the headers in front of a quote already at `out[ERROR_HEADERS_LEN..]`; `plan` checked the room.
#[inline]
fn finish(out: &mut [u8], q: &Quote, kind: Icmpv4Error, src: Ipv4Addr, ttl: u8) -> usize {
    let end = ERROR_HEADERS_LEN + q.len;
    let (t, c, rest) = kind.header();
    {
        let m = &mut out[ipv4::HEADER_LEN..end];
        m[TYPE] = t;
        m[CODE] = c;
        put16(m, CHECKSUM, 0);
        m[REST..REST + 4].copy_from_slice(&rest);
        let cs = checksum::checksum(m);
        put16(m, CHECKSUM, cs);
    }
    let _ = ipv4::write_header(out, src, q.to, IPPROTO_ICMP, HEADER_LEN + q.len, ttl, 0);
    if let Ok(mut p) = Ipv4Packet::new_checked(&mut out[..end]) {
        p.set_dscp_ecn(ERROR_TOS);
        p.set_dont_frag(true);
        p.fill_checksum();
    }
    end
}

/// True if no ICMP error may be sent about `offending` (an IPv4 datagram from its header on), by RFC 1122
/// section 3.2.2 and RFC 1812 section 4.3.2.7: it does not parse; it is an ICMP error message (any ICMP type
/// that is not a known query, or too short to tell); it is a fragment other than the first; its destination is
/// the limited broadcast or multicast; or its source does not name a single host (0.0.0.0/8, loopback,
/// multicast, 240.0.0.0/4 including broadcast).
///
/// Not visible here, so the caller checks: a datagram that arrived as a link-layer broadcast or multicast, and
/// one addressed to a subnet's directed broadcast.
#[inline]
pub fn must_not_answer(offending: &[u8]) -> bool {
    match Ipv4Packet::new_checked(offending) {
        Ok(p) => refuse(&p),
        Err(_) => true,
    }
}

#[inline]
fn refuse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> bool {
    if p.frag_offset() != 0 {
        return true;
    }
    let dst = p.dst_addr();
    if dst.is_broadcast() || dst.is_multicast() {
        return true;
    }
    let s = p.src();
    if s[0] == 0 || s[0] == 127 || s[0] >= 224 {
        return true;
    }
    if p.protocol() == IPPROTO_ICMP {
        return match p.payload().first() {
            Some(&t) => !is_query(t),
            None => true,
        };
    }
    false
}

/// ICMP query (informational) types: echo, router advertisement/solicitation, timestamp, information,
/// address mask, each request and reply.
#[inline]
fn is_query(t: u8) -> bool {
    matches!(t, 0 | 8 | 9 | 10 | 13 | 14 | 15 | 16 | 17 | 18)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 20 + payload.len()];
        ipv4::write_header(
            &mut v,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 9),
            proto,
            payload.len(),
            1,
            99,
        )
        .unwrap();
        v[20..].copy_from_slice(payload);
        v
    }

    #[test]
    fn view_accessors() {
        let mut m = [8u8, 0, 0, 0, 0x12, 0x34, 0x00, 0x07, b'h', b'i'];
        let mut p = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!((p.msg_type(), p.code()), (8, 0));
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 7));
        assert_eq!(p.rest_of_header(), [0x12, 0x34, 0, 7]);
        assert_eq!(p.data(), b"hi");
        assert!(Icmpv4Packet::new_checked(&m[..7]).is_err());
    }

    #[test]
    fn all_zero_echo_reply_gets_0xffff() {
        // Echo request, identifier 0, sequence 0, no data: the reply is all zero but for its checksum.
        let mut v = datagram(1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let hl = 20;
        let c = checksum::checksum(&v[hl..]);
        v[hl + 2..hl + 4].copy_from_slice(&c.to_be_bytes());
        // A unicast source.
        assert_eq!(echo_reply_in_place(&mut v, 64), Ok(28));
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert!(p.verify_checksum());
        let m = Icmpv4Packet::new_checked(p.payload()).unwrap();
        assert_eq!(m.checksum(), 0xffff);
        assert!(m.verify_checksum());
        // Non-zero data whose sum makes the checksum 0x0000 keep 0x0000, as a recomputation gives.
        let mut w = datagram(1, &[8, 0, 0, 0, 0xff, 0xff, 0, 0]);
        let c = checksum::checksum(&w[hl..]);
        w[hl + 2..hl + 4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(echo_reply_in_place(&mut w, 64), Ok(28));
        let mut m = Icmpv4Packet::new_checked(&mut w[hl..]).unwrap();
        assert_eq!(m.checksum(), 0x0000);
        assert!(m.verify_checksum());
        m.fill_checksum();
        assert_eq!(m.checksum(), 0x0000);
    }

    #[test]
    fn quote_is_capped_at_576_and_at_the_original() {
        let big = datagram(17, &[0xab; 1400]);
        let mut out = [0u8; 2048];
        let n = write_error(
            &mut out,
            Icmpv4Error::TimeExceeded,
            &big,
            Ipv4Addr::new(10, 0, 0, 1),
            64,
        )
        .unwrap();
        assert_eq!(n, 576);
        let small = datagram(17, &[1, 2, 3]);
        let mut padded = small.clone();
        padded.extend_from_slice(&[0xee; 20]); // padding must not be quoted
        let n = write_error(
            &mut out,
            Icmpv4Error::PortUnreachable,
            &padded,
            Ipv4Addr::new(10, 0, 0, 1),
            64,
        )
        .unwrap();
        assert_eq!(n, 28 + small.len());
        assert_eq!(&out[28..n], &small[..]);
        // A short output buffer quotes less, down to header + 8 bytes, then refuses.
        let n = write_error(
            &mut out[..60],
            Icmpv4Error::TimeExceeded,
            &big,
            Ipv4Addr::new(10, 0, 0, 1),
            64,
        )
        .unwrap();
        assert_eq!(n, 60);
        assert_eq!(
            write_error(
                &mut out[..55],
                Icmpv4Error::TimeExceeded,
                &big,
                Ipv4Addr::new(10, 0, 0, 1),
                64
            ),
            Err(WriteError::TooBig)
        );
    }

    #[test]
    fn rules_for_not_answering() {
        assert!(!must_not_answer(&datagram(17, &[0; 8])));
        assert!(!must_not_answer(&datagram(1, &[8, 0, 0, 0, 0, 0, 0, 0])));
        assert!(must_not_answer(&datagram(1, &[3, 0, 0, 0, 0, 0, 0, 0])));
        assert!(must_not_answer(&datagram(1, &[11, 0, 0, 0, 0, 0, 0, 0])));
        assert!(must_not_answer(&datagram(1, &[])));
        assert!(must_not_answer(&[0x45, 0, 0]));
        let set = |off: usize, val: &[u8]| {
            let mut d = datagram(17, &[0; 8]);
            d[off..off + val.len()].copy_from_slice(val);
            d
        };
        assert!(must_not_answer(&set(6, &[0x00, 0x01]))); // offset 8
        assert!(!must_not_answer(&set(6, &[0x20, 0x00]))); // first fragment
        assert!(must_not_answer(&set(16, &[255, 255, 255, 255])));
        assert!(must_not_answer(&set(16, &[224, 0, 0, 1])));
        assert!(must_not_answer(&set(12, &[0, 0, 0, 0])));
        assert!(must_not_answer(&set(12, &[127, 0, 0, 1])));
        assert!(must_not_answer(&set(12, &[239, 1, 1, 1])));
        assert!(must_not_answer(&set(12, &[255, 255, 255, 255])));
        assert!(must_not_answer(&set(12, &[240, 0, 0, 1])));
    }
}
