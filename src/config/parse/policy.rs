//! `[[security_group]]`, the ENIs' `security_groups`, the EIPs' bandwidth
//! keys and `[[bandwidth_plan]]`.

use super::Checker;
use crate::config::model::{Eip, EipId, Eni};
use crate::config::policy::{
    BandwidthPlan, GroupId, GroupType, Peer, PlanId, PortRange, SecurityGroup, SgRule,
    default_inbound_mbps,
};
use crate::config::raw::{RawBandwidthPlan, RawEip, RawEni, RawSecurityGroup, RawSgRule};
use ipnetwork::Ipv4Network;
use std::collections::HashMap;
use toml::Spanned;

/// The most security groups an ENI can be in.
pub const MAX_GROUPS_PER_ENI: usize = 10;

/// The most rules all of an ENI's groups may hold together.
pub const MAX_RULES_PER_ENI: usize = 1000;

impl Checker<'_> {
    /// The `[[security_group]]` entries: unique names, members inside the
    /// VPC, valid rules; then each ENI's `security_groups`: once any group
    /// exists, 1 to 10 known groups of one type, each named once.
    pub(super) fn security_groups(
        &mut self,
        raw: &[Spanned<RawSecurityGroup>],
        raw_enis: &[Spanned<RawEni>],
        enis: &mut [Eni],
        vpc: Option<Ipv4Network>,
    ) -> Vec<SecurityGroup> {
        let mut by_name: HashMap<&str, GroupId> = HashMap::new();
        let mut groups = Vec::new();
        // The group each entry became (None: a duplicate, not kept).
        let mut kept: Vec<Option<usize>> = Vec::new();
        for g in raw {
            kept.push(None);
            let line = self.lines.of(g);
            let r = g.get_ref();
            let entry = format!("[[security_group]] {:?}", r.name);
            if r.name.is_empty() {
                self.err(line, &entry, "the security group name is empty");
            }
            if let Some(&other) = by_name.get(r.name.as_str()) {
                let first: &SecurityGroup = &groups[usize::from(other.0)];
                let msg = format!(
                    "duplicate security group name (first defined on line {})",
                    first.line
                );
                self.err(line, &entry, msg);
                continue;
            }
            if r.kind == GroupType::Enterprise && r.internal_isolation.is_some() {
                self.err(
                    line,
                    &entry,
                    "internal_isolation is for basic groups only: members of an enterprise group never reach each other unless a rule says so",
                );
            }
            let mut members = Vec::new();
            for m in &r.members {
                let Some(net) = self.cidr(m, &entry, "member") else {
                    continue;
                };
                if let Some(vpc) = vpc
                    && !(vpc.contains(net.network()) && vpc.prefix() <= net.prefix())
                {
                    let l = self.lines.of(m);
                    self.err(l, &entry, format!("member {net} is outside vpc_cidr {vpc}"));
                }
                members.push(net);
            }
            by_name.insert(&r.name, GroupId(groups.len() as u16));
            *kept.last_mut().expect("pushed above") = Some(groups.len());
            groups.push(SecurityGroup {
                name: r.name.clone(),
                kind: r.kind,
                internal_isolation: r.internal_isolation.unwrap_or(false),
                members,
                rules: Vec::new(),
                line,
            });
        }
        // Rules last: they may name any group, also one defined later.
        for (g, id) in raw.iter().zip(kept) {
            let Some(id) = id else { continue };
            let entry = format!("[[security_group]] {:?}", groups[id].name);
            let rules: Vec<SgRule> = g
                .get_ref()
                .rule
                .iter()
                .filter_map(|r| self.sg_rule(r, &entry, &by_name))
                .collect();
            groups[id].rules = rules;
        }
        self.eni_groups(raw_enis, enis, &groups, &by_name);
        groups
    }

    /// One `[[security_group.rule]]`.
    fn sg_rule(
        &mut self,
        raw: &Spanned<RawSgRule>,
        group: &str,
        by_name: &HashMap<&str, GroupId>,
    ) -> Option<SgRule> {
        let line = self.lines.of(raw);
        let r = raw.get_ref();
        let entry = format!("{group} rule on line {line}");
        let priority = match &r.priority {
            None => 1,
            Some(p) if (1..=100).contains(p.get_ref()) => *p.get_ref() as u8,
            Some(p) => {
                let l = self.lines.of(p);
                let msg = format!(
                    "priority {} is not 1 to 100 (1 is the highest)",
                    p.get_ref()
                );
                self.err(l, &entry, msg);
                return None;
            }
        };
        let ports = match &r.port_range {
            None => vec![PortRange::ALL],
            Some(s) => self.port_ranges(s, &entry, r.protocol.has_ports())?,
        };
        let peer = match (&r.cidr, &r.group) {
            (Some(c), None) => Peer::Cidr(self.cidr(c, &entry, "cidr")?),
            (None, Some(g)) => match by_name.get(g.get_ref().as_str()) {
                Some(&id) => Peer::Group(id),
                None => {
                    let l = self.lines.of(g);
                    let msg = format!("no security group is named {:?}", g.get_ref());
                    self.err(l, &entry, msg);
                    return None;
                }
            },
            (Some(_), Some(_)) => {
                self.err(
                    line,
                    &entry,
                    "a rule names its peer by cidr or by group, not both",
                );
                return None;
            }
            (None, None) => {
                self.err(
                    line,
                    &entry,
                    "a rule needs its peer: cidr = \"0.0.0.0/0\" (any address) or group = \"...\"",
                );
                return None;
            }
        };
        Some(SgRule {
            direction: r.direction,
            policy: r.policy,
            priority,
            protocol: r.protocol,
            ports,
            peer,
            description: r.description.clone(),
            line,
        })
    }

    /// `port_range`: `"start/end"` (1 to 65535, start <= end), several
    /// separated by commas, or `"-1/-1"` for every port; for a protocol
    /// without ports only `"-1/-1"`.
    fn port_ranges(
        &mut self,
        s: &Spanned<String>,
        entry: &str,
        has_ports: bool,
    ) -> Option<Vec<PortRange>> {
        let text = s.get_ref().trim();
        let l = self.lines.of(s);
        if text == "-1/-1" {
            return Some(vec![PortRange::ALL]);
        }
        if !has_ports {
            self.err(
                l,
                entry,
                format!("port_range {text:?}: only tcp and udp rules have ports; others take \"-1/-1\" or none"),
            );
            return None;
        }
        let mut out = Vec::new();
        for part in text.split(',') {
            let parsed = part.trim().split_once('/').and_then(|(a, b)| {
                let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
                (a >= 1 && a <= b).then_some(PortRange { start: a, end: b })
            });
            match parsed {
                Some(p) => out.push(p),
                None => {
                    self.err(
                        l,
                        entry,
                        format!("port_range {:?}: {:?} is not \"start/end\" with 1 <= start <= end <= 65535 (\"-1/-1\": every port)", text, part.trim()),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// Each ENI's `security_groups`, resolved into `enis` (matched by
    /// name: `enis` holds the accepted ENIs in file order).
    fn eni_groups(
        &mut self,
        raw: &[Spanned<RawEni>],
        enis: &mut [Eni],
        groups: &[SecurityGroup],
        by_name: &HashMap<&str, GroupId>,
    ) {
        for r in raw {
            let e = r.get_ref();
            let line = self.lines.of(r);
            let Some(eni) = enis.iter_mut().find(|x| x.name == e.name && x.line == line) else {
                continue;
            };
            let entry = format!("[[eni]] {:?}", e.name);
            let Some(list) = &e.security_groups else {
                if !groups.is_empty() {
                    self.err(
                        line,
                        &entry,
                        "the file defines security groups, so every ENI needs security_groups = [...] (1 to 10 groups of one type)",
                    );
                }
                continue;
            };
            let l = self.lines.of(list);
            let names = list.get_ref();
            if names.is_empty() || names.len() > MAX_GROUPS_PER_ENI {
                self.err(
                    l,
                    &entry,
                    format!(
                        "an ENI is in 1 to {MAX_GROUPS_PER_ENI} security groups, not {}",
                        names.len()
                    ),
                );
            }
            let mut ids: Vec<GroupId> = Vec::new();
            for n in names {
                let nl = self.lines.of(n);
                match by_name.get(n.get_ref().as_str()) {
                    None => self.err(
                        nl,
                        &entry,
                        format!("no security group is named {:?}", n.get_ref()),
                    ),
                    Some(id) if ids.contains(id) => self.err(
                        nl,
                        &entry,
                        format!("security group {:?} is named twice", n.get_ref()),
                    ),
                    Some(&id) => {
                        if let Some(&first) = ids.first() {
                            let (a, b) =
                                (&groups[usize::from(first.0)], &groups[usize::from(id.0)]);
                            if a.kind != b.kind {
                                self.err(
                                    nl,
                                    &entry,
                                    format!(
                                        "security group {:?} is {} but {:?} is {}: an ENI's groups are all of one type",
                                        b.name, b.kind.name(), a.name, a.kind.name()
                                    ),
                                );
                                continue;
                            }
                        }
                        ids.push(id);
                    }
                }
            }
            // The cloud: "Inbound and outbound rules in all security groups
            // to which an ENI belongs: 1,000". A rule with several port
            // ranges stands for one cloud rule per range.
            let rules: usize = ids
                .iter()
                .flat_map(|&g| &groups[usize::from(g.0)].rules)
                .map(|r| r.ports.len())
                .sum();
            if rules > MAX_RULES_PER_ENI {
                self.err(
                    l,
                    &entry,
                    format!("its security groups hold {rules} rules (one per port range), more than the cloud's {MAX_RULES_PER_ENI} per ENI"),
                );
            }
            eni.security_groups = ids;
        }
    }

    /// An EIP's `bandwidth_mbps` and `inbound_mbps`: each at least 1
    /// Mbit/s. Returns (outbound, inbound) limits.
    pub(super) fn eip_bandwidth(&mut self, e: &RawEip, entry: &str) -> (Option<u32>, Option<u32>) {
        let out = e
            .bandwidth_mbps
            .as_ref()
            .and_then(|v| self.mbps(v, entry, "bandwidth_mbps"));
        let inbound = match &e.inbound_mbps {
            Some(v) => self.mbps(v, entry, "inbound_mbps"),
            None => out.map(default_inbound_mbps),
        };
        (out, inbound)
    }

    /// A bandwidth in Mbit/s: 1 to 1,000,000.
    fn mbps(&mut self, v: &Spanned<i64>, entry: &str, what: &str) -> Option<u32> {
        let n = *v.get_ref();
        if (1..=1_000_000).contains(&n) {
            return Some(n as u32);
        }
        let l = self.lines.of(v);
        self.err(l, entry, format!("{what} {n} is not 1 to 1000000 Mbit/s"));
        None
    }

    /// The `[[bandwidth_plan]]` entries: unique names, a bandwidth, and
    /// EIPs of the file, each in at most one plan (recorded in `eips`).
    pub(super) fn bandwidth_plans(
        &mut self,
        raw: &[Spanned<RawBandwidthPlan>],
        eips: &mut [Eip],
    ) -> Vec<BandwidthPlan> {
        let mut plans: Vec<BandwidthPlan> = Vec::new();
        for p in raw {
            let line = self.lines.of(p);
            let r = p.get_ref();
            let entry = format!("[[bandwidth_plan]] {:?}", r.name);
            if r.name.is_empty() {
                self.err(line, &entry, "the plan name is empty");
            }
            if let Some(first) = plans.iter().find(|x| x.name == r.name) {
                let msg = format!("duplicate plan name (first defined on line {})", first.line);
                self.err(line, &entry, msg);
                continue;
            }
            let mbps = self.mbps(&r.mbps, &entry, "mbps").unwrap_or(1);
            let id = PlanId(plans.len() as u16);
            let mut members = Vec::new();
            for a in &r.eips {
                let l = self.lines.of(a);
                let Some(addr) = self.ip(a, &entry, "EIP") else {
                    continue;
                };
                let Some(i) = eips.iter().position(|e| e.address == addr) else {
                    self.err(l, &entry, format!("no [[eip]] has address {addr}"));
                    continue;
                };
                if let Some(other) = eips[i].plan {
                    let msg = match plans.get(usize::from(other.0)) {
                        Some(o) if other != id => format!(
                            "EIP {addr} is already in plan {:?} (line {}): an EIP is in at most one plan",
                            o.name, o.line
                        ),
                        _ => format!("EIP {addr} is listed twice"),
                    };
                    self.err(l, &entry, msg);
                    continue;
                }
                eips[i].plan = Some(id);
                members.push(EipId(i as u16));
            }
            plans.push(BandwidthPlan {
                name: r.name.clone(),
                mbps,
                eips: members,
                line,
            });
        }
        plans
    }
}
