//! The control socket of `eipsim run` (`--control PATH`), which `eipsim
//! ctl` talks to: one JSON object per line each way.
//!
//! Requests: an operation, with the keys of an events file's `[[event]]`
//! (`{"op": "detach-eni", "eni": "eth1"}`), `{"show": "topology" |
//! "flows" | "counters"}`, or `{"trace": N}` (the next N packets, one
//! `{"trace": "<text>"}` line each, then `{"result": "done"}`). Answers: `{"result": "applied", "op": ...,
//! "flows_ended": [...]}`, `{"result": "refused", "reasons": [...]}`,
//! `{"topology": "<the file>"}`, `{"flows": [...]}`, `{"counters":
//! {report.json}}`, or `{"result": "error", "reasons": [...]}` for a
//! request that is not one.
//!
//! Connections are served one at a time on this thread, so operations are
//! applied in the order they come. An operation is checked here, against
//! the run's current topology; then every worker gets the new topology on
//! its control channel and applies it between two batches (one
//! `try_recv` per round, no lock on the data path), and answers with the
//! flows it ended.

use super::{Shared, merged};
use crate::config::{Operation, Topology};
use crate::engine::counters::EventCount;
use crate::engine::ops::Ended;
use crate::engine::policer::Policers;
use crate::io::port::Wake;
use crate::io::report;
use crossbeam_channel::{Sender, bounded};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The default control socket (README "eipsim ctl").
pub const DEFAULT_SOCKET: &str = "/run/eipsim.sock";

/// What the control thread asks a worker.
pub(super) enum Control {
    /// Take this topology (and, if the limits changed, these shared
    /// bandwidth buckets); answer with the flows it ended.
    Apply {
        topo: Arc<Topology>,
        policers: Option<Policers>,
        reply: Sender<Vec<Ended>>,
    },
    /// Answer with the flow table, as flows.jsonl lines.
    Flows { reply: Sender<Vec<Value>> },
    /// Trace the next `count` packets (0: stop), each as `trace` prints
    /// it.
    Trace { count: usize, reply: Sender<String> },
}

/// The run's state the control thread keeps.
pub(super) struct ControlState {
    /// The topology as the last applied operation left it.
    pub(super) topo: Mutex<Topology>,
    /// One control channel per worker.
    pub(super) workers: Vec<Sender<Control>>,
    pub(super) wakes: Arc<Vec<Wake>>,
    pub(super) snapshots: Vec<Arc<Mutex<crate::engine::Counters>>>,
    /// Operations applied and refused, and the flows they ended.
    pub(super) events: Mutex<EventCount>,
}

/// Binds the socket. A stale socket file (nobody listening) is replaced;
/// one in use is an error.
pub(super) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another eipsim run listens there",
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves connections until the run stops, each on a thread of its own
/// (a client that waits, or traces, holds up no other); operations still
/// apply one at a time (the topology's lock). Removes the socket file at
/// the end.
pub(super) fn serve(
    listener: UnixListener,
    path: PathBuf,
    state: Arc<ControlState>,
    shared: Arc<Shared>,
) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (state, shared) = (state.clone(), shared.clone());
                let _ = std::thread::Builder::new()
                    .name("eipsim-ctl-client".into())
                    .spawn(move || connection(stream, &state, &shared));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let _ = std::fs::remove_file(path);
}

/// One client: a request per line, an answer per line.
fn connection(stream: UnixStream, state: &ControlState, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    // Short reads, so the thread notices the end of the run.
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut out = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut bytes = Vec::new();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match r.read_until(b'\n', &mut bytes) {
            Ok(0) => return Ok(()),
            Ok(_) if bytes.ends_with(b"\n") => {}
            Ok(_) => return Ok(()), // closed mid-line
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
        let line = String::from_utf8_lossy(&bytes).into_owned();
        bytes.clear();
        if line.trim().is_empty() {
            continue;
        }
        if let Some(n) = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v.get("trace").and_then(|n| n.as_u64()))
        {
            trace(n as usize, state, &mut out)?;
            continue;
        }
        let answer = answer(&line, state, shared);
        out.write_all(answer.to_string().as_bytes())?;
        out.write_all(b"\n")?;
    }
}

/// `{"trace": N}`: the next N packets any worker processes, each as a
/// `{"trace": "<text>"}` line, then `{"result": "done", "traced": n}`
/// (fewer than N if none came for 60 s).
fn trace(n: usize, state: &ControlState, out: &mut UnixStream) -> std::io::Result<()> {
    let (tx, rx) = bounded::<String>(1024);
    for w in &state.workers {
        let _ = w.send(Control::Trace {
            count: n,
            reply: tx.clone(),
        });
    }
    drop(tx);
    wake_all(state);
    let mut got = 0;
    while got < n {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(text) => {
                got += 1;
                let line = json!({ "trace": text });
                out.write_all(line.to_string().as_bytes())?;
                out.write_all(b"\n")?;
            }
            Err(_) => break,
        }
    }
    // The others stop at their next traced packet (nobody reads).
    drop(rx);
    let end = json!({"result": "done", "traced": got});
    out.write_all(end.to_string().as_bytes())?;
    out.write_all(b"\n")
}

