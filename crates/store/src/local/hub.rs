//! Watch fan-out for the local store. The writer publishes each committed batch once to a
//! broadcast channel; every watcher has its own task that filters the batches for its range.
//! A watcher that falls behind (its consumer is slow, or the broadcast buffer overflowed) never
//! holds anyone up: it reads what it missed from the history table, and only a watcher whose
//! missing revisions were compacted away ends, with [`Error::Compacted`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redb::{Database, ReadableDatabase};
use tokio::sync::{broadcast, mpsc};

use super::tables::{HISTORY, META, META_COMPACTED, db_err, meta};
use super::writer::RevisionEvents;
use crate::codec::decode_events;
use crate::watch::WATCH_BUFFER;
use crate::{Error, Event, KeyRange, Result, WatchOptions, WatchResponse, WatchStream};

/// Batches the broadcast channel holds before slow watchers lag.
const BROADCAST_CAPACITY: usize = 1024;
/// Revisions read from history per catch-up step.
const CATCH_UP_CHUNK: u64 = 512;

type Batch = Arc<Vec<RevisionEvents>>;

/// The publishing side, shared by the writer and every watcher.
pub(crate) struct Hub {
    tx: broadcast::Sender<Batch>,
    /// Held while publishing and while subscribing, so that a new watcher learns exactly which
    /// revision its subscription starts after.
    order: Mutex<i64>,
}

impl Hub {
    pub fn new(revision: i64) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            tx,
            order: Mutex::new(revision),
        }
    }

    /// Publishes a committed batch that brought the store to `revision`.
    pub fn publish(&self, events: Vec<RevisionEvents>, revision: i64) {
        let mut published = self.order.lock().unwrap_or_else(|p| p.into_inner());
        if !events.is_empty() {
            // No receivers is not an error: nobody is watching.
            let _ = self.tx.send(Arc::new(events));
        }
        *published = revision;
    }

    /// Subscribes; returns the receiver and the last revision published before it.
    fn subscribe(&self) -> (broadcast::Receiver<Batch>, i64) {
        let published = self.order.lock().unwrap_or_else(|p| p.into_inner());
        (self.tx.subscribe(), *published)
    }
}

/// Starts a watch over `range`. `compacted` is the store's compacted revision.
pub(crate) fn start(
    hub: &Hub,
    db: Weak<Database>,
    compacted: &AtomicI64,
    range: KeyRange,
    opts: WatchOptions,
) -> Result<WatchStream> {
    let (rx, published) = hub.subscribe();
    let compacted = compacted.load(Ordering::Acquire);
    if opts.start_revision != 0 && opts.start_revision <= compacted {
        return Err(Error::Compacted {
            requested: opts.start_revision,
            compacted,
        });
    }
    let next = if opts.start_revision == 0 {
        published + 1
    } else {
        opts.start_revision
    };
    let (out, out_rx) = mpsc::channel(WATCH_BUFFER);
    let (progress_tx, progress_rx) = mpsc::channel(1);
    let watcher = Watcher {
        db,
        range,
        prev_kv: opts.prev_kv,
        next,
        seen: published,
        out,
    };
    let task = tokio::spawn(watcher.run(rx, published, opts.progress_interval, progress_rx));
    Ok(WatchStream::new(out_rx, task, progress_tx))
}

struct Watcher {
    db: Weak<Database>,
    range: KeyRange,
    prev_kv: bool,
    /// The first revision not yet delivered.
    next: i64,
    /// The newest revision this watcher has looked at: every matching change up to it (and at
    /// or after the start revision) has been delivered.
    seen: i64,
    out: mpsc::Sender<Result<WatchResponse>>,
}

/// Why a watcher stops.
enum Stop {
    /// The consumer dropped the stream.
    Gone,
    /// An error to report before stopping.
    Fail(Error),
}

impl Watcher {
    async fn run(
        mut self,
        mut rx: broadcast::Receiver<Batch>,
        published: i64,
        progress: Option<Duration>,
        requests: mpsc::Receiver<()>,
    ) {
        let result = self.serve(&mut rx, published, progress, requests).await;
        if let Err(Stop::Fail(e)) = result {
            let _ = self.out.send(Err(e)).await;
        }
    }

