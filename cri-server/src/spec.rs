//! OCI bundle configs for a pod's pause process and for its containers, built
//! from the CRI configs and the image config as containerd builds them. The JSON
//! is checked against `oci_spec::runtime::Spec` before it is written.

use crate::seccomp;
use crate::users::{self, User};
use berth_proto::v1::{self as cri, NamespaceMode, security_profile::ProfileType};
use serde_json::{Value, json};
use std::path::Path;

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const CAP_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub const DEFAULT_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];
pub const DEFAULT_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// "All capabilities": those berthd itself holds in its bounding set (this host
/// may lack some, e.g. CAP_SYS_RESOURCE), as containerd builds them.
pub fn all_caps() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bits = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1u64 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn cap_name(c: &str) -> Result<String, String> {
    let up = c.to_ascii_uppercase();
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if CAP_NAMES.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(format!("unknown capability {c:?}"))
    }
}

/// The capability set after the CRI's add and drop lists (with "ALL").
pub fn capabilities(
    caps: Option<&cri::Capability>,
    privileged: bool,
) -> Result<Vec<String>, String> {
    let all = all_caps();
    if privileged {
        return Ok(all);
    }
    let mut set: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let Some(c) = caps else { return Ok(set) };
    let is_all = |v: &[String]| v.iter().any(|x| x.eq_ignore_ascii_case("ALL"));
    if is_all(&c.add_capabilities) {
        set = all.clone();
    }
    if is_all(&c.drop_capabilities) {
        set.clear();
    }
    for a in c
        .add_capabilities
        .iter()
        .filter(|a| !a.eq_ignore_ascii_case("ALL"))
    {
        let n = cap_name(a)?;
        if !set.contains(&n) {
            set.push(n);
        }
    }
    for d in c
        .drop_capabilities
        .iter()
        .filter(|d| !d.eq_ignore_ascii_case("ALL"))
    {
        let n = cap_name(d)?;
        set.retain(|x| *x != n);
    }
    Ok(set)
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

fn id_maps(maps: &[cri::IdMapping]) -> Value {
    maps.iter()
        .map(|m| json!({"containerID": m.container_id, "hostID": m.host_id, "size": m.length}))
        .collect()
}

fn mode(v: i32) -> NamespaceMode {
    NamespaceMode::try_from(v).unwrap_or(NamespaceMode::Pod)
}

/// The filesystems every container gets: proc, a /dev tmpfs with devpts and
/// mqueue, sysfs and the cgroups, the last two read-only unless privileged.
pub fn default_mounts(privileged: bool) -> Vec<Value> {
    let sys = if privileged { "rw" } else { "ro" };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", sys]}),
    ]
}

/// The pause: holds the pod's IPC, UTS and (unless the host's) PID namespaces,
/// joins the pinned network namespace. No privileges, a read-only root.
pub fn pause(pod: &PodContext, rootfs: &Path) -> Result<Value, String> {
    let ns = pod.ns_options();
    let linux = pod.config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let mut namespaces = vec![json!({"type": "mount"})];
    let userns = pod_userns(pod.config);
    if userns.is_some() {
        namespaces.push(json!({"type": "user"}));
    }
    if mode(ns.ipc) != NamespaceMode::Node {
        namespaces.push(json!({"type": "ipc"}));
    }
    if mode(ns.network) != NamespaceMode::Node {
        namespaces.push(json!({"type": "uts"}));
    }
    if mode(ns.pid) != NamespaceMode::Node {
        namespaces.push(json!({"type": "pid"}));
    }
    if let Some(n) = pod.netns {
        namespaces.push(json!({"type": "network", "path": n}));
    }
    let mut sysctl = serde_json::Map::new();
    for (k, v) in &linux.sysctls {
        sysctl.insert(k.clone(), json!(v));
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 65535, "gid": 65535},
            "args": ["/pause"],
            "env": [DEFAULT_PATH],
            "cwd": "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
            "noNewPrivileges": true,
            "oomScoreAdj": -998
        },
        "root": {"path": rootfs, "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=64k"]}
        ],
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": format!("{}/{}", pod.cgroup_parent, pod.id),
            "sysctl": sysctl,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "maskedPaths": DEFAULT_MASKED,
            "readonlyPaths": DEFAULT_READONLY,
        }
    });
    if mode(ns.network) != NamespaceMode::Node {
        spec["hostname"] = json!(pod.hostname());
    }
    if let Some(u) = &userns {
        spec["linux"]["uidMappings"] = id_maps(&u.uids);
        spec["linux"]["gidMappings"] = id_maps(&u.gids);
        // The pod's network namespace belongs to the host's user namespace:
        // net sysctls cannot be written from inside this one.
        spec["linux"]["sysctl"] = json!({});
    }
    if !sc.privileged {
        spec["linux"]["seccomp"] = seccomp::default_profile(&[]);
    }
    check(spec)
}

