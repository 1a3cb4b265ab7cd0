//! `tug server`: the store, the API server (TLS), the controllers and the scheduler, the
//! cluster DNS, and (unless disabled) a node agent, in one process.

use std::path::PathBuf;

use crate::node::{Node, NodeFlags};
use crate::{control_plane, datastore, snapshot_socket};

/// `tug server`'s flags.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    action: Option<ServerAction>,
    /// Directory holding the cluster's state.
    #[arg(long, default_value = "/var/lib/tugboat", env = "TUG_DATA_DIR")]
    data_dir: PathBuf,
    /// Where state is stored: `embedded` (a file in --data-dir) or `etcd://host:port,host:port`.
    #[arg(long, default_value = "embedded")]
    datastore: String,
    /// Start a new HA cluster: run an etcd member (Debian's etcd, supervised by this server,
    /// its data in DATA_DIR/etcd, TLS from the cluster CA) and keep the cluster in it. Other
    /// servers join with --join and the token in DATA_DIR/server-token.
    #[arg(long, conflicts_with = "join")]
    cluster_init: bool,
    /// Join the HA cluster of the server at this URL (https://HOST:6443): become a member of
    /// its etcd and share its CA, keys and tokens. Needs --token. Ignored once this data
    /// directory holds a member (a restart).
    #[arg(long, requires = "token")]
    join: Option<String>,
    /// The server token of the cluster to --join (DATA_DIR/server-token on one of its servers).
    #[arg(long, env = "TUG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The etcd member's client port (--cluster-init, --join), on the advertise address.
    #[arg(long, default_value_t = 2379)]
    etcd_client_port: u16,
    /// The etcd member's peer port (--cluster-init, --join), on the advertise address.
    #[arg(long, default_value_t = 2380)]
    etcd_peer_port: u16,
    /// When to take snapshots of the store (cron, in UTC; six fields put seconds first; ""
    /// turns them off), each into --snapshot-dir as `tug-snapshot-NODE-TIME` with its record.
    #[arg(long, default_value = "0 */12 * * *")]
    snapshot_schedule: String,
    /// How many scheduled snapshots of this server are kept (the oldest go first).
    #[arg(long, default_value_t = 5)]
    snapshot_retention: usize,
    /// Where scheduled snapshots go (default: DATA_DIR/snapshots).
    #[arg(long)]
    snapshot_dir: Option<PathBuf>,
    /// Address the API server listens on (HTTPS).
    #[arg(long, default_value = "0.0.0.0:6443")]
    listen: std::net::SocketAddr,
    /// How often the store's history is compacted, in seconds; watches and lists older than
    /// one interval get 410 Gone. 0 turns it off.
    #[arg(long, default_value_t = 300)]
    etcd_compaction_interval: u64,
    /// How often every node's kubelet is scraped for the resource metrics API
    /// (metrics.k8s.io, `kubectl top`), as metrics-server's flag; 0s turns scraping off.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    metric_resolution: std::time::Duration,
    /// Seconds a node may go without renewing its Lease before it is NotReady and its pods are
    /// evicted (after their tolerationSeconds).
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Finished pods kept before the oldest are deleted.
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// The pod network; each node gets a block of it as its podCIDR.
    #[arg(long, default_value = tug_api::cluster::POD_CIDR)]
    cluster_cidr: String,
    /// The prefix length of each node's block of the cluster CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Run this many simulated (hollow) nodes in the server process, for tests and scale runs.
    #[arg(long, default_value_t = 0)]
    simulated_nodes: usize,
    /// Seconds a pod that runs to completion runs on a simulated node.
    #[arg(long, default_value_t = 1.0)]
    simulated_pod_seconds: f64,
    /// Run without the built-in node agent (a control plane only; the agent needs root).
    #[arg(long)]
    disable_agent: bool,
    /// The address nodes and pods reach the control plane at, published as the `kubernetes`
    /// and `kube-dns` Services' endpoints (default: the --listen address, when it names one).
    #[arg(long)]
    advertise_address: Option<std::net::Ipv4Addr>,
    /// The cluster DNS server's port on the advertise address (0: any free port).
    #[arg(long, default_value_t = 53)]
    cluster_dns_port: u16,
    /// The cluster's DNS domain.
    #[arg(long, default_value = tug_api::cluster::CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// An `apiserver.config.k8s.io/v1` EncryptionConfiguration: which resources are stored
    /// encrypted, and with which providers and keys (the first encrypts). At start every value
    /// it covers is read (a key that does not decrypt stops the server) and those not written
    /// with the first key are written again (key rotation).
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// An `apiserver.config.k8s.io/v1` AdmissionConfiguration: the admission plugins'
    /// settings (PodSecurity's defaults and exemptions).
    #[arg(long)]
    admission_control_config_file: Option<PathBuf>,
    /// An `audit.k8s.io/v1` Policy: which requests are recorded, at which level.
    #[arg(long, requires = "audit_log_path")]
    audit_policy_file: Option<PathBuf>,
    /// Where audit events are written, one JSON object per line (`-`: standard output).
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// Megabytes an audit log file grows to before it is rotated (0: never).
    #[arg(long, default_value_t = 100)]
    audit_log_maxsize: u64,
    /// Rotated audit log files kept (0: all).
    #[arg(long, default_value_t = 10)]
    audit_log_maxbackup: usize,
    /// How long node certificates signed by the controller manager are valid, e.g. 8760h (a
    /// request's `expirationSeconds` may ask for less, at least 10m). Nodes renew theirs
    /// before they expire.
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    cluster_signing_duration: std::time::Duration,
    /// A static token file: CSV rows `token,user,uid[,"group1,group2"]`, each token a user
    /// (as kube-apiserver's --token-auth-file).
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// An `apiserver.config.k8s.io/v1` AuthenticationConfiguration: JWT issuers (OIDC)
    /// whose tokens are users, with their audiences, claim validation rules and claim
    /// mappings.
    #[arg(long)]
    authentication_config: Option<PathBuf>,
    /// How long a server waits after the last renewal it saw of the scheduler's or
    /// controller manager's Lease before taking it over (as --leader-elect-lease-duration).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before it stops scheduling and reconciling.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: std::time::Duration,
    /// How often the leader renews and the others try to take over.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: std::time::Duration,
    #[command(flatten)]
    node: NodeFlags,
}

