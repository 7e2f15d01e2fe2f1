//! Offloaded frames (a TAP with the virtio-net header): a GSO packet is
//! decided once for all its segments, exactly as the segments one by one
//! would be, and its partial checksum stays right through NAT. Every
//! checksum is checked with etherparse, an implementation independent of
//! eipsim's.

use eipsim::config::Topology;
use eipsim::engine::{Counters, DropReason, Engine, Link, Offload, Verdict};
use eipsim::probe::{patch_ipv4, tcp, udp, with_partial_checksum};
use eipsim::wire::virtio_net;
use eipsim_fixtures::STANDARD;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

fn engine() -> Engine {
    Engine::new(Topology::from_toml(STANDARD).unwrap())
}

/// A TCP/IPv4 GSO packet of `len` payload bytes with DF set (as Linux
/// sends TCP), and its partial checksum, as a TAP with TSO hands it over.
fn gso_packet(port: Link, src: &str, dst: &str, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let (sport, dport) = if port == Link::Instance {
        (40000, 443)
    } else {
        (443, 40000)
    };
    let mut f = tcp(port, src, dst, sport, dport, "PA", &data);
    patch_ipv4(&mut f, |h| {
        h.dont_fragment = true;
        h.identification = 0x1234;
    });
    with_partial_checksum(f)
}

/// The IPv4 and TCP/UDP checksums of `f` verify; returns (src, dst).
fn assert_valid(f: &[u8]) -> ([u8; 4], [u8; 4]) {
    let p = SlicedPacket::from_ethernet(f).expect("parses");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "TCP checksum");
        }
        Some(TransportSlice::Udp(u)) => {
            let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), want, "UDP checksum");
        }
        other => panic!("TCP or UDP, not {other:?}"),
    }
    (h.source, h.destination)
}

const MSS: u16 = 1448;

/// The counters a report is made of, minus the flow table's (one engine
/// sees one packet, the other its segments: same flows either way).
fn ledger(c: &Counters) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?}",
        c.ports, c.enis, c.eips, c.frames, c.drops
    )
}

/// A UDP/IPv4 GSO packet (a sender's UDP_SEGMENT train) of `len`
/// payload bytes in all, as a TAP with USO hands it over: one UDP header
/// whose length covers everything, and a partial checksum.
fn uso_packet(port: Link, src: &str, dst: &str, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i * 17 % 253) as u8).collect();
    let mut f = udp(port, src, dst, 5000, 5201, &data);
    patch_ipv4(&mut f, |h| {
        h.dont_fragment = true;
        h.identification = 0x4321;
    });
    with_partial_checksum(f)
}

/// Cuts a GSO packet as the next device would, into owned frames.
fn cut(off: Offload, frame: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    off.segment_each(frame, &mut Vec::new(), |s| out.push(s.to_vec()))
        .unwrap();
    out
}

#[test]
fn a_gso_packet_is_decided_as_its_segments_would_be() {
    for (port, src, dst) in [
        (Link::Instance, "172.16.0.10", "198.51.100.7"),
        (Link::Internet, "198.51.100.7", "203.0.113.10"),
        (Link::Internet, "198.51.100.7", "203.0.113.12"),
    ] {
        for udp_train in [false, true] {
            // 10,000 bytes: six full segments and a shorter last one.
            let (gso, off) = if udp_train {
                // 1,472: the most a datagram carries in a 1,500-byte MTU.
                let off = Offload {
                    partial_csum: true,
                    gso_size: 1472,
                    gso_udp: true,
                };
                (uso_packet(port, src, dst, 10_000), off)
            } else {
                let off = Offload {
                    partial_csum: true,
                    gso_size: MSS,
                    gso_udp: false,
                };
                (gso_packet(port, src, dst, 10_000), off)
            };
            // Engine A: the GSO packet once.
            let mut a = engine();
            let mut fa = gso.clone();
            let va = a.process_offloaded(1, port, &mut fa, 0, off);
            assert!(matches!(va, Verdict::Forwarded { .. }), "{va:?}");
            // Engine B: the segments the kernel would have sent instead.
            let segments = cut(off, &gso);
            assert_eq!(segments.len(), 7);
            let mut b = engine();
            let mut outs = Vec::new();
            for mut s in segments {
                assert_eq!(b.process(1, port, &mut s, 0), va, "same decision");
                outs.push(s);
            }
            // The GSO packet, cut by the next device, is byte for byte
            // what the segments became.
            let after = cut(off, &fa);
            assert_eq!(after, outs, "{port} {src} -> {dst}, UDP {udp_train}");
            for s in &after {
                assert_valid(s);
            }
            // Counters count segments and their bytes: reports do not
            // change meaning.
            assert_eq!(ledger(&a.counters()), ledger(&b.counters()));
            assert_eq!(a.counters().frames.received, 7);
            let fa_flows = a
                .flow_table()
                .iter()
                .map(|(id, _)| a.flow_table().packets(id));
            let fb_flows = b
                .flow_table()
                .iter()
                .map(|(id, _)| b.flow_table().packets(id));
            assert!(fa_flows.eq(fb_flows), "flow packet counts");
        }
    }
}

