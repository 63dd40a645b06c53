//! `berth run`: an image's container in the foreground, with no daemon. The image
//! comes from the shared store (pulled per `--pull`), the rootfs is an overlay of
//! its snapshots, the bundle is written from the image's config and the flags, and
//! `berth-runtime run` runs it with this terminal's stdio. Exit codes follow
//! docker: the container's own, or 125 when berth itself fails.

use crate::images::store_config;
use berth_bundle::oci::{LinuxCpu, LinuxMemory, LinuxNamespaceType};
use berth_bundle::{Container as Bundle, ImageDefaults, caps, mounts};
use berth_image::ImageStore;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background under a shim; print the container's ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// A file of KEY=VALUE lines (repeatable).
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// HOST:CONTAINER[:ro] bind mounts (repeatable).
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Memory limit: 64m, 1g, or bytes.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// CPUs, fractions allowed (a CFS quota over a 100 ms period).
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// All capabilities and devices, no seccomp or masked paths.
    #[arg(long)]
    pub privileged: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// UID[:GID] (numbers).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// always, missing or never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    #[arg(long)]
    pub read_only: bool,
    /// bridge (through CNI; the default when the CNI plugins are installed), host,
    /// or none (a private network namespace with loopback only).
    #[arg(long, default_value = "")]
    pub network: String,
    /// HOST:CONTAINER[/tcp|udp]: publish a port on the host (bridge networking).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// A failure before the container's process ran, with docker's exit code: 125
/// when berth itself fails, 127 when the command is not found, 126 when it
/// cannot be executed.
pub struct Failed(pub String, pub i32);

