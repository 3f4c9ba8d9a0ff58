//! `Pkt`: an owned handle to one packet buffer from a [`Pool`](crate::pool::Pool).
//!
//! A `Pkt` is one pointer (to the element start, which is where an `rte_mbuf` header sits under DPDK; see the
//! layout in [`crate::pool`]). It is not `Clone`: ownership *is* the "returned exactly once" rule. Dropping a
//! `Pkt` returns the buffer to its pool through the dropping thread's cache, so every path that ends a packet
//! (drop with a reason, transmit done, error) frees it exactly once without bookkeeping at the call site.

use crate::pool::{self, PoolInner, HEADROOM, MBUF_ROOM, META_SIZE};
use std::ptr::NonNull;

/// Per-packet metadata: 64 bytes, one cache line, right after the mbuf room (the mbuf private area).
///
/// The first 24 bytes are the buffer's identity and frame bounds; the rest is filled by rx and by stages.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Meta {
    /// The wharf pool the buffer goes home to; null for a buffer of an external pool (a DPDK mempool, whose
    /// registered routines free and copy it).
    home: *const PoolInner,
    /// Receive time in nanoseconds of the worker's clock, set by backends that know it (0 otherwise).
    pub timestamp_ns: u64,
    index: u32,
    buf_len: u32,
    data_off: u16,
    len: u16,
    /// Port the packet came in on.
    pub in_port: u16,
    /// Queue of that port.
    pub in_queue: u16,
    /// Flow hash (symmetric over the 5-tuple, see [`crate::rss`]), 0 when not computed.
    pub flow_hash: u32,
    /// Offset of the L3 header from the frame start, 0 when not parsed.
    pub l3_off: u16,
    /// Offset of the L4 header from the frame start, 0 when not parsed.
    pub l4_off: u16,
    /// 802.1Q TCI of the outer tag when [`Meta::FLAG_VLAN`] is set (tag kept in the frame or stripped).
    pub vlan_tci: u16,
    /// Flag bits (`FLAG_*`).
    pub flags: u16,
    /// Output port chosen by a stage (meaningful only on the way to tx).
    pub out_port: u16,
    /// IP protocol number when the L4 offset is set.
    pub ip_proto: u8,
    _pad: u8,
    /// Scratch space a stage may use to pass a result to the next one within a burst.
    pub scratch: [u32; 4],
}

const _: () = assert!(std::mem::size_of::<Meta>() == META_SIZE);

impl Meta {
    /// `vlan_tci` is valid.
    pub const FLAG_VLAN: u16 = 1 << 0;
    /// The L3 checksum was verified (by a NIC or a stage).
    pub const FLAG_L3_CSUM_OK: u16 = 1 << 1;
    /// The L4 checksum was verified.
    pub const FLAG_L4_CSUM_OK: u16 = 1 << 2;
    /// The frame came out of a tunnel (VXLAN decapsulation): it is not decapsulated a second time, so a
    /// packet nested many times over cannot make a stage recurse.
    pub const FLAG_DECAPPED: u16 = 1 << 3;

    pub(crate) fn new(home: *const PoolInner, index: u32, buf_len: u32) -> Meta {
        Meta {
            home,
            timestamp_ns: 0,
            index,
            buf_len,
            data_off: HEADROOM as u16,
            len: 0,
            in_port: 0,
            in_queue: 0,
            flow_hash: 0,
            l3_off: 0,
            l4_off: 0,
            vlan_tci: 0,
            flags: 0,
            out_port: 0,
            ip_proto: 0,
            _pad: 0,
            scratch: [0; 4],
        }
    }

    /// The buffer belongs to an external pool (a DPDK mempool).
    #[cfg(feature = "dpdk")]
    #[inline]
    pub(crate) fn is_external(&self) -> bool {
        self.home.is_null()
    }

    #[inline]
    fn reset(&mut self) {
        self.clear_trip(0, 0);
        self.data_off = HEADROOM as u16;
        self.len = 0;
    }

