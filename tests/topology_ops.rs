//! Topology files written back (`Topology::to_toml`) and the operations
//! that change a topology while traffic flows (issue 11).

use eipsim::config::Topology;

/// Every golden scenario's topology, written and read again, is the same
/// topology: its file written again is byte for byte the first writing.
#[test]
fn a_written_topology_reads_back_the_same() {
    for sc in eipsim_fixtures::all() {
        let t = Topology::from_toml(&sc.topology).unwrap();
        let text = t.to_toml();
        let again =
            Topology::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e:?}\n{text}", sc.name));
        assert_eq!(again.to_toml(), text, "{}", sc.name);
        // And the parts that decide forwarding, compared directly.
        assert_eq!(again.summary(), t.summary(), "{}", sc.name);
        assert_eq!(again.enis.len(), t.enis.len());
        for (a, b) in again.eips.iter().zip(&t.eips) {
            assert_eq!(
                (
                    a.address,
                    a.eni,
                    a.mode,
                    a.private_ip,
                    a.bandwidth_mbps,
                    a.inbound_mbps,
                    a.plan
                ),
                (
                    b.address,
                    b.eni,
                    b.mode,
                    b.private_ip,
                    b.bandwidth_mbps,
                    b.inbound_mbps,
                    b.plan
                ),
                "{}",
                sc.name
            );
        }
        for (a, b) in again.security_groups.iter().zip(&t.security_groups) {
            let strip = |g: &eipsim::config::SecurityGroup| {
                g.rules
                    .iter()
                    .map(|r| {
                        (
                            r.direction,
                            r.policy,
                            r.priority,
                            r.protocol,
                            r.ports.clone(),
                            r.peer,
                            r.description.clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                (a.kind, a.internal_isolation, &a.members),
                (b.kind, b.internal_isolation, &b.members)
            );
            assert_eq!(strip(a), strip(b), "{}", sc.name);
        }
    }
}

/// The lines of a written topology, sorted: equal for two topologies that
/// differ only in the order of their routes and rules.
fn lines(t: &Topology) -> Vec<String> {
    let mut v: Vec<String> = t.to_toml().lines().map(String::from).collect();
    v.sort();
    v
}

/// A changed file's difference, applied operation by operation, gives the
/// changed file's topology (what SIGHUP does to a running instance).
#[test]
fn the_difference_of_two_files_applied_gives_the_second() {
    let sc = eipsim_fixtures::all()
        .into_iter()
        .find(|s| s.name == "security_group_changes")
        .unwrap();
    let base = format!(
        "{}\n[[eni]]\nname = \"eth3\"\nprivate_ips = [\"172.16.3.10\"]\nsecurity_groups = [\"sg-a\"]\nattached = false\n",
        sc.topology
    );
    let a = Topology::from_toml(&base).unwrap();
    assert_eq!(a.diff(&a), (vec![], vec![]));
    // eth1 replaced by eth3, an EIP moved, a route, a rule, a group.
    let changed = base
        .replace(
            "name = \"eth3\"\nprivate_ips = [\"172.16.3.10\"]\nsecurity_groups = [\"sg-a\"]\nattached = false",
            "name = \"eth3\"\nprivate_ips = [\"172.16.3.10\", \"172.16.3.11\"]\nsecurity_groups = [\"sg-b\"]",
        )
        .replace(
            "name = \"eth1\"\nsecurity_groups = [\"sg-a\"]\nprivate_ips = [\"172.16.1.10\", \"172.16.1.11\", \"172.16.1.12\"]",
            "name = \"eth1\"\nsecurity_groups = [\"sg-a\"]\nprivate_ips = [\"172.16.1.10\", \"172.16.1.11\", \"172.16.1.12\"]\nattached = false",
        )
        .replace(
            "address = \"203.0.113.13\"\neni = \"eth1\"\nmode = \"nat\"\nprivate_ip = \"172.16.1.11\"",
            "address = \"203.0.113.13\"\neni = \"eth3\"\nmode = \"nat\"\nprivate_ip = \"172.16.3.11\"",
        )
        .replace(
            "address = \"203.0.113.11\"\neni = \"eth1\"\nmode = \"nat\"\n",
            "address = \"203.0.113.30\"\neni = \"eth3\"\nmode = \"nat\"\n",
        )
        .replace("port_range = \"80/80\"", "port_range = \"80/80,443/443\"")
        + "\n[[route]]\ndst = \"192.0.2.0/24\"\nvia = \"eth3\"\n";
    let b = Topology::from_toml(&changed).unwrap_or_else(|e| panic!("{e:?}\n{changed}"));
    let (ops, cannot) = a.diff(&b);
    assert_eq!(cannot, Vec::<String>::new());
    let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
    assert_eq!(
        names,
        [
            "unassociate-eip",
            "unassociate-eip",
            "detach-eni",
            "attach-eni",
            "assign-private-ip",
            "associate-eip",
            "associate-eip",
            "route-add",
            "join",
            "authorize",
            "revoke",
            "leave"
        ]
    );
    let mut t = a.clone();
    for op in &ops {
        t = t.apply(op).unwrap_or_else(|e| panic!("{op:?}: {e:?}"));
    }
    // Unassociated EIPs are not written; what is written is the new file.
    assert_eq!(lines(&t), lines(&b));
    // What no operation does is named, and nothing is applied.
    let other = Topology::from_toml(&base.replace("hash_seed = 0", "hash_seed = 7")).unwrap();
    let (ops, cannot) = a.diff(&other);
    assert!(ops.is_empty());
    assert_eq!(cannot, ["hash_seed changed (0 -> 7)"]);
}
