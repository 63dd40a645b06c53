//! berth-runtime end to end: real containers from the busybox test image, facts
//! checked from inside (and from the host where the kernel keeps them).

use berth_tests::{Bundle, Runtime, bin, cgroup_dir};
use serde_json::json;
use std::path::Path;

fn sh(script: &str) -> Bundle {
    Bundle::new("busybox", &["sh", "-c", script])
}

#[test]
fn run_prints_and_propagates_exit_code() {
    let rt = Runtime::new();
    let (code, out, err) = rt.run(&sh("echo hello from berth; exit 7"), "exit");
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(out, "hello from berth\n");
}

#[test]
fn process_is_pid_1_with_hostname_and_env() {
    let rt = Runtime::new();
    let mut b = sh("echo $$; hostname; echo $HOME; echo $FOO");
    b.config["hostname"] = "box-1".into();
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("FOO=bar baz".into());
    let (code, out, err) = rt.run(&b, "pid1");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\nbox-1\n/root\nbar baz\n");
}

#[test]
fn mounts_and_their_flags() {
    let rt = Runtime::new();
    let (code, out, err) = rt.run(
        &sh("cat /proc/self/mountinfo; touch /x 2>&1; true"),
        "mounts",
    );
    assert_eq!(code, 0, "{err}");
    let line = |mp: &str| {
        out.lines()
            .find(|l| l.split(' ').nth(4) == Some(mp))
            .unwrap_or_else(|| panic!("{mp} not mounted:\n{out}"))
            .to_string()
    };
    assert!(
        line("/").split(' ').nth(5).unwrap().starts_with("ro"),
        "readonly root: {}",
        line("/")
    );
    assert!(line("/sys").contains(" ro,"), "{}", line("/sys"));
    assert!(line("/proc").contains(" - proc "), "{}", line("/proc"));
    assert!(
        line("/dev/pts").contains(" - devpts "),
        "{}",
        line("/dev/pts")
    );
    assert!(
        line("/dev/shm").contains("nosuid,nodev,noexec"),
        "{}",
        line("/dev/shm")
    );
    assert!(
        line("/sys/fs/cgroup").contains(" ro,"),
        "{}",
        line("/sys/fs/cgroup")
    );
    assert!(
        out.contains("Read-only file system"),
        "touch / must fail: {out}"
    );
    // The host's root and the old root are gone.
    assert!(
        !out.lines().any(|l| l
            .split(' ')
            .nth(4)
            .is_some_and(|m| m.starts_with("/tmp/berth-bundle"))),
        "{out}"
    );
}

#[test]
fn default_capabilities_and_no_new_privs() {
    let rt = Runtime::new();
    let (code, out, err) = rt.run(
        &sh("grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs)' /proc/self/status"),
        "caps",
    );
    assert_eq!(code, 0, "{err}");
    // CAP_AUDIT_WRITE, CAP_KILL and CAP_NET_BIND_SERVICE only.
    assert!(out.contains("CapEff:\t0000000020000420"), "{out}");
    assert!(out.contains("CapBnd:\t0000000020000420"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn capabilities_the_runtime_lacks_are_clamped() {
    let rt = Runtime::new();
    let mut b = sh("grep CapEff /proc/self/status");
    let all: Vec<String> = caps_all();
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set] = json!(all);
    }
    let (code, out, err) = rt.run(&b, "allcaps");
    assert_eq!(code, 0, "{err}");
    let held = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = held
        .lines()
        .find(|l| l.starts_with("CapBnd"))
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(
        out.trim(),
        format!("CapEff:\t{bnd}"),
        "exactly what the host holds"
    );
}

fn caps_all() -> Vec<String> {
    [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ]
    .iter()
    .map(|c| format!("CAP_{c}"))
    .collect()
}

#[test]
fn masked_and_readonly_paths() {
    let rt = Runtime::new();
    let (code, out, err) = rt.run(
        &sh("wc -c < /proc/timer_list; ls /proc/acpi | wc -l; (echo 3 > /proc/sys/vm/drop_caches) 2>&1; true"),
        "masked",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        std::fs::metadata("/proc/timer_list").is_ok(),
        "the host has /proc/timer_list to mask"
    );
    assert_eq!(
        lines[0].trim(),
        "0",
        "/proc/timer_list reads as /dev/null: {out}"
    );
    assert_eq!(lines[1].trim(), "0", "/proc/acpi is an empty tmpfs: {out}");
    assert!(
        out.contains("Read-only file system"),
        "/proc/sys is read-only: {out}"
    );
}

#[test]
fn user_groups_and_rlimits() {
    let rt = Runtime::new();
    let mut b = sh("id; ulimit -n; ulimit -Hn");
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000]});
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 777}]);
    let (code, out, err) = rt.run(&b, "user");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("uid=1000 gid=1000 groups="), "{out}");
    assert!(
        lines[0].contains("2000") && lines[0].contains("3000"),
        "{out}"
    );
    assert_eq!(&lines[1..], ["512", "777"]);
}

