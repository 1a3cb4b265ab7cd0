//! The request pipeline: authenticate, authorize, route (discovery or a resource), decode the
//! body, call the registry, encode the answer. Every error is a `Status`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tug_api::{ApiError, Resource};

use crate::auth::{self, Identity};
use crate::discovery;
use crate::paths::{self, Target};
use crate::registry::{self, DeleteOptions, ListOptions, PatchType, WatchOptions, WriteOptions};
use crate::{ApiServer, KUBE_VERSION, MAX_BODY_BYTES};

/// An answer: JSON with a status code.
fn json_response(code: StatusCode, body: &Value, content_type: &str) -> Response {
    let mut resp = (code, body.to_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status(), "application/json")
}

/// What the client accepts.
struct Accept {
    table: bool,
}

fn accept(headers: &HeaderMap) -> Result<Accept, ApiError> {
    let raw = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let mut table = false;
    let mut any = false;
    for part in raw.split(',') {
        let p = part.replace(' ', "");
        let base = p.split(';').next().unwrap_or("");
        let as_table = p.contains("as=Table") && p.contains("g=meta.k8s.io");
        match base {
            "application/json" | "application/*" | "*/*" | "application/yaml" => {
                any = true;
                if as_table && table_order_first(raw, &p) {
                    table = true;
                }
            }
            // Protobuf responses are not offered; clients that accept JSON too get JSON.
            _ => {}
        }
    }
    if !any {
        return Err(ApiError::not_acceptable(format!(
            "only application/json responses are served, not {raw:?}"
        )));
    }
    Ok(Accept { table })
}

/// Whether the Table entry comes before any plain JSON entry (clients list preferences first).
fn table_order_first(raw: &str, table_part: &str) -> bool {
    for part in raw.split(',') {
        let p = part.replace(' ', "");
        if p == table_part {
            return true;
        }
        if !p.contains("as=") && (p.starts_with("application/json") || p.starts_with("*/*")) {
            return false;
        }
    }
    false
}

/// The request's query parameters.
fn query(req: &Request) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default()
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    matches!(q.get(name).map(String::as_str), Some("true" | "1"))
}

/// Decodes a request body: JSON, YAML or Kubernetes protobuf.
fn decode_body(headers: &HeaderMap, bytes: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/json"
        | "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "" => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded as JSON: {e}"
            ))
        }),
        "application/vnd.kubernetes.protobuf" => tug_api::protobuf::decode(bytes),
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            serde_norway::from_slice::<Value>(bytes).map_err(|e| {
                ApiError::bad_request(format!(
                    "the body of the request could not be decoded as YAML: {e}"
                ))
            })
        }
        _ => Err(ApiError::unsupported_media_type(ct)),
    }
}

/// How much of an oversized body is read (and dropped) so that the client, still sending,
/// receives the 413 instead of a reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

async fn read_body(req: Request) -> Result<(HeaderMap, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        total += chunk.len();
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::too_large(format!(
            "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
        )));
    }
    Ok((parts.headers, Bytes::from(buf)))
}

