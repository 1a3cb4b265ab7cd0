//! What a request asks to do, read from its method, path and query the way kube-apiserver's
//! RequestInfoFactory reads them: a verb, and for resource requests the API group, version,
//! resource, subresource, namespace and name. Authorization decides on these alone.

/// The attributes authorization decides on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
    /// or a special verb (`impersonate`, `bind`, `escalate`, `use` …); for non-resource
    /// requests the HTTP method in lower case.
    pub verb: String,
    /// Whether the request is for a resource (under `/api/VERSION` or `/apis/GROUP/VERSION`)
    /// rather than a plain path.
    pub resource_request: bool,
    /// The request's path (non-resource requests are authorized on it).
    pub path: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl Attributes {
    /// Attributes of a resource request, as reviews and the write path build them.
    pub fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Self {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// Attributes of a request for a plain path.
    pub fn non_resource(verb: &str, path: &str) -> Self {
        Self {
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// The resource with its subresource (`pods/log`), as rules name it.
    pub fn resource_and_subresource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// Subresources of a namespace object itself (`/api/v1/namespaces/NAME/status`), which are
/// not resources inside the namespace.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Reads a request's attributes from its method, path and query string.
pub fn attributes(method: &str, path: &str, query: Option<&str>) -> Attributes {
    let mut a = Attributes {
        path: path.to_string(),
        verb: method.to_ascii_lowercase(),
        ..Default::default()
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match parts.as_slice() {
        // A version's or group's discovery (`/api/v1`, `/apis/apps/v1`) is a plain path.
        ["api", version, rest @ ..] if !rest.is_empty() => {
            a.api_version = version.to_string();
            rest
        }
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            a.api_group = group.to_string();
            a.api_version = version.to_string();
            rest
        }
        _ => return a,
    };
    a.resource_request = true;
    let mut rest = rest;
    a.verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_string();
    if let [special @ ("watch" | "proxy"), tail @ ..] = rest
        && !tail.is_empty()
    {
        a.verb = special.to_string();
        rest = tail;
    }
    if let ["namespaces", ns, tail @ ..] = rest {
        a.namespace = ns.to_string();
        if let [_, ..] = tail
            && !NAMESPACE_SUBRESOURCES.contains(&tail[0])
        {
            rest = tail;
        }
    }
    if let Some(r) = rest.first() {
        a.resource = r.to_string();
    }
    if let Some(n) = rest.get(1) {
        a.name = n.to_string();
    }
    if let Some(s) = rest.get(2) {
        a.subresource = s.to_string();
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if a.name.is_empty() && a.verb == "get" {
        a.verb = if matches!(param("watch"), Some("true" | "1")) {
            "watch"
        } else {
            "list"
        }
        .to_string();
        // A list or watch of one object by name is authorized as that object's.
        if let Some(name) = param("fieldSelector").and_then(exact_name) {
            a.name = name;
        }
    }
    if a.name.is_empty() && a.verb == "delete" {
        a.verb = "deletecollection".to_string();
    }
    a
}

/// The name a field selector requires exactly (`metadata.name=x` and nothing else), when it
/// is a valid path segment.
fn exact_name(selector: &str) -> Option<String> {
    let mut found = None;
    for term in selector.split(',') {
        let (key, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(k, _)| !k.ends_with('!'))?;
        if key.trim() != "metadata.name" {
            continue;
        }
        found = Some(value.trim().to_string());
    }
    found.filter(|n| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '%']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(method: &str, path: &str, query: &str) -> Attributes {
        attributes(method, path, Some(query))
    }

    #[test]
    fn verbs_follow_the_method_and_the_collection() {
        let a = at("GET", "/api/v1/namespaces/ns/pods", "");
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("list", "ns"));
        assert_eq!(at("GET", "/api/v1/pods", "watch=true").verb, "watch");
        assert_eq!(at("GET", "/api/v1/namespaces/ns/pods/p", "").verb, "get");
        assert_eq!(
            at("DELETE", "/api/v1/namespaces/ns/pods", "").verb,
            "deletecollection"
        );
        assert_eq!(
            at("DELETE", "/api/v1/namespaces/ns/pods/p", "").verb,
            "delete"
        );
        assert_eq!(
            at("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", "").verb,
            "patch"
        );
        assert_eq!(
            at("PUT", "/apis/apps/v1/namespaces/ns/deployments/d/scale", "").subresource,
            "scale"
        );
        let w = at(
            "GET",
            "/api/v1/namespaces/ns/configmaps",
            "watch=1&fieldSelector=metadata.name%3Dcm",
        );
        assert_eq!((w.verb.as_str(), w.name.as_str()), ("watch", "cm"));
    }

    #[test]
    fn a_namespace_is_its_own_namespace() {
        let a = at("GET", "/api/v1/namespaces/team", "");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "team", "team")
        );
        let f = at("PUT", "/api/v1/namespaces/team/finalize", "");
        assert_eq!(
            (f.resource.as_str(), f.subresource.as_str()),
            ("namespaces", "finalize")
        );
        let list = at("GET", "/api/v1/namespaces", "");
        assert_eq!((list.verb.as_str(), list.namespace.as_str()), ("list", ""));
    }

    #[test]
    fn plain_paths_and_discovery_are_not_resource_requests() {
        for p in [
            "/healthz",
            "/version",
            "/apis",
            "/api",
            "/api/v1",
            "/openapi/v3",
            "/apis/apps",
            "/apis/apps/v1",
        ] {
            let a = at("GET", p, "");
            assert!(!a.resource_request, "{p}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", p));
        }
        assert_eq!(at("POST", "/logs", "").verb, "post");
    }
}
