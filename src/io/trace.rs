//! `eipsim trace`: each packet's way through the engine, step by step.
//!
//! The steps are recorded by the forwarding code itself
//! ([`Engine::set_tracing`]), so a trace cannot disagree with replay.

use super::capture::{CaptureError, CaptureReader};
use super::replay::Input;
use crate::config::Topology;
use crate::engine::{Engine, Port, Step, Verdict};
use serde_json::{Value, json};

/// One packet's trace.
#[derive(Debug, Clone)]
pub struct PacketTrace {
    /// 1-based position in the merged input.
    pub number: usize,
    pub in_port: Port,
    pub in_file: String,
    /// 0-based within its file.
    pub index: u64,
    pub steps: Vec<Step>,
    pub verdict: Verdict,
}

/// Replays `inputs` (merged by timestamp, ties in `--in` order) with
/// tracing on; keeps the `only`-th packet (1-based) or all of them.
pub fn trace(
    topo: Topology,
    inputs: &[Input],
    mtu: [Option<u32>; 3],
    only: Option<usize>,
) -> Result<Vec<PacketTrace>, CaptureError> {
    let mut packets = Vec::new();
    for (k, i) in inputs.iter().enumerate() {
        let mut r = CaptureReader::open(&i.path)?;
        let mut buf = Vec::new();
        while let Some((ts, index)) = r.next_packet(&mut buf)? {
            packets.push((ts, k, index, buf.clone()));
        }
    }
    // Stable: equal timestamps keep file order, then --in order.
    packets.sort_by_key(|p| (p.0, p.1));
    let mut engine = Engine::new(topo);
    engine.set_tracing(true);
    for p in Port::ALL {
        engine.set_mtu(p, mtu[p.index()]);
    }
    let mut all: Vec<PacketTrace> = Vec::new();
    for (n, (ts, k, index, mut frame)) in packets.into_iter().enumerate() {
        let port = inputs[k].port;
        let verdict = engine.process(ts, port, &mut frame, n as u64);
        let steps = engine.take_trace();
        all.push(PacketTrace {
            number: n + 1,
            in_port: port,
            in_file: inputs[k].path.display().to_string(),
            index,
            steps,
            verdict,
        });
        while engine.poll_transmit().is_some() {}
        settle(&mut engine, &mut all, Some(n + 1));
    }
    engine.flush();
    settle(&mut engine, &mut all, None);
    Ok(all
        .into_iter()
        .filter(|t| only.is_none_or(|o| o == t.number))
        .collect())
}

/// Held fragments decided later: their trace gets the outcome.
fn settle(engine: &mut Engine, all: &mut [PacketTrace], by: Option<usize>) {
    while let Some(r) = engine.poll_released() {
        let Some(t) = all.get_mut(r.tag as usize) else {
            continue;
        };
        let text = match by {
            Some(n) => format!(
                "released when packet {n} came: {}",
                engine.verdict_text(t.in_port, &r.verdict)
            ),
            None => format!(
                "still waiting at the end of the input: {}",
                engine.verdict_text(t.in_port, &r.verdict)
            ),
        };
        t.steps.push(Step {
            name: "verdict",
            text,
        });
        t.verdict = r.verdict;
    }
}

impl PacketTrace {
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

    pub fn json(&self) -> Value {
        json!({
            "packet": self.number,
            "in_port": self.in_port.name(),
            "in_file": self.in_file,
            "index": self.index,
            "verdict": self.verdict.name(),
            "out_port": self.verdict.out_port().map(|p| p.name()),
            "reason": self.verdict.reason().map(|r| r.name()),
            "steps": self.steps.iter().map(|s| json!({"step": s.name, "text": s.text})).collect::<Vec<_>>(),
        })
    }
}
