//! `eipsim replay`: captures in, the engine in the middle, captures, a
//! report and one verdict line per frame out.
//!
//! Inputs are merged by timestamp (ties: the order of `--in`), and the
//! packet timestamps are the engine's clock. Outputs are written to a
//! hidden folder inside the output directory and moved into place only
//! when everything succeeded, so a failed run never leaves files that look
//! complete.

use super::capture::{CaptureError, CaptureReader, OutCapture, OutFormat};
use super::driver::{self, CaptureSource, Output, Source};
use super::events::TimedOp;
use super::expect::{self, Observed};
use super::report;
use crate::config::Topology;
use crate::engine::{Engine, Link, Verdict};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Why a replay failed; its outputs are then removed, not left half
/// written.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input capture cannot be opened or read.
    #[error("{0}")]
    Capture(#[from] CaptureError),
    /// An output file or directory cannot be created or written.
    #[error("{}: {source}", path.display())]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
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
    /// The port its frames arrive on.
    pub port: Link,
    /// The pcap or pcapng file.
    pub path: PathBuf,
}

/// What a replay did, for the summary line.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    /// Things worth saying that did not stop the replay (an earlier
    /// replay's file that could not be removed).
    pub warnings: Vec<String>,
    /// Frames read from all inputs.
    pub frames: u64,
    /// The report, as written to report.json.
    pub report: serde_json::Value,
    /// Each input frame's outcome, in verdicts.jsonl order (only with
    /// [`ReplayOptions::observe`]).
    pub observed: Vec<Observed>,
    /// Input frames per second of the packet clock, by final verdict,
    /// in time order; seconds without frames are left out (for the HTML
    /// report's packets-per-second chart).
    pub per_second: Vec<Second>,
    /// The topology at the end (after `--events`), whose ENIs and EIPs
    /// the report's rows are.
    pub topology: Topology,
}

/// One second of the packet clock: how many input frames got each final
/// verdict (a held fragment counts when it is decided).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    /// Seconds since the epoch (the packet timestamp divided by 10^9).
    pub second: u64,
    /// Forwarded (fragmented included).
    pub forwarded: u64,
    /// Consumed by the engine (ARP).
    pub consumed: u64,
    /// Dropped.
    pub dropped: u64,
}

/// Counts a decided frame at `ts` (ns) into `hist`: O(seconds) memory,
/// and O(1) per frame while time goes forward, as merged inputs do.
fn count_second(hist: &mut Vec<Second>, ts: u64, verdict: &Verdict) {
    let second = ts / 1_000_000_000;
    let i = match hist.last() {
        Some(l) if l.second == second => hist.len() - 1,
        Some(l) if l.second < second => hist.len(),
        None => 0,
        Some(_) => match hist.binary_search_by_key(&second, |s| s.second) {
            Ok(i) | Err(i) => i,
        },
    };
    if hist.get(i).is_none_or(|s| s.second != second) {
        hist.insert(
            i,
            Second {
                second,
                ..Default::default()
            },
        );
    }
    let s = &mut hist[i];
    match verdict {
        Verdict::Forwarded { .. } | Verdict::Fragmented { .. } => s.forwarded += 1,
        Verdict::Consumed { .. } => s.consumed += 1,
        Verdict::Dropped { .. } => s.dropped += 1,
        Verdict::Held => {}
    }
}

/// How to replay, beyond the topology and the inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions<'a> {
    /// MTU per port (`--mtu`), IP bytes; `None`: no limit.
    pub mtu: [Option<u32>; 3],
    /// Topology events (`--events`); then events.jsonl is written too.
    pub events: Option<&'a [TimedOp]>,
    /// Keep each frame's outcome in [`ReplaySummary::observed`] (for
    /// `--expect` and `--expect-write`).
    pub observe: bool,
    /// The output captures' format (`--format`): pcap, or pcapng with
    /// interface names and a comment per packet.
    pub format: OutFormat,
}

/// The output side of a replay: per-port and per-ENI captures, verdicts.
struct Outputs {
    ports: Vec<OutCapture>,
    enis: Vec<OutCapture>,
    verdicts: BufWriter<fs::File>,
    dir: PathBuf,
}

