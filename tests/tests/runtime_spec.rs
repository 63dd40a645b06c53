//! berth-runtime against the text of the OCI runtime spec (and runc's behaviour
//! where the spec leaves it to the runtime): one test per point of issue 18, each
//! with the spec's words it checks.

use berth_tests::{Bundle, Runtime};
use serde_json::{Value, json};
use std::path::Path;

fn sh(script: &str) -> Bundle {
    Bundle::new("busybox", &["sh", "-c", script])
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `create` (its stdio to files), returning (success, stderr).
fn create(rt: &Runtime, b: &Bundle, id: &str) -> (bool, String) {
    b.write();
    rt.detached(&["create", "--bundle", b.path().to_str().unwrap(), id])
}

// ---- errors, as runc reports them ----

/// runc (logrus): without --log, one record on stderr, `time="…" level=error
/// msg="…"` (or JSON with --log-format json); with --log, the record in the log
/// and the bare message on stderr. Exit status 1.
#[test]
fn errors_in_runc_format() {
    let rt = Runtime::new();
    let out = rt.exec(&["delete", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("time=\""), "{e}");
    assert!(
        e.contains(r#"level=error msg="container \"nope\" does not exist""#),
        "{e}"
    );

    let out = rt.exec(&["--log-format", "json", "kill", "nope", "KILL"]);
    assert_eq!(out.status.code(), Some(1));
    let rec: Value = serde_json::from_str(stderr(&out).trim()).expect("one JSON record");
    assert_eq!(rec["level"], "error");
    assert_eq!(rec["msg"], r#"container "nope" does not exist"#);
    assert!(rec["time"].is_string());

    let log = rt.root.path().join("runtime.log");
    let out = rt
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), r#"container "nope" does not exist"#);
    let rec: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(rec["level"], "error");
    assert_eq!(rec["msg"], r#"container "nope" does not exist"#);

    // A wrong state: kill of a stopped container, start of a running one.
    let b = Bundle::new("busybox", &["sleep", "60"]);
    let id = rt.id("errstate");
    let (ok, err) = create(&rt, &b, &id);
    assert!(ok, "{err}");
    assert!(rt.exec(&["start", &id]).status.success());
    let out = rt.exec(&["start", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("level=error"), "{}", stderr(&out));
    assert!(rt.exec(&["kill", &id, "KILL"]).status.success());
    let out = rt.exec(&["kill", &id, "TERM"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("level=error") && stderr(&out).contains("stopped"),
        "{}",
        stderr(&out)
    );
    // A successful command says nothing on stderr (tools look for "error" there).
    let out = rt.exec(&["state", &id]);
    assert!(out.status.success());
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}
