//! berth-cri: the CRI server behind `berthd`.
//!
//! The cri-server issue grows this crate one module per concern: `config` (one typed
//! struct, defaults in code), `store` (pods and containers, written atomically),
//! `sandbox` and `container` (one file per CRI call), `cni`, `streaming`, `recovery`,
//! and `status` (the single place where typed errors become gRPC codes).

pub use berth_proto::CRI_API_VERSION;

/// The runtime name `Version` reports.
pub const RUNTIME_NAME: &str = "berth";
