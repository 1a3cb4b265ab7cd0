//! Service accounts: TokenRequest (`kubectl create token`), the tokens as credentials (bound
//! to pods, for an audience, forbidden beyond discovery), ServiceAccount admission of pods,
//! the `kube-root-ca.crt` publisher and OIDC discovery, through the real kubectl.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tug_testkit::kubectl::{apply, eventually, kubectl, kubectl_with_token, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn server(dir: &tempfile::TempDir) -> TugServer {
    TugServer::start_in(tug_bin!(), &dir.path().join("data"))
}

/// `kubectl auth whoami` as `token`: the userInfo, or the error kubectl printed.
fn whoami(s: &TugServer, token: &str) -> Result<Value, String> {
    let o = kubectl_with_token(s, token, &["auth", "whoami", "-o", "json"]);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let review: Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    Ok(review["status"]["userInfo"].clone())
}

fn create_token(s: &TugServer, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    ok(s, &all).trim().to_string()
}

fn failure(s: &TugServer, args: &[&str]) -> String {
    let o = kubectl(s, args, None);
    assert!(!o.status.success(), "kubectl {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn token_requests_give_tokens_that_authenticate_as_the_service_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    ok(&s, &["create", "namespace", "team"]);
    ok(&s, &["create", "serviceaccount", "builder", "-n", "team"]);

    let token = create_token(&s, &["builder", "-n", "team"]);
    let user = whoami(&s, &token).expect("the token authenticates");
    assert_eq!(user["username"], "system:serviceaccount:team:builder");
    let groups = user["groups"].to_string();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    ] {
        assert!(groups.contains(&format!("\"{g}\"")), "{groups}");
    }

    // Discovery is open to every authenticated user; the API beyond it is not (no RBAC yet).
    let o = kubectl_with_token(&s, &token, &["api-resources", "--api-group=apps"]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("deployments"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = kubectl_with_token(&s, &token, &["get", "pods", "-n", "team"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("Forbidden"), "{err}");

    // A token for another audience, a forged one and a short-lived request are refused.
    let vault = create_token(&s, &["builder", "-n", "team", "--audience", "vault"]);
    let err = whoami(&s, &vault).expect_err("another audience's token is refused");
    assert!(err.contains("Unauthorized"), "{err}");
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(
        whoami(&s, &forged).is_err(),
        "a token with a broken signature"
    );
    let err = failure(
        &s,
        &["create", "token", "builder", "-n", "team", "--duration=5m"],
    );
    assert!(
        err.contains("spec.expirationSeconds") && err.contains("less than 10 minutes"),
        "{err}"
    );
    let err = failure(&s, &["create", "token", "nobody", "-n", "team"]);
    assert!(
        err.contains("serviceaccounts \"nobody\" not found"),
        "{err}"
    );

    // A TokenReview says the same to whoever asks (webhooks, proxies).
    let review = |t: &str| -> Value {
        let o = kubectl(
            &s,
            // kubectl's client-side validation cannot find review kinds in this server's
            // OpenAPI yet (and its v2 fallback wants protobuf): skip it.
            &["create", "--validate=false", "-o", "json", "-f", "-"],
            Some(&format!(
                "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {{token: \"{t}\"}}\n"
            )),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).expect("review json")["status"].clone()
    };
    let good = review(&token);
    assert_eq!(good["authenticated"], true, "{good}");
    assert_eq!(
        good["user"]["username"],
        "system:serviceaccount:team:builder"
    );
    assert_eq!(review("not-a-token")["authenticated"], false);

    // Deleting the service account revokes its tokens (within the 10 s for which the API
    // server, like kube-apiserver, trusts a token it accepted).
    ok(&s, &["delete", "serviceaccount", "builder", "-n", "team"]);
    eventually(
        "the deleted service account's token to stop authenticating",
        || whoami(&s, &token).is_err_and(|e| e.contains("Unauthorized")),
    );
}

#[test]
fn a_token_bound_to_a_pod_dies_with_the_pod() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: holder}\nspec:\n  containers: [{name: c, image: busybox}]\n",
    );
    let token = create_token(
        &s,
        &[
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=holder",
        ],
    );
    let user = whoami(&s, &token).expect("the bound token authenticates");
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0],
        "holder"
    );
    let uid = ok(
        &s,
        &["get", "pod", "holder", "-o", "jsonpath={.metadata.uid}"],
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-uid"][0],
        uid
    );

    let err = failure(
        &s,
        &[
            "create",
            "token",
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=holder",
            "--bound-object-uid=not-the-uid",
        ],
    );
    assert!(err.contains("does not match the UID in record"), "{err}");
    let err = failure(
        &s,
        &[
            "create",
            "token",
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=absent",
        ],
    );
    assert!(err.contains("pods \"absent\" not found"), "{err}");

    ok(
        &s,
        &["delete", "pod", "holder", "--grace-period=0", "--force"],
    );
    eventually("the pod's token to stop authenticating", || {
        whoami(&s, &token).is_err_and(|e| e.contains("Unauthorized"))
    });
}

