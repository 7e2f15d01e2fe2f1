//! Steering: the kernel puts each frame on the queue of the worker that
//! owns its flow, so that frames are handed between workers only in rare
//! cases (the pieces of a fragmented TCP segment; a kernel that refuses
//! the program).
//!
//! The owner is [`owner`]: a hash of the frame's *remote* address (the
//! destination of a frame from the instance, the source of one from
//! outside, the quoted packet's for an ICMP error, the sender's for ARP)
//! and, for TCP, of its ports, none of which NAT changes, so both
//! directions of a flow and the ICMP errors about it have one owner. The
//! pieces of a fragmented TCP segment go by address, and their worker
//! hands them on (docs/live.md, "TCP fragments").
//!
//! The same function is compiled here into a small eBPF socket filter
//! program and given to the kernel: as a TAP device's steering program
//! (TUNSETSTEERINGEBPF, Linux 4.16) and as an AF_PACKET fanout program
//! (PACKET_FANOUT_EBPF, Linux 4.12); either returns the queue index for
//! each frame. Loads go through the link-layer base (SKF_LL_OFF), which
//! both hooks can read. Where the kernel refuses it, live mode falls
//! back to handing frames to their owner (see docs/live.md).

use crate::engine::Link;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(MIX);
    z ^ (z >> 33)
}

const MIX: u64 = 0xff51_afd7_ed55_8ccd;

/// The worker (0..`workers`) that owns a frame received on `port`.
///
/// A hash of the remote address, and for TCP also of the two ports
/// (folded as `sport ^ dport`, the same both ways; NAT keeps ports), so
/// that streams to one host spread over the workers. TCP ports count only
/// where every piece of the flow shows them: a whole datagram, or the
/// packet an ICMP error quotes if that was a whole datagram or a first
/// fragment. A TCP fragment goes to its remote address's worker, which
/// hands it on to its flow's ([`flow_owner`] of the first fragment's
/// ports; `live` keeps the table). A frame too short for a field the
/// choice reads goes to 0, as the kernel program's out-of-bounds load
/// does.
pub fn owner(port: Link, f: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    owner_of(port, f, workers).unwrap_or(0)
}

/// The worker owning a flow with remote address `remote` and, for TCP,
/// the folded ports `sport ^ dport` (0 for other protocols).
pub fn flow_owner(remote: u32, ports: u16, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    (mix(u64::from(remote) | u64::from(ports) << 32) % workers as u64) as usize
}

/// An IPv4 datagram's identity for reassembly (RFC 791): source,
/// destination, identification (the protocol is TCP here).
pub type DatagramKey = (u32, u32, u16);

fn owner_of(port: Link, f: &[u8], workers: usize) -> Option<usize> {
    let u16_at = |o: usize| f.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        f.get(o..o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let fold = |o: usize| u32_at(o).map(|w| ((w >> 16) ^ (w & 0xffff)) as u16);
    let (remote, ports) = match u16_at(12)? {
        0x0800 => {
            const IP: usize = 14;
            let hl = usize::from(*f.get(IP)? & 0x0f) * 4;
            let frag = u16_at(IP + 6)?;
            // Later fragments carry payload where the ports or the ICMP
            // type would be.
            let first = frag & 0x1fff == 0;
            let proto = if first { *f.get(IP + 9)? } else { 0 };
            let (plain, quoted) = match port {
                Link::Instance => (IP + 16, IP + hl + 8 + 12),
                _ => (IP + 12, IP + hl + 8 + 16),
            };
            match proto {
                6 if frag & 0x2000 == 0 => (u32_at(plain)?, fold(IP + hl)?),
                1 if matches!(*f.get(IP + hl)?, 3 | 11 | 12) => {
                    // The quoted packet: it went the other way.
                    let q = IP + hl + 8;
                    let ports = if *f.get(q + 9)? == 6 && u16_at(q + 6)? & 0x1fff == 0 {
                        fold(q + usize::from(*f.get(q)? & 0x0f) * 4)?
                    } else {
                        0
                    };
                    (u32_at(quoted)?, ports)
                }
                _ => (u32_at(plain)?, 0),
            }
        }
        0x0806 => (u32_at(28)?, 0),
        _ => return None,
    };
    Some(flow_owner(remote, ports, workers))
}

/// One piece of a fragmented IPv4 TCP datagram, as steering sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFragment {
    /// The datagram it belongs to.
    pub key: DatagramKey,
    /// For a first fragment: its remote address and folded ports, as
    /// [`flow_owner`] takes them.
    pub first: Option<(u32, u16)>,
    /// The bytes of the datagram's payload it carries: `start..end`.
    pub start: u32,
    /// See `start`.
    pub end: u32,
    /// MF clear: the datagram's last piece (`end` is its length).
    pub last: bool,
}

