//! The flow table: bounded, idle timeouts by protocol and TCP state,
//! expiry driven by the packet clock.
//!
//! A flow is one connection through the host path. It is found by either
//! of two keys: the tuple as the instance sends it (`Side::Instance`), and
//! the tuple as it arrives from outside (`Side::Internet` or `Side::Vpc`).
//! Flows live in a slab; both keys map to the slab slot, so a lookup is one
//! hash probe and nothing is allocated once the table has grown.

use super::verdict::Port;
use crate::config::{AlgProtocol, EipId, EniId, FlowTableConfig};
use crate::wire::ipv4::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::tcp::{FLAG_FIN, FLAG_RST, FLAG_SYN};
use rustc_hash::FxHashMap;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

const NS_PER_SEC: u64 = 1_000_000_000;

/// A 5-tuple as it arrives on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub side: Port,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

impl Hash for FlowKey {
    // Two words instead of six fields: one FxHash round each.
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The instance (outbound).
    Instance,
    /// A host on the Internet or in the VPC (inbound).
    Outside,
}

/// One connection and its translation.
///
/// The instance endpoint has three names: `inst_addr` as its application
/// uses it, `eni_addr` as the ENI carries it (after source selection), and
/// `pub_addr` as the outside sees it (the EIP in NAT mode). Ports are never
/// translated.
#[derive(Debug, Clone)]
pub struct Flow {
    pub proto: u8,
    pub inst_addr: Ipv4Addr,
    pub eni_addr: Ipv4Addr,
    pub pub_addr: Ipv4Addr,
    pub remote: Ipv4Addr,
    pub inst_port: u16,
    pub remote_port: u16,
    /// `Internet` or `Vpc`.
    pub out_port: Port,
    pub eni: EniId,
    pub eip: Option<EipId>,
    /// An unsupported ALG protocol this flow carries (action "forward").
    pub alg: Option<AlgProtocol>,
    pub origin: Origin,
    pub created: u64,
    pub last_seen: u64,
    /// The idle timeout for the current state, in ns: recomputed only
    /// when the state changes, so the per-packet expiry check is a compare.
    timeout_ns: u64,
    tcp: u8,
    /// [outbound, inbound]
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

// TCP state bits, per direction where it matters.
const SYN_OUT: u8 = 1;
const SYN_IN: u8 = 2;
const FIN_OUT: u8 = 4;
const FIN_IN: u8 = 8;
const RST: u8 = 16;
const NO_SYN: u8 = 32;

impl Flow {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        proto: u8,
        inst_addr: Ipv4Addr,
        eni_addr: Ipv4Addr,
        pub_addr: Ipv4Addr,
        remote: Ipv4Addr,
        inst_port: u16,
        remote_port: u16,
        out_port: Port,
        eni: EniId,
        eip: Option<EipId>,
        origin: Origin,
    ) -> Self {
        Flow {
            proto,
            inst_addr,
            eni_addr,
            pub_addr,
            remote,
            inst_port,
            remote_port,
            out_port,
            eni,
            eip,
            alg: None,
            origin,
            created: 0,
            last_seen: 0,
            timeout_ns: 0,
            tcp: 0,
            packets: [0; 2],
            bytes: [0; 2],
        }
    }

    /// The key of packets the instance sends on this flow.
    pub fn inside_key(&self) -> FlowKey {
        FlowKey {
            side: Port::Instance,
            proto: self.proto,
            src: self.inst_addr,
            dst: self.remote,
            sport: self.inst_port,
            dport: self.remote_port,
        }
    }

    /// The key of packets that arrive from outside on this flow.
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

