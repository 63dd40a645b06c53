//! The cgroups of a runtime create that was killed before it recorded them: the
//! runtime cannot remove what its state does not name, so berthd removes the
//! directories of the container's `cgroupsPath` itself, in every hierarchy, as
//! the runtime lays them out (an absolute path below each mount point, a
//! relative one below the caller's own cgroup).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Mount points of the cgroup hierarchies (v1 and v2), with the controllers of
/// each v1 hierarchy (empty for v2).
fn hierarchies(mountinfo: &str) -> Vec<(PathBuf, Vec<String>)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let options = r.nth(1).unwrap_or_default();
            let mountpoint = left.split(' ').nth(4)?;
            match fstype {
                "cgroup2" => Some((PathBuf::from(mountpoint), Vec::new())),
                "cgroup" => {
                    let controllers = options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .filter(|o| !o.starts_with("no") && !o.starts_with("relatime"))
                        .map(String::from)
                        .collect();
                    Some((PathBuf::from(mountpoint), controllers))
                }
                _ => None,
            }
        })
        .collect()
}

/// This process's own path in a hierarchy (from /proc/self/cgroup).
fn own_path(own: &str, controllers: &[String]) -> String {
    own.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let matches = if controllers.is_empty() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| controllers.iter().any(|w| w == c))
            };
            matches.then(|| path.to_string())
        })
        .unwrap_or_else(|| "/".into())
}

/// The directories `cgroups_path` names, one per hierarchy.
pub fn dirs(cgroups_path: &str, mountinfo: &str, own: &str) -> Vec<PathBuf> {
    let inner = Path::new(cgroups_path);
    let rel = inner.strip_prefix("/").unwrap_or(inner);
    if rel.as_os_str().is_empty() || rel.components().any(|c| c.as_os_str() == "..") {
        return Vec::new();
    }
    hierarchies(mountinfo)
        .into_iter()
        .map(|(mount, controllers)| {
            if inner.is_absolute() {
                mount.join(rel)
            } else {
                mount
                    .join(own_path(own, &controllers).trim_start_matches('/'))
                    .join(rel)
            }
        })
        .collect()
}

/// Kills what runs in each directory of `cgroups_path` and removes it (rmdir,
/// deepest first: cgroupfs removes nothing else).
pub fn remove(cgroups_path: &str) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for dir in dirs(cgroups_path, &mountinfo, &own) {
        remove_tree(&dir);
    }
}

fn remove_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: SIGKILL to a process of the dead create's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    tracing::warn!(cgroup = %dir.display(), "could not remove the cgroup of a create that died");
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n\
        31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
        32 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n\
        33 25 8:1 / /data rw - ext4 /dev/sda1 rw\n";
    const OWN: &str = "0::/user.slice\n4:memory:/svc\n3:cpu,cpuacct:/svc\n";

    #[test]
    fn absolute_paths_sit_below_each_mount_and_relative_ones_below_our_cgroup() {
        assert_eq!(
            dirs("/kubepods/pod1/c1", MOUNTINFO, OWN),
            [
                "/sys/fs/cgroup/unified/kubepods/pod1/c1",
                "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1",
                "/sys/fs/cgroup/memory/kubepods/pod1/c1"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            dirs("pods/c1", MOUNTINFO, OWN),
            [
                "/sys/fs/cgroup/unified/user.slice/pods/c1",
                "/sys/fs/cgroup/cpu,cpuacct/svc/pods/c1",
                "/sys/fs/cgroup/memory/svc/pods/c1"
            ]
            .map(PathBuf::from)
        );
        assert!(
            dirs("/", MOUNTINFO, OWN).is_empty(),
            "never a hierarchy's root"
        );
        assert!(dirs("/a/../../x", MOUNTINFO, OWN).is_empty());
    }
}
