//! Test fixtures for tugboat's own tests: real components started on loopback, stopped when
//! dropped. Never part of the `tug` binary.

pub mod containerd;
pub mod etcd;
pub mod grpc;
pub mod image;
pub mod kubectl;
pub mod registry;
pub mod server;
pub mod up;
