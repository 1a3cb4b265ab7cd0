//! Authentication through the real kubectl: OIDC tokens from an identity provider the test
//! runs (a real key pair, discovery and keys over HTTPS), the static token file, bootstrap
//! tokens, and the node join token's bootstrap identity. Accepted tokens are the users their
//! credentials map to (`kubectl auth whoami`); forged, expired, wrong-audience tokens are 401.

use serde_json::{Value, json};
use tug_testkit::kubectl::text;
use tug_testkit::kubectl::{apply, kubectl_with_token, ok};
use tug_testkit::oidc::Provider;
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

/// `kubectl auth whoami -o json` as `token`: the user's name and groups.
fn whoami(s: &TugServer, token: &str) -> (String, Vec<String>, Value) {
    let o = kubectl_with_token(s, token, &["auth", "whoami", "-o", "json"]);
    assert!(o.status.success(), "whoami failed: {}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("whoami JSON");
    let info = &v["status"]["userInfo"];
    let groups = info["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (
        info["username"].as_str().unwrap_or_default().to_string(),
        groups,
        info.clone(),
    )
}

/// Asserts kubectl as `token` is refused as unauthenticated (401).
fn unauthorized(s: &TugServer, token: &str, why: &str) {
    let o = kubectl_with_token(s, token, &["get", "namespaces"]);
    let out = text(&o);
    assert!(
        !o.status.success() && out.contains("Unauthorized"),
        "{why}: expected 401, kubectl said: {out}"
    );
}

#[test]
fn oidc_static_and_bootstrap_tokens_authenticate_users() {
    let idp = Provider::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": {"url": idp.issuer, "audiences": ["tugboat"], "certificateAuthority": idp.ca_pem},
            "claimValidationRules": [{"expression": "claims.hd == 'example.com'", "message": "only example.com accounts"}],
            "claimMappings": {
                "username": {"claim": "email", "prefix": "oidc:"},
                "groups": {"claim": "groups", "prefix": "oidc:"},
                "uid": {"claim": "sub"},
            },
        }],
    });
    let config_path = dir.path().join("authn.yaml");
    std::fs::write(&config_path, config.to_string()).expect("write config");
    let tokens_path = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens_path,
        "static-token-for-carol,carol,uid-carol,\"ops,dev\"\n",
    )
    .expect("write token file");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &[
            "--authentication-config",
            config_path.to_str().expect("path"),
            "--token-auth-file",
            tokens_path.to_str().expect("path"),
        ],
    );

    // OIDC: a token from the provider is the mapped user.
    let claims = json!({"sub": "u-1234", "aud": "tugboat", "email": "alice@example.com",
                        "email_verified": true, "hd": "example.com", "groups": ["dev", "oncall"]});
    let good = idp.token(claims.clone());
    let (user, groups, info) = whoami(&s, &good);
    assert_eq!(user, "oidc:alice@example.com");
    assert_eq!(groups, ["oidc:dev", "oidc:oncall", "system:authenticated"]);
    assert_eq!(info["uid"], "u-1234");
    // RBAC applies to the mapped groups.
    let o = kubectl_with_token(&s, &good, &["get", "configmaps", "-n", "default"]);
    assert!(
        text(&o).contains(
            "User \"oidc:alice@example.com\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        ),
        "{}",
        text(&o)
    );
    ok(
        &s,
        &[
            "create",
            "rolebinding",
            "dev-view",
            "--clusterrole=view",
            "--group=oidc:dev",
            "-n",
            "default",
        ],
    );
    let o = kubectl_with_token(&s, &good, &["get", "configmaps", "-n", "default"]);
    assert!(o.status.success(), "view through the group: {}", text(&o));

    // A bad signature, another audience, an expired token, a failed claim rule: 401.
    unauthorized(&s, &idp.forged_token(claims.clone()), "forged signature");
    let mut other = claims.clone();
    other["aud"] = json!("someone-else");
    unauthorized(&s, &idp.token(other), "wrong audience");
    let mut expired = claims.clone();
    expired["exp"] = json!(1_000_000_000);
    unauthorized(&s, &idp.token(expired), "expired");
    let mut foreign = claims.clone();
    foreign["hd"] = json!("elsewhere.org");
    unauthorized(&s, &idp.token(foreign), "claim validation rule");
    let mut unverified = claims;
    unverified["email_verified"] = json!(false);
    unauthorized(&s, &idp.token(unverified), "unverified email");

    // The static token file.
    let (user, groups, info) = whoami(&s, "static-token-for-carol");
    assert_eq!(user, "carol");
    assert_eq!(groups, ["ops", "dev", "system:authenticated"]);
    assert_eq!(info["uid"], "uid-carol");
    unauthorized(&s, "static-token-for-dave", "a token not in the file");

    // Bootstrap tokens: Secrets in kube-system.
    let b64 = |v: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(v)
    };
    let secret = |id: &str, expiration: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
               "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
               "data": {"token-id": b64(id), "token-secret": b64("0123456789abcdef"),
                        "usage-bootstrap-authentication": b64("true"),
                        "auth-extra-groups": b64("system:bootstrappers:tug:workers"),
                        "expiration": b64(expiration)}})
        .to_string()
    };
    apply(&s, &secret("abcdef", "2999-01-01T00:00:00Z"));
    apply(&s, &secret("zzzzzz", "2020-01-01T00:00:00Z"));
    let (user, groups, _) = whoami(&s, "abcdef.0123456789abcdef");
    assert_eq!(user, "system:bootstrap:abcdef");
    assert_eq!(
        groups,
        [
            "system:bootstrappers",
            "system:bootstrappers:tug:workers",
            "system:authenticated"
        ]
    );
    unauthorized(&s, "abcdef.0123456789abcdee", "wrong bootstrap secret");
    unauthorized(&s, "zzzzzz.0123456789abcdef", "expired bootstrap token");
    // A bootstrap token may ask for node certificates and nothing else.
    let o = kubectl_with_token(&s, "abcdef.0123456789abcdef", &["get", "secrets", "-A"]);
    assert!(
        text(&o).contains("User \"system:bootstrap:abcdef\" cannot list resource \"secrets\""),
        "{}",
        text(&o)
    );
    let o = kubectl_with_token(&s, "abcdef.0123456789abcdef", &["get", "csr"]);
    assert!(o.status.success(), "bootstrappers list CSRs: {}", text(&o));

    // Node client certificates are approved only for requesters who may create
    // certificatesigningrequests/nodeclient: a bootstrap token's user may, a user allowed
    // only to create requests (system:node-bootstrapper) may not.
    ok(
        &s,
        &[
            "create",
            "clusterrolebinding",
            "carol-csr",
            "--clusterrole=system:node-bootstrapper",
            "--user=carol",
        ],
    );
    let request = |name: &str, node: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let pem = p.serialize_request(&key).expect("csr").pem().expect("pem");
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
               "metadata": {"name": name},
               "spec": {"request": b64(&pem), "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                        "usages": ["digital signature", "client auth"]}})
        .to_string()
    };
    for (token, name) in [
        ("abcdef.0123456789abcdef", "by-bootstrapper"),
        ("static-token-for-carol", "by-carol"),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("csr.json");
        std::fs::write(&file, request(name, "worker-9")).expect("write");
        let o = kubectl_with_token(&s, token, &["create", "-f", file.to_str().expect("path")]);
        assert!(o.status.success(), "{name}: {}", text(&o));
    }
    let approved = |name: &str| {
        ok(
            &s,
            &[
                "get",
                "csr",
                name,
                "-o",
                "jsonpath={.status.conditions[*].type}",
            ],
        ) == "Approved"
    };
    tug_testkit::kubectl::eventually("the bootstrapper's request to be approved", || {
        approved("by-bootstrapper")
    });
    let issued = ok(
        &s,
        &[
            "get",
            "csr",
            "by-bootstrapper",
            "-o",
            "jsonpath={.status.certificate}",
        ],
    );
    assert!(!issued.is_empty(), "approved but not signed");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!approved("by-carol"), "carol's request was approved");
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "csr",
                "by-carol",
                "-o",
                "jsonpath={.status.certificate}"
            ]
        ),
        ""
    );
    // An administrator may still approve it, and then it is signed.
    ok(&s, &["certificate", "approve", "by-carol"]);
    tug_testkit::kubectl::eventually("carol's approved request to be signed", || {
        !ok(
            &s,
            &[
                "get",
                "csr",
                "by-carol",
                "-o",
                "jsonpath={.status.certificate}",
            ],
        )
        .is_empty()
    });

    // The server's node token is a bootstrap identity too, not an administrator.
    let node_token = std::fs::read_to_string(s.data_dir.join("node-token")).expect("node token");
    let (user, groups, _) = whoami(&s, node_token.trim());
    assert_eq!(user, "system:bootstrap:node-token");
    assert_eq!(groups, ["system:bootstrappers", "system:authenticated"]);
    let o = kubectl_with_token(&s, node_token.trim(), &["get", "nodes"]);
    assert!(
        text(&o).contains("cannot list resource \"nodes\""),
        "{}",
        text(&o)
    );
}

