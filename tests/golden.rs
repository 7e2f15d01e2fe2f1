//! Replays every scenario's captures under pcaps/ and checks:
//! 1. the inputs are what the generator makes (files and generator agree);
//! 2. replay's outputs equal the checked-in expected/ files, byte for byte;
//! 3. each frame's verdict is the one written down by hand in the scenario;
//! 4. forwarded frames carry the expected addresses and TTL - 1;
//! 5. every checksum of every output frame verifies with etherparse (an
//!    independent implementation), including the packet quoted by an ICMP
//!    error and reassembled fragments;
//! 6. the counters' ledger balances: nothing vanishes.

use eipsim::config::Topology;
use eipsim::engine::Link;
use eipsim::io::capture::{read_all, write_pcap};
use eipsim::io::replay::{Input, replay};
use eipsim_fixtures::{Expect, Scenario, ScenarioExt};
use etherparse::{Ipv4Header, Ipv4Slice, LaxSlicedPacket, SlicedPacket, TransportSlice};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("eipsim-golden-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// One's complement sum check, independent of eipsim: etherparse computes
/// the checksum and we compare with the field.
fn check_frame_checksums(ctx: &str, frame: &[u8]) {
    if frame.len() < 14 || frame[12..14] != [8, 0] {
        return;
    }
    let ip = Ipv4Slice::from_slice(&frame[14..])
        .unwrap_or_else(|e| panic!("{ctx}: output IPv4 does not parse: {e}"));
    let h = ip.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "{ctx}: IPv4 header checksum"
    );
    if ip.is_payload_fragmented() {
        return; // checked after reassembly
    }
    let p =
        SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("{ctx}: does not parse: {e}"));
    check_l4(ctx, &h, &p.transport, ip.payload().payload);
}

fn check_l4(ctx: &str, h: &Ipv4Header, t: &Option<TransportSlice>, payload: &[u8]) {
    match t {
        Some(TransportSlice::Tcp(t)) => {
            let want = t.to_header().calc_checksum_ipv4(h, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "{ctx}: TCP checksum");
        }
        Some(TransportSlice::Udp(u)) => {
            if u.checksum() != 0 {
                let want = u.to_header().calc_checksum_ipv4(h, u.payload()).unwrap();
                assert_eq!(u.checksum(), want, "{ctx}: UDP checksum");
            }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let want = i.header().icmp_type.calc_checksum(i.payload());
            assert_eq!(i.checksum(), want, "{ctx}: ICMP checksum");
            if matches!(i.type_u8(), 3 | 11 | 12) {
                check_quote(ctx, i.payload());
            }
        }
        _ => {
            let _ = payload;
        }
    }
}

/// The packet quoted inside an ICMP error: its IP checksum, and its L4
/// checksum when the quote holds the whole datagram.
fn check_quote(ctx: &str, q: &[u8]) {
    let (h, rest) =
        Ipv4Header::from_slice(q).unwrap_or_else(|e| panic!("{ctx}: quoted header: {e}"));
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "{ctx}: quoted IPv4 checksum"
    );
    let whole = rest.len() + h.header_len() >= usize::from(h.total_len);
    if whole {
        let p = LaxSlicedPacket::from_ip(q).unwrap();
        check_l4(&format!("{ctx} (quoted)"), &h, &p.transport, rest);
    }
}

/// Reassembles the fragments of each datagram among `frames` and checks
/// the L4 checksum of the whole.
fn check_reassembled(ctx: &str, frames: &[Vec<u8>]) {
    use std::collections::BTreeMap;
    type Piece = (usize, bool, Vec<u8>, Ipv4Header);
    let mut dgrams: BTreeMap<(u16, [u8; 4], [u8; 4]), Vec<Piece>> = BTreeMap::new();
    for f in frames {
        if f.len() < 34 || f[12..14] != [8, 0] {
            continue;
        }
        let ip = Ipv4Slice::from_slice(&f[14..]).unwrap();
        if !ip.is_payload_fragmented() {
            continue;
        }
        let h = ip.header().to_header();
        dgrams
            .entry((h.identification, h.source, h.destination))
            .or_default()
            .push((
                h.fragment_offset.byte_offset() as usize,
                h.more_fragments,
                ip.payload().payload.to_vec(),
                h,
            ));
    }
    for (key, mut parts) in dgrams {
        parts.sort_by_key(|p| p.0);
        if parts[0].0 != 0 || parts.last().unwrap().1 {
            continue; // incomplete (an orphan, or dropped pieces)
        }
        let mut payload = Vec::new();
        for (off, _, data, _) in &parts {
            assert_eq!(*off, payload.len(), "{ctx}: fragment gap in {key:?}");
            payload.extend_from_slice(data);
        }
        let mut h = parts[0].3.clone();
        h.more_fragments = false;
        h.fragment_offset = Default::default();
        h.set_payload_len(payload.len()).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut whole = h.to_bytes().to_vec();
        whole.extend_from_slice(&payload);
        let p = SlicedPacket::from_ip(&whole).unwrap();
        check_l4(
            &format!("{ctx} reassembled {key:?}"),
            &h,
            &p.transport,
            &payload,
        );
    }
}

