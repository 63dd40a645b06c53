//! The daemon half of the shim: start the container through the runtime, then
//! watch it until it exits.

use crate::attach;
use crate::cri_log::{LogWriter, Stream};
use crate::options::Options;
use crate::sys;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs in the forked daemon; returns its exit code.
pub fn daemon(opts: Options, report: OwnedFd) -> i32 {
    // SAFETY: plain calls: a new session away from the starter's terminal, and
    // orphans of the container (its init first of all) become our children.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let sigfd = match block_sigchld() {
        Ok(fd) => fd,
        Err(e) => return fail(&report, &format!("signalfd: {e}")),
    };
    let mut m = match setup(&opts, sigfd) {
        Ok(m) => m,
        Err(e) => return fail(&report, &e),
    };
    let _ = sys::write_all(report.as_raw_fd(), format!("ok {}\n", m.pid).as_bytes());
    drop(report);
    detach_stdio();
    m.run(&opts);
    0
}

fn fail(report: &OwnedFd, msg: &str) -> i32 {
    let _ = sys::write_all(report.as_raw_fd(), format!("error {msg}\n").as_bytes());
    1
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 of /dev/null over stdio.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

fn block_sigchld() -> std::io::Result<OwnedFd> {
    // SAFETY: building and applying a signal mask; signalfd of it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = sys::check(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

struct Monitor {
    pid: i32,
    sigfd: OwnedFd,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// The container's stdin: a pipe, or the pty master.
    stdin: Option<OwnedFd>,
    /// With a terminal, `out` is the pty master and this is a second handle to it.
    master: Option<OwnedFd>,
    log: LogWriter,
    control: OwnedFd,
    attach: OwnedFd,
    clients: Vec<OwnedFd>,
    status: Option<i32>,
}

fn setup(opts: &Options, sigfd: OwnedFd) -> Result<Monitor, String> {
    let dir = &opts.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for f in ["exit", "pid"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    std::fs::write(dir.join("shim.pid"), std::process::id().to_string())
        .map_err(|e| format!("writing shim.pid: {e}"))?;
    let log = if opts.raw_output {
        LogWriter::raw(dir).map_err(|e| format!("opening output files: {e}"))?
    } else {
        LogWriter::open(opts.log_path.clone())
            .map_err(|e| format!("opening log {:?}: {e}", opts.log_path))?
    };
    let control = sys::listen(&dir.join("control.sock"), libc::SOCK_STREAM)
        .map_err(|e| format!("control socket: {e}"))?;
    let attach = sys::listen(&dir.join("attach.sock"), libc::SOCK_SEQPACKET)
        .map_err(|e| format!("attach socket: {e}"))?;
    let console = if opts.terminal {
        Some(
            sys::listen(&dir.join("console.sock"), libc::SOCK_STREAM)
                .map_err(|e| format!("console socket: {e}"))?,
        )
    } else {
        None
    };

    let mut cmd = Command::new(&opts.runtime);
    if let Some(r) = &opts.runtime_root {
        cmd.arg("--root").arg(r);
    }
    cmd.arg("--log")
        .arg(dir.join("runtime.log"))
        .args(["--log-format", "json"]);
    match &opts.exec_process {
        Some(p) => cmd.args(["exec", "--detach", "--process"]).arg(p),
        None => cmd.args(["create", "--bundle"]).arg(&opts.bundle),
    };
    cmd.arg("--pid-file").arg(dir.join("pid"));
    if console.is_some() {
        cmd.arg("--console-socket").arg(dir.join("console.sock"));
    }
    cmd.arg(&opts.id);

    let (mut out_r, mut err_r, mut stdin_w) = (None, None, None);
    if console.is_none() {
        let (or, ow) = sys::pipe().map_err(|e| e.to_string())?;
        let (er, ew) = sys::pipe().map_err(|e| e.to_string())?;
        cmd.stdout(Stdio::from(ow)).stderr(Stdio::from(ew));
        if opts.stdin {
            let (ir, iw) = sys::pipe().map_err(|e| e.to_string())?;
            cmd.stdin(Stdio::from(ir));
            stdin_w = Some(iw);
        } else {
            cmd.stdin(Stdio::null());
        }
        out_r = Some(or);
        err_r = Some(er);
    } else {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running {}: {e}", opts.runtime.display()))?;
    // Our copies of the container's ends go with `cmd`.
    drop(cmd);
    let mut master = None;
    if let Some(listener) = &console {
        // The runtime connects while it creates; it may also fail before that.
        loop {
            if let Some(conn) = sys::accept(listener) {
                master = Some(sys::recv_fd(&conn).map_err(|e| e.to_string())?);
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            let mut p = libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 20) };
        }
        let _ = std::fs::remove_file(dir.join("console.sock"));
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the runtime: {e}"))?;
    if !status.success() {
        return Err(runtime_error(dir).unwrap_or_else(|| format!("the runtime failed ({status})")));
    }
    let pid: i32 = std::fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or("the runtime wrote no pid file")?;
    if let Some(m) = &master {
        // A second handle to the master: stdin goes in through it.
        stdin_w = m.try_clone().ok();
    }
    for fd in out_r.iter().chain(err_r.iter()).chain(master.iter()) {
        sys::set_nonblocking(fd);
    }
    let (out, master_handle) = match master {
        Some(m) => {
            // Another handle to the master, for resize requests.
            let resize = m.try_clone().ok();
            (Some(m), resize)
        }
        None => (out_r, None),
    };
    Ok(Monitor {
        pid,
        sigfd,
        out,
        err: err_r,
        stdin: stdin_w,
        master: master_handle,
        log,
        control,
        attach,
        clients: Vec::new(),
        status: None,
    })
}

/// The runtime's error message, from its JSON log.
fn runtime_error(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("runtime.log")).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("\"level\":\"error\""))?;
    let start = line.find("\"msg\":\"")? + 7;
    let rest = &line[start..];
    let end = rest.find("\",\"")?;
    Some(rest[..end].replace("\\\"", "\""))
}

impl Monitor {
    fn run(&mut self, opts: &Options) {
        let mut buf = vec![0u8; attach::MAX_MESSAGE];
        let mut exited_at: Option<Instant> = None;
        // With --attach-first the output waits in its pipe (or the pty) for the
        // first client; the drain deadline after the exit is a minute then.
        let mut attached = !opts.attach_first;
        loop {
            attached |= !self.clients.is_empty();
            let done_streams = self.out.is_none() && self.err.is_none();
            let drain = if attached {
                Duration::from_secs(2)
            } else {
                Duration::from_secs(60)
            };
            if self.status.is_some()
                && (done_streams || exited_at.is_some_and(|t| t.elapsed() > drain))
            {
                break;
            }
            let output = |f: &Option<OwnedFd>| match f {
                Some(f) if attached => pfd(f),
                _ => skip(),
            };
            let mut fds = vec![
                pfd(&self.sigfd),
                pfd(&self.control),
                pfd(&self.attach),
                output(&self.out),
                output(&self.err),
            ];
            fds.extend(self.clients.iter().map(pfd));
            // SAFETY: a valid array of pollfds.
            let n = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    if self.status.is_some() { 100 } else { -1 },
                )
            };
            if n <= 0 {
                continue;
            }
            if ready(&fds[0]) {
                self.reap();
                if self.status.is_some() && exited_at.is_none() {
                    exited_at = Some(Instant::now());
                }
            }
            if ready(&fds[1])
                && let Some(conn) = sys::accept(&self.control)
            {
                self.control_request(&conn);
            }
            if ready(&fds[2])
                && let Some(c) = sys::accept(&self.attach)
            {
                self.clients.push(c);
            }
            if ready(&fds[3]) {
                self.pump(Stream::Stdout, &mut buf);
            }
            if ready(&fds[4]) {
                self.pump(Stream::Stderr, &mut buf);
            }
            let mut gone = Vec::new();
            for (i, f) in fds[5..].iter().enumerate() {
                if ready(f) && !self.client_message(i, &mut buf) {
                    gone.push(i);
                }
            }
            for i in gone.into_iter().rev() {
                self.clients.remove(i);
                if opts.stdin_once {
                    // The first client to leave takes the container's stdin with it.
                    self.stdin = None;
                }
            }
        }
        let _ = self.log.finish(Stream::Stdout);
        let _ = self.log.finish(Stream::Stderr);
        let oom = opts.exec_process.is_none() && oom_killed(opts);
        let _ = crate::exit::write(
            &opts.state_dir,
            self.pid,
            self.status.unwrap_or(255 << 8),
            oom,
        );
        for s in ["control.sock", "attach.sock"] {
            let _ = std::fs::remove_file(opts.state_dir.join(s));
        }
        if let Some(cmd) = &opts.exit_command {
            // Not waited for: it may remove this shim's own directory.
            let _ = Command::new(cmd)
                .args(&opts.exit_command_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
        }
    }

    fn reap(&mut self) {
        let mut info = [0u8; 128];
        while sys::read(self.sigfd.as_raw_fd(), &mut info).is_ok_and(|n| n > 0) {}
        loop {
            let mut st = 0;
            // SAFETY: reaping any child: the container and orphans we inherited.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == self.pid {
                self.status = Some(st);
            }
        }
    }

    /// Copies what the container wrote to the log and to attach clients.
    fn pump(&mut self, stream: Stream, buf: &mut [u8]) {
        let fd = match stream {
            Stream::Stdout => &self.out,
            Stream::Stderr => &self.err,
        };
        let Some(f) = fd else { return };
        buf[0] = if stream == Stream::Stdout {
            attach::STDOUT
        } else {
            attach::STDERR
        };
        match sys::read(f.as_raw_fd(), &mut buf[1..]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // End of file, or EIO from a pty whose last slave closed.
            Ok(0) | Err(_) => {
                match stream {
                    Stream::Stdout => self.out = None,
                    Stream::Stderr => self.err = None,
                }
                let _ = self.log.finish(stream);
            }
            Ok(n) => {
                let _ = self.log.feed(stream, &buf[1..1 + n]);
                self.clients.retain(|c| {
                    // SAFETY: sending one message; a slow or gone client is dropped.
                    unsafe {
                        libc::send(
                            c.as_raw_fd(),
                            buf.as_ptr().cast(),
                            n + 1,
                            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                        ) >= 0
                    }
                });
            }
        }
    }

    /// One message from attach client `i`; false when the client left.
    fn client_message(&mut self, i: usize, buf: &mut [u8]) -> bool {
        // SAFETY: receiving into a valid buffer.
        let n = unsafe {
            libc::recv(
                self.clients[i].as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            return n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock;
        }
        let msg = &buf[..n as usize];
        match msg[0] {
            attach::STDIN => {
                if let Some(s) = &self.stdin {
                    let _ = sys::write_all(s.as_raw_fd(), &msg[1..]);
                }
            }
            attach::RESIZE if msg.len() >= 5 => {
                if let Some(m) = &self.master {
                    let ws = libc::winsize {
                        ws_row: u16::from_be_bytes([msg[1], msg[2]]),
                        ws_col: u16::from_be_bytes([msg[3], msg[4]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ with a valid winsize on the pty master.
                    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            attach::CLOSE_STDIN => {
                // With a terminal, end-of-input is Ctrl-D on the line discipline.
                if let (Some(s), true) = (&self.stdin, self.master.is_some()) {
                    let _ = sys::write_all(s.as_raw_fd(), b"\x04");
                }
                self.stdin = None;
            }
            _ => {}
        }
        true
    }

    /// A control request: one line in, one line out.
    fn control_request(&mut self, conn: &OwnedFd) {
        // A request is one line; a client may write it in pieces, and gets a
        // second in all to finish it.
        let mut line = [0u8; 256];
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(1);
        while n < line.len() && !line[..n].contains(&b'\n') {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as i32;
            let mut p = libc::pollfd {
                fd: conn.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if left <= 0 || unsafe { libc::poll(&mut p, 1, left) } <= 0 {
                break;
            }
            match sys::read(conn.as_raw_fd(), &mut line[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        let req = String::from_utf8_lossy(&line[..n]);
        let mut words = req.split_whitespace();
        let reply = match (words.next(), words.next()) {
            (Some("reopen"), _) => match self.log.reopen() {
                Ok(()) => "ok\n".to_string(),
                Err(e) => format!("error reopening the log: {e}\n"),
            },
            (Some("signal"), Some(sig)) => match sig.parse::<i32>() {
                Ok(s) if self.status.is_none() => {
                    // SAFETY: signalling the container's init, which is our child.
                    if unsafe { libc::kill(self.pid, s) } == 0 {
                        "ok\n".into()
                    } else {
                        format!("error {}\n", std::io::Error::last_os_error())
                    }
                }
                Ok(_) => "error the container has exited\n".into(),
                Err(_) => format!("error bad signal {sig:?}\n"),
            },
            (Some("ping"), _) => format!("ok {}\n", self.pid),
            _ => format!("error unknown request {:?}\n", req.trim()),
        };
        let _ = sys::write_all(conn.as_raw_fd(), reply.as_bytes());
    }
}

fn pfd(f: &OwnedFd) -> libc::pollfd {
    libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

fn skip() -> libc::pollfd {
    libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }
}

fn ready(p: &libc::pollfd) -> bool {
    p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Whether the OOM killer acted in the container's cgroup, from the runtime.
fn oom_killed(opts: &Options) -> bool {
    let mut cmd = Command::new(&opts.runtime);
    if let Some(r) = &opts.runtime_root {
        cmd.arg("--root").arg(r);
    }
    let Ok(out) = cmd
        .args(["events", "--stats", &opts.id])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("\"oom_kills\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}
