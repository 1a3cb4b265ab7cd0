//! `/healthz`, `/livez` and `/readyz`, as kube-apiserver serves them: each a list of named
//! checks (`?verbose` lists them; `/readyz/etcd` runs one), `ok` when all pass, and a 500
//! naming the failed ones otherwise. The `etcd` check reads the store's current revision: a
//! server whose etcd member lost its quorum is not ready, and says so.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ApiServer;

/// How long the store has to answer the etcd check.
const ETCD_TIMEOUT: Duration = Duration::from_secs(2);

/// The checks of an endpoint, in kube-apiserver's order.
fn checks(endpoint: &str) -> &'static [&'static str] {
    match endpoint {
        "readyz" => &[
            "ping",
            "log",
            "etcd",
            "etcd-readiness",
            "informer-sync",
            "shutdown",
        ],
        _ => &["ping", "log", "etcd"],
    }
}

/// Runs one check; Err carries the reason.
async fn run(server: &ApiServer, check: &str) -> Result<(), String> {
    match check {
        "etcd" | "etcd-readiness" => {
            match tokio::time::timeout(ETCD_TIMEOUT, server.registry.store.current_revision()).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("etcd: {e}")),
                Err(_) => Err(format!(
                    "etcd: no answer within {}s (has its member lost quorum?)",
                    ETCD_TIMEOUT.as_secs()
                )),
            }
        }
        _ => Ok(()),
    }
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Serves `/ENDPOINT` or `/ENDPOINT/CHECK`; None when the path is not a health endpoint.
pub async fn serve(server: &ApiServer, path: &str, query: &str) -> Option<Response> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let endpoint = parts.next()?;
    if !matches!(endpoint, "healthz" | "livez" | "readyz") {
        return None;
    }
    let all = checks(endpoint);
    if let Some(one) = parts.next().filter(|c| !c.is_empty()) {
        // kube-apiserver also names post-start hooks (`poststarthook/…`); they have run.
        if !all.contains(&one) && !one.starts_with("poststarthook/") {
            return Some(text(StatusCode::NOT_FOUND, "404 page not found\n".into()));
        }
        return Some(match run(server, one).await {
            Ok(()) => text(StatusCode::OK, "ok".into()),
            Err(e) => {
                tracing::warn!(check = one, reason = %e, "{endpoint} check failed");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal server error: {e}\n"),
                )
            }
        });
    }
    let verbose = query
        .split('&')
        .any(|p| p == "verbose" || p.starts_with("verbose="));
    let excluded: Vec<&str> = query
        .split('&')
        .filter_map(|p| p.strip_prefix("exclude="))
        .collect();
    let mut lines = String::new();
    let mut failed = false;
    for check in all {
        if excluded.contains(check) {
            lines.push_str(&format!("[+]{check} excluded: ok\n"));
            continue;
        }
        match run(server, check).await {
            Ok(()) => lines.push_str(&format!("[+]{check} ok\n")),
            Err(e) => {
                failed = true;
                tracing::warn!(check, reason = %e, "{endpoint} check failed");
                lines.push_str(&format!("[-]{check} failed: reason withheld\n"));
            }
        }
    }
    Some(if failed {
        lines.push_str(&format!("{endpoint} check failed\n"));
        text(StatusCode::INTERNAL_SERVER_ERROR, lines)
    } else if verbose {
        lines.push_str(&format!("{endpoint} check passed\n"));
        text(StatusCode::OK, lines)
    } else {
        text(StatusCode::OK, "ok".into())
    })
}
