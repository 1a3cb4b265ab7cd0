//! Protobuf messages and gRPC clients for the part of the Kubernetes CRI v1 API (`runtime.v1`)
//! a kubelet drives, written by hand for prost so that no protoc or build script is needed.
//!
//! Field numbers and wire types follow `pkg/apis/runtime/v1/api.proto` of kubernetes/cri-api.
//! Fields left out here are skipped as unknown fields when decoding.

use std::collections::HashMap;

use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------------------
// Wrappers and enums
// ---------------------------------------------------------------------------------------------

/// A signed 64-bit value that can be told apart from absent.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Int64Value {
    #[prost(int64, tag = "1")]
    pub value: i64,
}

/// An unsigned 64-bit value that can be told apart from absent.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// The transport protocol of a port mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum Protocol {
    Tcp = 0,
    Udp = 1,
    Sctp = 2,
}

/// How a mount propagates between host and container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum MountPropagation {
    PropagationPrivate = 0,
    PropagationHostToContainer = 1,
    PropagationBidirectional = 2,
}

/// Which namespace a container or sandbox joins: the pod's, its own, the node's, or another
/// container's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum NamespaceMode {
    Pod = 0,
    Container = 1,
    Node = 2,
    Target = 3,
}

/// The state of a pod sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum PodSandboxState {
    SandboxReady = 0,
    SandboxNotready = 1,
}

/// The state of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum ContainerState {
    ContainerCreated = 0,
    ContainerRunning = 1,
    ContainerExited = 2,
    ContainerUnknown = 3,
}

// ---------------------------------------------------------------------------------------------
// Version
// ---------------------------------------------------------------------------------------------

/// Asks the runtime for its name and versions.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VersionRequest {
    #[prost(string, tag = "1")]
    pub version: String,
}

/// The runtime's name and versions.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

// ---------------------------------------------------------------------------------------------
// Shared pieces of sandbox and container configuration
// ---------------------------------------------------------------------------------------------

/// Resolver settings for a sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct DnsConfig {
    #[prost(string, repeated, tag = "1")]
    pub servers: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub searches: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub options: Vec<String>,
}

/// A port of the sandbox published on the host.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PortMapping {
    #[prost(enumeration = "Protocol", tag = "1")]
    pub protocol: i32,
    #[prost(int32, tag = "2")]
    pub container_port: i32,
    #[prost(int32, tag = "3")]
    pub host_port: i32,
    #[prost(string, tag = "4")]
    pub host_ip: String,
}

/// A host path (or image) mounted into a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Mount {
    #[prost(string, tag = "1")]
    pub container_path: String,
    #[prost(string, tag = "2")]
    pub host_path: String,
    #[prost(bool, tag = "3")]
    pub readonly: bool,
    #[prost(bool, tag = "4")]
    pub selinux_relabel: bool,
    #[prost(enumeration = "MountPropagation", tag = "5")]
    pub propagation: i32,
    #[prost(bool, tag = "8")]
    pub recursive_read_only: bool,
    #[prost(message, optional, tag = "9")]
    pub image: Option<ImageSpec>,
    #[prost(string, tag = "10")]
    pub image_sub_path: String,
    #[prost(string, repeated, tag = "11")]
    pub mount_options: Vec<String>,
}

/// The namespace modes of a sandbox or container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NamespaceOption {
    #[prost(enumeration = "NamespaceMode", tag = "1")]
    pub network: i32,
    #[prost(enumeration = "NamespaceMode", tag = "2")]
    pub pid: i32,
    #[prost(enumeration = "NamespaceMode", tag = "3")]
    pub ipc: i32,
    #[prost(string, tag = "4")]
    pub target_id: String,
}

/// A seccomp or AppArmor profile.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SecurityProfile {
    #[prost(enumeration = "security_profile::ProfileType", tag = "1")]
    pub profile_type: i32,
    #[prost(string, tag = "2")]
    pub localhost_ref: String,
}

/// Types nested in [`SecurityProfile`].
pub mod security_profile {
    /// Where a security profile comes from.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum ProfileType {
        RuntimeDefault = 0,
        Unconfined = 1,
        Localhost = 2,
    }
}

/// An image reference, with the annotations and runtime handler it was asked for with.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
    #[prost(map = "string, string", tag = "2")]
    pub annotations: HashMap<String, String>,
    #[prost(string, tag = "18")]
    pub user_specified_image: String,
    #[prost(string, tag = "19")]
    pub runtime_handler: String,
    #[prost(string, tag = "20")]
    pub image_ref: String,
}

