//! A container's OCI config from its CRI request, the image and its pod, as
//! containerd builds it, on berth-bundle's builder.

use crate::pod::{PodContext, pod_userns};
use berth_bundle::oci::LinuxNamespaceType;
use berth_bundle::{Container as Bundle, ImageDefaults, Seccomp, User, caps, seccomp, users};
use berth_proto::v1::{self as cri, NamespaceMode, security_profile::ProfileType};
use std::path::{Path, PathBuf};

/// A container's config, and the user it runs as.
pub struct Built {
    pub spec: berth_bundle::oci::Spec,
    pub user: User,
    pub stop_signal: i32,
}

/// Where a TARGET pid namespace is: the target container's init, which only the
/// caller knows.
pub type TargetPid<'a> = &'a dyn Fn(&str) -> Result<i32, String>;

pub fn container(
    id: &str,
    c: &cri::ContainerConfig,
    image: &ImageDefaults,
    pod: &PodContext,
    rootfs: &Path,
    image_volumes: &[super::ImageVolume],
    target_pid: TargetPid,
) -> Result<Built, String> {
    let linux = c.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let res = linux.resources.clone().unwrap_or_default();
    let privileged = sc.privileged;
    let mut b = Bundle::new(rootfs, privileged);
    // The CRI's command replaces the entrypoint, its args the image's Cmd.
    let entrypoint = (!c.command.is_empty()).then_some(c.command.as_slice());
    b.args = image.args(entrypoint, &c.args);
    if b.args.is_empty() {
        return Err("no command: the container config has no command or args, and the image no Entrypoint or Cmd".into());
    }
    let hostname = pod.hostname();
    b.env = image.env.clone();
    for kv in &c.envs {
        // validate refused values that are not UTF-8; none is changed here.
        let value = std::str::from_utf8(&kv.value)
            .map_err(|_| format!("config.envs[{:?}]: the value is not UTF-8", kv.key))?;
        b.set_env(format!("{}={value}", kv.key));
    }
    b.default_path();
    if !b.env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        b.env.push(format!("HOSTNAME={hostname}"));
    }
    b.cwd = image.cwd(Some(&c.working_dir));
    if !b.cwd.starts_with('/') {
        return Err(format!("working_dir {:?} must be an absolute path", b.cwd));
    }
    b.terminal = c.tty;
    b.readonly_rootfs = sc.readonly_rootfs;
    b.no_new_privileges = sc.no_new_privs;
    b.oom_score_adj = (res.oom_score_adj != 0).then_some(res.oom_score_adj as i32);

    let pod_sc = pod
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    if sc.run_as_group.is_some() && sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
        return Err(
            "run_as_group needs run_as_user or run_as_username: a group alone names no user".into(),
        );
    }
    if privileged && !pod_sc.privileged {
        return Err("a privileged container needs a privileged pod sandbox".into());
    }
    b.user = users::resolve(
        rootfs,
        &users::Request {
            run_as_user: sc.run_as_user.as_ref().map(|v| v.value),
            run_as_group: sc.run_as_group.as_ref().map(|v| v.value),
            run_as_username: &sc.run_as_username,
            image_user: &image.user,
            supplemental_groups: &sc.supplemental_groups,
            strict_groups: sc.supplemental_groups_policy
                == cri::SupplementalGroupsPolicy::Strict as i32,
        },
    )?;
    let (add, drop) = sc
        .capabilities
        .as_ref()
        .map(|c| (c.add_capabilities.clone(), c.drop_capabilities.clone()))
        .unwrap_or_default();
    b.capabilities = caps::resolve(&add, &drop, privileged)?;
    if let Some(c) = &sc.capabilities {
        b.ambient = c
            .add_ambient_capabilities
            .iter()
            .map(|a| caps::parse(a))
            .collect::<Result<_, _>>()?;
    }

    // Namespaces: the pod's network, IPC and UTS; PID per the namespace mode.
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let pause_ns = |kind: &str| Some(PathBuf::from(format!("/proc/{}/ns/{kind}", pod.pause_pid)));
    b.namespace(LinuxNamespaceType::Mount, None);
    let userns = pod_userns(pod.config);
    if userns.is_some() {
        b.namespace(LinuxNamespaceType::User, pause_ns("user"));
    }
    match mode(ns.pid) {
        NamespaceMode::Node => {}
        NamespaceMode::Pod => b.namespace(LinuxNamespaceType::Pid, pause_ns("pid")),
        NamespaceMode::Target => {
            if ns.target_id.is_empty() {
                return Err("namespace_options.pid is TARGET but target_id is empty".into());
            }
            let pid = target_pid(&ns.target_id)?;
            b.namespace(
                LinuxNamespaceType::Pid,
                Some(format!("/proc/{pid}/ns/pid").into()),
            );
        }
        NamespaceMode::Container => b.namespace(LinuxNamespaceType::Pid, None),
    }
    if mode(ns.ipc) != NamespaceMode::Node {
        b.namespace(LinuxNamespaceType::Ipc, pause_ns("ipc"));
    }
    if mode(ns.network) != NamespaceMode::Node {
        b.namespace(LinuxNamespaceType::Uts, pause_ns("uts"));
        if let Some(n) = pod.netns {
            b.namespace(LinuxNamespaceType::Network, Some(n.to_path_buf()));
        }
    }
    b.namespace(LinuxNamespaceType::Cgroup, None);
    if mode(ns.network) != NamespaceMode::Node || !pod.config.hostname.is_empty() {
        b.hostname = Some(hostname);
    }

    if userns.is_some() {
        berth_bundle::mounts::host_sys_read_only(&mut b.mounts);
    }
    let wanted: Vec<&str> = c.mounts.iter().map(|m| m.container_path.as_str()).collect();
    let shm = if mode(ns.ipc) == NamespaceMode::Node {
        PathBuf::from("/dev/shm")
    } else {
        pod.dir.join("shm")
    };
    let etc_ro = if sc.readonly_rootfs { "ro" } else { "rw" };
    for (dest, src, opt) in [
        ("/dev/shm", shm, "rw"),
        ("/etc/hosts", pod.dir.join("hosts"), etc_ro),
        ("/etc/resolv.conf", pod.dir.join("resolv.conf"), etc_ro),
        ("/etc/hostname", pod.dir.join("hostname"), etc_ro),
    ] {
        if !wanted.contains(&dest) {
            b.mounts.push(berth_bundle::mounts::bind(
                src,
                dest,
                &["rbind", "rprivate", opt],
            ));
        }
    }
    for (index, m) in c.mounts.iter().enumerate() {
        if !m.container_path.starts_with('/') {
            return Err(format!(
                "mount container_path {:?} must be absolute",
                m.container_path
            ));
        }
        if crate::validate::image_of(m).is_some() {
            // An image volume: the image's layers, mounted read-only by berthd,
            // bound read-only, nosuid and nodev, never propagating, whatever
            // the request says of readonly and propagation.
            let v = image_volumes
                .iter()
                .find(|v| v.index == index && !v.source.is_empty())
                .ok_or_else(|| format!("image volume {:?} is not mounted", m.container_path))?;
            b.mounts.push(berth_bundle::mounts::bind(
                &v.source,
                &m.container_path,
                &["rbind", "rprivate", "ro", "nosuid", "nodev"],
            ));
            continue;
        }
        if m.host_path.is_empty() {
            return Err(format!("mount for {:?} has no host_path", m.container_path));
        }
        let src = Path::new(&m.host_path);
        if std::fs::symlink_metadata(src).is_err() {
            // As containerd (and docker before it): a missing host path is made a directory.
            std::fs::create_dir_all(src)
                .map_err(|e| format!("mount source {}: {e}", src.display()))?;
        }
        let prop = match cri::MountPropagation::try_from(m.propagation).unwrap_or_default() {
            cri::MountPropagation::PropagationPrivate => "rprivate",
            cri::MountPropagation::PropagationHostToContainer => {
                b.rootfs_propagation.get_or_insert("rslave".into());
                "rslave"
            }
            cri::MountPropagation::PropagationBidirectional => {
                b.rootfs_propagation = Some("rshared".into());
                "rshared"
            }
        };
        let mut opts = vec!["rbind", prop];
        if m.recursive_read_only {
            if !m.readonly {
                return Err(format!(
                    "mount {:?}: recursive_read_only needs readonly",
                    m.container_path
                ));
            }
            if prop != "rprivate" {
                return Err(format!(
                    "mount {:?}: recursive_read_only needs private propagation",
                    m.container_path
                ));
            }
            opts.push("rro");
        } else {
            opts.push(if m.readonly { "ro" } else { "rw" });
        }
        // KEP-5855's bind mount options (checked in validate: nodev, noexec,
        // nosuid), on the bind itself as runc applies them.
        for o in &m.mount_options {
            if !opts.contains(&o.as_str()) {
                opts.push(o.as_str());
            }
        }
        b.mounts.push(berth_bundle::mounts::bind(
            &m.host_path,
            &m.container_path,
            &opts,
        ));
    }
    for d in &c.devices {
        b.add_device(Path::new(&d.host_path), &d.container_path, &d.permissions)?;
    }
    b.resources = resources(&res);
    b.cgroups_path = format!("{}/{id}", pod.cgroup_parent);
    if let Some(u) = &userns {
        b.uid_mappings = crate::pod::id_maps(&u.uids);
        b.gid_mappings = crate::pod::id_maps(&u.gids);
    }
    if !privileged {
        if !sc.masked_paths.is_empty() {
            b.masked_paths = sc.masked_paths.clone();
        }
        if !sc.readonly_paths.is_empty() {
            b.readonly_paths = sc.readonly_paths.clone();
        }
        b.seccomp = seccomp_for(&sc, &b.capabilities)?;
    }
    Ok(Built {
        spec: b.build()?,
        user: b.user,
        // The request's stop signal over the image's (KEP-4960).
        stop_signal: super::signal::from_cri(c.stop_signal)?
            .unwrap_or_else(|| image.stop_signal_number()),
    })
}

