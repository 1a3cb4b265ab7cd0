//! Lease bookkeeping of the local store: TTLs, deadlines and the keys attached to each lease.
//! Deadlines live in memory only, as in etcd: after a restart every lease gets a full TTL.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// One lease.
pub(crate) struct LeaseState {
    pub ttl: i64,
    pub deadline: Instant,
    pub keys: BTreeSet<Vec<u8>>,
}

/// Every live lease.
#[derive(Default)]
pub(crate) struct Leases {
    map: HashMap<i64, LeaseState>,
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(1) as u64)
}

impl Leases {
    /// Adds a lease with a full TTL from now.
    pub fn insert(&mut self, id: i64, ttl: i64) {
        self.map.insert(
            id,
            LeaseState {
                ttl,
                deadline: Instant::now() + ttl_duration(ttl),
                keys: BTreeSet::new(),
            },
        );
    }

    /// Whether `id` is a live, unexpired lease.
    pub fn is_live(&self, id: i64) -> bool {
        self.map
            .get(&id)
            .is_some_and(|l| l.deadline > Instant::now())
    }

    /// Whether `id` exists at all.
    pub fn contains(&self, id: i64) -> bool {
        self.map.contains_key(&id)
    }

    /// Renews a live lease; returns its TTL.
    pub fn keep_alive(&mut self, id: i64) -> Option<i64> {
        let now = Instant::now();
        let l = self.map.get_mut(&id).filter(|l| l.deadline > now)?;
        l.deadline = now + ttl_duration(l.ttl);
        Some(l.ttl)
    }

    /// Removes a lease and returns the keys attached to it.
    pub fn remove(&mut self, id: i64) -> Option<BTreeSet<Vec<u8>>> {
        self.map.remove(&id).map(|l| l.keys)
    }

    /// Attaches `key` to lease `id` (no-op for 0 or unknown leases).
    pub fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.map.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    /// Detaches `key` from lease `id`.
    pub fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.map.get_mut(&id) {
            l.keys.remove(key);
        }
    }

    /// Leases whose deadline has passed.
    pub fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        self.map
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_and_expiry() {
        let mut l = Leases::default();
        l.insert(1, 1);
        assert!(l.is_live(1));
        assert_eq!(l.keep_alive(1), Some(1));
        assert_eq!(l.keep_alive(2), None);
        l.attach(1, b"a");
        l.attach(1, b"b");
        l.detach(1, b"a");
        assert!(l.expired().is_empty());
        if let Some(s) = l.map.get_mut(&1) {
            s.deadline = Instant::now() - Duration::from_millis(1);
        }
        assert_eq!(l.expired(), vec![1]);
        assert_eq!(l.keep_alive(1), None, "an expired lease cannot be renewed");
        let keys = l.remove(1).unwrap_or_default();
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), vec![b"b".to_vec()]);
    }
}
