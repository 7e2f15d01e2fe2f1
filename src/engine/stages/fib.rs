//! Stage `fib`: the instance route table lookup for a new flow (longest
//! prefix, `from`, metric) and, for a route with several nexthops, the
//! ECMP choice: a symmetric 5-tuple hash or a seeded random draw, weighted
//! by buckets.

use crate::config::{Balance, EniId};
use crate::engine::hash::{SplitMix64, flow_hash};
use crate::engine::route::RouteTable;
use crate::engine::trace::{Event, Tracer, trace};
use std::net::Ipv4Addr;

/// The 5-tuple a route decision is made for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuple {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// Why the route table is asked.
#[derive(Debug)]
pub(crate) enum Ask<'a> {
    /// For a new flow: recorded in the trace, and a random route draws
    /// from this source.
    NewFlow(&'a mut SplitMix64),
    /// Where a reply would go (a stateless inbound packet): nothing is
    /// recorded, and with no random source at hand nothing can be drawn;
    /// a random route answers its first nexthop, marked random.
    Reply,
}

/// The egress ENI for `tu`, and whether it was a random draw (which only a
/// flow can remember). `None`: no route matches.
#[inline(always)]
pub(crate) fn nexthop<T: Tracer>(
    t: &mut T,
    routes: &RouteTable,
    seed: u64,
    tu: &Tuple,
    mut ask: Ask,
) -> Option<(EniId, bool)> {
    let new_flow = matches!(ask, Ask::NewFlow(_));
    if new_flow {
        trace!(
            t,
            Event::Route {
                src: tu.src,
                dst: tu.dst,
                candidates: routes.candidates(tu.src, tu.dst).map(|r| r.index).collect(),
            }
        );
    }
    let r = routes.lookup(tu.src, tu.dst)?;
    if r.nexthops.len() == 1 {
        return Some((r.nexthops[0], false));
    }
    // (ENI, bucket, the value that chose it, random)
    let (eni, bucket, value, random) = match (r.balance, &mut ask) {
        (Balance::Hash, _) => {
            let h = flow_hash(
                seed,
                tu.proto,
                tu.src.to_bits(),
                tu.sport,
                tu.dst.to_bits(),
                tu.dport,
            );
            let (e, b) = r.pick(h);
            (e, b, h, false)
        }
        (Balance::Random, Ask::NewFlow(rng)) => {
            let d = rng.next_u64();
            let (e, b) = r.pick(d);
            (e, b, d, true)
        }
        (Balance::Random, Ask::Reply) => (r.nexthops[0], 0, 0, true),
    };
    if new_flow {
        trace!(
            t,
            Event::Balance {
                balance: r.balance,
                seed,
                value,
                total: r.total_weight(),
                bucket,
                nexthops: r
                    .nexthops
                    .iter()
                    .copied()
                    .zip(r.cumulative.iter().copied())
                    .collect(),
                chosen: eni,
            }
        );
    }
    Some((eni, random))
}
