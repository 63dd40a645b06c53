//! cgroup v2 (unified): enabling controllers on the way down and turning OCI
//! resources into file writes.

use super::Write;
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use std::path::Path;

/// Enables every available controller in each ancestor's `cgroup.subtree_control`,
/// from the hierarchy root down to `path`'s parent, so `path` gets them.
pub fn enable_controllers(mountpoint: &Path, path: &Path) -> Result<()> {
    let available =
        std::fs::read_to_string(mountpoint.join("cgroup.controllers")).unwrap_or_default();
    let Ok(rel) = path.strip_prefix(mountpoint) else {
        return Ok(());
    };
    let mut dir = mountpoint.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        let enabled =
            std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        for c in available.split_whitespace() {
            if !enabled.split_whitespace().any(|e| e == c) {
                // A controller the kernel will not delegate here is reported when a
                // resource file of it is written, with the file named.
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
        dir.push(comp);
        if i + 1 < comps.len() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::cgroup(&dir, format!("cannot create: {e}")))?;
        }
    }
    Ok(())
}

fn w(file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller: "",
        file: file.into(),
        value: value.to_string(),
    }
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), as runc and the kernel docs map it.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + (shares.saturating_sub(2) * 9999) / 262_142
    }
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

pub fn writes(res: &LinuxResources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            out.push(w("memory.max", limit(l)));
        }
        if let Some(r) = m.reservation() {
            out.push(w("memory.low", limit(r)));
        }
        // OCI swap is memory+swap; v2 limits swap alone.
        if let Some(s) = m.swap() {
            let v = match (s, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l > 0 => (s - l).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            out.push(w("memory.swap.max", v));
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            out.push(w("cpu.weight", shares_to_weight(s)));
        }
        let quota = c.quota().filter(|q| *q != 0);
        let period = c.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let q = quota.map_or("max".to_string(), limit);
            out.push(w("cpu.max", format!("{q} {}", period.unwrap_or(100_000))));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset.mems", mems));
        }
    }
    if let Some(p) = res.pids() {
        out.push(w(
            "pids.max",
            if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".to_string()
            },
        ));
    }
    if let Some(b) = res.block_io() {
        if let Some(wt) = b.weight() {
            out.push(w("io.weight", format!("default {wt}")));
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(wt) = d.weight() {
                out.push(w("io.weight", format!("{}:{} {wt}", d.major(), d.minor())));
            }
        }
        for (list, key) in [
            (b.throttle_read_bps_device(), "rbps"),
            (b.throttle_write_bps_device(), "wbps"),
            (b.throttle_read_iops_device(), "riops"),
            (b.throttle_write_iops_device(), "wiops"),
        ] {
            for d in list.as_deref().unwrap_or_default() {
                out.push(w(
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for h in res.hugepage_limits().as_deref().unwrap_or_default() {
        out.push(w(format!("hugetlb.{}.max", h.page_size()), h.limit()));
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<_> = u.iter().collect();
        keys.sort();
        for (k, v) in keys {
            if k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(Error::config(
                    "linux.resources.unified",
                    format!("{k:?} is not a cgroup file name"),
                ));
            }
            out.push(w(k.clone(), v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_become_v2_writes() {
        let res: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576, "swap": 2097152},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
            "pids": {"limit": -1},
            "unified": {"memory.high": "900000"}
        }))
        .unwrap();
        let got: Vec<(String, String)> = writes(&res)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        let want = [
            ("memory.max", "1048576"),
            ("memory.swap.max", "1048576"),
            ("cpu.weight", "39"),
            ("cpu.max", "50000 100000"),
            ("pids.max", "max"),
            ("memory.high", "900000"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unified_keys_cannot_escape() {
        let res: LinuxResources =
            serde_json::from_value(serde_json::json!({"unified": {"../../etc/passwd": "x"}}))
                .unwrap();
        assert!(writes(&res).is_err());
    }

    #[test]
    fn controllers_enabled_down_a_fake_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        let target = root.path().join("a/b");
        enable_controllers(root.path(), &target).unwrap();
        // A plain directory stands in for cgroupfs: each "+c" write replaces the file,
        // so the last controller is what the fake file holds.
        let top = std::fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(top, "+pids");
        assert!(root.path().join("a").is_dir());
        assert!(
            !target.exists(),
            "the leaf is created by Cgroup::create, not here"
        );
    }

    #[test]
    fn weight_mapping() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
    }
}