/// The piece of a fragmented TCP datagram `f` is (received on `port`);
/// `None` for anything but an IPv4 TCP fragment with a sane header.
pub fn tcp_fragment(port: Link, f: &[u8]) -> Option<TcpFragment> {
    const IP: usize = 14;
    if f.get(12..14)? != [0x08, 0x00] || *f.get(IP + 9)? != 6 {
        return None;
    }
    let frag = u16::from_be_bytes([*f.get(IP + 6)?, *f.get(IP + 7)?]);
    if frag & 0x3fff == 0 {
        return None; // a whole datagram
    }
    let u32_at = |o: usize| {
        f.get(o..o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (src, dst) = (u32_at(IP + 12)?, u32_at(IP + 16)?);
    let id = u16::from_be_bytes([*f.get(IP + 4)?, *f.get(IP + 5)?]);
    let hl = usize::from(*f.get(IP)? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*f.get(IP + 2)?, *f.get(IP + 3)?]));
    let len = total.checked_sub(hl)? as u32;
    let start = u32::from(frag & 0x1fff) * 8;
    let first = if start == 0 {
        let w = u32_at(IP + hl)?;
        let remote = if port == Link::Instance { dst } else { src };
        Some((remote, ((w >> 16) ^ (w & 0xffff)) as u16))
    } else {
        None
    };
    Some(TcpFragment {
        key: (src, dst, id),
        first,
        start,
        end: start + len,
        last: frag & 0x2000 == 0,
    })
}

/// Which worker each fragmented TCP datagram's flow has, for the worker
/// that reads every piece of it (its remote address's): learnt from the
/// first fragment, kept until every byte has passed or for
/// [`FRAGMENT_TIMEOUT_NS`] (RFC 791's reassembly timer, as the engine's
/// own table), at most [`MAX_DATAGRAMS`] (the oldest goes first). Later
/// pieces that come before their first wait here (at most [`MAX_HELD`],
/// for the same timeout); sized once, nothing allocated per piece.
pub struct FragmentOwners<T> {
    owners: rustc_hash::FxHashMap<DatagramKey, Owner>,
    waiting: Vec<(TcpFragment, u64, T)>,
    workers: usize,
    local: usize,
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    to: usize,
    since: u64,
    /// Payload bytes seen, and the datagram's length once its last piece
    /// came.
    seen: u32,
    total: Option<u32>,
}

use crate::engine::frag::{FRAGMENT_TIMEOUT_NS, MAX_DATAGRAMS, MAX_HELD};

impl<T> FragmentOwners<T> {
    /// The table of worker `local` of `workers`.
    pub fn new(workers: usize, local: usize) -> Self {
        FragmentOwners {
            owners: rustc_hash::FxHashMap::with_capacity_and_hasher(
                MAX_DATAGRAMS + 1,
                Default::default(),
            ),
            waiting: Vec::with_capacity(MAX_HELD),
            workers,
            local,
        }
    }

    /// Routes piece `frag` of `item`, arrived at `now` (ns): `send(worker,
    /// item)` for it and for every waiting piece it releases (the first
    /// piece before those that waited for it), or it waits. A piece with
    /// nowhere to wait goes to this worker (its engine holds and counts
    /// it as any orphan).
    pub fn route(&mut self, frag: TcpFragment, now: u64, item: T, send: &mut impl FnMut(usize, T)) {
        if let Some((remote, ports)) = frag.first {
            let to = flow_owner(remote, ports, self.workers);
            self.learn(frag.key, to, now);
            send(to, item);
            self.account(&frag);
            let mut i = 0;
            while i < self.waiting.len() {
                if self.waiting[i].0.key == frag.key {
                    let (g, _, item) = self.waiting.swap_remove(i);
                    send(to, item);
                    self.account(&g);
                } else {
                    i += 1;
                }
            }
            return;
        }
        match self.owners.get(&frag.key) {
            Some(o) if now.saturating_sub(o.since) <= FRAGMENT_TIMEOUT_NS => {
                send(o.to, item);
                self.account(&frag);
            }
            _ => {
                // Unknown, or a datagram of long ago with the same ID.
                self.owners.remove(&frag.key);
                if self.waiting.len() < MAX_HELD {
                    self.waiting.push((frag, now, item));
                } else {
                    send(self.local, item);
                }
            }
        }
    }

