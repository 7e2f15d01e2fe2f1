//! The topology file: one instance, its ENIs, EIPs, routes and ALG policy.
//!
//! Parsing is two steps. Serde reads the TOML into `Raw*` structs that keep
//! every entry's position ([`toml::Spanned`]); then [`Topology::from_toml`]
//! checks the product rules (the seed document) and reports *every*
//! violation with the entry and line it concerns, the way a compiler does.

use ipnetwork::Ipv4Network;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use toml::Spanned;

/// The regions where cut-through mode exists (the seed's note).
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

/// Index of an ENI in [`Topology::enis`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EniId(pub u16);

/// Index of an EIP in [`Topology::eips`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EipId(pub u16);

/// How an EIP is associated with its ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssociationMode {
    /// 1:1 NAT between a private IP of the ENI and the EIP.
    Nat,
    /// The EIP is the ENI's own address; no translation, no private network.
    CutThrough,
}

impl AssociationMode {
    pub fn name(self) -> &'static str {
        match self {
            AssociationMode::Nat => "nat",
            AssociationMode::CutThrough => "cut-through",
        }
    }
}

/// How a route with several next hops picks one per flow.
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
    pub fn name(self) -> &'static str {
        match self {
            Balance::Hash => "hash",
            Balance::Random => "random",
        }
    }
}

/// Application protocols the NAT ALG may not support, by well-known port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgProtocol {
    H323,
    Sip,
    Dns,
    Rtsp,
    Tftp,
    Ftp,
}

impl AlgProtocol {
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

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// What the EIP stage does with a packet of an unsupported protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlgAction {
    #[default]
    Drop,
    /// Forwarded, but counted.
    Forward,
}

#[derive(Debug, Clone)]
pub struct Eni {
    pub name: String,
    pub primary: bool,
    /// The first is the ENI's primary private IP.
    pub private_ips: Vec<Ipv4Addr>,
    pub line: usize,
}

impl Eni {
    pub fn primary_ip(&self) -> Ipv4Addr {
        self.private_ips[0]
    }
}

#[derive(Debug, Clone)]
pub struct Eip {
    pub address: Ipv4Addr,
    pub eni: EniId,
    pub mode: AssociationMode,
    /// The private IP it maps to (NAT) or is bound to (cut-through).
    pub private_ip: Ipv4Addr,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub dst: Ipv4Network,
    pub from: Option<Ipv4Network>,
    pub via: Vec<EniId>,
    pub weights: Vec<u32>,
    pub balance: Balance,
    pub metric: u32,
    /// The default route via the primary ENI that exists unless the file
    /// has a route for 0.0.0.0/0 (with or without `from`); `line` is 0.
    pub implied: bool,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct AlgPolicy {
    pub unsupported: Vec<AlgProtocol>,
    pub action: AlgAction,
}

/// Flow table size and idle timeouts (seconds).
///
/// Defaults follow the NAT behaviour RFCs: TCP established 7440 s and
/// transitory 240 s (RFC 5382 REQ-5), UDP 300 s (RFC 4787 REQ-5: at least
/// 2 min, 5 min recommended), ICMP queries 60 s (RFC 5508 REQ-1).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowTableConfig {
    pub capacity: usize,
    pub tcp_established_timeout: u64,
    pub tcp_transitory_timeout: u64,
    pub udp_timeout: u64,
    pub icmp_timeout: u64,
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

/// A checked topology: every rule of the seed holds.
#[derive(Debug, Clone)]
pub struct Topology {
    pub region: String,
    pub vpc_cidr: Ipv4Network,
    pub hash_seed: u64,
    pub enis: Vec<Eni>,
    pub eips: Vec<Eip>,
    pub routes: Vec<Route>,
    pub alg: AlgPolicy,
    pub flow_table: FlowTableConfig,
}

/// One violation of the topology rules, or a parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line of the offending entry (0 if it has none).
    pub line: usize,
    /// The entry, as a user would name it: `[[eip]] 203.0.113.10`.
    pub entry: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if !self.entry.is_empty() {
            write!(f, "{}: ", self.entry)?;
        }
        f.write_str(&self.message)
    }
}

