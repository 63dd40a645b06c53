//! berthd's state in memory: every pod and container record, each behind its
//! own lock so calls on one object are serialised while different objects
//! proceed in parallel; the names in use; the event stream; and the runtime
//! calls every object needs. What a pod or container does is in `pod` and
//! `container`; start-up is `recovery`.

use crate::config::Config;
use crate::container::ContainerRecord;
use crate::pod::PodRecord;
use crate::shim::Binaries;
use crate::store::{self, Paths};
use berth_image::ImageStore;
use berth_network::Cni;
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
        store::save(&self.paths.pod_dir(&p.id), "pod.json", p)
            .map_err(|e| Status::internal(format!("saving pod {}: {e}", p.id)))
    }

    pub fn save_container(&self, c: &ContainerRecord) -> Result<(), Status> {
        store::save(&self.paths.container_dir(&c.id), "container.json", c)
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
            Err(berth_bundle::runtime_error::message(&out.stderr))
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
}
