//! `eipsim reach`: hand-checked answers on a topology with security groups
//! of both types, and agreement with the engine on thousands of generated
//! packets (every packet's verdict is the one of the line it falls on).

use eipsim::config::Topology;
use eipsim::engine::hash::SplitMix64;
use eipsim::engine::{Engine, Link, PORT_MACS, Verdict};
use eipsim::explain::reach::{Line, Outcome, Reach, reach};
use eipsim::io::driver::{MemorySource, Output, run};
use eipsim::probe::{self, PEER_MACS};
use std::net::Ipv4Addr;

/// Three ENIs as in the standard fixture: eth0 and eth1 (basic groups,
/// NAT EIPs), eth2 (an enterprise group, a cut-through EIP). Every number
/// the hand-checked test expects is read off these rules.
const TOPO: &str = r#"
region = "cn-hangzhou"
vpc_cidr = "172.16.0.0/12"

[[security_group]]
name = "sg-web"
members = ["172.16.100.0/24"]

[[security_group.rule]]
direction = "ingress"
priority = 10
protocol = "tcp"
port_range = "80/80,443/443"
cidr = "0.0.0.0/0"

[[security_group.rule]]
direction = "ingress"
policy = "drop"
priority = 10
protocol = "tcp"
port_range = "443/443"
cidr = "198.51.100.0/24"

[[security_group.rule]]
direction = "ingress"
priority = 5
protocol = "tcp"
port_range = "22/22"
cidr = "192.0.2.0/24"

[[security_group.rule]]
direction = "ingress"
priority = 20
protocol = "tcp"
port_range = "53/53"
cidr = "0.0.0.0/0"

[[security_group.rule]]
direction = "ingress"
protocol = "icmp"
cidr = "0.0.0.0/0"

[[security_group.rule]]
direction = "egress"
policy = "drop"
protocol = "udp"
port_range = "-1/-1"
cidr = "198.51.100.0/24"

[[security_group]]
name = "sg-app"
internal_isolation = true
members = ["172.16.50.0/24"]

[[security_group.rule]]
direction = "ingress"
protocol = "tcp"
port_range = "5432/5432"
group = "sg-web"

[[security_group.rule]]
direction = "ingress"
priority = 50
protocol = "all"
cidr = "10.0.0.0/8"

[[security_group]]
name = "sg-ent"
type = "enterprise"

[[security_group.rule]]
direction = "ingress"
protocol = "tcp"
port_range = "8080/8080"
cidr = "0.0.0.0/0"

[[security_group.rule]]
direction = "egress"
protocol = "tcp"
port_range = "443/443"
cidr = "0.0.0.0/0"

[[security_group.rule]]
direction = "egress"
protocol = "gre"
cidr = "172.16.0.0/12"

[[security_group.rule]]
direction = "egress"
protocol = "all"
cidr = "100.64.0.0/10"

[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]
security_groups = ["sg-web"]

[[eni]]
name = "eth1"
private_ips = ["172.16.1.10", "172.16.1.11", "172.16.1.12"]
security_groups = ["sg-app"]

[[eni]]
name = "eth2"
private_ips = ["172.16.2.10"]
security_groups = ["sg-ent"]

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

[[route]]
dst = "8.0.0.0/8"
via = "eth0"

[[route]]
dst = "0.0.0.0/0"
from = "172.16.1.0/24"
via = "eth1"

[[route]]
dst = "0.0.0.0/0"
from = "203.0.113.12/32"
via = "eth2"

[[route]]
dst = "192.0.2.0/24"
via = ["eth0", "eth1"]

[[route]]
dst = "172.16.0.0/16"
via = "eth0"
"#;

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The line of a section a packet falls on; exactly one must.
fn the_line(lines: &[Line], proto: u8, dport: u16, peer: Ipv4Addr) -> &Line {
    let hits: Vec<&Line> = lines
        .iter()
        .filter(|l| l.covers(proto, dport, peer))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "proto {proto} dport {dport} peer {peer}: {hits:?}"
    );
    hits[0]
}

