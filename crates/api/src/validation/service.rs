//! Service checks (kube-apiserver's `ValidateService`): ports, their names and numbers,
//! type, session affinity and ExternalName.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::field::{Errors, Path, items, text};
use super::{label_messages, port_name_messages, port_number_messages, subdomain_messages};

const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const AFFINITIES: [&str; 2] = ["ClientIP", "None"];
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

/// Checks a Service.
pub fn validate_service(obj: &Value, e: &mut Errors) {
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    let at = Path::new("spec");
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let headless = text(spec, "clusterIP") == "None";
    let ports = items(spec, "ports");
    if ports.is_empty() && !headless && kind != "ExternalName" {
        e.required(&at.child("ports"), "");
    }
    if kind == "ExternalName" {
        let name = text(spec, "externalName");
        if name.is_empty() {
            e.required(&at.child("externalName"), "");
        } else {
            let clean = name.strip_suffix('.').unwrap_or(name);
            for m in subdomain_messages(clean) {
                e.invalid(&at.child("externalName"), &Value::from(clean), &m);
            }
        }
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = at.child("ports").index(i);
        let name = text(p, "name");
        if ports.len() > 1 && name.is_empty() {
            e.required(&path.child("name"), "");
        } else if !name.is_empty() {
            for m in label_messages(name) {
                e.invalid(&path.child("name"), &Value::from(name), &m);
            }
            if !names.insert(name.to_string()) {
                e.duplicate(&path.child("name"), &Value::from(name));
            }
        }
        let port = p.get("port").cloned().unwrap_or(json!(0));
        for m in port_number_messages(&port) {
            e.invalid(&path.child("port"), &port, m);
        }
        match p.get("protocol") {
            None => e.required(&path.child("protocol"), ""),
            v => e.one_of(&path.child("protocol"), v, &PROTOCOLS),
        }
        match p.get("targetPort") {
            Some(Value::String(s)) => {
                for m in port_name_messages(s) {
                    e.invalid(&path.child("targetPort"), &Value::from(s.as_str()), m);
                }
            }
            Some(v @ Value::Number(_)) => {
                for m in port_number_messages(v) {
                    e.invalid(&path.child("targetPort"), v, m);
                }
            }
            _ => {}
        }
        if let Some(v) = p
            .get("nodePort")
            .filter(|v| v.as_i64().is_some_and(|n| n != 0))
        {
            if !matches!(kind, "NodePort" | "LoadBalancer") {
                e.forbidden(
                    &path.child("nodePort"),
                    &format!("may not be used when `type` is '{kind}'"),
                );
            } else {
                for m in port_number_messages(v) {
                    e.invalid(&path.child("nodePort"), v, m);
                }
            }
        }
    }
    e.one_of(&at.child("type"), spec.get("type"), &TYPES);
    e.one_of(
        &at.child("sessionAffinity"),
        spec.get("sessionAffinity"),
        &AFFINITIES,
    );
}
