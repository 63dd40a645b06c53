//! Layer unpack: whatever the tar holds, nothing is written outside the target
//! root. The root sits in a sandbox directory beside a sentinel; after the unpack
//! the sandbox holds only the root and the unchanged sentinel, and the sandbox's
//! own parent holds only the sandbox.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "sandbox.rs"]
mod sandbox;

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
    let _ = berth_image::unpack::unpack_layer(
        data,
        &root,
        "fuzz",
        1 << 20,
        berth_image::unpack::Parents::None,
    );
    sandbox::check_contained(sandbox.path(), &["root"]);
});
