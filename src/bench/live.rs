//! `eipsim bench live`: the same iperf3 tests first through the Linux
//! kernel's nftables 1:1 NAT and then through `eipsim run`, in network
//! namespaces this command makes and removes, with the ratio of the two.
//!
//! Layout (both paths): namespace `instance` with 172.16.0.10/24, default
//! route via 172.16.0.1; namespace `internet` with 198.51.100.7/24 and a
//! route to the EIP 203.0.113.10. Kernel path: a `router` namespace joins
//! them with two veth pairs, forwards, and does 1:1 NAT with nftables.
//! eipsim path: the router namespace is gone and `eipsim run` (this very
//! binary) sits between the two namespaces on TAP devices, with one ENI and
//! one NAT EIP; with `--ports af_packet` it takes the router's place
//! exactly, on the outer ends of two veth pairs through AF_PACKET sockets.
//! iperf3's server runs in `internet`, its client in
//! `instance`; the figures are the receiver's.
//!
//! Only 172.16.0.0/12 and documentation addresses are used, only inside
//! the namespaces made here. Everything made (namespaces, veths, TAPs,
//! children, temp files) is removed by `Lab`'s `Drop`: at the end, on an
//! error, and after SIGINT or SIGTERM (checked between and during steps).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The flags of `eipsim bench live`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Seconds each test runs (iperf3 -t; rounded up to whole seconds).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Parallel TCP streams of the multi-stream test (iperf3 -P).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=128))]
    pub streams: u16,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// One more option for `eipsim run` (repeat for several), to measure a
    /// variant: `--run-arg=--no-offload`, `--run-arg=--busy-poll`.
    #[arg(long = "run-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub run_args: Vec<String>,
    /// Measure kernel and eipsim this many times, alternately (kernel,
    /// eipsim, kernel, ...), and report medians: a shared machine's noise
    /// then hits both sides alike.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub rounds: u16,
    /// The ports `eipsim run` gets: TAP devices moved into the two
    /// namespaces, or (`af_packet`) veth pairs as the kernel's path has,
    /// whose outer ends eipsim attaches to with AF_PACKET sockets.
    #[arg(long, value_enum, default_value_t = PortKind::Tap)]
    pub ports: PortKind,
}

/// How `eipsim run` attaches to the two namespaces in `bench live`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// `--tap`: TAP devices eipsim creates, moved into the namespaces.
    Tap,
    /// `--port PORT=af_packet:IFNAME` on the outer ends of veth pairs.
    #[value(name = "af_packet")]
    AfPacket,
}

impl PortKind {
    /// The name `--ports` and the JSON use.
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Tap => "tap",
            PortKind::AfPacket => "af_packet",
        }
    }
}

const INSTANCE_IP: &str = "172.16.0.10";
const GATEWAY_IP: &str = "172.16.0.1";
const INTERNET_IP: &str = "198.51.100.7";
const ROUTER_NET_IP: &str = "198.51.100.1";
const EIP: &str = "203.0.113.10";
const PORT: &str = "5201";

/// The topology `eipsim run` gets: one ENI, one NAT EIP.
pub const TOPOLOGY: &str = r#"# eipsim bench live: one ENI, one NAT EIP
region = "cn-hangzhou"
vpc_cidr = "172.16.0.0/12"
hash_seed = 0

[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]

[[eip]]
address = "203.0.113.10"
eni = "eth0"
mode = "nat"
"#;

/// 1:1 NAT in the router namespace, as the EIP does it.
const NFT_RULES: &str = "table ip eipsim_bench {
  chain pre { type nat hook prerouting priority dstnat; ip daddr 203.0.113.10 dnat to 172.16.0.10; }
  chain post { type nat hook postrouting priority srcnat; ip saddr 172.16.0.10 snat to 203.0.113.10; }
}
";

/// Why the benchmark could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Preconditions not met (root, tools, /dev/net/tun): one line each.
    #[error("cannot run here:\n  - {}", .0.join("\n  - "))]
    Unavailable(Vec<String>),
    /// A command failed; its command line and what it said.
    #[error("`{cmd}` failed: {detail}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its stderr, or why it could not run.
        detail: String,
    },
    /// Something else went wrong (a temp file, a timeout, ...).
    #[error("{0}")]
    Other(String),
    /// SIGINT or SIGTERM arrived.
    #[error("interrupted; everything it made is removed")]
    Interrupted,
}