/// A container's config, and the user it runs as.
pub struct Built {
    pub spec: Value,
    pub user: User,
    pub stop_signal: i32,
}

/// The image config's stop signal as a number (`SIGQUIT`, `QUIT` or `3`).
pub fn stop_signal(image: &Value) -> i32 {
    let s = image["config"]["StopSignal"].as_str().unwrap_or_default();
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if let Ok(n) = name.parse() {
        return n;
    }
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "WINCH" => 28,
        "STOP" => 19,
        "PWR" => 30,
        _ => 15,
    }
}

pub fn container(
    id: &str,
    c: &cri::ContainerConfig,
    image: &Value,
    pod: &PodContext,
    rootfs: &Path,
) -> Result<Built, String> {
    let ic = &image["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    // The CRI's command replaces the entrypoint, its args the image's Cmd.
    let args: Vec<String> = if !c.command.is_empty() {
        c.command.iter().chain(c.args.iter()).cloned().collect()
    } else if !c.args.is_empty() {
        strings(&ic["Entrypoint"])
            .into_iter()
            .chain(c.args.iter().cloned())
            .collect()
    } else {
        strings(&ic["Entrypoint"])
            .into_iter()
            .chain(strings(&ic["Cmd"]))
            .collect()
    };
    if args.is_empty() {
        return Err("no command: the container config has no command or args, and the image no Entrypoint or Cmd".into());
    }
    let hostname = pod.hostname();
    let mut env = strings(&ic["Env"]);
    let mut set_env = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    for kv in &c.envs {
        set_env(format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else {
        ic["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    };
    if !cwd.starts_with('/') {
        return Err(format!("working_dir {cwd:?} must be an absolute path"));
    }

    let linux = c.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let res = linux.resources.clone().unwrap_or_default();
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
    if sc.privileged && !pod_sc.privileged {
        return Err("a privileged container needs a privileged pod sandbox".into());
    }
    let user = users::resolve(
        rootfs,
        &users::Request {
            run_as_user: sc.run_as_user.as_ref().map(|v| v.value),
            run_as_group: sc.run_as_group.as_ref().map(|v| v.value),
            run_as_username: &sc.run_as_username,
            image_user: ic["User"].as_str().unwrap_or_default(),
            supplemental_groups: &sc.supplemental_groups,
            strict_groups: sc.supplemental_groups_policy
                == cri::SupplementalGroupsPolicy::Strict as i32,
        },
    )?;
    let caps = capabilities(sc.capabilities.as_ref(), sc.privileged)?;
    let ambient: Vec<String> = match &sc.capabilities {
        Some(c) => c
            .add_ambient_capabilities
            .iter()
            .map(|a| cap_name(a))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };

    // Namespaces: the pod's network, IPC and UTS; PID per the namespace mode.
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let pause_ns = |kind: &str| format!("/proc/{}/ns/{kind}", pod.pause_pid);
    let mut namespaces = vec![json!({"type": "mount"})];
    let userns = pod_userns(pod.config);
    if userns.is_some() {
        namespaces.push(json!({"type": "user", "path": pause_ns("user")}));
    }
    match mode(ns.pid) {
        NamespaceMode::Node => {}
        NamespaceMode::Pod => namespaces.push(json!({"type": "pid", "path": pause_ns("pid")})),
        NamespaceMode::Target => {
            if ns.target_id.is_empty() {
                return Err("namespace_options.pid is TARGET but target_id is empty".into());
            }
            // Filled in by the caller, which knows the target's pid.
            namespaces.push(json!({"type": "pid", "path": format!("target:{}", ns.target_id)}));
        }
        NamespaceMode::Container => namespaces.push(json!({"type": "pid"})),
    }
    if mode(ns.ipc) != NamespaceMode::Node {
        namespaces.push(json!({"type": "ipc", "path": pause_ns("ipc")}));
    }
    if mode(ns.network) != NamespaceMode::Node {
        namespaces.push(json!({"type": "uts", "path": pause_ns("uts")}));
        if let Some(n) = pod.netns {
            namespaces.push(json!({"type": "network", "path": n}));
        }
    }
    namespaces.push(json!({"type": "cgroup"}));

    let privileged = sc.privileged;
    let mut mounts = default_mounts(privileged);
    if userns.is_some() {
        // sysfs and cgroupfs cannot be mounted from a user namespace that does not
        // own the network namespace: the host's /sys, read-only, recursively.
        mounts.retain(|m| m["destination"] != "/sys" && m["destination"] != "/sys/fs/cgroup");
        mounts.push(json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev", "ro"]}));
    }
    let wanted: Vec<&str> = c.mounts.iter().map(|m| m.container_path.as_str()).collect();
    let host_ipc = mode(ns.ipc) == NamespaceMode::Node;
    let shm = if host_ipc {
        Path::new("/dev/shm").to_path_buf()
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
            mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate", opt]}));
        }
    }
    let mut rootfs_propagation = None;
    for m in &c.mounts {
        if !m.container_path.starts_with('/') {
            return Err(format!(
                "mount container_path {:?} must be absolute",
                m.container_path
            ));
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
                rootfs_propagation.get_or_insert("rslave");
                "rslave"
            }
            cri::MountPropagation::PropagationBidirectional => {
                rootfs_propagation = Some("rshared");
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
        mounts.push(json!({"destination": m.container_path, "type": "bind", "source": m.host_path, "options": opts}));
    }

    let mut devices = Vec::new();
    let mut dev_rules = vec![json!({"allow": false, "access": "rwm"})];
    if privileged {
        dev_rules = vec![json!({"allow": true, "access": "rwm"})];
        host_devices(Path::new("/dev"), &mut devices);
    }
    for d in &c.devices {
        let dev = device(Path::new(&d.host_path), &d.container_path)?;
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        dev_rules.push(json!({"allow": true, "type": dev["type"], "major": dev["major"], "minor": dev["minor"], "access": perms}));
        devices.push(dev);
    }

    let mut resources = json!({"devices": dev_rules});
    let mut cpu = serde_json::Map::new();
    if res.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(res.cpu_shares));
    }
    if res.cpu_quota > 0 {
        cpu.insert("quota".into(), json!(res.cpu_quota));
    }
    if res.cpu_period > 0 {
        cpu.insert("period".into(), json!(res.cpu_period));
    }
    if !res.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(res.cpuset_cpus));
    }
    if !res.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(res.cpuset_mems));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if res.memory_limit_in_bytes > 0 {
        resources["memory"] = json!({"limit": res.memory_limit_in_bytes});
        if res.memory_swap_limit_in_bytes > 0 {
            resources["memory"]["swap"] = json!(res.memory_swap_limit_in_bytes);
        }
    }
    // kubelet sends a (zero) limit for every page size the kernel has, asked for
    // or not; where no hugetlb controller is mounted they cannot be set, and
    // refusing them would fail every container: they are dropped, as containerd
    // does by default (tolerate_missing_hugetlb_controller).
    if !res.hugepage_limits.is_empty() && hugetlb_available() {
        resources["hugepageLimits"] = res
            .hugepage_limits
            .iter()
            .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
            .collect();
    }
    if !res.unified.is_empty() {
        resources["unified"] = json!(res.unified);
    }

    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": ambient},
        "noNewPrivileges": sc.no_new_privs,
    });
    if res.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(res.oom_score_adj);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": rootfs, "readonly": sc.readonly_rootfs},
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": format!("{}/{id}", pod.cgroup_parent),
            "resources": resources,
            "devices": devices,
        }
    });
    if mode(ns.network) != NamespaceMode::Node || !pod.config.hostname.is_empty() {
        spec["hostname"] = json!(hostname);
    }
    if let Some(p) = rootfs_propagation {
        spec["linux"]["rootfsPropagation"] = json!(p);
    }
    if let Some(u) = &userns {
        spec["linux"]["uidMappings"] = id_maps(&u.uids);
        spec["linux"]["gidMappings"] = id_maps(&u.gids);
    }
    if !privileged {
        let masked: Vec<&str> = if sc.masked_paths.is_empty() {
            DEFAULT_MASKED.to_vec()
        } else {
            sc.masked_paths.iter().map(String::as_str).collect()
        };
        let ro: Vec<&str> = if sc.readonly_paths.is_empty() {
            DEFAULT_READONLY.to_vec()
        } else {
            sc.readonly_paths.iter().map(String::as_str).collect()
        };
        spec["linux"]["maskedPaths"] = json!(masked);
        spec["linux"]["readonlyPaths"] = json!(ro);
        if let Some(profile) = seccomp_for(&sc, &caps)? {
            spec["linux"]["seccomp"] = profile;
        }
    }
    Ok(Built {
        spec: check(spec)?,
        user,
        stop_signal: stop_signal(image),
    })
}

