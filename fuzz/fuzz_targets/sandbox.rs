//! The sandbox the layer targets unpack into, and the check that nothing left it.

use std::path::Path;

pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// The sandbox holds exactly `roots` and `outside/sentinel`, untouched, and its
/// parent (hack/fuzz.sh gives each run a TMPDIR of its own) only the sandbox.
pub fn check_contained(sandbox: &Path, roots: &[&str]) {
    let mut want: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
    want.push("outside".into());
    want.sort();
    assert_eq!(listing(sandbox), want);
    let outside = sandbox.join("outside");
    assert_eq!(listing(&outside), ["sentinel"]);
    assert_eq!(std::fs::read(outside.join("sentinel")).unwrap(), b"untouched");
    let parent = sandbox.parent().unwrap();
    let name = sandbox.file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(listing(parent), [name]);
}
