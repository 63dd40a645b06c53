//! The CRI `runtime.v1` API (k8s.io/cri-api v0.37.2) as Rust types, with tonic
//! server and client stubs for `RuntimeService` and `ImageService`.

/// Messages and services of the `runtime.v1` package.
pub mod runtime {
    pub mod v1 {
        tonic::include_proto!("runtime.v1");
    }
}

pub use runtime::v1;

/// The CRI API version berth speaks, as reported by `Version`'s
/// `runtime_api_version` (the API's package version, `runtime.v1`).
pub const CRI_API_VERSION: &str = "v1";

/// The k8s.io/cri-api module whose `api.proto` berth compiles (Kubernetes 1.37).
pub const CRI_API_MODULE_VERSION: &str = "v0.37.2";
