//! A berthd of the test's own: its socket, root, state and CNI config in a fresh
//! directory under /run, its own bridge and subnet, a tonic client, and cleanup
//! that leaves nothing behind when the test ends (passed or failed): berthd, its
//! shims and containers, mounts, network namespaces and the bridge.

use crate::{bin, registry_addr, require_root};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Berthd {
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    pub bridge: Option<String>,
}

/// The bridge and subnet of each berthd in one test process are distinct.
static NEXT_NET: AtomicU32 = AtomicU32::new(0);

impl Berthd {
    /// berthd with no CNI config (NetworkReady false).
    pub fn start() -> Berthd {
        Berthd::launch(false)
    }

    /// berthd with a bridge network (bridge, host-local, portmap).
    pub fn with_network() -> Berthd {
        Berthd::launch(true)
    }

    /// berthd with a bridge network and extra top-level config lines.
    pub fn with_config(extra: &str) -> Berthd {
        Berthd::launch_with(true, extra)
    }

    /// berthd with a bridge network whose root (images, records) is a tmpfs of
    /// `mib` MiB: a small disk that fills up.
    pub fn with_small_root(mib: u32) -> Berthd {
        Berthd::launch_opts(true, "", Some(mib))
    }

    fn launch(network: bool) -> Berthd {
        Berthd::launch_with(network, "")
    }

    fn launch_with(network: bool, extra: &str) -> Berthd {
        Berthd::launch_opts(network, extra, None)
    }

    fn launch_opts(network: bool, extra: &str, root_mib: Option<u32>) -> Berthd {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("b-")
            .tempdir_in("/run")
            .unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("cni")).unwrap();
        if let Some(mib) = root_mib {
            std::fs::create_dir_all(d.join("root")).unwrap();
            let st = std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={mib}m"),
                    "berth-test-root",
                ])
                .arg(d.join("root"))
                .status()
                .unwrap();
            assert!(st.success(), "mounting a tmpfs root");
        }
        let mut bridge = None;
        if network {
            // Unique per process and instance: tests of different binaries run one
            // after another, tests of one binary in parallel.
            let n = (std::process::id() % 1000) * 8 + NEXT_NET.fetch_add(1, Ordering::SeqCst) % 8;
            let name = format!("berth-t{n}");
            let conf = serde_json::json!({
                "cniVersion": "1.0.0",
                "name": format!("berth-test-{n}"),
                "plugins": [
                    {"type": "bridge", "bridge": name, "isGateway": true, "ipMasq": false,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": format!("10.{}.{}.0/24", 200 + n / 200, n % 200)}]],
                              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": d.join("ipam")}},
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            });
            std::fs::write(d.join("cni/10-test.conflist"), conf.to_string()).unwrap();
            bridge = Some(name);
        }
        let config = format!(
            "{extra}\nlisten = \"{0}/berth.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/s\"\nruntime = \"{1}\"\nshim = \"{2}\"\n\
             [registry.mirrors]\n\"registry.berth.test\" = [\"{3}\"]\n[cni]\nconf_dir = \"{0}/cni\"\n",
            d.display(),
            bin("berth-runtime").display(),
            bin("berth-shim").display(),
            registry_addr(),
        );
        std::fs::write(d.join("berth.toml"), config).unwrap();
        let mut b = Berthd {
            dir,
            child: None,
            bridge,
        };
        b.restart();
        b
    }

    /// Starts berthd (again) on the same directories.
    pub fn restart(&mut self) {
        self.restart_env(&[]);
    }

    /// Starts berthd (again) with extra environment variables (`BERTH_CRASH_AT`).
    pub fn restart_env(&mut self, env: &[(&str, &str)]) {
        self.stop();
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("berthd.log"))
            .unwrap();
        let _ = std::fs::remove_file(self.sock());
        let child = std::process::Command::new(bin("berthd"))
            .arg("--config")
            .arg(d.join("berth.toml"))
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..400 {
            if self.sock().exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("berthd did not start: {}", self.log());
    }

    /// Waits up to `timeout` for berthd to exit on its own (a crash point).
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        None
    }

    /// berthd's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: berthd dies with no chance to clean anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The pid of a container's init, as berthd's runtime records it.
    pub fn init_pid(&self, id: &str) -> u32 {
        let out = std::process::Command::new(bin("berth-runtime"))
            .arg("--root")
            .arg(self.state().join("runtime"))
            .args(["state", id])
            .output()
            .unwrap();
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "runtime state of {id}: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        state["pid"].as_u64().expect("a pid in the runtime state") as u32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("berth.sock")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("s")
    }

    /// A channel to berthd; panics with berthd's log if it does not answer.
    pub async fn channel(&self) -> tonic::transport::Channel {
        for _ in 0..40 {
            if tokio::net::UnixStream::connect(self.sock()).await.is_ok() {
                return connect(self.sock()).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "berthd does not answer on {}: {}",
            self.sock().display(),
            self.log()
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: stopping the berthd this test started; SIGKILL if it lingers.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            for _ in 0..400 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A gRPC channel over the CRI unix socket at `path`.
pub async fn connect(path: PathBuf) -> tonic::transport::Channel {
    tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("connecting to the CRI socket")
}

/// Kills every shim under `state/shims`, force-deletes the runtime's containers,
/// unmounts everything under `dir`.
pub fn sweep(dir: &Path, state: &Path) {
    for e in std::fs::read_dir(state.join("shims"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some(pid) = std::fs::read_to_string(e.path().join("shim.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: killing a shim this test's berthd started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let rt_root = state.join("runtime");
    for e in std::fs::read_dir(&rt_root).into_iter().flatten().flatten() {
        let _ = std::process::Command::new(bin("berth-runtime"))
            .arg("--root")
            .arg(&rt_root)
            .args(["delete", "--force"])
            .arg(e.file_name())
            .output();
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in points {
        let c = std::ffi::CString::new(m).unwrap();
        // SAFETY: unmounting what this test mounted.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        self.stop();
        sweep(self.dir.path(), &self.state());
        if let Some(b) = &self.bridge {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", b])
                .output();
        }
    }
}
