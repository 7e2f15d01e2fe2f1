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
//! Why not `pnet::datalink`: it cannot set PACKET_VNET_HDR or
//! PACKET_FANOUT. Without the header a TCP segment from a veth arrives
//! with only its pseudo-header checksum and a GSO packet without its
//! segment size: forwarded as read, the far host drops them (tried: no
//! TCP connection gets through); and one socket would serve every worker
//! (BENCHMARKS.md).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

/// Sockets on one interface, one per queue (worker).
#[derive(Debug)]
pub struct PacketPort {
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
    /// header.
    pub fn open(
        name: &str,
        queues: usize,
        steer: Option<&crate::io::steer::Program>,
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
        total
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
