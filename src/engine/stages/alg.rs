//! Stage `alg`: an EIP in NAT mode is an application layer gateway that
//! does not support H.323, SIP, DNS, RTSP and TFTP (the seed document;
//! the topology's `[alg]` list and action). Cut-through EIPs and the VPC
//! path carry every protocol. Checked once per new flow.

use crate::config::{AlgAction, AlgProtocol, EipId, EniId};
use crate::engine::alg::Alg;
use crate::engine::counters::Counters;
use crate::engine::stages::ip4_input::Meta;
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{DropReason, Verdict};

/// The ALG decision for a new flow through `eni` (`nat`: the EIP is in
/// NAT mode): the unsupported protocol it carries, if forwarded anyway,
/// or `alg_unsupported`.
#[inline(always)]
pub(crate) fn check<T: Tracer>(
    t: &mut T,
    alg: &Alg,
    counters: &mut Counters,
    m: &Meta,
    eni: EniId,
    eip: Option<EipId>,
    nat: bool,
) -> Result<Option<AlgProtocol>, Verdict> {
    if !nat {
        trace!(
            t,
            Event::AlgNotApplied {
                eip: eip.is_some(),
                protocol: alg.recognise(m.proto, m.sport, m.dport),
            }
        );
        return Ok(None);
    }
    let Some(protocol) = alg.recognise(m.proto, m.sport, m.dport) else {
        trace!(
            t,
            Event::AlgSupported {
                proto: m.proto,
                sport: m.sport,
                dport: m.dport
            }
        );
        return Ok(None);
    };
    trace!(
        t,
        Event::AlgUnsupported {
            proto: m.proto,
            sport: m.sport,
            dport: m.dport,
            protocol,
            action: alg.action,
        }
    );
    match alg.action {
        AlgAction::Drop => {
            counters.alg[protocol as usize].dropped += 1;
            Err(Verdict::Dropped {
                reason: DropReason::AlgUnsupported,
                eni: Some(eni),
                eip,
            })
        }
        AlgAction::Forward => Ok(Some(protocol)),
    }
}
