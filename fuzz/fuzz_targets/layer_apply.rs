//! Layer application onto a parent: a random lower layer, then a random layer
//! applied onto it (as a first pass without the parent, then with it), and
//! nothing lands outside the roots: the lower layer's symlinks are followed
//! only inside the tree being built. The first two bytes split the input.
#![no_main]
use berth_image::unpack::{Parents, unpack_layer};
use libfuzzer_sys::fuzz_target;

#[path = "sandbox.rs"]
mod sandbox;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (lower_tar, upper_tar) = data[2..].split_at(split);
    let sandbox = tempfile::Builder::new()
        .prefix("berth-fuzz-apply-")
        .tempdir()
        .unwrap();
    let (lower, upper, outside) = (
        sandbox.path().join("lower"),
        sandbox.path().join("upper"),
        sandbox.path().join("outside"),
    );
    for d in [&lower, &upper, &outside] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(outside.join("sentinel"), b"untouched").unwrap();
    let _ = unpack_layer(lower_tar, &lower, "lower", 1 << 20, Parents::None);
    let first = unpack_layer(upper_tar, &upper, "upper", 1 << 20, Parents::Unknown);
    if first.is_ok_and(|u| u.needs_parents) {
        std::fs::remove_dir_all(&upper).unwrap();
        std::fs::create_dir(&upper).unwrap();
        let below = [lower.clone()];
        let _ = unpack_layer(upper_tar, &upper, "upper", 1 << 20, Parents::Known(&below));
    }
    sandbox::check_contained(sandbox.path(), &["lower", "upper"]);
});