    /// Records a packet: counts it and follows the TCP state.
    #[inline]
    pub fn touch(
        &mut self,
        now: u64,
        outbound: bool,
        bytes: usize,
        tcp_flags: Option<u8>,
        cfg: &FlowTableConfig,
    ) {
        self.last_seen = now;
        let d = usize::from(!outbound);
        self.packets[d] += 1;
        self.bytes[d] += bytes as u64;
        let before = self.tcp;
        if let Some(f) = tcp_flags {
            if self.packets[0] + self.packets[1] == 1 && f & FLAG_SYN == 0 {
                // Picked up mid-stream: treat as established.
                self.tcp |= NO_SYN;
            }
            if f & (FLAG_SYN | FLAG_FIN | FLAG_RST) != 0 {
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
        }
        if self.tcp != before || self.timeout_ns == 0 {
            self.timeout_ns = self.timeout(cfg);
        }
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

    /// The idle timeout for the current state, in nanoseconds.
    pub fn timeout(&self, cfg: &FlowTableConfig) -> u64 {
        let secs = match self.proto {
            PROTO_TCP => match self.tcp_state() {
                TcpState::Established | TcpState::HalfClosed => cfg.tcp_established_timeout,
                TcpState::SynSent | TcpState::Closing | TcpState::Closed => {
                    cfg.tcp_transitory_timeout
                }
            },
            PROTO_UDP => cfg.udp_timeout,
            PROTO_ICMP => cfg.icmp_timeout,
            _ => cfg.other_timeout,
        };
        secs.saturating_mul(NS_PER_SEC).max(1)
    }

    #[inline]
    fn expired(&self, now: u64) -> bool {
        now.saturating_sub(self.last_seen) > self.timeout_ns
    }
}

/// TCP states that decide the idle timeout (RFC 5382 REQ-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    Established,
    HalfClosed,
    Closing,
    Closed,
}

impl TcpState {
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

/// Index of a flow in the table.
pub type FlowId = u32;

#[derive(Debug)]
pub struct FlowTable {
    slots: Vec<Option<Flow>>,
    free: Vec<FlowId>,
    map: FxHashMap<FlowKey, FlowId>,
    cfg: FlowTableConfig,
    /// The slot the incremental sweep looks at next.
    hand: usize,
    ticks: u32,
    pub created: u64,
    pub expired: u64,
    pub peak: u64,
}

/// The background sweep examines `SWEEP_BUDGET` slots every
/// `SWEEP_EVERY` packets: half a slot per packet, enough to visit the
/// whole table while it fills once, cheap enough to stay off the budget.
const SWEEP_EVERY: u32 = 16;
const SWEEP_BUDGET: usize = 8;
/// How many slots an insertion into a full table may examine.
const SWEEP_WHEN_FULL: usize = 64;

impl FlowTable {
    pub fn new(cfg: FlowTableConfig) -> Self {
        let initial = cfg.capacity.min(1 << 14);
        let mut map = FxHashMap::default();
        map.reserve(initial * 2);
        FlowTable {
            slots: Vec::with_capacity(initial),
            free: Vec::new(),
            map,
            cfg,
            hand: 0,
            ticks: 0,
            created: 0,
            expired: 0,
            peak: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.len() >= self.cfg.capacity
    }

    pub fn config(&self) -> &FlowTableConfig {
        &self.cfg
    }

    /// Finds the live flow for a key; an expired one is removed on the way.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<FlowId> {
        let id = *self.map.get(key)?;
        let flow = self.slots[id as usize].as_ref()?;
        if flow.expired(now) {
            self.remove(id);
            self.expired += 1;
            return None;
        }
        Some(id)
    }

    /// True if a live flow other than `except` owns `key`.
    pub fn key_taken(&mut self, key: &FlowKey, now: u64) -> bool {
        self.lookup(key, now).is_some()
    }

    pub fn get(&self, id: FlowId) -> &Flow {
        self.slots[id as usize].as_ref().expect("live flow id")
    }

    pub fn get_mut(&mut self, id: FlowId) -> &mut Flow {
        self.slots[id as usize].as_mut().expect("live flow id")
    }

    /// Records a packet of flow `id`.
    #[inline]
    pub fn touch(
        &mut self,
        id: FlowId,
        now: u64,
        outbound: bool,
        bytes: usize,
        tcp_flags: Option<u8>,
    ) {
        let cfg = self.cfg;
        if let Some(f) = self.slots[id as usize].as_mut() {
            f.touch(now, outbound, bytes, tcp_flags, &cfg);
        }
    }

    /// Makes room if the table is full by expiring idle flows.
    pub fn make_room(&mut self, now: u64) -> bool {
        if self.is_full() {
            self.sweep(now, SWEEP_WHEN_FULL);
        }
        !self.is_full()
    }

    /// Inserts a flow whose keys are free; the caller checked
    /// [`FlowTable::make_room`].
    pub fn insert(&mut self, mut flow: Flow, now: u64) -> FlowId {
        flow.created = now;
        flow.last_seen = now;
        flow.timeout_ns = flow.timeout(&self.cfg);
        let (k_in, k_out) = (flow.inside_key(), flow.outside_key());
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(flow);
                id
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as FlowId
            }
        };
        self.map.insert(k_in, id);
        self.map.insert(k_out, id);
        self.created += 1;
        self.peak = self.peak.max(self.len() as u64);
        id
    }

