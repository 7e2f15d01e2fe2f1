//! Reading and writing capture files: pcap and pcapng in, pcap out.

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{Endianness, PcapError, TsResolution};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A capture that cannot be used, naming the file and, where it applies,
/// the 0-based index of the packet at fault.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), packet.map(|i| format!(": packet {i}")).unwrap_or_default())]
pub struct CaptureError {
    pub path: PathBuf,
    pub packet: Option<u64>,
    pub message: String,
}

fn describe(e: &PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => {
            "the file is truncated (a record ends past the end of the file)".into()
        }
        PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file is truncated (a record ends past the end of the file)".into()
        }
        other => {
            let mut s = other.to_string();
            if let Some(src) = std::error::Error::source(other) {
                s.push_str(&format!(": {src}"));
            }
            s
        }
    }
}

enum Format {
    Pcap(PcapReader<BufReader<File>>),
    /// pcapng, with the timestamp unit (in ns) of each interface.
    PcapNg(PcapNgReader<BufReader<File>>, Vec<u64>),
}

/// One input capture, read packet by packet.
pub struct CaptureReader {
    path: PathBuf,
    format: Format,
    /// Index of the next packet.
    index: u64,
    /// Bytes of the file, for progress.
    pub file_len: u64,
}

impl CaptureReader {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let err = |packet: Option<u64>, message: String| CaptureError {
            path: path.to_path_buf(),
            packet,
            message,
        };
        let mut file = File::open(path).map_err(|e| err(None, format!("cannot open: {e}")))?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut magic = [0u8; 4];
        file.read_exact(&mut magic)
            .map_err(|_| err(None, "too short to be a pcap or pcapng file".into()))?;
        drop(file);
        let reopen = || {
            File::open(path)
                .map(BufReader::new)
                .map_err(|e| err(None, format!("cannot open: {e}")))
        };
        let format = match u32::from_le_bytes(magic) {
            0x0a0d_0d0a => {
                let r = PcapNgReader::new(reopen()?)
                    .map_err(|e| err(None, format!("not a valid pcapng file: {}", describe(&e))))?;
                Format::PcapNg(r, Vec::new())
            }
            0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
                let r = PcapReader::new(reopen()?)
                    .map_err(|e| err(None, format!("not a valid pcap file: {}", describe(&e))))?;
                let link = r.header().datalink;
                if link != DataLink::ETHERNET {
                    return Err(err(
                        None,
                        format!(
                            "link type {link:?} is not Ethernet; eipsim replays Ethernet captures only"
                        ),
                    ));
                }
                Format::Pcap(r)
            }
            _ => {
                return Err(err(
                    None,
                    "not a pcap or pcapng file (unknown magic number)".into(),
                ));
            }
        };
        Ok(CaptureReader {
            path: path.to_path_buf(),
            format,
            index: 0,
            file_len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the next packet into `buf`; returns its timestamp in ns since
    /// the epoch and its index, or `None` at the end of the file.
    pub fn next_packet(&mut self, buf: &mut Vec<u8>) -> Result<Option<(u64, u64)>, CaptureError> {
        let index = self.index;
        let err = |message: String| CaptureError {
            path: self.path.clone(),
            packet: Some(index),
            message,
        };
        let ts = match &mut self.format {
            Format::Pcap(r) => match r.next_packet() {
                None => return Ok(None),
                Some(Err(e)) => return Err(err(describe(&e))),
                Some(Ok(p)) => {
                    buf.clear();
                    buf.extend_from_slice(&p.data);
                    p.timestamp.as_nanos() as u64
                }
            },
            Format::PcapNg(r, units) => loop {
                let block = match r.next_block() {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(err(describe(&e))),
                    Some(Ok(b)) => b,
                };
                match block {
                    Block::SectionHeader(_) => units.clear(),
                    Block::InterfaceDescription(idb) => {
                        if idb.linktype != DataLink::ETHERNET {
                            return Err(err(format!(
                                "interface {} has link type {:?}, not Ethernet; eipsim replays Ethernet captures only",
                                units.len(),
                                idb.linktype
                            )));
                        }
                        units.push(ts_unit_ns(&idb.options));
                    }
                    Block::EnhancedPacket(p) => {
                        let Some(&unit) = units.get(p.interface_id as usize) else {
                            return Err(err(format!(
                                "names interface {}, which is not described",
                                p.interface_id
                            )));
                        };
                        buf.clear();
                        buf.extend_from_slice(&p.data);
                        // pcap-file reads the raw timestamp as nanoseconds;
                        // scale it by the interface's if_tsresol.
                        break (p.timestamp.as_nanos() as u64).saturating_mul(unit);
                    }
                    Block::SimplePacket(p) => {
                        if units.is_empty() {
                            return Err(err(
                                "a simple packet block before any interface description".into(),
                            ));
                        }
                        buf.clear();
                        buf.extend_from_slice(&p.data);
                        break 0;
                    }
                    _ => {}
                }
            },
        };
        self.index += 1;
        Ok(Some((ts, index)))
    }
}

/// The timestamp unit of a pcapng interface in ns (if_tsresol, RFC draft
/// "PCAP Next Generation" section 4.2; default 10^-6 s).
fn ts_unit_ns(options: &[InterfaceDescriptionOption]) -> u64 {
    for o in options {
        if let InterfaceDescriptionOption::IfTsResol(r) = *o {
            return if r & 0x80 == 0 {
                match r {
                    0..=9 => 10u64.pow(9 - u32::from(r)),
                    _ => 1,
                }
            } else {
                // Negative powers of two: coarse approximation in ns.
                (1_000_000_000u64 >> (r & 0x7f).min(30)).max(1)
            };
        }
    }
    1000
}

/// A pcap file being written (Ethernet, nanosecond timestamps).
pub struct CaptureWriter {
    writer: PcapWriter<BufWriter<File>>,
    pub packets: u64,
}

impl CaptureWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = BufWriter::new(File::create(path)?);
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: 65535,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
        };
        let writer = PcapWriter::with_header(file, header).map_err(std::io::Error::other)?;
        Ok(CaptureWriter { writer, packets: 0 })
    }

    pub fn write(&mut self, ts_ns: u64, data: &[u8]) -> std::io::Result<()> {
        let p = PcapPacket::new(Duration::from_nanos(ts_ns), data.len() as u32, data);
        self.writer
            .write_packet(&p)
            .map_err(std::io::Error::other)?;
        self.packets += 1;
        Ok(())
    }

    pub fn finish(self) -> std::io::Result<()> {
        self.writer.into_writer().flush()
    }
}

/// Writes `frames` as a pcap file (for generators and tests).
pub fn write_pcap(path: &Path, frames: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
    let mut w = CaptureWriter::create(path)?;
    for (ts, f) in frames {
        w.write(*ts, f)?;
    }
    w.finish()
}

/// Reads a whole capture (for tests and tools).
pub fn read_all(path: &Path) -> Result<Vec<(u64, Vec<u8>)>, CaptureError> {
    let mut r = CaptureReader::open(path)?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some((ts, _)) = r.next_packet(&mut buf)? {
        out.push((ts, buf.clone()));
    }
    Ok(out)
}
