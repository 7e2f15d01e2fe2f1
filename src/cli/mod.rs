//! The command line: `eipsim check | replay | run | demo | trace | show |
//! route get | reach | bench engine`.

use crate::config::Topology;
use crate::demo;
use crate::engine::{Counters, DropReason, Engine, Link, Verdict};
use crate::explain::describe;
use crate::io::replay::{self, Input, ReplayError};
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
        /// PORT=BYTES: a port's MTU (default: none, packets of any size
        /// pass); larger packets are fragmented, or answered with an ICMP
        /// fragmentation-needed when DF is set.
        #[arg(long = "mtu", value_name = "PORT=BYTES", value_parser = parse_mtu)]
        mtus: Vec<(Link, u32)>,
        /// A file of topology events ([[event]]: at, op, ...) applied on
        /// the packet clock; writes events.jsonl too.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Expectations (JSON lines with verdicts.jsonl's keys and `out`):
        /// exit 1 listing every one that does not hold.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
        /// Write this replay's results as an expectations file to start
        /// from.
        #[arg(long, value_name = "FILE")]
        expect_write: Option<PathBuf>,
        /// The output captures' format: pcap (the default), or pcapng with
        /// each port's (or ENI's) name and a comment per packet saying what
        /// eipsim decided (Wireshark's frame.comment).
        #[arg(long, default_value = "pcap", value_parser = ["pcap", "pcapng"])]
        format: String,
        /// Also write one self-contained HTML page: the topology diagram,
        /// packets and bytes per port, ENI and EIP, drop reasons, packets
        /// per second and the paths summary (replays the inputs a second
        /// time, traced).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Run the engine live between TAP devices (or existing interfaces,
    /// through AF_PACKET) until SIGINT or SIGTERM.
    Run(run::RunArgs),
    /// Run the built-in example and explain each packet.
    Demo,
    /// Explain each packet of captures, step by step, from the code that
    /// forwards it.
    Trace {
        /// The topology file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// PORT=CAPTURE, as for replay.
        #[arg(long = "in", value_name = "PORT=CAPTURE", required = true, value_parser = parse_input)]
        inputs: Vec<Input>,
        /// Only the Nth packet (1-based, in the merged order).
        #[arg(long)]
        packet: Option<usize>,
        /// One JSON line per packet instead of text.
        #[arg(long)]
        json: bool,
        /// PORT=BYTES, as for replay.
        #[arg(long = "mtu", value_name = "PORT=BYTES", value_parser = parse_mtu)]
        mtus: Vec<(Link, u32)>,
        /// Topology events, as for replay; printed among the packets in
        /// time order.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Packets grouped by the path they took through the stages and
        /// their verdict, with counts and an example each (like VPP's
        /// tracepath), instead of each packet.
        #[arg(long, conflicts_with = "packet")]
        summary: bool,
    },
    /// Show the topology: ENIs as the OS shows them, EIPs, routes.
    Show {
        /// The topology file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// text (like ip addr / ip route), json, or dot (Graphviz).
        #[arg(long, default_value = "text", value_parser = ["text", "json", "dot"])]
        format: String,
    },
    /// Routing questions, answered by the engine (like `ip route`).
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Every flow at once: what reaches each address, what each reaches.
    Reach(reach::ReachArgs),
    /// The same traffic through two topologies: every packet whose fate
    /// differs, grouped by the kind of change. Exit 0 no difference, 1
    /// differences, 2 error.
    Diff {
        /// The topology before, then the one after (give it twice).
        #[arg(long = "config", required = true, num_args = 1)]
        configs: Vec<PathBuf>,
        /// PORT=CAPTURE, as for replay; without any, probes generated from
        /// both topologies.
        #[arg(long = "in", value_name = "PORT=CAPTURE", value_parser = parse_input)]
        inputs: Vec<Input>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change a running `eipsim run` (attach/detach an ENI, move an EIP,
    /// routes, security groups) or ask it (show topology|flows|counters).
    Ctl(ctl::CtlArgs),
    /// Measure forwarding throughput.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Synthetic traffic through the engine in memory, on 1 to N workers
    /// (each with its own engine and flows, as live mode's workers).
    Engine {
        /// Flows per worker.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        flows: u64,
        /// nat-out, nat-in, cut-through, ecmp, vpc, or mix (all of them).
        #[arg(long, default_value = "nat-out", value_parser = parse_path)]
        path: crate::bench::workload::Path,
        /// Frame size in bytes as the TAP device carries it (Ethernet
        /// header and IP packet, no FCS: 60 is a 64-byte frame on the
        /// wire), or imix (7:4:1 of 64, 570, 1518 bytes on the wire).
        #[arg(long, default_value = "60", value_parser = parse_size)]
        size: crate::bench::workload::FrameSize,
        /// The most workers: runs are made with 1, 2, ... N (default: the
        /// number of cores).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        workers: Option<u16>,
        /// Seconds each run measures (0.01 to 3600).
        #[arg(long, default_value_t = 3.0, value_parser = parse_bench_seconds)]
        seconds: f64,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The same iperf3 tests through the kernel's nftables 1:1 NAT and
    /// through `eipsim run`, in namespaces it makes (root), with the ratio.
    Live {
        #[command(flatten)]
        args: crate::bench::live::Args,
    },
}

fn parse_path(s: &str) -> Result<crate::bench::workload::Path, String> {
    crate::bench::workload::Path::from_cli_name(s).ok_or_else(|| {
        format!("unknown path {s:?}: use nat-out, nat-in, cut-through, ecmp, vpc or mix")
    })
}

/// Where a file is or would be: its folder made absolute (symbolic links
/// resolved where the folder exists) and its name; `None` without a name.
fn place(p: &std::path::Path) -> Option<PathBuf> {
    let name = p.file_name()?;
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let dir = std::fs::canonicalize(parent)
        .or_else(|_| std::path::absolute(parent))
        .ok()?;
    Some(dir.join(name))
}

/// The frames in the captures, for an error message (`None` if one
/// cannot be read).
fn count_frames(inputs: &[crate::io::replay::Input]) -> Option<usize> {
    let mut n = 0;
    let mut buf = Vec::new();
    for i in inputs {
        let mut r = crate::io::capture::CaptureReader::open(&i.path).ok()?;
        while r.next_packet(&mut buf).ok()?.is_some() {
            n += 1;
        }
    }
    Some(n)
}

fn parse_bench_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.01..=3600.0).contains(&x) => Ok(x),
        Ok(x) if x.is_finite() => Err(format!("{s} seconds is outside 0.01..=3600")),
        _ => Err(format!("{s:?} is not a number of seconds (0.01 to 3600)")),
    }
}

