//! The single writer of the local store. It takes write requests from a queue, applies as many
//! as are waiting in one redb transaction, makes them durable with one fsync (group commit:
//! one write-ahead log append, see `wal.rs`), commits, then publishes their events and answers
//! each caller.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::batch::WriteTables;
use super::leases::Leases;
use super::tables::{db_err, range_at};
use super::wal::Wal;
use crate::codec::{decode_kv, encode_events, encode_kv};
use crate::{
    Compare, CompareOp, CompareTarget, DeleteResponse, Error, Event, EventKind, KeyValue, Lease,
    PutResponse, Result, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

/// Most requests applied in one commit.
const MAX_BATCH: usize = 512;

/// A write the writer applies.
pub(crate) enum WriteOp {
    Txn(Txn),
    Compact(i64),
    LeaseGrant { id: i64, ttl: i64 },
    LeaseRevoke(i64),
}

/// What a write returns.
pub(crate) enum WriteResult {
    Txn(TxnResponse),
    Done,
    Lease(Lease),
}

/// A queued write and where to send its result.
pub(crate) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteResult>>,
}

/// Counters the writer keeps (for metrics and benchmarks).
#[derive(Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    requests: AtomicU64,
    apply_nanos: AtomicU64,
    commit_nanos: AtomicU64,
}

/// A reading of the writer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (each with one fsync on a file store).
    pub commits: u64,
    /// Requests applied in them.
    pub requests: u64,
    /// Time spent applying requests.
    pub apply: Duration,
    /// Time spent committing (writing and syncing).
    pub commit: Duration,
}

impl Stats {
    pub fn snapshot(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            apply: Duration::from_nanos(self.apply_nanos.load(Ordering::Relaxed)),
            commit: Duration::from_nanos(self.commit_nanos.load(Ordering::Relaxed)),
        }
    }

    fn record(&self, requests: usize, apply: Duration, commit: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.apply_nanos
            .fetch_add(apply.as_nanos() as u64, Ordering::Relaxed);
        self.commit_nanos
            .fetch_add(commit.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The events one revision produced.
pub(crate) type RevisionEvents = (i64, Arc<Vec<Event>>);

/// Where committed batches become durable.
pub(crate) enum Sink {
    /// The in-memory store: nothing to make durable.
    Memory,
    /// The embedded file: each batch is logged (and synced) before its redb commit; every
    /// `checkpoint_bytes` of log or `checkpoint_every`, a durable redb commit starts a new log.
    Wal {
        wal: Wal,
        checkpoint_bytes: u64,
        checkpoint_every: Duration,
        last_checkpoint: Instant,
    },
}

impl Sink {
    fn checkpoint_due(&self) -> bool {
        match self {
            Sink::Memory => false,
            Sink::Wal {
                wal,
                checkpoint_bytes,
                checkpoint_every,
                last_checkpoint,
            } => wal.bytes() >= *checkpoint_bytes || last_checkpoint.elapsed() >= *checkpoint_every,
        }
    }
}

/// State a batch changes and must roll forward only after its commit.
struct Counters {
    revision: i64,
    compacted: i64,
}

/// Runs the writer until every sender is gone, then checkpoints.
pub(crate) fn run(
    db: Arc<Database>,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<WriteRequest>,
    mut sink: Sink,
    mut seq: u64,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if let Some(reason) = shared.failed() {
            for req in batch {
                let _ = req.reply.send(Err(Error::Internal(reason.clone())));
            }
            continue;
        }
        let mut counters = Counters {
            revision: shared.revision.load(Ordering::Acquire),
            compacted: shared.compacted.load(Ordering::Acquire),
        };
        let mut published: Vec<RevisionEvents> = Vec::new();
        let outcome = {
            let mut leases = shared
                .leases
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            apply_batch(
                &db,
                &mut batch,
                &mut counters,
                &mut leases,
                &mut published,
                &mut sink,
                seq + 1,
                &shared.stats,
            )
        };
        match outcome {
            Ok(results) => {
                seq += 1;
                shared
                    .compacted
                    .store(counters.compacted, Ordering::Release);
                shared.revision.store(counters.revision, Ordering::Release);
                shared.hub.publish(published, counters.revision);
                for (req, res) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(res);
                }
            }
            Err(e) => {
                // The batch may or may not be durable, and memory may no longer match the
                // file. Refuse further writes rather than acknowledge anything uncertain.
                let reason = format!("store writer failed, restart to recover: {e}");
                tracing::error!(%reason);
                shared.fail(reason.clone());
                for req in batch {
                    let _ = req.reply.send(Err(Error::Internal(reason.clone())));
                }
            }
        }
    }
    // A clean stop leaves everything in the data file and an empty log.
    if shared.failed().is_none()
        && matches!(sink, Sink::Wal { .. })
        && let Err(e) = checkpoint(&db, &mut sink, seq + 1)
    {
        tracing::warn!(error = %e, "final checkpoint failed; the log will be replayed on open");
    }
}

