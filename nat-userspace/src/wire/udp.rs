//! UDP header view.

pub const HEADER_LEN: usize = 8;
pub const PROTOCOL: u8 = 17;

/// A view over a UDP datagram, checked: header present, length field within the buffer
/// and at least the header.
#[derive(Debug)]
pub struct Datagram<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Datagram<T> {
    /// Wraps a buffer already validated (by [`crate::wire::parse`] or `new_checked`).
    pub fn new_unchecked(buf: T) -> Datagram<T> {
        Datagram(buf)
    }

    pub fn new_checked(buf: T) -> Option<Datagram<T>> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return None;
        }
        let l = usize::from(u16::from_be_bytes([b[4], b[5]]));
        (l >= HEADER_LEN && l <= b.len()).then_some(Datagram(buf))
    }

    pub fn src_port(&self) -> u16 {
        let b = self.0.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn dst_port(&self) -> u16 {
        let b = self.0.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// Length field (header + payload).
    pub fn len(&self) -> usize {
        let b = self.0.as_ref();
        usize::from(u16::from_be_bytes([b[4], b[5]]))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        let b = self.0.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Datagram<T> {
    pub fn set_len(&mut self, v: u16) {
        self.0.as_mut()[4..6].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.0.as_mut()[6..8].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_port(&mut self, v: u16) {
        self.0.as_mut()[0..2].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.0.as_mut()[2..4].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_header() {
        let mut b = [
            0x13, 0xc4, 0x4e, 0x20, 0x00, 0x0c, 0xab, 0xcd, b'a', b'b', b'c', b'd',
        ];
        let d = Datagram::new_checked(&b[..]).unwrap();
        assert_eq!(
            (d.src_port(), d.dst_port(), d.len(), d.checksum()),
            (5060, 20000, 12, 0xabcd)
        );
        assert!(!d.is_empty());
        let mut d = Datagram::new_checked(&mut b[..]).unwrap();
        d.set_src_port(15060);
        d.set_dst_port(5060);
        d.set_len(9);
        d.set_checksum(0);
        assert_eq!(&b[..8], &[0x3a, 0xd4, 0x13, 0xc4, 0x00, 0x09, 0x00, 0x00]);
    }

    #[test]
    fn checked_refuses_bad_lengths() {
        assert!(Datagram::new_checked(&[0u8; 7][..]).is_none());
        let mut b = [0u8; 10];
        b[5] = 11; // longer than the buffer
        assert!(Datagram::new_checked(&b[..]).is_none());
        b[5] = 7; // shorter than the header
        assert!(Datagram::new_checked(&b[..]).is_none());
    }
}
