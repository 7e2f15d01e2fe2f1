//! The checked model of the cloud's policies around the packet path:
//! security groups on ENIs, EIP bandwidth limits and Internet Shared
//! Bandwidth plans, and the cloud's own rules (`[cloud]`).
//!
//! README "Security groups, bandwidth and the cloud's rules" cites the
//! Alibaba Cloud documents each rule comes from.

use ipnetwork::Ipv4Network;
use serde::Deserialize;

/// Index of a group in [`crate::config::Topology::security_groups`], in
/// file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u16);

/// Index of a plan in [`crate::config::Topology::bandwidth_plans`], in
/// file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlanId(pub u16);

/// A security group's `type`: `"basic"` (the default) or `"enterprise"`.
/// The type decides what happens when no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GroupType {
    /// Inbound denied except from members of the same group over the VPC
    /// (unless `internal_isolation`), outbound allowed.
    #[default]
    Basic,
    /// Inbound and outbound denied; members never reach each other by
    /// default.
    Enterprise,
}

impl GroupType {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            GroupType::Basic => "basic",
            GroupType::Enterprise => "enterprise",
        }
    }
}

/// A rule's `direction`, seen from the ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleDirection {
    /// Traffic arriving at the ENI (from the Internet or the VPC).
    Ingress,
    /// Traffic leaving by the ENI.
    Egress,
}

impl RuleDirection {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            RuleDirection::Ingress => "ingress",
            RuleDirection::Egress => "egress",
        }
    }
}

/// A rule's `policy`: `"accept"` (the default) or `"drop"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RulePolicy {
    /// Let the packet, and its connection, through.
    #[default]
    Accept,
    /// Drop it (`security_group_denied`).
    Drop,
}

impl RulePolicy {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            RulePolicy::Accept => "accept",
            RulePolicy::Drop => "drop",
        }
    }
}

/// A rule's `protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    /// TCP (IP protocol 6), with port ranges.
    Tcp,
    /// UDP (17), with port ranges.
    Udp,
    /// ICMP (1), every type.
    Icmp,
    /// GRE (47).
    Gre,
    /// Every protocol.
    All,
}

impl RuleProtocol {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            RuleProtocol::Tcp => "tcp",
            RuleProtocol::Udp => "udp",
            RuleProtocol::Icmp => "icmp",
            RuleProtocol::Gre => "gre",
            RuleProtocol::All => "all",
        }
    }

    /// Whether a packet of IP protocol `proto` is this protocol's.
    #[inline]
    pub fn matches(self, proto: u8) -> bool {
        match self {
            RuleProtocol::Tcp => proto == 6,
            RuleProtocol::Udp => proto == 17,
            RuleProtocol::Icmp => proto == 1,
            RuleProtocol::Gre => proto == 47,
            RuleProtocol::All => true,
        }
    }

    /// TCP and UDP rules have port ranges; the others match every packet
    /// of their protocol.
    pub fn has_ports(self) -> bool {
        matches!(self, RuleProtocol::Tcp | RuleProtocol::Udp)
    }
}

/// An inclusive range of TCP/UDP destination ports, `"start/end"` in the
/// file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port, 1 to 65535 (0 only in the "all ports" range).
    pub start: u16,
    /// Last port, at least `start`.
    pub end: u16,
}

impl PortRange {
    /// Every port (`"-1/-1"` in the file).
    pub const ALL: PortRange = PortRange {
        start: 0,
        end: u16::MAX,
    };

    /// Whether `port` is in the range.
    #[inline]
    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == PortRange::ALL {
            f.write_str("-1/-1")
        } else {
            write!(f, "{}/{}", self.start, self.end)
        }
    }
}

/// Whom a rule is about: the source of ingress traffic, the destination of
/// egress traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// `cidr = "..."`: any address in the prefix, over the Internet or the
    /// VPC.
    Cidr(Ipv4Network),
    /// `group = "..."`: the members of a group (its `members` and the
    /// private IPs of the instance's ENIs in it), over the VPC only.
    Group(GroupId),
}

/// One `[[security_group.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgRule {
    /// Ingress or egress.
    pub direction: RuleDirection,
    /// Accept or drop.
    pub policy: RulePolicy,
    /// 1 (the highest) to 100; 1 if the file gives none.
    pub priority: u8,
    /// The protocol it matches.
    pub protocol: RuleProtocol,
    /// Destination port ranges (TCP/UDP); `[PortRange::ALL]` for the
    /// other protocols and for `"-1/-1"`.
    pub ports: Vec<PortRange>,
    /// The far end it matches.
    pub peer: Peer,
    /// Free text, shown by `trace`.
    pub description: String,
    /// 1-based line of its `[[security_group.rule]]` header.
    pub line: usize,
}

impl SgRule {
    /// `"22/22,443/443"`: the port ranges as the file writes them.
    pub fn ports_text(&self) -> String {
        let v: Vec<String> = self.ports.iter().map(|p| p.to_string()).collect();
        v.join(",")
    }
}

/// One `[[security_group]]`.
#[derive(Debug, Clone)]
pub struct SecurityGroup {
    /// Unique, non-empty.
    pub name: String,
    /// Basic or enterprise.
    pub kind: GroupType,
    /// Basic groups only: members may not reach each other over the VPC
    /// by default (Alibaba's `InnerAccessPolicy = Drop`).
    pub internal_isolation: bool,
    /// Other VPC hosts in the group (prefixes inside `vpc_cidr`); the
    /// instance's ENIs that name the group are members too.
    pub members: Vec<Ipv4Network>,
    /// Its rules, in file order.
    pub rules: Vec<SgRule>,
    /// 1-based line of its `[[security_group]]` header.
    pub line: usize,
}

/// One `[[bandwidth_plan]]`: an Internet Shared Bandwidth whose EIPs share
/// one limit each way.
#[derive(Debug, Clone)]
pub struct BandwidthPlan {
    /// Unique, non-empty.
    pub name: String,
    /// The shared peak bandwidth, Mbit/s (of IP bytes), each way.
    pub mbps: u32,
    /// Its EIPs (each in at most one plan).
    pub eips: Vec<crate::config::EipId>,
    /// 1-based line of its `[[bandwidth_plan]]` header.
    pub line: usize,
}

/// `[cloud] smtp_port_25`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Smtp {
    /// The cloud's default: TCP to port 25 on the Internet is dropped.
    #[default]
    Blocked,
    /// Unblocked on request.
    Allowed,
}

/// The `[cloud]` table: rules the cloud applies whatever the instance's
/// configuration says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloudRules {
    /// Outbound TCP to port 25 on the Internet.
    pub smtp_port_25: Smtp,
}

/// 100.64.0.0/10 (RFC 6598 shared address space): the cloud's services
/// live there, and an ENI in cut-through mode cannot reach it.
pub const CUT_THROUGH_UNREACHABLE: Ipv4Network =
    match Ipv4Network::new_checked(std::net::Ipv4Addr::new(100, 64, 0, 0), 10) {
        Some(n) => n,
        None => unreachable!(),
    };

/// The inbound peak bandwidth of an EIP whose file gives only
/// `bandwidth_mbps` (Mbit/s): see README "Bandwidth" for the cloud's rule.
pub fn default_inbound_mbps(outbound: u32) -> u32 {
    outbound.max(10)
}
