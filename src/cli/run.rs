//! `eipsim run`: its flags and the command.

use super::{counters_text_for, load, mtu_per_port, parse_mtu};
use crate::engine::Link;
use std::path::PathBuf;
use std::process::ExitCode;

/// `eipsim run`'s flags.
#[derive(clap::Args)]
pub(super) struct RunArgs {
    /// The topology file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// PORT=IFNAME: the TAP device for a port (created if missing).
    /// Defaults: instance=eipsim-inst, internet=eipsim-inet; the vpc
    /// port is opened only when named (vpc=eipsim-vpc, say).
    #[arg(long = "tap", value_name = "PORT=IFNAME", value_parser = parse_tap)]
    taps: Vec<(Link, String)>,
    /// PORT=af_packet:IFNAME attaches a port to an existing interface
    /// (one end of a veth pair, say) instead of a TAP device;
    /// PORT=tap:NAME, or PORT=NAME without a kind, is the same as --tap
    /// PORT=NAME (a TAP device, created if missing).
    #[arg(long = "port", value_name = "PORT=KIND:IFNAME", value_parser = parse_port)]
    ports: Vec<(Link, crate::io::port::PortSpec)>,
    /// Worker threads, each with its own queue of every port (default:
    /// the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// PORT=BYTES: the MTU of a port (default 1500 on a TAP device; an
    /// AF_PACKET port enforces its interface's MTU unless given).
    #[arg(long = "mtu", value_name = "PORT=BYTES", value_parser = parse_mtu)]
    mtus: Vec<(Link, u32)>,
    /// Move every frame as single packets with whole checksums: no
    /// virtio-net header, no checksum or segmentation offload.
    #[arg(long)]
    no_offload: bool,
    /// Spin on the queues instead of sleeping until a frame comes (lower
    /// latency; each worker keeps a core busy).
    #[arg(long)]
    busy_poll: bool,
    /// AF_PACKET ports read frames from a receive ring (TPACKET_V2), not
    /// with a system call each. The default; the flag is kept for the
    /// scripts that pass it. TAP ports have no ring.
    #[arg(long)]
    rx_ring: bool,
    /// AF_PACKET ports read each frame with a system call of its own,
    /// without a receive ring.
    #[arg(long, conflicts_with = "rx_ring")]
    no_rx_ring: bool,
    /// auto, none or LIST. LIST pins the workers to these CPUs, as
    /// `taskset -c` writes them (0-3,6); worker i on the i-th, wrapping
    /// around. auto (the default): when every port is AF_PACKET and there
    /// is a worker for each CPU this process may use, worker i on the
    /// i-th of them; else, as with none, the scheduler places them.
    #[arg(long, value_name = "auto|none|LIST", value_parser = crate::io::live::cpu::Pinning::parse, default_value = "auto")]
    cpus: crate::io::live::cpu::Pinning,
    /// Write per-port and per-ENI captures here (bounded in size).
    #[arg(long)]
    capture: Option<PathBuf>,
    /// Largest size of one capture file in MiB before it rotates
    /// (one older file is kept).
    #[arg(long, default_value_t = 64)]
    capture_limit_mib: u64,
    /// Write the report (the same JSON as replay's report.json) here on exit.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print a line of rates and drop counts every SECS seconds.
    #[arg(long, value_name = "SECS")]
    stats_interval: Option<f64>,
    /// The control socket `eipsim ctl` talks to (default
    /// /run/eipsim.sock; if that one is taken, ctl is off and the run
    /// says so; a PATH given here must be free).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

fn parse_tap(s: &str) -> Result<(Link, String), String> {
    let (port, name) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not PORT=IFNAME (for example internet=eipsim-inet)"))?;
    let port = Link::from_name(port)
        .ok_or_else(|| format!("unknown port {port:?}: use instance, internet or vpc"))?;
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "interface name {name:?} must have 1 to 15 characters"
        ));
    }
    Ok((port, name.to_string()))
}

fn parse_port(s: &str) -> Result<(Link, crate::io::port::PortSpec), String> {
    let (port, spec) = s.split_once('=').ok_or_else(|| {
        format!("{s:?} is not PORT=KIND:IFNAME (for example internet=af_packet:veth1)")
    })?;
    let port = Link::from_name(port)
        .ok_or_else(|| format!("unknown port {port:?}: use instance, internet or vpc"))?;
    let spec = crate::io::port::PortSpec::parse(spec)?;
    if spec.name().len() > 15 {
        return Err(format!(
            "interface name {:?} must have 1 to 15 characters",
            spec.name()
        ));
    }
    Ok((port, spec))
}

