//! `tug snapshot save|restore`: backups of the cluster store.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tug_store::LocalStore;

use crate::datastore::Datastore;

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
            // Write next to the target and rename, so a failed save never leaves a partial file
            // under the requested name.
            let tmp = file.with_extension("partial");
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?,
            );
            let taken = match &ds {
                // Read the file directly: this works while a server is writing to it.
                Datastore::Embedded(dir) => LocalStore::snapshot_data_dir(dir, &mut out),
                Datastore::Etcd(_) => ds.open().await?.snapshot(&mut out).await,
            };
            let info = match taken {
                Ok(i) => i,
                Err(e) => {
                    drop(out);
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e).context("taking the snapshot");
                }
            };
            out.flush()?;
            out.get_ref().sync_all()?;
            std::fs::rename(&tmp, &file)
                .with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))?;
            println!(
                "saved snapshot at revision {} ({} bytes) to {}",
                info.revision,
                info.bytes,
                file.display()
            );
            Ok(())
        }
        SnapshotCommand::Restore { file, data_dir } => {
            let info = tokio::task::spawn_blocking(move || LocalStore::restore(&file, &data_dir))
                .await?
                .context("restoring the snapshot")?;
            println!("restored snapshot at revision {}", info.revision);
            Ok(())
        }
    }
}
