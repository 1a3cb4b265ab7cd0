//! Node certificates: CertificateSigningRequests for the kubelet signers
//! (`kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kubelet-serving`) are
//! approved and signed by the cluster CA when they ask for `CN=system:node:<name>,
//! O=system:nodes`, as kube-controller-manager's csrapproving and csrsigning controllers do
//! for bootstrapping kubelets. Other signers are left alone.

use std::sync::Arc;
use std::time::Duration;
use tug_api::time::now;

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use serde_json::json;

use crate::common::Error;

/// Signs a node's request (PEM): a client certificate, or a serving one when `server`.
pub type Signer = Arc<dyn Fn(&str, bool) -> Result<String, String> + Send + Sync>;

/// The client signer of kubelets.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The serving signer of kubelets.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

struct Ctx {
    client: kube::Client,
    signer: Signer,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, signer: Signer) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        signer,
    });
    Controller::new(
        Api::<CertificateSigningRequest>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile, retry, ctx)
    .for_each(|_| async {})
    .await;
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(name) = csr.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    let status = csr.status.clone().unwrap_or_default();
    let decided = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Denied" || c.type_ == "Failed");
    if status.certificate.is_some() || decided {
        return Ok(Action::await_change());
    }
    let server = match csr.spec.signer_name.as_str() {
        CLIENT_SIGNER => false,
        SERVING_SIGNER => true,
        _ => return Ok(Action::await_change()),
    };
    let pem = String::from_utf8_lossy(&csr.spec.request.0).to_string();
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let patch = match (ctx.signer)(&pem, server) {
        Ok(cert) => {
            tracing::info!(csr = name, signer = %csr.spec.signer_name, "approved and signed a node certificate");
            json!({"status": {
                "conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved",
                    "message": "Auto approving a node certificate for a bootstrapped node agent",
                    "lastUpdateTime": now(), "lastTransitionTime": now()}],
                "certificate": base64::engine::general_purpose::STANDARD.encode(cert),
            }})
        }
        Err(e) => {
            tracing::warn!(csr = name, error = %e, "refused a node certificate request");
            json!({"status": {"conditions": [{"type": "Failed", "status": "True",
                "reason": "SigningError", "message": e, "lastUpdateTime": now(),
                "lastTransitionTime": now()}]}})
        }
    };
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(Action::await_change())
}

fn retry(_: Arc<CertificateSigningRequest>, e: &Error, _: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "signing a node certificate failed; retrying");
    Action::requeue(Duration::from_secs(2))
}
