//! `eipsim run`: the engine between live ports (TAP devices or AF_PACKET
//! interfaces), on several cores.
//!
//! Each worker owns an [`Engine`] (its own flow table and counters) and
//! one queue of every port: it reads its queues, processes what it read
//! in a batch and writes the results to the output ports' queues it owns,
//! so the data path takes no lock and has no thread hop. Both directions
//! of a flow must meet one flow table: the kernel steers each frame to its
//! owner's queue with the program of [`steer`]; where it cannot, a worker
//! hands a frame it does not own to its owner. See docs/live.md.

use super::capture::CaptureWriter;
use super::coalesce::UdpCoalescer;
use super::port::{self, Port, PortError, PortSpec, Wake};
use super::report;
use super::steer;
use crate::config::Topology;
use crate::engine::gso::Offload;
use crate::engine::{Counters, Engine, Link, Received, Verdict};
use crate::wire::ethernet::Mac;
use crate::wire::virtio_net::{self, HEADER_LEN as VNET};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        let p = Port::open(*link, spec, opts.mtu[link.index()], opts.offload, workers).map_err(
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

    // Workers, each with a hand-off channel and an eventfd to wake it.
    let mut handoff_tx = Vec::new();
    let mut handoff_rx = Vec::new();
    let mut wakes = Vec::new();
    for _ in 0..workers {
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
    for (w, rx) in handoff_rx.into_iter().enumerate() {
        let shared = shared.clone();
        let mut engine = Engine::new(opts.topology.clone());
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
        worker_handles.push(
            std::thread::Builder::new()
                .name(format!("eipsim-worker-{w}"))
                .spawn(move || {
                    let mut wk = Worker {
                        id: w,
                        shared: &shared,
                        engine,
                        pool: (0..BATCH).map(|_| Frame::new()).collect(),
                        batch: Vec::with_capacity(4 * BATCH),
                        verdicts: Vec::with_capacity(4 * BATCH),
                        handoff_rx: rx,
                        handoff_tx,
                        wakes: &wakes,
                        capture,
                        seg_scratch: Vec::with_capacity(2048),
                        made: Vec::with_capacity(64),
                        coalesce: Default::default(),
                        scratch: Vec::new(),
                        gso_received: 0,
                    };
                    wk.run(&snapshot);
                    wk.engine.counters()
                })
                .expect("spawn worker"),
        );
    }
    drop(cap_tx);
    drop(handoff_tx);

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
    for w in wakes.iter() {
        w.signal();
    }
    let mut crashed = false;
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
    rep["live"] = serde_json::json!({
        "workers": workers,
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

/// One worker: its engine, its queues, its buffers.
struct Worker<'a> {
    id: usize,
    shared: &'a Shared,
    engine: Engine,
    /// Empty buffers.
    pool: Vec<Frame>,
    /// The frames of this round, in order.
    batch: Vec<Frame>,
    verdicts: Vec<Verdict>,
    handoff_rx: Receiver<Frame>,
    handoff_tx: Vec<Sender<Frame>>,
    wakes: &'a [Wake],
    capture: Option<CaptureTx>,
    /// Where a segment is built when a GSO packet is cut in software.
    seg_scratch: Vec<u8>,
    /// Segments cut at intake, before they join the batch.
    made: Vec<Frame>,
    /// UDP datagrams held per output port, to leave as one packet.
    coalesce: [UdpCoalescer; 3],
    /// The virtio-net header of a frame being written.
    scratch: Vec<u8>,
    /// GSO packets read since the last publish (summed into `Shared`
    /// then, not per packet: one atomic on a shared line per packet
    /// would bounce between cores).
    gso_received: u64,
}

impl Worker<'_> {
    fn run(&mut self, snapshot: &Mutex<Counters>) {
        let shared = self.shared;
        let mut published = Instant::now();
        // The queues this worker reads: its own of each port (a shared
        // single queue is read by worker 0 alone).
        let mine: Vec<(Link, i32)> = shared
            .ports
            .iter()
            .flatten()
            .filter(|p| self.id < p.queue_count())
            .map(|p| (p.link, p.queue(self.id)))
            .collect();
        let mut fds: Vec<libc::pollfd> = mine
            .iter()
            .map(|&(_, fd)| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .chain(std::iter::once(libc::pollfd {
                fd: self.wakes[self.id].fd(),
                events: libc::POLLIN,
                revents: 0,
            }))
            .collect();
        let mut wake = vec![false; shared.workers];
        // Sleep in poll only after a round that found nothing (NAPI's
        // idea): under load the queues are read back to back, with no
        // poll call per frame.
        let mut idle = true;
        while !shared.stop.load(Ordering::Relaxed) {
            if !shared.busy_poll && idle {
                if port::wait(&mut fds, 100).is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if fds.last().is_some_and(|p| p.revents & libc::POLLIN != 0) {
                    self.wakes[self.id].clear();
                }
            }
            let now = shared.start.elapsed().as_nanos() as u64;
            self.batch.clear();
            for (k, &(link, fd)) in mine.iter().enumerate() {
                if fds[k].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    // An interface taken down and up again reports an
                    // error on its packet sockets and then works again:
                    // only a device that is gone is lost.
                    let gone = shared.ports[link.index()]
                        .as_ref()
                        .is_none_or(|p| !p.recover(fd));
                    if gone {
                        shared.lost(link, "the device is gone");
                        fds[k].fd = -1;
                    }
                }
                if fds[k].fd >= 0 {
                    self.read_queue(link, fd, now, &mut wake);
                }
            }
            for (w, flag) in wake.iter_mut().enumerate() {
                if std::mem::take(flag) {
                    self.wakes[w].signal();
                }
            }
            // Frames other workers read for this one's flows.
            while self.batch.len() < 4 * BATCH {
                match self.handoff_rx.try_recv() {
                    Ok(f) => self.batch.push(f),
                    Err(_) => break,
                }
            }
            idle = self.batch.is_empty();
            if !idle {
                self.process();
            }
            if published.elapsed() > Duration::from_millis(200) {
                publish(&self.engine, snapshot);
                let n = std::mem::take(&mut self.gso_received);
                shared.gso_received.fetch_add(n, Ordering::Relaxed);
                published = Instant::now();
            }
        }
        // Drain what others handed over, then end the input.
        while let Ok(f) = self.handoff_rx.try_recv() {
            self.batch.clear();
            self.batch.push(f);
            self.process();
        }
        self.engine.flush();
        while let Some(mut r) = self.engine.poll_released() {
            self.emit(&r.verdict, &mut r.frame, Offload::NONE);
        }
        self.flush_all();
        publish(&self.engine, snapshot);
        let n = std::mem::take(&mut self.gso_received);
        shared.gso_received.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads up to a batch from one queue; each frame joins this batch or
    /// goes to the worker that owns its flow.
    fn read_queue(&mut self, link: Link, fd: i32, now: u64, wake: &mut [bool]) {
        let shared = self.shared;
        let Some(this_port) = &shared.ports[link.index()] else {
            return;
        };
        let vnet = this_port.vnet;
        // At most a batch of frames (segments cut at intake counted) and
        // of reads per queue and round, so the pool stays bounded and no
        // queue starves the others.
        let limit = self.batch.len() + BATCH;
        for _ in 0..BATCH {
            if self.batch.len() >= limit {
                return;
            }
            let mut f = self.pool.pop().unwrap_or_else(Frame::new);
            let at = if vnet { 0 } else { VNET };
            let n = match port::read_frame(fd, &mut f.data[at..]) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.pool.push(f);
                    return;
                }
                Err(e) => {
                    self.pool.push(f);
                    if !this_port.recover(fd) {
                        shared.lost(link, &e.to_string());
                    }
                    return;
                }
            };
            if vnet && n < VNET {
                self.pool.push(f);
                shared.bad_offload.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            f.len = if vnet { n - VNET } else { n };
            f.port = link;
            f.now = now;
            f.off = Offload::NONE;
            if f.len >= 12 {
                let mac = mac_word(&f.data[VNET + 6..VNET + 12]);
                if shared.peer_mac[link.index()].load(Ordering::Relaxed) != mac {
                    shared.peer_mac[link.index()].store(mac, Ordering::Relaxed);
                }
            }
            if vnet {
                let h = virtio_net::Header::new_checked(&f.data[..VNET])
                    .map(|h| virtio_net::Repr::parse(&h))
                    .unwrap_or_default();
                let rest = &mut f.data[VNET..];
                match Offload::from_virtio(&h, &mut rest[..f.len]) {
                    Ok(off) => {
                        self.gso_received += u64::from(off.gso_size > 0);
                        f.off = off;
                    }
                    Err(_) => {
                        self.pool.push(f);
                        shared.bad_offload.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            self.intake(f, wake);
        }
    }

    /// Segments a GSO packet in software where single segments are
    /// needed (a capture, a segment larger than some port's MTU,
    /// `--no-offload`), then keeps each frame or hands it to the worker
    /// owning its flow.
    fn intake(&mut self, mut f: Frame, wake: &mut [bool]) {
        let shared = self.shared;
        // Single packets with whole checksums from here on.
        let single = self.capture.is_some() || !shared.offload;
        if f.off.gso_size > 0
            && (single || f.off.segment_ip_len(f.frame(), usize::MAX) > shared.min_mtu)
        {
            // Cut into pool buffers: nothing allocated once warm.
            let (port, now) = (f.port, f.now);
            let (pool, made) = (&mut self.pool, &mut self.made);
            made.clear();
            let cut = f.off.segment_each(f.frame(), &mut self.seg_scratch, |s| {
                let mut g = pool.pop().unwrap_or_else(Frame::new);
                g.data[VNET..VNET + s.len()].copy_from_slice(s);
                g.len = s.len();
                g.port = port;
                g.now = now;
                g.off = Offload::NONE;
                made.push(g);
            });
            if cut.is_ok() {
                shared.segmented.fetch_add(1, Ordering::Relaxed);
                self.pool.push(f);
                let mut made = std::mem::take(&mut self.made);
                for g in made.drain(..) {
                    self.route(g, wake);
                }
                self.made = made;
                return;
            }
        }
        if single && f.off.partial_csum {
            // Captures show checksums as the wire would carry them.
            Offload::complete(f.frame_mut());
            f.off = Offload::NONE;
        }
        self.route(f, wake);
    }

    fn route(&mut self, mut f: Frame, wake: &mut [bool]) {
        let owner = steer::owner(f.port, f.frame(), self.shared.workers);
        if owner == self.id {
            f.tag = self.batch.len() as u64;
            self.batch.push(f);
            return;
        }
        self.shared.handoffs.fetch_add(1, Ordering::Relaxed);
        match self.handoff_tx[owner].try_send(f) {
            Ok(()) => wake[owner] = true,
            Err(TrySendError::Full(f) | TrySendError::Disconnected(f)) => {
                self.shared.handoff_dropped.fetch_add(1, Ordering::Relaxed);
                self.pool.push(f);
            }
        }
    }

    /// Processes the batch and writes what it produced.
    fn process(&mut self) {
        let shared = self.shared;
        for p in Link::ALL {
            let mac = shared.peer_mac[p.index()].load(Ordering::Relaxed);
            if mac != 0 {
                let b = mac.to_be_bytes();
                self.engine
                    .set_peer_mac(p, Mac([b[2], b[3], b[4], b[5], b[6], b[7]]));
            }
        }
        for (i, f) in self.batch.iter_mut().enumerate() {
            f.tag = i as u64;
        }
        let mut batch = std::mem::take(&mut self.batch);
        self.verdicts.clear();
        if let Some(cap) = self.capture.clone() {
            // One by one, to capture each frame's ENI view.
            for f in batch.iter_mut() {
                let (now, port, tag, off) = (f.now, f.port, f.tag, f.off);
                let v = self
                    .engine
                    .process_offloaded(now, port, f.frame_mut(), tag, off);
                if let Some((eni, view)) = self.engine.eni_view() {
                    send_capture(shared, &cap, 3 + usize::from(eni.0), view);
                }
                self.verdicts.push(v);
            }
        } else {
            self.engine.process_batch(&mut batch, &mut self.verdicts);
        }
        // Fragments and generated ICMP errors go right after the frame that
        // caused them (their `cause` is its position in the batch).
        let mut pending = self.engine.poll_transmit();
        let verdicts = std::mem::take(&mut self.verdicts);
        for (i, (f, v)) in batch.iter_mut().zip(&verdicts).enumerate() {
            let off = f.off;
            self.emit(v, f.frame_mut(), off);
            while let Some(t) = pending.take_if(|t| t.cause == i as u64) {
                let mut frame = t.frame;
                self.send(t.port, &mut frame, Offload::NONE);
                pending = self.engine.poll_transmit();
            }
        }
        self.verdicts = verdicts;
        while let Some(t) = pending.take().or_else(|| self.engine.poll_transmit()) {
            let mut frame = t.frame;
            self.send(t.port, &mut frame, Offload::NONE);
        }
        while let Some(mut r) = self.engine.poll_released() {
            self.emit(&r.verdict, &mut r.frame, Offload::NONE);
            if let (Some(cap), Some((eni, view))) = (&self.capture, &r.eni_view) {
                send_capture(shared, cap, 3 + usize::from(eni.0), view);
            }
        }
        for f in batch.drain(..) {
            if self.pool.len() < POOL_MAX {
                self.pool.push(f);
            }
        }
        self.batch = batch;
        self.flush_all();
    }

    /// Sends a processed frame where its verdict says (if anywhere).
    fn emit(&mut self, v: &Verdict, frame: &mut [u8], off: Offload) {
        if let Some(out) = v.sends_frame() {
            self.send(out, frame, off);
        }
    }

    /// Writes a frame on this worker's queue of port `out`: with its
    /// virtio-net header where the port has one; else cut into segments
    /// and with whole checksums, as the wire carries them.
    fn send(&mut self, out: Link, frame: &mut [u8], off: Offload) {
        let shared = self.shared;
        let i = out.index();
        let port = match &shared.ports[i] {
            Some(p) if shared.alive[i].load(Ordering::Relaxed) => p,
            _ => {
                shared.undeliverable[i].fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let fd = port.queue(self.id);
        let fail = |r: std::io::Result<()>| {
            if r.is_err() {
                shared.tx_errors[i].fetch_add(1, Ordering::Relaxed);
            }
        };
        let joinable = port.vnet && shared.coalesce && off.partial_csum && off.gso_size == 0;
        if !joinable && !self.coalesce[i].is_empty() {
            // Datagrams held for this port leave first: order is kept.
            self.flush(i);
        }
        if joinable {
            // Join the datagram held for this port, or write that and
            // start again with this one.
            if !self.coalesce[i].add(frame) {
                self.flush(i);
                if !self.coalesce[i].add(frame) {
                    self.scratch.resize(VNET, 0);
                    let _ = off.to_virtio(frame).emit(&mut self.scratch);
                    fail(port::write_frame(fd, &self.scratch, frame));
                }
            }
        } else if port.vnet {
            self.scratch.resize(VNET, 0);
            let _ = off.to_virtio(frame).emit(&mut self.scratch);
            fail(port::write_frame(fd, &self.scratch, frame));
        } else if off.gso_size > 0 {
            let write = |s: &[u8]| fail(port::write_frame(fd, &[], s));
            if off
                .segment_each(frame, &mut self.seg_scratch, write)
                .is_ok()
            {
                shared.segmented.fetch_add(1, Ordering::Relaxed);
            } else {
                fail(Err(std::io::ErrorKind::InvalidData.into()));
            }
        } else {
            if off.partial_csum {
                Offload::complete(frame);
            }
            fail(port::write_frame(fd, &[], frame));
        }
        if let Some(cap) = &self.capture {
            send_capture(shared, cap, i, frame);
        }
    }
}

impl Worker<'_> {
    /// Writes the datagrams held for port `i` (one UDP GSO packet).
    fn flush(&mut self, i: usize) {
        let shared = self.shared;
        let Some(port) = &shared.ports[i] else {
            return;
        };
        let fd = port.queue(self.id);
        if let Some((h, frame)) = self.coalesce[i].take() {
            let mut head = [0u8; VNET];
            let _ = h.emit(&mut head);
            if h.is_gso() {
                shared.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            if port::write_frame(fd, &head, frame).is_err() {
                shared.tx_errors[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes everything held for every port.
    fn flush_all(&mut self) {
        for i in 0..3 {
            self.flush(i);
        }
    }
}

fn send_capture(shared: &Shared, cap: &CaptureTx, file: usize, frame: &[u8]) {
    let ts = shared.start.elapsed().as_nanos() as u64;
    if let Err(TrySendError::Full(_)) = cap.try_send((file, ts, frame.to_vec())) {
        shared.capture_dropped.fetch_add(1, Ordering::Relaxed);
    }
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

fn publish(engine: &Engine, snapshot: &Mutex<Counters>) {
    if let Ok(mut s) = snapshot.lock() {
        *s = engine.counters();
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
