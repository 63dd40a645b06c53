//! linux.intelRdt through the resctrl filesystem: the container's processes go in
//! a resource group (`closID`, or the container's id) whose `schemata` gets the
//! config's lines. A host without resctrl mounted cannot do this: create fails,
//! saying so, rather than running the container without the asked-for limits.

use crate::error::{Error, Result};
use oci_spec::runtime::LinuxIntelRdt;
use std::path::PathBuf;

/// The resource group of a container.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RdtGroup {
    pub dir: PathBuf,
    /// Made for this container (removed with it); a closID naming an existing
    /// group is shared and left alone.
    pub created: bool,
}

/// Where resctrl is mounted, from this process's mountinfo.
pub fn resctrl_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split(' ').next() == Some("resctrl"))
            .then(|| pre.split(' ').nth(4).map(PathBuf::from))
            .flatten()
    })
}

fn err(msg: impl Into<String>) -> Error {
    Error::config("linux.intelRdt", msg)
}

/// Creates (or joins) the group and writes its schemata.
pub fn setup(rdt: &LinuxIntelRdt, id: &str) -> Result<RdtGroup> {
    let mount = resctrl_mount().ok_or_else(|| {
        err("resctrl is not mounted on this host (a CPU with Intel RDT or AMD QoS and `mount -t resctrl resctrl /sys/fs/resctrl` are needed), so closID and schemata cannot be applied")
    })?;
    let name = rdt.clos_id().as_deref().unwrap_or(id);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(err(format!("closID {name:?} is not a group name")));
    }
    let dir = mount.join(name);
    let created = match std::fs::create_dir(&dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && rdt.clos_id().is_some() => false,
        Err(e) => return Err(err(format!("creating {}: {e}", dir.display()))),
    };
    let group = RdtGroup { dir, created };
    if created {
        let mut lines: Vec<&str> = Vec::new();
        lines.extend(rdt.l3_cache_schema().as_deref());
        lines.extend(rdt.mem_bw_schema().as_deref());
        lines.extend(rdt.schemata().iter().flatten().map(String::as_str));
        for line in lines
            .iter()
            .flat_map(|l| l.lines())
            .filter(|l| !l.trim().is_empty())
        {
            let file = group.dir.join("schemata");
            if let Err(e) = std::fs::write(&file, format!("{line}\n")) {
                let info =
                    std::fs::read_to_string(mount.join("info/last_cmd_status")).unwrap_or_default();
                group.remove();
                return Err(err(format!(
                    "writing {line:?} to {}: {e} {}",
                    file.display(),
                    info.trim()
                )));
            }
        }
    }
    Ok(group)
}

impl RdtGroup {
    pub fn add(&self, pid: i32) -> Result<()> {
        let file = self.dir.join("tasks");
        std::fs::write(&file, pid.to_string())
            .map_err(|e| err(format!("adding pid {pid} to {}: {e}", file.display())))
    }

    /// Removes the group if it was made for this container.
    pub fn remove(&self) {
        if self.created {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}