    /// Sends pieces that waited longer than the reassembly timeout to
    /// this worker (its engine holds and counts them as orphans).
    pub fn expire(&mut self, now: u64, send: &mut impl FnMut(usize, T)) {
        let mut i = 0;
        while i < self.waiting.len() {
            if now.saturating_sub(self.waiting[i].1) > FRAGMENT_TIMEOUT_NS {
                let (_, _, item) = self.waiting.swap_remove(i);
                send(self.local, item);
            } else {
                i += 1;
            }
        }
    }

    /// Pieces still waiting (to end a run with).
    pub fn take_waiting(&mut self) -> impl Iterator<Item = T> + '_ {
        self.waiting.drain(..).map(|(_, _, item)| item)
    }

    /// Whether pieces are waiting.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn learn(&mut self, key: DatagramKey, to: usize, now: u64) {
        if self.owners.len() >= MAX_DATAGRAMS && !self.owners.contains_key(&key) {
            self.owners
                .retain(|_, o| now.saturating_sub(o.since) <= FRAGMENT_TIMEOUT_NS);
            if self.owners.len() >= MAX_DATAGRAMS
                && let Some(oldest) = self
                    .owners
                    .iter()
                    .min_by_key(|(_, o)| o.since)
                    .map(|(k, _)| *k)
            {
                self.owners.remove(&oldest);
            }
        }
        // A first fragment starts its datagram anew (an ID used again).
        self.owners.insert(
            key,
            Owner {
                to,
                since: now,
                seen: 0,
                total: None,
            },
        );
    }

    /// Counts a piece's bytes; a datagram all of whose bytes have passed
    /// is forgotten, so a later one with the same ID starts afresh.
    fn account(&mut self, frag: &TcpFragment) {
        if let Some(o) = self.owners.get_mut(&frag.key) {
            o.seen = o.seen.saturating_add(frag.end.saturating_sub(frag.start));
            if frag.last {
                o.total = Some(frag.end);
            }
            if o.total.is_some_and(|t| o.seen >= t) {
                self.owners.remove(&frag.key);
            }
        }
    }
}

/// One eBPF instruction (linux/bpf.h `struct bpf_insn`).
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes (class | size/op | mode/source).
const LDABS_B: u8 = 0x30;
const LDABS_H: u8 = 0x28;
const LDABS_W: u8 = 0x20;
const LDIND_B: u8 = 0x50;
const LDIND_H: u8 = 0x48;
const LDIND_W: u8 = 0x40;
const LD_IMM64: u8 = 0x18;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const AND64_K: u8 = 0x57;
const LSH64_K: u8 = 0x67;
const RSH64_K: u8 = 0x77;
const XOR64_X: u8 = 0xaf;
const OR64_X: u8 = 0x4f;
const ADD64_X: u8 = 0x0f;
const MUL64_X: u8 = 0x2f;
const MOD64_K: u8 = 0x97;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;
/// Loads at this base read from the link-layer (Ethernet) header on.
const SKF_LL_OFF: i32 = -0x20_0000;

