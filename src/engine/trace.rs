//! Typed trace events: what each stage decided, as values with fields.
//!
//! Stages record an [`Event`] through a [`Tracer`]. The forwarding path
//! runs with [`Off`], whose `ON` is `false`: every `trace!` is then an
//! `if false { .. }` and the event is never built, so tracing costs the
//! forwarding path nothing (see BENCHMARKS.md for the A/B run). `eipsim
//! trace` and `route get` run with a `Vec<Event>`.
//!
//! Events carry ids and addresses, never sentences: the words are chosen
//! in one place, [`crate::explain::trace`], which has the topology to turn
//! ids into names (as OVS renders `ofproto/trace` nodes apart from the
//! translation code that emits them).

use super::flow::{Flow, FlowId, FlowKey};
use super::verdict::{Direction, Link, Verdict};
use crate::config::{AlgAction, AlgProtocol, Balance, EipId, EniId};
use crate::wire::ethernet::Mac;
use serde::Serialize;
use std::net::Ipv4Addr;

/// Where trace events go.
pub trait Tracer {
    /// False for [`Off`]: the compiler removes every guarded record.
    const ON: bool;
    /// Records one event (only called when `ON`).
    fn record(&mut self, ev: Event);
    /// `Self::ON`, callable on a value (for the `trace!` macro).
    #[inline(always)]
    fn on(&self) -> bool {
        Self::ON
    }
}

/// No tracing: the forwarding path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Off;

impl Tracer for Off {
    const ON: bool = false;
    #[inline(always)]
    fn record(&mut self, _: Event) {}
}

impl Tracer for Vec<Event> {
    const ON: bool = true;
    fn record(&mut self, ev: Event) {
        self.push(ev);
    }
}

/// Records an event if the tracer is on; the event expression is not
/// evaluated otherwise.
macro_rules! trace {
    ($t:expr, $ev:expr) => {
        if $crate::engine::trace::Tracer::on($t) {
            $crate::engine::trace::Tracer::record($t, $ev);
        }
    };
}
pub(crate) use trace;

/// Which checksums a rewrite updated (RFC 1624 incremental updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksums {
    /// The address did not change: only the TTL, so the IPv4 header.
    TtlOnly,
    /// A later fragment: it has no transport header.
    LaterFragment,
    /// IPv4 and TCP.
    Tcp,
    /// IPv4 and UDP (a zero UDP checksum stays zero).
    Udp,
    /// IPv4, ICMP, and the quoted packet's address and checksums
    /// (RFC 5508 section 4.2).
    IcmpError,
    /// Only the IPv4 header (other protocols).
    Ipv4,
}

