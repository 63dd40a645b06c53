//! Building the container's filesystem view inside its new mount namespace:
//! propagation, the configured mounts (destinations resolved inside the rootfs),
//! device nodes, pivot_root, then masked and read-only paths.

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::mount_options::{self, MountOptions};
use crate::sys::{self, cstring, fd_path};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The devices every container gets (as runc): (name, major, minor).
pub const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

pub struct RootfsPlan<'a> {
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub mounts: &'a [Mount],
    pub devices: &'a [LinuxDevice],
    pub propagation: Option<&'a str>,
    pub in_userns: bool,
    pub cgroup: &'a Cgroup,
    pub cgroupns: bool,
    /// No mount namespace of its own: the mounts are made in the runtime's.
    pub host_ns: bool,
}

/// The sources of the bind mounts, opened by `create` before it clones an init
/// that will be in a user namespace (`open`), one entry per mount of the config.
///
/// Such an init looks paths up as the user namespace's root, which the host sees
/// as an unmapped user: a source under a directory only the host's root may
/// traverse (kubelet's volumes, under root-owned 0750 directories) would be out
/// of its reach. `create`, still in the host's user namespace, resolves each
/// source as a bind mount would (symlinks followed, relative to the bundle) and
/// makes a detached copy of the mount there with
/// `open_tree(OPEN_TREE_CLONE)`, recursive for rbind; the init inherits the fds
/// and attaches each copy at its destination with `move_mount` (a detached
/// mount may be attached by a process with CAP_SYS_ADMIN in the user namespace
/// owning the target mount namespace). A copy vanishes with its last fd: nothing
/// is left when the init fails or the fds are closed.
#[derive(Default)]
pub struct BindSources(Vec<Option<OwnedFd>>);

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

impl BindSources {
    /// Opens the source of each bind mount in `mounts`. A kernel without
    /// open_tree (before 5.2) gets none: the init binds by path, as without a
    /// user namespace.
    pub fn open(mounts: &[Mount], bundle: &Path) -> Result<BindSources> {
        let mut fds = Vec::with_capacity(mounts.len());
        for m in mounts {
            let opts = mount_options::parse(m.options().as_deref().unwrap_or_default());
            if !(opts.is_bind() || m.typ().as_deref() == Some("bind")) {
                fds.push(None);
                continue;
            }
            let src = bind_source(bundle, m)?;
            let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
            if opts.flags & libc::MS_REC != 0 {
                flags |= AT_RECURSIVE;
            }
            let c = cstring(&src);
            // SAFETY: open_tree with a valid C path; it returns a new fd or -1.
            let r =
                unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
            match sys::check(r) {
                // SAFETY: a fresh fd from open_tree, owned from here.
                Ok(fd) => fds.push(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    return Ok(BindSources::default());
                }
                Err(e) => {
                    return Err(Error::sys(
                        format!(
                            "bind mount source {} for {}",
                            src.display(),
                            m.destination().display()
                        ),
                        e,
                    ));
                }
            }
        }
        Ok(BindSources(fds))
    }

    fn take(&mut self, i: usize) -> Option<OwnedFd> {
        self.0.get_mut(i).and_then(Option::take)
    }
}

