//! A live port: a TAP device eipsim opens (or creates), or an existing
//! interface reached through AF_PACKET sockets. Either way a port has one
//! nonblocking descriptor per queue, and frames are written one system
//! call each, with the virtio-net header in front when offloads are on;
//! a TAP queue is read one system call per frame, an AF_PACKET socket
//! from its receive ring (`packet.rs`). A GSO packet is one read of up to 64 KiB, so the calls per
//! segment fall with the segment count.

use super::packet::{PacketError, PacketPort};
use super::tap::{Tap, TapConfig, TapError};
use crate::engine::Link;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// What a port is attached to, as `--tap` and `--port` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A TAP device of this name (created if missing).
    Tap(String),
    /// An existing interface, through AF_PACKET.
    AfPacket(String),
}

impl PortSpec {
    /// `tap:NAME`, `af_packet:IFNAME`, or a bare `NAME` (a TAP device).
    pub fn parse(s: &str) -> Result<PortSpec, String> {
        let (kind, name) = s.split_once(':').unwrap_or(("tap", s));
        if name.is_empty() {
            return Err(format!("{s:?}: the interface name is missing"));
        }
        match kind {
            "tap" => Ok(PortSpec::Tap(name.into())),
            "af_packet" => Ok(PortSpec::AfPacket(name.into())),
            other => Err(format!(
                "unknown port kind {other:?} in {s:?}: use tap:NAME or af_packet:IFNAME"
            )),
        }
    }

    /// The device or interface name.
    pub fn name(&self) -> &str {
        match self {
            PortSpec::Tap(n) | PortSpec::AfPacket(n) => n,
        }
    }

    /// "tap" or "af_packet", as the report says.
    pub fn kind(&self) -> &'static str {
        match self {
            PortSpec::Tap(_) => "tap",
            PortSpec::AfPacket(_) => "af_packet",
        }
    }
}

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A TAP device.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// An AF_PACKET port.
    #[error(transparent)]
    Packet(#[from] PacketError),
}

enum Dev {
    Tap(Tap),
    Packet(PacketPort),
}

/// An open port.
pub struct Port {
    /// Which of the engine's links it is.
    pub link: Link,
    /// What it is attached to.
    pub spec: PortSpec,
    /// Frames carry the virtio-net header.
    pub vnet: bool,
    /// The offloads in effect, in words ("csum, tso4, uso", "none", ...).
    pub offloads: &'static str,
    /// How frames find their worker's queue: "ebpf" (the steering
    /// program), "kernel" (the kernel's own flow steering, then hand-offs),
    /// or "single queue".
    pub steering: &'static str,
    /// True if eipsim created the device (it goes when eipsim stops).
    pub created: bool,
    /// The MTU the engine enforces on egress, IP bytes.
    pub mtu: u32,
    /// The peer's MAC to send to before it has sent anything: a TAP's own
    /// MAC (the kernel side of the link), none for an AF_PACKET port.
    pub first_peer: Option<[u8; 6]>,
    dev: Dev,
}

impl Port {
    /// Opens `spec` for `link` with `queues` queues. `mtu`: for a TAP the
    /// MTU set on the device (default 1500); an AF_PACKET port leaves the
    /// interface as it is and enforces `mtu`, or the interface's own MTU.
    /// `rx_ring`: an AF_PACKET port reads from receive rings.
    pub fn open(
        link: Link,
        spec: &PortSpec,
        mtu: Option<u32>,
        offload: bool,
        queues: usize,
        rx_ring: bool,
    ) -> Result<Port, PortError> {
        let queues = queues.clamp(1, 256);
        // Without the program (an old kernel, no CAP_BPF) the kernel's own
        // choice stands and a worker hands strays to their owner.
        let prog = (queues > 1)
            .then(|| super::steer::Program::load(link, queues).ok())
            .flatten();
        let steering = |multi: bool, ebpf: bool| match (multi, ebpf) {
            (false, _) => "single queue",
            (true, true) => "ebpf",
            (true, false) => "kernel",
        };
        Ok(match spec {
            PortSpec::Tap(name) => {
                let mtu = mtu.unwrap_or(1500);
                let cfg = TapConfig {
                    mtu,
                    offload,
                    queues,
                    steer: prog.as_ref(),
                };
                let tap = Tap::open(name, cfg)?;
                Port {
                    steering: steering(tap.queues().len() > 1, tap.steering),
                    link,
                    spec: spec.clone(),
                    vnet: tap.vnet,
                    offloads: tap.offloads,
                    created: tap.created,
                    mtu,
                    first_peer: Some(tap.mac),
                    dev: Dev::Tap(tap),
                }
            }
            PortSpec::AfPacket(name) => {
                let p = PacketPort::open(name, queues, prog.as_ref(), rx_ring)?;
                Port {
                    steering: steering(p.queues().len() > 1, p.steering),
                    link,
                    spec: spec.clone(),
                    vnet: p.vnet,
                    // A veth or NIC keeps its own offload settings; the
                    // header says what each frame needs, and without
                    // offloads eipsim completes and cuts frames itself.
                    offloads: if offload { "virtio-net header" } else { "none" },
                    created: false,
                    mtu: mtu.unwrap_or(p.mtu),
                    first_peer: None,
                    dev: Dev::Packet(p),
                }
            }
        })
    }

