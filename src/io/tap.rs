//! Linux TAP devices: one Ethernet port per device.
//!
//! A device eipsim creates is not persistent, so the kernel removes it when
//! eipsim closes it (also on a crash); a device that already existed is
//! attached to and left as it was. The open descriptor keeps working after
//! the device is moved into another network namespace.

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
        "{name} already exists and is not a TAP device (another kind of interface, a TUN device, or a multi-queue TAP)"
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
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;

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

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
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

impl Tap {
    /// Opens (creating if needed) the TAP device `name`, sets its MTU and
    /// brings it up.
    pub fn open(name: &str, mtu: u32) -> Result<Tap, TapError> {
        let raw_name = ifname(name)?;
        // Whether the name is taken in *this* network namespace (sysfs may
        // show another one, under nsenter).
        let ctl = control_socket(name)?;
        let existed = if_index(&ctl, raw_name).is_some();
        if !Path::new("/dev/net/tun").exists() {
            return Err(TapError::NoTunDevice);
        }
        let path = CString::new("/dev/net/tun").expect("no NUL");
        // SAFETY: a plain open(2) of a NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    TapError::NotPermitted { name: name.into() }
                }
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    TapError::NoTunDevice
                }
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
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReqFlags
        // lays out (name, then the flags union member), padded to its size.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    TapError::NotPermitted { name: name.into() }
                }
                Some(libc::EBUSY) => TapError::Busy { name: name.into() },
                // The name belongs to a device that is no (single-queue) TAP.
                Some(libc::EINVAL) if existed => TapError::NotTap { name: name.into() },
                _ => TapError::Os {
                    name: name.into(),
                    what: "create the TAP device (TUNSETIFF)",
                    source: e,
                },
            });
        }
        // A device eipsim creates is not persistent; one that existed and
        // could be attached is (a non-persistent one in use gives EBUSY).
        // SAFETY: TUNGETIFF fills the flags of a struct ifreq.
        let persistent = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, &mut req) } == 0
            && req.flags & IFF_PERSIST != 0;
        let restore = if persistent {
            saved_state(&ctl, raw_name)
        } else {
            None
        };
        let mut tap = Tap {
            fd,
            name: name.to_string(),
            created: !persistent,
            mac: [0; 6],
            restore,
            raw_name,
        };
        tap.mac = tap.configure(raw_name, mtu)?;
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

    /// Waits up to `timeout_ms` for a frame; true if one can be read.
    pub fn wait_readable(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the device is gone",
            ));
        }
        Ok(n > 0 && p.revents & libc::POLLIN != 0)
    }

    /// Reads one frame into `buf`; returns its length.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Reads one frame into `buf`, spilling into `overflow` whatever does
    /// not fit (the kernel would otherwise cut the frame short without a
    /// word); returns the frame's whole length.
    pub fn recv_spill(&self, buf: &mut [u8], overflow: &mut [u8]) -> io::Result<usize> {
        let iov = [
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
            libc::iovec {
                iov_base: overflow.as_mut_ptr().cast(),
                iov_len: overflow.len(),
            },
        ];
        // SAFETY: both iovecs describe valid, writable buffers we own.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame is valid for frame.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
