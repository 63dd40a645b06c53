//! Resource usage read back from the container's cgroups, for `events --stats`.

use serde::Serialize;
use std::path::Path;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
}

#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    /// Total CPU time in nanoseconds.
    pub usage_total_ns: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub usage: u64,
    /// 0 when unlimited.
    pub limit: u64,
    /// The kubelet's working set: usage less inactive file pages.
    pub working_set: u64,
    pub oom_kills: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Pids {
    pub current: u64,
    /// 0 when unlimited.
    pub limit: u64,
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn stat_key(p: &Path, key: &str) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Reads usage from the hierarchy directories of one container.
pub fn read(cg: &super::Cgroup) -> Stats {
    let mut s = Stats::default();
    let paths = cg.paths();
    if cg.v2 {
        let d = &paths[0];
        s.cpu.usage_total_ns = stat_key(&d.join("cpu.stat"), "usage_usec") * 1000;
        s.memory.usage = read_u64(&d.join("memory.current"));
        s.memory.limit = read_u64(&d.join("memory.max"));
        s.memory.working_set = s
            .memory
            .usage
            .saturating_sub(stat_key(&d.join("memory.stat"), "inactive_file"));
        s.pids.current = read_u64(&d.join("pids.current"));
        s.pids.limit = read_u64(&d.join("pids.max"));
    } else {
        let find = |file: &str| paths.iter().map(|p| p.join(file)).find(|p| p.exists());
        if let Some(p) = find("cpuacct.usage") {
            s.cpu.usage_total_ns = read_u64(&p);
        }
        if let Some(p) = find("memory.usage_in_bytes") {
            s.memory.usage = read_u64(&p);
            let dir = p.parent().unwrap_or(Path::new("/"));
            let limit = read_u64(&dir.join("memory.limit_in_bytes"));
            // v1 reports "unlimited" as a huge page-aligned number.
            s.memory.limit = if limit >= (1 << 62) { 0 } else { limit };
            s.memory.working_set = s
                .memory
                .usage
                .saturating_sub(stat_key(&dir.join("memory.stat"), "total_inactive_file"));
        }
        if let Some(p) = find("pids.current") {
            s.pids.current = read_u64(&p);
            s.pids.limit = read_u64(&p.with_file_name("pids.max"));
        }
    }
    s.memory.oom_kills = super::oom_kills(&paths, cg.v2);
    s
}
