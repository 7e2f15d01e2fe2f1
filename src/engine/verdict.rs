//! What the engine decided for a frame: the port it leaves on, or why not.

use crate::config::{EipId, EniId};

/// The three links of the simulated host, where frames enter and leave.
///
/// Users and files call them *ports* (`--in instance=...`, `in_port`,
/// `internet.pcap`); in the code they are links, so that they are never
/// confused with TCP/UDP ports (`sport`, `dport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// The instance's own network stack and applications.
    Instance,
    /// Everything beyond the EIPs.
    Internet,
    /// Other hosts of the instance's VPC.
    Vpc,
}

impl Link {
    /// All three, in index order.
    pub const ALL: [Link; 3] = [Link::Instance, Link::Internet, Link::Vpc];

    /// The port name users see: instance, internet, vpc.
    pub fn name(self) -> &'static str {
        match self {
            Link::Instance => "instance",
            Link::Internet => "internet",
            Link::Vpc => "vpc",
        }
    }

    /// The link a port name ([`Link::name`]) stands for; `None` for
    /// anything else (names are case-sensitive).
    pub fn from_name(s: &str) -> Option<Link> {
        Link::ALL.into_iter().find(|p| p.name() == s)
    }

    /// 0, 1 or 2, in [`Link::ALL`] order: the index of per-port arrays
    /// ([`crate::engine::PORT_MACS`], [`crate::engine::Counters::ports`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl serde::Serialize for Link {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Which way a packet crosses the host path, seen from the instance.
///
/// A packet received on [`Link::Instance`] is outbound; one received on
/// [`Link::Internet`] or [`Link::Vpc`] is inbound. Flows count packets and
/// bytes per direction (index `dir as usize`: 0 outbound, 1 inbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the instance towards the Internet or the VPC: the source is
    /// the instance endpoint, and is what NAT rewrites.
    Outbound = 0,
    /// From the Internet or the VPC to the instance: the destination is
    /// the instance endpoint.
    Inbound = 1,
}

impl Direction {
    /// The direction of a packet received on `port`.
    #[inline(always)]
    pub fn of(port: Link) -> Direction {
        if port == Link::Instance {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }

    /// True for [`Direction::Outbound`].
    #[inline(always)]
    pub fn is_outbound(self) -> bool {
        self == Direction::Outbound
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $why:literal;)*) => {
        /// Why a frame was dropped. The names are part of eipsim's interface
        /// (report.json, verdicts.jsonl): extend, never rename.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason { $(#[doc = $why] $variant),* }

        impl DropReason {
            /// Every reason, in declaration order (the order of reports).
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),*];
            /// The number of reasons: the length of
            /// [`crate::engine::Counters::drops`].
            pub const COUNT: usize = Self::ALL.len();

            /// The stable name used in reports.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name),* }
            }

            /// One sentence a cloud user understands.
            pub fn explain(self) -> &'static str {
                match self { $(DropReason::$variant => $why),* }
            }

            /// The reason with this [`DropReason::name`]; `None` for anything
            /// else.
            pub fn from_name(s: &str) -> Option<DropReason> {
                Self::ALL.iter().copied().find(|r| r.name() == s)
            }
        }
    };
}