fn cgroup_v1() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

#[test]
fn memory_limit_is_set_and_enforced() {
    let rt = Runtime::new();
    let file = if cgroup_v1() {
        "memory/memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    // dd is the init process, so its OOM kill is the container's exit.
    let mut b = sh(&format!(
        "cat /sys/fs/cgroup/{file}; exec dd if=/dev/zero of=/dev/null bs=128M count=1"
    ));
    b.config["linux"]["resources"]["memory"] = json!({"limit": 33554432});
    let (code, out, err) = rt.run(&b, "oom");
    assert_eq!(
        out.lines().next(),
        Some("33554432"),
        "limit read back: {out} {err}"
    );
    assert_eq!(code, 137, "the hog is OOM-killed: {out} {err}");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let rt = Runtime::new();
    let file = if cgroup_v1() {
        "pids/pids.current"
    } else {
        "pids.current"
    };
    // The inner shell forks until the limit stops it; the outer one reports.
    let mut b = sh(&format!(
        "sh -c 'for i in $(seq 30); do sleep 30 & done' 2>&1; cat /sys/fs/cgroup/{file}"
    ));
    b.config["linux"]["resources"]["pids"] = json!({"limit": 8});
    let (code, out, err) = rt.run(&b, "forkbomb");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("can't fork"), "{out}");
    let current: i32 = out
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{out}"));
    assert!(
        (2..=8).contains(&current),
        "pids.current {current} must stay at the limit 8"
    );
}

#[test]
fn seccomp_rule_returns_configured_errno() {
    let rt = Runtime::new();
    let mut b = sh(
        "mkdir /dev/shm/allowed && echo made; mkdir /dev/shm/x/y 2>&1; rmdir /dev/shm/allowed 2>&1; true",
    );
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["rmdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    });
    let (code, out, err) = rt.run(&b, "seccomp");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("made"), "{out}");
    assert!(
        out.contains("rmdir: '/dev/shm/allowed': Permission denied"),
        "{out}"
    );
}

