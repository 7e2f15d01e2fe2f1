//! A topology change applied to a running engine: the tables are rebuilt
//! from the new topology, and every flow in the table is kept or ended by
//! what changed under it (README "Changing the topology while traffic
//! flows" has the table):
//! - its ENI is detached: `eni_detached`;
//! - its EIP is unassociated (or now on another ENI): `eip_unassociated`;
//! - an address it uses is no longer its ENI's: `private_ip_unassigned`;
//! - it was opened by the instance and the route table now sends its
//!   packets out by another ENI (or nowhere): `route_changed` (the
//!   instance OS would send them by the new route, with a source the far
//!   end does not know).
//!
//! Everything else is kept: flows opened from outside keep leaving by the
//! ENI they came in on whatever the routes say, and flows on untouched
//! ENIs never notice.

use super::eip::AddressPlan;
use super::flow::{Flow, FlowId, Origin};
use super::policer::Policers;
use super::route::RouteTable;
use super::secgroup::SecurityGroups;
use super::{Engine, alg::Alg, hash::flow_hash};
use crate::config::{Balance, Topology};
use serde::Serialize;

/// Why a topology change ended a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Its ENI was detached from the instance.
    EniDetached,
    /// Its EIP was unassociated.
    EipUnassociated,
    /// An address it uses was unassigned from its ENI.
    PrivateIpUnassigned,
    /// The instance's route table now sends it elsewhere.
    RouteChanged,
}

impl EndReason {
    /// The name in events.jsonl.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::EniDetached => "eni_detached",
            EndReason::EipUnassociated => "eip_unassociated",
            EndReason::PrivateIpUnassigned => "private_ip_unassigned",
            EndReason::RouteChanged => "route_changed",
        }
    }
}

/// A flow a topology change ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Its id (free for reuse from now on).
    pub id: FlowId,
    /// The flow as it was.
    pub flow: Flow,
    /// Why.
    pub reason: EndReason,
}

impl Engine {
    /// Makes `topo` the engine's topology (normally
    /// [`Topology::apply`]'s result, so that ENI and EIP ids keep their
    /// meaning) and ends the flows it no longer carries. Counters go on;
    /// new EIPs get counters of their own. Bandwidth buckets are kept
    /// unless an EIP's limits or the plans changed.
    pub fn apply(&mut self, topo: Topology, now: u64) -> Vec<Ended> {
        if now > self.now {
            self.now = now;
        }
        if !Policers::same_limits(&topo, &self.topo) {
            self.policers = Policers::new(&topo);
        }
        self.plan = AddressPlan::new(&topo);
        self.routes = RouteTable::new(&topo);
        self.alg = Alg::new(&topo.alg);
        self.sgs = SecurityGroups::new(&topo);
        self.counters
            .eips
            .resize(topo.eips.len(), Default::default());
        self.counters
            .bandwidth_exceeded
            .resize(topo.eips.len(), [0; 2]);
        self.topo = topo;
        // Flows idle past their timeout are gone already, whatever changed.
        self.flows.sweep(self.now, usize::MAX);
        let ended: Vec<Ended> = self
            .flows
            .iter()
            .filter_map(|(id, f)| {
                self.fate(f).map(|reason| Ended {
                    id,
                    flow: f.clone(),
                    reason,
                })
            })
            .collect();
        for e in &ended {
            self.flows.end(e.id);
        }
        // A datagram in flight follows its first fragment's decision only
        // while that decision still holds.
        let plan = &self.plan;
        let topo = &self.topo;
        self.frags.forget_if(|d| {
            let flow_ended = d
                .flow
                .is_some_and(|(id, _)| ended.iter().any(|e| e.id == id));
            let eni_gone = d.verdict.eni().is_some_and(|e| !topo.eni(e).attached);
            let eip_gone = d.verdict.eip().is_some_and(|e| {
                let x = topo.eip(e);
                !x.associated || plan.eip(x.address).is_none()
            });
            flow_ended || eni_gone || eip_gone
        });
        ended
    }

    /// Makes the engine police with `p` (live mode: buckets the control
    /// thread made once for every worker after a change of limits).
    pub fn set_policers(&mut self, p: Policers) {
        self.policers = p;
    }

    /// Counts an event's outcome (applied, with the flows it ended, or
    /// refused) in [`crate::engine::Counters::events`].
    pub fn count_event(&mut self, result: &Result<Vec<Ended>, crate::config::Refusal>) {
        let e = &mut self.counters.events;
        match result {
            Ok(ended) => {
                e.applied += 1;
                e.flows_ended += ended.len() as u64;
            }
            Err(_) => e.refused += 1,
        }
    }

    /// Why flow `f` cannot go on under the engine's (new) topology.
    fn fate(&self, f: &Flow) -> Option<EndReason> {
        let eni = self.topo.eni(f.eni);
        if !eni.attached {
            return Some(EndReason::EniDetached);
        }
        if let Some(id) = f.eip {
            let e = self.topo.eip(id);
            if !e.associated || e.eni != f.eni {
                return Some(EndReason::EipUnassociated);
            }
        }
        if self.plan.owner(f.eni_addr) != Some(f.eni) || self.plan.owner(f.inst_addr).is_none() {
            return Some(EndReason::PrivateIpUnassigned);
        }
        if f.origin == Origin::Instance && !self.route_keeps(f) {
            return Some(EndReason::RouteChanged);
        }
        None
    }

    /// Whether the route table still sends the instance's flow `f` out by
    /// its ENI (a random route: if its ENI is still a next hop).
    fn route_keeps(&self, f: &Flow) -> bool {
        let Some(r) = self.routes.lookup(f.inst_addr, f.remote) else {
            return false;
        };
        if r.nexthops.len() == 1 {
            return r.nexthops[0] == f.eni;
        }
        match r.balance {
            Balance::Random => r.nexthops.contains(&f.eni),
            Balance::Hash => {
                let h = flow_hash(
                    self.topo.hash_seed,
                    f.proto,
                    f.inst_addr.to_bits(),
                    f.inst_port,
                    f.remote.to_bits(),
                    f.remote_port,
                );
                r.pick(h).0 == f.eni
            }
        }
    }
}
