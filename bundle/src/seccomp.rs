//! Seccomp profiles for the OCI config: `RuntimeDefault`, and `Localhost` files in
//! the docker/containerd profile format, as oci-spec's typed `LinuxSeccomp`.
//!
//! The default refuses (EPERM) what docker's default profile refuses to a
//! container lacking the matching capability: kernel modules, kexec, reboot,
//! clock setting, keyrings, mounts and new namespaces, ptrace and cross-process
//! memory access, BPF and perf, and the like; `clone3` answers ENOSYS so libc
//! falls back to `clone`, whose namespace flags can be checked.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

/// (syscalls, the capability that unlocks them, or None for never)
const REFUSED: &[(&[&str], Option<Capability>)] = &[
    (
        &[
            "bpf",
            "fanotify_init",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "open_tree",
            "name_to_handle_at",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
            "pivot_root",
        ],
        Some(Capability::SysAdmin),
    ),
    (
        &[
            "create_module",
            "delete_module",
            "finit_module",
            "init_module",
            "query_module",
            "get_kernel_syms",
        ],
        Some(Capability::SysModule),
    ),
    (
        &["kexec_file_load", "kexec_load", "reboot"],
        Some(Capability::SysBoot),
    ),
    (
        &[
            "clock_adjtime",
            "clock_settime",
            "settimeofday",
            "stime",
            "adjtimex",
        ],
        Some(Capability::SysTime),
    ),
    (&["acct"], Some(Capability::SysPacct)),
    (
        &[
            "kcmp",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
            "pidfd_getfd",
        ],
        Some(Capability::SysPtrace),
    ),
    (&["iopl", "ioperm"], Some(Capability::SysRawio)),
    (
        &["get_mempolicy", "mbind", "set_mempolicy", "move_pages"],
        Some(Capability::SysNice),
    ),
    (
        &[
            "add_key",
            "keyctl",
            "request_key",
            "nfsservctl",
            "swapon",
            "swapoff",
            "sysfs",
            "_sysctl",
            "uselib",
            "userfaultfd",
            "ustat",
            "vm86",
            "vm86old",
        ],
        None,
    ),
];

/// The namespace flags of clone(2) a container without CAP_SYS_ADMIN may not use.
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

const ARCHITECTURES: &[Arch] = &[
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX86,
    Arch::ScmpArchX32,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchArm,
];

fn refuse(names: Vec<String>, errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let rule = LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno);
    match args {
        Some(a) => rule.args(a),
        None => rule,
    }
    .build()
    .expect("a syscall rule with names and an action is complete")
}

/// The RuntimeDefault profile for a process with capabilities `caps`.
pub fn default_profile(caps: &[Capability]) -> LinuxSeccomp {
    let lacks = |c: &Option<Capability>| c.is_none_or(|c| !caps.contains(&c));
    let mut refused: Vec<String> = REFUSED
        .iter()
        .filter(|(_, cap)| lacks(cap))
        .flat_map(|(names, _)| names.iter().map(|n| n.to_string()))
        .collect();
    refused.sort_unstable();
    let mut syscalls = vec![refuse(refused, EPERM, None)];
    if !caps.contains(&Capability::SysAdmin) {
        syscalls.push(refuse(vec!["clone3".into()], ENOSYS, None));
        for flag in CLONE_NAMESPACE_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(*flag)
                .value_two(*flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()
                .expect("a complete argument rule");
            syscalls.push(refuse(vec!["clone".into()], EPERM, Some(vec![arg])));
        }
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(ARCHITECTURES.to_vec())
        .syscalls(syscalls)
        .build()
        .expect("a profile with a default action is complete")
}

/// A profile file in the docker/containerd format.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    syscalls: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleFile {
    #[serde(default)]
    names: Vec<String>,
    /// docker's older single-name form
    name: Option<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: CapsFilter,
    #[serde(default)]
    excludes: CapsFilter,
}

#[derive(Default, Deserialize)]
struct CapsFilter {
    caps: Option<Vec<String>>,
}

/// A profile file in the docker/containerd format, in the OCI form: `name`
/// becomes `names`; rules with `includes`/`excludes` of capabilities keep only
/// what applies to `caps`.
pub fn localhost_profile(text: &str, caps: &[Capability]) -> Result<LinuxSeccomp, String> {
    let p: ProfileFile =
        serde_json::from_str(text).map_err(|e| format!("not a JSON seccomp profile: {e}"))?;
    let has = |c: &String| crate::caps::parse(c).is_ok_and(|c| caps.contains(&c));
    let mut syscalls = Vec::new();
    for rule in p.syscalls {
        if let Some(need) = &rule.includes.caps
            && !need.iter().all(has)
        {
            continue;
        }
        if let Some(not) = &rule.excludes.caps
            && not.iter().any(has)
        {
            continue;
        }
        let names = match rule.name {
            Some(n) if rule.names.is_empty() => vec![n],
            _ => rule.names,
        };
        if names.is_empty() {
            continue;
        }
        let mut r = LinuxSyscallBuilder::default()
            .names(names)
            .action(rule.action)
            .build()
            .map_err(|e| format!("a syscall rule: {e}"))?;
        r.set_errno_ret(rule.errno_ret);
        r.set_args(rule.args);
        syscalls.push(r);
    }
    let architectures = if p.architectures.is_empty() {
        ARCHITECTURES.to_vec()
    } else {
        p.architectures
    };
    let mut out = LinuxSeccompBuilder::default()
        .default_action(p.default_action)
        .architectures(architectures)
        .syscalls(syscalls)
        .build()
        .map_err(|e| format!("the profile: {e}"))?;
    out.set_default_errno_ret(p.default_errno_ret);
    out.set_flags(p.flags);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_names(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls().as_ref().unwrap()[0].names().clone()
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let plain = default_profile(&[]);
        assert!(first_names(&plain).contains(&"mount".to_string()));
        assert!(first_names(&plain).contains(&"keyctl".to_string()));
        assert!(
            plain.syscalls().as_ref().unwrap().len() > 2,
            "clone flags are checked"
        );
        let admin = default_profile(&[Capability::SysAdmin]);
        assert!(!first_names(&admin).contains(&"mount".to_string()));
        assert!(
            first_names(&admin).contains(&"keyctl".to_string()),
            "never unlocked"
        );
        assert_eq!(admin.syscalls().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn the_default_profile_serialises_as_the_runtime_reads_it() {
        let v = serde_json::to_value(default_profile(&[])).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(v["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(v["syscalls"][0]["errnoRet"], 1);
        assert_eq!(v["syscalls"][2]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(v["architectures"][0], "SCMP_ARCH_X86_64");
    }

    #[test]
    fn docker_format_profiles_convert() {
        let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"name":"chmod","action":"SCMP_ACT_ERRNO"},
            {"names":["mount"],"action":"SCMP_ACT_ERRNO","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
        let p = localhost_profile(text, &[]).unwrap();
        assert_eq!(p.syscalls().as_ref().unwrap().len(), 1);
        assert_eq!(first_names(&p), vec!["chmod"]);
        let admin = localhost_profile(text, &[Capability::SysAdmin]).unwrap();
        assert_eq!(admin.syscalls().as_ref().unwrap().len(), 2);
        assert!(localhost_profile("{}", &[]).is_err());
        assert!(
            localhost_profile(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#, &[]).is_err(),
            "an unknown action is refused, not passed on"
        );
    }
}
