//! Pod networking through CNI plugins, invoked as the CNI specification says:
//! one process per plugin of the network list, the network config on stdin, the
//! result on stdout, `CNI_*` variables in the environment. The first config in the
//! conf dir (sorted by file name) is the pod network, as containerd picks it; a
//! pod's lo is brought up by the `loopback` plugin first. ADD's result is kept
//! with the pod so DEL gets exactly what ADD returned.

use crate::ports::{Dns, PortMapping};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
pub struct Attachment {
    pub pod_id: String,
    pub netns: PathBuf,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// `runtimeConfig` values offered to plugins that declare the capability.
    pub port_mappings: Vec<PortMapping>,
    pub dns: Option<Dns>,
    pub bandwidth: Option<Value>,
    pub pod_cidr: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Cni {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

/// A network list: name, version and plugin configs.
#[derive(Clone, Debug)]
pub struct NetworkList {
    pub name: String,
    pub version: String,
    pub plugins: Vec<Value>,
    pub file: PathBuf,
}

pub const IFNAME: &str = "eth0";

impl Cni {
    /// The pod network: the first usable `.conflist`, `.conf` or `.json` file.
    pub fn network(&self) -> Result<NetworkList, String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.conf_dir)
            .map_err(|e| format!("no CNI network config: {}: {e}", self.conf_dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        let mut last_err = format!("no CNI network config in {}", self.conf_dir.display());
        for f in files {
            match parse_network(&f) {
                Ok(n) => return Ok(n),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    fn find_plugin(&self, kind: &str) -> Result<PathBuf, String> {
        if kind.is_empty() || kind.contains('/') {
            return Err(format!("CNI plugin type {kind:?} is not a plugin name"));
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "CNI plugin {kind:?} not found in {}",
                    self.bin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// ADD: lo, then the pod network. Returns the pod network's result.
    pub async fn add(&self, net: &NetworkList, a: &Attachment) -> Result<Value, String> {
        self.loopback("ADD", a).await?;
        let mut prev: Option<Value> = None;
        for plugin in &net.plugins {
            let conf = plugin_config(net, plugin, prev.as_ref(), a);
            let result = self.exec(plugin, "ADD", conf, a, IFNAME).await?;
            prev = Some(result);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL in reverse order with ADD's result; every plugin runs even if one fails.
    pub async fn del(
        &self,
        net: &NetworkList,
        a: &Attachment,
        prev: Option<&Value>,
    ) -> Result<(), String> {
        let mut first_err = None;
        for plugin in net.plugins.iter().rev() {
            let conf = plugin_config(net, plugin, prev, a);
            if let Err(e) = self.exec(plugin, "DEL", conf, a, IFNAME).await {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.loopback("DEL", a).await {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// CHECK with ADD's result (CNI 0.4.0 and later).
    pub async fn check(
        &self,
        net: &NetworkList,
        a: &Attachment,
        prev: &Value,
    ) -> Result<(), String> {
        for plugin in &net.plugins {
            let conf = plugin_config(net, plugin, Some(prev), a);
            self.exec(plugin, "CHECK", conf, a, IFNAME).await?;
        }
        Ok(())
    }

    async fn loopback(&self, command: &str, a: &Attachment) -> Result<(), String> {
        let conf = json!({"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"});
        self.exec(&conf, command, conf.clone(), a, "lo")
            .await
            .map(|_| ())
    }

    async fn exec(
        &self,
        plugin: &Value,
        command: &str,
        conf: Value,
        a: &Attachment,
        ifname: &str,
    ) -> Result<Value, String> {
        let kind = plugin["type"].as_str().unwrap_or_default();
        let bin = self.find_plugin(kind)?;
        let path = std::env::join_paths(&self.bin_dirs).map_err(|e| e.to_string())?;
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            a.pod_namespace, a.pod_name, a.pod_id, a.pod_uid
        );
        let mut child = tokio::process::Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &a.pod_id)
            .env("CNI_NETNS", &a.netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", path)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("running CNI plugin {}: {e}", bin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            let bytes = serde_json::to_vec(&conf).unwrap_or_default();
            stdin
                .write_all(&bytes)
                .await
                .map_err(|e| format!("CNI plugin {kind}: writing its config: {e}"))?;
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .map_err(|_| format!("CNI plugin {kind} {command} did not finish within 60 s"))?
                .map_err(|e| format!("CNI plugin {kind}: {e}"))?;
        if !out.status.success() {
            let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let msg = err["msg"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            let details = err["details"].as_str().unwrap_or_default();
            return Err(format!(
                "CNI plugin {kind} {command} failed: {msg}{}{details}",
                if details.is_empty() { "" } else { ": " }
            ));
        }
        if command != "ADD" {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("CNI plugin {kind} ADD printed no result JSON: {e}"))
    }
}

fn parse_network(file: &Path) -> Result<NetworkList, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
    let plugins = match v["plugins"].as_array() {
        Some(p) => p.clone(),
        // A single-plugin `.conf` is a list of one.
        None if v["type"].is_string() => vec![v.clone()],
        None => return Err(format!("{}: has neither plugins nor type", file.display())),
    };
    if plugins.is_empty() {
        return Err(format!("{}: the plugin list is empty", file.display()));
    }
    Ok(NetworkList {
        name: v["name"].as_str().unwrap_or("berth").to_string(),
        version: v["cniVersion"].as_str().unwrap_or("0.4.0").to_string(),
        plugins,
        file: file.to_path_buf(),
    })
}

/// A plugin's stdin: its config with the list's name and version, the previous
/// result, and the runtime config for the capabilities it declares.
pub fn plugin_config(
    net: &NetworkList,
    plugin: &Value,
    prev: Option<&Value>,
    a: &Attachment,
) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = json!(net.name);
    conf["cniVersion"] = json!(net.version);
    if let Some(p) = prev.filter(|p| !p.is_null()) {
        conf["prevResult"] = p.clone();
    }
    let caps = &plugin["capabilities"];
    let mut rc = serde_json::Map::new();
    if caps["portMappings"].as_bool() == Some(true) && !a.port_mappings.is_empty() {
        rc.insert("portMappings".into(), json!(a.port_mappings));
    }
    if caps["dns"].as_bool() == Some(true)
        && let Some(d) = &a.dns
    {
        rc.insert("dns".into(), json!(d));
    }
    if caps["bandwidth"].as_bool() == Some(true)
        && let Some(b) = &a.bandwidth
    {
        rc.insert("bandwidth".into(), b.clone());
    }
    if caps["ipRanges"].as_bool() == Some(true)
        && let Some(c) = &a.pod_cidr
    {
        rc.insert("ipRanges".into(), json!([[{"subnet": c}]]));
    }
    if !rc.is_empty() {
        conf["runtimeConfig"] = Value::Object(rc);
    }
    conf
}

/// The IPs of a result, IPv4 first, without prefix lengths.
pub fn result_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<String> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect();
    ips.sort_by_key(|ip| ip.contains(':'));
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_gets_name_version_prev_and_declared_capabilities() {
        let net = NetworkList {
            name: "pods".into(),
            version: "1.0.0".into(),
            plugins: vec![],
            file: PathBuf::new(),
        };
        let a = Attachment {
            port_mappings: vec![crate::PortMapping::parse("8080:80").unwrap()],
            dns: Some(crate::Dns {
                servers: vec!["10.0.0.10".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let c = plugin_config(&net, &portmap, Some(&json!({"ips": []})), &a);
        assert_eq!(c["name"], "pods");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["prevResult"], json!({"ips": []}));
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(
            c["runtimeConfig"].get("dns").is_none(),
            "dns was not declared"
        );
        let bridge = json!({"type": "bridge"});
        assert!(
            plugin_config(&net, &bridge, None, &a)
                .get("runtimeConfig")
                .is_none()
        );
    }

    #[test]
    fn ips_come_v4_first_without_prefix() {
        let r = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.88.0.5/16"}]});
        assert_eq!(result_ips(&r), vec!["10.88.0.5", "fd00::5"]);
    }

    #[test]
    fn the_first_config_by_name_is_the_network() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("05-broken.conflist"), "{").unwrap();
        let cni = Cni {
            conf_dir: dir.path().into(),
            bin_dirs: vec![],
        };
        let n = cni.network().unwrap();
        assert_eq!(
            (n.name.as_str(), n.version.as_str(), n.plugins.len()),
            ("a", "0.4.0", 1)
        );
    }
}
