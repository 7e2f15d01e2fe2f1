//! A topology written back as a topology file: what `ctl show topology`
//! prints, and how an operation's result is checked with exactly the rules
//! of `check` (written, then read again).
//!
//! Reading what this writes gives the same topology (tests/topology_ops.rs
//! checks it on every golden scenario's file), except for the lines, and
//! for EIPs taken off by `unassociate-eip`, which a file cannot hold.

use super::model::{AlgAction, Topology};
use super::policy::{GroupType, Peer, Smtp};
use std::fmt::Write;

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of string literals.
fn list<I: IntoIterator<Item = String>>(items: I) -> String {
    let v: Vec<String> = items.into_iter().map(|s| q(&s)).collect();
    format!("[{}]", v.join(", "))
}

impl Topology {
    /// The topology as a file `Topology::from_toml` reads back to the same
    /// model; keys at their defaults are left out.
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "region = {}", q(&self.region));
        let _ = writeln!(s, "vpc_cidr = {}", q(&self.vpc_cidr.to_string()));
        let _ = writeln!(s, "hash_seed = {}", self.hash_seed);
        for e in &self.enis {
            let _ = writeln!(s, "\n[[eni]]\nname = {}", q(&e.name));
            if e.primary {
                let _ = writeln!(s, "primary = true");
            }
            let _ = writeln!(
                s,
                "private_ips = {}",
                list(e.private_ips.iter().map(|a| a.to_string()))
            );
            let _ = writeln!(s, "gateway = {}", q(&e.gateway.to_string()));
            if !e.security_groups.is_empty() {
                let names = e
                    .security_groups
                    .iter()
                    .map(|&g| self.group(g).name.clone());
                let _ = writeln!(s, "security_groups = {}", list(names));
            }
            if !e.attached {
                let _ = writeln!(s, "attached = false");
            }
        }
        for e in self.eips.iter().filter(|e| e.associated) {
            let _ = writeln!(
                s,
                "\n[[eip]]\naddress = {}\neni = {}\nmode = {}\nprivate_ip = {}",
                q(&e.address.to_string()),
                q(&self.eni(e.eni).name),
                q(e.mode.name()),
                q(&e.private_ip.to_string())
            );
            if let Some(m) = e.bandwidth_mbps {
                let _ = writeln!(s, "bandwidth_mbps = {m}");
            }
            if let Some(m) = e.inbound_mbps {
                let _ = writeln!(s, "inbound_mbps = {m}");
            }
        }
        for r in self.routes.iter().filter(|r| !r.implied) {
            let via = r.via.iter().map(|&e| self.eni(e).name.clone());
            let _ = writeln!(
                s,
                "\n[[route]]\ndst = {}\nvia = {}\nweights = {:?}\nbalance = {}\nmetric = {}",
                q(&r.dst.to_string()),
                list(via),
                r.weights,
                q(r.balance.name()),
                r.metric
            );
            if let Some(f) = r.from {
                let _ = writeln!(s, "from = {}", q(&f.to_string()));
            }
        }
        let _ = writeln!(
            s,
            "\n[alg]\nunsupported = {}\naction = {}",
            list(self.alg.unsupported.iter().map(|p| p.name().to_string())),
            q(match self.alg.action {
                AlgAction::Drop => "drop",
                AlgAction::Forward => "forward",
            })
        );
        let f = &self.flow_table;
        let _ = writeln!(
            s,
            "\n[flow_table]\ncapacity = {}\ntcp_established_timeout = {}\ntcp_transitory_timeout = {}\nudp_timeout = {}\nicmp_timeout = {}\nother_timeout = {}",
            f.capacity,
            f.tcp_established_timeout,
            f.tcp_transitory_timeout,
            f.udp_timeout,
            f.icmp_timeout,
            f.other_timeout
        );
        let _ = writeln!(
            s,
            "\n[icmp_errors]\nper_second = {}\nburst = {}",
            self.icmp_errors.per_second, self.icmp_errors.burst
        );
        for g in &self.security_groups {
            let _ = writeln!(
                s,
                "\n[[security_group]]\nname = {}\ntype = {}",
                q(&g.name),
                q(g.kind.name())
            );
            if g.kind == GroupType::Basic {
                let _ = writeln!(s, "internal_isolation = {}", g.internal_isolation);
            }
            if !g.members.is_empty() {
                let _ = writeln!(
                    s,
                    "members = {}",
                    list(g.members.iter().map(|n| n.to_string()))
                );
            }
            for r in &g.rules {
                let _ = writeln!(
                    s,
                    "\n[[security_group.rule]]\ndirection = {}\npolicy = {}\npriority = {}\nprotocol = {}\nport_range = {}",
                    q(r.direction.name()),
                    q(r.policy.name()),
                    r.priority,
                    q(r.protocol.name()),
                    q(&r.ports_text())
                );
                let _ = match r.peer {
                    Peer::Cidr(n) => writeln!(s, "cidr = {}", q(&n.to_string())),
                    Peer::Group(o) => writeln!(s, "group = {}", q(&self.group(o).name)),
                };
                if !r.description.is_empty() {
                    let _ = writeln!(s, "description = {}", q(&r.description));
                }
            }
        }
        for p in &self.bandwidth_plans {
            let eips = p
                .eips
                .iter()
                .map(|&e| self.eip(e))
                .filter(|e| e.associated)
                .map(|e| e.address.to_string());
            let _ = writeln!(
                s,
                "\n[[bandwidth_plan]]\nname = {}\nmbps = {}\neips = {}",
                q(&p.name),
                p.mbps,
                list(eips)
            );
        }
        if self.cloud.smtp_port_25 == Smtp::Allowed {
            let _ = writeln!(s, "\n[cloud]\nsmtp_port_25 = \"allowed\"");
        }
        s
    }
}
