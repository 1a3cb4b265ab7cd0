//! Audit logging as kube-apiserver does it (`--audit-policy-file`, `--audit-log-path`,
//! `--audit-log-maxsize`, `--audit-log-maxbackup`): an `audit.k8s.io/v1` Policy decides each
//! request's level (None, Metadata, Request, RequestResponse) by its first matching rule, and
//! every stage not omitted (RequestReceived, ResponseStarted for long-running requests,
//! ResponseComplete) is written as one `audit.k8s.io/v1` Event per line. Files are rotated by
//! size, keeping a number of backups. Writing happens on a thread of its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::authz::Attributes;

/// How much of a request is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Policy {
    kind: String,
    api_version: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    omit_managed_fields: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

impl Rule {
    fn matches(&self, user: &Identity, a: &Attributes) -> bool {
        if !self.users.is_empty() && !self.users.contains(&user.user) {
            return false;
        }
        if !self.user_groups.is_empty() && !user.groups.iter().any(|g| self.user_groups.contains(g))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&a.verb) {
            return false;
        }
        if a.resource_request {
            if !self.non_resource_urls.is_empty() && self.resources.is_empty() {
                return false;
            }
            if !self.namespaces.is_empty() && !self.namespaces.contains(&a.namespace) {
                return false;
            }
            if !self.resources.is_empty() {
                let combined = a.resource_and_subresource();
                return self.resources.iter().any(|gr| {
                    gr.group == a.api_group
                        && (gr.resources.is_empty()
                            || gr.resources.iter().any(|r| {
                                *r == combined
                                    || *r == "*"
                                    || (r == &format!("{}/*", a.resource))
                                    || (r.strip_prefix("*/") == Some(a.subresource.as_str())
                                        && !a.subresource.is_empty())
                            }))
                        && (gr.resource_names.is_empty() || gr.resource_names.contains(&a.name))
                });
            }
            true
        } else {
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            self.non_resource_urls.is_empty()
                || self.non_resource_urls.iter().any(|u| {
                    u == &a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
                })
        }
    }
}

/// What a request's audit records carry.
pub struct Record {
    level: Level,
    omit: Vec<String>,
    omit_managed_fields: bool,
    event: Value,
}

impl Record {
    /// Adds annotations (admission's) to the event.
    pub fn annotate(&mut self, annotations: std::collections::BTreeMap<String, String>) {
        if annotations.is_empty() {
            return;
        }
        if !self.event["annotations"].is_object() {
            self.event["annotations"] = json!({});
        }
        for (k, v) in annotations {
            self.event["annotations"][k] = json!(v);
        }
    }

    /// Whether the record wants the response body (level RequestResponse).
    pub fn wants_response(&self) -> bool {
        self.level >= Level::RequestResponse
    }
}

/// The audit log: its policy and its writer.
pub struct Audit {
    policy: Policy,
    tx: mpsc::SyncSender<String>,
}