/// Everything up to (not including) pivot_root. `sources`: the bind mounts'
/// sources opened by `create` (in a user namespace), or none.
pub fn prepare(plan: &RootfsPlan, mut sources: BindSources) -> Result<()> {
    // By default nothing mounted here propagates back to the host. A shared
    // rootfsPropagation (bidirectional volumes) is applied as asked, as runc does,
    // and the mount holding the rootfs is made private so that the rootfs and
    // the runtime's own mounts still stay in this namespace. An unbindable one
    // would forbid the bind of the rootfs below: it is applied to the new root
    // after pivot_root (`finish_root`), like every other value.
    let requested = match plan.propagation {
        Some(p) => Some(mount_options::propagation_flag(p).ok_or_else(|| {
            Error::config("linux.rootfsPropagation", format!("unknown value {p:?}"))
        })?),
        None => None,
    };
    // Without a mount namespace of its own the container's mounts are made in
    // the runtime's (as runc does): the host's `/` is left as it is.
    if !plan.host_ns {
        let prop = match requested {
            Some(p) if p & libc::MS_UNBINDABLE == 0 => p,
            _ => libc::MS_SLAVE | libc::MS_REC,
        };
        sys::mount(None, Path::new("/"), None, prop, None)?;
        if prop & libc::MS_SHARED != 0 {
            let parent = mount_point_of(plan.rootfs);
            sys::mount(None, &parent, None, libc::MS_PRIVATE, None)?;
        }
    }
    let rootfs_c = cstring(plan.rootfs);
    sys::mount_c(
        Some(&rootfs_c),
        &rootfs_c,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| Error::path("bind-mounting rootfs", plan.rootfs, e))?;
    if plan.host_ns {
        // Nothing mounted in it reaches other namespaces; `delete` unmounts it all.
        sys::mount_c(None, &rootfs_c, None, libc::MS_PRIVATE | libc::MS_REC, None)
            .map_err(|e| Error::path("making rootfs private", plan.rootfs, e))?;
    }
    let root = sys::open(plan.rootfs, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| Error::path("opening rootfs", plan.rootfs, e))?;

    let mut dev_bound = false;
    for (i, m) in plan.mounts.iter().enumerate() {
        let opts = mount_options::parse(m.options().as_deref().unwrap_or_default());
        if m.destination() == Path::new("/dev") && opts.is_bind() {
            dev_bound = true;
        }
        mount_one(plan, &root, m, &opts, sources.take(i))?;
    }
    if !dev_bound {
        default_devices(&root, plan.in_userns)?;
    }
    for d in plan.devices {
        create_device(&root, d, plan.in_userns)?;
    }
    Ok(())
}

fn mount_one(
    plan: &RootfsPlan,
    root: &OwnedFd,
    m: &Mount,
    opts: &MountOptions,
    source: Option<OwnedFd>,
) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    if opts.is_bind() || typ == "bind" {
        return bind_mount(plan, root, m, opts, source);
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(plan, root, dest, opts);
    }
    if typ == "proc" || typ == "sysfs" {
        ordinary_directory(root, dest, typ)?;
    }
    let target = sys::ensure_in_root(root.as_raw_fd(), dest, false)?;
    let source = cstring(
        m.source()
            .as_deref()
            .map(Path::as_os_str)
            .unwrap_or(typ.as_ref()),
    );
    let fstype = cstring(typ);
    let data = cstring(&opts.data);
    let data = (!opts.data.is_empty()).then_some(data.as_c_str());
    let r = sys::mount_c(
        Some(&source),
        &fd_path(&target),
        Some(&fstype),
        opts.flags,
        data,
    );
    match r {
        Ok(()) => {}
        // sysfs cannot be mounted in a user namespace that does not own the network
        // namespace: show the host's read-only instead, as runc does.
        Err(e) if typ == "sysfs" && e.raw_os_error() == Some(libc::EPERM) => {
            let flags = libc::MS_BIND | libc::MS_REC;
            sys::mount_c(Some(c"/sys"), &fd_path(&target), None, flags, None)
                .map_err(|e| Error::path("bind-mounting /sys at", dest, e))?;
        }
        Err(e) => {
            return Err(Error::sys(
                format!("mounting {typ} on {}", dest.display()),
                e,
            ));
        }
    }
    finish_mount(root, dest, opts, false)
}

/// proc and sysfs must land on a real directory of the rootfs: a symlink there
/// (followed, even inside the rootfs) is how several runc CVEs redirected them, so
/// it is refused, as runc and youki do. A missing destination is created.
fn ordinary_directory(root: &OwnedFd, dest: &Path, typ: &str) -> Result<()> {
    let fd = match sys::open_in_root(root.as_raw_fd(), dest, libc::O_PATH | libc::O_NOFOLLOW, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::path("opening mount destination", dest, e)),
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of an open fd into a valid out pointer.
    sys::check_int(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })
        .map_err(|e| Error::path("stat of mount destination", dest, e))?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFDIR {
        return Ok(());
    }
    let what = if kind == libc::S_IFLNK {
        "a symlink"
    } else {
        "not a directory"
    };
    Err(Error::config(
        "mounts",
        format!(
            "filesystem {typ:?} must be mounted on ordinary directory: {} in the rootfs is {what}",
            dest.display()
        ),
    ))
}

