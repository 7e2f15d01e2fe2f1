//! The topology file: one instance, its ENIs, EIPs, routes and ALG policy,
//! its security groups, bandwidth limits and the cloud's rules.
//!
//! Parsing is two steps. Serde reads the TOML into `Raw*` structs that keep
//! every entry's position ([`toml::Spanned`]); then [`Topology::from_toml`]
//! checks the product rules (the seed document) and reports *every*
//! violation with the entry and line it concerns, the way a compiler does.
//!
//! The model ([`Topology`] and its parts) knows nothing of TOML; the file
//! format, its checks and their errors ([`ConfigError`]) live beside it.

mod diff;
mod error;
mod model;
mod ops;
mod parse;
mod policy;
mod raw;
#[cfg(test)]
mod tests;
mod write;

pub use error::{ConfigError, ConfigErrors};
pub use model::{
    AlgAction, AlgPolicy, AlgProtocol, AssociationMode, Balance, CUT_THROUGH_REGIONS, Eip, EipId,
    Eni, EniId, FlowTableConfig, IcmpErrorConfig, Route, Topology,
};
pub use ops::{Operation, Refusal, RouteSpec, RuleSpec, Via};
pub use policy::{
    BandwidthPlan, CUT_THROUGH_UNREACHABLE, CloudRules, GroupId, GroupType, Peer, PlanId,
    PortRange, RuleDirection, RulePolicy, RuleProtocol, SecurityGroup, SgRule, Smtp,
    default_inbound_mbps,
};
