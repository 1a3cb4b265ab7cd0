//! The Endpoints and EndpointSlice controllers, as one: for every Service with a selector,
//! the pods it selects, by readiness, become its Endpoints (`addresses` and
//! `notReadyAddresses`) and one EndpointSlice (`kubernetes.io/service-name`, with ready,
//! serving and terminating conditions). Target ports given by name resolve against each pod's
//! container ports. Both are written with server-side apply, only when they change; the slice
//! is owned by the Service, so it goes with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::common::{Error, Shared, owner_ref, pod_ready};

const MANAGER: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice, as Kubernetes' default.
const MAX_PER_SLICE: usize = 100;

fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if sel.is_empty() || svc.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Runs the controller until the task is dropped.
pub async fn run(client: kube::Client, shared: Shared) {
    crate::common::run_following_pods::<Service, _, _>(client, shared, selects, reconcile).await;
}

/// The port a Service port reaches on a pod: its targetPort, looked up among the pod's
/// container ports when it is a name.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

async fn reconcile(
    client: kube::Client,
    svc: Arc<Service>,
    ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    if svc.metadata.deletion_timestamp.is_some() || !has_selector {
        return Ok(Action::await_change());
    }
    let ports: Vec<ServicePort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| selects(&svc, p))
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .is_some_and(|ip| !ip.is_empty())
        })
        .collect();
    pods.sort_by_key(|p| p.metadata.name.clone());

    // Endpoints: pods grouped by the ports they resolve to (one subset per group).
    let mut subsets: BTreeMap<Vec<i32>, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    let mut slice_endpoints = Vec::new();
    for p in &pods {
        let resolved: Vec<i32> = ports
            .iter()
            .map(|sp| target_port(sp, p).unwrap_or(0))
            .collect();
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let target =
            json!({"kind": "Pod", "namespace": ns, "name": p.metadata.name, "uid": p.metadata.uid});
        // A pod whose subdomain names this Service is known by its hostname here (its DNS
        // record `HOSTNAME.SERVICE.NS.svc.DOMAIN`).
        let hostname = p
            .spec
            .as_ref()
            .filter(|s| s.subdomain.as_deref() == Some(name.as_str()))
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty());
        let mut address = json!({"ip": ip, "nodeName": node, "targetRef": target});
        if let Some(h) = &hostname {
            address["hostname"] = json!(h);
        }
        let terminating = p.metadata.deletion_timestamp.is_some();
        let ready = pod_ready(p) && !terminating;
        let entry = subsets.entry(resolved).or_default();
        if ready {
            entry.0.push(address);
        } else if !terminating {
            entry.1.push(address);
        }
        let mut endpoint = json!({
            "addresses": [ip], "nodeName": node, "targetRef": target,
            "conditions": {"ready": ready, "serving": pod_ready(p), "terminating": terminating},
        });
        if let Some(h) = hostname {
            endpoint["hostname"] = json!(h);
        }
        slice_endpoints.push(endpoint);
    }
    let subsets: Vec<Value> = subsets
        .into_iter()
        .filter(|(_, (ready, not_ready))| !ready.is_empty() || !not_ready.is_empty())
        .map(|(resolved, (ready, not_ready))| {
            let ports: Vec<Value> = ports
                .iter()
                .zip(&resolved)
                .map(|(sp, port)| json!({"name": sp.name, "port": port, "protocol": sp.protocol.clone().unwrap_or("TCP".into())}))
                .collect();
            let mut s = json!({"ports": ports});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect();
    let pp = PatchParams::apply(MANAGER).force();
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    });
    let ep_api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let current = ep_api.get_opt(&name).await?;
    let current_subsets = current
        .and_then(|e| serde_json::to_value(e.subsets.unwrap_or_default()).ok())
        .unwrap_or(json!([]));
    if current_subsets != normalized(&endpoints["subsets"]) {
        ep_api.patch(&name, &pp, &Patch::Apply(&endpoints)).await?;
    }

    // The EndpointSlice: ports as the Service names them, resolved from the first pod.
    let slice_ports: Vec<Value> = ports
        .iter()
        .map(|sp| {
            let port = pods.first().and_then(|p| target_port(sp, p));
            json!({"name": sp.name.clone().unwrap_or_default(), "port": port, "protocol": sp.protocol.clone().unwrap_or("TCP".into())})
        })
        .collect();
    // Slices of at most 100 endpoints (Kubernetes' default maxEndpointsPerSlice), at least
    // one; slices past the last are deleted.
    let slice_api: Api<EndpointSlice> = Api::namespaced(client, &ns);
    let chunks: Vec<&[Value]> = if slice_endpoints.is_empty() {
        vec![&[]]
    } else {
        slice_endpoints.chunks(MAX_PER_SLICE).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let slice_name = format!("{name}-tug-{i}");
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": ns,
                "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": MANAGER},
                "ownerReferences": owner_ref(svc.as_ref()).map(|r| vec![r])},
            "addressType": "IPv4",
            "endpoints": chunk,
            "ports": slice_ports,
        });
        let current = slice_api.get_opt(&slice_name).await?;
        let unchanged = current.is_some_and(|s| {
            serde_json::to_value(&s.endpoints).ok() == Some(normalized(&slice["endpoints"]))
                && serde_json::to_value(s.ports.unwrap_or_default()).ok()
                    == Some(normalized(&slice["ports"]))
        });
        if !unchanged {
            slice_api
                .patch(&slice_name, &pp, &Patch::Apply(&slice))
                .await?;
        }
    }
    let ours = slice_api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await?;
    for extra in ours.items {
        let n = extra.metadata.name.clone().unwrap_or_default();
        let index = n
            .strip_prefix(&format!("{name}-tug-"))
            .and_then(|i| i.parse::<usize>().ok());
        if index.is_some_and(|i| i >= chunks.len()) {
            slice_api.delete(&n, &Default::default()).await?;
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// A JSON value as the API would return it (nulls dropped), for comparing with what is stored.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}
