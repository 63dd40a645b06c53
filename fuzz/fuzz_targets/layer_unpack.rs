//! Layer unpack: whatever the tar holds, nothing is written outside the target
//! root. The root sits in a sandbox directory beside a sentinel; after the unpack
//! the sandbox holds only the root and the unchanged sentinel, and the sandbox's
//! own parent holds only the sandbox.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let sandbox = tempfile::Builder::new()
        .prefix("berth-fuzz-unpack-")
        .tempdir()
        .unwrap();
    let root = sandbox.path().join("root");
    let outside = sandbox.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"untouched").unwrap();
    let _ = berth_image::unpack::unpack_layer(data, &root, "fuzz", 1 << 20);
    assert_eq!(listing(sandbox.path()), ["outside", "root"]);
    assert_eq!(listing(&outside), ["sentinel"]);
    assert_eq!(std::fs::read(outside.join("sentinel")).unwrap(), b"untouched");
    // Two levels up (hack/fuzz.sh gives each run a TMPDIR of its own): only
    // this sandbox.
    let parent = sandbox.path().parent().unwrap();
    let name = sandbox.path().file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(listing(parent), [name]);
});