/// The program computing [`owner`] for frames received on `port`:
/// returns the owner's index, which the kernel takes modulo the queues.
/// r7 holds the IPv4 header length, r8 the folded TCP ports shifted
/// into the hash's upper half (0 if none), r9 the flags and fragment
/// offset (LD_ABS and LD_IND clobber r1-r5).
fn program(port: Link, workers: usize) -> Vec<Insn> {
    let ll = |o: i32| SKF_LL_OFF + o;
    let (plain, quoted) = match port {
        Link::Instance => (14 + 16, 14 + 8 + 12),
        _ => (14 + 12, 14 + 8 + 16),
    };
    // Jump targets by index, patched below: (instruction, label).
    let mut p: Vec<Insn> = Vec::new();
    let mut jumps: Vec<(usize, &str)> = Vec::new();
    let mut labels: Vec<(&str, usize)> = Vec::new();
    let jump = |p: &mut Vec<Insn>, j: &mut Vec<(usize, &'static str)>, code, imm, to| {
        j.push((p.len(), to));
        p.push(insn(code, 0, 0, 0, imm));
    };
    p.push(insn(MOV64_X, 6, 1, 0, 0)); // r6 = ctx (LD_ABS needs it there)
    p.push(insn(MOV64_K, 8, 0, 0, 0)); // r8 = no ports
    p.push(insn(LDABS_H, 0, 0, 0, ll(12))); // EtherType
    jump(&mut p, &mut jumps, JEQ_K, 0x0806, "arp");
    jump(&mut p, &mut jumps, JNE_K, 0x0800, "zero");
    p.push(insn(LDABS_B, 0, 0, 0, ll(14)));
    p.push(insn(AND64_K, 0, 0, 0, 0x0f));
    p.push(insn(LSH64_K, 0, 0, 0, 2));
    p.push(insn(MOV64_X, 7, 0, 0, 0)); // r7 = IPv4 header length
    p.push(insn(LDABS_H, 0, 0, 0, ll(20)));
    p.push(insn(MOV64_X, 9, 0, 0, 0)); // r9 = flags and offset
    p.push(insn(AND64_K, 0, 0, 0, 0x1fff));
    jump(&mut p, &mut jumps, JNE_K, 0, "plain"); // a later fragment
    p.push(insn(LDABS_B, 0, 0, 0, ll(23)));
    jump(&mut p, &mut jumps, JEQ_K, 6, "tcp");
    jump(&mut p, &mut jumps, JNE_K, 1, "plain"); // not ICMP
    p.push(insn(LDIND_B, 0, 7, 0, ll(14)));
    jump(&mut p, &mut jumps, JEQ_K, 3, "error");
    jump(&mut p, &mut jumps, JEQ_K, 11, "error");
    jump(&mut p, &mut jumps, JEQ_K, 12, "error");
    jump(&mut p, &mut jumps, JA, 0, "plain");
    labels.push(("tcp", p.len()));
    p.push(insn(MOV64_X, 0, 9, 0, 0));
    p.push(insn(AND64_K, 0, 0, 0, 0x2000));
    jump(&mut p, &mut jumps, JNE_K, 0, "plain"); // a first fragment
    p.push(insn(LDIND_W, 0, 7, 0, ll(14))); // sport << 16 | dport
    p.push(insn(MOV64_K, 9, 0, 0, 0)); // r9 = 0: fold, then the address
    jump(&mut p, &mut jumps, JA, 0, "fold");
    labels.push(("error", p.len()));
    p.push(insn(LDIND_B, 0, 7, 0, ll(14 + 8 + 9))); // quoted protocol
    jump(&mut p, &mut jumps, JNE_K, 6, "quoted");
    p.push(insn(LDIND_H, 0, 7, 0, ll(14 + 8 + 6))); // quoted offset
    p.push(insn(AND64_K, 0, 0, 0, 0x1fff));
    jump(&mut p, &mut jumps, JNE_K, 0, "quoted");
    p.push(insn(LDIND_B, 0, 7, 0, ll(14 + 8))); // quoted header length
    p.push(insn(AND64_K, 0, 0, 0, 0x0f));
    p.push(insn(LSH64_K, 0, 0, 0, 2));
    p.push(insn(ADD64_X, 0, 7, 0, 0));
    p.push(insn(MOV64_X, 2, 0, 0, 0));
    p.push(insn(LDIND_W, 0, 2, 0, ll(14 + 8))); // quoted ports
    p.push(insn(MOV64_K, 9, 0, 0, 1)); // r9 = 1: fold, then the quote
    labels.push(("fold", p.len()));
    p.push(insn(MOV64_X, 1, 0, 0, 0));
    p.push(insn(RSH64_K, 1, 0, 0, 16));
    p.push(insn(AND64_K, 0, 0, 0, 0xffff));
    p.push(insn(XOR64_X, 0, 1, 0, 0));
    p.push(insn(LSH64_K, 0, 0, 0, 32));
    p.push(insn(MOV64_X, 8, 0, 0, 0));
    p.push(insn(MOV64_X, 0, 9, 0, 0));
    jump(&mut p, &mut jumps, JEQ_K, 0, "plain");
    labels.push(("quoted", p.len()));
    p.push(insn(LDIND_W, 0, 7, 0, ll(quoted)));
    jump(&mut p, &mut jumps, JA, 0, "hash");
    labels.push(("plain", p.len()));
    p.push(insn(LDABS_W, 0, 0, 0, ll(plain)));
    jump(&mut p, &mut jumps, JA, 0, "hash");
    labels.push(("arp", p.len()));
    p.push(insn(LDABS_W, 0, 0, 0, ll(28)));
    labels.push(("hash", p.len()));
    // LD_ABS/LD_IND zero-extend: the address is in the lower half.
    p.push(insn(OR64_X, 0, 8, 0, 0));
    for step in 0..2 {
        p.push(insn(MOV64_X, 1, 0, 0, 0));
        p.push(insn(RSH64_K, 1, 0, 0, 33));
        p.push(insn(XOR64_X, 0, 1, 0, 0));
        if step == 0 {
            p.push(insn(LD_IMM64, 1, 0, 0, MIX as u32 as i32));
            p.push(insn(0, 0, 0, 0, (MIX >> 32) as u32 as i32));
            p.push(insn(MUL64_X, 0, 1, 0, 0));
        }
    }
    p.push(insn(MOD64_K, 0, 0, 0, workers.max(1) as i32));
    p.push(insn(EXIT, 0, 0, 0, 0));
    labels.push(("zero", p.len()));
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    for (at, to) in jumps {
        let target = labels.iter().find(|(l, _)| *l == to).expect("a label").1;
        p[at].off = (target as isize - at as isize - 1) as i16;
    }
    p
}