/// The entry point of every request.
pub async fn handle(State(server): State<Arc<ApiServer>>, req: Request) -> Response {
    let identity = match auth::authenticate(&req, &server.token) {
        Ok(id) => id,
        Err(e) => return error_response(&e),
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let verb = method.as_str().to_ascii_lowercase();
    if let Err(e) = auth::authorize(identity.as_ref(), &verb, &path) {
        return error_response(&e);
    }
    let started = std::time::Instant::now();
    // Bodies are read whole before anything answers, so that an early error never leaves
    // the client writing into a closed stream (it would see a reset, not the Status).
    let req = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        let (parts, body) = req.into_parts();
        match read_body(Request::from_parts(parts.clone(), body)).await {
            Ok((_, bytes)) => Request::from_parts(parts, Body::from(bytes)),
            Err(e) => return error_response(&e),
        }
    } else {
        req
    };
    let resource = paths::parse(&path)
        .ok()
        .flatten()
        .map(|t| t.resource.plural)
        .unwrap_or("");
    let watching = req
        .uri()
        .query()
        .is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    let resp = match route(&server, identity, req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code, reason = e.reason, "request failed");
            error_response(&e)
        }
    };
    let verb = if watching { "watch".to_string() } else { verb };
    server.metrics.observe(
        &verb,
        resource,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

async fn route(
    server: &ApiServer,
    identity: Option<Identity>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    let ok = |body: Value| Ok(json_response(StatusCode::OK, &body, "application/json"));
    match path.as_str() {
        "/metrics" => {
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                server.metrics.render(),
            )
                .into_response());
        }
        "/healthz" | "/livez" | "/readyz" => {
            return Ok(
                (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response(),
            );
        }
        "/version" => {
            return ok(json!({
                "major": KUBE_VERSION.0,
                "minor": KUBE_VERSION.1,
                "gitVersion": format!("v{}.{}.0-tugboat.{}", KUBE_VERSION.0, KUBE_VERSION.1, env!("CARGO_PKG_VERSION")),
                "gitCommit": "",
                "gitTreeState": "clean",
                "buildDate": "",
                "goVersion": "",
                "compiler": "rustc",
                "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
            }));
        }
        _ => {}
    }
    if path.starts_with("/healthz/") || path.starts_with("/livez/") || path.starts_with("/readyz/")
    {
        return Ok((StatusCode::OK, "ok").into_response());
    }
    let accept_raw = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let discovery_doc = match segs.as_slice() {
        ["api"] if discovery::wants_aggregated(&accept_raw) => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::aggregated(true),
                discovery::AGGREGATED,
            ));
        }
        ["apis"] if discovery::wants_aggregated(&accept_raw) => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::aggregated(false),
                discovery::AGGREGATED,
            ));
        }
        ["api"] => Some(discovery::core_versions()),
        ["apis"] => Some(discovery::group_list()),
        ["api", v] => discovery::resource_list("", v),
        ["apis", g] => discovery::group(g),
        ["apis", g, v] => discovery::resource_list(g, v),
        _ => None,
    };
    let openapi_doc = match segs.as_slice() {
        ["openapi", "v2"] => {
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                crate::openapi::v2(),
            )
                .into_response());
        }
        ["openapi", "v3"] => Some(crate::openapi::index()),
        ["openapi", "v3", "api", v] => crate::openapi::document("", v),
        ["openapi", "v3", "apis", g, v] => crate::openapi::document(g, v),
        ["openapi", ..] => return Err(ApiError::no_route(&path)),
        _ => None,
    };
    if let Some(doc) = openapi_doc {
        return ok(doc);
    }
    if let Some(doc) = discovery_doc {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed(
                "discovery documents are read-only",
            ));
        }
        return ok(doc);
    }
    if matches!(segs.as_slice(), ["api", ..] | ["apis", ..]) {
        let target = paths::parse(&path)?.ok_or_else(|| ApiError::no_route(&path))?;
        return resource(server, identity, target, req).await;
    }
    Err(ApiError::no_route(&path))
}

/// How unknown fields are treated (`fieldValidation`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

fn field_validation(q: &HashMap<String, String>) -> FieldValidation {
    match q.get("fieldValidation").map(String::as_str) {
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        _ => FieldValidation::Warn,
    }
}

/// Checks a body for fields its kind does not have: an error with Strict, else they are
/// dropped (as decoding into the typed object does) and, with Warn, reported as warnings.
fn check_fields(
    r: &Resource,
    q: &HashMap<String, String>,
    body: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let mode = field_validation(q);
    let unknown = tug_api::schema::unknown_fields(
        r.group,
        r.version,
        r.kind,
        body,
        mode != FieldValidation::Strict,
    );
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let list = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect::<Vec<_>>();
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        ))),
        FieldValidation::Warn => Ok(list),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// The field manager of a write that names none: the User-Agent's product, as Kubernetes does.
fn default_manager(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|p| !p.is_empty())
        .unwrap_or("unknown")
        .chars()
        .take(128)
        .collect()
}

