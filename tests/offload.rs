//! Offloaded frames (a TAP with the virtio-net header): a GSO packet is
//! decided once for all its segments, exactly as the segments one by one
//! would be, and its partial checksum stays right through NAT. Every
//! checksum is checked with etherparse, an implementation independent of
//! eipsim's.

use eipsim::config::Topology;
use eipsim::engine::gso::segment_tcp4;
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

#[test]
fn a_gso_packet_is_decided_as_its_segments_would_be() {
    for (port, src, dst) in [
        (Link::Instance, "172.16.0.10", "198.51.100.7"),
        (Link::Internet, "198.51.100.7", "203.0.113.10"),
        (Link::Internet, "198.51.100.7", "203.0.113.12"),
    ] {
        // 10,000 bytes: six full segments and one of 1,312.
        let gso = gso_packet(port, src, dst, 10_000);
        let off = Offload {
            partial_csum: true,
            gso_size: MSS,
        };
        // Engine A: the GSO packet once.
        let mut a = engine();
        let mut fa = gso.clone();
        let va = a.process_offloaded(1, port, &mut fa, 0, off);
        assert!(matches!(va, Verdict::Forwarded { .. }), "{va:?}");
        // Engine B: the segments the kernel would have sent instead.
        let mut segments = Vec::new();
        segment_tcp4(&gso, usize::from(MSS), &mut segments).unwrap();
        assert_eq!(segments.len(), 7);
        let mut b = engine();
        let mut outs = Vec::new();
        for mut s in segments {
            assert_eq!(b.process(1, port, &mut s, 0), va, "same decision");
            outs.push(s);
        }
        // The GSO packet, cut by the next device, is byte for byte what
        // the segments became.
        let mut cut = Vec::new();
        segment_tcp4(&fa, usize::from(MSS), &mut cut).unwrap();
        assert_eq!(cut, outs, "{port} {src} -> {dst}");
        for s in &cut {
            assert_valid(s);
        }
        // Counters count segments and their bytes: reports do not change
        // meaning.
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
fn segments_too_big_for_the_egress_mtu_are_refused_or_fragmented_whole() {
    let off = Offload {
        partial_csum: true,
        gso_size: MSS,
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
    // Without DF: fragments of the whole packet, with a full checksum.
    let mut e = engine();
    e.set_mtu(Link::Internet, Some(1400));
    let mut f = gso_packet(Link::Instance, "172.16.0.10", "198.51.100.7", 3000);
    patch_ipv4(&mut f, |h| h.dont_fragment = false);
    let v = e.process_offloaded(1, Link::Instance, &mut f, 0, off);
    assert!(matches!(v, Verdict::Fragmented { pieces: 3, .. }), "{v:?}");
    let mut payload = Vec::new();
    while let Some(t) = e.poll_transmit() {
        assert!(t.frame.len() <= 14 + 1400);
        payload.extend_from_slice(&t.frame[34..]);
    }
    // Reassembled: the TCP segment's checksum, now whole, verifies.
    let mut whole = f[..34].to_vec();
    whole.extend_from_slice(&payload);
    patch_ipv4(&mut whole, |h| {
        h.total_len = (20 + payload.len()) as u16;
        h.more_fragments = false;
    });
    let (src, _) = assert_valid(&whole);
    assert_eq!(src, [203, 0, 113, 10]);
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
            gso_size: MSS
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
            gso_size: 0
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
    // GSO without a segment size is refused, not guessed.
    let mut f = gso.clone();
    let bad = virtio_net::Repr { gso_size: 0, ..h };
    assert!(Offload::from_virtio(&bad, &mut f).is_err());
    // Cut short: refused.
    let mut f = gso[..60].to_vec();
    assert!(Offload::from_virtio(&h, &mut f).is_err());
}
