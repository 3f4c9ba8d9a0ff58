//! `afpacket`: Linux AF_PACKET ports with memory-mapped TPACKET_V3 rings.
//!
//! Each queue is one `AF_PACKET`/`SOCK_RAW` socket bound to the interface for `ETH_P_ALL`, with:
//!
//! - a **TPACKET_V3 receive ring** of [`AfPacketConfig::block_count`] blocks of
//!   [`AfPacketConfig::block_size`] bytes. The kernel packs frames into a block and hands the whole block over
//!   (`TP_STATUS_USER`) when it is full or after [`AfPacketConfig::block_timeout_ms`]; `rx_burst` walks the
//!   block's `tpacket3_hdr` entries, copies each frame into a [`Pkt`](crate::pkt::Pkt) from the pool, and gives
//!   the block back (`TP_STATUS_KERNEL`) once every entry is consumed. A burst may end in the middle of a block;
//!   the position is kept for the next call (and across closing and reopening the queue). Every offset the
//!   kernel writes is checked against the block bounds before it is used: a bad entry is counted as
//!   [`DropReason::Malformed`] and the rest of its block skipped, never a panic.
//! - a **memory-mapped transmit ring** of [`AfPacketConfig::tx_frames`] slots of
//!   [`AfPacketConfig::frame_size`] bytes: `tx_burst` copies frames into free slots in order, marks them
//!   `TP_STATUS_SEND_REQUEST`, and kicks the kernel with one `sendto(fd, NULL, 0, MSG_DONTWAIT)` per burst.
//!   TPACKET_V3 transmit rings exist since Linux 4.11; when setting one up fails, the queue falls back to a
//!   TPACKET_V2 transmit ring on a second socket bound to the interface with protocol 0 (so it receives
//!   nothing). [`AfPacketPort::tx_ring_version`] says which one is in use. The socket has `PACKET_LOSS` set,
//!   so a frame the kernel refuses is skipped instead of stalling the ring.
//!
//! With more than one queue, all sockets join one `PACKET_FANOUT` group (`PACKET_FANOUT_HASH` with
//! `PACKET_FANOUT_FLAG_DEFRAG`) so the kernel spreads flows over the queues; the group id is allocated by the
//! kernel (`PACKET_FANOUT_FLAG_UNIQUEID`, Linux 4.17+) or, on older kernels, derived from the pid and a
//! counter. Until every socket has joined, each wears a drop-all BPF filter, so no frame that arrives while the
//! port opens is received twice. Frames the host itself sends out of the interface are not received
//! (`PACKET_IGNORE_OUTGOING`, with `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` for the group, whose hook replaces the
//! sockets' own; entries with `sll_pkttype == PACKET_OUTGOING` are skipped anyway).
//!
//! Semantics a pipeline can rely on:
//!
//! - **VLAN**: when the kernel (or the NIC) strips the outer 802.1Q/802.1ad tag, the ring reports it
//!   (`TP_STATUS_VLAN_VALID`, TCI and TPID in `hv1`) and the frame comes without it. The backend puts the tag
//!   back into the frame bytes, so the pipeline sees the frame as it was on the wire either way, and sets
//!   [`Meta::FLAG_VLAN`] and [`Meta::vlan_tci`](crate::pkt::Meta::vlan_tci) for every frame whose outer
//!   ethertype is 0x8100 or 0x88a8.
//! - **Checksums**: `TP_STATUS_CSUM_VALID` (the kernel or NIC verified the L4 checksum) sets
//!   [`Meta::FLAG_L4_CSUM_OK`]. Frames with partial checksums (`TP_STATUS_CSUMNOTREADY`, sent by a local stack
//!   with checksum offload, e.g. through a veth) are delivered as they are: the V3 ring gives no checksum start
//!   and offset to complete them, so turn transmit checksum offload off on such senders (see
//!   [`crate::netns::disable_tx_checksum_offload`]).
//! - **Sizes**: a frame that does not fit a packet buffer, or that the ring had to cut (larger than a block), is
//!   dropped as [`DropReason::TooBig`]; so is a transmitted frame larger than a tx slot or than the interface
//!   MTU plus the Ethernet header (plus 4 bytes for an 802.1Q-tagged frame), which the kernel would refuse.
//!   With fanout, `PACKET_FANOUT_FLAG_DEFRAG` makes the kernel reassemble IP fragments before hashing, so
//!   reassembled datagrams larger than the MTU can arrive.
//! - **Counters**: rx/tx packets and bytes per queue, drops by reason, and `rx_missed` from the kernel's
//!   `PACKET_STATISTICS` (`tp_drops`: frames lost because the ring was full), read every
//!   [`STATS_EVERY`] receive calls, right away when a block carries `TP_STATUS_LOSING`, and when the queue is
//!   closed. Transmitted frames are counted when they are queued to the ring.
//! - **Never blocks**: `rx_burst` returns 0 at once when no block is ready (there is no `poll()`), and
//!   `tx_burst` leaves the frames that do not fit in the ring in the burst. Neither allocates in steady state.
//!   When the kernel could not take every queued frame at the kick (socket send buffer full, device busy, link
//!   down), the next `rx_burst` or `tx_burst` kicks again.
//!
//! All the unsafe code of the backend (socket options, the mappings, reading and writing the shared rings) is in
//! this file.

use super::{Port, PortError, PortInfo, PortQueue, QueueClaim, QueueClaims};
use crate::burst::Burst;
use crate::counters::{DropReason, PortCounters, QueueCounters};
use crate::pkt::Meta;
use crate::pool::Pool;
use libc::c_int;
use std::ffi::CString;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Receive calls between two reads of the kernel's drop counter.
pub const STATS_EVERY: u32 = 4096;

/// Most queues (sockets in one fanout group; the kernel's default `PACKET_FANOUT_MAX`).
pub const MAX_QUEUES: u16 = 256;

/// How an AF_PACKET port is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Interface to bind (`eth0`, `veth1`...); empty means the port name.
    pub interface: String,
    /// Number of queues: one socket each, joined in a fanout group when more than one.
    pub queues: u16,
    /// Receive ring block size in bytes (a multiple of the page size and of `frame_size`). A frame larger than
    /// a block minus its headers cannot be received whole.
    pub block_size: usize,
    /// Receive ring blocks per queue.
    pub block_count: usize,
    /// Transmit slot size in bytes (a multiple of 16, at least 128): the largest frame sent is this minus the
    /// 48-byte slot header. Also the nominal receive frame size the kernel wants for its ring accounting.
    pub frame_size: usize,
    /// Transmit slots per queue (rounded up to fill the ring's last block).
    pub tx_frames: usize,
    /// Put the interface in promiscuous mode while the port is open.
    pub promiscuous: bool,
    /// Transmit straight to the driver, skipping the qdisc layer (`PACKET_QDISC_BYPASS`).
    pub qdisc_bypass: bool,
    /// How long the kernel waits before handing over a receive block that is not full, in milliseconds (0: the
    /// kernel's default, derived from the link speed). This bounds the added latency at low packet rates.
    pub block_timeout_ms: u32,
}

impl Default for AfPacketConfig {
    fn default() -> Self {
        AfPacketConfig {
            interface: String::new(),
            queues: 1,
            // 8 MiB of receive ring as 64 blocks of 128 KiB: with the 1 ms retire timeout a trickle of frames
            // closes a nearly empty block every millisecond, so many small blocks (64 ms of trickle) buffer a
            // late reader far better than few large ones (8 ms), for the same memory.
            block_size: 128 << 10,
            block_count: 64,
            frame_size: 2048,
            tx_frames: 1024,
            promiscuous: true,
            qdisc_bypass: true,
            block_timeout_ms: 1,
        }
    }
}

// ---- kernel ABI ---------------------------------------------------------------------------------------------

/// `TPACKET_V2` from `enum tpacket_versions`.
const TPACKET_V2: c_int = 1;
/// `TPACKET_V3` from `enum tpacket_versions`.
const TPACKET_V3: c_int = 2;
const TPACKET_ALIGNMENT: usize = 16;

const fn tpacket_align(x: usize) -> usize {
    (x + TPACKET_ALIGNMENT - 1) & !(TPACKET_ALIGNMENT - 1)
}

/// `struct tpacket_block_desc`: `version`, `offset_to_priv`, then `struct tpacket_hdr_v1` at 8.
const BD_HDR: usize = 8;
const BD_BLOCK_STATUS: usize = BD_HDR + offset_of!(libc::tpacket_hdr_v1, block_status);
const BD_NUM_PKTS: usize = BD_HDR + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const BD_FIRST_PKT: usize = BD_HDR + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
const BD_LEN: usize = size_of::<libc::tpacket_block_desc>();

