//! `replay --expect FILE` and `--expect-write FILE`: "packets in, expected
//! results out", for users' CI.
//!
//! An expectations file is JSON lines with any subset of the keys of
//! verdicts.jsonl (`in_port`, `in_file`, `index`, `verdict`, `out_port`,
//! `reason`, `eni`, `eip`, `fragments`, `icmp_sent_on`), plus `out`: the
//! output frame's `src`, `dst`, `sport`, `dport`, `ttl`. A line with
//! `in_port` and `index` is about that packet (and `in_file` if given);
//! any other line is about the packet at its own position (the n-th line,
//! the n-th verdict). Every key a line gives must hold; a JSON array
//! lists the values allowed (a load-balanced route's EIPs, say); `note` is
//! free text for people and is not compared.

use crate::wire::ipv4;
use serde_json::{Map, Value, json};
use std::path::Path;

/// What replay saw for one input frame.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Its verdicts.jsonl line.
    pub line: Value,
    /// The fields of the frame it left as (`src`, `dst`, `ttl`, and
    /// `sport`, `dport` for TCP and UDP), when it left (as one frame, or as
    /// fragments, which all carry these headers).
    pub out: Option<Value>,
    /// The frame as the engine left it, in a few words.
    pub desc: String,
}

/// The output fields of a sent frame (Ethernet, IPv4): `src`, `dst`,
/// `ttl`, and for TCP/UDP `sport` and `dport`; `None` for anything else.
pub fn out_fields(frame: &[u8]) -> Option<Value> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = ipv4::Packet::new_checked(frame.get(14..)?).ok()?;
    let mut v = json!({
        "src": ip.src().to_string(),
        "dst": ip.dst().to_string(),
        "ttl": ip.ttl(),
    });
    let ports = matches!(ip.protocol(), 6 | 17) && ip.frag_offset() == 0;
    if let (true, Some(p)) = (ports, ip.payload().get(..4)) {
        v["sport"] = json!(u16::from_be_bytes([p[0], p[1]]));
        v["dport"] = json!(u16::from_be_bytes([p[2], p[3]]));
    }
    Some(v)
}

