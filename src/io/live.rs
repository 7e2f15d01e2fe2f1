//! `eipsim run`: the engine between live TAP devices, on several cores.
//!
//! One receive thread per port reads frames into reusable buffers and
//! hands them, in batches, to N workers over crossbeam channels. Each
//! worker owns an [`Engine`] (its own flow table and counters), so the
//! data path takes no lock. A frame goes to the worker chosen by a hash of
//! its *remote* address (the destination of a frame from the instance, the
//! source of one from outside, the quoted packet's remote for an ICMP
//! error), which is the same for both directions of a flow and for every
//! fragment of a datagram, even though NAT changes the local address.
//! Workers write their output straight to the devices. See docs/live.md.

use super::capture::CaptureWriter;
use super::report;
use super::tap::{Tap, TapError};
use crate::config::Topology;
use crate::engine::{Counters, Engine, Link, Received, Verdict};
use crate::wire::ethernet::Mac;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded, unbounded};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Frames per batch handed to a worker.
const BATCH: usize = 64;
/// Batches a worker's queue holds before receive threads wait (bounds the
/// buffers in flight: QUEUE x BATCH frames per worker).
const QUEUE: usize = 32;
/// The largest Ethernet frame a TAP can hand over (a 64 KiB IP packet).
const MAX_FRAME: usize = 65_535 + 18;

/// What `eipsim run` was asked to do.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The checked topology every worker's engine is built for.
    pub topology: Topology,
    /// The ports to open and their device names.
    pub taps: Vec<(Link, String)>,
    /// Worker threads, each with its own engine (0 runs as 1).
    pub workers: usize,
    /// MTU per port (index [`Link::index`]), IP bytes: set on the device
    /// and on each engine's egress.
    pub mtu: [u32; 3],
    /// Directory for the per-port and per-ENI captures; `None`: no capture.
    pub capture: Option<PathBuf>,
    /// Bytes per capture file before it is rotated (one older file kept).
    pub capture_limit: u64,
    /// How often a stats line is printed to stdout; `None`: never.
    pub stats_interval: Option<Duration>,
}

/// Why `eipsim run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A port's TAP device could not be opened.
    #[error("port {port}: {source}")]
    Tap {
        /// The port.
        port: Link,
        /// Why.
        source: TapError,
    },
    /// The capture directory could not be created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Where a receive thread gets its emptied buffers back.
type BufferQueue = (Sender<Vec<Frame>>, Receiver<Vec<Frame>>);

/// A reusable frame buffer.
struct Frame {
    data: Vec<u8>,
    len: usize,
    port: Link,
    now: u64,
    /// Its position in the batch (frames the engine makes because of it
    /// carry this as their cause).
    tag: u64,
}

impl Received for Frame {
    fn port(&self) -> Link {
        self.port
    }
    fn tag(&self) -> u64 {
        self.tag
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn frame(&self) -> &[u8] {
        &self.data[..self.len]
    }
    fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
}

/// What all threads share.
struct Shared {
    taps: [Option<Tap>; 3],
    /// Cleared when a device disappears.
    alive: [AtomicBool; 3],
    /// The peer MAC last seen on each port (0 = none yet).
    peer_mac: [AtomicU64; 3],
    tx_errors: [AtomicU64; 3],
    /// Frames forwarded to a port that has no device in this run.
    undeliverable: [AtomicU64; 3],
    capture_dropped: AtomicU64,
    events: Mutex<Vec<String>>,
    stop: Arc<AtomicBool>,
    start: Instant,
}

impl Shared {
    fn event(&self, msg: String) {
        eprintln!("eipsim run: {msg}");
        if let Ok(mut e) = self.events.lock() {
            e.push(msg);
        }
    }
}

/// What `run` returns when it stops.
pub struct LiveSummary {
    /// Every worker's counters merged (a crashed worker's are missing, and
    /// the report says so).
    pub counters: Counters,
    /// The report (report.json's shape) with a `live` section: devices,
    /// undeliverable frames, events, whether a thread crashed.
    pub report: serde_json::Value,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^ (z >> 33)
}

/// The worker for a frame: a hash of the remote address (see module docs).
fn worker_for(port: Link, f: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let addr = |b: &[u8], o: usize| {
        b.get(o..o + 4)
            .map(|a| u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    };
    let remote = match f.get(12..14) {
        Some([0x08, 0x00]) => {
            let ip = &f[14..];
            let hl = usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4;
            // Later fragments carry payload where the ICMP type would be.
            let first = ip
                .get(6..8)
                .is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) & 0x1fff == 0);
            let icmp_error =
                first && ip.get(9) == Some(&1) && matches!(ip.get(hl), Some(3 | 11 | 12));
            match (icmp_error, port) {
                // The quoted packet: it went the other way.
                (true, Link::Instance) => addr(ip, hl + 8 + 12),
                (true, _) => addr(ip, hl + 8 + 16),
                (false, Link::Instance) => addr(ip, 16),
                (false, _) => addr(ip, 12),
            }
        }
        Some([0x08, 0x06]) => addr(f, 28),
        _ => None,
    };
    remote.map_or(0, |r| (mix(u64::from(r)) % workers as u64) as usize)
}

