//! Why the flow table has its own index: lookups of 100,000 flows (200,000
//! keys) in a scattered order, std's HashMap (hashbrown, with FxHash) next
//! to eipsim's index, and the index with prefetching six lookups ahead
//! (which hashbrown offers no way to do).
//!
//!     cargo bench --bench flow_table

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eipsim::config::{EipId, EniId, FlowTableConfig};
use eipsim::engine::Link;
use eipsim::engine::flow::{Flow, FlowKey, FlowTable, Origin};
use rustc_hash::FxHashMap;
use std::hint::black_box;
use std::net::Ipv4Addr;

const FLOWS: u32 = 100_000;

fn flow(i: u32) -> Flow {
    Flow::new(
        6,
        Ipv4Addr::new(172, 16, 0, 10),
        Ipv4Addr::new(172, 16, 0, 10),
        Ipv4Addr::new(203, 0, 113, 10),
        Ipv4Addr::from_bits(0xc633_6400 + (i % 256)),
        1024 + (i / 256) as u16,
        443,
        Link::Internet,
        EniId(0),
        Some(EipId(0)),
        Origin::Instance,
    )
}

fn bench(c: &mut Criterion) {
    let cfg = FlowTableConfig {
        capacity: 2 * FLOWS as usize,
        ..Default::default()
    };
    let mut table = FlowTable::new(cfg, 0);
    // The HashMap holds what the table's index holds: key -> slot, with the
    // flows in a slab beside it (so both compare the key and read the flow).
    let mut map: FxHashMap<FlowKey, u32> = FxHashMap::default();
    let mut slab: Vec<Flow> = Vec::new();
    let mut keys = Vec::new();
    for i in 0..FLOWS {
        let f = flow(i);
        keys.push(f.inside_key());
        keys.push(f.outside_key());
        map.insert(f.inside_key(), i);
        map.insert(f.outside_key(), i);
        slab.push(f.clone());
        table.insert(f, 0);
    }
    // A scattered but fixed order.
    let n = keys.len();
    let order: Vec<FlowKey> = (0..n).map(|i| keys[(i * 7919) % n]).collect();
    let mut group = c.benchmark_group("flow_lookup");
    group.throughput(Throughput::Elements(1024));
    let mut cursor = 0;
    group.bench_function("std_hashmap_fx", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for _ in 0..1024 {
                let k = &order[cursor];
                cursor = (cursor + 1) % n;
                let id = *map.get(k).expect("present");
                acc += slab[id as usize].bytes[0] + u64::from(slab[id as usize].inst_port);
            }
            black_box(acc)
        })
    });
    group.bench_function("eipsim_index", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for _ in 0..1024 {
                let k = &order[cursor];
                cursor = (cursor + 1) % n;
                let id = table.lookup(k, 0).expect("present");
                acc += table.get(id).bytes[0] + u64::from(table.get(id).inst_port);
            }
            black_box(acc)
        })
    });
    group.bench_function("eipsim_index_prefetch", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for i in 0..1024 {
                let k = &order[(cursor + i) % n];
                table.prefetch_index(table.hash(&order[(cursor + i + 6) % n]));
                table.prefetch_flow(table.hash(&order[(cursor + i + 3) % n]));
                let id = table.lookup(k, 0).expect("present");
                acc += table.get(id).bytes[0] + u64::from(table.get(id).inst_port);
            }
            cursor = (cursor + 1024) % n;
            black_box(acc)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
