//! The security group table: for each ENI, the rules of all its groups
//! merged into one list per direction, sorted the way the cloud applies
//! them, and the judgement of one packet against it.
//!
//! The cloud's rules (README "Security groups" cites each):
//! - rules of all the ENI's groups are merged and sorted by priority
//!   (1 first); at equal priority a drop rule comes before an accept rule;
//!   the first rule that matches decides;
//! - in a basic group whose members may talk (`internal_isolation =
//!   false`, Alibaba's `InnerAccessPolicy = Accept`), traffic between
//!   members over the VPC is accepted before any rule is looked at ("the
//!   Accept internal access control policy takes precedence over
//!   user-created security group rules");
//! - when nothing matches, the group type's default: basic accepts egress
//!   and drops ingress, enterprise drops both.
//!
//! Being stateful (replies, and 910 s sessions) is the flow table's part:
//! see `stages/security_group.rs`.

use crate::config::{
    EniId, GroupId, GroupType, Peer, PortRange, RuleDirection, RulePolicy, RuleProtocol, Topology,
};
use crate::engine::Link;
use ipnetwork::Ipv4Network;
use serde::Serialize;
use std::net::Ipv4Addr;

/// The longest a security group session lives without a packet, ns: 910 s
/// (Alibaba Cloud, "Security group rules": "A session can last up to 910
/// seconds"). After that the next packet is judged again.
pub const SESSION_IDLE_NS: u64 = 910 * 1_000_000_000;

/// Whom a compiled rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMatch {
    /// Any address in the prefix, over either port.
    Cidr(Ipv4Network),
    /// The members of a group, over the VPC only.
    Members(GroupId, Vec<Ipv4Network>),
}

impl PeerMatch {
    /// Whether a packet from or to `peer`, crossing `via`, matches.
    #[inline]
    pub fn matches(&self, peer: Ipv4Addr, via: Link) -> bool {
        match self {
            PeerMatch::Cidr(n) => n.contains(peer),
            PeerMatch::Members(_, nets) => {
                via == Link::Vpc && nets.iter().any(|n| n.contains(peer))
            }
        }
    }
}

/// One rule of an ENI's merged list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The group it comes from.
    pub group: GroupId,
    /// Its index in that group's `rules`.
    pub rule: u16,
    /// 1 (highest) to 100.
    pub priority: u8,
    /// Accept or drop.
    pub policy: RulePolicy,
    /// The protocol it matches.
    pub protocol: RuleProtocol,
    /// Destination port ranges (`[PortRange::ALL]` without ports).
    pub ports: Vec<PortRange>,
    /// Whom it matches.
    pub peer: PeerMatch,
}

impl Compiled {
    /// Whether it matches the packet.
    #[inline]
    pub fn matches(&self, p: &Packet) -> bool {
        self.protocol.matches(p.proto)
            && (!self.protocol.has_ports()
                || self
                    .ports
                    .iter()
                    .any(|r| p.port.is_none_or(|x| r.contains(x))))
            && self.peer.matches(p.peer, p.via)
    }
}

/// What a packet is, as security group rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Packet {
    /// Arriving at the ENI (ingress) or leaving by it (egress).
    pub dir: RuleDirection,
    /// IP protocol number.
    pub proto: u8,
    /// The far end: the source of ingress traffic, the destination of
    /// egress traffic.
    pub peer: Ipv4Addr,
    /// The TCP/UDP destination port in the packet's own direction (the
    /// instance's port on ingress, the far end's on egress); `None` for
    /// other protocols.
    pub port: Option<u16>,
    /// The port the packet crosses outside the instance: `Internet` or
    /// `Vpc` (group peers and the intra-group policy are VPC-only).
    pub via: Link,
}

/// The decision for one packet, with what decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Judgement {
    /// The ENI's basic group `group` lets its members talk over the VPC.
    IntraGroup {
        /// The group, by index.
        #[serde(serialize_with = "ser_group")]
        group: GroupId,
    },
    /// The first matching rule: `rule` of `group`.
    Rule {
        /// The group, by index.
        #[serde(serialize_with = "ser_group")]
        group: GroupId,
        /// The rule's index in its group.
        rule: u16,
        /// What it says.
        #[serde(serialize_with = "ser_policy")]
        policy: RulePolicy,
    },
    /// No rule matched: the group type's default.
    Default {
        /// The ENI's group type.
        #[serde(serialize_with = "ser_kind")]
        kind: GroupType,
    },
}

fn ser_group<S: serde::Serializer>(g: &GroupId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(g.0)
}
fn ser_policy<S: serde::Serializer>(p: &RulePolicy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}
fn ser_kind<S: serde::Serializer>(k: &GroupType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.name())
}

