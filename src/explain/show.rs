//! `eipsim show`: the topology as the instance OS and the cloud console
//! would show it: `ip addr`, the EIP table, `ip route`, and a Graphviz
//! diagram.

use crate::config::{AssociationMode, EniId, Topology};
use serde_json::{Value, json};
use std::fmt::Write;

/// The OS view, the EIP table and the route table, as text.
pub fn text(t: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# ENIs as the instance OS shows them (ip addr)");
    for (i, eni) in t.enis.iter().enumerate() {
        let id = EniId(i as u16);
        let kind = match (eni.primary, t.cut_through_eip(id)) {
            (true, _) => "primary ENI",
            (false, Some(_)) => "secondary ENI, cut-through: no private network",
            (false, None) => "secondary ENI",
        };
        let _ = writeln!(s, "{}: {}: <{kind}>", i + 1, eni.name);
        for a in t.os_addresses(id) {
            let what = if t.cut_through_eip(id).is_some() {
                "EIP"
            } else if a == eni.primary_ip() {
                "primary private IP"
            } else {
                "secondary private IP"
            };
            let _ = writeln!(s, "    inet {a}/32 ({what})");
        }
    }
    let _ = writeln!(s, "\n# EIPs");
    let _ = writeln!(
        s,
        "{:<16} {:<12} {:<6} {:<16} instance fee",
        "EIP", "mode", "ENI", "private IP"
    );
    for (i, e) in t.eips.iter().enumerate() {
        let fee = if t.eip_instance_fee(crate::config::EipId(i as u16)) {
            "yes"
        } else {
            "no"
        };
        // A cut-through EIP is delivered unchanged: it takes the place of
        // the ENI's primary private IP, said after the row to keep columns.
        let (private, note) = match e.mode {
            AssociationMode::Nat => (e.private_ip.to_string(), String::new()),
            AssociationMode::CutThrough => {
                ("-".into(), format!("  (the EIP replaces {})", e.private_ip))
            }
        };
        let _ = writeln!(
            s,
            "{:<16} {:<12} {:<6} {:<16} {}",
            e.address.to_string(),
            e.mode.name(),
            t.eni(e.eni).name,
            private,
            if note.is_empty() {
                fee.to_string()
            } else {
                format!("{fee:<12}{note}")
            },
        );
    }
    let _ = writeln!(s, "\n# Routes (ip route)");
    for r in &t.routes {
        let _ = writeln!(s, "{}", t.route_text(r));
    }
    s
}

/// The same, as JSON.
pub fn json(t: &Topology) -> Value {
    let enis: Vec<Value> = t
        .enis
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let id = EniId(i as u16);
            json!({
                "name": e.name,
                "primary": e.primary,
                "private_ips": e.private_ips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "os_addresses": t.os_addresses(id).iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "private_network": t.cut_through_eip(id).is_none(),
            })
        })
        .collect();
    let eips: Vec<Value> = t
        .eips
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "address": e.address.to_string(),
                "mode": e.mode.name(),
                "eni": t.eni(e.eni).name,
                "private_ip": e.private_ip.to_string(),
                "instance_fee": t.eip_instance_fee(crate::config::EipId(i as u16)),
            })
        })
        .collect();
    let routes: Vec<Value> = t
        .routes
        .iter()
        .map(|r| {
            json!({
                "dst": r.dst.to_string(),
                "from": r.from.map(|f| f.to_string()),
                "via": r.via.iter().map(|v| t.eni(*v).name.clone()).collect::<Vec<_>>(),
                "weights": r.weights,
                "balance": r.balance.name(),
                "metric": r.metric,
                "implied": r.implied,
            })
        })
        .collect();
    json!({
        "region": t.region,
        "vpc_cidr": t.vpc_cidr.to_string(),
        "enis": enis,
        "eips": eips,
        "routes": routes,
    })
}

