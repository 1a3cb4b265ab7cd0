//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, made
//! when the namespace appears and again if it is deleted.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};

use crate::common::{Error, post_params};

/// Runs the controller until the task is dropped.
pub async fn run(client: kube::Client) {
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default(),
        |sa| {
            sa.metadata
                .namespace
                .as_deref()
                .map(ObjectRef::<Namespace>::new)
        },
    )
    .run(reconcile, retry, Arc::new(client))
    .for_each(|_| async {})
    .await;
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let Some(name) = ns.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced((*client).clone(), name);
    if api.get_opt("default").await?.is_none() {
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&post_params(), &sa).await {
            Ok(_) => tracing::info!(namespace = name, "created the default service account"),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

fn retry(_: Arc<Namespace>, e: &Error, _: Arc<kube::Client>) -> Action {
    tracing::debug!(error = %e, "service account reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}