/// One test: its JSON name and unit, the table's label and the iperf3
/// client's options (`{n}` stands for `--streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Test {
    /// The JSON name.
    pub name: &'static str,
    /// The JSON unit: `gbit_per_s` (received) or `kpps` (delivered).
    pub unit: &'static str,
    label: &'static str,
    iperf: &'static str,
}

/// The tests, in the order they run.
pub const TESTS: [Test; 3] = [
    Test {
        name: "tcp_1",
        unit: "gbit_per_s",
        label: "TCP 1 stream (Gbit/s)",
        iperf: "",
    },
    Test {
        name: "tcp_n",
        unit: "gbit_per_s",
        label: "TCP {n} streams (Gbit/s)",
        iperf: "-P {n}",
    },
    Test {
        name: "udp_64",
        unit: "kpps",
        label: "UDP 64-byte (kpps delivered)",
        iperf: "-u -l 64 -b 0",
    },
];

impl Test {
    /// The table's row label.
    pub fn label(&self, streams: u16) -> String {
        self.label.replace("{n}", &streams.to_string())
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Seconds per test (as given to iperf3 -t).
    pub seconds: u64,
    /// Streams of the multi-stream TCP test.
    pub streams: u16,
    /// Cores this process may use.
    pub cores: usize,
    /// The kernel release (uname -r).
    pub kernel_release: String,
    /// The options `eipsim run` got besides its config and ports.
    pub eipsim_args: Vec<String>,
    /// The kind of ports `eipsim run` was given.
    pub ports: PortKind,
    /// Per test (in [`TESTS`] order): kernel and eipsim figures (the
    /// medians over the rounds).
    pub results: Vec<(Test, f64, f64)>,
    /// Per test, each round's ratio (eipsim / kernel) in round order.
    pub ratios: Vec<Vec<f64>>,
    /// What `eipsim run` chose by itself in the last round, from its
    /// report: `pinning` and `cpus` (its `live` keys) and `rx_ring` per
    /// port; null if the report could not be read.
    pub eipsim_live: serde_json::Value,
}

/// The report path a user gave `eipsim run` among the run args
/// (`--report PATH` or `--report=PATH`).
fn user_report(args: &[String]) -> Option<PathBuf> {
    args.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--report=") {
            Some(p) => Some(PathBuf::from(p)),
            None if a == "--report" => args.get(i + 1).map(PathBuf::from),
            None => None,
        })
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ratio(kernel: f64, eipsim: f64) -> Option<f64> {
    (kernel > 0.0).then(|| eipsim / kernel)
}

/// The report as a table with a line naming the machine and options.
pub fn text(r: &Report) -> String {
    let mut s = format!(
        "eipsim bench live: {} cores, Linux {}, {} s per test; eipsim run {} on {} ports\n",
        r.cores,
        r.kernel_release,
        r.seconds,
        r.eipsim_args.join(" "),
        r.ports.name()
    );
    s.push_str(&format!(
        "{:<30}  {:>7}  {:>7}  {:>5}\n",
        "test", "kernel", "eipsim", "ratio"
    ));
    for (i, &(t, k, e)) in r.results.iter().enumerate() {
        let q = match r.ratios.get(i) {
            Some(rs) if rs.len() > 1 => format!("{:.2}", median(rs.clone())),
            _ => ratio(k, e).map_or("-".into(), |q| format!("{q:.2}")),
        };
        s.push_str(&format!(
            "{:<30}  {k:>7.2}  {e:>7.2}  {q:>5}\n",
            t.label(r.streams)
        ));
    }
    s
}

