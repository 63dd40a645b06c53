//! The image store end to end, through the `berth` CLI, against real registries.

use berth_tests::{TestRegistry, berth, bin, err, ok, registry_addr, require_root, testimages_dir};
use std::path::Path;

fn digest_of(name: &str) -> String {
    let tsv = std::fs::read_to_string(testimages_dir().join("digests.tsv")).unwrap();
    tsv.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}\t"))
                .map(|r| r.split('\t').nth(1).unwrap().to_string())
        })
        .unwrap()
}

/// Mounts the image's rootfs under `dir` for the length of `f`, then unmounts it.
fn with_rootfs(root: &Path, image: &str, dir: &Path, f: impl FnOnce(&Path)) {
    let target = dir.join("rootfs");
    ok(&berth(
        root,
        &[
            "mount",
            image,
            dir.join("rw").to_str().unwrap(),
            target.to_str().unwrap(),
        ],
    ));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
            // SAFETY: unmounting what this test mounted.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _guard = Unmount(target.clone());
    f(&target);
}

/// Builds a `berth-testimages --big MB:LAYERS` image and pushes it as `name`.
fn push_big(reg: &TestRegistry, spec: &str, name: &str) {
    let layouts = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("berth-testimages"))
        .args(["--big", spec, "--out"])
        .arg(layouts.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    reg.push(&layouts.path().join("big"), name, None);
}

#[test]
fn pull_by_tag_and_digest_list_inspect_remove() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let image = format!("{}/library/busybox:latest", registry_addr());
    let id = ok(&berth(r, &["pull", "-q", &image])).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let by_digest = format!(
        "{}/library/busybox@{}",
        registry_addr(),
        digest_of("busybox")
    );
    assert_eq!(
        ok(&berth(r, &["pull", "-q", &by_digest])).trim(),
        id,
        "same image by digest"
    );
    let list = ok(&berth(r, &["images"]));
    assert!(
        list.contains(&format!("{}/library/busybox", registry_addr())) && list.contains("latest"),
        "{list}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&berth(r, &["inspect", &image]))).unwrap();
    assert_eq!(inspect["id"], id.as_str());
    assert_eq!(inspect["config"]["config"]["Cmd"][0], "sh");
    assert!(
        inspect["repo_digests"][0]
            .as_str()
            .unwrap()
            .ends_with(&digest_of("busybox"))
    );
    // By short id too.
    ok(&berth(
        r,
        &["inspect", &id.trim_start_matches("sha256:")[..12]],
    ));

    let blobs = || {
        std::fs::read_dir(r.join("content/blobs/sha256"))
            .unwrap()
            .count()
    };
    assert!(blobs() >= 3, "manifest, config, layer");
    ok(&berth(r, &["rmi", &image]));
    assert_eq!(blobs(), 0, "removing the only image frees its blobs");
    assert_eq!(
        std::fs::read_dir(r.join("snapshots")).unwrap().count(),
        0,
        "and its snapshots"
    );
    let e = err(&berth(r, &["inspect", &image]));
    assert!(e.contains("not found"), "{e}");
}

#[test]
fn removing_one_tag_keeps_the_image() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let a = format!("{}/library/busybox:latest", registry_addr());
    let b = format!(
        "{}/library/busybox@{}",
        registry_addr(),
        digest_of("busybox")
    );
    ok(&berth(r, &["pull", "-q", &a]));
    // A second tag of the same image, through a mirror name.
    let mirror = format!("mirror.berth.test={}", registry_addr());
    ok(&berth(
        r,
        &[
            "--registry-mirror",
            &mirror,
            "pull",
            "-q",
            "mirror.berth.test/library/busybox:latest",
        ],
    ));
    ok(&berth(r, &["rmi", &a]));
    ok(&berth(
        r,
        &["inspect", "mirror.berth.test/library/busybox:latest"],
    ));
    ok(&berth(r, &["inspect", &b]));
}

#[test]
fn multiarch_index_picks_this_platform() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/multiarch:latest", registry_addr());
    ok(&berth(root.path(), &["pull", "-q", &image]));
    with_rootfs(root.path(), &image, root.path(), |fs| {
        assert_eq!(
            std::fs::read_to_string(fs.join("etc/berth-arch")).unwrap(),
            "amd64\n"
        );
    });
}