fn parse_size(s: &str) -> Result<crate::bench::workload::FrameSize, String> {
    use crate::bench::workload::FrameSize;
    if s == "imix" {
        return Ok(FrameSize::Imix);
    }
    match s.parse::<usize>() {
        Ok(n) if (42..=1514).contains(&n) => Ok(FrameSize::Bytes(n)),
        Ok(n) => Err(format!(
            "{n} bytes is outside 42..=1514 (one Ethernet frame without FCS)"
        )),
        Err(_) => Err(format!("{s:?} is neither a number of bytes nor imix")),
    }
}

#[derive(Subcommand)]
enum RouteCommand {
    /// Which route, ENI, source and public address a packet to DST gets.
    Get {
        /// The destination address.
        dst: std::net::Ipv4Addr,
        /// The topology file (default: the built-in example of `demo`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The application's source address (default: the primary ENI's
        /// primary private IP); with --inbound, the remote host (required).
        #[arg(long, required_if_eq("inbound", "true"))]
        from: Option<std::net::Ipv4Addr>,
        /// Ask about a packet arriving at DST (an EIP, or a private IP from
        /// the VPC) from --from, instead of one the instance sends.
        #[arg(long)]
        inbound: bool,
        /// Also answer for the reply, as the flow table handles it (an
        /// inbound connection's reply leaves by the ENI and EIP it came in
        /// on, whatever the routes say).
        #[arg(long)]
        reply: bool,
        /// The probe's protocol: tcp, udp or icmp (an echo request).
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "icmp"])]
        proto: String,
        /// The source port (tcp, udp), or the echo identifier (icmp).
        #[arg(long, default_value_t = 50000)]
        sport: u16,
        /// The destination port, tcp and udp only (default 80).
        #[arg(long)]
        dport: Option<u16>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// println! that ignores a closed stdout (`eipsim demo | head`): output
