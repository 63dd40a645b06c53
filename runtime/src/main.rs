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
    #[arg(long, global = true)]
    debug: bool,
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

#[derive(Subcommand)]
enum Command {
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

fn report(cli: &Cli, e: &Error) {
    eprintln!("berth-runtime: {e}");
    if let Some(path) = &cli.log
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let line = if cli.log_format == "json" {
            serde_json::json!({"level": "error", "msg": e.to_string(), "time": time}).to_string()
        } else {
            format!("time=\"{time}\" level=error msg={:?}", e.to_string())
        };
        let _ = writeln!(f, "{line}");
    }
}

fn dispatch(cli: &Cli) -> Result<i32> {
    if cli.systemd_cgroup && !Path::new("/run/systemd/system").exists() {
        return Err(Error::Usage(
            "--systemd-cgroup needs systemd running as PID 1, which this host does not have; use the cgroupfs driver (leave the flag off)".into(),
        ));
    }
    let root = Root::new(&cli.root);
    match &cli.command {
        Command::Create(a) => {
            enter_sealed()?;
            container::create(&root, &create_opts(a))?;
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
            enter_sealed()?;
            container::run(&root, &create_opts(create), *detach, *keep)
        }
        Command::List { format, quiet } => list(&root, format, *quiet).map(|_| 0),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&root, id, format, ps_args).map(|_| 0),
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

fn enter_sealed() -> Result<()> {
    selfexe::ensure_sealed().map_err(|e| Error::Init(format!("CVE-2019-5736 protection: {e}")))
}

fn create_opts(a: &CreateArgs) -> CreateOpts<'_> {
    CreateOpts {
        id: &a.id,
        bundle: &a.bundle,
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
