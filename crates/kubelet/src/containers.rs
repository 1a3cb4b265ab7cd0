//! From a pod's container to what the runtime runs: argv from command/args and the image,
//! the environment (valueFrom, envFrom, `$(VAR)` expansion), the user and groups, capabilities,
//! mounts and cgroup limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::Api;
use tug_runtime::ContainerState;
use tug_runtime::Image;
use tug_runtime::cgroup::Limits;
use tug_runtime::spec::{ContainerSpec, Mount};

use crate::volumes::Mounted;

/// A container's configuration could not be built (CreateContainerConfigError).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// containerd's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Where a pod's files live on the node.
pub struct PodPaths {
    pub dir: PathBuf,
    pub logs: PathBuf,
}

/// Expands `$(VAR)` references from `vars`; `$$` escapes; unknown references stay as written.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&s[i..i + 3 + end]),
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The value of a pod field (`metadata.name`, `metadata.labels['x']`, `status.podIP`, ...).
pub fn field_ref(pod: &Pod, path: &str) -> Result<String, ConfigError> {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let label_or_annotation = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| {
                map.as_ref()
                    .and_then(|m| m.get(k).cloned())
                    .unwrap_or_default()
            })
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.podIP" => status.pod_ip.unwrap_or_default(),
        "status.hostIP" => status.host_ip.unwrap_or_default(),
        "status.podIPs" => status
            .pod_ips
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.ip)
            .collect::<Vec<_>>()
            .join(","),
        _ => {
            if let Some(v) = label_or_annotation("metadata.labels['", &m.labels) {
                v
            } else if let Some(v) = label_or_annotation("metadata.annotations['", &m.annotations) {
                v
            } else {
                return Err(ConfigError(format!("unsupported fieldRef {path:?}")));
            }
        }
    })
}

/// The value of a container resource (`limits.memory`, ...) in units of `divisor`.
pub fn resource_ref(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    node_cpus: usize,
    node_memory: u64,
) -> Result<String, ConfigError> {
    let res = c.resources.clone().unwrap_or_default();
    let (map, name) = match resource.split_once('.') {
        Some(("limits", n)) => (res.limits, n),
        Some(("requests", n)) => (res.requests, n),
        _ => {
            return Err(ConfigError(format!(
                "unsupported resourceFieldRef {resource:?}"
            )));
        }
    };
    let value = map
        .as_ref()
        .and_then(|m| m.get(name))
        .and_then(|q| tug_api::quantity::parse(&q.0));
    let value = match (value, resource) {
        (Some(v), _) => v,
        // Without a limit, the node's allocatable stands in.
        (None, "limits.cpu") => node_cpus as f64,
        (None, "limits.memory") => node_memory as f64,
        (None, _) => 0.0,
    };
    let divisor = divisor
        .and_then(tug_api::quantity::parse)
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Ok(((value / divisor).ceil() as i64).to_string())
}

/// The Services whose variables a pod's containers get: `default/kubernetes` always, and the
/// pod's namespace's when `enableServiceLinks` is not false. A failed read gives none.
async fn visible_services(client: &kube::Client, pod: &Pod) -> Vec<Service> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
    let mut out = Vec::new();
    if links {
        match Api::<Service>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
        {
            Ok(list) => out.extend(list.items),
            Err(e) => tracing::debug!(error = %e, "listing Services for the environment"),
        }
    }
    if (!links || ns != "default")
        && let Ok(Some(k)) = Api::<Service>::namespaced(client.clone(), "default")
            .get_opt("kubernetes")
            .await
    {
        out.push(k);
    }
    out
}