/// A DOT string; `\n` in `s` stays a DOT line break.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// A Graphviz diagram: instance, ENIs, EIPs, the Internet and the VPC, and
/// the routes on the edges from the instance to its ENIs.
pub fn dot(t: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph eipsim {{");
    let _ = writeln!(s, "  rankdir=LR;");
    let _ = writeln!(s, "  node [fontname=\"Helvetica\"];");
    let _ = writeln!(
        s,
        "  instance [shape=box3d, label=\"instance\\n{}\"];",
        t.region
    );
    let _ = writeln!(s, "  internet [shape=ellipse, label=\"Internet\"];");
    let _ = writeln!(s, "  vpc [shape=ellipse, label=\"VPC\\n{}\"];", t.vpc_cidr);
    for (i, e) in t.enis.iter().enumerate() {
        let id = EniId(i as u16);
        let addrs: Vec<String> = t.os_addresses(id).iter().map(|a| a.to_string()).collect();
        let label = format!(
            "{}{}\\n{}",
            e.name,
            if e.primary { " (primary)" } else { "" },
            addrs.join("\\n")
        );
        let _ = writeln!(
            s,
            "  {} [shape=box, label={}];",
            quote(&format!("eni:{}", e.name)),
            quote(&label)
        );
        let routes: Vec<String> = t
            .routes
            .iter()
            .filter(|r| r.via.contains(&id))
            .map(|r| {
                let dst = if r.dst.prefix() == 0 {
                    "default".to_string()
                } else {
                    r.dst.to_string()
                };
                let from = r.from.map(|f| format!(" from {f}")).unwrap_or_default();
                let k = r.via.iter().position(|v| *v == id).unwrap_or(0);
                let weight = if r.via.len() > 1 {
                    format!(
                        " weight {}/{} ({})",
                        r.weights[k],
                        r.weights.iter().sum::<u32>(),
                        r.balance.name()
                    )
                } else {
                    String::new()
                };
                format!("{dst}{from} metric {}{weight}", r.metric)
            })
            .collect();
        let _ = writeln!(
            s,
            "  instance -> {} [label={}];",
            quote(&format!("eni:{}", e.name)),
            quote(&routes.join("\\n"))
        );
        if t.cut_through_eip(id).is_none() {
            let _ = writeln!(
                s,
                "  {} -> vpc [style=dashed];",
                quote(&format!("eni:{}", e.name))
            );
        }
    }
    for e in &t.eips {
        let node = quote(&format!("eip:{}", e.address));
        let style = match e.mode {
            AssociationMode::Nat => "shape=oval",
            AssociationMode::CutThrough => "shape=oval, style=bold",
        };
        let _ = writeln!(
            s,
            "  {node} [{style}, label={}];",
            quote(&format!("{}\\n{}", e.address, e.mode.name()))
        );
        let label = match e.mode {
            AssociationMode::Nat => format!("NAT {}", e.private_ip),
            AssociationMode::CutThrough => "cut-through".to_string(),
        };
        let _ = writeln!(
            s,
            "  {} -> {node} [label={}];",
            quote(&format!("eni:{}", t.eni(e.eni).name)),
            quote(&label)
        );
        let _ = writeln!(s, "  {node} -> internet;");
    }
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::from_toml(crate::demo::STANDARD).unwrap()
    }

    #[test]
    fn os_view_hides_nat_eips_and_shows_cut_through() {
        let s = text(&topo());
        assert!(
            s.contains("1: eth0: <primary ENI>\n    inet 172.16.0.10/32 (primary private IP)"),
            "{s}"
        );
        assert!(s.contains("3: eth2: <secondary ENI, cut-through: no private network>\n    inet 203.0.113.12/32 (EIP)"), "{s}");
        assert!(
            !s.contains("inet 203.0.113.10"),
            "a NAT EIP is not on the OS: {s}"
        );
        assert!(
            s.contains("203.0.113.13     nat          eth1   172.16.1.11      yes"),
            "{s}"
        );
        assert!(s.contains("default dev eth0 metric 0"), "{s}");
    }

    /// Every EIP row keeps the header's columns (16, 12, 6, 16 wide); the
    /// cut-through row says what its EIP replaces after the fee column.
    #[test]
    fn eip_rows_keep_their_columns() {
        let s = text(&topo());
        let head = s.lines().find(|l| l.starts_with("EIP ")).unwrap();
        let fee_col = head.find("instance fee").unwrap();
        for l in s.lines().filter(|l| l.starts_with("203.0.113.")) {
            assert!(
                l[fee_col..].starts_with("yes") || l[fee_col..].starts_with("no"),
                "{l}"
            );
        }
        assert!(
            s.contains("203.0.113.12     cut-through  eth2   -                yes           (the EIP replaces 172.16.2.10)"),
            "{s}"
        );
    }

    #[test]
    fn json_and_dot_describe_every_eip() {
        let t = topo();
        let j = json(&t);
        assert_eq!(j["eips"].as_array().unwrap().len(), 4);
        assert_eq!(j["enis"][2]["private_network"], false);
        let d = dot(&t);
        assert!(d.starts_with("digraph eipsim {") && d.trim_end().ends_with('}'));
        for e in &t.eips {
            assert!(d.contains(&format!("\"eip:{}\"", e.address)), "{d}");
        }
        assert!(
            !d.contains("\"eni:eth2\" -> vpc"),
            "cut-through has no private network"
        );
    }
}
