//! Stage `bandwidth`: the EIP's policer (or its bandwidth plan's) takes the
//! packet's IP bytes, toward the Internet or from it; the excess is
//! dropped as `bandwidth_exceeded`. VPC traffic carries no EIP and is not
//! limited. Later fragments follow their first fragment's fate.

use super::session::Xlate;
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
    let dir = match x.dir {
        Direction::Outbound if x.out == Link::Internet => Direction::Outbound,
        Direction::Inbound if in_port == Link::Internet => Direction::Inbound,
        _ => return Ok(()),
    };
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
            eni: Some(x.eni),
            eip: Some(eip),
        })
    }
}
