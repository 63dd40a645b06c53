//! Device nodes a container gets, and the cgroup rules that let it use them.

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The node at `host`, at `container_path` in the container (the same path when empty).
pub fn from_host(host: &Path, container_path: &str) -> Result<LinuxDevice, String> {
    let md = std::fs::metadata(host).map_err(|e| format!("device {}: {e}", host.display()))?;
    let ft = md.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(format!("{} is not a device", host.display()));
    };
    let path = if container_path.is_empty() {
        host.to_path_buf()
    } else {
        container_path.into()
    };
    let rdev = md.rdev();
    LinuxDeviceBuilder::default()
        .path(path)
        .typ(typ)
        .major(libc::major(rdev) as i64)
        .minor(libc::minor(rdev) as i64)
        .file_mode(md.mode() & 0o777)
        .uid(0u32)
        .gid(0u32)
        .build()
        .map_err(|e| format!("device {}: {e}", host.display()))
}

/// Every device node under /dev, for a privileged container (not pts, shm,
/// mqueue or the console, which the container has its own of).
pub fn all_on_host() -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out
}

fn walk(dir: &Path, out: &mut Vec<LinuxDevice>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !matches!(e.file_name().to_str(), Some("pts" | "shm" | "mqueue")) {
                walk(&p, out);
            }
        } else if !ft.is_symlink()
            && p != Path::new("/dev/console")
            && let Ok(d) = from_host(&p, &p.to_string_lossy())
        {
            out.push(d);
        }
    }
}

/// A rule for every device: all allowed or all denied.
pub fn rule_all(allow: bool) -> LinuxDeviceCgroup {
    LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access("rwm")
        .build()
        .expect("a complete device rule")
}

/// A rule that allows `access` (`rwm` when empty) to the node `d`.
pub fn rule_for(d: &LinuxDevice, access: &str) -> LinuxDeviceCgroup {
    LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(d.typ())
        .major(d.major())
        .minor(d.minor())
        .access(if access.is_empty() { "rwm" } else { access })
        .build()
        .expect("a complete device rule")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_node_and_its_rule() {
        let d = from_host(Path::new("/dev/null"), "/dev/mynull").unwrap();
        assert_eq!(d.path(), Path::new("/dev/mynull"));
        assert_eq!((d.typ(), d.major(), d.minor()), (LinuxDeviceType::C, 1, 3));
        let r = rule_for(&d, "");
        assert_eq!(r.access().as_deref(), Some("rwm"));
        assert!(from_host(Path::new("/etc/hostname"), "").is_err());
    }
}
