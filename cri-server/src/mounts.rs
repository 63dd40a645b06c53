//! Mounts berthd makes on the host for its objects: a pod's /dev/shm, shared
//! binds under propagating volumes, and their removal. (Image volumes are
//! mounted by the image store: `container::image_volume`.)

use std::path::Path;

pub fn mount_shm(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    if is_mountpoint(path) {
        return Ok(());
    }
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: mounting a tmpfs on a directory berthd owns.
    let rc = unsafe {
        libc::mount(
            c"shm".as_ptr(),
            p.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"mode=1777,size=65536k".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Makes `src` sit on a shared mount: nothing to do when the mount holding it is
/// shared already; else `src` is bound onto itself and made shared, and returned
/// so that it can be unmounted later.
pub fn ensure_shared(src: &Path) -> std::io::Result<Option<String>> {
    let src = std::fs::canonicalize(src)?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let holder = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let point = Path::new(*f.get(4)?);
            src.starts_with(point)
                .then(|| (point.as_os_str().len(), l.contains(" shared:")))
        })
        .max_by_key(|(len, _)| *len);
    if holder.is_some_and(|(_, shared)| shared) {
        return Ok(None);
    }
    let c = std::ffi::CString::new(src.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: a bind of a host path onto itself, then a propagation change of it.
    unsafe {
        if libc::mount(
            c.as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) != 0
            || libc::mount(
                std::ptr::null(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(Some(src.to_string_lossy().to_string()))
}

/// Whether `path` is a mount point (mountinfo's view: a bind on the same
/// filesystem has the same device, so stat cannot tell).
pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let p = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

pub fn unmount_one(path: &Path) {
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: detaching one mount berthd made.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Unmounts everything mounted under `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in points {
        if let Ok(c) = std::ffi::CString::new(m) {
            // SAFETY: unmounting a mount point under berthd's own directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
