//! `exec`: runs another process in a running container, in all its namespaces and
//! its cgroups, with the same finishing steps as the container's init.

use crate::error::{Error, Result};
use crate::init::{self, Finish};
use crate::namespaces;
use crate::state::{Root, Status};
use crate::sys;
use oci_spec::runtime::{LinuxNamespaceType, Process};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

pub struct ExecOpts<'a> {
    pub id: &'a str,
    /// The container's bundle, loaded once by the caller.
    pub bundle: &'a crate::spec::Bundle,
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
    /// `--cgroup`: sub-cgroups of the container's to run in.
    pub sub_cgroups: &'a [String],
}

fn ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Runs the process; returns the exit code to leave with (0 when detached).
pub fn exec(root: &Root, opts: ExecOpts) -> Result<i32> {
    let rec = root.load(opts.id)?;
    let status = rec.status(root);
    let allowed = status == Status::Running || (status == Status::Paused && opts.ignore_paused);
    if !allowed {
        return Err(Error::BadState {
            id: opts.id.to_string(),
            status: status.as_str(),
            op: "exec in it (it is not running)",
        });
    }
    crate::spec::validate_process(&opts.process)?;
    let cgroup = rec.cgroup.with_sub_cgroups(opts.sub_cgroups)?;
    let bundle = opts.bundle;
    let linux = bundle.spec.linux().as_ref().expect("validated");
    let types: Vec<LinuxNamespaceType> = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|n| n.typ())
        .collect();
    let mut ns_fds = Vec::new();
    for t in namespaces::JOIN_ORDER
        .into_iter()
        .filter(|t| types.contains(t))
    {
        let path = format!("/proc/{}/ns/{}", rec.pid, ns_file(t));
        ns_fds.push((t, namespaces::open_ns(t, Path::new(&path))?));
    }
    if opts.process.terminal() == Some(true) && opts.console_socket.is_none() && opts.detach {
        return Err(Error::config(
            "process.terminal",
            "a detached exec with a terminal needs --console-socket",
        ));
    }
    let (console, proxy_end) = match (opts.process.terminal() == Some(true), opts.console_socket) {
        (true, Some(p)) => (
            Some(OwnedFd::from(
                std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| Error::path("connecting to console socket", p, e))?,
            )),
            None,
        ),
        (true, None) => {
            let (ours, theirs) = crate::tty::console_pair()?;
            (Some(theirs), Some(ours))
        }
        _ => (None, None),
    };
    if let Some((_, fd)) = ns_fds.iter().find(|(t, _)| *t == LinuxNamespaceType::Pid) {
        namespaces::setns(fd, LinuxNamespaceType::Pid)?;
    }
    let in_userns = types.contains(&LinuxNamespaceType::User);
    // As at create: the network namespace may belong to the host's user
    // namespace, which the process cannot reach once inside the container's.
    if in_userns
        && let Some(i) = ns_fds
            .iter()
            .position(|(t, _)| *t == LinuxNamespaceType::Network)
    {
        let (t, fd) = ns_fds.remove(i);
        namespaces::setns(&fd, t)?;
    }
    // A container without a mount namespace of its own shares the runtime's:
    // its root is the directory its init chrooted to.
    let chroot_to = if types.contains(&LinuxNamespaceType::Mount) {
        None
    } else {
        let p = format!("/proc/{}/root", rec.pid);
        Some(
            sys::open(Path::new(&p), libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| Error::path("opening the container's root", &p, e))?,
        )
    };
    crate::process::initial_cpu_affinity(&opts.process)?;
    let (parent_sock, child_sock) = sys::seqpacket_pair()?;
    let unified = cgroup
        .unified()
        .and_then(|p| sys::open(p, libc::O_PATH | libc::O_DIRECTORY).ok());
    // SAFETY: this process is single-threaded; the child only runs `child` below
    // and execs or exits.
    let (pid, born_in_unified) = unsafe { sys::fork_into(0, unified.as_ref()) }
        .map_err(|e| Error::sys("clone of exec process", e))?;
    if pid == 0 {
        drop(parent_sock);
        // linux.personality holds for every process of the container (as runc's exec).
        if let Err(e) = crate::process::set_personality(linux.personality().as_ref()) {
            let _ = sys::send(&child_sock, format!("E{e}").as_bytes());
            // SAFETY: leave without running this process's exit handlers.
            unsafe { libc::_exit(127) };
        }
        let finish = Finish {
            process: &opts.process,
            notify: linux
                .seccomp()
                .as_ref()
                .filter(|sc| crate::seccomp::uses_notify(sc))
                .map(|_| &child_sock),
            memory_policy: linux.memory_policy().as_ref(),
            seccomp: linux.seccomp().as_ref(),
            in_userns,
            preserve_fds: opts.preserve_fds,
        };
        let err = match child(
            &child_sock,
            &cgroup,
            &ns_fds,
            chroot_to.as_ref(),
            console.as_ref(),
            finish,
        ) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = sys::send(&child_sock, format!("E{err}").as_bytes());
        // SAFETY: leave without running this process's exit handlers.
        unsafe { libc::_exit(127) };
    }
    drop(child_sock);
    drop(console);
    let fail = |e: Error| {
        // SAFETY: killing and reaping our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = sys::waitpid(pid);
        e
    };
    if !born_in_unified && let Some(u) = cgroup.unified() {
        std::fs::write(u.join("cgroup.procs"), pid.to_string())
            .map_err(|e| fail(Error::cgroup(u, format!("adding pid {pid}: {e}"))))?;
    }
    if let Some(g) = &rec.rdt {
        g.add(pid).map_err(fail)?;
    }
    sys::send(&parent_sock, b"G").map_err(|e| fail(Error::sys("starting exec process", e)))?;
    // The socket is close-on-exec: end of file means the exec succeeded.
    loop {
        let (msg, fd) = sys::recv_with_fd(&parent_sock)
            .map_err(|e| fail(Error::sys("waiting for exec process", e)))?;
        match msg.first() {
            Some(b'E') => {
                let _ = sys::waitpid(pid);
                return Err(Error::Child(
                    String::from_utf8_lossy(&msg[1..]).into_owned(),
                ));
            }
            Some(b'S') => {
                let fd = fd.ok_or_else(|| fail(Error::Init("no seccomp notify fd came".into())))?;
                // The container's state (its init's pid); `pid` beside it is ours.
                let state = serde_json::to_value(rec.output(Status::Running)).unwrap_or_default();
                let sc = linux.seccomp().as_ref().expect("a filter notified");
                crate::seccomp::send_to_agent(sc, bundle.spec.version(), pid, state, &fd)
                    .map_err(fail)?;
                sys::send(&parent_sock, b"s")
                    .map_err(|e| fail(Error::sys("resuming exec process", e)))?;
            }
            _ => break,
        }
    }
    if let Some(f) = opts.pid_file {
        sys::write_atomic(f, pid.to_string().as_bytes())?;
    }
    if opts.detach {
        return Ok(0);
    }
    crate::container::forward_signals_to(pid);
    let status = match proxy_end {
        Some(sock) => crate::tty::proxy(crate::tty::recv_fd(&sock)?, pid)?,
        None => sys::waitpid(pid).map_err(|e| Error::sys("waiting for exec process", e))?,
    };
    Ok(sys::exit_code(status))
}

