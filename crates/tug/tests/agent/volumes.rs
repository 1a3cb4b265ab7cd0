//! Volumes: configMap, secret, downwardAPI, projected (with service account tokens), emptyDir on disk and in memory, claims on local-path.

use super::*;

#[test]
fn volumes_carry_files_with_their_modes_follow_updates_and_keep_claimed_data() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {s: hush}
---
apiVersion: v1
kind: Pod
metadata: {name: files, labels: {tier: backend}}
spec:
  volumes:
  - {name: cfg, configMap: {name: cfg, defaultMode: 0400}}
  - {name: sec, secret: {secretName: sec, items: [{key: s, path: s, mode: 0440}]}}
  - {name: down, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}, {path: name, fieldRef: {fieldPath: metadata.name}}]}}
  - name: proj
    projected:
      defaultMode: 0444
      sources:
      - configMap: {name: cfg}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
  - {name: shared, emptyDir: {}}
  containers:
  - name: reader
    image: busybox:test
    command: [sh, -c, "stat -L -c '%a %n' /cfg/a /sec/s /down/name /proj/a; cat /sec/s /down/name /down/labels /proj/ns; echo; while true; do echo cfg=$(cat /cfg/a) shared=$(cat /shared/x 2>/dev/null); sleep 0.3; done"]
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: down, mountPath: /down}
    - {name: proj, mountPath: /proj}
    - {name: shared, mountPath: /shared}
  - name: writer
    image: busybox:test
    command: [sh, -c, "echo from-writer > /shared/x; sleep 3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
"#,
    );
    wait_until("files to run", Duration::from_secs(60), || {
        let out = kubectl(&s, &["logs", "files", "-c", "reader"], None);
        String::from_utf8_lossy(&out.stdout).contains("shared=from-writer")
    });
    let logs = ok(&s, &["logs", "files", "-c", "reader"]);
    for want in [
        "400 /cfg/a",
        "440 /sec/s",
        "644 /down/name",
        "444 /proj/a",
        "hush",
        "files",
        "tier=\"backend\"",
        "default",
        "cfg=1",
    ] {
        assert!(logs.contains(want), "{want:?} missing from:\n{logs}");
    }
    ok(
        &s,
        &["patch", "configmap", "cfg", "-p", r#"{"data":{"a":"2"}}"#],
    );
    wait_until(
        "the update to reach the volume",
        Duration::from_secs(60),
        || {
            let out = kubectl(&s, &["logs", "files", "-c", "reader", "--tail", "1"], None);
            String::from_utf8_lossy(&out.stdout).contains("cfg=2")
        },
    );

    // A claim on local-path keeps its data across the pod's deletion and re-creation.
    let claim = |name: &str, cmd: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  volumes: [{{name: data, persistentVolumeClaim: {{claimName: keep}}}}]\n  containers:\n  - {{name: c, image: busybox:test, command: [sh, -c, \"{cmd}\"], volumeMounts: [{{name: data, mountPath: /data}}]}}\n"
        )
    };
    apply(
        &s,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: keep}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    wait_until("the claim to bind", Duration::from_secs(60), || {
        jsonpath(&s, &["pvc", "keep"], "{.status.phase}") == "Bound"
    });
    assert_eq!(
        jsonpath(&s, &["pvc", "keep"], "{.spec.storageClassName}"),
        "local-path"
    );
    apply(&s, &claim("first", "echo kept > /data/file"));
    wait_phase(&s, "first", "Succeeded", Duration::from_secs(60));
    ok(&s, &["delete", "pod", "first"]);
    apply(&s, &claim("second", "cat /data/file"));
    wait_phase(&s, "second", "Succeeded", Duration::from_secs(60));
    assert_eq!(ok(&s, &["logs", "second"]).trim(), "kept");
}

#[test]
fn containers_get_service_account_tokens_that_the_api_server_accepts() {
    use base64::Engine;
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: creds}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, 'd=/var/run/secrets/kubernetes.io/serviceaccount; cat $d/namespace; echo; cat $d/token; echo; cat /var/run/secrets/tokens/vault; echo; stat -L -c %a /var/run/secrets/tokens/vault; cat $d/ca.crt']
    volumeMounts: [{{name: vault, mountPath: /var/run/secrets/tokens}}]
  volumes:
  - name: vault
    projected:
      defaultMode: 0440
      sources: [{{serviceAccountToken: {{audience: vault, expirationSeconds: 600, path: vault}}}}]
"#
        ),
    );
    wait_phase(&s, "creds", "Succeeded", Duration::from_secs(60));
    let logs = ok(&s, &["logs", "creds"]);
    let mut lines = logs.lines();
    let (namespace, token, vault, mode) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default(),
    );
    let ca: Vec<&str> = lines.collect();
    assert_eq!(namespace, "default", "{logs}");
    assert_eq!(mode, "440", "{logs}");
    let cluster_ca = std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).expect("ca.crt");
    assert_eq!(ca.join("\n").trim(), cluster_ca.trim(), "{logs}");

    // The mounted token is the pod's: the API server knows who it is and which pod holds it.
    let o = tug_testkit::kubectl::kubectl_with_token(&s, &token, &["auth", "whoami", "-o", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let review: serde_json::Value = serde_json::from_slice(&o.stdout).expect("whoami json");
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0],
        "creds"
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/node-name"][0],
        "node-a"
    );

    // The projected one is for its audience only.
    let payload = vault.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims");
    assert_eq!(claims["aud"], serde_json::json!(["vault"]));
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "creds");
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        600
    );
    let o = tug_testkit::kubectl::kubectl_with_token(&s, &vault, &["auth", "whoami"]);
    assert!(
        !o.status.success(),
        "a token for another audience was accepted"
    );
}

#[test]
fn a_memory_backed_empty_dir_is_a_tmpfs_of_its_size_limit_gone_with_the_pod() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: ram}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, 'grep " /cache " /proc/mounts | cut -d" " -f1,3; dd if=/dev/zero of=/cache/a bs=1024 count=512 2>/dev/null && echo fits; dd if=/dev/zero of=/cache/b bs=1024 count=1024 2>/dev/null || echo full; sleep 3600']
    volumeMounts: [{{name: cache, mountPath: /cache}}]
  volumes:
  - name: cache
    emptyDir: {{medium: Memory, sizeLimit: 1Mi}}
"#
        ),
    );
    wait_phase(&s, "ram", "Running", Duration::from_secs(60));
    wait_until("the writes to finish", Duration::from_secs(30), || {
        ok(&s, &["logs", "ram"]).contains("full")
    });
    assert_eq!(ok(&s, &["logs", "ram"]), "tmpfs tmpfs\nfits\nfull\n");
    let uid = jsonpath(&s, &["pod", "ram"], "{.metadata.uid}");
    let on_host = || {
        std::fs::read_to_string("/proc/mounts")
            .expect("/proc/mounts")
            .lines()
            .filter(|l| l.contains(&uid) && l.contains("empty-dir"))
            .count()
    };
    assert_eq!(
        on_host(),
        1,
        "the tmpfs is mounted under the pod's directory"
    );
    ok(&s, &["delete", "pod", "ram", "--grace-period=1"]);
    wait_until("the tmpfs to be unmounted", Duration::from_secs(30), || {
        on_host() == 0
    });
}
