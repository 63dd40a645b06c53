//! docker's and podman's exit codes for a command that cannot run: 127 when it
//! is not found, 126 when it is there but cannot be executed. The command is
//! looked up in the mounted rootfs before the container starts (as runc looks it
//! up at create), every path resolved inside the rootfs (`RESOLVE_IN_ROOT`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a candidate path is.
enum Probe {
    Runs,
    Missing,
    /// There, but not an executable file: why.
    Refused(&'static str),
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_IN_ROOT: u64 = 0x10;

fn probe(root: &OwnedFd, path: &Path) -> Probe {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let Ok(c) = CString::new(rel.as_os_str().as_bytes()) else {
        return Probe::Missing;
    };
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT,
    };
    // SAFETY: openat2 with a valid dirfd, a C string and a sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => Probe::Missing,
            // A kernel without openat2, or another failure: let the runtime judge.
            _ => Probe::Runs,
        };
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: zeroed is a valid stat; fstat of an O_PATH fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Probe::Runs;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG if st.st_mode & 0o111 != 0 => Probe::Runs,
        libc::S_IFREG => Probe::Refused("it has no execute permission"),
        libc::S_IFDIR => Probe::Refused("it is a directory"),
        _ => Probe::Refused("it is not a regular file"),
    }
}

/// Checks that the OCI `process` can start its command in `rootfs`: the
/// message and exit code (126, 127) when it cannot.
pub fn command_runs(
    rootfs: &Path,
    args: &[String],
    env: &[String],
    cwd: &str,
) -> Result<(), (String, i32)> {
    let Some(prog) = args.first().map(String::as_str) else {
        return Ok(());
    };
    let Ok(root) = std::fs::File::open(rootfs).map(OwnedFd::from) else {
        return Ok(());
    };
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let cwd = PathBuf::from(if cwd.is_empty() { "/" } else { cwd });
    let candidates: Vec<PathBuf> = if prog.contains('/') {
        vec![cwd.join(prog)]
    } else {
        path_var
            .split(':')
            .map(|d| {
                if d.is_empty() {
                    cwd.clone()
                } else {
                    cwd.join(d)
                }
                .join(prog)
            })
            .collect()
    };
    let mut refused = None;
    for c in &candidates {
        match probe(&root, c) {
            Probe::Runs => return Ok(()),
            Probe::Refused(why) => {
                refused.get_or_insert((c.clone(), why));
            }
            Probe::Missing => {}
        }
    }
    Err(match refused {
        Some((path, why)) => (
            format!(
                "cannot execute {prog:?} ({}): permission denied: {why}",
                path.display()
            ),
            126,
        ),
        None if prog.contains('/') => (
            format!("cannot execute {prog:?}: no such file or directory in the image"),
            127,
        ),
        None => (
            format!("executable file {prog:?} not found in $PATH ({path_var}) in the image"),
            127,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn not_found_is_127_not_executable_is_126_and_symlinks_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        std::fs::write(r.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(r.join("usr/bin/tool"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(r.join("usr/bin/data"), "").unwrap();
        // An absolute symlink resolves inside the rootfs, not on the host.
        std::os::unix::fs::symlink("/usr/bin/tool", r.join("usr/bin/alias")).unwrap();
        std::os::unix::fs::symlink("/bin/sh", r.join("usr/bin/hostsh")).unwrap();
        let env = ["PATH=/bin".to_string()];
        let run = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            command_runs(r, &args, &env, "/")
        };
        assert!(run(&["tool"]).is_ok());
        assert!(run(&["/bin/alias"]).is_ok());
        assert_eq!(run(&["nosuchcmd"]).unwrap_err().1, 127);
        assert_eq!(run(&["hostsh"]).unwrap_err().1, 127);
        assert_eq!(run(&["./nope"]).unwrap_err().1, 127);
        assert_eq!(run(&["data"]).unwrap_err().1, 126);
        assert_eq!(run(&["/usr"]).unwrap_err().1, 126);
    }
}
