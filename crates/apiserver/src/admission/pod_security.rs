//! PodSecurity: the Pod Security Standards (baseline and restricted, as the latest policy
//! version defines them) enforced, audited and warned per namespace through the
//! `pod-security.kubernetes.io/{enforce,audit,warn}[-version]` labels, with the messages of
//! Kubernetes' pod-security-admission. Pods are enforced on create and on significant
//! updates (containers or images changed); pod controllers (Deployments, Jobs …) are warned
//! and audited; namespaces with invalid labels are refused.
//!
//! A version label (`v1.25`) evaluates the checks as that Kubernetes version defined them
//! (older allow-lists, checks not yet there, exemptions not yet made); `latest` and versions
//! newer than this server's evaluate as its own (v1.37). Messages print the label's version.

use std::collections::BTreeSet;

use serde_json::Value;
use tug_api::validation::field::{items, text};
use tug_api::{ApiError, Cause, catalog, meta};

use super::{Attributes, Operation, notes};
use crate::registry::{ListOptions, Registry};

const PREFIX: &str = "pod-security.kubernetes.io/";

/// A policy level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "privileged" => Level::Privileged,
            "baseline" => Level::Baseline,
            "restricted" => Level::Restricted,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A level and the version label it came with (`restricted:latest`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct LevelVersion {
    level: Level,
    version: String,
}

/// The newest policy version, which `latest` and newer versions evaluate as.
const LATEST_MINOR: u32 = 37;

impl LevelVersion {
    /// The policy version evaluated: the label's minor version, at most the newest.
    fn minor(&self) -> u32 {
        self.version
            .strip_prefix("v1.")
            .and_then(|n| n.parse::<u32>().ok())
            .map_or(LATEST_MINOR, |n| n.min(LATEST_MINOR))
    }
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// A namespace's policy for the three modes, and the label errors found.
struct Policy {
    enforce: LevelVersion,
    audit: LevelVersion,
    warn: LevelVersion,
    errors: Vec<Cause>,
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.").is_some_and(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'))
        })
}

