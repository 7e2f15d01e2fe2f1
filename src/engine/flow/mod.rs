//! The flow table: bounded, idle timeouts by protocol and TCP state,
//! expiry driven by the packet clock.
//!
//! A flow is one connection through the host path. It is found by either
//! of two keys: the tuple as the instance sends it (side `Instance`), and
//! the tuple as it arrives from outside (side `Internet` or `Vpc`).
//!
//! Layout, for speed at a million flows: flows live in a slab of 64-byte,
//! cache-line-aligned records; an open-addressing index (linear probing,
//! at most half full) maps each key's hash to a slot. A lookup touches one
//! index line and one flow line, and both can be prefetched ahead of time
//! ([`FlowTable::prefetch_index`], then [`FlowTable::prefetch_flow`]), which is what lets a batch of packets hide
//! memory latency the way VPP's bihash does. `std`'s `HashMap` exposes no
//! way to prefetch a bucket; BENCHMARKS.md has the numbers that made this
//! worth its ~150 lines.

mod index;

use super::verdict::{Direction, Link};
use crate::config::{AlgProtocol, EipId, EniId, FlowTableConfig};
use crate::wire::ipv4::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::tcp::{FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN};
use index::{Index, prefetch};
use serde::Serialize;
use std::net::Ipv4Addr;

const NS_PER_SEC: u64 = 1_000_000_000;

/// A 5-tuple as it arrives on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlowKey {
    /// The port the packet arrives on: `Instance` for a flow's inside key,
    /// `Internet` or `Vpc` for its outside key.
    pub side: Link,
    /// IP protocol number.
    pub proto: u8,
    /// Source address as received.
    pub src: Ipv4Addr,
    /// Destination address as received.
    pub dst: Ipv4Addr,
    /// TCP/UDP source port, the ICMP query identifier, or 0 (other
    /// protocols).
    pub sport: u16,
    /// TCP/UDP destination port, the ICMP query identifier again, or 0.
    pub dport: u16,
}

impl FlowKey {
    /// A 64-bit hash: one folded 64x64->128 multiply of the two packed
    /// key words (the construction of foldhash and wyhash).
    #[inline(always)]
    pub fn hash(&self, seed: u64) -> u64 {
        let a = (u64::from(self.src.to_bits()) << 32) | u64::from(self.dst.to_bits());
        let b = (u64::from(self.sport) << 32)
            | (u64::from(self.dport) << 16)
            | (u64::from(self.proto) << 8)
            | self.side as u64;
        let full =
            u128::from(a ^ seed ^ 0x243f_6a88_85a3_08d3) * u128::from(b ^ 0x1319_8a2e_0370_7344);
        (full as u64) ^ ((full >> 64) as u64)
    }
}

impl std::hash::Hash for FlowKey {
    // Two words instead of six fields (for std collections; the table's
    // own index uses `FlowKey::hash`).
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64((u64::from(self.src.to_bits()) << 32) | u64::from(self.dst.to_bits()));
        h.write_u64(
            (u64::from(self.sport) << 32)
                | (u64::from(self.dport) << 16)
                | (u64::from(self.proto) << 8)
                | self.side as u64,
        );
    }
}

/// Who opened the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The instance (outbound).
    Instance,
    /// A host on the Internet or in the VPC (inbound).
    Outside,
}