drop_reasons! {
    UnsupportedEthertype => "unsupported_ethertype",
        "Only IPv4 and ARP are carried; other EtherTypes (IPv6, VLAN tags, ...) are dropped.";
    Malformed => "malformed",
        "The frame does not parse: truncated, a bad IHL or header checksum, or a length beyond the frame.";
    SpoofedSource => "spoofed_source",
        "The instance may only send from its own addresses: a private IP of an ENI or a cut-through EIP.";
    TtlExpired => "ttl_expired",
        "The host path is one hop and the packet arrived with TTL <= 1; an ICMP time exceeded goes back to the sender (RFC 1812 5.3.1), under the ICMP error rules.";
    NoRoute => "no_route",
        "No route of the instance route table matches the destination (and source).";
    SourceConflict => "source_conflict",
        "After source selection the packet would share its 5-tuple with another flow.";
    CutThroughNoPrivate => "cut_through_no_private",
        "A secondary ENI with a cut-through EIP has no private network features, so it cannot reach VPC addresses.";
    NoEip => "no_eip",
        "The private IP chosen as source has no EIP associated, so it cannot reach the Internet.";
    UnknownEip => "unknown_eip",
        "The destination is not an EIP associated with this instance.";
    NotLocal => "not_local",
        "The destination is not a private IP of an ENI that still has private networking.";
    AlgUnsupported => "alg_unsupported",
        "The protocol is not supported by the NAT ALG of an EIP in NAT mode; an EIP associated in cut-through mode (secondary ENIs, listed regions) carries it.";
    FlowTableFull => "flow_table_full",
        "The flow table is full and this new flow needs state (a source rewrite, a random pick or a reply path).";
    ArpNotOurs => "arp_not_ours",
        "The ARP request asks for an address this port does not stand for.";
    NotUnicast => "not_unicast",
        "Broadcast, multicast and unspecified destinations are not forwarded by the host path.";
    IcmpErrorNoFlow => "icmp_error_no_flow",
        "The ICMP error quotes no packet of a flow known at the address it was sent to, so it is dropped (RFC 5508 section 4.1).";
    FragmentOrphaned => "fragment_orphaned",
        "A fragment whose first fragment never arrived (or arrived too late) cannot be translated.";
    MtuExceeded => "mtu_exceeded",
        "The packet is larger than the egress port's MTU and has DF set; an ICMP fragmentation-needed goes back to the sender (RFC 1191), under the ICMP error rules.";
    MartianSource => "martian_source",
        "The source can be no host's: 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16 (link-local, RFC 3927 section 7), multicast 224.0.0.0/4, or 240.0.0.0/4 (RFC 1122 3.2.1.3, RFC 1812 5.3.7). No flow is created.";
    MartianDestination => "martian_destination",
        "The destination is never forwarded: 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, or 240.0.0.0/4 with 255.255.255.255 (RFC 1122 3.2.1.3, RFC 1812 5.3.7). No flow is created.";
    LinkBroadcast => "link_broadcast",
        "A unicast IPv4 packet arrived in an Ethernet broadcast or multicast frame, which a router does not forward (RFC 1812 5.3.4).";
    SecurityGroupDenied => "security_group_denied",
        "A security group of the ENI drops it: the first matching rule says drop, or no rule matches and the group type's default denies (basic: inbound; enterprise: both ways).";
    BandwidthExceeded => "bandwidth_exceeded",
        "The EIP's peak bandwidth that way (or its bandwidth plan's) is used up: the policer drops the excess.";
    SmtpPort25Blocked => "smtp_port_25_blocked",
        "The cloud blocks outbound TCP to port 25 on the Internet by default; security group rules cannot open it ([cloud] smtp_port_25 = \"allowed\" once unblocked).";
    EniDetached => "eni_detached",
        "The address belongs to an ENI that is detached from the instance (attached = false, or detach-eni): the instance neither sends from it nor receives on it.";
    CutThroughReservedCidr => "cut_through_reserved_cidr",
        "Since 2026-04-23 an EIP in cut-through mode cannot reach 100.64.0.0/10, the range reserved for the cloud's services; route it via the primary ENI.";
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome for one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The frame (rewritten in place) leaves on `port`.
    Forwarded {
        /// The port it leaves on.
        port: Link,
        /// The ENI it crossed (set on every forwarded IPv4 packet).
        eni: Option<EniId>,
        /// The EIP whose address it carries (NAT or cut-through); `None`
        /// on the VPC path.
        eip: Option<EipId>,
    },
    /// Handled by the engine itself (ARP). If `reply` is set, the frame was
    /// turned into the reply, to be sent on that port.
    Consumed {
        /// The port the reply goes out on (the one the request came in on).
        reply: Option<Link>,
    },
    /// Dropped; `eni` and `eip` are set when the decision got that far.
    Dropped {
        /// Why.
        reason: DropReason,
        /// The ENI the packet would have crossed, if chosen before the drop.
        eni: Option<EniId>,
        /// The EIP involved, if known before the drop.
        eip: Option<EipId>,
    },
    /// Forwarded as `pieces` fragments (the frame was larger than the
    /// egress port's MTU): they come from
    /// [`crate::engine::Engine::poll_transmit`]; the frame itself is not sent.
    Fragmented {
        /// The port the fragments leave on.
        port: Link,
        /// As for [`Verdict::Forwarded`].
        eni: Option<EniId>,
        /// As for [`Verdict::Forwarded`].
        eip: Option<EipId>,
        /// How many fragments were queued.
        pieces: u16,
    },
    /// A fragment kept until its first fragment decides its fate; it comes
    /// back from [`crate::engine::Engine::poll_released`].
    Held,
}

impl Verdict {
    pub(crate) fn drop(reason: DropReason) -> Verdict {
        Verdict::Dropped {
            reason,
            eni: None,
            eip: None,
        }
    }

    /// The ledger's word for it: `forwarded` (fragmented included),
    /// `consumed`, `dropped` or `held`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Forwarded { .. } | Verdict::Fragmented { .. } => "forwarded",
            Verdict::Consumed { .. } => "consumed",
            Verdict::Dropped { .. } => "dropped",
            Verdict::Held => "held",
        }
    }

    /// The port the frame's buffer is to be sent on, if it is sent as is
    /// (not for [`Verdict::Fragmented`]).
    pub fn sends_frame(&self) -> Option<Link> {
        match *self {
            Verdict::Forwarded { port, .. } => Some(port),
            Verdict::Consumed { reply } => reply,
            _ => None,
        }
    }

    /// The port the packet leaves on, if any.
    pub fn out_port(&self) -> Option<Link> {
        match *self {
            Verdict::Forwarded { port, .. } | Verdict::Fragmented { port, .. } => Some(port),
            Verdict::Consumed { reply } => reply,
            _ => None,
        }
    }

    /// The ENI of a forwarded, fragmented or dropped frame, if known.
    pub fn eni(&self) -> Option<EniId> {
        match *self {
            Verdict::Forwarded { eni, .. }
            | Verdict::Fragmented { eni, .. }
            | Verdict::Dropped { eni, .. } => eni,
            _ => None,
        }
    }

    /// The EIP of a forwarded, fragmented or dropped frame, if any.
    pub fn eip(&self) -> Option<EipId> {
        match *self {
            Verdict::Forwarded { eip, .. }
            | Verdict::Fragmented { eip, .. }
            | Verdict::Dropped { eip, .. } => eip,
            _ => None,
        }
    }

    /// The drop reason; `None` unless [`Verdict::Dropped`].
    pub fn reason(&self) -> Option<DropReason> {
        match *self {
            Verdict::Dropped { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
            assert!(DropReason::ALL[..i].iter().all(|o| o.name() != r.name()));
            assert!(r.explain().ends_with('.'));
        }
        for p in Link::ALL {
            assert_eq!(Link::from_name(p.name()), Some(p));
        }
    }
}
