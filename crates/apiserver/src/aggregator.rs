//! API aggregation: an APIService whose `spec.service` is set is served by that Service. Its
//! group-version's requests are proxied to a ready endpoint over TLS (verified with the
//! APIService's `caBundle`, or not at all with `insecureSkipTLSVerify`), as the
//! `front-proxy-client` of the request-header CA, with the user in the `X-Remote-User`,
//! `X-Remote-Group` and `X-Remote-Extra-*` headers; its discovery is merged into `/apis` and
//! aggregated discovery; its `Available` condition follows the backend's discovery answer.
//! Deleting the APIService removes the group.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tug_api::validation::field::{items, text};
use tug_api::{ApiError, catalog, meta};

use crate::auth::Identity;
use crate::pki::Issued;
use crate::registry::{PatchType, Registry, WriteOptions};

/// One aggregated group-version and where it is served.
pub struct Backend {
    /// The APIService's name (`v1beta1.metrics.k8s.io`).
    name: String,
    group: String,
    version: String,
    namespace: String,
    service: String,
    port: u16,
    version_priority: i64,
    tls: Arc<rustls::ClientConfig>,
    /// The backend's APIResourceList, once fetched.
    resources: RwLock<Option<Value>>,
}

impl Backend {
    fn server_name(&self) -> String {
        format!("{}.{}.svc", self.service, self.namespace)
    }
}

/// The aggregation layer.
#[derive(Default)]
pub struct Aggregator {
    backends: crate::swap::Swap<Vec<Arc<Backend>>>,
    /// The front-proxy client certificate and the request-header CA.
    front_proxy: OnceLock<(Issued, String)>,
    resolver: crate::upstream::Resolver,
    changed: tokio::sync::Notify,
}

fn apiservices() -> anyhow::Result<&'static tug_api::Resource> {
    catalog::lookup("apiregistration.k8s.io", "v1", "apiservices")
        .ok_or_else(|| anyhow::anyhow!("apiservices missing from the catalog"))
}

impl Aggregator {
    /// Sets the client certificate proxied requests present and the request-header CA.
    pub fn set_front_proxy(&self, client: Issued, ca_pem: String) {
        let _ = self.front_proxy.set((client, ca_pem));
    }

