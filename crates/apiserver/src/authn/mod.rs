//! Bearer token authenticators, tried in kube-apiserver's order after client certificates:
//! the static token file, bootstrap tokens, JWT issuers (OIDC) and service account tokens.
//! The first that recognises a token decides; a token none accepts is 401.

pub mod bootstrap_token;
pub mod oidc;
pub mod token_file;

use crate::auth::Identity;
use crate::registry::Registry;

/// The configured bearer token authenticators.
#[derive(Debug, Default)]
pub struct Authenticators {
    /// `--token-auth-file`.
    pub token_file: Option<token_file::TokenFile>,
    /// The JWT issuers of `--authentication-config`.
    pub jwt: Vec<oidc::JwtAuthenticator>,
}

impl Authenticators {
    /// The user `token` belongs to (system:authenticated added), or None (401).
    pub async fn authenticate(
        &self,
        registry: &Registry,
        service_accounts: Option<&crate::tokens::TokenIssuer>,
        token: &str,
    ) -> Option<Identity> {
        let found = self.find(registry, service_accounts, token).await?;
        Some(authenticated(found))
    }

    async fn find(
        &self,
        registry: &Registry,
        service_accounts: Option<&crate::tokens::TokenIssuer>,
        token: &str,
    ) -> Option<Identity> {
        if let Some(id) = self.token_file.as_ref().and_then(|f| f.user(token)) {
            return Some(id.clone());
        }
        if let Some((id, secret)) = bootstrap_token::parse(token) {
            return registry.bootstrap_token_identity(id, secret).await;
        }
        if !self.jwt.is_empty()
            && let Some(iss) =
                oidc::unverified_claims(token).and_then(|c| c["iss"].as_str().map(str::to_string))
            && let Some(jwt) = self.jwt.iter().find(|j| j.issuer() == iss)
        {
            return match jwt.authenticate(token).await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::info!(issuer = %iss, error = %format!("{e:#}"), "refused a JWT");
                    None
                }
            };
        }
        registry.token_identity(service_accounts?, token).await
    }
}

/// `id` with system:authenticated among its groups, as kube-apiserver adds it to every
/// authenticated user.
pub fn authenticated(mut id: Identity) -> Identity {
    if !id.groups.iter().any(|g| g == "system:authenticated") {
        id.groups.push("system:authenticated".into());
    }
    id
}
