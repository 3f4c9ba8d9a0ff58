//! Neighbor Solicitation and Advertisement (RFC 4861 sections 4.3, 4.4, 7.1): a view over the ICMPv6 message
//! that validates the options, and builders that write whole Ethernet + IPv6 + ICMPv6 frames.

use super::icmpv6::{self, Icmpv6Packet};
use super::ipv6::{self, Ipv6Error, Ipv6Packet};
use super::{be16, put16, write_eth, Mac, TooBig, ETHERTYPE_IPV6, ETH_HEADER_LEN, IPPROTO_ICMPV6};
use dataplane::DropReason;
use std::net::Ipv6Addr;

/// Neighbor Solicitation.
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor Advertisement.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// The hop limit every ND message is sent and must be received with.
pub const HOP_LIMIT: u8 = 255;
/// Length of an NS or NA message without options.
pub const MESSAGE_LEN: usize = 24;
/// Option type: source link-layer address.
pub const OPT_SOURCE_LL_ADDR: u8 = 1;
/// Option type: target link-layer address.
pub const OPT_TARGET_LL_ADDR: u8 = 2;
/// Length of a link-layer address option for Ethernet.
pub const LL_OPT_LEN: usize = 8;
/// Length of a frame written by the builders with a link-layer address option.
pub const FRAME_LEN: usize = ETH_HEADER_LEN + ipv6::HEADER_LEN + MESSAGE_LEN + LL_OPT_LEN;

/// NA flag: the sender is a router.
pub const FLAG_ROUTER: u8 = 0x80;
/// NA flag: sent in response to a solicitation.
pub const FLAG_SOLICITED: u8 = 0x40;
/// NA flag: override an existing cache entry.
pub const FLAG_OVERRIDE: u8 = 0x20;

const TYPE: usize = 0;
const CODE: usize = 1;
const CHECKSUM: usize = 2;
const FLAGS: usize = 4;
const TARGET: usize = 8;

/// Why a message is not a valid Neighbor Solicitation or Advertisement.
///
/// Drop reasons: `Ip(e)` → `e.drop_reason()`; `Truncated` → [`DropReason::Truncated`]; `BadCode`,
/// `BadHopLimit`, `BadOption` and `BadAddress` → [`DropReason::Malformed`]; `BadChecksum` →
/// [`DropReason::BadChecksum`]; `NotNeighbor` is not a fault of the packet (another ICMPv6 message: it goes to
/// the local stack, counted as [`DropReason::NoLocalStack`] where there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdiscError {
    /// The IPv6 header does not parse ([`NdiscPacket::parse`] only).
    Ip(Ipv6Error),
    /// Shorter than the 24-byte message.
    Truncated,
    /// Not an NS or NA (or, from [`NdiscPacket::parse`], not ICMPv6 right after the IPv6 header).
    NotNeighbor,
    /// ICMP code not 0.
    BadCode,
    /// The IPv6 hop limit is not 255: the message came from off-link.
    BadHopLimit,
    /// An option of length 0, or one that runs past the end of the message.
    BadOption,
    /// A multicast target, or addresses the message type forbids (see [`NdiscPacket::check_addresses`]).
    BadAddress,
    /// The ICMPv6 checksum does not verify ([`NdiscPacket::parse`] only).
    BadChecksum,
}

impl NdiscError {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        match self {
            NdiscError::Ip(e) => e.drop_reason(),
            NdiscError::Truncated => DropReason::Truncated,
            NdiscError::BadCode
            | NdiscError::BadHopLimit
            | NdiscError::BadOption
            | NdiscError::BadAddress => DropReason::Malformed,
            NdiscError::BadChecksum => DropReason::BadChecksum,
            NdiscError::NotNeighbor => DropReason::NoLocalStack,
        }
    }
}

/// One ND option: its type and its bytes after the type and length bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOption<'a> {
    /// Option type.
    pub kind: u8,
    /// The option's bytes after the type and length (length × 8 − 2 bytes).
    pub data: &'a [u8],
}

/// Iterator over the options of a checked message.
#[derive(Debug, Clone)]
pub struct NdOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = NdOption<'a>;

    #[inline]
    fn next(&mut self) -> Option<NdOption<'a>> {
        let (&kind, &len) = (self.rest.first()?, self.rest.get(1)?);
        let n = len as usize * 8;
        if n == 0 || n > self.rest.len() {
            // Cannot happen after new_checked; stop rather than loop or panic.
            self.rest = &[];
            return None;
        }
        let data = &self.rest[2..n];
        self.rest = &self.rest[n..];
        Some(NdOption { kind, data })
    }
}

