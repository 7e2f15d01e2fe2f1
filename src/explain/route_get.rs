//! `eipsim route get`: like `ip route get`, answered by the engine itself.
//!
//! The question is turned into a packet from the instance and handed to a
//! fresh engine, so the answer comes from the code that forwards (the same
//! route lookup, source selection, EIP stage and ALG check), not from a
//! second implementation that could drift.

use crate::config::{Balance, Topology};
use crate::engine::{Engine, Event, Link, Verdict};
use crate::io::capture::CaptureError;
use crate::io::driver::{self, MemorySource, Output};
use crate::probe;
use serde_json::{Value, json};
use std::net::Ipv4Addr;

/// The transport of a `route get` question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP SYN.
    Tcp,
    /// An empty UDP datagram.
    Udp,
    /// An ICMP echo request (its identifier is the query's `sport`).
    Icmp,
}

impl Proto {
    /// `tcp`, `udp` or `icmp` (lower case only); `None` for anything else.
    pub fn from_name(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "icmp" => Some(Proto::Icmp),
            _ => None,
        }
    }
    /// The name [`Proto::from_name`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

/// A `route get` question: a packet the instance would send.
#[derive(Debug, Clone)]
pub struct RouteQuery {
    /// The destination.
    pub dst: Ipv4Addr,
    /// The application's source; default: the primary ENI's primary IP.
    pub from: Option<Ipv4Addr>,
    /// The transport of the probe packet.
    pub proto: Proto,
    /// Source port (ICMP: the echo identifier).
    pub sport: u16,
    /// Destination port (unused for ICMP).
    pub dport: u16,
    /// The packet arrives at `dst` from `from` (on `internet`, or on `vpc`
    /// for a VPC address) instead of leaving the instance: the answer is
    /// the ingress path (EIP, ENI, security groups, ALG).
    pub inbound: bool,
    /// Also answer for the reply (`--reply`).
    pub reply: bool,
}

