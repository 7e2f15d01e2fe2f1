//! Engine behaviour over many flows and frames: weighted and random load
//! balancing, determinism, flow byte counts, and arbitrary input.

use eipsim::config::Topology;
use eipsim::engine::hash::SplitMix64;
use eipsim::engine::{Engine, Link, Verdict};
use eipsim::probe::{tcp, udp};
use eipsim_fixtures::STANDARD;

fn engine(extra: &str) -> Engine {
    Engine::new(Topology::from_toml(&format!("{STANDARD}\n{extra}")).unwrap())
}

const LB: &str =
    "[[route]]\ndst = \"192.0.2.0/24\"\nvia = [\"eth0\", \"eth1\"]\nweights = [3, 1]\n";

fn eni_of(v: Verdict) -> u16 {
    match v {
        Verdict::Forwarded { eni: Some(e), .. } => e.0,
        other => panic!("not forwarded: {other:?}"),
    }
}

#[test]
fn weighted_hash_spreads_flows_by_weight() {
    let mut e = engine(LB);
    let mut per_eni = [0u32; 2];
    for p in 0..4000u16 {
        let mut f = tcp(
            Link::Instance,
            "172.16.0.10",
            "192.0.2.9",
            10000 + p,
            443,
            "S",
            b"",
        );
        per_eni[usize::from(eni_of(e.process(1, Link::Instance, &mut f, 0)))] += 1;
    }
    // 3:1 of 4000 is 3000:1000; allow 5%.
    assert!((2850..3150).contains(&per_eni[0]), "{per_eni:?}");
    assert_eq!(per_eni[0] + per_eni[1], 4000);
}

#[test]
fn random_balance_is_remembered_and_seeded() {
    let random = LB.replace("weights = [3, 1]", "balance = \"random\"");
    let picks = |seed: u64| {
        let text = format!(
            "{}\n{random}",
            STANDARD.replace("hash_seed = 0", &format!("hash_seed = {seed}"))
        );
        let mut e = Engine::new(Topology::from_toml(&text).unwrap());
        (0..64u16)
            .map(|p| {
                let mut f = udp(
                    Link::Instance,
                    "172.16.0.10",
                    "192.0.2.9",
                    20000 + p,
                    4500,
                    b"q",
                );
                let first = eni_of(e.process(1, Link::Instance, &mut f, 0));
                // Later packets of the flow take the same ENI.
                for _ in 0..3 {
                    let mut f = udp(
                        Link::Instance,
                        "172.16.0.10",
                        "192.0.2.9",
                        20000 + p,
                        4500,
                        b"q",
                    );
                    assert_eq!(eni_of(e.process(2, Link::Instance, &mut f, 0)), first);
                }
                first
            })
            .collect::<Vec<u16>>()
    };
    let a = picks(1);
    assert_eq!(a, picks(1), "same seed, same draws");
    assert_ne!(a, picks(2), "another seed, other draws");
    assert!(a.contains(&0) && a.contains(&1), "{a:?}");
}

#[test]
fn same_input_same_output_byte_for_byte() {
    let run = || {
        let mut out = Vec::new();
        for sc in eipsim_fixtures::all() {
            let mut e = Engine::new(Topology::from_toml(&sc.topology).unwrap());
            for (i, s) in sc.steps.iter().enumerate() {
                let mut f = s.frame.clone();
                let v = e.process(s.ts_ns, s.port, &mut f, i as u64);
                out.push((format!("{v:?}"), f));
            }
        }
        out
    };
    assert_eq!(run(), run());
}

#[test]
fn flows_measure_bytes_both_ways() {
    let mut e = engine("");
    let mut out = tcp(
        Link::Instance,
        "172.16.0.10",
        "198.51.100.7",
        40000,
        80,
        "S",
        b"",
    );
    e.process(1, Link::Instance, &mut out, 0);
    let mut back = tcp(
        Link::Internet,
        "198.51.100.7",
        "203.0.113.10",
        80,
        40000,
        "SA",
        b"0123456789",
    );
    e.process(2, Link::Internet, &mut back, 0);
    let t = e.flow_table();
    let (id, f) = t.iter().next().expect("one flow");
    assert_eq!(t.packets(id), [1, 1]);
    assert_eq!(f.bytes, [40, 50], "IP total lengths");
}

