//! networking.k8s.io checks (kube-apiserver's networking validation): Ingress rules, paths
//! and backends, and NetworkPolicy peers, ports and policy types.

use serde_json::Value;

use super::field::{Errors, Path, items, text};
use super::selector::validate_label_selector;
use super::{port_name_messages, port_number_messages, subdomain_messages};

const PATH_TYPES: [&str; 3] = ["Exact", "ImplementationSpecific", "Prefix"];
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

/// Checks an Ingress.
pub fn validate_ingress(obj: &Value, e: &mut Errors) {
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    let at = Path::new("spec");
    let rules = items(spec, "rules");
    let default = spec.get("defaultBackend").filter(|b| !b.is_null());
    if rules.is_empty() && default.is_none() {
        e.invalid(
            &at,
            &Value::Null,
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(b) = default {
        validate_backend(b, &at.child("defaultBackend"), e);
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = at.child("rules").index(i);
        let host = text(rule, "host");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                e.invalid(
                    &path.child("host"),
                    &Value::from(host),
                    "must be a DNS name, not an IP address",
                );
            } else {
                let name = host.strip_prefix("*.").unwrap_or(host);
                let messages = if host.starts_with("*.") || !host.contains('*') {
                    subdomain_messages(name)
                } else {
                    vec![WILDCARD.to_string()]
                };
                for m in messages {
                    let m = if host.starts_with("*.") {
                        WILDCARD.to_string()
                    } else {
                        m
                    };
                    e.invalid(&path.child("host"), &Value::from(host), &m);
                }
            }
        }
        let Some(http) = rule.get("http").filter(|h| !h.is_null()) else {
            continue;
        };
        let paths = items(http, "paths");
        let at_paths = path.child("http").child("paths");
        if paths.is_empty() {
            e.required(&at_paths, "");
        }
        for (j, p) in paths.iter().enumerate() {
            validate_path(p, &at_paths.index(j), e);
        }
    }
}

const WILDCARD: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn validate_path(p: &Value, at: &Path, e: &mut Errors) {
    let path = text(p, "path");
    match p.get("pathType").and_then(Value::as_str) {
        None | Some("") => e.required(&at.child("pathType"), "pathType must be specified"),
        Some(t) if !PATH_TYPES.contains(&t) => {
            e.not_supported(&at.child("pathType"), &Value::from(t), &PATH_TYPES)
        }
        Some("Exact" | "Prefix") => {
            if !path.starts_with('/') {
                e.invalid(
                    &at.child("path"),
                    &Value::from(path),
                    "must be an absolute path",
                );
            }
            for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                if path.contains(bad) {
                    e.invalid(
                        &at.child("path"),
                        &Value::from(path),
                        &format!("must not contain '{bad}'"),
                    );
                }
            }
            for bad in ["/..", "/."] {
                if path.ends_with(bad) {
                    e.invalid(
                        &at.child("path"),
                        &Value::from(path),
                        &format!("cannot end with '{bad}'"),
                    );
                }
            }
        }
        Some(_) => {
            if !path.is_empty() && !path.starts_with('/') {
                e.invalid(
                    &at.child("path"),
                    &Value::from(path),
                    "must be an absolute path",
                );
            }
        }
    }
    match p.get("backend") {
        Some(b) if !b.is_null() => validate_backend(b, &at.child("backend"), e),
        _ => e.invalid(
            &at.child("backend"),
            &Value::from(""),
            "resource or service backend is required",
        ),
    }
}

fn validate_backend(b: &Value, at: &Path, e: &mut Errors) {
    let service = b.get("service").filter(|s| !s.is_null());
    let resource = b.get("resource").filter(|s| !s.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => e.invalid(
            at,
            &Value::from(""),
            "cannot set both resource and service backends",
        ),
        (None, Some(_)) => {}
        (None, None) => e.invalid(
            at,
            &Value::from(""),
            "resource or service backend is required",
        ),
        (Some(s), None) => {
            let svc = at.child("service");
            let name = text(s, "name");
            if name.is_empty() {
                e.required(&svc.child("name"), "");
            } else {
                for m in super::dns1035_messages(name) {
                    e.invalid(&svc.child("name"), &Value::from(name), &m);
                }
            }
            let port_name = s
                .pointer("/port/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let number = s
                .pointer("/port/number")
                .filter(|n| n.as_i64().is_some_and(|n| n != 0));
            match (port_name.is_empty(), number) {
                (false, Some(_)) => e.invalid(
                    at,
                    &Value::from(""),
                    "cannot set both port name & port number",
                ),
                (false, None) => {
                    for m in port_name_messages(port_name) {
                        e.invalid(&svc.child("port").child("name"), &Value::from(port_name), m);
                    }
                }
                (true, Some(n)) => {
                    for m in port_number_messages(n) {
                        e.invalid(&svc.child("port").child("number"), n, m);
                    }
                }
                (true, None) => e.required(at, "port name or number is required"),
            }
        }
    }
}

/// Checks a NetworkPolicy.
pub fn validate_network_policy(obj: &Value, e: &mut Errors) {
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    let at = Path::new("spec");
    if let Some(s) = spec.get("podSelector").filter(|s| !s.is_null()) {
        validate_label_selector(s, &at.child("podSelector"), e);
    }
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in items(spec, direction).iter().enumerate() {
            let path = at.child(direction).index(i);
            for (j, port) in items(rule, "ports").iter().enumerate() {
                validate_policy_port(port, &path.child("ports").index(j), e);
            }
            for (j, peer) in items(rule, peers).iter().enumerate() {
                validate_peer(peer, &path.child(peers).index(j), e);
            }
        }
    }
    let types = items(spec, "policyTypes");
    for (i, t) in types.iter().enumerate() {
        e.one_of(
            &at.child("policyTypes").index(i),
            Some(t),
            &["Ingress", "Egress"],
        );
    }
    if types.len() > 2 {
        e.invalid(
            &at.child("policyTypes"),
            &Value::Array(types.to_vec()),
            "may not specify more than two policyTypes",
        );
    }
}

