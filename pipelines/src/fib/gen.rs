//! Synthetic route tables for benchmarks and tests: prefix sets whose length distribution looks like a
//! default-free BGP table, drawn from a small seeded generator so every run (and every benchmark that reuses
//! them, e.g. the router's) sees the same table.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, seedable 64-bit generator. Good enough for synthetic
/// tables and random lookup addresses; not for anything an adversary may predict.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed` (any value, including 0).
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniform number in `0..n` (0 when `n` is 0), by a 64x64->128 multiply (bias below 2^-32 for `n` < 2^32).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Picks an index of `weights` with probability proportional to its weight (0 if all are 0).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w as u64 {
                return i;
            }
            x -= w as u64;
        }
        0
    }
}

/// Length bands of [`bgp_like_prefixes`]: (first length, percent of the table, relative weight of each length
/// in the band). The band shares are the brief's (55 % /24, 40 % /16-/23, 4 % /8-/15, 1 % longer than /24);
/// inside a band the lengths follow the shape of today's IPv4 default-free table (e.g. /22 and /23 are the
/// common ones of /16-/23).
const V4_BANDS: [(u8, u32, &[u32]); 4] = [
    (24, 55, &[1]),
    (16, 40, &[13, 8, 14, 26, 44, 55, 125, 100]),
    (8, 4, &[4, 3, 9, 24, 70, 140, 280, 470]),
    (25, 1, &[2, 2, 2, 2, 2, 2, 1, 4]),
];

/// `n` distinct random IPv4 prefixes (host bits zero) with a BGP-like length distribution: about 55 % /24,
/// 40 % /16-/23, 4 % /8-/15 and 1 % /25-/32, inside the unicast space 1.0.0.0-223.255.255.255.
///
/// Deterministic for a given `seed`. A draw that repeats an earlier prefix is drawn again, so for large `n`
/// the short lengths (of which few distinct prefixes exist, e.g. 223 /8s) come out slightly below their share.
/// Returns fewer than `n` prefixes only if the space runs out (far beyond any realistic `n`).
pub fn bgp_like_prefixes(n: usize, seed: u64) -> Vec<(Ipv4Addr, u8)> {
    let mut rng = SplitMix64::new(seed);
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let band_weights: Vec<u32> = V4_BANDS.iter().map(|b| b.1).collect();
    let mut budget = n.saturating_mul(8).saturating_add(1000);
    while out.len() < n && budget > 0 {
        budget -= 1;
        let (first, _, weights) = V4_BANDS[rng.weighted(&band_weights)];
        let len = first + rng.weighted(weights) as u8;
        // First octet in 1..=223, the rest random; then keep the top `len` bits.
        let a = ((1 + rng.below(223)) as u32) << 24 | (rng.next_u32() & 0x00ff_ffff);
        let p = a & mask4(len);
        if seen.insert((p, len)) {
            out.push((Ipv4Addr::from(p), len));
        }
    }
    out
}

/// The netmask of an IPv4 prefix length (0..=32).
fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    }
}

/// The netmask of an IPv6 prefix length (0..=128).
fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128))
    }
}

/// IPv6 lengths of [`bgp_like_prefixes_v6`] with their weights (per mille).
const V6_LENGTHS: [(u8, u32); 21] = [
    (29, 10),
    (30, 5),
    (31, 5),
    (32, 170),
    (33, 8),
    (34, 8),
    (35, 8),
    (36, 25),
    (37, 8),
    (38, 8),
    (39, 8),
    (40, 45),
    (41, 8),
    (42, 15),
    (43, 8),
    (44, 50),
    (45, 8),
    (46, 15),
    (47, 11),
    (48, 450),
    (64, 70),
    // /128 has its own weight below.
];

/// The weight of /128 (per mille) in [`bgp_like_prefixes_v6`].
const V6_HOST_WEIGHT: u32 = 30;

