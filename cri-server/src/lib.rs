//! berth-cri: the CRI server behind `berthd`.
//!
//! - `config`: one typed struct, defaults in code, `berthd config default`
//! - `server`: the root-only unix socket, tonic services, shutdown
//! - `service`: the CRI RuntimeService and ImageService: requests translated,
//!   handed to `pod` and `container`, errors mapped to gRPC codes by `status`
//! - `pod`, `container`: each object's record and state machine, its operations,
//!   its OCI config (on berth-bundle) and its CRI view
//! - `daemon`: the objects in memory, their locks, the runtime calls they share
//! - `recovery`: the state rebuilt from disk at start-up
//! - `store`: durable records, written atomically
//! - `shim`: berthd's side of berth-shim
//! - `mounts`: host mounts made for pods and volumes
//! - `stats`: cgroup usage
//! - `cgroup_sweep`: the cgroups of a runtime create that was killed
//! - `metrics`: per-RPC counts and latencies for Prometheus
//! - `status`: the one place where typed errors become gRPC codes
//! - `validate`: request fields checked before anything is made
//! - `streaming`: exec, attach and port-forward over SPDY and WebSocket
//!
//! Pod networking is berth-network's; OCI configs are berth-bundle's.

pub mod cgroup_sweep;
pub mod config;
pub mod container;
pub mod daemon;
pub mod metrics;
pub mod mounts;
pub mod pod;
pub mod recovery;
pub mod server;
pub mod service;
pub mod shim;
pub mod stats;
pub mod status;
pub mod store;
pub mod streaming;
pub mod validate;

pub use berth_proto::CRI_API_VERSION;

/// The runtime name `Version` reports.
pub const RUNTIME_NAME: &str = "berth";
