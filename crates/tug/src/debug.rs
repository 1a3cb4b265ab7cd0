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
    /// Run one container in a fresh sandbox with the native runtime, wait for it to end, and
    /// print its log and exit record.
    RunContainer {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        image: String,
        /// Run as this user.
        #[arg(long, default_value_t = 0)]
        uid: u32,
        /// Memory limit in bytes.
        #[arg(long)]
        memory: Option<u64>,
        args: Vec<String>,
    },
}

/// Runs a debug subcommand.
pub async fn run(cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::RunContainer {
            data_dir,
            image,
            uid,
            memory,
            args,
        } => {
            tokio::task::spawn_blocking(move || {
                use tug_runtime::spec::{ContainerSpec, SandboxSpec};
                let rt = tug_runtime::NativeRuntime::open(&data_dir, &std::env::current_exe()?)?;
                let uid_s = format!("debug-{}", std::process::id());
                rt.run_sandbox(&SandboxSpec {
                    uid: uid_s.clone(),
                    hostname: "debug".into(),
                    ..Default::default()
                })?;
                let log = data_dir.join(format!("{uid_s}.log"));
                let started = rt.start_container(ContainerSpec {
                    sandbox: uid_s.clone(),
                    name: "debug".into(),
                    image_id: image,
                    args,
                    env: vec!["PATH=/bin".into()],
                    uid,
                    gid: uid,
                    capabilities: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
                    limits: tug_runtime::cgroup::Limits {
                        cpu_shares: 1024,
                        cpu_period_us: 100_000,
                        memory_bytes: memory,
                        pids: Some(1024),
                        ..Default::default()
                    },
                    log_path: log.clone(),
                    ..Default::default()
                });
                let id = match started {
                    Ok(id) => id,
                    Err(e) => {
                        rt.remove_sandbox(&uid_s);
                        anyhow::bail!("{e}");
                    }
                };
                let exit = loop {
                    if let Some(tug_runtime::Container {
                        state: tug_runtime::ContainerState::Exited(e),
                        ..
                    }) = rt.container(&id)
                    {
                        break e;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                };
                let text = tug_runtime::logs::read(&log, &Default::default())?;
                std::io::stdout().write_all(&text)?;
                println!("{}", serde_json::to_string(&exit)?);
                rt.remove_container(&id)?;
                rt.remove_sandbox(&uid_s);
                Ok(())
            })
            .await?
        }
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
