//! Why an image volume could not be made, typed so that the status module alone
//! decides the gRPC code.

use berth_image::ImageError;

/// Why an image volume could not be made; the status module gives each its code.
#[derive(Debug)]
pub enum VolumeError {
    /// The image is not in the store (kubelet pulls it before CreateContainer).
    ImageMissing {
        container_path: String,
        image: String,
    },
    /// `image_sub_path` does not name something inside the image.
    SubPath {
        container_path: String,
        image: String,
        sub_path: String,
        reason: String,
    },
    /// The store failed: reading, pinning or mounting.
    Image {
        container_path: String,
        error: ImageError,
    },
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeError::ImageMissing {
                container_path,
                image,
            } => write!(
                f,
                "image volume {container_path:?}: image {image:?} is not present: pull it first (PullImage)"
            ),
            VolumeError::SubPath {
                container_path,
                image,
                sub_path,
                reason,
            } => write!(
                f,
                "image volume {container_path:?}: config.mounts.image_sub_path {sub_path:?} {reason} in image {image:?}"
            ),
            VolumeError::Image {
                container_path,
                error,
            } => write!(f, "image volume {container_path:?}: {error}"),
        }
    }
}
