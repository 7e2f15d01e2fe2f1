//! `eipsim reach`: what can reach the instance, and what the instance can
//! reach, for every flow at once, computed from the topology.
//!
//! The answer is exact, not sampled. The peer address space is cut into
//! the intervals that every prefix the decision looks at induces (rule
//! CIDRs, group members, route prefixes, the VPC, 100.64.0.0/10, the
//! martian ranges, the instance's own EIPs), and the destination port
//! space into the intervals that rule port ranges, the ALG's well-known
//! ports and port 25 induce, per protocol class. Inside one such cell
//! every rule either matches all packets or none, so one packet per cell
//! is judged, by the engine's own stage functions ([`SecurityGroups::judge`],
//! the EIP and cloud stages, [`Alg::recognise`], [`RouteTable::lookup`]);
//! cells with the same outcome are then merged for printing.
//!
//! What a cell's outcome leaves out: the state a flow table holds (an
//! existing flow, a taken key, a full table), bandwidth limits, MTUs and
//! TTLs. `reach` answers for the first packet of a new connection (a TCP
//! SYN, a UDP datagram, an ICMP echo request) sent with a fresh flow table.

use crate::config::{AlgAction, CUT_THROUGH_UNREACHABLE, EipId, EniId, RuleDirection, Topology};
use crate::engine::alg::{Alg, well_known_ports};
use crate::engine::eip::AddressPlan;
use crate::engine::route::RouteTable;
use crate::engine::secgroup::{Packet, PeerMatch, SecurityGroups};
use crate::engine::stages::{cloud, eip as eip_stage, ip4_input};
use crate::engine::trace::Off;
use crate::engine::{DropReason, Link, Verdict as EngineVerdict};
use crate::explain::trace::judgement_text;
use ipnetwork::Ipv4Network;
use std::collections::BTreeMap;

mod text;
mod types;

use std::net::Ipv4Addr;
pub use types::{
    Hop, Inbound, Line, OutPath, Outbound, Outcome, PortSpan, ProtoClass, Reach, Span,
};

/// The topology's tables, compiled as the engine compiles them.
struct Model<'a> {
    topo: &'a Topology,
    plan: AddressPlan,
    routes: RouteTable,
    sgs: SecurityGroups,
    alg: Alg,
    /// A source port no ALG rule names: the port of a cell's base outcome.
    plain_sport: u16,
}

/// The address ranges dropped before any lookup as sources (RFC 1812
/// 5.3.7, `stages/ip4_input.rs`): used to cut the space, judged by the
/// engine's own predicate.
const MARTIAN: [(Ipv4Addr, u8); 5] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Computes the answer for a checked topology.
pub fn reach(topo: &Topology) -> Reach {
    let alg = Alg::new(&topo.alg);
    let alg_ports: Vec<u16> = topo
        .alg
        .unsupported
        .iter()
        .flat_map(|&p| well_known_ports(p).iter().map(|&(_, port)| port))
        .collect();
    let plain_sport = (1024..=u16::MAX)
        .find(|p| !alg_ports.contains(p))
        .unwrap_or(1024);
    let m = Model {
        topo,
        plan: AddressPlan::new(topo),
        routes: RouteTable::new(topo),
        sgs: SecurityGroups::new(topo),
        alg,
        plain_sport,
    };
    let mut inbound = Vec::new();
    for e in &topo.eips {
        inbound.push(m.inbound(Link::Internet, e.address));
    }
    for eni in &topo.enis {
        for &ip in &eni.private_ips {
            inbound.push(m.inbound(Link::Vpc, ip));
        }
    }
    let mut outbound = Vec::new();
    for (i, eni) in topo.enis.iter().enumerate() {
        for a in topo.os_addresses(EniId(i as u16)) {
            outbound.push(m.outbound(a, &eni.name));
        }
    }
    Reach {
        security_groups: m.sgs.on(),
        inbound,
        outbound,
    }
}

