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
    let hosts = if host_network {
        // hostNetwork pods see the node's own hosts file, with their aliases added.
        let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        format!("{node_hosts}{}", host_aliases(&spec))
    } else {
        hosts_file(pod, &ip, &cfg.cluster_domain)
    };
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

/// The /etc/hosts of a pod with its own network, as the kubelet writes it: the fixed entries,
/// the pod's address under its name (`HOSTNAME.SUBDOMAIN.NS.svc.DOMAIN HOSTNAME` when it has a
/// subdomain), then its hostAliases.
fn hosts_file(pod: &Pod, ip: &str, cluster_domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = hostname_of(pod);
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !ip.is_empty() {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                hosts.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n"
                ));
            }
            None => hosts.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    hosts.push_str(&host_aliases(&spec));
    hosts
}

/// The hostAliases section of a hosts file: one line per alias, its names tab-separated.
fn host_aliases(spec: &k8s_openapi::api::core::v1::PodSpec) -> String {
    let aliases = spec.host_aliases.as_deref().unwrap_or_default();
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let names = alias.hostnames.as_deref().unwrap_or_default();
        if !names.is_empty() {
            out.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
        }
    }
    out
}

/// The pod's hostname: `spec.hostname`, or its name cut to 63 characters without a trailing
/// `-` or `.` (a DNS label), as the kubelet does.
pub(super) fn hostname_of(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let name: String = spec
        .hostname
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    if name.len() <= 63 {
        return name;
    }
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web-0", "namespace": "team"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn hosts_files_name_the_pod_by_its_subdomain_and_list_aliases_after_a_header() {
        let fixed = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
        let plain = hosts_file(&pod(json!({"containers": []})), "10.1.0.5", "cluster.local");
        assert_eq!(plain, format!("{fixed}10.1.0.5\tweb-0\n"));
        let named = hosts_file(
            &pod(
                json!({"containers": [], "hostname": "db", "subdomain": "dbs",
                "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
                                {"ip": "10.1.2.3", "hostnames": ["foo.remote"]}]}),
            ),
            "10.1.0.5",
            "example.org",
        );
        assert_eq!(
            named,
            format!(
                "{fixed}10.1.0.5\tdb.dbs.team.svc.example.org\tdb\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
            )
        );
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let mut p = pod(json!({"containers": []}));
        p.metadata.name = Some(long);
        assert_eq!(hostname_of(&p), "a".repeat(62));
    }

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
