//! The flow table against its rules (RFC 5382 timeouts) and a model.

use super::*;

fn flow(port: u16) -> Flow {
    Flow::new(
        PROTO_UDP,
        Ipv4Addr::new(172, 16, 0, 10),
        Ipv4Addr::new(172, 16, 0, 10),
        Ipv4Addr::new(203, 0, 113, 10),
        Ipv4Addr::new(198, 51, 100, 7),
        port,
        53,
        Link::Internet,
        EniId(0),
        Some(EipId(0)),
        Origin::Instance,
    )
}

fn cfg(capacity: usize) -> FlowTableConfig {
    FlowTableConfig {
        capacity,
        ..Default::default()
    }
}

#[test]
fn both_keys_find_the_flow() {
    let mut t = FlowTable::new(cfg(10), 0);
    let f = flow(1000);
    let (ki, ko) = (f.inside_key(), f.outside_key());
    let id = t.insert(f, 0);
    assert_eq!(t.lookup(&ki, 1), Some(id));
    assert_eq!(t.lookup(&ko, 1), Some(id));
    assert_eq!(ko.dst, Ipv4Addr::new(203, 0, 113, 10));
    let mut other = ki;
    other.sport += 1;
    assert_eq!(t.lookup(&other, 1), None);
}

#[test]
fn idle_flows_expire_by_packet_clock() {
    let mut t = FlowTable::new(cfg(10), 0);
    let f = flow(1000);
    let k = f.inside_key();
    t.insert(f, 0);
    let udp = 300 * NS_PER_SEC;
    assert!(
        t.lookup(&k, udp).is_some(),
        "exactly at the timeout it lives"
    );
    assert!(t.lookup(&k, udp + 1).is_none());
    assert_eq!(t.expired, 1);
    assert!(t.is_empty());
}

/// The reviewer's case: the flows near the sweep hand are alive, the
/// rest expired; room must still be found.
#[test]
fn full_table_finds_any_expired_flow() {
    let mut t = FlowTable::new(cfg(1000), 0);
    for p in 0..1000 {
        t.insert(flow(p), 0);
    }
    // Keep 100 flows alive just past the hand.
    for id in 1..=100u32 {
        t.touch(id, 250 * NS_PER_SEC, Direction::Outbound, 1, None);
    }
    assert!(!t.make_room(NS_PER_SEC), "nothing idle yet");
    assert!(t.make_room(301 * NS_PER_SEC), "900 flows are idle");
    assert_eq!(t.len(), 999);
}

#[test]
fn full_table_makes_room_only_from_idle_flows() {
    let mut t = FlowTable::new(cfg(2), 0);
    t.insert(flow(1), 0);
    t.insert(flow(2), 0);
    assert!(!t.make_room(NS_PER_SEC));
    assert!(t.make_room(301 * NS_PER_SEC));
    assert_eq!(t.len(), 1, "one idle flow makes room");
    // Slots are reused, not grown.
    t.insert(flow(3), 302 * NS_PER_SEC);
    assert_eq!(t.flows.len(), 2);
}

/// Insert, look up and remove many flows in a random order; the index
/// (growth, backward-shift deletion) must agree with a plain model.
#[test]
fn index_agrees_with_a_model_under_churn() {
    let mut t = FlowTable::new(cfg(100_000), 7);
    let mut rng = super::super::hash::SplitMix64::new(1);
    let mut live: Vec<(u16, FlowId)> = Vec::new();
    let mut next = 0u16;
    for step in 0..40_000u64 {
        let r = rng.next_u64();
        if !r.is_multiple_of(3) || live.is_empty() {
            let f = flow(next);
            next = next.wrapping_add(1);
            let id = t.insert(f, 0);
            live.push((next.wrapping_sub(1), id));
        } else {
            let k = (r >> 8) as usize % live.len();
            let (port, id) = live.swap_remove(k);
            t.remove(id);
            assert_eq!(t.lookup(&flow(port).inside_key(), 0), None, "step {step}");
        }
        if step % 1000 == 0 {
            for &(port, id) in &live {
                assert_eq!(
                    t.lookup(&flow(port).outside_key(), 0),
                    Some(id),
                    "step {step}"
                );
            }
        }
    }
    assert_eq!(t.len(), live.len());
    assert_eq!(t.index.len, 2 * live.len());
}

