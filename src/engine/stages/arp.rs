//! Stage `arp`: answers ARP requests (RFC 826) for the addresses eipsim
//! stands for on each port, turning the request into the reply in place.

use super::ip4_input::is_unicast;
use crate::engine::eip::AddressPlan;
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{DropReason, Link, PORT_MACS, Verdict};
use crate::wire::{arp, ethernet};

const ETH: usize = ethernet::HEADER_LEN;

/// Answers ARP requests for the addresses the engine stands for on this
/// port: on `instance` every address that is not the instance's own (the
/// engine is its gateway), on `internet` the EIPs, on `vpc` the private
/// IPs of ENIs that have private networking.
pub(crate) fn input<T: Tracer>(
    t: &mut T,
    port: Link,
    frame: &mut [u8],
    plan: &AddressPlan,
) -> Verdict {
    let Ok(mut pkt) = arp::Packet::new_checked(&mut frame[ETH..]) else {
        trace!(t, Event::ArpMalformed);
        return Verdict::drop(DropReason::Malformed);
    };
    if pkt.operation() != arp::OP_REQUEST {
        trace!(
            t,
            Event::ArpNotRequest {
                operation: pkt.operation()
            }
        );
        return Verdict::Consumed { reply: None };
    }
    let target = pkt.target_ip();
    if target == pkt.sender_ip() {
        // A gratuitous announcement: nothing to answer.
        trace!(t, Event::ArpGratuitous { target });
        return Verdict::Consumed { reply: None };
    }
    let ours = match port {
        Link::Instance => plan.owner(target).is_none() && is_unicast(target),
        Link::Internet => plan.eip(target).is_some(),
        Link::Vpc => plan.vpc_owner(target).is_some(),
    };
    if !ours {
        trace!(t, Event::ArpNotOurs { port, target });
        return Verdict::drop(DropReason::ArpNotOurs);
    }
    let mac = PORT_MACS[port.index()];
    trace!(t, Event::ArpReply { port, target, mac });
    pkt.make_reply(mac);
    let mut eth = ethernet::Frame::new_checked(&mut frame[..]).expect("checked by stage ethernet");
    let requester = eth.src();
    eth.set_dst(requester);
    eth.set_src(mac);
    Verdict::Consumed { reply: Some(port) }
}

/// An ARP request (RFC 826) from eipsim's MAC on `port`: who has
/// `target`, tell `sender`. Sent when a frame must leave by a port whose
/// peer has not been heard from (see [`crate::engine::Engine::set_resolve`]).
pub(crate) fn request(port: Link, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mac = PORT_MACS[port.index()].0;
    let mut f = Vec::with_capacity(ETH + 28);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]);
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}
