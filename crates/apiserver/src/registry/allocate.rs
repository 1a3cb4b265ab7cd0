//! Service address allocation at create, as kube-apiserver does: a ClusterIP from the Service
//! range (10.96.0.0/12) and a nodePort from 30000–32767 for NodePort and LoadBalancer
//! Services, either the one asked for (if free and in range) or a random free one. What is in
//! use is read from the stored Services each time, under one lock, so a deleted Service frees
//! its addresses at once and a restart needs no separate repair.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use tug_api::{ApiError, Cause, catalog, meta};

use super::{ListOptions, Registry};

use tug_api::cluster::SERVICE_NET;

/// The nodePort range, inclusive.
pub const NODE_PORTS: (i64, i64) = (30000, 32767);

fn random() -> u64 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn invalid(obj: &Value, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "",
        "Service",
        meta::name(obj),
        vec![Cause::new("FieldValueInvalid", field, message)],
    )
}

impl Registry {
    /// The ClusterIPs and nodePorts held by stored Services.
    async fn services_in_use(&self) -> Result<(HashSet<Ipv4Addr>, HashSet<i64>), ApiError> {
        let r = catalog::lookup("", "v1", "services")
            .ok_or_else(|| ApiError::internal("services missing from the catalog"))?;
        let list = self.list(r, None, &ListOptions::default()).await?;
        let (mut ips, mut ports) = (HashSet::new(), HashSet::new());
        for svc in list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let spec = &svc["spec"];
            let listed = spec["clusterIPs"].as_array().cloned().unwrap_or_default();
            for ip in listed.iter().chain(std::iter::once(&spec["clusterIP"])) {
                if let Some(ip) = ip.as_str().and_then(|s| s.parse().ok()) {
                    ips.insert(ip);
                }
            }
            for p in spec["ports"].as_array().into_iter().flatten() {
                if let Some(n) = p["nodePort"].as_i64() {
                    ports.insert(n);
                }
            }
        }
        Ok((ips, ports))
    }

    /// Gives a Service being created its ClusterIP and nodePorts. The caller holds
    /// `service_lock` until the Service is stored.
    pub(super) async fn allocate_service(&self, obj: &mut Value) -> Result<(), ApiError> {
        let kind = obj["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        if kind == "ExternalName" {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            return Ok(());
        }
        let (ips, ports) = self.services_in_use().await?;
        let asked = obj["spec"]["clusterIP"]
            .as_str()
            .or_else(|| obj["spec"]["clusterIPs"][0].as_str())
            .unwrap_or_default()
            .to_string();
        let ip = if asked == "None" {
            "None".to_string()
        } else if asked.is_empty() {
            let size = SERVICE_NET.size();
            // Skip the network address, the first 16 (for well-known static addresses such as
            // the DNS Service) and the broadcast address.
            let span = size - 17;
            let start = random() % span;
            (0..span)
                .filter_map(|i| SERVICE_NET.nth(16 + (start + i) % span))
                .find(|ip| !ips.contains(ip))
                .ok_or_else(|| {
                    ApiError::internal("failed to allocate a ClusterIP: the Service range is full")
                })?
                .to_string()
        } else {
            let parsed: Ipv4Addr = asked.parse().map_err(|_| {
                invalid(
                    obj,
                    "spec.clusterIPs[0]",
                    format!("{asked}: must be a valid IP address"),
                )
            })?;
            if !SERVICE_NET.contains(parsed) {
                return Err(invalid(
                    obj,
                    "spec.clusterIPs",
                    format!(
                        "failed to allocate IP {asked}: the provided IP ({asked}) is not in the valid range. The range of valid IPs is {SERVICE_NET}",
                    ),
                ));
            }
            if ips.contains(&parsed) {
                return Err(invalid(
                    obj,
                    "spec.clusterIPs",
                    format!("failed to allocate IP {asked}: provided IP is already allocated"),
                ));
            }
            asked
        };
        let mut taken = ports;
        let wants_ports = kind == "NodePort" || kind == "LoadBalancer";
        let name = meta::name(obj).to_string();
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        if ip != "None" {
            spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
            spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        }
        if !wants_ports {
            return Ok(());
        }
        let (lo, hi) = NODE_PORTS;
        for (i, port) in spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = format!("spec.ports[{i}].nodePort");
            let bad = |message: String| {
                ApiError::invalid(
                    "",
                    "Service",
                    &name,
                    vec![Cause::new("FieldValueInvalid", &field, message)],
                )
            };
            let n = match port["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(n) if !(lo..=hi).contains(&n) => {
                    return Err(bad(format!(
                        "{n}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                    )));
                }
                Some(n) if taken.contains(&n) => {
                    return Err(bad(format!("{n}: provided port is already allocated")));
                }
                Some(n) => n,
                None => {
                    let span = (hi - lo + 1) as u64;
                    let start = random() % span;
                    (0..span)
                        .map(|k| lo + ((start + k) % span) as i64)
                        .find(|p| !taken.contains(p))
                        .ok_or_else(|| {
                            ApiError::internal("failed to allocate a nodePort: the range is full")
                        })?
                }
            };
            taken.insert(n);
            port["nodePort"] = json!(n);
        }
        Ok(())
    }
}
