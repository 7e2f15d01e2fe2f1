//! The EIP stage and the address plan behind it: which addresses the
//! instance owns, which EIP maps to which private IP, and which ENI a
//! given address belongs to. Built once from the topology.

use crate::config::{AssociationMode, EipId, EniId, Topology};
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;

/// Per-ENI facts the data path needs without walking the topology.
#[derive(Debug, Clone)]
pub struct EniPlan {
    /// The addresses the OS shows on the ENI (see
    /// [`Topology::os_addresses`]).
    pub addresses: Vec<Ipv4Addr>,
    /// The source address used when the packet's own is not the ENI's:
    /// the primary private IP, or the cut-through EIP.
    pub default_source: Ipv4Addr,
    /// The cut-through EIP, if the ENI has one (then it has no private
    /// network).
    pub cut_through: Option<EipId>,
}

/// The topology's addresses, compiled into the maps the data path
/// consults: who owns an address, which EIP an address is, which EIP a
/// private IP is NATed to.
#[derive(Debug, Clone)]
pub struct AddressPlan {
    /// Per ENI, indexed by [`EniId`].
    pub enis: Vec<EniPlan>,
    /// EIP address -> EIP.
    eip_by_addr: FxHashMap<Ipv4Addr, EipId>,
    /// Private IP -> its NAT EIP.
    nat_by_private: FxHashMap<Ipv4Addr, EipId>,
    /// Every address the instance may send from -> the ENI it belongs to.
    owned: FxHashMap<Ipv4Addr, EniId>,
    /// Bit `a & 63` set for every EIP `a`: rules out most addresses
    /// without a lookup (the hairpin check runs on every outbound packet).
    eip_bits: u64,
    /// The private IPs and EIPs of ENIs detached from the instance -> the
    /// ENI (for `eni_detached`, rather than an unknown address).
    detached: FxHashMap<Ipv4Addr, EniId>,
}

/// What the EIP stage makes of an outbound packet's (ENI, source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EipBinding {
    /// NAT: the source becomes the EIP.
    Nat(EipId, Ipv4Addr),
    /// Cut-through: the source already is the EIP.
    CutThrough(EipId),
    /// The private IP has no EIP.
    None,
}

impl AddressPlan {
    /// The plan of a checked topology: private IPs and cut-through EIPs
    /// are owned by their ENI; NAT EIPs map from their private IP.
    pub fn new(topo: &Topology) -> Self {
        let mut plan = AddressPlan {
            enis: Vec::new(),
            eip_by_addr: FxHashMap::default(),
            eip_bits: 0,
            nat_by_private: FxHashMap::default(),
            owned: FxHashMap::default(),
            detached: FxHashMap::default(),
        };
        for (i, eni) in topo.enis.iter().enumerate() {
            let id = EniId(i as u16);
            let cut_through = topo.cut_through_eip(id);
            plan.enis.push(EniPlan {
                addresses: topo.os_addresses(id),
                default_source: match cut_through {
                    Some(ct) => topo.eip(ct).address,
                    None => eni.primary_ip(),
                },
                cut_through,
            });
            for &ip in &eni.private_ips {
                match eni.attached {
                    true => plan.owned.insert(ip, id),
                    false => plan.detached.insert(ip, id),
                };
            }
        }
        for (i, eip) in topo.eips.iter().enumerate() {
            let id = EipId(i as u16);
            if !eip.associated {
                continue;
            }
            if !topo.eni(eip.eni).attached {
                plan.detached.insert(eip.address, eip.eni);
                continue;
            }
            plan.eip_by_addr.insert(eip.address, id);
            plan.eip_bits |= 1 << (eip.address.to_bits() & 63);
            match eip.mode {
                AssociationMode::Nat => {
                    plan.nat_by_private.insert(eip.private_ip, id);
                }
                AssociationMode::CutThrough => {
                    plan.owned.insert(eip.address, eip.eni);
                }
            }
        }
        plan
    }

    /// The detached ENI an address (private IP or EIP) belongs to.
    pub fn detached(&self, a: Ipv4Addr) -> Option<EniId> {
        self.detached.get(&a).copied()
    }

    /// The ENI owning an address the instance may send from.
    #[inline]
    pub fn owner(&self, a: Ipv4Addr) -> Option<EniId> {
        self.owned.get(&a).copied()
    }

    /// The EIP whose public address is `a` (either mode); `None` if `a`
    /// is no EIP of the instance.
    #[inline]
    pub fn eip(&self, a: Ipv4Addr) -> Option<EipId> {
        if self.eip_bits & (1 << (a.to_bits() & 63)) == 0 {
            return None;
        }
        self.eip_by_addr.get(&a).copied()
    }

    /// The plan of one ENI. Panics on an ID not from this topology.
    pub fn eni(&self, id: EniId) -> &EniPlan {
        &self.enis[usize::from(id.0)]
    }

    /// A private IP served on the VPC port: one of an ENI that still has
    /// private networking (no cut-through EIP).
    #[inline]
    pub fn vpc_owner(&self, a: Ipv4Addr) -> Option<EniId> {
        self.owner(a)
            .filter(|&id| self.eni(id).cut_through.is_none() && self.eni(id).addresses.contains(&a))
    }

    /// Source selection: the packet's own source if it is one of the ENI's
    /// addresses, else the ENI's default source.
    #[inline]
    pub fn select_source(&self, eni: EniId, src: Ipv4Addr) -> Ipv4Addr {
        let p = self.eni(eni);
        if p.addresses.contains(&src) {
            src
        } else {
            p.default_source
        }
    }

    /// The EIP stage for a source address leaving through `eni`.
    #[inline]
    pub fn binding(&self, eni: EniId, src: Ipv4Addr, topo: &Topology) -> EipBinding {
        if let Some(ct) = self.eni(eni).cut_through {
            return EipBinding::CutThrough(ct);
        }
        match self.nat_by_private.get(&src) {
            Some(&id) if topo.eip(id).eni == eni => EipBinding::Nat(id, topo.eip(id).address),
            _ => EipBinding::None,
        }
    }
}
