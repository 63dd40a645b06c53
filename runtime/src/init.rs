//! The container's init process, from clone to exec. It runs in the child the
//! runtime clones into the new namespaces, reports each step's failure to the parent
//! over a SOCK_SEQPACKET pair, then waits on the exec fifo until `start`.
//!
//! Messages, child to parent: `H` (namespaces and mounts ready: run the runtime
//! hooks), `S` with an fd (the seccomp notify fd, for the agent), `R` (ready,
//! waiting for start), `E<message>` (failed). Parent to child: `G<state json>`
//! (cgroup joined, id maps written: go on), `C` (hooks done), `s` (notify fd
//! handed to the seccomp agent).

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::namespaces::{self, Plan};
use crate::process::{self, CapPlan};
use crate::rootfs::{self, BindSources, RootfsPlan};
use crate::spec::Bundle;
use crate::sys::{self, cstring};
use oci_spec::runtime::LinuxNamespaceType;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

pub struct Init<'a> {
    pub bundle: &'a Bundle,
    pub ns: &'a Plan,
    pub ns_fds: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// CLONE_NEW* flags to unshare after joining a user namespace by path.
    pub unshare_after_join: libc::c_int,
    pub cgroup: &'a Cgroup,
    /// Join the v1 cgroups by writing to `tasks` ourselves (no user namespace).
    pub join_cgroup_self: bool,
    /// O_PATH fd of the exec fifo.
    pub fifo: OwnedFd,
    /// Connected `--console-socket`, when the process wants a terminal.
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    pub sync: OwnedFd,
    /// The bind mounts' sources, opened by `create` when the init is in a user
    /// namespace (`rootfs::BindSources`); empty otherwise.
    pub bind_sources: BindSources,
}

/// Runs the init sequence; never returns.
pub fn main(mut init: Init) -> ! {
    let err = match run(&mut init) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let msg = format!("E{err}");
    if sys::send(&init.sync, msg.as_bytes()).is_err() {
        eprintln!("berth-runtime: {err}");
    }
    // SAFETY: _exit is always safe; nothing of this process must run atexit handlers.
    unsafe { libc::_exit(1) }
}

fn expect(sync: &OwnedFd, tag: u8) -> Result<Vec<u8>> {
    let msg = sys::recv(sync).map_err(|e| Error::sys("reading from runtime", e))?;
    match msg.first() {
        Some(t) if *t == tag => Ok(msg[1..].to_vec()),
        // The parent went away or failed: nothing to report to.
        _ => unsafe { libc::_exit(1) },
    }
}

