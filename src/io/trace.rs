//! `eipsim trace`: each packet's way through the engine, step by step.
//!
//! The events are recorded by the forwarding code itself
//! ([`Engine::set_tracing`]) while the one driver ([`super::driver`])
//! replays the inputs, so a trace cannot disagree with replay. Words come
//! from [`crate::explain::trace`].

use super::capture::{CaptureError, CaptureReader};
use super::driver::{self, CaptureSource, Output, Source};
use super::events::TimedOp;
use super::replay::Input;
use crate::config::Topology;
use crate::engine::{Engine, Event, Link, Verdict};
use crate::explain;
use serde_json::{Value, json};

/// One packet's trace.
#[derive(Debug, Clone)]
pub struct PacketTrace {
    /// 1-based position in the merged input.
    pub number: usize,
    /// The port it arrived on.
    pub in_port: Link,
    /// The capture it came from, as given to `--in`.
    pub in_file: String,
    /// 0-based within its file.
    pub index: u64,
    /// What each stage decided, in order, with its words.
    pub steps: Vec<Step>,
    /// Its final verdict (for a held fragment, the one it got when
    /// released).
    pub verdict: Verdict,
}

/// One event of a packet's trace and its sentence.
#[derive(Debug, Clone)]
pub struct Step {
    /// The step name ([`Event::step`]).
    pub name: &'static str,
    /// The sentence ([`explain::trace::text`]).
    pub text: String,
    /// The event itself.
    pub event: Event,
}

impl Step {
    pub(crate) fn new(topo: &Topology, event: Event) -> Step {
        Step {
            name: event.step(),
            text: explain::trace::text(topo, &event),
            event,
        }
    }
}

/// A topology event in a trace: its line(s) and its JSON.
#[derive(Debug, Clone)]
pub struct EventTrace {
    /// The words (`eipsim trace` prints them in time order).
    pub text: String,
    /// The events.jsonl line, with `"event": "topology"`.
    pub json: Value,
}

/// What `trace --events` prints, in time order.
#[derive(Debug, Clone)]
pub enum TraceItem {
    /// A packet's trace.
    Packet(PacketTrace),
    /// A topology event.
    Event(EventTrace),
}

impl TraceItem {
    /// As `eipsim trace` prints it.
    pub fn text(&self) -> String {
        match self {
            TraceItem::Packet(p) => p.text(),
            TraceItem::Event(e) => e.text.clone(),
        }
    }

    /// As `eipsim trace --json` prints it (one line).
    pub fn json(&self) -> Value {
        match self {
            TraceItem::Packet(p) => p.json(),
            TraceItem::Event(e) => e.json.clone(),
        }
    }
}

/// Replays `inputs` (merged by timestamp, ties in `--in` order) with
/// tracing on; keeps the `only`-th packet (1-based) or all of them.
pub fn trace(
    topo: Topology,
    inputs: &[Input],
    mtu: [Option<u32>; 3],
    only: Option<usize>,
) -> Result<Vec<PacketTrace>, CaptureError> {
    Ok(trace_with_events(topo, inputs, mtu, only, &[])?
        .into_iter()
        .filter_map(|i| match i {
            TraceItem::Packet(p) => Some(p),
            TraceItem::Event(_) => None,
        })
        .collect())
}

/// The inputs opened (every one before any is read) and an engine for
/// `topo` with tracing on and the ports' MTUs.
fn traced_engine(
    topo: Topology,
    inputs: &[Input],
    mtu: [Option<u32>; 3],
) -> Result<(Vec<CaptureSource>, Engine), CaptureError> {
    let mut sources = Vec::new();
    for i in inputs {
        sources.push(CaptureSource {
            reader: CaptureReader::open(&i.path)?,
            port: i.port,
        });
    }
    let mut engine = Engine::new(topo);
    engine.set_tracing(true);
    for p in Link::ALL {
        engine.set_mtu(p, mtu[p.index()]);
    }
    Ok((sources, engine))
}

