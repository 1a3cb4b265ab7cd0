//! JWT authenticators from a structured authentication configuration
//! (`apiserver.config.k8s.io` `AuthenticationConfiguration`, `--authentication-config`), as
//! kube-apiserver runs them: a token whose `iss` is a configured issuer is verified against
//! the issuer's published keys (OIDC discovery, then `jwks_uri`, over HTTPS trusting the
//! configured `certificateAuthority`), must be for one of the audiences and unexpired, must
//! pass the claim validation rules, and is mapped to a user by the claim mappings (a claim
//! and a prefix, or a CEL expression over `claims`), then checked by the user validation
//! rules (CEL over `user`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use tug_api::crd::cel;

use crate::auth::Identity;

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub jwt: Vec<JwtConfig>,
    /// Accepted for compatibility; anonymous requests are always the anonymous user.
    #[serde(default)]
    pub anonymous: Option<Value>,
}

/// One JWT issuer.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfig {
    pub issuer: Issuer,
    #[serde(default)]
    pub claim_validation_rules: Vec<ClaimValidationRule>,
    pub claim_mappings: ClaimMappings,
    #[serde(default)]
    pub user_validation_rules: Vec<UserValidationRule>,
}

/// Where tokens come from and whom they are for.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Issuer {
    pub url: String,
    #[serde(default, rename = "discoveryURL")]
    pub discovery_url: Option<String>,
    #[serde(default)]
    pub certificate_authority: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub audience_match_policy: Option<String>,
}

/// A rule every token's claims must pass.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimValidationRule {
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(default)]
    pub required_value: Option<String>,
    #[serde(default)]
    pub expression: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// How claims become the user.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMappings {
    pub username: PrefixedClaim,
    #[serde(default)]
    pub groups: Option<PrefixedClaim>,
    #[serde(default)]
    pub uid: Option<ClaimOrExpression>,
    #[serde(default)]
    pub extra: Vec<ExtraMapping>,
}

/// A claim with a prefix, or an expression.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixedClaim {
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub expression: Option<String>,
}

/// A claim, or an expression.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimOrExpression {
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(default)]
    pub expression: Option<String>,
}

/// One extra attribute of the user.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtraMapping {
    pub key: String,
    pub value_expression: String,
}

/// A rule the mapped user must pass.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserValidationRule {
    pub expression: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// Reads and checks `--authentication-config`.
pub fn load(path: &std::path::Path) -> anyhow::Result<Vec<JwtAuthenticator>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the authentication configuration {}",
            path.display()
        )
    })?;
    parse(&text).with_context(|| format!("authentication configuration {}", path.display()))
}

/// Parses and checks an authentication configuration.
pub fn parse(text: &str) -> anyhow::Result<Vec<JwtAuthenticator>> {
    let config: AuthenticationConfiguration =
        serde_norway::from_str(text).context("decoding AuthenticationConfiguration")?;
    anyhow::ensure!(
        config.kind == "AuthenticationConfiguration"
            && matches!(
                config.api_version.as_str(),
                "apiserver.config.k8s.io/v1"
                    | "apiserver.config.k8s.io/v1beta1"
                    | "apiserver.config.k8s.io/v1alpha1"
            ),
        "expected kind AuthenticationConfiguration of apiserver.config.k8s.io/v1 (or v1beta1, \
         v1alpha1), found {} {}",
        config.api_version,
        config.kind
    );
    let mut seen = std::collections::HashSet::new();
    config
        .jwt
        .into_iter()
        .enumerate()
        .map(|(i, jwt)| {
            let at = format!("jwt[{i}]");
            check(&jwt).with_context(|| at.clone())?;
            anyhow::ensure!(
                seen.insert(jwt.issuer.url.clone()),
                "{at}.issuer.url: Duplicate value: {:?}",
                jwt.issuer.url
            );
            JwtAuthenticator::new(jwt).with_context(|| at)
        })
        .collect()
}

