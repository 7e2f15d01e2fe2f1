//! Writes a large capture for trying replay's speed and progress bar:
//!
//!     cargo run --release --example big-capture -- FLOWS PACKETS_PER_FLOW OUT.pcap
//!
//! Each flow is set up from the instance, then its later packets follow.
use eipsim::bench::workload::{Path, workload};
use eipsim::io::capture::CaptureWriter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flows: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let per: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let out = args.get(3).cloned().unwrap_or_else(|| "big.pcap".into());
    let w = workload(Path::NatOut, flows);
    let mut cap = CaptureWriter::create(std::path::Path::new(&out))?;
    let mut ts = 1_000_000_000u64;
    for (_, f) in &w.setup {
        cap.write(ts, f)?;
        ts += 1000;
    }
    for _ in 1..per {
        for (_, f) in &w.frames {
            cap.write(ts, f)?;
            ts += 1000;
        }
    }
    cap.finish()?;
    eprintln!("wrote {} packets to {out}", flows * per);
    Ok(())
}
