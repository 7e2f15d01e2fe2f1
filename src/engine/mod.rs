//! The sans-IO forwarding engine.
//!
//! [`Engine::process`] is handed one Ethernet frame, the port it arrived
//! on and a timestamp; it rewrites the frame in place and returns a
//! [`Verdict`]: the port to send it on, or the reason it was dropped.
//! It does no I/O, reads no clock and keeps no global state, so the same
//! input gives the same output, byte for byte (like quinn-proto). Replay,
//! live TAP mode and the benchmarks all drive this one type.
//!
//! The pipeline for a frame (see the README for the picture):
//! parse -> ARP -> checks (source, TTL) -> flow table -> route table ->
//! source selection -> VPC or EIP stage -> ALG -> rewrite.
//! The rule behind it: the route decides the ENI, the ENI decides the
//! source, the EIP association decides the public address.

pub mod alg;
pub mod counters;
pub mod eip;
pub mod flow;
pub mod frag;
pub mod hash;
pub mod mtu;
pub mod route;
pub mod verdict;

pub use counters::Counters;
pub use verdict::{DropReason, Port, Verdict};

use crate::config::{AlgAction, AlgProtocol, Balance, EipId, EniId, Topology};
use crate::wire::checksum::Delta;
use crate::wire::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, Mac};
use crate::wire::ipv4::{self, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::{arp, icmp, tcp, udp};
use alg::Alg;
use eip::{AddressPlan, EipBinding};
use flow::{Flow, FlowId, FlowKey, FlowTable, Origin};
use frag::{DatagramKey, FragDecision, FragTable, Held};
use hash::{SplitMix64, flow_hash};
use route::RouteTable;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

const ETH: usize = ethernet::HEADER_LEN;

/// One step of a packet's way through the engine, for `eipsim trace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was decided: parse, arp, check, flow, route, balance, source,
    /// vpc, eip, alg, rewrite, mtu, fragment, verdict.
    pub name: &'static str,
    pub text: String,
}

/// Records a trace step. Functions that trace take a `const TRACE: bool`:
/// `process` runs the `false` copy unless tracing is on, so the forwarding
/// path carries no trace code at all.
macro_rules! trace {
    ($self:ident, $name:literal, $($fmt:tt)*) => {
        // TRACE is the const generic of the function the macro is used in:
        // without tracing the step is compiled out of the forwarding path.
        if TRACE {
            $self.steps.push(Step { name: $name, text: format!($($fmt)*) });
        }
    };
}

/// The MAC address the engine uses on each port (locally administered).
pub const PORT_MACS: [Mac; 3] = [
    Mac([0x02, 0xee, 0, 0, 0, 0x01]),
    Mac([0x02, 0xee, 0, 0, 0, 0x02]),
    Mac([0x02, 0xee, 0, 0, 0, 0x03]),
];

/// Which piece of a datagram a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Whole,
    First,
    Later,
}

/// The tuple quoted by an ICMP error (RFC 792: the IP header and at least
/// the first 8 bytes of the offending datagram).
#[derive(Debug, Clone, Copy)]
struct Quote {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    sport: u16,
    dport: u16,
}

/// What the parser learnt of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Source (high half) and destination, read and stored as one word so
    /// later wide reads of both forward from a single store.
    addrs: u64,
    proto: u8,
    ttl: u8,
    piece: Piece,
    ident: u16,
    sport: u16,
    dport: u16,
    tcp_flags: Option<u8>,
    quote: Option<Quote>,
    ip_len: usize,
    dont_frag: bool,
    /// The transport header (or an ICMP error's quote) is cut short: the
    /// packet is malformed, but its IP header is known (for fragments).
    bad_l4: bool,
}

#[inline(always)]
fn parse(b: &[u8]) -> Result<Meta, DropReason> {
    let bad = |_| DropReason::Malformed;
    let ip = ipv4::Packet::new_checked(b).map_err(bad)?;
    if !ip.verify_checksum() {
        return Err(DropReason::Malformed);
    }
    let piece = if !ip.is_fragment() {
        Piece::Whole
    } else if ip.frag_offset() == 0 {
        Piece::First
    } else {
        Piece::Later
    };
    let mut m = Meta {
        addrs: ip.addrs(),
        proto: ip.protocol(),
        ttl: ip.ttl(),
        piece,
        ident: ip.ident(),
        sport: 0,
        dport: 0,
        tcp_flags: None,
        quote: None,
        ip_len: ip.total_len(),
        dont_frag: ip.dont_frag(),
        bad_l4: false,
    };
    if piece == Piece::Later {
        return Ok(m);
    }
    let p = ip.payload();
    match m.proto {
        PROTO_TCP => match tcp::Packet::new_checked(p) {
            Ok(t) => {
                (m.sport, m.dport, m.tcp_flags) = (t.src_port(), t.dst_port(), Some(t.flags()))
            }
            Err(_) => m.bad_l4 = true,
        },
        PROTO_UDP => match udp::Packet::new_checked(p) {
            Ok(u) => (m.sport, m.dport) = (u.src_port(), u.dst_port()),
            Err(_) => m.bad_l4 = true,
        },
        PROTO_ICMP => match icmp::Packet::new_checked(p) {
            Ok(i) if i.is_query() => (m.sport, m.dport) = (i.ident(), i.ident()),
            Ok(i) if i.is_error() => match parse_quote(i.quoted()) {
                Ok(q) => m.quote = Some(q),
                Err(_) => m.bad_l4 = true,
            },
            Ok(_) => {}
            Err(_) => m.bad_l4 = true,
        },
        _ => {}
    }
    Ok(m)
}

impl Meta {
    /// The flow key this packet is looked up by on `side`: its own tuple,
    /// or for an ICMP error the reverse of the tuple it quotes (the quoted
    /// packet went the other way).
    #[inline(always)]
    fn flow_key(&self, side: Port) -> FlowKey {
        match self.quote {
            Some(q) => FlowKey {
                side,
                proto: q.proto,
                src: q.dst,
                dst: q.src,
                sport: q.dport,
                dport: q.sport,
            },
            None => FlowKey {
                side,
                proto: self.proto,
                src: self.src(),
                dst: self.dst(),
                sport: self.sport,
                dport: self.dport,
            },
        }
    }

    #[inline(always)]
    fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits((self.addrs >> 32) as u32)
    }
    #[inline(always)]
    fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addrs as u32)
    }
}

fn parse_quote(q: &[u8]) -> Result<Quote, DropReason> {
    let ip = ipv4::Packet::new_truncated(q).map_err(|_| DropReason::Malformed)?;
    let l4 = &q[ip.header_len()..];
    let (sport, dport) = match ip.protocol() {
        PROTO_TCP | PROTO_UDP => match (icmp::quoted_u16(l4, 0), icmp::quoted_u16(l4, 2)) {
            (Some(s), Some(d)) => (s, d),
            _ => return Err(DropReason::Malformed),
        },
        PROTO_ICMP => match icmp::Packet::new_checked(l4) {
            Ok(i) if i.is_query() => (i.ident(), i.ident()),
            _ => (0, 0),
        },
        _ => (0, 0),
    };
    Ok(Quote {
        src: ip.src(),
        dst: ip.dst(),
        proto: ip.protocol(),
        sport,
        dport,
    })
}

fn proto_name(p: u8) -> String {
    match p {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        n => format!("proto {n}"),
    }
}

