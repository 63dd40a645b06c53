//! berth-runtime leaves no cgroup behind: every way out of `create` (success, each
//! kind of failure, `create` killed) and every `delete` (with and without
//! `--force`, of created, running, paused and stopped containers) is followed by
//! a census of the cgroup directories, in every v1 hierarchy and in cgroup2.
//!
//! Each case puts its container under a cgroupsPath of its own, two levels deep
//! (`/<tag>/ctr`), so berth creates the parent too and must remove it as well;
//! the census counts the directories whose path holds the tag, so other tests
//! (and other engineers) using cgroups at the same time do not disturb it.

use berth_tests::{Bundle, Runtime};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The mounted hierarchies: each directory of /sys/fs/cgroup that is a cgroup
/// filesystem of its own (v1 controllers, named hierarchies, cgroup2).
fn hierarchies() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        // Not the binds a container without a mount namespace has in its rootfs.
        .filter(|p| p.starts_with("/sys/fs/cgroup"))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn walk(dir: &Path, tag: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            if p.to_string_lossy().contains(tag) {
                out.push(p.clone());
            }
            walk(&p, tag, out);
        }
    }
}

/// Every cgroup directory, in any hierarchy, whose path contains `tag`.
fn census(tag: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in hierarchies() {
        walk(&h, tag, &mut out);
    }
    out
}

/// A case: a unique tag, a bundle whose cgroupsPath is `/<tag>/ctr`, and the
/// container's id (which holds the tag too).
struct Case {
    tag: String,
    id: String,
    bundle: Bundle,
}

fn case(rt: &Runtime, name: &str, args: &[&str]) -> Case {
    let tag = format!("berth-census-{}-{name}", std::process::id());
    let mut bundle = Bundle::new("busybox", args);
    bundle.config["linux"]["cgroupsPath"] = format!("/{tag}/ctr").into();
    let id = rt.id(&format!("census-{name}"));
    assert!(
        census(&tag).is_empty(),
        "{tag}: leftovers of an earlier run"
    );
    Case { tag, id, bundle }
}

impl Case {
    fn create(&self, rt: &Runtime) -> (bool, String) {
        self.bundle.write();
        rt.detached(&[
            "create",
            "--bundle",
            self.bundle.path().to_str().unwrap(),
            &self.id,
        ])
    }

    /// While the container exists: two directories (tag and ctr) per hierarchy.
    fn assert_present(&self) {
        let n = census(&self.tag).len();
        assert_eq!(
            n,
            2 * hierarchies().len(),
            "{}: expected /{}/ctr in each of {:?}, found {:?}",
            self.tag,
            self.tag,
            hierarchies(),
            census(&self.tag)
        );
    }

