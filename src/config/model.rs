//! The checked topology model: what [`Topology::from_toml`] builds and the
//! engine, the CLI and the reports read.
//!
//! Nothing here knows about TOML beyond the `Deserialize` derives that let
//! the file name the enums' variants directly.

use super::policy::{BandwidthPlan, CloudRules, GroupId, PlanId, SecurityGroup};
use ipnetwork::Ipv4Network;
use serde::Deserialize;
use std::net::Ipv4Addr;

/// The regions where cut-through mode exists: the seed's note under
/// "Association modes" (Hangzhou, Shanghai, Qingdao, Beijing, Zhangjiakou,
/// Hohhot, Shenzhen, Chengdu, Singapore, Jakarta, Frankfurt, London and
/// Virginia), as region IDs. A cut-through `[[eip]]` in any other region is
/// rejected.
pub const CUT_THROUGH_REGIONS: [&str; 13] = [
    "cn-hangzhou",
    "cn-shanghai",
    "cn-qingdao",
    "cn-beijing",
    "cn-zhangjiakou",
    "cn-huhehaote",
    "cn-shenzhen",
    "cn-chengdu",
    "ap-southeast-1",
    "ap-southeast-5",
    "eu-central-1",
    "eu-west-1",
    "us-east-1",
];

/// Index of an ENI in [`Topology::enis`], in file order (at most 65535 ENIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EniId(pub u16);

/// Index of an EIP in [`Topology::eips`], in file order (at most 65535 EIPs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EipId(pub u16);

/// How an EIP is associated with its ENI: the `mode` of an `[[eip]]`,
/// written `"nat"` or `"cut-through"` (the seed's two association modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssociationMode {
    /// 1:1 NAT between a private IP of the ENI and the EIP.
    Nat,
    /// The EIP is the ENI's own address; no translation, no private network.
    CutThrough,
}

impl AssociationMode {
    /// The name as written in the file: `"nat"` or `"cut-through"`.
    pub fn name(self) -> &'static str {
        match self {
            AssociationMode::Nat => "nat",
            AssociationMode::CutThrough => "cut-through",
        }
    }
}

/// How a route with several next hops picks one per flow: the `balance` of
/// a `[[route]]`, `"hash"` (the default) or `"random"` (the seed's FAQ:
/// routes through several ENIs, or a random ENI, to balance load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Weighted choice by a symmetric 5-tuple hash.
    #[default]
    Hash,
    /// A seeded random draw per new flow, remembered in the flow.
    Random,
}

impl Balance {
    /// The name as written in the file: `"hash"` or `"random"`.
    pub fn name(self) -> &'static str {
        match self {
            Balance::Hash => "hash",
            Balance::Random => "random",
        }
    }
}

/// Application protocols the NAT ALG may not support (the seed's
/// "Supported protocols" row), recognised by the engine's ALG stage by their
/// well-known ports; written in lower case in `[alg] unsupported` (`"h323"`,
/// `"sip"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgProtocol {
    /// H.323.
    H323,
    /// Session Initiation Protocol.
    Sip,
    /// Domain Name System.
    Dns,
    /// Real Time Streaming Protocol.
    Rtsp,
    /// Trivial File Transfer Protocol.
    Tftp,
    /// File Transfer Protocol: the seed names it only among the protocols
    /// cut-through supports, so it is not in the default list.
    Ftp,
}

impl AlgProtocol {
    /// Every protocol, in the order an unknown name's error message lists
    /// them.
    pub const ALL: [AlgProtocol; 6] = [
        AlgProtocol::H323,
        AlgProtocol::Sip,
        AlgProtocol::Dns,
        AlgProtocol::Rtsp,
        AlgProtocol::Tftp,
        AlgProtocol::Ftp,
    ];
    /// The seed's list: H.323, SIP, DNS, RTSP and TFTP.
    pub const DEFAULT_UNSUPPORTED: [AlgProtocol; 5] = [
        AlgProtocol::H323,
        AlgProtocol::Sip,
        AlgProtocol::Dns,
        AlgProtocol::Rtsp,
        AlgProtocol::Tftp,
    ];

