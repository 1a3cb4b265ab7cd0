//! A CRI client runtime: the node agent drives containerd (or any CRI v1 runtime) over its
//! gRPC socket instead of running containers itself (`tug agent --container-runtime-endpoint
//! unix:///run/containerd/containerd.sock`).
//!
//! The runtime keeps no state of its own: what the agent needs back about a sandbox or a
//! container (the [`SandboxSpec`] and [`ContainerSpec`] it was made from) rides along as an
//! annotation, and sandboxes are found by the pod UID label, as kubelets do. The pod network
//! is the runtime's (its CNI configuration); pod IPs come from the sandbox status.

pub mod proto;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tonic::transport::Channel;

use crate::api::{Container, ContainerState, StartError};
use crate::cgroup::Usage;
use crate::image::Image;
use crate::image::manifest::RunConfig;
use crate::image::pull::{Credentials, PullError};
use crate::spec::{ContainerSpec, SandboxSpec};
use crate::state::Exit;

/// A client of the CRI `runtime.v1.RuntimeService`.
type RuntimeClient = proto::runtime_service_client::RuntimeServiceClient<Channel>;
/// A client of the CRI `runtime.v1.ImageService`.
type ImageClient = proto::image_service_client::ImageServiceClient<Channel>;

/// The annotation holding what a sandbox or container was made from.
const SPEC_ANNOTATION: &str = "tugboat.io/spec";
/// The label naming a sandbox's pod, as kubelets set it.
const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// How long one call may take (pulls excepted).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A CRI runtime reached over a Unix socket.
pub struct CriRuntime {
    /// The gRPC calls run on a runtime of their own, so that the blocking methods of
    /// [`crate::Runtime`] can wait for them from any thread.
    tokio: Option<tokio::runtime::Runtime>,
    runtime: RuntimeClient,
    images: ImageClient,
    endpoint: String,
    /// `name://version` from the runtime's Version answer.
    version: String,
    /// Sandbox pids by sandbox ID (a verbose status is costly, and a sandbox keeps its pid).
    pids: std::sync::Mutex<HashMap<String, i32>>,
}

impl Drop for CriRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.tokio.take() {
            rt.shutdown_background();
        }
    }
}

fn status_error(what: &str, s: tonic::Status) -> anyhow::Error {
    anyhow!("{what}: {}", s.message())
}

impl CriRuntime {
    /// Connects to `endpoint` (`unix:///path/to/socket`) and checks that a CRI v1 runtime
    /// answers there.
    pub fn connect(endpoint: &str) -> anyhow::Result<CriRuntime> {
        let path = PathBuf::from(endpoint.strip_prefix("unix://").ok_or_else(|| {
            anyhow!("--container-runtime-endpoint must be unix:///path/to/socket, not {endpoint:?}")
        })?);
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cri")
            .enable_all()
            .build()?;
        let connector = tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        let channel = wait(tokio.spawn(async move {
            tonic::transport::Endpoint::from_static("http://localhost")
                .connect_with_connector_lazy(connector)
        }))?;
        let mut cri = CriRuntime {
            tokio: Some(tokio),
            runtime: RuntimeClient::new(channel.clone()),
            images: ImageClient::new(channel),
            endpoint: endpoint.to_string(),
            version: String::new(),
            pids: Default::default(),
        };
        let version = cri
            .call(|mut rt, _| async move { rt.version(proto::VersionRequest::default()).await })
            .with_context(|| {
                format!("no CRI v1 runtime answers at {endpoint} (is containerd running there?)")
            })?;
        tracing::info!(
            endpoint,
            runtime = %version.runtime_name,
            version = %version.runtime_version,
            "using a CRI runtime"
        );
        cri.version = format!("{}://{}", version.runtime_name, version.runtime_version);
        Ok(cri)
    }

