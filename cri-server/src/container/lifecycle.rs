//! StartContainer, StopContainer, RemoveContainer, UpdateContainerResources,
//! ReopenContainerLog: the Created → Running → Exited life, and removal.

use super::record::{ContainerState, apply_exit};
use super::status::name_key;
use crate::daemon::{Container, Daemon, lock};
use crate::{mounts, shim, store};
use berth_image::crash;
use berth_proto::v1 as cri;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

pub async fn start(d: &Arc<Daemon>, id: &str) -> Result<(), Status> {
    let obj = d.container(id)?;
    let _guard = obj.op.lock().await;
    let rec = obj.get();
    if rec.state != ContainerState::Created {
        return Err(Status::failed_precondition(format!(
            "container {} is {:?}, not Created: only a created container can start",
            rec.id, rec.state
        )));
    }
    crash::point("start:begin");
    d.runtime(&["start", &rec.id])
        .await
        .map_err(|e| Status::internal(format!("starting container {}: {e}", rec.id)))?;
    crash::point("start:started");
    let rec = obj.update(|r| {
        r.started_at = store::now_ns();
        if r.state == ContainerState::Created {
            r.become_(ContainerState::Running);
        }
        r.clone()
    });
    d.save_container(&rec)?;
    crash::point("start:running");
    crate::container::event(d, &rec, cri::ContainerEventType::ContainerStartedEvent);
    Ok(())
}

/// Sends the stop signal, waits `timeout` seconds for the exit, then SIGKILL.
/// Stopping a container that is not running is not an error.
pub async fn stop(d: &Arc<Daemon>, id: &str, timeout: i64) -> Result<(), Status> {
    let obj = d.container(id)?;
    let _guard = obj.op.lock().await;
    stop_locked(d, &obj, timeout).await
}

async fn stop_locked(d: &Arc<Daemon>, obj: &Container, timeout: i64) -> Result<(), Status> {
    let rec = obj.get();
    if rec.state == ContainerState::Unknown {
        // Its shim died and the container could not be killed then: again.
        if d.end_unmonitored(&rec.id).await {
            let rec = obj.update(|r| {
                apply_exit(r, None, true);
                r.clone()
            });
            d.save_container(&rec)?;
        }
        return Ok(());
    }
    if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
        return Ok(());
    }
    let shim_dir = d.paths.shim_dir(&rec.id);
    let mut exited = obj.exited.subscribe();
    let wait = |rx: &mut tokio::sync::watch::Receiver<bool>, secs: u64| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(secs), async move {
                let _ = rx.wait_for(|e| *e).await;
            })
            .await
            .is_ok()
        }
    };
    if timeout > 0 && rec.state == ContainerState::Running {
        if let Err(e) = shim::control(&shim_dir, &format!("signal {}", rec.stop_signal)).await {
            tracing::warn!(container = %rec.id, "stop signal: {e}");
        }
        crash::point("stop:signal");
        if wait(&mut exited, timeout as u64).await {
            return Ok(());
        }
    }
    if let Err(e) = shim::control(&shim_dir, "signal 9").await {
        // No shim to ask: the runtime kills by the recorded pid.
        tracing::warn!(container = %rec.id, "SIGKILL through the shim: {e}");
        let _ = d.runtime(&["kill", &rec.id, "KILL"]).await;
    }
    crash::point("stop:kill");
    if !wait(&mut exited, 30).await {
        return Err(Status::deadline_exceeded(format!(
            "container {} did not exit within 30 s of SIGKILL",
            rec.id
        )));
    }
    crash::point("stop:exited");
    Ok(())
}

/// Removes a container, stopping it first. Unknown IDs are not an error.
pub async fn remove(d: &Arc<Daemon>, id: &str) -> Result<(), Status> {
    let obj = match d.container(id) {
        Ok(o) => o,
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
        Err(s) => return Err(s),
    };
    let _guard = obj.op.lock().await;
    crash::point("remove:begin");
    let rec = obj.get();
    if rec.state != ContainerState::Creating {
        stop_locked(d, &obj, 0).await?;
    } else if let Some(pid) = shim::shim_pid(&d.paths.shim_dir(&rec.id)) {
        // A create that died half-way: its shim, if any, goes too.
        let _ = shim::control(&d.paths.shim_dir(&rec.id), "signal 9").await;
        let _ = pid;
        shim::wait(&d.paths.shim_dir(&rec.id)).await;
    }
    let rec = obj.update(|r| {
        r.become_(ContainerState::Removing);
        r.clone()
    });
    d.save_container(&rec)?;
    crash::point("remove:record");
    d.delete_in_runtime(&rec.id, &rec.cgroups_path).await;
    crash::point("remove:deleted");
    let dir = d.paths.container_dir(&rec.id);
    berth_image::snapshot::unmount_rootfs(&dir.join("rootfs")).ok();
    for b in &rec.shared_binds {
        let others = lock(&d.containers)
            .values()
            .any(|c| c.get().id != rec.id && c.get().shared_binds.contains(b));
        if !others {
            mounts::unmount_one(std::path::Path::new(b));
        }
    }
    mounts::unmount_under(&dir);
    // The image volumes' pins go once nothing of theirs is mounted.
    super::image_volume::release(d, &rec.id, &rec.image_volumes).await?;
    crash::point("remove:unmounted");
    let _ = std::fs::remove_dir_all(d.paths.shim_dir(&rec.id));
    std::fs::remove_dir_all(&dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| Status::internal(format!("removing {}: {e}", dir.display())))?;
    crash::point("remove:gone");
    lock(&d.containers).remove(&rec.id);
    let config: cri::ContainerConfig = store::decode(&rec.config);
    let pod_config = d
        .pod(&rec.pod_id)
        .map(|p| store::decode::<cri::PodSandboxConfig>(&p.get().config))
        .unwrap_or_default();
    d.release_name(&name_key(&config, &pod_config), &rec.id);
    crate::container::event(d, &rec, cri::ContainerEventType::ContainerDeletedEvent);
    Ok(())
}

pub async fn update_resources(
    d: &Arc<Daemon>,
    id: &str,
    res: cri::LinuxContainerResources,
) -> Result<(), Status> {
    let c = d.container(id)?;
    let _guard = c.op.lock().await;
    let rec = c.get();
    if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
        return Err(Status::failed_precondition(format!(
            "container {} is not running",
            rec.id
        )));
    }
    // The same limits CreateContainer gives, but hugepages: `update` leaves them.
    let mut r = super::spec::resources(&res);
    r.set_hugepage_limits(None);
    let file = d.paths.container_dir(&rec.id).join("resources.json");
    store::write_atomic(&file, &serde_json::to_vec(&r).unwrap_or_default())
        .map_err(|e| Status::internal(format!("writing resources: {e}")))?;
    d.runtime(&["update", "--resources", &file.to_string_lossy(), &rec.id])
        .await
        .map_err(|e| Status::internal(format!("updating container {}: {e}", rec.id)))?;
    // Keep the new values for ContainerStatus.
    let mut config: cri::ContainerConfig = store::decode(&rec.config);
    config.linux.get_or_insert_default().resources = Some(res);
    let rec = c.update(|r| {
        r.config = store::encode(&config);
        r.clone()
    });
    d.save_container(&rec)
}

pub async fn reopen_log(d: &Arc<Daemon>, id: &str) -> Result<(), Status> {
    let c = super::exec::running(d, id)?;
    let id = c.get().id;
    shim::control(&d.paths.shim_dir(&id), "reopen")
        .await
        .map(|_| ())
        .map_err(|e| Status::internal(format!("reopening the log of {id}: {e}")))
}
