//! Image volumes (KEP-4639) end to end: a CRI mount naming an image instead of a
//! host path, as kubelet sends it. The image's files appear read-only at the
//! container path (or only its `image_sub_path`), a missing image and a sub-path
//! that leaves the image are refused, the image stays while a container uses it,
//! and nothing stays mounted or pinned once the container is removed, also
//! after berthd was killed. Each test has its own berthd, whose drop sweeps
//! every shim, container and mount it made, passed or failed.

use berth_proto::v1::*;
use berth_tests::berthd::Berthd;
use berth_tests::cri::{BUSYBOX, Cri, container_config, pod_config};
use std::path::Path;
use tonic::Code;

const LAYERS: &str = "registry.berth.test/library/layers:latest";
const HTTPD: &str = "registry.berth.test/library/httpd:latest";

fn image_mount(path: &str, image: &str, sub_path: &str) -> Mount {
    Mount {
        container_path: path.into(),
        readonly: true,
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        image_sub_path: sub_path.into(),
        ..Default::default()
    }
}

/// A sleeping busybox container with `mounts`.
fn sleeper(name: &str, mounts: Vec<Mount>) -> ContainerConfig {
    let mut c = container_config(name, BUSYBOX, &["sleep", "1000"]);
    c.mounts = mounts;
    c
}

/// Mount points under `dir`, as this (the host's) mount namespace has them.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

async fn sh(c: &mut Cri, id: &str, script: &str) -> (i32, String) {
    let r = c.exec_sync(id, &["sh", "-c", script]).await.unwrap();
    let mut out = String::from_utf8_lossy(&r.stdout).to_string();
    out.push_str(&String::from_utf8_lossy(&r.stderr));
    (r.exit_code, out)
}

async fn pod(d: &Berthd, c: &mut Cri, name: &str) -> (String, PodSandboxConfig) {
    let pc = pod_config(name, &d.dir.path().join("logs"), "");
    (c.run_pod(&pc).await.unwrap(), pc)
}

#[tokio::test]
async fn an_image_volume_shows_the_images_files_read_only() {
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    // What kubelet names the image by: the ID PullImage answered.
    let layers_id = c.pull(LAYERS).await.unwrap();
    let (pod, pc) = pod(&d, &mut c, "imgvol").await;
    let id = c
        .create(
            &pod,
            &pc,
            &sleeper(
                "vol",
                vec![
                    // Three layers: an overlay with no upper layer.
                    image_mount("/vol", LAYERS, ""),
                    image_mount("/sub", &layers_id, "data/replaced"),
                    // One layer: a read-only bind of its snapshot.
                    image_mount("/bb", BUSYBOX, "etc"),
                ],
            ),
        )
        .await
        .unwrap();
    c.start(&id).await.unwrap();

    let (code, out) = sh(
        &mut c,
        &id,
        "cat /vol/data/keep.txt /vol/data/replaced/new.txt; \
         test -e /vol/data/remove-me.txt && echo whiteout-ignored; ls /sub; ls /bb",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out, "keep\nnew\nnew.txt\ngroup\npasswd\n",
        "the image's merged view"
    );

    for dir in ["/vol", "/vol/data", "/sub", "/bb"] {
        let (code, out) = sh(&mut c, &id, &format!("echo x > {dir}/new-file")).await;
        assert_ne!(code, 0, "writing in {dir} must fail: {out}");
        assert!(out.contains("Read-only file system"), "{dir}: EROFS: {out}");
    }
    let (_, out) = sh(&mut c, &id, "rm /vol/data/keep.txt; cat /vol/data/keep.txt").await;
    assert!(
        out.contains("Read-only file system") && out.starts_with("keep\n"),
        "the file stays: {out}"
    );

    // Read-only, nosuid and nodev inside the container, and not propagating.
    let (_, info) = sh(&mut c, &id, "cat /proc/self/mountinfo").await;
    for point in ["/vol", "/sub", "/bb"] {
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(point))
            .unwrap_or_else(|| panic!("{point} is not mounted: {info}"));
        let opts = line.split(' ').nth(5).unwrap();
        for o in ["ro", "nosuid", "nodev"] {
            assert!(opts.split(',').any(|x| x == o), "{point} lacks {o}: {line}");
        }
        let optional = line.split(" - ").next().unwrap();
        assert!(
            !optional.contains("shared:") && !optional.contains("master:"),
            "{point} propagates: {line}"
        );
    }

    let st = c.container_status(&id).await.unwrap();
    assert_eq!(st.mounts.len(), 3, "{:?}", st.mounts);
    let spec = st.mounts[1].image.clone().unwrap();
    assert_eq!(spec.image, layers_id, "the image as kubelet named it");
    // KEP-5365 (critest v1.37 checks it): the image's ID, as PullImage answered it.
    assert_eq!(spec.image_ref, layers_id, "the volume's image_ref");
    assert_eq!(st.mounts[1].image_sub_path, "data/replaced");

    let cdir = d.root().join("containers").join(&id);
    assert_eq!(mounts_under(&cdir.join("image-volumes")).len(), 3);
    assert!(d.root().join("pins").join(format!("{id}.json")).exists());
    c.stop(&id, 0).await.unwrap();
    c.remove(&id).await.unwrap();
    assert_eq!(
        mounts_under(&cdir),
        Vec::<String>::new(),
        "nothing stays mounted"
    );
    assert!(
        !d.root().join("pins").join(format!("{id}.json")).exists(),
        "the pins go with the container"
    );
    c.remove_all().await;
}

