//! The CRI RuntimeService: each call checks its request and hands the work to
//! `pods` or `containers`; Exec, Attach and PortForward return a URL on the
//! streaming server. The calls berthd does not implement (list streaming, CRI
//! metrics, pod checkpoints, pod resize) answer Unimplemented with a reason
//! (`unimplemented`, docs/cri.md).

use crate::container::{self, ContainerState};
use crate::daemon::{Daemon, lock};
use crate::pod::{self, PodState};
use crate::service::unimplemented;
use crate::store;
use berth_proto::v1::runtime_service_server::RuntimeService;
use berth_proto::v1::*;
use std::sync::Arc;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

pub struct Runtime {
    pub daemon: Arc<Daemon>,
    pub streaming: Arc<crate::streaming::Server>,
}

fn ok<T>(t: T) -> Result<Response<T>, Status> {
    Ok(Response::new(t))
}

/// Runs a call that changes state to its end in a task of its own. When the
/// client goes away (kubelet restarted, its deadline passed), tonic drops the
/// handler's future; a call dropped between two of its steps would leave its
/// object half made (a pod `Creating`, its name reserved, its netns and IP
/// kept), and kubelet's retry would find the name in use for good. The task
/// finishes the call, or undoes it on failure, as if the client had waited;
/// the retry then sees the outcome (containerd runs on the same way).
async fn to_completion<T: Send + 'static>(
    call: impl Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(call).await.map_err(crate::status::join)?
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        _req: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        ok(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: crate::RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: berth_proto::CRI_API_VERSION.into(),
        })
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is missing"))?;
        let d = self.daemon.clone();
        let pod_sandbox_id =
            to_completion(async move { pod::run(&d, config, req.runtime_handler).await }).await?;
        ok(RunPodSandboxResponse { pod_sandbox_id })
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let (d, id) = (self.daemon.clone(), req.into_inner().pod_sandbox_id);
        match to_completion(async move { pod::stop(&d, &id).await }).await {
            // Stopping a pod that is gone is not an error (kubelet retries).
            Err(s) if s.code() == tonic::Code::NotFound => ok(StopPodSandboxResponse {}),
            r => r.map(|_| Response::new(StopPodSandboxResponse {})),
        }
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let (d, id) = (self.daemon.clone(), req.into_inner().pod_sandbox_id);
        to_completion(async move { pod::remove(&d, &id).await }).await?;
        ok(RemovePodSandboxResponse {})
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let req = req.into_inner();
        let pod = self.daemon.pod(&req.pod_sandbox_id)?;
        let rec = pod.get();
        let containers_statuses = self
            .daemon
            .pod_containers(&rec.id)
            .iter()
            .map(|c| container::status_of(&c.get()))
            .collect();
        ok(PodSandboxStatusResponse {
            status: Some(pod::status_of(&rec)),
            info: if req.verbose {
                pod::verbose_info(&rec)
            } else {
                Default::default()
            },
            containers_statuses,
            timestamp: store::now_ns(),
        })
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let pods: Vec<_> = lock(&self.daemon.pods).values().map(|p| p.get()).collect();
        let items = pods
            .iter()
            .filter(|p| pod::matches(p, &filter))
            .map(|p| {
                let s = pod::status_of(p);
                PodSandbox {
                    id: s.id,
                    metadata: s.metadata,
                    state: s.state,
                    created_at: s.created_at,
                    labels: s.labels,
                    annotations: s.annotations,
                    runtime_handler: s.runtime_handler,
                }
            })
            .collect();
        ok(ListPodSandboxResponse { items })
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is missing"))?;
        let d = self.daemon.clone();
        let container_id = to_completion(async move {
            container::create(&d, &req.pod_sandbox_id, config, req.sandbox_config).await
        })
        .await?;
        ok(CreateContainerResponse { container_id })
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let (d, id) = (self.daemon.clone(), req.into_inner().container_id);
        to_completion(async move { container::start(&d, &id).await }).await?;
        ok(StartContainerResponse {})
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let req = req.into_inner();
        let d = self.daemon.clone();
        let stop = async move { container::stop(&d, &req.container_id, req.timeout).await };
        match to_completion(stop).await {
            // Stopping a container that is gone is not an error (the CRI's idempotence).
            Err(s) if s.code() == tonic::Code::NotFound => ok(StopContainerResponse {}),
            r => r.map(|_| Response::new(StopContainerResponse {})),
        }
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let (d, id) = (self.daemon.clone(), req.into_inner().container_id);
        to_completion(async move { container::remove(&d, &id).await }).await?;
        ok(RemoveContainerResponse {})
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let all: Vec<_> = lock(&self.daemon.containers)
            .values()
            .map(|c| c.get())
            .collect();
        let containers = all
            .iter()
            .filter(|c| container::matches(c, &filter))
            .map(container::to_cri)
            .collect();
        ok(ListContainersResponse { containers })
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let req = req.into_inner();
        let rec = self.daemon.container(&req.container_id)?.get();
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let v = serde_json::json!({
                "pid": rec.pid,
                "sandboxID": rec.pod_id,
                "cgroupsPath": rec.cgroups_path,
                "bundle": self.daemon.paths.container_dir(&rec.id),
                "shim": self.daemon.paths.shim_dir(&rec.id),
            });
            info.insert("info".to_string(), v.to_string());
        }
        ok(ContainerStatusResponse {
            status: Some(container::status_of(&rec)),
            info,
        })
    }

    async fn update_container_resources(
        &self,
        req: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        let req = req.into_inner();
        let res = req
            .linux
            .ok_or_else(|| Status::invalid_argument("linux resources are missing"))?;
        let d = self.daemon.clone();
        to_completion(async move { container::update_resources(&d, &req.container_id, res).await })
            .await?;
        ok(UpdateContainerResourcesResponse {})
    }

    async fn reopen_container_log(
        &self,
        req: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        container::reopen_log(&self.daemon, &req.into_inner().container_id).await?;
        ok(ReopenContainerLogResponse {})
    }

    async fn exec_sync(
        &self,
        req: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let req = req.into_inner();
        ok(container::exec_sync(&self.daemon, &req.container_id, req.cmd, req.timeout).await?)
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let r = req.into_inner();
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument(
                "cmd is empty: give the command to run",
            ));
        }
        check_streams(r.stdin, r.stdout, r.stderr, r.tty)?;
        let c = container::running(&self.daemon, &r.container_id)?;
        let url = self.streaming.url(crate::streaming::Request::Exec {
            container_id: c.get().id,
            cmd: r.cmd,
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        });
        ok(ExecResponse { url })
    }

    async fn attach(
        &self,
        req: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        let r = req.into_inner();
        check_streams(r.stdin, r.stdout, r.stderr, r.tty)?;
        let c = container::running(&self.daemon, &r.container_id)?.get();
        let config: ContainerConfig = store::decode(&c.config);
        let url = self.streaming.url(crate::streaming::Request::Attach {
            stdin_once: config.stdin_once,
            container_id: c.id,
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        });
        ok(AttachResponse { url })
    }

    async fn port_forward(
        &self,
        req: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        let r = req.into_inner();
        let pod = self.daemon.pod(&r.pod_sandbox_id)?.get();
        if pod.state != PodState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        let url = self
            .streaming
            .url(crate::streaming::Request::PortForward { pod_id: pod.id });
        ok(PortForwardResponse { url })
    }

    async fn container_stats(
        &self,
        req: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let rec = self.daemon.container(&req.into_inner().container_id)?.get();
        ok(ContainerStatsResponse {
            stats: Some(self.container_stats_of(&rec)),
        })
    }

    async fn list_container_stats(
        &self,
        req: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let f = req.into_inner().filter.unwrap_or_default();
        let filter = ContainerFilter {
            id: f.id,
            pod_sandbox_id: f.pod_sandbox_id,
            label_selector: f.label_selector,
            state: None,
        };
        let all: Vec<_> = lock(&self.daemon.containers)
            .values()
            .map(|c| c.get())
            .collect();
        let stats = all
            .iter()
            .filter(|c| c.state == ContainerState::Running && container::matches(c, &filter))
            .map(|c| self.container_stats_of(c))
            .collect();
        ok(ListContainerStatsResponse { stats })
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        let pod = self.daemon.pod(&req.into_inner().pod_sandbox_id)?.get();
        ok(PodSandboxStatsResponse {
            stats: Some(self.pod_stats_of(&pod)),
        })
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let f = req.into_inner().filter.unwrap_or_default();
        let pods: Vec<_> = lock(&self.daemon.pods).values().map(|p| p.get()).collect();
        let filter = PodSandboxFilter {
            id: f.id,
            label_selector: f.label_selector,
            state: None,
        };
        let stats = pods
            .iter()
            .filter(|p| p.state == PodState::Ready && pod::matches(p, &filter))
            .map(|p| self.pod_stats_of(p))
            .collect();
        ok(ListPodSandboxStatsResponse { stats })
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .filter(|c| !c.is_empty());
        if let Some(c) = cidr {
            tracing::info!(pod_cidr = %c, "pod CIDR from kubelet");
            *lock(&self.daemon.pod_cidr) = Some(c);
        }
        ok(UpdateRuntimeConfigResponse {})
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let config = &self.daemon.config;
        let runtime_ok = config.runtime.exists();
        let network = self.daemon.cni.network();
        let condition = |kind: &str, ok: bool, reason: &str, message: String| RuntimeCondition {
            r#type: kind.into(),
            status: ok,
            reason: if ok { String::new() } else { reason.into() },
            message: if ok { String::new() } else { message },
        };
        let conditions = vec![
            condition(
                "RuntimeReady",
                runtime_ok,
                "RuntimeMissing",
                format!("the runtime binary {} is missing", config.runtime.display()),
            ),
            condition(
                "NetworkReady",
                network.is_ok(),
                "NoCNIConfig",
                network.as_ref().err().cloned().unwrap_or_default(),
            ),
        ];
        ok(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info: Default::default(),
            runtime_handlers: vec![RuntimeHandler {
                name: String::new(),
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: true,
                    user_namespaces: true,
                }),
            }],
            features: Some(RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
                mount_options: true,
            }),
        })
    }

    type GetContainerEventsStream = BoxStream<ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _req: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let rx = self.daemon.events.subscribe();
        let stream = tokio_stream::StreamExt::filter_map(
            tokio_stream::wrappers::BroadcastStream::new(rx),
            |e| e.ok().map(Ok),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn runtime_config(
        &self,
        _req: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        ok(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        })
    }

    async fn checkpoint_container(
        &self,
        _req: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        Err(unimplemented::checkpoint(
            "CheckpointContainer",
            "checkpointing a container",
        ))
    }

    async fn checkpoint_pod(
        &self,
        _req: Request<CheckpointPodRequest>,
    ) -> Result<Response<CheckpointPodResponse>, Status> {
        Err(unimplemented::checkpoint(
            "CheckpointPod",
            "checkpointing a pod",
        ))
    }

    async fn restore_pod(
        &self,
        _req: Request<RestorePodRequest>,
    ) -> Result<Response<RestorePodResponse>, Status> {
        Err(unimplemented::checkpoint(
            "RestorePod",
            "restoring a pod from a checkpoint",
        ))
    }

    type StreamPodSandboxesStream = BoxStream<StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _req: Request<StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        Err(unimplemented::list_streaming(
            "StreamPodSandboxes",
            "ListPodSandbox",
        ))
    }

    type StreamContainersStream = BoxStream<StreamContainersResponse>;

    async fn stream_containers(
        &self,
        _req: Request<StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        Err(unimplemented::list_streaming(
            "StreamContainers",
            "ListContainers",
        ))
    }

    type StreamContainerStatsStream = BoxStream<StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        _req: Request<StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        Err(unimplemented::list_streaming(
            "StreamContainerStats",
            "ListContainerStats",
        ))
    }

    type StreamPodSandboxStatsStream = BoxStream<StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        _req: Request<StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        Err(unimplemented::list_streaming(
            "StreamPodSandboxStats",
            "ListPodSandboxStats",
        ))
    }

    type StreamPodSandboxMetricsStream = BoxStream<StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        Err(unimplemented::cri_metrics("StreamPodSandboxMetrics"))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        Err(unimplemented::cri_metrics("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        Err(unimplemented::cri_metrics("ListPodSandboxMetrics"))
    }

    async fn update_pod_sandbox_resources(
        &self,
        _req: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<UpdatePodSandboxResourcesResponse>, Status> {
        Err(unimplemented::update_pod_sandbox_resources())
    }
}

/// The stream flags kubelet accepts: at least one stream, and no separate
/// stderr with a terminal.
fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), Status> {
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout or stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be set: a terminal has one output",
        ));
    }
    Ok(())
}