/// A loaded steering program.
pub struct Program(OwnedFd);

impl Program {
    /// Loads the program for `port` with `workers` queues.
    pub fn load(port: Link, workers: usize) -> io::Result<Program> {
        let insns = program(port, workers);
        let bytes: Vec<u8> = insns
            .iter()
            .flat_map(|i| {
                let mut b = [0u8; 8];
                b[0] = i.code;
                b[1] = i.regs;
                b[2..4].copy_from_slice(&i.off.to_le_bytes());
                b[4..8].copy_from_slice(&i.imm.to_le_bytes());
                b
            })
            .collect();
        let license = b"GPL\0";
        // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns,
        // license, log_level, log_size, log_buf, ...; the rest zero.
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // SOCKET_FILTER
        attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(bytes.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        // SAFETY: bpf(BPF_PROG_LOAD) reads the attr and the buffers it
        // points to, which live until the call returns.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                5, /* BPF_PROG_LOAD */
                attr.as_ptr(),
                128u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Program(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// Its descriptor, for TUNSETSTEERINGEBPF or PACKET_FANOUT_DATA.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Runs the program on `frame` in the kernel (BPF_PROG_TEST_RUN) and
    /// returns what it returned: for tests that the kernel's choice is
    /// [`owner`]'s.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        // union bpf_attr test: prog_fd, retval, data_size_in,
        // data_size_out, data_in, data_out, repeat, duration.
        let mut attr = [0u8; 80];
        attr[0..4].copy_from_slice(&(self.fd() as u32).to_ne_bytes());
        attr[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        attr[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
        attr[32..36].copy_from_slice(&1u32.to_ne_bytes());
        // SAFETY: bpf(BPF_PROG_TEST_RUN) reads `frame` and writes the
        // return value into attr.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                10, /* BPF_PROG_TEST_RUN */
                attr.as_mut_ptr(),
                80u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(u32::from_ne_bytes([attr[4], attr[5], attr[6], attr[7]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{fragment, icmp_unreachable, ping, tcp, udp};

    #[test]
    fn both_directions_of_a_nat_flow_have_one_owner() {
        for p in 0..200u16 {
            let out = tcp(
                Link::Instance,
                "172.16.0.10",
                "198.51.100.7",
                40000 + p,
                443,
                "S",
                b"",
            );
            let back = tcp(
                Link::Internet,
                "198.51.100.7",
                "203.0.113.10",
                443,
                40000 + p,
                "SA",
                b"",
            );
            assert_eq!(
                owner(Link::Instance, &out, 4),
                owner(Link::Internet, &back, 4)
            );
            // An ICMP error about the translated segment, from a router
            // on the way, quoting its TCP ports.
            let sent = tcp(
                Link::Internet,
                "203.0.113.10",
                "198.51.100.7",
                40000 + p,
                443,
                "S",
                b"",
            );
            let err = icmp_unreachable(Link::Internet, "192.0.2.1", "203.0.113.10", &sent, 28);
            assert_eq!(
                owner(Link::Internet, &err, 4),
                owner(Link::Instance, &out, 4)
            );
            // The same for UDP, whose owner is its remote address's.
            let out = udp(
                Link::Instance,
                "172.16.0.10",
                "198.51.100.7",
                40000 + p,
                53,
                b"",
            );
            let sent = udp(
                Link::Internet,
                "203.0.113.10",
                "198.51.100.7",
                40000 + p,
                53,
                b"",
            );
            let err = icmp_unreachable(Link::Internet, "192.0.2.1", "203.0.113.10", &sent, 28);
            assert_eq!(
                owner(Link::Internet, &err, 4),
                owner(Link::Instance, &out, 4)
            );
        }
        let streams: std::collections::BTreeSet<usize> = (0..64u16)
            .map(|p| {
                let seg = tcp(
                    Link::Instance,
                    "172.16.0.10",
                    "198.51.100.7",
                    50000 + p,
                    5201,
                    "S",
                    b"",
                );
                owner(Link::Instance, &seg, 4)
            })
            .collect();
        assert_eq!(
            streams.len(),
            4,
            "TCP streams to one host spread over the workers"
        );
        let datagrams: std::collections::BTreeSet<usize> = (0..64u16)
            .map(|p| {
                let d = udp(
                    Link::Instance,
                    "172.16.0.10",
                    "198.51.100.7",
                    50000 + p,
                    5201,
                    b"",
                );
                owner(Link::Instance, &d, 4)
            })
            .collect();
        assert_eq!(datagrams.len(), 1, "UDP to one host: its address's worker");
        let spread: std::collections::BTreeSet<usize> = (0..64u8)
            .map(|i| {
                owner(
                    Link::Internet,
                    &udp(
                        Link::Internet,
                        &format!("198.51.100.{i}"),
                        "203.0.113.10",
                        1,
                        2,
                        b"",
                    ),
                    4,
                )
            })
            .collect();
        assert_eq!(spread.len(), 4, "remote hosts spread over the workers");
    }

    #[test]
    fn later_icmp_fragments_follow_the_first() {
        // A big ping whose payload starts with 0x03, like an ICMP error's type.
        let mut echo = ping(Link::Internet, "198.51.100.7", "203.0.113.10", 1, 1, false);
        echo.extend(std::iter::repeat_n(3u8, 3000));
        let len = (echo.len() - 14) as u16;
        echo[16..18].copy_from_slice(&len.to_be_bytes());
        let pieces = fragment(&echo, 9, 1480);
        let first = owner(Link::Internet, &pieces[0], 8);
        for p in &pieces[1..] {
            assert_eq!(owner(Link::Internet, p, 8), first);
        }
    }

    /// Every piece of a fragmented TCP segment goes to its remote
    /// address's worker; the first tells which worker the flow has, the
    /// one whole segments of the flow go to.
    #[test]
    fn tcp_fragments_go_by_address_and_name_their_flow_s_worker() {
        for p in 0..64u16 {
            let whole = tcp(
                Link::Internet,
                "198.51.100.7",
                "203.0.113.10",
                443,
                40000 + p,
                "A",
                &[7; 600],
            );
            let pieces = fragment(&whole, 77 + p, 256);
            assert!(pieces.len() >= 3);
            let by_address = flow_owner(u32::from_be_bytes([198, 51, 100, 7]), 0, 4);
            let mut keys = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                assert_eq!(owner(Link::Internet, piece, 4), by_address, "piece {i}");
                let frag = tcp_fragment(Link::Internet, piece).expect("a TCP fragment");
                keys.push(frag.key);
                assert_eq!(frag.first.is_some(), i == 0);
                assert_eq!(frag.last, i == pieces.len() - 1);
                if let Some((remote, ports)) = frag.first {
                    assert_eq!(
                        flow_owner(remote, ports, 4),
                        owner(Link::Internet, &whole, 4)
                    );
                }
            }
            assert!(keys.iter().all(|k| *k == keys[0]), "one datagram");
            assert_eq!(
                tcp_fragment(Link::Internet, &whole),
                None,
                "a whole segment"
            );
        }
    }

    fn piece(id: u16, start: u32, end: u32, last: bool, ports: Option<u16>) -> TcpFragment {
        TcpFragment {
            key: (1, 2, id),
            first: ports.map(|p| (1, p)),
            start,
            end,
            last,
        }
    }

    /// Two workers; ports whose flow worker 1 has.
    fn ports_on(worker: usize) -> u16 {
        (0..).find(|&p| flow_owner(1, p, 2) == worker).unwrap()
    }

    #[test]
    fn fragment_owners_send_pieces_to_their_flow_in_order() {
        let p1 = Some(ports_on(1));
        let mut t = FragmentOwners::<&str>::new(2, 0);
        let mut sent = Vec::new();
        let mut send = |to, x| sent.push((to, x));
        // In order.
        t.route(piece(7, 0, 256, false, p1), 0, "a0", &mut send);
        t.route(piece(7, 256, 512, false, None), 1, "a1", &mut send);
        t.route(piece(7, 512, 600, true, None), 2, "a2", &mut send);
        // Last first: they wait, then follow their first.
        t.route(piece(8, 512, 600, true, None), 3, "b2", &mut send);
        t.route(piece(8, 256, 512, false, None), 4, "b1", &mut send);
        assert!(t.has_waiting());
        t.route(piece(8, 0, 256, false, p1), 5, "b0", &mut send);
        assert!(!t.has_waiting());
        assert_eq!(sent[..3], [(1, "a0"), (1, "a1"), (1, "a2")]);
        assert_eq!(sent[3], (1, "b0"), "the first piece goes first");
        let mut rest = sent[4..].to_vec();
        rest.sort();
        assert_eq!(rest, [(1, "b1"), (1, "b2")]);
        // Datagram 7 was whole: the same ID again, last piece first, waits
        // for its own first instead of following the old flow.
        sent.clear();
        let p0 = Some(ports_on(0));
        let mut send = |to, x| sent.push((to, x));
        t.route(piece(7, 256, 300, true, None), 6, "c1", &mut send);
        t.route(piece(7, 0, 256, false, p0), 7, "c0", &mut send);
        assert_eq!(sent, [(0, "c0"), (0, "c1")]);
    }

    #[test]
    fn fragment_owners_forget_old_datagrams_and_bound_what_waits() {
        let p1 = Some(ports_on(1));
        let mut t = FragmentOwners::<u32>::new(2, 0);
        let mut sent: Vec<(usize, u32)> = Vec::new();
        // A datagram whose last piece never came: after the timeout its
        // entry no longer sends pieces on.
        t.route(piece(9, 0, 256, false, p1), 0, 0, &mut |to, y| {
            sent.push((to, y))
        });
        t.route(
            piece(9, 256, 512, false, None),
            FRAGMENT_TIMEOUT_NS + 1,
            1,
            &mut |to, y| sent.push((to, y)),
        );
        assert_eq!(sent, [(1, 0)]);
        assert!(t.has_waiting());
        // Waiting pieces go to this worker after the timeout.
        t.expire(2 * FRAGMENT_TIMEOUT_NS + 2, &mut |to, y| sent.push((to, y)));
        assert_eq!(sent, [(1, 0), (0, 1)]);
        assert!(!t.has_waiting());
        // A full table of datagrams in progress: the oldest goes, the new
        // one is learnt and its pieces follow it.
        sent.clear();
        for id in 0..MAX_DATAGRAMS as u32 {
            let f = TcpFragment {
                key: (3, id, 0),
                ..piece(0, 0, 256, false, p1)
            };
            t.route(f, u64::from(id), id, &mut |to, y| sent.push((to, y)));
        }
        assert_eq!(t.owners.len(), MAX_DATAGRAMS);
        t.route(piece(10, 0, 256, false, p1), 5_000, 1, &mut |to, y| {
            sent.push((to, y))
        });
        t.route(piece(10, 256, 300, true, None), 5_001, 2, &mut |to, y| {
            sent.push((to, y))
        });
        assert_eq!(sent[sent.len() - 2..], [(1, 1), (1, 2)]);
        assert!(!t.owners.contains_key(&(3, 0, 0)), "the oldest went");
        // At most MAX_HELD pieces wait; the next goes to this worker.
        sent.clear();
        for i in 0..=MAX_HELD as u32 {
            let f = TcpFragment {
                key: (4, i, 0),
                ..piece(0, 256, 300, true, None)
            };
            t.route(f, 6_000, i, &mut |to, y| sent.push((to, y)));
        }
        assert_eq!(sent, [(0, MAX_HELD as u32)]);
    }

    /// The kernel runs the program and agrees with [`owner`] on every kind
    /// of frame (root only: loading a program needs CAP_BPF).
    #[test]
    fn the_kernel_program_picks_the_same_owner() {
        let frames = {
            let mut v = Vec::new();
            for i in 0..40u8 {
                let remote = format!("198.51.100.{i}");
                v.push((
                    Link::Instance,
                    tcp(Link::Instance, "172.16.0.10", &remote, 1000, 443, "S", b""),
                ));
                v.push((
                    Link::Internet,
                    udp(Link::Internet, &remote, "203.0.113.10", 53, 9, b"x"),
                ));
                let quoted = udp(Link::Internet, "203.0.113.10", &remote, 1, 2, b"");
                v.push((
                    Link::Internet,
                    icmp_unreachable(Link::Internet, "192.0.2.1", "203.0.113.10", &quoted, 28),
                ));
                let quoted_in = udp(Link::Instance, &remote, "172.16.0.10", 2, 1, b"");
                v.push((
                    Link::Instance,
                    icmp_unreachable(Link::Instance, "172.16.0.10", &remote, &quoted_in, 28),
                ));
                v.push((
                    Link::Instance,
                    crate::probe::arp_request(Link::Instance, &remote, "172.16.0.1"),
                ));
            }
            let mut echo = ping(Link::Internet, "198.51.100.7", "203.0.113.10", 1, 1, false);
            echo.extend(std::iter::repeat_n(3u8, 3000));
            let len = (echo.len() - 14) as u16;
            echo[16..18].copy_from_slice(&len.to_be_bytes());
            v.extend(
                fragment(&echo, 9, 1480)
                    .into_iter()
                    .map(|f| (Link::Internet, f)),
            );
            // TCP: ports of whole segments; fragments; errors quoting a
            // whole segment, a first fragment and a later one; a segment
            // cut short before its ports.
            for p in 0..24u16 {
                let seg = tcp(
                    Link::Internet,
                    "198.51.100.7",
                    "203.0.113.10",
                    443,
                    40000 + p,
                    "A",
                    &[1; 600],
                );
                v.push((Link::Internet, seg.clone()));
                v.push((
                    Link::Instance,
                    tcp(
                        Link::Instance,
                        "172.16.0.10",
                        "198.51.100.9",
                        40000 + p,
                        80,
                        "S",
                        b"",
                    ),
                ));
                let pieces = fragment(&seg, 300 + p, 256);
                for q in [&seg, &pieces[0], &pieces[1]] {
                    let mut q = q.clone();
                    // Seen leaving on internet: as the instance's reply would.
                    q[26..30].copy_from_slice(&[203, 0, 113, 10]);
                    q[30..34].copy_from_slice(&[198, 51, 100, 7]);
                    v.push((
                        Link::Internet,
                        icmp_unreachable(Link::Internet, "192.0.2.1", "203.0.113.10", &q, 28),
                    ));
                    let mut q = q.clone();
                    q[26..30].copy_from_slice(&[172, 16, 0, 10]);
                    q[30..34].copy_from_slice(&[198, 51, 100, 7]);
                    v.push((
                        Link::Instance,
                        icmp_unreachable(Link::Instance, "172.16.0.10", "198.51.100.7", &q, 28),
                    ));
                }
                v.extend(pieces.into_iter().map(|f| (Link::Internet, f)));
            }
            let seg = tcp(
                Link::Internet,
                "198.51.100.7",
                "203.0.113.10",
                443,
                1,
                "A",
                b"",
            );
            v.push((Link::Internet, seg[..14 + 20 + 2].to_vec()));
            v.push((
                Link::Internet,
                crate::probe::raw(Link::Internet, 0x86dd, &[0; 40]),
            ));
            v
        };
        for workers in [2usize, 3, 8] {
            for port in [Link::Instance, Link::Internet] {
                let prog = match Program::load(port, workers) {
                    Ok(p) => p,
                    Err(e) => {
                        if std::env::var("EIPSIM_REQUIRE_TAP").as_deref() == Ok("1") {
                            panic!("cannot load the steering program: {e}");
                        }
                        eprintln!("SKIPPED the_kernel_program_picks_the_same_owner: {e}");
                        return;
                    }
                };
                let mut seen = std::collections::BTreeSet::new();
                for (p, f) in frames.iter().filter(|(p, _)| *p == port) {
                    let got = prog.test_run(f).expect("BPF_PROG_TEST_RUN");
                    assert_eq!(
                        got as usize,
                        owner(*p, f, workers),
                        "{port} {workers} {f:02x?}"
                    );
                    seen.insert(got);
                }
                assert_eq!(seen.len(), workers, "every queue is used");
            }
        }
    }
}
