//! Resource requests: the verbs on a collection or an object, lists, the scale subresource and
//! the review kinds that are answered rather than stored.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tug_api::{ApiError, Resource};

use crate::ApiServer;
use crate::auth::Identity;
use crate::paths::Target;
use crate::registry::{self, ListOptions, PatchType};

use super::io::*;
use super::params::*;

/// The object a verb-like subresource (binding, eviction, log, proxy) addresses, once the
/// request's method is the one it serves; `refusal` says which that is.
fn subresource_target<'a>(
    t: &'a Target,
    req: &Request,
    method: Method,
    refusal: &str,
) -> Result<&'a str, ApiError> {
    let name = t
        .name
        .as_deref()
        .ok_or_else(|| ApiError::no_route(req.uri().path()))?;
    if req.method() != method {
        return Err(ApiError::method_not_allowed(refusal));
    }
    Ok(name)
}

pub(super) async fn resource(
    server: &ApiServer,
    identity: Option<Identity>,
    t: Target,
    req: Request,
) -> Result<Response, ApiError> {
    let r: &'static Resource = t.resource;
    let q = query(&req);
    let manager = default_manager(req.headers());
    let shape = super::shape::Shape::new(accept(req.headers())?, &q)?;
    let protobuf = accepts_protobuf(req.headers());
    let ns = t.namespace.as_deref();
    let reg = &server.registry;
    let method = req.method().clone();
    let sub = t.subresource.as_deref();
    if sub == Some("scale") {
        return scale(server, r, ns, t.name.as_deref(), &q, req).await;
    }
    if sub == Some("binding") {
        let name = subresource_target(&t, &req, Method::POST, "pods/binding only supports create")?;
        let opts = write_options(&q, &manager)?;
        let (headers, bytes) = read_body(req).await?;
        let body = decode_body(&headers, &bytes)?;
        let out = server.registry.bind(r, ns, name, &body, &opts).await?;
        return Ok(json_response(StatusCode::CREATED, &out, "application/json"));
    }
    if sub == Some("log") {
        let name = subresource_target(&t, &req, Method::GET, "pods/log only supports get")?;
        return crate::kubelet::pod_log(
            &server.registry,
            server.kubelet.get(),
            r,
            ns.unwrap_or("default"),
            name,
            &q,
        )
        .await;
    }
    if let Some(kind @ ("exec" | "attach" | "portforward")) = sub
        && r.plural == "pods"
    {
        let name = t
            .name
            .as_deref()
            .ok_or_else(|| ApiError::no_route(req.uri().path()))?;
        // CONNECT admission, with the options the connection asks for.
        if let Some((options_kind, options)) =
            crate::admission::connect_options(kind, req.uri().query().unwrap_or(""))
        {
            let attrs = crate::admission::Attributes {
                resource: r,
                subresource: Some(kind),
                namespace: ns.unwrap_or("default"),
                name: name.to_string(),
                operation: crate::admission::Operation::Connect,
                user: identity.as_ref(),
                dry_run: false,
                old: None,
                field_manager: "",
                connect_kind: Some(options_kind),
            };
            reg.admission
                .admit_without_object(reg, &attrs, Some(&options))
                .await?;
        }
        return crate::kubelet::stream(
            &server.registry,
            server.kubelet.get(),
            r,
            kind,
            ns.unwrap_or("default"),
            name,
            req,
        )
        .await;
    }
    if sub == Some("proxy") && r.plural == "nodes" {
        let name = subresource_target(&t, &req, Method::GET, "nodes/proxy only supports get here")?;
        let query = req.uri().query().unwrap_or("").to_string();
        return crate::kubelet::node_proxy(
            &server.registry,
            server.kubelet.get(),
            name,
            &t.proxy_path,
            &query,
        )
        .await;
    }
    if sub == Some("token") && r.plural == "serviceaccounts" {
        let name = subresource_target(
            &t,
            &req,
            Method::POST,
            "serviceaccounts/token only supports create",
        )?;
        let issuer = server.tokens.get().ok_or_else(|| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                "this server does not issue service account tokens",
            )
        })?;
        let (headers, bytes) = read_body(req).await?;
        let body = decode_body(&headers, &bytes)?;
        let out = reg
            .request_token(issuer, ns.unwrap_or("default"), name, &body)
            .await?;
        return Ok(json_response(StatusCode::CREATED, &out, "application/json"));
    }
    if sub == Some("eviction") {
        let name =
            subresource_target(&t, &req, Method::POST, "pods/eviction only supports create")?;
        let (headers, bytes) = read_body(req).await?;
        let body = decode_body(&headers, &bytes)?;
        let options = body.get("deleteOptions").cloned().unwrap_or(Value::Null);
        let opts = delete_options(&q, &options)?;
        let out = server.registry.evict(r, ns, name, &body, opts).await?;
        return Ok(json_response(StatusCode::CREATED, &out, "application/json"));
    }
    if let Some(s) = sub
        && !matches!(s, "status" | "finalize")
        && !(s == "ephemeralcontainers" && r.plural == "pods")
        && !(s == "approval" && r.plural == "certificatesigningrequests")
    {
        return Err(ApiError::new(
            501,
            "NotImplemented",
            format!("the {s} subresource of {} is not served yet", r.plural),
        ));
    }
    let respond = |code: StatusCode, obj: Value| {
        let body = shape.answer(r, obj)?;
        Ok(json_response(code, &body, "application/json"))
    };
    // Resource usage is computed, never stored.
    if r.verbs == tug_api::catalog::GET_LIST {
        if method != Method::GET || sub.is_some() || flag(&q, "watch") {
            return Err(ApiError::method_not_allowed(format!(
                "{} only supports get and list",
                r.plural
            )));
        }
        let selector = q.get("labelSelector").cloned().unwrap_or_default();
        let out =
            crate::usage::answer(reg, &server.usage, r, ns, t.name.as_deref(), &selector).await?;
        return respond(StatusCode::OK, out);
    }
    // Reviews are answered, never stored.
    if r.verbs == tug_api::catalog::CREATE_ONLY {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(format!(
                "{} only supports create",
                r.plural
            )));
        }
        let (headers, bytes) = read_body(req).await?;
        let body = decode_body(&headers, &bytes)?;
        if r.kind == "TokenReview" {
            return respond(StatusCode::CREATED, token_review(server, r, body).await);
        }
        if let Some(id) = identity.as_ref()
            && let Some(answer) =
                crate::authz::reviews::answer(&reg.authorizer, r, ns, body.clone(), id)
        {
            return respond(StatusCode::CREATED, answer?);
        }
        return respond(StatusCode::CREATED, review(r, body, identity.as_ref()));
    }
    match (method.clone(), t.name.as_deref()) {
        (Method::GET, Some(name)) => respond(StatusCode::OK, reg.get(r, ns, name).await?),
        (Method::GET, None) if flag(&q, "watch") => {
            shape.check_watch(r)?;
            super::watch::watch(server, r, t.namespace.clone(), &q, shape, protobuf).await
        }
        (Method::GET, None) => {
            let opts = ListOptions {
                label_selector: q.get("labelSelector").cloned().unwrap_or_default(),
                field_selector: q.get("fieldSelector").cloned().unwrap_or_default(),
                limit: match q.get("limit") {
                    Some(l) if !l.is_empty() => l
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
                    _ => 0,
                },
                continue_token: q.get("continue").cloned().unwrap_or_default(),
                resource_version: q.get("resourceVersion").cloned().unwrap_or_default(),
                resource_version_match: q.get("resourceVersionMatch").cloned().unwrap_or_default(),
            };
            shape.check_list(r)?;
            list_response(reg, r, ns, &opts, &shape).await
        }
        (Method::POST, None) => {
            let opts = registry::WriteOptions {
                user: identity.clone(),
                ..write_options(&q, &manager)?
            };
            let (headers, bytes) = read_body(req).await?;
            let mut body = decode_body(&headers, &bytes)?;
            let warnings = check_fields(r, &q, &mut body, &bytes, true)?;
            if r.kind == "CertificateSigningRequest" {
                stamp_requester(&mut body, identity.as_ref());
            }
            let created = reg.create(r, ns, body, &opts).await?;
            respond(StatusCode::CREATED, created).map(|resp| with_warnings(resp, &warnings))
        }
        (Method::PUT, Some(name)) => {
            let opts = registry::WriteOptions {
                user: identity.clone(),
                ..write_options(&q, &manager)?
            };
            let (headers, bytes) = read_body(req).await?;
            let mut body = decode_body(&headers, &bytes)?;
            let warnings = check_fields(r, &q, &mut body, &bytes, true)?;
            let updated = reg.update(r, ns, name, body, sub, &opts).await?;
            respond(StatusCode::OK, updated).map(|resp| with_warnings(resp, &warnings))
        }
        (Method::PATCH, Some(name)) => {
            let opts = registry::WriteOptions {
                user: identity.clone(),
                ..write_options(&q, &manager)?
            };
            let kind = patch_type(req.headers())?;
            if kind == PatchType::Strategic && r.custom.is_some() {
                // Custom resources have no patch strategies: kube-apiserver does not take
                // strategic merge patches for them.
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            if kind == PatchType::Apply && q.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::bad_request(
                    "PATCH requests with apply content type require a fieldManager",
                ));
            }
            let (headers, bytes) = read_body(req).await?;
            let mut body = decode_body(&headers, &bytes)?;
            let warnings = if kind == PatchType::Json {
                Vec::new()
            } else {
                check_fields(r, &q, &mut body, &bytes, false)?
            };
            let (patched, created) = reg.patch(r, ns, name, kind, &body, sub, &opts).await?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            respond(code, patched).map(|resp| with_warnings(resp, &warnings))
        }
        (Method::DELETE, Some(name)) => {
            let (headers, bytes) = read_body(req).await?;
            let body = if bytes.is_empty() {
                json!({})
            } else {
                decode_body(&headers, &bytes)?
            };
            let opts = registry::DeleteOptions {
                user: identity.clone(),
                ..delete_options(&q, &body)?
            };
            // NodeRestriction: a node deletes only its own pods (and nothing it does not own).
            if let Some(node) = identity.as_ref().and_then(crate::authz::node::node_name) {
                let at = crate::authz::node::Written {
                    subresource: None,
                    namespace: ns.unwrap_or(""),
                    name,
                };
                reg.authorizer.node.admit(node, r, &at, None, None)?;
            }
            let out = reg.delete(r, ns, name, &opts).await?;
            respond(StatusCode::OK, out)
        }
        (Method::DELETE, None) if !r.allows("deletecollection") => {
            Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
        (Method::DELETE, None) => {
            let (headers, bytes) = read_body(req).await?;
            let body = if bytes.is_empty() {
                json!({})
            } else {
                decode_body(&headers, &bytes)?
            };
            let opts = registry::DeleteOptions {
                user: identity.clone(),
                ..delete_options(&q, &body)?
            };
            let list = reg
                .list(
                    r,
                    ns,
                    &ListOptions {
                        label_selector: q.get("labelSelector").cloned().unwrap_or_default(),
                        field_selector: q.get("fieldSelector").cloned().unwrap_or_default(),
                        ..Default::default()
                    },
                )
                .await?;
            let mut deleted = Vec::new();
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                let name = tug_api::meta::name(&item).to_string();
                let item_ns = tug_api::meta::namespace(&item).to_string();
                let item_ns = if item_ns.is_empty() {
                    None
                } else {
                    Some(item_ns.as_str())
                };
                match reg.delete(r, item_ns, &name, &opts).await {
                    Ok(_) => deleted.push(item),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let mut out = list;
            out["items"] = Value::Array(deleted);
            respond(StatusCode::OK, out)
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on {}",
            req_path_description(r, t.name.is_some())
        ))),
    }
}

