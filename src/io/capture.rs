//! Reading and writing capture files: pcap and pcapng in, pcap (or, for
//! `replay --format pcapng`, pcapng with a comment per packet) out.

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
    /// The capture file.
    pub path: PathBuf,
    /// The 0-based index of the packet at fault; `None` for the file as a
    /// whole (cannot open, unknown magic, a pcap header not Ethernet).
    pub packet: Option<u64>,
    /// What is wrong, in words.
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
    /// pcapng, with the timestamp unit of each interface, and the last
    /// timestamp (simple packet blocks have none and reuse it).
    PcapNg(PcapNgReader<BufReader<File>>, Vec<TsUnit>, u64),
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
    /// Opens a pcap (any byte order, micro- or nanosecond timestamps) or
    /// pcapng file, told apart by its magic number. An error if it cannot
    /// be read, is neither, or is a pcap whose link type is not Ethernet
    /// (a pcapng interface's link type is checked as its packets are read).
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
                Format::PcapNg(r, Vec::new(), 0)
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

    /// The file being read.
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
            // Raw records: a capture taken with a snap length has records
            // shorter than the packet (orig_len > snaplen), which the
            // checked reader refuses; eipsim replays what was captured
            // and the engine calls a cut-short frame malformed.
            Format::Pcap(r) => {
                let nanos = r.header().ts_resolution == TsResolution::NanoSecond;
                match r.next_raw_packet() {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(err(describe(&e))),
                    Some(Ok(p)) => {
                        buf.clear();
                        buf.extend_from_slice(&p.data);
                        let frac = u64::from(p.ts_frac) * if nanos { 1 } else { 1000 };
                        u64::from(p.ts_sec) * 1_000_000_000 + frac
                    }
                }
            }
            Format::PcapNg(r, units, last) => loop {
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
                        *last = unit.to_ns(p.timestamp.as_nanos() as u64);
                        break *last;
                    }
                    Block::SimplePacket(p) => {
                        if units.is_empty() {
                            return Err(err(
                                "a simple packet block before any interface description".into(),
                            ));
                        }
                        buf.clear();
                        buf.extend_from_slice(&p.data);
                        break *last;
                    }
                    _ => {}
                }
            },
        };
        self.index += 1;
        Ok(Some((ts, index)))
    }
}

/// A pcapng interface's timestamp unit: `raw * 10^9 / per_second` ns.
#[derive(Debug, Clone, Copy)]
struct TsUnit {
    per_second: u128,
}

impl TsUnit {
    fn to_ns(self, raw: u64) -> u64 {
        (u128::from(raw) * 1_000_000_000 / self.per_second).min(u128::from(u64::MAX)) as u64
    }
}

/// The timestamp unit of a pcapng interface (if_tsresol: 10^-v or, with
/// the high bit set, 2^-v seconds; default 10^-6; "PCAP Next Generation"
/// section 4.2).
fn ts_unit_ns(options: &[InterfaceDescriptionOption]) -> TsUnit {
    for o in options {
        if let InterfaceDescriptionOption::IfTsResol(r) = *o {
            let v = u32::from(r & 0x7f);
            let per_second = if r & 0x80 == 0 {
                10u128.pow(v.min(30))
            } else {
                1u128 << v.min(100)
            };
            return TsUnit {
                per_second: per_second.max(1),
            };
        }
    }
    TsUnit {
        per_second: 1_000_000,
    }
}

/// A pcap file being written (Ethernet, nanosecond timestamps).
pub struct CaptureWriter {
    writer: PcapWriter<BufWriter<File>>,
    /// Packets written so far.
    pub packets: u64,
}

