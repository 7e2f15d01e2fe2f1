//! A live worker: reads its queues, runs its engine over each batch,
//! writes what it produced (see the module docs of `live`).

use super::{BATCH, CaptureTx, Frame, POOL_MAX, Shared, mac_word, publish};
use crate::engine::gso::Offload;
use crate::engine::{Counters, Engine, Link, Received, Verdict};
use crate::io::coalesce::UdpCoalescer;
use crate::io::port::{self, Wake};
use crate::io::steer;
use crate::wire::ethernet::Mac;
use crate::wire::virtio_net::{self, HEADER_LEN as VNET};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One worker: its engine, its queues, its buffers.
pub(super) struct Worker<'a> {
    pub(super) id: usize,
    pub(super) shared: &'a Shared,
    pub(super) engine: Engine,
    /// Empty buffers.
    pub(super) pool: Vec<Frame>,
    /// The frames of this round, in order.
    pub(super) batch: Vec<Frame>,
    pub(super) verdicts: Vec<Verdict>,
    pub(super) handoff_rx: Receiver<Frame>,
    /// Operations and questions from the control thread.
    pub(super) control_rx: Receiver<super::control::Control>,
    /// `ctl trace N`: how many packets are still to be traced, and where
    /// their traces go.
    pub(super) trace: Option<(usize, Sender<String>)>,
    /// Packets this worker traced (their numbers in `ctl trace`).
    pub(super) traced: u64,
    pub(super) handoff_tx: Vec<Sender<Frame>>,
    pub(super) wakes: &'a [Wake],
    pub(super) capture: Option<CaptureTx>,
    /// Where a segment is built when a GSO packet is cut in software.
    pub(super) seg_scratch: Vec<u8>,
    /// Segments cut at intake, before they join the batch.
    pub(super) made: Vec<Frame>,
    /// UDP datagrams held per output port, to leave as one packet.
    pub(super) coalesce: [UdpCoalescer; 3],
    /// The virtio-net header of a frame being written.
    pub(super) scratch: Vec<u8>,
    /// GSO packets read since the last publish (summed into `Shared`
    /// then, not per packet: one atomic on a shared line per packet
    /// would bounce between cores).
    pub(super) gso_received: u64,
    /// The fragmented TCP datagrams this worker reads every piece of
    /// (its remote addresses'), and where each piece goes.
    pub(super) frags: steer::FragmentOwners<Frame>,
    /// Where `frags` puts the pieces to send (reused, sized once).
    pub(super) frag_out: Vec<(usize, Frame)>,
}