fn run(init: &mut Init) -> Result<std::convert::Infallible> {
    let spec = &init.bundle.spec;
    let process = spec.process().as_ref().expect("validated");
    let linux = spec.linux().as_ref().expect("validated");
    // SAFETY: plain prctl; the parent's death during setup must not leave us behind.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };

    if init.join_cgroup_self {
        // Before any namespace is joined: the host's cgroupfs is still in view.
        init.cgroup.join_self_v1()?;
    }
    let state_json = expect(&init.sync, b'G')?;

    for (t, fd) in &init.ns_fds {
        if *t != LinuxNamespaceType::Pid {
            namespaces::setns(fd, *t)?;
        }
    }
    if init.ns.new_user || init.ns.joins(LinuxNamespaceType::User) {
        // SAFETY: plain integer arguments; become root of the user namespace.
        unsafe {
            sys::check_int(libc::setresgid(0, 0, 0))
                .map_err(|e| Error::sys("setresgid in user namespace", e))?;
            sys::check_int(libc::setresuid(0, 0, 0))
                .map_err(|e| Error::sys("setresuid in user namespace", e))?;
            // The uid change made us non-dumpable: /proc/self files would belong to
            // the host's root, unmapped here, and timens_offsets could not be
            // written. The runtime's image is sealed; nothing leaks by this.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        }
    }
    if init.unshare_after_join != 0 {
        // SAFETY: plain flag argument; the namespaces now belong to the joined user ns.
        sys::check_int(unsafe { libc::unshare(init.unshare_after_join) })
            .map_err(|e| Error::sys("unshare of namespaces in the joined user namespace", e))?;
    }
    if init.ns.new_cgroup {
        // Unshared only now, after the parent moved us into the container's cgroup,
        // so that the namespace's root is that cgroup.
        // SAFETY: plain flag argument.
        sys::check_int(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) })
            .map_err(|e| Error::sys("unshare cgroup namespace", e))?;
    }
    if init.ns.new_time {
        // SAFETY: plain flag argument; we enter the new namespace at execve.
        sys::check_int(unsafe { libc::unshare(libc::CLONE_NEWTIME) })
            .map_err(|e| Error::sys("unshare time namespace", e))?;
        let mut offsets = String::new();
        for (clock, off) in linux.time_offsets().iter().flatten() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(Error::config(
                    "linux.timeOffsets",
                    format!("unknown clock {clock:?}: use monotonic or boottime"),
                ));
            }
            offsets.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        if !offsets.is_empty() {
            std::fs::write("/proc/self/timens_offsets", &offsets).map_err(|e| {
                Error::config("linux.timeOffsets", format!("{}: {e}", offsets.trim()))
            })?;
        }
    }
    if init.ns.new_uts {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            // SAFETY: valid buffer and length.
            sys::check_int(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) })
                .map_err(|e| Error::config("hostname", format!("{h}: {e}")))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            // SAFETY: valid buffer and length.
            sys::check_int(unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) })
                .map_err(|e| Error::config("domainname", format!("{d}: {e}")))?;
        }
    }
    // SAFETY: umask cannot fail; device and directory modes must be exactly as asked.
    unsafe { libc::umask(0) };

    let in_userns = init.ns.new_user || init.ns.joins(LinuxNamespaceType::User);
    let plan = RootfsPlan {
        rootfs: &init.bundle.rootfs,
        bundle: &init.bundle.dir,
        mounts: spec.mounts().as_deref().unwrap_or_default(),
        devices: linux.devices().as_deref().unwrap_or_default(),
        propagation: linux.rootfs_propagation().as_deref(),
        in_userns,
        cgroup: init.cgroup,
        cgroupns: init.ns.new_cgroup || init.ns.joins(LinuxNamespaceType::Cgroup),
        host_ns: crate::container::uses_host_mount_ns(spec),
    };
    rootfs::prepare(&plan, std::mem::take(&mut init.bind_sources))?;

    let hooks = spec.hooks().as_ref();
    if hooks.is_some_and(|h| {
        h.prestart().is_some() || h.create_runtime().is_some() || h.create_container().is_some()
    }) {
        sys::send(&init.sync, b"H").map_err(|e| Error::sys("reporting to runtime", e))?;
        expect(&init.sync, b'C')?;
        crate::hooks::run(
            "createContainer",
            hooks.and_then(|h| h.create_container().as_ref()),
            &state_json,
            Some(process.env().as_deref().unwrap_or_default()),
        )?;
    }

    rootfs::enter(
        &init.bundle.rootfs,
        init.no_pivot,
        crate::container::uses_host_mount_ns(spec),
    )?;

    for (k, v) in linux.sysctl().iter().flatten() {
        let path = Path::new("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&path, v)
            .map_err(|e| Error::config("linux.sysctl", format!("{k}={v}: {e}")))?;
    }
    if process.terminal() == Some(true) {
        let sock = init.console.as_ref().ok_or_else(|| {
            Error::config("process.terminal", "a terminal needs --console-socket")
        })?;
        setup_terminal(
            sock,
            process
                .console_size()
                .as_ref()
                .map(|b| (b.height(), b.width())),
            true,
        )?;
    } else {
        // Let a non-root process write to the stdio it was given.
        for fd in 0..3 {
            // SAFETY: fchown on fds 0-2; failure (e.g. a tty we do not own) is harmless.
            unsafe { libc::fchown(fd, process.user().uid(), process.user().gid()) };
        }
    }
    rootfs::mask_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
    rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default())?;
    let readonly = spec.root().as_ref().and_then(|r| r.readonly()) == Some(true);
    rootfs::finish_root(linux.rootfs_propagation().as_deref(), readonly)?;

    process::set_personality(linux.personality().as_ref())?;
    let ready = Finish {
        process,
        notify: linux
            .seccomp()
            .as_ref()
            .filter(|sc| crate::seccomp::uses_notify(sc))
            .map(|_| &init.sync),
        memory_policy: linux.memory_policy().as_ref(),
        seccomp: linux.seccomp().as_ref(),
        in_userns,
        preserve_fds: init.preserve_fds,
    }
    .prepare()?;
    sys::send(&init.sync, b"R").map_err(|e| Error::sys("reporting to runtime", e))?;
    // The runtime answers once the container's state is saved. Only then may the
    // init outlive `create` (a runtime killed before has nothing saved, and the
    // init dies with it); `create` waits for "K" before it exits, or a quick exit
    // of the runtime would kill the init before this prctl.
    expect(&init.sync, b'A')?;
    // SAFETY: plain prctl; from here the container outlives `create`.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    sys::send(&init.sync, b"K").map_err(|e| Error::sys("reporting to runtime", e))?;

    wait_for_start(&init.fifo)?;
    crate::hooks::run(
        "startContainer",
        hooks.and_then(|h| h.start_container().as_ref()),
        &state_json,
        Some(process.env().as_deref().unwrap_or_default()),
    )?;
    ready.exec()
}