pub(super) fn run_cmd(args: RunArgs) -> ExitCode {
    let RunArgs {
        config,
        taps,
        ports,
        workers,
        mtus,
        no_offload,
        busy_poll,
        rx_ring: _,
        no_rx_ring,
        cpus,
        capture,
        capture_limit_mib,
        report,
        stats_interval,
        control,
    } = args;
    use crate::io::live::{LiveOptions, run};
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let Some(topology) = load(&config) else {
        return ExitCode::from(1);
    };
    use crate::io::port::PortSpec;
    let mut devices: Vec<(Link, PortSpec)> = vec![
        (Link::Instance, PortSpec::Tap("eipsim-inst".into())),
        (Link::Internet, PortSpec::Tap("eipsim-inet".into())),
    ];
    let named = taps
        .into_iter()
        .map(|(port, name)| (port, PortSpec::Tap(name)))
        .chain(ports);
    for (port, spec) in named {
        match devices.iter_mut().find(|(p, _)| *p == port) {
            Some(d) => d.1 = spec,
            None => devices.push((port, spec)),
        }
    }
    // The summary shows a row for a port without a device only if
    // something went there.
    let opened: Vec<Link> = devices.iter().map(|(p, _)| *p).collect();
    let mtu = mtu_per_port(mtus);
    if let Some(s) = stats_interval
        && !(s > 0.0 && s <= 1e6)
    {
        eprintln!("eipsim run: --stats-interval must be a number of seconds in (0, 1000000]");
        return ExitCode::from(2);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGHUP, &reload),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            eprintln!("eipsim run: cannot handle signal {sig}: {e}");
            return ExitCode::from(2);
        }
    }
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let allowed = crate::io::live::cpu::allowed_cpus().unwrap_or_default();
    let all_af_packet = devices
        .iter()
        .all(|(_, spec)| matches!(spec, PortSpec::AfPacket(_)));
    let placement = match crate::io::live::cpu::placement(workers, &cpus, all_af_packet, &allowed) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eipsim run: {e}");
            return ExitCode::from(2);
        }
    };
    if let (crate::io::live::cpu::Pinning::Auto, Some(c)) = (&cpus, &placement.cpus) {
        // Unasked for: say so, and how to undo it.
        eprintln!(
            "eipsim run: workers pinned to CPUs {} ({}; --cpus none leaves them to the scheduler)",
            crate::io::live::cpu::format_cpu_list(c),
            placement.why
        );
    }
    let opts = LiveOptions {
        topology: topology.clone(),
        ports: devices,
        workers,
        mtu,
        offload: !no_offload,
        busy_poll,
        rx_ring: !no_rx_ring,
        cpus: placement.cpus,
        pinning: placement.why,
        capture,
        capture_limit: capture_limit_mib.max(1) << 20,
        stats_interval: stats_interval.map(std::time::Duration::from_secs_f64),
        reload: Some((config.clone(), reload)),
        control: Some(match control {
            Some(p) => (p, true),
            None => (crate::io::live::control::DEFAULT_SOCKET.into(), false),
        }),
    };
    let result = run(opts, stop, || {
        say!("ready");
        let _ = std::io::stdout().flush();
    });
    match result {
        Ok(summary) => {
            if let Some(path) = &report {
                let text =
                    serde_json::to_string_pretty(&summary.report).expect("JSON values serialise");
                if let Err(e) = std::fs::write(path, text + "\n") {
                    eprintln!(
                        "eipsim run: cannot write the report {}: {e}",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
            }
            // Written once, errors ignored: a closed stdout (`| head`) must
            // not turn a clean stop into a failure.
            let text = format!(
                "stopped after {:.1} s\n{}",
                summary.report["live"]["seconds"].as_f64().unwrap_or(0.0),
                counters_text_for(&topology, &summary.counters, &opened)
            );
            let _ = std::io::stdout().write_all(text.as_bytes());
            if summary.report["live"]["crashed"] == true {
                eprintln!(
                    "eipsim run: a thread crashed (see the events above); the report is incomplete"
                );
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eipsim run: {e}");
            ExitCode::from(2)
        }
    }
}