/// Random bytes, and valid frames with random corruption, never panic,
/// and every frame ends in the ledger.
#[test]
fn arbitrary_frames_never_panic() {
    let mut e = engine(LB);
    let mut rng = SplitMix64::new(42);
    let seeds: Vec<Vec<u8>> = eipsim_fixtures::all()
        .into_iter()
        .flat_map(|s| s.steps)
        .map(|s| s.frame)
        .collect();
    let ports = Link::ALL;
    for i in 0..60_000u64 {
        let r = rng.next_u64();
        let mut f = if r.is_multiple_of(4) {
            let len = (rng.next_u64() % 120) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>()
        } else {
            let mut f = seeds[(r >> 8) as usize % seeds.len()].clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() as usize) % f.len().max(1);
                if let Some(b) = f.get_mut(at) {
                    *b = rng.next_u64() as u8;
                }
            }
            if rng.next_u64().is_multiple_of(8) {
                let cut = (rng.next_u64() as usize) % (f.len() + 1);
                f.truncate(cut);
            }
            f
        };
        let _ = e.process(i * 1000, ports[(r >> 40) as usize % 3], &mut f, i);
        while e.poll_released().is_some() {}
    }
    e.flush();
    while e.poll_released().is_some() {}
    let l = e.counters().frames;
    assert_eq!(l.received, 60_000);
    assert_eq!(l.received, l.forwarded + l.consumed + l.dropped, "{l:?}");
}

#[test]
fn a_peer_not_heard_from_is_asked_for_by_arp_once_a_second() {
    use etherparse::{ArpOperation, ArpPacketSlice};
    let mut e = engine("");
    e.set_resolve(true);
    let syn = |e: &mut Engine, sport: u16, now: u64| {
        let mut f = tcp(
            Link::Instance,
            "172.16.0.10",
            "198.51.100.7",
            sport,
            443,
            "S",
            b"",
        );
        let v = e.process(now, Link::Instance, &mut f, 0);
        assert!(
            matches!(
                v,
                Verdict::Forwarded {
                    port: Link::Internet,
                    ..
                }
            ),
            "{v:?}"
        );
        std::iter::from_fn(|| e.poll_transmit()).collect::<Vec<_>>()
    };
    let asked = syn(&mut e, 40000, 1);
    assert_eq!(asked.len(), 1, "one ARP request");
    let f = &asked[0].frame;
    assert_eq!(asked[0].port, Link::Internet);
    assert_eq!(&f[..6], &[0xff; 6], "broadcast");
    assert_eq!(&f[12..14], &[0x08, 0x06]);
    let arp = ArpPacketSlice::from_slice(&f[14..]).expect("an ARP packet");
    assert_eq!(arp.operation(), ArpOperation::REQUEST);
    assert_eq!(
        arp.sender_protocol_addr(),
        &[203, 0, 113, 10],
        "from the EIP"
    );
    assert_eq!(
        arp.target_protocol_addr(),
        &[198, 51, 100, 7],
        "for the destination"
    );
    assert_eq!(arp.sender_hw_addr(), &eipsim::engine::PORT_MACS[1].0);
    // Within the second: no second request; after it, one more.
    assert!(syn(&mut e, 40001, 500_000_000).is_empty());
    assert_eq!(syn(&mut e, 40002, 1_100_000_001).len(), 1);
    // Once the peer has sent a frame, never.
    let mut reply = tcp(
        Link::Internet,
        "198.51.100.7",
        "203.0.113.10",
        443,
        40000,
        "SA",
        b"",
    );
    e.process(1_200_000_000, Link::Internet, &mut reply, 0);
    assert!(syn(&mut e, 40003, 3_000_000_000).is_empty());
}