/// What else `tug server` does besides running one.
#[derive(clap::Subcommand)]
enum ServerAction {
    /// Remove a server from an HA cluster: its etcd member leaves the cluster. Run it on
    /// another server of the cluster, after stopping the one removed.
    Remove {
        /// The server's name (its --node-name).
        name: String,
        /// The data directory of the server this runs on.
        #[arg(long, default_value = "/var/lib/tugboat", env = "TUG_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// Runs the cluster until Ctrl-C (or a `tug server` subcommand).
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if let Some(ServerAction::Remove { name, data_dir }) = &args.action {
        return crate::ha::etcd_member::remove(data_dir, name).await;
    }
    use anyhow::{Context, bail};
    let started = std::time::Instant::now();
    let election = tug_controllers::leader::Timing {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    election
        .validate()
        .map_err(|e| anyhow::anyhow!("--leader-elect-*: {e}"))?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let listen_host = args.listen.ip().to_string();
    let member_config = crate::ha::etcd_member::MemberConfig {
        name: args.node.node_name(),
        address: args.advertise_address.map(std::net::IpAddr::V4).unwrap_or(
            match args.listen.ip() {
                ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                ip => ip,
            },
        ),
        client_port: args.etcd_client_port,
        peer_port: args.etcd_peer_port,
    };
    let member_start = member_start(&args, &member_config).await?;
    let pki = tug_apiserver::pki::Pki::load_or_create(&args.data_dir, &[listen_host])?;
    let server_token = crate::ha::token::ServerToken::load_or_create(&args.data_dir, &pki.ca_cert)?;
    let mut member = None;
    let ds = match member_start {
        Some(start) => {
            if args.datastore != "embedded" {
                bail!(
                    "--datastore {} and an etcd member of this server (--cluster-init, --join) exclude each other",
                    args.datastore
                );
            }
            let running = crate::ha::etcd_member::EtcdMember::start(
                &args.data_dir,
                &pki,
                member_config.clone(),
                start,
            )
            .await?;
            let tls = crate::ha::etcd_member::client_tls(&pki)?;
            // Only this server's member, as k3s does: a member cut off from the others' quorum
            // cuts its server off too, instead of the server writing through another member.
            let endpoints = vec![member_config.client_url()];
            member = Some(running);
            datastore::Datastore::Member(endpoints, tls)
        }
        None => datastore::Datastore::parse(&args.datastore, &args.data_dir)?,
    };
    let store = ds.open().await?;
    let revision = store.current_revision().await?;
    // A joined server uses the encryption configuration it was given.
    let encryption_config = args.encryption_provider_config.clone().or_else(|| {
        let given = args.data_dir.join(crate::ha::join::ENCRYPTION_FILE);
        given.exists().then_some(given)
    });
    // Encryption at rest sits between the API server and the store; the snapshot socket and
    // snapshots see the stored (encrypted) bytes.
    let raw = store.clone();
    let store: std::sync::Arc<dyn tug_store::Store> = match &encryption_config {
        Some(path) => {
            let encryption =
                std::sync::Arc::new(tug_apiserver::encryption::Encryption::load(path)?);
            let rewritten = encryption.verify_and_rewrite(&raw).await?;
            tracing::info!(config = %path.display(), rewritten, "encryption at rest is on");
            std::sync::Arc::new(tug_store::TransformingStore::new(raw.clone(), encryption))
        }
        None => raw.clone(),
    };
    if !args.snapshot_schedule.trim().is_empty() {
        let schedule = crate::backups::parse_schedule(&args.snapshot_schedule)?;
        let dir = args
            .snapshot_dir
            .clone()
            .unwrap_or_else(|| args.data_dir.join("snapshots"));
        tracing::info!(schedule = %args.snapshot_schedule, dir = %dir.display(), keep = args.snapshot_retention, "scheduled snapshots on");
        tokio::spawn(crate::backups::run_schedule(
            raw.clone(),
            dir,
            schedule,
            args.snapshot_retention.max(1),
            ds.snapshot_format().to_string(),
            args.node.node_name(),
        ));
    }
    let _socket = match &ds {
        datastore::Datastore::Embedded(dir) => Some(snapshot_socket::serve(raw.clone(), dir)?),
        datastore::Datastore::Etcd(_) | datastore::Datastore::Member(..) => None,
    };
    let join_routes = match &ds {
        datastore::Datastore::Member(endpoints, tls) => Some(crate::ha::join::routes(
            std::sync::Arc::new(crate::ha::join::JoinService {
                data_dir: args.data_dir.clone(),
                token: server_token,
                etcd: tug_store::EtcdStore::connect_with(endpoints, Some(tls)).await?,
                encryption_config: encryption_config.clone(),
            }),
        )),
        _ => None,
    };
    let api = tug_apiserver::ApiServer::with_node_token(
        store.clone(),
        pki.token.clone(),
        Some(pki.node_token.clone()),
    );
    if let Some(path) = &args.admission_control_config_file {
        api.set_admission_configuration(path)
            .context("--admission-control-config-file")?;
    }
    if let (Some(policy), Some(log)) = (&args.audit_policy_file, &args.audit_log_path) {
        api.set_audit(tug_apiserver::audit::Audit::open(
            policy,
            log,
            args.audit_log_maxsize,
            args.audit_log_maxbackup,
        )?);
    }
    api.set_authenticators(tug_apiserver::authn::Authenticators::new(
        args.token_auth_file
            .as_deref()
            .map(tug_apiserver::authn::token_file::TokenFile::load)
            .transpose()
            .context("--token-auth-file")?,
        args.authentication_config
            .as_deref()
            .map(tug_apiserver::authn::oidc::load)
            .transpose()
            .context("--authentication-config")?
            .unwrap_or_default(),
    ));
    api.set_front_proxy(
        pki.ca_cert.clone(),
        pki.front_proxy_ca.clone(),
        pki.front_proxy_client.clone(),
    );
    api.set_token_issuer(tug_apiserver::tokens::TokenIssuer::load_or_create(
        &pki.dir,
    )?);
    api.bootstrap().await?;
    if args.etcd_compaction_interval > 0 {
        api.start_compaction(std::time::Duration::from_secs(
            args.etcd_compaction_interval,
        ));
    }
    // The controllers, the scheduler and the hollow nodes are API clients like any other,
    // wired in-process.
    let grace = std::time::Duration::from_secs(args.node_monitor_grace_period);
    // Several servers may share one etcd: the controllers and the scheduler run where this
    // process holds their Leases.
    let identity = format!("{}_{}", args.node.node_name(), uuid::Uuid::new_v4());
    let settings = tug_controllers::Settings {
        node_monitor_grace_period: grace,
        terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
        pod_network: tug_controllers::PodNetwork::parse(
            &args.cluster_cidr,
            args.node_cidr_mask_size,
        )
        .map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?,
        // The local-path provisioner serves the built-in agent's node.
        local_path_dir: (!args.disable_agent).then(|| args.data_dir.join("local-path")),
        csr_signer: Some({
            let pki = pki.clone();
            let most = args.cluster_signing_duration;
            std::sync::Arc::new(move |pem: &str, server: bool, asked: Option<i32>| {
                // As kube-controller-manager: the request's expirationSeconds (at least 10
                // minutes) when shorter than --cluster-signing-duration.
                let asked = asked.map(|s| {
                    std::time::Duration::from_secs(u64::try_from(s).unwrap_or(0).max(600))
                });
                let valid_for = asked.map_or(most, |a| a.min(most));
                pki.sign_node_csr(pem, server, valid_for)
                    .map_err(|e| format!("{e:#}"))
            })
        }),
        root_ca: Some(pki.ca_cert.clone()),
    };
    let mut control_plane = control_plane::ControlPlane::builder(api.clone())
        .controllers(settings)
        .scheduler()
        .leader_election(identity, election);
    if args.simulated_nodes > 0 {
        control_plane = control_plane.hollow_nodes(tug_kubelet::hollow::HollowConfig {
            count: args.simulated_nodes,
            // Renew well inside the grace period.
            heartbeat: (grace / 4).clamp(
                std::time::Duration::from_millis(250),
                std::time::Duration::from_secs(10),
            ),
            completion: std::time::Duration::from_secs_f64(args.simulated_pod_seconds.max(0.0)),
            identity: tug_kubelet::claim::agent_identity(&args.data_dir),
            ..Default::default()
        });
    }
    let control_plane = control_plane.start();
    // The API server reaches kubelets (pods/log) with a client certificate of the cluster CA.
    let kubelet_client = pki.issue(
        "kube-apiserver-kubelet-client",
        &["system:masters"],
        &[],
        false,
    )?;
    api.set_kubelet_tls(tug_apiserver::tls::client_config(
        &pki.ca_cert,
        &kubelet_client,
    )?);
    api.start_resource_metrics(args.metric_resolution);
    if !args.disable_agent {
        start_agent(&args, &pki, &api).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    let url = format!("https://{host}:{}", local.port());
    let kubeconfig = pki.write_kubeconfig(&args.data_dir, &url)?;
    let tls = tug_apiserver::tls::server_config(&pki)?;
    let router = match join_routes {
        Some(join) => api.router().merge(join),
        None => api.router(),
    };
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(tug_apiserver::tls::serve_until(
        listener,
        tls,
        router,
        async {
            let _ = serving_stopped.await;
        },
        DRAIN,
    ));
    let published = start_cluster_services(&args, &api, local).await;
    tracing::info!(
        datastore = %ds,
        revision,
        url = %url,
        kubeconfig = %kubeconfig.display(),
        agent = !args.disable_agent,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store ready; API server ready; press Ctrl-C to stop"
    );
    stop_signal().await?;
    tracing::info!("stopping: releasing the leases this server holds");
    control_plane.stop().await;
    if let Some(me) = &published {
        tug_controllers::clusterdns::withdraw(api.in_process_client(), me).await;
    }
    // Requests taken are answered (the etcd member is still up) and clients told to go
    // elsewhere, before the member goes.
    let _ = stop_serving.send(());
    let _ = serving.await;
    if let Some(member) = member {
        member.stop().await;
    }
    Ok(())
}

/// How this server's etcd member starts; None when the server runs no member. Joining (the first start with --join) asks the
/// server at the --join URL, which also hands over the cluster's shared files.
async fn member_start(
    args: &ServerArgs,
    config: &crate::ha::etcd_member::MemberConfig,
) -> anyhow::Result<Option<crate::ha::etcd_member::Start>> {
    use crate::ha::etcd_member::{Start, exists};
    let restarting = exists(&args.data_dir);
    let Some(url) = &args.join else {
        return Ok((restarting || args.cluster_init).then_some(if restarting {
            Start::Restart
        } else {
            Start::New
        }));
    };
    let token = crate::ha::token::ServerToken::parse(args.token.as_deref().unwrap_or(""))
        .map_err(|e| e.context("--token"))?;
    // A restarting server asks too, briefly: after a cluster reset (a restore) it is no
    // longer a member, and joins again from scratch. When no one answers it restarts on its
    // own data.
    let patience = if restarting {
        std::time::Duration::from_secs(5)
    } else {
        crate::ha::join::JOIN_TIMEOUT
    };
    let answer = match crate::ha::join::request(
        url,
        &token,
        &args.data_dir,
        &crate::ha::join::JoinRequest {
            name: config.name.clone(),
            peer_url: config.peer_url(),
        },
        patience,
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) if restarting => {
            tracing::warn!(error = %format!("{e:#}"), "cannot reach the server to join; restarting on this server's own etcd data");
            return Ok(Some(Start::Restart));
        }
        Err(e) => return Err(e),
    };
    if restarting && !answer.added {
        return Ok(Some(Start::Restart));
    }
    if restarting {
        let old = crate::ha::etcd_member::set_aside(&args.data_dir)?;
        tracing::warn!(kept = %old.display(), "this server was no longer a member of the cluster (it was reset or restored); joining it again with fresh etcd data");
    }
    tracing::info!(server = %url, members = %answer.initial_cluster, "joined the cluster; starting this server's etcd member");
    Ok(Some(Start::Join(answer.initial_cluster)))
}

/// How long a stopping server waits for its connections to close (watches never do).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Starts the cluster DNS server on the advertise address and publishes the `kubernetes` and
/// `kube-dns` Services there (with every other live server). Without an advertise address,
/// pods have neither. Returns this server as the Services list it.
async fn start_cluster_services(
    args: &ServerArgs,
    api: &std::sync::Arc<tug_apiserver::ApiServer>,
    local: std::net::SocketAddr,
) -> Option<tug_controllers::clusterdns::ServerId> {
    let advertise = args.advertise_address.or(match local.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_loopback() => Some(ip),
        _ => None,
    });
    let Some(address) = advertise else {
        tracing::info!(
            "no --advertise-address: the kubernetes and kube-dns Services are not published"
        );
        return None;
    };
    let dns_ip: std::net::Ipv4Addr = tug_controllers::clusterdns::DNS_IP
        .parse()
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let upstream = tug_network::dns::nameservers(
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        &[dns_ip],
    );
    let dns = tug_network::dns::DnsServer::new(&args.cluster_domain, upstream);
    let bind = std::net::SocketAddr::from((address, args.cluster_dns_port));
    let dns_port = match tokio::net::UdpSocket::bind(bind).await {
        Ok(udp) => {
            let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
            match tokio::net::TcpListener::bind((address, port)).await {
                Ok(tcp) => {
                    tokio::spawn(dns.clone().serve_tcp(tcp));
                    tokio::spawn(dns.clone().serve_udp(udp));
                    tokio::spawn(tug_controllers::clusterdns::serve_zone(
                        api.in_process_client_as(tug_apiserver::auth::Identity::service_account(
                            "kube-system",
                            "kube-dns",
                        )),
                        dns,
                        args.cluster_domain.clone(),
                    ));
                    tracing::info!(address = %format!("{address}:{port}"), "cluster DNS ready");
                    Some(port)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no cluster DNS: cannot listen on TCP {address}:{port}");
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, %bind, "no cluster DNS: cannot listen (--cluster-dns-port)");
            None
        }
    };
    let me = tug_controllers::clusterdns::ServerId {
        name: args.node.node_name(),
        address,
    };
    tokio::spawn(tug_controllers::clusterdns::publish(
        api.in_process_client(),
        me.clone(),
        local.port(),
        dns_port,
    ));
    Some(me)
}

/// Starts the node agent inside the server process: the native runtime in DATA_DIR/agent, the
/// kubelet API on --node-ip:--kubelet-port, and the kubelet itself on the in-process client.
async fn start_agent(
    args: &ServerArgs,
    pki: &tug_apiserver::pki::Pki,
    api: &std::sync::Arc<tug_apiserver::ApiServer>,
) -> anyhow::Result<()> {
    let node = &args.node;
    let serving = pki.issue(
        &format!("system:node:{}", node.node_name()),
        &["system:nodes"],
        &node.serving_sans(),
        true,
    )?;
    Node {
        flags: node,
        data_dir: &args.data_dir.join("agent"),
        client: api.in_process_client_as(tug_apiserver::auth::Identity::node(&node.node_name())),
        ca_pem: &pki.ca_cert,
        serving: &serving,
        cluster_cidr: &args.cluster_cidr,
        heartbeat: std::time::Duration::from_secs(10),
    }
    .start()
    .await?;
    Ok(())
}

/// A duration flag: `8760h`, `90m`, `1h30m`, `45s`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration such as 8760h or 90m: {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}
