//! `--network bridge` for the CLI, through the same CNI code as berthd: a pinned
//! network namespace per container (`/run/berth/cli/netns/<id>`), the CNI ADD of
//! the first config in /etc/cni/net.d (or berth's built-in bridge when there is
//! none), `-p` as portmap's `portMappings`, and the result kept in the container
//! directory so DEL gets it back at removal.

use berth_network::{Attachment, Cni, NetworkList, PortMapping, netns};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

const CONF_DIR: &str = "/etc/cni/net.d";
const BUILTIN_DIR: &str = "/run/berth/cli/cni";
/// The bridge berth writes when the host has no CNI config (as hack/install.sh).
const BUILTIN: &str = include_str!("../../contrib/10-berth.conflist");

fn cni(conf_dir: &str) -> Cni {
    Cni {
        conf_dir: conf_dir.into(),
        bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
    }
}

/// The network to use: the host's CNI config, else the built-in bridge; an error
/// saying why when the CNI plugins are missing.
fn network() -> Result<(Cni, NetworkList), String> {
    let host = cni(CONF_DIR);
    if let Ok(n) = host.network() {
        return Ok((host, n));
    }
    std::fs::create_dir_all(BUILTIN_DIR).map_err(|e| format!("creating {BUILTIN_DIR}: {e}"))?;
    std::fs::write(Path::new(BUILTIN_DIR).join("10-berth.conflist"), BUILTIN)
        .map_err(|e| format!("writing the built-in CNI config: {e}"))?;
    let builtin = cni(BUILTIN_DIR);
    let n = builtin.network()?;
    Ok((builtin, n))
}

/// Whether bridge networking can work here: the bridge plugin is installed.
pub fn available() -> bool {
    ["/opt/cni/bin/bridge", "/usr/lib/cni/bridge"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// What `setup` keeps in the container's directory for `teardown`.
#[derive(Serialize, Deserialize)]
struct Saved {
    conf_dir: PathBuf,
    ports: Vec<PortMapping>,
    result: Value,
}

fn netns_path(id: &str) -> PathBuf {
    Path::new("/run/berth/cli/netns").join(id)
}

fn attachment(id: &str, ports: Vec<PortMapping>) -> Attachment {
    Attachment {
        pod_id: format!("berth-cli-{id}"),
        netns: netns_path(id),
        pod_name: id.to_string(),
        pod_namespace: "berth".into(),
        pod_uid: id.to_string(),
        port_mappings: ports,
        ..Default::default()
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(rt.block_on(f))
}

/// Creates the namespace and attaches it; returns its path. The ports and the
/// CNI result are kept in `dir` for `teardown`.
pub fn setup(id: &str, dir: &Path, ports: Vec<PortMapping>) -> Result<PathBuf, String> {
    if !available() {
        return Err("bridge networking needs the CNI plugins (Debian: containernetworking-plugins): install them, or use --network none or host".into());
    }
    let (cni, net) = network()?;
    let ns = netns_path(id);
    netns::create(&ns).map_err(|e| format!("creating the network namespace: {e}"))?;
    let a = attachment(id, ports.clone());
    match block_on(cni.add(&net, &a))? {
        Ok(result) => {
            let saved = Saved {
                conf_dir: cni.conf_dir.clone(),
                ports,
                result,
            };
            let bytes = serde_json::to_vec(&saved).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("network.json"), bytes).map_err(|e| e.to_string())?;
            Ok(ns)
        }
        Err(e) => {
            let _ = block_on(cni.del(&net, &a, None));
            let _ = netns::remove(&ns);
            Err(format!("bridge networking: {e}"))
        }
    }
}

/// CNI DEL with what ADD returned, and the namespace removed. Nothing to do for a
/// container without bridge networking.
pub fn teardown(id: &str, dir: &Path) {
    let Some(saved) = std::fs::read(dir.join("network.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
    else {
        return;
    };
    let cni = Cni {
        conf_dir: saved.conf_dir,
        ..cni(CONF_DIR)
    };
    if let Ok(net) = cni.network() {
        let a = attachment(id, saved.ports);
        let _ = block_on(cni.del(&net, &a, Some(&saved.result)));
    }
    let _ = netns::remove(&netns_path(id));
    let _ = std::fs::remove_file(dir.join("network.json"));
}
