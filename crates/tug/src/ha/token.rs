//! The server token: what another server presents to join this one's cluster. Shaped as
//! k3s's full token, `K10<sha256 of the CA certificate>::server:<secret>`, so the joining
//! server can check that the server it reached holds the cluster's CA before trusting it.

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use sha2::Digest;

/// Where a server keeps its server token.
pub const FILE: &str = "server-token";

/// A parsed server token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerToken {
    /// The SHA-256 of the cluster CA certificate (PEM bytes), lowercase hex.
    pub ca_hash: String,
    /// The shared secret.
    pub secret: String,
}

impl ServerToken {
    /// Parses `K10<hash>::server:<secret>`.
    pub fn parse(s: &str) -> anyhow::Result<ServerToken> {
        let s = s.trim();
        let Some((hash, rest)) = s.strip_prefix("K10").and_then(|r| r.split_once("::")) else {
            bail!(
                "the token is not a server token (K10<ca-hash>::server:<secret>): use the \
                 contents of DATA_DIR/{FILE} on a server of the cluster"
            );
        };
        let Some(secret) = rest.strip_prefix("server:") else {
            bail!("the token names no server secret (K10<ca-hash>::server:<secret>)");
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
            bail!("the token is malformed: expected K10<64 hex digits>::server:<secret>");
        }
        Ok(ServerToken {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }

    /// The server token of the cluster whose CA is `ca_pem`, made once and kept in
    /// `data_dir`. A token written by another cluster's CA is refused.
    pub fn load_or_create(data_dir: &Path, ca_pem: &str) -> anyhow::Result<ServerToken> {
        let path = data_dir.join(FILE);
        let hash = ca_hash(ca_pem);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let token = Self::parse(&text).with_context(|| format!("{}", path.display()))?;
            if token.ca_hash != hash {
                bail!(
                    "{} was made for another CA than pki/ca.crt: remove it to make a new one",
                    path.display()
                );
            }
            return Ok(token);
        }
        let token = ServerToken {
            ca_hash: hash,
            secret: uuid::Uuid::new_v4().simple().to_string(),
        };
        tug_apiserver::pki::write_private(&path, &token.to_string())?;
        Ok(token)
    }

    /// Whether `secret` is this token's secret (compared in constant time).
    pub fn accepts(&self, secret: &str) -> bool {
        let (a, b) = (self.secret.as_bytes(), secret.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Display for ServerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "K10{}::server:{}", self.ca_hash, self.secret)
    }
}

/// The SHA-256 of a CA certificate's PEM bytes, lowercase hex.
pub fn ca_hash(ca_pem: &str) -> String {
    sha2::Sha256::digest(ca_pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        let t = ServerToken {
            ca_hash: ca_hash("pem"),
            secret: "s3cret".into(),
        };
        assert_eq!(ServerToken::parse(&t.to_string()).ok(), Some(t.clone()));
        assert!(t.accepts("s3cret"));
        assert!(!t.accepts("s3cre"));
        assert!(!t.accepts("s3creT"));
        let e = ServerToken::parse("abc").unwrap_err().to_string();
        assert!(e.contains("not a server token"), "{e}");
        let e = ServerToken::parse("K10abc::server:x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("malformed"), "{e}");
        let e = ServerToken::parse(&format!("K10{}::node:x", ca_hash("p")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no server secret"), "{e}");
    }

    #[test]
    fn a_token_of_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerToken::load_or_create(dir.path(), "ca one").unwrap();
        assert_eq!(
            ServerToken::load_or_create(dir.path(), "ca one").unwrap(),
            first
        );
        let e = ServerToken::load_or_create(dir.path(), "ca two")
            .unwrap_err()
            .to_string();
        assert!(e.contains("another CA"), "{e}");
    }
}