/// The expectations file `--expect-write` writes: each packet's verdict
/// line, with `out` when it left as one frame.
pub fn write(observed: &[Observed]) -> String {
    let mut s = String::new();
    for o in observed {
        let mut l = o.line.clone();
        if let Some(out) = &o.out {
            l["out"] = out.clone();
        }
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

/// The keys of a verdicts.jsonl line, which an expectation may give.
const KEYS: [&str; 10] = [
    "in_port",
    "in_file",
    "index",
    "verdict",
    "out_port",
    "reason",
    "eni",
    "eip",
    "fragments",
    "icmp_sent_on",
];

/// The fields of `out` (see [`out_fields`]).
const OUT_KEYS: [&str; 5] = ["src", "dst", "sport", "dport", "ttl"];

/// The first key an expectation gives that no verdict has (quoted, with
/// `out.` before a field of `out`): a typo would otherwise be compared
/// with null and reported as a wrong result.
fn unknown_key(m: &Map<String, Value>) -> Option<String> {
    for (k, v) in m {
        match k.as_str() {
            "note" => {}
            "out" => {
                if let Some(f) = v
                    .as_object()
                    .and_then(|o| o.keys().find(|f| !OUT_KEYS.contains(&f.as_str())))
                {
                    return Some(format!("\"out.{f}\""));
                }
            }
            k if KEYS.contains(&k) => {}
            k => return Some(format!("{k:?}")),
        }
    }
    None
}

/// Whether two `in_file` values name the same capture: equal as written,
/// or, since `--expect-write` keeps each `--in` path as given, the same
/// file name (a CI job that runs from another folder gives other paths).
fn same_file(want: &Value, got: &Value) -> bool {
    want == got
        || match (want.as_str(), got.as_str()) {
            (Some(w), Some(g)) => {
                Path::new(w).file_name().is_some()
                    && Path::new(w).file_name() == Path::new(g).file_name()
            }
            _ => false,
        }
}

/// One expectation: its 1-based line in the file and its keys.
pub type Expectation = (usize, Map<String, Value>);

/// Reads an expectations file: one JSON object per line (blank lines and
/// lines starting with `#` skipped), each with its 1-based line number.
pub fn load(path: &Path) -> Result<Vec<Expectation>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the expectations: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => {
                if let Some(bad) = unknown_key(&m) {
                    return Err(format!(
                        "{}:{}: unknown key {bad} (an expectation has {}, out.{{{}}} and note)",
                        path.display(),
                        i + 1,
                        KEYS.join(", "),
                        OUT_KEYS.join(", ")
                    ));
                }
                out.push((i + 1, m))
            }
            Ok(_) => return Err(format!("{}:{}: not a JSON object", path.display(), i + 1)),
            Err(e) => return Err(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    Ok(out)
}

/// Whether `got` is what `want` allows: equal, or one of `want`'s
/// values when `want` is an array.
fn holds(want: &Value, got: &Value) -> bool {
    match want {
        Value::Array(any) if !got.is_array() => any.contains(got),
        w => w == got,
    }
}

/// Every unmet expectation, in words: `FILE:LINE: PORT #INDEX (IN_FILE):
/// DESCRIPTION: KEY: expected X, observed Y`. Empty: all hold.
pub fn check(
    name: &str,
    expect: &[(usize, Map<String, Value>)],
    observed: &[Observed],
) -> Vec<String> {
    let mut unmet = Vec::new();
    for (n, (line, e)) in expect.iter().enumerate() {
        let by_key = e.get("in_port").zip(e.get("index"));
        let found = match by_key {
            Some((p, i)) => {
                let at = |o: &&Observed| o.line["in_port"] == *p && o.line["index"] == *i;
                match e.get("in_file") {
                    None => observed.iter().find(at),
                    // The path as written first, else the one capture of
                    // that file name.
                    Some(f) => observed
                        .iter()
                        .filter(at)
                        .find(|o| o.line["in_file"] == *f)
                        .or_else(|| {
                            let mut same = observed
                                .iter()
                                .filter(at)
                                .filter(|o| same_file(f, &o.line["in_file"]));
                            same.next().filter(|_| same.next().is_none())
                        }),
                }
            }
            None => observed.get(n),
        };
        let Some(o) = found else {
            let which = match (by_key, e.get("in_file")) {
                (Some((p, i)), Some(f)) => {
                    let on_port = || observed.iter().filter(|o| o.line["in_port"] == *p);
                    let of_file = on_port()
                        .filter(|o| o.line["in_file"] == *f || same_file(f, &o.line["in_file"]))
                        .count();
                    let named: std::collections::BTreeSet<String> = on_port()
                        .filter(|o| o.line["in_file"] != *f && same_file(f, &o.line["in_file"]))
                        .map(|o| o.line["in_file"].to_string())
                        .collect();
                    if named.len() > 1 {
                        let named: Vec<String> = named.into_iter().collect();
                        format!(
                            "in_file {f} names more than one capture on {p} ({}): give its path as --in gave it",
                            named.join(", ")
                        )
                    } else if of_file > 0 {
                        format!(
                            "no packet {p} #{i} in in_file {f}: the replay read {of_file} packet(s) of it"
                        )
                    } else {
                        let read: std::collections::BTreeSet<String> =
                            on_port().map(|o| o.line["in_file"].to_string()).collect();
                        let read: Vec<String> = read.into_iter().collect();
                        format!(
                            "no packet {p} #{i} of in_file {f}: the replay read {p} from {}",
                            if read.is_empty() {
                                "nothing".to_string()
                            } else {
                                read.join(", ")
                            }
                        )
                    }
                }
                (Some((p, i)), None) => format!("no packet {p} #{i} in the replay"),
                (None, _) => format!("no packet at position {} in the replay", n + 1),
            };
            unmet.push(format!("{name}:{line}: {which}"));
            continue;
        };
        let at = format!(
            "{name}:{line}: {} #{} ({}): {}",
            o.line["in_port"].as_str().unwrap_or("?"),
            o.line["index"],
            o.line["in_file"].as_str().unwrap_or("?"),
            o.desc
        );
        for (k, want) in e {
            if k == "note" {
                continue;
            }
            if k == "out" {
                let got = o.out.clone().unwrap_or(Value::Null);
                match want.as_object() {
                    Some(fields) => {
                        for (f, w) in fields {
                            if !holds(w, got.get(f).unwrap_or(&Value::Null)) {
                                unmet.push(format!(
                                    "{at}: out.{f}: expected {w}, observed {}",
                                    got.get(f).unwrap_or(&Value::Null)
                                ));
                            }
                        }
                    }
                    None if *want != got => {
                        unmet.push(format!("{at}: out: expected {want}, observed {got}"))
                    }
                    None => {}
                }
                continue;
            }
            let got = o.line.get(k).unwrap_or(&Value::Null);
            let same = k == "in_file" && same_file(want, got);
            if !same && !holds(want, got) {
                let why = match (k.as_str(), o.line["reason"].as_str()) {
                    ("reason", _) | (_, None) => String::new(),
                    (_, Some(r)) => format!(" (reason {r})"),
                };
                unmet.push(format!("{at}: {k}: expected {want}, observed {got}{why}"));
            }
        }
    }
    unmet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(port: &str, index: u64, verdict: &str, reason: Option<&str>) -> Observed {
        Observed {
            line: json!({"in_port": port, "in_file": "a.pcap", "index": index, "verdict": verdict, "reason": reason}),
            out: (verdict == "forwarded")
                .then(|| json!({"src": "203.0.113.10", "dst": "198.51.100.7", "ttl": 63})),
            desc: "UDP x > y".into(),
        }
    }

    #[test]
    fn keys_match_by_port_and_index_or_by_position() {
        let seen = [
            obs("instance", 0, "forwarded", None),
            obs("internet", 0, "dropped", Some("unknown_eip")),
        ];
        let parse = |s: &str| -> Vec<(usize, Map<String, Value>)> {
            s.lines()
                .enumerate()
                .map(|(i, l)| {
                    (
                        i + 1,
                        serde_json::from_str::<Value>(l)
                            .unwrap()
                            .as_object()
                            .unwrap()
                            .clone(),
                    )
                })
                .collect()
        };
        // By position, then by key; all hold.
        let ok = parse(
            "{\"verdict\":\"forwarded\",\"note\":\"x\",\"out\":{\"src\":[\"203.0.113.11\",\"203.0.113.10\"],\"ttl\":63}}\n{\"in_port\":\"internet\",\"index\":0,\"reason\":\"unknown_eip\"}",
        );
        assert_eq!(check("e", &ok, &seen), Vec::<String>::new());
        let bad = parse(
            "{\"in_port\":\"internet\",\"index\":0,\"verdict\":\"forwarded\"}\n{\"out\":{\"dst\":\"192.0.2.1\"}}\n{\"in_port\":\"vpc\",\"index\":4}",
        );
        let unmet = check("e", &bad, &seen);
        assert_eq!(
            unmet,
            [
                "e:1: internet #0 (a.pcap): UDP x > y: verdict: expected \"forwarded\", observed \"dropped\" (reason unknown_eip)",
                "e:2: internet #0 (a.pcap): UDP x > y: out.dst: expected \"192.0.2.1\", observed null",
                "e:3: no packet \"vpc\" #4 in the replay",
            ]
        );
        // What --expect-write writes holds against the same replay.
        let written = write(&seen);
        assert_eq!(
            check("w", &parse(written.trim_end()), &seen),
            Vec::<String>::new()
        );
    }

    #[test]
    fn in_file_matches_the_path_as_written_or_the_one_file_of_that_name() {
        let mut seen = vec![obs("instance", 0, "forwarded", None)];
        seen[0].line["in_file"] = json!("/ci/work/caps/a.pcap");
        let one = |l: &str| vec![(1, serde_json::from_str::<Map<String, Value>>(l).unwrap())];
        // Written from another folder: the same file by its name.
        let e = one(
            r#"{"in_port":"instance","in_file":"caps/a.pcap","index":0,"verdict":"forwarded"}"#,
        );
        assert_eq!(check("e", &e, &seen), Vec::<String>::new());
        // Another file: named in the message, with what was read.
        let e = one(r#"{"in_port":"instance","in_file":"b.pcap","index":0}"#);
        assert_eq!(
            check("e", &e, &seen),
            [
                "e:1: no packet \"instance\" #0 of in_file \"b.pcap\": the replay read \"instance\" from \"/ci/work/caps/a.pcap\""
            ]
        );
        // The file was read, but not that far.
        let e = one(r#"{"in_port":"instance","in_file":"caps/a.pcap","index":7}"#);
        assert_eq!(
            check("e", &e, &seen),
            [
                "e:1: no packet \"instance\" #7 in in_file \"caps/a.pcap\": the replay read 1 packet(s) of it"
            ]
        );
        // Two captures of that name on the port: only the exact path.
        let mut other = obs("instance", 0, "dropped", Some("no_route"));
        other.line["in_file"] = json!("/ci/other/a.pcap");
        seen.push(other);
        let e = one(r#"{"in_port":"instance","in_file":"caps/a.pcap","index":0}"#);
        assert_eq!(
            check("e", &e, &seen),
            [
                "e:1: in_file \"caps/a.pcap\" names more than one capture on \"instance\" (\"/ci/other/a.pcap\", \"/ci/work/caps/a.pcap\"): give its path as --in gave it"
            ]
        );
        let e = one(
            r#"{"in_port":"instance","in_file":"/ci/other/a.pcap","index":0,"verdict":"dropped"}"#,
        );
        assert_eq!(check("e", &e, &seen), Vec::<String>::new());
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_line() {
        let dir = std::env::temp_dir().join(format!("eipsim-expect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("e.jsonl");
        for (text, key) in [
            (
                "{\"verdict\":\"forwarded\"}\n{\"verdct\":\"dropped\"}\n",
                "\"verdct\"",
            ),
            ("\n{\"out\":{\"sorc\":\"192.0.2.1\"}}\n", "\"out.sorc\""),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = load(&f).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "{}:2: unknown key {key} (an expectation has in_port,",
                    f.display()
                )),
                "{e}"
            );
        }
        std::fs::write(&f, "{\"note\":\"x\",\"out\":{\"ttl\":63},\"eip\":null}\n").unwrap();
        assert_eq!(load(&f).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
