//! ICMPv6 (RFC 4443): a message view with the pseudo-header checksum, the echo reply made in place, and the
//! error messages a router sends (Time Exceeded, Destination Unreachable, Packet Too Big), with the rules of
//! section 2.4(e) that say when it must not send one.

use super::ipv6::{self, Ipv6Error, Ipv6Packet};
use super::{be16, checksum, put16, Truncated, IPPROTO_ICMPV6};
use dataplane::DropReason;
use std::net::Ipv6Addr;

/// Length of the ICMPv6 header: type, code, checksum and 4 bytes of message body every message has.
pub const HEADER_LEN: usize = 8;
/// The IPv6 minimum MTU: an error message, IPv6 header included, is at most this long (RFC 4443 section 2.4(c)).
pub const MIN_MTU: usize = 1280;

/// Destination Unreachable.
pub const TYPE_DEST_UNREACHABLE: u8 = 1;
/// Packet Too Big.
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Time Exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Parameter Problem.
pub const TYPE_PARAMETER_PROBLEM: u8 = 4;
/// Echo Request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo Reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// Redirect (RFC 4861).
pub const TYPE_REDIRECT: u8 = 137;

const TYPE: usize = 0;
const CODE: usize = 1;
const CHECKSUM: usize = 2;
const REST: usize = 4;

/// A read (and, over `&mut [u8]`, write) view of an ICMPv6 message: the upper-layer payload of an IPv6 packet,
/// from the type byte on. The checksum covers the whole buffer and the pseudo-header.
#[derive(Debug, Clone, Copy)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` after checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Icmpv6Packet { buffer })
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

    /// Bytes 4-7 (identifier and sequence number, MTU, pointer, unused, flags...).
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[REST], b[REST + 1], b[REST + 2], b[REST + 3]]
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), REST)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), REST + 2)
    }

    /// MTU of a Packet Too Big message.
    #[inline]
    pub fn mtu(&self) -> u32 {
        u32::from_be_bytes(self.rest_of_header())
    }

    /// Everything after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The whole message.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// True if the checksum verifies for a message from `src` to `dst`.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let b = self.buffer.as_ref();
        let ps = checksum::pseudo_v6(src, dst, IPPROTO_ICMPV6, b.len() as u32);
        checksum::fold(checksum::sum(b, ps)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Sets bytes 4-7 (checksum not touched).
    #[inline]
    pub fn set_rest_of_header(&mut self, r: [u8; 4]) {
        self.buffer.as_mut()[REST..REST + 4].copy_from_slice(&r);
    }

    /// Computes the checksum for a message from `src` to `dst` and stores it.
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = message_checksum(self.buffer.as_ref(), src, dst);
        self.set_checksum(c);
    }

    /// The data after the header, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The checksum of ICMPv6 message `m` (its checksum field zero) from `src` to `dst`.
#[inline]
pub(crate) fn message_checksum(m: &[u8], src: &[u8; 16], dst: &[u8; 16]) -> u16 {
    let ps = checksum::pseudo_v6(src, dst, IPPROTO_ICMPV6, m.len() as u32);
    !checksum::fold(checksum::sum(m, ps))
}

/// Why [`echo_reply_in_place`] did not answer.
///
/// Drop reasons: `Ip(e)` → `e.drop_reason()`; `Truncated` → [`DropReason::Truncated`]; `BadChecksum` →
/// [`DropReason::BadChecksum`]; `Unhandled` is not a fault of the packet: it goes to the local stack, and is
/// counted as [`DropReason::NoLocalStack`] where there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoError {
    /// The IPv6 header does not parse.
    Ip(Ipv6Error),
    /// The ICMPv6 message is shorter than its header.
    Truncated,
    /// The ICMPv6 checksum does not verify.
    BadChecksum,
    /// Not an Echo Request (code 0) right after the IPv6 header (no extension headers), to a unicast destination
    /// from a unicast source.
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