impl Judgement {
    /// Whether the packet may pass, for a packet going `dir`.
    pub fn allows(self, dir: RuleDirection) -> bool {
        match self {
            Judgement::IntraGroup { .. } => true,
            Judgement::Rule { policy, .. } => policy == RulePolicy::Accept,
            Judgement::Default { kind } => kind == GroupType::Basic && dir == RuleDirection::Egress,
        }
    }
}

/// One ENI's policy.
#[derive(Debug, Clone, Default)]
pub struct EniPolicy {
    /// The type of its groups (all one type); basic if it has none.
    pub kind: GroupType,
    /// Ingress rules, in the order they are tried.
    pub ingress: Vec<Compiled>,
    /// Egress rules, in the order they are tried.
    pub egress: Vec<Compiled>,
    /// Its basic groups whose members may talk, with their members.
    pub intra: Vec<(GroupId, Vec<Ipv4Network>)>,
}

impl EniPolicy {
    /// The rules of one direction, in the order they are tried.
    pub fn rules(&self, dir: RuleDirection) -> &[Compiled] {
        match dir {
            RuleDirection::Ingress => &self.ingress,
            RuleDirection::Egress => &self.egress,
        }
    }

    /// The intra-group group that accepts a packet from or to `peer` over
    /// `via`, if any.
    pub fn intra_group(&self, peer: Ipv4Addr, via: Link) -> Option<GroupId> {
        if via != Link::Vpc {
            return None;
        }
        self.intra
            .iter()
            .find(|(_, nets)| nets.iter().any(|n| n.contains(peer)))
            .map(|(g, _)| *g)
    }
}

/// Every ENI's policy; off when the topology has no security group.
#[derive(Debug, Clone, Default)]
pub struct SecurityGroups {
    on: bool,
    enis: Vec<EniPolicy>,
}

impl SecurityGroups {
    /// Compiles the topology's groups.
    pub fn new(topo: &Topology) -> Self {
        if topo.security_groups.is_empty() {
            return SecurityGroups::default();
        }
        let members = |g: GroupId| -> Vec<Ipv4Network> {
            let mut v = topo.group(g).members.clone();
            for e in topo.enis.iter().filter(|e| e.security_groups.contains(&g)) {
                v.extend(e.private_ips.iter().map(|&ip| Ipv4Network::from(ip)));
            }
            v
        };
        let enis = topo
            .enis
            .iter()
            .map(|eni| {
                let mut all: Vec<(RuleDirection, Compiled)> = Vec::new();
                for &g in &eni.security_groups {
                    for (i, r) in topo.group(g).rules.iter().enumerate() {
                        let peer = match r.peer {
                            Peer::Cidr(n) => PeerMatch::Cidr(n),
                            Peer::Group(o) => PeerMatch::Members(o, members(o)),
                        };
                        let c = Compiled {
                            group: g,
                            rule: i as u16,
                            priority: r.priority,
                            policy: r.policy,
                            protocol: r.protocol,
                            ports: r.ports.clone(),
                            peer,
                        };
                        all.push((r.direction, c));
                    }
                }
                // Stable: among equals, group order then file order.
                all.sort_by_key(|(_, c)| (c.priority, c.policy != RulePolicy::Drop));
                let pick = |d: RuleDirection| -> Vec<Compiled> {
                    all.iter()
                        .filter(|(x, _)| *x == d)
                        .map(|(_, c)| c.clone())
                        .collect()
                };
                EniPolicy {
                    kind: eni
                        .security_groups
                        .first()
                        .map_or(GroupType::Basic, |&g| topo.group(g).kind),
                    ingress: pick(RuleDirection::Ingress),
                    egress: pick(RuleDirection::Egress),
                    intra: eni
                        .security_groups
                        .iter()
                        .filter(|&&g| {
                            let sg = topo.group(g);
                            sg.kind == GroupType::Basic && !sg.internal_isolation
                        })
                        .map(|&g| (g, members(g)))
                        .collect(),
                }
            })
            .collect();
        SecurityGroups { on: true, enis }
    }

    /// Whether the topology has security groups (else nothing is judged).
    #[inline(always)]
    pub fn on(&self) -> bool {
        self.on
    }

    /// One ENI's compiled policy.
    pub fn eni(&self, eni: EniId) -> &EniPolicy {
        &self.enis[usize::from(eni.0)]
    }

    /// The judgement of a packet crossing `eni`. Call only when
    /// [`SecurityGroups::on`].
    pub fn judge(&self, eni: EniId, p: &Packet) -> Judgement {
        let e = self.eni(eni);
        if let Some(group) = e.intra_group(p.peer, p.via) {
            return Judgement::IntraGroup { group };
        }
        match e.rules(p.dir).iter().find(|c| c.matches(p)) {
            Some(c) => Judgement::Rule {
                group: c.group,
                rule: c.rule,
                policy: c.policy,
            },
            None => Judgement::Default { kind: e.kind },
        }
    }
}
