//! The mounts of a container's OCI config.

use oci_spec::runtime::{Mount, MountBuilder};
use std::path::Path;

/// A mount of `typ` from `source` at `destination`.
pub fn mount(destination: &str, typ: &str, source: impl AsRef<Path>, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source.as_ref())
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect("a mount with a destination is complete")
}

/// A bind mount of the host's `source` (recursive unless asked otherwise).
pub fn bind(source: impl AsRef<Path>, destination: &str, options: &[&str]) -> Mount {
    mount(destination, "bind", source, options)
}

/// The filesystems every container gets: proc, a /dev tmpfs with devpts and
/// mqueue, sysfs and the cgroups, the last two read-only unless privileged.
pub fn defaults(privileged: bool) -> Vec<Mount> {
    let sys = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys],
        ),
    ]
}

/// In a user namespace that does not own the network namespace, sysfs and
/// cgroupfs cannot be mounted: the host's /sys instead, read-only, recursively.
pub fn host_sys_read_only(mounts: &mut Vec<Mount>) {
    mounts.retain(|m| {
        let d = m.destination();
        d != Path::new("/sys") && d != Path::new("/sys/fs/cgroup")
    });
    mounts.push(bind(
        "/sys",
        "/sys",
        &["rbind", "rprivate", "nosuid", "noexec", "nodev", "ro"],
    ));
}
