//! Per-packet cost of the engine on each forwarding path, with a flow
//! table of 100,000 flows (EIPSIM_BENCH_FLOWS overrides). Every measured
//! packet is a later packet of an established flow, cycling through all of
//! them, so flow lookups miss the CPU caches as they would under real load.
//!
//!     cargo bench --bench engine
//!
//! Two ways to drive the engine: `single` calls `Engine::process` per
//! frame; `batch` hands it 256 frames at once (`Engine::process_batch`,
//! which prefetches flow table lines ahead, as live mode does). Each frame
//! is first copied into a scratch buffer (the engine rewrites in place);
//! the copy (60-80 bytes) is part of the measured time.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eipsim::bench::workload::{Path, workload};
use eipsim::engine::{Engine, Rx, Verdict};
use std::hint::black_box;

fn flows() -> usize {
    std::env::var("EIPSIM_BENCH_FLOWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

const BATCH: usize = 256;
const NOW: u64 = 1_000_000_000;

/// The measured frames, laid out back to back at a fixed stride (as a NIC
/// ring would hold them) rather than as 100,000 separate allocations.
struct Frames {
    ports: Vec<eipsim::engine::Link>,
    lens: Vec<usize>,
    bytes: Vec<u8>,
}

const STRIDE: usize = 128;

impl Frames {
    fn get(&self, i: usize) -> (eipsim::engine::Link, &[u8]) {
        (
            self.ports[i],
            &self.bytes[i * STRIDE..i * STRIDE + self.lens[i]],
        )
    }
}

fn setup(path: Path) -> (Engine, Frames) {
    let w = workload(path, flows());
    let mut engine = Engine::new(w.topology.clone());
    for (port, f) in &w.setup {
        let mut f = f.clone();
        engine.process(NOW, *port, &mut f, 0);
    }
    assert_eq!(
        engine.counters().flows.active as usize,
        flows(),
        "{}: flows set up",
        path.name()
    );
    for (port, f) in &w.frames {
        let mut f = f.clone();
        let v = engine.process(NOW, *port, &mut f, 0);
        assert!(
            matches!(v, Verdict::Forwarded { .. }),
            "{}: {v:?}",
            path.name()
        );
    }
    let mut frames = Frames {
        ports: Vec::new(),
        lens: Vec::new(),
        bytes: vec![0; w.frames.len() * STRIDE],
    };
    for (i, (port, f)) in w.frames.iter().enumerate() {
        frames.ports.push(*port);
        frames.lens.push(f.len());
        frames.bytes[i * STRIDE..i * STRIDE + f.len()].copy_from_slice(f);
    }
    (engine, frames)
}

fn bench_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    // The copying alone, to tell the harness's share from the engine's.
    {
        let (_, frames) = setup(Path::NatOut);
        let mut scratch = vec![[0u8; 128]; BATCH];
        let mut cursor = 0usize;
        group.bench_function("copy_only", |b| {
            b.iter(|| {
                for buf in scratch.iter_mut() {
                    let (_, f) = frames.get(cursor);
                    cursor = if cursor + 1 == frames.lens.len() {
                        0
                    } else {
                        cursor + 1
                    };
                    buf[..f.len()].copy_from_slice(f);
                }
                black_box(&mut scratch);
            })
        });
    }
    for path in Path::ALL {
        let (mut engine, frames) = setup(path);
        let mut scratch = vec![[0u8; 128]; BATCH];
        let mut cursor = 0usize;
        group.bench_function(BenchmarkId::new("single", path.name()), |b| {
            b.iter(|| {
                for buf in scratch.iter_mut() {
                    let (port, f) = frames.get(cursor);
                    cursor = if cursor + 1 == frames.lens.len() {
                        0
                    } else {
                        cursor + 1
                    };
                    let buf = &mut buf[..f.len()];
                    buf.copy_from_slice(f);
                    black_box(engine.process(NOW, port, buf, 0));
                }
            })
        });
        let mut verdicts = Vec::with_capacity(BATCH);
        group.bench_function(BenchmarkId::new("batch", path.name()), |b| {
            b.iter(|| {
                let mut bufs = scratch.iter_mut();
                let mut batch: [Rx; BATCH] = std::array::from_fn(|_| {
                    let (port, f) = frames.get(cursor);
                    cursor = if cursor + 1 == frames.lens.len() {
                        0
                    } else {
                        cursor + 1
                    };
                    let buf = &mut bufs.next().expect("BATCH buffers")[..f.len()];
                    buf.copy_from_slice(f);
                    Rx {
                        now: NOW,
                        port,
                        frame: buf,
                        tag: 0,
                    }
                });
                engine.process_batch(&mut batch, &mut verdicts);
                black_box(&verdicts);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_paths);
criterion_main!(benches);
