//! Operations that change a running instance's topology (issue 11), named
//! after the cloud's API: attach and detach an ENI, associate and
//! unassociate an EIP, assign and unassign a private IP, the instance OS's
//! `ip route add|del|replace`, and the security group operations
//! (authorize and revoke a rule, join and leave a group).
//!
//! [`Topology::apply`] checks an operation against the rules the cloud
//! states for it, then the result against every rule of `check` (the
//! result is written as a file and read again, so the two cannot drift),
//! and returns the new topology or why it was refused; a refused
//! operation changes nothing. What happens to flows already in the table
//! is the engine's part (`Engine::apply`).

use super::model::{AssociationMode, Eip, EipId, EniId, Topology};
use super::policy::{GroupId, SgRule};
use serde::Deserialize;
use std::net::Ipv4Addr;

/// `via = "eth0"` or `via = ["eth0", "eth1"]` in a route operation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Via {
    /// One ENI.
    One(String),
    /// Several, for load balancing.
    Many(Vec<String>),
}

/// The keys of a `[[route]]`, as a route operation gives them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Destination prefix (`"192.0.2.0/24"`, `"0.0.0.0/0"`).
    pub dst: String,
    /// The next-hop ENI(s); required by `route-add` and `route-replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// One weight per `via` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<i64>>,
    /// `"hash"` or `"random"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// Lower wins; `route-del` matches it only if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// Source prefix (policy routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// One operation. In an events file each is a `[[event]]` whose `op` key
/// names it; the other keys are its fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Operation {
    /// Attach a detached secondary ENI (`[[eni]] attached = false`).
    AttachEni {
        /// The ENI's name.
        eni: String,
    },
    /// Detach a secondary ENI: its addresses leave the instance, the OS
    /// drops the routes through it; its EIPs stay associated with it.
    DetachEni {
        /// The ENI's name.
        eni: String,
    },
    /// Associate an EIP (a new address, or one unassociated earlier).
    AssociateEip {
        /// The public address.
        address: Ipv4Addr,
        /// The ENI.
        eni: String,
        /// `"nat"` or `"cut-through"`.
        mode: AssociationMode,
        /// Default: the ENI's primary private IP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_ip: Option<Ipv4Addr>,
        /// Its peak bandwidth toward the Internet, Mbit/s (as `[[eip]]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bandwidth_mbps: Option<u32>,
        /// From the Internet, Mbit/s (default: the cloud's rule).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inbound_mbps: Option<u32>,
    },
    /// Take an EIP off its ENI.
    UnassociateEip {
        /// The public address.
        address: Ipv4Addr,
    },
    /// Give an ENI one more (secondary) private IP.
    AssignPrivateIp {
        /// The ENI.
        eni: String,
        /// The address, inside `vpc_cidr` and unused.
        private_ip: Ipv4Addr,
    },
    /// Take a secondary private IP off an ENI.
    UnassignPrivateIp {
        /// The ENI.
        eni: String,
        /// One of its private IPs other than the primary.
        private_ip: Ipv4Addr,
    },
    /// `ip route add`: a new route (refused if one with the same `dst`,
    /// `from` and `metric` exists).
    RouteAdd(RouteSpec),
    /// `ip route del`: the route with this `dst` and `from` (and `metric`
    /// if given).
    RouteDel(RouteSpec),
    /// `ip route replace`: the route with this `dst` and `from` replaced,
    /// or added.
    RouteReplace(RouteSpec),
    /// Add a rule to a security group (AuthorizeSecurityGroup /
    /// AuthorizeSecurityGroupEgress).
    Authorize(RuleSpec),
    /// Remove the rule with these fields from a security group
    /// (RevokeSecurityGroup); its description is not compared.
    Revoke(RuleSpec),
    /// Put an ENI in one more security group.
    Join {
        /// The ENI.
        eni: String,
        /// The group.
        security_group: String,
    },
    /// Take an ENI out of a security group (it keeps at least one).
    Leave {
        /// The ENI.
        eni: String,
        /// The group.
        security_group: String,
    },
}

