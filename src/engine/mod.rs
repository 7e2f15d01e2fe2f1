//! The sans-IO forwarding engine.
//!
//! [`Engine::process`] is handed one Ethernet frame, the port it arrived
//! on and a timestamp; it rewrites the frame in place and returns a
//! [`Verdict`]: the port to send it on, or the reason it was dropped.
//! It does no I/O, reads no clock and keeps no global state, so the same
//! input gives the same output, byte for byte (like quinn-proto). Replay,
//! trace, the demo, `route get`, live TAP mode and the benchmarks all drive
//! this one type.
//!
//! # Driving it
//!
//! For each received frame, in arrival order:
//! 1. `process(now, port, frame, tag)` (or `process_batch` for several).
//!    `now` is the packet clock in nanoseconds; it never goes backwards
//!    (an earlier `now` counts as the latest seen). `tag` is the caller's
//!    name for the frame and comes back with it if it is held.
//! 2. If the verdict sends the frame ([`Verdict::sends_frame`]), send the
//!    rewritten buffer on that port. [`Engine::eni_view`] is the frame as
//!    its ENI carried it; it is valid until the next call that processes
//!    a frame.
//! 3. Drain [`Engine::poll_transmit`]: frames the engine made itself
//!    (fragments, ICMP errors), to send right after the frame that caused
//!    them (their `cause` is its tag).
//! 4. Drain [`Engine::poll_released`]: held later fragments whose first
//!    fragment has now come (or timed out), with their final verdict.
//!
//! At the end of the input call [`Engine::flush`] and drain
//! `poll_released` once more: fragments still held are dropped as
//! orphaned. [`crate::io::driver`] does all of this for captures.
//!
//! # The path
//!
//! Each step is a stage in [`stages`], a file of its own, recording typed
//! [`trace::Event`]s; docs/engine.md has the picture and the table. The
//! rule behind it: the route decides the ENI, the ENI decides the source,
//! the EIP association decides the public address.

pub mod alg;
pub mod bucket;
pub mod counters;
pub mod eip;
pub mod flow;
pub(crate) mod frag;
pub mod gso;
pub mod hash;
pub mod ops;
pub mod policer;
pub mod route;
pub mod secgroup;
pub mod stages;
pub mod trace;
pub mod verdict;

pub use counters::Counters;
pub use trace::Event;
pub use verdict::{Direction, DropReason, Link, Verdict};

use crate::config::{self, EniId, Topology};
use crate::wire::ethernet::{self, Mac};
use alg::Alg;
use bucket::TokenBucket;
use eip::AddressPlan;
use flow::FlowTable;
use frag::FragTable;
pub use gso::Offload;
use hash::SplitMix64;
use policer::Policers;
use route::RouteTable;
use secgroup::SecurityGroups;
use stages::ethernet::Next;
use stages::icmp_error::{self, Kind};
use stages::ip4_input::{Piece, peek_key};
use stages::mtu::Tx;
use stages::rewrite::EniView;
use stages::{arp, ip4_input, mtu, rewrite};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use trace::{Off, Tracer};

const ETH: usize = ethernet::HEADER_LEN;

/// The MAC address the engine uses on each port (locally administered),
/// indexed by [`Link::index`].
pub const PORT_MACS: [Mac; 3] = [
    Mac([0x02, 0xee, 0, 0, 0, 0x01]),
    Mac([0x02, 0xee, 0, 0, 0, 0x02]),
    Mac([0x02, 0xee, 0, 0, 0, 0x03]),
];

/// A frame that was held and is now decided.
#[derive(Debug)]
pub struct Released {
    /// The `tag` it was passed to [`Engine::process`] with.
    pub tag: u64,
    /// The port it arrived on.
    pub in_port: Link,
    /// The Ethernet frame, rewritten if it is to be sent
    /// ([`Verdict::sends_frame`]), else as received.
    pub frame: Vec<u8>,
    /// Its final verdict: forwarded, fragmented, or dropped (its first
    /// fragment's fate, or `fragment_orphaned`); never [`Verdict::Held`].
    pub verdict: Verdict,
    /// The frame as its ENI carries it, when ENI capture is on.
    pub eni_view: Option<(EniId, Vec<u8>)>,
}

