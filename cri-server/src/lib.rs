//! berth-cri: the CRI server behind `berthd`.
//!
//! - `config`: one typed struct, defaults in code, `berthd config default`
//! - `server`: the root-only unix socket, tonic services, shutdown
//! - `image_service`: the CRI ImageService over berth-image
//! - `runtime_service`: the CRI RuntimeService, dispatching to `pods` and `containers`
//! - `daemon`: the objects in memory, their locks, exit watching, recovery
//! - `store`: durable records, written atomically
//! - `pods`: sandboxes (pod files, network namespace, CNI, the pause)
//! - `containers`: bundles, the shim, lifecycle, exec
//! - `spec`, `seccomp`, `users`: the OCI config a bundle gets
//! - `shim`: berthd's side of berth-shim
//! - `cni`, `netns`: pod networking
//! - `stats`: cgroup usage
//! - `cgroup_sweep`: the cgroups of a runtime create that was killed
//! - `metrics`: per-RPC counts and latencies for Prometheus
//! - `status`: the one place where typed errors become gRPC codes
//! - `validate`: request fields checked before anything is made

pub mod cgroup_sweep;
pub mod cni;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod image_service;
pub mod metrics;
pub mod netns;
pub mod pods;
pub mod runtime_service;
pub mod seccomp;
pub mod server;
pub mod shim;
pub mod spec;
pub mod stats;
pub mod status;
pub mod store;
pub mod streaming;
pub mod users;
pub mod validate;

pub use berth_proto::CRI_API_VERSION;

/// The runtime name `Version` reports.
pub const RUNTIME_NAME: &str = "berth";