/// The checks kube-apiserver makes of one `jwt` entry, worded with its field paths.
fn check(jwt: &JwtConfig) -> anyhow::Result<()> {
    let url = &jwt.issuer.url;
    anyhow::ensure!(
        !url.is_empty(),
        "issuer.url: Required value: reference to an issuer is required"
    );
    anyhow::ensure!(
        url.starts_with("https://"),
        "issuer.url: Invalid value: {url:?}: URL scheme must be https"
    );
    anyhow::ensure!(
        !jwt.issuer.audiences.is_empty(),
        "issuer.audiences: Required value: at least one issuer.audiences is required"
    );
    if jwt.issuer.audiences.len() > 1 {
        anyhow::ensure!(
            jwt.issuer.audience_match_policy.as_deref() == Some("MatchAny"),
            "issuer.audienceMatchPolicy: Invalid value: {:?}: audienceMatchPolicy must be MatchAny for multiple audiences",
            jwt.issuer.audience_match_policy.clone().unwrap_or_default()
        );
    }
    let username = &jwt.claim_mappings.username;
    match (&username.claim, &username.expression) {
        (Some(_), Some(_)) => anyhow::bail!(
            "claimMappings.username: Invalid value: \"\": claim and expression can't both be set"
        ),
        (None, None) => {
            anyhow::bail!("claimMappings.username: Required value: claim or expression is required")
        }
        (Some(_), None) if username.prefix.is_none() => anyhow::bail!(
            "claimMappings.username.prefix: Required value: prefix is required when claim is set. It can be set to an empty string to disable prefixing"
        ),
        (None, Some(_)) if username.prefix.is_some() => anyhow::bail!(
            "claimMappings.username.prefix: Invalid value: {:?}: may not be specified when expression is set",
            username.prefix.clone().unwrap_or_default()
        ),
        _ => {}
    }
    for rule in &jwt.claim_validation_rules {
        anyhow::ensure!(
            rule.claim.is_some() != rule.expression.is_some(),
            "claimValidationRules: Invalid value: one of claim or expression is required"
        );
    }
    let expressions = jwt
        .claim_validation_rules
        .iter()
        .filter_map(|r| r.expression.as_deref())
        .chain(username.expression.as_deref())
        .chain(
            jwt.claim_mappings
                .groups
                .iter()
                .filter_map(|g| g.expression.as_deref()),
        )
        .chain(
            jwt.claim_mappings
                .uid
                .iter()
                .filter_map(|u| u.expression.as_deref()),
        )
        .chain(
            jwt.claim_mappings
                .extra
                .iter()
                .map(|e| e.value_expression.as_str()),
        )
        .chain(
            jwt.user_validation_rules
                .iter()
                .map(|r| r.expression.as_str()),
        );
    for e in expressions {
        cel::compile(e)
            .map_err(|err| anyhow::anyhow!("compilation failed for expression {e:?}: {err}"))?;
    }
    Ok(())
}

/// How long fetched keys are trusted before they are fetched again, and the least time
/// between fetches prompted by unknown key ids.
const KEYS_FRESH: Duration = Duration::from_secs(3600);
const REFETCH_PAUSE: Duration = Duration::from_secs(10);

/// Verifies one issuer's tokens.
pub struct JwtAuthenticator {
    config: JwtConfig,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<bytes::Bytes>>,
    keys: RwLock<Option<(Arc<JwkSet>, Instant)>>,
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("issuer", &self.config.issuer.url)
            .finish()
    }
}

/// The claims of a JWT read without verifying it (to find its issuer).
pub fn unverified_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?).ok()
}