#[test]
fn a_forwarded_partial_checksum_completes_to_the_full_one() {
    // NAT out and in, TCP (GSO) and UDP (checksum offload only).
    let cases = [
        (
            Link::Instance,
            gso_packet(Link::Instance, "172.16.0.10", "198.51.100.7", 3000),
            MSS,
            [203, 0, 113, 10],
        ),
        (
            Link::Instance,
            with_partial_checksum(udp(
                Link::Instance,
                "172.16.0.10",
                "198.51.100.7",
                5000,
                9999,
                b"datagram",
            )),
            0,
            [203, 0, 113, 10],
        ),
    ];
    for (port, frame, gso_size, eip) in cases {
        let mut e = engine();
        let mut f = frame.clone();
        let off = Offload {
            partial_csum: true,
            gso_size,
            gso_udp: false,
        };
        let v = e.process_offloaded(1, port, &mut f, 0, off);
        assert!(matches!(v, Verdict::Forwarded { .. }), "{v:?}");
        // The header eipsim writes it on with: where to complete it.
        let h = off.to_virtio(&f);
        assert!(h.needs_csum());
        assert_eq!(
            (h.csum_start, h.csum_offset),
            (34, if gso_size > 0 { 16 } else { 6 })
        );
        if gso_size > 0 {
            assert_eq!(h.gso_type, virtio_net::GSO_TCPV4);
            assert_eq!((h.gso_size, h.hdr_len), (MSS, 54));
        }
        // Complete as the device would: the one's complement sum from
        // csum_start to the end, complemented.
        let start = usize::from(h.csum_start);
        let field = start + usize::from(h.csum_offset);
        let mut sum: u32 = f[start..]
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[field..field + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let (src, _) = assert_valid(&f);
        assert_eq!(src, eip, "translated to the EIP");
    }
}

#[test]
fn segments_too_big_for_the_egress_mtu_are_refused_or_each_fragmented() {
    let off = Offload {
        partial_csum: true,
        gso_size: MSS,
        gso_udp: false,
    };
    // DF (Linux TCP): every segment would be refused; one ICMP
    // fragmentation-needed with the port's MTU goes back.
    let mut e = engine();
    e.set_mtu(Link::Internet, Some(1400));
    let mut f = gso_packet(Link::Instance, "172.16.0.10", "198.51.100.7", 3000);
    let v = e.process_offloaded(1, Link::Instance, &mut f, 0, off);
    assert!(
        matches!(
            v,
            Verdict::Dropped {
                reason: DropReason::MtuExceeded,
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(e.counters().drop_count(DropReason::MtuExceeded), 3);
    let icmp = e.poll_transmit().expect("an ICMP error");
    assert_eq!(icmp.port, Link::Instance);
    let p = SlicedPacket::from_ethernet(&icmp.frame).unwrap();
    let Some(TransportSlice::Icmpv4(i)) = p.transport else {
        panic!("ICMP")
    };
    assert_eq!(
        i.icmp_type(),
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }
        )
    );
    // Without DF, TCP and UDP: each segment is fragmented as a packet of
    // its own would be (a UDP train must not become one datagram).
    for udp_train in [false, true] {
        let mut e = engine();
        e.set_mtu(Link::Internet, Some(1400));
        let (mut f, off) = if udp_train {
            let off = Offload {
                gso_udp: true,
                ..off
            };
            (
                uso_packet(Link::Instance, "172.16.0.10", "198.51.100.7", 3000),
                off,
            )
        } else {
            (
                gso_packet(Link::Instance, "172.16.0.10", "198.51.100.7", 3000),
                off,
            )
        };
        patch_ipv4(&mut f, |h| h.dont_fragment = false);
        let mut expected = cut(off, &f);
        let v = e.process_offloaded(1, Link::Instance, &mut f, 0, off);
        // 1448 + 1448 + 104 payload bytes: two segments of 1488 (TCP) or
        // 1476 (UDP) IP bytes need two pieces each, the last one.
        assert!(matches!(v, Verdict::Fragmented { pieces: 5, .. }), "{v:?}");
        let mut pieces = Vec::new();
        while let Some(t) = e.poll_transmit() {
            assert!(t.frame.len() <= 14 + 1400);
            pieces.push(t.frame);
        }
        // Reassembled by IP ID, each is the segment the next device would
        // have cut, translated: checksums whole, source the EIP.
        for seg in expected.iter_mut() {
            let id = [seg[18], seg[19]];
            let mine: Vec<&Vec<u8>> = pieces.iter().filter(|p| p[18..20] == id).collect();
            let mut whole = mine[0][..34].to_vec();
            for p in &mine {
                whole.extend_from_slice(&p[34..]);
            }
            patch_ipv4(&mut whole, |h| {
                h.total_len = (whole_len(&mine)) as u16;
                h.more_fragments = false;
            });
            let (src, _) = assert_valid(&whole);
            assert_eq!(src, [203, 0, 113, 10]);
            // The same data (the checksums changed with the address).
            let l4 = if udp_train { 8 } else { 20 };
            assert_eq!(&whole[34 + l4..], &seg[34 + l4..], "the segment's data");
        }
    }
}

/// The IP length of a datagram reassembled from `pieces` (20-byte headers).
fn whole_len(pieces: &[&Vec<u8>]) -> usize {
    20 + pieces.iter().map(|p| p.len() - 34).sum::<usize>()
}

#[test]
fn from_virtio_accepts_the_kernels_layout_and_completes_any_other() {
    let gso = gso_packet(Link::Instance, "172.16.0.10", "198.51.100.7", 3000);
    let h = virtio_net::Repr {
        flags: virtio_net::F_NEEDS_CSUM,
        gso_type: virtio_net::GSO_TCPV4,
        hdr_len: 54,
        gso_size: MSS,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut f = gso.clone();
    assert_eq!(
        Offload::from_virtio(&h, &mut f),
        Ok(Offload {
            partial_csum: true,
            gso_size: MSS,
            gso_udp: false,
        })
    );
    assert_eq!(f, gso, "left as it is");
    // A checksum-only UDP frame: kept partial for the engine.
    let udp_frame = with_partial_checksum(udp(
        Link::Instance,
        "172.16.0.10",
        "198.51.100.7",
        1,
        2,
        b"x",
    ));
    let csum_only = virtio_net::Repr {
        flags: virtio_net::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..Default::default()
    };
    let mut f = udp_frame.clone();
    assert_eq!(
        Offload::from_virtio(&csum_only, &mut f),
        Ok(Offload {
            partial_csum: true,
            gso_size: 0,
            gso_udp: false,
        })
    );
    // A partial checksum where the engine would not look for one (here a
    // protocol it does not know, as for UDP-Lite): completed in software,
    // so the engine sees a whole checksum.
    let mut f = udp_frame.clone();
    f[23] = 136;
    assert_eq!(Offload::from_virtio(&csum_only, &mut f), Ok(Offload::NONE));
    f[23] = 17;
    patch_ipv4(&mut f, |_| {});
    assert_valid(&f);
    // A UDP train (USO) is taken as datagrams of gso_size bytes each.
    let train = uso_packet(Link::Instance, "172.16.0.10", "198.51.100.7", 3000);
    let uso = virtio_net::Repr {
        flags: virtio_net::F_NEEDS_CSUM,
        gso_type: virtio_net::GSO_UDP_L4,
        hdr_len: 42,
        gso_size: 1472,
        csum_start: 34,
        csum_offset: 6,
    };
    let mut f = train.clone();
    let off = Offload::from_virtio(&uso, &mut f).unwrap();
    assert_eq!(
        off,
        Offload {
            partial_csum: true,
            gso_size: 1472,
            gso_udp: true
        }
    );
    assert_eq!(off.to_virtio(&f), uso, "written on with the same header");
    // 3000 = 1472 + 1472 + 56: three datagrams and their bytes.
    assert_eq!(off.units(&f), (3, 3 * 42 + 3000), "frames 1514 + 1514 + 98");
    // A TCP packet called a UDP train is refused.
    let mut f = gso.clone();
    assert!(Offload::from_virtio(&uso, &mut f).is_err());
    // GSO without a segment size is refused, not guessed.
    let mut f = gso.clone();
    let bad = virtio_net::Repr { gso_size: 0, ..h };
    assert!(Offload::from_virtio(&bad, &mut f).is_err());
    // Cut short: refused.
    let mut f = gso[..60].to_vec();
    assert!(Offload::from_virtio(&h, &mut f).is_err());
}

/// RFC 768: a UDP checksum that computes to 0 is sent as 0xffff (0 means
/// "no checksum"); completing a partial one must do the same.
#[test]
fn a_completed_udp_checksum_is_never_zero() {
    // Find a datagram whose checksum is 0xffff (computed 0), by etherparse.
    let found = (0..=u16::MAX).find_map(|k| {
        let f = udp(
            Link::Instance,
            "172.16.0.10",
            "198.51.100.7",
            1,
            2,
            &k.to_be_bytes(),
        );
        (u16::from_be_bytes([f[40], f[41]]) == 0xffff).then_some(f)
    });
    let f = found.expect("some payload gives 0xffff");
    let mut g = with_partial_checksum(f.clone());
    Offload::complete(&mut g);
    assert_eq!(&g[40..42], &[0xff, 0xff]);
    assert_eq!(g, f);
}
