//! Durable records: one JSON file per object (`<root>/pods/<id>/pod.json`,
//! `<root>/containers/<id>/container.json`), written atomically (temporary file,
//! fsync, rename, fsync of the directory), so a crash at any instant leaves the
//! old record or the new one, never a torn one. The record types are their
//! objects' own (`pod::PodRecord`, `container::ContainerRecord`).
//!
//! The CRI configs are kept as their protobuf encoding (base64 in the JSON): every
//! field kubelet gave comes back unchanged in statuses after a restart.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod b64 {
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

/// Writes a record as `file` in its object's directory, atomically.
pub fn save<T: Serialize>(dir: &Path, file: &str, rec: &T) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(file), &json)
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

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        id: String,
        #[serde(with = "b64")]
        config: Vec<u8>,
        ips: Vec<String>,
    }

    #[test]
    fn records_round_trip_and_strays_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: dir.path().into(),
            state: dir.path().join("s"),
        };
        let rec = Rec {
            id: new_id(),
            config: vec![1, 2, 3, 250],
            ips: vec!["10.0.0.2".into()],
        };
        save(&paths.pod_dir(&rec.id), "pod.json", &rec).unwrap();
        std::fs::create_dir_all(paths.pod_dir("half-made")).unwrap();
        let (found, strays): (Vec<Rec>, _) = load_all(dir.path(), "pods", "pod.json");
        assert_eq!(found, vec![rec]);
        assert_eq!(strays, vec![paths.pod_dir("half-made")]);
        assert_eq!(new_id().len(), 64);
        assert_ne!(new_id(), new_id());
    }
}