impl Worker<'_> {
    /// Does what the control thread asks.
    fn control(&mut self, c: super::control::Control) {
        use super::control::Control;
        match c {
            Control::Apply {
                topo,
                policers,
                reply,
            } => {
                let now = self.shared.start.elapsed().as_nanos() as u64;
                let ended = self.engine.apply((*topo).clone(), now);
                if let Some(p) = policers {
                    self.engine.set_policers(p);
                }
                let _ = reply.send(ended);
            }
            Control::Trace { count, reply } => {
                self.engine.set_tracing(count > 0);
                self.trace = (count > 0).then_some((count, reply));
            }
            Control::Flows { reply } => {
                let table = self.engine.flow_table();
                let topo = self.engine.topology();
                let lines = table
                    .iter()
                    .map(|(id, _)| crate::io::report::flow_line(topo, table, id))
                    .collect();
                let _ = reply.send(lines);
            }
        }
    }

    /// Sends the trace of the packet just processed; stops tracing after
    /// the last one asked for, or when nobody reads any more.
    fn traced(&mut self, port: Link, verdict: Verdict) {
        let events = self.engine.take_trace();
        let topo = self.engine.topology();
        self.traced += 1;
        let t = crate::io::trace::PacketTrace {
            number: self.traced as usize,
            in_port: port,
            in_file: format!("worker {}", self.id),
            index: self.traced - 1,
            steps: events
                .into_iter()
                .map(|e| crate::io::trace::Step {
                    name: e.step(),
                    text: crate::explain::trace::text(topo, &e),
                    event: e,
                })
                .collect(),
            verdict,
        };
        let done = match &mut self.trace {
            Some((left, tx)) => {
                // Never wait for a slow reader: a full channel loses the
                // trace, not the data path's time.
                *left -= 1;
                let gone = matches!(
                    tx.try_send(t.text()),
                    Err(crossbeam_channel::TrySendError::Disconnected(_))
                );
                gone || *left == 0
            }
            None => true,
        };
        if done {
            self.trace = None;
            self.engine.set_tracing(false);
        }
    }

    pub(super) fn run(&mut self, snapshot: &Mutex<Counters>) {
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
            // Between two batches: one look at the control channel (a
            // lock-free try_recv), so an operation lands at one point of
            // this worker's packet stream.
            while let Ok(c) = self.control_rx.try_recv() {
                self.control(c);
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
            if self.frags.has_waiting() {
                let out = &mut self.frag_out;
                self.frags.expire(now, &mut |to, g| out.push((to, g)));
                self.send_pieces(&mut wake);
            }
            for (w, flag) in wake.iter_mut().enumerate() {
                if std::mem::take(flag) {
                    self.wakes[w].signal();
                }
            }
            // Frames other workers read for this one's flows.
            while self.batch.len() < 4 * BATCH {
                match self.handoff_rx.try_recv() {
                    Ok(f) => self.route(f, &mut wake),
                    Err(_) => break,
                }
            }
            for (w, flag) in wake.iter_mut().enumerate() {
                if std::mem::take(flag) {
                    self.wakes[w].signal();
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
        // Drain what others handed over and the fragments still waiting
        // for their first (the engine counts them as orphans), then end
        // the input.
        while let Ok(f) = self.handoff_rx.try_recv() {
            self.batch.clear();
            self.batch.push(f);
            self.process();
        }
        let waiting: Vec<Frame> = self.frags.take_waiting().collect();
        for f in waiting {
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
            let n = match this_port.read(self.id, &mut f.data[at..]) {
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
            f.steered = false;
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
                g.steered = false;
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

    /// Keeps a frame this worker owns, or hands it to its owner
    /// ([`steer::owner`]). Every piece of a fragmented TCP datagram comes
    /// to its remote address's worker, which learns the datagram's flow
    /// (and so its worker) from the first fragment and sends each piece
    /// on: VPP's handoff after shallow reassembly
    /// ([`steer::FragmentOwners`] keeps the table and the pieces that
    /// came before their first).
    fn route(&mut self, mut f: Frame, wake: &mut [bool]) {
        let workers = self.shared.workers;
        if !f.steered {
            let owner = steer::owner(f.port, f.frame(), workers);
            if owner != self.id {
                self.hand_off(f, owner, wake);
                return;
            }
            if workers > 1
                && let Some(frag) = steer::tcp_fragment(f.port, f.frame())
            {
                f.steered = true;
                let now = f.now;
                let out = &mut self.frag_out;
                self.frags
                    .route(frag, now, f, &mut |to, g| out.push((to, g)));
                self.send_pieces(wake);
                return;
            }
        }
        f.tag = self.batch.len() as u64;
        self.batch.push(f);
    }

    /// Sends the pieces `frags` put out: into this worker's batch, or to
    /// the worker their flow has.
    fn send_pieces(&mut self, wake: &mut [bool]) {
        let mut out = std::mem::take(&mut self.frag_out);
        for (to, mut g) in out.drain(..) {
            g.steered = true;
            if to == self.id {
                g.tag = self.batch.len() as u64;
                self.batch.push(g);
            } else {
                self.hand_off(g, to, wake);
            }
        }
        self.frag_out = out;
    }

    /// Gives a frame to worker `to` (counted; a full channel drops it,
    /// counted as `handoff_dropped`).
    fn hand_off(&mut self, f: Frame, to: usize, wake: &mut [bool]) {
        self.shared.handoffs.fetch_add(1, Ordering::Relaxed);
        match self.handoff_tx[to].try_send(f) {
            Ok(()) => wake[to] = true,
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
        if self.capture.is_some() || self.trace.is_some() {
            // One by one, to capture each frame's ENI view, or to trace it.
            let cap = self.capture.clone();
            for f in batch.iter_mut() {
                let (now, port, tag, off) = (f.now, f.port, f.tag, f.off);
                let v = self
                    .engine
                    .process_offloaded(now, port, f.frame_mut(), tag, off);
                if let (Some(cap), Some((eni, view))) = (&cap, self.engine.eni_view()) {
                    send_capture(shared, cap, 3 + usize::from(eni.0), view);
                }
                if self.trace.is_some() {
                    self.traced(port, v);
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
