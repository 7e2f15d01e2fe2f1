//! `eipsim bench live` end to end: the kernel path and eipsim's in
//! namespaces it makes itself, JSON keys as README.md documents them, and
//! nothing left behind, also when it is stopped half-way.
//!
//! Without root, /dev/net/tun, ip, iperf3 or nft the tests skip with a
//! message, unless EIPSIM_REQUIRE_TAP=1 (CI sets it): then they fail.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

/// Whether the test can run here; if not, skip (or fail under CI).
fn lab_available(test: &str) -> bool {
    common::lab_available_with(
        test,
        &[("iperf3", "iperf3"), ("nft", "the nft command (nftables)")],
    )
}

/// Whatever a run with process id `pid` may have left: namespaces, TAP
/// devices, its temp folder.
fn leftovers(pid: u32) -> Vec<String> {
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let mut left: Vec<String> = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("eipsim-bench-{pid}-")))
        .map(str::to_string)
        .collect();
    for t in ["i", "n"] {
        let dev = format!("eb{pid}{t}");
        if std::path::Path::new("/sys/class/net").join(&dev).exists() {
            left.push(dev);
        }
    }
    let dir = std::env::temp_dir().join(format!("eipsim-bench-live-{pid}"));
    if dir.exists() {
        left.push(dir.display().to_string());
    }
    left
}

#[test]
fn bench_live_json_has_the_documented_keys() {
    if !lab_available("bench_live_json_has_the_documented_keys") {
        return;
    }
    bench_live_json(&[], "tap");
}

/// The same over AF_PACKET sockets on veth pairs (the kernel path's own
/// layout), with every veth removed afterwards.
#[test]
fn bench_live_over_af_packet_ports() {
    if !lab_available("bench_live_over_af_packet_ports") {
        return;
    }
    bench_live_json(&["--ports", "af_packet"], "af_packet");
}

fn bench_live_json(extra: &[&str], ports: &str) {
    let child = Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .args([
            "bench",
            "live",
            "--seconds",
            "1",
            "--streams",
            "2",
            "--json",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}: {err}", o.status);
    assert!(
        err.contains("eipsim bench live: kernel: TCP 1 stream (1 s)..."),
        "{err}"
    );
    assert!(
        err.contains("eipsim bench live: eipsim: UDP 64-byte (1 s)..."),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["seconds"], 1, "{v}");
    assert_eq!(v["streams"], 2, "{v}");
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1, "{v}");
    assert!(!v["machine"]["kernel"].as_str().unwrap().is_empty(), "{v}");
    assert!(v["eipsim_args"].is_array(), "{v}");
    assert_eq!(v["ports"], ports, "{v}");
    let tests = v["tests"].as_array().expect("tests");
    let names: Vec<&str> = tests.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tcp_1", "tcp_n", "udp_64"]);
    let units: Vec<&str> = tests.iter().map(|t| t["unit"].as_str().unwrap()).collect();
    assert_eq!(units, ["gbit_per_s", "gbit_per_s", "kpps"]);
    for t in tests {
        let (k, e) = (t["kernel"].as_f64().unwrap(), t["eipsim"].as_f64().unwrap());
        assert!(k > 0.0 && e > 0.0, "{t}");
        let r = t["ratio"].as_f64().unwrap();
        assert!((r - e / k).abs() < 1e-9, "{t}");
        // One round: its one ratio.
        assert_eq!(t["ratios"].as_array().map(|a| a.len()), Some(1), "{t}");
    }
    assert_eq!(v["rounds"], 1, "{v}");
    // What eipsim chose by itself: rings on AF_PACKET ports only, and
    // pinning decided by --cpus auto.
    let live = &v["eipsim_live"];
    let ring = ports == "af_packet";
    assert_eq!(live["rx_ring"]["instance"], ring, "{v}");
    assert_eq!(live["rx_ring"]["internet"], ring, "{v}");
    assert!(
        live["pinning"].as_str().unwrap().starts_with("auto: "),
        "{v}"
    );
    assert!(live["cpus"].is_array(), "{v}");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left behind");
}

/// SIGTERM half-way (eipsim's turn, when everything exists): exit 130,
/// and the namespaces, TAPs, children and temp files are gone.
#[test]
fn bench_live_stopped_half_way_removes_everything() {
    if !lab_available("bench_live_stopped_half_way_removes_everything") {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .args(["bench", "live", "--seconds", "1", "--streams", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("it ended before eipsim's turn: {seen}");
        }
        seen.push_str(&line);
        if line.contains("eipsim: TCP 1 stream") {
            break;
        }
    }
    // While eipsim's TCP test runs, its devices are in the namespaces.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!leftovers(pid).is_empty(), "the lab exists while it runs");
    // SAFETY: kill(2) on our child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left behind");
}

#[test]
fn bench_live_flags_are_checked_before_anything_is_made() {
    let o = Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .args(["bench", "live", "--streams", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .args(["bench", "live", "--seconds", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--seconds must be in (0, 3600]"));
}

/// The README's sample is what `text` prints: the same first words, the
/// header, and each row rebuilt from its own numbers (widths and ratio).
#[test]
fn readme_bench_live_sample_has_the_printed_shape() {
    use eipsim::bench::live::{Report, TESTS, text};
    let readme = std::fs::read_to_string("README.md").unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("eipsim bench live: "))
        .expect("README has a bench live sample");
    assert!(
        lines[at].contains(" cores, Linux ")
            && lines[at].contains(" s per test; eipsim run --workers "),
        "{}",
        lines[at]
    );
    let mut report = Report {
        seconds: 5,
        streams: 4,
        cores: 2,
        kernel_release: "x".into(),
        eipsim_args: vec![],
        ports: eipsim::bench::live::PortKind::Tap,
        results: vec![],
        ratios: vec![],
        eipsim_live: serde_json::Value::Null,
    };
    for (i, t) in TESTS.iter().enumerate() {
        let row = lines[at + 2 + i];
        let nums: Vec<f64> = row[30..]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        report.results.push((*t, nums[0], nums[1]));
    }
    let printed = text(&report);
    let printed: Vec<&str> = printed.lines().collect();
    assert_eq!(
        printed[1..],
        lines[at + 1..at + 5],
        "README's sample is stale"
    );
}