/// A bind mount's source path: absolute, or relative to the bundle.
fn bind_source(bundle: &Path, m: &Mount) -> Result<PathBuf> {
    let src = m.source().as_ref().ok_or_else(|| {
        Error::config(
            "mounts.source",
            format!("bind mount on {} has no source", m.destination().display()),
        )
    })?;
    Ok(if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    })
}

/// Binds the source at the destination, resolved inside the rootfs. `source`:
/// the detached copy `create` made of it (`BindSources`), attached here; without
/// it the source is bound by path.
fn bind_mount(
    plan: &RootfsPlan,
    root: &OwnedFd,
    m: &Mount,
    opts: &MountOptions,
    source: Option<OwnedFd>,
) -> Result<()> {
    let dest = m.destination();
    let src = bind_source(plan.bundle, m)?;
    let Some(source) = source else {
        let meta =
            std::fs::metadata(&src).map_err(|e| Error::path("bind mount source", &src, e))?;
        let target = sys::ensure_in_root(root.as_raw_fd(), dest, !meta.is_dir())?;
        let flags = libc::MS_BIND | (opts.flags & libc::MS_REC);
        sys::mount_c(Some(&cstring(&src)), &fd_path(&target), None, flags, None).map_err(|e| {
            Error::sys(
                format!("bind-mounting {} on {}", src.display(), dest.display()),
                e,
            )
        })?;
        return finish_mount(root, dest, opts, true);
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of an open fd into a valid out pointer.
    sys::check_int(unsafe { libc::fstat(source.as_raw_fd(), &mut st) })
        .map_err(|e| Error::path("bind mount source", &src, e))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let target = sys::ensure_in_root(root.as_raw_fd(), dest, !is_dir)?;
    // SAFETY: move_mount of the detached tree behind `source` onto the O_PATH
    // fd `target`, both named by fd with empty paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            source.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    sys::check(r).map_err(|e| {
        Error::sys(
            format!("bind-mounting {} on {}", src.display(), dest.display()),
            e,
        )
    })?;
    drop(source);
    finish_mount(root, dest, opts, true)
}

/// Remounts with the requested flags and applies propagation and recursive attributes,
/// on the mount now found at `dest`.
fn finish_mount(root: &OwnedFd, dest: &Path, opts: &MountOptions, bind: bool) -> Result<()> {
    let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    let needs_remount = bind && extra != 0;
    if !needs_remount && opts.propagation.is_empty() && opts.rec_set == 0 && opts.rec_clear == 0 {
        return Ok(());
    }
    let mounted = sys::open_in_root(root.as_raw_fd(), dest, libc::O_PATH, 0)
        .map_err(|e| Error::path("reopening mount", dest, e))?;
    let path = fd_path(&mounted);
    if needs_remount {
        remount(&path, extra, dest)?;
    }
    for p in &opts.propagation {
        sys::mount_c(None, &path, None, *p, None)
            .map_err(|e| Error::sys(format!("setting propagation of {}", dest.display()), e))?;
    }
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        set_recursive_attrs(&mounted, opts.rec_set, opts.rec_clear, dest)?;
    }
    Ok(())
}

