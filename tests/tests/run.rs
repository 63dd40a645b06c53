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
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from berth\nberth-run-te\n"
    );
    assert!(
        !root.path().join("cli/containers/berth-run-test").exists(),
        "--rm removes the container"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.path().to_str().unwrap()),
        "no mount left"
    );
    for h in ["pids", "memory", ""] {
        assert!(
            !Path::new("/sys/fs/cgroup")
                .join(h)
                .join("berth/berth-run-test")
                .exists(),
            "no cgroup left"
        );
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
