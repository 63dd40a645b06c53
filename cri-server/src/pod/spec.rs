//! The pause's OCI config, and what a pod gives each of its containers: the
//! namespaces to join, its files, its user namespace.

use berth_bundle::oci::LinuxNamespaceType;
use berth_bundle::{Container as Bundle, Seccomp, id_mapping};
use berth_proto::v1::{self as cri, NamespaceMode};
use std::path::Path;

pub fn ns_options(c: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

pub fn host_network(c: &cri::PodSandboxConfig) -> bool {
    ns_options(c).network == NamespaceMode::Node as i32
}

/// What the pod gives each of its containers.
pub struct PodContext<'a> {
    pub id: &'a str,
    pub config: &'a cri::PodSandboxConfig,
    pub dir: &'a Path,
    pub netns: Option<&'a Path>,
    pub pause_pid: i32,
    pub cgroup_parent: &'a str,
}

impl PodContext<'_> {
    fn ns_options(&self) -> cri::NamespaceOption {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default()
    }

    pub fn hostname(&self) -> String {
        if !self.config.hostname.is_empty() {
            return self.config.hostname.clone();
        }
        nix_hostname()
    }
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The pod's user namespace mappings, when it has one of its own (mode POD).
pub fn pod_userns(pod: &cri::PodSandboxConfig) -> Option<cri::UserNamespace> {
    pod.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.clone())
        .filter(|u| mode(u.mode) == NamespaceMode::Pod)
}

/// Checks a pod's user namespace request: POD with one uid and one gid mapping
/// that maps container ID 0, or NODE (the host's); kubelet asks for nothing else.
pub fn check_userns(pod: &cri::PodSandboxConfig) -> Result<(), String> {
    let Some(u) = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref())
    else {
        return Ok(());
    };
    match mode(u.mode) {
        NamespaceMode::Node => Ok(()),
        NamespaceMode::Pod => {
            for (what, maps) in [("uids", &u.uids), ("gids", &u.gids)] {
                if maps.len() != 1 {
                    return Err(format!(
                        "userns_options.{what}: exactly one mapping is supported, got {}",
                        maps.len()
                    ));
                }
                if maps[0].container_id != 0 || maps[0].length == 0 {
                    return Err(format!(
                        "userns_options.{what}: the mapping must start at container ID 0 and not be empty"
                    ));
                }
            }
            Ok(())
        }
        other => Err(format!(
            "userns_options.mode {other:?}: a user namespace is per pod (POD) or the host's (NODE)"
        )),
    }
}

pub fn mode(v: i32) -> NamespaceMode {
    NamespaceMode::try_from(v).unwrap_or(NamespaceMode::Pod)
}

/// The uid or gid mappings of the pod's user namespace.
pub fn id_maps(maps: &[cri::IdMapping]) -> Vec<berth_bundle::oci::LinuxIdMapping> {
    maps.iter()
        .map(|m| id_mapping(m.container_id, m.host_id, m.length))
        .collect()
}

/// The pause: holds the pod's IPC, UTS and (unless the host's) PID namespaces,
/// joins the pinned network namespace. No privileges, a read-only root.
pub fn pause(pod: &PodContext, rootfs: &Path) -> Result<berth_bundle::oci::Spec, String> {
    let ns = pod.ns_options();
    let linux = pod.config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let mut b = Bundle::new(rootfs, false);
    b.readonly_rootfs = true;
    b.user.uid = 65535;
    b.user.gid = 65535;
    b.args = vec!["/pause".into()];
    b.env = vec![berth_bundle::image::DEFAULT_PATH.into()];
    b.capabilities.clear();
    b.no_new_privileges = true;
    b.oom_score_adj = Some(-998);
    b.mounts = vec![
        berth_bundle::mounts::mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        berth_bundle::mounts::mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=64k"],
        ),
    ];
    b.namespace(LinuxNamespaceType::Mount, None);
    let userns = pod_userns(pod.config);
    if userns.is_some() {
        b.namespace(LinuxNamespaceType::User, None);
    }
    if mode(ns.ipc) != NamespaceMode::Node {
        b.namespace(LinuxNamespaceType::Ipc, None);
    }
    if mode(ns.network) != NamespaceMode::Node {
        b.namespace(LinuxNamespaceType::Uts, None);
        b.hostname = Some(pod.hostname());
    }
    if mode(ns.pid) != NamespaceMode::Node {
        b.namespace(LinuxNamespaceType::Pid, None);
    }
    if let Some(n) = pod.netns {
        b.namespace(LinuxNamespaceType::Network, Some(n.to_path_buf()));
    }
    b.cgroups_path = format!("{}/{}", pod.cgroup_parent, pod.id);
    b.sysctl = linux.sysctls.clone();
    if let Some(u) = &userns {
        b.uid_mappings = id_maps(&u.uids);
        b.gid_mappings = id_maps(&u.gids);
        // The pod's network namespace belongs to the host's user namespace:
        // net sysctls cannot be written from inside this one.
        b.sysctl.clear();
    }
    b.seccomp = if sc.privileged {
        Seccomp::Unconfined
    } else {
        Seccomp::RuntimeDefault
    };
    b.build()
}
