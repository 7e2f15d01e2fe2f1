//! Live captures: one pcap per port and per ENI, written by a thread of
//! their own, rotated at a size limit.

use crate::config::Topology;
use crate::engine::Link;
use crate::io::capture::CaptureWriter;
use crossbeam_channel::Receiver;
use std::path::{Path, PathBuf};

/// The capture files: one per port, then one per ENI (as replay writes).
pub(super) fn capture_names(topo: &Topology) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Link::ALL
        .iter()
        .map(|p| PathBuf::from(format!("{}.pcap", p.name())))
        .collect();
    v.extend(
        topo.enis
            .iter()
            .map(|e| Path::new("eni").join(format!("{}.pcap", e.name))),
    );
    v
}

pub(super) fn capture_thread(
    dir: &Path,
    names: &[PathBuf],
    limit: u64,
    rx: Receiver<(usize, u64, Vec<u8>)>,
) {
    let mut files: Vec<Option<(CaptureWriter, u64)>> = names.iter().map(|_| None).collect();
    let wall0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    for (i, ts, data) in rx {
        let path = dir.join(&names[i]);
        if files[i].as_ref().is_some_and(|(_, n)| *n >= limit) {
            // Rotate: keep one older file, so the total stays bounded.
            if let Some((w, _)) = files[i].take() {
                let _ = w.finish();
            }
            let _ = std::fs::rename(&path, path.with_extension("1.pcap"));
        }
        if files[i].is_none() {
            match CaptureWriter::create(&path) {
                Ok(w) => files[i] = Some((w, 24)),
                Err(e) => {
                    eprintln!("eipsim run: capture {}: {e}", path.display());
                    continue;
                }
            }
        }
        if let Some((w, n)) = files[i].as_mut()
            && w.write(wall0 + ts, &data).is_ok()
        {
            *n += 16 + data.len() as u64;
        }
    }
    // Every file exists at the end, even empty, as with replay.
    for (i, f) in files.into_iter().enumerate() {
        match f {
            Some((w, _)) => {
                let _ = w.finish();
            }
            None => {
                if let Ok(w) = CaptureWriter::create(&dir.join(&names[i])) {
                    let _ = w.finish();
                }
            }
        }
    }
}