/// An environment variable (the value is bytes on the wire, so it may be non-UTF-8).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// A limit on huge pages of one size.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HugepageLimit {
    #[prost(string, tag = "1")]
    pub page_size: String,
    #[prost(uint64, tag = "2")]
    pub limit: u64,
}

/// The cgroup resources of a Linux container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxContainerResources {
    #[prost(int64, tag = "1")]
    pub cpu_period: i64,
    #[prost(int64, tag = "2")]
    pub cpu_quota: i64,
    #[prost(int64, tag = "3")]
    pub cpu_shares: i64,
    #[prost(int64, tag = "4")]
    pub memory_limit_in_bytes: i64,
    #[prost(int64, tag = "5")]
    pub oom_score_adj: i64,
    #[prost(string, tag = "6")]
    pub cpuset_cpus: String,
    #[prost(string, tag = "7")]
    pub cpuset_mems: String,
    #[prost(message, repeated, tag = "8")]
    pub hugepage_limits: Vec<HugepageLimit>,
    #[prost(map = "string, string", tag = "9")]
    pub unified: HashMap<String, String>,
    #[prost(int64, tag = "10")]
    pub memory_swap_limit_in_bytes: i64,
}

/// Capabilities added to and dropped from a container's default set.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Capability {
    #[prost(string, repeated, tag = "1")]
    pub add_capabilities: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub drop_capabilities: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub add_ambient_capabilities: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Pod sandbox configuration
// ---------------------------------------------------------------------------------------------

/// What identifies a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

/// The security settings of a Linux pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxSandboxSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
    #[prost(message, optional, tag = "3")]
    pub run_as_user: Option<Int64Value>,
    #[prost(bool, tag = "4")]
    pub readonly_rootfs: bool,
    #[prost(int64, repeated, tag = "5")]
    pub supplemental_groups: Vec<i64>,
    #[prost(bool, tag = "6")]
    pub privileged: bool,
    #[prost(message, optional, tag = "8")]
    pub run_as_group: Option<Int64Value>,
    #[prost(message, optional, tag = "9")]
    pub seccomp: Option<SecurityProfile>,
    #[prost(message, optional, tag = "10")]
    pub apparmor: Option<SecurityProfile>,
}

/// The Linux-specific configuration of a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
    #[prost(map = "string, string", tag = "3")]
    pub sysctls: HashMap<String, String>,
}

/// Everything needed to create a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(message, optional, tag = "4")]
    pub dns_config: Option<DnsConfig>,
    #[prost(message, repeated, tag = "5")]
    pub port_mappings: Vec<PortMapping>,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

// ---------------------------------------------------------------------------------------------
// Container configuration
// ---------------------------------------------------------------------------------------------

/// What identifies a container within its sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

/// A host device made available in a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Device {
    #[prost(string, tag = "1")]
    pub container_path: String,
    #[prost(string, tag = "2")]
    pub host_path: String,
    #[prost(string, tag = "3")]
    pub permissions: String,
}

/// The security settings of a Linux container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxContainerSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub capabilities: Option<Capability>,
    #[prost(bool, tag = "2")]
    pub privileged: bool,
    #[prost(message, optional, tag = "3")]
    pub namespace_options: Option<NamespaceOption>,
    #[prost(message, optional, tag = "5")]
    pub run_as_user: Option<Int64Value>,
    #[prost(string, tag = "6")]
    pub run_as_username: String,
    #[prost(bool, tag = "7")]
    pub readonly_rootfs: bool,
    #[prost(int64, repeated, tag = "8")]
    pub supplemental_groups: Vec<i64>,
    #[prost(bool, tag = "11")]
    pub no_new_privs: bool,
    #[prost(message, optional, tag = "12")]
    pub run_as_group: Option<Int64Value>,
    #[prost(string, repeated, tag = "13")]
    pub masked_paths: Vec<String>,
    #[prost(string, repeated, tag = "14")]
    pub readonly_paths: Vec<String>,
    #[prost(message, optional, tag = "15")]
    pub seccomp: Option<SecurityProfile>,
    #[prost(message, optional, tag = "16")]
    pub apparmor: Option<SecurityProfile>,
}

/// The Linux-specific configuration of a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxContainerConfig {
    #[prost(message, optional, tag = "1")]
    pub resources: Option<LinuxContainerResources>,
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxContainerSecurityContext>,
}

