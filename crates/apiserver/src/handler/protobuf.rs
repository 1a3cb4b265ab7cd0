//! Protobuf responses: a client whose Accept header prefers
//! `application/vnd.kubernetes.protobuf` (client-go's typed clients, kubelets, controllers)
//! gets the object it asked for in that encoding. Handlers answer JSON; this layer re-encodes
//! whole-object answers of kinds with a protobuf form and leaves the rest (streams, Tables,
//! kinds without one) as they were, which such clients also accept.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, header};

/// The media type of Kubernetes protobuf.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Whether the request's Accept header puts plain protobuf before JSON.
fn prefers_protobuf(req: &Request) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let base = parts.next().unwrap_or("");
        let params: Vec<&str> = parts.collect();
        match base {
            PROTOBUF => {
                return !params
                    .iter()
                    .any(|p| p.starts_with("as=") || p.starts_with("stream="));
            }
            "application/json" | "application/*" | "*/*" | "application/yaml" => return false,
            _ => {}
        }
    }
    false
}

/// Whether the request is a watch or a stream (their answers are not one object).
fn streams(req: &Request) -> bool {
    let query = req.uri().query().unwrap_or("");
    let path = req.uri().path();
    query
        .split('&')
        .any(|kv| matches!(kv, "watch=1" | "watch=true"))
        || path.contains("/watch/")
        || ["/log", "/exec", "/attach", "/portforward", "/proxy"]
            .iter()
            .any(|s| path.ends_with(s) || path.contains(&format!("{s}/")))
}

/// The layer: re-encodes JSON answers as protobuf for clients that prefer it.
pub async fn responses(req: Request, next: Next) -> Response {
    let wanted = prefers_protobuf(&req) && !streams(&req);
    let resp = next.run(req).await;
    if !wanted
        || resp.headers().get(header::CONTENT_TYPE)
            != Some(&HeaderValue::from_static("application/json"))
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let encoded = serde_json::from_slice(&bytes)
        .ok()
        .and_then(|v| tug_api::protobuf::encode(&v));
    match encoded {
        Some(pb) => {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(pb))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}
