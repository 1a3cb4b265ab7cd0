//! The write-ahead log of the embedded store.
//!
//! Each committed batch is appended as one record holding every table change it made, and
//! fdatasync'ed, before the batch is committed to redb without an fsync of its own. A small
//! sequential append is far cheaper to sync than the B-tree pages a batch dirties. Every so
//! often the writer makes a durable redb commit (a checkpoint) and starts a new log segment;
//! on open, records newer than the last checkpoint are replayed.
//!
//! Segment files are `wal-<generation>.log`; a record is `len: u32`, `crc32: u32`, then
//! `len` bytes of payload starting with its sequence number. A record cut short at the very
//! end of the newest segment is a write that was never acknowledged and is dropped; any other
//! damage fails the open with an error naming the file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::codec::{Reader, Writer};
use crate::{Error, Result};

const PREFIX: &str = "wal-";
const SUFFIX: &str = ".log";
const HEADER: usize = 8;

/// One change to a table, as logged.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WalOp<'a> {
    KvPut { key: &'a [u8], data: &'a [u8] },
    KvDel { key: &'a [u8] },
    HistoryPut { revision: u64, data: &'a [u8] },
    HistoryCompact { upto: u64 },
    LeasePut { id: i64, ttl: i64 },
    LeaseDel { id: i64 },
    Counters { revision: i64, compacted: i64 },
}

impl WalOp<'_> {
    /// Appends the op to a record being built.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            WalOp::KvPut { key, data } => {
                w.u8(1);
                w.bytes(key);
                w.bytes(data);
            }
            WalOp::KvDel { key } => {
                w.u8(2);
                w.bytes(key);
            }
            WalOp::HistoryPut { revision, data } => {
                w.u8(3);
                w.i64(*revision as i64);
                w.bytes(data);
            }
            WalOp::HistoryCompact { upto } => {
                w.u8(4);
                w.i64(*upto as i64);
            }
            WalOp::LeasePut { id, ttl } => {
                w.u8(5);
                w.i64(*id);
                w.i64(*ttl);
            }
            WalOp::LeaseDel { id } => {
                w.u8(6);
                w.i64(*id);
            }
            WalOp::Counters {
                revision,
                compacted,
            } => {
                w.u8(7);
                w.i64(*revision);
                w.i64(*compacted);
            }
        }
    }
}

/// The ops of one record's payload (after its sequence number), in order.
pub(crate) fn decode_ops(
    r: &mut Reader<'_>,
    mut f: impl FnMut(WalOp<'_>) -> Result<()>,
) -> Result<()> {
    let bad = |e: String| Error::Internal(format!("write-ahead log record: {e}"));
    while !r.is_empty() {
        let op = match r.u8().map_err(bad)? {
            1 => WalOp::KvPut {
                key: r.bytes().map_err(bad)?,
                data: r.bytes().map_err(bad)?,
            },
            2 => WalOp::KvDel {
                key: r.bytes().map_err(bad)?,
            },
            3 => WalOp::HistoryPut {
                revision: r.i64().map_err(bad)? as u64,
                data: r.bytes().map_err(bad)?,
            },
            4 => WalOp::HistoryCompact {
                upto: r.i64().map_err(bad)? as u64,
            },
            5 => WalOp::LeasePut {
                id: r.i64().map_err(bad)?,
                ttl: r.i64().map_err(bad)?,
            },
            6 => WalOp::LeaseDel {
                id: r.i64().map_err(bad)?,
            },
            7 => WalOp::Counters {
                revision: r.i64().map_err(bad)?,
                compacted: r.i64().map_err(bad)?,
            },
            t => return Err(bad(format!("unknown op {t}"))),
        };
        f(op)?;
    }
    Ok(())
}

/// A record read back: its sequence number and payload after it.
pub(crate) struct Record {
    pub seq: u64,
    pub ops: Vec<u8>,
}

/// The open segment being appended to.
pub(crate) struct Wal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    generation: u64,
    bytes: u64,
}

