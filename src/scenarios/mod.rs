//! Built-in scenarios: a topology, traffic, and what must happen to each
//! packet, written down by hand from the product rules (not taken from the
//! engine's output).
//!
//! They feed `eipsim demo`, the golden captures under `pcaps/` (written by
//! `cargo run --example gen-pcaps`), and the tests that replay those
//! captures. One numbered behaviour of the core engine issue per scenario,
//! roughly; the names say which.

pub mod build;

/// A frame and its timestamp (ns since the epoch).
pub type TimedFrame = (u64, Vec<u8>);
pub mod workload;

use crate::engine::{DropReason, Port};
use build::*;

/// What must happen to one packet.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Forwarded on `port`; the final source and destination must be one of
    /// the listed addresses (an empty list is not checked).
    Forward {
        port: Port,
        src: Vec<&'static str>,
        dst: Vec<&'static str>,
    },
    /// An ARP request answered on `port`.
    Reply(Port),
    /// Consumed without a reply.
    Consume,
    Drop(DropReason),
}

#[derive(Debug, Clone)]
pub struct Step {
    pub port: Port,
    pub ts_ns: u64,
    pub frame: Vec<u8>,
    /// What the packet is, in a few words.
    pub note: String,
    pub expect: Expect,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    /// The numbered behaviour(s) of the engine it shows.
    pub about: &'static str,
    pub topology: String,
    pub steps: Vec<Step>,
    /// Port MTUs to replay with (`replay --mtu`); None: no limit.
    pub mtu: [Option<u32>; 3],
}

fn fwd(port: Port, src: &'static str, dst: &'static str) -> Expect {
    Expect::Forward {
        port,
        src: vec![src],
        dst: vec![dst],
    }
}

fn fwd_any(port: Port, src: Vec<&'static str>, dst: &'static str) -> Expect {
    Expect::Forward {
        port,
        src,
        dst: vec![dst],
    }
}

fn drop(r: DropReason) -> Expect {
    Expect::Drop(r)
}

/// Steps 1 ms apart, with `wait` for idle timeouts.
struct Builder {
    steps: Vec<Step>,
    t: u64,
}

impl Builder {
    fn new() -> Self {
        // 2026-11-28 00:00:00 UTC: a fixed, readable epoch for captures.
        Builder {
            steps: Vec::new(),
            t: 1_795_824_000_000_000_000,
        }
    }
    fn step(&mut self, port: Port, frame: Vec<u8>, note: impl Into<String>, expect: Expect) {
        self.t += 1_000_000;
        self.steps.push(Step {
            port,
            ts_ns: self.t,
            frame,
            note: note.into(),
            expect,
        });
    }
    fn wait(&mut self, secs: u64) {
        self.t += secs * 1_000_000_000;
    }
}

use Port::{Instance as I, Internet as N, Vpc as V};

/// The example instance: a primary ENI with a NAT EIP, a secondary ENI with
/// two NAT EIPs on two of its three private IPs, and a secondary ENI with a
/// cut-through EIP.
pub const STANDARD: &str = r#"region = "cn-hangzhou"
vpc_cidr = "172.16.0.0/12"
hash_seed = 0

[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]

[[eni]]
name = "eth1"
private_ips = ["172.16.1.10", "172.16.1.11", "172.16.1.12"]

[[eni]]
name = "eth2"
private_ips = ["172.16.2.10"]

[[eip]]
address = "203.0.113.10"
eni = "eth0"
mode = "nat"

[[eip]]
address = "203.0.113.11"
eni = "eth1"
mode = "nat"

[[eip]]
address = "203.0.113.13"
eni = "eth1"
mode = "nat"
private_ip = "172.16.1.11"

[[eip]]
address = "203.0.113.12"
eni = "eth2"
mode = "cut-through"
"#;

fn topo(extra: &str) -> String {
    if extra.is_empty() {
        STANDARD.to_string()
    } else {
        format!("{STANDARD}\n{extra}")
    }
}

