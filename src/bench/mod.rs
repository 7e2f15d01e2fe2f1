//! `eipsim bench engine`: synthetic traffic through the engine in memory,
//! on 1 to N worker threads, each with its own engine (as live mode's
//! workers have), reporting packets per second, Gbit/s and ns per packet.
//!
//! Each worker sets up `flows` flows of the chosen path, then forwards
//! later packets of them, cycling through all flows so that flow lookups
//! go to memory as under real load, in batches of 256 frames
//! ([`Engine::process_batch`]). Each frame is first copied into a scratch
//! buffer (the engine rewrites in place, as a NIC ring would hand it over);
//! the copy is part of the measured time. Gbit/s counts Ethernet frame
//! bytes as the TAP device carries them (no FCS, preamble or gap).

pub mod live;
pub mod workload;

use crate::engine::{Engine, Link, Rx, Verdict};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use workload::{FrameSize, Path, Workload, sized_workload};

/// Frames per batch handed to the engine (as in the criterion benchmark).
const BATCH: usize = 256;
/// The packet clock the workload runs at (ns); flows never expire.
const NOW: u64 = 1_000_000_000;
/// Room for the largest measured frame.
const SCRATCH: usize = 1536;

/// What to measure.
#[derive(Debug, Clone)]
pub struct EngineBench {
    /// Flows per worker (each worker owns its own flow table).
    pub flows: usize,
    /// The forwarding path (or a mix of all of them).
    pub path: Path,
    /// The size of the measured frames.
    pub size: FrameSize,
    /// The most workers: runs are made with 1, 2, ... up to this many.
    pub workers: usize,
    /// How long each run measures, per worker count.
    pub seconds: f64,
}

/// One worker's share of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerResult {
    /// Frames forwarded.
    pub packets: u64,
    /// Ethernet frame bytes forwarded.
    pub bytes: u64,
    /// Measured time, seconds.
    pub seconds: f64,
}

impl WorkerResult {
    /// Frames per second.
    pub fn pps(&self) -> f64 {
        self.packets as f64 / self.seconds
    }
    /// Gigabits (10^9 bits) of frame bytes per second.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e9
    }
    /// Nanoseconds per frame on this worker.
    pub fn ns_per_packet(&self) -> f64 {
        self.seconds * 1e9 / self.packets.max(1) as f64
    }
}

/// A run with a given number of workers.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Each worker's figures, in worker order.
    pub per_worker: Vec<WorkerResult>,
}

impl RunResult {
    /// Frames per second, all workers together.
    pub fn pps(&self) -> f64 {
        self.per_worker.iter().map(WorkerResult::pps).sum()
    }
    /// Gbit/s of frame bytes, all workers together.
    pub fn gbps(&self) -> f64 {
        self.per_worker.iter().map(WorkerResult::gbps).sum()
    }
    /// Nanoseconds per frame per worker, averaged over the workers.
    pub fn ns_per_packet(&self) -> f64 {
        let n = self.per_worker.len().max(1) as f64;
        self.per_worker
            .iter()
            .map(WorkerResult::ns_per_packet)
            .sum::<f64>()
            / n
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A measured frame was not forwarded: the workload and the engine
    /// disagree, and the figures would not measure forwarding.
    #[error("{path}: a measured frame was not forwarded ({verdict:?})")]
    NotForwarded {
        /// The path's name.
        path: &'static str,
        /// What the engine said instead.
        verdict: Verdict,
    },
    /// A frame size the headers do not fit in, or beyond one Ethernet frame.
    #[error(
        "--size {0}: frames must hold the headers (54 bytes for TCP, 42 for UDP) and be at most 1514 bytes"
    )]
    Size(usize),
}

/// A worker's engine with its flows set up, and its frames laid out back
/// to back in one buffer, as a NIC ring would hold them.
struct Prepared {
    engine: Engine,
    links: Vec<Link>,
    offsets: Vec<(usize, usize)>,
    bytes: Vec<u8>,
}

