//! The RPCs of the CRI that berthd does not implement, each with the reason it
//! answers `Unimplemented` (listed in docs/cri.md). A caller sees what is not
//! supported, why, and what to use instead.

use tonic::Status;

/// The reason a list-streaming RPC (KEP-5825) is not served, naming the unary
/// call that gives the same answer. kubelet (feature gate `CRIListStreaming`)
/// falls back to the unary call when the stream answers Unimplemented.
pub fn list_streaming(rpc: &str, unary: &str) -> Status {
    Status::unimplemented(format!(
        "berthd does not implement {rpc}: CRI list streaming (KEP-5825, kubelet feature gate \
         CRIListStreaming) is not supported yet; call {unary}, which returns the same items \
         in one response (kubelet falls back to it on its own)"
    ))
}

/// CRI metrics (kubelet feature gate `PodAndContainerStatsFromCRI`).
pub fn cri_metrics(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "berthd does not implement {rpc}: CRI metrics (kubelet feature gate \
         PodAndContainerStatsFromCRI) are not supported yet; leave the gate off so that kubelet \
         takes its metrics from cAdvisor, or use ContainerStats and PodSandboxStats"
    ))
}

/// Checkpoint and restore: berthd has no CRIU integration.
pub fn checkpoint(rpc: &str, what: &str) -> Status {
    Status::unimplemented(format!(
        "berthd does not implement {rpc}: {what} needs CRIU, and berthd has no CRIU \
         integration (berth-runtime's own checkpoint and restore commands are not wired into \
         the CRI)"
    ))
}

/// In-place resize of pod-level resources.
pub fn update_pod_sandbox_resources() -> Status {
    Status::unimplemented(
        "berthd does not implement UpdatePodSandboxResources: berthd does not apply pod-level \
         resources (LinuxPodSandboxConfig.resources and overhead) yet; the pod's cgroup keeps \
         what kubelet wrote to it, and kubelet treats this call as best effort",
    )
}
