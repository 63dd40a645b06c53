//! containerd 1.6 (Debian) runs containers with berth-runtime as its runc binary:
//! the shim's create/start/state/exec/ps/kill/delete calls all go through berth.

use berth_tests::{bin, registry_addr, require_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

/// A containerd with its own root, state, socket and namespace; stopped and
/// cleaned up on drop, even when the test fails.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    namespace: String,
}

impl Containerd {
    fn start() -> Containerd {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("berth-containerd-")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{d}/containerd.sock\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (hack/setup.sh installs it)");
        let c = Containerd {
            dir,
            child,
            namespace: format!("berth-test-{}", std::process::id()),
        };
        for _ in 0..100 {
            if c.ctr(&["version"]).status.success() {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "containerd did not start: {}",
            std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
        );
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["-n", &self.namespace])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for c in ["bt-run", "bt-detached"] {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", c]);
            let _ = self.ctr(&["task", "delete", "-f", c]);
            let _ = self.ctr(&["container", "delete", c]);
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // Snapshot mounts left under its root, deepest first.
        let root = self.dir.path().to_str().unwrap().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: unmounting a path under our own temporary directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ =
            std::fs::remove_dir_all(PathBuf::from("/run/containerd/runc").join(&self.namespace));
        // containerd makes a cgroup per namespace and never removes it.
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(e.path().join(&self.namespace));
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn containerd_uses_berth_runtime_as_runc() {
    let c = Containerd::start();
    let runtime = bin("berth-runtime");
    let runtime = runtime.to_str().unwrap();
    let image = format!("{}/library/busybox:latest", registry_addr());
    let out = c.ctr(&["image", "pull", "--plain-http", &image]);
    assert!(out.status.success(), "{}", text(&out));

    let out = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        runtime,
        &image,
        "bt-run",
        "sh",
        "-c",
        "echo hello via containerd; echo $$",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello via containerd\n1\n"
    );

    let out = c.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        runtime,
        &image,
        "bt-detached",
        "sleep",
        "60",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bt-detached",
        "sh",
        "-c",
        "echo exec; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec\n");
    let out = c.ctr(&["task", "ps", "bt-detached"]);
    assert!(
        out.status.success() && text(&out).lines().count() >= 2,
        "{}",
        text(&out)
    );
    let out = c.ctr(&["task", "kill", "-s", "KILL", "bt-detached"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut stopped = false;
    for _ in 0..100 {
        if text(&c.ctr(&["task", "ls"])).contains("STOPPED") {
            stopped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(stopped, "{}", text(&c.ctr(&["task", "ls"])));
    let out = c.ctr(&["task", "delete", "bt-detached"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !Path::new("/run/containerd/runc")
            .join(&c.namespace)
            .join("bt-detached")
            .exists(),
        "berth's state removed"
    );
}