    /// Clears what a trip through the ports and stages left (timestamp, offsets, flags, scratch), keeping the
    /// frame bounds, and sets the input port and queue: the metadata a NIC's receive gives.
    #[inline]
    pub(crate) fn clear_trip(&mut self, port: u16, queue: u16) {
        // In memory order, the padding byte too: the zeros merge into a few wide stores (once per received
        // packet).
        self.timestamp_ns = 0;
        self.in_port = port;
        self.in_queue = queue;
        self.flow_hash = 0;
        self.l3_off = 0;
        self.l4_off = 0;
        self.vlan_tci = 0;
        self.flags = 0;
        self.out_port = 0;
        self.ip_proto = 0;
        self._pad = 0;
        self.scratch = [0; 4];
    }
}

/// An owned packet buffer. See the module docs.
pub struct Pkt {
    elt: NonNull<u8>,
}

// A Pkt is the unique owner of its buffer; moving it between threads moves that ownership.
unsafe impl Send for Pkt {}
unsafe impl Sync for Pkt {}

impl std::fmt::Debug for Pkt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkt")
            .field("index", &self.meta().index)
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .finish()
    }
}

impl Pkt {
    /// Safety: `elt` is the start of a pool element that no one else owns.
    #[inline]
    pub(crate) unsafe fn from_elt(elt: NonNull<u8>) -> Pkt {
        Pkt { elt }
    }

    #[inline]
    pub(crate) fn reset(mut self) -> Pkt {
        self.meta_mut().reset();
        self
    }

    #[inline]
    fn meta_ptr(&self) -> *mut Meta {
        unsafe { self.elt.as_ptr().add(MBUF_ROOM).cast() }
    }

    #[inline]
    fn buf_ptr(&self) -> *mut u8 {
        unsafe { self.elt.as_ptr().add(MBUF_ROOM + META_SIZE) }
    }

    /// The metadata.
    #[inline]
    pub fn meta(&self) -> &Meta {
        unsafe { &*self.meta_ptr() }
    }

    /// The metadata, writable.
    #[inline]
    pub fn meta_mut(&mut self) -> &mut Meta {
        unsafe { &mut *self.meta_ptr() }
    }