/// A frame the engine sends on its own: a fragment of a packet too big
/// for its egress port, or an ICMP error it generated.
#[derive(Debug)]
pub struct Transmit {
    /// The port to send it on.
    pub port: Link,
    /// A whole Ethernet frame, checksums valid.
    pub frame: Vec<u8>,
    /// The tag of the received frame that caused it (to keep order).
    pub cause: u64,
}

/// One received frame, for [`Engine::process_batch`].
#[derive(Debug)]
pub struct Rx<'a> {
    /// Packet clock, ns.
    pub now: u64,
    /// The port it arrived on.
    pub port: Link,
    /// The Ethernet frame as received (no FCS), rewritten in place.
    pub frame: &'a mut [u8],
    /// The caller's name for it (see [`Engine::process`]).
    pub tag: u64,
}

/// A received frame as [`Engine::process_batch`] sees it; implemented by
/// [`Rx`] and by live mode's reusable buffers.
pub trait Received {
    /// The port it arrived on.
    fn port(&self) -> Link;
    /// Packet clock, ns.
    fn now(&self) -> u64;
    /// The caller's name for the frame (see [`Engine::process`]); 0 unless
    /// overridden.
    fn tag(&self) -> u64 {
        0
    }
    /// The Ethernet frame as received (no FCS).
    fn frame(&self) -> &[u8];
    /// The same bytes, for the engine to rewrite in place.
    fn frame_mut(&mut self) -> &mut [u8];
    /// What the device said about its checksum and segmentation; none
    /// unless overridden.
    fn offload(&self) -> Offload {
        Offload::NONE
    }
}

impl Received for Rx<'_> {
    fn port(&self) -> Link {
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
    sgs: SecurityGroups,
    policers: Policers,
    flows: FlowTable,
    frags: FragTable,
    counters: Counters,
    rng: SplitMix64,
    /// The packet clock, ns: the latest `now` seen.
    now: u64,
    /// The MAC of the host on each port, learnt or set.
    peers: [Option<Mac>; 3],
    /// Egress MTU per port, IP bytes (None: no limit, as in replay by
    /// default).
    mtu: [Option<u32>; 3],
    view: EniView,
    released: VecDeque<Released>,
    tx: Tx,
    tracing: bool,
    events: Vec<Event>,
    /// The offload state of the frame being processed.
    offload: Offload,
    /// (packets, Ethernet bytes) the frame being processed stands for.
    units: (u64, u64),
    /// Ask by ARP for a peer not heard from (see `set_resolve`).
    resolve: bool,
    /// When the last such ARP request went out on each port, ns.
    asked_at: [Option<u64>; 3],
    /// The ICMP error rate limit, per port.
    icmp_limit: icmp_error::Limiter,
}

impl Engine {
    /// An engine for `topo`, with an empty flow table.
    pub fn new(topo: Topology) -> Self {
        Engine {
            plan: AddressPlan::new(&topo),
            routes: RouteTable::new(&topo),
            alg: Alg::new(&topo.alg),
            sgs: SecurityGroups::new(&topo),
            policers: Policers::new(&topo),
            flows: FlowTable::new(topo.flow_table, topo.hash_seed),
            frags: FragTable::default(),
            counters: Counters::new(&topo),
            rng: SplitMix64::new(topo.hash_seed),
            now: 0,
            peers: [None; 3],
            view: EniView::new(),
            released: VecDeque::new(),
            mtu: [None; 3],
            tx: Tx::default(),
            tracing: false,
            events: Vec::new(),
            offload: Offload::NONE,
            units: (0, 0),
            resolve: false,
            asked_at: [None; 3],
            icmp_limit: icmp_error::Limiter(
                [TokenBucket::new(topo.icmp_errors.per_second, topo.icmp_errors.burst); 3],
            ),
            topo,
        }
    }

    /// The topology the engine was built for.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The compiled route table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The compiled security groups.
    pub fn security_groups(&self) -> &SecurityGroups {
        &self.sgs
    }

    /// Makes this engine police with `other`'s bandwidth buckets, so that
    /// engines of one run (live mode's workers) share each EIP's limit.
    pub fn share_policers(&mut self, other: &Engine) {
        self.policers = other.policers.clone();
    }

    /// Which address belongs to which ENI and EIP.
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

