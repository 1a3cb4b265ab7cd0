//! CustomResourceDefinitions served as kube-apiserver serves them, driven by the real kubectl:
//! a definition is established and its kind served (discovery, short names, the `all`
//! category, printer columns), objects are pruned, defaulted and checked against the schema,
//! the status and scale subresources split what each write may change, deleting the
//! definition deletes its objects, and a restarted server serves what it served before.

use std::process::Output;

use tug_testkit::kubectl::text;
use tug_testkit::kubectl::{eventually, jsonpath_ok, kubectl, ok, ok_with_input};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

const WIDGETS: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Ready
      type: string
      jsonPath: .status.conditions[?(@.type=="Ready")].status
    - name: Size
      type: integer
      priority: 1
      jsonPath: .spec.size
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [color]
            properties:
              color:
                type: string
                enum: [red, blue]
              replicas:
                type: integer
                minimum: 0
                default: 1
              size:
                type: integer
                maximum: 10
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

const WIDGET: &str = r#"apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
spec:
  color: red
  size: 3
"#;

/// Requires that kubectl failed and said each of `wants`.
fn refused_saying(o: &Output, wants: &[&str]) {
    let said = text(o);
    assert!(!o.status.success(), "{said}");
    for want in wants {
        assert!(said.contains(want), "missing {want:?} in {said}");
    }
}

/// Applies the definition server-side and waits until kubectl sees it established.
fn define(s: &TugServer) {
    ok_with_input(s, &["apply", "--server-side", "-f", "-"], Some(WIDGETS));
    ok(
        s,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=20s",
            "crd/widgets.example.com",
        ],
    );
}

