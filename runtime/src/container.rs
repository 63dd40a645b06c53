//! The lifecycle commands on the runtime side: create, start, run, kill, delete,
//! pause and resume. `create` clones the init process into its namespaces and
//! leaves it parked on the exec fifo; `start` releases it.

use crate::cgroups::{self, Cgroup};
use crate::error::{Error, Result};
use crate::guard::{Guard, Undo};
use crate::init::{self, Init};
use crate::namespaces::{self, Plan};
use crate::spec::{self, Bundle};
use crate::state::{self, EXEC_FIFO, Record, Root, Status};
use crate::sys;
use crate::timing;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespaceType, LinuxResources};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct CreateOpts<'a> {
    pub id: &'a str,
    /// The loaded bundle (`spec::load_bundle`).
    pub bundle: &'a Bundle,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
}

/// Whether the runtime must run from a sealed memfd copy (CVE-2019-5736) to
/// create this container: unless the container gets a new pid namespace and runs
/// no startContainer hook, a process of the container (or of another container
/// sharing its pid namespace) could see the init while it still runs the
/// runtime's image and reach the host binary through /proc/PID/exe. In a fresh
/// pid namespace nothing else exists until the init execs the container's program.
pub fn needs_sealed_runtime(spec: &oci_spec::runtime::Spec) -> bool {
    let new_pid = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
        });
    let start_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .is_some_and(|v| !v.is_empty());
    !new_pid || start_hooks
}

/// Undoes a half-made create: the init process, the cgroups, the mounts made in
/// the runtime's namespace, the state dir. Then, whatever the outcome, tells the
/// guard that `create` ended by itself.
struct Rollback<'a> {
    root: &'a Root,
    id: &'a str,
    pid: i32,
    cgroup: Option<Cgroup>,
    host_rootfs: Option<PathBuf>,
    rdt: Option<crate::rdt::RdtGroup>,
    guard: Option<Guard>,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.armed {
            if self.pid > 0 {
                // SAFETY: signalling and reaping our own child.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                let _ = sys::waitpid(self.pid);
            }
            if let Some(cg) = &self.cgroup {
                cg.kill_all(Duration::from_secs(5));
                let _ = cg.destroy();
            }
            if let Some(r) = &self.host_rootfs {
                crate::rootfs::unmount_under(r);
            }
            if let Some(g) = &self.rdt {
                g.remove();
            }
            let _ = self.root.remove(self.id);
        }
        if let Some(g) = &mut self.guard {
            g.done();
        }
    }
}

/// Whether the container sets up its rootfs in the runtime's own mount namespace
/// (the config lists no mount namespace: it is inherited, as in runc).
pub fn uses_host_mount_ns(spec: &oci_spec::runtime::Spec) -> bool {
    !spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Mount))
}

/// Creates the container; returns its record. The init process is our child.
pub fn create(root: &Root, opts: &CreateOpts) -> Result<Record> {
    create_with_console(root, opts, None)
}