/// One connection and its translation, in one cache line.
///
/// The instance endpoint has three names: `inst_addr` as its application
/// uses it, `eni_addr` as the ENI carries it (after source selection), and
/// `pub_addr` as the outside sees it (the EIP in NAT mode). Ports are never
/// translated.
#[derive(Debug, Clone, Serialize)]
#[repr(C, align(64))]
pub struct Flow {
    /// The far endpoint: a host on the Internet or in the VPC.
    pub remote: Ipv4Addr,
    /// The instance endpoint as its application uses it.
    pub inst_addr: Ipv4Addr,
    /// The instance endpoint as the ENI carries it (after source
    /// selection).
    pub eni_addr: Ipv4Addr,
    /// The instance endpoint as the far side sees it: the NAT EIP, else
    /// `eni_addr`.
    pub pub_addr: Ipv4Addr,
    /// The instance endpoint's port (ICMP: the query identifier).
    pub inst_port: u16,
    /// The far endpoint's port (ICMP: the query identifier).
    pub remote_port: u16,
    /// The EIP the flow uses, NAT or cut-through; `None` on the VPC path.
    pub eip: Option<EipId>,
    /// The ENI the flow crosses.
    pub eni: EniId,
    /// IP protocol number.
    pub proto: u8,
    /// `Internet` or `Vpc`.
    pub out_port: Link,
    /// An unsupported ALG protocol this flow carries (action "forward").
    pub alg: Option<AlgProtocol>,
    /// Which side sent the packet that created the flow.
    pub origin: Origin,
    #[serde(skip)]
    tcp: u8,
    /// Which idle timeout applies now.
    #[serde(skip)]
    class: TimeoutClass,
    /// Packet clock (ns) after which the flow is idle for too long.
    #[serde(skip)]
    expires_at: u64,
    /// Low 32 bits of the packet counts [outbound, inbound]; the high bits
    /// live in the cold record (see [`FlowTable::packets`]).
    #[serde(skip)]
    packets_lo: [u32; 2],
    /// Bytes (IP total length) [outbound, inbound].
    pub bytes: [u64; 2],
}

const _: () = assert!(std::mem::size_of::<Flow>() == 64);

/// What a flow keeps that the data path rarely touches.
#[derive(Debug, Clone, Copy, Default)]
struct Cold {
    live: bool,
    created: u64,
    packets_hi: [u32; 2],
}

// TCP state bits, per direction where it matters.
const SYN_OUT: u8 = 1;
const SYN_IN: u8 = 2;
const FIN_OUT: u8 = 4;
const FIN_IN: u8 = 8;
const RST: u8 = 16;
const NO_SYN: u8 = 32;
const SEEN: u8 = 64;

/// TCP states that decide the idle timeout (RFC 5382 REQ-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// Opening: a SYN seen in one direction only (or no segment yet).
    SynSent,
    /// SYN seen both ways, or picked up mid-stream (first segment no SYN).
    Established,
    /// FIN seen in one direction.
    HalfClosed,
    /// FIN seen in both directions.
    Closing,
    /// RST seen.
    Closed,
}

impl TcpState {
    /// The name `eipsim` prints: `syn-sent`, `established`, `half-closed`,
    /// `closing` or `closed`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn-sent",
            TcpState::Established => "established",
            TcpState::HalfClosed => "half-closed",
            TcpState::Closing => "closing",
            TcpState::Closed => "closed",
        }
    }
}

