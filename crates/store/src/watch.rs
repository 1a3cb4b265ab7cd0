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
}

impl WatchStream {
    /// A stream fed by `rx`; `task` (the producer) is aborted when the stream is dropped.
    pub(crate) fn new(rx: mpsc::Receiver<Result<WatchResponse>>, task: JoinHandle<()>) -> Self {
        Self {
            rx,
            task: Some(task),
        }
    }

    /// The next response, or `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        self.rx.recv().await
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
