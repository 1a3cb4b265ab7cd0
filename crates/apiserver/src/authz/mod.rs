//! Authorization: who may do what. A chain as kube-apiserver's `--authorization-mode=Node,RBAC`
//! with its privileged group in front: `system:masters` may do anything, node agents are
//! decided by the node rules, everyone else by RBAC. Decisions are cached until the policy
//! changes. Also here: the request attributes decisions are made on, privilege-escalation
//! checks for RBAC writes, impersonation, the access reviews and the bootstrap policy.

pub mod bootstrap;
pub mod escalation;
pub mod follow;
pub mod impersonation;
pub mod node;
pub mod rbac;
pub mod request;
pub mod reviews;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tug_api::ApiError;

use crate::auth::Identity;
pub use request::Attributes;

/// The group whose members may do anything, unchecked.
pub const MASTERS: &str = "system:masters";

/// A decision and why it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why (for an allowance, which binding; for a denial, what went wrong, often empty).
    pub reason: String,
}

/// Decisions remembered at most, before the cache starts again.
const CACHE_LIMIT: usize = 16_384;

/// The authorizer chain, with the RBAC policy it evaluates and a cache of its decisions.
#[derive(Default)]
pub struct Authorizer {
    policy: crate::swap::Swap<rbac::Policy>,
    cache: Mutex<HashMap<(Identity, Attributes), Decision>>,
    /// The Node authorizer (and NodeRestriction), for node agents.
    pub node: Arc<node::NodeAuthorizer>,
}

impl Authorizer {
    /// The policy decisions are made on now.
    pub fn policy(&self) -> Arc<rbac::Policy> {
        self.policy.get()
    }

    /// Replaces the policy (and forgets the decisions made on the old one).
    pub fn set_policy(&self, policy: rbac::Policy) {
        self.policy.set(policy);
        self.cache_mut().clear();
    }

    fn cache_mut(&self) -> std::sync::MutexGuard<'_, HashMap<(Identity, Attributes), Decision>> {
        match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Decides whether `user` may do what `a` says.
    pub fn decide(&self, user: &Identity, a: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        // Node agents: the Node authorizer first (not cached: what a node may read changes
        // with its pods), then RBAC.
        let node_reason = match node::node_name(user) {
            Some(name) => match self.node.decide(name, a) {
                node::Verdict::Allow => {
                    return Decision {
                        allowed: true,
                        reason: String::new(),
                    };
                }
                node::Verdict::NoOpinion(reason) => reason,
            },
            None if user.groups.iter().any(|g| g == "system:nodes") => {
                format!("unknown node for user {:?}", user.user)
            }
            None => String::new(),
        };
        let decision = self.decide_rbac(user, a);
        if decision.allowed || node_reason.is_empty() {
            return decision;
        }
        // As kube-apiserver's union of authorizers, every reason of a refusal, one per line.
        let reason = [node_reason, decision.reason]
            .into_iter()
            .filter(|r| !r.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        Decision {
            allowed: false,
            reason,
        }
    }

    /// RBAC's decision, cached until the policy changes.
    fn decide_rbac(&self, user: &Identity, a: &Attributes) -> Decision {
        let key = (user.clone(), a.clone());
        if let Some(d) = self.cache_mut().get(&key) {
            return d.clone();
        }
        let (allowed, reason) = self.policy().authorize(user, a);
        let decision = Decision { allowed, reason };
        let mut cache = self.cache_mut();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, decision.clone());
        decision
    }

    /// `Ok` when `user` may do what `a` says; otherwise the 403 kube-apiserver answers.
    pub fn authorize(&self, user: &Identity, a: &Attributes) -> Result<(), ApiError> {
        let d = self.decide(user, a);
        if d.allowed {
            Ok(())
        } else {
            Err(forbidden(user, a, &d.reason))
        }
    }
}

impl Authorizer {
    /// What a caller's write must pass beyond authorization: privilege-escalation prevention
    /// for RBAC objects and, for node agents, NodeRestriction. `old` is the object an update
    /// replaces.
    pub fn admit_write(
        &self,
        user: &Identity,
        r: &tug_api::Resource,
        subresource: Option<&str>,
        namespace: &str,
        old: Option<&serde_json::Value>,
        new: &serde_json::Value,
    ) -> Result<(), ApiError> {
        escalation::confirm_write(self, user, r, namespace, old, new)?;
        if let Some(node) = node::node_name(user) {
            let name = tug_api::meta::name(new);
            let at = node::Written {
                subresource,
                namespace,
                name,
            };
            self.node.admit(node, r, &at, old, Some(new))?;
        }
        Ok(())
    }
}

/// The 403 for a denied request, worded as kube-apiserver words it.
pub fn forbidden(user: &Identity, a: &Attributes, reason: &str) -> ApiError {
    let mut message = if a.resource_request {
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
            user.user,
            a.verb,
            a.resource_and_subresource(),
            a.api_group
        )
    } else {
        format!("User {:?} cannot {} path {:?}", user.user, a.verb, a.path)
    };
    // As kube-apiserver, the generated part is escaped for HTML (the reason is not).
    message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    forbidden_for(&a.api_group, &a.resource, &a.name, &message)
}

/// A 403 about a resource (or none: `forbidden: ...`), with the details Kubernetes gives.
pub fn forbidden_for(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
    if resource.is_empty() && group.is_empty() {
        return ApiError::forbidden(format!("forbidden: {why}")).with_details("", "", "");
    }
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {name:?} is forbidden: {why}")
    };
    ApiError::forbidden(message).with_details(group, resource, name)
}
