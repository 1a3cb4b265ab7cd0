//! Workload checks (kube-apiserver's apps and batch validation): Deployments, ReplicaSets,
//! StatefulSets, DaemonSets, Jobs and CronJobs, each with its pod template.

use serde_json::Value;

use super::field::{Errors, Path, text};
use super::pod::{Owner, validate_pod_spec};
use super::selector::validate_label_selector;

/// Checks a Deployment, ReplicaSet, StatefulSet or DaemonSet.
pub fn validate_workload(kind: &str, obj: &Value, e: &mut Errors) {
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    let at = Path::new("spec");
    if kind != "DaemonSet" {
        e.non_negative(&at.child("replicas"), spec.get("replicas"));
    }
    e.non_negative(&at.child("minReadySeconds"), spec.get("minReadySeconds"));
    e.non_negative(
        &at.child("revisionHistoryLimit"),
        spec.get("revisionHistoryLimit"),
    );
    match spec.get("selector") {
        None | Some(Value::Null) => e.required(&at.child("selector"), ""),
        Some(s) if s.as_object().is_some_and(|m| m.is_empty()) => {
            let what = match kind {
                "Deployment" => "deployment",
                "StatefulSet" => "statefulset",
                "DaemonSet" => "daemonset",
                _ => "replicaset",
            };
            e.invalid(
                &at.child("selector"),
                s,
                &format!("empty selector is invalid for {what}"),
            );
        }
        Some(s) => {
            validate_label_selector(s, &at.child("selector"), e);
            selector_matches_template(s, spec, &at, e);
        }
    }
    let template = at.child("template");
    let policy = spec.pointer("/template/spec/restartPolicy");
    if let Some(p) = policy
        && p.as_str() != Some("Always")
    {
        e.not_supported(
            &template.child("spec").child("restartPolicy"),
            p,
            &["Always"],
        );
    }
    if spec
        .pointer("/template/spec/activeDeadlineSeconds")
        .is_some()
    {
        // Deployments share the ReplicaSet's words.
        let named = if kind == "Deployment" {
            "ReplicaSet"
        } else {
            kind
        };
        e.forbidden(
            &template.child("spec").child("activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {named} is not Supported"),
        );
    }
    match kind {
        "Deployment" => validate_deployment_strategy(spec, &at, e),
        "StatefulSet" => {
            if let Some(v) = spec.get("podManagementPolicy")
                && !matches!(v.as_str(), Some("OrderedReady" | "Parallel"))
            {
                e.invalid(
                    &at.child("podManagementPolicy"),
                    v,
                    "must be 'OrderedReady' or 'Parallel'",
                );
            }
            if unknown_strategy(spec.pointer("/updateStrategy/type")) {
                e.invalid(
                    &at.child("updateStrategy"),
                    &go_strategy(spec.get("updateStrategy"), "Partition"),
                    "must be 'RollingUpdate' or 'OnDelete'",
                );
            }
        }
        "DaemonSet" if unknown_strategy(spec.pointer("/updateStrategy/type")) => {
            e.not_supported(
                &at.child("updateStrategy"),
                &go_strategy(spec.get("updateStrategy"), "MaxUnavailable"),
                &["RollingUpdate", "OnDelete"],
            );
        }
        _ => {}
    }
    validate_pod_spec(
        spec.pointer("/template/spec"),
        &template.child("spec"),
        Owner::Template,
        e,
    );
}

/// A workload's selector must select its template's pods.
fn selector_matches_template(selector: &Value, spec: &Value, at: &Path, e: &mut Errors) {
    let labels = spec.pointer("/template/metadata/labels");
    let empty = serde_json::Map::new();
    let have = labels.and_then(Value::as_object).unwrap_or(&empty);
    if !super::selector::selects(selector, have) {
        // Go prints the labels map as `map[string]string{"k":"v"}`, keys sorted.
        let mut pairs: Vec<String> = have
            .iter()
            .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
            .collect();
        pairs.sort();
        e.0.push(crate::status::Cause::new(
            "FieldValueInvalid",
            at.child("template").child("metadata").child("labels").as_str(),
            format!(
                "Invalid value: map[string]string{{{}}}: `selector` does not match template `labels`",
                pairs.join(", ")
            ),
        ));
    }
}

