//! The wire views and builders against two independent implementations: everything we build is parsed by
//! etherparse and smoltcp field by field (checksums included), everything they build is read by our views, the
//! incremental checksum updates equal full recomputation, and no input makes a view panic.

use etherparse::{
    icmpv4, icmpv6, IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber,
    Ipv4Header, Ipv6FlowLabel, Ipv6Header, LinkSlice, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};
use pipelines::wire::arp::{self, ArpError, ArpPacket};
use pipelines::wire::checksum;
use pipelines::wire::icmpv4::{self as ours4, Icmpv4Error, Icmpv4Packet};
use pipelines::wire::icmpv6::{self as ours6, Icmpv6Error, Icmpv6Packet};
use pipelines::wire::ipv4::{self, Ipv4Error, Ipv4Packet};
use pipelines::wire::ipv6::{self, Ipv6Error, Ipv6Packet};
use pipelines::wire::ndisc::{self, NaFlags, NdiscError, NdiscPacket};
use pipelines::wire::{Mac, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use proptest::prelude::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire as st;
use std::net::{Ipv4Addr, Ipv6Addr};

const ROUTER_MAC: Mac = [0x02, 0xaa, 0, 0, 0, 1];
const HOST_MAC: Mac = [0x02, 0xbb, 0, 0, 0, 2];

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An Ethernet frame around an IP packet, for `SlicedPacket::from_ethernet`.
fn eth(ethertype: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&ROUTER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

fn sliced_ipv4(frame: &[u8]) -> (etherparse::Ipv4HeaderSlice<'_>, etherparse::Icmpv4Slice<'_>) {
    let s = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    let Some(NetSlice::Ipv4(ip)) = s.net else {
        panic!("not IPv4: {:?}", s.net)
    };
    let Some(TransportSlice::Icmpv4(icmp)) = s.transport else {
        panic!("not ICMP")
    };
    let hs = ip.header();
    assert_eq!(
        hs.header_checksum(),
        hs.to_header().calc_header_checksum(),
        "IPv4 header checksum"
    );
    assert_eq!(
        icmp.checksum(),
        Icmpv4Header::with_checksum(icmp.icmp_type(), icmp.payload()).checksum,
        "ICMP checksum"
    );
    let h = etherparse::Ipv4HeaderSlice::from_slice(&frame[14..]).unwrap();
    (h, icmp)
}

fn sliced_ipv6(frame: &[u8]) -> (etherparse::Ipv6HeaderSlice<'_>, etherparse::Icmpv6Slice<'_>) {
    let s = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    let Some(NetSlice::Ipv6(ip)) = s.net else {
        panic!("not IPv6: {:?}", s.net)
    };
    let Some(TransportSlice::Icmpv6(icmp)) = s.transport else {
        panic!("not ICMPv6")
    };
    let h = ip.header();
    assert!(icmp.is_checksum_valid(h.source(), h.destination()));
    assert_eq!(
        icmp.checksum(),
        Icmpv6Header::with_checksum(
            icmp.icmp_type(),
            h.source(),
            h.destination(),
            icmp.payload()
        )
        .unwrap()
        .checksum
    );
    (h, icmp)
}

// ---------------------------------------------------------------------------------------------------------
// Incremental checksums equal full recomputation.

/// Adds `c` to the identification field (one's-complement addition), which makes the full checksum of a
/// header whose checksum was `c` come out as 0x0000: the corner value.
fn force_zero_checksum(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let c = checksum::checksum(h);
    let ident = u16::from_be_bytes([h[4], h[5]]);
    let s = checksum::fold(ident as u32 + c as u32);
    h[4..6].copy_from_slice(&s.to_be_bytes());
    assert_eq!(checksum::checksum(h), 0, "forced to the corner");
}

fn fill(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let c = checksum::checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

fn header_strategy() -> impl Strategy<Value = Vec<u8>> {
    (5u8..=15, proptest::collection::vec(any::<u8>(), 60)).prop_map(|(ihl, mut b)| {
        let hl = ihl as usize * 4;
        b.truncate(hl);
        b[0] = 0x40 | ihl;
        b[2..4].copy_from_slice(&(hl as u16).to_be_bytes());
        b
    })
}

fn word_strategy() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(0u16),
        Just(1),
        Just(0xfffe),
        Just(0xffff),
        Just(0x8000),
        any::<u16>()
    ]
}

fn ttl_strategy() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0u8), Just(1), Just(2), Just(255), any::<u8>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// decrement_ttl's incremental checksum equals a full recomputation, including when the checksum is 0x0000
    /// before (corner 1) or after (corner 2) the update.
    #[test]
    fn decrement_ttl_equals_recomputation(mut h in header_strategy(), ttl in ttl_strategy(), corner in 0u8..3) {
        h[8] = ttl;
        match corner {
            1 => force_zero_checksum(&mut h),
            2 if ttl > 0 => {
                h[8] = ttl - 1;
                force_zero_checksum(&mut h);
                h[8] = ttl;
                fill(&mut h);
            }
            _ => fill(&mut h),
        }
        let mut p = Ipv4Packet::new_checked(&mut h[..]).unwrap();
        prop_assert!(p.verify_checksum());
        let new = p.decrement_ttl();
        prop_assert_eq!(new, ttl.saturating_sub(1));
        prop_assert_eq!(p.ttl(), new);
        let incremental = p.checksum();
        p.fill_checksum();
        prop_assert_eq!(incremental, p.checksum());
        prop_assert!(p.verify_checksum());
        if corner == 2 && ttl > 0 {
            prop_assert_eq!(incremental, 0);
        }
    }

    /// set_src/set_dst update the header checksum as a recomputation would, corners included.
    #[test]
    fn set_addresses_equal_recomputation(
        mut h in header_strategy(),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        corner in 0u8..3,
    ) {
        match corner {
            1 => force_zero_checksum(&mut h),
            2 => {
                let old = [h[12], h[13], h[14], h[15]];
                h[12..16].copy_from_slice(&src);
                force_zero_checksum(&mut h);
                h[12..16].copy_from_slice(&old);
                fill(&mut h);
            }
            _ => fill(&mut h),
        }
        let mut p = Ipv4Packet::new_checked(&mut h[..]).unwrap();
        p.set_src(Ipv4Addr::from(src));
        let after_src = p.checksum();
        if corner == 2 {
            prop_assert_eq!(after_src, 0);
        }
        p.set_dst(Ipv4Addr::from(dst));
        let incremental = p.checksum();
        p.fill_checksum();
        prop_assert_eq!(incremental, p.checksum());
        prop_assert_eq!((p.src(), p.dst()), (src, dst));
    }

    /// update16, update32 and update_addr16 over arbitrary data equal recomputation whenever the new data do
    /// not sum to zero (all-zero data, the one case RFC 1624 eqn. 3 answers 0x0000 for 0xffff; no IPv4 header
    /// or pseudo-header-covered message is all zero).
    #[test]
    fn updates_equal_recomputation(
        mut data in proptest::collection::vec(any::<u8>(), 16..200),
        at in any::<prop::sample::Index>(),
        new16 in word_strategy(),
        new32 in any::<u32>(),
        new_addr in any::<[u8; 16]>(),
    ) {
        let n = data.len() & !1;
        data.truncate(n);
        let i = at.index(n / 2) * 2;
        let c = checksum::checksum(&data);
        let old = u16::from_be_bytes([data[i], data[i + 1]]);
        data[i..i + 2].copy_from_slice(&new16.to_be_bytes());
        if data.iter().any(|&b| b != 0) {
            prop_assert_eq!(checksum::update16(c, old, new16), checksum::checksum(&data));
        }
        // 32 bits at an even offset (need not be 4-aligned for the sum).
        let j = at.index((n - 4) / 2 + 1) * 2;
        let c = checksum::checksum(&data);
        let old = u32::from_be_bytes([data[j], data[j + 1], data[j + 2], data[j + 3]]);
        data[j..j + 4].copy_from_slice(&new32.to_be_bytes());
        if data.iter().any(|&b| b != 0) {
            prop_assert_eq!(checksum::update32(c, old, new32), checksum::checksum(&data));
        }
        let k = at.index((n - 16) / 2 + 1) * 2;
        let c = checksum::checksum(&data);
        let mut old = [0u8; 16];
        old.copy_from_slice(&data[k..k + 16]);
        data[k..k + 16].copy_from_slice(&new_addr);
        if data.iter().any(|&b| b != 0) {
            prop_assert_eq!(checksum::update_addr16(c, &old, &new_addr), checksum::checksum(&data));
        }
    }

    /// The fast sum equals a word-by-word one at every length and initial value.
    #[test]
    fn sum_equals_reference(data in proptest::collection::vec(any::<u8>(), 0..300), init in any::<u32>()) {
        let mut s = init as u64;
        for c in data.chunks(2) {
            s += (c[0] as u64) << 8 | c.get(1).copied().unwrap_or(0) as u64;
        }
        while s > 0xffff {
            s = (s >> 16) + (s & 0xffff);
        }
        prop_assert_eq!(checksum::fold(checksum::sum(&data, init)), s as u16);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The echo replies' incremental checksums equal etherparse's full computation, for identifiers, sequence
    /// numbers and data that are often zero (the all-zero reply is RFC 1624's corner).
    #[test]
    fn echo_reply_checksums_equal_recomputation(
        id in word_strategy(),
        seq in word_strategy(),
        data in proptest::collection::vec(prop_oneof![3 => Just(0u8), 1 => any::<u8>()], 0..40),
    ) {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .icmpv4_echo_request(id, seq)
            .write(&mut v, &data)
            .unwrap();
        let n = ours4::echo_reply_in_place(&mut v, 64).unwrap();
        let p = Ipv4Packet::new_checked(&v[..n]).unwrap();
        let m = Icmpv4Packet::new_checked(p.payload()).unwrap();
        let full = Icmpv4Header::with_checksum(Icmpv4Type::EchoReply(IcmpEchoHeader { id, seq }), &data);
        prop_assert_eq!(m.checksum(), full.checksum);
        prop_assert!(m.verify_checksum());

        let mut w = Vec::new();
        PacketBuilder::ipv6(v6("fe80::2").octets(), v6("fe80::1").octets(), 64)
            .icmpv6_echo_request(id, seq)
            .write(&mut w, &data)
            .unwrap();
        let n = ours6::echo_reply_in_place(&mut w, 64).unwrap();
        let p = Ipv6Packet::new_checked(&w[..n]).unwrap();
        let m = Icmpv6Packet::new_checked(p.payload()).unwrap();
        let full = Icmpv6Header::with_checksum(
            Icmpv6Type::EchoReply(IcmpEchoHeader { id, seq }),
            p.src(),
            p.dst(),
            &data,
        )
        .unwrap();
        prop_assert_eq!(m.checksum(), full.checksum);
    }
}

