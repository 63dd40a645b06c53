//! `berth run` in the foreground: image to exit code, with no daemon.

use berth_tests::{berth, registry_addr, require_root};
use std::path::Path;

#[test]
fn run_prints_exits_with_the_code_and_rm_leaves_nothing() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/busybox:latest", registry_addr());
    let out = berth(
        root.path(),
        &[
            "run",
            "--rm",
            "--name",
            "berth-run-test",
            &image,
            "sh",
            "-c",
            "echo hello from berth; hostname; exit 3",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The hostname is the short ID, as docker's and podman's.
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (hello, host) = stdout.split_once('\n').unwrap();
    assert_eq!(hello, "hello from berth");
    let short_id = host.trim();
    assert!(
        short_id.len() == 12 && short_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("cli/containers"))
            .unwrap()
            .count(),
        0,
        "--rm removes the container"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.path().to_str().unwrap()),
        "no mount left"
    );
    for h in ["pids", "memory", ""] {
        let left = std::fs::read_dir(Path::new("/sys/fs/cgroup").join(h).join("berth"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(short_id));
        assert!(!left, "no cgroup left in {h}");
    }
}

#[test]
fn flags_override_the_image_config() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/user-name:latest", registry_addr());
    let out = berth(
        root.path(),
        &[
            "run",
            "--rm",
            "-u",
            "1000:1000",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "--read-only",
            &image,
            "sh",
            "-c",
            "id -u; echo $FOO; pwd; touch /x 2>&1; true",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("1000\nbar\n/tmp\n"), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
}

#[test]
fn a_command_not_found_is_127_and_one_not_executable_is_126() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/busybox:latest", registry_addr());
    for (cmd, code, says) in [
        ("nosuchcmd", 127, "not found in $PATH"),
        ("/no/such/path", 127, "no such file"),
        ("/etc/passwd", 126, "permission denied"),
        ("/etc", 126, "permission denied"),
    ] {
        let out = berth(
            root.path(),
            &["run", "--rm", "--network", "none", &image, cmd],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {err}");
        assert!(err.contains(says) && err.contains(cmd), "{cmd}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(root.path().join("cli/containers"))
            .unwrap()
            .count(),
        0,
        "a command that cannot run leaves no container behind"
    );
}

#[test]
fn missing_image_with_pull_never_is_exit_125() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let out = berth(
        root.path(),
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            &format!("{}/library/busybox:latest", registry_addr()),
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--pull never") && err.lines().count() == 1,
        "{err}"
    );
}

/// A detached container driven as a person would: logs, exec, stop, rm; a
/// read-only volume.
#[test]
fn detached_logs_exec_stop_rm_volumes_and_a_terminal() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/busybox:latest", registry_addr());
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("f"), "from the host\n").unwrap();
    let name = format!("bg-{}", std::process::id());
    let b = |args: &[&str]| berth(root.path(), args);
    // Whatever happens, the container goes.
    struct Rm<'a>(&'a Path, String);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            let _ = berth(self.0, &["rm", "-f", &self.1]);
        }
    }
    let _rm = Rm(root.path(), name.clone());
    let volume = format!("{}:/data:ro", vol.path().display());
    let out = b(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &volume,
        &image,
        "sh",
        "-c",
        "cat /data/f; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As docker: -d prints the full ID, whatever the name.
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let ps = String::from_utf8_lossy(&b(&["ps"]).stdout).to_string();
    assert!(
        ps.contains(&name) && ps.contains(&id[..12]) && ps.contains("Up"),
        "ps shows the short ID and the name: {ps}"
    );
    // A unique prefix of the ID finds it too.
    let inspect = String::from_utf8_lossy(&b(&["inspect", &id[..8]]).stdout).to_string();
    assert!(inspect.contains(&name), "{inspect}");
    let taken = b(&["run", "-d", "--name", &name, &image, "true"]);
    assert_eq!(taken.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("already in use"),
        "a name is taken once"
    );
    let logs = String::from_utf8_lossy(&b(&["logs", &name]).stdout).to_string();
    assert!(logs.starts_with("from the host\ntick 0\n"), "{logs}");
    let out = b(&["exec", &name, "sh", "-c", "echo in exec; touch /data/x"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in exec\n");
    assert_ne!(out.status.code(), Some(0), ":ro is enforced");
    assert!(b(&["stop", "-t", "1", &name]).status.success());
    let ps = String::from_utf8_lossy(&b(&["ps", "-a"]).stdout).to_string();
    assert!(
        ps.contains("Exited (137)"),
        "sh ignores SIGTERM as pid 1, so SIGKILL: {ps}"
    );
    assert!(b(&["rm", &name]).status.success());
    assert!(!String::from_utf8_lossy(&b(&["ps", "-a"]).stdout).contains(&name));

    // -d --rm: the shim removes the container once it has exited.
    let gone = format!("gone-{}", std::process::id());
    let out = b(&["run", "-d", "--rm", "--name", &gone, &image, "true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = root.path().join("cli/containers").join(&gone_id);
    for _ in 0..100 {
        if !dir.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!dir.exists(), "-d --rm removed the container");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir.to_str().unwrap()));
}

/// `run -it` driven through a pty as a person would: the shell answers, sees the
/// terminal's size and its change, and `exit 3` makes berth exit 3.
#[test]
fn an_interactive_shell_answers_resizes_and_exits_with_its_code() {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    require_root();
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/busybox:latest", registry_addr());
    let (mut master, mut slave) = (0, 0);
    let mut ws = libc::winsize {
        ws_row: 40,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty with valid out pointers and a valid winsize.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: fresh fds of ours.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = std::process::Command::new(berth_tests::bin("berth"));
    cmd.arg("--root").arg(root.path());
    cmd.args(["run", "--rm", "-it", "--network", "none", &image, "sh"]);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    // SAFETY: setsid and taking the pty as controlling terminal, in the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut term = std::fs::File::from(master);
    let fd = term.as_raw_fd();
    let mut seen = String::new();
    let mut read_until = |term: &mut std::fs::File, want: &str| {
        let mut buf = [0u8; 4096];
        for _ in 0..200 {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut p, 1, 50) } > 0 {
                match term.read(&mut buf) {
                    Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                    _ => break,
                }
            }
            if seen.contains(want) {
                return;
            }
        }
        panic!("no {want:?} in {seen:?}");
    };
    // Quotes split the word so the echoed command line cannot match the answer.
    term.write_all(b"echo answ''ered; stty size\n").unwrap();
    read_until(&mut term, "answered\r\n40 100");
    ws.ws_row = 50;
    ws.ws_col = 120;
    // SAFETY: resizing the terminal berth runs on; the kernel sends SIGWINCH.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    term.write_all(b"stty size; exit 3\n").unwrap();
    read_until(&mut term, "50 120");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{seen}");
}

/// Bridge networking (the default) with -p: the web server answers on the host's
/// 127.0.0.1, and rm releases the port and the network namespace.
#[test]
fn publish_reaches_a_web_server_from_the_host() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/httpd:latest", registry_addr());
    let name = format!("web-{}", std::process::id());
    let port = 18600 + (std::process::id() % 300) as u16;
    struct Rm<'a>(&'a Path, String);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            let _ = berth(self.0, &["rm", "-f", &self.1]);
        }
    }
    let _rm = Rm(root.path(), name.clone());
    let publish = format!("{port}:80");
    let out = berth(
        root.path(),
        &["run", "-d", "--name", &name, "-p", &publish, &image],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let mut page = None;
    for _ in 0..50 {
        page = get().filter(|b| b.contains("hello from berth httpd"));
        if page.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(page.is_some(), "the published port answers");
    assert!(berth(root.path(), &["rm", "-f", &name]).status.success());
    assert!(get().is_none(), "the port is released");
    assert!(!Path::new("/run/berth/cli/netns").join(&name).exists());
}
