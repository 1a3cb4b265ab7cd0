//! Parsing resource URLs: `/api/v1/...` and `/apis/{group}/{version}/...` into the resource,
//! namespace, name and subresource they address.

use tug_api::ApiError;
use tug_api::catalog::{Catalog, Resource};

/// What a resource URL addresses.
#[derive(Clone, Debug)]
pub struct Target {
    pub resource: &'static Resource,
    /// The namespace in the URL (`None` for cluster-scoped resources and all-namespace lists).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// For `.../proxy/<path>`: the path after `proxy`.
    pub proxy_path: String,
}

/// Parses a path under `/api` or `/apis` against what `catalog` serves; `None` when it is not a resource path at all (the
/// caller answers discovery or 404).
pub fn parse(catalog: &Catalog, path: &str) -> Result<Option<Target>, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Ok(None),
    };
    let find = |plural: &str| {
        catalog
            .lookup(group, version, plural)
            .ok_or_else(|| ApiError::no_route(path))
    };
    // namespaces/{ns}/{plural}[/{name}[/{sub}]] addresses namespaced resources; anything
    // else is {plural}[/{name}[/{sub}]].
    if let ["namespaces", ns, plural, tail @ ..] = rest
        && let Some(r) = catalog.lookup(group, version, plural)
        && r.namespaced()
    {
        return target(path, r, Some(ns), tail).map(Some);
    }
    let (plural, tail) = rest.split_first().ok_or_else(|| ApiError::no_route(path))?;
    target(path, find(plural)?, None, tail).map(Some)
}

fn target(
    path: &str,
    resource: &'static Resource,
    namespace: Option<&str>,
    tail: &[&str],
) -> Result<Target, ApiError> {
    let mut proxy_path = String::new();
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(*name), None),
        [name, sub] if resource.has_subresource(sub) => (Some(*name), Some(*sub)),
        [name, "proxy", rest @ ..] if resource.has_subresource("proxy") => {
            proxy_path = rest.join("/");
            (Some(*name), Some("proxy"))
        }
        _ => return Err(ApiError::no_route(path)),
    };
    if name.is_some_and(str::is_empty) || namespace.is_some_and(str::is_empty) {
        return Err(ApiError::no_route(path));
    }
    Ok(Target {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
        proxy_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Result<Option<Target>, ApiError> {
        super::parse(&Catalog::default(), path)
    }

    fn t(path: &str) -> Target {
        match parse(path) {
            Ok(Some(t)) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_resource_paths() {
        let p = t("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(
            (
                p.resource.plural,
                p.namespace.as_deref(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let ns = t("/api/v1/namespaces/kube-system");
        assert_eq!(
            (ns.resource.plural, ns.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let fin = t("/api/v1/namespaces/x/finalize");
        assert_eq!(fin.subresource.as_deref(), Some("finalize"));
        let all = t("/apis/apps/v1/deployments");
        assert!(all.namespace.is_none() && all.name.is_none());
        assert!(parse("/api/v1/namespaces/default/pods/web/nope").is_err());
        assert!(parse("/apis/apps/v1/widgets").is_err());
        assert!(matches!(parse("/api/v1"), Ok(None)));
    }
}