fn error(msg: String) -> Value {
    json!({"result": "error", "reasons": [msg]})
}

/// The answer to one request line.
fn answer(line: &str, state: &ControlState, shared: &Shared) -> Value {
    let req: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return error(format!("not a JSON object: {e}")),
    };
    if let Some(what) = req.get("show").and_then(|v| v.as_str()) {
        return show(what, state);
    }
    let op = match serde_json::from_value::<Operation>(req) {
        Ok(op) => op,
        Err(e) => return error(format!("not an operation: {e}")),
    };
    apply(&op, state, shared)
}

fn show(what: &str, state: &ControlState) -> Value {
    let topo = state.topo.lock().map(|t| t.clone());
    let Ok(topo) = topo else {
        return error("the control state is poisoned".into());
    };
    match what {
        "topology" => json!({"topology": topo.to_toml()}),
        "counters" => {
            let mut c = merged(&topo, &state.snapshots);
            if let Ok(e) = state.events.lock() {
                c.events = *e;
            }
            json!({"counters": report::report(&topo, &c)})
        }
        "flows" => {
            let mut flows = Vec::new();
            for w in &state.workers {
                let (tx, rx) = bounded(1);
                if w.send(Control::Flows { reply: tx }).is_ok() {
                    wake_all(state);
                    if let Ok(v) = rx.recv_timeout(Duration::from_secs(5)) {
                        flows.extend(v);
                    }
                }
            }
            json!({"flows": flows})
        }
        other => error(format!(
            "show {other:?}: known are topology, flows, counters"
        )),
    }
}

fn wake_all(state: &ControlState) {
    for w in state.wakes.iter() {
        w.signal();
    }
}

/// Checks `op` against the current topology; if it holds, every worker
/// applies the result.
fn apply(op: &Operation, state: &ControlState, shared: &Shared) -> Value {
    let Ok(mut topo) = state.topo.lock() else {
        return error("the control state is poisoned".into());
    };
    let new = match topo.apply(op) {
        Ok(t) => t,
        Err(reasons) => {
            if let Ok(mut e) = state.events.lock() {
                e.refused += 1;
            }
            shared.event(format!("{} refused: {}", op.name(), reasons.join("; ")));
            // The same keys as an applied answer and as events.jsonl.
            let result: Result<Vec<Ended>, crate::config::Refusal> = Err(reasons);
            return report::outcome_json(&topo, op, &result);
        }
    };
    // New buckets, shared by all workers, only if the limits changed.
    let policers = (!Policers::same_limits(&topo, &new)).then(|| Policers::new(&new));
    let new = Arc::new(new);
    let mut replies = Vec::new();
    for w in &state.workers {
        let (tx, rx) = bounded(1);
        let msg = Control::Apply {
            topo: new.clone(),
            policers: policers.clone(),
            reply: tx,
        };
        if w.send(msg).is_ok() {
            replies.push(rx);
        }
    }
    wake_all(state);
    let mut ended = Vec::new();
    for rx in replies {
        if let Ok(v) = rx.recv_timeout(Duration::from_secs(5)) {
            ended.extend(v);
        }
    }
    *topo = (*new).clone();
    if let Ok(mut e) = state.events.lock() {
        e.applied += 1;
        e.flows_ended += ended.len() as u64;
    }
    shared.event(format!(
        "{} applied: {} flow(s) ended",
        op.name(),
        ended.len()
    ));
    let result: Result<Vec<Ended>, crate::config::Refusal> = Ok(ended);
    let mut v = report::outcome_json(&topo, op, &result);
    v["result"] = json!("applied");
    v
}

/// SIGHUP: reads the topology file again and applies its difference from
/// the running topology as operations, in order, each said on stderr (and
/// in the report's events). A file with errors, or a change no operation
/// makes, changes nothing.
pub(super) fn reload(path: &Path, state: &ControlState, shared: &Shared) {
    let new = match Topology::load(path) {
        Ok(t) => t,
        Err(e) => {
            shared.event(format!(
                "SIGHUP: {} has errors; nothing changed:\n{e}",
                path.display()
            ));
            return;
        }
    };
    let current = match state.topo.lock() {
        Ok(t) => t.clone(),
        Err(_) => return,
    };
    let (ops, cannot) = current.diff(&new);
    if !cannot.is_empty() {
        shared.event(format!(
            "SIGHUP: {}: no operation makes these changes (restart to take them); nothing changed: {}",
            path.display(),
            cannot.join("; ")
        ));
        return;
    }
    // All or nothing: every step is checked on a copy first, so a file
    // whose change cannot be made in steps leaves the run as it was.
    let mut t = current;
    for op in &ops {
        match t.apply(op) {
            Ok(next) => t = next,
            Err(reasons) => {
                shared.event(format!(
                    "SIGHUP: {}: the step {} {} would be refused ({}); nothing changed",
                    path.display(),
                    op.name(),
                    serde_json::to_value(op)
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    reasons.join("; ")
                ));
                return;
            }
        }
    }
    shared.event(format!(
        "SIGHUP: {}: {} operation(s) to apply",
        path.display(),
        ops.len()
    ));
    for op in &ops {
        apply(op, state, shared);
    }
}