/// The topology `eipsim demo` runs: the standard instance plus a
/// load-balanced route.
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
    Scenario {
        name: "demo",
        about: "the tour: NAT, inbound to a secondary EIP, cut-through, ALG, load balancing, VPC, drops",
        topology: topo(
            "[[route]]\ndst = \"192.0.2.0/24\"\nvia = [\"eth0\", \"eth1\"]\nweights = [1, 1]\nbalance = \"hash\"\nmetric = 10\n",
        ),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn arp() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        arp_request(I, "172.16.0.10", "172.16.0.253"),
        "instance: the gateway",
        Expect::Reply(I),
    );
    b.step(
        I,
        arp_request(I, "172.16.0.10", "198.51.100.7"),
        "instance: any other address",
        Expect::Reply(I),
    );
    b.step(
        I,
        arp_request(I, "172.16.0.10", "172.16.1.10"),
        "instance: its own address",
        drop(DropReason::ArpNotOurs),
    );
    b.step(
        I,
        arp_request(I, "172.16.0.10", "172.16.0.10"),
        "instance: gratuitous ARP",
        Expect::Consume,
    );
    b.step(
        N,
        arp_request(N, "198.51.100.7", "203.0.113.10"),
        "internet: a NAT EIP",
        Expect::Reply(N),
    );
    b.step(
        N,
        arp_request(N, "198.51.100.7", "203.0.113.12"),
        "internet: the cut-through EIP",
        Expect::Reply(N),
    );
    b.step(
        N,
        arp_request(N, "198.51.100.7", "203.0.113.99"),
        "internet: not an EIP",
        drop(DropReason::ArpNotOurs),
    );
    b.step(
        V,
        arp_request(V, "172.16.100.5", "172.16.1.11"),
        "vpc: a private IP",
        Expect::Reply(V),
    );
    b.step(
        V,
        arp_request(V, "172.16.100.5", "172.16.2.10"),
        "vpc: the cut-through ENI's private IP",
        drop(DropReason::ArpNotOurs),
    );
    b.step(
        V,
        arp_reply(V, "172.16.100.5", "172.16.0.10"),
        "vpc: an ARP reply",
        Expect::Consume,
    );
    let mut short = arp_request(V, "172.16.100.5", "172.16.0.10");
    short.truncate(30);
    b.step(
        V,
        short,
        "vpc: a truncated ARP packet",
        drop(DropReason::Malformed),
    );
    Scenario {
        name: "arp",
        about: "1: ARP on each port",
        topology: topo(""),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn parse() -> Scenario {
    let mut b = Builder::new();
    let good = udp(I, "172.16.0.10", "198.51.100.7", 40000, 9, b"0123456789");
    b.step(
        I,
        raw(I, 0x86dd, &[0x60; 40]),
        "IPv6",
        drop(DropReason::UnsupportedEthertype),
    );
    b.step(
        I,
        raw(I, 0x8100, &[0; 46]),
        "a VLAN tag",
        drop(DropReason::UnsupportedEthertype),
    );
    b.step(
        I,
        good[..10].to_vec(),
        "a 10-byte runt",
        drop(DropReason::Malformed),
    );
    b.step(
        I,
        good[..good.len() - 4].to_vec(),
        "total length beyond the frame",
        drop(DropReason::Malformed),
    );
    let mut f = good.clone();
    f[14] = 0x44;
    b.step(I, f, "IHL 4", drop(DropReason::Malformed));
    let mut f = good.clone();
    f[14] = 0x65;
    b.step(
        I,
        f,
        "version 6 in an IPv4 EtherType",
        drop(DropReason::Malformed),
    );
    let mut f = good.clone();
    f[24] ^= 0xff;
    b.step(
        I,
        f,
        "a bad IPv4 header checksum",
        drop(DropReason::Malformed),
    );
    let mut f = tcp(I, "172.16.0.10", "198.51.100.7", 40000, 80, "S", b"");
    patch_ipv4(&mut f, |h| h.total_len = 30);
    f.truncate(14 + 30);
    b.step(I, f, "a TCP header cut short", drop(DropReason::Malformed));
    let mut f = udp(I, "172.16.0.10", "198.51.100.7", 40000, 9, b"");
    patch_ipv4(&mut f, |h| h.total_len = 24);
    f.truncate(14 + 24);
    b.step(I, f, "a UDP header cut short", drop(DropReason::Malformed));
    let offending = udp(N, "198.51.100.7", "203.0.113.10", 9, 40000, b"x");
    b.step(
        I,
        icmp_unreachable(I, "172.16.0.10", "198.51.100.7", &offending, 12),
        "an ICMP error quoting 12 bytes (less than an IP header)",
        drop(DropReason::Malformed),
    );
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 8]);
    b.step(
        I,
        padded,
        "a good packet with Ethernet padding",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    Scenario {
        name: "parse",
        about: "2: EtherTypes and malformed frames",
        topology: topo(""),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn source_ttl() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        udp(I, "172.16.5.5", "198.51.100.7", 40000, 9, b"x"),
        "a source no ENI has",
        drop(DropReason::SpoofedSource),
    );
    b.step(
        I,
        udp(I, "203.0.113.10", "198.51.100.7", 40000, 9, b"x"),
        "a NAT EIP as source: the OS never has it",
        drop(DropReason::SpoofedSource),
    );
    b.step(
        I,
        udp(I, "203.0.113.12", "198.51.100.7", 40000, 9, b"x"),
        "the cut-through EIP as source, routed via eth0: source selection",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        udp_ttl(I, "172.16.0.10", "198.51.100.7", 40001, 9, b"x", 1),
        "TTL 1 from the instance",
        drop(DropReason::TtlExpired),
    );
    b.step(
        I,
        udp_ttl(I, "172.16.0.10", "198.51.100.7", 40001, 9, b"x", 2),
        "TTL 2 leaves with TTL 1",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        N,
        udp_ttl(N, "198.51.100.7", "203.0.113.10", 9, 40002, b"x", 1),
        "TTL 1 from the Internet",
        drop(DropReason::TtlExpired),
    );
    b.step(
        V,
        udp_ttl(V, "172.16.100.5", "172.16.0.10", 9, 40002, b"x", 0),
        "TTL 0 from the VPC",
        drop(DropReason::TtlExpired),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "255.255.255.255", 68, 67, b"x"),
        "a broadcast",
        drop(DropReason::NotUnicast),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "224.0.0.251", 5353, 5353, b"x"),
        "a multicast",
        drop(DropReason::NotUnicast),
    );
    Scenario {
        name: "source_ttl",
        about: "3: source check and TTL",
        topology: topo(""),
        steps: b.steps,
        mtu: [None; 3],
    }
}

