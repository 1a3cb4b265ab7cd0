//! `tug image`: the node's image store, as the agent uses it.

use std::path::PathBuf;

use clap::Subcommand;

/// Image commands.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import images from an OCI layout or `docker save` archive (a tar file).
    Import {
        /// The archive.
        file: PathBuf,
        /// Name the image (needed when the archive does not name it).
        #[arg(long)]
        name: Option<String>,
        /// The agent's data directory.
        #[arg(long, default_value = DEFAULT_AGENT_DIR, env = "TUG_AGENT_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// List the images.
    Ls {
        #[arg(long, default_value = DEFAULT_AGENT_DIR, env = "TUG_AGENT_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Remove images by name or ID.
    Rm {
        images: Vec<String>,
        #[arg(long, default_value = DEFAULT_AGENT_DIR, env = "TUG_AGENT_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// The agent's data directory by default (also the one `tug server`'s own agent uses with the
/// default --data-dir).
pub const DEFAULT_AGENT_DIR: &str = "/var/lib/tugboat/agent";

fn store(data_dir: &std::path::Path) -> anyhow::Result<tug_runtime::ImageStore> {
    tug_runtime::ImageStore::open(&data_dir.join("images"))
}

/// Runs an image command.
pub async fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || match cmd {
        ImageCommand::Import {
            file,
            name,
            data_dir,
        } => {
            let store = store(&data_dir)?;
            let images =
                tug_runtime::image::archive::import(&store, &file, name.as_deref(), &mut |step| {
                    eprintln!("importing {step}")
                })?;
            for i in images {
                println!("imported {} ({})", i.names.join(", "), i.id);
            }
            Ok(())
        }
        ImageCommand::Ls { data_dir } => {
            let store = store(&data_dir)?;
            println!("{:<60} {:<19} {:>10}", "IMAGE", "ID", "SIZE");
            for i in store.list() {
                let id: String =
                    i.id.trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect();
                let names = if i.names.is_empty() {
                    i.repo_digests.clone()
                } else {
                    i.names.clone()
                };
                for n in names {
                    println!("{n:<60} {id:<19} {:>10}", human(i.size));
                }
            }
            Ok(())
        }
        ImageCommand::Rm { images, data_dir } => {
            let store = store(&data_dir)?;
            let in_use = in_use(&data_dir);
            for name in images {
                let removed = store.remove(&name, &in_use)?;
                println!("removed {} ({})", name, removed.id);
            }
            Ok(())
        }
    })
    .await?
}

/// Image IDs that containers on disk use.
fn in_use(data_dir: &std::path::Path) -> std::collections::HashSet<String> {
    let mut ids = std::collections::HashSet::new();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("containers")) {
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path().join("config.json"))
                && let Ok(spec) = serde_json::from_slice::<tug_runtime::spec::ContainerSpec>(&bytes)
            {
                ids.insert(spec.image_id);
            }
        }
    }
    ids
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}KiB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}
