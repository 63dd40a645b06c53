//! Layers applied as containerd applies them, and what a registry sends checked
//! against what the manifest declares. The images are made here and served by a
//! registry that lies where a test needs it to (tests/src/hostile_registry.rs),
//! so this binary needs nothing but the busybox test image's base layer.

use berth_tests::hostile_registry::{Body, HostileRegistry, Image, digest, tar_of};
use berth_tests::{berth, err, ok, require_root, testimages_dir};
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tar::EntryType as T;

/// The busybox test image's layer, uncompressed: a base that runs `sh`.
fn busybox_layer() -> Vec<u8> {
    let layout = testimages_dir().join("busybox");
    let read = |p: PathBuf| {
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}: run hack/testimages.sh", p.display()))
    };
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&read(layout.join("index.json"))).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&read(blob(
        index["manifests"][0]["digest"].as_str().unwrap(),
    )))
    .unwrap();
    let gz = read(blob(manifest["layers"][0]["digest"].as_str().unwrap()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Nothing under the store's content or snapshots but what a finished pull left.
fn nothing_stored(root: &Path, digest: &str) {
    let blob = root
        .join("content/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    assert!(!blob.exists(), "{} was stored", blob.display());
    let partial = std::fs::read_dir(root.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(partial, 0, "a half-unpacked snapshot was left");
    let ingest = std::fs::read_dir(root.join("content/ingest"))
        .into_iter()
        .flatten()
        .count();
    assert_eq!(ingest, 0, "a partial download was left");
    assert!(
        ok(&berth(root, &["images", "-q"])).trim().is_empty(),
        "no image is recorded"
    );
}

/// Host paths the hostile entries aim at; none may appear.
const HOST_TARGETS: [&str; 3] = [
    "/tmp/berth-layers-dotdot",
    "/tmp/berth-layers-abs",
    "/tmp/berth-layers-sym",
];

#[test]
fn a_layer_is_applied_onto_its_parents_view_and_stays_inside_the_root() {
    require_root();
    for t in HOST_TARGETS {
        let _ = std::fs::remove_file(t);
    }
    let reg = HostileRegistry::start();
    let base = busybox_layer();
    // L2: the usrmerge symlink, as distributions ship it.
    let l2 = tar_of(&[
        ("usr/", T::Directory, b"", None, &[]),
        ("usr/lib/", T::Directory, b"", None, &[]),
        ("lib", T::Symlink, b"", Some("usr/lib"), &[]),
    ]);
    // L3, written by hand as Bazel, apko or crane append do: no directory
    // entries, a path through L2's symlink, paths that try to leave the root.
    let l3 = tar_of(&[
        ("lib/x.so", T::Regular, b"through the symlink\n", None, &[]),
        ("lib/x-link", T::Link, b"", Some("lib/x.so"), &[]),
        ("bin/sh-link", T::Link, b"", Some("bin/busybox"), &[]),
        (
            "../../../../../../tmp/berth-layers-dotdot",
            T::Regular,
            b"dotdot\n",
            None,
            &[],
        ),
        ("/tmp/berth-layers-abs", T::Regular, b"abs\n", None, &[]),
        ("escape", T::Symlink, b"", Some("/../../tmp"), &[]),
        ("escape/berth-layers-sym", T::Regular, b"sym\n", None, &[]),
    ]);
    Image::new(vec![base, l2, l3], None, None).serve(&reg, "t/usrmerge", "latest");
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/t/usrmerge:latest", reg.addr);
    ok(&berth(root.path(), &["pull", "-q", &image]));
    for t in HOST_TARGETS {
        assert!(!Path::new(t).exists(), "{t} was written on the host");
    }
    let out = ok(&berth(
        root.path(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "readlink /lib; cat /lib/x.so /usr/lib/x-link; ls /usr/lib; cat /tmp/berth-layers-dotdot /tmp/berth-layers-abs /tmp/berth-layers-sym; cmp /bin/sh-link /bin/busybox && echo linked",
        ],
    ));
    assert_eq!(
        out,
        "usr/lib\nthrough the symlink\nthrough the symlink\nx-link\nx.so\ndotdot\nabs\nsym\nlinked\n"
    );
    for t in HOST_TARGETS {
        assert!(!Path::new(t).exists(), "{t} was written on the host");
    }
}

#[test]
fn a_hard_link_that_leaves_the_root_is_refused() {
    require_root();
    let reg = HostileRegistry::start();
    let l = tar_of(&[(
        "passwd",
        T::Link,
        b"",
        Some("../../../../../../etc/passwd"),
        &[],
    )]);
    Image::new(vec![busybox_layer(), l], None, None).serve(&reg, "t/hardlink", "latest");
    let root = tempfile::tempdir().unwrap();
    let e = err(&berth(
        root.path(),
        &["pull", &format!("{}/t/hardlink:latest", reg.addr)],
    ));
    assert!(
        e.contains("leaves the root; refused") && e.contains("passwd"),
        "{e}"
    );
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: lgetxattr into a buffer of its length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

#[test]
fn privileged_xattrs_from_a_layer_are_dropped() {
    require_root();
    let reg = HostileRegistry::start();
    let redirect: &[(&str, &[u8])] = &[
        ("trusted.overlay.redirect", b"/../../tmp"),
        ("security.selinux", b"system_u:object_r:shadow_t:s0"),
        ("user.berth", b"kept"),
    ];
    let opaque: &[(&str, &[u8])] = &[("trusted.overlay.opaque", b"y")];
    let l = tar_of(&[
        ("marked", T::Regular, b"x", None, redirect),
        ("bin/", T::Directory, b"", None, opaque),
        ("bin/extra", T::Regular, b"x", None, &[]),
    ]);
    Image::new(vec![busybox_layer(), l], None, None).serve(&reg, "t/xattrs", "latest");
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/t/xattrs:latest", reg.addr);
    ok(&berth(root.path(), &["pull", "-q", &image]));
    let snapshot = std::fs::read_dir(root.path().join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("fs"))
        .find(|fs| fs.join("marked").exists())
        .expect("the layer's snapshot");
    let f = snapshot.join("marked");
    assert_eq!(xattr(&f, "user.berth").as_deref(), Some(&b"kept"[..]));
    assert_eq!(xattr(&f, "trusted.overlay.redirect"), None);
    assert_eq!(xattr(&f, "security.selinux"), None);
    assert_eq!(xattr(&snapshot.join("bin"), "trusted.overlay.opaque"), None);
    // Without the forged opaque marker, the lower layer's /bin shows through.
    let out = ok(&berth(
        root.path(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "ls",
            "/bin/busybox",
            "/bin/extra",
        ],
    ));
    assert_eq!(out, "/bin/busybox\n/bin/extra\n");
}

/// An image whose second layer the manifest declares `size(real size)` long.
fn image_with_declared_size(size: impl Fn(u64) -> u64) -> Image {
    let layers = vec![
        busybox_layer(),
        tar_of(&[("f", T::Regular, &[7u8; 100], None, &[])]),
    ];
    let sizes = vec![layers[0].len() as u64, size(layers[1].len() as u64)];
    Image::new(layers, None, Some(sizes))
}

#[test]
fn a_blob_longer_or_shorter_than_its_descriptor_is_refused() {
    require_root();
    let reg = HostileRegistry::start();
    // With a Content-Length the size is refused before a byte is read; without
    // one, as the bytes come.
    let cases = [
        ("t/long", -100i64, false, "(its Content-Length)"),
        ("t/short", 100, false, "(its Content-Length)"),
        ("t/long-unsized", -100, true, "more than"),
        ("t/short-unsized", 100, true, "only"),
    ];
    for (repo, delta, no_length, says) in cases {
        let img = image_with_declared_size(|real| (real as i64 + delta) as u64);
        img.serve(&reg, repo, "latest");
        // The blob has the right digest: only its size is wrong.
        let layer = digest(&img.layers[1]);
        if no_length {
            reg.blob(repo, &layer, Body::Unsized(img.layers[1].clone()));
        }
        let root = tempfile::tempdir().unwrap();
        let e = err(&berth(
            root.path(),
            &["pull", &format!("{}/{repo}:latest", reg.addr)],
        ));
        assert!(
            e.contains("where the manifest declares") && e.contains(says),
            "{repo}: {e}"
        );
        nothing_stored(root.path(), &layer);
    }
}

#[test]
fn an_endless_blob_is_cut_at_its_declared_size() {
    require_root();
    let reg = HostileRegistry::start();
    let img = image_with_declared_size(|_| 4096);
    img.serve(&reg, "t/endless", "latest");
    let layer = digest(&img.layers[1]);
    let path = format!("/v2/t/endless/blobs/{layer}");
    reg.route(&path, Body::Endless { limit: 1 << 30 });
    let root = tempfile::tempdir().unwrap();
    let e = err(&berth(
        root.path(),
        &["pull", &format!("{}/t/endless:latest", reg.addr)],
    ));
    assert!(e.contains("more than 4096"), "{e}");
    // The client stopped reading: the server could not push 1 GiB into it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        reg.sent_to(&path) < 64 << 20,
        "{} bytes were taken",
        reg.sent_to(&path)
    );
    nothing_stored(root.path(), &layer);
}

#[test]
fn oversized_manifests_and_configs_are_refused() {
    require_root();
    let reg = HostileRegistry::start();
    let img = Image::new(vec![busybox_layer()], None, None);
    // A manifest padded past 4 MiB (JSON allows any whitespace).
    let mut big = img.manifest.clone();
    big.pop();
    big.extend(std::iter::repeat_n(b' ', 5 << 20));
    big.push(b'}');
    reg.manifest("t/bigmanifest", "latest", &big);
    let root = tempfile::tempdir().unwrap();
    let e = err(&berth(
        root.path(),
        &["pull", &format!("{}/t/bigmanifest:latest", reg.addr)],
    ));
    assert!(e.contains("manifest") && e.contains("larger than"), "{e}");
    // A config longer than its descriptor says.
    img.serve(&reg, "t/config", "latest");
    let mut longer = img.config.clone();
    longer.extend_from_slice(b"          ");
    reg.blob("t/config", &digest(&img.config), Body::Unsized(longer));
    let e = err(&berth(
        root.path(),
        &["pull", &format!("{}/t/config:latest", reg.addr)],
    ));
    assert!(e.contains("where the manifest declares"), "{e}");
    nothing_stored(root.path(), &digest(&img.config));
}

#[test]
fn a_diff_id_mismatch_names_the_uncompressed_layer() {
    require_root();
    let reg = HostileRegistry::start();
    let base = busybox_layer();
    let wrong = digest(b"not this layer");
    Image::new(vec![base.clone()], Some(vec![wrong.clone()]), None)
        .serve(&reg, "t/diffid", "latest");
    let root = tempfile::tempdir().unwrap();
    let e = err(&berth(
        root.path(),
        &["pull", &format!("{}/t/diffid:latest", reg.addr)],
    ));
    assert!(
        e.contains("the uncompressed layer hashes to")
            && e.contains(&digest(&base))
            && e.contains(&format!("not to the diff_id {wrong}")),
        "{e}"
    );
    nothing_stored(root.path(), &digest(&base));
}

#[test]
fn a_failed_pull_says_what_each_registry_answered() {
    require_root();
    let mirror = HostileRegistry::start();
    let root = tempfile::tempdir().unwrap();
    let e = err(&berth(
        root.path(),
        &[
            "--registry-mirror",
            &format!("registry.berth.test={}", mirror.addr),
            "pull",
            "registry.berth.test/library/no-such-image:latest",
        ],
    ));
    assert!(
        e.contains(&format!("mirror {}: manifest unknown (404)", mirror.addr))
            && e.contains("registry.berth.test: unreachable"),
        "{e}"
    );
}