const ROUTES: &str = r#"[[route]]
dst = "0.0.0.0/0"
via = ["eth0", "eth1"]
weights = [3, 1]
balance = "hash"
metric = 100

[[route]]
dst = "198.51.100.0/24"
via = "eth1"
metric = 10

[[route]]
dst = "198.51.100.0/24"
via = "eth0"
metric = 20

[[route]]
dst = "192.0.2.0/24"
via = ["eth0", "eth1"]
balance = "random"
"#;

fn routes() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40000, 80, "S", b""),
        "specific route, metric 10 beats 20: eth1, its primary IP's EIP",
        fwd(N, "203.0.113.11", "198.51.100.7"),
    );
    b.step(
        N,
        tcp(N, "198.51.100.7", "203.0.113.11", 80, 40000, "SA", b""),
        "the reply finds the flow and the original source",
        fwd(I, "198.51.100.7", "172.16.0.10"),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40000, 80, "A", b""),
        "a later packet takes the flow",
        fwd(N, "203.0.113.11", "198.51.100.7"),
    );
    for sport in 41000..41008u16 {
        b.step(
            I,
            tcp(I, "172.16.0.10", "203.0.113.200", sport, 443, "S", b""),
            "weighted hash default route (3:1)",
            fwd_any(N, vec!["203.0.113.10", "203.0.113.11"], "203.0.113.200"),
        );
    }
    for sport in 42000..42004u16 {
        b.step(
            I,
            udp(I, "172.16.0.10", "192.0.2.53", sport, 4500, b"r"),
            "random route: a seeded draw per new flow",
            fwd_any(N, vec!["203.0.113.10", "203.0.113.11"], "192.0.2.53"),
        );
    }
    Scenario {
        name: "routes",
        about: "4: longest prefix, metric, weighted hash and random balancing",
        topology: topo(ROUTES),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn policy() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        udp(I, "172.16.1.11", "198.51.100.7", 40000, 9, b"x"),
        "from 172.16.1.0/24: via eth1, source kept, its EIP",
        fwd(N, "203.0.113.13", "198.51.100.7"),
    );
    b.step(
        I,
        udp(I, "172.16.1.12", "198.51.100.7", 40000, 9, b"x"),
        "via eth1 from a private IP without EIP",
        drop(DropReason::NoEip),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 40000, 9, b"x"),
        "no route for other sources (the file routes 0.0.0.0/0 itself)",
        drop(DropReason::NoRoute),
    );
    Scenario {
        name: "policy",
        about: "4: source-specific routes (from) and no_route",
        topology: topo(
            "[[route]]\ndst = \"0.0.0.0/0\"\nfrom = \"172.16.1.0/24\"\nvia = \"eth1\"\n",
        ),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn flows() -> Scenario {
    let mut b = Builder::new();
    b.step(
        N,
        tcp(N, "198.51.100.9", "203.0.113.13", 51000, 80, "S", b""),
        "inbound to a secondary ENI's EIP",
        fwd(I, "198.51.100.9", "172.16.1.11"),
    );
    b.step(
        I,
        tcp(I, "172.16.1.11", "198.51.100.9", 80, 51000, "SA", b""),
        "the reply leaves through the same ENI and EIP, not the default route",
        fwd(N, "203.0.113.13", "198.51.100.9"),
    );
    b.step(
        I,
        tcp(I, "172.16.1.11", "198.51.100.9", 81, 51000, "SA", b""),
        "another port is no reply: the default route, eth0",
        fwd(N, "203.0.113.10", "198.51.100.9"),
    );
    Scenario {
        name: "flows",
        about: "4: replies to inbound connections need no route",
        topology: topo(""),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn source_selection() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        tcp(I, "172.16.1.11", "198.51.100.7", 5000, 80, "S", b""),
        "eth1's address routed via eth0: the source becomes eth0's primary IP",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        N,
        tcp(N, "198.51.100.7", "203.0.113.10", 80, 5000, "SA", b""),
        "the reply gets the original source back",
        fwd(I, "198.51.100.7", "172.16.1.11"),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 5000, 80, "S", b""),
        "eth0's own address, same ports: would collide",
        drop(DropReason::SourceConflict),
    );
    b.step(
        I,
        tcp(I, "172.16.1.11", "198.51.100.7", 5001, 80, "S", b""),
        "another port does not collide",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "192.0.2.1", 6000, 6000, b"x"),
        "routed via the cut-through ENI: the source becomes its EIP",
        fwd(N, "203.0.113.12", "192.0.2.1"),
    );
    b.step(
        N,
        udp(N, "192.0.2.1", "203.0.113.12", 6000, 6000, b"y"),
        "the reply gets the original source back",
        fwd(I, "192.0.2.1", "172.16.0.10"),
    );
    Scenario {
        name: "source_selection",
        about: "5: source selection and source_conflict",
        topology: topo("[[route]]\ndst = \"192.0.2.0/24\"\nvia = \"eth2\"\n"),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn vpc_and_eip() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        tcp(I, "172.16.0.10", "172.16.100.5", 40000, 5432, "S", b""),
        "to a VPC host: private source kept",
        fwd(V, "172.16.0.10", "172.16.100.5"),
    );
    b.step(
        V,
        tcp(V, "172.16.100.5", "172.16.0.10", 5432, 40000, "SA", b""),
        "the VPC host replies",
        fwd(I, "172.16.100.5", "172.16.0.10"),
    );
    b.step(
        I,
        tcp(I, "172.16.1.11", "172.16.100.5", 40000, 5432, "S", b""),
        "eth1's address: its from route picks eth1, source kept",
        fwd(V, "172.16.1.11", "172.16.100.5"),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "172.16.200.9", 40000, 22, "S", b""),
        "to the VPC through the cut-through ENI",
        drop(DropReason::CutThroughNoPrivate),
    );
    b.step(
        I,
        udp(I, "172.16.1.12", "192.0.2.5", 40000, 9, b"x"),
        "via eth1 from a private IP without EIP",
        drop(DropReason::NoEip),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 40000, 9, b"x"),
        "NAT: the private source becomes the EIP",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        udp(I, "172.16.1.10", "198.51.100.7", 40000, 9, b"x"),
        "secondary ENI, primary private IP, routed via eth1",
        fwd(N, "203.0.113.11", "198.51.100.7"),
    );
    b.step(
        I,
        udp(I, "203.0.113.12", "198.51.100.8", 40000, 9, b"x"),
        "cut-through: the EIP is the source, unchanged",
        fwd(N, "203.0.113.12", "198.51.100.8"),
    );
    Scenario {
        name: "vpc_and_eip",
        about: "6: VPC destinations, the EIP stage, no_eip, cut_through_no_private",
        topology: topo(concat!(
            "[[route]]\ndst = \"172.16.200.0/24\"\nvia = \"eth2\"\n\n",
            "[[route]]\ndst = \"0.0.0.0/0\"\nfrom = \"172.16.1.0/24\"\nvia = \"eth1\"\n\n",
            "[[route]]\ndst = \"0.0.0.0/0\"\nfrom = \"203.0.113.12/32\"\nvia = \"eth2\"\n\n",
            "[[route]]\ndst = \"0.0.0.0/0\"\nvia = \"eth0\"\n",
        )),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn inbound() -> Scenario {
    let mut b = Builder::new();
    b.step(
        N,
        tcp(N, "198.51.100.7", "203.0.113.10", 50000, 80, "S", b""),
        "to a NAT EIP",
        fwd(I, "198.51.100.7", "172.16.0.10"),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 80, 50000, "SA", b""),
        "the reply",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        N,
        tcp(N, "198.51.100.7", "203.0.113.12", 50001, 22, "S", b""),
        "to the cut-through EIP: unchanged",
        fwd(I, "198.51.100.7", "203.0.113.12"),
    );
    b.step(
        I,
        tcp(I, "203.0.113.12", "198.51.100.7", 22, 50001, "SA", b""),
        "the reply",
        fwd(N, "203.0.113.12", "198.51.100.7"),
    );
    b.step(
        N,
        tcp(N, "198.51.100.7", "203.0.113.99", 50002, 80, "S", b""),
        "to an address that is no EIP",
        drop(DropReason::UnknownEip),
    );
    b.step(
        N,
        tcp(N, "198.51.100.7", "172.16.0.10", 50003, 80, "S", b""),
        "to a private IP from the Internet",
        drop(DropReason::UnknownEip),
    );
    b.step(
        V,
        udp(V, "172.16.100.5", "172.16.1.12", 9, 40000, b"x"),
        "from the VPC to a private IP",
        fwd(I, "172.16.100.5", "172.16.1.12"),
    );
    b.step(
        V,
        udp(V, "172.16.100.5", "172.16.2.10", 9, 40000, b"x"),
        "to the cut-through ENI's private IP",
        drop(DropReason::NotLocal),
    );
    b.step(
        V,
        udp(V, "172.16.100.5", "172.16.99.99", 9, 40000, b"x"),
        "to an address of no ENI",
        drop(DropReason::NotLocal),
    );
    b.step(
        V,
        udp(V, "172.16.100.5", "203.0.113.12", 9, 40000, b"x"),
        "to an EIP over the VPC",
        drop(DropReason::NotLocal),
    );
    Scenario {
        name: "inbound",
        about: "7: from the Internet and the VPC",
        topology: topo(""),
        steps: b.steps,
        mtu: [None; 3],
    }
}

