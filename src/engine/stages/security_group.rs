//! Stage `security_group`: the ENI's security groups judge a packet that
//! starts a connection (or whose session has been idle for more than
//! 910 s). Outbound it runs once the route has chosen the ENI, before the
//! EIP stage; inbound after the EIP stage, so rules see the private IP
//! (NAT) or the EIP (cut-through) as the destination and the remote host
//! as the peer. Replies, and ICMP errors about an allowed connection, hit
//! its flow and are not judged (security groups are stateful).

use crate::config::{EipId, EniId, RuleDirection};
use crate::engine::secgroup::{Packet, SecurityGroups};
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{DropReason, Verdict};

/// Judges `p` at `eni`; a denial is `security_group_denied` with the ENI
/// and `eip` (if known by then). Passes everything when the topology has
/// no security group.
#[inline(always)]
pub(crate) fn check<T: Tracer>(
    t: &mut T,
    sgs: &SecurityGroups,
    eni: EniId,
    eip: Option<EipId>,
    p: Packet,
) -> Result<(), Verdict> {
    if !sgs.on() {
        return Ok(());
    }
    judge(t, sgs, eni, eip, p)
}

#[inline(never)]
fn judge<T: Tracer>(
    t: &mut T,
    sgs: &SecurityGroups,
    eni: EniId,
    eip: Option<EipId>,
    p: Packet,
) -> Result<(), Verdict> {
    let judgement = sgs.judge(eni, &p);
    let allowed = judgement.allows(p.dir);
    trace!(
        t,
        Event::SecurityGroup {
            eni,
            packet: p,
            judgement,
            allowed
        }
    );
    if allowed {
        Ok(())
    } else {
        Err(Verdict::Dropped {
            reason: DropReason::SecurityGroupDenied,
            eni: Some(eni),
            eip,
        })
    }
}

/// The rule direction of a packet crossing the host path `outbound`.
pub(crate) fn direction(outbound: bool) -> RuleDirection {
    if outbound {
        RuleDirection::Egress
    } else {
        RuleDirection::Ingress
    }
}