#[test]
fn a_definition_is_established_and_its_kind_served_like_a_built_in_one() {
    let s = TugServer::start(tug_bin!());
    define(&s);
    assert_eq!(
        jsonpath_ok(
            &s,
            &["crd", "widgets.example.com"],
            "{.status.acceptedNames.kind} {.status.storedVersions} {.status.conditions[*].type}"
        ),
        "Widget [\"v1\"] NamesAccepted Established"
    );
    // Its group-version is registered as a local APIService, as kube-apiserver registers it.
    eventually("the APIService v1.example.com", || {
        tug_testkit::kubectl::jsonpath(
            &s,
            &["apiservice", "v1.example.com"],
            "{.spec.groupPriorityMinimum}/{.spec.versionPriority}/{.status.conditions[0].reason}",
        ) == "1000/100/Local"
    });
    let resources = ok(&s, &["api-resources", "--api-group=example.com"]);
    assert!(
        resources.contains("widgets") && resources.contains("wd") && resources.contains("Widget"),
        "{resources}"
    );

    // Created, pruned and defaulted; listed with the definition's columns.
    let created = kubectl(&s, &["create", "-f", "-", "-o", "json"], Some(WIDGET));
    assert!(created.status.success(), "{}", text(&created));
    let w: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
    assert_eq!(w["spec"]["replicas"], 1, "the schema's default: {w}");
    let table = ok(&s, &["get", "wd"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "COLOR", "REPLICAS", "READY"], "{table}");
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row, ["w1", "red", "1"], "a null cell prints empty: {table}");
    let wide = ok(&s, &["get", "widgets", "-o", "wide"]);
    assert!(
        wide.lines().next().is_some_and(|h| h.contains("SIZE")),
        "{wide}"
    );
    let explained = ok(&s, &["explain", "widgets.spec"]);
    assert!(
        explained.contains("KIND:       Widget")
            && explained.contains("color")
            && explained.contains("<string>"),
        "{explained}"
    );
    let everything = ok(&s, &["get", "all"]);
    assert!(everything.contains("widget.example.com/w1"), "{everything}");

    // The schema refuses, with kube-openapi's paths and words.
    let bad = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w2\nspec:\n  color: pink\n  size: 11\n",
        ),
    );
    refused_saying(
        &bad,
        &[
            "The Widget \"w2\" is invalid",
            "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\"",
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
        ],
    );
    let unknown = kubectl(
        &s,
        &["create", "--validate=strict", "-f", "-"],
        Some(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w3\nspec:\n  color: red\n  shade: dark\n",
        ),
    );
    assert!(
        !unknown.status.success() && text(&unknown).contains("unknown field \"spec.shade\""),
        "{}",
        text(&unknown)
    );

    // Status and spec are written apart.
    ok(
        &s,
        &[
            "patch",
            "widget",
            "w1",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":7}}"#,
        ],
    );
    assert_eq!(jsonpath_ok(&s, &["widget", "w1"], "{.status.replicas}"), "");
    ok(
        &s,
        &[
            "patch",
            "widget",
            "w1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":2,"conditions":[{"type":"Ready","status":"True"}]},"spec":{"color":"blue"}}"#,
        ],
    );
    assert_eq!(
        jsonpath_ok(&s, &["widget", "w1"], "{.status.replicas} {.spec.color}"),
        "2 red"
    );
    ok(&s, &["scale", "widget", "w1", "--replicas=5"]);
    assert_eq!(jsonpath_ok(&s, &["widget", "w1"], "{.spec.replicas}"), "5");
    let scale = ok(
        &s,
        &[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
        ],
    );
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("scale json");
    assert_eq!(
        (
            scale["spec"]["replicas"].clone(),
            scale["status"]["replicas"].clone()
        ),
        (5.into(), 2.into())
    );
    let row = ok(&s, &["get", "wd", "w1", "--no-headers"]);
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["w1", "red", "5", "True"]
    );

    // The garbage collector knows custom owners: a Deployment owned by a widget stays while
    // the widget does and goes with it.
    ok_with_input(
        &s,
        &["create", "-f", "-"],
        Some(&WIDGET.replace("w1", "owner")),
    );
    let uid = jsonpath_ok(&s, &["widget", "owner"], "{.metadata.uid}");
    let owned = format!(
        r#"{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "owned",
            "ownerReferences": [{{"apiVersion": "example.com/v1", "kind": "Widget", "name": "owner", "uid": "{uid}"}}]}},
          "spec": {{"selector": {{"matchLabels": {{"app": "owned"}}}}, "template": {{"metadata": {{"labels": {{"app": "owned"}}}},
            "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}}}}}"#
    );
    ok_with_input(&s, &["create", "-f", "-"], Some(&owned));
    std::thread::sleep(std::time::Duration::from_secs(3));
    ok(&s, &["get", "deployment", "owned"]);
    ok(&s, &["delete", "widget", "owner"]);
    eventually("the owned Deployment is collected", || {
        !kubectl(&s, &["get", "deployment", "owned"], None)
            .status
            .success()
    });

    // Deleting the definition deletes its objects first, then stops serving the kind.
    ok(
        &s,
        &["delete", "crd", "widgets.example.com", "--timeout=30s"],
    );
    eventually("the kind is no longer served", || {
        let o = kubectl(&s, &["get", "--raw", "/apis/example.com/v1"], None);
        !o.status.success()
    });
    eventually("the APIService goes with the definition", || {
        !kubectl(&s, &["get", "apiservice", "v1.example.com"], None)
            .status
            .success()
    });
    let gone = kubectl(&s, &["get", "crd", "widgets.example.com"], None);
    assert!(text(&gone).contains("NotFound"), "{}", text(&gone));
}

#[test]
fn bad_definitions_and_conflicting_names_are_refused() {
    let s = TugServer::start(tug_bin!());
    let bad = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(
            &WIDGETS
                .replace("name: widgets.example.com", "name: gadgets.example.com")
                .replace("storage: true", "storage: false"),
        ),
    );
    refused_saying(
        &bad,
        &[
            "The CustomResourceDefinition \"gadgets.example.com\" is invalid",
            "metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group",
            "must have exactly one version marked as storage version",
        ],
    );
    define(&s);
    // A second definition asking for a held short name is stored but not accepted.
    let clash = WIDGETS
        .replace("widgets", "gadgets")
        .replace("kind: Widget", "kind: Gadget");
    ok_with_input(&s, &["create", "-f", "-"], Some(&clash));
    eventually("the clash is reported", || {
        jsonpath_ok(
            &s,
            &["crd", "gadgets.example.com"],
            r#"{.status.conditions[?(@.type=="NamesAccepted")].status}/{.status.conditions[?(@.type=="NamesAccepted")].message}"#,
        ) == "False/\"wd\" is already in use"
    });
    let kinds = ok(
        &s,
        &["api-resources", "--api-group=example.com", "--no-headers"],
    );
    assert!(!kinds.contains("gadgets"), "{kinds}");
}

#[test]
fn a_restarted_server_serves_the_kinds_it_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut s = TugServer::start_in(tug_bin!(), &data);
    define(&s);
    ok_with_input(&s, &["create", "-f", "-"], Some(WIDGET));
    s.kill();
    let s = TugServer::start_in(tug_bin!(), &data);
    assert_eq!(jsonpath_ok(&s, &["widgets", "w1"], "{.spec.color}"), "red");
    // A default added to the definition shows on the object stored before it, in a get, a
    // list and a watch's first event.
    ok(
        &s,
        &[
            "patch",
            "crd",
            "widgets.example.com",
            "--type=json",
            "-p",
            r#"[{"op": "add", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/shape", "value": {"type": "string", "default": "round"}}]"#,
        ],
    );
    eventually("the new default is served", || {
        tug_testkit::kubectl::jsonpath(&s, &["widgets", "w1"], "{.spec.shape}") == "round"
    });
    assert_eq!(
        jsonpath_ok(&s, &["widgets"], "{.items[0].spec.shape}"),
        "round"
    );
    let watched = kubectl(
        &s,
        &[
            "get",
            "widgets",
            "--watch",
            "--request-timeout=2s",
            "-o",
            "jsonpath={.spec.shape}",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&watched.stdout), "round");
}

