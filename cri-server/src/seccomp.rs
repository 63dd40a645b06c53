//! Seccomp profiles for the OCI spec: `RuntimeDefault`, and `Localhost` files in
//! the docker/containerd profile format.
//!
//! The default refuses (EPERM) what docker's default profile refuses to a
//! container lacking the matching capability: kernel modules, kexec, reboot,
//! clock setting, keyrings, mounts and new namespaces, ptrace and cross-process
//! memory access, BPF and perf, and the like; `clone3` answers ENOSYS so libc
//! falls back to `clone`, whose namespace flags can be checked.

use serde_json::{Value, json};

/// (syscalls, the capability that unlocks them, or "" for never)
const REFUSED: &[(&[&str], &str)] = &[
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
        "CAP_SYS_ADMIN",
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
        "CAP_SYS_MODULE",
    ),
    (&["kexec_file_load", "kexec_load", "reboot"], "CAP_SYS_BOOT"),
    (
        &[
            "clock_adjtime",
            "clock_settime",
            "settimeofday",
            "stime",
            "adjtimex",
        ],
        "CAP_SYS_TIME",
    ),
    (&["acct"], "CAP_SYS_PACCT"),
    (
        &[
            "kcmp",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
            "pidfd_getfd",
        ],
        "CAP_SYS_PTRACE",
    ),
    (&["iopl", "ioperm"], "CAP_SYS_RAWIO"),
    (
        &["get_mempolicy", "mbind", "set_mempolicy", "move_pages"],
        "CAP_SYS_NICE",
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
        "",
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

fn architectures() -> Value {
    json!([
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM"
    ])
}

/// The RuntimeDefault profile for a process with capabilities `caps`.
pub fn default_profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut refused: Vec<&str> = REFUSED
        .iter()
        .filter(|(_, cap)| cap.is_empty() || !has(cap))
        .flat_map(|(names, _)| names.iter().copied())
        .collect();
    refused.sort_unstable();
    let mut syscalls =
        vec![json!({"names": refused, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})];
    if !has("CAP_SYS_ADMIN") {
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
        for flag in CLONE_NAMESPACE_FLAGS {
            syscalls.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]
            }));
        }
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": syscalls
    })
}

/// A profile file in the docker/containerd format, turned into the OCI form:
/// `name` becomes `names`; rules with `includes`/`excludes` of capabilities keep
/// only what applies to `caps`.
pub fn localhost_profile(text: &str, caps: &[String]) -> Result<Value, String> {
    let p: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON seccomp profile: {e}"))?;
    let default_action = p["defaultAction"]
        .as_str()
        .ok_or("the profile has no defaultAction")?;
    let has = |c: &Value| c.as_str().is_some_and(|c| caps.iter().any(|x| x == c));
    let mut syscalls = Vec::new();
    for rule in p["syscalls"].as_array().into_iter().flatten() {
        let inc = &rule["includes"]["caps"];
        if let Some(need) = inc.as_array()
            && !need.iter().all(has)
        {
            continue;
        }
        if let Some(not) = rule["excludes"]["caps"].as_array()
            && not.iter().any(has)
        {
            continue;
        }
        let mut r = serde_json::Map::new();
        let names: Vec<Value> = match (&rule["names"], &rule["name"]) {
            (Value::Array(n), _) => n.clone(),
            (_, Value::String(n)) => vec![json!(n)],
            _ => continue,
        };
        r.insert("names".into(), Value::Array(names));
        for k in ["action", "args", "errnoRet"] {
            if !rule[k].is_null() {
                r.insert(k.into(), rule[k].clone());
            }
        }
        syscalls.push(Value::Object(r));
    }
    let mut out = json!({"defaultAction": default_action, "syscalls": syscalls});
    out["architectures"] = match &p["architectures"] {
        Value::Array(a) if !a.is_empty() => Value::Array(a.clone()),
        _ => architectures(),
    };
    for k in ["defaultErrnoRet", "flags"] {
        if !p[k].is_null() {
            out[k] = p[k].clone();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let names = |p: &Value| p["syscalls"][0]["names"].as_array().unwrap().clone();
        let plain = default_profile(&[]);
        assert!(names(&plain).contains(&json!("mount")));
        assert!(names(&plain).contains(&json!("keyctl")));
        assert!(
            plain["syscalls"].as_array().unwrap().len() > 2,
            "clone flags are checked"
        );
        let admin = default_profile(&["CAP_SYS_ADMIN".into()]);
        assert!(!names(&admin).contains(&json!("mount")));
        assert!(names(&admin).contains(&json!("keyctl")), "never unlocked");
        assert_eq!(admin["syscalls"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn docker_format_profiles_convert() {
        let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"name":"chmod","action":"SCMP_ACT_ERRNO"},
            {"names":["mount"],"action":"SCMP_ACT_ERRNO","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
        let p = localhost_profile(text, &[]).unwrap();
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 1);
        assert_eq!(p["syscalls"][0]["names"], json!(["chmod"]));
        assert!(localhost_profile("{}", &[]).is_err());
    }
}
