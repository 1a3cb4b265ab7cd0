//! CNI plugins, the standard contract: when the agent's CNI configuration directory holds a
//! network configuration (`.conflist`, or a single-plugin `.conf`/`.json`; the first by name),
//! pods get their network from those plugins instead of the built-in bridge. Each plugin is
//! run with the `CNI_*` variables and its configuration on stdin; chained plugins get the
//! previous result; `portMappings` reach plugins that declare the capability (portmap). The
//! final result is kept so that DEL can give it back, in reverse order.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A port a pod asks for on the node (`hostPort`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Who the network is for (passed in `CNI_ARGS`, as the kubelet does).
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// What one ADD or DEL is about.
struct Attachment<'a> {
    id: &'a str,
    netns: String,
    pod: &'a PodRef<'a>,
    ports: &'a [PortMapping],
}

/// A loaded network configuration and where its plugins are.
pub struct Cni {
    /// `{cniVersion, name, plugins: [...]}`.
    list: Value,
    bin_dirs: Vec<PathBuf>,
    /// Results of ADD, for DEL.
    state_dir: PathBuf,
    /// The file it came from.
    pub source: PathBuf,
}

impl Cni {
    /// The first network configuration in `conf_dir`, if any.
    pub fn load(
        conf_dir: &Path,
        bin_dirs: Vec<PathBuf>,
        state_dir: &Path,
    ) -> anyhow::Result<Option<Cni>> {
        let Ok(entries) = std::fs::read_dir(conf_dir) else {
            return Ok(None);
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "conflist" || x == "conf" || x == "json")
            })
            .collect();
        files.sort();
        let Some(source) = files.into_iter().next() else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&source)
            .with_context(|| format!("reading {}", source.display()))?;
        let conf: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", source.display()))?;
        let list = if conf.get("plugins").is_some() {
            conf
        } else {
            // A single plugin's configuration is a list of one.
            json!({"cniVersion": conf["cniVersion"], "name": conf["name"], "plugins": [conf]})
        };
        if list["name"].as_str().is_none_or(str::is_empty)
            || list["plugins"].as_array().is_none_or(Vec::is_empty)
        {
            bail!(
                "{}: a network configuration needs a name and plugins",
                source.display()
            );
        }
        std::fs::create_dir_all(state_dir)?;
        Ok(Some(Cni {
            list,
            bin_dirs,
            state_dir: state_dir.to_path_buf(),
            source,
        }))
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        self.list["name"].as_str().unwrap_or("")
    }

    fn plugin_path(&self, kind: &str) -> anyhow::Result<PathBuf> {
        if kind.is_empty() || kind.contains('/') {
            bail!("bad plugin type {kind:?}");
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.exists())
            .with_context(|| format!("CNI plugin {kind:?} is in none of {:?}", self.bin_dirs))
    }

    /// Runs one plugin for `at`; its result on success.
    fn invoke(
        &self,
        command: &str,
        plugin: &Value,
        prev: Option<&Value>,
        at: &Attachment,
    ) -> anyhow::Result<Value> {
        let Attachment {
            id,
            netns,
            pod,
            ports,
        } = at;
        let kind = plugin["type"].as_str().unwrap_or("");
        let mut conf = plugin.clone();
        conf["cniVersion"] = self.list["cniVersion"].clone();
        conf["name"] = self.list["name"].clone();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        if plugin["capabilities"]["portMappings"] == json!(true) {
            let mappings: Vec<Value> = ports
                .iter()
                .map(|p| json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": p.protocol}))
                .collect();
            conf["runtimeConfig"] = json!({"portMappings": mappings});
        }
        let path = std::env::join_paths(&self.bin_dirs)?;
        let mut child = Command::new(self.plugin_path(kind)?)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", path)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID={}",
                    pod.namespace, pod.name, pod.uid
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running CNI plugin {kind}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(conf.to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            let msg = result["msg"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            bail!("CNI plugin {kind} {command} failed: {msg}");
        }
        Ok(result)
    }

    fn result_file(&self, id: &str) -> PathBuf {
        self.state_dir.join(format!("{id}.json"))
    }

    /// Connects the network namespace `netns` of pod `pod` (sandbox `id`); returns its IPv4
    /// address.
    pub fn add(
        &self,
        id: &str,
        netns: &Path,
        pod: &PodRef,
        ports: &[PortMapping],
    ) -> anyhow::Result<Ipv4Addr> {
        let at = Attachment {
            id,
            netns: netns.display().to_string(),
            pod,
            ports,
        };
        let mut prev: Option<Value> = None;
        for plugin in self.list["plugins"].as_array().into_iter().flatten() {
            prev = Some(self.invoke("ADD", plugin, prev.as_ref(), &at)?);
        }
        let netns = at.netns;
        let result = prev.unwrap_or(Value::Null);
        std::fs::write(
            self.result_file(id),
            json!({"netns": netns, "ports": ports.iter().map(|p| json!([p.host_port, p.container_port, p.protocol])).collect::<Vec<_>>(), "result": result}).to_string(),
        )?;
        result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
            .next()
            .context("the CNI result has no IPv4 address")
    }

    /// Disconnects sandbox `id` (every plugin, in reverse order); a sandbox never added is
    /// fine.
    pub fn del(&self, id: &str, pod: &PodRef) -> anyhow::Result<()> {
        let Ok(text) = std::fs::read_to_string(self.result_file(id)) else {
            return Ok(());
        };
        let saved: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let netns = saved["netns"].as_str().unwrap_or("").to_string();
        // A namespace already gone is passed as none, as the contract allows.
        let netns = if Path::new(&netns).exists() {
            netns
        } else {
            String::new()
        };
        let ports: Vec<PortMapping> = saved["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(PortMapping {
                    host_port: u16::try_from(p[0].as_u64()?).ok()?,
                    container_port: u16::try_from(p[1].as_u64()?).ok()?,
                    protocol: p[2].as_str()?.to_string(),
                })
            })
            .collect();
        let result = saved["result"].clone();
        let plugins: Vec<Value> = self.list["plugins"].as_array().cloned().unwrap_or_default();
        let at = Attachment {
            id,
            netns,
            pod,
            ports: &ports,
        };
        for plugin in plugins.iter().rev() {
            self.invoke("DEL", plugin, Some(&result), &at)?;
        }
        let _ = std::fs::remove_file(self.result_file(id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_load_as_lists_and_bad_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(Cni::load(dir.path(), vec![], &state).unwrap().is_none());
        std::fs::write(
            dir.path().join("20-one.conf"),
            r#"{"cniVersion": "1.0.0", "name": "one", "type": "bridge"}"#,
        )
        .unwrap();
        let c = Cni::load(dir.path(), vec![], &state).unwrap().unwrap();
        assert_eq!(c.name(), "one");
        assert_eq!(c.list["plugins"][0]["type"], "bridge");
        std::fs::write(
            dir.path().join("10-bad.conflist"),
            r#"{"name": "x", "plugins": []}"#,
        )
        .unwrap();
        assert!(Cni::load(dir.path(), vec![], &state).is_err());
        std::fs::write(dir.path().join("10-bad.conflist"), "not json").unwrap();
        assert!(Cni::load(dir.path(), vec![], &state).is_err());
    }

    #[test]
    fn a_missing_plugin_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10-x.conflist"),
            r#"{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "nosuchplugin"}]}"#,
        )
        .unwrap();
        let c = Cni::load(
            dir.path(),
            vec![dir.path().to_path_buf()],
            &dir.path().join("s"),
        )
        .unwrap()
        .unwrap();
        let pod = PodRef {
            namespace: "default",
            name: "p",
            uid: "u",
        };
        let e = c
            .add("u", Path::new("/proc/self/ns/net"), &pod, &[])
            .unwrap_err();
        assert!(format!("{e:#}").contains("nosuchplugin"), "{e:#}");
    }
}
