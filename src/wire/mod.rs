//! Byte-level views of the protocols eipsim forwards.
//!
//! Modelled on smoltcp's `wire` module: each view wraps a byte buffer, checks
//! its length once in `new_checked`, and then reads and patches fields by
//! named offsets. Nothing here allocates, and no input, however malformed,
//! makes it panic: every length a later accessor relies on is checked by
//! `new_checked`.
//!
//! Checksums are kept valid with the incremental update of RFC 1624, see
//! [`checksum`].

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;
pub mod virtio_net;

/// Why a buffer could not be viewed as a protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header (or the length it claims).
    Truncated,
    /// A field holds a value the protocol does not allow.
    Malformed,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated"),
            WireError::Malformed => f.write_str("malformed"),
        }
    }
}

impl std::error::Error for WireError {}

/// The result of a wire view's constructor or parser.
pub type Result<T> = core::result::Result<T, WireError>;

#[inline]
pub(crate) fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn write_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn write_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
