//! CreateContainer: the record (state Creating) is durable before the rootfs is
//! mounted or a shim started, so recovery can undo a create that berthd died in;
//! then the bundle from the image and the CRI request, and the shim.

use super::record::{ContainerRecord, ContainerState};
use super::status::name_key;
use crate::daemon::{Container, Daemon, Object, lock};
use crate::pod::{PodContext, PodRecord, PodState, pod_userns};
use crate::{mounts, shim, store};
use berth_image::crash;
use berth_proto::v1 as cri;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::Status;

pub async fn create(
    d: &Arc<Daemon>,
    pod_id: &str,
    config: cri::ContainerConfig,
    pod_config: Option<cri::PodSandboxConfig>,
) -> Result<String, Status> {
    crate::validate::container_config(&config).map_err(Status::invalid_argument)?;
    let pod = d.pod(pod_id)?;
    let prec = pod.get();
    if prec.state != PodState::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is not ready: run a new pod",
            prec.id
        )));
    }
    let meta = config.metadata.clone().unwrap_or_default();
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Status::invalid_argument("config.image.image is empty: name the image"))?;
    let stored_pod_config: cri::PodSandboxConfig = store::decode(&prec.config);
    let pod_config = pod_config
        .filter(|p| p.metadata.is_some())
        .unwrap_or(stored_pod_config.clone());
    let images = d.images.clone();
    let name = image_name.clone();
    let (image, image_config) = tokio::task::spawn_blocking(move || {
        let rec = images.get(&name)?;
        let cfg = images.config_json(&rec)?;
        Ok::<_, berth_image::ImageError>((rec, cfg))
    })
    .await
    .map_err(crate::status::join)?
    .map_err(|e| match e {
        berth_image::ImageError::NotFound(_) => Status::not_found(format!(
            "image {image_name:?} is not present: pull it first (PullImage)"
        )),
        e => crate::status::image(e),
    })?;

    let id = store::new_id();
    let key = name_key(&config, &stored_pod_config);
    d.reserve_name(&key, &id, "container")?;
    let log_path = match (
        stored_pod_config.log_directory.as_str(),
        config.log_path.as_str(),
    ) {
        (_, "") => String::new(),
        ("", p) => p.to_string(),
        (dir, p) => PathBuf::from(dir).join(p).to_string_lossy().to_string(),
    };
    let rec = ContainerRecord {
        id: id.clone(),
        pod_id: prec.id.clone(),
        state: ContainerState::Creating,
        config: store::encode(&config),
        image_id: image.id.clone(),
        image_ref: image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone()),
        log_path,
        created_at: store::now_ns(),
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        oom_killed: false,
        reason: String::new(),
        message: String::new(),
        pid: 0,
        stop_signal: 15,
        cgroups_path: String::new(),
        user: (0, 0, Vec::new()),
        shared_binds: Vec::new(),
        image_volumes: Vec::new(),
    };
    crash::point("create:begin");
    if let Err(e) = d.save_container(&rec) {
        d.release_name(&key, &id);
        return Err(e);
    }
    crash::point("create:record");
    let obj = Object::new(rec);
    lock(&d.containers).insert(id.clone(), obj.clone());
    let guard = obj.op.lock().await;
    match build(d, &obj, &config, &pod_config, &prec, image, &image_config).await {
        Ok(()) => {
            let rec = obj.update(|r| {
                r.become_(ContainerState::Created);
                r.clone()
            });
            d.save_container(&rec)?;
            crash::point("create:created");
            crate::container::watch(d, obj.clone());
            crate::container::event(d, &rec, cri::ContainerEventType::ContainerCreatedEvent);
            tracing::info!(container = %id, name = %meta.name, pod = %prec.id, "container created");
            Ok(id)
        }
        Err(e) => {
            drop(guard);
            if let Err(undo) = super::lifecycle::remove(d, &id).await {
                tracing::error!(container = %id, "undoing a failed CreateContainer: {}", undo.message());
            }
            Err(e)
        }
    }
}