#[test]
fn zero_checksum_corner_case_by_hand() {
    // A header whose checksum is 0x0000; decrementing the TTL must not produce 0xffff (RFC 1624 section 3).
    let mut h = [
        0x45u8, 0, 0, 20, 0, 0, 0, 0, 2, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    force_zero_checksum(&mut h);
    let mut p = Ipv4Packet::new_checked(&mut h[..]).unwrap();
    assert_eq!(p.checksum(), 0);
    assert!(p.verify_checksum());
    assert_eq!(p.decrement_ttl(), 1);
    assert!(p.verify_checksum());
    let c = p.checksum();
    p.fill_checksum();
    assert_eq!(c, p.checksum());
    assert_eq!(checksum::update16(0x0000, 0x0000, 0x0000), 0x0000);
}

// ---------------------------------------------------------------------------------------------------------
// ARP.

#[test]
fn arp_builders_parse_in_etherparse_and_smoltcp() {
    let me = Ipv4Addr::new(10, 1, 0, 1);
    let host = Ipv4Addr::new(10, 1, 0, 20);
    let mut f = [0u8; 64];
    type Case = (u16, Mac, Mac, Ipv4Addr, Mac, Ipv4Addr);
    let mut cases: Vec<(Vec<u8>, Case)> = Vec::new();
    let n = arp::write_request(&mut f, ROUTER_MAC, me, host).unwrap();
    cases.push((
        f[..n].to_vec(),
        (1, [0xff; 6], ROUTER_MAC, me, [0; 6], host),
    ));
    let n = arp::write_reply(&mut f, ROUTER_MAC, me, HOST_MAC, host).unwrap();
    cases.push((
        f[..n].to_vec(),
        (2, HOST_MAC, ROUTER_MAC, me, HOST_MAC, host),
    ));
    let n = arp::write_gratuitous(&mut f, ROUTER_MAC, me).unwrap();
    cases.push((f[..n].to_vec(), (1, [0xff; 6], ROUTER_MAC, me, [0; 6], me)));
    for (frame, (op, eth_dst, sha, spa, tha, tpa)) in cases {
        assert_eq!(frame.len(), 60);
        let s = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(LinkSlice::Ethernet2(e)) = s.link else {
            panic!("no Ethernet")
        };
        assert_eq!(e.ether_type(), etherparse::EtherType::ARP);
        assert_eq!((e.destination(), e.source()), (eth_dst, sha));
        assert_eq!(e.payload_slice().len(), 46);

        let ef = st::EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(ef.ethertype(), st::EthernetProtocol::Arp);
        assert_eq!(ef.dst_addr(), st::EthernetAddress(eth_dst));
        let ap = st::ArpPacket::new_checked(ef.payload()).unwrap();
        let st::ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } = st::ArpRepr::parse(&ap).unwrap()
        else {
            panic!("not Ethernet/IPv4")
        };
        let expect_op = if op == 1 {
            st::ArpOperation::Request
        } else {
            st::ArpOperation::Reply
        };
        assert_eq!(operation, expect_op);
        assert_eq!(source_hardware_addr, st::EthernetAddress(sha));
        assert_eq!(source_protocol_addr, spa);
        assert_eq!(target_hardware_addr, st::EthernetAddress(tha));
        assert_eq!(target_protocol_addr, tpa);
    }
}

#[test]
fn arp_view_reads_smoltcp_request_and_replies_in_place() {
    let mut buf = [0u8; 42];
    let mut ef = st::EthernetFrame::new_unchecked(&mut buf[..]);
    st::EthernetRepr {
        src_addr: st::EthernetAddress(HOST_MAC),
        dst_addr: st::EthernetAddress::BROADCAST,
        ethertype: st::EthernetProtocol::Arp,
    }
    .emit(&mut ef);
    let host = Ipv4Addr::new(192, 168, 7, 9);
    let me = Ipv4Addr::new(192, 168, 7, 1);
    st::ArpRepr::EthernetIpv4 {
        operation: st::ArpOperation::Request,
        source_hardware_addr: st::EthernetAddress(HOST_MAC),
        source_protocol_addr: host,
        target_hardware_addr: st::EthernetAddress([0; 6]),
        target_protocol_addr: me,
    }
    .emit(&mut st::ArpPacket::new_unchecked(ef.payload_mut()));

    let p = ArpPacket::new_checked(&buf[14..]).unwrap();
    assert_eq!(p.op(), arp::OP_REQUEST);
    assert_eq!((p.sha(), p.spa_addr()), (HOST_MAC, host));
    assert_eq!((p.tha(), p.tpa_addr()), ([0; 6], me));
    assert!(!p.is_gratuitous());

    arp::reply_in_place(&mut buf, ROUTER_MAC).unwrap();
    let ef = st::EthernetFrame::new_checked(&buf[..]).unwrap();
    assert_eq!(ef.dst_addr(), st::EthernetAddress(HOST_MAC));
    assert_eq!(ef.src_addr(), st::EthernetAddress(ROUTER_MAC));
    assert_eq!(
        st::ArpRepr::parse(&st::ArpPacket::new_checked(ef.payload()).unwrap()).unwrap(),
        st::ArpRepr::EthernetIpv4 {
            operation: st::ArpOperation::Reply,
            source_hardware_addr: st::EthernetAddress(ROUTER_MAC),
            source_protocol_addr: me,
            target_hardware_addr: st::EthernetAddress(HOST_MAC),
            target_protocol_addr: host,
        }
    );
}

#[test]
fn arp_hostile_sizes() {
    let mut f = [0u8; 60];
    arp::write_request(
        &mut f,
        ROUTER_MAC,
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(1, 1, 1, 2),
    )
    .unwrap();
    let mut hlen8 = f;
    hlen8[14 + 4] = 8;
    assert_eq!(
        ArpPacket::new_checked(&hlen8[14..]).err(),
        Some(ArpError::WrongSizes)
    );
    assert_eq!(
        arp::reply_in_place(&mut hlen8, ROUTER_MAC),
        Err(ArpError::WrongSizes)
    );
    let mut plen16 = f;
    plen16[14 + 5] = 16;
    assert_eq!(
        ArpPacket::new_checked(&plen16[14..]).err(),
        Some(ArpError::WrongSizes)
    );
    let mut op = f;
    op[14 + 7] = 9;
    assert_eq!(
        ArpPacket::new_checked(&op[14..]).err(),
        Some(ArpError::BadOp)
    );
    assert_eq!(
        ArpPacket::new_checked(&f[14..41]).err(),
        Some(ArpError::Truncated)
    );
    assert_eq!(
        ArpError::WrongSizes.drop_reason(),
        dataplane::DropReason::Malformed
    );
}

// ---------------------------------------------------------------------------------------------------------
// IPv4 and ICMP.

fn udp4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), ttl)
        .udp(40000, 53)
        .write(&mut v, payload)
        .unwrap();
    v
}