fn mode(v: i32) -> NamespaceMode {
    crate::pod::mode(v)
}

/// The CRI's cpu, memory, hugepage and unified limits.
pub fn resources(res: &cri::LinuxContainerResources) -> berth_bundle::oci::LinuxResources {
    use berth_bundle::oci::{LinuxCpu, LinuxHugepageLimitBuilder, LinuxMemory, LinuxResources};
    let mut out = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if res.cpu_shares > 0 {
        cpu.set_shares(Some(res.cpu_shares as u64));
        any_cpu = true;
    }
    if res.cpu_quota > 0 {
        cpu.set_quota(Some(res.cpu_quota));
        any_cpu = true;
    }
    if res.cpu_period > 0 {
        cpu.set_period(Some(res.cpu_period as u64));
        any_cpu = true;
    }
    if !res.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(res.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !res.cpuset_mems.is_empty() {
        cpu.set_mems(Some(res.cpuset_mems.clone()));
        any_cpu = true;
    }
    if any_cpu {
        out.set_cpu(Some(cpu));
    }
    if res.memory_limit_in_bytes > 0 {
        let mut m = LinuxMemory::default();
        m.set_limit(Some(res.memory_limit_in_bytes));
        if res.memory_swap_limit_in_bytes > 0 {
            m.set_swap(Some(res.memory_swap_limit_in_bytes));
        }
        out.set_memory(Some(m));
    }
    // kubelet sends a (zero) limit for every page size the kernel has, asked for
    // or not; where no hugetlb controller is mounted they cannot be set, and
    // refusing them would fail every container: they are dropped, as containerd
    // does by default (tolerate_missing_hugetlb_controller).
    if !res.hugepage_limits.is_empty() && hugetlb_available() {
        out.set_hugepage_limits(Some(
            res.hugepage_limits
                .iter()
                .filter_map(|h| {
                    LinuxHugepageLimitBuilder::default()
                        .page_size(h.page_size.clone())
                        .limit(h.limit as i64)
                        .build()
                        .ok()
                })
                .collect(),
        ));
    }
    if !res.unified.is_empty() {
        out.set_unified(Some(res.unified.clone()));
    }
    out
}

/// The seccomp profile the security context asks for. As the CRI defines it (and
/// critest checks), naming none means unconfined: kubelet asks for RuntimeDefault
/// explicitly (SeccompDefault).
fn seccomp_for(
    sc: &cri::LinuxContainerSecurityContext,
    caps: &[berth_bundle::oci::Capability],
) -> Result<Seccomp, String> {
    let (kind, localhost) = match &sc.seccomp {
        Some(p) => (
            ProfileType::try_from(p.profile_type).unwrap_or_default(),
            p.localhost_ref.clone(),
        ),
        #[allow(deprecated)]
        None => match sc.seccomp_profile_path.as_str() {
            "unconfined" => (ProfileType::Unconfined, String::new()),
            p if p.starts_with("localhost/") => {
                (ProfileType::Localhost, p["localhost/".len()..].to_string())
            }
            "runtime/default" | "docker/default" => (ProfileType::RuntimeDefault, String::new()),
            _ => (ProfileType::Unconfined, String::new()),
        },
    };
    match kind {
        ProfileType::Unconfined => Ok(Seccomp::Unconfined),
        ProfileType::RuntimeDefault => Ok(Seccomp::RuntimeDefault),
        ProfileType::Localhost => {
            let text = std::fs::read_to_string(&localhost)
                .map_err(|e| format!("seccomp profile {localhost:?}: {e}"))?;
            seccomp::localhost_profile(&text, caps)
                .map(Seccomp::Profile)
                .map_err(|e| format!("seccomp profile {localhost:?}: {e}"))
        }
    }
}

/// Whether this host has a hugetlb cgroup controller: a v1 hierarchy of it, or
/// cgroup2 offering it.
fn hugetlb_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let v1 = mountinfo.lines().any(|l| {
            l.split_once(" - ").is_some_and(|(_, r)| {
                let mut f = r.split(' ');
                f.next() == Some("cgroup")
                    && f.nth(1)
                        .is_some_and(|o| o.split(',').any(|x| x == "hugetlb"))
            })
        });
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "hugetlb"));
        if !(v1 || v2) {
            tracing::info!(
                "no hugetlb cgroup controller on this host: hugepage limits are dropped"
            );
        }
        v1 || v2
    })
}
