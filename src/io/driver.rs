//! The one loop that feeds an [`Engine`] from recorded frames: replay,
//! trace, the demo, `route get` and the tests all use it, so each of them
//! exercises the same path (and the same order of outputs) as the others.
//!
//! Inputs are merged by timestamp; equal timestamps go in input order
//! (the order of `--in`), and each input keeps its own order. For each
//! frame the driver follows the engine's driving contract (see
//! [`crate::engine`]): process, report the frame, drain `poll_transmit`,
//! drain `poll_released`; at the end, `flush` and drain again.

use super::capture::{CaptureError, CaptureReader};
use super::events::{Outcome, TimedOp};
use crate::config::EniId;
use crate::engine::{Engine, Event, Link, Released, Verdict};
use rustc_hash::FxHashMap;

/// Where recorded frames come from: a capture on one port, or frames in
/// memory.
pub trait Source {
    /// Reads the next frame into `buf` (replacing its contents); returns
    /// its timestamp (ns since the epoch), the port it arrives on and its
    /// 0-based index within this source, or `None` at the end.
    fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<Option<(u64, Link, u64)>, CaptureError>;
}

/// A capture file whose frames all arrive on `port`.
pub struct CaptureSource {
    /// The open capture.
    pub reader: CaptureReader,
    /// The port every frame of it arrives on.
    pub port: Link,
}

impl Source for CaptureSource {
    fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<Option<(u64, Link, u64)>, CaptureError> {
        Ok(self
            .reader
            .next_packet(buf)?
            .map(|(ts, index)| (ts, self.port, index)))
    }
}

/// Frames in memory: (timestamp ns, port, frame), in order.
pub struct MemorySource<'a> {
    frames: std::slice::Iter<'a, (u64, Link, Vec<u8>)>,
    next: u64,
}

impl<'a> MemorySource<'a> {
    /// A source over `frames`, which must be in timestamp order.
    pub fn new(frames: &'a [(u64, Link, Vec<u8>)]) -> Self {
        MemorySource {
            frames: frames.iter(),
            next: 0,
        }
    }
}

impl Source for MemorySource<'_> {
    fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<Option<(u64, Link, u64)>, CaptureError> {
        let Some((ts, port, f)) = self.frames.next() else {
            return Ok(None);
        };
        buf.clear();
        buf.extend_from_slice(f);
        self.next += 1;
        Ok(Some((*ts, *port, self.next - 1)))
    }
}

/// Where a received frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// 1-based position in the merged input.
    pub number: usize,
    /// Which input (position in the `sources` slice).
    pub input: usize,
    /// 0-based within its input.
    pub index: u64,
    /// The port it arrived on.
    pub port: Link,
    /// Its timestamp, ns.
    pub ts: u64,
}