fn validate_policy_port(port: &Value, at: &Path, e: &mut Errors) {
    e.one_of(&at.child("protocol"), port.get("protocol"), &PROTOCOLS);
    match port.get("port") {
        Some(n @ Value::Number(_)) => {
            for m in port_number_messages(n) {
                e.invalid(&at.child("port"), n, m);
            }
            if let Some(end) = port.get("endPort").filter(|v| !v.is_null())
                && end.as_i64() < n.as_i64()
            {
                // kube-apiserver shows the port here, not the end port.
                e.invalid(
                    &at.child("endPort"),
                    n,
                    "must be greater than or equal to `port`",
                );
            }
        }
        Some(Value::String(s)) => {
            for m in port_name_messages(s) {
                e.invalid(&at.child("port"), &Value::from(s.as_str()), m);
            }
            if port.get("endPort").is_some_and(|v| !v.is_null()) {
                e.forbidden(
                    &at.child("endPort"),
                    "may not be specified when `port` is non-numeric",
                );
            }
        }
        _ => {
            if port.get("endPort").is_some_and(|v| !v.is_null()) {
                e.forbidden(
                    &at.child("endPort"),
                    "may not be specified when `port` is not specified",
                );
            }
        }
    }
}

fn validate_peer(peer: &Value, at: &Path, e: &mut Errors) {
    let set = |k: &str| peer.get(k).is_some_and(|v| !v.is_null());
    let count = ["podSelector", "namespaceSelector", "ipBlock"]
        .iter()
        .filter(|k| set(k))
        .count();
    if count == 0 {
        e.required(at, "must specify a peer");
    } else if set("ipBlock") && count > 1 {
        e.forbidden(at, "may not specify both ipBlock and another peer");
    }
    for k in ["podSelector", "namespaceSelector"] {
        if let Some(s) = peer.get(k).filter(|s| !s.is_null()) {
            validate_label_selector(s, &at.child(k), e);
        }
    }
    if let Some(block) = peer.get("ipBlock").filter(|b| !b.is_null()) {
        let path = at.child("ipBlock");
        let cidr = text(block, "cidr");
        if cidr.is_empty() {
            e.required(&path.child("cidr"), "");
        } else if !is_cidr(cidr) {
            e.invalid(
                &path.child("cidr"),
                &Value::from(cidr),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            );
        }
        let outer = parse_cidr(cidr);
        for (i, x) in items(block, "except").iter().enumerate() {
            let inner = parse_cidr(x.as_str().unwrap_or_default());
            let subset = match (outer, inner) {
                (Some((a, ap)), Some((b, bp))) => bp > ap && same_prefix(a, b, ap),
                _ => false,
            };
            if !subset {
                e.invalid(
                    &path.child("except").index(i),
                    x,
                    "must be a strict subset of `cidr`",
                );
            }
        }
    }
}

/// Whether `s` is `ADDRESS/PREFIX` for IPv4 or IPv6.
fn is_cidr(s: &str) -> bool {
    parse_cidr(s).is_some()
}

/// `ADDRESS/PREFIX` as the address's bits (IPv4 in the low 32) and the prefix length.
fn parse_cidr(s: &str) -> Option<(u128, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    let prefix = prefix.parse::<u8>().ok()?;
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) if prefix <= 32 => Some(((u128::from(u32::from(a))) << 96, prefix)),
        std::net::IpAddr::V6(a) if prefix <= 128 => Some((u128::from(a), prefix)),
        _ => None,
    }
}

/// Whether `a` and `b` agree in their first `bits` bits.
fn same_prefix(a: u128, b: u128, bits: u8) -> bool {
    bits == 0 || (a ^ b) >> (128 - u32::from(bits)) == 0
}
