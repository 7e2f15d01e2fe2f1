//! Counters: per port, per ENI, per EIP, drops per reason, ALG per
//! protocol, and the frame ledger that proves nothing vanishes.

use super::verdict::{Direction, DropReason, Link, Verdict};
use crate::config::{AlgProtocol, Topology};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl Traffic {
    #[inline]
    pub fn rx(&mut self, bytes: usize) {
        self.rx_packets += 1;
        self.rx_bytes += bytes as u64;
    }
    #[inline]
    pub fn tx(&mut self, bytes: usize) {
        self.tx_packets += 1;
        self.tx_bytes += bytes as u64;
    }
    pub fn add(&mut self, o: &Traffic) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlgCount {
    pub dropped: u64,
    pub forwarded: u64,
}

/// Every received frame ends in exactly one of forwarded, consumed and
/// dropped, or is still held (a fragment waiting for its first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    pub received: u64,
    pub forwarded: u64,
    pub consumed: u64,
    pub dropped: u64,
    pub held: u64,
    /// Frames the engine made itself (ICMP fragmentation-needed); not part
    /// of the ledger of received frames.
    pub generated: u64,
    /// Fragments sent for packets larger than the egress MTU.
    pub fragments_sent: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub created: u64,
    pub expired: u64,
    pub active: u64,
    pub peak: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by [`Link::index`]. rx: frames received on the port; tx:
    /// frames sent on it (forwarded frames and ARP replies).
    pub ports: [Traffic; 3],
    /// Per ENI: rx is traffic into the instance through it, tx out of it.
    pub enis: Vec<Traffic>,
    /// Per EIP: rx is traffic from the Internet to it, tx from it.
    pub eips: Vec<Traffic>,
    pub drops: [u64; DropReason::COUNT],
    /// Indexed like [`AlgProtocol::ALL`].
    pub alg: [AlgCount; 6],
    pub frames: Ledger,
    pub flows: FlowStats,
}

impl Counters {
    pub fn new(topo: &Topology) -> Self {
        Counters {
            ports: Default::default(),
            enis: vec![Traffic::default(); topo.enis.len()],
            eips: vec![Traffic::default(); topo.eips.len()],
            drops: [0; DropReason::COUNT],
            alg: Default::default(),
            frames: Ledger::default(),
            flows: FlowStats::default(),
        }
    }

    pub fn port(&self, p: Link) -> &Traffic {
        &self.ports[p.index()]
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    pub fn alg_count(&self, p: AlgProtocol) -> AlgCount {
        self.alg[p as usize]
    }

    /// Counts the fate of one received frame of `len` Ethernet bytes that
    /// arrived on `in_port`: the ledger, the egress port, the ENI and EIP
    /// (outbound frames count as their tx, inbound as their rx).
    #[inline(always)]
    pub fn account(&mut self, in_port: Link, len: usize, v: &Verdict) {
        let outbound = Direction::of(in_port).is_outbound();
        let (eni, eip) = match *v {
            Verdict::Forwarded { port, eni, eip } => {
                self.ports[port.index()].tx(len);
                (eni, eip)
            }
            // Link tx was counted per fragment when they were made.
            Verdict::Fragmented { eni, eip, .. } => (eni, eip),
            Verdict::Consumed { reply } => {
                self.frames.consumed += 1;
                if let Some(p) = reply {
                    self.ports[p.index()].tx(len);
                }
                return;
            }
            Verdict::Dropped { reason, .. } => {
                self.frames.dropped += 1;
                self.drops[reason as usize] += 1;
                return;
            }
            Verdict::Held => {
                self.frames.held += 1;
                return;
            }
        };
        self.frames.forwarded += 1;
        if let Some(e) = eni {
            let t = &mut self.enis[usize::from(e.0)];
            if outbound { t.tx(len) } else { t.rx(len) }
        }
        if let Some(e) = eip {
            let t = &mut self.eips[usize::from(e.0)];
            if outbound { t.tx(len) } else { t.rx(len) }
        }
    }

    /// Adds another engine's counters (workers of one run).
    pub fn merge(&mut self, o: &Counters) {
        for (a, b) in self.ports.iter_mut().zip(&o.ports) {
            a.add(b);
        }
        for (a, b) in self.enis.iter_mut().zip(&o.enis) {
            a.add(b);
        }
        for (a, b) in self.eips.iter_mut().zip(&o.eips) {
            a.add(b);
        }
        for (a, b) in self.drops.iter_mut().zip(&o.drops) {
            *a += b;
        }
        for (a, b) in self.alg.iter_mut().zip(&o.alg) {
            a.dropped += b.dropped;
            a.forwarded += b.forwarded;
        }
        let (f, g) = (&mut self.frames, &o.frames);
        f.received += g.received;
        f.forwarded += g.forwarded;
        f.consumed += g.consumed;
        f.dropped += g.dropped;
        f.held += g.held;
        f.generated += g.generated;
        f.fragments_sent += g.fragments_sent;
        let (f, g) = (&mut self.flows, &o.flows);
        f.created += g.created;
        f.expired += g.expired;
        f.active += g.active;
        f.peak += g.peak;
    }
}