    async fn serve(
        &mut self,
        rx: &mut broadcast::Receiver<Batch>,
        published: i64,
        progress: Option<Duration>,
        mut requests: mpsc::Receiver<()>,
    ) -> Result<(), Stop> {
        self.catch_up(published).await?;
        let period = progress.unwrap_or(Duration::from_secs(3600));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut sent_since_tick = false;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(batch) => {
                        if let Some((first, _)) = batch.first()
                            && *first > self.next
                        {
                            // Revisions were skipped while lagging: read them from history.
                            self.catch_up(first - 1).await?;
                        }
                        sent_since_tick |= self.deliver(&batch).await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop::Fail(Error::Closed)),
                },
                Some(()) = requests.recv() => {
                    // Drain what is already published first, so the answer is as fresh as it
                    // can be; then every revision up to `seen` has been looked at.
                    while let Ok(batch) = rx.try_recv() {
                        if let Some((first, _)) = batch.first()
                            && *first > self.next
                        {
                            self.catch_up(first - 1).await?;
                        }
                        self.deliver(&batch).await?;
                    }
                    let resp = WatchResponse { events: Vec::new(), revision: self.seen };
                    self.out.send(Ok(resp)).await.map_err(|_| Stop::Gone)?;
                }
                _ = ticker.tick(), if progress.is_some() => {
                    if !sent_since_tick {
                        let resp = WatchResponse { events: Vec::new(), revision: self.seen };
                        self.out.send(Ok(resp)).await.map_err(|_| Stop::Gone)?;
                    }
                    sent_since_tick = false;
                }
            }
        }
    }

    /// Sends the matching events of revisions `next..` in a batch; returns whether it sent any.
    async fn deliver(&mut self, batch: &[RevisionEvents]) -> Result<bool, Stop> {
        let mut events = Vec::new();
        let mut last = self.next - 1;
        for (rev, evs) in batch {
            self.seen = self.seen.max(*rev);
            if *rev < self.next {
                continue;
            }
            last = *rev;
            events.extend(
                evs.iter()
                    .filter(|e| self.range.contains(&e.kv.key))
                    .cloned(),
            );
        }
        self.next = last + 1;
        self.send(events, last).await
    }

    async fn send(&mut self, mut events: Vec<Event>, revision: i64) -> Result<bool, Stop> {
        if events.is_empty() {
            return Ok(false);
        }
        if !self.prev_kv {
            for e in &mut events {
                e.prev_kv = None;
            }
        }
        let resp = WatchResponse { events, revision };
        self.out.send(Ok(resp)).await.map_err(|_| Stop::Gone)?;
        Ok(true)
    }

    /// Delivers revisions `next..=upto` from the history table.
    async fn catch_up(&mut self, upto: i64) -> Result<(), Stop> {
        while self.next <= upto {
            let from = self.next as u64;
            let to = (upto as u64).min(from + CATCH_UP_CHUNK - 1);
            let db = self.db.upgrade().ok_or(Stop::Fail(Error::Closed))?;
            let range = self.range.clone();
            let read = tokio::task::spawn_blocking(move || read_history(&db, &range, from, to))
                .await
                .map_err(|e| Stop::Fail(Error::Internal(format!("history read: {e}"))))?;
            let events = read.map_err(Stop::Fail)?;
            self.next = to as i64 + 1;
            self.seen = self.seen.max(to as i64);
            self.send(events, to as i64).await?;
        }
        Ok(())
    }
}

/// Reads the events in `range` of revisions `from..=to`, failing if any were compacted.
fn read_history(db: &Database, range: &KeyRange, from: u64, to: u64) -> Result<Vec<Event>> {
    let rtx = db.begin_read().map_err(db_err)?;
    let compacted = meta(&rtx.open_table(META).map_err(db_err)?, META_COMPACTED)?;
    if from as i64 <= compacted {
        return Err(Error::Compacted {
            requested: from as i64,
            compacted,
        });
    }
    let history = rtx.open_table(HISTORY).map_err(db_err)?;
    let mut out = Vec::new();
    for item in history.range(from..=to).map_err(db_err)? {
        let (_, v) = item.map_err(db_err)?;
        let events = decode_events(v.value()).map_err(Error::Internal)?;
        out.extend(events.into_iter().filter(|e| range.contains(&e.kv.key)));
    }
    Ok(out)
}
