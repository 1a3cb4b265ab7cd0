//! The tables of one write transaction. Every change goes through here, so that it can be
//! logged to the write-ahead log as it is made, and replayed the same way on open.

use redb::{Table, WriteTransaction};

use super::tables::{
    HISTORY, KV, LEASES, META, META_COMPACTED, META_REVISION, META_WAL_SEQ, db_err,
};
use super::wal::WalOp;
use crate::Result;
use crate::codec::Writer;

/// Open tables of a write transaction, with the log record being built.
pub(crate) struct WriteTables<'t> {
    pub kv: Table<'t, &'static [u8], &'static [u8]>,
    pub history: Table<'t, u64, &'static [u8]>,
    pub leases: Table<'t, i64, i64>,
    meta: Table<'t, &'static str, i64>,
    log: Option<Writer>,
}

impl<'t> WriteTables<'t> {
    /// Opens the tables; with `log`, every change is also recorded for the write-ahead log.
    pub fn open(wtx: &'t WriteTransaction, log: bool) -> Result<Self> {
        Ok(Self {
            kv: wtx.open_table(KV).map_err(db_err)?,
            history: wtx.open_table(HISTORY).map_err(db_err)?,
            leases: wtx.open_table(LEASES).map_err(db_err)?,
            meta: wtx.open_table(META).map_err(db_err)?,
            log: log.then(Writer::default),
        })
    }

    fn log(&mut self, op: WalOp<'_>) {
        if let Some(w) = &mut self.log {
            op.encode(w);
        }
    }

    /// The changes recorded so far, for the log.
    pub fn take_log(&mut self) -> Option<Vec<u8>> {
        self.log.take().map(|w| w.buf)
    }

    /// Sets a live key's encoded record.
    pub fn put_kv(&mut self, key: &[u8], data: &[u8]) -> Result<()> {
        self.kv.insert(key, data).map_err(db_err)?;
        self.log(WalOp::KvPut { key, data });
        Ok(())
    }

    /// Removes a live key; returns its encoded record if it existed.
    pub fn del_kv(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let prev = self
            .kv
            .remove(key)
            .map_err(db_err)?
            .map(|g| g.value().to_vec());
        if prev.is_some() {
            self.log(WalOp::KvDel { key });
        }
        Ok(prev)
    }

    /// Records the events of a revision.
    pub fn put_history(&mut self, revision: u64, data: &[u8]) -> Result<()> {
        self.history.insert(revision, data).map_err(db_err)?;
        self.log(WalOp::HistoryPut { revision, data });
        Ok(())
    }

    /// Drops history up to and including `upto`.
    pub fn compact_history(&mut self, upto: u64) -> Result<()> {
        self.history
            .retain_in(..=upto, |_, _| false)
            .map_err(db_err)?;
        self.log(WalOp::HistoryCompact { upto });
        Ok(())
    }

    /// Stores a lease.
    pub fn put_lease(&mut self, id: i64, ttl: i64) -> Result<()> {
        self.leases.insert(id, ttl).map_err(db_err)?;
        self.log(WalOp::LeasePut { id, ttl });
        Ok(())
    }

    /// Removes a lease.
    pub fn del_lease(&mut self, id: i64) -> Result<()> {
        self.leases.remove(id).map_err(db_err)?;
        self.log(WalOp::LeaseDel { id });
        Ok(())
    }

    /// Stores the revision counters.
    pub fn put_counters(&mut self, revision: i64, compacted: i64) -> Result<()> {
        self.meta.insert(META_REVISION, revision).map_err(db_err)?;
        self.meta
            .insert(META_COMPACTED, compacted)
            .map_err(db_err)?;
        self.log(WalOp::Counters {
            revision,
            compacted,
        });
        Ok(())
    }

    /// Stores the sequence number of the last log record this transaction covers. Not logged
    /// itself: a record's sequence number travels in its header.
    pub fn put_wal_seq(&mut self, seq: u64) -> Result<()> {
        self.meta.insert(META_WAL_SEQ, seq as i64).map_err(db_err)?;
        Ok(())
    }

    /// Applies a change read back from the log.
    pub fn replay(&mut self, op: WalOp<'_>) -> Result<()> {
        match op {
            WalOp::KvPut { key, data } => self.put_kv(key, data),
            WalOp::KvDel { key } => self.del_kv(key).map(|_| ()),
            WalOp::HistoryPut { revision, data } => self.put_history(revision, data),
            WalOp::HistoryCompact { upto } => self.compact_history(upto),
            WalOp::LeasePut { id, ttl } => self.put_lease(id, ttl),
            WalOp::LeaseDel { id } => self.del_lease(id),
            WalOp::Counters {
                revision,
                compacted,
            } => self.put_counters(revision, compacted),
        }
    }
}
