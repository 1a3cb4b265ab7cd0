//! Label selectors (`app=web,tier!=db,env in (a,b),!legacy`) and field selectors
//! (`metadata.name=x,status.phase!=Running`), parsed and matched as Kubernetes does.

use std::collections::BTreeSet;

use crate::ApiError;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector: every requirement must hold. Empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

fn bad(selector: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: invalid label selector {selector:?}: {why}"
    ))
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn check_key(selector: &str, key: &str) -> Result<String, ApiError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(bad(selector, "empty key"));
    }
    if crate::validation::validate_qualified_name(key, "key").is_some() {
        return Err(bad(selector, &format!("invalid key {key:?}")));
    }
    Ok(key.to_string())
}

fn check_value(selector: &str, v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    if crate::validation::validate_label_value(v, "value").is_some() {
        return Err(bad(selector, &format!("invalid value {v:?}")));
    }
    Ok(v.to_string())
}

fn parse_set(selector: &str, rest: &str) -> Result<BTreeSet<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad(selector, "expected a parenthesised set of values"))?;
    inner.split(',').map(|v| check_value(selector, v)).collect()
}

impl LabelSelector {
    /// Parses a selector; malformed input is a 400 BadRequest.
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in split_top(selector) {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad(selector, "empty requirement"));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(check_key(selector, key)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(check_key(selector, k)?, check_value(selector, v)?)
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(check_key(selector, k)?, check_value(selector, v)?)
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(check_key(selector, k)?, check_value(selector, v)?)
            } else if let Some((k, rest)) = split_word(part, "notin") {
                Requirement::NotIn(check_key(selector, k)?, parse_set(selector, rest)?)
            } else if let Some((k, rest)) = split_word(part, "in") {
                Requirement::In(check_key(selector, k)?, parse_set(selector, rest)?)
            } else if part.contains(['(', ')', ' ', '<', '>']) {
                return Err(bad(selector, &format!("unexpected {part:?}")));
            } else {
                Requirement::Exists(check_key(selector, part)?)
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// A selector from its API form (matchLabels and matchExpressions). An operator the API
    /// would have rejected matches nothing rather than everything.
    pub fn from_api(
        s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> LabelSelector {
        let mut requirements = Vec::new();
        for (k, v) in s.match_labels.iter().flatten() {
            requirements.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for e in s.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
            let key = e.key.clone();
            requirements.push(match e.operator.as_str() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => Requirement::In(key, BTreeSet::new()),
            });
        }
        LabelSelector { requirements }
    }

    /// Whether a label map satisfies every requirement.
    pub fn matches_map(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.matches(&pairs)
    }

    /// Whether labels (key, value pairs) satisfy every requirement.
    pub fn matches(&self, labels: &[(&str, &str)]) -> bool {
        let get = |k: &str| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => get(k).is_none_or(|v| !set.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// `key <word> (…)` split at the operator word.
fn split_word<'a>(part: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let pat = format!(" {word} ");
    if let Some(i) = part.find(&pat) {
        return Some((&part[..i], &part[i + pat.len()..]));
    }
    let pat = format!(" {word}(");
    part.find(&pat)
        .map(|i| (&part[..i], &part[i + pat.len() - 1..]))
}

/// A parsed field selector: `field=value` and `field!=value` terms, all of which must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses a field selector; malformed input is a 400 BadRequest.
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        if selector.trim().is_empty() {
            return Ok(Self { terms });
        }
        for part in selector.split(',') {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {selector:?}: {part:?} is not field=value or field!=value"
                )));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {selector:?}: empty field name"
                )));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    /// The fields it names.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|(f, _, _)| f.as_str())
    }

    /// Whether `value_of(field)` satisfies every term (a missing field reads as "").
    pub fn matches(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.terms
            .iter()
            .all(|(f, equal, v)| (value_of(f) == *v) == *equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_parse_and_match() {
        let s = LabelSelector::parse("app=web,tier!=db,env in (prod, staging),!legacy,owner")
            .expect("parses");
        assert_eq!(s.requirements.len(), 5);
        let labels = [("app", "web"), ("env", "prod"), ("owner", "me")];
        assert!(s.matches(&labels));
        assert!(!s.matches(&[("app", "web"), ("env", "dev"), ("owner", "me")]));
        assert!(!s.matches(&[
            ("app", "web"),
            ("env", "prod"),
            ("owner", "me"),
            ("legacy", "")
        ]));
        let n = LabelSelector::parse("env notin (prod)").expect("parses");
        assert!(n.matches(&[]));
        assert!(!n.matches(&[("env", "prod")]));
        assert!(
            LabelSelector::parse("app==web")
                .expect("parses")
                .matches(&[("app", "web")])
        );
        assert!(LabelSelector::parse("").expect("empty").matches(&[]));
    }

    #[test]
    fn malformed_label_selectors_are_bad_requests() {
        for bad in [
            "app=",
            "=x",
            "a in b",
            "a in (",
            ",",
            "a b",
            "x=has space",
            "!",
        ] {
            match LabelSelector::parse(bad) {
                Err(e) => assert_eq!(e.code, 400, "{bad}"),
                Ok(s) if bad == "app=" => assert!(s.matches(&[("app", "")])),
                Ok(s) => panic!("{bad:?} parsed as {s:?}"),
            }
        }
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=a,status.phase!=Running").expect("parses");
        assert!(f.matches(|k| if k == "metadata.name" {
            "a".into()
        } else {
            "Pending".into()
        }));
        assert!(!f.matches(|_| "b".into()));
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
