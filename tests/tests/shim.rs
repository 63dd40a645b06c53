//! berth-shim end to end: a real container under the shim, checked through its
//! log file, exit file, control socket and attach socket.

use berth_tests::{Bundle, bin};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A container run under berth-shim; force-deleted (and its shim gone) on drop.
struct Shimmed {
    bundle: Bundle,
    dir: tempfile::TempDir,
    id: String,
}

impl Shimmed {
    fn new(name: &str, args: &[&str]) -> Shimmed {
        let bundle = Bundle::new("busybox", args);
        let dir = tempfile::Builder::new()
            .prefix("berth-shim-")
            .tempdir_in("/run")
            .unwrap();
        Shimmed {
            bundle,
            dir,
            id: format!("{name}-{}", std::process::id()),
        }
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("logs/c.log")
    }
    fn runtime(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(bin("berth-runtime"))
            .arg("--root")
            .arg(self.dir.path().join("rt"))
            .args(args)
            .output()
            .unwrap()
    }
    /// Starts the shim (which creates the container); returns the starter's output.
    fn shim(&self, extra: &[&str]) -> std::process::Output {
        self.bundle.write();
        std::process::Command::new(bin("berth-shim"))
            .args([
                "--id",
                &self.id,
                "--bundle",
                self.bundle.path().to_str().unwrap(),
            ])
            .arg("--state-dir")
            .arg(self.state())
            .arg("--runtime")
            .arg(bin("berth-runtime"))
            .arg("--runtime-root")
            .arg(self.dir.path().join("rt"))
            .arg("--log-path")
            .arg(self.log())
            .args(extra)
            .output()
            .unwrap()
    }
    fn start(&self, extra: &[&str]) -> i32 {
        let out = self.shim(extra);
        assert!(
            out.status.success(),
            "shim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let o = self.runtime(&["start", &self.id]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        pid
    }
    fn exit(&self) -> serde_json::Value {
        wait_exit(&self.state(), &self.log())
    }
    fn control(&self, req: &str) -> String {
        use std::io::{Read, Write};
        let mut s =
            std::os::unix::net::UnixStream::connect(self.state().join("control.sock")).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
    fn records(&self) -> Vec<(String, String, String)> {
        records(&self.log())
    }
}

impl Drop for Shimmed {
    fn drop(&mut self) {
        let _ = self.runtime(&["delete", "--force", &self.id]);
        if let Ok(p) = std::fs::read_to_string(self.state().join("shim.pid"))
            && let Ok(pid) = p.trim().parse::<i32>()
        {
            // SAFETY: stopping the shim this test started, if it is still there.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Waits for the shim's exit file in `state` and returns it.
fn wait_exit(state: &Path, log: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(d) = std::fs::read(state.join("exit")) {
            return serde_json::from_slice(&d).unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "no exit file; log: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn records(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut p = l.splitn(4, ' ');
            let ts = p.next().unwrap();
            let b = ts.as_bytes();
            assert!(
                ts.len() == 30 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[29] == b'Z',
                "RFC3339Nano: {ts}"
            );
            (
                p.next().unwrap().to_string(),
                p.next().unwrap().to_string(),
                p.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A SOCK_SEQPACKET client of the attach socket.
fn attach(state: &Path) -> OwnedFd {
    // SAFETY: socket/connect with a filled sockaddr_un.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let p = state.join("attach.sock");
        for (i, b) in p.to_str().unwrap().bytes().enumerate() {
            addr.sun_path[i] = b as libc::c_char;
        }
        let r = libc::connect(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        );
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(fd)
    }
}

fn send(c: &OwnedFd, msg: &[u8]) {
    // SAFETY: sending a valid buffer.
    assert!(unsafe { libc::send(c.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } >= 0);
}

/// Reads attach messages until the stdout text contains `want`.
fn read_until(c: &OwnedFd, want: &str) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains(want) {
        assert!(Instant::now() < deadline, "never saw {want:?} in {text:?}");
        let mut p = libc::pollfd {
            fd: c.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; then a receive into a valid buffer.
        if unsafe { libc::poll(&mut p, 1, 100) } <= 0 {
            continue;
        }
        let n = unsafe { libc::recv(c.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            break;
        }
        if buf[0] == 1 {
            text.push_str(&String::from_utf8_lossy(&buf[1..n as usize]));
        }
    }
    text
}

#[test]
fn log_format_is_exact_and_exit_is_recorded() {
    let c = Shimmed::new(
        "shimlog",
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; head -c 40000 /dev/zero | tr '\\0' a; echo; printf 'no newline'; exit 3",
        ],
    );
    c.start(&[]);
    let exit = c.exit();
    assert_eq!(exit["exit_code"], 3);
    assert_eq!(exit["oom_killed"], false);
    let r = c.records();
    let out: Vec<(&str, usize)> = r
        .iter()
        .filter(|x| x.0 == "stdout")
        .map(|x| (x.1.as_str(), x.2.len()))
        .collect();
    assert_eq!(
        out,
        vec![
            ("F", 3),
            ("P", 16384),
            ("P", 16384),
            ("F", 40000 - 32768),
            ("F", 10)
        ]
    );
    assert!(
        r.iter()
            .any(|x| x.0 == "stderr" && x.1 == "F" && x.2 == "err")
    );
    assert_eq!(r.last().unwrap().2, "no newline");
}

#[test]
fn exit_codes_signals_and_oom() {
    let ok = Shimmed::new("shim0", &["true"]);
    ok.start(&[]);
    assert_eq!(ok.exit()["exit_code"], 0);
    let fail = Shimmed::new("shim1", &["false"]);
    fail.start(&[]);
    assert_eq!(fail.exit()["exit_code"], 1);
    let killed = Shimmed::new("shim137", &["sleep", "60"]);
    killed.start(&[]);
    assert_eq!(killed.control("signal 9\n"), "ok\n");
    let e = killed.exit();
    assert_eq!(
        (e["exit_code"].as_i64(), e["signal"].as_i64()),
        (Some(137), Some(9))
    );
    let mut oom = Shimmed::new(
        "shimoom",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
    );
    oom.bundle.config["linux"]["resources"]["memory"] = serde_json::json!({"limit": 33554432});
    oom.start(&[]);
    let e = oom.exit();
    assert_eq!(e["exit_code"], 137);
    assert_eq!(e["oom_killed"], true, "{e}");
}

#[test]
fn log_reopen_after_rotation_loses_no_line() {
    let c = Shimmed::new(
        "shimrot",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.02; done",
        ],
    );
    c.start(&[]);
    std::thread::sleep(Duration::from_millis(300));
    let rotated = c.log().with_extension("log.1");
    std::fs::rename(c.log(), &rotated).unwrap();
    assert_eq!(c.control("reopen\n"), "ok\n");
    c.exit();
    let all: Vec<String> = records(&rotated)
        .into_iter()
        .chain(c.records())
        .map(|r| r.2)
        .collect();
    let want: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
    assert_eq!(all, want, "every line once, in order, across both files");
    assert!(
        !c.records().is_empty(),
        "lines after the reopen went to the new file"
    );
}

#[test]
fn stdin_through_attach_and_stdin_once() {
    let c = Shimmed::new(
        "shimstdin",
        &["sh", "-c", "while read l; do echo got $l; done; echo eof"],
    );
    c.start(&["--stdin", "--stdin-once"]);
    let a = attach(&c.state());
    send(&a, b"\x00hello\n");
    let seen = read_until(&a, "got hello");
    assert!(seen.contains("got hello"));
    drop(a); // stdin-once: the first client leaving closes the container's stdin
    assert_eq!(c.exit()["exit_code"], 0);
    let lines: Vec<String> = c.records().into_iter().map(|r| r.2).collect();
    assert_eq!(lines, ["got hello", "eof"]);
}

#[test]
fn terminal_with_resize_and_two_attach_clients() {
    let mut c = Shimmed::new("shimtty", &["sh"]);
    c.bundle.config["process"]["terminal"] = true.into();
    c.start(&["--terminal", "--stdin"]);
    let a = attach(&c.state());
    let b = attach(&c.state());
    send(&a, &[3, 0, 40, 0, 100]);
    send(&a, b"\x00stty size; tty\n");
    let seen_a = read_until(&a, "40 100");
    let seen_b = read_until(&b, "40 100");
    assert!(seen_a.contains("/dev/pts/0") || read_until(&a, "/dev/pts/0").contains("/dev/pts/0"));
    assert!(seen_b.contains("40 100"), "both clients see the output");
    send(&b, b"\x00exit 4\n");
    assert_eq!(c.exit()["exit_code"], 4);
    assert!(
        c.records().iter().all(|r| r.0 == "stdout"),
        "a terminal has one stream"
    );
}

#[test]
fn shim_outlives_its_starter_and_reports_runtime_errors() {
    let c = Shimmed::new("shimdetach", &["sleep", "30"]);
    let pid = c.start(&[]);
    let shim: i32 = std::fs::read_to_string(c.state().join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_ne!(
        fields[1].parse::<u32>().unwrap(),
        std::process::id(),
        "the starter is not its parent"
    );
    assert_eq!(fields[3], fields[2], "it leads its own session");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ppid: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        ppid, shim,
        "the container's init is the shim's child (subreaper)"
    );
    assert_eq!(c.control("ping\n"), format!("ok {pid}\n"));
    {
        // A request written in pieces is still one request.
        use std::io::{Read, Write};
        let mut s =
            std::os::unix::net::UnixStream::connect(c.state().join("control.sock")).unwrap();
        s.write_all(b"pi").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        s.write_all(b"ng\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, format!("ok {pid}\n"));
    }

    let bad = Shimmed::new("shimbad", &["/no/such/program"]);
    let out = bad.shim(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/no/such/program"),
        "the runtime's error reaches the starter: {err}"
    );
}

#[test]
fn exec_through_a_shim_of_its_own() {
    let c = Shimmed::new("shimexecbase", &["sleep", "60"]);
    c.start(&[]);
    let exec_state = c.dir.path().join("exec-state");
    let process = c.dir.path().join("process.json");
    let p = serde_json::json!({"args": ["sh", "-c", "echo from exec; echo oops >&2; exit 6"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin:/usr/bin"]});
    std::fs::write(&process, p.to_string()).unwrap();
    let log = c.dir.path().join("logs/exec.log");
    let out = std::process::Command::new(bin("berth-shim"))
        .args(["--id", &c.id, "--exec-process", process.to_str().unwrap()])
        .arg("--state-dir")
        .arg(&exec_state)
        .arg("--runtime")
        .arg(bin("berth-runtime"))
        .arg("--runtime-root")
        .arg(c.dir.path().join("rt"))
        .arg("--log-path")
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exit = wait_exit(&exec_state, &log);
    assert_eq!(exit["exit_code"], 6);
    let r = records(&log);
    assert!(
        r.iter().any(|x| x.0 == "stdout" && x.2 == "from exec"),
        "{r:?}"
    );
    assert!(r.iter().any(|x| x.0 == "stderr" && x.2 == "oops"), "{r:?}");
    // The container itself is untouched.
    assert!(c.control("ping\n").starts_with("ok "));
}
