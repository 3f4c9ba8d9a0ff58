//! RSS-style flow dispatch: a symmetric hash over the flow's addresses and ports.
//!
//! Symmetric means `hash(a→b) == hash(b→a)`: both directions of a flow land on the same queue and worker,
//! which is what conntrack needs for untranslated flows (DESIGN.md). The two endpoints are put in a canonical
//! order before mixing, which gives the same property as a Toeplitz hash with a repeating 16-bit key without
//! its weakness (XOR-folded keys collide for many address pairs). The parser never panics: any frame it does
//! not understand hashes on what it could read.

mod steering;
pub mod toeplitz;

pub use steering::Steering;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

#[inline]
fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

#[inline]
fn mix(mut h: u64, v: u64) -> u64 {
    h ^= v;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

#[inline]
fn ordered(a: &[u8], pa: u16, b: &[u8], pb: u16) -> u64 {
    let (lo, plo, hi, phi) = if (a, pa) <= (b, pb) {
        (a, pa, b, pb)
    } else {
        (b, pb, a, pa)
    };
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for c in lo.chunks(8).chain(hi.chunks(8)) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    mix(h, ((plo as u64) << 16) | phi as u64)
}

/// [`ordered`] for two IPv4 addresses, with fixed-size reads: the same value (comparing big-endian words is
/// comparing the bytes in order, and a 4-byte chunk zero-padded to 8 is the little-endian word), without the
/// slice comparison and the chunk copies. The ring port hashes every packet it sends to a multi-queue peer,
/// so this is per packet.
#[inline]
fn ordered4(a: [u8; 4], pa: u16, b: [u8; 4], pb: u16) -> u64 {
    let (ka, kb) = (
        ((u32::from_be_bytes(a) as u64) << 16) | pa as u64,
        ((u32::from_be_bytes(b) as u64) << 16) | pb as u64,
    );
    let (lo, plo, hi, phi) = if ka <= kb {
        (a, pa, b, pb)
    } else {
        (b, pb, a, pa)
    };
    let h = mix(0x243f_6a88_85a3_08d3, u32::from_le_bytes(lo) as u64);
    let h = mix(h, u32::from_le_bytes(hi) as u64);
    mix(h, ((plo as u64) << 16) | phi as u64)
}

/// The common frame, untagged IPv4 without options and not a later fragment, read at fixed offsets: the same
/// value as the general parser gives it.
#[inline]
fn flow_hash64_ipv4(f: &[u8; 38]) -> Option<u64> {
    if u16::from_be_bytes([f[12], f[13]]) != ETH_P_IPV4 || f[14] != 0x45 {
        return None;
    }
    let frag = u16::from_be_bytes([f[20], f[21]]) & 0x3fff;
    let proto = if frag != 0 { 0 } else { f[23] };
    let port = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    let addr = |o: usize| [f[o], f[o + 1], f[o + 2], f[o + 3]];
    Some(tuple_hash64_v4(
        addr(26),
        port(34),
        addr(30),
        port(36),
        proto,
    ))
}

/// The 64-bit hash of an IPv4 tuple; the ports count only for protocols that have them.
#[inline]
fn tuple_hash64_v4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8) -> u64 {
    let (sp, dp) = match proto {
        6 | 17 | 132 => (sport, dport),
        _ => (0, 0),
    };
    mix(ordered4(src, sp, dst, dp), proto as u64)
}

/// The 32-bit form [`flow_hash`] returns: never 0, so 0 can mean "not computed".
#[inline]
fn fold(h: u64) -> u32 {
    let h = (h ^ (h >> 32)) as u32;
    if h == 0 {
        1
    } else {
        h
    }
}

/// [`flow_hash`] of an IPv4 packet (not a later fragment) with this tuple, computed from the tuple alone:
/// the NAT uses it to predict which queue an answer it has not seen yet will reach. Ports count only for
/// TCP, UDP and SCTP, as in the frame's hash.
#[inline]
pub fn flow_hash_v4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8) -> u32 {
    fold(tuple_hash64_v4(src, sport, dst, dport, proto))
}

/// The queue, of `queues`, that wharf's software RSS gives a frame whose [`flow_hash`] is `hash`.
#[inline]
pub fn queue_of_hash(hash: u32, queues: u16) -> u16 {
    (hash % queues.max(1) as u32) as u16
}

/// Symmetric flow hash of an Ethernet frame (IPv4/IPv6, through up to two VLAN tags, TCP/UDP/SCTP ports).
/// Non-IP frames hash on their MAC addresses. Never 0, so 0 can mean "not computed".
#[inline]
pub fn flow_hash(frame: &[u8]) -> u32 {
    fold(match frame.first_chunk::<38>().and_then(flow_hash64_ipv4) {
        Some(h) => h,
        None => flow_hash64(frame),
    })
}