/// `create`, with the console socket end given directly (foreground `run`).
fn create_with_console(
    root: &Root,
    opts: &CreateOpts,
    console_end: Option<OwnedFd>,
) -> Result<Record> {
    spec::validate_id(opts.id)?;
    let mut t = std::time::Instant::now();
    let bundle = opts.bundle;
    let linux = bundle.spec.linux().as_ref().expect("validated");
    let process = bundle.spec.process().as_ref().expect("validated");
    if process.terminal() == Some(true) && opts.console_socket.is_none() && console_end.is_none() {
        return Err(Error::config(
            "process.terminal",
            "true, but no --console-socket was given to receive the terminal",
        ));
    }
    let ns_list = linux.namespaces().clone().unwrap_or_default();
    let plan = Plan::new(&ns_list);
    let mut ns_fds = plan
        .join
        .iter()
        .map(|(t, p)| namespaces::open_ns(*t, p).map(|fd| (*t, fd)))
        .collect::<Result<Vec<_>>>()?;
    // A network namespace joined by path usually belongs to the host's user
    // namespace (a pod's, pinned by the CRI): from inside a new or joined user
    // namespace the init would lack the right to enter it. This process enters it
    // before the clone and the init inherits it.
    if (plan.new_user || plan.joins(LinuxNamespaceType::User))
        && let Some(i) = ns_fds
            .iter()
            .position(|(t, _)| *t == LinuxNamespaceType::Network)
    {
        let (t, fd) = ns_fds.remove(i);
        namespaces::setns(&fd, t)?;
    }

    let cgroup = Cgroup::for_container(linux.cgroups_path().as_deref(), opts.id)?;
    let host_rootfs = uses_host_mount_ns(&bundle.spec).then(|| bundle.rootfs.clone());
    let dir = root.claim(opts.id)?;
    let mut rollback = Rollback {
        root,
        id: opts.id,
        pid: 0,
        cgroup: None,
        host_rootfs: host_rootfs.clone(),
        rdt: None,
        guard: None,
        armed: true,
    };
    // The group an intelRdt config would make here, for the guard.
    let rdt_dir = linux.intel_rdt().as_ref().and_then(|r| {
        let dir = crate::rdt::resctrl_mount()?.join(r.clos_id().as_deref().unwrap_or(opts.id));
        (!dir.exists()).then_some(dir)
    });
    // SAFETY: this process is single-threaded.
    rollback.guard = Some(unsafe {
        Guard::spawn(Undo {
            cgroup: cgroup.clone(),
            state_dir: dir.clone(),
            host_rootfs: host_rootfs.clone(),
            rdt_dir,
        })
    }?);

    let fifo_path = dir.join(EXEC_FIFO);
    let c = sys::cstring(&fifo_path);
    // SAFETY: valid C string. 0622: a non-root init can still open it for writing.
    sys::check_int(unsafe { libc::mkfifo(c.as_ptr(), 0o622) })
        .map_err(|e| Error::path("creating", &fifo_path, e))?;
    unsafe { libc::chmod(c.as_ptr(), 0o622) };
    let fifo =
        sys::open(&fifo_path, libc::O_PATH).map_err(|e| Error::path("opening", &fifo_path, e))?;

    timing::mark(&mut t, "state dir and fifo");
    cgroup.create()?;
    timing::mark(&mut t, "cgroup directories");
    rollback.cgroup = Some(cgroup.clone());
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(device_rules(
        &resources,
        linux.devices().as_deref().unwrap_or_default(),
    )));
    cgroup.apply(&resources)?;
    timing::mark(&mut t, "cgroup resources");
    let rdt = linux
        .intel_rdt()
        .as_ref()
        .map(|r| crate::rdt::setup(r, opts.id))
        .transpose()?;
    rollback.rdt = rdt.clone();

    let console = match console_end {
        Some(fd) => Some(fd),
        None => opts.console_socket.map(connect_console).transpose()?,
    };
    let (parent_sock, child_sock) = sys::seqpacket_pair()?;

    // A pid namespace joined by path applies to children: enter it before clone.
    if let Some((_, fd)) = ns_fds.iter().find(|(t, _)| *t == LinuxNamespaceType::Pid) {
        namespaces::setns(fd, LinuxNamespaceType::Pid)?;
    }
    // The init joins its cgroups itself (cheap) unless it is in a user namespace,
    // where it has no rights over the host's cgroup files.
    let self_join = !plan.new_user && !plan.joins(LinuxNamespaceType::User);
    let unified = cgroup
        .unified()
        .and_then(|p| sys::open(p, libc::O_PATH | libc::O_DIRECTORY).ok());
    // Joining a user namespace by path, the new namespaces must belong to it, not
    // to the host's: the init unshares them once it has joined, all but the pid
    // namespace, which only a clone can put the init in: a helper in the joined
    // user namespace makes it and clones the init there (`fork_into_new_pid_ns`).
    let (clone_flags, unshare_after_join) = if plan.joins(LinuxNamespaceType::User) {
        (0, plan.clone_flags & !libc::CLONE_NEWPID)
    } else {
        (plan.clone_flags, 0)
    };
    let user_for_pid_ns = ns_fds
        .iter()
        .find(|(t, _)| plan.new_pid && *t == LinuxNamespaceType::User)
        .map(|(_, fd)| fd);
    let born_in_user = user_for_pid_ns.is_some();
    // execCPUAffinity.initial: this process's, inherited by the init until it
    // joins its cgroups.
    crate::process::initial_cpu_affinity(process)?;
    // In a user namespace the init could not reach bind sources under host
    // directories closed to others: their mounts are copied here, in the host's
    // user namespace, and the init inherits the fds (`rootfs::BindSources`). A
    // mount namespace joined by path resolves the sources in it, as before.
    let bind_sources = if (plan.new_user || plan.joins(LinuxNamespaceType::User))
        && !plan.joins(LinuxNamespaceType::Mount)
    {
        crate::rootfs::BindSources::open(
            bundle.spec.mounts().as_deref().unwrap_or_default(),
            &bundle.dir,
        )?
    } else {
        crate::rootfs::BindSources::default()
    };
    let (pid, born_in_unified) = match user_for_pid_ns {
        // SAFETY: this process is single-threaded; the helper only clones the
        // init and exits, the init only runs `init::main`.
        Some(user) => {
            unsafe { namespaces::fork_into_new_pid_ns(user, clone_flags, unified.as_ref()) }?
        }
        // SAFETY: this process is single-threaded; the child only runs `init::main`.
        None => unsafe { sys::fork_into(clone_flags, unified.as_ref()) }
            .map_err(|e| Error::sys("clone of container init", e))?,
    };
    if pid == 0 {
        drop(parent_sock);
        if born_in_user {
            // Born in the joined user namespace: joining it again would fail.
            ns_fds.retain(|(t, _)| *t != LinuxNamespaceType::User);
        }
        // The guard must see end of file when `create` dies, not when the init does.
        if let Some(fd) = rollback.guard.as_ref().and_then(Guard::raw_fd) {
            // SAFETY: closing this process's copy of the pipe; never used again here.
            unsafe { libc::close(fd) };
        }
        init::main(Init {
            bundle,
            ns: &plan,
            ns_fds,
            unshare_after_join,
            cgroup: &cgroup,
            join_cgroup_self: self_join,
            fifo,
            console,
            no_pivot: opts.no_pivot,
            preserve_fds: opts.preserve_fds,
            sync: child_sock,
            bind_sources,
        });
    }
    drop(child_sock);
    // The init has its own copies of the detached mounts' fds.
    drop(bind_sources);
    drop(console);
    rollback.pid = pid;

    if let Some(g) = &rdt {
        g.add(pid)?;
    }
    if let Some(devs) = linux.net_devices() {
        crate::netdev::move_into(devs, pid)?;
    }
    if plan.new_user {
        write_id_maps(pid, bundle)?;
    }
    timing::mark(&mut t, "clone");
    if !self_join {
        cgroup.add_to(pid, born_in_unified)?;
    } else if !born_in_unified && cgroup.unified().is_some() {
        cgroup
            .hierarchies
            .iter()
            .filter(|h| h.v2)
            .try_for_each(|h| {
                std::fs::write(h.path.join("cgroup.procs"), pid.to_string())
                    .map_err(|e| Error::cgroup(&h.path, format!("adding pid {pid}: {e}")))
            })?;
    }
    timing::mark(&mut t, "cgroup attach");
    let pid_start = sys::process_start_time(pid).unwrap_or(0);
    let mut record = Record {
        id: opts.id.to_string(),
        pid,
        pid_start,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        cgroup: cgroup.clone(),
        hooks: bundle.spec.hooks().clone(),
        oci_version: bundle.spec.version().clone(),
        host_mounts: host_rootfs.is_some(),
        rdt,
    };
    let state_json = serde_json::to_vec(&record.output(Status::Creating)).unwrap_or_default();
    let mut go = b"G".to_vec();
    go.extend_from_slice(&state_json);
    sys::send(&parent_sock, &go).map_err(|e| Error::sys("starting container init", e))?;

    loop {
        let (msg, fd) = sys::recv_with_fd(&parent_sock)
            .map_err(|e| Error::sys("waiting for container init", e))?;
        match msg.first() {
            Some(b'S') => {
                let fd = fd.ok_or_else(|| Error::Init("no seccomp notify fd came".into()))?;
                let state: serde_json::Value =
                    serde_json::from_slice(&state_json).unwrap_or_default();
                let sc = linux.seccomp().as_ref().expect("a filter notified");
                crate::seccomp::send_to_agent(sc, bundle.spec.version(), pid, state, &fd)?;
                sys::send(&parent_sock, b"s")
                    .map_err(|e| Error::sys("resuming container init", e))?;
            }
            Some(b'H') => {
                let hooks = bundle.spec.hooks().as_ref();
                crate::hooks::run(
                    "prestart",
                    hooks.and_then(|h| h.prestart().as_ref()),
                    &state_json,
                    None,
                )?;
                crate::hooks::run(
                    "createRuntime",
                    hooks.and_then(|h| h.create_runtime().as_ref()),
                    &state_json,
                    None,
                )?;
                sys::send(&parent_sock, b"C")
                    .map_err(|e| Error::sys("resuming container init", e))?;
            }
            Some(b'R') => {
                timing::mark(&mut t, "init setup (namespaces, mounts, pivot_root)");
                break;
            }
            Some(b'E') => {
                return Err(Error::Child(
                    String::from_utf8_lossy(&msg[1..]).into_owned(),
                ));
            }
            _ => return Err(Error::Init("the init process exited during setup".into())),
        }
    }
    record.pid_start = sys::process_start_time(pid).unwrap_or(pid_start);
    root.save(&record)?;
    timing::mark(&mut t, "state written");
    // The init keeps its parent-death signal until it has this: see init.rs.
    sys::send(&parent_sock, b"A").map_err(|e| Error::sys("resuming container init", e))?;
    match sys::recv(&parent_sock) {
        Ok(m) if m.first() == Some(&b'K') => {}
        _ => return Err(Error::Init("the init process exited after setup".into())),
    }
    if let Some(f) = opts.pid_file {
        sys::write_atomic(&absolute(f), pid.to_string().as_bytes())?;
    }
    rollback.armed = false;
    Ok(record)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn connect_console(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::path("connecting to console socket", path, e))?;
    Ok(OwnedFd::from(s))
}

