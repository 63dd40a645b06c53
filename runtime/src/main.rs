//! berth-runtime: runc's command line over the berth-runtime library.

use berth_runtime::container::{self, CreateOpts};
use berth_runtime::state::{Root, Status};
use berth_runtime::{Error, Result, cgroups, selfexe};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "A runc-compatible OCI runtime"
)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Also write errors to this file (containerd and CRI-O read it).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of --log: text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    /// Print where each command spends its time to stderr.
    #[arg(long, global = true)]
    debug: bool,
    /// The CRIU binary for checkpoint and restore.
    #[arg(long, global = true, default_value = "criu")]
    criu: PathBuf,
    /// Use systemd for cgroups (refused unless systemd runs as PID 1).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility (`--rootless`, `--rootless=auto`); berth
    /// writes the same default config either way.
    #[arg(long, global = true, hide = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// File to write the init pid to.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility (berth does not create a session keyring).
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many fds beyond stdio (3..3+N) to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    id: String,
}

#[derive(Args)]
struct ExecArgs {
    /// A process.json (OCI process) instead of the command line.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(short, long)]
    tty: bool,
    #[arg(short, long)]
    detach: bool,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// KEY=VALUE added to the container's environment.
    #[arg(short, long)]
    env: Vec<String>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// UID[:GID]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// Capabilities added to the container's (CAP_X).
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(long)]
    no_new_privs: bool,
    #[arg(long)]
    apparmor: Option<String>,
    #[arg(long)]
    process_label: Option<String>,
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    #[arg(long)]
    ignore_paused: bool,
    /// Run in an existing sub-cgroup of the container's: [<controller>:]<path>
    /// (repeatable, one per controller; without a controller, all of them).
    #[arg(long)]
    cgroup: Vec<String>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct UpdateArgs {
    /// OCI linux.resources JSON from a file, or - for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    #[arg(long)]
    memory: Option<String>,
    #[arg(long)]
    memory_reservation: Option<String>,
    #[arg(long)]
    memory_swap: Option<String>,
    #[arg(long)]
    cpu_shares: Option<u64>,
    #[arg(long)]
    cpu_quota: Option<i64>,
    #[arg(long)]
    cpu_period: Option<u64>,
    #[arg(long)]
    cpu_rt_period: Option<u64>,
    #[arg(long)]
    cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    cpuset_cpus: Option<String>,
    #[arg(long)]
    cpuset_mems: Option<String>,
    #[arg(long)]
    pids_limit: Option<i64>,
    #[arg(long)]
    blkio_weight: Option<u16>,
    id: String,
}

/// runc's CRIU flags shared by checkpoint and restore.
#[derive(Args)]
struct CriuArgs {
    /// Directory of the CRIU image files.
    #[arg(long, default_value = "checkpoint")]
    image_path: PathBuf,
    /// Directory for CRIU's log and work files (default: the image path).
    #[arg(long)]
    work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    #[arg(long)]
    tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long)]
    ext_unix_sk: bool,
    /// Allow shell jobs.
    #[arg(long)]
    shell_job: bool,
    /// Handle file locks.
    #[arg(long)]
    file_locks: bool,
    /// CRIU's cgroups mode: soft, full, strict or ignore.
    #[arg(long)]
    manage_cgroups_mode: Option<String>,
    /// Not supported by berth (refused): lazy migration.
    #[arg(long, hide = true)]
    lazy_pages: bool,
    /// Not supported by berth (refused).
    #[arg(long, hide = true)]
    empty_ns: Vec<String>,
    /// Not supported by berth (refused).
    #[arg(long, hide = true)]
    auto_dedup: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Checkpoint a running container with CRIU.
    Checkpoint {
        #[command(flatten)]
        criu: CriuArgs,
        /// Directory of a previous (pre-dump) checkpoint.
        #[arg(long)]
        parent_path: Option<PathBuf>,
        /// Leave the container running after the checkpoint.
        #[arg(long)]
        leave_running: bool,
        /// Dump only memory, leaving the container running (iterative migration).
        #[arg(long)]
        pre_dump: bool,
        /// Not supported by berth (refused).
        #[arg(long, hide = true)]
        page_server: Option<String>,
        /// Not supported by berth (refused).
        #[arg(long, hide = true)]
        status_fd: Option<i32>,
        id: String,
    },
    /// Restore a container from a CRIU checkpoint.
    Restore {
        #[command(flatten)]
        criu: CriuArgs,
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Accepted for runc compatibility.
        #[arg(long)]
        no_subreaper: bool,
        /// Accepted for runc compatibility (CRIU sets up the root).
        #[arg(long)]
        no_pivot: bool,
        id: String,
    },
    /// Create a container, leaving its process waiting for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or all its processes.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and its resources.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container, then wait for it (unless --detach).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
        /// Accepted for runc compatibility.
        #[arg(long)]
        no_subreaper: bool,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the processes in a container.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Options passed to ps(1) for the table format.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// Change a running container's cgroup resources.
    Update(UpdateArgs),
    /// Print resource usage and OOM events (every --interval, or once with --stats).
    Events {
        #[arg(long)]
        stats: bool,
        /// Seconds between reports, e.g. 5 or 5s.
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the features this runtime supports (OCI features JSON).
    Features,
}

