//! Stage `mtu`: a packet larger than its egress port's MTU is fragmented
//! (RFC 791) when DF is clear, or dropped with an ICMP "fragmentation
//! needed" (RFC 792 type 3 code 4, with the next-hop MTU of RFC 1191) back
//! to its sender when DF is set.
//!
//! Both build new frames, so they allocate; they only run for packets
//! larger than a port's MTU, never on the common path.

use crate::engine::counters::Counters;
use crate::engine::trace::{Event, Tracer, Withheld, trace};
use crate::engine::{Link, Offload, Transmit, Verdict};
use crate::wire::checksum;
use crate::wire::ethernet;
#[cfg(test)]
use crate::wire::ethernet::Mac;
use crate::wire::ipv4;
use std::collections::VecDeque;
#[cfg(test)]
use std::net::Ipv4Addr;

/// Frames the engine sends on its own, and the scratch they are cut in.
#[derive(Debug, Default)]
pub(crate) struct Tx {
    pub queue: VecDeque<Transmit>,
    pieces: Vec<Vec<u8>>,
    /// The tag of the received frame being processed (their cause).
    pub cause: u64,
}

/// The MTU a packet of `ip_len` IP bytes leaving on `out` exceeds, if any.
#[inline(always)]
pub(crate) fn exceeded(mtu: &[Option<u32>; 3], out: Link, ip_len: usize) -> Option<u32> {
    mtu[out.index()].filter(|&m| ip_len > m as usize)
}

/// Fragments a forwarded frame larger than its egress MTU; the fragments
/// go to `tx` and the verdict becomes [`Verdict::Fragmented`].
pub(crate) fn fit<T: Tracer>(
    t: &mut T,
    frame: &[u8],
    v: Verdict,
    mtu: &[Option<u32>; 3],
    tx: &mut Tx,
    counters: &mut Counters,
) -> Verdict {
    let Verdict::Forwarded { port, eni, eip } = v else {
        return v;
    };
    let Some(mtu) = mtu[port.index()] else {
        return v;
    };
    if frame.len() <= ETH + mtu as usize {
        return v;
    }
    let Ok(ip) = ipv4::Packet::new_checked(&frame[ETH..]) else {
        return v;
    };
    if ip.total_len() <= mtu as usize {
        return v;
    }
    if ip.dont_frag() {
        // Only a later fragment gets here with DF (whole packets and
        // first fragments with DF were refused before the rewrite): it is
        // dropped, not cut again, and no error is sent about it.
        trace!(
            t,
            Event::IcmpErrorWithheld {
                why: Withheld::NotFirstFragment
            }
        );
        return Verdict::Dropped {
            reason: crate::engine::DropReason::MtuExceeded,
            eni,
            eip,
        };
    }
    tx.pieces.clear();
    fragment(frame, mtu as usize, &mut tx.pieces);
    let len = ip.total_len();
    send_pieces(
        t,
        Verdict::Forwarded { port, eni, eip },
        len,
        mtu,
        tx,
        counters,
    )
}

/// A forwarded GSO packet whose segments exceed the egress MTU (DF
/// clear): cut into its segments (TCP segments or UDP datagrams, see
/// [`Offload::segment_each`]), each then fragmented as a packet of its own
/// would be; the pieces go to `tx` and the verdict becomes
/// [`Verdict::Fragmented`]. A UDP GSO packet must not be fragmented whole:
/// its datagrams would arrive as one.
pub(crate) fn fit_gso<T: Tracer>(
    t: &mut T,
    frame: &[u8],
    off: Offload,
    v: Verdict,
    mtu: &[Option<u32>; 3],
    tx: &mut Tx,
    counters: &mut Counters,
) -> Verdict {
    let Verdict::Forwarded { port, .. } = v else {
        return v;
    };
    let Some(limit) = mtu[port.index()] else {
        return v;
    };
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut scratch = Vec::new();
    if off
        .segment_each(frame, &mut scratch, |s| segments.push(s.to_vec()))
        .is_err()
    {
        return v;
    }
    tx.pieces.clear();
    for s in &segments {
        if s.len() > ETH + limit as usize {
            fragment(s, limit as usize, &mut tx.pieces);
        } else {
            tx.pieces.push(s.clone());
        }
    }
    send_pieces(t, v, frame.len() - ETH, limit, tx, counters)
}

/// Queues the pieces cut into `tx.pieces` for the port of `v` (a
/// forwarded verdict), counts them, traces the cut of a packet of `len`
/// IP bytes for `mtu`, and returns the [`Verdict::Fragmented`] it became.
fn send_pieces<T: Tracer>(
    t: &mut T,
    v: Verdict,
    len: usize,
    mtu: u32,
    tx: &mut Tx,
    counters: &mut Counters,
) -> Verdict {
    let Verdict::Forwarded { port, eni, eip } = v else {
        return v;
    };
    let n = tx.pieces.len();
    trace!(
        t,
        Event::Fragmented {
            len,
            port,
            mtu,
            pieces: n
        }
    );
    for f in tx.pieces.drain(..) {
        counters.ports[port.index()].tx(f.len());
        counters.frames.fragments_sent += 1;
        tx.queue.push_back(Transmit {
            port,
            frame: f,
            cause: tx.cause,
        });
    }
    Verdict::Fragmented {
        port,
        eni,
        eip,
        pieces: n as u16,
    }
}

