//! Encryption at rest, configured as kube-apiserver configures it
//! (`--encryption-provider-config`, an `apiserver.config.k8s.io/v1` EncryptionConfiguration):
//! for each listed resource, the first provider encrypts what is written and every provider
//! may read what it wrote. Stored bytes carry kube-apiserver's prefix,
//! `k8s:enc:<provider>:v1:<key name>:`, and its layouts: `aescbc` (AES-CBC, PKCS#7, a random
//! IV first), `aesgcm` (AES-GCM, a random nonce first, the store key as additional data),
//! `secretbox` (XSalsa20-Poly1305, a random nonce first); `identity` stores plain bytes.
//! RustCrypto's `aes`, `cbc`, `aes-gcm` and `crypto_secretbox` do the cryptography.

use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use serde::Deserialize;
use tug_store::{KeyRange, RangeOptions, Store, ValueTransformer};

const PREFIX: &[u8] = b"k8s:enc:";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Configuration {
    kind: String,
    api_version: String,
    #[serde(default)]
    resources: Vec<ResourceConfiguration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfiguration {
    resources: Vec<String>,
    providers: Vec<ProviderConfiguration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfiguration {
    aescbc: Option<KeysConfiguration>,
    aesgcm: Option<KeysConfiguration>,
    secretbox: Option<KeysConfiguration>,
    identity: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfiguration {
    keys: Vec<KeyConfiguration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfiguration {
    name: String,
    secret: String,
}

/// One cipher key.
#[derive(Clone)]
enum Cipher {
    Cbc(Vec<u8>),
    Gcm(Vec<u8>),
    Secretbox([u8; 32]),
}

/// A provider: identity, or a cipher with named keys (the first encrypts).
#[derive(Clone)]
struct Provider {
    /// `aescbc`, `aesgcm`, `secretbox` or `identity`.
    name: &'static str,
    keys: Vec<(String, Cipher)>,
}

/// Which store keys a rule covers, and its providers.
struct Rule {
    prefixes: Vec<String>,
    providers: Vec<Provider>,
}

/// The encryption of an API server: what `--encryption-provider-config` says.
pub struct Encryption {
    rules: Vec<Rule>,
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(b)
}

impl Cipher {
    fn encrypt(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Cipher::Cbc(key) => {
                use cbc::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
                let iv: [u8; 16] = random()?;
                let sealed = match key.len() {
                    16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(plain)),
                    24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, &iv)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(plain)),
                    _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(plain)),
                }
                .map_err(|e| e.to_string())?;
                Ok([iv.as_slice(), &sealed].concat())
            }
            Cipher::Gcm(key) => {
                let nonce: [u8; 12] = random()?;
                let payload = Payload { msg: plain, aad };
                let sealed = match key.len() {
                    16 => aes_gcm::Aes128Gcm::new_from_slice(key)
                        .map_err(|e| e.to_string())?
                        .encrypt(&nonce.into(), payload),
                    24 => {
                        aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(
                            key,
                        )
                        .map_err(|e| e.to_string())?
                        .encrypt(&nonce.into(), payload)
                    }
                    _ => aes_gcm::Aes256Gcm::new_from_slice(key)
                        .map_err(|e| e.to_string())?
                        .encrypt(&nonce.into(), payload),
                }
                .map_err(|e| e.to_string())?;
                Ok([nonce.as_slice(), &sealed].concat())
            }
            Cipher::Secretbox(key) => {
                let nonce: [u8; 24] = random()?;
                let sealed = crypto_secretbox::XSalsa20Poly1305::new(key.into())
                    .encrypt(&nonce.into(), plain)
                    .map_err(|e| e.to_string())?;
                Ok([nonce.as_slice(), &sealed].concat())
            }
        }
    }

    fn decrypt(&self, aad: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
        const WRONG: &str = "the data does not decrypt with this key (a wrong key?)";
        match self {
            Cipher::Cbc(key) => {
                use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
                if data.len() < 32 || !data.len().is_multiple_of(16) {
                    return Err("the data is not a whole number of AES blocks".into());
                }
                let (iv, body) = data.split_at(16);
                match key.len() {
                    16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
                        .map(|c| c.decrypt_padded_vec_mut::<Pkcs7>(body)),
                    24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
                        .map(|c| c.decrypt_padded_vec_mut::<Pkcs7>(body)),
                    _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                        .map(|c| c.decrypt_padded_vec_mut::<Pkcs7>(body)),
                }
                .map_err(|e| e.to_string())?
                .map_err(|_| WRONG.to_string())
            }
            Cipher::Gcm(key) => {
                if data.len() < 12 {
                    return Err("the data is shorter than a nonce".into());
                }
                let (nonce, body) = data.split_at(12);
                let nonce = aes_gcm::Nonce::from_slice(nonce);
                let payload = Payload { msg: body, aad };
                match key.len() {
                    16 => aes_gcm::Aes128Gcm::new_from_slice(key)
                        .map_err(|e| e.to_string())?
                        .decrypt(nonce, payload),
                    24 => {
                        aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(
                            key,
                        )
                        .map_err(|e| e.to_string())?
                        .decrypt(nonce, payload)
                    }
                    _ => aes_gcm::Aes256Gcm::new_from_slice(key)
                        .map_err(|e| e.to_string())?
                        .decrypt(nonce, payload),
                }
                .map_err(|_| WRONG.to_string())
            }
            Cipher::Secretbox(key) => {
                if data.len() < 24 {
                    return Err("the data is shorter than a nonce".into());
                }
                let (nonce, body) = data.split_at(24);
                crypto_secretbox::XSalsa20Poly1305::new(key.into())
                    .decrypt(crypto_secretbox::Nonce::from_slice(nonce), body)
                    .map_err(|_| WRONG.to_string())
            }
        }
    }
}

