//! berth-runtime exec, update, events, terminals and the other process options.

use berth_tests::{Bundle, Runtime, cgroup_dir, recv_fd};
use serde_json::json;
use std::io::{Read, Write};

/// A detached `sleep` container; returns its bundle, id and init pid.
fn sleeper(rt: &Runtime, name: &str) -> (Bundle, String, i64) {
    let b = Bundle::new("busybox", &["sleep", "120"]);
    let id = rt.run_detached(&b, name);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    (b, id, pid)
}

#[test]
fn exec_joins_namespaces_and_cgroup() {
    let rt = Runtime::new();
    let (_b, id, pid) = sleeper(&rt, "exec");
    let out = rt.exec(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for n in pid mnt net; do readlink /proc/self/ns/$n; done; cat /proc/1/comm; exit 4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for (i, ns) in ["pid", "mnt", "net"].iter().enumerate() {
        let host_view = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_eq!(lines[i], host_view.to_str().unwrap(), "{ns} namespace");
    }
    assert_eq!(lines[3], "sleep");

    // The exec'd process is in the container's cgroup: count it there while it runs.
    let out = rt.exec(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.current 2>/dev/null || cat /sys/fs/cgroup/pids.current",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "3",
        "sleep, sh and cat"
    );

    let out = rt.exec(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "X=y",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "id -u; id -g; echo $X; pwd",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1000\n1000\ny\n/tmp\n"
    );

    let out = rt.exec(&["exec", &id, "/no/such/binary"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/no/such/binary") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn exec_detached_with_pid_file_and_process_json() {
    let rt = Runtime::new();
    let (b, id, _) = sleeper(&rt, "execd");
    let process = json!({"args": ["sleep", "77"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]});
    let pfile = b.path().join("process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let pid_file = b.path().join("exec.pid");
    let (ok, err) = rt.detached(&[
        "exec",
        "--detach",
        "--process",
        pfile.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert!(ok, "{err}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\u{0}77\u{0}");
    let ps: Vec<i64> =
        serde_json::from_slice(&rt.exec(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&(pid as i64)), "{ps:?}");
}

#[test]
fn exec_into_a_stopped_container_is_refused() {
    let rt = Runtime::new();
    let (_b, id, _) = sleeper(&rt, "execstopped");
    assert!(rt.exec(&["kill", &id, "KILL"]).status.success());
    rt.wait_status(&id, "stopped");
    let out = rt.exec(&["exec", &id, "true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn update_changes_limits_and_events_report_them() {
    let rt = Runtime::new();
    let (_b, id, _) = sleeper(&rt, "update");
    let out = rt.exec(&["update", "--memory", "48m", "--pids-limit", "33", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mem = cgroup_dir("memory", &id);
    let limit_file = if mem.join("memory.limit_in_bytes").exists() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    assert_eq!(
        std::fs::read_to_string(mem.join(limit_file))
            .unwrap()
            .trim(),
        (48u64 << 20).to_string()
    );
    assert_eq!(
        std::fs::read_to_string(cgroup_dir("pids", &id).join("pids.max"))
            .unwrap()
            .trim(),
        "33"
    );

    let out = rt.exec(&["events", "--stats", &id]);
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["data"]["memory"]["limit"], 48u64 << 20);
    assert_eq!(ev["data"]["pids"]["limit"], 33);
    assert_eq!(ev["data"]["pids"]["current"], 1);
    assert!(ev["data"]["memory"]["usage"].as_u64().unwrap() > 0);

    let res = json!({"pids": {"limit": 44}});
    let mut child = rt
        .cmd()
        .args(["update", "--resources", "-", &id])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(res.to_string().as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(cgroup_dir("pids", &id).join("pids.max"))
            .unwrap()
            .trim(),
        "44"
    );
}

#[test]
fn console_socket_receives_a_working_tty() {
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["sh"]);
    b.config["process"]["terminal"] = true.into();
    b.config["process"]["consoleSize"] = json!({"height": 40, "width": 123});
    b.write();
    let sock_path = rt.root.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let id = rt.id("console");
    let args = [
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &id,
    ];
    let (ok, err) = rt.detached(&args);
    assert!(ok, "{err}");
    let (conn, _) = listener.accept().unwrap();
    let master = std::fs::File::from(recv_fd(&conn));
    assert!(rt.exec(&["start", &id]).status.success());
    let mut m = master.try_clone().unwrap();
    m.write_all(b"stty size; tty; echo done-$((40+2))\n")
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("done-42") {
        let n = m.read(&mut buf).unwrap();
        assert!(n > 0, "tty closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("40 123"), "console size applied: {seen}");
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    m.write_all(b"exit 5\n").unwrap();
    rt.wait_status(&id, "stopped");
}

#[test]
fn runc_spec_config_runs_unchanged_with_its_terminal() {
    let rt = Runtime::new();
    let b = Bundle::new("busybox", &["true"]);
    std::fs::remove_file(b.path().join("config.json")).ok();
    let out = std::process::Command::new("runc")
        .arg("spec")
        .current_dir(b.path())
        .output()
        .expect("runc");
    assert!(out.status.success());
    let id = rt.id("runcspec");
    let mut child = rt
        .cmd()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo hello-from-tty $((6*7))\nexit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello-from-tty 42"));
}

#[test]
fn time_namespace_offsets() {
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["cat", "/proc/uptime"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000, "nanosecs": 0}});
    let (code, out, err) = rt.run(&b, "timens");
    assert_eq!(code, 0, "{err}");
    let inside: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let host: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (inside - host - 864000.0).abs() < 60.0,
        "inside {inside}, host {host}"
    );
}

#[test]
fn preserved_fds_reach_the_container() {
    use std::os::unix::process::CommandExt;
    let rt = Runtime::new();
    let b = Bundle::new("busybox", &["sh", "-c", "cat <&3"]);
    b.write();
    std::fs::write(b.path().join("payload"), "through fd 3\n").unwrap();
    let f = std::fs::File::open(b.path().join("payload")).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&f);
    let id = rt.id("preserve");
    let mut cmd = rt.cmd();
    cmd.args([
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    // SAFETY: dup2 into fd 3 in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::dup2(raw, 3);
            // dup2(3, 3) keeps close-on-exec: clear it either way.
            libc::fcntl(3, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through fd 3\n");
}

/// An in-place resize up and down with memory and swap together, as kubelet asks
/// on cgroup v1 (swap equal to the limit): v1 refuses a memory limit above the
/// current memsw limit, so memsw goes first when it grows.
#[test]
fn memory_and_swap_resize_up_and_down_in_place() {
    let rt = Runtime::new();
    let (_b, id, _) = sleeper(&rt, "resize");
    let mem = cgroup_dir("memory", &id);
    if !mem.join("memory.memsw.limit_in_bytes").exists() {
        eprintln!("skipped: no swap accounting (memory.memsw) on this host");
        return;
    }
    for mb in ["64m", "96m", "32m", "128m"] {
        let out = rt.exec(&["update", "--memory", mb, "--memory-swap", mb, &id]);
        assert!(
            out.status.success(),
            "{mb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = (mb.trim_end_matches('m').parse::<u64>().unwrap() << 20).to_string();
        for f in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            let got = std::fs::read_to_string(mem.join(f)).unwrap();
            assert_eq!(got.trim(), want, "{f} after {mb}");
        }
    }
}