impl JwtAuthenticator {
    fn new(config: JwtConfig) -> anyhow::Result<Self> {
        let tls = crate::tls::https_client_config(config.issuer.certificate_authority.as_deref())
            .context("issuer.certificateAuthority")?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(JwtAuthenticator {
            config,
            client: Client::builder(TokioExecutor::new()).build(https),
            keys: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    /// The issuer's URL (the `iss` its tokens carry).
    pub fn issuer(&self) -> &str {
        &self.config.issuer.url
    }

    /// The user `token` stands for; an error says why it does not (for the log: clients see
    /// only 401).
    pub async fn authenticate(&self, token: &str) -> anyhow::Result<Identity> {
        let header = jsonwebtoken::decode_header(token).context("decoding the JWT header")?;
        anyhow::ensure!(
            matches!(
                header.alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::ES256
                    | Algorithm::ES384
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
                    | Algorithm::EdDSA
            ),
            "oidc: id token signed with unsupported algorithm {:?}",
            header.alg
        );
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&self.config.issuer.audiences);
        v.set_issuer(&[&self.config.issuer.url]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = 0;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| anyhow::anyhow!("oidc: verify token: {e}"))?
            .claims;
        self.map(&claims)
    }

    /// The decoding key for `kid`, fetching the issuer's keys when they are missing, stale,
    /// or lack `kid` (at most once per REFETCH_PAUSE).
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> anyhow::Result<DecodingKey> {
        let find = |set: &JwkSet| -> Option<DecodingKey> {
            set.keys
                .iter()
                .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
                .find_map(|k| {
                    let usable = k
                        .common
                        .key_algorithm
                        .is_none_or(|a| a.to_string() == format!("{alg:?}"));
                    usable.then(|| DecodingKey::from_jwk(k).ok()).flatten()
                })
        };
        let cached = self.keys.read().ok().and_then(|k| k.clone());
        if let Some((set, at)) = &cached
            && at.elapsed() < KEYS_FRESH
            && let Some(k) = find(set)
        {
            return Ok(k);
        }
        let mut last = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some((set, at)) = self.keys.read().ok().and_then(|k| k.clone())
            && Some(at) != cached.as_ref().map(|c| c.1)
            && let Some(k) = find(&set)
        {
            return Ok(k);
        }
        if let Some(t) = *last
            && t.elapsed() < REFETCH_PAUSE
            && cached.is_some()
        {
            anyhow::bail!(
                "oidc: no key {kid:?} among the issuer's keys (fetched {:?} ago)",
                t.elapsed()
            );
        }
        *last = Some(Instant::now());
        let set = Arc::new(self.fetch_keys().await?);
        if let Ok(mut k) = self.keys.write() {
            *k = Some((set.clone(), Instant::now()));
        }
        find(&set).ok_or_else(|| anyhow::anyhow!("oidc: no key {kid:?} among the issuer's keys"))
    }

    async fn fetch_keys(&self) -> anyhow::Result<JwkSet> {
        let issuer = &self.config.issuer;
        let discovery = match &issuer.discovery_url {
            Some(u) => u.clone(),
            None => format!(
                "{}/.well-known/openid-configuration",
                issuer.url.trim_end_matches('/')
            ),
        };
        let doc = self.get_json(&discovery).await?;
        if issuer.discovery_url.is_none() {
            anyhow::ensure!(
                doc["issuer"] == issuer.url.as_str(),
                "oidc: issuer did not match the issuer returned by provider, expected {:?} got {}",
                issuer.url,
                doc["issuer"]
            );
        }
        let jwks_uri = doc["jwks_uri"].as_str().ok_or_else(|| {
            anyhow::anyhow!("oidc: the discovery document at {discovery} has no jwks_uri")
        })?;
        let keys = self.get_json(jwks_uri).await?;
        let set: JwkSet = serde_json::from_value(keys)
            .with_context(|| format!("oidc: decoding the keys at {jwks_uri}"))?;
        tracing::info!(issuer = %issuer.url, keys = set.keys.len(), "fetched the OIDC issuer's keys");
        Ok(set)
    }

    async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.get(uri))
            .await
            .with_context(|| format!("oidc: fetching {url} timed out"))?
            .with_context(|| format!("oidc: fetching {url}"))?;
        anyhow::ensure!(
            resp.status().is_success(),
            "oidc: {url} answered {}",
            resp.status()
        );
        let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
            .await
            .with_context(|| format!("oidc: reading {url} timed out"))?
            .with_context(|| format!("oidc: reading {url}"))?
            .to_bytes();
        serde_json::from_slice(&body).with_context(|| format!("oidc: {url} is not JSON"))
    }

