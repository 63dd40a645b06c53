//! berth-runtime against the text of the OCI runtime spec (and runc's behaviour
//! where the spec leaves it to the runtime): one test per point of issue 18, each
//! with the spec's words it checks.

use berth_tests::{Bundle, Runtime};
use serde_json::{Value, json};
use std::path::Path;

fn sh(script: &str) -> Bundle {
    Bundle::new("busybox", &["sh", "-c", script])
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `create` (its stdio to files), returning (success, stderr).
fn create(rt: &Runtime, b: &Bundle, id: &str) -> (bool, String) {
    b.write();
    rt.detached(&["create", "--bundle", b.path().to_str().unwrap(), id])
}

// ---- errors, as runc reports them ----

/// runc (logrus): without --log, one record on stderr, `time="…" level=error
/// msg="…"` (or JSON with --log-format json); with --log, the record in the log
/// and the bare message on stderr. Exit status 1.
#[test]
fn errors_in_runc_format() {
    let rt = Runtime::new();
    let out = rt.exec(&["delete", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("time=\""), "{e}");
    assert!(
        e.contains(r#"level=error msg="container \"nope\" does not exist""#),
        "{e}"
    );

    let out = rt.exec(&["--log-format", "json", "kill", "nope", "KILL"]);
    assert_eq!(out.status.code(), Some(1));
    let rec: Value = serde_json::from_str(stderr(&out).trim()).expect("one JSON record");
    assert_eq!(rec["level"], "error");
    assert_eq!(rec["msg"], r#"container "nope" does not exist"#);
    assert!(rec["time"].is_string());

    let log = rt.root.path().join("runtime.log");
    let out = rt
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), r#"container "nope" does not exist"#);
    let rec: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(rec["level"], "error");
    assert_eq!(rec["msg"], r#"container "nope" does not exist"#);

    // A wrong state: kill of a stopped container, start of a running one.
    let b = Bundle::new("busybox", &["sleep", "60"]);
    let id = rt.id("errstate");
    let (ok, err) = create(&rt, &b, &id);
    assert!(ok, "{err}");
    assert!(rt.exec(&["start", &id]).status.success());
    let out = rt.exec(&["start", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("level=error"), "{}", stderr(&out));
    assert!(rt.exec(&["kill", &id, "KILL"]).status.success());
    let out = rt.exec(&["kill", &id, "TERM"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("level=error") && stderr(&out).contains("stopped"),
        "{}",
        stderr(&out)
    );
    // A successful command says nothing on stderr (tools look for "error" there).
    let out = rt.exec(&["state", &id]);
    assert!(out.status.success());
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// The host's view of a mount point in this process's mount namespace.
fn mountinfo_line<'a>(info: &'a str, mp: &str) -> Option<&'a str> {
    info.lines().find(|l| l.split(' ').nth(4) == Some(mp))
}

fn mount_options_of(info: &str, mp: &str) -> Vec<String> {
    let l = mountinfo_line(info, mp).unwrap_or_else(|| panic!("{mp} not mounted:\n{info}"));
    l.split(' ')
        .nth(5)
        .unwrap()
        .split(',')
        .map(String::from)
        .collect()
}

// ---- exec ----

/// runc: `exec --env KEY=VALUE` sets KEY in the process's environment, over the
/// value the config gives it.
#[test]
fn exec_env_overrides_spec_env() {
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["sleep", "60"]);
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("MY_VAR=from_spec".into());
    let id = rt.run_detached(&b, "execenv");
    let out = rt.exec(&[
        "exec",
        "--env",
        "MY_VAR=from_cli",
        "--env",
        "OTHER=x",
        &id,
        "sh",
        "-c",
        "echo $MY_VAR $OTHER; tr '\\0' '\\n' < /proc/$$/environ | grep ^MY_VAR=",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Exactly once in what exec(2) was given (getenv takes the first of duplicates).
    assert_eq!(stdout(&out), "from_cli x\nMY_VAR=from_cli\n");
}

// ---- config ----

/// "ociVersion (string, REQUIRED) MUST be in SemVer v2.0.0 format".
#[test]
fn invalid_oci_version_is_refused() {
    let rt = Runtime::new();
    for v in ["invalid", "1.0", "2.0.0"] {
        let mut b = Bundle::new("busybox", &["true"]);
        b.config["ociVersion"] = v.into();
        let id = rt.id(&format!("ociversion{}", v.len()));
        let (ok, err) = create(&rt, &b, &id);
        assert!(!ok, "ociVersion {v:?} accepted");
        assert!(err.contains("ociVersion"), "{err}");
        assert!(!rt.root.path().join(&id).exists());
    }
}

/// runc and youki: proc and sysfs must be mounted on an ordinary directory of
/// the rootfs; a symlink there is refused (not followed).
#[test]
fn proc_or_sys_symlink_in_rootfs_is_refused() {
    let rt = Runtime::new();
    for dir in ["proc", "sys"] {
        let b = Bundle::new("busybox", &["true"]);
        let p = b.path().join("rootfs").join(dir);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
        std::fs::create_dir_all(b.path().join("rootfs/elsewhere")).unwrap();
        std::os::unix::fs::symlink("elsewhere", &p).unwrap();
        let id = rt.id(&format!("symlink-{dir}"));
        let (ok, err) = create(&rt, &b, &id);
        assert!(!ok, "/{dir} as a symlink was followed");
        assert!(
            err.contains("must be mounted on ordinary directory"),
            "{err}"
        );
        assert!(err.contains(&format!("/{dir}")), "{err}");
    }
}

/// rootfsPropagation: "unbindable" is one of its values; the container's root
/// mount gets it.
#[test]
fn rootfs_propagation_unbindable() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/mountinfo");
    b.config["linux"]["rootfsPropagation"] = "unbindable".into();
    let (code, out, err) = rt.run(&b, "unbindable");
    assert_eq!(code, 0, "{err}");
    let root = mountinfo_line(&out, "/").unwrap_or_else(|| panic!("{out}"));
    assert!(root.contains(" unbindable "), "{root}");
}

/// Recursive atime options (ratime, rnoatime, rstrictatime, ...) set the mount's
/// access-time mode: mount_setattr(2) with the mode in attr_set and all of
/// MOUNT_ATTR__ATIME in attr_clr. The last one given wins.
#[test]
fn recursive_atime_options() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/mountinfo");
    let m = b.config["mounts"].as_array_mut().unwrap();
    for (dest, opts) in [
        ("/noatime", json!(["rnoatime"])),
        ("/strict", json!(["rnoatime", "rstrictatime"])),
        ("/relatime", json!(["rnoatime", "ratime"])),
        ("/nodiratime", json!(["rstrictatime", "rnodiratime"])),
        ("/norelatime", json!(["rstrictatime", "rnorelatime"])),
        ("/nostrictatime", json!(["rstrictatime", "rnostrictatime"])),
    ] {
        m.push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts}));
    }
    let (code, out, err) = rt.run(&b, "ratime");
    assert_eq!(code, 0, "{err}");
    let o = mount_options_of(&out, "/noatime");
    assert!(o.contains(&"noatime".into()), "{o:?}");
    let o = mount_options_of(&out, "/strict");
    assert!(
        !o.contains(&"noatime".into()) && !o.contains(&"relatime".into()),
        "{o:?}"
    );
    let o = mount_options_of(&out, "/relatime");
    assert!(
        o.contains(&"relatime".into()) && !o.contains(&"noatime".into()),
        "{o:?}"
    );
    for mp in ["/norelatime", "/nostrictatime"] {
        // As runc (and contest expects): clearing a mode leaves relatime.
        let o = mount_options_of(&out, mp);
        assert!(o.contains(&"relatime".into()), "{mp}: {o:?}");
    }
    let o = mount_options_of(&out, "/nodiratime");
    assert!(
        o.contains(&"nodiratime".into()) && !o.contains(&"relatime".into()),
        "{o:?}"
    );
}

// ---- namespaces ----

fn ns_link(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .display()
        .to_string()
}

/// "If a namespace type is not specified in the namespaces array, the container
/// MUST inherit the runtime namespace of that type."
#[test]
fn namespaces_not_listed_are_inherited() {
    let rt = Runtime::new();
    let mut b = sh("for n in net ipc uts pid; do readlink /proc/self/ns/$n; done");
    b.config["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "pid"}]);
    b.config["hostname"] = Value::Null;
    let (code, out, err) = rt.run(&b, "inherit");
    assert_eq!(code, 0, "{err}");
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got[0], ns_link("self", "net"));
    assert_eq!(got[1], ns_link("self", "ipc"));
    assert_eq!(got[2], ns_link("self", "uts"));
    assert_ne!(got[3], ns_link("self", "pid"), "pid is listed: a new one");
}

/// The same without a mount namespace: the rootfs is set up in the runtime's
/// mount namespace (runc: its mounts are made there, then chroot); maskedPaths
/// and readonlyPaths need a mount namespace of the container's own. Delete
/// unmounts what was mounted.
#[test]
fn no_mount_namespace_is_inherited_and_cleaned_up() {
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["sleep", "60"]);
    b.config["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}]);
    b.config["linux"]["maskedPaths"] = json!([]);
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.config["root"]["readonly"] = false.into();
    let rootfs = b.path().join("rootfs").canonicalize().unwrap();
    let id = rt.id("nomntns");
    let (ok, err) = create(&rt, &b, &id);
    assert!(ok, "{err}");
    let pid = rt.state(&id)["pid"].as_i64().unwrap().to_string();
    assert_eq!(
        ns_link(&pid, "mnt"),
        ns_link("self", "mnt"),
        "mount ns inherited"
    );
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let r = rootfs.display().to_string();
    assert!(
        mountinfo_line(&info, &r).is_some(),
        "rootfs mounted in the runtime's namespace"
    );
    assert!(
        mountinfo_line(&info, &format!("{r}/proc")).is_some(),
        "{info}"
    );
    assert!(rt.exec(&["start", &id]).status.success());
    let out = rt.exec(&[
        "exec",
        &id,
        "sh",
        "-c",
        "ls /bin/busybox && cat /proc/1/cmdline",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("sleep"), "{}", stdout(&out));
    assert!(rt.exec(&["delete", "--force", &id]).status.success());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !info
            .lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&r))),
        "mounts left under the rootfs:\n{info}"
    );

    // Masked paths without a mount namespace: refused, nothing left.
    let mut b = Bundle::new("busybox", &["true"]);
    b.config["linux"]["namespaces"] = json!([{"type": "pid"}]);
    b.config["hostname"] = Value::Null;
    let id = rt.id("nomntns-masked");
    let (ok, err) = create(&rt, &b, &id);
    assert!(!ok && err.contains("mount namespace"), "{err}");
}