pub fn run(
    root: &Path,
    mirrors: &[String],
    insecure: &[String],
    mut a: RunArgs,
) -> Result<i32, Failed> {
    let fail = |m: String| Failed(m, 125);
    let store = ImageStore::open(store_config(root, mirrors, insecure).map_err(fail)?)
        .map_err(|e| fail(e.to_string()))?;
    let rec = match (a.pull.as_str(), store.get(&a.image)) {
        ("never", Ok(r)) | ("missing", Ok(r)) => r,
        ("never", Err(_)) => {
            return Err(fail(format!(
                "{}: no such image in the store, and --pull never",
                a.image
            )));
        }
        ("always", _) | ("missing", Err(_)) => {
            // Progress on stderr when it is a terminal; stdout is the container's.
            let bars = std::io::IsTerminal::is_terminal(&std::io::stderr());
            crate::images::pull_into(&store, &a.image, berth_image::Auth::Anonymous, bars)
                .map_err(fail)?
        }
        (other, _) => {
            return Err(fail(format!(
                "--pull {other:?}: use always, missing or never"
            )));
        }
    };
    if a.network.is_empty() {
        a.network = if crate::network::available() {
            "bridge"
        } else {
            "none"
        }
        .into();
    }
    if !matches!(a.network.as_str(), "bridge" | "host" | "none") {
        return Err(fail(format!(
            "--network {:?}: use bridge, host or none",
            a.network
        )));
    }
    let ports = a
        .publish
        .iter()
        .map(|p| berth_network::PortMapping::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    if !ports.is_empty() && a.network != "bridge" {
        return Err(fail(format!(
            "-p needs --network bridge, not {}",
            a.network
        )));
    }
    let image_config = store.config_json(&rec).map_err(|e| fail(e.to_string()))?;
    // As docker: a 64-hex ID, and a name apart from it (given, or made up).
    let id = random_id();
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("berth_{}", &id[..12]));
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(fail(format!(
            "--name {name:?}: use letters, digits, '_', '.' and '-'"
        )));
    }
    if let Some(other) = crate::containers::id_of_name(root, &name) {
        return Err(fail(format!(
            "the container name {name:?} is already in use by container {other}: remove it (berth rm) or choose another name"
        )));
    }
    // Apart from berthd's containers: the two share the image store only.
    let dir = root.join("cli").join("containers").join(&id);
    if dir.exists() {
        return Err(fail(format!(
            "a container {id:?} already exists ({})",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    let cleanup = Cleanup {
        id: id.clone(),
        dir: dir.clone(),
        rootfs: dir.join("rootfs"),
        remove: a.rm,
    };
    store
        .mount_rootfs(&rec, &dir.join("upper"), &dir.join("work"), &cleanup.rootfs)
        .map_err(|e| fail(e.to_string()))?;
    let mut bundle = bundle_config(&image_config, &a, &id).map_err(fail)?;
    if a.network == "bridge" {
        let ns = crate::network::setup(&id, &dir, ports).map_err(fail)?;
        bundle.namespace(LinuxNamespaceType::Network, Some(ns));
    }
    let config = bundle.build().map_err(fail)?;
    berth_bundle::write_config(&dir, &config).map_err(|e| fail(e.to_string()))?;
    crate::exec_check::command_runs(&cleanup.rootfs, &bundle.args, &bundle.env, &bundle.cwd)
        .map_err(|(m, code)| Failed(m, code))?;
    crate::containers::Record {
        id: id.clone(),
        name,
        image: a.image.clone(),
        command: bundle.args.clone(),
        created: crate::containers::now_secs(),
        detached: a.detach,
    }
    .save(&dir)
    .map_err(|e| fail(format!("writing the container record: {e}")))?;

    if a.detach {
        crate::containers::start_detached(&id, &dir, a.interactive, a.rm).map_err(fail)?;
        // The shim owns it now: nothing to undo here.
        std::mem::forget(cleanup);
        println!("{id}");
        return Ok(0);
    }
    let status = std::process::Command::new(runtime_binary())
        // With --log, the runtime's own failure reaches this terminal as a bare
        // message (its runc-style record goes to the file).
        .args(["--root", crate::containers::RUNTIME_ROOT, "--log"])
        .arg(dir.join("runtime.log"))
        .args(["run", "--bundle"])
        .arg(&dir)
        .arg(&id)
        .stdin(if a.interactive {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .status()
        .map_err(|e| fail(format!("running berth-runtime: {e}")))?;
    drop(cleanup);
    // berth-runtime exits 1 with its own one-line error on stderr when it fails
    // before the container runs; the container's code otherwise.
    Ok(status.code().unwrap_or(125))
}

/// Releases the network, unmounts the rootfs and, with --rm, removes the
/// container directory.
struct Cleanup {
    id: String,
    dir: PathBuf,
    rootfs: PathBuf,
    remove: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        crate::network::teardown(&self.id, &self.dir);
        let _ = berth_image::snapshot::unmount_rootfs(&self.rootfs);
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn random_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `berth-runtime` beside this binary, else on PATH.
pub fn runtime_binary() -> PathBuf {
    sibling("berth-runtime")
}

/// A berth binary beside this one, else on PATH.
pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `64m`, `1g`, `512k` or plain bytes.
fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0)
        .map(|n| (n * mult as f64) as i64)
        .ok_or_else(|| format!("--memory {s:?}: use a size such as 64m or 1g"))
}

/// The container's OCI config: the image's entrypoint, command, env, working
/// directory and user, with the flags over them, and docker's defaults for
/// capabilities, mounts, masked paths and seccomp (berth-bundle's).
pub fn bundle_config(image: &Value, a: &RunArgs, id: &str) -> Result<Bundle, String> {
    let img = ImageDefaults::of_image_config(image);
    let mut b = Bundle::new("rootfs", a.privileged);
    let entrypoint = a.entrypoint.clone().map(|e| vec![e]);
    b.args = img.args(entrypoint.as_deref(), &a.command);
    if b.args.is_empty() {
        return Err("the image has no entrypoint or command: give one after the image name".into());
    }
    b.env = img.env.clone();
    let mut from_files = Vec::new();
    for f in &a.env_file {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("--env-file {}: {e}", f.display()))?;
        from_files.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    for e in from_files.iter().chain(&a.env) {
        b.set_env(if e.contains('=') {
            e.clone()
        } else {
            format!("{e}=")
        });
    }
    b.default_path();
    b.cwd = img.cwd(a.workdir.as_deref());
    let user = a.user.clone().unwrap_or_else(|| img.user.clone());
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u.to_string(), g.to_string()),
        None => (user.clone(), String::new()),
    };
    let num = |s: &str, what: &str| -> Result<u32, String> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse()
                .map_err(|_| format!("user {what} {s:?}: berth run takes numeric ids so far"))
        }
    };
    b.user.uid = num(&uid, "id")?;
    b.user.gid = num(&gid, "group")?;
    b.capabilities = caps::resolve(&a.cap_add, &a.cap_drop, a.privileged)?;
    b.terminal = a.tty;
    b.readonly_rootfs = a.read_only;
    b.hostname = Some(id[..id.len().min(12)].to_string());
    b.cgroups_path = format!("/berth/{id}");
    for kind in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ] {
        b.namespace(kind, None);
    }
    if a.network == "none" {
        b.namespace(LinuxNamespaceType::Network, None);
    }
    // A /dev/shm of the container's own.
    b.mounts.push(mounts::mount(
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ));
    for v in &a.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (host, ctr, ro) = match parts.as_slice() {
            [h, c] => (*h, *c, false),
            [h, c, "ro"] => (*h, *c, true),
            [h, c, "rw"] => (*h, *c, false),
            _ => return Err(format!("-v {v:?}: use HOST:CONTAINER[:ro]")),
        };
        if !host.starts_with('/') || !ctr.starts_with('/') {
            return Err(format!("-v {v:?}: both paths must be absolute"));
        }
        if !Path::new(host).exists() {
            return Err(format!("-v {v:?}: {host} does not exist"));
        }
        b.mounts.push(mounts::bind(
            host,
            ctr,
            &["rbind", "rprivate", if ro { "ro" } else { "rw" }],
        ));
    }
    if let Some(m) = &a.memory {
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(parse_size(m)?));
        b.resources.set_memory(Some(mem));
    }
    if let Some(c) = a.cpus {
        if c <= 0.0 {
            return Err(format!("--cpus {c}: give a positive number"));
        }
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(Some((c * 100_000.0) as i64))
            .set_period(Some(100_000));
        b.resources.set_cpu(Some(cpu));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &[&str]) -> RunArgs {
        RunArgs {
            rm: true,
            detach: false,
            interactive: false,
            tty: false,
            env_file: vec![],
            volumes: vec![],
            memory: Some("64m".into()),
            cpus: Some(0.5),
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["CHOWN".into()],
            privileged: false,
            publish: vec![],
            name: None,
            env: vec!["A=1".into(), "PATH=/x".into()],
            workdir: None,
            user: None,
            entrypoint: None,
            pull: "missing".into(),
            read_only: false,
            network: "none".into(),
            image: "i".into(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn image_config_and_flags_merge_as_docker_does() {
        use serde_json::json;
        let spec = |image: &Value, a: &RunArgs| {
            bundle_config(image, a, "abc")
                .map(|b| serde_json::to_value(b.build().unwrap()).unwrap())
        };
        let image = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["a", "b"], "Env": ["PATH=/bin", "B=2"], "WorkingDir": "/w", "User": "1000:50"}});
        let c = spec(&image, &args(&[])).unwrap();
        assert_eq!(c["process"]["args"], json!(["/ep", "a", "b"]));
        assert_eq!(c["process"]["env"], json!(["B=2", "A=1", "PATH=/x"]));
        assert_eq!(c["process"]["cwd"], "/w");
        assert_eq!(c["process"]["user"], json!({"uid": 1000, "gid": 50}));
        let c = spec(&image, &args(&["x"])).unwrap();
        assert_eq!(
            c["process"]["args"],
            json!(["/ep", "x"]),
            "the command replaces Cmd, not the entrypoint"
        );
        assert!(spec(&json!({"config": {}}), &args(&[])).is_err());
        let caps = c["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(caps.contains(&json!("CAP_NET_ADMIN")) && !caps.contains(&json!("CAP_CHOWN")));
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert!(
            c["linux"]["seccomp"]["syscalls"].is_array(),
            "seccomp by default"
        );
    }
}