/// What the driver reports, in the order it happens.
#[derive(Debug)]
pub enum Output<'a> {
    /// A received frame and its verdict (also for [`Verdict::Held`]: its
    /// final verdict comes later as [`Output::Released`]). `frame` is the
    /// rewritten buffer; `events` are its trace (empty unless tracing).
    Frame {
        /// Where it came from.
        origin: Origin,
        /// The Ethernet frame after processing (rewritten if forwarded).
        frame: &'a [u8],
        /// The engine's verdict.
        verdict: Verdict,
        /// The frame as its ENI carried it, when ENI capture is on
        /// ([`Engine::eni_view`]).
        eni_view: Option<(EniId, &'a [u8])>,
        /// Its trace events.
        events: Vec<Event>,
        /// How many frames the engine made because of it (fragments, an
        /// ICMP error), which follow as [`Output::Transmit`].
        generated: usize,
    },
    /// A frame the engine made (a fragment, an ICMP error), sent on `port`
    /// at `ts`, the timestamp of the frame that caused it.
    Transmit {
        /// The cause's timestamp, ns.
        ts: u64,
        /// The port it is sent on.
        port: Link,
        /// The Ethernet frame.
        frame: &'a [u8],
    },
    /// A topology event applied (or refused) before the next frame.
    Event(Outcome<'a>),
    /// A held frame decided: when frame `by` (1-based) came, or at the end
    /// of the input (`None`); `ts` is that frame's timestamp (or the last).
    Released {
        /// Where the held frame came from.
        origin: Origin,
        /// The 1-based [`Origin::number`] of the frame whose processing
        /// released it; `None` at the end of the input.
        by: Option<usize>,
        /// That frame's timestamp (at the end, the latest timestamp), ns.
        ts: u64,
        /// The frame and its final verdict.
        released: Released,
    },
}

/// A frame read ahead for the merge: (timestamp, port, index, bytes).
type Head = (u64, Link, u64, Vec<u8>);

/// Runs every frame of `sources` through `engine`, handing each output to
/// `sink`; stops at the first error of a source or of the sink. Returns
/// the number of frames read.
pub fn run<E: From<CaptureError>>(
    engine: &mut Engine,
    sources: &mut [&mut dyn Source],
    sink: &mut dyn FnMut(Output) -> Result<(), E>,
) -> Result<u64, E> {
    run_with_events(engine, sources, &[], sink)
}

/// Like [`run`], applying `events` (in file order) on the packet clock:
/// each before the first frame at or after its time, the rest at the end
/// of the input (see [`crate::io::events`]).
pub fn run_with_events<E: From<CaptureError>>(
    engine: &mut Engine,
    sources: &mut [&mut dyn Source],
    events: &[TimedOp],
    sink: &mut dyn FnMut(Output) -> Result<(), E>,
) -> Result<u64, E> {
    // The next frame of each source, read ahead for the merge.
    let mut heads: Vec<Option<Head>> = Vec::with_capacity(sources.len());
    for s in sources.iter_mut() {
        heads.push(read(&mut **s, Vec::new())?);
    }
    // Relative event times count from the earliest frame of all inputs.
    let first_ts = heads.iter().flatten().map(|h| h.0).min().unwrap_or(0);
    let mut due: Vec<(u64, &TimedOp)> = events.iter().map(|e| (e.when.ns(first_ts), e)).collect();
    due.sort_by_key(|(t, e)| (*t, e.index));
    let mut due = due.into_iter().peekable();
    // Held frames by tag, to say where they came from when released.
    let mut held: FxHashMap<u64, Origin> = FxHashMap::default();
    let (mut n, mut last_ts) = (0usize, 0u64);
    let mut transmits = Vec::new();
    // The earliest frame; ties go to the earlier source.
    while let Some(k) = (0..heads.len())
        .filter(|&k| heads[k].is_some())
        .min_by_key(|&k| (heads[k].as_ref().map(|h| h.0), k))
    {
        let (ts, port, index, mut data) = heads[k].take().expect("chosen head exists");
        while let Some((at, ev)) = due.next_if(|(at, _)| *at <= ts) {
            sink(Output::Event(apply(engine, ev, at)))?;
        }
        n += 1;
        let origin = Origin {
            number: n,
            input: k,
            index,
            port,
            ts,
        };
        let tag = n as u64 - 1;
        let verdict = engine.process(ts, port, &mut data, tag);
        if verdict == Verdict::Held {
            held.insert(tag, origin);
        }
        let events = engine.take_trace();
        // Fragments and generated ICMP errors follow their cause.
        transmits.clear();
        transmits.extend(std::iter::from_fn(|| engine.poll_transmit()));
        sink(Output::Frame {
            origin,
            frame: &data,
            verdict,
            eni_view: engine.eni_view(),
            events,
            generated: transmits.len(),
        })?;
        for t in transmits.drain(..) {
            sink(Output::Transmit {
                ts,
                port: t.port,
                frame: &t.frame,
            })?;
        }
        drain(engine, &mut held, Some(n), ts, sink)?;
        last_ts = last_ts.max(ts);
        // The buffer is reused for the next frame of the same source.
        heads[k] = read(&mut *sources[k], data)?;
    }
    for (at, ev) in due {
        sink(Output::Event(apply(engine, ev, at)))?;
    }
    engine.flush();
    drain(engine, &mut held, None, last_ts, sink)?;
    Ok(n as u64)
}

/// Applies one event at `at` (ns): the operation is checked against the
/// engine's topology, and if it holds the engine takes the result.
pub fn apply<'a>(engine: &mut Engine, event: &'a TimedOp, at: u64) -> Outcome<'a> {
    let result = engine
        .topology()
        .apply(&event.op)
        .map(|t| engine.apply(t, at));
    engine.count_event(&result);
    Outcome {
        event,
        ts: at,
        topology: result.is_ok().then(|| engine.topology().clone()),
        result,
    }
}

fn read(s: &mut dyn Source, mut buf: Vec<u8>) -> Result<Option<Head>, CaptureError> {
    Ok(s.next_frame(&mut buf)?
        .map(|(ts, port, index)| (ts, port, index, buf)))
}

fn drain<E>(
    engine: &mut Engine,
    held: &mut FxHashMap<u64, Origin>,
    by: Option<usize>,
    ts: u64,
    sink: &mut dyn FnMut(Output) -> Result<(), E>,
) -> Result<(), E> {
    while let Some(r) = engine.poll_released() {
        let Some(origin) = held.remove(&r.tag) else {
            continue; // not a tag this driver gave: nothing to report
        };
        sink(Output::Released {
            origin,
            by,
            ts,
            released: r,
        })?;
    }
    Ok(())
}
