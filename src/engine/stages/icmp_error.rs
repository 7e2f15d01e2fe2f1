//! Stage `icmp_error`: the ICMP errors eipsim sends about a packet it does
//! not forward, fragmentation needed (RFC 792 type 3 code 4, with the
//! next-hop MTU of RFC 1191) and time exceeded in transit (type 11 code 0,
//! RFC 1812 5.3.1, so `traceroute` shows the hop), under the rules for
//! them: never about an ICMP error or a later fragment (RFC 1122 3.2.2,
//! RFC 1812 4.3.2.7), at most a token bucket's worth per port (RFC 1812
//! 4.3.2.8, `[icmp_errors]`), and always from one of eipsim's own
//! addresses (the caller picks it).
//!
//! Building an error allocates; it runs only for packets eipsim does not
//! forward.

use crate::engine::bucket::TokenBucket;
use crate::engine::counters::Counters;
use crate::engine::stages::mtu::Tx;
use crate::engine::trace::{Event, Tracer, Withheld, trace};
use crate::engine::{Link, PORT_MACS, Transmit};
use crate::wire::checksum;
use crate::wire::ethernet::{self, Mac};
use crate::wire::ipv4;
use std::net::Ipv4Addr;

const ETH: usize = ethernet::HEADER_LEN;

/// Which error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Fragmentation needed and DF set, with the next-hop MTU (IP bytes).
    FragNeeded { mtu: u32 },
    /// Time to live exceeded in transit.
    TimeExceeded,
}

/// One token bucket per port.
#[derive(Debug)]
pub(crate) struct Limiter(pub [TokenBucket; 3]);

/// Why no ICMP error may be sent about the packet in `frame`, if one may
/// not: it is an ICMP error itself (destination unreachable, source
/// quench, redirect, time exceeded, parameter problem), or a fragment
/// other than the first (RFC 1122 3.2.2, RFC 1812 4.3.2.7). The other
/// cases of those rules (a broadcast or multicast destination or frame, a
/// source that is not one unicast host) never get this far: stage
/// `ip4_input` drops them first.
pub(crate) fn withheld(frame: &[u8]) -> Option<Withheld> {
    let ip = ipv4::Packet::new_checked(frame.get(ETH..)?).ok()?;
    if ip.frag_offset() > 0 {
        return Some(Withheld::NotFirstFragment);
    }
    let icmp_type = ip.payload().first().copied();
    (ip.protocol() == ipv4::PROTO_ICMP && matches!(icmp_type, Some(3 | 4 | 5 | 11 | 12)))
        .then_some(Withheld::AboutAnError)
}

/// Sends `kind` about `frame` back on `port` from `from` (`None`: eipsim
/// has no address to send it from there), unless the rules above or the
/// port's rate limit forbid it; counted and traced either way.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send<T: Tracer>(
    t: &mut T,
    kind: Kind,
    port: Link,
    frame: &[u8],
    from: Option<Ipv4Addr>,
    now: u64,
    limiter: &mut Limiter,
    tx: &mut Tx,
    counters: &mut Counters,
) {
    let why = withheld(frame)
        .or(from.is_none().then_some(Withheld::NoAddress))
        .or((!limiter.0[port.index()].take(now)).then_some(Withheld::RateLimited));
    let (Some(from), None) = (from, why) else {
        let why = why.unwrap_or(Withheld::NoAddress);
        trace!(t, Event::IcmpErrorWithheld { why });
        match why {
            Withheld::RateLimited => counters.icmp_errors.rate_limited += 1,
            _ => counters.icmp_errors.withheld += 1,
        }
        return;
    };
    let mac = PORT_MACS[port.index()];
    let f = match kind {
        Kind::FragNeeded { mtu } => {
            trace!(t, Event::FragNeeded { mtu, port, from });
            counters.icmp_errors.frag_needed += 1;
            let m = (mtu.min(65535) as u16).to_be_bytes();
            build(frame, 3, 4, [0, 0, m[0], m[1]], from, mac)
        }
        Kind::TimeExceeded => {
            trace!(t, Event::TimeExceeded { port, from });
            counters.icmp_errors.time_exceeded += 1;
            build(frame, 11, 0, [0; 4], from, mac)
        }
    };
    counters.ports[port.index()].tx(f.len());
    counters.frames.generated += 1;
    tx.queue.push_back(Transmit {
        port,
        frame: f,
        cause: tx.cause,
    });
}

/// An ICMP error (`icmp_type`, `code`, the header's second word `word`)
/// about the IPv4 frame `original`, from `from`, back to the MAC it came
/// from (RFC 792): quotes the original header and the first 8 bytes of
/// its payload, TTL 64, checksums computed. `original` must hold a valid
/// IPv4 header (stage `ip4_input` checked it).
pub fn build(
    original: &[u8],
    icmp_type: u8,
    code: u8,
    word: [u8; 4],
    from: Ipv4Addr,
    our_mac: Mac,
) -> Vec<u8> {
    let ip = &original[ETH..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let quote = &ip[..(hl + 8).min(ip.len())];
    let icmp_len = 8 + quote.len();
    let mut f = Vec::with_capacity(ETH + 20 + icmp_len);
    f.extend_from_slice(&original[6..12]); // back to the sender
    f.extend_from_slice(&our_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + icmp_len) as u16;
    let t = total.to_be_bytes();
    f.extend_from_slice(&[0x45, 0, t[0], t[1], 0, 0, 0, 0, 64, 1, 0, 0]);
    f.extend_from_slice(&from.octets());
    f.extend_from_slice(&ip[12..16]); // the original source
    let cs = checksum::checksum(&f[ETH..ETH + 20]);
    f[ETH + 10..ETH + 12].copy_from_slice(&cs.to_be_bytes());
    let icmp_at = f.len();
    f.extend_from_slice(&[icmp_type, code, 0, 0]);
    f.extend_from_slice(&word);
    f.extend_from_slice(quote);
    let cs = checksum::checksum(&f[icmp_at..]);
    f[icmp_at + 2..icmp_at + 4].copy_from_slice(&cs.to_be_bytes());
    f
}