/// Makes everything committed so far durable in the data file, then starts a new log segment.
fn checkpoint(db: &Database, sink: &mut Sink, seq: u64) -> Result<()> {
    let mut wtx = db.begin_write().map_err(db_err)?;
    wtx.set_durability(Durability::Immediate)
        .map_err(|e| Error::Internal(format!("durability: {e}")))?;
    WriteTables::open(&wtx, false)?.put_wal_seq(seq)?;
    wtx.commit().map_err(db_err)?;
    if let Sink::Wal {
        wal,
        last_checkpoint,
        ..
    } = sink
    {
        wal.rotate()?;
        *last_checkpoint = Instant::now();
    }
    Ok(())
}

/// Applies a batch in one transaction and makes it durable: through the log, or by a durable
/// commit at a checkpoint. Per-request errors (a failed compare is not one; an unknown lease
/// is) are returned in the inner results; the outer error means the batch itself failed.
#[allow(clippy::too_many_arguments)]
fn apply_batch(
    db: &Database,
    batch: &mut [WriteRequest],
    counters: &mut Counters,
    leases: &mut Leases,
    published: &mut Vec<RevisionEvents>,
    sink: &mut Sink,
    seq: u64,
    stats: &Stats,
) -> Result<Vec<Result<WriteResult>>> {
    let started = Instant::now();
    let checkpoint = sink.checkpoint_due();
    let logged = matches!(sink, Sink::Wal { .. }) && !checkpoint;
    let mut wtx = db.begin_write().map_err(db_err)?;
    wtx.set_durability(if logged {
        Durability::None
    } else {
        Durability::Immediate
    })
    .map_err(|e| Error::Internal(format!("durability: {e}")))?;
    let mut results = Vec::with_capacity(batch.len());
    let record = {
        let mut t = WriteTables::open(&wtx, logged)?;
        for req in batch.iter_mut() {
            let op = std::mem::replace(&mut req.op, WriteOp::Compact(0));
            results.push(apply(&mut t, op, counters, leases, published)?);
        }
        t.put_counters(counters.revision, counters.compacted)?;
        t.put_wal_seq(seq)?;
        t.take_log()
    };
    let applied = Instant::now();
    if let (Sink::Wal { wal, .. }, Some(ops)) = (&mut *sink, record) {
        // The record is on disk before redb (or any reader) sees the batch.
        let mut payload = Vec::with_capacity(8 + ops.len());
        payload.extend_from_slice(&(seq as i64).to_le_bytes());
        payload.extend_from_slice(&ops);
        wal.append(&payload)?;
    }
    wtx.commit().map_err(db_err)?;
    if checkpoint
        && let Sink::Wal {
            wal,
            last_checkpoint,
            ..
        } = sink
    {
        wal.rotate()?;
        *last_checkpoint = Instant::now();
        tracing::debug!(elapsed = ?applied.elapsed(), "store checkpoint");
    }
    stats.record(batch.len(), applied - started, applied.elapsed());
    Ok(results)
}

