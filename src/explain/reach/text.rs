//! `eipsim reach` as text, in the style of `nft list`: a block per
//! address, a line per (protocol, ports, peers) with the verdict and,
//! after `#`, what decided it.

use super::{Hop, Line, PortSpan, ProtoClass, Reach, Span, merge_spans};
use crate::engine::Link;
use std::fmt::Write as _;

fn spans_text(v: &[Span]) -> String {
    v.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn ports_text(v: &[PortSpan]) -> String {
    v.iter()
        .map(|p| {
            if p[0] == p[1] {
                p[0].to_string()
            } else {
                format!("{}-{}", p[0], p[1])
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One line as text: `tcp dport 22 saddr 198.51.100.0/24  accept  # by`.
fn line_text(l: &Line, addr: &str, whole: &[Span], hops: &[Hop], out: &mut String) {
    let mut s = String::from("    ");
    s.push_str(l.protocol.map_or("all", ProtoClass::name));
    if let Some(p) = &l.ports {
        let _ = write!(s, " dport {}", ports_text(p));
    }
    if l.peers != whole {
        let _ = write!(s, " {addr} {}", spans_text(&l.peers));
    }
    if l.outcomes.iter().all(|o| *o == l.outcomes[0]) {
        let o = &l.outcomes[0];
        let _ = write!(s, "  {}", o.short());
        if !o.alg_sports.is_empty() {
            let _ = write!(
                s,
                " (sport {}: drop alg_unsupported)",
                sports_text(&o.alg_sports)
            );
        }
        let _ = write!(s, "  # {}", o.by);
        let _ = writeln!(out, "{s}");
        return;
    }
    let _ = writeln!(out, "{s}");
    for (h, o) in hops.iter().zip(&l.outcomes) {
        let _ = write!(out, "        via {}: {}", h.eni, o.short());
        if !o.alg_sports.is_empty() {
            let _ = write!(
                out,
                " (sport {}: drop alg_unsupported)",
                sports_text(&o.alg_sports)
            );
        }
        let _ = writeln!(out, "  # {}", o.by);
    }
}

/// The peers the protocol lines of a section cover (all but the
/// addresses dropped for every protocol): what a line need not name.
fn filtered(lines: &[Line]) -> Vec<Span> {
    let Some(first) = lines.iter().find_map(|l| l.protocol) else {
        // Only lines for every protocol: one needs no addresses.
        return match lines {
            [only] => only.peers.clone(),
            _ => Vec::new(),
        };
    };
    let mut v: Vec<(u32, u32)> = lines
        .iter()
        .filter(|l| l.protocol == Some(first))
        .flat_map(|l| {
            l.peers
                .iter()
                .map(|s| (s.first.to_bits(), s.last.to_bits()))
        })
        .collect();
    v.sort_unstable();
    merge_spans(&v)
}

fn sports_text(v: &[u16]) -> String {
    v.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

impl Reach {
    /// The answer as text, in the style of `nft list`: a block per
    /// address, a line per (protocol, ports, peers) with the verdict and,
    /// after `#`, what decided it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if !self.security_groups {
            let _ = writeln!(
                out,
                "# no [[security_group]] in the file: nothing is filtered by security groups"
            );
        }
        for i in &self.inbound {
            let _ = write!(out, "inbound to {} from {}", i.to, i.from.name());
            match (&i.eni, i.mode, i.delivered_to) {
                (Some(eni), Some(mode), Some(d)) if d != i.to => {
                    let _ = write!(out, ": EIP ({mode}) of {eni}, delivered to {d}");
                }
                (Some(eni), Some(mode), _) => {
                    let _ = write!(out, ": EIP ({mode}) of {eni}");
                }
                (Some(eni), None, _) => {
                    let _ = write!(out, ": {eni}");
                }
                _ => {}
            }
            let _ = writeln!(out, " (sources {})", spans_text(&i.sources));
            let whole = filtered(&i.lines);
            for l in &i.lines {
                line_text(l, "saddr", &whole, &[], &mut out);
            }
        }
        for o in &self.outbound {
            let _ = writeln!(out, "outbound from {} ({})", o.from, o.eni);
            for p in &o.paths {
                let _ = write!(out, "  to {}", spans_text(&p.to));
                match &p.route {
                    Some(r) => {
                        let _ = writeln!(out, "\n    route {r}");
                    }
                    None => {
                        let _ = writeln!(out);
                    }
                }
                for h in &p.hops {
                    let _ = write!(out, "    via {} as {}", h.eni, h.source);
                    match (h.out, h.public, h.mode) {
                        (Some(Link::Internet), Some(a), Some(m)) => {
                            let _ = write!(out, " -> internet as {a} (EIP, {m})");
                        }
                        (Some(l), _, _) => {
                            let _ = write!(out, " -> {}", l.name());
                        }
                        _ => {}
                    }
                    if let Some(e) = h.hairpin {
                        let _ = write!(out, ", back in to own EIP {e} (hairpin)");
                    }
                    let _ = writeln!(out);
                }
                let whole = filtered(&p.lines);
                for l in &p.lines {
                    line_text(l, "daddr", &whole, &p.hops, &mut out);
                }
            }
        }
        out
    }
}
