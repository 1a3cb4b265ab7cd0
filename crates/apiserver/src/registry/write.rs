//! Writes: create, update (including the status subresource), patch and delete, with
//! optimistic concurrency, defaulting, validation and namespace lifecycle admission.

use serde_json::{Map, Value, json};
use tug_api::time::now;
use tug_api::validation::{validate_label_value, validate_name, validate_qualified_name};
use tug_api::{ApiError, Cause, Resource, apply, catalog, meta, patch, strategic};
use tug_store::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeyRange, PutRequest, Txn, TxnOp,
};

use super::{Registry, key, store_error};
use super::{approval, ephemeral, graceful, pod_update, strategy};
use crate::admission::{Attributes, Operation};

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run everything but the write.
    pub dry_run: bool,
    /// The field manager the write is recorded under in `managedFields` (none: not recorded).
    pub manager: String,
    /// Server-side apply: take fields over from other managers instead of conflicting.
    pub force: bool,
    /// Who writes (RBAC objects are checked against their rights); `None` for the server's
    /// own writes.
    pub user: Option<crate::auth::Identity>,
}

/// The patch formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type of a Content-Type, if it is one.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        Some(match base {
            "application/json-patch+json" => PatchType::Json,
            "application/merge-patch+json" => PatchType::Merge,
            "application/strategic-merge-patch+json" => PatchType::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchType::Apply,
            _ => return None,
        })
    }
}

/// Options of a delete (`DeleteOptions` in the body or the query).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub grace_period_seconds: Option<i64>,
    /// `Orphan`, `Foreground`, `Background` or empty (Background).
    pub propagation: String,
    /// Who deletes; `None` for the server's own deletes.
    pub user: Option<crate::auth::Identity>,
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| GENERATE_ALPHABET[*b as usize % GENERATE_ALPHABET.len()] as char)
        .collect()
}

/// Top-level fields that are not spec: changes elsewhere move `metadata.generation`.
fn spec_of(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks apiVersion and kind of a body against the URL, filling them in when absent.
pub(crate) fn check_type(r: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let Value::Object(m) = obj else {
        return Err(ApiError::bad_request(
            "the body must be a JSON or YAML object",
        ));
    };
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != r.api_version() && !same_storage(r, v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                r.api_version()
            )));
        }
        _ => {}
    }
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if k != r.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                r.kind
            )));
        }
        _ => {}
    }
    m.insert("apiVersion".into(), json!(r.api_version()));
    m.insert("kind".into(), json!(r.kind));
    Ok(())
}

/// Whether `api_version` is another served version of the same resource.
fn same_storage(r: &Resource, api_version: &str) -> bool {
    catalog::BUILTIN
        .iter()
        .any(|o| o.storage == r.storage && o.api_version() == api_version)
}

/// Validates metadata (and what the kind checks with it); returns the causes.
fn validate(r: &Resource, obj: &Value) -> Vec<Cause> {
    let strategy = strategy::of(r);
    let mut causes = Vec::new();
    if let Some(c) = validate_name(strategy.name_rule(), meta::name(obj), "metadata.name") {
        causes.push(c);
    }
    for (k, v) in meta::labels(obj) {
        if let Some(c) = validate_qualified_name(k, "metadata.labels") {
            causes.push(c);
        }
        if let Some(c) = validate_label_value(v, "metadata.labels") {
            causes.push(c);
        }
    }
    if let Some(Value::Object(ann)) = obj.pointer("/metadata/annotations") {
        for k in ann.keys() {
            if let Some(c) = validate_qualified_name(k, "metadata.annotations") {
                causes.push(c);
            }
        }
    }
    causes.extend(strategy.validate_keys(obj));
    causes
}

fn invalid(r: &Resource, obj: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(r.group, r.kind, meta::name(obj), causes)
}

/// What a guarded write does to the key.
pub(super) enum Guarded {
    Put(Vec<u8>),
    Delete,
}