/// `n` distinct random IPv6 prefixes (host bits zero) with lengths like an IPv6 BGP table plus some host
/// routes: about 45 % /48, 17 % /32, 25 % /33-/47, 2 % /29-/31, 7 % /64 and 3 % /128, all in 2000::/3.
///
/// Prefixes longer than /32 fall inside a pool of `n / 24` (at least one) random /32 "allocations", as real
/// more-specifics cluster inside their provider's block; that sharing of the upper trie levels is what keeps
/// the table's memory realistic. Deterministic for a given `seed`; duplicates are drawn again.
pub fn bgp_like_prefixes_v6(n: usize, seed: u64) -> Vec<(Ipv6Addr, u8)> {
    let mut rng = SplitMix64::new(seed);
    let mut weights: Vec<u32> = V6_LENGTHS.iter().map(|l| l.1).collect();
    weights.push(V6_HOST_WEIGHT);
    let blocks: Vec<u128> = (0..(n / 24).max(1))
        .map(|_| random_in_2000_3(&mut rng) & mask6(32))
        .collect();
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut budget = n.saturating_mul(8).saturating_add(1000);
    while out.len() < n && budget > 0 {
        budget -= 1;
        let i = rng.weighted(&weights);
        let len = V6_LENGTHS.get(i).map_or(128, |l| l.0);
        let a = if len <= 32 {
            random_in_2000_3(&mut rng)
        } else {
            let block = blocks[rng.below(blocks.len() as u64) as usize];
            block | (random_u128(&mut rng) & !mask6(32))
        };
        let p = a & mask6(len);
        if seen.insert((p, len)) {
            out.push((Ipv6Addr::from(p), len));
        }
    }
    out
}

fn random_u128(rng: &mut SplitMix64) -> u128 {
    (rng.next_u64() as u128) << 64 | rng.next_u64() as u128
}

/// A random address in 2000::/3 (global unicast).
fn random_in_2000_3(rng: &mut SplitMix64) -> u128 {
    (random_u128(rng) >> 3) | (1u128 << 125)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_distribution_and_distinct() {
        let v = bgp_like_prefixes(100_000, 7);
        assert_eq!(v.len(), 100_000);
        let set: HashSet<_> = v.iter().collect();
        assert_eq!(set.len(), v.len());
        let share = |lo: u8, hi: u8| {
            v.iter().filter(|p| (lo..=hi).contains(&p.1)).count() as f64 / v.len() as f64
        };
        assert!((share(24, 24) - 0.55).abs() < 0.02);
        assert!((share(16, 23) - 0.40).abs() < 0.02);
        assert!((share(8, 15) - 0.04).abs() < 0.01);
        assert!((share(25, 32) - 0.01).abs() < 0.005);
        for (p, len) in &v {
            assert_eq!(u32::from(*p) & !mask4(*len), 0);
            assert!((1..224).contains(&p.octets()[0]));
        }
        assert_eq!(v, bgp_like_prefixes(100_000, 7));
    }

    #[test]
    fn v6_distribution_and_distinct() {
        let v = bgp_like_prefixes_v6(50_000, 7);
        assert_eq!(v.len(), 50_000);
        let set: HashSet<_> = v.iter().collect();
        assert_eq!(set.len(), v.len());
        let share = |lo: u8, hi: u8| {
            v.iter().filter(|p| (lo..=hi).contains(&p.1)).count() as f64 / v.len() as f64
        };
        assert!(share(32, 48) > 0.85);
        assert!((share(64, 64) - 0.07).abs() < 0.01);
        assert!((share(128, 128) - 0.03).abs() < 0.01);
        for (p, len) in &v {
            assert_eq!(u128::from(*p) & !mask6(*len), 0);
            assert_eq!(p.octets()[0] >> 5, 1);
        }
    }

    #[test]
    fn tiny_and_zero() {
        assert!(bgp_like_prefixes(0, 1).is_empty());
        assert_eq!(bgp_like_prefixes(1, 1).len(), 1);
        assert_eq!(bgp_like_prefixes_v6(1, 1).len(), 1);
        let mut r = SplitMix64::new(0);
        assert_eq!(r.below(0), 0);
        assert_eq!(r.weighted(&[]), 0);
        assert_eq!(r.weighted(&[0, 0]), 0);
    }
}
