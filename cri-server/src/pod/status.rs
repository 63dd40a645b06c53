//! The CRI's view of a pod: its status, its verbose info, list filters, and the
//! name that must be unique.

use super::record::{PodRecord, PodState};
use super::spec::ns_options;
use crate::store;
use berth_proto::v1 as cri;
use serde_json::json;

pub fn name_key(c: &cri::PodSandboxConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
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
