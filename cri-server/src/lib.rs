//! berth-cri: the CRI server behind `berthd`.
//!
//! - `config`: one typed struct, defaults in code, `berthd config default`
//! - `server`: the root-only unix socket, tonic services, shutdown
//! - `image_service`: the CRI ImageService over berth-image
//! - `runtime_service`: the CRI RuntimeService (Version, Status, RuntimeConfig so
//!   far; pods and containers are the rest of the cri-server issue)
//! - `status`: the one place where typed errors become gRPC codes

pub mod config;
pub mod image_service;
pub mod runtime_service;
pub mod server;
pub mod status;

pub use berth_proto::CRI_API_VERSION;

/// The runtime name `Version` reports.
pub const RUNTIME_NAME: &str = "berth";