impl Flow {
    /// A flow with no packets counted and no ALG protocol; its timeout is
    /// set by [`FlowTable::insert`]. Arguments are the fields of the same
    /// names.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        proto: u8,
        inst_addr: Ipv4Addr,
        eni_addr: Ipv4Addr,
        pub_addr: Ipv4Addr,
        remote: Ipv4Addr,
        inst_port: u16,
        remote_port: u16,
        out_port: Link,
        eni: EniId,
        eip: Option<EipId>,
        origin: Origin,
    ) -> Self {
        Flow {
            remote,
            inst_addr,
            eni_addr,
            pub_addr,
            inst_port,
            remote_port,
            eip,
            eni,
            proto,
            out_port,
            alg: None,
            origin,
            tcp: 0,
            class: TimeoutClass::TcpEstablished,
            expires_at: 0,
            packets_lo: [0; 2],
            bytes: [0; 2],
        }
    }

    /// The key of packets the instance sends on this flow.
    #[inline]
    pub fn inside_key(&self) -> FlowKey {
        FlowKey {
            side: Link::Instance,
            proto: self.proto,
            src: self.inst_addr,
            dst: self.remote,
            sport: self.inst_port,
            dport: self.remote_port,
        }
    }

    /// The key of packets that arrive from outside on this flow.
    #[inline]
    pub fn outside_key(&self) -> FlowKey {
        FlowKey {
            side: self.out_port,
            proto: self.proto,
            src: self.remote,
            dst: self.pub_addr,
            sport: self.remote_port,
            dport: self.inst_port,
        }
    }

    #[inline]
    fn key_for(&self, side: Link) -> FlowKey {
        if side == Link::Instance {
            self.inside_key()
        } else {
            self.outside_key()
        }
    }

    /// Follows the TCP state machine as far as timeouts need it.
    #[inline]
    fn track(&mut self, outbound: bool, tcp_flags: Option<u8>) {
        let before = self.tcp;
        self.track_bits(outbound, tcp_flags);
        if self.tcp != before {
            self.class = self.timeout_class();
        }
    }

    #[inline]
    fn track_bits(&mut self, outbound: bool, tcp_flags: Option<u8>) {
        if let Some(f) = tcp_flags {
            let ended = self.tcp & RST != 0 || self.tcp & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN;
            if ended && f & (FLAG_SYN | FLAG_ACK) == FLAG_SYN {
                // A new SYN on the tuple of a reset or closed connection
                // opens the tuple's next connection, with nothing of the
                // last one's state (RFC 7857 section 3, RFC 5382 REQ-5).
                self.tcp = 0;
            }
            if self.tcp & SEEN == 0 && f & FLAG_SYN == 0 {
                // Picked up mid-stream: treat as established.
                self.tcp |= NO_SYN;
            }
            if f & FLAG_SYN != 0 {
                self.tcp |= if outbound { SYN_OUT } else { SYN_IN };
            }
            if f & FLAG_FIN != 0 {
                self.tcp |= if outbound { FIN_OUT } else { FIN_IN };
            }
            if f & FLAG_RST != 0 {
                self.tcp |= RST;
            }
        }
        self.tcp |= SEEN;
    }

    /// The TCP state, as far as the idle timeout cares.
    pub fn tcp_state(&self) -> TcpState {
        let t = self.tcp;
        if t & RST != 0 {
            TcpState::Closed
        } else if t & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN {
            TcpState::Closing
        } else if t & (FIN_OUT | FIN_IN) != 0 {
            TcpState::HalfClosed
        } else if t & NO_SYN != 0 || t & (SYN_OUT | SYN_IN) == SYN_OUT | SYN_IN {
            TcpState::Established
        } else {
            TcpState::SynSent
        }
    }

    /// Which idle timeout applies in the current state.
    #[inline]
    pub fn timeout_class(&self) -> TimeoutClass {
        match self.proto {
            PROTO_TCP => match self.tcp_state() {
                TcpState::Established | TcpState::HalfClosed => TimeoutClass::TcpEstablished,
                TcpState::SynSent | TcpState::Closing | TcpState::Closed => {
                    TimeoutClass::TcpTransitory
                }
            },
            PROTO_UDP => TimeoutClass::Udp,
            PROTO_ICMP => TimeoutClass::Icmp,
            _ => TimeoutClass::Other,
        }
    }

    /// The idle timeout for the current state, in nanoseconds.
    pub fn timeout(&self, cfg: &FlowTableConfig) -> u64 {
        Timeouts::new(cfg).get(self.timeout_class())
    }

    /// When the flow expires if no packet comes (packet clock, ns).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// The idle timeout classes of RFC 5382 (TCP) and RFC 4787 (UDP), and the
/// topology's `[flow_table]` key that sets each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutClass {
    /// TCP established or half-closed: `tcp_established_timeout`
    /// (RFC 5382 REQ-5: at least 2 h 4 min).
    TcpEstablished = 0,
    /// TCP opening, closing or reset: `tcp_transitory_timeout`
    /// (RFC 5382 REQ-5: at least 4 min).
    TcpTransitory = 1,
    /// UDP: `udp_timeout` (RFC 4787 REQ-5: at least 2 min).
    Udp = 2,
    /// ICMP queries: `icmp_timeout` (RFC 5508 REQ-1: at least 60 s).
    Icmp = 3,
    /// Any other IP protocol: `other_timeout`.
    Other = 4,
}

