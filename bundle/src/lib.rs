//! berth-bundle: the OCI bundle a container runs from, one builder for berthd's
//! pods and containers and for `berth run`, on oci-spec's typed structures.
//!
//! - `container`: `Container`, a request over secure defaults, and its `build`
//!   into a `Spec`; `config.json` written atomically and read back
//! - `image`: what the image config gives the process (entrypoint, cmd, env,
//!   working directory, user, stop signal)
//! - `users`: a user name or id resolved in the rootfs's own /etc/passwd, /etc/group
//! - `caps`: the default set, all the host allows, add/drop lists
//! - `seccomp`: the RuntimeDefault profile and docker-format profile files
//! - `mounts`, `devices`: the default filesystems, binds, device nodes and rules
//! - `runtime_error`: the message of a runtime that failed on a bundle

pub mod caps;
mod container;
pub mod devices;
pub mod image;
pub mod mounts;
pub mod runtime_error;
pub mod seccomp;
pub mod users;

pub use container::{
    Container, DEFAULT_MASKED, DEFAULT_READONLY, OCI_VERSION, Seccomp, id_mapping, read_config,
    write_config,
};
pub use image::ImageDefaults;
pub use oci_spec::runtime as oci;
pub use users::User;
