//! RBAC through the real kubectl: the default policy, Roles and bindings deciding what a
//! service account may do, `kubectl auth can-i` (access and rules reviews), impersonation,
//! privilege-escalation prevention, the aggregated admin/edit/view roles, anonymous access,
//! and the default policy coming back after a restart.

use serde_json::Value;
use tug_testkit::kubectl::text;
use tug_testkit::kubectl::{apply, eventually, kubectl, kubectl_with_token, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn server(dir: &tempfile::TempDir) -> TugServer {
    TugServer::start_in(tug_bin!(), &dir.path().join("data"))
}

/// `kubectl auth can-i ARGS` as the admin: "yes" or "no".
fn can_i(s: &TugServer, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let o = kubectl(s, &all, None);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Runs kubectl as `token` and expects a refusal; returns what kubectl printed.
fn refused(s: &TugServer, token: &str, args: &[&str]) -> String {
    let o = kubectl_with_token(s, token, args);
    assert!(
        !o.status.success(),
        "kubectl {args:?} succeeded: {}",
        text(&o)
    );
    text(&o)
}

fn token_of(s: &TugServer, ns: &str, sa: &str) -> String {
    ok(s, &["create", "token", sa, "-n", ns]).trim().to_string()
}

#[test]
fn roles_and_bindings_decide_what_a_service_account_may_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    ok(&s, &["create", "namespace", "team"]);
    ok(&s, &["create", "namespace", "other"]);
    ok(&s, &["create", "serviceaccount", "robot", "-n", "team"]);
    ok(
        &s,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "team",
            "--from-literal=a=1",
        ],
    );
    ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "hidden",
            "-n",
            "team",
            "--from-literal=a=1",
        ],
    );
    let robot = token_of(&s, "team", "robot");
    let user = "system:serviceaccount:team:robot";

    // Nothing is granted yet: the refusal names the user, verb, resource, group and namespace.
    let err = refused(&s, &robot, &["get", "configmaps", "-n", "team"]);
    assert!(
        err.contains(&format!(
            "configmaps is forbidden: User \"{user}\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team\""
        )),
        "{err}"
    );
    // Discovery and self reviews are every authenticated user's (system:discovery,
    // system:basic-user).
    let o = kubectl_with_token(&s, &robot, &["api-versions"]);
    assert!(
        o.status.success() && text(&o).contains("rbac.authorization.k8s.io/v1"),
        "{}",
        text(&o)
    );

    ok(
        &s,
        &[
            "create",
            "role",
            "reader",
            "-n",
            "team",
            "--verb=get,list,watch",
            "--resource=configmaps",
        ],
    );
    ok(
        &s,
        &[
            "create",
            "rolebinding",
            "robot-reads",
            "-n",
            "team",
            "--role=reader",
            "--serviceaccount=team:robot",
        ],
    );
    eventually("the binding takes effect", || {
        kubectl_with_token(&s, &robot, &["get", "configmaps", "-n", "team"])
            .status
            .success()
    });
    let got = ok_with_token(
        &s,
        &robot,
        &[
            "get",
            "configmap",
            "settings",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.a}",
        ],
    );
    assert_eq!(got, "1");
    // Not secrets, not another namespace, not writes.
    let err = refused(&s, &robot, &["get", "secret", "hidden", "-n", "team"]);
    assert!(
        err.contains(&format!("secrets \"hidden\" is forbidden: User \"{user}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team\"")),
        "{err}"
    );
    refused(&s, &robot, &["get", "configmaps", "-n", "other"]);
    refused(&s, &robot, &["create", "configmap", "new", "-n", "team"]);
    // A binding to a role that does not exist says so in the refusal.
    ok(
        &s,
        &[
            "create",
            "rolebinding",
            "dangling",
            "-n",
            "other",
            "--role=ghost",
            "--serviceaccount=team:robot",
        ],
    );
    eventually("the dangling binding is seen", || {
        text(&kubectl_with_token(
            &s,
            &robot,
            &["get", "pods", "-n", "other"],
        ))
        .contains("RBAC: role.rbac.authorization.k8s.io \"ghost\" not found")
    });

    // can-i as the admin impersonating the robot, and the robot's own rules.
    assert_eq!(
        can_i(
            &s,
            &["list", "configmaps", "-n", "team", &format!("--as={user}")]
        ),
        "yes"
    );
    assert_eq!(
        can_i(
            &s,
            &["list", "secrets", "-n", "team", &format!("--as={user}")]
        ),
        "no"
    );
    let rules = ok(
        &s,
        &[
            "auth",
            "can-i",
            "--list",
            "-n",
            "team",
            &format!("--as={user}"),
        ],
    );
    let line = rules
        .lines()
        .find(|l| l.starts_with("configmaps "))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("[get list watch]"), "{rules}");
    assert!(
        rules
            .lines()
            .any(|l| l.contains("selfsubjectaccessreviews.authorization.k8s.io")),
        "{rules}"
    );
    assert!(
        rules
            .lines()
            .any(|l| l.contains("/api/*") && l.contains("[get]")),
        "{rules}"
    );

    // Impersonation needs the impersonate verb.
    let err = refused(
        &s,
        &robot,
        &["get", "configmaps", "-n", "team", "--as=alice"],
    );
    assert!(
        err.contains(&format!("users \"alice\" is forbidden: User \"{user}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope")),
        "{err}"
    );
    ok(
        &s,
        &[
            "create",
            "clusterrole",
            "impersonate-alice",
            "--verb=impersonate",
            "--resource=users",
            "--resource-name=alice",
        ],
    );
    ok(
        &s,
        &[
            "create",
            "clusterrolebinding",
            "robot-impersonates",
            "--clusterrole=impersonate-alice",
            "--serviceaccount=team:robot",
        ],
    );
    eventually("the robot may act as alice", || {
        let o = kubectl_with_token(
            &s,
            &robot,
            &[
                "auth",
                "whoami",
                "--as=alice",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        );
        String::from_utf8_lossy(&o.stdout) == "alice"
    });
    let err = refused(&s, &robot, &["get", "pods", "--as=bob"]);
    assert!(err.contains("users \"bob\" is forbidden"), "{err}");
    // Groups without a user are a bad request.
    let err = refused(&s, &robot, &["get", "pods", "--as-group=devs"]);
    assert!(err.contains("without impersonating a user"), "{err}");
}