/// An elementary address interval, `[first, last]` as numbers.
type Cell = (u32, u32);
/// Cells that share outcomes.
type Group = (Vec<Outcome>, Vec<Cell>);
/// What makes outbound destinations one path: the route (by index) and
/// the hops it gives them.
type PathKey = (Option<usize>, Vec<Hop>);

/// The elementary intervals of `[lo, hi]` that the prefixes cut it into.
fn cut(lo: u32, hi: u32, nets: &[Ipv4Network]) -> Vec<(u32, u32)> {
    let mut starts: Vec<u64> = vec![u64::from(lo), u64::from(hi) + 1];
    for n in nets {
        starts.push(u64::from(n.network().to_bits()));
        starts.push(u64::from(n.broadcast().to_bits()) + 1);
    }
    starts.retain(|&s| s >= u64::from(lo) && s <= u64::from(hi) + 1);
    starts.sort_unstable();
    starts.dedup();
    starts
        .windows(2)
        .map(|w| (w[0] as u32, (w[1] - 1) as u32))
        .collect()
}

/// The elementary port intervals the ranges cut 0..=65535 into.
fn cut_ports(ranges: &[PortSpan]) -> Vec<PortSpan> {
    let mut starts: Vec<u32> = vec![0, 65536];
    for r in ranges {
        starts.push(u32::from(r[0]));
        starts.push(u32::from(r[1]) + 1);
    }
    starts.sort_unstable();
    starts.dedup();
    starts
        .windows(2)
        .map(|w| [w[0] as u16, (w[1] - 1) as u16])
        .collect()
}

