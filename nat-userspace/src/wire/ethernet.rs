//! Ethernet II with up to two VLAN tags (802.1ad outer, 802.1Q inner).

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

    /// The L3 offset and ethertype after skipping up to two VLAN tags.
    pub fn payload(&self) -> Option<(usize, u16)> {
        let b = self.0.as_ref();
        let mut off = HEADER_LEN;
        let mut et = u16::from_be_bytes([b[field::ETHERTYPE.start], b[field::ETHERTYPE.start + 1]]);
        for _ in 0..2 {
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

    #[test]
    fn vlan_stack() {
        let mut f = [0u8; 30];
        f[12..14].copy_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
        f[16..18].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f[20..22].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        assert_eq!(
            Frame::new_checked(&f[..]).unwrap().payload(),
            Some((22, ETHERTYPE_IPV6))
        );
        assert!(Frame::new_checked(&f[..10]).is_none());
        assert_eq!(Frame::new_checked(&f[..17]).unwrap().payload(), None);
    }
}
