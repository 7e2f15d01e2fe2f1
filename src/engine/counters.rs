//! Counters: per port, per ENI, per EIP, drops per reason, ALG per
//! protocol, and the frame ledger that proves nothing vanishes.

use super::verdict::{Direction, DropReason, Link, Verdict};
use crate::config::{AlgProtocol, EipId, EniId, Topology};

/// Frames and bytes each way through one port, ENI or EIP. Bytes are
/// Ethernet frame bytes (header included, no FCS), as received or sent;
/// which frames count on which side is said on each [`Counters`] field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames counted as rx.
    pub rx_packets: u64,
    /// Ethernet frame bytes of those frames.
    pub rx_bytes: u64,
    /// Frames counted as tx.
    pub tx_packets: u64,
    /// Ethernet frame bytes of those frames.
    pub tx_bytes: u64,
}

impl Traffic {
    /// Counts one rx frame of `bytes` Ethernet bytes.
    #[inline]
    pub fn rx(&mut self, bytes: usize) {
        self.rx_packets += 1;
        self.rx_bytes += bytes as u64;
    }
    /// Counts one tx frame of `bytes` Ethernet bytes.
    #[inline]
    pub fn tx(&mut self, bytes: usize) {
        self.tx_packets += 1;
        self.tx_bytes += bytes as u64;
    }
    /// Counts `packets` rx frames of `bytes` Ethernet bytes in all (the
    /// segments of a GSO packet).
    #[inline]
    pub fn rx_n(&mut self, packets: u64, bytes: u64) {
        self.rx_packets += packets;
        self.rx_bytes += bytes;
    }
    /// Counts `packets` tx frames of `bytes` Ethernet bytes in all.
    #[inline]
    pub fn tx_n(&mut self, packets: u64, bytes: u64) {
        self.tx_packets += packets;
        self.tx_bytes += bytes;
    }
    /// Adds `o`'s four counts to these.
    pub fn add(&mut self, o: &Traffic) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
    }
}

/// Packets of one protocol the NAT ALG does not support (the seed's
/// "Supported protocols" row), by what happened to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlgCount {
    /// Packets dropped as `alg_unsupported` (`[alg] action = "drop"`),
    /// later fragments included.
    pub dropped: u64,
    /// Packets forwarded anyway (`action = "forward"`), every packet of the
    /// flow, later fragments included.
    pub forwarded: u64,
}

/// Every received frame ends in exactly one of forwarded, consumed and
/// dropped, or is still held (a fragment waiting for its first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Frames handed to the engine.
    pub received: u64,
    /// Frames forwarded, whole or as fragments.
    pub forwarded: u64,
    /// Frames the engine handled itself (ARP), answered or not.
    pub consumed: u64,
    /// Frames dropped, for any reason (see [`Counters::drops`]).
    pub dropped: u64,
    /// Fragments held right now: a released one moves to its final count.
    pub held: u64,
    /// Frames the engine made itself (ICMP fragmentation-needed); not part
    /// of the ledger of received frames.
    pub generated: u64,
    /// Fragments sent for packets larger than the egress MTU.
    pub fragments_sent: u64,
}

/// The flow table's figures, copied in by [`crate::engine::Engine::counters`]
/// (zero in the engine's own copy). Counts of flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows created.
    pub created: u64,
    /// Flows removed after their idle timeout.
    pub expired: u64,
    /// Live flows at the time of the copy.
    pub active: u64,
    /// The most live flows at once (after [`Counters::merge`], the sum of
    /// each engine's peak).
    pub peak: u64,
}

/// Everything one engine counts (live mode merges its workers'). Byte
/// counts are Ethernet frame bytes; flow byte counts (IPv4 total length)
/// live in the flow table ([`crate::engine::flow::Flow::bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by [`Link::index`]. rx: frames received on the port, at
    /// their received length; tx: frames sent on it (forwarded frames, ARP
    /// replies, each fragment and each generated ICMP error at its own
    /// length).
    pub ports: [Traffic; 3],
    /// Per ENI, indexed by [`crate::config::EniId`]: rx is traffic into the
    /// instance through it, tx out of it. One count per forwarded frame at
    /// its received length (a fragmented frame counts once, whole).
    pub enis: Vec<Traffic>,
    /// Per EIP, indexed by [`crate::config::EipId`]: rx is traffic from the
    /// Internet to it, tx from it; counted as for `enis`.
    pub eips: Vec<Traffic>,
    /// Per EIP, indexed by [`crate::config::EipId`]: packets its bandwidth
    /// limit (or its plan's) dropped, `[toward the Internet, from it]`.
    pub bandwidth_exceeded: Vec<[u64; 2]>,
    /// Dropped frames per reason, indexed by `DropReason as usize`
    /// (see [`Counters::drop_count`]).
    pub drops: [u64; DropReason::COUNT],
    /// Indexed like [`AlgProtocol::ALL`].
    pub alg: [AlgCount; 6],
    /// The fate of every received frame, and the frames the engine made.
    pub frames: Ledger,
    /// Flow table figures (see [`FlowStats`]).
    pub flows: FlowStats,
    /// The ICMP errors eipsim owed: sent, or why not.
    pub icmp_errors: IcmpErrorCount,
    /// Packets the instance sent to one of its own EIPs that came back in
    /// through it (hairpinning, RFC 4787 REQ-9).
    pub hairpin: u64,
    /// Topology events (replay's `--events`, `ctl`).
    pub events: EventCount,
}

