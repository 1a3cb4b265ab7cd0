//! The one generic registry: every resource is stored, read, listed, watched, written and
//! deleted by the same code. Objects are JSON values stored under
//! `/registry/<group/>plural/<namespace/>name`; their `resourceVersion` is the store's
//! mod revision.

mod allocate;
mod approval;
mod automount;
mod binding;
mod cache;
mod convert;
mod ephemeral;
mod eviction;
mod fields;
mod graceful;
mod pod_update;
mod priority;
mod protected;
mod quota;
mod scale;
mod strategy;
mod table;
mod token;
mod watch;
mod write;

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};
use tug_api::catalog::Catalog;
use tug_api::selector::{FieldSelector, LabelSelector};
use tug_api::{ApiError, Resource, meta};
use tug_store::{Error as StoreError, KeyRange, KeyValue, RangeOptions, Store};

pub use automount::TOKEN_MOUNT_PATH;
pub use table::{IncludeObject, TableOptions, row, table_of, to_table};
pub use watch::{WatchEvent, WatchOptions};
pub use write::{DeleteOptions, PatchType, WriteOptions};

/// The registry over one store.
#[derive(Clone)]
pub struct Registry {
    pub(crate) store: Arc<dyn Store>,
    caches: Arc<cache::Caches>,
    /// Held from allocating a Service's addresses until the Service is stored.
    service_lock: Arc<tokio::sync::Mutex<()>>,
    /// Held from checking a create against the namespace's quotas until it is stored.
    quota_lock: Arc<tokio::sync::Mutex<()>>,
    /// Whether pods get ServiceAccount admission (on once the server signs tokens).
    service_accounts: Arc<std::sync::atomic::AtomicBool>,
    /// What is served: the built-in resources and those of established custom resource
    /// definitions, swapped whole when a definition changes.
    catalog: Arc<std::sync::RwLock<Arc<Catalog>>>,
    /// The authorizer: the request pipeline asks it, and RBAC writes are checked against it
    /// for privilege escalation.
    pub(crate) authorizer: Arc<crate::authz::Authorizer>,
    /// The configurable admission chain (webhooks).
    pub(crate) admission: Arc<crate::admission::Admission>,
}

/// One object of a list: a value, or JSON text straight from the watch cache.
pub enum ListItem {
    Value(Value),
    Raw(Arc<str>),
}

impl ListItem {
    /// The object as a value.
    pub fn into_value(self) -> Value {
        match self {
            ListItem::Value(v) => v,
            ListItem::Raw(t) => cache::parse(&t),
        }
    }

    /// Appends the object's JSON to `buf`.
    pub fn write_json(&self, buf: &mut Vec<u8>) -> Result<(), ApiError> {
        match self {
            ListItem::Value(v) => {
                tug_api::protobuf::gojson::write(buf, v);
                Ok(())
            }
            ListItem::Raw(t) => {
                buf.extend_from_slice(t.as_bytes());
                Ok(())
            }
        }
    }
}

/// Objects read from the store at a time by an unlimited list.
const LIST_BATCH: i64 = 500;

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
    pub resource_version_match: String,
}

/// Maps a store failure to the Status a client sees.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::gone(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::FutureRevision { requested, current } => ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current resource version: {current}"),
        ),
        StoreError::ValueTooLarge { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// Applies a kind's defaults to an object again (after an admission webhook's patch, as
/// kube-apiserver defaults the patched object).
pub(crate) fn default_again(r: &Resource, obj: &mut Value) {
    strategy::of(r).defaults(obj);
}

/// An object written through `from` in the shape of `to`, another version of the same
/// resource (what an admission webhook matched through `matchPolicy: Equivalent` is sent).
pub(crate) fn convert_between(from: &Resource, to: &Resource, obj: &Value) -> Value {
    let mut v = convert::to_stored(from, obj).into_owned();
    convert::to_served(to, &mut v);
    v
}

/// The store prefix of a resource, optionally within a namespace.
pub(crate) fn prefix(r: &Resource, namespace: Option<&str>) -> String {
    let storage = r.storage.trim_start_matches('/');
    match namespace {
        Some(ns) if r.namespaced() => format!("/registry/{storage}/{ns}/"),
        _ => format!("/registry/{storage}/"),
    }
}

/// The store key of one object.
pub(crate) fn key(r: &Resource, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", prefix(r, namespace))
}

/// Decodes a stored object, stamping its resourceVersion and the requested apiVersion/kind.
pub(crate) fn decode(r: &Resource, kv: &KeyValue, revision: i64) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
    convert::to_served(r, &mut obj);
    meta::set(&mut obj, "resourceVersion", revision.to_string());
    Ok(obj)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: i64,
    start: String,
}

