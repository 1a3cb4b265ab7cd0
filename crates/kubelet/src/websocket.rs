//! What the kubelet's streaming sessions (exec, attach, port-forward) share: the task that
//! writes a session's WebSocket, and the record of when a session last carried data, for idle
//! timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

/// How long a session that sent its closing frame waits for the client's.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// When a streaming session last carried data, either way (for idle timeouts).
#[derive(Clone)]
pub(crate) struct Activity {
    start: Instant,
    last: Arc<AtomicU64>,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    pub(crate) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A session's idle timeout (zero: none): it ends once no data has passed either way for that
/// long, as the kubelet's `--streaming-connection-idle-timeout` ends streams.
pub(crate) struct Idle {
    limit: Duration,
    activity: Activity,
    timer: tokio::time::Interval,
}

impl Idle {
    pub(crate) fn new(limit: Duration) -> Idle {
        let tick = (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        Idle {
            limit,
            activity: Activity::new(),
            timer: tokio::time::interval(tick),
        }
    }

    /// Where the session records the data it passes.
    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }

    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Resolves once the session has been idle too long.
    pub(crate) async fn expired(&mut self) {
        loop {
            self.timer.tick().await;
            if !self.limit.is_zero() && self.activity.idle_for() >= self.limit {
                return;
            }
        }
    }
}

/// Sends what arrives on the returned channel, each item made a message by `encode`, then,
/// once every sender is gone, a normal closure (kubectl takes only code 1000 as the end of
/// the streams).
pub(crate) fn writer<T: Send + 'static>(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut encode: impl FnMut(T) -> Message + Send + 'static,
) -> (mpsc::Sender<T>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<T>(64);
    let task = tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if sink.send(encode(item)).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    });
    (tx, task)
}

/// Runs `work` to its end while reading, and dropping, what the client sends meanwhile: pings
/// are answered and nothing is left unread. (A socket closed with unread input ends in a
/// reset, and a reset throws away whatever output the kernel still held for the client.)
pub(crate) async fn reading<F: std::future::Future>(
    incoming: &mut SplitStream<WebSocket>,
    work: F,
) -> F::Output {
    tokio::pin!(work);
    let mut open = true;
    loop {
        tokio::select! {
            out = &mut work => return out,
            msg = incoming.next(), if open => open = matches!(msg, Some(Ok(_))),
        }
    }
}

/// Ends a session the way RFC 6455 does: once the writer has sent everything queued and its
/// closing frame, waits (at most [`CLOSE_WAIT`]) for the client's closing frame before the
/// connection goes, so that it ends with every byte delivered and no reset.
pub(crate) async fn close(
    mut incoming: SplitStream<WebSocket>,
    writer: tokio::task::JoinHandle<()>,
) {
    let _ = reading(&mut incoming, writer).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(msg)) = incoming.next().await {
            if matches!(msg, Message::Close(_)) {
                return;
            }
        }
    })
    .await;
}
