//! CVE-2019-5736: a container process must never reach the runtime's binary on the
//! host (through /proc/PID/exe) to overwrite it. Before entering any container the
//! runtime re-executes itself from a sealed memfd copy, as runc and crun do.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

fn is_sealed_copy() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: fcntl on an open fd.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals != -1 && seals & SEALS == SEALS
}

/// Re-executes the current command from a sealed memfd copy of the binary unless
/// already running from one. Returns only on failure, with the reason.
pub fn ensure_sealed() -> Result<(), String> {
    if is_sealed_copy() {
        return Ok(());
    }
    let src =
        std::fs::File::open("/proc/self/exe").map_err(|e| format!("opening own binary: {e}"))?;
    let size = src
        .metadata()
        .map_err(|e| format!("reading own binary: {e}"))?
        .len() as usize;
    // SAFETY: memfd_create with a static name; the fd returned is owned below.
    let fd = unsafe {
        libc::memfd_create(
            c"berth-runtime".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd == -1 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut copied = 0;
    while copied < size {
        // SAFETY: sendfile between two open fds, kernel-side copy.
        let n = unsafe {
            libc::sendfile(
                memfd.as_raw_fd(),
                src.as_raw_fd(),
                std::ptr::null_mut(),
                size - copied,
            )
        };
        if n <= 0 {
            return Err(format!(
                "copying own binary: {}",
                std::io::Error::last_os_error()
            ));
        }
        copied += n as usize;
    }
    // F_SEAL_WRITE fails with EBUSY while a page just written is still referenced
    // from another CPU's LRU batch (the kernel drains only the caller's CPU): a
    // moment later it is not. Seen under load on 2 CPUs; retried briefly.
    let mut tries = 0;
    // SAFETY: fcntl on an open memfd.
    while unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } == -1 {
        let e = std::io::Error::last_os_error();
        tries += 1;
        if e.raw_os_error() != Some(libc::EBUSY) || tries > 50 {
            return Err(format!("sealing memfd: {e}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let args: Vec<CString> = std::env::args_os().map(crate::sys::cstring).collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            crate::sys::cstring(kv)
        })
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: execveat of the memfd with NULL-terminated argv/envp of live C strings.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            memfd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(format!(
        "re-executing from memfd: {}",
        std::io::Error::last_os_error()
    ))
}
