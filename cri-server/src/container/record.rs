//! A container's durable record, and its life as one state machine: the states
//! it can be in and the moves between them.

use crate::shim;
use crate::store;
use serde::{Deserialize, Serialize};

/// A container's life, the only states it can be in. `Creating` and `Removing`
/// mark a call in progress: found at start-up they mean berthd died inside it, and
/// recovery finishes (or undoes) the call.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ContainerState {
    Creating,
    Created,
    Running,
    Exited,
    /// The shim vanished without recording an exit.
    Unknown,
    Removing,
}

impl ContainerState {
    /// The moves a container can make: Creating → Created → Running → Exited,
    /// Unknown when its shim vanished, and Removing from any state (a remove
    /// retried after a crash finds it Removing already).
    pub fn may_become(self, next: ContainerState) -> bool {
        use ContainerState::*;
        matches!(
            (self, next),
            (Creating, Created)
                | (Created, Running)
                | (Created | Running, Exited | Unknown)
                | (Unknown, Exited)
                | (_, Removing)
        )
    }
}

impl ContainerRecord {
    /// Moves to `next` if the state machine allows it; false (and nothing
    /// changed) if not.
    pub fn become_(&mut self, next: ContainerState) -> bool {
        let ok = self.state.may_become(next);
        if ok {
            self.state = next;
        } else {
            tracing::error!(container = %self.id, "refused a move from {:?} to {next:?}", self.state);
        }
        ok
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub state: ContainerState,
    /// `ContainerConfig`, protobuf-encoded.
    #[serde(with = "crate::store::b64")]
    pub config: Vec<u8>,
    /// The image's ID (its config digest) and the digest reference it came from.
    pub image_id: String,
    pub image_ref: String,
    pub log_path: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub reason: String,
    pub message: String,
    pub pid: i32,
    pub stop_signal: i32,
    pub cgroups_path: String,
    /// The process's user as the bundle has it: uid, gid, supplemental groups.
    pub user: (u32, u32, Vec<u32>),
    /// Host paths berthd bound onto themselves as shared mounts for this
    /// container's propagating volumes; unmounted when it is removed.
    #[serde(default)]
    pub shared_binds: Vec<String>,
    /// Image volumes (CRI mounts naming an image), each recorded before it is
    /// mounted; unmounted and unpinned when the container is removed.
    #[serde(default)]
    pub image_volumes: Vec<ImageVolume>,
}

/// One image volume: the mount kubelet asked for, the image it resolved to, and
/// where berthd mounted that image's layers read-only.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageVolume {
    /// The mount's index in the CRI config's `mounts`.
    pub index: usize,
    pub container_path: String,
    /// The image as kubelet named it, and its ID.
    pub image: String,
    pub image_id: String,
    /// The image's snapshots, bottom first: enough to mount it again.
    pub chain_ids: Vec<String>,
    pub sub_path: String,
    /// The read-only mount of the image's layers, under the container's directory.
    pub mount_point: String,
    /// What the container gets bound: `mount_point`, or the sub-path resolved
    /// inside it; empty until it is mounted and resolved.
    pub source: String,
}

/// A container's record after its shim ended; `ended`: it no longer runs (with
/// no exit recorded, berthd killed it).
pub fn apply_exit(r: &mut ContainerRecord, exit: Option<&shim::Exit>, ended: bool) {
    match exit {
        Some(e) => {
            r.become_(ContainerState::Exited);
            r.exit_code = e.exit_code;
            r.oom_killed = e.oom_killed;
            r.finished_at = if e.finished_at_ns > 0 {
                e.finished_at_ns
            } else {
                store::now_ns()
            };
            r.reason = if e.oom_killed {
                "OOMKilled"
            } else if e.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .into();
        }
        None if ended => {
            r.become_(ContainerState::Exited);
            r.finished_at = store::now_ns();
            r.exit_code = 137;
            r.reason = "ShimGone".into();
            r.message = "the container's shim (its monitor) ended without recording an exit, so berthd killed the unmonitored container: its real exit status and any output after the shim's end are lost".into();
        }
        None => {
            r.become_(ContainerState::Unknown);
            r.finished_at = store::now_ns();
            r.exit_code = 255;
            r.reason = "ShimGone".into();
            r.message = "the container's shim ended without recording an exit and the container could not be killed: its state is unknown; StopContainer or RemoveContainer retries".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ContainerState::*;

    #[test]
    fn only_the_lifes_moves_are_allowed() {
        assert!(Creating.may_become(Created) && Created.may_become(Running));
        assert!(Running.may_become(Exited) && Running.may_become(Unknown));
        assert!(Exited.may_become(Removing) && Removing.may_become(Removing));
        assert!(
            !Exited.may_become(Running),
            "an exited container is not restarted"
        );
        assert!(!Creating.may_become(Running) && !Running.may_become(Created));
        assert!(!Removing.may_become(Exited));
    }
}
