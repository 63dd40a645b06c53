//! berth-shim: one small monitor process per container (like conmon).
//!
//! It detaches from its starter (new session, child subreaper), runs
//! `berth-runtime create` (or `exec`) with the container's stdio on pipes, or on a
//! pty received over a console socket, and tells its starter the container's pid
//! or the runtime's error. Then, single-threaded around poll(2), it writes the
//! output in the CRI log format (`cri_log`), serves `control.sock` (reopen the log,
//! signal the container) and `attach.sock` (`attach`), reaps the container and
//! records its exit atomically (`exit`). It outlives its starter, so `berthd` can
//! restart without touching running containers.

mod attach;
mod exit;
mod monitor;
mod options;
mod sys;

use berth_shim::cri_log;

use std::os::fd::AsRawFd;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if matches!(args.peek().map(String::as_str), Some("--version")) {
        println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let opts = match options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            std::process::exit(2);
        }
    };
    let (rd, wr) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth-shim: pipe: {e}");
            std::process::exit(1);
        }
    };
    // SAFETY: fork of a single-threaded process.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("berth-shim: fork: {}", std::io::Error::last_os_error());
            std::process::exit(1);
        }
        0 => {
            drop(rd);
            std::process::exit(monitor::daemon(opts, wr));
        }
        _ => {
            // The starter: wait for the daemon's word, print it, leave.
            drop(wr);
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while let Ok(n) = sys::read(rd.as_raw_fd(), &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&got);
            match text.strip_prefix("ok ") {
                Some(pid) => println!("{}", pid.trim()),
                None => {
                    eprintln!(
                        "berth-shim: {}",
                        text.trim()
                            .strip_prefix("error ")
                            .unwrap_or("the shim exited during setup")
                    );
                    std::process::exit(1);
                }
            }
        }
    }
}