/// A flow key in words, for traces.
fn key_text(k: &FlowKey) -> String {
    format!(
        "{} {}:{} > {}:{} on {}",
        proto_name(k.proto),
        k.src,
        k.sport,
        k.dst,
        k.dport,
        k.side
    )
}

fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_broadcast() || a.is_multicast() || a.is_unspecified())
}

/// A translation decided for one packet: the instance endpoint's three
/// names (see [`Flow`]) and where the packet goes.
#[derive(Debug, Clone, Copy)]
struct Xlate {
    out: Port,
    eni: EniId,
    eip: Option<EipId>,
    /// From the instance (source rewritten) or to it (destination).
    outbound: bool,
    inst_addr: Ipv4Addr,
    eni_addr: Ipv4Addr,
    pub_addr: Ipv4Addr,
    alg: Option<AlgProtocol>,
    /// The flow, if the packet has one (not when forwarded statelessly).
    flow: Option<FlowId>,
}

/// A frame that was held and is now decided.
#[derive(Debug)]
pub struct Released {
    pub tag: u64,
    pub in_port: Port,
    pub frame: Vec<u8>,
    pub verdict: Verdict,
    /// The frame as its ENI carries it, when ENI capture is on.
    pub eni_view: Option<(EniId, Vec<u8>)>,
}

/// A frame the engine sends on its own: a fragment of a packet too big
/// for its egress port, or an ICMP error it generated.
#[derive(Debug)]
pub struct Transmit {
    pub port: Port,
    pub frame: Vec<u8>,
    /// The tag of the received frame that caused it (to keep order).
    pub cause: u64,
}

/// One received frame, for [`Engine::process_batch`].
#[derive(Debug)]
pub struct Rx<'a> {
    /// Packet clock, ns.
    pub now: u64,
    pub port: Port,
    pub frame: &'a mut [u8],
    pub tag: u64,
}

/// A received frame as [`Engine::process_batch`] sees it; implemented by
/// [`Rx`] and by live mode's reusable buffers.
pub trait Received {
    fn port(&self) -> Port;
    /// Packet clock, ns.
    fn now(&self) -> u64;
    fn tag(&self) -> u64 {
        0
    }
    fn frame(&self) -> &[u8];
    fn frame_mut(&mut self) -> &mut [u8];
}

impl Received for Rx<'_> {
    fn port(&self) -> Port {
        self.port
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn tag(&self) -> u64 {
        self.tag
    }
    fn frame(&self) -> &[u8] {
        self.frame
    }
    fn frame_mut(&mut self) -> &mut [u8] {
        self.frame
    }
}

