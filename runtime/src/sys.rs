//! Thin, checked wrappers over the syscalls the runtime makes. Logic above this
//! module deals in `Result`s with the operation named, never in raw errno.

use crate::error::{Error, Result};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn cstring(p: impl AsRef<std::ffi::OsStr>) -> CString {
    // Paths and strings from JSON cannot hold NUL unless hostile; treat as empty.
    CString::new(p.as_ref().as_bytes()).unwrap_or_default()
}

/// Turns a -1 return into the last OS error.
pub fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub fn check_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    check(ret as libc::c_long).map(|r| r as libc::c_int)
}

/// mount(2), naming the target in the error.
pub fn mount(
    source: Option<&CStr>,
    target: &Path,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<()> {
    let t = cstring(target);
    mount_c(source, &t, fstype, flags, data).map_err(|e| {
        Error::sys(
            format!(
                "mount {} on {} (type {}, flags {:#x})",
                source.map(|s| s.to_string_lossy()).unwrap_or_default(),
                target.display(),
                fstype.map(|s| s.to_string_lossy()).unwrap_or_default(),
                flags
            ),
            e,
        )
    })
}

pub fn mount_c(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: all pointers are NUL-terminated C strings or null, as mount(2) takes.
    let ret = unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags,
            p(data) as *const libc::c_void,
        )
    };
    check_int(ret).map(drop)
}

pub fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cstring(target);
    // SAFETY: t is a valid C string.
    check_int(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Opens `path` as if `root` were `/`: `..` and symlinks (absolute ones too) cannot
/// leave `root`, and magic links are refused. This is what keeps a mount
/// destination, a cwd or a masked path inside the container's rootfs.
pub fn open_in_root(
    root: RawFd,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let p = cstring(path);
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & libc::O_CREAT != 0 {
            mode as u64
        } else {
            0
        },
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd, C string and an open_how of the right size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = check(fd)?;
    // SAFETY: openat2 returned a fresh fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let p = cstring(path);
    // SAFETY: valid C string; the fd returned is owned by the caller.
    let fd = check_int(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o644) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The path through which the kernel reaches the file behind `fd`; mounting onto it
/// mounts onto that exact file, whatever its name resolves to now.
pub fn fd_path(fd: &impl AsRawFd) -> CString {
    cstring(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Creates every missing directory of `path` below `root` (resolved inside it) and
/// returns an O_PATH fd of the last one. A component that is a symlink to a missing
/// directory gets its target created, inside `root`, as mkdir -p would.
pub fn mkdir_all_in_root(root: RawFd, path: &Path, mode: u32) -> Result<OwnedFd> {
    mkdir_all_depth(root, path, mode, 0)
}

fn mkdir_all_depth(root: RawFd, path: &Path, mode: u32, depth: u32) -> Result<OwnedFd> {
    // As the kernel's own limit on nested symlinks.
    if depth > 40 {
        return Err(Error::path(
            "creating directory",
            path,
            io::Error::from_raw_os_error(libc::ELOOP),
        ));
    }
    let rel = path.strip_prefix("/").unwrap_or(path);
    let open_dir = |p: &Path| open_in_root(root, p, libc::O_PATH | libc::O_DIRECTORY, 0);
    let mut cur = open_dir(Path::new("/")).map_err(|e| Error::path("opening rootfs", path, e))?;
    let mut walked = std::path::PathBuf::from("/");
    for comp in rel.components() {
        let parent = walked.clone();
        walked.push(comp);
        match open_dir(&walked) {
            Ok(fd) => cur = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = cstring(comp.as_os_str());
                // SAFETY: cur is an O_PATH dir fd; name is one component with no '/'.
                let r = unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), mode) };
                if r == -1 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(Error::path("creating directory", &walked, e));
                    }
                    // It exists but does not resolve: a dangling symlink. Create its
                    // target below root, then go on through the link.
                    let target = read_link_at(&cur, &name)
                        .map_err(|e| Error::path("reading link", &walked, e))?;
                    let target = if target.is_absolute() {
                        target
                    } else {
                        parent.join(target)
                    };
                    mkdir_all_depth(root, &target, mode, depth + 1)?;
                }
                cur = open_dir(&walked)
                    .map_err(|e| Error::path("opening directory in rootfs", &walked, e))?;
            }
            Err(e) => return Err(Error::path("opening directory in rootfs", &walked, e)),
        }
    }
    Ok(cur)
}

fn read_link_at(dir: &OwnedFd, name: &CStr) -> io::Result<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: dir is an O_PATH dir fd, name a single component, buf a valid buffer.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(std::ffi::OsString::from_vec(buf).into())
}

