//! The flow table's own index: open addressing with linear probing, at
//! most half full, 8-byte entries (a 32-bit hash tag and the slot), and
//! backward-shift deletion. BENCHMARKS.md has the numbers that made it
//! worth having next to hashbrown: it can prefetch the line a later
//! lookup will read.

use super::FlowId;

/// The open-addressing index: each entry is `hash_hi32 << 32 | (id + 1)`,
/// 0 meaning empty. The home slot of an entry is its top hash bits, so the
/// index can grow and delete (backward shift) without the keys.
#[derive(Debug)]
pub(super) struct Index {
    entries: Vec<u64>,
    bits: u32,
    pub(super) len: usize,
}

impl Index {
    /// Bytes its slots take.
    pub(super) fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<u64>()
    }

    pub(super) fn with_bits(bits: u32) -> Self {
        Index {
            entries: vec![0; 1 << bits],
            bits,
            len: 0,
        }
    }

    #[inline]
    pub(super) fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    #[inline]
    pub(super) fn home(&self, hash: u64) -> usize {
        (hash >> (64 - self.bits)) as usize
    }

    /// Slots holding `hash`'s tag, in probe order, until an empty one.
    #[inline]
    pub(super) fn find(
        &self,
        hash: u64,
        mut is_it: impl FnMut(FlowId) -> bool,
    ) -> Option<(usize, FlowId)> {
        let tag = hash >> 32;
        let mut i = self.home(hash);
        loop {
            let e = self.entries[i];
            if e == 0 {
                return None;
            }
            if e >> 32 == tag {
                let id = (e as u32).wrapping_sub(1);
                if is_it(id) {
                    return Some((i, id));
                }
            }
            i = (i + 1) & self.mask();
        }
    }

    pub(super) fn insert(&mut self, hash: u64, id: FlowId) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place((hash & !0xffff_ffff) | u64::from(id + 1));
        self.len += 1;
    }

    pub(super) fn place(&mut self, entry: u64) {
        let mut i = (entry >> (64 - self.bits)) as usize;
        while self.entries[i] != 0 {
            i = (i + 1) & self.mask();
        }
        self.entries[i] = entry;
    }

    pub(super) fn grow(&mut self) {
        let old = std::mem::take(&mut self.entries);
        self.bits += 1;
        self.entries = vec![0; 1 << self.bits];
        for e in old.into_iter().filter(|&e| e != 0) {
            self.place(e);
        }
    }

    /// Removes the entry at slot `i`, shifting later entries of the same
    /// probe run back (Knuth's algorithm R), so no tombstones are needed.
    pub(super) fn remove_at(&mut self, mut i: usize) {
        self.entries[i] = 0;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask();
            let e = self.entries[j];
            if e == 0 {
                return;
            }
            let home = (e >> (64 - self.bits)) as usize;
            // Move e back to i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.entries[i] = e;
                self.entries[j] = 0;
                i = j;
            }
        }
    }

    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        prefetch(&self.entries[self.home(hash)]);
    }

    /// The flow id in the home slot, if its tag matches (for prefetching).
    #[inline]
    pub(super) fn peek(&self, hash: u64) -> Option<FlowId> {
        let e = self.entries[self.home(hash)];
        (e != 0 && e >> 32 == hash >> 32).then(|| (e as u32).wrapping_sub(1))
    }
}

/// Hints the CPU to fetch `p`'s cache line. Never faults, changes nothing.
#[inline(always)]
pub(super) fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults and has no effect on
    // program state; `p` is a valid reference anyway.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