    /// Nothing of the container is left: no cgroup directory, no state.
    fn assert_gone(&self, rt: &Runtime, what: &str) {
        let left = census(&self.tag);
        assert!(left.is_empty(), "{what}: left behind {left:?}");
        assert!(
            !rt.root.path().join(&self.id).exists(),
            "{what}: state dir left behind"
        );
    }
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn census_created_container_deleted_with_and_without_force() {
    let rt = Runtime::new();
    for force in [false, true] {
        let c = case(&rt, &format!("created-{force}"), &["sleep", "60"]);
        let (ok_, err) = c.create(&rt);
        assert!(ok_, "{err}");
        c.assert_present();
        let args: Vec<&str> = if force {
            vec!["delete", "--force", &c.id]
        } else {
            vec!["delete", &c.id]
        };
        ok(&rt.exec(&args), "delete of a created container");
        c.assert_gone(
            &rt,
            &format!("delete (force {force}) of a created container"),
        );
    }
}

#[test]
fn census_running_container_deleted_with_force() {
    let rt = Runtime::new();
    let c = case(&rt, "running", &["sh", "-c", "sleep 60 & sleep 61 & wait"]);
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    ok(&rt.exec(&["start", &c.id]), "start");
    c.assert_present();
    let out = rt.exec(&["delete", &c.id]);
    assert!(
        !out.status.success(),
        "delete without --force of a running container"
    );
    c.assert_present();
    ok(&rt.exec(&["delete", "--force", &c.id]), "delete --force");
    c.assert_gone(&rt, "delete --force of a running container");
}

#[test]
fn census_stopped_container_deleted() {
    let rt = Runtime::new();
    let c = case(&rt, "stopped", &["true"]);
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    ok(&rt.exec(&["start", &c.id]), "start");
    rt.wait_status(&c.id, "stopped");
    c.assert_present();
    ok(&rt.exec(&["delete", &c.id]), "delete");
    c.assert_gone(&rt, "delete of a stopped container");
}

#[test]
fn census_delete_straight_after_start_or_kill() {
    // contest's flow: `kill` then `delete` at once (no wait in between), and
    // `delete` straight after `start` of a process that exits at once.
    let rt = Runtime::new();
    let c = case(&rt, "killdelete", &["sleep", "60"]);
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    ok(&rt.exec(&["start", &c.id]), "start");
    ok(&rt.exec(&["kill", &c.id, "9"]), "kill");
    ok(&rt.exec(&["delete", &c.id]), "delete right after kill");
    c.assert_gone(&rt, "kill then delete");

    let c = case(&rt, "startdelete", &["true"]);
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    ok(&rt.exec(&["start", &c.id]), "start");
    ok(
        &rt.exec(&["delete", &c.id]),
        "delete right after start of `true`",
    );
    c.assert_gone(&rt, "start then delete");
}

#[test]
fn census_paused_container_deleted_with_force() {
    let rt = Runtime::new();
    let c = case(&rt, "paused", &["sh", "-c", "sleep 60 & wait"]);
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    ok(&rt.exec(&["start", &c.id]), "start");
    ok(&rt.exec(&["pause", &c.id]), "pause");
    ok(&rt.exec(&["delete", "--force", &c.id]), "delete --force");
    c.assert_gone(&rt, "delete --force of a paused container");
}

#[test]
fn census_container_with_exec_processes() {
    let rt = Runtime::new();
    let c = case(&rt, "exec", &["sleep", "60"]);
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    ok(&rt.exec(&["start", &c.id]), "start");
    ok(&rt.exec(&["exec", &c.id, "true"]), "exec");
    let (ok_, err) = rt.detached(&["exec", "--detach", &c.id, "sleep", "61"]);
    assert!(ok_, "{err}");
    // The init dies; the exec'd sleep is still in the cgroup.
    ok(&rt.exec(&["kill", &c.id, "KILL"]), "kill");
    ok(&rt.exec(&["delete", &c.id]), "delete");
    c.assert_gone(&rt, "delete after exec");
}

#[test]
fn census_foreground_run() {
    let rt = Runtime::new();
    let c = case(&rt, "run", &["sh", "-c", "exit 3"]);
    c.bundle.write();
    let out = rt
        .cmd()
        .args(["run", "--bundle"])
        .arg(c.bundle.path())
        .arg(&c.id)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    c.assert_gone(&rt, "run in the foreground");
}

#[test]
fn census_failed_creates() {
    let rt = Runtime::new();
    let hook = |script: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "noprogram",
            Box::new(|c| c["process"]["args"] = json!(["/no/such/program"])),
        ),
        (
            "badcwd",
            Box::new(|c| c["process"]["cwd"] = "/no/such/dir".into()),
        ),
        (
            "prestart",
            Box::new(move |c| c["hooks"] = json!({"prestart": [hook("exit 3")]})),
        ),
        (
            "createruntime",
            Box::new(move |c| c["hooks"] = json!({"createRuntime": [hook("exit 3")]})),
        ),
        (
            "createcontainer",
            Box::new(move |c| c["hooks"] = json!({"createContainer": [hook("exit 3")]})),
        ),
        (
            "cpuset",
            Box::new(|c| c["linux"]["resources"] = json!({"cpu": {"cpus": "999"}})),
        ),
        (
            "sysctl",
            Box::new(|c| c["linux"]["sysctl"] = json!({"no.such.sysctl": "1"})),
        ),
        (
            "mount",
            Box::new(|c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}))
            }),
        ),
        (
            "seccomp-listener",
            Box::new(|c| {
                c["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "listenerPath": "/nonexistent/agent.sock",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
                })
            }),
        ),
        (
            "netdev",
            Box::new(|c| c["linux"]["netDevices"] = json!({"nosuchdev0": {}})),
        ),
        (
            "memorypolicy",
            Box::new(|c| c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "63"})),
        ),
        (
            "cpuaffinity",
            Box::new(|c| c["process"]["execCPUAffinity"] = json!({"final": "999"})),
        ),
        (
            "nomntns",
            Box::new(|c| {
                c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}]);
                c["linux"]["maskedPaths"] = json!([]);
                c["linux"]["readonlyPaths"] = json!([]);
                c["process"]["args"] = json!(["/no/such/program"]);
            }),
        ),
    ];
    for (name, edit) in cases {
        let mut c = case(&rt, name, &["true"]);
        edit(&mut c.bundle.config);
        let (ok_, err) = c.create(&rt);
        assert!(!ok_, "{name}: create must fail");
        assert!(err.contains("error"), "{name}: {err}");
        c.assert_gone(&rt, &format!("failed create ({name})"));
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let rootfs = c.bundle.path().canonicalize().unwrap();
        assert!(
            !info.contains(&rootfs.display().to_string()),
            "{name}: mounts left under the bundle:\n{info}"
        );
    }
}

