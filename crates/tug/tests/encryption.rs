//! Secrets encrypted at rest (`--encryption-provider-config`): the stored bytes carry
//! kube-apiserver's `k8s:enc:aescbc:v1:<key>:` prefix and no plaintext (in the store and in a
//! snapshot), existing secrets are encrypted at the next start, a new key rotates every secret
//! to it, and a key that does not decrypt what is stored stops the server with a clear error.

use std::path::Path;
use std::process::Command;

use tug_store::{KeyRange, LocalOptions, LocalStore, RangeOptions, Store};
use tug_testkit::kubectl::ok;
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

const KEY1: &str = "c2VjcmV0IGlzIHNlY3VyZSwgYSAzMiBieXRlIGtleSE=";
const KEY2: &str = "YW5vdGhlciAzMiBieXRlIGtleSBmb3Igcm90YXRpb24=";
/// The secrets' values (`kubectl create secret --from-literal=password=…`).
const VALUE: &str = "correct-horse-battery-staple";
/// The value of a secret written only after encryption is on.
const NEW_VALUE: &str = "written-after-encryption";

fn write_config(path: &Path, keys: &[(&str, &str)], identity: bool) {
    let keys: Vec<String> = keys
        .iter()
        .map(|(n, k)| format!("{{name: {n}, secret: {k}}}"))
        .collect();
    let mut text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc: {{keys: [{}]}}\n",
        keys.join(", ")
    );
    if identity {
        text.push_str("  - identity: {}\n");
    }
    std::fs::write(path, text).expect("write the configuration");
}

fn start(data: &Path, config: &Path) -> TugServer {
    let config = config.to_str().expect("utf-8 path");
    TugServer::start_with(tug_bin!(), data, &["--encryption-provider-config", config])
}

/// The stored bytes of a secret, read from the stopped server's store.
async fn stored(data: &Path, name: &str) -> Vec<u8> {
    stored_at(data, &format!("/registry/secrets/default/{name}")).await
}

async fn stored_at(data: &Path, key: &str) -> Vec<u8> {
    let store = LocalStore::open(data, LocalOptions::default()).expect("open the store");
    let key = key.to_string();
    let r = store
        .range(KeyRange::key(key.clone()), RangeOptions::default())
        .await
        .expect("read");
    r.kvs
        .into_iter()
        .next()
        .map(|kv| kv.value)
        .unwrap_or_default()
}

fn secret_value(s: &TugServer, name: &str) -> String {
    ok(
        s,
        &["get", "secret", name, "-o", "jsonpath={.data.password}"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_encrypted_rotated_and_a_wrong_key_stops_the_server() {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(VALUE);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("encryption.yaml");

    // Before: stored in plain.
    let mut s = TugServer::start_in(tug_bin!(), &data);
    ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "before",
            &format!("--from-literal=password={VALUE}"),
        ],
    );
    s.kill();
    let plain = stored(&data, "before").await;
    assert!(String::from_utf8_lossy(&plain).contains(&encoded));

    // aescbc with key1 (identity after it reads what was stored in plain): the old secret is
    // encrypted at start, a new one as it is written, and both read back.
    write_config(&config, &[("key1", KEY1)], true);
    let mut s = start(&data, &config);
    ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "after",
            &format!("--from-literal=password={NEW_VALUE}"),
        ],
    );
    let new_encoded = base64::engine::general_purpose::STANDARD.encode(NEW_VALUE);
    assert_eq!(secret_value(&s, "before"), encoded);
    assert_eq!(secret_value(&s, "after"), new_encoded);
    // A snapshot holds no plaintext of what was written encrypted (and the start that
    // encrypted the old secret compacted its plain history away).
    let snap = dir.path().join("snap.db");
    let o = Command::new(tug_bin!())
        .args(["snapshot", "save"])
        .arg(&snap)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("tug snapshot save");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&snap).expect("read the snapshot");
    assert!(
        !bytes
            .windows(new_encoded.len())
            .any(|w| w == new_encoded.as_bytes()),
        "plaintext in the snapshot"
    );
    assert!(bytes.windows(23).any(|w| w == b"k8s:enc:aescbc:v1:key1:"));
    s.kill();
    for name in ["before", "after"] {
        let bytes = stored(&data, name).await;
        assert!(
            bytes.starts_with(b"k8s:enc:aescbc:v1:key1:"),
            "{name}: {}",
            String::from_utf8_lossy(&bytes[..30.min(bytes.len())])
        );
    }

    // Rotation: key2 first, key1 still known: every secret is rewritten with key2 at start.
    write_config(&config, &[("key2", KEY2), ("key1", KEY1)], false);
    let mut s = start(&data, &config);
    assert_eq!(secret_value(&s, "before"), encoded);
    s.kill();
    for name in ["before", "after"] {
        assert!(
            stored(&data, name)
                .await
                .starts_with(b"k8s:enc:aescbc:v1:key2:"),
            "{name}"
        );
    }
    // key1 can now go: everything still reads.
    write_config(&config, &[("key2", KEY2)], false);
    let mut s = start(&data, &config);
    assert_eq!(secret_value(&s, "after"), new_encoded);
    ok(&s, &["create", "configmap", "plain", "--from-literal=a=1"]);
    s.kill();
    // ConfigMaps are not covered by the configuration: stored in plain.
    assert!(
        stored_at(&data, "/registry/configmaps/default/plain")
            .await
            .starts_with(b"{")
    );

    // A wrong key under the right name stops the server, saying what is wrong.
    write_config(&config, &[("key2", KEY1)], false);
    let o = Command::new(tug_bin!())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--disable-agent",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--encryption-provider-config")
        .arg(&config)
        .output()
        .expect("tug server");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("cannot read /registry/secrets/default/")
            && err.contains("aescbc key \"key2\"")
            && err.contains("check --encryption-provider-config"),
        "{err}"
    );
    // A configuration that is not one is refused too.
    std::fs::write(
        &config,
        "kind: EncryptionConfiguration\napiVersion: v1\nresources: []\n",
    )
    .expect("write");
    let o = Command::new(tug_bin!())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--disable-agent",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--encryption-provider-config")
        .arg(&config)
        .output()
        .expect("tug server");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("apiserver.config.k8s.io/v1"),
        "{err}"
    );
}
