//! The difference between two topologies as operations: what SIGHUP
//! applies to a running `eipsim run` when its file has changed.
//!
//! ENIs are matched by name, EIPs by address, security groups by name,
//! routes and rules by all their keys. A change no operation can make (a
//! new ENI, another region, a new group, different flow table sizes...)
//! is listed instead, and needs a restart.

use super::model::{AssociationMode, Route, Topology};
use super::ops::{Operation, RouteSpec, RuleSpec, Via};
use super::policy::{GroupId, Peer, SgRule};

impl RouteSpec {
    /// A route's keys, names for ids.
    pub fn of(t: &Topology, r: &Route) -> RouteSpec {
        let names: Vec<String> = r.via.iter().map(|&e| t.eni(e).name.clone()).collect();
        RouteSpec {
            dst: r.dst.to_string(),
            via: Some(if names.len() == 1 {
                Via::One(names[0].clone())
            } else {
                Via::Many(names)
            }),
            weights: Some(r.weights.iter().map(|&w| i64::from(w)).collect()),
            balance: Some(r.balance.name().to_string()),
            metric: Some(r.metric),
            from: r.from.map(|f| f.to_string()),
        }
    }
}

impl RuleSpec {
    /// A rule of `group`'s, names for ids.
    pub fn of(t: &Topology, group: GroupId, r: &SgRule) -> RuleSpec {
        let (cidr, peer_group) = match r.peer {
            Peer::Cidr(n) => (Some(n.to_string()), None),
            Peer::Group(g) => (None, Some(t.group(g).name.clone())),
        };
        RuleSpec {
            security_group: t.group(group).name.clone(),
            direction: r.direction.name().into(),
            policy: Some(r.policy.name().into()),
            priority: Some(i64::from(r.priority)),
            protocol: r.protocol.name().into(),
            port_range: Some(r.ports_text()),
            cidr,
            group: peer_group,
            description: (!r.description.is_empty()).then(|| r.description.clone()),
        }
    }
}

