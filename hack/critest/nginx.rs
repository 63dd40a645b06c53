//! Stands in for nginx in critest's nginx image: a process named `nginx` (its
//! file name) whose command line reads "nginx: master process ...", which writes
//! its pid to /var/run/nginx.pid and serves /www on port 80 through busybox
//! httpd, its child. critest looks for exactly these three things.

use std::os::unix::process::CommandExt;
use std::process::Command;

const TITLE: &str = "nginx: master process nginx -g daemon off;";
const SELF: &str = "/usr/sbin/nginx";

fn main() {
    if std::env::args().next().as_deref() != Some(TITLE) {
        // Again, under the title nginx gives its master process.
        let err = Command::new(SELF).arg0(TITLE).exec();
        eprintln!("nginx: re-exec of {SELF}: {err}");
        std::process::exit(1);
    }
    if let Err(e) = std::fs::write("/var/run/nginx.pid", format!("{}\n", std::process::id())) {
        eprintln!("nginx: writing /var/run/nginx.pid: {e}");
    }
    eprintln!("nginx: serving /www on port 80");
    let status = Command::new("httpd").args(["-f", "-p", "80", "-h", "/www"]).status();
    eprintln!("nginx: httpd ended: {status:?}");
}