// ---- hooks ----

/// runc: a hook without `env` inherits the environment of the process that runs
/// it: createContainer and startContainer run in the container's init and get
/// the process's env; prestart, createRuntime, poststart and poststop run in the
/// runtime and get its own. A hook with `env` gets exactly that.
#[test]
fn hooks_env_as_runc() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let mut b = sh("true");
    b.config["process"]["env"] = json!(["PATH=/bin", "ONE=two", "FOO=bar"]);
    let dump = |name: &str| {
        format!("env | grep -E '^(ONE|FOO|HOOK_VAR|RUNTIME_VAR)=' | sort > {d}/{name}")
    };
    b.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", dump("createRuntime")]}],
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", dump("createContainer")]}],
        "startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "test \"$ONE\" = two && test \"$FOO\" = bar"]},
            {"path": "/bin/sh", "args": ["sh", "-c", "test \"$HOOK_VAR\" = hook_value && test -z \"$ONE\""], "env": ["HOOK_VAR=hook_value"]},
        ],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", dump("poststop")], "env": ["HOOK_VAR=x"]}],
    });
    b.write();
    let id = rt.id("hookenv");
    let out = rt
        .cmd()
        .env("RUNTIME_VAR", "rt")
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
    assert_eq!(read("createRuntime"), "RUNTIME_VAR=rt\n");
    assert_eq!(read("createContainer"), "FOO=bar\nONE=two\n");
    assert_eq!(read("poststop"), "HOOK_VAR=x\n");
}

