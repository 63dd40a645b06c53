//! The CLI's containers: a record per container under
//! `<root>/cli/containers/<id>/berth.json`, detached runs under a berth-shim, and
//! `ps`, `logs`, `exec`, `stop`, `rm` and `inspect` over them. No daemon: the
//! state is the record, the shim's directory and the runtime's state.

use crate::run::{runtime_binary, sibling};
use serde_json::{Value, json};
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// berth-runtime's root for the CLI's containers (apart from berthd's).
pub const RUNTIME_ROOT: &str = "/run/berth/cli";

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Record {
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub created: u64,
    pub detached: bool,
}

impl Record {
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let v = json!({"id": self.id, "name": self.name, "image": self.image, "command": self.command,
                       "created": self.created, "detached": self.detached});
        let tmp = dir.join(".berth.json.tmp");
        std::fs::write(&tmp, v.to_string())?;
        std::fs::rename(tmp, dir.join("berth.json"))
    }
}

fn shim_dir(id: &str) -> PathBuf {
    Path::new(RUNTIME_ROOT).join("shims").join(id)
}

fn containers_dir(root: &Path) -> PathBuf {
    root.join("cli").join("containers")
}

/// Starts a created bundle under a shim and starts its process. With `remove`,
/// the shim runs `berth rm` once the container has exited.
pub fn start_detached(id: &str, dir: &Path, stdin: bool, remove: bool) -> Result<(), String> {
    let mut shim = std::process::Command::new(sibling("berth-shim"));
    shim.args(["--id", id, "--bundle"])
        .arg(dir)
        .arg("--state-dir")
        .arg(shim_dir(id))
        .arg("--runtime")
        .arg(runtime_binary())
        .args(["--runtime-root", RUNTIME_ROOT, "--log-path"])
        .arg(dir.join("container.log"));
    if stdin {
        shim.arg("--stdin");
    }
    if remove {
        let root = dir
            .ancestors()
            .nth(3)
            .unwrap_or(Path::new("/var/lib/berth"));
        let berth = std::env::current_exe().map_err(|e| e.to_string())?;
        shim.arg("--exit-command").arg(berth);
        for a in ["--root", &root.to_string_lossy(), "rm", id] {
            shim.args(["--exit-command-arg", a]);
        }
    }
    let out = shim
        .output()
        .map_err(|e| format!("running berth-shim: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .trim()
            .trim_start_matches("berth-shim: ")
            .to_string());
    }
    runtime(&["start", id])
}

