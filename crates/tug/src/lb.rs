//! `tug lb`: a load balancer on the user's machine over every live API server, so that
//! kubectl (and anything else that reads a kubeconfig) goes on working when the server it
//! was talking to goes away. It is the node agents' balancer (`tug_kubelet::balancer`): it
//! follows the `kubernetes` Service's EndpointSlice and probes every server each second. The
//! kubeconfig it writes is the one it was given, pointed at the balancer (the servers'
//! certificates are valid for 127.0.0.1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Arguments of `tug lb`.
#[derive(clap::Args, Debug)]
pub struct LbArgs {
    /// A kubeconfig of the cluster (any server's admin kubeconfig).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Where to listen (port 0: a free one, named in the kubeconfig written).
    #[arg(long, default_value = "127.0.0.1:6444")]
    listen: SocketAddr,
    /// Write a copy of the kubeconfig that goes through the balancer here.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
}

/// Runs the balancer until interrupted (Ctrl-C or SIGTERM).
pub async fn run(args: LbArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .with_context(|| format!("{} is not a kubeconfig", args.kubeconfig.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("using {}", args.kubeconfig.display()))?;
    let given = config.cluster_url.clone();
    let server = tokio::net::lookup_host((
        given.host().unwrap_or_default(),
        given.port_u16().unwrap_or(443),
    ))
    .await
    .with_context(|| format!("resolving {given}"))?
    .next()
    .with_context(|| format!("{given} has no address"))?;
    let balancer = tug_kubelet::balancer::Balancer::start_on(args.listen, server)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    config.cluster_url = balancer.url().parse()?;
    let client = kube::Client::try_from(config).context("building the API client")?;
    tokio::spawn(tug_kubelet::balancer::follow_servers(
        client,
        balancer.clone(),
    ));
    if let Some(out) = &args.write_kubeconfig {
        write_through(&text, &given.to_string(), &balancer.url(), out)?;
        eprintln!("wrote {} (through {})", out.display(), balancer.url());
    }
    tracing::info!(listen = %balancer.url(), first = %server, "API server load balancer ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

/// Writes `text` (a kubeconfig naming `server`) to `out` with the balancer's URL instead.
fn write_through(text: &str, server: &str, url: &str, out: &Path) -> anyhow::Result<()> {
    // kube renders the URL with a trailing slash the kubeconfig may not have.
    let server = server.trim_end_matches('/');
    anyhow::ensure!(
        text.contains(server),
        "the kubeconfig does not name its server as {server}"
    );
    let through = text.replace(server, url);
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, through).with_context(|| format!("writing {}", tmp.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_written_names_the_balancer() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("through.kubeconfig");
        let text = "clusters:\n- cluster:\n    server: https://10.1.0.5:6443\n  name: tug\n";
        write_through(
            text,
            "https://10.1.0.5:6443/",
            "https://127.0.0.1:7000",
            &out,
        )
        .expect("written");
        let written = std::fs::read_to_string(&out).expect("read");
        assert!(
            written.contains("server: https://127.0.0.1:7000\n"),
            "{written}"
        );
        assert!(!written.contains("10.1.0.5"), "{written}");
        assert!(
            write_through(
                text,
                "https://10.9.9.9:6443",
                "https://127.0.0.1:7000",
                &out
            )
            .is_err()
        );
    }
}