/// Checks the option area: every option has a non-zero length and ends within the message.
#[inline]
fn check_options(mut o: &[u8]) -> Result<(), NdiscError> {
    while !o.is_empty() {
        let Some(&len) = o.get(1) else {
            return Err(NdiscError::BadOption);
        };
        let n = len as usize * 8;
        if n == 0 || n > o.len() {
            return Err(NdiscError::BadOption);
        }
        o = &o[n..];
    }
    Ok(())
}

/// A read (and, over `&mut [u8]`, write) view of a Neighbor Solicitation or Advertisement: the ICMPv6 message
/// from the type byte on, options included.
#[derive(Debug, Clone, Copy)]
pub struct NdiscPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdiscPacket<T> {
    /// Wraps the ICMPv6 message `buffer` of an IPv6 packet received with `hop_limit`, after checking (RFC 4861
    /// sections 7.1.1, 7.1.2) the length, the type (NS or NA), the code, the hop limit (255), that the target is
    /// not multicast, and every option's length. The checksum is [`Icmpv6Packet::verify_checksum`]'s and the
    /// address rules are [`Self::check_addresses`]'s ([`NdiscPacket::parse`] does all).
    #[inline]
    pub fn new_checked(buffer: T, hop_limit: u8) -> Result<Self, NdiscError> {
        let b = buffer.as_ref();
        if b.len() < MESSAGE_LEN {
            return Err(NdiscError::Truncated);
        }
        if b[TYPE] != TYPE_NEIGHBOR_SOLICIT && b[TYPE] != TYPE_NEIGHBOR_ADVERT {
            return Err(NdiscError::NotNeighbor);
        }
        if b[CODE] != 0 {
            return Err(NdiscError::BadCode);
        }
        if hop_limit != HOP_LIMIT {
            return Err(NdiscError::BadHopLimit);
        }
        if b[TARGET] == 0xff {
            return Err(NdiscError::BadAddress);
        }
        check_options(&b[MESSAGE_LEN..])?;
        Ok(NdiscPacket { buffer })
    }

