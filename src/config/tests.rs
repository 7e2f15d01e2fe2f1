//! The topology file's tests: the example file, rule violations with
//! their lines, parse errors, and the model's queries.

use super::*;
use std::net::Ipv4Addr;

const GOOD: &str = r#"
region = "cn-hangzhou"
vpc_cidr = "172.16.0.0/12"

[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]

[[eni]]
name = "eth1"
private_ips = ["172.16.1.10", "172.16.1.11"]

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
private_ip = "172.16.1.11"

[[eip]]
address = "203.0.113.12"
eni = "eth2"
mode = "cut-through"
"#;

fn errors(text: &str) -> Vec<ConfigError> {
    Topology::from_toml(text).expect_err("should be rejected")
}

#[test]
fn accepts_the_example() {
    let t = Topology::from_toml(GOOD).unwrap();
    assert_eq!(t.enis.len(), 3);
    assert_eq!(t.eips[0].private_ip, Ipv4Addr::new(172, 16, 0, 10));
    assert_eq!(t.eips[1].private_ip, Ipv4Addr::new(172, 16, 1, 11));
    // Implied default route via the primary ENI.
    assert_eq!(t.routes.len(), 1);
    assert!(t.routes[0].implied);
    assert_eq!(t.routes[0].via, vec![EniId(0)]);
    assert_eq!(
        t.os_addresses(EniId(2)),
        vec![Ipv4Addr::new(203, 0, 113, 12)]
    );
    assert!(!t.eip_instance_fee(EipId(0)));
    assert!(t.eip_instance_fee(EipId(1)));
    let s = t.summary();
    assert!(
        s.contains("eth2 (secondary): OS addresses 203.0.113.12"),
        "{s}"
    );
    assert!(
        s.contains("EIP 203.0.113.10 nat -> 172.16.0.10, EIP instance fee: no"),
        "{s}"
    );
}

#[test]
fn reports_every_violation_with_its_line() {
    let text = GOOD.to_string()
        + r#"
[[eip]]
address = "203.0.113.13"
eni = "eth0"
mode = "nat"

[[eip]]
address = "172.16.9.9"
eni = "eth2"
mode = "cut-through"

[[route]]
dst = "0.0.0.0/0"
via = ["eth0", "eth9"]
weights = [1, 0]
"#;
    let errs = errors(&text);
    let joined: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let all = joined.join("\n");
    // Line numbers: the appended [[eip]] starts at GOOD's line count + 2.
    let base = GOOD.lines().count();
    assert!(
        all.contains(&format!(
            "line {}: [[eip]] 203.0.113.13: NAT on the primary ENI",
            base + 2
        )),
        "{all}"
    );
    assert!(
        all.contains("172.16.9.9: an EIP must be a public address outside vpc_cidr"),
        "{all}"
    );
    assert!(all.contains("already has EIP 203.0.113.12"), "{all}");
    assert!(
        all.contains("via names \"eth9\", which is not an ENI"),
        "{all}"
    );
    assert!(all.contains("weight 0 must be a positive integer"), "{all}");
}

#[test]
fn cut_through_rules() {
    let text = GOOD.replace("region = \"cn-hangzhou\"", "region = \"cn-wulanchabu\"")
        + "\n[[eip]]\naddress = \"198.51.100.1\"\neni = \"eth0\"\nmode = \"cut-through\"\n";
    let all: Vec<String> = errors(&text).iter().map(|e| e.to_string()).collect();
    let all = all.join("\n");
    assert!(
        all.contains("not available in region \"cn-wulanchabu\""),
        "{all}"
    );
    assert!(all.contains("secondary ENIs only"), "{all}");
    let text = GOOD.replace(
        "mode = \"cut-through\"",
        "mode = \"cut-through\"\nprivate_ip = \"172.16.2.10\"",
    );
    assert!(Topology::from_toml(&text).is_ok());
}

