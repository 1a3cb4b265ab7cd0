//! The selectors pods use to place themselves: label selectors over pods, node selector terms
//! over nodes, and inter-pod affinity terms, parsed once per pod into forms cheap to match.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;
use tug_api::selector::LabelSelector;

/// A label selector from its API form. `None` (no selector) matches nothing, as in pod
/// affinity terms; an empty one matches everything.
pub fn label_selector(s: Option<&ApiSelector>) -> Option<LabelSelector> {
    s.map(LabelSelector::from_api)
}

/// Whether `labels` satisfy `selector`.
pub fn matches(selector: &LabelSelector, labels: &[(String, String)]) -> bool {
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    selector.matches(&pairs)
}

/// A label map as sorted pairs.
pub fn label_pairs(labels: Option<&BTreeMap<String, String>>) -> Vec<(String, String)> {
    labels
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Required node affinity: one of the terms must match (an empty list matches nothing).
pub fn node_terms_match(terms: &[NodeSelectorTerm], node: &Node) -> bool {
    terms.iter().any(|t| node_term_matches(t, node))
}

/// One node selector term: every expression and field requirement holds (an empty term
/// matches nothing).
pub fn node_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref().unwrap_or_default();
    exprs
        .iter()
        .all(|r| requirement_holds(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(name);
            requirement_holds(r, value)
        })
}

fn requirement_holds(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|b| number(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Which namespaces a pod affinity term looks in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Namespaces {
    /// Every namespace (an empty namespaceSelector).
    All,
    /// The listed namespaces (by default the pod's own).
    Only(BTreeSet<String>),
}

impl Namespaces {
    /// Whether `ns` is in scope.
    pub fn contains(&self, ns: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Only(set) => set.contains(ns),
        }
    }
}

/// An inter-pod affinity term, parsed.
#[derive(Clone, Debug)]
pub struct PodTerm {
    pub selector: Option<LabelSelector>,
    pub namespaces: Namespaces,
    pub topology_key: String,
}

impl PodTerm {
    /// Parses a term of a pod in namespace `own_ns`.
    pub fn parse(t: &PodAffinityTerm, own_ns: &str) -> Self {
        let listed: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        let all = t.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
        });
        let namespaces = if all {
            Namespaces::All
        } else if listed.is_empty() {
            Namespaces::Only([own_ns.to_string()].into())
        } else {
            Namespaces::Only(listed)
        };
        PodTerm {
            selector: label_selector(t.label_selector.as_ref()),
            namespaces,
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether a pod in `ns` with `labels` is one the term is about.
    pub fn matches(&self, ns: &str, labels: &[(String, String)]) -> bool {
        self.namespaces.contains(ns) && self.selector.as_ref().is_some_and(|s| matches(s, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_terms() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1",
            "labels": {"zone": "a", "cores": "8"}}}))
        .expect("node");
        let term =
            |v: serde_json::Value| -> NodeSelectorTerm { serde_json::from_value(v).expect("term") };
        assert!(node_term_matches(
            &term(json!({"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a", "b"]},
            {"key": "cores", "operator": "Gt", "values": ["4"]},
            {"key": "gpu", "operator": "DoesNotExist"}]})),
            &node
        ));
        assert!(!node_term_matches(
            &term(json!({"matchExpressions": [
            {"key": "cores", "operator": "Lt", "values": ["4"]}]})),
            &node
        ));
        assert!(node_term_matches(
            &term(json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]})),
            &node
        ));
        assert!(!node_term_matches(&term(json!({})), &node));
    }

    #[test]
    fn pod_terms() {
        let t: PodAffinityTerm = serde_json::from_value(json!({"topologyKey": "zone",
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}))
        .expect("term");
        let parsed = PodTerm::parse(&t, "default");
        let web = vec![("app".to_string(), "web".to_string())];
        assert!(parsed.matches("default", &web));
        assert!(!parsed.matches("other", &web));
        assert!(!parsed.matches("default", &[]));
        let none: PodAffinityTerm =
            serde_json::from_value(json!({"topologyKey": "zone"})).expect("term");
        assert!(!PodTerm::parse(&none, "default").matches("default", &web));
    }
}
