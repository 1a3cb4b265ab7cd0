//! The local store: memory or one embedded redb file, with a single group-committing writer,
//! MVCC history for past reads and watch resume, leases and snapshots.

mod backup;
mod batch;
mod hub;
mod leases;
mod recover;
mod tables;
mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redb::backends::InMemoryBackend;
use redb::{Builder, Database, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use crate::codec::decode_lease;
use crate::{
    Error, KeyRange, Lease, RangeOptions, RangeResponse, Result, SnapshotInfo, Store, Txn,
    TxnResponse, WatchOptions, WatchStream,
};
use hub::Hub;
use leases::Leases;
use tables::{HISTORY, KV, LEASES, META, META_COMPACTED, META_REVISION, db_err, meta, range_at};
pub use writer::WriterStats;
use writer::{WriteOp, WriteRequest, WriteResult};

/// Name of the data file inside a data directory.
pub const DATA_FILE: &str = "store.redb";

/// Automatic compaction: keep the last `retain_revisions` revisions of history, checked every
/// `interval`.
#[derive(Clone, Debug)]
pub struct AutoCompaction {
    pub retain_revisions: i64,
    pub interval: Duration,
}

/// Options of a local store.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Compact history automatically; `None` keeps it until [`Store::compact`] is called.
    pub auto_compaction: Option<AutoCompaction>,
    /// How often expired leases are looked for.
    pub lease_check_interval: Duration,
    /// Page cache of the embedded file, in bytes.
    pub cache_bytes: usize,
    /// Write-ahead log size after which the embedded store checkpoints (makes the data file
    /// durable and starts a new log).
    pub checkpoint_bytes: u64,
    /// Longest time between checkpoints while writes go on.
    pub checkpoint_interval: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            auto_compaction: Some(AutoCompaction {
                retain_revisions: 100_000,
                interval: Duration::from_secs(60),
            }),
            lease_check_interval: Duration::from_millis(200),
            cache_bytes: 64 << 20,
            checkpoint_bytes: 16 << 20,
            checkpoint_interval: Duration::from_secs(10),
        }
    }
}

/// State shared by the store handle, its writer thread and its watchers.
pub(crate) struct Shared {
    revision: AtomicI64,
    compacted: AtomicI64,
    leases: Mutex<Leases>,
    hub: Hub,
    failed: Mutex<Option<String>>,
    stats: writer::Stats,
}

impl Shared {
    fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn fail(&self, reason: String) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }
}

