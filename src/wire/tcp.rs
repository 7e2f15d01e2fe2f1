//! TCP header fields eipsim reads or patches (RFC 9293).

use super::checksum::Delta;
use super::{Result, WireError, read_u16, write_u16};

/// Bytes in a TCP header without options (data offset 5).
pub const MIN_HEADER_LEN: usize = 20;
/// FIN bit of the flags byte (byte 13).
pub const FLAG_FIN: u8 = 0x01;
/// SYN bit of the flags byte.
pub const FLAG_SYN: u8 = 0x02;
/// RST bit of the flags byte.
pub const FLAG_RST: u8 = 0x04;
/// ACK bit of the flags byte.
pub const FLAG_ACK: u8 = 0x10;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
}

/// A view of a TCP segment.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the whole header, options included, is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let off = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if off < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if off > b.len() {
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
    /// Byte 13, the control bits (CWR ECE URG ACK PSH RST SYN FIN); test
    /// with [`FLAG_SYN`] and friends.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// The checksum over pseudo-header, header and data, as stored; not
    /// verified.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Applies a pseudo-header change to the checksum.
    pub fn adjust_checksum(&mut self, d: Delta) {
        let cs = d.apply(self.checksum());
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
    fn checks_data_offset() {
        let mut b = [0u8; 24];
        b[12] = 0x50;
        b[13] = FLAG_SYN | FLAG_ACK;
        b[0..2].copy_from_slice(&40000u16.to_be_bytes());
        b[2..4].copy_from_slice(&443u16.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 443));
        assert_eq!(p.flags(), FLAG_SYN | FLAG_ACK);
        b[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::Malformed)
        );
        b[12] = 0x70; // 28-byte header in 24 bytes
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&b[..19]).err(),
            Some(WireError::Truncated)
        );
    }
}