/// "If any poststop hook fails, the runtime MUST log a warning, but the remaining
/// hooks and lifecycle continue as if the hook had succeeded." berth runs every
/// poststop hook and removes the container; as runc, the failure makes `delete`
/// report it (exit 1).
#[test]
fn poststop_failure_runs_the_rest_and_removes_the_container() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let l = log.display().to_string();
    let mut b = Bundle::new("busybox", &["true"]);
    b.config["hooks"] = json!({"poststop": [
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo hook_1 >> {l}")]},
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo hook_2 >> {l}; exit 1")]},
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo hook_3 >> {l}")]},
    ]});
    let id = rt.id("poststop");
    let (ok, err) = create(&rt, &b, &id);
    assert!(ok, "{err}");
    assert!(rt.exec(&["start", &id]).status.success());
    let out = rt.exec(&["delete", &id]);
    assert_eq!(out.status.code(), Some(1), "the failure is reported");
    assert!(stderr(&out).contains("poststop"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "hook_1\nhook_2\nhook_3\n"
    );
    let out = rt.exec(&["state", &id]);
    assert!(
        stderr(&out).contains("does not exist"),
        "the container is gone"
    );
}

// ---- process ----

/// linux.personality: domain LINUX32 makes the container's processes (the init
/// and those `exec` adds, as runc) see a 32-bit machine.
#[test]
fn personality_linux32() {
    let rt = Runtime::new();
    let mut b = sh("uname -m; exec sleep 60");
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    let id = rt.run_detached(&b, "linux32");
    let out = rt.exec(&["exec", &id, "uname", "-m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "i686", "exec");
    let (code, out, err) = rt.run(&sh("uname -m"), "linux32-init");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), std::env::consts::ARCH, "no personality asked");
    let mut b = sh("uname -m");
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    let (code, out, err) = rt.run(&b, "linux32-run");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "i686", "init");
    let mut b = sh("uname -m");
    b.config["linux"]["personality"] = json!({"domain": "LINUX"});
    let (code, out, err) = rt.run(&b, "linux");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), std::env::consts::ARCH);
}