    /// After an error on queue `fd`: true if the port can go on (an
    /// AF_PACKET interface that still exists, taken down for a while: its
    /// socket's pending error is cleared); false if the device is gone.
    pub fn recover(&self, fd: RawFd) -> bool {
        match &self.dev {
            Dev::Tap(_) => false,
            Dev::Packet(p) => p.recover(fd),
        }
    }

    /// Frames the kernel dropped before eipsim could read them (an
    /// AF_PACKET socket's full receive buffer, PACKET_STATISTICS); 0 for a
    /// TAP device, whose drops `ip -s link` shows as its tx_dropped.
    pub fn kernel_drops(&self) -> u64 {
        match &self.dev {
            Dev::Tap(_) => 0,
            Dev::Packet(p) => p.drops(),
        }
    }

    /// Reads the next frame of queue `i` (the last if there are fewer)
    /// into `buf`: [`read_frame`] on a TAP queue, an AF_PACKET socket's
    /// receive ring where it has one. `Ok(None)` when nothing is waiting.
    pub fn read(&self, i: usize, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match &self.dev {
            Dev::Tap(_) => read_frame(self.queue(i), buf),
            Dev::Packet(p) => p.read(i, buf),
        }
    }

    /// True if frames are read from a receive ring (an AF_PACKET port
    /// whose sockets all have one), not with a system call each.
    pub fn rx_ring(&self) -> bool {
        match &self.dev {
            Dev::Tap(_) => false,
            Dev::Packet(p) => p.rx_ring(),
        }
    }

    /// How many queues it has (1 for a device that had to be shared).
    pub fn queue_count(&self) -> usize {
        match &self.dev {
            Dev::Tap(t) => t.queues().len(),
            Dev::Packet(p) => p.queues().len(),
        }
    }

    /// The descriptor of queue `i` (the last if there are fewer).
    pub fn queue(&self, i: usize) -> RawFd {
        let q = match &self.dev {
            Dev::Tap(t) => t.queues(),
            Dev::Packet(p) => p.queues(),
        };
        q[i.min(q.len() - 1)].as_raw_fd()
    }
}

/// Reads one frame from `fd` into `buf`; `Ok(None)` when nothing is
/// waiting (a signal during the call is retried: it says nothing about
/// the queue). A frame larger than `buf` would be cut short by the kernel
/// without a word, so `buf` must hold the largest one (header, 64 KiB IP
/// packet, Ethernet header).
pub fn read_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Writes one frame to `fd`, after `head` (the virtio-net header, or
/// nothing): one system call.
pub fn write_frame(fd: RawFd, head: &[u8], frame: &[u8]) -> io::Result<()> {
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        },
    ];
    // SAFETY: both iovecs describe valid buffers; writev only reads them.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits until one of `fds` can be read or `timeout_ms` passes; returns
/// the `revents` of each, in order (POLLERR/POLLHUP: the device is gone).
pub fn wait(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<()> {
    // SAFETY: fds is a valid array of pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        for p in fds.iter_mut() {
            p.revents = 0;
        }
    }
    Ok(())
}

/// An eventfd: a worker sleeping in `poll` wakes when another hands it a
/// frame.
pub struct Wake(std::os::fd::OwnedFd);

impl Wake {
    /// A new eventfd (nonblocking).
    pub fn new() -> io::Result<Wake> {
        // SAFETY: eventfd(2) with constant arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Wake(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }))
    }

    /// Its descriptor, to poll.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Wakes the owner.
    pub fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write to an eventfd; a full counter (EAGAIN)
        // means it is already signalled.
        unsafe { libc::write(self.fd(), one.as_ptr().cast(), 8) };
    }

    /// Clears a signal.
    pub fn clear(&self) {
        let mut b = [0u8; 8];
        // SAFETY: an 8-byte read from an eventfd.
        unsafe { libc::read(self.fd(), b.as_mut_ptr().cast(), 8) };
    }
}
