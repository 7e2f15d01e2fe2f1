//! Stage `bandwidth`: the EIP's policer (or its bandwidth plan's) takes the
//! packet's IP bytes, toward the Internet (after the flow and security
//! groups, as the EIP gateway comes after the ENI) or from it (before
//! them: `Engine::police_inbound`); the excess is dropped as
//! `bandwidth_exceeded`. VPC traffic carries no EIP and is not
//! limited. A later fragment is policed on its own once its first has
//! been forwarded (`frag.rs`).

use super::session::Xlate;
use crate::config::{EipId, EniId};
use crate::engine::policer::Policers;
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{Direction, DropReason, Link, Verdict};

/// Polices a packet received on `in_port` and decided as `x`, standing for
/// `bytes` IP bytes, at `now` (ns).
#[inline(always)]
pub(crate) fn police<T: Tracer>(
    t: &mut T,
    p: &Policers,
    x: &Xlate,
    in_port: Link,
    now: u64,
    bytes: u64,
) -> Result<(), Verdict> {
    let Some(eip) = x.eip else {
        return Ok(());
    };
    // Inbound packets were policed before the session (police_inbound).
    if x.dir != Direction::Outbound || x.out != Link::Internet || in_port != Link::Instance {
        return Ok(());
    }
    police_eip(t, p, eip, Some(x.eni), Direction::Outbound, now, bytes)
}

/// Polices `bytes` IP bytes of `eip` going `dir` at `now` (ns): a later
/// fragment, or the packet [`police`] classified.
#[inline(always)]
pub(crate) fn police_eip<T: Tracer>(
    t: &mut T,
    p: &Policers,
    eip: EipId,
    eni: Option<EniId>,
    dir: Direction,
    now: u64,
    bytes: u64,
) -> Result<(), Verdict> {
    let Some((limit, mbps)) = p.limit(eip, dir) else {
        return Ok(());
    };
    let admitted = p.admit(eip, dir, now, bytes);
    trace!(
        t,
        Event::Bandwidth {
            eip,
            dir,
            bytes,
            mbps,
            shared: limit.shared,
            admitted
        }
    );
    if admitted {
        Ok(())
    } else {
        Err(Verdict::Dropped {
            reason: DropReason::BandwidthExceeded,
            eni,
            eip: Some(eip),
        })
    }
}