/// Everything needed to create a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    #[prost(string, tag = "5")]
    pub working_dir: String,
    #[prost(message, repeated, tag = "6")]
    pub envs: Vec<KeyValue>,
    #[prost(message, repeated, tag = "7")]
    pub mounts: Vec<Mount>,
    #[prost(message, repeated, tag = "8")]
    pub devices: Vec<Device>,
    #[prost(map = "string, string", tag = "9")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "10")]
    pub annotations: HashMap<String, String>,
    #[prost(string, tag = "11")]
    pub log_path: String,
    #[prost(bool, tag = "12")]
    pub stdin: bool,
    #[prost(bool, tag = "13")]
    pub stdin_once: bool,
    #[prost(bool, tag = "14")]
    pub tty: bool,
    #[prost(message, optional, tag = "15")]
    pub linux: Option<LinuxContainerConfig>,
}

// ---------------------------------------------------------------------------------------------
// Pod sandbox calls
// ---------------------------------------------------------------------------------------------

/// Creates and starts a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

/// The ID of a new pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// Stops a pod sandbox and its containers.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StopPodSandboxRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// The empty reply to [`StopPodSandboxRequest`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StopPodSandboxResponse {}

/// Removes a pod sandbox and its containers.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RemovePodSandboxRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// The empty reply to [`RemovePodSandboxRequest`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RemovePodSandboxResponse {}

/// Asks for the status of a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxStatusRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// One IP address of a pod.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodIp {
    #[prost(string, tag = "1")]
    pub ip: String,
}

/// The addresses of a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxNetworkStatus {
    #[prost(string, tag = "1")]
    pub ip: String,
    #[prost(message, repeated, tag = "2")]
    pub additional_ips: Vec<PodIp>,
}

/// The namespaces of a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Namespace {
    #[prost(message, optional, tag = "2")]
    pub options: Option<NamespaceOption>,
}

/// The Linux-specific status of a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxPodSandboxStatus {
    #[prost(message, optional, tag = "1")]
    pub namespaces: Option<Namespace>,
}

/// The status of a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
    #[prost(message, optional, tag = "6")]
    pub linux: Option<LinuxPodSandboxStatus>,
    #[prost(map = "string, string", tag = "7")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "8")]
    pub annotations: HashMap<String, String>,
    #[prost(string, tag = "9")]
    pub runtime_handler: String,
}

/// A pod sandbox's status, with runtime-specific detail when asked for verbosely.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
    #[prost(message, repeated, tag = "3")]
    pub containers_statuses: Vec<ContainerStatus>,
    #[prost(int64, tag = "4")]
    pub timestamp: i64,
}

/// A pod sandbox state, wrapped so that a filter can leave it unset.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxStateValue {
    #[prost(enumeration = "PodSandboxState", tag = "1")]
    pub state: i32,
}

/// Narrows a pod sandbox listing; unset fields match everything.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxFilter {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub state: Option<PodSandboxStateValue>,
    #[prost(map = "string, string", tag = "3")]
    pub label_selector: HashMap<String, String>,
}

/// Lists pod sandboxes.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxFilter>,
}

/// A pod sandbox as listed.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandbox {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "6")]
    pub annotations: HashMap<String, String>,
    #[prost(string, tag = "7")]
    pub runtime_handler: String,
}

/// The pod sandboxes matching a filter.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListPodSandboxResponse {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

// ---------------------------------------------------------------------------------------------
// Container calls
// ---------------------------------------------------------------------------------------------

/// Creates a container in a pod sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CreateContainerRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

/// The ID of a new container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CreateContainerResponse {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// Starts a created container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StartContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// The empty reply to [`StartContainerRequest`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StartContainerResponse {}

/// Stops a running container, killing it after `timeout` seconds.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StopContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}

/// The empty reply to [`StopContainerRequest`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StopContainerResponse {}

/// Removes a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RemoveContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// The empty reply to [`RemoveContainerRequest`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RemoveContainerResponse {}

/// A container state, wrapped so that a filter can leave it unset.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerStateValue {
    #[prost(enumeration = "ContainerState", tag = "1")]
    pub state: i32,
}

/// Narrows a container listing; unset fields match everything.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerFilter {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub state: Option<ContainerStateValue>,
    #[prost(string, tag = "3")]
    pub pod_sandbox_id: String,
    #[prost(map = "string, string", tag = "4")]
    pub label_selector: HashMap<String, String>,
}

