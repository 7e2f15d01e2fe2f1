//! The shapes of `eipsim reach`'s answer (and of its `--json`).

use crate::engine::{DropReason, Link};
use serde::Serialize;
use std::net::Ipv4Addr;

/// A protocol class: the protocols security group rules tell apart
/// (`tcp`, `udp`, `icmp`, `gre`; `other` is every other IP protocol, which
/// only a rule for `all` matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtoClass {
    /// TCP (6), with destination ports.
    Tcp,
    /// UDP (17), with destination ports.
    Udp,
    /// ICMP (1).
    Icmp,
    /// GRE (47).
    Gre,
    /// Any other IP protocol.
    Other,
}

impl ProtoClass {
    /// Every class, in the order `reach` prints them.
    pub const ALL: [ProtoClass; 5] = [
        ProtoClass::Tcp,
        ProtoClass::Udp,
        ProtoClass::Icmp,
        ProtoClass::Gre,
        ProtoClass::Other,
    ];

    /// The class of IP protocol `proto`.
    pub fn of(proto: u8) -> ProtoClass {
        match proto {
            6 => ProtoClass::Tcp,
            17 => ProtoClass::Udp,
            1 => ProtoClass::Icmp,
            47 => ProtoClass::Gre,
            _ => ProtoClass::Other,
        }
    }

    /// The IP protocol number judged for the class (`other`: 50, ESP;
    /// every protocol of the class is judged alike).
    pub fn number(self) -> u8 {
        match self {
            ProtoClass::Tcp => 6,
            ProtoClass::Udp => 17,
            ProtoClass::Icmp => 1,
            ProtoClass::Gre => 47,
            ProtoClass::Other => 50,
        }
    }

    /// The name `reach` prints.
    pub fn name(self) -> &'static str {
        match self {
            ProtoClass::Tcp => "tcp",
            ProtoClass::Udp => "udp",
            ProtoClass::Icmp => "icmp",
            ProtoClass::Gre => "gre",
            ProtoClass::Other => "other",
        }
    }

    /// TCP and UDP have destination ports that rules look at.
    pub fn has_ports(self) -> bool {
        matches!(self, ProtoClass::Tcp | ProtoClass::Udp)
    }
}

/// An inclusive range of IPv4 addresses. Serialises (and displays) as a
/// CIDR (`10.0.0.0/8`) when it is exactly one prefix, else as
/// `first-last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// The first address.
    pub first: Ipv4Addr,
    /// The last address (at least `first`).
    pub last: Ipv4Addr,
}

impl Span {
    pub(super) fn new(first: u32, last: u32) -> Span {
        Span {
            first: Ipv4Addr::from_bits(first),
            last: Ipv4Addr::from_bits(last),
        }
    }

    /// Whether `a` is in the range.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.first <= a && a <= self.last
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (self.first.to_bits(), self.last.to_bits());
        let size = u64::from(b - a) + 1;
        if size.is_power_of_two() && u64::from(a) % size == 0 {
            let prefix = 32 - size.trailing_zeros();
            write!(f, "{}/{prefix}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An inclusive range of destination ports, `[first, last]` in JSON.
pub type PortSpan = [u16; 2];

/// What happens to the first packet of a connection in one cell.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Outcome {
    /// `"forwarded"` or `"dropped"`.
    pub verdict: &'static str,
    /// The drop reason as `verdicts.jsonl` names it; `None` when forwarded.
    pub reason: Option<&'static str>,
    /// What decided, in words: the security group rule or default, the ALG
    /// protocol, the cloud's rule.
    pub by: String,
    /// Source ports that turn this outcome into an `alg_unsupported` drop
    /// (the NAT ALG recognises its protocols by either port; see
    /// `engine/alg.rs`); empty unless the path is NAT, the ALG action is
    /// drop and the protocol is TCP or UDP. Set on a drop only for a
    /// hairpin whose second pass drops what the first pass's ALG would
    /// have dropped already.
    pub alg_sports: Vec<u16>,
}

impl Outcome {
    pub(super) fn forwarded(by: String) -> Outcome {
        Outcome {
            verdict: "forwarded",
            reason: None,
            by,
            alg_sports: Vec::new(),
        }
    }

    pub(super) fn dropped(reason: DropReason, by: String) -> Outcome {
        Outcome {
            verdict: "dropped",
            reason: Some(reason.name()),
            by,
            alg_sports: Vec::new(),
        }
    }

    /// Whether the packet is forwarded.
    pub fn is_forwarded(&self) -> bool {
        self.reason.is_none()
    }

    /// `accept` or `drop REASON`, as the text prints it.
    pub fn short(&self) -> String {
        match self.reason {
            None => "accept".to_string(),
            Some(r) => format!("drop {r}"),
        }
    }
}

/// One line of the answer: the packets of `protocol` to `ports` from (or
/// to) `peers`, and what happens to them.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The protocol class; `None` (`"all"` in JSON) for a line about
    /// every protocol (addresses dropped before any protocol is looked at).
    #[serde(serialize_with = "ser_proto")]
    pub protocol: Option<ProtoClass>,
    /// Destination port ranges (TCP and UDP); `None`: every port, or a
    /// protocol without ports.
    pub ports: Option<Vec<PortSpan>>,
    /// The peer addresses: sources inbound, destinations outbound.
    pub peers: Vec<Span>,
    /// One outcome per next hop of the path (inbound: exactly one).
    pub outcomes: Vec<Outcome>,
}

fn ser_proto<S: serde::Serializer>(p: &Option<ProtoClass>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.map_or("all", ProtoClass::name))
}

