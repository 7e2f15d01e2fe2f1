//! Per-packet cost of the engine on each forwarding path, with a flow
//! table of 100,000 flows. Every measured packet is a later packet of an
//! established flow, cycling through all 100,000 (so flow lookups miss the
//! CPU caches as they would under real load).
//!
//!     cargo bench --bench engine
//!
//! Each iteration copies the frame into a scratch buffer (the engine
//! rewrites in place) and processes it; the copy (60-80 bytes) is part of
//! the measured time.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eipsim::engine::{Engine, Verdict};
use eipsim::scenarios::workload::{Path, workload};
use std::hint::black_box;

fn flows() -> usize {
    std::env::var("EIPSIM_BENCH_FLOWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}
const BATCH: usize = 1024;

fn bench_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    for path in Path::ALL {
        let w = workload(path, flows());
        let mut engine = Engine::new(w.topology.clone());
        let now = 1_000_000_000;
        for (port, f) in &w.setup {
            let mut f = f.clone();
            engine.process(now, *port, &mut f, 0);
        }
        assert_eq!(
            engine.counters().flows.active as usize,
            flows(),
            "{}: flows set up",
            path.name()
        );
        // Check once that the measured frames are forwarded.
        for (port, f) in w.frames.iter().take(100) {
            let mut f = f.clone();
            let v = engine.process(now, *port, &mut f, 0);
            assert!(
                matches!(v, Verdict::Forwarded { .. }),
                "{}: {v:?}",
                path.name()
            );
        }
        let mut scratch = vec![0u8; 2048];
        let mut cursor = 0usize;
        group.bench_function(path.name(), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    let (port, f) = &w.frames[cursor];
                    cursor += 1;
                    if cursor == w.frames.len() {
                        cursor = 0;
                    }
                    let buf = &mut scratch[..f.len()];
                    buf.copy_from_slice(f);
                    black_box(engine.process(now, *port, buf, 0));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_paths);
criterion_main!(benches);
