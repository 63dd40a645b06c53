//! RunPodSandbox, StopPodSandbox, RemovePodSandbox: the pod's files
//! (hostname, hosts, resolv.conf, a /dev/shm), its pinned network namespace with
//! CNI, and the pause process that holds its IPC, UTS and PID namespaces, started
//! through a shim like any container.
//!
//! Order in RunPodSandbox: the record (state Creating) is durable before any side
//! effect, so a crash anywhere leaves something recovery can undo.

use super::files::write_pod_files;
use super::network::attachment;
use super::record::{PodRecord, PodState};
use super::spec::{self, PodContext, host_network, ns_options};
use super::status::name_key;
use crate::daemon::{Daemon, Object, Pod, lock};
use crate::{container, mounts, shim, store};
use berth_image::crash;
use berth_proto::v1::{self as cri, NamespaceMode};
use std::sync::Arc;
use tonic::Status;

/// The built-in pause, embedded at build time.
static PAUSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// Writes the pause binary into its rootfs (once per berthd start).
pub fn install_pause(d: &Daemon) -> std::io::Result<()> {
    let root = d.paths.pause_rootfs();
    for dir in ["dev", "proc"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let bin = root.join("pause");
    if std::fs::read(&bin).ok().as_deref() != Some(PAUSE) {
        store::write_atomic(&bin, PAUSE)?;
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    Ok(())
}

pub async fn run(
    d: &Arc<Daemon>,
    config: cri::PodSandboxConfig,
    handler: String,
) -> Result<String, Status> {
    crate::validate::pod_config(&config).map_err(Status::invalid_argument)?;
    let meta = config.metadata.clone().unwrap_or_default();
    spec::check_userns(&config).map_err(Status::invalid_argument)?;
    if !handler.is_empty() && handler != "berth" && handler != "runc" {
        return Err(Status::invalid_argument(format!(
            "runtime handler {handler:?} is not configured (berth has one: leave it empty)"
        )));
    }
    let net = if host_network(&config) {
        None
    } else {
        Some(d.cni.network().map_err(|e| {
            Status::failed_precondition(format!("pod networking is not ready: {e}"))
        })?)
    };
    let id = store::new_id();
    let key = name_key(&config);
    d.reserve_name(&key, &id, "pod sandbox")?;
    let cgroup_parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/berth".into());
    let rec = PodRecord {
        id: id.clone(),
        state: PodState::Creating,
        config: store::encode(&config),
        runtime_handler: handler,
        created_at: store::now_ns(),
        netns: net.as_ref().map(|_| d.paths.netns_dir().join(&id)),
        ips: Vec::new(),
        cni_result: None,
        pause_pid: 0,
        cgroup_parent,
    };
    crash::point("run-pod:begin");
    if let Err(e) = d.save_pod(&rec) {
        d.release_name(&key, &id);
        return Err(e);
    }
    crash::point("run-pod:record");
    let obj = Object::new(rec);
    lock(&d.pods).insert(id.clone(), obj.clone());
    let _guard = obj.op.lock().await;
    match setup(d, &obj, &config, net).await {
        Ok(()) => {
            let rec = obj.update(|r| {
                r.become_(PodState::Ready);
                r.clone()
            });
            d.save_pod(&rec)?;
            crash::point("run-pod:ready");
            crate::pod::watch_pod(d, obj.clone());
            tracing::info!(pod = %id, name = %meta.name, namespace = %meta.namespace, "pod sandbox running");
            Ok(id)
        }
        Err(e) => {
            drop(_guard);
            if let Err(undo) = remove(d, &id).await {
                tracing::error!(pod = %id, "undoing a failed RunPodSandbox: {}", undo.message());
            }
            Err(e)
        }
    }
}

async fn setup(
    d: &Arc<Daemon>,
    obj: &Pod,
    config: &cri::PodSandboxConfig,
    net: Option<berth_network::cni::NetworkList>,
) -> Result<(), Status> {
    let rec = obj.get();
    let dir = d.paths.pod_dir(&rec.id);
    let ns = ns_options(config);
    write_pod_files(&dir, config)
        .map_err(|e| Status::internal(format!("writing pod files in {}: {e}", dir.display())))?;
    if ns.ipc != NamespaceMode::Node as i32 {
        mounts::mount_shm(&dir.join("shm"))
            .map_err(|e| Status::internal(format!("mounting the pod's /dev/shm: {e}")))?;
    }
    crash::point("run-pod:shm");
    if let (Some(netns), Some(net)) = (&rec.netns, net) {
        berth_network::netns::create(netns).map_err(|e| {
            Status::internal(format!(
                "creating the network namespace {}: {e}",
                netns.display()
            ))
        })?;
        crash::point("run-pod:netns");
        let a = attachment(d, &rec, config);
        let result = d.cni.add(&net, &a).await.map_err(Status::unavailable)?;
        crash::point("run-pod:cni-add");
        let ips = berth_network::cni::result_ips(&result);
        let rec = obj.update(|r| {
            r.cni_result = Some(result);
            r.ips = ips;
            r.clone()
        });
        // The result is durable before anything else: DEL needs it.
        d.save_pod(&rec)?;
        crash::point("run-pod:cni-saved");
    }
    let rec = obj.get();
    let ctx = PodContext {
        id: &rec.id,
        config,
        dir: &dir,
        netns: rec.netns.as_deref(),
        pause_pid: 0,
        cgroup_parent: &rec.cgroup_parent,
    };
    let pause_spec =
        spec::pause(&ctx, &d.paths.pause_rootfs()).map_err(Status::invalid_argument)?;
    let bundle = dir.join("bundle");
    store::write_atomic(
        &bundle.join("config.json"),
        &serde_json::to_vec(&pause_spec).unwrap_or_default(),
    )
    .map_err(|e| Status::internal(format!("writing the pause bundle: {e}")))?;
    let pid = shim::start(
        &d.bins,
        &shim::Launch {
            id: rec.id.clone(),
            shim_dir: d.paths.shim_dir(&rec.id),
            bundle: Some(bundle),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| Status::internal(format!("starting the pod's pause: {e}")))?;
    crash::point("run-pod:shim");
    obj.update(|r| r.pause_pid = pid);
    d.save_pod(&obj.get())?;
    crash::point("run-pod:pid-saved");
    d.runtime(&["start", &rec.id])
        .await
        .map_err(|e| Status::internal(format!("starting the pod's pause: {e}")))?;
    crash::point("run-pod:started");
    Ok(())
}

/// Stops every container, the pause, and the network. Idempotent.
pub async fn stop(d: &Arc<Daemon>, id: &str) -> Result<(), Status> {
    let obj = d.pod(id)?;
    let id = obj.get().id;
    for c in d.pod_containers(&id) {
        let cid = c.get().id;
        container::stop(d, &cid, 0).await?;
    }
    crash::point("stop-pod:containers");
    let _guard = obj.op.lock().await;
    stop_locked(d, &obj).await?;
    crash::point("stop-pod:saved");
    Ok(())
}

async fn stop_locked(d: &Arc<Daemon>, obj: &Pod) -> Result<(), Status> {
    let rec = obj.get();
    let shim_dir = d.paths.shim_dir(&rec.id);
    if shim::shim_pid(&shim_dir).is_some() {
        let _ = shim::control(&shim_dir, "signal 9").await;
        // The shim itself, watched or not (a pod still being made is not).
        if tokio::time::timeout(std::time::Duration::from_secs(10), shim::wait(&shim_dir))
            .await
            .is_err()
        {
            tracing::warn!(pod = %rec.id, "the pause's shim outlived SIGKILL by 10 s");
        }
        crash::point("stop-pod:pause");
    }
    teardown_network(d, obj).await?;
    let dir = d.paths.pod_dir(&rec.id);
    mounts::unmount_under(&dir.join("shm"));
    let rec = obj.update(|r| {
        if r.state == PodState::Ready {
            r.become_(PodState::NotReady);
        }
        r.clone()
    });
    if rec.state != PodState::Creating && rec.state != PodState::Removing {
        d.save_pod(&rec)?;
    }
    Ok(())
}

async fn teardown_network(d: &Arc<Daemon>, obj: &Pod) -> Result<(), Status> {
    let rec = obj.get();
    let Some(netns) = &rec.netns else {
        return Ok(());
    };
    if netns.exists() {
        let config: cri::PodSandboxConfig = store::decode(&rec.config);
        if berth_network::netns::is_pinned(netns) {
            match d.cni.network() {
                Ok(net) => {
                    let a = attachment(d, &rec, &config);
                    d.cni
                        .del(&net, &a, rec.cni_result.as_ref())
                        .await
                        .map_err(|e| {
                            Status::unavailable(format!("tearing down the pod network: {e}"))
                        })?;
                    crash::point("stop-pod:cni-del");
                }
                Err(e) => {
                    tracing::warn!(pod = %rec.id, "no CNI config to tear down the network with: {e}")
                }
            }
        }
        berth_network::netns::remove(netns)
            .map_err(|e| Status::internal(format!("removing {}: {e}", netns.display())))?;
        crash::point("stop-pod:netns");
    }
    Ok(())
}

/// Removes the pod and everything in it. Unknown IDs are not an error.
pub async fn remove(d: &Arc<Daemon>, id: &str) -> Result<(), Status> {
    let obj = match d.pod(id) {
        Ok(o) => o,
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
        Err(s) => return Err(s),
    };
    let id = obj.get().id;
    for c in d.pod_containers(&id) {
        let cid = c.get().id;
        container::remove(d, &cid).await?;
    }
    let _guard = obj.op.lock().await;
    let rec = obj.update(|r| {
        r.become_(PodState::Removing);
        r.clone()
    });
    d.save_pod(&rec)?;
    crash::point("remove-pod:record");
    stop_locked(d, &obj).await?;
    crash::point("remove-pod:stopped");
    d.delete_in_runtime(&id, &format!("{}/{}", rec.cgroup_parent, rec.id))
        .await;
    crash::point("remove-pod:deleted");
    let dir = d.paths.pod_dir(&id);
    mounts::unmount_under(&dir);
    let _ = std::fs::remove_dir_all(d.paths.shim_dir(&id));
    std::fs::remove_dir_all(&dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| Status::internal(format!("removing {}: {e}", dir.display())))?;
    crash::point("remove-pod:gone");
    lock(&d.pods).remove(&id);
    let config: cri::PodSandboxConfig = store::decode(&rec.config);
    d.release_name(&name_key(&config), &id);
    tracing::info!(pod = %id, "pod sandbox removed");
    Ok(())
}

/// Watches a pod's pause; when it ends the pod is NotReady.
pub fn watch_pod(d: &Arc<Daemon>, p: Pod) {
    let d = d.clone();
    tokio::spawn(async move {
        let id = p.get().id;
        shim::wait(&d.paths.shim_dir(&id)).await;
        let rec = p.update(|r| {
            if r.state == PodState::Ready {
                r.become_(PodState::NotReady);
            }
            r.clone()
        });
        let _ = d.save_pod(&rec);
        let _ = p.exited.send_replace(true);
    });
}