    /// Runs one call on the gRPC runtime and waits for its answer.
    fn call<T, F>(
        &self,
        f: impl FnOnce(RuntimeClient, ImageClient) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(tokio) = &self.tokio else {
            return Err(tonic::Status::unavailable("the CRI client is shut down"));
        };
        let fut = f(self.runtime.clone(), self.images.clone());
        let handle = tokio.spawn(async move {
            tokio::time::timeout(CALL_TIMEOUT, fut)
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("the call timed out")))
                .map(tonic::Response::into_inner)
        });
        wait(handle).map_err(|e| tonic::Status::internal(e.to_string()))?
    }

    /// The ready sandbox of pod `uid`, newest first.
    fn sandbox(&self, uid: &str) -> Option<proto::PodSandbox> {
        let filter = proto::PodSandboxFilter {
            label_selector: HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]),
            state: Some(proto::PodSandboxStateValue {
                state: proto::PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        };
        let list = self
            .call(|mut rt, _| async move {
                rt.list_pod_sandbox(proto::ListPodSandboxRequest {
                    filter: Some(filter),
                })
                .await
            })
            .ok()?;
        list.items.into_iter().max_by_key(|s| s.created_at)
    }

    /// A sandbox's status, and the `info` the runtime adds when asked to be verbose.
    fn sandbox_status(
        &self,
        id: &str,
    ) -> anyhow::Result<(proto::PodSandboxStatus, serde_json::Value)> {
        let id = id.to_string();
        let resp = self
            .call(|mut rt, _| async move {
                rt.pod_sandbox_status(proto::PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: true,
                })
                .await
            })
            .map_err(|s| status_error("reading the sandbox's status", s))?;
        let status = resp
            .status
            .ok_or_else(|| anyhow!("the runtime returned no sandbox status"))?;
        Ok((status, info(&resp.info)))
    }

    fn sandbox_pid(&self, uid: &str) -> anyhow::Result<i32> {
        let sandbox = self
            .sandbox(uid)
            .ok_or_else(|| anyhow!("the pod's sandbox is not running"))?;
        self.pid_of_sandbox(&sandbox.id)
    }

    /// The pid holding a sandbox's namespaces.
    fn pid_of_sandbox(&self, id: &str) -> anyhow::Result<i32> {
        if let Some(pid) = self.pids.lock().ok().and_then(|p| p.get(id).copied()) {
            return Ok(pid);
        }
        let (_, info) = self.sandbox_status(id)?;
        let pid = pid_of(&info)
            .ok_or_else(|| anyhow!("the runtime does not report the sandbox's pid"))?;
        if let Ok(mut pids) = self.pids.lock() {
            pids.insert(id.to_string(), pid);
        }
        Ok(pid)
    }

    /// The container with its spec and state, if it is one of ours. Only a `verbose` status
    /// carries a running container's pid (and costs the runtime more).
    fn container(&self, c: proto::Container, verbose: bool) -> Option<Container> {
        let mut spec: ContainerSpec =
            serde_json::from_str(c.annotations.get(SPEC_ANNOTATION)?).ok()?;
        spec.id = c.id.clone();
        let id = c.id;
        let resp = self
            .call(|mut rt, _| async move {
                rt.container_status(proto::ContainerStatusRequest {
                    container_id: id,
                    verbose,
                })
                .await
            })
            .ok()?;
        let status = resp.status?;
        let time = |ns: i64| {
            jiff::Timestamp::from_nanosecond(i128::from(ns))
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        let state = match proto::ContainerState::try_from(status.state) {
            Ok(proto::ContainerState::ContainerRunning) => ContainerState::Running {
                pid: pid_of(&info(&resp.info)).unwrap_or(0),
                started_at: time(status.started_at),
            },
            Ok(proto::ContainerState::ContainerExited) => ContainerState::Exited(Exit {
                exit_code: status.exit_code,
                signal: None,
                reason: if status.reason.is_empty() {
                    if status.exit_code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    }
                    .to_string()
                } else {
                    status.reason
                },
                message: status.message,
                started_at: time(status.started_at),
                finished_at: time(status.finished_at),
            }),
            _ => ContainerState::Unknown,
        };
        Some(Container { spec, state })
    }

    fn containers(&self, filter: proto::ContainerFilter) -> Vec<Container> {
        let list = self.call(|mut rt, _| async move {
            rt.list_containers(proto::ListContainersRequest {
                filter: Some(filter),
            })
            .await
        });
        match list {
            Ok(list) => list
                .containers
                .into_iter()
                .filter_map(|c| self.container(c, false))
                .collect(),
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e.message(), "listing the runtime's containers");
                Vec::new()
            }
        }
    }

    fn image_status(&self, name: &str) -> Option<Image> {
        let name = name.to_string();
        self.call(
            |_, images| async move { image_status(images, name).await.map(tonic::Response::new) },
        )
        .ok()
        .flatten()
    }
}

