//! The scenario `eipsim demo` runs: a topology, traffic, and what must
//! happen to each packet, written down by hand from the product rules (not
//! taken from the engine's output).
//!
//! [`Scenario`], [`Step`] and [`Expect`] are also the shape of the other
//! hand-written scenarios (the golden captures under `pcaps/`), which live
//! with the tests in the `eipsim-fixtures` workspace member.

use crate::engine::{DropReason, Link};
use crate::probe::{arp_request, tcp, udp};

/// The example instance: a primary ENI with a NAT EIP, a secondary ENI with
/// two NAT EIPs on two of its three private IPs, and a secondary ENI with a
/// cut-through EIP. The one copy of this text is `fixtures/standard.toml`,
/// shared with the test fixtures.
pub(crate) const STANDARD: &str = include_str!("../fixtures/standard.toml");

/// What must happen to one packet.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Forwarded on `port`; the final source and destination must be one of
    /// the listed addresses (an empty list is not checked).
    Forward {
        /// The port the packet leaves on.
        port: Link,
        /// The allowed source addresses after translation.
        src: Vec<&'static str>,
        /// The allowed destination addresses after translation.
        dst: Vec<&'static str>,
    },
    /// An ARP request answered on `port`.
    Reply(Link),
    /// Consumed without a reply.
    Consume,
    /// Dropped for this reason.
    Drop(DropReason),
}

/// One packet of a scenario.
#[derive(Debug, Clone)]
pub struct Step {
    /// The port it is received on.
    pub port: Link,
    /// Its timestamp, in ns since the epoch.
    pub ts_ns: u64,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
    /// What the packet is, in a few words.
    pub note: String,
    /// What must happen to it.
    pub expect: Expect,
}

/// A topology, the traffic sent through it, and what must happen.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// A short name (the folder under `pcaps/`).
    pub name: &'static str,
    /// The numbered behaviour(s) of the engine it shows.
    pub about: &'static str,
    /// The topology file's text.
    pub topology: String,
    /// The packets, in the order they are processed.
    pub steps: Vec<Step>,
    /// Link MTUs to replay with (`replay --mtu`); None: no limit.
    pub mtu: [Option<u32>; 3],
    /// Topology events between the steps (`replay --events`).
    pub events: Vec<ScenarioEvent>,
}

/// A topology event of a scenario and what must become of it.
#[derive(Debug, Clone)]
pub struct ScenarioEvent {
    /// When, ns since the epoch: between the steps around it.
    pub at_ns: u64,
    /// The operation.
    pub op: crate::config::Operation,
    /// What it is, in a few words.
    pub note: String,
    /// `Ok(reasons)`: applied, ending one flow per reason listed (in flow
    /// table order); `Err(words)`: refused, with `words` in the reason.
    pub expect: Result<Vec<&'static str>, &'static str>,
}

impl Scenario {
    /// The events as an events file (`at` in seconds after the first
    /// step), or `None` without events.
    pub fn events_toml(&self) -> Option<String> {
        let first = self.steps.first()?.ts_ns;
        if self.events.is_empty() {
            return None;
        }
        let mut s = String::new();
        for e in &self.events {
            let at = e.at_ns.saturating_sub(first);
            let mut t = toml::Table::new();
            t.insert("at".into(), toml::Value::Float(at as f64 / 1e9));
            if let toml::Value::Table(op) =
                toml::Value::try_from(&e.op).expect("operations serialise")
            {
                t.extend(op);
            }
            s.push_str(&format!(
                "# {}\n[[event]]\n{}\n",
                e.note,
                toml::to_string(&t).expect("plain values")
            ));
        }
        Some(s)
    }
}

/// Expects the packet forwarded on `port` from `src` to `dst`.
pub fn fwd(port: Link, src: &'static str, dst: &'static str) -> Expect {
    Expect::Forward {
        port,
        src: vec![src],
        dst: vec![dst],
    }
}

/// Expects the packet forwarded on `port` to `dst` from any one of `src`
/// (a choice the engine makes, such as a random nexthop).
pub fn fwd_any(port: Link, src: Vec<&'static str>, dst: &'static str) -> Expect {
    Expect::Forward {
        port,
        src,
        dst: vec![dst],
    }
}

/// Expects the packet dropped for `r`.
pub fn drop(r: DropReason) -> Expect {
    Expect::Drop(r)
}

/// Writes a scenario's steps: each 1 ms after the one before, from a fixed
/// epoch, with [`Builder::wait`] for idle timeouts.
#[derive(Debug)]
pub struct Builder {
    /// The steps so far.
    pub steps: Vec<Step>,
    /// The topology events so far.
    pub events: Vec<ScenarioEvent>,
    /// The clock, ns since the epoch.
    pub t: u64,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// An empty scenario at 2026-11-28 00:00:00 UTC.
    pub fn new() -> Self {
        // A fixed, readable epoch for captures.
        Builder {
            steps: Vec::new(),
            events: Vec::new(),
            t: 1_795_824_000_000_000_000,
        }
    }

    /// Adds a frame arriving on `port` 1 ms after the previous one.
    pub fn step(&mut self, port: Link, frame: Vec<u8>, note: impl Into<String>, expect: Expect) {
        self.t += 1_000_000;
        self.steps.push(Step {
            port,
            ts_ns: self.t,
            frame,
            note: note.into(),
            expect,
        });
    }

    /// A topology event half a millisecond after the last step (so before
    /// the next one).
    pub fn event(
        &mut self,
        op: crate::config::Operation,
        note: impl Into<String>,
        expect: Result<Vec<&'static str>, &'static str>,
    ) {
        self.events.push(ScenarioEvent {
            at_ns: self.t + 500_000,
            op,
            note: note.into(),
            expect,
        });
    }