fn segment_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation:020}{SUFFIX}"))
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(generation) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((generation, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Whether `dir` holds any log segment.
pub(crate) fn has_segments(dir: &Path) -> Result<bool> {
    if !dir.exists() {
        return Ok(false);
    }
    Ok(!segments(dir)?.is_empty())
}

/// Reads every record in `dir`, oldest first. Returns them and the newest generation seen.
pub(crate) fn read_all(dir: &Path) -> Result<(Vec<Record>, u64)> {
    let segs = segments(dir)?;
    let mut records = Vec::new();
    let mut newest = 0;
    let last = segs.len().saturating_sub(1);
    for (i, (generation, path)) in segs.iter().enumerate() {
        newest = *generation;
        let data =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let corrupt = |reason: String| Error::Corrupt {
            path: path.clone(),
            reason,
        };
        let mut at = 0usize;
        let mut prev_seq: Option<u64> = None;
        while at < data.len() {
            let rest = &data[at..];
            let torn_tail = i == last;
            if rest.len() < HEADER {
                if torn_tail {
                    break;
                }
                return Err(corrupt(format!("truncated record header at offset {at}")));
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            let end = HEADER + len;
            if rest.len() < end {
                if torn_tail {
                    break;
                }
                return Err(corrupt(format!("truncated record at offset {at}")));
            }
            let payload = &rest[HEADER..end];
            if crc32fast::hash(payload) != crc {
                if torn_tail && rest.len() == end {
                    break;
                }
                return Err(corrupt(format!(
                    "checksum mismatch in record at offset {at}"
                )));
            }
            let mut r = Reader::new(payload);
            let seq = r.i64().map_err(corrupt)? as u64;
            if let Some(prev) = prev_seq
                && seq != prev + 1
            {
                return Err(corrupt(format!(
                    "record {seq} at offset {at} does not follow record {prev}"
                )));
            }
            prev_seq = Some(seq);
            records.push(Record {
                seq,
                ops: r.rest().to_vec(),
            });
            at += end;
        }
    }
    Ok((records, newest))
}

impl Wal {
    /// Starts segment `generation` in `dir` and removes every older one. Call only once what
    /// the older segments held is durable in the data file.
    pub fn start(dir: &Path, generation: u64) -> Result<Wal> {
        let path = segment_path(dir, generation);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        sync_dir(dir)?;
        for (g, old) in segments(dir)? {
            if g < generation {
                std::fs::remove_file(&old)
                    .map_err(|e| Error::io(format!("removing {}", old.display()), e))?;
            }
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            path,
            generation,
            bytes: 0,
        })
    }

    /// Appends one record (`payload` starts with its sequence number) and syncs it to disk.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| Error::Internal("write-ahead log record over 4 GiB".into()))?;
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        buf.extend_from_slice(payload);
        let io = |e| Error::io(format!("appending to {}", self.path.display()), e);
        self.file.write_all(&buf).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Bytes in the current segment.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Moves to a new segment once everything logged so far is durable in the data file.
    pub fn rotate(&mut self) -> Result<()> {
        *self = Wal::start(&self.dir, self.generation + 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u64, key: &[u8]) -> Vec<u8> {
        let mut w = Writer::default();
        w.i64(seq as i64);
        WalOp::KvPut { key, data: b"v" }.encode(&mut w);
        WalOp::HistoryCompact { upto: 3 }.encode(&mut w);
        w.buf
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1).unwrap();
        wal.append(&payload(1, b"a")).unwrap();
        wal.append(&payload(2, b"b")).unwrap();
        let (records, newest) = read_all(dir.path()).unwrap();
        assert_eq!((records.len(), newest), (2, 1));
        let mut ops = Vec::new();
        decode_ops(&mut Reader::new(&records[1].ops), |op| {
            ops.push(format!("{op:?}"));
            Ok(())
        })
        .unwrap();
        assert_eq!(ops.len(), 2);

        // A half-written last record is dropped.
        let path = segment_path(dir.path(), 1);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        assert_eq!(read_all(dir.path()).unwrap().0.len(), 1);

        // Damage before the last record is an error naming the file.
        let mut bad = full.clone();
        bad[HEADER + 2] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = read_all(dir.path()).err().unwrap().to_string();
        assert!(err.contains("wal-"), "{err}");
    }

    #[test]
    fn rotation_removes_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 7).unwrap();
        wal.append(&payload(1, b"a")).unwrap();
        wal.rotate().unwrap();
        let segs = segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].0, 8);
        assert!(read_all(dir.path()).unwrap().0.is_empty());
    }
}