/// What reach says of a new connection from `peer` to `to` arriving on
/// `from` (`sport` matters for the ALG only).
fn inbound(
    r: &Reach,
    from: Link,
    to: &str,
    proto: u8,
    sport: u16,
    dport: u16,
    peer: &str,
) -> Outcome {
    let s = r
        .inbound
        .iter()
        .find(|s| s.from == from && s.to == a(to))
        .unwrap_or_else(|| panic!("no inbound section for {to} from {}", from.name()));
    with_sport(
        &the_line(&s.lines, proto, dport, a(peer)).outcomes[0],
        sport,
    )
}

/// What reach says of a new connection from `src` to `dst`: one outcome
/// per next hop.
fn outbound(
    r: &Reach,
    src: &str,
    proto: u8,
    sport: u16,
    dport: u16,
    dst: &str,
) -> Vec<(String, Outcome)> {
    let s = r.outbound.iter().find(|s| s.from == a(src)).unwrap();
    let p = s
        .paths
        .iter()
        .find(|p| p.to.iter().any(|x| x.contains(a(dst))))
        .unwrap_or_else(|| panic!("no path to {dst}"));
    let l = the_line(&p.lines, proto, dport, a(dst));
    l.outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let eni = p.hops.get(i).map_or(String::new(), |h| h.eni.clone());
            (eni, with_sport(o, sport))
        })
        .collect()
}

/// The outcome for a packet from source port `sport`: the ALG also
/// recognises its protocols by the source port.
fn with_sport(o: &Outcome, sport: u16) -> Outcome {
    let mut o = o.clone();
    if o.alg_sports.contains(&sport) {
        o.verdict = "dropped";
        o.reason = Some("alg_unsupported");
    }
    o
}

fn short(o: &Outcome) -> String {
    o.reason.map_or("forwarded".to_string(), str::to_string)
}

