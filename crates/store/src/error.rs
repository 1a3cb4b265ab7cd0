//! The store's errors.

use std::path::PathBuf;

/// Errors from any backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The revision asked for has been compacted away. Re-read at the current revision (or
    /// relist) and watch from there.
    #[error(
        "required revision {requested} has been compacted (compacted up to {compacted}); relist and watch from the current revision"
    )]
    Compacted { requested: i64, compacted: i64 },

    /// The revision asked for is newer than the store's.
    #[error("required revision {requested} is a future revision (current is {current})")]
    FutureRevision { requested: i64, current: i64 },

    /// A value over [`crate::MAX_VALUE_BYTES`].
    #[error("value of {size} bytes is larger than the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },

    /// A transaction with more than [`crate::MAX_TXN_OPS`] operations.
    #[error("transaction has {ops} operations, more than the limit of {limit}")]
    TooManyOperations { ops: usize, limit: usize },

    /// A request named the empty key.
    #[error("key is not provided: the empty key is not allowed")]
    EmptyKey,

    /// A put or keep-alive named a lease that does not exist (or has expired).
    #[error("lease {0} not found")]
    LeaseNotFound(i64),

    /// A lease TTL that is not positive.
    #[error("lease TTL must be positive, got {0}")]
    InvalidTtl(i64),

    /// A data file or snapshot is damaged.
    #[error("{}: corrupt or truncated: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// Restoring into a store that already holds data.
    #[error("{0}")]
    NotEmpty(String),

    /// The watch was cancelled by the store.
    #[error("watch cancelled: {0}")]
    WatchCancelled(String),

    /// The store is shutting down or its writer has stopped.
    #[error("store is closed")]
    Closed,

    /// An I/O error, with what was being done.
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },

    /// An error from the etcd cluster.
    #[error("etcd: {0}")]
    Etcd(String),

    /// Anything else the backend reported.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            error: source,
        }
    }
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
