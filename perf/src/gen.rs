//! The traffic generator: a [`Profile`] (frame sizes, flows, protocol, encapsulation) turned into frames sent
//! in bursts over any wharf [`PortQueue`] (ring, afpacket, dpdk), paced to a packet rate or as fast as the
//! port takes them.
//!
//! Every frame carries a 12-byte [signature](SIG_LEN) at the start of its L4 payload: a 16-bit magic, an 8-bit
//! trial number (so stragglers of an earlier trial are not counted in the next), a 40-bit sequence number and
//! the low 32 bits of the send time in nanoseconds on the shared [`Clock`]. The
//! receiver ([`crate::analyse`]) finds it by parsing the headers, so VLAN tags added or removed on the way, or
//! addresses rewritten by NAT, do not hide it; it counts loss, duplicates and reordering from the sequence and
//! one-way latency from the timestamp (both ends run in one process, on one clock).
//!
//! Frames are built from one template per frame size; per packet, the generator copies the template into a
//! pool buffer, writes the flow's addresses and ports, the signature, and fixes the IPv4 and L4 checksums
//! incrementally from sums precomputed over the fixed bytes. Nothing is allocated per packet.

use dataplane::{Burst, Pool, PortQueue};
use std::time::Instant;

/// Magic at the start of the signature ("Wh").
pub const MAGIC: u16 = 0x5768;
/// Bytes of signature in each frame's L4 payload: magic (2), trial (1), sequence number (5), send time (4).
pub const SIG_LEN: usize = 12;
/// The IMIX mix (simple IMIX: 7 × 64, 4 × 594, 1 × 1518 bytes with FCS), in the order it is sent.
pub const IMIX: [usize; 12] = [64, 594, 64, 64, 1518, 64, 594, 64, 64, 594, 64, 594];
/// Bytes of Ethernet FCS that frame sizes include (RFC 2544 sizes) and buffers do not.
pub const FCS: usize = 4;
/// Longest sequence number the signature holds.
pub const SEQ_MASK: u64 = (1 << 40) - 1;

/// The shared time base of generator and receiver: nanoseconds since it was made.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    /// Nanoseconds since the clock was made.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// L4 protocol of the generated traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// UDP datagrams.
    Udp,
    /// TCP segments without a handshake: one SYN then three ACKs, over and over (stateless devices see a
    /// mix of connection openings and established traffic). TCP frames are at least 66 bytes without FCS.
    Tcp,
    /// ICMP echo requests (the flow number is the identifier).
    Icmp,
}

impl Proto {
    fn number(self) -> u8 {
        match self {
            Proto::Udp => 17,
            Proto::Tcp => 6,
            Proto::Icmp => 1,
        }
    }

    fn header_len(self) -> usize {
        match self {
            Proto::Udp | Proto::Icmp => 8,
            Proto::Tcp => 20,
        }
    }
}

/// What wraps the IPv4 packet besides Ethernet.
///
/// The hook for the overlay scenario: a `Vxlan { vni, outer addresses }` variant goes here, with its outer
/// headers written by [`Generator`]'s template builder (`build_template`) before the inner frame; the
/// receiver already looks through VXLAN (UDP port 4789) to the inner frame (see [`crate::analyse::locate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// Plain Ethernet.
    None,
    /// One 802.1Q tag with this VLAN id.
    Vlan(u16),
}

impl Encap {
    fn len(self) -> usize {
        match self {
            Encap::None => 0,
            Encap::Vlan(_) => 4,
        }
    }
}

/// Frame sizes, as RFC 2544 counts them: with the 4-byte FCS, which the buffers leave out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizes(pub Vec<usize>);

impl Sizes {
    /// One size.
    pub fn fixed(n: usize) -> Sizes {
        Sizes(vec![n])
    }

