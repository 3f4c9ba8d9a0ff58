//! How a port spreads the frames it receives over its queues ([`Steering`]), so that wharf can tell in
//! advance which worker a frame will reach: the NAT chooses external ports by it.

use super::{flow_hash_v4, queue_of_hash, toeplitz};
use std::sync::Arc;

/// How a port spreads the frames it receives over its queues, as far as wharf can predict it. Worker `w`
/// polls queue `w` of every port, so this says which worker a frame will reach: the NAT picks external
/// ports whose answers come back to the worker that owns the flow, where otherwise about `1 - 1/workers` of
/// them would arrive elsewhere and be handed over (DESIGN.md's handoff stays for the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Steering {
    /// Not predictable: the kernel's fanout hash (seeded at random), a DPDK device that does not report its
    /// RSS key and redirection table, or one without RSS that receives what the peer put on each queue.
    #[default]
    Unknown,
    /// Queue `flow_hash(frame) % queues`: wharf's own software RSS (the `ring` backend's far end).
    FlowHash {
        /// The receiving end's queues.
        queues: u16,
    },
    /// A NIC's RSS as the device reports it: the [`toeplitz::toeplitz`] hash of the IPv4 addresses (and
    /// ports, for the protocols the device hashes them for) under `key`, and queue `reta[hash % reta.len()]`.
    Toeplitz {
        /// The hash key.
        key: Arc<[u8]>,
        /// The redirection table: a queue per entry (not empty).
        reta: Arc<[u16]>,
        /// TCP ports are hashed.
        tcp: bool,
        /// UDP ports are hashed.
        udp: bool,
    },
}

impl Steering {
    /// The queue an IPv4 packet with this tuple will be received on, or `None` when it cannot be told.
    #[inline]
    pub fn queue_v4(
        &self,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        proto: u8,
    ) -> Option<u16> {
        match *self {
            Steering::Unknown => None,
            Steering::FlowHash { queues } => Some(queue_of_hash(
                flow_hash_v4(src, sport, dst, dport, proto),
                queues,
            )),
            Steering::Toeplitz {
                ref key, ref reta, ..
            } => {
                let ports = self.steers_by_port(proto);
                let (input, n) = toeplitz::ipv4_input(src, sport, dst, dport, ports);
                let h = toeplitz::toeplitz(key, &input[..n]);
                reta.get(h as usize % reta.len().max(1)).copied()
            }
        }
    }

    /// Whether the ports of an IPv4 packet of protocol `proto` choose its queue: only then can a choice of
    /// port choose the queue.
    #[inline]
    pub fn steers_by_port(&self, proto: u8) -> bool {
        match *self {
            Steering::Unknown => false,
            Steering::FlowHash { .. } => matches!(proto, 6 | 17 | 132),
            Steering::Toeplitz { tcp, udp, .. } => (proto == 6 && tcp) || (proto == 17 && udp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toeplitz_steering_hashes_ports_only_for_the_protocols_the_device_does() {
        let s = Steering::Toeplitz {
            key: (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect(),
            reta: (0..64u16).map(|i| i % 3).collect(),
            tcp: true,
            udp: false,
        };
        assert!(s.steers_by_port(6) && !s.steers_by_port(17) && !s.steers_by_port(1));
        assert!(!Steering::Unknown.steers_by_port(6));
        let (a, b) = ([198, 51, 100, 2], [203, 0, 113, 1]);
        let q = |sp: u16, proto: u8| s.queue_v4(a, sp, b, 4000, proto).unwrap();
        // UDP: the addresses alone choose, whatever the port; TCP: the ports reach all three queues.
        assert!((1..2000).all(|sp| q(sp, 17) == q(0, 17)));
        let tcp: std::collections::HashSet<u16> = (1..2000).map(|sp| q(sp, 6)).collect();
        assert_eq!(tcp.len(), 3);
    }
}
