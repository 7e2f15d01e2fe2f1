//! The seeded property test: the fuzz target's generator and invariants
//! (`eipsim_fixtures::fuzzgen`, see docs/fuzzing.md) run over a fixed
//! number of frames drawn from fixed seeds, so `cargo test` checks the
//! same invariants on every run, deterministically: no panic, every output
//! frame valid, frames conserved, the flow table within its capacity.

use eipsim::engine::hash::SplitMix64;
use eipsim_fixtures::fuzzgen::{self, Stats};

/// Frames per seed; four seeds make a million frames (about 3 s in the
/// test profile).
const FRAMES_PER_SEED: u64 = 250_000;
const SEEDS: [u64; 4] = [1, 2, 3, 0x5eed_e195];

/// Runs generated cases from `seed` until `frames` frames went through;
/// each case is a fresh engine fed from 16 KiB of the seed's draws.
fn run_seed(seed: u64, frames: u64) -> Stats {
    let mut rng = SplitMix64::new(seed);
    let mut total = Stats::default();
    let mut buf = vec![0u8; 16_384];
    while total.frames < frames {
        for chunk in buf.chunks_mut(8) {
            let x = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
        total.add(&fuzzgen::run(&buf));
    }
    total
}

#[test]
fn generated_frames_keep_every_invariant() {
    let mut all = Stats::default();
    for seed in SEEDS {
        all.add(&run_seed(seed, FRAMES_PER_SEED));
    }
    eprintln!("{all:?}\ndrops: {:?}", all.drop_reasons());
    assert!(all.frames >= FRAMES_PER_SEED * SEEDS.len() as u64);
    // The generator reaches what it is meant to: every verdict, the
    // offloads (taken and refused), fragments cut by the engine, side
    // frames, and a full flow table.
    let [fwd, consumed, dropped, held] = all.verdicts;
    assert!(fwd > all.frames / 10, "forwarded: {fwd}");
    assert!(
        consumed > 100 && held > 100,
        "consumed {consumed}, held {held}"
    );
    assert!(dropped > all.frames / 10, "dropped: {dropped}");
    assert!(all.offloaded > 1000 && all.refused > 100, "{all:?}");
    assert!(all.reassembled > 100, "reassembled: {}", all.reassembled);
    assert!(all.side_frames > 1000, "side frames: {}", all.side_frames);
    assert!(all.table_full > 1000, "table full: {}", all.table_full);
    // The second topology's security groups are reached too. (Its
    // bandwidth limits police every packet to their EIPs, but a case
    // carries less than a bucket's 64 KiB burst, so none is exceeded:
    // the golden scenario `bandwidth` and tests/engine.rs drop there.)
    let sg = eipsim::engine::DropReason::SecurityGroupDenied as usize;
    assert!(
        all.drops[sg] > 1000,
        "security_group_denied: {}",
        all.drops[sg]
    );
}

#[test]
fn the_same_seed_gives_the_same_run() {
    assert_eq!(run_seed(7, 2_000), run_seed(7, 2_000));
}
