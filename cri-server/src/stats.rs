//! Container and pod stats from the cgroup files: CPU time, memory working set
//! (usage less inactive file pages, as kubelet counts it), and the writable
//! layer's size. Works on cgroup v1 (and hybrid) and v2 hosts.

use crate::container::ContainerRecord;
use crate::store::now_ns;
use berth_proto::v1 as cri;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub cpu_ns: u64,
    pub memory_usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

fn unified() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn stat_field(p: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(p).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn v1_dir(controller: &str, path: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'))
}

/// Usage of the cgroup at `path` (a cgroupsPath as in the OCI config).
pub fn usage(path: &str) -> Option<Usage> {
    if path.is_empty() {
        return None;
    }
    if unified() {
        let dir = PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        let mem = read_u64(&dir.join("memory.current"))?;
        let stat = dir.join("memory.stat");
        let inactive = stat_field(&stat, "inactive_file").unwrap_or(0);
        return Some(Usage {
            cpu_ns: stat_field(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
            memory_usage: mem,
            working_set: mem.saturating_sub(inactive),
            rss: stat_field(&stat, "anon").unwrap_or(0),
            page_faults: stat_field(&stat, "pgfault").unwrap_or(0),
            major_page_faults: stat_field(&stat, "pgmajfault").unwrap_or(0),
        });
    }
    let mem_dir = v1_dir("memory", path);
    let mem = read_u64(&mem_dir.join("memory.usage_in_bytes"))?;
    let stat = mem_dir.join("memory.stat");
    let inactive = stat_field(&stat, "total_inactive_file").unwrap_or(0);
    let cpu = ["cpuacct", "cpu,cpuacct"]
        .iter()
        .find_map(|c| read_u64(&v1_dir(c, path).join("cpuacct.usage")))
        .unwrap_or(0);
    Some(Usage {
        cpu_ns: cpu,
        memory_usage: mem,
        working_set: mem.saturating_sub(inactive),
        rss: stat_field(&stat, "total_rss").unwrap_or(0),
        page_faults: stat_field(&stat, "total_pgfault").unwrap_or(0),
        major_page_faults: stat_field(&stat, "total_pgmajfault").unwrap_or(0),
    })
}

/// Bytes and inodes under `dir`, not following symlinks or leaving the filesystem.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(md) = e.metadata() else { continue };
            inodes += 1;
            bytes += md.blocks() * 512;
            if md.is_dir() && md.dev() == root.dev() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

fn u(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

pub fn cpu(ts: i64, x: &Usage) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: ts,
        usage_core_nano_seconds: u(x.cpu_ns),
        ..Default::default()
    }
}

pub fn memory(ts: i64, x: &Usage) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: ts,
        working_set_bytes: u(x.working_set),
        usage_bytes: u(x.memory_usage),
        rss_bytes: u(x.rss),
        page_faults: u(x.page_faults),
        major_page_faults: u(x.major_page_faults),
        ..Default::default()
    }
}

pub fn container(rec: &ContainerRecord, upper: &Path, mountpoint: &str) -> cri::ContainerStats {
    let config: cri::ContainerConfig = crate::store::decode(&rec.config);
    let ts = now_ns();
    let x = usage(&rec.cgroups_path).unwrap_or_default();
    let (bytes, inodes) = disk_usage(upper);
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: rec.id.clone(),
            metadata: config.metadata.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        }),
        cpu: Some(cpu(ts, &x)),
        memory: Some(memory(ts, &x)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: ts,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: mountpoint.to_string(),
            }),
            used_bytes: u(bytes),
            inodes_used: u(inodes),
        }),
        ..Default::default()
    }
}
