//! Helpers shared by the end-to-end tests: where the binaries and test images are,
//! bundles unpacked from the test images, and containers that are force-deleted
//! when a test ends, passed or failed.

pub mod berthd;
pub mod census;
pub mod cri;
pub mod hostile_registry;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// A berth binary: from `$BERTH_BIN_DIR` (hack/test.sh sets it), else target/debug.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("BERTH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run hack/test.sh (or cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// Where hack/testimages.sh wrote the OCI layouts and digests.tsv.
pub fn testimages_dir() -> PathBuf {
    std::env::var_os("BERTH_TESTIMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/testimages"))
}

pub fn registry_addr() -> String {
    std::env::var("BERTH_REGISTRY_ADDR").unwrap_or_else(|_| "127.0.0.1:5000".to_string())
}

pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the end-to-end tests must run as root (hack/test.sh)"
    );
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .expect("json")
}

/// Unpacks the layers of a single-manifest test image (no whiteouts) into `dest`.
pub fn unpack_image(name: &str, dest: &Path) {
    let layout = testimages_dir().join(name);
    assert!(
        layout.exists(),
        "{} missing: run hack/testimages.sh",
        layout.display()
    );
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&blob(
        index["manifests"][0]["digest"].as_str().expect("digest"),
    ));
    for layer in manifest["layers"].as_array().expect("layers") {
        let f =
            std::fs::File::open(blob(layer["digest"].as_str().expect("digest"))).expect("layer");
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        ar.set_preserve_permissions(true);
        ar.set_preserve_ownerships(true);
        ar.set_overwrite(true);
        ar.unpack(dest).expect("unpack layer");
    }
}

/// A bundle in a temporary directory: rootfs from a test image, config.json from
/// `berth-runtime spec` with the terminal off, editable before `write`.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new(image: &str, args: &[&str]) -> Bundle {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("rootfs")).expect("rootfs");
        unpack_image(image, &dir.path().join("rootfs"));
        let out = Command::new(bin("berth-runtime"))
            .arg("spec")
            .current_dir(dir.path())
            .output()
            .expect("spec");
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config = read_json(&dir.path().join("config.json"));
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        Bundle { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

/// A runtime state root of its own per test, and the containers made in it, which
/// are force-deleted on drop.
pub struct Runtime {
    pub root: tempfile::TempDir,
    ids: std::cell::RefCell<Vec<String>>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        let root = tempfile::Builder::new()
            .prefix("berth-root-")
            .tempdir_in("/run")
            .expect("root dir");
        Runtime {
            root,
            ids: Default::default(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin("berth-runtime"));
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Runs `berth-runtime <args>` and returns its output. Only for commands that
    /// leave no container process behind holding the output pipes: use `detached`
    /// for `create` and `run --detach`.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("berth-runtime")
    }

    /// Runs a command that leaves a container process running (`create`, `run -d`):
    /// its stdio goes to files, as a shim would give it, since the container
    /// inherits them. Returns (success, stderr of the runtime and container).
    pub fn detached(&self, args: &[&str]) -> (bool, String) {
        let dir = self.root.path().join(".io");
        std::fs::create_dir_all(&dir).unwrap();
        let err_path = dir.join(format!("stderr-{}", args.last().unwrap_or(&"x")));
        let out = std::fs::File::create(dir.join("stdout")).unwrap();
        let err = std::fs::File::create(&err_path).unwrap();
        let status = self
            .cmd()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .expect("berth-runtime");
        (
            status.success(),
            std::fs::read_to_string(err_path).unwrap_or_default(),
        )
    }

    /// Registers `id` for cleanup and returns it, made unique to this process.
    pub fn id(&self, name: &str) -> String {
        let id = format!("{name}-{}", std::process::id());
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// `run` in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, bundle: &Bundle, name: &str) -> (i32, String, String) {
        bundle.write();
        let id = self.id(name);
        let out = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `run --detach` of the bundle; returns the container's id.
    pub fn run_detached(&self, bundle: &Bundle, name: &str) -> String {
        bundle.write();
        let id = self.id(name);
        let (ok, err) = self.detached(&[
            "run",
            "--detach",
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ]);
        assert!(ok, "run --detach {id}: {err}");
        id
    }

    pub fn state(&self, id: &str) -> Value {
        let out = self.exec(&["state", id]);
        assert!(
            out.status.success(),
            "state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state json")
    }

    /// Waits until the container's status is `want`.
    pub fn wait_status(&self, id: &str, want: &str) {
        for _ in 0..500 {
            if self.state(id)["status"] == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{id} never reached {want}: {}", self.state(id));
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.exec(&["delete", "--force", id]);
        }
    }
}

/// Receives one fd sent with SCM_RIGHTS (the console socket protocol).
pub fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cbuf = [0u8; 64];
    // SAFETY: a zeroed msghdr pointing at live buffers.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        assert!(libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) > 0, "recvmsg");
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(
            !c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS,
            "no fd sent"
        );
        std::os::fd::OwnedFd::from_raw_fd(
            std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32),
        )
    }
}

/// The host directory of a container's cgroup for `controller` (v1) or the
/// unified one (v2), for the default cgroupsPath `/<id>`.
pub fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup").join(controller);
    if v1.is_dir() {
        v1.join(id)
    } else {
        Path::new("/sys/fs/cgroup").join(id)
    }
}

/// A registry of a test's own (Debian's docker-registry on a loopback port, with
/// temporary storage and optional htpasswd auth), stopped on drop.
pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub addr: String,
    child: std::process::Child,
}

impl TestRegistry {
    pub fn start(port: u16, htpasswd: Option<&str>) -> TestRegistry {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        if let Some(h) = htpasswd {
            std::fs::write(dir.path().join("htpasswd"), h).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (hack/setup.sh installs it)");
        let reg = TestRegistry { dir, addr, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&reg.addr).is_ok() {
                return reg;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("registry on {} did not start", reg.addr);
    }

    /// Pushes an OCI layout's `latest` as `library/<name>:latest`.
    pub fn push(&self, layout: &Path, name: &str, creds: Option<&str>) {
        let mut c = Command::new("skopeo");
        c.args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(cr) = creds {
            c.args(["--dest-creds", cr]);
        }
        let out = c
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}/library/{name}:latest", self.addr))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The file the registry stores a blob in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `berth` CLI with a store root of the caller's.
pub fn berth(root: &Path, args: &[&str]) -> Output {
    Command::new(bin("berth"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("berth")
}

/// The stdout of a command that must have succeeded (else its output is shown).
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The stderr of a command that must have failed.
pub fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}