/// A worker's engine for workload `w` (built once, shared by the workers).
fn prepare(b: &EngineBench, w: &Workload) -> Result<Prepared, BenchError> {
    let mut engine = Engine::new(w.topology.clone());
    for (link, f) in &w.setup {
        engine.process(NOW, *link, &mut f.clone(), 0);
    }
    let (mut links, mut offsets, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for (link, f) in &w.frames {
        // Each measured frame must be forwarded, or this measures drops.
        let v = engine.process(NOW, *link, &mut f.clone(), 0);
        if !matches!(v, Verdict::Forwarded { .. }) {
            return Err(BenchError::NotForwarded {
                path: b.path.name(),
                verdict: v,
            });
        }
        links.push(*link);
        offsets.push((bytes.len(), f.len()));
        bytes.extend_from_slice(f);
    }
    Ok(Prepared {
        engine,
        links,
        offsets,
        bytes,
    })
}

/// Forwards frames from `p` in batches until `deadline`; returns the
/// frames and frame bytes forwarded.
fn measure(p: &mut Prepared, seconds: f64) -> WorkerResult {
    let mut scratch = vec![[0u8; SCRATCH]; BATCH];
    let mut verdicts = Vec::with_capacity(BATCH);
    let n = p.offsets.len();
    let (mut cursor, mut packets, mut bytes) = (0usize, 0u64, 0u64);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    loop {
        let mut bufs = scratch.iter_mut();
        let mut batch: [Rx; BATCH] = std::array::from_fn(|_| {
            let (at, len) = p.offsets[cursor];
            let link = p.links[cursor];
            cursor = if cursor + 1 == n { 0 } else { cursor + 1 };
            let buf = &mut bufs.next().expect("BATCH buffers")[..len];
            buf.copy_from_slice(&p.bytes[at..at + len]);
            bytes += len as u64;
            Rx {
                now: NOW,
                port: link,
                frame: buf,
                tag: 0,
            }
        });
        p.engine.process_batch(&mut batch, &mut verdicts);
        packets += BATCH as u64;
        std::hint::black_box(&verdicts);
        if Instant::now() >= deadline {
            break;
        }
    }
    WorkerResult {
        packets,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Runs the benchmark with 1, 2, ... `b.workers` workers; `progress` is
/// told each worker count before its run. Returns one result per count.
pub fn run(b: &EngineBench, progress: &mut dyn FnMut(usize)) -> Result<Vec<RunResult>, BenchError> {
    if let FrameSize::Bytes(n) = b.size {
        let min = if b.path == Path::CutThrough { 42 } else { 54 };
        if !(min..=1514).contains(&n) || (b.path == Path::Mix && n < 54) {
            return Err(BenchError::Size(n));
        }
    }
    // The frames are the same for every worker: built once.
    let w = sized_workload(b.path, b.flows, b.size);
    let mut out = Vec::new();
    for workers in 1..=b.workers.max(1) {
        progress(workers);
        // Set up every worker first, then start them together.
        let mut prepared = Vec::new();
        for _ in 0..workers {
            prepared.push(prepare(b, &w)?);
        }
        let start = Barrier::new(workers);
        let per_worker = std::thread::scope(|s| {
            let handles: Vec<_> = prepared
                .iter_mut()
                .map(|p| {
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        measure(p, b.seconds)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a bench worker panicked"))
                .collect()
        });
        out.push(RunResult { per_worker });
    }
    Ok(out)
}

/// The size as the command line names it: a number of bytes, or `imix`.
pub fn size_name(s: FrameSize) -> String {
    match s {
        FrameSize::Bytes(n) => n.to_string(),
        FrameSize::Imix => "imix".into(),
        FrameSize::Small => "small".into(),
    }
}

/// The results as a table: one line per worker count (total Mpackets/s,
/// Gbit/s, ns per packet per worker, and the speed-up over one worker),
/// then each worker of the largest run.
pub fn text(b: &EngineBench, runs: &[RunResult]) -> String {
    let mut s = format!(
        "eipsim bench engine: path {}, {} flows per worker, frames {}, {} s per run\n",
        b.path.cli_name(),
        b.flows,
        match b.size {
            FrameSize::Bytes(n) => format!("{n} bytes"),
            _ => size_name(b.size),
        },
        b.seconds
    );
    s.push_str("workers  Mpackets/s  Gbit/s  ns/packet  scaling\n");
    let one = runs.first().map_or(1.0, RunResult::pps);
    for (i, r) in runs.iter().enumerate() {
        s.push_str(&format!(
            "{:>7}  {:>10.2}  {:>6.2}  {:>9.1}  {:>7.2}\n",
            i + 1,
            r.pps() / 1e6,
            r.gbps(),
            r.ns_per_packet(),
            r.pps() / one
        ));
    }
    if let Some(last) = runs.last().filter(|r| r.per_worker.len() > 1) {
        for (w, r) in last.per_worker.iter().enumerate() {
            s.push_str(&format!(
                "  worker {w}: {:.2} Mpackets/s, {:.2} Gbit/s, {:.1} ns/packet\n",
                r.pps() / 1e6,
                r.gbps(),
                r.ns_per_packet()
            ));
        }
    }
    s
}

/// The results as one JSON object: `path`, `flows`, `size`, `seconds`, and
/// `runs`, one per worker count with `workers`, `pps`, `gbps`,
/// `ns_per_packet`, `scaling` (pps over the one-worker run) and
/// `per_worker` (`worker`, `packets`, `bytes`, `seconds`, `pps`, `gbps`,
/// `ns_per_packet`).
pub fn json(b: &EngineBench, runs: &[RunResult]) -> serde_json::Value {
    let one = runs.first().map_or(1.0, RunResult::pps);
    serde_json::json!({
        "path": b.path.cli_name(),
        "flows": b.flows,
        "size": match b.size {
            FrameSize::Bytes(n) => serde_json::json!(n),
            _ => serde_json::json!(size_name(b.size)),
        },
        "seconds": b.seconds,
        "runs": runs.iter().enumerate().map(|(i, r)| serde_json::json!({
            "workers": i + 1,
            "pps": r.pps(),
            "gbps": r.gbps(),
            "ns_per_packet": r.ns_per_packet(),
            "scaling": r.pps() / one,
            "per_worker": r.per_worker.iter().enumerate().map(|(w, x)| serde_json::json!({
                "worker": w,
                "packets": x.packets,
                "bytes": x.bytes,
                "seconds": x.seconds,
                "pps": x.pps(),
                "gbps": x.gbps(),
                "ns_per_packet": x.ns_per_packet(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
