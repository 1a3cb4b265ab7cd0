//! `tug snapshot save|restore`: backups of the cluster store.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use tug_store::LocalStore;

use crate::datastore::Datastore;
use crate::snapshot_socket;

/// Snapshot subcommands.
#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Write a consistent snapshot of the store to FILE (safe while writes go on).
    Save {
        /// File to write.
        file: PathBuf,
        /// Data directory of the embedded store.
        #[arg(long, default_value = "/var/lib/tugboat", env = "TUG_DATA_DIR")]
        data_dir: PathBuf,
        /// `embedded` or `etcd://host:port[,host:port]` (etcd writes its own snapshot format).
        #[arg(long, default_value = "embedded")]
        datastore: String,
    },
    /// Restore a snapshot FILE into an empty data directory.
    Restore {
        /// Snapshot file written by `tug snapshot save`.
        file: PathBuf,
        /// Data directory to create; it must not hold a store yet.
        #[arg(long, default_value = "/var/lib/tugboat", env = "TUG_DATA_DIR")]
        data_dir: PathBuf,
        /// `embedded`; an etcd snapshot is restored offline with etcd's own tools.
        #[arg(long, default_value = "embedded")]
        datastore: String,
    },
}

/// Runs a snapshot subcommand.
pub async fn run(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Save {
            file,
            data_dir,
            datastore,
        } => {
            let ds = Datastore::parse(&datastore, &data_dir)?;
            let (revision, bytes) = match &ds {
                Datastore::Embedded(dir) => {
                    // A running server owns (and locks) the store: ask it first.
                    if let Some(saved) = snapshot_socket::request(dir, &file).await? {
                        saved
                    } else {
                        if !dir.join(tug_store::DATA_FILE).exists() {
                            bail!(
                                "no store in {}: pass the --data-dir of the store to back up",
                                dir.display()
                            );
                        }
                        let store = ds.open().await?;
                        let info = snapshot_socket::save(&*store, &file).await?;
                        (info.revision, info.bytes)
                    }
                }
                Datastore::Etcd(_) | Datastore::Member(..) => {
                    let store = ds.open().await?;
                    let info = snapshot_socket::save(&*store, &file).await?;
                    (info.revision, info.bytes)
                }
            };
            println!(
                "saved snapshot at revision {} ({} bytes) to {}",
                revision,
                bytes,
                file.display()
            );
            Ok(())
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            datastore,
        } => {
            if let Datastore::Etcd(_) | Datastore::Member(..) =
                Datastore::parse(&datastore, &data_dir)?
            {
                bail!(
                    "etcd restores snapshots offline: stop the etcd members, then on each run \
                     `etcdctl snapshot restore {} --data-dir NEW_DIR` (etcdutl from etcd 3.5) \
                     with its --name and --initial-cluster, and start it on NEW_DIR",
                    file.display()
                );
            }
            let info = tokio::task::spawn_blocking(move || LocalStore::restore(&file, &data_dir))
                .await?
                .context("restoring the snapshot")?;
            println!("restored snapshot at revision {}", info.revision);
            Ok(())
        }
    }
}