/// Lists containers.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListContainersRequest {
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ContainerFilter>,
}

/// A container as listed.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Container {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "4")]
    pub image: Option<ImageSpec>,
    #[prost(string, tag = "5")]
    pub image_ref: String,
    #[prost(enumeration = "ContainerState", tag = "6")]
    pub state: i32,
    #[prost(int64, tag = "7")]
    pub created_at: i64,
    #[prost(map = "string, string", tag = "8")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "9")]
    pub annotations: HashMap<String, String>,
    #[prost(string, tag = "10")]
    pub image_id: String,
}

/// The containers matching a filter.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListContainersResponse {
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<Container>,
}

/// Asks for the status of a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerStatusRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// The resources a container currently runs with.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerResources {
    #[prost(message, optional, tag = "1")]
    pub linux: Option<LinuxContainerResources>,
}

/// The status of a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(enumeration = "ContainerState", tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    #[prost(int64, tag = "5")]
    pub started_at: i64,
    #[prost(int64, tag = "6")]
    pub finished_at: i64,
    #[prost(int32, tag = "7")]
    pub exit_code: i32,
    #[prost(message, optional, tag = "8")]
    pub image: Option<ImageSpec>,
    #[prost(string, tag = "9")]
    pub image_ref: String,
    #[prost(string, tag = "10")]
    pub reason: String,
    #[prost(string, tag = "11")]
    pub message: String,
    #[prost(map = "string, string", tag = "12")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "13")]
    pub annotations: HashMap<String, String>,
    #[prost(message, repeated, tag = "14")]
    pub mounts: Vec<Mount>,
    #[prost(string, tag = "15")]
    pub log_path: String,
    #[prost(message, optional, tag = "16")]
    pub resources: Option<ContainerResources>,
    #[prost(string, tag = "17")]
    pub image_id: String,
}

/// A container's status, with runtime-specific detail when asked for verbosely.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<ContainerStatus>,
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

/// Runs a command in a container and waits for it, for at most `timeout` seconds (0: no limit).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ExecSyncRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, repeated, tag = "2")]
    pub cmd: Vec<String>,
    #[prost(int64, tag = "3")]
    pub timeout: i64,
}

/// The output and exit code of a command run by [`ExecSyncRequest`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ExecSyncResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub stdout: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub stderr: Vec<u8>,
    #[prost(int32, tag = "3")]
    pub exit_code: i32,
}

// ---------------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------------

/// Asks for the resource usage of one container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerStatsRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// The resource usage of one container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerStatsResponse {
    #[prost(message, optional, tag = "1")]
    pub stats: Option<ContainerStats>,
}

/// What identifies the container some stats belong to.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerAttributes {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(map = "string, string", tag = "3")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "4")]
    pub annotations: HashMap<String, String>,
}

/// CPU usage at a point in time (`timestamp` in nanoseconds).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CpuUsage {
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    #[prost(message, optional, tag = "2")]
    pub usage_core_nano_seconds: Option<UInt64Value>,
    #[prost(message, optional, tag = "3")]
    pub usage_nano_cores: Option<UInt64Value>,
}

/// Memory usage at a point in time (`timestamp` in nanoseconds).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct MemoryUsage {
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    #[prost(message, optional, tag = "2")]
    pub working_set_bytes: Option<UInt64Value>,
    #[prost(message, optional, tag = "3")]
    pub available_bytes: Option<UInt64Value>,
    #[prost(message, optional, tag = "4")]
    pub usage_bytes: Option<UInt64Value>,
    #[prost(message, optional, tag = "5")]
    pub rss_bytes: Option<UInt64Value>,
    #[prost(message, optional, tag = "6")]
    pub page_faults: Option<UInt64Value>,
    #[prost(message, optional, tag = "7")]
    pub major_page_faults: Option<UInt64Value>,
}

/// Swap usage at a point in time (`timestamp` in nanoseconds).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SwapUsage {
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    #[prost(message, optional, tag = "2")]
    pub swap_available_bytes: Option<UInt64Value>,
    #[prost(message, optional, tag = "3")]
    pub swap_usage_bytes: Option<UInt64Value>,
}