async fn build(
    d: &Arc<Daemon>,
    obj: &Container,
    config: &cri::ContainerConfig,
    pod_config: &cri::PodSandboxConfig,
    pod: &PodRecord,
    image: berth_image::ImageRecord,
    image_config: &Value,
) -> Result<(), Status> {
    let id = obj.get().id;
    let dir = d.paths.container_dir(&id);
    let rootfs = dir.join("rootfs");
    let images = d.images.clone();
    let (upper, work, target) = (dir.join("upper"), dir.join("work"), rootfs.clone());
    tokio::task::spawn_blocking(move || images.mount_rootfs(&image, &upper, &work, &target))
        .await
        .map_err(crate::status::join)?
        .map_err(crate::status::image)?;
    crash::point("create:mount");
    super::image_volume::mount_all(d, obj, config).await?;
    let pod_dir = d.paths.pod_dir(&pod.id);
    let ctx = PodContext {
        id: &pod.id,
        config: pod_config,
        dir: &pod_dir,
        netns: pod.netns.as_deref(),
        pause_pid: pod.pause_pid,
        cgroup_parent: &pod.cgroup_parent,
    };
    // A TARGET pid namespace is the target container's.
    let target_pid = |t: &str| -> Result<i32, String> {
        let target = d.container(t).map_err(|s| s.message().to_string())?.get();
        if target.state != ContainerState::Running {
            return Err(format!(
                "target container {} of the pid namespace is not running",
                target.id
            ));
        }
        Ok(target.pid)
    };
    let image_defaults = berth_bundle::ImageDefaults::of_image_config(image_config);
    let image_volumes = obj.get().image_volumes;
    let mut built = super::spec::container(
        &id,
        config,
        &image_defaults,
        &ctx,
        &rootfs,
        &image_volumes,
        &target_pid,
    )
    .map_err(|e| {
        if e.starts_with("target container") {
            Status::failed_precondition(e)
        } else {
            Status::invalid_argument(e)
        }
    })?;
    // Volumes that propagate need a shared mount under them on the host; on a host
    // whose mounts are private (no systemd), the source is bound onto itself and
    // made shared, for as long as the container exists.
    for m in &config.mounts {
        let p = cri::MountPropagation::try_from(m.propagation).unwrap_or_default();
        if p != cri::MountPropagation::PropagationPrivate && crate::validate::image_of(m).is_none()
        {
            let bound = mounts::ensure_shared(std::path::Path::new(&m.host_path)).map_err(|e| {
                Status::internal(format!("making {} a shared mount: {e}", m.host_path))
            })?;
            if let Some(b) = bound {
                obj.update(|r| r.shared_binds.push(b));
                d.save_container(&obj.get())?;
            }
        }
    }
    if pod_userns(pod_config).is_some() {
        // In the pod's user namespace, the container's root may not create files in
        // the image's root-owned directories: bind-mount targets are made here.
        for m in built.spec.mounts().iter().flatten() {
            if m.typ().as_deref() == Some("bind")
                && let Some(src) = m.source()
            {
                let dest = m.destination().to_string_lossy();
                berth_bundle::users::create_in_root(&rootfs, &dest, src.is_dir()).map_err(|e| {
                    Status::internal(format!("creating mount target {dest} in the rootfs: {e}"))
                })?;
            }
        }
    }
    berth_bundle::write_config(&dir, &built.spec)
        .map_err(|e| Status::internal(format!("writing the bundle: {e}")))?;
    crash::point("create:bundle");
    let log_path = obj.get().log_path;
    if !log_path.is_empty()
        && let Some(parent) = std::path::Path::new(&log_path).parent()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| Status::internal(format!("creating {}: {e}", parent.display())))?;
    }
    obj.update(|r| {
        r.stop_signal = built.stop_signal;
        r.cgroups_path = built
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        r.user = (
            built.user.uid,
            built.user.gid,
            std::mem::take(&mut built.user.additional_gids),
        );
    });
    let pid = shim::start(
        &d.bins,
        &shim::Launch {
            id: id.clone(),
            shim_dir: d.paths.shim_dir(&id),
            bundle: Some(dir),
            log_path: (!log_path.is_empty()).then(|| log_path.into()),
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            terminal: config.tty,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| Status::internal(format!("creating container {id}: {e}")))?;
    crash::point("create:shim");
    obj.update(|r| r.pid = pid);
    Ok(())
}
