//! Containers: the record and its states, CreateContainer to
//! RemoveContainer, the OCI config from the CRI request, exec, the shim's
//! report of the end, and the CRI's view of a container.

mod create;
mod exec;
mod lifecycle;
mod record;
mod spec;
mod status;
mod watch;

pub use create::create;
pub use exec::{exec_process, exec_sync, running};
pub use lifecycle::{remove, reopen_log, start, stop, update_resources};
pub use record::{ContainerRecord, ContainerState, apply_exit};
pub use status::{matches, name_key, status_of, to_cri};
pub use watch::{event, watch};
