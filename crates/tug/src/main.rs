//! `tug`: the tugboat binary. It parses the command line and wires library crates together.

mod bench;
mod datastore;
mod debug;
mod snapshot;
mod snapshot_socket;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// tugboat: a Kubernetes-compatible container orchestrator in one binary.
#[derive(Parser)]
#[command(name = "tug", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane. For now: opens the cluster store and keeps it serving
    /// (compaction, lease expiry) until interrupted; the API server comes next.
    Server(ServerArgs),
    /// Back up or restore the cluster store.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Measure performance.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Tools for tugboat's own tests.
    #[command(subcommand, hide = true)]
    Debug(debug::DebugCommand),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Directory holding the cluster's state.
    #[arg(long, default_value = "/var/lib/tugboat", env = "TUG_DATA_DIR")]
    data_dir: PathBuf,
    /// Where state is stored: `embedded` (a file in --data-dir) or `etcd://host:port,host:port`.
    #[arg(long, default_value = "embedded")]
    datastore: String,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server(args).await,
            Command::Snapshot(cmd) => snapshot::run(cmd).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Debug(cmd) => debug::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let ds = datastore::Datastore::parse(&args.datastore, &args.data_dir)?;
    let store = ds.open().await?;
    let revision = store.current_revision().await?;
    let _socket = match &ds {
        datastore::Datastore::Embedded(dir) => Some(snapshot_socket::serve(store.clone(), dir)?),
        datastore::Datastore::Etcd(_) => None,
    };
    tracing::info!(
        datastore = %ds,
        revision,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store ready; press Ctrl-C to stop"
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    Ok(())
}