/// The idle timeouts in ns, indexed by [`TimeoutClass`].
#[derive(Debug, Clone, Copy)]
struct Timeouts([u64; 5]);

impl Timeouts {
    #[inline(always)]
    fn get(&self, c: TimeoutClass) -> u64 {
        self.0[c as usize]
    }

    fn new(cfg: &FlowTableConfig) -> Self {
        let ns = |s: u64| s.saturating_mul(NS_PER_SEC);
        Timeouts([
            ns(cfg.tcp_established_timeout),
            ns(cfg.tcp_transitory_timeout),
            ns(cfg.udp_timeout),
            ns(cfg.icmp_timeout),
            ns(cfg.other_timeout),
        ])
    }
}

/// Index of a flow in the table.
pub type FlowId = u32;

/// The flow table: at most `capacity` flows (`[flow_table]`), each found
/// by its inside and its outside key.
#[derive(Debug)]
pub struct FlowTable {
    flows: Vec<Flow>,
    cold: Vec<Cold>,
    free: Vec<FlowId>,
    index: Index,
    cfg: FlowTableConfig,
    timeouts: Timeouts,
    seed: u64,
    /// The slot the incremental sweep looks at next.
    hand: usize,
    ticks: u32,
    /// No live flow expires before this (see [`FlowTable::make_room`]).
    no_expiry_before: u64,
    /// Flows inserted since the table was made.
    pub created: u64,
    /// Flows removed after their idle timeout (by a lookup, the sweep or
    /// [`FlowTable::make_room`]).
    pub expired: u64,
    /// The most live flows at once.
    pub peak: u64,
    /// Flows a topology change ended ([`FlowTable::end`]).
    pub ended: u64,
}

/// The background sweep examines `SWEEP_BUDGET` slots every
/// `SWEEP_EVERY` packets: half a slot per packet, enough to visit the
/// whole table while it fills once, cheap enough to stay off the budget.
const SWEEP_EVERY: u32 = 16;
const SWEEP_BUDGET: usize = 8;

impl FlowTable {
    /// An empty table with `cfg`'s capacity and timeouts; `seed` (the
    /// topology's `hash_seed`) keys the index hash.
    pub fn new(cfg: FlowTableConfig, seed: u64) -> Self {
        let initial = cfg.capacity.min(1 << 14);
        // At most half full with two keys per flow.
        let bits = (initial * 4).next_power_of_two().trailing_zeros().max(4);
        FlowTable {
            flows: Vec::with_capacity(initial),
            cold: Vec::with_capacity(initial),
            free: Vec::new(),
            index: Index::with_bits(bits),
            cfg,
            timeouts: Timeouts::new(&cfg),
            seed,
            hand: 0,
            ticks: 0,
            no_expiry_before: 0,
            created: 0,
            expired: 0,
            peak: 0,
            ended: 0,
        }
    }

