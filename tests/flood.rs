//! A flood of new flows (issue 9 item 9): the flow table never grows past
//! its capacity, its memory stops growing once full, and the flows that
//! were established before the flood still work afterwards. The full-size
//! run (10 million flows at the default capacity) is
//! `cargo run --release --example flood`; BENCHMARKS.md has its figures.

use eipsim::config::Topology;
use eipsim::engine::{DropReason, Engine, Link, Verdict};
use eipsim::probe::{tcp, udp};
use eipsim_fixtures::STANDARD;

fn flood(capacity: usize, flows: u32) {
    let topo = Topology::from_toml(&format!(
        "{STANDARD}\n[flow_table]\ncapacity = {capacity}\n"
    ))
    .unwrap();
    let mut e = Engine::new(topo);
    // An established connection and a UDP flow, before the flood.
    let (i, n) = (Link::Instance, Link::Internet);
    for (port, f) in [
        (
            i,
            tcp(i, "172.16.0.10", "198.51.100.7", 40000, 443, "S", b""),
        ),
        (
            n,
            tcp(n, "198.51.100.7", "203.0.113.10", 443, 40000, "SA", b""),
        ),
        (
            i,
            tcp(i, "172.16.0.10", "198.51.100.7", 40000, 443, "A", b""),
        ),
        (i, udp(i, "172.16.0.10", "198.51.100.8", 5000, 9999, b"q")),
    ] {
        let mut f = f;
        assert!(matches!(
            e.process(1, port, &mut f, 0),
            Verdict::Forwarded { .. }
        ));
    }
    // The flood: new outbound flows (each needs state: a source rewrite),
    // 10 µs apart on the packet clock.
    let frame = udp(i, "172.16.0.10", "198.51.100.9", 1, 9, b"x");
    let mut peak_mem = 0;
    for k in 0..flows {
        let mut f = frame.clone();
        let dst = 0xc633_6400u32 | (k >> 16); // 198.51.100.x
        f[30..34].copy_from_slice(&dst.to_be_bytes());
        f[34..36].copy_from_slice(&((k & 0xffff) as u16).to_be_bytes());
        // Keep the IPv4 checksum right for the new destination.
        f[24..26].copy_from_slice(&[0, 0]);
        let cs = eipsim::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&cs.to_be_bytes());
        e.process(2 + u64::from(k) * 10_000, i, &mut f, 0);
        assert!(e.flow_table().len() <= capacity);
        if k % 1024 == 0 {
            peak_mem = peak_mem.max(e.flow_table().memory_bytes());
        }
    }
    let c = e.counters();
    assert_eq!(
        e.flow_table().len(),
        capacity,
        "the table filled: {:?} {:?}",
        c.frames,
        c.drops
    );
    // Past capacity a 1:1 NAT flow is forwarded without state (no reply
    // path is needed), or dropped as flow_table_full where state is
    // needed; a source port of an unsupported ALG protocol (53, 69, 554,
    // 1719, 1720, 5060, ...) is dropped as such: nothing vanishes.
    assert_eq!(
        c.frames.received,
        c.frames.forwarded
            + c.drop_count(DropReason::FlowTableFull)
            + c.drop_count(DropReason::AlgUnsupported),
        "{:?} {:?}",
        c.frames,
        c.drops
    );
    // Bounded: capacity times a flow's bytes, plus the index's slack.
    let bound = capacity * eipsim::engine::flow::FlowTable::bytes_per_flow() * 2 + (1 << 20);
    assert!(peak_mem <= bound, "{peak_mem} bytes for {capacity} flows");
    // The connection and the UDP flow from before still work, both ways.
    let now = 2 + u64::from(flows) * 10_000;
    let mut back = tcp(n, "198.51.100.7", "203.0.113.10", 443, 40000, "A", b"data");
    assert!(matches!(
        e.process(now, n, &mut back, 0),
        Verdict::Forwarded {
            port: Link::Instance,
            ..
        }
    ));
    let mut reply = udp(n, "198.51.100.8", "203.0.113.10", 9999, 5000, b"a");
    assert!(matches!(
        e.process(now, n, &mut reply, 0),
        Verdict::Forwarded {
            port: Link::Instance,
            ..
        }
    ));
}

#[test]
fn a_flood_of_new_flows_stays_bounded_and_spares_established_ones() {
    flood(10_000, 200_000);
}