#[test]
fn mid_stream_pickup_is_established() {
    let c = FlowTableConfig::default();
    let mut f = flow(1);
    f.proto = PROTO_TCP;
    f.track(true, Some(0x10));
    assert_eq!(f.tcp_state(), TcpState::Established);
    assert_eq!(f.timeout(&c), 7440 * NS_PER_SEC);
}

#[test]
fn tcp_states_pick_timeouts() {
    let mut t = FlowTable::new(cfg(10), 0);
    let mut f = flow(1);
    f.proto = PROTO_TCP;
    let id = t.insert(f, 0);
    let state = |t: &FlowTable| (t.get(id).tcp_state(), t.get(id).expires_at());
    t.touch(id, 0, Direction::Outbound, 60, Some(FLAG_SYN));
    assert_eq!(state(&t), (TcpState::SynSent, 240 * NS_PER_SEC));
    t.touch(id, 0, Direction::Inbound, 60, Some(FLAG_SYN | 0x10));
    assert_eq!(state(&t), (TcpState::Established, 7440 * NS_PER_SEC));
    t.touch(id, 0, Direction::Outbound, 60, Some(FLAG_FIN | 0x10));
    t.touch(id, 0, Direction::Inbound, 60, Some(FLAG_FIN | 0x10));
    assert_eq!(state(&t), (TcpState::Closing, 240 * NS_PER_SEC));
    t.touch(id, 5, Direction::Inbound, 60, Some(FLAG_RST));
    assert_eq!(t.get(id).tcp_state(), TcpState::Closed);
    assert_eq!(t.packets(id), [2, 3]);
    assert_eq!(t.get(id).bytes, [120, 180]);
}

/// RFC 7857 section 3 and RFC 5382 REQ-5: a SYN on the tuple of a reset
/// or closed connection starts a fresh one, which reaches the established
/// timeout (2 h 4 min) again; a SYN-ACK or a stray segment does not.
#[test]
fn a_syn_after_reset_or_close_opens_the_next_connection() {
    for end in ["rst", "fin"] {
        for opener in [Direction::Outbound, Direction::Inbound] {
            let mut t = FlowTable::new(cfg(10), 0);
            let mut f = flow(1);
            f.proto = PROTO_TCP;
            let id = t.insert(f, 0);
            let other = match opener {
                Direction::Outbound => Direction::Inbound,
                Direction::Inbound => Direction::Outbound,
            };
            t.touch(id, 0, Direction::Inbound, 60, Some(FLAG_SYN));
            t.touch(id, 0, Direction::Outbound, 60, Some(FLAG_SYN | 0x10));
            if end == "rst" {
                t.touch(id, 1, Direction::Inbound, 40, Some(FLAG_RST));
                assert_eq!(t.get(id).tcp_state(), TcpState::Closed);
            } else {
                t.touch(id, 1, Direction::Inbound, 40, Some(FLAG_FIN | 0x10));
                t.touch(id, 1, Direction::Outbound, 40, Some(FLAG_FIN | 0x10));
                assert_eq!(t.get(id).tcp_state(), TcpState::Closing);
            }
            // A SYN-ACK alone does not reopen.
            t.touch(id, 2, other, 60, Some(FLAG_SYN | 0x10));
            assert_ne!(t.get(id).tcp_state(), TcpState::Established, "{end}");
            let s = 10 * NS_PER_SEC;
            t.touch(id, s, opener, 60, Some(FLAG_SYN));
            assert_eq!(t.get(id).tcp_state(), TcpState::SynSent, "{end} {opener:?}");
            t.touch(id, s, other, 60, Some(FLAG_SYN | 0x10));
            t.touch(id, s, opener, 60, Some(0x10));
            assert_eq!(
                (t.get(id).tcp_state(), t.get(id).expires_at()),
                (TcpState::Established, s + 7440 * NS_PER_SEC),
                "{end} {opener:?}"
            );
        }
    }
}

#[test]
fn packet_counts_carry_past_32_bits() {
    let mut t = FlowTable::new(cfg(10), 0);
    let id = t.insert(flow(1), 0);
    t.flows[id as usize].packets_lo[0] = u32::MAX;
    t.touch(id, 0, Direction::Outbound, 1, None);
    t.touch(id, 0, Direction::Outbound, 1, None);
    assert_eq!(t.packets(id), [(1 << 32) + 1, 0]);
}
