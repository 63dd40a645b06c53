//! berth: the command a person types on a node or a laptop.
//!
//! Image commands (`pull`, `images`, `rmi`, `inspect`) work on the same store as
//! `berthd` (default /var/lib/berth), with no daemon; `run` (foreground, or `-d`
//! under a shim), `ps`, `logs`, `exec`, `stop`, `rm` and `inspect` of containers
//! (`containers.rs`).

mod containers;
mod exec_check;
mod images;
mod network;
mod run;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Run containers with berth, no daemon needed"
)]
struct Cli {
    /// The image store's root directory (shared with berthd).
    #[arg(long, global = true, default_value = "/var/lib/berth")]
    root: PathBuf,
    /// Mirror for a registry, tried before it: HOST=MIRROR (repeatable, in order).
    #[arg(long = "registry-mirror", global = true)]
    mirrors: Vec<String>,
    /// A registry reached over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry", global = true)]
    insecure: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image from its registry.
    Pull {
        /// Print only the image id.
        #[arg(short, long)]
        quiet: bool,
        /// user:password for the registry (else ~/.docker/config.json is used).
        #[arg(long)]
        creds: Option<String>,
        image: String,
    },
    /// List images.
    Images {
        /// Print only image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images (a tag, if the image has other names; else the image).
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Print a container's (or else an image's) record as JSON.
    Inspect { name: String },
    /// Mount an image's rootfs (overlay) at TARGET, with its writable layer in DIR.
    #[command(hide = true)]
    Mount {
        image: String,
        dir: PathBuf,
        target: PathBuf,
    },
    /// Run a container (foreground: exits with its code; -d: in the background).
    Run(Box<run::RunArgs>),
    /// List containers (running; -a: all).
    Ps {
        #[arg(short, long)]
        all: bool,
    },
    /// Print a container's output (CRI log).
    Logs {
        #[arg(short, long)]
        follow: bool,
        #[arg(long)]
        tail: Option<usize>,
        container: String,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(short = 't', long)]
        tty: bool,
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a container: SIGTERM, then SIGKILL after -t seconds.
    Stop {
        #[arg(short = 't', long, default_value_t = 10)]
        time: u64,
        containers: Vec<String>,
    },
    /// Remove containers (-f: running ones too).
    Rm {
        #[arg(short, long)]
        force: bool,
        containers: Vec<String>,
    },

    /// Print berth's version.
    Version,
}

fn main() {
    let cli = Cli::parse();
    if let Command::Exec {
        interactive,
        tty,
        container,
        command,
    } = &cli.command
    {
        let code = containers::exec(&cli.root, container, *interactive, *tty, command)
            .unwrap_or_else(|e| {
                eprintln!("berth: {e}");
                125
            });
        std::process::exit(code);
    }
    if let Command::Run(args) = cli.command {
        // docker's convention: 125 when berth itself fails, else the container's code.
        let code = match run::run(&cli.root, &cli.mirrors, &cli.insecure, *args) {
            Ok(c) => c,
            Err(run::Failed(e, code)) => {
                eprintln!("berth: {e}");
                code
            }
        };
        std::process::exit(code);
    }
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<(), String> {
    let config = images::store_config(&cli.root, &cli.mirrors, &cli.insecure)?;
    match cli.command {
        Command::Version => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Pull {
            quiet,
            creds,
            image,
        } => images::pull(config, &image, quiet, creds.as_deref()),
        Command::Images { quiet } => images::list(config, quiet),
        Command::Rmi { images } => images::remove(config, &images),
        Command::Inspect { name } => {
            containers::inspect(&cli.root, &name).or_else(|_| images::inspect(config, &name))
        }
        Command::Mount { image, dir, target } => images::mount(config, &image, &dir, &target),
        Command::Ps { all } => containers::ps(&cli.root, all),
        Command::Logs {
            follow,
            tail,
            container,
        } => containers::logs(&cli.root, &container, follow, tail),
        Command::Stop {
            time,
            containers: names,
        } => names
            .iter()
            .try_for_each(|n| containers::stop(&cli.root, n, time).map(|_| println!("{n}"))),
        Command::Rm {
            force,
            containers: names,
        } => names
            .iter()
            .try_for_each(|n| containers::rm(&cli.root, n, force)),
        Command::Run(_) | Command::Exec { .. } => unreachable!("handled in main"),
    }
}