/// One decision of one stage. The step name (`Event::step`) groups them
/// as `eipsim trace` prints them.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    // ---- receive ----
    /// A frame arrived (`len`: Ethernet frame bytes).
    Receive {
        port: Link,
        len: usize,
        /// The frame as received, for the one-line description.
        #[serde(skip)]
        frame: Vec<u8>,
    },

    // ---- parse (ethernet, ip4_input) ----
    /// Shorter than an Ethernet header (`len` bytes).
    ShortFrame { len: usize },
    /// Neither IPv4 nor ARP.
    UnsupportedEthertype { ethertype: u16 },
    /// The IPv4 header is cut short, has a bad version, IHL or checksum,
    /// or a total length beyond the frame.
    Ipv4Invalid,

    // ---- arp ----
    /// Not an Ethernet/IPv4 ARP packet, or cut short.
    ArpMalformed,
    /// A reply or another operation: nothing to answer.
    ArpNotRequest { operation: u16 },
    /// A gratuitous announcement.
    ArpGratuitous { target: Ipv4Addr },
    /// A request for an address this port does not stand for.
    ArpNotOurs { port: Link, target: Ipv4Addr },
    /// Answered: `target` is at `mac`.
    ArpReply {
        port: Link,
        target: Ipv4Addr,
        mac: Mac,
    },

    // ---- check (ip4_input, source) ----
    /// The transport header (or an ICMP error's quote) is cut short.
    TransportTruncated,
    /// From the instance to a broadcast, multicast or unspecified address.
    NotUnicast { dst: Ipv4Addr },
    /// The instance sent from an address it does not own; `nat_eip` is set
    /// when the source is one of its NAT-mode EIPs.
    SpoofedSource {
        src: Ipv4Addr,
        nat_eip: Option<EipId>,
    },
    /// TTL <= 1.
    TtlExpired { ttl: u8 },
    /// The early checks passed (on `port`).
    ChecksPassed { port: Link, ttl: u8 },
    /// The source of a new outbound flow is an address of `eni`.
    SourceOwned { src: Ipv4Addr, eni: EniId },

    // ---- fragment (frag) ----
    /// A later fragment: it has no ports and follows its first fragment.
    LaterFragment { ident: u16 },
    /// What the first fragment of its datagram decided.
    FirstDecided {
        in_port: Link,
        #[serde(skip)]
        verdict: Verdict,
    },
    /// Held until its first fragment comes.
    FragmentHeld,

    // ---- flow (session) ----
    /// The flow table knows the packet.
    FlowHit { id: FlowId, flow: Flow },
    /// An ICMP error's quote matches a flow, but the error is not from
    /// (outbound) or to (inbound) the flow's address `flow_addr`.
    FlowQuoteMismatch {
        id: FlowId,
        flow: Flow,
        dir: Direction,
        addr: Ipv4Addr,
        flow_addr: Ipv4Addr,
    },
    /// No flow for `key`; `quote`: the key is the one an ICMP error quotes.
    FlowMiss { key: FlowKey, quote: bool },
    /// The new flow's other key is owned by another flow.
    FlowKeyTaken { dir: Direction, key: FlowKey },
    /// A flow was created.
    FlowCreated {
        id: FlowId,
        flow: Flow,
        dir: Direction,
    },
    /// The table is full: forwarded without state if `stateless`, else
    /// dropped.
    FlowTableFull { dir: Direction, stateless: bool },

    // ---- route (fib) ----
    /// The routes that match, best first (indices into the topology's
    /// routes); the first is the one used.
    Route {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        candidates: Vec<usize>,
    },
    /// A multipath route picked `chosen` from its nexthops: `value mod
    /// total` is `bucket`; nexthop i owns buckets below its cumulative
    /// weight.
    Balance {
        balance: Balance,
        seed: u64,
        value: u64,
        total: u32,
        bucket: u32,
        nexthops: Vec<(EniId, u32)>,
        chosen: EniId,
    },

    // ---- source ----
    /// The source is an address of the egress ENI: kept.
    SourceKept { src: Ipv4Addr, eni: EniId },
    /// Source selection rewrote `src` to the ENI's default source `to`
    /// (its cut-through EIP when `cut_through`, else its primary IP).
    SourceSelected {
        src: Ipv4Addr,
        eni: EniId,
        to: Ipv4Addr,
        cut_through: bool,
    },

    // ---- vpc / eip ----
    /// A VPC destination, but the ENI has a cut-through EIP and no
    /// private network.
    VpcNoPrivate { dst: Ipv4Addr, eni: EniId },
    /// A VPC destination: out on `vpc` with the private source `src`.
    Vpc { dst: Ipv4Addr, src: Ipv4Addr },
    /// NAT mode: source `private` becomes `eip`.
    EipNat { eip: Ipv4Addr, private: Ipv4Addr },
    /// `addr` is `eni`'s cut-through EIP: no rewrite.
    EipCutThrough { addr: Ipv4Addr, eni: EniId },
    /// `addr` has no EIP.
    EipNone { addr: Ipv4Addr },
    /// Inbound: whether `dst` is local on `port` (an EIP from the Internet,
    /// a private IP from the VPC) and what it maps to: (ENI, EIP, address
    /// the ENI carries).
    LocalDestination {
        port: Link,
        dst: Ipv4Addr,
        found: Option<(EniId, Option<EipId>, Ipv4Addr)>,
    },

    // ---- alg ----
    /// A flow hit on a flow carrying an unsupported protocol (action
    /// forward).
    AlgFlow { id: FlowId, protocol: AlgProtocol },
    /// No ALG on this path: cut-through (`eip` true) or the VPC. The
    /// unsupported protocol the ports name, if any, is `protocol`.
    AlgNotApplied {
        eip: bool,
        protocol: Option<AlgProtocol>,
    },
    /// NAT mode, and the ports name no unsupported protocol.
    AlgSupported { proto: u8, sport: u16, dport: u16 },
    /// NAT mode, and the ports name `protocol`, which the ALG does not
    /// support; `action` says what happens.
    AlgUnsupported {
        proto: u8,
        sport: u16,
        dport: u16,
        protocol: AlgProtocol,
        action: AlgAction,
    },

    // ---- rewrite ----
    /// TTL decremented, MACs set, the instance endpoint's address `from`
    /// -> `to` (source if outbound, destination if inbound).
    Rewrite {
        ttl: u8,
        dir: Direction,
        from: Ipv4Addr,
        to: Ipv4Addr,
        sums: Checksums,
        out: Link,
    },
    /// A later fragment's rewrite: both addresses as its first's.
    RewriteLater {
        ttl: u8,
        before: (Ipv4Addr, Ipv4Addr),
        after: (Ipv4Addr, Ipv4Addr),
        out: Link,
    },

    // ---- mtu ----
    /// `len` IP bytes exceed `port`'s MTU and DF is clear: `pieces`
    /// fragments (RFC 791).
    Fragmented {
        len: usize,
        port: Link,
        mtu: u32,
        pieces: usize,
    },
    /// DF set: an ICMP fragmentation-needed goes back on `port` from
    /// `from` (RFC 1191).
    FragNeeded {
        mtu: u32,
        port: Link,
        from: Ipv4Addr,
    },

    // ---- verdict ----
    /// The verdict for the frame.
    Verdict {
        in_port: Link,
        #[serde(skip)]
        verdict: Verdict,
    },
    /// A held fragment decided later: when packet `by` (1-based) came, or
    /// at the end of the input (`None`). Recorded by the trace driver.
    Released {
        in_port: Link,
        by: Option<usize>,
        #[serde(skip)]
        verdict: Verdict,
    },
}