    /// Parses `64`, `imix`, or a list `64,128,1518` (sent in that order, cycling).
    pub fn parse(s: &str) -> Result<Sizes, String> {
        if s.eq_ignore_ascii_case("imix") {
            return Ok(Sizes(IMIX.to_vec()));
        }
        let v = s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse::<usize>()
                    .map_err(|e| format!("frame size {x:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(bad) = v.iter().find(|&&n| !(64..=9018).contains(&n)) {
            return Err(format!("frame size {bad}: 64 to 9018 bytes (with FCS)"));
        }
        Ok(Sizes(v))
    }

    /// Mean size in bytes (with FCS).
    pub fn mean(&self) -> f64 {
        self.0.iter().sum::<usize>() as f64 / self.0.len().max(1) as f64
    }

    /// How the sizes are written in reports: `64`, `imix` or the list.
    pub fn label(&self) -> String {
        if self.0 == IMIX {
            "imix".into()
        } else {
            let v: Vec<String> = self.0.iter().map(|n| n.to_string()).collect();
            v.join(",")
        }
    }
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Frame sizes (with FCS), cycled packet by packet.
    pub sizes: Sizes,
    /// Flows, 1 to 2^24: flow `f` has source address `src_ip + f / 4096`, source port (ICMP identifier)
    /// `1024 + f % 4096` and destination `dst_ips[f % len]`. Packet `n` belongs to flow `n % flows`.
    pub flows: u32,
    /// L4 protocol.
    pub proto: Proto,
    /// Encapsulation.
    pub encap: Encap,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Base source address.
    pub src_ip: [u8; 4],
    /// Destination addresses, cycled over the flows (at least one).
    pub dst_ips: Vec<[u8; 4]>,
    /// Destination port (UDP, TCP).
    pub dst_port: u16,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            sizes: Sizes::fixed(64),
            flows: 1,
            proto: Proto::Udp,
            encap: Encap::None,
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_ip: [198, 18, 0, 1],
            dst_ips: vec![[198, 19, 0, 1]],
            dst_port: 9,
        }
    }
}

/// Source ports per source address.
const PORTS_PER_IP: u32 = 4096;

/// Where the varying fields of a template are.
#[derive(Clone, Copy, Debug)]
struct Layout {
    l3: usize,
    l4: usize,
    sig: usize,
}

/// One frame size's template and its precomputed checksum sums.
struct Template {
    bytes: Vec<u8>,
    /// One's-complement sum (unfolded) of the IPv4 header without the addresses and the checksum.
    ip_sum: u32,
    /// The same for the L4 checksum: pseudo-header without the addresses, L4 header without the varying
    /// fields and the checksum; the payload after the signature is zero.
    l4_sum: u32,
}

fn sum16(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut c = data.chunks_exact(2);
    for w in &mut c {
        s += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [b] = c.remainder() {
        s += (*b as u32) << 8;
    }
    s
}

#[inline]
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[inline]
fn words4(a: [u8; 4]) -> u64 {
    u16::from_be_bytes([a[0], a[1]]) as u64 + u16::from_be_bytes([a[2], a[3]]) as u64
}

/// What one [`Generator::send`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Frames the port took.
    pub taken: u64,
    /// Frames built that the port refused (its queue was full): dropped at the input, counted as lost.
    pub refused: u64,
}

/// Builds and sends the frames of a [`Profile`].
pub struct Generator {
    profile: Profile,
    layout: Layout,
    templates: Vec<Template>,
    /// Template index per packet, cycled.
    pattern: Vec<u8>,
    next_seq: u64,
    epoch: u8,
    burst: Burst,
    clock: Clock,
}

