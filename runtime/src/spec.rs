//! Loading `config.json` and checking it before anything is created, so a bad
//! config fails with the field named and leaves nothing behind.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A loaded bundle: its directory, its spec and its rootfs as an absolute path.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::Bundle {
        path: dir.to_path_buf(),
        msg: format!("cannot open bundle directory: {e}"),
    })?;
    let config = dir.join("config.json");
    let data = std::fs::read(&config).map_err(|e| Error::Bundle {
        path: dir.clone(),
        msg: format!("cannot read config.json: {e}"),
    })?;
    let spec: Spec = serde_json::from_slice(&data).map_err(|e| Error::Bundle {
        path: dir.clone(),
        msg: format!("config.json is not a valid OCI runtime config: {e}"),
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::config("root", "missing (the rootfs to run in)"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| Error::config("root.path", format!("{}: {e}", rootfs.display())))?;
    validate(&spec)?;
    Ok(Bundle { dir, spec, rootfs })
}

/// Checks what the kernel calls would otherwise reject halfway through create.
pub fn validate(spec: &Spec) -> Result<()> {
    validate_version(spec.version())?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::config("process", "missing (nothing to run)"))?;
    validate_process(process)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::config("linux", "missing (berth-runtime runs Linux containers)"))?;
    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for ns in namespaces {
        if !seen.insert(ns.typ()) {
            return Err(Error::config(
                "linux.namespaces",
                format!("namespace {} is listed twice", ns.typ()),
            ));
        }
        if let Some(p) = ns.path()
            && !p.is_absolute()
        {
            return Err(Error::config(
                "linux.namespaces",
                format!("{} path {:?} must be absolute", ns.typ(), p),
            ));
        }
    }
    // "If a namespace type is not specified in the namespaces array, the container
    // MUST inherit the runtime namespace of that type." Without a mount namespace
    // the rootfs is set up in the runtime's (as runc does); what needs a private
    // one is refused, as runc refuses it.
    if !seen.contains(&LinuxNamespaceType::Mount)
        && (linux.masked_paths().as_ref().is_some_and(|p| !p.is_empty())
            || linux
                .readonly_paths()
                .as_ref()
                .is_some_and(|p| !p.is_empty()))
    {
        return Err(Error::config(
            "linux.maskedPaths",
            "masked and read-only paths need a mount namespace of the container's own (the config lists none, so the runtime's would be changed)",
        ));
    }
    let has_user = seen.contains(&LinuxNamespaceType::User);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_user
        && !maps
        && !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some())
    {
        return Err(Error::config(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        && !seen.contains(&LinuxNamespaceType::Uts)
    {
        return Err(Error::config(
            "hostname",
            "setting a hostname needs a uts namespace",
        ));
    }
    if let Some(devs) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) {
        if !seen.contains(&LinuxNamespaceType::Network) {
            return Err(Error::config(
                "linux.netDevices",
                "devices are moved into the container's network namespace, and the config lists none (the host's would be used)",
            ));
        }
        crate::netdev::validate(devs)?;
    }
    if let Some(sc) = linux.seccomp() {
        if sc.listener_path().is_none() && sc.listener_metadata().is_some() {
            return Err(Error::config(
                "linux.seccomp.listenerMetadata",
                "MUST NOT be set if listenerPath is not set",
            ));
        }
        if crate::seccomp::uses_notify(sc) && sc.listener_path().is_none() {
            return Err(Error::config(
                "linux.seccomp.listenerPath",
                "SCMP_ACT_NOTIFY needs a listenerPath: the seccomp agent to hand the notify fd to",
            ));
        }
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if !m.destination().is_absolute() {
            return Err(Error::config(
                "mounts.destination",
                format!("{:?} must be an absolute path", m.destination()),
            ));
        }
    }
    Ok(())
}

/// "ociVersion (string, REQUIRED) MUST be in SemVer v2.0.0 format and specifies
/// the version of the Open Container Initiative Runtime Specification with which
/// the bundle complies." This runtime implements 1.x: another major is refused.
pub fn validate_version(v: &str) -> Result<()> {
    let bad = |why: &str| Error::config("ociVersion", format!("{v:?}: {why}"));
    let (core, pre_build) = match v.find(['-', '+']) {
        Some(i) => (&v[..i], Some(&v[i..])),
        None => (v, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    let numeric = |n: &&str| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n.len() == 1 || !n.starts_with('0'))
    };
    if nums.len() != 3 || !nums.iter().all(numeric) {
        return Err(bad("not a SemVer 2.0.0 version (MAJOR.MINOR.PATCH)"));
    }
    if let Some(rest) = pre_build {
        let ids_ok = rest[1..]
            .split(['.', '-', '+'])
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !ids_ok {
            return Err(bad("not a SemVer 2.0.0 version (bad pre-release or build)"));
        }
    }
    if nums[0] != "1" {
        return Err(bad(
            "berth-runtime implements version 1 of the runtime spec",
        ));
    }
    Ok(())
}

/// Checks a process (the container's, or one given to `exec`).
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::config(
            "process.args",
            "must name the program to run",
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::config(
            "process.cwd",
            format!("{:?} must be an absolute path", process.cwd()),
        ));
    }
    for e in process.env().as_deref().unwrap_or_default() {
        if !e.contains('=') {
            return Err(Error::config(
                "process.env",
                format!("{e:?} is not KEY=VALUE"),
            ));
        }
    }
    Ok(())
}

