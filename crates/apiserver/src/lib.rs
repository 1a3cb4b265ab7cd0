//! tugboat's API server: the Kubernetes REST API over a [`tug_store::Store`], served over TLS
//! to kubectl, helm and client libraries. One generic registry serves every resource; discovery
//! is generated from the resource catalog.

pub mod admission;
mod aggregator;
mod apiservices;
pub mod audit;
pub mod auth;
pub mod authn;
pub mod authz;
mod crds;
mod discovery;
pub mod encryption;
mod handler;
mod health;
pub mod kubelet;
mod metrics;
mod mirror;
mod namespaces;
mod openapi;
pub mod paths;
pub mod pki;
pub mod registry;
mod swap;
pub mod tls;
pub mod tokens;
mod upstream;
mod usage;

use std::sync::Arc;

use axum::Router;
use tug_store::Store;

pub use registry::Registry;

/// The Kubernetes version tugboat answers as.
pub const KUBE_VERSION: (&str, &str) = ("1", "37");

/// Largest request body accepted (Kubernetes' limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The API server's state, shared by every request.
pub struct ApiServer {
    registry: Registry,
    token: String,
    node_token: Option<String>,
    metrics: metrics::Metrics,
    kubelet: std::sync::OnceLock<kubelet::KubeletClient>,
    tokens: std::sync::OnceLock<tokens::TokenIssuer>,
    audit: std::sync::OnceLock<audit::Audit>,
    authenticators: std::sync::OnceLock<authn::Authenticators>,
    aggregator: Arc<aggregator::Aggregator>,
    /// The cluster CA, published for aggregated API servers.
    client_ca: std::sync::OnceLock<String>,
    /// The nodes' and containers' resource usage (metrics.k8s.io).
    usage: Arc<usage::ResourceMetrics>,
}

impl ApiServer {
    /// An API server over `store`; `token` is the admin bearer token.
    pub fn new(store: Arc<dyn Store>, token: String) -> Arc<Self> {
        Self::with_node_token(store, token, None)
    }

    /// An API server that also admits node agents presenting `node_token`.
    pub fn with_node_token(
        store: Arc<dyn Store>,
        token: String,
        node_token: Option<String>,
    ) -> Arc<Self> {
        let metrics = metrics::Metrics::default();
        if let Ok(mut s) = metrics.sources.lock() {
            s.push(Box::new(admission::metrics::render));
        }
        Arc::new(Self {
            registry: Registry::new(store),
            token,
            node_token,
            metrics,
            kubelet: std::sync::OnceLock::new(),
            tokens: std::sync::OnceLock::new(),
            audit: std::sync::OnceLock::new(),
            aggregator: Arc::default(),
            client_ca: std::sync::OnceLock::new(),
            authenticators: std::sync::OnceLock::new(),
            usage: Arc::default(),
        })
    }

    /// Sets the bearer token authenticators (token file, OIDC issuers); once.
    pub fn set_authenticators(&self, a: authn::Authenticators) {
        let _ = self.authenticators.set(a);
    }

    /// The user a bearer token belongs to, by every authenticator in turn.
    async fn authenticate_bearer(&self, token: &str) -> Option<auth::Identity> {
        static NONE: std::sync::OnceLock<authn::Authenticators> = std::sync::OnceLock::new();
        let chain = self
            .authenticators
            .get()
            .unwrap_or_else(|| NONE.get_or_init(Default::default));
        chain
            .authenticate(&self.registry, self.tokens.get(), token)
            .await
    }

    /// Lets the API server reach kubelets (for pods/log) with this TLS client configuration.
    pub fn set_kubelet_tls(&self, tls: rustls::ClientConfig) {
        let _ = self.kubelet.set(kubelet::KubeletClient::new(tls));
    }

    /// Lets the API server issue service account tokens (TokenRequest), accept them as bearer
    /// tokens, publish their keys for OIDC discovery, and mount them into pods (ServiceAccount
    /// admission).
    pub fn set_token_issuer(&self, issuer: tokens::TokenIssuer) {
        if self.tokens.set(issuer).is_ok() {
            self.registry.enable_service_account_admission();
        }
    }

    /// Sets what aggregation needs: the cluster CA (published for aggregated API servers as
    /// `client-ca-file`), the request-header CA and the `front-proxy-client` certificate
    /// proxied requests present.
    pub fn set_front_proxy(
        &self,
        client_ca: String,
        requestheader_ca: String,
        client: pki::Issued,
    ) {
        let _ = self.client_ca.set(client_ca);
        self.aggregator.set_front_proxy(client, requestheader_ca);
    }

