//! Linux TAP devices: one Ethernet port per device.
//!
//! A device eipsim creates is not persistent, so the kernel removes it when
//! eipsim closes it (also on a crash); a device that already existed is
//! attached to and left as it was. The open descriptor keeps working after
//! the device is moved into another network namespace.

use crate::wire::virtio_net::HEADER_LEN;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Why a port could not be opened, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// `/dev/net/tun` does not exist or cannot be opened as a device.
    #[error(
        "/dev/net/tun is missing: load the tun module (modprobe tun) or run where TAP devices exist"
    )]
    NoTunDevice,
    /// EPERM or EACCES opening `/dev/net/tun` or creating the device.
    #[error("permission denied opening {name}: eipsim run needs root or CAP_NET_ADMIN")]
    NotPermitted {
        /// The device name.
        name: String,
    },
    /// The name exists in this network namespace and TUNSETIFF refused it
    /// (EINVAL).
    #[error(
        "{name} already exists and is not a TAP device (another kind of interface, a TUN device, or a multi-queue TAP); to attach a port to an existing interface, write --port PORT=af_packet:{name}"
    )]
    NotTap {
        /// The device name.
        name: String,
    },
    /// EBUSY: another process holds the device.
    #[error("{name} is busy: another process has it open")]
    Busy {
        /// The device name.
        name: String,
    },
    /// Empty, 16 characters or more, or containing '/', a space or NUL.
    #[error("invalid interface name {name:?}: 1 to 15 characters, no '/' or spaces")]
    BadName {
        /// The name as given.
        name: String,
    },
    /// Any other failing system call.
    #[error("{name}: {what}: {source}")]
    Os {
        /// The device name.
        name: String,
        /// What eipsim was doing ("bring the device up", ...).
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_PERSIST: libc::c_short = 0x0800;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;
/// TUNSETOFFLOAD bits (linux/if_tun.h): what the device accepts from the
/// kernel's stack, so what eipsim reads.
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
/// UDP segmentation (Linux 6.2); the kernel takes the two only together.
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// How a TAP device is opened.
#[derive(Clone, Copy)]
pub struct TapConfig<'a> {
    /// The device MTU, IP bytes.
    pub mtu: u32,
    /// Read and write with the virtio-net header and ask for checksum
    /// and TCP/IPv4 segmentation offload (see docs/offload-research.md).
    pub offload: bool,
    /// Queues to open (IFF_MULTI_QUEUE when more than one): one per
    /// worker.
    pub queues: usize,
    /// The steering program to attach when there are several queues.
    pub steer: Option<&'a crate::io::steer::Program>,
}

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[repr(C)]
struct IfReqInt {
    name: [libc::c_char; libc::IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

fn ifname(name: &str) -> Result<[libc::c_char; libc::IFNAMSIZ], TapError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        return Err(TapError::BadName { name: name.into() });
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b as libc::c_char;
    }
    Ok(out)
}

/// An open TAP device: one descriptor per queue, each nonblocking.
#[derive(Debug)]
pub struct Tap {
    queues: Vec<OwnedFd>,
    name: String,
    /// Frames carry the virtio-net header (IFF_VNET_HDR).
    pub vnet: bool,
    /// The offloads the kernel accepted, as words for the report: "csum,
    /// tso4, uso", "csum, tso4", "csum" or "none".
    pub offloads: &'static str,
    /// The kernel steers each frame to its owner's queue (the steering
    /// program is attached); else tun's own flow steering picks.
    pub steering: bool,
    /// True if eipsim created it (and closing it removes it).
    pub created: bool,
    /// The device's MAC address: the kernel side of this point-to-point
    /// link, so the peer eipsim sends to.
    pub mac: [u8; 6],
    /// For a device that existed: its MTU and flags, put back on close.
    restore: Option<(libc::c_int, libc::c_short)>,
    raw_name: [libc::c_char; libc::IFNAMSIZ],
}

impl Drop for Tap {
    /// Leaves a device that existed as it was (best effort: after a move
    /// to another namespace it can no longer be reached from here).
    fn drop(&mut self) {
        let Some((mtu, flags)) = self.restore else {
            return;
        };
        let Ok(ctl) = control_socket(&self.name) else {
            return;
        };
        let mut m = IfReqInt {
            name: self.raw_name,
            value: mtu,
            _pad: [0; 20],
        };
        let mut f = IfReqFlags {
            name: self.raw_name,
            flags,
            _pad: [0; 22],
        };
        // SAFETY: SIOCSIFMTU/SIOCSIFFLAGS read a struct ifreq laid out as
        // IfReqInt/IfReqFlags.
        unsafe {
            libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFMTU, &mut m);
            libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFFLAGS, &mut f);
        }
    }
}

