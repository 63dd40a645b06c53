//! OCI hooks: each runs with the container's state JSON on stdin and its timeout
//! honoured; a failing hook fails the operation (poststop: see `run_all`).
//!
//! Environment, as runc: a hook with `env` gets exactly that list (an empty list:
//! an empty environment); a hook without `env` inherits the environment of the
//! process that runs it. The runtime's hooks (prestart, createRuntime, poststart,
//! poststop) run from the runtime and get its environment; createContainer and
//! startContainer run from the container's init, whose environment in runc is the
//! container process's `env`, so they get that.

use crate::error::{Error, Result};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the hooks in order; the first failure stops them. `inherited`: the
/// environment a hook without `env` gets (`None`: this process's).
pub fn run(
    kind: &'static str,
    hooks: Option<&Vec<Hook>>,
    state_json: &[u8],
    inherited: Option<&[String]>,
) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run_one(kind, h, state_json, inherited)?;
    }
    Ok(())
}

/// Runs every hook even when one fails (poststop: "the remaining hooks and
/// lifecycle continue"); the failures are returned together, after all ran.
pub fn run_all(
    kind: &'static str,
    hooks: Option<&Vec<Hook>>,
    state_json: &[u8],
    inherited: Option<&[String]>,
) -> Result<()> {
    let failures: Vec<String> = hooks
        .into_iter()
        .flatten()
        .filter_map(|h| run_one(kind, h, state_json, inherited).err())
        .map(|e| e.to_string())
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Usage(failures.join("; ")))
    }
}

fn run_one(
    kind: &'static str,
    h: &Hook,
    state_json: &[u8],
    inherited: Option<&[String]>,
) -> Result<()> {
    let fail = |msg: String| Error::Hook {
        kind,
        path: h.path().clone(),
        msg,
    };
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    let env = match (h.env(), inherited) {
        (Some(env), _) => Some(env.as_slice()),
        (None, Some(env)) => Some(env),
        (None, None) => None,
    };
    if let Some(env) = env {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(state_json);
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
            if status.success() {
                return Ok(());
            }
            return Err(fail(format!("exited with {status}")));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                h.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
