//! What the differential test compares: each output frame reduced to the
//! fields that matter ([`Pkt`]), and the field-by-field comparison of the
//! outputs eipsim and Linux made for one input frame ([`compare`]).

use eipsim::engine::Link;
use etherparse::{Ipv4Header, Ipv4Slice, LaxSlicedPacket, SlicedPacket, TransportSlice};

/// One output frame, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkt {
    /// The port it left on.
    pub port: Link,
    /// `ipv4`, `arp` or `other` (the EtherType).
    pub kind: String,
    /// The compared fields, by name, in a fixed order.
    pub fields: Vec<(&'static str, String)>,
}

/// The fields of one output frame.
pub fn summarize(port: Link, f: &[u8]) -> Pkt {
    let mut fields = Vec::new();
    let kind = match f.get(12..14) {
        Some([8, 6]) if f.len() >= 42 => {
            let ip = |o: usize| std::net::Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
            let op = if f[21] == 2 { "reply" } else { "request" };
            fields.push(("arp", format!("{op} {} is asked by {}", ip(28), ip(38))));
            "arp".to_string()
        }
        Some([8, 0]) => {
            ipv4_fields(&mut fields, f);
            "ipv4".to_string()
        }
        t => format!("other {t:02x?}"),
    };
    Pkt { port, kind, fields }
}