impl Audit {
    /// Reads the policy and opens the log (`-` for standard output).
    pub fn open(
        policy: &Path,
        log: &Path,
        max_size_mb: u64,
        max_backups: usize,
    ) -> anyhow::Result<Audit> {
        let text = std::fs::read_to_string(policy)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", policy.display()))?;
        let policy: Policy = serde_norway::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", policy.display()))?;
        if policy.kind != "Policy" || policy.api_version != "audit.k8s.io/v1" {
            anyhow::bail!(
                "the audit policy must be kind Policy of apiVersion audit.k8s.io/v1, not {} {}",
                policy.kind,
                policy.api_version
            );
        }
        let (tx, rx) = mpsc::sync_channel::<String>(4096);
        let mut writer = Writer::open(log.to_path_buf(), max_size_mb, max_backups)?;
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    if let Err(e) = writer.write(&line) {
                        tracing::warn!(error = %e, "writing the audit log failed");
                    }
                }
            })?;
        Ok(Audit { policy, tx })
    }

    /// Starts a request's record (and writes its RequestReceived stage); `None` at level None.
    pub fn begin(&self, user: &Identity, a: &Attributes, req: &RequestInfo) -> Option<Record> {
        let rule = self.policy.rules.iter().find(|r| r.matches(user, a))?;
        if rule.level == Level::None {
            return None;
        }
        let mut user_info = json!({"username": user.user, "groups": user.groups});
        if !user.uid.is_empty() {
            user_info["uid"] = json!(user.uid);
        }
        if !user.extra.is_empty() {
            user_info["extra"] = json!(user.extra);
        }
        let mut event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": rule.level.name(),
            "auditID": uuid::Uuid::new_v4().to_string(),
            "stage": "RequestReceived",
            "requestURI": req.uri,
            "verb": a.verb,
            "user": user_info,
            "sourceIPs": [req.source_ip],
            "userAgent": req.user_agent,
            "requestReceivedTimestamp": now_micro(),
            "stageTimestamp": now_micro(),
        });
        if a.resource_request {
            let mut object = json!({"resource": a.resource, "apiVersion": a.api_version});
            for (k, v) in [
                ("namespace", &a.namespace),
                ("name", &a.name),
                ("subresource", &a.subresource),
                ("apiGroup", &a.api_group),
            ] {
                if !v.is_empty() {
                    object[k] = json!(v);
                }
            }
            event["objectRef"] = object;
        }
        let mut omit = self.policy.omit_stages.clone();
        omit.extend(rule.omit_stages.iter().cloned());
        let record = Record {
            level: rule.level,
            omit,
            omit_managed_fields: rule
                .omit_managed_fields
                .unwrap_or(self.policy.omit_managed_fields),
            event,
        };
        self.emit(&record, "RequestReceived", None);
        Some(record)
    }

    /// Writes a later stage: the response code, the decision, and the bodies the level asks
    /// for (`request` and `response` as sent and answered; only JSON objects are recorded).
    pub fn finish(
        &self,
        record: &mut Record,
        stage: &str,
        code: u16,
        request: Option<&Value>,
        response: Option<&[u8]>,
        decision: Option<(&str, &str)>,
    ) {
        record.event["responseStatus"] = json!({"metadata": {}, "code": code});
        if let Some((d, reason)) = decision {
            if !record.event["annotations"].is_object() {
                record.event["annotations"] = json!({});
            }
            let a = &mut record.event["annotations"];
            a["authorization.k8s.io/decision"] = json!(d);
            if !reason.is_empty() {
                a["authorization.k8s.io/reason"] = json!(reason);
            }
        }
        let body = |bytes: Option<&[u8]>, omit_mf: bool| {
            bytes
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                .filter(Value::is_object)
                .map(|mut v| {
                    if omit_mf && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.remove("managedFields");
                    }
                    v
                })
        };
        let request_object = request.filter(|v| v.is_object()).cloned().map(|mut v| {
            if record.omit_managed_fields
                && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
            {
                m.remove("managedFields");
            }
            v
        });
        // A create names its object in the body: the reference gets its name, as
        // kube-apiserver fills it at every level.
        if let Some(name) = request_object
            .as_ref()
            .and_then(|o| o.pointer("/metadata/name"))
            .and_then(Value::as_str)
            && let Some(r) = record
                .event
                .get_mut("objectRef")
                .and_then(Value::as_object_mut)
            && !r.contains_key("name")
        {
            r.insert("name".into(), json!(name));
        }
        if record.level >= Level::Request
            && let Some(v) = request_object
        {
            record.event["requestObject"] = v;
        }
        if record.level >= Level::RequestResponse
            && let Some(v) = body(response, record.omit_managed_fields)
        {
            record.event["responseObject"] = v;
        }
        self.emit(record, stage, Some(code));
    }

    fn emit(&self, record: &Record, stage: &str, _code: Option<u16>) {
        if record.omit.iter().any(|s| s == stage) {
            return;
        }
        let mut event = record.event.clone();
        event["stage"] = json!(stage);
        event["stageTimestamp"] = json!(now_micro());
        if stage == "RequestReceived"
            && let Some(m) = event.as_object_mut()
        {
            m.remove("responseStatus");
        }
        if self.tx.try_send(event.to_string()).is_err() {
            tracing::warn!("the audit log is behind; an event was dropped");
        }
    }

    /// The level a request would be recorded at (for tests and callers that skip work).
    pub fn level(&self, user: &Identity, a: &Attributes) -> Level {
        self.policy
            .rules
            .iter()
            .find(|r| r.matches(user, a))
            .map_or(Level::None, |r| r.level)
    }
}