#[test]
fn a_bad_authentication_config_stops_the_server_with_the_field_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("authn.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: http://idp.example\n    audiences: [x]\n  claimMappings:\n    username: {claim: sub, prefix: ''}\n",
    )
    .expect("write");
    let out = std::process::Command::new(tug_bin!())
        .args([
            "server",
            "--disable-agent",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--authentication-config")
        .arg(&config)
        .output()
        .expect("tug runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the server started: {stderr}");
    assert!(
        stderr.contains("jwt[0]")
            && stderr.contains(
                "issuer.url: Invalid value: \"http://idp.example\": URL scheme must be https"
            ),
        "{stderr}"
    );
}

/// A kubeconfig for `s` presenting `cert`/`key` (PEM).
fn cert_kubeconfig(
    s: &TugServer,
    dir: &std::path::Path,
    cert: &str,
    key: &str,
) -> std::path::PathBuf {
    use base64::Engine;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let ca = std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).expect("CA");
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": s.url, "certificate-authority-data": b64(&ca)}}],
        "users": [{"name": "u", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    });
    let path = dir.join(format!("kubeconfig-{}", rand_name()));
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    path
}

fn rand_name() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn client_cert(
    user: &str,
    signer: Option<(&rcgen::Issuer<'_, rcgen::KeyPair>, bool)>,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, user);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = match signer {
        Some((issuer, expired)) => {
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            p.signed_by(&key, issuer).expect("sign")
        }
        None => p.self_signed(&key).expect("self-sign"),
    };
    (cert.pem(), key.serialize_pem())
}

