//! berth-runtime: a runc-compatible OCI runtime.
//!
//! The library does the work; `main.rs` maps runc's command line onto it.
//! - `spec`: load and validate a bundle's config.json
//! - `state`: the per-container record under `--root`, and live status
//! - `container`: create/start/run/kill/delete/pause on the runtime side
//! - `init`: the container's init process from clone to exec
//! - `namespaces`, `rootfs`, `mount_options`, `cgroups`, `process`, `seccomp`, `hooks`
//! - `exec`: another process in a running container; `tty`: foreground terminals
//! - `guard`: undoes a `create` that was killed; `checkpoint`: CRIU
//! - `netdev` (linux.netDevices), `rdt` (linux.intelRdt)
//! - `sys`: checked syscall wrappers; `selfexe`: the sealed-memfd re-exec

pub mod cgroups;
pub mod checkpoint;
pub mod container;
pub mod default_spec;
pub mod error;
pub mod exec;
pub mod features;
pub mod guard;
pub mod hooks;
pub mod init;
pub mod mount_options;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod rdt;
pub mod rootfs;
pub mod seccomp;
pub mod selfexe;
pub mod spec;
pub mod state;
pub mod sys;
pub mod timing;
pub mod tty;

pub use error::{Error, Result};