    /// The name as written in the file, in lower case: `"h323"`, `"sip"`,
    /// `"dns"`, `"rtsp"`, `"tftp"` or `"ftp"`.
    pub fn name(self) -> &'static str {
        match self {
            AlgProtocol::H323 => "h323",
            AlgProtocol::Sip => "sip",
            AlgProtocol::Dns => "dns",
            AlgProtocol::Rtsp => "rtsp",
            AlgProtocol::Tftp => "tftp",
            AlgProtocol::Ftp => "ftp",
        }
    }

    /// The protocol of a [`AlgProtocol::name`]; `None` for anything else
    /// (names are case-sensitive).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// What the EIP stage does with a packet of an unsupported protocol: the
/// `[alg] action`, `"drop"` (the default) or `"forward"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlgAction {
    /// Dropped, and counted.
    #[default]
    Drop,
    /// Forwarded, but counted.
    Forward,
}

/// One `[[eni]]`: an elastic network interface of the instance.
#[derive(Debug, Clone)]
pub struct Eni {
    /// Its unique, non-empty name, as routes and EIPs refer to it (`"eth0"`).
    pub name: String,
    /// Whether it is the instance's primary ENI; exactly one is.
    pub primary: bool,
    /// At least one, all inside `vpc_cidr` and unique in the file.
    /// The first is the ENI's primary private IP.
    pub private_ips: Vec<Ipv4Addr>,
    /// The gateway of the ENI's vSwitch: the instance's next hop on this
    /// ENI, and the address eipsim sends ICMP errors to the instance from.
    /// `gateway` in the file; by default the address ending in .253 in the
    /// /24 of the primary private IP (the cloud reserves the first and the
    /// last three addresses of a vSwitch's CIDR block and answers as
    /// gateway on the third-last; eipsim does not know the vSwitch's
    /// prefix, so it assumes a /24).
    pub gateway: Ipv4Addr,
    /// The security groups it is in, 1 to 10 of one type, in file order;
    /// empty only when the file defines no `[[security_group]]` (then
    /// nothing is filtered).
    pub security_groups: Vec<GroupId>,
    /// Whether it is attached to the instance (`attached`, default true).
    /// A detached ENI exists in the VPC, keeps its private IPs and EIPs,
    /// but the instance neither has its addresses nor routes through it.
    /// The primary ENI is always attached.
    pub attached: bool,
    /// 1-based line of its `[[eni]]` header in the file.
    pub line: usize,
}

impl Eni {
    /// The ENI's primary private IP (the first of [`Eni::private_ips`]).
    pub fn primary_ip(&self) -> Ipv4Addr {
        self.private_ips[0]
    }
}

/// One `[[eip]]`: an elastic IP address associated with an ENI.
#[derive(Debug, Clone)]
pub struct Eip {
    /// The public address, outside `vpc_cidr` and unique in the file.
    pub address: Ipv4Addr,
    /// The ENI it is associated with.
    pub eni: EniId,
    /// NAT or cut-through.
    pub mode: AssociationMode,
    /// The private IP it maps to (NAT) or is bound to (cut-through).
    /// Defaults to the ENI's primary private IP when the file names none.
    pub private_ip: Ipv4Addr,
    /// Peak bandwidth toward the Internet, Mbit/s of IP bytes; `None`: no
    /// limit.
    pub bandwidth_mbps: Option<u32>,
    /// Peak bandwidth from the Internet, Mbit/s: `inbound_mbps` as given,
    /// else the cloud's rule from `bandwidth_mbps`
    /// ([`crate::config::default_inbound_mbps`]); `None`: no limit.
    pub inbound_mbps: Option<u32>,
    /// The Internet Shared Bandwidth plan it is in: the plan's limits then
    /// apply instead of its own.
    pub plan: Option<PlanId>,
    /// False once `unassociate-eip` has taken it off its ENI during a run:
    /// it keeps its [`EipId`] and its counters, but nothing else sees it
    /// (not the engine, not the checks, not [`Topology::to_toml`]). Always
    /// true in a file.
    pub associated: bool,
    /// 1-based line of its `[[eip]]` header in the file.
    pub line: usize,
}

