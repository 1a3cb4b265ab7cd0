//! The snapshot file format of the local store.
//!
//! A snapshot is `TUGSNAP1`, then records (`tag: u8`, `len: u32`, payload), then an end record
//! and the SHA-256 of everything before the hash. Restoring checks the hash over the whole
//! file before it writes anything, so a damaged snapshot changes nothing.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"TUGSNAP1";
const HASH_LEN: u64 = 32;

const TAG_META: u8 = 1;
const TAG_KV: u8 = 2;
const TAG_HISTORY: u8 = 3;
const TAG_LEASE: u8 = 4;
const TAG_END: u8 = 0xff;

/// One record of a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Meta { revision: i64, compacted: i64 },
    Kv { key: Vec<u8>, data: Vec<u8> },
    History { revision: i64, data: Vec<u8> },
    Lease { id: i64, ttl: i64 },
}

/// Writes records, hashing as it goes.
pub(crate) struct SnapshotWriter<W: Write> {
    out: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot.
    pub fn new(out: W) -> std::io::Result<Self> {
        let mut w = Self {
            out,
            hasher: Sha256::new(),
            bytes: 0,
        };
        w.write(MAGIC)?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hasher.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b)
    }

    /// Appends a record.
    pub fn record(&mut self, r: &Record) -> std::io::Result<()> {
        let mut w = Writer::default();
        let tag = match r {
            Record::Meta {
                revision,
                compacted,
            } => {
                w.i64(*revision);
                w.i64(*compacted);
                TAG_META
            }
            Record::Kv { key, data } => {
                w.bytes(key);
                w.buf.extend_from_slice(data);
                TAG_KV
            }
            Record::History { revision, data } => {
                w.i64(*revision);
                w.buf.extend_from_slice(data);
                TAG_HISTORY
            }
            Record::Lease { id, ttl } => {
                w.i64(*id);
                w.i64(*ttl);
                TAG_LEASE
            }
        };
        self.frame(tag, &w.buf)
    }

    fn frame(&mut self, tag: u8, payload: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(payload.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "snapshot record too large")
        })?;
        self.write(&[tag])?;
        self.write(&len.to_le_bytes())?;
        self.write(payload)
    }

    /// Ends the snapshot with the checksum; returns the bytes written and the writer.
    pub fn finish(mut self) -> std::io::Result<(u64, W)> {
        self.frame(TAG_END, &[])?;
        let hash = self.hasher.finalize_reset();
        self.out.write_all(&hash)?;
        self.out.flush()?;
        Ok((self.bytes + HASH_LEN, self.out))
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks the magic and the checksum of a whole snapshot. `name` names it in errors.
pub(crate) fn verify(mut input: impl Read + Seek, name: &Path) -> Result<()> {
    let len = input
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
    if len < MAGIC.len() as u64 + HASH_LEN + 5 {
        return Err(corrupt(
            name,
            format!("only {len} bytes: not a tugboat snapshot"),
        ));
    }
    input
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
    let mut body = (&mut input).take(len - HASH_LEN);
    let mut hasher = Sha256::new();
    let mut magic = [0u8; 8];
    body.read_exact(&mut magic)
        .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
    if &magic != MAGIC {
        return Err(corrupt(name, "bad magic: not a tugboat snapshot"));
    }
    hasher.update(magic);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let mut want = [0u8; 32];
    input
        .read_exact(&mut want)
        .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
    if hasher.finalize().as_slice() != want {
        return Err(corrupt(name, "checksum mismatch: the snapshot is damaged"));
    }
    Ok(())
}

/// Reads every record of a snapshot already checked by [`verify`], in order.
pub(crate) fn read_records(
    input: impl Read + Seek,
    name: &Path,
    mut f: impl FnMut(Record) -> Result<()>,
) -> Result<()> {
    let mut input = std::io::BufReader::new(input);
    let io = |e| Error::io(format!("reading {}", name.display()), e);
    input
        .seek(SeekFrom::Start(MAGIC.len() as u64))
        .map_err(io)?;
    loop {
        let mut head = [0u8; 5];
        input.read_exact(&mut head).map_err(io)?;
        let tag = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut payload = vec![0u8; len];
        input.read_exact(&mut payload).map_err(io)?;
        let mut r = Reader::new(&payload);
        let parsed = (|| -> std::result::Result<Option<Record>, String> {
            Ok(Some(match tag {
                TAG_META => Record::Meta {
                    revision: r.i64()?,
                    compacted: r.i64()?,
                },
                TAG_KV => Record::Kv {
                    key: r.bytes()?.to_vec(),
                    data: r.rest().to_vec(),
                },
                TAG_HISTORY => Record::History {
                    revision: r.i64()?,
                    data: r.rest().to_vec(),
                },
                TAG_LEASE => Record::Lease {
                    id: r.i64()?,
                    ttl: r.i64()?,
                },
                TAG_END => return Ok(None),
                t => return Err(format!("unknown record tag {t}")),
            }))
        })()
        .map_err(|reason| corrupt(name, reason))?;
        match parsed {
            Some(rec) => f(rec)?,
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn sample() -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new()).unwrap();
        w.record(&Record::Meta {
            revision: 9,
            compacted: 2,
        })
        .unwrap();
        w.record(&Record::Kv {
            key: b"a".to_vec(),
            data: b"xyz".to_vec(),
        })
        .unwrap();
        w.record(&Record::Lease { id: 5, ttl: 10 }).unwrap();
        w.finish().unwrap().1
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        verify(Cursor::new(&bytes), Path::new("s")).unwrap();
        let mut got = Vec::new();
        read_records(Cursor::new(&bytes), Path::new("s"), |r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], Record::Lease { id: 5, ttl: 10 });
    }

    #[test]
    fn any_flipped_byte_or_truncation_fails_verification() {
        let bytes = sample();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let err = verify(Cursor::new(&b), Path::new("snap.db")).unwrap_err();
            assert!(err.to_string().contains("snap.db"), "{err}");
        }
        for cut in 0..bytes.len() {
            assert!(verify(Cursor::new(&bytes[..cut]), Path::new("s")).is_err());
        }
    }
}
