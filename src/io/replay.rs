//! `eipsim replay`: captures in, the engine in the middle, captures, a
//! report and one verdict line per frame out.
//!
//! Inputs are merged by timestamp (ties: the order of `--in`), and the
//! packet timestamps are the engine's clock. Outputs are written to a
//! hidden folder inside the output directory and moved into place only
//! when everything succeeded, so a failed run never leaves files that look
//! complete.

use super::capture::{CaptureError, CaptureReader, CaptureWriter};
use super::report;
use crate::config::Topology;
use crate::engine::{Engine, Port, Verdict};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Capture(#[from] CaptureError),
    #[error("{}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn out_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// One `--in PORT=CAPTURE`.
#[derive(Debug, Clone)]
pub struct Input {
    pub port: Port,
    pub path: PathBuf,
}

/// What a replay did, for the summary line.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    pub frames: u64,
    pub report: serde_json::Value,
}

/// The output side of a replay: per-port and per-ENI captures, verdicts.
struct Outputs {
    ports: Vec<CaptureWriter>,
    enis: Vec<CaptureWriter>,
    verdicts: BufWriter<fs::File>,
    dir: PathBuf,
}

impl Outputs {
    fn create(dir: &Path, topo: &Topology) -> Result<Self, ReplayError> {
        fs::create_dir_all(dir.join("eni")).map_err(out_err(dir))?;
        let mut ports = Vec::new();
        for p in Port::ALL {
            let path = dir.join(format!("{}.pcap", p.name()));
            ports.push(CaptureWriter::create(&path).map_err(out_err(&path))?);
        }
        let mut enis = Vec::new();
        for e in &topo.enis {
            let path = dir.join("eni").join(format!("{}.pcap", e.name));
            enis.push(CaptureWriter::create(&path).map_err(out_err(&path))?);
        }
        let path = dir.join("verdicts.jsonl");
        let verdicts = BufWriter::new(fs::File::create(&path).map_err(out_err(&path))?);
        Ok(Outputs {
            ports,
            enis,
            verdicts,
            dir: dir.to_path_buf(),
        })
    }

    fn io(&self, name: &str) -> impl FnOnce(std::io::Error) -> ReplayError {
        let path = self.dir.join(name);
        move |source| ReplayError::Output { path, source }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        topo: &Topology,
        ts: u64,
        in_port: Port,
        in_file: &str,
        index: u64,
        frame: &[u8],
        verdict: &Verdict,
        eni_view: Option<(crate::config::EniId, &[u8])>,
    ) -> Result<(), ReplayError> {
        if let Some(p) = verdict.sends_frame() {
            self.ports[p.index()]
                .write(ts, frame)
                .map_err(self.io("port capture"))?;
        }
        if let Some((e, view)) = eni_view {
            self.enis[usize::from(e.0)]
                .write(ts, view)
                .map_err(self.io("eni capture"))?;
        }
        let line = report::verdict_line(topo, in_port, in_file, index, verdict);
        serde_json::to_writer(&mut self.verdicts, &line)
            .map_err(|e| self.io("verdicts.jsonl")(e.into()))?;
        self.verdicts
            .write_all(b"\n")
            .map_err(self.io("verdicts.jsonl"))?;
        Ok(())
    }

    fn finish(self) -> Result<(), ReplayError> {
        for w in self.ports.into_iter().chain(self.enis) {
            w.finish().map_err(out_err(&self.dir))?;
        }
        let mut v = self.verdicts;
        v.flush().map_err(out_err(&self.dir))?;
        Ok(())
    }
}

/// A packet read ahead from one input, waiting for the merge.
struct Head {
    ts: u64,
    index: u64,
    data: Vec<u8>,
}