/// An EIP is a public address: none of RFC 6890's ranges that the
/// Internet never routes to one host (the engine drops the martian ones,
/// so such an EIP would be unreachable), the documentation ranges kept.
#[test]
fn an_eip_must_be_a_public_address() {
    for (address, why) in [
        ("0.0.0.1", "0.0.0.0/8"),
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private address (RFC 1918)"),
        ("192.168.1.1", "private address (RFC 1918)"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("100.127.255.254", "100.64.0.0/10"),
        ("192.0.0.9", "192.0.0.0/24"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "240.0.0.0/4"),
        ("255.255.255.255", "broadcast"),
    ] {
        let text = GOOD.replace("203.0.113.10", address);
        let all: Vec<String> = errors(&text).iter().map(|e| e.to_string()).collect();
        let all = all.join("\n");
        assert!(
            all.contains(&format!(
                "[[eip]] {address}: an EIP must be a public address; {address} is"
            )) && all.contains(why),
            "{address}: {all}"
        );
    }
    for address in [
        "100.63.255.255",
        "100.128.0.1",
        "192.0.1.255",
        "192.0.2.1",
        "198.18.0.9",
        "198.51.100.1",
        "8.8.8.8",
        "223.255.255.254",
    ] {
        let text = GOOD.replace("203.0.113.10", address);
        assert!(Topology::from_toml(&text).is_ok(), "{address}");
    }
}

/// A default route for one source prefix replaces the implied default
/// for every source: the summary names each private IP left without one.
#[test]
fn the_summary_names_sources_no_default_route_covers() {
    let text = format!(
        "{GOOD}\n[[route]]\ndst = \"0.0.0.0/0\"\nvia = \"eth1\"\nfrom = \"172.16.1.0/24\"\n"
    );
    let summary = Topology::from_toml(&text).unwrap().summary();
    // eth2 is cut-through: its OS source is its EIP.
    for (ip, eni) in [("172.16.0.10", "eth0"), ("203.0.113.12", "eth2")] {
        assert!(
            summary.contains(&format!(
                "note: no default route applies to source {ip} ({eni})"
            )),
            "{summary}"
        );
    }
    assert!(!summary.contains("source 172.16.1.10"), "{summary}");
    // A cut-through ENI's source is its EIP, which the OS has instead of
    // the private IP: a default route from the EIP covers it.
    let text = format!(
        "{GOOD}\n[[route]]\ndst = \"0.0.0.0/0\"\nvia = \"eth2\"\nfrom = \"203.0.113.12/32\"\n"
    );
    let summary = Topology::from_toml(&text).unwrap().summary();
    assert!(!summary.contains("(eth2)"), "{summary}");
    assert!(!summary.contains("source 172.16.2.10"), "{summary}");
    assert!(
        summary.contains("note: no default route applies to source 172.16.0.10 (eth0)"),
        "{summary}"
    );
    assert!(
        !Topology::from_toml(GOOD)
            .unwrap()
            .summary()
            .contains("note:")
    );
}

/// An ENI's name names its capture file: it must stay one file name.
#[test]
fn an_eni_name_is_one_file_name() {
    // (Debug quoting is TOML's for these.)
    for bad in ["/tmp/x", "../x", "a/b", "..", ".", "a\nb", "a\tb"] {
        let text = GOOD
            .replace("name = \"eth2\"", &format!("name = {bad:?}"))
            .replace("eni = \"eth2\"", &format!("eni = {bad:?}"));
        let all: Vec<String> = errors(&text).iter().map(|e| e.to_string()).collect();
        assert!(
            all.join("\n")
                .contains("an ENI name cannot be . or .., nor hold a / or a control character"),
            "{bad:?}: {all:?}"
        );
    }
    let text = GOOD.replace("\"eth2\"", "\"eni-bp1.x_y\"");
    assert!(Topology::from_toml(&text).is_ok());
    let long = "e".repeat(201);
    let text = GOOD.replace("\"eth2\"", &format!("\"{long}\""));
    let all: Vec<String> = errors(&text).iter().map(|e| e.to_string()).collect();
    assert!(
        all.join("\n").contains("an ENI name has at most 200 bytes"),
        "{all:?}"
    );
    let text = GOOD.replace("\"eth2\"", &format!("\"{}\"", "e".repeat(200)));
    assert!(Topology::from_toml(&text).is_ok());
}

/// A prefix that is not one says why, as `ip route` would refuse it.
#[test]
fn a_bad_prefix_names_what_is_wrong() {
    for (dst, why) in [
        ("10.0.0.1/8", "(host bits set: the prefix is 10.0.0.0/8)"),
        ("10.0.0.0/33", "(prefix length 33 is above 32)"),
        ("10.0.0.0", "(no /prefix length)"),
        ("10.0.0/8", "(\"10.0.0\" is not an IPv4 address)"),
        ("10.0.0.0/x", "(\"x\" is not a prefix length)"),
    ] {
        let text = format!("{GOOD}\n[[route]]\ndst = \"{dst}\"\nvia = \"eth1\"\n");
        let all: Vec<String> = errors(&text).iter().map(|e| e.to_string()).collect();
        let all = all.join("\n");
        assert!(
            all.contains(&format!(
                "{dst:?} is not a CIDR prefix like \"172.16.0.0/12\" {why}"
            )),
            "{dst}: {all}"
        );
    }
}

#[test]
fn one_primary_and_unique_names() {
    let text = GOOD.replace("name = \"eth2\"", "name = \"eth1\"");
    let all = errors(&text)
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("duplicate ENI name"), "{all}");
    let text = GOOD.replace("primary = true", "");
    let all = errors(&text)
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("exactly one primary ENI"), "{all}");
}

