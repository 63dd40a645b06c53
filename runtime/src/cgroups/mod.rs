//! cgroups with the cgroupfs driver: v1 (and hybrid hosts, where cgroup2 is mounted
//! beside the v1 controllers) and v2 (unified). The resource files to write are
//! computed by pure functions in `v1` and `v2`; this module finds the
//! hierarchies, creates the directories and does the writes.

pub mod devices_bpf;
pub mod stats;
pub mod v1;
pub mod v2;

use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use std::path::{Path, PathBuf};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// One mounted hierarchy and the container's directory in it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Hierarchy {
    /// Where it is mounted on the host, e.g. /sys/fs/cgroup/memory.
    pub mountpoint: PathBuf,
    /// The controllers it carries (`cpu`, `cpuacct`, ...; empty for a named or
    /// controller-less cgroup2 hierarchy).
    pub controllers: Vec<String>,
    /// The container's directory in it.
    pub path: PathBuf,
    /// A cgroup2 hierarchy (the unified one on a v2 or hybrid host).
    #[serde(default)]
    pub v2: bool,
    /// The topmost directory of `path` that berth created (`path` itself, or a
    /// parent that did not exist either): removed with the container, so a nested
    /// cgroupsPath leaves nothing behind. `None` when `path` already existed.
    #[serde(default)]
    pub created_from: Option<PathBuf>,
}

/// The container's cgroups.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    pub v2: bool,
    pub hierarchies: Vec<Hierarchy>,
}

/// A write of one value to one file of the controller's directory.
#[derive(Debug, PartialEq, Eq)]
pub struct Write {
    /// v1: the controller whose hierarchy holds the file; v2: empty.
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

pub fn is_unified(root: &Path) -> bool {
    let c = crate::sys::cstring(root);
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid path; st a valid out pointer.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC }
}

