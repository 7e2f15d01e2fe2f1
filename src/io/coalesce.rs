//! UDP coalescing on output: consecutive datagrams of one flow leave as
//! one UDP GSO packet (virtio-net `GSO_UDP_L4`), so the receiving kernel
//! takes them in one write and wakes its reader once, where single writes
//! cost a system call and a wake-up each (BENCHMARKS.md has the profile).
//!
//! Only datagrams the kernel's segmentation gives back byte for byte are
//! joined: IPv4 without options, not fragments, the same Ethernet header,
//! the same IPv4 header but for length, checksum and an ID one more than
//! the previous one's (Linux numbers a socket's datagrams so), the same
//! ports, every payload the first one's size except a smaller last, and a
//! *partial* UDP checksum (the pseudo-header sum a device completes, as a
//! local stack with checksum offload sends them). `__udp_gso_segment` then
//! restores each datagram's length, ID and partial checksum. A datagram
//! with a whole checksum stays single: joined, its checksum would no
//! longer be checked by the receiver, and a wrong one would pass. The
//! kernel takes such packets from a TAP device or a packet socket since
//! Linux 6.2.

use crate::wire::ethernet;
use crate::wire::virtio_net::{self, Repr};

const ETH: usize = ethernet::HEADER_LEN;
const HDRS: usize = ETH + 20 + 8;
/// Datagrams per packet at most (the kernel accepts up to 128).
const MAX_SEGMENTS: usize = 64;

/// Datagrams being joined for one port.
#[derive(Debug, Default)]
pub struct UdpCoalescer {
    buf: Vec<u8>,
    count: usize,
    /// Payload bytes of each datagram but the last.
    seg: usize,
    next_id: u16,
    /// A smaller datagram closed the packet.
    closed: bool,
}

/// The payload length of a frame that may be joined, if it may.
fn joinable(f: &[u8]) -> Option<usize> {
    let ip = f.get(ETH..HDRS)?;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    let udp_len = usize::from(u16::from_be_bytes([ip[24], ip[25]]));
    let ok = f[12..14] == [0x08, 0x00]
        && ip[0] == 0x45
        && ip[9] == 17
        && frag == 0
        && ETH + total == f.len()
        && total.checked_sub(20) == Some(udp_len)
        && u16::from_be_bytes([ip[26], ip[27]]) == pseudo_sum(ip, udp_len as u16);
    udp_len.checked_sub(8).filter(|&n| ok && n > 0)
}

/// The UDP/IPv4 pseudo-header sum (RFC 768), folded, not complemented:
/// what a partial checksum field holds.
fn pseudo_sum(ip: &[u8], udp_len: u16) -> u16 {
    let mut p = [0u8; 12];
    p[..8].copy_from_slice(&ip[12..20]);
    p[9] = 17;
    p[10..12].copy_from_slice(&udp_len.to_be_bytes());
    crate::wire::checksum::sum(&p)
}

/// The virtio-net header of a datagram with a partial UDP checksum.
const PARTIAL: Repr = Repr {
    flags: virtio_net::F_NEEDS_CSUM,
    gso_type: virtio_net::GSO_NONE,
    hdr_len: 0,
    gso_size: 0,
    csum_start: (ETH + 20) as u16,
    csum_offset: 6,
};

impl UdpCoalescer {
    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Takes `frame` into the packet being built, if it may join it (or
    /// starts one with it); false: write the packet held, then the frame.
    pub fn add(&mut self, frame: &[u8]) -> bool {
        let Some(len) = joinable(frame) else {
            return false;
        };
        let id = u16::from_be_bytes([frame[ETH + 4], frame[ETH + 5]]);
        if self.count == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(frame);
            (self.count, self.seg, self.next_id, self.closed) = (1, len, id.wrapping_add(1), false);
            return true;
        }
        let b = &self.buf;
        let same = b[..ETH] == frame[..ETH]
            && b[ETH..ETH + 2] == frame[ETH..ETH + 2]
            && b[ETH + 6..ETH + 10] == frame[ETH + 6..ETH + 10]
            && b[ETH + 12..ETH + 24] == frame[ETH + 12..ETH + 24];
        if !same
            || self.closed
            || id != self.next_id
            || len > self.seg
            || self.count == MAX_SEGMENTS
            || self.buf.len() + len > ETH + 65_535
        {
            return false;
        }
        self.buf.extend_from_slice(&frame[HDRS..]);
        self.count += 1;
        self.next_id = id.wrapping_add(1);
        self.closed = len < self.seg;
        true
    }

