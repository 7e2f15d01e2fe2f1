//! AF_PACKET ports: `--port PORT=af_packet:IFNAME` attaches a port to an
//! interface that already exists (one end of a veth pair a container
//! uses, say) instead of creating a TAP device.
//!
//! One raw socket per worker, in a PACKET_FANOUT group (the steering
//! program of `steer.rs` picks each frame's socket, or the kernel's flow
//! hash without it), each with the virtio-net header (PACKET_VNET_HDR),
//! always: a veth or NIC keeps its own offloads, so a frame may arrive as
//! a GSO packet or with a partial checksum whatever eipsim wants, and only
//! the header says so. With `--no-offload` live mode completes and cuts
//! such frames as they arrive and writes single packets. Frames the host itself sends out of the
//! interface are not read (PACKET_IGNORE_OUTGOING), nor are eipsim's own
//! (the kernel never loops a packet back to the fanout group that sent
//! it). The interface is put in promiscuous mode for as long as the
//! sockets are open (frames are addressed to eipsim's MAC, not the
//! interface's); its MTU, address and state are left as they are.
//!
//! By default frames are read from a TPACKET_V2 receive ring
//! (PACKET_RX_RING) the kernel fills and eipsim maps: no system call per
//! frame (more small datagrams for less CPU, BENCHMARKS.md). Its slots
//! are 2 KiB, room for a 1,500-byte frame; a larger one (a GSO packet, a
//! jumbo frame) is flagged in its slot (TP_STATUS_COPY,
//! PACKET_COPY_THRESH) and read whole from the socket's own queue with
//! one `read`, in its place in the order. With `--no-rx-ring`, or where
//! the ring cannot be set up (no memory, an old kernel), each frame is
//! read with `read`.
//!
//! Why not `pnet::datalink`: it cannot set PACKET_VNET_HDR or
//! PACKET_FANOUT. Without the header a TCP segment from a veth arrives
//! with only its pseudo-header checksum and a GSO packet without its
//! segment size: forwarded as read, the far host drops them (tried: no
//! TCP connection gets through); and one socket would serve every worker
//! (BENCHMARKS.md).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Why an AF_PACKET port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// No interface of that name in this network namespace.
    #[error("no interface named {name} here (ip link show {name})")]
    NoSuchInterface {
        /// The interface name.
        name: String,
    },
    /// EPERM/EACCES: raw sockets need CAP_NET_RAW.
    #[error(
        "permission denied opening a packet socket on {name}: eipsim run needs root or CAP_NET_RAW"
    )]
    NotPermitted {
        /// The interface name.
        name: String,
    },
    /// Any other failing system call.
    #[error("{name}: {what}: {source}")]
    Os {
        /// The interface name.
        name: String,
        /// What eipsim was doing.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

// linux/if_packet.h
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_EBPF: u32 = 7;
const PACKET_FANOUT_DATA: libc::c_int = 22;
/// A fanout group's own switch for PACKET_IGNORE_OUTGOING (the group's
/// hook replaces each socket's, with its setting).
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_COPY_THRESH: libc::c_int = 7;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
/// tp_status bits of a ring slot (linux/if_packet.h).
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_COPY: u32 = 2;
/// A ring slot: the 32-byte tpacket2_hdr, the sockaddr_ll, the
/// virtio-net header, then the frame from `tp_mac` on; 2 KiB holds a
/// 1,514-byte frame (it starts at byte 76).
const SLOT: usize = 2048;
/// Slots in all of a port's rings: 8 MiB, about as many small frames as
/// two 8 MiB socket buffers held before (a 64-byte frame's buffer costs
/// about 768 bytes there), split over its queues, each ring between
/// [`MIN_SLOTS`] and [`MAX_SLOTS`] (so 64 queues map 64 MiB, not 256).
const PORT_SLOTS: usize = 4096;
/// The fewest slots in one ring (1 MiB).
const MIN_SLOTS: usize = 512;
/// The most slots in one ring (4 MiB).
const MAX_SLOTS: usize = 2048;
/// Ring blocks of 128 KiB (order-5 pages; the kernel falls back to
/// vmalloc).
const BLOCK: usize = 128 << 10;
const VNET: usize = crate::wire::virtio_net::HEADER_LEN;

/// Sockets on one interface, one per queue (worker).
#[derive(Debug)]
pub struct PacketPort {
    /// Each socket's receive ring, where one could be set up (unmapped
    /// before the sockets close: fields drop in this order).
    rings: Vec<Option<RxRing>>,
    socks: Vec<OwnedFd>,
    name: String,
    /// Frames carry the virtio-net header (PACKET_VNET_HDR).
    pub vnet: bool,
    /// The interface's MTU, IP bytes.
    pub mtu: u32,
    /// The fanout group runs the steering program (else the kernel's
    /// flow hash spreads frames).
    pub steering: bool,
}

impl PacketPort {
    /// Opens `queues` sockets on interface `name`, with the virtio-net
    /// header; with `ring`, each reads from a receive ring where the
    /// kernel allows one.
    pub fn open(
        name: &str,
        queues: usize,
        steer: Option<&crate::io::steer::Program>,
        ring: bool,
    ) -> Result<PacketPort, PacketError> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| PacketError::NoSuchInterface { name: name.into() })?;
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 || name.len() >= libc::IFNAMSIZ {
            return Err(PacketError::NoSuchInterface { name: name.into() });
        }
        let os = |what: &'static str| {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    PacketError::NotPermitted { name: name.into() }
                }
                _ => PacketError::Os {
                    name: name.into(),
                    what,
                    source: e,
                },
            }
        };
        // A fanout group id unique to this process and interface.
        let group = (std::process::id() as u32 ^ index.wrapping_mul(0x9e37)) & 0xffff;
        let mut socks = Vec::new();
        let mut rings = Vec::new();
        for _ in 0..queues.max(1) {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // Protocol 0: no frame is queued before the bind below names
            // the protocol and the interface (with ETH_P_ALL here, frames
            // of every interface would arrive until then).
            // SAFETY: socket(2) with constant arguments.
            let s = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            };
            if s < 0 {
                return Err(os("open a packet socket"));
            }
            // SAFETY: a fresh descriptor we own.
            let s = unsafe { OwnedFd::from_raw_fd(s) };
            let one: libc::c_int = 1;
            if setsockopt(&s, PACKET_VNET_HDR, &one) < 0 {
                return Err(os("ask for the virtio-net header (PACKET_VNET_HDR)"));
            }
            // The ring wants version 2 before it is made (and the header
            // before both); a socket without one reads frame by frame.
            let two: libc::c_int = TPACKET_V2;
            let ring = if ring && setsockopt(&s, PACKET_VERSION, &two) == 0 {
                RxRing::new(&s, ring_slots(queues)).map_err(os)?
            } else {
                None
            };
            rings.push(ring);
            // Older kernels (before 4.20) lack it; eipsim's own frames are
            // skipped by the kernel anyway, so only the host's would show.
            let _ = setsockopt(&s, PACKET_IGNORE_OUTGOING, &one);
            // Room for bursts (the default holds about 200 KiB); frames
            // that find it full are counted (`drops`). FORCE: as root,
            // past net.core.rmem_max.
            let rcvbuf: libc::c_int = 8 << 20;
            // SAFETY: setsockopt with an int.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&rcvbuf as *const libc::c_int).cast(),
                    4,
                )
            };
            // SAFETY: sockaddr_ll is plain data; zero is a valid start.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: bind(2) with a sockaddr_ll of its own size.
            let r = unsafe {
                libc::bind(
                    s.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r < 0 {
                return Err(os("bind the packet socket to the interface"));
            }
            // SAFETY: packet_mreq is plain data.
            let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mr.mr_ifindex = index as i32;
            mr.mr_type = PACKET_MR_PROMISC;
            if setsockopt(&s, PACKET_ADD_MEMBERSHIP, &mr) < 0 {
                return Err(os("enter promiscuous mode (PACKET_MR_PROMISC)"));
            }
            if queues > 1 {
                let mode = if steer.is_some() {
                    PACKET_FANOUT_EBPF
                } else {
                    PACKET_FANOUT_HASH
                };
                let arg: u32 = ((mode | PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16) | group;
                if setsockopt(&s, PACKET_FANOUT, &arg) < 0 {
                    return Err(os("join the fanout group (PACKET_FANOUT)"));
                }
                if let (Some(p), true) = (steer, socks.is_empty()) {
                    let fd: libc::c_int = p.fd();
                    if setsockopt(&s, PACKET_FANOUT_DATA, &fd) < 0 {
                        return Err(os("give the fanout group its program (PACKET_FANOUT_DATA)"));
                    }
                }
            }
            socks.push(s);
        }
        Ok(PacketPort {
            mtu: interface_mtu(&socks[0], name).unwrap_or(1500),
            socks,
            rings,
            name: name.to_string(),
            vnet: true,
            steering: queues > 1 && steer.is_some(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sockets' descriptors (nonblocking), one per worker.
    pub fn queues(&self) -> &[OwnedFd] {
        &self.socks
    }

    /// True if every socket reads from a receive ring (the report's
    /// `devices.PORT.rx_ring`).
    pub fn rx_ring(&self) -> bool {
        self.rings.iter().all(Option::is_some)
    }

    /// Reads the next frame of queue `i` (the last if there are fewer)
    /// into `buf`, virtio-net header first: from its ring, or with one
    /// `read`. `Ok(None)` when nothing is waiting. `buf` must hold the
    /// largest frame, as for [`super::port::read_frame`].
    pub fn read(&self, i: usize, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let i = i.min(self.socks.len() - 1);
        let fd = self.socks[i].as_raw_fd();
        match &self.rings[i] {
            Some(r) => r.next(fd, buf),
            None => super::port::read_frame(fd, buf),
        }
    }

    /// After an error on socket `fd`: clears it (SO_ERROR) and says
    /// whether the interface still exists (down for a while, it comes
    /// back working: the socket stays bound to its index).
    pub fn recover(&self, fd: std::os::fd::RawFd) -> bool {
        let mut err: libc::c_int = 0;
        let mut len = 4 as libc::socklen_t;
        // SAFETY: getsockopt(SO_ERROR) writes an int.
        unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        let Ok(name) = std::ffi::CString::new(self.name.as_str()) else {
            return false;
        };
        // SAFETY: a NUL-terminated name.
        unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
    }

    /// Frames the kernel dropped because a socket's receive buffer was
    /// full, since the last call (PACKET_STATISTICS resets on read), summed
    /// over the sockets.
    pub fn drops(&self) -> u64 {
        let mut total = 0u64;
        for s in &self.socks {
            // struct tpacket_stats { unsigned int tp_packets, tp_drops; }
            let mut st = [0u32; 2];
            let mut len = 8 as libc::socklen_t;
            // SAFETY: getsockopt(PACKET_STATISTICS) writes 8 bytes.
            let r = unsafe {
                libc::getsockopt(
                    s.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_STATISTICS,
                    st.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if r == 0 {
                total += u64::from(st[1]);
            }
        }
        let cut = self.rings.iter().flatten();
        total + cut.map(|r| r.cut.swap(0, Ordering::Relaxed)).sum::<u64>()
    }
}

/// A TPACKET_V2 receive ring (Documentation/networking/packet_mmap.rst):
/// slots of [`SLOT`] bytes the kernel hands over one by one
/// (TP_STATUS_USER) and eipsim gives back (TP_STATUS_KERNEL) in order.
#[derive(Debug)]
struct RxRing {
    base: std::ptr::NonNull<u8>,
    /// Slots in the ring.
    slots: usize,
    /// The next slot to look at.
    head: AtomicUsize,
    /// Held while a thread reads the ring. One worker reads each queue,
    /// so it is never contended; it makes two readers impossible rather
    /// than merely absent (a second one finds nothing).
    reading: AtomicBool,
    /// Frames that arrived cut short and whose whole copy the kernel could
    /// not queue (the socket buffer was full), or whose copy did not
    /// match: dropped, and counted with the kernel's drops.
    cut: AtomicU64,
}

// SAFETY: the mapping is shared with the kernel only; a thread reads the
// ring only while it holds `reading`, and every access to a slot goes
// through its status word with acquire/release ordering.
unsafe impl Send for RxRing {}
// SAFETY: as above.
unsafe impl Sync for RxRing {}

/// Slots in each of `queues` rings: a whole number of blocks.
fn ring_slots(queues: usize) -> usize {
    let per_block = BLOCK / SLOT;
    let n = (PORT_SLOTS / queues.max(1)).clamp(MIN_SLOTS, MAX_SLOTS);
    n / per_block * per_block
}

/// True if this kernel puts the virtio-net header into ring slots (Linux
/// 4.11, "packet: vnet_hdr support for tpacket_rcv"); before, slots have
/// none and a ring would lose every frame's offload state.
fn ring_has_vnet_header() -> bool {
    // SAFETY: utsname is plain data; uname(2) fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid utsname to fill.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let release: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    (major, minor) >= (4, 11)
}

impl RxRing {
    /// Sets up and maps a ring of `slots` slots (a whole number of
    /// blocks) for socket `s` (TPACKET_V2 already chosen), and asks for
    /// frames too large for a slot to be queued whole as well
    /// (PACKET_COPY_THRESH). `Ok(None)` if the kernel refuses (the
    /// socket is then read frame by frame); an error if a half-made ring
    /// could not be taken down again (it would hold frames nobody reads).
    fn new(s: &OwnedFd, slots: usize) -> Result<Option<RxRing>, &'static str> {
        #[repr(C)]
        struct TpacketReq {
            block_size: u32,
            block_nr: u32,
            frame_size: u32,
            frame_nr: u32,
        }
        if !ring_has_vnet_header() {
            return Ok(None);
        }
        let req = TpacketReq {
            block_size: BLOCK as u32,
            block_nr: (slots * SLOT / BLOCK) as u32,
            frame_size: SLOT as u32,
            frame_nr: slots as u32,
        };
        if setsockopt(s, PACKET_RX_RING, &req) < 0 {
            return Ok(None);
        }
        let len = slots * SLOT;
        // SAFETY: maps the ring the kernel just made for this socket; the
        // mapping lives as long as the RxRing (munmap in Drop).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                s.as_raw_fd(),
                0,
            )
        };
        let one: libc::c_int = 1;
        let mapped = (base != libc::MAP_FAILED)
            .then(|| std::ptr::NonNull::new(base.cast::<u8>()))
            .flatten();
        match mapped {
            Some(base) if setsockopt(s, PACKET_COPY_THRESH, &one) == 0 => Ok(Some(RxRing {
                base,
                slots,
                head: AtomicUsize::new(0),
                reading: AtomicBool::new(false),
                cut: AtomicU64::new(0),
            })),
            _ => {
                if base != libc::MAP_FAILED {
                    // SAFETY: the mapping made above.
                    unsafe { libc::munmap(base, len) };
                }
                let off = TpacketReq {
                    block_size: 0,
                    block_nr: 0,
                    frame_size: 0,
                    frame_nr: 0,
                };
                if setsockopt(s, PACKET_RX_RING, &off) < 0 {
                    return Err("take down a half-made receive ring (PACKET_RX_RING)");
                }
                Ok(None)
            }
        }
    }

    /// The next frame, as [`PacketPort::read`] says; `fd` is the ring's
    /// socket (for frames queued whole).
    fn next(&self, fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.reading.swap(true, Ordering::Acquire) {
            return Ok(None);
        }
        let got = self.take(fd, buf);
        self.reading.store(false, Ordering::Release);
        got
    }

    fn take(&self, fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // Bounded: each turn gives a slot back.
        for _ in 0..self.slots {
            let head = self.head.load(Ordering::Relaxed);
            // SAFETY: head < slots, so the slot lies inside the mapping.
            let slot = unsafe { self.base.as_ptr().add(head * SLOT) };
            // SAFETY: tp_status is the slot's first, 4-byte-aligned u32,
            // written by the kernel: read it as an atomic.
            let status = unsafe { &*slot.cast::<AtomicU32>() };
            let st = status.load(Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                return Ok(None);
            }
            // The slot is ours until its status is given back: read its
            // fields and bytes by copying, never through a reference.
            let field = |at: usize, out: &mut [u8]| {
                // SAFETY: at + out.len() <= 16 < SLOT, inside the slot.
                unsafe { std::ptr::copy_nonoverlapping(slot.add(at), out.as_mut_ptr(), out.len()) }
            };
            let (mut w4, mut w8, mut h2) = ([0u8; 4], [0u8; 4], [0u8; 2]);
            field(4, &mut w4);
            field(8, &mut w8);
            field(12, &mut h2);
            let (len, snap) = (
                u32::from_ne_bytes(w4) as usize,
                u32::from_ne_bytes(w8) as usize,
            );
            let mac = usize::from(u16::from_ne_bytes(h2));
            let got = if st & TP_STATUS_COPY != 0 {
                // Too large for the slot: the whole frame waits in the
                // socket's queue, the only one there, in this order.
                match super::port::read_frame(fd, buf) {
                    // A socket error (the interface went down) is reported
                    // before anything is dequeued: keep the slot, so the
                    // next read after `recover` takes this frame, and the
                    // ring and the queue stay in step.
                    Err(e) => return Err(e),
                    Ok(n) => n.filter(|&n| n == VNET + len),
                }
            } else if snap == len && mac >= VNET && mac + snap <= SLOT && VNET + snap <= buf.len() {
                // SAFETY: mac - VNET .. mac + snap lies inside the slot
                // (checked above) and buf holds VNET + snap bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        slot.add(mac - VNET),
                        buf.as_mut_ptr(),
                        VNET + snap,
                    )
                };
                Some(VNET + snap)
            } else {
                None
            };
            status.store(TP_STATUS_KERNEL, Ordering::Release);
            self.head.store((head + 1) % self.slots, Ordering::Relaxed);
            match got {
                Some(n) => return Ok(Some(n)),
                None => {
                    self.cut.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(None)
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of this length.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.slots * SLOT) };
    }
}

fn setsockopt<T>(s: &OwnedFd, opt: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: v points to a T of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    }
}

/// The interface's MTU (SIOCGIFMTU works on any socket).
fn interface_mtu(s: &OwnedFd, name: &str) -> Option<u32> {
    #[repr(C)]
    struct IfReqInt {
        name: [libc::c_char; libc::IFNAMSIZ],
        value: libc::c_int,
        _pad: [u8; 20],
    }
    let mut req = IfReqInt {
        name: [0; libc::IFNAMSIZ],
        value: 0,
        _pad: [0; 20],
    };
    for (o, b) in req.name.iter_mut().zip(name.bytes()) {
        *o = b as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU fills ifr_mtu of a struct ifreq laid out as above.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    (r == 0).then_some(req.value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_share_a_port_budget_within_bounds_in_whole_blocks() {
        assert_eq!(ring_slots(1), MAX_SLOTS);
        assert_eq!(ring_slots(2), 2048);
        assert_eq!(ring_slots(3), 1344);
        assert_eq!(ring_slots(8), 512);
        assert_eq!(ring_slots(64), MIN_SLOTS);
        for q in 1..300 {
            let n = ring_slots(q);
            assert_eq!(n % (BLOCK / SLOT), 0, "{q} queues");
            assert!((MIN_SLOTS..=MAX_SLOTS).contains(&n), "{q} queues");
        }
    }
}
