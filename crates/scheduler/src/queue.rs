//! The scheduling queue, as kube-scheduler's: pending pods ordered by priority then arrival;
//! pods that failed wait out a backoff (1 s doubling to 10 s); pods that fit nowhere wait
//! until something changes in the cluster (a node added or changed, a pod gone), or at most a
//! minute.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::cache::{self, Key};

/// How long an unschedulable pod waits for a cluster change before it is tried again anyway.
const UNSCHEDULABLE_MAX: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Being bound (assumed in the cache).
    InFlight,
}

struct Entry {
    pod: Arc<Pod>,
    state: State,
    attempts: u32,
    seq: u64,
}

/// The queue of pods waiting for a node.
#[derive(Default)]
pub struct Queue {
    entries: HashMap<Key, Entry>,
    heap: BinaryHeap<(i32, Reverse<u64>, Key)>,
    seq: u64,
}

fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1 << attempts.saturating_sub(1).min(3)).min(Duration::from_secs(10))
}

impl Queue {
    fn activate(&mut self, k: &Key) {
        if let Some(e) = self.entries.get_mut(k) {
            self.seq += 1;
            e.seq = self.seq;
            e.state = State::Active;
            self.heap
                .push((cache::priority(&e.pod), Reverse(e.seq), k.clone()));
        }
    }

    /// A pending pod seen in the watch: queued if new, refreshed if known. A pod waiting as
    /// unschedulable whose spec changed is tried again.
    pub fn upsert(&mut self, pod: Arc<Pod>) {
        let k = cache::key(&pod);
        match self.entries.get_mut(&k) {
            Some(e) => {
                let changed =
                    e.pod.spec != pod.spec || e.pod.metadata.labels != pod.metadata.labels;
                e.pod = pod;
                if changed && matches!(e.state, State::Unschedulable(_)) {
                    self.activate(&k);
                }
            }
            None => {
                self.entries.insert(
                    k.clone(),
                    Entry {
                        pod,
                        state: State::Active,
                        attempts: 0,
                        seq: 0,
                    },
                );
                self.activate(&k);
            }
        }
    }

    /// A pod that is no longer pending (bound, deleted, or not ours).
    pub fn remove(&mut self, k: &Key) {
        self.entries.remove(k);
    }

    /// Whether the pod is queued (in any state).
    pub fn contains(&self, k: &Key) -> bool {
        self.entries.contains_key(k)
    }

    /// The next pod to schedule, marked in flight.
    pub fn pop(&mut self) -> Option<Arc<Pod>> {
        while let Some((_, Reverse(seq), k)) = self.heap.pop() {
            if let Some(e) = self.entries.get_mut(&k)
                && e.state == State::Active
                && e.seq == seq
            {
                e.state = State::InFlight;
                e.attempts += 1;
                return Some(e.pod.clone());
            }
        }
        None
    }

    /// The pod fits nowhere: it waits for a cluster change.
    pub fn unschedulable(&mut self, k: &Key) {
        if let Some(e) = self.entries.get_mut(k) {
            e.state = State::Unschedulable(Instant::now());
        }
    }

    /// Its binding failed: it waits out its backoff.
    pub fn retry_later(&mut self, k: &Key) {
        if let Some(e) = self.entries.get_mut(k) {
            e.state = State::Backoff(Instant::now() + backoff(e.attempts));
        }
    }

    /// Something changed that may let unschedulable pods fit: they go back to the queue
    /// (after their backoff).
    pub fn cluster_changed(&mut self) {
        let now = Instant::now();
        for e in self.entries.values_mut() {
            if let State::Unschedulable(since) = e.state {
                e.state = State::Backoff(since + backoff(e.attempts));
            }
        }
        self.flush(now);
    }

    /// Moves pods whose backoff is over, and pods unschedulable for too long, to the queue.
    pub fn flush(&mut self, now: Instant) {
        let due: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| match e.state {
                State::Backoff(at) => at <= now,
                State::Unschedulable(since) => now.duration_since(since) >= UNSCHEDULABLE_MAX,
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.activate(&k);
        }
    }

    /// Pods queued and ready to try now.
    pub fn active_len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.state == State::Active)
            .count()
    }

    /// Pods known to the queue.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pod is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"},
                "spec": {"priority": priority, "containers": [{"name": "c"}]}}))
            .expect("pod"),
        )
    }

    fn name(p: Option<Arc<Pod>>) -> String {
        p.and_then(|p| p.metadata.name.clone()).unwrap_or_default()
    }

    #[test]
    fn priority_then_arrival_then_backoff() {
        let mut q = Queue::default();
        q.upsert(pod("first", 0));
        q.upsert(pod("second", 0));
        q.upsert(pod("urgent", 100));
        assert_eq!(name(q.pop()), "urgent");
        assert_eq!(name(q.pop()), "first");
        let first: Key = ("d".into(), "first".into());
        q.unschedulable(&first);
        assert_eq!(name(q.pop()), "second");
        assert!(q.pop().is_none());
        // A cluster change brings it back once its 1 s backoff is over.
        q.cluster_changed();
        assert!(q.pop().is_none());
        q.flush(Instant::now() + Duration::from_secs(2));
        assert_eq!(name(q.pop()), "first");
        q.remove(&first);
        assert!(q.pop().is_none());
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(9), Duration::from_secs(8));
    }
}
