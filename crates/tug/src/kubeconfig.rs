//! `tug kubeconfig`: a kubeconfig for a user of the cluster, with a client certificate the
//! cluster CA signs (CN = the user, O = each group), valid for a limited time. What the user
//! may do is then RBAC's to decide.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `tug kubeconfig`.
#[derive(clap::Args, Debug)]
pub struct KubeconfigArgs {
    /// The user's name (the certificate's CN).
    #[arg(long)]
    user: String,
    /// A group the user is in (the certificate's O); repeat for more.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// How long the certificate is valid: `24h`, `90m`, `3600s`.
    #[arg(long, default_value = "24h")]
    expires: String,
    /// The server's data directory (its CA is in `pki/`).
    #[arg(long, default_value = "/var/lib/tugboat", env = "TUG_DATA_DIR")]
    data_dir: PathBuf,
    /// The API server's URL (default: the one the admin kubeconfig names).
    #[arg(long)]
    server: Option<String>,
    /// Where to write the kubeconfig (default: standard output).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

/// Writes the user's kubeconfig.
pub fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    let valid: jiff::SignedDuration = args.expires.parse().with_context(|| {
        format!(
            "--expires {:?}: give a duration such as 24h or 90m",
            args.expires
        )
    })?;
    let valid = std::time::Duration::try_from(valid)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--expires must be positive")?;
    let groups: Vec<&str> = args.groups.iter().map(String::as_str).collect();
    let text = tug_apiserver::pki::user_kubeconfig(
        &args.data_dir,
        &args.user,
        &groups,
        valid,
        args.server.as_deref(),
    )?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            eprintln!(
                "wrote {} for user {:?} (groups {:?}), valid for {}",
                path.display(),
                args.user,
                args.groups,
                args.expires
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}