/// Makes sure `path` exists below `root` as a directory or, when `file` is set, as a
/// file (for bind mounts of files), and returns an O_PATH fd of it.
pub fn ensure_in_root(root: RawFd, path: &Path, file: bool) -> Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, path, libc::O_PATH, 0) {
        return Ok(fd);
    }
    if !file {
        return mkdir_all_in_root(root, path, 0o755);
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = mkdir_all_in_root(root, parent, 0o755)?;
    let name = path.file_name().ok_or_else(|| {
        Error::config(
            "mounts.destination",
            format!("{} has no file name", path.display()),
        )
    })?;
    let n = cstring(name);
    // O_PATH dir fds cannot be used with openat(O_CREAT); reopen the dir for real.
    let real = open_in_root(root, parent, libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .map_err(|e| Error::path("opening directory in rootfs", parent, e))?;
    drop(dir);
    // SAFETY: valid dirfd and single-component name; O_NOFOLLOW refuses a symlink.
    let fd = unsafe {
        libc::openat(
            real.as_raw_fd(),
            n.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) && e.raw_os_error() != Some(libc::ELOOP) {
            return Err(Error::path("creating mount target", path, e));
        }
    } else {
        // SAFETY: fd is a fresh file descriptor we close right away.
        unsafe { libc::close(fd) };
    }
    open_in_root(root, path, libc::O_PATH, 0)
        .map_err(|e| Error::path("opening mount target", path, e))
}

/// The start time of a process in clock ticks since boot (field 22 of
/// /proc/PID/stat). With the pid it identifies a process across PID reuse.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces or ')': fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Writes `data` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::path("writing", &tmp, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::path("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::path("renaming", path, e))
}

/// A connected pair of SOCK_SEQPACKET sockets: message boundaries are kept.
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    check_int(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })
    .map_err(|e| Error::sys("socketpair", e))?;
    // SAFETY: socketpair returned two fresh fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn send(fd: &impl AsRawFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: msg is a valid buffer of msg.len() bytes.
    check(unsafe {
        libc::send(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            libc::MSG_NOSIGNAL,
        ) as libc::c_long
    })
    .map(drop)
}

/// Receives one message; an empty vector means the peer closed.
pub fn recv(fd: &impl AsRawFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: buf is a valid writable buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf.truncate(n as usize);
        return Ok(buf);
    }
}

pub fn waitpid(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(status);
    }
}

/// A wait status as a shell exit code: the code, or 128 + the signal.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A fork-like clone (the child continues on a copy of this stack) with `flags`
/// (CLONE_NEW*, CLONE_PARENT). With `cgroup`, an fd of a cgroup2 directory, the
/// child is born in that cgroup. Returns (pid, whether it was born in `cgroup`); 0 in the child.
///
/// # Safety
/// The caller must be single-threaded: the child runs on a copy of this process.
pub unsafe fn fork_into(flags: libc::c_int, cgroup: Option<&OwnedFd>) -> io::Result<(i32, bool)> {
    if let Some(cg) = cgroup {
        let args = CloneArgs {
            flags: flags as u64 | CLONE_INTO_CGROUP,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            // A child of our parent (CLONE_PARENT) signals it as we would:
            // clone3 takes no exit signal of its own then.
            exit_signal: if flags & libc::CLONE_PARENT != 0 {
                0
            } else {
                libc::SIGCHLD as u64
            },
            stack: 0,
            stack_size: 0,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: cg.as_raw_fd() as u64,
        };
        // SAFETY: clone3 with a sized clone_args and no stack: fork semantics.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if r >= 0 {
            return Ok((r as i32, true));
        }
        // Older kernels: fall back to clone and a cgroup.procs write by the caller.
    }
    // SAFETY: clone with no new stack behaves like fork.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    check(r).map(|pid| (pid as i32, false))
}

/// Sends `data` with one fd attached (SCM_RIGHTS).
pub fn send_with_fd(sock: &impl AsRawFd, data: &[u8], fd: RawFd) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    // u64s: the control buffer must be aligned for cmsghdr.
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is valid; it is filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg and its control buffer are valid and sized for one fd.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, fd);
        loop {
            let n = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            check(n as libc::c_long)?;
            if (n as usize) < data.len() {
                // The fd went with the first bytes; the rest without.
                let rest = &data[n as usize..];
                let mut off = 0;
                while off < rest.len() {
                    let m = libc::send(
                        sock.as_raw_fd(),
                        rest[off..].as_ptr().cast(),
                        rest.len() - off,
                        libc::MSG_NOSIGNAL,
                    );
                    off += check(m as libc::c_long)? as usize;
                }
            }
            return Ok(());
        }
    }
}

/// Receives one message and the fd sent with it, if any.
pub fn recv_with_fd(sock: &impl AsRawFd) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 65536];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    loop {
        // SAFETY: an all-zero msghdr is valid; it is filled in below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg points at live buffers sized above.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: the control buffer was filled by recvmsg.
        let fd = unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (!c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS).then(|| {
                OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32))
            })
        };
        buf.truncate(n as usize);
        return Ok((buf, fd));
    }
}
