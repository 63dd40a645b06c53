//! Snapshots: each layer unpacked once, keyed by its chain id (the layer and every
//! layer below it, as in the OCI image spec), under `<root>/snapshots/<hex>/fs`. A
//! snapshot is unpacked into a temporary directory and renamed into place when
//! complete, so a killed unpack never looks finished.
//!
//! A container's rootfs is an overlayfs of its image's snapshots plus a fresh
//! upper directory; where overlayfs cannot be mounted, the layers are copied.

use crate::error::{ImageError, Result};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// The chain ids of a list of diff ids (bottom layer first).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let id = match out.last() {
            None => d.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {d}")))
            ),
        };
        out.push(id);
    }
    out
}

pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots> {
        let dir = root.join("snapshots");
        std::fs::create_dir_all(&dir).map_err(|e| ImageError::io("creating", &dir, e))?;
        // Unpacks killed midway leave `.tmp-*` directories: they never count.
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix(".tmp-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            {
                // SAFETY: signal 0 only checks whether the pid exists.
                if unsafe { libc::kill(pid, 0) } != 0 {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(Snapshots { dir })
    }

    fn key(chain_id: &str) -> Result<&str> {
        crate::store::sha256_hex(chain_id)
    }

    /// The unpacked layer of `chain_id`.
    pub fn fs(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(Self::key(chain_id)?).join("fs"))
    }

    pub fn exists(&self, chain_id: &str) -> bool {
        self.fs(chain_id).is_ok_and(|p| p.is_dir())
    }

    /// A fresh directory to unpack into; `commit` moves it into place.
    pub fn prepare(&self, chain_id: &str) -> Result<PathBuf> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{n}-{}",
            std::process::id(),
            &Self::key(chain_id)?[..12]
        ));
        let fs = tmp.join("fs");
        std::fs::create_dir_all(&fs).map_err(|e| ImageError::io("creating", &fs, e))?;
        Ok(fs)
    }

    pub fn commit(&self, prepared_fs: &Path, chain_id: &str) -> Result<()> {
        let tmp = prepared_fs.parent().unwrap_or(prepared_fs);
        let dest = self.dir.join(Self::key(chain_id)?);
        match std::fs::rename(tmp, &dest) {
            Ok(()) => Ok(()),
            // Another pull finished the same snapshot first: keep theirs.
            Err(_) if dest.join("fs").is_dir() => {
                let _ = std::fs::remove_dir_all(tmp);
                Ok(())
            }
            Err(e) => Err(ImageError::io("committing snapshot", dest, e)),
        }
    }

    pub fn abort(&self, prepared_fs: &Path) {
        if let Some(tmp) = prepared_fs.parent() {
            let _ = std::fs::remove_dir_all(tmp);
        }
    }

    pub fn remove(&self, chain_id: &str) -> Result<()> {
        let d = self.dir.join(Self::key(chain_id)?);
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::io("removing snapshot", d, e))
            }
            _ => Ok(()),
        }
    }

    /// Snapshots that a mounted overlay uses as a lower layer right now (a
    /// container's rootfs): GC must keep them whatever images say.
    pub fn in_use(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        lower_dirs(&info)
            .into_iter()
            .filter_map(|d| {
                let rel = d.strip_prefix(&self.dir).ok()?;
                let key = rel
                    .components()
                    .next()?
                    .as_os_str()
                    .to_string_lossy()
                    .into_owned();
                Some(format!("sha256:{key}"))
            })
            .collect()
    }

    pub fn list(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                (!n.starts_with('.')).then(|| format!("sha256:{n}"))
            })
            .collect()
    }

    /// The snapshot directories of `chain_ids` (bottom first) as overlayfs wants
    /// its lower layers: top first. None at all is `what`'s error `empty`.
    fn lowers(&self, chain_ids: &[String], what: &str, empty: &str) -> Result<Vec<PathBuf>> {
        let lowers: Vec<PathBuf> = chain_ids
            .iter()
            .rev()
            .map(|c| self.fs(c))
            .collect::<Result<_>>()?;
        if lowers.is_empty() {
            return Err(ImageError::invalid(what, empty));
        }
        Ok(lowers)
    }

    /// Mounts the container rootfs at `target`: an overlay of the snapshots of
    /// `chain_ids` (bottom first) with `upper` and `work` (created here) on top.
    /// Falls back to copying the layers into `target` when overlayfs is missing.
    pub fn mount_rootfs(
        &self,
        chain_ids: &[String],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<RootfsKind> {
        for d in [upper, work, target] {
            std::fs::create_dir_all(d).map_err(|e| ImageError::io("creating", d, e))?;
        }
        let lowers = self.lowers(chain_ids, "rootfs", "an image without layers has no rootfs")?;
        match crate::overlay::mount(&lowers, upper, work, target) {
            Ok(()) => Ok(RootfsKind::Overlay),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                crate::overlay::copy_layers(&lowers, target)
                    .map_err(|e| ImageError::io("copying layers into", target, e))?;
                Ok(RootfsKind::Copy)
            }
            Err(e) => Err(ImageError::io("mounting overlay rootfs at", target, e)),
        }
    }

    /// Mounts the snapshots of `chain_ids` (bottom first) read-only at `target`
    /// (created here), with no upper layer: an image's files as a volume. Where
    /// overlayfs is missing, the layers are copied into `target`, which is then
    /// bound read-only onto itself.
    pub fn mount_view(&self, chain_ids: &[String], target: &Path) -> Result<RootfsKind> {
        std::fs::create_dir_all(target).map_err(|e| ImageError::io("creating", target, e))?;
        let lowers = self.lowers(
            chain_ids,
            "image view",
            "an image without layers has no files to mount",
        )?;
        if let Some(missing) = lowers.iter().find(|l| !l.is_dir()) {
            return Err(ImageError::invalid(
                "image view",
                format!("snapshot {} is missing", missing.display()),
            ));
        }
        match crate::overlay::mount_read_only(&lowers, target) {
            Ok(()) => Ok(RootfsKind::Overlay),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                crate::overlay::copy_layers(&lowers, target)
                    .and_then(|()| crate::overlay::bind_read_only(target, target))
                    .map_err(|e| ImageError::io("copying layers into", target, e))?;
                Ok(RootfsKind::Copy)
            }
            Err(e) => Err(ImageError::io("mounting the image read-only at", target, e)),
        }
    }
}

