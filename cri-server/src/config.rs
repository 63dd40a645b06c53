//! berthd's configuration: one typed struct, defaults in code, read from
//! `/etc/berth/berth.toml` (or `--config`), flags over it. `berthd config default`
//! prints every key with its default.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The CRI socket (mode 0600, root only).
    pub listen: PathBuf,
    /// Durable state: images, pods, containers.
    pub root: PathBuf,
    /// Volatile state: shim state directories, network namespaces.
    pub state: PathBuf,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// The per-container monitor binary.
    pub shim: PathBuf,
    /// cgroupfs; systemd is refused unless systemd runs as PID 1.
    pub cgroup_driver: String,
    pub log_level: String,
    /// `host:port` for Prometheus metrics (`GET /metrics`); empty: off.
    pub metrics_address: String,
    /// `host:port` of the streaming server (exec, attach, port-forward); port 0
    /// picks a free one.
    pub streaming_address: String,
    /// The pod sandbox image; empty: berth's built-in pause, which needs no pull.
    pub sandbox_image: String,
    pub registry: Registry,
    pub cni: Cni,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Registry {
    /// Registry host to mirrors tried in order before it, e.g.
    /// `"registry.k8s.io" = ["127.0.0.1:5000"]`.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Registries reached over plain HTTP (loopback ones always are).
    pub insecure: Vec<String>,
    /// A docker config.json with `auths`, used when a pull brings no credentials.
    pub auth_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Cni {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "/run/berth/berth.sock".into(),
            root: "/var/lib/berth".into(),
            state: "/run/berth".into(),
            runtime: "/usr/local/bin/berth-runtime".into(),
            shim: "/usr/local/bin/berth-shim".into(),
            cgroup_driver: "cgroupfs".into(),
            log_level: "info".into(),
            metrics_address: String::new(),
            streaming_address: "127.0.0.1:0".into(),
            sandbox_image: String::new(),
            registry: Registry::default(),
            cni: Cni::default(),
        }
    }
}

impl Default for Cni {
    fn default() -> Self {
        let mut bin_dirs = vec![PathBuf::from("/opt/cni/bin")];
        // Debian's containernetworking-plugins installs here.
        if Path::new("/usr/lib/cni").is_dir() {
            bin_dirs.push("/usr/lib/cni".into());
        }
        Cni {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs,
        }
    }
}

impl Config {
    /// Reads `path`; a missing default file means the defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let c: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        c.check()?;
        Ok(c)
    }

    pub fn check(&self) -> Result<(), String> {
        // Shim sockets live at <state>/shims/<64-hex id>/console.sock, and a unix
        // socket path has 107 bytes at most.
        let longest = self.state.as_os_str().len() + "/shims/".len() + 64 + "/console.sock".len();
        if longest > 107 {
            return Err(format!(
                "state = {:?} is too long: shim socket paths under it would exceed the 107 bytes a unix socket path may have (keep it under 24 bytes, like /run/berth)",
                self.state.display()
            ));
        }
        if !self.sandbox_image.is_empty() {
            return Err(format!(
                "sandbox_image = {:?}: berth runs pods with its built-in pause; leave sandbox_image empty",
                self.sandbox_image
            ));
        }
        match self.cgroup_driver.as_str() {
            "cgroupfs" => Ok(()),
            "systemd" if Path::new("/run/systemd/system").exists() => {
                Err("cgroup_driver = \"systemd\" is not supported yet; use \"cgroupfs\"".into())
            }
            "systemd" => Err("cgroup_driver = \"systemd\" needs systemd running as PID 1, which this host does not have; use \"cgroupfs\"".into()),
            other => Err(format!("cgroup_driver = {other:?}: use \"cgroupfs\"")),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn store_config(&self) -> berth_image::StoreConfig {
        let mut s = berth_image::StoreConfig::new(&self.root);
        s.mirrors = self.registry.mirrors.clone().into_iter().collect();
        s.insecure = self.registry.insecure.clone();
        s.docker_config = self.registry.auth_file.clone();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = Config::default();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_keys_and_bad_drivers_are_refused() {
        assert!(toml::from_str::<Config>("listne = \"/x\"").is_err());
        let c: Config = toml::from_str("cgroup_driver = \"weird\"").unwrap();
        assert!(c.check().unwrap_err().contains("weird"));
        let c: Config =
            toml::from_str("[registry.mirrors]\n\"registry.k8s.io\" = [\"127.0.0.1:5000\"]")
                .unwrap();
        assert_eq!(
            c.store_config().mirrors["registry.k8s.io"],
            ["127.0.0.1:5000"]
        );
    }
}
