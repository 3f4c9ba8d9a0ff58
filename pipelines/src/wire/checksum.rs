//! The Internet checksum (RFC 1071), the IPv4 and IPv6 pseudo-headers, and incremental updates (RFC 1624).
//!
//! A *sum* ([`sum`], [`pseudo_v4`], [`pseudo_v6`]) is an unfolded one's-complement sum of big-endian 16-bit
//! words, carried in a `u32`: any value congruent to the true sum modulo `0xffff` stands for it, so sums can be
//! chained by passing one as the `initial` of the next. [`fold`] reduces a sum to 16 bits and the checksum
//! field holds its complement ([`checksum`]).
//!
//! Incremental updates use RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which (unlike eqn. 2) gives the same
//! value as a full recomputation, including when that is `0x0000`, with one exception: if the updated data
//! are all zero, the checksum must be `0xffff` (the only value that verifies) and eqn. 3 gives `0x0000`. No
//! IPv4 header (version 4) and no message covered by a pseudo-header (non-zero protocol) is all zero; an ICMPv4
//! message can be (an echo reply with identifier, sequence number and data all zero), and
//! [`super::icmpv4::echo_reply_in_place`] handles it.
//! UDP's "no checksum" zero is the caller's business: a UDP checksum that computes to `0x0000` is sent as
//! `0xffff` (RFC 768).

/// Reads 8 bytes as a little-endian word; `b` holds at least 8 bytes (the callers slice exactly).
#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// Adds `b` to `a` with the carry out of bit 63 wrapped around (one's-complement addition on 64 bits).
#[inline(always)]
fn add_wrap(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + carry as u64
}

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd last byte is padded with a zero
/// byte), added to `initial`. The result is not folded; see the module docs.
///
/// Works on 16 bytes per step (two 64-bit words), then 8, then the tail. The words are summed in little-endian
/// order and the 16-bit result byte-swapped, which RFC 1071 section 2(B) shows to be equivalent.
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut a: u64 = 0;
    let mut b: u64 = 0;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        a = add_wrap(a, le64(&c[..8]));
        b = add_wrap(b, le64(&c[8..]));
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 8 {
        a = add_wrap(a, le64(rest));
        rest = &rest[8..];
    }
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        b = add_wrap(b, u64::from_le_bytes(w));
    }
    let t = add_wrap(a, b);
    // 64 -> 16 bits; every step keeps the value modulo 0xffff.
    let mut s = (t >> 32) + (t & 0xffff_ffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    let be = (s as u16).swap_bytes() as u64;
    let total = initial as u64 + be;
    ((total >> 32) + (total & 0xffff_ffff)) as u32
}

/// Folds a sum to 16 bits (end-around carry).
#[inline]
pub fn fold(s: u32) -> u16 {
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// The Internet checksum of `data`: the complement of its folded one's-complement sum.
///
/// Over data that include a correct checksum field this is `0`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Whether a 20-byte IPv4 header (no options) verifies: the same answer as `checksum(h) == 0`, in a few
/// instructions. The routing fast path checks every packet's header; the general [`sum`] spends more on its
/// loop and tail than on these five words.
#[inline(always)]
pub fn header20_ok(h: &[u8; 20]) -> bool {
    let (Some(a), Some(b), Some(c)) = (
        h.first_chunk::<8>(),
        h[8..].first_chunk::<8>(),
        h.last_chunk::<4>(),
    ) else {
        return false;
    };
    // The header as two 64-bit words and a 32-bit one, summed with end-around carry (two adds with carry). As
    // 2^16 = 1 modulo 0xffff, which divides 2^64 - 1, that sum `t` has the residue modulo 0xffff of the sum of
    // the 16-bit words, and the folded one's-complement sum of a non-zero `t` is that residue, taken as
    // 0xffff where it is 0: the header verifies when `t` is a non-zero multiple of 0xffff (a multiply and a
    // compare, against four folds). `t` is 0 only for a header of zeros. Little-endian words are fine: a byte
    // swap multiplies a residue by 256, which is prime to 0xffff, so it keeps a residue of 0 (RFC 1071 section
    // 2(B)).
    let (s, k1) = u64::from_le_bytes(*a).overflowing_add(u64::from_le_bytes(*b));
    let (s, k2) = s.overflowing_add(u32::from_le_bytes(*c) as u64 + k1 as u64);
    let t = s + k2 as u64;
    // `t % 0xffff == 0` as one multiply by the inverse of 0xffff modulo 2^64 and a compare (the multiples of
    // 0xffff are the numbers it maps to at most u64::MAX / 0xffff), which the compiler does not always choose.
    const INV: u64 = 0xfffe_fffe_fffe_ffff;
    const _: () = assert!(INV.wrapping_mul(0xffff) == 1);
    t != 0 && t.wrapping_mul(INV) <= u64::MAX / 0xffff
}

/// The sum of the IPv4 pseudo-header (RFC 768, RFC 793): source, destination, protocol and the upper-layer
/// length. Pass it as the `initial` of [`sum`] over the upper-layer message.
#[inline]
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    u16::from_be_bytes([src[0], src[1]]) as u32
        + u16::from_be_bytes([src[2], src[3]]) as u32
        + u16::from_be_bytes([dst[0], dst[1]]) as u32
        + u16::from_be_bytes([dst[2], dst[3]]) as u32
        + proto as u32
        + len as u32
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1): source, destination, the 32-bit upper-layer
/// length and the next-header value.
#[inline]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, len: u32) -> u32 {
    let s = sum(src, 0) as u64
        + sum(dst, 0) as u64
        + (len >> 16) as u64
        + (len & 0xffff) as u64
        + next_header as u64;
    ((s >> 32) + (s & 0xffff_ffff)) as u32
}