#[test]
fn ipv4_view_reads_etherparse_and_smoltcp_packets() {
    // etherparse: options, DF, identification, a fragment offset.
    let payload = [0x5au8; 37];
    let mut h = Ipv4Header::new(37, 9, IpNumber::UDP, [172, 16, 0, 1], [172, 16, 9, 9]).unwrap();
    h.identification = 0xbeef;
    h.dont_fragment = true;
    h.options = [1u8, 1, 1, 0].into();
    h.total_len = 24 + 37;
    h.header_checksum = h.calc_header_checksum();
    let mut v = Vec::new();
    h.write(&mut v).unwrap();
    v.extend_from_slice(&payload);
    v.extend_from_slice(&[0; 5]); // padding
    let p = Ipv4Packet::new_checked(&v[..]).unwrap();
    assert_eq!((p.header_len(), p.total_len()), (24, 61));
    assert!(p.has_options());
    assert_eq!(p.options(), &[1, 1, 1, 0]);
    assert_eq!(
        (p.ident(), p.dont_frag(), p.more_frags()),
        (0xbeef, true, false)
    );
    assert!(!p.is_fragment());
    assert_eq!((p.ttl(), p.protocol()), (9, 17));
    assert_eq!(p.src_addr(), Ipv4Addr::new(172, 16, 0, 1));
    assert_eq!(p.dst(), [172, 16, 9, 9]);
    assert_eq!(p.payload(), &payload[..]);
    assert_eq!(p.checksum(), h.header_checksum);
    assert!(p.verify_checksum());

    h.dont_fragment = false;
    h.more_fragments = true;
    h.fragment_offset = etherparse::IpFragOffset::try_new(100).unwrap();
    h.header_checksum = h.calc_header_checksum();
    let mut v = Vec::new();
    h.write(&mut v).unwrap();
    v.extend_from_slice(&payload);
    let p = Ipv4Packet::new_checked(&v[..]).unwrap();
    assert!(p.more_frags() && p.is_fragment() && !p.dont_frag());
    assert_eq!(p.frag_offset(), 800);
    assert!(p.verify_checksum());
    // Last fragment: MF clear, offset set.
    let mut last = v.clone();
    last[6] &= !0x20;
    let mut lp = Ipv4Packet::new_checked(&mut last[..]).unwrap();
    lp.fill_checksum();
    assert!(lp.is_fragment() && !lp.more_frags());

    // smoltcp.
    let repr = st::Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 9, 8, 7),
        dst_addr: Ipv4Addr::new(10, 9, 8, 1),
        next_header: st::IpProtocol::Tcp,
        payload_len: 12,
        hop_limit: 33,
    };
    let mut b = [0u8; 32];
    repr.emit(&mut st::Ipv4Packet::new_unchecked(&mut b[..]), &caps());
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!((p.src_addr(), p.dst_addr()), (repr.src_addr, repr.dst_addr));
    assert_eq!((p.protocol(), p.ttl(), p.payload().len()), (6, 33, 12));
    assert!(p.verify_checksum());
}

#[test]
fn ipv4_written_header_parses_in_etherparse_and_smoltcp() {
    let mut b = [0u8; 28];
    let (src, dst) = (Ipv4Addr::new(100, 64, 0, 1), Ipv4Addr::new(8, 8, 4, 4));
    assert_eq!(
        ipv4::write_header(&mut b, src, dst, 17, 8, 61, 4242),
        Ok(20)
    );
    let h = etherparse::Ipv4HeaderSlice::from_slice(&b).unwrap();
    assert_eq!((h.source_addr(), h.destination_addr()), (src, dst));
    assert_eq!((h.ttl(), h.identification(), h.total_len()), (61, 4242, 28));
    assert_eq!(h.protocol(), IpNumber::UDP);
    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    let sp = st::Ipv4Packet::new_checked(&b[..]).unwrap();
    let r = st::Ipv4Repr::parse(&sp, &caps()).unwrap();
    assert_eq!(
        (r.src_addr, r.dst_addr, r.hop_limit, r.payload_len),
        (src, dst, 61, 8)
    );
}

#[test]
fn ipv4_hostile_headers() {
    let good = udp4(
        Ipv4Addr::new(1, 2, 3, 4),
        Ipv4Addr::new(5, 6, 7, 8),
        64,
        b"12345678",
    );
    let mut ihl4 = good.clone();
    ihl4[0] = 0x44;
    assert_eq!(
        Ipv4Packet::new_checked(&ihl4[..]).err(),
        Some(Ipv4Error::BadHeaderLen)
    );
    let mut ihl0 = good.clone();
    ihl0[0] = 0x40;
    assert_eq!(
        Ipv4Packet::new_checked(&ihl0[..]).err(),
        Some(Ipv4Error::BadHeaderLen)
    );
    // IHL*4 past the frame: a 60-byte header in a 36-byte packet.
    let mut ihl15 = good.clone();
    ihl15[0] = 0x4f;
    assert_eq!(
        Ipv4Packet::new_checked(&ihl15[..]).err(),
        Some(Ipv4Error::Truncated)
    );
    // Total length past the frame.
    let mut long = good.clone();
    long[2..4].copy_from_slice(&((good.len() + 1) as u16).to_be_bytes());
    assert_eq!(
        Ipv4Packet::new_checked(&long[..]).err(),
        Some(Ipv4Error::BadTotalLen)
    );
    long[2..4].copy_from_slice(&0xffffu16.to_be_bytes());
    assert_eq!(
        Ipv4Packet::new_checked(&long[..]).err(),
        Some(Ipv4Error::BadTotalLen)
    );
    // A truncated frame (the wire cut it short).
    assert_eq!(
        Ipv4Packet::new_checked(&good[..30]).err(),
        Some(Ipv4Error::BadTotalLen)
    );
    assert_eq!(
        Ipv4Packet::new_checked(&good[..12]).err(),
        Some(Ipv4Error::Truncated)
    );
    let mut v6 = good.clone();
    v6[0] = 0x65;
    assert_eq!(
        Ipv4Packet::new_checked(&v6[..]).err(),
        Some(Ipv4Error::BadVersion)
    );
    assert_eq!(
        Ipv4Error::Truncated.drop_reason(),
        dataplane::DropReason::Truncated
    );
    assert_eq!(
        Ipv4Error::BadTotalLen.drop_reason(),
        dataplane::DropReason::Malformed
    );
}

#[test]
fn ttl_zero_and_one_with_decrement_ttl() {
    for (ttl, expect) in [(0u8, 0u8), (1, 0), (2, 1), (255, 254)] {
        let mut v = udp4(
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(5, 6, 7, 8),
            ttl,
            b"x",
        );
        let before = v.clone();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        assert_eq!(p.decrement_ttl(), expect, "TTL {ttl}");
        assert!(p.verify_checksum());
        if ttl == 0 {
            assert_eq!(v, before, "TTL 0 leaves the packet alone");
        }
        let h = etherparse::Ipv4HeaderSlice::from_slice(&v).unwrap();
        assert_eq!(h.ttl(), expect);
        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    }
}

#[test]
fn icmpv4_echo_reply_in_place_checks_in_etherparse_and_smoltcp() {
    let (host, me) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 1));
    let data = b"abcdefghijklmnopqrstuvwxyz0123456789!"; // odd length
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, ROUTER_MAC)
        .ipv4(host.octets(), me.octets(), 3)
        .icmpv4_echo_request(0x1234, 77)
        .write(&mut v, data)
        .unwrap();
    let ip_len = v.len() - 14;
    v.extend_from_slice(&[0; 6]); // link padding is not part of the reply's length
    assert_eq!(ours4::echo_reply_in_place(&mut v[14..], 64), Ok(ip_len));
    let frame = &v[..14 + ip_len];
    let (h, icmp) = sliced_ipv4(frame);
    assert_eq!(
        (h.source_addr(), h.destination_addr(), h.ttl()),
        (me, host, 64)
    );
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::EchoReply(IcmpEchoHeader {
            id: 0x1234,
            seq: 77
        })
    );
    assert_eq!(icmp.payload(), data);

    let ip = st::Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let r = st::Ipv4Repr::parse(&ip, &caps()).unwrap();
    assert_eq!((r.src_addr, r.dst_addr, r.hop_limit), (me, host, 64));
    let ic = st::Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        st::Icmpv4Repr::parse(&ic, &caps()).unwrap(),
        st::Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 77,
            data
        }
    );
    // A reply is not answered again, and a corrupted request is refused.
    assert_eq!(
        ours4::echo_reply_in_place(&mut v[14..], 64),
        Err(ours4::EchoError::Unhandled)
    );
    let mut bad = Vec::new();
    PacketBuilder::ipv4(host.octets(), me.octets(), 3)
        .icmpv4_echo_request(1, 1)
        .write(&mut bad, b"zz")
        .unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    assert_eq!(
        ours4::echo_reply_in_place(&mut bad, 64),
        Err(ours4::EchoError::BadChecksum)
    );
}

