//! berth-image: everything about images, shared by `berthd` and the `berth` CLI.
//!
//! - [`reference`]: parse and normalise image references as Docker and containerd do
//! - [`pull`]: resolve through mirrors, pick the platform, stream layers in parallel
//! - [`store`]: the content store (blobs by digest, written atomically, verified)
//! - [`unpack`]: layers applied onto their parents' view, into overlayfs-format snapshot directories
//! - [`layered`]: the merged tree of a layer and its parents, paths resolved inside it
//! - [`snapshot`]: snapshots by chain id; a container's overlay rootfs
//! - [`metadata`]: image records and names, under a file lock
//! - [`pins`]: images held by their users (image volumes) apart from their names
//! - [`crash`]: debug-only crash points for the fault tests
//!
//! [`ImageStore`] ties them together; one store under one root directory is safe
//! to share between processes.

pub mod crash;
pub mod error;
pub mod layered;
mod lockfile;
pub mod metadata;
mod overlay;
pub mod pins;
pub mod pull;
pub mod reference;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use error::{ImageError, Result};
pub use metadata::ImageRecord;
pub use pull::{Auth, Progress, PullOptions};
pub use reference::{Reference, ReferenceError};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Opens a directory for *at calls.
pub(crate) fn sys_open_dir(p: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    std::fs::File::open(p).map(std::os::fd::OwnedFd::from)
}

/// Where the store lives and how to reach registries.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Root directory (default /var/lib/berth).
    pub root: PathBuf,
    /// Registry host to mirror hosts, tried in order before the host itself.
    pub mirrors: HashMap<String, Vec<String>>,
    /// Registries reached over plain HTTP (loopback hosts always are).
    pub insecure: Vec<String>,
    /// Bound on the bytes one layer may unpack to; default: what the store's
    /// filesystem has free, less a reserve.
    pub unpack_limit: Option<u64>,
    /// A docker config.json with `auths`, used when a pull brings no credentials.
    pub docker_config: Option<PathBuf>,
}

impl StoreConfig {
    pub fn new(root: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            root: root.into(),
            mirrors: HashMap::new(),
            insecure: Vec::new(),
            unpack_limit: None,
            docker_config: None,
        }
    }
}

/// The user an image runs as, split as the CRI's ImageStatus wants it: a numeric
/// USER (`1000`, `1000:1000`) gives `uid`, a name (`nginx`, `nginx:web`) gives
/// `username`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImageUser {
    pub uid: Option<i64>,
    pub username: String,
}

pub fn image_user(config: &serde_json::Value) -> ImageUser {
    let user = config["config"]["User"].as_str().unwrap_or_default();
    let name = user.split(':').next().unwrap_or_default();
    match name.parse::<i64>() {
        Ok(uid) => ImageUser {
            uid: Some(uid),
            username: String::new(),
        },
        Err(_) => ImageUser {
            uid: None,
            username: name.to_string(),
        },
    }
}

/// What garbage collection freed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub blobs: usize,
    pub snapshots: usize,
}

pub struct ImageStore {
    pub config: StoreConfig,
    content: store::ContentStore,
    snapshots: snapshot::Snapshots,
    images: metadata::Images,
    pins: pins::Pins,
    /// Snapshot directories being unpacked by this process.
    prepared: std::sync::Mutex<Vec<PathBuf>>,
}

impl ImageStore {
    pub fn open(config: StoreConfig) -> Result<ImageStore> {
        std::fs::create_dir_all(&config.root)
            .map_err(|e| ImageError::io("creating", &config.root, e))?;
        Ok(ImageStore {
            content: store::ContentStore::open(&config.root)?,
            snapshots: snapshot::Snapshots::open(&config.root)?,
            images: metadata::Images::open(&config.root),
            pins: pins::Pins::open(&config.root),
            prepared: Default::default(),
            config,
        })
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        self.images.list()
    }

    pub fn get(&self, name: &str) -> Result<ImageRecord> {
        self.images.resolve(name)
    }