fn main() {
    let cli = Cli::parse();
    let code = match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            report(&cli, &e);
            1
        }
    };
    std::process::exit(code);
}

/// The error as runc reports it (logrus): a record `time="..." level=error
/// msg="..."`, or `{"level":"error","msg":"...","time":"..."}` with
/// `--log-format json`. Without `--log` the record goes to stderr; with it, to
/// the log file, and stderr gets the bare message.
fn report(cli: &Cli, e: &Error) {
    let msg = e.to_string();
    let record = log_record(&cli.log_format, "error", &msg);
    match &cli.log {
        None => eprintln!("{record}"),
        Some(path) => {
            eprintln!("{msg}");
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{record}");
            }
        }
    }
}

/// One logrus-style line.
fn log_record(format: &str, level: &str, msg: &str) -> String {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    if format == "json" {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        format!("time=\"{time}\" level={level} msg={}", go_quote(msg))
    }
}

/// A string quoted as Go's %q does for the text logs runc writes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn dispatch(cli: &Cli) -> Result<i32> {
    if cli.systemd_cgroup && !Path::new("/run/systemd/system").exists() {
        return Err(Error::Usage(
            "--systemd-cgroup needs systemd running as PID 1, which this host does not have; use the cgroupfs driver (leave the flag off)".into(),
        ));
    }
    if cli.debug {
        berth_runtime::timing::enable();
    }
    let root = Root::new(&cli.root);
    match &cli.command {
        Command::Create(a) => {
            let bundle = load_for_create(a)?;
            container::create(&root, &create_opts(a, &bundle))?;
            Ok(0)
        }
        Command::Start { id } => container::start(&root, id).map(|_| 0),
        Command::State { id } => {
            let rec = root.load(id)?;
            let out = rec.output(rec.status(&root));
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            container::kill(&root, id, container::parse_signal(signal)?, *all).map(|_| 0)
        }
        Command::Delete { force, id } => container::delete(&root, id, *force).map(|_| 0),
        Command::Run {
            create,
            detach,
            keep,
            ..
        } => {
            let bundle = load_for_create(create)?;
            container::run(&root, &create_opts(create, &bundle), *detach, *keep)
        }
        Command::List { format, quiet } => list(&root, format, *quiet).map(|_| 0),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&root, id, format, ps_args).map(|_| 0),
        Command::Exec(a) => {
            enter_sealed()?;
            let rec = root.load(&a.id)?;
            let bundle = berth_runtime::spec::load_bundle(&rec.bundle)?;
            let process = exec_process(&bundle.spec, a)?;
            berth_runtime::exec::exec(
                &root,
                berth_runtime::exec::ExecOpts {
                    id: &a.id,
                    bundle: &bundle,
                    process,
                    detach: a.detach,
                    pid_file: a.pid_file.as_deref(),
                    console_socket: a.console_socket.as_deref(),
                    preserve_fds: a.preserve_fds,
                    ignore_paused: a.ignore_paused,
                    sub_cgroups: &a.cgroup,
                },
            )
        }
        Command::Update(a) => update(&root, a).map(|_| 0),
        Command::Events {
            stats,
            interval,
            id,
        } => events(&root, id, *stats, interval).map(|_| 0),
        Command::Pause { id } => container::pause(&root, id, true).map(|_| 0),
        Command::Resume { id } => container::pause(&root, id, false).map(|_| 0),
        Command::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(Error::Usage(format!(
                    "{} already exists; remove it first",
                    path.display()
                )));
            }
            std::fs::write(&path, berth_runtime::default_spec::DEFAULT_SPEC)
                .map_err(|e| Error::path("writing", &path, e))?;
            Ok(0)
        }
        Command::Checkpoint {
            criu,
            parent_path,
            leave_running,
            pre_dump,
            page_server,
            status_fd,
            id,
        } => {
            if page_server.is_some() || status_fd.is_some() {
                return Err(Error::Usage(
                    "checkpoint: --page-server and --status-fd are not supported by berth-runtime"
                        .into(),
                ));
            }
            let mut o = criu_opts(cli, criu)?;
            o.parent_path = parent_path.clone();
            o.leave_running = *leave_running;
            o.pre_dump = *pre_dump;
            berth_runtime::checkpoint::checkpoint(&root, id, &o).map(|_| 0)
        }
        Command::Restore {
            criu,
            bundle,
            detach,
            pid_file,
            console_socket,
            id,
            ..
        } => {
            if console_socket.is_some() {
                return Err(Error::Usage(
                    "restore: --console-socket is not supported by berth-runtime".into(),
                ));
            }
            let o = criu_opts(cli, criu)?;
            let bundle = berth_runtime::spec::load_bundle(bundle)?;
            let rec =
                berth_runtime::checkpoint::restore(&root, id, &bundle, &o, pid_file.as_deref())?;
            if *detach {
                return Ok(0);
            }
            // Not our child (CRIU restored it detached): wait for it to go.
            while rec.init_alive() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            container::delete(&root, id, true)?;
            Ok(0)
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&berth_runtime::features::features())
                    .unwrap_or_default()
            );
            Ok(0)
        }
    }
}