    /// Live flows (expired ones not yet removed included).
    pub fn len(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    /// True when no flow is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True at capacity: a new flow needs [`FlowTable::make_room`].
    pub fn is_full(&self) -> bool {
        self.len() >= self.cfg.capacity
    }

    /// Bytes the table holds now (its vectors' capacity and the index):
    /// at most [`FlowTable::bytes_per_flow`] times the capacity, plus the
    /// index's doubling slack.
    pub fn memory_bytes(&self) -> usize {
        self.flows.capacity() * std::mem::size_of::<Flow>()
            + self.cold.capacity() * std::mem::size_of::<Cold>()
            + self.free.capacity() * std::mem::size_of::<FlowId>()
            + self.index.memory_bytes()
    }

    /// Bytes one flow costs: its hot and cold records and its two index
    /// entries at the index's most filled (half full, so four slots of 8
    /// bytes), not counting the free list.
    pub fn bytes_per_flow() -> usize {
        std::mem::size_of::<Flow>() + std::mem::size_of::<Cold>() + 4 * 8
    }

    /// Capacity and idle timeouts (seconds) the table was made with.
    pub fn config(&self) -> &FlowTableConfig {
        &self.cfg
    }

    /// Finds the live flow for a key; an expired one is removed on the way.
    #[inline(always)]
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<FlowId> {
        let hash = key.hash(self.seed);
        let flows = &self.flows;
        let (_, id) = self
            .index
            .find(hash, |id| flows[id as usize].key_for(key.side) == *key)?;
        if now > self.flows[id as usize].expires_at {
            self.remove(id);
            self.expired += 1;
            return None;
        }
        Some(id)
    }

    /// The hash a lookup of `key` uses.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        key.hash(self.seed)
    }

    /// Starts fetching the index line a lookup of this hash reads.
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Starts fetching the flow the index points at (call a few packets
    /// after [`FlowTable::prefetch_index`], when that line has arrived).
    #[inline]
    pub fn prefetch_flow(&self, hash: u64) {
        if let Some(f) = self
            .index
            .peek(hash)
            .and_then(|id| self.flows.get(id as usize))
        {
            prefetch(f);
        }
    }

    /// True if a live flow owns `key`.
    pub fn key_taken(&mut self, key: &FlowKey, now: u64) -> bool {
        self.lookup(key, now).is_some()
    }

    /// True if slot `id` holds a live flow.
    pub fn is_live(&self, id: FlowId) -> bool {
        self.cold.get(id as usize).is_some_and(|c| c.live)
    }

    /// The flow in slot `id`. Panics past the slab; a freed slot still
    /// holds its last flow (see [`FlowTable::is_live`]).
    pub fn get(&self, id: FlowId) -> &Flow {
        &self.flows[id as usize]
    }

    /// Packets [outbound, inbound] of a flow.
    pub fn packets(&self, id: FlowId) -> [u64; 2] {
        let (f, c) = (&self.flows[id as usize], &self.cold[id as usize]);
        [0, 1].map(|d| (u64::from(c.packets_hi[d]) << 32) | u64::from(f.packets_lo[d]))
    }

    /// The packet-clock time a flow was created.
    pub fn created_at(&self, id: FlowId) -> u64 {
        self.cold[id as usize].created
    }

    /// The packet clock (ns) of flow `id`'s last packet: its idle deadline
    /// less the timeout that set it.
    #[inline(always)]
    pub fn last_seen(&self, id: FlowId) -> u64 {
        let f = &self.flows[id as usize];
        f.expires_at.saturating_sub(self.timeouts.get(f.class))
    }

    /// Records a packet of flow `id`: counts, TCP state, idle deadline.
    #[inline(always)]
    pub fn touch(
        &mut self,
        id: FlowId,
        now: u64,
        dir: Direction,
        bytes: usize,
        tcp_flags: Option<u8>,
    ) {
        self.touch_n(id, now, dir, 1, bytes, tcp_flags);
    }

    /// Like [`FlowTable::touch`] for `packets` packets of `bytes` IP bytes
    /// in all (the segments of a GSO packet, which carry one set of TCP
    /// flags between them).
    #[inline(always)]
    pub fn touch_n(
        &mut self,
        id: FlowId,
        now: u64,
        dir: Direction,
        packets: u32,
        bytes: usize,
        tcp_flags: Option<u8>,
    ) {
        let d = dir as usize;
        let f = &mut self.flows[id as usize];
        f.bytes[d] += bytes as u64;
        let (lo, carry) = f.packets_lo[d].overflowing_add(packets);
        f.packets_lo[d] = lo;
        if carry {
            self.cold[id as usize].packets_hi[d] += 1;
        }
        f.track(dir.is_outbound(), tcp_flags);
        f.expires_at = now.saturating_add(self.timeouts.get(f.class));
        // A state change can shorten a deadline (FIN: established ->
        // transitory); keep make_room's lower bound a lower bound.
        self.no_expiry_before = self.no_expiry_before.min(f.expires_at);
    }

    /// Makes room if the table is full by expiring an idle flow: it scans
    /// from the sweep hand until one is found. A pass that finds none
    /// notes the earliest deadline it saw, and until the clock reaches it
    /// no scan runs again (nothing can have expired), so a table full of
    /// live flows costs one pass per deadline, not one per packet.
    pub fn make_room(&mut self, now: u64) -> bool {
        if !self.is_full() {
            return true;
        }
        if now <= self.no_expiry_before {
            return false;
        }
        let n = self.flows.len();
        let mut earliest = u64::MAX;
        for _ in 0..n {
            self.hand += 1;
            if self.hand >= n {
                self.hand = 0;
            }
            if !self.cold[self.hand].live {
                continue;
            }
            let deadline = self.flows[self.hand].expires_at;
            if now > deadline {
                self.remove(self.hand as FlowId);
                self.expired += 1;
                return true;
            }
            earliest = earliest.min(deadline);
        }
        self.no_expiry_before = earliest;
        false
    }

    /// Inserts a flow whose keys are free; the caller checked
    /// [`FlowTable::make_room`]. Call [`FlowTable::touch`] next.
    pub fn insert(&mut self, mut flow: Flow, now: u64) -> FlowId {
        flow.class = flow.timeout_class();
        flow.expires_at = now.saturating_add(self.timeouts.get(flow.class));
        let (k_in, k_out) = (flow.inside_key(), flow.outside_key());
        let cold = Cold {
            live: true,
            created: now,
            packets_hi: [0; 2],
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.flows[id as usize] = flow;
                self.cold[id as usize] = cold;
                id
            }
            None => {
                self.flows.push(flow);
                self.cold.push(cold);
                (self.flows.len() - 1) as FlowId
            }
        };
        self.index.insert(k_in.hash(self.seed), id);
        self.index.insert(k_out.hash(self.seed), id);
        self.created += 1;
        self.peak = self.peak.max(self.len() as u64);
        id
    }

