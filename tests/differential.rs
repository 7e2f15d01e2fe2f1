//! A differential test against the Linux kernel (issue 9, item 10).
//!
//! For each golden scenario (`eipsim_fixtures::all()`) not listed under
//! "not yet compared" in docs/differences.md, the test builds a Linux router
//! network namespace configured like the scenario's topology
//! (`kernel::kernel_config`: forwarding, nftables 1:1 NAT, `ip route` with
//! metrics and multipath, `ip rule` for `from` routes, the same MTUs),
//! writes each input frame to the TAP that stands for its port, in order,
//! and reads what the kernel sends on every port until it has been quiet a
//! while. The same frames go through eipsim's engine. For each input frame
//! the two sets of outputs are compared field by field (`compare`):
//! whether anything was sent, the ports, the number of frames, and per
//! frame the addresses, ports, protocol, TTL, fragment fields, ICMP type
//! and the header an ICMP error quotes, and whether every checksum
//! verifies (etherparse).
//!
//! Every difference must be listed in docs/differences.md (the
//! `differences` block: scenario, input port, index within that port,
//! field, and the name of the section that explains it); the test fails on
//! a difference that is not listed and on a listed one that no longer
//! happens (unless marked `may`: a choice such as the ECMP hash, which the
//! two make independently).
//!
//! Needs root, /dev/net/tun, `ip` and `nft`; without them it prints
//! SKIPPED and passes, unless EIPSIM_REQUIRE_TAP=1 (as in CI).

#[path = "differential/compare.rs"]
mod compare;
#[path = "differential/kernel.rs"]
mod kernel;

use compare::{Diff, Pkt, compare, summarize};
use eipsim::config::Topology;
use eipsim::engine::{Engine, Link};
use eipsim_fixtures::Scenario;
use std::collections::BTreeSet;
use std::time::Instant;

mod common;

/// Whether the test can run here; if not, skip (or fail under CI).
fn lab_available(test: &str) -> bool {
    common::lab_available_with(test, &[("nft", "the nft command (nftables)")])
}

/// What eipsim sends because of each step (in step order): the frame
/// itself if it leaves, the fragments and ICMP errors it causes, and held
/// fragments it releases.
fn engine_outputs(sc: &Scenario) -> Vec<Vec<Pkt>> {
    let mut engine = Engine::new(Topology::from_toml(&sc.topology).expect("topology"));
    for p in Link::ALL {
        engine.set_mtu(p, sc.mtu[p.index()]);
    }
    let mut out = Vec::new();
    for (i, s) in sc.steps.iter().enumerate() {
        let mut f = s.frame.clone();
        let v = engine.process(s.ts_ns, s.port, &mut f, i as u64);
        let mut sent = Vec::new();
        if let Some(p) = v.sends_frame() {
            sent.push(summarize(p, &f));
        }
        loop {
            let mut more = false;
            while let Some(t) = engine.poll_transmit() {
                sent.push(summarize(t.port, &t.frame));
                more = true;
            }
            while let Some(r) = engine.poll_released() {
                if let Some(p) = r.verdict.sends_frame() {
                    sent.push(summarize(p, &r.frame));
                }
                more = true;
            }
            if !more {
                break;
            }
        }
        out.push(sent);
    }
    out
}

/// What Linux sends because of each step.
fn kernel_outputs(sc: &Scenario) -> Vec<Vec<Pkt>> {
    let topo = Topology::from_toml(&sc.topology).expect("topology");
    let router = kernel::Router::new(&topo, sc.mtu);
    let before = router.collect();
    assert!(
        before.is_empty(),
        "{}: the kernel spoke first: {before:?}",
        sc.name
    );
    sc.steps
        .iter()
        .map(|s| {
            router
                .inject(s.port, &s.frame)
                .into_iter()
                .map(|(p, f)| summarize(p, &f))
                .collect()
        })
        .collect()
}

/// One line of the `differences` block of docs/differences.md.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    scenario: String,
    port: String,
    index: usize,
    field: String,
    reason: String,
    may: bool,
}

