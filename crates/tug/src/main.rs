//! `tug`: the tugboat binary. It parses the command line and wires library crates together.

/// mimalloc: the system allocator spent a third of the scheduler benchmark's CPU in
/// malloc and free and held twice the memory (fragmentation across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod backups;
mod bench;
mod bench_api;
mod bench_scheduler;
mod control_plane;
mod datastore;
mod debug;
mod ha;
mod image;
mod kubeconfig;
mod lb;
mod node;
mod server;
mod snapshot;
mod snapshot_socket;
mod up;

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
    /// Run a cluster: the store, the API server (TLS), the scheduler, the controllers and a
    /// node agent (`--disable-agent` for the control plane alone).
    Server(Box<server::ServerArgs>),
    /// Run a node agent joined to a server (`--simulate N`: hollow nodes instead).
    Agent(Box<agent::AgentArgs>),
    /// Manage the node's container images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Run a multi-node cluster on this machine: the server, and node agents each in a network
    /// namespace of its own.
    Up(up::UpArgs),
    /// Stop a cluster `tug up` started and remove what it made.
    Down(up::DownArgs),
    /// Run a load balancer on this machine over every live API server, for kubectl.
    Lb(lb::LbArgs),
    /// Back up or restore the cluster store.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Issue a kubeconfig for a user, signed by the cluster CA.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Measure performance.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Tools for tugboat's own tests.
    #[command(subcommand, hide = true)]
    Debug(debug::DebugCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The runtime's helper processes run single-threaded, before anything else starts.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() == 3 {
        let dir = std::path::Path::new(&argv[2]);
        match argv[1].to_str() {
            Some("__shim") => std::process::exit(tug_runtime::shim::container_main(dir)),
            Some("__sandbox") => std::process::exit(tug_runtime::shim::sandbox_main(dir)),
            _ => {}
        }
    }
    if argv.len() >= 4 && argv[1] == "__exec" {
        let dir = std::path::Path::new(&argv[2]);
        let args: Vec<String> = argv[3..]
            .iter()
            .map(|a| a.to_string_lossy().to_string())
            .collect();
        std::process::exit(tug_runtime::shim::exec_main(dir, &args));
    }
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
            Command::Server(args) => server::run(*args).await,
            Command::Agent(args) => agent::run(*args).await,
            Command::Up(args) => up::up(args).await,
            Command::Down(args) => up::down(args).await,
            Command::Lb(args) => lb::run(args).await,
            Command::Snapshot(cmd) => snapshot::run(cmd).await,
            Command::Image(cmd) => image::run(cmd).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Debug(cmd) => debug::run(cmd).await,
            Command::Kubeconfig(args) => kubeconfig::run(args),
        }
    });
    // Exit without waiting for the tasks still running (controllers, watches): dropping the
    // runtime would cancel them one by one while others still poll them, and kube-runtime's
    // controllers panic on a cancelled reconcile. Every acknowledged write is already durable.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