    /// The packet held, ready to write: its virtio-net header and frame
    /// (a single datagram as it came); empties the coalescer.
    pub fn take(&mut self) -> Option<(Repr, &[u8])> {
        let n = std::mem::take(&mut self.count);
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some((PARTIAL, &self.buf));
        }
        let total = self.buf.len() - ETH;
        let ip = &mut self.buf[ETH..];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let cs = crate::wire::checksum::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&cs.to_be_bytes());
        let udp_len = (total - 20) as u16;
        ip[24..26].copy_from_slice(&udp_len.to_be_bytes());
        // The partial checksum: the pseudo-header sum over the whole
        // length, which the kernel adjusts to each datagram's.
        let sum = pseudo_sum(ip, udp_len);
        ip[26..28].copy_from_slice(&sum.to_be_bytes());
        let h = Repr {
            gso_type: virtio_net::GSO_UDP_L4,
            hdr_len: HDRS as u16,
            gso_size: self.seg as u16,
            ..PARTIAL
        };
        Some((h, &self.buf))
    }
}

/// True if this kernel takes UDP GSO packets from a TAP device or packet
/// socket (Linux 6.2 and later).
pub fn kernel_supported() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Link;
    use crate::probe::{patch_ipv4, tcp, udp, with_partial_checksum};
    use etherparse::{NetSlice, SlicedPacket};

    fn datagram(id: u16, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (i as u16 ^ id) as u8).collect();
        let mut f = udp(
            Link::Internet,
            "203.0.113.10",
            "198.51.100.7",
            5000,
            5201,
            &data,
        );
        patch_ipv4(&mut f, |h| {
            h.identification = id;
            h.dont_fragment = true;
        });
        // As a local stack with checksum offload hands it over.
        with_partial_checksum(f)
    }

    /// What the kernel's `__udp_gso_segment` and `inet_gso_segment` make
    /// of a UDP GSO packet with a partial checksum, written from their
    /// rules with etherparse: each segment gets `gso_size` payload bytes
    /// (the last the rest), its own UDP and IPv4 length, an ID one more
    /// than the one before, a full IPv4 checksum and the partial UDP
    /// checksum for its own length.
    fn kernel_segments(h: &Repr, f: &[u8]) -> Vec<Vec<u8>> {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let ip_h = ip.header().to_header();
        let payload = &f[HDRS..];
        payload
            .chunks(usize::from(h.gso_size))
            .enumerate()
            .map(|(i, chunk)| {
                let mut iph = ip_h.clone();
                iph.identification = ip_h.identification.wrapping_add(i as u16);
                iph.set_payload_len(8 + chunk.len()).unwrap();
                iph.header_checksum = iph.calc_header_checksum();
                let u =
                    etherparse::UdpHeader::without_ipv4_checksum(5000, 5201, chunk.len()).unwrap();
                let mut v = f[..ETH].to_vec();
                v.extend_from_slice(&iph.to_bytes());
                v.extend_from_slice(&u.to_bytes());
                v.extend_from_slice(chunk);
                with_partial_checksum(v)
            })
            .collect()
    }

    #[test]
    fn consecutive_datagrams_leave_as_one_packet_the_kernel_cuts_back() {
        let frames: Vec<Vec<u8>> = (0..5u16)
            .map(|i| datagram(100 + i, if i == 4 { 20 } else { 64 }))
            .collect();
        let mut c = UdpCoalescer::default();
        for f in &frames {
            assert!(c.add(f));
        }
        // After a smaller one, nothing more joins.
        assert!(!c.add(&datagram(105, 64)));
        let (h, packet) = c.take().unwrap();
        assert_eq!(h.gso_type, virtio_net::GSO_UDP_L4);
        assert_eq!(
            (h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
            (64, 42, 34, 6)
        );
        let packet = packet.to_vec();
        assert_eq!(packet.len(), 42 + 4 * 64 + 20);
        assert_eq!(kernel_segments(&h, &packet), frames, "byte for byte");
        assert!(c.is_empty());
    }

    #[test]
    fn what_the_kernel_would_not_give_back_stays_single() {
        let mut c = UdpCoalescer::default();
        assert!(c.add(&datagram(1, 64)));
        assert!(!c.add(&datagram(3, 64)), "an ID gap");
        assert!(!c.add(&datagram(2, 65)), "a larger payload");
        let mut other_port = datagram(2, 64);
        other_port[34..36].copy_from_slice(&1234u16.to_be_bytes());
        assert!(!c.add(&other_port), "another flow");
        let whole = udp(
            Link::Internet,
            "203.0.113.10",
            "198.51.100.7",
            5000,
            5201,
            &[0; 64],
        );
        let mut whole = whole;
        patch_ipv4(&mut whole, |h| {
            h.identification = 2;
            h.dont_fragment = true;
        });
        assert!(
            !c.add(&whole),
            "a whole checksum: the receiver must check it"
        );
        assert!(
            !c.add(&tcp(
                Link::Internet,
                "203.0.113.10",
                "198.51.100.7",
                1,
                2,
                "A",
                b"x"
            )),
            "not UDP"
        );
        // One datagram leaves as it came, its checksum still partial.
        let (h, f) = c.take().unwrap();
        assert_eq!(h, PARTIAL);
        assert_eq!(f, &datagram(1, 64)[..]);
        assert!(c.take().is_none());
    }
}