/// The seccomp profile the security context asks for. As the CRI defines it (and
/// critest checks), naming none means unconfined: kubelet asks for RuntimeDefault
/// explicitly (SeccompDefault).
fn seccomp_for(
    sc: &cri::LinuxContainerSecurityContext,
    caps: &[String],
) -> Result<Option<Value>, String> {
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
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => Ok(Some(seccomp::default_profile(caps))),
        ProfileType::Localhost => {
            let text = std::fs::read_to_string(&localhost)
                .map_err(|e| format!("seccomp profile {localhost:?}: {e}"))?;
            seccomp::localhost_profile(&text, caps)
                .map(Some)
                .map_err(|e| format!("seccomp profile {localhost:?}: {e}"))
        }
    }
}

fn device(host: &Path, container_path: &str) -> Result<Value, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(host).map_err(|e| format!("device {}: {e}", host.display()))?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Err(format!("{} is not a device", host.display()));
    };
    let rdev = md.rdev();
    Ok(json!({
        "path": if container_path.is_empty() { host.to_string_lossy().to_string() } else { container_path.to_string() },
        "type": kind,
        "major": libc::major(rdev),
        "minor": libc::minor(rdev),
        "fileMode": md.mode() & 0o777,
        "uid": 0,
        "gid": 0
    }))
}