/// The plugin's configuration (a `PodSecurityConfiguration` in the
/// `--admission-control-config-file`): the levels of namespaces without labels, and the
/// users, runtime classes and namespaces exempt from every check.
#[derive(Clone, Debug)]
pub struct Config {
    /// enforce, audit, warn.
    defaults: [LevelVersion; 3],
    exempt_usernames: Vec<String>,
    exempt_runtime_classes: Vec<String>,
    exempt_namespaces: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let privileged = LevelVersion {
            level: Level::Privileged,
            version: "latest".into(),
        };
        Config {
            defaults: [privileged.clone(), privileged.clone(), privileged],
            exempt_usernames: Vec::new(),
            exempt_runtime_classes: Vec::new(),
            exempt_namespaces: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a `pod-security.admission.config.k8s.io` PodSecurityConfiguration (v1, v1beta1
    /// or v1alpha1); a level or version that is not one is an error naming its field.
    pub fn parse(v: &Value) -> Result<Config, String> {
        let api_version = text(v, "apiVersion");
        let group_ok = matches!(
            api_version,
            "pod-security.admission.config.k8s.io/v1"
                | "pod-security.admission.config.k8s.io/v1beta1"
                | "pod-security.admission.config.k8s.io/v1alpha1"
        );
        if !group_ok || text(v, "kind") != "PodSecurityConfiguration" {
            return Err(format!(
                "expected kind PodSecurityConfiguration of apiVersion pod-security.admission.config.k8s.io/v1, not {:?} {api_version:?}",
                text(v, "kind")
            ));
        }
        let mut config = Config::default();
        let d = &v["defaults"];
        for (i, mode) in ["enforce", "audit", "warn"].into_iter().enumerate() {
            if let Some(l) = d.get(mode).and_then(Value::as_str) {
                config.defaults[i].level = Level::parse(l).ok_or_else(|| {
                    format!("defaults.{mode}: Invalid value: \"{l}\": must be one of privileged, baseline, restricted")
                })?;
            }
            if let Some(ver) = d.get(format!("{mode}-version")).and_then(Value::as_str) {
                if !valid_version(ver) {
                    return Err(format!(
                        "defaults.{mode}-version: Invalid value: \"{ver}\": must be \"latest\" or \"v1.x\""
                    ));
                }
                config.defaults[i].version = ver.to_string();
            }
        }
        let list = |k: &str| -> Vec<String> {
            items(&v["exemptions"], k)
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        config.exempt_usernames = list("usernames");
        config.exempt_runtime_classes = list("runtimeClasses");
        config.exempt_namespaces = list("namespaces");
        Ok(config)
    }
}

/// The policy namespace labels set (`PolicyToEvaluate`), the configured defaults where they
/// set none.
fn policy(labels: &serde_json::Map<String, Value>, config: &Config) -> Policy {
    let mut errors = Vec::new();
    let label = |mode: &str| {
        labels
            .get(&format!("{PREFIX}{mode}"))
            .and_then(Value::as_str)
    };
    let mode = |mode: &str, invalid: Level, errors: &mut Vec<Cause>| -> (LevelVersion, bool) {
        let default = match mode {
            "enforce" => &config.defaults[0],
            "audit" => &config.defaults[1],
            _ => &config.defaults[2],
        };
        let level = match label(mode) {
            None => default.level,
            Some(l) => Level::parse(l).unwrap_or_else(|| {
                errors.push(Cause::new(
                    "FieldValueInvalid",
                    &format!("metadata.labels[{PREFIX}{mode}]"),
                    format!(
                        "Invalid value: \"{l}\": must be one of privileged, baseline, restricted"
                    ),
                ));
                invalid
            }),
        };
        let version = match label(&format!("{mode}-version")) {
            None => default.version.clone(),
            Some(v) if valid_version(v) => v.to_string(),
            Some(v) => {
                errors.push(Cause::new(
                    "FieldValueInvalid",
                    &format!("metadata.labels[{PREFIX}{mode}-version]"),
                    format!("Invalid value: \"{v}\": must be \"latest\" or \"v1.x\""),
                ));
                "latest".to_string()
            }
        };
        (LevelVersion { level, version }, label(mode).is_some())
    };
    let (enforce, enforce_set) = mode("enforce", Level::Restricted, &mut errors);
    let (audit, _) = mode("audit", Level::Privileged, &mut errors);
    let (mut warn, warn_set) = mode("warn", Level::Privileged, &mut errors);
    let enforce_valid = label("enforce").and_then(Level::parse).is_some();
    if !warn_set && enforce_set && enforce_valid && enforce.level > warn.level {
        warn.level = enforce.level;
        if label("warn-version").is_none() {
            warn.version = enforce.version.clone();
        }
    }
    Policy {
        enforce,
        audit,
        warn,
        errors,
    }
}

/// One failed check: its reason and detail.
struct Failure {
    reason: &'static str,
    detail: String,
}

fn join_quote(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!("\"{}\"", items.join("\", \""))
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 { singular } else { plural }
}

fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// The setters phrase: `pod`, `container(s) "…"`, joined by ` and `.
fn setters(pod: bool, names: &[String]) -> String {
    let mut parts = Vec::new();
    if pod {
        parts.push("pod".to_string());
    }
    if !names.is_empty() {
        parts.push(containers_phrase(names));
    }
    parts.join(" and ")
}

/// Containers in the order the checks visit them: init, regular, ephemeral.
fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| items(spec, k).iter())
        .collect()
}

fn name_of(c: &Value) -> String {
    text(c, "name").to_string()
}

/// The failures of `spec` (with the pod's `meta`) at `level` as policy version 1.`minor`
/// defines it, in the checks' order: the baseline checks, then the restricted ones, less the
/// baseline checks a restricted check of that version replaces.
fn evaluate(level: Level, minor: u32, spec: &Value, meta_: &Value) -> Vec<Failure> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let restricted = level == Level::Restricted;
    let mut out = Vec::new();
    let mut push = |f: Option<Failure>| {
        if let Some(f) = f {
            out.push(f);
        }
    };
    push(app_armor(spec, meta_));
    if !restricted || minor < 22 {
        push(capabilities_baseline(spec));
    }
    push(host_namespaces(spec));
    if !restricted {
        push(host_path_volumes(spec));
    }
    push(host_ports(spec));
    if minor >= 34 {
        push(host_probes(spec));
    }
    push(privileged(spec));
    if !restricted || minor < 35 {
        push(proc_mount(spec, true, minor));
    }
    push(se_linux(spec, minor));
    if !restricted || minor < 19 {
        push(seccomp_baseline(spec, meta_, minor));
    }
    push(sysctls(spec, minor));
    push(windows_host_process(spec));
    if restricted {
        if minor >= 8 {
            push(allow_privilege_escalation(spec, minor));
        }
        if minor >= 22 {
            push(capabilities_restricted(spec, minor));
        }
        if minor >= 35 {
            push(proc_mount(spec, false, minor));
        }
        push(restricted_volumes(spec));
        push(run_as_non_root(spec, minor));
        if minor >= 23 {
            push(run_as_user(spec, minor));
        }
        if minor >= 19 {
            push(seccomp_restricted(spec, minor));
        }
    }
    out
}