/// Kubernetes' Service variables (`WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`,
/// `WEB_SERVICE_PORT_HTTP`, and the Docker-link style `WEB_PORT*`) of the Services that have a
/// ClusterIP.
pub fn service_variables(services: &[Service]) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for svc in services {
        let (Some(name), Some(spec)) = (&svc.metadata.name, &svc.spec) else {
            continue;
        };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        let n = name.to_ascii_uppercase().replace('-', "_");
        vars.push((format!("{n}_SERVICE_HOST"), ip.to_string()));
        vars.push((format!("{n}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|pn| !pn.is_empty()) {
                let pn = pn.to_ascii_uppercase().replace('-', "_");
                vars.push((format!("{n}_SERVICE_PORT_{pn}"), p.port.to_string()));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        vars.push((
            format!("{n}_PORT"),
            format!(
                "{}://{ip}:{}",
                proto(first).to_ascii_lowercase(),
                first.port
            ),
        ));
        for p in &ports {
            let pr = proto(p);
            let base = format!("{n}_PORT_{}_{pr}", p.port);
            vars.push((
                base.clone(),
                format!("{}://{ip}:{}", pr.to_ascii_lowercase(), p.port),
            ));
            vars.push((format!("{base}_PROTO"), pr.to_ascii_lowercase()));
            vars.push((format!("{base}_PORT"), p.port.to_string()));
            vars.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    vars
}

/// The environment of a container, in order, with references resolved.
async fn environment(
    client: &kube::Client,
    pod: &Pod,
    c: &Container,
    image: &Image,
    node: (usize, u64),
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, k: String, v: String| {
        if !order.contains(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for kv in image.config.env.clone().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            set(&mut vars, k.to_string(), v.to_string());
        }
    }
    for (k, v) in service_variables(&visible_services(client, pod).await) {
        set(&mut vars, k, v);
    }
    let mut own: BTreeMap<String, String> = BTreeMap::new();
    for from in c.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match cms.get_opt(&r.name).await {
                Ok(Some(cm)) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        own.insert(format!("{prefix}{k}"), v.clone());
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
                Err(e) => return Err(ConfigError(format!("reading configmap {}: {e}", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match secrets.get_opt(&r.name).await {
                Ok(Some(s)) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        let v = String::from_utf8_lossy(&v.0).to_string();
                        own.insert(format!("{prefix}{k}"), v.clone());
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
                Err(e) => return Err(ConfigError(format!("reading secret {}: {e}", r.name))),
            }
        }
    }
    for e in c.env.clone().unwrap_or_default() {
        let value = if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let cm = cms
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| ConfigError(format!("reading configmap {}: {e}", r.name)))?;
                match cm.and_then(|cm| cm.data.and_then(|d| d.get(&r.key).cloned())) {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let s = secrets
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| ConfigError(format!("reading secret {}: {e}", r.name)))?;
                match s.and_then(|s| s.data.and_then(|d| d.get(&r.key).cloned())) {
                    Some(v) => String::from_utf8_lossy(&v.0).to_string(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else if let Some(f) = &from.field_ref {
                field_ref(pod, &f.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_ref(
                    c,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    node.0,
                    node.1,
                )?
            } else {
                String::new()
            }
        } else {
            // Expansion sees the container's own variables defined so far, not the image's.
            expand(e.value.as_deref().unwrap_or(""), &own)
        };
        own.insert(e.name.clone(), value.clone());
        set(&mut vars, e.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .filter_map(|k| vars.get(&k).map(|v| (k, v.clone())))
        .collect())
}

/// Everything the runtime needs to run container `c` of `pod`.
#[allow(clippy::too_many_arguments)]
pub async fn build(
    client: &kube::Client,
    pod: &Pod,
    c: &Container,
    image: &Image,
    runtime: &dyn tug_runtime::Runtime,
    volumes: &Mounted,
    paths: &PodPaths,
    attempt: u32,
    node: (usize, u64),
) -> Result<ContainerSpec, ConfigError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let env = environment(client, pod, c, image, node).await?;
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone();
    let img = &image.config;
    let argv: Vec<String> = if !command.is_empty() {
        command
            .iter()
            .chain(args.iter().flatten())
            .map(|s| expand(s, &vars))
            .collect()
    } else {
        let entry = img.entrypoint.clone().unwrap_or_default();
        let rest = match &args {
            Some(a) if !a.is_empty() => a.iter().map(|s| expand(s, &vars)).collect(),
            _ => img.cmd.clone().unwrap_or_default(),
        };
        entry.into_iter().chain(rest).collect()
    };
    if argv.is_empty() {
        return Err(ConfigError(
            "no command specified: the container and its image give none".into(),
        ));
    }

    // User and groups: the container's securityContext, else the pod's, else the image's.
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let (mut uid, mut gid) = (0u32, 0u32);
    if !img.user.is_empty() {
        let (u, g) = img.user.split_once(':').unwrap_or((img.user.as_str(), ""));
        match u.parse::<u32>() {
            Ok(n) => {
                uid = n;
                gid = runtime.image_user(image, u).map_or(0, |(_, g)| g);
            }
            Err(_) => match runtime.image_user(image, u) {
                Some((n, g)) => (uid, gid) = (n, g),
                None => {
                    return Err(ConfigError(format!(
                        "unable to find user {u}: no matching entries in passwd file"
                    )));
                }
            },
        }
        if let Ok(g) = g.parse() {
            gid = g;
        }
    }
    if let Some(u) = sc.run_as_user.or(pod_sc.run_as_user) {
        uid = u as u32;
    }
    if let Some(g) = sc.run_as_group.or(pod_sc.run_as_group) {
        gid = g as u32;
    }
    if sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true) && uid == 0 {
        return Err(ConfigError(
            "container has runAsNonRoot and image will run as root".into(),
        ));
    }
    let mut groups: Vec<u32> = pod_sc
        .supplemental_groups
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs) = pod_sc.fs_group {
        groups.push(fs as u32);
    }

    // Capabilities.
    let caps = sc.capabilities.clone().unwrap_or_default();
    let norm = |c: &str| {
        let c = c.to_ascii_uppercase();
        if c.starts_with("CAP_") {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    let drop: Vec<String> = caps
        .drop
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|c| norm(c))
        .collect();
    let add: Vec<String> = caps
        .add
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|c| norm(c))
        .collect();
    let mut kept: Vec<String> = if drop.iter().any(|d| d == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| format!("CAP_{c}"))
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for a in add {
        if a == "CAP_ALL" {
            kept = caps::all().iter().map(|c| c.to_string()).collect();
        } else if !kept.contains(&a) {
            kept.push(a);
        }
    }
    let privileged = sc.privileged == Some(true);

    // Mounts: volumes, then the files the kubelet manages.
    let mut mounts = Vec::new();
    for vm in c.volume_mounts.clone().unwrap_or_default() {
        let Some(src) = volumes.get(&vm.name) else {
            return Err(ConfigError(format!(
                "volumeMount {:?} names no volume of the pod",
                vm.name
            )));
        };
        let mut source = src.clone();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let sub = expand(sub, &vars);
            if Path::new(&sub).is_absolute() || sub.split('/').any(|p| p == "..") {
                return Err(ConfigError(format!("invalid subPath {sub:?}")));
            }
            source = source.join(sub);
            if !source.exists() {
                std::fs::create_dir_all(&source)
                    .map_err(|e| ConfigError(format!("creating subPath: {e}")))?;
            }
        }
        mounts.push(Mount {
            source,
            destination: vm.mount_path.clone(),
            read_only: vm.read_only == Some(true),
            tmpfs_size: None,
        });
    }
    for (file, dest) in [
        ("etc-hosts", "/etc/hosts"),
        ("etc-hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        if !mounts.iter().any(|m: &Mount| m.destination == dest) {
            mounts.push(Mount {
                source: paths.dir.join(file),
                destination: dest.into(),
                read_only: false,
                tmpfs_size: None,
            });
        }
    }
    let term_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let term_file = termination_file(&paths.dir, &c.name, attempt);
    if let Some(p) = term_file.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    // Writable by whatever user the container runs as.
    let _ = std::fs::write(&term_file, b"");
    let _ = std::fs::set_permissions(
        &term_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    );
    mounts.push(Mount {
        source: term_file,
        destination: term_path,
        read_only: false,
        tmpfs_size: None,
    });

    // Limits.
    let res = c.resources.clone().unwrap_or_default();
    let q =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| {
            m.as_ref()
                .and_then(|m| m.get(k))
                .and_then(|q| tug_api::quantity::parse(&q.0))
        };
    let cpu_request = q(&res.requests, "cpu").or(q(&res.limits, "cpu"));
    let limits = Limits {
        cpu_shares: cpu_request.map_or(2, |c| ((c * 1024.0) as u64).max(2)),
        cpu_quota_us: q(&res.limits, "cpu").map(|c| (c * 100_000.0) as u64),
        cpu_period_us: 100_000,
        memory_bytes: q(&res.limits, "memory").map(|m| m as u64),
        pids: None,
    };

    // An ephemeral container's target (`kubectl debug --target`), whose process namespace it
    // joins.
    let target = target_of(pod, &spec, c, runtime);
    Ok(ContainerSpec {
        id: String::new(),
        sandbox: pod.metadata.uid.clone().unwrap_or_default(),
        name: c.name.clone(),
        attempt,
        image_id: image.id.clone(),
        layers: Vec::new(),
        args: argv,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: c
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| img.working_dir.clone()),
        uid,
        gid,
        supplementary_groups: groups,
        mounts,
        read_only_rootfs: sc.read_only_root_filesystem == Some(true),
        privileged,
        capabilities: kept,
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        seccomp_default: seccomp_default(&sc, &pod_sc)?,
        limits,
        log_path: paths.logs.join(&c.name).join(format!("{attempt}.log")),
        log_max_bytes: 10 * 1024 * 1024,
        log_max_files: 5,
        share_process_namespace: spec.share_process_namespace == Some(true),
        target_pid: target.as_ref().map(|(_, pid)| *pid).filter(|pid| *pid > 0),
        target_id: target.map(|(id, _)| id),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
    })
}

/// Whether the RuntimeDefault seccomp profile applies: the container's seccompProfile, else
/// the pod's; Unconfined (the default) applies none, and Localhost profiles are not supported.
fn seccomp_default(
    sc: &k8s_openapi::api::core::v1::SecurityContext,
    pod_sc: &k8s_openapi::api::core::v1::PodSecurityContext,
) -> Result<bool, ConfigError> {
    let profile = sc
        .seccomp_profile
        .as_ref()
        .or(pod_sc.seccomp_profile.as_ref());
    match profile.map(|p| p.type_.as_str()) {
        None | Some("Unconfined") => Ok(false),
        Some("RuntimeDefault") => Ok(true),
        Some(other) => Err(ConfigError(format!(
            "seccomp profile type {other:?} is not supported (use RuntimeDefault or Unconfined)"
        ))),
    }
}

/// The host file behind a container attempt's termination message.
pub fn termination_file(pod_dir: &Path, container: &str, attempt: u32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(container)
        .join(format!("{attempt}-termination-log"))
}

/// For an ephemeral container with a `targetContainerName`: the process of the target's
/// running container, whose pid namespace it joins (as `kubectl debug --target` asks).
fn target_of(
    pod: &Pod,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    c: &Container,
    runtime: &dyn tug_runtime::Runtime,
) -> Option<(String, i32)> {
    let target = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .find(|e| e.name == c.name)?
        .target_container_name
        .clone()?;
    runtime
        .list_in(pod.metadata.uid.as_deref().unwrap_or(""))
        .into_iter()
        .filter(|r| r.spec.name == target)
        .max_by_key(|r| r.spec.attempt)
        .and_then(|r| match r.state {
            ContainerState::Running { pid, .. } => Some((r.spec.id, pid)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::{Service, expand, service_variables};
    use std::collections::BTreeMap;

    #[test]
    fn services_become_variables_as_in_kubernetes() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-web"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}
        }))
        .unwrap();
        let vars: BTreeMap<String, String> =
            service_variables(&[svc, headless]).into_iter().collect();
        assert_eq!(vars["MY_WEB_SERVICE_HOST"], "10.96.0.20");
        assert_eq!(vars["MY_WEB_SERVICE_PORT"], "80");
        assert_eq!(vars["MY_WEB_SERVICE_PORT_DNS"], "53");
        assert_eq!(vars["MY_WEB_PORT"], "tcp://10.96.0.20:80");
        assert_eq!(vars["MY_WEB_PORT_53_UDP"], "udp://10.96.0.20:53");
        assert_eq!(vars["MY_WEB_PORT_53_UDP_ADDR"], "10.96.0.20");
        assert!(!vars.keys().any(|k| k.starts_with("H_")));
    }

    #[test]
    fn references_expand_and_escapes_stay_literal() {
        let vars: BTreeMap<String, String> =
            [("A".to_string(), "x".to_string())].into_iter().collect();
        assert_eq!(expand("$(A)-$(B)", &vars), "x-$(B)");
        assert_eq!(expand("$$(A) $", &vars), "$(A) $");
        assert_eq!(expand("é$(A)", &vars), "éx");
    }
}