const H3_NEXT: usize = offset_of!(libc::tpacket3_hdr, tp_next_offset);
const H3_SNAPLEN: usize = offset_of!(libc::tpacket3_hdr, tp_snaplen);
const H3_LEN: usize = offset_of!(libc::tpacket3_hdr, tp_len);
const H3_STATUS: usize = offset_of!(libc::tpacket3_hdr, tp_status);
const H3_MAC: usize = offset_of!(libc::tpacket3_hdr, tp_mac);
const H3_VLAN_TCI: usize =
    offset_of!(libc::tpacket3_hdr, hv1) + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tci);
const H3_VLAN_TPID: usize =
    offset_of!(libc::tpacket3_hdr, hv1) + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tpid);
/// Where the `sockaddr_ll` follows a V3 header, and where transmit data starts in a V3 slot.
const H3_END: usize = tpacket_align(size_of::<libc::tpacket3_hdr>());
const SLL_PKTTYPE: usize = offset_of!(libc::sockaddr_ll, sll_pkttype);
const SLL_LEN: usize = size_of::<libc::sockaddr_ll>();

const H2_STATUS: usize = offset_of!(libc::tpacket2_hdr, tp_status);
const H2_LEN: usize = offset_of!(libc::tpacket2_hdr, tp_len);
const H2_SNAPLEN: usize = offset_of!(libc::tpacket2_hdr, tp_snaplen);
/// Where transmit data starts in a V2 slot.
const H2_END: usize = tpacket_align(size_of::<libc::tpacket2_hdr>());

// The layout the kernel uses (include/uapi/linux/if_packet.h); a libc that disagrees must not compile.
const _: () = {
    assert!(BD_BLOCK_STATUS == 8 && BD_NUM_PKTS == 12 && BD_FIRST_PKT == 16 && BD_LEN == 48);
    assert!(offset_of!(libc::tpacket_block_desc, hdr) == BD_HDR);
    assert!(H3_NEXT == 0 && H3_SNAPLEN == 12 && H3_LEN == 16 && H3_STATUS == 20 && H3_MAC == 24);
    assert!(H3_VLAN_TCI == 32 && H3_VLAN_TPID == 36 && H3_END == 48);
    assert!(SLL_PKTTYPE == 10 && SLL_LEN == 20);
    assert!(H2_STATUS == 0 && H2_LEN == 4 && H2_SNAPLEN == 8 && H2_END == 32);
};

/// Transmit slot states the kernel owns (`TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING | TP_STATUS_WRONG_FORMAT`);
/// the timestamp bits it may add to an available slot are ignored.
const TX_BUSY: u32 =
    libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING | libc::TP_STATUS_WRONG_FORMAT;

/// `1`, for boolean socket options.
const ONE: c_int = 1;

const ETH_HLEN: usize = 14;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;

// ---- small helpers over the rings --------------------------------------------------------------------------

/// Reads a `u32` the kernel wrote at `p`.
///
/// # Safety
/// `p..p+4` is inside a live ring mapping.
#[inline]
unsafe fn rd32(p: *const u8) -> u32 {
    p.cast::<u32>().read_unaligned()
}

/// Reads a `u16` the kernel wrote at `p`.
///
/// # Safety
/// `p..p+2` is inside a live ring mapping.
#[inline]
unsafe fn rd16(p: *const u8) -> u16 {
    p.cast::<u16>().read_unaligned()
}

/// The status word at `p`, shared with the kernel.
///
/// # Safety
/// `p` is 4-byte aligned, inside a live ring mapping, and stays valid for `'a`.
#[inline]
unsafe fn status_word<'a>(p: *mut u8) -> &'a AtomicU32 {
    &*p.cast::<AtomicU32>()
}

/// The receive side of a TPACKET_V3 ring: `block_count` blocks of `block_size` bytes from `base`.
struct RxRing {
    base: NonNull<u8>,
    block_size: usize,
    block_count: usize,
}

/// Where the reader is in the receive ring.
#[derive(Clone, Copy, Debug, Default)]
struct RxCursor {
    /// Current block.
    block: usize,
    /// The current block is ours (`TP_STATUS_USER` seen) and partly read.
    open: bool,
    /// Entries left in the open block.
    left: u32,
    /// Offset of the next entry from the block start.
    off: usize,
}

/// What one pass over the receive ring did.
#[derive(Debug, Default)]
struct RxResult {
    packets: usize,
    bytes: u64,
    /// A block said the kernel dropped frames (`TP_STATUS_LOSING`).
    losing: bool,
}

impl RxRing {
    #[inline]
    fn block(&self, b: usize) -> *mut u8 {
        debug_assert!(b < self.block_count);
        // SAFETY: b < block_count, so the offset stays inside the mapping.
        unsafe { self.base.as_ptr().add(b * self.block_size) }
    }

    #[inline]
    fn block_status(&self, b: usize) -> &AtomicU32 {
        // SAFETY: block starts are page aligned (or 8-aligned in tests), the status word is at offset 8 inside
        // the block, and the mapping lives as long as `self`.
        unsafe { status_word(self.block(b).add(BD_BLOCK_STATUS)) }
    }

    /// Gives the cursor's block back to the kernel and moves to the next one.
    #[inline]
    fn release(&self, cur: &mut RxCursor) {
        self.block_status(cur.block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        cur.block = if cur.block + 1 == self.block_count {
            0
        } else {
            cur.block + 1
        };
        cur.open = false;
        cur.left = 0;
    }

    /// Moves frames from the ring into `burst` until it is full or no block is ready.
    fn receive(
        &self,
        cur: &mut RxCursor,
        pool: &Pool,
        queue: u16,
        counters: &QueueCounters,
        burst: &mut Burst,
    ) -> RxResult {
        let mut res = RxResult::default();
        while !burst.is_full() {
            let blk = self.block(cur.block);
            if !cur.open {
                let status = self.block_status(cur.block).load(Ordering::Acquire);
                if status & libc::TP_STATUS_USER == 0 {
                    break;
                }
                if status & libc::TP_STATUS_LOSING != 0 {
                    res.losing = true;
                }
                // SAFETY: the block descriptor (48 bytes) is inside the block; the Acquire load above makes the
                // kernel's writes to the block visible.
                let (num, first) =
                    unsafe { (rd32(blk.add(BD_NUM_PKTS)), rd32(blk.add(BD_FIRST_PKT))) };
                cur.open = true;
                cur.left = num;
                cur.off = first as usize;
                if num == 0 {
                    self.release(cur);
                    continue;
                }
            }
            let off = cur.off;
            // The entry header and the sockaddr_ll after it must lie inside the block, past its descriptor.
            let hdr_ok = off >= BD_LEN
                && off.is_multiple_of(4)
                && off
                    .checked_add(H3_END + SLL_LEN)
                    .is_some_and(|end| end <= self.block_size);
            if !hdr_ok {
                counters
                    .drops
                    .add(DropReason::Malformed, u64::from(cur.left));
                self.release(cur);
                continue;
            }
            // SAFETY: off..off+68 is inside the block (checked above).
            let (next, snaplen, len, status, mac, tci, tpid, pkttype) = unsafe {
                let h = blk.add(off);
                (
                    rd32(h.add(H3_NEXT)) as usize,
                    rd32(h.add(H3_SNAPLEN)) as usize,
                    rd32(h.add(H3_LEN)) as usize,
                    rd32(h.add(H3_STATUS)),
                    rd16(h.add(H3_MAC)) as usize,
                    rd32(h.add(H3_VLAN_TCI)) as u16,
                    rd16(h.add(H3_VLAN_TPID)),
                    *h.add(H3_END + SLL_PKTTYPE),
                )
            };
            cur.left -= 1;
            let mut corrupt_rest = false;
            if cur.left > 0 {
                match off.checked_add(next) {
                    Some(n) if next != 0 => cur.off = n,
                    _ => corrupt_rest = true,
                }
            }
            let frame_start = off + mac;
            let frame_ok = mac >= H3_END + SLL_LEN
                && frame_start
                    .checked_add(snaplen)
                    .is_some_and(|e| e <= self.block_size);
            if !frame_ok {
                counters.drops.add(DropReason::Malformed, 1);
            } else if pkttype != libc::PACKET_OUTGOING {
                // SAFETY: frame_start..frame_start+snaplen is inside the block (checked above), and the block is
                // ours until released.
                let frame = unsafe { std::slice::from_raw_parts(blk.add(frame_start), snaplen) };
                let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
                    let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
                        tpid
                    } else {
                        ETH_P_8021Q
                    };
                    (tpid, tci)
                });
                if let Some(b) = deliver(frame, len, status, vlan, pool, queue, counters, burst) {
                    res.packets += 1;
                    res.bytes += b as u64;
                }
            }
            if corrupt_rest {
                counters
                    .drops
                    .add(DropReason::Malformed, u64::from(cur.left));
                cur.left = 0;
            }
            if cur.left == 0 {
                self.release(cur);
            }
        }
        res
    }
}

