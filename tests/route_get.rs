//! `eipsim route get` agrees with what replay does to the same packet:
//! many generated questions, asked both ways.

use eipsim::config::Topology;
use eipsim::engine::Link;
use eipsim::engine::hash::SplitMix64;
use eipsim::explain::{Proto, RouteQuery, route_get};
use eipsim::io::capture::{read_all, write_pcap};
use eipsim::io::replay::{Input, replay};
use eipsim::probe;
use eipsim_fixtures::STANDARD;
use serde_json::Value;
use std::net::Ipv4Addr;

const ROUTES: &str = r#"
[[route]]
dst = "0.0.0.0/0"
via = ["eth0", "eth1"]
weights = [2, 1]
metric = 100

[[route]]
dst = "0.0.0.0/0"
from = "172.16.1.12/32"
via = "eth1"
metric = 100

[[route]]
dst = "192.0.2.0/24"
via = "eth2"

[[route]]
dst = "172.16.200.0/24"
via = "eth2"

[[route]]
dst = "198.51.100.128/25"
via = ["eth0", "eth1"]
balance = "random"
"#;

#[test]
fn route_get_agrees_with_replay() {
    let text = format!("{STANDARD}\n{ROUTES}");
    let topo = Topology::from_toml(&text).unwrap();
    let mut rng = SplitMix64::new(2026);
    let mut pick = |n: u64| (rng.next_u64() % n) as usize;
    let froms = [
        None,
        Some("172.16.0.10"),
        Some("172.16.1.10"),
        Some("172.16.1.11"),
        Some("172.16.1.12"),
        Some("203.0.113.12"),
    ];
    let dports = [80u16, 443, 53, 5060, 21, 1720, 69, 554];
    let mut questions = Vec::new();
    let mut frames = Vec::new();
    for i in 0..400u16 {
        let dst = match pick(5) {
            0 => format!("198.51.100.{}", pick(256)),
            1 => format!("203.0.113.{}", 100 + pick(100)),
            2 => format!("192.0.2.{}", pick(256)),
            3 => format!("172.16.100.{}", pick(256)),
            _ => format!("172.16.200.{}", pick(256)),
        };
        let from = froms[pick(froms.len() as u64)];
        let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp][pick(3)];
        let sport = 10_000 + i; // distinct flows: no collisions between questions
        let dport = dports[pick(dports.len() as u64)];
        let q = RouteQuery {
            dst: dst.parse().unwrap(),
            from: from.map(|f| f.parse().unwrap()),
            proto,
            sport,
            dport,
            inbound: false,
            reply: false,
        };
        let src = from.unwrap_or("172.16.0.10");
        let f = match proto {
            Proto::Tcp => probe::tcp(Link::Instance, src, &dst, sport, dport, "S", b""),
            Proto::Udp => probe::udp(Link::Instance, src, &dst, sport, dport, b""),
            Proto::Icmp => probe::ping(Link::Instance, src, &dst, sport, 1, false),
        };
        frames.push((1_000_000 * (u64::from(i) + 1), f));
        questions.push(q);
    }
    let dir = std::env::temp_dir().join(format!("eipsim-routeget-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cap = dir.join("in.pcap");
    write_pcap(&cap, &frames).unwrap();
    replay(
        topo.clone(),
        &[Input {
            port: Link::Instance,
            path: cap,
        }],
        &dir.join("out"),
        Default::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("out/verdicts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut outputs: Vec<std::collections::VecDeque<Vec<u8>>> = Link::ALL
        .iter()
        .map(|p| {
            read_all(&dir.join(format!("out/{}.pcap", p.name())))
                .unwrap()
                .into_iter()
                .map(|(_, f)| f)
                .collect()
        })
        .collect();
    let mut kinds = std::collections::BTreeSet::new();
    for (q, line) in questions.iter().zip(&lines) {
        let a = route_get(&topo, q).json();
        let out = line["out_port"].as_str().map(|p| {
            outputs[Link::from_name(p).unwrap().index()]
                .pop_front()
                .unwrap()
        });
        if let Some(choices) = a["choices"].as_array() {
            // A random pick: replay's ENI is one of the choices.
            if !line["eni"].is_null() {
                assert!(
                    choices.iter().any(|c| c["eni"] == line["eni"]),
                    "{q:?}: {line} not in {choices:?}"
                );
            }
            kinds.insert("random".to_string());
            continue;
        }
        for k in ["verdict", "reason", "out_port", "eni", "eip"] {
            assert_eq!(
                a[k], line[k],
                "{k} for {q:?}:\nroute get {a}\nreplay   {line}"
            );
        }
        match (out, line["out_port"].as_str()) {
            (Some(f), Some("internet")) => {
                let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]).to_string();
                assert_eq!(a["public"], src, "public address for {q:?}");
            }
            _ => assert!(a["public"].is_null(), "no public address for {q:?}: {a}"),
        }
        kinds.insert(format!("{}/{}", line["verdict"], line["reason"]));
    }
    // The questions covered forwarding and several kinds of drop.
    assert!(kinds.len() >= 5 && kinds.contains("random"), "{kinds:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
