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
/// `TUG_BIN` names another build to run instead (a release build, for the benchmarks).
#[macro_export]
macro_rules! tug_bin {
    () => {
        $crate::tug_bin_or_override(env!("CARGO_BIN_EXE_tug"))
    };
}

/// `TUG_BIN` when set, else `built`: see [`tug_bin!`].
pub fn tug_bin_or_override(built: &'static str) -> &'static std::path::Path {
    static OVERRIDE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    match OVERRIDE.get_or_init(|| std::env::var_os("TUG_BIN").map(std::path::PathBuf::from)) {
        Some(path) => path.as_path(),
        None => std::path::Path::new(built),
    }
}
