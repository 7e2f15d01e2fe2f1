//! One-line, tcpdump-style descriptions of frames, for people.
//!
//! Uses etherparse, not eipsim's own `wire` views, so a description never
//! depends on the code it is describing.

use etherparse::{EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, TransportSlice};

fn tcp_flags(t: &etherparse::TcpSlice) -> String {
    let mut s = String::new();
    for (on, c) in [
        (t.syn(), 'S'),
        (t.fin(), 'F'),
        (t.rst(), 'R'),
        (t.psh(), 'P'),
        (t.ack(), '.'),
    ] {
        if on {
            s.push(c);
        }
    }
    s
}

/// Describes a frame: `TCP 172.16.0.10:40000 > 198.51.100.7:443 [S]`.
pub fn frame(data: &[u8]) -> String {
    if data.len() >= 14 && data[12..14] == [0x08, 0x06] && data.len() >= 42 {
        let a = &data[14..];
        let ip = |o: usize| format!("{}.{}.{}.{}", a[o], a[o + 1], a[o + 2], a[o + 3]);
        return match u16::from_be_bytes([a[6], a[7]]) {
            1 => format!("ARP who-has {} tell {}", ip(24), ip(14)),
            2 => format!(
                "ARP reply {} is-at {}",
                ip(14),
                crate::wire::ethernet::Mac([a[8], a[9], a[10], a[11], a[12], a[13]])
            ),
            op => format!("ARP op {op}"),
        };
    }
    let Ok(p) = LaxSlicedPacket::from_ethernet(data) else {
        return format!("{} bytes, not parseable", data.len());
    };
    let Some(LaxNetSlice::Ipv4(ip)) = &p.net else {
        return match &p.link {
            Some(etherparse::LinkSlice::Ethernet2(e)) if e.ether_type() != EtherType::IPV4 => {
                format!("EtherType 0x{:04x}, {} bytes", e.ether_type().0, data.len())
            }
            _ => format!("{} bytes, not IPv4", data.len()),
        };
    };
    let h = ip.header();
    let (src, dst) = (h.source_addr(), h.destination_addr());
    let frag = if h.is_fragmenting_payload() {
        format!(
            " frag id {} off {}{}",
            h.identification(),
            h.fragments_offset().byte_offset(),
            if h.more_fragments() { "+" } else { "" }
        )
    } else {
        String::new()
    };
    let ttl = h.ttl();
    let body = match &p.transport {
        Some(TransportSlice::Tcp(t)) => format!(
            "TCP {src}:{} > {dst}:{} [{}]",
            t.source_port(),
            t.destination_port(),
            tcp_flags(t)
        ),
        Some(TransportSlice::Udp(u)) => format!(
            "UDP {src}:{} > {dst}:{}",
            u.source_port(),
            u.destination_port()
        ),
        Some(TransportSlice::Icmpv4(i)) => {
            let t = i.icmp_type();
            let what = match t {
                etherparse::Icmpv4Type::EchoRequest(e) => format!("echo request id {}", e.id),
                etherparse::Icmpv4Type::EchoReply(e) => format!("echo reply id {}", e.id),
                etherparse::Icmpv4Type::DestinationUnreachable(_) => "unreachable".to_string(),
                etherparse::Icmpv4Type::TimeExceeded(_) => "time exceeded".to_string(),
                _ => format!("type {}", i.type_u8()),
            };
            format!("ICMP {src} > {dst} {what}")
        }
        _ => {
            let proto = h.protocol();
            let name = match proto {
                IpNumber::TCP => "TCP",
                IpNumber::UDP => "UDP",
                IpNumber::ICMP => "ICMP",
                _ => "IP",
            };
            format!("{name} {src} > {dst} proto {}", proto.0)
        }
    };
    format!("{body} ttl {ttl}{frag}")
}
