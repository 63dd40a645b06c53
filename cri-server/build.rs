//! Builds the built-in pause (pause/pause.rs) as a static executable that
//! berthd embeds: it runs in an empty root filesystem, so no loader, no libraries.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("pause");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = std::env::var("TARGET").expect("TARGET");
    println!("cargo:rerun-if-changed=pause/pause.rs");
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--target",
            &target,
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args([
            "-C",
            "target-feature=+crt-static",
            "-C",
            "relocation-model=static",
        ])
        // libc.a's cold paths name the unwinder even though pause never unwinds.
        .args(["-C", "link-arg=-lgcc_eh", "-C", "link-arg=-lgcc"])
        .arg("-o")
        .arg(&out)
        .arg("pause/pause.rs")
        .status()
        .expect("running rustc for the pause binary");
    assert!(status.success(), "building the pause binary failed");
}