/// The report as one JSON object: `seconds`, `streams`, `machine`
/// (`cores`, `kernel`), `eipsim_args`, `ports` (`tap` or `af_packet`),
/// `rounds`, `eipsim_live` (see [`Report::eipsim_live`]), and `tests`,
/// each with
/// `name`, `unit`, `kernel`, `eipsim` (medians over the rounds), `ratio`
/// (eipsim / kernel, or with several rounds the median of each round's;
/// null if the kernel figure is 0) and `ratios` (each round's).
pub fn json(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "seconds": r.seconds,
        "streams": r.streams,
        "machine": { "cores": r.cores, "kernel": r.kernel_release },
        "eipsim_args": r.eipsim_args,
        "ports": r.ports.name(),
        "rounds": r.ratios.first().map_or(1, |v| v.len().max(1)),
        "eipsim_live": r.eipsim_live,
        "tests": r.results.iter().enumerate().map(|(i, &(t, k, e))| {
            let q = r.ratios.get(i).cloned().unwrap_or_default();
            serde_json::json!({
                "name": t.name,
                "unit": t.unit,
                "kernel": k,
                "eipsim": e,
                "ratio": if q.len() > 1 { Some(median(q.clone())) } else { ratio(k, e) },
                "ratios": q,
            })
        }).collect::<Vec<_>>(),
    })
}