#[test]
fn layer_changes_are_right_in_the_mounted_rootfs() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    require_root();
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/layers:latest", registry_addr());
    ok(&berth(root.path(), &["pull", "-q", &image]));
    with_rootfs(root.path(), &image, root.path(), |fs| {
        let d = fs.join("data");
        assert!(!d.join("remove-me.txt").exists(), "whiteout");
        assert!(!d.join("removed-dir").exists(), "directory whiteout");
        let replaced: Vec<String> = std::fs::read_dir(d.join("replaced"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(replaced, ["new.txt"], "opaque directory");
        assert_eq!(
            std::fs::metadata(d.join("replaced")).unwrap().mode() & 0o7777,
            0o750
        );
        assert_eq!(
            std::fs::read_to_string(d.join("keep.txt")).unwrap(),
            "keep\n"
        );
        let (h, o) = (
            std::fs::metadata(d.join("hardlink.txt")).unwrap(),
            std::fs::metadata(d.join("original.txt")).unwrap(),
        );
        assert_eq!(h.ino(), o.ino(), "hard link");
        assert_eq!(
            std::fs::read_link(d.join("symlink")).unwrap(),
            Path::new("keep.txt")
        );
        assert_eq!(
            std::fs::read_link(d.join("abs-symlink")).unwrap(),
            Path::new("/data/keep.txt")
        );
        assert!(
            std::fs::symlink_metadata(d.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(
            std::fs::metadata(d.join("modes/secret")).unwrap().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(d.join("modes/setuid")).unwrap().mode() & 0o7777,
            0o4755
        );
        assert_eq!(
            std::fs::metadata(d.join("modes/sticky")).unwrap().mode() & 0o7777,
            0o1777
        );
        let uf = std::fs::metadata(d.join("owners/user-file")).unwrap();
        assert_eq!((uf.uid(), uf.gid()), (1000, 1000));
        assert_eq!(
            std::fs::metadata(d.join("owners/group-file"))
                .unwrap()
                .gid(),
            50
        );
        assert_eq!(
            std::fs::metadata(d.join("keep.txt")).unwrap().mtime(),
            1_700_000_000
        );
        let p = std::ffi::CString::new(d.join("xattr.txt").to_str().unwrap()).unwrap();
        let mut buf = [0u8; 32];
        // SAFETY: getxattr into a valid buffer.
        let n = unsafe {
            libc::getxattr(
                p.as_ptr(),
                c"user.berth".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(&buf[..n.max(0) as usize], b"layered");
        // Nothing of the OCI whiteout format shows through.
        assert!(
            !std::fs::read_dir(&d).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".wh."))
        );
    });
}

#[test]
fn dead_mirror_is_skipped_and_a_live_one_used() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let dead = "mirrored.berth.test=127.0.0.1:1";
    let live = format!("mirrored.berth.test={}", registry_addr());
    let out = berth(
        root.path(),
        &[
            "--registry-mirror",
            dead,
            "--registry-mirror",
            &live,
            "pull",
            "-q",
            "mirrored.berth.test/library/busybox:latest",
        ],
    );
    ok(&out);
    let list = ok(&berth(root.path(), &["images"]));
    assert!(
        list.contains("mirrored.berth.test/library/busybox"),
        "names stay as asked: {list}"
    );
}

#[test]
fn registry_errors_are_one_clear_line() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let e = err(&berth(
        root.path(),
        &[
            "pull",
            &format!("{}/library/no-such-image:latest", registry_addr()),
        ],
    ));
    assert!(
        e.contains("manifest unknown") && e.lines().count() == 1,
        "{e}"
    );
    let e = err(&berth(
        root.path(),
        &["pull", "127.0.0.1:1/library/busybox:latest"],
    ));
    assert!(e.contains("cannot reach registry 127.0.0.1:1"), "{e}");
    let e = err(&berth(root.path(), &["pull", "Bad//Name"]));
    assert!(e.contains("invalid image reference"), "{e}");
}

#[test]
fn auth_with_an_htpasswd_registry() {
    require_root();
    let hash = std::process::Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .expect("htpasswd (apache2-utils)");
    let reg = TestRegistry::start(5011, Some(&String::from_utf8_lossy(&hash.stdout)));
    reg.push(
        &testimages_dir().join("busybox"),
        "busybox",
        Some("alice:s3cret"),
    );
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/busybox:latest", reg.addr);
    let e = err(&berth(root.path(), &["pull", &image]));
    assert!(e.contains("401 unauthorized"), "{e}");
    let e = err(&berth(
        root.path(),
        &["pull", "--creds", "alice:wrong", &image],
    ));
    assert!(e.contains("401 unauthorized"), "{e}");
    ok(&berth(
        root.path(),
        &["pull", "-q", "--creds", "alice:s3cret", &image],
    ));
}

#[test]
fn corrupted_blob_is_rejected_and_nothing_stored() {
    require_root();
    let reg = TestRegistry::start(5012, None);
    reg.push(&testimages_dir().join("layers"), "layers", None);
    // Tamper with the top layer as the registry stores it.
    let layout = testimages_dir().join("layers");
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let top = manifest["layers"][2]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = reg.blob_file(&top);
    let mut data = std::fs::read(&stored).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&stored, data).unwrap();

    let root = tempfile::tempdir().unwrap();
    let e = err(&berth(
        root.path(),
        &["pull", &format!("{}/library/layers:latest", reg.addr)],
    ));
    assert!(
        e.contains("digest mismatch") || e.contains("corrupt") || e.contains("invalid"),
        "{e}"
    );
    let hex = top.trim_start_matches("sha256:");
    assert!(
        !root.path().join("content/blobs/sha256").join(hex).exists(),
        "the bad blob is not stored"
    );
    let tmp = std::fs::read_dir(root.path().join("snapshots"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp")
        })
        .count();
    assert_eq!(tmp, 0, "no half-unpacked snapshot left");
    assert_eq!(
        std::fs::read_dir(root.path().join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
    assert!(
        ok(&berth(root.path(), &["images", "-q"])).trim().is_empty(),
        "no image recorded"
    );
}

#[test]
fn hostile_layers_land_inside_the_root_or_are_refused() {
    require_root();
    let target = Path::new("/tmp/berth-hostile-escape");
    let _ = std::fs::remove_file(target);
    let root = tempfile::tempdir().unwrap();
    // `..`, absolute paths and symlinks out are clamped to the root, as
    // containerd clamps them: the file lands in the image's /tmp.
    for name in ["hostile-dotdot", "hostile-absolute", "hostile-symlink"] {
        let image = format!("{}/library/{name}:latest", registry_addr());
        ok(&berth(root.path(), &["pull", "-q", &image]));
        assert!(!target.exists(), "{name} wrote outside the layer");
        let out = ok(&berth(
            root.path(),
            &[
                "run",
                "--rm",
                "--network",
                "none",
                &image,
                "cat",
                "/tmp/berth-hostile-escape",
            ],
        ));
        assert_eq!(out, "escaped", "{name}");
    }
    for (name, entry) in [
        ("hostile-hardlink", "passwd-link"),
        ("hostile-whiteout", "etc/.wh..."),
    ] {
        let e = err(&berth(
            root.path(),
            &[
                "pull",
                &format!("{}/library/{name}:latest", registry_addr()),
            ],
        ));
        assert!(e.contains("refused") && e.contains(entry), "{name}: {e}");
        assert!(!target.exists(), "{name} wrote outside the layer");
    }
    assert!(
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("root:"),
        "host file untouched"
    );
}

#[test]
fn killed_pull_is_finished_by_the_next_one() {
    require_root();
    let reg = TestRegistry::start(5013, None);
    push_big(&reg, "96:6", "big");
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/big:latest", reg.addr);
    for delay_ms in [30u64, 120] {
        let mut child = std::process::Command::new(bin("berth"))
            .arg("--root")
            .arg(root.path())
            .args(["pull", "-q", &image])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    ok(&berth(root.path(), &["pull", "-q", &image]));
    // Consistent: every recorded layer has its blob and snapshot, nothing half-made.
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&berth(root.path(), &["inspect", &image]))).unwrap();
    for (layer, chain) in inspect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(inspect["chain_ids"].as_array().unwrap())
    {
        let hex = |v: &serde_json::Value| {
            v.as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        };
        assert!(
            root.path()
                .join("content/blobs/sha256")
                .join(hex(layer))
                .exists()
        );
        assert!(
            root.path()
                .join("snapshots")
                .join(hex(chain))
                .join("fs/data")
                .is_dir()
        );
    }
    assert_eq!(
        std::fs::read_dir(root.path().join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
    assert!(
        !std::fs::read_dir(root.path().join("snapshots"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".tmp"))
    );
}

#[test]
fn many_layers_mount_and_usage_counts_the_store() {
    require_root();
    let reg = TestRegistry::start(5014, None);
    // 80 layers: more lower directories than one overlay mount option string holds.
    push_big(&reg, "1:80", "many");
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/many:latest", reg.addr);
    ok(&berth(root.path(), &["pull", "-q", &image]));
    with_rootfs(root.path(), &image, root.path(), |fs| {
        assert!(fs.join("data/layer0-file0.bin").exists(), "bottom layer");
        assert!(fs.join("data/layer79-file3.bin").exists(), "top layer");
    });
    let out = std::process::Command::new(bin("berth"))
        .arg("--root")
        .arg(root.path())
        .arg("images")
        .env("BERTH_SHOW_USAGE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let bytes: u64 = text
        .split_whitespace()
        .nth(2)
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(bytes > 1 << 20, "the layers are counted: {text}");
}
