//! `tug agent`: a node agent joined to a server with its node token (TLS bootstrap, then the
//! node's own certificate), or hollow nodes.

use std::path::PathBuf;

use crate::image;
use crate::node::{Node, NodeFlags};

/// `tug agent`'s flags.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// The API server, e.g. https://127.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// The join token: the server's node token (`DATA_DIR/node-token` on the server) or a
    /// bootstrap token, with which a node asks for its own certificate. Hollow nodes
    /// (`--simulate`) act for many nodes with this token itself, so they need one with rights
    /// over all of them, such as the admin token (`DATA_DIR/token`).
    #[arg(long, env = "TUG_NODE_TOKEN")]
    token: String,
    /// The cluster CA to verify the server with (`DATA_DIR/pki/ca.crt` on the server).
    #[arg(long)]
    ca_cert: PathBuf,
    /// Where the agent keeps images, containers, pod files, logs and its certificates.
    #[arg(long, default_value = image::DEFAULT_AGENT_DIR, env = "TUG_AGENT_DATA_DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeFlags,
    /// Instead of a real node, run this many hollow (simulated) nodes.
    #[arg(long, default_value_t = 0)]
    simulate: usize,
    /// Names of the simulated nodes: `<prefix>-<i>`.
    #[arg(long, default_value = "hollow")]
    node_prefix: String,
    /// Seconds between Lease renewals.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_interval: f64,
    /// Seconds a pod that runs to completion (restartPolicy Never or OnFailure) runs.
    #[arg(long, default_value_t = 1.0)]
    simulated_pod_seconds: f64,
    /// The cluster's pod range (the server's --cluster-cidr): pod traffic leaving it is
    /// masqueraded.
    #[arg(long, default_value = tug_api::cluster::POD_CIDR)]
    cluster_cidr: String,
}

/// Runs the node agent until Ctrl-C.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let ca = std::fs::read(&args.ca_cert)
        .with_context(|| format!("reading {}", args.ca_cert.display()))?;
    let given: http::Uri = args
        .server
        .parse()
        .with_context(|| format!("--server {:?} is not a URL", args.server))?;
    // The agent's clients go through a local load balancer over every live server.
    let server = tokio::net::lookup_host((
        given.host().unwrap_or_default(),
        given.port_u16().unwrap_or(443),
    ))
    .await
    .with_context(|| format!("resolving --server {}", args.server))?
    .next()
    .with_context(|| format!("--server {} has no address", args.server))?;
    let balancer = tug_kubelet::balancer::Balancer::start(server)
        .await
        .context("starting the API server load balancer")?;
    let url: http::Uri = balancer.url().parse()?;
    tracing::info!(server = %args.server, local = %balancer.url(), "API server load balancer ready");
    let mut config = kube::Config::new(url.clone());
    config.root_cert = Some(vec![ca_der(&ca)?]);
    config.auth_info.token = Some(args.token.clone().into());
    config.default_namespace = "default".into();
    let token_client = kube::Client::try_from(config).context("building the API client")?;
    if args.simulate > 0 {
        let hollow = tug_kubelet::hollow::HollowConfig {
            count: args.simulate,
            prefix: args.node_prefix.clone(),
            heartbeat: std::time::Duration::from_secs_f64(args.heartbeat_interval.max(0.1)),
            completion: std::time::Duration::from_secs_f64(args.simulated_pod_seconds.max(0.0)),
            identity: tug_kubelet::claim::agent_identity(&args.data_dir),
            ..Default::default()
        };
        tracing::info!(nodes = args.simulate, prefix = %args.node_prefix, server = %args.server, "starting hollow nodes");
        tokio::spawn(tug_kubelet::balancer::follow_servers(
            token_client.clone(),
            balancer,
        ));
        return tokio::select! {
            r = tug_kubelet::hollow::run(token_client, hollow) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
    }
    // A real node: TLS bootstrap with the token, then the node's own certificate.
    let pki_dir = args.data_dir.join("pki");
    let node_name = args.node.node_name();
    let cert = tug_kubelet::bootstrap::client_cert(&token_client, &node_name, &pki_dir)
        .await
        .context("bootstrapping the node's client certificate")?;
    let (client, identity) = tug_kubelet::bootstrap::node_client(url, ca_der(&ca)?, &cert)
        .context("building the node's API client")?;
    tokio::spawn(tug_kubelet::balancer::follow_servers(
        client.clone(),
        balancer,
    ));
    tokio::spawn(tug_kubelet::bootstrap::keep_client_cert_fresh(
        client.clone(),
        node_name.clone(),
        pki_dir.clone(),
        identity,
        cert,
    ));
    let serving = tug_kubelet::bootstrap::serving_cert(
        &client,
        &node_name,
        &args.node.serving_sans(),
        &pki_dir,
    )
    .await
    .context("requesting the kubelet API's serving certificate")?;
    let ca_pem = String::from_utf8_lossy(&ca).to_string();
    let serving = tug_apiserver::pki::Issued {
        cert: serving.cert,
        key: serving.key,
    };
    let running = Node {
        flags: &args.node,
        data_dir: &args.data_dir,
        client,
        ca_pem: &ca_pem,
        serving: &serving,
        cluster_cidr: &args.cluster_cidr,
        heartbeat: std::time::Duration::from_secs_f64(args.heartbeat_interval.max(0.1)),
    }
    .start()
    .await?;
    tokio::select! {
        _ = running => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The DER bytes of the first certificate in a PEM file.
fn ca_der(pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    let cert = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .ok_or_else(|| anyhow::anyhow!("no certificate in the CA file"))??;
    Ok(cert.to_vec())
}
