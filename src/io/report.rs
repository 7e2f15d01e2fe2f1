//! The JSON report (replay's report.json, live mode's --report) and the
//! per-frame verdict lines (verdicts.jsonl).

use crate::config::{AlgProtocol, Topology};
use crate::engine::counters::Traffic;
use crate::engine::{Counters, DropReason, Port, Verdict};
use serde_json::{Value, json};

fn traffic(t: &Traffic) -> Value {
    json!({
        "rx_packets": t.rx_packets,
        "rx_bytes": t.rx_bytes,
        "tx_packets": t.tx_packets,
        "tx_bytes": t.tx_bytes,
    })
}

/// The counters as JSON. Every drop reason and ALG protocol is listed, even
/// at zero, so scripts can rely on the keys.
pub fn report(topo: &Topology, c: &Counters) -> Value {
    let ports: serde_json::Map<String, Value> = Port::ALL
        .iter()
        .map(|p| (p.name().to_string(), traffic(c.port(*p))))
        .collect();
    let enis: serde_json::Map<String, Value> = topo
        .enis
        .iter()
        .zip(&c.enis)
        .map(|(e, t)| (e.name.clone(), traffic(t)))
        .collect();
    let eips: serde_json::Map<String, Value> = topo
        .eips
        .iter()
        .zip(&c.eips)
        .map(|(e, t)| {
            let mut v = traffic(t);
            v["eni"] = json!(topo.eni(e.eni).name);
            v["mode"] = json!(e.mode.name());
            (e.address.to_string(), v)
        })
        .collect();
    let drops: serde_json::Map<String, Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), json!(c.drop_count(*r))))
        .collect();
    let alg: serde_json::Map<String, Value> = AlgProtocol::ALL
        .iter()
        .map(|p| {
            let a = c.alg_count(*p);
            (
                p.name().to_string(),
                json!({"dropped": a.dropped, "forwarded": a.forwarded}),
            )
        })
        .collect();
    json!({
        "frames": {
            "received": c.frames.received,
            "forwarded": c.frames.forwarded,
            "consumed": c.frames.consumed,
            "dropped": c.frames.dropped,
            "held": c.frames.held,
        },
        "ports": ports,
        "enis": enis,
        "eips": eips,
        "drops": drops,
        "alg": alg,
        "flows": {
            "created": c.flows.created,
            "expired": c.flows.expired,
            "active": c.flows.active,
            "peak": c.flows.peak,
        },
    })
}

/// One line of verdicts.jsonl.
pub fn verdict_line(
    topo: &Topology,
    in_port: Port,
    in_file: &str,
    index: u64,
    v: &Verdict,
) -> Value {
    json!({
        "in_port": in_port.name(),
        "in_file": in_file,
        "index": index,
        "verdict": v.name(),
        "out_port": v.out_port().map(|p| p.name()),
        "reason": v.reason().map(|r| r.name()),
        "eni": v.eni().map(|e| topo.eni(e).name.as_str()),
        "eip": v.eip().map(|e| topo.eip(e).address.to_string()),
    })
}
