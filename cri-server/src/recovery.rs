//! Start-up: berthd's state rebuilt from the records on disk. Live shims are
//! re-adopted, exits that happened while berthd was down are recorded, calls it
//! died inside are finished or undone, and what belongs to no record (runtime
//! state, shims, network namespaces) is removed.

use crate::container::{self, ContainerRecord, ContainerState};
use crate::daemon::{Container, Daemon, Object, Pod, lock};
use crate::pod::{self, PodRecord, PodState};
use crate::{mounts, shim, store};
use berth_proto::v1 as cri;
use std::sync::Arc;

/// Rebuilds the state from disk: re-adopts live shims, records exits that
/// happened while berthd was down, and finishes or undoes calls it died in.
pub async fn recover(d: &Arc<Daemon>) {
    let (pods, pod_strays): (Vec<PodRecord>, _) =
        store::load_all(&d.paths.root, "pods", "pod.json");
    let (containers, ctr_strays): (Vec<ContainerRecord>, _) =
        store::load_all(&d.paths.root, "containers", "container.json");
    for dir in pod_strays.iter().chain(ctr_strays.iter()) {
        tracing::warn!(dir = %dir.display(), "removing a directory with no record");
        mounts::unmount_under(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
    for p in pods {
        let cfg: cri::PodSandboxConfig = store::decode(&p.config);
        let obj = Object::new(p.clone());
        lock(&d.names).insert(pod::name_key(&cfg), p.id.clone());
        lock(&d.pods).insert(p.id.clone(), obj.clone());
        if p.state == PodState::Ready {
            if shim::shim_pid(&d.paths.shim_dir(&p.id)).is_some() {
                pod::watch_pod(d, obj);
            } else {
                obj.update(|r| r.become_(PodState::NotReady));
                let _ = d.save_pod(&obj.get());
                let _ = obj.exited.send_replace(true);
            }
        } else {
            let _ = obj.exited.send_replace(true);
        }
    }
    for c in containers {
        let cfg: cri::ContainerConfig = store::decode(&c.config);
        let obj = Object::new(c.clone());
        let pod_cfg = d
            .pod(&c.pod_id)
            .map(|p| store::decode::<cri::PodSandboxConfig>(&p.get().config))
            .unwrap_or_default();
        lock(&d.names).insert(container::name_key(&cfg, &pod_cfg), c.id.clone());
        lock(&d.containers).insert(c.id.clone(), obj.clone());
        match c.state {
            ContainerState::Created | ContainerState::Running => {
                if shim::shim_pid(&d.paths.shim_dir(&c.id)).is_some() {
                    tracing::info!(container = %c.id, "re-adopted its shim");
                    // A start that berthd died in after the runtime started
                    // the container: the runtime knows it runs.
                    if c.state == ContainerState::Created
                        && d.runtime_status(&c.id).await.as_deref() == Some("running")
                    {
                        let rec = obj.update(|r| {
                            r.become_(ContainerState::Running);
                            r.started_at = store::now_ns();
                            r.clone()
                        });
                        let _ = d.save_container(&rec);
                    }
                    container::watch(d, obj);
                } else {
                    let exit = shim::read_exit(&d.paths.shim_dir(&c.id));
                    let ended = exit.is_some() || d.end_unmonitored(&c.id).await;
                    let rec = obj.update(|r| {
                        container::apply_exit(r, exit.as_ref(), ended);
                        r.clone()
                    });
                    let _ = d.save_container(&rec);
                    let _ = obj.exited.send_replace(true);
                }
            }
            _ => {
                let _ = obj.exited.send_replace(true);
            }
        }
        // Image volumes whose mounts are gone (a reboot) are mounted again; a
        // create or remove berthd died in is undone below, mounts and pins too.
        if !matches!(c.state, ContainerState::Creating | ContainerState::Removing) {
            container::image_volume::reestablish(d, &c.image_volumes, &c.id).await;
        }
    }
    // Calls berthd died inside: a half-made object is undone, a half-removed
    // one removed; kubelet retries either.
    let unfinished: Vec<Container> = lock(&d.containers)
        .values()
        .filter(|c| {
            matches!(
                c.get().state,
                ContainerState::Creating | ContainerState::Removing
            )
        })
        .cloned()
        .collect();
    for c in unfinished {
        let id = c.get().id;
        tracing::warn!(container = %id, "finishing an interrupted create or remove");
        if let Err(e) = container::remove(d, &id).await {
            tracing::error!(container = %id, "{}", e.message());
        }
    }
    let unfinished: Vec<Pod> = lock(&d.pods)
        .values()
        .filter(|p| matches!(p.get().state, PodState::Creating | PodState::Removing))
        .cloned()
        .collect();
    for p in unfinished {
        let id = p.get().id;
        tracing::warn!(pod = %id, "finishing an interrupted run or remove");
        if let Err(e) = pod::remove(d, &id).await {
            tracing::error!(pod = %id, "{}", e.message());
        }
    }
    clean_orphans(d).await;
    // Re-adopted pods' networks are checked (CNI CHECK) in the background: a
    // plugin's state may have changed while berthd was down; start-up does not wait.
    let d = d.clone();
    tokio::spawn(async move { pod::check_networks(&d).await });
}

/// Runtime containers, shims and network namespaces that belong to no record.
async fn clean_orphans(d: &Daemon) {
    let known = |id: &str| lock(&d.pods).contains_key(id) || lock(&d.containers).contains_key(id);
    for e in std::fs::read_dir(&d.bins.runtime_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = e.file_name().to_string_lossy().to_string();
        if !known(&id) {
            tracing::warn!(id = %id, "deleting an orphaned runtime container");
            d.delete_in_runtime(&id, "").await;
        }
    }
    for e in std::fs::read_dir(d.paths.state.join("shims"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = e.file_name().to_string_lossy().to_string();
        if !known(&id) {
            if let Some(pid) = shim::shim_pid(&e.path()) {
                // SAFETY: killing a shim of ours that nothing refers to.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    // Pins of image volumes whose container is gone (berthd died between
    // removing its directory and dropping the pins).
    for holder in d.images.pin_holders() {
        if !lock(&d.containers).contains_key(&holder) {
            tracing::warn!(container = %holder, "dropping the image pins of a removed container");
            if let Err(e) = d.images.unpin(&holder) {
                tracing::error!(container = %holder, "dropping image pins: {e}");
            }
        }
    }
    for e in std::fs::read_dir(d.paths.netns_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = e.file_name().to_string_lossy().to_string();
        if !known(&id) {
            tracing::warn!(netns = %e.path().display(), "removing an orphaned network namespace");
            let _ = berth_network::netns::remove(&e.path());
        }
    }
}