fn write_id_maps(pid: i32, bundle: &Bundle) -> Result<()> {
    let linux = bundle.spec.linux().as_ref().expect("validated");
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [
        ("uid_map", linux.uid_mappings()),
        ("gid_map", linux.gid_mappings()),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, fmt(maps))
            .map_err(|e| Error::config(format!("linux.{file}"), format!("writing {path}: {e}")))?;
    }
    Ok(())
}

/// The cgroup device rules: the config's, then the default devices and the
/// config's device nodes allowed (as runc does), so the container can use the
/// nodes it is given even behind a deny-all rule.
pub fn device_rules(
    res: &LinuxResources,
    devices: &[oci_spec::runtime::LinuxDevice],
) -> Vec<LinuxDeviceCgroup> {
    let mut rules = res.devices().clone().unwrap_or_default();
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    for (_, major, minor) in crate::rootfs::DEFAULT_DEVICES {
        rules.push(rule(
            LinuxDeviceType::C,
            Some(major as i64),
            Some(minor as i64),
            "rwm",
        ));
    }
    rules.push(rule(LinuxDeviceType::C, Some(136), None, "rwm")); // /dev/pts/*
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(2), "rwm")); // /dev/ptmx
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(1), "rwm")); // /dev/console
    for d in devices {
        let t = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            _ => LinuxDeviceType::C,
        };
        rules.push(rule(t, Some(d.major()), Some(d.minor()), "rwm"));
    }
    rules
}