    /// Records the events of each packet (see [`Engine::take_trace`]). They
    /// come from the forwarding code itself, not from a model of it.
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// The events of the last `process` call (empty unless tracing).
    pub fn take_trace(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Sets a port's MTU (IP bytes): larger packets leaving there are
    /// fragmented, or with DF set dropped with an ICMP
    /// fragmentation-needed to the sender.
    pub fn set_mtu(&mut self, port: Link, mtu: Option<u32>) {
        self.mtu[port.index()] = mtu;
    }

    /// Frames the engine sends on its own (fragments, ICMP errors), after
    /// each call to `process`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.queue.pop_front()
    }

    /// Tells the engine the MAC address of the host on a port (live mode
    /// learns it once for all workers); frames received there also teach it.
    pub fn set_peer_mac(&mut self, port: Link, mac: Mac) {
        self.peers[port.index()] = Some(mac);
    }

    /// When a frame leaves by a port whose peer has not been heard from
    /// (its MAC unknown, so the frame goes to the broadcast MAC, which a
    /// host's TCP ignores), also send an ARP request for the frame's
    /// destination from its source, at most one a second per port, as a
    /// router resolves its next hop (RFC 1812 3.3.2). The reply teaches
    /// the engine the peer's MAC. Off by default (replay learns peers from
    /// the capture); live mode turns it on for AF_PACKET ports.
    pub fn set_resolve(&mut self, on: bool) {
        self.resolve = on;
    }

    /// Keep a copy of each forwarded frame as its ENI carries it inside the
    /// instance (private address in NAT mode), see [`Engine::eni_view`].
    pub fn set_eni_capture(&mut self, on: bool) {
        self.view.on = on;
    }