struct Inner {
    db: Arc<Database>,
    shared: Arc<Shared>,
    path: Option<PathBuf>,
    writer: Option<mpsc::Sender<WriteRequest>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .background
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        // Closing the queue stops the writer after its current batch; joining it releases the
        // file so that it can be opened again at once.
        self.writer.take();
        if let Some(t) = self.writer_thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
        // A read still running on a blocking thread (its caller gone) holds the database
        // for a moment more: wait for it (bounded), so that the file is free once the drop
        // returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.db) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A store in memory or in one embedded file. Cloning gives another handle to the same store.
/// It must be created inside a Tokio runtime (it starts background tasks).
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Internal(format!(
            "{} is in use by another process (is a tug server running on this data dir?)",
            path.display()
        )),
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            Error::io(format!("opening {}", path.display()), io)
        }
        other => Error::Corrupt {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

impl LocalStore {
    /// A store held in memory only.
    pub fn memory() -> Result<Self> {
        Self::memory_with(LocalOptions::default())
    }

    /// A store held in memory only, with options.
    pub fn memory_with(opts: LocalOptions) -> Result<Self> {
        let db = Builder::new()
            .create_with_backend(InMemoryBackend::new())
            .map_err(db_err)?;
        Self::start(db, None, opts, writer::Sink::Memory, 0)
    }

    /// Opens (creating if needed) the store in `data_dir`. Every acknowledged write is on disk:
    /// a write-ahead log record newer than the data file is replayed here.
    pub fn open(data_dir: &Path, opts: LocalOptions) -> Result<Self> {
        let existed = data_dir.join(DATA_FILE).exists();
        let db = Self::open_file(data_dir, &opts)?;
        let (wal, seq) = recover::replay(&db, data_dir, existed)?;
        let sink = writer::Sink::Wal {
            wal,
            checkpoint_bytes: opts.checkpoint_bytes,
            checkpoint_every: opts.checkpoint_interval,
            last_checkpoint: std::time::Instant::now(),
        };
        Self::start(db, Some(data_dir.join(DATA_FILE)), opts, sink, seq)
    }

    fn open_file(data_dir: &Path, opts: &LocalOptions) -> Result<Database> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
        let path = data_dir.join(DATA_FILE);
        let cache = opts.cache_bytes;
        // redb verifies every page checksum on open; a file damaged beyond that must still
        // never take the process down, so a panic inside redb is reported as corruption.
        let opened = std::panic::catch_unwind(|| {
            Builder::new()
                .set_cache_size(cache)
                .set_check_integrity_on_open(true)
                .create(&path)
        });
        match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(e)) => Err(open_error(&path, e)),
            Err(_) => Err(Error::Corrupt {
                path,
                reason: "the database could not be read".into(),
            }),
        }
    }

    fn start(
        db: Database,
        path: Option<PathBuf>,
        opts: LocalOptions,
        sink: writer::Sink,
        seq: u64,
    ) -> Result<Self> {
        let corrupt = |reason: String| match &path {
            Some(p) => Error::Corrupt {
                path: p.clone(),
                reason,
            },
            None => Error::Internal(reason),
        };
        // Create every table so that readers always find them.
        let wtx = db.begin_write().map_err(db_err)?;
        wtx.open_table(KV).map_err(db_err)?;
        wtx.open_table(HISTORY).map_err(db_err)?;
        wtx.open_table(LEASES).map_err(db_err)?;
        wtx.open_table(META).map_err(db_err)?;
        wtx.commit().map_err(db_err)?;

        let rtx = db.begin_read().map_err(db_err)?;
        let meta_t = rtx.open_table(META).map_err(db_err)?;
        let revision = meta(&meta_t, META_REVISION)?;
        let compacted = meta(&meta_t, META_COMPACTED)?;
        let mut leases = Leases::default();
        for item in rtx
            .open_table(LEASES)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (id, ttl) = item.map_err(db_err)?;
            leases.insert(id.value(), ttl.value());
        }
        // Checking every record's header also finds damage redb's page checksums cannot see.
        for item in rtx.open_table(KV).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let lease = decode_lease(v.value()).map_err(&corrupt)?;
            if lease != 0 {
                leases.attach(lease, k.value());
            }
        }
        if let Some((last, _)) = rtx
            .open_table(HISTORY)
            .map_err(db_err)?
            .last()
            .map_err(db_err)?
            .map(|(k, v)| (k.value(), v.value().len()))
            && last as i64 != revision
        {
            return Err(corrupt(format!(
                "history ends at revision {last} but the store is at {revision}"
            )));
        }
        drop(rtx);

        let shared = Arc::new(Shared {
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            leases: Mutex::new(leases),
            hub: Hub::new(revision),
            failed: Mutex::new(None),
            stats: writer::Stats::default(),
        });
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(4096);
        let writer_thread = {
            let db = db.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tug-store-writer".into())
                .spawn(move || writer::run(db, shared, rx, sink, seq))
                .map_err(|e| Error::io("starting the store writer", e))?
        };
        let store = LocalStore {
            inner: Arc::new(Inner {
                db,
                shared,
                path,
                writer: Some(tx),
                writer_thread: Some(writer_thread),
                background: Mutex::new(Vec::new()),
            }),
        };
        store.start_background(&opts);
        Ok(store)
    }

    fn start_background(&self, opts: &LocalOptions) {
        let mut tasks = Vec::new();
        let Some(writer) = self.inner.writer.as_ref().map(mpsc::Sender::downgrade) else {
            return;
        };
        let handle = Background {
            shared: self.inner.shared.clone(),
            writer,
        };
        tasks.push(tokio::spawn(expire_leases(
            handle.clone(),
            opts.lease_check_interval,
        )));
        if let Some(ac) = opts.auto_compaction.clone() {
            tasks.push(tokio::spawn(auto_compact(handle, ac)));
        }
        *self
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = tasks;
    }

    /// Counters of the writer: commits, requests, and time spent applying and committing.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.shared.stats.snapshot()
    }

    /// The data file, for an embedded store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    async fn submit(&self, op: WriteOp) -> Result<WriteResult> {
        submit(&self.inner, op).await
    }
}

async fn submit(inner: &Inner, op: WriteOp) -> Result<WriteResult> {
    let (reply, rx) = oneshot::channel();
    let writer = inner.writer.as_ref().ok_or(Error::Closed)?;
    writer
        .send(WriteRequest { op, reply })
        .await
        .map_err(|_| Error::Closed)?;
    rx.await.map_err(|_| Error::Closed)?
}

/// What the background tasks hold of a store: never the store itself, so that dropping its
/// last handle closes it at once (its file free to be opened again), whatever they are doing.
#[derive(Clone)]
struct Background {
    shared: Arc<Shared>,
    writer: mpsc::WeakSender<WriteRequest>,
}

impl Background {
    /// Queues `op` without waiting for room, and holds the writer only while queueing it: a
    /// store being dropped joins its writer, which ends once no sender is left. None once the
    /// store is gone; the writer's answer otherwise.
    async fn submit(&self, op: WriteOp) -> Option<Result<WriteResult>> {
        let (reply, rx) = oneshot::channel();
        let queued = self
            .writer
            .upgrade()?
            .try_send(WriteRequest { op, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    Error::Internal("the store's write queue is full".into())
                }
                mpsc::error::TrySendError::Closed(_) => Error::Closed,
            });
        if let Err(e) = queued {
            return Some(Err(e));
        }
        Some(rx.await.unwrap_or(Err(Error::Closed)))
    }

    fn closed(&self) -> bool {
        self.writer.strong_count() == 0
    }
}