/// Runs `eipsim bench live`: 0 done, 2 an error, 130 interrupted.
pub fn main(args: &Args) -> ExitCode {
    let out = |s: String| {
        // A closed stdout is not worth a panic (as elsewhere in the CLI).
        let _ = writeln!(std::io::stdout(), "{}", s.trim_end());
    };
    match run(args) {
        Ok(r) if args.json => out(json(&r).to_string()),
        Ok(r) => out(text(&r)),
        Err(e @ LiveError::Interrupted) => {
            eprintln!("eipsim bench live: {e}");
            return ExitCode::from(130);
        }
        Err(e) => {
            eprintln!("eipsim bench live: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// Whether `cmd` is an executable file on PATH.
fn in_path(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Every missing precondition, as the message that says how to fix it.
fn preflight() -> Result<(), LiveError> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut missing = Vec::new();
    if !root {
        missing.push("run it as root (it creates network namespaces and TAP devices)".into());
    }
    for (cmd, hint) in [
        ("iperf3", "install iperf3: apt-get install iperf3"),
        ("nft", "install nftables: apt-get install nftables"),
        ("ip", "install iproute2: apt-get install iproute2"),
        ("ss", "install iproute2: apt-get install iproute2"),
        ("sysctl", "install procps: apt-get install procps"),
    ] {
        if !in_path(cmd) {
            missing.push(format!("{cmd} is missing: {hint}"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun is missing: load the tun module (modprobe tun)".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LiveError::Unavailable(missing))
    }
}

/// The kernel release, as `uname -r` prints it.
fn kernel_release() -> String {
    // SAFETY: uname fills a zeroed utsname; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// A command in its own process group, so a Ctrl-C at the terminal
/// reaches only this process, which then stops the children itself.
fn command(args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(args[0]);
    c.args(&args[1..]).stdin(Stdio::null()).process_group(0);
    c
}

/// Runs a short command to the end; an error names it and its stderr.
fn sh(args: &[&str]) -> Result<String, LiveError> {
    let fail = |detail: String| LiveError::Command {
        cmd: args.join(" "),
        detail,
    };
    let o = command(args).output().map_err(|e| fail(e.to_string()))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        return Err(fail(format!("{} ({})", err, o.status)));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `ip` with `line`'s words as arguments (names and addresses here have
/// no spaces).
fn ip(line: &str) -> Result<String, LiveError> {
    let args: Vec<&str> = std::iter::once("ip")
        .chain(line.split_whitespace())
        .collect();
    sh(&args)
}

/// A spawned child with its command line and output files.
struct Proc {
    cmd: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// The error for a child that exited (`when`: before what); iperf3 -J
/// puts its error into the JSON on stdout, not on stderr.
fn exited((p, st): (Proc, ExitStatus), when: &str) -> LiveError {
    let out = std::fs::read_to_string(&p.stdout).unwrap_or_default();
    let json = serde_json::from_str::<serde_json::Value>(&out).ok();
    let detail = match json.as_ref().and_then(|v| v["error"].as_str()) {
        Some(e) => e.to_string(),
        None => std::fs::read_to_string(&p.stderr).unwrap_or_default(),
    };
    let when = if when.is_empty() {
        String::new()
    } else {
        format!(" {when}")
    };
    LiveError::Command {
        cmd: p.cmd,
        detail: format!("exited ({st}){when}: {}", detail.trim()),
    }
}

/// Which namespace.
#[derive(Clone, Copy)]
enum Ns {
    Instance = 0,
    Internet = 1,
    Router = 2,
}

/// Everything this run made; `Drop` removes it all.
struct Lab {
    stop: Arc<AtomicBool>,
    /// instance, internet, router.
    ns: [String; 3],
    /// Namespaces that exist now (and must go).
    made: Vec<String>,
    /// The TAP devices: instance, internet.
    taps: [String; 2],
    dir: PathBuf,
    /// Where the current `eipsim run` writes its report.
    report: PathBuf,
    /// Running children (iperf3 servers and clients, eipsim run).
    procs: Vec<Proc>,
    /// The pid of `eipsim run`, while it runs.
    eipsim: Option<u32>,
    /// Output files made so far (unique names).
    files: u32,
}

impl Lab {
    fn new(stop: Arc<AtomicBool>) -> Result<Lab, LiveError> {
        // The pid makes every name unique among concurrent runs.
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("eipsim-bench-live-{id}"));
        let lab = Lab {
            stop,
            ns: ["i", "n", "r"].map(|s| format!("eipsim-bench-{id}-{s}")),
            made: Vec::new(),
            taps: ["i", "n"].map(|s| format!("eb{id}{s}")),
            report: dir.join("eipsim-report.json"),
            dir,
            procs: Vec::new(),
            eipsim: None,
            files: 0,
        };
        // Leftovers of an earlier run with the same pid that was killed.
        lab.remove_all_names();
        std::fs::create_dir_all(&lab.dir)
            .map_err(|e| LiveError::Other(format!("cannot create {}: {e}", lab.dir.display())))?;
        Ok(lab)
    }

    fn ns(&self, which: Ns) -> &str {
        &self.ns[which as usize]
    }

    fn check_stop(&self) -> Result<(), LiveError> {
        if self.stop.load(Ordering::Relaxed) {
            Err(LiveError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Makes a namespace with loopback up and IPv6 off (no extra noise).
    fn add_ns(&mut self, which: Ns) -> Result<(), LiveError> {
        let ns = self.ns(which).to_string();
        ip(&format!("netns add {ns}"))?;
        self.made.push(ns.clone());
        ip(&format!("-n {ns} link set lo up"))?;
        ip(&format!(
            "netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1"
        ))?;
        ip(&format!(
            "netns exec {ns} sysctl -qw net.ipv6.conf.default.disable_ipv6=1"
        ))?;
        Ok(())
    }

    /// Addresses and routes of the two ends on their devices; `eip_via`:
    /// the next hop to the EIP (`dev X`: on-link, eipsim answers its ARP).
    fn address_ends(&self, inst_dev: &str, net_dev: &str, eip_via: &str) -> Result<(), LiveError> {
        let (i, n) = (self.ns(Ns::Instance), self.ns(Ns::Internet));
        ip(&format!("-n {i} addr add {INSTANCE_IP}/24 dev {inst_dev}"))?;
        ip(&format!("-n {i} link set {inst_dev} up"))?;
        ip(&format!("-n {i} route add default via {GATEWAY_IP}"))?;
        ip(&format!("-n {n} addr add {INTERNET_IP}/24 dev {net_dev}"))?;
        ip(&format!("-n {n} link set {net_dev} up"))?;
        ip(&format!("-n {n} route add {EIP}/32 {eip_via}"))?;
        Ok(())
    }

    /// The kernel path: a router namespace with two veth pairs,
    /// forwarding, and nftables 1:1 NAT.
    fn build_kernel(&mut self) -> Result<(), LiveError> {
        self.add_ns(Ns::Router)?;
        let (i, n, r) = (
            self.ns(Ns::Instance),
            self.ns(Ns::Internet),
            self.ns(Ns::Router),
        );
        // Made inside the router namespace, the other end moved at once:
        // no device ever appears in the caller's namespace.
        ip(&format!(
            "-n {r} link add ri type veth peer name ii netns {i}"
        ))?;
        ip(&format!(
            "-n {r} link add rn type veth peer name nn netns {n}"
        ))?;
        ip(&format!("-n {r} addr add {GATEWAY_IP}/24 dev ri"))?;
        ip(&format!("-n {r} addr add {ROUTER_NET_IP}/24 dev rn"))?;
        ip(&format!("-n {r} link set ri up"))?;
        ip(&format!("-n {r} link set rn up"))?;
        ip(&format!("netns exec {r} sysctl -qw net.ipv4.ip_forward=1"))?;
        let rules = self.dir.join("nat.nft");
        std::fs::write(&rules, NFT_RULES)
            .map_err(|e| LiveError::Other(format!("cannot write {}: {e}", rules.display())))?;
        sh(&[
            "ip",
            "netns",
            "exec",
            r,
            "nft",
            "-f",
            &rules.to_string_lossy(),
        ])?;
        self.address_ends("ii", "nn", &format!("via {ROUTER_NET_IP}"))
    }

    /// Removes both veth pairs, then the router namespace. The pairs go
    /// first and by name: a namespace's devices are destroyed later, by
    /// the kernel's cleanup work, so the inner ends `ii` and `nn` could
    /// still exist when an AF_PACKET round makes its own (EEXIST).
    fn remove_kernel(&mut self) -> Result<(), LiveError> {
        let r = self.ns(Ns::Router).to_string();
        ip(&format!("-n {r} link del ri"))?;
        ip(&format!("-n {r} link del rn"))?;
        ip(&format!("netns del {r}"))?;
        self.made.retain(|n| *n != r);
        Ok(())
    }

    /// Starts `eipsim run` (this binary) and joins it to the two
    /// namespaces: on two TAPs, moved in once it printed `ready`; or on
    /// the outer ends of two veth pairs (named as the TAPs would be),
    /// whose inner ends are made inside the namespaces at once.
    fn build_eipsim(&mut self, eipsim_args: &[String], kind: PortKind) -> Result<(), LiveError> {
        let topo = self.dir.join("topology.toml");
        std::fs::write(&topo, TOPOLOGY)
            .map_err(|e| LiveError::Other(format!("cannot write {}: {e}", topo.display())))?;
        let exe = std::env::current_exe()
            .map_err(|e| LiveError::Other(format!("cannot find the eipsim binary: {e}")))?;
        let (exe, topo) = (exe.to_string_lossy(), topo.to_string_lossy());
        let [ti, tn] = self.taps.clone();
        let (pi, pn, flag) = match kind {
            PortKind::Tap => (format!("instance={ti}"), format!("internet={tn}"), "--tap"),
            PortKind::AfPacket => {
                let (i, n) = (self.ns(Ns::Instance), self.ns(Ns::Internet));
                ip(&format!("link add {ti} type veth peer name ii netns {i}"))?;
                ip(&format!("link add {tn} type veth peer name nn netns {n}"))?;
                for t in [&ti, &tn] {
                    // No IPv6 chatter from this side (eipsim would count
                    // it as unsupported_ethertype drops).
                    let _ = sh(&[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{t}.disable_ipv6=1"),
                    ]);
                    ip(&format!("link set {t} up"))?;
                }
                (
                    format!("instance=af_packet:{ti}"),
                    format!("internet=af_packet:{tn}"),
                    "--port",
                )
            }
        };
        // Its report says what it chose (pinning, rings); a --report of
        // the user's own among the run args is read instead.
        self.report =
            user_report(eipsim_args).unwrap_or_else(|| self.dir.join("eipsim-report.json"));
        // Not the last round's: a round that writes none reads as null.
        let _ = std::fs::remove_file(&self.report);
        let report = self.report.to_string_lossy().into_owned();
        let mut args = vec![&*exe, "run", "--config", &topo, flag, &pi, flag, &pn];
        if user_report(eipsim_args).is_none() {
            args.extend(["--report", &*report]);
        }
        args.extend(eipsim_args.iter().map(String::as_str));
        let pid = self.spawn(&args)?;
        self.eipsim = Some(pid);
        let ready = |p: &Proc| {
            let out = std::fs::read_to_string(&p.stdout).unwrap_or_default();
            Ok(out.lines().any(|l| l == "ready"))
        };
        if let Some(exit) = self.poll(pid, 30, "print ready", ready)? {
            // Already reaped: nothing is left to stop.
            self.eipsim = None;
            return Err(exited(exit, "before it was ready"));
        }
        match kind {
            PortKind::Tap => {
                for (tap, ns) in self.taps.iter().zip(&self.ns) {
                    ip(&format!("link set {tap} netns {ns}"))?;
                }
                self.address_ends(&ti, &tn, &format!("dev {tn}"))
            }
            PortKind::AfPacket => self.address_ends("ii", "nn", "dev nn"),
        }
    }

    /// Removes the veth pairs of an AF_PACKET run (deleting the outer end
    /// takes the inner one with it; nothing to do after a TAP run, whose
    /// devices went with eipsim).
    fn remove_veths(&self) {
        for t in &self.taps {
            quiet(&["ip", "link", "del", t]);
        }
    }

    /// The choices the last `eipsim run` reported (see
    /// [`Report::eipsim_live`]); null if its report cannot be read.
    fn eipsim_live(&self) -> serde_json::Value {
        let Some(r) = std::fs::read_to_string(&self.report)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            return serde_json::Value::Null;
        };
        let live = &r["live"];
        serde_json::json!({
            "pinning": live["pinning"],
            "cpus": live["cpus"],
            "rx_ring": {
                "instance": live["devices"]["instance"]["rx_ring"],
                "internet": live["devices"]["internet"]["rx_ring"],
            },
        })
    }

    /// Stops `eipsim run` (SIGTERM, as a user would); it must exit cleanly.
    fn stop_eipsim(&mut self) -> Result<(), LiveError> {
        let Some(pid) = self.eipsim.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on our own child's pid (not yet waited for).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        match self.poll(pid, 10, "stop after SIGTERM", |_| Ok(false))? {
            Some((_, st)) if st.success() => Ok(()),
            Some(exit) => Err(exited(exit, "on SIGTERM")),
            None => unreachable!("never ready"),
        }
    }

    /// Spawns a child with stdout and stderr in files of the temp folder;
    /// returns its pid.
    fn spawn(&mut self, args: &[&str]) -> Result<u32, LiveError> {
        self.files += 1;
        let stdout = self.dir.join(format!("{}.out", self.files));
        let stderr = self.dir.join(format!("{}.err", self.files));
        let cmd = args.join(" ");
        let open = |p: &Path| {
            File::create(p)
                .map_err(|e| LiveError::Other(format!("cannot create {}: {e}", p.display())))
        };
        let child = command(args)
            .stdout(open(&stdout)?)
            .stderr(open(&stderr)?)
            .spawn()
            .map_err(|e| LiveError::Command {
                cmd: cmd.clone(),
                detail: e.to_string(),
            })?;
        let pid = child.id();
        let p = Proc {
            cmd,
            child,
            stdout,
            stderr,
        };
        self.procs.push(p);
        Ok(pid)
    }

    /// Polls child `pid` every 20 ms: None once `ready` says so, or the
    /// child and its status once it exits (it is then off the list). A
    /// signal, or `secs` passing, is an error; Drop kills what is left.
    fn poll(
        &mut self,
        pid: u32,
        secs: u64,
        what: &str,
        mut ready: impl FnMut(&Proc) -> Result<bool, LiveError>,
    ) -> Result<Option<(Proc, ExitStatus)>, LiveError> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.check_stop()?;
            let Some(at) = self.procs.iter().position(|p| p.child.id() == pid) else {
                return Err(LiveError::Other(format!(
                    "process {pid} is not running (it was reaped earlier)"
                )));
            };
            if let Ok(Some(st)) = self.procs[at].child.try_wait() {
                return Ok(Some((self.procs.remove(at), st)));
            }
            if ready(&self.procs[at])? {
                return Ok(None);
            }
            if Instant::now() > deadline {
                let cmd = &self.procs[at].cmd;
                return Err(LiveError::Other(format!(
                    "`{cmd}` did not {what} within {secs} s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for child `pid` to finish (at most `secs`); returns its stdout.
    fn finish(&mut self, pid: u32, secs: u64) -> Result<String, LiveError> {
        match self.poll(pid, secs, "finish", |_| Ok(false))? {
            Some((p, st)) if st.success() => {
                Ok(std::fs::read_to_string(&p.stdout).unwrap_or_default())
            }
            Some(exit) => Err(exited(exit, "")),
            None => unreachable!("never ready"),
        }
    }

    /// One iperf3 test: a one-off server in `internet`, the client in
    /// `instance`; returns the client's JSON (whose `sum_received` is the
    /// server's, the receiver's, count).
    fn iperf(&mut self, seconds: u64, extra: &str) -> Result<serde_json::Value, LiveError> {
        let (i, n) = (self.ns(Ns::Instance), self.ns(Ns::Internet));
        let server = format!("ip netns exec {n} iperf3 -s -1 -B {INTERNET_IP} -p {PORT}");
        let client = format!(
            "ip netns exec {i} iperf3 -c {INTERNET_IP} -p {PORT} -t {seconds} -J \
             --connect-timeout 5000 {extra}"
        );
        let ss = format!("netns exec {n} ss -Hltn");
        let server = self.spawn(&server.split_whitespace().collect::<Vec<_>>())?;
        // Listening before the client starts: ask ss, not a probe
        // connection (a one-off server would take that as its test).
        let want = format!("{INTERNET_IP}:{PORT}");
        if let Some(exit) = self.poll(server, 10, "listen", |_| Ok(ip(&ss)?.contains(&want)))? {
            return Err(exited(exit, "before it listened"));
        }
        let client = self.spawn(&client.split_whitespace().collect::<Vec<_>>())?;
        let out = self.finish(client, seconds + 30)?;
        self.finish(server, 10)?;
        serde_json::from_str(&out).map_err(|e| {
            let start: String = out.chars().take(300).collect();
            LiveError::Other(format!("iperf3 printed no JSON ({e}): {start}"))
        })
    }

    /// Runs the three tests on the path built now; `path` names it in
    /// the progress lines.
    fn measure(&mut self, path: &str, seconds: u64, streams: u16) -> Result<Vec<f64>, LiveError> {
        let mut out = Vec::new();
        for t in &TESTS {
            self.check_stop()?;
            eprintln!(
                "eipsim bench live: {path}: {} ({seconds} s)...",
                t.label(streams).split(" (").next().unwrap_or_default()
            );
            let extra = t.iperf.replace("{n}", &streams.to_string());
            let v = self.iperf(seconds, &extra)?;
            out.push(figure(t, &v)?);
        }
        Ok(out)
    }

    /// Removes every namespace and TAP device name of this run (errors
    /// ignored: most do not exist).
    fn remove_all_names(&self) {
        for ns in &self.ns {
            quiet(&["ip", "netns", "del", ns]);
        }
        for t in &self.taps {
            quiet(&["ip", "link", "del", t]);
        }
    }
}

/// Runs a command, ignoring its failure and output (cleaning up).
fn quiet(args: &[&str]) {
    let null = Stdio::null;
    let _ = command(args).stdout(null()).stderr(null()).status();
}

impl Drop for Lab {
    fn drop(&mut self) {
        // eipsim run first, gently, so it removes its TAPs itself.
        let _ = self.stop_eipsim();
        for mut p in self.procs.drain(..) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        for ns in self.made.drain(..) {
            quiet(&["ip", "netns", "del", &ns]);
        }
        // TAPs not moved yet, if eipsim died without removing them.
        for t in &self.taps {
            if Path::new("/sys/class/net").join(t).exists() {
                quiet(&["ip", "link", "del", t]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The receiver's figure of a test from iperf3's client JSON.
fn figure(t: &Test, v: &serde_json::Value) -> Result<f64, LiveError> {
    let r = &v["end"]["sum_received"];
    let num = |k: &str| {
        r[k].as_f64()
            .ok_or_else(|| LiveError::Other(format!("iperf3's JSON has no end.sum_received.{k}")))
    };
    if t.unit != "kpps" {
        return Ok(num("bits_per_second")? / 1e9);
    }
    // packets: the highest sequence number seen; lost: the gaps.
    let (got, secs) = (num("packets")? - num("lost_packets")?, num("seconds")?);
    if secs <= 0.0 {
        return Err(LiveError::Other("iperf3 measured 0 seconds".into()));
    }
    Ok(got / secs / 1e3)
}

/// Runs both paths and returns what they measured.
pub fn run(args: &Args) -> Result<Report, LiveError> {
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err(LiveError::Other("--seconds must be in (0, 3600]".into()));
    }
    preflight()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| LiveError::Other(format!("cannot handle signal {sig}: {e}")))?;
    }
    let seconds = (args.seconds.ceil() as u64).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // `--run-arg=--workers --run-arg=N` replaces the default worker count.
    let given = args
        .run_args
        .iter()
        .any(|a| a == "--workers" || a.starts_with("--workers="));
    let mut eipsim_args = if given {
        Vec::new()
    } else {
        vec!["--workers".to_string(), cores.to_string()]
    };
    eipsim_args.extend(args.run_args.iter().cloned());
    let mut lab = Lab::new(stop)?;
    lab.add_ns(Ns::Instance)?;
    lab.add_ns(Ns::Internet)?;
    let (mut kernel_runs, mut eipsim_runs) = (Vec::new(), Vec::new());
    let mut eipsim_live = serde_json::Value::Null;
    for _ in 0..args.rounds {
        lab.build_kernel()?;
        kernel_runs.push(lab.measure("kernel", seconds, args.streams)?);
        lab.remove_kernel()?;
        lab.build_eipsim(&eipsim_args, args.ports)?;
        eipsim_runs.push(lab.measure("eipsim", seconds, args.streams)?);
        lab.stop_eipsim()?;
        eipsim_live = lab.eipsim_live();
        lab.remove_veths();
    }
    drop(lab);
    let per_test = |runs: &[Vec<f64>], i: usize| runs.iter().map(|r| r[i]).collect::<Vec<_>>();
    let kernel: Vec<f64> = (0..TESTS.len())
        .map(|i| median(per_test(&kernel_runs, i)))
        .collect();
    let eipsim: Vec<f64> = (0..TESTS.len())
        .map(|i| median(per_test(&eipsim_runs, i)))
        .collect();
    let ratios = (0..TESTS.len())
        .map(|i| {
            per_test(&kernel_runs, i)
                .into_iter()
                .zip(per_test(&eipsim_runs, i))
                .filter_map(|(k, e)| ratio(k, e))
                .collect()
        })
        .collect();
    Ok(Report {
        eipsim_live,
        ratios,
        seconds,
        streams: args.streams,
        cores,
        kernel_release: kernel_release(),
        eipsim_args,
        ports: args.ports,
        results: TESTS
            .iter()
            .zip(kernel.iter().zip(&eipsim))
            .map(|(&t, (&k, &e))| (t, k, e))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_path_among_the_run_args_is_found() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(user_report(&a(&["--workers", "2"])), None);
        assert_eq!(
            user_report(&a(&["--report", "/tmp/r.json"])),
            Some(PathBuf::from("/tmp/r.json"))
        );
        assert_eq!(
            user_report(&a(&["--cpus", "0", "--report=r.json"])),
            Some(PathBuf::from("r.json"))
        );
    }

    #[test]
    fn the_topology_is_valid() {
        let t = crate::config::Topology::from_toml(TOPOLOGY);
        assert!(t.is_ok(), "{:?}", t.err());
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn figures_come_from_the_receiver() {
        let v = serde_json::json!({"end": {"sum_received": {
            "seconds": 2.0, "bits_per_second": 4e9, "packets": 1000, "lost_packets": 200,
        }}});
        assert_eq!(figure(&TESTS[0], &v).unwrap(), 4.0);
        assert_eq!(figure(&TESTS[2], &v).unwrap(), 0.4);
        assert!(figure(&TESTS[1], &serde_json::json!({"end": {}})).is_err());
    }
}
