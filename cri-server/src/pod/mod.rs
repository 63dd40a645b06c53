//! Pod sandboxes: the record and its states, RunPodSandbox to
//! RemovePodSandbox, the pod's files and network, the pause's OCI config, and
//! the CRI's view of a pod.

mod files;
mod network;
mod record;
mod sandbox;
mod spec;
mod status;

pub use files::resolv_conf;
pub use network::check_networks;
pub use record::{PodRecord, PodState};
pub use sandbox::{install_pause, remove, run, stop, watch_pod};
pub use spec::{PodContext, id_maps, mode, pod_userns};
pub use status::{matches, name_key, status_of, verbose_info};