/// Every device node under /dev for a privileged container (not pts, shm, mqueue).
fn host_devices(dir: &Path, out: &mut Vec<Value>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !matches!(e.file_name().to_str(), Some("pts" | "shm" | "mqueue")) {
                host_devices(&p, out);
            }
        } else if !ft.is_symlink()
            && p != Path::new("/dev/console")
            && let Ok(d) = device(&p, &p.to_string_lossy())
        {
            out.push(d);
        }
    }
}

/// Round-trips through oci-spec's types: a config berthd writes is one the
/// runtime can read.
fn check(spec: Value) -> Result<Value, String> {
    let typed: oci_spec::runtime::Spec =
        serde_json::from_value(spec).map_err(|e| format!("building the OCI config: {e}"))?;
    serde_json::to_value(&typed).map_err(|e| format!("building the OCI config: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_drop_with_all() {
        let c = |add: &[&str], drop: &[&str]| {
            capabilities(
                Some(&cri::Capability {
                    add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                    drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                false,
            )
        };
        let set = c(&["SYS_ADMIN"], &["CHOWN"]).unwrap();
        assert!(
            set.contains(&"CAP_SYS_ADMIN".to_string()) && !set.contains(&"CAP_CHOWN".to_string())
        );
        assert_eq!(c(&["NET_ADMIN"], &["ALL"]).unwrap(), vec!["CAP_NET_ADMIN"]);
        assert!(c(&["NOT_A_CAP"], &[]).is_err());
        assert_eq!(c(&["ALL"], &[]).unwrap(), all_caps());
    }

    #[test]
    fn stop_signals_by_name_or_number() {
        assert_eq!(
            stop_signal(&json!({"config": {"StopSignal": "SIGQUIT"}})),
            3
        );
        assert_eq!(stop_signal(&json!({"config": {"StopSignal": "9"}})), 9);
        assert_eq!(stop_signal(&json!({"config": {}})), 15);
    }
}
