//! tugboat's apimachinery: pure functions over Kubernetes objects (held as JSON values, so
//! that built-in kinds and custom resources take one path). No I/O.

pub mod apply;
pub mod catalog;
pub mod cidr;
pub mod cluster;
pub mod crd;
pub mod defaults;
pub mod duplicates;
pub mod meta;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod schema;
pub mod selector;
pub mod status;
pub mod strategic;
pub mod taints;
pub mod time;
pub mod validation;

pub use catalog::{Resource, Scope};
pub use status::{ApiError, Cause, Details};
