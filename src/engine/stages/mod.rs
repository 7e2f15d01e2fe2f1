//! The stages of the packet path, one file each, in the order a packet
//! meets them (docs/engine.md has the picture and the table of trace steps
//! and drop reasons). [`crate::engine::Engine`]'s `process_impl` and
//! `ipv4` are the sequence.
//!
//! A stage takes the tables it needs and a [`crate::engine::trace::Tracer`],
//! records what it decided as [`crate::engine::trace::Event`]s, and returns
//! the next step or a [`crate::engine::Verdict`]. The two that coordinate
//! several tables (`session`, `frag`) are `impl Engine` blocks.

pub(crate) mod alg;
pub(crate) mod arp;
pub(crate) mod bandwidth;
pub(crate) mod cloud;
pub(crate) mod eip;
pub(crate) mod ethernet;
pub(crate) mod fib;
pub(crate) mod frag;
pub(crate) mod icmp_error;
pub(crate) mod ip4_input;
pub(crate) mod mtu;
pub(crate) mod rewrite;
pub(crate) mod security_group;
pub(crate) mod session;
pub(crate) mod source;
