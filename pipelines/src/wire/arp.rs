//! ARP for Ethernet and IPv4 (RFC 826): a packet view, builders that write whole Ethernet frames (padded to the
//! 60-byte minimum), and the reply made in place.

use super::{
    be16, put16, write_eth, Mac, TooBig, BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4,
    ETH_HEADER_LEN, ETH_MIN_FRAME_LEN,
};
use dataplane::DropReason;
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Length of a frame written by the builders (the Ethernet minimum, without FCS).
pub const FRAME_LEN: usize = ETH_MIN_FRAME_LEN;
/// Hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Operation: request.
pub const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub const OP_REPLY: u16 = 2;

const HTYPE: usize = 0;
const PTYPE: usize = 2;
const HLEN: usize = 4;
const PLEN: usize = 5;
const OP: usize = 6;
const SHA: usize = 8;
const SPA: usize = 14;
const THA: usize = 18;
const TPA: usize = 24;

/// Why a buffer is not an ARP packet the views can read, or [`reply_in_place`] did not answer.
///
/// Drop reasons: `Truncated` → [`DropReason::Truncated`]; `WrongSizes` and `BadOp` → [`DropReason::Malformed`];
/// `NotRequest` is not a fault of the packet (a reply feeds the neighbour cache, it is not answered): it is
/// counted, if at all, as [`DropReason::NoLocalStack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpError {
    /// Fewer than 28 bytes (or, for a frame, 14 + 28).
    Truncated,
    /// Not Ethernet/IPv4: hardware type not 1, protocol type not 0x0800, or address lengths not 6 and 4.
    WrongSizes,
    /// Operation neither request (1) nor reply (2).
    BadOp,
    /// A reply, where [`reply_in_place`] wants a request.
    NotRequest,
}

impl ArpError {
    /// The drop reason a stage counts this error under.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        match self {
            ArpError::Truncated => DropReason::Truncated,
            ArpError::WrongSizes | ArpError::BadOp => DropReason::Malformed,
            ArpError::NotRequest => DropReason::NoLocalStack,
        }
    }
}

