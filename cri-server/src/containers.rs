//! Containers: bundle from image and CRI config, a shim per container, the
//! Created → Running → Exited life, and removal. The record (state Creating) is
//! durable before the rootfs is mounted or a shim started, so recovery can undo a
//! create that berthd died in.

use crate::daemon::{Container, Daemon, Object, lock};
use crate::shim;
use crate::spec::{self, PodContext};
use crate::store::{self, ContainerRecord, ContainerState, PodState};
use berth_image::crash;
use berth_proto::v1 as cri;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

pub fn name_key(c: &cri::ContainerConfig, pod: &cri::PodSandboxConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    let p = pod.metadata.clone().unwrap_or_default();
    format!(
        "{}_{}_{}_{}_{}",
        m.name, p.name, p.namespace, p.uid, m.attempt
    )
}

fn internal(what: &str) -> impl Fn(String) -> Status + '_ {
    move |e| Status::internal(format!("{what}: {e}"))
}

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
                r.state = ContainerState::Created;
                r.clone()
            });
            d.save_container(&rec)?;
            crash::point("create:created");
            d.watch_container(obj.clone());
            d.event(&rec, cri::ContainerEventType::ContainerCreatedEvent);
            tracing::info!(container = %id, name = %meta.name, pod = %prec.id, "container created");
            Ok(id)
        }
        Err(e) => {
            drop(guard);
            if let Err(undo) = remove(d, &id).await {
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
    pod: &store::PodRecord,
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
    let pod_dir = d.paths.pod_dir(&pod.id);
    let ctx = PodContext {
        id: &pod.id,
        config: pod_config,
        dir: &pod_dir,
        netns: pod.netns.as_deref(),
        pause_pid: pod.pause_pid,
        cgroup_parent: &pod.cgroup_parent,
    };
    let mut built = spec::container(&id, config, image_config, &ctx, &rootfs)
        .map_err(Status::invalid_argument)?;
    // A TARGET pid namespace is the target container's.
    if let Some(nss) = built.spec["linux"]["namespaces"].as_array_mut() {
        for ns in nss {
            if let Some(t) = ns["path"].as_str().and_then(|p| p.strip_prefix("target:")) {
                let target = d.container(t)?.get();
                if target.state != ContainerState::Running {
                    return Err(Status::failed_precondition(format!(
                        "target container {} of the pid namespace is not running",
                        target.id
                    )));
                }
                ns["path"] = Value::String(format!("/proc/{}/ns/pid", target.pid));
            }
        }
    }
    // Volumes that propagate need a shared mount under them on the host; on a host
    // whose mounts are private (no systemd), the source is bound onto itself and
    // made shared, for as long as the container exists.
    for m in &config.mounts {
        let p = cri::MountPropagation::try_from(m.propagation).unwrap_or_default();
        if p != cri::MountPropagation::PropagationPrivate {
            let bound =
                crate::pods::ensure_shared(std::path::Path::new(&m.host_path)).map_err(|e| {
                    Status::internal(format!("making {} a shared mount: {e}", m.host_path))
                })?;
            if let Some(b) = bound {
                obj.update(|r| r.shared_binds.push(b));
                d.save_container(&obj.get())?;
            }
        }
    }
    if spec::pod_userns(pod_config).is_some() {
        // In the pod's user namespace, the container's root may not create files in
        // the image's root-owned directories: bind-mount targets are made here.
        for m in built.spec["mounts"].as_array().into_iter().flatten() {
            let (Some(dest), Some(src)) = (m["destination"].as_str(), m["source"].as_str()) else {
                continue;
            };
            if m["type"] == "bind" {
                let is_dir = std::path::Path::new(src).is_dir();
                crate::users::create_in_root(&rootfs, dest, is_dir).map_err(|e| {
                    Status::internal(format!("creating mount target {dest} in the rootfs: {e}"))
                })?;
            }
        }
    }
    store::write_atomic(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(&built.spec).unwrap_or_default(),
    )
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
        r.cgroups_path = built.spec["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_default()
            .to_string();
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
            r.state = ContainerState::Running;
        }
        r.clone()
    });
    d.save_container(&rec)?;
    crash::point("start:running");
    d.event(&rec, cri::ContainerEventType::ContainerStartedEvent);
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
                crate::daemon::apply_exit(r, None, true);
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
        r.state = ContainerState::Removing;
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
            crate::pods::unmount_one(std::path::Path::new(b));
        }
    }
    crate::pods::unmount_under(&dir);
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
    d.event(&rec, cri::ContainerEventType::ContainerDeletedEvent);
    Ok(())
}

pub fn status_of(rec: &ContainerRecord) -> cri::ContainerStatus {
    let config: cri::ContainerConfig = store::decode(&rec.config);
    let state = match rec.state {
        ContainerState::Creating | ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited | ContainerState::Removing => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    };
    cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: config.metadata.clone(),
        state: state as i32,
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        exit_code: rec.exit_code,
        image: config.image.clone(),
        image_ref: rec.image_ref.clone(),
        image_id: rec.image_id.clone(),
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        mounts: config.mounts.clone(),
        log_path: rec.log_path.clone(),
        resources: config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                ..Default::default()
            }),
        user: Some(cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: rec.user.0 as i64,
                gid: rec.user.1 as i64,
                supplemental_groups: rec.user.2.iter().map(|&g| g as i64).collect(),
            }),
        }),
        stop_signal: rec.stop_signal,
    }
}