/// MS_REMOUNT of a bind mount, keeping the flags the kernel locks (nosuid, nodev,
/// noexec, ... inherited from the source mount) so the remount is not refused.
fn remount(path: &CStr, flags: libc::c_ulong, dest: &Path) -> Result<()> {
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is a valid C string; st a valid out pointer.
    let locked = if unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0 {
        let f = st.f_flag;
        let mut l = 0;
        for (st_flag, ms_flag) in [
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
        ] {
            if f & st_flag != 0 {
                l |= ms_flag;
            }
        }
        l
    } else {
        0
    };
    let all = libc::MS_BIND | libc::MS_REMOUNT | flags | locked;
    sys::mount_c(None, path, None, all, None).map_err(|e| {
        Error::sys(
            format!("remounting {} with flags {flags:#x}", dest.display()),
            e,
        )
    })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn set_recursive_attrs(fd: &OwnedFd, set: u64, clear: u64, dest: &Path) -> Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr on an O_PATH fd with AT_EMPTY_PATH and a sized attr struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    sys::check(r).map(drop).map_err(|e| {
        Error::sys(
            format!("setting recursive attributes on {}", dest.display()),
            e,
        )
    })
}

/// `/sys/fs/cgroup` inside the container: cgroup2 on a unified host; on a v1 or
/// hybrid host a tmpfs with each hierarchy's container directory bound in, so the
/// container sees only its own cgroups.
fn mount_cgroup(plan: &RootfsPlan, root: &OwnedFd, dest: &Path, opts: &MountOptions) -> Result<()> {
    let target = sys::ensure_in_root(root.as_raw_fd(), dest, false)?;
    let flags = opts.flags & !(libc::MS_BIND | libc::MS_REC);
    if plan.cgroup.v2 {
        if plan.cgroupns {
            sys::mount_c(
                Some(c"cgroup2"),
                &fd_path(&target),
                Some(c"cgroup2"),
                flags,
                None,
            )
            .map_err(|e| Error::sys(format!("mounting cgroup2 on {}", dest.display()), e))?;
        } else {
            let src = cstring(&plan.cgroup.hierarchies[0].path);
            sys::mount_c(
                Some(&src),
                &fd_path(&target),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(|e| Error::sys(format!("bind-mounting cgroup on {}", dest.display()), e))?;
            finish_mount(
                root,
                dest,
                &MountOptions {
                    flags,
                    ..Default::default()
                },
                true,
            )?;
        }
        return Ok(());
    }
    let tmpfs_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount_c(
        Some(c"tmpfs"),
        &fd_path(&target),
        Some(c"tmpfs"),
        tmpfs_flags,
        Some(c"mode=755"),
    )
    .map_err(|e| Error::sys(format!("mounting tmpfs on {}", dest.display()), e))?;
    for h in &plan.cgroup.hierarchies {
        let Some(name) = h.mountpoint.file_name() else {
            continue;
        };
        let sub = dest.join(name);
        let t = sys::ensure_in_root(root.as_raw_fd(), &sub, false)?;
        sys::mount_c(
            Some(&cstring(&h.path)),
            &fd_path(&t),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|e| {
            Error::sys(
                format!("bind-mounting {} on {}", h.path.display(), sub.display()),
                e,
            )
        })?;
        let sub_flags = flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        finish_mount(
            root,
            &sub,
            &MountOptions {
                flags: sub_flags,
                ..Default::default()
            },
            true,
        )?;
        // `cpu,cpuacct` is also reachable as `cpu` and `cpuacct`, as on the host.
        let name = name.to_string_lossy();
        if name.contains(',') {
            let dir = sys::open_in_root(
                root.as_raw_fd(),
                dest,
                libc::O_DIRECTORY | libc::O_RDONLY,
                0,
            )
            .map_err(|e| Error::path("opening", dest, e))?;
            for part in name.split(',') {
                let link = cstring(part);
                let to = cstring(name.as_ref());
                // SAFETY: dir is an open directory; both names are single components.
                unsafe { libc::symlinkat(to.as_ptr(), dir.as_raw_fd(), link.as_ptr()) };
            }
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        let mounted = sys::open_in_root(root.as_raw_fd(), dest, libc::O_PATH, 0)
            .map_err(|e| Error::path("reopening mount", dest, e))?;
        sys::mount_c(
            None,
            &fd_path(&mounted),
            None,
            libc::MS_REMOUNT | tmpfs_flags | libc::MS_RDONLY,
            None,
        )
        .map_err(|e| Error::sys(format!("remounting {} read-only", dest.display()), e))?;
    }
    Ok(())
}

fn default_devices(root: &OwnedFd, in_userns: bool) -> Result<()> {
    let dev = sys::mkdir_all_in_root(root.as_raw_fd(), Path::new("/dev"), 0o755)?;
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = PathBuf::from("/dev").join(name);
        make_node(
            root,
            &path,
            libc::S_IFCHR,
            major,
            minor,
            0o666,
            0,
            0,
            in_userns,
        )?;
    }
    let dir = sys::open_in_root(
        root.as_raw_fd(),
        Path::new("/dev"),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .map_err(|e| Error::path("opening", "/dev", e))?;
    drop(dev);
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let (l, t) = (cstring(link), cstring(target));
        // SAFETY: dir is an open directory; names are single components.
        let r = unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), l.as_ptr()) };
        if r == -1 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::path("creating symlink", format!("/dev/{link}"), e));
            }
        }
    }
    Ok(())
}

