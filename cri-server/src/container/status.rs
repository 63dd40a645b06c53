//! The CRI's view of a container: its status, list entries and filters, and the
//! name that must be unique in its pod.

use super::record::{ContainerRecord, ContainerState};
use crate::store;
use berth_proto::v1 as cri;

pub fn name_key(c: &cri::ContainerConfig, pod: &cri::PodSandboxConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    let p = pod.metadata.clone().unwrap_or_default();
    format!(
        "{}_{}_{}_{}_{}",
        m.name, p.name, p.namespace, p.uid, m.attempt
    )
}

pub fn status_of(rec: &ContainerRecord) -> cri::ContainerStatus {
    let config: cri::ContainerConfig = store::decode(&rec.config);
    let state = match rec.state {
        ContainerState::Creating | ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited | ContainerState::Removing => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    };
    cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: config.metadata.clone(),
        state: state as i32,
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        exit_code: rec.exit_code,
        image: config.image.clone(),
        image_ref: rec.image_ref.clone(),
        image_id: rec.image_id.clone(),
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        mounts: super::image_volume::status_mounts(&config, &rec.image_volumes),
        log_path: rec.log_path.clone(),
        resources: config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                ..Default::default()
            }),
        user: Some(cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: rec.user.0 as i64,
                gid: rec.user.1 as i64,
                supplemental_groups: rec.user.2.iter().map(|&g| g as i64).collect(),
            }),
        }),
        stop_signal: super::signal::to_cri(rec.stop_signal),
    }
}

pub fn to_cri(rec: &ContainerRecord) -> cri::Container {
    let s = status_of(rec);
    cri::Container {
        id: s.id,
        pod_sandbox_id: rec.pod_id.clone(),
        metadata: s.metadata,
        image: s.image,
        image_ref: s.image_ref,
        image_id: s.image_id,
        state: s.state,
        created_at: s.created_at,
        labels: s.labels,
        annotations: s.annotations,
    }
}

pub fn matches(rec: &ContainerRecord, f: &cri::ContainerFilter) -> bool {
    if matches!(
        rec.state,
        ContainerState::Creating | ContainerState::Removing
    ) {
        return false;
    }
    if !f.id.is_empty() && !rec.id.starts_with(&f.id) {
        return false;
    }
    if !f.pod_sandbox_id.is_empty() && !rec.pod_id.starts_with(&f.pod_sandbox_id) {
        return false;
    }
    let s = status_of(rec);
    if let Some(want) = &f.state
        && want.state != s.state
    {
        return false;
    }
    f.label_selector
        .iter()
        .all(|(k, v)| s.labels.get(k) == Some(v))
}
