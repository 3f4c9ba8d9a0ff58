//! Cross-connect: patches each input port to one output port, with an optional MAC rewrite on the way out.
//!
//! The simplest pipeline and the baseline of every benchmark: its cost per packet is the cost of the
//! dataplane itself. All packets of a burst share an input port, so the table is read once per burst.

use crate::ethernet::{EthernetFrame, Mac};
use dataplane::worker::{BurstCtx, TxBatches};
use dataplane::{Burst, DropReason};

/// MAC rewrite applied to frames leaving through a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacRewrite {
    /// New source MAC.
    pub src: Option<Mac>,
    /// New destination MAC.
    pub dst: Option<Mac>,
}

/// The compiled cross-connect table, indexed by port number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XconnectTable {
    /// Output port for each input port (`None`: not patched; frames are dropped as `no_route`).
    pub out: Vec<Option<u16>>,
    /// Rewrite for frames leaving through each port.
    pub rewrite: Vec<Option<MacRewrite>>,
}

impl XconnectTable {
    /// An empty table for `ports` ports.
    pub fn new(ports: usize) -> XconnectTable {
        XconnectTable {
            out: vec![None; ports],
            rewrite: vec![None; ports],
        }
    }

    /// Patches `a` and `b` to each other. False if either is out of range.
    pub fn patch(&mut self, a: u16, b: u16) -> bool {
        if a as usize >= self.out.len() || b as usize >= self.out.len() {
            return false;
        }
        self.out[a as usize] = Some(b);
        self.out[b as usize] = Some(a);
        true
    }
}

/// Runs the cross-connect over a burst: every frame goes to the patched port or is dropped with a reason.
#[inline]
pub fn process(table: &XconnectTable, ctx: &BurstCtx, burst: &mut Burst, out: &mut TxBatches) {
    let Some(&Some(dst)) = table.out.get(ctx.in_port as usize) else {
        out.count_drops(DropReason::NoRoute, burst.len() as u64);
        burst.clear();
        return;
    };
    // The rewrite is the same for the whole burst: decided once, not per packet.
    match table.rewrite.get(dst as usize).copied().flatten() {
        // The common case, every frame long enough: the handles move to the port's batch at once.
        None if burst.iter().all(|p| p.len() >= crate::ethernet::HEADER_LEN) => {
            out.send_all(dst, burst)
        }
        // A runt in the burst: the runts are dropped, and the rest moves as above.
        None => {
            let before = burst.len();
            burst.retain(|p| p.len() >= crate::ethernet::HEADER_LEN);
            out.count_drops(DropReason::Truncated, (before - burst.len()) as u64);
            out.send_all(dst, burst)
        }
        Some(rw) => {
            for mut pkt in burst.drain() {
                let Ok(mut eth) = EthernetFrame::new_checked(pkt.data_mut()) else {
                    out.drop_pkt(pkt, DropReason::Truncated);
                    continue;
                };
                if let Some(s) = rw.src {
                    eth.set_src(s);
                }
                if let Some(d) = rw.dst {
                    eth.set_dst(d);
                }
                out.send(dst, pkt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::Pool;

    fn burst_of(pool: &Pool, frames: &[&[u8]], port: u16) -> Burst {
        let mut b = Burst::new(32);
        for f in frames {
            let mut p = pool.alloc().unwrap();
            assert!(p.set_frame(f));
            p.meta_mut().in_port = port;
            b.push(p).unwrap();
        }
        b
    }

    /// Runs the cross-connect over `frames` arriving on `port`.
    fn run(t: &XconnectTable, pool: &Pool, out: &mut TxBatches, frames: &[&[u8]], port: u16) {
        let mut b = burst_of(pool, frames, port);
        let ctx = BurstCtx {
            worker: 0,
            in_port: port,
            now_ns: 0,
        };
        process(t, &ctx, &mut b, out);
    }

    fn udp_frame() -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000)
            .write(&mut v, b"hello")
            .unwrap();
        v
    }

    #[test]
    fn patches_both_ways_with_rewrite_and_drops_runts() {
        let pool = Pool::for_test(64, 2048);
        let mut t = XconnectTable::new(3);
        assert!(t.patch(0, 1));
        assert!(!t.patch(0, 9));
        t.rewrite[1] = Some(MacRewrite {
            src: Some([0xaa; 6]),
            dst: None,
        });
        let (mut out, counters) = TxBatches::for_test(3);
        let f = udp_frame();
        run(&t, &pool, &mut out, &[&f, &f[..10], &f], 0);
        let sent = out.take(1);
        assert_eq!(sent.len(), 2);
        for p in &sent {
            let e = etherparse::SlicedPacket::from_ethernet(p.data()).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(eth)) = e.link else {
                panic!("not ethernet")
            };
            assert_eq!(eth.source(), [0xaa; 6], "source rewritten");
            assert_eq!(eth.destination(), [2, 0, 0, 0, 0, 2], "destination kept");
            let Some(etherparse::TransportSlice::Udp(udp)) = e.transport else {
                panic!("not udp")
            };
            assert_eq!(udp.payload(), b"hello", "payload intact");
        }
        assert_eq!(counters.drops.get(DropReason::Truncated), 1);

        // Towards port 0 there is no rewrite (the burst takes the other loop): a runt is dropped there too.
        run(&t, &pool, &mut out, &[&f[..13], &f], 1);
        let back = out.take(0);
        assert_eq!(back.len(), 1);
        assert_eq!(
            back[0].data(),
            &f[..],
            "no rewrite configured towards port 0"
        );
        assert_eq!(counters.drops.get(DropReason::Truncated), 2);
        // Without a runt the whole burst moves to the batch at once, in order.
        run(&t, &pool, &mut out, &[&f, &f[..20], &f], 1);
        let lens: Vec<usize> = out.take(0).iter().map(|p| p.len()).collect();
        assert_eq!(lens, vec![f.len(), 20, f.len()]);
        assert_eq!(counters.drops.get(DropReason::Truncated), 2);

        run(&t, &pool, &mut out, &[&f, &f], 2);
        assert_eq!(
            counters.drops.get(DropReason::NoRoute),
            2,
            "unpatched port drops"
        );
    }
}