/// Container ids name directories: keep them to a safe alphabet.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(f: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
        let mut v =
            serde_json::from_str::<serde_json::Value>(crate::default_spec::DEFAULT_SPEC).unwrap();
        f(&mut v);
        let spec: Spec = serde_json::from_value(v).unwrap();
        validate(&spec)
    }

    #[test]
    fn default_spec_is_valid() {
        spec_with(|_| {}).unwrap();
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = spec_with(|v| v["process"]["args"] = serde_json::json!([])).unwrap_err();
        assert!(e.to_string().contains("process.args"), "{e}");
        let e = spec_with(|v| v["process"]["cwd"] = "relative".into()).unwrap_err();
        assert!(e.to_string().contains("process.cwd"), "{e}");
        let e = spec_with(|v| v["process"]["env"] = serde_json::json!(["NOEQUALS"])).unwrap_err();
        assert!(e.to_string().contains("process.env"), "{e}");
        let e = spec_with(|v| {
            v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "pid"}])
        })
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = spec_with(|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]))
            .unwrap_err();
        assert!(e.to_string().contains("maskedPaths"), "{e}");
        spec_with(|v| {
            v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "uts"}]);
            v["linux"]["maskedPaths"] = serde_json::json!([]);
            v["linux"]["readonlyPaths"] = serde_json::json!([]);
        })
        .unwrap();
        let e = spec_with(|v| {
            v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}])
        })
        .unwrap_err();
        assert!(e.to_string().contains("uidMappings"), "{e}");
        let e = spec_with(|v| v["mounts"][0]["destination"] = "proc".into()).unwrap_err();
        assert!(e.to_string().contains("mounts.destination"), "{e}");
    }

    #[test]
    fn unknown_namespace_type_is_rejected_at_parse() {
        let mut v =
            serde_json::from_str::<serde_json::Value>(crate::default_spec::DEFAULT_SPEC).unwrap();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "bogus"}]);
        assert!(serde_json::from_value::<Spec>(v).is_err());
    }

    #[test]
    fn oci_versions() {
        for ok in ["1.0.0", "1.2.0", "1.0.2-dev", "1.3.0-rc.1+build.5"] {
            validate_version(ok).unwrap();
        }
        for bad in [
            "", "invalid", "1.0", "1.0.0.0", "01.0.0", "2.0.0", "1.0.0-", "v1.0.0",
        ] {
            let e = validate_version(bad).unwrap_err();
            assert!(e.to_string().contains("ociVersion"), "{bad}: {e}");
        }
    }

    #[test]
    fn ids() {
        validate_id("abc-1.2_x+y").unwrap();
        assert!(validate_id("").is_err());
        assert!(validate_id("../x").is_err());
        assert!(validate_id(".hidden").is_err());
        assert!(validate_id("a/b").is_err());
    }
}