#[test]
fn secondary_nat_needs_distinct_private_ips() {
    let text = GOOD.to_string()
        + "\n[[eip]]\naddress = \"203.0.113.20\"\neni = \"eth1\"\nmode = \"nat\"\n\n[[eip]]\naddress = \"203.0.113.21\"\neni = \"eth1\"\nmode = \"nat\"\n";
    let all = errors(&text)
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("203.0.113.21: private IP 172.16.1.10 of ENI \"eth1\" is already mapped to EIP 203.0.113.20"), "{all}");
}

#[test]
fn parse_errors_carry_a_line() {
    let errs = errors("region = \"x\"\nvpc_cidr = \n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 2);
    let errs = errors(&GOOD.replace("mode = \"nat\"\nprivate_ip", "mode = \"natt\"\nprivate_ip"));
    assert!(
        errs[0].line > 0 && errs[0].message.contains("natt"),
        "{errs:?}"
    );
    let errs = errors(&GOOD.replace("primary = true", "primary = true\nprimry = 1"));
    assert!(errs[0].message.contains("primry"), "{errs:?}");
}

#[test]
fn explicit_default_route_replaces_the_implied_one() {
    let text = GOOD.to_string()
        + "\n[[route]]\ndst = \"0.0.0.0/0\"\nvia = [\"eth0\", \"eth1\"]\nweights = [3, 1]\nmetric = 100\n";
    let t = Topology::from_toml(&text).unwrap();
    assert_eq!(t.routes.len(), 1);
    assert_eq!(t.routes[0].weights, vec![3, 1]);
    assert!(
        t.route_text(&t.routes[0])
            .contains("nexthop dev eth0 weight 3")
    );
}

#[test]
fn eni_gateways_and_icmp_error_limits() {
    let t = Topology::from_toml(GOOD).unwrap();
    // The default: .253 of the primary private IP's /24 (Alibaba Cloud's
    // vSwitch gateway, a /24 assumed).
    assert_eq!(t.enis[1].gateway, Ipv4Addr::new(172, 16, 1, 253));
    assert_eq!(t.icmp_errors, IcmpErrorConfig::default());
    let given = GOOD.replacen(
        "private_ips = [\"172.16.1.10\", \"172.16.1.11\"]",
        "private_ips = [\"172.16.1.10\", \"172.16.1.11\"]\ngateway = \"172.16.0.1\"",
        1,
    ) + "\n[icmp_errors]\nper_second = 10\nburst = 1\n";
    let t = Topology::from_toml(&given).unwrap();
    assert_eq!(t.enis[1].gateway, Ipv4Addr::new(172, 16, 0, 1));
    assert_eq!((t.icmp_errors.per_second, t.icmp_errors.burst), (10, 1));
    // Outside the VPC, or an address the instance itself uses: refused.
    let outside = GOOD.replacen(
        "private_ips = [\"172.16.1.10\", \"172.16.1.11\"]",
        "private_ips = [\"172.16.1.10\", \"172.16.1.11\"]\ngateway = \"10.0.0.1\"",
        1,
    );
    let e = errors(&outside);
    assert!(
        e.iter()
            .any(|e| e.message.contains("gateway 10.0.0.1 is outside vpc_cidr")),
        "{e:?}"
    );
    let taken = GOOD.replacen(
        "private_ips = [\"172.16.1.10\", \"172.16.1.11\"]",
        "private_ips = [\"172.16.1.10\", \"172.16.1.11\"]\ngateway = \"172.16.0.10\"",
        1,
    );
    let e = errors(&taken);
    assert!(
        e.iter().any(|e| e
            .message
            .contains("gateway 172.16.0.10 is an address of the instance ([[eni]] \"eth0\"")),
        "{e:?}"
    );
    assert!(
        !errors(&format!("{GOOD}\n[icmp_errors]\nrate = 5\n")).is_empty(),
        "unknown key"
    );
}

/// GOOD with one security group per ENI added (appended `[[eni]]` keys
/// cannot be written after the fact in TOML, so the ENIs are repeated).
fn with_groups(groups: &str, eth0: &str, eth1: &str, eth2: &str) -> String {
    let mut t = GOOD.to_string();
    t = t.replacen(
        "private_ips = [\"172.16.0.10\"]",
        &format!("private_ips = [\"172.16.0.10\"]\n{eth0}"),
        1,
    );
    t = t.replacen(
        "private_ips = [\"172.16.1.10\", \"172.16.1.11\"]",
        &format!("private_ips = [\"172.16.1.10\", \"172.16.1.11\"]\n{eth1}"),
        1,
    );
    t = t.replacen(
        "private_ips = [\"172.16.2.10\"]",
        &format!("private_ips = [\"172.16.2.10\"]\n{eth2}"),
        1,
    );
    format!("{t}\n{groups}")
}

const GROUPS: &str = r#"
[[security_group]]
name = "sg-web"
members = ["172.16.100.0/24"]

[[security_group.rule]]
direction = "ingress"
protocol = "tcp"
port_range = "80/80,443/443"
cidr = "0.0.0.0/0"
description = "web"

[[security_group.rule]]
direction = "ingress"
policy = "drop"
priority = 5
protocol = "icmp"
group = "sg-ent"

[[security_group]]
name = "sg-ent"
type = "enterprise"
"#;

#[test]
fn security_groups_parse_into_the_model() {
    let sg = "security_groups = [\"sg-web\"]";
    let text = with_groups(GROUPS, sg, sg, "security_groups = [\"sg-ent\"]");
    let t = Topology::from_toml(&text).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(t.security_groups.len(), 2);
    let web = &t.security_groups[0];
    assert_eq!(web.kind, GroupType::Basic);
    assert!(!web.internal_isolation);
    assert_eq!(web.members, vec!["172.16.100.0/24".parse().unwrap()]);
    let r = &web.rules[0];
    // Defaults: accept, priority 1 (AuthorizeSecurityGroup's defaults).
    assert_eq!((r.policy, r.priority), (RulePolicy::Accept, 1));
    assert_eq!(
        r.ports,
        vec![
            PortRange { start: 80, end: 80 },
            PortRange {
                start: 443,
                end: 443
            }
        ]
    );
    assert_eq!(r.ports_text(), "80/80,443/443");
    assert_eq!(r.description, "web");
    // A group named before its definition resolves; ICMP has every port.
    let r = &web.rules[1];
    assert_eq!(r.peer, Peer::Group(GroupId(1)));
    assert_eq!(r.ports, vec![PortRange::ALL]);
    assert_eq!((r.policy, r.priority), (RulePolicy::Drop, 5));
    assert_eq!(t.security_groups[1].kind, GroupType::Enterprise);
    assert_eq!(t.enis[0].security_groups, vec![GroupId(0)]);
    assert_eq!(t.enis[2].security_groups, vec![GroupId(1)]);
    // Without [[security_group]] nothing is required of the ENIs.
    assert!(
        Topology::from_toml(GOOD)
            .unwrap()
            .security_groups
            .is_empty()
    );
}

#[test]
fn security_group_violations_name_entry_and_line() {
    // An ENI without groups once groups exist; a group of the other type;
    // an unknown group; more than ten.
    let eleven = format!(
        "security_groups = [{}]",
        (0..11).map(|_| "\"sg-web\"").collect::<Vec<_>>().join(", ")
    );
    let text = with_groups(
        GROUPS,
        "",
        "security_groups = [\"sg-web\", \"sg-ent\"]",
        &eleven,
    );
    let errs = errors(&text);
    let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let all = all.join("\n");
    assert!(
        all.contains(
            "[[eni]] \"eth0\": the file defines security groups, so every ENI needs security_groups"
        ),
        "{all}"
    );
    assert!(
        all.contains("security group \"sg-ent\" is enterprise but \"sg-web\" is basic"),
        "{all}"
    );
    assert!(
        all.contains("an ENI is in 1 to 10 security groups, not 11"),
        "{all}"
    );
    assert!(
        all.contains("security group \"sg-web\" is named twice"),
        "{all}"
    );

    // Rule fields.
    let bad = r#"
[[security_group]]
name = "sg-web"
[[security_group.rule]]
direction = "ingress"
priority = 101
protocol = "tcp"
cidr = "0.0.0.0/0"
[[security_group.rule]]
direction = "ingress"
protocol = "icmp"
port_range = "8/8"
cidr = "0.0.0.0/0"
[[security_group.rule]]
direction = "ingress"
protocol = "udp"
port_range = "90/80"
cidr = "0.0.0.0/0"
[[security_group.rule]]
direction = "egress"
protocol = "all"
[[security_group.rule]]
direction = "egress"
protocol = "all"
cidr = "10.0.0.0/8"
group = "sg-web"
[[security_group.rule]]
direction = "egress"
protocol = "gre"
group = "sg-nope"
[[security_group]]
name = "sg-web"
[[security_group]]
name = "sg-e"
type = "enterprise"
internal_isolation = true
members = ["10.1.0.0/16"]
"#;
    let sg = "security_groups = [\"sg-web\"]";
    let text = with_groups(bad, sg, sg, sg);
    let errs = errors(&text);
    let line_of = |needle: &str| {
        errs.iter()
            .find(|e| e.message.contains(needle))
            .unwrap_or_else(|| panic!("no error {needle:?} in {errs:#?}"))
            .line
    };
    let base = text
        .lines()
        .position(|l| l.contains("priority = 101"))
        .unwrap()
        + 1;
    assert_eq!(line_of("priority 101 is not 1 to 100"), base);
    assert!(line_of("only tcp and udp rules have ports") > base);
    assert!(line_of("\"90/80\" is not \"start/end\"") > base);
    assert!(line_of("a rule needs its peer") > base);
    assert!(line_of("not both") > base);
    assert!(line_of("no security group is named \"sg-nope\"") > base);
    assert!(line_of("duplicate security group name (first defined on line") > base);
    assert!(line_of("internal_isolation is for basic groups only") > base);
    assert!(line_of("member 10.1.0.0/16 is outside vpc_cidr") > base);
}

#[test]
fn bandwidth_keys_and_plans() {
    let plan = r#"
[[bandwidth_plan]]
name = "cbwp-1"
mbps = 200
eips = ["203.0.113.10", "203.0.113.11"]
"#;
    let text = GOOD.replacen(
        "mode = \"nat\"\n",
        "mode = \"nat\"\nbandwidth_mbps = 5\n",
        1,
    );
    let text = text.replacen(
        "private_ip = \"172.16.1.11\"\n",
        "private_ip = \"172.16.1.11\"\nbandwidth_mbps = 50\n",
        1,
    );
    let t = Topology::from_toml(&text).unwrap();
    // The cloud's rule: inbound 10 Mbit/s up to an outbound 10 Mbit/s,
    // then equal to it (ECS "Network bandwidth").
    assert_eq!(
        (t.eips[0].bandwidth_mbps, t.eips[0].inbound_mbps),
        (Some(5), Some(10))
    );
    assert_eq!(
        (t.eips[1].bandwidth_mbps, t.eips[1].inbound_mbps),
        (Some(50), Some(50))
    );
    assert_eq!(
        (t.eips[2].bandwidth_mbps, t.eips[2].inbound_mbps),
        (None, None)
    );
    let t = Topology::from_toml(&format!("{text}{plan}")).unwrap();
    assert_eq!(t.bandwidth_plans[0].eips, vec![EipId(0), EipId(1)]);
    assert_eq!(t.eips[1].plan, Some(PlanId(0)));
    assert_eq!(t.eips[2].plan, None);
    // Errors: an unknown EIP, an EIP in two plans, a zero bandwidth.
    let bad = format!(
        "{GOOD}{plan}
[[bandwidth_plan]]
name = \"cbwp-2\"
mbps = 0
eips = [\"203.0.113.11\", \"198.51.100.1\"]
"
    );
    let all: Vec<String> = errors(&bad).iter().map(|e| e.to_string()).collect();
    let all = all.join("\n");
    assert!(
        all.contains("[[bandwidth_plan]] \"cbwp-2\": mbps 0 is not 1 to 1000000 Mbit/s"),
        "{all}"
    );
    assert!(
        all.contains("EIP 203.0.113.11 is already in plan \"cbwp-1\""),
        "{all}"
    );
    assert!(all.contains("no [[eip]] has address 198.51.100.1"), "{all}");
    // [cloud]
    let t = Topology::from_toml(&format!("{GOOD}\n[cloud]\nsmtp_port_25 = \"allowed\"\n")).unwrap();
    assert_eq!(t.cloud.smtp_port_25, Smtp::Allowed);
    assert_eq!(
        Topology::from_toml(GOOD).unwrap().cloud.smtp_port_25,
        Smtp::Blocked
    );
}

#[test]
fn an_eni_s_groups_hold_at_most_1000_rules() {
    let ports: Vec<String> = (1..=1001).map(|p| format!("{p}/{p}")).collect();
    let groups = format!(
        "[[security_group]]\nname = \"sg-web\"\n[[security_group.rule]]\ndirection = \"ingress\"\nprotocol = \"tcp\"\nport_range = \"{}\"\ncidr = \"0.0.0.0/0\"\n",
        ports.join(",")
    );
    let sg = "security_groups = [\"sg-web\"]";
    let all: Vec<String> = errors(&with_groups(&groups, sg, sg, sg))
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        all[0].contains("hold 1001 rules (one per port range), more than the cloud's 1000 per ENI"),
        "{all:?}"
    );
    let ok = groups.replace(",1001/1001", "");
    assert!(Topology::from_toml(&with_groups(&ok, sg, sg, sg)).is_ok());
}
