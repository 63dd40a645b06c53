//! `checkpoint` and `restore` with CRIU, with runc's options. runc drives CRIU
//! over its RPC socket (`criu swrk`); berth runs the `criu` command with the same
//! settings: the images and work directories, the container's rootfs as CRIU's
//! root, the cgroups managed by CRIU, bind mounts and masked paths declared as
//! external mounts, a log at verbosity 4 in the work directory. When CRIU fails,
//! the error is CRIU's own: the last `Error` lines of its log (or what it printed).

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::spec::Bundle;
use crate::state::{Record, Root, Status};
use std::path::{Path, PathBuf};
use std::process::Command;

/// runc's checkpoint and restore flags that berth passes on.
#[derive(Default)]
pub struct CriuOpts {
    pub criu: PathBuf,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub manage_cgroups_mode: Option<String>,
}

fn err(op: &str, msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{op}: {msg}"))
}

impl CriuOpts {
    fn work(&self) -> PathBuf {
        self.work_path
            .clone()
            .unwrap_or_else(|| self.image_path.clone())
    }

    /// The options both directions share.
    fn common(&self, cmd: &mut Command, rootfs: &Path, log: &str) {
        cmd.arg("--images-dir")
            .arg(&self.image_path)
            .arg("--work-dir")
            .arg(self.work())
            .arg("--root")
            .arg(rootfs)
            .args(["-v4", "--log-file", log]);
        match &self.manage_cgroups_mode {
            Some(m) => cmd.arg(format!("--manage-cgroups={m}")),
            None => cmd.arg("--manage-cgroups"),
        };
        for (flag, on) in [
            ("--tcp-established", self.tcp_established),
            ("--ext-unix-sk", self.ext_unix_sk),
            ("--shell-job", self.shell_job),
            ("--file-locks", self.file_locks),
        ] {
            if on {
                cmd.arg(flag);
            }
        }
    }
}

/// The container's mounts CRIU cannot recreate by itself (bind mounts, the
/// /dev/null binds of masked files): (destination, source on the host).
fn external_mounts(bundle: &Bundle) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in bundle.spec.mounts().iter().flatten() {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if bind {
            let src = m.source().as_ref().map(|s| {
                if s.is_absolute() {
                    s.clone()
                } else {
                    bundle.dir.join(s)
                }
            });
            let dest = m.destination().display().to_string();
            out.push((dest.clone(), src.map_or(dest, |s| s.display().to_string())));
        }
    }
    if let Some(linux) = bundle.spec.linux() {
        for p in linux.masked_paths().iter().flatten() {
            let host = bundle.rootfs.join(p.trim_start_matches('/'));
            if host.is_file() {
                out.push((p.clone(), "/dev/null".into()));
            }
        }
    }
    out
}