    /// The frame.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.meta();
        unsafe {
            std::slice::from_raw_parts(self.buf_ptr().add(m.data_off as usize), m.len as usize)
        }
    }

    /// The frame, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (off, len) = (self.meta().data_off as usize, self.meta().len as usize);
        unsafe { std::slice::from_raw_parts_mut(self.buf_ptr().add(off), len) }
    }

    /// Frame length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.meta().len as usize
    }

    /// True for an empty frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.meta().len == 0
    }

    /// Bytes free in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.meta().data_off as usize
    }

    /// Bytes free after the frame.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.meta();
        m.buf_len as usize - m.data_off as usize - m.len as usize
    }

    /// Largest frame this buffer holds with the default headroom.
    #[inline]
    pub fn max_frame(&self) -> usize {
        self.meta().buf_len as usize - HEADROOM
    }

    /// Grows the frame at the front by `n` bytes (for an encapsulation header) and returns them, or `None` if
    /// the headroom is too small. Nothing is copied.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let m = self.meta_mut();
        if n > m.data_off as usize {
            return None;
        }
        m.data_off -= n as u16;
        m.len += n as u16;
        let off = m.data_off as usize;
        Some(unsafe { std::slice::from_raw_parts_mut(self.buf_ptr().add(off), n) })
    }

    /// Removes `n` bytes from the front (decapsulation). False, and nothing changed, if the frame is shorter.
    #[inline]
    pub fn strip_front(&mut self, n: usize) -> bool {
        let m = self.meta_mut();
        if n > m.len as usize {
            return false;
        }
        m.data_off += n as u16;
        m.len -= n as u16;
        true
    }

    /// Grows the frame at the end by `n` bytes and returns them, or `None` if the tailroom is too small.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        let m = self.meta_mut();
        let start = m.data_off as usize + m.len as usize;
        m.len += n as u16;
        Some(unsafe { std::slice::from_raw_parts_mut(self.buf_ptr().add(start), n) })
    }

    /// Shortens the frame to `len` bytes (no-op if already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        let m = self.meta_mut();
        if len < m.len as usize {
            m.len = len as u16;
        }
    }

    /// Replaces the frame with `bytes` at the default headroom. False, and the frame left empty, if it does
    /// not fit.
    #[inline]
    pub fn set_frame(&mut self, bytes: &[u8]) -> bool {
        let m = self.meta_mut();
        m.data_off = HEADROOM as u16;
        m.len = 0;
        match self.append(bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// Sets the frame length after a backend wrote `len` bytes at the default headroom
    /// (see [`Pkt::rx_room`]). False if `len` is larger than the room.
    #[inline]
    pub fn set_rx_len(&mut self, len: usize) -> bool {
        let m = self.meta_mut();
        if len > m.buf_len as usize - HEADROOM {
            return false;
        }
        m.data_off = HEADROOM as u16;
        m.len = len as u16;
        true
    }

    /// The whole data room after the default headroom, for a backend to receive into; follow with
    /// [`Pkt::set_rx_len`].
    #[inline]
    pub fn rx_room(&mut self) -> &mut [u8] {
        let room = self.meta().buf_len as usize - HEADROOM;
        unsafe { std::slice::from_raw_parts_mut(self.buf_ptr().add(HEADROOM), room) }
    }

    /// An empty buffer from the same pool as this packet (for a packet a stage originates in reply to it: an
    /// ARP request, an ICMP error). `None` when the pool is empty.
    #[inline]
    pub fn alloc_sibling(&self) -> Option<Pkt> {
        let m = self.meta();
        #[cfg(feature = "dpdk")]
        let c = if m.home.is_null() {
            pool::alloc_external_like(self.elt)?
        } else {
            pool::alloc_from(m.home)?
        };
        #[cfg(not(feature = "dpdk"))]
        let c = pool::alloc_from(m.home)?;
        Some(c)
    }

    /// A copy of this packet (frame at the same offset, and metadata) in a new buffer from the same pool, for
    /// flooding and replication. `None` when the pool is empty.
    #[inline]
    pub fn try_clone(&self) -> Option<Pkt> {
        let m = self.meta();
        #[cfg(feature = "dpdk")]
        let mut c = if m.home.is_null() {
            pool::alloc_external_like(self.elt)?
        } else {
            pool::alloc_from(m.home)?
        };
        #[cfg(not(feature = "dpdk"))]
        let mut c = pool::alloc_from(m.home)?;
        let (off, len) = (m.data_off as usize, m.len as usize);
        // Safety: both buffers have the same layout and size; the source range is in bounds of its buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.buf_ptr().add(off), c.buf_ptr().add(off), len)
        };
        let cm = c.meta_mut();
        cm.data_off = m.data_off;
        cm.len = m.len;
        cm.timestamp_ns = m.timestamp_ns;
        cm.in_port = m.in_port;
        cm.in_queue = m.in_queue;
        cm.flow_hash = m.flow_hash;
        cm.l3_off = m.l3_off;
        cm.l4_off = m.l4_off;
        cm.vlan_tci = m.vlan_tci;
        cm.flags = m.flags;
        cm.out_port = m.out_port;
        cm.ip_proto = m.ip_proto;
        cm.scratch = m.scratch;
        Some(c)
    }

    /// Index of the buffer in its pool (stable identity, for tests and tracing).
    #[inline]
    pub fn buffer_index(&self) -> u32 {
        self.meta().index
    }

    /// Metadata as a receive gives it: the frame bounds a driver reported, the input port and queue, the rest
    /// cleared (the DPDK backend at rx; each field written once).
    ///
    /// # Safety
    /// `data_off + len` is at most the buffer length.
    #[cfg(feature = "dpdk")]
    #[inline]
    pub(crate) unsafe fn reset_rx(mut self, data_off: u16, len: u16, port: u16, queue: u16) -> Pkt {
        let m = self.meta_mut();
        debug_assert!(data_off as usize + len as usize <= m.buf_len as usize);
        m.clear_trip(port, queue);
        m.data_off = data_off;
        m.len = len;
        self
    }

    /// Element start: where an `rte_mbuf` header lives under the DPDK backend.
    #[inline]
    pub fn as_elt_ptr(&self) -> *mut u8 {
        self.elt.as_ptr()
    }
}

