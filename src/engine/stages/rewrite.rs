//! Stage `rewrite`: TTL, MAC addresses and the instance endpoint's
//! address, with every checksum that covers it updated incrementally
//! (RFC 1624), including the packet an ICMP error quotes (RFC 5508 4.2).

use super::ip4_input::{Meta, Piece};
use super::session::Xlate;
use crate::config::EniId;
use crate::engine::Link;
use crate::engine::PORT_MACS;
use crate::engine::trace::{Checksums, Event, Tracer, trace};
use crate::wire::checksum::Delta;
use crate::wire::ethernet::{self, Mac};
use crate::wire::ipv4::{self, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::{icmp, tcp, udp};
use std::net::Ipv4Addr;

const ETH: usize = ethernet::HEADER_LEN;

/// The copy of the last forwarded frame as its ENI carries it inside the
/// instance (private address in NAT mode), when ENI capture is on.
#[derive(Debug)]
pub(crate) struct EniView {
    pub on: bool,
    pub buf: Vec<u8>,
    pub eni: Option<EniId>,
}

impl EniView {
    pub fn new() -> Self {
        EniView {
            on: false,
            buf: Vec::with_capacity(2048),
            eni: None,
        }
    }

    /// Keeps `frame` as `eni` carries it (reuses the buffer).
    pub fn snapshot(&mut self, eni: EniId, frame: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(frame);
        self.eni = Some(eni);
    }
}

/// Rewrites a forwarded packet: TTL, MACs, then the instance endpoint's
/// address, in two steps when the ENI view is captured in between.
/// `partial`: the TCP/UDP checksum field holds a partial sum (offload).
#[inline(always)]
pub(crate) fn rewrite<T: Tracer>(
    t: &mut T,
    frame: &mut [u8],
    m: &Meta,
    x: &Xlate,
    peers: &[Option<Mac>; 3],
    view: &mut EniView,
    partial: bool,
) {
    set_link(frame, x.out, peers);
    let outbound = x.dir.is_outbound();
    let (cur, mid, fin) = if outbound {
        (m.src(), x.eni_addr, x.pub_addr)
    } else {
        (m.dst(), x.eni_addr, x.inst_addr)
    };
    // Later fragments are rewritten by stage `frag` (no transport header).
    debug_assert!(m.piece != Piece::Later);
    trace!(
        t,
        Event::Rewrite {
            ttl: m.ttl,
            dir: x.dir,
            from: cur,
            to: fin,
            sums: match m.proto {
                _ if cur == fin => Checksums::TtlOnly,
                PROTO_TCP => Checksums::Tcp,
                PROTO_UDP => Checksums::Udp,
                PROTO_ICMP if m.quote.is_some() => Checksums::IcmpError,
                _ => Checksums::Ipv4,
            },
            out: x.out,
        }
    );
    let quote = m.quote.is_some();
    if view.on {
        if cur != mid {
            translate(frame, outbound, mid, quote, partial);
        }
        view.snapshot(x.eni, frame);
        if mid != fin {
            translate(frame, outbound, fin, quote, partial);
        }
    } else if cur != fin {
        translate(frame, outbound, fin, quote, partial);
    }
}

/// TTL and link addresses of a forwarded frame: from eipsim's MAC on `out`
/// to the peer learnt there (broadcast until one is known).
#[inline(always)]
pub(crate) fn set_link(frame: &mut [u8], out: Link, peers: &[Option<Mac>; 3]) {
    if let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[ETH..]) {
        ip.decrement_ttl();
    }
    if let Ok(mut eth) = ethernet::Frame::new_checked(&mut frame[..]) {
        eth.set_src(PORT_MACS[out.index()]);
        eth.set_dst(peers[out.index()].unwrap_or(Mac::BROADCAST));
    }
}

/// Sets the outer addresses of a later fragment (no L4 header to fix).
pub(crate) fn set_addrs(frame: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    if let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[ETH..]) {
        if ip.src() != src {
            ip.set_src(src);
        }
        if ip.dst() != dst {
            ip.set_dst(dst);
        }
    }
}

/// Rewrites the instance endpoint's address to `to`: the source of an
/// outbound packet or the destination of an inbound one, with every
/// checksum that covers it. In an ICMP error the quoted packet travelled
/// the other way, so its other address changes too (RFC 5508 section 4.2).
/// A partial TCP/UDP checksum is updated as the pseudo-header sum it is.
fn translate(frame: &mut [u8], outbound: bool, to: Ipv4Addr, icmp_error: bool, partial: bool) {
    let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[ETH..]) else {
        return;
    };
    let d = if outbound {
        ip.set_src(to)
    } else {
        ip.set_dst(to)
    };
    let proto = ip.protocol();
    let l4 = ip.payload_mut();
    match proto {
        PROTO_TCP => {
            if let Ok(mut t) = tcp::Packet::new_checked(l4) {
                if partial {
                    t.adjust_partial_checksum(d);
                } else {
                    t.adjust_checksum(d);
                }
            }
        }
        PROTO_UDP => {
            if let Ok(mut u) = udp::Packet::new_checked(l4) {
                if partial {
                    u.adjust_partial_checksum(d);
                } else {
                    u.adjust_checksum(d);
                }
            }
        }
        PROTO_ICMP if icmp_error => translate_quote(l4, !outbound, to),
        _ => {}
    }
}

/// Translates the packet quoted by an ICMP error: its source (`src` true)
/// or destination becomes `to`; its IP checksum, its TCP/UDP checksum (if
/// quoted) and the ICMP checksum are updated.
fn translate_quote(icmp_bytes: &mut [u8], src: bool, to: Ipv4Addr) {
    let Ok(mut msg) = icmp::Packet::new_checked(icmp_bytes) else {
        return;
    };
    let q = msg.quoted_mut();
    let Ok(mut qip) = ipv4::Packet::new_truncated(&mut q[..]) else {
        return;
    };
    let (proto, hl, old_cs) = (qip.protocol(), qip.header_len(), qip.checksum());
    let d = if src {
        qip.set_src(to)
    } else {
        qip.set_dst(to)
    };
    let mut total = d.merge(Delta::NONE.word(old_cs, qip.checksum()));
    let l4 = &mut q[hl..];
    let field = match proto {
        PROTO_TCP => Some((tcp::CHECKSUM_OFFSET, false)),
        PROTO_UDP => Some((udp::CHECKSUM_OFFSET, true)),
        _ => None,
    };
    if let Some((at, is_udp)) = field
        && let Some(old) = icmp::quoted_u16(l4, at)
    {
        let new = if is_udp {
            d.apply_udp(old)
        } else {
            d.apply(old)
        };
        total = total.merge(icmp::patch_quoted_u16(l4, at, new));
    }
    msg.adjust_checksum(total);
}