#[test]
fn client_certificates_from_another_ca_or_expired_are_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let ca_cert = std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).expect("CA cert");
    let ca_key = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(s.data_dir.join("pki/ca.key")).expect("CA key"),
    )
    .expect("CA key");
    let cluster_ca = rcgen::Issuer::from_ca_cert_pem(&ca_cert, ca_key).expect("issuer");
    let other_key = rcgen::KeyPair::generate().expect("key");
    let mut other = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    other
        .distinguished_name
        .push(rcgen::DnType::CommonName, "another-ca");
    let other_ca = rcgen::Issuer::new(other, other_key);

    let run = |cert: &(String, String)| {
        let kc = cert_kubeconfig(&s, dir.path(), &cert.0, &cert.1);
        tug_testkit::kubectl::kubectl_with_config(
            &kc,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
            None,
        )
    };
    let good = run(&client_cert("dora", Some((&cluster_ca, false))));
    assert!(good.status.success(), "{}", text(&good));
    assert_eq!(String::from_utf8_lossy(&good.stdout), "dora");
    for (what, cert) in [
        ("another CA", client_cert("dora", Some((&other_ca, false)))),
        ("self-signed", client_cert("dora", None)),
        ("expired", client_cert("dora", Some((&cluster_ca, true)))),
    ] {
        let o = run(&cert);
        assert!(
            !o.status.success() && text(&o).contains("Unauthorized"),
            "{what}: expected 401, kubectl said: {}",
            text(&o)
        );
    }
}
