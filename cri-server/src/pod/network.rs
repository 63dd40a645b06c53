//! The pod's network through CNI: what the plugins are given, and the CHECK of
//! re-adopted pods' networks.

use super::record::{PodRecord, PodState};
use crate::daemon::{Daemon, lock};
use crate::store;
use berth_network::{Attachment, Dns, PortMapping};
use berth_proto::v1 as cri;
use std::sync::Arc;

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

pub fn attachment(d: &Daemon, rec: &PodRecord, config: &cri::PodSandboxConfig) -> Attachment {
    let m = config.metadata.clone().unwrap_or_default();
    let port_mappings = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .filter_map(|p| {
            let proto = match cri::Protocol::try_from(p.protocol).unwrap_or_default() {
                cri::Protocol::Tcp => "tcp",
                cri::Protocol::Udp => "udp",
                cri::Protocol::Sctp => "sctp",
            };
            Some(PortMapping {
                host_port: u16::try_from(p.host_port).ok()?,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: proto.into(),
                host_ip: p.host_ip.clone(),
            })
        })
        .collect();
    let dns = config.dns_config.as_ref().map(|c| Dns {
        servers: c.servers.clone(),
        searches: c.searches.clone(),
        options: c.options.clone(),
    });
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
