//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A NAT changes a few 16-bit words of a packet; RFC 1624 eqn. 3,
//! `HC' = ~(~HC + ~m + m')`, updates the checksum from the old and new value
//! of each changed word without touching the rest of the packet.

/// Folds a 32-bit one's complement accumulator to 16 bits.
#[inline]
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The one's complement sum of `data` (RFC 1071), not yet complemented.
/// An odd trailing byte is padded with zero.
pub fn sum(data: &[u8]) -> u16 {
    // A u64 accumulator cannot overflow for any IP packet (2^48 words), so
    // folding waits until the end.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data`: the complement of its one's complement sum.
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// A set of 16-bit word changes to apply to one or more checksums.
///
/// Accumulates `~m + m'` for every changed word `m -> m'` so that several
/// changes (an address, then an embedded header, ...) cost one update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta(u32);

impl Delta {
    /// No change: applying it leaves a checksum as it was.
    pub const NONE: Delta = Delta(0);

    /// Records that a 16-bit word changed from `old` to `new`.
    #[inline]
    pub fn word(mut self, old: u16, new: u16) -> Self {
        self.0 += u32::from(!old) + u32::from(new);
        self.0 = (self.0 & 0xffff) + (self.0 >> 16);
        self
    }

    /// Records that a 32-bit field (an IPv4 address) changed.
    #[inline]
    pub fn addr(self, old: u32, new: u32) -> Self {
        self.word((old >> 16) as u16, (new >> 16) as u16)
            .word(old as u16, new as u16)
    }

    /// Merges another delta into this one.
    #[inline]
    pub fn merge(mut self, other: Delta) -> Self {
        self.0 += other.0;
        self.0 = (self.0 & 0xffff) + (self.0 >> 16);
        self
    }

    /// Applies the changes to checksum `hc` (RFC 1624 eqn. 3).
    #[inline]
    pub fn apply(self, hc: u16) -> u16 {
        !fold(u32::from(!hc) + self.0)
    }

    /// Applies the changes to a *partial* checksum field: one that holds
    /// the folded, uncomplemented pseudo-header sum for the device to
    /// complete (virtio-net `NEEDS_CSUM`, Linux `CHECKSUM_PARTIAL`). A sum
    /// is updated by adding `~m + m'`, not by RFC 1624's complemented form
    /// (Linux `inet_proto_csum_replace4` with `pseudohdr`).
    #[inline]
    pub fn apply_partial(self, sum: u16) -> u16 {
        fold(u32::from(sum) + self.0)
    }

    /// Applies the changes to a UDP checksum: 0 means "no checksum" and
    /// stays 0, and a computed 0 is sent as 0xffff (RFC 768).
    #[inline]
    pub fn apply_udp(self, hc: u16) -> u16 {
        if hc == 0 {
            return 0;
        }
        match self.apply(hc) {
            0 => 0xffff,
            v => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn long_input_folds_carries() {
        // 40,000 words of 0xffff: the one's complement sum is 0xffff.
        assert_eq!(sum(&vec![0xff; 80_000]), 0xffff);
        assert_eq!(sum(&[0x80, 0x00, 0x80, 0x00]), 0x0001);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        // A 20-byte IPv4 header whose source address and TTL change.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0, 0, 172, 16, 0, 10, 198,
            51, 100, 7,
        ];
        let cs = checksum(&hdr);
        hdr[10..12].copy_from_slice(&cs.to_be_bytes());
        for new_src in [[203u8, 0, 113, 10], [0, 0, 0, 0], [255, 255, 255, 255]] {
            let mut h = hdr;
            let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
            let new = u32::from_be_bytes(new_src);
            h[12..16].copy_from_slice(&new_src);
            let old_ttl = u16::from_be_bytes([h[8], h[9]]);
            h[8] -= 1;
            let new_ttl = u16::from_be_bytes([h[8], h[9]]);
            let d = Delta::NONE.addr(old, new).word(old_ttl, new_ttl);
            let updated = d.apply(cs);
            h[10..12].copy_from_slice(&updated.to_be_bytes());
            // A valid header sums to 0xffff (RFC 1071).
            assert_eq!(sum(&h), 0xffff, "src {new_src:?}");
        }
    }

    #[test]
    fn udp_zero_stays_zero() {
        let d = Delta::NONE.addr(0xac10_000a, 0xcb00_710a);
        assert_eq!(d.apply_udp(0), 0);
    }
}
