//! A container's OCI config: what its caller asks for, over secure defaults, as
//! oci-spec's typed `Spec`.

use crate::users::User;
use crate::{caps, devices, mounts, seccomp};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceCgroup,
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResources, LinuxSeccomp, Mount, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The OCI version berth writes.
pub const OCI_VERSION: &str = "1.2.0";

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

/// The seccomp filter a container gets.
#[derive(Clone, Debug)]
pub enum Seccomp {
    Unconfined,
    /// berth's default profile, for the container's capabilities.
    RuntimeDefault,
    Profile(LinuxSeccomp),
}

/// What a container runs and with what. `Container::new` gives the secure
/// defaults; the caller (berthd's pods and containers, `berth run`) changes what
/// its request asks for, then `build` makes the OCI config.
#[derive(Clone, Debug)]
pub struct Container {
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub terminal: bool,
    pub user: User,
    /// Bounding, effective and permitted.
    pub capabilities: Vec<Capability>,
    pub ambient: Vec<Capability>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    pub hostname: Option<String>,
    pub namespaces: Vec<LinuxNamespace>,
    pub mounts: Vec<Mount>,
    pub devices: Vec<LinuxDevice>,
    pub device_rules: Vec<LinuxDeviceCgroup>,
    /// cpu, memory, hugepages, unified (the device rules come from `device_rules`).
    pub resources: LinuxResources,
    pub cgroups_path: String,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: Seccomp,
    pub uid_mappings: Vec<LinuxIdMapping>,
    pub gid_mappings: Vec<LinuxIdMapping>,
    pub sysctl: HashMap<String, String>,
    pub rootfs_propagation: Option<String>,
}

impl Container {
    /// A container at `rootfs` with the defaults containerd and docker give: their
    /// capability set, proc/dev/sys mounts, masked and read-only paths, no device
    /// access, the RuntimeDefault seccomp profile. Privileged: every capability
    /// this host has, every host device, read-write /sys, no masks, unconfined.
    pub fn new(rootfs: impl Into<PathBuf>, privileged: bool) -> Container {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Container {
            rootfs: rootfs.into(),
            readonly_rootfs: false,
            args: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            terminal: false,
            user: User::default(),
            capabilities: if privileged {
                caps::all()
            } else {
                caps::DEFAULT.to_vec()
            },
            ambient: Vec::new(),
            no_new_privileges: false,
            oom_score_adj: None,
            hostname: None,
            namespaces: Vec::new(),
            mounts: mounts::defaults(privileged),
            devices: if privileged {
                devices::all_on_host()
            } else {
                Vec::new()
            },
            device_rules: vec![devices::rule_all(privileged)],
            resources: LinuxResources::default(),
            cgroups_path: String::new(),
            masked_paths: if privileged {
                Vec::new()
            } else {
                strings(DEFAULT_MASKED)
            },
            readonly_paths: if privileged {
                Vec::new()
            } else {
                strings(DEFAULT_READONLY)
            },
            seccomp: if privileged {
                Seccomp::Unconfined
            } else {
                Seccomp::RuntimeDefault
            },
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            sysctl: HashMap::new(),
            rootfs_propagation: None,
        }
    }

    /// Sets `KEY=VALUE` over any earlier value of KEY.
    pub fn set_env(&mut self, kv: String) {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        self.env
            .retain(|e| e.split('=').next() != Some(key.as_str()));
        self.env.push(kv);
    }

    /// PATH when the image and the request set none (first, as containerd puts it).
    pub fn default_path(&mut self) {
        if !self.env.iter().any(|e| e.starts_with("PATH=")) {
            self.env.insert(0, crate::image::DEFAULT_PATH.into());
        }
    }

    /// A namespace of the container's own (`path` None) or one to join.
    pub fn namespace(&mut self, typ: LinuxNamespaceType, path: Option<PathBuf>) {
        let ns = LinuxNamespaceBuilder::default().typ(typ);
        let ns = match path {
            Some(p) => ns.path(p),
            None => ns,
        };
        self.namespaces
            .push(ns.build().expect("a namespace with a type is complete"));
    }

    pub fn has_mount_at(&self, destination: &str) -> bool {
        self.mounts
            .iter()
            .any(|m| m.destination() == Path::new(destination))
    }

    /// Gives the container the host's device node `host` at `container_path`.
    pub fn add_device(
        &mut self,
        host: &Path,
        container_path: &str,
        access: &str,
    ) -> Result<(), String> {
        let d = devices::from_host(host, container_path)?;
        self.device_rules.push(devices::rule_for(&d, access));
        self.devices.push(d);
        Ok(())
    }