    fn remove(&mut self, id: FlowId) {
        if !self.cold[id as usize].live {
            return;
        }
        self.cold[id as usize].live = false;
        let f = &self.flows[id as usize];
        for key in [f.inside_key(), f.outside_key()] {
            if let Some((slot, _)) = self.index.find(key.hash(self.seed), |i| i == id) {
                self.index.remove_at(slot);
            }
        }
        self.free.push(id);
    }

    /// Removes flow `id` before its time (a topology change ended it);
    /// counted in [`FlowTable::ended`].
    pub fn end(&mut self, id: FlowId) {
        if self.cold[id as usize].live {
            self.remove(id);
            self.ended += 1;
        }
    }

    /// Examines up to `budget` slots for expired flows.
    pub fn sweep(&mut self, now: u64, budget: usize) {
        let n = self.flows.len();
        for _ in 0..budget.min(n) {
            self.hand += 1;
            if self.hand >= n {
                self.hand = 0;
            }
            if self.cold[self.hand].live && now > self.flows[self.hand].expires_at {
                self.remove(self.hand as FlowId);
                self.expired += 1;
            }
        }
    }

    /// The per-packet share of the sweep.
    #[inline]
    pub fn tick(&mut self, now: u64) {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(SWEEP_EVERY) {
            self.sweep(now, SWEEP_BUDGET);
        }
    }

    /// Every live flow with its id, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &Flow)> {
        self.flows
            .iter()
            .zip(&self.cold)
            .enumerate()
            .filter(|(_, (_, c))| c.live)
            .map(|(i, (f, _))| (i as FlowId, f))
    }
}

#[cfg(test)]
mod tests;