/// Removes the leading `"kind":"…","apiVersion":"…"` of the object written at `start` of
/// `buf` (Go's field order puts them first); anything else is left as it is.
fn strip_type_meta(buf: &mut Vec<u8>, start: usize) {
    let text = &buf[start..];
    let quoted_end = |from: usize| {
        text.get(from..)
            .and_then(|t| t.iter().position(|b| *b == b'"'))
            .map(|i| from + i)
    };
    let Some(rest) = text.strip_prefix(b"{\"kind\":\"") else {
        return;
    };
    let kind_end = text.len() - rest.len();
    let Some(kind_close) = quoted_end(kind_end) else {
        return;
    };
    let version_key = b",\"apiVersion\":\"";
    if !text[kind_close + 1..].starts_with(version_key) {
        return;
    }
    let Some(version_close) = quoted_end(kind_close + 1 + version_key.len()) else {
        return;
    };
    // Drop through the comma that follows, or up to the closing brace of an object that
    // had nothing else.
    let end = match text.get(version_close + 1) {
        Some(b',') => version_close + 2,
        Some(b'}') => version_close + 1,
        _ => return,
    };
    buf.drain(start + 1..start + end);
}

/// A list, encoded item by item as the store is read: the JSON text (or Table rows) is all
/// that is held, never the whole list as values.
pub(super) async fn list_response(
    reg: &registry::Registry,
    r: &'static Resource,
    ns: Option<&str>,
    opts: &ListOptions,
    shape: &super::shape::Shape,
) -> Result<Response, ApiError> {
    if shape.form != super::shape::Form::Object {
        let mut items = Vec::new();
        let list = reg
            .list_each(r, ns, opts, |item| {
                items.push(shape.item(r, &item.into_value()));
                Ok(())
            })
            .await?;
        let t = shape.list(r, items, &list);
        return Ok(json_response(StatusCode::OK, &t, "application/json"));
    }
    let mut items: Vec<u8> = Vec::new();
    let mut first = true;
    // Items of built-in kinds' lists carry no kind and apiVersion, as kube-apiserver writes
    // them (typed lists); custom resources' items keep theirs.
    let typed = r.custom.is_none();
    let list = reg
        .list_each(r, ns, opts, |item| {
            if !first {
                items.push(b',');
            }
            first = false;
            let start = items.len();
            item.write_json(&mut items)?;
            if typed {
                strip_type_meta(&mut items, start);
            }
            Ok(())
        })
        .await?;
    // Go's order: kind, apiVersion, metadata (its fields in ListMeta's order), items.
    let mut buf: Vec<u8> = Vec::with_capacity(items.len() + 256);
    let text = |v: &serde_json::Value| v.to_string();
    buf.extend_from_slice(
        format!(
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{{",
            text(&list["kind"]),
            text(&list["apiVersion"])
        )
        .as_bytes(),
    );
    let mut first = true;
    for k in [
        "selfLink",
        "resourceVersion",
        "continue",
        "remainingItemCount",
    ] {
        if let Some(v) = list["metadata"].get(k) {
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.extend_from_slice(format!("\"{k}\":{}", text(v)).as_bytes());
        }
    }
    buf.extend_from_slice(b"},\"items\":[");
    buf.extend_from_slice(&items);
    buf.extend_from_slice(b"]}\n");
    let mut resp = Response::new(Body::from(buf));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The scale subresource: GET, PUT and PATCH.
pub(super) async fn scale(
    server: &ApiServer,
    r: &'static Resource,
    ns: Option<&str>,
    name: Option<&str>,
    q: &HashMap<String, String>,
    req: Request,
) -> Result<Response, ApiError> {
    let name = name.ok_or_else(|| ApiError::no_route(req.uri().path()))?;
    let reg = &server.registry;
    let manager = default_manager(req.headers());
    let method = req.method().clone();
    let out = match method {
        Method::GET => reg.get_scale(r, ns, name).await?,
        Method::PUT => {
            let opts = write_options(q, &manager)?;
            let (headers, bytes) = read_body(req).await?;
            let body = decode_body(&headers, &bytes)?;
            reg.update_scale(r, ns, name, &body, &opts).await?
        }
        Method::PATCH => {
            let opts = write_options(q, &manager)?;
            let kind = patch_type(req.headers())?;
            let (headers, bytes) = read_body(req).await?;
            let body = decode_body(&headers, &bytes)?;
            reg.patch_scale(r, ns, name, kind, &body, &opts).await?
        }
        m => {
            return Err(ApiError::method_not_allowed(format!(
                "{m} is not supported on scale"
            )));
        }
    };
    Ok(json_response(StatusCode::OK, &out, "application/json"))
}

pub(super) fn req_path_description(r: &Resource, named: bool) -> String {
    if named {
        format!("a single {}", r.singular())
    } else {
        format!("the {} collection", r.plural)
    }
}

/// Answers a TokenReview: whether `spec.token` is a service account token this server
/// accepts (for one of `spec.audiences`, or the API's), and whose.
async fn token_review(server: &ApiServer, r: &Resource, mut body: Value) -> Value {
    body["apiVersion"] = json!(r.api_version());
    body["kind"] = json!(r.kind);
    if body.get("metadata").is_none() {
        body["metadata"] = json!({});
    }
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let identity = match server.tokens.get() {
        Some(issuer) if !token.is_empty() => server.registry.token_identity(issuer, &token).await,
        _ => None,
    };
    body["status"] = match identity {
        Some(id) => {
            let audiences = server
                .tokens
                .get()
                .map(|i| i.audiences.clone())
                .unwrap_or_default();
            let mut user = json!({"username": id.user, "groups": id.groups});
            if !id.extra.is_empty() {
                user["extra"] = json!(id.extra);
            }
            json!({"authenticated": true, "user": user, "audiences": audiences})
        }
        None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
    };
    body
}

/// A CSR records who asked for it, whatever its body says: the requester's name, groups and
/// extra attributes (kube-apiserver's CSR strategy).
fn stamp_requester(csr: &mut Value, identity: Option<&Identity>) {
    if !csr["spec"].is_object() {
        return;
    }
    let spec = &mut csr["spec"];
    for f in ["username", "uid", "groups", "extra"] {
        if let Some(m) = spec.as_object_mut() {
            m.remove(f);
        }
    }
    let Some(id) = identity else { return };
    spec["username"] = json!(id.user);
    if !id.groups.is_empty() {
        spec["groups"] = json!(id.groups);
    }
    if !id.extra.is_empty() {
        spec["extra"] = json!(id.extra);
    }
}

/// Answers SelfSubjectReview for the caller.
pub(super) fn review(r: &Resource, mut body: Value, identity: Option<&Identity>) -> Value {
    let (user, groups) = identity
        .map(|i| (i.user.clone(), i.groups.clone()))
        .unwrap_or_else(|| {
            (
                "system:anonymous".into(),
                vec!["system:unauthenticated".into()],
            )
        });
    body["apiVersion"] = json!(r.api_version());
    body["kind"] = json!(r.kind);
    if body.get("metadata").is_none() {
        body["metadata"] = json!({});
    }
    let extra = identity.map(|i| i.extra.clone()).unwrap_or_default();
    let mut info = json!({"username": user, "groups": groups});
    if let Some(uid) = identity.map(|i| i.uid.as_str()).filter(|u| !u.is_empty()) {
        info["uid"] = json!(uid);
    }
    if !extra.is_empty() {
        info["extra"] = json!(extra);
    }
    body["status"] = json!({"userInfo": info});
    body
}

#[cfg(test)]
mod tests {
    use super::strip_type_meta;

    #[test]
    fn list_items_lose_kind_and_api_version_only() {
        let mut buf =
            b"[{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\"}}".to_vec();
        strip_type_meta(&mut buf, 1);
        assert_eq!(buf, b"[{\"metadata\":{\"name\":\"a\"}}");
        let mut bare = b"{\"kind\":\"Pod\",\"apiVersion\":\"v1\"}".to_vec();
        strip_type_meta(&mut bare, 0);
        assert_eq!(bare, b"{}");
        let mut other = b"{\"metadata\":{}}".to_vec();
        strip_type_meta(&mut other, 0);
        assert_eq!(other, b"{\"metadata\":{}}");
    }
}