impl Outputs {
    fn create(dir: &Path, topo: &Topology, format: OutFormat) -> Result<Self, ReplayError> {
        fs::create_dir_all(dir.join("eni")).map_err(out_err(dir))?;
        let ext = format.ext();
        let mut ports = Vec::new();
        for p in Link::ALL {
            let path = dir.join(format!("{}.{ext}", p.name()));
            ports.push(OutCapture::create(&path, format, p.name()).map_err(out_err(&path))?);
        }
        let mut enis = Vec::new();
        for e in &topo.enis {
            let path = dir.join("eni").join(format!("{}.{ext}", e.name));
            enis.push(OutCapture::create(&path, format, &e.name).map_err(out_err(&path))?);
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

    /// Writes a frame's outputs; `at` is (timestamp, input port, input
    /// file, index in that file).
    fn record(
        &mut self,
        topo: &Topology,
        at: (u64, Link, &str, u64),
        frame: &[u8],
        verdict: &Verdict,
        eni_view: Option<(crate::config::EniId, &[u8])>,
        generated: bool,
    ) -> Result<(), ReplayError> {
        let (ts, in_port, in_file, index) = at;
        // pcapng only: what eipsim decided, for Wireshark's frame.comment.
        let comment = || {
            format!(
                "{in_port} #{index} ({in_file}): {}",
                comment_verdict(topo, in_port, verdict)
            )
        };
        if let Some(p) = verdict.sends_frame() {
            self.ports[p.index()]
                .write(ts, frame, comment)
                .map_err(self.io("port capture"))?;
        }
        if let Some((e, view)) = eni_view {
            self.enis[usize::from(e.0)]
                .write(ts, view, comment)
                .map_err(self.io("eni capture"))?;
        }
        let line = report::verdict_line(topo, in_port, in_file, index, verdict, generated);
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

/// Replays `inputs` through a fresh engine for `topo`, writing into `out_dir`.
/// `progress` is called with (bytes read, total bytes) now and then.
///
/// With `events` (from `--events`), the topology changes on the packet
/// clock and `events.jsonl` says what became of each event.
pub fn replay(
    topo: Topology,
    inputs: &[Input],
    out_dir: &Path,
    opts: ReplayOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplaySummary, ReplayError> {
    // Open every input first: a bad file fails before anything is written.
    let mut readers = Vec::new();
    for i in inputs {
        readers.push(CaptureReader::open(&i.path)?);
    }
    let total: u64 = readers.iter().map(|r| r.file_len).sum();
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(ReplayError::Output {
            path: out_dir.to_path_buf(),
            source: std::io::Error::other("--out-dir names a file, not a folder"),
        });
    }
    fs::create_dir_all(out_dir).map_err(out_err(out_dir))?;
    // An output written over an input would lose the capture replayed.
    let ext = opts.format.ext();
    let outputs = Link::ALL
        .iter()
        .map(|p| format!("{}.{ext}", p.name()))
        .chain(REPORT_FILES.map(String::from))
        .chain(topo.enis.iter().map(|e| format!("eni/{}.{ext}", e.name)));
    for name in outputs {
        let out = out_dir.join(&name);
        if let Some(i) = inputs.iter().find(|i| same_file(&i.path, &out)) {
            return Err(ReplayError::Output {
                path: out,
                source: std::io::Error::other(format!(
                    "--out-dir would write this output over the input {}",
                    i.path.display()
                )),
            });
        }
    }
    let partial = out_dir.join(format!(".eipsim-partial-{}", std::process::id()));
    // One of this pid is a killed run's (pids are unique among the living):
    // its files must not be published as this run's.
    let _ = fs::remove_dir_all(&partial);
    let result = run(topo, inputs, readers, &partial, total, opts, progress);
    match result {
        Ok(mut summary) => {
            summary.warnings = publish(
                &partial,
                out_dir,
                opts.events.is_some(),
                opts.format,
                inputs,
            )?;
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
    readers: Vec<CaptureReader>,
    partial: &Path,
    total: u64,
    opts: ReplayOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplaySummary, ReplayError> {
    let (mtu, events) = (opts.mtu, opts.events);
    let mut observed = Vec::new();
    let mut per_second = Vec::new();
    let mut out = Outputs::create(partial, &topo, opts.format)?;
    let names: Vec<String> = inputs
        .iter()
        .map(|i| i.path.display().to_string())
        .collect();
    let mut engine = Engine::new(topo);
    engine.set_eni_capture(true);
    for p in Link::ALL {
        engine.set_mtu(p, mtu[p.index()]);
    }
    let mut topo = engine.topology().clone();
    let path = partial.join("events.jsonl");
    let mut event_lines = match events {
        Some(_) => Some(BufWriter::new(
            fs::File::create(&path).map_err(out_err(&path))?,
        )),
        None => None,
    };
    let mut sources: Vec<CaptureSource> = readers
        .into_iter()
        .zip(inputs)
        .map(|(reader, i)| CaptureSource {
            reader,
            port: i.port,
        })
        .collect();
    let mut sources: Vec<&mut dyn Source> =
        sources.iter_mut().map(|s| s as &mut dyn Source).collect();
    let (mut frames, mut bytes) = (0u64, 0u64);
    let events = events.unwrap_or(&[]);
    let mut cause = String::new();
    driver::run_with_events(&mut engine, &mut sources, events, &mut |o| -> Result<
        (),
        ReplayError,
    > {
        match o {
            Output::Event(ev) => {
                if let Some(t) = &ev.topology {
                    topo = t.clone();
                }
                if let Some(w) = event_lines.as_mut() {
                    let line = report::event_line(&topo, &ev);
                    let err = |e: std::io::Error| ReplayError::Output {
                        path: path.clone(),
                        source: e,
                    };
                    serde_json::to_writer(&mut *w, &line).map_err(|e| err(e.into()))?;
                    w.write_all(b"\n").map_err(err)?;
                }
            }
            Output::Frame {
                origin: o,
                frame,
                verdict,
                eni_view,
                generated,
                ..
            } => {
                // The frames eipsim makes follow their cause: name it, with
                // its verdict and reason, in their pcapng comments.
                if generated > 0 && opts.format == OutFormat::PcapNg {
                    cause = format!(
                        "{} #{} ({}): {}",
                        o.port,
                        o.index,
                        names[o.input],
                        comment_verdict(&topo, o.port, &verdict)
                    );
                }
                bytes += frame.len() as u64 + 16;
                frames += 1;
                if verdict != Verdict::Held {
                    let at = (o.ts, o.port, &names[o.input][..], o.index);
                    out.record(&topo, at, frame, &verdict, eni_view, generated > 0)?;
                    count_second(&mut per_second, o.ts, &verdict);
                    if opts.observe {
                        observed.push(observe(&topo, at, frame, &verdict, generated > 0));
                    }
                }
                if frames % 4096 == 0 {
                    progress(bytes, total);
                }
            }
            Output::Transmit { ts, port, frame } => {
                let why = || {
                    format!(
                        "made by eipsim because of {cause}: {}",
                        crate::explain::describe::frame(frame)
                    )
                };
                out.ports[port.index()]
                    .write(ts, frame, why)
                    .map_err(out.io("port capture"))?;
            }
            Output::Released {
                origin: o,
                ts,
                released: r,
                ..
            } => {
                let view = r.eni_view.as_ref().map(|(e, f)| (*e, &f[..]));
                let at = (ts, o.port, &names[o.input][..], o.index);
                // A later fragment: never an ICMP error about it.
                out.record(&topo, at, &r.frame, &r.verdict, view, false)?;
                count_second(&mut per_second, ts, &r.verdict);
                if opts.observe {
                    observed.push(observe(&topo, at, &r.frame, &r.verdict, false));
                }
            }
        }
        Ok(())
    })?;
    progress(total, total);
    out.finish()?;
    if let Some(mut w) = event_lines {
        w.flush().map_err(out_err(&path))?;
    }
    let topo = engine.topology().clone();
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
    Ok(ReplaySummary {
        warnings: Vec::new(),
        frames,
        report,
        observed,
        per_second,
        topology: topo,
    })
}

/// A verdict for a pcapng comment: as `trace` says it, but a drop by its
/// reason's name alone (with the ENI and EIP it got to).
fn comment_verdict(topo: &Topology, in_port: Link, v: &Verdict) -> String {
    match *v {
        Verdict::Dropped { reason, eni, eip } => {
            let mut s = format!("dropped ({})", reason.name());
            if let Some(e) = eni {
                s.push_str(&format!(" at {}", topo.eni(e).name));
            }
            if let Some(e) = eip {
                s.push_str(&format!(", EIP {}", topo.eip(e).address));
            }
            s
        }
        _ => crate::explain::trace::verdict_text(topo, in_port, v),
    }
}

/// A frame's outcome for `--expect`: its verdict line, and the fields of
/// the frame it left as.
fn observe(
    topo: &Topology,
    at: (u64, Link, &str, u64),
    frame: &[u8],
    verdict: &Verdict,
    generated: bool,
) -> Observed {
    let (_, in_port, in_file, index) = at;
    Observed {
        line: report::verdict_line(topo, in_port, in_file, index, verdict, generated),
        // A fragmented packet: its headers as rewritten, which every
        // fragment carries.
        out: (verdict.sends_frame().is_some() || matches!(verdict, Verdict::Fragmented { .. }))
            .then(|| expect::out_fields(frame))
            .flatten(),
        desc: crate::explain::describe::frame(frame),
    }
}

/// Whether two paths name one existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The file in `--out-dir` listing what the last replay there wrote
/// (paths relative to the folder, one per line), so that the next one
/// removes only eipsim's own files.
pub const MANIFEST: &str = ".eipsim-outputs";

/// The files replay writes in `--out-dir` besides the captures (the last,
/// events.jsonl, only with `--events`).
pub const REPORT_FILES: [&str; 4] = [
    "verdicts.jsonl",
    "flows.jsonl",
    "report.json",
    "events.jsonl",
];

/// Moves the finished outputs from the hidden folder into place, records
/// them in [`MANIFEST`], and removes what the previous replay there wrote
/// and this one did not (see [`remove_stale`]). Returns warnings (a stale
/// file that could not be removed), never failing for them.
fn publish(
    partial: &Path,
    out_dir: &Path,
    events: bool,
    format: OutFormat,
    inputs: &[Input],
) -> Result<Vec<String>, ReplayError> {
    fs::create_dir_all(out_dir.join("eni")).map_err(out_err(out_dir))?;
    let mut written: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(partial.join("eni")).map_err(out_err(partial))? {
        let entry = entry.map_err(out_err(partial))?;
        let rel = Path::new("eni").join(entry.file_name());
        let to = out_dir.join(&rel);
        fs::rename(entry.path(), &to).map_err(out_err(&to))?;
        written.push(rel);
    }
    let ext = format.ext();
    let mut names: Vec<String> = Link::ALL
        .iter()
        .map(|p| format!("{}.{ext}", p.name()))
        .collect();
    let reports = if events { 4 } else { 3 };
    names.extend(REPORT_FILES[..reports].iter().map(|n| n.to_string()));
    for name in names {
        let to = out_dir.join(&name);
        fs::rename(partial.join(&name), &to).map_err(out_err(&to))?;
        written.push(PathBuf::from(name));
    }
    fs::remove_dir_all(partial).map_err(out_err(partial))?;
    let manifest = out_dir.join(MANIFEST);
    // A manifest that is a symbolic link is not ours: neither read nor
    // written through (the new one replaces the link by a rename).
    let ours = fs::symlink_metadata(&manifest).is_ok_and(|m| m.file_type().is_file());
    let before = if ours {
        fs::read_to_string(&manifest).unwrap_or_default()
    } else {
        String::new()
    };
    // Sorted: read_dir's order is the file system's.
    written.sort();
    let list: String = written
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    let fresh = out_dir.join(format!("{MANIFEST}.{}", std::process::id()));
    fs::write(&fresh, list).map_err(out_err(&fresh))?;
    fs::rename(&fresh, &manifest).map_err(out_err(&manifest))?;
    Ok(remove_stale(out_dir, &before, &written, inputs))
}

/// Whether `rel` (a manifest line) is a name replay writes: a port's
/// capture, verdicts.jsonl, flows.jsonl, report.json, events.jsonl, or
/// `eni/NAME.pcap` / `.pcapng` with NAME one plain file name. Anything
/// else in a manifest (edited, or not ours) is ignored.
fn is_output_name(rel: &str) -> bool {
    let capture = |n: &str| {
        n.strip_suffix(".pcap")
            .or_else(|| n.strip_suffix(".pcapng"))
            .is_some_and(|stem| !stem.is_empty())
    };
    match rel.split_once('/') {
        Some(("eni", name)) => capture(name) && !name.contains('/') && name != "." && name != "..",
        Some(_) => false,
        None => {
            REPORT_FILES.contains(&rel)
                || Link::ALL.iter().any(|p| {
                    rel == format!("{}.pcap", p.name()) || rel == format!("{}.pcapng", p.name())
                })
        }
    }
}

/// Removes the files the previous replay into `out_dir` listed in its
/// manifest (`before`) that this one did not write (an ENI capture of an
/// ENI no longer there, captures in the other format, an events.jsonl),
/// so the folder describes one run. Only names replay writes
/// ([`is_output_name`]), only regular files, nothing through a symbolic
/// link, never one of this run's inputs: a file eipsim did not write is
/// never touched. A removal that fails is a warning, returned.
fn remove_stale(
    out_dir: &Path,
    before: &str,
    written: &[PathBuf],
    inputs: &[Input],
) -> Vec<String> {
    let inputs: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|i| fs::canonicalize(&i.path).ok())
        .collect();
    let mut warnings = Vec::new();
    // An eni/ that is a symbolic link leads out of the folder: nothing
    // is removed through it.
    let eni_ours = fs::symlink_metadata(out_dir.join("eni")).is_ok_and(|m| m.file_type().is_dir());
    for line in before.lines() {
        let rel = Path::new(line);
        if !is_output_name(line)
            || (line.starts_with("eni/") && !eni_ours)
            || written.iter().any(|w| w == rel)
        {
            continue;
        }
        let path = out_dir.join(rel);
        let regular = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        let input = fs::canonicalize(&path).is_ok_and(|c| inputs.contains(&c));
        if regular
            && !input
            && let Err(e) = fs::remove_file(&path)
        {
            warnings.push(format!(
                "{}: left from an earlier replay, cannot be removed: {e}",
                path.display()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A killed replay's hidden folder with this process's pid is cleared,
    /// not published as this run's outputs.
    #[test]
    fn a_killed_run_s_partial_folder_is_not_published() {
        let out = std::env::temp_dir().join(format!("eipsim-partial-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        let stale = out.join(format!(".eipsim-partial-{}", std::process::id()));
        fs::create_dir_all(stale.join("eni")).unwrap();
        fs::write(stale.join("eni/ghost.pcap"), "old").unwrap();
        let text = fs::read_to_string("pcaps/demo/topology.toml").unwrap();
        let topo = Topology::from_toml(&text).unwrap();
        let inputs = [Input {
            port: Link::Instance,
            path: PathBuf::from("pcaps/demo/in/instance.pcap"),
        }];
        let opts = ReplayOptions {
            mtu: [None; 3],
            events: None,
            observe: false,
            format: OutFormat::Pcap,
        };
        replay(topo, &inputs, &out, opts, &mut |_, _| {}).unwrap();
        assert!(out.join("eni/eth0.pcap").exists());
        assert!(!out.join("eni/ghost.pcap").exists());
        assert!(!stale.exists());
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn seconds_are_counted_in_order_even_when_time_steps_back() {
        let fwd = Verdict::Forwarded {
            port: Link::Internet,
            eni: None,
            eip: None,
        };
        let drop = Verdict::drop(crate::engine::DropReason::NoRoute);
        let mut h = Vec::new();
        for (ts, v) in [
            (5_000_000_000, fwd),
            (5_900_000_000, drop),
            (8_000_000_000, fwd),
            (6_100_000_000, drop),
            (8_000_000_001, Verdict::Held),
        ] {
            count_second(&mut h, ts, &v);
        }
        let got: Vec<(u64, u64, u64)> = h
            .iter()
            .map(|s| (s.second, s.forwarded, s.dropped))
            .collect();
        assert_eq!(got, [(5, 1, 1), (6, 0, 1), (8, 1, 0)]);
    }
}