/// The resource usage of a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerStats {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<ContainerAttributes>,
    #[prost(message, optional, tag = "2")]
    pub cpu: Option<CpuUsage>,
    #[prost(message, optional, tag = "3")]
    pub memory: Option<MemoryUsage>,
    #[prost(message, optional, tag = "4")]
    pub writable_layer: Option<FilesystemUsage>,
    #[prost(message, optional, tag = "5")]
    pub swap: Option<SwapUsage>,
}

/// Names a filesystem by where it is mounted.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FilesystemIdentifier {
    #[prost(string, tag = "1")]
    pub mountpoint: String,
}

/// Space and inodes used on a filesystem at a point in time (`timestamp` in nanoseconds).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FilesystemUsage {
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    #[prost(message, optional, tag = "2")]
    pub fs_id: Option<FilesystemIdentifier>,
    #[prost(message, optional, tag = "3")]
    pub used_bytes: Option<UInt64Value>,
    #[prost(message, optional, tag = "4")]
    pub inodes_used: Option<UInt64Value>,
}

// ---------------------------------------------------------------------------------------------
// Image calls
// ---------------------------------------------------------------------------------------------

/// Narrows an image listing.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ImageFilter {
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
}

/// Lists images.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListImagesRequest {
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ImageFilter>,
}

/// An image the runtime holds.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Image {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, repeated, tag = "2")]
    pub repo_tags: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub repo_digests: Vec<String>,
    #[prost(uint64, tag = "4")]
    pub size: u64,
    #[prost(message, optional, tag = "5")]
    pub uid: Option<Int64Value>,
    #[prost(string, tag = "6")]
    pub username: String,
    #[prost(message, optional, tag = "7")]
    pub spec: Option<ImageSpec>,
    #[prost(bool, tag = "8")]
    pub pinned: bool,
}

/// The images matching a filter.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListImagesResponse {
    #[prost(message, repeated, tag = "1")]
    pub images: Vec<Image>,
}

/// Asks for the status of one image.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ImageStatusRequest {
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// An image's status; `image` is unset when the image is not present.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ImageStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub image: Option<Image>,
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

/// Credentials for a registry.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AuthConfig {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(string, tag = "2")]
    pub password: String,
    #[prost(string, tag = "3")]
    pub auth: String,
    #[prost(string, tag = "4")]
    pub server_address: String,
    #[prost(string, tag = "5")]
    pub identity_token: String,
    #[prost(string, tag = "6")]
    pub registry_token: String,
}

/// Pulls an image, optionally with credentials.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PullImageRequest {
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
    #[prost(message, optional, tag = "2")]
    pub auth: Option<AuthConfig>,
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

/// The reference (usually a digest) of a pulled image.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PullImageResponse {
    #[prost(string, tag = "1")]
    pub image_ref: String,
}

/// Removes an image.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RemoveImageRequest {
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
}

/// The empty reply to [`RemoveImageRequest`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RemoveImageResponse {}

/// Asks for the usage of the filesystems holding images and containers.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ImageFsInfoRequest {}

/// The usage of the filesystems holding images and container layers.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ImageFsInfoResponse {
    #[prost(message, repeated, tag = "1")]
    pub image_filesystems: Vec<FilesystemUsage>,
    #[prost(message, repeated, tag = "2")]
    pub container_filesystems: Vec<FilesystemUsage>,
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// Makes one unary call: `path` is `/<package>.<Service>/<Method>`.
async fn unary<Req, Resp>(
    grpc: &mut Grpc<Channel>,
    path: &'static str,
    req: Req,
) -> Result<Resp, tonic::Status>
where
    Req: ::prost::Message + Send + Sync + 'static,
    Resp: ::prost::Message + Default + Send + Sync + 'static,
{
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("CRI service not ready: {e}")))?;
    let mut request = tonic::Request::new(req);
    if let Some((service, method)) = path.trim_start_matches('/').split_once('/') {
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new(service, method));
    }
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let response = grpc
        .unary(request, PathAndQuery::from_static(path), codec)
        .await?;
    Ok(response.into_inner())
}

/// A client of the CRI `runtime.v1.RuntimeService`.
#[derive(Clone, Debug)]
pub struct RuntimeClient {
    grpc: Grpc<Channel>,
}