fn sc(v: &Value) -> &Value {
    &v["securityContext"]
}

fn app_armor(spec: &Value, meta_: &Value) -> Option<Failure> {
    let ok_type = |t: &Value| matches!(t.as_str(), Some("RuntimeDefault") | Some("Localhost"));
    let mut bad_values = BTreeSet::new();
    let pod_profile = &sc(spec)["appArmorProfile"];
    let pod_bad = pod_profile.is_object() && !ok_type(&pod_profile["type"]);
    if pod_bad {
        bad_values.insert(text(pod_profile, "type").to_string());
    }
    let mut names = Vec::new();
    for c in containers(spec) {
        let p = &sc(c)["appArmorProfile"];
        if p.is_object() && !ok_type(&p["type"]) {
            names.push(name_of(c));
            bad_values.insert(text(p, "type").to_string());
        }
    }
    let mut bad_annotations = Vec::new();
    if let Some(Value::Object(ann)) = meta_.get("annotations") {
        for (k, v) in ann {
            if !k.starts_with("container.apparmor.security.beta.kubernetes.io/") {
                continue;
            }
            let v = v.as_str().unwrap_or_default();
            if !(v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")) {
                bad_annotations.push(format!("{k}={}", go_quote(v)));
            }
        }
    }
    if !pod_bad && names.is_empty() && bad_annotations.is_empty() {
        return None;
    }
    let mut values: Vec<String> = bad_values.into_iter().collect();
    bad_annotations.sort();
    let annotation_count = bad_annotations.len();
    values.extend(bad_annotations);
    let mut who = setters(pod_bad, &names);
    if annotation_count > 0 {
        let a = pluralize("annotation", "annotations", annotation_count);
        who = if who.is_empty() {
            a.to_string()
        } else {
            format!("{who} and {a}")
        };
    }
    Some(Failure {
        reason: if values.len() == 1 {
            "forbidden AppArmor profile"
        } else {
            "forbidden AppArmor profiles"
        },
        detail: format!(
            "{who} must not set AppArmor profile type to {}",
            join_quote(&values)
        ),
    })
}

/// Go's `%q` of a string.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(spec: &Value) -> Option<Failure> {
    let mut names = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let mut bad = false;
        for cap in items(&sc(c)["capabilities"], "add")
            .iter()
            .filter_map(Value::as_str)
        {
            if !BASELINE_CAPABILITIES.contains(&cap) {
                bad = true;
                caps.insert(cap.to_string());
            }
        }
        if bad {
            names.push(name_of(c));
        }
    }
    (!names.is_empty()).then(|| Failure {
        reason: "non-default capabilities",
        detail: format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&names),
            join_quote(&caps.into_iter().collect::<Vec<_>>())
        ),
    })
}

fn host_namespaces(spec: &Value) -> Option<Failure> {
    let on: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| spec[**k] == true)
        .map(|k| format!("{k}=true"))
        .collect();
    (!on.is_empty()).then(|| Failure {
        reason: "host namespaces",
        detail: on.join(", "),
    })
}

fn host_path_volumes(spec: &Value) -> Option<Failure> {
    let names: Vec<String> = items(spec, "volumes")
        .iter()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name_of)
        .collect();
    (!names.is_empty()).then(|| Failure {
        reason: "hostPath volumes",
        detail: format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    })
}

fn host_ports(spec: &Value) -> Option<Failure> {
    let mut names = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let mut bad = false;
        for p in items(c, "ports") {
            if let Some(hp) = p["hostPort"].as_i64().filter(|p| *p != 0) {
                bad = true;
                ports.insert(hp.to_string());
            }
        }
        if bad {
            names.push(name_of(c));
        }
    }
    (!names.is_empty()).then(|| Failure {
        reason: "hostPort",
        detail: format!(
            "{} {} {} {}",
            containers_phrase(&names),
            pluralize("uses", "use", names.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    })
}

fn host_probes(spec: &Value) -> Option<Failure> {
    let mut names = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in containers(spec) {
        let handlers = [
            &c["livenessProbe"],
            &c["readinessProbe"],
            &c["startupProbe"],
            &c["lifecycle"]["postStart"],
            &c["lifecycle"]["preStop"],
        ];
        for h in handlers {
            for kind in ["httpGet", "tcpSocket"] {
                let host = text(&h[kind], "host");
                if !host.is_empty() {
                    names.insert(name_of(c));
                    hosts.insert(host.to_string());
                }
            }
        }
    }
    let names: Vec<String> = names.into_iter().collect();
    (!names.is_empty()).then(|| Failure {
        reason: "probe or lifecycle host",
        detail: format!(
            "{} {} {} {}",
            containers_phrase(&names),
            pluralize("uses", "use", names.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts.into_iter().collect::<Vec<_>>())
        ),
    })
}

fn privileged(spec: &Value) -> Option<Failure> {
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| sc(c)["privileged"] == true)
        .map(name_of)
        .collect();
    (!names.is_empty()).then(|| Failure {
        reason: "privileged",
        detail: format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&names)
        ),
    })
}

