//! Durable records of pods and containers: one JSON file per object
//! (`<root>/pods/<id>/pod.json`, `<root>/containers/<id>/container.json`), written
//! atomically (temporary file, fsync, rename, fsync of the directory), so a crash
//! at any instant leaves the old record or the new one, never a torn one.
//!
//! The CRI configs are kept as their protobuf encoding (base64 in the JSON): every
//! field kubelet gave comes back unchanged in statuses after a restart.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

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

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum PodState {
    Creating,
    Ready,
    NotReady,
    Removing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub state: PodState,
    /// `PodSandboxConfig`, protobuf-encoded.
    #[serde(with = "b64")]
    pub config: Vec<u8>,
    pub runtime_handler: String,
    pub created_at: i64,
    /// The pinned network namespace, absent with host networking.
    pub netns: Option<PathBuf>,
    /// IPs from the CNI result, first the primary.
    pub ips: Vec<String>,
    /// The CNI result of ADD, handed back to DEL.
    pub cni_result: Option<serde_json::Value>,
    /// The pause process's pid (it holds the IPC, UTS and PID namespaces).
    pub pause_pid: i32,
    pub cgroup_parent: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub state: ContainerState,
    /// `ContainerConfig`, protobuf-encoded.
    #[serde(with = "b64")]
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
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// Where berthd keeps everything, from the config's root and state dirs.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Paths {
    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.root.join("pods").join(id)
    }
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
    /// The shim's directory: sockets, pid and exit files (volatile).
    pub fn shim_dir(&self, id: &str) -> PathBuf {
        self.state.join("shims").join(id)
    }
    pub fn netns_dir(&self) -> PathBuf {
        self.state.join("netns")
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.state.join("runtime")
    }
    pub fn pause_rootfs(&self) -> PathBuf {
        self.root.join("pause").join("rootfs")
    }
}

/// Writes `bytes` to `path` so that readers see the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // A temp name of its own per write: two saves of one record may race (a
    // call and an exit watcher), and must not rename each other's file away.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

pub fn save_pod(paths: &Paths, p: &PodRecord) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(p).map_err(std::io::Error::other)?;
    write_atomic(&paths.pod_dir(&p.id).join("pod.json"), &json)
}

pub fn save_container(paths: &Paths, c: &ContainerRecord) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(c).map_err(std::io::Error::other)?;
    write_atomic(&paths.container_dir(&c.id).join("container.json"), &json)
}

/// Every record found under `<root>/<kind>/*/<file>`, and the directories that
/// have none (a create that died before its first write).
pub fn load_all<T: for<'de> Deserialize<'de>>(
    root: &Path,
    kind: &str,
    file: &str,
) -> (Vec<T>, Vec<PathBuf>) {
    let (mut found, mut strays) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(root.join(kind))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = e.path();
        match std::fs::read(path.join(file))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(r) => found.push(r),
            None => strays.push(path),
        }
    }
    (found, strays)
}

/// 64 hex characters from the kernel's random source, like containerd's IDs.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    // SAFETY: getrandom into a local buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Unreachable in practice; the time keeps IDs distinct anyway.
        let t = now_ns().to_le_bytes();
        b[..8].copy_from_slice(&t);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Decodes a stored protobuf config.
pub fn decode<M: prost::Message + Default>(bytes: &[u8]) -> M {
    M::decode(bytes).unwrap_or_default()
}

pub fn encode<M: prost::Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_strays_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: dir.path().into(),
            state: dir.path().join("s"),
        };
        let rec = PodRecord {
            id: new_id(),
            state: PodState::Ready,
            config: vec![1, 2, 3, 250],
            runtime_handler: String::new(),
            created_at: now_ns(),
            netns: None,
            ips: vec!["10.0.0.2".into()],
            cni_result: None,
            pause_pid: 7,
            cgroup_parent: "/berth".into(),
        };
        save_pod(&paths, &rec).unwrap();
        std::fs::create_dir_all(paths.pod_dir("half-made")).unwrap();
        let (found, strays): (Vec<PodRecord>, _) = load_all(dir.path(), "pods", "pod.json");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].config, vec![1, 2, 3, 250]);
        assert_eq!(found[0].ips, rec.ips);
        assert_eq!(strays, vec![paths.pod_dir("half-made")]);
        assert_eq!(rec.id.len(), 64);
        assert_ne!(new_id(), new_id());
    }
}
