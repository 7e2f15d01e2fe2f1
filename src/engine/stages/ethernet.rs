//! Stage `ethernet`: the Ethernet header, and the peer it teaches.

use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{DropReason, Link, Verdict};
use crate::wire::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, Mac};

/// What comes after the Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Ipv4,
    Arp,
}

/// Reads the Ethernet header of a frame received on `port` and learns the
/// port's peer MAC from its source: the ports are point-to-point links,
/// so whoever sends on one is its peer.
#[inline(always)]
pub(crate) fn input<T: Tracer>(
    t: &mut T,
    port: Link,
    frame: &[u8],
    peers: &mut [Option<Mac>; 3],
) -> Result<Next, Verdict> {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        trace!(t, Event::ShortFrame { len: frame.len() });
        return Err(Verdict::drop(DropReason::Malformed));
    };
    peers[port.index()] = Some(eth.src());
    match eth.ethertype() {
        ETHERTYPE_IPV4 => Ok(Next::Ipv4),
        ETHERTYPE_ARP => Ok(Next::Arp),
        ethertype => {
            trace!(t, Event::UnsupportedEthertype { ethertype });
            Err(Verdict::drop(DropReason::UnsupportedEthertype))
        }
    }
}