impl Provider {
    /// The prefix this provider's writes carry with its first key.
    fn write_prefix(&self) -> Option<String> {
        self.keys
            .first()
            .map(|(name, _)| format!("k8s:enc:{}:v1:{name}:", self.name))
    }

    fn encrypt(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, String> {
        match (self.write_prefix(), self.keys.first()) {
            (Some(prefix), Some((_, cipher))) => {
                let sealed = cipher.encrypt(key, &value)?;
                Ok([prefix.as_bytes(), &sealed].concat())
            }
            _ => Ok(value),
        }
    }

    /// `None` when the stored bytes are not this provider's.
    fn decrypt(&self, key: &[u8], stored: &[u8]) -> Option<Result<Vec<u8>, String>> {
        if self.name == "identity" {
            return (!stored.starts_with(PREFIX)).then(|| Ok(stored.to_vec()));
        }
        let own = format!("k8s:enc:{}:v1:", self.name);
        let rest = stored.strip_prefix(own.as_bytes())?;
        let colon = rest.iter().position(|b| *b == b':')?;
        let (name, data) = (String::from_utf8_lossy(&rest[..colon]), &rest[colon + 1..]);
        let cipher = self.keys.iter().find(|(n, _)| *n == name).map(|(_, c)| c)?;
        Some(
            cipher
                .decrypt(key, data)
                .map_err(|e| format!("{} key {name:?}: {e}", self.name)),
        )
    }
}

/// The store key prefixes a configured resource name covers.
fn prefixes(resource: &str) -> Result<Vec<String>, String> {
    let core = |plural: &str| format!("/registry/{plural}/");
    Ok(match resource.split_once('.') {
        None => vec![core(resource)],
        Some(("*", "*")) => vec!["/registry/".into()],
        Some(("*", "")) => tug_api::catalog::BUILTIN
            .iter()
            .filter(|r| r.group.is_empty())
            .map(|r| core(r.plural))
            .collect(),
        Some(("*", group)) => vec![format!("/registry/{group}/")],
        Some((plural, group)) if !plural.contains('*') => {
            vec![format!("/registry/{group}/{plural}/")]
        }
        _ => {
            return Err(format!(
                "resources: {resource:?} is not a resource name or wildcard"
            ));
        }
    })
}

fn decode_key(provider: &str, k: &KeyConfiguration, sizes: &[usize]) -> Result<Vec<u8>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(k.secret.trim())
        .map_err(|e| format!("{provider} key {:?}: the secret is not base64: {e}", k.name))?;
    if !sizes.contains(&bytes.len()) {
        return Err(format!(
            "{provider} key {:?}: the secret is {} bytes; it must be {}",
            k.name,
            bytes.len(),
            sizes
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(bytes)
}

impl Encryption {
    /// Reads an EncryptionConfiguration file.
    pub fn load(path: &Path) -> anyhow::Result<Encryption> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses an EncryptionConfiguration (YAML or JSON).
    pub fn parse(text: &str) -> Result<Encryption, String> {
        let config: Configuration = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if config.kind != "EncryptionConfiguration"
            || config.api_version != "apiserver.config.k8s.io/v1"
        {
            return Err(format!(
                "expected kind EncryptionConfiguration of apiVersion apiserver.config.k8s.io/v1, not {} {}",
                config.kind, config.api_version
            ));
        }
        let mut rules = Vec::new();
        for (i, rc) in config.resources.iter().enumerate() {
            if rc.providers.is_empty() {
                return Err(format!(
                    "resources[{i}].providers: at least one provider is required"
                ));
            }
            let mut providers = Vec::new();
            for (j, p) in rc.providers.iter().enumerate() {
                let at = format!("resources[{i}].providers[{j}]");
                let given = [
                    p.aescbc.is_some(),
                    p.aesgcm.is_some(),
                    p.secretbox.is_some(),
                    p.identity.is_some(),
                    p.kms.is_some(),
                ];
                if given.iter().filter(|g| **g).count() != 1 {
                    return Err(format!("{at}: exactly one provider type must be given"));
                }
                if p.kms.is_some() {
                    return Err(format!(
                        "{at}: kms providers are not supported; use aescbc, aesgcm or secretbox"
                    ));
                }
                let (name, keys, sizes): (&'static str, Option<&KeysConfiguration>, &[usize]) =
                    if let Some(k) = &p.aescbc {
                        ("aescbc", Some(k), &[16, 24, 32])
                    } else if let Some(k) = &p.aesgcm {
                        ("aesgcm", Some(k), &[16, 24, 32])
                    } else if let Some(k) = &p.secretbox {
                        ("secretbox", Some(k), &[32])
                    } else {
                        ("identity", None, &[])
                    };
                let mut parsed = Vec::new();
                if let Some(k) = keys {
                    if k.keys.is_empty() {
                        return Err(format!("{at}.{name}.keys: at least one key is required"));
                    }
                    for key in &k.keys {
                        if key.name.is_empty() || key.name.contains(':') {
                            return Err(format!(
                                "{at}.{name}.keys: key name {:?} must be non-empty, without ':'",
                                key.name
                            ));
                        }
                        if parsed.iter().any(|(n, _)| *n == key.name) {
                            return Err(format!(
                                "{at}.{name}.keys: key name {:?} is given twice",
                                key.name
                            ));
                        }
                        let bytes =
                            decode_key(name, key, sizes).map_err(|e| format!("{at}: {e}"))?;
                        let cipher =
                            match name {
                                "aescbc" => Cipher::Cbc(bytes),
                                "aesgcm" => Cipher::Gcm(bytes),
                                _ => Cipher::Secretbox(bytes.try_into().map_err(|_| {
                                    format!("{at}: a secretbox key must be 32 bytes")
                                })?),
                            };
                        parsed.push((key.name.clone(), cipher));
                    }
                }
                providers.push(Provider { name, keys: parsed });
            }
            let mut covered = Vec::new();
            for r in &rc.resources {
                covered.extend(prefixes(r).map_err(|e| format!("resources[{i}].{e}"))?);
            }
            rules.push(Rule {
                prefixes: covered,
                providers,
            });
        }
        Ok(Encryption { rules })
    }

    fn rule(&self, key: &[u8]) -> Option<&Rule> {
        let key = String::from_utf8_lossy(key);
        self.rules
            .iter()
            .find(|r| r.prefixes.iter().any(|p| key.starts_with(p.as_str())))
    }

    /// The store key prefixes anything is encrypted under.
    fn covered_prefixes(&self) -> Vec<String> {
        let mut all: Vec<String> = self.rules.iter().flat_map(|r| r.prefixes.clone()).collect();
        all.sort();
        all.dedup();
        // A prefix inside another is read with it.
        let mut kept: Vec<String> = Vec::new();
        for p in all {
            if !kept.iter().any(|k| p.starts_with(k.as_str())) {
                kept.push(p);
            }
        }
        kept
    }

    /// Reads every stored value this configuration covers (from `raw`, the store without
    /// transformation): a value no provider can read stops the server with what is wrong;
    /// values not written by the first provider's first key are written again with it (key
    /// rotation). Returns how many were rewritten.
    pub async fn verify_and_rewrite(
        self: &Arc<Self>,
        raw: &Arc<dyn Store>,
    ) -> anyhow::Result<usize> {
        let mut rewritten = 0;
        for prefix in self.covered_prefixes() {
            let mut range = KeyRange::prefix(prefix.as_bytes().to_vec());
            loop {
                let resp = raw
                    .range(
                        range.clone(),
                        RangeOptions {
                            limit: 500,
                            ..Default::default()
                        },
                    )
                    .await?;
                for kv in &resp.kvs {
                    let Some(rule) = self.rule(&kv.key) else {
                        continue;
                    };
                    let key = String::from_utf8_lossy(&kv.key).into_owned();
                    let plain = self
                        .transform_from_storage(&kv.key, kv.value.clone())
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "cannot read {key}: {e}; check --encryption-provider-config"
                            )
                        })?;
                    if serde_json::from_slice::<serde_json::Value>(&plain).is_err() {
                        anyhow::bail!(
                            "cannot read {key}: it decrypts to something that is not an object (a wrong key?); check --encryption-provider-config"
                        );
                    }
                    let current = match rule.providers.first().and_then(Provider::write_prefix) {
                        Some(p) => kv.value.starts_with(p.as_bytes()),
                        None => !kv.value.starts_with(PREFIX),
                    };
                    if !current {
                        let stored = self.transform_to_storage(&kv.key, plain)?;
                        let txn = tug_store::Txn {
                            compare: vec![tug_store::Compare::new(
                                kv.key.clone(),
                                tug_store::CompareOp::Equal,
                                tug_store::CompareTarget::ModRevision(kv.mod_revision),
                            )],
                            success: vec![tug_store::TxnOp::Put(tug_store::PutRequest::new(
                                kv.key.clone(),
                                stored,
                            ))],
                            failure: vec![],
                        };
                        if raw.txn(txn).await?.succeeded {
                            rewritten += 1;
                        }
                    }
                }
                match (resp.more, resp.kvs.last()) {
                    (true, Some(last)) => {
                        let mut next = last.key.clone();
                        next.push(0);
                        range = KeyRange {
                            start: next,
                            end: range.end.clone(),
                        };
                    }
                    _ => break,
                }
            }
        }
        if rewritten > 0 {
            // The history still holds what the rewritten values were (plaintext, or the old
            // key's): compact it away before anything is served.
            let revision = raw.current_revision().await?;
            match raw.compact(revision).await {
                Ok(()) | Err(tug_store::Error::Compacted { .. }) => {}
                Err(e) => anyhow::bail!("compacting after rewriting encrypted values: {e}"),
            }
        }
        Ok(rewritten)
    }
}

impl ValueTransformer for Encryption {
    fn transform_to_storage(&self, key: &[u8], value: Vec<u8>) -> tug_store::Result<Vec<u8>> {
        match self.rule(key).and_then(|r| r.providers.first()) {
            Some(p) => p.encrypt(key, value).map_err(tug_store::Error::Internal),
            None => Ok(value),
        }
    }