#[inline(never)]
fn flow_hash64(f: &[u8]) -> u64 {
    let (Some(dst), Some(src)) = (f.get(0..6), f.get(6..12)) else {
        return mix(0, f.len() as u64);
    };
    let mut off = 12;
    let mut ethertype = be16(f, off).unwrap_or(0);
    for _ in 0..2 {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            off += 4;
            ethertype = be16(f, off).unwrap_or(0);
        }
    }
    let l3 = off + 2;
    let (saddr, daddr, proto, l4) = match ethertype {
        ETH_P_IPV4 => {
            let Some(vihl) = f.get(l3) else {
                return ordered(src, 0, dst, 0);
            };
            let ihl = ((vihl & 0x0f) as usize) * 4;
            let (Some(s), Some(d), Some(p)) = (
                f.get(l3 + 12..l3 + 16),
                f.get(l3 + 16..l3 + 20),
                f.get(l3 + 9),
            ) else {
                return ordered(src, 0, dst, 0);
            };
            // Fragments after the first have no ports: hash on addresses only so all fragments stay together.
            let frag = be16(f, l3 + 6).unwrap_or(0) & 0x3fff;
            (s, d, if frag != 0 { 0 } else { *p }, l3 + ihl)
        }
        ETH_P_IPV6 => {
            let (Some(s), Some(d), Some(p)) = (
                f.get(l3 + 8..l3 + 24),
                f.get(l3 + 24..l3 + 40),
                f.get(l3 + 6),
            ) else {
                return ordered(src, 0, dst, 0);
            };
            (s, d, *p, l3 + 40)
        }
        _ => return ordered(src, 0, dst, 0),
    };
    let (sp, dp) = match proto {
        6 | 17 | 132 => (be16(f, l4).unwrap_or(0), be16(f, l4 + 2).unwrap_or(0)),
        _ => (0, 0),
    };
    mix(ordered(saddr, sp, daddr, dp), proto as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp4(s: [u8; 4], d: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(s, d, 64)
            .udp(sp, dp);
        let mut v = Vec::new();
        b.write(&mut v, &[0u8; 8]).unwrap();
        v
    }

    #[test]
    fn symmetric_for_v4_and_v6() {
        let ab = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53);
        let ba = udp4([10, 0, 0, 2], [10, 0, 0, 1], 53, 1000);
        assert_eq!(flow_hash(&ab), flow_hash(&ba));
        let b6 = |s: u8, d: u8, sp, dp| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv6([s; 16], [d; 16], 64)
                .tcp(sp, dp, 1, 100)
                .write(&mut v, &[])
                .unwrap();
            v
        };
        assert_eq!(flow_hash(&b6(1, 2, 5, 6)), flow_hash(&b6(2, 1, 6, 5)));
        assert_ne!(flow_hash(&b6(1, 2, 5, 6)), flow_hash(&b6(1, 2, 5, 7)));
    }

    #[test]
    fn spreads_flows() {
        let mut buckets = [0u32; 8];
        for i in 0..8000u16 {
            buckets[flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 1024 + i, 80)) as usize % 8] += 1;
        }
        assert!(buckets.iter().all(|&c| c > 700 && c < 1300), "{buckets:?}");
    }

    #[test]
    fn the_ipv4_fast_path_gives_the_general_value() {
        // Every protocol, fragment offsets and flags, ports both ways round, addresses equal and not: the fast
        // path must agree with the general parser (queues and workers must not change with the path taken).
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut fast = 0;
        for i in 0..20_000u32 {
            let r = next();
            let a = [10, (r >> 8) as u8 & 3, 0, (r >> 16) as u8 & 3];
            let b = if i % 5 == 0 {
                a
            } else {
                [10, 0, (r >> 24) as u8 & 1, 1]
            };
            let mut f = udp4(a, b, (r >> 32) as u16 & 7, (r >> 48) as u16 & 7);
            f[23] = [17, 6, 132, 1, 47][(i % 5) as usize];
            if i % 7 == 0 {
                f[20..22].copy_from_slice(&((r as u16) & 0x3fff | 0x2000).to_be_bytes());
            }
            let want = fold(flow_hash64(&f));
            if f.first_chunk::<38>().and_then(flow_hash64_ipv4).is_some() {
                fast += 1;
            }
            assert_eq!(flow_hash(&f), want, "{f:?}");
        }
        assert_eq!(fast, 20_000, "every frame took the fast path");
    }

    #[test]
    fn the_tuple_hash_is_the_frames_and_steering_follows_it() {
        // TCP, UDP, SCTP and a protocol without ports, both directions: the hash of a tuple is the hash of
        // the frame carrying it, so a queue predicted from a tuple is the queue the frame reaches.
        for (i, proto) in [6u8, 17, 132, 1, 47].into_iter().enumerate() {
            for k in 0..200u16 {
                let (a, b) = ([10, 0, k as u8, 1], [198, 51, 100, (k >> 3) as u8]);
                let (pa, pb) = (1024 + k * 7, 53 + i as u16);
                let mut f = udp4(a, b, pa, pb);
                f[23] = proto;
                assert_eq!(
                    flow_hash(&f),
                    flow_hash_v4(a, pa, b, pb, proto),
                    "{proto} {k}"
                );
                assert_eq!(flow_hash(&f), flow_hash_v4(b, pb, a, pa, proto));
                let s = Steering::FlowHash { queues: 3 };
                assert_eq!(
                    s.queue_v4(b, pb, a, pa, proto),
                    Some((flow_hash(&f) % 3) as u16)
                );
                assert_eq!(Steering::Unknown.queue_v4(a, pa, b, pb, proto), None);
            }
        }
    }

    #[test]
    fn never_panics_on_short_or_odd_frames() {
        let full = udp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        for n in 0..full.len() {
            assert_ne!(flow_hash(&full[..n]), 0);
        }
        let mut vlan = full.clone();
        vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        for n in 0..vlan.len() {
            flow_hash(&vlan[..n]);
        }
    }
}
