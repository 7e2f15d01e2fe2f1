//! Structure-aware fuzzing of the engine: the bytes drive
//! `eipsim_fixtures::fuzzgen::run`, which builds frames from the fuzz
//! topology's addresses, mutates them, feeds them on every port with a
//! jumping clock, MTU changes and offloads, and panics when an invariant
//! breaks (docs/fuzzing.md). At exit it prints how many frames went
//! through, the count docs/fuzzing.md records.

#![no_main]

use eipsim_fixtures::fuzzgen;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

static FRAMES: AtomicU64 = AtomicU64::new(0);
static INPUTS: AtomicU64 = AtomicU64::new(0);
static START: OnceLock<Instant> = OnceLock::new();

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

extern "C" fn report() {
    let secs = START.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    let frames = FRAMES.load(Relaxed);
    eprintln!(
        "eipsim-fuzz engine: {frames} frames in {} inputs, {secs:.1} s, {:.0} frames/s",
        INPUTS.load(Relaxed),
        frames as f64 / secs.max(1e-9)
    );
}

fuzz_target!(|data: &[u8]| {
    START.get_or_init(|| {
        // SAFETY: registers a plain function with no captured state.
        unsafe { atexit(report) };
        Instant::now()
    });
    let s = fuzzgen::run(data);
    FRAMES.fetch_add(s.frames, Relaxed);
    INPUTS.fetch_add(1, Relaxed);
});
