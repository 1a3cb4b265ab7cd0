//! The node agent (kubelet). `agent` runs a real node on the native runtime: registration and
//! heartbeats (`node`), a worker per pod (`worker`) building each container's configuration
//! (`containers`) and volumes (`volumes`), and the kubelet HTTPS API (`server`). `hollow` holds
//! the simulated nodes used for scale tests: they register, heartbeat and play pods in name only.

pub mod agent;
pub mod balancer;
pub mod bootstrap;
pub mod claim;
pub mod containers;
pub mod deletion;
pub mod exec;
pub mod hollow;
pub mod imagegc;
pub mod images;
pub mod node;
pub mod portforward;
pub mod pressure;
pub mod probes;
pub mod server;
pub mod spdy;
mod spdy_dictionary;
pub mod stats;
pub mod volumes;
mod websocket;
pub mod worker;
