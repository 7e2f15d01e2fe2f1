//! Stage `session`: the flow table for both directions, written once.
//!
//! A packet either hits a flow (its translation is the flow's), or misses
//! and is admitted as a new flow: outbound through the source check, the
//! FIB, source selection and the EIP stage; inbound through the
//! destination check. Both then share the rest: the new flow's other key
//! must be free (rule 5, source selection, before rule 8, ALG), the ALG
//! stage, and creation, or the table-full policy (forward without state
//! only when replies can find their way back without the flow).

use super::fib::{self, Ask, Tuple};
use super::ip4_input::Meta;
use super::security_group::{self, direction};
use super::{alg, cloud, eip, source};
use crate::config::{AlgProtocol, EipId, EniId};
use crate::engine::flow::{Flow, FlowId, Origin};
use crate::engine::secgroup::{Packet, SESSION_IDLE_NS};
use crate::engine::trace::{Event, Tracer, trace};
use crate::engine::{Direction, DropReason, Engine, Link, Verdict};
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use std::net::Ipv4Addr;

/// A translation decided for one packet: the instance endpoint's three
/// names (see [`Flow`]) and where the packet goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Xlate {
    pub out: Link,
    pub eni: EniId,
    pub eip: Option<EipId>,
    /// Outbound: the source is rewritten; inbound: the destination.
    pub dir: Direction,
    pub inst_addr: Ipv4Addr,
    pub eni_addr: Ipv4Addr,
    pub pub_addr: Ipv4Addr,
    pub alg: Option<AlgProtocol>,
    /// The flow, if the packet has one (not when forwarded statelessly).
    pub flow: Option<FlowId>,
}

impl Xlate {
    /// The translation `f` gives a packet going `dir`.
    #[inline(always)]
    fn of(f: &Flow, id: Option<FlowId>, dir: Direction) -> Xlate {
        Xlate {
            out: match dir {
                Direction::Outbound => f.out_port,
                Direction::Inbound => Link::Instance,
            },
            eni: f.eni,
            eip: f.eip,
            dir,
            inst_addr: f.inst_addr,
            eni_addr: f.eni_addr,
            pub_addr: f.pub_addr,
            alg: f.alg,
            flow: id,
        }
    }
}

/// A new flow, admitted by its direction's checks but not yet created.
struct Admitted {
    flow: Flow,
    /// The EIP is in NAT mode (the ALG applies).
    nat: bool,
    /// Its ENI was a random draw, which only the flow remembers.
    random: bool,
}

impl Engine {
    /// Looks up or creates the flow of a packet received on `port`.
    #[inline(always)]
    pub(crate) fn session<T: Tracer>(
        &mut self,
        t: &mut T,
        m: &Meta,
        port: Link,
    ) -> Result<Xlate, Verdict> {
        let dir = Direction::of(port);
        // For an ICMP error: the reverse of the quoted tuple.
        let key = m.flow_key(port);
        if let Some(id) = self.flows.lookup(&key, self.now) {
            // An error must come from the address the quoted packet went
            // to (outbound), or be sent to the address it came from
            // (inbound); a plain packet's key implies that.
            let quoted = |f: &Flow| match dir {
                Direction::Outbound => (m.src(), f.inst_addr),
                Direction::Inbound => (m.dst(), f.pub_addr),
            };
            if m.quote.is_none() || {
                let (addr, flow_addr) = quoted(self.flows.get(id));
                addr == flow_addr
            } {
                if self.sgs.on()
                    && self.now.saturating_sub(self.flows.last_seen(id)) > SESSION_IDLE_NS
                {
                    self.rejudge(t, id, dir)?;
                }
                let (n, bytes) = self.flow_units(m.ip_len);
                self.flows.touch_n(id, self.now, dir, n, bytes, m.tcp_flags);
                let f = self.flows.get(id);
                trace!(
                    t,
                    Event::FlowHit {
                        id,
                        flow: f.clone()
                    }
                );
                if T::ON
                    && let Some(protocol) = f.alg
                {
                    t.record(Event::AlgFlow { id, protocol });
                }
                return Ok(Xlate::of(f, Some(id), dir));
            }
            let f = self.flows.get(id);
            let (addr, flow_addr) = quoted(f);
            trace!(
                t,
                Event::FlowQuoteMismatch {
                    id,
                    flow: f.clone(),
                    dir,
                    addr,
                    flow_addr,
                }
            );
        }
        trace!(
            t,
            Event::FlowMiss {
                key,
                quote: m.quote.is_some()
            }
        );
        let new = match dir {
            Direction::Outbound => self.admit_outbound(t, m)?,
            Direction::Inbound => self.admit_inbound(t, m, port)?,
        };
        self.create(t, m, dir, new)
    }

