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
