//! The events file of `replay --events` and `trace --events`: topology
//! operations at times on the packet clock.
//!
//! ```toml
//! [[event]]
//! at = 5.0              # seconds after the first packet's timestamp
//! op = "detach-eni"
//! eni = "eth1"
//!
//! [[event]]
//! at_time = 1700000005.5  # or: an absolute capture timestamp, seconds
//! op = "associate-eip"
//! address = "203.0.113.30"
//! eni = "eth3"
//! mode = "nat"
//! ```
//!
//! An event applies before the first packet whose timestamp is at or after
//! its time (events of one time in file order); events after the last
//! packet apply at the end of the input.

use crate::config::{Operation, Refusal};
use crate::engine::ops::Ended;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

/// The latest time an event can have, seconds: the packet clock counts
/// nanoseconds in a `u64`.
const MAX_SECONDS: f64 = 18_446_744_073.0;

/// When an event happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Seconds after the first packet's timestamp (`at`).
    After(f64),
    /// A capture timestamp, seconds since the epoch (`at_time`).
    At(f64),
}

impl When {
    /// The packet-clock time in ns, given the first packet's timestamp.
    pub fn ns(self, first_ts: u64) -> u64 {
        match self {
            When::After(s) => first_ts.saturating_add((s * 1e9).round() as u64),
            When::At(s) => (s * 1e9).round() as u64,
        }
    }
}

/// One `[[event]]`.
#[derive(Debug, Clone)]
pub struct TimedOp {
    /// 0-based position in the file.
    pub index: usize,
    /// 1-based line of its `[[event]]` header.
    pub line: usize,
    /// When it happens.
    pub when: When,
    /// What it does.
    pub op: Operation,
}

/// What became of an event.
#[derive(Debug)]
pub struct Outcome<'a> {
    /// The event.
    pub event: &'a TimedOp,
    /// When it applied, ns on the packet clock.
    pub ts: u64,
    /// The flows it ended, or why it was refused.
    pub result: Result<Vec<Ended>, Refusal>,
    /// The topology from now on, if it was applied.
    pub topology: Option<crate::config::Topology>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    event: Vec<Spanned<toml::Table>>,
}

