//! ExecSync and the process of a streamed exec: another process in a running
//! container, through its shim.

use super::record::ContainerState;
use crate::daemon::{Container, Daemon};
use crate::{shim, store};
use berth_proto::v1 as cri;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// The container's process config (user, env, cwd, capabilities, seccomp...) with
/// another command: what exec runs.
pub fn exec_process(
    d: &Daemon,
    id: &str,
    cmd: &[String],
    tty: bool,
) -> Result<berth_bundle::oci::Process, Status> {
    let spec = berth_bundle::read_config(&d.paths.container_dir(id))
        .map_err(|e| Status::internal(format!("container {id} has no readable bundle: {e}")))?;
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| Status::internal(format!("container {id}'s bundle has no process")))?;
    p.set_args(Some(cmd.to_vec())).set_terminal(Some(tty));
    Ok(p)
}

pub fn running(d: &Daemon, id: &str) -> Result<Container, Status> {
    let c = d.container(id)?;
    let state = c.get().state;
    if state != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is {state:?}, not Running",
            c.get().id
        )));
    }
    Ok(c)
}

/// Runs a command in the container through a shim of its own and returns its
/// exit code and output. A timeout (seconds, 0 for none) kills it.
pub async fn exec_sync(
    d: &Arc<Daemon>,
    id: &str,
    cmd: Vec<String>,
    timeout: i64,
) -> Result<cri::ExecSyncResponse, Status> {
    if cmd.is_empty() {
        return Err(Status::invalid_argument(
            "cmd is empty: give the command to run",
        ));
    }
    let c = running(d, id)?;
    let id = c.get().id;
    let process = exec_process(d, &id, &cmd, false)?;
    let exec_dir = d.paths.state.join("execs").join(store::new_id());
    std::fs::create_dir_all(&exec_dir)
        .map_err(|e| Status::internal(format!("creating {}: {e}", exec_dir.display())))?;
    let cleanup = ExecDir(exec_dir.clone());
    let process_file = exec_dir.join("process.json");
    store::write_atomic(
        &process_file,
        &serde_json::to_vec(&process).unwrap_or_default(),
    )
    .map_err(|e| Status::internal(format!("writing {}: {e}", process_file.display())))?;
    shim::start(
        &d.bins,
        &shim::Launch {
            id: id.clone(),
            shim_dir: exec_dir.clone(),
            exec_process: Some(process_file),
            raw_output: true,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| Status::internal(format!("exec in container {id}: {e}")))?;
    let waited = if timeout > 0 {
        tokio::time::timeout(Duration::from_secs(timeout as u64), shim::wait(&exec_dir)).await
    } else {
        Ok(shim::wait(&exec_dir).await)
    };
    let exit = match waited {
        Ok(e) => e,
        Err(_) => {
            let _ = shim::control(&exec_dir, "signal 9").await;
            shim::wait(&exec_dir).await;
            return Err(Status::deadline_exceeded(format!(
                "command {cmd:?} timed out after {timeout} s and was killed"
            )));
        }
    };
    let exit =
        exit.ok_or_else(|| Status::internal("the exec's shim ended without recording an exit"))?;
    let read = |f: &str| std::fs::read(exec_dir.join(f)).unwrap_or_default();
    let resp = cri::ExecSyncResponse {
        stdout: read("stdout"),
        stderr: read("stderr"),
        exit_code: exit.exit_code,
    };
    drop(cleanup);
    Ok(resp)
}

struct ExecDir(PathBuf);

impl Drop for ExecDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
