//! berth-image: everything about images, shared by `berthd` and the `berth` CLI.
//!
//! - [`reference`]: parse and normalise image references as Docker and containerd do.
//!
//! The image issue grows this crate with the registry client (pull, auth, mirrors),
//! the content store, layer unpacking with path safety, overlay snapshots and image
//! metadata.

pub mod reference;

pub use reference::{Reference, ReferenceError};