/// An AF_INET datagram socket for interface ioctls.
fn control_socket(name: &str) -> Result<OwnedFd, TapError> {
    // SAFETY: socket(2) with constant arguments.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(TapError::Os {
            name: name.into(),
            what: "open a control socket",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: s is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// The interface index of `name` in this network namespace, if it exists.
fn if_index(ctl: &OwnedFd, name: [libc::c_char; libc::IFNAMSIZ]) -> Option<libc::c_int> {
    let mut req = IfReqInt {
        name,
        value: 0,
        _pad: [0; 20],
    };
    // SAFETY: SIOCGIFINDEX fills ifr_ifindex (an int at offset 16).
    (unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) } == 0)
        .then_some(req.value)
}

/// The MTU and flags of an existing device, to put back later.
fn saved_state(
    ctl: &OwnedFd,
    name: [libc::c_char; libc::IFNAMSIZ],
) -> Option<(libc::c_int, libc::c_short)> {
    let mut m = IfReqInt {
        name,
        value: 0,
        _pad: [0; 20],
    };
    let mut f = IfReqFlags {
        name,
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: SIOCGIFMTU/SIOCGIFFLAGS fill a struct ifreq as laid out.
    let ok = unsafe {
        libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFMTU, &mut m) == 0
            && libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut f) == 0
    };
    ok.then_some((m.value, f.flags))
}

/// Opens /dev/net/tun and attaches it to the device `name` (creating it)
/// with `flags`; the descriptor is nonblocking.
fn open_queue(
    name: &str,
    raw_name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    existed: bool,
) -> Result<OwnedFd, TapError> {
    let path = CString::new("/dev/net/tun").expect("no NUL");
    // SAFETY: a plain open(2) of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => TapError::NotPermitted { name: name.into() },
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => TapError::NoTunDevice,
            _ => TapError::Os {
                name: name.into(),
                what: "open /dev/net/tun",
                source: e,
            },
        });
    }
    // SAFETY: fd is a freshly opened descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReqFlags {
        name: raw_name,
        flags,
        _pad: [0; 22],
    };
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReqFlags
    // lays out (name, then the flags union member), padded to its size.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => TapError::NotPermitted { name: name.into() },
            Some(libc::EBUSY) => TapError::Busy { name: name.into() },
            // The name belongs to a device that is no TAP of this kind
            // (or single-queue, asked for several queues).
            Some(libc::EINVAL) if existed => TapError::NotTap { name: name.into() },
            _ => TapError::Os {
                name: name.into(),
                what: "create the TAP device (TUNSETIFF)",
                source: e,
            },
        });
    }
    Ok(fd)
}

/// Sets the device's offloads (per device, so on one queue) and says
/// which it took. Without `offload` they are cleared: a persistent device
/// may keep a mask a previous user set, and without the virtio-net header
/// eipsim could not read a GSO packet's segment size.
fn set_offloads(name: &str, fd: &OwnedFd, offload: bool) -> Result<&'static str, TapError> {
    let os = |what: &'static str| TapError::Os {
        name: name.into(),
        what,
        source: io::Error::last_os_error(),
    };
    if !offload {
        // SAFETY: TUNSETOFFLOAD takes an unsigned int by value.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, 0 as libc::c_uint) } < 0 {
            return Err(os("clear the offloads (TUNSETOFFLOAD)"));
        }
        return Ok("none");
    }
    let size: libc::c_int = HEADER_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &size) } < 0 {
        return Err(os("set the virtio-net header size (TUNSETVNETHDRSZ)"));
    }
    for (mask, words) in [
        (
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4 | TUN_F_USO6,
            "csum, tso4, uso",
        ),
        (TUN_F_CSUM | TUN_F_TSO4, "csum, tso4"),
        (TUN_F_CSUM, "csum"),
        (0, "none"),
    ] {
        // SAFETY: as above.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, mask) } == 0 {
            return Ok(words);
        }
    }
    Err(os("set the offloads (TUNSETOFFLOAD)"))
}

