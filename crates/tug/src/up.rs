//! `tug up` and `tug down`: a multi-node cluster on one machine. The server runs in the
//! host's network namespace; each node agent runs in a network namespace of its own, joined
//! to the others by a bridge, so traffic between nodes crosses a real link. All nodes share one
//! image store. Everything made is written down in `DIR/up.json` as it is made, so that
//! `tug down` removes exactly that, even after a failed `tug up`.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tug_network::Cidr;
use tug_network::localnet;

/// The default directory of a local cluster.
pub const DEFAULT_DIR: &str = "/var/lib/tugboat-up";

/// `tug up`'s flags.
#[derive(clap::Args)]
pub struct UpArgs {
    /// How many servers to run: one runs in the host's network namespace on the embedded
    /// store; more make an HA cluster, each server (with its etcd member) in a network
    /// namespace of its own on the nodes' link, the first with --cluster-init and the others
    /// joining it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=7))]
    servers: u8,
    /// An extra argument for every server (repeat it): `--server-arg=--leader-elect-lease-duration=8s`.
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// How many node agents to run, each in its own network namespace.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=200))]
    nodes: u8,
    /// Where the cluster keeps its state, logs and shared image store.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// A short name for the cluster's links and namespaces (at most 8 characters).
    #[arg(long, default_value = "tugup")]
    name: String,
    /// The link between the nodes: the host's bridge takes the first address, node i the
    /// (i+1)th.
    #[arg(long, default_value = "10.241.0.0/24")]
    node_cidr: String,
    /// The cluster's pod range (each node gets a /24 of it).
    #[arg(long, default_value = "10.242.0.0/16")]
    cluster_cidr: String,
    /// The API server's port on the bridge address (0: any free port).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Seconds a node may go without renewing its Lease before it is NotReady and its pods
    /// are evicted (the server's flag).
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Seconds between the nodes' Lease renewals (the agents' flag).
    #[arg(long, default_value_t = 10.0)]
    heartbeat_interval: f64,
    /// How pods reach other nodes' pods: `host-gw` or `vxlan` (the agents' --network-backend).
    #[arg(long, default_value = "host-gw", value_parser = ["host-gw", "vxlan"])]
    backend: String,
    /// A CNI configuration directory for the agents (default: the built-in pod network).
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// Seconds to wait for every node to be Ready.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// `tug down`'s flags.
#[derive(clap::Args)]
pub struct DownArgs {
    /// The directory `tug up` used.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
}

/// The Service range (the API server's, fixed).
const SERVICE_CIDR: &str = tug_api::cluster::SERVICE_CIDR;

/// What `tug up` made, for `tug down`.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct State {
    bridge: Option<String>,
    /// Blackhole routes added on the host, at `metric`.
    routes: Vec<String>,
    metric: u32,
    netns: Vec<String>,
    links: Vec<String>,
    pids: Vec<u32>,
    kubeconfig: Option<PathBuf>,
    /// How many of `pids` (the first) are servers.
    servers: usize,
    /// What runs, and how to start it again (for tests that kill and restart a process).
    processes: Vec<Process>,
}

/// A process `tug up` started.
#[derive(Serialize, Deserialize, Default, Clone)]
#[serde(default)]
struct Process {
    /// `server-J` (`server` when alone) or `node-I`.
    name: String,
    /// The network namespace it runs in (none: the host's).
    netns: Option<String>,
    /// Its arguments after `tug`.
    args: Vec<String>,
    /// Its log file.
    log: PathBuf,
}

impl Process {
    fn of(name: &str, netns: Option<&str>, cmd: &Command, log: &Path) -> Process {
        Process {
            name: name.to_string(),
            netns: netns.map(str::to_string),
            args: cmd
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            log: log.to_path_buf(),
        }
    }
}

impl State {
    fn path(dir: &Path) -> PathBuf {
        dir.join("up.json")
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }
}

/// The `n`th address of a block.
fn nth(cidr: Cidr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.base) + n)
}

