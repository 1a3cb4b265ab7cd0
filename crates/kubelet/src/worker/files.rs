//! The files every container of a pod mounts: /etc/hosts, its hostname and resolv.conf.

use super::*;

/// Writes the files every container of the pod mounts: /etc/hosts, hostname, resolv.conf.
pub(super) fn write_pod_files(
    cfg: &AgentConfig,
    pod: &Pod,
    dir: &std::path::Path,
    pod_ip: Option<&str>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let hostname = hostname_of(pod);
    let ip = pod_ip.map(str::to_string).unwrap_or_else(|| {
        if host_network {
            cfg.node_ip.clone()
        } else {
            String::new()
        }
    });
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !ip.is_empty() {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    for alias in spec.host_aliases.unwrap_or_default() {
        if let Some(names) = alias.hostnames {
            hosts.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
        }
    }
    std::fs::write(dir.join("etc-hosts"), hosts)?;
    std::fs::write(dir.join("etc-hostname"), format!("{hostname}\n"))?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = resolv_conf(cfg, pod, &host_resolv);
    std::fs::write(dir.join("resolv.conf"), resolv)?;
    Ok(())
}

/// A pod's resolv.conf, as its dnsPolicy and dnsConfig say: the cluster DNS with the
/// Kubernetes search path and `ndots:5` (ClusterFirst; with hostNetwork only for
/// ClusterFirstWithHostNet), the node's own (Default), or nothing but dnsConfig (None); then
/// dnsConfig's servers and searches appended and its options merged by name.
pub fn resolv_conf(cfg: &AgentConfig, pod: &Pod, host_resolv: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let words = |key: &str| -> Vec<String> {
        host_resolv
            .lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter(|rest| rest.starts_with([' ', '\t']))
            .flat_map(|rest| rest.split_whitespace().map(String::from))
            .collect()
    };
    let (mut servers, mut searches, mut options) = match policy {
        "None" => (Vec::new(), Vec::new(), Vec::new()),
        "Default" => (words("nameserver"), words("search"), words("options")),
        "ClusterFirst" if host_network => (words("nameserver"), words("search"), words("options")),
        _ => {
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let d = &cfg.cluster_domain;
            let mut search = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            search.extend(words("search"));
            (
                vec![cfg.cluster_dns.clone()],
                search,
                vec!["ndots:5".to_string()],
            )
        }
    };
    if let Some(c) = &spec.dns_config {
        servers.extend(c.nameservers.iter().flatten().cloned());
        searches.extend(c.searches.iter().flatten().cloned());
        for o in c.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            options.retain(|x| x.split(':').next() != Some(name));
            options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    searches.retain(|s| seen.insert(s.clone()));
    servers.dedup();
    servers.truncate(3);
    searches.truncate(32);
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

pub(super) fn hostname_of(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.hostname
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_dns_policy_and_dns_config() {
        let cfg = AgentConfig::new("n", "/tmp".into());
        let host = "search corp.example\nnameserver 198.51.100.1\noptions edns0\n";
        let pod = |spec: serde_json::Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p", "namespace": "team"}, "spec": spec}),
            )
            .unwrap()
        };
        let first = resolv_conf(&cfg, &pod(json!({"containers": []})), host);
        assert_eq!(
            first,
            "search team.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let default = resolv_conf(
            &cfg,
            &pod(json!({"containers": [], "dnsPolicy": "Default"})),
            host,
        );
        assert_eq!(
            default,
            "search corp.example\nnameserver 198.51.100.1\noptions edns0\n"
        );
        let host_net = resolv_conf(
            &cfg,
            &pod(json!({"containers": [], "hostNetwork": true})),
            host,
        );
        assert_eq!(host_net, default);
        let with_host_net = resolv_conf(
            &cfg,
            &pod(
                json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
            ),
            host,
        );
        assert!(with_host_net.contains("nameserver 10.96.0.10"));
        let none = resolv_conf(
            &cfg,
            &pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["198.51.100.7"], "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}})),
            host,
        );
        assert_eq!(
            none,
            "search a.example\nnameserver 198.51.100.7\noptions ndots:2 edns0\n"
        );
        let merged = resolv_conf(
            &cfg,
            &pod(
                json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}),
            ),
            host,
        );
        assert!(merged.ends_with("options ndots:1\n"), "{merged}");
    }
}