fn ok_with_token(s: &TugServer, token: &str, args: &[&str]) -> String {
    let o = kubectl_with_token(s, token, args);
    assert!(o.status.success(), "kubectl {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn can_i_answers_for_users_by_impersonation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    ok(&s, &["create", "namespace", "dev"]);
    assert_eq!(
        can_i(&s, &["create", "deployments", "-n", "dev", "--as=alice"]),
        "no"
    );
    assert_eq!(can_i(&s, &["create", "deployments"]), "yes");
    ok(
        &s,
        &[
            "create",
            "rolebinding",
            "alice-edits",
            "-n",
            "dev",
            "--clusterrole=edit",
            "--user=alice",
        ],
    );
    eventually("alice may create deployments in dev", || {
        can_i(&s, &["create", "deployments", "-n", "dev", "--as=alice"]) == "yes"
    });
    assert_eq!(
        can_i(
            &s,
            &["create", "deployments", "-n", "default", "--as=alice"]
        ),
        "no"
    );
    // edit aggregates view (and system:aggregate-to-edit), but grants no RBAC writes.
    assert_eq!(
        can_i(&s, &["get", "pods/log", "-n", "dev", "--as=alice"]),
        "yes"
    );
    assert_eq!(
        can_i(&s, &["create", "roles", "-n", "dev", "--as=alice"]),
        "no"
    );
    // Group membership counts, and a group alone is refused impersonation without a user.
    ok(
        &s,
        &[
            "create",
            "clusterrolebinding",
            "devs-view",
            "--clusterrole=view",
            "--group=devs",
        ],
    );
    eventually("members of devs may list pods everywhere", || {
        can_i(&s, &["list", "pods", "-A", "--as=carol", "--as-group=devs"]) == "yes"
    });
    assert_eq!(can_i(&s, &["list", "pods", "-A", "--as=carol"]), "no");

    // A SubjectAccessReview answers for anyone, with the binding that allowed it.
    let review = ok_with_input(
        &s,
        // kubectl cannot validate review kinds against this server's OpenAPI yet.
        &["create", "--validate=false", "-f", "-", "-o", "json"],
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"alice","resourceAttributes":{"namespace":"dev","verb":"create","group":"apps","resource":"deployments"}}}"#,
    );
    let review: Value = serde_json::from_str(&review).expect("json");
    assert_eq!(review["status"]["allowed"], true, "{review}");
    assert_eq!(
        review["status"]["reason"],
        "RBAC: allowed by RoleBinding \"alice-edits/dev\" of ClusterRole \"edit\" to User \"alice\""
    );
    let o = kubectl(
        &s,
        &["create", "--validate=false", "-f", "-"],
        Some(
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"alice"}}"#,
        ),
    );
    assert!(
        text(&o).contains("spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"),
        "{}",
        text(&o)
    );
}

