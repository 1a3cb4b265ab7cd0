//! The redb tables of the local store, and reads over them that both read and write
//! transactions share.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{ReadableTable, TableDefinition};

use crate::codec::{decode_events, decode_kv};
use crate::{Error, KeyRange, KeyValue, RangeOptions, RangeResponse, Result};

/// Live keys: key -> metadata and value.
pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// History: revision -> the events of that revision, each with its previous value.
pub(crate) const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
/// Leases: id -> TTL in seconds.
pub(crate) const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
/// Counters: "revision", "compact_revision", "wal_seq".
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

pub(crate) const META_REVISION: &str = "revision";
pub(crate) const META_COMPACTED: &str = "compact_revision";
/// Sequence number of the last write-ahead log record the data file includes.
pub(crate) const META_WAL_SEQ: &str = "wal_seq";

/// Turns any redb error into a store error.
pub(crate) fn db_err(e: impl Into<redb::Error>) -> Error {
    Error::Internal(format!("database: {}", e.into()))
}

/// Reads a counter from META (0 when absent).
pub(crate) fn meta(t: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<i64> {
    Ok(t.get(name).map_err(db_err)?.map(|g| g.value()).unwrap_or(0))
}

/// The bounds of a key range as redb takes them.
fn bounds(range: &KeyRange) -> (Bound<&[u8]>, Option<Vec<u8>>) {
    (Bound::Included(range.start.as_slice()), range.upper())
}

/// Calls `f` on every live key in `range`, in key order, until it returns false.
pub(crate) fn scan_live(
    kv: &impl ReadableTable<&'static [u8], &'static [u8]>,
    range: &KeyRange,
    keys_only: bool,
    mut f: impl FnMut(KeyValue) -> bool,
) -> Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let (lower, upper) = bounds(range);
    let upper_bound = match &upper {
        Some(u) => Bound::Excluded(u.as_slice()),
        None => Bound::Unbounded,
    };
    for item in kv.range::<&[u8]>((lower, upper_bound)).map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let kv = decode_kv(k.value(), v.value(), keys_only).map_err(Error::Internal)?;
        if !f(kv) {
            break;
        }
    }
    Ok(())
}

/// Reads a range at the current revision or a past one, given the store's counters.
pub(crate) fn range_at(
    kv: &impl ReadableTable<&'static [u8], &'static [u8]>,
    history: &impl ReadableTable<u64, &'static [u8]>,
    range: &KeyRange,
    opts: &RangeOptions,
    current: i64,
    compacted: i64,
) -> Result<RangeResponse> {
    if opts.revision > current {
        return Err(Error::FutureRevision {
            requested: opts.revision,
            current,
        });
    }
    if opts.revision > 0 && opts.revision < compacted {
        return Err(Error::Compacted {
            requested: opts.revision,
            compacted,
        });
    }
    let limit = if opts.limit > 0 {
        opts.limit as usize
    } else {
        usize::MAX
    };
    let mut resp = RangeResponse {
        revision: current,
        ..Default::default()
    };
    let take = |kv: KeyValue, resp: &mut RangeResponse| {
        resp.count += 1;
        if !opts.count_only && resp.kvs.len() < limit {
            resp.kvs.push(kv);
        }
    };
    if opts.revision == 0 || opts.revision == current {
        scan_live(kv, range, opts.keys_only, |kv| {
            take(kv, &mut resp);
            true
        })?;
    } else {
        // Undo every change after the requested revision, newest first: what remains for each
        // key is its value at that revision.
        let mut state: BTreeMap<Vec<u8>, KeyValue> = BTreeMap::new();
        scan_live(kv, range, opts.keys_only, |kv| {
            state.insert(kv.key.clone(), kv);
            true
        })?;
        let from = (opts.revision + 1) as u64;
        for item in history
            .range(from..=(current as u64))
            .map_err(db_err)?
            .rev()
        {
            let (_, v) = item.map_err(db_err)?;
            let events = decode_events(v.value()).map_err(Error::Internal)?;
            for e in events.into_iter().rev() {
                if !range.contains(&e.kv.key) {
                    continue;
                }
                match e.prev_kv {
                    Some(mut p) => {
                        if opts.keys_only {
                            p.value.clear();
                        }
                        state.insert(e.kv.key, p);
                    }
                    None => {
                        state.remove(&e.kv.key);
                    }
                }
            }
        }
        for kv in state.into_values() {
            take(kv, &mut resp);
        }
    }
    resp.more = (resp.count as usize) > resp.kvs.len() && !opts.count_only;
    Ok(resp)
}