/// RFC 1122 3.2.2 and RFC 1812 4.3.2.7: an ICMP error is never sent about
/// an ICMP error or a fragment other than the first; a plain datagram with
/// DF that does not fit gets one (the control).
#[test]
fn no_icmp_error_about_an_icmp_error_or_a_later_fragment() {
    use eipsim::probe::{fragment, icmp_unreachable, patch_ipv4};
    let mut e = engine("");
    e.set_mtu(Link::Internet, Some(576));
    e.set_mtu(Link::Instance, Some(576));
    // The control: a 700-byte UDP datagram with DF.
    let mut f = udp(
        Link::Instance,
        "172.16.0.10",
        "198.51.100.7",
        1,
        2,
        &[0; 672],
    );
    patch_ipv4(&mut f, |h| h.dont_fragment = true);
    let v = e.process(1, Link::Instance, &mut f, 0);
    assert_eq!(v.reason(), Some(eipsim::engine::DropReason::MtuExceeded));
    assert!(
        e.poll_transmit().is_some(),
        "fragmentation-needed for a datagram"
    );
    // An ICMP error of the same size with DF (about a datagram of a known
    // flow): nothing goes back.
    let mut first = udp(Link::Internet, "198.51.100.7", "203.0.113.10", 5, 6, b"x");
    assert!(matches!(
        e.process(1, Link::Internet, &mut first, 9),
        Verdict::Forwarded { .. }
    ));
    let inside = udp(
        Link::Internet,
        "198.51.100.7",
        "172.16.0.10",
        5,
        6,
        &[1; 672],
    );
    let mut err = icmp_unreachable(Link::Instance, "172.16.0.10", "198.51.100.7", &inside, 672);
    patch_ipv4(&mut err, |h| h.dont_fragment = true);
    let v = e.process(2, Link::Instance, &mut err, 1);
    assert_eq!(v.reason(), Some(eipsim::engine::DropReason::MtuExceeded));
    assert!(
        e.poll_transmit().is_none(),
        "no ICMP error about an ICMP error"
    );
    // A later fragment with DF that does not fit: dropped, not cut, silent.
    let data = vec![3u8; 1592];
    let mut pieces = fragment(
        &udp(Link::Internet, "198.51.100.7", "203.0.113.10", 9, 7, &data),
        0x0909,
        800,
    );
    patch_ipv4(&mut pieces[1], |h| h.dont_fragment = true);
    let v = e.process(3, Link::Internet, &mut pieces[0], 2);
    assert!(matches!(v, Verdict::Fragmented { .. }), "{v:?}");
    while e.poll_transmit().is_some() {}
    let v = e.process(4, Link::Internet, &mut pieces[1], 3);
    assert_eq!(v.reason(), Some(eipsim::engine::DropReason::MtuExceeded));
    assert!(e.poll_transmit().is_none(), "not cut, and no ICMP error");
    assert_eq!(e.counters().frames.generated, 1, "only the control's");
}

/// RFC 1812 5.3.1 and 4.3.2.8: a packet that arrives with TTL 1 gets an
/// ICMP time exceeded back, from eipsim's own address on that port (the
/// ENI's gateway toward the instance, the EIP toward the Internet), at
/// most `[icmp_errors]` burst at once per port.
#[test]
fn ttl_1_gets_time_exceeded_from_our_own_address_rate_limited() {
    use eipsim::probe::udp_ttl;
    use etherparse::{Icmpv4Type, NetSlice, SlicedPacket, TransportSlice};
    let mut e = engine("[icmp_errors]\nper_second = 1\nburst = 2\n");
    let check = |f: &[u8], from: [u8; 4], to: [u8; 4], quoted: &[u8]| {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!((h.source, h.destination), (from, to));
        let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
            panic!("ICMP")
        };
        assert_eq!(
            i.icmp_type(),
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit)
        );
        assert_eq!(
            i.checksum(),
            i.header().icmp_type.calc_checksum(i.payload())
        );
        // The quote: the original IP header (TTL 1, as received) and 8 bytes.
        assert_eq!(i.payload(), &quoted[14..14 + 28]);
    };
    let mut f = udp_ttl(
        Link::Instance,
        "172.16.0.10",
        "198.51.100.7",
        40000,
        33434,
        b"x",
        1,
    );
    let orig = f.clone();
    e.process(1, Link::Instance, &mut f, 0);
    let t = e.poll_transmit().expect("time exceeded");
    assert_eq!(t.port, Link::Instance);
    // The default gateway: .253 of the primary private IP's /24.
    check(&t.frame, [172, 16, 0, 253], [172, 16, 0, 10], &orig);
    let mut f = udp_ttl(
        Link::Internet,
        "198.51.100.7",
        "203.0.113.10",
        9,
        40000,
        b"x",
        1,
    );
    let orig = f.clone();
    e.process(2, Link::Internet, &mut f, 1);
    let t = e.poll_transmit().expect("time exceeded");
    check(&t.frame, [203, 0, 113, 10], [198, 51, 100, 7], &orig);
    // Burst 2 per port: the instance port has one left, then none until a
    // second has passed (per_second = 1).
    let sent = |e: &mut Engine, now: u64| {
        let mut f = udp_ttl(Link::Instance, "172.16.0.10", "198.51.100.7", 1, 2, b"x", 1);
        e.process(now, Link::Instance, &mut f, 0);
        e.poll_transmit().is_some()
    };
    assert!(sent(&mut e, 3));
    assert!(!sent(&mut e, 4));
    assert!(!sent(&mut e, 5));
    assert!(sent(&mut e, 1_000_000_005));
    let c = e.counters().icmp_errors;
    assert_eq!((c.time_exceeded, c.rate_limited), (4, 2));
    // A configured gateway is used instead.
    let topo = eipsim::config::Topology::from_toml(&eipsim_fixtures::STANDARD.replace(
        "private_ips = [\"172.16.0.10\"]",
        "private_ips = [\"172.16.0.10\"]\ngateway = \"172.16.0.1\"",
    ))
    .unwrap();
    let mut g = Engine::new(topo);
    let mut f = udp_ttl(Link::Instance, "172.16.0.10", "198.51.100.7", 1, 2, b"x", 1);
    let orig = f.clone();
    g.process(1, Link::Instance, &mut f, 0);
    check(
        &g.poll_transmit().unwrap().frame,
        [172, 16, 0, 1],
        [172, 16, 0, 10],
        &orig,
    );
}

