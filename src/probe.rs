//! Frames built with etherparse, for the demo, `route get`'s probe packet
//! and tests: etherparse is an implementation independent of eipsim's
//! `wire` module, so the checksums it writes are a real reference.
//!
//! Addresses are given as dotted quads (`"172.16.0.10"`); a frame received
//! on a port comes from the host on the far side of it ([`PEER_MACS`]) and is
//! addressed to eipsim's MAC on that port ([`PORT_MACS`]). The builders
//! panic on an invalid address or a frame etherparse cannot build: they are
//! for fixed, known-good inputs.

use crate::engine::{Link, PORT_MACS};
use etherparse::{
    Ethernet2Header, Icmpv4Type, IpFragOffset, Ipv4Header, PacketBuilder, PacketBuilderStep,
};
use std::net::Ipv4Addr;

/// The MAC of the host on the far side of each port.
pub const PEER_MACS: [[u8; 6]; 3] = [
    [0x02, 0, 0, 0, 0, 0x0a],
    [0x02, 0, 0, 0, 0, 0x0b],
    [0x02, 0, 0, 0, 0, 0x0c],
];

/// The four bytes of a dotted-quad IPv4 address; panics if `s` is not one.
pub fn ip(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().expect("a valid address").octets()
}

fn eth(port: Link) -> PacketBuilderStep<Ethernet2Header> {
    PacketBuilder::ethernet2(PEER_MACS[port.index()], PORT_MACS[port.index()].0)
}

/// A TCP segment (TTL 64, sequence 1000, window 64240) received on `port`;
/// `flags` is a string of S, A, F, R, P (A acknowledges 2000).
pub fn tcp(
    port: Link,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    tcp_ttl(port, src, dst, sport, dport, flags, payload, 64)
}

/// A TCP segment like [`tcp`], with the given IP TTL.
#[allow(clippy::too_many_arguments)]
pub fn tcp_ttl(
    port: Link,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    flags: &str,
    payload: &[u8],
    ttl: u8,
) -> Vec<u8> {
    let mut b = eth(port)
        .ipv4(ip(src), ip(dst), ttl)
        .tcp(sport, dport, 1000, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(2000),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            _ => panic!("unknown TCP flag {f}"),
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("builds");
    v
}

/// A UDP datagram (TTL 64) received on `port`.
pub fn udp(port: Link, src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_ttl(port, src, dst, sport, dport, payload, 64)
}

/// A UDP datagram like [`udp`], with the given IP TTL.
pub fn udp_ttl(
    port: Link,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    payload: &[u8],
    ttl: u8,
) -> Vec<u8> {
    let mut v = Vec::new();
    eth(port)
        .ipv4(ip(src), ip(dst), ttl)
        .udp(sport, dport)
        .write(&mut v, payload)
        .expect("builds");
    v
}

/// A UDP datagram sent without a checksum (0, allowed by RFC 768).
pub fn udp_no_checksum(
    port: Link,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = udp(port, src, dst, sport, dport, payload);
    let at = 14 + 20 + 6;
    v[at] = 0;
    v[at + 1] = 0;
    v
}

/// An ICMP echo request (or, with `reply`, an echo reply) with identifier
/// `id` and sequence number `seq` and a fixed 22-byte payload.
pub fn ping(port: Link, src: &str, dst: &str, id: u16, seq: u16, reply: bool) -> Vec<u8> {
    let b = eth(port).ipv4(ip(src), ip(dst), 64);
    let b = if reply {
        b.icmpv4_echo_reply(id, seq)
    } else {
        b.icmpv4_echo_request(id, seq)
    };
    let mut v = Vec::new();
    b.write(&mut v, b"eipsim-ping-0123456789").expect("builds");
    v
}

/// An ICMP destination unreachable (port) from `src` to `dst`, quoting the
/// IP packet inside `offending` (an Ethernet frame), cut to `quote_len`
/// bytes of IP as routers do (RFC 792 asks for header + 8 bytes).
pub fn icmp_unreachable(
    port: Link,
    src: &str,
    dst: &str,
    offending: &[u8],
    quote_len: usize,
) -> Vec<u8> {
    let q = &offending[14..];
    let q = &q[..quote_len.min(q.len())];
    let mut v = Vec::new();
    eth(port)
        .ipv4(ip(src), ip(dst), 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut v, q)
        .expect("builds");
    v
}

/// A broadcast ARP request from the peer on `port`: `sender` asks who has
/// `target`.
pub fn arp_request(port: Link, sender: &str, target: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(42);
    v.extend_from_slice(&[0xff; 6]);
    v.extend_from_slice(&PEER_MACS[port.index()]);
    v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&PEER_MACS[port.index()]);
    v.extend_from_slice(&ip(sender));
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&ip(target));
    v
}

