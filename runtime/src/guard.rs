//! A `create` killed halfway (SIGKILL, OOM) runs no rollback of its own. Before it
//! makes anything, `create` starts a guard: a small detached process holding the
//! read end of a pipe whose write end only `create` holds. When `create` ends it
//! tells the guard so (`D`: done, committed or rolled back by itself); when the
//! pipe reaches end of file without that, `create` died, and the guard undoes what
//! it made: kills what is in the container's cgroups, removes them (and the
//! parents berth made), unmounts what was mounted in the runtime's own mount
//! namespace (a container without one) and removes the state directory.

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// What the guard undoes if `create` dies.
pub struct Undo {
    pub cgroup: Cgroup,
    pub state_dir: PathBuf,
    /// The rootfs, when the container has no mount namespace of its own: its
    /// mounts are in the runtime's namespace and must be unmounted.
    pub host_rootfs: Option<PathBuf>,
    /// An intelRdt group this create would make (removed if empty).
    pub rdt_dir: Option<PathBuf>,
}

impl Undo {
    pub fn run(&self) {
        self.cgroup.kill_all(Duration::from_secs(5));
        let _ = self.cgroup.destroy();
        if let Some(r) = &self.host_rootfs {
            crate::rootfs::unmount_under(r);
        }
        if let Some(d) = &self.rdt_dir {
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// `create`'s end of the pipe.
pub struct Guard {
    pipe: Option<OwnedFd>,
}

impl Guard {
    /// Starts the guard process.
    ///
    /// # Safety
    /// The caller must be single-threaded (the guard is a fork of it).
    pub unsafe fn spawn(undo: Undo) -> Result<Guard> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        sys::check_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })
            .map_err(|e| Error::sys("pipe for the create guard", e))?;
        // SAFETY: pipe2 returned two fresh fds.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: single-threaded (the caller's promise); the child only runs `watch`
        // or _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::sys(
                "fork of the create guard",
                std::io::Error::last_os_error(),
            ));
        }
        if pid == 0 {
            drop(write);
            // A second fork: the guard is nobody's child to reap but init's (or a
            // subreaper's), and the intermediate process is reaped right away.
            // SAFETY: as above.
            match unsafe { libc::fork() } {
                0 => watch(read, &undo),
                // SAFETY: leaving the intermediate process.
                _ => unsafe { libc::_exit(0) },
            }
        }
        drop(read);
        let _ = sys::waitpid(pid);
        Ok(Guard { pipe: Some(write) })
    }

    /// The raw fd, for a forked child to close (it must not keep the pipe open).
    pub fn raw_fd(&self) -> Option<i32> {
        self.pipe.as_ref().map(|p| p.as_raw_fd())
    }

    /// `create` is over, whatever its outcome was: the guard leaves without
    /// touching anything.
    pub fn done(&mut self) {
        if let Some(p) = self.pipe.take() {
            // SAFETY: one byte from a static buffer to an open pipe.
            unsafe { libc::write(p.as_raw_fd(), b"D".as_ptr().cast(), 1) };
        }
    }
}

fn watch(read: OwnedFd, undo: &Undo) -> ! {
    // Above stdio, whatever fds this process was started with.
    // SAFETY: F_DUPFD_CLOEXEC of an open fd returns a fresh one we own.
    let read = match unsafe { libc::fcntl(read.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) } {
        fd if fd >= 3 => unsafe { OwnedFd::from_raw_fd(fd) },
        _ => read,
    };
    // SAFETY: plain calls on this process's own fds: a session of its own (a kill
    // of create's process group does not reach it), stdio on /dev/null (the
    // caller's pipes must see end of file when create ends), no other fd kept.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        let keep = read.as_raw_fd() as libc::c_uint;
        libc::syscall(libc::SYS_close_range, 3, keep - 1, 0);
        libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0);
    }
    let mut b = [0u8; 1];
    let n = loop {
        // SAFETY: reading one byte into a valid buffer.
        let n = unsafe { libc::read(read.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    if n != 1 || b[0] != b'D' {
        undo.run();
    }
    // SAFETY: leaving without running exit handlers.
    unsafe { libc::_exit(0) }
}
