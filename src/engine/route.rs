//! The instance route table: longest prefix, policy (`from`), metric, and
//! weighted multipath.

use crate::config::{Balance, EniId, Route, Topology};
use std::net::Ipv4Addr;

/// A route compiled for lookup, in the order lookups try them.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    /// Index into [`Topology::routes`].
    pub index: usize,
    dst_net: u32,
    dst_mask: u32,
    from_net: u32,
    from_mask: u32,
    /// The ENIs the route leads to (the topology's `via`).
    pub nexthops: Vec<EniId>,
    /// Running sums of the weights: nexthop `i` owns buckets
    /// `[cumulative[i-1], cumulative[i])`.
    pub cumulative: Vec<u32>,
    /// Hash or random: how a new flow picks one of several nexthops.
    pub balance: Balance,
}

impl CompiledRoute {
    #[inline]
    fn matches(&self, src: u32, dst: u32) -> bool {
        dst & self.dst_mask == self.dst_net && src & self.from_mask == self.from_net
    }

    /// The sum of the weights: the number of buckets (1 for a route with
    /// no nexthops, which a checked topology does not have).
    pub fn total_weight(&self) -> u32 {
        *self.cumulative.last().unwrap_or(&1)
    }

    /// The next hop owning bucket `draw % total weight`.
    #[inline]
    pub fn pick(&self, draw: u64) -> (EniId, u32) {
        let bucket = (draw % u64::from(self.total_weight())) as u32;
        let i = self.cumulative.partition_point(|&c| c <= bucket);
        (self.nexthops[i.min(self.nexthops.len() - 1)], bucket)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// The topology's routes, compiled and sorted so that the first match is
/// the one to use (see [`RouteTable::new`]).
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
}

impl RouteTable {
    /// Orders the routes so the first match is the one to use: longest
    /// destination prefix, then the most specific `from` (a route with a
    /// source selector beats one without, as an `ip rule` would), then the
    /// lowest metric, then file order.
    pub fn new(topo: &Topology) -> Self {
        let mut order: Vec<(usize, &Route)> = topo.routes.iter().enumerate().collect();
        order.sort_by_key(|(i, r)| {
            let from_len = r.from.map_or(-1, |f| i32::from(f.prefix()));
            (
                std::cmp::Reverse(r.dst.prefix()),
                std::cmp::Reverse(from_len),
                r.metric,
                *i,
            )
        });
        let routes = order
            .into_iter()
            .map(|(index, r)| {
                let (from_net, from_mask) = match r.from {
                    Some(f) => (f.network().to_bits(), mask(f.prefix())),
                    None => (0, 0),
                };
                let mut acc = 0;
                CompiledRoute {
                    index,
                    dst_net: r.dst.network().to_bits(),
                    dst_mask: mask(r.dst.prefix()),
                    from_net,
                    from_mask,
                    nexthops: r.via.clone(),
                    cumulative: r
                        .weights
                        .iter()
                        .map(|w| {
                            acc += w;
                            acc
                        })
                        .collect(),
                    balance: r.balance,
                }
            })
            .collect();
        RouteTable { routes }
    }

    /// The route for a packet from `src` to `dst`.
    #[inline]
    pub fn lookup(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Option<&CompiledRoute> {
        let (s, d) = (src.to_bits(), dst.to_bits());
        self.routes.iter().find(|r| r.matches(s, d))
    }

    /// Every route that matches, best first (for explanations).
    pub fn candidates(&self, src: Ipv4Addr, dst: Ipv4Addr) -> impl Iterator<Item = &CompiledRoute> {
        let (s, d) = (src.to_bits(), dst.to_bits());
        self.routes.iter().filter(move |r| r.matches(s, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(routes: &str) -> Topology {
        let text = format!(
            r#"
region = "cn-hangzhou"
vpc_cidr = "172.16.0.0/12"
[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]
[[eni]]
name = "eth1"
private_ips = ["172.16.1.10"]
{routes}"#
        );
        Topology::from_toml(&text).unwrap()
    }

    #[test]
    fn longest_prefix_then_metric() {
        let t = topo(
            r#"
[[route]]
dst = "198.51.100.0/24"
via = "eth1"
metric = 10
[[route]]
dst = "198.51.100.0/24"
via = "eth0"
metric = 5
[[route]]
dst = "198.51.100.128/25"
via = "eth1"
metric = 50
"#,
        );
        let rt = RouteTable::new(&t);
        let src = Ipv4Addr::new(172, 16, 0, 10);
        let r = rt.lookup(src, Ipv4Addr::new(198, 51, 100, 200)).unwrap();
        assert_eq!(t.routes[r.index].dst.prefix(), 25);
        let r = rt.lookup(src, Ipv4Addr::new(198, 51, 100, 1)).unwrap();
        assert_eq!(r.nexthops, vec![EniId(0)], "metric 5 beats metric 10");
        let r = rt.lookup(src, Ipv4Addr::new(192, 0, 2, 1)).unwrap();
        assert!(t.routes[r.index].implied);
        assert_eq!(
            rt.candidates(src, Ipv4Addr::new(198, 51, 100, 1)).count(),
            3
        );
    }

    #[test]
    fn from_selects_by_source() {
        let t = topo(
            r#"
[[route]]
dst = "0.0.0.0/0"
via = "eth0"
metric = 100
[[route]]
dst = "0.0.0.0/0"
from = "172.16.1.0/24"
via = "eth1"
metric = 200
"#,
        );
        let rt = RouteTable::new(&t);
        let d = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(
            rt.lookup(Ipv4Addr::new(172, 16, 1, 10), d)
                .unwrap()
                .nexthops,
            vec![EniId(1)]
        );
        assert_eq!(
            rt.lookup(Ipv4Addr::new(172, 16, 0, 10), d)
                .unwrap()
                .nexthops,
            vec![EniId(0)]
        );
    }

    #[test]
    fn weighted_buckets() {
        let t =
            topo("[[route]]\ndst = \"0.0.0.0/0\"\nvia = [\"eth0\", \"eth1\"]\nweights = [3, 1]\n");
        let rt = RouteTable::new(&t);
        let r = rt
            .lookup(Ipv4Addr::new(172, 16, 0, 10), Ipv4Addr::new(192, 0, 2, 1))
            .unwrap();
        let picks: Vec<EniId> = (0..4).map(|d| r.pick(d).0).collect();
        assert_eq!(picks, vec![EniId(0), EniId(0), EniId(0), EniId(1)]);
        assert_eq!(r.pick(7), (EniId(1), 3));
    }
}