const ETH: usize = ethernet::HEADER_LEN;

/// Splits the IPv4 frame `frame` into fragments whose IP packets fit in
/// `mtu` bytes, appending them to `out`. Options without the "copied"
/// flag go in the first fragment only (RFC 791 section 3.1). The frame
/// must hold a valid IPv4 header (the engine checked it).
pub fn fragment(frame: &[u8], mtu: usize, out: &mut Vec<Vec<u8>>) {
    let ip = &frame[ETH..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let flags_off = u16::from_be_bytes([ip[6], ip[7]]);
    let (orig_mf, orig_off) = (flags_off & 0x2000 != 0, usize::from(flags_off & 0x1fff) * 8);
    let payload = &ip[hl..total];
    let options = &ip[20..hl];
    let copied = copied_options(options);
    let mut at = 0;
    let mut first = true;
    while at < payload.len() || first {
        let opts: &[u8] = if first { options } else { &copied };
        let ohl = 20 + opts.len();
        // Room for data, rounded down to 8 bytes except for the last piece.
        let room = (mtu.saturating_sub(ohl) / 8 * 8).max(8);
        let take = room.min(payload.len() - at);
        let last = at + take == payload.len();
        let mut f = Vec::with_capacity(ETH + ohl + take);
        f.extend_from_slice(&frame[..ETH]);
        f.extend_from_slice(&ip[..20]);
        f.extend_from_slice(opts);
        f.extend_from_slice(&payload[at..at + take]);
        let h = &mut f[ETH..];
        h[0] = 0x40 | (ohl / 4) as u8;
        h[2..4].copy_from_slice(&((ohl + take) as u16).to_be_bytes());
        let mf = !last || orig_mf;
        let off = ((orig_off + at) / 8) as u16 | if mf { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&off.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let cs = checksum::checksum(&h[..ohl]);
        h[10..12].copy_from_slice(&cs.to_be_bytes());
        out.push(f);
        at += take;
        first = false;
    }
}

/// The options of a header that every fragment repeats, padded to 4 bytes.
fn copied_options(options: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < options.len() {
        let t = options[i];
        match t {
            0 => break,
            1 => i += 1,
            _ => {
                let len = usize::from(*options.get(i + 1).unwrap_or(&2)).max(2);
                let end = (i + len).min(options.len());
                if t & 0x80 != 0 {
                    out.extend_from_slice(&options[i..end]);
                }
                i = end;
            }
        }
    }
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// An ICMP "fragmentation needed and DF set" about the IPv4 frame
/// `original`, from `from`, back to its sender's MAC (RFC 792, RFC 1191).
/// Quotes the original header and the first 8 bytes of its payload.
#[cfg(test)]
pub fn frag_needed(original: &[u8], mtu: u16, from: Ipv4Addr, our_mac: Mac) -> Vec<u8> {
    let m = mtu.to_be_bytes();
    super::icmp_error::build(original, 3, 4, [0, 0, m[0], m[1]], from, our_mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Link;
    use crate::probe::udp;
    use etherparse::{Icmpv4Type, Ipv4Slice, SlicedPacket, TransportSlice};

    #[test]
    fn fragments_fit_and_reassemble() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let frame = udp(
            Link::Instance,
            "172.16.0.10",
            "198.51.100.7",
            1,
            2,
            &payload,
        );
        let mut out = Vec::new();
        fragment(&frame, 1500, &mut out);
        assert_eq!(out.len(), 3);
        let mut data = Vec::new();
        for (i, f) in out.iter().enumerate() {
            let ip = Ipv4Slice::from_slice(&f[14..]).unwrap();
            let h = ip.header().to_header();
            assert!(h.total_len <= 1500);
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "fragment {i}");
            assert_eq!(usize::from(h.fragment_offset.byte_offset()), data.len());
            assert_eq!(h.more_fragments, i < 2);
            data.extend_from_slice(ip.payload().payload);
        }
        // The UDP header and data, intact.
        assert_eq!(&data[8..], &payload[..]);
        assert_eq!(&data[..8], &frame[34..42]);
    }

    #[test]
    fn frag_needed_quotes_the_original() {
        let frame = udp(
            Link::Internet,
            "198.51.100.7",
            "203.0.113.10",
            1,
            2,
            &[7; 1600],
        );
        let f = frag_needed(
            &frame,
            1500,
            "203.0.113.10".parse().unwrap(),
            Mac([2, 0xee, 0, 0, 0, 2]),
        );
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(TransportSlice::Icmpv4(i)) = p.transport else {
            panic!("ICMP")
        };
        assert!(matches!(
            i.icmp_type(),
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1500
                }
            )
        ));
        assert_eq!(i.checksum(), i.icmp_type().calc_checksum(i.payload()));
        assert_eq!(i.payload(), &frame[14..14 + 28]);
        assert_eq!(&f[..6], &frame[6..12], "back to the sender");
    }
}
