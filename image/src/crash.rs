//! Crash points for the fault tests: in a debug build, `BERTH_CRASH_AT=<point>`
//! makes the process abort at that point, as a power cut or a `kill -9` there
//! would. Release builds compile every point to nothing, so no setting of the
//! environment can make a production berthd abort.
//!
//! Every point is listed in [`POINTS`] with the CRI call it sits in; the crash
//! test (tests/tests/faults.rs) asks berthd for this list (`berthd crash-points`)
//! and walks all of it, so a new point is tested as soon as it is listed.

/// `(point, CRI call)`: each point sits between two steps of the call, after a
/// durable write or an external step (mount, CNI, shim, runtime) and before the
/// next one.
pub const POINTS: &[(&str, &str)] = &[
    ("run-pod:begin", "RunPodSandbox"),
    ("run-pod:record", "RunPodSandbox"),
    ("run-pod:shm", "RunPodSandbox"),
    ("run-pod:netns", "RunPodSandbox"),
    ("run-pod:cni-add", "RunPodSandbox"),
    ("run-pod:cni-saved", "RunPodSandbox"),
    ("run-pod:shim", "RunPodSandbox"),
    ("run-pod:pid-saved", "RunPodSandbox"),
    ("run-pod:started", "RunPodSandbox"),
    ("run-pod:ready", "RunPodSandbox"),
    ("create:begin", "CreateContainer"),
    ("create:record", "CreateContainer"),
    ("create:mount", "CreateContainer"),
    ("create:bundle", "CreateContainer"),
    ("create:shim", "CreateContainer"),
    ("create:created", "CreateContainer"),
    ("start:begin", "StartContainer"),
    ("start:started", "StartContainer"),
    ("start:running", "StartContainer"),
    ("stop:signal", "StopContainer"),
    ("stop:kill", "StopContainer"),
    ("stop:exited", "StopContainer"),
    ("remove:begin", "RemoveContainer"),
    ("remove:record", "RemoveContainer"),
    ("remove:deleted", "RemoveContainer"),
    ("remove:unmounted", "RemoveContainer"),
    ("remove:gone", "RemoveContainer"),
    ("stop-pod:containers", "StopPodSandbox"),
    ("stop-pod:pause", "StopPodSandbox"),
    ("stop-pod:cni-del", "StopPodSandbox"),
    ("stop-pod:netns", "StopPodSandbox"),
    ("stop-pod:saved", "StopPodSandbox"),
    ("remove-pod:record", "RemovePodSandbox"),
    ("remove-pod:stopped", "RemovePodSandbox"),
    ("remove-pod:deleted", "RemovePodSandbox"),
    ("remove-pod:gone", "RemovePodSandbox"),
    ("pull:manifest", "PullImage"),
    ("pull:blobs", "PullImage"),
    ("pull:snapshots", "PullImage"),
    ("pull:record", "PullImage"),
];

/// Aborts here when this is the point `BERTH_CRASH_AT` names (debug builds only).
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    {
        debug_assert!(
            POINTS.iter().any(|(p, _)| *p == name),
            "crash point {name} is not listed in POINTS"
        );
        if std::env::var_os("BERTH_CRASH_AT").is_some_and(|v| v == name) {
            eprintln!("berth: crash point {name}: aborting");
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Whether this build has crash points at all.
pub const ENABLED: bool = cfg!(debug_assertions);