impl Topology {
    /// The operations that take `self` to `to`, ordered so that each step
    /// can hold (EIPs off before their ENI or address goes, cut-through
    /// associations while the ENI is detached, a group joined before
    /// another is left), and the changes no operation makes.
    pub fn diff(&self, to: &Topology) -> (Vec<Operation>, Vec<String>) {
        let mut ops = Vec::new();
        let mut cannot = Vec::new();
        let top = |a: String, b: String, what: &str, cannot: &mut Vec<String>| {
            if a != b {
                cannot.push(format!("{what} changed ({a} -> {b})"));
            }
        };
        top(
            self.region.clone(),
            to.region.clone(),
            "region",
            &mut cannot,
        );
        top(
            self.vpc_cidr.to_string(),
            to.vpc_cidr.to_string(),
            "vpc_cidr",
            &mut cannot,
        );
        top(
            self.hash_seed.to_string(),
            to.hash_seed.to_string(),
            "hash_seed",
            &mut cannot,
        );
        top(
            format!("{:?}", self.alg),
            format!("{:?}", to.alg),
            "[alg]",
            &mut cannot,
        );
        top(
            format!("{:?}", self.flow_table),
            format!("{:?}", to.flow_table),
            "[flow_table]",
            &mut cannot,
        );
        top(
            format!("{:?}", self.icmp_errors),
            format!("{:?}", to.icmp_errors),
            "[icmp_errors]",
            &mut cannot,
        );
        top(
            format!("{:?}", self.cloud),
            format!("{:?}", to.cloud),
            "[cloud]",
            &mut cannot,
        );
        let plans = |t: &Topology| {
            t.bandwidth_plans
                .iter()
                .map(|p| {
                    let eips: Vec<_> = p.eips.iter().map(|&e| t.eip(e).address).collect();
                    format!("{} {} {eips:?}", p.name, p.mbps)
                })
                .collect::<Vec<_>>()
        };
        if plans(self) != plans(to) {
            cannot.push("[[bandwidth_plan]] changed".into());
        }
        for e in &self.enis {
            match to.eni_id(&e.name) {
                None => cannot.push(format!("ENI {:?} is gone from the file", e.name)),
                Some(id) => {
                    let n = to.eni(id);
                    if (n.primary, n.gateway) != (e.primary, e.gateway) {
                        cannot.push(format!("ENI {:?}: primary or gateway changed", e.name));
                    }
                }
            }
        }
        for e in &to.enis {
            if self.eni_id(&e.name).is_none() {
                cannot.push(format!("ENI {:?} is new (ENIs are declared at start; declare it with attached = false)", e.name));
            }
        }
        let group_shape = |g: &super::policy::SecurityGroup| {
            (
                g.kind,
                g.internal_isolation,
                g.members.clone(),
                g.name.clone(),
            )
        };
        for g in &self.security_groups {
            match to.group_id(&g.name) {
                None => cannot.push(format!("security group {:?} is gone from the file", g.name)),
                Some(id) if group_shape(to.group(id)) != group_shape(g) => cannot.push(format!(
                    "security group {:?}: type, internal_isolation or members changed",
                    g.name
                )),
                Some(_) => {}
            }
        }
        for g in &to.security_groups {
            if self.group_id(&g.name).is_none() {
                cannot.push(format!("security group {:?} is new", g.name));
            }
        }
        if !cannot.is_empty() {
            return (ops, cannot);
        }

        // The associated EIPs, by address, as (ENI name, mode, private IP).
        let eips = |t: &Topology| {
            t.eips
                .iter()
                .filter(|e| e.associated)
                .map(|e| (e.address, (t.eni(e.eni).name.clone(), e.mode, e.private_ip)))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let (old_eips, new_eips) = (eips(self), eips(to));
        for e in self.eips.iter().filter(|e| e.associated) {
            let b = (self.eni(e.eni).name.clone(), e.mode, e.private_ip);
            let new_bw = to.eips.iter().find(|x| x.address == e.address);
            if new_bw.is_some_and(|n| {
                (n.bandwidth_mbps, n.inbound_mbps) != (e.bandwidth_mbps, e.inbound_mbps)
            }) {
                cannot.push(format!(
                    "EIP {}: bandwidth_mbps or inbound_mbps changed",
                    e.address
                ));
            }
            if new_eips.get(&e.address) != Some(&b) {
                ops.push(Operation::UnassociateEip { address: e.address });
            }
        }
        let routes = |t: &Topology| -> Vec<RouteSpec> {
            t.routes
                .iter()
                .filter(|r| !r.implied)
                .map(|r| RouteSpec::of(t, r))
                .collect()
        };
        let (old_routes, new_routes) = (routes(self), routes(to));
        for r in old_routes.iter().filter(|r| !new_routes.contains(r)) {
            let mut del = r.clone();
            (del.via, del.weights, del.balance) = (None, None, None);
            ops.push(Operation::RouteDel(del));
        }
        let pairs = || {
            self.enis
                .iter()
                .map(|e| (e, to.eni(to.eni_id(&e.name).expect("checked"))))
        };
        for (a, b) in pairs() {
            if a.attached && !b.attached {
                ops.push(Operation::DetachEni {
                    eni: a.name.clone(),
                });
            }
        }
        for (a, b) in pairs() {
            for ip in a
                .private_ips
                .iter()
                .filter(|ip| !b.private_ips.contains(ip))
            {
                ops.push(Operation::UnassignPrivateIp {
                    eni: a.name.clone(),
                    private_ip: *ip,
                });
            }
        }
        let associate = |want_mode: AssociationMode, ops: &mut Vec<Operation>| {
            for (addr, (eni, mode, private_ip)) in &new_eips {
                if *mode == want_mode
                    && old_eips.get(addr) != Some(&(eni.clone(), *mode, *private_ip))
                {
                    let e = to.eips.iter().find(|e| e.address == *addr);
                    ops.push(Operation::AssociateEip {
                        address: *addr,
                        eni: eni.clone(),
                        mode: *mode,
                        private_ip: Some(*private_ip),
                        bandwidth_mbps: e.and_then(|e| e.bandwidth_mbps),
                        inbound_mbps: e.and_then(|e| e.inbound_mbps),
                    });
                }
            }
        };
        // The cloud: cut-through only while the ENI is detached.
        associate(AssociationMode::CutThrough, &mut ops);
        for (a, b) in pairs() {
            if !a.attached && b.attached {
                ops.push(Operation::AttachEni {
                    eni: a.name.clone(),
                });
            }
        }
        for (a, b) in pairs() {
            for ip in b
                .private_ips
                .iter()
                .filter(|ip| !a.private_ips.contains(ip))
            {
                ops.push(Operation::AssignPrivateIp {
                    eni: a.name.clone(),
                    private_ip: *ip,
                });
            }
        }
        associate(AssociationMode::Nat, &mut ops);
        for r in new_routes.iter().filter(|r| !old_routes.contains(r)) {
            ops.push(Operation::RouteAdd(r.clone()));
        }
        let names = |t: &Topology, ids: &[GroupId]| -> Vec<String> {
            ids.iter().map(|&g| t.group(g).name.clone()).collect()
        };
        for (a, b) in pairs() {
            let (old, new) = (
                names(self, &a.security_groups),
                names(to, &b.security_groups),
            );
            for g in new.iter().filter(|g| !old.contains(g)) {
                ops.push(Operation::Join {
                    eni: a.name.clone(),
                    security_group: g.clone(),
                });
            }
        }
        let rules = |t: &Topology| -> Vec<RuleSpec> {
            t.security_groups
                .iter()
                .enumerate()
                .flat_map(|(i, g)| {
                    g.rules
                        .iter()
                        .map(move |r| RuleSpec::of(t, GroupId(i as u16), r))
                })
                .map(|mut r| {
                    r.description = None; // not part of a rule's identity
                    r
                })
                .collect()
        };
        let (old_rules, new_rules) = (rules(self), rules(to));
        for r in to.security_groups.iter().enumerate().flat_map(|(i, g)| {
            g.rules
                .iter()
                .map(move |r| RuleSpec::of(to, GroupId(i as u16), r))
        }) {
            let mut key = r.clone();
            key.description = None;
            if !old_rules.contains(&key) {
                ops.push(Operation::Authorize(r));
            }
        }
        for r in old_rules.iter().filter(|r| !new_rules.contains(r)) {
            ops.push(Operation::Revoke(r.clone()));
        }
        for (a, b) in pairs() {
            let (old, new) = (
                names(self, &a.security_groups),
                names(to, &b.security_groups),
            );
            for g in old.iter().filter(|g| !new.contains(g)) {
                ops.push(Operation::Leave {
                    eni: a.name.clone(),
                    security_group: g.clone(),
                });
            }
        }
        (ops, cannot)
    }
}
