//! berth-shim: one small monitor process per container (like conmon).
//!
//! Its issue grows it into: detach and subreap, run `berth-runtime create` with
//! the container's stdio on pipes or a pty, write CRI-format logs, record the exit
//! atomically, and serve attach and exec. It stays single-threaded and allocation
//! free on the copy path because one runs per container.

mod cri_log;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--version") | Some("version") => {
            println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
        }
        _ => {
            eprintln!("berth-shim: the container monitor is not built yet (see the shim issue)");
            std::process::exit(2);
        }
    }
}
