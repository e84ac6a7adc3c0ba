//! Ethernet II with up to [`MAX_VLAN_TAGS`] VLAN tags (802.1ad outer, 802.1Q inner): the
//! XDP program's limit, from `nat-common`.

pub use nat_common::MAX_VLAN_TAGS;

pub const HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// A view over an Ethernet frame, checked to hold at least the header.
#[derive(Debug)]
pub struct Frame<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buf: T) -> Option<Frame<T>> {
        (buf.as_ref().len() >= HEADER_LEN).then_some(Frame(buf))
    }

    pub fn dst(&self) -> [u8; 6] {
        self.0.as_ref()[field::DST]
            .try_into()
            .expect("checked length")
    }

    pub fn src(&self) -> [u8; 6] {
        self.0.as_ref()[field::SRC]
            .try_into()
            .expect("checked length")
    }

    /// The L3 offset and ethertype after skipping up to [`MAX_VLAN_TAGS`] VLAN tags.
    pub fn payload(&self) -> Option<(usize, u16)> {
        let b = self.0.as_ref();
        let mut off = HEADER_LEN;
        let mut et = u16::from_be_bytes([b[field::ETHERTYPE.start], b[field::ETHERTYPE.start + 1]]);
        for _ in 0..MAX_VLAN_TAGS {
            if et != ETHERTYPE_VLAN && et != ETHERTYPE_QINQ {
                break;
            }
            let t = b.get(off + 2..off + 4)?;
            et = u16::from_be_bytes([t[0], t[1]]);
            off += VLAN_TAG_LEN;
        }
        (et != ETHERTYPE_VLAN && et != ETHERTYPE_QINQ).then_some((off, et))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.0.as_mut()[field::DST].copy_from_slice(&mac);
    }

    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.0.as_mut()[field::SRC].copy_from_slice(&mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` zero bytes with the ethertype chain `types`: the frame's at 12, then one after
    /// each 4-byte tag.
    fn chain(len: usize, types: &[u16]) -> Vec<u8> {
        let mut f = vec![0u8; len];
        for (i, t) in types.iter().enumerate() {
            let at = 12 + VLAN_TAG_LEN * i;
            f[at..at + 2].copy_from_slice(&t.to_be_bytes());
        }
        f
    }

    #[test]
    fn vlan_stack() {
        let f = chain(30, &[ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETHERTYPE_IPV6]);
        assert_eq!(
            Frame::new_checked(&f[..]).unwrap().payload(),
            Some((22, ETHERTYPE_IPV6))
        );
        assert!(Frame::new_checked(&f[..10]).is_none());
        assert_eq!(Frame::new_checked(&f[..17]).unwrap().payload(), None);
    }

    #[test]
    fn literal_frame_and_mac_setters() {
        let mut f = [
            0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00, 0x45, 0,
        ];
        let mut fr = Frame::new_checked(&mut f[..]).unwrap();
        assert_eq!(fr.dst(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(fr.src(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(fr.payload(), Some((14, ETHERTYPE_IPV4)));
        fr.set_dst([0xaa; 6]);
        fr.set_src([0xbb; 6]);
        assert_eq!(
            &f[..12],
            &[0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb]
        );
    }

    #[test]
    fn deeper_vlan_stack_than_the_xdp_program_walks_is_refused() {
        // Three tags: one more than MAX_VLAN_TAGS.
        let f = chain(
            40,
            &[
                ETHERTYPE_QINQ,
                ETHERTYPE_VLAN,
                ETHERTYPE_VLAN,
                ETHERTYPE_IPV4,
            ],
        );
        assert_eq!(MAX_VLAN_TAGS, 2);
        assert_eq!(Frame::new_checked(&f[..]).unwrap().payload(), None);
    }
}
