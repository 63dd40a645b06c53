//! A CRI client for tests: both services on one channel, calls that return the
//! gRPC status (so a test can check codes), and the configs most tests use.

use crate::berthd::Berthd;
use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::v1::*;
use tonic::Status;
use tonic::transport::Channel;

pub const BUSYBOX: &str = "registry.berth.test/library/busybox:latest";

#[derive(Clone)]
pub struct Cri {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
}

impl Cri {
    pub async fn connect(d: &Berthd) -> Cri {
        let ch = d.channel().await;
        Cri {
            rt: RuntimeServiceClient::new(ch.clone()),
            img: ImageServiceClient::new(ch),
        }
    }

    pub async fn pull(&mut self, image: &str) -> Result<String, Status> {
        self.img
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().image_ref)
    }

    pub async fn remove_image(&mut self, image: &str) -> Result<(), Status> {
        self.img
            .remove_image(RemoveImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
            })
            .await
            .map(|_| ())
    }

    pub async fn images(&mut self) -> Vec<Image> {
        self.img
            .list_images(ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images
    }

    pub async fn run_pod(&mut self, config: &PodSandboxConfig) -> Result<String, Status> {
        self.rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        config: &ContainerConfig,
    ) -> Result<String, Status> {
        self.rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config.clone()),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn start(&mut self, id: &str) -> Result<(), Status> {
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn stop(&mut self, id: &str, timeout: i64) -> Result<(), Status> {
        self.rt
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .map(|_| ())
    }

    pub async fn remove(&mut self, id: &str) -> Result<(), Status> {
        self.rt
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn stop_pod(&mut self, id: &str) -> Result<(), Status> {
        self.rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn remove_pod(&mut self, id: &str) -> Result<(), Status> {
        self.rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn pods(&mut self) -> Vec<PodSandbox> {
        self.rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items
    }

    pub async fn containers(&mut self) -> Vec<Container> {
        self.rt
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers
    }

    pub async fn container_status(&mut self, id: &str) -> Result<ContainerStatus, Status> {
        self.rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().status.unwrap_or_default())
    }

    pub async fn exec_sync(&mut self, id: &str, cmd: &[&str]) -> Result<ExecSyncResponse, Status> {
        self.rt
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Stops and removes every pod (and so every container).
    pub async fn remove_all(&mut self) {
        for p in self.pods().await {
            let _ = self.stop_pod(&p.id).await;
            self.remove_pod(&p.id).await.unwrap();
        }
    }
}

/// A pod on the pod network, its containers' cgroups under `cgroup_parent`.
pub fn pod_config(name: &str, logs: &std::path::Path, cgroup_parent: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.to_string_lossy().to_string(),
        labels: [("app".to_string(), name.to_string())]
            .into_iter()
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(name: &str, image: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: [("role".to_string(), name.to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}