#[test]
fn census_no_mount_namespace() {
    // Mounts in the runtime's namespace and cgroups both go at delete.
    let rt = Runtime::new();
    let mut c = case(&rt, "nomntns-ok", &["sleep", "60"]);
    c.bundle.config["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}]);
    c.bundle.config["linux"]["maskedPaths"] = json!([]);
    c.bundle.config["linux"]["readonlyPaths"] = json!([]);
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    c.assert_present();
    ok(&rt.exec(&["start", &c.id]), "start");
    ok(&rt.exec(&["kill", &c.id, "KILL"]), "kill");
    ok(&rt.exec(&["delete", &c.id]), "delete");
    c.assert_gone(&rt, "delete of a container without a mount namespace");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let rootfs = c.bundle.path().canonicalize().unwrap();
    assert!(
        !info.contains(&rootfs.display().to_string()),
        "mounts left under the bundle:\n{info}"
    );
}

/// `create` SIGKILLed while a hook of it runs: the runtime's own rollback never
/// runs, its guard must undo the create.
#[test]
fn census_killed_create() {
    let rt = Runtime::new();
    for kind in ["prestart", "createContainer"] {
        let mut c = case(&rt, &format!("killed-{kind}"), &["true"]);
        let marker = c.bundle.path().join("in-hook");
        // Both run before pivot_root, with the host's files in view.
        let path = marker.clone();
        let script = format!("echo $$ > {}; sleep 30", marker.display());
        c.bundle.config["hooks"] =
            json!({kind: [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
        c.bundle.write();
        let io = c.bundle.path().join("io");
        let mut child = rt
            .cmd()
            .args(["create", "--bundle"])
            .arg(c.bundle.path())
            .arg(&c.id)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&io).unwrap())
            .stderr(std::fs::File::create(&io).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(Instant::now() < deadline, "{kind} hook never ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        c.assert_present();
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while (!census(&c.tag).is_empty() || rt.root.path().join(&c.id).exists())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(pid) = std::fs::read_to_string(&path)
            && kind == "prestart"
        {
            // The prestart hook ran beside create, on the host: end it.
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: plain kill.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        c.assert_gone(&rt, &format!("create killed in its {kind} hook"));
    }
}

#[test]
fn census_failing_poststop_hook() {
    let rt = Runtime::new();
    let mut c = case(&rt, "poststop", &["true"]);
    c.bundle.config["hooks"] =
        json!({"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]});
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    ok(&rt.exec(&["start", &c.id]), "start");
    rt.wait_status(&c.id, "stopped");
    let out = rt.exec(&["delete", &c.id]);
    assert!(!out.status.success(), "the poststop failure is reported");
    c.assert_gone(&rt, "delete with a failing poststop hook");
}

#[test]
fn census_default_cgroups_path() {
    // No cgroupsPath: berth's default /<id> in every hierarchy, removed at delete.
    let rt = Runtime::new();
    let mut c = case(&rt, "default", &["sleep", "60"]);
    c.bundle.config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    c.tag = c.id.clone();
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    assert_eq!(
        census(&c.id).len(),
        hierarchies().len(),
        "{:?}",
        census(&c.id)
    );
    ok(&rt.exec(&["delete", &c.id]), "delete");
    c.assert_gone(&rt, "delete with the default cgroupsPath");
}

#[test]
fn census_failing_poststart_hook() {
    // start fails and ends the container (as runc); the delete that follows
    // (without --force) removes it.
    let rt = Runtime::new();
    let mut c = case(&rt, "poststart", &["sleep", "60"]);
    c.bundle.config["hooks"] =
        json!({"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]});
    let (ok_, err) = c.create(&rt);
    assert!(ok_, "{err}");
    assert!(!rt.exec(&["start", &c.id]).status.success());
    ok(
        &rt.exec(&["delete", &c.id]),
        "delete after a failed poststart",
    );
    c.assert_gone(&rt, "a failing poststart hook");
}
