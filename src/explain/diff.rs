//! `eipsim diff`: the same traffic through two topologies, and every
//! packet whose fate differs, grouped by the kind of change (Batfish's
//! differential questions, for one instance).
//!
//! The traffic is the user's captures, or else a probe set generated from
//! both topologies: from every address the instance shows, to an address
//! in every route prefix, on the ports that decide things (web, SSH, SMTP,
//! the ALG's well-known ports); and from the Internet to every EIP (and
//! from the VPC to every private IP) on those ports and on both sides of
//! every security group port range. Each probe is a flow of its own, so
//! none answers another.

use crate::config::{AlgProtocol, Peer, Topology};
use crate::engine::{Engine, Link, Verdict};
use crate::io::capture::CaptureError;
use crate::io::driver::{self, MemorySource, Output};
use crate::probe;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// What became of one packet in one topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    /// `forwarded`, `consumed` or `dropped`.
    pub verdict: &'static str,
    /// The drop reason.
    pub reason: Option<&'static str>,
    /// The port it left on.
    pub out_port: Option<&'static str>,
    /// The ENI it crossed.
    pub eni: Option<String>,
    /// The EIP it carried.
    pub eip: Option<Ipv4Addr>,
    /// The addresses it left with.
    pub addrs: Option<(Ipv4Addr, Ipv4Addr)>,
}

impl Fate {
    fn of(topo: &Topology, v: &Verdict, frame: &[u8]) -> Fate {
        let addrs = v.sends_frame().and_then(|_| {
            let b = frame.get(26..34)?;
            (frame.get(12..14)? == [8, 0]).then(|| {
                (
                    Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                    Ipv4Addr::new(b[4], b[5], b[6], b[7]),
                )
            })
        });
        Fate {
            verdict: v.name(),
            reason: v.reason().map(|r| r.name()),
            out_port: v.out_port().map(|p| p.name()),
            eni: v.eni().map(|e| topo.eni(e).name.clone()),
            eip: v.eip().map(|e| topo.eip(e).address),
            addrs,
        }
    }

    /// In words: `leave by eth1 as 203.0.113.11 (to internet)`, `dropped
    /// (alg_unsupported) at eth1 (203.0.113.11)`.
    pub fn text(&self) -> String {
        match (self.verdict, self.reason) {
            (_, Some(r)) => {
                let at = self
                    .eni
                    .as_deref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default();
                let eip = self.eip.map(|e| format!(" ({e})")).unwrap_or_default();
                format!("dropped ({r}){at}{eip}")
            }
            ("forwarded", _) => {
                let by = self
                    .eni
                    .as_deref()
                    .map(|e| format!(" by {e}"))
                    .unwrap_or_default();
                let port = self.out_port.unwrap_or("-");
                match (port, self.addrs) {
                    ("instance", Some((_, d))) => format!("reach the instance{by} at {d}"),
                    (_, Some((s, _))) => format!("leave{by} as {s} (to {port})"),
                    _ => format!("leave{by} (to {port})"),
                }
            }
            (v, _) => v.to_string(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "verdict": self.verdict,
            "reason": self.reason,
            "out_port": self.out_port,
            "eni": self.eni,
            "eip": self.eip.map(|a| a.to_string()),
            "src": self.addrs.map(|(s, _)| s.to_string()),
            "dst": self.addrs.map(|(_, d)| d.to_string()),
        })
    }
}

/// A kind of change and the packets it happened to.
#[derive(Debug, Clone)]
pub struct Change {
    /// The fate in the first topology.
    pub before: Fate,
    /// The fate in the second.
    pub after: Fate,
    /// The packets, as (input description, destination, 5-tuple key).
    pub packets: Vec<(String, Ipv4Addr, String)>,
}

/// The answer of `eipsim diff`.
#[derive(Debug, Clone)]
pub struct Diff {
    /// Packets sent through both.
    pub packets: usize,
    /// Whether they were generated (no captures given).
    pub generated: bool,
    /// The changes, most packets first.
    pub changes: Vec<Change>,
}

