//! Checks of the fields of RunPodSandbox and CreateContainer requests that berthd
//! turns into names, files, paths and process arguments, made before anything
//! is created: a bad field is InvalidArgument naming the field, and nothing
//! changes. The bounds follow Kubernetes' own (names of at most 253 bytes,
//! 256 KiB of labels and annotations) or the kernel's (64-byte hostnames).

use berth_proto::v1 as cri;
use std::collections::HashMap;

const MAX_NAME: usize = 253;
const MAX_HOSTNAME: usize = 64;
/// Labels and annotations together, as the Kubernetes API server allows.
const MAX_METADATA_BYTES: usize = 256 << 10;
/// Command, arguments and environment together (execve's bound is near 2 MiB).
const MAX_EXEC_BYTES: usize = 1 << 20;
const MAX_DNS_ENTRIES: usize = 64;

type Checked = Result<(), String>;

fn no_controls(field: &str, v: &str) -> Checked {
    match v.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("{field} contains the control character {c:?}")),
        None => Ok(()),
    }
}

fn name(field: &str, v: &str, required: bool) -> Checked {
    if required && v.is_empty() {
        return Err(format!("{field} is empty"));
    }
    if v.len() > MAX_NAME {
        return Err(format!(
            "{field} is {} bytes long; at most {MAX_NAME}",
            v.len()
        ));
    }
    if v.contains('/') {
        return Err(format!("{field} {v:?} contains '/'"));
    }
    no_controls(field, v)
}

fn no_nul(field: &str, v: &str) -> Checked {
    if v.contains('\0') {
        Err(format!("{field} contains a NUL byte"))
    } else {
        Ok(())
    }
}

fn absolute(field: &str, v: &str) -> Checked {
    no_nul(field, v)?;
    if !v.starts_with('/') {
        return Err(format!("{field} {v:?} is not an absolute path"));
    }
    Ok(())
}

fn labels(what: &str, l: &HashMap<String, String>, a: &HashMap<String, String>) -> Checked {
    let mut total = 0;
    for (kind, map) in [("labels", l), ("annotations", a)] {
        for (k, v) in map {
            if k.is_empty() {
                return Err(format!("{what}.{kind} has an empty key"));
            }
            no_nul(&format!("{what}.{kind} key"), k)?;
            no_nul(&format!("{what}.{kind}[{k:?}]"), v)?;
            total += k.len() + v.len();
        }
    }
    if total > MAX_METADATA_BYTES {
        return Err(format!(
            "{what}.labels and annotations are {total} bytes together; at most {MAX_METADATA_BYTES}"
        ));
    }
    Ok(())
}

pub fn pod_config(c: &cri::PodSandboxConfig) -> Checked {
    let m = c
        .metadata
        .as_ref()
        .ok_or("config.metadata is missing: a pod needs a name, namespace and uid")?;
    name("config.metadata.name", &m.name, true)?;
    name("config.metadata.namespace", &m.namespace, false)?;
    name("config.metadata.uid", &m.uid, false)?;
    if m.attempt > u32::MAX / 2 {
        return Err(format!(
            "config.metadata.attempt {} is out of range",
            m.attempt
        ));
    }
    if c.hostname.len() > MAX_HOSTNAME {
        return Err(format!(
            "config.hostname is {} bytes long; at most {MAX_HOSTNAME}",
            c.hostname.len()
        ));
    }
    no_controls("config.hostname", &c.hostname)?;
    if !c.log_directory.is_empty() {
        absolute("config.log_directory", &c.log_directory)?;
    }
    labels("config", &c.labels, &c.annotations)?;
    if let Some(dns) = &c.dns_config {
        // Each entry becomes a line of resolv.conf: no line breaks may hide in one.
        for (field, list) in [
            ("servers", &dns.servers),
            ("searches", &dns.searches),
            ("options", &dns.options),
        ] {
            if list.len() > MAX_DNS_ENTRIES {
                return Err(format!(
                    "config.dns_config.{field} has {} entries; at most {MAX_DNS_ENTRIES}",
                    list.len()
                ));
            }
            for v in list {
                no_controls(&format!("config.dns_config.{field}"), v)?;
                if v.is_empty() || v.contains(' ') {
                    return Err(format!(
                        "config.dns_config.{field} entry {v:?} is empty or has a space"
                    ));
                }
            }
        }
    }
    for p in &c.port_mappings {
        if !(0..=65535).contains(&p.host_port) || !(0..=65535).contains(&p.container_port) {
            return Err(format!(
                "config.port_mappings: port {} → {} is out of range 0-65535",
                p.host_port, p.container_port
            ));
        }
    }
    if let Some(l) = &c.linux {
        if !l.cgroup_parent.is_empty() {
            no_controls("config.linux.cgroup_parent", &l.cgroup_parent)?;
            if l.cgroup_parent.split('/').any(|p| p == "..") {
                return Err("config.linux.cgroup_parent contains '..'".into());
            }
        }
        for (k, v) in &l.sysctls {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
                || k.contains("..")
            {
                return Err(format!("config.linux.sysctls: {k:?} is not a sysctl name"));
            }
            no_controls(&format!("config.linux.sysctls[{k:?}]"), v)?;
        }
    }
    Ok(())
}

