//! Image volumes (KEP-4639): a CRI mount that names an image instead of a host
//! path. The image is found in the store and pinned for the container (GC and
//! RemoveImage keep its blobs and snapshots), its layers are mounted read-only,
//! nosuid and nodev with no upper layer at `containers/<id>/image-volumes/<n>`,
//! and the container gets a read-only bind of that, or of `image_sub_path`
//! resolved beneath it. RemoveContainer unmounts and unpins; recovery mounts a
//! volume again where its mount is gone, and drops pins no container holds.

use super::record::ImageVolume;
use super::volume_error::VolumeError;
use crate::daemon::{Container, Daemon};
use berth_image::{ImageError, ImageStore};
use berth_proto::v1 as cri;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tonic::Status;

/// Makes every image volume of `config` for the container `obj`, recording each
/// in its record (saved) before mounting it, so a failure or a crash part-way
/// leaves a record that RemoveContainer and recovery clean up.
pub async fn mount_all(
    d: &Arc<Daemon>,
    obj: &Container,
    config: &cri::ContainerConfig,
) -> Result<(), Status> {
    let id = obj.get().id;
    let dir = d.paths.container_dir(&id).join("image-volumes");
    for (index, m) in config.mounts.iter().enumerate() {
        let Some(image) = crate::validate::image_of(m) else {
            continue;
        };
        let (images, holder, name) = (d.images.clone(), id.clone(), image.to_string());
        let container_path = m.container_path.clone();
        let rec = tokio::task::spawn_blocking(move || images.pin(&holder, &name))
            .await
            .map_err(crate::status::join)?
            .map_err(|error| match error {
                ImageError::NotFound(_) => VolumeError::ImageMissing {
                    container_path: container_path.clone(),
                    image: image.to_string(),
                },
                error => VolumeError::Image {
                    container_path: container_path.clone(),
                    error,
                },
            })
            .map_err(crate::status::image_volume)?;
        let vol = ImageVolume {
            index,
            container_path: m.container_path.clone(),
            image: image.to_string(),
            image_id: rec.id.clone(),
            chain_ids: rec.chain_ids.clone(),
            sub_path: m.image_sub_path.clone(),
            mount_point: dir.join(index.to_string()).to_string_lossy().into_owned(),
            source: String::new(),
        };
        obj.update(|r| r.image_volumes.push(vol.clone()));
        d.save_container(&obj.get())?;
        let images = d.images.clone();
        let source = tokio::task::spawn_blocking(move || establish(&images, &vol))
            .await
            .map_err(crate::status::join)?
            .map_err(crate::status::image_volume)?;
        obj.update(|r| {
            if let Some(v) = r.image_volumes.iter_mut().find(|v| v.index == index) {
                v.source = source.to_string_lossy().into_owned();
            }
        });
        d.save_container(&obj.get())?;
    }
    Ok(())
}

/// Mounts the volume's image read-only at its mount point (unless it is
/// mounted there already) and resolves its sub-path: the host path to bind.
fn establish(images: &ImageStore, v: &ImageVolume) -> Result<PathBuf, VolumeError> {
    let point = Path::new(&v.mount_point);
    if !crate::mounts::is_mounted(point) {
        images
            .mount_view(&v.chain_ids, point)
            .map_err(|error| VolumeError::Image {
                container_path: v.container_path.clone(),
                error,
            })?;
    }
    resolve_beneath(point, &v.sub_path).map_err(|reason| VolumeError::SubPath {
        container_path: v.container_path.clone(),
        image: v.image.clone(),
        sub_path: v.sub_path.clone(),
        reason,
    })
}