    /// A new flow from the instance: source owned, route, source
    /// selection, VPC or EIP.
    #[inline(always)]
    fn admit_outbound<T: Tracer>(&mut self, t: &mut T, m: &Meta) -> Result<Admitted, Verdict> {
        // A flow hit proves the source is owned (flows are only made for
        // owned sources), so only a miss pays for this lookup.
        source::owner(t, &self.plan, m.src())?;
        if m.quote.is_some() {
            return Err(Verdict::drop(DropReason::IcmpErrorNoFlow));
        }
        let tu = Tuple {
            proto: m.proto,
            src: m.src(),
            dst: m.dst(),
            sport: m.sport,
            dport: m.dport,
        };
        let seed = self.topo.hash_seed;
        let Some((eni, random)) =
            fib::nexthop(t, &self.routes, seed, &tu, Ask::NewFlow(&mut self.rng))
        else {
            return Err(Verdict::drop(DropReason::NoRoute));
        };
        let eni_addr = source::select(t, &self.plan, eni, m.src());
        let via = if self.topo.vpc_cidr.contains(m.dst()) {
            Link::Vpc
        } else {
            Link::Internet
        };
        let sg = Packet {
            dir: direction(true),
            proto: m.proto,
            peer: m.dst(),
            port: l4_port(m.proto, m.dport),
            via,
        };
        security_group::check(t, &self.sgs, eni, None, sg)?;
        let e = eip::outbound(t, &self.topo, &self.plan, eni, eni_addr, m.dst())?;
        cloud::outbound(t, &self.topo.cloud, eni, &e, m.proto, m.dst(), m.dport)?;
        let flow = Flow::new(
            m.proto,
            m.src(),
            eni_addr,
            e.pub_addr,
            m.dst(),
            m.sport,
            m.dport,
            e.out,
            eni,
            e.eip,
            Origin::Instance,
        );
        Ok(Admitted {
            flow,
            nat: e.nat,
            random,
        })
    }

    /// A new flow from the Internet or the VPC: the destination must be
    /// local.
    #[inline(always)]
    fn admit_inbound<T: Tracer>(
        &mut self,
        t: &mut T,
        m: &Meta,
        port: Link,
    ) -> Result<Admitted, Verdict> {
        let (eni, eip, eni_addr) = eip::inbound(t, &self.topo, &self.plan, port, m.dst())?;
        if m.quote.is_some() {
            return Err(Verdict::drop(DropReason::IcmpErrorNoFlow));
        }
        let sg = Packet {
            dir: direction(false),
            proto: m.proto,
            peer: m.src(),
            port: l4_port(m.proto, m.dport),
            via: port,
        };
        security_group::check(t, &self.sgs, eni, eip, sg)?;
        let flow = Flow::new(
            m.proto,
            eni_addr,
            eni_addr,
            m.dst(),
            m.src(),
            m.dport,
            m.sport,
            port,
            eni,
            eip,
            Origin::Outside,
        );
        Ok(Admitted {
            flow,
            nat: eip.is_some() && eni_addr != m.dst(),
            random: false,
        })
    }

