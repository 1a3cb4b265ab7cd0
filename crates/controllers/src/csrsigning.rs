//! Node certificates: CertificateSigningRequests for the kubelet signers
//! (`kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kubelet-serving`) are
//! approved and signed by the cluster CA when they ask for `CN=system:node:<name>,
//! O=system:nodes`, as kube-controller-manager's csrapproving and csrsigning controllers do
//! for bootstrapping kubelets. Other signers are left alone.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use serde_json::json;

use crate::common::Error;

/// Signs a node's request (PEM): a client certificate, or a serving one when `server`; the
/// last argument is the request's `spec.expirationSeconds`, if it asks for one.
pub type Signer = Arc<dyn Fn(&str, bool, Option<i32>) -> Result<String, String> + Send + Sync>;

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
    let conditions = status.conditions.unwrap_or_default();
    let decided = conditions
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
    let approved = conditions
        .iter()
        .any(|c| c.type_ == "Approved" && c.status == "True");
    let mut current = (*csr).clone();
    if !approved {
        let Some(message) = auto_approval(&ctx.client, &csr, &pem, server).await? else {
            return Ok(Action::await_change());
        };
        let mut c = current.status.take().unwrap_or_default();
        c.conditions.get_or_insert_with(Vec::new).push(condition(
            "Approved",
            "AutoApproved",
            message,
        ));
        current.status = Some(c);
        current = api
            .replace_subresource("approval", name, &PostParams::default(), &current)
            .await?;
    }
    let mut c = current.status.take().unwrap_or_default();
    match (ctx.signer)(&pem, server, csr.spec.expiration_seconds) {
        Ok(cert) => {
            tracing::info!(csr = name, signer = %csr.spec.signer_name, "signed a node certificate");
            c.certificate = Some(k8s_openapi::ByteString(cert.into_bytes()));
        }
        Err(e) => {
            tracing::warn!(csr = name, error = %e, "refused a node certificate request");
            c.conditions
                .get_or_insert_with(Vec::new)
                .push(condition("Failed", "SigningError", &e));
        }
    }
    current.status = Some(c);
    api.replace_status(name, &PostParams::default(), &current)
        .await?;
    Ok(Action::await_change())
}

fn condition(type_: &str, reason: &str, message: &str) -> CertificateSigningRequestCondition {
    let t = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    CertificateSigningRequestCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(t.clone()),
        last_transition_time: Some(t),
    }
}

/// Whether a pending request is approved automatically, and the approval's message, as
/// kube-controller-manager's approver decides for kubelets: a client certificate for
/// `system:node:<name>` when the requester may create `certificatesigningrequests/nodeclient`
/// (a bootstrapping node) or, asking for its own name, `…/selfnodeclient` (a node renewing);
/// a serving certificate only when the node asks for itself. Anything else waits for an
/// administrator (`kubectl certificate approve`).
async fn auto_approval(
    client: &kube::Client,
    csr: &CertificateSigningRequest,
    pem: &str,
    server: bool,
) -> Result<Option<&'static str>, Error> {
    let Some(cn) = common_name(pem) else {
        return Ok(None);
    };
    let requester = csr.spec.username.as_deref().unwrap_or_default();
    let groups = csr.spec.groups.clone().unwrap_or_default();
    let is_node_name = cn.starts_with("system:node:");
    if !is_node_name {
        return Ok(None);
    }
    if server {
        let own = requester == cn && groups.iter().any(|g| g == "system:nodes");
        return Ok(own.then_some("Auto approving a kubelet serving certificate for its own node"));
    }
    let (subresource, message) = if requester == cn {
        (
            "selfnodeclient",
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        )
    } else {
        (
            "nodeclient",
            "Auto approving kubelet client certificate after SubjectAccessReview.",
        )
    };
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": requester, "groups": groups, "uid": csr.spec.uid,
            "extra": csr.spec.extra,
            "resourceAttributes": {"group": "certificates.k8s.io",
                "resource": "certificatesigningrequests", "verb": "create",
                "subresource": subresource},
        },
    }))
    .map_err(|e| Error(e.to_string()))?;
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    let allowed = answer.status.is_some_and(|s| s.allowed);
    if !allowed {
        tracing::info!(csr = ?csr.metadata.name, requester, subresource, "not auto-approving a node client certificate: the requester may not create certificatesigningrequests/{subresource}");
    }
    Ok(allowed.then_some(message))
}

/// The subject's common name of a certificate request (PEM).
fn common_name(pem: &str) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .ok()?;
    let cn = req
        .certification_request_info
        .subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

fn retry(_: Arc<CertificateSigningRequest>, e: &Error, _: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "signing a node certificate failed; retrying");
    Action::requeue(Duration::from_secs(2))
}
