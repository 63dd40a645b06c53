//! The CRI RuntimeService. Today: Version, Status and RuntimeConfig; the calls
//! for pods and containers come with the rest of the cri-server issue and answer
//! Unimplemented until then (the generated default).

use berth_proto::v1::runtime_service_server::RuntimeService;
use berth_proto::v1::*;
use tonic::{Request, Response, Status};

pub struct Runtime {
    pub config: crate::config::Config,
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        _req: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: crate::RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: berth_proto::CRI_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let runtime_ok = self.config.runtime.exists();
        let cni_conf = std::fs::read_dir(&self.config.cni.conf_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().ends_with(".conflist")
                    || e.file_name().to_string_lossy().ends_with(".conf")
            });
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
                format!(
                    "the runtime binary {} is missing",
                    self.config.runtime.display()
                ),
            ),
            condition(
                "NetworkReady",
                false,
                if cni_conf {
                    "NetworkPluginNotReady"
                } else {
                    "NoCNIConfig"
                },
                if cni_conf {
                    "pod networking is not implemented yet".into()
                } else {
                    format!(
                        "no CNI network config in {}",
                        self.config.cni.conf_dir.display()
                    )
                },
            ),
        ];
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info: Default::default(),
            ..Default::default()
        }))
    }

    async fn runtime_config(
        &self,
        _req: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        Ok(Response::new(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}