/// A pod in a user namespace (`hostUsers: false`), which checks relax for from v1.35.
fn user_namespaced(spec: &Value, minor: u32) -> bool {
    minor >= 35 && spec["hostUsers"] == false
}

fn proc_mount(spec: &Value, baseline: bool, minor: u32) -> Option<Failure> {
    if baseline && user_namespaced(spec, minor) {
        return None;
    }
    let mut names = Vec::new();
    let mut values = BTreeSet::new();
    for c in containers(spec) {
        let m = text(sc(c), "procMount");
        if !m.is_empty() && m != "Default" {
            names.push(name_of(c));
            values.insert(m.to_string());
        }
    }
    (!names.is_empty()).then(|| Failure {
        reason: "procMount",
        detail: format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&names),
            join_quote(&values.into_iter().collect::<Vec<_>>())
        ),
    })
}

fn se_linux(spec: &Value, minor: u32) -> Option<Failure> {
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut check = |o: &Value| -> bool {
        let mut bad = false;
        let t = text(o, "type");
        let allowed = matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t"
        ) || (t == "container_engine_t" && minor >= 31);
        if !allowed {
            types.insert(t.to_string());
            bad = true;
        }
        if !text(o, "user").is_empty() {
            user = true;
            bad = true;
        }
        if !text(o, "role").is_empty() {
            role = true;
            bad = true;
        }
        bad
    };
    let pod_bad = check(&sc(spec)["seLinuxOptions"]);
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| check(&sc(c)["seLinuxOptions"]))
        .map(name_of)
        .collect();
    if !pod_bad && names.is_empty() {
        return None;
    }
    let mut bad = Vec::new();
    if !types.is_empty() {
        let t: Vec<String> = types.into_iter().collect();
        bad.push(format!(
            "{} {}",
            pluralize("type", "types", t.len()),
            join_quote(&t)
        ));
    }
    if user {
        bad.push("user may not be set".into());
    }
    if role {
        bad.push("role may not be set".into());
    }
    Some(Failure {
        reason: "seLinuxOptions",
        detail: format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters(pod_bad, &names),
            bad.join("; ")
        ),
    })
}

fn seccomp_type_ok(t: &Value) -> bool {
    matches!(t.as_str(), Some("RuntimeDefault") | Some("Localhost"))
}

fn seccomp_baseline(spec: &Value, meta_: &Value, minor: u32) -> Option<Failure> {
    if minor < 19 {
        return seccomp_annotations(spec, meta_);
    }
    let mut types = BTreeSet::new();
    let mut bad = |p: &Value| -> bool {
        if p.is_object() && !seccomp_type_ok(&p["type"]) {
            types.insert(text(p, "type").to_string());
            return true;
        }
        false
    };
    let pod_bad = bad(&sc(spec)["seccompProfile"]);
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| bad(&sc(c)["seccompProfile"]))
        .map(name_of)
        .collect();
    if !pod_bad && names.is_empty() {
        return None;
    }
    Some(Failure {
        reason: "seccompProfile",
        detail: format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters(pod_bad, &names),
            join_quote(&types.into_iter().collect::<Vec<_>>())
        ),
    })
}

/// Before v1.19, seccomp profiles were set by annotations: those of the pod and its
/// containers must name an allowed profile.
fn seccomp_annotations(spec: &Value, meta_: &Value) -> Option<Failure> {
    const POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const CONTAINER: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let annotations = &meta_["annotations"];
    let allowed =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut keys: Vec<String> = vec![POD.to_string()];
    keys.extend(
        containers(spec)
            .into_iter()
            .map(|c| format!("{CONTAINER}{}", name_of(c))),
    );
    let mut bad: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            let v = annotations.get(k)?.as_str()?;
            (!allowed(v)).then(|| format!("{k}={}", go_quote(v)))
        })
        .collect();
    bad.sort();
    (!bad.is_empty()).then(|| Failure {
        reason: "seccompProfile",
        detail: format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", bad.len()),
            bad.join(", ")
        ),
    })
}