#[test]
fn icmpv4_view_reads_smoltcp_echo_request() {
    let (host, me) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 1));
    let data = b"smoltcp ping";
    let icmp = st::Icmpv4Repr::EchoRequest {
        ident: 9,
        seq_no: 0xfffe,
        data,
    };
    let ip = st::Ipv4Repr {
        src_addr: host,
        dst_addr: me,
        next_header: st::IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 1,
    };
    let mut b = vec![0u8; 20 + icmp.buffer_len()];
    let mut p = st::Ipv4Packet::new_unchecked(&mut b[..]);
    ip.emit(&mut p, &caps());
    icmp.emit(
        &mut st::Icmpv4Packet::new_unchecked(p.payload_mut()),
        &caps(),
    );

    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert!(p.verify_checksum());
    let m = Icmpv4Packet::new_checked(p.payload()).unwrap();
    assert!(m.verify_checksum());
    assert_eq!((m.msg_type(), m.code()), (ours4::TYPE_ECHO_REQUEST, 0));
    assert_eq!((m.echo_ident(), m.echo_seq()), (9, 0xfffe));
    assert_eq!(m.data(), data);
    let n = ours4::echo_reply_in_place(&mut b, 64).unwrap();
    let ip = st::Ipv4Packet::new_checked(&b[..n]).unwrap();
    st::Ipv4Repr::parse(&ip, &caps()).unwrap();
    assert!(matches!(
        st::Icmpv4Repr::parse(
            &st::Icmpv4Packet::new_checked(ip.payload()).unwrap(),
            &caps()
        ),
        Ok(st::Icmpv4Repr::EchoReply {
            ident: 9,
            seq_no: 0xfffe,
            ..
        })
    ));
}

#[test]
fn icmpv4_errors_parse_in_etherparse_and_smoltcp() {
    use icmpv4::{DestUnreachableHeader as D, TimeExceededCode};
    let (host, far, me) = (
        Ipv4Addr::new(10, 0, 0, 5),
        Ipv4Addr::new(203, 0, 113, 7),
        Ipv4Addr::new(10, 0, 0, 1),
    );
    let cases = [
        (
            Icmpv4Error::TimeExceeded,
            Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
        ),
        (
            Icmpv4Error::NetUnreachable,
            Icmpv4Type::DestinationUnreachable(D::Network),
        ),
        (
            Icmpv4Error::HostUnreachable,
            Icmpv4Type::DestinationUnreachable(D::Host),
        ),
        (
            Icmpv4Error::PortUnreachable,
            Icmpv4Type::DestinationUnreachable(D::Port),
        ),
        (
            Icmpv4Error::AdminProhibited,
            Icmpv4Type::DestinationUnreachable(D::FilterProhibited),
        ),
        (
            Icmpv4Error::FragNeeded { mtu: 1400 },
            Icmpv4Type::DestinationUnreachable(D::FragmentationNeeded { next_hop_mtu: 1400 }),
        ),
    ];
    for payload_len in [0usize, 8, 100, 1472] {
        let offending = udp4(host, far, 1, &vec![0x77; payload_len]);
        for (kind, expect) in cases.clone() {
            let mut out = [0u8; 1500];
            let n = ours4::write_error(&mut out, kind, &offending, me, 64).unwrap();
            let quoted = offending.len().min(576 - 28);
            // The in-place form (headroom in front of the original) writes the same bytes.
            let mut in_place = vec![0u8; ours4::ERROR_HEADERS_LEN];
            in_place.extend_from_slice(&offending);
            let m = ours4::write_error_in_place(&mut in_place, kind, me, 64).unwrap();
            assert_eq!(&in_place[..m], &out[..n]);
            assert_eq!(n, 28 + quoted, "{kind:?} about {payload_len} bytes");
            assert!(n <= 576);
            let frame = eth(ETHERTYPE_IPV4, &out[..n]);
            let (h, icmp) = sliced_ipv4(&frame);
            assert_eq!((h.source_addr(), h.destination_addr()), (me, host));
            assert_eq!(
                (h.ttl(), h.protocol(), h.dont_fragment()),
                (64, IpNumber::ICMP, true)
            );
            assert_eq!(h.total_len() as usize, n);
            assert_eq!(icmp.icmp_type(), expect);
            assert_eq!(icmp.payload(), &offending[..quoted]);

            let ip = st::Ipv4Packet::new_checked(&out[..n]).unwrap();
            let r = st::Ipv4Repr::parse(&ip, &caps()).unwrap();
            assert_eq!(
                (r.src_addr, r.dst_addr, r.next_header),
                (me, host, st::IpProtocol::Icmp)
            );
            let ic = st::Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(ic.verify_checksum());
            let (t, c, _) = kind.header();
            assert_eq!((u8::from(ic.msg_type()), ic.msg_code()), (t, c));
            assert_eq!(ic.data(), &offending[..quoted]);
            if payload_len < 8 || quoted < offending.len() {
                // smoltcp's Repr wants 8 quoted payload bytes and a quote that is the whole original.
                continue;
            }
            let repr = st::Icmpv4Repr::parse(&ic, &caps());
            let (header, data) = match (kind, repr.unwrap()) {
                (
                    Icmpv4Error::TimeExceeded,
                    st::Icmpv4Repr::TimeExceeded {
                        reason,
                        header,
                        data,
                    },
                ) => {
                    assert_eq!(reason, st::Icmpv4TimeExceeded::TtlExpired);
                    (header, data)
                }
                (
                    _,
                    st::Icmpv4Repr::DstUnreachable {
                        reason,
                        header,
                        data,
                    },
                ) => {
                    let want = match kind {
                        Icmpv4Error::NetUnreachable => st::Icmpv4DstUnreachable::NetUnreachable,
                        Icmpv4Error::HostUnreachable => st::Icmpv4DstUnreachable::HostUnreachable,
                        Icmpv4Error::PortUnreachable => st::Icmpv4DstUnreachable::PortUnreachable,
                        Icmpv4Error::AdminProhibited => st::Icmpv4DstUnreachable::CommProhibited,
                        Icmpv4Error::FragNeeded { .. } => st::Icmpv4DstUnreachable::FragRequired,
                        Icmpv4Error::TimeExceeded => unreachable!(),
                    };
                    assert_eq!(reason, want);
                    (header, data)
                }
                (k, other) => panic!("{k:?} parsed as {other:?}"),
            };
            assert_eq!(
                (header.src_addr, header.dst_addr, header.hop_limit),
                (host, far, 1)
            );
            assert_eq!(header.next_header, st::IpProtocol::Udp);
            assert_eq!(data, &offending[20..quoted]);
            // Our own view agrees.
            let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(m.verify_checksum());
            if let Icmpv4Error::FragNeeded { mtu } = kind {
                assert_eq!(m.next_hop_mtu(), mtu);
            }
        }
    }
}

#[test]
fn icmpv4_errors_follow_the_rules() {
    let me = Ipv4Addr::new(10, 0, 0, 1);
    let mut out = [0u8; 600];
    // About an ICMP error: refused. About an echo request: allowed.
    let mut err = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 5], [1, 1, 1, 1], 1)
        .icmpv4(Icmpv4Type::TimeExceeded(
            icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut err, &[0; 28])
        .unwrap();
    assert!(ours4::must_not_answer(&err));
    assert_eq!(
        ours4::write_error(&mut out, Icmpv4Error::TimeExceeded, &err, me, 64),
        Err(ours4::WriteError::MustNotAnswer)
    );
    let mut echo = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 5], [1, 1, 1, 1], 1)
        .icmpv4_echo_request(1, 2)
        .write(&mut echo, b"hi")
        .unwrap();
    assert!(!ours4::must_not_answer(&echo));
    assert!(ours4::write_error(&mut out, Icmpv4Error::TimeExceeded, &echo, me, 64).is_ok());
    // A non-first fragment, broadcast and multicast destinations, bad sources.
    let base = udp4(
        Ipv4Addr::new(10, 0, 0, 5),
        Ipv4Addr::new(1, 1, 1, 1),
        1,
        &[0; 16],
    );
    let with = |off: usize, bytes: &[u8]| {
        let mut v = base.clone();
        v[off..off + bytes.len()].copy_from_slice(bytes);
        v
    };
    for (what, v) in [
        ("non-first fragment", with(6, &[0, 1])),
        ("broadcast dst", with(16, &[255, 255, 255, 255])),
        ("multicast dst", with(16, &[239, 0, 0, 1])),
        ("zero src", with(12, &[0, 0, 0, 0])),
        ("loopback src", with(12, &[127, 0, 0, 1])),
        ("broadcast src", with(12, &[255, 255, 255, 255])),
        ("multicast src", with(12, &[224, 0, 0, 5])),
    ] {
        assert!(ours4::must_not_answer(&v), "{what}");
    }
    assert!(
        !ours4::must_not_answer(&with(6, &[0x20, 0])),
        "first fragment"
    );
    // Malformed originals.
    assert_eq!(
        ours4::write_error(&mut out, Icmpv4Error::TimeExceeded, &base[..10], me, 64),
        Err(ours4::WriteError::BadOriginal(Ipv4Error::Truncated))
    );
}