/// Runs until `stop` is set; `ready` is called once every port is open.
pub fn run(
    opts: LiveOptions,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(),
) -> Result<LiveSummary, LiveError> {
    let mut taps: [Option<Tap>; 3] = [None, None, None];
    let mut devices = Vec::new();
    for (port, name) in &opts.taps {
        let tap = Tap::open(name, opts.mtu[port.index()]).map_err(|source| LiveError::Tap {
            port: *port,
            source,
        })?;
        devices.push((*port, name.clone(), tap.created));
        taps[port.index()] = Some(tap);
    }
    let shared = Arc::new(Shared {
        taps,
        alive: Default::default(),
        peer_mac: Default::default(),
        tx_errors: Default::default(),
        undeliverable: Default::default(),
        capture_dropped: AtomicU64::new(0),
        events: Mutex::new(Vec::new()),
        stop: stop.clone(),
        start: Instant::now(),
    });
    for (port, _, _) in &devices {
        shared.alive[port.index()].store(true, Ordering::Relaxed);
        // Until the kernel side sends a frame, its MAC is the device's own:
        // without it a forwarded frame would go to the broadcast MAC, which
        // the kernel's TCP ignores (pkt_type != PACKET_HOST).
        if let Some(tap) = &shared.taps[port.index()] {
            let m = tap.mac;
            let mac = u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]) | 1 << 63;
            shared.peer_mac[port.index()].store(mac, Ordering::Relaxed);
        }
    }
    let workers = opts.workers.max(1);

    // Capture thread.
    let (cap_tx, cap_handle) = match &opts.capture {
        Some(dir) => {
            let (tx, rx) = bounded::<(usize, u64, Vec<u8>)>(8192);
            let names = capture_names(&opts.topology);
            let dir = dir.clone();
            let limit = opts.capture_limit;
            std::fs::create_dir_all(dir.join("eni")).map_err(|source| LiveError::Io {
                path: dir.clone(),
                source,
            })?;
            let h = std::thread::Builder::new()
                .name("eipsim-capture".into())
                .spawn(move || capture_thread(&dir, &names, limit, rx))
                .expect("spawn capture thread");
            (Some(tx), Some(h))
        }
        None => (None, None),
    };

    // Workers.
    let mut work_tx: Vec<Sender<Vec<Frame>>> = Vec::new();
    let mut worker_handles = Vec::new();
    let snapshots: Vec<Arc<Mutex<Counters>>> = (0..workers)
        .map(|_| Arc::new(Mutex::new(Counters::new(&opts.topology))))
        .collect();
    // One return queue per receive thread, so buffers go home.
    let mut returns: [Option<BufferQueue>; 3] = [None, None, None];
    for (port, _, _) in &devices {
        returns[port.index()] = Some(unbounded());
    }
    let return_to: [Option<Sender<Vec<Frame>>>; 3] =
        std::array::from_fn(|i| returns[i].as_ref().map(|(tx, _)| tx.clone()));
    for (w, snapshot) in snapshots.iter().enumerate() {
        let (tx, rx) = bounded::<Vec<Frame>>(QUEUE);
        work_tx.push(tx);
        let shared = shared.clone();
        let topo = opts.topology.clone();
        let snapshot = snapshot.clone();
        let return_to = return_to.clone();
        let cap_tx = cap_tx.clone();
        let mtu = opts.mtu;
        worker_handles.push(
            std::thread::Builder::new()
                .name(format!("eipsim-worker-{w}"))
                .spawn(move || worker(topo, mtu, rx, &shared, &snapshot, &return_to, cap_tx))
                .expect("spawn worker"),
        );
    }
    drop(cap_tx);
    drop(return_to);

    // Receive threads.
    let mut rx_handles = Vec::new();
    for (port, _, _) in &devices {
        let shared = shared.clone();
        let work_tx = work_tx.clone();
        let (_, back) = returns[port.index()]
            .take()
            .expect("a return queue per port");
        let port = *port;
        let buf_len = opts.mtu[port.index()] as usize + 18;
        rx_handles.push(
            std::thread::Builder::new()
                .name(format!("eipsim-rx-{}", port.name()))
                .spawn(move || receive(port, buf_len, &shared, &work_tx, &back))
                .expect("spawn receive thread"),
        );
    }
    drop(work_tx);

    ready();

    // Stats, on this thread, until stop.
    let mut last = Counters::new(&opts.topology);
    let mut next = opts.stats_interval.map(|i| Instant::now() + i);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if let (Some(at), Some(every)) = (next, opts.stats_interval)
            && Instant::now() >= at
        {
            let now = merged(&opts.topology, &snapshots);
            println!("{}", stats_line(&shared, &now, &last, every));
            last = now;
            next = Some(at + every);
        }
    }
    let mut crashed = false;
    for h in rx_handles {
        if h.join().is_err() {
            crashed = true;
            shared.event("a receive thread crashed; its port stopped".into());
        }
    }
    let mut total = Counters::new(&opts.topology);
    for (w, h) in worker_handles.into_iter().enumerate() {
        match h.join() {
            Ok(c) => total.merge(&c),
            Err(_) => {
                // Its counters are lost; say so rather than under-report.
                crashed = true;
                shared.event(format!(
                    "worker {w} crashed; its counters are missing from this report"
                ));
            }
        }
    }
    if let Some(h) = cap_handle {
        let _ = h.join();
    }
    let mut rep = report::report(&opts.topology, &total);
    let ports: serde_json::Map<String, serde_json::Value> = devices
        .iter()
        .map(|(port, name, created)| {
            let i = port.index();
            (
                port.name().to_string(),
                serde_json::json!({
                    "device": name,
                    "created": created,
                    "lost": !shared.alive[i].load(Ordering::Relaxed),
                    "tx_errors": shared.tx_errors[i].load(Ordering::Relaxed),
                    "mtu": opts.mtu[i],
                }),
            )
        })
        .collect();
    let undeliverable: serde_json::Map<String, serde_json::Value> = Link::ALL
        .iter()
        .map(|p| {
            (
                p.name().to_string(),
                serde_json::json!(shared.undeliverable[p.index()].load(Ordering::Relaxed)),
            )
        })
        .collect();
    rep["live"] = serde_json::json!({
        "workers": workers,
        "devices": ports,
        "undeliverable": undeliverable,
        "capture_dropped": shared.capture_dropped.load(Ordering::Relaxed),
        "events": shared.events.lock().map(|e| e.clone()).unwrap_or_default(),
        "seconds": shared.start.elapsed().as_secs_f64(),
        "crashed": crashed,
    });
    Ok(LiveSummary {
        counters: total,
        report: rep,
    })
}

