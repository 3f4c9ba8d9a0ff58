//! In-process traffic: build test frames, send them through a port queue, receive and check them.
//!
//! Frames carry a sequence number and a send timestamp in their UDP payload ([`SEQ_OFFSET`], [`TS_OFFSET`]),
//! so a receiver counts loss, reordering and latency. Used by tests, benchmarks and the perf generator; the
//! send and receive loops allocate nothing per packet.

use crate::burst::Burst;
use crate::pkt::Pkt;
use crate::pool::Pool;
use crate::port::PortQueue;
use std::time::{Duration, Instant};

/// Offset of the 8-byte big-endian sequence number in frames made by [`udp4_frame`].
pub const SEQ_OFFSET: usize = 42;
/// Offset of the 8-byte big-endian send timestamp (ns).
pub const TS_OFFSET: usize = 50;
/// Smallest frame [`udp4_frame`] builds (without FCS): headers plus sequence and timestamp.
pub const MIN_FRAME: usize = 58;

/// Addresses of a test UDP/IPv4 flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp4Flow {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address.
    pub src_ip: [u8; 4],
    /// Destination IPv4 address.
    pub dst_ip: [u8; 4],
    /// Source UDP port.
    pub src_port: u16,
    /// Destination UDP port.
    pub dst_port: u16,
}

impl Default for Udp4Flow {
    fn default() -> Self {
        Udp4Flow {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_ip: [198, 18, 0, 1],
            dst_ip: [198, 18, 0, 2],
            src_port: 1024,
            dst_port: 9,
        }
    }
}

/// Internet checksum (RFC 1071) of `data`, folded and complemented.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet/IPv4/UDP frame of `frame_len` bytes (at least [`MIN_FRAME`]; FCS not included) with a valid
/// IPv4 header checksum and a zero (absent) UDP checksum, sequence number and timestamp zero.
pub fn udp4_frame(flow: &Udp4Flow, frame_len: usize) -> Vec<u8> {
    let len = frame_len.max(MIN_FRAME);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&flow.dst_mac);
    f[6..12].copy_from_slice(&flow.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&flow.src_ip);
    ip[16..20].copy_from_slice(&flow.dst_ip);
    let c = inet_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&flow.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&flow.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// Reads the sequence number of a frame made by [`udp4_frame`].
#[inline]
pub fn seq_of(frame: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        frame.get(SEQ_OFFSET..SEQ_OFFSET + 8)?.try_into().ok()?,
    ))
}

/// Reads the timestamp of a frame made by [`udp4_frame`].
#[inline]
pub fn ts_of(frame: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        frame.get(TS_OFFSET..TS_OFFSET + 8)?.try_into().ok()?,
    ))
}

/// Sends copies of a template frame with increasing sequence numbers.
pub struct Source {
    template: Vec<u8>,
    next_seq: u64,
    burst: Burst,
    clock: Instant,
}

impl Source {
    /// A source of `template` frames (made by [`udp4_frame`]), in bursts of `burst` packets.
    pub fn new(template: Vec<u8>, burst: usize, clock: Instant) -> Source {
        Source {
            template,
            next_seq: 0,
            burst: Burst::new(burst),
            clock,
        }
    }

    /// Next sequence number to be sent.
    pub fn sent(&self) -> u64 {
        self.next_seq
    }

    /// Sends up to `max` frames in one burst (fewer if the queue or the pool is full). Frames the queue does
    /// not take are kept and offered first next time, so nothing is lost at the source. Returns frames sent.
    pub fn send_burst(&mut self, q: &mut dyn PortQueue, pool: &Pool, max: u64) -> u64 {
        let want = (self.burst.room() as u64).min(max.saturating_sub(self.burst.len() as u64));
        for _ in 0..want {
            let Some(mut p) = pool.alloc() else { break };
            if !p.set_frame(&self.template) {
                break;
            }
            let now = self.clock.elapsed().as_nanos() as u64;
            let d = p.data_mut();
            d[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&self.next_seq.to_be_bytes());
            d[TS_OFFSET..TS_OFFSET + 8].copy_from_slice(&now.to_be_bytes());
            self.next_seq += 1;
            let _ = self.burst.push(p);
        }
        q.tx_burst(&mut self.burst) as u64
    }

    /// Frames built but not yet taken by the queue.
    pub fn backlog(&self) -> usize {
        self.burst.len()
    }
}

/// Receives frames and hands each to a callback, then frees it.
pub struct Sink {
    burst: Burst,
    /// Frames received so far.
    pub received: u64,
}

impl Sink {
    /// A sink receiving in bursts of `burst`.
    pub fn new(burst: usize) -> Sink {
        Sink {
            burst: Burst::new(burst),
            received: 0,
        }
    }

    /// Polls once; calls `f` on each frame received. Returns how many.
    pub fn poll(&mut self, q: &mut dyn PortQueue, mut f: impl FnMut(&Pkt)) -> usize {
        let n = q.rx_burst(&mut self.burst);
        for p in self.burst.drain() {
            f(&p);
        }
        self.received += n as u64;
        n
    }

    /// Polls until `count` frames in total were received or `timeout` passed. Returns the total.
    pub fn until(
        &mut self,
        q: &mut dyn PortQueue,
        count: u64,
        timeout: Duration,
        mut f: impl FnMut(&Pkt),
    ) -> u64 {
        let deadline = Instant::now() + timeout;
        while self.received < count && Instant::now() < deadline {
            if self.poll(q, &mut f) == 0 {
                std::thread::yield_now();
            }
        }
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_valid_udp_ipv4() {
        let f = udp4_frame(&Udp4Flow::default(), 64);
        assert_eq!(f.len(), 64);
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("not ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(ip.header().total_len() as usize, 50);
        let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
            panic!("not udp")
        };
        assert_eq!(u.length(), 30);
        assert_eq!(seq_of(&f), Some(0));
        assert_eq!(seq_of(&f[..45]), None);
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3 example words sum to 0xddf2 before complement.
        assert_eq!(
            inet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }
}