fn child(
    sync: &OwnedFd,
    cgroup: &crate::cgroups::Cgroup,
    ns_fds: &[(LinuxNamespaceType, OwnedFd)],
    chroot_to: Option<&OwnedFd>,
    console: Option<&OwnedFd>,
    finish: Finish,
) -> Result<std::convert::Infallible> {
    // SAFETY: plain prctl: die with the runtime while being set up.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // Still in the host's namespaces: join the container's v1 cgroups ourselves.
    cgroup.join_self_v1()?;
    let go = sys::recv(sync).map_err(|e| Error::sys("reading from runtime", e))?;
    if go.first() != Some(&b'G') {
        // SAFETY: the runtime went away; nothing to report to.
        unsafe { libc::_exit(1) };
    }
    for (t, fd) in ns_fds {
        if *t != LinuxNamespaceType::Pid {
            namespaces::setns(fd, *t)?;
        }
    }
    if let Some(root) = chroot_to {
        // SAFETY: root is an open directory fd; "." and "/" are valid paths.
        unsafe {
            sys::check_int(libc::fchdir(root.as_raw_fd()))
                .map_err(|e| Error::sys("chdir to the container's root", e))?;
            sys::check_int(libc::chroot(c".".as_ptr())).map_err(|e| Error::sys("chroot", e))?;
            sys::check_int(libc::chdir(c"/".as_ptr())).map_err(|e| Error::sys("chdir /", e))?;
        }
    }
    let process = finish.process;
    match console {
        Some(sock) => init::setup_terminal(
            sock,
            process
                .console_size()
                .as_ref()
                .map(|b| (b.height(), b.width())),
            false,
        )?,
        None => {
            for fd in 0..3 {
                // SAFETY: fchown of stdio; failure is harmless.
                unsafe { libc::fchown(fd, process.user().uid(), process.user().gid()) };
            }
        }
    }
    let ready = finish.prepare()?;
    // SAFETY: plain prctl; the exec'd process must outlive a detached exec.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    ready.exec()
}