fn criu_opts(cli: &Cli, a: &CriuArgs) -> Result<berth_runtime::checkpoint::CriuOpts> {
    if a.lazy_pages || !a.empty_ns.is_empty() || a.auto_dedup {
        return Err(Error::Usage(
            "--lazy-pages, --empty-ns and --auto-dedup are not supported by berth-runtime".into(),
        ));
    }
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    };
    Ok(berth_runtime::checkpoint::CriuOpts {
        criu: cli.criu.clone(),
        image_path: abs(&a.image_path),
        work_path: a.work_path.as_deref().map(abs),
        tcp_established: a.tcp_established,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        file_locks: a.file_locks,
        manage_cgroups_mode: a.manage_cgroups_mode.clone(),
        ..Default::default()
    })
}

/// The process for `exec`: from --process, or the container's own process with
/// the command line's overrides, as runc builds it.
fn exec_process(
    spec: &oci_spec::runtime::Spec,
    a: &ExecArgs,
) -> Result<oci_spec::runtime::Process> {
    use oci_spec::runtime::Process;
    if let Some(path) = &a.process {
        let data = std::fs::read(path).map_err(|e| Error::path("reading", path, e))?;
        return serde_json::from_slice::<Process>(&data)
            .map_err(|e| Error::config("process", format!("{}: {e}", path.display())));
    }
    if a.command.is_empty() {
        return Err(Error::Usage(
            "exec needs a command (or --process FILE)".into(),
        ));
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_env(Some(merge_env(
        p.env().as_deref().unwrap_or_default(),
        &a.env,
    )));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| Error::Usage(format!("--user {u:?}: use UID[:GID] numbers")))
        };
        let mut user = p.user().clone();
        user.set_uid(parse(uid)?);
        user.set_gid(gid.map(parse).transpose()?.unwrap_or(0));
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: oci_spec::runtime::Capability =
                serde_json::from_value(serde_json::Value::from(name.as_str()))
                    .map_err(|_| Error::Usage(format!("unknown capability {name:?}")))?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(ap) = &a.apparmor {
        p.set_apparmor_profile(Some(ap.clone()));
    }
    if let Some(l) = &a.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