/// All the errors found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    region: Spanned<String>,
    vpc_cidr: Spanned<String>,
    #[serde(default)]
    hash_seed: u64,
    #[serde(default)]
    eni: Vec<Spanned<RawEni>>,
    #[serde(default)]
    eip: Vec<Spanned<RawEip>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    alg: Option<Spanned<RawAlg>>,
    #[serde(default)]
    flow_table: FlowTableConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEni {
    name: String,
    #[serde(default)]
    primary: bool,
    private_ips: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEip {
    address: Spanned<String>,
    eni: Spanned<String>,
    mode: AssociationMode,
    private_ip: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    dst: Spanned<String>,
    via: Spanned<OneOrMany>,
    weights: Option<Spanned<Vec<i64>>>,
    #[serde(default)]
    balance: Balance,
    #[serde(default)]
    metric: u32,
    from: Option<Spanned<String>>,
}

/// `via = "eth0"` or `via = ["eth0", "eth1"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlg {
    unsupported: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    action: AlgAction,
}

/// Maps byte offsets to 1-based line numbers.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(
            text.char_indices()
                .filter(|&(_, c)| c == '\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }
    fn of<T>(&self, s: &Spanned<T>) -> usize {
        self.0.partition_point(|&nl| nl < s.span().start) + 1
    }
}