    /// The user verified `claims` map to.
    fn map(&self, claims: &Value) -> anyhow::Result<Identity> {
        let vars = [("claims", claims)];
        for rule in &self.config.claim_validation_rules {
            match (&rule.claim, &rule.expression) {
                (Some(claim), _) => {
                    let want = rule.required_value.as_deref().unwrap_or_default();
                    anyhow::ensure!(
                        claims[claim].as_str() == Some(want),
                        "oidc: required claim {claim} value does not match. Got = {}, want = {want}",
                        claims[claim]
                    );
                }
                (None, Some(e)) => {
                    let passed = cel::evaluate(e, &vars).map_err(|err| {
                        anyhow::anyhow!("oidc: error evaluating claim validation expression: {err}")
                    })?;
                    anyhow::ensure!(
                        passed == Value::Bool(true),
                        "oidc: error evaluating claim validation expression: {}",
                        rule.message
                            .clone()
                            .unwrap_or_else(|| format!("expression {e:?} resulted in {passed}"))
                    );
                }
                (None, None) => {}
            }
        }
        let m = &self.config.claim_mappings;
        let user = match (&m.username.claim, &m.username.expression) {
            (Some(claim), _) => {
                let value = claims[claim].as_str().ok_or_else(|| {
                    anyhow::anyhow!("oidc: parse username claims {claim:?}: claim not present")
                })?;
                if claim == "email"
                    && let Some(verified) = claims.get("email_verified")
                {
                    anyhow::ensure!(verified == &Value::Bool(true), "oidc: email not verified");
                }
                format!(
                    "{}{value}",
                    m.username.prefix.as_deref().unwrap_or_default()
                )
            }
            (None, Some(e)) => match cel::evaluate(e, &vars) {
                Ok(Value::String(s)) => s,
                Ok(other) => anyhow::bail!(
                    "oidc: error evaluating username expression: got {other}, want a string"
                ),
                Err(err) => anyhow::bail!("oidc: error evaluating username expression: {err}"),
            },
            (None, None) => anyhow::bail!("oidc: no username mapping"),
        };
        anyhow::ensure!(
            !user.is_empty(),
            "oidc: empty username via CEL expression is not allowed"
        );
        let mut groups = Vec::new();
        if let Some(g) = &m.groups {
            let value = match (&g.claim, &g.expression) {
                (Some(claim), _) => claims.get(claim).cloned().unwrap_or(Value::Null),
                (None, Some(e)) => cel::evaluate(e, &vars).map_err(|err| {
                    anyhow::anyhow!("oidc: error evaluating group claim expression: {err}")
                })?,
                _ => Value::Null,
            };
            let prefix = g.prefix.as_deref().unwrap_or_default();
            groups = strings(&value)
                .ok_or_else(|| anyhow::anyhow!("oidc: parse groups claim: {value} is neither a string nor a list of strings"))?
                .into_iter()
                .map(|s| format!("{prefix}{s}"))
                .collect();
        }
        let uid = match &m.uid {
            Some(ClaimOrExpression { claim: Some(c), .. }) => {
                claims[c].as_str().unwrap_or_default().to_string()
            }
            Some(ClaimOrExpression {
                expression: Some(e),
                ..
            }) => match cel::evaluate(e, &vars) {
                Ok(Value::String(s)) => s,
                Ok(other) => anyhow::bail!(
                    "oidc: error evaluating uid claim expression: got {other}, want a string"
                ),
                Err(err) => anyhow::bail!("oidc: error evaluating uid claim expression: {err}"),
            },
            _ => String::new(),
        };
        let mut extra = BTreeMap::new();
        for x in &m.extra {
            let value = cel::evaluate(&x.value_expression, &vars).map_err(|err| {
                anyhow::anyhow!("oidc: error evaluating extra claim expression: {err}")
            })?;
            let values = strings(&value).ok_or_else(|| {
                anyhow::anyhow!(
                    "oidc: extra mapping {:?}: {value} is neither a string nor a list of strings",
                    x.key
                )
            })?;
            if !values.is_empty() {
                extra.insert(x.key.clone(), values);
            }
        }
        let identity = Identity {
            user,
            uid,
            groups,
            extra,
        };
        if !self.config.user_validation_rules.is_empty() {
            let user = json!({"username": identity.user, "uid": identity.uid,
                              "groups": identity.groups, "extra": identity.extra});
            for rule in &self.config.user_validation_rules {
                let passed =
                    cel::evaluate(&rule.expression, &[("user", &user)]).map_err(|err| {
                        anyhow::anyhow!("oidc: error evaluating user info validation rule: {err}")
                    })?;
                anyhow::ensure!(
                    passed == Value::Bool(true),
                    "oidc: error evaluating user info validation rule: {}",
                    rule.message.clone().unwrap_or_else(|| format!(
                        "expression {:?} resulted in {passed}",
                        rule.expression
                    ))
                );
            }
        }
        Ok(identity)
    }
}

