//! UDP headers (RFC 768).

use super::checksum::Delta;
use super::{Result, WireError, read_u16, write_u16};

/// Bytes in a UDP header: ports, length, checksum.
pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer`: [`WireError::Truncated`] below 8 bytes. The length
    /// field is not checked against the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }
    /// The source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }
    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }
    /// The checksum as stored; 0 means the sender computed none (RFC 768).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Applies a pseudo-header change; a zero checksum ("none") stays zero.
    pub fn adjust_checksum(&mut self, d: Delta) {
        let cs = d.apply_udp(self.checksum());
        write_u16(self.buffer.as_mut(), field::CHECKSUM, cs);
    }
    /// Applies a pseudo-header change to a *partial* checksum (the field
    /// holds the uncomplemented pseudo-header sum a device will complete,
    /// virtio-net `NEEDS_CSUM`), see [`Delta::apply_partial`].
    pub fn adjust_partial_checksum(&mut self, d: Delta) {
        let cs = d.apply_partial(self.checksum());
        write_u16(self.buffer.as_mut(), field::CHECKSUM, cs);
    }
}

/// The checksum field's offset, for the cut-short copy inside an ICMP
/// error where only part of the header may be present.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_checksum_is_kept() {
        let mut b = [0u8, 53, 0x13, 0xc4, 0, 8, 0, 0];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (53, 5060));
        p.adjust_checksum(Delta::NONE.addr(1, 2));
        assert_eq!(p.checksum(), 0);
        assert_eq!(
            Packet::new_checked(&b[..7]).err(),
            Some(WireError::Truncated)
        );
    }
}