/// Runs `frames` (timestamp, port, frame) through a fresh engine for
/// `topo`, returning each frame's fate (held fragments: their final one).
fn fates(topo: &Topology, frames: &[(u64, Link, Vec<u8>)]) -> Vec<Fate> {
    let mut engine = Engine::new(topo.clone());
    let mut out: Vec<Option<Fate>> = vec![None; frames.len()];
    driver::run(
        &mut engine,
        &mut [&mut MemorySource::new(frames)],
        &mut |o| -> Result<(), CaptureError> {
            match o {
                Output::Frame {
                    origin,
                    frame,
                    verdict,
                    ..
                } if verdict != Verdict::Held => {
                    out[origin.number - 1] = Some(Fate::of(topo, &verdict, frame));
                }
                Output::Released {
                    origin, released, ..
                } => {
                    out[origin.number - 1] =
                        Some(Fate::of(topo, &released.verdict, &released.frame));
                }
                _ => {}
            }
            Ok(())
        },
    )
    .expect("frames in memory cannot fail to read");
    out.into_iter()
        .map(|f| {
            f.unwrap_or(Fate {
                verdict: "held",
                reason: None,
                out_port: None,
                eni: None,
                eip: None,
                addrs: None,
            })
        })
        .collect()
}

/// Compares the fates of `frames` in `a` and in `b`.
pub fn diff(a: &Topology, b: &Topology, frames: &[(u64, Link, Vec<u8>)], generated: bool) -> Diff {
    let (fa, fb) = (fates(a, frames), fates(b, frames));
    let mut changes: Vec<Change> = Vec::new();
    for ((x, y), (_, port, f)) in fa.into_iter().zip(fb).zip(frames) {
        if x == y {
            continue;
        }
        let dst = f
            .get(30..34)
            .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let desc = format!("{} on {port}", super::describe::frame(f));
        let key = f.get(26..38).map(|k| format!("{k:?}")).unwrap_or_default();
        match changes.iter_mut().find(|c| c.before == x && c.after == y) {
            Some(c) => c.packets.push((desc, dst, key)),
            None => changes.push(Change {
                before: x,
                after: y,
                packets: vec![(desc, dst, key)],
            }),
        }
    }
    changes.sort_by_key(|c| std::cmp::Reverse(c.packets.len()));
    Diff {
        packets: frames.len(),
        generated,
        changes,
    }
}

impl Change {
    /// `4 packets (4 flows) to 192.0.2.1 and 192.0.2.80: now leave by eth1
    /// as 203.0.113.11 (to internet) instead of leave by eth0 as
    /// 203.0.113.10 (to internet)`.
    pub fn text(&self) -> String {
        let flows: BTreeSet<&String> = self.packets.iter().map(|p| &p.2).collect();
        let dsts: BTreeSet<Ipv4Addr> = self.packets.iter().map(|p| p.1).collect();
        let mut list: Vec<String> = dsts.iter().take(3).map(|d| d.to_string()).collect();
        if dsts.len() > 3 {
            list.push(format!("{} more", dsts.len() - 3));
        }
        format!(
            "{} packet(s) ({} flow(s)) to {}: now {} instead of {}\n    e.g. {}\n",
            self.packets.len(),
            flows.len(),
            list.join(", "),
            self.after.text(),
            self.before.text(),
            self.packets[0].0
        )
    }
}

impl Diff {
    /// As `eipsim diff` prints it.
    pub fn text(&self, a: &str, b: &str) -> String {
        let differ: usize = self.changes.iter().map(|c| c.packets.len()).sum();
        let mut s = format!(
            "eipsim diff: {a} -> {b}: {} {} packet(s), {differ} differ\n",
            self.packets,
            if self.generated {
                "probe (generated from both topologies)"
            } else {
                "captured"
            }
        );
        for c in &self.changes {
            s.push_str(&c.text());
        }
        s.push_str(&format!(
            "summary: {differ} of {} packet(s) differ, in {} way(s)\n",
            self.packets,
            self.changes.len()
        ));
        s
    }