/// A security group rule operation: the group, and the keys of a
/// `[[security_group.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The group the rule is in.
    pub security_group: String,
    /// `"ingress"` or `"egress"`.
    pub direction: String,
    /// `"accept"` (default) or `"drop"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// 1 to 100 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// `"tcp"`, `"udp"`, `"icmp"`, `"gre"` or `"all"`.
    pub protocol: String,
    /// `"start/end"`, several with commas, or `"-1/-1"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<String>,
    /// The peer prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// The peer group (VPC traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Operation {
    /// Its name as an events file and `ctl` write it (`"detach-eni"`).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::AttachEni { .. } => "attach-eni",
            Operation::DetachEni { .. } => "detach-eni",
            Operation::AssociateEip { .. } => "associate-eip",
            Operation::UnassociateEip { .. } => "unassociate-eip",
            Operation::AssignPrivateIp { .. } => "assign-private-ip",
            Operation::UnassignPrivateIp { .. } => "unassign-private-ip",
            Operation::RouteAdd(_) => "route-add",
            Operation::RouteDel(_) => "route-del",
            Operation::RouteReplace(_) => "route-replace",
            Operation::Authorize(_) => "authorize",
            Operation::Revoke(_) => "revoke",
            Operation::Join { .. } => "join",
            Operation::Leave { .. } => "leave",
        }
    }
}

/// Why an operation was refused: one sentence per broken rule.
pub type Refusal = Vec<String>;