/// One `[[route]]` of the instance's routing table, or the implied default.
#[derive(Debug, Clone)]
pub struct Route {
    /// The destination prefix (no host bits set); `0.0.0.0/0` is a default.
    pub dst: Ipv4Network,
    /// The source prefix a policy route applies to; `None` for any source.
    pub from: Option<Ipv4Network>,
    /// The next-hop ENIs, at least one, each at most once.
    pub via: Vec<EniId>,
    /// One weight per entry of `via`, each 1 to 65535 (all 1 if the file
    /// gives none).
    pub weights: Vec<u32>,
    /// How a flow picks one of several next hops.
    pub balance: Balance,
    /// Lower is preferred among routes for the same `dst` and `from`
    /// (the seed's FAQ: route priorities); 0 if the file gives none.
    pub metric: u32,
    /// The default route via the primary ENI that exists unless the file
    /// has a route for 0.0.0.0/0 (with or without `from`); `line` is 0.
    pub implied: bool,
    /// 1-based line of its `[[route]]` header in the file (0 if implied).
    pub line: usize,
}

/// The `[alg]` table: what the NAT ALG cannot handle and what happens then.
#[derive(Debug, Clone)]
pub struct AlgPolicy {
    /// The unsupported protocols, in file order without repeats; the seed's
    /// list ([`AlgProtocol::DEFAULT_UNSUPPORTED`]) if the file gives none.
    pub unsupported: Vec<AlgProtocol>,
    /// Drop (the default) or forward their packets.
    pub action: AlgAction,
}

/// The `[flow_table]` table: flow table size and idle timeouts, in seconds.
///
/// Defaults follow the NAT behaviour RFCs: TCP established 7440 s and
/// transitory 240 s (RFC 5382 REQ-5), UDP 300 s (RFC 4787 REQ-5: at least
/// 2 min, 5 min recommended), ICMP queries 60 s (RFC 5508 REQ-1).
#[derive(Debug, Clone, Copy)]
pub struct FlowTableConfig {
    /// The most flows the table holds at once, a number of flows (at least
    /// 1; default 1 000 000).
    pub capacity: usize,
    /// Idle timeout of an established TCP flow, in seconds (default 7440).
    pub tcp_established_timeout: u64,
    /// Idle timeout of a TCP flow that is opening or closing, in seconds
    /// (default 240).
    pub tcp_transitory_timeout: u64,
    /// Idle timeout of a UDP flow, in seconds (default 300).
    pub udp_timeout: u64,
    /// Idle timeout of an ICMP query flow, in seconds (default 60).
    pub icmp_timeout: u64,
    /// Idle timeout of a flow of any other protocol, in seconds
    /// (default 300).
    pub other_timeout: u64,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            capacity: 1_000_000,
            tcp_established_timeout: 7440,
            tcp_transitory_timeout: 240,
            udp_timeout: 300,
            icmp_timeout: 60,
            other_timeout: 300,
        }
    }
}

/// The `[icmp_errors]` table: how many ICMP errors (fragmentation needed,
/// time exceeded) eipsim sends per port, a token bucket (RFC 1812
/// 4.3.2.8). The defaults are Linux's `net.ipv4.icmp_msgs_per_sec` and
/// `icmp_msgs_burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpErrorConfig {
    /// Tokens added per second, errors (default 1000; 0 sends none).
    pub per_second: u32,
    /// The bucket's size, errors (default 50).
    pub burst: u32,
}

impl Default for IcmpErrorConfig {
    fn default() -> Self {
        IcmpErrorConfig {
            per_second: 1000,
            burst: 50,
        }
    }
}

/// A checked topology: every rule of the seed holds.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The region ID (`"cn-hangzhou"`); decides whether cut-through exists.
    pub region: String,
    /// The VPC's private range: ENI private IPs are inside, EIPs outside.
    pub vpc_cidr: Ipv4Network,
    /// Seed of the flow and route hashes and of the draws of
    /// `balance = "random"` (0 if the file gives none).
    pub hash_seed: u64,
    /// The ENIs in file order; [`EniId`] indexes this.
    pub enis: Vec<Eni>,
    /// The EIPs in file order; [`EipId`] indexes this.
    pub eips: Vec<Eip>,
    /// The routes in file order, then the implied default if there is one.
    pub routes: Vec<Route>,
    /// The NAT ALG policy.
    pub alg: AlgPolicy,
    /// Flow table size and timeouts.
    pub flow_table: FlowTableConfig,
    /// The ICMP error rate limit.
    pub icmp_errors: IcmpErrorConfig,
    /// The security groups in file order ([`GroupId`] indexes this); none:
    /// nothing is filtered.
    pub security_groups: Vec<SecurityGroup>,
    /// The Internet Shared Bandwidth plans ([`PlanId`] indexes this).
    pub bandwidth_plans: Vec<BandwidthPlan>,
    /// The `[cloud]` table.
    pub cloud: CloudRules,
}