// ---------------------------------------------------------------------------------------------------------
// IPv6 and ICMPv6.

fn udp6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(src.octets(), dst.octets(), hop)
        .udp(40000, 53)
        .write(&mut v, payload)
        .unwrap();
    v
}

#[test]
fn ipv6_view_reads_etherparse_and_smoltcp_packets() {
    let h = Ipv6Header {
        traffic_class: 0xb8,
        flow_label: Ipv6FlowLabel::try_new(0xabcde).unwrap(),
        payload_length: 5,
        next_header: IpNumber::UDP,
        hop_limit: 17,
        source: v6("2001:db8::1").octets(),
        destination: v6("2001:db8::2").octets(),
    };
    let mut v = Vec::new();
    h.write(&mut v).unwrap();
    v.extend_from_slice(b"hello");
    v.extend_from_slice(&[0; 3]);
    let p = Ipv6Packet::new_checked(&v[..]).unwrap();
    assert_eq!(
        (p.version(), p.traffic_class(), p.flow_label()),
        (6, 0xb8, 0xabcde)
    );
    assert_eq!(
        (p.payload_len(), p.next_header(), p.hop_limit()),
        (5, 17, 17)
    );
    assert_eq!(
        (p.src_addr(), p.dst_addr()),
        (v6("2001:db8::1"), v6("2001:db8::2"))
    );
    assert_eq!(p.payload(), b"hello");

    let repr = st::Ipv6Repr {
        src_addr: v6("fe80::1"),
        dst_addr: v6("ff02::1"),
        next_header: st::IpProtocol::Icmpv6,
        payload_len: 8,
        hop_limit: 255,
    };
    let mut b = [0u8; 48];
    repr.emit(&mut st::Ipv6Packet::new_unchecked(&mut b[..]));
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!((p.src_addr(), p.dst_addr()), (repr.src_addr, repr.dst_addr));
    assert_eq!(
        (p.next_header(), p.hop_limit(), p.payload_len()),
        (58, 255, 8)
    );

    // Our header, read back by both.
    let mut w = [0u8; 40];
    ipv6::write_header(&mut w, v6("2001:db8::a"), v6("2001:db8::b"), 6, 0, 3).unwrap();
    let e = etherparse::Ipv6HeaderSlice::from_slice(&w).unwrap();
    assert_eq!(
        (e.source_addr(), e.destination_addr()),
        (v6("2001:db8::a"), v6("2001:db8::b"))
    );
    assert_eq!(
        (e.hop_limit(), e.next_header(), e.payload_length()),
        (3, IpNumber::TCP, 0)
    );
    let r = st::Ipv6Repr::parse(&st::Ipv6Packet::new_checked(&w[..]).unwrap()).unwrap();
    assert_eq!((r.hop_limit, r.next_header), (3, st::IpProtocol::Tcp));
}

#[test]
fn ipv6_hostile_headers_and_hop_limit() {
    let good = udp6(v6("2001:db8::1"), v6("2001:db8::2"), 1, b"abc");
    assert_eq!(
        Ipv6Packet::new_checked(&good[..39]).err(),
        Some(Ipv6Error::Truncated)
    );
    assert_eq!(
        Ipv6Packet::new_checked(&good[..good.len() - 1]).err(),
        Some(Ipv6Error::BadPayloadLen)
    );
    let mut bad = good.clone();
    bad[0] = 0x45;
    assert_eq!(
        Ipv6Packet::new_checked(&bad[..]).err(),
        Some(Ipv6Error::BadVersion)
    );
    let mut hop = good.clone();
    let mut p = Ipv6Packet::new_checked(&mut hop[..]).unwrap();
    assert_eq!(p.decrement_hop_limit(), 0);
    assert_eq!(p.decrement_hop_limit(), 0);
}

#[test]
fn icmpv6_echo_reply_in_place_checks_in_etherparse_and_smoltcp() {
    let (host, me) = (v6("2001:db8:5::10"), v6("2001:db8:5::1"));
    let data = b"ping6 payload of odd length";
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, ROUTER_MAC)
        .ipv6(host.octets(), me.octets(), 9)
        .icmpv6_echo_request(0xabcd, 3)
        .write(&mut v, data)
        .unwrap();
    let ip_len = v.len() - 14;
    v.extend_from_slice(&[0xee; 4]);
    assert_eq!(ours6::echo_reply_in_place(&mut v[14..], 64), Ok(ip_len));
    let frame = &v[..14 + ip_len];
    let (h, icmp) = sliced_ipv6(frame);
    assert_eq!(
        (h.source_addr(), h.destination_addr(), h.hop_limit()),
        (me, host, 64)
    );
    assert_eq!(
        icmp.icmp_type(),
        Icmpv6Type::EchoReply(IcmpEchoHeader { id: 0xabcd, seq: 3 })
    );
    assert_eq!(icmp.payload(), data);

    let ip = st::Ipv6Packet::new_checked(&frame[14..]).unwrap();
    let ic = st::Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        st::Icmpv6Repr::parse(&me, &host, &ic, &caps()).unwrap(),
        st::Icmpv6Repr::EchoReply {
            ident: 0xabcd,
            seq_no: 3,
            data
        }
    );
    // Multicast destination: left to the local stack.
    let mut m = Vec::new();
    PacketBuilder::ipv6(host.octets(), v6("ff02::1").octets(), 1)
        .icmpv6_echo_request(1, 1)
        .write(&mut m, b"x")
        .unwrap();
    assert_eq!(
        ours6::echo_reply_in_place(&mut m, 64),
        Err(ours6::EchoError::Unhandled)
    );
}

