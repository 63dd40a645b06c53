//! The image crate's errors. Each names the image, blob, layer entry or path it is
//! about, in one line a person can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("cannot reach registry {host}: {msg}")]
    Unreachable { host: String, msg: String },
    #[error(
        "{image}: registry {host} answered 401 unauthorized: it needs credentials it accepts (the CRI's auth, berth pull --creds, or a docker config.json)"
    )]
    Unauthorized { image: String, host: String },
    #[error("{image}: manifest unknown to registry {host} (404)")]
    ManifestUnknown { image: String, host: String },
    #[error("{image}: registry {host}: {msg}")]
    Registry {
        image: String,
        host: String,
        msg: String,
    },
    #[error("{image}: {media_type} is not supported{hint}")]
    Unsupported {
        image: String,
        media_type: String,
        hint: &'static str,
    },
    #[error("{image}: no manifest for platform {platform} (index offers: {offered})")]
    NoPlatform {
        image: String,
        platform: String,
        offered: String,
    },
    #[error(
        "blob {expected}: digest mismatch, the registry sent content hashing to {actual}; nothing was stored"
    )]
    DigestMismatch { expected: String, actual: String },
    #[error("layer {layer}: entry {entry:?}: {msg}")]
    Unpack {
        layer: String,
        entry: String,
        msg: String,
    },
    #[error(
        "layer {layer}: unpacked size exceeds the limit of {limit} bytes (the space free in the image store, less a reserve, unless unpack_limit is set); the partial unpack was removed"
    )]
    TooLarge { layer: String, limit: u64 },
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("image {name:?} is ambiguous: it matches {count} images")]
    Ambiguous { name: String, count: usize },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {msg}")]
    Invalid { what: String, msg: String },
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    /// The store's filesystem is full (or the unpack limit reached).
    pub fn is_out_of_space(&self) -> bool {
        match self {
            ImageError::TooLarge { .. } => true,
            ImageError::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            }
            _ => false,
        }
    }

    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, msg: impl Into<String>) -> Self {
        ImageError::Invalid {
            what: what.into(),
            msg: msg.into(),
        }
    }
}
