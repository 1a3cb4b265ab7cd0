//! Bodies and answers: reading and decoding request bodies, what the client accepts, JSON
//! responses, Status errors and warnings.

use axum::body::Bytes;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use tokio_stream::StreamExt;
use tug_api::ApiError;

use crate::MAX_BODY_BYTES;

/// An answer: JSON with a status code.
pub(super) fn json_response(code: StatusCode, body: &Value, content_type: &str) -> Response {
    // Go's field order and closing newline, as kube-apiserver writes bodies.
    let mut resp = (code, tug_api::protobuf::gojson::to_vec(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

pub(super) fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status(), "application/json")
}

/// The shape the client's Accept header asks for: its first clause this server can answer.
pub(super) fn accept(headers: &HeaderMap) -> Result<super::shape::Form, ApiError> {
    negotiate(headers).map(|(form, _)| form)
}

/// Whether the first clause of the client's Accept header this server can answer is plain
/// protobuf (streams such as watches are then framed protobuf).
pub(super) fn accepts_protobuf(headers: &HeaderMap) -> bool {
    negotiate(headers).is_ok_and(|(_, protobuf)| protobuf)
}

/// The form the Accept header asks for, and whether it asks for it in protobuf.
fn negotiate(headers: &HeaderMap) -> Result<(super::shape::Form, bool), ApiError> {
    let raw = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    for part in raw.split(',') {
        let clause = part.trim();
        let base = clause.split(';').next().unwrap_or("").trim();
        // Plain protobuf is the object form (the protobuf layer encodes it); Tables and
        // metadata-only forms are answered in JSON.
        if base == "application/vnd.kubernetes.protobuf" && !clause.contains("as=") {
            return Ok((super::shape::Form::Object, true));
        }
        if !matches!(
            base,
            "application/json" | "application/*" | "*/*" | "application/yaml"
        ) {
            continue;
        }
        if let Some(form) = super::shape::Form::of_clause(clause) {
            return Ok((form, false));
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
    ))
}

/// Decodes a request body: JSON, YAML or Kubernetes protobuf.
pub(super) fn decode_body(headers: &HeaderMap, bytes: &Bytes) -> Result<Value, ApiError> {
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
pub(super) const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

pub(super) async fn read_body(req: Request) -> Result<(HeaderMap, Bytes), ApiError> {
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

/// Adds `Warning` headers to a response.
pub(super) fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}
