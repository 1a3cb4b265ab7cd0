//! tugboat's native container runtime: OCI images pulled or imported into a content-addressed
//! store, overlayfs root filesystems, pod sandboxes holding the namespaces a pod shares, and
//! containers run under cgroups by a small supervisor process, the shim, that outlives the agent.

pub mod api;
pub mod attach;
pub mod cgroup;
pub mod cri;
pub mod exec;
pub mod image;
pub mod logs;
pub mod native;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod state;

pub use api::{Container, ContainerState, Runtime, StartError};
pub use image::{Image, ImageStore, Reference};
pub use native::NativeRuntime;