/// What the request line and connection say.
pub struct RequestInfo {
    pub uri: String,
    pub source_ip: String,
    pub user_agent: String,
}

fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A log file rotated by size.
struct Writer {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
    max_size: u64,
    max_backups: usize,
}

impl Writer {
    fn open(path: PathBuf, max_size_mb: u64, max_backups: usize) -> anyhow::Result<Writer> {
        let mut w = Writer {
            path,
            file: None,
            size: 0,
            max_size: max_size_mb.saturating_mul(1024 * 1024),
            max_backups,
        };
        w.reopen()?;
        Ok(w)
    }

    fn reopen(&mut self) -> anyhow::Result<()> {
        if self.path.as_os_str() == "-" {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| anyhow::anyhow!("opening the audit log {}: {e}", self.path.display()))?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, line: &str) -> anyhow::Result<()> {
        let Some(file) = self.file.as_mut() else {
            println!("{line}");
            return Ok(());
        };
        writeln!(file, "{line}")?;
        self.size += line.len() as u64 + 1;
        if self.max_size > 0 && self.size >= self.max_size {
            self.rotate()?;
        }
        Ok(())
    }

    /// Moves the full log aside as `NAME-TIMESTAMP.EXT` and drops the oldest backups.
    fn rotate(&mut self) -> anyhow::Result<()> {
        self.file = None;
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let stamp = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H-%M-%S%.3f")
            .to_string();
        let backup = self.path.with_file_name(format!("{stem}-{stamp}{ext}"));
        std::fs::rename(&self.path, &backup)?;
        if self.max_backups > 0
            && let Some(dir) = self.path.parent()
        {
            let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .is_some_and(|n| n.starts_with(&format!("{stem}-")) && n.ends_with(&ext))
                })
                .collect();
            backups.sort();
            while backups.len() > self.max_backups {
                let oldest = backups.remove(0);
                let _ = std::fs::remove_file(oldest);
            }
        }
        self.reopen()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_by_size_and_keeps_its_backups() {
        let dir = tempfile_dir();
        let path = dir.join("audit.log");
        let mut w = Writer::open(path.clone(), 0, 2).expect("open");
        w.max_size = 100;
        for i in 0..20 {
            w.write(&format!(
                "{{\"event\":{i},\"padding\":\"{}\"}}",
                "x".repeat(20)
            ))
            .expect("write");
            // Backups are named by the time they were made, to the millisecond.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let backups = names.iter().filter(|n| n.starts_with("audit-")).count();
        assert_eq!(backups, 2, "{names:?}");
        assert!(names.contains(&"audit.log".to_string()));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tug-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn the_first_matching_rule_decides_the_level() {
        let policy: Policy = serde_norway::from_str(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/healthz*]\n- level: Metadata\n  resources: [{group: \"\", resources: [secrets]}]\n- level: RequestResponse\n  users: [alice]\n- level: Request\n",
        )
        .expect("policy");
        let level = |user: &str, a: &Attributes| {
            let id = Identity {
                user: user.into(),
                ..Default::default()
            };
            policy
                .rules
                .iter()
                .find(|r| r.matches(&id, a))
                .map_or(Level::None, |r| r.level)
        };
        let secret = Attributes::resource("get", "", "secrets", "", "ns", "s");
        assert_eq!(level("alice", &secret), Level::Metadata);
        let cm = Attributes::resource("get", "", "configmaps", "", "ns", "c");
        assert_eq!(level("alice", &cm), Level::RequestResponse);
        assert_eq!(level("bob", &cm), Level::Request);
        assert_eq!(
            level("bob", &Attributes::non_resource("get", "/healthz/ping")),
            Level::None
        );
    }
}
