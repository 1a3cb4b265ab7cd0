//! tugboat's key-value store: etcd v3 semantics (one global revision, MVCC history, txn,
//! watch, compaction, leases, snapshots) behind one [`Store`] trait.
//!
//! Backends:
//! - [`LocalStore::memory`]: in memory, for tests of code above the store;
//! - [`LocalStore::open`]: the embedded default, one durable redb file with group commit;
//! - [`EtcdStore`]: a real etcd v3 cluster over gRPC.

mod codec;
mod error;
mod etcd;
mod keys;
mod local;
pub mod snapshot;
mod transform;
mod types;
mod watch;

use async_trait::async_trait;

pub use error::{Error, Result};
pub use etcd::{EtcdStore, EtcdTls, Member};
pub use keys::KeyRange;
pub use local::{AutoCompaction, DATA_FILE, LocalOptions, LocalStore, WriterStats};
pub use transform::{TransformingStore, ValueTransformer};
pub use types::*;
pub use watch::{ProgressHandle, WatchStream};

/// Largest value a put may carry: 1.5 MiB, etcd's default request limit.
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// Most operations one transaction may hold (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// A key-value store with etcd v3 semantics.
///
/// Every write transaction that changes something moves the global revision by one; every key
/// carries its create revision, mod revision and version. Reads may ask for a past revision that
/// has not been compacted; watches deliver every change after a start revision, in order.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads a key or a range of keys, at the latest revision or a past one.
    async fn range(&self, range: KeyRange, opts: RangeOptions) -> Result<RangeResponse>;

    /// Runs a transaction: if every compare holds, the success ops, else the failure ops.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    /// Watches a key or range for changes after `opts.start_revision` (or from now when 0).
    async fn watch(&self, range: KeyRange, opts: WatchOptions) -> Result<WatchStream>;

    /// Discards history up to and including `revision`: reads below it and watches starting at
    /// or below it fail with [`Error::Compacted`] afterwards.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// Grants a lease that expires `ttl_secs` seconds from now unless kept alive.
    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease>;

    /// Renews a lease for another TTL; returns the TTL granted.
    async fn lease_keep_alive(&self, id: i64) -> Result<i64>;

    /// Revokes a lease, deleting every key attached to it.
    async fn lease_revoke(&self, id: i64) -> Result<()>;

    /// Writes a consistent point-in-time snapshot to `out` while writes go on.
    async fn snapshot(&self, out: &mut (dyn std::io::Write + Send)) -> Result<SnapshotInfo>;

    /// Writes `key = value`, optionally attached to a lease.
    async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        let resp = self.txn(Txn::always(vec![TxnOp::Put(req)])).await?;
        match resp.responses.into_iter().next() {
            Some(TxnOpResponse::Put(p)) => Ok(p),
            _ => Err(Error::Internal("put returned no response".into())),
        }
    }

    /// Deletes a key or a range of keys.
    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        let resp = self.txn(Txn::always(vec![TxnOp::Delete(req)])).await?;
        match resp.responses.into_iter().next() {
            Some(TxnOpResponse::Delete(d)) => Ok(d),
            _ => Err(Error::Internal("delete returned no response".into())),
        }
    }

    /// The store's current revision.
    async fn current_revision(&self) -> Result<i64> {
        let resp = self
            .range(
                KeyRange::key(b"\0tug-revision-probe".to_vec()),
                RangeOptions {
                    count_only: true,
                    ..Default::default()
                },
            )
            .await?;
        Ok(resp.revision)
    }
}

/// Checks the limits every backend enforces before it writes anything.
pub(crate) fn check_limits(txn: &Txn) -> Result<()> {
    let ops = txn.success.len().max(txn.failure.len());
    if ops > MAX_TXN_OPS {
        return Err(Error::TooManyOperations {
            ops,
            limit: MAX_TXN_OPS,
        });
    }
    for cmp in &txn.compare {
        check_key(&cmp.key)?;
    }
    for op in txn.success.iter().chain(txn.failure.iter()) {
        match op {
            TxnOp::Put(p) => {
                check_key(&p.key)?;
                if p.value.len() > MAX_VALUE_BYTES {
                    return Err(Error::ValueTooLarge {
                        size: p.value.len(),
                        limit: MAX_VALUE_BYTES,
                    });
                }
            }
            TxnOp::Delete(d) => check_key(&d.range.start)?,
            TxnOp::Range(r, _) => check_key(&r.start)?,
        }
    }
    Ok(())
}

/// Refuses the empty key, which etcd does not allow either.
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}
