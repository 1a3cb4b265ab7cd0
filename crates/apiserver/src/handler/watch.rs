//! Watches: the registry's events as a chunked stream of JSON lines (or Table rows).

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
