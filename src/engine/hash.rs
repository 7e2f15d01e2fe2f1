//! The symmetric flow hash and the seeded random source.
//!
//! Both are written out here rather than taken from a crate on purpose:
//! their exact output decides which ENI a flow takes, so it must not change
//! when a dependency is upgraded (golden captures and `hash_seed` users
//! rely on it).

/// SplitMix64's finalizer (Steele, Lea, Flood 2014): a fast, well-mixed
/// 64-bit permutation.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 5-tuple hash that is the same for both directions of a flow: the
/// endpoints are ordered before hashing.
#[inline]
pub fn flow_hash(seed: u64, proto: u8, a: u32, pa: u16, b: u32, pb: u16) -> u64 {
    let ((lo, plo), (hi, phi)) = if (a, pa) <= (b, pb) {
        ((a, pa), (b, pb))
    } else {
        ((b, pb), (a, pa))
    };
    let x = (u64::from(lo) << 32) | u64::from(hi);
    let y = (u64::from(plo) << 32) | (u64::from(phi) << 16) | u64::from(proto);
    mix(mix(seed ^ x) ^ y)
}

/// SplitMix64: a seeded, reproducible sequence of draws.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A sequence starting from `seed` (the engine uses the topology's
    /// `hash_seed`, so runs repeat).
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next draw, as Vigna's reference `splitmix64.c` gives it.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric() {
        let h1 = flow_hash(7, 6, 0xac10_000a, 40000, 0xc633_6407, 443);
        let h2 = flow_hash(7, 6, 0xc633_6407, 443, 0xac10_000a, 40000);
        assert_eq!(h1, h2);
        assert_ne!(h1, flow_hash(8, 6, 0xac10_000a, 40000, 0xc633_6407, 443));
        assert_ne!(h1, flow_hash(7, 17, 0xac10_000a, 40000, 0xc633_6407, 443));
    }

    #[test]
    fn spreads_ports_evenly() {
        // 4000 flows differing only in source port, split in 2 buckets.
        let ones = (0..4000u16)
            .filter(|p| flow_hash(0, 6, 0xac10_000a, 10000 + p, 0xc633_6407, 80) % 2 == 1)
            .count();
        assert!((1800..2200).contains(&ones), "{ones}");
    }

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 0 of the reference implementation
        // (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