    /// Publishes the request-header configuration extension API servers read
    /// (`kube-system/extension-apiserver-authentication`), follows the APIServices, and keeps
    /// their availability current.
    pub async fn start(
        self: &Arc<Self>,
        registry: &Registry,
        client_ca: &str,
    ) -> anyhow::Result<()> {
        if let Some((_, ca)) = self.front_proxy.get() {
            publish_authentication(registry, client_ca, ca).await?;
        }
        let me = self.clone();
        crate::mirror::follow(registry, apiservices()?, move |objects| me.set(objects)).await?;
        let (me, registry) = (self.clone(), registry.clone());
        tokio::spawn(async move {
            loop {
                me.refresh(&registry).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), me.changed.notified()).await;
            }
        });
        Ok(())
    }

    fn set(&self, objects: &crate::mirror::Objects) {
        let old = self.all();
        let mut backends = Vec::new();
        for obj in objects.values() {
            let spec = &obj["spec"];
            let Some(svc) = spec.get("service").filter(|s| s.is_object()) else {
                continue;
            };
            let name = meta::name(obj).to_string();
            let tls = match self.tls_for(spec) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(apiservice = %name, error = %e, "APIService TLS unusable");
                    continue;
                }
            };
            let resources = old
                .iter()
                .find(|b| b.name == name)
                .and_then(|b| b.resources.read().ok().and_then(|r| r.clone()));
            backends.push(Arc::new(Backend {
                name,
                group: text(spec, "group").to_string(),
                version: text(spec, "version").to_string(),
                namespace: text(svc, "namespace").to_string(),
                service: text(svc, "name").to_string(),
                port: svc["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(443),
                version_priority: spec["versionPriority"].as_i64().unwrap_or(0),
                tls,
                resources: RwLock::new(resources),
            }));
        }
        self.backends.set(backends);
        self.changed.notify_one();
    }

    fn tls_for(&self, spec: &Value) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        use base64::Engine;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if spec["insecureSkipTLSVerify"] == true {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::tls::SkipVerify(provider)))
        } else {
            let ca = base64::engine::general_purpose::STANDARD.decode(text(spec, "caBundle"))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
                roots.add(cert?)?;
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match self.front_proxy.get() {
            Some((client, _)) => {
                let certs = rustls_pemfile::certs(&mut client.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()?;
                let key = rustls_pemfile::private_key(&mut client.key.as_bytes())?
                    .ok_or_else(|| anyhow::anyhow!("no front-proxy key"))?;
                builder.with_client_auth_cert(certs, key)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn all(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.get()
    }

    /// The backend serving `group`/`version`, if it is aggregated.
    pub fn backend(&self, group: &str, version: &str) -> Option<Arc<Backend>> {
        self.all()
            .iter()
            .find(|b| b.group == group && b.version == version)
            .cloned()
    }

    /// The aggregated groups and their versions, highest version priority first.
    fn groups(&self) -> BTreeMap<String, Vec<(i64, String)>> {
        let mut out: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
        for b in self.all().iter() {
            out.entry(b.group.clone())
                .or_default()
                .push((b.version_priority, b.version.clone()));
        }
        for versions in out.values_mut() {
            versions.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        out
    }

    /// Adds the aggregated groups to an `APIGroupList`.
    pub fn extend_group_list(&self, doc: &mut Value) {
        if let Some(Value::Array(groups)) = doc.get_mut("groups") {
            for (g, versions) in self.groups() {
                if groups.iter().any(|e| e["name"] == g.as_str()) {
                    continue;
                }
                let vs: Vec<&str> = versions.iter().map(|(_, v)| v.as_str()).collect();
                groups.push(crate::discovery::group_entry(&g, &vs));
            }
        }
    }

    /// The `APIGroup` of an aggregated group.
    pub fn group(&self, group: &str) -> Option<Value> {
        let versions = self.groups().remove(group)?;
        let vs: Vec<&str> = versions.iter().map(|(_, v)| v.as_str()).collect();
        let mut g = crate::discovery::group_entry(group, &vs);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        Some(g)
    }

    /// Adds the aggregated groups, with the resources their servers listed, to aggregated
    /// discovery (`APIGroupDiscoveryList`).
    pub fn extend_aggregated(&self, doc: &mut Value) {
        let backends = self.all();
        let Some(Value::Array(items_out)) = doc.get_mut("items") else {
            return;
        };
        for (g, versions) in self.groups() {
            let versions: Vec<Value> = versions
                .iter()
                .filter_map(|(_, v)| backends.iter().find(|b| b.group == g && &b.version == v))
                .map(|b| {
                    let list = b.resources.read().ok().and_then(|r| r.clone());
                    let fresh = if list.is_some() { "Current" } else { "Stale" };
                    let resources = list
                        .map(|l| discovery_v2(&b.group, &b.version, &l))
                        .unwrap_or_default();
                    json!({"version": b.version, "resources": resources, "freshness": fresh})
                })
                .collect();
            // An aggregated group replaces a built-in one of the same name (metrics-server's
            // metrics.k8s.io over the server's own).
            items_out.retain(|i| i["metadata"]["name"] != g.as_str());
            items_out.push(
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}),
            );
        }
    }

    /// Proxies a request to the backend, as `identity`.
    pub async fn proxy(
        &self,
        registry: &Registry,
        backend: &Backend,
        identity: Option<&Identity>,
        req: Request,
    ) -> Result<Response, ApiError> {
        let unavailable = |e: String| {
            tracing::warn!(apiservice = %backend.name, error = %e, "aggregated API unreachable");
            ApiError::unavailable("service unavailable")
        };
        let addr = self
            .resolver
            .pick(registry, &backend.namespace, &backend.service, backend.port)
            .await
            .map_err(unavailable)?;
        let mut sender = crate::upstream::connect(&backend.tls, addr, &backend.server_name())
            .await
            .map_err(unavailable)?;
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ApiError::bad_request(format!("reading the request: {e}")))?
            .to_bytes();
        let mut out = http::Request::builder().method(parts.method).uri(
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
        );
        for (k, v) in &parts.headers {
            let name = k.as_str();
            let dropped = name == "authorization"
                || name == "host"
                || name == "connection"
                || name.starts_with("impersonate-")
                || name.starts_with("x-remote-");
            if !dropped {
                out = out.header(k, v);
            }
        }
        out = out.header(
            http::header::HOST,
            format!("{}:{}", backend.server_name(), backend.port),
        );
        if let Some(id) = identity {
            out = out.header("X-Remote-User", &id.user);
            for g in &id.groups {
                out = out.header("X-Remote-Group", g);
            }
            for (k, values) in &id.extra {
                let key: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
                for v in values {
                    out = out.header(format!("X-Remote-Extra-{key}"), v);
                }
            }
        }
        let out = out
            .body(Full::new(body))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = sender
            .send_request(out)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// Asks each backend for its discovery and records the answer in its APIService's
    /// `Available` condition.
    async fn refresh(&self, registry: &Registry) {
        for b in self.all().iter() {
            let (status, reason, message) = match self.discover(registry, b).await {
                Ok(list) => {
                    if let Ok(mut r) = b.resources.write() {
                        *r = Some(list);
                    }
                    ("True", "Passed", "all checks passed".to_string())
                }
                Err((reason, message)) => ("False", reason, message),
            };
            if let Err(e) = set_available(registry, &b.name, status, reason, &message).await {
                tracing::debug!(apiservice = %b.name, error = %e, "APIService status not written");
            }
        }
    }

    async fn discover(
        &self,
        registry: &Registry,
        b: &Backend,
    ) -> Result<Value, (&'static str, String)> {
        let svc_ref = format!("service/{} in {:?}", b.service, b.namespace);
        let addr = self
            .resolver
            .pick(registry, &b.namespace, &b.service, b.port)
            .await
            .map_err(|e| {
                if e.starts_with("service ") {
                    ("ServiceNotFound", format!("{svc_ref} is not present"))
                } else {
                    (
                        "MissingEndpoints",
                        format!("endpoints for {svc_ref} have no addresses: {e}"),
                    )
                }
            })?;
        let url = format!("https://{addr}/apis/{}/{}", b.group, b.version);
        let failing = |e: String| {
            (
                "FailedDiscoveryCheck",
                format!("failing or missing response from {url}: {e}"),
            )
        };
        let fetch = async {
            let mut sender = crate::upstream::connect(&b.tls, addr, &b.server_name()).await?;
            let req = http::Request::get(format!("/apis/{}/{}", b.group, b.version))
                .header(
                    http::header::HOST,
                    format!("{}:{}", b.server_name(), b.port),
                )
                .header(http::header::ACCEPT, "application/json")
                .body(Full::new(bytes::Bytes::new()))
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("bad status from {url}: {}", status.as_u16()));
            }
            serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .map_err(|_| failing("timed out".into()))?
            .map_err(failing)
    }
}

/// An APIResourceList's resources in aggregated discovery's form.
fn discovery_v2(group: &str, version: &str, list: &Value) -> Vec<Value> {
    let all = items(list, "resources");
    let mut out = Vec::new();
    for r in all.iter().filter(|r| !text(r, "name").contains('/')) {
        let name = text(r, "name");
        let mut e = json!({
            "resource": name,
            "responseKind": {"group": group, "version": version, "kind": text(r, "kind")},
            "scope": if r["namespaced"] == true { "Namespaced" } else { "Cluster" },
            "singularResource": text(r, "singularName"),
            "verbs": r["verbs"],
        });
        for key in ["shortNames", "categories"] {
            if r[key].as_array().is_some_and(|a| !a.is_empty()) {
                e[key] = r[key].clone();
            }
        }
        let subs: Vec<Value> = all
            .iter()
            .filter_map(|s| {
                let (parent, sub) = text(s, "name").split_once('/')?;
                (parent == name).then(|| {
                    json!({"subresource": sub,
                        "responseKind": {"group": group, "version": version, "kind": text(s, "kind")},
                        "verbs": s["verbs"]})
                })
            })
            .collect();
        if !subs.is_empty() {
            e["subresources"] = Value::Array(subs);
        }
        out.push(e);
    }
    out
}

/// Writes the APIService's `Available` condition when it changed.
async fn set_available(
    registry: &Registry,
    name: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Result<(), ApiError> {
    let r = apiservices().map_err(|e| ApiError::internal(e.to_string()))?;
    let current = registry.get(r, None, name).await?;
    let now = items(&current["status"], "conditions")
        .iter()
        .find(|c| c["type"] == "Available")
        .cloned();
    if let Some(c) = &now
        && c["status"] == status
        && c["reason"] == reason
        && c["message"] == message
    {
        return Ok(());
    }
    let condition = json!({"type": "Available", "status": status, "reason": reason,
        "message": message, "lastTransitionTime": tug_api::time::now()});
    registry
        .patch(
            r,
            None,
            name,
            PatchType::Merge,
            &json!({"status": {"conditions": [condition]}}),
            Some("status"),
            &WriteOptions::default(),
        )
        .await
        .map(|_| ())
}

/// Writes `kube-system/extension-apiserver-authentication`: the client CA and the
/// request-header settings aggregated API servers authenticate proxied requests with.
async fn publish_authentication(
    registry: &Registry,
    client_ca: &str,
    requestheader_ca: &str,
) -> anyhow::Result<()> {
    let r = catalog::lookup("", "v1", "configmaps")
        .ok_or_else(|| anyhow::anyhow!("configmaps missing from the catalog"))?;
    let data = json!({
        "client-ca-file": client_ca,
        "requestheader-allowed-names": "[\"front-proxy-client\"]",
        "requestheader-client-ca-file": requestheader_ca,
        "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        "requestheader-group-headers": "[\"X-Remote-Group\"]",
        "requestheader-username-headers": "[\"X-Remote-User\"]",
    });
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": data});
    let opts = WriteOptions::default();
    match registry.create(r, Some("kube-system"), obj, &opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => registry
            .patch(
                r,
                Some("kube-system"),
                "extension-apiserver-authentication",
                PatchType::Merge,
                &json!({"data": data}),
                None,
                &opts,
            )
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}")),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}