/// Replays `inputs` through a fresh engine for `topo`, writing into `out_dir`.
/// `progress` is called with (bytes read, total bytes) now and then.
pub fn replay(
    topo: Topology,
    inputs: &[Input],
    out_dir: &Path,
    mtu: [Option<u32>; 3],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplaySummary, ReplayError> {
    // Open every input first: a bad file fails before anything is written.
    let mut readers = Vec::new();
    for i in inputs {
        readers.push(CaptureReader::open(&i.path)?);
    }
    let total: u64 = readers.iter().map(|r| r.file_len).sum();
    fs::create_dir_all(out_dir).map_err(out_err(out_dir))?;
    let partial = out_dir.join(format!(".eipsim-partial-{}", std::process::id()));
    let result = run(topo, inputs, &mut readers, &partial, total, mtu, progress);
    match result {
        Ok(summary) => {
            publish(&partial, out_dir)?;
            Ok(summary)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

fn run(
    topo: Topology,
    inputs: &[Input],
    readers: &mut [CaptureReader],
    partial: &Path,
    total: u64,
    mtu: [Option<u32>; 3],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplaySummary, ReplayError> {
    let mut out = Outputs::create(partial, &topo)?;
    let names: Vec<String> = inputs
        .iter()
        .map(|i| i.path.display().to_string())
        .collect();
    let mut engine = Engine::new(topo);
    engine.set_eni_capture(true);
    for p in Port::ALL {
        engine.set_mtu(p, mtu[p.index()]);
    }
    let topo = engine.topology().clone();

    let mut heads: Vec<Option<Head>> = Vec::new();
    for r in readers.iter_mut() {
        heads.push(read_head(r, Vec::new())?);
    }
    let (mut frames, mut bytes, mut last_ts) = (0u64, 0u64, 0u64);
    // The earliest packet; ties go to the earlier --in.
    while let Some(k) = (0..heads.len())
        .filter(|&k| heads[k].is_some())
        .min_by_key(|&k| (heads[k].as_ref().map(|h| h.ts), k))
    {
        let mut head = heads[k].take().expect("chosen head exists");
        let port = inputs[k].port;
        bytes += head.data.len() as u64 + 16;
        frames += 1;
        let v = engine.process(head.ts, port, &mut head.data, (k as u64) << 40 | head.index);
        if v != Verdict::Held {
            out.record(
                &topo,
                head.ts,
                port,
                &names[k],
                head.index,
                &head.data,
                &v,
                engine.eni_view(),
            )?;
        }
        // Fragments and generated ICMP errors follow their cause.
        while let Some(t) = engine.poll_transmit() {
            out.ports[t.port.index()]
                .write(head.ts, &t.frame)
                .map_err(out.io("port capture"))?;
        }
        drain_released(&mut engine, &mut out, &topo, &names, head.ts)?;
        last_ts = last_ts.max(head.ts);
        // The buffer is reused for the next packet of the same input.
        heads[k] = read_head(&mut readers[k], head.data)?;
        if frames % 4096 == 0 {
            progress(bytes, total);
        }
    }
    engine.flush();
    drain_released(&mut engine, &mut out, &topo, &names, last_ts)?;
    progress(total, total);
    out.finish()?;
    let path = partial.join("flows.jsonl");
    let mut flows = BufWriter::new(fs::File::create(&path).map_err(out_err(&path))?);
    let table = engine.flow_table();
    for (id, _) in table.iter() {
        let line = report::flow_line(&topo, table, id);
        serde_json::to_writer(&mut flows, &line).map_err(|e| ReplayError::Output {
            path: path.clone(),
            source: e.into(),
        })?;
        flows.write_all(b"\n").map_err(out_err(&path))?;
    }
    flows.flush().map_err(out_err(&path))?;
    let report = report::report(&topo, &engine.counters());
    let path = partial.join("report.json");
    let text = serde_json::to_string_pretty(&report).expect("JSON values serialise");
    fs::write(&path, text + "\n").map_err(out_err(&path))?;
    Ok(ReplaySummary { frames, report })
}

fn read_head(r: &mut CaptureReader, mut data: Vec<u8>) -> Result<Option<Head>, ReplayError> {
    Ok(r.next_packet(&mut data)?
        .map(|(ts, index)| Head { ts, index, data }))
}

fn drain_released(
    engine: &mut Engine,
    out: &mut Outputs,
    topo: &Topology,
    names: &[String],
    ts: u64,
) -> Result<(), ReplayError> {
    while let Some(r) = engine.poll_released() {
        let (k, index) = ((r.tag >> 40) as usize, r.tag & ((1 << 40) - 1));
        let view = r.eni_view.as_ref().map(|(e, f)| (*e, &f[..]));
        out.record(
            topo, ts, r.in_port, &names[k], index, &r.frame, &r.verdict, view,
        )?;
    }
    Ok(())
}

/// Moves the finished outputs from the hidden folder into place.
fn publish(partial: &Path, out_dir: &Path) -> Result<(), ReplayError> {
    fs::create_dir_all(out_dir.join("eni")).map_err(out_err(out_dir))?;
    for entry in fs::read_dir(partial.join("eni")).map_err(out_err(partial))? {
        let entry = entry.map_err(out_err(partial))?;
        let to = out_dir.join("eni").join(entry.file_name());
        fs::rename(entry.path(), &to).map_err(out_err(&to))?;
    }
    for name in [
        "instance.pcap",
        "internet.pcap",
        "vpc.pcap",
        "verdicts.jsonl",
        "flows.jsonl",
        "report.json",
    ] {
        let to = out_dir.join(name);
        fs::rename(partial.join(name), &to).map_err(out_err(&to))?;
    }
    fs::remove_dir_all(partial).map_err(out_err(partial))?;
    Ok(())
}
