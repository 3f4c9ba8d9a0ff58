//! In-place IPv4 translation: TCP, UDP and ICMP echo rewritten to a flow's target tuple, and ICMP errors
//! about a translated flow rewritten inside (the quoted header and ports) and out, all with incremental
//! checksum updates (RFC 1624, [`crate::wire::checksum`]).
//!
//! [`parse`] reads what the NAT needs from a packet (from its IPv4 header on) and checks every length it
//! relies on; [`translate`] rewrites the packet to a [`Key4`] target. Both take plain byte slices, never
//! panic and never allocate.
//!
//! - **TCP/UDP.** Addresses (IPv4 header checksum) and ports; the TCP or UDP checksum follows both, the
//!   addresses through the pseudo-header. A UDP checksum of 0 ("none") stays 0; an updated UDP checksum that
//!   comes out as 0 is sent as `0xffff` (RFC 768).
//! - **ICMP echo.** Addresses and the identifier (ICMP has no pseudo-header over IPv4).
//! - **ICMP errors** (destination unreachable, time exceeded, parameter problem). They quote the packet they
//!   are about as it was on the wire, i.e. translated. [`parse`] gives the key that packet's *answer* would
//!   have, so the same table lookup finds the flow and the direction the error travels in; [`translate`] then
//!   turns the quote back into what the endpoint sent (addresses, ports or echo identifier, the quoted IPv4
//!   header checksum, the quoted TCP/UDP/ICMP checksum when the quote holds it), sends the error to that
//!   endpoint, rewrites its source when the error comes from the translated peer itself (a published
//!   endpoint's port unreachable), and updates the outer ICMP checksum for every word it changed. So
//!   traceroute and path MTU discovery work through the NAT.
//!
//! Fragments are refused ([`NatError::Fragment`]): only the first carries the ports.

use super::conntrack::{FlowKey, Key4};
use crate::wire::checksum::{update16, update32};
use crate::wire::icmpv4::{
    TYPE_DEST_UNREACHABLE, TYPE_ECHO_REPLY, TYPE_ECHO_REQUEST, TYPE_PARAMETER_PROBLEM,
    TYPE_TIME_EXCEEDED,
};
use crate::wire::ipv4::{Ipv4Error, Ipv4Packet};
use crate::wire::{be16, put16, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use dataplane::DropReason;

/// What kind of packet (or, for the quote of an ICMP error, of quoted packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo request or reply.
    IcmpEcho,
    /// An ICMP error about a TCP, UDP or echo packet.
    IcmpError,
}

/// Why a packet cannot be translated.
///
/// Drop reasons ([`NatError::drop_reason`]): `Ip(e)` → `e.drop_reason()`; `Fragment` →
/// [`DropReason::Fragment`]; `Truncated` and `Mismatch` → [`DropReason::Truncated`]; `BadTcpHeader`,
/// `BadUdpLength` and `BadQuote` → [`DropReason::Malformed`]; `Unsupported` has none: the packet is valid, the
/// NAT just has nothing to rewrite in it (another protocol, an ICMP type that is neither echo nor error), and
/// the stage decides (pass it untranslated, or drop it under its own reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatError {
    /// The IPv4 header does not parse.
    Ip(Ipv4Error),
    /// An IPv4 fragment.
    Fragment,
    /// The TCP, UDP or ICMP header is cut short.
    Truncated,
    /// TCP data offset below 5 words or past the packet.
    BadTcpHeader,
    /// UDP length below 8 or beyond the IP payload.
    BadUdpLength,
    /// An ICMP error whose quote is not the start of an IPv4 TCP, UDP or echo packet with at least 8 bytes of
    /// its payload (RFC 792): too short, not version 4, a bad header length, a non-first fragment, another
    /// protocol, or an ICMP quote that is not an echo.
    BadQuote,
    /// Not TCP, UDP, ICMP echo or an ICMP error.
    Unsupported,
    /// [`translate`] was given a buffer shorter than the one [`parse`] read.
    Mismatch,
}

