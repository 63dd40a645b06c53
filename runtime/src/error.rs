//! The runtime's error type: every error names the container, field or path it is
//! about, so the one line the CLI prints is enough to act on.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("invalid container id {0:?}: use 1 to 1024 of [A-Za-z0-9_.+-], not starting with '.'")]
    InvalidId(String),
    #[error("container {id:?} is {status}: cannot {op}")]
    BadState {
        id: String,
        status: &'static str,
        op: &'static str,
    },
    #[error("bundle {path}: {msg}")]
    Bundle { path: PathBuf, msg: String },
    #[error("config.json: {field}: {msg}")]
    Config { field: String, msg: String },
    #[error("{what} {path}: {source}")]
    Path {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Sys { op: String, source: io::Error },
    #[error("cgroup {path}: {msg}")]
    Cgroup { path: PathBuf, msg: String },
    #[error("{kind} hook {path}: {msg}")]
    Hook {
        kind: &'static str,
        path: PathBuf,
        msg: String,
    },
    #[error("container init: {0}")]
    Init(String),
    /// An error the container's init (or exec) process reported; already worded.
    #[error("{0}")]
    Child(String),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            msg: msg.into(),
        }
    }

    pub fn sys(op: impl Into<String>, source: io::Error) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }

    pub fn path(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Path {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn cgroup(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Cgroup {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
