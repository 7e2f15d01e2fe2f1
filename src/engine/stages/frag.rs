//! Stage `frag`: shallow virtual reassembly. Only a first fragment
//! carries the ports, so only it goes through the flow table, the FIB and
//! the ALG; its decision is remembered per datagram (RFC 791's reassembly
//! key) and the later fragments follow it without being reassembled. A
//! later fragment that arrives before its first is held until the first
//! comes, or dropped as orphaned after the reassembly timeout.

use super::bandwidth;
use super::ip4_input::Meta;
use super::mtu;
use super::rewrite::{set_addrs, set_link};
use super::session::Xlate;
use crate::config::AlgProtocol;
use crate::engine::frag::{self as table, DatagramKey, FragDecision, Held};
use crate::engine::trace::{Event, Off, Tracer, trace};
use crate::engine::{Direction, DropReason, Engine, Link, Released, Verdict};
use crate::wire::ethernet;
use crate::wire::ipv4;

const ETH: usize = ethernet::HEADER_LEN;

/// The reassembly key of a packet received on `port`.
pub(crate) fn datagram(port: Link, m: &Meta) -> DatagramKey {
    DatagramKey {
        port,
        src: m.src(),
        dst: m.dst(),
        proto: m.proto,
        ident: m.ident,
    }
}

impl Engine {
    /// A later fragment: follows its first fragment's decision, or waits
    /// for it.
    pub(crate) fn later_fragment<T: Tracer>(
        &mut self,
        t: &mut T,
        port: Link,
        frame: &mut [u8],
        m: &Meta,
        tag: u64,
    ) -> Verdict {
        let key = datagram(port, m);
        trace!(t, Event::LaterFragment { ident: m.ident });
        match self.frags.decision(&key, self.now) {
            Some(d) => {
                trace!(
                    t,
                    Event::FirstDecided {
                        in_port: port,
                        verdict: d.verdict
                    }
                );
                let v = self.follow_first(t, frame, &d, &key);
                if let Verdict::Forwarded { port: out, .. } = v {
                    trace!(
                        t,
                        Event::RewriteLater {
                            ttl: m.ttl,
                            before: (m.src(), m.dst()),
                            after: (d.src, d.dst),
                            out,
                        }
                    );
                }
                mtu::fit(t, frame, v, &self.mtu, &mut self.tx, &mut self.counters)
            }
            None if self.frags.held.len() < table::MAX_HELD => {
                trace!(t, Event::FragmentHeld);
                self.frags.held.push(Held {
                    key,
                    tag,
                    frame: frame.to_vec(),
                    since: self.now,
                });
                Verdict::Held
            }
            None => Verdict::drop(DropReason::FragmentOrphaned),
        }
    }

    /// After a first fragment is decided: remember the decision for the
    /// later ones (not how the first happened to fit the MTU: they are
    /// fitted on their own).
    pub(crate) fn first_fragment(
        &mut self,
        port: Link,
        frame: &[u8],
        m: &Meta,
        decided: &Result<Xlate, Verdict>,
        verdict: Verdict,
    ) {
        let alg = match (decided, verdict.reason()) {
            (Ok(x), _) => x.alg,
            (Err(_), Some(DropReason::AlgUnsupported)) => {
                self.alg.recognise(m.proto, m.sport, m.dport)
            }
            _ => None,
        };
        let decision = match verdict {
            Verdict::Fragmented { port, eni, eip, .. } => Verdict::Forwarded { port, eni, eip },
            v => v,
        };
        self.remember_first(datagram(port, m), frame, decided, decision, alg);
    }