/// Merges sorted elementary intervals that touch.
fn merge_spans(v: &[(u32, u32)]) -> Vec<Span> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &(a, b) in v {
        match out.last_mut() {
            Some(l) if u64::from(a) <= u64::from(l.1) + 1 => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out.into_iter().map(|(a, b)| Span::new(a, b)).collect()
}

fn merge_ports(v: &[PortSpan]) -> Vec<PortSpan> {
    let mut out: Vec<PortSpan> = Vec::new();
    for &r in v {
        match out.last_mut() {
            Some(l) if u32::from(l[1]) + 1 == u32::from(r[0]) => l[1] = r[1],
            _ => out.push(r),
        }
    }
    out
}

fn l4_port(class: ProtoClass, port: u16) -> Option<u16> {
    class.has_ports().then_some(port)
}

fn reason_of(v: EngineVerdict) -> DropReason {
    match v {
        EngineVerdict::Dropped { reason, .. } => reason,
        _ => DropReason::Malformed,
    }
}

impl Model<'_> {
    /// Every prefix a security group decision looks at, both directions.
    fn rule_nets(&self) -> Vec<Ipv4Network> {
        let mut v = Vec::new();
        if !self.sgs.on() {
            return v;
        }
        for i in 0..self.topo.enis.len() {
            let p = self.sgs.eni(EniId(i as u16));
            for dir in [RuleDirection::Ingress, RuleDirection::Egress] {
                for c in p.rules(dir) {
                    match &c.peer {
                        PeerMatch::Cidr(n) => v.push(*n),
                        PeerMatch::Members(_, nets) => v.extend(nets.iter().copied()),
                    }
                }
            }
            for (_, nets) in &p.intra {
                v.extend(nets.iter().copied());
            }
        }
        v
    }

    /// The port cuts of a protocol class: rule ranges, ALG ports, 25.
    fn port_cuts(&self, class: ProtoClass) -> Vec<PortSpan> {
        if !class.has_ports() {
            return vec![[0, u16::MAX]];
        }
        let mut r: Vec<PortSpan> = Vec::new();
        for g in &self.topo.security_groups {
            for rule in &g.rules {
                if rule.protocol.matches(class.number()) && rule.protocol.has_ports() {
                    r.extend(rule.ports.iter().map(|p| [p.start, p.end]));
                }
            }
        }
        for &p in &self.topo.alg.unsupported {
            for &(t, port) in well_known_ports(p) {
                if t == class.number() {
                    r.push([port, port]);
                }
            }
        }
        if class == ProtoClass::Tcp {
            r.push([25, 25]);
        }
        cut_ports(&r)
    }

    /// The unsupported protocols with their ports: `dns (tcp 53, udp 53),
    /// ...`, one text for every ALG drop so their lines merge.
    fn alg_names(&self) -> String {
        let v: Vec<String> = self
            .topo
            .alg
            .unsupported
            .iter()
            .map(|&p| {
                let ports: Vec<String> = well_known_ports(p)
                    .iter()
                    .map(|&(t, port)| format!("{} {port}", ProtoClass::of(t).name()))
                    .collect();
                format!("{} ({})", p.name(), ports.join(", "))
            })
            .collect();
        v.join(", ")
    }

    /// The source ports the ALG recognises for `class` when `nat` and the
    /// action is drop.
    fn alg_sports(&self, class: ProtoClass, nat: bool) -> Vec<u16> {
        if !nat || self.alg.action != AlgAction::Drop || !class.has_ports() {
            return Vec::new();
        }
        let mut v: Vec<u16> = self
            .topo
            .alg
            .unsupported
            .iter()
            .flat_map(|&p| well_known_ports(p).iter())
            .filter(|&&(t, _)| t == class.number())
            .map(|&(_, port)| port)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The security group verdict for `p` at `eni`: `Err` a drop.
    fn secgroup(&self, eni: EniId, p: &Packet) -> Result<String, Outcome> {
        if !self.sgs.on() {
            return Ok("no security groups in the file".to_string());
        }
        let j = self.sgs.judge(eni, p);
        let text = judgement_text(self.topo, &j);
        if j.allows(p.dir) {
            Ok(text)
        } else {
            Err(Outcome::dropped(DropReason::SecurityGroupDenied, text))
        }
    }

    /// The ALG stage of a new flow (NAT only) after `by` let it through.
    fn alg_stage(&self, class: ProtoClass, dport: u16, nat: bool, by: String) -> Outcome {
        if nat && let Some(p) = self.alg.recognise(class.number(), self.plain_sport, dport) {
            return match self.alg.action {
                AlgAction::Drop => Outcome::dropped(
                    DropReason::AlgUnsupported,
                    format!("the NAT ALG does not support {}", self.alg_names()),
                ),
                AlgAction::Forward => {
                    Outcome::forwarded(format!("{by}; NAT ALG: {} forwarded, counted", p.name()))
                }
            };
        }
        let mut o = Outcome::forwarded(by);
        o.alg_sports = self.alg_sports(class, nat);
        o
    }

    /// A new connection arriving on `link` to `to` from `peer`.
    fn inbound_cell(
        &self,
        link: Link,
        to: Ipv4Addr,
        class: ProtoClass,
        peer: Ipv4Addr,
        dport: u16,
    ) -> Outcome {
        if ip4_input::martian_source(peer) {
            return Outcome::dropped(
                DropReason::MartianSource,
                "martian source (RFC 1812 5.3.7)".into(),
            );
        }
        let (eni, eip, eni_addr) =
            match eip_stage::inbound(&mut Off, self.topo, &self.plan, link, to) {
                Ok(x) => x,
                Err(v) => {
                    let why = if link == Link::Vpc && self.plan.owner(to).is_some() {
                        "a cut-through ENI has no private network"
                    } else {
                        "not an address served on this port"
                    };
                    return Outcome::dropped(reason_of(v), why.into());
                }
            };
        let p = Packet {
            dir: RuleDirection::Ingress,
            proto: class.number(),
            peer,
            port: l4_port(class, dport),
            via: link,
        };
        match self.secgroup(eni, &p) {
            Err(o) => o,
            Ok(by) => self.alg_stage(class, dport, eip.is_some() && eni_addr != to, by),
        }
    }

    /// The section for connections to `to` arriving on `link`.
    fn inbound(&self, link: Link, to: Ipv4Addr) -> Inbound {
        let found = eip_stage::inbound(&mut Off, self.topo, &self.plan, link, to).ok();
        let (lo, hi) = match link {
            Link::Vpc => (
                self.topo.vpc_cidr.network().to_bits(),
                self.topo.vpc_cidr.broadcast().to_bits(),
            ),
            _ => (0, u32::MAX),
        };
        let mut nets = self.rule_nets();
        nets.extend(
            MARTIAN
                .iter()
                .map(|&(a, p)| Ipv4Network::new(a, p).expect("valid")),
        );
        let peers = cut(lo, hi, &nets);
        let lines = lines(self, &peers, |class, peer, dport| {
            let o = self.inbound_cell(link, to, class, peer, dport);
            let early = found.is_none() || o.reason == Some(DropReason::MartianSource.name());
            (early, vec![o])
        });
        Inbound {
            to,
            from: link,
            eni: found.map(|(e, _, _)| self.topo.eni(e).name.clone()),
            mode: found.and_then(|(_, eip, _)| eip.map(|id| self.topo.eip(id).mode.name())),
            delivered_to: found.map(|(_, _, a)| a),
            sources: vec![Span::new(lo, hi)],
            lines,
        }
    }

    /// One next hop of a new connection from `src` to `dst`: the hop and
    /// the outcome.
    fn hop(
        &self,
        eni: EniId,
        src: Ipv4Addr,
        class: ProtoClass,
        dst: Ipv4Addr,
        dport: u16,
    ) -> (Hop, Outcome) {
        let eni_addr = self.plan.select_source(eni, src);
        let via = if self.topo.vpc_cidr.contains(dst) {
            Link::Vpc
        } else {
            Link::Internet
        };
        let egress = eip_stage::outbound(&mut Off, self.topo, &self.plan, eni, eni_addr, dst);
        let hairpin = match &egress {
            Ok(e) if e.out == Link::Internet && self.plan.eip(dst).is_some() => Some(dst),
            _ => None,
        };
        let hop = Hop {
            eni: self.topo.eni(eni).name.clone(),
            source: eni_addr,
            out: egress.as_ref().ok().map(|e| e.out),
            public: egress.as_ref().ok().map(|e| e.pub_addr),
            mode: egress
                .as_ref()
                .ok()
                .and_then(|e| e.eip.map(|id: EipId| self.topo.eip(id).mode.name())),
            hairpin,
        };
        let p = Packet {
            dir: RuleDirection::Egress,
            proto: class.number(),
            peer: dst,
            port: l4_port(class, dport),
            via,
        };
        let by = match self.secgroup(eni, &p) {
            Err(o) => return (hop, o),
            Ok(by) => by,
        };
        let e = match egress {
            Err(v) => {
                let r = reason_of(v);
                let why = if r == DropReason::NoEip {
                    format!("{eni_addr} has no EIP toward the Internet")
                } else {
                    "a cut-through ENI has no private network".to_string()
                };
                return (hop, Outcome::dropped(r, why));
            }
            Ok(e) => e,
        };
        if let Err(v) = cloud::outbound(
            &mut Off,
            &self.topo.cloud,
            eni,
            &e,
            class.number(),
            dst,
            dport,
        ) {
            let r = reason_of(v);
            let why = if r == DropReason::SmtpPort25Blocked {
                "the cloud blocks TCP port 25 to the Internet ([cloud] smtp_port_25)"
            } else {
                "a cut-through EIP cannot reach 100.64.0.0/10 (since 2026-04-23)"
            };
            return (hop, Outcome::dropped(r, why.into()));
        }
        let mut o = self.alg_stage(class, dport, e.nat, by);
        if let (Some(h), true) = (hairpin, o.is_forwarded()) {
            // The packet comes back in on the Internet port to one of the
            // instance's own EIPs, from the address it left with.
            let back = self.inbound_cell(Link::Internet, h, class, e.pub_addr, dport);
            // The first pass's ALG drops first; the second's only if the
            // packet gets that far.
            let mut sports = o.alg_sports.clone();
            if back.is_forwarded() {
                sports.extend(back.alg_sports.iter().copied());
                sports.sort_unstable();
                sports.dedup();
            }
            o = Outcome {
                by: format!("hairpin to {h} from {}: {}", e.pub_addr, back.by),
                alg_sports: sports,
                ..back
            };
        }
        (hop, o)
    }

    /// The section for connections from `src`.
    fn outbound(&self, src: Ipv4Addr, eni_name: &str) -> Outbound {
        let mut nets = self.rule_nets();
        nets.extend(
            MARTIAN
                .iter()
                .map(|&(a, p)| Ipv4Network::new(a, p).expect("valid")),
        );
        nets.extend(self.topo.routes.iter().map(|r| r.dst));
        nets.push(self.topo.vpc_cidr);
        nets.push(CUT_THROUGH_UNREACHABLE);
        nets.extend(self.topo.eips.iter().map(|e| Ipv4Network::from(e.address)));
        let cells = cut(0, u32::MAX, &nets);
        // Group destinations by path: the route and what each hop makes of
        // the destination (VPC or Internet, hairpin).
        let mut by_path: BTreeMap<PathKey, Vec<Cell>> = BTreeMap::new();
        let mut order: Vec<PathKey> = Vec::new();
        for &(a, b) in &cells {
            let dst = Ipv4Addr::from_bits(a);
            let key = match self.early_out(dst) {
                Some(_) => (None, Vec::new()),
                None => match self.routes.lookup(src, dst) {
                    None => (None, Vec::new()),
                    Some(r) => (
                        Some(r.index),
                        r.nexthops
                            .iter()
                            .map(|&e| self.hop(e, src, ProtoClass::Tcp, dst, 0).0)
                            .collect(),
                    ),
                },
            };
            if !by_path.contains_key(&key) {
                order.push(key.clone());
            }
            by_path.entry(key).or_default().push((a, b));
        }
        let paths = order
            .into_iter()
            .map(|key| {
                let dsts = &by_path[&key];
                let (route, hops) = key;
                let lines = lines(self, dsts, |class, dst, dport| {
                    if let Some(o) = self.early_out(dst) {
                        return (true, vec![o]);
                    }
                    match self.routes.lookup(src, dst) {
                        None => (
                            true,
                            vec![Outcome::dropped(
                                DropReason::NoRoute,
                                format!("no route from {src}"),
                            )],
                        ),
                        Some(r) => (
                            false,
                            r.nexthops
                                .iter()
                                .map(|&e| self.hop(e, src, class, dst, dport).1)
                                .collect(),
                        ),
                    }
                });
                OutPath {
                    route: route.map(|i| self.topo.route_text(&self.topo.routes[i])),
                    to: merge_spans(dsts),
                    hops,
                    lines,
                }
            })
            .collect();
        Outbound {
            from: src,
            eni: eni_name.to_string(),
            paths,
        }
    }

    /// A destination dropped before the route table.
    fn early_out(&self, dst: Ipv4Addr) -> Option<Outcome> {
        if ip4_input::martian_destination(dst) {
            return Some(Outcome::dropped(
                DropReason::MartianDestination,
                "martian destination (RFC 1812 5.3.7)".into(),
            ));
        }
        if !ip4_input::is_unicast(dst) {
            return Some(Outcome::dropped(
                DropReason::NotUnicast,
                "not a unicast destination".into(),
            ));
        }
        None
    }
}

/// The lines of one section over the peer cells `peers`: `judge(class,
/// peer, dport)` gives the outcomes of one cell and whether they hold for
/// every protocol and port (an address dropped before any protocol is
/// looked at; such cells become lines for `all`).
fn lines(
    m: &Model,
    peers: &[(u32, u32)],
    judge: impl Fn(ProtoClass, Ipv4Addr, u16) -> (bool, Vec<Outcome>),
) -> Vec<Line> {
    // Peers that every protocol treats alike, by outcome.
    let mut early: Vec<Group> = Vec::new();
    let mut rest: Vec<(u32, u32)> = Vec::new();
    for &(a, b) in peers {
        let (all, o) = judge(ProtoClass::Tcp, Ipv4Addr::from_bits(a), 0);
        if all {
            match early.iter_mut().find(|(x, _)| *x == o) {
                Some((_, v)) => v.push((a, b)),
                None => early.push((o, vec![(a, b)])),
            }
        } else {
            rest.push((a, b));
        }
    }
    let mut out: Vec<Line> = early
        .into_iter()
        .map(|(outcomes, v)| Line {
            protocol: None,
            ports: None,
            peers: merge_spans(&v),
            outcomes,
        })
        .collect();
    if rest.is_empty() {
        return out;
    }
    for class in ProtoClass::ALL {
        let ports = m.port_cuts(class);
        // Rows: per port interval, the outcomes over `rest`; port
        // intervals with equal rows share lines.
        let mut rows: Vec<(Vec<Vec<Outcome>>, Vec<PortSpan>)> = Vec::new();
        for &p in &ports {
            let row: Vec<Vec<Outcome>> = rest
                .iter()
                .map(|&(a, _)| judge(class, Ipv4Addr::from_bits(a), p[0]).1)
                .collect();
            match rows.iter_mut().find(|(r, _)| *r == row) {
                Some((_, v)) => v.push(p),
                None => rows.push((row, vec![p])),
            }
        }
        for (row, port_set) in rows {
            let port_set = merge_ports(&port_set);
            let ports = (class.has_ports() && port_set != [[0, u16::MAX]]).then_some(port_set);
            let mut groups: Vec<Group> = Vec::new();
            for (o, &cell) in row.into_iter().zip(&rest) {
                match groups.iter_mut().find(|(x, _)| *x == o) {
                    Some((_, v)) => v.push(cell),
                    None => groups.push((o, vec![cell])),
                }
            }
            for (outcomes, v) in groups {
                out.push(Line {
                    protocol: Some(class),
                    ports: ports.clone(),
                    peers: merge_spans(&v),
                    outcomes,
                });
            }
        }
    }
    out
}

impl Reach {
    /// The answer as JSON (one object, the shape of [`Reach`]).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_print_as_cidr_or_range() {
        assert_eq!(Span::new(0, u32::MAX).to_string(), "0.0.0.0/0");
        assert_eq!(
            Span::new(0x0a00_0000, 0x0aff_ffff).to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            Span::new(0x0100_0000, 0x7eff_ffff).to_string(),
            "1.0.0.0-126.255.255.255"
        );
        assert_eq!(Span::new(5, 5).to_string(), "0.0.0.5/32");
    }

    #[test]
    fn cuts_cover_the_range_once() {
        let nets = [
            "10.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
            "0.0.0.0/0".parse().unwrap(),
        ];
        let c = cut(0, u32::MAX, &nets);
        assert_eq!(c.first().unwrap().0, 0);
        assert_eq!(c.last().unwrap().1, u32::MAX);
        assert!(c.windows(2).all(|w| w[0].1 + 1 == w[1].0));
        assert_eq!(c.len(), 5);
        let p = cut_ports(&[[25, 25], [0, 65535], [20, 30]]);
        assert_eq!(p, vec![[0, 19], [20, 24], [25, 25], [26, 30], [31, 65535]]);
    }
}