#[tokio::test]
async fn a_missing_image_or_a_sub_path_outside_the_image_is_refused() {
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    c.pull(LAYERS).await.unwrap();
    let (pod, pc) = pod(&d, &mut c, "refused").await;

    let e = c
        .create(
            &pod,
            &pc,
            &sleeper("missing", vec![image_mount("/v", HTTPD, "")]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(
        e.message().contains(HTTPD),
        "names the image: {}",
        e.message()
    );

    for (sub, why) in [
        ("../..", "'..'"),
        ("data/../../etc", "'..'"),
        ("/etc", "absolute"),
        // An absolute symlink: it names the container's root, not the image's.
        ("data/abs-symlink", "leaves the image"),
        // bin/sh -> /bin/busybox, then a component below it.
        ("bin/sh/x", "leaves the image"),
        ("data/no-such-dir", "does not exist"),
    ] {
        let e = c
            .create(
                &pod,
                &pc,
                &sleeper("hostile", vec![image_mount("/v", LAYERS, sub)]),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{sub}: {e:?}");
        assert!(
            e.message().contains(&format!("{sub:?}")) && e.message().contains(why),
            "{sub}: names the sub-path and why: {}",
            e.message()
        );
    }
    // A relative symlink inside the image is followed.
    let id = c
        .create(
            &pod,
            &pc,
            &sleeper("inside", vec![image_mount("/v", LAYERS, "data/symlink")]),
        )
        .await
        .unwrap();
    c.start(&id).await.unwrap();
    assert_eq!(sh(&mut c, &id, "cat /v").await, (0, "keep\n".into()));
    c.stop(&id, 0).await.unwrap();
    c.remove(&id).await.unwrap();

    // The failed creates were undone: no container, mount or pin is left.
    assert!(c.containers().await.is_empty());
    assert_eq!(
        mounts_under(&d.root().join("containers")),
        Vec::<String>::new()
    );
    let pins: Vec<_> = std::fs::read_dir(d.root().join("pins"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(pins.is_empty(), "pins left: {pins:?}");
    c.remove_all().await;
}

#[tokio::test]
async fn removing_the_image_of_a_volume_keeps_its_files_until_the_container_goes() {
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    c.pull(LAYERS).await.unwrap();
    let (pod, pc) = pod(&d, &mut c, "keepvol").await;
    let id = c
        .create(
            &pod,
            &pc,
            &sleeper("vol", vec![image_mount("/vol", LAYERS, "data")]),
        )
        .await
        .unwrap();
    c.start(&id).await.unwrap();
    let snapshots = || {
        std::fs::read_dir(d.root().join("snapshots"))
            .unwrap()
            .count()
    };
    let blobs = || {
        std::fs::read_dir(d.root().join("content/blobs/sha256"))
            .unwrap()
            .count()
    };
    let (snaps, blob_count) = (snapshots(), blobs());

    c.remove_image(LAYERS).await.unwrap();
    assert!(
        !c.images()
            .await
            .iter()
            .any(|i| i.repo_tags.iter().any(|t| t == LAYERS)),
        "the image's name is gone"
    );
    assert_eq!(snapshots(), snaps, "the volume's snapshots stay");
    assert_eq!(blobs(), blob_count, "the volume's blobs stay");
    let (code, out) = sh(&mut c, &id, "cat /vol/keep.txt /vol/replaced/new.txt").await;
    assert_eq!((code, out.as_str()), (0, "keep\nnew\n"), "files intact");

    c.stop(&id, 0).await.unwrap();
    c.remove(&id).await.unwrap();
    c.remove_all().await;
    // The next GC (RemoveImage runs one) frees what only the volume kept.
    c.remove_image(BUSYBOX).await.unwrap();
    assert_eq!(snapshots(), 0, "every snapshot freed");
}

#[tokio::test]
async fn image_volumes_survive_a_berthd_kill_and_are_removed_after_it() {
    let mut d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    c.pull(LAYERS).await.unwrap();
    let (pod, pc) = pod(&d, &mut c, "restart").await;
    let running = c
        .create(
            &pod,
            &pc,
            &sleeper("running", vec![image_mount("/vol", LAYERS, "data")]),
        )
        .await
        .unwrap();
    c.start(&running).await.unwrap();
    let created = c
        .create(
            &pod,
            &pc,
            &sleeper("created", vec![image_mount("/vol", LAYERS, "")]),
        )
        .await
        .unwrap();
    let point = |id: &str| d.root().join("containers").join(id).join("image-volumes/0");
    let (running_point, created_point) = (point(&running), point(&created));

    d.kill9();
    // The host lost the created container's volume mount (as after a reboot):
    // recovery mounts it again from the pinned snapshots.
    let cpath = std::ffi::CString::new(created_point.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: detaching a mount this test's berthd made.
    assert_eq!(
        unsafe { libc::umount2(cpath.as_ptr(), libc::MNT_DETACH) },
        0
    );
    d.restart();
    let mut c = Cri::connect(&d).await;
    // The socket exists before recovery runs; calls are answered only after it.
    c.containers().await;
    for _ in 0..100 {
        if !mounts_under(&created_point).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        mounts_under(&created_point),
        vec![created_point.to_string_lossy().to_string()],
        "mounted again: {}",
        d.log()
    );
    assert_eq!(mounts_under(&running_point).len(), 1);

    assert_eq!(
        sh(&mut c, &running, "cat /vol/keep.txt").await,
        (0, "keep\n".into())
    );
    c.start(&created).await.unwrap();
    assert_eq!(
        sh(&mut c, &created, "cat /vol/data/keep.txt").await,
        (0, "keep\n".into())
    );
    let st = c.container_status(&running).await.unwrap();
    assert!(
        st.mounts[0]
            .image
            .as_ref()
            .unwrap()
            .image_ref
            .starts_with("sha256:"),
        "{:?}",
        st.mounts
    );

    for id in [&running, &created] {
        c.stop(id, 0).await.unwrap();
        c.remove(id).await.unwrap();
        let dir = d.root().join("containers").join(id);
        assert_eq!(mounts_under(&dir), Vec::<String>::new(), "{id}");
        assert!(!d.root().join("pins").join(format!("{id}.json")).exists());
    }
    c.remove_all().await;
}

#[tokio::test]
async fn a_create_berthd_dies_in_leaves_no_volume_mounted_or_pinned() {
    let mut d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    c.pull(LAYERS).await.unwrap();
    let (pod, pc) = pod(&d, &mut c, "crash").await;
    // Aborts after the volumes are mounted and the bundle written.
    d.restart_env(&[("BERTH_CRASH_AT", "create:bundle")]);
    let mut c = Cri::connect(&d).await;
    let r = c
        .create(
            &pod,
            &pc,
            &sleeper("vol", vec![image_mount("/vol", LAYERS, "data")]),
        )
        .await;
    assert!(r.is_err(), "berthd was to abort: {r:?}");
    use std::os::unix::process::ExitStatusExt;
    let st = d.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(
        st.and_then(|s| s.signal()),
        Some(libc::SIGABRT),
        "{}",
        d.log()
    );
    assert_eq!(
        mounts_under(&d.root().join("containers")).len(),
        2,
        "the rootfs and the volume were mounted"
    );
    d.restart();
    let mut c = Cri::connect(&d).await;
    assert!(c.containers().await.is_empty(), "the create was undone");
    assert_eq!(
        mounts_under(&d.root().join("containers")),
        Vec::<String>::new()
    );
    let pins: Vec<_> = std::fs::read_dir(d.root().join("pins"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(pins.is_empty(), "pins left: {pins:?}");
    c.remove_all().await;
}