    /// The steps every new flow shares: its other key free, the ALG, then
    /// creation or the table-full policy.
    #[inline(always)]
    fn create<T: Tracer>(
        &mut self,
        t: &mut T,
        m: &Meta,
        dir: Direction,
        new: Admitted,
    ) -> Result<Xlate, Verdict> {
        let Admitted {
            mut flow,
            nat,
            random,
        } = new;
        let (eni, eip) = (flow.eni, flow.eip);
        let dropped = |reason| Verdict::Dropped {
            reason,
            eni: Some(eni),
            eip,
        };
        // The key the packet was not looked up by: after source selection
        // (outbound) or for the instance's side (inbound) it may be taken.
        let other = match dir {
            Direction::Outbound => flow.outside_key(),
            Direction::Inbound => flow.inside_key(),
        };
        if self.flows.key_taken(&other, self.now) {
            trace!(t, Event::FlowKeyTaken { dir, key: other });
            return Err(dropped(DropReason::SourceConflict));
        }
        flow.alg = alg::check(t, &self.alg, &mut self.counters, m, eni, eip, nat)?;
        let mut x = Xlate::of(&flow, None, dir);
        if self.flows.make_room(self.now) {
            let id = self.flows.insert(flow, self.now);
            let (n, bytes) = self.flow_units(m.ip_len);
            self.flows.touch_n(id, self.now, dir, n, bytes, m.tcp_flags);
            x.flow = Some(id);
            trace!(
                t,
                Event::FlowCreated {
                    id,
                    flow: self.flows.get(id).clone(),
                    dir
                }
            );
            return Ok(x);
        }
        let stateless = self.stateless_ok(&x, m, random);
        trace!(t, Event::FlowTableFull { dir, stateless });
        if stateless {
            Ok(x)
        } else {
            Err(dropped(DropReason::FlowTableFull))
        }
    }

    /// A packet of flow `id` whose security group session has been idle
    /// for more than 910 s: judged again, as the connection's packet going
    /// `dir` (an ICMP error about it counts as the connection's).
    #[cold]
    #[inline(never)]
    fn rejudge<T: Tracer>(&mut self, t: &mut T, id: FlowId, dir: Direction) -> Result<(), Verdict> {
        let idle_ns = self.now.saturating_sub(self.flows.last_seen(id));
        trace!(t, Event::SecurityGroupSessionExpired { id, idle_ns });
        let f = self.flows.get(id);
        let port = match dir {
            Direction::Outbound => f.remote_port,
            Direction::Inbound => f.inst_port,
        };
        let sg = Packet {
            dir: direction(dir.is_outbound()),
            proto: f.proto,
            peer: f.remote,
            port: l4_port(f.proto, port),
            via: f.out_port,
        };
        security_group::check(t, &self.sgs, f.eni, f.eip, sg)
    }

    /// With the table full, may this packet go without a flow? Never with
    /// security groups (their state is the flow); otherwise only if
    /// replies map back without it: outbound, when its source was kept and
    /// no random draw chose its ENI (the static NAT maps replies back);
    /// inbound, when the route table sends replies back through the same
    /// ENI with the same source.
    fn stateless_ok(&self, x: &Xlate, m: &Meta, random: bool) -> bool {
        // Security groups are stateful: without a flow the reply would be
        // judged as a new connection, and a basic group's default drops it.
        if self.sgs.on() {
            return false;
        }
        match x.dir {
            Direction::Outbound => x.eni_addr == m.src() && !random,
            Direction::Inbound => {
                let reply = Tuple {
                    proto: m.proto,
                    src: x.eni_addr,
                    dst: m.src(),
                    sport: m.dport,
                    dport: m.sport,
                };
                let seed = self.topo.hash_seed;
                let back = fib::nexthop(
                    &mut crate::engine::trace::Off,
                    &self.routes,
                    seed,
                    &reply,
                    Ask::Reply,
                );
                matches!(back, Some((e, false)) if e == x.eni)
                    && self.plan.select_source(x.eni, x.eni_addr) == x.eni_addr
            }
        }
    }
}

/// The TCP/UDP port security group rules look at; `None` for other
/// protocols.
#[inline(always)]
fn l4_port(proto: u8, port: u16) -> Option<u16> {
    matches!(proto, PROTO_TCP | PROTO_UDP).then_some(port)
}
