//! The flood of issue 9 item 9 at full size: 10 million new flows through
//! one engine at the default flow table capacity (1,000,000), with a TCP
//! connection and a UDP flow established before it. Prints the bytes per
//! flow, the table's memory and the process's peak RSS, the rate, what
//! happened to the flood, and whether the flows from before still work.
//! `cargo run --release --example flood [FLOWS]`; BENCHMARKS.md has a run.

use eipsim::config::Topology;
use eipsim::engine::flow::FlowTable;
use eipsim::engine::{DropReason, Engine, Link, Verdict};
use eipsim::probe::{tcp, udp};
use std::time::Instant;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let flows: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let topo = Topology::from_toml(eipsim_fixtures::STANDARD).expect("the standard topology");
    let capacity = topo.flow_table.capacity;
    let mut e = Engine::new(topo);
    let (i, n) = (Link::Instance, Link::Internet);
    for (port, f) in [
        (
            i,
            tcp(i, "172.16.0.10", "198.51.100.7", 40000, 443, "S", b""),
        ),
        (
            n,
            tcp(n, "198.51.100.7", "203.0.113.10", 443, 40000, "SA", b""),
        ),
        (
            i,
            tcp(i, "172.16.0.10", "198.51.100.7", 40000, 443, "A", b""),
        ),
        (i, udp(i, "172.16.0.10", "198.51.100.8", 5000, 9999, b"q")),
    ] {
        let mut f = f;
        e.process(1, port, &mut f, 0);
    }
    let rss_before = rss_kib("VmRSS:");
    let template = udp(i, "172.16.0.10", "198.51.100.9", 1, 9, b"x");
    let mut f = template.clone();
    let start = Instant::now();
    let mut peak_mem = 0;
    for k in 0..flows {
        f.copy_from_slice(&template);
        // 198.51.100.0/24 hosts x 65536 source ports, then further /24s.
        let dst = 0xc633_6400u32.wrapping_add(k >> 16);
        f[30..34].copy_from_slice(&dst.to_be_bytes());
        f[34..36].copy_from_slice(&((k & 0xffff) as u16).to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let cs = eipsim::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&cs.to_be_bytes());
        e.process(2 + u64::from(k) * 1_000, i, &mut f, 0);
        if k % 65_536 == 0 {
            peak_mem = peak_mem.max(e.flow_table().memory_bytes());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let c = e.counters();
    let now = 2 + u64::from(flows) * 1_000;
    let mut back = tcp(n, "198.51.100.7", "203.0.113.10", 443, 40000, "A", b"data");
    let tcp_ok = matches!(
        e.process(now, n, &mut back, 0),
        Verdict::Forwarded {
            port: Link::Instance,
            ..
        }
    );
    let mut reply = udp(n, "198.51.100.8", "203.0.113.10", 9999, 5000, b"a");
    let udp_ok = matches!(
        e.process(now, n, &mut reply, 0),
        Verdict::Forwarded {
            port: Link::Instance,
            ..
        }
    );
    println!(
        "flows offered          {flows} new outbound UDP flows, 1 us apart on the packet clock"
    );
    println!("capacity               {capacity} flows (the default)");
    println!(
        "bytes per flow         {} (hot {} + cold + 4 index slots)",
        FlowTable::bytes_per_flow(),
        std::mem::size_of::<eipsim::engine::flow::Flow>()
    );
    println!(
        "table memory (peak)    {:.1} MiB",
        peak_mem as f64 / (1 << 20) as f64
    );
    println!(
        "process RSS            {:.1} MiB before the flood, {:.1} MiB peak",
        rss_before as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
    println!("live flows after       {}", e.flow_table().len());
    println!("forwarded              {}", c.frames.forwarded);
    println!(
        "flow_table_full        {}",
        c.drop_count(DropReason::FlowTableFull)
    );
    println!(
        "alg_unsupported        {} (source ports of unsupported ALG protocols)",
        c.drop_count(DropReason::AlgUnsupported)
    );
    println!(
        "rate                   {:.2} M frames/s ({:.1} s)",
        f64::from(flows) / secs / 1e6,
        secs
    );
    println!(
        "established TCP after  {}",
        if tcp_ok { "works" } else { "BROKEN" }
    );
    println!(
        "UDP flow after         {}",
        if udp_ok { "works" } else { "BROKEN" }
    );
    if !(tcp_ok && udp_ok) || e.flow_table().len() > capacity {
        std::process::exit(1);
    }
}
