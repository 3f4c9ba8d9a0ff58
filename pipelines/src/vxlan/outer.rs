//! The outer header template of one remote VTEP: the 50 bytes (Ethernet, IPv4 without options, UDP, VXLAN)
//! an encapsulated frame starts with, built once and copied in front of every frame with one fixed-size write.
//!
//! Of those 50 bytes only four fields depend on the frame: the IPv4 total length and identification, the UDP
//! source port (the inner flow's entropy) and the UDP length. Everything else (MACs, addresses, TTL, flags,
//! ports, VNI) is fixed for a VTEP, an overlay and a next hop, so the template holds it, with the one's
//! complement sum of the IPv4 header's constant words: the header checksum of a frame is then that sum plus
//! the two variable words, folded, instead of a sum over the whole header.
//!
//! A template is only as fresh as what it was built from (the snapshot, the neighbour's MAC): the
//! encapsulation builds them per burst (see [`super::encap`]), never keeps one across bursts.

use crate::wire::checksum;
use crate::wire::vxlan::{write_outer, Outer, OVERHEAD};
use crate::wire::ETH_HEADER_LEN;

/// Offset of the IPv4 total length in the template.
const TOTAL: usize = ETH_HEADER_LEN + 2;
/// Offset of the IPv4 identification.
const IDENT: usize = ETH_HEADER_LEN + 4;
/// Offset of the IPv4 header checksum.
const CSUM: usize = ETH_HEADER_LEN + 10;
/// Offset of the UDP source port.
const SPORT: usize = ETH_HEADER_LEN + 20;
/// Offset of the UDP length.
const ULEN: usize = ETH_HEADER_LEN + 24;

/// Largest inner frame a template can carry: the outer IPv4 total length must fit 16 bits.
pub const MAX_INNER: usize = u16::MAX as usize - (OVERHEAD - ETH_HEADER_LEN);

/// A prebuilt outer header stack. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterTemplate {
    bytes: [u8; OVERHEAD],
    /// Unfolded one's complement sum of the IPv4 header with total length, identification and checksum zero.
    ip_sum: u32,
}

impl OuterTemplate {
    /// The template of `o` (its `src_port` and `ident` are ignored: they vary per frame) behind an Ethernet
    /// header from `src_mac` to `dst_mac`, given as the 12 bytes `dst_mac | src_mac` a next-hop rewrite is.
    pub fn new(macs: &[u8; 12], o: &Outer) -> OuterTemplate {
        let mut bytes = [0u8; OVERHEAD];
        bytes[..12].copy_from_slice(macs);
        bytes[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let fixed = Outer {
            src_port: 0,
            ident: 0,
            ..*o
        };
        // An empty inner frame always fits, so this writes.
        write_outer(&mut bytes[ETH_HEADER_LEN..], &fixed, 0);
        bytes[TOTAL..TOTAL + 2].fill(0);
        bytes[CSUM..CSUM + 2].fill(0);
        let ip_sum = checksum::sum(&bytes[ETH_HEADER_LEN..ETH_HEADER_LEN + 20], 0);
        OuterTemplate { bytes, ip_sum }
    }

    /// Writes the outer headers for an inner frame of `inner_len` bytes (at most [`MAX_INNER`]; the caller
    /// checks) into `hdr`, with UDP source port `src_port` and IPv4 identification `ident`.
    #[inline(always)]
    pub fn write(&self, hdr: &mut [u8; OVERHEAD], inner_len: usize, src_port: u16, ident: u16) {
        debug_assert!(inner_len <= MAX_INNER);
        let total = (inner_len + OVERHEAD - ETH_HEADER_LEN) as u16;
        // Straight into the frame: the constant bytes in one copy, then the variable fields over them.
        *hdr = self.bytes;
        let h = hdr;
        h[TOTAL..TOTAL + 2].copy_from_slice(&total.to_be_bytes());
        h[IDENT..IDENT + 2].copy_from_slice(&ident.to_be_bytes());
        let csum = !checksum::fold(self.ip_sum + total as u32 + ident as u32);
        h[CSUM..CSUM + 2].copy_from_slice(&csum.to_be_bytes());
        h[SPORT..SPORT + 2].copy_from_slice(&src_port.to_be_bytes());
        h[ULEN..ULEN + 2].copy_from_slice(&(total - 20).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outer(df: bool, ttl: u8, vni: u32, src: [u8; 4], dst: [u8; 4], dst_port: u16) -> Outer {
        Outer {
            src,
            dst,
            src_port: 0,
            dst_port,
            vni,
            ttl,
            df,
            ident: 0,
        }
    }

    proptest! {
        /// Whatever the fields, the template writes the very bytes the general writer does, and the IPv4
        /// checksum verifies.
        #[test]
        fn same_bytes_as_the_general_writer(
            macs in any::<[u8; 12]>(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            vni in 0u32..(1 << 24),
            ttl in any::<u8>(),
            df in any::<bool>(),
            dst_port in any::<u16>(),
            sport in any::<u16>(),
            ident in any::<u16>(),
            inner_len in 0usize..=MAX_INNER,
        ) {
            let o = outer(df, ttl, vni, src, dst, dst_port);
            let t = OuterTemplate::new(&macs, &o);
            let mut got = [0u8; OVERHEAD];
            t.write(&mut got, inner_len, sport, ident);
            let mut want = [0u8; OVERHEAD];
            want[..12].copy_from_slice(&macs);
            want[12..14].copy_from_slice(&[0x08, 0x00]);
            let o = Outer { src_port: sport, ident, ..o };
            prop_assert!(write_outer(&mut want[ETH_HEADER_LEN..], &o, inner_len));
            prop_assert_eq!(got, want);
            prop_assert_eq!(checksum::checksum(&got[ETH_HEADER_LEN..ETH_HEADER_LEN + 20]), 0);
        }
    }

    #[test]
    fn checksum_at_the_extremes() {
        // Sums that fold to 0xffff and carry twice.
        for (src, dst) in [
            ([0xff; 4], [0xff; 4]),
            ([0; 4], [0; 4]),
            ([0xff, 0xff, 0, 0], [0, 0, 0xff, 0xfe]),
        ] {
            let t = OuterTemplate::new(&[0; 12], &outer(true, 255, 0xff_ffff, src, dst, 0xffff));
            for (len, ident) in [(0, 0), (MAX_INNER, 0xffff), (1, 0xfffe), (MAX_INNER - 1, 1)] {
                let mut h = [0u8; OVERHEAD];
                t.write(&mut h, len, 0xffff, ident);
                let ip = etherparse::Ipv4HeaderSlice::from_slice(&h[ETH_HEADER_LEN..])
                    .expect("an IPv4 header");
                assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
                assert_eq!(ip.total_len() as usize, len + 36);
            }
        }
    }
}
