//! Reading a topology file: serde reads the TOML into the `raw` structs,
//! then one check per section adds its violations to a shared list
//! ([`Checker`]), and only a file without any becomes a [`Topology`].
//!
//! The sections are checked in file-format order: the top level, `[[eni]]`,
//! `[[eip]]`, `[[route]]`, `[alg]`, `[flow_table]`, `[[security_group]]`
//! (and the ENIs' `security_groups`), `[[bandwidth_plan]]`. The errors are then
//! sorted by line; errors on the same line keep the order they were found
//! in, so the order of the checks below is part of the output.
//!
//! This file has the entry points, the shared helpers and the small
//! sections; `[[eni]]`, `[[eip]]` and `[[route]]` each have a submodule.

mod eip;
mod eni;
mod policy;
mod route;

use super::error::{ConfigError, ConfigErrors};
use super::model::{AlgAction, AlgPolicy, AlgProtocol, FlowTableConfig, IcmpErrorConfig, Topology};
use super::policy::CloudRules;
use super::raw::{RawAlg, RawFlowTable, RawTopology};
use ipnetwork::Ipv4Network;
use route::add_implied_default;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use toml::Spanned;

impl Topology {
    /// Reads and checks a topology file.
    ///
    /// On failure the errors carry the path as given; a file that cannot be
    /// read is one error on line 0.
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
    ///
    /// A TOML or shape error (bad syntax, an unknown key, a value of the
    /// wrong type) is reported alone, since nothing can be checked after
    /// it. Otherwise every rule violation is reported, sorted by line.
    pub fn from_toml(text: &str) -> Result<Topology, Vec<ConfigError>> {
        let lines = Lines::new(text);
        let raw = read(text, &lines)?;
        let mut c = Checker {
            lines: &lines,
            errors: Vec::new(),
        };
        let mut owners = AddressOwners::new();

        let (region, vpc) = c.top_level(&raw);
        let mut enis = c.enis(&raw.eni, vpc, &mut owners);
        c.one_primary_eni(&enis.primaries, &raw.region);
        let mut eips = c.eips(&raw.eip, &enis, &region, vpc, &mut owners);
        let mut routes = c.routes(&raw.route, &enis);
        c.distinct_routes(&routes);
        add_implied_default(&mut routes, &enis.list);
        let alg = c.alg(raw.alg.as_ref());
        let flow_table = c.flow_table(&raw.flow_table);
        let icmp_errors = IcmpErrorConfig {
            per_second: raw.icmp_errors.per_second,
            burst: raw.icmp_errors.burst,
        };
        c.gateways(&enis.list, &enis.gateway_given, &owners);
        let security_groups = c.security_groups(&raw.security_group, &raw.eni, &mut enis.list, vpc);
        let bandwidth_plans = c.bandwidth_plans(&raw.bandwidth_plan, &mut eips);
        let cloud = CloudRules {
            smtp_port_25: raw.cloud.smtp_port_25,
        };

        c.finish()?;
        Ok(Topology {
            region,
            vpc_cidr: vpc.unwrap_or_else(default_prefix),
            hash_seed: raw.hash_seed,
            enis: enis.list,
            eips,
            routes,
            alg,
            flow_table,
            icmp_errors,
            security_groups,
            bandwidth_plans,
            cloud,
        })
    }
}

/// `0.0.0.0/0`.
fn default_prefix() -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).unwrap()
}

/// The serde step: the file as `raw` structs, or its one TOML or shape
/// error with the line serde points at (0 if it points nowhere).
fn read(text: &str, lines: &Lines) -> Result<RawTopology, Vec<ConfigError>> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| lines.at(s.start)).unwrap_or(0);
        vec![ConfigError {
            line,
            entry: String::new(),
            message: e.message().trim_end().to_string(),
        }]
    })
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

    /// The line of a byte offset.
    fn at(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }

    /// The line where a spanned value starts.
    fn of<T>(&self, s: &Spanned<T>) -> usize {
        self.at(s.span().start)
    }
}

/// Every address the file has given out so far, for the rule that an
/// address is used once (an ENI private IP or an EIP): the entry that uses
/// it and the line where it does.
type AddressOwners = HashMap<Ipv4Addr, (String, usize)>;

