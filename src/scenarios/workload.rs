//! Synthetic workloads for benchmarks and the allocation test: many flows
//! on one forwarding path.

use super::STANDARD;
use super::build::{tcp, udp};
use crate::config::Topology;
use crate::engine::Port;

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
}

impl Path {
    pub const ALL: [Path; 5] = [
        Path::NatOut,
        Path::NatIn,
        Path::CutThrough,
        Path::Ecmp,
        Path::Vpc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Path::NatOut => "nat_out",
            Path::NatIn => "nat_in",
            Path::CutThrough => "cut_through",
            Path::Ecmp => "ecmp",
            Path::Vpc => "vpc",
        }
    }
}

/// A workload: the topology, frames that set up `flows` flows, and one
/// frame per flow to measure (each a later packet of its flow).
pub struct Workload {
    pub topology: Topology,
    pub setup: Vec<(Port, Vec<u8>)>,
    pub frames: Vec<(Port, Vec<u8>)>,
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
/// 384 * 64512).
pub fn workload(path: Path, flows: usize) -> Workload {
    let text = format!(
        "{STANDARD}\n[[route]]\ndst = \"192.0.2.0/24\"\nvia = [\"eth0\", \"eth1\"]\nbalance = \"hash\"\n\n[flow_table]\ncapacity = {}\n",
        flows.max(1) * 2
    );
    let topology = Topology::from_toml(&text).expect("workload topology is valid");
    let (mut setup, mut frames) = (Vec::new(), Vec::new());
    let payload = [0u8; 18];
    for i in 0..flows {
        let (r, p) = (remote(i), sport(i));
        match path {
            Path::NatOut | Path::NatIn => {
                setup.push((
                    Port::Instance,
                    tcp(Port::Instance, "172.16.0.10", &r, p, 443, "S", b""),
                ));
                if path == Path::NatOut {
                    frames.push((
                        Port::Instance,
                        tcp(Port::Instance, "172.16.0.10", &r, p, 443, "A", &payload),
                    ));
                } else {
                    frames.push((
                        Port::Internet,
                        tcp(Port::Internet, &r, "203.0.113.10", 443, p, "A", &payload),
                    ));
                }
            }
            Path::CutThrough => {
                setup.push((
                    Port::Internet,
                    udp(Port::Internet, &r, "203.0.113.12", p, 4500, b""),
                ));
                frames.push((
                    Port::Internet,
                    udp(Port::Internet, &r, "203.0.113.12", p, 4500, &payload),
                ));
            }
            Path::Ecmp => {
                let d = format!("192.0.2.{}", i % 256);
                let p = 1024 + (i / 256) as u16;
                setup.push((
                    Port::Instance,
                    tcp(Port::Instance, "172.16.0.10", &d, p, 443, "S", b""),
                ));
                frames.push((
                    Port::Instance,
                    tcp(Port::Instance, "172.16.0.10", &d, p, 443, "A", &payload),
                ));
            }
            Path::Vpc => {
                let d = format!("172.16.{}.{}", 100 + (i % 384) / 256, i % 256);
                setup.push((
                    Port::Instance,
                    tcp(Port::Instance, "172.16.0.10", &d, p, 5432, "S", b""),
                ));
                frames.push((
                    Port::Instance,
                    tcp(Port::Instance, "172.16.0.10", &d, p, 5432, "A", &payload),
                ));
            }
        }
    }
    Workload {
        topology,
        setup,
        frames,
    }
}