#[test]
fn create_then_start_and_state() {
    let rt = Runtime::new();
    let b = Bundle::new("busybox", &["sleep", "60"]);
    b.write();
    let id = rt.id("lifecycle");
    let bundle = b.path().to_str().unwrap();
    let pid_file = b.path().join("pid");
    let (ok, err) = rt.detached(&[
        "create",
        "--bundle",
        bundle,
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert!(ok, "{err}");
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(
        st["bundle"],
        b.path().canonicalize().unwrap().to_str().unwrap()
    );
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(b.path().join("pid")).unwrap(),
        pid.to_string()
    );

    let out = rt.exec(&["start", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rt.state(&id)["status"], "running");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");

    let out = rt.exec(&["start", &id]);
    assert!(!out.status.success(), "a second start fails");
    let out = rt.exec(&["delete", &id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("running"),
        "delete of a running container says why"
    );

    let list = rt.exec(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());

    let ps = rt.exec(&["ps", "--format", "json", &id]);
    let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(pids, vec![pid]);

    let out = rt.exec(&["kill", &id, "KILL"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.wait_status(&id, "stopped");
    let out = rt.exec(&["delete", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!rt.root.path().join(&id).exists(), "state removed");
    let out = rt.exec(&["state", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn kill_all_and_pause_resume() {
    let rt = Runtime::new();
    // The bundle must outlive the container: its rootfs is the container's.
    let bundle = sh("sleep 60 & sleep 61 & wait");
    let id = rt.run_detached(&bundle, "killall");
    let mut pids = Vec::new();
    for _ in 0..200 {
        pids =
            serde_json::from_slice::<Vec<i64>>(&rt.exec(&["ps", "--format", "json", &id]).stdout)
                .unwrap();
        if pids.len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(pids.len(), 3, "sh and two sleeps");

    assert!(rt.exec(&["pause", &id]).status.success());
    assert_eq!(rt.state(&id)["status"], "paused");
    assert!(
        !rt.exec(&["pause", &id]).status.success(),
        "pausing twice is refused"
    );
    assert!(rt.exec(&["resume", &id]).status.success());
    assert_eq!(rt.state(&id)["status"], "running");

    let out = rt.exec(&["kill", "--all", &id, "SIGKILL"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.wait_status(&id, "stopped");
    for p in pids {
        assert!(
            !Path::new(&format!("/proc/{p}/cmdline")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .unwrap()
                    .contains(") Z ")
        );
    }
}

#[test]
fn failed_create_leaves_nothing_behind() {
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["/no/such/program"]);
    b.config["linux"]["cgroupsPath"] = "/berth-test-failed-create".into();
    b.write();
    let id = rt.id("failed");
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/program"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!rt.root.path().join(&id).exists(), "no state dir");
    for h in ["pids", "memory", "unified", ""] {
        let p = Path::new("/sys/fs/cgroup")
            .join(h)
            .join("berth-test-failed-create");
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn bad_input_gets_one_line_errors() {
    let rt = Runtime::new();
    let id = rt.id("bad");
    let out = rt.exec(&["create", "--bundle", "/no/such/bundle", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/bundle"));

    let b = Bundle::new("busybox", &["true"]);
    std::fs::write(b.path().join("config.json"), "{not json").unwrap();
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid OCI runtime config"));

    let mut b = Bundle::new("busybox", &["true"]);
    b.config["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "bogus"}]);
    b.write();
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let b = Bundle::new("busybox", &["sleep", "30"]);
    b.write();
    let bundle = b.path().to_str().unwrap();
    let (ok, err) = rt.detached(&["create", "--bundle", bundle, &id]);
    assert!(ok, "{err}");
    let (ok, err) = rt.detached(&["create", "--bundle", bundle, &id]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let out = rt.exec(&["create", "--bundle", "/", "../escape"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid container id"));
}

#[test]
fn mount_destination_symlink_cannot_escape_rootfs() {
    let rt = Runtime::new();
    let mut b = sh("ls /escape/");
    let host_dir = tempfile::tempdir().unwrap();
    // /escape is a symlink to the host's /tmp-like dir; the mount must land inside.
    std::os::unix::fs::symlink(host_dir.path(), b.path().join("rootfs/escape")).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/escape", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    let (code, _out, err) = rt.run(&b, "symlink");
    assert_eq!(code, 0, "{err}");
    // Nothing was mounted on the host directory the symlink names.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(host_dir.path().to_str().unwrap()));
    assert!(
        b.path()
            .join("rootfs")
            .join(host_dir.path().strip_prefix("/").unwrap())
            .exists(),
        "created inside the rootfs"
    );
}

#[test]
fn bind_mounts_readonly_and_relative_source() {
    let rt = Runtime::new();
    let mut b = sh("cat /data/hello; (echo x > /data/new) 2>&1; cat /cfg/file");
    std::fs::create_dir(b.path().join("data")).unwrap();
    std::fs::write(b.path().join("data/hello"), "from host\n").unwrap();
    std::fs::write(b.path().join("file"), "a file\n").unwrap();
    let file = b.path().join("file");
    b.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}),
        json!({"destination": "/cfg/file", "type": "bind", "source": file, "options": ["bind"]}),
    ]);
    let (code, out, err) = rt.run(&b, "bind");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("from host\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.ends_with("a file\n"), "{out}");
}

#[test]
fn no_host_fd_reaches_the_container() {
    use std::os::unix::process::CommandExt;
    let rt = Runtime::new();
    let b = sh("ls /proc/self/fd");
    b.write();
    let id = rt.id("fds");
    let leak = std::fs::File::open("/etc/hostname").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&leak);
    let mut cmd = rt.cmd();
    cmd.args(["run", "--bundle"]).arg(b.path()).arg(&id);
    // SAFETY: dup2 into a fixed fd without CLOEXEC, in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::dup2(raw, 9);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(!fds.contains(&"9".to_string()), "fd 9 leaked: {fds:?}");
    assert!(fds.len() <= 4, "only stdio and ls's own: {fds:?}");
}

#[test]
fn hooks_run_in_order_with_state() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let mut b = sh("echo main >> /hooks/order");
    let host_hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {d}/{name}.json; echo {name} >> {d}/order")]});
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/hooks", "type": "bind", "source": d, "options": ["rbind"]}));
    b.config["hooks"] = json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /hooks/order"]}],
        "poststop": [host_hook("poststop")],
    });
    let (code, _out, err) = rt.run(&b, "hooks");
    assert_eq!(code, 0, "{err}");
    let order = std::fs::read_to_string(dir.path().join("order")).unwrap();
    assert_eq!(
        order,
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\nmain\npoststop\n"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("prestart.json")).unwrap()).unwrap();
    assert!(st["id"].as_str().unwrap().starts_with("hooks-"));
    assert!(st["pid"].as_i64().unwrap() > 0);
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("poststop.json")).unwrap()).unwrap();
    assert_eq!(st["status"], "stopped");
}

#[test]
fn failing_hook_fails_create_cleanly() {
    let rt = Runtime::new();
    let mut b = sh("true");
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/false", "args": ["false"]}]});
    let (code, _out, err) = rt.run(&b, "badhook");
    assert_ne!(code, 0);
    assert!(err.contains("createRuntime hook /bin/false"), "{err}");
    assert!(
        std::fs::read_dir(rt.root.path()).unwrap().next().is_none(),
        "nothing left in the root"
    );
}

#[test]
fn user_namespace_maps_ids() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/uid_map /proc/self/gid_map; id -u");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let (code, out, err) = rt.run(&b, "userns");
    assert_eq!(code, 0, "{err}");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "100000", "65536", "0", "100000", "65536", "0"],
        "{out}"
    );
}

// ---- a pod with its own user namespace (kubelet's `hostUsers: false`) ----

/// A pod's pause: a `sleep` in a new user namespace (ids mapped to 100000..),
/// with its own pid, network, ipc and uts namespaces. Returns its id and pid.
/// The name must be the test's own: the cgroup is named after it.
fn userns_pause(rt: &Runtime, name: &str) -> (Bundle, String, i64) {
    let mut b = Bundle::new("busybox", &["sleep", "1000"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let id = rt.run_detached(&b, name);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    (b, id, pid)
}

/// A container of that pod, as the CRI asks for it: the pause's user, network,
/// ipc and uts namespaces joined by path (the id mappings repeated, as
/// containerd sends them), a mount and cgroup namespace of its own, and either
/// a pid namespace of its own or the pause's.
fn userns_member(pause: i64, args: &[&str], own_pid_ns: bool) -> Bundle {
    let mut b = Bundle::new("busybox", args);
    let by_path = |t: &str, f: &str| json!({"type": t, "path": format!("/proc/{pause}/ns/{f}")});
    let pid = if own_pid_ns {
        json!({"type": "pid"})
    } else {
        by_path("pid", "pid")
    };
    b.config["linux"]["namespaces"] = json!([
        pid,
        by_path("network", "net"),
        by_path("ipc", "ipc"),
        by_path("uts", "uts"),
        {"type": "mount"},
        {"type": "cgroup"},
        by_path("user", "user"),
    ]);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["hostname"] = serde_json::Value::Null;
    b
}

fn ns_of(pid: i64, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .display()
        .to_string()
}

/// The inode of the user namespace that owns `pid`'s pid namespace
/// (ioctl NS_GET_USERNS), beside the inode of `owner`'s user namespace.
fn pid_ns_owner(pid: i64, owner: i64) -> (u64, u64) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::MetadataExt;
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let pidns = std::fs::File::open(format!("/proc/{pid}/ns/pid")).unwrap();
    // SAFETY: an ioctl on an open namespace file; it returns a new fd or -1.
    let fd = unsafe { libc::ioctl(pidns.as_raw_fd(), NS_GET_USERNS) };
    assert!(
        fd >= 0,
        "NS_GET_USERNS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh fd from the ioctl, owned here.
    let userns = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let got = userns.metadata().unwrap().ino();
    let want = std::fs::metadata(format!("/proc/{owner}/ns/user"))
        .unwrap()
        .ino();
    (got, want)
}

/// Gap 5 of docs/kubernetes-gaps.md: a container that joins a user namespace by
/// path and gets a pid namespace of its own must get one owned by the joined
/// user namespace, or the kernel refuses its /proc mount. The process is pid 1,
/// sees the pod's id mapping, and its pid namespace belongs to the pod's user
/// namespace; exec joins that pid namespace; kill and delete work.
#[test]
fn joined_user_namespace_owns_the_new_pid_namespace() {
    let rt = Runtime::new();
    let (_pause_bundle, _pause, pause) = userns_pause(&rt, "userns-own-pid-pause");

    let b = userns_member(
        pause,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; echo $$; readlink /proc/self/ns/user; echo /proc/[0-9]*",
        ],
        true,
    );
    let (code, out, err) = rt.run(&b, "userns-own-pid");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(lines[0]), "0 100000 65536", "{out}");
    assert_eq!(words(lines[1]), "0 100000 65536", "{out}");
    assert_eq!(lines[2], "1", "the process is pid 1: {out}");
    assert_eq!(lines[3], ns_of(pause, "user"), "the pod's user namespace");
    assert_eq!(lines[4], "/proc/1", "alone in its pid namespace: {out}");

    // Parked and running: the state has the host pid, the pid namespace is new
    // and owned by the pod's user namespace, exec lands in it.
    let b = userns_member(pause, &["sleep", "1000"], true);
    let id = rt.run_detached(&b, "userns-own-pid-d");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(
        nspid.split_whitespace().collect::<Vec<_>>(),
        ["NSpid:", &pid.to_string(), "1"],
        "{nspid}"
    );
    assert_ne!(ns_of(pid, "pid"), ns_of(pause, "pid"));
    assert_eq!(ns_of(pid, "user"), ns_of(pause, "user"));
    assert_eq!(ns_of(pid, "net"), ns_of(pause, "net"));
    let (owner, want) = pid_ns_owner(pid, pause);
    assert_eq!(
        owner, want,
        "the pid namespace belongs to the pod's user namespace"
    );
    let out = rt.exec(&[
        "exec",
        &id,
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; cat /proc/1/comm; cat /proc/self/uid_map",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], ns_of(pid, "pid"), "{text}");
    assert_eq!(lines[1], "sleep", "{text}");
    assert_eq!(words(lines[2]), "0 100000 65536", "{text}");
    let out = rt.exec(&["kill", &id, "KILL"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.wait_status(&id, "stopped");
    let out = rt.exec(&["delete", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!rt.exec(&["state", &id]).status.success(), "deleted");
    // The pause is untouched.
    assert!(Path::new(&format!("/proc/{pause}")).exists());
}

/// The processes in `pause`'s user namespace other than the pause itself.
fn others_in_userns_of(pause: i64) -> Vec<String> {
    let user = ns_of(pause, "user");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|p| *p != pause)
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/user"))
                .is_ok_and(|l| l.display().to_string() == user)
        })
        .map(|p| {
            let cmd = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p} {}", cmd.replace('\0', " "))
        })
        .collect()
}

/// A create that fails (createRuntime hook) or is killed (SIGKILL during its
/// prestart hook) while its init waits in the pod's user namespace and a pid
/// namespace of its own: nothing is left, neither the init (killed by the
/// rollback, or by its parent-death signal and the guard) nor the helper that
/// made the pid namespace, nor the cgroup or the state.
#[test]
fn failed_or_killed_create_in_a_joined_user_namespace_leaves_nothing() {
    let rt = Runtime::new();
    let (_pause_bundle, _pause, pause) = userns_pause(&rt, "userns-gone-pause");

    let mut b = userns_member(pause, &["true"], true);
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/false", "args": ["false"]}]});
    let (code, _out, err) = rt.run(&b, "userns-gone-hook");
    assert_ne!(code, 0);
    assert!(err.contains("createRuntime hook /bin/false"), "{err}");
    let id = format!("userns-gone-hook-{}", std::process::id());
    assert!(!rt.root.path().join(&id).exists(), "state left behind");
    assert!(!cgroup_dir("pids", &id).exists(), "cgroup left behind");
    assert_eq!(others_in_userns_of(pause), Vec::<String>::new());

    let mut b = userns_member(pause, &["true"], true);
    let marker = b.path().join("in-hook");
    let script = format!("echo $$ > {}; exec sleep 30", marker.display());
    b.config["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    b.write();
    let id = rt.id("userns-gone-killed");
    let io = b.path().join("io");
    let mut create = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&io).unwrap())
        .stderr(std::fs::File::create(&io).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&marker).map_or(true, |s| !s.ends_with('\n')) {
        assert!(
            std::time::Instant::now() < deadline,
            "prestart hook never ran: {}",
            std::fs::read_to_string(&io).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(others_in_userns_of(pause).len(), 1, "the waiting init");
    create.kill().unwrap();
    create.wait().unwrap();
    let gone = || {
        others_in_userns_of(pause).is_empty()
            && !rt.root.path().join(&id).exists()
            && !cgroup_dir("pids", &id).exists()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gone() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The prestart hook ran beside create, on the host: end it.
    if let Ok(pid) = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse::<i32>()
    {
        // SAFETY: plain kill.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert_eq!(others_in_userns_of(pause), Vec::<String>::new());
    assert!(!rt.root.path().join(&id).exists(), "state left behind");
    assert!(!cgroup_dir("pids", &id).exists(), "cgroup left behind");
}

/// The same pod with a shared process namespace: the container joins the
/// pause's user and pid namespaces by path; /proc mounts and shows the pause
/// as pid 1.
#[test]
fn joined_user_namespace_with_the_pause_pid_namespace() {
    let rt = Runtime::new();
    let (_pause_bundle, _pause, pause) = userns_pause(&rt, "userns-pause-pid-pause");
    let b = userns_member(
        pause,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; cat /proc/1/comm; readlink /proc/self/ns/pid; readlink /proc/self/ns/user",
        ],
        false,
    );
    let (code, out, err) = rt.run(&b, "userns-pause-pid");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"],
        "{out}"
    );
    assert_eq!(lines[1], "sleep", "the pause is pid 1: {out}");
    assert_eq!(lines[2], ns_of(pause, "pid"), "{out}");
    assert_eq!(lines[3], ns_of(pause, "user"), "{out}");
}

/// A host directory only the host's root may enter (root-owned, 0700), as
/// kubelet's pod directories are to a pod's user namespace, holding what a
/// container binds: two directories and two files, owned by the mapped root
/// (100000) so that only a read-only mount keeps it from writing.
fn closed_host_dir() -> tempfile::TempDir {
    use std::os::unix::fs::{PermissionsExt, chown};
    let dir = tempfile::Builder::new()
        .prefix("berth-closed-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("ro")).unwrap();
    std::fs::write(d.join("ro/hello"), "read-only dir\n").unwrap();
    std::fs::write(d.join("ro-file"), "read-only file\n").unwrap();
    std::fs::create_dir_all(d.join("rw")).unwrap();
    std::fs::write(d.join("rw-file"), "rw file\n").unwrap();
    for p in ["ro", "ro-file", "rw", "rw-file"] {
        chown(d.join(p), Some(100000), Some(100000)).unwrap();
    }
    dir
}

/// Binds the closed directory's four sources into `b` (their targets made in
/// the rootfs beforehand, as berthd does) and runs a script that reads them and
/// writes where it may; returns its output.
fn run_with_closed_binds(rt: &Runtime, b: &mut Bundle, closed: &Path, name: &str) -> String {
    let rootfs = b.path().join("rootfs");
    for d in ["vol-ro", "vol-rw"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    for f in ["file-ro", "file-rw"] {
        std::fs::write(rootfs.join(f), "").unwrap();
    }
    let src = |p: &str| closed.join(p).display().to_string();
    b.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/vol-ro", "type": "bind", "source": src("ro"), "options": ["rbind", "ro"]}),
        json!({"destination": "/vol-rw", "type": "bind", "source": src("rw"), "options": ["rbind", "rw"]}),
        json!({"destination": "/file-ro", "type": "bind", "source": src("ro-file"), "options": ["bind", "ro"]}),
        json!({"destination": "/file-rw", "type": "bind", "source": src("rw-file"), "options": ["bind"]}),
    ]);
    b.config["process"]["args"] = json!([
        "sh",
        "-c",
        "id -u; cat /vol-ro/hello /file-ro /file-rw; \
         (echo x > /vol-ro/new) 2>&1; (echo x >> /file-ro) 2>&1; \
         echo written > /vol-rw/new && cat /vol-rw/new; echo appended >> /file-rw"
    ]);
    let (code, out, err) = rt.run(b, name);
    assert_eq!(code, 0, "{err}");
    out
}

fn check_closed_binds(out: &str, closed: &Path) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "root of the user namespace: {out}");
    assert_eq!(
        lines[1..4],
        ["read-only dir", "read-only file", "rw file"],
        "{out}"
    );
    assert!(lines[4].contains("Read-only file system"), "{out}");
    assert!(lines[5].contains("Read-only file system"), "{out}");
    assert_eq!(lines[6], "written", "{out}");
    assert_eq!(
        std::fs::read_to_string(closed.join("rw/new")).unwrap(),
        "written\n"
    );
    assert_eq!(
        std::fs::read_to_string(closed.join("rw-file")).unwrap(),
        "rw file\nappended\n"
    );
    assert!(!closed.join("ro/new").exists());
}

/// kubelet's projected volumes in a `hostUsers: false` pod: the sources live
/// under root-owned 0750 pod directories, which the user namespace's root
/// cannot traverse. The runtime, in the host's user namespace, opens the
/// sources and the init attaches them; read-only and read-write binds of a
/// directory and a file work, in a user namespace the container creates and
/// in one it joins by path. A source that does not exist still fails the
/// create with the mount and the path named, and leaves nothing behind.
#[test]
fn user_namespace_binds_sources_it_cannot_reach() {
    let rt = Runtime::new();
    let closed = closed_host_dir();

    let mut b = sh("true");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let out = run_with_closed_binds(&rt, &mut b, closed.path(), "userns-binds-new");
    check_closed_binds(&out, closed.path());

    let closed = closed_host_dir();
    let (_pause_bundle, _pause, pause) = userns_pause(&rt, "userns-binds-pause");
    let mut b = userns_member(pause, &["true"], true);
    let out = run_with_closed_binds(&rt, &mut b, closed.path(), "userns-binds-joined");
    check_closed_binds(&out, closed.path());

    let mut b = userns_member(pause, &["true"], true);
    let missing = closed.path().join("missing");
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/vol-ro", "type": "bind", "source": missing, "options": ["rbind", "ro"]}),
    );
    let (code, _out, err) = rt.run(&b, "userns-binds-missing");
    assert_ne!(code, 0);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("/vol-ro"),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
    let id = format!("userns-binds-missing-{}", std::process::id());
    assert!(!rt.root.path().join(&id).exists(), "state left behind");
    assert!(!cgroup_dir("pids", &id).exists(), "cgroup left behind");
    assert_eq!(others_in_userns_of(pause), Vec::<String>::new());
}

#[test]
fn spec_matches_runc_shape() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("berth-runtime"))
        .arg("spec")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    let runc_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("runc")
        .arg("spec")
        .current_dir(runc_dir.path())
        .output()
        .expect("runc (hack/setup.sh installs it)");
    assert!(out.status.success());
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runc_dir.path().join("config.json")).unwrap())
            .unwrap();
    for key in ["mounts", "root"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    // Newer runc adds a cgroup namespace, as berth does; older ones lack it.
    for ns in theirs["linux"]["namespaces"].as_array().unwrap() {
        assert!(
            ours["linux"]["namespaces"].as_array().unwrap().contains(ns),
            "{ns}"
        );
    }
    assert_eq!(ours["linux"]["maskedPaths"], theirs["linux"]["maskedPaths"]);
    assert_eq!(
        ours["process"]["capabilities"]["bounding"],
        theirs["process"]["capabilities"]["bounding"]
    );
}

#[test]
fn runtime_binary_is_unreachable_from_a_shared_pid_namespace() {
    // CVE-2019-5736: a container without its own pid namespace can see the parked
    // init; that init must run from a sealed memfd, never the host's binary.
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["true"]);
    let ns: Vec<serde_json::Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "pid")
        .cloned()
        .collect();
    b.config["linux"]["namespaces"] = ns.into();
    b.write();
    let id = rt.id("sealed");
    let (ok, err) = rt.detached(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(ok, "{err}");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().contains("memfd:berth-runtime"),
        "{exe:?}"
    );
    // The copy is sealed: it cannot be opened for writing through /proc/PID/exe.
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"));
    assert!(w.is_err(), "the sealed copy must not be writable");
}

#[test]
fn no_pivot_configured_devices_and_sysctls() {
    let rt = Runtime::new();
    let mut b = sh(
        "head -c 4 /dev/myfull | wc -c; stat -c '%t:%T %a' /dev/myfull; cat /proc/sys/kernel/shm_rmid_forced",
    );
    b.config["linux"]["devices"] = json!([{"path": "/dev/myfull", "type": "c", "major": 1, "minor": 7, "fileMode": 0o640, "uid": 0, "gid": 0}]);
    b.config["linux"]["sysctl"] = json!({"kernel.shm_rmid_forced": "1"});
    b.write();
    let id = rt.id("nopivot");
    let out = rt
        .cmd()
        .args([
            "run",
            "--no-pivot",
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4\n1:7 640\n1\n");
}

#[test]
fn hook_timeout_is_honoured() {
    let rt = Runtime::new();
    let mut b = sh("true");
    b.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let start = std::time::Instant::now();
    let (code, _out, err) = rt.run(&b, "hooktimeout");
    assert_ne!(code, 0);
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn cgroups_path_absolute_and_relative() {
    let rt = Runtime::new();
    for (name, path) in [("abs", "/berth-test-abs/one"), ("rel", "berth-test-rel")] {
        let mut b = Bundle::new("busybox", &["sleep", "30"]);
        b.config["linux"]["cgroupsPath"] = path.into();
        let id = rt.run_detached(&b, name);
        let pid = rt.state(&id)["pid"].as_i64().unwrap();
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let own_pids = own
            .lines()
            .find(|l| l.contains(":pids:"))
            .map(|l| l.rsplit(':').next().unwrap().to_string());
        let want = match (path.starts_with('/'), own_pids) {
            (true, _) => path.to_string(),
            (false, Some(o)) => format!("{}/{path}", o.trim_end_matches('/')),
            (false, None) => format!("/{path}"),
        };
        assert!(
            cg.lines()
                .any(|l| (l.contains(":pids:") || l.starts_with("0::")) && l.ends_with(&want)),
            "{cg} wants {want}"
        );
        assert!(rt.exec(&["delete", "-f", &id]).status.success());
        assert!(!cgroup_exists(&want), "cgroup {want} removed");
    }
    for h in [
        "pids", "memory", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd",
        "unified", "",
    ] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join("berth-test-abs"));
    }
}

fn cgroup_exists(path: &str) -> bool {
    ["pids", ""].iter().any(|h| {
        Path::new("/sys/fs/cgroup")
            .join(h)
            .join(path.trim_start_matches('/'))
            .exists()
    })
}

#[test]
fn terminal_has_dev_console() {
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["sh", "-c", "stat -c %t:%T /dev/console; tty"]);
    b.config["process"]["terminal"] = true.into();
    b.write();
    let id = rt.id("devconsole");
    let out = rt
        .cmd()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // 88 (hex) is the pts major 136: /dev/console is the container's pty.
    assert!(text.starts_with("88:0"), "{text}");
    assert!(text.contains("/dev/pts/0"), "{text}");
}
