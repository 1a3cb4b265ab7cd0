//! The single writer of the local store. It takes write requests from a queue, applies as many
//! as are waiting in one redb transaction, commits them with one fsync (group commit), then
//! publishes their events and answers each caller.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::leases::Leases;
use super::tables::{HISTORY, KV, LEASES, META, META_COMPACTED, META_REVISION, db_err, range_at};
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

struct Tables<'t> {
    kv: Table<'t, &'static [u8], &'static [u8]>,
    history: Table<'t, u64, &'static [u8]>,
    leases: Table<'t, i64, i64>,
}

/// State a batch changes and must roll forward only after its commit.
struct Counters {
    revision: i64,
    compacted: i64,
}

/// Runs the writer until every sender is gone.
pub(crate) fn run(
    db: Arc<Database>,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<WriteRequest>,
    durable: bool,
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
                durable,
                &shared.stats,
            )
        };
        match outcome {
            Ok(results) => {
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
                // The commit failed: memory no longer matches the file. Refuse further writes
                // rather than acknowledge anything that might not be durable.
                let reason = format!("store writer failed, restart to recover: {e}");
                tracing::error!(%reason);
                shared.fail(reason.clone());
                for req in batch {
                    let _ = req.reply.send(Err(Error::Internal(reason.clone())));
                }
            }
        }
    }
}

/// Applies a batch in one transaction and commits it. Per-request errors (a failed compare is
/// not one; an unknown lease is) are returned in the inner results; the outer error means the
/// transaction itself failed.
fn apply_batch(
    db: &Database,
    batch: &mut [WriteRequest],
    counters: &mut Counters,
    leases: &mut Leases,
    published: &mut Vec<RevisionEvents>,
    durable: bool,
    stats: &Stats,
) -> Result<Vec<Result<WriteResult>>> {
    let started = Instant::now();
    let mut wtx = db.begin_write().map_err(db_err)?;
    wtx.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })
    .map_err(|e| Error::Internal(format!("durability: {e}")))?;
    let mut results = Vec::with_capacity(batch.len());
    {
        let mut t = Tables {
            kv: wtx.open_table(KV).map_err(db_err)?,
            history: wtx.open_table(HISTORY).map_err(db_err)?,
            leases: wtx.open_table(LEASES).map_err(db_err)?,
        };
        let mut meta = wtx.open_table(META).map_err(db_err)?;
        for req in batch.iter_mut() {
            let op = std::mem::replace(&mut req.op, WriteOp::Compact(0));
            results.push(apply(&mut t, op, counters, leases, published)?);
        }
        meta.insert(META_REVISION, counters.revision)
            .map_err(db_err)?;
        meta.insert(META_COMPACTED, counters.compacted)
            .map_err(db_err)?;
    }
    let applied = Instant::now();
    wtx.commit().map_err(db_err)?;
    stats.record(batch.len(), applied - started, applied.elapsed());
    Ok(results)
}

/// Applies one request. `Ok(Err(_))` is an error for that request only, returned before it
/// changed anything.
fn apply(
    t: &mut Tables<'_>,
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
            t.history
                .retain_in(..=(rev as u64), |_, _| false)
                .map_err(db_err)?;
            c.compacted = rev;
            Ok(Ok(WriteResult::Done))
        }
        WriteOp::LeaseGrant { id, ttl } => {
            if leases.contains(id) {
                return Ok(Err(Error::Internal(format!("lease {id} already exists"))));
            }
            t.leases.insert(id, ttl).map_err(db_err)?;
            leases.insert(id, ttl);
            Ok(Ok(WriteResult::Lease(Lease { id, ttl })))
        }
        WriteOp::LeaseRevoke(id) => {
            let Some(keys) = leases.remove(id) else {
                return Ok(Err(Error::LeaseNotFound(id)));
            };
            t.leases.remove(id).map_err(db_err)?;
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
    t: &mut Tables<'_>,
    c: &mut Counters,
    events: Vec<Event>,
    published: &mut Vec<RevisionEvents>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    c.revision += 1;
    t.history
        .insert(c.revision as u64, encode_events(&events).as_slice())
        .map_err(db_err)?;
    published.push((c.revision, Arc::new(events)));
    Ok(())
}

fn get_key(t: &Tables<'_>, key: &[u8]) -> Result<Option<KeyValue>> {
    match t.kv.get(key).map_err(db_err)? {
        Some(v) => Ok(Some(
            decode_kv(key, v.value(), false).map_err(Error::Internal)?,
        )),
        None => Ok(None),
    }
}

fn remove_key(t: &mut Tables<'_>, key: &[u8], leases: &mut Leases) -> Result<Option<KeyValue>> {
    let prev = match t.kv.remove(key).map_err(db_err)? {
        Some(v) => Some(decode_kv(key, v.value(), false).map_err(Error::Internal)?),
        None => None,
    };
    if let Some(p) = &prev
        && p.lease != 0
    {
        leases.detach(p.lease, key);
    }
    Ok(prev)
}

fn compare_holds(t: &Tables<'_>, cmp: &Compare) -> Result<bool> {
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
    t: &mut Tables<'_>,
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
                t.kv.insert(kv.key.as_slice(), encode_kv(&kv).as_slice())
                    .map_err(db_err)?;
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
