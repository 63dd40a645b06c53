//! The runtime's record of each container under `--root` (default
//! /run/berth-runtime/<id>/state.json), written atomically. The live status is
//! derived from the kernel (the init pid with its start time, the exec fifo, the
//! freezer), not trusted from the file.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";

/// What `state` reports, with runc's field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What the runtime keeps about a container between invocations.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot): guards against PID reuse.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup directories, one per hierarchy.
    pub cgroup: crate::cgroups::Cgroup,
    /// The bundle's hooks, needed again at `start` (poststart) and `delete` (poststop).
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// The `ociVersion` of the config.
    pub oci_version: String,
    /// The container has no mount namespace of its own: its mounts are in the
    /// runtime's and are unmounted at delete.
    #[serde(default)]
    pub host_mounts: bool,
    /// The linux.intelRdt resource group.
    #[serde(default)]
    pub rdt: Option<crate::rdt::RdtGroup>,
}

/// The state JSON of `berth-runtime state`, as runc prints it.
#[derive(Serialize)]
pub struct StateOutput<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

/// The `--root` directory holding one directory per container.
pub struct Root {
    pub dir: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> Self {
        Root {
            dir: dir.to_path_buf(),
        }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Claims `id`: its directory is created exclusively, so two creates race safely.
    pub fn claim(&self, id: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::path("creating root", &self.dir, e))?;
        let dir = self.container_dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Exists(id.to_string()))
            }
            Err(e) => Err(Error::path("creating state dir", &dir, e)),
        }
    }

    pub fn load(&self, id: &str) -> Result<Record> {
        crate::spec::validate_id(id)?;
        let path = self.container_dir(id).join(STATE_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()));
            }
            Err(e) => return Err(Error::path("reading state", &path, e)),
        };
        serde_json::from_slice(&data)
            .map_err(|e| Error::path("parsing state", &path, std::io::Error::other(e)))
    }

    pub fn save(&self, rec: &Record) -> Result<()> {
        let path = self.container_dir(&rec.id).join(STATE_FILE);
        let data = serde_json::to_vec(rec)
            .map_err(|e| Error::sys("encoding state", std::io::Error::other(e)))?;
        crate::sys::write_atomic(&path, &data)
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.container_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::path("removing state dir", &dir, e)),
        }
    }

    /// Ids of every container with a state dir, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

impl Record {
    /// Whether the init process recorded is still the one alive under that pid.
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && crate::sys::process_start_time(self.pid) == Some(self.pid_start)
    }

    /// The live status: from the kernel, never from the file alone.
    pub fn status(&self, root: &Root) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if root.container_dir(&self.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if crate::cgroups::is_frozen(&self.cgroup.paths(), self.cgroup.v2) {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn output<'a>(&'a self, status: Status) -> StateOutput<'a> {
        StateOutput {
            oci_version: &self.oci_version,
            id: &self.id,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status: status.as_str(),
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: "",
            annotations: &self.annotations,
        }
    }
}

/// Now as RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}
