//! berth: the command a person types on a node or a laptop.
//!
//! The image and run issues add `pull`, `images`, `rmi`, `inspect`, `run`, `ps`,
//! `logs`, `exec`, `stop` and `rm`, each using the image store, the shim and the
//! runtime directly, with no daemon.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Run containers with berth, no daemon needed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print berth's version.
    Version,
    /// Parse an image reference and print its normalised form.
    Normalize {
        /// An image reference such as `busybox` or `localhost:5000/library/busybox:latest`.
        image: String,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("berth {}", env!("CARGO_PKG_VERSION")),
        Command::Normalize { image } => match berth_image::Reference::parse(&image) {
            Ok(r) => println!("{r}"),
            Err(e) => {
                eprintln!("berth: {e}");
                std::process::exit(125);
            }
        },
    }
}