/// Adds `Warning` headers to a response.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn write_options(q: &HashMap<String, String>, manager: &str) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid dryRun {other:?}: the only supported value is All"
            )));
        }
    };
    if let Some(v) = q.get("fieldValidation")
        && !matches!(v.as_str(), "Strict" | "Warn" | "Ignore" | "")
    {
        return Err(ApiError::bad_request(format!(
            "invalid fieldValidation {v:?}: must be one of Ignore, Warn or Strict"
        )));
    }
    Ok(WriteOptions {
        dry_run,
        manager: q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned()
            .unwrap_or_else(|| manager.to_string()),
        force: flag(q, "force"),
    })
}

async fn resource(
    server: &ApiServer,
    identity: Option<Identity>,
    t: Target,
    req: Request,
) -> Result<Response, ApiError> {
    let r: &'static Resource = t.resource;
    let q = query(&req);
    let manager = default_manager(req.headers());
    let acc = accept(req.headers())?;
    let ns = t.namespace.as_deref();
    let reg = &server.registry;
    let method = req.method().clone();
    let sub = t.subresource.as_deref();
    if sub == Some("scale") {
        return scale(server, r, ns, t.name.as_deref(), &q, req).await;
    }
    if let Some(s) = sub
        && !matches!(s, "status" | "finalize")
    {
        return Err(ApiError::new(
            501,
            "NotImplemented",
            format!("the {s} subresource of {} is not served yet", r.plural),
        ));
    }
    let respond = |code: StatusCode, obj: Value| {
        let body = if acc.table {
            registry::to_table(r, &obj)
        } else {
            obj
        };
        Ok(json_response(code, &body, "application/json"))
    };
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
        return respond(StatusCode::CREATED, review(r, body, identity.as_ref()));
    }
    match (method.clone(), t.name.as_deref()) {
        (Method::GET, Some(name)) => respond(StatusCode::OK, reg.get(r, ns, name).await?),
        (Method::GET, None) if flag(&q, "watch") => {
            watch(server, r, t.namespace.clone(), &q, acc.table).await
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
            list_response(reg, r, ns, &opts, acc.table).await
        }
        (Method::POST, None) => {
            let opts = write_options(&q, &manager)?;
            let (headers, bytes) = read_body(req).await?;
            let mut body = decode_body(&headers, &bytes)?;
            let warnings = check_fields(r, &q, &mut body)?;
            let created = reg.create(r, ns, body, &opts).await?;
            respond(StatusCode::CREATED, created).map(|resp| with_warnings(resp, &warnings))
        }
        (Method::PUT, Some(name)) => {
            let opts = write_options(&q, &manager)?;
            let (headers, bytes) = read_body(req).await?;
            let mut body = decode_body(&headers, &bytes)?;
            let warnings = check_fields(r, &q, &mut body)?;
            let updated = reg.update(r, ns, name, body, sub, &opts).await?;
            respond(StatusCode::OK, updated).map(|resp| with_warnings(resp, &warnings))
        }
        (Method::PATCH, Some(name)) => {
            let opts = write_options(&q, &manager)?;
            let kind = patch_type(req.headers())?;
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
                check_fields(r, &q, &mut body)?
            };
            let patched = reg.patch(r, ns, name, kind, &body, sub, &opts).await?;
            respond(StatusCode::OK, patched).map(|resp| with_warnings(resp, &warnings))
        }
        (Method::DELETE, Some(name)) => {
            let (headers, bytes) = read_body(req).await?;
            let body = if bytes.is_empty() {
                json!({})
            } else {
                decode_body(&headers, &bytes)?
            };
            let opts = delete_options(&q, &body)?;
            let out = reg.delete(r, ns, name, &opts).await?;
            Ok(json_response(StatusCode::OK, &out, "application/json"))
        }
        (Method::DELETE, None) => {
            let (headers, bytes) = read_body(req).await?;
            let body = if bytes.is_empty() {
                json!({})
            } else {
                decode_body(&headers, &bytes)?
            };
            let opts = delete_options(&q, &body)?;
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

/// A list, encoded item by item as the store is read: the JSON text (or Table rows) is all
/// that is held, never the whole list as values.
async fn list_response(
    reg: &registry::Registry,
    r: &'static Resource,
    ns: Option<&str>,
    opts: &ListOptions,
    table: bool,
) -> Result<Response, ApiError> {
    if table {
        let mut rows = Vec::new();
        let list = reg
            .list_each(r, ns, opts, |item| {
                rows.push(registry::row(r, &item.into_value()));
                Ok(())
            })
            .await?;
        let t = registry::table_of(r, rows, list.get("metadata"));
        return Ok(json_response(StatusCode::OK, &t, "application/json"));
    }
    let mut buf: Vec<u8> = b"{\"items\":[".to_vec();
    let mut first = true;
    let list = reg
        .list_each(r, ns, opts, |item| {
            if !first {
                buf.push(b',');
            }
            first = false;
            item.write_json(&mut buf)
        })
        .await?;
    buf.extend_from_slice(b"]");
    for k in ["kind", "apiVersion", "metadata"] {
        buf.extend_from_slice(format!(",\"{k}\":").as_bytes());
        serde_json::to_writer(&mut buf, &list[k]).map_err(|e| ApiError::internal(e.to_string()))?;
    }
    buf.push(b'}');
    let mut resp = Response::new(Body::from(buf));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The patch format a request's Content-Type names.
fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))
}