fn ok_with_input(s: &TugServer, args: &[&str], input: &str) -> String {
    tug_testkit::kubectl::ok_with_input(s, args, Some(input))
}

#[test]
fn nobody_grants_more_than_they_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    ok(&s, &["create", "namespace", "team"]);
    ok(&s, &["create", "serviceaccount", "lead", "-n", "team"]);
    // The lead manages Roles and RoleBindings in team (but may not escalate or bind), and may
    // read configmaps there.
    apply(
        &s,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-manager, namespace: team}
rules:
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings], verbs: [get, list, watch, create, update, patch, delete]}
- {apiGroups: [""], resources: [configmaps], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lead-manages, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-manager}
subjects: [{kind: ServiceAccount, name: lead, namespace: team}]
"#,
    );
    let lead = token_of(&s, "team", "lead");
    eventually("the lead may manage roles", || {
        kubectl_with_token(&s, &lead, &["get", "roles", "-n", "team"])
            .status
            .success()
    });
    let user = "system:serviceaccount:team:lead";
    // A Role within the lead's own rights is fine; a broader one is refused.
    ok_with_token(
        &s,
        &lead,
        &[
            "create",
            "role",
            "cm-reader",
            "-n",
            "team",
            "--verb=get",
            "--resource=configmaps",
        ],
    );
    let err = refused(
        &s,
        &lead,
        &[
            "create",
            "role",
            "secret-reader",
            "-n",
            "team",
            "--verb=get,list",
            "--resource=secrets",
        ],
    );
    assert!(
        err.contains(&format!(
            "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"{user}\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:team\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}}"
        )),
        "{err}"
    );
    // Nor may it widen a role it may update.
    let err = refused(
        &s,
        &lead,
        &[
            "patch",
            "role",
            "cm-reader",
            "-n",
            "team",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["pods"],"verbs":["delete"]}}]"#,
        ],
    );
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // Binding cluster-admin is refused; binding a role it covers is fine.
    let err = refused(
        &s,
        &lead,
        &[
            "create",
            "rolebinding",
            "take-over",
            "-n",
            "team",
            "--clusterrole=cluster-admin",
            &format!("--user={user}"),
        ],
    );
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"take-over\" is forbidden: user")
            && err.contains("{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"),
        "{err}"
    );
    ok_with_token(
        &s,
        &lead,
        &[
            "create",
            "rolebinding",
            "readers",
            "-n",
            "team",
            "--role=cm-reader",
            "--user=dana",
        ],
    );
    // The bind verb on one ClusterRole lets it bind that role without holding it.
    apply(
        &s,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: may-bind-view, namespace: team}
