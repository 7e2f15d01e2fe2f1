#![warn(missing_docs)]

//! eipsim: a host packet-path data-plane simulator for one cloud instance
//! with several ENIs and EIPs (NAT and cut-through association modes).
//!
//! Layers: [`wire`] (byte views), [`engine`] (the sans-IO forwarding core),
//! [`io`] (pcap replay and the ports that drive the engine), [`config`]
//! (the topology file). [`demo`] is the scenario `eipsim demo` runs, and
//! [`probe`] builds frames with etherparse (the demo's, `route get`'s probe
//! packet, and the tests').

pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod explain;
pub mod io;
pub mod probe;
pub mod wire;
