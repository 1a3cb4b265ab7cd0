//! Opening the embedded store after a stop or a crash: replaying the write-ahead log records
//! that the data file does not include yet.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase};

use super::batch::WriteTables;
use super::tables::{META, META_WAL_SEQ, db_err, meta};
use super::wal::{self, Wal};
use crate::codec::Reader;
use crate::{Error, Result};

/// Replays every log record newer than the data file, makes the result durable, and starts a
/// new log. Returns the log and the sequence number of the last record applied.
/// `existed` tells whether the data file was there before this open.
pub(crate) fn replay(db: &Database, dir: &Path, existed: bool) -> Result<(Wal, u64)> {
    let durable_seq = {
        let rtx = db.begin_read().map_err(db_err)?;
        match rtx.open_table(META) {
            Ok(t) => meta(&t, META_WAL_SEQ)? as u64,
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(db_err(e)),
        }
    };
    let (records, newest) = wal::read_all(dir)?;
    let pending: Vec<_> = records
        .into_iter()
        .filter(|r| r.seq > durable_seq)
        .collect();
    if !existed && !pending.is_empty() {
        return Err(Error::Corrupt {
            path: dir.join(super::DATA_FILE),
            reason: "the data file is missing but its write-ahead log is present; restore from a snapshot".into(),
        });
    }
    let mut seq = durable_seq;
    if !pending.is_empty() {
        let mut wtx = db.begin_write().map_err(db_err)?;
        wtx.set_durability(Durability::Immediate)
            .map_err(|e| Error::Internal(format!("durability: {e}")))?;
        {
            let mut t = WriteTables::open(&wtx, false)?;
            for rec in &pending {
                if rec.seq != seq + 1 {
                    return Err(Error::Corrupt {
                        path: dir.to_path_buf(),
                        reason: format!(
                            "write-ahead log record {} is missing (next present is {})",
                            seq + 1,
                            rec.seq
                        ),
                    });
                }
                wal::decode_ops(&mut Reader::new(&rec.ops), |op| t.replay(op))?;
                seq = rec.seq;
            }
            t.put_wal_seq(seq)?;
        }
        wtx.commit().map_err(db_err)?;
        tracing::info!(records = pending.len(), "replayed the write-ahead log");
    }
    Ok((Wal::start(dir, newest + 1)?, seq))
}
