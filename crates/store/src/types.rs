//! Request and response types shared by every backend.

use std::time::Duration;

use crate::KeyRange;

/// A key with its value and MVCC metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
    /// Writes to the key since it was created, starting at 1.
    pub version: i64,
    /// Lease the key is attached to, or 0.
    pub lease: i64,
}

/// Options of a range read.
#[derive(Clone, Debug, Default)]
pub struct RangeOptions {
    /// Read at this revision; 0 means the latest.
    pub revision: i64,
    /// Return at most this many keys; 0 means no limit.
    pub limit: i64,
    /// Return only the count.
    pub count_only: bool,
    /// Return keys and metadata without values.
    pub keys_only: bool,
}

/// Result of a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// Number of keys in the range (regardless of the limit).
    pub count: i64,
    /// More keys exist beyond the limit.
    pub more: bool,
    /// The store's current revision when the read was served.
    pub revision: i64,
}

/// A put.
#[derive(Clone, Debug, Default)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Lease to attach the key to, or 0.
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
}

impl PutRequest {
    /// A plain put of `key = value`.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }
}

/// Result of a put.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
    /// Revision after the write.
    pub revision: i64,
}

/// A delete of a key or a range.
#[derive(Clone, Debug)]
pub struct DeleteRequest {
    pub range: KeyRange,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

impl DeleteRequest {
    /// Deletes one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        Self {
            range: KeyRange::key(key),
            prev_kv: false,
        }
    }
}

/// Result of a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteResponse {
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
    /// Revision after the delete.
    pub revision: i64,
}

/// How a compare relates the key's field to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// The field of a key a compare looks at, with the value to compare against.
/// A missing key has version, create and mod revision 0, lease 0 and no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Lease(i64),
}

/// One condition of a transaction.
#[derive(Clone, Debug)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// Builds a compare.
    pub fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: CompareTarget) -> Self {
        Self {
            key: key.into(),
            op,
            target,
        }
    }
}

/// One operation inside a transaction.
#[derive(Clone, Debug)]
pub enum TxnOp {
    Range(KeyRange, RangeOptions),
    Put(PutRequest),
    Delete(DeleteRequest),
}

/// A transaction: compares, then the success or failure operations.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// A transaction without compares that runs `ops`.
    pub fn always(ops: Vec<TxnOp>) -> Self {
        Self {
            compare: Vec::new(),
            success: ops,
            failure: Vec::new(),
        }
    }
}

/// Result of one operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResponse {
    Range(RangeResponse),
    Put(PutResponse),
    Delete(DeleteResponse),
}

/// Result of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (so the success ops ran).
    pub succeeded: bool,
    pub responses: Vec<TxnOpResponse>,
    /// Revision after the transaction.
    pub revision: i64,
}

/// Kind of change a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change; for a delete, the key with `mod_revision` set to the delete's
    /// revision and everything else empty.
    pub kv: KeyValue,
    /// The key before the change, when the watch asked for it and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// Options of a watch.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// First revision to deliver; 0 means changes after the current revision.
    pub start_revision: i64,
    /// Include the previous key-value in each event.
    pub prev_kv: bool,
    /// Send a progress notification (an empty response carrying the current revision) when the
    /// watch has been idle this long.
    pub progress_interval: Option<Duration>,
}

/// One message of a watch stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// Changes in revision order. Empty for a progress notification.
    pub events: Vec<Event>,
    /// Every change up to this revision has been delivered.
    pub revision: i64,
}

impl WatchResponse {
    /// Whether this is a progress notification.
    pub fn is_progress(&self) -> bool {
        self.events.is_empty()
    }
}

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub ttl: i64,
}

/// What a snapshot holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Revision the snapshot was taken at.
    pub revision: i64,
    /// Bytes written.
    pub bytes: u64,
}