impl Registry {
    /// Writes `key` only if it is still at `mod_revision` (optimistic concurrency); returns the
    /// new revision, or 409 Conflict when someone wrote first.
    pub(super) async fn write_if_unchanged(
        &self,
        r: &Resource,
        name: &str,
        k: String,
        mod_revision: i64,
        op: Guarded,
    ) -> Result<i64, ApiError> {
        let deleting = matches!(op, Guarded::Delete);
        let op = match op {
            Guarded::Put(bytes) => TxnOp::Put(PutRequest::new(k.clone(), bytes)),
            Guarded::Delete => TxnOp::Delete(DeleteRequest {
                range: KeyRange::key(k.clone()),
                prev_kv: false,
            }),
        };
        let resp = self
            .store
            .txn(Txn {
                compare: vec![Compare::new(
                    k.clone(),
                    CompareOp::Equal,
                    CompareTarget::ModRevision(mod_revision),
                )],
                success: vec![op],
                failure: vec![],
            })
            .await
            .map_err(store_error)?;
        if !resp.succeeded {
            return Err(ApiError::conflict(
                r.group,
                r.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if deleting && r.kind == "Service" && r.group.is_empty() {
            // The key past the resource's prefix is the claims' owner, `namespace/name`.
            let owner = k
                .strip_prefix(&super::prefix(r, None))
                .unwrap_or_default()
                .to_string();
            self.release_claims(&owner).await;
        }
        Ok(resp.revision)
    }

    /// Namespace lifecycle admission: a namespaced write needs an existing, active namespace.
    async fn admit_namespace(&self, r: &Resource, namespace: &str) -> Result<(), ApiError> {
        if !r.namespaced() {
            return Ok(());
        }
        let ns_res = catalog::lookup("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces missing from the catalog"))?;
        match self.current(ns_res, None, namespace).await? {
            None => Err(ApiError::not_found("", "namespaces", namespace)),
            Some((ns, _)) if ns.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// CREATE.
    pub async fn create(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_type(r, &mut obj)?;
        if r.custom.is_some_and(|c| c.terminating) {
            return Err(ApiError::forbidden(format!(
                "{}.{} {:?} is forbidden: create not allowed while custom resource definition is terminating",
                r.plural,
                r.group,
                meta::name(&obj)
            ))
            .with_details(r.group, r.plural, meta::name(&obj)));
        }
        if r.namespaced() {
            let Some(ns) = namespace else {
                return Err(ApiError::method_not_allowed(format!(
                    "create {} needs a namespace in the URL",
                    r.plural
                )));
            };
            let body_ns = meta::namespace(&obj);
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta::set(&mut obj, "namespace", ns);
        } else {
            meta::remove(&mut obj, "namespace");
        }
        if meta::name(&obj).is_empty()
            && let Some(generate) = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .map(str::to_string)
                .filter(|g| !g.is_empty())
        {
            meta::set(&mut obj, "name", format!("{generate}{}", random_suffix()));
        }
        let causes = validate(r, &obj);
        if !causes.is_empty() {
            return Err(invalid(r, &obj, causes));
        }
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta::remove(&mut obj, f);
        }
        meta::set(&mut obj, "uid", uuid::Uuid::new_v4().to_string());
        meta::set(&mut obj, "creationTimestamp", now());
        meta::metadata_mut(&mut obj).insert("generation".into(), json!(1));
        if r.kind == "Pod" && r.group.is_empty() {
            self.admit_priority(&mut obj).await?;
        }
        strategy::of(r).defaults(&mut obj);
        if r.kind == "Pod"
            && r.group.is_empty()
            && let Some(ns) = namespace
            && self
                .service_accounts
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.admit_service_account(ns, &mut obj).await?;
        }
        let attrs = Attributes {
            resource: r,
            subresource: None,
            namespace: namespace.unwrap_or(""),
            name: meta::name(&obj).to_string(),
            operation: Operation::Create,
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
            old: None,
            field_manager: &opts.manager,
            connect_kind: None,
        };
        self.admission.mutate(self, &attrs, &mut obj).await?;
        // What the kind prepares for creation (PrepareForCreate) follows admission.
        strategy::of(r).prepare_for_create(&mut obj);
        let service_lock = self.service_lock.clone();
        let _allocating = if r.kind == "Service" && r.group.is_empty() {
            let guard = service_lock.lock().await;
            self.allocate_service(&mut obj).await?;
            Some(guard)
        } else {
            None
        };
        if let Some(user) = &opts.user {
            self.authorizer
                .admit_write(user, r, None, namespace.unwrap_or(""), None, &obj)?;
        }
        let causes = strategy::of(r).validate(&obj);
        if !causes.is_empty() {
            return Err(invalid(r, &obj, causes));
        }
        if !opts.manager.is_empty() {
            tug_api::apply::record_update(None, &mut obj, &opts.manager, &r.api_version(), &now());
        }
        if let Some(ns) = namespace {
            self.admit_namespace(r, ns).await?;
        }
        self.admission.validate(self, &attrs, Some(&obj)).await?;
        let _quota = match namespace {
            Some(ns) => self.admit_quota(r, ns, &obj).await?,
            None => None,
        };
        let name = meta::name(&obj).to_string();
        if opts.dry_run {
            return Ok(obj);
        }
        let k = key(r, namespace, &name);
        let stored = serde_json::to_vec(&*super::convert::to_stored(r, &obj))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = self
            .store
            .txn(Txn {
                compare: vec![Compare::new(
                    k.clone(),
                    CompareOp::Equal,
                    CompareTarget::Version(0),
                )],
                success: vec![TxnOp::Put(PutRequest::new(k, stored))],
                failure: vec![],
            })
            .await
            .map_err(store_error)?;
        if !resp.succeeded {
            return Err(ApiError::already_exists(r.group, r.plural, &name));
        }
        meta::set(&mut obj, "resourceVersion", resp.revision.to_string());
        Ok(obj)
    }

    /// UPDATE of the object or of its status subresource.
    pub async fn update(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_type(r, &mut obj)?;
        let body_name = meta::name(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if r.namespaced() {
            let body_ns = meta::namespace(&obj);
            if !body_ns.is_empty() && Some(body_ns) != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let (old, kv) = self
            .current(r, namespace, name)
            .await?
            .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
        let rv = meta::resource_version(&obj).to_string();
        if !rv.is_empty() && rv != kv.mod_revision.to_string() {
            return Err(ApiError::conflict(
                r.group,
                r.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        self.replace(
            r,
            namespace,
            name,
            old,
            kv.mod_revision,
            obj,
            subresource,
            opts,
        )
        .await
    }

    /// Writes `new` over `old` (stored at `mod_revision`): the shared tail of update and patch.
    #[allow(clippy::too_many_arguments)]
    async fn replace(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        old: Value,
        mod_revision: i64,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if subresource == Some("ephemeralcontainers") {
            // The ephemeralcontainers subresource adds ephemeral containers, and only that.
            new = ephemeral::admit(&old, &new, name)?;
        } else if subresource == Some("approval") {
            new = approval::approval(&old, &new)?;
        } else if subresource == Some("status") && r.kind == "CertificateSigningRequest" {
            new = approval::status(&old, &new);
        } else if subresource == Some("status") {
            // The status subresource changes status only.
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Value::Object(m) = &mut new {
                        m.remove("status");
                    }
                }
            }
        } else if r.has_subresource("status") {
            // The main resource ignores status where a status subresource exists.
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Value::Object(m) = &mut new {
                        m.remove("status");
                    }
                }
            }
        }
        strategy::of(r).defaults(&mut new);
        // Fields the client cannot change.
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old.pointer(&format!("/metadata/{f}")) {
                Some(v) => {
                    meta::metadata_mut(&mut new).insert(f.into(), v.clone());
                }
                None => {
                    meta::remove(&mut new, f);
                }
            }
        }
        if r.namespaced()
            && let Some(ns) = namespace
        {
            meta::set(&mut new, "namespace", ns);
        }
        meta::set(&mut new, "name", name);
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if spec_of(&old) != spec_of(&new) {
            generation + 1
        } else {
            generation
        };
        meta::metadata_mut(&mut new).insert("generation".into(), json!(generation));
        let attrs = Attributes {
            resource: r,
            subresource,
            namespace: namespace.unwrap_or(""),
            name: name.to_string(),
            operation: Operation::Update,
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
            old: Some(&old),
            field_manager: &opts.manager,
            connect_kind: None,
        };
        self.admission.mutate(self, &attrs, &mut new).await?;
        if r.kind == "Pod" && r.group.is_empty() && subresource.is_none() {
            pod_update::check(&old, &new, name)?;
        }
        if let Some(user) = &opts.user {
            self.authorizer.admit_write(
                user,
                r,
                subresource,
                namespace.unwrap_or(""),
                Some(&old),
                &new,
            )?;
        }
        let mut causes = validate(r, &new);
        causes.extend(strategy::of(r).validate(&new));
        causes.extend(strategy::of(r).validate_update(&old, &new));
        if !causes.is_empty() {
            return Err(invalid(r, &new, causes));
        }
        self.admission.validate(self, &attrs, Some(&new)).await?;
        if !opts.manager.is_empty() && subresource != Some("status") {
            tug_api::apply::record_update(
                Some(&old),
                &mut new,
                &opts.manager,
                &r.api_version(),
                &now(),
            );
        }
        meta::remove(&mut new, "resourceVersion");
        let mut old_cmp = old.clone();
        meta::remove(&mut old_cmp, "resourceVersion");
        if new == old_cmp {
            // No change: no write, the resourceVersion stays.
            return Ok(old);
        }
        if opts.dry_run {
            meta::set(&mut new, "resourceVersion", mod_revision.to_string());
            return Ok(new);
        }
        let k = key(r, namespace, name);
        // The last finalizer gone ends a deletion, unless it is a graceful one still running
        // (a pod whose kubelet has not confirmed yet).
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some()
            && strategy::of(r).finalizers(&new).is_empty()
            && graceful::grace_of(&new) == 0;
        let op = if deleting {
            Guarded::Delete
        } else {
            Guarded::Put(
                serde_json::to_vec(&*super::convert::to_stored(r, &new))
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            )
        };
        let revision = self
            .write_if_unchanged(r, name, k, mod_revision, op)
            .await?;
        meta::set(&mut new, "resourceVersion", revision.to_string());
        Ok(new)
    }

    /// PATCH: applies the patch to the current object and writes it, retrying on conflicts
    /// (a patch is not conditional unless it carries a resourceVersion). Returns the object
    /// and whether the patch created it (server-side apply of an object not there yet).
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        kind: PatchType,
        body: &Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<(Value, bool), ApiError> {
        // Each conflict means another write landed, so the loop makes progress; the bound only
        // guards against an object rewritten without pause for the whole run.
        for _ in 0..1000 {
            let Some((old, kv)) = self.current(r, namespace, name).await? else {
                if kind == PatchType::Apply {
                    let mut obj = body.clone();
                    meta::set(&mut obj, "name", name);
                    let applied = apply::apply(
                        None,
                        &obj,
                        &opts.manager,
                        &r.api_version(),
                        opts.force,
                        &now(),
                    )?;
                    let recorded = WriteOptions {
                        manager: String::new(),
                        ..opts.clone()
                    };
                    return Ok((
                        self.create(r, namespace, applied.object, &recorded).await?,
                        true,
                    ));
                }
                return Err(ApiError::not_found(r.group, r.plural, name));
            };
            let mut new = old.clone();
            let mut write_opts = opts.clone();
            match kind {
                PatchType::Apply => {
                    if !body.is_object() {
                        return Err(ApiError::bad_request(
                            "an apply configuration must be an object",
                        ));
                    }
                    new = apply::apply(
                        Some(&old),
                        body,
                        &opts.manager,
                        &r.api_version(),
                        opts.force,
                        &now(),
                    )?
                    .object;
                    // apply() recorded the ownership itself.
                    write_opts.manager.clear();
                }
                PatchType::Json => patch::json_patch(&mut new, body)?,
                PatchType::Merge => {
                    if !body.is_object() {
                        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                    }
                    patch::merge_patch(&mut new, body)
                }
                PatchType::Strategic => {
                    if !body.is_object() {
                        return Err(ApiError::bad_request(
                            "a strategic merge patch must be a JSON object",
                        ));
                    }
                    strategic::strategic_merge(&mut new, body)
                }
            }
            check_type(r, &mut new)?;
            // The patched object still carries the stored resourceVersion unless the patch
            // set one itself; only a patch that names a version is conditional.
            let conditional = names_resource_version(kind, body);
            let asked_rv = meta::resource_version(&new).to_string();
            if conditional && asked_rv != kv.mod_revision.to_string() {
                return Err(ApiError::conflict(
                    r.group,
                    r.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            if meta::name(&new) != name {
                return Err(ApiError::bad_request(
                    "a patch may not change the object's name",
                ));
            }
            match self
                .replace(
                    r,
                    namespace,
                    name,
                    old,
                    kv.mod_revision,
                    new,
                    subresource,
                    &write_opts,
                )
                .await
            {
                Err(e) if e.reason == "Conflict" && !conditional => continue,
                other => return other.map(|o| (o, false)),
            }
        }
        Err(ApiError::conflict(
            r.group,
            r.plural,
            name,
            "the object kept changing while the patch was applied; try again",
        ))
    }

    /// DELETE: removes the object, or marks it for deletion while finalizers remain.
    pub async fn delete(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        // Without preconditions, a delete that raced another write tries again, as Kubernetes'
        // guaranteed update does; with them, the conflict is the answer.
        super::protected::check_class_delete(r, name)?;
        let unconditional = opts.precondition_uid.is_none() && opts.precondition_rv.is_none();
        let mut attempts = 0;
        loop {
            match self.delete_once(r, namespace, name, opts).await {
                Err(e) if e.reason == "Conflict" && unconditional && attempts < 16 => attempts += 1,
                other => return other,
            }
        }
    }

    async fn delete_once(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let (mut obj, kv) = self
            .current(r, namespace, name)
            .await?
            .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
        super::protected::check_namespace_delete(r, name)?;
        if let Some(uid) = &opts.precondition_uid
            && uid != meta::uid(&obj)
        {
            return Err(ApiError::conflict(
                r.group,
                r.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&obj)
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && *rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                r.group,
                r.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            ));
        }
        let attrs = Attributes {
            resource: r,
            subresource: None,
            namespace: namespace.unwrap_or(""),
            name: name.to_string(),
            operation: Operation::Delete,
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
            old: Some(&obj),
            field_manager: "",
            connect_kind: None,
        };
        self.admission
            .admit_without_object(self, &attrs, None)
            .await?;
        let k = key(r, namespace, name);
        let strategy = strategy::of(r);
        if strategy.graceful() {
            let grace = graceful::pod_grace(&obj, opts.grace_period_seconds);
            if grace > 0 {
                return self
                    .delete_gracefully(r, name, k, obj, kv.mod_revision, grace, opts.dry_run)
                    .await;
            }
            if graceful::grace_of(&obj) > 0 {
                // A graceful deletion confirmed (or forced): what remains is the finalizers'.
                meta::metadata_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
                meta::set(&mut obj, "deletionTimestamp", now());
                if !strategy.finalizers(&obj).is_empty() && !opts.dry_run {
                    self.put_marked(r, name, k, kv.mod_revision, &mut obj)
                        .await?;
                    return Ok(obj);
                }
            }
        }
        strategy.on_delete(&mut obj);
        // Orphan and Foreground deletions wait for the garbage collector, through finalizers.
        let gc_finalizer = match opts.propagation.as_str() {
            "Orphan" => Some("orphan"),
            "Foreground" => Some("foregroundDeletion"),
            _ => None,
        };
        if let Some(f) = gc_finalizer
            && obj.pointer("/metadata/deletionTimestamp").is_none()
        {
            let list = meta::metadata_mut(&mut obj)
                .entry("finalizers")
                .or_insert_with(|| json!([]));
            if let Value::Array(l) = list
                && !l.iter().any(|x| x == f)
            {
                l.push(json!(f));
            }
        }
        if !strategy.finalizers(&obj).is_empty() {
            // Deletion waits for the finalizers: mark it and keep the object.
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                meta::set(&mut obj, "deletionTimestamp", now());
                meta::metadata_mut(&mut obj).insert(
                    "deletionGracePeriodSeconds".into(),
                    json!(opts.grace_period_seconds.unwrap_or(0)),
                );
                strategy.mark_deleting(&mut obj);
                if opts.dry_run {
                    return Ok(obj);
                }
                self.put_marked(r, name, k, kv.mod_revision, &mut obj)
                    .await?;
            }
            return Ok(obj);
        }
        if !opts.dry_run {
            self.write_if_unchanged(r, name, k, kv.mod_revision, Guarded::Delete)
                .await?;
        }
        Ok(if strategy.returns_deleted_object() {
            obj
        } else {
            tug_api::status::success(r.group, r.plural, name, meta::uid(&obj))
        })
    }
}

impl Registry {
    /// Marks a pod for deletion in `grace` seconds (or brings an earlier mark forward), leaving
    /// it for its kubelet to stop and then delete for good.
    #[allow(clippy::too_many_arguments)]
    async fn delete_gracefully(
        &self,
        r: &Resource,
        name: &str,
        k: String,
        mut obj: Value,
        mod_revision: i64,
        grace: i64,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
        let marked = obj
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if marked.is_some_and(|m| m <= deadline) {
            // Already being deleted at least as soon.
            return Ok(obj);
        }
        meta::set(
            &mut obj,
            "deletionTimestamp",
            tug_api::time::rfc3339(deadline),
        );
        meta::metadata_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(grace));
        if dry_run {
            return Ok(obj);
        }
        self.put_marked(r, name, k, mod_revision, &mut obj).await?;
        Ok(obj)
    }

    /// Stores `obj` (marked for deletion) over the version read at `mod_revision`, and stamps
    /// it with its new resourceVersion.
    async fn put_marked(
        &self,
        r: &Resource,
        name: &str,
        k: String,
        mod_revision: i64,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        meta::remove(obj, "resourceVersion");
        let stored = serde_json::to_vec(&*super::convert::to_stored(r, obj))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let revision = self
            .write_if_unchanged(r, name, k, mod_revision, Guarded::Put(stored))
            .await?;
        meta::set(obj, "resourceVersion", revision.to_string());
        Ok(())
    }
}

/// Whether a patch body names a resourceVersion, which makes it conditional on that version.
pub(super) fn names_resource_version(kind: PatchType, body: &Value) -> bool {
    match kind {
        PatchType::Json => body.as_array().is_some_and(|ops| {
            ops.iter().any(|op| {
                let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
                let writes = op.get("op").and_then(Value::as_str) != Some("remove");
                writes
                    && (path == "/metadata/resourceVersion"
                        || path == "/metadata"
                        || path.is_empty())
            })
        }),
        _ => body
            .pointer("/metadata/resourceVersion")
            .is_some_and(|v| !v.is_null()),
    }
}
