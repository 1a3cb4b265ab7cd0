//! Snapshots of the local store: writing one from a read transaction (in this process or from
//! another one while a server writes), and restoring one into an empty store.

use std::fs::File;
use std::path::Path;

use redb::backends::InMemoryBackend;
use redb::{Builder, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::mpsc;

use super::tables::{HISTORY, KV, LEASES, META, META_COMPACTED, META_REVISION, db_err, meta};
use super::{DATA_FILE, LocalOptions, LocalStore};
use crate::snapshot::{self, Record, SnapshotWriter};
use crate::{Error, Result, SnapshotInfo};

impl LocalStore {
    /// Builds an in-memory store from a snapshot held in `bytes`.
    pub fn memory_from_snapshot(bytes: &[u8], opts: LocalOptions) -> Result<Self> {
        let name = Path::new("<snapshot>");
        snapshot::verify(std::io::Cursor::new(bytes), name)?;
        let db = Builder::new()
            .create_with_backend(InMemoryBackend::new())
            .map_err(db_err)?;
        load_snapshot(&db, std::io::Cursor::new(bytes), name)?;
        Self::start(db, None, opts, super::writer::Sink::Memory, 0)
    }

    /// Restores the snapshot file `snapshot` into `data_dir`, which must hold no store yet.
    /// Nothing is written unless the whole snapshot checks out.
    pub fn restore(snapshot_file: &Path, data_dir: &Path) -> Result<SnapshotInfo> {
        let open = || {
            File::open(snapshot_file)
                .map_err(|e| Error::io(format!("opening {}", snapshot_file.display()), e))
        };
        snapshot::verify(open()?, snapshot_file)?;
        let target = data_dir.join(DATA_FILE);
        if super::wal::has_segments(data_dir)? {
            return Err(Error::NotEmpty(format!(
                "{} holds write-ahead log files of another store: restore needs an empty data dir",
                data_dir.display()
            )));
        }
        if target.exists() {
            return Err(Error::NotEmpty(format!(
                "{} already exists: restore needs an empty data dir",
                target.display()
            )));
        }
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
        let tmp = data_dir.join(format!("{DATA_FILE}.restoring"));
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let db = Database::create(&tmp).map_err(db_err)?;
            let info = load_snapshot(&db, open()?, snapshot_file)?;
            drop(db);
            std::fs::rename(&tmp, &target)
                .map_err(|e| Error::io(format!("renaming into {}", target.display()), e))?;
            if let Ok(dir) = File::open(data_dir) {
                let _ = dir.sync_all();
            }
            Ok(info)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Loads a verified snapshot into an empty database; returns its revision and size.
fn load_snapshot(
    db: &Database,
    input: impl std::io::Read + std::io::Seek,
    name: &Path,
) -> Result<SnapshotInfo> {
    let wtx = db.begin_write().map_err(db_err)?;
    let mut info = SnapshotInfo::default();
    {
        let mut kv = wtx.open_table(KV).map_err(db_err)?;
        let mut history = wtx.open_table(HISTORY).map_err(db_err)?;
        let mut leases = wtx.open_table(LEASES).map_err(db_err)?;
        let mut meta_t = wtx.open_table(META).map_err(db_err)?;
        if !kv.is_empty().map_err(db_err)? || meta(&meta_t, META_REVISION)? != 0 {
            return Err(Error::NotEmpty("restore needs an empty store".into()));
        }
        snapshot::read_records(input, name, |rec| {
            match rec {
                Record::Meta {
                    revision,
                    compacted,
                } => {
                    info.revision = revision;
                    meta_t.insert(META_REVISION, revision).map_err(db_err)?;
                    meta_t.insert(META_COMPACTED, compacted).map_err(db_err)?;
                }
                Record::Kv { key, data } => {
                    info.bytes += (key.len() + data.len()) as u64;
                    kv.insert(key.as_slice(), data.as_slice()).map_err(db_err)?;
                }
                Record::History { revision, data } => {
                    history
                        .insert(revision as u64, data.as_slice())
                        .map_err(db_err)?;
                }
                Record::Lease { id, ttl } => {
                    leases.insert(id, ttl).map_err(db_err)?;
                }
            }
            Ok(())
        })?;
    }
    wtx.commit().map_err(db_err)?;
    Ok(info)
}

/// A `Write` that hands 1 MiB chunks to a channel.
pub(super) struct ChunkSink {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl ChunkSink {
    pub(super) fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "snapshot reader gone")
        })
    }
}

/// Writes a consistent snapshot of `db` from one read transaction; returns its revision.
pub(super) fn write_snapshot(db: &impl ReadableDatabase, out: impl std::io::Write) -> Result<i64> {
    let io = |e| Error::io("writing the snapshot", e);
    let rtx = db.begin_read().map_err(db_err)?;
    let meta_t = rtx.open_table(META).map_err(db_err)?;
    let revision = meta(&meta_t, META_REVISION)?;
    let compacted = meta(&meta_t, META_COMPACTED)?;
    let mut w = SnapshotWriter::new(out).map_err(io)?;
    w.record(&Record::Meta {
        revision,
        compacted,
    })
    .map_err(io)?;
    for item in rtx.open_table(KV).map_err(db_err)?.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        w.record(&Record::Kv {
            key: k.value().to_vec(),
            data: v.value().to_vec(),
        })
        .map_err(io)?;
    }
    for item in rtx
        .open_table(HISTORY)
        .map_err(db_err)?
        .iter()
        .map_err(db_err)?
    {
        let (k, v) = item.map_err(db_err)?;
        w.record(&Record::History {
            revision: k.value() as i64,
            data: v.value().to_vec(),
        })
        .map_err(io)?;
    }
    for item in rtx
        .open_table(LEASES)
        .map_err(db_err)?
        .iter()
        .map_err(db_err)?
    {
        let (k, v) = item.map_err(db_err)?;
        w.record(&Record::Lease {
            id: k.value(),
            ttl: v.value(),
        })
        .map_err(io)?;
    }
    let (_, mut out) = w.finish().map_err(io)?;
    out.flush().map_err(io)?;
    Ok(revision)
}
