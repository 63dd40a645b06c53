//! A count of everything a berthd has made on the host, each thing tied to the
//! pod or container ID it belongs to where it can be: mounts, network
//! namespaces, CNI IP allocations, veths, cgroups, shim processes, runtime
//! state, record directories; and berthd's own fds, threads and memory. The
//! fault and load tests compare it with what berthd lists, and before with after.

use crate::berthd::Berthd;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Census {
    /// Kind of thing → the IDs it belongs to (one entry per thing).
    pub owned: BTreeMap<&'static str, Vec<String>>,
    /// Host veths on the test bridge (their names say nothing of the pod).
    pub veths: usize,
    /// Files under the state directory (sockets, pid and exit files...).
    pub state_files: usize,
    pub berthd_fds: usize,
    pub berthd_threads: usize,
    pub berthd_rss_kib: u64,
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// The 64-hex component of a path (a pod or container ID), if any.
fn id_in(path: &str) -> Option<String> {
    path.split('/')
        .find(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += count_files(&e.path()),
            Ok(_) => n += 1,
            Err(_) => {}
        }
    }
    n
}

/// Shim processes started for this berthd (their --state-dir is under `state`):
/// the ID each serves.
pub fn shims(state: &Path) -> Vec<String> {
    let prefix = state.to_string_lossy().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        if !args.first().is_some_and(|a| a.ends_with("berth-shim")) {
            continue;
        }
        let arg = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
        };
        if arg("--state-dir").is_some_and(|s| s.starts_with(&prefix))
            && let Some(id) = arg("--id")
        {
            out.push(id.clone());
        }
    }
    out.sort();
    out
}

/// Cgroup directories under `parent` in every hierarchy (v1 and v2).
fn cgroups(parent: &str) -> Vec<String> {
    let parent = parent.trim_start_matches('/');
    let mut out = Vec::new();
    let mut roots = vec![Path::new("/sys/fs/cgroup").to_path_buf()];
    roots.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for r in roots {
        for e in std::fs::read_dir(r.join(parent))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().is_dir() {
                out.push(e.file_name().to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

impl Census {
    /// Everything berthd `d` has made, pods' cgroups under `cgroup_parent`.
    pub fn take(d: &Berthd, cgroup_parent: &str) -> Census {
        let dir = d.dir.path().to_string_lossy().to_string();
        let mut owned: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .map(|m| id_in(m).unwrap_or_else(|| m.to_string()))
            .collect();
        owned.insert("mount", mounts);
        owned.insert("netns", names(&d.state().join("netns")));
        let ipam = d.dir.path().join("ipam");
        let mut ips = Vec::new();
        for net in names(&ipam) {
            for f in names(&ipam.join(&net)) {
                if f.parse::<std::net::IpAddr>().is_ok() {
                    let owner =
                        std::fs::read_to_string(ipam.join(&net).join(&f)).unwrap_or_default();
                    ips.push(owner.lines().next().unwrap_or_default().trim().to_string());
                }
            }
        }
        owned.insert("cni-ip", ips);
        owned.insert("cgroup", cgroups(cgroup_parent));
        owned.insert("shim", shims(&d.state()));
        owned.insert("shim-dir", names(&d.state().join("shims")));
        owned.insert("runtime-state", names(&d.state().join("runtime")));
        owned.insert("pod-dir", names(&d.root().join("pods")));
        owned.insert("container-dir", names(&d.root().join("containers")));
        for v in owned.values_mut() {
            v.sort();
        }
        let veths = d
            .bridge
            .as_ref()
            .map(|b| {
                let out = std::process::Command::new("ip")
                    .args(["-o", "link", "show", "master", b])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                    .unwrap_or_default();
                out.lines().filter(|l| !l.trim().is_empty()).count()
            })
            .unwrap_or(0);
        let (fds, threads, rss) = match d.pid() {
            Some(pid) => (
                names(Path::new(&format!("/proc/{pid}/fd"))).len(),
                status_field(pid, "Threads:") as usize,
                status_field(pid, "VmRSS:"),
            ),
            None => (0, 0, 0),
        };
        Census {
            owned,
            veths,
            state_files: count_files(&d.state()),
            berthd_fds: fds,
            berthd_threads: threads,
            berthd_rss_kib: rss,
        }
    }

    /// Things that belong to none of `listed` (pod and container IDs), one line each.
    pub fn strays(&self, listed: &BTreeSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, ids) in &self.owned {
            for id in ids {
                if !listed.contains(id) {
                    out.push(format!("{kind} of {id}"));
                }
            }
        }
        let ips = self.owned.get("cni-ip").map_or(0, Vec::len);
        if self.veths != ips {
            out.push(format!(
                "{} veths on the bridge for {ips} CNI IP allocations",
                self.veths
            ));
        }
        out
    }

    /// How many things of `kind` belong to `id`.
    pub fn has(&self, kind: &str, id: &str) -> usize {
        self.owned
            .get(kind)
            .map_or(0, |v| v.iter().filter(|x| *x == id).count())
    }

    /// Everything berthd made, counted (ignoring berthd's own fds, threads, memory).
    pub fn things(&self) -> usize {
        self.owned.values().map(Vec::len).sum::<usize>() + self.veths
    }
}

/// A cgroup parent of the test's own (`/berth-<tag>-<pid>`), removed in every
/// hierarchy when dropped, even when the test fails.
pub struct CgroupParent(pub String);

impl CgroupParent {
    pub fn new(tag: &str) -> CgroupParent {
        CgroupParent(format!("/berth-{tag}-{}", std::process::id()))
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        let rel = self.0.trim_start_matches('/');
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(e.path().join(rel));
        }
    }
}