    /// As `eipsim diff --json` prints it.
    pub fn json(&self, a: &str, b: &str) -> Value {
        json!({
            "a": a,
            "b": b,
            "packets": self.packets,
            "generated": self.generated,
            "differ": self.changes.iter().map(|c| c.packets.len()).sum::<usize>(),
            "changes": self.changes.iter().map(|c| json!({
                "count": c.packets.len(),
                "flows": c.packets.iter().map(|p| &p.2).collect::<BTreeSet<_>>().len(),
                "before": c.before.json(),
                "after": c.after.json(),
                "destinations": c.packets.iter().map(|p| p.1.to_string()).collect::<BTreeSet<_>>(),
                "example": c.packets[0].0,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The ports probes use: web, SSH, SMTP, DNS and the ALG protocols' well-
/// known ports, TCP and UDP.
const PORTS: [(u8, u16); 12] = [
    (6, 80),
    (6, 443),
    (6, 22),
    (6, 25),
    (6, 21),
    (6, 554),
    (6, 1720),
    (6, 5060),
    (17, 53),
    (17, 69),
    (17, 5060),
    (17, 4500),
];

/// A probe set from both topologies (see the module documentation).
pub fn probes(a: &Topology, b: &Topology) -> Vec<(u64, Link, Vec<u8>)> {
    let mut set: BTreeSet<(u8, Link, Ipv4Addr, Ipv4Addr, u16)> = BTreeSet::new();
    let _ = AlgProtocol::ALL; // the ALG's ports are in PORTS
    for t in [a, b] {
        // Every route prefix, an address inside it (the prefix's first
        // host; for 0.0.0.0/0 a documentation address).
        let mut dsts: Vec<Ipv4Addr> = t
            .routes
            .iter()
            .map(|r| match r.dst.prefix() {
                0 => Ipv4Addr::new(198, 51, 100, 7),
                32 => r.dst.network(),
                _ => Ipv4Addr::from(u32::from(r.dst.network()) + 1),
            })
            .collect();
        dsts.push(Ipv4Addr::new(198, 51, 100, 7));
        let vpc_host = Ipv4Addr::from(u32::from(t.vpc_cidr.network()) | 0xc8);
        dsts.push(vpc_host);
        for (i, _) in t.enis.iter().enumerate().filter(|(_, e)| e.attached) {
            for src in t.os_addresses(crate::config::EniId(i as u16)) {
                for &d in &dsts {
                    for &(proto, port) in &PORTS {
                        set.insert((proto, Link::Instance, src, d, port));
                    }
                    set.insert((1, Link::Instance, src, d, 0));
                }
            }
        }
        // Inbound: every EIP from the Internet, every private IP from the
        // VPC, on the ports above and both sides of every rule's ranges.
        let mut ports: BTreeSet<(u8, u16)> = PORTS.into_iter().collect();
        for g in &t.security_groups {
            for r in &g.rules {
                let proto = match r.protocol.name() {
                    "tcp" => 6,
                    "udp" => 17,
                    _ => continue,
                };
                for p in &r.ports {
                    for x in [
                        p.start.saturating_sub(1),
                        p.start,
                        p.end,
                        p.end.saturating_add(1),
                    ] {
                        if x > 0 {
                            ports.insert((proto, x));
                        }
                    }
                }
                if let Peer::Cidr(n) = r.peer
                    && n.prefix() > 0
                {
                    // A source inside the rule's prefix too.
                    for e in t.eips.iter().filter(|e| e.associated) {
                        set.insert((proto, Link::Internet, n.network(), e.address, p_first(r)));
                    }
                }
            }
        }
        for e in t.eips.iter().filter(|e| e.associated) {
            for &(proto, port) in &ports {
                set.insert((
                    proto,
                    Link::Internet,
                    Ipv4Addr::new(198, 51, 100, 7),
                    e.address,
                    port,
                ));
            }
            set.insert((
                1,
                Link::Internet,
                Ipv4Addr::new(198, 51, 100, 7),
                e.address,
                0,
            ));
        }
        for e in t.enis.iter().filter(|e| e.attached) {
            for &ip in &e.private_ips {
                for &(proto, port) in &ports {
                    set.insert((proto, Link::Vpc, vpc_host, ip, port));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (i, (proto, port, src, dst, dport)) in set.into_iter().enumerate() {
        let (s, d) = (src.to_string(), dst.to_string());
        let sport = 20_000 + (i % 40_000) as u16;
        let f = match proto {
            6 => probe::tcp(port, &s, &d, sport, dport, "S", b""),
            17 => probe::udp(port, &s, &d, sport, dport, b""),
            _ => probe::ping(port, &s, &d, sport, 1, false),
        };
        out.push((1_000_000 * (i as u64 + 1), port, f));
    }
    out
}

/// A rule's first port (its ranges' first start).
fn p_first(r: &crate::config::SgRule) -> u16 {
    r.ports.first().map_or(0, |p| p.start.max(1))
}