/// A read (and, over `&mut [u8]`, write) view of an Ethernet/IPv4 ARP packet: the Ethernet payload.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` after checking its length, the hardware and protocol types and sizes, and the operation.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ArpError> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(ArpError::Truncated);
        }
        if be16(b, HTYPE) != HTYPE_ETHERNET
            || be16(b, PTYPE) != ETHERTYPE_IPV4
            || b[HLEN] != 6
            || b[PLEN] != 4
        {
            return Err(ArpError::WrongSizes);
        }
        let op = be16(b, OP);
        if op != OP_REQUEST && op != OP_REPLY {
            return Err(ArpError::BadOp);
        }
        Ok(ArpPacket { buffer })
    }

    /// Operation: [`OP_REQUEST`] or [`OP_REPLY`].
    #[inline]
    pub fn op(&self) -> u16 {
        be16(self.buffer.as_ref(), OP)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> Mac {
        mac_at(self.buffer.as_ref(), SHA)
    }

    /// Sender protocol address.
    #[inline]
    pub fn spa(&self) -> [u8; 4] {
        ip_at(self.buffer.as_ref(), SPA)
    }

    /// Target hardware address.
    #[inline]
    pub fn tha(&self) -> Mac {
        mac_at(self.buffer.as_ref(), THA)
    }

    /// Target protocol address.
    #[inline]
    pub fn tpa(&self) -> [u8; 4] {
        ip_at(self.buffer.as_ref(), TPA)
    }

    /// Sender protocol address.
    #[inline]
    pub fn spa_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.spa())
    }

    /// Target protocol address.
    #[inline]
    pub fn tpa_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.tpa())
    }

    /// True for a gratuitous ARP (an announcement): sender and target protocol addresses are equal.
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.spa() == self.tpa()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the operation.
    #[inline]
    pub fn set_op(&mut self, op: u16) {
        put16(self.buffer.as_mut(), OP, op);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sha(&mut self, mac: Mac) {
        self.buffer.as_mut()[SHA..SHA + 6].copy_from_slice(&mac);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_spa(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[SPA..SPA + 4].copy_from_slice(&ip.octets());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_tha(&mut self, mac: Mac) {
        self.buffer.as_mut()[THA..THA + 6].copy_from_slice(&mac);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_tpa(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[TPA..TPA + 4].copy_from_slice(&ip.octets());
    }
}

#[inline]
fn mac_at(b: &[u8], off: usize) -> Mac {
    [
        b[off],
        b[off + 1],
        b[off + 2],
        b[off + 3],
        b[off + 4],
        b[off + 5],
    ]
}

#[inline]
fn ip_at(b: &[u8], off: usize) -> [u8; 4] {
    [b[off], b[off + 1], b[off + 2], b[off + 3]]
}

/// Writes a whole frame: Ethernet header, ARP packet, zero padding to 60 bytes.
#[inline]
fn write_frame(
    buf: &mut [u8],
    eth_dst: Mac,
    op: u16,
    sha: Mac,
    spa: Ipv4Addr,
    tha: Mac,
    tpa: Ipv4Addr,
) -> Result<usize, TooBig> {
    if buf.len() < FRAME_LEN {
        return Err(TooBig);
    }
    write_eth(buf, eth_dst, sha, ETHERTYPE_ARP);
    let a = &mut buf[ETH_HEADER_LEN..FRAME_LEN];
    put16(a, HTYPE, HTYPE_ETHERNET);
    put16(a, PTYPE, ETHERTYPE_IPV4);
    a[HLEN] = 6;
    a[PLEN] = 4;
    put16(a, OP, op);
    a[SHA..SHA + 6].copy_from_slice(&sha);
    a[SPA..SPA + 4].copy_from_slice(&spa.octets());
    a[THA..THA + 6].copy_from_slice(&tha);
    a[TPA..TPA + 4].copy_from_slice(&tpa.octets());
    a[PACKET_LEN..].fill(0);
    Ok(FRAME_LEN)
}

/// Writes a broadcast request "who has `target_ip`? tell `src_ip`" (target hardware address zero). Returns the
/// frame length (60).
#[inline]
pub fn write_request(
    buf: &mut [u8],
    src_mac: Mac,
    src_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Result<usize, TooBig> {
    write_frame(
        buf,
        BROADCAST_MAC,
        OP_REQUEST,
        src_mac,
        src_ip,
        [0; 6],
        target_ip,
    )
}

/// Writes a unicast reply "`src_ip` is at `src_mac`" to `dst_mac`/`dst_ip`. Returns the frame length (60).
#[inline]
pub fn write_reply(
    buf: &mut [u8],
    src_mac: Mac,
    src_ip: Ipv4Addr,
    dst_mac: Mac,
    dst_ip: Ipv4Addr,
) -> Result<usize, TooBig> {
    write_frame(buf, dst_mac, OP_REPLY, src_mac, src_ip, dst_mac, dst_ip)
}

/// Writes a gratuitous ARP announcing `ip` at `mac`: a broadcast request whose sender and target protocol
/// addresses are both `ip` and whose target hardware address is zero (RFC 5227 section 2.3). Returns the frame
/// length (60).
#[inline]
pub fn write_gratuitous(buf: &mut [u8], mac: Mac, ip: Ipv4Addr) -> Result<usize, TooBig> {
    write_frame(buf, BROADCAST_MAC, OP_REQUEST, mac, ip, [0; 6], ip)
}

/// Turns the ARP request in `frame` (an untagged Ethernet frame whose EtherType the caller has dispatched on)
/// into its reply in place: Ethernet destination the requester's MAC and source `our_mac`; operation 2; the
/// sender pair becomes the target pair, and the sender is `our_mac` at the address that was asked for. The
/// caller has checked that the target protocol address ([`ArpPacket::tpa`]) is one of ours. The frame keeps
/// its length.
#[inline]
pub fn reply_in_place(frame: &mut [u8], our_mac: Mac) -> Result<(), ArpError> {
    let Some(a) = frame.get_mut(ETH_HEADER_LEN..) else {
        return Err(ArpError::Truncated);
    };
    let mut p = ArpPacket::new_checked(a)?;
    if p.op() != OP_REQUEST {
        return Err(ArpError::NotRequest);
    }
    let (sha, spa, tpa) = (p.sha(), p.spa_addr(), p.tpa_addr());
    p.set_op(OP_REPLY);
    p.set_tha(sha);
    p.set_tpa(spa);
    p.set_sha(our_mac);
    p.set_spa(tpa);
    frame[0..6].copy_from_slice(&sha);
    frame[6..12].copy_from_slice(&our_mac);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Mac = [2, 0, 0, 0, 0, 1];
    const THEM: Mac = [2, 0, 0, 0, 0, 2];

    #[test]
    fn request_then_reply_in_place() {
        let mut f = [0xaau8; 64];
        let n = write_request(
            &mut f,
            THEM,
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
        )
        .unwrap();
        assert_eq!(n, 60);
        assert_eq!(&f[0..6], &BROADCAST_MAC);
        assert!(f[42..60].iter().all(|&b| b == 0), "padding is zero");
        let p = ArpPacket::new_checked(&f[14..60]).unwrap();
        assert_eq!(p.op(), OP_REQUEST);
        assert_eq!((p.sha(), p.tha()), (THEM, [0; 6]));
        assert_eq!(p.tpa(), [10, 0, 0, 1]);
        reply_in_place(&mut f[..60], US).unwrap();
        assert_eq!((&f[0..6], &f[6..12]), (&THEM[..], &US[..]));
        let p = ArpPacket::new_checked(&f[14..60]).unwrap();
        assert_eq!(p.op(), OP_REPLY);
        assert_eq!((p.sha(), p.spa()), (US, [10, 0, 0, 1]));
        assert_eq!((p.tha(), p.tpa()), (THEM, [10, 0, 0, 2]));
        assert_eq!(reply_in_place(&mut f[..60], US), Err(ArpError::NotRequest));
        assert_eq!(reply_in_place(&mut f[..41], US), Err(ArpError::Truncated));
        assert_eq!(reply_in_place(&mut f[..5], US), Err(ArpError::Truncated));
    }

    #[test]
    fn hostile_sizes_and_ops() {
        let mut f = [0u8; 60];
        write_gratuitous(&mut f, US, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        assert!(ArpPacket::new_checked(&f[14..]).unwrap().is_gratuitous());
        let set = |off: usize, v: &[u8]| {
            let mut g = f;
            g[14 + off..14 + off + v.len()].copy_from_slice(v);
            ArpPacket::new_checked(&g[14..]).err()
        };
        assert_eq!(set(HLEN, &[8]), Some(ArpError::WrongSizes));
        assert_eq!(set(PLEN, &[16]), Some(ArpError::WrongSizes));
        assert_eq!(set(HTYPE, &[0, 6]), Some(ArpError::WrongSizes));
        assert_eq!(set(PTYPE, &[0x86, 0xdd]), Some(ArpError::WrongSizes));
        assert_eq!(set(OP, &[0, 3]), Some(ArpError::BadOp));
        assert_eq!(set(OP, &[0, 0]), Some(ArpError::BadOp));
        assert_eq!(
            ArpPacket::new_checked(&f[14..41]).err(),
            Some(ArpError::Truncated)
        );
        assert_eq!(
            write_reply(
                &mut [0u8; 59],
                US,
                Ipv4Addr::LOCALHOST,
                THEM,
                Ipv4Addr::LOCALHOST
            ),
            Err(TooBig)
        );
    }
}