/// Topology events: applied or refused, and the flows they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCount {
    /// Operations applied.
    pub applied: u64,
    /// Operations refused (nothing changed).
    pub refused: u64,
    /// Flows the applied ones ended.
    pub flows_ended: u64,
}

/// ICMP errors (fragmentation needed, time exceeded) eipsim owed a sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IcmpErrorCount {
    /// Fragmentation needed (type 3 code 4) sent.
    pub frag_needed: u64,
    /// Time exceeded in transit (type 11 code 0) sent.
    pub time_exceeded: u64,
    /// Not sent: about an ICMP error or a later fragment (RFC 1812
    /// 4.3.2.7), or with no address of eipsim's to send it from.
    pub withheld: u64,
    /// Not sent: over the port's rate limit (RFC 1812 4.3.2.8).
    pub rate_limited: u64,
}

impl Counters {
    /// All zero, with one [`Traffic`] per ENI and per EIP of `topo`.
    pub fn new(topo: &Topology) -> Self {
        Counters {
            ports: Default::default(),
            enis: vec![Traffic::default(); topo.enis.len()],
            eips: vec![Traffic::default(); topo.eips.len()],
            bandwidth_exceeded: vec![[0; 2]; topo.eips.len()],
            drops: [0; DropReason::COUNT],
            alg: Default::default(),
            frames: Ledger::default(),
            flows: FlowStats::default(),
            icmp_errors: IcmpErrorCount::default(),
            hairpin: 0,
            events: EventCount::default(),
        }
    }

    /// The traffic of one port.
    pub fn port(&self, p: Link) -> &Traffic {
        &self.ports[p.index()]
    }

    /// Frames dropped for `r`.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// Packets of unsupported ALG protocol `p`, dropped and forwarded.
    pub fn alg_count(&self, p: AlgProtocol) -> AlgCount {
        self.alg[p as usize]
    }

    /// Counts the fate of one received frame of `len` Ethernet bytes that
    /// arrived on `in_port`: the ledger, the egress port, the ENI and EIP
    /// (outbound frames count as their tx, inbound as their rx).
    #[inline(always)]
    pub fn account(&mut self, in_port: Link, len: usize, v: &Verdict) {
        self.account_n(in_port, (1, len as u64), v);
    }

    /// Like [`Counters::account`] for a frame that stands for `units.0`
    /// packets of `units.1` Ethernet bytes in all (a GSO packet counts as
    /// the segments it carries, so reports keep their meaning).
    #[inline(always)]
    pub fn account_n(&mut self, in_port: Link, units: (u64, u64), v: &Verdict) {
        let (n, len) = units;
        let outbound = Direction::of(in_port).is_outbound();
        let (eni, eip) = match *v {
            Verdict::Forwarded { port, eni, eip } => {
                self.ports[port.index()].tx_n(n, len);
                (eni, eip)
            }
            // Link tx was counted per fragment when they were made.
            Verdict::Fragmented { eni, eip, .. } => (eni, eip),
            Verdict::Consumed { reply } => {
                self.frames.consumed += n;
                if let Some(p) = reply {
                    self.ports[p.index()].tx_n(n, len);
                }
                return;
            }
            Verdict::Dropped { reason, eip, .. } => {
                self.frames.dropped += n;
                self.drops[reason as usize] += n;
                if reason == DropReason::BandwidthExceeded
                    && let Some(e) = eip
                {
                    self.bandwidth_exceeded[usize::from(e.0)][usize::from(!outbound)] += n;
                }
                return;
            }
            Verdict::Held => {
                self.frames.held += n;
                return;
            }
        };
        self.frames.forwarded += n;
        if let Some(e) = eni {
            let t = &mut self.enis[usize::from(e.0)];
            if outbound {
                t.tx_n(n, len)
            } else {
                t.rx_n(n, len)
            }
        }
        if let Some(e) = eip {
            let t = &mut self.eips[usize::from(e.0)];
            if outbound {
                t.tx_n(n, len)
            } else {
                t.rx_n(n, len)
            }
        }
    }

    /// Counts a packet leaving by `eni` with `eip` without a verdict of
    /// its own: a hairpin's first pass (its second is counted by
    /// [`Counters::account_n`] as a packet from the Internet).
    pub fn account_out(&mut self, units: (u64, u64), eni: Option<EniId>, eip: Option<EipId>) {
        let (n, len) = units;
        if let Some(e) = eni {
            self.enis[usize::from(e.0)].tx_n(n, len);
        }
        if let Some(e) = eip {
            self.eips[usize::from(e.0)].tx_n(n, len);
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
        for (a, b) in self
            .bandwidth_exceeded
            .iter_mut()
            .zip(&o.bandwidth_exceeded)
        {
            a[0] += b[0];
            a[1] += b[1];
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
        self.hairpin += o.hairpin;
        self.events.applied += o.events.applied;
        self.events.refused += o.events.refused;
        self.events.flows_ended += o.events.flows_ended;
        let (i, j) = (&mut self.icmp_errors, &o.icmp_errors);
        i.frag_needed += j.frag_needed;
        i.time_exceeded += j.time_exceeded;
        i.withheld += j.withheld;
        i.rate_limited += j.rate_limited;
        let (f, g) = (&mut self.flows, &o.flows);
        f.created += g.created;
        f.expired += g.expired;
        f.active += g.active;
        f.peak += g.peak;
    }
}
