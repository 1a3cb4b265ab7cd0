//! What one ordinary request may not delete, as kube-apiserver refuses it: the immortal
//! namespaces (its NamespaceLifecycle admission) and the system PriorityClasses (their
//! registry). Dry runs are refused the same way.

use tug_api::{ApiError, Resource};

use super::priority::SYSTEM_CLASSES;

/// Namespaces that may never be deleted.
pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// `<resource> "<name>" is forbidden: <why>`, with Kubernetes' details.
fn forbidden(r: &Resource, name: &str, why: &str) -> ApiError {
    let what = if r.group.is_empty() {
        r.plural.to_string()
    } else {
        format!("{}.{}", r.plural, r.group)
    };
    ApiError::forbidden(format!("{what} \"{name}\" is forbidden: {why}"))
        .with_details(r.group, r.plural, name)
}

/// Refuses deleting a system PriorityClass (before the object is read, as Kubernetes does).
pub(super) fn check_class_delete(r: &Resource, name: &str) -> Result<(), ApiError> {
    if r.group == "scheduling.k8s.io"
        && r.plural == "priorityclasses"
        && SYSTEM_CLASSES.iter().any(|(class, _)| *class == name)
    {
        return Err(forbidden(
            r,
            name,
            "this is a system priority class and cannot be deleted",
        ));
    }
    Ok(())
}

/// Refuses deleting an immortal namespace (once it is known to exist, as admission runs).
pub(super) fn check_namespace_delete(r: &Resource, name: &str) -> Result<(), ApiError> {
    if r.group.is_empty() && r.plural == "namespaces" && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(forbidden(r, name, "this namespace may not be deleted"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(group: &str, plural: &str) -> &'static Resource {
        tug_api::catalog::BUILTIN
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .expect("a built-in resource")
    }

    #[test]
    fn immortal_namespaces_and_system_classes_are_refused_in_kubernetes_words() {
        let ns = resource("", "namespaces");
        let e = check_namespace_delete(ns, "kube-system").expect_err("refused");
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "namespaces \"kube-system\" is forbidden: this namespace may not be deleted"
        );
        for name in ["default", "kube-public"] {
            assert!(check_namespace_delete(ns, name).is_err(), "{name}");
        }
        // kube-node-lease is not immortal in Kubernetes either.
        assert!(check_namespace_delete(ns, "kube-node-lease").is_ok());
        assert!(check_namespace_delete(ns, "team-a").is_ok());
        let pc = resource("scheduling.k8s.io", "priorityclasses");
        let e = check_class_delete(pc, "system-node-critical").expect_err("refused");
        assert_eq!(
            e.message,
            "priorityclasses.scheduling.k8s.io \"system-node-critical\" is forbidden: this is a system priority class and cannot be deleted"
        );
        assert!(check_class_delete(pc, "high").is_ok());
        // Another resource of the same name is not protected.
        assert!(check_namespace_delete(resource("", "configmaps"), "default").is_ok());
    }
}