    /// After a forwarded frame: the ENI it used and the frame as that ENI
    /// carries it. Only with [`Engine::set_eni_capture`]; valid until the
    /// next frame is processed.
    pub fn eni_view(&self) -> Option<(EniId, &[u8])> {
        self.view.eni.map(|e| (e, &self.view.buf[..]))
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
            self.offload = rx.offload();
            // The untraced copy directly, so it inlines into this loop.
            let v = if self.tracing {
                self.process_traced(now, port, rx.frame_mut(), tag)
            } else {
                self.process_impl(&mut Off, now, port, rx.frame_mut(), tag)
            };
            verdicts.push(v);
        }
    }

    /// Processes one frame received on `port` at `now` (nanoseconds on the
    /// packet clock). `tag` comes back with the frame if it is held.
    pub fn process(&mut self, now: u64, port: Link, frame: &mut [u8], tag: u64) -> Verdict {
        self.process_offloaded(now, port, frame, tag, Offload::NONE)
    }

    /// Like [`Engine::process`] for a frame a device handed over with
    /// offloads (see [`Offload`]): a GSO packet is decided once for all
    /// its segments (they share every header the decision reads), its
    /// headers are rewritten once, a partial checksum is updated as the
    /// pseudo-header sum it is, and the counters count the segments and
    /// the bytes they would carry. A forwarded frame keeps `offload`: the
    /// caller writes it on with [`Offload::to_virtio`].
    ///
    /// The caller segments a GSO packet in software
    /// ([`gso::segment_tcp4`]) when it wants single segments (captures),
    /// or when a segment could exceed a port's MTU; the engine, handed
    /// one anyway, completes its checksum and treats it as one large
    /// packet (fragmented, or refused with DF).
    pub fn process_offloaded(
        &mut self,
        now: u64,
        port: Link,
        frame: &mut [u8],
        tag: u64,
        offload: Offload,
    ) -> Verdict {
        self.offload = offload;
        if self.tracing {
            self.process_traced(now, port, frame, tag)
        } else {
            self.process_impl(&mut Off, now, port, frame, tag)
        }
    }

    /// The traced copy, kept out of line so the forwarding path's code
    /// stays as small as it was before tracing existed.
    #[cold]
    #[inline(never)]
    fn process_traced(&mut self, now: u64, port: Link, frame: &mut [u8], tag: u64) -> Verdict {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let v = self.process_impl(&mut events, now, port, frame, tag);
        self.events = events;
        v
    }

    /// The stage sequence for one frame: housekeeping, then
    /// `ethernet` -> `arp` | `ipv4`, then the ledger.
    #[inline(always)]
    fn process_impl<T: Tracer>(
        &mut self,
        t: &mut T,
        now: u64,
        port: Link,
        frame: &mut [u8],
        tag: u64,
    ) -> Verdict {
        if now > self.now {
            self.now = now;
        }
        self.tx.cause = tag;
        self.view.eni = None;
        self.units = if self.offload.gso_size == 0 {
            (1, frame.len() as u64)
        } else {
            self.offload.units(frame)
        };
        self.counters.ports[port.index()].rx_n(self.units.0, self.units.1);
        self.counters.frames.received += self.units.0;
        self.flows.tick(self.now);
        if !self.frags.held.is_empty() {
            for h in self.frags.take_expired(Some(self.now)) {
                self.release_orphan(h);
            }
        }
        trace::trace!(
            t,
            Event::Receive {
                port,
                len: frame.len(),
                frame: frame.to_vec()
            }
        );
        let v = match stages::ethernet::input(t, port, frame, &mut self.peers) {
            Ok(Next::Ipv4) => self.ipv4(t, port, frame, tag),
            Ok(Next::Arp) => arp::input(t, port, frame, &self.plan),
            Err(v) => v,
        };
        // A hairpin's first pass is counted as it leaves (the sender's ENI
        // and EIP, out), the second as a packet from the Internet (the
        // target's, in; the ledger and its out port).
        let (v, counted_as) = match v {
            Verdict::Forwarded {
                port: Link::Internet,
                eni,
                eip,
            } if port == Link::Instance && self.to_own_eip(frame) => {
                match self.hairpin(t, frame, tag) {
                    Some(v2) => {
                        self.counters.account_out(self.units, eni, eip);
                        (v2, Link::Internet)
                    }
                    None => (v, port),
                }
            }
            v => (v, port),
        };
        self.counters.account_n(counted_as, self.units, &v);
        if self.resolve {
            self.resolve_peer(frame, &v);
        }
        trace::trace!(
            t,
            Event::Verdict {
                in_port: port,
                verdict: v
            }
        );
        v
    }

    /// The IPv4 stage sequence:
    /// `ip4_input` (parse, checks) -> `frag` (later fragments follow their
    /// first) | `session` (flow hit, or for a new flow: `source`, `fib`,
    /// `eip`, `alg`) -> `mtu` (too big with DF) -> `rewrite` -> `mtu`
    /// (fragment); a first fragment's decision is remembered by `frag`.
    #[inline(always)]
    fn ipv4<T: Tracer>(&mut self, t: &mut T, port: Link, frame: &mut [u8], tag: u64) -> Verdict {
        // Borrowed, not moved: moving the parsed fields as one block right
        // after writing them one by one stalls store-to-load forwarding.
        let parsed = ip4_input::parse(&frame[ETH..]);
        let m = match &parsed {
            Ok(m) => m,
            Err(r) => {
                trace::trace!(
                    t,
                    Event::Ipv4Invalid {
                        fault: ip4_input::fault(&frame[ETH..])
                    }
                );
                return Verdict::drop(*r);
            }
        };
        // The frame's destination MAC has its group bit: a link-layer
        // broadcast or multicast (the ethernet stage checked the length).
        let l2_group = (frame[0] & 1 != 0)
            .then(|| Mac([frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]]));
        if let Err(reason) = ip4_input::check(t, port, m, l2_group, &self.plan) {
            if reason == DropReason::TtlExpired {
                // RFC 1812 5.3.1: the sender learns the hop (traceroute).
                let from = self.own_address(port, m);
                let now = self.now;
                let (l, tx, c) = (&mut self.icmp_limit, &mut self.tx, &mut self.counters);
                icmp_error::send(t, Kind::TimeExceeded, port, frame, from, now, l, tx, c);
            }
            let v = Verdict::drop(reason);
            if m.piece == Piece::First {
                // The rest of the datagram follows the first's fate.
                self.first_fragment(port, frame, m, &Err(v), v);
            }
            return v;
        }
        if m.piece == Piece::Later {
            return self.later_fragment(t, port, frame, m, tag);
        }
        // From the Internet the EIP gateway (its policer) comes before the
        // ENI (flows, security groups); toward it, after them.
        let mut decided = match (port, self.policers.on()) {
            (Link::Internet, true) => self.police_inbound(t, m),
            _ => Ok(()),
        }
        .and_then(|()| self.session(t, m, port));
        if self.policers.on()
            && let Ok(x) = &decided
        {
            let bytes = self.flow_units(m.ip_len).1 as u64;
            let now = self.now;
            if let Err(v) = stages::bandwidth::police(t, &self.policers, x, port, now, bytes) {
                decided = Err(v);
            }
        }
        let verdict = match decided {
            Ok(x) => match mtu::exceeded(&self.mtu, x.out, self.segment_ip_len(frame, m.ip_len)) {
                Some(limit) if m.dont_frag => {
                    // Quote the packet as its sender sent it; to the
                    // instance from the gateway of the ENI it was to leave
                    // by, elsewhere from the address it was sent to.
                    let from = match port {
                        Link::Instance => self.topo.eni(x.eni).gateway,
                        _ => m.dst(),
                    };
                    let now = self.now;
                    let (l, tx, c) = (&mut self.icmp_limit, &mut self.tx, &mut self.counters);
                    let kind = Kind::FragNeeded { mtu: limit };
                    icmp_error::send(t, kind, port, frame, Some(from), now, l, tx, c);
                    Verdict::Dropped {
                        reason: DropReason::MtuExceeded,
                        eni: Some(x.eni),
                        eip: x.eip,
                    }
                }
                over => {
                    let partial = self.offload.partial_csum;
                    rewrite::rewrite(t, frame, m, &x, &self.peers, &mut self.view, partial);
                    if let Some(p) = x.alg {
                        self.counters.alg[p as usize].forwarded += self.units.0;
                    }
                    let v = Verdict::Forwarded {
                        port: x.out,
                        eni: Some(x.eni),
                        eip: x.eip,
                    };
                    let (tx, c) = (&mut self.tx, &mut self.counters);
                    match (over, self.offload.gso_size > 0) {
                        // Its segments fit: it leaves as one GSO packet.
                        (None, true) => v,
                        // Only a caller that did not segment first gets
                        // here: each segment is fragmented on its own.
                        (Some(_), true) => {
                            mtu::fit_gso(t, frame, self.offload, v, &self.mtu, tx, c)
                        }
                        (over, false) => {
                            if over.is_some() && partial {
                                // Fragments carry no offload: their checksum
                                // must be whole before the payload is cut.
                                Offload::complete(frame);
                            }
                            mtu::fit(t, frame, v, &self.mtu, tx, c)
                        }
                    }
                }
            },
            Err(v) => v,
        };
        if m.piece == Piece::First {
            self.first_fragment(port, frame, m, &decided, verdict);
        }
        verdict
    }

    /// The inbound policer of the EIP a packet from the Internet is sent
    /// to, before anything else looks at it.
    #[cold]
    fn police_inbound<T: Tracer>(&mut self, t: &mut T, m: &ip4_input::Meta) -> Result<(), Verdict> {
        let Some(eip) = self.plan.eip(m.dst()) else {
            return Ok(());
        };
        let bytes = self.flow_units(m.ip_len).1 as u64;
        let eni = Some(self.topo.eip(eip).eni);
        let now = self.now;
        stages::bandwidth::police_eip(t, &self.policers, eip, eni, Direction::Inbound, now, bytes)
    }

    /// See [`Engine::set_resolve`].
    #[cold]
    fn resolve_peer(&mut self, frame: &[u8], v: &Verdict) {
        let out = match *v {
            Verdict::Forwarded { port, .. } | Verdict::Fragmented { port, .. } => port,
            _ => return,
        };
        let i = out.index();
        let recent = self.asked_at[i].is_some_and(|t| self.now.saturating_sub(t) < 1_000_000_000);
        if self.peers[i].is_some() || recent {
            return;
        }
        let Some(ip) = frame.get(ETH + 12..ETH + 20) else {
            return;
        };
        let (src, dst) = ([ip[0], ip[1], ip[2], ip[3]], [ip[4], ip[5], ip[6], ip[7]]);
        self.asked_at[i] = Some(self.now);
        let f = arp::request(out, src, dst);
        self.counters.ports[i].tx(f.len());
        self.counters.frames.generated += 1;
        self.tx.queue.push_back(Transmit {
            port: out,
            frame: f,
            cause: self.tx.cause,
        });
    }

    /// True if the (forwarded, so valid IPv4) frame is addressed to one of
    /// the instance's own EIPs: most addresses are ruled out by a bit test.
    #[inline(always)]
    fn to_own_eip(&self, frame: &[u8]) -> bool {
        frame.get(ETH + 16..ETH + 20).is_some_and(|d| {
            self.plan
                .eip(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
                .is_some()
        })
    }

    /// Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): a packet the instance
    /// sent to one of its own EIPs, translated on its way out, comes back
    /// in through that EIP as any packet from the Internet would (its
    /// destination translated for NAT, kept for cut-through) and leaves on
    /// `instance`. In the cloud the loop is at the EIP gateway; it counts
    /// as one hop (the first pass's TTL decrement is undone). `None`: not
    /// a hairpin. Fragments follow their first in both passes.
    #[cold]
    fn hairpin<T: Tracer>(&mut self, t: &mut T, frame: &mut [u8], tag: u64) -> Option<Verdict> {
        let mut ip = crate::wire::ipv4::Packet::new_checked(frame.get_mut(ETH..)?).ok()?;
        let eip = self.plan.eip(ip.dst())?;
        trace::trace!(t, Event::Hairpin { eip });
        self.counters.hairpin += 1;
        ip.increment_ttl();
        // It comes back in addressed to eipsim on `internet` (pass one
        // addressed it to the peer there, or broadcast if none is known).
        frame[..6].copy_from_slice(&PORT_MACS[Link::Internet.index()].0);
        if self.sgs.on()
            && let Err(v) = self.self_hairpin_ingress(t, frame, eip)
        {
            return Some(v);
        }
        Some(self.ipv4(t, Link::Internet, frame, tag))
    }

    /// A hairpin from an EIP to itself whose flow key reads the same both
    /// ways (an ICMP echo by identifier, a protocol without ports, equal
    /// ports) meets on its way back in the flow its way out has just
    /// created, as if it were that flow's reply. Until a packet has come
    /// back in on that flow, the target ENI's ingress rules judge it here,
    /// as they judge any other hairpin's new inbound flow.
    #[cold]
    fn self_hairpin_ingress<T: Tracer>(
        &mut self,
        t: &mut T,
        frame: &[u8],
        eip: config::EipId,
    ) -> Result<(), Verdict> {
        let Ok(m) = ip4_input::parse(&frame[ETH..]) else {
            return Ok(());
        };
        if m.quote.is_some() || m.piece == Piece::Later {
            return Ok(());
        }
        let key = m.flow_key(Link::Internet);
        if key.src != key.dst || key.sport != key.dport {
            return Ok(()); // a reply to another flow, or a new flow of its own
        }
        let Some(id) = self.flows.lookup(&key, self.now) else {
            return Ok(());
        };
        let f = self.flows.get(id);
        if f.origin != flow::Origin::Instance
            || f.outside_key() != key
            || self.flows.packets(id)[Direction::Inbound as usize] != 0
        {
            return Ok(());
        }
        let sg = secgroup::Packet {
            dir: config::RuleDirection::Ingress,
            proto: key.proto,
            peer: key.src,
            port: matches!(key.proto, 6 | 17).then_some(key.dport),
            via: Link::Internet,
        };
        let target = self.topo.eip(eip).eni;
        stages::security_group::check(t, &self.sgs, target, Some(eip), sg)
    }

    /// The address of eipsim's an ICMP error about `m` is sent from on
    /// `port`: to the instance, the gateway of the ENI that owns the
    /// packet's source (the instance's next hop on it); to the Internet or
    /// the VPC, the address the packet was sent to, if it is one eipsim
    /// stands for there (an EIP; a private IP with private networking).
    fn own_address(&self, port: Link, m: &ip4_input::Meta) -> Option<std::net::Ipv4Addr> {
        match port {
            Link::Instance => self.plan.owner(m.src()).map(|e| self.topo.eni(e).gateway),
            Link::Internet => self.plan.eip(m.dst()).map(|_| m.dst()),
            Link::Vpc => self.plan.vpc_owner(m.dst()).map(|_| m.dst()),
        }
    }

    /// The IP length of the largest packet `frame` stands for: its own, or
    /// a GSO packet's largest segment.
    #[inline(always)]
    fn segment_ip_len(&self, frame: &[u8], ip_len: usize) -> usize {
        if self.offload.gso_size == 0 {
            ip_len
        } else {
            self.offload.segment_ip_len(frame, ip_len)
        }
    }

    /// (packets, IP bytes) the frame being processed adds to its flow.
    #[inline(always)]
    fn flow_units(&self, ip_len: usize) -> (u32, usize) {
        if self.offload.gso_size == 0 {
            (1, ip_len)
        } else {
            let (n, bytes) = self.units;
            (n as u32, (bytes - n * ETH as u64) as usize)
        }
    }
}
