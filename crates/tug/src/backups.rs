//! Snapshot files and their schedule: each snapshot beside a small JSON record of what it
//! holds (`NAME.json`: revision, size, SHA-256, when and where it was taken), so that
//! `tug snapshot ls` lists snapshots and a restore refuses a damaged one before touching
//! anything. An etcd-backed cluster's snapshots are etcd's own snapshot format; the embedded
//! store's are its own (with a hash inside as well).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tug_store::Store;

/// What a snapshot file holds, kept beside it as `FILE.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// The store's revision at (or just before) the snapshot.
    pub revision: i64,
    /// The file's size.
    pub bytes: u64,
    /// The file's SHA-256, lowercase hex.
    pub sha256: String,
    /// `embedded` or `etcd`: which restore reads it.
    pub format: String,
    /// When it was taken (RFC 3339).
    pub created: String,
    /// The server that took it.
    pub node: String,
}

/// The record file of a snapshot file.
fn record_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// The SHA-256 of a file, lowercase hex.
fn sha256_of(file: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut f, &mut hasher).with_context(|| format!("reading {}", file.display()))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Saves a snapshot of `store` to `file` and writes its record.
pub async fn save(
    store: &dyn Store,
    file: &Path,
    format: &str,
    node: &str,
) -> anyhow::Result<SnapshotRecord> {
    let info = crate::snapshot_socket::save(store, file).await?;
    write_record(file, info.revision, format, node)
}

/// Writes the record of a snapshot file just saved.
pub fn write_record(
    file: &Path,
    revision: i64,
    format: &str,
    node: &str,
) -> anyhow::Result<SnapshotRecord> {
    let record = SnapshotRecord {
        revision,
        bytes: std::fs::metadata(file)
            .with_context(|| format!("reading {}", file.display()))?
            .len(),
        sha256: sha256_of(file)?,
        format: format.to_string(),
        created: jiff::Timestamp::now().to_string(),
        node: node.to_string(),
    };
    std::fs::write(record_path(file), serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("writing {}", record_path(file).display()))?;
    Ok(record)
}

/// Checks a snapshot file against its record; returns the record (None for a file saved
/// without one). A damaged file is an error that says so.
pub fn verify(file: &Path) -> anyhow::Result<Option<SnapshotRecord>> {
    let text = match std::fs::read_to_string(record_path(file)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !file.exists() {
                bail!("no snapshot {}", file.display());
            }
            return Ok(None);
        }
        Err(e) => return Err(e).context(format!("reading {}", record_path(file).display())),
    };
    let record: SnapshotRecord = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", record_path(file).display()))?;
    let sha = sha256_of(file)?;
    if sha != record.sha256 {
        bail!(
            "snapshot {} is damaged: its SHA-256 is {sha}, but it was {} when taken; restore \
             another snapshot",
            file.display(),
            record.sha256
        );
    }
    Ok(Some(record))
}

/// The snapshots in `dir` (files with a record), oldest first.
pub fn list(dir: &Path) -> anyhow::Result<Vec<(PathBuf, SnapshotRecord)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context(format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path
            .to_str()
            .and_then(|p| p.strip_suffix(".json"))
            .map(PathBuf::from)
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Ok(record) = serde_json::from_str::<SnapshotRecord>(&text)
            && file.exists()
        {
            out.push((file, record));
        }
    }
    out.sort_by(|a, b| (&a.1.created, &a.0).cmp(&(&b.1.created, &b.0)));
    Ok(out)
}

/// The file name of a scheduled snapshot (as k3s names its: node and time).
pub fn scheduled_name(node: &str, at: jiff::Timestamp) -> String {
    format!("tug-snapshot-{node}-{}", at.as_second())
}

/// Deletes the oldest scheduled snapshots of `node` in `dir` beyond `keep`.
pub fn prune(dir: &Path, node: &str, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = format!("tug-snapshot-{node}-");
    let mine: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|(f, _)| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|(f, _)| f)
        .collect();
    let excess = mine.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for file in mine.into_iter().take(excess) {
        std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        let _ = std::fs::remove_file(record_path(&file));
        removed.push(file);
    }
    Ok(removed)
}

/// Takes a snapshot into `dir` at each time `schedule` (cron, optionally with seconds)
/// names, keeping the newest `keep` of this server's.
pub async fn run_schedule(
    store: std::sync::Arc<dyn Store>,
    dir: PathBuf,
    schedule: croner::Cron,
    keep: usize,
    format: String,
    node: String,
) {
    loop {
        let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
        let next = match schedule.find_next_occurrence(&now, false) {
            Ok(n) => n.timestamp(),
            Err(e) => {
                tracing::error!(error = %e, "--snapshot-schedule has no next time; no more snapshots");
                return;
            }
        };
        let wait = next.duration_since(now.timestamp());
        tokio::time::sleep(std::time::Duration::try_from(wait).unwrap_or_default()).await;
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(error = %e, dir = %dir.display(), "cannot create the snapshot directory");
            continue;
        }
        let file = dir.join(scheduled_name(&node, next));
        match save(&*store, &file, &format, &node).await {
            Ok(record) => {
                tracing::info!(file = %file.display(), revision = record.revision, bytes = record.bytes, "scheduled snapshot saved");
                match prune(&dir, &node, keep) {
                    Ok(removed) if !removed.is_empty() => {
                        tracing::info!(removed = removed.len(), keep, "old snapshots removed")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "removing old snapshots failed")
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), file = %file.display(), "scheduled snapshot failed")
            }
        }
    }
}

/// Parses a `--snapshot-schedule`: cron with five fields, or six with seconds first.
pub fn parse_schedule(s: &str) -> anyhow::Result<croner::Cron> {
    s.parse::<croner::Cron>().map_err(|e| {
        anyhow::anyhow!(
            "--snapshot-schedule {s:?} is not a cron schedule such as \"0 */12 * * *\": {e}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_verify_list_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let at = |s: i64| jiff::Timestamp::from_second(s).unwrap();
        for (i, t) in [100, 200, 300].iter().enumerate() {
            let file = dir.path().join(scheduled_name("s0", at(*t)));
            std::fs::write(&file, format!("snapshot {i}")).unwrap();
            write_record(&file, *t, "etcd", "s0").unwrap();
        }
        let other = dir.path().join(scheduled_name("s1", at(50)));
        std::fs::write(&other, "theirs").unwrap();
        write_record(&other, 50, "etcd", "s1").unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 4);
        let first = dir.path().join(scheduled_name("s0", at(100)));
        assert_eq!(verify(&first).unwrap().map(|r| r.revision), Some(100));
        std::fs::write(&first, "snapshot X").unwrap();
        let e = verify(&first).unwrap_err().to_string();
        assert!(e.contains("is damaged"), "{e}");
        let removed = prune(dir.path(), "s0", 2).unwrap();
        assert_eq!(removed, vec![first]);
        assert_eq!(list(dir.path()).unwrap().len(), 3, "s1's snapshot stays");
        assert!(parse_schedule("*/2 * * * * *").is_ok());
        assert!(parse_schedule("every day").is_err());
    }
}
