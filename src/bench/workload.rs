//! Synthetic workloads for `eipsim bench engine`, the criterion benchmarks
//! and the allocation test: many flows on one forwarding path (or a mix).

use crate::config::Topology;
use crate::demo::STANDARD;
use crate::engine::Link;
use crate::probe::{tcp, udp};

/// The forwarding paths the benchmarks measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Instance -> Internet through a NAT EIP.
    NatOut,
    /// Internet -> instance through a NAT EIP (replies of NAT-out flows).
    NatIn,
    /// Internet -> instance through the cut-through EIP.
    CutThrough,
    /// Instance -> Internet over a two-ENI load-balanced route.
    Ecmp,
    /// Instance -> VPC host.
    Vpc,
    /// Flow `i` takes the path `Path::ALL[i % 5]`: every path at once.
    Mix,
}

impl Path {
    /// Every single path, in the order the benchmarks run them.
    pub const ALL: [Path; 5] = [
        Path::NatOut,
        Path::NatIn,
        Path::CutThrough,
        Path::Ecmp,
        Path::Vpc,
    ];

    /// The snake_case name benchmark IDs use (`nat_out`, `ecmp`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Path::NatOut => "nat_out",
            Path::NatIn => "nat_in",
            Path::CutThrough => "cut_through",
            Path::Ecmp => "ecmp",
            Path::Vpc => "vpc",
            Path::Mix => "mix",
        }
    }

    /// The name `eipsim bench engine --path` takes (`nat-out`, `mix`, ...).
    pub fn cli_name(self) -> String {
        self.name().replace('_', "-")
    }

    /// The path named `s` as [`Path::cli_name`] gives it.
    pub fn from_cli_name(s: &str) -> Option<Path> {
        Path::ALL
            .into_iter()
            .chain([Path::Mix])
            .find(|p| p.cli_name() == s)
    }
}

/// The size of the measured frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSize {
    /// Every measured frame is this many bytes: the Ethernet frame as a TAP
    /// device carries it (header and IP packet, no FCS), at least the
    /// headers (54 bytes for TCP, 42 for UDP).
    Bytes(usize),
    /// The simple IMIX: 7 : 4 : 1 frames of 64, 570 and 1518 bytes on the
    /// wire, which is 60, 566 and 1514 bytes without the 4-byte FCS.
    Imix,
    /// 18 bytes of payload after the TCP or UDP header (72-byte TCP frames,
    /// 60-byte UDP frames): what the criterion benchmarks measure.
    Small,
}

impl FrameSize {
    /// The Ethernet frame length (no FCS) of measured frame `i`, or `None`
    /// for [`FrameSize::Small`] (a fixed payload instead).
    fn frame_len(self, i: usize) -> Option<usize> {
        match self {
            FrameSize::Bytes(n) => Some(n),
            FrameSize::Imix => Some(match i % 12 {
                0..=6 => 60,
                7..=10 => 566,
                _ => 1514,
            }),
            FrameSize::Small => None,
        }
    }
}

/// A workload: the topology, frames that set up `flows` flows, and one
/// frame per flow to measure (each a later packet of its flow).
#[derive(Debug)]
pub struct Workload {
    /// The standard topology plus a two-ENI hash route for 192.0.2.0/24,
    /// with a flow table of twice the flows.
    pub topology: Topology,
    /// One frame per flow that creates it (a TCP SYN, or the first UDP
    /// datagram), with the port it arrives on; process these first.
    pub setup: Vec<(Link, Vec<u8>)>,
    /// One frame per flow, in the same order: a later packet of the flow
    /// that hits it.
    pub frames: Vec<(Link, Vec<u8>)>,
}

fn remote(i: usize) -> String {
    // 198.51.100.0/24 and 203.0.113.128/25 as remote hosts: 384 addresses.
    let k = i % 384;
    if k < 256 {
        format!("198.51.100.{k}")
    } else {
        format!("203.0.113.{}", k - 128)
    }
}

fn sport(i: usize) -> u16 {
    1024 + (i / 384) as u16
}

/// Builds the workload for `path` with `flows` distinct flows (at most
/// 384 * 64512), measured frames with 18 bytes of payload.
pub fn workload(path: Path, flows: usize) -> Workload {
    sized_workload(path, flows, FrameSize::Small)
}

/// Builds the workload for `path` with `flows` distinct flows (at most
/// 384 * 64512) and measured frames of `size`.
pub fn sized_workload(path: Path, flows: usize, size: FrameSize) -> Workload {
    let text = format!(
        "{STANDARD}\n[[route]]\ndst = \"192.0.2.0/24\"\nvia = [\"eth0\", \"eth1\"]\nbalance = \"hash\"\n\n[flow_table]\ncapacity = {}\n",
        flows.max(1) * 2
    );
    let topology = Topology::from_toml(&text).expect("workload topology is valid");
    let (mut setup, mut frames) = (Vec::new(), Vec::new());
    let zeros = [0u8; 1514];
    for i in 0..flows {
        let path = match path {
            Path::Mix => Path::ALL[i % Path::ALL.len()],
            p => p,
        };
        // Payload after an L4 header of `l4` bytes.
        let payload = |l4: usize| -> &[u8] {
            let n = size.frame_len(i).map_or(18, |f| f.saturating_sub(34 + l4));
            &zeros[..n.min(zeros.len())]
        };
        let (r, p) = (remote(i), sport(i));
        let (s, f) = match path {
            Path::NatOut | Path::NatIn | Path::Mix => {
                let s = (
                    Link::Instance,
                    tcp(Link::Instance, "172.16.0.10", &r, p, 443, "S", b""),
                );
                let f = if path == Path::NatIn {
                    (
                        Link::Internet,
                        tcp(Link::Internet, &r, "203.0.113.10", 443, p, "A", payload(20)),
                    )
                } else {
                    (
                        Link::Instance,
                        tcp(Link::Instance, "172.16.0.10", &r, p, 443, "A", payload(20)),
                    )
                };
                (s, f)
            }
            Path::CutThrough => (
                (
                    Link::Internet,
                    udp(Link::Internet, &r, "203.0.113.12", p, 4500, b""),
                ),
                (
                    Link::Internet,
                    udp(Link::Internet, &r, "203.0.113.12", p, 4500, payload(8)),
                ),
            ),
            Path::Ecmp => {
                let d = format!("192.0.2.{}", i % 256);
                let p = 1024 + (i / 256) as u16;
                (
                    (
                        Link::Instance,
                        tcp(Link::Instance, "172.16.0.10", &d, p, 443, "S", b""),
                    ),
                    (
                        Link::Instance,
                        tcp(Link::Instance, "172.16.0.10", &d, p, 443, "A", payload(20)),
                    ),
                )
            }
            Path::Vpc => {
                let d = format!("172.16.{}.{}", 100 + (i % 384) / 256, i % 256);
                (
                    (
                        Link::Instance,
                        tcp(Link::Instance, "172.16.0.10", &d, p, 5432, "S", b""),
                    ),
                    (
                        Link::Instance,
                        tcp(Link::Instance, "172.16.0.10", &d, p, 5432, "A", payload(20)),
                    ),
                )
            }
        };
        setup.push(s);
        frames.push(f);
    }
    Workload {
        topology,
        setup,
        frames,
    }
}
