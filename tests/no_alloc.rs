//! The hot path allocates nothing per packet: after the flows exist,
//! forwarding their packets (single and batch) makes zero heap allocations.

use eipsim::bench::workload::{Path, workload};
use eipsim::config::{
    GroupId, GroupType, Peer, PortRange, RuleDirection, RulePolicy, RuleProtocol, SecurityGroup,
    SgRule, Topology,
};
use eipsim::engine::{Engine, Rx, Verdict};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded to the system allocator with the same layout.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: p came from System.alloc with layout l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for alloc and dealloc.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Then the same with a security group on every ENI and a bandwidth limit
/// on every EIP (high enough never to drop): each packet is policed, each
/// new flow judged. One test: the allocation counter is global, and a
/// second test thread would count into it.
#[test]
fn forwarding_established_flows_allocates_nothing() {
    forwarding_allocates_nothing(false);
    forwarding_allocates_nothing(true);
}

/// The workload's topology, with (`policies`) one basic group letting
/// everything in on every ENI and a 1 Tbit/s limit on every EIP.
fn topology(t: &Topology, policies: bool) -> Topology {
    let mut t = t.clone();
    if policies {
        t.security_groups.push(SecurityGroup {
            name: "sg-all".into(),
            kind: GroupType::Basic,
            internal_isolation: false,
            members: vec![],
            rules: vec![SgRule {
                direction: RuleDirection::Ingress,
                policy: RulePolicy::Accept,
                priority: 1,
                protocol: RuleProtocol::All,
                ports: vec![PortRange::ALL],
                peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
                description: String::new(),
                line: 0,
            }],
            line: 0,
        });
        for e in &mut t.enis {
            e.security_groups = vec![GroupId(0)];
        }
        for e in &mut t.eips {
            e.bandwidth_mbps = Some(1_000_000);
            e.inbound_mbps = Some(1_000_000);
        }
    }
    t
}

fn forwarding_allocates_nothing(policies: bool) {
    for path in Path::ALL {
        let w = workload(path, 2000);
        let mut engine = Engine::new(topology(&w.topology, policies));
        for (port, f) in &w.setup {
            engine.process(1, *port, &mut f.clone(), 0);
        }
        let mut frames: Vec<Vec<u8>> = w.frames.iter().map(|(_, f)| f.clone()).collect();
        let mut copies = frames.clone();
        let mut verdicts = Vec::with_capacity(frames.len());

        let before = ALLOCS.load(Ordering::Relaxed);
        for ((port, _), (f, c)) in w
            .frames
            .iter()
            .zip(frames.iter_mut().zip(copies.iter_mut()))
        {
            c.copy_from_slice(f);
            let v = engine.process(2, *port, c, 0);
            assert!(
                matches!(v, Verdict::Forwarded { .. }),
                "{}: {v:?}",
                path.name()
            );
        }
        let single = ALLOCS.load(Ordering::Relaxed) - before;
        let mut batch: Vec<Rx> = Vec::with_capacity(frames.len());
        for ((port, _), f) in w.frames.iter().zip(frames.iter_mut()) {
            batch.push(Rx {
                now: 3,
                port: *port,
                frame: f,
                tag: 0,
            });
        }
        let before = ALLOCS.load(Ordering::Relaxed);
        engine.process_batch(&mut batch, &mut verdicts);
        let batched = ALLOCS.load(Ordering::Relaxed) - before;
        assert_eq!(
            (single, batched),
            (0, 0),
            "{}: heap allocations while forwarding",
            path.name()
        );
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Verdict::Forwarded { .. })),
            "{}",
            path.name()
        );
    }
}
