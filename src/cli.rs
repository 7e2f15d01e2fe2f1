//! The command line: `eipsim check | replay | demo`.

use crate::config::Topology;
use crate::engine::{Counters, DropReason, Engine, Port, Verdict};
use crate::io::replay::{self, Input, ReplayError};
use crate::{describe, scenarios};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "eipsim",
    version,
    about = "Host packet-path simulator for a cloud instance with several ENIs and EIPs (NAT and cut-through)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a topology file against the product rules and summarise it.
    Check {
        /// The topology file (TOML).
        file: PathBuf,
    },
    /// Replay captures through the engine and write what came out.
    Replay {
        /// The topology file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// PORT=CAPTURE: a pcap or pcapng file of Ethernet frames arriving on
        /// PORT (instance, internet or vpc). Repeat for more inputs.
        #[arg(long = "in", value_name = "PORT=CAPTURE", required = true, value_parser = parse_input)]
        inputs: Vec<Input>,
        /// Where to write the per-port and per-ENI captures, report.json and
        /// verdicts.jsonl.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Run the built-in example and explain each packet.
    Demo,
}

fn parse_input(s: &str) -> Result<Input, String> {
    let (port, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not PORT=CAPTURE (for example instance=out.pcap)"))?;
    let port = Port::from_name(port)
        .ok_or_else(|| format!("unknown port {port:?}: use instance, internet or vpc"))?;
    if path.is_empty() {
        return Err(format!("no capture file after {port}="));
    }
    Ok(Input {
        port,
        path: PathBuf::from(path),
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => check(file),
        Command::Replay {
            config,
            inputs,
            out_dir,
        } => replay_cmd(config, inputs, out_dir),
        Command::Demo => demo(),
    }
}

fn check(file: PathBuf) -> ExitCode {
    match Topology::load(&file) {
        Ok(t) => {
            print!("{}", t.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} problem(s) found", e.errors.len());
            ExitCode::from(1)
        }
    }
}

fn replay_cmd(config: PathBuf, inputs: Vec<Input>, out_dir: PathBuf) -> ExitCode {
    let topo = match Topology::load(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let bar = progress_bar(&inputs);
    let mut on_progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let result = replay::replay(topo, &inputs, &out_dir, &mut on_progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(s) => {
            let f = &s.report["frames"];
            eprintln!(
                "replayed {} frame(s): {} forwarded, {} consumed, {} dropped; wrote {}",
                s.frames,
                f["forwarded"],
                f["consumed"],
                f["dropped"],
                out_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(ReplayError::Capture(e)) => {
            eprintln!("eipsim replay: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("eipsim replay: {e}");
            ExitCode::from(2)
        }
    }
}

/// A progress bar when stderr is a terminal and the input is large.
fn progress_bar(inputs: &[Input]) -> Option<indicatif::ProgressBar> {
    const LARGE: u64 = 16 << 20;
    let total: u64 = inputs
        .iter()
        .filter_map(|i| std::fs::metadata(&i.path).ok())
        .map(|m| m.len())
        .sum();
    if !std::io::stderr().is_terminal() || total < LARGE {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("replaying");
    Some(bar)
}

fn demo() -> ExitCode {
    let sc = scenarios::demo();
    let topo = Topology::from_toml(&sc.topology).expect("the built-in topology is valid");
    println!("eipsim demo: {}\n", sc.about);
    println!("Topology (the built-in example):");
    for line in topo.summary().lines() {
        println!("  {line}");
    }
    println!();
    let mut engine = Engine::new(topo.clone());
    for (i, step) in sc.steps.iter().enumerate() {
        let mut frame = step.frame.clone();
        let before = describe::frame(&frame);
        let v = engine.process(step.ts_ns, step.port, &mut frame, i as u64);
        println!("#{:<2} {}", i + 1, step.note);
        println!("    in  {:<8}  {before}", step.port.name());
        match v {
            Verdict::Forwarded { port, eni, eip } => {
                let via = eni.map(|e| topo.eni(e).name.clone()).unwrap_or_default();
                let eip = eip
                    .map(|e| {
                        format!(
                            ", EIP {} ({})",
                            topo.eip(e).address,
                            topo.eip(e).mode.name()
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "    out {:<8}  {}   [via {via}{eip}]",
                    port.name(),
                    describe::frame(&frame)
                );
            }
            Verdict::Consumed { reply: Some(p) } => {
                println!(
                    "    out {:<8}  {}   [answered by eipsim]",
                    p.name(),
                    describe::frame(&frame)
                );
            }
            Verdict::Consumed { reply: None } => println!("    consumed"),
            Verdict::Dropped { reason, .. } => {
                println!("    DROPPED: {}: {}", reason.name(), reason.explain());
            }
            Verdict::Held => println!("    held (a fragment waiting for its first)"),
        }
    }
    engine.flush();
    println!();
    print_counters(&topo, &engine.counters());
    ExitCode::SUCCESS
}

/// The counters as a short table.
pub fn print_counters(topo: &Topology, c: &Counters) {
    let f = &c.frames;
    println!(
        "Frames: {} received = {} forwarded + {} consumed + {} dropped{}",
        f.received,
        f.forwarded,
        f.consumed,
        f.dropped,
        if f.held > 0 {
            format!(" + {} held", f.held)
        } else {
            String::new()
        }
    );
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>10}",
        "", "rx pkts", "rx bytes", "tx pkts", "tx bytes"
    );
    let row = |name: String, t: &crate::engine::counters::Traffic| {
        println!(
            "{name:<18} {:>10} {:>10} {:>10} {:>10}",
            t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes
        );
    };
    for p in Port::ALL {
        row(format!("port {}", p.name()), c.port(p));
    }
    for (e, t) in topo.enis.iter().zip(&c.enis) {
        row(format!("eni {}", e.name), t);
    }
    for (e, t) in topo.eips.iter().zip(&c.eips) {
        row(format!("eip {}", e.address), t);
    }
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| c.drop_count(**r) > 0)
        .map(|r| format!("{} {}", r.name(), c.drop_count(*r)))
        .collect();
    println!(
        "Drops: {}",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    );
    let alg: Vec<String> = crate::config::AlgProtocol::ALL
        .iter()
        .filter_map(|p| {
            let a = c.alg_count(*p);
            (a.dropped + a.forwarded > 0).then(|| {
                format!(
                    "{} dropped {} forwarded {}",
                    p.name(),
                    a.dropped,
                    a.forwarded
                )
            })
        })
        .collect();
    if !alg.is_empty() {
        println!("ALG: {}", alg.join(", "));
    }
    println!(
        "Flows: {} created, {} active, {} expired",
        c.flows.created, c.flows.active, c.flows.expired
    );
}
