//! Writes the golden captures under pcaps/ from the built-in scenarios.
//!
//!     cargo run --example gen-pcaps [-- OUT_DIR]      (default: pcaps)
//!
//! For each scenario: topology.toml, events.toml (its topology events, if
//! any), in/PORT.pcap (the traffic),
//! expect.jsonl (what must happen, written by hand in fixtures/src/ and
//! src/demo.rs), and expected/ (what `eipsim replay` produced, and
//! expected/trace.txt, what `eipsim trace` explains, reviewed and checked
//! in).
//! tests/golden.rs replays the inputs and compares byte for byte.

use eipsim::config::Topology;
use eipsim::io::capture::write_pcap;
use eipsim::io::replay::{Input, ReplayOptions, replay};
use eipsim_fixtures::ScenarioExt;
use std::path::PathBuf;

fn topo_again(text: &str) -> Topology {
    Topology::from_toml(text).expect("checked above")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "pcaps".into()));
    for sc in eipsim_fixtures::all() {
        let dir = root.join(sc.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in"))?;
        std::fs::write(dir.join("topology.toml"), &sc.topology)?;
        std::fs::write(dir.join("expect.jsonl"), sc.expectations_jsonl())?;
        let mut inputs = Vec::new();
        for (port, frames) in sc.inputs() {
            let path = dir.join("in").join(format!("{}.pcap", port.name()));
            write_pcap(&path, &frames)?;
            inputs.push(Input { port, path });
        }
        let topo = Topology::from_toml(&sc.topology).map_err(|e| format!("{}: {e:?}", sc.name))?;
        let events = match sc.events_toml() {
            Some(text) => {
                std::fs::write(dir.join("events.toml"), &text)?;
                Some(eipsim::io::events::parse(&text).map_err(|e| format!("{}: {e:?}", sc.name))?)
            }
            None => None,
        };
        let opts = ReplayOptions {
            mtu: sc.mtu,
            events: events.as_deref(),
            observe: false,
            format: Default::default(),
        };
        replay(topo, &inputs, &dir.join("expected"), opts, &mut |_, _| {})?;
        // The step-by-step explanation of every packet (eipsim trace).
        let traces = eipsim::io::trace::trace_with_events(
            topo_again(&sc.topology),
            &inputs,
            sc.mtu,
            None,
            events.as_deref().unwrap_or(&[]),
        )?;
        let text: String = traces.iter().map(|t| t.text() + "\n").collect();
        std::fs::write(dir.join("expected").join("trace.txt"), text)?;
        println!("{}: {} packets ({})", sc.name, sc.steps.len(), sc.about);
    }
    Ok(())
}
