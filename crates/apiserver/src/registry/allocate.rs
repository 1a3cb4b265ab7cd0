//! Service address allocation at create, as kube-apiserver does: a ClusterIP from the Service
//! range (10.96.0.0/12) and a nodePort from 30000–32767 for NodePort and LoadBalancer
//! Services, either the one asked for (if free and in range) or a random free one. What is in
//! use is read from the stored Services each time, under one lock, so a deleted Service frees
//! its addresses at once and a restart needs no separate repair. Servers sharing one store
//! could pick the same address at the same moment, so each pick is also claimed in the store
//! (a key created only if absent, on a one-minute lease, long enough for the Service to be
//! stored and seen by every server): a pick another server claimed first is not used.

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

/// Where claims are kept.
const CLAIMS: &str = "/tugboat/claims/services/";
/// How long a claim on an address is kept.
const CLAIM_SECONDS: i64 = 60;
/// How long a claim holds against another Service: far longer than a stored Service takes
/// to reach every server's cache.
const CLAIM_FRESH_MS: i64 = 5_000;

impl Registry {
    /// Claims `what` (`ip/10.96.0.7`, `nodeport/30080`) for the Service `owner` (ns/name)
    /// being created; false when another Service claimed it within the last few seconds.
    /// The caller has checked that no stored Service holds it, so an older claim of another
    /// Service is stale (that Service was deleted, or never stored) and is taken over.
    async fn claim(&self, what: &str, owner: &str) -> Result<bool, ApiError> {
        use tug_store::{Compare, CompareOp, CompareTarget, PutRequest, Txn, TxnOp};
        let store_error = |e: tug_store::Error| ApiError::internal(format!("claiming {what}: {e}"));
        let key = format!("{CLAIMS}{what}");
        let now = jiff::Timestamp::now().as_millisecond();
        let value = json!({"owner": owner, "at": now}).to_string();
        let put = |target: CompareTarget, lease: i64| {
            let mut put = PutRequest::new(key.clone(), value.clone());
            put.lease = lease;
            Txn {
                compare: vec![Compare::new(key.clone(), CompareOp::Equal, target)],
                success: vec![TxnOp::Put(put)],
                failure: Vec::new(),
            }
        };
        let lease = self
            .store
            .lease_grant(CLAIM_SECONDS)
            .await
            .map_err(store_error)?;
        let mut target = CompareTarget::CreateRevision(0);
        for _ in 0..2 {
            let resp = self
                .store
                .txn(put(target.clone(), lease.id))
                .await
                .map_err(store_error)?;
            if resp.succeeded {
                return Ok(true);
            }
            let held = self
                .store
                .range(tug_store::KeyRange::key(key.clone()), Default::default())
                .await
                .map_err(store_error)?;
            let Some(kv) = held.kvs.first() else {
                continue;
            };
            let claim: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let fresh = now - claim["at"].as_i64().unwrap_or(0) < CLAIM_FRESH_MS;
            if claim["owner"] == owner {
                return Ok(true);
            }
            if fresh {
                break;
            }
            target = CompareTarget::ModRevision(kv.mod_revision);
        }
        let _ = self.store.lease_revoke(lease.id).await;
        Ok(false)
    }

    /// Drops the claims of Service `owner` (ns/name), once it is deleted: its addresses are
    /// free at once, as kube-apiserver frees them.
    pub(super) async fn release_claims(&self, owner: &str) {
        use tug_store::{Compare, CompareOp, CompareTarget, DeleteRequest, KeyRange, Txn, TxnOp};
        let Ok(held) = self
            .store
            .range(KeyRange::prefix(CLAIMS), Default::default())
            .await
        else {
            return;
        };
        for kv in held.kvs {
            let claim: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            if claim["owner"] != owner {
                continue;
            }
            let _ = self
                .store
                .txn(Txn {
                    compare: vec![Compare::new(
                        kv.key.clone(),
                        CompareOp::Equal,
                        CompareTarget::ModRevision(kv.mod_revision),
                    )],
                    success: vec![TxnOp::Delete(DeleteRequest {
                        range: KeyRange::key(kv.key),
                        prev_kv: false,
                    })],
                    failure: Vec::new(),
                })
                .await;
        }
    }

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
        let owner = format!(
            "{}/{}",
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            meta::name(obj)
        );
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
            let mut picked = None;
            for ip in (0..span)
                .filter_map(|i| SERVICE_NET.nth(16 + (start + i) % span))
                .filter(|ip| !ips.contains(ip))
            {
                if self.claim(&format!("ip/{ip}"), &owner).await? {
                    picked = Some(ip);
                    break;
                }
            }
            picked
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
            if ips.contains(&parsed) || !self.claim(&format!("ip/{parsed}"), &owner).await? {
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
                Some(n)
                    if taken.contains(&n)
                        || !self.claim(&format!("nodeport/{n}"), &owner).await? =>
                {
                    return Err(bad(format!("{n}: provided port is already allocated")));
                }
                Some(n) => n,
                None => {
                    let span = (hi - lo + 1) as u64;
                    let start = random() % span;
                    let mut picked = None;
                    for p in (0..span)
                        .map(|k| lo + ((start + k) % span) as i64)
                        .filter(|p| !taken.contains(p))
                    {
                        if self.claim(&format!("nodeport/{p}"), &owner).await? {
                            picked = Some(p);
                            break;
                        }
                    }
                    picked.ok_or_else(|| {
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