struct Checker<'a> {
    lines: &'a Lines,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn err(&mut self, line: usize, entry: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line,
            entry: entry.into(),
            message: message.into(),
        });
    }

    fn ip(&mut self, s: &Spanned<String>, entry: &str, what: &str) -> Option<Ipv4Addr> {
        match s.get_ref().parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let line = self.lines.of(s);
                self.err(
                    line,
                    entry,
                    format!("{what} {:?} is not an IPv4 address", s.get_ref()),
                );
                None
            }
        }
    }

    fn cidr(&mut self, s: &Spanned<String>, entry: &str, what: &str) -> Option<Ipv4Network> {
        let text = s.get_ref();
        let parsed = text.parse::<Ipv4Network>().ok().filter(|n| {
            // Reject host bits: "10.0.0.1/8" is almost always a typo.
            n.network() == n.ip() && text.contains('/')
        });
        if parsed.is_none() {
            let line = self.lines.of(s);
            self.err(
                line,
                entry,
                format!(
                    "{what} {text:?} is not a CIDR prefix like \"172.16.0.0/12\" (no host bits set)"
                ),
            );
        }
        parsed
    }
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Topology, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError {
                line: 0,
                entry: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Topology::from_toml(&text).map_err(|errors| ConfigErrors { file, errors })
    }

    /// Parses and checks a topology; returns every violation found.
    pub fn from_toml(text: &str) -> Result<Topology, Vec<ConfigError>> {
        let lines = Lines::new(text);
        let raw: RawTopology = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let line = e
                    .span()
                    .map(|s| lines.0.partition_point(|&nl| nl < s.start) + 1)
                    .unwrap_or(0);
                return Err(vec![ConfigError {
                    line,
                    entry: String::new(),
                    message: e.message().trim_end().to_string(),
                }]);
            }
        };
        let mut c = Checker {
            lines: &lines,
            errors: Vec::new(),
        };

        // Region and VPC.
        let region = raw.region.get_ref().clone();
        let parsed_vpc = c.cidr(&raw.vpc_cidr, "vpc_cidr", "vpc_cidr");
        // Without a valid VPC range, inside/outside checks would only add
        // false errors; they are skipped.
        let vpc_ok = parsed_vpc.is_some();
        let vpc_cidr =
            parsed_vpc.unwrap_or_else(|| Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).unwrap());

        // ENIs.
        let mut enis: Vec<Eni> = Vec::new();
        let mut eni_by_name: HashMap<String, EniId> = HashMap::new();
        // Every address in the file, for the uniqueness rule.
        let mut addr_owner: HashMap<Ipv4Addr, (String, usize)> = HashMap::new();
        let mut primaries = Vec::new();
        for raw_eni in &raw.eni {
            let line = lines.of(raw_eni);
            let e = raw_eni.get_ref();
            let entry = format!("[[eni]] {:?}", e.name);
            if e.name.is_empty() {
                c.err(line, &entry, "the ENI name is empty");
            }
            if let Some(&other) = eni_by_name.get(&e.name) {
                let first = enis[usize::from(other.0)].line;
                c.err(
                    line,
                    &entry,
                    format!("duplicate ENI name (first defined on line {first})"),
                );
                continue;
            }
            if e.private_ips.is_empty() {
                c.err(
                    line,
                    &entry,
                    "an ENI needs at least one private IP (the first is its primary private IP)",
                );
            }
            let mut ips = Vec::new();
            for s in &e.private_ips {
                let Some(ip) = c.ip(s, &entry, "private IP") else {
                    continue;
                };
                let l = lines.of(s);
                if vpc_ok && !vpc_cidr.contains(ip) {
                    c.err(
                        l,
                        &entry,
                        format!("private IP {ip} is outside vpc_cidr {vpc_cidr}"),
                    );
                }
                if let Some((who, at)) = addr_owner.get(&ip) {
                    c.err(
                        l,
                        &entry,
                        format!("address {ip} is already used by {who} on line {at}"),
                    );
                } else {
                    addr_owner.insert(ip, (entry.clone(), l));
                }
                ips.push(ip);
            }
            if e.primary {
                primaries.push((e.name.clone(), line));
            }
            if enis.len() >= usize::from(u16::MAX) {
                c.err(line, &entry, "too many ENIs");
                break;
            }
            eni_by_name.insert(e.name.clone(), EniId(enis.len() as u16));
            enis.push(Eni {
                name: e.name.clone(),
                primary: e.primary,
                private_ips: ips,
                line,
            });
        }
        match primaries.len() {
            1 => {}
            0 => c.err(
                lines.of(&raw.region).max(1),
                "[[eni]]",
                "no ENI has primary = true: exactly one primary ENI is required",
            ),
            _ => {
                for (name, line) in &primaries[1..] {
                    c.err(
                        *line,
                        format!("[[eni]] {name:?}"),
                        format!(
                            "a second primary ENI ({:?} on line {} is primary): exactly one is allowed",
                            primaries[0].0, primaries[0].1
                        ),
                    );
                }
            }
        }

        // EIPs.
        let mut eips: Vec<Eip> = Vec::new();
        for raw_eip in &raw.eip {
            let line = lines.of(raw_eip);
            let e = raw_eip.get_ref();
            let entry = format!("[[eip]] {}", e.address.get_ref());
            let Some(address) = c.ip(&e.address, &entry, "address") else {
                continue;
            };
            if vpc_ok && vpc_cidr.contains(address) {
                c.err(
                    line,
                    &entry,
                    format!("an EIP must be a public address outside vpc_cidr {vpc_cidr}"),
                );
            }
            if let Some((who, at)) = addr_owner.get(&address) {
                c.err(
                    line,
                    &entry,
                    format!("address {address} is already used by {who} on line {at}"),
                );
                continue;
            }
            addr_owner.insert(address, (entry.clone(), line));
            if eips.len() >= usize::from(u16::MAX) {
                c.err(line, &entry, "too many EIPs (at most 65535)");
                break;
            }
            let Some(&eni_id) = eni_by_name.get(e.eni.get_ref()) else {
                let l = lines.of(&e.eni);
                c.err(l, &entry, format!("no ENI is named {:?}", e.eni.get_ref()));
                continue;
            };
            let eni = &enis[usize::from(eni_id.0)];
            let Some(&primary_ip) = eni.private_ips.first() else {
                continue;
            };
            let private_ip = match &e.private_ip {
                None => primary_ip,
                Some(s) => {
                    let Some(ip) = c.ip(s, &entry, "private_ip") else {
                        continue;
                    };
                    if !eni.private_ips.contains(&ip) {
                        let l = lines.of(s);
                        c.err(
                            l,
                            &entry,
                            format!("private_ip {ip} is not a private IP of ENI {:?}", eni.name),
                        );
                        continue;
                    }
                    ip
                }
            };
            let others: Vec<&Eip> = eips.iter().filter(|o| o.eni == eni_id).collect();
            match e.mode {
                AssociationMode::Nat => {
                    if let Some(ct) = others
                        .iter()
                        .find(|o| o.mode == AssociationMode::CutThrough)
                    {
                        c.err(line, &entry, format!(
                            "ENI {:?} already has EIP {} in cut-through mode (line {}): a cut-through ENI carries exactly one EIP",
                            eni.name, ct.address, ct.line));
                    } else if eni.primary && !others.is_empty() {
                        c.err(line, &entry, format!(
                            "NAT on the primary ENI {:?} allows at most 1 EIP; it already has {} (line {})",
                            eni.name, others[0].address, others[0].line));
                    } else if let Some(o) = others.iter().find(|o| o.private_ip == private_ip) {
                        c.err(line, &entry, format!(
                            "private IP {private_ip} of ENI {:?} is already mapped to EIP {} (line {}): on a secondary ENI each EIP needs a distinct private IP",
                            eni.name, o.address, o.line));
                    }
                }
                AssociationMode::CutThrough => {
                    if eni.primary {
                        c.err(line, &entry, format!(
                            "cut-through mode is for secondary ENIs only; {:?} is the primary ENI", eni.name));
                    }
                    if let Some(o) = others.first() {
                        c.err(line, &entry, format!(
                            "ENI {:?} already has EIP {} (line {}): in cut-through mode an ENI carries exactly one EIP",
                            eni.name, o.address, o.line));
                    }
                    if private_ip != primary_ip {
                        c.err(line, &entry, format!(
                            "cut-through binds the EIP to the ENI's primary private IP {primary_ip}, not {private_ip}"));
                    }
                    if !CUT_THROUGH_REGIONS.contains(&region.as_str()) {
                        c.err(line, &entry, format!(
                            "cut-through mode is not available in region {region:?}; it exists in: {}",
                            CUT_THROUGH_REGIONS.join(", ")));
                    }
                }
            }
            eips.push(Eip {
                address,
                eni: eni_id,
                mode: e.mode,
                private_ip,
                line,
            });
        }

        // Routes.
        let mut routes = Vec::new();
        for raw_route in &raw.route {
            let line = lines.of(raw_route);
            let r = raw_route.get_ref();
            let entry = format!("[[route]] {}", r.dst.get_ref());
            let dst = c.cidr(&r.dst, &entry, "dst");
            let from = match &r.from {
                Some(s) => c.cidr(s, &entry, "from").map(Some),
                None => Some(None),
            };
            let names: Vec<String> = match r.via.get_ref() {
                OneOrMany::One(s) => vec![s.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            let via_line = lines.of(&r.via);
            if names.is_empty() {
                c.err(via_line, &entry, "via names no ENI");
            }
            let mut via = Vec::new();
            for n in &names {
                match eni_by_name.get(n) {
                    Some(&id) if via.contains(&id) => c.err(
                        via_line,
                        &entry,
                        format!("ENI {n:?} appears twice in via; use weights instead"),
                    ),
                    Some(&id) => via.push(id),
                    None => c.err(
                        via_line,
                        &entry,
                        format!("via names {n:?}, which is not an ENI"),
                    ),
                }
            }
            let weights: Vec<u32> = match &r.weights {
                None => vec![1; names.len()],
                Some(w) => {
                    let wl = lines.of(w);
                    if w.get_ref().len() != names.len() {
                        c.err(
                            wl,
                            &entry,
                            format!(
                                "weights has {} entries but via has {}",
                                w.get_ref().len(),
                                names.len()
                            ),
                        );
                    }
                    w.get_ref()
                        .iter()
                        .map(|&x| {
                            if x <= 0 || x > i64::from(u16::MAX) {
                                c.err(
                                    wl,
                                    &entry,
                                    format!("weight {x} must be a positive integer up to 65535"),
                                );
                                1
                            } else {
                                x as u32
                            }
                        })
                        .collect()
                }
            };
            if let (Some(dst), Some(from)) = (dst, from)
                && via.len() == names.len()
                && weights.len() == via.len()
            {
                routes.push(Route {
                    dst,
                    from,
                    via,
                    weights,
                    balance: r.balance,
                    metric: r.metric,
                    implied: false,
                    line,
                });
            }
        }
        // Two routes the lookup could not tell apart.
        for (i, a) in routes.iter().enumerate() {
            if let Some(b) = routes[..i]
                .iter()
                .find(|b| b.dst == a.dst && b.from == a.from && b.metric == a.metric)
            {
                c.err(a.line, format!("[[route]] {}", a.dst), format!(
                    "same dst, from and metric as the route on line {}: give one a different metric", b.line));
            }
        }
        // Any route for 0.0.0.0/0, with or without `from`, means the file
        // routes the default itself.
        let routes_default = routes.iter().any(|r| r.dst.prefix() == 0);
        if !routes_default && let Some(p) = enis.iter().position(|e| e.primary) {
            routes.push(Route {
                dst: Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).unwrap(),
                from: None,
                via: vec![EniId(p as u16)],
                weights: vec![1],
                balance: Balance::Hash,
                metric: 0,
                implied: true,
                line: 0,
            });
        }

        // ALG.
        let mut alg = AlgPolicy {
            unsupported: AlgProtocol::DEFAULT_UNSUPPORTED.to_vec(),
            action: AlgAction::Drop,
        };
        if let Some(a) = &raw.alg {
            alg.action = a.get_ref().action;
            if let Some(list) = &a.get_ref().unsupported {
                alg.unsupported.clear();
                for s in list {
                    match AlgProtocol::from_name(s.get_ref()) {
                        Some(p) if !alg.unsupported.contains(&p) => alg.unsupported.push(p),
                        Some(_) => {}
                        None => {
                            let l = lines.of(s);
                            let known: Vec<_> = AlgProtocol::ALL.iter().map(|p| p.name()).collect();
                            c.err(
                                l,
                                "[alg]",
                                format!(
                                    "unknown ALG protocol {:?}; known: {}",
                                    s.get_ref(),
                                    known.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
        }

        if raw.flow_table.capacity == 0 {
            c.err(0, "[flow_table]", "capacity must be at least 1");
        }

        if !c.errors.is_empty() {
            c.errors.sort_by_key(|e| e.line);
            return Err(c.errors);
        }
        Ok(Topology {
            region,
            vpc_cidr,
            hash_seed: raw.hash_seed,
            enis,
            eips,
            routes,
            alg,
            flow_table: raw.flow_table,
        })
    }

    pub fn eni(&self, id: EniId) -> &Eni {
        &self.enis[usize::from(id.0)]
    }

    pub fn eip(&self, id: EipId) -> &Eip {
        &self.eips[usize::from(id.0)]
    }

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
            .position(|e| e.eni == eni && e.mode == AssociationMode::CutThrough)
            .map(|i| EipId(i as u16))
    }

    /// The EIPs associated with an ENI.
    pub fn eips_of(&self, eni: EniId) -> impl Iterator<Item = (EipId, &Eip)> {
        self.eips
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.eni == eni)
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

    /// The short summary `eipsim check` prints.
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
                "{} ({}): OS addresses {}{}",
                eni.name,
                if eni.primary { "primary" } else { "secondary" },
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
                let _ = writeln!(
                    s,
                    "    EIP {} {} {target}, EIP instance fee: {}",
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
        }
        for r in &self.routes {
            let _ = writeln!(s, "route {}", self.route_text(r));
        }
        s
    }

    /// A route in the style of `ip route`.
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
region = "cn-hangzhou"
vpc_cidr = "172.16.0.0/12"

[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]

[[eni]]
name = "eth1"
private_ips = ["172.16.1.10", "172.16.1.11"]

[[eni]]
name = "eth2"
private_ips = ["172.16.2.10"]

[[eip]]
address = "203.0.113.10"
eni = "eth0"
mode = "nat"

[[eip]]
address = "203.0.113.11"
eni = "eth1"
mode = "nat"
private_ip = "172.16.1.11"

[[eip]]
address = "203.0.113.12"
eni = "eth2"
mode = "cut-through"
"#;

    fn errors(text: &str) -> Vec<ConfigError> {
        Topology::from_toml(text).expect_err("should be rejected")
    }

    #[test]
    fn accepts_the_example() {
        let t = Topology::from_toml(GOOD).unwrap();
        assert_eq!(t.enis.len(), 3);
        assert_eq!(t.eips[0].private_ip, Ipv4Addr::new(172, 16, 0, 10));
        assert_eq!(t.eips[1].private_ip, Ipv4Addr::new(172, 16, 1, 11));
        // Implied default route via the primary ENI.
        assert_eq!(t.routes.len(), 1);
        assert!(t.routes[0].implied);
        assert_eq!(t.routes[0].via, vec![EniId(0)]);
        assert_eq!(
            t.os_addresses(EniId(2)),
            vec![Ipv4Addr::new(203, 0, 113, 12)]
        );
        assert!(!t.eip_instance_fee(EipId(0)));
        assert!(t.eip_instance_fee(EipId(1)));
        let s = t.summary();
        assert!(
            s.contains("eth2 (secondary): OS addresses 203.0.113.12"),
            "{s}"
        );
        assert!(
            s.contains("EIP 203.0.113.10 nat -> 172.16.0.10, EIP instance fee: no"),
            "{s}"
        );
    }

    #[test]
    fn reports_every_violation_with_its_line() {
        let text = GOOD.to_string()
            + r#"
[[eip]]
address = "203.0.113.13"
eni = "eth0"
mode = "nat"

[[eip]]
address = "172.16.9.9"
eni = "eth2"
mode = "cut-through"

[[route]]
dst = "0.0.0.0/0"
via = ["eth0", "eth9"]
weights = [1, 0]
"#;
        let errs = errors(&text);
        let joined: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let all = joined.join("\n");
        // Line numbers: the appended [[eip]] starts at GOOD's line count + 2.
        let base = GOOD.lines().count();
        assert!(
            all.contains(&format!(
                "line {}: [[eip]] 203.0.113.13: NAT on the primary ENI",
                base + 2
            )),
            "{all}"
        );
        assert!(
            all.contains("172.16.9.9: an EIP must be a public address outside vpc_cidr"),
            "{all}"
        );
        assert!(all.contains("already has EIP 203.0.113.12"), "{all}");
        assert!(
            all.contains("via names \"eth9\", which is not an ENI"),
            "{all}"
        );
        assert!(all.contains("weight 0 must be a positive integer"), "{all}");
    }

    #[test]
    fn cut_through_rules() {
        let text = GOOD.replace("region = \"cn-hangzhou\"", "region = \"cn-wulanchabu\"")
            + "\n[[eip]]\naddress = \"198.51.100.1\"\neni = \"eth0\"\nmode = \"cut-through\"\n";
        let all: Vec<String> = errors(&text).iter().map(|e| e.to_string()).collect();
        let all = all.join("\n");
        assert!(
            all.contains("not available in region \"cn-wulanchabu\""),
            "{all}"
        );
        assert!(all.contains("secondary ENIs only"), "{all}");
        let text = GOOD.replace(
            "mode = \"cut-through\"",
            "mode = \"cut-through\"\nprivate_ip = \"172.16.2.10\"",
        );
        assert!(Topology::from_toml(&text).is_ok());
    }

    #[test]
    fn one_primary_and_unique_names() {
        let text = GOOD.replace("name = \"eth2\"", "name = \"eth1\"");
        let all = errors(&text)
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("duplicate ENI name"), "{all}");
        let text = GOOD.replace("primary = true", "");
        let all = errors(&text)
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("exactly one primary ENI"), "{all}");
    }

    #[test]
    fn secondary_nat_needs_distinct_private_ips() {
        let text = GOOD.to_string()
            + "\n[[eip]]\naddress = \"203.0.113.20\"\neni = \"eth1\"\nmode = \"nat\"\n\n[[eip]]\naddress = \"203.0.113.21\"\neni = \"eth1\"\nmode = \"nat\"\n";
        let all = errors(&text)
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("203.0.113.21: private IP 172.16.1.10 of ENI \"eth1\" is already mapped to EIP 203.0.113.20"), "{all}");
    }

    #[test]
    fn parse_errors_carry_a_line() {
        let errs = errors("region = \"x\"\nvpc_cidr = \n");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 2);
        let errs =
            errors(&GOOD.replace("mode = \"nat\"\nprivate_ip", "mode = \"natt\"\nprivate_ip"));
        assert!(
            errs[0].line > 0 && errs[0].message.contains("natt"),
            "{errs:?}"
        );
        let errs = errors(&GOOD.replace("primary = true", "primary = true\nprimry = 1"));
        assert!(errs[0].message.contains("primry"), "{errs:?}");
    }

    #[test]
    fn explicit_default_route_replaces_the_implied_one() {
        let text = GOOD.to_string()
            + "\n[[route]]\ndst = \"0.0.0.0/0\"\nvia = [\"eth0\", \"eth1\"]\nweights = [3, 1]\nmetric = 100\n";
        let t = Topology::from_toml(&text).unwrap();
        assert_eq!(t.routes.len(), 1);
        assert_eq!(t.routes[0].weights, vec![3, 1]);
        assert!(
            t.route_text(&t.routes[0])
                .contains("nexthop dev eth0 weight 3")
        );
    }
}