impl Topology {
    /// The ENI with this ID. Panics on an ID not from this topology.
    pub fn eni(&self, id: EniId) -> &Eni {
        &self.enis[usize::from(id.0)]
    }

    /// The EIP with this ID. Panics on an ID not from this topology.
    pub fn eip(&self, id: EipId) -> &Eip {
        &self.eips[usize::from(id.0)]
    }

    /// The security group with this ID. Panics on an ID not from this
    /// topology.
    pub fn group(&self, id: GroupId) -> &SecurityGroup {
        &self.security_groups[usize::from(id.0)]
    }

    /// The bandwidth plan with this ID. Panics on an ID not from this
    /// topology.
    pub fn plan(&self, id: PlanId) -> &BandwidthPlan {
        &self.bandwidth_plans[usize::from(id.0)]
    }

    /// The ID of the EIP with this address, if there is one.
    pub fn eip_id(&self, address: Ipv4Addr) -> Option<EipId> {
        self.eips
            .iter()
            .position(|e| e.address == address)
            .map(|i| EipId(i as u16))
    }

    /// The ID of the ENI with this name, if there is one.
    pub fn eni_id(&self, name: &str) -> Option<EniId> {
        self.enis
            .iter()
            .position(|e| e.name == name)
            .map(|i| EniId(i as u16))
    }

    /// The cut-through EIP of an ENI, if it has one.
    pub fn cut_through_eip(&self, eni: EniId) -> Option<EipId> {
        self.eips
            .iter()
            .position(|e| e.associated && e.eni == eni && e.mode == AssociationMode::CutThrough)
            .map(|i| EipId(i as u16))
    }

