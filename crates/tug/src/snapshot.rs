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
    /// Restore a snapshot FILE: into an empty data directory (the embedded store), or, for
    /// a server of an HA cluster (stopped, with the cluster's other servers), into its etcd
    /// member as a cluster of one; the other servers rejoin when started with --join.
    Restore {
        /// Snapshot file written by `tug snapshot save` or a scheduled snapshot.
        file: PathBuf,
        /// Data directory to restore into.
        #[arg(long, default_value = "/var/lib/tugboat", env = "TUG_DATA_DIR")]
        data_dir: PathBuf,
        /// `embedded`; an external etcd's snapshot is restored offline with etcd's own tools.
        #[arg(long, default_value = "embedded")]
        datastore: String,
    },
    /// List the snapshots in a directory (scheduled snapshots by default).
    Ls {
        /// The directory (default: DATA_DIR/snapshots).
        #[arg(long)]
        snapshot_dir: Option<PathBuf>,
        /// The server's data directory.
        #[arg(long, default_value = "/var/lib/tugboat", env = "TUG_DATA_DIR")]
        data_dir: PathBuf,
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
                // A server of an HA cluster: its etcd member takes the snapshot.
                Datastore::Embedded(_) if crate::ha::etcd_member::exists(&data_dir) => {
                    let etcd = crate::ha::etcd_member::connect(&data_dir).await?;
                    let info = snapshot_socket::save(&etcd, &file).await?;
                    (info.revision, info.bytes)
                }
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
            let format = if crate::ha::etcd_member::exists(&data_dir) {
                "etcd"
            } else {
                ds.snapshot_format()
            };
            crate::backups::write_record(
                &file,
                revision,
                format,
                &tug_kubelet::agent::default_node_name(),
            )?;
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
            let record = crate::backups::verify(&file)?;
            if crate::ha::etcd_member::exists(&data_dir) {
                if record.as_ref().is_some_and(|r| r.format != "etcd") {
                    bail!(
                        "{} is a snapshot of the embedded store; {} is a server of an HA \
                         cluster (etcd): restore it into an empty data directory instead",
                        file.display(),
                        data_dir.display()
                    );
                }
                let kept = crate::ha::etcd_member::restore(&data_dir, &file).await?;
                println!(
                    "restored {} into the etcd member of {} as a cluster of one{}; start this \
                     server, then the others with --join (they join it again from scratch)",
                    file.display(),
                    data_dir.display(),
                    record
                        .map(|r| format!(" at revision {}", r.revision))
                        .unwrap_or_default()
                );
                println!("the member's previous data is kept in {}", kept.display());
                return Ok(());
            }
            if record.as_ref().is_some_and(|r| r.format != "embedded") {
                bail!(
                    "{} is an etcd snapshot: restore it into the data directory of a server \
                     started with --cluster-init (stopped)",
                    file.display()
                );
            }
            let info = tokio::task::spawn_blocking(move || LocalStore::restore(&file, &data_dir))
                .await?
                .context("restoring the snapshot")?;
            println!("restored snapshot at revision {}", info.revision);
            Ok(())
        }
        SnapshotCommand::Ls {
            snapshot_dir,
            data_dir,
        } => {
            let dir = snapshot_dir.unwrap_or_else(|| data_dir.join("snapshots"));
            let snapshots = crate::backups::list(&dir)?;
            if snapshots.is_empty() {
                println!("no snapshots in {}", dir.display());
                return Ok(());
            }
            println!(
                "{:<44} {:>12} {:>10} {:<8} {:<10} CREATED",
                "NAME", "SIZE", "REVISION", "FORMAT", "NODE"
            );
            for (file, r) in snapshots {
                println!(
                    "{:<44} {:>12} {:>10} {:<8} {:<10} {}",
                    file.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    r.bytes,
                    r.revision,
                    r.format,
                    r.node,
                    r.created
                );
            }
            Ok(())
        }
    }
}