fn create_device(root: &OwnedFd, d: &LinuxDevice, in_userns: bool) -> Result<()> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::config(
                "linux.devices",
                format!("{}: type must be c, b, u or p", d.path().display()),
            ));
        }
    };
    make_node(
        root,
        d.path(),
        kind,
        d.major() as u32,
        d.minor() as u32,
        d.file_mode().unwrap_or(0o666),
        d.uid().unwrap_or(0),
        d.gid().unwrap_or(0),
        in_userns,
    )
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    root: &OwnedFd,
    path: &Path,
    kind: libc::mode_t,
    major: u32,
    minor: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    in_userns: bool,
) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| Error::config("linux.devices", format!("{} has no name", path.display())))?;
    sys::mkdir_all_in_root(root.as_raw_fd(), parent, 0o755)?;
    let dir = sys::open_in_root(
        root.as_raw_fd(),
        parent,
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .map_err(|e| Error::path("opening", parent, e))?;
    let n = cstring(name);
    if in_userns && kind != libc::S_IFIFO {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        let t = sys::ensure_in_root(root.as_raw_fd(), path, true)?;
        let host = PathBuf::from("/dev").join(name);
        return sys::mount_c(
            Some(&cstring(&host)),
            &fd_path(&t),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(|e| {
            Error::sys(
                format!("bind-mounting {} on {}", host.display(), path.display()),
                e,
            )
        });
    }
    // SAFETY: dir is open; n a single component; the mode and dev are plain integers.
    unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), 0) };
    let r = unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            n.as_ptr(),
            kind | (mode & 0o7777),
            libc::makedev(major, minor),
        )
    };
    sys::check_int(r).map_err(|e| Error::path("creating device", path, e))?;
    // SAFETY: as above.
    let r = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            n.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    sys::check_int(r).map_err(|e| Error::path("chown of device", path, e))?;
    Ok(())
}