impl NatError {
    /// The drop reason a stage counts this error under, if it drops the packet (see the type's docs).
    #[inline]
    pub fn drop_reason(self) -> Option<DropReason> {
        match self {
            NatError::Ip(e) => Some(e.drop_reason()),
            NatError::Fragment => Some(DropReason::Fragment),
            NatError::Truncated | NatError::Mismatch => Some(DropReason::Truncated),
            NatError::BadTcpHeader | NatError::BadUdpLength | NatError::BadQuote => {
                Some(DropReason::Malformed)
            }
            NatError::Unsupported => None,
        }
    }
}

/// What [`parse`] found: the key to look up, and where [`translate`] will write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The flow key to look up: the packet's own, or for an ICMP error the key of an answer to the quoted
    /// packet (its reverse).
    pub key: Key4,
    /// The packet's kind.
    pub kind: Kind,
    /// TCP flags (0 unless TCP).
    pub tcp_flags: u8,
    /// ICMP type (0 unless ICMP; echo reply is 0 too: see [`Parsed::is_echo_request`]).
    icmp_type: u8,
    /// Offset of the transport header (the IPv4 header's length).
    l4: u16,
    /// ICMP errors: the quoted packet's kind, and the offsets of its IPv4 and transport headers.
    inner_kind: Kind,
    inner: u16,
    inner_l4: u16,
    /// End of the IPv4 packet (its total length): nothing at or past it is read or written.
    end: u16,
}

impl Parsed {
    /// Whether this is an ICMP error (the table is looked up but the flow is not tracked with it).
    #[inline]
    pub fn is_icmp_error(&self) -> bool {
        self.kind == Kind::IcmpError
    }

    /// Whether this is an ICMP echo request: the only ICMP message that may open a flow (an echo reply, like
    /// a TCP segment without SYN, belongs to a flow or to nobody).
    #[inline]
    pub fn is_echo_request(&self) -> bool {
        self.kind == Kind::IcmpEcho && self.icmp_type == TYPE_ECHO_REQUEST
    }

    /// For an ICMP error, the kind of the quoted packet.
    #[inline]
    pub fn quoted_kind(&self) -> Option<Kind> {
        self.is_icmp_error().then_some(self.inner_kind)
    }

    /// Length of the IPv4 packet (its total length).
    #[inline]
    pub fn len(&self) -> usize {
        self.end as usize
    }

    /// Always false: a parsed packet has at least its IPv4 header (for clippy's `len` without `is_empty`).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == 0
    }
}

#[inline(always)]
fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline(always)]
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Reads the NAT's view of the IPv4 packet at the start of `ip` (link-layer padding after its total length is
/// ignored). See [`NatError`] for what it refuses.
///
/// The common case (a whole TCP or UDP packet behind a 20-byte header) is read inline at the call site; the
/// rest in a function of its own, so that the hot path carries neither its code nor its register saves.
#[inline(always)]
pub fn parse(ip: &[u8]) -> Result<Parsed, NatError> {
    match parse_plain(ip) {
        Some(p) => Ok(p),
        None => parse_general(ip),
    }
}

/// [`parse`] of whatever [`parse_plain`] does not take.
#[inline(never)]
fn parse_general(ip: &[u8]) -> Result<Parsed, NatError> {
    let p = Ipv4Packet::new_checked(ip).map_err(NatError::Ip)?;
    if p.is_fragment() {
        return Err(NatError::Fragment);
    }
    let (src, dst) = (u32::from_be_bytes(p.src()), u32::from_be_bytes(p.dst()));
    let l4 = p.header_len();
    let end = p.total_len();
    let pl = p.payload();
    let mut out = Parsed {
        key: Key4::default(),
        kind: Kind::Tcp,
        tcp_flags: 0,
        icmp_type: 0,
        l4: l4 as u16,
        inner_kind: Kind::Tcp,
        inner: 0,
        inner_l4: 0,
        end: end as u16,
    };
    match p.protocol() {
        IPPROTO_TCP => {
            if pl.len() < 20 {
                return Err(NatError::Truncated);
            }
            let doff = (pl[12] >> 4) as usize * 4;
            if doff < 20 || doff > pl.len() {
                return Err(NatError::BadTcpHeader);
            }
            out.tcp_flags = pl[13];
            out.key = Key4::new(IPPROTO_TCP, src, be16(pl, 0), dst, be16(pl, 2));
        }
        IPPROTO_UDP => {
            if pl.len() < 8 {
                return Err(NatError::Truncated);
            }
            let ulen = be16(pl, 4) as usize;
            if ulen < 8 || ulen > pl.len() {
                return Err(NatError::BadUdpLength);
            }
            out.kind = Kind::Udp;
            out.key = Key4::new(IPPROTO_UDP, src, be16(pl, 0), dst, be16(pl, 2));
        }
        IPPROTO_ICMP => {
            if pl.len() < 8 {
                return Err(NatError::Truncated);
            }
            out.icmp_type = pl[0];
            match pl[0] {
                TYPE_ECHO_REQUEST | TYPE_ECHO_REPLY => {
                    out.kind = Kind::IcmpEcho;
                    out.key = Key4::icmp(src, dst, be16(pl, 4));
                }
                TYPE_DEST_UNREACHABLE | TYPE_TIME_EXCEEDED | TYPE_PARAMETER_PROBLEM => {
                    let (kind, q, ihl) = parse_quote(&pl[8..])?;
                    out.kind = Kind::IcmpError;
                    out.inner_kind = kind;
                    out.inner = (l4 + 8) as u16;
                    out.inner_l4 = (l4 + 8 + ihl) as u16;
                    out.key = q.reversed();
                }
                _ => return Err(NatError::Unsupported),
            }
        }
        _ => return Err(NatError::Unsupported),
    }
    Ok(out)
}