fn merged(topo: &Topology, snapshots: &[Arc<Mutex<Counters>>]) -> Counters {
    let mut c = Counters::new(topo);
    for s in snapshots {
        if let Ok(s) = s.lock() {
            c.merge(&s);
        }
    }
    c
}

fn stats_line(shared: &Shared, now: &Counters, last: &Counters, every: Duration) -> String {
    let secs = every.as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| ((a.saturating_sub(b)) as f64 / secs).round() as u64;
    let mut s = format!("[{:>6.1}s]", shared.start.elapsed().as_secs_f64());
    for p in Link::ALL {
        let (n, l) = (now.port(p), last.port(p));
        s.push_str(&format!(
            " {} rx {} tx {} pps",
            p.name(),
            rate(n.rx_packets, l.rx_packets),
            rate(n.tx_packets, l.tx_packets)
        ));
        s.push(';');
    }
    let drops: Vec<String> = crate::engine::DropReason::ALL
        .iter()
        .filter(|r| now.drop_count(**r) > 0)
        .map(|r| format!("{} {}", r.name(), now.drop_count(*r)))
        .collect();
    s.push_str(&format!(
        " flows {}; drops {}",
        now.flows.active,
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    ));
    s
}

fn receive(
    port: Link,
    buf_len: usize,
    shared: &Shared,
    work: &[Sender<Vec<Frame>>],
    back: &Receiver<Vec<Frame>>,
) {
    let Some(tap) = &shared.taps[port.index()] else {
        return;
    };
    let workers = work.len();
    let mut free: Vec<Frame> = Vec::new();
    let mut spare_vecs: Vec<Vec<Frame>> = Vec::new();
    // A frame larger than a buffer (the device MTU was raised behind
    // eipsim's back) spills here and moves to a buffer of its size.
    let mut overflow = vec![0u8; MAX_FRAME];
    let mut pending: Vec<Vec<Frame>> = (0..workers).map(|_| Vec::with_capacity(BATCH)).collect();
    let mut lost = false;
    while !shared.stop.load(Ordering::Relaxed) && !lost {
        // Buffers back from the workers.
        while let Ok(mut v) = back.try_recv() {
            free.append(&mut v);
            spare_vecs.push(v);
        }
        match tap.wait_readable(100) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                shared.event(format!(
                    "port {port} ({}) lost: {e}; the other ports keep working",
                    tap.name()
                ));
                lost = true;
                continue;
            }
        }
        let now = shared.start.elapsed().as_nanos() as u64;
        for _ in 0..BATCH {
            let mut f = free.pop().unwrap_or_else(|| Frame {
                data: vec![0; buf_len],
                len: 0,
                port,
                now,
                tag: 0,
            });
            if f.data.len() < buf_len {
                f.data.resize(buf_len, 0);
            }
            match tap.recv_spill(&mut f.data, &mut overflow) {
                Ok(n) => {
                    if n > f.data.len() {
                        let head = f.data.len();
                        f.data.extend_from_slice(&overflow[..n - head]);
                    }
                    f.len = n.min(f.data.len());
                    f.now = now;
                    f.port = port;
                    if n >= 12 {
                        let m = &f.data[6..12];
                        let mac = u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
                            | 1 << 63;
                        if shared.peer_mac[port.index()].load(Ordering::Relaxed) != mac {
                            shared.peer_mac[port.index()].store(mac, Ordering::Relaxed);
                        }
                    }
                    let w = worker_for(port, f.frame(), workers);
                    f.tag = pending[w].len() as u64;
                    pending[w].push(f);
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    free.push(f);
                    break;
                }
                Err(e) => {
                    free.push(f);
                    shared.event(format!(
                        "port {port} ({}) lost: {e}; the other ports keep working",
                        tap.name()
                    ));
                    lost = true;
                    break;
                }
            }
            if !tap.wait_readable(0).unwrap_or(false) {
                break;
            }
        }
        for (w, p) in pending.iter_mut().enumerate() {
            if p.is_empty() {
                continue;
            }
            let next = spare_vecs
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BATCH));
            let batch = std::mem::replace(p, next);
            if let Err(e) = work[w].send(batch) {
                // The worker is gone (shutting down): keep the buffers.
                free.extend(e.into_inner());
            }
        }
    }
    if lost {
        shared.alive[port.index()].store(false, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    topo: Topology,
    mtu: [u32; 3],
    rx: Receiver<Vec<Frame>>,
    shared: &Shared,
    snapshot: &Mutex<Counters>,
    return_to: &[Option<Sender<Vec<Frame>>>; 3],
    capture: Option<Sender<(usize, u64, Vec<u8>)>>,
) -> Counters {
    let mut engine = Engine::new(topo);
    for p in Link::ALL {
        engine.set_mtu(p, Some(mtu[p.index()]));
    }
    let capturing = capture.is_some();
    engine.set_eni_capture(capturing);
    let mut verdicts = Vec::with_capacity(BATCH);
    let mut published = Instant::now();
    loop {
        let mut batch = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => {
                publish(&engine, snapshot);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        for p in Link::ALL {
            let mac = shared.peer_mac[p.index()].load(Ordering::Relaxed);
            if mac != 0 {
                let b = mac.to_be_bytes();
                engine.set_peer_mac(p, Mac([b[2], b[3], b[4], b[5], b[6], b[7]]));
            }
        }
        if capturing {
            // One by one, to capture each frame's ENI view.
            verdicts.clear();
            for f in batch.iter_mut() {
                let (now, port, tag) = (f.now, f.port, f.tag);
                let v = engine.process(now, port, f.frame_mut(), tag);
                if let (Some(cap), Some((eni, view))) = (&capture, engine.eni_view()) {
                    send_capture(shared, cap, 3 + usize::from(eni.0), now, view);
                }
                verdicts.push(v);
            }
        } else {
            engine.process_batch(&mut batch, &mut verdicts);
        }
        // Fragments and generated ICMP errors go right after the frame that
        // caused them (their `cause` is its position in the batch).
        let mut pending = engine.poll_transmit();
        for (i, (f, v)) in batch.iter().zip(&verdicts).enumerate() {
            emit(shared, v, f.frame(), f.now, &capture);
            while let Some(t) = pending.take_if(|t| t.cause == i as u64) {
                send(shared, t.port, &t.frame, 0, &capture);
                pending = engine.poll_transmit();
            }
        }
        while let Some(t) = pending.take().or_else(|| engine.poll_transmit()) {
            send(shared, t.port, &t.frame, 0, &capture);
        }
        while let Some(r) = engine.poll_released() {
            emit(shared, &r.verdict, &r.frame, 0, &capture);
            if let (Some(cap), Some((eni, view))) = (&capture, &r.eni_view) {
                send_capture(shared, cap, 3 + usize::from(eni.0), 0, view);
            }
        }
        let home = batch.first().map(|f| f.port.index());
        if let Some(Some(back)) = home.map(|i| &return_to[i]) {
            let _ = back.send(batch);
        }
        if published.elapsed() > Duration::from_millis(200) {
            publish(&engine, snapshot);
            published = Instant::now();
        }
    }
    engine.flush();
    while let Some(r) = engine.poll_released() {
        emit(shared, &r.verdict, &r.frame, 0, &capture);
    }
    publish(&engine, snapshot);
    engine.counters()
}

fn publish(engine: &Engine, snapshot: &Mutex<Counters>) {
    if let Ok(mut s) = snapshot.lock() {
        *s = engine.counters();
    }
}

type CaptureTx = Sender<(usize, u64, Vec<u8>)>;

/// Sends a processed frame where its verdict says (if anywhere).
fn emit(shared: &Shared, v: &Verdict, frame: &[u8], now: u64, capture: &Option<CaptureTx>) {
    if let Some(out) = v.sends_frame() {
        send(shared, out, frame, now, capture);
    }
}

fn send(shared: &Shared, out: Link, frame: &[u8], now: u64, capture: &Option<CaptureTx>) {
    let i = out.index();
    match &shared.taps[i] {
        Some(tap) if shared.alive[i].load(Ordering::Relaxed) => {
            if tap.send(frame).is_err() {
                shared.tx_errors[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {
            shared.undeliverable[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(cap) = capture {
        send_capture(shared, cap, i, now, frame);
    }
}

fn send_capture(
    shared: &Shared,
    cap: &Sender<(usize, u64, Vec<u8>)>,
    file: usize,
    now: u64,
    frame: &[u8],
) {
    let ts = shared.start.elapsed().as_nanos() as u64;
    let _ = now;
    if let Err(TrySendError::Full(_)) = cap.try_send((file, ts, frame.to_vec())) {
        shared.capture_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The capture files: one per port, then one per ENI (as replay writes).
fn capture_names(topo: &Topology) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Link::ALL
        .iter()
        .map(|p| PathBuf::from(format!("{}.pcap", p.name())))
        .collect();
    v.extend(
        topo.enis
            .iter()
            .map(|e| Path::new("eni").join(format!("{}.pcap", e.name))),
    );
    v
}

fn capture_thread(dir: &Path, names: &[PathBuf], limit: u64, rx: Receiver<(usize, u64, Vec<u8>)>) {
    let mut files: Vec<Option<(CaptureWriter, u64)>> = names.iter().map(|_| None).collect();
    let wall0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    for (i, ts, data) in rx {
        let path = dir.join(&names[i]);
        if files[i].as_ref().is_some_and(|(_, n)| *n >= limit) {
            // Rotate: keep one older file, so the total stays bounded.
            if let Some((w, _)) = files[i].take() {
                let _ = w.finish();
            }
            let _ = std::fs::rename(&path, path.with_extension("1.pcap"));
        }
        if files[i].is_none() {
            match CaptureWriter::create(&path) {
                Ok(w) => files[i] = Some((w, 24)),
                Err(e) => {
                    eprintln!("eipsim run: capture {}: {e}", path.display());
                    continue;
                }
            }
        }
        if let Some((w, n)) = files[i].as_mut()
            && w.write(wall0 + ts, &data).is_ok()
        {
            *n += 16 + data.len() as u64;
        }
    }
    // Every file exists at the end, even empty, as with replay.
    for (i, f) in files.into_iter().enumerate() {
        match f {
            Some((w, _)) => {
                let _ = w.finish();
            }
            None => {
                if let Ok(w) = CaptureWriter::create(&dir.join(&names[i])) {
                    let _ = w.finish();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{icmp_unreachable, tcp, udp};

    #[test]
    fn both_directions_of_a_nat_flow_go_to_one_worker() {
        for p in 0..200u16 {
            let out = tcp(
                Link::Instance,
                "172.16.0.10",
                "198.51.100.7",
                40000 + p,
                443,
                "S",
                b"",
            );
            let back = tcp(
                Link::Internet,
                "198.51.100.7",
                "203.0.113.10",
                443,
                40000 + p,
                "SA",
                b"",
            );
            assert_eq!(
                worker_for(Link::Instance, &out, 4),
                worker_for(Link::Internet, &back, 4)
            );
            let err = icmp_unreachable(
                Link::Internet,
                "192.0.2.1",
                "203.0.113.10",
                &udp(Link::Internet, "203.0.113.10", "198.51.100.7", 1, 2, b""),
                28,
            );
            assert_eq!(
                worker_for(Link::Internet, &err, 4),
                worker_for(Link::Instance, &out, 4)
            );
        }
        let spread: std::collections::BTreeSet<usize> = (0..64u8)
            .map(|i| {
                worker_for(
                    Link::Internet,
                    &udp(
                        Link::Internet,
                        &format!("198.51.100.{i}"),
                        "203.0.113.10",
                        1,
                        2,
                        b"",
                    ),
                    4,
                )
            })
            .collect();
        assert_eq!(spread.len(), 4, "remote hosts spread over the workers");
    }

    #[test]
    fn later_icmp_fragments_follow_the_first() {
        use crate::probe::{fragment, ping};
        // A big ping whose payload starts with 0x03, like an ICMP error's type.
        let mut echo = ping(Link::Internet, "198.51.100.7", "203.0.113.10", 1, 1, false);
        echo.extend(std::iter::repeat_n(3u8, 3000));
        let len = (echo.len() - 14) as u16;
        echo[16..18].copy_from_slice(&len.to_be_bytes());
        let pieces = fragment(&echo, 9, 1480);
        let first = worker_for(Link::Internet, &pieces[0], 8);
        for p in &pieces[1..] {
            assert_eq!(worker_for(Link::Internet, p, 8), first);
        }
    }
}