rules:
- {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind], resourceNames: [view]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lead-binds-view, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: may-bind-view}
subjects: [{kind: ServiceAccount, name: lead, namespace: team}]
"#,
    );
    eventually("the lead may bind view", || {
        kubectl_with_token(
            &s,
            &lead,
            &[
                "create",
                "rolebinding",
                "viewers",
                "-n",
                "team",
                "--clusterrole=view",
                "--user=erin",
            ],
        )
        .status
        .success()
    });
    refused(
        &s,
        &lead,
        &[
            "create",
            "rolebinding",
            "editors",
            "-n",
            "team",
            "--clusterrole=edit",
            "--user=erin",
        ],
    );
    // An aggregationRule needs every permission there is, even for one who may create
    // ClusterRoles.
    ok(
        &s,
        &[
            "create",
            "clusterrole",
            "clusterrole-maker",
            "--verb=create",
            "--resource=clusterroles",
        ],
    );
    ok(
        &s,
        &[
            "create",
            "clusterrolebinding",
            "lead-makes",
            "--clusterrole=clusterrole-maker",
            &format!("--user={user}"),
        ],
    );
    let file = dir.path().join("aggregated.yaml");
    std::fs::write(
        &file,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: gather-all}\naggregationRule:\n  clusterRoleSelectors: [{matchLabels: {any: \"true\"}}]\n",
    )
    .expect("write");
    let file = file.display().to_string();
    eventually("the refusal names the aggregationRule", || {
        text(&kubectl_with_token(&s, &lead, &["create", "-f", &file])).contains(
            "clusterroles.rbac.authorization.k8s.io \"gather-all\" is forbidden: must have cluster-admin privileges to use the aggregationRule",
        )
    });
}

#[test]
fn the_default_policy_is_there_aggregated_and_back_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut s = TugServer::start_in(tug_bin!(), &data);
    let bindings = ok(&s, &["get", "clusterrolebindings", "-o", "name"]);
    for name in [
        "cluster-admin",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:kube-scheduler",
        "system:controller:deployment-controller",
    ] {
        assert!(
            bindings.contains(&format!(
                "clusterrolebinding.rbac.authorization.k8s.io/{name}\n"
            )),
            "{name}: {bindings}"
        );
    }
    let labels = ok(
        &s,
        &[
            "get",
            "clusterrole",
            "cluster-admin",
            "-o",
            "jsonpath={.metadata.labels.kubernetes\\.io/bootstrapping} {.metadata.annotations.rbac\\.authorization\\.kubernetes\\.io/autoupdate}",
        ],
    );
    assert_eq!(labels, "rbac-defaults true");
    // admin, edit and view are filled by the aggregation controller, and follow a new role.
    eventually("view holds the aggregated rules", || {
        ok(&s, &["get", "clusterrole", "view", "-o", "json"]).contains("\"pods/log\"")
    });
    apply(
        &s,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- {apiGroups: [example.com], resources: [widgets], verbs: [get, list, watch]}
"#,
    );
    for role in ["view", "edit", "admin"] {
        eventually(&format!("{role} aggregates widgets"), || {
            ok(&s, &["get", "clusterrole", role, "-o", "json"]).contains("\"widgets\"")
        });
    }
    // Deleted defaults come back at the next start; a role marked autoupdate=false is kept
    // as its owner left it; removed rules of other defaults come back.
    ok(&s, &["delete", "clusterrole", "system:basic-user"]);
    ok(&s, &["delete", "clusterrolebinding", "system:discovery"]);
    ok(
        &s,
        &[
            "annotate",
            "clusterrole",
            "system:heapster",
            "--overwrite",
            "rbac.authorization.kubernetes.io/autoupdate=false",
        ],
    );
    ok(
        &s,
        &[
            "patch",
            "clusterrole",
            "system:heapster",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/rules","value":[]}]"#,
        ],
    );
    ok(
        &s,
        &[
            "patch",
            "clusterrole",
            "system:kube-dns",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/rules","value":[]}]"#,
        ],
    );
    s.kill();
    let s = TugServer::start_in(tug_bin!(), &data);
    ok(&s, &["get", "clusterrole", "system:basic-user"]);
    ok(&s, &["get", "clusterrolebinding", "system:discovery"]);
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "clusterrole",
                "system:heapster",
                "-o",
                "jsonpath={.rules}"
            ]
        ),
        "[]"
    );
    let dns = ok(&s, &["get", "clusterrole", "system:kube-dns", "-o", "json"]);
    assert!(
        dns.contains("\"endpoints\"") && dns.contains("\"watch\""),
        "{dns}"
    );
}

