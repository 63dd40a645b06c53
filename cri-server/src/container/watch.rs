//! A container's end, as its shim reports it, and the events kubelet's
//! GetContainerEvents stream carries.

use crate::container::{ContainerRecord, ContainerState, apply_exit};
use crate::daemon::{Container, Daemon};
use crate::{pod, shim, store};
use berth_proto::v1 as cri;
use std::sync::Arc;

/// Watches a container's shim; when it ends, records the exit.
pub fn watch(d: &Arc<Daemon>, c: Container) {
    let d = d.clone();
    tokio::spawn(async move {
        let id = c.get().id;
        let exit = shim::wait(&d.paths.shim_dir(&id)).await;
        let ended = exit.is_some() || d.end_unmonitored(&id).await;
        let rec = c.update(|r| {
            if matches!(r.state, ContainerState::Created | ContainerState::Running) {
                apply_exit(r, exit.as_ref(), ended);
            }
            r.clone()
        });
        if let Err(e) = d.save_container(&rec) {
            tracing::error!(container = %id, "{}", e.message());
        }
        let _ = c.exited.send_replace(true);
        tracing::info!(container = %id, exit_code = rec.exit_code, reason = %rec.reason, "container exited");
        event(&d, &rec, cri::ContainerEventType::ContainerStoppedEvent);
    });
}

pub fn event(d: &Daemon, c: &ContainerRecord, kind: cri::ContainerEventType) {
    let pod_status = d.pod(&c.pod_id).ok().map(|p| pod::status_of(&p.get()));
    let _ = d.events.send(cri::ContainerEventResponse {
        container_id: c.id.clone(),
        container_event_type: kind as i32,
        created_at: store::now_ns(),
        pod_sandbox_status: pod_status,
        containers_statuses: vec![super::status::status_of(c)],
    });
}
