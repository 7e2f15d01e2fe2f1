//! IPv4 headers (RFC 791).

use super::checksum::{self, Delta};
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};
use std::net::Ipv4Addr;

/// Bytes in an IPv4 header without options (IHL 5).
pub const MIN_HEADER_LEN: usize = 20;
/// IP protocol number of ICMP (IANA).
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP (IANA).
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP (IANA).
pub const PROTO_UDP: u8 = 17;

mod field {
    pub const VER_IHL: usize = 0;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
///
/// `new_checked` guarantees: version 4, IHL >= 5, the header fits in the
/// buffer, and the total length covers the header and fits in the buffer
/// (bytes past it, such as Ethernet padding, are ignored).
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` with the guarantees above: [`WireError::Malformed`]
    /// for a version other than 4, IHL below 5 or a total length shorter
    /// than the header, [`WireError::Truncated`] when the header or the
    /// total length runs past the buffer. The checksum is not verified.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if b[field::VER_IHL] >> 4 != 4 || hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total = usize::from(read_u16(b, field::LENGTH));
        if hl > b.len() || total > b.len() {
            return Err(WireError::Truncated);
        }
        if total < hl {
            return Err(WireError::Malformed);
        }
        Ok(Packet { buffer })
    }

    /// Wraps a buffer that may be cut short, as the copy of an offending
    /// packet inside an ICMP error is (RFC 792): only the header must fit.
    pub fn new_truncated(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if b[field::VER_IHL] >> 4 != 4 || hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hl > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// The header length in bytes (IHL x 4, 20 to 60), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// The total length field: bytes of header and payload, as the sender
    /// wrote it (not the buffer's length).
    pub fn total_len(&self) -> usize {
        usize::from(read_u16(self.buffer.as_ref(), field::LENGTH))
    }
    /// The identification field that ties fragments of one datagram
    /// together (with source, destination and protocol, RFC 791).
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }
    fn flags_frag(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG)
    }
    /// The DF (don't fragment) flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }
    /// The MF (more fragments) flag: set on every fragment but the last.
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }
    /// The fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_frag() & OFFSET_MASK) * 8
    }
    /// True for any piece of a fragmented datagram, the first included.
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | OFFSET_MASK) != 0
    }
    /// The time to live (hops left).
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// The payload's protocol number, e.g. [`PROTO_TCP`].
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// The header checksum as stored (see [`Packet::verify_checksum`]).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// The source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::SRC))
    }
    /// The destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::DST))
    }
    /// Source (high 32 bits) and destination address as one word.
    #[inline]
    pub fn addrs(&self) -> u64 {
        let b = self.buffer.as_ref();
        u64::from_be_bytes([b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19]])
    }
    /// True when the header checksum verifies (RFC 1071: sums to 0xffff).
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }
    /// The payload up to the total length (for a view made with
    /// `new_truncated`, up to what the buffer holds).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = self.total_len().min(b.len()).max(self.header_len());
        &b[self.header_len()..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn patch_checksum(&mut self, d: Delta) {
        let b = self.buffer.as_mut();
        let cs = d.apply(read_u16(b, field::CHECKSUM));
        write_u16(b, field::CHECKSUM, cs);
    }

    /// Rewrites the source address, keeps the header checksum valid, and
    /// returns the change for checksums that cover the pseudo-header.
    #[inline]
    pub fn set_src(&mut self, a: Ipv4Addr) -> Delta {
        let old = read_u32(self.buffer.as_ref(), field::SRC);
        let d = Delta::NONE.addr(old, a.to_bits());
        write_u32(self.buffer.as_mut(), field::SRC, a.to_bits());
        self.patch_checksum(d);
        d
    }

    /// Rewrites the destination address; see [`Packet::set_src`].
    #[inline]
    pub fn set_dst(&mut self, a: Ipv4Addr) -> Delta {
        let old = read_u32(self.buffer.as_ref(), field::DST);
        let d = Delta::NONE.addr(old, a.to_bits());
        write_u32(self.buffer.as_mut(), field::DST, a.to_bits());
        self.patch_checksum(d);
        d
    }

    /// Decrements the TTL (which must be at least 1) and updates the
    /// header checksum.
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let b = self.buffer.as_mut();
        let old = read_u16(b, field::TTL);
        b[field::TTL] = b[field::TTL].saturating_sub(1);
        let new = read_u16(b, field::TTL);
        self.patch_checksum(Delta::NONE.word(old, new));
    }

    /// Adds one to the TTL (saturating at 255), updating the checksum: undoes
    /// [`Packet::decrement_ttl`].
    pub fn increment_ttl(&mut self) {
        let b = self.buffer.as_mut();
        let old = read_u16(b, field::TTL);
        b[field::TTL] = b[field::TTL].saturating_add(1);
        let new = read_u16(b, field::TTL);
        self.patch_checksum(Delta::NONE.word(old, new));
    }

    /// Overwrites the checksum field; returns the change (embedded headers
    /// inside ICMP errors are covered by the ICMP checksum).
    pub fn set_checksum(&mut self, cs: u16) -> Delta {
        let old = self.checksum();
        write_u16(self.buffer.as_mut(), field::CHECKSUM, cs);
        Delta::NONE.word(old, cs)
    }

    /// The payload, writable, with the bounds of [`Packet::payload`].
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let end = self.total_len().min(self.buffer.as_ref().len()).max(hl);
        &mut self.buffer.as_mut()[hl..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..20].copy_from_slice(&[
            0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 172, 16, 0, 10, 198, 51, 100, 7,
        ]);
        let cs = checksum::checksum(&b[..20]);
        b[10..12].copy_from_slice(&cs.to_be_bytes());
        b
    }

    #[test]
    fn parses_fields() {
        let b = header();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.src(), Ipv4Addr::new(172, 16, 0, 10));
        assert_eq!(p.dst(), Ipv4Addr::new(198, 51, 100, 7));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn rejects_bad_lengths() {
        let b = header();
        assert_eq!(
            Packet::new_checked(&b[..19]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&b[..27]).err(),
            Some(WireError::Truncated)
        );
        let mut bad = b;
        bad[0] = 0x44; // IHL 4
        assert_eq!(
            Packet::new_checked(&bad[..]).err(),
            Some(WireError::Malformed)
        );
        let mut bad = b;
        bad[0] = 0x65; // version 6
        assert_eq!(
            Packet::new_checked(&bad[..]).err(),
            Some(WireError::Malformed)
        );
        let mut bad = b;
        bad[3] = 12; // total length shorter than the header
        assert_eq!(
            Packet::new_checked(&bad[..]).err(),
            Some(WireError::Malformed)
        );
        let mut bad = b;
        bad[0] = 0x4f; // 60-byte header in a 28-byte buffer
        assert_eq!(
            Packet::new_checked(&bad[..]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn rewrites_keep_checksum_valid() {
        let mut b = header();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src(Ipv4Addr::new(203, 0, 113, 10));
        p.set_dst(Ipv4Addr::new(172, 16, 1, 11));
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        assert_eq!(p.src(), Ipv4Addr::new(203, 0, 113, 10));
    }
}
