//! The Toeplitz hash that NICs compute for RSS (Microsoft's RSS specification, DPDK's `rte_softrss`), so that
//! wharf can predict which queue a NIC will give a frame ([`super::Steering::Toeplitz`]).
//!
//! For each set bit of the input, most significant first, the hash takes the XOR of the 32 key bits that
//! start at that bit's position. The key must be at least 4 bytes longer than the input (40 bytes cover
//! IPv6 with ports); missing key bytes count as zero.

/// The Toeplitz hash of `input` under `key`.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let byte = |i: usize| key.get(i).copied().unwrap_or(0) as u64;
    // The key bits from the current input bit on: the top 32 are the ones that bit selects.
    let mut window = (0..8).fold(0u64, |w, i| w << 8 | byte(i));
    let mut hash = 0u32;
    for (i, &b) in input.iter().enumerate() {
        for bit in 0..8 {
            if b & (0x80 >> bit) != 0 {
                hash ^= (window >> 32) as u32;
            }
            window <<= 1;
        }
        window |= byte(i + 8);
    }
    hash
}

/// The hash input of an IPv4 packet as a NIC reads it: source and destination addresses, then, when the
/// device hashes this protocol's ports, source and destination ports, all in network order.
pub fn ipv4_input(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    ports: bool,
) -> ([u8; 12], usize) {
    let mut input = [0u8; 12];
    input[..4].copy_from_slice(&src);
    input[4..8].copy_from_slice(&dst);
    if !ports {
        return (input, 8);
    }
    input[8..10].copy_from_slice(&sport.to_be_bytes());
    input[10..12].copy_from_slice(&dport.to_be_bytes());
    (input, 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of Microsoft's RSS verification suite.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    #[test]
    fn microsofts_verification_vectors_for_ipv4() {
        // (source, source port, destination, destination port, IPv4-only hash, IPv4 with TCP ports hash), as
        // the RSS specification's verification suite lists them.
        type Case = ([u8; 4], u16, [u8; 4], u16, u32, u32);
        #[rustfmt::skip]
        let cases: [Case; 5] = [
            ([66, 9, 149, 187], 2794, [161, 142, 100, 80], 1766, 0x323e_8fc2, 0x51cc_c178),
            ([199, 92, 111, 2], 14230, [65, 69, 140, 83], 4739, 0xd718_262a, 0xc626_b0ea),
            ([24, 19, 198, 95], 12898, [12, 22, 207, 184], 38024, 0xd2d0_a5de, 0x5c2b_394a),
            ([38, 27, 205, 30], 48228, [209, 142, 163, 6], 2217, 0x8298_9176, 0xafc7_327f),
            ([153, 39, 163, 191], 44251, [202, 188, 127, 2], 1303, 0x5d18_09c5, 0x10e8_28a2),
        ];
        for (s, sp, d, dp, ip_only, with_ports) in cases {
            let (input, n) = ipv4_input(s, sp, d, dp, false);
            assert_eq!(toeplitz(&MS_KEY, &input[..n]), ip_only, "{s:?} -> {d:?}");
            let (input, n) = ipv4_input(s, sp, d, dp, true);
            assert_eq!(
                toeplitz(&MS_KEY, &input[..n]),
                with_ports,
                "{s:?}:{sp} -> {d:?}:{dp}"
            );
        }
    }

    #[test]
    fn a_repeated_16_bit_key_hashes_both_directions_alike() {
        let key: Vec<u8> = (0..40)
            .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
            .collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (a, b) = ((x as u32).to_be_bytes(), ((x >> 32) as u32).to_be_bytes());
            let (pa, pb) = ((x >> 7) as u16, (x >> 23) as u16);
            let (f, n) = ipv4_input(a, pa, b, pb, true);
            let (r, _) = ipv4_input(b, pb, a, pa, true);
            assert_eq!(toeplitz(&key, &f[..n]), toeplitz(&key, &r[..n]));
        }
    }
}
