//! A pod's durable record, and its life as one state machine.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A pod's life: Creating until its pause runs and its network is up, Ready,
/// NotReady once stopped or its pause ended, Removing while RemovePodSandbox runs.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum PodState {
    Creating,
    Ready,
    NotReady,
    Removing,
}

impl PodState {
    /// The moves a pod can make: Creating → Ready → NotReady, and Removing from
    /// any state. A NotReady pod is never Ready again: kubelet makes a new one.
    pub fn may_become(self, next: PodState) -> bool {
        use PodState::*;
        matches!(
            (self, next),
            (Creating, Ready) | (Ready, NotReady) | (_, Removing)
        )
    }
}

impl PodRecord {
    /// Moves to `next` if the state machine allows it; false (and nothing
    /// changed) if not.
    pub fn become_(&mut self, next: PodState) -> bool {
        let ok = self.state.may_become(next);
        if ok {
            self.state = next;
        } else {
            tracing::error!(pod = %self.id, "refused a move from {:?} to {next:?}", self.state);
        }
        ok
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub state: PodState,
    /// `PodSandboxConfig`, protobuf-encoded.
    #[serde(with = "crate::store::b64")]
    pub config: Vec<u8>,
    pub runtime_handler: String,
    pub created_at: i64,
    /// The pinned network namespace, absent with host networking.
    pub netns: Option<PathBuf>,
    /// IPs from the CNI result, first the primary.
    pub ips: Vec<String>,
    /// The CNI result of ADD, handed back to DEL.
    pub cni_result: Option<serde_json::Value>,
    /// The pause process's pid (it holds the IPC, UTS and PID namespaces).
    pub pause_pid: i32,
    pub cgroup_parent: String,
}

#[cfg(test)]
mod tests {
    use super::PodState::*;

    #[test]
    fn only_the_lifes_moves_are_allowed() {
        assert!(Creating.may_become(Ready) && Ready.may_become(NotReady));
        assert!(NotReady.may_become(Removing) && Creating.may_become(Removing));
        assert!(!NotReady.may_become(Ready) && !Removing.may_become(Ready));
    }
}
