//! Service account tokens in the registry: the TokenRequest subresource of serviceaccounts,
//! and the check that a presented token's service account and bound objects still exist.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tug_api::{ApiError, Cause, Resource, catalog, meta};

use super::Registry;
use crate::auth::Identity;
use crate::tokens::{BoundRef, Claims, KubeClaims, TokenIssuer};

/// The shortest and longest lifetimes a TokenRequest may ask for, and its default.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;

/// How long a token bound to an object marked for deletion stays valid, as in Kubernetes.
const DELETING_GRACE_SECONDS: i64 = 60;

fn core(plural: &str) -> Result<&'static Resource, ApiError> {
    catalog::lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} missing from the catalog")))
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "authentication.k8s.io",
        "TokenRequest",
        name,
        vec![Cause::new("FieldValueInvalid", field, message)],
    )
}

fn bound_ref(obj: &Value) -> BoundRef {
    BoundRef {
        name: meta::name(obj).to_string(),
        uid: meta::uid(obj).to_string(),
    }
}

fn rfc3339(seconds: i64) -> String {
    tug_api::time::rfc3339(
        jiff::Timestamp::from_second(seconds).unwrap_or_else(|_| jiff::Timestamp::now()),
    )
}

impl Registry {
    /// TokenRequest (`POST serviceaccounts/{name}/token`): a signed token for service account
    /// `name`, for the audiences asked (the API's by default), optionally bound to a pod,
    /// secret or node so that it stops working when that object is gone.
    pub async fn request_token(
        &self,
        issuer: &TokenIssuer,
        ns: &str,
        name: &str,
        request: &Value,
    ) -> Result<Value, ApiError> {
        let sa_r = core("serviceaccounts")?;
        let (sa, _) = self
            .current(sa_r, Some(ns), name)
            .await?
            .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
        let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION,
            Some(v) => v.as_i64().ok_or_else(|| {
                invalid(
                    name,
                    "spec.expirationSeconds",
                    format!("Invalid value: {v}: must be an integer"),
                )
            })?,
        };
        if expiration < MIN_EXPIRATION {
            return Err(invalid(
                name,
                "spec.expirationSeconds",
                format!(
                    "Invalid value: {expiration}: may not specify a duration less than 10 minutes"
                ),
            ));
        }
        if expiration > MAX_EXPIRATION {
            return Err(invalid(
                name,
                "spec.expirationSeconds",
                format!(
                    "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
                ),
            ));
        }
        let mut audiences: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if audiences.is_empty() {
            audiences = issuer.audiences.clone();
        }