impl RuntimeClient {
    /// A client sending its calls over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            grpc: Grpc::new(channel),
        }
    }

    async fn call<Req, Resp>(&mut self, path: &'static str, req: Req) -> Result<Resp, tonic::Status>
    where
        Req: ::prost::Message + Send + Sync + 'static,
        Resp: ::prost::Message + Default + Send + Sync + 'static,
    {
        unary(&mut self.grpc, path, req).await
    }

    /// The runtime's name and versions.
    pub async fn version(&mut self, req: VersionRequest) -> Result<VersionResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/Version", req).await
    }

    /// Creates and starts a pod sandbox.
    pub async fn run_pod_sandbox(
        &mut self,
        req: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/RunPodSandbox", req)
            .await
    }

    /// Stops a pod sandbox and its containers.
    pub async fn stop_pod_sandbox(
        &mut self,
        req: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/StopPodSandbox", req)
            .await
    }

    /// Removes a pod sandbox and its containers.
    pub async fn remove_pod_sandbox(
        &mut self,
        req: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/RemovePodSandbox", req)
            .await
    }

    /// The status of a pod sandbox.
    pub async fn pod_sandbox_status(
        &mut self,
        req: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/PodSandboxStatus", req)
            .await
    }

    /// The pod sandboxes matching a filter.
    pub async fn list_pod_sandbox(
        &mut self,
        req: ListPodSandboxRequest,
    ) -> Result<ListPodSandboxResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/ListPodSandbox", req)
            .await
    }

    /// Creates a container in a pod sandbox.
    pub async fn create_container(
        &mut self,
        req: CreateContainerRequest,
    ) -> Result<CreateContainerResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/CreateContainer", req)
            .await
    }

    /// Starts a created container.
    pub async fn start_container(
        &mut self,
        req: StartContainerRequest,
    ) -> Result<StartContainerResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/StartContainer", req)
            .await
    }

    /// Stops a running container.
    pub async fn stop_container(
        &mut self,
        req: StopContainerRequest,
    ) -> Result<StopContainerResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/StopContainer", req)
            .await
    }

    /// Removes a container.
    pub async fn remove_container(
        &mut self,
        req: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/RemoveContainer", req)
            .await
    }

    /// The containers matching a filter.
    pub async fn list_containers(
        &mut self,
        req: ListContainersRequest,
    ) -> Result<ListContainersResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/ListContainers", req)
            .await
    }

    /// The status of a container.
    pub async fn container_status(
        &mut self,
        req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/ContainerStatus", req)
            .await
    }

    /// Runs a command in a container and returns its output.
    pub async fn exec_sync(
        &mut self,
        req: ExecSyncRequest,
    ) -> Result<ExecSyncResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/ExecSync", req).await
    }

    /// The resource usage of a container.
    pub async fn container_stats(
        &mut self,
        req: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse, tonic::Status> {
        self.call("/runtime.v1.RuntimeService/ContainerStats", req)
            .await
    }
}

/// A client of the CRI `runtime.v1.ImageService`.
#[derive(Clone, Debug)]
pub struct ImageClient {
    grpc: Grpc<Channel>,
}