/// Copies one received frame into a packet buffer and appends it to `burst`. Returns the frame length, or
/// `None` when the frame was dropped (and counted).
#[allow(clippy::too_many_arguments)]
#[inline]
fn deliver(
    frame: &[u8],
    wire_len: usize,
    status: u32,
    stripped_vlan: Option<(u16, u16)>,
    pool: &Pool,
    queue: u16,
    counters: &QueueCounters,
    burst: &mut Burst,
) -> Option<usize> {
    if frame.len() < wire_len {
        // The ring cut the frame: it was larger than a block can hold.
        counters.drops.add(DropReason::TooBig, 1);
        return None;
    }
    if frame.len() < ETH_HLEN {
        counters.drops.add(DropReason::Truncated, 1);
        return None;
    }
    let extra = if stripped_vlan.is_some() {
        VLAN_HLEN
    } else {
        0
    };
    let total = frame.len() + extra;
    if total > pool.data_room() {
        counters.drops.add(DropReason::TooBig, 1);
        return None;
    }
    let Some(mut pkt) = pool.alloc() else {
        counters.drops.add(DropReason::NoBuffer, 1);
        return None;
    };
    let room = pkt.rx_room();
    if total > room.len() {
        counters.drops.add(DropReason::TooBig, 1);
        return None;
    }
    match stripped_vlan {
        Some((tpid, tci)) => {
            // Put the tag the kernel took off back between the addresses and the ethertype.
            room[..12].copy_from_slice(&frame[..12]);
            room[12..14].copy_from_slice(&tpid.to_be_bytes());
            room[14..16].copy_from_slice(&tci.to_be_bytes());
            room[16..total].copy_from_slice(&frame[12..]);
        }
        None => room[..total].copy_from_slice(frame),
    }
    let outer = u16::from_be_bytes([room[12], room[13]]);
    let tag = (outer == ETH_P_8021Q || outer == ETH_P_8021AD) && total >= ETH_HLEN + VLAN_HLEN;
    let tci = if tag {
        u16::from_be_bytes([room[14], room[15]])
    } else {
        0
    };
    pkt.set_rx_len(total);
    let m = pkt.meta_mut();
    m.in_queue = queue;
    if tag {
        m.flags |= Meta::FLAG_VLAN;
        m.vlan_tci = tci;
    }
    if status & libc::TP_STATUS_CSUM_VALID != 0 {
        m.flags |= Meta::FLAG_L4_CSUM_OK;
    }
    // The caller checked that the burst has room.
    let _ = burst.push(pkt);
    Some(total)
}

/// Header layout of the transmit ring's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxLayout {
    V3,
    V2,
}

impl TxLayout {
    fn data_off(self) -> usize {
        match self {
            TxLayout::V3 => H3_END,
            TxLayout::V2 => H2_END,
        }
    }
    fn status_off(self) -> usize {
        match self {
            TxLayout::V3 => H3_STATUS,
            TxLayout::V2 => H2_STATUS,
        }
    }
}

/// A transmit ring: `frame_count` slots of `frame_size` bytes, `frames_per_block` to a block.
struct TxRing {
    base: NonNull<u8>,
    layout: TxLayout,
    frame_size: usize,
    frames_per_block: usize,
    block_size: usize,
    frame_count: usize,
}

/// What one pass of `TxRing::enqueue` did.
#[derive(Debug, Default, PartialEq, Eq)]
struct TxResult {
    /// Frames taken from the front of the burst (queued or dropped).
    taken: usize,
    /// Frames queued to the ring.
    queued: usize,
    bytes: u64,
}

impl TxRing {
    #[inline]
    fn slot(&self, i: usize) -> *mut u8 {
        debug_assert!(i < self.frame_count);
        let off = (i / self.frames_per_block) * self.block_size
            + (i % self.frames_per_block) * self.frame_size;
        // SAFETY: i < frame_count, so the slot lies inside the ring.
        unsafe { self.base.as_ptr().add(off) }
    }

    #[inline]
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: slots are 16-byte aligned (frame_size and block_size are multiples of 16), the status word is
        // 4-aligned inside the slot header, and the mapping lives as long as `self`.
        unsafe { status_word(self.slot(i).add(self.layout.status_off())) }
    }

    /// Largest frame a slot holds.
    fn max_frame(&self) -> usize {
        self.frame_size - self.layout.data_off()
    }

    /// Copies frames from the front of `burst` into free slots from `*head` on, in order, and marks them for
    /// sending. Stops at the first frame that finds its slot still owned by the kernel. Frames that can never
    /// be sent (shorter than an Ethernet header, longer than `max_len` or a slot) are taken and counted.
    fn enqueue(
        &self,
        head: &mut usize,
        burst: &Burst,
        mtu: usize,
        counters: &QueueCounters,
    ) -> TxResult {
        let mut r = TxResult::default();
        let slot_max = self.max_frame();
        for p in burst.iter() {
            let data = p.data();
            let len = data.len();
            if len < ETH_HLEN {
                counters.drops.add(DropReason::Truncated, 1);
                r.taken += 1;
                continue;
            }
            // The kernel allows MTU + header, plus one 802.1Q tag when the frame carries one.
            let tagged = u16::from_be_bytes([data[12], data[13]]) == ETH_P_8021Q;
            let max_len = (mtu + ETH_HLEN + if tagged { VLAN_HLEN } else { 0 }).min(slot_max);
            if len > max_len {
                counters.drops.add(DropReason::TooBig, 1);
                r.taken += 1;
                continue;
            }
            let i = *head;
            let status = self.status(i);
            if status.load(Ordering::Acquire) & TX_BUSY != 0 {
                break;
            }
            let slot = self.slot(i);
            // SAFETY: the slot is available (not owned by the kernel); data_off + len <= frame_size (len <=
            // slot_max), so the copy and the header writes stay inside the slot. Header fields are written before
            // the Release store that hands the slot to the kernel.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), slot.add(self.layout.data_off()), len);
                match self.layout {
                    TxLayout::V3 => {
                        slot.add(H3_NEXT).cast::<u32>().write_unaligned(0);
                        slot.add(H3_SNAPLEN)
                            .cast::<u32>()
                            .write_unaligned(len as u32);
                        slot.add(H3_LEN).cast::<u32>().write_unaligned(len as u32);
                    }
                    TxLayout::V2 => {
                        slot.add(H2_SNAPLEN)
                            .cast::<u32>()
                            .write_unaligned(len as u32);
                        slot.add(H2_LEN).cast::<u32>().write_unaligned(len as u32);
                    }
                }
            }
            status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            *head = if i + 1 == self.frame_count { 0 } else { i + 1 };
            r.taken += 1;
            r.queued += 1;
            r.bytes += len as u64;
        }
        r
    }

    /// Whether the slot before `head` (the last one queued) is still waiting for the kernel.
    fn last_pending(&self, head: usize) -> bool {
        let last = if head == 0 {
            self.frame_count - 1
        } else {
            head - 1
        };
        self.status(last).load(Ordering::Acquire) == libc::TP_STATUS_SEND_REQUEST
    }
}

// ---- sockets and mappings ------------------------------------------------------------------------------------

/// A `mmap`ed ring region, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing uses the region after the owner drops it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Errors for one port and interface, worded "port P: OP on IF failed: ERR".
struct Ctx<'a> {
    port: &'a str,
    ifname: &'a str,
}

impl Ctx<'_> {
    fn io(&self, op: &str, err: io::Error) -> PortError {
        PortError::Io {
            port: self.port.to_string(),
            op: format!("{op} on {}", self.ifname),
            err,
        }
    }
    fn other(&self, msg: String) -> PortError {
        PortError::Other {
            port: self.port.to_string(),
            msg,
        }
    }
}

