//! Ethernet II frames (IEEE 802.3 with an EtherType, RFC 894).

use super::{Result, WireError, read_u16, write_u16};

/// Bytes in an Ethernet II header: destination and source MAC, EtherType
/// (no 802.1Q tag, no FCS).
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4 (RFC 894).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP (RFC 826).
pub const ETHERTYPE_ARP: u16 = 0x0806;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
}

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff: where an ARP request goes, and where the engine
    /// sends on a port until it has learnt the peer's MAC.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
}

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A view of an Ethernet II frame.
#[derive(Debug)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer`, checking that it holds a whole Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Frame { buffer })
    }

    /// The destination MAC address (bytes 0..6).
    pub fn dst(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Mac(m)
    }

    /// The source MAC address (bytes 6..12).
    pub fn src(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Mac(m)
    }

    /// The EtherType (bytes 12..14), e.g. [`ETHERTYPE_IPV4`]; 802.1Q tags are
    /// not parsed, so a tagged frame reads as 0x8100.
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the 14-byte header, to the end of the buffer
    /// (including any Ethernet padding after a short IP packet).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Overwrites the destination MAC address.
    pub fn set_dst(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    /// Overwrites the source MAC address.
    pub fn set_src(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    /// Overwrites the EtherType.
    pub fn set_ethertype(&mut self, t: u16) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, t);
    }

    /// The bytes after the header, writable (see [`Frame::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffer_is_truncated() {
        assert_eq!(
            Frame::new_checked(&[0u8; 13][..]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn fields_round_trip() {
        let mut buf = [0u8; 20];
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.set_dst(Mac([1, 2, 3, 4, 5, 6]));
        f.set_src(Mac::BROADCAST);
        f.set_ethertype(ETHERTYPE_ARP);
        assert_eq!(f.dst(), Mac([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.src(), Mac::BROADCAST);
        assert_eq!(f.ethertype(), ETHERTYPE_ARP);
        assert_eq!(f.payload().len(), 6);
        assert_eq!(
            Mac([0xa, 0, 0, 0, 0, 0xff]).to_string(),
            "0a:00:00:00:00:ff"
        );
    }
}