/// Turns the ICMPv6 Echo Request in `ip` (a buffer starting at the IPv6 header; padding after it is ignored)
/// into its Echo Reply in place: addresses swapped (the pseudo-header sum is unchanged), hop limit set to
/// `hop_limit`, type 128 → 129 with the checksum updated incrementally. Returns the IPv6 packet length.
///
/// The checksum is verified first. The link layer is the caller's.
#[inline]
pub fn echo_reply_in_place(ip: &mut [u8], hop_limit: u8) -> Result<usize, EchoError> {
    let len = {
        let p = Ipv6Packet::new_checked(&*ip).map_err(EchoError::Ip)?;
        let (src, dst) = (p.src(), p.dst());
        if p.next_header() != IPPROTO_ICMPV6
            || ipv6::is_multicast(&dst)
            || ipv6::is_multicast(&src)
            || ipv6::is_unspecified(&src)
        {
            return Err(EchoError::Unhandled);
        }
        let icmp = Icmpv6Packet::new_checked(p.payload()).map_err(|_| EchoError::Truncated)?;
        if !icmp.verify_checksum(&src, &dst) {
            return Err(EchoError::BadChecksum);
        }
        if icmp.msg_type() != TYPE_ECHO_REQUEST || icmp.code() != 0 {
            return Err(EchoError::Unhandled);
        }
        ipv6::HEADER_LEN + p.payload_len()
    };
    let h = ipv6::HEADER_LEN;
    let c = be16(ip, h + CHECKSUM);
    ip[h + TYPE] = TYPE_ECHO_REPLY;
    put16(
        ip,
        h + CHECKSUM,
        checksum::update16(
            c,
            u16::from_be_bytes([TYPE_ECHO_REQUEST, 0]),
            u16::from_be_bytes([TYPE_ECHO_REPLY, 0]),
        ),
    );
    for i in 8..24 {
        ip.swap(i, i + 16);
    }
    ip[7] = hop_limit;
    Ok(len)
}

/// An ICMPv6 error a router sends about a packet it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Error {
    /// Time Exceeded, hop limit exceeded in transit (3/0).
    TimeExceeded,
    /// Destination Unreachable, no route to destination (1/0).
    NoRoute,
    /// Destination Unreachable, communication administratively prohibited (1/1).
    AdminProhibited,
    /// Destination Unreachable, address unreachable (1/3): neighbour resolution failed.
    AddressUnreachable,
    /// Destination Unreachable, port unreachable (1/4).
    PortUnreachable,
    /// Packet Too Big (2/0), with the next-hop MTU.
    PacketTooBig {
        /// MTU of the next-hop link.
        mtu: u32,
    },
}

impl Icmpv6Error {
    /// Type, code and bytes 4-7 of the message.
    #[inline]
    pub fn header(self) -> (u8, u8, [u8; 4]) {
        match self {
            Icmpv6Error::TimeExceeded => (TYPE_TIME_EXCEEDED, 0, [0; 4]),
            Icmpv6Error::NoRoute => (TYPE_DEST_UNREACHABLE, 0, [0; 4]),
            Icmpv6Error::AdminProhibited => (TYPE_DEST_UNREACHABLE, 1, [0; 4]),
            Icmpv6Error::AddressUnreachable => (TYPE_DEST_UNREACHABLE, 3, [0; 4]),
            Icmpv6Error::PortUnreachable => (TYPE_DEST_UNREACHABLE, 4, [0; 4]),
            Icmpv6Error::PacketTooBig { mtu } => (TYPE_PACKET_TOO_BIG, 0, mtu.to_be_bytes()),
        }
    }
}

/// Why [`write_error`] wrote nothing.
///
/// None is a drop reason of its own: the offending packet is dropped for the reason that made the router
/// answer, and these only say why no ICMPv6 error went out. [`WriteError::drop_reason`] gives
/// [`DropReason::Truncated`]/[`DropReason::Malformed`] for `BadOriginal` and [`DropReason::TooBig`] for
/// `TooBig`; `MustNotAnswer` has none (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The offending packet is not a valid IPv6 packet.
    BadOriginal(Ipv6Error),
    /// RFC 4443 section 2.4(e) forbids an error about this packet ([`must_not_answer`]).
    MustNotAnswer,
    /// The output buffer cannot hold the headers and the original's IPv6 header and 8 bytes after it.
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

/// Bytes in front of the quoted packet: the IPv6 and ICMPv6 headers.
pub const ERROR_HEADERS_LEN: usize = ipv6::HEADER_LEN + HEADER_LEN;