#[test]
fn pods_get_their_service_account_mounted_unless_they_opt_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    ok(&s, &["create", "namespace", "apps"]);
    apply(
        &s,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: puller, namespace: apps}\nimagePullSecrets: [{name: regcred}]\n",
    );
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: mounted, namespace: apps}\nspec:\n  serviceAccountName: puller\n  initContainers: [{name: init, image: busybox}]\n  containers: [{name: a, image: busybox}, {name: b, image: busybox}]\n",
    );
    let pod: Value = serde_json::from_str(&ok(
        &s,
        &["get", "pod", "mounted", "-n", "apps", "-o", "json"],
    ))
    .expect("pod json");
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccount"], "puller");
    assert_eq!(spec["imagePullSecrets"][0]["name"], "regcred");
    let volumes = spec["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    let volume = volumes[0]["name"].as_str().expect("volume name");
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    let sources = volumes[0]["projected"]["sources"].to_string();
    assert!(
        sources.contains("\"expirationSeconds\":3607")
            && sources.contains("kube-root-ca.crt")
            && sources.contains("metadata.namespace"),
        "{sources}"
    );
    for c in [
        &spec["initContainers"][0],
        &spec["containers"][0],
        &spec["containers"][1],
    ] {
        assert_eq!(c["volumeMounts"][0]["name"], volume, "{c}");
        assert_eq!(
            c["volumeMounts"][0]["mountPath"],
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    }

    // Opting out on the pod, or on the service account.
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bare, namespace: apps}\nspec:\n  automountServiceAccountToken: false\n  containers: [{name: a, image: busybox}]\n",
    );
    apply(
        &s,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: quiet, namespace: apps}\nautomountServiceAccountToken: false\n",
    );
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: quiet, namespace: apps}\nspec:\n  serviceAccountName: quiet\n  containers: [{name: a, image: busybox}]\n",
    );
    for name in ["bare", "quiet"] {
        let volumes = ok(
            &s,
            &[
                "get",
                "pod",
                name,
                "-n",
                "apps",
                "-o",
                "jsonpath={.spec.volumes}",
            ],
        );
        assert!(volumes.trim().is_empty(), "{name}: {volumes}");
    }

    // A service account that does not exist is refused.
    let o = kubectl(
        &s,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: orphan, namespace: apps}\nspec:\n  serviceAccountName: ghost\n  containers: [{name: a, image: busybox}]\n",
        ),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("forbidden")
            && err.contains("error looking up service account apps/ghost"),
        "{err}"
    );
}

#[test]
fn every_namespace_gets_the_root_ca_and_the_issuer_is_discoverable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    let ca = std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).expect("ca.crt");
    ok(&s, &["create", "namespace", "fresh"]);
    let published = || {
        let o = kubectl(
            &s,
            &[
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-n",
                "fresh",
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
            None,
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    eventually("kube-root-ca.crt in the new namespace", || {
        published().trim() == ca.trim()
    });
    // Edits are put back, and so is a deleted ConfigMap.
    ok(
        &s,
        &[
            "patch",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "fresh",
            "-p",
            r#"{"data":{"ca.crt":"tampered"}}"#,
        ],
    );
    eventually("the edited CA to be restored", || {
        published().trim() == ca.trim()
    });
    ok(
        &s,
        &["delete", "configmap", "kube-root-ca.crt", "-n", "fresh"],
    );
    eventually("the deleted CA to be published again", || {
        published().trim() == ca.trim()
    });

    let config: Value = serde_json::from_str(&ok(
        &s,
        &["get", "--raw", "/.well-known/openid-configuration"],
    ))
    .expect("openid configuration");
    assert_eq!(
        config["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    let jwks: Value =
        serde_json::from_str(&ok(&s, &["get", "--raw", "/openid/v1/jwks"])).expect("jwks");
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    // The key id in a token's header is the published key's.
    let token = create_token(&s, &["default", "-n", "fresh"]);
    let header = token.split('.').next().expect("jwt header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url header"))
            .expect("header json");
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(header["alg"], "ES256");
}