/// Applies one request. `Ok(Err(_))` is an error for that request only, returned before it
/// changed anything.
fn apply(
    t: &mut WriteTables<'_>,
    op: WriteOp,
    c: &mut Counters,
    leases: &mut Leases,
    published: &mut Vec<RevisionEvents>,
) -> Result<Result<WriteResult>> {
    match op {
        WriteOp::Txn(txn) => Ok(apply_txn(t, txn, c, leases, published)?.map(WriteResult::Txn)),
        WriteOp::Compact(rev) => {
            if rev > c.revision {
                return Ok(Err(Error::FutureRevision {
                    requested: rev,
                    current: c.revision,
                }));
            }
            if rev <= c.compacted {
                return Ok(Err(Error::Compacted {
                    requested: rev,
                    compacted: c.compacted,
                }));
            }
            t.compact_history(rev as u64)?;
            c.compacted = rev;
            Ok(Ok(WriteResult::Done))
        }
        WriteOp::LeaseGrant { id, ttl } => {
            if leases.contains(id) {
                return Ok(Err(Error::Internal(format!("lease {id} already exists"))));
            }
            t.put_lease(id, ttl)?;
            leases.insert(id, ttl);
            Ok(Ok(WriteResult::Lease(Lease { id, ttl })))
        }
        WriteOp::LeaseRevoke(id) => {
            let Some(keys) = leases.remove(id) else {
                return Ok(Err(Error::LeaseNotFound(id)));
            };
            t.del_lease(id)?;
            let rev = c.revision + 1;
            let mut events = Vec::new();
            for key in keys {
                if let Some(prev) = remove_key(t, &key, leases)? {
                    events.push(delete_event(key, rev, prev));
                }
            }
            record(t, c, events, published)?;
            Ok(Ok(WriteResult::Done))
        }
    }
}

fn delete_event(key: Vec<u8>, rev: i64, prev: KeyValue) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key,
            mod_revision: rev,
            ..Default::default()
        },
        prev_kv: Some(prev),
    }
}

/// Records the events of one revision, if there are any, and moves the revision.
fn record(
    t: &mut WriteTables<'_>,
    c: &mut Counters,
    events: Vec<Event>,
    published: &mut Vec<RevisionEvents>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    c.revision += 1;
    t.put_history(c.revision as u64, &encode_events(&events))?;
    published.push((c.revision, Arc::new(events)));
    Ok(())
}

fn get_key(t: &WriteTables<'_>, key: &[u8]) -> Result<Option<KeyValue>> {
    match t.kv.get(key).map_err(db_err)? {
        Some(v) => Ok(Some(
            decode_kv(key, v.value(), false).map_err(Error::Internal)?,
        )),
        None => Ok(None),
    }
}

fn remove_key(
    t: &mut WriteTables<'_>,
    key: &[u8],
    leases: &mut Leases,
) -> Result<Option<KeyValue>> {
    let prev = match t.del_kv(key)? {
        Some(v) => Some(decode_kv(key, &v, false).map_err(Error::Internal)?),
        None => None,
    };
    if let Some(p) = &prev
        && p.lease != 0
    {
        leases.detach(p.lease, key);
    }
    Ok(prev)
}

fn compare_holds(t: &WriteTables<'_>, cmp: &Compare) -> Result<bool> {
    let kv = get_key(t, &cmp.key)?;
    let kv = kv.as_ref();
    let ord = match &cmp.target {
        CompareTarget::Value(v) => match kv {
            // etcd: a value compare against a missing key is false whatever the operator.
            None => return Ok(false),
            Some(kv) => kv.value.as_slice().cmp(v.as_slice()),
        },
        CompareTarget::Version(n) => kv.map_or(0, |k| k.version).cmp(n),
        CompareTarget::CreateRevision(n) => kv.map_or(0, |k| k.create_revision).cmp(n),
        CompareTarget::ModRevision(n) => kv.map_or(0, |k| k.mod_revision).cmp(n),
        CompareTarget::Lease(n) => kv.map_or(0, |k| k.lease).cmp(n),
    };
    Ok(match cmp.op {
        CompareOp::Equal => ord.is_eq(),
        CompareOp::NotEqual => ord.is_ne(),
        CompareOp::Greater => ord.is_gt(),
        CompareOp::Less => ord.is_lt(),
    })
}

