//! The request pipeline: authenticate, authorize, route (discovery, OpenAPI or a resource),
//! decode the body, call the registry, encode the answer. Every error is a `Status`.

mod io;
mod params;
pub mod protobuf;
mod resource;
mod shape;
mod watch;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use tug_api::ApiError;

use crate::auth::{self, Identity};
use crate::discovery;
use crate::paths;
use crate::{ApiServer, KUBE_VERSION};

use io::*;

/// The entry point of every request.
pub async fn handle(State(server): State<Arc<ApiServer>>, req: Request) -> Response {
    let identity = match auth::authenticate(&req, &server.token, server.node_token.as_deref()) {
        Ok(auth::Credentials::Known(id)) => id,
        Ok(auth::Credentials::Bearer(token)) => match server.authenticate_bearer(&token).await {
            Some(id) => Some(id),
            None => return error_response(&ApiError::unauthorized()),
        },
        Err(e) => return error_response(&e),
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // Unauthenticated requests act as the anonymous user, whom only the public paths admit.
    let identity = identity.unwrap_or_else(Identity::anonymous);
    let identity = match crate::authz::impersonation::impersonate(
        &server.registry.authorizer,
        identity,
        req.headers(),
    ) {
        Ok(id) => id,
        Err(e) => return error_response(&e),
    };
    let attributes = crate::authz::request::attributes(method.as_str(), &path, req.uri().query());
    let audit = server.audit.get();
    let mut record = audit.and_then(|a| a.begin(&identity, &attributes, &audit_info(&req)));
    let decision = server.registry.authorizer.decide(&identity, &attributes);
    if !decision.allowed {
        let e = crate::authz::forbidden(&identity, &attributes, &decision.reason);
        tracing::debug!(user = %identity.user, %method, uri = %req.uri(), reason = %decision.reason, "forbidden");
        if let (Some(a), Some(r)) = (audit, record.as_mut()) {
            a.finish(
                r,
                "ResponseComplete",
                e.code,
                None,
                None,
                Some(("forbid", &decision.reason)),
            );
        }
        return error_response(&e);
    }
    let verb = method.as_str().to_ascii_lowercase();
    let started = std::time::Instant::now();
    // Bodies are read whole before anything answers, so that an early error never leaves
    // the client writing into a closed stream (it would see a reset, not the Status).
    let mut request_body = None;
    let req = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        let (parts, body) = req.into_parts();
        match read_body(Request::from_parts(parts.clone(), body)).await {
            Ok((_, bytes)) => {
                if record.is_some() {
                    request_body = decode_body(&parts.headers, &bytes).ok();
                }
                Request::from_parts(parts, Body::from(bytes))
            }
            Err(e) => return error_response(&e),
        }
    } else {
        req
    };
    let catalog = server.registry.catalog();
    let resource = paths::parse(&catalog, &path)
        .ok()
        .flatten()
        .map(|t| t.resource.plural)
        .unwrap_or("");
    let watching = req
        .uri()
        .query()
        .is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    let (resp, notes) = crate::admission::notes::scope(route(&server, Some(identity), req)).await;
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code, reason = e.reason, "request failed");
            error_response(&e)
        }
    };
    let resp = with_warnings(resp, &notes.warnings);
    if let Some(r) = record.as_mut() {
        r.annotate(notes.annotations);
    }
    let resp = match (audit, record.as_mut()) {
        (Some(a), Some(r)) => {
            audited(
                a,
                r,
                resp,
                request_body.as_ref(),
                watching,
                &decision.reason,
            )
            .await
        }
        _ => resp,
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

/// What an audit record says of where a request came from.
fn audit_info(req: &Request) -> crate::audit::RequestInfo {
    crate::audit::RequestInfo {
        uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        source_ip: req
            .extensions()
            .get::<crate::tls::PeerAddr>()
            .map(|p| p.0.ip().to_string())
            .unwrap_or_default(),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    }
}

/// Writes a request's last audit stage: ResponseStarted for a watch or a stream (whose end
/// is not waited for), ResponseComplete otherwise, with the response body when the level
/// asks for it.
async fn audited(
    audit: &crate::audit::Audit,
    record: &mut crate::audit::Record,
    resp: Response,
    request: Option<&Value>,
    long_running: bool,
    reason: &str,
) -> Response {
    let code = resp.status().as_u16();
    let decision = Some(("allow", reason));
    let streaming = long_running
        || resp.status() == StatusCode::SWITCHING_PROTOCOLS
        || !record.wants_response();
    if streaming {
        let stage = if long_running || code == 101 {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        audit.finish(record, stage, code, request, None, decision);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(bytes) => {
            audit.finish(
                record,
                "ResponseComplete",
                code,
                request,
                Some(&bytes),
                decision,
            );
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(e) => {
            audit.finish(record, "ResponseComplete", code, request, None, decision);
            error_response(&ApiError::internal(format!("reading the response: {e}")))
        }
    }
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
    if let Some(issuer) = server.tokens.get() {
        match path.as_str() {
            "/.well-known/openid-configuration" => return ok(issuer.openid_configuration()),
            "/openid/v1/jwks" => {
                return Ok(json_response(
                    StatusCode::OK,
                    &issuer.jwks(),
                    "application/jwk-set+json",
                ));
            }
            _ => {}
        }
    }
    if let Some(resp) =
        crate::health::serve(server, &path, req.uri().query().unwrap_or_default()).await
    {
        return Ok(resp);
    }
    let accept_raw = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let catalog = server.registry.catalog();
    let catalog = catalog.as_ref();
    if let ["apis", g, v, ..] = segs.as_slice()
        && let Some(backend) = server.aggregator.backend(g, v)
    {
        return server
            .aggregator
            .proxy(&server.registry, &backend, identity.as_ref(), req)
            .await;
    }
    let discovery_doc = match segs.as_slice() {
        ["api"] if discovery::wants_aggregated(&accept_raw) => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::aggregated(catalog, true),
                discovery::AGGREGATED,
            ));
        }
        ["apis"] if discovery::wants_aggregated(&accept_raw) => {
            let mut doc = discovery::aggregated(catalog, false);
            server.aggregator.extend_aggregated(&mut doc);
            return Ok(json_response(StatusCode::OK, &doc, discovery::AGGREGATED));
        }
        ["api"] => Some(discovery::core_versions()),
        ["apis"] => {
            let mut doc = discovery::group_list(catalog);
            server.aggregator.extend_group_list(&mut doc);
            Some(doc)
        }
        ["api", v] => discovery::resource_list(catalog, "", v),
        ["apis", g] => discovery::group(catalog, g).or_else(|| server.aggregator.group(g)),
        ["apis", g, v] => discovery::resource_list(catalog, g, v),
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
        ["openapi", "v3"] => Some(crate::openapi::index(catalog)),
        ["openapi", "v3", "api", v] => crate::openapi::document(catalog, "", v),
        ["openapi", "v3", "apis", g, v] => crate::openapi::document(catalog, g, v),
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
        let target = paths::parse(catalog, &path)?.ok_or_else(|| ApiError::no_route(&path))?;
        let deprecated = target
            .resource
            .custom
            .and_then(|c| c.deprecation_warning.clone());
        let resp = resource::resource(server, identity, target, req).await?;
        // Every answer of a deprecated custom resource version carries its warning.
        return Ok(match deprecated {
            Some(w) => with_warnings(resp, &[w]),
            None => resp,
        });
    }
    Err(ApiError::no_route(&path))
}