/// Writes an ICMPv6 error about `offending` (the dropped packet, from its IPv6 header on) into `out`: an IPv6
/// header from `src` to the offending source (hop limit `hop_limit`), the ICMPv6 header, and as much of the
/// original packet as fits in [`MIN_MTU`] bytes in all (RFC 4443 section 2.4(c)) and in `out`, never beyond
/// the original's payload length. Returns the length of the IPv6 packet written.
///
/// Refuses ([`WriteError::MustNotAnswer`]) whatever [`must_not_answer`] refuses for `kind`.
#[inline]
pub fn write_error(
    out: &mut [u8],
    kind: Icmpv6Error,
    offending: &[u8],
    src: Ipv6Addr,
    hop_limit: u8,
) -> Result<usize, WriteError> {
    let orig = Ipv6Packet::new_checked(offending).map_err(WriteError::BadOriginal)?;
    let q = plan(&orig, kind, out.len())?;
    out[ERROR_HEADERS_LEN..ERROR_HEADERS_LEN + q.len].copy_from_slice(&orig.packet()[..q.len]);
    Ok(finish(out, &q, kind, src, hop_limit))
}

/// [`write_error`] without a copy: `buf` holds the offending packet at offset [`ERROR_HEADERS_LEN`] (the caller
/// has prepended that much headroom in front of its IPv6 header), and the headers are written in front of it.
/// Returns the length of the IPv6 packet, from the start of `buf`: the caller trims the rest.
#[inline]
pub fn write_error_in_place(
    buf: &mut [u8],
    kind: Icmpv6Error,
    src: Ipv6Addr,
    hop_limit: u8,
) -> Result<usize, WriteError> {
    let q = {
        let Some(o) = buf.get(ERROR_HEADERS_LEN..) else {
            return Err(WriteError::BadOriginal(Ipv6Error::Truncated));
        };
        let orig = Ipv6Packet::new_checked(o).map_err(WriteError::BadOriginal)?;
        plan(&orig, kind, buf.len())?
    };
    Ok(finish(buf, &q, kind, src, hop_limit))
}

/// What an error message will quote and to whom.
struct Quote {
    len: usize,
    to: [u8; 16],
}

#[inline]
fn plan<T: AsRef<[u8]>>(
    orig: &Ipv6Packet<T>,
    kind: Icmpv6Error,
    out_len: usize,
) -> Result<Quote, WriteError> {
    if refuse(orig, kind) {
        return Err(WriteError::MustNotAnswer);
    }
    let avail = out_len.min(MIN_MTU);
    let orig_len = ipv6::HEADER_LEN + orig.payload_len();
    let min_quote = orig_len.min(ipv6::HEADER_LEN + 8);
    if avail < ERROR_HEADERS_LEN + min_quote {
        return Err(WriteError::TooBig);
    }
    Ok(Quote {
        len: orig_len.min(avail - ERROR_HEADERS_LEN),
        to: orig.src(),
    })
}

/// Writes the headers in front of a quote already at `out[ERROR_HEADERS_LEN..]`; `plan` checked the room.
#[inline]
fn finish(out: &mut [u8], q: &Quote, kind: Icmpv6Error, src: Ipv6Addr, hop_limit: u8) -> usize {
    let end = ERROR_HEADERS_LEN + q.len;
    let (t, c, rest) = kind.header();
    {
        let m = &mut out[ipv6::HEADER_LEN..end];
        m[TYPE] = t;
        m[CODE] = c;
        put16(m, CHECKSUM, 0);
        m[REST..REST + 4].copy_from_slice(&rest);
        let cs = message_checksum(m, &src.octets(), &q.to);
        put16(m, CHECKSUM, cs);
    }
    let _ = ipv6::write_header(
        out,
        src,
        Ipv6Addr::from(q.to),
        IPPROTO_ICMPV6,
        HEADER_LEN + q.len,
        hop_limit,
    );
    end
}

/// True if no ICMPv6 error of `kind` may be sent about `offending` (an IPv6 packet from its header on), by
/// RFC 4443 section 2.4(e): it does not parse; it is an ICMPv6 error message or a Redirect (or an ICMPv6
/// message whose type is not visible: a non-first fragment, or extension headers that run past the packet);
/// its destination is multicast, unless `kind` is Packet Too Big; its source does not identify a single node
/// (unspecified, multicast, and loopback, which never crosses a link).
///
/// Not visible here, so the caller checks: a packet that arrived as a link-layer multicast or broadcast
/// (2.4(e.4), (e.5); Packet Too Big is again excepted).
#[inline]
pub fn must_not_answer(offending: &[u8], kind: Icmpv6Error) -> bool {
    match Ipv6Packet::new_checked(offending) {
        Ok(p) => refuse(&p, kind),
        Err(_) => true,
    }
}

