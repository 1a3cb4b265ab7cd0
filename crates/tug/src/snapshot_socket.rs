//! The snapshot socket: a process that owns an embedded store (`tug server`) listens on
//! `DATA_DIR/snapshot.sock`, so that `tug snapshot save` can take a consistent snapshot while
//! the store is in use (the data file itself is locked by its owner).
//!
//! Protocol: the client sends `SAVE <absolute path>\n`; the server writes the snapshot to that
//! path (through a `.partial` file, synced, then renamed) and answers `OK <revision> <bytes>\n`
//! or `ERR <message>\n`. The socket is created mode 0600 in the data directory.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tug_store::{SnapshotInfo, Store};

/// The socket's path in a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshot.sock")
}

/// Serves snapshot requests for `store` until the returned guard is dropped.
pub fn serve(store: Arc<dyn Store>, data_dir: &Path) -> anyhow::Result<SocketGuard> {
    let path = socket_path(data_dir);
    // A socket file left by a process that died is stale: nobody else can own this data dir
    // while we hold its store open.
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(conn, store).await {
                    tracing::warn!(error = %e, "snapshot request failed");
                }
            });
        }
    });
    Ok(SocketGuard { path, task })
}

/// Stops serving and removes the socket file when dropped.
pub struct SocketGuard {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn handle(conn: UnixStream, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let answer = match line.trim_end().strip_prefix("SAVE ") {
        Some(target) => match save(&*store, Path::new(target)).await {
            Ok(info) => format!("OK {} {}\n", info.revision, info.bytes),
            Err(e) => format!("ERR {e:#}\n").replace('\n', " ") + "\n",
        },
        None => "ERR unknown request\n".to_string(),
    };
    write.write_all(answer.as_bytes()).await?;
    Ok(())
}

/// Writes a snapshot of `store` to `file`, atomically: a failure leaves no file under that name.
pub async fn save(store: &dyn Store, file: &Path) -> anyhow::Result<SnapshotInfo> {
    let tmp = file.with_extension("partial");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let result = async {
        let info = store.snapshot(&mut out).await?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp, file)
            .with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))?;
        Ok::<_, anyhow::Error>(info)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Asks the process that owns the store in `data_dir` for a snapshot into `file`. Returns
/// `None` when no process is serving the socket.
pub async fn request(data_dir: &Path, file: &Path) -> anyhow::Result<Option<(i64, u64)>> {
    let path = socket_path(data_dir);
    let conn = match UnixStream::connect(&path).await {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let file = std::path::absolute(file).context("resolving the snapshot path")?;
    let Some(file) = file.to_str() else {
        bail!("the snapshot path {} is not UTF-8", file.display());
    };
    let (read, mut write) = conn.into_split();
    write.write_all(format!("SAVE {file}\n").as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let line = line.trim_end();
    if let Some(err) = line.strip_prefix("ERR ") {
        bail!("the running server could not save the snapshot: {err}");
    }
    let mut parts = line.strip_prefix("OK ").unwrap_or_default().split(' ');
    match (
        parts.next().and_then(|r| r.parse().ok()),
        parts.next().and_then(|b| b.parse().ok()),
    ) {
        (Some(revision), Some(bytes)) => Ok(Some((revision, bytes))),
        _ => bail!("unexpected answer from {}: {line:?}", path.display()),
    }
}
