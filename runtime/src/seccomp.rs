//! seccomp filters from `linux.seccomp`, built with libseccomp.

use crate::error::{Error, Result};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as A, LinuxSeccompFilterFlag as F, LinuxSeccompOperator as Op,
};
use std::str::FromStr;

fn action(a: A, errno: Option<u32>) -> ScmpAction {
    match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        A::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActNotify => ScmpAction::Notify,
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::config("linux.seccomp", format!("{what}: {e}"))
}

/// Builds the filter; loading it is a separate step so it can happen as late as
/// the process's privileges allow.
pub fn build(cfg: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default = action(cfg.default_action(), cfg.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("creating filter", e))?;
    // The runtime decides about no_new_privs itself.
    ctx.set_ctl_nnp(false).map_err(|e| err("nnp", e))?;
    for flag in cfg.flags().as_deref().unwrap_or_default() {
        let r = match flag {
            F::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            F::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
            F::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
            F::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
        };
        r.map_err(|e| err(&format!("flag {flag:?}"), e))?;
    }
    for arch in cfg.architectures().as_deref().unwrap_or_default() {
        let name = serde_json::to_value(arch)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let a = ScmpArch::from_str(&name).map_err(|e| err(&format!("architecture {name}"), e))?;
        ctx.add_arch(a)
            .map_err(|e| err(&format!("architecture {name}"), e))?;
    }
    for rule in cfg.syscalls().as_deref().unwrap_or_default() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                let op = match a.op() {
                    Op::ScmpCmpNe => ScmpCompareOp::NotEqual,
                    Op::ScmpCmpLt => ScmpCompareOp::Less,
                    Op::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                    Op::ScmpCmpEq => ScmpCompareOp::Equal,
                    Op::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                    Op::ScmpCmpGt => ScmpCompareOp::Greater,
                    Op::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(a.value()),
                };
                let datum = if matches!(a.op(), Op::ScmpCmpMaskedEq) {
                    a.value_two().unwrap_or(0)
                } else {
                    a.value()
                };
                ScmpArgCompare::new(a.index() as u32, op, datum)
            })
            .collect();
        for name in rule.names() {
            // Syscalls this kernel or libseccomp does not know are skipped, as runc does.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let r = if conds.is_empty() {
                ctx.add_rule(act, sc)
            } else {
                ctx.add_rule_conditional(act, sc, &conds)
            };
            r.map_err(|e| err(&format!("rule for {name}"), e))?;
        }
    }
    Ok(ctx)
}

/// Whether the filter hands syscalls to a seccomp agent (SCMP_ACT_NOTIFY).
pub fn uses_notify(cfg: &LinuxSeccomp) -> bool {
    cfg.default_action() == A::ScmpActNotify
        || cfg
            .syscalls()
            .iter()
            .flatten()
            .any(|r| r.action() == A::ScmpActNotify)
}

/// The seccomp notify fd of a loaded filter.
pub fn notify_fd(ctx: &ScmpFilterContext) -> Result<i32> {
    ctx.get_notify_fd()
        .map_err(|e| err("getting the notify fd", e))
}

/// Hands the notify fd to the seccomp agent listening on `listenerPath`, as the
/// runtime spec says: one connection (SOCK_STREAM), one container process state
/// (`fds: ["seccompFd"]`, `pid`, `metadata` = listenerMetadata, `state`) with
/// the fd attached by SCM_RIGHTS, then the connection is closed.
pub fn send_to_agent(
    cfg: &LinuxSeccomp,
    oci_version: &str,
    pid: i32,
    state: serde_json::Value,
    fd: &std::os::fd::OwnedFd,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    let path = cfg
        .listener_path()
        .as_ref()
        .ok_or_else(|| Error::config("linux.seccomp.listenerPath", "not set"))?;
    let fail = |e: std::io::Error| {
        Error::config(
            "linux.seccomp.listenerPath",
            format!("sending the seccomp fd to {}: {e}", path.display()),
        )
    };
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(fail)?;
    let msg = serde_json::json!({
        "ociVersion": oci_version,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": cfg.listener_metadata().clone().unwrap_or_default(),
        "state": state,
    });
    let data = serde_json::to_vec(&msg).unwrap_or_default();
    crate::sys::send_with_fd(&stream, &data, fd.as_raw_fd()).map_err(fail)
}

pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load().map_err(|e| {
        Error::sys(
            "loading seccomp filter",
            std::io::Error::other(e.to_string()),
        )
    })
}
