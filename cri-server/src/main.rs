//! berthd: serves the CRI on a unix socket for kubelet, crictl and critest.

use berth_cri::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "berthd", version, about = "The berth CRI server")]
struct Cli {
    /// Configuration file.
    #[arg(long, default_value = "/etc/berth/berth.toml")]
    config: PathBuf,
    /// The CRI socket (overrides the config file).
    #[arg(long)]
    listen: Option<PathBuf>,
    /// Durable state directory (overrides the config file).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Volatile state directory (overrides the config file).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// List the crash points of a debug build (`BERTH_CRASH_AT=<point>`), for the fault tests.
    CrashPoints,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default value (TOML).
    Default,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Config {
            what: ConfigCommand::Default,
        }) => {
            print!("{}", Config::default().to_toml());
            return;
        }
        Some(Command::CrashPoints) => {
            if !berth_image::crash::ENABLED {
                eprintln!("berthd: this is a release build: it has no crash points");
                std::process::exit(1);
            }
            for (point, call) in berth_image::crash::POINTS {
                println!("{point}\t{call}");
            }
            return;
        }
        None => {}
    }
    let explicit = cli.config != std::path::Path::new("/etc/berth/berth.toml");
    let mut config = match Config::load(&cli.config, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}");
            std::process::exit(2);
        }
    };
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    if let Some(r) = cli.root {
        config.root = r;
    }
    if let Some(s) = cli.state {
        config.state = s;
    }
    if let Some(l) = cli.log_level {
        config.log_level = l;
    }
    if let Err(e) = config.check() {
        eprintln!("berthd: {e}");
        std::process::exit(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_level))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(berth_cri::server::serve(config)) {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}
