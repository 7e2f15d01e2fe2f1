//! Bandwidth policers: the EIPs' peak bandwidth, each way, and the shared
//! limits of Internet Shared Bandwidth plans.
//!
//! A policer is a token bucket on IP bytes (the cloud bills and limits IP
//! traffic), run as the equivalent GCRA (the "virtual scheduling" form of
//! ITU-T I.371): one theoretical arrival time per bucket, advanced by each
//! conforming packet's cost. That is one `u64`, so the live mode's workers
//! share one bucket per EIP with a compare-and-swap, without a lock, and
//! a limit holds for the EIP however its flows are spread over workers.
//! Time is the packet clock, so replay stays deterministic.
//!
//! The burst (bytes a bucket holds when full) is not documented by the
//! cloud; eipsim uses 500 ms at the rate, at least 64 KiB (one largest IP
//! packet, so a GSO packet is never refused for its size alone). Why
//! 500 ms: a TCP sender meets a policer at full speed and loses whole
//! windows at once; with a 100 ms burst a transfer through 10 Mbit/s got
//! 4.5-4.8 Mbit/s (retransmission timeouts idle the link), with 500 ms it
//! settles at the rate (tests/live.rs `a_10_mbit_eip_limits_a_tcp_transfer`).
//! Router vendors advise bursts of this order for TCP (Cisco: 1.5 s).

use crate::config::{EipId, Topology};
use crate::engine::Direction;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The least burst, bytes: the largest IPv4 packet fits.
pub const MIN_BURST_BYTES: u64 = 64 * 1024;

/// The burst for a rate, bytes: 500 ms of it, at least
/// [`MIN_BURST_BYTES`].
pub fn burst_bytes(mbps: u32) -> u64 {
    // 1 Mbit/s is 125,000 bytes a second, 62,500 per 500 ms.
    (u64::from(mbps) * 62_500).max(MIN_BURST_BYTES)
}

/// One bucket.
#[derive(Debug)]
pub struct Bucket {
    /// The theoretical arrival time, ns on the packet clock: when the
    /// bucket is full again.
    tat: AtomicU64,
    /// The rate, Mbit/s.
    mbps: u32,
    /// The burst, in ns of the rate.
    tau: u64,
}

impl Bucket {
    /// A full bucket for `mbps`.
    pub fn new(mbps: u32) -> Bucket {
        let mbps = mbps.max(1);
        Bucket {
            tat: AtomicU64::new(0),
            mbps,
            tau: Self::cost_at(burst_bytes(mbps), mbps),
        }
    }

    /// ns of the rate that `bytes` take: 8,000 ns per byte at 1 Mbit/s.
    fn cost_at(bytes: u64, mbps: u32) -> u64 {
        (bytes * 8_000).div_ceil(u64::from(mbps))
    }

    /// The rate, Mbit/s.
    pub fn mbps(&self) -> u32 {
        self.mbps
    }