/// `sub` resolved beneath `root`, never outside it: `openat2` with
/// RESOLVE_BENEATH refuses `..` that climbs above `root` and every absolute
/// symlink (inside an image it would name the container's root, not the
/// image's), RESOLVE_NO_XDEV any other mount, RESOLVE_NO_MAGICLINKS the /proc
/// kind. The image is mounted read-only, so what it resolves to cannot change
/// before the container binds it.
pub fn resolve_beneath(root: &Path, sub: &str) -> Result<PathBuf, String> {
    let root = &std::fs::canonicalize(root)
        .map_err(|e| format!("cannot be looked up: the image's root: {e}"))?;
    let sub = sub.trim_start_matches("./");
    if sub.is_empty() || sub == "." {
        return Ok(root.to_path_buf());
    }
    let root_fd = std::fs::File::open(root)
        .map_err(|e| format!("cannot be looked up: opening the image's root: {e}"))?;
    let c = std::ffi::CString::new(sub).map_err(|_| "contains a NUL byte".to_string())?;
    // SAFETY: zeroed open_how, then its fields set: a plain C struct.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
    // SAFETY: openat2 with a valid dir fd, C string and open_how of its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => "does not exist".to_string(),
            Some(libc::EXDEV) => {
                "leaves the image (through '..', an absolute symlink or a symlink that climbs out)"
                    .to_string()
            }
            Some(libc::ELOOP) => "has too many levels of symlinks".to_string(),
            _ => format!("cannot be resolved: {e}"),
        });
    }
    // SAFETY: openat2 returned a new fd that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("cannot be resolved: {e}"))?;
    if !real.starts_with(root) {
        return Err(format!("resolves to {}, outside the image", real.display()));
    }
    Ok(real)
}

/// Unmounts the container's image volumes and drops its pins. The mounts are
/// under the container's directory (which remove also sweeps); the pins go
/// only after the mounts.
pub async fn release(d: &Arc<Daemon>, id: &str, volumes: &[ImageVolume]) -> Result<(), Status> {
    for v in volumes {
        crate::mounts::unmount_one(Path::new(&v.mount_point));
    }
    let (images, holder) = (d.images.clone(), id.to_string());
    tokio::task::spawn_blocking(move || images.unpin(&holder))
        .await
        .map_err(crate::status::join)?
        .map_err(crate::status::image)
}

/// After a restart: the image volumes of a container that still exists are
/// mounted again where their mounts are gone (a host reboot), from the pinned
/// snapshots. Failures are logged: the record still lets RemoveContainer clean.
pub async fn reestablish(d: &Arc<Daemon>, volumes: &[ImageVolume], id: &str) {
    for v in volumes.iter().filter(|v| !v.source.is_empty()) {
        let (images, vol) = (d.images.clone(), v.clone());
        match tokio::task::spawn_blocking(move || establish(&images, &vol)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(container = %id, "mounting an image volume again: {e}"),
            Err(e) => tracing::error!(container = %id, "mounting an image volume again: {e}"),
        }
    }
}

/// The CRI mounts of a status: an image volume's image spec gets, in
/// `image_ref`, the ID of the image it resolved to: the value PullImage answered
/// (KEP-5365; critest compares the two).
pub fn status_mounts(config: &cri::ContainerConfig, volumes: &[ImageVolume]) -> Vec<cri::Mount> {
    let mut mounts = config.mounts.clone();
    for v in volumes {
        if let Some(spec) = mounts.get_mut(v.index).and_then(|m| m.image.as_mut()) {
            spec.image_ref = v.image_id.clone();
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_resolve_only_beneath_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("etc/ssl")).unwrap();
        std::fs::write(root.join("etc/file"), "x").unwrap();
        std::os::unix::fs::symlink("ssl", root.join("etc/inside")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        assert_eq!(resolve_beneath(&root, "").unwrap(), root);
        assert_eq!(resolve_beneath(&root, "etc").unwrap(), root.join("etc"));
        assert_eq!(
            resolve_beneath(&root, "etc/inside").unwrap(),
            root.join("etc/ssl")
        );
        assert_eq!(
            resolve_beneath(&root, "./etc/file").unwrap(),
            root.join("etc/file")
        );
        for bad in ["abs", "up", "up/etc", "../..", "/etc"] {
            let e = resolve_beneath(&root, bad).unwrap_err();
            assert!(e.contains("leaves the image"), "{bad}: {e}");
        }
        assert_eq!(
            resolve_beneath(&root, "nope").unwrap_err(),
            "does not exist"
        );
    }
}