impl Generator {
    /// A generator of `profile`'s frames in bursts of `burst`, stamped on `clock`.
    pub fn new(profile: Profile, burst: usize, clock: Clock) -> anyhow::Result<Generator> {
        anyhow::ensure!(
            (1..=1 << 24).contains(&profile.flows),
            "flows: 1 to 16777216"
        );
        anyhow::ensure!(!profile.dst_ips.is_empty(), "no destination address");
        anyhow::ensure!(!profile.sizes.0.is_empty(), "no frame size");
        let l3 = 14 + profile.encap.len();
        let l4 = l3 + 20;
        let sig = l4 + profile.proto.header_len();
        let layout = Layout { l3, l4, sig };
        let mut distinct: Vec<usize> = Vec::new();
        let mut pattern = Vec::new();
        for &s in &profile.sizes.0 {
            let len = (s - FCS).max(sig + SIG_LEN);
            let i = match distinct.iter().position(|&d| d == len) {
                Some(i) => i,
                None => {
                    distinct.push(len);
                    distinct.len() - 1
                }
            };
            pattern.push(i as u8);
        }
        anyhow::ensure!(distinct.len() <= 255, "at most 255 distinct frame sizes");
        let templates = distinct
            .iter()
            .map(|&len| build_template(&profile, layout, len))
            .collect();
        Ok(Generator {
            profile,
            layout,
            templates,
            pattern,
            next_seq: 0,
            epoch: 0,
            burst: Burst::new(burst.clamp(1, dataplane::MAX_BURST)),
            clock,
        })
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Frames built so far (the next sequence number).
    pub fn built(&self) -> u64 {
        self.next_seq
    }

    /// Starts the sequence again at 0 under the next trial number (a new trial).
    pub fn restart(&mut self) {
        self.next_seq = 0;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// The trial number written in the frames.
    pub fn epoch(&self) -> u8 {
        self.epoch
    }

    /// Buffer lengths (without FCS) of the frames, one per distinct size.
    pub fn frame_lengths(&self) -> Vec<usize> {
        self.templates.iter().map(|t| t.bytes.len()).collect()
    }

    /// Writes packet `seq` into `d` (a copy of its template) with send time `ts`.
    #[inline]
    fn stamp(&self, t: &Template, d: &mut [u8], seq: u64, ts: u32) {
        let p = &self.profile;
        let Layout { l3, l4, sig } = self.layout;
        let flow = (seq % p.flows as u64) as u32;
        let src = (u32::from_be_bytes(p.src_ip).wrapping_add(flow / PORTS_PER_IP)).to_be_bytes();
        let dst = p.dst_ips[flow as usize % p.dst_ips.len()];
        let port = (1024 + flow % PORTS_PER_IP) as u16;
        d[l3 + 12..l3 + 16].copy_from_slice(&src);
        d[l3 + 16..l3 + 20].copy_from_slice(&dst);
        let addr_words = words4(src) + words4(dst);
        let ip_csum = !fold(t.ip_sum as u64 + addr_words);
        d[l3 + 10..l3 + 12].copy_from_slice(&ip_csum.to_be_bytes());
        let mut l4s = t.l4_sum as u64;
        let csum_at = match p.proto {
            Proto::Udp => {
                d[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
                l4s += port as u64 + addr_words;
                l4 + 6
            }
            Proto::Tcp => {
                d[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
                // Data offset 5, SYN (0x02) on every fourth packet of a flow, ACK (0x10) on the others.
                let flags: u16 = if (seq / p.flows as u64).is_multiple_of(4) {
                    0x5002
                } else {
                    0x5010
                };
                d[l4 + 12..l4 + 14].copy_from_slice(&flags.to_be_bytes());
                l4s += port as u64 + flags as u64 + addr_words;
                l4 + 16
            }
            Proto::Icmp => {
                d[l4 + 4..l4 + 6].copy_from_slice(&port.to_be_bytes());
                l4s += port as u64;
                l4 + 2
            }
        };
        let seq = seq & SEQ_MASK;
        let s = &mut d[sig..sig + SIG_LEN];
        s[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        s[2] = self.epoch;
        s[3..8].copy_from_slice(&seq.to_be_bytes()[3..8]);
        s[8..12].copy_from_slice(&ts.to_be_bytes());
        l4s += sum16(s) as u64;
        let mut c = !fold(l4s);
        if c == 0 && p.proto == Proto::Udp {
            c = 0xffff;
        }
        d[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// Builds up to `max` frames (at most one burst), stamps them with the current time, and offers them to
    /// `q`. Frames the port does not take are dropped and counted as refused: like a wire, the generator does
    /// not wait for a slow receiver. Stops early, without counting, when `pool` runs dry.
    pub fn send(&mut self, q: &mut dyn PortQueue, pool: &Pool, max: u64) -> Sent {
        let n = (self.burst.room() as u64).min(max);
        if n == 0 {
            return Sent::default();
        }
        let ts = self.clock.now_ns() as u32;
        for _ in 0..n {
            let Some(mut pkt) = pool.alloc() else { break };
            let t = &self.templates
                [self.pattern[(self.next_seq % self.pattern.len() as u64) as usize] as usize];
            if !pkt.set_frame(&t.bytes) {
                break;
            }
            self.stamp(t, pkt.data_mut(), self.next_seq, ts);
            self.next_seq += 1;
            let _ = self.burst.push(pkt);
        }
        let built = self.burst.len() as u64;
        let taken = q.tx_burst(&mut self.burst) as u64;
        self.burst.clear();
        Sent {
            taken,
            refused: built - taken,
        }
    }

    /// The frame of packet `seq` sent at time `ts`, in a new vector (tests and one-off frames, e.g. the
    /// learning frames sent before a bridge trial).
    pub fn frame(&self, seq: u64) -> Vec<u8> {
        let t = &self.templates[self.pattern[(seq % self.pattern.len() as u64) as usize] as usize];
        let mut v = t.bytes.clone();
        self.stamp(t, &mut v, seq, 0);
        v
    }
}

/// The frame of `len` bytes (without FCS) for flow 0 with the varying fields zero, and its partial sums.
fn build_template(p: &Profile, lay: Layout, len: usize) -> Template {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&p.dst_mac);
    f[6..12].copy_from_slice(&p.src_mac);
    match p.encap {
        Encap::None => f[12..14].copy_from_slice(&0x0800u16.to_be_bytes()),
        Encap::Vlan(id) => {
            f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
            f[14..16].copy_from_slice(&(id & 0x0fff).to_be_bytes());
            f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
        }
    }
    let Layout { l3, l4, .. } = lay;
    let ip_len = (len - l3) as u16;
    let l4_len = ip_len - 20;
    {
        let ip = &mut f[l3..l4];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = p.proto.number();
    }
    let ip_sum = sum16(&f[l3..l4]);
    match p.proto {
        Proto::Udp => {
            f[l4 + 2..l4 + 4].copy_from_slice(&p.dst_port.to_be_bytes());
            f[l4 + 4..l4 + 6].copy_from_slice(&l4_len.to_be_bytes());
        }
        Proto::Tcp => {
            f[l4 + 2..l4 + 4].copy_from_slice(&p.dst_port.to_be_bytes());
            f[l4 + 14..l4 + 16].copy_from_slice(&64240u16.to_be_bytes()); // window
        }
        Proto::Icmp => {
            f[l4] = 8; // echo request
        }
    }
    let mut l4_sum = sum16(&f[l4..]);
    if p.proto != Proto::Icmp {
        l4_sum += p.proto.number() as u32 + l4_len as u32;
    }
    Template {
        bytes: f,
        ip_sum,
        l4_sum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::traffic::inet_checksum;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn profile(proto: Proto, encap: Encap, flows: u32) -> Profile {
        Profile {
            proto,
            encap,
            flows,
            sizes: Sizes::parse("64,128,1518").unwrap(),
            dst_ips: vec![[10, 1, 0, 1], [10, 1, 0, 2], [10, 1, 0, 3]],
            ..Profile::default()
        }
    }

    /// Checks a frame with etherparse: valid IPv4 header checksum, valid L4 checksum, the flow's fields.
    fn check(f: &[u8], proto: Proto, flow: u32) {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
        assert_eq!(h.source, (0xc612_0001u32 + flow / 4096).to_be_bytes());
        assert_eq!(h.destination[3], 1 + (flow % 3) as u8);
        let l4 = &f[f.len() - ip.payload().payload.len()..];
        match (proto, &p.transport) {
            (Proto::Udp, Some(TransportSlice::Udp(u))) => {
                assert_eq!(u.source_port() as u32, 1024 + flow % 4096);
                let c = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(u.checksum(), c, "UDP checksum");
            }
            (Proto::Tcp, Some(TransportSlice::Tcp(t))) => {
                assert_eq!(t.source_port() as u32, 1024 + flow % 4096);
                assert!(t.syn() ^ t.ack(), "SYN or ACK");
                let c = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
                assert_eq!(t.checksum(), c, "TCP checksum");
            }
            (Proto::Icmp, Some(TransportSlice::Icmpv4(_))) => {
                assert_eq!(inet_checksum(l4), 0, "ICMP checksum");
            }
            (p, t) => panic!("{p:?}: got {t:?}"),
        }
    }

    #[test]
    fn frames_have_valid_checksums_sizes_and_signatures() {
        for proto in [Proto::Udp, Proto::Tcp, Proto::Icmp] {
            for encap in [Encap::None, Encap::Vlan(100)] {
                let g = Generator::new(profile(proto, encap, 5000), 32, Clock::new()).unwrap();
                for seq in [0u64, 1, 2, 4097, 4999, 123_456_789] {
                    let f = g.frame(seq);
                    let want = [64usize, 128, 1518][(seq % 3) as usize] - FCS;
                    let min = 14 + encap.len() + 20 + proto.header_len() + SIG_LEN;
                    assert_eq!(f.len(), want.max(min), "{proto:?} {encap:?} seq {seq}");
                    let (sig, _) = crate::analyse::locate(&f).expect("signature found");
                    let s = crate::analyse::signature(&f[sig..]).unwrap();
                    assert_eq!((s.epoch, s.seq, s.ts), (0, seq, 0));
                    if let Encap::Vlan(id) = encap {
                        assert_eq!(u16::from_be_bytes([f[14], f[15]]) & 0xfff, id);
                    }
                    check(&f, proto, (seq % 5000) as u32);
                }
            }
        }
    }

    #[test]
    fn tcp_mixes_syn_and_ack() {
        let g = Generator::new(profile(Proto::Tcp, Encap::None, 2), 32, Clock::new()).unwrap();
        let syn: Vec<bool> = (0..8).map(|s| g.frame(s)[14 + 20 + 13] == 0x02).collect();
        // Two flows: packets 0, 1 (the first of each flow) are SYNs, the next three of each flow ACKs.
        assert_eq!(syn, [true, true, false, false, false, false, false, false]);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(Sizes::parse("imix").unwrap().0, IMIX.to_vec());
        assert_eq!(Sizes::parse("64, 1518").unwrap().0, vec![64, 1518]);
        assert!(Sizes::parse("63").is_err());
        assert!(Sizes::parse("abc").is_err());
        assert!((Sizes::parse("imix").unwrap().mean() - 361.83).abs() < 0.01);
    }
}
