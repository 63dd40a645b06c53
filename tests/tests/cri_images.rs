//! berthd's CRI socket end to end, with a tonic client: Version, Status,
//! RuntimeConfig and the ImageService, with the gRPC codes of bad calls.

use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::v1::*;
use berth_tests::berthd::Berthd;
use berth_tests::{bin, registry_addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tonic::Code;

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn version_status_and_the_image_service() {
    let d = Berthd::start();
    let mode = std::fs::metadata(d.sock()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is root-only");
    let ch = d.channel().await;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut img = ImageServiceClient::new(ch);

    let v = rt
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("berth", "v1")
    );
    let st = rt
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let conds = st.status.unwrap().conditions;
    let cond = |t: &str| conds.iter().find(|c| c.r#type == t).unwrap().clone();
    assert!(cond("RuntimeReady").status);
    let net = cond("NetworkReady");
    assert!(!net.status && net.reason == "NoCNIConfig", "{net:?}");
    let rc = rt
        .runtime_config(RuntimeConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );

    let image = format!("{}/library/user-name:latest", registry_addr());
    let id = img
        .pull_image(PullImageRequest {
            image: spec(&image),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert!(id.starts_with("sha256:"), "{id}");
    // Through the configured mirror, the name stays as asked.
    let via_mirror = "registry.berth.test/library/user-uid:latest";
    img.pull_image(PullImageRequest {
        image: spec(via_mirror),
        ..Default::default()
    })
    .await
    .unwrap();

    let list = img
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(list.len(), 2);
    let named = img
        .image_status(ImageStatusRequest {
            image: spec(&image),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let named_img = named.image.unwrap();
    assert_eq!(named_img.id, id);
    assert_eq!(
        (named_img.uid, named_img.username.as_str()),
        (None, "berth"),
        "USER by name"
    );
    assert!(named.info.contains_key("info"));
    let by_uid = img
        .image_status(ImageStatusRequest {
            image: spec(via_mirror),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(by_uid.uid.map(|u| u.value), Some(1000), "USER by uid");
    assert_eq!(by_uid.repo_tags, [via_mirror]);
    for name in [
        id.clone(),
        id.trim_start_matches("sha256:").to_string(),
        named_img.repo_digests[0].clone(),
    ] {
        let s = img
            .image_status(ImageStatusRequest {
                image: spec(&name),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.image.unwrap().id, id, "by {name}");
    }
    let filtered = img
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: spec(via_mirror),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);

    let fs = img
        .image_fs_info(ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(fs.image_filesystems[0].used_bytes.unwrap().value > 0);

    img.remove_image(RemoveImageRequest {
        image: spec(&image),
    })
    .await
    .unwrap();
    img.remove_image(RemoveImageRequest {
        image: spec(&image),
    })
    .await
    .expect("removing twice is not an error");
    let gone = img
        .image_status(ImageStatusRequest {
            image: spec(&image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(gone.image.is_none(), "an absent image is an empty answer");
}

#[tokio::test]
async fn bad_calls_get_the_right_codes() {
    let d = Berthd::start();
    let ch = d.channel().await;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut img = ImageServiceClient::new(ch);
    let code = |r: Result<tonic::Response<PullImageResponse>, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(
            img.pull_image(PullImageRequest {
                image: spec(""),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            img.pull_image(PullImageRequest {
                image: spec("Bad//Name"),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );
    let missing = format!("{}/library/no-such-image:latest", registry_addr());
    let e = img
        .pull_image(PullImageRequest {
            image: spec(&missing),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("no-such-image"));
    // Through the mirror, whose registry answers 404, to an upstream that cannot
    // be reached: NotFound, and the text says what each host answered (kubelet
    // shows it in the ErrImagePull event).
    let e = img
        .pull_image(PullImageRequest {
            image: spec("registry.berth.test/library/no-such-image:latest"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(
        e.message().contains(&format!(
            "mirror {}: manifest unknown (404)",
            registry_addr()
        )) && e.message().contains("registry.berth.test: unreachable"),
        "{}",
        e.message()
    );
    assert_eq!(
        code(
            img.pull_image(PullImageRequest {
                image: spec("127.0.0.1:1/library/x:1"),
                ..Default::default()
            })
            .await
        ),
        Code::Unavailable
    );
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "a pod needs a config");
}

#[test]
fn config_default_prints_every_key() {
    let out = std::process::Command::new(bin("berthd"))
        .args(["config", "default"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "listen",
        "root",
        "state",
        "runtime",
        "shim",
        "cgroup_driver",
        "[registry]",
        "[cni]",
        "conf_dir",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
    let bad = Path::new("/tmp/berth-bad-config.toml");
    std::fs::write(bad, "cgroup_driver = \"systemd\"\n").unwrap();
    let out = std::process::Command::new(bin("berthd"))
        .arg("--config")
        .arg(bad)
        .output()
        .unwrap();
    std::fs::remove_file(bad).ok();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("systemd"));
}