fn ipv4_addrs(frame: &[u8]) -> Option<(String, String, u8)> {
    let ip = Ipv4Slice::from_slice(frame.get(14..)?).ok()?;
    let h = ip.header();
    Some((
        h.source_addr().to_string(),
        h.destination_addr().to_string(),
        h.ttl(),
    ))
}

fn run_scenario(sc: &Scenario) {
    let dir = PathBuf::from("pcaps").join(sc.name);
    assert!(
        dir.exists(),
        "{}: missing; run `cargo run --example gen-pcaps`",
        dir.display()
    );

    // 1. The checked-in inputs are what the generator makes.
    let work = tmpdir(sc.name);
    assert_eq!(
        std::fs::read_to_string(dir.join("topology.toml")).unwrap(),
        sc.topology,
        "{}: topology.toml differs from the generator",
        sc.name
    );
    let mut inputs = Vec::new();
    for (port, frames) in sc.inputs() {
        let fresh = work.join(format!("{}.pcap", port.name()));
        write_pcap(&fresh, &frames).unwrap();
        let checked_in = dir.join("in").join(format!("{}.pcap", port.name()));
        assert_eq!(
            std::fs::read(&fresh).unwrap(),
            std::fs::read(&checked_in).unwrap(),
            "{}: generator and checked-in input differ; run `cargo run --example gen-pcaps`",
            checked_in.display()
        );
        inputs.push(Input {
            port,
            path: checked_in,
        });
    }

    // 2 (checked last, so a meaningful failure shows first).
    let out = work.join("out");
    let topo = Topology::from_toml(&sc.topology).unwrap();
    let events = sc.events_toml().map(|text| {
        assert_eq!(
            std::fs::read_to_string(dir.join("events.toml")).unwrap(),
            text,
            "{}: events.toml differs from the generator",
            sc.name
        );
        eipsim::io::events::parse(&text).unwrap()
    });
    let opts = eipsim::io::replay::ReplayOptions {
        mtu: sc.mtu,
        events: events.as_deref(),
        observe: true,
        format: Default::default(),
    };
    let summary = replay(topo, &inputs, &out, opts, &mut |_, _| {}).unwrap();
    // The scenario's expect.jsonl, as `replay --expect` checks it: the
    // hand-written expectations hold (README: "In CI: --expect").
    let expect_file = dir.join("expect.jsonl");
    assert_eq!(
        std::fs::read_to_string(&expect_file).unwrap(),
        sc.expectations_jsonl(),
        "{}: expect.jsonl differs from the generator",
        sc.name
    );
    let expectations = eipsim::io::expect::load(&expect_file).unwrap();
    assert_eq!(expectations.len(), sc.steps.len());
    let unmet = eipsim::io::expect::check("expect.jsonl", &expectations, &summary.observed);
    assert!(unmet.is_empty(), "{}: {unmet:#?}", sc.name);
    // Each event against its hand-written expectation.
    if events.is_some() {
        let lines: Vec<Value> = std::fs::read_to_string(out.join("events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.len(),
            sc.events.len(),
            "{}: one line per event",
            sc.name
        );
        for (e, line) in sc.events.iter().zip(&lines) {
            let ctx = format!("{} / event {} ({}): {line}", sc.name, line["index"], e.note);
            match &e.expect {
                Ok(reasons) => {
                    assert_eq!(line["result"], "applied", "{ctx}");
                    let got: Vec<&str> = line["flows_ended"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f["reason"].as_str().unwrap())
                        .collect();
                    assert_eq!(&got, reasons, "{ctx}: the flows it ended");
                }
                Err(words) => {
                    assert_eq!(line["result"], "refused", "{ctx}");
                    assert!(
                        line["reasons"].to_string().contains(words),
                        "{ctx}: want {words:?}"
                    );
                    assert_eq!(
                        line["flows_ended"].as_array().map(|a| a.len()),
                        Some(0),
                        "{ctx}"
                    );
                }
            }
        }
    }
    // 3 and 4. Verdicts and addresses against the hand-written expectations.
    let verdicts: Vec<Value> = std::fs::read_to_string(out.join("verdicts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        verdicts.len(),
        sc.steps.len(),
        "{}: one verdict line per input frame",
        sc.name
    );
    let mut port_out: [Vec<Vec<u8>>; 3] = Default::default();
    for p in Link::ALL {
        port_out[p.index()] = read_all(&out.join(format!("{}.pcap", p.name())))
            .unwrap()
            .into_iter()
            .map(|(_, f)| f)
            .collect();
    }
    let mut next_out = [0usize; 3];
    for v in &verdicts {
        let in_port = Link::from_name(v["in_port"].as_str().unwrap()).unwrap();
        let index = v["index"].as_u64().unwrap() as usize;
        let step = sc
            .step_at(in_port, index)
            .expect("verdict for a known frame");
        let ctx = format!("{} / {} #{} ({})", sc.name, in_port, index, step.note);
        let mut take = |p: Link| {
            let f = port_out[p.index()][next_out[p.index()]].clone();
            next_out[p.index()] += 1;
            f
        };
        // A packet sent as fragments: its pieces, checked one by one (and
        // reassembled below); the first stands for it.
        let pieces = v["fragments"].as_u64().unwrap_or(1) as usize;
        let out_frame = v["out_port"].as_str().map(|p| {
            let p = Link::from_name(p).unwrap();
            let frags: Vec<Vec<u8>> = (0..pieces).map(|_| take(p)).collect();
            for (i, f) in frags.iter().enumerate().skip(1) {
                check_frame_checksums(&format!("{ctx} fragment {i}"), f);
            }
            frags[0].clone()
        });
        if let Some(p) = v["icmp_sent_on"].as_str() {
            let f = take(Link::from_name(p).unwrap());
            let want = match v["reason"].as_str() {
                Some("ttl_expired") => (11, 0),
                _ => (3, 4),
            };
            assert_eq!(
                (f[14 + 20], f[14 + 21]),
                want,
                "{ctx}: ICMP fragmentation needed or time exceeded"
            );
            assert_eq!(&f[0..6], &step.frame[6..12], "{ctx}: back to the sender");
            check_frame_checksums(&ctx, &f);
        }
        match &step.expect {
            Expect::Forward { port, src, dst } => {
                assert_eq!(v["verdict"], "forwarded", "{ctx}: {v}");
                assert_eq!(v["out_port"], port.name(), "{ctx}: {v}");
                let f = out_frame.unwrap();
                let (s, d, ttl) = ipv4_addrs(&f).unwrap();
                let (_, _, in_ttl) = ipv4_addrs(&step.frame).unwrap();
                assert!(
                    src.is_empty() || src.contains(&s.as_str()),
                    "{ctx}: source {s}, want one of {src:?}"
                );
                assert!(
                    dst.is_empty() || dst.contains(&d.as_str()),
                    "{ctx}: destination {d}, want one of {dst:?}"
                );
                assert_eq!(ttl, in_ttl - 1, "{ctx}: TTL decremented once");
                if pieces == 1 {
                    assert_eq!(f.len(), step.frame.len(), "{ctx}: length unchanged");
                } else {
                    let mtu = sc.mtu[port.index()].expect("fragmented only under an MTU") as usize;
                    assert!(f.len() - 14 <= mtu, "{ctx}: fragment fits the MTU");
                }
                check_frame_checksums(&ctx, &f);
            }
            Expect::Reply(p) => {
                assert_eq!(v["verdict"], "consumed", "{ctx}: {v}");
                assert_eq!(v["out_port"], p.name(), "{ctx}: {v}");
                let f = out_frame.unwrap();
                assert_eq!(&f[12..14], &[8, 6], "{ctx}: an ARP frame");
                assert_eq!(&f[20..22], &[0, 2], "{ctx}: an ARP reply");
                assert_eq!(
                    &f[28..32],
                    &step.frame[38..42],
                    "{ctx}: answers for the requested address"
                );
                assert_eq!(&f[32..38], &step.frame[22..28], "{ctx}: to the requester");
                assert_eq!(
                    &f[0..6],
                    &step.frame[6..12],
                    "{ctx}: unicast to the requester"
                );
            }
            Expect::Consume => {
                assert_eq!(v["verdict"], "consumed", "{ctx}: {v}");
                assert!(v["out_port"].is_null(), "{ctx}: {v}");
            }
            Expect::Drop(r) => {
                assert_eq!(v["verdict"], "dropped", "{ctx}: {v}");
                assert_eq!(v["reason"], r.name(), "{ctx}: {v}");
                assert!(out_frame.is_none(), "{ctx}: a dropped frame is not sent");
            }
        }
    }
    for p in Link::ALL {
        assert_eq!(
            next_out[p.index()],
            port_out[p.index()].len(),
            "{}: every frame in {}.pcap has a verdict",
            sc.name,
            p.name()
        );
        check_reassembled(
            &format!("{} {}.pcap", sc.name, p.name()),
            &port_out[p.index()],
        );
    }
    // The ENI views: valid checksums too, and private addresses for NAT.
    for f in files_under(&out.join("eni")) {
        for (i, (_, frame)) in read_all(&f).unwrap().iter().enumerate() {
            check_frame_checksums(&format!("{} {} #{i}", sc.name, f.display()), frame);
        }
    }

    // The trace of every packet, as checked in (replay writes no trace:
    // compare it apart from the replay outputs).
    let items = eipsim::io::trace::trace_with_events(
        Topology::from_toml(&sc.topology).unwrap(),
        &inputs,
        sc.mtu,
        None,
        events.as_deref().unwrap_or(&[]),
    )
    .unwrap();
    let text: String = items.iter().map(|t| t.text() + "\n").collect();
    let traces: Vec<&eipsim::io::trace::PacketTrace> = items
        .iter()
        .filter_map(|i| match i {
            eipsim::io::trace::TraceItem::Packet(p) => Some(p),
            eipsim::io::trace::TraceItem::Event(_) => None,
        })
        .collect();
    assert_eq!(traces.len(), sc.steps.len());
    // The summary counted as the replay goes (--html, trace --summary)
    // is the summary of the kept traces, held fragments included.
    let owned: Vec<eipsim::io::trace::PacketTrace> = traces.iter().map(|t| (*t).clone()).collect();
    let (streamed, packets) = eipsim::io::trace::summary_with_events(
        Topology::from_toml(&sc.topology).unwrap(),
        &inputs,
        sc.mtu,
        events.as_deref().unwrap_or(&[]),
    )
    .unwrap();
    assert_eq!(packets, traces.len(), "{}", sc.name);
    let kept = eipsim::io::trace::summary(&owned);
    assert_eq!(
        streamed.iter().map(|g| g.text()).collect::<Vec<_>>(),
        kept.iter().map(|g| g.text()).collect::<Vec<_>>(),
        "{}",
        sc.name
    );
    let want_trace = std::fs::read_to_string(dir.join("expected").join("trace.txt")).unwrap();
    assert!(
        text == want_trace,
        "{}: trace differs from expected/trace.txt; got:\n{text}",
        sc.name
    );
    for t in &traces {
        let j = t.json();
        let v = verdicts
            .iter()
            .find(|v| v["in_port"] == j["in_port"] && v["index"] == j["index"])
            .expect("a verdict line for every traced packet");
        for k in ["verdict", "reason", "out_port"] {
            assert_eq!(
                j[k], v[k],
                "{}: trace and replay agree on {k} for packet {}",
                sc.name, t.number
            );
        }
    }

    // 6. The ledger.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let fr = &report["frames"];
    let n = |k: &str| fr[k].as_u64().unwrap();
    assert_eq!(
        n("received"),
        sc.steps.len() as u64,
        "{}: received",
        sc.name
    );
    assert_eq!(
        n("received"),
        n("forwarded") + n("consumed") + n("dropped"),
        "{}: ledger {fr}",
        sc.name
    );
    assert_eq!(n("held"), 0);
    let drops: u64 = report["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(drops, n("dropped"), "{}: drops by reason add up", sc.name);

    let expected = dir.join("expected");
    let want: Vec<PathBuf> = files_under(&expected)
        .into_iter()
        .filter(|p| !p.ends_with("trace.txt"))
        .collect();
    let got = files_under(&out);
    let rel = |v: &[PathBuf], base: &Path| -> Vec<PathBuf> {
        v.iter()
            .map(|p| p.strip_prefix(base).unwrap().to_path_buf())
            .collect()
    };
    assert_eq!(
        rel(&got, &out),
        rel(&want, &expected),
        "{}: output file set",
        sc.name
    );
    for (g, w) in got.iter().zip(&want) {
        assert!(
            std::fs::read(g).unwrap() == std::fs::read(w).unwrap(),
            "{}: {} differs from {}",
            sc.name,
            g.display(),
            w.display()
        );
    }

    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn every_scenario_replays_as_expected() {
    let all = eipsim_fixtures::all();
    let mut names: Vec<&str> = all.iter().map(|s| s.name).collect();
    for sc in &all {
        run_scenario(sc);
    }
    // No stale scenario directories.
    let mut on_disk: Vec<String> = std::fs::read_dir("pcaps")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    names.sort();
    assert_eq!(on_disk, names, "pcaps/ holds exactly the scenarios");
}

#[test]
fn eni_captures_show_private_addresses_in_nat_mode() {
    // The demo's outbound HTTPS leaves eth0 as 172.16.0.10 (private) and the
    // Internet sees 203.0.113.10.
    let eth0 = read_all(Path::new("pcaps/demo/expected/eni/eth0.pcap")).unwrap();
    let (s, d, _) = ipv4_addrs(&eth0[0].1).unwrap();
    assert_eq!((s.as_str(), d.as_str()), ("172.16.0.10", "198.51.100.7"));
    // Cut-through: the ENI carries the EIP.
    let eth2 = read_all(Path::new("pcaps/demo/expected/eni/eth2.pcap")).unwrap();
    let (_, d, _) = ipv4_addrs(&eth2[0].1).unwrap();
    assert_eq!(d, "203.0.113.12");
}

#[test]
fn alg_forward_is_counted_per_protocol() {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string("pcaps/alg_forward/expected/report.json").unwrap(),
    )
    .unwrap();
    assert_eq!(r["alg"]["sip"]["forwarded"], 1);
    assert_eq!(r["alg"]["ftp"]["forwarded"], 1);
    assert_eq!(r["alg"]["dns"]["forwarded"], 0);
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string("pcaps/alg/expected/report.json").unwrap())
            .unwrap();
    assert_eq!(r["alg"]["sip"]["dropped"], 3);
    assert_eq!(r["drops"]["alg_unsupported"], 9);
}

#[test]
fn every_fragment_of_a_sip_datagram_counts_for_the_alg() {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string("pcaps/checksums/expected/report.json").unwrap(),
    )
    .unwrap();
    assert_eq!(r["alg"]["sip"]["dropped"], 3, "{}", r["alg"]);
    assert_eq!(r["drops"]["alg_unsupported"], 3);
}

#[test]
fn udp_zero_checksum_stays_zero() {
    let out = read_all(Path::new("pcaps/checksums/expected/internet.pcap")).unwrap();
    let f = &out[0].1;
    assert_eq!(&f[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
}

#[test]
fn flow_table_expires_idle_flows() {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string("pcaps/flow_table/expected/report.json").unwrap(),
    )
    .unwrap();
    assert!(
        r["flows"]["expired"].as_u64().unwrap() >= 1,
        "{}",
        r["flows"]
    );
    assert_eq!(r["flows"]["peak"], 2);
}

/// RFC 5508: the packet quoted in an ICMP error is translated too. Runs the
/// engine directly (not the checked-in outputs) so a regression cannot hide
/// in regenerated golden files.
#[test]
fn icmp_errors_translate_the_quote() {
    use eipsim::engine::Engine;
    let sc = eipsim_fixtures::all()
        .into_iter()
        .find(|s| s.name == "checksums")
        .unwrap();
    let mut engine = Engine::new(Topology::from_toml(&sc.topology).unwrap());
    let mut quotes = Vec::new();
    for (i, s) in sc.steps.iter().enumerate() {
        let mut f = s.frame.clone();
        engine.process(s.ts_ns, s.port, &mut f, i as u64);
        if s.note.contains("port unreachable") {
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
                panic!("ICMP")
            };
            let (q, _) = Ipv4Header::from_slice(icmp.payload()).unwrap();
            quotes.push((s.port, q.source, q.destination));
            check_frame_checksums(&s.note, &f);
        }
    }
    assert_eq!(
        quotes,
        vec![
            // From the Internet: quoted source EIP -> private IP.
            (Link::Internet, [172, 16, 0, 10], [198, 51, 100, 7]),
            // From the instance: quoted destination private IP -> EIP.
            (Link::Instance, [198, 51, 100, 7], [203, 0, 113, 10]),
        ]
    );
}

/// Every drop reason shows up, explained, in some checked-in trace.
#[test]
fn every_drop_reason_has_a_trace() {
    let mut all = String::new();
    for sc in eipsim_fixtures::all() {
        all += &std::fs::read_to_string(
            PathBuf::from("pcaps")
                .join(sc.name)
                .join("expected/trace.txt"),
        )
        .unwrap();
    }
    for r in eipsim::engine::DropReason::ALL {
        let line = format!("dropped ({}): {}", r.name(), r.explain());
        assert!(all.contains(&line), "no trace shows {}", r.name());
    }
    for path in [
        "forwarded to internet via",
        "forwarded to instance via",
        "forwarded to vpc via",
        "as 2 fragments",
        "consumed: reply sent on",
    ] {
        assert!(all.contains(path), "no trace shows {path}");
    }
}
