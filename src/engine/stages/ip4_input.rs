//! Stage `ip4_input`: parse the IPv4 header and the transport ports once,
//! then the checks before any lookup (transport header present, unicast
//! destination, source owned, TTL).

use crate::engine::eip::AddressPlan;
use crate::engine::flow::FlowKey;
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{DropReason, Link};
use crate::wire::ethernet;
use crate::wire::ipv4::{self, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::{icmp, tcp, udp};
use std::net::Ipv4Addr;

const ETH: usize = ethernet::HEADER_LEN;

/// Which piece of a datagram a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Not fragmented.
    Whole,
    /// Offset 0, MF set: it carries the transport header.
    First,
    /// Offset > 0: no transport header; it follows its first fragment.
    Later,
}

/// The tuple quoted by an ICMP error (RFC 792: the IP header and at least
/// the first 8 bytes of the offending datagram).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quote {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// What the parser learnt of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    /// Source (high half) and destination, read and stored as one word so
    /// later wide reads of both forward from a single store.
    pub addrs: u64,
    pub proto: u8,
    pub ttl: u8,
    pub piece: Piece,
    pub ident: u16,
    /// TCP/UDP ports, or the ICMP query identifier in both.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: Option<u8>,
    /// Set for an ICMP error: the packet it quotes.
    pub quote: Option<Quote>,
    /// IPv4 total length (bytes of the IP packet, header included).
    pub ip_len: usize,
    pub dont_frag: bool,
    /// The transport header (or an ICMP error's quote) is cut short: the
    /// packet is malformed, but its IP header is known (for fragments).
    pub bad_l4: bool,
}

impl Meta {
    /// The flow key this packet is looked up by on `side`: its own tuple,
    /// or for an ICMP error the reverse of the tuple it quotes (the quoted
    /// packet went the other way).
    #[inline(always)]
    pub fn flow_key(&self, side: Link) -> FlowKey {
        match self.quote {
            Some(q) => FlowKey {
                side,
                proto: q.proto,
                src: q.dst,
                dst: q.src,
                sport: q.dport,
                dport: q.sport,
            },
            None => FlowKey {
                side,
                proto: self.proto,
                src: self.src(),
                dst: self.dst(),
                sport: self.sport,
                dport: self.dport,
            },
        }
    }

    #[inline(always)]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits((self.addrs >> 32) as u32)
    }

    #[inline(always)]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addrs as u32)
    }
}

/// Parses the IPv4 packet `b` (the Ethernet payload).
#[inline(always)]
pub(crate) fn parse(b: &[u8]) -> Result<Meta, DropReason> {
    let bad = |_| DropReason::Malformed;
    let ip = ipv4::Packet::new_checked(b).map_err(bad)?;
    if !ip.verify_checksum() {
        return Err(DropReason::Malformed);
    }
    let piece = if !ip.is_fragment() {
        Piece::Whole
    } else if ip.frag_offset() == 0 {
        Piece::First
    } else {
        Piece::Later
    };
    // A piece ending past 65,535 bytes belongs to no IPv4 datagram (the
    // total length field is 16 bits, RFC 791).
    if ip.frag_offset() + ip.total_len().saturating_sub(ip.header_len()) > 65_535 {
        return Err(DropReason::Malformed);
    }
    let mut m = Meta {
        addrs: ip.addrs(),
        proto: ip.protocol(),
        ttl: ip.ttl(),
        piece,
        ident: ip.ident(),
        sport: 0,
        dport: 0,
        tcp_flags: None,
        quote: None,
        ip_len: ip.total_len(),
        dont_frag: ip.dont_frag(),
        bad_l4: false,
    };
    if piece == Piece::Later {
        return Ok(m);
    }
    let p = ip.payload();
    match m.proto {
        PROTO_TCP => match tcp::Packet::new_checked(p) {
            Ok(t) => {
                (m.sport, m.dport, m.tcp_flags) = (t.src_port(), t.dst_port(), Some(t.flags()))
            }
            Err(_) => m.bad_l4 = true,
        },
        PROTO_UDP => match udp::Packet::new_checked(p) {
            Ok(u) => (m.sport, m.dport) = (u.src_port(), u.dst_port()),
            Err(_) => m.bad_l4 = true,
        },
        PROTO_ICMP => match icmp::Packet::new_checked(p) {
            Ok(i) if i.is_query() => (m.sport, m.dport) = (i.ident(), i.ident()),
            Ok(i) if i.is_error() => match parse_quote(i.quoted()) {
                Ok(q) => m.quote = Some(q),
                Err(_) => m.bad_l4 = true,
            },
            Ok(_) => {}
            Err(_) => m.bad_l4 = true,
        },
        _ => {}
    }
    Ok(m)
}

