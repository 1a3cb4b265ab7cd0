//! Objects every active namespace has, made when the namespace appears and again if they are
//! deleted or changed: the `default` ServiceAccount (Kubernetes' serviceaccount controller) and
//! the `kube-root-ca.crt` ConfigMap holding the cluster CA (its root-ca-cert-publisher).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::common::{Error, post_params};

/// The ConfigMap the cluster CA is published in.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// One kind of object each namespace must hold.
struct Wanted<K> {
    /// Its name.
    name: &'static str,
    /// The object as it should be.
    make: Box<dyn Fn() -> K + Send + Sync>,
    /// Whether an existing object must be replaced by a fresh one (its content drifted).
    drifted: fn(&K, &K) -> bool,
}

/// Keeps a `default` ServiceAccount in every namespace.
pub async fn run_service_accounts(client: kube::Client) {
    let wanted = Wanted {
        name: "default",
        make: Box::new(|| ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        }),
        drifted: |_, _| false,
    };
    run(client, wanted).await
}

/// Keeps the `kube-root-ca.crt` ConfigMap, with `ca.crt` holding `ca_pem`, in every namespace.
pub async fn run_root_ca(client: kube::Client, ca_pem: String) {
    let wanted = Wanted {
        name: ROOT_CA_CONFIGMAP,
        make: Box::new(move || {
            ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROOT_CA_CONFIGMAP.into()),
                annotations: Some(BTreeMap::from([(
                    "kubernetes.io/description".to_string(),
                    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("ca.crt".to_string(), ca_pem.clone())])),
            ..Default::default()
        }
        }),
        drifted: |have, want| have.data != want.data || have.binary_data.is_some(),
    };
    run(client, wanted).await
}

/// Reconciles namespaces (and the objects named `wanted.name` in them) until dropped.
async fn run<K>(client: kube::Client, wanted: Wanted<K>)
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let objects = watcher::Config::default().fields(&format!("metadata.name={}", wanted.name));
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(Api::<K>::all(client.clone()), objects, |o| {
        o.meta()
            .namespace
            .as_deref()
            .map(ObjectRef::<Namespace>::new)
    })
    .run(reconcile, retry, Arc::new((client, wanted)))
    .for_each(|_| async {})
    .await;
}

async fn reconcile<K>(
    ns: Arc<Namespace>,
    ctx: Arc<(kube::Client, Wanted<K>)>,
) -> Result<Action, Error>
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let (client, wanted) = &*ctx;
    let Some(name) = ns.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let api: Api<K> = Api::namespaced(client.clone(), name);
    let want = (wanted.make)();
    let result = match api.get_opt(wanted.name).await? {
        None => api.create(&post_params(), &want).await.map(|_| "created"),
        Some(have) if (wanted.drifted)(&have, &want) => {
            let mut fresh = want;
            fresh.meta_mut().resource_version = have.meta().resource_version.clone();
            api.replace(wanted.name, &PostParams::default(), &fresh)
                .await
                .map(|_| "updated")
        }
        Some(_) => return Ok(Action::await_change()),
    };
    match result {
        Ok(done) => tracing::info!(namespace = name, object = wanted.name, "{done}"),
        // Raced with another writer, or the namespace started terminating: the watch brings
        // us back if anything is still missing.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

fn retry<K>(_: Arc<Namespace>, e: &Error, _: Arc<(kube::Client, Wanted<K>)>) -> Action {
    tracing::debug!(error = %e, "namespace object reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}