/// The sysctls baseline allows, with the policy version that first allowed each.
const ALLOWED_SYSCTLS: &[(&str, u32)] = &[
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
    ("net.ipv4.tcp_slow_start_after_idle", 37),
    ("net.ipv4.tcp_notsent_lowat", 37),
];

fn sysctls(spec: &Value, minor: u32) -> Option<Failure> {
    let allowed = |n: &str| {
        ALLOWED_SYSCTLS
            .iter()
            .any(|(name, since)| *name == n && minor >= *since)
    };
    let bad: Vec<String> = items(sc(spec), "sysctls")
        .iter()
        .map(|s| text(s, "name").to_string())
        .filter(|n| !allowed(n))
        .collect();
    (!bad.is_empty()).then(|| Failure {
        reason: "forbidden sysctls",
        detail: bad.join(", "),
    })
}

fn windows_host_process(spec: &Value) -> Option<Failure> {
    let on = |o: &Value| sc(o)["windowsOptions"]["hostProcess"] == true;
    let pod = on(spec);
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| on(c))
        .map(name_of)
        .collect();
    (pod || !names.is_empty()).then(|| Failure {
        reason: "hostProcess",
        detail: format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters(pod, &names)
        ),
    })
}

/// A Windows pod, which restricted's Linux-only checks exempt from v1.25.
fn windows(spec: &Value, minor: u32) -> bool {
    minor >= 25 && spec["os"]["name"] == "windows"
}

fn allow_privilege_escalation(spec: &Value, minor: u32) -> Option<Failure> {
    if windows(spec, minor) {
        return None;
    }
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| sc(c)["allowPrivilegeEscalation"] != false)
        .map(name_of)
        .collect();
    (!names.is_empty()).then(|| Failure {
        reason: "allowPrivilegeEscalation != false",
        detail: format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&names)
        ),
    })
}

fn capabilities_restricted(spec: &Value, minor: u32) -> Option<Failure> {
    if windows(spec, minor) {
        return None;
    }
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let cap = &sc(c)["capabilities"];
        if !cap.is_object() {
            missing_drop.push(name_of(c));
            continue;
        }
        if !items(cap, "drop").iter().any(|d| d == "ALL") {
            missing_drop.push(name_of(c));
        }
        let mut bad = false;
        for a in items(cap, "add").iter().filter_map(Value::as_str) {
            if a != "NET_BIND_SERVICE" {
                bad = true;
                caps.insert(a.to_string());
            }
        }
        if bad {
            adding.push(name_of(c));
        }
    }
    let mut parts = Vec::new();
    if !missing_drop.is_empty() {
        parts.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        parts.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&caps.into_iter().collect::<Vec<_>>())
        ));
    }
    (!parts.is_empty()).then(|| Failure {
        reason: "unrestricted capabilities",
        detail: parts.join("; "),
    })
}

const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const KNOWN_VOLUMES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(spec: &Value) -> Option<Failure> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for v in items(spec, "volumes") {
        let has = |k: &str| v.get(k).is_some_and(|x| !x.is_null());
        if ALLOWED_VOLUMES.iter().any(|k| has(k)) {
            continue;
        }
        names.push(name_of(v));
        types.insert(
            KNOWN_VOLUMES
                .iter()
                .find(|k| has(k))
                .map(|k| k.to_string())
                .unwrap_or_else(|| "unknown".into()),
        );
    }
    (!names.is_empty()).then(|| Failure {
        reason: "restricted volume types",
        detail: format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names),
            pluralize("uses", "use", names.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types.into_iter().collect::<Vec<_>>())
        ),
    })
}

fn run_as_non_root(spec: &Value, minor: u32) -> Option<Failure> {
    if user_namespaced(spec, minor) {
        return None;
    }
    let pod = &sc(spec)["runAsNonRoot"];
    let pod_false = *pod == false;
    let pod_true = *pod == true;
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match &sc(c)["runAsNonRoot"] {
            Value::Bool(false) => explicit.push(name_of(c)),
            Value::Bool(true) => {}
            _ if !pod_true => implicit.push(name_of(c)),
            _ => {}
        }
    }
    if pod_false || !explicit.is_empty() {
        return Some(Failure {
            reason: "runAsNonRoot != true",
            detail: format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters(pod_false, &explicit)
            ),
        });
    }
    (!implicit.is_empty()).then(|| Failure {
        reason: "runAsNonRoot != true",
        detail: format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ),
    })
}