pub fn container_config(c: &cri::ContainerConfig) -> Checked {
    let m = c
        .metadata
        .as_ref()
        .ok_or("config.metadata is missing: a container needs a name")?;
    name("config.metadata.name", &m.name, true)?;
    if m.attempt > u32::MAX / 2 {
        return Err(format!(
            "config.metadata.attempt {} is out of range",
            m.attempt
        ));
    }
    if !c.log_path.is_empty() {
        // Relative to the pod's log directory, and inside it.
        no_controls("config.log_path", &c.log_path)?;
        if c.log_path.starts_with('/') || c.log_path.split('/').any(|p| p == "..") {
            return Err(format!(
                "config.log_path {:?} must be a relative path inside the pod's log directory",
                c.log_path
            ));
        }
    }
    if !c.working_dir.is_empty() {
        absolute("config.working_dir", &c.working_dir)?;
    }
    let mut exec_bytes = 0;
    for (field, list) in [("command", &c.command), ("args", &c.args)] {
        for a in list {
            no_nul(&format!("config.{field}"), a)?;
            exec_bytes += a.len() + 1;
        }
    }
    for e in &c.envs {
        if e.key.is_empty() || e.key.contains('=') {
            return Err(format!("config.envs: {:?} is not a variable name", e.key));
        }
        no_nul("config.envs key", &e.key)?;
        if e.value.contains(&0) {
            return Err(format!("config.envs[{:?}] contains a NUL byte", e.key));
        }
        // KeyValue.value is bytes, but the OCI config carries the environment
        // as JSON strings (oci-spec's Vec<String>, and runc's and berth-runtime's
        // config.json), which cannot hold other bytes than UTF-8: a value that
        // is not is refused rather than changed.
        if let Err(err) = std::str::from_utf8(&e.value) {
            return Err(format!(
                "config.envs[{:?}]: the value is not UTF-8 (invalid byte at offset {}); berth \
                 passes the environment through the OCI config, whose strings must be UTF-8",
                e.key,
                err.valid_up_to()
            ));
        }
        exec_bytes += e.key.len() + e.value.len() + 2;
    }
    if exec_bytes > MAX_EXEC_BYTES {
        return Err(format!(
            "config.command, args and envs are {exec_bytes} bytes together; at most {MAX_EXEC_BYTES}"
        ));
    }
    crate::container::stop_signal_from_cri(c.stop_signal)?;
    for mount in &c.mounts {
        absolute("config.mounts.container_path", &mount.container_path)?;
        match image_of(mount) {
            Some(image) => image_volume(mount, image)?,
            None if !mount.image_sub_path.is_empty() => {
                return Err(format!(
                    "config.mounts.image_sub_path {:?} is set for {:?}, which mounts no image",
                    mount.image_sub_path, mount.container_path
                ));
            }
            None => absolute("config.mounts.host_path", &mount.host_path)?,
        }
        bind_mount_options(mount)?;
    }
    for d in &c.devices {
        absolute("config.devices.container_path", &d.container_path)?;
        absolute("config.devices.host_path", &d.host_path)?;
    }
    labels("config", &c.labels, &c.annotations)
}

/// The bind mount options (KEP-5855) berth applies: those Kubernetes allows
/// in `volumeMounts[].bindMountOptions`, passed to the runtime as OCI mount
/// options on the container's bind mount.
pub const BIND_MOUNT_OPTIONS: [&str; 3] = ["nodev", "noexec", "nosuid"];

/// `Mount.mount_options`: only the options of `BIND_MOUNT_OPTIONS`, and not on
/// an image volume (always nosuid and nodev, and refused by Kubernetes too).
fn bind_mount_options(m: &cri::Mount) -> Checked {
    if m.mount_options.is_empty() {
        return Ok(());
    }
    if image_of(m).is_some() {
        return Err(format!(
            "config.mounts.mount_options {:?} for {:?}: bind mount options do not apply to an \
             image volume",
            m.mount_options, m.container_path
        ));
    }
    for o in &m.mount_options {
        if !BIND_MOUNT_OPTIONS.contains(&o.as_str()) {
            return Err(format!(
                "config.mounts.mount_options for {:?}: {o:?} is not supported; berth applies {}",
                m.container_path,
                BIND_MOUNT_OPTIONS.join(", ")
            ));
        }
    }
    Ok(())
}