fn cpus_allowed(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .to_string()
}

/// process.execCPUAffinity: `final` is the process's affinity once it is in the
/// container's cgroup; `initial` applies before the move only (the cgroup's
/// cpuset then decides). For the init (config.json) and for exec (process.json).
#[test]
fn exec_cpu_affinity() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs 2 CPUs");
        return;
    }
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["sleep", "60"]);
    b.config["process"]["execCPUAffinity"] = json!({"initial": "0", "final": "1"});
    let id = rt.run_detached(&b, "affinity");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(cpus_allowed(&st), "1", "init: final");

    let out = rt.exec(&[
        "exec",
        &id,
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        cpus_allowed(&stdout(&out)),
        "1",
        "exec with the config's process: final"
    );

    let mut p = b.config["process"].clone();
    p["args"] = json!(["grep", "Cpus_allowed_list", "/proc/self/status"]);
    p["execCPUAffinity"] = json!({"initial": "1", "final": "0"});
    let pj = b.path().join("process.json");
    std::fs::write(&pj, serde_json::to_vec(&p).unwrap()).unwrap();
    let out = rt.exec(&["exec", "--process", pj.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cpus_allowed(&stdout(&out)), "0", "process.json: final");

    p["execCPUAffinity"] = json!({"initial": "1"});
    std::fs::write(&pj, serde_json::to_vec(&p).unwrap()).unwrap();
    let out = rt.exec(&["exec", "--process", pj.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    // "If omitted or empty, runtime SHOULD NOT change process' CPU affinity after
    // the process is moved to container's cgroup, and the final affinity is
    // determined by the Linux kernel": since Linux 6.2 a cpuset move keeps the
    // affinity a process asked for; before, the cpuset's CPUs.
    let mine = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    let got = cpus_allowed(&stdout(&out));
    assert!(got == "1" || got == mine, "initial only: {got}");

    p["execCPUAffinity"] = json!({"final": "999"});
    std::fs::write(&pj, serde_json::to_vec(&p).unwrap()).unwrap();
    let out = rt.exec(&["exec", "--process", pj.to_str().unwrap(), &id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("execCPUAffinity.final"),
        "{}",
        stderr(&out)
    );
}

/// linux.timeOffsets with a new user namespace: the offsets are written from
/// inside it (the time namespace belongs to it) before any process enters the
/// time namespace.
#[test]
fn time_offsets_with_user_namespace() {
    let rt = Runtime::new();
    let mut b = sh("cut -d. -f1 /proc/uptime");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    ns.push(json!({"type": "time"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["timeOffsets"] =
        json!({"boottime": {"secs": 1000000, "nanosecs": 0}, "monotonic": {"secs": 500}});
    let (code, out, err) = rt.run(&b, "timens-userns");
    assert_eq!(code, 0, "{err}");
    let host: u64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let inside: u64 = out.trim().parse().unwrap_or_else(|_| panic!("{out}"));
    assert!(inside >= host + 1000000 - 5, "uptime {inside}, host {host}");
    let _ = Path::new("/");
}

// ---- runtime-spec 1.3 ----

/// linux.memoryPolicy: "the runtime MUST set the memory policy of the container
/// process (set_mempolicy(2)) before it starts"; a policy the kernel refuses
/// (nodes with MPOL_DEFAULT, nodes that do not exist) fails create, as does a
/// mode or flag the spec does not name.
#[test]
fn memory_policy() {
    let rt = Runtime::new();
    for (mp, want) in [
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "bind=static:0",
        ),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
            "prefer=relative:0",
        ),
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
    ] {
        let mut b = sh("head -n 1 /proc/self/numa_maps");
        b.config["linux"]["memoryPolicy"] = mp.clone();
        let (code, out, err) = rt.run(&b, "mempolicy");
        assert_eq!(code, 0, "{mp}: {err}");
        let policy = out.split_whitespace().nth(1).unwrap_or_default();
        assert_eq!(policy, want, "{mp}: {out}");
    }
    for mp in [
        json!({"mode": "MPOL_DEFAULT", "nodes": "0-7", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
        json!({"mode": "MPOL_BIND", "nodes": "0-9876543210"}),
        json!({"mode": "MPOL_BIND", "nodes": "63"}),
        json!({"mode": "INTERLEAVE", "nodes": "0"}),
        json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["badflag"]}),
        json!({"nodes": "0"}),
    ] {
        let mut b = Bundle::new("busybox", &["true"]);
        b.config["linux"]["memoryPolicy"] = mp.clone();
        let id = rt.id("mempolicy-bad");
        let (ok, err) = create(&rt, &b, &id);
        assert!(!ok, "{mp} accepted");
        assert!(
            err.contains("memoryPolicy") || err.contains("not a valid OCI"),
            "{mp}: {err}"
        );
        assert!(!rt.root.path().join(&id).exists());
    }
}

/// linux.intelRdt needs the resctrl filesystem; where it is not mounted (this
/// host) create fails, naming the reason, and leaves nothing behind.
#[test]
fn intel_rdt_without_resctrl_is_a_clear_error() {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - resctrl ");
    if mounted {
        eprintln!("skipped: resctrl is mounted here");
        return;
    }
    let rt = Runtime::new();
    let mut b = Bundle::new("busybox", &["true"]);
    b.config["linux"]["intelRdt"] = json!({"closID": "berth-test", "l3CacheSchema": "L3:0=f"});
    let id = rt.id("rdt");
    let (ok, err) = create(&rt, &b, &id);
    assert!(!ok);
    assert!(
        err.contains("intelRdt") && err.contains("resctrl is not mounted"),
        "{err}"
    );
    assert!(!rt.root.path().join(&id).exists());
    assert!(!Path::new("/sys/fs/cgroup/pids").join(&id).exists());
}

/// What a seccomp agent received on its socket: the container process state
/// and the fd that came with it.
fn agent_receive(listener: &std::os::unix::net::UnixListener) -> (Value, std::os::fd::OwnedFd) {
    use std::os::fd::{AsRawFd, FromRawFd};
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the runtime never connected to listenerPath"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    let mut data = vec![0u8; 65536];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: a zeroed msghdr pointing at live buffers.
    let (n, fd) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(conn.as_raw_fd(), &mut msg, 0);
        assert!(n > 0, "recvmsg");
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(
            !c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS,
            "no fd sent"
        );
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
        (n as usize, std::os::fd::OwnedFd::from_raw_fd(fd))
    };
    // "The connection MUST NOT be reused and it MUST be closed after sending".
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut &conn, &mut rest).unwrap();
    data.truncate(n);
    data.extend(rest);
    (
        serde_json::from_slice(&data).expect("container process state"),
        fd,
    )
}

/// linux.seccomp.listenerPath: with SCMP_ACT_NOTIFY the runtime connects to the
/// socket and sends the container process state (`fds: ["seccompFd"]`, `pid`,
/// `metadata` from listenerMetadata, `state`) with the notify fd by SCM_RIGHTS.
/// The agent then gets the container's notified syscalls on that fd.
#[test]
fn seccomp_notify_fd_goes_to_the_listener() {
    use std::os::fd::AsRawFd;
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut b = sh("mkdir /tmp/notified 2>&1; echo done");
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "MKDIR=deny",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    });
    let id = rt.id("notify");
    b.write();
    let child = rt
        .cmd()
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (state, fd) = agent_receive(&listener);
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "MKDIR=deny", "{state}");
    assert_eq!(state["ociVersion"], b.config["ociVersion"], "{state}");
    assert_eq!(state["state"]["id"], id.as_str(), "{state}");
    assert!(state["pid"].as_i64().unwrap() > 0, "{state}");
    assert_eq!(state["pid"], state["state"]["pid"], "{state}");
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    assert_eq!(link.display().to_string(), "anon_inode:seccomp notify");
    // The container's mkdir arrives on this fd.
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 20_000) };
    assert_eq!(n, 1, "no notification came");
    // The agent goes away: the pending syscall fails with ENOSYS.
    drop(fd);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Function not implemented") && stdout(&out).ends_with("done\n"),
        "{}",
        stdout(&out)
    );

    // SCMP_ACT_NOTIFY without a listenerPath is refused.
    let mut b = Bundle::new("busybox", &["true"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    });
    let (ok, err) = create(&rt, &b, &rt.id("notify-nopath"));
    assert!(!ok && err.contains("listenerPath"), "{err}");
    // A listener that is not there: create fails, saying so.
    let mut b = Bundle::new("busybox", &["true"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": dir.path().join("nobody.sock"),
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    });
    let id = rt.id("notify-nobody");
    let (ok, err) = create(&rt, &b, &id);
    assert!(!ok && err.contains("nobody.sock"), "{err}");
    assert!(!rt.root.path().join(&id).exists());
}