fn run_as_user(spec: &Value, minor: u32) -> Option<Failure> {
    if user_namespaced(spec, minor) {
        return None;
    }
    let pod = sc(spec)["runAsUser"] == 0;
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| sc(c)["runAsUser"] == 0)
        .map(name_of)
        .collect();
    (pod || !names.is_empty()).then(|| Failure {
        reason: "runAsUser=0",
        detail: format!("{} must not set runAsUser=0", setters(pod, &names)),
    })
}

fn seccomp_restricted(spec: &Value, minor: u32) -> Option<Failure> {
    if windows(spec, minor) {
        return None;
    }
    let pod_profile = &sc(spec)["seccompProfile"];
    let pod_set = pod_profile.is_object();
    let pod_ok = pod_set && seccomp_type_ok(&pod_profile["type"]);
    let mut types = BTreeSet::new();
    let pod_bad = pod_set && !pod_ok;
    if pod_bad {
        types.insert(text(pod_profile, "type").to_string());
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        let p = &sc(c)["seccompProfile"];
        if p.is_object() {
            if !seccomp_type_ok(&p["type"]) {
                explicit.push(name_of(c));
                types.insert(text(p, "type").to_string());
            }
        } else if !pod_ok {
            implicit.push(name_of(c));
        }
    }
    if pod_bad || !explicit.is_empty() {
        return Some(Failure {
            reason: "seccompProfile",
            detail: format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters(pod_bad, &explicit),
                join_quote(&types.into_iter().collect::<Vec<_>>())
            ),
        });
    }
    (!implicit.is_empty()).then(|| Failure {
        reason: "seccompProfile",
        detail: format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicit)
        ),
    })
}