/// [`parse`] of the common case, with fixed offsets: a whole (unfragmented) UDP or TCP packet behind a 20-byte
/// header, every length valid. `None` for anything else, which [`parse`] then reads the general way (and
/// accepts or refuses exactly as it would have: this only skips the general checks for packets that pass
/// them).
#[inline(always)]
fn parse_plain(ip: &[u8]) -> Option<Parsed> {
    let h = ip.first_chunk::<28>()?;
    let total = be16(h, 2) as usize;
    if h[0] != 0x45 || total < 28 || total > ip.len() || be16(h, 6) & 0x3fff != 0 {
        return None;
    }
    let (src, dst) = (be32(h, 12), be32(h, 16));
    let (sport, dport) = (be16(h, 20), be16(h, 22));
    let mut out = Parsed {
        key: Key4::new(h[9], src, sport, dst, dport),
        kind: Kind::Udp,
        tcp_flags: 0,
        icmp_type: 0,
        l4: 20,
        inner_kind: Kind::Tcp,
        inner: 0,
        inner_l4: 0,
        end: total as u16,
    };
    match h[9] {
        IPPROTO_UDP => {
            let ulen = be16(h, 24) as usize;
            (ulen >= 8 && ulen <= total - 20).then_some(out)
        }
        IPPROTO_TCP if total >= 40 => {
            let t = ip.first_chunk::<40>()?;
            let doff = (t[32] >> 4) as usize * 4;
            if doff < 20 || doff > total - 20 {
                return None;
            }
            out.kind = Kind::Tcp;
            out.tcp_flags = t[33];
            Some(out)
        }
        _ => None,
    }
}

/// The quoted packet of an ICMP error: its kind, key and header length.
#[inline]
fn parse_quote(q: &[u8]) -> Result<(Kind, Key4, usize), NatError> {
    if q.len() < 20 || q[0] >> 4 != 4 {
        return Err(NatError::BadQuote);
    }
    let ihl = (q[0] & 0x0f) as usize * 4;
    if ihl < 20 || q.len() < ihl + 8 {
        return Err(NatError::BadQuote);
    }
    if be16(q, 6) & 0x1fff != 0 {
        return Err(NatError::BadQuote); // a later fragment: no ports
    }
    let (src, dst) = (be32(q, 12), be32(q, 16));
    let t = &q[ihl..];
    match q[9] {
        IPPROTO_TCP => Ok((
            Kind::Tcp,
            Key4::new(IPPROTO_TCP, src, be16(t, 0), dst, be16(t, 2)),
            ihl,
        )),
        IPPROTO_UDP => Ok((
            Kind::Udp,
            Key4::new(IPPROTO_UDP, src, be16(t, 0), dst, be16(t, 2)),
            ihl,
        )),
        IPPROTO_ICMP if t[0] == TYPE_ECHO_REQUEST || t[0] == TYPE_ECHO_REPLY => {
            Ok((Kind::IcmpEcho, Key4::icmp(src, dst, be16(t, 4)), ihl))
        }
        _ => Err(NatError::BadQuote),
    }
}

