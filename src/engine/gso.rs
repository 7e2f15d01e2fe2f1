//! Generic segmentation offload, done in software: what the kernel does
//! for a GSO packet when eipsim has to hand on single segments (an egress
//! MTU below the segment size, a capture, a peer without offloads), and
//! the completion of a partial checksum.
//!
//! A TAP with offloads hands eipsim a TCP/IPv4 packet of up to 64 KiB
//! with a virtio-net header saying `GSO_TCPV4` and the segment size, and a
//! *partial* TCP checksum: the field holds the folded, uncomplemented
//! pseudo-header sum over the whole TCP length (Linux `CHECKSUM_PARTIAL`).
//! NAT updates that field with [`Delta::apply_partial`]. The rules per
//! segment are the kernel's `tcp_gso_segment`: sequence numbers advance by
//! the segment size, the IP ID by one, FIN and PSH stay on the last
//! segment only, CWR on the first only, and every length and checksum is
//! the segment's own (docs/offload-research.md has the sources).
//!
//! Building segments allocates; it runs only where segments are needed,
//! not on the offloaded path.
//!
//! [`Delta::apply_partial`]: crate::wire::checksum::Delta::apply_partial

use crate::wire::checksum;
use crate::wire::ethernet;
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use crate::wire::virtio_net::{self, Repr};
use crate::wire::{Result, WireError};