#[test]
fn icmpv6_view_reads_smoltcp_echo_request() {
    let (host, me) = (v6("fe80::2"), v6("fe80::1"));
    let data = b"from smoltcp";
    let icmp = st::Icmpv6Repr::EchoRequest {
        ident: 5,
        seq_no: 6,
        data,
    };
    let ip = st::Ipv6Repr {
        src_addr: host,
        dst_addr: me,
        next_header: st::IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let mut b = vec![0u8; 40 + icmp.buffer_len()];
    let mut p = st::Ipv6Packet::new_unchecked(&mut b[..]);
    ip.emit(&mut p);
    icmp.emit(
        &host,
        &me,
        &mut st::Icmpv6Packet::new_unchecked(p.payload_mut()),
        &caps(),
    );

    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    let m = Icmpv6Packet::new_checked(p.payload()).unwrap();
    assert!(m.verify_checksum(&p.src(), &p.dst()));
    assert!(!m.verify_checksum(&p.dst(), &[0; 16]));
    assert_eq!((m.msg_type(), m.echo_ident(), m.echo_seq()), (128, 5, 6));
    assert_eq!(m.data(), data);
    let n = ours6::echo_reply_in_place(&mut b, 255).unwrap();
    let ip = st::Ipv6Packet::new_checked(&b[..n]).unwrap();
    assert!(matches!(
        st::Icmpv6Repr::parse(
            &me,
            &host,
            &st::Icmpv6Packet::new_checked(ip.payload()).unwrap(),
            &caps()
        ),
        Ok(st::Icmpv6Repr::EchoReply {
            ident: 5,
            seq_no: 6,
            ..
        })
    ));
}

#[test]
fn icmpv6_errors_parse_in_etherparse_and_smoltcp() {
    use icmpv6::{DestUnreachableCode as D, TimeExceededCode};
    let (host, far, me) = (v6("2001:db8::5"), v6("2001:db8:ffff::7"), v6("2001:db8::1"));
    let cases = [
        (
            Icmpv6Error::TimeExceeded,
            Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded),
        ),
        (
            Icmpv6Error::NoRoute,
            Icmpv6Type::DestinationUnreachable(D::NoRoute),
        ),
        (
            Icmpv6Error::AdminProhibited,
            Icmpv6Type::DestinationUnreachable(D::Prohibited),
        ),
        (
            Icmpv6Error::AddressUnreachable,
            Icmpv6Type::DestinationUnreachable(D::Address),
        ),
        (
            Icmpv6Error::PortUnreachable,
            Icmpv6Type::DestinationUnreachable(D::Port),
        ),
        (
            Icmpv6Error::PacketTooBig { mtu: 1400 },
            Icmpv6Type::PacketTooBig { mtu: 1400 },
        ),
    ];
    for payload_len in [0usize, 8, 300, 1452] {
        let offending = udp6(host, far, 1, &vec![0x66; payload_len]);
        for (kind, expect) in cases {
            let mut out = [0u8; 2000];
            let n = ours6::write_error(&mut out, kind, &offending, me, 64).unwrap();
            let quoted = offending.len().min(1280 - 48);
            let mut in_place = vec![0u8; ours6::ERROR_HEADERS_LEN];
            in_place.extend_from_slice(&offending);
            let m = ours6::write_error_in_place(&mut in_place, kind, me, 64).unwrap();
            assert_eq!(&in_place[..m], &out[..n]);
            assert_eq!(n, 48 + quoted, "{kind:?} about {payload_len} bytes");
            let frame = eth(ETHERTYPE_IPV6, &out[..n]);
            let (h, icmp) = sliced_ipv6(&frame);
            assert_eq!(
                (h.source_addr(), h.destination_addr(), h.hop_limit()),
                (me, host, 64)
            );
            assert_eq!(h.payload_length() as usize, n - 40);
            assert_eq!(icmp.icmp_type(), expect);
            assert_eq!(icmp.payload(), &offending[..quoted]);

            let ip = st::Ipv6Packet::new_checked(&out[..n]).unwrap();
            let r = st::Ipv6Repr::parse(&ip).unwrap();
            assert_eq!(
                (r.src_addr, r.dst_addr, r.next_header),
                (me, host, st::IpProtocol::Icmpv6)
            );
            let ic = st::Icmpv6Packet::new_checked(ip.payload()).unwrap();
            let (header, data) = match (
                kind,
                st::Icmpv6Repr::parse(&me, &host, &ic, &caps()).unwrap(),
            ) {
                (
                    Icmpv6Error::TimeExceeded,
                    st::Icmpv6Repr::TimeExceeded {
                        reason,
                        header,
                        data,
                    },
                ) => {
                    assert_eq!(reason, st::Icmpv6TimeExceeded::HopLimitExceeded);
                    (header, data)
                }
                (
                    Icmpv6Error::PacketTooBig { mtu: want },
                    st::Icmpv6Repr::PktTooBig { mtu, header, data },
                ) => {
                    assert_eq!(mtu, want);
                    (header, data)
                }
                (
                    _,
                    st::Icmpv6Repr::DstUnreachable {
                        reason,
                        header,
                        data,
                    },
                ) => {
                    let want = match kind {
                        Icmpv6Error::NoRoute => st::Icmpv6DstUnreachable::NoRoute,
                        Icmpv6Error::AdminProhibited => st::Icmpv6DstUnreachable::AdminProhibit,
                        Icmpv6Error::AddressUnreachable => {
                            st::Icmpv6DstUnreachable::AddrUnreachable
                        }
                        Icmpv6Error::PortUnreachable => st::Icmpv6DstUnreachable::PortUnreachable,
                        _ => unreachable!(),
                    };
                    assert_eq!(reason, want);
                    (header, data)
                }
                (k, other) => panic!("{k:?} parsed as {other:?}"),
            };
            assert_eq!(
                (header.src_addr, header.dst_addr, header.hop_limit),
                (host, far, 1)
            );
            assert_eq!(header.next_header, st::IpProtocol::Udp);
            assert_eq!(data, &offending[40..quoted]);
            let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(m.verify_checksum(&me.octets(), &host.octets()));
            if let Icmpv6Error::PacketTooBig { mtu } = kind {
                assert_eq!(m.mtu(), mtu);
            }
        }
    }
}

#[test]
fn icmpv6_errors_follow_rfc4443_2_4_e() {
    let me = v6("2001:db8::1");
    let mut out = [0u8; 1400];
    let mut err = Vec::new();
    PacketBuilder::ipv6(v6("2001:db8::5").octets(), v6("2001:db8::9").octets(), 1)
        .icmpv6(Icmpv6Type::DestinationUnreachable(
            icmpv6::DestUnreachableCode::Port,
        ))
        .write(&mut err, &[0; 48])
        .unwrap();
    assert_eq!(
        ours6::write_error(&mut out, Icmpv6Error::TimeExceeded, &err, me, 64),
        Err(ours6::WriteError::MustNotAnswer)
    );
    let mc = udp6(v6("2001:db8::5"), v6("ff0e::1"), 1, &[0; 8]);
    assert!(ours6::must_not_answer(&mc, Icmpv6Error::TimeExceeded));
    assert!(!ours6::must_not_answer(
        &mc,
        Icmpv6Error::PacketTooBig { mtu: 1280 }
    ));
    let n = ours6::write_error(
        &mut out,
        Icmpv6Error::PacketTooBig { mtu: 1280 },
        &mc,
        me,
        64,
    )
    .unwrap();
    sliced_ipv6(&eth(ETHERTYPE_IPV6, &out[..n]));
    let unspecified = udp6(Ipv6Addr::UNSPECIFIED, v6("2001:db8::9"), 1, &[0; 8]);
    assert!(ours6::must_not_answer(
        &unspecified,
        Icmpv6Error::PacketTooBig { mtu: 1280 }
    ));
}

// ---------------------------------------------------------------------------------------------------------
// Neighbour discovery.

fn smoltcp_ndisc(frame: &[u8]) -> (st::Ipv6Repr, st::NdiscRepr<'_>) {
    let ef = st::EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(ef.ethertype(), st::EthernetProtocol::Ipv6);
    let ip = st::Ipv6Packet::new_checked(ef.payload()).unwrap();
    let r = st::Ipv6Repr::parse(&ip).unwrap();
    assert_eq!((r.hop_limit, r.next_header), (255, st::IpProtocol::Icmpv6));
    let ic = st::Icmpv6Packet::new_checked(&frame[54..14 + 40 + r.payload_len]).unwrap();
    match st::Icmpv6Repr::parse(&r.src_addr, &r.dst_addr, &ic, &caps()).unwrap() {
        st::Icmpv6Repr::Ndisc(nd) => (r, nd),
        other => panic!("not ND: {other:?}"),
    }
}

fn lladdr(mac: Mac) -> Option<st::RawHardwareAddress> {
    Some(st::RawHardwareAddress::from_bytes(&mac))
}

#[test]
fn ndisc_builders_parse_in_etherparse_and_smoltcp() {
    let me = v6("fe80::aa:ff:fe00:1");
    let target = v6("2001:db8::1234:5678");
    let mut f = [0u8; 128];

    // Multicast NS.
    let n = ndisc::write_solicitation(&mut f, ROUTER_MAC, me, target).unwrap();
    let (h, icmp) = sliced_ipv6(&f[..n]);
    assert_eq!((h.hop_limit(), h.source_addr()), (255, me));
    assert_eq!(h.destination_addr(), v6("ff02::1:ff34:5678"));
    assert_eq!(icmp.type_u8(), 135);
    let e = etherparse::Ethernet2HeaderSlice::from_slice(&f[..n]).unwrap();
    assert_eq!(e.destination(), [0x33, 0x33, 0xff, 0x34, 0x56, 0x78]);
    let (r, nd) = smoltcp_ndisc(&f[..n]);
    assert_eq!(r.dst_addr, v6("ff02::1:ff34:5678"));
    assert_eq!(
        nd,
        st::NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr: lladdr(ROUTER_MAC)
        }
    );

    // DAD NS: from ::, no option.
    let n = ndisc::write_solicitation(&mut f, ROUTER_MAC, Ipv6Addr::UNSPECIFIED, target).unwrap();
    sliced_ipv6(&f[..n]);
    let (_, nd) = smoltcp_ndisc(&f[..n]);
    assert_eq!(
        nd,
        st::NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr: None
        }
    );

    // Unicast NS (NUD).
    let n = ndisc::write_unicast_solicitation(&mut f, ROUTER_MAC, me, HOST_MAC, target).unwrap();
    let (h, _) = sliced_ipv6(&f[..n]);
    assert_eq!(h.destination_addr(), target);
    assert_eq!(&f[0..6], &HOST_MAC);
    let (_, nd) = smoltcp_ndisc(&f[..n]);
    assert!(matches!(
        nd,
        st::NdiscRepr::NeighborSolicit {
            lladdr: Some(_),
            ..
        }
    ));

    // Solicited NA with every flag.
    let all = NaFlags {
        router: true,
        solicited: true,
        override_: true,
    };
    let host = v6("fe80::bb:ff:fe00:2");
    let n = ndisc::write_advertisement(&mut f, ROUTER_MAC, me, HOST_MAC, host, me, all).unwrap();
    assert_eq!(n, ndisc::FRAME_LEN);
    let (h, icmp) = sliced_ipv6(&f[..n]);
    assert_eq!((h.destination_addr(), icmp.type_u8()), (host, 136));
    let (_, nd) = smoltcp_ndisc(&f[..n]);
    assert_eq!(
        nd,
        st::NdiscRepr::NeighborAdvert {
            flags: st::NdiscNeighborFlags::ROUTER
                | st::NdiscNeighborFlags::SOLICITED
                | st::NdiscNeighborFlags::OVERRIDE,
            target_addr: me,
            lladdr: lladdr(ROUTER_MAC)
        }
    );
    // Flags one at a time.
    for (flags, want) in [
        (
            NaFlags {
                router: true,
                ..NaFlags::default()
            },
            st::NdiscNeighborFlags::ROUTER,
        ),
        (
            NaFlags {
                solicited: true,
                ..NaFlags::default()
            },
            st::NdiscNeighborFlags::SOLICITED,
        ),
        (
            NaFlags {
                override_: true,
                ..NaFlags::default()
            },
            st::NdiscNeighborFlags::OVERRIDE,
        ),
        (NaFlags::default(), st::NdiscNeighborFlags::empty()),
    ] {
        let n =
            ndisc::write_advertisement(&mut f, ROUTER_MAC, me, HOST_MAC, host, me, flags).unwrap();
        let (_, nd) = smoltcp_ndisc(&f[..n]);
        assert!(matches!(nd, st::NdiscRepr::NeighborAdvert { flags, .. } if flags == want));
    }

    // Unsolicited NA to all nodes: S is cleared even if asked for.
    let n = ndisc::write_unsolicited_advertisement(&mut f, ROUTER_MAC, me, me, all).unwrap();
    let (h, _) = sliced_ipv6(&f[..n]);
    assert_eq!(h.destination_addr(), v6("ff02::1"));
    assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    let (_, nd) = smoltcp_ndisc(&f[..n]);
    assert_eq!(
        nd,
        st::NdiscRepr::NeighborAdvert {
            flags: st::NdiscNeighborFlags::ROUTER | st::NdiscNeighborFlags::OVERRIDE,
            target_addr: me,
            lladdr: lladdr(ROUTER_MAC)
        }
    );
}

