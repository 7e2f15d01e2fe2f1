//! Any text through the topology parser: it must answer with a topology
//! or a list of errors, never panic; a topology it accepts must build an
//! engine, print its summary and routes, and forward a frame.

#![no_main]

use eipsim::config::Topology;
use eipsim::engine::{Engine, Link};
use eipsim::probe;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(topo) = Topology::from_toml(text) else {
        return;
    };
    let _ = topo.summary();
    for r in &topo.routes {
        let _ = topo.route_text(r);
    }
    // An engine for it must handle traffic from its own first address.
    let src = topo.enis[0].primary_ip().to_string();
    let mut e = Engine::new(topo);
    let mut f = probe::udp(Link::Instance, &src, "198.51.100.7", 40000, 443, b"x");
    e.process(1, Link::Instance, &mut f, 0);
    let mut g = probe::tcp(Link::Internet, "198.51.100.7", &src, 443, 40000, "S", b"");
    e.process(2, Link::Internet, &mut g, 1);
});