pub fn to_cri(rec: &ContainerRecord) -> cri::Container {
    let s = status_of(rec);
    cri::Container {
        id: s.id,
        pod_sandbox_id: rec.pod_id.clone(),
        metadata: s.metadata,
        image: s.image,
        image_ref: s.image_ref,
        image_id: s.image_id,
        state: s.state,
        created_at: s.created_at,
        labels: s.labels,
        annotations: s.annotations,
    }
}

pub fn matches(rec: &ContainerRecord, f: &cri::ContainerFilter) -> bool {
    if matches!(
        rec.state,
        ContainerState::Creating | ContainerState::Removing
    ) {
        return false;
    }
    if !f.id.is_empty() && !rec.id.starts_with(&f.id) {
        return false;
    }
    if !f.pod_sandbox_id.is_empty() && !rec.pod_id.starts_with(&f.pod_sandbox_id) {
        return false;
    }
    let s = status_of(rec);
    if let Some(want) = &f.state
        && want.state != s.state
    {
        return false;
    }
    f.label_selector
        .iter()
        .all(|(k, v)| s.labels.get(k) == Some(v))
}

/// The container's process config (user, env, cwd, capabilities, seccomp...) with
/// another command: what exec runs.
pub fn exec_process(d: &Daemon, id: &str, cmd: &[String], tty: bool) -> Result<Value, Status> {
    let bundle = d.paths.container_dir(id).join("config.json");
    let spec: Value = std::fs::read(&bundle)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Status::internal(format!("container {id} has no readable bundle")))?;
    let mut p = spec["process"].clone();
    p["args"] = serde_json::json!(cmd);
    p["terminal"] = Value::Bool(tty);
    Ok(p)
}

pub fn running(d: &Daemon, id: &str) -> Result<Container, Status> {
    let c = d.container(id)?;
    let state = c.get().state;
    if state != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is {state:?}, not Running",
            c.get().id
        )));
    }
    Ok(c)
}

/// Runs a command in the container through a shim of its own and returns its
/// exit code and output. A timeout (seconds, 0 for none) kills it.
pub async fn exec_sync(
    d: &Arc<Daemon>,
    id: &str,
    cmd: Vec<String>,
    timeout: i64,
) -> Result<cri::ExecSyncResponse, Status> {
    if cmd.is_empty() {
        return Err(Status::invalid_argument(
            "cmd is empty: give the command to run",
        ));
    }
    let c = running(d, id)?;
    let id = c.get().id;
    let process = exec_process(d, &id, &cmd, false)?;
    let exec_dir = d.paths.state.join("execs").join(store::new_id());
    std::fs::create_dir_all(&exec_dir)
        .map_err(|e| Status::internal(format!("creating {}: {e}", exec_dir.display())))?;
    let cleanup = ExecDir(exec_dir.clone());
    let process_file = exec_dir.join("process.json");
    store::write_atomic(
        &process_file,
        &serde_json::to_vec(&process).unwrap_or_default(),
    )
    .map_err(|e| Status::internal(format!("writing {}: {e}", process_file.display())))?;
    shim::start(
        &d.bins,
        &shim::Launch {
            id: id.clone(),
            shim_dir: exec_dir.clone(),
            exec_process: Some(process_file),
            raw_output: true,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| Status::internal(format!("exec in container {id}: {e}")))?;
    let waited = if timeout > 0 {
        tokio::time::timeout(Duration::from_secs(timeout as u64), shim::wait(&exec_dir)).await
    } else {
        Ok(shim::wait(&exec_dir).await)
    };
    let exit = match waited {
        Ok(e) => e,
        Err(_) => {
            let _ = shim::control(&exec_dir, "signal 9").await;
            shim::wait(&exec_dir).await;
            return Err(Status::deadline_exceeded(format!(
                "command {cmd:?} timed out after {timeout} s and was killed"
            )));
        }
    };
    let exit =
        exit.ok_or_else(|| Status::internal("the exec's shim ended without recording an exit"))?;
    let read = |f: &str| std::fs::read(exec_dir.join(f)).unwrap_or_default();
    let resp = cri::ExecSyncResponse {
        stdout: read("stdout"),
        stderr: read("stderr"),
        exit_code: exit.exit_code,
    };
    drop(cleanup);
    Ok(resp)
}

struct ExecDir(PathBuf);

impl Drop for ExecDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    let mut r = serde_json::json!({});
    let mut cpu = serde_json::Map::new();
    for (k, v) in [
        ("shares", res.cpu_shares),
        ("quota", res.cpu_quota),
        ("period", res.cpu_period),
    ] {
        if v > 0 {
            cpu.insert(k.into(), v.into());
        }
    }
    if !res.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), res.cpuset_cpus.clone().into());
    }
    if !res.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), res.cpuset_mems.clone().into());
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if res.memory_limit_in_bytes > 0 {
        r["memory"] = serde_json::json!({"limit": res.memory_limit_in_bytes});
    }
    if !res.unified.is_empty() {
        r["unified"] = serde_json::json!(res.unified);
    }
    let file = d.paths.container_dir(&rec.id).join("resources.json");
    store::write_atomic(&file, &serde_json::to_vec(&r).unwrap_or_default())
        .map_err(|e| internal("writing resources")(e.to_string()))?;
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
    let c = running(d, id)?;
    let id = c.get().id;
    shim::control(&d.paths.shim_dir(&id), "reopen")
        .await
        .map(|_| ())
        .map_err(|e| Status::internal(format!("reopening the log of {id}: {e}")))
}
