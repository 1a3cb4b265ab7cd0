//! Image references as Kubernetes users write them (`busybox`, `registry:5000/team/app:v1`,
//! `app@sha256:…`), normalised the way Docker and containerd do.

use std::fmt;

/// Docker Hub, where a reference without a registry points.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, …
    pub registry: String,
    /// `library/busybox`, `team/app`, …
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference pins a digest.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference; an error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Reference, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the image reference is empty".into());
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
        {
            return Err(format!(
                "invalid reference format {s:?}: references are lower case without spaces"
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let Some(hex) = d.strip_prefix("sha256:") else {
                    return Err(format!("invalid digest in {s:?}: expected sha256:<hex>"));
                };
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("invalid digest in {s:?}"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            return Err(format!("invalid tag {t:?} in {s:?}"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if repository.is_empty()
            || !repository.chars().all(valid)
            || repository.starts_with('/')
            || repository.ends_with('/')
            || repository.contains("//")
        {
            return Err(format!("invalid repository name in {s:?}"));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What the registry is asked for: the digest if pinned, else the tag.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Reference;

    fn canonical(s: &str) -> String {
        Reference::parse(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| e)
    }

    #[test]
    fn short_names_point_at_docker_hub() {
        assert_eq!(canonical("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(canonical("team/app:v1"), "docker.io/team/app:v1");
    }

    #[test]
    fn registries_with_ports_are_not_tags() {
        let r = Reference::parse("127.0.0.1:5000/test/hello").expect("parse");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "test/hello");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(canonical("localhost/x:1"), "localhost/x:1");
    }

    #[test]
    fn digests_pin_the_image() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).expect("parse");
        assert_eq!(r.tag, None);
        assert_eq!(r.object(), d);
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in ["", "UPPER", "a b", "x:", "x@sha256:zz", "/x", "x//y"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