impl Drop for Pkt {
    #[inline]
    fn drop(&mut self) {
        let m = self.meta();
        #[cfg(feature = "dpdk")]
        if m.home.is_null() {
            pool::release_external(self.elt);
            return;
        }
        pool::release(m.home, m.index);
    }
}

#[cfg(test)]
mod tests {
    use crate::pool::Pool;

    fn pool() -> Pool {
        Pool::for_test(8, 256)
    }

    #[test]
    fn prepend_strip_append_truncate() {
        let p = pool();
        let mut pkt = p.alloc().unwrap();
        assert!(pkt.set_frame(&[1, 2, 3, 4]));
        let hdr = pkt.prepend(50).unwrap();
        hdr.fill(9);
        assert_eq!(pkt.len(), 54);
        assert_eq!(&pkt.data()[50..], &[1, 2, 3, 4]);
        assert!(pkt.strip_front(50));
        assert_eq!(pkt.data(), &[1, 2, 3, 4]);
        assert!(!pkt.strip_front(5));
        pkt.append(2).unwrap().copy_from_slice(&[5, 6]);
        assert_eq!(pkt.data(), &[1, 2, 3, 4, 5, 6]);
        pkt.truncate(3);
        assert_eq!(pkt.data(), &[1, 2, 3]);
    }

    #[test]
    fn bounds_are_enforced() {
        let p = pool();
        let mut pkt = p.alloc().unwrap();
        assert!(pkt.prepend(129).is_none());
        assert!(pkt.prepend(128).is_some());
        let mut pkt = p.alloc().unwrap();
        assert!(!pkt.set_frame(&[0u8; 257]));
        assert!(pkt.set_frame(&[0u8; 256]));
        assert!(pkt.append(1).is_none());
        assert!(!pkt.set_rx_len(257));
    }

    #[test]
    fn clone_copies_frame_and_metadata_into_a_new_buffer() {
        let p = pool();
        let mut a = p.alloc().unwrap();
        a.set_frame(&[1, 2, 3, 4, 5]);
        a.strip_front(1);
        a.meta_mut().in_port = 3;
        a.meta_mut().flow_hash = 99;
        let b = a.try_clone().unwrap();
        assert_ne!(a.buffer_index(), b.buffer_index());
        assert_eq!(b.data(), &[2, 3, 4, 5]);
        assert_eq!(b.headroom(), a.headroom());
        assert_eq!((b.meta().in_port, b.meta().flow_hash), (3, 99));
        a.data_mut()[0] = 9;
        assert_eq!(b.data()[0], 2, "independent buffers");
        let held: Vec<_> = std::iter::from_fn(|| p.alloc()).collect();
        assert!(a.try_clone().is_none(), "empty pool: no clone");
        drop(held);
    }

    #[test]
    fn realloc_resets_metadata() {
        let p = Pool::for_test(1, 256);
        let mut pkt = p.alloc().unwrap();
        pkt.set_frame(&[1; 10]);
        pkt.meta_mut().in_port = 7;
        pkt.prepend(20);
        drop(pkt);
        let pkt = p.alloc().unwrap();
        assert_eq!(pkt.len(), 0);
        assert_eq!(pkt.meta().in_port, 0);
        assert_eq!(pkt.headroom(), crate::pool::HEADROOM);
    }
}
