//! ICMPv4 (RFC 792): echo identifiers and the errors that quote a packet.

use super::checksum::Delta;
use super::{Result, WireError, read_u16, write_u16};

/// Bytes in the ICMP header: type, code, checksum and the 4-byte rest of
/// header (identifier and sequence of a query, unused in most errors).
pub const HEADER_LEN: usize = 8;
/// Type 0, echo reply (RFC 792).
pub const ECHO_REPLY: u8 = 0;
/// Type 3, destination unreachable (RFC 792); code 4 is fragmentation
/// needed and DF set, carrying the next-hop MTU of RFC 1191.
pub const DEST_UNREACHABLE: u8 = 3;
/// Type 8, echo request (RFC 792).
pub const ECHO_REQUEST: u8 = 8;
/// Type 11, time exceeded (RFC 792).
pub const TIME_EXCEEDED: u8 = 11;
/// Type 12, parameter problem (RFC 792).
pub const PARAMETER_PROBLEM: u8 = 12;
/// Type 13, timestamp request (RFC 792).
pub const TIMESTAMP: u8 = 13;
/// Type 14, timestamp reply (RFC 792).
pub const TIMESTAMP_REPLY: u8 = 14;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
}

/// A view of an ICMP message.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer`: [`WireError::Truncated`] below the 8-byte header.
    /// Neither type nor checksum is checked.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }
    /// The message type, e.g. [`ECHO_REQUEST`].
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// The code, whose meaning depends on the type.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// The checksum over the whole ICMP message (header and data), as
    /// stored; not verified.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// The identifier of a query (echo, timestamp): the "port" NATs key on.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }
    /// Errors (RFC 5508 section 3) quote the offending packet.
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            DEST_UNREACHABLE | TIME_EXCEEDED | PARAMETER_PROBLEM
        )
    }
    /// Queries whose identifier names the flow.
    pub fn is_query(&self) -> bool {
        matches!(
            self.msg_type(),
            ECHO_REQUEST | ECHO_REPLY | TIMESTAMP | TIMESTAMP_REPLY
        )
    }
    /// The quoted packet of an error message.
    pub fn quoted(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Updates the checksum for the word changes in `d` (RFC 1624).
    pub fn adjust_checksum(&mut self, d: Delta) {
        let cs = d.apply(self.checksum());
        write_u16(self.buffer.as_mut(), field::CHECKSUM, cs);
    }
    /// The bytes after the 8-byte header, writable (see [`Packet::quoted`]).
    pub fn quoted_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Reads a 16-bit field of a cut-short quoted header, if present.
pub fn quoted_u16(b: &[u8], at: usize) -> Option<u16> {
    (b.len() >= at + 2).then(|| read_u16(b, at))
}

/// Patches a 16-bit field of a quoted header, if present; returns the change.
pub fn patch_quoted_u16(b: &mut [u8], at: usize, new: u16) -> Delta {
    match quoted_u16(b, at) {
        Some(old) => {
            write_u16(b, at, new);
            Delta::NONE.word(old, new)
        }
        None => Delta::NONE,
    }
}

/// Why an ICMP message could not be parsed as an error with a quote.
pub fn check_quote(q: &[u8]) -> Result<()> {
    if q.len() < super::ipv4::MIN_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let b = [3u8, 3, 0, 0, 0, 0, 0, 0, 0x45];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_error() && !p.is_query());
        assert_eq!(p.quoted(), &[0x45]);
        let b = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_query() && p.ident() == 0x1234);
        assert_eq!(
            Packet::new_checked(&b[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn quoted_fields_may_be_absent() {
        let mut q = [0u8; 4];
        assert_eq!(quoted_u16(&q, 2), Some(0));
        assert_eq!(quoted_u16(&q, 3), None);
        assert_eq!(patch_quoted_u16(&mut q, 6, 1), Delta::NONE);
        assert_ne!(patch_quoted_u16(&mut q, 2, 1), Delta::NONE);
    }
}