fn parse_continue(token: &str) -> Result<Continue, ApiError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ApiError::bad_request("invalid continue token"))?;
    serde_json::from_slice(&bytes).map_err(|_| ApiError::bad_request("invalid continue token"))
}

fn make_continue(rv: i64, start: &str) -> String {
    let json = json!({"rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            caches: Arc::default(),
            service_lock: Arc::default(),
            quota_lock: Arc::default(),
            service_accounts: Arc::default(),
            catalog: Arc::default(),
            authorizer: Arc::default(),
            admission: Arc::default(),
        }
    }

    /// What is served now.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces what is served.
    pub(crate) fn set_catalog(&self, catalog: Catalog) {
        let catalog = Arc::new(catalog);
        match self.catalog.write() {
            Ok(mut c) => *c = catalog,
            Err(poisoned) => *poisoned.into_inner() = catalog,
        }
    }

    /// Turns on ServiceAccount admission: pods must name an existing service account and get
    /// its token mounted (see `automount`).
    pub fn enable_service_account_admission(&self) {
        self.service_accounts
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tells the watch caches that the store compacted its history up to `revision`.
    pub fn compacted(&self, revision: i64) {
        self.caches.compacted(revision);
    }

    /// The current object and its store entry, or `None`.
    pub(crate) async fn current(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<(Value, KeyValue)>, ApiError> {
        let resp = self
            .store
            .range(
                KeyRange::key(key(r, namespace, name)),
                RangeOptions::default(),
            )
            .await
            .map_err(store_error)?;
        match resp.kvs.into_iter().next() {
            Some(kv) => Ok(Some((decode(r, &kv, kv.mod_revision)?, kv))),
            None => Ok(None),
        }
    }

    /// GET of one object.
    pub async fn get(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.current(r, namespace, name)
            .await?
            .map(|(obj, _)| obj)
            .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))
    }

    /// LIST with selectors and pagination, as one JSON value.
    pub async fn list(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Value, ApiError> {
        let mut items = Vec::new();
        let mut list = self
            .list_each(r, namespace, opts, |item| {
                items.push(item.into_value());
                Ok(())
            })
            .await?;
        list["items"] = Value::Array(items);
        Ok(list)
    }

    /// LIST, handing each matching object to `each` as it is read (in batches from the store,
    /// at one revision), so that a large list is never held whole. Returns the list without
    /// its items.
    pub async fn list_each(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        opts: &ListOptions,
        mut each: impl FnMut(ListItem) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let labels = LabelSelector::parse(&opts.label_selector)?;
        let fields = fields::parse(r, &opts.field_selector)?;
        let prefix = prefix(r, namespace);
        // resourceVersion=0 accepts any recent state: the watch cache answers, whole. So does
        // an unpaged consistent list, once the cache has caught up with the store.
        let any = opts.resource_version == "0" && opts.resource_version_match != "Exact";
        let consistent = opts.resource_version.is_empty() && opts.limit <= 0;
        if (any || consistent)
            && opts.continue_token.is_empty()
            && let Ok(cache) = self.caches.get(&self.store, r).await
            && (any || cache.fresh(&self.store).await)
        {
            let (items, revision) = cache.snapshot(&prefix)?;
            let raw =
                labels.requirements.is_empty() && fields.terms.is_empty() && cache.stamped_for(r);
            for text in items {
                if raw {
                    each(ListItem::Raw(text))?;
                    continue;
                }
                let mut obj = cache::parse(&text);
                convert::to_served(r, &mut obj);
                if labels.matches(&meta::labels(&obj)) && fields::matches(r, &fields, &obj) {
                    each(ListItem::Value(obj))?;
                }
            }
            return Ok(json!({
                "kind": r.list_kind(),
                "apiVersion": r.api_version(),
                "metadata": {"resourceVersion": revision.to_string()},
                "items": [],
            }));
        }
        let end = tug_store_prefix_end(&prefix);
        let (mut start, mut revision) = (prefix.clone(), 0i64);
        if !opts.continue_token.is_empty() {
            let c = parse_continue(&opts.continue_token)?;
            if !c.start.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue token does not match this list",
                ));
            }
            start = c.start;
            revision = c.rv;
        } else if opts.resource_version_match == "Exact" {
            revision = opts
                .resource_version
                .parse()
                .map_err(|_| ApiError::bad_request("resourceVersion must be a number"))?;
        } else if !opts.resource_version.is_empty() && opts.resource_version_match.is_empty() {
            opts.resource_version
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("resourceVersion must be a number"))?;
        }
        let limit = if opts.limit > 0 {
            opts.limit as usize
        } else {
            0
        };
        let mut taken = 0usize;
        let mut next_start: Option<String> = None;
        let mut remaining = 0i64;
        loop {
            let want = if limit == 0 {
                LIST_BATCH
            } else {
                (limit - taken) as i64
            };
            let resp = self
                .store
                .range(
                    KeyRange::range(start.clone().into_bytes(), end.clone()),
                    RangeOptions {
                        revision,
                        limit: want,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if !opts.continue_token.is_empty() => {
                        ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.")
                    }
                    other => store_error(other),
                })?;
            if revision == 0 {
                revision = resp.revision;
            }
            let Some(last) = resp.kvs.last().map(|kv| kv.key.clone()) else {
                break;
            };
            for kv in &resp.kvs {
                let obj = decode(r, kv, kv.mod_revision)?;
                if labels.matches(&meta::labels(&obj)) && fields::matches(r, &fields, &obj) {
                    taken += 1;
                    each(ListItem::Value(obj))?;
                }
            }
            let mut after = last;
            after.push(0);
            start = String::from_utf8_lossy(&after).into_owned();
            if !resp.more {
                break;
            }
            if limit > 0 && taken >= limit {
                next_start = Some(start.clone());
                remaining = resp.count - resp.kvs.len() as i64;
                break;
            }
        }
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(s) = next_start {
            metadata["continue"] = json!(make_continue(revision, &s));
            if labels.requirements.is_empty() && fields.terms.is_empty() && remaining > 0 {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "kind": r.list_kind(),
            "apiVersion": r.api_version(),
            "metadata": metadata,
            "items": [],
        }))
    }
}

/// The end of a key prefix range.
fn tug_store_prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Label selector and field selector of a request, parsed.
pub(crate) struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn parse(r: &Resource, label: &str, field: &str) -> Result<Self, ApiError> {
        Ok(Self {
            labels: LabelSelector::parse(label)?,
            fields: fields::parse(r, field)?,
        })
    }

    pub fn matches(&self, r: &Resource, obj: &Value) -> bool {
        self.labels.matches(&meta::labels(obj)) && fields::matches(r, &self.fields, obj)
    }

    /// Whether there is nothing to select by.
    pub fn is_empty(&self) -> bool {
        self.labels.requirements.is_empty() && self.fields.terms.is_empty()
    }
}

/// The store prefix of a namespaced resource in one namespace.
pub(crate) fn prefix_of(r: &Resource, namespace: &str) -> String {
    prefix(r, Some(namespace))
}