/// Starts the cluster; returns once every node is Ready.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "tug up makes network namespaces, links and routes and runs node agents: run it as root"
        );
    }
    if args.name.is_empty()
        || args.name.len() > 8
        || !args.name.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        bail!("--name {:?} must be 1 to 8 letters or digits", args.name);
    }
    let node_cidr: Cidr = args.node_cidr.parse().context("--node-cidr")?;
    let cluster_cidr: Cidr = args.cluster_cidr.parse().context("--cluster-cidr")?;
    let service_cidr: Cidr = SERVICE_CIDR.parse()?;
    if u32::from(args.nodes) + u32::from(args.servers) + 2 >= 1 << (32 - node_cidr.prefix) {
        bail!(
            "--node-cidr {} has no room for {} nodes and {} servers",
            args.node_cidr,
            args.nodes,
            args.servers
        );
    }
    if State::path(&args.dir).exists() {
        bail!(
            "a cluster is already up in {}: run `tug down --dir {}` first",
            args.dir.display(),
            args.dir.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let mut state = State::default();
    state.save(&dir)?;
    let result = start(
        &args,
        &dir,
        node_cidr,
        cluster_cidr,
        service_cidr,
        &mut state,
    )
    .await;
    state.save(&dir)?;
    if let Err(e) = result {
        eprintln!("tug up failed; removing what it made");
        down_dir(&dir).await?;
        return Err(e);
    }
    let kubeconfig = state.kubeconfig.clone().unwrap_or_default();
    if args.servers > 1 {
        println!(
            "A {}-node cluster with {} servers is up.",
            args.nodes, args.servers
        );
    } else {
        println!("A {}-node cluster is up.", args.nodes);
    }
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes -o wide");
    println!(
        "Images for every node: tug image import FILE --data-dir {}",
        dir.join("shared").display()
    );
    println!(
        "Logs: {}/*.log. Stop it with: tug down --dir {}",
        dir.display(),
        dir.display()
    );
    Ok(())
}

async fn start(
    args: &UpArgs,
    dir: &Path,
    node_cidr: Cidr,
    cluster_cidr: Cidr,
    service_cidr: Cidr,
    state: &mut State,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the tug binary")?;
    // The cluster's ranges are routed locally on the host before anything runs, at a metric
    // of the cluster's own.
    state.metric = route_metric(&args.name);
    for range in [cluster_cidr, service_cidr] {
        if localnet::add_blackhole(range, state.metric).await? {
            state
                .routes
                .push(format!("{}/{}", range.base, range.prefix));
            state.save(dir)?;
        }
    }
    let bridge = format!("{}0", args.name);
    let host_ip = nth(node_cidr, 1);
    // Another link holding addresses of the node range would take the nodes' traffic.
    let taken: Vec<String> = localnet::addresses_in(node_cidr)
        .await?
        .into_iter()
        .filter(|(link, _)| *link != bridge)
        .map(|(link, ip)| format!("{ip} on {link}"))
        .collect();
    if !taken.is_empty() {
        bail!(
            "--node-cidr {}/{} is in use on this host ({}): pick another range, or take down \
             the cluster that holds it",
            node_cidr.base,
            node_cidr.prefix,
            taken.join(", ")
        );
    }
    state.bridge = Some(bridge.clone());
    state.save(dir)?;
    localnet::create_bridge(&bridge, host_ip, node_cidr.prefix).await?;
    eprintln!("bridge {bridge} up at {host_ip}/{}", node_cidr.prefix);

    let server_dir = dir.join("server");
    let url = if args.servers > 1 {
        start_servers(args, dir, &exe, &bridge, node_cidr, state).await?
    } else {
        let _ = std::fs::remove_file(server_dir.join("admin.kubeconfig"));
        let mut server = Command::new(&exe);
        server
            .arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(&server_dir)
            .args(["--listen", &format!("{host_ip}:{}", args.port)])
            .args(["--cluster-cidr", &args.cluster_cidr])
            .args([
                "--node-monitor-grace-period",
                &args.node_monitor_grace_period.to_string(),
            ])
            .args(&args.server_arg);
        state.processes.push(Process::of(
            "server",
            None,
            &server,
            &dir.join("server.log"),
        ));
        let pid = spawn_logged(server, &dir.join("server.log"))?;
        state.pids.push(pid);
        state.servers = 1;
        state.save(dir)?;
        let kubeconfig = server_dir.join("admin.kubeconfig");
        wait_for(
            "the API server",
            Duration::from_secs(30),
            &dir.join("server.log"),
            || kubeconfig.exists(),
        )
        .await?;
        server_url(&kubeconfig)?
    };
    let kubeconfig = server_dir.join("admin.kubeconfig");
    state.kubeconfig = Some(kubeconfig.clone());
    let token = std::fs::read_to_string(server_dir.join("node-token"))
        .context("reading the server's node token")?;
    eprintln!("API server ready at {url}");

    let shared = dir.join("shared");
    std::fs::create_dir_all(shared.join("images"))?;
    // The host's namespace, pinned: nodes pull from registries on the host's loopback in it.
    let host_netns = dir.join("host.netns");
    if !host_netns.exists() {
        localnet::pin_current_netns(&host_netns)?;
    }
    for i in 1..=u32::from(args.nodes) {
        let node = format!("node-{i}");
        let netns = format!("{}-{node}", args.name);
        let link = format!("{}v{i}", args.name);
        let ip = nth(node_cidr, i + 1);
        localnet::create_netns(&netns).await?;
        state.netns.push(netns.clone());
        state.save(dir)?;
        localnet::connect(&bridge, &link, &netns, ip, node_cidr.prefix).await?;
        state.links.push(link);
        state.save(dir)?;
        let data = dir.join("nodes").join(&node);
        std::fs::create_dir_all(&data)?;
        let images = data.join("images");
        if !images.exists() {
            std::os::unix::fs::symlink(shared.join("images"), &images)?;
        }
        let ns = std::fs::File::open(localnet::netns_path(&netns))?;
        let mut agent = Command::new(&exe);
        agent
            .arg("agent")
            .args(["--server", &url])
            .args(["--token", token.trim()])
            .arg("--ca-cert")
            .arg(server_dir.join("pki").join("ca.crt"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--node-name", &node])
            .args(["--node-ip", &ip.to_string()])
            .args(["--cluster-cidr", &args.cluster_cidr])
            .args(["--heartbeat-interval", &args.heartbeat_interval.to_string()])
            // Images are shared: one node's garbage collection must not remove another's.
            .args(["--image-gc-high-threshold", "100"])
            .args(["--image-gc-low-threshold", "100"]);
        // The agents' default CNI directory is the host's: a cluster of `tug up` uses the
        // built-in network unless told otherwise.
        let cni_dir = args
            .cni_conf_dir
            .clone()
            .unwrap_or_else(|| dir.join("no-cni"));
        agent.arg("--cni-conf-dir").arg(cni_dir);
        agent.arg("--loopback-registry-netns").arg(&host_netns);
        agent.args(["--network-backend", &args.backend]);
        // SAFETY: setns is async-signal-safe; the child joins the node's namespace before exec.
        unsafe {
            agent.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
        let log = dir.join(format!("{node}.log"));
        state
            .processes
            .push(Process::of(&node, Some(&netns), &agent, &log));
        let pid = spawn_logged(agent, &log)?;
        state.pids.push(pid);
        state.save(dir)?;
        eprintln!("{node} starting in namespace {netns} at {ip}");
    }
    // With several servers, kubectl goes through a balancer on the host's loopback that
    // follows every live server.
    let kubeconfig = if args.servers > 1 {
        start_balancer(&exe, dir, &kubeconfig, state).await?
    } else {
        kubeconfig
    };
    if let Err(e) = wait_ready(
        &kubeconfig,
        args.nodes.into(),
        Duration::from_secs(args.timeout),
    )
    .await
    {
        bail!("{e:#}\n{}", diagnose(node_cidr, &url, state));
    }
    let servers_netns: Vec<String> = if args.servers > 1 {
        (1..=args.servers)
            .map(|j| format!("{}-server-{j}", args.name))
            .collect()
    } else {
        Vec::new()
    };
    route_pods_via_nodes(&kubeconfig, &bridge, state.metric, &servers_netns).await
}

/// Starts `tug lb` on the host over the servers, writing DIR/admin.kubeconfig (through it);
/// returns that kubeconfig's path.
async fn start_balancer(
    exe: &Path,
    dir: &Path,
    first: &Path,
    state: &mut State,
) -> anyhow::Result<PathBuf> {
    let through = dir.join("admin.kubeconfig");
    let _ = std::fs::remove_file(&through);
    let log = dir.join("lb.log");
    let mut lb = Command::new(exe);
    lb.arg("lb")
        .arg("--kubeconfig")
        .arg(first)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--write-kubeconfig")
        .arg(&through);
    state.processes.push(Process::of("lb", None, &lb, &log));
    let pid = spawn_logged(lb, &log)?;
    state.pids.push(pid);
    state.kubeconfig = Some(through.clone());
    state.save(dir)?;
    wait_for(
        "the API server load balancer",
        Duration::from_secs(30),
        &log,
        || through.exists(),
    )
    .await?;
    eprintln!("kubectl reaches every server through {}", through.display());
    Ok(through)
}

/// Starts the servers of an HA cluster, each in a network namespace of its own on the nodes'
/// link, after the nodes' addresses: server 1 (data in DIR/server) with --cluster-init, the
/// others (DIR/server-J) joining it. Returns server 1's URL.
async fn start_servers(
    args: &UpArgs,
    dir: &Path,
    exe: &Path,
    bridge: &str,
    node_cidr: Cidr,
    state: &mut State,
) -> anyhow::Result<String> {
    // Each server has its namespace to itself: the usual port will do.
    let port = if args.port == 0 { 6443 } else { args.port };
    let first_ip = nth(node_cidr, u32::from(args.nodes) + 2);
    let first_url = format!("https://{first_ip}:{port}");
    for j in 1..=u32::from(args.servers) {
        let name = format!("server-{j}");
        let netns = format!("{}-{name}", args.name);
        let link = format!("{}s{j}", args.name);
        let ip = nth(node_cidr, u32::from(args.nodes) + 1 + j);
        localnet::create_netns(&netns).await?;
        state.netns.push(netns.clone());
        state.save(dir)?;
        localnet::connect(bridge, &link, &netns, ip, node_cidr.prefix).await?;
        state.links.push(link);
        state.save(dir)?;
        let (data, log) = if j == 1 {
            (dir.join("server"), dir.join("server.log"))
        } else {
            (dir.join(&name), dir.join(format!("{name}.log")))
        };
        let _ = std::fs::remove_file(data.join("admin.kubeconfig"));
        let mut server = Command::new(exe);
        server
            .arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &format!("{ip}:{port}")])
            .args(["--advertise-address", &ip.to_string()])
            .args(["--node-name", &name])
            .args(["--cluster-cidr", &args.cluster_cidr])
            .args([
                "--node-monitor-grace-period",
                &args.node_monitor_grace_period.to_string(),
            ])
            .args(&args.server_arg);
        if j == 1 {
            server.arg("--cluster-init");
        } else {
            let token = std::fs::read_to_string(dir.join("server").join("server-token"))
                .context("reading the first server's server token")?;
            server.args(["--join", &first_url, "--token", token.trim()]);
        }
        let ns = std::fs::File::open(localnet::netns_path(&netns))?;
        // SAFETY: setns is async-signal-safe; the child joins its namespace before exec.
        unsafe {
            server.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
        state
            .processes
            .push(Process::of(&name, Some(&netns), &server, &log));
        let pid = spawn_logged(server, &log)?;
        state.pids.push(pid);
        state.servers += 1;
        state.save(dir)?;
        let kubeconfig = data.join("admin.kubeconfig");
        wait_for(
            &format!("server {j}"),
            Duration::from_secs(90),
            &log,
            || kubeconfig.exists(),
        )
        .await?;
        eprintln!("{name} ready in namespace {netns} at {ip}:{port}");
    }
    Ok(first_url)
}

/// Routes each node's pod range on the host to the node (over the cluster's bridge), so that
/// the API server reaches pods as a control-plane node's does: admission webhooks and
/// aggregated APIs served from pods. The routes are more specific than the cluster range's
/// blackhole and go only to the cluster's own namespaces; they go with the bridge.
async fn route_pods_via_nodes(
    kubeconfig: &Path,
    bridge: &str,
    metric: u32,
    servers_netns: &[String],
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &Default::default(),
    )
    .await?;
    let nodes: kube::Api<Node> = kube::Api::all(kube::Client::try_from(config)?);
    // Ranges are given to nodes by the control plane as they register, moments apart from
    // their readiness.
    let start = Instant::now();
    let list = loop {
        let list = nodes.list(&Default::default()).await?.items;
        let assigned = list
            .iter()
            .all(|n| n.spec.as_ref().is_some_and(|s| s.pod_cidr.is_some()));
        if assigned || start.elapsed() > Duration::from_secs(10) {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for node in list {
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        let ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone());
        let (Some(cidr), Some(ip)) = (cidr, ip) else {
            continue;
        };
        let metric = metric.to_string();
        let on_host = [
            "route", "replace", &cidr, "via", &ip, "dev", bridge, "metric", &metric,
        ];
        run_ip(&on_host).await?;
        // The servers of an HA cluster, each in its namespace on the nodes' link, reach pods
        // the same way (webhooks, aggregated APIs).
        for netns in servers_netns {
            run_ip(&["-n", netns, "route", "replace", &cidr, "via", &ip]).await?;
        }
    }
    Ok(())
}

/// Runs `ip ARGS`; fails with its message.
async fn run_ip(args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// What stands between the nodes and the API server, for when they do not become Ready: for
/// each node whether its agent still runs and whether its namespace reaches the server, with
/// the host's route back to it and the node's neighbour entry for the host.
fn diagnose(node_cidr: Cidr, url: &str, state: &State) -> String {
    let server = url
        .trim_start_matches("https://")
        .parse::<std::net::SocketAddr>();
    let mut out = vec!["what the nodes see:".to_string()];
    for (i, netns) in state.netns.iter().enumerate() {
        // `pids` and `netns` line up, except that a lone server has a pid but no namespace.
        let agent = state
            .pids
            .get(i + usize::from(state.servers <= 1))
            .copied()
            .unwrap_or(0);
        let alive = agent != 0 && Path::new(&format!("/proc/{agent}")).exists();
        let reach = match &server {
            Ok(addr) => match localnet::probe_from(netns, *addr, Duration::from_secs(3)) {
                Ok(()) => format!("reaches {addr}"),
                Err(e) => format!("cannot reach {addr}: {e:#}"),
            },
            Err(_) => format!("(no address in {url})"),
        };
        let neigh = command_line("ip", &["-n", netns, "neigh", "show"]);
        out.push(format!(
            "  {netns}: process {}; {reach}; neighbours: {neigh}",
            if alive { "running" } else { "exited" }
        ));
    }
    let range = format!("{}/{}", node_cidr.base, node_cidr.prefix);
    out.push(format!(
        "  host links in {range}: {}; route to node-1: {}",
        command_line("ip", &["-br", "addr", "show", "to", &range]),
        command_line("ip", &["route", "get", &nth(node_cidr, 2).to_string()])
    ));
    out.join("\n")
}

/// A command's output on one line, or why it could not run (diagnostics only).
fn command_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if text.is_empty() { "none".into() } else { text }
        }
        Err(e) => format!("({program}: {e})"),
    }
}

/// The metric of a cluster's host routes: from its name, so that clusters differ.
fn route_metric(name: &str) -> u32 {
    let h = name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    1000 + h % 60000
}

/// Starts `cmd` in a session of its own (it outlives `tug up`), output to `log`.
fn spawn_logged(mut cmd: Command, log: &Path) -> anyhow::Result<u32> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("NO_COLOR", "1")
        .process_group(0)
        .spawn()
        .context("starting a tug process")?;
    Ok(child.id())
}