/// Releases a created container's init to exec its process.
pub fn start(root: &Root, id: &str) -> Result<()> {
    let rec = root.load(id)?;
    let status = rec.status(root);
    if status != Status::Created {
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str(),
            op: "start (it is not created)",
        });
    }
    release(root, &rec)?;
    let state_json = serde_json::to_vec(&rec.output(Status::Running)).unwrap_or_default();
    // As runc: the first failing poststart hook stops the others, the container
    // is ended (so a `delete` after the failed `start` finds it stopped and
    // removes it) and `start` fails with the hook's error.
    let r = crate::hooks::run(
        "poststart",
        rec.hooks.as_ref().and_then(|h| h.poststart().as_ref()),
        &state_json,
        None,
    );
    if r.is_err() {
        let _ = kill(root, id, libc::SIGKILL, false);
    }
    r
}

fn release(root: &Root, rec: &Record) -> Result<()> {
    let fifo_path = root.container_dir(&rec.id).join(EXEC_FIFO);
    let fifo = sys::open(&fifo_path, libc::O_RDONLY | libc::O_NONBLOCK)
        .map_err(|e| Error::path("opening", &fifo_path, e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n > 0 && pfd.revents & libc::POLLIN != 0 {
            let mut b = [0u8; 1];
            // SAFETY: valid one-byte buffer.
            if unsafe { libc::read(fifo.as_raw_fd(), b.as_mut_ptr().cast(), 1) } == 1 {
                break;
            }
        }
        if !rec.init_alive() {
            return Err(Error::Init(format!(
                "container {:?} init exited before start",
                rec.id
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Init(format!(
                "container {:?} init did not take the start signal",
                rec.id
            )));
        }
    }
    let _ = std::fs::remove_file(&fifo_path);
    Ok(())
}

/// Parses `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(Error::Usage(format!("invalid signal {s:?}")))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::Usage(format!("invalid signal {s:?}")))
}

pub fn kill(root: &Root, id: &str, signal: i32, all: bool) -> Result<()> {
    let rec = root.load(id)?;
    let status = rec.status(root);
    if status == Status::Stopped && !all {
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str(),
            op: "signal it (it is not running)",
        });
    }
    let paths = rec.cgroup.paths();
    if all {
        for pid in cgroups::pids(&paths) {
            // SAFETY: plain kill.
            unsafe { libc::kill(pid, signal) };
        }
    } else {
        // SAFETY: plain kill of a pid checked alive with its start time.
        sys::check_int(unsafe { libc::kill(rec.pid, signal) })
            .map_err(|e| Error::sys(format!("signalling pid {}", rec.pid), e))?;
    }
    if status == Status::Paused && signal == libc::SIGKILL {
        // Frozen tasks die only once thawed.
        cgroups::set_frozen(&paths, rec.cgroup.v2, false)?;
    }
    if signal == libc::SIGKILL {
        // SIGKILL cannot be caught: wait (briefly) until it has done its work, so
        // a `delete` right after this `kill` finds the container stopped.
        wait_gone(&rec, Duration::from_secs(2));
    }
    Ok(())
}

