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
