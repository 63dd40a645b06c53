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

/// `sys::fork_into` for a container that joins the user namespace behind `user`
/// by path and gets a pid namespace of its own: the child is born pid 1 in a new
/// pid namespace owned by that user namespace, and already in it.
///
/// A pid namespace belongs to the user namespace of the process that makes it,
/// and the kernel lets a process mount proc only for a pid namespace its own user
/// namespace owns; a clone from the runtime (in the host's user namespace) would
/// give the container one its root cannot mount proc for. So a helper, forked
/// here, joins the user namespace, unshares the pid namespace (which applies to
/// its children) and clones the child with CLONE_PARENT: the child is the
/// runtime's own, as `fork_into` makes it (waited for, killed by a rollback,
/// parent-death signal from the runtime). The helper sends back the child's pid,
/// exits and is reaped before this returns; it reaps nothing and outlives
/// nothing (it dies with the runtime).
///
/// Returns (pid, whether it was born in `cgroup`); (0, _) in the child.
///
/// # Safety
/// The caller must be single-threaded: the helper and the child are forks of it.
pub unsafe fn fork_into_new_pid_ns(
    user: &OwnedFd,
    flags: libc::c_int,
    cgroup: Option<&OwnedFd>,
) -> Result<(i32, bool)> {
    let (ours, theirs) = crate::sys::seqpacket_pair()?;
    // SAFETY: single-threaded (the caller's promise); the helper runs the few
    // calls below, then _exits.
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        return Err(Error::sys(
            "fork of the pid namespace helper",
            std::io::Error::last_os_error(),
        ));
    }
    if helper == 0 {
        drop(ours);
        // SAFETY: plain prctl: the helper does not outlive the runtime.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        let cloned = setns(user, LinuxNamespaceType::User).and_then(|()| {
            // SAFETY: plain flag argument.
            crate::sys::check_int(unsafe { libc::unshare(libc::CLONE_NEWPID) }).map_err(|e| {
                Error::sys(
                    "unshare of the pid namespace in the joined user namespace",
                    e,
                )
            })?;
            // SAFETY: single-threaded, as above.
            unsafe { crate::sys::fork_into(flags | libc::CLONE_PARENT, cgroup) }
                .map_err(|e| Error::sys("clone of container init", e))
        });
        let reply = match cloned {
            // The child: the caller's `pid == 0` branch goes on from here.
            Ok((0, born)) => return Ok((0, born)),
            Ok((pid, born)) => format!("P{pid} {}", u8::from(born)),
            Err(e) => format!("E{e}"),
        };
        let _ = crate::sys::send(&theirs, reply.as_bytes());
        // SAFETY: leaving without running this process's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(theirs);
    let reply = crate::sys::recv(&ours);
    let _ = crate::sys::waitpid(helper);
    let reply = reply.map_err(|e| Error::sys("waiting for the pid namespace helper", e))?;
    let text = String::from_utf8_lossy(reply.get(1..).unwrap_or_default()).into_owned();
    match reply.first() {
        Some(b'P') => text
            .split_once(' ')
            .and_then(|(pid, born)| Some((pid.parse().ok()?, born == "1")))
            .ok_or_else(|| Error::Init(format!("the pid namespace helper said {text:?}"))),
        Some(b'E') => Err(Error::Child(text)),
        _ => Err(Error::Init(
            "the pid namespace helper exited without an answer".into(),
        )),
    }
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