impl CaptureWriter {
    /// Creates (or truncates) `path` and writes the pcap header:
    /// little-endian, nanosecond timestamps, snap length 262144.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = BufWriter::new(File::create(path)?);
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            // Room for any IPv4 datagram with its Ethernet header.
            snaplen: 262_144,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
        };
        let writer = PcapWriter::with_header(file, header).map_err(std::io::Error::other)?;
        Ok(CaptureWriter { writer, packets: 0 })
    }

    /// Appends one Ethernet frame, whole, stamped `ts_ns` (ns since the
    /// epoch).
    pub fn write(&mut self, ts_ns: u64, data: &[u8]) -> std::io::Result<()> {
        let p = PcapPacket::new(Duration::from_nanos(ts_ns), data.len() as u32, data);
        self.writer
            .write_packet(&p)
            .map_err(std::io::Error::other)?;
        self.packets += 1;
        Ok(())
    }

    /// Flushes the buffered records; without it, the last may be lost.
    pub fn finish(self) -> std::io::Result<()> {
        self.writer.into_writer().flush()
    }
}

/// Output captures in pcapng: one interface, named for the port or ENI the
/// file is about, nanosecond timestamps, and each packet's comment
/// (Wireshark's `frame.comment`) saying what eipsim decided.
pub struct NgWriter {
    writer: pcap_file::pcapng::PcapNgWriter<BufWriter<File>>,
    /// Packets written so far.
    pub packets: u64,
}

impl NgWriter {
    /// Creates (or truncates) `path` with a section header and one
    /// Ethernet interface named `if_name`.
    pub fn create(path: &Path, if_name: &str) -> std::io::Result<Self> {
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use std::borrow::Cow;
        let file = BufWriter::new(File::create(path)?);
        let mut writer = pcap_file::pcapng::PcapNgWriter::with_endianness(file, Endianness::Little)
            .map_err(std::io::Error::other)?;
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 262_144,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(if_name.to_string())),
                // pcap-file writes timestamps in nanoseconds: say so (10^-9).
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        writer
            .write_pcapng_block(idb)
            .map_err(std::io::Error::other)?;
        Ok(NgWriter { writer, packets: 0 })
    }

    /// Appends one Ethernet frame stamped `ts_ns`, with `comment`.
    pub fn write(&mut self, ts_ns: u64, data: &[u8], comment: &str) -> std::io::Result<()> {
        use pcap_file::pcapng::blocks::enhanced_packet::{
            EnhancedPacketBlock, EnhancedPacketOption,
        };
        use std::borrow::Cow;
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(ts_ns),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: vec![EnhancedPacketOption::Comment(Cow::Borrowed(comment))],
        };
        self.writer
            .write_pcapng_block(epb)
            .map_err(std::io::Error::other)?;
        self.packets += 1;
        Ok(())
    }

    /// Flushes the buffered blocks.
    pub fn finish(self) -> std::io::Result<()> {
        self.writer.into_inner().flush()
    }
}

/// The format of replay's output captures (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutFormat {
    /// pcap, nanosecond timestamps (the default).
    #[default]
    Pcap,
    /// pcapng with an interface name and a comment per packet.
    PcapNg,
}

impl OutFormat {
    /// The files' extension: `pcap` or `pcapng`.
    pub fn ext(self) -> &'static str {
        match self {
            OutFormat::Pcap => "pcap",
            OutFormat::PcapNg => "pcapng",
        }
    }
}

/// An output capture of either format.
pub enum OutCapture {
    /// pcap.
    Pcap(CaptureWriter),
    /// pcapng.
    PcapNg(NgWriter),
}

impl OutCapture {
    /// Creates `path` (its extension is the caller's) in `format`; a
    /// pcapng file's interface is named `if_name`.
    pub fn create(path: &Path, format: OutFormat, if_name: &str) -> std::io::Result<Self> {
        Ok(match format {
            OutFormat::Pcap => OutCapture::Pcap(CaptureWriter::create(path)?),
            OutFormat::PcapNg => OutCapture::PcapNg(NgWriter::create(path, if_name)?),
        })
    }

    /// Appends a frame; `comment` is made only for pcapng.
    pub fn write(
        &mut self,
        ts_ns: u64,
        data: &[u8],
        comment: impl FnOnce() -> String,
    ) -> std::io::Result<()> {
        match self {
            OutCapture::Pcap(w) => w.write(ts_ns, data),
            OutCapture::PcapNg(w) => w.write(ts_ns, data, &comment()),
        }
    }

    /// Flushes it.
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            OutCapture::Pcap(w) => w.finish(),
            OutCapture::PcapNg(w) => w.finish(),
        }
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
