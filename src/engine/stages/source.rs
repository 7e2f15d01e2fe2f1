//! Stage `source`: the instance may only send from its own addresses
//! (a private IP of an ENI or a cut-through EIP), and a packet leaving
//! through an ENI that does not have its source gets the ENI's default
//! source (like the kernel's source selection: the primary private IP, or
//! the cut-through EIP that replaced it).

use super::ip4_input::spoofed;
use crate::config::EniId;
use crate::engine::eip::AddressPlan;
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{DropReason, Verdict};
use std::net::Ipv4Addr;

/// The ENI owning `src`, or `spoofed_source`.
#[inline(always)]
pub(crate) fn owner<T: Tracer>(
    t: &mut T,
    plan: &AddressPlan,
    src: Ipv4Addr,
) -> Result<EniId, Verdict> {
    match plan.owner(src) {
        Some(eni) => {
            trace!(t, Event::SourceOwned { src, eni });
            Ok(eni)
        }
        None => match plan.detached(src) {
            Some(eni) => {
                trace!(t, Event::EniDetached { addr: src, eni });
                Err(Verdict::Dropped {
                    reason: DropReason::EniDetached,
                    eni: Some(eni),
                    eip: None,
                })
            }
            None => {
                trace!(t, spoofed(src, plan));
                Err(Verdict::drop(DropReason::SpoofedSource))
            }
        },
    }
}

/// The source the packet leaves `eni` with.
#[inline(always)]
pub(crate) fn select<T: Tracer>(
    t: &mut T,
    plan: &AddressPlan,
    eni: EniId,
    src: Ipv4Addr,
) -> Ipv4Addr {
    let to = plan.select_source(eni, src);
    trace!(
        t,
        if to == src {
            Event::SourceKept { src, eni }
        } else {
            Event::SourceSelected {
                src,
                eni,
                to,
                cut_through: plan.eni(eni).cut_through.is_some(),
            }
        }
    );
    to
}