/// Traffic from the cut-through EIP leaves through its ENI.
const CUT_THROUGH_ROUTES: &str = "[[route]]\ndst = \"0.0.0.0/0\"\nfrom = \"203.0.113.12/32\"\nvia = \"eth2\"\n\n[[route]]\ndst = \"0.0.0.0/0\"\nvia = \"eth0\"\n";

fn alg() -> Scenario {
    let mut b = Builder::new();
    let d = DropReason::AlgUnsupported;
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 5060, 5060, b"INVITE"),
        "SIP/UDP through NAT",
        drop(d),
    );
    b.step(
        I,
        udp(I, "203.0.113.12", "198.51.100.7", 5060, 5060, b"INVITE"),
        "SIP/UDP through cut-through",
        fwd(N, "203.0.113.12", "198.51.100.7"),
    );
    b.step(
        N,
        udp(N, "198.51.100.7", "203.0.113.10", 40000, 53, b"q"),
        "DNS to a NAT EIP",
        drop(d),
    );
    b.step(
        N,
        udp(N, "198.51.100.7", "203.0.113.12", 40000, 53, b"q"),
        "DNS to the cut-through EIP",
        fwd(I, "198.51.100.7", "203.0.113.12"),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40001, 21, "S", b""),
        "FTP: known, but not on the default list",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40002, 1720, "S", b""),
        "H.323 (TCP 1720)",
        drop(d),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 40003, 1719, b"r"),
        "H.323 RAS (UDP 1719)",
        drop(d),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40004, 5061, "S", b""),
        "SIP over TLS (TCP 5061)",
        drop(d),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40005, 554, "S", b""),
        "RTSP (TCP 554)",
        drop(d),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 40006, 69, b"r"),
        "TFTP (UDP 69)",
        drop(d),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40007, 53, "S", b""),
        "DNS over TCP",
        drop(d),
    );
    b.step(
        N,
        udp(N, "198.51.100.7", "203.0.113.10", 5060, 40008, b"r"),
        "from SIP port 5060, inbound",
        drop(d),
    );
    Scenario {
        name: "alg",
        about: "8: the NAT ALG (default list, action drop)",
        topology: topo(CUT_THROUGH_ROUTES),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn alg_forward() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 5060, 5060, b"INVITE"),
        "SIP through NAT, action forward",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        tcp(I, "172.16.0.10", "198.51.100.7", 40001, 21, "S", b""),
        "FTP, now on the list",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 40002, 53, b"q"),
        "DNS, off the list",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    Scenario {
        name: "alg_forward",
        about: "8: ALG action forward (counted per protocol)",
        topology: topo("[alg]\nunsupported = [\"sip\", \"ftp\"]\naction = \"forward\"\n"),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn checksums() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        udp_no_checksum(I, "172.16.0.10", "198.51.100.7", 40000, 9, b"no checksum"),
        "UDP without checksum: stays 0",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        ping(I, "172.16.0.10", "198.51.100.7", 0x1234, 1, false),
        "ping out",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        N,
        ping(N, "198.51.100.7", "203.0.113.10", 0x1234, 1, true),
        "its echo reply",
        fwd(I, "198.51.100.7", "172.16.0.10"),
    );
    b.step(
        I,
        udp(
            I,
            "172.16.0.10",
            "198.51.100.7",
            33434,
            33434,
            b"traceroute",
        ),
        "a probe out",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    let as_sent = udp_ttl(
        N,
        "203.0.113.10",
        "198.51.100.7",
        33434,
        33434,
        b"traceroute",
        63,
    );
    b.step(
        N,
        icmp_unreachable(N, "198.51.100.7", "203.0.113.10", &as_sent, 28),
        "port unreachable about it, quoting 28 bytes: quote translated back",
        fwd(I, "198.51.100.7", "172.16.0.10"),
    );
    b.step(
        N,
        tcp(
            N,
            "198.51.100.7",
            "203.0.113.10",
            50000,
            8080,
            "S",
            b"hello",
        ),
        "an inbound SYN",
        fwd(I, "198.51.100.7", "172.16.0.10"),
    );
    let as_received = tcp_ttl(
        I,
        "198.51.100.7",
        "172.16.0.10",
        50000,
        8080,
        "S",
        b"hello",
        63,
    );
    b.step(
        I,
        icmp_unreachable(I, "172.16.0.10", "198.51.100.7", &as_received, 1000),
        "the instance's port unreachable, quoting the whole SYN",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    let never = udp(N, "203.0.113.10", "198.51.100.50", 9999, 9999, b"?");
    b.step(
        N,
        icmp_unreachable(N, "192.0.2.1", "203.0.113.10", &never, 28),
        "an error about a packet never sent",
        drop(DropReason::IcmpErrorNoFlow),
    );
    let big: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let frags = fragment(
        &udp(I, "172.16.0.10", "198.51.100.7", 7000, 7000, &big),
        0x0101,
        128,
    );
    for (i, f) in frags.into_iter().enumerate() {
        b.step(
            I,
            f,
            format!("outbound fragment {} of 3", i + 1),
            fwd(N, "203.0.113.10", "198.51.100.7"),
        );
    }
    let frags = fragment(
        &udp(N, "198.51.100.7", "203.0.113.10", 7001, 7001, &big),
        0x0202,
        128,
    );
    for (i, f) in frags.into_iter().enumerate().rev() {
        b.step(
            N,
            f,
            format!("inbound fragment {} of 3, last first", i + 1),
            fwd(I, "198.51.100.7", "172.16.0.10"),
        );
    }
    let frags = fragment(
        &udp(I, "172.16.0.10", "198.51.100.7", 5060, 5060, &big),
        0x0303,
        128,
    );
    for (i, f) in frags.into_iter().enumerate() {
        b.step(
            I,
            f,
            format!("fragmented SIP, fragment {}: follows the first", i + 1),
            drop(DropReason::AlgUnsupported),
        );
    }
    let frags = fragment(
        &udp(N, "198.51.100.7", "203.0.113.10", 7002, 7002, &big),
        0x0404,
        128,
    );
    b.step(
        N,
        frags[1].clone(),
        "a fragment whose first never comes",
        drop(DropReason::FragmentOrphaned),
    );
    Scenario {
        name: "checksums",
        about: "9: checksums, ICMP errors (RFC 5508), fragments",
        topology: topo(""),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn flow_table() -> Scenario {
    let mut b = Builder::new();
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 1, 9, b"1"),
        "flow 1 of 2",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 2, 9, b"2"),
        "flow 2 of 2: the table is full",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "198.51.100.7", 3, 9, b"3"),
        "a new flow that needs no state: still forwarded",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    b.step(
        I,
        udp(I, "172.16.0.10", "192.0.2.1", 4, 9, b"4"),
        "a new flow that needs a source rewrite",
        drop(DropReason::FlowTableFull),
    );
    b.step(
        N,
        udp(N, "198.51.100.7", "203.0.113.10", 9, 3, b"r"),
        "inbound whose reply the route table sends back the same way",
        fwd(I, "198.51.100.7", "172.16.0.10"),
    );
    b.step(
        N,
        udp(N, "198.51.100.7", "203.0.113.11", 9, 5, b"r"),
        "inbound to eth1 whose reply would need the flow",
        drop(DropReason::FlowTableFull),
    );
    b.wait(31);
    b.step(
        I,
        udp(I, "172.16.0.10", "192.0.2.1", 4, 9, b"4"),
        "31 s later the idle flows expired: room again",
        fwd(N, "203.0.113.11", "192.0.2.1"),
    );
    Scenario {
        name: "flow_table",
        about: "10: a bounded flow table, stateless handling when full, idle expiry",
        topology: topo(
            "[[route]]\ndst = \"192.0.2.0/24\"\nvia = \"eth1\"\n\n[flow_table]\ncapacity = 2\nudp_timeout = 30\n",
        ),
        steps: b.steps,
        mtu: [None; 3],
    }
}

