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
use super::secgroup::{Judgement, Packet as SgPacket};
use super::verdict::{Direction, Link, Verdict};
use crate::config::{AlgAction, AlgProtocol, Balance, EipId, EniId};
use crate::wire::ethernet::Mac;
use serde::Serialize;
use std::net::Ipv4Addr;

/// Why no ICMP error is sent about a packet (RFC 1122 3.2.2, RFC 1812
/// 4.3.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// The packet is itself an ICMP error (types 3, 4, 5, 11, 12).
    AboutAnError,
    /// The packet is a fragment other than the first.
    NotFirstFragment,
    /// The port's token bucket is empty (RFC 1812 4.3.2.8).
    RateLimited,
    /// eipsim has no address of its own to send it from on that port.
    NoAddress,
}

/// What is wrong with an IPv4 packet that cannot be forwarded at all
/// (RFC 791, RFC 1812 5.2.2): the first fault found. Lengths in bytes of
/// the IP packet (what follows the Ethernet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ipv4Fault {
    /// Fewer bytes than a 20-byte header.
    Short {
        /// Bytes there.
        len: usize,
    },
    /// A version other than 4.
    Version {
        /// The version field.
        version: u8,
    },
    /// IHL under 5 words, or a header longer than the bytes there.
    HeaderLength {
        /// IHL x 4.
        header_len: usize,
        /// Bytes there.
        len: usize,
    },
    /// The total length field is below the header length.
    TotalBelowHeader {
        /// The total length field.
        total_len: usize,
        /// IHL x 4.
        header_len: usize,
    },
    /// The total length field is beyond the bytes there: the packet was
    /// cut short (by a capture's snap length, say).
    CutShort {
        /// The total length field.
        total_len: usize,
        /// Bytes there.
        len: usize,
    },
    /// The header checksum does not verify (RFC 1071).
    Checksum,
    /// A fragment ending past 65,535 bytes, which no datagram has (RFC
    /// 791's total length is 16 bits).
    PastMaxLength {
        /// Fragment offset plus payload length.
        end: usize,
    },
}

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
        /// The port it arrived on.
        port: Link,
        /// Its length, Ethernet frame bytes (no FCS).
        len: usize,
        /// The frame as received, for the one-line description.
        #[serde(skip)]
        frame: Vec<u8>,
    },

    // ---- parse (ethernet, ip4_input) ----
    /// Shorter than an Ethernet header (`len` bytes).
    ShortFrame {
        /// The frame's length in bytes (under 14).
        len: usize,
    },
    /// Neither IPv4 nor ARP.
    UnsupportedEthertype {
        /// The EtherType read (0x86dd for IPv6, 0x8100 for a VLAN tag).
        ethertype: u16,
    },
    /// The IPv4 header is invalid; `fault` says how (the first fault
    /// found, in the order the checks run).
    Ipv4Invalid {
        /// What is wrong.
        fault: Ipv4Fault,
    },

    // ---- arp ----
    /// Not an Ethernet/IPv4 ARP packet, or cut short.
    ArpMalformed,
    /// A reply or another operation: nothing to answer.
    ArpNotRequest {
        /// The ARP operation code (2: a reply).
        operation: u16,
    },
    /// A gratuitous announcement.
    ArpGratuitous {
        /// The address announced (sender and target address alike).
        target: Ipv4Addr,
    },
    /// A request for an address this port does not stand for.
    ArpNotOurs {
        /// The port the request came in on.
        port: Link,
        /// The address asked for.
        target: Ipv4Addr,
    },
    /// Answered: `target` is at `mac`.
    ArpReply {
        /// The port the request came in on, and the reply goes out on.
        port: Link,
        /// The address asked for.
        target: Ipv4Addr,
        /// The engine's MAC on that port ([`crate::engine::PORT_MACS`]).
        mac: Mac,
    },

    // ---- check (ip4_input, source) ----
    /// The transport header (or an ICMP error's quote) is cut short.
    TransportTruncated,
    /// From the instance to a broadcast, multicast or unspecified address.
    NotUnicast {
        /// The destination address.
        dst: Ipv4Addr,
    },
    /// The instance sent from an address it does not own; `nat_eip` is set
    /// when the source is one of its NAT-mode EIPs.
    SpoofedSource {
        /// The packet's source address.
        src: Ipv4Addr,
        /// The NAT-mode EIP `src` is, if it is one.
        nat_eip: Option<EipId>,
    },
    /// The source is a martian address (RFC 1812 5.3.7).
    MartianSource {
        /// The packet's source address.
        src: Ipv4Addr,
    },
    /// The destination is a martian address (RFC 1812 5.3.7).
    MartianDestination {
        /// The packet's destination address.
        dst: Ipv4Addr,
    },
    /// A unicast packet in an Ethernet broadcast or multicast frame.
    LinkBroadcast {
        /// The frame's destination MAC.
        mac: Mac,
    },
    /// TTL <= 1.
    TtlExpired {
        /// The TTL as received.
        ttl: u8,
    },
    /// The early checks passed (on `port`).
    ChecksPassed {
        /// The port it arrived on.
        port: Link,
        /// The TTL as received.
        ttl: u8,
    },
    /// The source of a new outbound flow is an address of `eni`.
    SourceOwned {
        /// The packet's source address.
        src: Ipv4Addr,
        /// The ENI that owns it.
        eni: EniId,
    },

    // ---- fragment (frag) ----
    /// A later fragment: it has no ports and follows its first fragment.
    LaterFragment {
        /// The IPv4 identification of its datagram.
        ident: u16,
    },
    /// What the first fragment of its datagram decided.
    FirstDecided {
        /// The port the fragment arrived on.
        in_port: Link,
        /// The first fragment's verdict.
        #[serde(skip)]
        verdict: Verdict,
    },
    /// Held until its first fragment comes.
    FragmentHeld,

    // ---- flow (session) ----
    /// The flow table knows the packet.
    FlowHit {
        /// The flow's slot.
        id: FlowId,
        /// The flow after this packet was counted.
        flow: Flow,
    },
    /// An ICMP error's quote matches a flow, but the error is not from
    /// (outbound) or to (inbound) the flow's address `flow_addr`.
    FlowQuoteMismatch {
        /// The flow the quote matched.
        id: FlowId,
        /// That flow.
        flow: Flow,
        /// The error's direction.
        dir: Direction,
        /// The error's source (outbound) or destination (inbound).
        addr: Ipv4Addr,
        /// The flow's `inst_addr` (outbound) or `pub_addr` (inbound).
        flow_addr: Ipv4Addr,
    },
    /// No flow for `key`; `quote`: the key is the one an ICMP error quotes.
    FlowMiss {
        /// The key looked up (for an ICMP error, the reverse of the tuple
        /// it quotes).
        key: FlowKey,
        /// True for an ICMP error.
        quote: bool,
    },
    /// The new flow's other key is owned by another flow.
    FlowKeyTaken {
        /// The new flow's direction.
        dir: Direction,
        /// The key already owned: the outside key of an outbound flow, the
        /// inside key of an inbound one.
        key: FlowKey,
    },
    /// A flow was created.
    FlowCreated {
        /// The new flow's slot.
        id: FlowId,
        /// The flow, with this first packet counted.
        flow: Flow,
        /// The direction of the packet that created it.
        dir: Direction,
    },
    /// The table is full: forwarded without state if `stateless`, else
    /// dropped.
    FlowTableFull {
        /// The packet's direction.
        dir: Direction,
        /// Replies can find their way back without a flow, so it is
        /// forwarded.
        stateless: bool,
    },

    // ---- route (fib) ----
    /// The routes that match, best first (indices into the topology's
    /// routes); the first is the one used.
    Route {
        /// The source looked up (as the instance sent it).
        src: Ipv4Addr,
        /// The destination looked up.
        dst: Ipv4Addr,
        /// Indices into [`crate::config::Topology::routes`], best first;
        /// empty when no route matches.
        candidates: Vec<usize>,
    },
    /// A multipath route picked `chosen` from its nexthops: `value mod
    /// total` is `bucket`; nexthop i owns buckets below its cumulative
    /// weight.
    Balance {
        /// Hash or random.
        balance: Balance,
        /// The topology's `hash_seed`.
        seed: u64,
        /// The 5-tuple hash, or the random draw.
        value: u64,
        /// The sum of the route's weights.
        total: u32,
        /// `value % total`.
        bucket: u32,
        /// Each nexthop with its cumulative weight (not its own weight).
        nexthops: Vec<(EniId, u32)>,
        /// The ENI picked.
        chosen: EniId,
    },

    // ---- source ----
    /// The source is an address of the egress ENI: kept.
    SourceKept {
        /// The packet's source.
        src: Ipv4Addr,
        /// The egress ENI.
        eni: EniId,
    },
    /// Source selection rewrote `src` to the ENI's default source `to`
    /// (its cut-through EIP when `cut_through`, else its primary IP).
    SourceSelected {
        /// The packet's source, an address of another ENI.
        src: Ipv4Addr,
        /// The egress ENI.
        eni: EniId,
        /// The egress ENI's default source.
        to: Ipv4Addr,
        /// The ENI has a cut-through EIP (then `to` is that EIP).
        cut_through: bool,
    },

    // ---- vpc / eip ----
    /// A VPC destination, but the ENI has a cut-through EIP and no
    /// private network.
    VpcNoPrivate {
        /// The destination, inside `vpc_cidr`.
        dst: Ipv4Addr,
        /// The egress ENI.
        eni: EniId,
    },
    /// A VPC destination: out on `vpc` with the private source `src`.
    Vpc {
        /// The destination, inside `vpc_cidr`.
        dst: Ipv4Addr,
        /// The private source the packet leaves with.
        src: Ipv4Addr,
    },
    /// NAT mode: source `private` becomes `eip`.
    EipNat {
        /// The EIP's address.
        eip: Ipv4Addr,
        /// The private IP it maps to (the packet's source).
        private: Ipv4Addr,
    },
    /// `addr` is `eni`'s cut-through EIP: no rewrite.
    EipCutThrough {
        /// The packet's source: the EIP.
        addr: Ipv4Addr,
        /// The ENI it is bound to.
        eni: EniId,
    },
    /// `addr` has no EIP.
    EipNone {
        /// The private source address.
        addr: Ipv4Addr,
    },
    /// Inbound: whether `dst` is local on `port` (an EIP from the Internet,
    /// a private IP from the VPC) and what it maps to: (ENI, EIP, address
    /// the ENI carries).
    LocalDestination {
        /// The port it arrived on.
        port: Link,
        /// The destination address.
        dst: Ipv4Addr,
        /// `None` when not local; the EIP is `None` from the VPC.
        found: Option<(EniId, Option<EipId>, Ipv4Addr)>,
    },

    // ---- alg ----
    /// A flow hit on a flow carrying an unsupported protocol (action
    /// forward).
    AlgFlow {
        /// The flow's slot.
        id: FlowId,
        /// The unsupported protocol it carries.
        protocol: AlgProtocol,
    },
    /// No ALG on this path: cut-through (`eip` true) or the VPC. The
    /// unsupported protocol the ports name, if any, is `protocol`.
    AlgNotApplied {
        /// True for a cut-through EIP, false for the VPC path.
        eip: bool,
        /// The unsupported protocol the ports name, if any.
        protocol: Option<AlgProtocol>,
    },
    /// NAT mode, and the ports name no unsupported protocol.
    AlgSupported {
        /// IP protocol number.
        proto: u8,
        /// Source port (ICMP: the query identifier; 0 for other protocols).
        sport: u16,
        /// Destination port (likewise).
        dport: u16,
    },
    /// NAT mode, and the ports name `protocol`, which the ALG does not
    /// support; `action` says what happens.
    AlgUnsupported {
        /// IP protocol number.
        proto: u8,
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// The protocol the ports name.
        protocol: AlgProtocol,
        /// The topology's `[alg] action`.
        action: AlgAction,
    },

    // ---- rewrite ----
    /// TTL decremented, MACs set, the instance endpoint's address `from`
    /// -> `to` (source if outbound, destination if inbound).
    Rewrite {
        /// The TTL as received (it leaves one lower).
        ttl: u8,
        /// The packet's direction.
        dir: Direction,
        /// The instance endpoint's address as received.
        from: Ipv4Addr,
        /// The address it leaves with (equal to `from` when nothing is
        /// translated).
        to: Ipv4Addr,
        /// The checksums updated.
        sums: Checksums,
        /// The port it leaves on.
        out: Link,
    },
    /// A later fragment's rewrite: both addresses as its first's.
    RewriteLater {
        /// The TTL as received (it leaves one lower).
        ttl: u8,
        /// (source, destination) as received.
        before: (Ipv4Addr, Ipv4Addr),
        /// (source, destination) it leaves with.
        after: (Ipv4Addr, Ipv4Addr),
        /// The port it leaves on.
        out: Link,
    },

    // ---- mtu ----
    /// `len` IP bytes exceed `port`'s MTU and DF is clear: `pieces`
    /// fragments (RFC 791).
    Fragmented {
        /// The packet's IPv4 total length, bytes.
        len: usize,
        /// The egress port.
        port: Link,
        /// Its MTU, IP bytes.
        mtu: u32,
        /// How many fragments.
        pieces: usize,
    },
    /// DF set: an ICMP fragmentation-needed goes back on `port` from
    /// `from` (RFC 1191).
    FragNeeded {
        /// The egress port's MTU, IP bytes (the next-hop MTU reported).
        mtu: u32,
        /// The port the packet came in on, where the error goes back.
        port: Link,
        /// The error's source: the packet's destination as received.
        from: Ipv4Addr,
    },
    /// A security group judged the packet at its ENI.
    SecurityGroup {
        /// The ENI whose groups judged it.
        eni: EniId,
        /// What the rules saw.
        #[serde(flatten)]
        packet: SgPacket,
        /// What decided.
        judgement: Judgement,
        /// Whether it may pass.
        allowed: bool,
    },
    /// The flow's security group session was idle longer than 910 s, so
    /// this packet is judged again as if new.
    SecurityGroupSessionExpired {
        /// The flow.
        id: FlowId,
        /// How long it was idle, ns.
        idle_ns: u64,
    },
    /// The bandwidth policer of an EIP (or of its plan) took the packet's
    /// IP bytes, or refused them.
    Bandwidth {
        /// The EIP.
        eip: EipId,
        /// Outbound: toward the Internet.
        dir: Direction,
        /// IP bytes (all segments of a GSO packet).
        bytes: u64,
        /// The limit, Mbit/s.
        mbps: u32,
        /// The limit is the EIP's bandwidth plan's.
        shared: bool,
        /// Within the limit.
        admitted: bool,
    },
    /// Outbound TCP to port 25 on the Internet: the cloud blocks it.
    SmtpBlocked {
        /// The destination.
        dst: Ipv4Addr,
    },
    /// A packet from a cut-through EIP to 100.64.0.0/10.
    CutThroughReserved {
        /// The destination.
        dst: Ipv4Addr,
        /// The cut-through EIP.
        eip: EipId,
    },
    /// The address belongs to an ENI that is detached from the instance.
    EniDetached {
        /// The packet's source (outbound) or destination (inbound).
        addr: Ipv4Addr,
        /// The detached ENI.
        eni: EniId,
    },
    /// A packet from the instance to one of its own EIPs: after its way out
    /// it comes back in through that EIP (hairpinning).
    Hairpin {
        /// The EIP it was sent to.
        eip: EipId,
    },
    /// An ICMP time exceeded (type 11 code 0) goes back on `port`.
    TimeExceeded {
        /// The port the packet came in on, where the error goes back.
        port: Link,
        /// The error's source address.
        from: Ipv4Addr,
    },
    /// An ICMP error was due but is not sent (RFC 1122 3.2.2, RFC 1812
    /// 4.3.2.7 and 4.3.2.8).
    IcmpErrorWithheld {
        /// Why not.
        why: Withheld,
    },

    // ---- verdict ----
    /// The verdict for the frame.
    Verdict {
        /// The port the frame arrived on.
        in_port: Link,
        /// The verdict.
        #[serde(skip)]
        verdict: Verdict,
    },
    /// A held fragment decided later: when packet `by` (1-based) came, or
    /// at the end of the input (`None`). Recorded by the trace driver.
    Released {
        /// The port the fragment arrived on.
        in_port: Link,
        /// The 1-based number of the packet that decided it, in the merged
        /// input ([`crate::io::trace::PacketTrace::number`]); `None` at the
        /// end of the input.
        by: Option<usize>,
        /// Its final verdict.
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
            ShortFrame { .. } | UnsupportedEthertype { .. } | Ipv4Invalid { .. } => "parse",
            ArpMalformed
            | ArpNotRequest { .. }
            | ArpGratuitous { .. }
            | ArpNotOurs { .. }
            | ArpReply { .. } => "arp",
            TransportTruncated
            | NotUnicast { .. }
            | MartianSource { .. }
            | MartianDestination { .. }
            | LinkBroadcast { .. }
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
            TimeExceeded { .. } | IcmpErrorWithheld { .. } => "icmp",
            Hairpin { .. } => "hairpin",
            SecurityGroup { .. } | SecurityGroupSessionExpired { .. } => "secgroup",
            Bandwidth { .. } => "bandwidth",
            SmtpBlocked { .. } | CutThroughReserved { .. } => "cloud",
            EniDetached { .. } => "eni",
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