/// Runs CRIU; on failure, CRIU's reason.
fn run_criu(op: &str, mut cmd: Command, log: &Path) -> Result<()> {
    let out = cmd.output().map_err(|e| {
        err(
            op,
            format!(
                "cannot run criu ({}): {e}; checkpoint and restore need CRIU installed",
                cmd.get_program().to_string_lossy()
            ),
        )
    })?;
    if out.status.success() {
        return Ok(());
    }
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let mut reason: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error"))
        .collect();
    if reason.len() > 3 {
        reason.drain(..reason.len() - 3);
    }
    let mut why = reason.join("; ");
    if why.is_empty() {
        why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    }
    if why.is_empty() {
        why = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(err(
        op,
        format!(
            "criu failed ({}): {why} (log: {})",
            out.status,
            log.display()
        ),
    ))
}

/// `checkpoint`: dumps a running container with CRIU; without --leave-running
/// the container is gone afterwards (CRIU ends it; berth deletes it).
pub fn checkpoint(root: &Root, id: &str, o: &CriuOpts) -> Result<()> {
    let rec = root.load(id)?;
    let status = rec.status(root);
    if status != Status::Running && status != Status::Paused {
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str(),
            op: "checkpoint it (it is not running)",
        });
    }
    // As runc: the parent (a pre-dump) is named relative to the image path, so
    // the images stay movable; it must exist.
    if let Some(p) = &o.parent_path {
        if p.is_absolute() {
            return Err(err(
                "checkpoint",
                format!(
                    "--parent-path {} must be relative to --image-path",
                    p.display()
                ),
            ));
        }
        let full = o.image_path.join(p);
        if !full.is_dir() {
            return Err(err(
                "checkpoint",
                format!(
                    "invalid --parent-path {}: {} is not a directory",
                    p.display(),
                    full.display()
                ),
            ));
        }
    }
    let bundle = crate::spec::load_bundle(&rec.bundle)?;
    for d in [Some(&o.image_path), o.work_path.as_ref()]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(d).map_err(|e| Error::path("creating", d, e))?;
    }
    let log = if o.pre_dump {
        "pre-dump.log"
    } else {
        "dump.log"
    };
    let mut cmd = Command::new(&o.criu);
    cmd.arg(if o.pre_dump { "pre-dump" } else { "dump" })
        .arg("--tree")
        .arg(rec.pid.to_string());
    o.common(&mut cmd, &rec.rootfs, log);
    if let Some(p) = &o.parent_path {
        cmd.arg("--prev-images-dir").arg(p);
    }
    if o.leave_running || o.pre_dump {
        cmd.arg("--leave-running");
    }
    for (dest, _) in external_mounts(&bundle) {
        cmd.arg("--external").arg(format!("mnt[{dest}]:{dest}"));
    }
    run_criu("checkpoint", cmd, &o.work().join(log))?;
    if !o.leave_running && !o.pre_dump {
        crate::container::delete(root, id, true)?;
    }
    Ok(())
}

/// `restore`: recreates a container from a checkpoint with CRIU, in cgroups of
/// its own made from the bundle's config, and records it as `create` would.
pub fn restore(
    root: &Root,
    id: &str,
    bundle: &Bundle,
    o: &CriuOpts,
    pid_file: Option<&Path>,
) -> Result<Record> {
    crate::spec::validate_id(id)?;
    let linux = bundle.spec.linux().as_ref().expect("validated");
    let cgroup = Cgroup::for_container(linux.cgroups_path().as_deref(), id)?;
    let dir = root.claim(id)?;
    let undo = |e: Error| {
        let _ = cgroup.destroy();
        let _ = root.remove(id);
        e
    };
    cgroup.create().map_err(undo)?;
    if let Some(w) = &o.work_path {
        std::fs::create_dir_all(w).map_err(|e| undo(Error::path("creating", w, e)))?;
    }
    let pidfile = dir.join("restore.pid");
    let mut cmd = Command::new(&o.criu);
    cmd.arg("restore")
        .arg("--restore-detached")
        .arg("--pidfile")
        .arg(&pidfile);
    o.common(&mut cmd, &bundle.rootfs, "restore.log");
    if let Some(h) = cgroup.hierarchies.first() {
        let inner = h.path.strip_prefix(&h.mountpoint).unwrap_or(&h.path);
        cmd.arg("--cgroup-root").arg(Path::new("/").join(inner));
    }
    for (dest, src) in external_mounts(bundle) {
        cmd.arg("--external").arg(format!("mnt[{dest}]:{src}"));
    }
    run_criu("restore", cmd, &o.work().join("restore.log")).map_err(undo)?;
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| undo(err("restore", "criu wrote no pid")))?;
    let rec = Record {
        id: id.to_string(),
        pid,
        pid_start: crate::sys::process_start_time(pid).unwrap_or(0),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::state::now_rfc3339(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        cgroup: cgroup.clone(),
        hooks: bundle.spec.hooks().clone(),
        oci_version: bundle.spec.version().clone(),
        host_mounts: false,
        rdt: None,
    };
    if let Err(e) = root.save(&rec) {
        // Nothing would know of the restored process: end it with the rest.
        // SAFETY: plain kill of the pid CRIU restored.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        cgroup.kill_all(std::time::Duration::from_secs(5));
        return Err(undo(e));
    }
    if let Some(f) = pid_file {
        crate::sys::write_atomic(f, pid.to_string().as_bytes())?;
    }
    Ok(rec)
}
