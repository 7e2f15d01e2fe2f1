//! The command line as users meet it: exit codes, messages, files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn eipsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .args(args)
        .output()
        .expect("runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs eipsim with `args` and checks it exits with `code` and says
/// `want` on stderr.
fn fails(args: &[&str], code: i32, want: &str) {
    let o = eipsim(args);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(want),
        "{args:?}: {}",
        text(&o.stderr)
    );
}

/// A scratch directory, removed when the test ends (also on failure).
struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(tag: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("eipsim-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

#[test]
fn check_summarises_a_good_topology() {
    let o = eipsim(&["check", "pcaps/demo/topology.toml"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("eth0 (primary): OS addresses 172.16.0.10"),
        "{out}"
    );
    assert!(
        out.contains("EIP 203.0.113.10 nat -> 172.16.0.10, EIP instance fee: no"),
        "{out}"
    );
    assert!(
        out.contains("EIP 203.0.113.13 nat -> 172.16.1.11, EIP instance fee: yes"),
        "{out}"
    );
    assert!(
        out.contains("eth2 (secondary): OS addresses 203.0.113.12 (cut-through"),
        "{out}"
    );
}

#[test]
fn check_lists_every_violation_with_its_line() {
    let d = tmpdir("check-bad");
    let f = d.join("bad.toml");
    std::fs::write(
        &f,
        r#"region = "cn-wulanchabu"
vpc_cidr = "172.16.0.0/12"

[[eni]]
name = "eth0"
primary = true
private_ips = ["172.16.0.10"]

[[eni]]
name = "eth1"
private_ips = ["10.0.0.5"]

[[eip]]
address = "203.0.113.10"
eni = "eth0"
mode = "cut-through"

[[eip]]
address = "203.0.113.11"
eni = "eth0"
mode = "nat"

[[eip]]
address = "203.0.113.12"
eni = "eth0"
mode = "nat"

[alg]
unsupported = ["sip", "smtp"]
"#,
    )
    .unwrap();
    let o = eipsim(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    for want in [
        "line 11: [[eni]] \"eth1\": private IP 10.0.0.5 is outside vpc_cidr 172.16.0.0/12",
        "line 13: [[eip]] 203.0.113.10: cut-through mode is for secondary ENIs only",
        "line 13: [[eip]] 203.0.113.10: cut-through mode is not available in region \"cn-wulanchabu\"",
        "line 18: [[eip]] 203.0.113.11: ENI \"eth0\" already has EIP 203.0.113.10 in cut-through mode",
        "line 23: [[eip]] 203.0.113.12: ENI \"eth0\" already has EIP 203.0.113.10 in cut-through mode",
        "line 29: [alg]: unknown ALG protocol \"smtp\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        err.contains(&f.display().to_string()),
        "names the file: {err}"
    );
}

#[test]
fn check_reports_a_parse_error_position() {
    let d = tmpdir("check-parse");
    let f = d.join("broken.toml");
    std::fs::write(
        &f,
        "region = \"cn-hangzhou\"\nvpc_cidr = \"172.16.0.0/12\"\n[[eni]\nname = 1\n",
    )
    .unwrap();
    let o = eipsim(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("line 3"), "{}", text(&o.stderr));
}

fn write_truncated(path: &Path) {
    let mut bytes = std::fs::read("pcaps/demo/in/instance.pcap").unwrap();
    let n = bytes.len();
    bytes.truncate(n - 10);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn replay_refuses_a_truncated_capture_and_writes_nothing() {
    let d = tmpdir("trunc");
    let cap = d.join("cut.pcap");
    write_truncated(&cap);
    let out = d.join("out");
    let o = eipsim(&[
        "replay",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        &format!("instance={}", cap.display()),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    // The demo's instance capture holds 9 packets; the 9th (index 8) is cut.
    assert!(
        err.contains(&format!(
            "{}: packet 8: the file is truncated",
            cap.display()
        )),
        "{err}"
    );
    assert!(
        !out.join("report.json").exists(),
        "no report for a failed replay"
    );
    assert!(
        !out.join("instance.pcap").exists(),
        "no capture for a failed replay"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .map(|r| r.collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "nothing half-written: {leftovers:?}");
}

#[test]
fn replay_refuses_non_ethernet_and_garbage() {
    let d = tmpdir("nonether");
    // A pcap header with link type 101 (raw IP).
    let mut hdr = std::fs::read("pcaps/demo/in/instance.pcap").unwrap()[..24].to_vec();
    hdr[20..24].copy_from_slice(&101u32.to_le_bytes());
    let raw = d.join("raw.pcap");
    std::fs::write(&raw, hdr).unwrap();
    let junk = d.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture").unwrap();
    for (file, want) in [
        (&raw, "is not Ethernet"),
        (&junk, "not a pcap or pcapng file"),
    ] {
        let o = eipsim(&[
            "replay",
            "--config",
            "pcaps/demo/topology.toml",
            "--in",
            &format!("internet={}", file.display()),
            "--out-dir",
            d.join("out").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2));
        let err = text(&o.stderr);
        assert!(
            err.contains(&file.display().to_string()) && err.contains(want),
            "{err}"
        );
    }
    fails(
        &[
            "replay",
            "--config",
            "pcaps/demo/topology.toml",
            "--in",
            "moon=x.pcap",
            "--out-dir",
            "x",
        ],
        2,
        "unknown port \"moon\"",
    );
}

/// pcapng input (microsecond interfaces, as tcpdump writes) gives the same
/// result as the pcap it was converted from.
#[test]
fn replay_reads_pcapng() {
    use pcap_file::DataLink;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    let d = tmpdir("pcapng");
    let mut args = vec![
        "replay".to_string(),
        "--config".into(),
        "pcaps/demo/topology.toml".into(),
    ];
    for port in ["instance", "internet"] {
        let frames =
            eipsim::io::capture::read_all(Path::new(&format!("pcaps/demo/in/{port}.pcap")))
                .unwrap();
        let path = d.join(format!("{port}.pcapng"));
        let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![],
        })
        .unwrap();
        for (ts, f) in &frames {
            // Default if_tsresol is microseconds: the raw value is in µs.
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: std::time::Duration::from_nanos(ts / 1000),
                original_len: f.len() as u32,
                data: f.clone().into(),
                options: vec![],
            })
            .unwrap();
        }
        args.push("--in".into());
        args.push(format!("{port}={}", path.display()));
    }
    let out = d.join("out");
    args.push("--out-dir".into());
    args.push(out.display().to_string());
    let o = Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    for f in [
        "instance.pcap",
        "internet.pcap",
        "vpc.pcap",
        "report.json",
        "eni/eth0.pcap",
        "eni/eth2.pcap",
    ] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(Path::new("pcaps/demo/expected").join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn replay_merges_inputs_by_time_ties_in_argument_order() {
    let d = tmpdir("merge");
    // The same ARP request on two ports at the same instant.
    let req =
        eipsim::probe::arp_request(eipsim::engine::Link::Instance, "172.16.0.10", "172.16.0.1");
    let a = d.join("a.pcap");
    let b = d.join("b.pcap");
    eipsim::io::capture::write_pcap(&a, &[(5, req.clone()), (9, req.clone())]).unwrap();
    eipsim::io::capture::write_pcap(&b, &[(5, req.clone()), (7, req)]).unwrap();
    let out = d.join("out");
    let o = eipsim(&[
        "replay",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        &format!("vpc={}", b.display()),
        "--in",
        &format!("instance={}", a.display()),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let order: Vec<(String, u64)> = std::fs::read_to_string(out.join("verdicts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["in_port"].as_str().unwrap().to_string(),
                v["index"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [("vpc", 0), ("instance", 0), ("vpc", 1), ("instance", 1)]
        .iter()
        .map(|(p, i)| (p.to_string(), *i))
        .collect();
    assert_eq!(order, want);
}

#[test]
fn demo_explains_each_packet_and_prints_counters() {
    let o = eipsim(&["demo"]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    assert!(
        out.contains("out internet  TCP 203.0.113.10:40000 > 198.51.100.7:443"),
        "{out}"
    );
    assert!(out.contains("DROPPED: alg_unsupported"), "{out}");
    assert!(
        out.contains("Frames: 15 received = 10 forwarded + 1 consumed + 4 dropped"),
        "{out}"
    );
    // Issue 10: one security group drop, with the rule that made it.
    assert!(
        out.contains("    DROPPED: security_group_denied: ")
            && out.contains("    by ingress tcp port 22 from 198.51.100.7 at eth0 (over internet): security group \"sg-demo\" rule (line 79): priority 2 drop ingress tcp 22/22 from 0.0.0.0/0 \"no ssh from elsewhere\": denied"),
        "{out}"
    );
}

/// The README's table of drop reasons names every reason, with the same
/// explanation the engine gives.
#[test]
fn readme_lists_every_drop_reason() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    for r in eipsim::engine::DropReason::ALL {
        let row = format!("| `{}` | {} |", r.name(), r.explain());
        assert!(readme.contains(&row), "README lacks: {row}");
    }
}

/// A capture taken with a snap length (tcpdump -s 34) replays; the frames
/// cut short are dropped as malformed, not refused as a bad file.
#[test]
fn replay_accepts_snap_length_captures() {
    let d = tmpdir("snaplen");
    let frame = eipsim::probe::udp(
        eipsim::engine::Link::Instance,
        "172.16.0.10",
        "198.51.100.7",
        1,
        2,
        b"0123456789",
    );
    let mut pcap = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 34, 1] {
        pcap.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1u32, 0, 34, frame.len() as u32] {
        pcap.extend_from_slice(&v.to_le_bytes());
    }
    pcap.extend_from_slice(&frame[..34]);
    let cap = d.join("snap.pcap");
    std::fs::write(&cap, pcap).unwrap();
    let out = d.join("out");
    let o = eipsim(&[
        "replay",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        &format!("instance={}", cap.display()),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = std::fs::read_to_string(out.join("verdicts.jsonl")).unwrap();
    assert!(v.contains("\"reason\":\"malformed\""), "{v}");
}

#[test]
fn show_and_route_get() {
    let o = eipsim(&["show", "--config", "pcaps/demo/topology.toml"]);
    assert!(o.status.success());
    assert!(
        text(&o.stdout).contains("inet 203.0.113.12/32 (EIP)"),
        "{}",
        text(&o.stdout)
    );
    let o = eipsim(&[
        "show",
        "--config",
        "pcaps/demo/topology.toml",
        "--format",
        "dot",
    ]);
    assert!(text(&o.stdout).starts_with("digraph eipsim {"));
    let o = eipsim(&[
        "route",
        "get",
        "192.0.2.80",
        "--sport",
        "41001",
        "--dport",
        "80",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The demo sends this very flow out through eth1 (see its output).
    assert!(
        text(&o.stdout).contains("eni       eth1"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stdout).contains("public    203.0.113.11 (EIP, nat)"),
        "{}",
        text(&o.stdout)
    );
    // An echo request has no destination port: asking for one is an
    // error, not silently ignored.
    fails(
        &[
            "route",
            "get",
            "192.0.2.80",
            "--proto",
            "icmp",
            "--dport",
            "80",
        ],
        2,
        "--dport applies to tcp and udp",
    );
    let o = eipsim(&[
        "route",
        "get",
        "192.0.2.80",
        "--proto",
        "icmp",
        "--sport",
        "7",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("icmp echo id 7"),
        "{}",
        text(&o.stdout)
    );
    let o = eipsim(&["route", "get", "192.0.2.80", "--proto", "icmp", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sport"], 50000, "{v}");
    assert_eq!(v["dport"], serde_json::Value::Null, "{v}");
    let o = eipsim(&["route", "get", "192.0.2.80", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dport"], 80, "{v}");
}

/// The traces and the route get answer shown in the README are what the
/// commands print today.
#[test]
fn readme_examples_are_current() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let ins = [
        "--in",
        "instance=pcaps/demo/in/instance.pcap",
        "--in",
        "internet=pcaps/demo/in/internet.pcap",
    ];
    for n in ["7", "9"] {
        let mut args = vec!["trace", "--config", "pcaps/demo/topology.toml"];
        args.extend(ins);
        args.extend(["--packet", n]);
        let o = eipsim(&args);
        assert!(o.status.success());
        let out = text(&o.stdout);
        assert!(
            readme.contains(out.trim_end()),
            "README's trace of packet {n} is stale; now:\n{out}"
        );
    }
    let o = eipsim(&[
        "route",
        "get",
        "192.0.2.80",
        "--sport",
        "41001",
        "--dport",
        "80",
    ]);
    assert!(
        readme.contains(text(&o.stdout).trim_end()),
        "README's route get is stale"
    );
    let o = eipsim(&[
        "route",
        "get",
        "203.0.113.10",
        "--inbound",
        "--from",
        "198.51.100.7",
        "--dport",
        "22",
    ]);
    assert!(
        readme.contains(text(&o.stdout).trim_end()),
        "README's route get --inbound is stale; now:\n{}",
        text(&o.stdout)
    );
    let o = eipsim(&[
        "route",
        "get",
        "203.0.113.13",
        "--inbound",
        "--from",
        "198.51.100.9",
        "--dport",
        "80",
        "--reply",
    ]);
    let out = text(&o.stdout);
    assert!(
        readme.contains(out.trim_end()),
        "README's route get --reply is stale; now:\n{out}"
    );
    // The reply leaves by the ENI and EIP the connection came in on
    // (eth1, 203.0.113.13), not by the default route (eth0).
    assert!(
        out.contains("forwarded to internet as 203.0.113.13 > 198.51.100.9 via eth1"),
        "{out}"
    );
    let o = eipsim(&["route", "get", "198.51.100.7", "--reply", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reply"]["flow_hit"], true, "{v}");
    assert_eq!(v["reply"]["dst"], "172.16.0.10");
    assert_eq!(v["reply"]["in_port"], "internet");
    // --inbound needs the remote host.
    let o = eipsim(&["route", "get", "203.0.113.10", "--inbound"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--from"), "{}", text(&o.stderr));
}

/// `trace --json` keeps its keys (`step`, `text`) and adds each event's
/// fields; the balance fields obey their own definition: the bucket is
/// the value modulo the total weight, and the chosen nexthop is the first
/// whose cumulative weight lies above the bucket.
#[test]
fn trace_json_carries_event_fields() {
    let o = eipsim(&[
        "trace",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        "instance=pcaps/demo/in/instance.pcap",
        "--in",
        "internet=pcaps/demo/in/internet.pcap",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut balances = 0;
    for line in text(&o.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for s in v["steps"].as_array().unwrap() {
            for k in ["step", "text", "event"] {
                assert!(s[k].is_string(), "{k} in {s}");
            }
            if s["event"] == "balance" {
                balances += 1;
                let value = u64::from_str_radix(
                    s["text"].as_str().unwrap().split(" 0x").nth(1).unwrap()[..16].as_ref(),
                    16,
                )
                .unwrap();
                assert_eq!(s["value"].as_u64(), Some(value), "{s}");
                let total = s["total"].as_u64().unwrap();
                let bucket = s["bucket"].as_u64().unwrap();
                assert_eq!(value % total, bucket, "{s}");
                let owner = s["nexthops"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|n| n[1].as_u64().unwrap() > bucket)
                    .unwrap();
                assert_eq!(owner[0], s["chosen"], "{s}");
            }
        }
    }
    assert_eq!(balances, 4, "the demo's four load-balanced flows");
}

/// `eipsim bench engine --json` runs 1..N workers and reports the
/// documented keys; its figures agree with each other (pps is packets over
/// seconds, every measured frame has the asked size).
#[test]
fn bench_engine_json_has_the_documented_keys() {
    let o = eipsim(&[
        "bench",
        "engine",
        "--seconds",
        "1",
        "--flows",
        "1000",
        "--workers",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert_eq!(v["path"], "nat-out");
    assert_eq!(v["size"], 60);
    assert_eq!(v["flows"], 1000);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "one run per worker count");
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["workers"], i + 1);
        for k in ["pps", "gbps", "ns_per_packet", "scaling"] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k} in {r}");
        }
        let per = r["per_worker"].as_array().unwrap();
        assert_eq!(per.len(), i + 1);
        for w in per {
            let (p, b, s) = (
                w["packets"].as_u64().unwrap(),
                w["bytes"].as_u64().unwrap(),
                w["seconds"].as_f64().unwrap(),
            );
            assert!(s >= 1.0, "measured at least the asked second: {w}");
            assert_eq!(b, p * 60, "60-byte frames: {w}");
            let pps = w["pps"].as_f64().unwrap();
            assert!((pps - p as f64 / s).abs() < 1e-6 * pps, "{w}");
        }
    }
    assert_eq!(runs[0]["scaling"], 1.0);
}

/// The simple IMIX is 7:4:1 frames of 64, 570 and 1518 bytes on the wire
/// (60, 566 and 1514 without the FCS): 4198 bytes per 12 frames.
#[test]
fn bench_engine_imix_sizes() {
    let o = eipsim(&[
        "bench",
        "engine",
        "--seconds",
        "0.2",
        "--flows",
        "1200",
        "--workers",
        "1",
        "--size",
        "imix",
        "--path",
        "mix",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    let w = &v["runs"][0]["per_worker"][0];
    let per_frame = w["bytes"].as_f64().unwrap() / w["packets"].as_f64().unwrap();
    assert!(
        (per_frame - 4198.0 / 12.0).abs() < 1.0,
        "{per_frame} bytes per frame"
    );
    let bad = eipsim(&["bench", "engine", "--size", "50", "--seconds", "0.1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--size 50"),
        "{}",
        text(&bad.stderr)
    );
    // A duration that is no number of seconds in range is refused, never
    // a panic (NaN once reached Duration::from_secs_f64).
    for (s, why) in [
        ("nan", "not a number of seconds"),
        ("inf", "not a number of seconds"),
        ("0", "outside 0.01..=3600"),
        ("-1", "outside 0.01..=3600"),
        ("3s", "not a number of seconds"),
    ] {
        let bad = eipsim(&["bench", "engine", &format!("--seconds={s}")]);
        assert_eq!(bad.status.code(), Some(2), "{s}");
        assert!(
            text(&bad.stderr).contains("--seconds") && text(&bad.stderr).contains(why),
            "{s}: {}",
            text(&bad.stderr)
        );
    }
}

/// The README's `bench engine` sample has the shape the command prints:
/// the same header lines (the figures differ from run to run).
#[test]
fn readme_bench_sample_has_the_printed_shape() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    // The defaults, as in the README (one worker to keep the test short).
    let o = eipsim(&["bench", "engine", "--workers", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        readme.contains(lines[0]) && readme.contains(lines[1]),
        "README's bench engine sample is stale; now:\n{out}"
    );
    assert!(lines[2].trim_start().starts_with("1 "), "{out}");
}

/// The live-mode flags the README documents exist.
#[test]
fn run_has_the_flags_the_readme_documents() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    let readme = std::fs::read_to_string("README.md").unwrap();
    for flag in [
        "--port",
        "--tap",
        "--workers",
        "--no-offload",
        "--busy-poll",
        "--rx-ring",
        "--no-rx-ring",
        "--cpus",
        "--mtu",
        "--capture",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
        assert!(readme.contains(flag), "README lacks {flag}");
    }
}

/// `eipsim reach` prints the README's example for the README's file, and
/// `--json` has the documented keys; a bad file exits 1 with its line.
#[test]
fn reach_prints_the_readme_example() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = readme
        .split("### `eipsim reach --config FILE [--json]")
        .nth(1)
        .unwrap();
    let toml = section
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let shown = section
        .split("$ eipsim reach --config web.toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let d = tmpdir("reach");
    let file = d.join("web.toml");
    std::fs::write(&file, toml).unwrap();
    let f = file.to_str().unwrap();
    let o = eipsim(&["reach", "--config", f]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim_end(), shown.trim_end());
    let o = eipsim(&["reach", "--config", f, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["security_groups"], true);
    let inb = &v["inbound"][0];
    for k in [
        "to",
        "from",
        "eni",
        "mode",
        "delivered_to",
        "sources",
        "lines",
    ] {
        assert!(inb.get(k).is_some(), "inbound lacks {k}: {inb}");
    }
    let line = &inb["lines"][0];
    for k in ["protocol", "ports", "peers", "outcomes"] {
        assert!(line.get(k).is_some(), "a line lacks {k}: {line}");
    }
    let path = &v["outbound"][0]["paths"][0];
    for k in ["route", "to", "hops", "lines"] {
        assert!(path.get(k).is_some(), "a path lacks {k}: {path}");
    }
    std::fs::write(
        &file,
        toml.replace("priority", "x")
            .replace("protocol = \"udp\"", "protocol = \"udp\"\npriority = 0"),
    )
    .unwrap();
    fails(&["reach", "--config", f], 1, "priority 0 is not 1 to 100");
    // One protocol: only its lines and those about every protocol; a
    // block left without lines goes.
    let all = eipsim(&["reach", "--json"]);
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    let o = eipsim(&["reach", "--json", "--proto", "udp"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let protos = |v: &serde_json::Value| -> Vec<String> {
        let mut p = Vec::new();
        for b in v["inbound"].as_array().unwrap() {
            p.extend(
                b["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["protocol"].to_string()),
            );
        }
        for o in v["outbound"].as_array().unwrap() {
            for path in o["paths"].as_array().unwrap() {
                p.extend(
                    path["lines"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|l| l["protocol"].to_string()),
                );
            }
        }
        p
    };
    let udp = protos(&v);
    assert!(udp.iter().any(|p| p == "\"udp\""), "{v}");
    assert!(
        udp.iter().all(|p| p == "\"udp\"" || p == "\"all\""),
        "{udp:?}"
    );
    let expected = protos(&all)
        .into_iter()
        .filter(|p| p == "\"udp\"" || p == "\"all\"")
        .count();
    assert_eq!(udp.len(), expected);
    fails(
        &["reach", "--proto", "sctp"],
        2,
        "unknown protocol \"sctp\"",
    );
    // An address the built-in instance does not have: an error, not an
    // empty answer.
    let o = eipsim(&["reach", "--address", "172.16.9.9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("172.16.9.9 is neither an EIP nor a private IP")
            && text(&o.stderr).contains("203.0.113.10"),
        "{}",
        text(&o.stderr)
    );
    assert!(o.stdout.is_empty());
}

/// The README's `trace --events` example: its event lines are what the
/// command prints for the golden scenario's files.
#[test]
fn readme_events_example_is_current() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let o = eipsim(&[
        "trace",
        "--config",
        "pcaps/topology_changes/topology.toml",
        "--in",
        "instance=pcaps/topology_changes/in/instance.pcap",
        "--in",
        "internet=pcaps/topology_changes/in/internet.pcap",
        "--events",
        "pcaps/topology_changes/events.toml",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let block = readme
        .split("      --events pcaps/topology_changes/events.toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let shown: Vec<&str> = block.lines().filter(|l| *l != "...").collect();
    assert!(shown.len() >= 2);
    for l in shown {
        assert!(
            out.lines().any(|o| o == l),
            "README line not printed: {l}\n{out}"
        );
    }
    // A bad events file: the line of the bad key and the problem, exit 1.
    let d = tmpdir("events");
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "[[event]]\nat = 1\nop = \"detach\"\n").unwrap();
    fails(
        &[
            "replay",
            "--config",
            "pcaps/topology_changes/topology.toml",
            "--in",
            "internet=pcaps/topology_changes/in/internet.pcap",
            "--out-dir",
            d.join("out").to_str().unwrap(),
            "--events",
            bad.to_str().unwrap(),
        ],
        1,
        "bad.toml: line 3: [[event]] 1: unknown variant `detach`",
    );
}

/// Every `eipsim ctl` example of the README parses (it gets as far as the
/// socket, which is not there: exit 2 with that said); a route to add
/// without `--via` is a bad argument (exit 2) before any socket.
#[test]
fn readme_ctl_examples_parse() {
    fails(
        &[
            "ctl",
            "--socket",
            "/nonexistent/x.sock",
            "route",
            "add",
            "192.0.2.0/24",
        ],
        2,
        "route add needs --via ENI",
    );
    // reach without --config: the built-in example.
    let o = eipsim(&["reach"]);
    assert!(o.status.success());
    assert!(
        text(&o.stdout).starts_with("inbound to 203.0.113.10 from internet: EIP (nat) of eth0")
    );
    let readme = std::fs::read_to_string("README.md").unwrap();
    let examples: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("eipsim ctl "))
        .map(|l| l.split(" #").next().unwrap().trim())
        .collect();
    assert!(examples.len() >= 10, "{examples:?}");
    for e in examples {
        let mut args = vec!["ctl", "--socket", "/nonexistent/eipsim.sock"];
        args.extend(e.split_whitespace());
        let o = eipsim(&args);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(
            text(&o.stderr).contains("is `eipsim run` running"),
            "{e}: {}",
            text(&o.stderr)
        );
    }
}

/// The README's `--expect` examples: the scenarios' own expectations hold
/// (exit 0), and the broken one is listed as the README shows (exit 1).
#[test]
fn readme_expect_examples() {
    let o = eipsim(&[
        "replay",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        "instance=pcaps/demo/in/instance.pcap",
        "--in",
        "internet=pcaps/demo/in/internet.pcap",
        "--out-dir",
        tmpdir("expect-ok").join("out").to_str().unwrap(),
        "--expect",
        "pcaps/demo/expect.jsonl",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("all 15 expectation(s) hold"),
        "{}",
        text(&o.stderr)
    );
    // The README's file, against the demo with its default route moved to
    // eth1 (so the first packet leaves as 203.0.113.11).
    let readme = std::fs::read_to_string("README.md").unwrap();
    let block = readme.split("$ cat expect.jsonl\n").nth(1).unwrap();
    let (file, rest) = block
        .split_once("$ eipsim replay ... --expect expect.jsonl")
        .unwrap();
    let shown: Vec<&str> = rest
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    let d = tmpdir("expect-bad");
    std::fs::write(d.join("expect.jsonl"), file).unwrap();
    let topo = std::fs::read_to_string("pcaps/demo/topology.toml").unwrap()
        + "\n[[route]]\ndst = \"0.0.0.0/0\"\nvia = \"eth1\"\n";
    std::fs::write(d.join("topology.toml"), topo).unwrap();
    std::fs::create_dir_all(d.join("in")).unwrap();
    std::fs::copy("pcaps/demo/in/instance.pcap", d.join("in/instance.pcap")).unwrap();
    std::fs::copy("pcaps/demo/in/internet.pcap", d.join("in/internet.pcap")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .current_dir(&*d)
        .args([
            "replay",
            "--config",
            "topology.toml",
            "--in",
            "instance=in/instance.pcap",
            "--in",
            "internet=in/internet.pcap",
            "--out-dir",
            "out",
            "--expect",
            "expect.jsonl",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let got: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
    assert_eq!(got, shown, "README's --expect output is stale");
    // --expect-write: what it writes holds against the same replay.
    let o = Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .current_dir(&*d)
        .args([
            "replay",
            "--config",
            "topology.toml",
            "--in",
            "instance=in/instance.pcap",
            "--out-dir",
            "out2",
            "--expect-write",
            "all.jsonl",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = Command::new(env!("CARGO_BIN_EXE_eipsim"))
        .current_dir(&*d)
        .args([
            "replay",
            "--config",
            "topology.toml",
            "--in",
            "instance=in/instance.pcap",
            "--out-dir",
            "out3",
            "--expect",
            "all.jsonl",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

/// `trace --summary`: the demo's four load-balanced flows took one path
/// (route, balance, source selection, security group, EIP, ALG), counted
/// as one group whose first packet is the demo's #8; the README shows it.
#[test]
fn trace_summary_groups_packets_by_path() {
    let o = eipsim(&[
        "trace",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        "instance=pcaps/demo/in/instance.pcap",
        "--in",
        "internet=pcaps/demo/in/internet.pcap",
        "--summary",
    ]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "     4  forwarded to internet  (e.g. packet 8)");
    // The ARP request is consumed and answered: its port is the reply's.
    assert!(
        out.contains("     1  consumed: reply sent on instance  (e.g. packet 1)\n        receive > arp > verdict"),
        "{out}"
    );
    assert!(
        lines[2].contains("route > balance > source > secgroup > eip > alg"),
        "{out}"
    );
    let readme = std::fs::read_to_string("README.md").unwrap();
    assert!(
        readme.contains(&lines[..5].join("\n")),
        "README's trace --summary is stale"
    );
    let o = eipsim(&[
        "trace",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        "instance=pcaps/demo/in/instance.pcap",
        "--in",
        "internet=pcaps/demo/in/internet.pcap",
        "--summary",
        "--json",
    ]);
    let groups: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Every packet is in exactly one group.
    let total: u64 = groups.iter().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 15);
    assert_eq!(groups[0]["example"], 8);
}

/// `replay --format pcapng`: the same frames and timestamps as pcap, in
/// files whose interface is named for the port (or ENI), each packet with
/// a comment saying what eipsim decided (read back here with pcap-file's
/// pcapng reader, as Wireshark shows `frame.comment`).
#[test]
fn replay_writes_pcapng_with_verdict_comments() {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let d = tmpdir("format-pcapng");
    let run = |format: &str, out: &str| {
        let o = eipsim(&[
            "replay",
            "--config",
            "pcaps/demo/topology.toml",
            "--in",
            "instance=pcaps/demo/in/instance.pcap",
            "--in",
            "internet=pcaps/demo/in/internet.pcap",
            "--out-dir",
            d.join(out).to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    run("pcapng", "ng");
    run("pcap", "p");
    let mut instance_comments: Vec<String> = Vec::new();
    for (name, file) in [
        ("internet", "internet"),
        ("eth0", "eni/eth0"),
        ("instance", "instance"),
    ] {
        let ng = d.join("ng").join(format!("{file}.pcapng"));
        // The same frames and timestamps as the pcap output.
        assert_eq!(
            eipsim::io::capture::read_all(&ng).unwrap(),
            eipsim::io::capture::read_all(&d.join("p").join(format!("{file}.pcap"))).unwrap()
        );
        let mut r = PcapNgReader::new(std::fs::File::open(&ng).unwrap()).unwrap();
        let (mut if_name, mut resol, mut comments) = (None, None, Vec::new());
        while let Some(b) = r.next_block() {
            match b.unwrap() {
                Block::InterfaceDescription(i) => {
                    for o in i.options {
                        match o {
                            InterfaceDescriptionOption::IfName(n) => if_name = Some(n.to_string()),
                            InterfaceDescriptionOption::IfTsResol(x) => resol = Some(x),
                            _ => {}
                        }
                    }
                }
                Block::EnhancedPacket(p) => {
                    for o in p.options {
                        if let EnhancedPacketOption::Comment(c) = o {
                            comments.push(c.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        assert_eq!((if_name.as_deref(), resol), (Some(name), Some(9)));
        assert!(!comments.is_empty());
        if name == "instance" {
            instance_comments = comments;
            continue;
        }
        assert!(
            comments[0].starts_with("instance #1 (pcaps/demo/in/instance.pcap): forwarded to internet via eth0, EIP 203.0.113.10 (nat)"),
            "{comments:?}"
        );
    }
    assert!(!d.join("ng").join("internet.pcap").exists());
    // A frame eipsim made names its cause, with the cause's drop reason:
    // source_ttl's instance packet #3 arrives with TTL 1 (its expect.jsonl).
    let expect = std::fs::read_to_string("pcaps/source_ttl/expect.jsonl").unwrap();
    assert!(
        expect.lines().any(
            |l| l.contains("\"in_port\":\"instance\",\"index\":3") && l.contains("ttl_expired")
        )
    );
    let o = eipsim(&[
        "replay",
        "--config",
        "pcaps/source_ttl/topology.toml",
        "--in",
        "instance=pcaps/source_ttl/in/instance.pcap",
        "--out-dir",
        d.join("ttl").to_str().unwrap(),
        "--format",
        "pcapng",
    ]);
    assert!(o.status.success());
    let mut r =
        PcapNgReader::new(std::fs::File::open(d.join("ttl").join("instance.pcapng")).unwrap())
            .unwrap();
    let mut made = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(p) = b.unwrap() {
            for o in p.options {
                if let EnhancedPacketOption::Comment(c) = o
                    && c.starts_with("made by eipsim")
                {
                    made.push(c.to_string());
                }
            }
        }
    }
    assert!(
        made.iter().any(|c| c.starts_with("made by eipsim because of instance #3 (pcaps/source_ttl/in/instance.pcap): dropped (ttl_expired): ICMP ") && c.contains("time exceeded")),
        "{made:?}"
    );
    // The README's two examples, as printed (its paths shortened, its
    // lines joined).
    let readme = std::fs::read_to_string("README.md")
        .unwrap()
        .replace('\n', " ");
    for c in made.iter().chain(&instance_comments) {
        let short = c
            .replace("pcaps/source_ttl/in/", "")
            .replace("pcaps/demo/in/", "");
        if short.starts_with("made by eipsim because of instance #3")
            || short.starts_with("internet #1 (internet.pcap)")
        {
            assert!(
                readme.contains(&format!("`{short}`")),
                "README lacks {short:?}"
            );
        }
    }
    assert!(
        readme.contains("`internet #1 (internet.pcap): forwarded to instance via eth1, EIP 203.0.113.13 (nat)`")
            && instance_comments.iter().any(|c| c.ends_with("internet #1 (pcaps/demo/in/internet.pcap): forwarded to instance via eth1, EIP 203.0.113.13 (nat)") || c == "internet #1 (pcaps/demo/in/internet.pcap): forwarded to instance via eth1, EIP 203.0.113.13 (nat)"),
        "{instance_comments:?}"
    );
    // And as tshark reads it (frame.comment), where tshark is installed
    // (.ci/run installs it; elsewhere the check is skipped, said).
    let tshark = Command::new("tshark").arg("--version").output().is_ok();
    if !tshark {
        assert!(
            std::env::var("EIPSIM_REQUIRE_TAP").as_deref() != Ok("1"),
            "tshark is needed here"
        );
        eprintln!("SKIPPED the tshark check: no tshark");
        return;
    }
    let o = Command::new("tshark")
        .args(["-r"])
        .arg(d.join("ng").join("internet.pcapng"))
        .args([
            "-Y",
            "frame.comment contains \"eth1\"",
            "-T",
            "fields",
            "-e",
            "frame.comment",
        ])
        .output()
        .unwrap();
    let shown = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        shown
            .lines()
            .next()
            .is_some_and(|l| l.contains("forwarded to internet via eth1")),
        "{shown}"
    );
    assert!(shown.lines().all(|l| l.contains("eth1")), "{shown}");
}

/// `eipsim diff` on the README's example: the demo against a variant that
/// prefers eth1 for 192.0.2.0/24. On the demo's captures the flows that
/// change are exactly those the demo's load-balanced route had sent by
/// eth0 (per the golden verdicts), and none other; on generated probes
/// too there are differences; a topology against itself has none.
#[test]
fn diff_lists_what_a_route_priority_change_does() {
    let (a, b) = (
        "pcaps/demo/topology.toml",
        "examples/topologies/demo-route-priority.toml",
    );
    let ins = [
        "--in",
        "instance=pcaps/demo/in/instance.pcap",
        "--in",
        "internet=pcaps/demo/in/internet.pcap",
    ];
    let mut args = vec!["diff", "--config", a, "--config", b];
    args.extend(ins);
    let o = eipsim(&args);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    // From the golden verdicts: the load-balanced flows (to 192.0.2.80)
    // that left by eth0 as 203.0.113.10.
    let by_eth0 = std::fs::read_to_string("pcaps/demo/expected/verdicts.jsonl")
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["in_port"] == "instance" && (3..=6).contains(&v["index"].as_u64().unwrap()))
        .filter(|v| v["eni"] == "eth0")
        .count();
    assert!(by_eth0 > 0);
    assert!(
        out.contains(&format!("{by_eth0} packet(s) ({by_eth0} flow(s)) to 192.0.2.80: now leave by eth1 as 203.0.113.11 (to internet) instead of leave by eth0 as 203.0.113.10 (to internet)")),
        "{out}"
    );
    assert!(
        out.ends_with(&format!(
            "summary: {by_eth0} of 15 packet(s) differ, in 1 way(s)\n"
        )),
        "{out}"
    );
    let readme = std::fs::read_to_string("README.md").unwrap();
    assert!(
        readme.contains(out.trim_end()),
        "README's diff example is stale"
    );
    // Generated probes.
    let o = eipsim(&["diff", "--config", a, "--config", b, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["generated"], true);
    assert!(v["differ"].as_u64().unwrap() > 0);
    for c in v["changes"].as_array().unwrap() {
        assert_ne!(c["before"], c["after"]);
        assert!(
            c["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d.as_str().unwrap().starts_with("192.0.2.")),
            "{c}"
        );
    }
    let o = eipsim(&["diff", "--config", a, "--config", b]);
    let t = text(&o.stdout);
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        readme.contains(&lines[..3].join("\n")),
        "README's diff probes example is stale"
    );
    assert!(readme.contains(lines[lines.len() - 1]));
    // No change: exit 0. A bad file: exit 2.
    let o = eipsim(&["diff", "--config", a, "--config", a]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("0 differ"));
    let o = eipsim(&["diff", "--config", a, "--config", "/nonexistent.toml"]);
    assert_eq!(o.status.code(), Some(2));
}

/// A replay into a folder an earlier replay filled leaves only its own
/// outputs there: no events.jsonl from a run with `--events`, no capture
/// of an ENI the topology does not have, no captures in the other
/// format; files eipsim never writes stay.
#[test]
fn replay_into_a_used_folder_leaves_no_stale_outputs() {
    let dir = tmpdir("stale");
    let out = dir.join("out");
    let out_s = out.to_str().unwrap();
    let replay = |scenario: &str, extra: &[&str]| {
        let config = format!("pcaps/{scenario}/topology.toml");
        let inst = format!("instance=pcaps/{scenario}/in/instance.pcap");
        let inet = format!("internet=pcaps/{scenario}/in/internet.pcap");
        let mut a = vec![
            "replay",
            "--config",
            &config,
            "--in",
            &inst,
            "--in",
            &inet,
            "--out-dir",
            out_s,
        ];
        a.extend_from_slice(extra);
        let o = eipsim(&a);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stderr)
    };
    let said = replay(
        "topology_changes",
        &["--events", "pcaps/topology_changes/events.toml"],
    );
    // The console counts the events, refused ones included, as the
    // checked-in events.jsonl has them.
    let golden = std::fs::read_to_string("pcaps/topology_changes/expected/events.jsonl").unwrap();
    let count = |r: &str| golden.matches(&format!("\"result\":\"{r}\"")).count();
    assert!(count("refused") > 0);
    assert!(
        said.contains(&format!(
            "events: {} applied, {} refused,",
            count("applied"),
            count("refused")
        )),
        "{said}"
    );
    assert!(out.join("events.jsonl").exists());
    assert!(out.join("eni/eth3.pcap").exists());
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join("eni/notes.txt"), "mine").unwrap();

    // The demo, without events, and an instance without eth3.
    let demo = std::fs::read_to_string("pcaps/demo/topology.toml").unwrap();
    assert!(!demo.contains("eth3"));
    let said = replay("demo", &[]);
    assert!(!said.contains("events:"), "{said}");
    assert!(!out.join("events.jsonl").exists());
    assert!(!out.join("eni/eth3.pcap").exists());
    assert!(out.join("eni/eth1.pcap").exists());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["events"]["applied"], 0);

    // pcapng replaces the pcap files; pcap again replaces the pcapng ones.
    replay("demo", &["--format", "pcapng"]);
    assert!(out.join("instance.pcapng").exists());
    assert!(!out.join("instance.pcap").exists());
    assert!(out.join("eni/eth1.pcapng").exists());
    assert!(!out.join("eni/eth1.pcap").exists());
    replay("demo", &[]);
    assert!(!out.join("internet.pcapng").exists());
    assert!(!out.join("eni/eth0.pcapng").exists());
    assert!(out.join("internet.pcap").exists());

    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("eni/notes.txt")).unwrap(),
        "mine"
    );
    // Only what the last replay listed in .eipsim-outputs goes: a capture
    // eipsim did not write stays, even with an output's name, and an
    // entry that is no longer a regular file is left as it is.
    let listed = std::fs::read_to_string(out.join(".eipsim-outputs")).unwrap();
    assert!(listed.lines().any(|l| l == "eni/eth0.pcap"), "{listed}");
    std::fs::write(out.join("eni/eth9.pcap"), "mine").unwrap();
    std::fs::write(out.join("vpc.pcapng"), "mine").unwrap();
    std::fs::remove_file(out.join("eni/eth0.pcap")).unwrap();
    std::fs::create_dir(out.join("eni/eth0.pcap")).unwrap();
    replay("demo", &["--format", "pcapng"]);
    assert_eq!(
        std::fs::read_to_string(out.join("eni/eth9.pcap")).unwrap(),
        "mine"
    );
    assert!(out.join("eni/eth0.pcap").is_dir());
    assert!(!out.join("eni/eth1.pcap").exists());
}

/// The manifest of an earlier replay can only name replay's own outputs
/// in the folder: a line naming anything else, a manifest that is a
/// symbolic link, and an `eni` folder that is a symbolic link lead to
/// nothing being removed outside, or being written through the link.
#[cfg(unix)]
#[test]
fn replay_removes_nothing_outside_its_folder() {
    let dir = tmpdir("outside");
    let home = dir.join("home");
    let out = dir.join("o");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    for f in ["secret", "thesis.pcap", "notes.txt"] {
        std::fs::write(home.join(f), "mine").unwrap();
    }
    std::os::unix::fs::symlink(&home, out.join("h")).unwrap();
    std::os::unix::fs::symlink(&home, out.join("eni")).unwrap();
    std::fs::write(
        out.join(".eipsim-outputs"),
        "h/secret\n../home/secret\neni/thesis.pcap\n/tmp/x.pcap\n.eipsim-outputs\n",
    )
    .unwrap();
    let replay = || {
        let o = eipsim(&[
            "replay",
            "--config",
            "pcaps/demo/topology.toml",
            "--in",
            "instance=pcaps/demo/in/instance.pcap",
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    replay();
    for f in ["secret", "thesis.pcap", "notes.txt"] {
        assert_eq!(
            std::fs::read_to_string(home.join(f)).unwrap(),
            "mine",
            "{f}"
        );
    }
    // A manifest that is a link is replaced, not written through.
    std::fs::remove_file(out.join(".eipsim-outputs")).unwrap();
    std::os::unix::fs::symlink(home.join("notes.txt"), out.join(".eipsim-outputs")).unwrap();
    replay();
    assert_eq!(
        std::fs::read_to_string(home.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(
        std::fs::symlink_metadata(out.join(".eipsim-outputs"))
            .unwrap()
            .is_file()
    );
}

/// A replay whose inputs are in its --out-dir keeps them: an output is
/// never written over an input (refused before anything is written), and
/// an input is never taken for an earlier run's leftover.
#[test]
fn replay_never_removes_or_overwrites_its_inputs() {
    let dir = tmpdir("inputs");
    for f in ["topology.toml", "in/instance.pcap", "in/internet.pcap"] {
        let to = dir.join(f.trim_start_matches("in/"));
        std::fs::copy(Path::new("pcaps/demo").join(f), to).unwrap();
    }
    let run = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_eipsim"))
            .current_dir(&*dir)
            .args([
                "replay",
                "--config",
                "topology.toml",
                "--in",
                "instance=instance.pcap",
                "--in",
                "internet=internet.pcap",
                "--out-dir",
                ".",
                "--format",
                format,
            ])
            .output()
            .unwrap()
    };
    let before = std::fs::read(dir.join("instance.pcap")).unwrap();
    let o = run("pcap");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("instance.pcap would be written over an input capture instance.pcap; nothing was written"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.join("report.json").exists(), "nothing is written");
    // Nor a report, a page or expectations over what the run reads.
    let refused = |args: &[&str], want: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_eipsim"))
            .current_dir(&*dir)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            text(&o.stderr).contains(want),
            "{args:?}: {}",
            text(&o.stderr)
        );
    };
    let base = [
        "replay",
        "--config",
        "topology.toml",
        "--in",
        "instance=instance.pcap",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    refused(
        &with(&["--out-dir", "o", "--html", "instance.pcap"]),
        "over an input capture",
    );
    // Nor over replay's own outputs, in a folder that exists or not yet.
    refused(
        &with(&["--out-dir", "new", "--html", "new/report.json"]),
        "--html new/report.json is replay's own output",
    );
    refused(
        &with(&[
            "--out-dir",
            ".",
            "--format",
            "pcapng",
            "--expect-write",
            "verdicts.jsonl",
        ]),
        "--expect-write verdicts.jsonl is replay's own output",
    );
    refused(
        &with(&["--out-dir", "o", "--expect-write", "topology.toml"]),
        "over the topology",
    );
    std::fs::create_dir_all(dir.join("o")).unwrap();
    std::fs::copy(dir.join("internet.pcap"), dir.join("o/report.json")).unwrap();
    refused(
        &with(&["--in", "internet=o/report.json", "--out-dir", "o"]),
        "o/report.json would be written over an input capture",
    );
    assert_eq!(
        std::fs::read(dir.join("o/report.json")).unwrap(),
        std::fs::read(dir.join("internet.pcap")).unwrap()
    );
    // pcapng outputs beside the pcap inputs, twice (the second run finds
    // the first's manifest): the inputs stay.
    for _ in 0..2 {
        let o = run("pcapng");
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(std::fs::read(dir.join("instance.pcap")).unwrap(), before);
        assert!(dir.join("internet.pcap").exists());
        assert!(dir.join("instance.pcapng").exists());
    }
    // An earlier replay's output replayed in turn, into the same folder in
    // the other format: listed as that replay's, but now an input, it stays.
    let run_in = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_eipsim"))
            .current_dir(&*dir)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    let common = ["replay", "--config", "topology.toml", "--out-dir", "out"];
    let mut first = common.to_vec();
    first.extend(["--in", "instance=instance.pcap"]);
    run_in(&first);
    let mut again = common.to_vec();
    again.extend(["--in", "internet=out/internet.pcap", "--format", "pcapng"]);
    run_in(&again);
    assert!(dir.join("out/internet.pcap").exists());
    assert!(!dir.join("out/instance.pcap").exists());
}

/// `--out-dir` naming a file is refused with that said, before anything
/// is read or written.
#[test]
fn replay_into_a_file_says_it_is_not_a_folder() {
    let dir = tmpdir("outfile");
    let file = dir.join("out");
    std::fs::write(&file, "x").unwrap();
    let o = eipsim(&[
        "replay",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        "instance=pcaps/demo/in/instance.pcap",
        "--out-dir",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains(&format!(
            "{}: --out-dir names a file, not a folder",
            file.display()
        )),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

/// `trace --packet N` past the captures says how many there are and how
/// they are numbered; a capture with no packet is exit 1 for `trace` and
/// `trace --summary` alike.
#[test]
fn trace_of_a_packet_that_is_not_there_gives_the_count() {
    let dir = tmpdir("empty");
    let empty = dir.join("empty.pcap");
    // A pcap header (little-endian, microseconds, Ethernet) and no record.
    let mut h = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65535, 1] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&empty, h).unwrap();
    let input = format!("instance={}", empty.display());
    for extra in [&[][..], &["--summary"][..]] {
        let mut a = vec![
            "trace",
            "--config",
            "pcaps/demo/topology.toml",
            "--in",
            &input,
        ];
        a.extend_from_slice(extra);
        let o = eipsim(&a);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("the captures hold no packet"),
            "{extra:?}: {}",
            text(&o.stderr)
        );
    }
    for n in ["0", "16"] {
        let o = eipsim(&[
            "trace",
            "--config",
            "pcaps/demo/topology.toml",
            "--in",
            "instance=pcaps/demo/in/instance.pcap",
            "--in",
            "internet=pcaps/demo/in/internet.pcap",
            "--packet",
            n,
        ]);
        assert_eq!(o.status.code(), Some(1), "{n}");
        assert!(
            text(&o.stderr).contains(&format!(
                "no packet {n}: the captures hold 15, numbered from 1"
            )),
            "{n}: {}",
            text(&o.stderr)
        );
    }
}

/// `--expect` counts expectations, not keys: one expectation wrong on
/// two keys is one unmet, its two keys each said.
#[test]
fn expect_counts_unmet_expectations_not_keys() {
    let dir = tmpdir("expect-count");
    let exp = dir.join("e.jsonl");
    std::fs::write(
        &exp,
        "{\"in_port\":\"instance\",\"index\":1,\"verdict\":\"dropped\",\"out_port\":\"vpc\"}\n{\"in_port\":\"instance\",\"index\":0}\n",
    )
    .unwrap();
    let o = eipsim(&[
        "replay",
        "--config",
        "pcaps/demo/topology.toml",
        "--in",
        "instance=pcaps/demo/in/instance.pcap",
        "--out-dir",
        dir.join("out").to_str().unwrap(),
        "--expect",
        exp.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.matches("e.jsonl:1: ").count(), 2, "{out}");
    assert!(out.contains("1 of 2 expectation(s) unmet"), "{out}");
}
