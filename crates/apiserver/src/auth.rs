//! Who is calling: a client certificate's identity (set per connection by the TLS layer), the
//! admin or node bearer token, or a service account token (checked by the caller against the
//! store). Anything else is 401, except the public health and version paths.

use std::collections::BTreeMap;

use axum::extract::Request;

use tug_api::ApiError;

/// An authenticated user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// Extra attributes (a service account token's pod and node).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request's credentials amount to before any store lookup.
#[derive(Debug)]
pub enum Credentials {
    /// The caller is known (or anonymous on a public path).
    Known(Option<Identity>),
    /// A bearer token that is neither the admin's nor the nodes': perhaps a service account
    /// token, which needs its signature and bound objects checked.
    Bearer(String),
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
) -> Result<Credentials, ApiError> {
    if let Some(id) = req.extensions().get::<Identity>() {
        return Ok(Credentials::Known(Some(id.clone())));
    }
    if let Some(auth) = req.headers().get(http::header::AUTHORIZATION) {
        let presented = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if presented.is_some_and(|p| !token.is_empty() && constant_time_eq(p, token)) {
            return Ok(Credentials::Known(Some(Identity {
                user: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
                ..Default::default()
            })));
        }
        if let (Some(p), Some(nt)) = (presented, node_token)
            && !nt.is_empty()
            && constant_time_eq(p, nt)
        {
            // Node agents; until RBAC is served they act with full rights.
            return Ok(Credentials::Known(Some(Identity {
                user: "system:node-agent".into(),
                groups: vec![
                    "system:nodes".into(),
                    "system:masters".into(),
                    "system:authenticated".into(),
                ],
                ..Default::default()
            })));
        }
        return match presented {
            Some(p) if !p.is_empty() => Ok(Credentials::Bearer(p.to_string())),
            _ => Err(ApiError::unauthorized()),
        };
    }
    if is_public(req.uri().path()) {
        return Ok(Credentials::Known(None));
    }
    Err(ApiError::unauthorized())
}

/// Paths every authenticated user may read, as Kubernetes' system:discovery and
/// system:service-account-issuer-discovery roles allow: discovery, OpenAPI, the version, and
/// the service account issuer's OIDC documents.
fn is_discovery(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segs.as_slice(),
        ["api"] | ["api", _] | ["apis"] | ["apis", _] | ["apis", _, _] | ["openapi", ..]
    ) || matches!(
        path,
        "/.well-known/openid-configuration" | "/openid/v1/jwks"
    )
}

/// Reviews of the caller's own rights and identity, which Kubernetes' system:basic-user role
/// lets every authenticated user create.
fn is_self_review(verb: &str, path: &str) -> bool {
    verb == "post"
        && [
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        ]
        .contains(&path.trim_end_matches('/'))
}

/// The authorizer: for now, system:masters and system:nodes may do anything, and every other
/// authenticated user may read discovery and review itself; RBAC comes later.
pub fn authorize(id: Option<&Identity>, verb: &str, path: &str) -> Result<(), ApiError> {
    match id {
        Some(id) if id.is_master() => Ok(()),
        // Node agents (client certificates of system:nodes, from their bootstrap CSR) act with
        // full rights too, like the node token, until the Node authorizer and RBAC are served.
        Some(id) if id.groups.iter().any(|g| g == "system:nodes") => Ok(()),
        Some(_) if (verb == "get" && is_discovery(path)) || is_self_review(verb, path) => Ok(()),
        Some(id) => Err(ApiError::forbidden(format!(
            "User \"{}\" cannot {verb} {path}: only system:masters is authorized until RBAC is served",
            id.user
        ))),
        None if is_public(path) => Ok(()),
        None => Err(ApiError::unauthorized()),
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}