impl ImageClient {
    /// A client sending its calls over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            grpc: Grpc::new(channel),
        }
    }

    async fn call<Req, Resp>(&mut self, path: &'static str, req: Req) -> Result<Resp, tonic::Status>
    where
        Req: ::prost::Message + Send + Sync + 'static,
        Resp: ::prost::Message + Default + Send + Sync + 'static,
    {
        unary(&mut self.grpc, path, req).await
    }

    /// The images matching a filter.
    pub async fn list_images(
        &mut self,
        req: ListImagesRequest,
    ) -> Result<ListImagesResponse, tonic::Status> {
        self.call("/runtime.v1.ImageService/ListImages", req).await
    }

    /// The status of one image.
    pub async fn image_status(
        &mut self,
        req: ImageStatusRequest,
    ) -> Result<ImageStatusResponse, tonic::Status> {
        self.call("/runtime.v1.ImageService/ImageStatus", req).await
    }

    /// Pulls an image.
    pub async fn pull_image(
        &mut self,
        req: PullImageRequest,
    ) -> Result<PullImageResponse, tonic::Status> {
        self.call("/runtime.v1.ImageService/PullImage", req).await
    }

    /// Removes an image.
    pub async fn remove_image(
        &mut self,
        req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse, tonic::Status> {
        self.call("/runtime.v1.ImageService/RemoveImage", req).await
    }

    /// The usage of the filesystems holding images and containers.
    pub async fn image_fs_info(
        &mut self,
        req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse, tonic::Status> {
        self.call("/runtime.v1.ImageService/ImageFsInfo", req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn sandbox_config() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "0b8c".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            hostname: "web".into(),
            log_directory: "/var/log/pods/default_web_0b8c".into(),
            dns_config: Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: vec![PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "0.0.0.0".into(),
            }],
            labels: HashMap::from([("app".into(), "web".into())]),
            annotations: HashMap::from([("note".into(), "x".into())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/besteffort".into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        target_id: String::new(),
                    }),
                    run_as_user: Some(Int64Value { value: 1000 }),
                    run_as_group: Some(Int64Value { value: 0 }),
                    supplemental_groups: vec![5, 6],
                    seccomp: Some(SecurityProfile {
                        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
                sysctls: HashMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
            }),
        }
    }

    fn container_config() -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "nginx".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "docker.io/library/nginx:1".into(),
                user_specified_image: "nginx:1".into(),
                ..Default::default()
            }),
            command: vec!["nginx".into()],
            args: vec!["-g".into(), "daemon off;".into()],
            working_dir: "/".into(),
            envs: vec![KeyValue {
                key: "PATH".into(),
                value: b"/usr/bin".to_vec(),
            }],
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/var/lib/data".into(),
                readonly: true,
                propagation: MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            }],
            log_path: "nginx/0.log".into(),
            tty: true,
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 512,
                    memory_limit_in_bytes: 64 << 20,
                    oom_score_adj: -997,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["NET_ADMIN".into()],
                        drop_capabilities: vec!["ALL".into()],
                        add_ambient_capabilities: Vec::new(),
                    }),
                    run_as_group: Some(Int64Value { value: 101 }),
                    no_new_privs: true,
                    masked_paths: vec!["/proc/kcore".into()],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_config_round_trips() {
        let config = sandbox_config();
        let bytes = config.encode_to_vec();
        // Field 1 (metadata), length-delimited: key (1 << 3) | 2.
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(PodSandboxConfig::decode(bytes.as_slice()).unwrap(), config);

        // Only the hostname: field 2, length-delimited, then its length and bytes.
        let hostname = PodSandboxConfig {
            hostname: "h".into(),
            ..Default::default()
        };
        assert_eq!(hostname.encode_to_vec(), [0x12, 0x01, b'h']);

        // An enum field reads back through prost's typed getter.
        let decoded = PodSandboxConfig::decode(bytes.as_slice()).unwrap();
        let ns = decoded
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network(), NamespaceMode::Node);
        assert_eq!(ns.pid(), NamespaceMode::Container);
    }

    #[test]
    fn container_config_round_trips() {
        let config = container_config();
        let bytes = config.encode_to_vec();
        assert_eq!(ContainerConfig::decode(bytes.as_slice()).unwrap(), config);

        // tty is field 14 (varint): key 14 << 3 = 0x70; linux is field 15: key 0x7a.
        let tty = ContainerConfig {
            tty: true,
            ..Default::default()
        };
        assert_eq!(tty.encode_to_vec(), [0x70, 0x01]);
        let linux = ContainerConfig {
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        };
        assert_eq!(linux.encode_to_vec(), [0x7a, 0x00]);

        // run_as_group is field 12 of the security context; its value is field 1 of Int64Value.
        let ctx = LinuxContainerSecurityContext {
            run_as_group: Some(Int64Value { value: 7 }),
            ..Default::default()
        };
        assert_eq!(ctx.encode_to_vec(), [0x62, 0x02, 0x08, 0x07]);
    }

    #[test]
    fn requests_encode_as_cri_expects() {
        let stop = StopContainerRequest {
            container_id: "c".into(),
            timeout: 10,
        };
        assert_eq!(stop.encode_to_vec(), [0x0a, 0x01, b'c', 0x10, 0x0a]);

        // Extended ImageSpec fields sit at high tag numbers: 18 << 3 | 2 = 0x92 0x01.
        let spec = ImageSpec {
            user_specified_image: "a".into(),
            ..Default::default()
        };
        assert_eq!(spec.encode_to_vec(), [0x92, 0x01, 0x01, b'a']);

        let status = ContainerStatusResponse {
            status: Some(ContainerStatus {
                id: "c".into(),
                state: ContainerState::ContainerExited as i32,
                exit_code: -1,
                ..Default::default()
            }),
            info: HashMap::from([("info".into(), "{}".into())]),
        };
        let decoded = ContainerStatusResponse::decode(status.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, status);
        assert_eq!(
            decoded.status.unwrap().state(),
            ContainerState::ContainerExited
        );
    }
}