/// nobody reads is not worth a panic.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

// After `say!`, which they use.
mod ctl;
mod reach;
mod run;

/// `--mtu PORT=BYTES` options as a per-port table (None: no limit).
fn mtu_per_port(mtus: Vec<(Link, u32)>) -> [Option<u32>; 3] {
    let mut mtu = [None; 3];
    for (p, m) in mtus {
        mtu[p.index()] = Some(m);
    }
    mtu
}

/// Loads a topology file, printing every problem (exit 1 follows).
fn load(config: &std::path::Path) -> Option<Topology> {
    match Topology::load(config) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

fn parse_mtu(s: &str) -> Result<(Link, u32), String> {
    let (port, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not PORT=BYTES (for example internet=1500)"))?;
    let port = Link::from_name(port)
        .ok_or_else(|| format!("unknown port {port:?}: use instance, internet or vpc"))?;
    let n: u32 = n
        .parse()
        .map_err(|_| format!("MTU {n:?} is not a number"))?;
    if !(576..=65535).contains(&n) {
        return Err(format!("MTU {n} is outside 576..=65535"));
    }
    Ok((port, n))
}

fn parse_input(s: &str) -> Result<Input, String> {
    let (port, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not PORT=CAPTURE (for example instance=out.pcap)"))?;
    let port = Link::from_name(port)
        .ok_or_else(|| format!("unknown port {port:?}: use instance, internet or vpc"))?;
    if path.is_empty() {
        return Err(format!("no capture file after {port}="));
    }
    Ok(Input {
        port,
        path: PathBuf::from(path),
    })
}

/// Parses the arguments and runs the subcommand. Exit status: 0 done; 1 the
/// topology is invalid (or `trace` has no such packet); 2 a usage, capture,
/// output or device error; 3 `run` stopped but a thread had crashed.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => check(file),
        Command::Replay {
            config,
            inputs,
            out_dir,
            mtus,
            events,
            expect,
            expect_write,
            format,
            html,
        } => replay_cmd(
            config,
            inputs,
            out_dir,
            mtus,
            events,
            (expect, expect_write),
            (format == "pcapng", html),
        ),
        Command::Run(args) => run::run_cmd(args),
        Command::Reach(args) => reach::reach_cmd(args),
        Command::Ctl(args) => ctl::ctl_cmd(args),
        Command::Diff {
            configs,
            inputs,
            json,
        } => diff_cmd(configs, inputs, json),
        Command::Demo => demo(),
        Command::Trace {
            config,
            inputs,
            packet,
            json,
            mtus,
            events,
            summary,
        } => {
            let Some(topo) = load(&config) else {
                return ExitCode::from(1);
            };
            let events = match load_events(events.as_deref()) {
                Ok(e) => e.unwrap_or_default(),
                Err(code) => return code,
            };
            let mtu = mtu_per_port(mtus);
            if summary && packet.is_none() {
                // The whole capture: counted as it goes, no trace kept.
                return match crate::io::trace::summary_with_events(topo, &inputs, mtu, &events) {
                    Ok((_, 0)) => {
                        // As plain `trace` does: nothing to show is exit 1.
                        eprintln!("eipsim trace: the captures hold no packet");
                        ExitCode::from(1)
                    }
                    Ok((groups, packets)) => {
                        if !json {
                            say!("{packets} packet(s) took {} path(s):", groups.len());
                        }
                        for g in groups {
                            if json {
                                say!("{}", g.json());
                            } else {
                                say!("{}", g.text().trim_end());
                            }
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("eipsim trace: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            match crate::io::trace::trace_with_events(topo, &inputs, mtu, packet, &events) {
                Ok(traces) => {
                    if traces.is_empty() {
                        match (packet, count_frames(&inputs)) {
                            (Some(n), Some(total)) => eprintln!(
                                "eipsim trace: no packet {n}: the captures hold {total}, numbered from 1 (verdicts.jsonl's index counts from 0 within each file)"
                            ),
                            _ => eprintln!("eipsim trace: the captures hold no packet"),
                        }
                        return ExitCode::from(1);
                    }
                    if summary {
                        let packets: Vec<crate::io::trace::PacketTrace> = traces
                            .into_iter()
                            .filter_map(|i| match i {
                                crate::io::trace::TraceItem::Packet(p) => Some(p),
                                crate::io::trace::TraceItem::Event(_) => None,
                            })
                            .collect();
                        let groups = crate::io::trace::summary(&packets);
                        if !json {
                            say!("{} packet(s) took {} path(s):", packets.len(), groups.len());
                        }
                        for g in groups {
                            if json {
                                say!("{}", g.json());
                            } else {
                                say!("{}", g.text().trim_end());
                            }
                        }
                        return ExitCode::SUCCESS;
                    }
                    for t in traces {
                        if json {
                            say!("{}", t.json());
                        } else {
                            say!("{}", t.text());
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("eipsim trace: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Show { config, format } => match Topology::load(&config) {
            Ok(t) => {
                match format.as_str() {
                    "json" => say!(
                        "{}",
                        serde_json::to_string_pretty(&crate::explain::show::json(&t))
                            .expect("JSON")
                    ),
                    "dot" => say!("{}", crate::explain::show::dot(&t).trim_end()),
                    _ => say!("{}", crate::explain::show::text(&t).trim_end()),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Bench {
            command:
                BenchCommand::Engine {
                    flows,
                    path,
                    size,
                    workers,
                    seconds,
                    json,
                },
        } => {
            let b = crate::bench::EngineBench {
                flows: flows as usize,
                path,
                size,
                workers: workers.map_or_else(
                    || std::thread::available_parallelism().map_or(1, |n| n.get()),
                    usize::from,
                ),
                seconds,
            };
            let progress = &mut |k: usize| {
                eprintln!(
                    "eipsim bench engine: {k} worker(s), setting up {} flows each, then {} s",
                    b.flows, b.seconds
                )
            };
            match crate::bench::run(&b, progress) {
                Ok(runs) if json => say!("{}", crate::bench::json(&b, &runs)),
                Ok(runs) => say!("{}", crate::bench::text(&b, &runs).trim_end()),
                Err(e) => {
                    eprintln!("eipsim bench engine: {e}");
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Bench {
            command: BenchCommand::Live { args },
        } => crate::bench::live::main(&args),
        Command::Route {
            command:
                RouteCommand::Get {
                    dst,
                    config,
                    from,
                    inbound,
                    reply,
                    proto,
                    sport,
                    dport,
                    json,
                },
        } => {
            let topo = match config {
                Some(c) => match Topology::load(&c) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(1);
                    }
                },
                None => Topology::from_toml(&demo::demo().topology)
                    .expect("the built-in topology is valid"),
            };
            if proto == "icmp" && dport.is_some() {
                eprintln!(
                    "eipsim route get: --dport applies to tcp and udp; an icmp probe is an echo request (--sport sets its identifier)"
                );
                return ExitCode::from(2);
            }
            let q = crate::explain::RouteQuery {
                dst,
                from,
                proto: crate::explain::Proto::from_name(&proto).expect("clap checked"),
                sport,
                dport: dport.unwrap_or(80),
                inbound,
                reply,
            };
            let a = crate::explain::route_get(&topo, &q);
            if json {
                say!("{}", a.json());
            } else {
                say!("{}", a.text().trim_end());
            }
            ExitCode::SUCCESS
        }
    }
}

fn diff_cmd(configs: Vec<PathBuf>, inputs: Vec<Input>, json: bool) -> ExitCode {
    let [a, b] = configs.as_slice() else {
        eprintln!("eipsim diff: give --config twice: the topology before, then after");
        return ExitCode::from(2);
    };
    let (Some(ta), Some(tb)) = (load(a), load(b)) else {
        return ExitCode::from(2);
    };
    let generated = inputs.is_empty();
    let frames = if generated {
        crate::explain::diff::probes(&ta, &tb)
    } else {
        let mut all = Vec::new();
        for i in &inputs {
            match crate::io::capture::read_all(&i.path) {
                Ok(v) => all.extend(v.into_iter().map(|(ts, f)| (ts, i.port, f))),
                Err(e) => {
                    eprintln!("eipsim diff: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        // By timestamp; ties keep the order of --in (a stable sort).
        all.sort_by_key(|(ts, _, _)| *ts);
        all
    };
    let d = crate::explain::diff::diff(&ta, &tb, &frames, generated);
    let (na, nb) = (a.display().to_string(), b.display().to_string());
    if json {
        say!("{}", d.json(&na, &nb));
    } else {
        say!("{}", d.text(&na, &nb).trim_end());
    }
    if d.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn check(file: PathBuf) -> ExitCode {
    match Topology::load(&file) {
        Ok(t) => {
            say!("{}", t.summary().trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} problem(s) found", e.errors.len());
            ExitCode::from(1)
        }
    }
}

/// Reads `--events FILE`; on a bad file prints every problem and gives
/// exit status 1 (as a bad topology file does).
fn load_events(
    path: Option<&std::path::Path>,
) -> Result<Option<Vec<crate::io::events::TimedOp>>, ExitCode> {
    let Some(p) = path else { return Ok(None) };
    crate::io::events::load(p).map(Some).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(1)
    })
}

fn replay_cmd(
    config: PathBuf,
    inputs: Vec<Input>,
    out_dir: PathBuf,
    mtus: Vec<(Link, u32)>,
    events: Option<PathBuf>,
    (expect, expect_write): (Option<PathBuf>, Option<PathBuf>),
    (pcapng, html): (bool, Option<PathBuf>),
) -> ExitCode {
    let Some(topo) = load(&config) else {
        return ExitCode::from(1);
    };
    // Nothing this run writes may be a file it reads.
    let ext = if pcapng { "pcapng" } else { "pcap" };
    let mut writes: Vec<PathBuf> = Link::ALL
        .iter()
        .map(|p| format!("{}.{ext}", p.name()))
        .chain(replay::REPORT_FILES.map(String::from))
        .chain(topo.enis.iter().map(|e| format!("eni/{}.{ext}", e.name)))
        .map(|n| out_dir.join(n))
        .collect();
    // Nor may --html or --expect-write be one of replay's own outputs.
    for (flag, own) in [("--html", &html), ("--expect-write", &expect_write)] {
        if let Some(p) = own
            && let Some(w) = writes.iter().find(|w| place(w) == place(p))
        {
            eprintln!(
                "eipsim replay: {flag} {} is replay's own output {}; give it another name",
                p.display(),
                w.display()
            );
            return ExitCode::from(2);
        }
    }
    writes.extend(html.iter().chain(&expect_write).cloned());
    let mut reads: Vec<(&std::path::Path, &str)> = inputs
        .iter()
        .map(|i| (i.path.as_path(), "an input capture"))
        .collect();
    reads.push((&config, "the topology"));
    reads.extend(events.as_deref().map(|p| (p, "the events file")));
    reads.extend(expect.as_deref().map(|p| (p, "the expectations")));
    for w in &writes {
        if let Some((r, what)) = reads.iter().find(|(r, _)| replay::same_file(r, w)) {
            eprintln!(
                "eipsim replay: {} would be written over {what} {}; nothing was written",
                w.display(),
                r.display()
            );
            return ExitCode::from(2);
        }
    }
    // A bad expectations file fails before the replay.
    let expectations = match expect.as_deref().map(crate::io::expect::load).transpose() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("eipsim replay: {e}");
            return ExitCode::from(2);
        }
    };
    let events = match load_events(events.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let bar = progress_bar(&inputs);
    let mut on_progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let mtu = mtu_per_port(mtus);
    let opts = replay::ReplayOptions {
        mtu,
        events: events.as_deref(),
        observe: expect.is_some() || expect_write.is_some(),
        format: if pcapng {
            crate::io::capture::OutFormat::PcapNg
        } else {
            crate::io::capture::OutFormat::Pcap
        },
    };
    let html_topo = html.as_ref().map(|_| topo.clone());
    let result = replay::replay(topo, &inputs, &out_dir, opts, &mut on_progress);
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
            for w in &s.warnings {
                eprintln!("eipsim replay: warning: {w}");
            }
            if events.is_some() {
                // A refused event changes nothing; say so here, not only
                // in events.jsonl.
                let e = &s.report["events"];
                eprintln!(
                    "events: {} applied, {} refused, {} flow(s) ended (each in {})",
                    e["applied"],
                    e["refused"],
                    e["flows_ended"],
                    out_dir.join("events.jsonl").display()
                );
            }
            if let (Some(path), Some(t)) = (&html, html_topo) {
                if let Err(e) = write_html(path, &config, t, &inputs, mtu, events.as_deref(), &s) {
                    eprintln!("eipsim replay: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
                eprintln!("wrote {}", path.display());
            }
            if let Some(path) = &expect_write {
                if let Err(e) = std::fs::write(path, crate::io::expect::write(&s.observed)) {
                    eprintln!("eipsim replay: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
                eprintln!(
                    "wrote {} expectation(s) to {}",
                    s.observed.len(),
                    path.display()
                );
            }
            if let (Some(path), Some(exp)) = (&expect, &expectations) {
                let name = path.display().to_string();
                let unmet = crate::io::expect::check(&name, exp, &s.observed);
                if !unmet.is_empty() {
                    for u in &unmet {
                        say!("{u}");
                    }
                    // Each message starts `NAME:LINE:`; one expectation
                    // may miss on several keys.
                    let lines: std::collections::HashSet<&str> = unmet
                        .iter()
                        .filter_map(|u| u.get(name.len() + 1..)?.split(':').next())
                        .collect();
                    say!("{} of {} expectation(s) unmet", lines.len(), exp.len());
                    return ExitCode::from(1);
                }
                eprintln!("all {} expectation(s) hold", exp.len());
            }
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

/// `replay --html`: traces the same inputs for the paths summary, then
/// writes the page.
fn write_html(
    path: &std::path::Path,
    config: &std::path::Path,
    topo: Topology,
    inputs: &[Input],
    mtu: [Option<u32>; 3],
    events: Option<&[crate::io::events::TimedOp]>,
    s: &replay::ReplaySummary,
) -> Result<(), String> {
    // Counted as it goes: no trace is kept (a capture may be large).
    let (paths, _) =
        crate::io::trace::summary_with_events(topo, inputs, mtu, events.unwrap_or(&[]))
            .map_err(|e| e.to_string())?;
    let inputs: Vec<String> = inputs
        .iter()
        .map(|i| format!("{}={}", i.port, i.path.display()))
        .collect();
    let page = crate::io::html::html(&crate::io::html::HtmlReport {
        config: &config.display().to_string(),
        inputs: &inputs,
        topo: &s.topology,
        report: &s.report,
        per_second: &s.per_second,
        paths: &paths,
    });
    std::fs::write(path, page).map_err(|e| e.to_string())
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
    let sc = demo::demo();
    let topo = Topology::from_toml(&sc.topology).expect("the built-in topology is valid");
    say!("eipsim demo: {}\n", sc.about);
    say!("Topology (the built-in example):");
    for line in topo.summary().lines() {
        say!("  {line}");
    }
    say!();
    let mut engine = Engine::new(topo.clone());
    // For the words of a security group's decision.
    engine.set_tracing(true);
    let input: Vec<(u64, Link, Vec<u8>)> = sc
        .steps
        .iter()
        .map(|s| (s.ts_ns, s.port, s.frame.clone()))
        .collect();
    let outcome = |v: Verdict, frame: &[u8]| match v {
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
            format!(
                "    out {:<8}  {}   [via {via}{eip}]",
                port.name(),
                describe::frame(frame)
            )
        }
        Verdict::Consumed { reply: Some(p) } => format!(
            "    out {:<8}  {}   [answered by eipsim]",
            p.name(),
            describe::frame(frame)
        ),
        Verdict::Consumed { reply: None } => "    consumed".to_string(),
        Verdict::Dropped { reason, .. } => {
            format!("    DROPPED: {}: {}", reason.name(), reason.explain())
        }
        Verdict::Fragmented { port, pieces, .. } => format!(
            "    out {:<8}  as {pieces} fragments (larger than the port's MTU)",
            port.name()
        ),
        Verdict::Held => "    held (a fragment waiting for its first)".to_string(),
    };
    let run = crate::io::driver::run(
        &mut engine,
        &mut [&mut crate::io::driver::MemorySource::new(&input)],
        &mut |o| -> Result<(), crate::io::capture::CaptureError> {
            use crate::io::driver::Output;
            match o {
                Output::Frame {
                    origin,
                    frame,
                    verdict,
                    events,
                    ..
                } => {
                    let step = &sc.steps[origin.index as usize];
                    say!("#{:<2} {}", origin.number, step.note);
                    say!(
                        "    in  {:<8}  {}",
                        step.port.name(),
                        describe::frame(&step.frame)
                    );
                    say!("{}", outcome(verdict, frame));
                    if verdict.reason().is_some() {
                        // The security group rule that dropped it.
                        for e in events.iter().filter(|e| {
                            matches!(
                                e,
                                crate::engine::Event::SecurityGroup { allowed: false, .. }
                            )
                        }) {
                            say!("    by {}", crate::explain::trace::text(&topo, e));
                        }
                    }
                }
                Output::Event(_) => {}
                Output::Transmit { port, frame, .. } => say!(
                    "    out {:<8}  {}   [made by eipsim]",
                    port.name(),
                    describe::frame(frame)
                ),
                Output::Released {
                    origin, released, ..
                } => {
                    say!("#{:<2} decided now:", origin.number);
                    say!("{}", outcome(released.verdict, &released.frame));
                }
            }
            Ok(())
        },
    );
    run.expect("frames in memory cannot fail to read");
    say!();
    print_counters(&topo, &engine.counters());
    ExitCode::SUCCESS
}

/// The counters as a short table.
pub fn print_counters(topo: &Topology, c: &Counters) {
    // Ignore a closed stdout (`| head`): a summary is not worth a panic.
    use std::io::Write;
    let _ = std::io::stdout().write_all(counters_text(topo, c).as_bytes());
}

/// The counters as a short table, as text.
pub fn counters_text(topo: &Topology, c: &Counters) -> String {
    counters_text_for(topo, c, &Link::ALL)
}

/// [`counters_text`] with a row for each of `ports` only, and for any
/// other port that carried traffic (a frame routed to a port with no
/// device counts there).
pub fn counters_text_for(topo: &Topology, c: &Counters, ports: &[Link]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let f = &c.frames;
    let _ = writeln!(
        out,
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
    let _ = writeln!(
        out,
        "{:<18} {:>10} {:>10} {:>10} {:>10}",
        "", "rx pkts", "rx bytes", "tx pkts", "tx bytes"
    );
    let mut row = |name: String, t: &crate::engine::counters::Traffic| {
        let _ = writeln!(
            out,
            "{name:<18} {:>10} {:>10} {:>10} {:>10}",
            t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes
        );
    };
    for p in Link::ALL {
        let t = c.port(p);
        if ports.contains(&p) || t.rx_packets > 0 || t.tx_packets > 0 {
            row(format!("port {}", p.name()), t);
        }
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
    let _ = writeln!(
        out,
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
        let _ = writeln!(out, "ALG: {}", alg.join(", "));
    }
    let _ = writeln!(
        out,
        "Flows: {} created, {} active, {} expired",
        c.flows.created, c.flows.active, c.flows.expired
    );
    out
}