fn apply_txn(
    t: &mut WriteTables<'_>,
    txn: Txn,
    c: &mut Counters,
    leases: &mut Leases,
    published: &mut Vec<RevisionEvents>,
) -> Result<Result<TxnResponse>> {
    let mut succeeded = true;
    for cmp in &txn.compare {
        if !compare_holds(t, cmp)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { txn.success } else { txn.failure };
    // Everything that can refuse the request is checked before anything changes.
    for op in &ops {
        match op {
            TxnOp::Put(p) if p.lease != 0 && !leases.is_live(p.lease) => {
                return Ok(Err(Error::LeaseNotFound(p.lease)));
            }
            TxnOp::Range(_, o) if o.revision > c.revision => {
                return Ok(Err(Error::FutureRevision {
                    requested: o.revision,
                    current: c.revision,
                }));
            }
            TxnOp::Range(_, o) if o.revision > 0 && o.revision < c.compacted => {
                return Ok(Err(Error::Compacted {
                    requested: o.revision,
                    compacted: c.compacted,
                }));
            }
            _ => {}
        }
    }
    let rev = c.revision + 1;
    let mut events = Vec::new();
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        responses.push(match op {
            TxnOp::Range(range, opts) => {
                // Reads inside a transaction see the writes before them in it.
                let mut resp = range_at(&t.kv, &t.history, &range, &opts, c.revision, c.compacted)?;
                resp.revision = rev;
                TxnOpResponse::Range(resp)
            }
            TxnOp::Put(p) => {
                let prev = get_key(t, &p.key)?;
                let kv = KeyValue {
                    create_revision: prev.as_ref().map_or(rev, |k| k.create_revision),
                    mod_revision: rev,
                    version: prev.as_ref().map_or(1, |k| k.version + 1),
                    lease: p.lease,
                    key: p.key,
                    value: p.value,
                };
                t.put_kv(&kv.key, &encode_kv(&kv))?;
                if let Some(old) = &prev
                    && old.lease != 0
                    && old.lease != kv.lease
                {
                    leases.detach(old.lease, &kv.key);
                }
                if kv.lease != 0 {
                    leases.attach(kv.lease, &kv.key);
                }
                events.push(Event {
                    kind: EventKind::Put,
                    kv,
                    prev_kv: prev.clone(),
                });
                TxnOpResponse::Put(PutResponse {
                    prev_kv: if p.prev_kv { prev } else { None },
                    revision: rev,
                })
            }
            TxnOp::Delete(d) => {
                let mut keys = Vec::new();
                super::tables::scan_live(&t.kv, &d.range, true, |kv| {
                    keys.push(kv.key);
                    true
                })?;
                let mut resp = DeleteResponse {
                    revision: rev,
                    ..Default::default()
                };
                for key in keys {
                    if let Some(prev) = remove_key(t, &key, leases)? {
                        resp.deleted += 1;
                        if d.prev_kv {
                            resp.prev_kvs.push(prev.clone());
                        }
                        events.push(delete_event(key, rev, prev));
                    }
                }
                TxnOpResponse::Delete(resp)
            }
        });
    }
    record(t, c, events, published)?;
    // Every response carries the revision after the transaction.
    for r in &mut responses {
        match r {
            TxnOpResponse::Range(x) => x.revision = c.revision,
            TxnOpResponse::Put(x) => x.revision = c.revision,
            TxnOpResponse::Delete(x) => x.revision = c.revision,
        }
    }
    Ok(Ok(TxnResponse {
        succeeded,
        responses,
        revision: c.revision,
    }))
}