#[test]
fn anonymous_requests_reach_only_the_public_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    // curl without credentials: the status code and the body.
    let anonymous = |path: &str| {
        let o = std::process::Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(s.data_dir.join("pki/ca.crt"))
            .arg(format!("{}{path}", s.url))
            .output()
            .expect("run curl (apt-get install curl)");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_string(), body.to_string())
    };
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        let (code, body) = anonymous(path);
        assert_eq!(code, "200", "{path}: {body}");
    }
    let (code, body) = anonymous("/api");
    assert_eq!(code, "403", "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(
        status["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/api\""
    );
    assert_eq!(status["details"], serde_json::json!({}), "{body}");
    let (code, body) = anonymous("/api/v1/namespaces/default/pods");
    assert_eq!(code, "403", "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(status["details"], serde_json::json!({"kind": "pods"}));
    // A token nobody issued is 401, not anonymous.
    let o = kubectl_with_token(&s, "not-a-token", &["get", "--raw", "/healthz"]);
    assert!(text(&o).contains("Unauthorized"), "{}", text(&o));
}

#[test]
fn tug_kubeconfig_issues_a_user_whom_rbac_then_decides_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    let file = dir.path().join("alice.kubeconfig");
    let o = std::process::Command::new(tug_bin!())
        .args([
            "kubeconfig",
            "--user",
            "alice",
            "--group",
            "dev",
            "--expires",
            "2h",
            "--data-dir",
        ])
        .arg(&s.data_dir)
        .arg("-o")
        .arg(&file)
        .output()
        .expect("tug kubeconfig");
    assert!(o.status.success(), "{}", text(&o));
    let alice = |args: &[&str]| tug_testkit::kubectl::kubectl_with_config(&file, args, None);
    let who = alice(&["auth", "whoami", "-o", "json"]);
    let who: Value = serde_json::from_slice(&who.stdout).expect("whoami json");
    assert_eq!(who["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["dev", "system:authenticated"])
    );
    let denied = alice(&["get", "pods"]);
    assert!(
        text(&denied).contains("pods is forbidden: User \"alice\" cannot list resource \"pods\""),
        "{}",
        text(&denied)
    );
    ok(
        &s,
        &[
            "create",
            "rolebinding",
            "dev-view",
            "--clusterrole=view",
            "--group=dev",
        ],
    );
    eventually("the dev group may list pods", || {
        alice(&["get", "pods"]).status.success()
    });
    // Without a duration it can read, or a CA, nothing is issued.
    let bad = std::process::Command::new(tug_bin!())
        .args([
            "kubeconfig",
            "--user",
            "bob",
            "--expires",
            "soon",
            "--data-dir",
        ])
        .arg(&s.data_dir)
        .output()
        .expect("tug kubeconfig");
    assert!(
        !bad.status.success() && text(&bad).contains("--expires"),
        "{}",
        text(&bad)
    );
    let none = std::process::Command::new(tug_bin!())
        .args(["kubeconfig", "--user", "bob", "--data-dir"])
        .arg(dir.path().join("nowhere"))
        .output()
        .expect("tug kubeconfig");
    assert!(
        !none.status.success() && text(&none).contains("no cluster CA"),
        "{}",
        text(&none)
    );
}