/// The answer, as `route get` prints it.
#[derive(Debug, Clone)]
pub struct RouteAnswer {
    /// The question.
    pub query: RouteQuery,
    /// The source the probe was sent from (the query's, or the default).
    pub from: Ipv4Addr,
    /// The route the engine used, `ip route` style (None: no route
    /// matched, or the probe was dropped before the lookup).
    pub route: Option<String>,
    /// Whether the probe reached the route lookup at all (a source the
    /// instance does not own is dropped before it).
    pub route_reached: bool,
    /// What the engine did with the probe.
    pub verdict: Verdict,
    /// The name of the ENI the probe crossed (or would have, if dropped
    /// after the route lookup).
    pub eni: Option<String>,
    /// The source as the chosen ENI carries it (after source selection).
    pub source: Option<Ipv4Addr>,
    /// What the far side sees as the source (the EIP in NAT mode).
    pub public: Option<Ipv4Addr>,
    /// The EIP involved and its mode's name (`nat`, `cut-through`).
    pub eip: Option<(Ipv4Addr, &'static str)>,
    /// The unsupported ALG protocol the packet's ports name, as the
    /// engine's ALG stage recognised it (None if the stage was not reached).
    pub alg: Option<&'static str>,
    /// What the engine's ALG stage said (its trace sentence), if it ran.
    pub alg_step: Option<String>,
    /// For a route that picks a random ENI per new flow: the choices and
    /// their weights; `eni`, `source` and `public` are then left empty, as
    /// they depend on the draw.
    pub choices: Option<Vec<(String, u32)>>,
    /// The destination was one of the instance's own EIPs: the probe came
    /// back in through it (hairpinning); (that EIP, where it arrived).
    /// `eni`, `eip` and `public` are then the sender's, as the target sees
    /// them.
    pub hairpin: Option<(Ipv4Addr, Ipv4Addr)>,
    /// The security group judgements on the way (egress; for a hairpin
    /// also the target's ingress; for `inbound` the ingress), in words.
    pub security: Vec<String>,
    /// A rule of the cloud's own that dropped the probe, in words.
    pub cloud: Option<String>,
    /// Inbound: the address the instance sees as destination.
    pub to: Option<Ipv4Addr>,
    /// With `--reply`: what happens to the reply (`None` if the probe did
    /// not leave).
    pub reply: Option<ReplyAnswer>,
    /// The port the probe arrived on: `instance`, or for `inbound`
    /// `internet` (or `vpc` for an address inside the VPC).
    pub in_port: Link,
}

fn addrs(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let b = frame.get(26..34)?;
    Some((
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        Ipv4Addr::new(b[4], b[5], b[6], b[7]),
    ))
}

/// Runs one frame through `engine` by the driver (as replay would).
fn run_one(engine: &mut Engine, ts: u64, port: Link, frame: Vec<u8>) -> Ran {
    let input = [(ts, port, frame)];
    let mut ran = None;
    driver::run(
        engine,
        &mut [&mut MemorySource::new(&input)],
        &mut |o| -> Result<(), CaptureError> {
            if let Output::Frame {
                verdict,
                frame,
                events,
                ..
            } = o
            {
                let out = verdict.sends_frame().and_then(|_| addrs(frame));
                ran = Some(Ran {
                    verdict,
                    out,
                    events,
                });
            }
            Ok(())
        },
    )
    .expect("frames in memory cannot fail to read");
    ran.expect("the driver reports the one frame")
}

/// The reply to a `route get` probe (`--reply`).
#[derive(Debug, Clone)]
pub struct ReplyAnswer {
    /// Its source: the address the probe reached.
    pub from: Ipv4Addr,
    /// Its destination: the address the probe came from, as seen there.
    pub to: Ipv4Addr,
    /// The port it comes in on (the one the probe left by).
    pub arrives_on: Link,
    /// What the engine did with it.
    pub verdict: Verdict,
    /// The addresses it left with, if it left.
    pub out: Option<(Ipv4Addr, Ipv4Addr)>,
    /// The ENI it crossed.
    pub eni: Option<String>,
    /// The EIP it carried.
    pub eip: Option<Ipv4Addr>,
    /// It matched the probe's flow (as replies do).
    pub flow_hit: bool,
}

/// What the engine did to the probe.
struct Ran {
    verdict: Verdict,
    /// The addresses it left with, if it left.
    out: Option<(Ipv4Addr, Ipv4Addr)>,
    events: Vec<Event>,
}

/// Answers a query for `topo`: the probe packet goes through a fresh
/// engine by the one driver, and every line of the answer comes from the
/// events the stages recorded (no lookup of its own).
pub fn route_get(topo: &Topology, q: &RouteQuery) -> RouteAnswer {
    let primary = topo.enis.iter().find(|e| e.primary).map(|e| e.primary_ip());
    let from = match q.inbound {
        true => q.from.unwrap_or(Ipv4Addr::UNSPECIFIED),
        false => q.from.or(primary).unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let (src, dst) = (from.to_string(), q.dst.to_string());
    let port = match q.inbound {
        false => Link::Instance,
        true if topo.vpc_cidr.contains(q.dst) => Link::Vpc,
        true => Link::Internet,
    };
    let frame = match q.proto {
        Proto::Tcp => probe::tcp(port, &src, &dst, q.sport, q.dport, "S", b""),
        Proto::Udp => probe::udp(port, &src, &dst, q.sport, q.dport, b""),
        Proto::Icmp => probe::ping(port, &src, &dst, q.sport, 1, false),
    };
    let mut engine = Engine::new(topo.clone());
    engine.set_tracing(true);
    let Ran {
        verdict,
        out,
        events,
    } = run_one(&mut engine, 0, port, frame);
    // The reply, as the far end (or the instance) would send it back to
    // what it saw, through the same engine: its flow table decides.
    let reply = match (q.reply, verdict.sends_frame(), out) {
        (true, Some(back_on), Some((s, d))) => {
            let (src, dst) = (d.to_string(), s.to_string());
            let f = match q.proto {
                Proto::Tcp => probe::tcp(back_on, &src, &dst, q.dport, q.sport, "SA", b""),
                Proto::Udp => probe::udp(back_on, &src, &dst, q.dport, q.sport, b""),
                Proto::Icmp => probe::ping(back_on, &src, &dst, q.sport, 1, true),
            };
            let r = run_one(&mut engine, 1_000_000, back_on, f);
            let flow_hit = r.events.iter().any(|e| matches!(e, Event::FlowHit { .. }));
            Some(ReplyAnswer {
                from: d,
                to: s,
                arrives_on: back_on,
                verdict: r.verdict,
                out: r.out,
                eni: r.verdict.eni().map(|e| topo.eni(e).name.clone()),
                eip: r.verdict.eip().map(|e| topo.eip(e).address),
                flow_hit,
            })
        }
        _ => None,
    };
    let route = events.iter().find_map(|e| match e {
        Event::Route { candidates, .. } => Some(candidates.first().copied()),
        _ => None,
    });
    let route_reached = route.is_some();
    let route = route.flatten().map(|i| topo.route_text(&topo.routes[i]));
    let choices = events.iter().find_map(|e| match e {
        Event::Balance {
            balance: Balance::Random,
            nexthops,
            ..
        } => Some(
            nexthops
                .iter()
                .scan(0, |below, &(eni, c)| {
                    let w = c - *below;
                    *below = c;
                    Some((topo.eni(eni).name.clone(), w))
                })
                .collect::<Vec<_>>(),
        ),
        _ => None,
    });
    // As the ENI carries it: what source selection chose.
    let source = events.iter().find_map(|e| match *e {
        Event::SourceKept { src, .. } => Some(src),
        Event::SourceSelected { to, .. } => Some(to),
        _ => None,
    });
    let alg_event = events.iter().find(|e| {
        matches!(
            e,
            Event::AlgNotApplied { .. }
                | Event::AlgSupported { .. }
                | Event::AlgUnsupported { .. }
                | Event::AlgFlow { .. }
        )
    });
    let alg = alg_event.and_then(|e| match *e {
        Event::AlgNotApplied { protocol, .. } => protocol,
        Event::AlgUnsupported { protocol, .. } => Some(protocol),
        _ => None,
    });
    let forwarded = matches!(
        verdict,
        Verdict::Forwarded { .. } | Verdict::Fragmented { .. }
    );
    // What the Internet sees; a VPC destination sees the private source,
    // which is no public address.
    let hairpin = events.iter().find_map(|e| match *e {
        Event::Hairpin { eip } => Some(topo.eip(eip).address),
        _ => None,
    });
    let hairpin = hairpin.zip(out.map(|(_, d)| d).filter(|_| forwarded));
    let public = if forwarded && (verdict.out_port() == Some(Link::Internet) || hairpin.is_some()) {
        out.map(|(s, _)| s)
    } else {
        None
    };
    let random = choices.is_some();
    // A hairpin's ENI and EIP are the sender's: its first flow's.
    let first_flow = events.iter().find_map(|e| match e {
        Event::FlowCreated { flow, .. } | Event::FlowHit { flow, .. } => Some((flow.eni, flow.eip)),
        _ => None,
    });
    let (eni_id, eip_id) = match (hairpin, first_flow) {
        (Some(_), Some((eni, eip))) => (Some(eni), eip),
        _ => (verdict.eni(), verdict.eip()),
    };
    let security = events
        .iter()
        .filter(|e| matches!(e, Event::SecurityGroup { .. }))
        .map(|e| super::trace::text(topo, e))
        .collect();
    let cloud = events
        .iter()
        .find(|e| {
            matches!(
                e,
                Event::SmtpBlocked { .. } | Event::CutThroughReserved { .. }
            )
        })
        .map(|e| super::trace::text(topo, e));
    let to = events.iter().find_map(|e| match e {
        Event::LocalDestination {
            found: Some((_, _, addr)),
            ..
        } if q.inbound => Some(*addr),
        _ => None,
    });
    RouteAnswer {
        reply,
        in_port: port,
        security,
        cloud,
        to,
        query: q.clone(),
        from,
        route,
        route_reached,
        eni: eni_id.filter(|_| !random).map(|e| topo.eni(e).name.clone()),
        eip: eip_id
            .filter(|_| !random)
            .map(|e| (topo.eip(e).address, topo.eip(e).mode.name())),
        source: source.filter(|_| !random),
        public: public.filter(|_| !random),
        alg: alg.map(|p| p.name()),
        alg_step: alg_event.map(|e| super::trace::text(topo, e)),
        choices,
        verdict,
        hairpin,
    }
}

impl RouteAnswer {
    /// The answer as `route get` prints it: the question, then one
    /// indented line each for route, eni, source, public, alg, verdict.
    pub fn text(&self) -> String {
        let q = &self.query;
        if q.inbound {
            return self.inbound_text();
        }
        let mut s = match q.proto {
            // An echo request: its identifier, no ports.
            Proto::Icmp => format!("{} from {} icmp echo id {}\n", q.dst, self.from, q.sport),
            _ => format!(
                "{} from {} {} {} > {}\n",
                q.dst,
                self.from,
                q.proto.name(),
                q.sport,
                q.dport
            ),
        };
        let line = |s: &mut String, k: &str, v: String| s.push_str(&format!("    {k:<9} {v}\n"));
        line(
            &mut s,
            "route",
            match (&self.route, self.route_reached) {
                (Some(r), _) => r.clone(),
                (None, true) => "none".into(),
                (None, false) => "not reached (dropped before the route lookup)".into(),
            },
        );
        if let Some(c) = &self.choices {
            let list: Vec<String> = c.iter().map(|(e, w)| format!("{e} (weight {w})")).collect();
            line(
                &mut s,
                "eni",
                format!(
                    "a random draw per new flow, remembered in the flow: {}",
                    list.join(" or ")
                ),
            );
            line(&mut s, "source", "depends on the ENI drawn".into());
            line(&mut s, "public", "depends on the ENI drawn".into());
        } else {
            line(
                &mut s,
                "eni",
                self.eni.clone().unwrap_or_else(|| "-".into()),
            );
            line(
                &mut s,
                "source",
                self.source
                    .map_or("-".into(), |a| format!("{a} (as the ENI carries it)")),
            );
            let public = match (self.public, self.eip, self.verdict.out_port()) {
                (Some(p), Some((_, mode)), _) => format!("{p} (EIP, {mode})"),
                (_, _, Some(Link::Vpc)) => "none: a VPC destination sees the private source".into(),
                // Dropped after the EIP stage (a cloud rule, the ALG, the
                // policer): the address it would have left with.
                (None, Some((a, mode)), None) => {
                    format!("{a} (EIP, {mode}) had it left; it was dropped")
                }
                _ => "none".into(),
            };
            line(&mut s, "public", public);
        }
        if let Some((eip, to)) = self.hairpin {
            line(
                &mut s,
                "hairpin",
                format!(
                    "{eip} is this instance's own EIP: back in through it, to {to}, on instance (RFC 4787 REQ-9)"
                ),
            );
        }
        let alg = match (&self.alg_step, self.verdict.out_port()) {
            (Some(step), _) => step.clone(),
            (None, Some(Link::Vpc)) => "not applied on the VPC path".into(),
            (None, Some(_)) if self.eip.is_some_and(|(_, m)| m == "cut-through") => {
                "not applied: cut-through carries every IP protocol".into()
            }
            (None, _) => "not reached".into(),
        };
        self.security_lines(&mut s);
        line(&mut s, "alg", alg);
        self.tail(&mut s);
        s
    }

    /// The security group judgements, one line each (before the ALG's,
    /// in path order).
    fn security_lines(&self, s: &mut String) {
        for j in &self.security {
            s.push_str(&format!("    {:<9} {j}\n", "secgroup"));
        }
    }

    /// The lines every answer ends with: a cloud rule, the verdict.
    fn tail(&self, s: &mut String) {
        let line = |s: &mut String, k: &str, v: &str| s.push_str(&format!("    {k:<9} {v}\n"));
        if let Some(c) = &self.cloud {
            line(s, "cloud", c);
        }
        let verdict = match self.verdict {
            Verdict::Dropped { reason, .. } => {
                format!("dropped: {}: {}", reason.name(), reason.explain())
            }
            v => format!("{} to {}", v.name(), v.out_port().map_or("-", |p| p.name())),
        };
        line(s, "verdict", &verdict);
        if self.query.reply {
            let r = match &self.reply {
                None => "none: the packet does not leave, so nothing answers it".to_string(),
                Some(r) => {
                    let how = match (r.verdict, r.out) {
                        (Verdict::Dropped { reason, .. }, _) => {
                            format!("dropped: {}", reason.name())
                        }
                        (v, Some((src, dst))) => format!(
                            "{} to {} as {src} > {dst}{}{}",
                            v.name(),
                            v.out_port().map_or("-", |p| p.name()),
                            r.eni
                                .as_deref()
                                .map(|e| format!(" via {e}"))
                                .unwrap_or_default(),
                            r.eip.map(|e| format!(", EIP {e}")).unwrap_or_default(),
                        ),
                        (v, None) => v.name().to_string(),
                    };
                    format!(
                        "{} > {} in on {}: {}{}",
                        r.from,
                        r.to,
                        r.arrives_on,
                        if r.flow_hit {
                            "the probe's flow: "
                        } else {
                            "no flow of the probe's: "
                        },
                        how
                    )
                }
            };
            line(s, "reply", &r);
        }
    }

    /// `route get --inbound`: the packet from `from` arriving at `dst`.
    fn inbound_text(&self) -> String {
        let q = &self.query;
        let on = self.in_port;
        let mut s = match q.proto {
            Proto::Icmp => format!(
                "{} from {} icmp echo id {}, arriving on {on}\n",
                q.dst, self.from, q.sport
            ),
            _ => format!(
                "{} from {} {} {} > {}, arriving on {on}\n",
                q.dst,
                self.from,
                q.proto.name(),
                q.sport,
                q.dport
            ),
        };
        let line = |s: &mut String, k: &str, v: String| s.push_str(&format!("    {k:<9} {v}\n"));
        line(
            &mut s,
            "eip",
            match (self.eip, self.in_port) {
                (Some((a, m)), _) => format!("{a} ({m})"),
                (None, Link::Vpc) => "none: a private IP, from the VPC".into(),
                (None, _) => format!("none: {} is no EIP of this instance", q.dst),
            },
        );
        line(
            &mut s,
            "eni",
            self.eni.clone().unwrap_or_else(|| "-".into()),
        );
        line(
            &mut s,
            "to",
            self.to.map_or("-".into(), |a| {
                format!("{a} (the destination as the instance sees it)")
            }),
        );
        self.security_lines(&mut s);
        line(
            &mut s,
            "alg",
            self.alg_step
                .clone()
                .unwrap_or_else(|| "not reached".into()),
        );
        self.tail(&mut s);
        s
    }

    /// The answer as one JSON object (`route get --json`), addresses as
    /// strings.
    pub fn json(&self) -> Value {
        json!({
            "dst": self.query.dst.to_string(),
            "from": self.from.to_string(),
            "proto": self.query.proto.name(),
            // An echo request: `sport` is its identifier, and it has no
            // destination port.
            "sport": self.query.sport,
            "dport": (self.query.proto != Proto::Icmp).then_some(self.query.dport),
            "route": self.route,
            "eni": self.eni,
            "source": self.source.map(|a| a.to_string()),
            "public": self.public.map(|a| a.to_string()),
            "eip": self.eip.map(|(a, _)| a.to_string()),
            "mode": self.eip.map(|(_, m)| m),
            "alg": self.alg,
            "alg_step": self.alg_step,
            "choices": self.choices.as_ref().map(|c| c.iter().map(|(e, w)| json!({"eni": e, "weight": w})).collect::<Vec<_>>()),
            "verdict": self.verdict.name(),
            "out_port": self.verdict.out_port().map(|p| p.name()),
            "reason": self.verdict.reason().map(|r| r.name()),
            "hairpin": self.hairpin.map(|(eip, to)| json!({"eip": eip.to_string(), "to": to.to_string()})),
            "inbound": self.query.inbound,
            "to": self.to.map(|a| a.to_string()),
            "security_groups": self.security,
            "cloud": self.cloud,
            "reply": self.reply.as_ref().map(|r| json!({
                "from": r.from.to_string(),
                "to": r.to.to_string(),
                "in_port": r.arrives_on.name(),
                "flow_hit": r.flow_hit,
                "verdict": r.verdict.name(),
                "reason": r.verdict.reason().map(|x| x.name()),
                "out_port": r.verdict.out_port().map(|p| p.name()),
                "src": r.out.map(|(a, _)| a.to_string()),
                "dst": r.out.map(|(_, b)| b.to_string()),
                "eni": r.eni,
                "eip": r.eip.map(|a| a.to_string()),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(extra: &str, dst: &str, from: Option<&str>, proto: Proto, dport: u16) -> RouteAnswer {
        let topo = Topology::from_toml(&format!("{}\n{extra}", crate::demo::STANDARD)).unwrap();
        let q = RouteQuery {
            dst: dst.parse().unwrap(),
            from: from.map(|f| f.parse().unwrap()),
            proto,
            sport: 50000,
            dport,
            inbound: false,
            reply: false,
        };
        route_get(&topo, &q)
    }

    /// RFC 4787 REQ-9: to one of its own EIPs, the instance's packet comes
    /// back in through it; the answer names the sender's ENI and EIP.
    #[test]
    fn an_own_eip_is_a_hairpin() {
        let a = ask("", "203.0.113.11", None, Proto::Tcp, 80);
        assert_eq!(
            a.hairpin,
            Some((
                "203.0.113.11".parse().unwrap(),
                "172.16.1.10".parse().unwrap()
            ))
        );
        assert_eq!(a.verdict.out_port(), Some(Link::Instance));
        assert_eq!(a.eni.as_deref(), Some("eth0"));
        assert_eq!(a.public, Some("203.0.113.10".parse().unwrap()));
        assert!(
            a.text()
                .contains("hairpin   203.0.113.11 is this instance's own EIP")
        );
        assert_eq!(a.json()["hairpin"]["to"], "172.16.1.10");
        assert!(
            ask("", "198.51.100.7", None, Proto::Tcp, 80)
                .hairpin
                .is_none()
        );
    }

    #[test]
    fn random_routes_list_the_choices() {
        let a = ask(
            "[[route]]\ndst = \"192.0.2.0/24\"\nvia = [\"eth0\", \"eth1\"]\nbalance = \"random\"\n",
            "192.0.2.9",
            None,
            Proto::Udp,
            4500,
        );
        assert_eq!(a.eni, None);
        assert_eq!(
            a.choices,
            Some(vec![("eth0".to_string(), 1), ("eth1".to_string(), 1)])
        );
        assert!(a.text().contains("a random draw per new flow, remembered in the flow: eth0 (weight 1) or eth1 (weight 1)"), "{}", a.text());
    }

    #[test]
    fn default_route_nat() {
        let a = ask("", "198.51.100.7", None, Proto::Tcp, 443);
        assert_eq!(a.eni.as_deref(), Some("eth0"));
        assert_eq!(a.source, Some(Ipv4Addr::new(172, 16, 0, 10)));
        assert_eq!(a.public, Some(Ipv4Addr::new(203, 0, 113, 10)));
        assert!(a.route.as_deref().unwrap().starts_with("default dev eth0"));
        assert!(
            a.text().contains("public    203.0.113.10 (EIP, nat)"),
            "{}",
            a.text()
        );
    }

    #[test]
    fn source_selection_and_alg_and_drops() {
        let a = ask(
            "[[route]]\ndst = \"198.51.100.0/24\"\nvia = \"eth1\"\n",
            "198.51.100.7",
            None,
            Proto::Udp,
            5060,
        );
        assert_eq!(
            a.source,
            Some(Ipv4Addr::new(172, 16, 1, 10)),
            "eth1's primary IP"
        );
        assert_eq!(a.alg, Some("sip"));
        assert_eq!(
            a.verdict.reason(),
            Some(crate::engine::DropReason::AlgUnsupported)
        );
        assert!(
            a.text()
                .contains("is sip, which the NAT ALG does not support"),
            "{}",
            a.text()
        );
        let a = ask("", "172.16.100.5", None, Proto::Icmp, 0);
        assert_eq!(a.verdict.out_port(), Some(Link::Vpc));
        assert_eq!(a.public, None);
        assert!(
            a.text()
                .contains("none: a VPC destination sees the private source"),
            "{}",
            a.text()
        );
        let a = ask("", "198.51.100.7", Some("172.16.1.12"), Proto::Tcp, 80);
        assert_eq!(
            a.verdict.out_port(),
            Some(Link::Internet),
            "default route: eth0 rewrites the source"
        );
        let a = ask(
            "[[route]]\ndst = \"0.0.0.0/0\"\nfrom = \"172.16.1.0/24\"\nvia = \"eth1\"\n",
            "198.51.100.7",
            None,
            Proto::Tcp,
            80,
        );
        assert_eq!(a.route, None);
        assert_eq!(a.json()["reason"], "no_route");
        assert!(a.text().contains("    route     none\n"), "{}", a.text());
        // A NAT-mode EIP is no address the OS has (the seed): the probe is
        // dropped before the route lookup, and no ALG line is made up.
        let a = ask("", "198.51.100.7", Some("203.0.113.10"), Proto::Udp, 5060);
        assert_eq!(
            a.verdict.reason(),
            Some(crate::engine::DropReason::SpoofedSource)
        );
        assert!(a.text().contains("route     not reached"), "{}", a.text());
        assert_eq!((a.route.as_deref(), a.alg), (None, None));
    }

    /// A topology where eth0 is in a basic group that lets TCP 80 in from
    /// anywhere and drops egress to 192.0.2.0/24.
    const SG: &str = r#"
region = "cn-hangzhou"
vpc_cidr = "172.16.0.0/12"
[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]
security_groups = ["sg-web"]
[[eip]]
address = "203.0.113.10"
eni = "eth0"
mode = "nat"
[[security_group]]
name = "sg-web"
[[security_group.rule]]
direction = "ingress"
protocol = "tcp"
port_range = "80/80"
cidr = "0.0.0.0/0"
description = "web"
[[security_group.rule]]
direction = "egress"
policy = "drop"
protocol = "all"
cidr = "192.0.2.0/24"
"#;

    fn sg_ask(dst: &str, from: &str, dport: u16, inbound: bool) -> RouteAnswer {
        let topo = Topology::from_toml(SG).unwrap();
        route_get(
            &topo,
            &RouteQuery {
                dst: dst.parse().unwrap(),
                from: Some(from.parse().unwrap()),
                proto: Proto::Tcp,
                sport: 50000,
                dport,
                inbound,
                reply: false,
            },
        )
    }

    /// `route get --inbound`: port 80 is let in by the rule, port 22 meets
    /// a basic group's default (ingress denied); outbound, the drop rule
    /// names its range and a basic group's default lets the rest out.
    #[test]
    fn security_groups_in_both_directions() {
        let a = sg_ask("203.0.113.10", "198.51.100.7", 80, true);
        assert_eq!(a.verdict.out_port(), Some(Link::Instance));
        assert_eq!(a.to, Some(Ipv4Addr::new(172, 16, 0, 10)));
        let t = a.text();
        assert!(
            t.starts_with("203.0.113.10 from 198.51.100.7 tcp 50000 > 80, arriving on internet\n"),
            "{t}"
        );
        assert!(t.contains("    eip       203.0.113.10 (nat)\n"), "{t}");
        assert!(
            t.contains("    to        172.16.0.10 (the destination as the instance sees it)\n"),
            "{t}"
        );
        assert!(
            t.contains("    secgroup  ingress tcp port 80 from 198.51.100.7 at eth0 (over internet): security group \"sg-web\" rule (line 15): priority 1 accept ingress tcp 80/80 from 0.0.0.0/0 \"web\": allowed\n"),
            "{t}"
        );
        let a = sg_ask("203.0.113.10", "198.51.100.7", 22, true);
        assert_eq!(a.json()["reason"], "security_group_denied");
        assert!(
            a.text().contains(
                "no rule matched: default of a basic group (ingress denied, egress allowed): denied"
            ),
            "{}",
            a.text()
        );
        let a = sg_ask("192.0.2.9", "172.16.0.10", 443, false);
        assert_eq!(a.json()["reason"], "security_group_denied");
        assert!(
            a.text()
                .contains("priority 1 drop egress all to 192.0.2.0/24: denied"),
            "{}",
            a.text()
        );
        let a = sg_ask("198.51.100.7", "172.16.0.10", 443, false);
        assert_eq!(a.verdict.out_port(), Some(Link::Internet));
        assert_eq!(
            a.json()["security_groups"].as_array().map(|v| v.len()),
            Some(1)
        );
        // Port 25 to the Internet: the cloud's rule, after the groups.
        let a = sg_ask("198.51.100.7", "172.16.0.10", 25, false);
        assert_eq!(a.json()["reason"], "smtp_port_25_blocked");
        assert!(
            a.text()
                .contains("    cloud     TCP to 198.51.100.7 port 25"),
            "{}",
            a.text()
        );
        // The EIP it would have left with, though it did not.
        assert!(
            a.text()
                .contains("    public    203.0.113.10 (EIP, nat) had it left; it was dropped"),
            "{}",
            a.text()
        );
    }
}
