//! Impersonation: a caller allowed to `impersonate` users, groups, service accounts, uids and
//! user extras may act as another user with the `Impersonate-User`, `Impersonate-Group`,
//! `Impersonate-Uid` and `Impersonate-Extra-KEY` headers, as kube-apiserver allows.

use std::collections::BTreeMap;

use http::HeaderMap;
use tug_api::ApiError;

use super::{Attributes, Authorizer, forbidden};
use crate::auth::Identity;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA: &str = "impersonate-extra-";

/// The identity a request acts as: the caller's own, or the one its impersonation headers
/// ask for when the caller may take it.
pub fn impersonate(
    authorizer: &Authorizer,
    caller: Identity,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    let value = |v: &http::HeaderValue| v.to_str().unwrap_or_default().to_string();
    let user = headers.get(USER).map(value);
    let groups: Vec<String> = headers.get_all(GROUP).iter().map(value).collect();
    let uid = headers.get(UID).map(value);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, v) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA) {
            let key = percent_decode(key);
            extra.entry(key).or_default().push(value(v));
        }
    }
    let Some(user) = user else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(caller);
        }
        // Worded as kube-apiserver words it, with its Go rendering of what was asked for.
        let mut asked: Vec<String> = groups
            .iter()
            .map(|g| format!("{{Group  {g}    }}"))
            .collect();
        for (key, values) in &extra {
            asked.extend(
                values
                    .iter()
                    .map(|v| format!("{{UserExtra  {v}  authentication.k8s.io/v1  {key}}}")),
            );
        }
        if let Some(uid) = &uid {
            asked.push(format!("{{UID  {uid}  authentication.k8s.io/v1  }}"));
        }
        return Err(ApiError::bad_request(format!(
            "requested [{}] without impersonating a user",
            asked.join(" ")
        )));
    };
    // One check per thing asked for: the user (or service account), each group, each extra
    // value, the uid.
    let mut checks = Vec::new();
    let service_account = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'));
    checks.push(match service_account {
        Some((ns, name)) => {
            Attributes::resource("impersonate", "", "serviceaccounts", "", ns, name)
        }
        None => Attributes::resource("impersonate", "", "users", "", "", &user),
    });
    for g in &groups {
        checks.push(Attributes::resource("impersonate", "", "groups", "", "", g));
    }
    for (key, values) in &extra {
        for v in values {
            checks.push(Attributes::resource(
                "impersonate",
                "authentication.k8s.io",
                "userextras",
                key,
                "",
                v,
            ));
        }
    }
    if let Some(uid) = &uid {
        checks.push(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "uids",
            "",
            "",
            uid,
        ));
    }
    for a in &checks {
        let d = authorizer.decide(&caller, a);
        if !d.allowed {
            return Err(forbidden(&caller, a, &d.reason));
        }
    }
    let mut groups = groups;
    let specified = !groups.is_empty();
    if !specified && let Some((ns, _)) = service_account {
        groups = vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    if user == "system:anonymous" {
        if !groups.iter().any(|g| g == "system:unauthenticated") {
            groups.push("system:unauthenticated".into());
        }
    } else if !groups
        .iter()
        .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        groups.push("system:authenticated".into());
    }
    tracing::debug!(caller = %caller.user, as_user = %user, "impersonating");
    Ok(Identity {
        user,
        groups,
        extra,
        uid: uid.unwrap_or_default(),
    })
}

/// `%XX` escapes decoded (header names carry extra keys escaped); the raw key if invalid.
fn percent_decode(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = key
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(percent_decode("scopes"), "scopes");
        assert_eq!(percent_decode("example.com%2fteam"), "example.com/team");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}
