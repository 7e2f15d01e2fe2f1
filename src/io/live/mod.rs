//! `eipsim run`: the engine between live ports (TAP devices or AF_PACKET
//! interfaces), on several cores.
//!
//! Each worker owns an [`Engine`] (its own flow table and counters) and
//! one queue of every port: it reads its queues, processes what it read
//! in a batch and writes the results to the output ports' queues it owns,
//! so the data path takes no lock and has no thread hop. Both directions
//! of a flow must meet one flow table: the kernel steers each frame to its
//! owner's queue with the program of [`crate::io::steer`]; where it cannot, a worker
//! hands a frame it does not own to its owner. See docs/live.md.

mod capture;
pub mod control;
pub mod cpu;
mod worker;

use super::port::{Port, PortError, PortSpec, Wake};
use super::report;
use crate::config::Topology;
use crate::engine::gso::Offload;
use crate::engine::{Counters, Engine, Link, Received};
use crate::wire::virtio_net::HEADER_LEN as VNET;
use capture::{capture_names, capture_thread};
use crossbeam_channel::{Sender, bounded};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use worker::Worker;

/// Frames read from one queue before the batch is processed.
const BATCH: usize = 64;
/// The largest frame a port hands over: the virtio-net header, a 64 KiB
/// IP packet and its Ethernet header.
const BUF_LEN: usize = VNET + 65_535 + 18;
/// Frames a worker's hand-off channel holds; more are dropped and
/// counted (`handoff_dropped`), never waited for (two workers handing to
/// each other must not deadlock).
const HANDOFF_QUEUE: usize = 4096;
/// Buffers a worker keeps for reuse; beyond it they are freed.
const POOL_MAX: usize = 4 * BATCH;

/// What `eipsim run` was asked to do.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The checked topology every worker's engine is built for.
    pub topology: Topology,
    /// The ports to open and what each attaches to.
    pub ports: Vec<(Link, PortSpec)>,
    /// Worker threads, each with its own engine and one queue per port
    /// (0 runs as 1).
    pub workers: usize,
    /// MTU per port (index [`Link::index`]), IP bytes: set on a TAP
    /// device (default 1500) and enforced on egress; `None` on an
    /// AF_PACKET port: the interface's own.
    pub mtu: [Option<u32>; 3],
    /// Use the virtio-net header and the kernel's checksum and TCP
    /// segmentation offloads (`--no-offload` clears it).
    pub offload: bool,
    /// Spin on the queues instead of sleeping in `poll` (a core per
    /// worker for lower latency).
    pub busy_poll: bool,
    /// AF_PACKET ports read from a receive ring (the default; see
    /// `packet.rs`) instead of one `read` per frame (`--no-rx-ring`).
    pub rx_ring: bool,
    /// The CPU each worker is pinned to (entry `i`: worker `i`; `--cpus`,
    /// see [`cpu::placement`]); `None`: the scheduler places them.
    pub cpus: Option<Vec<usize>>,
    /// Why the workers are or are not pinned, for the report's
    /// `live.pinning` (see [`cpu::Placement`]).
    pub pinning: String,
    /// Directory for the per-port and per-ENI captures; `None`: no capture.
    pub capture: Option<PathBuf>,
    /// Bytes per capture file before it is rotated (one older file kept).
    pub capture_limit: u64,
    /// How often a stats line is printed to stdout; `None`: never.
    pub stats_interval: Option<Duration>,
    /// The control socket `eipsim ctl` talks to, and whether failing to
    /// listen there stops the run (given with `--control`) or is only
    /// said (the default path).
    pub control: Option<(PathBuf, bool)>,
    /// The topology file and the flag SIGHUP sets: the file is read again
    /// and its difference applied as operations.
    pub reload: Option<(PathBuf, Arc<AtomicBool>)>,
}

/// Why `eipsim run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A port could not be opened.
    #[error("port {port}: {source}")]
    Port {
        /// The port.
        port: Link,
        /// Why.
        source: PortError,
    },
    /// The capture directory could not be created, or an eventfd.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory (or "eventfd").
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A reusable frame buffer: the virtio-net header's room, then the frame.
struct Frame {
    data: Vec<u8>,
    len: usize,
    port: Link,
    now: u64,
    /// Its position in the batch (frames the engine makes because of it
    /// carry this as their cause).
    tag: u64,
    off: Offload,
    /// Its worker is decided: a TCP fragment sent on by the worker that
    /// reads its whole datagram (see `Worker::route`).
    steered: bool,
}

