//! The CRI ImageService over berth-image's store.

use crate::status;
use berth_image::{Auth, ImageRecord, ImageStore, PullOptions};
use berth_proto::v1::image_service_server::ImageService;
use berth_proto::v1::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct Images {
    pub store: Arc<ImageStore>,
}

fn auth_of(a: Option<&AuthConfig>) -> Result<Auth, Status> {
    use base64::Engine;
    let Some(a) = a else {
        return Ok(Auth::Anonymous);
    };
    if !a.username.is_empty() {
        return Ok(Auth::Basic {
            username: a.username.clone(),
            password: a.password.clone(),
        });
    }
    if !a.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a.auth)
            .map_err(|_| Status::invalid_argument("auth.auth is not base64 of user:password"))?;
        let text = String::from_utf8(raw)
            .map_err(|_| Status::invalid_argument("auth.auth is not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("auth.auth must decode to user:password"))?;
        return Ok(Auth::Basic {
            username: u.into(),
            password: p.into(),
        });
    }
    for t in [&a.registry_token, &a.identity_token] {
        if !t.is_empty() {
            return Ok(Auth::Bearer(t.clone()));
        }
    }
    Ok(Auth::Anonymous)
}

fn image_name(spec: Option<&ImageSpec>) -> Result<String, Status> {
    match spec.map(|s| s.image.trim()) {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => Err(Status::invalid_argument(
            "image.image is empty: name the image (a reference or an image ID)",
        )),
    }
}

impl Images {
    /// The CRI's view of an image.
    fn to_cri(&self, rec: &ImageRecord) -> Image {
        let user = self
            .store
            .config_json(rec)
            .map(|c| berth_image::image_user(&c))
            .unwrap_or_default();
        Image {
            id: rec.id.clone(),
            repo_tags: rec.repo_tags.clone(),
            repo_digests: rec.repo_digests.clone(),
            size: rec.size,
            uid: user.uid.map(|value| Int64Value { value }),
            username: user.username,
            spec: Some(ImageSpec {
                image: rec.id.clone(),
                ..Default::default()
            }),
            pinned: rec.pinned,
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ImageStore) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(status::join)?
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    type StreamImagesStream = tonic::codegen::BoxStream<StreamImagesResponse>;

    async fn stream_images(
        &self,
        _req: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        Err(crate::service::unimplemented::list_streaming(
            "StreamImages",
            "ListImages",
        ))
    }

    async fn list_images(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let filter = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let records = self.blocking(|s| s.list().map_err(status::image)).await?;
        let wanted = match &filter {
            Some(f) => {
                let store = self.store.clone();
                let f = f.clone();
                let hit = tokio::task::spawn_blocking(move || store.get(&f).ok())
                    .await
                    .map_err(status::join)?;
                hit.map(|h| h.id)
            }
            None => None,
        };
        let images = records
            .iter()
            .filter(|r| filter.is_none() || wanted.as_deref() == Some(r.id.as_str()))
            .map(|r| self.to_cri(r))
            .collect();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        req: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image.as_ref())?;
        let found = self
            .blocking(move |s| match s.get(&name) {
                Ok(r) => Ok(Some(r)),
                // The CRI: an absent image is an empty answer, not an error.
                Err(berth_image::ImageError::NotFound(_)) => Ok(None),
                Err(e) => Err(status::image(e)),
            })
            .await?;
        let mut info = std::collections::HashMap::new();
        if req.verbose
            && let Some(r) = &found
        {
            let cfg = self.store.config_json(r).map_err(status::image)?;
            info.insert(
                "info".to_string(),
                serde_json::json!({"record": r, "config": cfg}).to_string(),
            );
        }
        Ok(Response::new(ImageStatusResponse {
            image: found.as_ref().map(|r| self.to_cri(r)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        req: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image.as_ref())?;
        let auth = auth_of(req.auth.as_ref())?;
        let rec = self
            .store
            .pull(
                &name,
                &PullOptions {
                    auth,
                    progress: None,
                },
            )
            .await
            .map_err(status::image)?;
        Ok(Response::new(PullImageResponse { image_ref: rec.id }))
    }

    async fn remove_image(
        &self,
        req: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let name = image_name(req.into_inner().image.as_ref())?;
        // The CRI removes the image, whatever name it is given by: every tag goes.
        self.blocking(move |s| match s.get(&name).and_then(|r| s.remove(&r.id)) {
            // Removing what is not there is not an error (the CRI's idempotence).
            Ok(_) | Err(berth_image::ImageError::NotFound(_)) => Ok(()),
            Err(e) => Err(status::image(e)),
        })
        .await?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let root = self.store.config.root.clone();
        let (bytes, inodes) = self.blocking(|s| s.usage().map_err(status::image)).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let usage = FilesystemUsage {
            timestamp: now,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: root.display().to_string(),
            }),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        };
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![usage.clone()],
            container_filesystems: vec![usage],
        }))
    }
}