    /// The OCI config. Every field is set here from the request, none from
    /// oci-spec's own defaults (which are youki's, not berth's).
    pub fn build(&self) -> Result<Spec, String> {
        let err = |e: oci_spec::OciSpecError| format!("building the OCI config: {e}");
        let set = |v: &[Capability]| {
            v.iter()
                .copied()
                .collect::<oci_spec::runtime::Capabilities>()
        };
        let mut capabilities = LinuxCapabilitiesBuilder::default()
            .bounding(set(&self.capabilities))
            .effective(set(&self.capabilities))
            .permitted(set(&self.capabilities))
            .ambient(set(&self.ambient))
            .build()
            .map_err(err)?;
        // The builder's default would give every process three inheritable
        // capabilities; containerd and CRI-O give none (CVE-2022-24769), and a
        // pause with an empty bounding set could not even be started with them.
        capabilities.set_inheritable(None);
        let mut user = UserBuilder::default()
            .uid(self.user.uid)
            .gid(self.user.gid)
            .build()
            .map_err(err)?;
        if !self.user.additional_gids.is_empty() {
            user.set_additional_gids(Some(self.user.additional_gids.clone()));
        }
        let mut process = ProcessBuilder::default()
            .terminal(self.terminal)
            .user(user)
            .args(self.args.clone())
            .env(self.env.clone())
            .cwd(&self.cwd)
            .capabilities(capabilities)
            .no_new_privileges(self.no_new_privileges)
            .build()
            .map_err(err)?;
        process.set_rlimits(None);
        process.set_oom_score_adj(self.oom_score_adj);
        let mut resources = self.resources.clone();
        resources.set_devices(Some(self.device_rules.clone()));
        let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let mut linux = LinuxBuilder::default()
            .namespaces(self.namespaces.clone())
            .cgroups_path(PathBuf::from(&self.cgroups_path))
            .resources(resources)
            .build()
            .map_err(err)?;
        linux
            .set_devices((!self.devices.is_empty()).then(|| self.devices.clone()))
            .set_masked_paths(nonempty(&self.masked_paths))
            .set_readonly_paths(nonempty(&self.readonly_paths))
            .set_uid_mappings((!self.uid_mappings.is_empty()).then(|| self.uid_mappings.clone()))
            .set_gid_mappings((!self.gid_mappings.is_empty()).then(|| self.gid_mappings.clone()))
            .set_sysctl((!self.sysctl.is_empty()).then(|| self.sysctl.clone()))
            .set_rootfs_propagation(self.rootfs_propagation.clone())
            .set_seccomp(match &self.seccomp {
                Seccomp::Unconfined => None,
                Seccomp::RuntimeDefault => Some(seccomp::default_profile(&self.capabilities)),
                Seccomp::Profile(p) => Some(p.clone()),
            });
        let root = RootBuilder::default()
            .path(&self.rootfs)
            .readonly(self.readonly_rootfs)
            .build()
            .map_err(err)?;
        let mut spec = SpecBuilder::default()
            .version(OCI_VERSION)
            .process(process)
            .root(root)
            .mounts(self.mounts.clone())
            .linux(linux)
            .build()
            .map_err(err)?;
        spec.set_hostname(self.hostname.clone())
            .set_annotations(None);
        Ok(spec)
    }
}

/// One uid or gid mapping of a user namespace.
pub fn id_mapping(container_id: u32, host_id: u32, size: u32) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(container_id)
        .host_id(host_id)
        .size(size)
        .build()
        .expect("a complete id mapping")
}

/// Writes `spec` as the bundle's `config.json`, atomically (a temporary file in
/// the same directory, fsynced, then renamed).
pub fn write_config(bundle: &Path, spec: &Spec) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    let path = bundle.join("config.json");
    let tmp = bundle.join(".config.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// Reads a bundle's `config.json`.
pub fn read_config(bundle: &Path) -> Result<Spec, String> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(c: &Container) -> Value {
        serde_json::to_value(c.build().unwrap()).unwrap()
    }

    #[test]
    fn defaults_are_secure_and_none_are_oci_specs_own() {
        let mut c = Container::new("/r", false);
        c.args = vec!["/bin/true".into()];
        let v = json(&c);
        assert_eq!(v["ociVersion"], OCI_VERSION);
        assert!(v.get("hostname").is_none(), "no hostname unless asked: {v}");
        assert!(v.get("annotations").is_none());
        assert!(v["process"].get("rlimits").is_none());
        assert_eq!(v["process"]["env"], serde_json::json!([]));
        assert_eq!(
            v["linux"]["maskedPaths"].as_array().unwrap().len(),
            DEFAULT_MASKED.len()
        );
        assert_eq!(v["linux"]["namespaces"], serde_json::json!([]));
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        let bounding = v["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(bounding.len(), caps::DEFAULT.len());
        assert!(bounding.contains(&Value::from("CAP_CHOWN")));
        assert!(!bounding.contains(&Value::from("CAP_SYS_ADMIN")));
        assert!(
            v["process"]["capabilities"].get("inheritable").is_none(),
            "no inheritable capabilities: {v}"
        );
        let mounts: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            mounts,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
    }

    #[test]
    fn privileged_has_no_masks_and_no_filter() {
        let v = json(&Container::new("/r", true));
        assert!(v["linux"].get("maskedPaths").is_none());
        assert!(v["linux"].get("seccomp").is_none());
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], true);
        assert!(!v["linux"]["devices"].as_array().unwrap().is_empty());
    }

    #[test]
    fn requests_reach_the_config() {
        let mut c = Container::new("/r", false);
        c.env = vec!["A=1".into(), "PATH=/x".into()];
        c.set_env("A=2".into());
        c.default_path();
        c.namespace(LinuxNamespaceType::Network, Some("/run/netns/x".into()));
        c.hostname = Some("h".into());
        c.uid_mappings = vec![id_mapping(0, 100000, 65536)];
        c.add_device(Path::new("/dev/null"), "/dev/n", "rw")
            .unwrap();
        c.user.additional_gids = vec![5];
        let v = json(&c);
        assert_eq!(v["process"]["env"], serde_json::json!(["PATH=/x", "A=2"]));
        assert_eq!(v["linux"]["namespaces"][0]["path"], "/run/netns/x");
        assert_eq!(v["hostname"], "h");
        assert_eq!(v["linux"]["uidMappings"][0]["hostID"], 100000);
        assert_eq!(v["linux"]["resources"]["devices"][1]["access"], "rw");
        assert_eq!(
            v["process"]["user"]["additionalGids"],
            serde_json::json!([5])
        );
    }

    #[test]
    fn configs_round_trip_through_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Container::new("rootfs", false);
        c.args = vec!["sh".into()];
        let spec = c.build().unwrap();
        write_config(dir.path(), &spec).unwrap();
        assert_eq!(read_config(dir.path()).unwrap(), spec);
    }
}
