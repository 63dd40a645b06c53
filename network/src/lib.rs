//! berth-network: a pod's network, for berthd and `berth run`.
//!
//! - `cni`: the network list from the conf dir, the plugins run for ADD, CHECK and
//!   DEL as the CNI specification says, their results
//! - `netns`: network namespaces pinned by a bind mount, made and removed
//! - `ports`: the port mappings and DNS settings plugins are given

pub mod cni;
pub mod netns;
pub mod ports;

pub use cni::{Attachment, Cni, NetworkList};
pub use ports::{Dns, PortMapping};