/// RFC 791: a datagram is identified by (source, destination, protocol,
/// identification) only while it is being reassembled. Once every byte of
/// one has passed, the next datagram that reuses the identification must
/// not follow the old one's first fragment: its own later fragment waits
/// for its own first.
#[test]
fn a_reused_ip_id_does_not_inherit_a_finished_datagrams_decision() {
    use eipsim::probe::fragment;
    let mut e = engine("");
    let data = vec![5u8; 3000];
    let a = fragment(
        &udp(Link::Internet, "198.51.100.7", "203.0.113.10", 1, 2, &data),
        0x7777,
        1480,
    );
    for (i, mut f) in a.into_iter().enumerate() {
        let v = e.process(1 + i as u64, Link::Internet, &mut f, i as u64);
        assert!(matches!(v, Verdict::Forwarded { .. }), "A piece {i}: {v:?}");
    }
    // B: same addresses, protocol and ID, other ports; its last piece first.
    let b = fragment(
        &udp(Link::Internet, "198.51.100.7", "203.0.113.10", 3, 4, &data),
        0x7777,
        1480,
    );
    let mut last = b[2].clone();
    let v = e.process(10, Link::Internet, &mut last, 10);
    assert_eq!(v, Verdict::Held, "B's later piece waits for B's first");
    // A datagram still missing a piece keeps its decision for the rest.
    let c = fragment(
        &udp(Link::Internet, "198.51.100.7", "203.0.113.10", 5, 6, &data),
        0x8888,
        1480,
    );
    let mut first = c[0].clone();
    assert!(matches!(
        e.process(20, Link::Internet, &mut first, 20),
        Verdict::Forwarded { .. }
    ));
    let mut third = c[2].clone();
    assert!(matches!(
        e.process(21, Link::Internet, &mut third, 21),
        Verdict::Forwarded { .. }
    ));
    let mut second = c[1].clone();
    assert!(matches!(
        e.process(22, Link::Internet, &mut second, 22),
        Verdict::Forwarded { .. }
    ));
}