/// Why [`parse`] refused `b` (an IPv4 packet, Ethernet header removed),
/// for the trace: the same checks in the same order, each named. Only
/// called for a packet `parse` refused (tracing on), so off the fast path.
pub(crate) fn fault(b: &[u8]) -> crate::engine::trace::Ipv4Fault {
    use crate::engine::trace::Ipv4Fault as F;
    let len = b.len();
    if len < 20 {
        return F::Short { len };
    }
    if b[0] >> 4 != 4 {
        return F::Version { version: b[0] >> 4 };
    }
    let header_len = usize::from(b[0] & 0x0f) * 4;
    if header_len < 20 || header_len > len {
        return F::HeaderLength { header_len, len };
    }
    let total_len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if total_len > len {
        return F::CutShort { total_len, len };
    }
    if total_len < header_len {
        return F::TotalBelowHeader {
            total_len,
            header_len,
        };
    }
    match ipv4::Packet::new_checked(b) {
        Ok(ip) if !ip.verify_checksum() => F::Checksum,
        Ok(ip) => {
            let end = ip.frag_offset() + ip.total_len().saturating_sub(ip.header_len());
            // The last of parse's refusals: a new one must be named here.
            debug_assert!(end > 65_535, "fault() of a packet parse() accepts");
            F::PastMaxLength { end }
        }
        // Not reached: the checks above are new_checked's.
        Err(_) => F::Short { len },
    }
}

fn parse_quote(q: &[u8]) -> Result<Quote, DropReason> {
    let ip = ipv4::Packet::new_truncated(q).map_err(|_| DropReason::Malformed)?;
    let l4 = &q[ip.header_len()..];
    let (sport, dport) = match ip.protocol() {
        PROTO_TCP | PROTO_UDP => match (icmp::quoted_u16(l4, 0), icmp::quoted_u16(l4, 2)) {
            (Some(s), Some(d)) => (s, d),
            _ => return Err(DropReason::Malformed),
        },
        PROTO_ICMP => match icmp::Packet::new_checked(l4) {
            Ok(i) if i.is_query() => (i.ident(), i.ident()),
            _ => (0, 0),
        },
        _ => (0, 0),
    };
    Ok(Quote {
        src: ip.src(),
        dst: ip.dst(),
        proto: ip.protocol(),
        sport,
        dport,
    })
}

/// True for an address a packet may be forwarded to: not broadcast,
/// multicast or unspecified.
pub(crate) fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_broadcast() || a.is_multicast() || a.is_unspecified())
}

/// Addresses no packet may carry across a router either way: 0.0.0.0/8
/// ("this network"), 127.0.0.0/8 (loopback), 169.254.0.0/16 (link-local,
/// RFC 3927 section 7) and 240.0.0.0/4 (reserved, with 255.255.255.255)
/// (RFC 1122 3.2.1.3, RFC 1812 5.3.7).
#[inline(always)]
fn martian(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 0 || o[0] == 127 || (o[0] == 169 && o[1] == 254) || o[0] >= 240
}

/// A martian source: the addresses above and multicast (224.0.0.0/4),
/// which names a group, never a sender (RFC 1812 5.3.7).
#[inline(always)]
pub(crate) fn martian_source(a: Ipv4Addr) -> bool {
    martian(a) || a.is_multicast()
}

/// A martian destination (see `martian`).
#[inline(always)]
pub(crate) fn martian_destination(a: Ipv4Addr) -> bool {
    martian(a)
}

/// The checks before any lookup, on every port: a transport header cut
/// short, martian addresses, the destination kind, a unicast packet in a
/// link-layer broadcast (`l2_group`: the frame's destination MAC has its
/// group bit), the source (for what the flow lookup does not vouch for)
/// and the TTL (the host path is one hop, RFC 1812 5.3.1).
#[inline(always)]
pub(crate) fn check<T: Tracer>(
    t: &mut T,
    port: Link,
    m: &Meta,
    l2_group: Option<ethernet::Mac>,
    plan: &AddressPlan,
) -> Result<(), DropReason> {
    let r = early_drop(port, m, l2_group.is_some(), plan);
    trace!(
        t,
        match r {
            None => Event::ChecksPassed { port, ttl: m.ttl },
            Some(DropReason::Malformed) => Event::TransportTruncated,
            Some(DropReason::MartianDestination) => Event::MartianDestination { dst: m.dst() },
            Some(DropReason::MartianSource) => Event::MartianSource { src: m.src() },
            Some(DropReason::NotUnicast) => Event::NotUnicast { dst: m.dst() },
            Some(DropReason::LinkBroadcast) => Event::LinkBroadcast {
                mac: l2_group.unwrap_or(ethernet::Mac::BROADCAST)
            },
            Some(DropReason::SpoofedSource) => spoofed(m.src(), plan),
            Some(_) => Event::TtlExpired { ttl: m.ttl },
        }
    );
    match r {
        None => Ok(()),
        Some(r) => Err(r),
    }
}