/// The container's env with `exec --env` over it: a variable given on the command
/// line replaces the spec's of the same name (as runc does), in its place.
fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let key = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k).to_string();
    let mut env: Vec<String> = base.to_vec();
    for kv in over {
        match env.iter().position(|e| key(e) == key(kv)) {
            Some(i) => env[i] = kv.clone(),
            None => env.push(kv.clone()),
        }
    }
    env
}

/// Bytes with an optional k/m/g suffix (`256m`), or -1 for unlimited.
fn parse_bytes(flag: &str, s: &str) -> Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mul) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    num.parse::<i64>()
        .map(|n| if n < 0 { -1 } else { n * mul })
        .map_err(|_| {
            Error::Usage(format!(
                "--{flag} {s:?}: use bytes, optionally with k, m or g"
            ))
        })
}

fn update(root: &Root, a: &UpdateArgs) -> Result<()> {
    use oci_spec::runtime::{LinuxPids, LinuxResources};
    let rec = root.load(&a.id)?;
    let mut res: LinuxResources = match &a.resources {
        Some(p) => {
            let data = if p.as_os_str() == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
                    .map_err(|e| Error::sys("reading stdin", e))?;
                v
            } else {
                std::fs::read(p).map_err(|e| Error::path("reading", p, e))?
            };
            serde_json::from_slice(&data)
                .map_err(|e| Error::config("linux.resources", e.to_string()))?
        }
        None => LinuxResources::default(),
    };
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut m = res.memory().unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_bytes("memory", v)?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(parse_bytes("memory-reservation", v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_bytes("memory-swap", v)?));
        }
        res.set_memory(Some(m));
    }
    let cpu_flags = a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some();
    if cpu_flags {
        let mut c = res.cpu().clone().unwrap_or_default();
        if a.cpu_shares.is_some() {
            c.set_shares(a.cpu_shares);
        }
        if a.cpu_quota.is_some() {
            c.set_quota(a.cpu_quota);
        }
        if a.cpu_period.is_some() {
            c.set_period(a.cpu_period);
        }
        if a.cpu_rt_period.is_some() {
            c.set_realtime_period(a.cpu_rt_period);
        }
        if a.cpu_rt_runtime.is_some() {
            c.set_realtime_runtime(a.cpu_rt_runtime);
        }
        if a.cpuset_cpus.is_some() {
            c.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            c.set_mems(a.cpuset_mems.clone());
        }
        res.set_cpu(Some(c));
    }
    if let Some(l) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(l);
        res.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    // Device rules are fixed at create: updating them could lock a running process out.
    res.set_devices(None);
    rec.cgroup.apply(&res)
}

fn events(root: &Root, id: &str, once: bool, interval: &str) -> Result<()> {
    let secs: f64 = interval
        .trim_end_matches('s')
        .parse()
        .map_err(|_| Error::Usage(format!("--interval {interval:?}: use seconds, e.g. 5s")))?;
    let mut last_ooms = None;
    loop {
        let rec = root.load(id)?;
        if rec.status(root) == Status::Stopped && !once {
            return Ok(());
        }
        let stats = cgroups::stats::read(&rec.cgroup);
        if let Some(prev) = last_ooms
            && stats.memory.oom_kills > prev
        {
            println!("{}", serde_json::json!({"type": "oom", "id": id}));
        }
        last_ooms = Some(stats.memory.oom_kills);
        println!(
            "{}",
            serde_json::json!({"type": "stats", "id": id, "data": stats})
        );
        if once {
            return Ok(());
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.max(0.01)));
    }
}

fn enter_sealed() -> Result<()> {
    selfexe::ensure_sealed().map_err(|e| Error::Init(format!("CVE-2019-5736 protection: {e}")))
}