/// Like [`trace`], with topology `events` applied on the packet clock and
/// listed among the packets in time order (with `only`, just the packet).
pub fn trace_with_events(
    topo: Topology,
    inputs: &[Input],
    mtu: [Option<u32>; 3],
    only: Option<usize>,
    events: &[TimedOp],
) -> Result<Vec<TraceItem>, CaptureError> {
    let (mut sources, mut engine) = traced_engine(topo, inputs, mtu)?;
    let mut sources: Vec<&mut dyn Source> =
        sources.iter_mut().map(|s| s as &mut dyn Source).collect();
    let mut topo = engine.topology().clone();
    let mut all: Vec<TraceItem> = Vec::new();
    // The position in `all` of each packet, by its 1-based number.
    let mut at: Vec<usize> = Vec::new();
    driver::run_with_events(&mut engine, &mut sources, events, &mut |o| -> Result<
        (),
        CaptureError,
    > {
        match o {
            Output::Event(ev) => {
                if let Some(t) = &ev.topology {
                    topo = t.clone();
                }
                let mut json = super::report::event_line(&topo, &ev);
                json["event"] = json!("topology");
                all.push(TraceItem::Event(EventTrace {
                    text: explain::trace::event_text(&topo, &ev),
                    json,
                }));
            }
            Output::Frame {
                origin,
                verdict,
                events,
                ..
            } => {
                at.push(all.len());
                all.push(TraceItem::Packet(PacketTrace {
                    number: origin.number,
                    in_port: origin.port,
                    in_file: inputs[origin.input].path.display().to_string(),
                    index: origin.index,
                    steps: events.into_iter().map(|e| Step::new(&topo, e)).collect(),
                    verdict,
                }));
            }
            // Held fragments decided later: their trace gets the outcome.
            Output::Released {
                origin,
                by,
                released,
                ..
            } => {
                if let Some(TraceItem::Packet(t)) =
                    at.get(origin.number - 1).and_then(|&i| all.get_mut(i))
                {
                    let ev = Event::Released {
                        in_port: t.in_port,
                        by,
                        verdict: released.verdict,
                    };
                    t.steps.push(Step::new(&topo, ev));
                    t.verdict = released.verdict;
                }
            }
            Output::Transmit { .. } => {}
        }
        Ok(())
    })?;
    Ok(all
        .into_iter()
        .filter(|i| match (i, only) {
            (_, None) => true,
            (TraceItem::Packet(t), Some(o)) => t.number == o,
            (TraceItem::Event(_), Some(_)) => false,
        })
        .collect())
}

impl PacketTrace {
    /// The trace as `eipsim trace` prints it: a header line, then one line
    /// per event (`=>` marks the last).
    pub fn text(&self) -> String {
        let mut s = format!(
            "packet {} ({} #{} on {})\n",
            self.number, self.in_file, self.index, self.in_port
        );
        let n = self.steps.len();
        for (i, st) in self.steps.iter().enumerate() {
            let mark = if i + 1 == n { "=>" } else { "  " };
            s.push_str(&format!("  {mark} {:<9} {}\n", st.name, st.text));
        }
        s
    }

    /// The trace as one JSON object (`trace --json`): each of `steps` has
    /// `step` and `text`, plus `event` and the event's fields.
    pub fn json(&self) -> Value {
        json!({
            "packet": self.number,
            "in_port": self.in_port.name(),
            "in_file": self.in_file,
            "index": self.index,
            "verdict": self.verdict.name(),
            "out_port": self.verdict.out_port().map(|p| p.name()),
            "reason": self.verdict.reason().map(|r| r.name()),
            "steps": self.steps.iter().map(|s| explain::trace::json(&s.event, &s.text)).collect::<Vec<_>>(),
        })
    }
}

/// One path through the stages and how many packets took it (`trace
/// --summary`, like VPP's tracepath).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGroup {
    /// The steps, in order, each once where it repeats back to back.
    pub path: Vec<&'static str>,
    /// The verdict's name (`forwarded`, `dropped`, ...).
    pub verdict: &'static str,
    /// The drop reason, if dropped.
    pub reason: Option<&'static str>,
    /// The port it left on, if it left.
    pub out_port: Option<&'static str>,
    /// Packets that took it.
    pub count: usize,
    /// The first of them (1-based packet number).
    pub example: usize,
}

/// Path groups as they are counted: a packet joins its group by its
/// step names (back-to-back repeats once) and final verdict.
#[derive(Default)]
struct Groups {
    at: std::collections::HashMap<GroupKey, usize>,
    list: Vec<PathGroup>,
}