fn one(v: Vec<(String, Outcome)>) -> String {
    assert_eq!(v.len(), 1, "{v:?}");
    short(&v[0].1)
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const GRE: u8 = 47;

#[test]
fn hand_checked_answers() {
    let topo = Topology::from_toml(TOPO).unwrap();
    let r = reach(&topo);
    assert!(r.security_groups);
    let inet =
        |to, proto, dport, peer| short(&inbound(&r, Link::Internet, to, proto, 40000, dport, peer));
    // eth0, sg-web: 80 and 443 from anywhere (priority 10) ...
    assert_eq!(inet("203.0.113.10", TCP, 80, "8.8.8.8"), "forwarded");
    assert_eq!(inet("203.0.113.10", TCP, 443, "8.8.8.8"), "forwarded");
    // ... but at equal priority the drop rule for 198.51.100.0/24 wins.
    assert_eq!(
        inet("203.0.113.10", TCP, 443, "198.51.100.7"),
        "security_group_denied"
    );
    assert_eq!(inet("203.0.113.10", TCP, 80, "198.51.100.7"), "forwarded");
    // 22 only from 192.0.2.0/24; elsewhere the basic default denies.
    assert_eq!(inet("203.0.113.10", TCP, 22, "192.0.2.200"), "forwarded");
    assert_eq!(
        inet("203.0.113.10", TCP, 22, "192.0.3.1"),
        "security_group_denied"
    );
    // TCP 53 is let in by a rule, then the NAT ALG drops DNS; UDP 53 has
    // no rule: the security group drops it first.
    assert_eq!(inet("203.0.113.10", TCP, 53, "8.8.8.8"), "alg_unsupported");
    assert_eq!(
        inet("203.0.113.10", UDP, 53, "8.8.8.8"),
        "security_group_denied"
    );
    assert_eq!(inet("203.0.113.10", ICMP, 0, "8.8.8.8"), "forwarded");
    assert_eq!(
        inet("203.0.113.10", GRE, 0, "8.8.8.8"),
        "security_group_denied"
    );
    assert_eq!(inet("203.0.113.10", TCP, 80, "127.0.0.1"), "martian_source");
    // A source port the ALG knows turns an accepted flow into a drop.
    let o = inbound(&r, Link::Internet, "203.0.113.10", TCP, 5060, 80, "8.8.8.8");
    assert_eq!(short(&o), "alg_unsupported");
    // eth1, sg-app: the group peer matches VPC traffic only.
    let vpc =
        |to, proto, dport, peer| short(&inbound(&r, Link::Vpc, to, proto, 40000, dport, peer));
    assert_eq!(vpc("172.16.1.10", TCP, 5432, "172.16.100.9"), "forwarded");
    assert_eq!(
        vpc("172.16.1.10", TCP, 5432, "172.16.0.10"),
        "forwarded",
        "eth0 is in sg-web"
    );
    assert_eq!(
        vpc("172.16.1.10", TCP, 5433, "172.16.100.9"),
        "security_group_denied"
    );
    assert_eq!(
        inet("203.0.113.11", TCP, 5432, "172.16.100.9"),
        "security_group_denied"
    );
    // internal_isolation: members of sg-app do not reach each other.
    assert_eq!(
        vpc("172.16.1.11", UDP, 9, "172.16.50.1"),
        "security_group_denied"
    );
    // sg-web is not isolated: its members are accepted before any rule.
    assert_eq!(vpc("172.16.0.10", UDP, 9, "172.16.100.1"), "forwarded");
    assert_eq!(
        vpc("172.16.0.10", UDP, 9, "172.16.101.1"),
        "security_group_denied"
    );
    // priority 50 accept of everything from 10.0.0.0/8, NAT ALG after it.
    assert_eq!(inet("203.0.113.13", GRE, 0, "10.1.2.3"), "forwarded");
    assert_eq!(inet("203.0.113.13", UDP, 69, "10.1.2.3"), "alg_unsupported");
    // eth2: enterprise, cut-through (no ALG, no private network).
    assert_eq!(inet("203.0.113.12", TCP, 8080, "8.8.8.8"), "forwarded");
    assert_eq!(
        inet("203.0.113.12", TCP, 80, "8.8.8.8"),
        "security_group_denied"
    );
    assert_eq!(vpc("172.16.2.10", TCP, 8080, "172.16.0.10"), "not_local");

    // Outbound.
    let out = |src, proto, dport, dst| one(outbound(&r, src, proto, 40000, dport, dst));
    assert_eq!(out("172.16.0.10", TCP, 80, "8.8.8.8"), "forwarded");
    assert_eq!(
        out("172.16.0.10", TCP, 25, "8.8.8.8"),
        "smtp_port_25_blocked"
    );
    assert_eq!(out("172.16.0.10", UDP, 53, "8.8.8.8"), "alg_unsupported");
    assert_eq!(
        out("172.16.0.10", TCP, 80, "9.9.9.9"),
        "no_route",
        "no default for 172.16.0.10"
    );
    assert_eq!(out("172.16.0.10", TCP, 80, "224.0.0.5"), "not_unicast");
    assert_eq!(out("172.16.0.10", TCP, 80, "172.16.9.9"), "forwarded");
    // sg-web's egress drop rule; 172.16.1.12 has no EIP.
    assert_eq!(
        out("172.16.1.10", UDP, 9, "198.51.100.1"),
        "forwarded",
        "eth1 has no such rule"
    );
    assert_eq!(out("172.16.1.12", TCP, 80, "198.51.100.1"), "no_eip");
    // Cut-through, enterprise: only TCP 443 out, 100.64.0.0/10 refused,
    // the VPC unreachable (after the egress rules: GRE is let out first).
    assert_eq!(out("203.0.113.12", TCP, 443, "198.51.100.1"), "forwarded");
    assert_eq!(
        out("203.0.113.12", TCP, 80, "198.51.100.1"),
        "security_group_denied"
    );
    assert_eq!(
        out("203.0.113.12", TCP, 443, "100.64.1.1"),
        "cut_through_reserved_cidr"
    );
    assert_eq!(
        out("203.0.113.12", GRE, 0, "172.17.0.20"),
        "cut_through_no_private"
    );
    assert_eq!(
        out("203.0.113.12", ICMP, 0, "172.17.0.20"),
        "security_group_denied"
    );
    // Longest prefix first: 172.16.0.0/16 leaves by eth0, from 172.16.0.10.
    assert_eq!(out("203.0.113.12", ICMP, 0, "172.16.0.20"), "forwarded");
    // Two next hops: eth0 drops UDP to 198.51.100.0/24 ... not in
    // 192.0.2.0/24; there both pass, each with its own EIP.
    let v = outbound(&r, "172.16.0.10", UDP, 40000, 9, "192.0.2.9");
    let names: Vec<(&str, String)> = v.iter().map(|(e, o)| (e.as_str(), short(o))).collect();
    assert_eq!(
        names,
        vec![
            ("eth0", "forwarded".to_string()),
            ("eth1", "forwarded".to_string())
        ]
    );
    // The hairpin to an own EIP meets the target's ingress rules.
    assert_eq!(out("172.16.0.10", TCP, 80, "203.0.113.10"), "no_route");
    assert_eq!(out("172.16.1.10", TCP, 80, "203.0.113.10"), "forwarded");
    assert_eq!(
        out("172.16.1.10", TCP, 22, "203.0.113.10"),
        "security_group_denied"
    );
}

/// A frame of any IP protocol without ports (GRE, others).
fn raw_ip(port: Link, src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(PEER_MACS[port.index()], PORT_MACS[port.index()].0)
        .ipv4(src.octets(), dst.octets(), 64)
        .write(&mut v, etherparse::IpNumber(proto), &[0u8; 8])
        .unwrap();
    v
}

fn frame(port: Link, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let (s, d) = (src.to_string(), dst.to_string());
    match proto {
        TCP => probe::tcp(port, &s, &d, sport, dport, "S", b""),
        UDP => probe::udp(port, &s, &d, sport, dport, b""),
        ICMP => probe::ping(port, &s, &d, sport, 1, false),
        p => raw_ip(port, src, dst, p),
    }
}

/// Addresses worth trying: uniform ones, and ones in and at the edges of
/// every prefix the topology names.
fn address(rng: &mut SplitMix64, within: Option<(u32, u32)>) -> Ipv4Addr {
    const PREFIXES: [&str; 16] = [
        "172.16.100.0/24",
        "172.16.50.0/24",
        "172.16.0.0/12",
        "198.51.100.0/24",
        "192.0.2.0/24",
        "10.0.0.0/8",
        "8.0.0.0/8",
        "100.64.0.0/10",
        "203.0.113.8/29",
        "172.16.0.0/22",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "0.0.0.0/8",
        "0.0.0.0/0",
    ];
    let x = rng.next_u64();
    let n: ipnetwork::Ipv4Network = PREFIXES[(x % 16) as usize].parse().unwrap();
    let (lo, hi) = (n.network().to_bits(), n.broadcast().to_bits());
    let v = match (x >> 8) % 4 {
        0 => lo.wrapping_sub(1),
        1 => hi.wrapping_add(1),
        2 => lo,
        _ => lo + (rng.next_u64() % (u64::from(hi - lo) + 1)) as u32,
    };
    match within {
        Some((a, b)) => Ipv4Addr::from_bits(a + (v % (b - a + 1))),
        None => Ipv4Addr::from_bits(v),
    }
}

fn verdict_of(v: Verdict) -> (String, Option<String>) {
    match v {
        Verdict::Forwarded { eni, .. } => ("forwarded".into(), eni.map(|e| e.0.to_string())),
        Verdict::Dropped { reason, eni, .. } => {
            (reason.name().into(), eni.map(|e| e.0.to_string()))
        }
        other => (format!("{other:?}"), None),
    }
}

/// Every packet's verdict from the engine (through the driver replay
/// uses) is the verdict of the reach line it falls on.
fn agree(text: &str, n: usize, seed: u64) -> std::collections::BTreeSet<String> {
    let topo = Topology::from_toml(text).unwrap();
    let r = reach(&topo);
    let mut rng = SplitMix64::new(seed);
    let eips: Vec<Ipv4Addr> = topo.eips.iter().map(|e| e.address).collect();
    let privates: Vec<Ipv4Addr> = topo
        .enis
        .iter()
        .flat_map(|e| e.private_ips.clone())
        .collect();
    let sources: Vec<Ipv4Addr> = r.outbound.iter().map(|o| o.from).collect();
    let vpc = (
        topo.vpc_cidr.network().to_bits(),
        topo.vpc_cidr.broadcast().to_bits(),
    );
    let alg_ports = [53u16, 69, 554, 1719, 1720, 5060, 5061, 21];
    let port_edges = [
        1u16, 21, 22, 23, 25, 53, 69, 79, 80, 81, 442, 443, 444, 5432, 8080, 65535,
    ];
    // (port, proto, src, dst, sport, dport, expected outcomes by ENI name)
    let mut input = Vec::new();
    let mut expect = Vec::new();
    // reach answers for the first packet of a connection: a packet that
    // could meet an earlier one's flow (same protocol and far end, and
    // ports) is not sent.
    let mut seen = std::collections::HashSet::new();
    for i in 0..n {
        let x = rng.next_u64();
        let proto = [TCP, TCP, TCP, UDP, UDP, UDP, ICMP, GRE, 50, 132][(x % 10) as usize];
        let dport = match (x >> 8) % 3 {
            0 => port_edges[((x >> 16) % 16) as usize],
            1 => alg_ports[((x >> 16) % 8) as usize],
            _ => 1 + ((x >> 16) % 65535) as u16,
        };
        let sport = if (x >> 40).is_multiple_of(10) {
            alg_ports[((x >> 44) % 8) as usize]
        } else {
            10_000 + i as u16
        };
        let dport = if proto == ICMP || !matches!(proto, TCP | UDP) {
            0
        } else {
            dport
        };
        let (port, src, dst, want) = match (x >> 32) % 3 {
            0 => {
                let to = eips[((x >> 48) % eips.len() as u64) as usize];
                let peer = address(&mut rng, None);
                let o = inbound(
                    &r,
                    Link::Internet,
                    &to.to_string(),
                    proto,
                    sport,
                    dport,
                    &peer.to_string(),
                );
                (Link::Internet, peer, to, vec![(String::new(), o)])
            }
            1 => {
                let to = privates[((x >> 48) % privates.len() as u64) as usize];
                let peer = address(&mut rng, Some(vpc));
                let o = inbound(
                    &r,
                    Link::Vpc,
                    &to.to_string(),
                    proto,
                    sport,
                    dport,
                    &peer.to_string(),
                );
                (Link::Vpc, peer, to, vec![(String::new(), o)])
            }
            _ => {
                let from = sources[((x >> 48) % sources.len() as u64) as usize];
                let dst = address(&mut rng, None);
                let v = outbound(&r, &from.to_string(), proto, sport, dport, &dst.to_string());
                (Link::Instance, from, dst, v)
            }
        };
        // ICMP: the identifier is the flow's "port"; keep it unique.
        let sport = if proto == ICMP {
            10_000 + i as u16
        } else {
            sport
        };
        let remote = if port == Link::Instance { dst } else { src };
        let ports = if matches!(proto, TCP | UDP | ICMP) {
            (sport.min(dport), sport.max(dport))
        } else {
            (0, 0)
        };
        if !seen.insert((proto, remote, ports)) {
            continue;
        }
        input.push((
            1_000_000 * (i as u64 + 1),
            port,
            frame(port, proto, src, dst, sport, dport),
        ));
        expect.push((
            format!("{} {proto} {src}:{sport} > {dst}:{dport}", port.name()),
            want,
        ));
    }
    let mut engine = Engine::new(topo.clone());
    let mut got = Vec::new();
    run(
        &mut engine,
        &mut [&mut MemorySource::new(&input)],
        &mut |o| -> Result<(), eipsim::io::capture::CaptureError> {
            if let Output::Frame { verdict, .. } = o {
                got.push(verdict);
            }
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(got.len(), expect.len());
    let mut kinds = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    for ((what, want), v) in expect.iter().zip(got) {
        let (verdict, eni) = verdict_of(v);
        let eni_name = eni.map(|e| topo.enis[e.parse::<usize>().unwrap()].name.clone());
        // The hop the engine took (several for a balanced route).
        let o = match want.iter().find(|(e, _)| Some(e) == eni_name.as_ref()) {
            Some((_, o)) => o,
            None if want.len() == 1 => &want[0].1,
            None => {
                // A hairpin's verdict names the target's ENI: any hop.
                if want.iter().any(|(_, o)| short(o) == verdict) {
                    continue;
                }
                &want[0].1
            }
        };
        if short(o) != verdict {
            bad.push(format!(
                "{what}: engine {verdict}, reach {} ({})",
                short(o),
                o.by
            ));
        }
        kinds.insert(verdict);
    }
    assert!(
        bad.is_empty(),
        "{} of {} disagree:\n{}",
        bad.len(),
        n,
        bad[..bad.len().min(20)].join("\n")
    );
    kinds
}

#[test]
fn reach_agrees_with_the_engine() {
    let kinds = agree(TOPO, 20_000, 2026);
    for k in [
        "forwarded",
        "security_group_denied",
        "alg_unsupported",
        "martian_source",
        "martian_destination",
        "no_route",
        "no_eip",
        "smtp_port_25_blocked",
        "not_local",
        "cut_through_no_private",
        "cut_through_reserved_cidr",
        "not_unicast",
    ] {
        assert!(kinds.contains(k), "no packet was {k}: {kinds:?}");
    }
}

#[test]
fn reach_agrees_with_the_engine_without_security_groups() {
    let text = format!(
        "{}\n[cloud]\nsmtp_port_25 = \"allowed\"\n",
        eipsim_fixtures::STANDARD
    );
    let kinds = agree(&text, 3000, 7);
    assert!(
        kinds.contains("forwarded") && kinds.contains("alg_unsupported"),
        "{kinds:?}"
    );
}

/// A hairpin to the sender's own EIP whose flow key reads the same both
/// ways (ICMP echo by identifier, a protocol without ports, TCP/UDP with
/// sport == dport) meets, on its second pass, the flow its first pass
/// created; the target's ingress rules must still judge it (an engine bug
/// the agreement test found, fixed in `Engine::self_hairpin_ingress`).
#[test]
fn self_hairpin_meets_the_ingress_rules() {
    let topo = Topology::from_toml(TOPO).unwrap();
    let r = reach(&topo);
    assert_eq!(
        one(outbound(&r, "172.16.1.10", ICMP, 7, 0, "203.0.113.11")),
        "security_group_denied"
    );
    let mut e = Engine::new(topo);
    let mut f = probe::ping(Link::Instance, "172.16.1.10", "203.0.113.11", 7, 1, false);
    let (v, _) = verdict_of(e.process(1, Link::Instance, &mut f, 0));
    assert_eq!(v, "security_group_denied");
}

/// The example of the README's `reach` section: its file, and its output
/// line by line.
#[test]
fn the_documented_example() {
    let readme = include_str!("../README.md");
    let doc = readme
        .split("### `eipsim reach --config FILE [--json]")
        .nth(1)
        .expect("the README has a reach section")
        .split("\n### ")
        .next()
        .unwrap();
    let toml = doc
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let shown = doc
        .split("$ eipsim reach --config web.toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let text = reach(&Topology::from_toml(toml).unwrap()).text();
    let want: Vec<&str> = shown.trim_end().lines().collect();
    let got: Vec<&str> = text.trim_end().lines().collect();
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w, g, "line {} of the example", i + 1);
    }
    assert_eq!(want.len(), got.len());
    // And the agreement with the engine on it.
    agree(toml, 3000, 11);
}