    /// Takes `bytes` at `now` (ns) if the bucket holds them; false (and
    /// nothing taken) if not.
    pub fn admit(&self, now: u64, bytes: u64) -> bool {
        let cost = Self::cost_at(bytes, self.mbps);
        let mut cur = self.tat.load(Ordering::Relaxed);
        loop {
            let next = cur.max(now).saturating_add(cost);
            if next - now > self.tau {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// Which bucket an EIP uses each way, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Index into the buckets.
    bucket: u32,
    /// From the EIP's plan (true) or its own keys.
    pub shared: bool,
}

/// Every EIP's buckets. Cloning shares the buckets (live mode's workers).
#[derive(Debug, Clone, Default)]
pub struct Policers {
    /// `[outbound, inbound]` per EIP, indexed by [`EipId`].
    limits: Vec<[Option<Limit>; 2]>,
    buckets: Arc<[Bucket]>,
}

impl Policers {
    /// The buckets of `topo`'s EIPs and plans, full.
    pub fn new(topo: &Topology) -> Self {
        let mut buckets = Vec::new();
        let mut add = |mbps: u32| {
            buckets.push(Bucket::new(mbps));
            (buckets.len() - 1) as u32
        };
        // Each plan: one bucket each way (the plan's inbound limit equals
        // its bandwidth).
        let plans: Vec<[u32; 2]> = topo
            .bandwidth_plans
            .iter()
            .map(|p| [add(p.mbps), add(p.mbps)])
            .collect();
        let limits = topo
            .eips
            .iter()
            .map(|e| match e.plan {
                Some(p) => plans[usize::from(p.0)].map(|bucket| {
                    Some(Limit {
                        bucket,
                        shared: true,
                    })
                }),
                None => [e.bandwidth_mbps, e.inbound_mbps].map(|m| {
                    m.map(|mbps| Limit {
                        bucket: add(mbps),
                        shared: false,
                    })
                }),
            })
            .collect();
        Policers {
            limits,
            buckets: buckets.into(),
        }
    }

    /// Whether two topologies give every EIP the same limits and plans
    /// (then the buckets of one serve the other).
    pub fn same_limits(a: &Topology, b: &Topology) -> bool {
        // EIPs without any limit do not count: associating one changes
        // nothing here.
        let limits = |t: &Topology| {
            let e: Vec<_> = t
                .eips
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.associated
                        && (e.plan.is_some()
                            || e.bandwidth_mbps.is_some()
                            || e.inbound_mbps.is_some())
                })
                .map(|(i, e)| (i, e.bandwidth_mbps, e.inbound_mbps, e.plan))
                .collect();
            let p: Vec<_> = t
                .bandwidth_plans
                .iter()
                .map(|p| (p.mbps, p.eips.clone()))
                .collect();
            (e, p)
        };
        limits(a) == limits(b)
    }

    /// Whether any EIP has a limit.
    #[inline(always)]
    pub fn on(&self) -> bool {
        !self.buckets.is_empty()
    }

    /// The limit of `eip` for traffic going `dir` (outbound: toward the
    /// Internet), and its rate in Mbit/s.
    pub fn limit(&self, eip: EipId, dir: Direction) -> Option<(Limit, u32)> {
        let l = self.limits.get(usize::from(eip.0))?[dir as usize]?;
        Some((l, self.buckets[l.bucket as usize].mbps()))
    }

    /// Takes `bytes` (IP bytes) of `eip`'s bucket for `dir` at `now`; true
    /// if they conform (or there is no limit).
    pub fn admit(&self, eip: EipId, dir: Direction, now: u64, bytes: u64) -> bool {
        match self.limit(eip, dir) {
            Some((l, _)) => self.buckets[l.bucket as usize].admit(now, bytes),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn ten_mbit_is_1_25_mb_a_second_after_the_burst() {
        let b = Bucket::new(10);
        // The burst: 500 ms at 10 Mbit/s is 625,000 bytes.
        assert_eq!(burst_bytes(10), 625_000);
        let t0 = 1_000 * MS;
        let mut sent = 0;
        while b.admit(t0, 1_000) {
            sent += 1_000;
        }
        assert_eq!(sent, 625_000);
        // Then 1,250 bytes per ms: one 1,000-byte packet at +0.8 ms.
        assert!(!b.admit(t0 + 799_999, 1_000));
        assert!(b.admit(t0 + 800_000, 1_000));
        // Over one second from full: the burst plus 1,250,000 bytes.
        let c = Bucket::new(10);
        let mut total = 0u64;
        for us in 0..1_000_000u64 {
            if c.admit(t0 + us * 1_000, 100) {
                total += 100;
            }
        }
        assert!(
            (1_250_000..=1_250_000 + 625_000).contains(&total),
            "{total}"
        );
    }

    #[test]
    fn small_rates_still_take_a_largest_packet() {
        assert_eq!(burst_bytes(1), MIN_BURST_BYTES);
        assert!(Bucket::new(1).admit(0, 65_535));
    }

    #[test]
    fn clones_share_the_bucket() {
        let topo = crate::config::Topology::from_toml(
            r#"
region = "cn-hangzhou"
vpc_cidr = "172.16.0.0/12"
[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]
[[eni]]
name = "eth1"
private_ips = ["172.16.1.10", "172.16.1.11"]
[[eip]]
address = "203.0.113.10"
eni = "eth0"
mode = "nat"
bandwidth_mbps = 1
[[eip]]
address = "203.0.113.11"
eni = "eth1"
mode = "nat"
[[eip]]
address = "203.0.113.12"
eni = "eth1"
mode = "nat"
private_ip = "172.16.1.11"
[[bandwidth_plan]]
name = "p"
mbps = 1
eips = ["203.0.113.11", "203.0.113.12"]
"#,
        );
        let topo = topo.unwrap_or_else(|e| panic!("{e:?}"));
        let a = Policers::new(&topo);
        let b = a.clone();
        // EIP 0: 1 Mbit/s out, the cloud's 10 Mbit/s in.
        assert_eq!(a.limit(EipId(0), Direction::Outbound).map(|x| x.1), Some(1));
        assert_eq!(a.limit(EipId(0), Direction::Inbound).map(|x| x.1), Some(10));
        // The burst taken through one clone is gone for the other.
        assert!(a.admit(EipId(0), Direction::Outbound, 0, MIN_BURST_BYTES));
        assert!(!b.admit(EipId(0), Direction::Outbound, 0, 1));
        // EIPs 1 and 2 share their plan's bucket.
        assert!(a.admit(EipId(1), Direction::Outbound, 0, MIN_BURST_BYTES));
        assert!(!b.admit(EipId(2), Direction::Outbound, 0, 1));
        assert!(b.admit(EipId(2), Direction::Inbound, 0, 1));
    }
}
