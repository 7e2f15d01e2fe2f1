//! eipsim: a host packet-path data-plane simulator for one cloud instance
//! with several ENIs and EIPs (NAT and cut-through association modes).
//!
//! Layers: [`wire`] (byte views), [`engine`] (the sans-IO forwarding core),
//! [`io`] (pcap replay and the ports that drive the engine), [`config`]
//! (the topology file).

pub mod cli;
pub mod config;
pub mod engine;
pub mod explain;
pub mod io;
pub mod scenarios;
pub mod wire;