async fn wait_for(
    what: &str,
    limit: Duration,
    log: &Path,
    done: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            bail!(
                "{what} did not start within {limit:?}; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The server URL in a kubeconfig.
fn server_url(kubeconfig: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(kubeconfig)?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().trim_matches('"').to_string())
        .context("the kubeconfig names no server")
}

/// Waits until `count` nodes are Ready, reporting progress.
async fn wait_ready(kubeconfig: &Path, count: usize, limit: Duration) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &Default::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let start = Instant::now();
    let mut last = usize::MAX;
    let mut error = String::new();
    loop {
        let ready = match nodes.list(&Default::default()).await {
            Ok(list) => list
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count(),
            Err(e) => {
                error = format!(" (listing nodes: {e})");
                0
            }
        };
        if ready != last {
            eprintln!("{ready}/{count} nodes Ready");
            last = ready;
        }
        if ready >= count {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "only {ready} of {count} nodes became Ready within {limit:?}{error}; see the node-*.log files"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops the cluster and removes what `tug up` made.
pub async fn down(args: DownArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("no cluster in {}", args.dir.display()))?;
    if !State::path(&dir).exists() {
        bail!("no cluster is up in {} (no up.json)", dir.display());
    }
    down_dir(&dir).await?;
    println!("The cluster in {} is down.", dir.display());
    Ok(())
}

async fn down_dir(dir: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(State::path(dir))?;
    let state: State = serde_json::from_slice(&text).context("reading up.json")?;
    for pid in &state.pids {
        kill_tree(*pid as i32);
    }
    // The containers and their shims (each names its directory under DIR).
    kill_matching(&dir.display().to_string());
    unmount_under(dir);
    let _ = std::fs::remove_file(dir.join("host.netns"));
    for ns in &state.netns {
        localnet::delete_netns(ns)?;
    }
    for link in &state.links {
        localnet::delete_link(link).await?;
    }
    if let Some(b) = &state.bridge {
        localnet::delete_link(b).await?;
    }
    for r in &state.routes {
        localnet::remove_blackhole(r.parse()?, state.metric).await?;
    }
    std::fs::remove_file(State::path(dir))?;
    Ok(())
}

/// Kills `pid` and its descendants.
fn kill_tree(pid: i32) {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        kill_tree(c);
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Kills every tug server, agent, shim and sandbox whose command line mentions `marker`, with
/// its descendants (the containers).
fn kill_matching(marker: &str) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        let role = args.get(1).map(String::as_str).unwrap_or("");
        if ["server", "agent", "__shim", "__sandbox"].contains(&role)
            && args.iter().any(|a| a.contains(marker))
        {
            kill_tree(pid);
        }
    }
}

/// Unmounts whatever is mounted under `dir` (container root filesystems, volumes), deepest
/// first.
fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}