/// An Ethernet + IPv6 + ICMPv6 frame carrying smoltcp's emission of `nd`.
fn smoltcp_nd_frame(src: Ipv6Addr, dst: Ipv6Addr, nd: st::NdiscRepr<'_>, hop: u8) -> Vec<u8> {
    let icmp = st::Icmpv6Repr::Ndisc(nd);
    let ip = st::Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: st::IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: hop,
    };
    let mut b = vec![0u8; 14 + 40 + icmp.buffer_len()];
    b[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let mut p = st::Ipv6Packet::new_unchecked(&mut b[14..]);
    ip.emit(&mut p);
    icmp.emit(
        &src,
        &dst,
        &mut st::Icmpv6Packet::new_unchecked(p.payload_mut()),
        &caps(),
    );
    b
}

#[test]
fn ndisc_view_reads_smoltcp_messages() {
    let (host, me) = (v6("fe80::2"), v6("fe80::1"));
    let ns = smoltcp_nd_frame(
        host,
        ipv6::solicited_node(&me.octets()).into(),
        st::NdiscRepr::NeighborSolicit {
            target_addr: me,
            lladdr: lladdr(HOST_MAC),
        },
        255,
    );
    let (ip, nd) = NdiscPacket::parse(&ns[14..]).unwrap();
    assert_eq!(ip.src_addr(), host);
    assert!(nd.is_solicitation());
    assert_eq!(nd.target_addr(), me);
    assert_eq!(nd.source_ll_addr(), Some(HOST_MAC));
    assert_eq!(nd.target_ll_addr(), None);
    let opts: Vec<_> = nd.option_iter().collect();
    assert_eq!(opts.len(), 1);
    assert_eq!(opts[0].kind, ndisc::OPT_SOURCE_LL_ADDR);

    let na = smoltcp_nd_frame(
        host,
        me,
        st::NdiscRepr::NeighborAdvert {
            flags: st::NdiscNeighborFlags::SOLICITED | st::NdiscNeighborFlags::OVERRIDE,
            target_addr: host,
            lladdr: lladdr(HOST_MAC),
        },
        255,
    );
    let (_, nd) = NdiscPacket::parse(&na[14..]).unwrap();
    assert!(nd.is_advertisement() && nd.solicited() && nd.override_flag() && !nd.router());
    assert_eq!(
        (nd.target_addr(), nd.target_ll_addr()),
        (host, Some(HOST_MAC))
    );

    // The same NS from off-link (hop limit 64) is refused.
    let far = smoltcp_nd_frame(
        host,
        me,
        st::NdiscRepr::NeighborSolicit {
            target_addr: me,
            lladdr: None,
        },
        64,
    );
    assert_eq!(
        NdiscPacket::parse(&far[14..]).err(),
        Some(NdiscError::BadHopLimit)
    );
}

#[test]
fn ndisc_hostile_options() {
    let mut f = [0u8; 86];
    let n = ndisc::write_solicitation(&mut f, ROUTER_MAC, v6("fe80::1"), v6("fe80::2")).unwrap();
    let msg = f[54..n].to_vec();
    // Zero-length option.
    let mut zero = msg.clone();
    zero[25] = 0;
    assert_eq!(
        NdiscPacket::new_checked(&zero[..], 255).err(),
        Some(NdiscError::BadOption)
    );
    // An option running past the end.
    let mut past = msg.clone();
    past[25] = 3;
    assert_eq!(
        NdiscPacket::new_checked(&past[..], 255).err(),
        Some(NdiscError::BadOption)
    );
    // A second option cut short after its type byte.
    let mut cut = msg.clone();
    cut.push(OPT_PAD_TYPE);
    assert_eq!(
        NdiscPacket::new_checked(&cut[..], 255).err(),
        Some(NdiscError::BadOption)
    );
    assert_eq!(
        NdiscPacket::new_checked(&msg[..20], 255).err(),
        Some(NdiscError::Truncated)
    );
    assert_eq!(
        NdiscPacket::new_checked(&msg[..], 254).err(),
        Some(NdiscError::BadHopLimit)
    );
    let mut code = msg.clone();
    code[1] = 3;
    assert_eq!(
        NdiscPacket::new_checked(&code[..], 255).err(),
        Some(NdiscError::BadCode)
    );
    // Through the whole frame the option is judged before the checksum.
    let mut frame = f;
    frame[54 + 25] = 0;
    assert_eq!(
        NdiscPacket::parse(&frame[14..n]).err(),
        Some(NdiscError::BadOption)
    );
    assert_eq!(
        NdiscError::BadOption.drop_reason(),
        dataplane::DropReason::Malformed
    );
}

const OPT_PAD_TYPE: u8 = 14; // any type: the option is cut short before its length byte

// ---------------------------------------------------------------------------------------------------------
// No input makes anything panic.

/// A valid message of one of the kinds the views read, built from `seed` bytes, for the hostile test to mutate.
fn valid_message(kind: u8, seed: &[u8]) -> Vec<u8> {
    let a4 = |i: usize| {
        let mut a = [10, 0, 0, 1];
        a[1..].copy_from_slice(&seed.get(i..i + 3).unwrap_or(&[1, 2, 3])[..3]);
        a
    };
    let data = &seed[..seed.len().min(300)];
    let mut v = Vec::new();
    match kind {
        0 => PacketBuilder::ipv4(a4(0), a4(3), 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut v, data)
            .unwrap(),
        1 => PacketBuilder::ipv4(a4(0), a4(3), 1)
            .udp(1, 2)
            .write(&mut v, data)
            .unwrap(),
        2 => PacketBuilder::ipv6(v6("2001:db8::1").octets(), v6("2001:db8::2").octets(), 64)
            .icmpv6_echo_request(1, 2)
            .write(&mut v, data)
            .unwrap(),
        3 => PacketBuilder::ipv6(v6("2001:db8::1").octets(), v6("2001:db8::2").octets(), 1)
            .udp(1, 2)
            .write(&mut v, data)
            .unwrap(),
        4 => {
            let mut f = [0u8; 60];
            arp::write_request(&mut f, ROUTER_MAC, a4(0).into(), a4(3).into()).unwrap();
            v.extend_from_slice(&f[14..]);
        }
        _ => {
            let mut f = [0u8; 86];
            let n = ndisc::write_solicitation(&mut f, ROUTER_MAC, v6("fe80::1"), v6("fe80::2"))
                .unwrap();
            // The IPv6 packet, or the ICMPv6 message alone.
            let from = if seed.first().is_some_and(|b| b & 1 == 0) {
                14
            } else {
                54
            };
            v.extend_from_slice(&f[from..n]);
        }
    }
    v
}

