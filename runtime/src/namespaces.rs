//! Which namespaces a container gets new, and which it joins by path.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// The namespace types, in the order they are joined: the user namespace first
/// (it decides what the others may do), the mount namespace last but one so that
/// paths of the others are still reachable, cgroup last.
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Cgroup,
];

pub fn clone_flag(t: LinuxNamespaceType) -> libc::c_int {
    // oci-spec's discriminants are the CLONE_NEW* values.
    t as libc::c_int
}

/// The namespaces of a config, split into new ones and ones to join.
pub struct Plan {
    /// CLONE_NEW* flags for namespaces created at clone time (not cgroup: that one
    /// is unshared after the process has been put in its cgroup).
    pub clone_flags: libc::c_int,
    pub new_user: bool,
    pub new_cgroup: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    pub new_net: bool,
    /// A new time namespace is unshared by the init and entered at exec: its
    /// offsets can only be written before any process is inside it.
    pub new_time: bool,
    /// (type, path) to join, in `JOIN_ORDER`.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Plan {
    pub fn new(namespaces: &[LinuxNamespace]) -> Plan {
        let mut plan = Plan {
            clone_flags: 0,
            new_user: false,
            new_cgroup: false,
            new_uts: false,
            new_pid: false,
            new_net: false,
            new_time: false,
            join: Vec::new(),
        };
        for t in JOIN_ORDER {
            let Some(ns) = namespaces.iter().find(|n| n.typ() == t) else {
                continue;
            };
            match ns.path() {
                Some(p) => plan.join.push((t, p.clone())),
                None => {
                    match t {
                        LinuxNamespaceType::User => plan.new_user = true,
                        LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                        LinuxNamespaceType::Uts => plan.new_uts = true,
                        LinuxNamespaceType::Pid => plan.new_pid = true,
                        LinuxNamespaceType::Network => plan.new_net = true,
                        LinuxNamespaceType::Time => plan.new_time = true,
                        _ => {}
                    }
                    if t != LinuxNamespaceType::Cgroup && t != LinuxNamespaceType::Time {
                        plan.clone_flags |= clone_flag(t);
                    }
                }
            }
        }
        plan
    }

    pub fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.join.iter().any(|(j, _)| *j == t)
    }
}

/// Opens a namespace file to join it later; opened early so a bad path fails create
/// before anything is made.
pub fn open_ns(t: LinuxNamespaceType, path: &std::path::Path) -> Result<OwnedFd> {
    crate::sys::open(path, libc::O_RDONLY).map_err(|e| {
        Error::config(
            "linux.namespaces",
            format!("{t} namespace path {}: {e}", path.display()),
        )
    })
}

pub fn setns(fd: &OwnedFd, t: LinuxNamespaceType) -> Result<()> {
    // SAFETY: fd is an open namespace file.
    crate::sys::check_int(unsafe { libc::setns(fd.as_raw_fd(), clone_flag(t)) })
        .map(drop)
        .map_err(|e| Error::sys(format!("joining {t} namespace"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(t: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut n = LinuxNamespace::default();
        n.set_typ(t);
        n.set_path(path.map(PathBuf::from));
        n
    }

    #[test]
    fn new_and_joined_namespaces_are_split() {
        let plan = Plan::new(&[
            ns(LinuxNamespaceType::Mount, None),
            ns(LinuxNamespaceType::Network, Some("/proc/1/ns/net")),
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Cgroup, None),
            ns(LinuxNamespaceType::User, Some("/proc/1/ns/user")),
        ]);
        assert_eq!(plan.clone_flags, libc::CLONE_NEWNS | libc::CLONE_NEWPID);
        assert!(plan.new_cgroup && plan.new_pid && !plan.new_net);
        let joined: Vec<_> = plan.join.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            joined,
            vec![LinuxNamespaceType::User, LinuxNamespaceType::Network]
        );
    }
}