fn runtime(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(runtime_binary())
        .args(["--log-format", "json", "--root", RUNTIME_ROOT])
        .args(args)
        .output()
        .map_err(|e| format!("running berth-runtime: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(berth_bundle::runtime_error::message(&out.stderr))
    }
}

/// A container as `ps` and `inspect` see it.
struct Seen {
    record: Value,
    status: String,
    running: bool,
    exit: Option<Value>,
}

fn look(dir: &Path) -> Option<Seen> {
    let record: Value =
        serde_json::from_slice(&std::fs::read(dir.join("berth.json")).ok()?).ok()?;
    let id = record["id"].as_str()?.to_string();
    let exit: Option<Value> = std::fs::read(shim_dir(&id).join("exit"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let state = std::process::Command::new(runtime_binary())
        .args(["--root", RUNTIME_ROOT, "state", &id])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok());
    let running = state.as_ref().is_some_and(|s| s["status"] == "running");
    let status = match (&exit, running) {
        (_, true) => "Up".to_string(),
        (Some(e), false) => format!("Exited ({})", e["exit_code"]),
        (None, false) => "Exited".to_string(),
    };
    Some(Seen {
        record,
        status,
        running,
        exit,
    })
}

/// The containers' records: (directory, record).
fn records(root: &Path) -> Vec<(PathBuf, Value)> {
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(containers_dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v =
                serde_json::from_slice(&std::fs::read(e.path().join("berth.json")).ok()?).ok()?;
            Some((e.path(), v))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The ID of the container named `name`.
pub fn id_of_name(root: &Path, name: &str) -> Option<String> {
    records(root)
        .into_iter()
        .find(|(_, v)| v["name"] == name)
        .and_then(|(_, v)| v["id"].as_str().map(String::from))
}

/// A container by its name, its ID or a unique prefix of its ID, as docker
/// finds them.
fn find(root: &Path, name: &str) -> Result<(PathBuf, Seen), String> {
    let all = records(root);
    let hit = all
        .iter()
        .find(|(_, v)| v["id"] == name || v["name"] == name)
        .map(|(d, _)| d.clone());
    let dir = match hit {
        Some(d) => d,
        None => {
            let by_prefix: Vec<&PathBuf> = all
                .iter()
                .filter(|(_, v)| {
                    !name.is_empty() && v["id"].as_str().is_some_and(|id| id.starts_with(name))
                })
                .map(|(d, _)| d)
                .collect();
            match by_prefix.as_slice() {
                [one] => (*one).clone(),
                [] => return Err(format!("no such container: {name}")),
                many => {
                    return Err(format!(
                        "{name:?} is a prefix of {} container IDs: give more of it",
                        many.len()
                    ));
                }
            }
        }
    };
    match look(&dir) {
        Some(s) => Ok((dir, s)),
        None => Err(format!("no such container: {name}")),
    }
}

pub fn ps(root: &Path, all: bool) -> Result<(), String> {
    println!(
        "{:<14} {:<40} {:<24} {:<14} {:<14} NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
    );
    for (dir, _) in records(root) {
        let Some(s) = look(&dir) else { continue };
        if !all && !s.running {
            continue;
        }
        let cmd: Vec<&str> = s.record["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        let mut cmd = cmd.join(" ");
        cmd.truncate(22);
        let age = now_secs().saturating_sub(s.record["created"].as_u64().unwrap_or(0));
        let id = s.record["id"].as_str().unwrap_or_default();
        println!(
            "{:<14} {:<40} {:<24} {:<14} {:<14} {}",
            &id[..id.len().min(12)],
            s.record["image"].as_str().unwrap_or_default(),
            format!("\"{cmd}\""),
            format!("{age}s ago"),
            s.status,
            s.record["name"].as_str().unwrap_or(id)
        );
    }
    Ok(())
}

pub fn inspect(root: &Path, name: &str) -> Result<(), String> {
    let (dir, s) = find(root, name)?;
    let mut v = s.record;
    v["status"] = json!(s.status);
    v["running"] = json!(s.running);
    v["exit"] = s.exit.unwrap_or(Value::Null);
    v["bundle"] = json!(dir);
    v["log"] = json!(dir.join("container.log"));
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(())
}

/// Prints the CRI-format log: stdout records to stdout, stderr to stderr.
pub fn logs(root: &Path, name: &str, follow: bool, tail: Option<usize>) -> Result<(), String> {
    let (dir, _) = find(root, name)?;
    let path = dir.join("container.log");
    let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let lines: Vec<&str> = text.lines().collect();
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for l in &lines[skip..] {
        print_record(l);
    }
    if !follow {
        return Ok(());
    }
    let mut pos = f.stream_position().map_err(|e| e.to_string())?;
    loop {
        let mut reader =
            std::io::BufReader::new(std::fs::File::open(&path).map_err(|e| e.to_string())?);
        reader
            .seek(std::io::SeekFrom::Start(pos))
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        while reader.read_line(&mut line).map_err(|e| e.to_string())? > 0 {
            if !line.ends_with('\n') {
                break;
            }
            pos += line.len() as u64;
            print_record(line.trim_end_matches('\n'));
            line.clear();
        }
        if !look(&dir).is_some_and(|s| s.running) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_record(l: &str) {
    let mut f = l.splitn(4, ' ');
    let (_, stream, tag, content) = (f.next(), f.next(), f.next(), f.next().unwrap_or_default());
    let nl = if tag == Some("P") { "" } else { "\n" };
    if stream == Some("stderr") {
        let _ = write!(std::io::stderr(), "{content}{nl}");
    } else {
        let _ = write!(std::io::stdout(), "{content}{nl}");
    }
}

fn signal(id: &str, sig: i32) -> Result<(), String> {
    let sock = shim_dir(id).join("control.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock)
        .map_err(|e| format!("{}: {e}", sock.display()))?;
    // One write: the shim reads a request in one read.
    s.write_all(format!("signal {sig}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    match reply.trim().strip_prefix("error ") {
        Some(e) => Err(e.to_string()),
        None => Ok(()),
    }
}

fn wait_exit(id: &str, timeout: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if shim_dir(id).join("exit").exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// SIGTERM, then SIGKILL after `timeout` seconds.
pub fn stop(root: &Path, name: &str, timeout: u64) -> Result<(), String> {
    let (_, s) = find(root, name)?;
    let id = s.record["id"].as_str().unwrap_or_default().to_string();
    if !s.running {
        return Ok(());
    }
    if s.record["detached"] != true {
        return runtime(&["kill", &id, "KILL"]);
    }
    let _ = signal(&id, libc_sig("TERM"));
    if !wait_exit(&id, Duration::from_secs(timeout)) {
        signal(&id, libc_sig("KILL"))?;
        if !wait_exit(&id, Duration::from_secs(10)) {
            return Err(format!("{id} did not exit after SIGKILL"));
        }
    }
    Ok(())
}

fn libc_sig(name: &str) -> i32 {
    if name == "KILL" { 9 } else { 15 }
}

pub fn rm(root: &Path, name: &str, force: bool) -> Result<(), String> {
    let (dir, s) = find(root, name)?;
    let id = s.record["id"].as_str().unwrap_or_default().to_string();
    if s.running {
        if !force {
            return Err(format!("{id} is running: stop it first, or use rm -f"));
        }
        stop(root, name, 0)?;
    }
    let _ = runtime(&["delete", "--force", &id]);
    crate::network::teardown(&id, &dir);
    let _ = berth_image::snapshot::unmount_rootfs(&dir.join("rootfs"));
    let _ = std::fs::remove_dir_all(shim_dir(&id));
    std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    println!("{id}");
    Ok(())
}

/// Runs a command in a running container with this terminal's stdio; returns its
/// exit code.
pub fn exec(
    root: &Path,
    name: &str,
    interactive: bool,
    tty: bool,
    cmd: &[String],
) -> Result<i32, String> {
    let (_, s) = find(root, name)?;
    if !s.running {
        return Err(format!("{name} is not running"));
    }
    let id = s.record["id"].as_str().unwrap_or_default();
    let mut c = std::process::Command::new(runtime_binary());
    c.args(["--root", RUNTIME_ROOT, "exec"]);
    if tty {
        c.arg("--tty");
    }
    c.arg(id).args(cmd);
    if !interactive {
        c.stdin(std::process::Stdio::null());
    }
    let status = c
        .status()
        .map_err(|e| format!("running berth-runtime: {e}"))?;
    Ok(status.code().unwrap_or(125))
}