fn setsockopt<T>(fd: RawFd, level: c_int, name: c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live, initialised T and we pass its exact size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt<T: Copy>(fd: RawFd, level: c_int, name: c_int, val: &mut T) -> io::Result<()> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is a live T we may overwrite; the kernel writes at most `len` bytes.
    let rc = unsafe { libc::getsockopt(fd, level, name, (val as *mut T).cast(), &mut len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() has no memory preconditions. Protocol 0: nothing is received before bind() names
    // ETH_P_ALL, after the rings are set up.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind_packet(fd: RawFd, ifindex: c_int, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: we pass a live sockaddr_ll and its exact size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attaches a classic BPF program that drops every frame (`ret #0`). A socket of a multi-queue port wears it
/// from before its bind until every socket has joined the fanout group, so no frame is received twice (once by a
/// socket not yet in the group, once through the group).
fn attach_drop_all(fd: RawFd) -> io::Result<()> {
    let mut ins = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: ins.len() as u16,
        filter: ins.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `ins` outlives it.
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

fn detach_filter(fd: RawFd) -> io::Result<()> {
    let unused: c_int = 0;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &unused)
}

fn map_ring(fd: RawFd, len: usize) -> io::Result<Mapping> {
    // SAFETY: a fresh shared mapping of the socket's rings; the kernel checks `len` against the ring sizes.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(Mapping {
        ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?,
        len,
    })
}

/// An `ifreq` for `ifname` (checked to fit at open).
fn ifreq(ifname: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    ifr
}

fn if_ioctl(fd: RawFd, ifname: &str, req: libc::c_ulong) -> io::Result<libc::ifreq> {
    let mut ifr = ifreq(ifname);
    // SAFETY: the SIOCGIF* requests used here read the name and write one union member of `ifr`.
    let rc = unsafe { libc::ioctl(fd, req as _, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ifr)
}

fn if_mtu(fd: RawFd, ifname: &str) -> io::Result<u32> {
    let ifr = if_ioctl(fd, ifname, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU filled ifru_mtu.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu }.max(0) as u32)
}

fn if_running(fd: RawFd, ifname: &str) -> io::Result<bool> {
    let ifr = if_ioctl(fd, ifname, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS filled ifru_flags.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags } as c_int;
    Ok(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

/// MAC address and hardware type.
fn if_hwaddr(fd: RawFd, ifname: &str) -> io::Result<([u8; 6], u16)> {
    let ifr = if_ioctl(fd, ifname, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled ifru_hwaddr.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok((mac, sa.sa_family))
}

/// Reads and resets the kernel's counters for this socket: `(packets, drops)`.
fn packet_stats(fd: RawFd) -> io::Result<(u32, u32)> {
    let mut st = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    getsockopt(fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut st)?;
    Ok((st.tp_packets, st.tp_drops))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Transmit ring geometry: (block size, blocks, frames).
fn tx_geometry(frame_size: usize, frames: usize, page: usize) -> (usize, usize, usize) {
    // The smallest block that is a multiple of both the page size and the slot size (slots never straddle).
    let block = frame_size / gcd(frame_size, page) * page;
    let per_block = block / frame_size;
    let blocks = frames.div_ceil(per_block);
    (block, blocks, blocks * per_block)
}

/// Which transmit ring to try first (tests force the V2 fallback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxPreference {
    V3,
    #[cfg_attr(not(test), allow(dead_code))]
    V2Only,
}

/// One queue's socket(s) and rings, owned by the port and shared with the open queue.
struct QueueShared {
    // Field order is drop order: the rings (pointers into the mappings) first, then the mappings, then the
    // sockets.
    rx: RxRing,
    tx: TxRing,
    _map: Mapping,
    _tx_map: Option<Mapping>,
    fd: OwnedFd,
    /// The V2 transmit socket of the fallback.
    tx_fd: Option<OwnedFd>,
    /// Ring positions, kept while the queue is closed (they must match the kernel's).
    state: Mutex<QueueState>,
}

// SAFETY: the raw pointers in `rx`/`tx` point into `map`/`tx_map`, which live as long as this value. The ring
// memory is only touched by the thread owning the queue's claim (one at a time); the port itself only uses the
// socket descriptors (ioctl, getsockopt), which the kernel serialises.
unsafe impl Send for QueueShared {}
// SAFETY: see Send; shared access from the port never touches the rings.
unsafe impl Sync for QueueShared {}

impl QueueShared {
    fn tx_fd(&self) -> RawFd {
        self.tx_fd.as_ref().unwrap_or(&self.fd).as_raw_fd()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct QueueState {
    rx: RxCursor,
    tx_head: usize,
    needs_kick: bool,
}

/// Opens queue `q`'s socket: rings, options, mapping, bind.
fn open_socket(
    ctx: &Ctx<'_>,
    cfg: &AfPacketConfig,
    ifindex: c_int,
    pref: TxPreference,
    fanout: bool,
) -> Result<QueueShared, PortError> {
    let page = page_size();
    let fd = packet_socket().map_err(|e| ctx.io("socket(AF_PACKET, SOCK_RAW)", e))?;
    let raw = fd.as_raw_fd();
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3)
        .map_err(|e| ctx.io("setsockopt(PACKET_VERSION, TPACKET_V3)", e))?;
    // PACKET_LOSS: a frame the kernel refuses is skipped (its slot made available) instead of marking it
    // TP_STATUS_WRONG_FORMAT and stopping the ring for good. Must be set before the rings.
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_LOSS, &ONE)
        .map_err(|e| ctx.io("setsockopt(PACKET_LOSS)", e))?;
    if cfg.qdisc_bypass {
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &ONE)
            .map_err(|e| ctx.io("setsockopt(PACKET_QDISC_BYPASS)", e))?;
    }
    if let Err(e) = setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &ONE) {
        // Linux < 4.20: outgoing frames still reach the ring and are skipped by their packet type.
        tracing::debug!(port = ctx.port, error = %e, "PACKET_IGNORE_OUTGOING not available");
    }

    let rx_frames_per_block = cfg.block_size / cfg.frame_size;
    let req = libc::tpacket_req3 {
        tp_block_size: cfg.block_size as u32,
        tp_block_nr: cfg.block_count as u32,
        tp_frame_size: cfg.frame_size as u32,
        tp_frame_nr: (rx_frames_per_block * cfg.block_count) as u32,
        tp_retire_blk_tov: cfg.block_timeout_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
        .map_err(|e| ctx.io("setsockopt(PACKET_RX_RING)", e))?;
    let rx_len = cfg.block_size * cfg.block_count;

    let (tx_block, tx_blocks, tx_frames) = tx_geometry(cfg.frame_size, cfg.tx_frames, page);
    let tx_req3 = libc::tpacket_req3 {
        tp_block_size: tx_block as u32,
        tp_block_nr: tx_blocks as u32,
        tp_frame_size: cfg.frame_size as u32,
        tp_frame_nr: tx_frames as u32,
        tp_retire_blk_tov: 0,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    let tx_len = tx_block * tx_blocks;
    let v3_tx = match pref {
        TxPreference::V2Only => false,
        TxPreference::V3 => match setsockopt(raw, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx_req3)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(
                    port = ctx.port,
                    interface = ctx.ifname,
                    error = %e,
                    "TPACKET_V3 transmit ring not available (Linux < 4.11?); using a TPACKET_V2 ring on a second socket"
                );
                false
            }
        },
    };
    let map = map_ring(raw, rx_len + if v3_tx { tx_len } else { 0 })
        .map_err(|e| ctx.io("mmap of the packet rings", e))?;

    let (tx_fd, tx_map, tx_base) = if v3_tx {
        // SAFETY: the transmit ring follows the receive ring in the mapping, which is rx_len + tx_len long.
        let base = unsafe { NonNull::new_unchecked(map.ptr.as_ptr().add(rx_len)) };
        (None, None, base)
    } else {
        let tfd =
            packet_socket().map_err(|e| ctx.io("socket(AF_PACKET, SOCK_RAW) for transmit", e))?;
        let t = tfd.as_raw_fd();
        setsockopt(t, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V2)
            .map_err(|e| ctx.io("setsockopt(PACKET_VERSION, TPACKET_V2)", e))?;
        setsockopt(t, libc::SOL_PACKET, libc::PACKET_LOSS, &ONE)
            .map_err(|e| ctx.io("setsockopt(PACKET_LOSS)", e))?;
        if cfg.qdisc_bypass {
            setsockopt(t, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &ONE)
                .map_err(|e| ctx.io("setsockopt(PACKET_QDISC_BYPASS)", e))?;
        }
        let req = libc::tpacket_req {
            tp_block_size: tx_block as u32,
            tp_block_nr: tx_blocks as u32,
            tp_frame_size: cfg.frame_size as u32,
            tp_frame_nr: tx_frames as u32,
        };
        setsockopt(t, libc::SOL_PACKET, libc::PACKET_TX_RING, &req)
            .map_err(|e| ctx.io("setsockopt(PACKET_TX_RING, TPACKET_V2)", e))?;
        let m = map_ring(t, tx_len).map_err(|e| ctx.io("mmap of the transmit ring", e))?;
        // Protocol 0: the socket is attached to the interface for sending but receives nothing.
        bind_packet(t, ifindex, 0).map_err(|e| ctx.io("bind of the transmit socket", e))?;
        let base = m.ptr;
        (Some(tfd), Some(m), base)
    };

    if fanout {
        attach_drop_all(raw).map_err(|e| ctx.io("setsockopt(SO_ATTACH_FILTER)", e))?;
    }
    bind_packet(raw, ifindex, libc::ETH_P_ALL as u16).map_err(|e| ctx.io("bind(ETH_P_ALL)", e))?;

    Ok(QueueShared {
        rx: RxRing {
            base: map.ptr,
            block_size: cfg.block_size,
            block_count: cfg.block_count,
        },
        tx: TxRing {
            base: tx_base,
            layout: if v3_tx { TxLayout::V3 } else { TxLayout::V2 },
            frame_size: cfg.frame_size,
            frames_per_block: tx_block / cfg.frame_size,
            block_size: tx_block,
            frame_count: tx_frames,
        },
        _map: map,
        _tx_map: tx_map,
        fd,
        tx_fd,
        state: Mutex::new(QueueState::default()),
    })
}

static FANOUT_COUNTER: AtomicU16 = AtomicU16::new(0);

/// Joins every socket to one hash fanout group; returns the group id.
fn join_fanout(ctx: &Ctx<'_>, queues: &[QueueShared]) -> Result<u16, PortError> {
    let base = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;
    let join = |q: &QueueShared, id: u16, flags: u32| -> io::Result<()> {
        let val: c_int = (u32::from(id) | (flags << 16)) as c_int;
        setsockopt(
            q.fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            &val,
        )
    };
    let first = &queues[0];
    // Preferred: the kernel picks an unused id (4.17+) and the group ignores outgoing frames (4.20+).
    let mut chosen = None;
    for flags in [base | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING, base] {
        if join(first, 0, flags | libc::PACKET_FANOUT_FLAG_UNIQUEID).is_ok() {
            let mut val: c_int = 0;
            getsockopt(
                first.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &mut val,
            )
            .map_err(|e| ctx.io("getsockopt(PACKET_FANOUT)", e))?;
            chosen = Some((val as u32 as u16, flags));
            break;
        }
    }
    let (id, flags) = match chosen {
        Some(c) => c,
        None => {
            // Old kernel: an id from the pid and a per-process counter; retry a few on collision.
            let pid = std::process::id();
            let mut last = None;
            let mut found = None;
            for _ in 0..16 {
                let n = FANOUT_COUNTER.fetch_add(1, Ordering::Relaxed);
                let id = ((pid as u16) << 5) ^ n;
                match join(first, id, base) {
                    Ok(()) => {
                        found = Some(id);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match found {
                Some(id) => (id, base),
                None => {
                    return Err(ctx.io(
                        "setsockopt(PACKET_FANOUT)",
                        last.unwrap_or_else(|| io::Error::other("no fanout id")),
                    ))
                }
            }
        }
    };
    for q in &queues[1..] {
        join(q, id, flags)
            .map_err(|e| ctx.io(&format!("setsockopt(PACKET_FANOUT, group {id})"), e))?;
    }
    Ok(id)
}

fn validate(ctx: &Ctx<'_>, cfg: &AfPacketConfig, page: usize) -> Result<(), PortError> {
    let bad = |m: String| Err(ctx.other(m));
    if ctx.ifname.is_empty()
        || ctx.ifname.len() >= libc::IFNAMSIZ
        || ctx.ifname.contains(['\0', '/'])
    {
        return bad(format!("bad interface name {:?}", ctx.ifname));
    }
    if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
        return bad(format!(
            "queues must be 1..={MAX_QUEUES}, not {}",
            cfg.queues
        ));
    }
    if cfg.frame_size < 128
        || !cfg.frame_size.is_multiple_of(TPACKET_ALIGNMENT)
        || cfg.frame_size > 1 << 16
    {
        return bad(format!(
            "frame_size {} must be a multiple of 16 between 128 and 65536",
            cfg.frame_size
        ));
    }
    if cfg.block_size < page
        || !cfg.block_size.is_multiple_of(page)
        || !cfg.block_size.is_multiple_of(cfg.frame_size)
        || cfg.block_size > 1 << 30
    {
        return bad(format!(
            "block_size {} must be a multiple of the page size ({page}) and of frame_size ({}), at most 1 GiB",
            cfg.block_size, cfg.frame_size
        ));
    }
    if cfg.block_count == 0 || cfg.block_count.saturating_mul(cfg.block_size) > u32::MAX as usize {
        return bad(format!(
            "block_count {} must be at least 1 and the ring under 4 GiB",
            cfg.block_count
        ));
    }
    let (tx_block, tx_blocks, _) = tx_geometry(cfg.frame_size, cfg.tx_frames.max(1), page);
    if cfg.tx_frames == 0 || tx_block.saturating_mul(tx_blocks) > u32::MAX as usize {
        return bad(format!(
            "tx_frames {} must be at least 1 and the ring under 4 GiB",
            cfg.tx_frames
        ));
    }
    Ok(())
}

// ---- the port ------------------------------------------------------------------------------------------------

/// A Linux interface as a wharf port, through AF_PACKET sockets with TPACKET_V3 rings. See the module docs.
pub struct AfPacketPort {
    name: String,
    ifname: String,
    ifindex: c_int,
    mac: [u8; 6],
    fanout: Option<u16>,
    queues: Vec<Arc<QueueShared>>,
    counters: Vec<Arc<QueueCounters>>,
    claims: QueueClaims,
    pool: Pool,
}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("name", &self.name)
            .field("interface", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("queues", &self.queues.len())
            .field("fanout", &self.fanout)
            .finish()
    }
}

impl AfPacketPort {
    /// Opens port `name` on interface `cfg.interface` (or `name` when that is empty) in the calling thread's
    /// network namespace: one socket with its rings per queue, promiscuous mode and fanout as configured.
    /// Received frames are copied into buffers from `pool`.
    pub fn open(
        name: &str,
        cfg: &AfPacketConfig,
        pool: &Pool,
    ) -> Result<Arc<AfPacketPort>, PortError> {
        Self::open_with(name, cfg, pool, TxPreference::V3)
    }

    fn open_with(
        name: &str,
        cfg: &AfPacketConfig,
        pool: &Pool,
        pref: TxPreference,
    ) -> Result<Arc<AfPacketPort>, PortError> {
        let ifname = if cfg.interface.is_empty() {
            name
        } else {
            cfg.interface.as_str()
        };
        let ctx = Ctx { port: name, ifname };
        validate(&ctx, cfg, page_size())?;
        let cname = CString::new(ifname)
            .map_err(|_| ctx.other(format!("bad interface name {ifname:?}")))?;
        // SAFETY: cname is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(ctx.io("looking up the interface index", io::Error::last_os_error()));
        }
        let ifindex = ifindex as c_int;

        let mut shared = Vec::with_capacity(cfg.queues as usize);
        for _ in 0..cfg.queues {
            shared.push(open_socket(&ctx, cfg, ifindex, pref, cfg.queues > 1)?);
        }
        let ctl = shared[0].fd.as_raw_fd();
        let (mac, hwtype) =
            if_hwaddr(ctl, ifname).map_err(|e| ctx.io("ioctl(SIOCGIFHWADDR)", e))?;
        if hwtype != libc::ARPHRD_ETHER {
            return Err(ctx.other(format!(
                "interface {ifname} is not Ethernet (hardware type {hwtype}); wharf ports carry Ethernet frames"
            )));
        }
        if cfg.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            // Membership belongs to the socket: promiscuous mode ends when the port closes.
            setsockopt(ctl, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|e| ctx.io("setsockopt(PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC)", e))?;
        }
        let fanout = if shared.len() > 1 {
            let id = join_fanout(&ctx, &shared)?;
            for q in &shared {
                detach_filter(q.fd.as_raw_fd())
                    .map_err(|e| ctx.io("setsockopt(SO_DETACH_FILTER)", e))?;
            }
            Some(id)
        } else {
            None
        };
        tracing::debug!(
            port = name,
            interface = ifname,
            queues = cfg.queues,
            tx_ring = ?shared[0].tx.layout,
            ?fanout,
            "AF_PACKET port open"
        );
        Ok(Arc::new(AfPacketPort {
            name: name.to_string(),
            ifname: ifname.to_string(),
            ifindex,
            mac,
            fanout,
            counters: (0..cfg.queues).map(|_| Default::default()).collect(),
            queues: shared.into_iter().map(Arc::new).collect(),
            claims: QueueClaims::new(name, cfg.queues),
            pool: pool.clone(),
        }))
    }

    /// The interface the port is bound to.
    pub fn interface(&self) -> &str {
        &self.ifname
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// The fanout group id, when the port has more than one queue.
    pub fn fanout_group(&self) -> Option<u16> {
        self.fanout
    }

    /// TPACKET version of the transmit rings: 3, or 2 when the kernel had no V3 transmit ring.
    pub fn tx_ring_version(&self) -> u8 {
        match self.queues[0].tx.layout {
            TxLayout::V3 => 3,
            TxLayout::V2 => 2,
        }
    }
}

impl Port for AfPacketPort {
    fn info(&self) -> PortInfo {
        let fd = self.queues[0].fd.as_raw_fd();
        PortInfo {
            name: self.name.clone(),
            backend: "afpacket",
            queues: self.queues.len() as u16,
            mac: Some(if_hwaddr(fd, &self.ifname).map_or(self.mac, |(m, _)| m)),
            mtu: if_mtu(fd, &self.ifname).unwrap_or(0),
            link_up: if_running(fd, &self.ifname).unwrap_or(false),
            steering: crate::rss::Steering::Unknown,
        }
    }

    fn counters(&self) -> PortCounters {
        PortCounters::sum(self.counters.iter().map(|c| &**c))
    }

    fn open_queue(&self, queue: u16) -> Result<Box<dyn PortQueue>, PortError> {
        let claim = self.claims.claim(queue)?;
        let shared = self.queues[queue as usize].clone();
        let state = *shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mtu = if_mtu(shared.fd.as_raw_fd(), &self.ifname).map_err(|e| PortError::Io {
            port: self.name.clone(),
            op: format!("ioctl(SIOCGIFMTU) on {}", self.ifname),
            err: e,
        })?;
        Ok(Box::new(AfPacketQueue {
            shared,
            state,
            queue,
            ifname: self.ifname.clone(),
            mtu: mtu as usize,
            pool: self.pool.clone(),
            counters: self.counters[queue as usize].clone(),
            calls: 0,
            kick_backoff: 0,
            _claim: claim,
        }))
    }
}

struct AfPacketQueue {
    shared: Arc<QueueShared>,
    /// Working copy of the ring positions, written back on drop.
    state: QueueState,
    queue: u16,
    ifname: String,
    /// Interface MTU, refreshed with the statistics.
    mtu: usize,
    pool: Pool,
    counters: Arc<QueueCounters>,
    /// Receive calls since the last statistics read.
    calls: u32,
    /// Receive calls to wait before kicking again after a failed kick.
    kick_backoff: u32,
    // Last: released after the state is written back.
    _claim: QueueClaim,
}

impl AfPacketQueue {
    /// Reads the kernel's drop counter into `rx_missed` and refreshes the MTU.
    fn poll_stats(&mut self) {
        self.calls = 0;
        let fd = self.shared.fd.as_raw_fd();
        if let Ok((_, drops)) = packet_stats(fd) {
            self.counters.rx_missed.add(u64::from(drops));
        }
        if let Ok(mtu) = if_mtu(fd, &self.ifname) {
            self.mtu = mtu as usize;
        }
    }

    /// Tells the kernel to send the queued slots; remembers to retry when it could not take them all.
    fn kick(&mut self) {
        // SAFETY: a zero-length send with no address only makes the kernel walk its transmit ring.
        let rc = unsafe {
            libc::sendto(
                self.shared.tx_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        let pending = self.shared.tx.last_pending(self.state.tx_head);
        self.state.needs_kick = pending;
        self.kick_backoff = if rc < 0 && pending {
            // Link down or device gone: do not spin on sendto from every receive call.
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => 0,
                _ => 1024,
            }
        } else {
            0
        };
    }
}

impl PortQueue for AfPacketQueue {
    fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        if self.state.needs_kick {
            if self.kick_backoff == 0 {
                self.kick();
            } else {
                self.kick_backoff -= 1;
            }
        }
        self.calls += 1;
        if self.calls >= STATS_EVERY {
            self.poll_stats();
        }
        let r = self.shared.rx.receive(
            &mut self.state.rx,
            &self.pool,
            self.queue,
            &self.counters,
            burst,
        );
        if r.losing {
            self.poll_stats();
        }
        self.counters.rx_packets.add(r.packets as u64);
        self.counters.rx_bytes.add(r.bytes);
        r.packets
    }

    fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let r = self
            .shared
            .tx
            .enqueue(&mut self.state.tx_head, burst, self.mtu, &self.counters);
        if r.queued > 0 || self.state.needs_kick {
            self.kick();
        }
        drop(burst.drain_front(r.taken));
        self.counters.tx_packets.add(r.queued as u64);
        self.counters.tx_bytes.add(r.bytes);
        r.taken
    }
}

impl Drop for AfPacketQueue {
    fn drop(&mut self) {
        if self.state.needs_kick {
            self.kick();
        }
        self.poll_stats();
        *self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{flush_thread_cache, PoolConfig};

    fn pool(buffers: u32, room: usize) -> Pool {
        Pool::new(&PoolConfig {
            buffers,
            data_room: room,
            cache_size: 0,
            hugepages: false,
        })
        .unwrap()
    }

    /// A fake ring in ordinary memory (8-byte aligned), standing in for the kernel's.
    struct FakeRing {
        mem: Vec<u64>,
        block_size: usize,
        blocks: usize,
    }

    impl FakeRing {
        fn new(block_size: usize, blocks: usize) -> FakeRing {
            FakeRing {
                mem: vec![0; block_size * blocks / 8],
                block_size,
                blocks,
            }
        }
        fn bytes(&mut self) -> &mut [u8] {
            let len = self.mem.len() * 8;
            // SAFETY: the Vec<u64> is len bytes of initialised memory.
            unsafe { std::slice::from_raw_parts_mut(self.mem.as_mut_ptr().cast(), len) }
        }
        fn rx(&mut self) -> RxRing {
            RxRing {
                base: NonNull::new(self.mem.as_mut_ptr().cast()).unwrap(),
                block_size: self.block_size,
                block_count: self.blocks,
            }
        }
        fn put32(&mut self, at: usize, v: u32) {
            self.bytes()[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        }
        fn put16(&mut self, at: usize, v: u16) {
            self.bytes()[at..at + 2].copy_from_slice(&v.to_ne_bytes());
        }
        fn get32(&mut self, at: usize) -> u32 {
            u32::from_ne_bytes(self.bytes()[at..at + 4].try_into().unwrap())
        }
        /// Fills block `b` like the kernel: entries at 16-aligned offsets, data after header + sockaddr_ll.
        fn fill_block(&mut self, b: usize, frames: &[(&[u8], u32, u8)]) {
            let base = b * self.block_size;
            let mut off = tpacket_align(BD_LEN);
            let first = off;
            let mac = tpacket_align(H3_END + SLL_LEN) + 2;
            for (i, (f, status, pkttype)) in frames.iter().enumerate() {
                let h = base + off;
                let next = tpacket_align(mac + f.len());
                let last = i + 1 == frames.len();
                self.put32(h + H3_NEXT, if last { 0 } else { next as u32 });
                self.put32(h + H3_SNAPLEN, f.len() as u32);
                self.put32(h + H3_LEN, f.len() as u32);
                self.put32(h + H3_STATUS, libc::TP_STATUS_USER | status);
                self.put16(h + H3_MAC, mac as u16);
                self.bytes()[h + H3_END + SLL_PKTTYPE] = *pkttype;
                self.bytes()[h + mac..h + mac + f.len()].copy_from_slice(f);
                off += next;
            }
            self.put32(base + BD_NUM_PKTS, frames.len() as u32);
            self.put32(base + BD_FIRST_PKT, first as u32);
            self.put32(base + BD_BLOCK_STATUS, libc::TP_STATUS_USER);
        }
        fn block_status(&mut self, b: usize) -> u32 {
            self.get32(b * self.block_size + BD_BLOCK_STATUS)
        }
    }

    fn frame(n: u8, len: usize) -> Vec<u8> {
        let mut f = vec![n; len];
        if len >= ETH_HLEN {
            f[12] = 0x08;
            f[13] = 0x00;
        }
        f
    }

    #[test]
    fn rx_walks_blocks_in_order_and_resumes_mid_block() {
        let mut ring = FakeRing::new(4096, 2);
        let (a, b, c) = (frame(1, 60), frame(2, 100), frame(3, 1000));
        ring.fill_block(0, &[(&a, 0, 0), (&b, 0, 0), (&c, 0, 0)]);
        let d = frame(4, 64);
        ring.fill_block(1, &[(&d, 0, 0)]);
        let rx = ring.rx();
        let pool = pool(16, 2048);
        let counters = QueueCounters::default();
        let mut cur = RxCursor::default();
        let mut burst = Burst::new(2);
        let r = rx.receive(&mut cur, &pool, 3, &counters, &mut burst);
        assert_eq!(r.packets, 2);
        assert_eq!(burst.as_slice()[0].data(), &a[..]);
        assert_eq!(burst.as_slice()[1].data(), &b[..]);
        assert_eq!(burst.as_slice()[1].meta().in_queue, 3);
        assert!(cur.open, "block 0 still has an entry");
        assert_eq!(ring.block_status(0), libc::TP_STATUS_USER);
        burst.clear();
        let mut burst = Burst::new(8);
        let r = rx.receive(&mut cur, &pool, 3, &counters, &mut burst);
        assert_eq!(r.packets, 2);
        assert_eq!(r.bytes, 1064);
        assert_eq!(burst.as_slice()[0].data(), &c[..]);
        assert_eq!(burst.as_slice()[1].data(), &d[..]);
        assert_eq!(
            ring.block_status(0),
            libc::TP_STATUS_KERNEL,
            "block 0 returned"
        );
        assert_eq!(
            ring.block_status(1),
            libc::TP_STATUS_KERNEL,
            "block 1 returned"
        );
        assert_eq!(cur.block, 0, "wrapped around");
        assert_eq!(
            rx.receive(&mut cur, &pool, 3, &counters, &mut burst)
                .packets,
            0
        );
        assert_eq!(counters.drops.total(), 0);
    }

    #[test]
    fn rx_reinserts_stripped_vlan_tag_and_skips_outgoing() {
        let mut ring = FakeRing::new(4096, 1);
        let f = frame(9, 64);
        let tagged_on_wire = {
            let mut t = f[..12].to_vec();
            t.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a]);
            t.extend_from_slice(&f[12..]);
            t
        };
        ring.fill_block(
            0,
            &[
                (&f, 0, libc::PACKET_OUTGOING),
                (
                    &f,
                    libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_CSUM_VALID,
                    0,
                ),
                (&tagged_on_wire, 0, 0),
            ],
        );
        // The kernel's hv1 for the second entry: TCI 0x200a (PCP 1, VID 10).
        let second =
            tpacket_align(BD_LEN) + tpacket_align(tpacket_align(H3_END + SLL_LEN) + 2 + 64);
        ring.put32(second + H3_VLAN_TCI, 0x200a);
        let rx = ring.rx();
        let pool = pool(8, 2048);
        let counters = QueueCounters::default();
        let mut burst = Burst::new(8);
        let r = rx.receive(&mut RxCursor::default(), &pool, 0, &counters, &mut burst);
        assert_eq!(r.packets, 2, "the outgoing frame is skipped");
        let p = &burst.as_slice()[0];
        assert_eq!(
            p.data(),
            &tagged_on_wire[..],
            "tag re-inserted as on the wire"
        );
        assert_eq!(p.meta().flags & Meta::FLAG_VLAN, Meta::FLAG_VLAN);
        assert_eq!(p.meta().vlan_tci, 0x200a);
        assert_ne!(p.meta().flags & Meta::FLAG_L4_CSUM_OK, 0);
        let q = &burst.as_slice()[1];
        assert_eq!(q.data(), &tagged_on_wire[..]);
        assert_eq!(
            q.meta().vlan_tci,
            0x200a,
            "in-band tag reported the same way"
        );
        assert_eq!(q.meta().flags & Meta::FLAG_L4_CSUM_OK, 0);
    }

    #[test]
    fn rx_drops_too_big_cut_and_short_frames_and_counts_no_buffer() {
        let mut ring = FakeRing::new(8192, 1);
        let big = frame(1, 300);
        let short = frame(2, 14);
        let runt = vec![0u8; 10];
        let ok = frame(3, 60);
        ring.fill_block(
            0,
            &[
                (&big, 0, 0),
                (&runt, 0, 0),
                (&short, 0, 0),
                (&ok, 0, 0),
                (&ok, 0, 0),
            ],
        );
        let rx = ring.rx();
        let pool = pool(1, 256);
        let counters = QueueCounters::default();
        let mut burst = Burst::new(8);
        let r = rx.receive(&mut RxCursor::default(), &pool, 0, &counters, &mut burst);
        assert_eq!(r.packets, 1, "only one buffer in the pool");
        assert_eq!(burst.as_slice()[0].data(), &short[..]);
        assert_eq!(counters.drops.get(DropReason::TooBig), 1);
        assert_eq!(counters.drops.get(DropReason::Truncated), 1);
        assert_eq!(counters.drops.get(DropReason::NoBuffer), 2);
        assert_eq!(ring.block_status(0), libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn rx_drops_frames_the_ring_cut() {
        let mut ring = FakeRing::new(4096, 1);
        let f = frame(5, 200);
        ring.fill_block(0, &[(&f, 0, 0), (&f, 0, 0)]);
        // The first entry's wire length is larger than what the ring kept (tp_snaplen < tp_len).
        ring.put32(tpacket_align(BD_LEN) + H3_LEN, 9000);
        let rx = ring.rx();
        let pool = pool(4, 2048);
        let counters = QueueCounters::default();
        let mut burst = Burst::new(8);
        let r = rx.receive(&mut RxCursor::default(), &pool, 0, &counters, &mut burst);
        assert_eq!(r.packets, 1);
        assert_eq!(counters.drops.get(DropReason::TooBig), 1);
    }

    #[test]
    fn rx_survives_garbage_from_the_kernel() {
        let pool = pool(64, 2048);
        // A deterministic generator: every field of the block is random.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..2000 {
            let mut ring = FakeRing::new(4096, 2);
            let ok = frame(1, 80);
            ring.fill_block(0, &[(&ok, 0, 0), (&ok, 0, 0), (&ok, 0, 0)]);
            // Corrupt some words of the block: descriptor or entries.
            for _ in 0..(1 + round % 6) {
                let at = (next() as usize % (4096 / 4)) * 4;
                let v = match next() % 4 {
                    0 => next() as u32,
                    1 => u32::MAX,
                    2 => 0,
                    _ => (next() % 8192) as u32,
                };
                ring.put32(at, v);
            }
            ring.put32(BD_BLOCK_STATUS, libc::TP_STATUS_USER);
            let rx = ring.rx();
            let counters = QueueCounters::default();
            let mut cur = RxCursor::default();
            let mut burst = Burst::new(256);
            let r = rx.receive(&mut cur, &pool, 0, &counters, &mut burst);
            assert_eq!(burst.len(), r.packets);
            for p in burst.iter() {
                assert!(p.len() >= ETH_HLEN && p.len() <= 2048);
            }
            if !burst.is_full() {
                assert_eq!(
                    ring.block_status(0),
                    libc::TP_STATUS_KERNEL,
                    "round {round}"
                );
                assert!(!cur.open && cur.block == 1, "round {round}");
            }
            drop(burst);
        }
        flush_thread_cache();
        assert_eq!(pool.available(), 64, "no buffer leaked");
    }

    fn tx_ring(mem: &mut [u64], layout: TxLayout, frame_size: usize, frames: usize) -> TxRing {
        let (block, _blocks, count) = tx_geometry(frame_size, frames, 4096);
        assert!(mem.len() * 8 >= block * _blocks);
        TxRing {
            base: NonNull::new(mem.as_mut_ptr().cast()).unwrap(),
            layout,
            frame_size,
            frames_per_block: block / frame_size,
            block_size: block,
            frame_count: count,
        }
    }

    #[test]
    fn tx_fills_slots_in_order_and_stops_when_full() {
        for layout in [TxLayout::V3, TxLayout::V2] {
            let mut mem = vec![0u64; 4 * 4096 / 8];
            let ring = tx_ring(&mut mem, layout, 2048, 4);
            assert_eq!(ring.frame_count, 4);
            let pool = pool(16, 2048);
            let counters = QueueCounters::default();
            let mut burst = Burst::new(16);
            for i in 0..6u8 {
                let mut p = pool.alloc().unwrap();
                p.set_frame(&frame(i, 100 + i as usize));
                burst.push(p).unwrap();
            }
            let mut head = 0;
            let r = ring.enqueue(&mut head, &burst, 1500, &counters);
            assert_eq!(
                r,
                TxResult {
                    taken: 4,
                    queued: 4,
                    bytes: 100 + 101 + 102 + 103
                }
            );
            assert_eq!(head, 0, "wrapped");
            for i in 0..4 {
                assert_eq!(
                    ring.status(i).load(Ordering::Relaxed),
                    libc::TP_STATUS_SEND_REQUEST
                );
                let slot = ring.slot(i);
                // SAFETY: reading back what enqueue wrote inside the slot.
                let got =
                    unsafe { std::slice::from_raw_parts(slot.add(layout.data_off()), 100 + i) };
                assert_eq!(got, &frame(i as u8, 100 + i)[..]);
            }
            assert!(ring.last_pending(head));
            // The "kernel" sends slot 0 and 1 (one with a timestamp bit).
            ring.status(0)
                .store(libc::TP_STATUS_AVAILABLE, Ordering::Relaxed);
            ring.status(1)
                .store(libc::TP_STATUS_TS_SOFTWARE, Ordering::Relaxed);
            let mut rest = Burst::new(16);
            for p in burst.drain_front(4) {
                drop(p);
            }
            for p in burst.drain() {
                rest.push(p).unwrap();
            }
            let r = ring.enqueue(&mut head, &rest, 1500, &counters);
            assert_eq!(r.taken, 2);
            assert_eq!(head, 2);
            assert_eq!(counters.drops.total(), 0);
        }
    }

    #[test]
    fn tx_drops_what_cannot_be_sent_but_keeps_order() {
        let mut mem = vec![0u64; 4096 / 8];
        let ring = tx_ring(&mut mem, TxLayout::V3, 2048, 2);
        let pool = pool(16, 4000);
        let counters = QueueCounters::default();
        let mut burst = Burst::new(16);
        let sizes = [60usize, 10, 1515, 1514, 2001, 100, 100];
        for (i, s) in sizes.iter().enumerate() {
            let mut p = pool.alloc().unwrap();
            p.set_frame(&frame(i as u8, *s));
            burst.push(p).unwrap();
        }
        let mut head = 0;
        let r = ring.enqueue(&mut head, &burst, 1500, &counters);
        // 60 queued, 10 runt, 1515 too big (MTU 1500 + 14), 1514 queued, 2001 too big (slot), 100 finds the ring
        // full.
        assert_eq!(r.taken, 5);
        assert_eq!(r.queued, 2);
        assert_eq!(counters.drops.get(DropReason::Truncated), 1);
        assert_eq!(counters.drops.get(DropReason::TooBig), 2);
        drop(burst.drain_front(r.taken));
        assert_eq!(burst.len(), 2, "the rest stays with the caller");
        assert_eq!(burst.as_slice()[0].data()[0], 5);
    }

    #[test]
    fn tx_allows_one_vlan_tag_over_the_mtu() {
        let mut mem = vec![0u64; 4096 / 8];
        let ring = tx_ring(&mut mem, TxLayout::V3, 2048, 2);
        let pool = pool(4, 2048);
        let counters = QueueCounters::default();
        let mut burst = Burst::new(4);
        let mut f = frame(1, 1518);
        f[12] = 0x81;
        let mut p = pool.alloc().unwrap();
        p.set_frame(&f);
        burst.push(p).unwrap();
        let mut head = 0;
        assert_eq!(ring.enqueue(&mut head, &burst, 1500, &counters).queued, 1);
    }

    #[test]
    fn geometry() {
        assert_eq!(tx_geometry(2048, 1024, 4096), (4096, 512, 1024));
        assert_eq!(tx_geometry(2048, 3, 4096), (4096, 2, 4));
        assert_eq!(tx_geometry(9216, 10, 4096), (36864, 3, 12));
        assert_eq!(tx_geometry(1536, 8, 4096), (12288, 1, 8));
    }

    #[test]
    fn bad_configs_are_refused_with_reasons() {
        let pool = pool(4, 2048);
        let cases: Vec<(AfPacketConfig, &str)> = vec![
            (
                AfPacketConfig {
                    interface: "lo".into(),
                    queues: 0,
                    ..Default::default()
                },
                "queues",
            ),
            (
                AfPacketConfig {
                    interface: "lo".into(),
                    block_size: 5000,
                    ..Default::default()
                },
                "block_size",
            ),
            (
                AfPacketConfig {
                    interface: "lo".into(),
                    frame_size: 100,
                    ..Default::default()
                },
                "frame_size",
            ),
            (
                AfPacketConfig {
                    interface: "lo".into(),
                    tx_frames: 0,
                    ..Default::default()
                },
                "tx_frames",
            ),
            (
                AfPacketConfig {
                    interface: "a-very-long-interface-name".into(),
                    ..Default::default()
                },
                "interface name",
            ),
        ];
        for (cfg, want) in cases {
            let err = AfPacketPort::open("p0", &cfg, &pool).unwrap_err();
            assert!(matches!(err, PortError::Other { .. }), "{err}");
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
    }

    #[test]
    fn missing_interface_is_an_io_error_naming_it() {
        let pool = pool(4, 2048);
        let cfg = AfPacketConfig {
            interface: "nosuchif0".into(),
            ..Default::default()
        };
        let err = AfPacketPort::open("p0", &cfg, &pool).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PortError::Io { .. }), "{msg}");
        assert!(
            msg.starts_with("port p0: ") && msg.contains("nosuchif0"),
            "{msg}"
        );
    }

    /// The V2 fallback transmit ring, forced: frames sent through it arrive at the namespace's socket.
    #[test]
    fn v2_transmit_fallback_delivers() {
        use crate::netns::{self, NetnsGuard, VethGuard};
        use std::net::Ipv4Addr;
        if !netns::require_root("afpacket::v2_transmit_fallback_delivers") {
            return;
        }
        // Both ends in namespaces of their own: nothing reaches any other network.
        let ns = NetnsGuard::new("wafv").unwrap();
        let hns = NetnsGuard::new("wafvh").unwrap();
        let mut veth = VethGuard::new("wvn", "wvh").unwrap();
        veth.move_a(ns.name()).unwrap();
        veth.move_b(hns.name()).unwrap();
        let ns_mac = [0x02, 0x77, 0, 0, 0, 1];
        netns::set_mac(Some(ns.name()), veth.a(), ns_mac).unwrap();
        netns::add_addr4(Some(ns.name()), veth.a(), Ipv4Addr::new(10, 203, 0, 1), 24).unwrap();
        netns::set_up(Some(ns.name()), veth.a()).unwrap();
        netns::set_up(Some(hns.name()), veth.b()).unwrap();
        let sock = ns
            .run(|| std::net::UdpSocket::bind("10.203.0.1:7000"))
            .unwrap()
            .unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();

        let pool = pool(64, 2048);
        let cfg = AfPacketConfig {
            interface: veth.b().to_string(),
            block_size: 1 << 16,
            block_count: 2,
            tx_frames: 8,
            ..Default::default()
        };
        let port = hns
            .run(|| AfPacketPort::open_with("v2", &cfg, &pool, TxPreference::V2Only))
            .unwrap()
            .unwrap();
        assert_eq!(port.tx_ring_version(), 2);
        let h_mac = port.info().mac.unwrap();
        let mut q = port.open_queue(0).unwrap();
        let payload = b"v2!";
        let b = etherparse::PacketBuilder::ethernet2(h_mac, ns_mac)
            .ipv4([10, 203, 0, 2], [10, 203, 0, 1], 64)
            .udp(6000, 7000);
        let mut f = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut f, payload).unwrap();
        let mut burst = Burst::new(4);
        for _ in 0..3 {
            let mut p = pool.alloc().unwrap();
            p.set_frame(&f);
            burst.push(p).unwrap();
        }
        assert_eq!(q.tx_burst(&mut burst), 3);
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            let (n, from) = sock
                .recv_from(&mut buf)
                .expect("datagram through the V2 ring");
            assert_eq!(&buf[..n], payload);
            assert_eq!(from, "10.203.0.2:6000".parse().unwrap());
        }
        assert_eq!(port.counters().tx_packets, 3);
    }
}
