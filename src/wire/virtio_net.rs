//! The virtio-net header that a TAP device opened with `IFF_VNET_HDR`
//! puts before every frame (virtio 1.x spec section 5.1.6; Linux
//! `include/uapi/linux/virtio_net.h`). It tells which offloads the frame
//! carries: a partial checksum to complete (`NEEDS_CSUM`, with where it
//! starts and where it goes) and a GSO packet to segment (type and segment
//! size).
//!
//! The 16-bit fields are little-endian: a TAP uses the host's byte order
//! unless big-endian is forced, and eipsim never forces it. On a TAP
//! (Ethernet frames) `csum_start` and `hdr_len` count from the first byte
//! of the Ethernet header. docs/offload-research.md has the sources.

use super::{Result, WireError};

/// The header's length without `num_buffers`: what a TAP uses unless
/// `TUNSETVNETHDRSZ` sets more.
pub const HEADER_LEN: usize = 10;

/// `flags`: the checksum at `csum_start + csum_offset` is partial (it holds
/// the folded, uncomplemented pseudo-header sum) and must be completed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was already verified.
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`: not a GSO packet.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP over IPv4 GSO packet (TSO).
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO, obsolete).
pub const GSO_UDP: u8 = 3;
/// `gso_type`: a TCP over IPv6 GSO packet.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO, Linux 6.2 and later).
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP packet has ECN (CWR) set.
pub const GSO_ECN: u8 = 0x80;

mod field {
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: usize = 2;
    pub const GSO_SIZE: usize = 4;
    pub const CSUM_START: usize = 6;
    pub const CSUM_OFFSET: usize = 8;
}

/// A view of a virtio-net header at the start of a buffer.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Checks that the buffer holds the 10-byte header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Header { buffer })
    }

    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// One of the `GSO_*` values, possibly with `GSO_ECN`.
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }
    /// Bytes of headers (Ethernet, IP, transport) before the payload; a
    /// hint only: check it against the packet.
    pub fn hdr_len(&self) -> u16 {
        le16(self.buffer.as_ref(), field::HDR_LEN)
    }
    /// Payload bytes per segment (the MSS for TCP).
    pub fn gso_size(&self) -> u16 {
        le16(self.buffer.as_ref(), field::GSO_SIZE)
    }
    /// Where checksumming starts, from the first byte of the frame.
    pub fn csum_start(&self) -> u16 {
        le16(self.buffer.as_ref(), field::CSUM_START)
    }
    /// Where the checksum goes, from `csum_start` (16 for TCP, 6 for UDP).
    pub fn csum_offset(&self) -> u16 {
        le16(self.buffer.as_ref(), field::CSUM_OFFSET)
    }
}

/// The header's fields as values (smoltcp's `Repr` idea): parse one from a
/// view, or emit one into a buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repr {
    /// `F_*` bits.
    pub flags: u8,
    /// `GSO_*` value.
    pub gso_type: u8,
    /// Header bytes before the payload, from the frame's first byte.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Checksum start, from the frame's first byte.
    pub csum_start: u16,
    /// Checksum field offset from `csum_start`.
    pub csum_offset: u16,
}

impl Repr {
    /// The fields of `h`.
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> Repr {
        Repr {
            flags: h.flags(),
            gso_type: h.gso_type(),
            hdr_len: h.hdr_len(),
            gso_size: h.gso_size(),
            csum_start: h.csum_start(),
            csum_offset: h.csum_offset(),
        }
    }

    /// Writes the fields into the first [`HEADER_LEN`] bytes of `b`.
    pub fn emit(&self, b: &mut [u8]) -> Result<()> {
        let b = b.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        b[field::FLAGS] = self.flags;
        b[field::GSO_TYPE] = self.gso_type;
        b[field::HDR_LEN..field::HDR_LEN + 2].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[field::GSO_SIZE..field::GSO_SIZE + 2].copy_from_slice(&self.gso_size.to_le_bytes());
        b[field::CSUM_START..field::CSUM_START + 2].copy_from_slice(&self.csum_start.to_le_bytes());
        b[field::CSUM_OFFSET..field::CSUM_OFFSET + 2]
            .copy_from_slice(&self.csum_offset.to_le_bytes());
        Ok(())
    }

    /// True for a GSO packet (any type other than `GSO_NONE`).
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    /// True if the checksum is partial and must be completed.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_little_endian() {
        let r = Repr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; 12];
        r.emit(&mut b).unwrap();
        // 1448 = 0x05a8, little-endian at bytes 4..6; 34 at 6..8.
        assert_eq!(&b[..10], &[1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&h), r);
        assert!(r.is_gso() && r.needs_csum());
        assert!(
            !Repr {
                gso_type: GSO_ECN,
                ..r
            }
            .is_gso()
        );
    }

    #[test]
    fn short_buffers_are_refused() {
        assert_eq!(
            Header::new_checked(&[0u8; 9][..]).unwrap_err(),
            WireError::Truncated
        );
        assert!(Repr::default().emit(&mut [0u8; 9]).is_err());
    }
}