/// Loads the bundle, first re-executing from a sealed copy if this container needs it.
fn load_for_create(a: &CreateArgs) -> Result<berth_runtime::spec::Bundle> {
    berth_runtime::spec::validate_id(&a.id)?;
    let bundle = berth_runtime::spec::load_bundle(&a.bundle)?;
    if container::needs_sealed_runtime(&bundle.spec) {
        enter_sealed()?;
    }
    Ok(bundle)
}

fn create_opts<'a>(a: &'a CreateArgs, bundle: &'a berth_runtime::spec::Bundle) -> CreateOpts<'a> {
    CreateOpts {
        id: &a.id,
        bundle,
        pid_file: a.pid_file.as_deref(),
        console_socket: a.console_socket.as_deref(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
    }
}

fn list(root: &Root, format: &str, quiet: bool) -> Result<()> {
    let records: Vec<_> = root
        .list()
        .iter()
        .filter_map(|id| root.load(id).ok())
        .collect();
    if quiet {
        for r in &records {
            println!("{}", r.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let out: Vec<_> = records.iter().map(|r| r.output(r.status(root))).collect();
            println!("{}", serde_json::to_string(&out).unwrap_or_default());
        }
        "table" => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for r in &records {
                let s = r.status(root);
                let pid = if s == Status::Stopped { 0 } else { r.pid };
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<32} root",
                    r.id,
                    pid,
                    s.as_str(),
                    r.bundle.display(),
                    r.created
                );
            }
        }
        other => {
            return Err(Error::Usage(format!(
                "invalid format {other:?}: use table or json"
            )));
        }
    }
    Ok(())
}

fn ps(root: &Root, id: &str, format: &str, ps_args: &[String]) -> Result<()> {
    let rec = root.load(id)?;
    let pids = cgroups::pids(&rec.cgroup.paths());
    match format {
        "json" => {
            println!("{}", serde_json::to_string(&pids).unwrap_or_default());
            Ok(())
        }
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| Error::sys("running ps", e))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| Error::Usage("ps output has no PID column".into()))?;
            println!("{header}");
            for l in lines {
                if l.split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p))
                {
                    println!("{l}");
                }
            }
            Ok(())
        }
        other => Err(Error::Usage(format!(
            "invalid format {other:?}: use table or json"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn log_records_as_logrus_writes_them() {
        let r = log_record("text", "error", "container \"x\" does not exist");
        assert!(r.starts_with("time=\""), "{r}");
        assert!(
            r.ends_with(" level=error msg=\"container \\\"x\\\" does not exist\""),
            "{r}"
        );
        let j: serde_json::Value =
            serde_json::from_str(&log_record("json", "error", "a\nb")).unwrap();
        assert_eq!(j["level"], "error");
        assert_eq!(j["msg"], "a\nb");
        assert!(j["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn exec_env_overrides_the_spec() {
        let base = vec!["PATH=/bin".to_string(), "MY_VAR=from_spec".to_string()];
        let over = vec!["MY_VAR=from_cli".to_string(), "NEW=1".to_string()];
        assert_eq!(
            merge_env(&base, &over),
            vec!["PATH=/bin", "MY_VAR=from_cli", "NEW=1"]
        );
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn runc_style_invocations_parse() {
        let cli = Cli::try_parse_from([
            "berth-runtime",
            "--root",
            "/r",
            "--log",
            "/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "--console-socket",
            "/s",
            "id1",
        ])
        .unwrap();
        assert_eq!(cli.root, Path::new("/r"));
        assert!(
            matches!(cli.command, Command::Create(ref a) if a.id == "id1" && a.bundle == Path::new("/b"))
        );
        let cli = Cli::try_parse_from(["berth-runtime", "kill", "--all", "id1", "KILL"]).unwrap();
        assert!(
            matches!(cli.command, Command::Kill { all: true, ref signal, .. } if signal == "KILL")
        );
        assert!(Cli::try_parse_from(["berth-runtime", "spec", "--rootless"]).is_ok());
        assert!(Cli::try_parse_from(["berth-runtime", "delete", "-f", "x"]).is_ok());
    }
}