/// The last steps before exec, shared by a container's init and by `exec`:
/// limits, cwd, the program lookup, then identity (user, capabilities, seccomp) and
/// fd hygiene.
pub struct Finish<'a> {
    pub process: &'a oci_spec::runtime::Process,
    /// The socket to the runtime, when the filter notifies a seccomp agent: the
    /// notify fd goes to the runtime (`S`), which passes it on and acks (`s`).
    pub notify: Option<&'a OwnedFd>,
    pub memory_policy: Option<&'a oci_spec::runtime::LinuxMemoryPolicy>,
    pub seccomp: Option<&'a oci_spec::runtime::LinuxSeccomp>,
    pub in_userns: bool,
    pub preserve_fds: i32,
}

/// A process ready to exec: only a late seccomp load (with no_new_privs) remains.
pub struct Ready {
    program: CString,
    args: Vec<CString>,
    env: Vec<CString>,
    late_filter: Option<libseccomp::ScmpFilterContext>,
}

impl Finish<'_> {
    pub fn prepare(self) -> Result<Ready> {
        let process = self.process;
        process::set_rlimits(process)?;
        if let Some(adj) = process.oom_score_adj() {
            process::set_oom_score_adj(adj)?;
        }
        process::set_io_priority(process)?;
        process::set_scheduler(process)?;
        // In the container's cgroups by now (a cpuset join resets the affinity).
        process::final_cpu_affinity(process)?;
        process::set_memory_policy(self.memory_policy)?;
        let cwd = process.cwd();
        std::env::set_current_dir(cwd)
            .map_err(|e| Error::config("process.cwd", format!("{}: {e}", cwd.display())))?;
        // A cwd reached through a leaked host fd would show as "(unreachable)".
        let here =
            std::env::current_dir().map_err(|e| Error::config("process.cwd", e.to_string()))?;
        if !here.starts_with("/") {
            return Err(Error::config(
                "process.cwd",
                format!("{} is outside the container", cwd.display()),
            ));
        }
        let program = cstring(process::find_program(process)?);
        let args: Vec<CString> = process
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(cstring)
            .collect();
        let env = process::environment(process);
        let caps = CapPlan::new(process)?;
        let nnp = process.no_new_privileges() == Some(true);
        let filter = self.seccomp.map(crate::seccomp::build).transpose()?;
        process::set_security_labels(process)?;

        caps.drop_bounding()?;
        let mut loaded = None;
        let mut late_filter = match (filter, nnp) {
            (Some(f), false) => {
                // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: now.
                crate::seccomp::load(&f)?;
                loaded = Some(f);
                None
            }
            (f, _) => f,
        };
        process::set_user(process, !self.in_userns || setgroups_allowed())?;
        caps.apply()?;
        // The uid change made us non-dumpable, which locks /proc/self/fd; the runtime
        // runs from a sealed memfd, so nothing of the host is exposed by undoing it.
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        if nnp {
            process::set_no_new_privs()?;
        }
        if let Some(sync) = self.notify {
            // A filter with SCMP_ACT_NOTIFY is loaded now, while the runtime is
            // there to hand its notify fd to the seccomp agent (as runc does).
            let ctx = match late_filter.take() {
                Some(f) => {
                    crate::seccomp::load(&f)?;
                    f
                }
                None => loaded
                    .take()
                    .ok_or_else(|| Error::config("linux.seccomp", "no filter to notify from"))?,
            };
            let fd = crate::seccomp::notify_fd(&ctx)?;
            let sent = sys::send_with_fd(sync, b"S", fd);
            // SAFETY: our copy of the notify fd; the runtime got its own.
            unsafe { libc::close(fd) };
            sent.map_err(|e| Error::sys("sending the seccomp notify fd to the runtime", e))?;
            let ack = sys::recv(sync).map_err(|e| Error::sys("reading from runtime", e))?;
            if ack.first() != Some(&b's') {
                // The runtime failed (and says why) or went away.
                // SAFETY: leaving without running exit handlers.
                unsafe { libc::_exit(1) };
            }
        }
        // No fd of the runtime may reach the container (CVE-2024-21626).
        close_range_cloexec(3 + self.preserve_fds);
        Ok(Ready {
            program,
            args,
            env,
            late_filter,
        })
    }
}

