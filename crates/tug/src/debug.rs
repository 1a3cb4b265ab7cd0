//! Hidden subcommands that tugboat's own tests drive.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use tug_store::{LocalOptions, LocalStore, PutRequest, Store};

/// Test helpers.
#[derive(Subcommand)]
pub enum DebugCommand {
    /// Write keys `ack/<writer>/<n>` to the embedded store from several concurrent writers,
    /// printing `<key>` on stdout only after the write is acknowledged. Runs until killed.
    AckWriter {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// Checkpoint after this many bytes of write-ahead log (small values test rotation).
        #[arg(long)]
        checkpoint_bytes: Option<u64>,
    },
}

/// Runs a debug subcommand.
pub async fn run(cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::AckWriter {
            data_dir,
            writers,
            checkpoint_bytes,
        } => {
            let mut opts = LocalOptions::default();
            if let Some(b) = checkpoint_bytes {
                opts.checkpoint_bytes = b;
            }
            let store = LocalStore::open(&data_dir, opts)?;
            // Like a server, take snapshot requests while writing.
            let _socket =
                crate::snapshot_socket::serve(std::sync::Arc::new(store.clone()), &data_dir)?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            for w in 0..writers {
                let store = store.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    for n in 0u64.. {
                        let key = format!("ack/{w}/{n:08}");
                        let value = format!("value-{w}-{n}");
                        if store
                            .put(PutRequest::new(key.clone(), value))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        if tx.send(key).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut out = std::io::stdout().lock();
            while let Some(key) = rx.recv().await {
                writeln!(out, "{key}")?;
                out.flush()?;
            }
            Ok(())
        }
    }
}
