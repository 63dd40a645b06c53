//! berthd's state in memory: every pod and container record, each behind its
//! own lock so calls on one object are serialised while different objects
//! proceed in parallel; the names in use; the event stream; and recovery, which
//! rebuilds all of it from disk at start-up.

use crate::cni::Cni;
use crate::config::Config;
use crate::shim::{self, Binaries};
use crate::store::{self, ContainerRecord, ContainerState, Paths, PodRecord, PodState};
use berth_image::ImageStore;
use berth_proto::v1 as cri;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::Status;

/// One pod or container: its record, a lock held for the length of a CRI call
/// that changes it, and a flag that turns true once its process has exited.
pub struct Object<T> {
    pub rec: Mutex<T>,
    pub op: tokio::sync::Mutex<()>,
    pub exited: tokio::sync::watch::Sender<bool>,
}

impl<T: Clone> Object<T> {
    pub fn new(rec: T) -> Arc<Object<T>> {
        Arc::new(Object {
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
            exited: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn get(&self) -> T {
        self.rec.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.rec.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub type Pod = Arc<Object<PodRecord>>;
pub type Container = Arc<Object<ContainerRecord>>;

pub struct Daemon {
    pub config: Config,
    pub paths: Paths,
    pub bins: Binaries,
    pub cni: Cni,
    pub images: Arc<ImageStore>,
    pub pods: Mutex<HashMap<String, Pod>>,
    pub containers: Mutex<HashMap<String, Container>>,
    /// Pod and container names in use, to their IDs.
    pub names: Mutex<HashMap<String, String>>,
    pub events: tokio::sync::broadcast::Sender<cri::ContainerEventResponse>,
    pub pod_cidr: Mutex<Option<String>>,
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Finds an object by its ID or a unique prefix of it, as crictl lets people type.
fn find<T>(map: &HashMap<String, Arc<T>>, id: &str, what: &str) -> Result<Arc<T>, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument(format!("the {what} ID is empty")));
    }
    if let Some(o) = map.get(id) {
        return Ok(o.clone());
    }
    let mut hits = map.iter().filter(|(k, _)| k.starts_with(id));
    match (hits.next(), hits.next()) {
        (Some((_, o)), None) => Ok(o.clone()),
        (Some(_), Some(_)) => Err(Status::invalid_argument(format!(
            "{what} ID prefix {id:?} is ambiguous: give more characters"
        ))),
        _ => Err(Status::not_found(format!("{what} {id:?} not found"))),
    }
}

impl Daemon {
    pub fn new(config: Config, images: Arc<ImageStore>) -> Arc<Daemon> {
        let paths = Paths {
            root: config.root.clone(),
            state: config.state.clone(),
        };
        Arc::new(Daemon {
            bins: Binaries {
                shim: config.shim.clone(),
                runtime: config.runtime.clone(),
                runtime_root: paths.runtime_root(),
            },
            cni: Cni {
                conf_dir: config.cni.conf_dir.clone(),
                bin_dirs: config.cni.bin_dirs.clone(),
            },
            paths,
            config,
            images,
            pods: Default::default(),
            containers: Default::default(),
            names: Default::default(),
            events: tokio::sync::broadcast::channel(1024).0,
            pod_cidr: Default::default(),
        })
    }

    pub fn pod(&self, id: &str) -> Result<Pod, Status> {
        find(&lock(&self.pods), id, "pod sandbox")
    }

    pub fn container(&self, id: &str) -> Result<Container, Status> {
        find(&lock(&self.containers), id, "container")
    }

    pub fn pod_containers(&self, pod_id: &str) -> Vec<Container> {
        lock(&self.containers)
            .values()
            .filter(|c| lock(&c.rec).pod_id == pod_id)
            .cloned()
            .collect()
    }

    /// Claims `name` for `id`; AlreadyExists when another object has it.
    pub fn reserve_name(&self, name: &str, id: &str, what: &str) -> Result<(), Status> {
        let mut names = lock(&self.names);
        match names.get(name) {
            Some(other) if other != id => Err(Status::already_exists(format!(
                "{what} name {name:?} is in use by {other}: remove it first, or use another attempt number"
            ))),
            _ => {
                names.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    pub fn release_name(&self, name: &str, id: &str) {
        let mut names = lock(&self.names);
        if names.get(name).map(String::as_str) == Some(id) {
            names.remove(name);
        }
    }

    pub fn save_pod(&self, p: &PodRecord) -> Result<(), Status> {
        store::save_pod(&self.paths, p)
            .map_err(|e| Status::internal(format!("saving pod {}: {e}", p.id)))
    }

    pub fn save_container(&self, c: &ContainerRecord) -> Result<(), Status> {
        store::save_container(&self.paths, c)
            .map_err(|e| Status::internal(format!("saving container {}: {e}", c.id)))
    }

    /// Runs `berth-runtime` with berthd's runtime root.
    pub async fn runtime(&self, args: &[&str]) -> Result<(), String> {
        let out = tokio::process::Command::new(&self.bins.runtime)
            .args(["--log-format", "json", "--root"])
            .arg(&self.bins.runtime_root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("running {}: {e}", self.bins.runtime.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(runtime_message(&out.stderr))
        }
    }

    /// Removes everything the runtime holds of `id`: `delete --force`, then the
    /// state directory of a create that was killed before it saved its state (the
    /// runtime claims the directory first and knows nothing of it afterwards).
    pub async fn delete_in_runtime(&self, id: &str, cgroups_path: &str) {
        if let Err(e) = self.runtime(&["delete", "--force", id]).await
            && !e.contains("does not exist")
            && !e.contains("not found")
        {
            tracing::warn!(container = %id, "runtime delete: {e}");
        }
        let dir = self.bins.runtime_root.join(id);
        if dir.exists() && !dir.join("state.json").exists() {
            tracing::warn!(container = %id, "removing the state of a runtime create that died");
            // Its cgroups too: the runtime made them before it could record them.
            if !cgroups_path.is_empty() {
                crate::cgroup_sweep::remove(cgroups_path);
            }
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(container = %id, "removing {}: {e}", dir.display());
            }
        }
    }

    /// A container whose shim died without recording an exit runs with nobody to
    /// log its output or record its end: it is killed. True once it is gone.
    pub async fn end_unmonitored(&self, id: &str) -> bool {
        for _ in 0..50 {
            match self.runtime_status(id).await.as_deref() {
                Some("running") | Some("created") | Some("paused") => {
                    let _ = self.runtime(&["kill", id, "KILL"]).await;
                }
                Some(_) => return true,
                // Unknown to the runtime: nothing of it runs.
                None => return true,
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::error!(container = %id, "its shim is gone and SIGKILL did not end it");
        false
    }

    /// The runtime's word on a container: created, running, stopped (None: unknown).
    pub async fn runtime_status(&self, id: &str) -> Option<String> {
        let out = tokio::process::Command::new(&self.bins.runtime)
            .arg("--root")
            .arg(&self.bins.runtime_root)
            .args(["state", id])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .ok()?;
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        state["status"].as_str().map(str::to_string)
    }

    /// Watches a container's shim; when it ends, records the exit.
    pub fn watch_container(self: &Arc<Self>, c: Container) {
        let d = self.clone();
        tokio::spawn(async move {
            let id = c.get().id;
            let exit = shim::wait(&d.paths.shim_dir(&id)).await;
            let ended = exit.is_some() || d.end_unmonitored(&id).await;
            let rec = c.update(|r| {
                if matches!(r.state, ContainerState::Created | ContainerState::Running) {
                    apply_exit(r, exit.as_ref(), ended);
                }
                r.clone()
            });
            if let Err(e) = d.save_container(&rec) {
                tracing::error!(container = %id, "{}", e.message());
            }
            let _ = c.exited.send_replace(true);
            tracing::info!(container = %id, exit_code = rec.exit_code, reason = %rec.reason, "container exited");
            d.event(&rec, cri::ContainerEventType::ContainerStoppedEvent);
        });
    }

    /// Watches a pod's pause; when it ends the pod is NotReady.
    pub fn watch_pod(self: &Arc<Self>, p: Pod) {
        let d = self.clone();
        tokio::spawn(async move {
            let id = p.get().id;
            shim::wait(&d.paths.shim_dir(&id)).await;
            let rec = p.update(|r| {
                if r.state == PodState::Ready {
                    r.state = PodState::NotReady;
                }
                r.clone()
            });
            let _ = d.save_pod(&rec);
            let _ = p.exited.send_replace(true);
        });
    }

    pub fn event(&self, c: &ContainerRecord, kind: cri::ContainerEventType) {
        let pod_status = self
            .pod(&c.pod_id)
            .ok()
            .map(|p| crate::pods::status_of(&p.get()));
        let _ = self.events.send(cri::ContainerEventResponse {
            container_id: c.id.clone(),
            container_event_type: kind as i32,
            created_at: store::now_ns(),
            pod_sandbox_status: pod_status,
            containers_statuses: vec![crate::containers::status_of(c)],
        });
    }

    /// Rebuilds the state from disk: re-adopts live shims, records exits that
    /// happened while berthd was down, and finishes or undoes calls it died in.
    pub async fn recover(self: &Arc<Self>) {
        let (pods, pod_strays): (Vec<PodRecord>, _) =
            store::load_all(&self.paths.root, "pods", "pod.json");
        let (containers, ctr_strays): (Vec<ContainerRecord>, _) =
            store::load_all(&self.paths.root, "containers", "container.json");
        for dir in pod_strays.iter().chain(ctr_strays.iter()) {
            tracing::warn!(dir = %dir.display(), "removing a directory with no record");
            crate::pods::unmount_under(dir);
            let _ = std::fs::remove_dir_all(dir);
        }
        for p in pods {
            let cfg: cri::PodSandboxConfig = store::decode(&p.config);
            let obj = Object::new(p.clone());
            lock(&self.names).insert(crate::pods::name_key(&cfg), p.id.clone());
            lock(&self.pods).insert(p.id.clone(), obj.clone());
            if p.state == PodState::Ready {
                if shim::shim_pid(&self.paths.shim_dir(&p.id)).is_some() {
                    self.watch_pod(obj);
                } else {
                    obj.update(|r| r.state = PodState::NotReady);
                    let _ = self.save_pod(&obj.get());
                    let _ = obj.exited.send_replace(true);
                }
            } else {
                let _ = obj.exited.send_replace(true);
            }
        }
        for c in containers {
            let cfg: cri::ContainerConfig = store::decode(&c.config);
            let obj = Object::new(c.clone());
            let pod_cfg = self
                .pod(&c.pod_id)
                .map(|p| store::decode::<cri::PodSandboxConfig>(&p.get().config))
                .unwrap_or_default();
            lock(&self.names).insert(crate::containers::name_key(&cfg, &pod_cfg), c.id.clone());
            lock(&self.containers).insert(c.id.clone(), obj.clone());
            match c.state {
                ContainerState::Created | ContainerState::Running => {
                    if shim::shim_pid(&self.paths.shim_dir(&c.id)).is_some() {
                        tracing::info!(container = %c.id, "re-adopted its shim");
                        // A start that berthd died in after the runtime started
                        // the container: the runtime knows it runs.
                        if c.state == ContainerState::Created
                            && self.runtime_status(&c.id).await.as_deref() == Some("running")
                        {
                            let rec = obj.update(|r| {
                                r.state = ContainerState::Running;
                                r.started_at = store::now_ns();
                                r.clone()
                            });
                            let _ = self.save_container(&rec);
                        }
                        self.watch_container(obj);
                    } else {
                        let exit = shim::read_exit(&self.paths.shim_dir(&c.id));
                        let ended = exit.is_some() || self.end_unmonitored(&c.id).await;
                        let rec = obj.update(|r| {
                            apply_exit(r, exit.as_ref(), ended);
                            r.clone()
                        });
                        let _ = self.save_container(&rec);
                        let _ = obj.exited.send_replace(true);
                    }
                }
                _ => {
                    let _ = obj.exited.send_replace(true);
                }
            }
        }
        // Calls berthd died inside: a half-made object is undone, a half-removed
        // one removed; kubelet retries either.
        let unfinished: Vec<Container> = lock(&self.containers)
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
            if let Err(e) = crate::containers::remove(self, &id).await {
                tracing::error!(container = %id, "{}", e.message());
            }
        }
        let unfinished: Vec<Pod> = lock(&self.pods)
            .values()
            .filter(|p| matches!(p.get().state, PodState::Creating | PodState::Removing))
            .cloned()
            .collect();
        for p in unfinished {
            let id = p.get().id;
            tracing::warn!(pod = %id, "finishing an interrupted run or remove");
            if let Err(e) = crate::pods::remove(self, &id).await {
                tracing::error!(pod = %id, "{}", e.message());
            }
        }
        self.clean_orphans().await;
        // Re-adopted pods' networks are checked (CNI CHECK) in the background: a
        // plugin's state may have changed while berthd was down; start-up does not wait.
        let d = self.clone();
        tokio::spawn(async move { crate::pods::check_networks(&d).await });
    }

    /// Runtime containers, shims and network namespaces that belong to no record.
    async fn clean_orphans(&self) {
        let known =
            |id: &str| lock(&self.pods).contains_key(id) || lock(&self.containers).contains_key(id);
        for e in std::fs::read_dir(&self.bins.runtime_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().to_string();
            if !known(&id) {
                tracing::warn!(id = %id, "deleting an orphaned runtime container");
                self.delete_in_runtime(&id, "").await;
            }
        }
        for e in std::fs::read_dir(self.paths.state.join("shims"))
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
        for e in std::fs::read_dir(self.paths.netns_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().to_string();
            if !known(&id) {
                tracing::warn!(netns = %e.path().display(), "removing an orphaned network namespace");
                let _ = crate::netns::remove(&e.path());
            }
        }
    }
}

/// berth-runtime's error: the `msg` of its JSON error record (runc's format),
/// else its stderr as it is.
pub fn runtime_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v.get("msg")?.as_str().map(String::from)
        })
        .unwrap_or_else(|| text.trim().to_string())
}

/// A container's record after its shim ended; `ended`: it no longer runs (with
/// no exit recorded, berthd killed it).
pub fn apply_exit(r: &mut ContainerRecord, exit: Option<&shim::Exit>, ended: bool) {
    match exit {
        Some(e) => {
            r.state = ContainerState::Exited;
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
            r.state = ContainerState::Exited;
            r.finished_at = store::now_ns();
            r.exit_code = 137;
            r.reason = "ShimGone".into();
            r.message = "the container's shim (its monitor) ended without recording an exit, so berthd killed the unmonitored container: its real exit status and any output after the shim's end are lost".into();
        }
        None => {
            r.state = ContainerState::Unknown;
            r.finished_at = store::now_ns();
            r.exit_code = 255;
            r.reason = "ShimGone".into();
            r.message = "the container's shim ended without recording an exit and the container could not be killed: its state is unknown; StopContainer or RemoveContainer retries".into();
        }
    }
}