    fn transform_from_storage(&self, key: &[u8], stored: Vec<u8>) -> tug_store::Result<Vec<u8>> {
        let Some(rule) = self.rule(key) else {
            return Ok(stored);
        };
        for p in &rule.providers {
            if let Some(result) = p.decrypt(key, &stored) {
                return result.map_err(tug_store::Error::Internal);
            }
        }
        let shown: String = String::from_utf8_lossy(&stored[..stored.len().min(40)])
            .chars()
            .take_while(|c| !c.is_control())
            .collect();
        let what = if stored.starts_with(PREFIX) {
            format!("no configured provider or key reads data stored as {shown:?}")
        } else {
            "the data is not encrypted and no identity provider is configured".to_string()
        };
        Err(tug_store::Error::Internal(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(providers: &str) -> Encryption {
        Encryption::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, widgets.example.com]\n  providers:\n{providers}"
        ))
        .expect("parses")
    }

    const KEY1: &str = "c2VjcmV0IGlzIHNlY3VyZSwgYSAzMiBieXRlIGtleSE=";
    const KEY2: &str = "YW5vdGhlciAzMiBieXRlIGtleSBmb3Igcm90YXRpb24=";

    #[test]
    fn each_provider_writes_its_prefix_and_reads_back() {
        for provider in ["aescbc", "aesgcm", "secretbox"] {
            let e = config(&format!(
                "  - {provider}: {{keys: [{{name: key1, secret: {KEY1}}}]}}\n"
            ));
            let key = b"/registry/secrets/default/s";
            let stored = e
                .transform_to_storage(key, b"{\"a\":1}".to_vec())
                .expect("encrypts");
            let prefix = format!("k8s:enc:{provider}:v1:key1:");
            assert!(stored.starts_with(prefix.as_bytes()), "{provider}");
            assert!(!stored.windows(5).any(|w| w == b"\"a\":1"));
            assert_eq!(
                e.transform_from_storage(key, stored.clone())
                    .expect("decrypts"),
                b"{\"a\":1}"
            );
            // Other resources pass unchanged.
            let cm = b"/registry/configmaps/default/c";
            assert_eq!(
                e.transform_to_storage(cm, b"x".to_vec()).expect("plain"),
                b"x"
            );
            // A wrong key of the same name fails.
            let wrong = config(&format!(
                "  - {provider}: {{keys: [{{name: key1, secret: {KEY2}}}]}}\n"
            ));
            assert!(
                wrong.transform_from_storage(key, stored).is_err(),
                "{provider}"
            );
        }
    }