impl Line {
    /// Whether a packet of IP protocol `proto` to `dport` with peer `peer`
    /// falls on this line.
    pub fn covers(&self, proto: u8, dport: u16, peer: Ipv4Addr) -> bool {
        let class = ProtoClass::of(proto);
        self.protocol.is_none_or(|p| p == class)
            && (!class.has_ports()
                || self
                    .ports
                    .as_ref()
                    .is_none_or(|v| v.iter().any(|r| r[0] <= dport && dport <= r[1])))
            && self.peers.iter().any(|s| s.contains(peer))
    }
}

/// Inbound: new connections to one address of the instance, from the
/// Internet (to an EIP) or from the VPC (to a private IP).
#[derive(Debug, Clone, Serialize)]
pub struct Inbound {
    /// The address connections are made to.
    pub to: Ipv4Addr,
    /// `internet` or `vpc`: the port they arrive on.
    pub from: Link,
    /// The ENI that receives them (`None`: the address is not served there).
    pub eni: Option<String>,
    /// `nat` or `cut-through` for an EIP; `None` for a private IP.
    pub mode: Option<&'static str>,
    /// The address the ENI carries (the private IP behind a NAT EIP).
    pub delivered_to: Option<Ipv4Addr>,
    /// The sources considered: every address from the Internet, the VPC's
    /// CIDR from the VPC.
    pub sources: Vec<Span>,
    /// The answer, line by line; lines do not overlap and cover every
    /// (protocol, port, source) once.
    pub lines: Vec<Line>,
}

/// One next hop of an outbound path: the ENI, the source it gives the
/// packet and the address the far side sees.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Hop {
    /// The ENI's name.
    pub eni: String,
    /// The source as the ENI carries it (after source selection).
    pub source: Ipv4Addr,
    /// Where the packet leaves: `internet` or `vpc`; `None` when the EIP
    /// stage drops it (no EIP, or the VPC from a cut-through ENI).
    pub out: Option<Link>,
    /// The source the far side sees (the EIP toward the Internet).
    pub public: Option<Ipv4Addr>,
    /// The EIP's mode when one is used: `nat` or `cut-through`.
    pub mode: Option<&'static str>,
    /// The instance's own EIP the packet comes back in to (hairpin), if
    /// the destination is one.
    pub hairpin: Option<Ipv4Addr>,
}

/// Outbound destinations from one source that take the same path.
#[derive(Debug, Clone, Serialize)]
pub struct OutPath {
    /// The route, as `ip route` writes it; `None` when the packet is
    /// dropped before the route table (martian or non-unicast
    /// destination) or no route matches.
    pub route: Option<String>,
    /// The destinations this path is for.
    pub to: Vec<Span>,
    /// The next hops, in the route's order; empty without a route.
    pub hops: Vec<Hop>,
    /// The answer; each line has one outcome per hop (one if no hop).
    pub lines: Vec<Line>,
}

/// Outbound: new connections from one address of the instance.
#[derive(Debug, Clone, Serialize)]
pub struct Outbound {
    /// The source address, as an application in the instance uses it.
    pub from: Ipv4Addr,
    /// The ENI whose address it is.
    pub eni: String,
    /// The paths, in the order of their first destination.
    pub paths: Vec<OutPath>,
}

/// The whole answer of `eipsim reach` (its `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct Reach {
    /// Whether the topology has security groups (without, nothing is
    /// filtered by them).
    pub security_groups: bool,
    /// Per EIP (from the Internet), then per private IP (from the VPC).
    pub inbound: Vec<Inbound>,
    /// Per address the instance OS shows on an ENI.
    pub outbound: Vec<Outbound>,
}