impl Frame {
    fn new() -> Frame {
        Frame {
            data: vec![0; BUF_LEN],
            len: 0,
            port: Link::Instance,
            now: 0,
            tag: 0,
            off: Offload::NONE,
            steered: false,
        }
    }
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
        &self.data[VNET..VNET + self.len]
    }
    fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[VNET..VNET + self.len]
    }
    fn offload(&self) -> Offload {
        self.off
    }
}

/// What all threads share.
struct Shared {
    ports: [Option<Port>; 3],
    /// Cleared when a device disappears.
    alive: [AtomicBool; 3],
    /// The peer MAC last seen on each port (0 = none yet).
    peer_mac: [AtomicU64; 3],
    tx_errors: [AtomicU64; 3],
    /// Frames forwarded to a port that has no device in this run.
    undeliverable: [AtomicU64; 3],
    /// Frames whose virtio-net header could not be honoured (dropped).
    bad_offload: AtomicU64,
    /// Frames a worker passed to the worker owning their flow.
    handoffs: AtomicU64,
    /// Hand-offs dropped because the owner's channel was full.
    handoff_dropped: AtomicU64,
    /// UDP GSO packets written (consecutive datagrams of a flow joined).
    coalesced: AtomicU64,
    /// Join consecutive UDP datagrams on output (offloads on, Linux 6.2+).
    coalesce: bool,
    /// GSO packets read whole (each stands for several segments).
    gso_received: AtomicU64,
    /// GSO packets cut into segments in software (capture, MTU, a port
    /// without the header).
    segmented: AtomicU64,
    capture_dropped: AtomicU64,
    events: Mutex<Vec<String>>,
    stop: Arc<AtomicBool>,
    start: Instant,
    workers: usize,
    busy_poll: bool,
    /// The CPU each worker runs on, once it pinned itself (`None`: not
    /// pinned, or pinning failed and an event says why).
    cpus: Mutex<Vec<Option<usize>>>,
    /// `LiveOptions::pinning`, for the report.
    pinning: String,
    /// Pass GSO packets and partial checksums on (else every frame is
    /// completed and cut as it arrives: `--no-offload`).
    offload: bool,
    /// The smallest egress MTU: a GSO packet whose segments exceed it is
    /// segmented before the engine.
    min_mtu: usize,
}

impl Shared {
    fn event(&self, msg: String) {
        eprintln!("eipsim run: {msg}");
        if let Ok(mut e) = self.events.lock() {
            e.push(msg);
        }
    }

