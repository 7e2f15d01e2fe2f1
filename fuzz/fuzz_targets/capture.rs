//! Any bytes as a capture file through the reader `eipsim replay` uses
//! (`CaptureReader`): a pcap or pcapng file is read to its end or to an
//! error, never a panic, and never more packets than the bytes could hold.

#![no_main]

use eipsim::io::capture::CaptureReader;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch file per fuzzing process (the reader takes a path).
fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        std::env::temp_dir().join(format!("eipsim-fuzz-capture-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write the scratch capture");
    let Ok(mut r) = CaptureReader::open(path) else {
        return;
    };
    let mut buf = Vec::new();
    let mut n = 0u64;
    while let Ok(Some((_ts, index))) = r.next_packet(&mut buf) {
        assert_eq!(index, n, "packet indexes count up from 0");
        n += 1;
        // A pcap record header is 16 bytes, a pcapng block at least 12.
        assert!(
            n <= data.len() as u64 / 12 + 1,
            "more packets than bytes allow"
        );
    }
});
