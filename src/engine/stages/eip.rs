//! Stage `eip`: where a packet meets the EIP association. Outbound: a VPC
//! destination keeps the private source (if the ENI still has private
//! networking), anything else needs the source's EIP (NAT: rewritten to
//! it; cut-through: it already is the source). Inbound: the destination
//! must be an EIP (from the Internet) or a private IP with private
//! networking (from the VPC). The rules are the seed document's table.

use crate::config::{EipId, EniId, Topology};
use crate::engine::eip::{AddressPlan, EipBinding};
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{DropReason, Link, Verdict};
use std::net::Ipv4Addr;

/// Where an outbound packet goes and the address the far side sees.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Egress {
    pub out: Link,
    pub eip: Option<EipId>,
    /// The source as the far side sees it.
    pub pub_addr: Ipv4Addr,
    /// NAT mode: the source is rewritten to the EIP.
    pub nat: bool,
}

/// The VPC or EIP decision for a packet leaving `eni` with source
/// `eni_addr` towards `dst`.
#[inline(always)]
pub(crate) fn outbound<T: Tracer>(
    t: &mut T,
    topo: &Topology,
    plan: &AddressPlan,
    eni: EniId,
    eni_addr: Ipv4Addr,
    dst: Ipv4Addr,
) -> Result<Egress, Verdict> {
    let dropped = |reason, eip| Verdict::Dropped {
        reason,
        eni: Some(eni),
        eip,
    };
    if topo.vpc_cidr.contains(dst) {
        if let Some(ct) = plan.eni(eni).cut_through {
            // The seed: private network features are unavailable.
            trace!(t, Event::VpcNoPrivate { dst, eni });
            return Err(dropped(DropReason::CutThroughNoPrivate, Some(ct)));
        }
        trace!(t, Event::Vpc { dst, src: eni_addr });
        return Ok(Egress {
            out: Link::Vpc,
            eip: None,
            pub_addr: eni_addr,
            nat: false,
        });
    }
    match plan.binding(eni, eni_addr, topo) {
        EipBinding::Nat(id, a) => {
            trace!(
                t,
                Event::EipNat {
                    eip: a,
                    private: eni_addr
                }
            );
            Ok(Egress {
                out: Link::Internet,
                eip: Some(id),
                pub_addr: a,
                nat: true,
            })
        }
        EipBinding::CutThrough(id) => {
            trace!(
                t,
                Event::EipCutThrough {
                    addr: eni_addr,
                    eni
                }
            );
            Ok(Egress {
                out: Link::Internet,
                eip: Some(id),
                pub_addr: eni_addr,
                nat: false,
            })
        }
        EipBinding::None => {
            trace!(t, Event::EipNone { addr: eni_addr });
            Err(dropped(DropReason::NoEip, None))
        }
    }
}

/// The destination check of a new inbound flow: (ENI, EIP, the address
/// the ENI carries). NAT maps the EIP to its private IP; cut-through
/// delivers the EIP itself.
#[inline(always)]
pub(crate) fn inbound<T: Tracer>(
    t: &mut T,
    topo: &Topology,
    plan: &AddressPlan,
    port: Link,
    dst: Ipv4Addr,
) -> Result<(EniId, Option<EipId>, Ipv4Addr), Verdict> {
    let found = if port == Link::Internet {
        plan.eip(dst).map(|id| {
            let e = topo.eip(id);
            let nat = plan.eni(e.eni).cut_through != Some(id);
            (e.eni, Some(id), if nat { e.private_ip } else { dst })
        })
    } else {
        plan.vpc_owner(dst).map(|eni| (eni, None, dst))
    };
    trace!(t, Event::LocalDestination { port, dst, found });
    if found.is_none()
        && let Some(eni) = plan.detached(dst)
    {
        trace!(t, Event::EniDetached { addr: dst, eni });
        return Err(Verdict::Dropped {
            reason: DropReason::EniDetached,
            eni: Some(eni),
            eip: None,
        });
    }
    found.ok_or_else(|| {
        Verdict::drop(if port == Link::Internet {
            DropReason::UnknownEip
        } else {
            DropReason::NotLocal
        })
    })
}