/// Makes `rootfs` the root: pivot_root, then the old root is detached; with
/// `no_pivot`, MS_MOVE and chroot (for a rootfs on a ramfs, where pivot_root fails);
/// in the runtime's own mount namespace (`host_ns`), chroot alone, as runc does.
pub fn enter(rootfs: &Path, no_pivot: bool, host_ns: bool) -> Result<()> {
    let new_root = sys::open(rootfs, libc::O_DIRECTORY | libc::O_RDONLY)
        .map_err(|e| Error::path("opening rootfs", rootfs, e))?;
    // SAFETY: new_root is an open directory fd.
    sys::check_int(unsafe { libc::fchdir(new_root.as_raw_fd()) })
        .map_err(|e| Error::sys("chdir to rootfs", e))?;
    if host_ns {
        // SAFETY: "." is a valid path.
        sys::check_int(unsafe { libc::chroot(c".".as_ptr()) })
            .map_err(|e| Error::sys("chroot", e))?;
    } else if no_pivot {
        sys::mount_c(Some(c"."), c"/", None, libc::MS_MOVE, None)
            .map_err(|e| Error::sys("moving rootfs to /", e))?;
        // SAFETY: "." is a valid path.
        sys::check_int(unsafe { libc::chroot(c".".as_ptr()) })
            .map_err(|e| Error::sys("chroot", e))?;
    } else {
        let old_root = sys::open(Path::new("/"), libc::O_DIRECTORY | libc::O_RDONLY)
            .map_err(|e| Error::path("opening", "/", e))?;
        // SAFETY: pivot_root(".", ".") stacks the old root on top of the new one.
        let r = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
        sys::check(r).map_err(|e| Error::sys("pivot_root", e))?;
        // SAFETY: old_root is an open directory fd.
        sys::check_int(unsafe { libc::fchdir(old_root.as_raw_fd()) })
            .map_err(|e| Error::sys("chdir to old root", e))?;
        // Keep the unmount of the old root from propagating to the host.
        sys::mount_c(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .map_err(|e| Error::sys("making old root a slave", e))?;
        sys::umount2(Path::new("."), libc::MNT_DETACH)
            .map_err(|e| Error::sys("detaching old root", e))?;
    }
    // SAFETY: "/" is a valid path.
    sys::check_int(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(|e| Error::sys("chdir /", e))?;
    Ok(())
}

/// The mount point holding `path`, from this mount namespace's mountinfo.
fn mount_point_of(path: &Path) -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Applies rootfsPropagation to the new root (after pivot) and, if asked, makes the
/// root read-only.
pub fn finish_root(propagation: Option<&str>, readonly: bool) -> Result<()> {
    if let Some(p) = propagation.and_then(mount_options::propagation_flag) {
        sys::mount_c(None, c"/", None, p, None)
            .map_err(|e| Error::sys("setting rootfs propagation", e))?;
    }
    if readonly {
        remount(c"/", libc::MS_RDONLY, Path::new("/"))?;
    }
    Ok(())
}

/// Calls `f` with an O_PATH fd of each of `paths` that exists, resolved inside the
/// new root; a missing path is skipped, as runc does.
fn for_each_existing(
    paths: &[String],
    what: &'static str,
    mut f: impl FnMut(&OwnedFd, &str) -> Result<()>,
) -> Result<()> {
    let root = sys::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| Error::path("opening", "/", e))?;
    for p in paths {
        match sys::open_in_root(root.as_raw_fd(), Path::new(p), libc::O_PATH, 0) {
            Ok(fd) => f(&fd, p)?,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::path(what, p, e)),
        }
    }
    Ok(())
}

/// Hides paths from the container: a file is covered with /dev/null, a directory
/// with an empty read-only tmpfs.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for_each_existing(paths, "masking", |fd, p| {
        let is_dir = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .is_ok_and(|m| m.is_dir());
        let r = if is_dir {
            sys::mount_c(
                Some(c"tmpfs"),
                &fd_path(fd),
                Some(c"tmpfs"),
                libc::MS_RDONLY,
                None,
            )
        } else {
            sys::mount_c(Some(c"/dev/null"), &fd_path(fd), None, libc::MS_BIND, None)
        };
        r.map_err(|e| Error::path("masking", p, e))
    })
}

/// Makes paths read-only (a bind mount of each onto itself, remounted ro).
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    let root = sys::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| Error::path("opening", "/", e))?;
    for_each_existing(paths, "making read-only", |fd, p| {
        let path = fd_path(fd);
        sys::mount_c(Some(&path), &path, None, libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| Error::path("making read-only", p, e))?;
        let mounted = sys::open_in_root(root.as_raw_fd(), Path::new(p), libc::O_PATH, 0)
            .map_err(|e| Error::path("making read-only", p, e))?;
        remount(
            &fd_path(&mounted),
            libc::MS_RDONLY | libc::MS_REC,
            Path::new(p),
        )
    })
}

/// Unmounts (lazily, deepest first) every mount at or below `dir` in this mount
/// namespace: what a container without a mount namespace of its own left in the
/// runtime's.
pub fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    // Later lines are mounted on top of earlier ones.
    points.reverse();
    for p in points {
        let _ = sys::umount2(&p, libc::MNT_DETACH);
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