impl Topology {
    /// The topology after `op`, or why `op` is refused (nothing changes).
    pub fn apply(&self, op: &Operation) -> Result<Topology, Refusal> {
        let mut t = self.clone();
        let eni_id = |name: &str| -> Result<EniId, Refusal> {
            self.eni_id(name)
                .ok_or_else(|| vec![format!("no ENI is named {name:?}")])
        };
        match op {
            Operation::AttachEni { eni } => {
                let id = eni_id(eni)?;
                if self.eni(id).attached {
                    return Err(vec![format!("ENI {eni:?} is already attached")]);
                }
                t.enis[usize::from(id.0)].attached = true;
            }
            Operation::DetachEni { eni } => {
                let id = eni_id(eni)?;
                let e = self.eni(id);
                if e.primary {
                    return Err(vec![format!(
                        "{eni:?} is the primary ENI, which cannot be detached from the instance"
                    )]);
                }
                if !e.attached {
                    return Err(vec![format!("ENI {eni:?} is already detached")]);
                }
                t.enis[usize::from(id.0)].attached = false;
                // The OS removes the routes through a device that is gone.
                drop_routes_via(&mut t, id);
                t = routes_again(&t)?;
            }
            Operation::AssociateEip {
                address,
                eni,
                mode,
                private_ip,
                bandwidth_mbps,
                inbound_mbps,
            } => {
                let id = eni_id(eni)?;
                let inbound_mbps =
                    inbound_mbps.or(bandwidth_mbps.map(super::policy::default_inbound_mbps));
                if let Some(e) = self
                    .eips
                    .iter()
                    .find(|e| e.associated && e.address == *address)
                {
                    return Err(vec![format!(
                        "EIP {address} is already associated with {:?}",
                        self.eni(e.eni).name
                    )]);
                }
                if *mode == AssociationMode::CutThrough && self.eni(id).attached {
                    return Err(vec![format!(
                        "cut-through association needs {eni:?} detached from the instance first (the cloud: \"If the secondary ENI is associated with an ECS instance, disassociate first\")"
                    )]);
                }
                let private_ip = private_ip.unwrap_or(self.eni(id).primary_ip());
                let slot = t.eips.iter().position(|e| e.address == *address);
                let eip = Eip {
                    address: *address,
                    eni: id,
                    mode: *mode,
                    private_ip,
                    bandwidth_mbps: *bandwidth_mbps,
                    inbound_mbps,
                    plan: None,
                    associated: true,
                    line: 0,
                };
                match slot {
                    // Its old id, counters and bandwidth keys.
                    Some(i) => {
                        let old = &mut t.eips[i];
                        old.eni = id;
                        old.mode = *mode;
                        old.private_ip = private_ip;
                        old.associated = true;
                        if bandwidth_mbps.is_some() {
                            (old.bandwidth_mbps, old.inbound_mbps) =
                                (*bandwidth_mbps, inbound_mbps);
                        }
                    }
                    None => {
                        if t.eips.len() >= usize::from(u16::MAX) {
                            return Err(vec!["too many EIPs (at most 65535)".into()]);
                        }
                        t.eips.push(eip)
                    }
                }
            }
            Operation::UnassociateEip { address } => {
                let Some(i) = self
                    .eips
                    .iter()
                    .position(|e| e.associated && e.address == *address)
                else {
                    return Err(vec![format!("no EIP {address} is associated")]);
                };
                t.eips[i].associated = false;
                if let Some(p) = t.eips[i].plan.take() {
                    t.bandwidth_plans[usize::from(p.0)]
                        .eips
                        .retain(|&e| e != EipId(i as u16));
                }
            }
            Operation::AssignPrivateIp { eni, private_ip } => {
                let id = eni_id(eni)?;
                t.enis[usize::from(id.0)].private_ips.push(*private_ip);
            }
            Operation::UnassignPrivateIp { eni, private_ip } => {
                let id = eni_id(eni)?;
                let e = self.eni(id);
                if e.primary_ip() == *private_ip {
                    return Err(vec![format!(
                        "{private_ip} is the primary private IP of {eni:?}, which cannot be unassigned"
                    )]);
                }
                if !e.private_ips.contains(private_ip) {
                    return Err(vec![format!("{private_ip} is not a private IP of {eni:?}")]);
                }
                if let Some(x) = self.eips_of(id).find(|(_, x)| x.private_ip == *private_ip) {
                    return Err(vec![format!(
                        "EIP {} is associated with {private_ip}: unassociate it first",
                        x.1.address
                    )]);
                }
                t.enis[usize::from(id.0)]
                    .private_ips
                    .retain(|a| a != private_ip);
            }
            Operation::RouteAdd(r) | Operation::RouteReplace(r) => {
                if r.via.is_none() {
                    return Err(vec![format!("{} needs via = \"ENI\"", op.name())]);
                }
                if matches!(op, Operation::RouteReplace(_)) {
                    // As `ip route replace`: the route with this dst, from
                    // and metric (0 if not given).
                    let (dst, from) = route_key(r)?;
                    let metric = r.metric.unwrap_or(0);
                    t.routes
                        .retain(|x| x.implied || (x.dst, x.from, x.metric) != (dst, from, metric));
                }
                let text = format!("{}\n{}", t.to_toml(), route_snippet(r));
                let parsed = reparse(&text)?;
                t.routes = parsed.routes;
            }
            Operation::RouteDel(r) => {
                // As `ip route del`: one route per call, the one with this
                // dst and from (and metric, if given) that is preferred.
                let (dst, from) = route_key(r)?;
                let found = t
                    .routes
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| {
                        !x.implied
                            && (x.dst, x.from) == (dst, from)
                            && r.metric.is_none_or(|m| m == x.metric)
                    })
                    .min_by_key(|(_, x)| x.metric)
                    .map(|(i, _)| i);
                if let Some(i) = found {
                    t.routes.remove(i);
                } else {
                    return Err(vec![format!(
                        "no route {}{} in the table",
                        r.dst,
                        r.from
                            .as_deref()
                            .map(|f| format!(" from {f}"))
                            .unwrap_or_default()
                    )]);
                }
                t = routes_again(&t)?;
            }
            Operation::Authorize(r) => {
                let (g, rule) = self.read_rule(r)?;
                t.security_groups[usize::from(g.0)].rules.push(rule);
            }
            Operation::Revoke(r) => {
                let (g, rule) = self.read_rule(r)?;
                let same = |x: &SgRule| {
                    (
                        x.direction,
                        x.policy,
                        x.priority,
                        x.protocol,
                        &x.ports,
                        x.peer,
                    ) == (
                        rule.direction,
                        rule.policy,
                        rule.priority,
                        rule.protocol,
                        &rule.ports,
                        rule.peer,
                    )
                };
                let rules = &mut t.security_groups[usize::from(g.0)].rules;
                let Some(i) = rules.iter().position(same) else {
                    return Err(vec![format!(
                        "security group {:?} has no such rule",
                        r.security_group
                    )]);
                };
                rules.remove(i);
            }
            Operation::Join {
                eni,
                security_group,
            }
            | Operation::Leave {
                eni,
                security_group,
            } => {
                let id = eni_id(eni)?;
                let Some(g) = self.group_id(security_group) else {
                    return Err(vec![format!(
                        "no security group is named {security_group:?}"
                    )]);
                };
                let groups = &mut t.enis[usize::from(id.0)].security_groups;
                match (op, groups.contains(&g)) {
                    (Operation::Join { .. }, false) => groups.push(g),
                    (Operation::Leave { .. }, true) if groups.len() == 1 => {
                        return Err(vec![format!(
                            "{security_group:?} is {eni:?}'s last security group: an ENI keeps at least one (join another first)"
                        )]);
                    }
                    (Operation::Leave { .. }, true) => groups.retain(|&x| x != g),
                    (Operation::Join { .. }, true) => {
                        return Err(vec![format!("{eni:?} is already in {security_group:?}")]);
                    }
                    _ => return Err(vec![format!("{eni:?} is not in {security_group:?}")]),
                }
            }
        }
        // Every rule of `check`, on the result.
        reparse(&t.to_toml())?;
        Ok(t)
    }
}