/// The event for a source the instance does not own.
pub(crate) fn spoofed(src: Ipv4Addr, plan: &AddressPlan) -> Event {
    Event::SpoofedSource {
        src,
        nat_eip: plan.eip(src),
    }
}

#[inline(always)]
fn early_drop(port: Link, m: &Meta, l2_group: bool, plan: &AddressPlan) -> Option<DropReason> {
    if m.bad_l4 {
        return Some(DropReason::Malformed);
    }
    if martian_destination(m.dst()) {
        return Some(DropReason::MartianDestination);
    }
    if martian_source(m.src()) {
        return Some(DropReason::MartianSource);
    }
    if !is_unicast(m.dst()) {
        return Some(DropReason::NotUnicast);
    }
    if l2_group {
        return Some(DropReason::LinkBroadcast);
    }
    if port == Link::Instance {
        // A flow hit proves the source is owned, so whole packets are
        // checked after the lookup (stage `session`); fragments and ICMP
        // errors are keyed otherwise and are checked here, as are packets
        // about to be dropped for their TTL.
        if (m.piece != Piece::Whole || m.quote.is_some() || m.ttl <= 1)
            && plan.owner(m.src()).is_none()
        {
            return Some(DropReason::SpoofedSource);
        }
    }
    (m.ttl <= 1).then_some(DropReason::TtlExpired)
}

/// The flow key a frame will be looked up by, read without validation
/// (for prefetching only: a wrong guess costs a wasted fetch, nothing more).
#[inline]
pub(crate) fn peek_key(port: Link, f: &[u8]) -> Option<FlowKey> {
    let ip = f.get(ETH..)?;
    if f.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 {
        return None;
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let proto = *ip.get(9)?;
    if ip.get(6)? & 0x3f != 0 || *ip.get(7)? != 0 || !(proto == PROTO_TCP || proto == PROTO_UDP) {
        return None; // fragments and others: not worth guessing
    }
    let l4 = ip.get(hl..hl + 4)?;
    let a = |o: usize| {
        ip.get(o..o + 4)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    Some(FlowKey {
        side: port,
        proto,
        src: a(12)?,
        dst: a(16)?,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::trace::Ipv4Fault as F;

    /// A UDP datagram with a valid header (etherparse writes it) and
    /// `payload` bytes; `frag` sets the fragment offset (8-byte units).
    fn packet(payload: usize, frag: u16) -> Vec<u8> {
        let mut ip = etherparse::Ipv4Header::new(
            (8 + payload) as u16,
            64,
            etherparse::IpNumber::UDP,
            [198, 51, 100, 7],
            [203, 0, 113, 10],
        )
        .unwrap();
        ip.fragment_offset = etherparse::IpFragOffset::try_new(frag).unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        let mut b = ip.to_bytes().to_vec();
        b.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, (8 + payload) as u8, 0, 0]);
        b.resize(b.len() + payload, 0xab);
        b
    }

    /// Each packet `parse` refuses is named by its first fault, in the
    /// order RFC 1812 5.2.2 lists the checks (length, version, header
    /// length, total length, checksum).
    #[test]
    fn every_refusal_names_its_fault() {
        let good = packet(20, 0);
        assert!(parse(&good).is_ok());
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            b
        };
        let cases: Vec<(Vec<u8>, F)> = vec![
            (good[..10].to_vec(), F::Short { len: 10 }),
            (with(&|b| b[0] = 0x65), F::Version { version: 6 }),
            (
                with(&|b| b[0] = 0x44),
                F::HeaderLength {
                    header_len: 16,
                    len: 48,
                },
            ),
            (
                {
                    let mut b = good[..22].to_vec();
                    b[0] = 0x46;
                    b
                },
                F::HeaderLength {
                    header_len: 24,
                    len: 22,
                },
            ),
            // A capture cut at its snap length: 48 bytes said, 30 there.
            (
                good[..30].to_vec(),
                F::CutShort {
                    total_len: 48,
                    len: 30,
                },
            ),
            (
                with(&|b| b[2..4].copy_from_slice(&12u16.to_be_bytes())),
                F::TotalBelowHeader {
                    total_len: 12,
                    header_len: 20,
                },
            ),
            (with(&|b| b[10] ^= 0xff), F::Checksum),
            // Offset 65,528 bytes and 28 bytes of payload.
            (packet(20, 8191), F::PastMaxLength { end: 65_556 }),
        ];
        for (b, want) in cases {
            assert_eq!(parse(&b).err(), Some(DropReason::Malformed), "{want:?}");
            assert_eq!(fault(&b), want);
        }
    }
}
