//! berthd's side of `berth-shim`: start one, talk to its control socket, and learn
//! of its end through a pidfd (the kernel tells us when the shim exits; nothing
//! polls). The shim records the container's exit in `<shim dir>/exit` before it
//! leaves, so the exit is read from there.

use serde::Deserialize;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What to start a shim for.
#[derive(Debug, Default)]
pub struct Launch {
    pub id: String,
    pub shim_dir: PathBuf,
    /// A container: its bundle. Else `exec_process` in the running container `id`.
    pub bundle: Option<PathBuf>,
    pub exec_process: Option<PathBuf>,
    pub log_path: Option<PathBuf>,
    pub raw_output: bool,
    /// Hold the output until an attach client joins (streamed execs).
    pub attach_first: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub terminal: bool,
}

/// The binaries and the runtime root every shim gets.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub shim: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
}

/// Starts the shim; it returns once the runtime has created the container (or
/// started the exec). Returns the container's (or exec's) pid.
pub async fn start(bin: &Binaries, l: &Launch) -> Result<i32, String> {
    let mut cmd = tokio::process::Command::new(&bin.shim);
    cmd.arg("--id")
        .arg(&l.id)
        .arg("--state-dir")
        .arg(&l.shim_dir)
        .arg("--runtime")
        .arg(&bin.runtime)
        .arg("--runtime-root")
        .arg(&bin.runtime_root);
    if let Some(b) = &l.bundle {
        cmd.arg("--bundle").arg(b);
    }
    if let Some(p) = &l.exec_process {
        cmd.arg("--exec-process").arg(p);
    }
    if let Some(p) = &l.log_path {
        cmd.arg("--log-path").arg(p);
    }
    for (flag, on) in [
        ("--raw-output", l.raw_output),
        ("--attach-first", l.attach_first),
        ("--stdin", l.stdin),
        ("--stdin-once", l.stdin_once),
        ("--terminal", l.terminal),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    cmd.stdin(std::process::Stdio::null());
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", bin.shim.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        return Err(err.strip_prefix("berth-shim: ").unwrap_or(err).to_string());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "the shim did not report the container's pid".to_string())
}

/// One request on the shim's control socket (`reopen`, `signal N`, `ping`).
pub async fn control(shim_dir: &Path, request: &str) -> Result<String, String> {
    let sock = shim_dir.join("control.sock");
    let talk = async {
        let mut s = tokio::net::UnixStream::connect(&sock).await?;
        s.write_all(format!("{request}\n").as_bytes()).await?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), talk)
        .await
        .map_err(|_| "the shim did not answer within 5 s".to_string())?
        .map_err(|e| format!("the shim's control socket {}: {e}", sock.display()))?;
    let reply = reply.trim();
    match reply.strip_prefix("error ") {
        Some(e) => Err(e.to_string()),
        None => Ok(reply.strip_prefix("ok").unwrap_or(reply).trim().to_string()),
    }
}

/// The exit the shim recorded.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Exit {
    pub exit_code: i32,
    #[serde(default)]
    pub signal: i32,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub finished_at_ns: i64,
}

pub fn read_exit(shim_dir: &Path) -> Option<Exit> {
    let bytes = std::fs::read(shim_dir.join("exit")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The shim's pid, if a shim for this directory still runs.
pub fn shim_pid(shim_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(shim_dir.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The pid could have been reused: a live shim has its control socket.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let dir = shim_dir.as_os_str().as_encoded_bytes();
    cmdline.windows(dir.len()).any(|w| w == dir).then_some(pid)
}

/// Waits until the shim of `shim_dir` has exited; returns its recorded exit,
/// or None when it left none (killed, or never finished).
pub async fn wait(shim_dir: &Path) -> Option<Exit> {
    if let Some(pid) = shim_pid(shim_dir)
        && let Some(fd) = pidfd_open(pid)
        // SAFETY: the pidfd is owned by the AsyncFd for its whole life.
        && let Ok(afd) = unsafe { tokio::io::unix::AsyncFd::register(fd) }
    {
        // A pidfd turns readable when its process exits.
        let _ = afd.readable().await;
    }
    read_exit(shim_dir)
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open has no memory arguments; the fd is ours on success.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::O_NONBLOCK) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