fn ip(args: &[&str]) -> std::process::Output {
    std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip")
}

/// linux.netDevices: "the runtime MUST move the device into the container's
/// network namespace", under `name` when given, keeping its permanent
/// addresses; a device the host does not have fails create, and netDevices
/// without a network namespace of the container's is refused.
#[test]
fn net_devices_move_into_the_container() {
    let rt = Runtime::new();
    let host = format!("bth{}a", std::process::id() % 100000);
    let peer = format!("bth{}b", std::process::id() % 100000);
    let _ = ip(&["link", "del", &host]);
    let out = ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ip(&["addr", "add", "10.250.77.1/24", "dev", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut b = sh("ip -o addr show dev eth7; ip -o link show dev eth7");
    b.config["linux"]["netDevices"] = json!({ &host: {"name": "eth7"} });
    let (code, out, err) = rt.run(&b, "netdev");
    let _ = ip(&["link", "del", &peer]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("inet 10.250.77.1/24"), "{out}");
    assert!(out.contains("state UP") || out.contains(",UP"), "{out}");
    assert!(
        !String::from_utf8_lossy(&ip(&["-o", "link"]).stdout).contains(&host),
        "the device left the host"
    );

    let mut b = Bundle::new("busybox", &["true"]);
    b.config["linux"]["netDevices"] = json!({"nosuchdev0": {}});
    let id = rt.id("netdev-missing");
    let (ok, err) = create(&rt, &b, &id);
    assert!(!ok && err.contains("nosuchdev0"), "{err}");
    assert!(!rt.root.path().join(&id).exists());

    let mut b = Bundle::new("busybox", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.config["linux"]["netDevices"] = json!({"lo": {}});
    let (ok, err) = create(&rt, &b, &rt.id("netdev-hostns"));
    assert!(!ok && err.contains("netDevices"), "{err}");
}

// ---- checkpoint / restore ----

/// `checkpoint` and `restore` exist with runc's flags and run CRIU; when CRIU
/// fails the error is CRIU's own reason and the container is left as it was (a
/// failed restore leaves nothing). Here a stand-in `criu` (--criu) fails the
/// way CRIU does, writing its reason to the log it was given; where CRIU is
/// missing the error says so.
#[test]
fn checkpoint_and_restore_run_criu_and_report_its_reason() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("criu");
    let args_file = dir.path().join("args");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nwhile [ $# -gt 0 ]; do case $1 in --work-dir) w=$2;; --log-file) l=$2;; esac; shift; done\necho '(00.001) Error (criu/kerndat.c:1234): kernel lacks what criu needs' > $w/$l\nexit 1\n",
            args_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut b = Bundle::new("busybox", &["sleep", "60"]);
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind"]}));
    let id = rt.run_detached(&b, "ckpt");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let img = dir.path().join("img");
    let work = dir.path().join("work");
    let out = rt
        .cmd()
        .arg("--criu")
        .arg(&fake)
        .args(["checkpoint", "--image-path"])
        .arg(&img)
        .arg("--work-path")
        .arg(&work)
        .args(["--tcp-established", "--file-locks", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("kernel lacks what criu needs"),
        "CRIU's reason: {e}"
    );
    assert!(e.contains("level=error"), "{e}");
    let args = std::fs::read_to_string(&args_file).unwrap();
    for want in [
        format!("dump --tree {pid} "),
        format!("--images-dir {}", img.display()),
        format!("--work-dir {}", work.display()),
        "--root /".to_string(),
        "--manage-cgroups".to_string(),
        "--tcp-established".to_string(),
        "--file-locks".to_string(),
        "--external mnt[/vol]:/vol".to_string(),
    ] {
        assert!(args.contains(&want), "{want:?} not in {args}");
    }
    assert_eq!(
        rt.state(&id)["status"],
        "running",
        "a failed checkpoint leaves it running"
    );

    // restore: CRIU's reason, and nothing is left.
    let rid = rt.id("restored");
    let out = rt
        .cmd()
        .arg("--criu")
        .arg(&fake)
        .args(["restore", "--detach", "--image-path"])
        .arg(&img)
        .arg("--work-path")
        .arg(&work)
        .arg("--bundle")
        .arg(b.path())
        .arg(&rid)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("kernel lacks what criu needs"),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::read_to_string(&args_file)
            .unwrap()
            .contains("restore --restore-detached")
    );
    assert!(!rt.root.path().join(&rid).exists());
    assert!(!Path::new("/sys/fs/cgroup/pids").join(&rid).exists());

    // --parent-path (a pre-dump) is relative to --image-path and must exist (runc).
    for parent in ["/abs/parent", "./no-such-parent"] {
        let out = rt
            .cmd()
            .arg("--criu")
            .arg(&fake)
            .args(["checkpoint", "--image-path"])
            .arg(&img)
            .args(["--parent-path", parent, &id])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("--parent-path"), "{}", stderr(&out));
    }

    // No CRIU at all: said so.
    let out = rt
        .cmd()
        .arg("--criu")
        .arg(dir.path().join("no-criu-here"))
        .args(["checkpoint", "--image-path"])
        .arg(&img)
        .arg(&id)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot run criu"), "{}", stderr(&out));

    // Only a running container can be checkpointed.
    assert!(rt.exec(&["kill", &id, "KILL"]).status.success());
    let out = rt
        .cmd()
        .arg("--criu")
        .arg(&fake)
        .args(["checkpoint", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
}

/// A failing poststart hook, as runc (and contest's poststart_fail): the hooks
/// after it do not run, `start` exits 1 with the hook's error, and the container
/// is ended, so the `delete` that follows removes it.
#[test]
fn poststart_failure_fails_start_and_ends_the_container() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let l = log.display().to_string();
    let mut b = Bundle::new("busybox", &["sleep", "60"]);
    b.config["hooks"] = json!({"poststart": [
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo hook_1 >> {l}")]},
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo hook_2 >> {l}; exit 1")]},
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo hook_3 >> {l}")]},
    ]});
    let id = rt.id("poststart");
    let (ok, err) = create(&rt, &b, &id);
    assert!(ok, "{err}");
    let out = rt.exec(&["start", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("poststart"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "hook_1\nhook_2\n");
    assert_eq!(rt.state(&id)["status"], "stopped");
    let out = rt.exec(&["delete", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The same for `exec`: the process `exec` starts loads the container's filter
/// and its notify fd goes to the agent, with that process's pid and the
/// container's state.
#[test]
fn seccomp_notify_fd_of_an_exec_goes_to_the_listener() {
    use std::os::fd::AsRawFd;
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut b = Bundle::new("busybox", &["sleep", "60"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    });
    let id = rt.run_detached(&b, "notify-exec");
    let (first, _fd) = agent_receive(&listener);
    let init = rt.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(first["pid"], init, "{first}");
    assert_eq!(first["metadata"], "", "{first}");
    let (ok, err) = rt.detached(&["exec", "--detach", &id, "sleep", "30"]);
    assert!(ok, "{err}");
    let (st, fd) = agent_receive(&listener);
    assert_eq!(st["fds"], json!(["seccompFd"]), "{st}");
    assert_eq!(st["state"]["id"], id.as_str(), "{st}");
    assert_eq!(st["state"]["pid"], init, "the container's state: {st}");
    assert_eq!(st["state"]["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap();
    assert_ne!(pid, init, "the exec'd process: {st}");
    // The stand-in's `setsid` execs `sleep` in place: give it the moment to.
    let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    for _ in 0..500 {
        if comm().trim() == "sleep" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(comm().trim(), "sleep");
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    assert_eq!(link.display().to_string(), "anon_inode:seccomp notify");
}

/// runc's `exec --cgroup [<controller>:]<path>`: the process runs in an existing
/// sub-cgroup of the container's; a path that leaves the container's cgroup, a
/// missing one or an unknown controller is an error.
#[test]
fn exec_into_a_sub_cgroup() {
    let rt = Runtime::new();
    let b = Bundle::new("busybox", &["sleep", "60"]);
    let id = rt.run_detached(&b, "execcg");
    let pids = berth_tests::cgroup_dir("pids", &id);
    assert!(pids.is_dir(), "{}", pids.display());
    for bad in [
        "..",
        "notexistspath",
        "pids:notexistspath",
        "waaaaat:/",
        "pids:../..",
    ] {
        let out = rt.exec(&["exec", "--cgroup", bad, &id, "true"]);
        assert!(!out.status.success(), "--cgroup {bad} accepted");
        assert!(stderr(&out).contains("--cgroup"), "{}", stderr(&out));
    }
    let out = rt.exec(&["exec", "--cgroup=/", &id, "cat", "/proc/self/cgroup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::create_dir(pids.join("sub")).unwrap();
    let out = rt.exec(&[
        "exec",
        "--cgroup",
        "pids:sub",
        &id,
        "cat",
        "/proc/self/cgroup",
    ]);
    let _ = std::fs::remove_dir(pids.join("sub"));
    assert!(out.status.success(), "{}", stderr(&out));
    let got = stdout(&out);
    let pids_line = got
        .lines()
        .find(|l| l.contains(":pids:"))
        .unwrap_or_else(|| panic!("{got}"));
    assert!(pids_line.ends_with(":/sub"), "{got}");
    let mem_line = got
        .lines()
        .find(|l| l.contains(":memory:"))
        .unwrap_or_else(|| panic!("{got}"));
    assert!(mem_line.ends_with(":/"), "{got}");
}

/// The bookkeeping around a CRIU that succeeds (a stand-in again: this host has
/// no working CRIU): checkpoint --leave-running keeps the container, checkpoint
/// without it removes it (CRIU ended its processes); restore records the
/// process CRIU restored (its --pidfile) as the running container, in cgroups of
/// its own, and delete removes it all.
#[test]
fn checkpoint_and_restore_bookkeeping_when_criu_succeeds() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("criu");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncmd=$1\nwhile [ $# -gt 0 ]; do case $1 in --pidfile) p=$2;; esac; shift; done\nif [ \"$cmd\" = restore ]; then setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $! > $p; fi\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let b = Bundle::new("busybox", &["sleep", "60"]);
    let id = rt.run_detached(&b, "ckpt-ok");
    let img = dir.path().join("img");
    let criu = |args: &[&str]| {
        rt.cmd()
            .arg("--criu")
            .arg(&fake)
            .args(args)
            .output()
            .unwrap()
    };
    let out = criu(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        img.to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rt.state(&id)["status"], "running");
    let out = criu(&["checkpoint", "--image-path", img.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&rt.exec(&["state", &id])).contains("does not exist"));

    let rid = rt.id("ckpt-restored");
    let out = criu(&[
        "restore",
        "--detach",
        "--image-path",
        img.to_str().unwrap(),
        "--bundle",
        b.path().to_str().unwrap(),
        &rid,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = rt.state(&rid);
    assert_eq!(st["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap();
    // The stand-in's `setsid` execs `sleep` in place: give it the moment to.
    let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    for _ in 0..500 {
        if comm().trim() == "sleep" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(comm().trim(), "sleep");
    let pids = berth_tests::cgroup_dir("pids", &rid);
    assert!(pids.is_dir(), "cgroups made for the restored container");
    assert!(rt.exec(&["delete", "--force", &rid]).status.success());
    assert!(!pids.exists(), "and removed with it");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.contains(") Z ")
        }
    );
}
