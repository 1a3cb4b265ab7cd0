//! Who is calling: a client certificate's identity (set per connection by the TLS layer), the
//! admin or node bearer token, or a service account token (checked by the caller against the
//! store). Credentials that are not valid are 401; no credentials at all make the anonymous
//! user, whom authorization admits only to the public paths.

use std::collections::BTreeMap;

use axum::extract::Request;

use tug_api::ApiError;

/// An authenticated user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    /// The user's uid, when its credentials carry one.
    pub uid: String,
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

    /// A user in `groups` (and system:authenticated).
    pub fn user(name: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push("system:authenticated".into());
        Identity {
            user: name.into(),
            groups,
            ..Default::default()
        }
    }

    /// The service account `namespace/name`, as its tokens authenticate it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Identity {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            ..Default::default()
        }
    }

    /// The node `name`'s identity (its client certificate's).
    pub fn node(name: &str) -> Self {
        Self::user(&format!("system:node:{name}"), &["system:nodes"])
    }

    /// The user an unauthenticated request acts as.
    pub fn anonymous() -> Self {
        Identity {
            user: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }
}

/// Authenticates a request; returns the caller, `None` for a request without credentials.
/// `node_token` (when set) authenticates node agents.
pub fn authenticate(
    req: &Request,
    token: &str,
    node_token: Option<&str>,
) -> Result<Credentials, ApiError> {
    if let Some(id) = req.extensions().get::<Identity>() {
        return Ok(Credentials::Known(Some(id.clone())));
    }
    // A client certificate the cluster CA did not sign: 401, unless a token authenticates
    // the request (kube-apiserver's authenticators are tried in turn).
    if req
        .extensions()
        .get::<crate::tls::ClientCertRejected>()
        .is_some()
        && !req.headers().contains_key(http::header::AUTHORIZATION)
    {
        return Err(ApiError::unauthorized());
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
            // The join token of node agents: a bootstrap identity, which may only ask for a
            // node's client certificate (the bootstrap policy's node-bootstrapper and
            // nodeclient bindings for system:bootstrappers).
            return Ok(Credentials::Known(Some(Identity {
                user: NODE_TOKEN_USER.into(),
                groups: vec![
                    crate::authn::bootstrap_token::BOOTSTRAPPERS.into(),
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
    // No credentials at all: the anonymous user, whom authorization admits to the public
    // paths only.
    Ok(Credentials::Known(None))
}

/// The user the server's node token (`DATA_DIR/node-token`) authenticates as.
pub const NODE_TOKEN_USER: &str = "system:bootstrap:node-token";

/// Compares secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}
