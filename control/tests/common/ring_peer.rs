//! The far end of a router's `ring` port, played by a test: send hand-made frames, receive what the router
//! sends, and answer its ARP, optionally on an 802.1Q VLAN.

use control::router::Router;
use dataplane::{Burst, Port, PortQueue};
use std::time::{Duration, Instant};

/// One ring peer: sends on its queue 0, receives from all its queues (with several workers the router's
/// frames are spread over them by flow hash).
pub struct Peer {
    q: Vec<Box<dyn PortQueue>>,
}

/// The EtherType of a frame, after an 802.1Q tag if there is one; and the offset of what follows it.
pub fn ethertype(f: &[u8]) -> Option<(u16, usize)> {
    let t = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    if t == 0x8100 {
        Some((u16::from_be_bytes([*f.get(16)?, *f.get(17)?]), 18))
    } else {
        Some((t, 14))
    }
}

/// The VLAN id of a tagged frame.
pub fn vlan_of(f: &[u8]) -> Option<u16> {
    (f.get(12..14)? == [0x81, 0x00]).then(|| u16::from_be_bytes([f[14], f[15]]) & 0x0fff)
}

/// An ARP frame (padded to 60 bytes, or 64 when tagged): `op` 1 request, 2 reply.
pub fn arp_frame(
    vlan: Option<u16>,
    dst: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sha);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f.resize(if vlan.is_some() { 64 } else { 60 }, 0);
    f
}

impl Peer {
    /// The far end of the router's ring port whose peer is called `name`.
    pub fn open(router: &Router, name: &str) -> Peer {
        let port = router.ring_peer(name).unwrap();
        let queues = port.info().queues.max(1);
        Peer {
            q: (0..queues).map(|i| port.open_queue(i).unwrap()).collect(),
        }
    }

    /// Sends one frame to the router.
    pub fn send(&mut self, router: &Router, frame: &[u8]) {
        let mut b = Burst::new(1);
        let mut p = router.pool().alloc().unwrap();
        assert!(p.set_frame(frame));
        b.push(p).unwrap();
        assert_eq!(self.q[0].tx_burst(&mut b), 1);
    }

    /// Frames received within `wait` (stops early once `n` arrived).
    pub fn recv(&mut self, n: usize, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut b = Burst::new(32);
        while got.len() < n && Instant::now() < deadline {
            let mut n = 0;
            for q in &mut self.q {
                n += q.rx_burst(&mut b);
                got.extend(b.drain().map(|p| p.data().to_vec()));
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        got
    }

    /// IPv4 frames (tagged or not) received within `wait` (stops early once `n` arrived); ARP is left out.
    pub fn recv_ip(&mut self, n: usize, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(
                self.recv(1, Duration::from_millis(20))
                    .into_iter()
                    .filter(|f| ethertype(f).is_some_and(|(t, _)| t == 0x0800)),
            );
        }
        got
    }

    /// Waits for the router's ARP request for `ip` (skipping other frames) and answers it from `mac`, on the
    /// request's VLAN. Returns the request.
    pub fn answer_arp(&mut self, router: &Router, ip: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no ARP request for {ip:?}");
            for f in self.recv(1, Duration::from_millis(200)) {
                let Some((0x0806, o)) = ethertype(&f) else {
                    continue;
                };
                if f.len() < o + 28 || f[o + 6..o + 8] != [0, 1] || f[o + 24..o + 28] != ip {
                    continue;
                }
                let router_mac: [u8; 6] = f[6..12].try_into().unwrap();
                let router_ip: [u8; 4] = f[o + 14..o + 18].try_into().unwrap();
                let reply = arp_frame(vlan_of(&f), router_mac, 2, mac, ip, router_mac, router_ip);
                self.send(router, &reply);
                return f;
            }
        }
    }

    /// Asks the router (ARP, on `vlan`) who has `router_ip`, from `host_mac`/`host_ip`; the MAC it answers.
    pub fn resolve(
        &mut self,
        router: &Router,
        vlan: Option<u16>,
        host_mac: [u8; 6],
        host_ip: [u8; 4],
        router_ip: [u8; 4],
    ) -> [u8; 6] {
        let req = arp_frame(vlan, [0xff; 6], 1, host_mac, host_ip, [0; 6], router_ip);
        self.send(router, &req);
        // (The router's gratuitous ARP at start may come first.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            for f in self.recv(1, Duration::from_millis(100)) {
                if let Some((0x0806, o)) = ethertype(&f) {
                    if f[o + 6..o + 8] == [0, 2] && f[o + 14..o + 18] == router_ip {
                        assert_eq!(
                            vlan_of(&f),
                            vlan,
                            "the reply comes back on the request's VLAN"
                        );
                        return f[o + 8..o + 14].try_into().unwrap();
                    }
                }
            }
        }
        panic!("no ARP reply for {router_ip:?}")
    }
}
