//! Fragments: the first fragment's decision, remembered for the rest.
//!
//! Only the first fragment carries the ports, so only it can be looked up
//! in the flow table and checked by the ALG. Its decision is kept here,
//! keyed by (port, source, destination, protocol, identification) as
//! RFC 791 reassembly keys a datagram, and later fragments follow it.
//! A later fragment that arrives first is held (copied) until the first
//! one comes, or dropped as orphaned after the reassembly timeout.

use super::flow::{FlowId, FlowKey};
use super::verdict::{Direction, Link, Verdict};
use crate::config::AlgProtocol;
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;

/// RFC 791 suggests a reassembly timer of about 15 s; Linux uses 30 s.
pub const FRAGMENT_TIMEOUT_NS: u64 = 30_000_000_000;
/// At most this many datagrams remembered at once.
pub const MAX_DATAGRAMS: usize = 4096;
/// At most this many early fragments held at once.
pub const MAX_HELD: usize = 256;

/// RFC 791's reassembly key (source, destination, protocol,
/// identification) of a fragment as received, plus the port it came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramKey {
    /// The port the fragments arrive on.
    pub port: Link,
    /// Source address as received (before any rewrite).
    pub src: Ipv4Addr,
    /// Destination address as received.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    /// IPv4 identification field.
    pub ident: u16,
}

/// What the first fragment decided, to replay on the others.
#[derive(Debug, Clone, Copy)]
pub struct FragDecision {
    /// The first fragment's verdict (fragmented is kept as forwarded: each
    /// later fragment is fitted to the MTU on its own).
    pub verdict: Verdict,
    /// The addresses the datagram leaves with, and as its ENI carries it.
    pub src: Ipv4Addr,
    /// Destination the datagram leaves with.
    pub dst: Ipv4Addr,
    /// Source as the ENI carries it (for the ENI view).
    pub eni_src: Ipv4Addr,
    /// Destination as the ENI carries it.
    pub eni_dst: Ipv4Addr,
    /// Packet clock (ns) of the first fragment; the decision is forgotten
    /// [`FRAGMENT_TIMEOUT_NS`] later.
    pub since: u64,
    /// The datagram's flow (checked by key when used, as the slot may have
    /// been reused) and the unsupported ALG protocol it belongs to.
    pub flow: Option<(FlowId, FlowKey)>,
    /// The unsupported ALG protocol (forwarded or dropped), for its counts.
    pub alg: Option<AlgProtocol>,
    /// The datagram's direction (for the flow's counters).
    pub dir: Direction,
    /// The payload bytes its fragments have brought so far: once they
    /// cover the whole datagram the decision is forgotten, so a later
    /// datagram that reuses the identification starts afresh.
    pub coverage: Coverage,
}

/// Which payload bytes of a datagram have arrived: up to 8 disjoint
/// spans, and where the datagram ends once its last fragment (MF clear)
/// is seen. More disjoint spans than that (a pathological order) stops the
/// tracking: the decision then lasts until its timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage {
    spans: [(u32, u32); 8],
    n: u8,
    end: Option<u32>,
    lost: bool,
}

impl Coverage {
    /// Adds payload bytes `start..end` (offsets in the datagram's payload);
    /// `last`: the fragment has MF clear, so the datagram ends at `end`.
    pub fn add(&mut self, start: u32, end: u32, last: bool) {
        if last {
            self.end = Some(end);
        }
        if start >= end || self.lost {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut kept = [(0u32, 0u32); 8];
        let mut k = 0;
        for &(a, b) in &self.spans[..usize::from(self.n)] {
            if b < s || a > e {
                kept[k] = (a, b);
                k += 1;
            } else {
                (s, e) = (s.min(a), e.max(b));
            }
        }
        if k == kept.len() {
            self.lost = true;
            return;
        }
        kept[k] = (s, e);
        k += 1;
        self.spans = kept;
        self.n = k as u8;
    }

    /// True once every byte from 0 to the datagram's end has arrived.
    pub fn complete(&self) -> bool {
        !self.lost && self.n == 1 && self.end.is_some_and(|e| self.spans[0] == (0, e))
    }
}

/// A later fragment that came before its first, waiting for it.
#[derive(Debug)]
pub struct Held {
    /// Its datagram.
    pub key: DatagramKey,
    /// The caller's tag, returned in [`crate::engine::Released`].
    pub tag: u64,
    /// A copy of the Ethernet frame as received.
    pub frame: Vec<u8>,
    /// Packet clock (ns) when it arrived; dropped as orphaned
    /// [`FRAGMENT_TIMEOUT_NS`] later.
    pub since: u64,
}

/// First fragments' decisions (at most [`MAX_DATAGRAMS`]) and the later
/// fragments held for theirs (at most [`MAX_HELD`]).
#[derive(Debug, Default)]
pub struct FragTable {
    decisions: FxHashMap<DatagramKey, FragDecision>,
    /// Held fragments, in arrival order.
    pub held: Vec<Held>,
}

impl FragTable {
    /// The decision for `key`, if its first fragment came at most
    /// [`FRAGMENT_TIMEOUT_NS`] before `now`; an older one is forgotten.
    /// Forgets the decisions `gone` says no longer hold (a topology change
    /// took their ENI, EIP or flow): their later fragments are then held
    /// and, with no first fragment to follow, dropped as orphaned.
    pub fn forget_if(&mut self, mut gone: impl FnMut(&FragDecision) -> bool) {
        self.decisions.retain(|_, d| !gone(d));
    }

