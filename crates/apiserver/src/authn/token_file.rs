//! The static token file (`--token-auth-file`), as kube-apiserver reads it: a CSV file whose
//! rows are `token,user,uid[,"group1,group2"]`. Rows with an empty token are skipped; a row
//! with fewer than three columns is an error.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

use crate::auth::Identity;

/// The users of a token file, by token.
#[derive(Debug, Default)]
pub struct TokenFile {
    users: HashMap<String, Identity>,
}

impl TokenFile {
    /// Reads `path`.
    pub fn load(path: &Path) -> anyhow::Result<TokenFile> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("token file {}", path.display()))
    }

    /// Parses a token file's contents.
    pub fn parse(text: &[u8]) -> anyhow::Result<TokenFile> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text);
        let mut users = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("row {}", i + 1))?;
            anyhow::ensure!(
                record.len() >= 3,
                "row {} must have at least 3 columns (token, user name, user uid), found {}",
                i + 1,
                record.len()
            );
            let token = &record[0];
            if token.is_empty() {
                tracing::warn!(row = i + 1, "an empty token in the token file is ignored");
                continue;
            }
            let groups = record
                .get(3)
                .filter(|g| !g.is_empty())
                .map(|g| g.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            let identity = Identity {
                user: record[1].to_string(),
                uid: record[2].to_string(),
                groups,
                ..Default::default()
            };
            if users.insert(token.to_string(), identity).is_some() {
                tracing::warn!(
                    row = i + 1,
                    "a duplicate token in the token file overrides an earlier row"
                );
            }
        }
        Ok(TokenFile { users })
    }

    /// The user a token belongs to.
    pub fn user(&self, token: &str) -> Option<&Identity> {
        // Comparing each entry in constant time would make the cost depend on the file's
        // size, not on the secret; a hash lookup reveals nothing about near misses.
        self.users.get(token)
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file holds no token.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_quoted_groups() {
        let f =
            TokenFile::parse(b"t1,alice,u-1,\"dev,ops\"\nt2,bob,u-2\n,nobody,u-3\nt3,carol,u-4,\n")
                .unwrap();
        assert_eq!(f.len(), 3);
        let a = f.user("t1").unwrap();
        assert_eq!((a.user.as_str(), a.uid.as_str()), ("alice", "u-1"));
        assert_eq!(a.groups, ["dev", "ops"]);
        assert!(f.user("t2").unwrap().groups.is_empty());
        assert!(f.user("t3").unwrap().groups.is_empty());
        assert!(f.user("").is_none());
        assert!(f.user("t4").is_none());
    }

    #[test]
    fn short_rows_are_refused() {
        let e = TokenFile::parse(b"t1,alice\n").unwrap_err();
        assert!(
            format!("{e:#}")
                .contains("must have at least 3 columns (token, user name, user uid), found 2"),
            "{e:#}"
        );
    }
}