fn detail(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|f| {
            if f.detail.is_empty() {
                f.reason.to_string()
            } else {
                format!("{} ({})", f.reason, f.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pod template a pod controller carries, if `r` is one.
fn template_of<'a>(kind: &str, obj: &'a Value) -> Option<&'a Value> {
    match kind {
        "ReplicationController"
        | "ReplicaSet"
        | "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "Job" => Some(&obj["spec"]["template"]),
        "PodTemplate" => Some(&obj["template"]),
        "CronJob" => Some(&obj["spec"]["jobTemplate"]["spec"]["template"]),
        _ => None,
    }
}

/// Whether a pod update changes what PodSecurity looks at: containers added or removed, or
/// their images changed.
fn significant_update(old: &Value, new: &Value) -> bool {
    for k in ["containers", "initContainers"] {
        let (o, n) = (items(&old["spec"], k), items(&new["spec"], k));
        if o.len() != n.len() || o.iter().zip(n).any(|(a, b)| a["image"] != b["image"]) {
            return true;
        }
    }
    let old_eph = items(&old["spec"], "ephemeralContainers");
    items(&new["spec"], "ephemeralContainers").iter().any(|e| {
        !old_eph
            .iter()
            .any(|o| o["name"] == e["name"] && o["image"] == e["image"])
    })
}

async fn namespace_labels(
    registry: &Registry,
    namespace: &str,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let r = catalog::lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces missing from the catalog"))?;
    let ns = registry.get(r, None, namespace).await.map_err(|_| {
        ApiError::internal(format!(
            "Internal error occurred: failed to lookup namespace {namespace:?}"
        ))
    })?;
    Ok(ns
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

/// The validating check of PodSecurity for pods, pod controllers and namespaces.
pub async fn validate(
    registry: &Registry,
    config: &Config,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<(), ApiError> {
    let r = a.resource;
    let Some(obj) = obj else { return Ok(()) };
    if !matches!(a.operation, Operation::Create | Operation::Update) {
        return Ok(());
    }
    if r.group.is_empty() && r.kind == "Namespace" {
        return validate_namespace(registry, config, a, obj).await;
    }
    let exempt = |why: &str| {
        notes::annotate(&format!("{PREFIX}exempt"), why);
        Ok(())
    };
    if config.exempt_namespaces.iter().any(|n| n == a.namespace) {
        return exempt("namespace");
    }
    if let Some(user) = a.user
        && config.exempt_usernames.contains(&user.user)
    {
        return exempt("user");
    }
    let is_pod = r.group.is_empty() && r.kind == "Pod";
    let template = if is_pod {
        match a.subresource {
            None | Some("ephemeralcontainers") | Some("resize") => {}
            Some(_) => return Ok(()),
        }
        if a.operation == Operation::Update
            && let Some(old) = a.old
            && !significant_update(old, obj)
        {
            return Ok(());
        }
        None
    } else {
        if a.subresource.is_some() || !matches!(r.group, "" | "apps" | "batch") {
            return Ok(());
        }
        match template_of(r.kind, obj) {
            Some(t) => Some(t),
            None => return Ok(()),
        }
    };
    let (spec, meta_) = match template {
        Some(t) => (&t["spec"], &t["metadata"]),
        None => (&obj["spec"], &obj["metadata"]),
    };
    if exempt_runtime_class(config, spec) {
        return exempt("runtimeClass");
    }
    let labels = namespace_labels(registry, a.namespace).await?;
    let p = policy(&labels, config);
    if is_pod {
        notes::annotate(&format!("{PREFIX}enforce-policy"), &p.enforce.to_string());
    }
    if p.audit.level != Level::Privileged {
        let failures = evaluate(p.audit.level, p.audit.minor(), spec, meta_);
        if !failures.is_empty() {
            notes::annotate(
                &format!("{PREFIX}audit-violations"),
                &format!(
                    "would violate PodSecurity \"{}\": {}",
                    p.audit,
                    detail(&failures)
                ),
            );
        }
    }
    if is_pod && p.enforce.level != Level::Privileged {
        let failures = evaluate(p.enforce.level, p.enforce.minor(), spec, meta_);
        if !failures.is_empty() {
            return Err(super::forbidden(
                a,
                &format!(
                    "violates PodSecurity \"{}\": {}",
                    p.enforce,
                    detail(&failures)
                ),
            ));
        }
    }
    if p.warn.level != Level::Privileged {
        let failures = evaluate(p.warn.level, p.warn.minor(), spec, meta_);
        if !failures.is_empty() {
            notes::warn(&format!(
                "would violate PodSecurity \"{}\": {}",
                p.warn,
                detail(&failures)
            ));
        }
    }
    Ok(())
}

/// Namespaces: invalid policy labels are refused; a stricter enforce level warns of the
/// existing pods it would refuse.
/// Whether the pod's runtime class is exempt.
fn exempt_runtime_class(config: &Config, spec: &Value) -> bool {
    let class = text(spec, "runtimeClassName");
    !class.is_empty() && config.exempt_runtime_classes.iter().any(|c| c == class)
}

async fn validate_namespace(
    registry: &Registry,
    config: &Config,
    a: &Attributes<'_>,
    obj: &Value,
) -> Result<(), ApiError> {
    if a.subresource.is_some() {
        return Ok(());
    }
    let labels = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let new = policy(&labels, config);
    let old = a.old.map(|o| {
        policy(
            &o.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            config,
        )
    });
    if !new.errors.is_empty() {
        let refuse = match &old {
            None => true,
            Some(o) => o.errors.is_empty() || o.errors != new.errors,
        };
        if refuse {
            return Err(ApiError::invalid(
                "",
                "Namespace",
                meta::name(obj),
                new.errors,
            ));
        }
    }
    let Some(old) = old else { return Ok(()) };
    if config
        .exempt_namespaces
        .iter()
        .any(|n| n == meta::name(obj))
    {
        return Ok(());
    }
    if old.enforce == new.enforce || new.enforce.level == Level::Privileged {
        return Ok(());
    }
    if old.enforce.version == new.enforce.version && new.enforce.level <= old.enforce.level {
        return Ok(());
    }
    let pods = catalog::lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods missing from the catalog"))?;
    let name = meta::name(obj);
    let list = match registry
        .list(pods, Some(name), &ListOptions::default())
        .await
    {
        Ok(l) => l,
        Err(_) => {
            notes::warn("failed to list pods while checking new PodSecurity enforce level");
            return Ok(());
        }
    };
    // Reasons → (lexically smallest pod, how many pods).
    let mut by_reason: std::collections::BTreeMap<String, (String, usize)> = Default::default();
    for pod in items(&list, "items") {
        if exempt_runtime_class(config, &pod["spec"]) {
            continue;
        }
        let failures = evaluate(
            new.enforce.level,
            new.enforce.minor(),
            &pod["spec"],
            &pod["metadata"],
        );
        if failures.is_empty() {
            continue;
        }
        let reasons = failures
            .iter()
            .map(|f| f.reason)
            .collect::<Vec<_>>()
            .join(", ");
        let pod_name = meta::name(pod).to_string();
        let e = by_reason.entry(reasons).or_insert((pod_name.clone(), 0));
        if pod_name < e.0 {
            e.0 = pod_name;
        }
        e.1 += 1;
    }
    if by_reason.is_empty() {
        return Ok(());
    }
    notes::warn(&format!(
        "existing pods in namespace {name:?} violate the new PodSecurity enforce level \"{}\"",
        new.enforce
    ));
    let mut lines: Vec<String> = by_reason
        .into_iter()
        .map(|(reasons, (pod, n))| match n {
            1 => format!("{pod}: {reasons}"),
            2 => format!("{pod} (and 1 other pod): {reasons}"),
            n => format!("{pod} (and {} other pods): {reasons}", n - 1),
        })
        .collect();
    lines.sort();
    for l in lines {
        notes::warn(&l);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reasons(level: Level, version: &str, spec: &Value, meta_: &Value) -> Vec<&'static str> {
        let lv = LevelVersion {
            level,
            version: version.into(),
        };
        evaluate(lv.level, lv.minor(), spec, meta_)
            .into_iter()
            .map(|f| f.reason)
            .collect()
    }

    #[test]
    fn older_policy_versions_evaluate_their_own_checks() {
        // Restricted before 1.22 had no capabilities_restricted (baseline's applied), before
        // 1.23 no runAsUser, before 1.25 no Windows exemption.
        let spec = json!({"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true,
            "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": true}}]});
        assert_eq!(
            reasons(Level::Restricted, "v1.21", &spec, &json!({})),
            ["allowPrivilegeEscalation != false"]
        );
        assert_eq!(
            reasons(Level::Restricted, "v1.24", &spec, &json!({})),
            [
                "allowPrivilegeEscalation != false",
                "unrestricted capabilities",
                "runAsUser=0"
            ]
        );
        assert_eq!(
            reasons(Level::Restricted, "latest", &spec, &json!({})),
            ["runAsUser=0"]
        );
        assert_eq!(
            reasons(Level::Restricted, "v1.99", &spec, &json!({})),
            reasons(Level::Restricted, "latest", &spec, &json!({})),
            "versions past the newest evaluate as it"
        );
        // Baseline allow-lists grow: sysctls, SELinux types; host probes come in 1.34.
        let spec = json!({"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}],
            "seLinuxOptions": {"type": "container_engine_t"}},
            "containers": [{"name": "c", "livenessProbe": {"tcpSocket": {"host": "10.0.0.1", "port": 80}}}]});
        assert_eq!(
            reasons(Level::Baseline, "v1.30", &spec, &json!({})),
            ["seLinuxOptions", "forbidden sysctls"]
        );
        assert_eq!(
            reasons(Level::Baseline, "v1.33", &spec, &json!({})),
            Vec::<&str>::new()
        );
        assert_eq!(
            reasons(Level::Baseline, "v1.34", &spec, &json!({})),
            ["probe or lifecycle host"]
        );
        // Before 1.19 seccomp profiles were annotations.
        let meta_ =
            json!({"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}});
        let spec = json!({"containers": [{"name": "c"}]});
        let old = evaluate(Level::Baseline, 18, &spec, &meta_);
        assert_eq!(
            detail(&old),
            "seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod=\"unconfined\")"
        );
        assert!(evaluate(Level::Baseline, 19, &spec, &meta_).is_empty());
    }

    #[test]
    fn restricted_lists_each_violation_in_order() {
        let spec = json!({"containers": [{"name": "c", "image": "x",
            "securityContext": {"privileged": true}}]});
        let f = evaluate(Level::Restricted, LATEST_MINOR, &spec, &json!({}));
        assert_eq!(
            detail(&f),
            "privileged (container \"c\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        let good = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}}}]});
        assert!(evaluate(Level::Restricted, LATEST_MINOR, &good, &json!({})).is_empty());
    }

    #[test]
    fn baseline_words_host_access() {
        let spec = json!({"hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 20}, {"containerPort": 81, "hostPort": 100}]},
                {"name": "b", "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}}}]});
        assert_eq!(
            detail(&evaluate(Level::Baseline, LATEST_MINOR, &spec, &json!({}))),
            "non-default capabilities (container \"b\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume \"h\"), hostPort (container \"a\" uses hostPorts 100, 20)"
        );
    }

    #[test]
    fn labels_parse_with_kubernetes_defaults() {
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (format!("{PREFIX}{k}"), json!(v)))
                .collect::<serde_json::Map<_, _>>()
        };
        let p = policy(&labels(&[("enforce", "baseline")]), &Config::default());
        assert_eq!(
            p.warn.to_string(),
            "baseline:latest",
            "warn follows enforce"
        );
        let p = policy(
            &labels(&[("enforce", "bogus"), ("audit-version", "v1.05")]),
            &Config::default(),
        );
        assert_eq!(
            p.enforce.level,
            Level::Restricted,
            "an invalid enforce fails closed"
        );
        assert_eq!(p.errors.len(), 2);
        assert!(valid_version("v1.30") && !valid_version("1.30") && !valid_version("v2.0"));
    }
}
