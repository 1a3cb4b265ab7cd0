//! Who is calling: a client certificate's identity (set per connection by the TLS layer) or
//! the admin bearer token. Anything else is 401, except the public health and version paths.

use axum::extract::Request;

use tug_api::ApiError;

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// Whether the user is a cluster admin (group system:masters).
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// Paths anyone may read, as Kubernetes' system:public-info-viewer allows.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// Authenticates a request; returns the caller, `None` for a public path without credentials.
/// `node_token` (when set) authenticates node agents.
pub fn authenticate(
    req: &Request,
    token: &str,
    node_token: Option<&str>,
) -> Result<Option<Identity>, ApiError> {
    if let Some(id) = req.extensions().get::<Identity>() {
        return Ok(Some(id.clone()));
    }
    if let Some(auth) = req.headers().get(http::header::AUTHORIZATION) {
        let presented = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if presented.is_some_and(|p| !token.is_empty() && constant_time_eq(p, token)) {
            return Ok(Some(Identity {
                user: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            }));
        }
        if let (Some(p), Some(nt)) = (presented, node_token)
            && !nt.is_empty()
            && constant_time_eq(p, nt)
        {
            // Node agents; until RBAC is served they act with full rights.
            return Ok(Some(Identity {
                user: "system:node-agent".into(),
                groups: vec![
                    "system:nodes".into(),
                    "system:masters".into(),
                    "system:authenticated".into(),
                ],
            }));
        }
        return Err(ApiError::unauthorized());
    }
    if is_public(req.uri().path()) {
        return Ok(None);
    }
    Err(ApiError::unauthorized())
}

/// The authorizer: for now, system:masters and system:nodes may do anything; RBAC comes later.
pub fn authorize(id: Option<&Identity>, verb: &str, path: &str) -> Result<(), ApiError> {
    match id {
        Some(id) if id.is_master() => Ok(()),
        // Node agents (client certificates of system:nodes, from their bootstrap CSR) act with
        // full rights too, like the node token, until the Node authorizer and RBAC are served.
        Some(id) if id.groups.iter().any(|g| g == "system:nodes") => Ok(()),
        Some(id) => Err(ApiError::forbidden(format!(
            "User \"{}\" cannot {verb} {path}: only system:masters is authorized until RBAC is served",
            id.user
        ))),
        None if is_public(path) => Ok(()),
        None => Err(ApiError::unauthorized()),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