    /// Lets `secs` seconds pass before the next step.
    pub fn wait(&mut self, secs: u64) {
        self.t += secs * 1_000_000_000;
    }
}

/// The demo's addition to [`STANDARD`]: a load-balanced route.
const DEMO_ROUTE: &str = "[[route]]\ndst = \"192.0.2.0/24\"\nvia = [\"eth0\", \"eth1\"]\nweights = [1, 1]\nbalance = \"hash\"\nmetric = 10\n";

/// The demo's security group, which every ENI is in: the Internet may
/// reach the web and SIP ports and ping; SSH only from the office range.
const DEMO_GROUP: &str = r#"
[[security_group]]
name = "sg-demo"

[[security_group.rule]]
direction = "ingress"
protocol = "tcp"
port_range = "80/80,443/443"
cidr = "0.0.0.0/0"
description = "web"

[[security_group.rule]]
direction = "ingress"
protocol = "udp"
port_range = "5060/5060"
cidr = "0.0.0.0/0"
description = "sip"

[[security_group.rule]]
direction = "ingress"
protocol = "icmp"
cidr = "0.0.0.0/0"
description = "ping"

[[security_group.rule]]
direction = "ingress"
protocol = "tcp"
port_range = "22/22"
cidr = "192.0.2.0/24"
description = "ssh from the office"

[[security_group.rule]]
direction = "ingress"
policy = "drop"
priority = 2
protocol = "tcp"
port_range = "22/22"
cidr = "0.0.0.0/0"
description = "no ssh from elsewhere"
"#;

/// The demo's topology: the standard instance with every ENI in
/// `sg-demo`, plus a load-balanced route.
fn demo_topology() -> String {
    let enis = STANDARD.replace(
        "\nprivate_ips = [",
        "\nsecurity_groups = [\"sg-demo\"]\nprivate_ips = [",
    );
    format!("{enis}\n{DEMO_ROUTE}{DEMO_GROUP}")
}

use Link::{Instance as I, Internet as N, Vpc as V};

/// The scenario `eipsim demo` runs: the standard instance in a security
/// group, plus a load-balanced route.
pub fn demo() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        arp_request(I, "172.16.0.10", "172.16.0.253"),
        "instance asks for its gateway's MAC",
        Expect::Reply(I),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40000, 443, "S", b""),
        "outbound HTTPS: default route via the primary ENI, NAT to its EIP",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        N,
        tcp(N, "198.51.100.7", "203.0.113.10", 443, 40000, "SA", b""),
        "the reply: EIP back to the private IP",
        fwd(I, "198.51.100.7", "172.16.0.10"),
    );
    b.step(
        N,
        tcp(N, "198.51.100.9", "203.0.113.13", 51000, 80, "S", b""),
        "inbound HTTP to a secondary ENI's second EIP",
        fwd(I, "198.51.100.9", "172.16.1.11"),
    );
    b.step(
        I,
        tcp(I, "172.16.1.11", "198.51.100.9", 80, 51000, "SA", b""),
        "its reply leaves with the same EIP, no route needed",
        fwd(N, "203.0.113.13", "198.51.100.9"),
    );
    b.step(
        N,
        udp(
            N,
            "198.51.100.20",
            "203.0.113.12",
            5060,
            5060,
            b"INVITE sip:bob@example.com SIP/2.0",
        ),
        "SIP to the cut-through EIP: delivered unchanged",
        fwd(I, "198.51.100.20", "203.0.113.12"),
    );
    b.step(
        N,
        udp(
            N,
            "198.51.100.20",
            "203.0.113.10",
            5060,
            5060,
            b"INVITE sip:alice@example.com SIP/2.0",
        ),
        "SIP to a NAT-mode EIP: not supported by the NAT ALG",
        drop(DropReason::AlgUnsupported),
    );
    for (i, sport) in [41000u16, 41001, 41002, 41003].into_iter().enumerate() {
        b.step(
            I,
            tcp(I, "172.16.0.10", "192.0.2.80", sport, 80, "S", b""),
            format!(
                "load-balanced route, flow {}: the hash picks the ENI",
                i + 1
            ),
            fwd_any(N, vec!["203.0.113.10", "203.0.113.11"], "192.0.2.80"),
        );
    }
    b.step(
        I,
        tcp(I, "172.16.0.10", "172.16.100.5", 42000, 5432, "S", b""),
        "to a VPC host: out on the VPC port with the private source",
        fwd(V, "172.16.0.10", "172.16.100.5"),
    );
    b.step(
        I,
        udp(I, "172.16.9.9", "198.51.100.7", 1234, 53, b"x"),
        "a source the instance does not own",
        drop(DropReason::SpoofedSource),
    );
    b.step(
        N,
        tcp(N, "198.51.100.7", "203.0.113.99", 1234, 80, "S", b""),
        "to an address that is no EIP of this instance",
        drop(DropReason::UnknownEip),
    );
    b.step(
        N,
        tcp(N, "198.51.100.7", "203.0.113.10", 52000, 22, "S", b""),
        "SSH from outside the office range: the security group's drop rule",
        drop(DropReason::SecurityGroupDenied),
    );
    Scenario {
        name: "demo",
        about: "the tour: NAT, inbound to a secondary EIP, cut-through, ALG, load balancing, VPC, a security group, drops",
        topology: demo_topology(),
        steps: b.steps,
        events: b.events,
        mtu: [None; 3],
    }
}