/// An image the runtime holds, with the run configuration its verbose status reports.
async fn image_status(
    mut images: ImageClient,
    name: String,
) -> Result<Option<Image>, tonic::Status> {
    let resp = images
        .image_status(proto::ImageStatusRequest {
            image: Some(image_spec(&name)),
            verbose: true,
        })
        .await?
        .into_inner();
    let Some(image) = resp.image else {
        return Ok(None);
    };
    let config = info(&resp.info)
        .pointer("/imageSpec/config")
        .and_then(|c| serde_json::from_value::<RunConfig>(c.clone()).ok())
        .unwrap_or_default();
    Ok(Some(image_of(image, config)))
}

/// Waits for a task on the gRPC runtime from a thread that may itself be async.
fn wait<T>(handle: tokio::task::JoinHandle<T>) -> anyhow::Result<T> {
    futures::executor::block_on(handle).map_err(|e| anyhow!("the CRI call failed: {e}"))
}

/// The JSON a runtime puts under `info` in verbose statuses.
fn info(map: &HashMap<String, String>) -> serde_json::Value {
    map.get("info")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

fn pid_of(info: &serde_json::Value) -> Option<i32> {
    info["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
}

fn image_spec(name: &str) -> proto::ImageSpec {
    proto::ImageSpec {
        image: name.to_string(),
        ..Default::default()
    }
}

fn image_of(image: proto::Image, config: RunConfig) -> Image {
    Image {
        id: image.id,
        names: image.repo_tags,
        repo_digests: image.repo_digests,
        layers: Vec::new(),
        config,
        size: image.size,
        last_used: 0,
    }
}

/// What the runtime is told to make a sandbox from.
fn sandbox_config(spec: &SandboxSpec) -> proto::PodSandboxConfig {
    let node_or_pod = |node: bool| {
        let mode = if node {
            proto::NamespaceMode::Node
        } else {
            proto::NamespaceMode::Pod
        };
        mode as i32
    };
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: spec.name.clone(),
            uid: spec.uid.clone(),
            namespace: spec.namespace.clone(),
            attempt: 0,
        }),
        hostname: if spec.host_network {
            String::new()
        } else {
            spec.hostname.clone()
        },
        labels: HashMap::from([
            (POD_UID_LABEL.to_string(), spec.uid.clone()),
            ("io.kubernetes.pod.name".to_string(), spec.name.clone()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                spec.namespace.clone(),
            ),
        ]),
        annotations: HashMap::from([(
            SPEC_ANNOTATION.to_string(),
            serde_json::to_string(spec).unwrap_or_default(),
        )]),
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    network: node_or_pod(spec.host_network),
                    pid: proto::NamespaceMode::Container as i32,
                    ipc: node_or_pod(spec.host_ipc),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sysctls: spec.sysctls.iter().cloned().collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the runtime is told to make a container from.
fn container_config(spec: &ContainerSpec) -> proto::ContainerConfig {
    let caps: Vec<String> = spec
        .capabilities
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    let pid_mode = if spec.target_id.is_some() {
        proto::NamespaceMode::Target
    } else if spec.share_process_namespace {
        proto::NamespaceMode::Pod
    } else {
        proto::NamespaceMode::Container
    };
    let limits = &spec.limits;
    proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: spec.name.clone(),
            attempt: spec.attempt,
        }),
        image: Some(image_spec(&spec.image_id)),
        command: spec.args.clone(),
        working_dir: spec.cwd.clone(),
        envs: spec
            .env
            .iter()
            .map(|kv| {
                let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
                proto::KeyValue {
                    key: key.to_string(),
                    value: value.as_bytes().to_vec(),
                }
            })
            .collect(),
        mounts: spec
            .mounts
            .iter()
            .map(|m| proto::Mount {
                container_path: m.destination.clone(),
                host_path: m.source.to_string_lossy().into_owned(),
                readonly: m.read_only,
                ..Default::default()
            })
            .collect(),
        labels: HashMap::from([
            (POD_UID_LABEL.to_string(), spec.sandbox.clone()),
            (
                "io.kubernetes.container.name".to_string(),
                spec.name.clone(),
            ),
        ]),
        annotations: HashMap::from([(
            SPEC_ANNOTATION.to_string(),
            serde_json::to_string(spec).unwrap_or_default(),
        )]),
        log_path: spec.log_path.to_string_lossy().into_owned(),
        stdin: spec.stdin,
        stdin_once: spec.stdin_once,
        tty: spec.tty,
        linux: Some(proto::LinuxContainerConfig {
            resources: Some(proto::LinuxContainerResources {
                cpu_period: limits.cpu_period_us as i64,
                cpu_quota: limits.cpu_quota_us.map_or(0, |q| q as i64),
                cpu_shares: limits.cpu_shares as i64,
                memory_limit_in_bytes: limits.memory_bytes.map_or(0, |m| m as i64),
                ..Default::default()
            }),
            security_context: Some(proto::LinuxContainerSecurityContext {
                capabilities: Some(proto::Capability {
                    drop_capabilities: vec!["ALL".to_string()],
                    add_capabilities: caps,
                    ..Default::default()
                }),
                privileged: spec.privileged,
                namespace_options: Some(proto::NamespaceOption {
                    network: proto::NamespaceMode::Pod as i32,
                    pid: pid_mode as i32,
                    ipc: proto::NamespaceMode::Pod as i32,
                    target_id: spec.target_id.clone().unwrap_or_default(),
                }),
                run_as_user: Some(proto::Int64Value {
                    value: i64::from(spec.uid),
                }),
                run_as_group: Some(proto::Int64Value {
                    value: i64::from(spec.gid),
                }),
                supplemental_groups: spec
                    .supplementary_groups
                    .iter()
                    .map(|g| i64::from(*g))
                    .collect(),
                readonly_rootfs: spec.read_only_rootfs,
                no_new_privs: spec.no_new_privs,
                seccomp: spec.seccomp_default.then(|| proto::SecurityProfile {
                    profile_type: proto::security_profile::ProfileType::RuntimeDefault as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

impl crate::api::Runtime for CriRuntime {
    fn version(&self) -> String {
        self.version.clone()
    }

    fn find_image(&self, name: &str) -> Option<Image> {
        self.image_status(name)
    }

    fn pull_image<'a>(
        &'a self,
        name: &'a str,
        credentials: Option<Credentials>,
        _insecure: &'a [String],
    ) -> crate::api::BoxFuture<'a, Result<Image, PullError>> {
        // Plain-HTTP registries are the runtime's to configure (containerd: its hosts.toml).
        Box::pin(async move {
            let request = proto::PullImageRequest {
                image: Some(image_spec(name)),
                auth: credentials.map(|c| proto::AuthConfig {
                    username: c.username,
                    password: c.password,
                    ..Default::default()
                }),
                sandbox_config: None,
            };
            let mut images = self.images.clone();
            let Some(tokio) = &self.tokio else {
                return Err(PullError::Failed("the CRI client is shut down".into()));
            };
            let pulled = tokio
                .spawn(async move {
                    let pulled = images.pull_image(request).await?;
                    image_status(images, pulled.into_inner().image_ref).await
                })
                .await
                .map_err(|e| PullError::Failed(e.to_string()))?;
            match pulled {
                Ok(Some(image)) => Ok(image),
                Ok(None) => Err(PullError::Failed(format!(
                    "{name} was pulled but the runtime does not list it"
                ))),
                Err(s) => {
                    let msg = format!("pulling {name}: {}", s.message());
                    let lower = msg.to_ascii_lowercase();
                    Err(if lower.contains("not found") {
                        PullError::NotFound(msg)
                    } else if lower.contains("unauthorized") || lower.contains("401") {
                        PullError::Unauthorized(msg)
                    } else {
                        PullError::Failed(msg)
                    })
                }
            }
        })
    }

    fn list_images(&self) -> Vec<Image> {
        self.call(|_, mut images| async move {
            images
                .list_images(proto::ListImagesRequest { filter: None })
                .await
        })
        .map(|r| {
            r.images
                .into_iter()
                .map(|i| image_of(i, RunConfig::default()))
                .collect()
        })
        .unwrap_or_default()
    }

    fn remove_image(&self, id: &str) -> anyhow::Result<()> {
        let spec = image_spec(id);
        self.call(|_, mut images| async move {
            images
                .remove_image(proto::RemoveImageRequest { image: Some(spec) })
                .await
        })
        .map_err(|s| status_error("removing the image", s))?;
        Ok(())
    }

    fn image_fs(&self) -> (u64, u64) {
        let fs = self.call(|_, mut images| async move {
            images.image_fs_info(proto::ImageFsInfoRequest {}).await
        });
        let Some(usage) = fs.ok().and_then(|r| r.image_filesystems.into_iter().next()) else {
            return (0, 0);
        };
        let used = usage.used_bytes.map_or(0, |b| b.value);
        let total = usage
            .fs_id
            .and_then(|f| nix::sys::statvfs::statvfs(f.mountpoint.as_str()).ok())
            .map_or(0, |s| s.blocks() * s.fragment_size());
        (used, total)
    }

    fn image_user(&self, _image: &Image, _user: &str) -> Option<(u32, u32)> {
        // User names are the runtime's to resolve; numeric users only here.
        None
    }

    fn run_sandbox(&self, spec: &SandboxSpec) -> anyhow::Result<i32> {
        if let Some(existing) = self.sandbox(&spec.uid)
            && let Ok(pid) = self.pid_of_sandbox(&existing.id)
        {
            return Ok(pid);
        }
        let config = sandbox_config(spec);
        let id = self
            .call(|mut rt, _| async move {
                rt.run_pod_sandbox(proto::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
            })
            .map_err(|s| status_error("running the pod's sandbox", s))?
            .pod_sandbox_id;
        self.pid_of_sandbox(&id)
    }

    fn sandbox_ip(&self, uid: &str) -> Option<String> {
        let sandbox = self.sandbox(uid)?;
        let (status, _) = self.sandbox_status(&sandbox.id).ok()?;
        status.network.map(|n| n.ip).filter(|ip| !ip.is_empty())
    }

    fn remove_sandbox(&self, uid: &str) {
        let filter = proto::PodSandboxFilter {
            label_selector: HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]),
            ..Default::default()
        };
        let Ok(list) = self.call(|mut rt, _| async move {
            rt.list_pod_sandbox(proto::ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
        }) else {
            return;
        };
        for s in list.items {
            let id = s.id;
            if let Ok(mut pids) = self.pids.lock() {
                pids.remove(&id);
            }
            let result = self.call(|mut rt, _| async move {
                rt.stop_pod_sandbox(proto::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await?;
                rt.remove_pod_sandbox(proto::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await
            });
            if let Err(e) = result {
                tracing::warn!(pod = uid, error = %e.message(), "removing a sandbox");
            }
        }
    }

    fn sandboxes(&self) -> Vec<String> {
        let list = self.call(|mut rt, _| async move {
            rt.list_pod_sandbox(proto::ListPodSandboxRequest { filter: None })
                .await
        });
        let mut uids: Vec<String> = list
            .map(|l| {
                l.items
                    .into_iter()
                    .filter_map(|s| s.labels.get(POD_UID_LABEL).cloned())
                    .collect()
            })
            .unwrap_or_default();
        uids.sort();
        uids.dedup();
        uids
    }

    fn sandbox_spec(&self, uid: &str) -> Option<SandboxSpec> {
        let sandbox = self.sandbox(uid)?;
        serde_json::from_str(sandbox.annotations.get(SPEC_ANNOTATION)?).ok()
    }

    fn start_container(&self, spec: ContainerSpec) -> Result<String, StartError> {
        let sandbox = self
            .sandbox(&spec.sandbox)
            .ok_or_else(|| StartError::Failed("the pod's sandbox is not running".into()))?;
        // The runtime writes the log at the sandbox's log directory joined with the
        // container's log path (and writes none without a directory).
        let log_dir = spec
            .log_path
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        if let Some(dir) = spec.log_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let sandbox_config = self.sandbox_spec(&spec.sandbox).map(|s| {
            let mut c = sandbox_config(&s);
            c.log_directory = log_dir.to_string_lossy().into_owned();
            c
        });
        let mut config = container_config(&spec);
        config.log_path = spec
            .log_path
            .strip_prefix(&log_dir)
            .unwrap_or(&spec.log_path)
            .to_string_lossy()
            .into_owned();
        let created = self.call(|mut rt, _| async move {
            rt.create_container(proto::CreateContainerRequest {
                pod_sandbox_id: sandbox.id,
                config: Some(config),
                sandbox_config,
            })
            .await
        });
        let id = match created {
            Ok(c) => c.container_id,
            Err(s) if s.message().contains("not found") && s.message().contains("image") => {
                return Err(StartError::ImageMissing(spec.image_id.clone()));
            }
            Err(s) => return Err(StartError::Failed(s.message().to_string())),
        };
        let cid = id.clone();
        self.call(|mut rt, _| async move {
            rt.start_container(proto::StartContainerRequest { container_id: cid })
                .await
        })
        .map_err(|s| StartError::Failed(s.message().to_string()))?;
        Ok(id)
    }

    fn list(&self) -> Vec<Container> {
        self.containers(proto::ContainerFilter::default())
    }

    fn list_in(&self, sandbox: &str) -> Vec<Container> {
        self.containers(proto::ContainerFilter {
            label_selector: HashMap::from([(POD_UID_LABEL.to_string(), sandbox.to_string())]),
            ..Default::default()
        })
    }

    fn stop_container(&self, id: &str, grace: Duration) {
        let id = id.to_string();
        let result = self.call(|mut rt, _| async move {
            rt.stop_container(proto::StopContainerRequest {
                container_id: id,
                timeout: grace.as_secs() as i64,
            })
            .await
        });
        if let Err(e) = result {
            tracing::warn!(error = %e.message(), "stopping a container");
        }
    }

    fn remove_container(&self, id: &str) -> anyhow::Result<()> {
        let id = id.to_string();
        self.call(|mut rt, _| async move {
            rt.remove_container(proto::RemoveContainerRequest { container_id: id })
                .await
        })
        .map_err(|s| status_error("removing the container", s))?;
        Ok(())
    }

    fn usage(&self, container: &Container) -> Usage {
        let id = container.spec.id.clone();
        let stats = self
            .call(|mut rt, _| async move {
                rt.container_stats(proto::ContainerStatsRequest { container_id: id })
                    .await
            })
            .ok()
            .and_then(|r| r.stats);
        Usage {
            memory_working_set: stats
                .as_ref()
                .and_then(|s| s.memory.as_ref())
                .and_then(|m| m.working_set_bytes.as_ref())
                .map_or(0, |v| v.value),
            cpu_ns: stats
                .as_ref()
                .and_then(|s| s.cpu.as_ref())
                .and_then(|c| c.usage_core_nano_seconds.as_ref())
                .map_or(0, |v| v.value),
        }
    }

    fn exec(&self, id: &str, args: &[String], timeout: Duration) -> anyhow::Result<(i32, Vec<u8>)> {
        let (id, cmd) = (id.to_string(), args.to_vec());
        let r = self
            .call(|mut rt, _| async move {
                rt.exec_sync(proto::ExecSyncRequest {
                    container_id: id,
                    cmd,
                    timeout: timeout.as_secs().max(1) as i64,
                })
                .await
            })
            .map_err(|s| status_error("exec in the container", s))?;
        let mut out = r.stdout;
        out.extend_from_slice(&r.stderr);
        Ok((r.exit_code, out))
    }

    fn exec_stream(
        &self,
        id: &str,
        args: &[String],
        stdio: crate::exec::ExecStdio,
    ) -> anyhow::Result<crate::exec::ExecProcess> {
        // Streaming exec enters the container's namespaces with nsenter (util-linux), rather
        // than proxying the runtime's own streaming server.
        let filter = proto::ContainerFilter {
            id: id.to_string(),
            ..Default::default()
        };
        let listed = self.call(|mut rt, _| async move {
            rt.list_containers(proto::ListContainersRequest {
                filter: Some(filter),
            })
            .await
        });
        let pid = listed
            .ok()
            .and_then(|l| l.containers.into_iter().next())
            .and_then(|c| self.container(c, true))
            .and_then(|c| match c.state {
                ContainerState::Running { pid, .. } => Some(pid),
                _ => None,
            })
            .with_context(|| format!("container {id} is not running"))?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={pid}"))
            .args([
                "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--",
            ])
            .args(args);
        crate::exec::ExecProcess::spawn(cmd, stdio).context("starting nsenter (util-linux)")
    }

    fn attach(&self, _id: &str) -> anyhow::Result<std::os::unix::net::UnixStream> {
        bail!("attach is not supported with a CRI runtime yet (use kubectl logs -f)")
    }

    fn connect_in_pod(
        &self,
        uid: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<TcpStream> {
        let pid = self.sandbox_pid(uid)?;
        crate::native::connect_in_netns(pid, addr, timeout)
    }
}
