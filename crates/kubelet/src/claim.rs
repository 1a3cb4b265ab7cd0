//! One agent per node name. Each agent marks its Node with who it is (the host and the data
//! directory it keeps the node's state in, so that a restarted agent is the same one); an
//! agent that finds its node name marked by another agent whose Lease is still being renewed
//! refuses to start rather than share the Node.

use std::path::Path;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

/// The Node annotation naming the agent that holds the node name.
pub const AGENT_ANNOTATION: &str = "tugboat.io/agent";

/// The identity of an agent keeping its state in `data_dir`: `HOST:DIR`.
pub fn agent_identity(data_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{}:{}", host.trim(), dir.display())
}

/// Fails when node `name` is held by another live agent: its Node is marked with another
/// identity than `identity` and its Lease was renewed within its duration.
pub async fn check(client: &kube::Client, name: &str, identity: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(node) = nodes.get_opt(name).await? else {
        return Ok(());
    };
    let holder = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(AGENT_ANNOTATION))
        .filter(|h| h.as_str() != identity);
    let Some(holder) = holder else {
        return Ok(());
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let Some(spec) = leases.get_opt(name).await?.and_then(|l| l.spec) else {
        return Ok(());
    };
    let (Some(renewed), duration) = (spec.renew_time, spec.lease_duration_seconds.unwrap_or(40))
    else {
        return Ok(());
    };
    let ago = jiff::Timestamp::now().as_second() - renewed.0.as_second();
    if ago <= i64::from(duration) {
        anyhow::bail!(
            "node name {name} is held by another agent ({holder}), whose lease was renewed {ago}s ago; give this agent another node name, or stop the other agent (its lease expires {duration}s after its last renewal)"
        );
    }
    Ok(())
}
