//! Test fixtures for tugboat's own tests: real components started on loopback, stopped when
//! dropped. Never part of the `tug` binary.

pub mod containerd;
pub mod etcd;
pub mod grpc;
pub mod ha;
pub mod image;
pub mod kubectl;
pub mod oidc;
pub mod registry;
pub mod server;
pub mod timeline;
pub mod up;
pub mod webhook;

/// The `tug` binary under test, as a `&Path`: for the tug package's integration tests, which
/// Cargo tells where it built the binary (`CARGO_BIN_EXE_tug`, read where the macro is used).
#[macro_export]
macro_rules! tug_bin {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_tug"))
    };
}
