//! Bootstrap tokens, as kube-apiserver's bootstrap token authenticator reads them: a bearer
//! token `<id>.<secret>` (6 and 16 characters of `[a-z0-9]`) is the Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` whose
//! `token-secret` matches, that is not expired or being deleted, and that allows
//! `usage-bootstrap-authentication`. Its user is `system:bootstrap:<id>`, in
//! `system:bootstrappers` and the Secret's `auth-extra-groups`.

use base64::Engine;
use serde_json::Value;

use crate::auth::Identity;

/// The group every bootstrap token's user is in.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";

/// The token's id and secret, when `token` has a bootstrap token's shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// The Secret that holds the token with this id.
pub fn secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

/// The user `secret` (a Secret as stored) makes of the token `id`.`presented`, if it is
/// valid now (`now` in seconds since the epoch).
pub fn identity(secret: &Value, id: &str, presented: &str, now: i64) -> Option<Identity> {
    if !secret["metadata"]["deletionTimestamp"].is_null()
        || secret["type"] != "bootstrap.kubernetes.io/token"
    {
        return None;
    }
    let field = |k: &str| -> Option<String> {
        let b64 = secret["data"][k].as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        String::from_utf8(bytes).ok()
    };
    let stored = field("token-secret")?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        stored.as_bytes(),
        presented.as_bytes(),
    )) || field("token-id").as_deref() != Some(id)
    {
        return None;
    }
    if let Some(expiration) = field("expiration") {
        match expiration.parse::<jiff::Timestamp>() {
            Ok(t) if t.as_second() > now => {}
            _ => {
                tracing::debug!(
                    token = id,
                    "a bootstrap token is expired (or its expiration unreadable)"
                );
                return None;
            }
        }
    }
    if field("usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    if let Some(extra) = field("auth-extra-groups") {
        for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !valid_group(g) {
                tracing::warn!(
                    token = id,
                    group = g,
                    "a bootstrap token names a group outside system:bootstrappers:; refused"
                );
                return None;
            }
            if !groups.iter().any(|x| x == g) {
                groups.push(g.to_string());
            }
        }
    }
    Some(Identity {
        user: format!("system:bootstrap:{id}"),
        groups,
        ..Default::default()
    })
}

/// `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
fn valid_group(g: &str) -> bool {
    let Some(rest) = g.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(extra: &[(&str, &str)]) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"),
        });
        for (k, v) in extra {
            data[*k] = json!(b64(v));
        }
        json!({"metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
               "type": "bootstrap.kubernetes.io/token", "data": data})
    }

    #[test]
    fn shape() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdefg",
            "abcdef.0123456789abcde",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn valid_token_with_extra_groups() {
        let s = secret(&[
            ("auth-extra-groups", "system:bootstrappers:tug:nodes"),
            ("expiration", "2999-01-01T00:00:00Z"),
        ]);
        let id = identity(&s, "abcdef", "0123456789abcdef", 0).unwrap();
        assert_eq!(id.user, "system:bootstrap:abcdef");
        assert_eq!(id.groups, [BOOTSTRAPPERS, "system:bootstrappers:tug:nodes"]);
    }

    #[test]
    fn refusals() {
        let now = 2_000_000_000;
        assert!(
            identity(&secret(&[]), "abcdef", "0123456789abcdeX", now).is_none(),
            "wrong secret"
        );
        assert!(
            identity(
                &secret(&[("expiration", "2020-01-01T00:00:00Z")]),
                "abcdef",
                "0123456789abcdef",
                now
            )
            .is_none(),
            "expired"
        );
        assert!(
            identity(
                &secret(&[("usage-bootstrap-authentication", "false")]),
                "abcdef",
                "0123456789abcdef",
                now
            )
            .is_none(),
            "usage"
        );
        assert!(
            identity(
                &secret(&[("auth-extra-groups", "system:masters")]),
                "abcdef",
                "0123456789abcdef",
                now
            )
            .is_none(),
            "group"
        );
        let mut s = secret(&[]);
        s["type"] = json!("Opaque");
        assert!(
            identity(&s, "abcdef", "0123456789abcdef", now).is_none(),
            "type"
        );
        let mut s = secret(&[]);
        s["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(
            identity(&s, "abcdef", "0123456789abcdef", now).is_none(),
            "deleting"
        );
        assert!(identity(&secret(&[]), "abcdef", "0123456789abcdef", now).is_some());
    }
}
