//! The file as serde reads it, before any product rule is checked.
//!
//! Every entry keeps its position ([`Spanned`]) so that the checks in
//! `parse` can report the line it is on. Serde already rejects unknown
//! keys, missing required keys and values of the wrong type; its messages
//! (which name these structs, e.g. "expected struct RawAlg") are what the
//! user sees, so renaming a struct here changes an error message.

use super::model::{AlgAction, AssociationMode, Balance, FlowTableConfig};
use super::policy::{GroupType, RuleDirection, RulePolicy, RuleProtocol, Smtp};
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopology {
    pub(super) region: Spanned<String>,
    pub(super) vpc_cidr: Spanned<String>,
    #[serde(default)]
    pub(super) hash_seed: u64,
    #[serde(default)]
    pub(super) eni: Vec<Spanned<RawEni>>,
    #[serde(default)]
    pub(super) eip: Vec<Spanned<RawEip>>,
    #[serde(default)]
    pub(super) route: Vec<Spanned<RawRoute>>,
    pub(super) alg: Option<Spanned<RawAlg>>,
    #[serde(default)]
    pub(super) flow_table: RawFlowTable,
    #[serde(default)]
    pub(super) icmp_errors: RawIcmpErrors,
    #[serde(default)]
    pub(super) security_group: Vec<Spanned<RawSecurityGroup>>,
    #[serde(default)]
    pub(super) bandwidth_plan: Vec<Spanned<RawBandwidthPlan>>,
    #[serde(default)]
    pub(super) cloud: RawCloud,
}

/// One `[[security_group]]`, with its `[[security_group.rule]]`s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecurityGroup {
    pub(super) name: String,
    #[serde(default, rename = "type")]
    pub(super) kind: GroupType,
    pub(super) internal_isolation: Option<bool>,
    #[serde(default)]
    pub(super) members: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) rule: Vec<Spanned<RawSgRule>>,
}

/// One `[[security_group.rule]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSgRule {
    pub(super) direction: RuleDirection,
    #[serde(default)]
    pub(super) policy: RulePolicy,
    pub(super) priority: Option<Spanned<i64>>,
    pub(super) protocol: RuleProtocol,
    pub(super) port_range: Option<Spanned<String>>,
    pub(super) cidr: Option<Spanned<String>>,
    pub(super) group: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) description: String,
}

/// One `[[bandwidth_plan]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBandwidthPlan {
    pub(super) name: String,
    pub(super) mbps: Spanned<i64>,
    pub(super) eips: Vec<Spanned<String>>,
}

/// The `[cloud]` table.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCloud {
    #[serde(default)]
    pub(super) smtp_port_25: Smtp,
}

/// The `[icmp_errors]` table, with defaults for the keys left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawIcmpErrors {
    pub(super) per_second: u32,
    pub(super) burst: u32,
}

impl Default for RawIcmpErrors {
    fn default() -> Self {
        let d = super::model::IcmpErrorConfig::default();
        RawIcmpErrors {
            per_second: d.per_second,
            burst: d.burst,
        }
    }
}

/// One `[[eni]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEni {
    pub(super) name: String,
    #[serde(default)]
    pub(super) primary: bool,
    pub(super) private_ips: Vec<Spanned<String>>,
    pub(super) gateway: Option<Spanned<String>>,
    pub(super) security_groups: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) attached: Option<Spanned<bool>>,
}

/// One `[[eip]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEip {
    pub(super) address: Spanned<String>,
    pub(super) eni: Spanned<String>,
    pub(super) mode: AssociationMode,
    pub(super) private_ip: Option<Spanned<String>>,
    pub(super) bandwidth_mbps: Option<Spanned<i64>>,
    pub(super) inbound_mbps: Option<Spanned<i64>>,
}

/// One `[[route]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) dst: Spanned<String>,
    pub(super) via: Spanned<OneOrMany>,
    pub(super) weights: Option<Spanned<Vec<i64>>>,
    #[serde(default)]
    pub(super) balance: Balance,
    #[serde(default)]
    pub(super) metric: u32,
    pub(super) from: Option<Spanned<String>>,
}

/// `via = "eth0"` or `via = ["eth0", "eth1"]`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names, in file order.
    pub(super) fn names(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The `[alg]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlg {
    pub(super) unsupported: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) action: AlgAction,
}

/// The `[flow_table]` table: [`FlowTableConfig`] field for field, with its
/// defaults for the keys the file leaves out.
///
/// `expecting` keeps serde's messages as they were when `FlowTableConfig`
/// itself was deserialized ("expected struct FlowTableConfig").
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "struct FlowTableConfig")]
pub(super) struct RawFlowTable {
    pub(super) capacity: usize,
    pub(super) tcp_established_timeout: u64,
    pub(super) tcp_transitory_timeout: u64,
    pub(super) udp_timeout: u64,
    pub(super) icmp_timeout: u64,
    pub(super) other_timeout: u64,
}

impl Default for RawFlowTable {
    fn default() -> Self {
        let FlowTableConfig {
            capacity,
            tcp_established_timeout,
            tcp_transitory_timeout,
            udp_timeout,
            icmp_timeout,
            other_timeout,
        } = FlowTableConfig::default();
        RawFlowTable {
            capacity,
            tcp_established_timeout,
            tcp_transitory_timeout,
            udp_timeout,
            icmp_timeout,
            other_timeout,
        }
    }
}

impl RawFlowTable {
    /// The model's value, field for field.
    pub(super) fn config(&self) -> FlowTableConfig {
        FlowTableConfig {
            capacity: self.capacity,
            tcp_established_timeout: self.tcp_established_timeout,
            tcp_transitory_timeout: self.tcp_transitory_timeout,
            udp_timeout: self.udp_timeout,
            icmp_timeout: self.icmp_timeout,
            other_timeout: self.other_timeout,
        }
    }
}