async fn expire_leases(store: Background, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if store.closed() {
            return;
        }
        let expired = store
            .shared
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expired();
        for id in expired {
            match store.submit(WriteOp::LeaseRevoke(id)).await {
                None => return,
                Some(Ok(_) | Err(Error::LeaseNotFound(_))) => {
                    tracing::debug!(lease = id, "lease expired; its keys were deleted")
                }
                Some(Err(e)) => {
                    tracing::warn!(lease = id, error = %e, "revoking an expired lease failed")
                }
            }
        }
    }
}

async fn auto_compact(store: Background, ac: AutoCompaction) {
    let mut ticker = tokio::time::interval(ac.interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if store.closed() {
            return;
        }
        let target = store.shared.revision.load(Ordering::Acquire) - ac.retain_revisions;
        if target > store.shared.compacted.load(Ordering::Acquire) {
            match store.submit(WriteOp::Compact(target)).await {
                None => return,
                Some(Ok(_)) => tracing::info!(revision = target, "compacted history"),
                Some(Err(e)) => tracing::warn!(error = %e, "automatic compaction failed"),
            }
        }
    }
}

fn expect_txn(r: WriteResult) -> Result<TxnResponse> {
    match r {
        WriteResult::Txn(t) => Ok(t),
        _ => Err(Error::Internal(
            "writer answered a txn with another result".into(),
        )),
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn range(&self, range: KeyRange, opts: RangeOptions) -> Result<RangeResponse> {
        crate::check_key(&range.start)?;
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || {
            let rtx = db.begin_read().map_err(db_err)?;
            let meta_t = rtx.open_table(META).map_err(db_err)?;
            let current = meta(&meta_t, META_REVISION)?;
            let compacted = meta(&meta_t, META_COMPACTED)?;
            let kv = rtx.open_table(KV).map_err(db_err)?;
            let history = rtx.open_table(HISTORY).map_err(db_err)?;
            range_at(&kv, &history, &range, &opts, current, compacted)
        })
        .await
        .map_err(|e| Error::Internal(format!("range task: {e}")))?
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        crate::check_limits(&txn)?;
        expect_txn(self.submit(WriteOp::Txn(txn)).await?)
    }

    async fn watch(&self, range: KeyRange, opts: WatchOptions) -> Result<WatchStream> {
        let shared = &self.inner.shared;
        hub::start(
            &shared.hub,
            Arc::downgrade(&self.inner.db),
            &shared.compacted,
            range,
            opts,
        )
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.submit(WriteOp::Compact(revision)).await.map(|_| ())
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease> {
        if ttl_secs <= 0 {
            return Err(Error::InvalidTtl(ttl_secs));
        }
        loop {
            let id = new_lease_id();
            match self.submit(WriteOp::LeaseGrant { id, ttl: ttl_secs }).await {
                Ok(WriteResult::Lease(l)) => return Ok(l),
                Ok(_) => return Err(Error::Internal("lease grant gave no lease".into())),
                // An id collision: pick another.
                Err(Error::Internal(m)) if m.contains("already exists") => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        self.inner
            .shared
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keep_alive(id)
            .ok_or(Error::LeaseNotFound(id))
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        self.submit(WriteOp::LeaseRevoke(id)).await.map(|_| ())
    }

    async fn snapshot(&self, out: &mut (dyn std::io::Write + Send)) -> Result<SnapshotInfo> {
        // One read transaction, on a blocking thread, produces the snapshot in chunks; this
        // task writes them out. Writes go on meanwhile.
        let db = self.inner.db.clone();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let producer = tokio::task::spawn_blocking(move || {
            backup::write_snapshot(&*db, backup::ChunkSink::new(tx))
        });
        let mut bytes = 0u64;
        let mut write_err = None;
        while let Some(chunk) = rx.recv().await {
            bytes += chunk.len() as u64;
            if let Err(e) = out.write_all(&chunk) {
                write_err = Some(Error::io("writing the snapshot", e));
                break;
            }
        }
        drop(rx);
        let revision = producer
            .await
            .map_err(|e| Error::Internal(format!("snapshot task: {e}")))?;
        if let Some(e) = write_err {
            return Err(e);
        }
        let revision = revision?;
        out.flush()
            .map_err(|e| Error::io("writing the snapshot", e))?;
        Ok(SnapshotInfo { revision, bytes })
    }
}

fn new_lease_id() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicI64 = AtomicI64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    ((nanos ^ (n << 40)) & 0x3fff_ffff_ffff_ffff).max(1)
}
