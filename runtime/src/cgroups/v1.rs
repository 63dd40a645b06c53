//! cgroup v1: finding the hierarchies and turning OCI resources into file writes.

use super::Write;
use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use std::path::{Path, PathBuf};

const CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The cgroup hierarchies in a mountinfo: (mountpoint, controllers, is cgroup2).
/// Named hierarchies (`name=systemd`) are kept with that name as their controller.
pub fn mounts(mountinfo: &str) -> Vec<(PathBuf, Vec<String>, bool)> {
    let mut out: Vec<(PathBuf, Vec<String>, bool)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fstype), Some(_src), Some(superopts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        let controllers: Vec<String> = match fstype {
            "cgroup" => superopts
                .split(',')
                .filter(|o| CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_string)
                .collect(),
            "cgroup2" => Vec::new(),
            _ => continue,
        };
        let is_v2 = fstype == "cgroup2";
        if out.iter().any(|(_, c, v)| *c == controllers && *v == is_v2) {
            continue;
        }
        out.push((PathBuf::from(unescape(mountpoint)), controllers, is_v2));
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// This process's path in the hierarchy with `controllers`, from /proc/self/cgroup.
pub fn own_path(proc_cgroup: &str, controllers: &[String], is_v2: bool) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if is_v2 {
            ctrls.is_empty()
        } else {
            let mut a: Vec<&str> = ctrls.split(',').collect();
            let mut b: Vec<&str> = controllers.iter().map(String::as_str).collect();
            a.sort_unstable();
            b.sort_unstable();
            !ctrls.is_empty() && a == b
        };
        matches.then(|| path.to_string())
    })
}

/// A new cpuset cgroup starts with empty cpus and mems, which admits no task:
/// copy them down from the nearest ancestor that has them.
pub fn init_cpuset(mountpoint: &Path, path: &Path) -> Result<()> {
    let Ok(rel) = path.strip_prefix(mountpoint) else {
        return Ok(());
    };
    let mut dir = mountpoint.to_path_buf();
    for comp in rel.components() {
        let parent = dir.clone();
        dir.push(comp);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let cur = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            if cur.trim().is_empty() {
                let from = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                std::fs::write(dir.join(file), from.trim())
                    .map_err(|e| Error::cgroup(dir.join(file), format!("initialising: {e}")))?;
            }
        }
    }
    Ok(())
}

fn w(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
    }
}

/// The v1 file writes for `res`, in an order the kernel accepts.
pub fn writes(res: &LinuxResources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(m) = res.memory() {
        // The memsw limit must never be below the memory limit: when both are set,
        // raise memsw first if it grows, else memory first. Writing memory first and
        // then memsw is right when the cgroup is new (both unlimited).
        if let Some(l) = m.limit() {
            out.push(w("memory", "memory.limit_in_bytes", l));
        }
        if let Some(s) = m.swap() {
            out.push(w("memory", "memory.memsw.limit_in_bytes", s));
        }
        if let Some(r) = m.reservation() {
            out.push(w("memory", "memory.soft_limit_in_bytes", r));
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(Error::config(
                    "linux.resources.memory.swappiness",
                    format!("{s} is above 100"),
                ));
            }
            out.push(w("memory", "memory.swappiness", s));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom_control", 1));
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            out.push(w("cpu", "cpu.shares", s));
        }
        if let Some(p) = c.period().filter(|p| *p != 0) {
            out.push(w("cpu", "cpu.cfs_period_us", p));
        }
        if let Some(q) = c.quota().filter(|q| *q != 0) {
            out.push(w("cpu", "cpu.cfs_quota_us", q));
        }
        if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
            out.push(w("cpu", "cpu.rt_period_us", p));
        }
        if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
            out.push(w("cpu", "cpu.rt_runtime_us", r));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", mems));
        }
    }
    if let Some(p) = res.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        out.push(w("pids", "pids.max", v));
    }
    if let Some(b) = res.block_io() {
        if let Some(wt) = b.weight() {
            out.push(w("blkio", "blkio.weight", wt));
        }
        if let Some(wt) = b.leaf_weight() {
            out.push(w("blkio", "blkio.leaf_weight", wt));
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(wt) = d.weight() {
                out.push(w(
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {wt}", d.major(), d.minor()),
                ));
            }
            if let Some(wt) = d.leaf_weight() {
                out.push(w(
                    "blkio",
                    "blkio.leaf_weight_device",
                    format!("{}:{} {wt}", d.major(), d.minor()),
                ));
            }
        }
        for (list, file) in [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
            ),
        ] {
            for d in list.as_deref().unwrap_or_default() {
                out.push(w(
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for h in res.hugepage_limits().as_deref().unwrap_or_default() {
        out.push(w(
            "hugetlb",
            format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit(),
        ));
    }
    if let Some(devices) = res.devices() {
        for d in devices {
            out.push(device_write(d));
        }
    }
    if let Some(u) = res.unified()
        && !u.is_empty()
    {
        return Err(Error::config(
            "linux.resources.unified",
            "needs cgroup v2; this host uses cgroup v1 controllers",
        ));
    }
    Ok(out)
}

/// A device rule as a devices.allow / devices.deny line: `c 1:3 rwm`, `a *:* rwm`.
pub fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let t = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => "p",
    };
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = d
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    format!("{t} {}:{} {access}", num(d.major()), num(d.minor()))
}

fn device_write(d: &LinuxDeviceCgroup) -> Write {
    let file = if d.allow() {
        "devices.allow"
    } else {
        "devices.deny"
    };
    w("devices", file, device_rule(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
";

    #[test]
    fn finds_v1_and_hybrid_hierarchies() {
        let m = mounts(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[0],
            (PathBuf::from("/sys/fs/cgroup/unified"), vec![], true)
        );
        assert_eq!(m[1].1, vec!["name=systemd".to_string()]);
        assert_eq!(m[2].1, vec!["cpu".to_string(), "cpuacct".to_string()]);
    }

    #[test]
    fn own_paths_match_controller_sets() {
        let proc = "12:memory:/a\n4:cpuacct,cpu:/b\n1:name=systemd:/c\n0::/d\n";
        assert_eq!(
            own_path(proc, &["cpu".into(), "cpuacct".into()], false).as_deref(),
            Some("/b")
        );
        assert_eq!(
            own_path(proc, &["memory".into()], false).as_deref(),
            Some("/a")
        );
        assert_eq!(
            own_path(proc, &["name=systemd".into()], false).as_deref(),
            Some("/c")
        );
        assert_eq!(own_path(proc, &[], true).as_deref(), Some("/d"));
    }

    #[test]
    fn resources_become_v1_writes() {
        let res: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576, "reservation": 524288},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            "pids": {"limit": 10},
            "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
        }))
        .unwrap();
        let got: Vec<(String, String)> = writes(&res)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        let want = [
            ("memory.limit_in_bytes", "1048576"),
            ("memory.soft_limit_in_bytes", "524288"),
            ("cpu.shares", "512"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpuset.cpus", "0"),
            ("pids.max", "10"),
            ("devices.deny", "a *:* rwm"),
            ("devices.allow", "c 1:3 rwm"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}
