//! The JSON report (replay's report.json, live mode's --report) and the
//! per-frame verdict lines (verdicts.jsonl).

use crate::config::{AlgProtocol, Topology};
use crate::engine::counters::Traffic;
use crate::engine::{Counters, DropReason, Link, Verdict};
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
    let ports: serde_json::Map<String, Value> = Link::ALL
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
        .zip(&c.bandwidth_exceeded)
        .map(|((e, t), &[tx, rx])| {
            let mut v = traffic(t);
            v["eni"] = json!(topo.eni(e.eni).name);
            v["mode"] = json!(e.mode.name());
            v["bandwidth_exceeded"] = json!({"tx_packets": tx, "rx_packets": rx});
            v["associated"] = json!(e.associated);
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
        "events": {
            "applied": c.events.applied,
            "refused": c.events.refused,
            "flows_ended": c.events.flows_ended,
        },
        "hairpin": c.hairpin,
        "icmp_errors": {
            "frag_needed": c.icmp_errors.frag_needed,
            "time_exceeded": c.icmp_errors.time_exceeded,
            "withheld": c.icmp_errors.withheld,
            "rate_limited": c.icmp_errors.rate_limited,
        },
        "frames": {
            "received": c.frames.received,
            "forwarded": c.frames.forwarded,
            "consumed": c.frames.consumed,
            "dropped": c.frames.dropped,
            "held": c.frames.held,
            "generated": c.frames.generated,
            "fragments_sent": c.frames.fragments_sent,
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

/// One line of verdicts.jsonl; `generated`: the engine made frames
/// because of this one (fragments, or an ICMP error).
pub fn verdict_line(
    topo: &Topology,
    in_port: Link,
    in_file: &str,
    index: u64,
    v: &Verdict,
    generated: bool,
) -> Value {
    let mut line = json!({
        "in_port": in_port.name(),
        "in_file": in_file,
        "index": index,
        "verdict": v.name(),
        "out_port": v.out_port().map(|p| p.name()),
        "reason": v.reason().map(|r| r.name()),
        "eni": v.eni().map(|e| topo.eni(e).name.as_str()),
        "eip": v.eip().map(|e| topo.eip(e).address.to_string()),
    });
    match v {
        // Sent as fragments (in out_port's capture), not as one frame.
        Verdict::Fragmented { pieces, .. } => line["fragments"] = json!(pieces),
        // An ICMP error (fragmentation needed, time exceeded) went back on
        // the input port (none about an ICMP error or a later fragment, RFC
        // 1812 4.3.2.7, nor past the rate limit).
        Verdict::Dropped { .. } if generated => line["icmp_sent_on"] = json!(in_port.name()),
        _ => {}
    }
    line
}

/// One line of flows.jsonl: a flow still in the table at the end.
pub fn flow_line(
    topo: &Topology,
    table: &crate::engine::flow::FlowTable,
    id: crate::engine::flow::FlowId,
) -> Value {
    let f = table.get(id);
    let packets = table.packets(id);
    json!({
        "proto": f.proto,
        "instance": format!("{}:{}", f.inst_addr, f.inst_port),
        "eni_address": f.eni_addr.to_string(),
        "public": format!("{}:{}", f.pub_addr, f.inst_port),
        "remote": format!("{}:{}", f.remote, f.remote_port),
        "port": f.out_port.name(),
        "eni": topo.eni(f.eni).name,
        "eip": f.eip.map(|e| topo.eip(e).address.to_string()),
        "opened_by": match f.origin {
            crate::engine::flow::Origin::Instance => "instance",
            crate::engine::flow::Origin::Outside => "outside",
        },
        "tcp_state": (f.proto == crate::wire::ipv4::PROTO_TCP).then(|| f.tcp_state().name()),
        "packets_out": packets[0],
        "packets_in": packets[1],
        "bytes_out": f.bytes[0],
        "bytes_in": f.bytes[1],
        "created_ns": table.created_at(id),
        "expires_ns": f.expires_at(),
    })
}

/// One line of events.jsonl: a topology event and what became of it.
/// `topo` is the topology the flows it ended were in (ids keep their
/// meaning across events, so the one after it will do).
pub fn event_line(topo: &Topology, o: &super::events::Outcome) -> Value {
    let e = o.event;
    let mut v = outcome_json(topo, &e.op, &o.result);
    v["index"] = json!(e.index);
    v["line"] = json!(e.line);
    v["ts_ns"] = json!(o.ts);
    v
}

/// An operation and what became of it: `op`, `args`, `result` (`applied`
/// or `refused`), `reasons` (null unless refused) and `flows_ended`.
pub fn outcome_json(
    topo: &Topology,
    op: &crate::config::Operation,
    result: &Result<Vec<crate::engine::ops::Ended>, crate::config::Refusal>,
) -> Value {
    let mut args = serde_json::to_value(op).expect("operations serialise");
    if let Some(m) = args.as_object_mut() {
        m.remove("op");
    }
    let ended: Vec<Value> = result
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|x| {
                    let f = &x.flow;
                    json!({
                        "reason": x.reason.name(),
                        "proto": f.proto,
                        "instance": format!("{}:{}", f.inst_addr, f.inst_port),
                        "public": format!("{}:{}", f.pub_addr, f.inst_port),
                        "remote": format!("{}:{}", f.remote, f.remote_port),
                        "eni": topo.eni(f.eni).name,
                        "eip": f.eip.map(|e| topo.eip(e).address.to_string()),
                        "opened_by": match f.origin {
                            crate::engine::flow::Origin::Instance => "instance",
                            crate::engine::flow::Origin::Outside => "outside",
                        },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "op": op.name(),
        "args": args,
        "result": if result.is_ok() { "applied" } else { "refused" },
        "reasons": result.as_ref().err(),
        "flows_ended": ended,
    })
}
