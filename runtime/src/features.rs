//! `berth-runtime features`: what this runtime supports, in the OCI features format.

use serde_json::{Value, json};

pub fn features() -> Value {
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let mut caps = caps;
    caps.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::mount_options::KNOWN,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": crate::rdt::resctrl_mount().is_some(), "schemata": true},
            "memoryPolicy": {
                "modes": ["MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                          "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "netDevices": {"enabled": true},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        // checkpoint/restore run CRIU: enabled where it is installed.
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": criu_found().to_string()}
    })
}

fn criu_found() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("criu").is_file()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_parse_as_the_spec_type_and_name_what_berth_does() {
        let v = super::features();
        let f: oci_spec::runtime::Features = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(f.oci_version_max(), "1.3.0");
        assert_eq!(v["linux"]["netDevices"]["enabled"], true);
        assert!(
            v["linux"]["memoryPolicy"]["modes"]
                .as_array()
                .unwrap()
                .contains(&"MPOL_BIND".into())
        );
        assert!(
            v["mountOptions"]
                .as_array()
                .unwrap()
                .contains(&"rstrictatime".into())
        );
    }
}
