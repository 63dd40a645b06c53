//! Capabilities: containerd's default set, "all" as this host allows, and the
//! add/drop lists (with "ALL") that the CRI and `berth run --cap-add` give.

use oci_spec::runtime::Capability;

/// containerd's (and docker's) default capability set.
pub const DEFAULT: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability, by its bit number in the kernel's masks.
const BY_BIT: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// "All capabilities": those this process holds in its bounding set (this host
/// may lack some, e.g. CAP_SYS_RESOURCE), as containerd builds them.
pub fn all() -> Vec<Capability> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bits = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    BY_BIT
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1u64 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// `CAP_NET_ADMIN`, `NET_ADMIN` or `net_admin`.
pub fn parse(name: &str) -> Result<Capability, String> {
    let up = name.to_ascii_uppercase();
    up.strip_prefix("CAP_")
        .unwrap_or(&up)
        .parse()
        .map_err(|_| format!("unknown capability {name:?}"))
}

/// The name as the kernel and the OCI config write it: `CAP_NET_ADMIN`.
pub fn name(c: Capability) -> String {
    format!("CAP_{c}")
}

/// The set a container gets: all for a privileged one; otherwise the default
/// set, then `add` (where "ALL" means all), then `drop` (where "ALL" means none).
pub fn resolve(
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<Capability>, String> {
    let all = all();
    if privileged {
        return Ok(all);
    }
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    let mut set = DEFAULT.to_vec();
    if add.iter().any(is_all) {
        set = all;
    }
    if drop.iter().any(is_all) {
        set.clear();
    }
    for a in add.iter().filter(|a| !is_all(a)) {
        let c = parse(a)?;
        if !set.contains(&c) {
            set.push(c);
        }
    }
    for d in drop.iter().filter(|d| !is_all(d)) {
        let c = parse(d)?;
        set.retain(|x| *x != c);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn add_and_drop_with_all() {
        let c = |add: &[&str], drop: &[&str]| resolve(&strings(add), &strings(drop), false);
        let set = c(&["SYS_ADMIN"], &["CHOWN"]).unwrap();
        assert!(set.contains(&Capability::SysAdmin) && !set.contains(&Capability::Chown));
        assert_eq!(
            c(&["NET_ADMIN"], &["ALL"]).unwrap(),
            vec![Capability::NetAdmin]
        );
        assert!(c(&["NOT_A_CAP"], &[]).is_err());
        assert_eq!(c(&["ALL"], &[]).unwrap(), all());
        assert_eq!(c(&["cap_kill"], &[]).unwrap(), DEFAULT.to_vec());
    }

    #[test]
    fn names_carry_the_prefix() {
        assert_eq!(name(Capability::NetBindService), "CAP_NET_BIND_SERVICE");
        assert_eq!(
            parse("CAP_NET_BIND_SERVICE").unwrap(),
            Capability::NetBindService
        );
    }
}