/// RFC 4787 REQ-9 / RFC 5382 REQ-8: the instance reaching its own EIP gets
/// the packet back on `instance`, translated both ways, checksums valid
/// (checked with etherparse), one hop, and the reply is consistent.
#[test]
fn hairpinning_through_an_own_eip() {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let mut e = engine("");
    let view = |f: &[u8]| {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        assert_eq!(
            t.checksum(),
            t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap()
        );
        (h.source, h.destination, h.time_to_live)
    };
    // From eth0 (routed via eth0) to eth1's second EIP, 203.0.113.13,
    // which maps to 172.16.1.11.
    let mut syn = tcp(
        Link::Instance,
        "172.16.0.10",
        "203.0.113.13",
        5000,
        443,
        "S",
        b"",
    );
    let v = e.process(1, Link::Instance, &mut syn, 0);
    assert!(
        matches!(
            v,
            Verdict::Forwarded {
                port: Link::Instance,
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(view(&syn), ([203, 0, 113, 10], [172, 16, 1, 11], 63));
    // The reply takes the same two flows back.
    let mut ack = tcp(
        Link::Instance,
        "172.16.1.11",
        "203.0.113.10",
        443,
        5000,
        "SA",
        b"",
    );
    let v = e.process(2, Link::Instance, &mut ack, 1);
    assert!(
        matches!(
            v,
            Verdict::Forwarded {
                port: Link::Instance,
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(view(&ack), ([203, 0, 113, 13], [172, 16, 0, 10], 63));
    assert_eq!(e.counters().hairpin, 2);
}

/// A hairpin is counted as it goes: out of the sender's ENI and EIP, into
/// the target's; dropped by the target EIP's inbound limit, it counts as
/// that EIP's inbound excess (rx), not as something it sent.
#[test]
fn a_hairpin_is_counted_out_of_the_sender_and_into_the_target() {
    let t = STANDARD.replacen(
        "address = \"203.0.113.11\"\neni = \"eth1\"\nmode = \"nat\"",
        "address = \"203.0.113.11\"\neni = \"eth1\"\nmode = \"nat\"\ninbound_mbps = 1",
        1,
    );
    let mut e = Engine::new(Topology::from_toml(&t).unwrap());
    // 1 Mbit/s inbound: a 64 KiB burst, so of 100 datagrams of 1028 IP
    // bytes (1000 of payload) only the first 63 fit (63 * 1028 = 64,764).
    let (mut fwd, mut dropped) = (0, 0);
    for i in 0..100u16 {
        let mut f = udp(
            Link::Instance,
            "172.16.0.10",
            "203.0.113.11",
            7000 + i,
            9,
            &[0; 1000],
        );
        match e.process(1, Link::Instance, &mut f, 0) {
            Verdict::Forwarded {
                port: Link::Instance,
                ..
            } => fwd += 1,
            Verdict::Dropped { reason, .. } => {
                assert_eq!(reason.name(), "bandwidth_exceeded");
                dropped += 1
            }
            v => panic!("{v:?}"),
        }
    }
    assert_eq!((fwd, dropped), (63, 37));
    let c = e.counters();
    // EIPs in file order: .10 (eth0), .11 (eth1).
    assert_eq!(
        c.bandwidth_exceeded[1],
        [0, 37],
        "the target's inbound excess"
    );
    assert_eq!(
        (c.eips[0].tx_packets, c.eips[0].rx_packets),
        (100, 0),
        "the sender's EIP sent all"
    );
    assert_eq!(
        (c.eips[1].tx_packets, c.eips[1].rx_packets),
        (0, 63),
        "the target's took 63 in"
    );
    assert_eq!((c.enis[1].rx_packets, c.enis[0].tx_packets), (63, 100));
    assert_eq!(c.frames.forwarded + c.frames.dropped, 100);
}

/// With security groups the flow is the connection's state: a full table
/// drops a new flow (`flow_table_full`) rather than forwarding it
/// statelessly, whose reply a basic group's default would then drop.
#[test]
fn a_full_table_forwards_nothing_statelessly_under_security_groups() {
    let t = format!(
        "{}\n[flow_table]\ncapacity = 1\n[[security_group]]\nname = \"sg\"\n",
        STANDARD.replace(
            "\nprivate_ips = [",
            "\nsecurity_groups = [\"sg\"]\nprivate_ips = ["
        )
    );
    let mut e = Engine::new(Topology::from_toml(&t).unwrap());
    let mut a = udp(Link::Instance, "172.16.0.10", "198.51.100.7", 1, 9, b"x");
    assert!(matches!(
        e.process(1, Link::Instance, &mut a, 0),
        Verdict::Forwarded { .. }
    ));
    let mut b = udp(Link::Instance, "172.16.0.10", "198.51.100.8", 2, 9, b"x");
    let v = e.process(2, Link::Instance, &mut b, 0);
    assert_eq!(
        v.reason().map(|r| r.name()),
        Some("flow_table_full"),
        "{v:?}"
    );
    // Without groups the same packet goes without a flow (README).
    let mut e = engine("[flow_table]\ncapacity = 1\n");
    let mut a = udp(Link::Instance, "172.16.0.10", "198.51.100.7", 1, 9, b"x");
    e.process(1, Link::Instance, &mut a, 0);
    let mut b = udp(Link::Instance, "172.16.0.10", "198.51.100.8", 2, 9, b"x");
    assert!(matches!(
        e.process(2, Link::Instance, &mut b, 0),
        Verdict::Forwarded { .. }
    ));
}
