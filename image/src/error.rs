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
    /// Every host (mirrors, then the registry itself) failed: what each answered.
    #[error("{image}: {}", hosts_text(answers))]
    AllHostsFailed {
        image: String,
        /// (host, is a mirror, its error), in the order tried.
        answers: Vec<(String, bool, ImageError)>,
    },
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
    #[error(
        "blob {digest}: the registry sent {sent} bytes where the manifest declares {declared}; refused before its digest was checked, nothing was stored"
    )]
    SizeMismatch {
        digest: String,
        declared: u64,
        sent: String,
    },
    #[error(
        "{what} {digest}: larger than the {limit} bytes berth accepts for it (as containerd); refused"
    )]
    TooBig {
        what: &'static str,
        digest: String,
        limit: u64,
    },
    #[error(
        "layer {layer}: the uncompressed layer hashes to {actual}, not to the diff_id {expected} that the image config declares; nothing was stored"
    )]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },
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

/// "mirror m: manifest unknown (404); registry.example: unreachable (...)".
fn hosts_text(answers: &[(String, bool, ImageError)]) -> String {
    let all_missing = answers
        .iter()
        .all(|(_, _, e)| matches!(e, ImageError::ManifestUnknown { .. }));
    let each: Vec<String> = answers
        .iter()
        .map(|(host, mirror, e)| {
            let what = match e {
                ImageError::ManifestUnknown { .. } => "manifest unknown (404)".to_string(),
                ImageError::Unauthorized { .. } => {
                    "401 unauthorized (it needs credentials it accepts)".to_string()
                }
                ImageError::Unreachable { msg, .. } => format!("unreachable ({msg})"),
                ImageError::Registry { msg, .. } => msg.clone(),
                other => other.to_string(),
            };
            format!("{}{host}: {what}", if *mirror { "mirror " } else { "" })
        })
        .collect();
    format!(
        "{}: {}",
        if all_missing {
            "not found on any registry tried"
        } else {
            "no registry tried could serve it"
        },
        each.join("; ")
    )
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

    /// The answers of several hosts as one error, or the one host's own.
    pub fn from_hosts(image: &str, mut answers: Vec<(String, bool, ImageError)>) -> Self {
        if answers.len() == 1 {
            return answers.remove(0).2;
        }
        ImageError::AllHostsFailed {
            image: image.to_string(),
            answers,
        }
    }

    /// The class of failure that decides the gRPC code of a multi-host failure:
    /// credentials first (the image may be there), then a missing image, then
    /// an unreachable registry.
    pub fn decisive(&self) -> &ImageError {
        let ImageError::AllHostsFailed { answers, .. } = self else {
            return self;
        };
        let find = |f: fn(&ImageError) -> bool| answers.iter().map(|a| &a.2).find(|e| f(e));
        find(|e| matches!(e, ImageError::Unauthorized { .. }))
            .or_else(|| find(|e| matches!(e, ImageError::ManifestUnknown { .. })))
            .or_else(|| find(|e| matches!(e, ImageError::Unreachable { .. })))
            .or_else(|| answers.last().map(|a| &a.2))
            .unwrap_or(self)
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