        let mut claims = KubeClaims {
            namespace: ns.to_string(),
            serviceaccount: bound_ref(&sa),
            ..Default::default()
        };
        if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
            self.bind_token(name, ns, bound, &mut claims).await?;
        }

        let now = jiff::Timestamp::now().as_second();
        let token_claims = Claims {
            aud: audiences.clone(),
            exp: now + expiration,
            iat: now,
            nbf: now,
            iss: issuer.issuer.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            sub: format!("system:serviceaccount:{ns}:{name}"),
            kubernetes: claims,
        };
        let token = issuer
            .sign(&token_claims)
            .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
        let mut spec = spec;
        spec["audiences"] = json!(audiences);
        spec["expirationSeconds"] = json!(expiration);
        if spec.get("boundObjectRef").is_none() {
            spec["boundObjectRef"] = Value::Null;
        }
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": rfc3339(now + expiration)},
        }))
    }

    /// Checks a TokenRequest's boundObjectRef and records the object in the claims.
    async fn bind_token(
        &self,
        sa_name: &str,
        ns: &str,
        bound: &Value,
        claims: &mut KubeClaims,
    ) -> Result<(), ApiError> {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = bound
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1");
        let obj_name = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let uid = bound.get("uid").and_then(Value::as_str).unwrap_or("");
        if obj_name.is_empty() {
            return Err(invalid(
                sa_name,
                "spec.boundObjectRef.name",
                "Required value".into(),
            ));
        }
        let (plural, namespace) = match (api_version, kind) {
            ("v1", "Pod") => ("pods", Some(ns)),
            ("v1", "Secret") => ("secrets", Some(ns)),
            ("v1", "Node") => ("nodes", None),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {kind}, apiVersion {api_version}: only v1 Pod, Secret and Node are supported"
                )));
            }
        };
        let (obj, _) = self
            .current(core(plural)?, namespace, obj_name)
            .await?
            .ok_or_else(|| ApiError::not_found("", plural, obj_name))?;
        let recorded = meta::uid(&obj);
        if !uid.is_empty() && uid != recorded {
            return Err(ApiError::conflict(
                "",
                plural,
                obj_name,
                &format!(
                    "the UID in the bound object reference ({uid}) does not match the UID in record ({recorded}). The object might have been deleted and then recreated"
                ),
            ));
        }
        match kind {
            "Pod" => {
                let pod_sa = obj
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                if pod_sa != sa_name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount \"{sa_name}\" to pod running with different serviceaccount name."
                    )));
                }
                if let Some(node) = obj
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    && let Some((node, _)) = self.current(core("nodes")?, None, node).await?
                {
                    claims.node = Some(bound_ref(&node));
                }
                claims.pod = Some(bound_ref(&obj));
            }
            "Secret" => claims.secret = Some(bound_ref(&obj)),
            _ => claims.node = Some(bound_ref(&obj)),
        }
        Ok(())
    }

    /// The identity a service account token stands for, when the issuer signed it, it is
    /// unexpired and for the API's audience, and its service account and bound objects still
    /// exist with the same UIDs.
    pub async fn token_identity(&self, issuer: &TokenIssuer, token: &str) -> Option<Identity> {
        let c = issuer.verify(token)?;
        let k = &c.kubernetes;
        let ns = k.namespace.as_str();
        if c.sub != format!("system:serviceaccount:{ns}:{}", k.serviceaccount.name) {
            return None;
        }
        self.still_there("serviceaccounts", Some(ns), &k.serviceaccount)
            .await?;
        if let Some(pod) = &k.pod {
            self.still_there("pods", Some(ns), pod).await?;
        } else if let Some(node) = &k.node {
            self.still_there("nodes", None, node).await?;
        }
        if let Some(secret) = &k.secret {
            self.still_there("secrets", Some(ns), secret).await?;
        }
        let mut extra = BTreeMap::new();
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_string(),
            vec![format!("JTI={}", c.jti)],
        );
        if let Some(pod) = &k.pod {
            extra.insert(
                "authentication.kubernetes.io/pod-name".into(),
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".into(),
                vec![pod.uid.clone()],
            );
        }
        if let Some(node) = &k.node {
            extra.insert(
                "authentication.kubernetes.io/node-name".into(),
                vec![node.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/node-uid".into(),
                vec![node.uid.clone()],
            );
        }
        Some(Identity {
            user: c.sub.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            extra,
            ..Default::default()
        })
    }

    /// The user of the bootstrap token `id`.`secret`, from its Secret in kube-system.
    pub async fn bootstrap_token_identity(&self, id: &str, secret: &str) -> Option<Identity> {
        let name = crate::authn::bootstrap_token::secret_name(id);
        let (obj, _) = self
            .current(core("secrets").ok()?, Some("kube-system"), &name)
            .await
            .ok()??;
        crate::authn::bootstrap_token::identity(
            &obj,
            id,
            secret,
            jiff::Timestamp::now().as_second(),
        )
    }

    /// Some(()) when the object still exists with the token's UID, and is not being deleted
    /// for longer than the grace Kubernetes allows.
    async fn still_there(&self, plural: &str, ns: Option<&str>, r: &BoundRef) -> Option<()> {
        let (obj, _) = self.current(core(plural).ok()?, ns, &r.name).await.ok()??;
        if meta::uid(&obj) != r.uid {
            return None;
        }
        if let Some(deleting) = obj
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            && jiff::Timestamp::now().as_second() - deleting.as_second() > DELETING_GRACE_SECONDS
        {
            return None;
        }
        Some(())
    }
}
