//! berth: the command a person types on a node or a laptop.
//!
//! Image commands (`pull`, `images`, `rmi`, `inspect`) work on the same store as
//! `berthd` (default /var/lib/berth), with no daemon. The run issue adds `run`,
//! `ps`, `logs`, `exec`, `stop` and `rm`.

mod images;
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
    /// Print an image's record and config as JSON.
    Inspect { image: String },
    /// Mount an image's rootfs (overlay) at TARGET, with its writable layer in DIR.
    #[command(hide = true)]
    Mount {
        image: String,
        dir: PathBuf,
        target: PathBuf,
    },
    /// Run a container in the foreground; exits with its exit code.
    Run(run::RunArgs),
    /// Print berth's version.
    Version,
}

fn main() {
    let cli = Cli::parse();
    if let Command::Run(args) = cli.command {
        // docker's convention: 125 when berth itself fails, else the container's code.
        let code = match run::run(&cli.root, &cli.mirrors, &cli.insecure, args) {
            Ok(c) => c,
            Err(run::Failed(e)) => {
                eprintln!("berth: {e}");
                125
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
        Command::Inspect { image } => images::inspect(config, &image),
        Command::Mount { image, dir, target } => images::mount(config, &image, &dir, &target),
        Command::Run(_) => unreachable!("handled in main"),
    }
}