    /// The image's config JSON (entrypoint, cmd, env, user, ...).
    pub fn config_json(&self, rec: &ImageRecord) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.content.read(&rec.id)?)
            .map_err(|e| ImageError::invalid(&rec.id, e.to_string()))
    }

    /// Resolves `name` as [`ImageStore::get`] does and pins the image for
    /// `holder`: its blobs and snapshots outlive the removal of its names until
    /// [`ImageStore::unpin`]. Done while no GC runs (`gc.lock` shared), so a GC
    /// cannot free the image between the look-up and the pin.
    pub fn pin(&self, holder: &str, name: &str) -> Result<ImageRecord> {
        let _no_gc = lockfile::lock(&self.config.root.join("gc.lock"), false, true)?;
        let rec = self.images.resolve(name)?;
        self.pins.add(holder, &rec)?;
        Ok(rec)
    }

    /// Drops every pin of `holder`; what only it kept goes at the next GC.
    pub fn unpin(&self, holder: &str) -> Result<()> {
        self.pins.remove(holder)
    }

    /// The holders that pin images.
    pub fn pin_holders(&self) -> Vec<String> {
        self.pins.holders()
    }

    /// Removes an image (or just one of its tags) and frees what nothing uses.
    pub fn remove(&self, name: &str) -> Result<Option<ImageRecord>> {
        let removed = self.images.remove(name)?;
        if removed.is_some() {
            self.gc()?;
        }
        Ok(removed)
    }

    /// Held (shared) for the length of a pull: its blobs and snapshots are
    /// referenced by no image until its record is written, so GC must wait.
    pub(crate) async fn pull_lock(&self) -> Result<lockfile::Lock> {
        let path = self.config.root.join("gc.lock");
        loop {
            if let Some(l) = lockfile::lock(&path, false, false)? {
                return Ok(l);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Deletes blobs and snapshots no image refers to, once no pull (of this
    /// process or another sharing the store) is under way.
    pub fn gc(&self) -> Result<Collected> {
        let _no_pulls = lockfile::lock(&self.config.root.join("gc.lock"), true, true)?;
        let mut images = self.images.list()?;
        // Pinned images stay whole even once their names are gone.
        images.extend(self.pins.all()?);
        let mut keep_blobs: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut keep_snaps = std::collections::HashSet::new();
        for i in &images {
            keep_blobs.insert(i.id.clone());
            keep_blobs.insert(i.manifest_digest.clone());
            keep_blobs.extend(
                i.repo_digests
                    .iter()
                    .filter_map(|d| d.rsplit_once('@').map(|(_, d)| d.to_string())),
            );
            keep_blobs.extend(i.layers.iter().cloned());
            keep_snaps.extend(i.chain_ids.iter().cloned());
        }
        // A removed image's layers stay while a container's overlay uses them.
        keep_snaps.extend(self.snapshots.in_use());
        let mut out = Collected::default();
        for b in self.content.list() {
            if !keep_blobs.contains(&b) {
                self.content.delete(&b)?;
                out.blobs += 1;
            }
        }
        for s in self.snapshots.list() {
            if !keep_snaps.contains(&s) {
                self.snapshots.remove(&s)?;
                out.snapshots += 1;
            }
        }
        Ok(out)
    }

    /// Bytes and inodes the store uses for blobs and snapshots (for the CRI's
    /// ImageFsInfo); a hard-linked file counts once.
    pub fn usage(&self) -> Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let mut seen = std::collections::HashSet::new();
        let (mut bytes, mut inodes) = (0u64, 0u64);
        let mut stack = vec![
            self.config.root.join("content"),
            self.config.root.join("snapshots"),
        ];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    stack.push(e.path());
                }
                if seen.insert((m.dev(), m.ino())) {
                    bytes += m.blocks() * 512;
                    inodes += 1;
                }
            }
        }
        Ok((bytes, inodes))
    }

    fn unpack_limit(&self) -> u64 {
        if let Some(l) = self.config.unpack_limit {
            return l;
        }
        let c = std::ffi::CString::new(self.config.root.as_os_str().as_encoded_bytes())
            .unwrap_or_default();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: statvfs with a valid path and out pointer.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == -1 {
            return u64::MAX;
        }
        let avail = st.f_bavail * st.f_frsize;
        // Keep 5% of the filesystem (at most 256 MiB) for everything else.
        let reserve = ((st.f_blocks * st.f_frsize) / 20).min(256 << 20);
        avail.saturating_sub(reserve)
    }

    /// Mounts a container's rootfs from an image: see [`snapshot::Snapshots::mount_rootfs`].
    pub fn mount_rootfs(
        &self,
        rec: &ImageRecord,
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<snapshot::RootfsKind> {
        self.snapshots
            .mount_rootfs(&rec.chain_ids, upper, work, target)
    }

    /// Mounts an image's layers read-only (no upper layer) at `target`: see
    /// [`snapshot::Snapshots::mount_view`].
    pub fn mount_view(&self, chain_ids: &[String], target: &Path) -> Result<snapshot::RootfsKind> {
        self.snapshots.mount_view(chain_ids, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_split_for_the_cri() {
        let u = |s: &str| image_user(&serde_json::json!({"config": {"User": s}}));
        assert_eq!(
            u("1000"),
            ImageUser {
                uid: Some(1000),
                username: String::new()
            }
        );
        assert_eq!(
            u("1000:50"),
            ImageUser {
                uid: Some(1000),
                username: String::new()
            }
        );
        assert_eq!(
            u("nginx:web"),
            ImageUser {
                uid: None,
                username: "nginx".into()
            }
        );
        assert_eq!(
            u(""),
            ImageUser {
                uid: None,
                username: String::new()
            }
        );
        assert_eq!(image_user(&serde_json::json!({})), ImageUser::default());
    }
}
