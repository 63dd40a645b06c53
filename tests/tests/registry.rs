//! The test images in the local registry are exactly the ones built: pulled back
//! with skopeo they have the digests berth-testimages computed.

use berth_tests::{registry_addr, testimages_dir};
use std::process::Command;

#[test]
fn images_pulled_back_have_built_digests() {
    let tsv = std::fs::read_to_string(testimages_dir().join("digests.tsv"))
        .expect("digests.tsv: run hack/testimages.sh");
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(lines.len(), 12, "every test image is listed");
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, tag, digest) = (f[0], f[1], f[2]);
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{}/library/{name}:{tag}", registry_addr()))
            .arg(format!("oci:{}:{tag}", dir.path().display()))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"], digest,
            "{name}:{tag} digest after a round trip"
        );
    }
}

#[test]
fn multiarch_index_lists_amd64_and_arm64() {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!(
            "docker://{}/library/multiarch:latest",
            registry_addr()
        ))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
}
