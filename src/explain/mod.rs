//! Everything eipsim says in words, kept apart from the engine that
//! decides: trace events rendered as sentences ([`trace`]), `route get`
//! ([`mod@route_get`]), `show` ([`show`]) and the one-line, tcpdump-style
//! packet description ([`describe`]).

pub mod describe;
pub mod diff;
pub mod reach;
pub mod route_get;
pub mod show;
pub mod trace;

pub use route_get::{Proto, RouteAnswer, RouteQuery, route_get};