impl Runtime {
    fn container_stats_of(&self, rec: &container::ContainerRecord) -> ContainerStats {
        let dir = self.daemon.paths.container_dir(&rec.id);
        crate::stats::container(
            rec,
            &dir.join("upper"),
            &self.daemon.paths.root.to_string_lossy(),
        )
    }

    fn pod_stats_of(&self, pod: &pod::PodRecord) -> PodSandboxStats {
        let config: PodSandboxConfig = store::decode(&pod.config);
        let containers: Vec<ContainerStats> = self
            .daemon
            .pod_containers(&pod.id)
            .iter()
            .map(|c| c.get())
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| self.container_stats_of(&c))
            .collect();
        let ts = store::now_ns();
        let mut total =
            crate::stats::usage(&format!("{}/{}", pod.cgroup_parent, pod.id)).unwrap_or_default();
        for c in &containers {
            total.cpu_ns += c
                .cpu
                .as_ref()
                .and_then(|x| x.usage_core_nano_seconds)
                .map_or(0, |v| v.value);
            let m = c.memory.as_ref();
            total.working_set += m.and_then(|x| x.working_set_bytes).map_or(0, |v| v.value);
            total.memory_usage += m.and_then(|x| x.usage_bytes).map_or(0, |v| v.value);
        }
        PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: pod.id.clone(),
                metadata: config.metadata.clone(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(crate::stats::cpu(ts, &total)),
                memory: Some(crate::stats::memory(ts, &total)),
                process: Some(ProcessUsage {
                    timestamp: ts,
                    process_count: Some(UInt64Value {
                        value: containers.len() as u64 + 1,
                    }),
                }),
                containers,
                ..Default::default()
            }),
            windows: None,
        }
    }
}
