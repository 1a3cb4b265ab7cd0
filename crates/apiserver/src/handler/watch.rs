//! Watches: the registry's events as a chunked stream of JSON lines (or Table rows), or of
//! length-delimited protobuf frames for clients that ask for protobuf.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::response::Response;
use http::{HeaderValue, header};
use tug_api::{ApiError, Resource};

use std::time::Duration;

use axum::body::Body;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::ApiServer;
use crate::registry::WatchOptions;

use super::params::*;

pub(super) async fn watch(
    server: &ApiServer,
    r: &'static Resource,
    namespace: Option<String>,
    q: &HashMap<String, String>,
    mut shape: super::shape::Shape,
    protobuf: bool,
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
    let transform = shape.form != super::shape::Form::Object;
    // As kube-apiserver: protobuf for whole objects of kinds that have a protobuf form.
    if protobuf && !transform && tug_api::protobuf::has_protobuf(&r.api_version(), r.kind) {
        return Ok(protobuf_watch(rx));
    }
    let stream = ReceiverStream::new(rx).map(move |ev| {
        let line =
            if transform && matches!(ev.kind(), "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK") {
                let mut ev = ev.into_value();
                ev["object"] = shape.event_object(r, &ev["object"]);
                crate::registry::WatchEvent::Json(ev).to_line()
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

/// The events as protobuf frames. An object that cannot be encoded ends the stream with an
/// ERROR event saying so (the client's next watch starts over).
fn protobuf_watch(rx: tokio::sync::mpsc::Receiver<crate::registry::WatchEvent>) -> Response {
    let frames = ReceiverStream::new(rx)
        .map(|ev| {
            let ev = ev.into_value();
            let kind = ev["type"].as_str().unwrap_or_default();
            tug_api::protobuf::watch_frame(kind, &ev["object"]).ok_or_else(|| {
                let status = ApiError::internal(format!(
                    "the {kind} event's object has no protobuf form: watch it in JSON"
                ))
                .to_status();
                tug_api::protobuf::watch_frame("ERROR", &status).unwrap_or_default()
            })
        })
        // The frames up to and including the first that could not be encoded.
        .map_while({
            let mut ended = false;
            move |frame| {
                if ended {
                    return None;
                }
                ended = frame.is_err();
                Some(frame.unwrap_or_else(|error| error))
            }
        })
        .map(|frame| Ok::<_, std::convert::Infallible>(Bytes::from(frame)));
    let mut resp = Response::new(Body::from_stream(frames));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.kubernetes.protobuf;stream=watch"),
    );
    resp
}