pub fn delete(root: &Root, id: &str, force: bool) -> Result<()> {
    let rec = match root.load(id) {
        Ok(r) => r,
        // `delete --force` of what is already gone is not an error (as runc).
        Err(Error::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut status = rec.status(root);
    if !force && matches!(status, Status::Running) {
        // A short-lived process released by `start` a moment ago may be exiting
        // right now: give it a moment before calling it running.
        let deadline = Instant::now() + Duration::from_secs(1);
        while status == Status::Running && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            status = rec.status(root);
        }
    }
    match status {
        Status::Stopped | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(Error::BadState {
                id: id.to_string(),
                status: status.as_str(),
                op: "delete it without --force",
            });
        }
    }
    if status != Status::Stopped {
        let _ = kill(root, id, libc::SIGKILL, false);
        wait_gone(&rec, Duration::from_secs(10));
    }
    destroy(root, &rec)
}

fn wait_gone(rec: &Record, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while rec.init_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Kills what is left in the cgroups, removes them, the mounts made in the
/// runtime's namespace and the state, then runs every poststop hook. A failing
/// poststop hook does not stop the others (the spec's MUST); the failures are
/// reported once the container is gone.
fn destroy(root: &Root, rec: &Record) -> Result<()> {
    rec.cgroup.kill_all(Duration::from_secs(5));
    let removed = rec.cgroup.destroy();
    if rec.host_mounts {
        crate::rootfs::unmount_under(&rec.rootfs);
    }
    if let Some(g) = &rec.rdt {
        g.remove();
    }
    // Cgroups that could not be removed keep the state, so a later delete retries.
    removed?;
    root.remove(&rec.id)?;
    let state_json = serde_json::to_vec(&rec.output(Status::Stopped)).unwrap_or_default();
    crate::hooks::run_all(
        "poststop",
        rec.hooks.as_ref().and_then(|h| h.poststop().as_ref()),
        &state_json,
        None,
    )
}

pub fn pause(root: &Root, id: &str, frozen: bool) -> Result<()> {
    let rec = root.load(id)?;
    let status = rec.status(root);
    let ok = if frozen {
        status == Status::Running
    } else {
        status == Status::Paused
    };
    if !ok {
        let op = if frozen {
            "pause it (it is not running)"
        } else {
            "resume it (it is not paused)"
        };
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str(),
            op,
        });
    }
    cgroups::set_frozen(&rec.cgroup.paths(), rec.cgroup.v2, frozen)
}

static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Forwards the signals a person or a supervisor sends us to `pid`.
pub fn forward_signals_to(pid: i32) {
    FORWARD_TO.store(pid, std::sync::atomic::Ordering::Relaxed);
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: installing a handler that only calls kill.
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
}

/// `run`: create, start, and unless detached wait for the exit and delete.
/// Returns the exit code to leave with.
pub fn run(root: &Root, opts: &CreateOpts, detach: bool, keep: bool) -> Result<i32> {
    let bundle_terminal = opts
        .bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        == Some(true);
    // A terminal in the foreground without a console socket: proxy it ourselves.
    let proxy = bundle_terminal && opts.console_socket.is_none() && !detach;
    if bundle_terminal && opts.console_socket.is_none() && detach {
        return Err(Error::config(
            "process.terminal",
            "true, but a detached run needs --console-socket to receive the terminal",
        ));
    }
    let (ours, theirs) = if proxy {
        let (a, b) = crate::tty::console_pair()?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    let rec = create_with_console(root, opts, theirs)?;
    let master = ours.map(|s| crate::tty::recv_fd(&s)).transpose()?;
    if let Err(e) = start(root, opts.id) {
        let _ = delete(root, opts.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    forward_signals_to(rec.pid);
    let status = match master {
        Some(m) => crate::tty::proxy(m, rec.pid)?,
        None => sys::waitpid(rec.pid).map_err(|e| Error::sys("waiting for container", e))?,
    };
    if !keep {
        delete(root, opts.id, true)?;
    }
    Ok(sys::exit_code(status))
}