impl Tap {
    /// Opens (creating if needed) the TAP device `name` with `cfg.queues`
    /// queues, sets its MTU and offloads and brings it up.
    ///
    /// Several queues need IFF_MULTI_QUEUE, which a device that already
    /// exists as single-queue refuses: then one queue is opened and the
    /// workers share it. Offloads are probed: checksum and TCP/IPv4
    /// segmentation, else checksum alone, else none (the virtio-net header
    /// stays, with nothing to say).
    pub fn open(name: &str, cfg: TapConfig<'_>) -> Result<Tap, TapError> {
        let raw_name = ifname(name)?;
        // Whether the name is taken in *this* network namespace (sysfs may
        // show another one, under nsenter).
        let ctl = control_socket(name)?;
        let existed = if_index(&ctl, raw_name).is_some();
        if !Path::new("/dev/net/tun").exists() {
            return Err(TapError::NoTunDevice);
        }
        let mut flags = IFF_TAP | IFF_NO_PI;
        if cfg.offload {
            flags |= IFF_VNET_HDR;
        }
        let multi = cfg.queues > 1;
        let mq_flags = flags | if multi { IFF_MULTI_QUEUE } else { 0 };
        let (first, flags) = match open_queue(name, raw_name, mq_flags, existed) {
            // An existing single-queue device: share its one queue.
            Err(TapError::NotTap { .. }) if multi => {
                (open_queue(name, raw_name, flags, existed)?, flags)
            }
            other => (other?, mq_flags),
        };
        let mut req = IfReqFlags {
            name: raw_name,
            flags: 0,
            _pad: [0; 22],
        };
        // A device eipsim creates is not persistent; one that existed and
        // could be attached is (a non-persistent one in use gives EBUSY).
        // SAFETY: TUNGETIFF fills the flags of a struct ifreq.
        let got = unsafe { libc::ioctl(first.as_raw_fd(), TUNGETIFF, &mut req) } == 0;
        let persistent = got && req.flags & IFF_PERSIST != 0;
        let mut queues = vec![first];
        while flags & IFF_MULTI_QUEUE != 0 && queues.len() < cfg.queues {
            queues.push(open_queue(name, raw_name, flags, true)?);
        }
        let offloads = set_offloads(name, &queues[0], cfg.offload)?;
        let steering = queues.len() > 1
            && cfg.steer.is_some_and(|p| {
                let fd: libc::c_int = p.fd();
                // SAFETY: TUNSETSTEERINGEBPF reads an int (the program's fd);
                // the kernel keeps its own reference.
                unsafe { libc::ioctl(queues[0].as_raw_fd(), TUNSETSTEERINGEBPF, &fd) == 0 }
            });
        let restore = if persistent {
            saved_state(&ctl, raw_name)
        } else {
            None
        };
        let mut tap = Tap {
            queues,
            name: name.to_string(),
            vnet: cfg.offload,
            offloads,
            steering,
            created: !persistent,
            mac: [0; 6],
            restore,
            raw_name,
        };
        tap.mac = tap.configure(raw_name, cfg.mtu)?;
        Ok(tap)
    }

    /// Sets the MTU, brings the device up and reads its MAC address.
    fn configure(
        &self,
        raw_name: [libc::c_char; libc::IFNAMSIZ],
        mtu: u32,
    ) -> Result<[u8; 6], TapError> {
        let os = |what: &'static str| TapError::Os {
            name: self.name.clone(),
            what,
            source: io::Error::last_os_error(),
        };
        // SAFETY: socket(2) with constant arguments.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(os("open a control socket"));
        }
        // SAFETY: s is a fresh descriptor we own.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        let mut req = IfReqInt {
            name: raw_name,
            value: mtu as libc::c_int,
            _pad: [0; 20],
        };
        // SAFETY: SIOCSIFMTU reads a struct ifreq with ifr_mtu (an int).
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFMTU, &mut req) } < 0 {
            return Err(os("set the MTU"));
        }
        let mut flags = IfReqFlags {
            name: raw_name,
            flags: 0,
            _pad: [0; 22],
        };
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS use ifr_flags (a short).
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut flags) } < 0 {
            return Err(os("read the flags"));
        }
        flags.flags |= libc::IFF_UP as libc::c_short;
        // SAFETY: as above.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &mut flags) } < 0 {
            return Err(os("bring the device up"));
        }
        // SAFETY: SIOCGIFHWADDR fills a struct ifreq whose union holds a
        // sockaddr (2-byte family, then the address bytes).
        let mut hw = IfReqFlags {
            name: raw_name,
            flags: 0,
            _pad: [0; 22],
        };
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFHWADDR, &mut hw) } < 0 {
            return Err(os("read the MAC address"));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&hw._pad[..6]);
        Ok(mac)
    }

    /// The device name it was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queues' descriptors (nonblocking), one per worker, or one in
    /// all for a device that had to be shared.
    pub fn queues(&self) -> &[OwnedFd] {
        &self.queues
    }
}
