use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use super::decode;

/// Wraps a message in the envelope kubectl sends.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = super::MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

#[test]
fn a_deployment_round_trips_to_kubernetes_json() {
    let d = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("web".into()),
            namespace: Some(String::new()),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            creation_timestamp: Some(meta::Time {
                seconds: Some(-62135596800),
                nanos: Some(0),
            }),
            generation: Some(0),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::from([("app".into(), "web".into())]),
                ..Default::default()
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("25%".into()),
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: Some(String::new()),
                    }),
                }),
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: BTreeMap::from([("app".into(), "web".into())]),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("web".into()),
                        image: Some("nginx:1".into()),
                        ports: vec![core::ContainerPort {
                            container_port: Some(8080),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }],
                        resources: Some(core::ResourceRequirements {
                            limits: BTreeMap::from([(
                                "cpu".into(),
                                Quantity {
                                    string: Some("500m".into()),
                                },
                            )]),
                            ..Default::default()
                        }),
                        stdin: Some(false),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).expect("decodes");
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web",
                        "image": "nginx:1",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}}
                    }]}
                }
            }
        })
    );
}

#[test]
fn secrets_bytes_and_embedded_structs() {
    let s = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: Some("s".into()),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        data: BTreeMap::from([("k".into(), b"hunter2".to_vec())]),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let got = decode(&envelope("v1", "Secret", s.encode_to_vec())).expect("decodes");
    assert_eq!(got["data"]["k"], "aHVudGVyMg==");
    assert_eq!(got["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    // ConfigMapEnvSource embeds LocalObjectReference: JSON inlines its name.
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                env_from: vec![core::EnvFromSource {
                    config_map_ref: Some(core::ConfigMapEnvSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: Some("cfg".into()),
                        }),
                        optional: None,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&envelope("v1", "Pod", pod.encode_to_vec())).expect("decodes");
    assert_eq!(
        got["spec"]["containers"][0]["envFrom"][0]["configMapRef"],
        json!({"name": "cfg"})
    );
}

#[test]
fn delete_options_outside_the_catalog() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(5),
        propagation_policy: Some("Background".into()),
        ..Default::default()
    };
    let got = decode(&envelope("v1", "DeleteOptions", opts.encode_to_vec())).expect("decodes");
    assert_eq!(got["gracePeriodSeconds"], 5);
    assert_eq!(got["propagationPolicy"], "Background");
}

#[test]
fn a_token_request_keeps_its_bound_object_uid() {
    use k8s_pb::api::authentication::v1 as authn;
    let request = authn::TokenRequest {
        spec: Some(authn::TokenRequestSpec {
            audiences: vec!["vault".into()],
            expiration_seconds: Some(600),
            bound_object_ref: Some(authn::BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: Some("p".into()),
                u_id: Some("1234".into()),
            }),
        }),
        ..Default::default()
    };
    let got = decode(&envelope(
        "authentication.k8s.io/v1",
        "TokenRequest",
        request.encode_to_vec(),
    ))
    .expect("decodes");
    assert_eq!(got["spec"]["boundObjectRef"]["uid"], "1234", "{got}");
    assert_eq!(got["spec"]["expirationSeconds"], 600);
}

#[test]
fn damaged_or_unknown_bodies_are_errors_not_panics() {
    assert_eq!(decode(b"not protobuf").map_err(|e| e.code), Err(400));
    assert_eq!(decode(b"k8s\0\x0a\xff").map_err(|e| e.code), Err(400));
    let unknown_kind = envelope("example.com/v1", "Widget", Vec::new());
    assert_eq!(decode(&unknown_kind).map_err(|e| e.code), Err(415));
    let d = apps::Deployment::default().encode_to_vec();
    let mut body = envelope("apps/v1", "Deployment", d);
    body.extend([0x12, 0x05]); // a field cut short
    assert!(decode(&body).is_err());
    for n in 0..64u8 {
        // Arbitrary bytes never panic.
        let mut junk = super::MAGIC.to_vec();
        junk.extend((0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)));
        let _ = decode(&junk);
    }
}