/// Bytes that are random, random behind a plausible header, or a valid message with a byte changed and/or cut
/// short, so that every check, not only the first, meets bad input.
fn hostile_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..12,
        proptest::collection::vec(any::<u8>(), 0..700),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0u8..4,
    )
        .prop_map(|(shape, mut b, at, val, how)| {
            let n = b.len();
            match shape {
                1 if n >= 20 => {
                    b[0] = 0x40 | (b[0] & 0x0f);
                    let total = (b[2] as usize).max(20).min(n) as u16;
                    b[2..4].copy_from_slice(&total.to_be_bytes());
                    if b[9] & 1 == 0 {
                        b[9] = 1;
                    }
                }
                2 if n >= 40 => {
                    b[0] = 0x60;
                    b[4..6].copy_from_slice(&((n - 40) as u16).to_be_bytes());
                    if b[6] & 1 == 0 {
                        b[6] = 58;
                    }
                }
                3 if n >= 28 => {
                    let op = 1 + (b[7] & 1);
                    b[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, op]);
                }
                4 if n >= 24 => {
                    b[0] = if b[0] & 1 == 0 { 135 } else { 136 };
                    b[1] = 0;
                    b[8] = 0xfe;
                }
                6..=11 => {
                    b = valid_message(shape - 6, &b);
                    let m = b.len();
                    if how & 1 == 1 {
                        b[at.index(m)] = val; // one byte changed (maybe to itself)
                    }
                    if how & 2 == 2 {
                        b.truncate(at.index(m + 1));
                    }
                }
                _ => {}
            }
            b
        })
}

fn exercise_ipv4(b: &[u8]) {
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp_ecn(),
            p.total_len(),
            p.ident(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
        );
        let _ = (
            p.ttl(),
            p.protocol(),
            p.checksum(),
            p.src(),
            p.dst(),
            p.src_addr(),
            p.dst_addr(),
        );
        let _ = (
            p.has_options(),
            p.options(),
            p.header(),
            p.payload(),
            p.packet(),
            p.verify_checksum(),
        );
        assert!(p.payload().len() + p.header_len() == p.total_len());
        let mut m = b.to_vec();
        let mut q = Ipv4Packet::new_checked(&mut m[..]).unwrap();
        let was = q.verify_checksum();
        q.decrement_ttl();
        q.set_src(Ipv4Addr::new(1, 2, 3, 4));
        q.set_dst(Ipv4Addr::new(5, 6, 7, 8));
        q.update_ttl(7);
        // Incremental updates keep a good checksum good (and a bad one bad).
        assert_eq!(q.verify_checksum(), was);
        q.payload_mut().fill(0);
    }
    let _ = ours4::must_not_answer(b);
    let mut out = vec![0u8; b.len() % 700];
    if let Ok(n) = ours4::write_error(
        &mut out,
        Icmpv4Error::TimeExceeded,
        b,
        Ipv4Addr::LOCALHOST,
        64,
    ) {
        assert!(n <= out.len() && n <= 576);
        let p = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(p.verify_checksum());
        assert!(Icmpv4Packet::new_checked(p.payload())
            .unwrap()
            .verify_checksum());
    }
    let mut m = vec![0u8; ours4::ERROR_HEADERS_LEN];
    m.extend_from_slice(b);
    let copied = ours4::write_error(
        &mut vec![0u8; m.len()],
        Icmpv4Error::HostUnreachable,
        b,
        Ipv4Addr::LOCALHOST,
        9,
    );
    let in_place =
        ours4::write_error_in_place(&mut m, Icmpv4Error::HostUnreachable, Ipv4Addr::LOCALHOST, 9);
    assert_eq!(copied, in_place);
    if let Ok(n) = in_place {
        assert!(Ipv4Packet::new_checked(&m[..n]).unwrap().verify_checksum());
    }
    assert!(ours4::write_error_in_place(
        &mut m[..27],
        Icmpv4Error::TimeExceeded,
        Ipv4Addr::LOCALHOST,
        9
    )
    .is_err());
    let mut m = b.to_vec();
    if let Ok(n) = ours4::echo_reply_in_place(&mut m, 64) {
        let p = Ipv4Packet::new_checked(&m[..n]).unwrap();
        assert!(p.verify_checksum());
        assert!(Icmpv4Packet::new_checked(p.payload())
            .unwrap()
            .verify_checksum());
    }
    if let Ok(m) = Icmpv4Packet::new_checked(b) {
        let _ = (
            m.msg_type(),
            m.code(),
            m.checksum(),
            m.rest_of_header(),
            m.echo_ident(),
        );
        let _ = (
            m.echo_seq(),
            m.next_hop_mtu(),
            m.data(),
            m.verify_checksum(),
        );
    }
}

fn exercise_ipv6(b: &[u8]) {
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
            p.next_header(),
        );
        let _ = (
            p.hop_limit(),
            p.src(),
            p.dst(),
            p.src_addr(),
            p.dst_addr(),
            p.payload(),
            p.packet(),
        );
        if let Some(ul) = p.upper_layer() {
            assert!(ul.offset <= p.payload_len());
        }
        let mut m = b.to_vec();
        let mut q = Ipv6Packet::new_checked(&mut m[..]).unwrap();
        q.decrement_hop_limit();
        q.payload_mut().fill(1);
    }
    for kind in [
        Icmpv6Error::TimeExceeded,
        Icmpv6Error::PacketTooBig { mtu: 1280 },
    ] {
        let _ = ours6::must_not_answer(b, kind);
        let mut out = vec![0u8; b.len() % 1400];
        if let Ok(n) = ours6::write_error(&mut out, kind, b, Ipv6Addr::LOCALHOST, 64) {
            assert!(n <= out.len() && n <= 1280);
            let p = Ipv6Packet::new_checked(&out[..n]).unwrap();
            let m = Icmpv6Packet::new_checked(p.payload()).unwrap();
            assert!(m.verify_checksum(&p.src(), &p.dst()));
        }
    }
    let mut m = vec![0u8; ours6::ERROR_HEADERS_LEN];
    m.extend_from_slice(b);
    let copied = ours6::write_error(
        &mut vec![0u8; m.len()],
        Icmpv6Error::NoRoute,
        b,
        Ipv6Addr::LOCALHOST,
        9,
    );
    let in_place =
        ours6::write_error_in_place(&mut m, Icmpv6Error::NoRoute, Ipv6Addr::LOCALHOST, 9);
    assert_eq!(copied, in_place);
    assert!(ours6::write_error_in_place(
        &mut m[..47],
        Icmpv6Error::NoRoute,
        Ipv6Addr::LOCALHOST,
        9
    )
    .is_err());
    let mut m = b.to_vec();
    if let Ok(n) = ours6::echo_reply_in_place(&mut m, 64) {
        let p = Ipv6Packet::new_checked(&m[..n]).unwrap();
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert!(icmp.verify_checksum(&p.src(), &p.dst()));
    }
    if let Ok(m) = Icmpv6Packet::new_checked(b) {
        let _ = (
            m.msg_type(),
            m.code(),
            m.checksum(),
            m.rest_of_header(),
            m.echo_ident(),
        );
        let _ = (
            m.echo_seq(),
            m.mtu(),
            m.data(),
            m.verify_checksum(&[0; 16], &[1; 16]),
        );
    }
    if let Ok((_, nd)) = NdiscPacket::parse(b) {
        let _ = (nd.target(), nd.source_ll_addr(), nd.target_ll_addr());
    }
}

fn exercise_l2(b: &[u8], hop: u8) {
    if let Ok(p) = ArpPacket::new_checked(b) {
        let _ = (
            p.op(),
            p.sha(),
            p.spa(),
            p.tha(),
            p.tpa(),
            p.spa_addr(),
            p.tpa_addr(),
            p.is_gratuitous(),
        );
    }
    let mut m = b.to_vec();
    let _ = arp::reply_in_place(&mut m, ROUTER_MAC);
    for h in [hop, 255] {
        if let Ok(nd) = NdiscPacket::new_checked(b, h) {
            let _ = (
                nd.msg_type(),
                nd.code(),
                nd.checksum(),
                nd.is_solicitation(),
                nd.is_advertisement(),
            );
            let _ = (
                nd.router(),
                nd.solicited(),
                nd.override_flag(),
                nd.target(),
                nd.target_addr(),
            );
            let _ = (nd.options(), nd.source_ll_addr(), nd.target_ll_addr());
            let _ = nd.check_addresses(&[0; 16], &[0xff; 16]);
            let total: usize = nd.option_iter().map(|o| o.data.len() + 2).sum();
            assert_eq!(total, nd.options().len(), "options tile the option area");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Random and half-plausible bytes through every checked constructor, accessor, in-place rewrite and
    /// builder: nothing panics, and whatever is produced verifies.
    #[test]
    fn hostile_bytes_never_panic(b in hostile_strategy(), hop in any::<u8>()) {
        exercise_ipv4(&b);
        exercise_ipv6(&b);
        exercise_l2(&b, hop);
        // As Ethernet frames, too (ARP reply in place wants the whole frame).
        if b.len() > 14 {
            exercise_l2(&b[14..], hop);
        }
    }
}
