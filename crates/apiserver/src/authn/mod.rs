//! Bearer token authenticators, tried in kube-apiserver's order after client certificates:
//! the static token file, bootstrap tokens, JWT issuers (OIDC) and service account tokens.
//! The first that recognises a token decides; a token none accepts is 401.

pub mod bootstrap_token;
pub mod oidc;
pub mod token_file;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::auth::Identity;
use crate::registry::Registry;

/// How long an accepted token is trusted without checking it again.
const SUCCESS_TTL: Duration = Duration::from_secs(10);
/// Entries kept at most; past it, expired ones are dropped (all of them if none has).
const CACHE_LIMIT: usize = 16_384;

/// Recently accepted tokens (by hash) and their users.
#[derive(Debug, Default)]
struct SuccessCache(Mutex<HashMap<[u8; 32], (Identity, Instant)>>);

impl SuccessCache {
    fn get(&self, key: &[u8; 32]) -> Option<Identity> {
        let map = self.0.lock().ok()?;
        let (id, at) = map.get(key)?;
        (at.elapsed() < SUCCESS_TTL).then(|| id.clone())
    }

    fn put(&self, key: [u8; 32], id: Identity) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CACHE_LIMIT {
                map.retain(|_, (_, at)| at.elapsed() < SUCCESS_TTL);
                if map.len() >= CACHE_LIMIT {
                    map.clear();
                }
            }
            map.insert(key, (id, Instant::now()));
        }
    }
}

/// The configured bearer token authenticators.
#[derive(Debug, Default)]
pub struct Authenticators {
    /// `--token-auth-file`.
    pub token_file: Option<token_file::TokenFile>,
    /// The JWT issuers of `--authentication-config`.
    pub jwt: Vec<oidc::JwtAuthenticator>,
    /// Tokens recently accepted, by their SHA-256.
    cache: SuccessCache,
}

impl Authenticators {
    /// Authenticators for a token file and JWT issuers.
    pub fn new(
        token_file: Option<token_file::TokenFile>,
        jwt: Vec<oidc::JwtAuthenticator>,
    ) -> Self {
        Authenticators {
            token_file,
            jwt,
            cache: SuccessCache::default(),
        }
    }

    /// The user `token` belongs to (system:authenticated added), or None (401). A token
    /// accepted in the last 10 seconds is not checked again, as kube-apiserver caches token
    /// authentication (`TokenSuccessCacheTTL`); refusals are not cached.
    pub async fn authenticate(
        &self,
        registry: &Registry,
        service_accounts: Option<&crate::tokens::TokenIssuer>,
        token: &str,
    ) -> Option<Identity> {
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(id) = self.cache.get(&key) {
            return Some(id);
        }
        let found = authenticated(self.find(registry, service_accounts, token).await?);
        self.cache.put(key, found.clone());
        Some(found)
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