/// An ARP reply from the peer on `port` to eipsim's MAC on that port: the
/// request of [`arp_request`] with the opcode and destination MAC changed.
pub fn arp_reply(port: Link, sender: &str, target: &str) -> Vec<u8> {
    let mut v = arp_request(port, sender, target);
    v[..6].copy_from_slice(&PORT_MACS[port.index()].0);
    v[21] = 2;
    v
}

/// Rewrites a frame's IPv4 header through `f` and recomputes its checksum.
pub fn patch_ipv4(frame: &mut [u8], f: impl FnOnce(&mut Ipv4Header)) {
    let (mut h, _) = Ipv4Header::from_slice(&frame[14..]).expect("an IPv4 frame");
    f(&mut h);
    h.header_checksum = h.calc_header_checksum();
    let bytes = h.to_bytes();
    frame[14..14 + bytes.len()].copy_from_slice(&bytes);
}

/// Splits an IPv4 frame into fragments of at most `chunk` payload bytes
/// (a multiple of 8), in order.
pub fn fragment(frame: &[u8], ident: u16, chunk: usize) -> Vec<Vec<u8>> {
    assert!(chunk.is_multiple_of(8) && chunk > 0);
    let (h, _) = Ipv4Header::from_slice(&frame[14..]).expect("an IPv4 frame");
    let hl = h.header_len();
    let payload = &frame[14 + hl..14 + usize::from(h.total_len)];
    let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let mut h2 = h.clone();
            h2.identification = ident;
            h2.dont_fragment = false;
            h2.more_fragments = i + 1 < n;
            h2.fragment_offset =
                IpFragOffset::try_new((i * chunk / 8) as u16).expect("offset fits");
            h2.total_len = (hl + p.len()) as u16;
            h2.header_checksum = h2.calc_header_checksum();
            let mut v = frame[..14].to_vec();
            v.extend_from_slice(&h2.to_bytes());
            v.extend_from_slice(p);
            v
        })
        .collect()
}

/// Any frame with a given EtherType and payload.
pub fn raw(port: Link, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = PORT_MACS[port.index()].0.to_vec();
    v.extend_from_slice(&PEER_MACS[port.index()]);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// The frame as a device with checksum offload hands it over
/// (virtio-net `NEEDS_CSUM`): its TCP or UDP checksum field holds the
/// folded, uncomplemented sum of the pseudo-header (RFC 9293 3.1, RFC
/// 768) over the whole transport length, computed here independently of
/// eipsim's checksum code. Panics if the frame is not TCP/UDP over IPv4.
pub fn with_partial_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    let (h, _) = Ipv4Header::from_slice(&frame[14..]).expect("an IPv4 frame");
    let l4 = 14 + h.header_len();
    let l4_len = usize::from(h.total_len) - h.header_len();
    let field = match h.protocol {
        etherparse::IpNumber::TCP => l4 + 16,
        etherparse::IpNumber::UDP => l4 + 6,
        p => panic!("no partial checksum for protocol {p:?}"),
    };
    let words = [
        u16::from_be_bytes([h.source[0], h.source[1]]),
        u16::from_be_bytes([h.source[2], h.source[3]]),
        u16::from_be_bytes([h.destination[0], h.destination[1]]),
        u16::from_be_bytes([h.destination[2], h.destination[3]]),
        u16::from(h.protocol.0),
        l4_len as u16,
    ];
    let mut sum: u32 = words.iter().map(|&w| u32::from(w)).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[field..field + 2].copy_from_slice(&(sum as u16).to_be_bytes());
    frame
}