/// Reads an events file; every problem is reported with the file's path
/// and the line of the key it is about (an unknown key, an unknown `op`,
/// a bad time), else of the `[[event]]` it is in.
pub fn load(path: &Path) -> Result<Vec<TimedOp>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the events file: {e}", path.display()))?;
    parse(&text).map_err(|errs| {
        errs.iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Parses the events of a file's text, in file order.
pub fn parse(text: &str) -> Result<Vec<TimedOp>, Vec<String>> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let file: File = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| format!("line {}: ", line_of(s.start)));
        vec![format!(
            "{}{}",
            at.unwrap_or_default(),
            e.message().trim_end()
        )]
    })?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let starts: Vec<usize> = file.event.iter().map(|e| e.span().start).collect();
    for (index, ev) in file.event.into_iter().enumerate() {
        let start = ev.span().start;
        let line = line_of(start);
        // An array-of-tables entry's span is its header: the event's keys
        // run to the next header.
        let end = starts.get(index + 1).copied().unwrap_or(text.len());
        let body = text.get(start..end).unwrap_or("");
        // The line of `key = ...` in this event (the table keeps no spans
        // of its own), else the event's.
        let key_line = |key: &str| {
            let mut at = start;
            for l in body.split_inclusive('\n') {
                let t = l.trim_start();
                if t.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with('='))
                {
                    return line_of(at);
                }
                at += l.len();
            }
            line
        };
        // The line whose value is the string `v`, else the event's.
        let value_line = |v: &str| {
            let quoted = [format!("\"{v}\""), format!("'{v}'")];
            let mut at = start;
            for l in body.split_inclusive('\n') {
                if l.split_once('=').is_some_and(|(_, val)| {
                    quoted.iter().any(|q| val.trim().starts_with(q.as_str()))
                }) {
                    return line_of(at);
                }
                at += l.len();
            }
            line
        };
        let mut table = ev.into_inner();
        let num = |v: Option<toml::Value>, key: &str| -> Result<Option<f64>, String> {
            match v {
                None => Ok(None),
                // The packet clock is u64 nanoseconds: up to 2^64 ns.
                Some(toml::Value::Float(f)) if (0.0..MAX_SECONDS).contains(&f) => Ok(Some(f)),
                Some(toml::Value::Integer(i)) if (0..MAX_SECONDS as i64).contains(&i) => {
                    Ok(Some(i as f64))
                }
                Some(other) => Err(format!(
                    "{key} must be a number of seconds from 0 to {MAX_SECONDS}, not {other}"
                )),
            }
        };
        let when = match (num(table.remove("at"), "at"), num(table.remove("at_time"), "at_time")) {
            (Ok(Some(s)), Ok(None)) => Ok(When::After(s)),
            (Ok(None), Ok(Some(s))) => Ok(When::At(s)),
            (Ok(Some(_)), Ok(Some(_))) => Err("give at or at_time, not both".to_string()),
            (Ok(None), Ok(None)) => {
                Err("an event needs its time: at = SECONDS after the first packet, or at_time = a capture timestamp".to_string())
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let op = Operation::deserialize(toml::Value::Table(table))
            .map_err(|e| e.message().trim_end().to_string());
        match (when, op) {
            (Ok(when), Ok(op)) => out.push(TimedOp {
                index,
                line,
                when,
                op,
            }),
            (Err(e), _) | (_, Err(e)) => {
                // An error about one key points at that key's line.
                let field = e
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split_once('`'))
                    .map(|(k, _)| k);
                // An unknown op names the op line; another unknown value
                // (a mode, say) the line that gives it.
                let variant = e
                    .strip_prefix("unknown variant `")
                    .and_then(|r| r.split_once('`'))
                    .map(|(v, _)| v);
                let at = if let Some(k) = field {
                    key_line(k)
                } else if let Some(v) = variant {
                    if e.contains("`attach-eni`") {
                        key_line("op")
                    } else {
                        value_line(v)
                    }
                } else if let Some(k) = ["at_time", "at"]
                    .into_iter()
                    .find(|k| e.starts_with(&format!("{k} must")))
                {
                    key_line(k)
                } else {
                    line
                };
                errors.push(format!("line {at}: [[event]] {}: {e}", index + 1))
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_with_their_lines() {
        let text = "[[event]]\nat = 5\nop = \"detach-eni\"\neni = \"eth1\"\n\n[[event]]\nat_time = 1.5\nop = \"route-add\"\ndst = \"192.0.2.0/24\"\nvia = \"eth0\"\n";
        let ev = parse(text).unwrap();
        assert_eq!(ev[0].when, When::After(5.0));
        assert_eq!(ev[0].op, Operation::DetachEni { eni: "eth1".into() });
        assert_eq!((ev[1].line, ev[1].when), (6, When::At(1.5)));
        assert_eq!(When::After(5.0).ns(1_000), 5_000_001_000);
        let errs = parse("[[event]]\nop = \"detach-eni\"\neni = \"eth1\"\n[[event]]\nat = 1\nop = \"detach\"\n[[event]]\nat = 1\nop = \"detach-eni\"\nenis = \"x\"\n").unwrap_err();
        assert!(
            errs[0].starts_with("line 1: [[event]] 1: an event needs its time"),
            "{errs:?}"
        );
        // Errors about a key name the key's own line.
        assert!(
            errs[1].starts_with("line 6: [[event]] 2: unknown variant `detach`"),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("line 10: [[event]] 3: unknown field `enis`"),
            "{errs:?}"
        );
        // An unknown value other than the op: the line that gives it.
        let errs = parse("[[event]]\nop = \"associate-eip\"\nat = 1\naddress = \"203.0.113.9\"\neni = \"eth1\"\nmode = \"natt\"\n").unwrap_err();
        assert!(
            errs[0].starts_with("line 6: [[event]] 1: unknown variant `natt`"),
            "{errs:?}"
        );
        let errs =
            parse("[[event]]\nop = \"detach-eni\"\n  at   = -1\neni = \"eth1\"\n").unwrap_err();
        assert!(
            errs[0].starts_with("line 3: [[event]] 1: at must be a number of seconds"),
            "{errs:?}"
        );
    }
}