    fn remove(&mut self, id: FlowId) {
        if let Some(f) = self.slots[id as usize].take() {
            for k in [f.inside_key(), f.outside_key()] {
                if self.map.get(&k) == Some(&id) {
                    self.map.remove(&k);
                }
            }
            self.free.push(id);
        }
    }

    /// Examines up to `budget` slots for expired flows.
    pub fn sweep(&mut self, now: u64, budget: usize) {
        let n = self.slots.len();
        if n == 0 {
            return;
        }
        for _ in 0..budget.min(n) {
            self.hand += 1;
            if self.hand >= n {
                self.hand = 0;
            }
            let id = self.hand as FlowId;
            if self.slots[self.hand]
                .as_ref()
                .is_some_and(|f| f.expired(now))
            {
                self.remove(id);
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

    /// Every live flow, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(port: u16) -> Flow {
        Flow::new(
            PROTO_UDP,
            Ipv4Addr::new(172, 16, 0, 10),
            Ipv4Addr::new(172, 16, 0, 10),
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(198, 51, 100, 7),
            port,
            53,
            Port::Internet,
            EniId(0),
            Some(EipId(0)),
            Origin::Instance,
        )
    }

    fn cfg(capacity: usize) -> FlowTableConfig {
        FlowTableConfig {
            capacity,
            ..Default::default()
        }
    }

    #[test]
    fn both_keys_find_the_flow() {
        let mut t = FlowTable::new(cfg(10));
        let f = flow(1000);
        let (ki, ko) = (f.inside_key(), f.outside_key());
        let id = t.insert(f, 0);
        assert_eq!(t.lookup(&ki, 1), Some(id));
        assert_eq!(t.lookup(&ko, 1), Some(id));
        assert_eq!(ko.dst, Ipv4Addr::new(203, 0, 113, 10));
    }

    #[test]
    fn idle_flows_expire_by_packet_clock() {
        let mut t = FlowTable::new(cfg(10));
        let f = flow(1000);
        let k = f.inside_key();
        t.insert(f, 0);
        let udp = 300 * NS_PER_SEC;
        assert!(
            t.lookup(&k, udp).is_some(),
            "exactly at the timeout it lives"
        );
        assert!(t.lookup(&k, 2 * udp + 1).is_none());
        assert_eq!(t.expired, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_makes_room_only_from_idle_flows() {
        let mut t = FlowTable::new(cfg(2));
        t.insert(flow(1), 0);
        t.insert(flow(2), 0);
        assert!(!t.make_room(NS_PER_SEC));
        assert!(t.make_room(301 * NS_PER_SEC));
        assert_eq!(t.len(), 0);
        // Slots are reused, not grown.
        t.insert(flow(3), 302 * NS_PER_SEC);
        assert_eq!(t.slots.len(), 2);
    }

    #[test]
    fn mid_stream_pickup_is_established() {
        let c = FlowTableConfig::default();
        let mut f = flow(1);
        f.proto = PROTO_TCP;
        f.touch(0, true, 60, Some(0x10), &c);
        assert_eq!(f.tcp_state(), TcpState::Established);
    }

    #[test]
    fn tcp_states_pick_timeouts() {
        let c = FlowTableConfig::default();
        let mut f = flow(1);
        f.proto = PROTO_TCP;
        f.touch(0, true, 60, Some(FLAG_SYN), &c);
        assert_eq!(f.tcp_state(), TcpState::SynSent);
        assert_eq!(f.timeout_ns, 240 * NS_PER_SEC);
        f.touch(0, false, 60, Some(FLAG_SYN | 0x10), &c);
        assert_eq!(f.tcp_state(), TcpState::Established);
        assert_eq!(f.timeout_ns, 7440 * NS_PER_SEC);
        f.touch(0, true, 60, Some(FLAG_FIN | 0x10), &c);
        f.touch(0, false, 60, Some(FLAG_FIN | 0x10), &c);
        assert_eq!(f.tcp_state(), TcpState::Closing);
        assert_eq!(f.timeout_ns, 240 * NS_PER_SEC);
        f.touch(0, false, 60, Some(FLAG_RST), &c);
        assert_eq!(f.tcp_state(), TcpState::Closed);
        assert_eq!(f.packets, [2, 3]);
        assert_eq!(f.bytes, [120, 180]);
    }
}
