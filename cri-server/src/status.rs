//! The one place where typed errors become gRPC statuses.

use crate::container::VolumeError;
use berth_image::ImageError;
use tonic::Status;

pub fn image(e: ImageError) -> Status {
    let msg = e.to_string();
    if e.is_out_of_space() {
        return Status::resource_exhausted(msg);
    }
    match e.decisive() {
        ImageError::Reference(_)
        | ImageError::Unsupported { .. }
        | ImageError::NoPlatform { .. } => Status::invalid_argument(msg),
        ImageError::NotFound(_) | ImageError::ManifestUnknown { .. } => Status::not_found(msg),
        ImageError::Unauthorized { .. } => Status::unauthenticated(msg),
        ImageError::Unreachable { .. } => Status::unavailable(msg),
        ImageError::Ambiguous { .. } => Status::failed_precondition(msg),
        ImageError::DigestMismatch { .. }
        | ImageError::SizeMismatch { .. }
        | ImageError::TooBig { .. }
        | ImageError::DiffIdMismatch { .. }
        | ImageError::Unpack { .. }
        | ImageError::TooLarge { .. } => Status::data_loss(msg),
        ImageError::Registry { .. }
        | ImageError::Io { .. }
        | ImageError::Invalid { .. }
        | ImageError::AllHostsFailed { .. } => Status::internal(msg),
    }
}

/// An image volume that could not be made: a missing image is NotFound, a
/// sub-path that is not inside the image InvalidArgument, the store's failures
/// as [`image`] maps them.
pub fn image_volume(e: VolumeError) -> Status {
    let msg = e.to_string();
    match e {
        VolumeError::ImageMissing { .. } => Status::not_found(msg),
        VolumeError::SubPath { .. } => Status::invalid_argument(msg),
        VolumeError::Image { error, .. } => {
            let code = image(error).code();
            Status::new(code, msg)
        }
    }
}

/// A blocking task that panicked or was cancelled.
pub fn join(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("internal task failed: {e}"))
}