    /// Message type: [`TYPE_NEIGHBOR_SOLICIT`] or [`TYPE_NEIGHBOR_ADVERT`].
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[TYPE]
    }

    /// Code (always 0 in a checked view).
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[CODE]
    }

    /// The ICMPv6 checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), CHECKSUM)
    }

    /// True for a Neighbor Solicitation.
    #[inline]
    pub fn is_solicitation(&self) -> bool {
        self.msg_type() == TYPE_NEIGHBOR_SOLICIT
    }

    /// True for a Neighbor Advertisement.
    #[inline]
    pub fn is_advertisement(&self) -> bool {
        self.msg_type() == TYPE_NEIGHBOR_ADVERT
    }

    /// NA router flag (false in an NS, whose byte is reserved).
    #[inline]
    pub fn router(&self) -> bool {
        self.is_advertisement() && self.buffer.as_ref()[FLAGS] & FLAG_ROUTER != 0
    }

    /// NA solicited flag.
    #[inline]
    pub fn solicited(&self) -> bool {
        self.is_advertisement() && self.buffer.as_ref()[FLAGS] & FLAG_SOLICITED != 0
    }

    /// NA override flag.
    #[inline]
    pub fn override_flag(&self) -> bool {
        self.is_advertisement() && self.buffer.as_ref()[FLAGS] & FLAG_OVERRIDE != 0
    }

    /// Target address.
    #[inline]
    pub fn target(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[TARGET..TARGET + 16]);
        a
    }

    /// Target address.
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.target())
    }

    /// The option bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MESSAGE_LEN..]
    }

    /// The options, one by one.
    #[inline]
    pub fn option_iter(&self) -> NdOptions<'_> {
        NdOptions {
            rest: self.options(),
        }
    }

    #[inline]
    fn ll_addr(&self, kind: u8) -> Option<Mac> {
        let o = self.option_iter().find(|o| o.kind == kind)?;
        let d = o.data;
        // A valid option is at least 8 bytes, so 6 bytes of data.
        Some([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    /// The source link-layer address option (the first, if several).
    #[inline]
    pub fn source_ll_addr(&self) -> Option<Mac> {
        self.ll_addr(OPT_SOURCE_LL_ADDR)
    }

    /// The target link-layer address option (the first, if several).
    #[inline]
    pub fn target_ll_addr(&self) -> Option<Mac> {
        self.ll_addr(OPT_TARGET_LL_ADDR)
    }

    /// The rules that need the IPv6 addresses (RFC 4861 sections 7.1.1, 7.1.2): an NS from the unspecified
    /// address (duplicate address detection) must go to a solicited-node multicast address and carry no source
    /// link-layer address option; an NA to a multicast address must not have the solicited flag.
    #[inline]
    pub fn check_addresses(&self, src: &[u8; 16], dst: &[u8; 16]) -> Result<(), NdiscError> {
        if self.is_solicitation() && ipv6::is_unspecified(src) {
            let sn = dst[..13] == ipv6::solicited_node(&[0; 16])[..13];
            if !sn || self.source_ll_addr().is_some() {
                return Err(NdiscError::BadAddress);
            }
        }
        if self.solicited() && ipv6::is_multicast(dst) {
            return Err(NdiscError::BadAddress);
        }
        Ok(())
    }
}

impl<'a> NdiscPacket<&'a [u8]> {
    /// Parses and validates an NS or NA from the IPv6 packet `ip` (from its header on): the IPv6 header, the
    /// next header (ICMPv6, no extension headers), [`Self::new_checked`] with the packet's hop limit, the
    /// ICMPv6 checksum, and [`Self::check_addresses`].
    #[inline]
    pub fn parse(ip: &'a [u8]) -> Result<(Ipv6Packet<&'a [u8]>, Self), NdiscError> {
        let p = Ipv6Packet::new_checked(ip).map_err(NdiscError::Ip)?;
        if p.next_header() != IPPROTO_ICMPV6 {
            return Err(NdiscError::NotNeighbor);
        }
        let payload = &ip[ipv6::HEADER_LEN..ipv6::HEADER_LEN + p.payload_len()];
        let nd = NdiscPacket::new_checked(payload, p.hop_limit())?;
        let (src, dst) = (p.src(), p.dst());
        match Icmpv6Packet::new_checked(payload) {
            Ok(m) if m.verify_checksum(&src, &dst) => {}
            _ => return Err(NdiscError::BadChecksum),
        }
        nd.check_addresses(&src, &dst)?;
        Ok((p, nd))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdiscPacket<T> {
    /// Sets the flags byte of an NA ([`FLAG_ROUTER`], [`FLAG_SOLICITED`], [`FLAG_OVERRIDE`]); checksum not
    /// touched.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[FLAGS] = flags;
    }

    /// Sets the target address; checksum not touched.
    #[inline]
    pub fn set_target(&mut self, target: Ipv6Addr) {
        self.buffer.as_mut()[TARGET..TARGET + 16].copy_from_slice(&target.octets());
    }
}

/// The flags of a Neighbor Advertisement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NaFlags {
    /// R: the sender is a router.
    pub router: bool,
    /// S: an answer to a solicitation (never with a multicast destination).
    pub solicited: bool,
    /// O: override the receiver's cache entry.
    pub override_: bool,
}

impl NaFlags {
    /// The flags byte.
    #[inline]
    pub fn byte(self) -> u8 {
        (if self.router { FLAG_ROUTER } else { 0 })
            | (if self.solicited { FLAG_SOLICITED } else { 0 })
            | (if self.override_ { FLAG_OVERRIDE } else { 0 })
    }
}

/// What one whole ND frame says.
struct Frame {
    src_mac: Mac,
    dst_mac: Mac,
    src_ip: [u8; 16],
    dst_ip: [u8; 16],
    msg_type: u8,
    flags: u8,
    target: [u8; 16],
    /// Link-layer address option: its type (our MAC is its value).
    ll_opt: Option<u8>,
}

#[inline]
fn write_frame(buf: &mut [u8], f: &Frame) -> Result<usize, TooBig> {
    let msg_len = MESSAGE_LEN + if f.ll_opt.is_some() { LL_OPT_LEN } else { 0 };
    let ip_off = ETH_HEADER_LEN;
    let m_off = ip_off + ipv6::HEADER_LEN;
    let len = m_off + msg_len;
    if buf.len() < len {
        return Err(TooBig);
    }
    write_eth(buf, f.dst_mac, f.src_mac, ETHERTYPE_IPV6);
    ipv6::write_header(
        &mut buf[ip_off..],
        Ipv6Addr::from(f.src_ip),
        Ipv6Addr::from(f.dst_ip),
        IPPROTO_ICMPV6,
        msg_len,
        HOP_LIMIT,
    )?;
    let m = &mut buf[m_off..len];
    m[TYPE] = f.msg_type;
    m[CODE] = 0;
    put16(m, CHECKSUM, 0);
    m[FLAGS..FLAGS + 4].copy_from_slice(&[f.flags, 0, 0, 0]);
    m[TARGET..TARGET + 16].copy_from_slice(&f.target);
    if let Some(kind) = f.ll_opt {
        let o = &mut m[MESSAGE_LEN..];
        o[0] = kind;
        o[1] = 1;
        o[2..8].copy_from_slice(&f.src_mac);
    }
    let c = icmpv6::message_checksum(m, &f.src_ip, &f.dst_ip);
    put16(m, CHECKSUM, c);
    Ok(len)
}

/// Writes a multicast Neighbor Solicitation for `target` from `src_mac`/`src_ip`: to the target's
/// solicited-node address and its 33:33 MAC, with a source link-layer address option unless `src_ip` is
/// unspecified (duplicate address detection, which must carry none). Returns the frame length ([`FRAME_LEN`],
/// or 8 bytes less without the option).
#[inline]
pub fn write_solicitation(
    buf: &mut [u8],
    src_mac: Mac,
    src_ip: Ipv6Addr,
    target: Ipv6Addr,
) -> Result<usize, TooBig> {
    let t = target.octets();
    let sn = ipv6::solicited_node(&t);
    let src = src_ip.octets();
    write_frame(
        buf,
        &Frame {
            src_mac,
            dst_mac: ipv6::multicast_mac(&sn),
            src_ip: src,
            dst_ip: sn,
            msg_type: TYPE_NEIGHBOR_SOLICIT,
            flags: 0,
            target: t,
            ll_opt: (!ipv6::is_unspecified(&src)).then_some(OPT_SOURCE_LL_ADDR),
        },
    )
}

/// Writes a unicast Neighbor Solicitation for `target` to `dst_mac` (neighbour unreachability detection: the
/// IPv6 destination is the target itself), with a source link-layer address option. Returns [`FRAME_LEN`].
#[inline]
pub fn write_unicast_solicitation(
    buf: &mut [u8],
    src_mac: Mac,
    src_ip: Ipv6Addr,
    dst_mac: Mac,
    target: Ipv6Addr,
) -> Result<usize, TooBig> {
    write_frame(
        buf,
        &Frame {
            src_mac,
            dst_mac,
            src_ip: src_ip.octets(),
            dst_ip: target.octets(),
            msg_type: TYPE_NEIGHBOR_SOLICIT,
            flags: 0,
            target: target.octets(),
            ll_opt: Some(OPT_SOURCE_LL_ADDR),
        },
    )
}

/// Writes a Neighbor Advertisement for `target` at `src_mac` (target link-layer address option), from
/// `src_ip` to `dst_mac`/`dst_ip`, with `flags`. Returns [`FRAME_LEN`].
///
/// The answer to a solicitation from the unspecified address goes to all nodes with S clear
/// ([`write_unsolicited_advertisement`]; RFC 4861 section 7.2.4).
#[inline]
pub fn write_advertisement(
    buf: &mut [u8],
    src_mac: Mac,
    src_ip: Ipv6Addr,
    dst_mac: Mac,
    dst_ip: Ipv6Addr,
    target: Ipv6Addr,
    flags: NaFlags,
) -> Result<usize, TooBig> {
    write_frame(
        buf,
        &Frame {
            src_mac,
            dst_mac,
            src_ip: src_ip.octets(),
            dst_ip: dst_ip.octets(),
            msg_type: TYPE_NEIGHBOR_ADVERT,
            flags: flags.byte(),
            target: target.octets(),
            ll_opt: Some(OPT_TARGET_LL_ADDR),
        },
    )
}

/// Writes an unsolicited Neighbor Advertisement for `target` at `src_mac` to all nodes (ff02::1,
/// 33:33:00:00:00:01) with the router and override flags of `flags`; the solicited flag is always clear.
/// Returns [`FRAME_LEN`].
#[inline]
pub fn write_unsolicited_advertisement(
    buf: &mut [u8],
    src_mac: Mac,
    src_ip: Ipv6Addr,
    target: Ipv6Addr,
    flags: NaFlags,
) -> Result<usize, TooBig> {
    let flags = NaFlags {
        solicited: false,
        ..flags
    };
    write_advertisement(
        buf,
        src_mac,
        src_ip,
        ipv6::multicast_mac(&ipv6::ALL_NODES),
        Ipv6Addr::from(ipv6::ALL_NODES),
        target,
        flags,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [2, 0, 0, 0, 0, 7];

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn solicitation_round_trip() {
        let mut f = [0u8; 100];
        let n = write_solicitation(&mut f, MAC, ip("fe80::7"), ip("fe80::1:2:3")).unwrap();
        assert_eq!(n, FRAME_LEN);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0x02, 0x00, 0x03]);
        let (p, nd) = NdiscPacket::parse(&f[14..n]).unwrap();
        assert_eq!(p.dst_addr(), ip("ff02::1:ff02:3"));
        assert!(nd.is_solicitation() && !nd.router() && !nd.solicited());
        assert_eq!(nd.target_addr(), ip("fe80::1:2:3"));
        assert_eq!(nd.source_ll_addr(), Some(MAC));
        assert_eq!(nd.target_ll_addr(), None);
        // DAD: no option.
        let n = write_solicitation(&mut f, MAC, Ipv6Addr::UNSPECIFIED, ip("fe80::1")).unwrap();
        assert_eq!(n, FRAME_LEN - 8);
        let (_, nd) = NdiscPacket::parse(&f[14..n]).unwrap();
        assert_eq!(nd.source_ll_addr(), None);
    }

    #[test]
    fn advertisement_round_trip() {
        let mut f = [0u8; 86];
        let flags = NaFlags {
            router: true,
            solicited: true,
            override_: true,
        };
        let n = write_advertisement(
            &mut f,
            MAC,
            ip("fe80::7"),
            [2, 0, 0, 0, 0, 9],
            ip("fe80::9"),
            ip("fe80::7"),
            flags,
        )
        .unwrap();
        let (_, nd) = NdiscPacket::parse(&f[14..n]).unwrap();
        assert!(nd.is_advertisement() && nd.router() && nd.solicited() && nd.override_flag());
        assert_eq!(nd.target_ll_addr(), Some(MAC));
        let n = write_unsolicited_advertisement(&mut f, MAC, ip("fe80::7"), ip("fe80::7"), flags)
            .unwrap();
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let (p, nd) = NdiscPacket::parse(&f[14..n]).unwrap();
        assert_eq!(p.dst(), ipv6::ALL_NODES);
        assert!(!nd.solicited() && nd.router() && nd.override_flag());
        assert_eq!(
            write_advertisement(
                &mut f[..85],
                MAC,
                ip("::1"),
                MAC,
                ip("::1"),
                ip("::1"),
                flags
            ),
            Err(TooBig)
        );
    }

    #[test]
    fn hostile_messages() {
        let mut f = [0u8; 86];
        let n = write_solicitation(&mut f, MAC, ip("fe80::7"), ip("fe80::1")).unwrap();
        let m = f[54..n].to_vec();
        assert!(NdiscPacket::new_checked(&m[..], 255).is_ok());
        assert_eq!(
            NdiscPacket::new_checked(&m[..], 64).err(),
            Some(NdiscError::BadHopLimit)
        );
        assert_eq!(
            NdiscPacket::new_checked(&m[..23], 255).err(),
            Some(NdiscError::Truncated)
        );
        let mut z = m.clone();
        z[25] = 0; // zero-length option
        assert_eq!(
            NdiscPacket::new_checked(&z[..], 255).err(),
            Some(NdiscError::BadOption)
        );
        let mut long = m.clone();
        long[25] = 2; // 16 bytes, 8 present
        assert_eq!(
            NdiscPacket::new_checked(&long[..], 255).err(),
            Some(NdiscError::BadOption)
        );
        let mut one = m[..25].to_vec(); // a lone type byte
        one[24] = 1;
        assert_eq!(
            NdiscPacket::new_checked(&one[..], 255).err(),
            Some(NdiscError::BadOption)
        );
        let mut code = m.clone();
        code[1] = 1;
        assert_eq!(
            NdiscPacket::new_checked(&code[..], 255).err(),
            Some(NdiscError::BadCode)
        );
        let mut t = m.clone();
        t[0] = 133;
        assert_eq!(
            NdiscPacket::new_checked(&t[..], 255).err(),
            Some(NdiscError::NotNeighbor)
        );
        let mut mc = m.clone();
        mc[8] = 0xff;
        assert_eq!(
            NdiscPacket::new_checked(&mc[..], 255).err(),
            Some(NdiscError::BadAddress)
        );
        // Checksum and addresses through parse.
        let mut bad = f;
        bad[60] ^= 1;
        assert_eq!(
            NdiscPacket::parse(&bad[14..n]).err(),
            Some(NdiscError::BadChecksum)
        );
        let nd = NdiscPacket::new_checked(&m[..], 255).unwrap();
        let sn = ipv6::solicited_node(&ip("fe80::1").octets());
        assert_eq!(
            nd.check_addresses(&[0; 16], &sn),
            Err(NdiscError::BadAddress),
            "DAD with SLLA"
        );
    }
}
