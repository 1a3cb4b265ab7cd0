//! The watch stream handed to callers by every backend.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Result, WatchResponse};

/// How many undelivered responses a watch stream buffers before its producer waits.
pub(crate) const WATCH_BUFFER: usize = 256;

/// A stream of watch responses, in revision order, without gaps or duplicates.
///
/// It ends after an error (such as [`crate::Error::Compacted`]); dropping it cancels the watch.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchResponse>>,
    task: Option<JoinHandle<()>>,
    progress: Option<mpsc::Sender<()>>,
}

impl WatchStream {
    /// A stream fed by `rx`; `task` (the producer) is aborted when the stream is dropped.
    pub(crate) fn new(
        rx: mpsc::Receiver<Result<WatchResponse>>,
        task: JoinHandle<()>,
        progress: mpsc::Sender<()>,
    ) -> Self {
        Self {
            rx,
            task: Some(task),
            progress: Some(progress),
        }
    }

    /// Asks for a progress notification now: a response without events whose revision says up
    /// to where everything has been delivered (etcd's RequestProgress). A consumer that knows
    /// the store's current revision can wait for it to be reached this way.
    pub fn request_progress(&self) {
        if let Some(p) = &self.progress {
            let _ = p.try_send(());
        }
    }

    /// A handle that requests progress from elsewhere (for a task that owns the stream).
    pub fn progress_handle(&self) -> ProgressHandle {
        ProgressHandle(self.progress.clone())
    }

    /// This stream with `f` applied to each response (an error from `f` ends it).
    pub fn map<F>(mut self, f: F) -> WatchStream
    where
        F: Fn(WatchResponse) -> Result<WatchResponse> + Send + 'static,
    {
        let progress = self.progress.take().unwrap_or_else(|| mpsc::channel(1).0);
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let task = tokio::spawn(async move {
            while let Some(resp) = self.next().await {
                let out = resp.and_then(&f);
                let failed = out.is_err();
                if tx.send(out).await.is_err() || failed {
                    break;
                }
            }
        });
        WatchStream::new(rx, task, progress)
    }

    /// The next response, or `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        self.rx.recv().await
    }
}

/// Requests progress notifications on a [`WatchStream`] owned by another task.
#[derive(Clone)]
pub struct ProgressHandle(Option<mpsc::Sender<()>>);

impl ProgressHandle {
    /// See [`WatchStream::request_progress`].
    pub fn request(&self) {
        if let Some(p) = &self.0 {
            let _ = p.try_send(());
        }
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchResponse>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
