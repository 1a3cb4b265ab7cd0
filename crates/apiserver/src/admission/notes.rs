//! What admission says besides yes or no: warnings for the client (`Warning` headers) and
//! annotations for the audit event, gathered per request in a task-local scope that the
//! request pipeline opens around each request.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// A request's warnings and audit annotations.
#[derive(Debug, Default)]
pub struct Notes {
    /// Warning texts, each once, in the order given.
    pub warnings: Vec<String>,
    /// Audit annotations; the first value given for a key stays.
    pub annotations: BTreeMap<String, String>,
}

tokio::task_local! {
    static NOTES: Arc<Mutex<Notes>>;
}

/// Runs `fut` with a fresh scope for notes, and returns what it noted.
pub async fn scope<F: Future>(fut: F) -> (F::Output, Notes) {
    let notes = Arc::new(Mutex::new(Notes::default()));
    let out = NOTES.scope(notes.clone(), fut).await;
    let taken = match notes.lock() {
        Ok(mut n) => std::mem::take(&mut *n),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    (out, taken)
}

fn with(f: impl FnOnce(&mut Notes)) {
    let _ = NOTES.try_with(|n| match n.lock() {
        Ok(mut n) => f(&mut n),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    });
}

/// Adds a warning for the client (outside a request scope it is only logged). Texts with
/// control characters are dropped, as kube-apiserver drops them.
pub fn warn(text: &str) {
    if text.is_empty() || text.chars().any(char::is_control) {
        return;
    }
    tracing::debug!(warning = text, "admission warning");
    with(|n| {
        if !n.warnings.iter().any(|w| w == text) {
            n.warnings.push(text.to_string());
        }
    });
}

/// Adds an audit annotation; a key already set keeps its first value.
pub fn annotate(key: &str, value: &str) {
    with(|n| {
        n.annotations
            .entry(key.to_string())
            .or_insert_with(|| value.to_string());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_are_gathered_per_scope_once_each() {
        let ((), notes) = scope(async {
            warn("first");
            warn("first");
            warn("bad\u{7}text");
            annotate("a/b", "1");
            annotate("a/b", "2");
        })
        .await;
        assert_eq!(notes.warnings, vec!["first".to_string()]);
        assert_eq!(notes.annotations["a/b"], "1");
        // Outside a scope nothing is kept and nothing fails.
        warn("lost");
        let ((), empty) = scope(async {}).await;
        assert!(empty.warnings.is_empty());
    }
}