    pub fn decision(&mut self, key: &DatagramKey, now: u64) -> Option<FragDecision> {
        let d = *self.decisions.get(key)?;
        if now.saturating_sub(d.since) > FRAGMENT_TIMEOUT_NS {
            self.decisions.remove(key);
            return None;
        }
        Some(d)
    }

    /// Remembers a first fragment's decision. When [`MAX_DATAGRAMS`] are
    /// kept, the timed-out ones go first, and if none has, the oldest.
    pub fn record(&mut self, key: DatagramKey, d: FragDecision) {
        if self.decisions.len() >= MAX_DATAGRAMS {
            let now = d.since;
            self.decisions
                .retain(|_, v| now.saturating_sub(v.since) <= FRAGMENT_TIMEOUT_NS);
            if self.decisions.len() >= MAX_DATAGRAMS {
                // Still full of live datagrams: forget the oldest.
                if let Some(oldest) = self
                    .decisions
                    .iter()
                    .min_by_key(|(_, v)| v.since)
                    .map(|(k, _)| *k)
                {
                    self.decisions.remove(&oldest);
                }
            }
        }
        self.decisions.insert(key, d);
    }

    /// Notes that a fragment of `key` brought payload bytes `start..end`
    /// (`last`: MF clear); forgets the decision once the datagram is whole.
    pub fn arrived(&mut self, key: &DatagramKey, start: u32, end: u32, last: bool) {
        if let Some(d) = self.decisions.get_mut(key) {
            d.coverage.add(start, end, last);
            if d.coverage.complete() {
                self.decisions.remove(key);
            }
        }
    }

    /// Takes the held fragments of a datagram, in arrival order.
    pub fn take_held(&mut self, key: &DatagramKey) -> Vec<Held> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let (mine, rest): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.key == *key);
        self.held = rest;
        mine
    }

    /// Takes the held fragments older than the reassembly timeout (all of
    /// them when `now` is `None`).
    pub fn take_expired(&mut self, now: Option<u64>) -> Vec<Held> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let (old, rest): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| now.is_none_or(|n| n.saturating_sub(h.since) > FRAGMENT_TIMEOUT_NS));
        self.held = rest;
        old
    }
}

#[cfg(test)]
mod tests {
    use super::Coverage;

    #[test]
    fn coverage_is_complete_only_when_every_byte_came() {
        let mut c = Coverage::default();
        c.add(0, 1480, false);
        c.add(2960, 3008, true);
        assert!(!c.complete(), "a hole in the middle");
        c.add(1480, 2960, false);
        assert!(c.complete());
        // Duplicates and overlaps do not fake completeness.
        let mut d = Coverage::default();
        d.add(0, 800, false);
        d.add(0, 800, false);
        d.add(1600, 2000, true);
        assert!(!d.complete());
        d.add(700, 1700, false);
        assert!(d.complete());
        // Too many disjoint pieces: tracking stops, never complete.
        let mut e = Coverage::default();
        for i in 0..9u32 {
            e.add(i * 16 + 8, i * 16 + 16, false);
        }
        e.add(0, 160, true);
        assert!(!e.complete());
    }
}