fn ipv4_fields(out: &mut Vec<(&'static str, String)>, f: &[u8]) {
    let Ok(ip) = Ipv4Slice::from_slice(&f[14..]) else {
        out.push(("checksum", "IPv4 does not parse".into()));
        return;
    };
    let h = ip.header().to_header();
    out.push(("src", std::net::Ipv4Addr::from(h.source).to_string()));
    out.push(("dst", std::net::Ipv4Addr::from(h.destination).to_string()));
    out.push(("proto", h.protocol.0.to_string()));
    out.push(("ttl", h.time_to_live.to_string()));
    let frag = ip.is_payload_fragmented();
    if frag {
        out.push((
            "frag",
            format!(
                "offset {} mf {} len {}",
                h.fragment_offset.byte_offset(),
                h.more_fragments,
                h.total_len
            ),
        ));
    }
    let mut ok = h.header_checksum == h.calc_header_checksum();
    if !frag {
        let p = SlicedPacket::from_ethernet(f);
        match p.as_ref().map(|p| &p.transport) {
            Ok(Some(t)) => {
                ok &= l4_ok(&h, t);
                l4_fields(out, t, &mut ok);
            }
            _ => ok = false,
        }
    } else if h.fragment_offset.value() == 0 && ip.payload().payload.len() >= 4 {
        let p = ip.payload().payload;
        if matches!(h.protocol.0, 6 | 17) {
            out.push(("sport", u16::from_be_bytes([p[0], p[1]]).to_string()));
            out.push(("dport", u16::from_be_bytes([p[2], p[3]]).to_string()));
        }
    }
    out.push(("checksum", if ok { "valid" } else { "INVALID" }.into()));
}

/// Whether the transport checksum verifies (a UDP checksum of 0 is none).
fn l4_ok(h: &Ipv4Header, t: &TransportSlice) -> bool {
    match t {
        TransportSlice::Tcp(t) => {
            t.to_header().calc_checksum_ipv4(h, t.payload()).ok() == Some(t.checksum())
        }
        TransportSlice::Udp(u) => {
            u.checksum() == 0
                || u.to_header().calc_checksum_ipv4(h, u.payload()).ok() == Some(u.checksum())
        }
        TransportSlice::Icmpv4(i) => {
            i.header().icmp_type.calc_checksum(i.payload()) == i.checksum()
        }
        _ => true,
    }
}

fn l4_fields(out: &mut Vec<(&'static str, String)>, t: &TransportSlice, ok: &mut bool) {
    match t {
        TransportSlice::Tcp(t) => {
            out.push(("sport", t.source_port().to_string()));
            out.push(("dport", t.destination_port().to_string()));
        }
        TransportSlice::Udp(u) => {
            out.push(("sport", u.source_port().to_string()));
            out.push(("dport", u.destination_port().to_string()));
        }
        TransportSlice::Icmpv4(i) => {
            out.push(("icmp", format!("type {} code {}", i.type_u8(), i.code_u8())));
            if matches!(i.type_u8(), 0 | 8) {
                let b = i.bytes5to8();
                out.push(("sport", u16::from_be_bytes([b[0], b[1]]).to_string()));
            }
            if matches!(i.type_u8(), 3 | 11 | 12) {
                out.push(("quote", quote(i.payload(), ok)));
            }
        }
        _ => {}
    }
}

/// The packet an ICMP error quotes: addresses, protocol, ports, TTL;
/// its checksums count toward the frame's `checksum` field.
fn quote(q: &[u8], ok: &mut bool) -> String {
    let Ok((h, rest)) = Ipv4Header::from_slice(q) else {
        *ok = false;
        return "no IPv4 header".into();
    };
    *ok &= h.header_checksum == h.calc_header_checksum();
    let mut s = format!(
        "{} > {} proto {} ttl {}",
        std::net::Ipv4Addr::from(h.source),
        std::net::Ipv4Addr::from(h.destination),
        h.protocol.0,
        h.time_to_live
    );
    if matches!(h.protocol.0, 6 | 17) && rest.len() >= 4 {
        let port = |i: usize| u16::from_be_bytes([rest[i], rest[i + 1]]);
        s += &format!(" ports {} > {}", port(0), port(2));
    }
    if rest.len() + h.header_len() >= usize::from(h.total_len)
        && let Ok(p) = LaxSlicedPacket::from_ip(q)
        && let Some(t) = &p.transport
    {
        *ok &= l4_ok(&h, t);
    }
    s
}

/// One difference: for the input frame, the field, eipsim's and Linux's
/// values.
#[derive(Debug, Clone)]
pub struct Diff {
    pub field: String,
    pub eipsim: String,
    pub linux: String,
}

fn show(v: &[Pkt]) -> String {
    if v.is_empty() {
        return "nothing".into();
    }
    v.iter()
        .map(|p| format!("{} on {}", p.kind, p.port))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares what eipsim and Linux sent for one input frame: first whether
/// anything was sent (`verdict`), then the ports (`out_port`), then per
/// port the number of frames (`count`), then frame by frame each field.
pub fn compare(mut e: Vec<Pkt>, mut k: Vec<Pkt>) -> Vec<Diff> {
    let d = |field: &str, eipsim: String, linux: String| Diff {
        field: field.into(),
        eipsim,
        linux,
    };
    if e.is_empty() != k.is_empty() {
        return vec![d("verdict", show(&e), show(&k))];
    }
    e.sort_by_key(|p| p.port.index());
    k.sort_by_key(|p| p.port.index());
    let ports = |v: &[Pkt]| {
        let mut p: Vec<Link> = v.iter().map(|p| p.port).collect();
        p.dedup();
        p
    };
    if ports(&e) != ports(&k) {
        return vec![d("out_port", show(&e), show(&k))];
    }
    let mut out = Vec::new();
    for port in ports(&e) {
        let pe: Vec<&Pkt> = e.iter().filter(|p| p.port == port).collect();
        let pk: Vec<&Pkt> = k.iter().filter(|p| p.port == port).collect();
        if pe.len() != pk.len() {
            out.push(d("count", pe.len().to_string(), pk.len().to_string()));
        }
        for (a, b) in pe.iter().zip(&pk) {
            if a.kind != b.kind {
                out.push(d("kind", a.kind.clone(), b.kind.clone()));
                continue;
            }
            let names = a.fields.iter().chain(&b.fields).map(|(n, _)| *n);
            let mut seen: Vec<&str> = Vec::new();
            for n in names {
                if seen.contains(&n) {
                    continue;
                }
                seen.push(n);
                let get = |p: &Pkt| {
                    p.fields
                        .iter()
                        .find(|(m, _)| *m == n)
                        .map_or("-".to_string(), |(_, v)| v.clone())
                };
                let (x, y) = (get(a), get(b));
                if x != y && !out.iter().any(|o: &Diff| o.field == n) {
                    out.push(d(n, x, y));
                }
            }
        }
    }
    out
}