/// The flow key a frame will be looked up by, read without validation
/// (for prefetching only: a wrong guess costs a wasted fetch, nothing more).
#[inline]
fn peek_key(port: Port, f: &[u8]) -> Option<FlowKey> {
    let ip = f.get(ETH..)?;
    if f.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 {
        return None;
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let proto = *ip.get(9)?;
    if ip.get(6)? & 0x3f != 0 || *ip.get(7)? != 0 || !(proto == PROTO_TCP || proto == PROTO_UDP) {
        return None; // fragments and others: not worth guessing
    }
    let l4 = ip.get(hl..hl + 4)?;
    let a = |o: usize| {
        ip.get(o..o + 4)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    Some(FlowKey {
        side: port,
        proto,
        src: a(12)?,
        dst: a(16)?,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    })
}

/// How far ahead `process_batch` fetches the flow index line, and then the
/// flow's own line (which needs the index line to find). Tuned with
/// `cargo bench --bench engine` (see BENCHMARKS.md).
const PREFETCH_INDEX_AHEAD: usize = 6;
const PREFETCH_FLOW_AHEAD: usize = 3;

/// One engine: one flow table, one set of counters. Live mode runs one per
/// worker thread.
#[derive(Debug)]
pub struct Engine {
    topo: Topology,
    plan: AddressPlan,
    routes: RouteTable,
    alg: Alg,
    flows: FlowTable,
    frags: FragTable,
    counters: Counters,
    rng: SplitMix64,
    now: u64,
    peers: [Option<Mac>; 3],
    capture_eni: bool,
    view: Vec<u8>,
    view_eni: Option<EniId>,
    released: VecDeque<Released>,
    /// Egress MTU per port (None: no limit, as in replay by default).
    mtu: [Option<u32>; 3],
    transmit: VecDeque<Transmit>,
    pieces: Vec<Vec<u8>>,
    tracing: bool,
    steps: Vec<Step>,
    /// The tag of the frame being processed.
    tag: u64,
}

impl Engine {
    pub fn new(topo: Topology) -> Self {
        Engine {
            plan: AddressPlan::new(&topo),
            routes: RouteTable::new(&topo),
            alg: Alg::new(&topo.alg),
            flows: FlowTable::new(topo.flow_table, topo.hash_seed),
            frags: FragTable::default(),
            counters: Counters::new(&topo),
            rng: SplitMix64::new(topo.hash_seed),
            now: 0,
            peers: [None; 3],
            capture_eni: false,
            view: Vec::with_capacity(2048),
            view_eni: None,
            released: VecDeque::new(),
            mtu: [None; 3],
            transmit: VecDeque::new(),
            pieces: Vec::new(),
            tracing: false,
            steps: Vec::new(),
            tag: 0,
            topo,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    pub fn plan(&self) -> &AddressPlan {
        &self.plan
    }

    /// The counters, with the flow table's figures filled in.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.flows.created = self.flows.created;
        c.flows.expired = self.flows.expired;
        c.flows.active = self.flows.len() as u64;
        c.flows.peak = self.flows.peak;
        c
    }

    /// The flow table (for reports and explanations).
    pub fn flow_table(&self) -> &FlowTable {
        &self.flows
    }

    /// Records the steps of each packet (see [`Engine::take_trace`]). The
    /// steps come from the forwarding code itself, not from a model of it.
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// The steps of the last `process` call.
    pub fn take_trace(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }

    /// Sets a port's MTU: larger packets leaving there are fragmented, or
    /// with DF set dropped with an ICMP fragmentation-needed to the sender.
    pub fn set_mtu(&mut self, port: Port, mtu: Option<u32>) {
        self.mtu[port.index()] = mtu;
    }

    /// Frames the engine sends on its own (fragments, ICMP errors), after
    /// each call to `process`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// Tells the engine the MAC address of the host on a port (live mode
    /// learns it once for all workers); frames received there also teach it.
    pub fn set_peer_mac(&mut self, port: Port, mac: Mac) {
        self.peers[port.index()] = Some(mac);
    }

    /// Keep a copy of each forwarded frame as its ENI carries it inside the
    /// instance (private address in NAT mode), see [`Engine::eni_view`].
    pub fn set_eni_capture(&mut self, on: bool) {
        self.capture_eni = on;
    }

    /// After a forwarded frame: the ENI it used and the frame as that ENI
    /// carries it. Only with [`Engine::set_eni_capture`].
    pub fn eni_view(&self) -> Option<(EniId, &[u8])> {
        self.view_eni.map(|e| (e, &self.view[..]))
    }

    /// Frames whose fate was decided after they arrived (held fragments).
    pub fn poll_released(&mut self) -> Option<Released> {
        self.released.pop_front()
    }

    /// Ends the input: every fragment still held is dropped as orphaned.
    pub fn flush(&mut self) {
        for h in self.frags.take_expired(None) {
            self.release_orphan(h);
        }
    }

    /// Processes a batch of frames, in order, exactly as [`Engine::process`]
    /// would one by one; `verdicts` gets one entry per frame. While a frame
    /// is processed, the flow table lines of the next few are fetched, so
    /// memory latency overlaps with work (VPP's dual-loop idea).
    pub fn process_batch<R: Received>(&mut self, batch: &mut [R], verdicts: &mut Vec<Verdict>) {
        verdicts.clear();
        // hashes[i % RING]: the flow-key hash of frame i, if it has one;
        // computed once, at the index prefetch, used again a few frames on.
        const RING: usize = 8;
        let mut hashes = [None::<u64>; RING];
        let ahead = |i: usize, batch: &[R], flows: &FlowTable| {
            batch
                .get(i)
                .and_then(|rx| peek_key(rx.port(), rx.frame()))
                .map(|k| flows.hash(&k))
        };
        for i in 0..PREFETCH_INDEX_AHEAD.min(batch.len()) {
            hashes[i % RING] = ahead(i, batch, &self.flows);
        }
        for i in 0..batch.len() {
            let j = i + PREFETCH_INDEX_AHEAD;
            hashes[j % RING] = ahead(j, batch, &self.flows);
            if let Some(h) = hashes[j % RING] {
                self.flows.prefetch_index(h);
            }
            if let Some(h) = hashes[(i + PREFETCH_FLOW_AHEAD) % RING] {
                self.flows.prefetch_flow(h);
            }
            let rx = &mut batch[i];
            let (now, port, tag) = (rx.now(), rx.port(), rx.tag());
            // The untraced copy directly, so it inlines into this loop.
            let v = if self.tracing {
                self.process_traced(now, port, rx.frame_mut(), tag)
            } else {
                self.process_impl::<false>(now, port, rx.frame_mut(), tag)
            };
            verdicts.push(v);
        }
    }

    /// Processes one frame received on `port` at `now` (nanoseconds on the
    /// packet clock). `tag` comes back with the frame if it is held.
    pub fn process(&mut self, now: u64, port: Port, frame: &mut [u8], tag: u64) -> Verdict {
        if self.tracing {
            self.process_traced(now, port, frame, tag)
        } else {
            self.process_impl::<false>(now, port, frame, tag)
        }
    }

    /// The traced copy, kept out of line so the forwarding path's code
    /// stays as small as it was before tracing existed.
    #[cold]
    #[inline(never)]
    fn process_traced(&mut self, now: u64, port: Port, frame: &mut [u8], tag: u64) -> Verdict {
        self.process_impl::<true>(now, port, frame, tag)
    }

    #[inline(always)]
    fn process_impl<const TRACE: bool>(
        &mut self,
        now: u64,
        port: Port,
        frame: &mut [u8],
        tag: u64,
    ) -> Verdict {
        if now > self.now {
            self.now = now;
        }
        self.tag = tag;
        self.view_eni = None;
        self.counters.ports[port.index()].rx(frame.len());
        self.counters.frames.received += 1;
        self.flows.tick(self.now);
        if !self.frags.held.is_empty() {
            for h in self.frags.take_expired(Some(self.now)) {
                self.release_orphan(h);
            }
        }
        if TRACE {
            self.steps.clear();
        }
        trace!(
            self,
            "receive",
            "{} bytes on {port}: {}",
            frame.len(),
            crate::describe::frame(frame)
        );
        let v = self.classify::<TRACE>(port, frame, tag);
        self.account(port, frame.len(), &v);
        trace!(self, "verdict", "{}", self.verdict_text(port, &v));
        v
    }

    /// Why a source is not the instance's, for traces.
    fn spoof_text(&self, src: Ipv4Addr) -> String {
        match self.plan.eip(src).map(|id| self.topo.eip(id)) {
            Some(e) => format!(
                "source {src} is this instance's EIP in NAT mode, which the OS does not have (the seed: a NAT-mode EIP is not shown in the OS); send from {} and the EIP stage maps it",
                e.private_ip
            ),
            None => format!(
                "source {src} is not an address of the instance (a private IP of an ENI or a cut-through EIP)"
            ),
        }
    }

    /// A flow's number, for traces.
    fn flow_text_short(&self, id: FlowId) -> String {
        format!("flow #{id}")
    }

    /// A flow in words, for traces.
    fn flow_text(&self, id: FlowId) -> String {
        let f = self.flows.get(id);
        let eip = f
            .eip
            .map(|e| format!(", EIP {}", self.topo.eip(e).address))
            .unwrap_or_default();
        format!(
            "flow #{id} {} instance {}:{} (ENI {} as {}) <-> {}:{}, public {} on {}{eip}",
            proto_name(f.proto),
            f.inst_addr,
            f.inst_port,
            self.topo.eni(f.eni).name,
            f.eni_addr,
            f.remote,
            f.remote_port,
            f.pub_addr,
            f.out_port
        )
    }

    /// A verdict in words, for traces.
    pub fn verdict_text(&self, in_port: Port, v: &Verdict) -> String {
        let via = |eni: Option<EniId>, eip: Option<EipId>| {
            let mut s = String::new();
            if let Some(e) = eni {
                s.push_str(&format!(" via {}", self.topo.eni(e).name));
            }
            if let Some(e) = eip {
                let e = self.topo.eip(e);
                s.push_str(&format!(", EIP {} ({})", e.address, e.mode.name()));
            }
            s
        };
        match *v {
            Verdict::Forwarded { port, eni, eip } => {
                format!("forwarded to {port}{}", via(eni, eip))
            }
            Verdict::Fragmented {
                port,
                eni,
                eip,
                pieces,
            } => {
                format!("forwarded to {port} as {pieces} fragments{}", via(eni, eip))
            }
            Verdict::Consumed { reply: Some(p) } => format!("consumed: reply sent on {p}"),
            Verdict::Consumed { reply: None } => "consumed".to_string(),
            Verdict::Dropped { reason, .. } => {
                format!("dropped ({}): {}", reason.name(), reason.explain())
            }
            Verdict::Held => {
                format!("held: a fragment from {in_port} waiting for its first fragment")
            }
        }
    }

    #[inline(always)]
    fn account(&mut self, in_port: Port, len: usize, v: &Verdict) {
        let c = &mut self.counters;
        match *v {
            Verdict::Forwarded { port, eni, eip } => {
                c.frames.forwarded += 1;
                c.ports[port.index()].tx(len);
                let outbound = in_port == Port::Instance;
                if let Some(e) = eni {
                    let t = &mut c.enis[usize::from(e.0)];
                    if outbound { t.tx(len) } else { t.rx(len) }
                }
                if let Some(e) = eip {
                    let t = &mut c.eips[usize::from(e.0)];
                    if outbound { t.tx(len) } else { t.rx(len) }
                }
            }
            Verdict::Fragmented { eni, eip, .. } => {
                // Port tx was counted per fragment when they were made.
                c.frames.forwarded += 1;
                let outbound = in_port == Port::Instance;
                if let Some(e) = eni {
                    let t = &mut c.enis[usize::from(e.0)];
                    if outbound { t.tx(len) } else { t.rx(len) }
                }
                if let Some(e) = eip {
                    let t = &mut c.eips[usize::from(e.0)];
                    if outbound { t.tx(len) } else { t.rx(len) }
                }
            }
            Verdict::Consumed { reply } => {
                c.frames.consumed += 1;
                if let Some(p) = reply {
                    c.ports[p.index()].tx(len);
                }
            }
            Verdict::Dropped { reason, .. } => {
                c.frames.dropped += 1;
                c.drops[reason as usize] += 1;
            }
            Verdict::Held => c.frames.held += 1,
        }
    }

    #[inline(always)]
    fn classify<const TRACE: bool>(&mut self, port: Port, frame: &mut [u8], tag: u64) -> Verdict {
        let Ok(eth) = ethernet::Frame::new_checked(&frame[..]) else {
            trace!(
                self,
                "parse",
                "{} bytes: shorter than an Ethernet header",
                frame.len()
            );
            return Verdict::drop(DropReason::Malformed);
        };
        // Point-to-point links: whoever sends on a port is its peer.
        self.peers[port.index()] = Some(eth.src());
        match eth.ethertype() {
            ETHERTYPE_IPV4 => self.ipv4::<TRACE>(port, frame, tag),
            ETHERTYPE_ARP => self.arp::<TRACE>(port, frame),
            t => {
                trace!(self, "parse", "EtherType 0x{t:04x} is neither IPv4 nor ARP");
                Verdict::drop(DropReason::UnsupportedEthertype)
            }
        }
    }

    /// Answers ARP requests for the addresses the engine stands for on
    /// this port: on `instance` every address that is not the instance's
    /// own (the engine is its gateway), on `internet` the EIPs, on `vpc`
    /// the private IPs of ENIs that have private networking.
    fn arp<const TRACE: bool>(&mut self, port: Port, frame: &mut [u8]) -> Verdict {
        let Ok(mut pkt) = arp::Packet::new_checked(&mut frame[ETH..]) else {
            trace!(self, "arp", "not an Ethernet/IPv4 ARP packet, or cut short");
            return Verdict::drop(DropReason::Malformed);
        };
        if pkt.operation() != arp::OP_REQUEST {
            trace!(
                self,
                "arp",
                "operation {}: not a request, nothing to answer",
                pkt.operation()
            );
            return Verdict::Consumed { reply: None };
        }
        let target = pkt.target_ip();
        if target == pkt.sender_ip() {
            // A gratuitous announcement: nothing to answer.
            trace!(
                self,
                "arp", "gratuitous ARP for {target}: nothing to answer"
            );
            return Verdict::Consumed { reply: None };
        }
        let ours = match port {
            Port::Instance => self.plan.owner(target).is_none() && is_unicast(target),
            Port::Internet => self.plan.eip(target).is_some(),
            Port::Vpc => self.plan.vpc_owner(target).is_some(),
        };
        let stands_for = match port {
            Port::Instance => "every address that is not the instance's own (it is the gateway)",
            Port::Internet => "the EIPs",
            Port::Vpc => "the private IPs of ENIs with private networking",
        };
        if !ours {
            trace!(
                self,
                "arp", "who-has {target}: on {port} eipsim answers for {stands_for}; not this one"
            );
            return Verdict::drop(DropReason::ArpNotOurs);
        }
        let mac = PORT_MACS[port.index()];
        trace!(
            self,
            "arp",
            "who-has {target}: on {port} eipsim answers for {stands_for}: {target} is-at {mac}"
        );
        pkt.make_reply(mac);
        let mut eth = ethernet::Frame::new_checked(&mut frame[..]).expect("checked above");
        let requester = eth.src();
        eth.set_dst(requester);
        eth.set_src(mac);
        Verdict::Consumed { reply: Some(port) }
    }

    #[inline(always)]
    fn ipv4<const TRACE: bool>(&mut self, port: Port, frame: &mut [u8], tag: u64) -> Verdict {
        // Borrowed, not moved: moving the parsed fields as one block right
        // after writing them one by one stalls store-to-load forwarding.
        let parsed = parse(&frame[ETH..]);
        let m = match &parsed {
            Ok(m) => m,
            Err(r) => {
                trace!(
                    self,
                    "parse",
                    "IPv4 header invalid: cut short, bad version or IHL, total length beyond the frame, or bad header checksum"
                );
                return Verdict::drop(*r);
            }
        };
        let key = || DatagramKey {
            port,
            src: m.src(),
            dst: m.dst(),
            proto: m.proto,
            ident: m.ident,
        };
        if let Some(reason) = self.early_drop(port, m) {
            trace!(
                self,
                "check",
                "{}",
                match reason {
                    DropReason::Malformed =>
                        "the transport header (or the packet an ICMP error quotes) is cut short"
                            .to_string(),
                    DropReason::NotUnicast => format!(
                        "destination {} is broadcast, multicast or unspecified",
                        m.dst()
                    ),
                    DropReason::SpoofedSource => self.spoof_text(m.src()),
                    _ => format!("TTL {} <= 1: the host path is one hop", m.ttl),
                }
            );
            let v = Verdict::drop(reason);
            if m.piece == Piece::First {
                // The rest of the datagram follows the first's fate.
                self.remember_first(key(), frame, &Err(v), v, None);
            }
            return v;
        }
        trace!(
            self,
            "check",
            "TTL {} > 1{}",
            m.ttl,
            if port == Port::Instance {
                ", destination unicast"
            } else {
                ""
            }
        );
        if m.piece == Piece::Later {
            let key = key();
            trace!(
                self,
                "fragment",
                "a later fragment (id {}, offset > 0): no ports, it follows its first fragment",
                m.ident
            );
            return match self.frags.decision(&key, self.now) {
                Some(d) => {
                    trace!(
                        self,
                        "fragment",
                        "the first fragment decided: {}",
                        self.verdict_text(port, &d.verdict)
                    );
                    let v = self.follow_first(frame, &d);
                    if let Verdict::Forwarded { port: out, .. } = v {
                        trace!(
                            self,
                            "rewrite",
                            "TTL {} -> {}; addresses {} > {} -> {} > {}; IPv4 header checksum updated incrementally (no transport header in a later fragment); out on {out}",
                            m.ttl,
                            m.ttl - 1,
                            m.src(),
                            m.dst(),
                            d.src,
                            d.dst
                        );
                    }
                    self.fit_mtu::<TRACE>(frame, v)
                }
                None if self.frags.held.len() < frag::MAX_HELD => {
                    trace!(
                        self,
                        "fragment", "its first fragment has not come yet: held until it does"
                    );
                    self.frags.held.push(Held {
                        key,
                        tag,
                        frame: frame.to_vec(),
                        since: self.now,
                    });
                    Verdict::Held
                }
                None => Verdict::drop(DropReason::FragmentOrphaned),
            };
        }
        let decided = match port {
            Port::Instance => self.outbound::<TRACE>(m),
            Port::Internet | Port::Vpc => self.inbound::<TRACE>(m, port),
        };
        let verdict = match decided {
            Ok(x) => {
                let too_big = self.mtu[x.out.index()].filter(|&mtu| m.ip_len > mtu as usize);
                match too_big {
                    Some(mtu) if m.dont_frag => {
                        // Quote the packet as its sender sent it.
                        self.frag_needed::<TRACE>(port, frame, m.dst(), mtu);
                        Verdict::Dropped {
                            reason: DropReason::MtuExceeded,
                            eni: Some(x.eni),
                            eip: x.eip,
                        }
                    }
                    _ => {
                        self.rewrite::<TRACE>(frame, m, &x);
                        let v = Verdict::Forwarded {
                            port: x.out,
                            eni: Some(x.eni),
                            eip: x.eip,
                        };
                        self.fit_mtu::<TRACE>(frame, v)
                    }
                }
            }
            Err(v) => v,
        };
        if m.piece == Piece::First {
            let alg = match (&decided, verdict.reason()) {
                (Ok(x), _) => x.alg,
                (Err(_), Some(DropReason::AlgUnsupported)) => {
                    self.alg.recognise(m.proto, m.sport, m.dport)
                }
                _ => None,
            };
            // Later fragments follow the decision, not how the first one
            // happened to fit the MTU: they are fitted on their own.
            let decision = match verdict {
                Verdict::Fragmented { port, eni, eip, .. } => Verdict::Forwarded { port, eni, eip },
                v => v,
            };
            self.remember_first(key(), frame, &decided, decision, alg);
        }
        verdict
    }

    /// The checks before any lookup: a transport header cut short, the
    /// destination kind, the source (rule 3, for what the flow lookup does
    /// not vouch for) and the TTL.
    #[inline(always)]
    fn early_drop(&self, port: Port, m: &Meta) -> Option<DropReason> {
        if m.bad_l4 {
            return Some(DropReason::Malformed);
        }
        if port == Port::Instance {
            if !is_unicast(m.dst()) {
                return Some(DropReason::NotUnicast);
            }
            // A flow hit proves the source is owned, so whole packets are
            // checked after the lookup (in `outbound`); fragments and ICMP
            // errors are keyed otherwise and are checked here, as are
            // packets about to be dropped for their TTL.
            if (m.piece != Piece::Whole || m.quote.is_some() || m.ttl <= 1)
                && self.plan.owner(m.src()).is_none()
            {
                return Some(DropReason::SpoofedSource);
            }
        }
        (m.ttl <= 1).then_some(DropReason::TtlExpired)
    }

    /// Looks up or creates the flow of a packet from the instance.
    #[inline(always)]
    fn outbound<const TRACE: bool>(&mut self, m: &Meta) -> Result<Xlate, Verdict> {
        // An ICMP error about a packet the instance received: the flow is
        // the reverse of the quoted tuple.
        let key = m.flow_key(Port::Instance);
        if let Some(id) = self.flows.lookup(&key, self.now) {
            // An error must come from the address the quoted packet went to.
            if m.quote.is_none() || self.flows.get(id).inst_addr == m.src() {
                self.flows.touch(id, self.now, true, m.ip_len, m.tcp_flags);
                trace!(self, "flow", "hit: {}", self.flow_text(id));
                if let (true, Some(p)) = (TRACE, self.flows.get(id).alg) {
                    trace!(
                        self,
                        "alg",
                        "{}: {} is forwarded and counted (action forward)",
                        self.flow_text_short(id),
                        p.name()
                    );
                }
                return Ok(self.xlate(id, true));
            }
            trace!(
                self,
                "flow",
                "{} matches the quoted packet, but the error comes from {}, not from the flow's address {}: not this flow",
                self.flow_text(id),
                m.src(),
                self.flows.get(id).inst_addr
            );
        }
        trace!(
            self,
            "flow",
            "miss for {}{}",
            key_text(&key),
            if m.quote.is_some() {
                " (the flow of the packet this ICMP error quotes)"
            } else {
                ""
            }
        );
        // A flow hit proves the source is owned (flows are only made for
        // owned sources), so only a miss pays for this lookup.
        let Some(owner) = self.plan.owner(m.src()) else {
            trace!(self, "check", "{}", self.spoof_text(m.src()));
            return Err(Verdict::drop(DropReason::SpoofedSource));
        };
        trace!(
            self,
            "check",
            "source {} is an address of the instance ({})",
            m.src(),
            self.topo.eni(owner).name
        );
        if m.quote.is_some() {
            return Err(Verdict::drop(DropReason::IcmpErrorNoFlow));
        }
        if TRACE {
            let cands: Vec<String> = self
                .routes
                .candidates(m.src(), m.dst())
                .enumerate()
                .map(|(i, r)| {
                    format!(
                        "{}{}",
                        self.topo.route_text(&self.topo.routes[r.index]),
                        if i == 0 { " [chosen]" } else { "" }
                    )
                })
                .collect();
            trace!(
                self,
                "route",
                "{} > {}: {}",
                m.src(),
                m.dst(),
                if cands.is_empty() {
                    "no route matches".to_string()
                } else {
                    cands.join("; ")
                }
            );
        }
        let Some((eni, random)) =
            self.choose_eni::<TRACE>(m.src(), m.dst(), m.proto, m.sport, m.dport, true)
        else {
            return Err(Verdict::drop(DropReason::NoRoute));
        };
        let eni_addr = self.plan.select_source(eni, m.src());
        if eni_addr == m.src() {
            trace!(
                self,
                "source",
                "{} is an address of {}: kept",
                m.src(),
                self.topo.eni(eni).name
            );
        } else {
            trace!(
                self,
                "source",
                "{} is not an address of {}: it becomes {} (the ENI's {}); replies get {} back",
                m.src(),
                self.topo.eni(eni).name,
                eni_addr,
                if self.plan.eni(eni).cut_through.is_some() {
                    "cut-through EIP"
                } else {
                    "primary private IP"
                },
                m.src()
            );
        }
        let dropped = |reason, eip| Verdict::Dropped {
            reason,
            eni: Some(eni),
            eip,
        };
        let (out, eip, pub_addr, nat) = if self.topo.vpc_cidr.contains(m.dst()) {
            if let Some(ct) = self.plan.eni(eni).cut_through {
                trace!(
                    self,
                    "vpc",
                    "{} is in the VPC {}, but {} has a cut-through EIP and no private network (seed: private network features unavailable)",
                    m.dst(),
                    self.topo.vpc_cidr,
                    self.topo.eni(eni).name
                );
                return Err(dropped(DropReason::CutThroughNoPrivate, Some(ct)));
            }
            trace!(
                self,
                "vpc",
                "{} is in the VPC {}: out on vpc with the private source {}",
                m.dst(),
                self.topo.vpc_cidr,
                eni_addr
            );
            (Port::Vpc, None, eni_addr, false)
        } else {
            match self.plan.binding(eni, eni_addr, &self.topo) {
                EipBinding::Nat(id, a) => {
                    trace!(
                        self,
                        "eip",
                        "{} is associated in NAT mode with {}: source {} -> {}",
                        a,
                        eni_addr,
                        eni_addr,
                        a
                    );
                    (Port::Internet, Some(id), a, true)
                }
                EipBinding::CutThrough(id) => {
                    trace!(
                        self,
                        "eip",
                        "{} is {}'s cut-through EIP, its own address: no rewrite",
                        eni_addr,
                        self.topo.eni(eni).name
                    );
                    (Port::Internet, Some(id), eni_addr, false)
                }
                EipBinding::None => {
                    trace!(self, "eip", "{} has no EIP associated", eni_addr);
                    return Err(dropped(DropReason::NoEip, None));
                }
            }
        };
        let mut flow = Flow::new(
            m.proto,
            m.src(),
            eni_addr,
            pub_addr,
            m.dst(),
            m.sport,
            m.dport,
            out,
            eni,
            eip,
            Origin::Instance,
        );
        // Rule 5 (source selection) before rule 8 (ALG).
        if self.flows.key_taken(&flow.outside_key(), self.now) {
            trace!(
                self,
                "flow",
                "{} is already used by another flow",
                key_text(&flow.outside_key())
            );
            return Err(dropped(DropReason::SourceConflict, eip));
        }
        flow.alg = self.alg_stage::<TRACE>(m, eni, eip, nat)?;
        let mut x = Xlate {
            out,
            eni,
            eip,
            outbound: true,
            inst_addr: m.src(),
            eni_addr,
            pub_addr,
            alg: flow.alg,
            flow: None,
        };
        if self.flows.make_room(self.now) {
            let id = self.flows.insert(flow, self.now);
            self.flows.touch(id, self.now, true, m.ip_len, m.tcp_flags);
            x.flow = Some(id);
            trace!(self, "flow", "created: {}", self.flow_text(id));
        } else if eni_addr != m.src() || random {
            // Replies could not be mapped back without the flow.
            trace!(self, "flow", "the table is full and this flow needs state");
            return Err(dropped(DropReason::FlowTableFull, eip));
        } else {
            trace!(
                self,
                "flow",
                "the table is full; forwarded without state (replies map back by the static NAT)"
            );
        }
        Ok(x)
    }

    /// The translation a flow gives a packet.
    #[inline(always)]
    fn xlate(&self, id: FlowId, outbound: bool) -> Xlate {
        let f = self.flows.get(id);
        Xlate {
            out: if outbound { f.out_port } else { Port::Instance },
            eni: f.eni,
            eip: f.eip,
            outbound,
            inst_addr: f.inst_addr,
            eni_addr: f.eni_addr,
            pub_addr: f.pub_addr,
            alg: f.alg,
            flow: Some(id),
        }
    }

    /// Rule 7's destination check: the EIP (from the Internet) or the
    /// private IP of an ENI with private networking (from the VPC).
    #[inline(always)]
    fn local_destination(
        &self,
        port: Port,
        dst: Ipv4Addr,
    ) -> Result<(EniId, Option<EipId>, Ipv4Addr), Verdict> {
        if port == Port::Internet {
            let Some(id) = self.plan.eip(dst) else {
                return Err(Verdict::drop(DropReason::UnknownEip));
            };
            let e = self.topo.eip(id);
            // NAT maps to the private IP; cut-through delivers the EIP.
            let nat = self.plan.eni(e.eni).cut_through != Some(id);
            Ok((e.eni, Some(id), if nat { e.private_ip } else { dst }))
        } else {
            match self.plan.vpc_owner(dst) {
                Some(eni) => Ok((eni, None, dst)),
                None => Err(Verdict::drop(DropReason::NotLocal)),
            }
        }
    }

    /// Looks up or creates the flow of a packet from the Internet or VPC.
    #[inline(always)]
    fn inbound<const TRACE: bool>(&mut self, m: &Meta, port: Port) -> Result<Xlate, Verdict> {
        // An ICMP error about a packet the instance sent: the reverse of
        // the quoted tuple.
        let key = m.flow_key(port);
        if let Some(id) = self.flows.lookup(&key, self.now) {
            // An error must be addressed to the address the quoted packet
            // came from (which the flow key of a plain packet implies).
            if m.quote.is_none() || self.flows.get(id).pub_addr == m.dst() {
                self.flows.touch(id, self.now, false, m.ip_len, m.tcp_flags);
                trace!(self, "flow", "hit: {}", self.flow_text(id));
                if let (true, Some(p)) = (TRACE, self.flows.get(id).alg) {
                    trace!(
                        self,
                        "alg",
                        "{}: {} is forwarded and counted (action forward)",
                        self.flow_text_short(id),
                        p.name()
                    );
                }
                return Ok(self.xlate(id, false));
            }
            trace!(
                self,
                "flow",
                "{} matches the quoted packet, but the error is sent to {}, not to the flow's address {}: not this flow",
                self.flow_text(id),
                m.dst(),
                self.flows.get(id).pub_addr
            );
        }
        trace!(
            self,
            "flow",
            "miss for {}{}",
            key_text(&key),
            if m.quote.is_some() {
                " (the flow of the packet this ICMP error quotes)"
            } else {
                ""
            }
        );
        let local = self.local_destination(port, m.dst());
        if TRACE {
            let text = match (&local, port) {
                (Ok((eni, Some(id), addr)), _) => {
                    let e = self.topo.eip(*id);
                    match e.mode {
                        crate::config::AssociationMode::Nat => format!(
                            "{} is an EIP of {} in NAT mode: destination -> {}",
                            m.dst(),
                            self.topo.eni(*eni).name,
                            addr
                        ),
                        crate::config::AssociationMode::CutThrough => format!(
                            "{} is {}'s cut-through EIP: delivered unchanged",
                            m.dst(),
                            self.topo.eni(*eni).name
                        ),
                    }
                }
                (Ok((eni, None, _)), _) => format!(
                    "{} is a private IP of {}",
                    m.dst(),
                    self.topo.eni(*eni).name
                ),
                (Err(_), Port::Internet) => format!("{} is not an EIP of this instance", m.dst()),
                (Err(_), _) => format!(
                    "{} is not a private IP of an ENI with private networking",
                    m.dst()
                ),
            };
            trace!(self, "eip", "{text}");
        }
        let (eni, eip, eni_addr) = local?;
        if m.quote.is_some() {
            return Err(Verdict::drop(DropReason::IcmpErrorNoFlow));
        }
        let nat = eip.is_some() && eni_addr != m.dst();
        let mut flow = Flow::new(
            m.proto,
            eni_addr,
            eni_addr,
            m.dst(),
            m.src(),
            m.dport,
            m.sport,
            port,
            eni,
            eip,
            Origin::Outside,
        );
        let dropped = |reason| Verdict::Dropped {
            reason,
            eni: Some(eni),
            eip,
        };
        if self.flows.key_taken(&flow.inside_key(), self.now) {
            // The instance already uses this tuple for another flow.
            trace!(
                self,
                "flow",
                "the instance already uses {} for another flow",
                key_text(&flow.inside_key())
            );
            return Err(dropped(DropReason::SourceConflict));
        }
        flow.alg = self.alg_stage::<TRACE>(m, eni, eip, nat)?;
        let mut x = Xlate {
            out: Port::Instance,
            eni,
            eip,
            outbound: false,
            inst_addr: eni_addr,
            eni_addr,
            pub_addr: m.dst(),
            alg: flow.alg,
            flow: None,
        };
        if self.flows.make_room(self.now) {
            let id = self.flows.insert(flow, self.now);
            self.flows.touch(id, self.now, false, m.ip_len, m.tcp_flags);
            x.flow = Some(id);
            trace!(
                self,
                "flow",
                "created: {} (replies leave the same way, no route needed)",
                self.flow_text(id)
            );
        } else {
            // Without a flow the reply takes the route table: fine only if
            // that leads back through the same ENI with the same source.
            let back =
                self.choose_eni::<TRACE>(eni_addr, m.src(), m.proto, m.dport, m.sport, false);
            let same = matches!(back, Some((e, false)) if e == eni)
                && self.plan.select_source(eni, eni_addr) == eni_addr;
            if !same {
                trace!(
                    self,
                    "flow", "the table is full and the reply would need this flow"
                );
                return Err(dropped(DropReason::FlowTableFull));
            }
            trace!(
                self,
                "flow",
                "the table is full; forwarded without state (the route table sends replies back the same way)"
            );
        }
        Ok(x)
    }

    /// The route table's ENI for a new flow, and whether it was a random
    /// draw (which only a flow can remember). With `draw` false a random
    /// route answers `(first next hop, true)` without using up a draw.
    fn choose_eni<const TRACE: bool>(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        sport: u16,
        dport: u16,
        draw: bool,
    ) -> Option<(EniId, bool)> {
        let r = self.routes.lookup(src, dst)?;
        if r.via.len() == 1 {
            return Some((r.via[0], false));
        }
        // (ENI, bucket, the value that chose it)
        let (eni, bucket, value, random) = match r.balance {
            Balance::Hash => {
                let h = flow_hash(
                    self.topo.hash_seed,
                    proto,
                    src.to_bits(),
                    sport,
                    dst.to_bits(),
                    dport,
                );
                let (e, b) = r.pick(h);
                (e, b, h, false)
            }
            Balance::Random if draw => {
                let d = self.rng.next_u64();
                let (e, b) = r.pick(d);
                (e, b, d, true)
            }
            Balance::Random => (r.via[0], 0, 0, true),
        };
        if TRACE && draw {
            let names: Vec<String> = r
                .via
                .iter()
                .zip(&r.cumulative)
                .map(|(e, c)| format!("{} below {c}", self.topo.eni(*e).name))
                .collect();
            let how = match r.balance {
                Balance::Hash => format!(
                    "symmetric 5-tuple hash (seed {}) {value:#018x}",
                    self.topo.hash_seed
                ),
                Balance::Random => {
                    format!("seeded random draw {value:#018x}")
                }
            };
            trace!(
                self,
                "balance",
                "{how} mod {} = bucket {bucket} ({}) -> {}{}",
                r.total_weight(),
                names.join(", "),
                self.topo.eni(eni).name,
                if r.balance == Balance::Random {
                    "; remembered in the flow"
                } else {
                    ""
                }
            );
        }
        let picked = (eni, random);
        Some(picked)
    }

    /// The ALG stage of a new flow: checked in NAT mode only.
    fn alg_stage<const TRACE: bool>(
        &mut self,
        m: &Meta,
        eni: EniId,
        eip: Option<EipId>,
        nat: bool,
    ) -> Result<Option<AlgProtocol>, Verdict> {
        if nat {
            return self.alg_check::<TRACE>(m, eni, eip);
        }
        trace!(
            self,
            "alg",
            "not applied: {}",
            if eip.is_some() {
                "cut-through carries every IP protocol (the seed: FTP, H.323, SIP, DNS, RTSP, TFTP included)"
            } else {
                "the VPC path has no EIP and no NAT ALG"
            }
        );
        Ok(None)
    }

    fn alg_check<const TRACE: bool>(
        &mut self,
        m: &Meta,
        eni: EniId,
        eip: Option<EipId>,
    ) -> Result<Option<AlgProtocol>, Verdict> {
        let Some(p) = self.alg.recognise(m.proto, m.sport, m.dport) else {
            trace!(
                self,
                "alg",
                "NAT mode: {} {} > {} is no protocol on the unsupported list",
                proto_name(m.proto),
                m.sport,
                m.dport
            );
            return Ok(None);
        };
        trace!(
            self,
            "alg",
            "NAT mode: {} {} > {} is {}, which the NAT ALG does not support{}; action {}",
            proto_name(m.proto),
            m.sport,
            m.dport,
            p.name(),
            if p == AlgProtocol::Ftp {
                " (on this topology's [alg] list)"
            } else {
                " (the seed names H.323, SIP, DNS, RTSP and TFTP)"
            },
            match self.alg.action {
                AlgAction::Drop => "drop",
                AlgAction::Forward => "forward, counted",
            }
        );
        match self.alg.action {
            AlgAction::Drop => {
                self.counters.alg[p as usize].dropped += 1;
                Err(Verdict::Dropped {
                    reason: DropReason::AlgUnsupported,
                    eni: Some(eni),
                    eip,
                })
            }
            AlgAction::Forward => Ok(Some(p)),
        }
    }

    /// Rewrites a forwarded packet: TTL, MACs, then the instance endpoint's
    /// address, in two steps when the ENI view is captured in between.
    #[inline(always)]
    fn rewrite<const TRACE: bool>(&mut self, frame: &mut [u8], m: &Meta, x: &Xlate) {
        if let Some(p) = x.alg {
            self.counters.alg[p as usize].forwarded += 1;
        }
        self.set_link(frame, x.out);
        let (cur, mid, fin) = if x.outbound {
            (m.src(), x.eni_addr, x.pub_addr)
        } else {
            (m.dst(), x.eni_addr, x.inst_addr)
        };
        let later = m.piece == Piece::Later;
        if TRACE {
            let what = if x.outbound { "source" } else { "destination" };
            let addr = if cur == fin {
                format!("{what} {cur} unchanged")
            } else {
                format!("{what} {cur} -> {fin}")
            };
            let sums = match (m.proto, later) {
                _ if cur == fin => {
                    "IPv4 header checksum (TTL only; the transport checksum is untouched)"
                }
                (_, true) => "IPv4 header checksum (a later fragment has no transport header)",
                (PROTO_TCP, _) => "IPv4 and TCP checksums",
                (PROTO_UDP, _) => "IPv4 and UDP checksums (a zero UDP checksum stays zero)",
                (PROTO_ICMP, _) if m.quote.is_some() => {
                    "IPv4 and ICMP checksums, and the quoted packet's address and checksums (RFC 5508)"
                }
                _ => "IPv4 header checksum",
            };
            trace!(
                self,
                "rewrite",
                "TTL {} -> {}; {addr}; {sums} updated incrementally (RFC 1624); out on {}",
                m.ttl,
                m.ttl - 1,
                x.out
            );
        }
        if self.capture_eni {
            if cur != mid {
                translate(frame, x.outbound, mid, later, m.quote.is_some());
            }
            self.snapshot(x.eni, frame);
            if mid != fin {
                translate(frame, x.outbound, fin, later, m.quote.is_some());
            }
        } else if cur != fin {
            translate(frame, x.outbound, fin, later, m.quote.is_some());
        }
    }

    /// TTL and link addresses of a forwarded frame.
    #[inline(always)]
    fn set_link(&mut self, frame: &mut [u8], out: Port) {
        if let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[ETH..]) {
            ip.decrement_ttl();
        }
        if let Ok(mut eth) = ethernet::Frame::new_checked(&mut frame[..]) {
            eth.set_src(PORT_MACS[out.index()]);
            eth.set_dst(self.peers[out.index()].unwrap_or(Mac::BROADCAST));
        }
    }

    fn snapshot(&mut self, eni: EniId, frame: &[u8]) {
        self.view.clear();
        self.view.extend_from_slice(frame);
        self.view_eni = Some(eni);
    }

    /// Keeps the first fragment's decision for the later ones, and
    /// releases those that came early.
    fn remember_first(
        &mut self,
        key: DatagramKey,
        frame: &[u8],
        decided: &Result<Xlate, Verdict>,
        verdict: Verdict,
        alg: Option<AlgProtocol>,
    ) {
        let (src, dst) = match ipv4::Packet::new_checked(&frame[ETH..]) {
            Ok(ip) => (ip.src(), ip.dst()),
            Err(_) => (key.src, key.dst),
        };
        let (eni_src, eni_dst) = match decided {
            Ok(x) if x.outbound => (x.eni_addr, key.dst),
            Ok(x) => (key.src, x.eni_addr),
            Err(_) => (key.src, key.dst),
        };
        let flow = match decided {
            Ok(x) => x.flow.map(|id| (id, self.flows.get(id).inside_key())),
            Err(_) => None,
        };
        let d = FragDecision {
            verdict,
            src,
            dst,
            eni_src,
            eni_dst,
            since: self.now,
            flow,
            alg,
            outbound: key.port == Port::Instance,
        };
        self.frags.record(key, d);
        let held = self.frags.take_held(&key);
        if held.is_empty() {
            return;
        }
        // Releasing reuses the ENI view buffer: keep the first's own view.
        let (first_view, first_eni) = (std::mem::take(&mut self.view), self.view_eni);
        for mut h in held {
            self.counters.frames.held -= 1;
            self.view_eni = None;
            let v = self.follow_first(&mut h.frame, &d);
            let v = self.fit_mtu::<false>(&h.frame, v);
            self.account(key.port, h.frame.len(), &v);
            let eni_view = self.view_eni.map(|e| (e, self.view.clone()));
            self.released.push_back(Released {
                tag: h.tag,
                in_port: key.port,
                frame: h.frame,
                verdict: v,
                eni_view,
            });
        }
        self.view = first_view;
        self.view_eni = first_eni;
    }

    /// Fragments a forwarded frame larger than its egress MTU.
    fn fit_mtu<const TRACE: bool>(&mut self, frame: &[u8], v: Verdict) -> Verdict {
        let Verdict::Forwarded { port, eni, eip } = v else {
            return v;
        };
        let Some(mtu) = self.mtu[port.index()] else {
            return v;
        };
        if frame.len() <= ETH + mtu as usize {
            return v;
        }
        let Ok(ip) = ipv4::Packet::new_checked(&frame[ETH..]) else {
            return v;
        };
        if ip.total_len() <= mtu as usize {
            return v;
        }
        self.pieces.clear();
        mtu::fragment(frame, mtu as usize, &mut self.pieces);
        let n = self.pieces.len();
        trace!(
            self,
            "mtu",
            "{} bytes exceed {port}'s MTU {mtu} and DF is clear: {n} fragments (RFC 791)",
            ip.total_len()
        );
        for f in self.pieces.drain(..) {
            self.counters.ports[port.index()].tx(f.len());
            self.counters.frames.fragments_sent += 1;
            self.transmit.push_back(Transmit {
                port,
                frame: f,
                cause: self.tag,
            });
        }
        Verdict::Fragmented {
            port,
            eni,
            eip,
            pieces: n as u16,
        }
    }

    /// Sends an ICMP fragmentation-needed about `frame` back on `port`,
    /// from the address the packet was sent to.
    fn frag_needed<const TRACE: bool>(
        &mut self,
        port: Port,
        frame: &[u8],
        from: Ipv4Addr,
        mtu: u32,
    ) {
        trace!(
            self,
            "mtu",
            "larger than the egress MTU {mtu} with DF set: ICMP fragmentation-needed (next-hop MTU {mtu}) back on {port} from {from} (RFC 1191)"
        );
        let f = mtu::frag_needed(frame, mtu.min(65535) as u16, from, PORT_MACS[port.index()]);
        self.counters.ports[port.index()].tx(f.len());
        self.counters.frames.generated += 1;
        self.transmit.push_back(Transmit {
            port,
            frame: f,
            cause: self.tag,
        });
    }

    /// Applies the first fragment's decision to a later fragment.
    fn follow_first(&mut self, frame: &mut [u8], d: &FragDecision) -> Verdict {
        if let Some((id, key)) = d.flow {
            // The slot may have been reused since: check it is the same flow.
            if self.flows.is_live(id) && self.flows.get(id).inside_key() == key {
                let len = ipv4::Packet::new_checked(&frame[ETH..]).map_or(0, |ip| ip.total_len());
                self.flows.touch(id, self.now, d.outbound, len, None);
            }
        }
        match (d.verdict, d.alg) {
            (Verdict::Forwarded { .. }, Some(p)) => self.counters.alg[p as usize].forwarded += 1,
            (
                Verdict::Dropped {
                    reason: DropReason::AlgUnsupported,
                    ..
                },
                Some(p),
            ) => self.counters.alg[p as usize].dropped += 1,
            _ => {}
        }
        if let Verdict::Forwarded { port, eni, .. } = d.verdict {
            self.set_link(frame, port);
            if let (true, Some(e)) = (self.capture_eni, eni) {
                set_addrs(frame, d.eni_src, d.eni_dst);
                self.snapshot(e, frame);
            }
            set_addrs(frame, d.src, d.dst);
        }
        d.verdict
    }

    fn release_orphan(&mut self, h: Held) {
        self.counters.frames.held -= 1;
        let v = Verdict::drop(DropReason::FragmentOrphaned);
        self.account(h.key.port, h.frame.len(), &v);
        self.released.push_back(Released {
            tag: h.tag,
            in_port: h.key.port,
            frame: h.frame,
            verdict: v,
            eni_view: None,
        });
    }
}

/// Sets the outer addresses of a later fragment (no L4 header to fix).
fn set_addrs(frame: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    if let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[ETH..]) {
        if ip.src() != src {
            ip.set_src(src);
        }
        if ip.dst() != dst {
            ip.set_dst(dst);
        }
    }
}

/// Rewrites the instance endpoint's address to `to`: the source of an
/// outbound packet or the destination of an inbound one, with every
/// checksum that covers it. In an ICMP error the quoted packet travelled
/// the other way, so its other address changes too (RFC 5508 section 4.2).
fn translate(
    frame: &mut [u8],
    outbound: bool,
    to: Ipv4Addr,
    later_fragment: bool,
    icmp_error: bool,
) {
    let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[ETH..]) else {
        return;
    };
    let d = if outbound {
        ip.set_src(to)
    } else {
        ip.set_dst(to)
    };
    if later_fragment {
        return;
    }
    let proto = ip.protocol();
    let l4 = ip.payload_mut();
    match proto {
        PROTO_TCP => {
            if let Ok(mut t) = tcp::Packet::new_checked(l4) {
                t.adjust_checksum(d);
            }
        }
        PROTO_UDP => {
            if let Ok(mut u) = udp::Packet::new_checked(l4) {
                u.adjust_checksum(d);
            }
        }
        PROTO_ICMP if icmp_error => translate_quote(l4, !outbound, to),
        _ => {}
    }
}