    #[test]
    fn rotation_reads_old_keys_and_identity_reads_plain_data() {
        let old = config(&format!(
            "  - aescbc: {{keys: [{{name: key1, secret: {KEY1}}}]}}\n"
        ));
        let key = b"/registry/example.com/widgets/ns/w";
        let stored = old
            .transform_to_storage(key, b"{}".to_vec())
            .expect("encrypts");
        let rotated = config(&format!(
            "  - aescbc: {{keys: [{{name: key2, secret: {KEY2}}}, {{name: key1, secret: {KEY1}}}]}}\n  - identity: {{}}\n"
        ));
        assert_eq!(
            rotated
                .transform_from_storage(key, stored)
                .expect("old key reads"),
            b"{}"
        );
        assert!(
            rotated
                .transform_to_storage(key, b"{}".to_vec())
                .expect("enc")
                .starts_with(b"k8s:enc:aescbc:v1:key2:")
        );
        assert_eq!(
            rotated
                .transform_from_storage(key, b"{}".to_vec())
                .expect("plain"),
            b"{}"
        );
        assert!(
            old.transform_from_storage(key, b"{}".to_vec()).is_err(),
            "no identity provider"
        );
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let bad = |providers: &str| match Encryption::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
        )) {
            Ok(_) => String::new(),
            Err(e) => e,
        };
        assert!(
            bad("  - aescbc: {keys: [{name: k, secret: c2hvcnQ=}]}\n")
                .contains("the secret is 5 bytes; it must be 16, 24, 32")
        );
        assert!(bad("  - secretbox: {keys: [{name: k, secret: '!!'}]}\n").contains("not base64"));
        assert!(bad("  - aescbc: {keys: []}\n").contains("at least one key"));
        assert!(bad("  - kms: {name: x}\n").contains("kms providers are not supported"));
        assert!(bad("  - {}\n").contains("exactly one provider type"));
    }
}
