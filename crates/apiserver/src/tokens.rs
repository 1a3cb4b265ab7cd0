//! ServiceAccount tokens: JWTs signed (ES256) with the cluster's service account key
//! (`DATA_DIR/pki/sa.key`), issued by the TokenRequest subresource and accepted as bearer
//! tokens, as Kubernetes' bound service account tokens are. The public key is published as a
//! JWKS for OIDC discovery.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

/// The issuer (`iss`) of the tokens, and their default audience, as kubeadm configures it.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Signs and verifies service account tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    jwk: Value,
    /// The `iss` claim.
    pub issuer: String,
    /// Audiences the API server accepts, and gives tokens that name none.
    pub audiences: Vec<String>,
}

/// An object a token is bound to (`kubernetes.io.pod`, `.secret`, `.node`, `.serviceaccount`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BoundRef {
    pub name: String,
    pub uid: String,
}

/// The private claims Kubernetes puts under `kubernetes.io`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KubeClaims {
    pub namespace: String,
    pub serviceaccount: BoundRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<BoundRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<BoundRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<BoundRef>,
}

/// A token's claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub iss: String,
    pub jti: String,
    pub sub: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubeClaims,
}

impl TokenIssuer {
    /// Loads the signing key from `pki_dir/sa.key`, creating it on first start.
    pub fn load_or_create(pki_dir: &Path) -> anyhow::Result<TokenIssuer> {
        let path = pki_dir.join("sa.key");
        let key = if path.exists() {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            KeyPair::from_pem(&pem).with_context(|| format!("parsing {}", path.display()))?
        } else {
            let key = KeyPair::generate()?;
            crate::pki::write_private(&path, &key.serialize_pem())?;
            key
        };
        Self::from_key(&key)
    }

    /// An issuer signing with `key` (ECDSA P-256).
    pub fn from_key(key: &KeyPair) -> anyhow::Result<TokenIssuer> {
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())
            .context("the service account key is not an ECDSA P-256 key")?;
        let decoding = DecodingKey::from_ec_pem(key.public_key_pem().as_bytes())
            .context("the service account public key")?;
        // The key id is the hash of the public key, as Kubernetes derives it.
        let key_id = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
            rcgen::PublicKeyData::subject_public_key_info(key),
        ));
        let raw = key.public_key_raw();
        anyhow::ensure!(
            raw.len() == 65 && raw[0] == 4,
            "the service account key is not an uncompressed P-256 point"
        );
        let jwk = json!({
            "use": "sig", "kty": "EC", "kid": key_id, "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        });
        Ok(TokenIssuer {
            encoding,
            decoding,
            key_id,
            jwk,
            issuer: DEFAULT_ISSUER.into(),
            audiences: vec![DEFAULT_ISSUER.into()],
        })
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// The claims of a token this issuer signed, still valid, for one of the API audiences.
    /// None for anything else (not a JWT, another issuer, expired, another audience).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.split('.').count() != 3 {
            return None;
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&self.audiences);
        v.set_issuer(&[&self.issuer]);
        v.validate_nbf = true;
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
            Ok(data) => Some(data.claims),
            Err(e) => {
                tracing::debug!(error = %e, "bearer token is not a valid service account token");
                None
            }
        }
    }

    /// The OIDC discovery document (`/.well-known/openid-configuration`).
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// The public keys (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(issuer: &TokenIssuer, aud: &str, exp_in: i64) -> Claims {
        let now = jiff::Timestamp::now().as_second();
        Claims {
            aud: vec![aud.into()],
            exp: now + exp_in,
            iat: now,
            nbf: now,
            iss: issuer.issuer.clone(),
            jti: "j".into(),
            sub: "system:serviceaccount:default:default".into(),
            kubernetes: KubeClaims {
                namespace: "default".into(),
                serviceaccount: BoundRef {
                    name: "default".into(),
                    uid: "u".into(),
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn tokens_verify_only_with_the_key_audience_and_lifetime() {
        let issuer = TokenIssuer::from_key(&KeyPair::generate().unwrap()).unwrap();
        let good = issuer.sign(&claims(&issuer, DEFAULT_ISSUER, 600)).unwrap();
        let verified = issuer.verify(&good).expect("a fresh token verifies");
        assert_eq!(verified.kubernetes.serviceaccount.name, "default");

        let other_aud = issuer.sign(&claims(&issuer, "vault", 600)).unwrap();
        assert!(issuer.verify(&other_aud).is_none(), "another audience");
        let expired = issuer.sign(&claims(&issuer, DEFAULT_ISSUER, -10)).unwrap();
        assert!(issuer.verify(&expired).is_none(), "expired");
        let stranger = TokenIssuer::from_key(&KeyPair::generate().unwrap()).unwrap();
        let forged = stranger
            .sign(&claims(&stranger, DEFAULT_ISSUER, 600))
            .unwrap();
        assert!(issuer.verify(&forged).is_none(), "signed by another key");
        assert!(issuer.verify("not-a-jwt").is_none());
        assert_eq!(issuer.jwks()["keys"][0]["kid"], issuer.key_id.as_str());
    }
}
