//! Pod sandboxes: the pod's files (hostname, hosts, resolv.conf, a /dev/shm), its
//! pinned network namespace with CNI, and the pause process that holds its IPC,
//! UTS and PID namespaces, started through a shim like any container.
//!
//! Order in RunPodSandbox: the record (state Creating) is durable before any side
//! effect, so a crash anywhere leaves something recovery can undo.

use crate::cni::Attachment;
use crate::daemon::{Daemon, Object, Pod, lock};
use crate::shim;
use crate::spec::{self, PodContext};
use crate::store::{self, PodRecord, PodState};
use berth_image::crash;
use berth_proto::v1::{self as cri, NamespaceMode};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use tonic::Status;

/// The built-in pause, embedded at build time.
static PAUSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

pub fn name_key(c: &cri::PodSandboxConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

fn ns_options(c: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

fn host_network(c: &cri::PodSandboxConfig) -> bool {
    ns_options(c).network == NamespaceMode::Node as i32
}

/// Writes the pause binary into its rootfs (once per berthd start).
pub fn install_pause(d: &Daemon) -> std::io::Result<()> {
    let root = d.paths.pause_rootfs();
    for dir in ["dev", "proc"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let bin = root.join("pause");
    if std::fs::read(&bin).ok().as_deref() != Some(PAUSE) {
        store::write_atomic(&bin, PAUSE)?;
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    Ok(())
}

pub async fn run(
    d: &Arc<Daemon>,
    config: cri::PodSandboxConfig,
    handler: String,
) -> Result<String, Status> {
    crate::validate::pod_config(&config).map_err(Status::invalid_argument)?;
    let meta = config.metadata.clone().unwrap_or_default();
    spec::check_userns(&config).map_err(Status::invalid_argument)?;
    if !handler.is_empty() && handler != "berth" && handler != "runc" {
        return Err(Status::invalid_argument(format!(
            "runtime handler {handler:?} is not configured (berth has one: leave it empty)"
        )));
    }
    let net = if host_network(&config) {
        None
    } else {
        Some(d.cni.network().map_err(|e| {
            Status::failed_precondition(format!("pod networking is not ready: {e}"))
        })?)
    };
    let id = store::new_id();
    let key = name_key(&config);
    d.reserve_name(&key, &id, "pod sandbox")?;
    let cgroup_parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/berth".into());
    let rec = PodRecord {
        id: id.clone(),
        state: PodState::Creating,
        config: store::encode(&config),
        runtime_handler: handler,
        created_at: store::now_ns(),
        netns: net.as_ref().map(|_| d.paths.netns_dir().join(&id)),
        ips: Vec::new(),
        cni_result: None,
        pause_pid: 0,
        cgroup_parent,
    };
    crash::point("run-pod:begin");
    if let Err(e) = d.save_pod(&rec) {
        d.release_name(&key, &id);
        return Err(e);
    }
    crash::point("run-pod:record");
    let obj = Object::new(rec);
    lock(&d.pods).insert(id.clone(), obj.clone());
    let _guard = obj.op.lock().await;
    match setup(d, &obj, &config, net).await {
        Ok(()) => {
            let rec = obj.update(|r| {
                r.state = PodState::Ready;
                r.clone()
            });
            d.save_pod(&rec)?;
            crash::point("run-pod:ready");
            d.watch_pod(obj.clone());
            tracing::info!(pod = %id, name = %meta.name, namespace = %meta.namespace, "pod sandbox running");
            Ok(id)
        }
        Err(e) => {
            drop(_guard);
            if let Err(undo) = remove(d, &id).await {
                tracing::error!(pod = %id, "undoing a failed RunPodSandbox: {}", undo.message());
            }
            Err(e)
        }
    }
}

async fn setup(
    d: &Arc<Daemon>,
    obj: &Pod,
    config: &cri::PodSandboxConfig,
    net: Option<crate::cni::NetworkList>,
) -> Result<(), Status> {
    let rec = obj.get();
    let dir = d.paths.pod_dir(&rec.id);
    let ns = ns_options(config);
    write_pod_files(&dir, config)
        .map_err(|e| Status::internal(format!("writing pod files in {}: {e}", dir.display())))?;
    if ns.ipc != NamespaceMode::Node as i32 {
        mount_shm(&dir.join("shm"))
            .map_err(|e| Status::internal(format!("mounting the pod's /dev/shm: {e}")))?;
    }
    crash::point("run-pod:shm");
    if let (Some(netns), Some(net)) = (&rec.netns, net) {
        crate::netns::create(netns).map_err(|e| {
            Status::internal(format!(
                "creating the network namespace {}: {e}",
                netns.display()
            ))
        })?;
        crash::point("run-pod:netns");
        let a = attachment(d, &rec, config);
        let result = d.cni.add(&net, &a).await.map_err(Status::unavailable)?;
        crash::point("run-pod:cni-add");
        let ips = crate::cni::result_ips(&result);
        let rec = obj.update(|r| {
            r.cni_result = Some(result);
            r.ips = ips;
            r.clone()
        });
        // The result is durable before anything else: DEL needs it.
        d.save_pod(&rec)?;
        crash::point("run-pod:cni-saved");
    }
    let rec = obj.get();
    let ctx = PodContext {
        id: &rec.id,
        config,
        dir: &dir,
        netns: rec.netns.as_deref(),
        pause_pid: 0,
        cgroup_parent: &rec.cgroup_parent,
    };
    let pause_spec =
        spec::pause(&ctx, &d.paths.pause_rootfs()).map_err(Status::invalid_argument)?;
    let bundle = dir.join("bundle");
    store::write_atomic(
        &bundle.join("config.json"),
        &serde_json::to_vec(&pause_spec).unwrap_or_default(),
    )
    .map_err(|e| Status::internal(format!("writing the pause bundle: {e}")))?;
    let pid = shim::start(
        &d.bins,
        &shim::Launch {
            id: rec.id.clone(),
            shim_dir: d.paths.shim_dir(&rec.id),
            bundle: Some(bundle),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| Status::internal(format!("starting the pod's pause: {e}")))?;
    crash::point("run-pod:shim");
    obj.update(|r| r.pause_pid = pid);
    d.save_pod(&obj.get())?;
    crash::point("run-pod:pid-saved");
    d.runtime(&["start", &rec.id])
        .await
        .map_err(|e| Status::internal(format!("starting the pod's pause: {e}")))?;
    crash::point("run-pod:started");
    Ok(())
}

/// CNI CHECK of every ready pod's network, with what ADD returned; a failure is
/// logged for the operator (kubelet recreates pods whose network is gone).
pub async fn check_networks(d: &Arc<Daemon>) {
    let Ok(net) = d.cni.network() else { return };
    let pods: Vec<PodRecord> = lock(&d.pods).values().map(|p| p.get()).collect();
    for rec in pods.iter().filter(|p| p.state == PodState::Ready) {
        let Some(result) = &rec.cni_result else {
            continue;
        };
        let config: cri::PodSandboxConfig = store::decode(&rec.config);
        match d
            .cni
            .check(&net, &attachment(d, rec, &config), result)
            .await
        {
            Ok(()) => tracing::info!(pod = %rec.id, "pod network checked"),
            Err(e) => tracing::warn!(pod = %rec.id, "pod network check failed: {e}"),
        }
    }
}

fn attachment(d: &Daemon, rec: &PodRecord, config: &cri::PodSandboxConfig) -> Attachment {
    let m = config.metadata.clone().unwrap_or_default();
    let port_mappings = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let proto = match cri::Protocol::try_from(p.protocol).unwrap_or_default() {
                cri::Protocol::Tcp => "tcp",
                cri::Protocol::Udp => "udp",
                cri::Protocol::Sctp => "sctp",
            };
            let mut v = json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": proto});
            if !p.host_ip.is_empty() {
                v["hostIP"] = json!(p.host_ip);
            }
            v
        })
        .collect();
    let dns = config
        .dns_config
        .as_ref()
        .map(|c| json!({"servers": c.servers, "searches": c.searches, "options": c.options}));
    Attachment {
        pod_id: rec.id.clone(),
        netns: rec.netns.clone().unwrap_or_default(),
        pod_name: m.name,
        pod_namespace: m.namespace,
        pod_uid: m.uid,
        port_mappings,
        dns,
        bandwidth: None,
        pod_cidr: lock(&d.pod_cidr).clone(),
    }
}

/// hostname, hosts and resolv.conf for the pod's containers to bind.
fn write_pod_files(dir: &Path, c: &cri::PodSandboxConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let host_net = host_network(c);
    let hostname = if c.hostname.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        c.hostname.clone()
    };
    store::write_atomic(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
    let hosts = if host_net {
        std::fs::read("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
            .as_bytes()
            .to_vec()
    };
    store::write_atomic(&dir.join("hosts"), &hosts)?;
    let resolv = match &c.dns_config {
        Some(dns)
            if !(dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty()) =>
        {
            resolv_conf(dns).into_bytes()
        }
        _ => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
    };
    store::write_atomic(&dir.join("resolv.conf"), &resolv)?;
    Ok(())
}

pub fn resolv_conf(dns: &cri::DnsConfig) -> String {
    let mut s = String::new();
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for n in &dns.servers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    s
}

fn mount_shm(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    if is_mountpoint(path) {
        return Ok(());
    }
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: mounting a tmpfs on a directory berthd owns.
    let rc = unsafe {
        libc::mount(
            c"shm".as_ptr(),
            p.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"mode=1777,size=65536k".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Makes `src` sit on a shared mount: nothing to do when the mount holding it is
/// shared already; else `src` is bound onto itself and made shared, and returned
/// so that it can be unmounted later.
pub fn ensure_shared(src: &Path) -> std::io::Result<Option<String>> {
    let src = std::fs::canonicalize(src)?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let holder = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let point = Path::new(*f.get(4)?);
            src.starts_with(point)
                .then(|| (point.as_os_str().len(), l.contains(" shared:")))
        })
        .max_by_key(|(len, _)| *len);
    if holder.is_some_and(|(_, shared)| shared) {
        return Ok(None);
    }
    let c = std::ffi::CString::new(src.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: a bind of a host path onto itself, then a propagation change of it.
    unsafe {
        if libc::mount(
            c.as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) != 0
            || libc::mount(
                std::ptr::null(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(Some(src.to_string_lossy().to_string()))
}

pub fn unmount_one(path: &Path) {
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: detaching one mount berthd made.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Unmounts everything mounted under `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in points {
        if let Ok(c) = std::ffi::CString::new(m) {
            // SAFETY: unmounting a mount point under berthd's own directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Stops every container, the pause, and the network. Idempotent.
pub async fn stop(d: &Arc<Daemon>, id: &str) -> Result<(), Status> {
    let obj = d.pod(id)?;
    let id = obj.get().id;
    for c in d.pod_containers(&id) {
        let cid = c.get().id;
        crate::containers::stop(d, &cid, 0).await?;
    }
    crash::point("stop-pod:containers");
    let _guard = obj.op.lock().await;
    stop_locked(d, &obj).await?;
    crash::point("stop-pod:saved");
    Ok(())
}

async fn stop_locked(d: &Arc<Daemon>, obj: &Pod) -> Result<(), Status> {
    let rec = obj.get();
    let shim_dir = d.paths.shim_dir(&rec.id);
    if shim::shim_pid(&shim_dir).is_some() {
        let _ = shim::control(&shim_dir, "signal 9").await;
        // The shim itself, watched or not (a pod still being made is not).
        if tokio::time::timeout(std::time::Duration::from_secs(10), shim::wait(&shim_dir))
            .await
            .is_err()
        {
            tracing::warn!(pod = %rec.id, "the pause's shim outlived SIGKILL by 10 s");
        }
        crash::point("stop-pod:pause");
    }
    teardown_network(d, obj).await?;
    let dir = d.paths.pod_dir(&rec.id);
    unmount_under(&dir.join("shm"));
    let rec = obj.update(|r| {
        if r.state == PodState::Ready {
            r.state = PodState::NotReady;
        }
        r.clone()
    });
    if rec.state != PodState::Creating && rec.state != PodState::Removing {
        d.save_pod(&rec)?;
    }
    Ok(())
}

async fn teardown_network(d: &Arc<Daemon>, obj: &Pod) -> Result<(), Status> {
    let rec = obj.get();
    let Some(netns) = &rec.netns else {
        return Ok(());
    };
    if netns.exists() {
        let config: cri::PodSandboxConfig = store::decode(&rec.config);
        if crate::netns::is_pinned(netns) {
            match d.cni.network() {
                Ok(net) => {
                    let a = attachment(d, &rec, &config);
                    d.cni
                        .del(&net, &a, rec.cni_result.as_ref())
                        .await
                        .map_err(|e| {
                            Status::unavailable(format!("tearing down the pod network: {e}"))
                        })?;
                    crash::point("stop-pod:cni-del");
                }
                Err(e) => {
                    tracing::warn!(pod = %rec.id, "no CNI config to tear down the network with: {e}")
                }
            }
        }
        crate::netns::remove(netns)
            .map_err(|e| Status::internal(format!("removing {}: {e}", netns.display())))?;
        crash::point("stop-pod:netns");
    }
    Ok(())
}

/// Removes the pod and everything in it. Unknown IDs are not an error.
pub async fn remove(d: &Arc<Daemon>, id: &str) -> Result<(), Status> {
    let obj = match d.pod(id) {
        Ok(o) => o,
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
        Err(s) => return Err(s),
    };
    let id = obj.get().id;
    for c in d.pod_containers(&id) {
        let cid = c.get().id;
        crate::containers::remove(d, &cid).await?;
    }
    let _guard = obj.op.lock().await;
    let rec = obj.update(|r| {
        r.state = PodState::Removing;
        r.clone()
    });
    d.save_pod(&rec)?;
    crash::point("remove-pod:record");
    stop_locked(d, &obj).await?;
    crash::point("remove-pod:stopped");
    d.delete_in_runtime(&id, &format!("{}/{}", rec.cgroup_parent, rec.id))
        .await;
    crash::point("remove-pod:deleted");
    let dir = d.paths.pod_dir(&id);
    unmount_under(&dir);
    let _ = std::fs::remove_dir_all(d.paths.shim_dir(&id));
    std::fs::remove_dir_all(&dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| Status::internal(format!("removing {}: {e}", dir.display())))?;
    crash::point("remove-pod:gone");
    lock(&d.pods).remove(&id);
    let config: cri::PodSandboxConfig = store::decode(&rec.config);
    d.release_name(&name_key(&config), &id);
    tracing::info!(pod = %id, "pod sandbox removed");
    Ok(())
}

pub fn status_of(rec: &PodRecord) -> cri::PodSandboxStatus {
    let config: cri::PodSandboxConfig = store::decode(&rec.config);
    let ns = ns_options(&config);
    cri::PodSandboxStatus {
        id: rec.id.clone(),
        metadata: config.metadata.clone(),
        state: if rec.state == PodState::Ready {
            cri::PodSandboxState::SandboxReady
        } else {
            cri::PodSandboxState::SandboxNotready
        } as i32,
        created_at: rec.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: rec.ips.first().cloned().unwrap_or_default(),
            additional_ips: rec
                .ips
                .iter()
                .skip(1)
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace { options: Some(ns) }),
        }),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        runtime_handler: rec.runtime_handler.clone(),
    }
}

pub fn verbose_info(rec: &PodRecord) -> std::collections::HashMap<String, String> {
    let config: cri::PodSandboxConfig = store::decode(&rec.config);
    let info = json!({
        "pid": rec.pause_pid,
        "netns": rec.netns,
        "cgroupParent": rec.cgroup_parent,
        "cniResult": rec.cni_result,
        "hostname": config.hostname,
        "runtimeHandler": rec.runtime_handler,
    });
    [("info".to_string(), info.to_string())]
        .into_iter()
        .collect()
}

pub fn matches(rec: &PodRecord, f: &cri::PodSandboxFilter) -> bool {
    if !f.id.is_empty() && !rec.id.starts_with(&f.id) {
        return false;
    }
    if let Some(s) = &f.state {
        let ready = rec.state == PodState::Ready;
        if (s.state == cri::PodSandboxState::SandboxReady as i32) != ready {
            return false;
        }
    }
    if rec.state == PodState::Creating || rec.state == PodState::Removing {
        return false;
    }
    let config: cri::PodSandboxConfig = store::decode(&rec.config);
    f.label_selector
        .iter()
        .all(|(k, v)| config.labels.get(k) == Some(v))
}
