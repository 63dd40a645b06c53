//! Turns a mount's `options` list into mount(2) flags, propagation changes,
//! recursive attributes and the filesystem data string. Pure logic.

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
/// The access-time mode is an enum in these bits, not flags: mount_setattr(2)
/// wants all of them in attr_clr whenever a mode is set.
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// MS_* flags to set.
    pub flags: libc::c_ulong,
    /// Propagation changes (MS_PRIVATE, MS_REC|MS_SLAVE, ...), applied after the mount.
    pub propagation: Vec<libc::c_ulong>,
    /// MOUNT_ATTR_* set / cleared recursively (`rro`, `rnosuid`, ...), via mount_setattr.
    pub rec_set: u64,
    pub rec_clear: u64,
    /// Everything that is not a flag, joined by ',' for the filesystem.
    pub data: String,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "silent" => (libc::MS_SILENT, 0),
            "loud" => (0, libc::MS_SILENT),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "nosymfollow" => (libc::MS_NOSYMFOLLOW, 0),
            "symfollow" => (0, libc::MS_NOSYMFOLLOW),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation.push(propagation_flag(opt).unwrap_or(0));
                continue;
            }
            "rnoatime" | "ratime" | "rrelatime" | "rnorelatime" | "rstrictatime"
            | "rnostrictatime" => {
                // The last access-time option wins; the mode replaces any other.
                o.rec_set = (o.rec_set & !MOUNT_ATTR__ATIME) | recursive_atime(opt);
                o.rec_clear |= MOUNT_ATTR__ATIME;
                continue;
            }
            "rro" | "rrw" | "rnosuid" | "rsuid" | "rnodev" | "rdev" | "rnoexec" | "rexec"
            | "rnodiratime" | "rdiratime" | "rnosymfollow" | "rsymfollow" => {
                let (attr, set) = recursive_attr(opt);
                if set {
                    o.rec_set |= attr;
                } else {
                    o.rec_clear |= attr;
                }
                continue;
            }
            // Handled elsewhere or meaningless for the kernel.
            "tmpcopyup" | "idmap" | "ridmap" | "defaults" => continue,
            _ => {
                data.push(opt.as_str());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
    }
    o.data = data.join(",");
    o
}

/// rootfsPropagation and mount propagation option names to their flags.
pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// The recursive access-time modes, as runc sets them: `rnoatime` and
/// `rstrictatime` set their mode; `ratime`, `rnostrictatime` (clearing a mode)
/// and `rrelatime` give relatime, the kernel's default, and so does
/// `rnorelatime` (clearing MOUNT_ATTR_RELATIME, which is 0, leaves the default).
fn recursive_atime(opt: &str) -> u64 {
    match opt {
        "rnoatime" => MOUNT_ATTR_NOATIME,
        "rstrictatime" => MOUNT_ATTR_STRICTATIME,
        _ => MOUNT_ATTR_RELATIME,
    }
}

fn recursive_attr(opt: &str) -> (u64, bool) {
    match opt {
        "rro" => (MOUNT_ATTR_RDONLY, true),
        "rrw" => (MOUNT_ATTR_RDONLY, false),
        "rnosuid" => (MOUNT_ATTR_NOSUID, true),
        "rsuid" => (MOUNT_ATTR_NOSUID, false),
        "rnodev" => (MOUNT_ATTR_NODEV, true),
        "rdev" => (MOUNT_ATTR_NODEV, false),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, true),
        "rexec" => (MOUNT_ATTR_NOEXEC, false),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, true),
        "rdiratime" => (MOUNT_ATTR_NODIRATIME, false),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, true),
        _ => (MOUNT_ATTR_NOSYMFOLLOW, false),
    }
}

/// Every option name this runtime understands, for `features`.
pub const KNOWN: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = p(&["rbind", "ro", "rslave"]);
        assert!(o.is_bind());
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
    }

    #[test]
    fn later_options_override_earlier() {
        assert_eq!(p(&["ro", "rw"]).flags, 0);
        assert_eq!(p(&["rw", "ro"]).flags, libc::MS_RDONLY);
    }

    #[test]
    fn recursive_atime_sets_the_mode_with_all_atime_bits_cleared() {
        let o = p(&["rbind", "rnoatime"]);
        assert_eq!(o.rec_set, MOUNT_ATTR_NOATIME);
        assert_eq!(o.rec_clear, MOUNT_ATTR__ATIME);
        let o = p(&["rbind", "rnoatime", "rstrictatime"]);
        assert_eq!(o.rec_set, MOUNT_ATTR_STRICTATIME, "the last one wins");
        assert_eq!(o.rec_clear, MOUNT_ATTR__ATIME);
        let o = p(&["rbind", "ratime", "rnodiratime"]);
        assert_eq!(o.rec_set, MOUNT_ATTR_NODIRATIME);
        assert_eq!(o.rec_clear, MOUNT_ATTR__ATIME);
        let o = p(&["rbind", "rstrictatime", "rnorelatime"]);
        assert_eq!(o.rec_set, MOUNT_ATTR_RELATIME, "as runc");
        assert_eq!(o.rec_clear, MOUNT_ATTR__ATIME);
    }

    #[test]
    fn recursive_attributes() {
        let o = p(&["rbind", "rro", "rnosuid"]);
        assert_eq!(o.rec_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        assert_eq!(o.flags & libc::MS_RDONLY, 0);
    }
}