    /// Configures the admission plugins (`--admission-control-config-file`).
    pub fn set_admission_configuration(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let pod_security = admission::load_configuration(path)?;
        self.registry.admission.set_pod_security(pod_security);
        Ok(())
    }

    /// Records requests in an audit log.
    pub fn set_audit(&self, audit: audit::Audit) {
        let _ = self.audit.set(audit);
    }

    /// The registry (for components in the same process).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates the namespaces, priority classes, local APIServices and default RBAC policy
    /// every cluster has (and loads the policy into the authorizer),
    /// serves the custom resources of the stored definitions (and follows them as they
    /// change), and starts the namespace finalizer, which empties and then removes namespaces
    /// being deleted.
    pub async fn bootstrap(self: &Arc<Self>) -> anyhow::Result<()> {
        namespaces::ensure_defaults(&self.registry).await?;
        self.registry.ensure_priority_classes().await?;
        apiservices::ensure_local(&self.registry).await?;
        authz::bootstrap::reconcile(&self.registry).await?;
        authz::follow::start(&self.registry, self.registry.authorizer.clone()).await?;
        self.registry.authorizer.node.start(&self.registry).await?;
        crds::start(&self.registry).await?;
        self.registry.admission.start(&self.registry).await?;
        let client_ca = self.client_ca.get().cloned().unwrap_or_default();
        self.aggregator.start(&self.registry, &client_ca).await?;
        tokio::spawn(namespaces::finalize_loop(self.registry.clone()));
        Ok(())
    }

    /// Compacts the store's history every `interval`, keeping what was written since the
    /// previous tick (as kube-apiserver's --etcd-compaction-interval does): watches and
    /// lists older than that get 410 Gone and relist.
    pub fn start_compaction(self: &Arc<Self>, interval: std::time::Duration) {
        let store = self.registry.store.clone();
        let registry = self.registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            let mut previous: Option<i64> = None;
            loop {
                tick.tick().await;
                let current = match store.current_revision().await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "compaction: reading the revision failed");
                        continue;
                    }
                };
                if let Some(p) = previous
                    && p > 0
                {
                    match store.compact(p).await {
                        Ok(()) => {
                            registry.compacted(p);
                            tracing::debug!(revision = p, "compacted");
                        }
                        Err(tug_store::Error::Compacted { .. }) => registry.compacted(p),
                        Err(e) => tracing::warn!(error = %e, "compaction failed"),
                    }
                }
                previous = Some(current);
            }
        });
    }

    /// Scrapes every node's kubelet for resource usage each `resolution`, for the
    /// metrics.k8s.io API (`kubectl top`, autoscalers). Needs the kubelet client
    /// ([`ApiServer::set_kubelet_tls`]); without one there is nothing to scrape. Zero turns it
    /// off.
    pub fn start_resource_metrics(self: &Arc<Self>, resolution: std::time::Duration) {
        if resolution.is_zero() {
            return;
        }
        let Some(kubelet) = self.kubelet.get().cloned() else {
            tracing::warn!("no kubelet client: the resource metrics API stays empty");
            return;
        };
        tokio::spawn(usage::scrape_loop(
            self.registry.clone(),
            kubelet,
            self.usage.clone(),
            resolution,
        ));
    }

    /// A kube-rs client wired straight to the router, for the API server's own work in this
    /// process (publishing the `kubernetes` Service, hollow nodes): no TCP, no TLS, the same
    /// request pipeline. It acts as `system:apiserver` (group system:masters), as
    /// kube-apiserver's loopback client does. Must be called inside a Tokio runtime.
    pub fn in_process_client(self: &Arc<Self>) -> kube::Client {
        self.in_process_client_as(auth::Identity::user(
            "system:apiserver",
            &["system:masters"],
        ))
    }

    /// An in-process client acting as `identity` (a component's own: the scheduler, each
    /// controller's service account, the built-in node), authorized as any other caller.
    pub fn in_process_client_as(self: &Arc<Self>, identity: auth::Identity) -> kube::Client {
        let service = tower::ServiceExt::map_request(
            self.router(),
            move |req: http::Request<kube::client::Body>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(identity.clone());
                req
            },
        );
        kube::Client::new(service, "default")
    }

    /// Serves another component's metrics on `/metrics` too (`render` gives them in the
    /// text format, without `# EOF`).
    pub fn add_metrics(&self, render: impl Fn() -> String + Send + Sync + 'static) {
        if let Ok(mut s) = self.metrics.sources.lock() {
            s.push(Box::new(render));
        }
    }

    /// The HTTP router (authentication included).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .fallback(handler::handle)
            .layer(axum::middleware::from_fn(handler::protobuf::responses))
            .with_state(self.clone())
    }
}