    /// Marks a port lost (once) and says so.
    fn lost(&self, link: Link, why: &str) {
        if self.alive[link.index()].swap(false, Ordering::Relaxed)
            && let Some(p) = &self.ports[link.index()]
        {
            self.event(format!(
                "port {link} ({}) lost: {why}; the other ports keep working",
                p.spec.name()
            ));
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

/// Runs until `stop` is set; `ready` is called once every port is open.
pub fn run(
    opts: LiveOptions,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(),
) -> Result<LiveSummary, LiveError> {
    let workers = opts.workers.max(1);
    let mut ports: [Option<Port>; 3] = [None, None, None];
    for (link, spec) in &opts.ports {
        let mtu = opts.mtu[link.index()];
        let p = Port::open(*link, spec, mtu, opts.offload, workers, opts.rx_ring).map_err(
            |source| LiveError::Port {
                port: *link,
                source,
            },
        )?;
        ports[link.index()] = Some(p);
    }
    let min_mtu = ports.iter().flatten().map(|p| p.mtu).min().unwrap_or(1500) as usize;
    let shared = Arc::new(Shared {
        ports,
        alive: Default::default(),
        peer_mac: Default::default(),
        tx_errors: Default::default(),
        undeliverable: Default::default(),
        bad_offload: AtomicU64::new(0),
        handoffs: AtomicU64::new(0),
        handoff_dropped: AtomicU64::new(0),
        segmented: AtomicU64::new(0),
        gso_received: AtomicU64::new(0),
        coalesced: AtomicU64::new(0),
        coalesce: opts.offload && super::coalesce::kernel_supported(),
        capture_dropped: AtomicU64::new(0),
        events: Mutex::new(Vec::new()),
        stop: stop.clone(),
        start: Instant::now(),
        workers,
        busy_poll: opts.busy_poll,
        cpus: Mutex::new(vec![None; workers]),
        pinning: opts.pinning.clone(),
        offload: opts.offload,
        min_mtu,
    });
    for p in shared.ports.iter().flatten() {
        shared.alive[p.link.index()].store(true, Ordering::Relaxed);
        // Until the kernel side sends a frame, a TAP's peer is the device's
        // own MAC: a forwarded frame to the broadcast MAC would be ignored
        // by the kernel's TCP (pkt_type != PACKET_HOST).
        if let Some(m) = p.first_peer {
            shared.peer_mac[p.link.index()].store(mac_word(&m), Ordering::Relaxed);
        }
    }

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

    // Workers, each with a hand-off channel, a control channel and an
    // eventfd to wake it.
    let mut handoff_tx = Vec::new();
    let mut handoff_rx = Vec::new();
    let mut control_tx = Vec::new();
    let mut control_rx = Vec::new();
    let mut wakes = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = bounded::<control::Control>(4);
        control_tx.push(tx);
        control_rx.push(rx);
        let (tx, rx) = bounded::<Frame>(HANDOFF_QUEUE);
        handoff_tx.push(tx);
        handoff_rx.push(rx);
        wakes.push(Wake::new().map_err(|source| LiveError::Io {
            path: PathBuf::from("eventfd"),
            source,
        })?);
    }
    let wakes = Arc::new(wakes);
    let snapshots: Vec<Arc<Mutex<Counters>>> = (0..workers)
        .map(|_| Arc::new(Mutex::new(Counters::new(&opts.topology))))
        .collect();
    let mut worker_handles = Vec::new();
    // Each EIP's bandwidth limit holds for the whole run: the workers'
    // engines share the first one's buckets (lock-free, see policer.rs).
    let first = Engine::new(opts.topology.clone());
    for ((w, rx), crx) in handoff_rx.into_iter().enumerate().zip(control_rx) {
        let shared = shared.clone();
        let mut engine = Engine::new(opts.topology.clone());
        engine.share_policers(&first);
        for p in Link::ALL {
            let mtu = shared.ports[p.index()].as_ref().map(|p| p.mtu);
            engine.set_mtu(p, Some(mtu.unwrap_or(1500)));
        }
        engine.set_eni_capture(cap_tx.is_some());
        // A TAP's peer is known from the start; an interface's is learnt,
        // and asked for by ARP until then.
        engine.set_resolve(
            shared
                .ports
                .iter()
                .flatten()
                .any(|p| p.first_peer.is_none()),
        );
        let snapshot = snapshots[w].clone();
        let handoff_tx = handoff_tx.clone();
        let wakes = wakes.clone();
        let capture = cap_tx.clone();
        let pin = opts.cpus.as_ref().and_then(|c| c.get(w).copied());
        worker_handles.push(
            std::thread::Builder::new()
                .name(format!("eipsim-worker-{w}"))
                .spawn(move || {
                    if let Some(cpu) = pin {
                        match cpu::pin_current_thread(cpu) {
                            Ok(()) => {
                                if let Ok(mut c) = shared.cpus.lock() {
                                    c[w] = Some(cpu);
                                }
                            }
                            Err(e) => shared.event(format!(
                                "worker {w}: cannot pin to CPU {cpu} ({e}); it runs where the scheduler puts it"
                            )),
                        }
                    }
                    let mut wk = Worker {
                        id: w,
                        shared: &shared,
                        engine,
                        pool: (0..BATCH).map(|_| Frame::new()).collect(),
                        batch: Vec::with_capacity(4 * BATCH),
                        verdicts: Vec::with_capacity(4 * BATCH),
                        handoff_rx: rx,
                        control_rx: crx,
                        trace: None,
                        traced: 0,
                        handoff_tx,
                        wakes: &wakes,
                        capture,
                        seg_scratch: Vec::with_capacity(2048),
                        made: Vec::with_capacity(64),
                        coalesce: Default::default(),
                        scratch: Vec::new(),
                        gso_received: 0,
                        frags: crate::io::steer::FragmentOwners::new(workers, w),
                        frag_out: Vec::with_capacity(crate::engine::frag::MAX_HELD + 1),
                    };
                    wk.run(&snapshot);
                    wk.engine.counters()
                })
                .expect("spawn worker"),
        );
    }
    drop(cap_tx);
    drop(handoff_tx);

    // The control socket, on a thread of its own.
    let state = Arc::new(control::ControlState {
        topo: Mutex::new(opts.topology.clone()),
        workers: control_tx,
        wakes: wakes.clone(),
        snapshots: snapshots.clone(),
        events: Mutex::new(Default::default()),
    });
    let control_handle = match &opts.control {
        Some((path, required)) => match control::bind(path) {
            Ok(listener) => {
                let (state, shared, path) = (state.clone(), shared.clone(), path.clone());
                Some(
                    std::thread::Builder::new()
                        .name("eipsim-control".into())
                        .spawn(move || control::serve(listener, path, state, shared))
                        .expect("spawn control thread"),
                )
            }
            Err(source) if *required => {
                stop.store(true, Ordering::Relaxed);
                for w in wakes.iter() {
                    w.signal();
                }
                for h in worker_handles {
                    let _ = h.join();
                }
                return Err(LiveError::Io {
                    path: path.clone(),
                    source,
                });
            }
            Err(e) => {
                shared.event(format!(
                    "control socket {}: {e}; eipsim ctl is off (give --control PATH)",
                    path.display()
                ));
                None
            }
        },
        None => None,
    };

    ready();

    // Stats, on this thread, until stop.
    let mut last = Counters::new(&opts.topology);
    let mut next = opts.stats_interval.map(|i| Instant::now() + i);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if let Some((path, flag)) = &opts.reload
            && flag.swap(false, Ordering::Relaxed)
        {
            control::reload(path, &state, &shared);
        }
        if let (Some(at), Some(every)) = (next, opts.stats_interval)
            && Instant::now() >= at
        {
            let topo = state
                .topo
                .lock()
                .map(|t| t.clone())
                .unwrap_or_else(|_| opts.topology.clone());
            let now = merged(&topo, &snapshots);
            if now.eips.len() != last.eips.len() {
                last = Counters::new(&topo);
            }
            println!("{}", stats_line(&shared, &now, &last, every));
            last = now;
            next = Some(at + every);
        }
    }
    for w in wakes.iter() {
        w.signal();
    }
    if let Some(h) = control_handle {
        let _ = h.join();
    }
    // The topology as the last operation left it: the report names its
    // EIPs (one taken off keeps its counters, marked unassociated).
    let topo = state
        .topo
        .lock()
        .map(|t| t.clone())
        .unwrap_or_else(|_| opts.topology.clone());
    let mut crashed = false;
    let mut total = Counters::new(&topo);
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
    if let Ok(e) = state.events.lock() {
        total.events = *e;
    }
    let mut rep = report::report(&topo, &total);
    let devices: serde_json::Map<String, serde_json::Value> = shared
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let i = p.link.index();
            (
                p.link.name().to_string(),
                serde_json::json!({
                    "device": p.spec.name(),
                    "kind": p.spec.kind(),
                    "created": p.created,
                    "lost": !shared.alive[i].load(Ordering::Relaxed),
                    "tx_errors": shared.tx_errors[i].load(Ordering::Relaxed),
                    "mtu": p.mtu,
                    "queues": p.queue_count(),
                    "offloads": p.offloads,
                    "steering": p.steering,
                    "kernel_drops": p.kernel_drops(),
                    "rx_ring": p.rx_ring(),
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
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let cpus = shared.cpus.lock().map(|c| c.clone()).unwrap_or_default();
    // A pin asked for that failed (an event said why) shows here too.
    let failed = opts
        .cpus
        .as_ref()
        .is_some_and(|_| cpus.iter().any(Option::is_none));
    let pinning = if failed {
        format!("{} (a pin failed: see the events)", shared.pinning)
    } else {
        shared.pinning.clone()
    };
    rep["live"] = serde_json::json!({
        "workers": workers,
        "cpus": cpus,
        "pinning": pinning,
        "devices": devices,
        "undeliverable": undeliverable,
        "capture_dropped": load(&shared.capture_dropped),
        "bad_offload": load(&shared.bad_offload),
        "handoffs": load(&shared.handoffs),
        "handoff_dropped": load(&shared.handoff_dropped),
        "gso_received": load(&shared.gso_received),
        "udp_coalesced": load(&shared.coalesced),
        "segmented": load(&shared.segmented),
        "events": shared.events.lock().map(|e| e.clone()).unwrap_or_default(),
        "seconds": shared.start.elapsed().as_secs_f64(),
        "crashed": crashed,
    });
    Ok(LiveSummary {
        counters: total,
        report: rep,
    })
}

fn mac_word(m: &[u8]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]) | 1 << 63
}

type CaptureTx = Sender<(usize, u64, Vec<u8>)>;

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
        // A port with no device, where nothing went: no column.
        if shared.ports[p.index()].is_none() && n.rx_packets == 0 && n.tx_packets == 0 {
            continue;
        }
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

fn publish(engine: &Engine, snapshot: &Mutex<Counters>) {
    if let Ok(mut s) = snapshot.lock() {
        *s = engine.counters();
    }
}
