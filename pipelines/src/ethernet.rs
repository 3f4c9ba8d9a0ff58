//! Ethernet II header view in the style of smoltcp's `wire` module: a typed, zero-copy wrapper over a byte
//! buffer whose checked constructor guarantees every accessor is in bounds.

/// A MAC address.
pub type Mac = [u8; 6];

/// Ethernet header length (no VLAN tag).
pub const HEADER_LEN: usize = 14;

/// A read (and, over `&mut [u8]`, write) view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

/// The frame is shorter than an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds a full header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// Destination MAC.
    #[inline]
    pub fn dst(&self) -> Mac {
        let b = self.buffer.as_ref();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    /// Source MAC.
    #[inline]
    pub fn src(&self) -> Mac {
        let b = self.buffer.as_ref();
        [b[6], b[7], b[8], b[9], b[10], b[11]]
    }

    /// EtherType (or the TPID of an outer VLAN tag).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[12], b[13]])
    }

    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst(&mut self, mac: Mac) {
        self.buffer.as_mut()[0..6].copy_from_slice(&mac);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src(&mut self, mac: Mac) {
        self.buffer.as_mut()[6..12].copy_from_slice(&mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_constructor_and_accessors() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).err(),
            Some(Truncated)
        );
        let mut f = [0u8; 14];
        f[12] = 0x08;
        let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
        e.set_dst([1, 2, 3, 4, 5, 6]);
        e.set_src([7, 8, 9, 10, 11, 12]);
        assert_eq!(e.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(e.src(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(e.ethertype(), 0x0800);
        assert!(e.payload().is_empty());
        let p = etherparse::Ethernet2HeaderSlice::from_slice(&f).unwrap();
        assert_eq!(p.destination(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(p.source(), [7, 8, 9, 10, 11, 12]);
    }
}