/// How a rootfs was made.
#[derive(Debug, PartialEq, Eq)]
pub enum RootfsKind {
    Overlay,
    Copy,
}

/// Unmounts a rootfs made by `mount_rootfs` (a copied rootfs is left for the
/// caller to remove with its container directory).
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: umount2 of a path we mounted.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == -1 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
            return Err(ImageError::io("unmounting rootfs", target, e));
        }
    }
    Ok(())
}

/// The lower directories of every overlay mount in a mountinfo text.
pub fn lower_dirs(mountinfo: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((_, tail)) = line.split_once(" - ") else {
            continue;
        };
        let mut f = tail.split(' ');
        if f.next() != Some("overlay") {
            continue;
        }
        let options = f.nth(1).unwrap_or_default();
        for opt in options.split(',') {
            let Some((key, value)) = opt.split_once('=') else {
                continue;
            };
            if key.starts_with("lowerdir") {
                out.extend(
                    value
                        .split(':')
                        .filter(|p| !p.is_empty())
                        .map(|p| PathBuf::from(p.replace("\\040", " "))),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lower_dirs_are_found_in_mountinfo() {
        let info = "36 25 0:31 / /c/rootfs rw,relatime - overlay overlay rw,lowerdir=/s/aa/fs:/s/bb/fs,upperdir=/c/upper,workdir=/c/work\n\
                    37 25 8:1 / /data rw - ext4 /dev/sda1 rw,lowerdir=not-an-overlay\n";
        assert_eq!(
            lower_dirs(info),
            vec![PathBuf::from("/s/aa/fs"), PathBuf::from("/s/bb/fs")]
        );
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(
            ids[1],
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest("sha256:aaaa sha256:bbbb"))
            )
        );
    }
}