/// The `differences` and `not-compared` blocks of docs/differences.md,
/// and the section names (`### name`) that explain them.
fn read_list() -> (Vec<Listed>, Vec<(String, String)>, BTreeSet<String>) {
    let text = std::fs::read_to_string("docs/differences.md").expect("docs/differences.md");
    let (mut listed, mut skipped, mut sections) = (Vec::new(), Vec::new(), BTreeSet::new());
    let mut block = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            sections.insert(name.trim().to_string());
        }
        if let Some(tag) = line.strip_prefix("```") {
            block = if block.is_empty() { tag.trim() } else { "" };
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.is_empty() || w[0].starts_with('#') {
            continue;
        }
        match block {
            "differences" => {
                assert!(
                    matches!(w.len(), 5 | 6),
                    "docs/differences.md: bad line {line:?}"
                );
                listed.push(Listed {
                    scenario: w[0].into(),
                    port: w[1].into(),
                    index: w[2].parse().expect("an index"),
                    field: w[3].into(),
                    reason: w[4].into(),
                    may: w.get(5) == Some(&"may"),
                });
            }
            "not-compared" => skipped.push((w[0].to_string(), w[1..].join(" "))),
            _ => {}
        }
    }
    (listed, skipped, sections)
}

#[test]
fn linux_forwards_as_eipsim_does() {
    if !lab_available("linux_forwards_as_eipsim_does") {
        return;
    }
    let start = Instant::now();
    let (listed, skipped, sections) = read_list();
    for l in &listed {
        assert!(
            sections.contains(&l.reason),
            "docs/differences.md: {l:?} names no section `### {}`",
            l.reason
        );
    }
    // EIPSIM_DIFF_ONLY=NAME compares one scenario; EIPSIM_DIFF_VERBOSE=1
    // prints every output of both.
    let only = std::env::var("EIPSIM_DIFF_ONLY").ok();
    let names: Vec<&str> = eipsim_fixtures::all().iter().map(|s| s.name).collect();
    for (n, why) in &skipped {
        assert!(
            names.contains(&n.as_str()),
            "not-compared names no scenario: {n}"
        );
        eprintln!("differential: {n} not compared: {why}");
    }
    let verbose = std::env::var("EIPSIM_DIFF_VERBOSE").is_ok();
    let mut found: Vec<(Listed, Diff, String)> = Vec::new();
    let mut compared = Vec::new();
    for sc in eipsim_fixtures::all() {
        if skipped.iter().any(|(n, _)| n == sc.name) {
            continue;
        }
        if only.as_deref().is_some_and(|o| o != sc.name) {
            continue;
        }
        compared.push(sc.name);
        let e = engine_outputs(&sc);
        let k = kernel_outputs(&sc);
        let mut seen = [0usize; 3];
        for (i, s) in sc.steps.iter().enumerate() {
            let index = seen[s.port.index()];
            seen[s.port.index()] += 1;
            if verbose {
                eprintln!(
                    "{} {} #{index} {}\n  eipsim {:?}\n  linux  {:?}",
                    sc.name, s.port, s.note, e[i], k[i]
                );
            }
            for d in compare(e[i].clone(), k[i].clone()) {
                let key = Listed {
                    scenario: sc.name.into(),
                    port: s.port.name().into(),
                    index,
                    field: d.field.clone(),
                    reason: String::new(),
                    may: false,
                };
                found.push((key, d, s.note.clone()));
            }
        }
    }
    let same = |a: &Listed, b: &Listed| {
        (&a.scenario, &a.port, a.index, &a.field) == (&b.scenario, &b.port, b.index, &b.field)
    };
    let mut report = String::new();
    let mut unlisted = 0;
    for (key, d, note) in &found {
        let hit = listed.iter().find(|l| same(l, key));
        if hit.is_none() {
            unlisted += 1;
        }
        report += &format!(
            "{} {} {} {} {} # {note}: eipsim {} / linux {}\n",
            key.scenario,
            key.port,
            key.index,
            key.field,
            hit.map_or("UNLISTED", |l| l.reason.as_str()),
            d.eipsim,
            d.linux,
        );
    }
    let stale: Vec<&Listed> = listed
        .iter()
        .filter(|l| !l.may && compared.contains(&l.scenario.as_str()))
        .filter(|l| !found.iter().any(|(k, _, _)| same(l, k)))
        .collect();
    eprintln!(
        "differential: {} scenarios compared in {:.1} s, {} differences ({} unlisted)\n{report}",
        compared.len(),
        start.elapsed().as_secs_f64(),
        found.len(),
        unlisted
    );
    assert!(
        unlisted == 0,
        "differences not listed in docs/differences.md:\n{report}"
    );
    assert!(
        stale.is_empty(),
        "listed in docs/differences.md but no longer different: {stale:?}"
    );
}