/// A string, or a list of strings, as a list; null as empty.
fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(mappings: &str) -> JwtAuthenticator {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: https://idp.example\n    audiences: [tug]\n{mappings}"
        );
        parse(&text).unwrap().pop().unwrap()
    }

    #[test]
    fn claims_map_to_the_user() {
        let a = authenticator(
            "  claimValidationRules:\n  - claim: hd\n    requiredValue: example.com\n  claimMappings:\n    username: {claim: email, prefix: 'oidc:'}\n    groups: {claim: groups, prefix: 'oidc:'}\n    uid: {claim: sub}\n    extra:\n    - key: example.com/tenant\n      valueExpression: claims.tenant\n",
        );
        let id = a
            .map(
                &json!({"email": "alice@example.com", "email_verified": true, "hd": "example.com",
                         "groups": ["dev", "ops"], "sub": "1234", "tenant": "blue"}),
            )
            .unwrap();
        assert_eq!(id.user, "oidc:alice@example.com");
        assert_eq!(id.groups, ["oidc:dev", "oidc:ops"]);
        assert_eq!(id.uid, "1234");
        assert_eq!(id.extra["example.com/tenant"], ["blue"]);
        let e = a
            .map(&json!({"email": "a@b", "hd": "other.com"}))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("required claim hd value does not match"),
            "{e}"
        );
        let e = a
            .map(&json!({"email": "a@b", "email_verified": false, "hd": "example.com"}))
            .unwrap_err();
        assert!(e.to_string().contains("email not verified"), "{e}");
    }

    #[test]
    fn expressions_and_user_rules() {
        let a = authenticator(
            "  claimMappings:\n    username: {expression: \"'x:' + claims.sub\"}\n    groups: {expression: \"claims.roles.split(',')\"}\n  userValidationRules:\n  - expression: \"!user.username.startsWith('x:root')\"\n    message: no root\n",
        );
        let id = a.map(&json!({"sub": "bob", "roles": "a,b"})).unwrap();
        assert_eq!(
            (id.user.as_str(), id.groups.clone()),
            ("x:bob", vec!["a".to_string(), "b".into()])
        );
        let e = a.map(&json!({"sub": "root", "roles": "a"})).unwrap_err();
        assert!(e.to_string().contains("no root"), "{e}");
    }

    #[test]
    fn bad_configurations() {
        let bad = |jwt: &str| {
            let text = format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n{jwt}"
            );
            format!("{:#}", parse(&text).unwrap_err())
        };
        assert!(bad("- issuer: {url: 'http://x', audiences: [a]}\n  claimMappings: {username: {claim: sub, prefix: ''}}").contains("URL scheme must be https"));
        assert!(bad("- issuer: {url: 'https://x', audiences: []}\n  claimMappings: {username: {claim: sub, prefix: ''}}").contains("at least one issuer.audiences"));
        assert!(bad("- issuer: {url: 'https://x', audiences: [a]}\n  claimMappings: {username: {claim: sub}}").contains("prefix is required when claim is set"));
        assert!(bad("- issuer: {url: 'https://x', audiences: [a]}\n  claimMappings: {username: {expression: 'claims.'}}").contains("compilation failed"));
    }
}
