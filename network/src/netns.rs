//! Pod network namespaces, pinned by a bind mount at `<state>/netns/<pod id>`
//! so that they exist before the pause process (CNI runs first) and outlive it
//! until the pod is removed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Creates a new network namespace and pins it at `path`.
pub fn create(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(path)?;
    let target = cstr(path)?;
    // A thread of its own enters the new namespace, so no other thread of berthd
    // (tokio's workers) ever runs in it; the thread ends, the mount keeps it.
    let pinned = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: unshare affects only this thread; the mount source is the
        // thread's own namespace file and the target a file we created.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let src = CString::new(format!(
                "/proc/self/task/{}/ns/net",
                libc::syscall(libc::SYS_gettid)
            ))
            .map_err(std::io::Error::other)?;
            if libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?;
    if let Err(e) = pinned {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Unpins and removes; a namespace already gone is not an error.
pub fn remove(path: &Path) -> std::io::Result<()> {
    if let Ok(target) = cstr(path) {
        // SAFETY: unmounting a path we own; EINVAL (not mounted) is fine.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` is a pinned namespace (an nsfs mount), not a plain file.
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(p) = cstr(path) else { return false };
    // SAFETY: statfs into a zeroed struct.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(p.as_ptr(), &mut st) == 0 && st.f_type as i64 == NSFS_MAGIC
    }
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}