fn validate_deployment_strategy(spec: &Value, at: &Path, e: &mut Errors) {
    let strategy = at.child("strategy");
    let kind = spec.pointer("/strategy/type");
    match kind.and_then(Value::as_str) {
        Some("Recreate") => {
            if spec
                .pointer("/strategy/rollingUpdate")
                .is_some_and(|v| !v.is_null())
            {
                e.forbidden(
                    &strategy.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        Some("RollingUpdate") | None => {
            let rolling = strategy.child("rollingUpdate");
            let unavailable = spec.pointer("/strategy/rollingUpdate/maxUnavailable");
            let surge = spec.pointer("/strategy/rollingUpdate/maxSurge");
            for (v, name) in [(unavailable, "maxUnavailable"), (surge, "maxSurge")] {
                if let Some(v) = v {
                    int_or_percent(v, &rolling.child(name), e);
                }
            }
            let zero = |v: Option<&Value>| {
                v.is_some_and(|v| {
                    v.as_i64() == Some(0)
                        || v.as_str()
                            .and_then(|s| s.strip_suffix('%'))
                            .and_then(|n| n.parse::<i64>().ok())
                            == Some(0)
                })
            };
            if zero(unavailable)
                && zero(surge)
                && let Some(v) = unavailable
            {
                e.invalid(
                    &rolling.child("maxUnavailable"),
                    v,
                    "may not be 0 when `maxSurge` is 0",
                );
            }
            if let Some(v) = unavailable
                && v.as_str()
                    .and_then(|s| s.strip_suffix('%'))
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| n > 100)
            {
                e.invalid(
                    &rolling.child("maxUnavailable"),
                    v,
                    "must not be greater than 100%",
                );
            }
        }
        Some(_) => e.not_supported(
            &strategy,
            &go_strategy(spec.get("strategy"), "MaxUnavailable"),
            &["Recreate", "RollingUpdate"],
        ),
    }
    let min_ready = spec
        .get("minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(v) = spec.get("progressDeadlineSeconds") {
        e.non_negative(&at.child("progressDeadlineSeconds"), Some(v));
        if v.as_i64().is_some_and(|p| p >= 0 && p <= min_ready) {
            e.invalid(
                &at.child("progressDeadlineSeconds"),
                v,
                "must be greater than minReadySeconds",
            );
        }
    }
}

/// Whether a StatefulSet's or DaemonSet's update strategy type is neither of the two.
fn unknown_strategy(kind: Option<&Value>) -> bool {
    kind.is_some_and(|v| !matches!(v.as_str(), Some("RollingUpdate" | "OnDelete")))
}

/// A strategy as kube-apiserver prints the internal struct it rejects: JSON with Go's field
/// names (`{"Type":"Foo","RollingUpdate":null}`); a rolling update given is shown by its
/// first field only.
fn go_strategy(strategy: Option<&Value>, first: &str) -> Value {
    let kind = strategy
        .and_then(|s| s.get("type"))
        .cloned()
        .unwrap_or(Value::from(""));
    let rolling = strategy
        .and_then(|s| s.get("rollingUpdate"))
        .filter(|r| !r.is_null());
    let mut out = serde_json::Map::new();
    out.insert("Type".into(), kind);
    let shown = rolling.map_or(Value::Null, |r| {
        let key = first[..1].to_lowercase() + &first[1..];
        serde_json::json!({ first: r.get(&key).cloned().unwrap_or(Value::Null) })
    });
    out.insert("RollingUpdate".into(), shown);
    Value::Object(out)
}

/// An integer (not negative) or a percentage (`25%`).
fn int_or_percent(v: &Value, at: &Path, e: &mut Errors) {
    match v {
        Value::String(s) => {
            let ok = s
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                e.invalid(
                    at,
                    v,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                );
            }
        }
        Value::Number(_) => e.non_negative(at, Some(v)),
        _ => e.invalid(at, v, "must be an integer or percentage (e.g '5%')"),
    }
}

/// Checks a Job's spec at `at` (`spec`, or `spec.jobTemplate.spec` in a CronJob).
pub fn validate_job_spec(spec: Option<&Value>, at: &Path, e: &mut Errors) {
    let empty = Value::Null;
    let spec = spec.unwrap_or(&empty);
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        e.non_negative(&at.child(field), spec.get(field));
    }
    e.one_of(
        &at.child("completionMode"),
        spec.get("completionMode"),
        &["NonIndexed", "Indexed"],
    );
    if let Some(s) = spec.get("selector").filter(|s| !s.is_null()) {
        validate_label_selector(s, &at.child("selector"), e);
    }
    let template = at.child("template");
    let policy = spec.pointer("/template/spec/restartPolicy");
    let restart = template.child("spec").child("restartPolicy");
    match policy.and_then(Value::as_str) {
        Some("OnFailure" | "Never") => {}
        None | Some("" | "Always") => {
            e.required(&restart, "valid values: \"OnFailure\", \"Never\"")
        }
        Some(_) => e.not_supported(
            &restart,
            policy.unwrap_or(&Value::Null),
            &["OnFailure", "Never"],
        ),
    }
    validate_pod_spec(
        spec.pointer("/template/spec"),
        &template.child("spec"),
        Owner::Template,
        e,
    );
}

