//! berth's `api.proto` against upstream's: the same declarations (services,
//! messages, fields, numbers, enums) once comments, blank lines, spacing and
//! the `debug_redact` option (see the file's header) are taken out. Upstream's
//! file comes from the Go module cache (`BERTH_GOMODCACHE`, by default
//! /var/cache/berth/go/mod, filled by hack/kubernetes); without it the test
//! says so and passes.

use std::path::PathBuf;

fn declarations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        let mut l = line.to_string();
        if in_block {
            match l.find("*/") {
                Some(i) => {
                    l = l[i + 2..].to_string();
                    in_block = false;
                }
                None => continue,
            }
        }
        if let Some(i) = l.find("/*") {
            in_block = !l[i..].contains("*/");
            l.truncate(i);
        }
        if let Some(i) = l.find("//") {
            l.truncate(i);
        }
        let l = l.replace(" [debug_redact = true]", "");
        let words: Vec<&str> = l.split_whitespace().collect();
        if !words.is_empty() {
            out.push(words.join(" "));
        }
    }
    out
}

#[test]
fn api_proto_declares_what_upstream_declares() {
    let cache = std::env::var_os("BERTH_GOMODCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth/go/mod"));
    let upstream = cache.join(format!(
        "k8s.io/cri-api@{}/pkg/apis/runtime/v1/api.proto",
        berth_proto::CRI_API_MODULE_VERSION
    ));
    let Ok(theirs) = std::fs::read_to_string(&upstream) else {
        eprintln!(
            "skipped: {} is missing (go mod download k8s.io/cri-api@{})",
            upstream.display(),
            berth_proto::CRI_API_MODULE_VERSION
        );
        return;
    };
    let ours =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/api.proto")).unwrap();
    let (ours, theirs) = (declarations(&ours), declarations(&theirs));
    if ours != theirs {
        let at = ours
            .iter()
            .zip(&theirs)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(theirs.len()));
        panic!(
            "berth's api.proto differs from {} at declaration {at}: ours {:?}, upstream's {:?}",
            upstream.display(),
            ours.get(at),
            theirs.get(at)
        );
    }
}
