//! The hot path allocates nothing per packet: after the flows exist,
//! forwarding their packets (single and batch) makes zero heap allocations.

use eipsim::bench::workload::{Path, workload};
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

#[test]
fn forwarding_established_flows_allocates_nothing() {
    for path in Path::ALL {
        let w = workload(path, 2000);
        let mut engine = Engine::new(w.topology.clone());
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