/// The checksum after a 16-bit word of the covered data changed from `old` to `new` (RFC 1624 eqn. 3).
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(!csum as u32 + !old as u32 + new as u32)
}

/// The checksum after an aligned 32-bit field (e.g. an IPv4 address, as `u32::from_be_bytes`) changed.
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    !fold(
        !csum as u32
            + !((old >> 16) as u16) as u32
            + !(old as u16) as u32
            + (new >> 16)
            + (new & 0xffff),
    )
}

/// The checksum after a 16-byte field (an IPv6 address, in a pseudo-header or quoted) changed from `old` to
/// `new`.
#[inline]
pub fn update_addr16(csum: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    !fold(!csum as u32 + !fold(sum(old, 0)) as u32 + fold(sum(new, 0)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Word-by-word reference (RFC 1071 section 4.1).
    fn naive(data: &[u8]) -> u16 {
        let mut s: u64 = 0;
        for c in data.chunks(2) {
            let hi = c[0] as u64;
            let lo = c.get(1).copied().unwrap_or(0) as u64;
            s += hi << 8 | lo;
        }
        while s > 0xffff {
            s = (s >> 16) + (s & 0xffff);
        }
        !(s as u16)
    }

    #[test]
    fn rfc1071_example_and_every_tail_length() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
        let data: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(checksum(&data[..n]), naive(&data[..n]), "length {n}");
        }
        let ff = [0xffu8; 67];
        for n in 0..ff.len() {
            assert_eq!(checksum(&ff[..n]), naive(&ff[..n]), "0xff x {n}");
        }
    }

    #[test]
    fn header20_ok_agrees_with_checksum() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if i % 2 == 0 {
                h[10..12].copy_from_slice(&[0, 0]);
                let c = checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            if i % 7 == 0 {
                h = [if i % 14 == 0 { 0xff } else { 0 }; 20];
            }
            assert_eq!(header20_ok(&h), checksum(&h) == 0, "{h:?}");
        }
    }

    #[test]
    fn chaining_and_pseudo_headers() {
        let data: Vec<u8> = (0..99u8).collect();
        // Chaining at an even split equals summing the whole.
        assert_eq!(
            fold(sum(&data[40..], sum(&data[..40], 0))),
            fold(sum(&data, 0))
        );
        let mut v4 = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 99];
        v4.extend_from_slice(&data);
        assert_eq!(
            !fold(sum(&data, pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 99))),
            naive(&v4)
        );
        let (s, d) = ([0xfeu8; 16], [0x20u8; 16]);
        let mut v6 = Vec::new();
        v6.extend_from_slice(&s);
        v6.extend_from_slice(&d);
        v6.extend_from_slice(&[0, 1, 0, 99, 0, 0, 0, 58]);
        v6.extend_from_slice(&data);
        assert_eq!(
            !fold(sum(&data, pseudo_v6(&s, &d, 58, 65536 + 99))),
            naive(&v6)
        );
    }

    #[test]
    fn incremental_updates_match_recomputation() {
        let mut h = [
            0x45u8, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 192, 168, 1, 1, 8, 8, 8, 8,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        // TTL 64 -> 63.
        let c2 = update16(c, 0x4001, 0x3f01);
        h[8] = 63;
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(c2, checksum(&h));
        // Address change.
        let c3 = update32(c2, 0x0808_0808, 0x0a00_0002);
        h[16..20].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(c3, checksum(&h));
        // 16-byte field.
        let mut m = [0u8; 40];
        m[0] = 0x60;
        m[8..24].copy_from_slice(&[0xfe; 16]);
        let c = checksum(&m);
        let new = [0x20u8, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let c4 = update_addr16(c, &[0xfe; 16], &new);
        m[8..24].copy_from_slice(&new);
        assert_eq!(c4, checksum(&m));
    }
}