/// The shared error list that every section check adds to.
struct Checker<'a> {
    lines: &'a Lines,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    /// Adds one error.
    fn err(&mut self, line: usize, entry: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line,
            entry: entry.into(),
            message: message.into(),
        });
    }

    /// The errors sorted by line (a stable sort), if there are any.
    fn finish(mut self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| e.line);
        Err(self.errors)
    }

    /// An IPv4 address, or an error on the value's line naming it `what`.
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

    /// A CIDR prefix with no host bits set (`"10.0.0.0/8"`, not
    /// `"10.0.0.1/8"` or `"10.0.0.0"`), or an error on the value's line.
    fn cidr(&mut self, s: &Spanned<String>, entry: &str, what: &str) -> Option<Ipv4Network> {
        let text = s.get_ref();
        let why = match text.split_once('/') {
            None => Some("no /prefix length".to_string()),
            Some((addr, len)) => match (addr.parse::<Ipv4Addr>(), len.parse::<u8>()) {
                (Err(_), _) => Some(format!("{addr:?} is not an IPv4 address")),
                (_, Err(_)) => Some(format!("{len:?} is not a prefix length")),
                (_, Ok(l)) if l > 32 => Some(format!("prefix length {l} is above 32")),
                // Reject host bits: "10.0.0.1/8" is almost always a typo.
                (Ok(a), Ok(l)) => Ipv4Network::new(a, l)
                    .ok()
                    .filter(|n| n.network() != a)
                    .map(|n| format!("host bits set: the prefix is {}/{l}", n.network())),
            },
        };
        let parsed = match why {
            None => text.parse::<Ipv4Network>().ok(),
            Some(_) => None,
        };
        if parsed.is_none() {
            let line = self.lines.of(s);
            let why = why.unwrap_or_else(|| "not a prefix".into());
            self.err(
                line,
                entry,
                format!("{what} {text:?} is not a CIDR prefix like \"172.16.0.0/12\" ({why})"),
            );
        }
        parsed
    }

    /// Records that `entry` uses `addr` on `line`; false (and an error) if
    /// another entry, or the same one, already does.
    fn claim(
        &mut self,
        owners: &mut AddressOwners,
        addr: Ipv4Addr,
        entry: &str,
        line: usize,
    ) -> bool {
        if let Some((who, at)) = owners.get(&addr) {
            self.err(
                line,
                entry,
                format!("address {addr} is already used by {who} on line {at}"),
            );
            return false;
        }
        owners.insert(addr, (entry.to_string(), line));
        true
    }

    /// The top level: the region as written, and `vpc_cidr`. Without a
    /// valid VPC range (`None`), the inside/outside checks of the later
    /// sections would only add false errors; they are skipped.
    fn top_level(&mut self, raw: &RawTopology) -> (String, Option<Ipv4Network>) {
        let region = raw.region.get_ref().clone();
        let vpc = self.cidr(&raw.vpc_cidr, "vpc_cidr", "vpc_cidr");
        (region, vpc)
    }

    /// The `[alg]` table: the seed's unsupported list and `drop` unless the
    /// file says otherwise; an `unsupported` list replaces the seed's, and
    /// every name in it must be an [`AlgProtocol`] (repeats are ignored).
    fn alg(&mut self, raw: Option<&Spanned<RawAlg>>) -> AlgPolicy {
        let mut alg = AlgPolicy {
            unsupported: AlgProtocol::DEFAULT_UNSUPPORTED.to_vec(),
            action: AlgAction::Drop,
        };
        let Some(a) = raw else {
            return alg;
        };
        alg.action = a.get_ref().action;
        if let Some(list) = &a.get_ref().unsupported {
            alg.unsupported.clear();
            for s in list {
                match AlgProtocol::from_name(s.get_ref()) {
                    Some(p) if !alg.unsupported.contains(&p) => alg.unsupported.push(p),
                    Some(_) => {}
                    None => {
                        let l = self.lines.of(s);
                        let known: Vec<_> = AlgProtocol::ALL.iter().map(|p| p.name()).collect();
                        self.err(
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
        alg
    }

    /// The `[flow_table]` table: a capacity of at least 1 flow (the error
    /// has no line: the table's position is not kept). Timeouts are taken
    /// as given.
    fn flow_table(&mut self, raw: &RawFlowTable) -> FlowTableConfig {
        if raw.capacity == 0 {
            self.err(0, "[flow_table]", "capacity must be at least 1");
        }
        raw.config()
    }
}
