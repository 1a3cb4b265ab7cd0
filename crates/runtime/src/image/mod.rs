//! OCI images: references, the documents they are made of, the store on disk, and the ways
//! images arrive (archives now, registries in `pull`).

pub mod archive;
pub mod layer;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod store;

pub use reference::Reference;
pub use store::{Image, ImageStore};