/// Translates the packet quoted by an ICMP error: its source (`src` true)
/// or destination becomes `to`; its IP checksum, its TCP/UDP checksum (if
/// quoted) and the ICMP checksum are updated.
fn translate_quote(icmp_bytes: &mut [u8], src: bool, to: Ipv4Addr) {
    let Ok(mut msg) = icmp::Packet::new_checked(icmp_bytes) else {
        return;
    };
    let q = msg.quoted_mut();
    let Ok(mut qip) = ipv4::Packet::new_truncated(&mut q[..]) else {
        return;
    };
    let (proto, hl, old_cs) = (qip.protocol(), qip.header_len(), qip.checksum());
    let d = if src {
        qip.set_src(to)
    } else {
        qip.set_dst(to)
    };
    let mut total = d.merge(Delta::NONE.word(old_cs, qip.checksum()));
    let l4 = &mut q[hl..];
    let field = match proto {
        PROTO_TCP => Some((tcp::CHECKSUM_OFFSET, false)),
        PROTO_UDP => Some((udp::CHECKSUM_OFFSET, true)),
        _ => None,
    };
    if let Some((at, is_udp)) = field
        && let Some(old) = icmp::quoted_u16(l4, at)
    {
        let new = if is_udp {
            d.apply_udp(old)
        } else {
            d.apply(old)
        };
        total = total.merge(icmp::patch_quoted_u16(l4, at, new));
    }
    msg.adjust_checksum(total);
}