impl Topology {
    /// The ID of the security group with this name.
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.security_groups
            .iter()
            .position(|g| g.name == name)
            .map(|i| GroupId(i as u16))
    }

    /// A rule operation's rule, read by the file reader (so every key is
    /// checked as in a file): the topology written out, the rule added to
    /// its group, and the whole read back.
    fn read_rule(&self, r: &RuleSpec) -> Result<(GroupId, SgRule), Refusal> {
        let Some(g) = self.group_id(&r.security_group) else {
            return Err(vec![format!(
                "no security group is named {:?}",
                r.security_group
            )]);
        };
        let mut file: toml::Table = toml::from_str(&self.to_toml()).expect("to_toml writes TOML");
        let mut rule = toml::Table::try_from(r).expect("plain values");
        rule.remove("security_group");
        let groups = file
            .get_mut("security_group")
            .and_then(|v| v.as_array_mut())
            .expect("the group exists, so the array does");
        let entry = groups[usize::from(g.0)]
            .as_table_mut()
            .expect("a group is a table");
        let rules = entry
            .entry("rule")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let Some(a) = rules.as_array_mut() {
            a.push(toml::Value::Table(rule));
        }
        let text = toml::to_string(&file).expect("plain values");
        let parsed = reparse(&text)?;
        let rule = parsed.group(g).rules.last().cloned().expect("just added");
        Ok((g, rule))
    }
}

/// Removes `eni` from every route's next hops (and routes left with none).
fn drop_routes_via(t: &mut Topology, eni: EniId) {
    for r in t.routes.iter_mut() {
        if let Some(i) = r.via.iter().position(|&v| v == eni) {
            r.via.remove(i);
            r.weights.remove(i);
        }
    }
    t.routes.retain(|r| !r.via.is_empty() && !r.implied);
}

/// `t` with its routes as the file reader makes them (the implied default
/// comes back when no route for 0.0.0.0/0 is left).
fn routes_again(t: &Topology) -> Result<Topology, Refusal> {
    let parsed = reparse(&t.to_toml())?;
    let mut out = t.clone();
    out.routes = parsed.routes;
    Ok(out)
}

/// Reads a written topology: its errors, without line numbers (they are
/// the written file's, not the user's), are the refusal.
fn reparse(text: &str) -> Result<Topology, Refusal> {
    Topology::from_toml(text).map_err(|errs| {
        errs.into_iter()
            .map(|e| {
                let m = without_lines(&e.message);
                if e.entry.is_empty() {
                    m
                } else {
                    format!("{}: {m}", without_lines(&e.entry))
                }
            })
            .collect()
    })
}

/// A message without its references to lines (" on line 8", " (line
/// 33)"), which would point into the written file.
fn without_lines(m: &str) -> String {
    let mut out = m.to_string();
    for (open, close) in [(" (line ", ")"), (" on line ", "")] {
        while let Some(i) = out.find(open) {
            let rest = &out[i + open.len()..];
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || !rest[digits..].starts_with(close) {
                break;
            }
            out.replace_range(i..i + open.len() + digits + close.len(), "");
        }
    }
    out
}

/// A route operation's `dst` and `from`, parsed.
fn route_key(
    r: &RouteSpec,
) -> Result<(ipnetwork::Ipv4Network, Option<ipnetwork::Ipv4Network>), Refusal> {
    let net = |s: &str| {
        s.parse::<ipnetwork::Ipv4Network>()
            .ok()
            .filter(|n| n.network() == n.ip() && s.contains('/'))
            .ok_or_else(|| vec![format!("{s:?} is not a CIDR prefix like \"192.0.2.0/24\"")])
    };
    Ok((net(&r.dst)?, r.from.as_deref().map(net).transpose()?))
}

/// A route operation's keys as a `[[route]]` entry.
fn route_snippet(r: &RouteSpec) -> String {
    let mut t = toml::Table::new();
    t.insert(
        "route".into(),
        toml::Value::try_from(vec![r.clone()]).expect("plain values"),
    );
    toml::to_string(&t).expect("plain values")
}
