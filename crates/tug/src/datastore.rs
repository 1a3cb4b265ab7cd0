//! Choosing the store from the command line: the embedded file or an etcd cluster.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tug_store::{EtcdStore, EtcdTls, LocalOptions, LocalStore, Store};

/// Where the cluster state lives.
pub enum Datastore {
    /// The embedded store in this data directory.
    Embedded(PathBuf),
    /// An etcd cluster at these endpoints.
    Etcd(Vec<String>),
    /// The etcd cluster of this server's own member (`--cluster-init`, `--join`), over TLS:
    /// the members' client URLs, this server's member first.
    Member(Vec<String>, EtcdTls),
}

impl Datastore {
    /// Parses `embedded` or `etcd://host:port[,host:port...]`.
    pub fn parse(spec: &str, data_dir: &Path) -> anyhow::Result<Self> {
        if spec == "embedded" || spec.is_empty() {
            return Ok(Self::Embedded(data_dir.to_path_buf()));
        }
        if let Some(rest) = spec.strip_prefix("etcd://") {
            let endpoints: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| format!("http://{s}"))
                .collect();
            if endpoints.is_empty() {
                bail!(
                    "--datastore {spec:?} names no etcd endpoint; use etcd://host:port[,host:port]"
                );
            }
            return Ok(Self::Etcd(endpoints));
        }
        bail!("unknown --datastore {spec:?}: use `embedded` or etcd://host:port[,host:port]")
    }

    /// The format of this store's snapshots: `embedded` or `etcd`.
    pub fn snapshot_format(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Etcd(_) | Self::Member(..) => "etcd",
        }
    }

    /// Opens the store.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            Self::Embedded(dir) => Arc::new(
                LocalStore::open(dir, LocalOptions::default())
                    .with_context(|| format!("opening the embedded store in {}", dir.display()))?,
            ),
            Self::Etcd(endpoints) => Arc::new(
                EtcdStore::connect(endpoints)
                    .await
                    .context("connecting to etcd")?,
            ),
            Self::Member(endpoints, tls) => Arc::new(
                EtcdStore::connect_with(endpoints, Some(tls))
                    .await
                    .context("connecting to the cluster's etcd")?,
            ),
        })
    }
}

impl fmt::Display for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded(dir) => write!(f, "embedded:{}", dir.display()),
            Self::Etcd(e) => write!(f, "etcd:{}", e.join(",")),
            Self::Member(e, _) => write!(f, "etcd-member:{}", e.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_datastore_specs() {
        let dir = Path::new("/d");
        assert!(
            matches!(Datastore::parse("embedded", dir), Ok(Datastore::Embedded(p)) if p == dir)
        );
        match Datastore::parse("etcd://a:1, b:2", dir) {
            Ok(Datastore::Etcd(e)) => assert_eq!(e, vec!["http://a:1", "http://b:2"]),
            _ => panic!("etcd spec not parsed"),
        }
        assert!(Datastore::parse("etcd://", dir).is_err());
        assert!(Datastore::parse("postgres://x", dir).is_err());
    }
}