#[inline]
fn refuse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>, kind: Icmpv6Error) -> bool {
    let src = p.src();
    if ipv6::is_unspecified(&src) || ipv6::is_multicast(&src) || ipv6::is_loopback(&src) {
        return true;
    }
    if ipv6::is_multicast(&p.dst()) && !matches!(kind, Icmpv6Error::PacketTooBig { .. }) {
        return true;
    }
    let Some(ul) = p.upper_layer() else {
        return true;
    };
    if ul.protocol == IPPROTO_ICMPV6 {
        if !ul.first_fragment {
            return true;
        }
        return match p.payload().get(ul.offset) {
            Some(&t) => t < 128 || t == TYPE_REDIRECT,
            None => true,
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 40 + payload.len()];
        ipv6::write_header(
            &mut v,
            "2001:db8::1".parse().unwrap(),
            "2001:db8:1::9".parse().unwrap(),
            next,
            payload.len(),
            1,
        )
        .unwrap();
        v[40..].copy_from_slice(payload);
        v
    }

    #[test]
    fn quote_is_capped_at_1280_and_at_the_original() {
        let src: Ipv6Addr = "2001:db8::ff".parse().unwrap();
        let mut out = [0u8; 2000];
        let n = write_error(
            &mut out,
            Icmpv6Error::TimeExceeded,
            &packet(17, &[7; 1500]),
            src,
            64,
        )
        .unwrap();
        assert_eq!(n, 1280);
        let small = packet(17, &[1, 2, 3]);
        let mut padded = small.clone();
        padded.extend_from_slice(&[0xee; 9]);
        let n = write_error(&mut out, Icmpv6Error::NoRoute, &padded, src, 64).unwrap();
        assert_eq!(n, 48 + small.len());
        assert_eq!(&out[48..n], &small[..]);
        assert_eq!(
            write_error(
                &mut out[..95],
                Icmpv6Error::NoRoute,
                &packet(17, &[0; 99]),
                src,
                64
            ),
            Err(WriteError::TooBig)
        );
    }

    #[test]
    fn rules_for_not_answering() {
        let te = Icmpv6Error::TimeExceeded;
        let ptb = Icmpv6Error::PacketTooBig { mtu: 1280 };
        assert!(!must_not_answer(&packet(17, &[0; 8]), te));
        assert!(!must_not_answer(
            &packet(58, &[128, 0, 0, 0, 0, 0, 0, 0]),
            te
        ));
        assert!(must_not_answer(&packet(58, &[1, 0, 0, 0, 0, 0, 0, 0]), te));
        assert!(must_not_answer(
            &packet(58, &[127, 0, 0, 0, 0, 0, 0, 0]),
            te
        ));
        assert!(must_not_answer(
            &packet(58, &[137, 0, 0, 0, 0, 0, 0, 0]),
            te
        ));
        assert!(must_not_answer(&packet(58, &[]), te));
        let mut m = packet(17, &[0; 8]);
        m[24] = 0xff;
        assert!(must_not_answer(&m, te), "multicast destination");
        assert!(!must_not_answer(&m, ptb), "except Packet Too Big");
        let mut s = packet(17, &[0; 8]);
        s[8..24].copy_from_slice(&[0; 16]);
        assert!(must_not_answer(&s, ptb), "unspecified source");
        s[23] = 1;
        assert!(must_not_answer(&s, ptb), "loopback source");
        s[8] = 0xff;
        assert!(must_not_answer(&s, ptb), "multicast source");
        // ICMPv6 error behind a destination options header.
        let mut e = packet(
            ipv6::NH_DEST_OPTS,
            &[58, 0, 1, 4, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0],
        );
        assert!(must_not_answer(&e, te));
        e[48] = 128;
        assert!(!must_not_answer(&e, te));
        assert!(must_not_answer(&[0x60; 10], te));
    }
}