/// Checks a CronJob.
pub fn validate_cronjob(obj: &Value, e: &mut Errors) {
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    let at = Path::new("spec");
    let schedule = text(spec, "schedule");
    if schedule.is_empty() {
        e.required(&at.child("schedule"), "");
    } else if let Err(why) = check_schedule(schedule) {
        e.invalid(&at.child("schedule"), &Value::from(schedule), &why);
    }
    e.one_of(
        &at.child("concurrencyPolicy"),
        spec.get("concurrencyPolicy"),
        &["Allow", "Forbid", "Replace"],
    );
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        e.non_negative(&at.child(field), spec.get(field));
    }
    validate_job_spec(
        spec.pointer("/jobTemplate/spec"),
        &at.child("jobTemplate").child("spec"),
        e,
    );
}

/// Whether a schedule parses as the standard five-field cron format (or a `@` descriptor),
/// with the error text robfig/cron (which Kubernetes uses) gives when it does not.
fn check_schedule(schedule: &str) -> Result<(), String> {
    let spec = match schedule
        .strip_prefix("TZ=")
        .or(schedule.strip_prefix("CRON_TZ="))
    {
        Some(rest) => rest.split_once(' ').map_or("", |(_, s)| s).trim(),
        None => schedule,
    };
    if let Some(d) = spec.strip_prefix('@') {
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ if d.starts_with("every ") => Ok(()),
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    // minute, hour, day of month, month, day of week.
    let bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
    let names: [&[&str]; 5] = [
        &[],
        &[],
        &[],
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
        &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    ];
    for ((field, (min, max)), names) in fields.iter().zip(bounds).zip(names) {
        for part in field.split(',') {
            check_cron_range(part, min, max, names)?;
        }
    }
    Ok(())
}

fn check_cron_range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let number = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        s.parse::<u32>().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })
    };
    let (start, end) = match range {
        "*" | "?" => (min, max),
        r => match r.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(r)?;
                (n, n)
            }
        },
    };
    if let Some(s) = step
        && number(s)? == 0
    {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_schedule;

    #[test]
    fn schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 1 jan-mar mon",
            "@hourly",
            "TZ=UTC 0 * * * *",
        ] {
            assert_eq!(check_schedule(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_schedule("abc").unwrap_err(),
            "expected exactly 5 fields, found 1: [abc]"
        );
        assert_eq!(
            check_schedule("0 24 * * *").unwrap_err(),
            "end of range (24) above maximum (23): 24"
        );
    }
}
