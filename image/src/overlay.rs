//! Mounting overlayfs with any number of layers, and the copy fallback.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Mounts an overlay of `lowers` (top first) with `upper` and `work` on `target`.
/// Uses the new mount API, adding one lower layer per call (`lowerdir+`), so the
/// number of layers is not limited by the size of one mount option string; kernels
/// without it get the classic mount(2).
pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    match mount_fsconfig(lowers, Some((upper, work)), 0, target) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {
            mount_classic(lowers, Some((upper, work)), 0, target)
        }
        Err(e) => Err(e),
    }
}

/// Mounts `lowers` (top first) read-only, nosuid and nodev on `target`, with no
/// upper layer: nothing written through it can reach a layer. Overlayfs needs two
/// lower layers when it has no upper one; a single layer is bound instead.
pub fn mount_read_only(lowers: &[PathBuf], target: &Path) -> io::Result<()> {
    const MOUNT_ATTR_RDONLY: u32 = 0x1;
    const MOUNT_ATTR_NOSUID: u32 = 0x2;
    const MOUNT_ATTR_NODEV: u32 = 0x4;
    if let [only] = lowers {
        return bind_read_only(only, target);
    }
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    match mount_fsconfig(lowers, None, attrs, target) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {
            mount_classic(
                lowers,
                None,
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                target,
            )
        }
        Err(e) => Err(e),
    }
}

/// Binds `src` on `target`, then makes that mount read-only, nosuid and nodev
/// (a bind takes its flags only from a remount).
pub fn bind_read_only(src: &Path, target: &Path) -> io::Result<()> {
    let (s, t) = (c(src), c(target));
    // SAFETY: mount(2) with valid C strings: a bind, then a remount of that bind.
    check(unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    } as libc::c_long)?;
    let flags =
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: as above.
    let r = check(unsafe {
        libc::mount(
            std::ptr::null(),
            t.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    } as libc::c_long);
    if let Err(e) = r {
        // SAFETY: undoing the bind just made.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
        return Err(e);
    }
    Ok(())
}

fn mount_fsconfig(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    attrs: u32,
    target: &Path,
) -> io::Result<()> {
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: fsopen of a static filesystem name.
    let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), 1u32) })? as i32;
    let set = |key: &std::ffi::CStr, val: &CString| -> io::Result<()> {
        // SAFETY: fsconfig on our fs context with C strings.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs,
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                val.as_ptr(),
                0,
            )
        })
        .map(drop)
    };
    let result = (|| {
        for l in lowers {
            set(c"lowerdir+", &c(l))?;
        }
        if let Some((upper, work)) = upper {
            set(c"upperdir", &c(upper))?;
            set(c"workdir", &c(work))?;
        }
        // SAFETY: as above, creating the superblock.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs,
                FSCONFIG_CMD_CREATE,
                0usize,
                0usize,
                0,
            )
        })?;
        // SAFETY: fsmount of the configured context, then move it into place.
        let mnt = check(unsafe { libc::syscall(libc::SYS_fsmount, fs, 1u32, attrs) })? as i32;
        let t = c(target);
        let r = check(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt,
                c"".as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        });
        unsafe { libc::close(mnt) };
        r.map(drop)
    })();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fs) };
    result
}

fn mount_classic(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    flags: libc::c_ulong,
    target: &Path,
) -> io::Result<()> {
    let lower = lowers
        .iter()
        .map(|l| l.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut data = format!("lowerdir={lower}");
    if let Some((upper, work)) = upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            upper.display(),
            work.display()
        ));
    }
    let data = CString::new(data).unwrap_or_default();
    let t = c(target);
    // SAFETY: mount(2) with valid C strings.
    check(unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            t.as_ptr(),
            c"overlay".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    } as libc::c_long)
    .map(drop)
}

/// Copies `lowers` (top first) into `target`, bottom layer first, applying
/// overlay whiteouts (0:0 devices remove, opaque directories hide what is below).
pub fn copy_layers(lowers: &[PathBuf], target: &Path) -> io::Result<()> {
    for layer in lowers.iter().rev() {
        copy_dir(layer, target)?;
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> bool {
    let mut b = [0u8; 2];
    // SAFETY: lgetxattr into a valid buffer.
    let n = unsafe {
        libc::lgetxattr(
            c(dir).as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b.as_mut_ptr().cast(),
            2,
        )
    };
    n == 1 && b[0] == b'y'
}

fn copy_dir(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let (s, d) = (e.path(), dst.join(e.file_name()));
        let m = std::fs::symlink_metadata(&s)?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            let _ = std::fs::remove_dir_all(&d).or_else(|_| std::fs::remove_file(&d));
            continue;
        }
        if ft.is_dir() {
            if is_opaque(&s) || !d.is_dir() {
                let _ = std::fs::remove_dir_all(&d).or_else(|_| std::fs::remove_file(&d));
                std::fs::create_dir(&d)?;
            }
            copy_dir(&s, &d)?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            std::os::unix::fs::lchown(&d, Some(m.uid()), Some(m.gid()))?;
            continue;
        }
        let _ = std::fs::remove_dir_all(&d).or_else(|_| std::fs::remove_file(&d));
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
        } else if ft.is_file() {
            std::fs::copy(&s, &d)?;
        } else {
            // SAFETY: mknod with the source's own mode and device number.
            if unsafe { libc::mknod(c(&d).as_ptr(), m.mode(), m.rdev()) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        std::os::unix::fs::lchown(&d, Some(m.uid()), Some(m.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
    }
    Ok(())
}