const RULED: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: autoscalers.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: autoscalers
    kind: Autoscaler
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas must not exceed maxReplicas
            - rule: "!has(oldSelf.target) || self.target == oldSelf.target"
              message: target is immutable
              fieldPath: .target
              reason: FieldValueForbidden
            properties:
              target: {type: string}
              minReplicas: {type: integer}
              maxReplicas:
                type: integer
                x-kubernetes-validations:
                - rule: self <= 100
                  messageExpression: "'at most 100 replicas, not ' + string(self)"
"#;

#[test]
fn validation_rules_refuse_what_they_refuse_with_their_messages() {
    let s = TugServer::start(tug_bin!());
    // A rule that does not compile refuses the definition.
    let broken = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&RULED.replace("self <= 100", "self <=")),
    );
    let said = text(&broken);
    assert!(
        !broken.status.success()
            && said.contains("spec.validation.openAPIV3Schema.properties[spec].properties[maxReplicas].x-kubernetes-validations[0].rule: Invalid value: ")
            && said.contains("compilation error"),
        "{said}"
    );
    ok_with_input(&s, &["create", "-f", "-"], Some(RULED));
    ok(
        &s,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=20s",
            "crd/autoscalers.example.com",
        ],
    );
    let object = |min: i64, max: i64, target: &str| {
        format!(
            "apiVersion: example.com/v1\nkind: Autoscaler\nmetadata:\n  name: a\nspec:\n  target: {target}\n  minReplicas: {min}\n  maxReplicas: {max}\n"
        )
    };
    let refused = kubectl(&s, &["create", "-f", "-"], Some(&object(150, 120, "web")));
    refused_saying(
        &refused,
        &[
            "The Autoscaler \"a\" is invalid",
            "spec: Invalid value: minReplicas must not exceed maxReplicas",
            "spec.maxReplicas: Invalid value: 120: at most 100 replicas, not 120",
        ],
    );
    ok_with_input(&s, &["create", "-f", "-"], Some(&object(1, 3, "web")));
    // A transition rule: the target may not change.
    let changed = kubectl(&s, &["apply", "-f", "-"], Some(&object(1, 4, "api")));
    let said = text(&changed);
    assert!(
        !changed.status.success() && said.contains("spec.target: Forbidden: target is immutable"),
        "{said}"
    );
    ok_with_input(&s, &["apply", "-f", "-"], Some(&object(2, 4, "web")));
    assert_eq!(
        jsonpath_ok(&s, &["autoscaler", "a"], "{.spec.minReplicas}"),
        "2"
    );
}
