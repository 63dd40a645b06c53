//! Containers: the record and its states, CreateContainer to
//! RemoveContainer, the OCI config from the CRI request, image volumes, the
//! stop signal, exec,
//! the shim's report of the end, and the CRI's view of a container.

mod create;
mod exec;
pub mod image_volume;
mod lifecycle;
mod record;
mod signal;
mod spec;
mod status;
mod volume_error;
mod watch;

pub use create::create;
pub use exec::{exec_process, exec_sync, running};
pub use lifecycle::{remove, reopen_log, start, stop, update_resources};
pub use record::{ContainerRecord, ContainerState, ImageVolume, apply_exit};
pub use signal::from_cri as stop_signal_from_cri;
pub use status::{matches, name_key, status_of, to_cri};
pub use volume_error::VolumeError;
pub use watch::{event, watch};