fn mtu() -> Scenario {
    let mut b = Builder::new();
    let big: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    let mut f = udp(I, "172.16.0.10", "198.51.100.7", 9000, 9000, &big);
    patch_ipv4(&mut f, |h| h.dont_fragment = false);
    b.step(
        I,
        f,
        "2028 bytes without DF through a 1500-byte port: 2 fragments",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    let f = udp(I, "172.16.0.10", "198.51.100.7", 9001, 9001, &big);
    b.step(
        I,
        f,
        "2028 bytes with DF: dropped, ICMP fragmentation-needed to the sender",
        drop(DropReason::MtuExceeded),
    );
    let f = udp(N, "198.51.100.7", "203.0.113.10", 9002, 9002, &big[..1400]);
    b.step(
        N,
        f,
        "1428 bytes fit the instance port's 1500",
        fwd(I, "198.51.100.7", "172.16.0.10"),
    );
    // A 6000-byte datagram the sender already cut into 3000-byte pieces
    // (a 3000-byte path before eipsim): each piece is cut again, and the
    // later pieces follow the first's translation; one arrives early.
    let huge: Vec<u8> = (0..6000u32).map(|i| (i * 7) as u8).collect();
    let mut pieces = fragment(
        &udp(I, "172.16.0.10", "198.51.100.7", 9003, 9003, &huge),
        0x0707,
        2976,
    );
    let early = pieces.remove(2);
    b.step(
        I,
        early,
        "the last piece first: held, then cut to fit",
        fwd(N, "203.0.113.10", "198.51.100.7"),
    );
    for (i, f) in pieces.into_iter().enumerate() {
        b.step(
            I,
            f,
            format!("piece {} of 3, cut to fit 1500", i + 1),
            fwd(N, "203.0.113.10", "198.51.100.7"),
        );
    }
    Scenario {
        name: "mtu",
        about: "MTU: fragmentation without DF, ICMP fragmentation-needed with DF (live mode's --mtu)",
        topology: topo(""),
        steps: b.steps,
        mtu: [Some(1500), Some(1500), Some(1500)],
    }
}

/// Every scenario, the demo first.
pub fn all() -> Vec<Scenario> {
    vec![
        demo(),
        arp(),
        parse(),
        source_ttl(),
        routes(),
        policy(),
        flows(),
        source_selection(),
        vpc_and_eip(),
        inbound(),
        alg(),
        alg_forward(),
        checksums(),
        flow_table(),
        mtu(),
    ]
}

impl Scenario {
    /// The input captures, one per port that receives traffic, in the order
    /// replay is given them (instance, internet, vpc).
    pub fn inputs(&self) -> Vec<(Port, Vec<TimedFrame>)> {
        Port::ALL
            .iter()
            .filter_map(|&p| {
                let frames: Vec<(u64, Vec<u8>)> = self
                    .steps
                    .iter()
                    .filter(|s| s.port == p)
                    .map(|s| (s.ts_ns, s.frame.clone()))
                    .collect();
                (!frames.is_empty()).then_some((p, frames))
            })
            .collect()
    }

    /// The step behind the `index`-th frame received on `port`.
    pub fn step_at(&self, port: Port, index: usize) -> Option<&Step> {
        self.steps.iter().filter(|s| s.port == port).nth(index)
    }

    /// The expectations as JSON lines, for people reading `pcaps/`.
    pub fn expectations_jsonl(&self) -> String {
        let mut out = String::new();
        let mut seen = [0usize; 3];
        for s in &self.steps {
            let index = seen[s.port.index()];
            seen[s.port.index()] += 1;
            let e = match &s.expect {
                Expect::Forward { port, src, dst } => serde_json::json!({
                    "verdict": "forwarded", "out_port": port.name(), "src": src, "dst": dst}),
                Expect::Reply(p) => {
                    serde_json::json!({"verdict": "consumed", "out_port": p.name()})
                }
                Expect::Consume => serde_json::json!({"verdict": "consumed"}),
                Expect::Drop(r) => serde_json::json!({"verdict": "dropped", "reason": r.name()}),
            };
            let line = serde_json::json!({
                "in_port": s.port.name(), "index": index, "note": s.note, "expect": e});
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}