/// Offset of the checksum within a transport header of `kind`.
#[inline(always)]
fn csum_off(kind: Kind) -> usize {
    match kind {
        Kind::Tcp => 16,
        Kind::Udp => 6,
        Kind::IcmpEcho | Kind::IcmpError => 2,
    }
}

/// A UDP checksum that computes to 0 is sent as `0xffff` (0 means "no checksum").
#[inline(always)]
fn udp_nonzero(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// Rewrites the packet `parse` described in `info` (the same buffer) to the flow's target `to`, as given by
/// [`super::conntrack::Flow::target`] for the direction its key matched:
///
/// - TCP, UDP, ICMP echo: the packet's addresses and ports (identifier) become `to`'s.
/// - ICMP error: the quoted packet becomes the reverse of `to`, the error goes to `to.dst`, and its source
///   becomes `to.src` if it was the quoted packet's destination.
///
/// Only fields that change are written. Fails only with [`NatError::Mismatch`], when `ip` is shorter than
/// what `parse` read.
///
/// Like [`parse`], the common case (TCP or UDP behind a 20-byte header) is inline, the rest out of line.
#[inline(always)]
pub fn translate(ip: &mut [u8], info: &Parsed, to: &Key4) -> Result<(), NatError> {
    let end = info.end as usize;
    if info.l4 == 20 && end <= ip.len() {
        match info.kind {
            Kind::Udp if end >= 28 => {
                if let Some(h) = ip.first_chunk_mut::<28>() {
                    translate_plain::<28, 26>(h, to, true);
                    return Ok(());
                }
            }
            Kind::Tcp if end >= 40 => {
                if let Some(h) = ip.first_chunk_mut::<40>() {
                    translate_plain::<40, 36>(h, to, false);
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    translate_general(ip, info, to)
}

/// [`translate`] of whatever its inline part does not take: ICMP, headers with options, short packets.
#[inline(never)]
fn translate_general(ip: &mut [u8], info: &Parsed, to: &Key4) -> Result<(), NatError> {
    let end = info.end as usize;
    if ip.len() < end || end < info.l4 as usize + 8 {
        return Err(NatError::Mismatch);
    }
    let ip = &mut ip[..end];
    if info.l4 == 20 {
        match info.kind {
            Kind::Udp => {
                if let Some(h) = ip.first_chunk_mut::<28>() {
                    translate_plain::<28, 26>(h, to, true);
                    return Ok(());
                }
            }
            Kind::Tcp => {
                if let Some(h) = ip.first_chunk_mut::<40>() {
                    translate_plain::<40, 36>(h, to, false);
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    if info.kind == Kind::IcmpError {
        return translate_error(ip, info, to);
    }
    let l4 = info.l4 as usize;
    let co = l4 + csum_off(info.kind);
    if co + 2 > end {
        return Err(NatError::Mismatch);
    }
    let mut ipc = be16(ip, 10);
    let l4c0 = be16(ip, co);
    let mut l4c = l4c0;
    // A UDP checksum of 0 means none: it stays 0.
    let fix_l4 = !(info.kind == Kind::Udp && l4c0 == 0);
    let pseudo = info.kind != Kind::IcmpEcho;
    for (off, new) in [(12, to.src), (16, to.dst)] {
        let old = be32(ip, off);
        if old != new {
            put32(ip, off, new);
            ipc = update32(ipc, old, new);
            if pseudo && fix_l4 {
                l4c = update32(l4c, old, new);
            }
        }
    }
    put16(ip, 10, ipc);
    let ports: &[(usize, u16)] = if info.kind == Kind::IcmpEcho {
        &[(l4 + 4, to.sport)]
    } else {
        &[(l4, to.sport), (l4 + 2, to.dport)]
    };
    for &(off, new) in ports {
        let old = be16(ip, off);
        if old != new {
            put16(ip, off, new);
            if fix_l4 {
                l4c = update16(l4c, old, new);
            }
        }
    }
    if l4c != l4c0 {
        l4c = match info.kind {
            Kind::Udp => udp_nonzero(l4c),
            Kind::IcmpEcho if l4c == 0 && icmp_all_zero(&ip[l4..]) => 0xffff,
            _ => l4c,
        };
        put16(ip, co, l4c);
    }
    Ok(())
}

/// [`translate`] of a UDP (`udp`) or TCP packet behind a 20-byte header: `h` is its first `N` bytes, the
/// transport checksum at `CO`. The same result as the general path, in one pass over both checksums: the
/// one's-complement terms `~old + new` of the three 32-bit words that may change (the two addresses, the
/// two ports) are summed once in 64 bits (2^32 and 2^16 are both 1 modulo 0xffff, so 32-bit terms stand
/// for their 16-bit halves), the addresses' part updates the IPv4 header checksum and the whole sum the
/// TCP or UDP checksum (RFC 1624 eqn. 3 over a sum equals applying it word by word). A word that does not
/// change adds `0xffff_ffff`, a one's-complement zero: harmless once something did change, since every
/// partial sum is then above zero, where [`fold64`] keeps the class modulo 0xffff. No loops, no branch
/// per word.
#[inline(always)]
fn translate_plain<const N: usize, const CO: usize>(h: &mut [u8; N], to: &Key4, udp: bool) {
    let (src, dst, ports) = (be32(h, 12), be32(h, 16), be32(h, 20));
    let new_ports = (to.sport as u32) << 16 | to.dport as u32;
    if (src ^ to.src) | (dst ^ to.dst) | (ports ^ new_ports) == 0 {
        return;
    }
    let addrs = (!src) as u64 + to.src as u64 + (!dst) as u64 + to.dst as u64;
    let all = addrs + (!ports) as u64 + new_ports as u64;
    h[12..16].copy_from_slice(&to.src.to_be_bytes());
    h[16..20].copy_from_slice(&to.dst.to_be_bytes());
    h[20..24].copy_from_slice(&new_ports.to_be_bytes());
    let ipc = !fold64(!be16(h, 10) as u64 + addrs);
    h[10..12].copy_from_slice(&ipc.to_be_bytes());
    let l4c0 = be16(h, CO);
    // A UDP checksum of 0 means none: it stays 0.
    if udp && l4c0 == 0 {
        return;
    }
    let mut l4c = !fold64(!l4c0 as u64 + all);
    if udp {
        l4c = udp_nonzero(l4c);
    }
    h[CO..CO + 2].copy_from_slice(&l4c.to_be_bytes());
}

/// Folds a one's-complement sum held in 64 bits (below 2^48) to 16 bits with end-around carries: a sum
/// above zero gives 1..=0xffff, congruent to it modulo 0xffff.
#[inline(always)]
fn fold64(x: u64) -> u16 {
    let s = (x >> 32) + (x & 0xffff_ffff);
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// Whether an ICMP message is zero in every byte but its checksum, the one case where RFC 1624 eqn. 3 gives
/// `0x0000` and only `0xffff` verifies (see [`crate::wire::checksum`]).
#[cold]
fn icmp_all_zero(m: &[u8]) -> bool {
    m.iter()
        .enumerate()
        .all(|(i, &b)| b == 0 || i == 2 || i == 3)
}

fn translate_error(ip: &mut [u8], info: &Parsed, to: &Key4) -> Result<(), NatError> {
    let end = ip.len();
    let (l4, q, ql4) = (
        info.l4 as usize,
        info.inner as usize,
        info.inner_l4 as usize,
    );
    // parse checked these; a Parsed of another buffer must still not make us index out of bounds.
    if q + 20 > end || ql4 + 8 > end || q < l4 + 8 || ql4 < q + 20 {
        return Err(NatError::Mismatch);
    }
    let want = to.reversed(); // what the quoted packet must become
    let oc0 = be16(ip, l4 + 2);
    let mut oc = oc0; // the outer ICMP checksum: covers every quoted byte we change
    let old_qdst = be32(ip, q + 16);

    // Quoted transport checksum, if the quote holds it (a UDP 0 stays 0).
    let qco = ql4 + csum_off(info.inner_kind);
    let has_qc = qco + 2 <= end;
    let qc0 = if has_qc { be16(ip, qco) } else { 0 };
    let fix_qc = has_qc && !(info.inner_kind == Kind::Udp && qc0 == 0);
    let mut qc = qc0;
    let pseudo = info.inner_kind != Kind::IcmpEcho;

    // Quoted addresses: the quoted IPv4 header checksum, the quoted pseudo-header, the outer ICMP sum.
    let qhc0 = be16(ip, q + 10);
    let mut qhc = qhc0;
    for (off, new) in [(q + 12, want.src), (q + 16, want.dst)] {
        let old = be32(ip, off);
        if old != new {
            put32(ip, off, new);
            qhc = update32(qhc, old, new);
            oc = update32(oc, old, new);
            if pseudo && fix_qc {
                qc = update32(qc, old, new);
            }
        }
    }
    if qhc != qhc0 {
        put16(ip, q + 10, qhc);
        oc = update16(oc, qhc0, qhc);
    }
    // Quoted ports or echo identifier.
    let ports: &[(usize, u16)] = if info.inner_kind == Kind::IcmpEcho {
        &[(ql4 + 4, want.sport)]
    } else {
        &[(ql4, want.sport), (ql4 + 2, want.dport)]
    };
    for &(off, new) in ports {
        let old = be16(ip, off);
        if old != new {
            put16(ip, off, new);
            oc = update16(oc, old, new);
            if fix_qc {
                qc = update16(qc, old, new);
            }
        }
    }
    if qc != qc0 {
        if info.inner_kind == Kind::Udp {
            qc = udp_nonzero(qc);
        }
        put16(ip, qco, qc);
        oc = update16(oc, qc0, qc);
    }
    if oc != oc0 {
        put16(ip, l4 + 2, oc);
    }

    // Outer header: the error goes to the endpoint; if it came from the translated peer, from its other face.
    let mut ipc = be16(ip, 10);
    let old_dst = be32(ip, 16);
    if old_dst != to.dst {
        put32(ip, 16, to.dst);
        ipc = update32(ipc, old_dst, to.dst);
    }
    let old_src = be32(ip, 12);
    if old_src == old_qdst && old_src != want.dst {
        put32(ip, 12, want.dst);
        ipc = update32(ipc, old_src, want.dst);
    }
    put16(ip, 10, ipc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use crate::wire::ipv4::write_header;
    use std::net::Ipv4Addr;

    fn udp(csum: bool) -> Vec<u8> {
        let mut v = vec![0u8; 20 + 8 + 4];
        write_header(
            &mut v,
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(8, 8, 8, 8),
            IPPROTO_UDP,
            12,
            64,
            1,
        )
        .unwrap();
        put16(&mut v, 20, 5000);
        put16(&mut v, 22, 53);
        put16(&mut v, 24, 12);
        v[28..].copy_from_slice(b"abcd");
        if csum {
            let ps = checksum::pseudo_v4([10, 0, 0, 2], [8, 8, 8, 8], IPPROTO_UDP, 12);
            let c = !checksum::fold(checksum::sum(&v[20..], ps));
            put16(&mut v, 26, udp_nonzero(c));
        }
        v
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut v = udp(false);
        let info = parse(&v).unwrap();
        let to = Key4::new(IPPROTO_UDP, 0xc000_0201, 1024, info.key.dst, 53);
        translate(&mut v, &info, &to).unwrap();
        assert_eq!(be16(&v, 26), 0);
        assert_eq!(be16(&v, 20), 1024);
        assert!(Ipv4Packet::new_checked(&v[..]).unwrap().verify_checksum());
    }

    #[test]
    fn udp_checksum_follows_addresses_and_ports() {
        let mut v = udp(true);
        let info = parse(&v).unwrap();
        let to = Key4::new(IPPROTO_UDP, 0xc000_0201, 1024, info.key.dst, 53);
        translate(&mut v, &info, &to).unwrap();
        let ps = checksum::pseudo_v4([192, 0, 2, 1], [8, 8, 8, 8], IPPROTO_UDP, 12);
        assert_eq!(checksum::fold(checksum::sum(&v[20..], ps)), 0xffff);
    }

    #[test]
    fn mismatched_buffer_is_an_error_not_a_panic() {
        let v = udp(true);
        let info = parse(&v).unwrap();
        let mut short = v[..25].to_vec();
        assert_eq!(
            translate(&mut short, &info, &info.key),
            Err(NatError::Mismatch)
        );
    }
}