type GroupKey = (
    Vec<&'static str>,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

impl Groups {
    fn add(&mut self, mut path: Vec<&'static str>, verdict: &Verdict, number: usize) {
        path.dedup();
        let key = (
            path,
            verdict.name(),
            verdict.reason().map(|r| r.name()),
            verdict.out_port().map(|p| p.name()),
        );
        match self.at.get(&key) {
            Some(&i) => {
                let g = &mut self.list[i];
                g.count += 1;
                g.example = g.example.min(number);
            }
            None => {
                self.at.insert(key.clone(), self.list.len());
                self.list.push(PathGroup {
                    path: key.0,
                    verdict: key.1,
                    reason: key.2,
                    out_port: key.3,
                    count: 1,
                    example: number,
                });
            }
        }
    }

    /// Most packets first, then by their first packet.
    fn sorted(mut self) -> Vec<PathGroup> {
        self.list
            .sort_by_key(|g| (std::cmp::Reverse(g.count), g.example));
        self.list
    }
}

/// Groups traces by the path they took and their verdict: most packets
/// first, then by their first packet.
pub fn summary(traces: &[PacketTrace]) -> Vec<PathGroup> {
    let mut groups = Groups::default();
    for t in traces {
        groups.add(
            t.steps.iter().map(|s| s.name).collect(),
            &t.verdict,
            t.number,
        );
    }
    groups.sorted()
}

/// [`summary`] of every packet of the inputs (with `events` applied, as
/// [`trace_with_events`] does) and the number of packets, counted as the
/// replay goes: memory grows with the distinct paths and the fragments
/// still held, not with the packets, and no step is put into words (for
/// `trace --summary` and `replay --html` on large captures).
pub fn summary_with_events(
    topo: Topology,
    inputs: &[Input],
    mtu: [Option<u32>; 3],
    events: &[TimedOp],
) -> Result<(Vec<PathGroup>, usize), CaptureError> {
    let (mut sources, mut engine) = traced_engine(topo, inputs, mtu)?;
    let mut sources: Vec<&mut dyn Source> =
        sources.iter_mut().map(|s| s as &mut dyn Source).collect();
    let mut groups = Groups::default();
    let mut packets = 0;
    // Held fragments, by packet number, until they are decided.
    let mut held: std::collections::BTreeMap<usize, (Link, Vec<&'static str>)> =
        std::collections::BTreeMap::new();
    driver::run_with_events(&mut engine, &mut sources, events, &mut |o| -> Result<
        (),
        CaptureError,
    > {
        match o {
            Output::Frame {
                origin,
                verdict,
                events,
                ..
            } => {
                packets += 1;
                let path: Vec<&'static str> = events.iter().map(Event::step).collect();
                if matches!(verdict, Verdict::Held) {
                    held.insert(origin.number, (origin.port, path));
                } else {
                    groups.add(path, &verdict, origin.number);
                }
            }
            Output::Released {
                origin,
                by,
                released,
                ..
            } => {
                if let Some((in_port, mut path)) = held.remove(&origin.number) {
                    let ev = Event::Released {
                        in_port,
                        by,
                        verdict: released.verdict,
                    };
                    path.push(ev.step());
                    groups.add(path, &released.verdict, origin.number);
                }
            }
            Output::Event(_) | Output::Transmit { .. } => {}
        }
        Ok(())
    })?;
    for (number, (_, path)) in held {
        groups.add(path, &Verdict::Held, number);
    }
    Ok((groups.sorted(), packets))
}

impl PathGroup {
    /// As `trace --summary` prints it: `  12  forwarded to internet  (e.g.
    /// packet 9)` and the path on the next line.
    pub fn text(&self) -> String {
        let outcome = match (self.reason, self.out_port) {
            (Some(r), _) => format!("{} ({r})", self.verdict),
            // A consumed frame's port is where its reply (an ARP reply, an
            // echo reply) went, as the trace's verdict line says.
            (None, Some(p)) if self.verdict == "consumed" => format!("consumed: reply sent on {p}"),
            (None, Some(p)) => format!("{} to {p}", self.verdict),
            (None, None) => self.verdict.to_string(),
        };
        format!(
            "{:>6}  {outcome}  (e.g. packet {})\n        {}\n",
            self.count,
            self.example,
            self.path.join(" > ")
        )
    }

    /// As `trace --summary --json` prints it (one line).
    pub fn json(&self) -> Value {
        json!({
            "count": self.count,
            "verdict": self.verdict,
            "reason": self.reason,
            "out_port": self.out_port,
            "path": self.path,
            "example": self.example,
        })
    }
}