impl Event {
    /// The step this event belongs to, as `eipsim trace` names it:
    /// receive, parse, arp, check, fragment, flow, route, balance, source,
    /// vpc, eip, alg, rewrite, mtu, verdict.
    pub fn step(&self) -> &'static str {
        use Event::*;
        match self {
            Receive { .. } => "receive",
            ShortFrame { .. } | UnsupportedEthertype { .. } | Ipv4Invalid => "parse",
            ArpMalformed
            | ArpNotRequest { .. }
            | ArpGratuitous { .. }
            | ArpNotOurs { .. }
            | ArpReply { .. } => "arp",
            TransportTruncated
            | NotUnicast { .. }
            | SpoofedSource { .. }
            | TtlExpired { .. }
            | ChecksPassed { .. }
            | SourceOwned { .. } => "check",
            LaterFragment { .. } | FirstDecided { .. } | FragmentHeld => "fragment",
            FlowHit { .. }
            | FlowQuoteMismatch { .. }
            | FlowMiss { .. }
            | FlowKeyTaken { .. }
            | FlowCreated { .. }
            | FlowTableFull { .. } => "flow",
            Route { .. } => "route",
            Balance { .. } => "balance",
            SourceKept { .. } | SourceSelected { .. } => "source",
            VpcNoPrivate { .. } | Vpc { .. } => "vpc",
            EipNat { .. } | EipCutThrough { .. } | EipNone { .. } | LocalDestination { .. } => {
                "eip"
            }
            AlgFlow { .. } | AlgNotApplied { .. } | AlgSupported { .. } | AlgUnsupported { .. } => {
                "alg"
            }
            Rewrite { .. } | RewriteLater { .. } => "rewrite",
            Fragmented { .. } | FragNeeded { .. } => "mtu",
            Verdict { .. } | Released { .. } => "verdict",
        }
    }
}

// Serialised as plain values in `trace --json`.
impl Serialize for EniId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}
impl Serialize for EipId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}
impl Serialize for AlgProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
impl Serialize for Balance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
impl Serialize for AlgAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            AlgAction::Drop => "drop",
            AlgAction::Forward => "forward",
        })
    }
}
impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