    /// Keeps the first fragment's decision for the later ones, and
    /// releases those that came early.
    fn remember_first(
        &mut self,
        key: DatagramKey,
        frame: &[u8],
        decided: &Result<Xlate, Verdict>,
        verdict: Verdict,
        alg: Option<AlgProtocol>,
    ) {
        let (src, dst) = match ipv4::Packet::new_checked(&frame[ETH..]) {
            Ok(ip) => (ip.src(), ip.dst()),
            Err(_) => (key.src, key.dst),
        };
        let (eni_src, eni_dst) = match decided {
            Ok(x) if x.dir.is_outbound() => (x.eni_addr, key.dst),
            Ok(x) => (key.src, x.eni_addr),
            Err(_) => (key.src, key.dst),
        };
        let flow = match decided {
            Ok(x) => x.flow.map(|id| (id, self.flows.get(id).inside_key())),
            Err(_) => None,
        };
        let d = FragDecision {
            verdict,
            src,
            dst,
            eni_src,
            eni_dst,
            since: self.now,
            flow,
            alg,
            dir: Direction::of(key.port),
            coverage: {
                let mut c = table::Coverage::default();
                if let Ok(ip) = ipv4::Packet::new_checked(&frame[ETH..]) {
                    let len = ip.total_len().saturating_sub(ip.header_len()) as u32;
                    c.add(0, len, false);
                }
                c
            },
        };
        self.frags.record(key, d);
        let held = self.frags.take_held(&key);
        if held.is_empty() {
            return;
        }
        // Releasing reuses the ENI view buffer: keep the first's own view.
        let (first_view, first_eni) = (std::mem::take(&mut self.view.buf), self.view.eni);
        for mut h in held {
            self.counters.frames.held -= 1;
            self.view.eni = None;
            let v = self.follow_first(&mut Off, &mut h.frame, &d, &key);
            let v = mtu::fit(
                &mut Off,
                &h.frame,
                v,
                &self.mtu,
                &mut self.tx,
                &mut self.counters,
            );
            self.counters.account(key.port, h.frame.len(), &v);
            let eni_view = self.view.eni.map(|e| (e, self.view.buf.clone()));
            self.released.push_back(Released {
                tag: h.tag,
                in_port: key.port,
                frame: h.frame,
                verdict: v,
                eni_view,
            });
        }
        self.view.buf = first_view;
        self.view.eni = first_eni;
    }

    /// Applies the first fragment's decision to a later fragment (and
    /// notes the bytes it brings, see [`table::Coverage`]).
    fn follow_first<T: Tracer>(
        &mut self,
        t: &mut T,
        frame: &mut [u8],
        d: &FragDecision,
        key: &DatagramKey,
    ) -> Verdict {
        if let Ok(ip) = ipv4::Packet::new_checked(&frame[ETH..]) {
            let start = ip.frag_offset() as u32;
            let len = ip.total_len().saturating_sub(ip.header_len()) as u32;
            self.frags
                .arrived(key, start, start + len, !ip.more_frags());
        }
        if let Some((id, key)) = d.flow {
            // The slot may have been reused since: check it is the same flow.
            if self.flows.is_live(id) && self.flows.get(id).inside_key() == key {
                let len = ipv4::Packet::new_checked(&frame[ETH..]).map_or(0, |ip| ip.total_len());
                self.flows.touch(id, self.now, d.dir, len, None);
            }
        }
        match (d.verdict, d.alg) {
            (Verdict::Forwarded { .. }, Some(p)) => self.counters.alg[p as usize].forwarded += 1,
            (
                Verdict::Dropped {
                    reason: DropReason::AlgUnsupported,
                    ..
                },
                Some(p),
            ) => self.counters.alg[p as usize].dropped += 1,
            _ => {}
        }
        // Each fragment's bytes count against the EIP's bandwidth (its
        // first's decision does not cover them).
        if let (
            true,
            Verdict::Forwarded {
                port: out,
                eni,
                eip: Some(eip),
            },
        ) = (self.policers.on(), d.verdict)
        {
            let dir = match (key.port, out) {
                (Link::Instance, Link::Internet) => Some(Direction::Outbound),
                (Link::Internet, _) => Some(Direction::Inbound),
                _ => None,
            };
            if let Some(dir) = dir {
                let bytes = ipv4::Packet::new_checked(&frame[ETH..]).map_or(0, |ip| ip.total_len());
                let now = self.now;
                if let Err(v) =
                    bandwidth::police_eip(t, &self.policers, eip, eni, dir, now, bytes as u64)
                {
                    return v;
                }
            }
        }
        if let Verdict::Forwarded { port, eni, .. } = d.verdict {
            set_link(frame, port, &self.peers);
            if let (true, Some(e)) = (self.view.on, eni) {
                set_addrs(frame, d.eni_src, d.eni_dst);
                self.view.snapshot(e, frame);
            }
            set_addrs(frame, d.src, d.dst);
        }
        d.verdict
    }

    /// Drops a held fragment whose first never came.
    pub(crate) fn release_orphan(&mut self, h: Held) {
        self.counters.frames.held -= 1;
        let v = Verdict::drop(DropReason::FragmentOrphaned);
        self.counters.account(h.key.port, h.frame.len(), &v);
        self.released.push_back(Released {
            tag: h.tag,
            in_port: h.key.port,
            frame: h.frame,
            verdict: v,
            eni_view: None,
        });
    }
}