impl Cgroup {
    /// Finds where the container's cgroups go. `cgroups_path` absolute: from each
    /// hierarchy's root; relative: below this process's own cgroup; absent: `/<id>`.
    pub fn for_container(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
        let inner = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("/").join(id),
        };
        if inner.to_string_lossy().contains(':') && !inner.is_absolute() {
            return Err(Error::config(
                "linux.cgroupsPath",
                format!(
                    "{:?} looks like a systemd slice:prefix:name path; berth-runtime uses the cgroupfs driver",
                    inner
                ),
            ));
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let root = Path::new("/sys/fs/cgroup");
        if is_unified(root) {
            let own_path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            let path = join_inner(root, own_path, &inner);
            return Ok(Cgroup {
                v2: true,
                hierarchies: vec![Hierarchy {
                    mountpoint: root.to_path_buf(),
                    controllers: Vec::new(),
                    created_from: first_missing(root, &path),
                    path,
                    v2: true,
                }],
            });
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::path("reading", "/proc/self/mountinfo", e))?;
        let mut hierarchies = Vec::new();
        for (mountpoint, controllers, is_v2) in v1::mounts(&mountinfo) {
            let own_path =
                v1::own_path(&own, &controllers, is_v2).unwrap_or_else(|| "/".to_string());
            let path = join_inner(&mountpoint, &own_path, &inner);
            hierarchies.push(Hierarchy {
                created_from: first_missing(&mountpoint, &path),
                mountpoint,
                controllers,
                path,
                v2: is_v2,
            });
        }
        if hierarchies.is_empty() {
            return Err(Error::cgroup(root, "no cgroup hierarchy is mounted"));
        }
        Ok(Cgroup {
            v2: false,
            hierarchies,
        })
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.path.clone()).collect()
    }

    /// Creates the directories (and, on v2, enables the controllers on the way
    /// down). On failure what was made is removed again.
    pub fn create(&self) -> Result<()> {
        let r = self.create_all();
        if r.is_err() {
            let _ = self.destroy();
        }
        r
    }

    fn create_all(&self) -> Result<()> {
        let v2 = self.v2;
        for h in &self.hierarchies {
            if v2 {
                v2::enable_controllers(&h.mountpoint, &h.path)?;
            }
            std::fs::create_dir_all(&h.path)
                .map_err(|e| Error::cgroup(&h.path, format!("cannot create: {e}")))?;
            if h.controllers.iter().any(|c| c == "cpuset") {
                v1::init_cpuset(&h.mountpoint, &h.path)?;
            }
        }
        Ok(())
    }

    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        if self.v2
            && let Some(rules) = res.devices()
        {
            devices_bpf::attach(&self.hierarchies[0].path, rules)?;
        }
        let mut writes = if self.v2 {
            v2::writes(res)?
        } else {
            v1::writes(res)?
        };
        if !self.v2 {
            self.order_memsw(&mut writes);
        }
        for w in writes {
            self.write(&w)?;
        }
        Ok(())
    }

    /// v1 refuses a memory limit above the current memsw limit and a memsw limit
    /// below the current memory limit: when memsw grows past its current value
    /// (an in-place resize up), it is written before the memory limit.
    fn order_memsw(&self, writes: &mut [Write]) {
        let find = |f: &str| writes.iter().position(|w| w.file == f);
        let (Some(mem), Some(sw)) = (
            find("memory.limit_in_bytes"),
            find("memory.memsw.limit_in_bytes"),
        ) else {
            return;
        };
        let Some(h) = self
            .hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == "memory"))
        else {
            return;
        };
        let current = std::fs::read_to_string(h.path.join("memory.memsw.limit_in_bytes"))
            .ok()
            .and_then(|v| v.trim().parse::<i128>().ok());
        let wanted = writes[sw].value.trim().parse::<i128>().ok();
        let grows = match (current, wanted) {
            (Some(c), Some(-1)) => c >= 0,
            (Some(c), Some(w)) => w > c,
            _ => false,
        };
        if grows && sw > mem {
            writes.swap(mem, sw);
        }
    }

    fn write(&self, w: &Write) -> Result<()> {
        let h = if self.v2 {
            &self.hierarchies[0]
        } else {
            match self
                .hierarchies
                .iter()
                .find(|h| h.controllers.iter().any(|c| c == w.controller))
            {
                Some(h) => h,
                // The host lacks this controller: say so rather than silently ignore.
                None => {
                    return Err(Error::cgroup(
                        &w.file,
                        format!(
                            "the {} controller is not mounted on this host",
                            w.controller
                        ),
                    ));
                }
            }
        };
        let file = h.path.join(&w.file);
        std::fs::write(&file, &w.value)
            .map_err(|e| Error::cgroup(&file, format!("writing {:?}: {e}", w.value)))
    }

    /// The cgroup2 directory, if any: a child can be born in it (CLONE_INTO_CGROUP).
    pub fn unified(&self) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.v2)
            .map(|h| h.path.as_path())
    }

    /// Moves the calling single-threaded process into every v1 hierarchy by writing
    /// 0 to `tasks`. Moving oneself this way skips the kernel's global threadgroup
    /// lock, whose RCU grace period makes a `cgroup.procs` write cost 5-15 ms.
    pub fn join_self_v1(&self) -> Result<()> {
        for h in self.hierarchies.iter().filter(|h| !h.v2) {
            let file = h.path.join("tasks");
            std::fs::write(&file, "0")
                .map_err(|e| Error::cgroup(&file, format!("joining: {e}")))?;
        }
        Ok(())
    }

    /// Puts a process into every hierarchy; `skip_unified` when it was born there.
    pub fn add(&self, pid: i32) -> Result<()> {
        self.add_to(pid, false)
    }

    pub fn add_to(&self, pid: i32, skip_unified: bool) -> Result<()> {
        let pid = pid.to_string();
        for h in self.hierarchies.iter().filter(|h| !(skip_unified && h.v2)) {
            let file = h.path.join("cgroup.procs");
            std::fs::write(&file, &pid)
                .map_err(|e| Error::cgroup(&file, format!("adding pid {pid}: {e}")))?;
        }
        Ok(())
    }

    /// Removes the directories in every hierarchy (one that fails does not stop
    /// the others), retrying while the kernel still counts exiting tasks, then the
    /// parents berth created for them if nothing else lives there now.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for h in &self.hierarchies {
            match remove_tree(&h.path) {
                Ok(()) => {
                    if let Some(top) = &h.created_from {
                        remove_empty_parents(&h.path, top);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Every pid in any of the container's hierarchies.
    pub fn all_pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for h in &self.hierarchies {
            collect_pids(&h.path, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILLs every process in the container's cgroups (thawing them first, as
    /// frozen tasks die only once thawed) until none is left or `timeout` passes.
    pub fn kill_all(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut thawed = false;
        loop {
            let pids = self.all_pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: plain kill.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if !thawed {
                thawed = true;
                let paths = self.paths();
                if is_frozen(&paths, self.v2) {
                    let _ = set_frozen(&paths, self.v2, false);
                }
            }
            if std::time::Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

impl Cgroup {
    /// The cgroups an `exec --cgroup` process joins: existing sub-cgroups of the
    /// container's, given as runc takes them: `[<controller>[,<controller>]:]<path>`
    /// (without a controller: one path for every hierarchy). A path may not leave
    /// the container's cgroup, and must exist.
    pub fn with_sub_cgroups(&self, args: &[String]) -> Result<Cgroup> {
        if args.is_empty() {
            return Ok(self.clone());
        }
        let bad = |msg: String| Error::Usage(format!("--cgroup: {msg}"));
        let mut subs: std::collections::HashMap<String, String> = Default::default();
        for a in args {
            match a.split_once(':') {
                Some((ctrls, path)) => {
                    for c in ctrls.split(',') {
                        if c.is_empty() {
                            return Err(bad(format!("{a:?} has an empty controller")));
                        }
                        let known = self.hierarchies.iter().any(|h| {
                            h.controllers
                                .iter()
                                .any(|x| x == c || x == &format!("name={c}"))
                        });
                        if !known {
                            return Err(bad(format!("unknown controller {c:?} in {a:?}")));
                        }
                        if subs.insert(c.to_string(), path.to_string()).is_some() {
                            return Err(bad(format!("controller {c} given twice")));
                        }
                    }
                }
                None if args.len() == 1 => {
                    subs.insert(String::new(), a.clone());
                }
                None => return Err(bad(format!("{a:?} needs a <controller>: prefix"))),
            }
        }
        let mut out = self.clone();
        for h in &mut out.hierarchies {
            let sub = subs.get("").or_else(|| {
                h.controllers
                    .iter()
                    .find_map(|c| subs.get(c.strip_prefix("name=").unwrap_or(c)))
            });
            let Some(sub) = sub else { continue };
            let mut path = h.path.clone();
            for comp in Path::new(sub).components() {
                match comp {
                    std::path::Component::Normal(n) => path.push(n),
                    std::path::Component::ParentDir => {
                        return Err(bad(format!("{sub:?} leaves the container's cgroup")));
                    }
                    _ => {}
                }
            }
            if !path.is_dir() {
                return Err(bad(format!("{} does not exist", path.display())));
            }
            h.path = path;
        }
        Ok(out)
    }
}

/// The first directory of `path` (below `mountpoint`) that does not exist yet.
fn first_missing(mountpoint: &Path, path: &Path) -> Option<PathBuf> {
    if path.exists() {
        return None;
    }
    let mut top = path.to_path_buf();
    while let Some(parent) = top.parent() {
        if parent == mountpoint || parent.exists() || !parent.starts_with(mountpoint) {
            break;
        }
        top = parent.to_path_buf();
    }
    Some(top)
}

/// rmdir of the parents of `path` up to and including `top`, stopping at the first
/// that is not empty (another container may share it).
fn remove_empty_parents(path: &Path, top: &Path) {
    if path == top || !path.starts_with(top) {
        return;
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if std::fs::remove_dir(d).is_err() || d == top {
            return;
        }
        dir = d.parent();
    }
}

fn join_inner(mountpoint: &Path, own: &str, inner: &Path) -> PathBuf {
    let inner_rel = inner.strip_prefix("/").unwrap_or(inner);
    if inner.is_absolute() {
        mountpoint.join(inner_rel)
    } else {
        mountpoint.join(own.trim_start_matches('/')).join(inner_rel)
    }
}

/// rmdir of a cgroup directory and any children it grew, deepest first.
pub fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    // A task that was killed leaves its cgroup only once it has finished exiting
    // (a large process takes a while to unmap): up to 5 s, checking often at first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(Error::cgroup(path, format!("cannot remove: {e}"))),
        }
    }
}

/// The pids in the container's cgroup (its first hierarchy).
pub fn pids(paths: &[PathBuf]) -> Vec<i32> {
    let Some(p) = paths.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    collect_pids(p, &mut out);
    out
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

fn freezer_dir(paths: &[PathBuf], v2: bool) -> Option<&PathBuf> {
    if v2 {
        paths.first()
    } else {
        paths.iter().find(|p| p.join("freezer.state").exists())
    }
}

pub fn is_frozen(paths: &[PathBuf], v2: bool) -> bool {
    let Some(dir) = freezer_dir(paths, v2) else {
        return false;
    };
    if v2 {
        std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    } else {
        std::fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() != "THAWED")
    }
}

/// Freezes or thaws every process of the container.
pub fn set_frozen(paths: &[PathBuf], v2: bool, frozen: bool) -> Result<()> {
    let dir = freezer_dir(paths, v2)
        .ok_or_else(|| Error::cgroup("freezer", "the freezer controller is not mounted"))?;
    let (file, value, want) = if v2 {
        ("cgroup.freeze", if frozen { "1" } else { "0" }, None)
    } else {
        (
            "freezer.state",
            if frozen { "FROZEN" } else { "THAWED" },
            Some(if frozen { "FROZEN" } else { "THAWED" }),
        )
    };
    let f = dir.join(file);
    std::fs::write(&f, value).map_err(|e| Error::cgroup(&f, format!("writing {value}: {e}")))?;
    if let Some(want) = want {
        for _ in 0..1000 {
            if std::fs::read_to_string(&f).is_ok_and(|s| s.trim() == want) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        return Err(Error::cgroup(&f, format!("did not reach {want}")));
    }
    Ok(())
}

/// How many times the OOM killer acted in the container's memory cgroup.
pub fn oom_kills(paths: &[PathBuf], v2: bool) -> u64 {
    let read_key = |file: PathBuf, key: &str| {
        std::fs::read_to_string(file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        })
    };
    if v2 {
        paths
            .first()
            .and_then(|p| read_key(p.join("memory.events"), "oom_kill "))
            .unwrap_or(0)
    } else {
        paths
            .iter()
            .find(|p| p.join("memory.oom_control").exists())
            .and_then(|p| read_key(p.join("memory.oom_control"), "oom_kill "))
            .unwrap_or(0)
    }
}