    /// The EIPs associated with an ENI.
    pub fn eips_of(&self, eni: EniId) -> impl Iterator<Item = (EipId, &Eip)> {
        self.eips
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.associated && e.eni == eni)
            .map(|(i, e)| (EipId(i as u16), e))
    }

    /// The addresses the instance OS shows on an ENI: its private IPs, or,
    /// once a cut-through EIP is associated, that EIP alone (the seed: the
    /// EIP is shown and the private network features are gone).
    pub fn os_addresses(&self, eni: EniId) -> Vec<Ipv4Addr> {
        match self.cut_through_eip(eni) {
            Some(ct) => vec![self.eip(ct).address],
            None => self.eni(eni).private_ips.clone(),
        }
    }

    /// The seed's FAQ: an EIP on a secondary ENI is charged an instance fee.
    pub fn eip_instance_fee(&self, eip: EipId) -> bool {
        !self.eni(self.eip(eip).eni).primary
    }

    /// The short summary `eipsim check` prints: one line for the whole
    /// topology, then per ENI its OS addresses and EIPs, then the routes;
    /// every line ends in a newline.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "topology OK: region {}, VPC {}, {} ENI(s), {} EIP(s), {} route(s)",
            self.region,
            self.vpc_cidr,
            self.enis.len(),
            self.eips.len(),
            self.routes.len()
        );
        for (i, eni) in self.enis.iter().enumerate() {
            let id = EniId(i as u16);
            let addrs: Vec<String> = self
                .os_addresses(id)
                .iter()
                .map(|a| a.to_string())
                .collect();
            let _ = writeln!(
                s,
                "{} ({}{}): OS addresses {}{}",
                eni.name,
                if eni.primary { "primary" } else { "secondary" },
                if eni.attached {
                    ""
                } else {
                    ", detached: the OS has none of its addresses"
                },
                addrs.join(", "),
                if self.cut_through_eip(id).is_some() {
                    " (cut-through: no private network)"
                } else {
                    ""
                }
            );
            let mut any = false;
            for (eip_id, eip) in self.eips_of(id) {
                any = true;
                let target = match eip.mode {
                    AssociationMode::Nat => format!("-> {}", eip.private_ip),
                    AssociationMode::CutThrough => {
                        format!("(the ENI's own address, in place of {})", eip.private_ip)
                    }
                };
                let bandwidth = match (eip.plan, eip.bandwidth_mbps, eip.inbound_mbps) {
                    (Some(p), ..) => format!(
                        ", bandwidth: plan {:?} ({} Mbit/s shared)",
                        self.plan(p).name,
                        self.plan(p).mbps
                    ),
                    (None, None, None) => String::new(),
                    (None, out, inb) => {
                        let m =
                            |x: Option<u32>| x.map_or("no limit".into(), |v| format!("{v} Mbit/s"));
                        format!(", bandwidth: {} out, {} in", m(out), m(inb))
                    }
                };
                let _ = writeln!(
                    s,
                    "    EIP {} {} {target}, EIP instance fee: {}{bandwidth}",
                    eip.address,
                    eip.mode.name(),
                    if self.eip_instance_fee(eip_id) {
                        "yes"
                    } else {
                        "no"
                    }
                );
            }
            if !any {
                let _ = writeln!(s, "    no EIP");
            }
            if !eni.security_groups.is_empty() {
                let names: Vec<&str> = eni
                    .security_groups
                    .iter()
                    .map(|&g| self.group(g).name.as_str())
                    .collect();
                let _ = writeln!(s, "    security groups: {}", names.join(", "));
            }
        }
        for r in &self.routes {
            let _ = writeln!(s, "route {}", self.route_text(r));
        }
        // A default route for some sources only replaces the implied one
        // for all (as a file's own default does): say who is left without.
        for (i, eni) in self.enis.iter().enumerate().filter(|(_, e)| e.attached) {
            // The sources the OS has: a cut-through ENI's is its EIP.
            for ip in self.os_addresses(EniId(i as u16)) {
                let covered = self
                    .routes
                    .iter()
                    .any(|r| r.dst.prefix() == 0 && r.from.is_none_or(|f| f.contains(ip)));
                if !covered {
                    let _ = writeln!(
                        s,
                        "note: no default route applies to source {ip} ({}): its packets to the Internet are dropped as no_route unless a more specific route matches",
                        eni.name
                    );
                }
            }
        }
        for g in &self.security_groups {
            let _ = writeln!(
                s,
                "security group {} ({}{}): {} rule(s){}",
                g.name,
                g.kind.name(),
                if g.internal_isolation {
                    ", internal isolation"
                } else {
                    ""
                },
                g.rules.len(),
                if g.members.is_empty() {
                    String::new()
                } else {
                    let m: Vec<String> = g.members.iter().map(|n| n.to_string()).collect();
                    format!(", other members {}", m.join(", "))
                }
            );
        }
        if self.cloud.smtp_port_25 == super::policy::Smtp::Allowed {
            let _ = writeln!(s, "cloud: outbound TCP port 25 allowed");
        }
        s
    }

    /// A route in the style of `ip route`, on one line without a newline:
    /// `default nexthop dev eth0 weight 3 nexthop dev eth1 weight 1 balance
    /// hash metric 100`.
    pub fn route_text(&self, r: &Route) -> String {
        let dst = if r.dst.prefix() == 0 {
            "default".to_string()
        } else {
            r.dst.to_string()
        };
        let mut s = dst;
        if let Some(f) = r.from {
            s.push_str(&format!(" from {f}"));
        }
        if r.via.len() == 1 {
            s.push_str(&format!(" dev {}", self.eni(r.via[0]).name));
        } else {
            for (id, w) in r.via.iter().zip(&r.weights) {
                s.push_str(&format!(" nexthop dev {} weight {w}", self.eni(*id).name));
            }
            s.push_str(&format!(" balance {}", r.balance.name()));
        }
        s.push_str(&format!(" metric {}", r.metric));
        if r.implied {
            s.push_str(" (implied: the file has no default route)");
        }
        s
    }
}