/// The scale subresource: GET, PUT and PATCH.
async fn scale(
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

fn req_path_description(r: &Resource, named: bool) -> String {
    if named {
        format!("a single {}", r.singular())
    } else {
        format!("the {} collection", r.plural)
    }
}

fn delete_options(q: &HashMap<String, String>, body: &Value) -> Result<DeleteOptions, ApiError> {
    let dry_run = write_options(q, "")?.dry_run
        || body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let grace = match q.get("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        ),
        None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let policy = q
        .get("propagationPolicy")
        .cloned()
        .or_else(|| {
            body.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    if !matches!(policy.as_str(), "" | "Orphan" | "Background" | "Foreground") {
        return Err(ApiError::bad_request(format!(
            "invalid propagationPolicy {policy:?}"
        )));
    }
    Ok(DeleteOptions {
        dry_run,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        grace_period_seconds: grace,
    })
}

/// Answers SelfSubjectAccessReview and SelfSubjectReview for the caller.
fn review(r: &Resource, mut body: Value, identity: Option<&Identity>) -> Value {
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
    match r.kind {
        "SelfSubjectAccessReview" => {
            let allowed = identity.is_some_and(Identity::is_master);
            body["status"] = if allowed {
                json!({"allowed": true, "reason": "the caller is in group system:masters"})
            } else {
                json!({"allowed": false, "reason": "only system:masters is authorized until RBAC is served"})
            };
        }
        _ => {
            body["status"] = json!({"userInfo": {"username": user, "groups": groups}});
        }
    }
    body
}

async fn watch(
    server: &ApiServer,
    r: &'static Resource,
    namespace: Option<String>,
    q: &HashMap<String, String>,
    table: bool,
) -> Result<Response, ApiError> {
    let timeout = match q.get("timeoutSeconds") {
        Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
        })?)),
        None => None,
    };
    let opts = WatchOptions {
        label_selector: q.get("labelSelector").cloned().unwrap_or_default(),
        field_selector: q.get("fieldSelector").cloned().unwrap_or_default(),
        resource_version: q.get("resourceVersion").cloned().unwrap_or_default(),
        allow_bookmarks: flag(q, "allowWatchBookmarks"),
        send_initial_events: q.get("sendInitialEvents").map(|v| v == "true"),
        timeout,
    };
    let rx = server.registry.watch(r, namespace, opts).await?;
    let stream = ReceiverStream::new(rx).map(move |ev| {
        let line = if table && matches!(ev.kind(), "ADDED" | "MODIFIED" | "DELETED") {
            let mut ev = ev.into_value();
            let mut t = registry::to_table(r, &ev["object"]);
            if let Some(m) = ev["object"].get("metadata") {
                t["metadata"]["resourceVersion"] =
                    m.get("resourceVersion").cloned().unwrap_or(Value::Null);
            }
            ev["object"] = t;
            format!("{ev}\n")
        } else {
            ev.to_line()
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