/// The image a mount asks for (an image volume), if any.
pub fn image_of(m: &cri::Mount) -> Option<&str> {
    m.image
        .as_ref()
        .map(|i| i.image.as_str())
        .filter(|i| !i.is_empty())
}

/// An image volume: no host path, and a sub-path that is relative and stays in
/// the image by its names alone (symlinks are checked when it is resolved).
fn image_volume(m: &cri::Mount, image: &str) -> Checked {
    no_nul("config.mounts.image.image", image)?;
    if !m.host_path.is_empty() {
        return Err(format!(
            "config.mounts for {:?} has both host_path {:?} and image {image:?}: one source only",
            m.container_path, m.host_path
        ));
    }
    // An image's files are shared by every container that mounts it: kubelet
    // always asks for them read-only, and a request that does not is refused
    // rather than quietly made read-only (critest v1.37 expects the refusal).
    if !m.readonly {
        return Err(format!(
            "config.mounts for {:?} mounts image {image:?} with readonly false: image volumes are read-only",
            m.container_path
        ));
    }
    sub_path(&m.image_sub_path)
}

/// `config.mounts.image_sub_path`: empty (the image's root) or a relative path
/// with no `..` component.
pub fn sub_path(p: &str) -> Checked {
    let field = "config.mounts.image_sub_path";
    no_nul(field, p)?;
    if p.starts_with('/') {
        return Err(format!(
            "{field} {p:?} is absolute: it must be a path inside the image"
        ));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("{field} {p:?} leaves the image with '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field's name and a change that makes it bad.
    type Case<T> = (&'static str, Box<dyn Fn(&mut T)>);

    fn pod() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                attempt: 0,
            }),
            hostname: "web".into(),
            log_directory: "/var/log/pods/x".into(),
            ..Default::default()
        }
    }

    fn ctr() -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            log_path: "c/0.log".into(),
            command: vec!["sh".into()],
            ..Default::default()
        }
    }

    #[test]
    fn good_configs_pass() {
        assert_eq!(pod_config(&pod()), Ok(()));
        assert_eq!(container_config(&ctr()), Ok(()));
    }

    #[test]
    fn bad_pod_fields_are_named() {
        let cases: Vec<Case<cri::PodSandboxConfig>> = vec![
            (
                "metadata.name",
                Box::new(|c| c.metadata.as_mut().unwrap().name = "x".repeat(300)),
            ),
            (
                "metadata.name",
                Box::new(|c| c.metadata.as_mut().unwrap().name = "a/b".into()),
            ),
            (
                "metadata.uid",
                Box::new(|c| c.metadata.as_mut().unwrap().uid = "a\0b".into()),
            ),
            ("hostname", Box::new(|c| c.hostname = "h".repeat(65))),
            (
                "log_directory",
                Box::new(|c| c.log_directory = "relative".into()),
            ),
            (
                "labels",
                Box::new(|c| {
                    c.labels.insert("k".into(), "v".repeat(300 << 10));
                }),
            ),
            (
                "dns_config.searches",
                Box::new(|c| {
                    c.dns_config = Some(cri::DnsConfig {
                        searches: vec!["a\nnameserver 6.6.6.6".into()],
                        ..Default::default()
                    })
                }),
            ),
            (
                "port_mappings",
                Box::new(|c| {
                    c.port_mappings = vec![cri::PortMapping {
                        host_port: 70000,
                        ..Default::default()
                    }]
                }),
            ),
            (
                "cgroup_parent",
                Box::new(|c| {
                    c.linux = Some(cri::LinuxPodSandboxConfig {
                        cgroup_parent: "/a/../../b".into(),
                        ..Default::default()
                    })
                }),
            ),
        ];
        for (field, f) in cases {
            let mut c = pod();
            f(&mut c);
            let e = pod_config(&c).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
        let mut c = pod();
        c.metadata = None;
        assert!(pod_config(&c).unwrap_err().contains("metadata is missing"));
    }

    fn image_mount(sub: &str) -> cri::Mount {
        cri::Mount {
            container_path: "/vol".into(),
            readonly: true,
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            image_sub_path: sub.into(),
            ..Default::default()
        }
    }

    #[test]
    fn image_volumes_need_no_host_path() {
        for sub in ["", "etc", "usr/share/..x", "./bin"] {
            let mut c = ctr();
            c.mounts = vec![image_mount(sub)];
            container_config(&c).unwrap_or_else(|e| panic!("{sub:?}: {e}"));
        }
    }

    #[test]
    fn bad_container_fields_are_named() {
        let cases: Vec<Case<cri::ContainerConfig>> = vec![
            (
                "metadata.name",
                Box::new(|c| c.metadata.as_mut().unwrap().name = String::new()),
            ),
            (
                "log_path",
                Box::new(|c| c.log_path = "../../../etc/cron.d/x".into()),
            ),
            ("log_path", Box::new(|c| c.log_path = "/etc/passwd".into())),
            ("working_dir", Box::new(|c| c.working_dir = "tmp".into())),
            ("command", Box::new(|c| c.command = vec!["a\0b".into()])),
            (
                "envs",
                Box::new(|c| {
                    c.envs = vec![cri::KeyValue {
                        key: "A=B".into(),
                        value: Vec::new(),
                    }]
                }),
            ),
            ("together", Box::new(|c| c.args = vec!["x".repeat(2 << 20)])),
            (
                "mounts.container_path",
                Box::new(|c| {
                    c.mounts = vec![cri::Mount {
                        container_path: "rel".into(),
                        host_path: "/tmp".into(),
                        ..Default::default()
                    }]
                }),
            ),
            (
                "mounts.host_path",
                Box::new(|c| {
                    c.mounts = vec![cri::Mount {
                        container_path: "/x".into(),
                        host_path: String::new(),
                        ..Default::default()
                    }]
                }),
            ),
            (
                "image_sub_path",
                Box::new(|c| c.mounts = vec![image_mount("../../etc")]),
            ),
            (
                "image_sub_path",
                Box::new(|c| c.mounts = vec![image_mount("a/../../b")]),
            ),
            (
                "image_sub_path",
                Box::new(|c| c.mounts = vec![image_mount("/etc")]),
            ),
            (
                "image_sub_path",
                Box::new(|c| {
                    c.mounts = vec![cri::Mount {
                        container_path: "/x".into(),
                        host_path: "/tmp".into(),
                        image_sub_path: "etc".into(),
                        ..Default::default()
                    }]
                }),
            ),
            (
                "readonly false",
                Box::new(|c| {
                    let mut m = image_mount("");
                    m.readonly = false;
                    c.mounts = vec![m]
                }),
            ),
            (
                "both host_path",
                Box::new(|c| {
                    let mut m = image_mount("");
                    m.host_path = "/tmp".into();
                    c.mounts = vec![m]
                }),
            ),
        ];
        for (field, f) in cases {
            let mut c = ctr();
            f(&mut c);
            let e = container_config(&c).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    /// KeyValue.value is bytes: a value that is not UTF-8 is
    /// refused, naming the variable, and UTF-8 beyond ASCII passes.
    #[test]
    fn env_values_must_be_utf8() {
        let mut c = ctr();
        c.envs = vec![cri::KeyValue {
            key: "LATIN1".into(),
            value: b"caf\xe9".to_vec(),
        }];
        let e = container_config(&c).unwrap_err();
        assert!(e.contains("config.envs[\"LATIN1\"]"), "{e}");
        assert!(e.contains("not UTF-8"), "{e}");
        assert!(e.contains("offset 3"), "{e}");
        c.envs[0].value = "café ☕".as_bytes().to_vec();
        container_config(&c).unwrap();
    }

    fn bind(options: &[&str]) -> cri::Mount {
        cri::Mount {
            container_path: "/data".into(),
            host_path: "/tmp".into(),
            mount_options: options.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Mount.mount_options (KEP-5855): nodev, noexec and nosuid on a host
    /// path; anything else, or any option on an image volume, is refused.
    #[test]
    fn bind_mount_options() {
        let mut c = ctr();
        c.mounts = vec![bind(&["noexec", "nodev", "nosuid"])];
        container_config(&c).unwrap();
        for bad in [
            "ro",
            "exec",
            "suid",
            "rbind",
            "nosymfollow",
            "noexec,nodev",
            "",
        ] {
            c.mounts = vec![bind(&["nodev", bad])];
            let e = container_config(&c).unwrap_err();
            assert!(e.contains("config.mounts.mount_options"), "{bad}: {e}");
            assert!(
                e.contains(&format!("{bad:?} is not supported")),
                "{bad}: {e}"
            );
            assert!(e.contains("nodev, noexec, nosuid"), "{bad}: {e}");
        }
        let mut m = image_mount("");
        m.mount_options = vec!["noexec".into()];
        c.mounts = vec![m];
        let e = container_config(&c).unwrap_err();
        assert!(e.contains("config.mounts.mount_options"), "{e}");
        assert!(e.contains("image volume"), "{e}");
    }
}