const ETH: usize = ethernet::HEADER_LEN;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The header lengths of an Ethernet/IPv4/TCP frame: (IPv4 header bytes,
/// TCP header bytes, IPv4 total length), checked against the frame.
fn tcp4_layout(frame: &[u8]) -> Result<(usize, usize, usize)> {
    let ip = frame.get(ETH..).ok_or(WireError::Truncated)?;
    if ip.len() < 20 {
        return Err(WireError::Truncated);
    }
    if ip[0] >> 4 != 4 || ip[9] != PROTO_TCP {
        return Err(WireError::Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || total < ihl + 20 {
        return Err(WireError::Malformed);
    }
    if total > ip.len() {
        return Err(WireError::Truncated);
    }
    let thl = usize::from(ip[ihl + 12] >> 4) * 4;
    if thl < 20 {
        return Err(WireError::Malformed);
    }
    if ihl + thl > total {
        return Err(WireError::Truncated);
    }
    Ok((ihl, thl, total))
}

/// The one's complement sum of the TCP/IPv4 pseudo-header for a TCP
/// segment of `tcp_len` bytes (RFC 9293 section 3.1), not complemented.
fn pseudo_sum(ip: &[u8], tcp_len: usize) -> u16 {
    let mut p = [0u8; 12];
    p[..8].copy_from_slice(&ip[12..20]);
    p[9] = PROTO_TCP;
    p[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
    checksum::sum(&p)
}

/// Writes the full TCP checksum of the frame's segment (field zeroed
/// first).
fn set_tcp_checksum(f: &mut [u8], ihl: usize, total: usize) {
    let (ip, tcp) = f[ETH..ETH + total].split_at_mut(ihl);
    tcp[16..18].copy_from_slice(&[0, 0]);
    let ps = pseudo_sum(ip, tcp.len());
    let s = checksum::sum(tcp);
    let folded = {
        let t = u32::from(ps) + u32::from(s);
        ((t & 0xffff) + (t >> 16)) as u16
    };
    tcp[16..18].copy_from_slice(&(!folded).to_be_bytes());
}

/// Writes the IPv4 header checksum (field zeroed first).
fn set_ip_checksum(f: &mut [u8], ihl: usize) {
    let h = &mut f[ETH..ETH + ihl];
    h[10..12].copy_from_slice(&[0, 0]);
    let cs = checksum::checksum(h);
    h[10..12].copy_from_slice(&cs.to_be_bytes());
}

/// The header lengths of an Ethernet/IPv4/UDP frame: (IPv4 header bytes,
/// 8, IPv4 total length), checked against the frame and the UDP length.
fn udp4_layout(frame: &[u8]) -> Result<(usize, usize, usize)> {
    let ip = frame.get(ETH..).ok_or(WireError::Truncated)?;
    if ip.len() < 20 {
        return Err(WireError::Truncated);
    }
    if ip[0] >> 4 != 4 || ip[9] != PROTO_UDP {
        return Err(WireError::Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // A GSO train with no payload would stand for no datagram at all.
    if ihl < 20 || total <= ihl + 8 {
        return Err(WireError::Malformed);
    }
    if total > ip.len() {
        return Err(WireError::Truncated);
    }
    if usize::from(u16::from_be_bytes([ip[ihl + 4], ip[ihl + 5]])) != total - ihl {
        return Err(WireError::Malformed);
    }
    Ok((ihl, 8, total))
}

/// Cuts a UDP/IPv4 GSO frame into datagrams of at most `size` payload
/// bytes each, as the kernel's `__udp_gso_segment` does: each with its own
/// UDP and IPv4 length, an IP ID one more than the one before, and full
/// IPv4 and UDP checksums (a computed 0 sent as 0xffff, RFC 768), handed
/// to `each` in order, built in `scratch`.
///
/// Errors: the frame is not Ethernet/IPv4/UDP, is cut short, or `size`
/// is 0; nothing is handed over then.
pub fn segment_udp4_each(
    frame: &[u8],
    size: usize,
    scratch: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> Result<()> {
    if size == 0 {
        return Err(WireError::Malformed);
    }
    let (ihl, _, total) = udp4_layout(frame)?;
    let hdrs = ETH + ihl + 8;
    let payload = &frame[hdrs..ETH + total];
    let ident = u16::from_be_bytes([frame[ETH + 4], frame[ETH + 5]]);
    for (i, chunk) in payload.chunks(size).enumerate() {
        let f = &mut *scratch;
        f.clear();
        f.extend_from_slice(&frame[..hdrs]);
        f.extend_from_slice(chunk);
        let udp_len = 8 + chunk.len();
        let ip = &mut f[ETH..];
        ip[2..4].copy_from_slice(&((ihl + udp_len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&ident.wrapping_add(i as u16).to_be_bytes());
        let (h, udp) = ip.split_at_mut(ihl);
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]);
        let mut p = [0u8; 12];
        p[..8].copy_from_slice(&h[12..20]);
        p[9] = PROTO_UDP;
        p[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let t = u32::from(checksum::sum(&p)) + u32::from(checksum::sum(udp));
        let cs = !(((t & 0xffff) + (t >> 16)) as u16);
        udp[6..8].copy_from_slice(&(if cs == 0 { 0xffff } else { cs }).to_be_bytes());
        set_ip_checksum(f, ihl);
        each(f);
    }
    Ok(())
}

/// What the device said about a received frame's checksum and
/// segmentation (its virtio-net header), in the form the engine uses.
///
/// The engine accepts only the layout the kernel produces for IPv4: a
/// partial checksum sits in the TCP or UDP header's own checksum field,
/// and a GSO packet is TCP/IPv4 (TSO) or UDP/IPv4 (USO). Anything else is
/// put right by [`Offload::from_virtio`] before the engine sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// The TCP or UDP checksum field holds the partial (pseudo-header)
    /// sum, for the next device to complete; NAT updates it with
    /// [`Delta::apply_partial`](crate::wire::checksum::Delta::apply_partial).
    pub partial_csum: bool,
    /// GSO: payload bytes per segment; 0 for a frame that is one packet.
    /// A GSO packet is always `partial_csum`.
    pub gso_size: u16,
    /// The GSO packet is UDP/IPv4 datagrams (`GSO_UDP_L4`, each segment
    /// a datagram of its own); else TCP/IPv4 segments.
    pub gso_udp: bool,
}

impl Offload {
    /// A frame that is one packet with full checksums.
    pub const NONE: Offload = Offload {
        partial_csum: false,
        gso_size: 0,
        gso_udp: false,
    };

    /// The header lengths of the GSO packet `frame`: (IPv4 header,
    /// transport header, IPv4 total length).
    fn layout(&self, frame: &[u8]) -> Result<(usize, usize, usize)> {
        if self.gso_udp {
            udp4_layout(frame)
        } else {
            tcp4_layout(frame)
        }
    }

    /// The engine's view of a frame read with virtio-net header `h`.
    ///
    /// A partial checksum anywhere but the TCP/UDP checksum field is
    /// completed here, in software; a GSO type other than TCP/IPv4 and
    /// UDP/IPv4 (IPv6, which eipsim does not enable) is left to the engine
    /// as one packet, which it drops as it drops every non-IPv4 frame.
    /// Errors: a partial checksum whose offsets fall outside the frame, or
    /// a GSO packet that is cut short, not of its type, or has no segment
    /// size.
    pub fn from_virtio(h: &Repr, frame: &mut [u8]) -> Result<Offload> {
        let l4 = l4_checksum_field(frame);
        let mut off = Offload::NONE;
        if h.needs_csum() {
            let (start, offset) = (usize::from(h.csum_start), usize::from(h.csum_offset));
            if l4 == Some((start, offset)) {
                off.partial_csum = true;
            } else {
                complete_partial(frame, start, offset)?;
            }
        }
        let udp = match h.gso_type & !virtio_net::GSO_ECN {
            virtio_net::GSO_TCPV4 => false,
            virtio_net::GSO_UDP_L4 if frame.get(12..14) == Some(&[0x08, 0x00]) => true,
            _ => return Ok(off),
        };
        off.gso_udp = udp;
        off.layout(frame)?;
        if h.gso_size == 0 || !off.partial_csum {
            return Err(WireError::Malformed);
        }
        off.gso_size = h.gso_size;
        Ok(off)
    }

    /// The virtio-net header to write `frame` with: `NEEDS_CSUM` with the
    /// checksum field's place for a partial checksum, `GSO_TCPV4` or
    /// `GSO_UDP_L4` with the header length and segment size for a GSO
    /// packet.
    pub fn to_virtio(&self, frame: &[u8]) -> Repr {
        let mut h = Repr::default();
        if !self.partial_csum {
            return h;
        }
        if let Some((start, offset)) = l4_checksum_field(frame) {
            h.flags = virtio_net::F_NEEDS_CSUM;
            h.csum_start = start as u16;
            h.csum_offset = offset as u16;
        }
        if self.gso_size > 0
            && let Ok((ihl, thl, _)) = self.layout(frame)
        {
            h.gso_type = if self.gso_udp {
                virtio_net::GSO_UDP_L4
            } else {
                virtio_net::GSO_TCPV4
            };
            h.gso_size = self.gso_size;
            h.hdr_len = (ETH + ihl + thl) as u16;
        }
        h
    }

    /// The segments a frame stands for and their Ethernet bytes, as they
    /// would cross the wire one by one: (1, its length) unless GSO.
    pub fn units(&self, frame: &[u8]) -> (u64, u64) {
        let one = (1, frame.len() as u64);
        if self.gso_size == 0 {
            return one;
        }
        let Ok((ihl, thl, total)) = self.layout(frame) else {
            return one;
        };
        let segs = (total - ihl - thl)
            .div_ceil(usize::from(self.gso_size))
            .max(1);
        let hdrs = ETH + ihl + thl;
        (segs as u64, (ETH + total + (segs - 1) * hdrs) as u64)
    }

    /// Cuts the GSO packet `frame` into its segments (TCP segments or UDP
    /// datagrams, by the kernel's rules, full checksums), handing each to
    /// `each` in order, built in `scratch`.
    ///
    /// Errors: as [`segment_tcp4`] and [`segment_udp4_each`].
    pub fn segment_each(
        &self,
        frame: &[u8],
        scratch: &mut Vec<u8>,
        each: impl FnMut(&[u8]),
    ) -> Result<()> {
        let size = usize::from(self.gso_size);
        if self.gso_udp {
            segment_udp4_each(frame, size, scratch, each)
        } else {
            segment_tcp4_each(frame, size, scratch, each)
        }
    }

    /// Completes the partial TCP/UDP checksum of a frame (whose offload
    /// said `partial_csum`) in place, so it can travel without offloads;
    /// a frame with no TCP/UDP checksum field is left as it is.
    pub fn complete(frame: &mut [u8]) {
        if let Some((start, offset)) = l4_checksum_field(frame) {
            // The offsets come from the frame's own checked header.
            let _ = complete_partial(frame, start, offset);
        }
    }

    /// The IP length of the largest segment (the packet's own for a frame
    /// that is one packet): what an egress MTU is compared with.
    pub fn segment_ip_len(&self, frame: &[u8], ip_len: usize) -> usize {
        if self.gso_size == 0 {
            return ip_len;
        }
        match self.layout(frame) {
            Ok((ihl, thl, total)) => (ihl + thl + usize::from(self.gso_size)).min(total),
            Err(_) => ip_len,
        }
    }
}

/// Where a TCP/IPv4 or UDP/IPv4 frame's checksum field is, as virtio-net
/// counts it: (`csum_start` from the frame's first byte, `csum_offset`).
fn l4_checksum_field(frame: &[u8]) -> Option<(usize, usize)> {
    let ip = frame.get(ETH..ETH + 20)?;
    if ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    match ip[9] {
        PROTO_TCP => Some((ETH + ihl, 16)),
        PROTO_UDP => Some((ETH + ihl, 6)),
        _ => None,
    }
}

/// Splits a TCP/IPv4 GSO frame into frames carrying at most `mss` payload
/// bytes each, appended to `out`, each with its own total length, IP ID,
/// sequence number, flags and full IPv4 and TCP checksums. The TCP
/// checksum field of `frame` may be partial or full: it is recomputed.
///
/// Errors: the frame is not Ethernet/IPv4/TCP, is cut short, or `mss` is 0.
pub fn segment_tcp4(frame: &[u8], mss: usize, out: &mut Vec<Vec<u8>>) -> Result<()> {
    let mut scratch = Vec::new();
    segment_tcp4_each(frame, mss, &mut scratch, |s| out.push(s.to_vec()))
}

/// Like [`segment_tcp4`], handing each segment to `each` in order, built
/// in `scratch` (reused: no allocation once it has grown to a segment).
///
/// Errors: as [`segment_tcp4`]; nothing is handed over then.
pub fn segment_tcp4_each(
    frame: &[u8],
    mss: usize,
    scratch: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> Result<()> {
    if mss == 0 {
        return Err(WireError::Malformed);
    }
    let (ihl, thl, total) = tcp4_layout(frame)?;
    let hdrs = ETH + ihl + thl;
    let payload = &frame[hdrs..ETH + total];
    let ip = &frame[ETH..];
    let ident = u16::from_be_bytes([ip[4], ip[5]]);
    let seq = u32::from_be_bytes([ip[ihl + 4], ip[ihl + 5], ip[ihl + 6], ip[ihl + 7]]);
    let flags = ip[ihl + 13];
    let n = payload.len().div_ceil(mss).max(1);
    for (i, at) in (0..n).map(|i| (i, i * mss)) {
        let chunk = &payload[at..(at + mss).min(payload.len())];
        let f = &mut *scratch;
        f.clear();
        f.extend_from_slice(&frame[..hdrs]);
        f.extend_from_slice(chunk);
        let seg_total = ihl + thl + chunk.len();
        let ip = &mut f[ETH..];
        ip[2..4].copy_from_slice(&(seg_total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&ident.wrapping_add(i as u16).to_be_bytes());
        let tcp = &mut ip[ihl..];
        tcp[4..8].copy_from_slice(&seq.wrapping_add(at as u32).to_be_bytes());
        let mut fl = flags;
        if i + 1 < n {
            fl &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            fl &= !TCP_CWR;
        }
        tcp[13] = fl;
        set_ip_checksum(f, ihl);
        set_tcp_checksum(f, ihl, seg_total);
        each(f);
    }
    Ok(())
}

/// Completes a partial checksum in place, as a device does for
/// `NEEDS_CSUM`: the one's complement sum from `csum_start` (counted from
/// the frame's first byte) to the end of the IP packet, with the field at
/// `csum_start + csum_offset` holding the pseudo-header sum, complemented
/// into that field.
///
/// Errors: the offsets fall outside the frame.
pub fn complete_partial(frame: &mut [u8], csum_start: usize, csum_offset: usize) -> Result<()> {
    let end = frame
        .get(ETH..ETH + 4)
        .map(|ip| ETH + usize::from(u16::from_be_bytes([ip[2], ip[3]])))
        .ok_or(WireError::Truncated)?;
    let field = csum_start + csum_offset;
    if end > frame.len() || field + 2 > end || csum_start < ETH {
        return Err(WireError::Truncated);
    }
    let s = checksum::sum(&frame[csum_start..end]);
    // A UDP checksum (at offset 6) computed as 0 is sent as 0xffff: 0
    // means "none" (RFC 768; Linux's CSUM_MANGLED_0). TCP keeps 0.
    let cs = match (!s, csum_offset) {
        (0, 6) => 0xffff,
        (c, _) => c,
    };
    frame[field..field + 2].copy_from_slice(&cs.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Link;
    use crate::probe::tcp;
    use crate::wire::checksum::Delta;
    use etherparse::{SlicedPacket, TransportSlice};

    /// A TCP frame of `len` payload bytes as a TAP with offloads would hand
    /// it over: the TCP checksum field holds the uncomplemented
    /// pseudo-header sum over the whole TCP length.
    fn partial(len: usize, flags: &str) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut f = tcp(
            Link::Instance,
            "172.16.0.10",
            "198.51.100.7",
            40000,
            443,
            flags,
            &data,
        );
        let tcp_len = f.len() - 34;
        let ps = pseudo_sum(&f[14..], tcp_len);
        f[34 + 16..34 + 18].copy_from_slice(&ps.to_be_bytes());
        f
    }

    /// Each frame's IPv4 and TCP checksums verify with etherparse.
    fn assert_valid(f: &[u8]) -> etherparse::TcpHeader {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!("TCP")
        };
        let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
        assert_eq!(t.checksum(), want);
        t.to_header()
    }

    #[test]
    fn nat_on_a_partial_checksum_then_completed_equals_the_full_checksum() {
        let mut f = partial(3000, "PA");
        // 1:1 NAT of the source: 172.16.0.10 -> 203.0.113.10.
        let old = u32::from_be_bytes([f[26], f[27], f[28], f[29]]);
        let new = u32::from_be_bytes([203, 0, 113, 10]);
        f[26..30].copy_from_slice(&new.to_be_bytes());
        set_ip_checksum(&mut f, 20);
        let d = Delta::NONE.addr(old, new);
        let field = u16::from_be_bytes([f[50], f[51]]);
        f[50..52].copy_from_slice(&d.apply_partial(field).to_be_bytes());
        complete_partial(&mut f, 34, 16).unwrap();
        assert_valid(&f);
        // Segmenting the translated packet gives valid segments too.
        let mut out = Vec::new();
        segment_tcp4(&f, 1448, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        for s in &out {
            assert_valid(s);
            assert_eq!(&s[26..30], &[203, 0, 113, 10]);
        }
    }

    #[test]
    fn segments_follow_tcp_gso_rules() {
        let mut f = partial(4000, "FPA");
        f[34 + 13] |= TCP_CWR;
        let (ident, seq) = (
            u16::from_be_bytes([f[18], f[19]]),
            u32::from_be_bytes([f[38], f[39], f[40], f[41]]),
        );
        let mut out = Vec::new();
        segment_tcp4(&f, 1448, &mut out).unwrap();
        // 4000 = 1448 + 1448 + 1104.
        let lens: Vec<usize> = out.iter().map(|s| s.len() - 54).collect();
        assert_eq!(lens, [1448, 1448, 1104]);
        let mut data = Vec::new();
        for (i, s) in out.iter().enumerate() {
            let h = assert_valid(s);
            assert_eq!(h.sequence_number, seq.wrapping_add(1448 * i as u32));
            assert_eq!(
                u16::from_be_bytes([s[18], s[19]]),
                ident.wrapping_add(i as u16)
            );
            let last = i == 2;
            assert_eq!((h.fin, h.psh), (last, last), "segment {i}");
            assert_eq!(h.cwr, i == 0, "segment {i}");
            assert!(h.ack);
            data.extend_from_slice(&s[54..]);
        }
        assert_eq!(&data[..], &f[54..], "the payload, in order, intact");
    }

    #[test]
    fn refuses_what_is_not_tcp4_or_cut_short() {
        let f = partial(100, "A");
        let mut out = Vec::new();
        assert_eq!(
            segment_tcp4(&f[..40], 1448, &mut out),
            Err(WireError::Truncated)
        );
        assert_eq!(segment_tcp4(&f, 0, &mut out), Err(WireError::Malformed));
        let mut u = f.clone();
        u[23] = 17;
        assert_eq!(segment_tcp4(&u, 1448, &mut out), Err(WireError::Malformed));
        assert!(out.is_empty());
        let mut g = f.clone();
        assert!(complete_partial(&mut g, 34, 4000).is_err());
    }
}
