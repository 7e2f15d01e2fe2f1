//! Stage `cloud`: rules the cloud applies to a new outbound connection
//! whatever the instance's configuration says (README "The cloud's own
//! rules" cites them):
//! - TCP to port 25 on the Internet is blocked unless `[cloud]
//!   smtp_port_25 = "allowed"` (Alibaba Cloud: "TCP port 25 is restricted
//!   by default"; security group rules cannot open it);
//! - since 2026-04-23 an EIP in cut-through mode cannot reach the reserved
//!   100.64.0.0/10 ("Security hardening for EIP cut-through mode access to
//!   the 100.64.0.0/10 reserved CIDR block").

use super::eip::Egress;
use crate::config::{CUT_THROUGH_UNREACHABLE, CloudRules, EniId, Smtp};
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{DropReason, Link, Verdict};
use crate::wire::ipv4::PROTO_TCP;
use std::net::Ipv4Addr;

/// Checks an outbound packet that leaves by `eni` as decided in `e`.
#[inline(always)]
pub(crate) fn outbound<T: Tracer>(
    t: &mut T,
    rules: &CloudRules,
    eni: EniId,
    e: &Egress,
    proto: u8,
    dst: Ipv4Addr,
    dport: u16,
) -> Result<(), Verdict> {
    if e.out != Link::Internet {
        return Ok(());
    }
    let dropped = |reason| {
        Err(Verdict::Dropped {
            reason,
            eni: Some(eni),
            eip: e.eip,
        })
    };
    if proto == PROTO_TCP && dport == 25 && rules.smtp_port_25 == Smtp::Blocked {
        trace!(t, Event::SmtpBlocked { dst });
        return dropped(DropReason::SmtpPort25Blocked);
    }
    if let Some(eip) = e.eip
        && !e.nat
        && CUT_THROUGH_UNREACHABLE.contains(dst)
    {
        trace!(t, Event::CutThroughReserved { dst, eip });
        return dropped(DropReason::CutThroughReservedCidr);
    }
    Ok(())
}
