//! 802.1Q tags: reading the outer tag, popping it on ingress and pushing one on egress, in place.
//!
//! Inside a bridge domain frames travel untagged; the tag is an attribute of the port they enter or leave
//! by. Popping moves the 12 address bytes forward by 4 and pushing moves them back into the headroom: no
//! copy of the payload in either direction.

use crate::ethernet::HEADER_LEN;
use dataplane::Pkt;

/// TPID of an 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad service tag (QinQ outer tag).
pub const TPID_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ TPID some switches still send.
pub const TPID_QINQ_OLD: u16 = 0x9100;
/// Bytes of one tag.
pub const TAG_LEN: usize = 4;

/// What the outer tag of a frame says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// No tag.
    Untagged,
    /// An 802.1Q tag with this VLAN id (0 is a priority tag: the frame belongs to the port's native VLAN).
    Vlan(u16),
    /// Two tags or a service tag: parsed, not forwarded.
    Stacked,
    /// Shorter than its tags say.
    Truncated,
}

fn is_stack_tpid(t: u16) -> bool {
    t == TPID_8021AD || t == TPID_QINQ_OLD
}

/// Reads the outer tag of `frame` (an Ethernet frame of at least [`HEADER_LEN`] bytes).
#[inline]
pub fn outer_tag(frame: &[u8]) -> Tag {
    let Some(&[t0, t1]) = frame.get(12..14) else {
        return Tag::Truncated;
    };
    let tpid = u16::from_be_bytes([t0, t1]);
    if is_stack_tpid(tpid) {
        return Tag::Stacked;
    }
    if tpid != TPID_8021Q {
        return Tag::Untagged;
    }
    let (Some(&[c0, c1]), Some(&[i0, i1])) = (frame.get(14..16), frame.get(16..18)) else {
        return Tag::Truncated;
    };
    let inner = u16::from_be_bytes([i0, i1]);
    if inner == TPID_8021Q || is_stack_tpid(inner) {
        return Tag::Stacked;
    }
    Tag::Vlan(u16::from_be_bytes([c0, c1]) & 0x0fff)
}

/// Removes the outer 802.1Q tag. False, and nothing changed, if the frame is too short to hold one.
#[inline]
pub fn pop(pkt: &mut Pkt) -> bool {
    if pkt.len() < HEADER_LEN + TAG_LEN {
        return false;
    }
    pkt.data_mut().copy_within(0..12, TAG_LEN);
    pkt.strip_front(TAG_LEN)
}

/// Inserts an 802.1Q tag for `vid` (priority 0) after the MAC addresses. False if there is no headroom.
#[inline]
pub fn push(pkt: &mut Pkt, vid: u16) -> bool {
    if pkt.len() < 12 || pkt.prepend(TAG_LEN).is_none() {
        return false;
    }
    let d = pkt.data_mut();
    d.copy_within(TAG_LEN..TAG_LEN + 12, 0);
    d[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
    d[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::Pool;
    use etherparse::{PacketBuilder, SlicedPacket};

    fn frame(vlan: Option<u16>) -> Vec<u8> {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        match vlan {
            Some(id) => b
                .single_vlan(id.try_into().unwrap())
                .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
                .udp(1, 2)
                .write(&mut v, b"x"),
            None => b
                .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
                .udp(1, 2)
                .write(&mut v, b"x"),
        }
        .unwrap();
        v
    }

    #[test]
    fn reads_pops_and_pushes_tags_as_etherparse_sees_them() {
        let pool = Pool::for_test(4, 256);
        let tagged = frame(Some(42));
        assert_eq!(outer_tag(&tagged), Tag::Vlan(42));
        assert_eq!(outer_tag(&frame(None)), Tag::Untagged);
        let mut p = pool.alloc().unwrap();
        p.set_frame(&tagged);
        assert!(pop(&mut p));
        assert_eq!(
            p.data(),
            &frame(None)[..],
            "popping gives the untagged frame"
        );
        assert!(push(&mut p, 42));
        assert_eq!(p.data(), &tagged[..], "pushing gives the tagged frame back");
        let s = SlicedPacket::from_ethernet(p.data()).unwrap();
        let Some(etherparse::VlanSlice::SingleVlan(v)) = s.vlan else {
            panic!("not single-tagged")
        };
        assert_eq!(v.vlan_identifier().value(), 42);
    }

    #[test]
    fn stacked_and_short_frames_are_recognised() {
        let mut qinq = frame(Some(5));
        qinq.splice(12..12, [0x88, 0xa8, 0x00, 0x07]);
        assert_eq!(outer_tag(&qinq), Tag::Stacked);
        let mut dbl = frame(Some(5));
        dbl.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
        assert_eq!(outer_tag(&dbl), Tag::Stacked);
        let tagged = frame(Some(5));
        for n in 0..18 {
            assert!(matches!(
                outer_tag(&tagged[..n]),
                Tag::Truncated | Tag::Untagged
            ));
        }
        let pool = Pool::for_test(2, 256);
        let mut p = pool.alloc().unwrap();
        p.set_frame(&tagged[..17]);
        assert!(!pop(&mut p));
        assert_eq!(p.len(), 17);
    }
}