impl Ready {
    pub fn exec(self) -> Result<std::convert::Infallible> {
        if let Some(f) = &self.late_filter {
            crate::seccomp::load(f)?;
        }
        exec(&self.program, &self.args, &self.env)
    }
}

fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

fn close_range_cloexec(from: i32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: marks fds close-on-exec; no memory is touched.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Blocks until `start` opens the fifo for reading, then tells it we are going.
fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let path = sys::fd_path(fifo);
    // SAFETY: valid C string; O_WRONLY on a fifo blocks until a reader opens it.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    let fd = sys::check_int(fd).map_err(|e| Error::sys("opening exec fifo", e))?;
    // SAFETY: fd is open; one byte from a static buffer.
    unsafe {
        libc::write(fd, b"0".as_ptr().cast(), 1);
        libc::close(fd);
    }
    Ok(())
}

fn exec(program: &CString, args: &[CString], env: &[CString]) -> Result<std::convert::Infallible> {
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(Error::sys(
        format!("exec {}", program.to_string_lossy()),
        std::io::Error::last_os_error(),
    ))
}

/// Opens a pty in the container's devpts, sends the master over the console
/// socket and makes the slave the controlling terminal and stdio. The init
/// also gets it as /dev/console; an exec does not (as with runc).
pub fn setup_terminal(sock: &OwnedFd, size: Option<(u64, u64)>, console: bool) -> Result<()> {
    let ptmx = sys::open(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
        .map_err(|e| Error::path("opening", "/dev/ptmx", e))?;
    let m = ptmx.as_raw_fd();
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: ioctls on a valid pty master with valid out pointers.
    unsafe {
        sys::check_int(libc::ioctl(m, libc::TIOCSPTLCK, &mut unlock))
            .map_err(|e| Error::sys("unlocking pty", e))?;
        sys::check_int(libc::ioctl(m, libc::TIOCGPTN, &mut n))
            .map_err(|e| Error::sys("reading pty number", e))?;
    }
    let slave_path = format!("/dev/pts/{n}");
    let slave = sys::open(Path::new(&slave_path), libc::O_RDWR | libc::O_NOCTTY)
        .map_err(|e| Error::path("opening", &slave_path, e))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows as u16,
            ws_col: cols as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: valid fd and winsize.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    send_fd(sock, m, &slave_path)?;
    drop(ptmx);
    if console {
        bind_console(&slave_path)?;
    }
    // SAFETY: become a session leader and take the slave as controlling terminal.
    unsafe {
        sys::check_int(libc::setsid()).map_err(|e| Error::sys("setsid", e))?;
        sys::check_int(libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0))
            .map_err(|e| Error::sys("TIOCSCTTY", e))?;
        for fd in 0..3 {
            sys::check_int(libc::dup2(slave.as_raw_fd(), fd))
                .map_err(|e| Error::sys("dup2 of pty", e))?;
        }
    }
    Ok(())
}

/// /dev/console is the container's terminal, as runc and the OCI spec give it.
fn bind_console(slave_path: &str) -> Result<()> {
    let root = sys::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| Error::path("opening", "/", e))?;
    let Ok(target) = sys::ensure_in_root(root.as_raw_fd(), Path::new("/dev/console"), true) else {
        // A read-only /dev cannot take it; the terminal still works on stdio.
        return Ok(());
    };
    sys::mount_c(
        Some(&cstring(slave_path)),
        &sys::fd_path(&target),
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(|e| Error::sys(format!("bind-mounting {slave_path} on /dev/console"), e))
}

/// Sends an fd with SCM_RIGHTS, the pty name as the data (as runc does).
pub fn send_fd(sock: &OwnedFd, fd: i32, name: &str) -> Result<()> {
    sys::send_with_fd(sock, name.as_bytes(), fd)
        .map_err(|e| Error::sys("sending pty to console socket", e))
}
